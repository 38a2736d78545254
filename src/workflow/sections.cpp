// Tolerant parsing of the analysis call's answer into its four sections.
#include <chimera/core/text.hpp>
#include <chimera/workflow/workflow.hpp>

#include <algorithm>
#include <cctype>
#include <sstream>

namespace chimera::workflow {

namespace {

struct Wanted {
  const char* name;
  std::vector<const char*> words;  // normalised heading texts that mean this section
};

const std::vector<Wanted>& wanted() {
  static const std::vector<Wanted> w = {
      {"Executive Summary", {"executive summary", "summary", "overview", "tl dr", "tldr"}},
      {"Key Findings", {"key findings", "findings", "key insights", "insights", "highlights"}},
      {"Metrics Analysis",
       {"metrics analysis", "metric analysis", "performance analysis", "analysis",
        "performance metrics", "metrics"}},
      {"Recommendations",
       {"recommendations", "recommendation", "next steps", "suggestions", "action items"}},
  };
  return w;
}

std::string normalise(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalpha(u)) {
      if (space && !out.empty()) out.push_back(' ');
      space = false;
      out.push_back(static_cast<char>(std::tolower(u)));
    } else {
      space = true;
    }
  }
  return out;
}

// If `line` is a heading, returns which section (index into wanted()) and the text after the
// heading on the same line ("Summary: the model is fast" keeps "the model is fast").
int heading(std::string_view line, std::string& rest) {
  std::string_view s = line;
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  bool marked = false;
  while (!s.empty() && (s.front() == '#' || s.front() == '*' || s.front() == '_' ||
                        s.front() == '>' || s.front() == '-')) {
    s.remove_prefix(1);
    marked = true;
  }
  // "1." / "2)" / "IV." numbering
  std::size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == ' ')) ++i;
  if (i > 0 && i < s.size() && (s[i] == '.' || s[i] == ')')) {
    s.remove_prefix(i + 1);
    marked = true;
  }
  std::string_view title = s;
  std::string_view after;
  if (const auto colon = s.find(':'); colon != std::string_view::npos) {
    title = s.substr(0, colon);
    after = s.substr(colon + 1);
    marked = true;
  }
  const std::string norm = normalise(title);
  if (norm.empty() || norm.size() > 40) return -1;
  for (std::size_t k = 0; k < wanted().size(); ++k) {
    for (const char* w : wanted()[k].words) {
      if (norm == w && (marked || title.size() == s.size())) {
        rest = std::string(after);
        while (!rest.empty() && (rest.front() == ' ' || rest.front() == '*')) rest.erase(0, 1);
        return static_cast<int>(k);
      }
    }
  }
  return -1;
}

std::string trim(const std::string& s) {
  return std::string(text::trim(s));
}

}  // namespace

Sections parse_sections(const std::string& answer) {
  Sections out;
  std::vector<std::string> bodies(wanted().size());
  std::vector<bool> seen(wanted().size(), false);
  std::vector<int> order;
  int current = -1;
  std::istringstream in(answer);
  std::string line;
  while (std::getline(in, line)) {
    std::string rest;
    const int h = heading(line, rest);
    if (h >= 0 && !seen[static_cast<std::size_t>(h)]) {
      current = h;
      seen[static_cast<std::size_t>(h)] = true;
      order.push_back(h);
      if (!rest.empty()) bodies[static_cast<std::size_t>(h)] += rest + "\n";
      continue;
    }
    if (current >= 0) bodies[static_cast<std::size_t>(current)] += line + "\n";
  }
  for (int k : order) {
    out.found.emplace_back(wanted()[static_cast<std::size_t>(k)].name,
                           trim(bodies[static_cast<std::size_t>(k)]));
  }
  for (std::size_t k = 0; k < wanted().size(); ++k) {
    if (!seen[k]) out.missing.emplace_back(wanted()[k].name);
  }
  return out;
}

}  // namespace chimera::workflow

// The experiment as dense text for a model: the most informative facts first, each kept only
// if it fits the token budget. See experiment.hpp.
#include <chimera/ingest/digest.hpp>
#include <chimera/ingest/experiment.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace chimera::ingest {

namespace {

struct Line {
  int priority = 0;   // lower is kept first
  std::size_t order;  // position in the text
  std::string text;
  std::string shorter;  // said in fewer tokens, when `text` does not fit
};

std::string levels_text(const Factor& f) {
  std::vector<std::string> shown;
  if (f.levels.size() <= 8) {
    shown = f.levels;
  } else {
    shown = {f.levels[0],    f.levels[1], f.levels[2], "...", f.levels[f.levels.size() - 2],
             f.levels.back()};
  }
  std::string s = fmt::format("{}", fmt::join(shown, "|"));
  if (f.levels.size() > 8) s += fmt::format(" ({} levels)", f.levels.size());
  return s;
}

std::string n_text(const Experiment& x) {
  std::size_t lo = SIZE_MAX, hi = 0;
  for (const auto& c : x.configs) {
    lo = std::min(lo, c.runs);
    hi = std::max(hi, c.runs);
  }
  if (x.configs.empty()) return "no runs";
  return lo == hi ? fmt::format("n={} each", lo) : fmt::format("n={}..{} each", lo, hi);
}

std::string stat_text(const Summary& s) {
  if (s.n < 2) return fmt::format("{} n=1", format_number(s.mean));
  return fmt::format("{} sd {} n={}", format_number(s.mean), format_number(s.sd), s.n);
}

}  // namespace

std::string experiment_digest(const Experiment& x, std::size_t token_budget,
                              std::optional<std::size_t> only_metric) {
  std::vector<Line> lines;
  std::size_t order = 0;
  auto add = [&](int priority, std::string text, std::string shorter = {}) {
    lines.push_back({priority, order++, std::move(text), std::move(shorter)});
  };
  add(0, fmt::format("{} factors, {} configs, {} runs ({}){}.", x.factors.size(), x.configs.size(),
                     x.runs, n_text(x),
                     x.repetition_markers.empty()
                         ? std::string()
                         : fmt::format("; repeats: {}", fmt::join(x.repetition_markers, ", "))));
  if (!x.factors.empty()) {
    // Factors that move the key metrics most first.
    std::vector<double> weight(x.factors.size(), 0.0);
    for (const auto& e : x.effects)
      if (e.metric < 2)
        weight[e.factor] = std::max(weight[e.factor], e.share * static_cast<double>(e.n));
    std::vector<std::size_t> order_f(x.factors.size());
    for (std::size_t i = 0; i < order_f.size(); ++i) order_f[i] = i;
    std::stable_sort(order_f.begin(), order_f.end(),
                     [&](std::size_t a, std::size_t b) { return weight[a] > weight[b]; });
    std::vector<std::string> parts, counts;
    for (auto i : order_f) {
      const auto& f = x.factors[i];
      parts.push_back(fmt::format("{} {}", f.key, levels_text(f)));
      if (counts.size() < 6) counts.push_back(fmt::format("{} {}", f.key, f.levels.size()));
    }
    if (x.factors.size() > counts.size())
      counts.push_back(fmt::format("{} more", x.factors.size() - counts.size()));
    add(0, fmt::format("Factors: {}.", fmt::join(parts, "; ")),
        fmt::format("Factors (levels): {}.", fmt::join(counts, ", ")));
  }
  for (std::size_t m = 0; m < x.metrics.size(); ++m) {
    if (only_metric && *only_metric != m) continue;
    const KeyMetric& km = x.metrics[m];
    const int main = m < 2 || only_metric ? 0 : 3;  // throughput and TTFT before other metrics
    const auto effects = x.effects_of(m);
    if (!effects.empty()) {
      std::vector<std::string> parts;
      for (std::size_t i = 0; i < effects.size() && i < 4; ++i)
        parts.push_back(
            fmt::format("{} {:.0f}%", x.factors[effects[i]->factor].key, 100 * effects[i]->share));
      add(1 + main, fmt::format("{} ({}, {} better): {} of variance.", km.name, km.unit,
                                km.higher_is_better ? "higher" : "lower", fmt::join(parts, ", ")));
    }
    const auto ranked = x.ranked(m);
    if (!ranked.empty()) {
      const auto& best = x.configs[ranked.front()];
      const auto& worst = x.configs[ranked.back()];
      add(2 + main + static_cast<int>(m % 2),
          fmt::format("{} best {}: {}.", km.name, best.label, stat_text(best.find(m)->stats)));
      add(3 + main,
          fmt::format("{} worst {}: {}.", km.name, worst.label, stat_text(worst.find(m)->stats)));
    }
    for (const auto& c : x.comparisons) {
      if (c.metric != m) continue;
      std::string test =
          c.p ? fmt::format("Welch p={}: {}", format_number(*c.p),
                            c.significant ? "larger than the noise" : "within the noise")
              : std::string("too few runs to test");
      add(3 + main,
          fmt::format("{} best vs runner-up ({}): {}{}, {}.", km.name, x.configs[c.runner_up].label,
                      c.difference >= 0 ? "+" : "", format_number(c.difference), test));
    }
    for (std::size_t i = 0; i < effects.size(); ++i) {
      std::vector<std::string> parts;
      for (const auto& l : effects[i]->levels)
        parts.push_back(fmt::format("{} {}", l.level, format_number(l.stats.mean)));
      add((i == 0 ? 3 : 4) + main,
          fmt::format("{} by {}: {} (n={}).", km.name, x.factors[effects[i]->factor].key,
                      fmt::join(parts, ", "), effects[i]->n));
    }
    for (std::size_t i = 1; i + 1 < ranked.size() && i < 6; ++i) {
      const auto& c = x.configs[ranked[i]];
      add(5 + main,
          fmt::format("{} #{} {}: {}.", km.name, i + 1, c.label, stat_text(c.find(m)->stats)));
    }
  }
  std::size_t failures = 0, outliers = 0;
  for (const auto& c : x.configs) {
    failures += c.failures;
    for (const auto& m : c.metrics) outliers += m.outliers;
  }
  if (failures + outliers > 0 && !only_metric)
    add(4, fmt::format("Anomalies: {} failed requests, {} outlier runs.", failures, outliers));
  for (std::size_t i = 0; i < x.unplaced.size() && i < 4 && !only_metric; ++i)
    add(7, fmt::format("Not placed: {} ({}).", x.unplaced[i].what, x.unplaced[i].why));

  // Keep the most informative lines that fit, then print them in reading order.
  std::stable_sort(lines.begin(), lines.end(),
                   [](const Line& a, const Line& b) { return a.priority < b.priority; });
  std::vector<const Line*> kept;
  std::size_t used = 0;
  std::vector<Line> chosen;
  chosen.reserve(lines.size());
  for (const auto& l : lines) {
    for (const std::string* text : {&l.text, &l.shorter}) {
      if (text->empty()) continue;
      const std::size_t cost = estimate_tokens(*text) + 1;
      if (used + cost > token_budget) continue;
      used += cost;
      chosen.push_back({l.priority, l.order, *text, {}});
      break;
    }
  }
  for (const auto& l : chosen) kept.push_back(&l);
  std::sort(kept.begin(), kept.end(),
            [](const Line* a, const Line* b) { return a->order < b->order; });
  std::string text;
  for (const auto* l : kept) {
    text += l->text;
    text += '\n';
  }
  while (!kept.empty() && estimate_tokens(text) > token_budget) {
    // The sum of estimates can undercount by a token or two at line joins.
    kept.pop_back();
    text.clear();
    for (const auto* l : kept) text += l->text + "\n";
  }
  return text;
}

}  // namespace chimera::ingest

// Text checks every file goes through, the helpers parsers report through, and plain-text
// files ("Key: 12.3 unit" lines).
#include "ingest/internal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace chimera::ingest::detail {

namespace {

int line_at(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  return 1 +
         static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(offset), '\n'));
}

using chimera::text::invalid_utf8_at;

}  // namespace

std::optional<TextProblem> check_text(std::string_view text, std::size_t max_line) {
  if (text.size() >= 2) {
    auto b0 = static_cast<unsigned char>(text[0]);
    auto b1 = static_cast<unsigned char>(text[1]);
    if ((b0 == 0xFF && b1 == 0xFE) || (b0 == 0xFE && b1 == 0xFF))
      return TextProblem{1,
                         "UTF-16 text (byte order mark at the start); only UTF-8 is read: "
                         "convert the file to UTF-8"};
  }
  if (const void* nul = std::memchr(text.data(), 0, text.size())) {
    auto offset = static_cast<std::size_t>(static_cast<const char*>(nul) - text.data());
    return TextProblem{line_at(text, offset),
                       fmt::format("binary data: NUL byte at line {} (byte offset {}); this is a "
                                   "binary file or UTF-16 text, and only UTF-8 text is read",
                                   line_at(text, offset), offset)};
  }
  auto bad = invalid_utf8_at(text);
  if (bad != std::string_view::npos) {
    int line = line_at(text, bad);
    return TextProblem{line, fmt::format("invalid UTF-8 at line {} (byte 0x{:02X} at offset {}); "
                                         "re-save the file as UTF-8",
                                         line, static_cast<unsigned char>(text[bad]), bad)};
  }
  if (max_line > 0 && text.size() > max_line) {
    std::size_t start = 0;
    int line = 1;
    while (start < text.size()) {
      const void* nl = std::memchr(text.data() + start, '\n', text.size() - start);
      std::size_t end =
          nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - text.data()) : text.size();
      if (end - start > max_line)
        return TextProblem{line, fmt::format("line {} is {} bytes, over the {}-byte limit "
                                             "(IngestOptions::max_line_bytes)",
                                             line, end - start, max_line)};
      start = end + 1;
      ++line;
    }
  }
  return std::nullopt;
}

Metric intern_metric(const MetricSpec& spec, Arena& arena) {
  Metric m;
  m.name = arena.intern(spec.name);
  m.unit = arena.intern(spec.unit);
  m.factor = spec.factor;
  m.kind = spec.kind;
  return m;
}

void ParseJob::error(int line, std::string reason, bool fatal) {
  out->errors.push_back(FileError{std::string(source_file), line, std::move(reason), fatal});
  if (fatal) out->fatal = true;
}

void ParseJob::error_value(std::string_view metric, std::string_view text, const Context* ctx,
                           int line) {
  text = trim(text);
  text = chimera::text::utf8_prefix(text, 200);
  ErrorValue e;
  e.metric = arena().intern(metric);
  e.text = arena().intern(text);
  e.context = ctx;
  e.source_file = source_file;
  e.file = file;
  e.line = line;
  out->error_values.push_back(e);
}

void ParseJob::record(const Metric& m, double raw, const Context* ctx, std::string_view origin,
                      int line) {
  Record r;
  r.metric = m.name;
  r.value = raw * m.factor;
  r.unit = m.unit;
  r.kind = m.kind;
  r.context = ctx;
  r.source_file = source_file;
  r.origin = origin;
  r.file = file;
  r.line = line;
  records->push_back(r);
}

const Context* RunningContext::get(Arena& arena) {
  if (frozen == nullptr) {
    Context c = draft;
    finish_context(c, arena);
    frozen = arena.new_context(std::move(c));
  }
  return frozen;
}

void harvest_line(std::string_view line, int line_no, RunningContext& ctx, std::string* label,
                  ParseJob& job) {
  std::string_view s = trim(line);
  // List markers: "- ", "* ", "+ ", "• ", "1. ", "1) ".
  if (s.size() >= 2 && (s[0] == '-' || s[0] == '*' || s[0] == '+') && s[1] == ' ') {
    s = trim(s.substr(2));
  } else if (s.size() >= 4 && s.substr(0, 3) == "\xe2\x80\xa2") {
    s = trim(s.substr(3));
  } else {
    std::size_t d = 0;
    while (d < s.size() && d < 3 && s[d] >= '0' && s[d] <= '9') ++d;
    if (d > 0 && d + 1 < s.size() && (s[d] == '.' || s[d] == ')') && s[d + 1] == ' ')
      s = trim(s.substr(d + 2));
  }
  if (s.empty()) return;
  // "Key: value": the colon must end the key (not "http://", not "20:11:33").
  std::size_t colon = std::string_view::npos;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ':' && (i + 1 == s.size() || s[i + 1] == ' ' || s[i + 1] == '\t')) {
      colon = i;
      break;
    }
  }
  if (colon == std::string_view::npos || colon == 0 || colon > 60) return;
  std::string_view key = trim(s.substr(0, colon));
  if (key.empty() || key.find('|') != std::string_view::npos) return;
  if (std::none_of(key.begin(), key.end(),
                   [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }))
    return;
  if (std::count(key.begin(), key.end(), ' ') > 6) return;  // a sentence, not a key
  std::string_view rest = trim(s.substr(colon + 1));
  if (rest.empty()) {
    if (label != nullptr) *label = normalize_key(key);
    return;
  }
  while (!rest.empty() && (rest.back() == '.' || rest.back() == ',' || rest.back() == ';'))
    rest.remove_suffix(1);
  // A trailing "(...)" note: "2527.22ms (Level Up)".
  if (!rest.empty() && rest.back() == ')') {
    auto open = rest.rfind('(');
    if (open != std::string_view::npos && open > 0) rest = trim(rest.substr(0, open));
  }
  // A trailing statistic word: "13.9% avg".
  std::string_view stat;
  static constexpr std::array<std::string_view, 9> kStats = {
      "avg", "average", "mean", "peak", "max", "min", "median", "p95", "p99"};
  auto space = rest.rfind(' ');
  if (space != std::string_view::npos) {
    auto last = rest.substr(space + 1);
    if (std::find(kStats.begin(), kStats.end(), last) != kStats.end()) {
      stat = last;
      rest = trim(rest.substr(0, space));
    }
  }
  double value = 0;
  std::string_view unit;
  // classify_name()'s per-thread cache entry, not a copy (its strings would be allocated for
  // every line); valid until the next call.
  const NameInfo* info = &classify_name(key);
  if (!parse_number(rest, &value, &unit)) {
    if (info->role == Role::context_main && rest.size() <= 96 && stat.empty()) {
      if (set_context(ctx.draft, info->field, rest, job.arena())) ctx.changed();
    }
    return;
  }
  if (info->role == Role::context_main && unit.empty() && stat.empty()) {
    if (set_context(ctx.draft, info->field, rest, job.arena())) {
      ctx.changed();
      return;
    }
  }
  if (info->role != Role::metric && info->role != Role::context_main) return;
  thread_local std::string name;
  name.clear();
  if (info->generic && label != nullptr && !label->empty()) {
    name += *label;
    name += '_';
  }
  name += key;
  if (!stat.empty()) {
    name += '_';
    name += stat;
  }
  if (name != key) info = &classify_name(name);
  NameInfo promoted;
  if (info->role != Role::metric) {
    promoted = *info;
    promoted.role = Role::metric;
    promoted.stem = promoted.key;
    info = &promoted;
  }
  auto spec = finalize_metric(*info, unit_from_text(unit));
  auto metric = intern_metric(spec, job.arena());
  job.record(metric, value, ctx.get(job.arena()), job.arena().intern(key), line_no);
}

void parse_text(std::string_view content, ParseJob& job) {
  RunningContext ctx;
  std::string label;
  std::size_t start = 0;
  int line_no = 1;
  while (start < content.size()) {
    auto nl = content.find('\n', start);
    if (nl == std::string_view::npos) nl = content.size();
    auto line = content.substr(start, nl - start);
    // Only lines with ": " and a digit can hold a value; skip the rest without more work.
    if (line.find(':') != std::string_view::npos &&
        (std::any_of(line.begin(), line.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
         trim(line).back() == ':'))
      harvest_line(line, line_no, ctx, &label, job);
    start = nl + 1;
    ++line_no;
  }
}

}  // namespace chimera::ingest::detail

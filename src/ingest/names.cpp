// Naming rules: which headers and keys are context and which are metrics, what unit a name or
// a cell carries, and how numbers and context values are written. docs/ingest.md lists them.
#include "ingest/internal.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>

namespace chimera::ingest::detail {

// ---- Arena ---------------------------------------------------------------------------------

std::string_view Arena::store(std::string_view s) {
  if (s.empty()) return {};
  if (s.size() > kMaxBlock / 4) {
    auto block = std::make_unique_for_overwrite<char[]>(s.size());
    std::memcpy(block.get(), s.data(), s.size());
    std::string_view view(block.get(), s.size());
    blocks_.push_back(std::move(block));  // cur_ stays in the block it was in
    return view;
  }
  if (left_ < s.size()) {
    std::size_t size = std::max(next_block_, s.size());
    blocks_.push_back(std::make_unique_for_overwrite<char[]>(size));
    cur_ = blocks_.back().get();
    left_ = size;
    next_block_ = std::min(kMaxBlock, next_block_ * 2);
  }
  std::memcpy(cur_, s.data(), s.size());
  std::string_view view(cur_, s.size());
  cur_ += s.size();
  left_ -= s.size();
  return view;
}

Context* Arena::new_context(Context c) {
  if (contexts_used_ == contexts_chunk_) {
    contexts_chunk_ = contexts_chunk_ == 0 ? 4 : std::min(kMaxContextChunk, contexts_chunk_ * 2);
    contexts_.push_back(std::make_unique<Context[]>(contexts_chunk_));
    contexts_used_ = 0;
  }
  Context* slot = &contexts_.back()[contexts_used_++];
  *slot = std::move(c);
  return slot;
}

std::uint64_t Arena::next_id() {
  static std::atomic<std::uint64_t> ids{1};
  return ids.fetch_add(1, std::memory_order_relaxed);
}

std::string_view Arena::intern(std::string_view s) {
  if (s.empty()) return {};
  // Tables intern the same few keys and values row after row: a small direct-mapped cache in
  // front of the hash set answers those without hashing the whole string. One per thread (a
  // thread parses one file at a time), emptied when it meets another arena.
  struct Recent {
    std::uint64_t arena = 0;
    std::array<std::string_view, 61> views{};
  };
  thread_local Recent recent;
  if (recent.arena != id_) {
    recent.arena = id_;
    recent.views.fill({});
  }
  const std::size_t n = s.size();
  const std::size_t slot =
      (n * 31 + static_cast<unsigned char>(s[0]) * 7 + static_cast<unsigned char>(s[n - 1]) * 13 +
       static_cast<unsigned char>(s[n / 2])) %
      recent.views.size();
  std::string_view& hit = recent.views[slot];
  if (hit.size() == n && (hit.data() == s.data() || std::memcmp(hit.data(), s.data(), n) == 0))
    return hit;
  auto it = interned_.find(s);
  if (it != interned_.end()) {
    hit = *it;
    return *it;
  }
  auto view = store(s);
  interned_.insert(view);
  hit = view;
  return view;
}

// ---- small string helpers ------------------------------------------------------------------

namespace {

using chimera::text::to_lower;
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// The first N bytes of `s` in ASCII lower case, written into `buf`: short keys and tokens
// compared without a std::string per call.
template <std::size_t N>
std::string_view lower_prefix(std::string_view s, char (&buf)[N]) {
  const std::size_t n = std::min(s.size(), N);
  for (std::size_t k = 0; k < n; ++k) buf[k] = to_lower(s[k]);
  return {buf, n};
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
void split_tokens(std::string_view key, std::vector<std::string_view>& tokens) {
  tokens.clear();
  std::size_t start = 0;
  while (start <= key.size()) {
    auto end = key.find('_', start);
    if (end == std::string_view::npos) end = key.size();
    if (end > start) tokens.push_back(key.substr(start, end - start));
    start = end + 1;
  }
}
std::vector<std::string_view> split_tokens(std::string_view key) {
  std::vector<std::string_view> tokens;
  split_tokens(key, tokens);
  return tokens;
}

void join_tokens(const std::vector<std::string_view>& tokens, std::string& out) {
  out.clear();
  for (const auto& t : tokens) {
    if (!out.empty()) out += '_';
    out += t;
  }
}
std::string join_tokens(const std::vector<std::string_view>& tokens) {
  std::string out;
  join_tokens(tokens, out);
  return out;
}

constexpr std::array<std::string_view, 26> kStatTokens = {
    "mean", "avg",   "average", "median", "p50",     "p90",  "p95",   "p99",   "p999",
    "min",  "max",   "std",     "stdev",  "stddev",  "var",  "sum",   "total", "used",
    "free", "value", "values",  "peak",   "current", "last", "first", "rate"};

constexpr std::array<std::string_view, 12> kCountTokens = {
    "count", "tokens", "chars",  "characters", "samples",  "runs",
    "n",     "num",    "length", "completed",  "requests", "words"};

// Words before "per_second" that make it a token rate.
constexpr std::array<std::string_view, 8> kTokenCounts = {
    "predicted", "prompt", "eval", "generated", "decode", "prefill", "generation", "output"};

}  // namespace

std::string_view& field_of(Context& c, Field f) {
  switch (f) {
    case Field::model:
      return c.model;
    case Field::quantization:
      return c.quantization;
    case Field::num_gpu:
      return c.num_gpu;
    case Field::num_ctx:
      return c.num_ctx;
    case Field::temperature:
      return c.temperature;
    case Field::run:
      break;
  }
  return c.run;
}

// ---- units ---------------------------------------------------------------------------------

UnitConv unit_from_text(std::string_view raw) {
  UnitConv u;
  raw = trim(raw);
  if (raw.empty()) return u;
  u.present = true;
  u.unit = raw;
  if (raw == "B") {  // case matters: "b" is bits
    u.unit = "MB";
    u.factor = 1.0 / 1048576.0;
    u.known = true;
    return u;
  }
  std::string l = to_lower(raw);
  // Greek mu and the micro sign both spell microseconds.
  if (l == "\xc2\xb5s" || l == "\xce\xbcs") l = "us";
  struct Entry {
    std::string_view name;
    std::string_view unit;
    double factor;
  };
  static constexpr Entry kUnits[] = {
      {"ns", "ms", 1e-6},
      {"nsec", "ms", 1e-6},
      {"nsecond", "ms", 1e-6},
      {"nseconds", "ms", 1e-6},
      {"nanosecond", "ms", 1e-6},
      {"nanoseconds", "ms", 1e-6},
      {"us", "ms", 1e-3},
      {"usec", "ms", 1e-3},
      {"usecond", "ms", 1e-3},
      {"useconds", "ms", 1e-3},
      {"microsecond", "ms", 1e-3},
      {"microseconds", "ms", 1e-3},
      {"ms", "ms", 1},
      {"msec", "ms", 1},
      {"msecond", "ms", 1},
      {"mseconds", "ms", 1},
      {"millisecond", "ms", 1},
      {"milliseconds", "ms", 1},
      {"s", "ms", 1e3},
      {"sec", "ms", 1e3},
      {"secs", "ms", 1e3},
      {"second", "ms", 1e3},
      {"seconds", "ms", 1e3},
      {"min", "ms", 6e4},
      {"mins", "ms", 6e4},
      {"minute", "ms", 6e4},
      {"minutes", "ms", 6e4},
      {"h", "ms", 3.6e6},
      {"hr", "ms", 3.6e6},
      {"hrs", "ms", 3.6e6},
      {"hour", "ms", 3.6e6},
      {"hours", "ms", 3.6e6},
      {"byte", "MB", 1.0 / 1048576.0},
      {"bytes", "MB", 1.0 / 1048576.0},
      {"kb", "MB", 1.0 / 1024.0},
      {"kib", "MB", 1.0 / 1024.0},
      {"kbyte", "MB", 1.0 / 1024.0},
      {"kbytes", "MB", 1.0 / 1024.0},
      {"kilobytes", "MB", 1.0 / 1024.0},
      {"mb", "MB", 1},
      {"mib", "MB", 1},
      {"mbyte", "MB", 1},
      {"mbytes", "MB", 1},
      {"megabytes", "MB", 1},
      {"gb", "MB", 1024},
      {"gib", "MB", 1024},
      {"gbyte", "MB", 1024},
      {"gbytes", "MB", 1024},
      {"gigabytes", "MB", 1024},
      {"tb", "MB", 1048576},
      {"tib", "MB", 1048576},
      {"tbyte", "MB", 1048576},
      {"%", "%", 1},
      {"pct", "%", 1},
      {"percent", "%", 1},
      {"tok/s", "tokens/s", 1},
      {"tokens/s", "tokens/s", 1},
      {"token/s", "tokens/s", 1},
      {"t/s", "tokens/s", 1},
      {"tps", "tokens/s", 1},
      {"tok/sec", "tokens/s", 1},
      {"tokens/sec", "tokens/s", 1},
      {"tokens/second", "tokens/s", 1},
      {"toks/s", "tokens/s", 1},
      {"tk/s", "tokens/s", 1},
      {"tokens per second", "tokens/s", 1},
  };
  for (const auto& e : kUnits) {
    if (l == e.name) {
      u.unit = e.unit;
      u.factor = e.factor;
      u.known = true;
      return u;
    }
  }
  return u;
}

// ---- names ---------------------------------------------------------------------------------

std::string normalize_key(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() + 4);
  char prev = 0;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    // Greek delta ("Throughput Δ") means a difference: spell it.
    if (c == '\xCE' && i + 1 < raw.size() && (raw[i + 1] == '\x94' || raw[i + 1] == '\xB4')) {
      if (!out.empty() && out.back() != '_') out += '_';
      out += "delta_";
      ++i;
      prev = '_';
      continue;
    }
    if (is_alpha(c) || is_digit(c)) {
      // camelCase: "meanTtftMs" -> "mean_ttft_ms".
      if (is_upper(c) && prev != 0 && (prev >= 'a' && prev <= 'z') && !out.empty() &&
          out.back() != '_')
        out += '_';
      out += to_lower(c);
    } else if (c == '%') {
      if (!out.empty() && out.back() != '_') out += '_';
      out += "pct_";
    } else if (!out.empty() && out.back() != '_') {
      out += '_';
    }
    prev = c;
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

namespace {

struct MainKey {
  std::string_view key;
  Field field;
};
constexpr MainKey kMainKeys[] = {
    {"model", Field::model},
    {"model_name", Field::model},
    {"model_id", Field::model},
    {"model_tag", Field::model},
    {"llm", Field::model},
    {"quantization", Field::quantization},
    {"quantisation", Field::quantization},
    {"quant", Field::quantization},
    {"quant_type", Field::quantization},
    {"quantization_type", Field::quantization},
    {"quantization_level", Field::quantization},
    {"num_gpu", Field::num_gpu},
    {"num_gpu_layers", Field::num_gpu},
    {"gpu_layers", Field::num_gpu},
    {"n_gpu_layers", Field::num_gpu},
    {"ngl", Field::num_gpu},
    {"num_ctx", Field::num_ctx},
    {"n_ctx", Field::num_ctx},
    {"ctx", Field::num_ctx},
    {"ctx_size", Field::num_ctx},
    {"ctx_len", Field::num_ctx},
    {"context_size", Field::num_ctx},
    {"context_length", Field::num_ctx},
    {"context_window", Field::num_ctx},
    {"temperature", Field::temperature},
    {"temp", Field::temperature},
    {"run", Field::run},
    {"run_id", Field::run},
    {"run_index", Field::run},
    {"run_number", Field::run},
    {"run_no", Field::run},
    {"iteration", Field::run},
    {"iter", Field::run},
    {"trial", Field::run},
    {"repeat", Field::run},
    {"repetition", Field::run},
    {"rep", Field::run},
};

constexpr std::array<std::string_view, 34> kExtraKeys = {
    "top_p",      "top_k",       "repeat_penalty", "num_predict",  "num_batch",   "num_thread",
    "batch_size", "concurrency", "parallel",       "num_parallel", "backend",     "seed",
    "min_p",      "mirostat",    "keep_alive",     "config",       "config_name", "configuration",
    "profile",    "preset",      "mode",           "device",       "dtype",       "precision",
    "engine",     "tag",         "name",           "prompt",       "scenario",    "label",
    "stream",     "context",     "host",           "version"};

constexpr std::array<std::string_view, 10> kErrorKeys = {
    "error",     "errors",  "error_message",  "error_msg",  "err",
    "exception", "failure", "failure_reason", "error_type", "traceback"};
constexpr std::array<std::string_view, 6> kSuccessKeys = {"success",   "ok",         "passed",
                                                          "succeeded", "successful", "succeed"};
constexpr std::array<std::string_view, 9> kOptionsKeys = {
    "options",       "parameters", "params",          "settings",      "generation_options",
    "model_options", "sampling",   "request_options", "config_options"};

bool is_id_like(std::string_view k) {
  if (k == "id" || k == "index" || k == "idx" || k == "timestamp" || k == "time_stamp" ||
      k == "epoch" || k == "date" || k == "datetime" || k == "ts" || k == "pid" || k == "uuid")
    return true;
  return k.substr(0, 3) == "id_" || ends_with(k, "_id") || ends_with(k, "_index") ||
         ends_with(k, "_idx") || ends_with(k, "_timestamp") || ends_with(k, "_datetime") ||
         ends_with(k, "_date") || ends_with(k, "_at") || ends_with(k, "_version") ||
         ends_with(k, "_name") || ends_with(k, "_uuid") || ends_with(k, "_text");
}

// A unit token at the end of a normalised name; returns the UnitConv or present=false.
UnitConv name_unit_token(std::string_view t) {
  static constexpr std::array<std::string_view, 29> kTokens = {
      "ms",     "msec",  "millis", "milliseconds", "s",      "sec",  "secs",        "seconds",
      "second", "us",    "usec",   "microseconds", "ns",     "nsec", "nanoseconds", "minutes",
      "mins",   "hours", "hrs",    "bytes",        "kb",     "kib",  "mb",          "mib",
      "gb",     "gib",   "tb",     "pct",          "percent"};
  if (!one_of(t, kTokens)) return {};
  if (t == "millis") return unit_from_text("ms");
  return unit_from_text(t);
}

// Throughput spelled in a name: returns the length (in tokens) of the match at `i`.
std::size_t throughput_at(const std::vector<std::string_view>& t, std::size_t i) {
  auto at = [&](std::size_t k) -> std::string_view { return i + k < t.size() ? t[i + k] : ""; };
  if (t[i] == "tps" || t[i] == "tokens_per_s") return 1;
  bool tok = t[i] == "tokens" || t[i] == "token" || t[i] == "tok" || t[i] == "toks";
  if (!tok) return 0;
  if (at(1) == "s" || at(1) == "sec" || at(1) == "second") return 2;
  if (at(1) == "per" && (at(2) == "s" || at(2) == "sec" || at(2) == "second" || at(2) == "seconds"))
    return 3;
  return 0;
}

}  // namespace

const NameInfo& classify_name(std::string_view raw) {
  // The same headers and keys come back in file after file: remember them per thread.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  thread_local std::unordered_map<std::string, NameInfo, Hash, std::equal_to<>> cache;
  auto it = cache.find(raw);
  if (it != cache.end()) return it->second;
  if (cache.size() > 8192) cache.clear();
  return cache.emplace(std::string(raw), classify_name_uncached(raw)).first->second;
}

NameInfo classify_name_uncached(std::string_view raw) {
  NameInfo info;
  raw = trim(raw);
  // A unit in parentheses or brackets at the end: "Generation Time (ms)", "Memory [GB]".
  if (!raw.empty() && (raw.back() == ')' || raw.back() == ']')) {
    char open = raw.back() == ')' ? '(' : '[';
    auto pos = raw.rfind(open);
    if (pos != std::string_view::npos && pos > 0) {
      auto u = unit_from_text(raw.substr(pos + 1, raw.size() - pos - 2));
      if (u.known) {
        info.unit = u;
        raw = trim(raw.substr(0, pos));
      }
    }
  }
  info.key = normalize_key(raw);
  const std::string& k = info.key;

  for (const auto& m : kMainKeys) {
    if (k == m.key) {
      info.role = Role::context_main;
      info.field = m.field;
      return info;
    }
  }
  if (one_of(k, kErrorKeys)) {
    info.role = Role::error;
    return info;
  }
  if (one_of(k, kSuccessKeys)) {
    info.role = Role::success;
    return info;
  }
  if (k == "unit" || k == "units") {
    info.role = Role::unit;
    return info;
  }
  if (one_of(k, kOptionsKeys)) {
    info.role = Role::options;
    return info;
  }
  if (one_of(k, kExtraKeys) || is_id_like(k)) {
    info.role = Role::context_extra;
    return info;
  }

  info.role = Role::metric;
  auto tokens = split_tokens(k);
  if (tokens.empty()) {
    info.stem = "value";
    return info;
  }
  // "time_to_first_token" -> "ttft" (before the rates: "time_to_first_token_s" is a time).
  for (std::size_t i = 0; i + 3 < tokens.size(); ++i) {
    if (tokens[i] == "time" && tokens[i + 1] == "to" && tokens[i + 2] == "first" &&
        (tokens[i + 3] == "token" || tokens[i + 3] == "tokens")) {
      tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(i),
                   tokens.begin() + static_cast<std::ptrdiff_t>(i + 4));
      tokens.insert(tokens.begin() + static_cast<std::ptrdiff_t>(i), "ttft");
      break;
    }
  }
  // Throughput first: "tokens_s" is tokens per second, not a time in seconds.
  bool throughput = false;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    auto n = throughput_at(tokens, i);
    if (n == 0) continue;
    tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(i),
                 tokens.begin() + static_cast<std::ptrdiff_t>(i + n));
    tokens.insert(tokens.begin() + static_cast<std::ptrdiff_t>(i), "tokens_per_s");
    throughput = true;
    break;
  }
  // Other rates: "X_per_second". llama-server's predicted_per_second and prompt_per_second
  // are tokens per second; anything else per second keeps "1/s".
  bool rate = false;
  if (!throughput && tokens.size() >= 3 && tokens[tokens.size() - 2] == "per") {
    auto last = tokens.back();
    if (last == "s" || last == "sec" || last == "second" || last == "seconds") {
      tokens.resize(tokens.size() - 2);
      if (std::any_of(tokens.begin(), tokens.end(),
                      [](auto t) { return one_of(t, kTokenCounts); })) {
        tokens.push_back("tokens_per_s");
        throughput = true;
      } else {
        tokens.push_back("per_s");
        rate = true;
      }
    }
  }
  if (throughput) {
    info.unit = unit_from_text("tokens/s");
  } else if (rate) {
    info.unit = unit_from_text("1/s");
  } else {
    // A unit token last, or second to last before a statistic ("eval_s_mean").
    std::size_t pos = tokens.size();
    if (tokens.size() >= 1 && name_unit_token(tokens.back()).present) {
      pos = tokens.size() - 1;
    } else if (tokens.size() >= 3 && one_of(tokens.back(), kStatTokens) &&
               name_unit_token(tokens[tokens.size() - 2]).present) {
      pos = tokens.size() - 2;
    }
    if (pos < tokens.size()) {
      if (!info.unit.present) info.unit = name_unit_token(tokens[pos]);
      tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(pos));
    } else if (!info.unit.present && tokens.back() == "duration") {
      info.duration_ns = true;  // Ollama's *_duration fields are nanoseconds
    }
  }
  info.generic = !tokens.empty() && std::all_of(tokens.begin(), tokens.end(),
                                                [](auto t) { return one_of(t, kStatTokens); });
  if (tokens.empty()) {
    tokens.push_back(info.unit.present && info.unit.unit == "ms" ? "time" : "value");
    info.generic = true;
  }
  info.stem = join_tokens(tokens);
  return info;
}

MetricSpec finalize_metric(const NameInfo& info, const UnitConv& cell_unit) {
  MetricSpec spec;
  UnitConv u = cell_unit.present ? cell_unit : info.unit;
  if (!u.present && info.duration_ns) u = unit_from_text("ns");
  spec.unit = u.present ? u.unit : std::string_view{};
  spec.factor = u.present ? u.factor : 1.0;

  // Called for every metric of every file: the token lists are kept per thread and reused.
  thread_local std::vector<std::string_view> tokens, core;
  thread_local std::string c;
  split_tokens(info.stem, tokens);
  // Ollama's names: load / prompt_eval / eval / total timed in any unit are *_duration.
  if (u.known && u.unit == "ms") {
    core.clear();
    std::size_t first_core = tokens.size();
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (!one_of(tokens[i], kStatTokens) ||
          (tokens[i] == "total" && core.empty() && i + 1 == tokens.size())) {
        if (first_core == tokens.size()) first_core = i;
        core.push_back(tokens[i]);
      }
    }
    join_tokens(core, c);
    // llama-server's timings.prompt_ms and predicted_ms are Ollama's prompt_eval and eval.
    if (c == "prompt" || c == "predicted") {
      auto at = tokens.begin() + static_cast<std::ptrdiff_t>(first_core);
      *at = c == "prompt" ? "prompt_eval" : "eval";
      c = *at;
    }
    if (c == "load" || c == "prompt_eval" || c == "eval" || c == "total") {
      std::size_t insert_at = first_core + core.size();
      tokens.insert(tokens.begin() + static_cast<std::ptrdiff_t>(insert_at), "duration");
    }
  }
  spec.name = join_tokens(tokens);
  if (spec.name.empty()) spec.name = "value";

  bool has_ttft = std::find(tokens.begin(), tokens.end(), "ttft") != tokens.end();
  if (spec.unit == "tokens/s") {
    spec.kind = MetricKind::throughput;
  } else if (has_ttft && (spec.unit == "ms" || spec.unit.empty())) {
    spec.kind = MetricKind::ttft;
  } else if (spec.unit == "ms") {
    spec.kind = MetricKind::time;
  } else if (spec.unit == "MB") {
    spec.kind = MetricKind::memory;
  } else if (spec.unit == "%") {
    spec.kind = MetricKind::percent;
  } else if (spec.unit.empty()) {
    bool counted =
        std::any_of(tokens.begin(), tokens.end(), [](auto t) { return one_of(t, kCountTokens); });
    spec.kind = counted ? MetricKind::count : MetricKind::other;
  } else {
    spec.kind = MetricKind::other;
  }
  return spec;
}

// ---- numbers and cells ---------------------------------------------------------------------

bool parse_number(std::string_view cell, double* value, std::string_view* unit) {
  std::string_view s = trim(cell);
  if (s.empty()) return false;
  if (s.front() == '+') s.remove_prefix(1);
  // The numeric part: digits, one '.', a sign at the start or after an exponent, an exponent,
  // and grouping commas between digits ("22,80,000" as Nsight Compute writes in some locales).
  std::size_t i = 0;
  bool digits = false, dot = false, exp = false, commas = false;
  if (i < s.size() && s[i] == '-') ++i;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (is_digit(c)) {
      digits = true;
    } else if (c == '.' && !dot && !exp) {
      dot = true;
    } else if ((c == 'e' || c == 'E') && digits && !exp && i + 1 < s.size() &&
               (is_digit(s[i + 1]) ||
                ((s[i + 1] == '-' || s[i + 1] == '+') && i + 2 < s.size() && is_digit(s[i + 2])))) {
      exp = true;
      if (s[i + 1] == '-' || s[i + 1] == '+') ++i;
    } else if (c == ',' && digits && !dot && !exp && i + 1 < s.size() && is_digit(s[i + 1]) &&
               is_digit(s[i - 1])) {
      commas = true;
    } else {
      break;
    }
  }
  if (!digits) return false;
  std::string_view num = s.substr(0, i);
  std::string_view rest = trim(s.substr(i));
  if (!rest.empty()) {
    if (rest.size() > 20) return false;
    for (char c : rest) {
      auto uc = static_cast<unsigned char>(c);
      bool ok = is_alpha(c) || c == '/' || c == '%' || uc >= 0x80 || c == ' ';
      if (!ok) return false;
    }
    // Spaces only in "tokens per second".
    if (rest.find(' ') != std::string_view::npos && !unit_from_text(rest).known) return false;
  }
  char buf[64];
  const char* first = num.data();
  const char* last = num.data() + num.size();
  if (commas) {
    if (num.size() >= sizeof(buf)) return false;
    std::size_t n = 0;
    for (char c : num)
      if (c != ',') buf[n++] = c;
    first = buf;
    last = buf + n;
  }
  double v = 0;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last || !std::isfinite(v)) return false;
  *value = v;
  if (unit != nullptr) *unit = rest;
  return true;
}

bool is_missing(std::string_view cell) {
  cell = trim(cell);
  if (cell.empty()) return true;
  // A number is never a placeholder (the cell of nearly every call: short numbers).
  if (cell.size() > 4 || is_digit(cell.front())) return false;
  static constexpr std::array<std::string_view, 10> kMissing = {
      "-", "--", "n/a", "na", "nan", "null", "none", "nil", "?", "\xe2\x80\x94"};
  char buf[4];
  return one_of(lower_prefix(cell, buf), kMissing);  // the whole cell: 4 bytes at most
}

namespace {
// `needle` is lower case.
bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    std::size_t k = 0;
    while (k < needle.size() && to_lower(hay[i + k]) == needle[k]) ++k;
    if (k == needle.size()) return true;
  }
  return false;
}
}  // namespace

bool looks_like_error(std::string_view text) {
  text = trim(text);
  if (text.size() > 400) return false;  // a log or a document, not a failed cell
  static constexpr std::array<std::string_view, 16> kPatterns = {
      "failed to",   "failure",     "error",     "exception",       "timed out", "timeout",
      "refused",     "unreachable", "traceback", "out of memory",   "could not", "cannot connect",
      "unavailable", "winerror",    "errno",     "connection reset"};
  for (auto p : kPatterns)
    if (icontains(text, p)) return true;
  if (text.size() > 6) return false;
  std::string l = to_lower(text);
  return l == "failed" || l == "fail" || l == "oom";
}

bool benign_status(std::string_view text) {
  std::string l = to_lower(trim(text));
  static constexpr std::array<std::string_view, 17> kBenign = {
      "",    "ok",  "none", "null", "0",  "false",    "no",     "success", "succeeded",
      "n/a", "nan", "-",    "[]",   "{}", "no error", "passed", "pass"};
  return one_of(l, kBenign);
}

bool falsy(std::string_view text) {
  std::string l = to_lower(trim(text));
  return l == "false" || l == "no" || l == "0" || l == "failed" || l == "fail" || l == "n" ||
         l == "f";
}

namespace {

// Whether `v` is already the shortest text of the number it spells, so that parsing and
// printing it again would give it back: "80", "512", "-3", "0.6", "12.25". Digits with at most
// one point, no sign but '-', no leading zeros, no trailing zeros after the point, at most six
// significant digits (float32 keeps six, so its shortest text is these digits) and at most five
// before the point or two zeros after "0." (so that the fixed form is no longer than the
// exponent form that std::to_chars would choose: "100000" prints as "1e+05"). Most context
// values (layers, context sizes, temperatures, run numbers) are such; the check saves a
// parse and two std::to_chars calls per value. Held to the full path by a test.
bool already_shortest(std::string_view v) {
  std::size_t i = 0;
  if (i < v.size() && v[i] == '-') ++i;
  const std::size_t int_begin = i;
  while (i < v.size() && is_digit(v[i])) ++i;
  const std::size_t int_digits = i - int_begin;
  if (int_digits == 0 || int_digits > 5) return false;
  const bool zero_int = v[int_begin] == '0';
  if (zero_int && int_digits > 1) return false;  // a leading zero
  std::size_t significant = zero_int ? 0 : int_digits;
  if (i == v.size()) return !(zero_int && int_begin == 1);  // "-0" is left to the full path
  if (v[i] != '.') return false;
  ++i;
  const std::size_t frac_begin = i;
  while (i < v.size() && is_digit(v[i])) ++i;
  if (i != v.size() || i == frac_begin || v.back() == '0') return false;
  std::size_t frac = i - frac_begin;
  if (zero_int) {
    std::size_t zeros = 0;
    while (v[frac_begin + zeros] == '0') ++zeros;
    if (zeros > 2) return false;
    frac -= zeros;
  }
  return significant + frac <= 6;
}

}  // namespace

std::string_view normalize_context_value(std::string_view value, char (&buf)[40]) {
  value = trim(value);
  if (value.empty() || value.size() >= 40) return value;
  char c = value.front();
  if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.')) return value;
  if (already_shortest(value)) return value;
  double v = 0;
  std::string_view unit;
  if (parse_number(value, &v, &unit) && unit.empty()) {
    // A float32 setting written out as a double ("0.800000011920929") reads as the float.
    const std::string text = shortest_number_text(v);
    if (text.size() < sizeof(buf)) {
      std::memcpy(buf, text.data(), text.size());
      return std::string_view(buf, text.size());
    }
  }
  return value;
}

std::string_view quantization_from(std::string_view s) {
  std::string_view found;
  std::size_t start = 0;
  while (start < s.size()) {
    static constexpr ByteSet kSeparators("-:/ ");
    auto end = kSeparators.find_in(s, start);
    if (end == std::string_view::npos) end = s.size();
    auto piece = s.substr(start, end - start);
    // Lowercased into a small buffer: the names below are at most five characters, and the
    // "q4"/"iq3" forms are told by their first three (no string per piece: this runs on every
    // heading and model name).
    static constexpr std::array<std::string_view, 13> kNames = {
        "f16",  "fp16", "bf16", "f32",  "fp32", "fp8",  "int8",
        "int4", "qat",  "awq",  "gptq", "nf4",  "mxfp4"};
    char buf[5];
    const std::string_view l = lower_prefix(piece, buf);
    bool q = (l.size() >= 2 && l[0] == 'q' && is_digit(l[1])) ||
             (l.size() >= 3 && l[0] == 'i' && l[1] == 'q' && is_digit(l[2]));
    if (q || (piece.size() == l.size() && one_of(l, kNames))) found = piece;
    start = end + 1;
  }
  return found;
}

std::string_view model_like(std::string_view text) {
  std::size_t start = 0;
  while (start < text.size()) {
    static constexpr ByteSet kSeparators(" \t()[],;`*");
    auto end = kSeparators.find_in(text, start);
    if (end == std::string_view::npos) end = text.size();
    auto word = text.substr(start, end - start);
    auto colon = word.find(':');
    if (colon != std::string_view::npos && colon > 0 && colon + 1 < word.size() &&
        is_alpha(word[0]) && (is_alpha(word[colon + 1]) || is_digit(word[colon + 1])) &&
        word.find("://") == std::string_view::npos)
      return word;
    start = end + 1;
  }
  return {};
}

// Spreads and tails are not a configuration's typical figure.
bool central_metric(std::string_view metric) {
  std::size_t start = 0;
  while (start <= metric.size()) {
    auto end = metric.find('_', start);
    if (end == std::string_view::npos) end = metric.size();
    auto t = metric.substr(start, end - start);
    // Spreads and tails, and differences between configurations (not a configuration's own).
    if (t == "std" || t == "stdev" || t == "stddev" || t == "var" || t == "min" || t == "max" ||
        t == "p90" || t == "p95" || t == "p99" || t == "p999" || t == "sum" || t == "peak" ||
        t == "cv" || t == "delta" || t == "diff" || t == "difference" || t == "change" ||
        t == "penalty" || t == "improvement" || t == "gain" || t == "reduction" ||
        t == "increase" || t == "decrease" || t == "ratio" || t == "speedup" || t == "vs" ||
        t == "overhead" || t == "tp")
      return false;
    start = end + 1;
  }
  return true;
}

bool is_runs_key(std::string_view k) {
  static constexpr std::array<std::string_view, 9> kRuns = {
      "runs",    "run_results", "iterations", "trials",      "repetitions",
      "repeats", "reps",        "run_data",   "measurements"};
  return one_of(k, kRuns);
}

bool is_model_object_key(std::string_view k) {
  return k == "model" || k == "model_info";
}

bool set_context(Context& c, Field f, std::string_view raw, Arena& arena) {
  char buf[40];
  std::string_view v = normalize_context_value(raw, buf);
  if (v.empty() || v.size() > 160) return false;
  if (f == Field::temperature) {
    double t = 0;
    std::string_view unit;
    if (!parse_number(v, &t, &unit) || !unit.empty() || t < 0 || t > 5) return false;
  }
  field_of(c, f) = arena.intern(v);
  return true;
}

void set_extra(Context& c, std::string_view key, std::string_view raw, Arena& arena) {
  char buf[40];
  std::string_view v = normalize_context_value(raw, buf);
  if (v.empty() || v.size() > 96) return;
  // Long values (timestamps, prompts) are mostly one of a kind: copying beats a hash insert.
  auto value = v.size() > 24 ? arena.store(v) : arena.intern(v);
  for (auto& kv : c.extra) {
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  }
  c.extra.emplace_back(arena.intern(key), value);
}

void finish_context(Context& c, Arena& arena) {
  (void)arena;
  if (c.quantization.empty()) {
    auto tag = c.find("tag");
    auto q = tag.empty() ? std::string_view{} : quantization_from(tag);
    if (q.empty() && !c.model.empty()) q = quantization_from(c.model);
    c.quantization = q;  // a view into the interned model or tag
  }
  std::sort(c.extra.begin(), c.extra.end());
}

}  // namespace chimera::ingest::detail

namespace chimera::ingest {

std::string_view Context::find(std::string_view key) const {
  if (key == "model") return model;
  if (key == "quantization") return quantization;
  if (key == "num_gpu") return num_gpu;
  if (key == "num_ctx") return num_ctx;
  if (key == "temperature") return temperature;
  if (key == "run") return run;
  for (const auto& kv : extra)
    if (kv.first == key) return kv.second;
  return {};
}

std::string Context::config_key() const {
  std::string out;
  auto add = [&](std::string_view k, std::string_view v) {
    if (v.empty()) return;
    if (!out.empty()) out += ' ';
    out += k;
    out += '=';
    out += v;
  };
  add("model", model);
  add("quantization", quantization);
  add("num_gpu", num_gpu);
  add("num_ctx", num_ctx);
  add("temperature", temperature);
  static constexpr std::string_view kParams[] = {
      "top_p",      "top_k",       "repeat_penalty", "num_predict", "num_batch", "num_thread",
      "batch_size", "concurrency", "parallel",       "backend",     "config"};
  for (auto k : kParams) add(k, find(k));
  return out;
}

std::string_view to_string(MetricKind kind) {
  switch (kind) {
    case MetricKind::throughput:
      return "throughput";
    case MetricKind::ttft:
      return "ttft";
    case MetricKind::time:
      return "time";
    case MetricKind::memory:
      return "memory";
    case MetricKind::percent:
      return "percent";
    case MetricKind::count:
      return "count";
    case MetricKind::other:
      break;
  }
  return "other";
}

std::string_view to_string(FileType type) {
  switch (type) {
    case FileType::csv:
      return "csv";
    case FileType::json:
      return "json";
    case FileType::markdown:
      return "md";
    case FileType::text:
      break;
  }
  return "txt";
}

}  // namespace chimera::ingest

// Settings written in folder and file names ("gpu100_ctx512", "runtime=tokio,rep=3", "run_2",
// "llama3.1-8b-q4_k_m"), and numbers printed for people. docs/ingest.md lists the rules.
#include "ingest/internal.hpp"

#include <chimera/ingest/experiment.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>

namespace chimera::ingest {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return c >= 'a' && c <= 'z';
}

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// Shortest text that reads back as `v`; a double that is a float32 widened ("0.800000011920929")
// prints as the float it was ("0.8").
std::string shortest(double v) {
  char buf[64];
  const auto f = static_cast<float>(v);
  if (std::isfinite(f) && std::fabs(static_cast<double>(f) - v) <= std::fabs(v) * 1e-15) {
    auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), f);
    if (ec == std::errc()) return std::string(buf, p);
  }
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, p) : std::string("?");
}

}  // namespace

std::string format_number(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "n/a" : (v > 0 ? "inf" : "-inf");
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-3) return fmt::format("{:.3g}", v);
  if (a >= 1000) return fmt::format("{:.0f}", v);
  // 4 significant digits, trailing zeros dropped ("52.3", not "52.30").
  std::string s = fmt::format("{:.4g}", v);
  if (s.find('e') != std::string::npos) s = fmt::format("{:.0f}", v);
  return s;
}

namespace detail {

std::string shortest_number_text(double v) {
  return shortest(v);
}

std::string canonical_setting_key(std::string_view raw) {
  std::string k = normalize_key(raw);
  struct Alias {
    std::string_view from, to;
  };
  static constexpr Alias kAliases[] = {
      {"gpu", "num_gpu"},
      {"gpus", "num_gpu"},
      {"ngl", "num_gpu"},
      {"gpu_layers", "num_gpu"},
      {"gpulayers", "num_gpu"},
      {"layers", "num_gpu"},
      {"n_gpu_layers", "num_gpu"},
      {"num_gpu_layers", "num_gpu"},
      {"ctx", "num_ctx"},
      {"context", "num_ctx"},
      {"n_ctx", "num_ctx"},
      {"ctx_size", "num_ctx"},
      {"context_size", "num_ctx"},
      {"ctx_len", "num_ctx"},
      {"context_length", "num_ctx"},
      {"temp", "temperature"},
      {"t", "temperature"},
      {"tmp", "temperature"},
      {"topp", "top_p"},
      {"topk", "top_k"},
      {"bs", "batch_size"},
      {"batch", "batch_size"},
      {"threads", "num_thread"},
      {"thread", "num_thread"},
      {"np", "parallel"},
      {"slots", "parallel"},
      {"quant", "quantization"},
      {"q", "quantization"},
      {"quantisation", "quantization"},
      {"conc", "concurrency"},
      {"agents", "concurrency"},
      {"n_predict", "num_predict"},
      {"max_tokens", "num_predict"},
      {"model_name", "model"},
      {"llm", "model"},
  };
  for (const auto& a : kAliases)
    if (k == a.from) return std::string(a.to);
  return k;
}

std::string_view setting_label(std::string_view key) {
  struct Label {
    std::string_view key, label;
  };
  static constexpr Label kLabels[] = {
      {"num_gpu", "GPU layers"},
      {"num_ctx", "context size"},
      {"temperature", "temperature"},
      {"model", "model"},
      {"quantization", "quantisation"},
      {"top_p", "top-p"},
      {"top_k", "top-k"},
      {"batch_size", "batch size"},
      {"num_thread", "threads"},
      {"parallel", "parallel slots"},
      {"concurrency", "concurrency"},
      {"num_predict", "tokens to generate"},
  };
  for (const auto& l : kLabels)
    if (key == l.key) return l.label;
  return {};
}

bool is_repetition_key(std::string_view k) {
  static constexpr std::array<std::string_view, 22> kKeys = {
      "run",        "rep",    "repeat",   "repetition", "trial",  "iter",
      "iteration",  "seed",   "attempt",  "round",      "sample", "timestamp",
      "time_stamp", "date",   "datetime", "epoch",      "run_id", "run_index",
      "run_number", "run_no", "id",       "uuid"};
  if (one_of(k, kKeys)) return true;
  auto ends = [&](std::string_view s) {
    return k.size() > s.size() && k.substr(k.size() - s.size()) == s;
  };
  return ends("_id") || ends("_index") || ends("_idx") || ends("timestamp") || ends("_at") ||
         ends("date") || ends("datetime") || ends("_time") || k.substr(0, 3) == "id_";
}

}  // namespace detail

namespace {

using detail::canonical_setting_key;

// Words that name what a file holds, not a setting.
bool document_word(std::string_view t) {
  static constexpr std::array<std::string_view, 34> kWords = {
      "report",  "reports",   "metrics",    "metric",   "results", "result", "summary",
      "data",    "output",    "outputs",    "raw",      "log",     "logs",   "stats",
      "bench",   "benchmark", "benchmarks", "analysis", "json",    "md",     "csv",
      "txt",     "run",       "runs",       "file",     "final",   "out",    "sweep",
      "records", "record",    "details",    "detail",   "table",   "tables"};
  return one_of(t, kWords);
}

bool repetition_word(std::string_view t) {
  static constexpr std::array<std::string_view, 12> kWords = {
      "run",       "rep",  "repeat",  "repetition", "trial",  "iter",
      "iteration", "seed", "attempt", "round",      "sample", "r"};
  return one_of(t, kWords);
}

// "0p6" -> "0.6", "512" -> "512", "0.80" -> "0.8"; empty when not a number.
std::string number_value(std::string_view t) {
  if (t.empty() || !(is_digit(t[0]) || (t[0] == '.' && t.size() > 1))) return {};
  std::string s(t);
  std::size_t p = s.find('p');
  if (p != std::string::npos && p > 0 && p + 1 < s.size() && s.find('.') == std::string::npos)
    s[p] = '.';
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v)) return {};
  return shortest(v);
}

bool all_digits(std::string_view t) {
  return !t.empty() && std::all_of(t.begin(), t.end(), is_digit);
}

bool model_family(std::string_view t) {
  static constexpr std::array<std::string_view, 22> kFamilies = {
      "llama",  "gemma",   "qwen",     "mistral",   "mixtral",   "phi",  "deepseek", "tinyllama",
      "smollm", "granite", "falcon",   "codellama", "starcoder", "olmo", "vicuna",   "gpt",
      "claude", "yi",      "internlm", "baichuan",  "opt",       "bloom"};
  for (auto f : kFamilies) {
    if (t.size() < f.size() || t.substr(0, f.size()) != f) continue;
    auto rest = t.substr(f.size());
    // "llama", "llama3", "llama3.1", "qwen2.5", "gpt2" (not "optimised", "phishing").
    if (rest.empty() ||
        std::all_of(rest.begin(), rest.end(), [](char c) { return is_digit(c) || c == '.'; }))
      return true;
  }
  return false;
}

// "8b", "270m", "1.5b", "70b".
bool model_size(std::string_view t) {
  if (t.size() < 2 || (t.back() != 'b' && t.back() != 'm')) return false;
  auto n = t.substr(0, t.size() - 1);
  return !n.empty() && is_digit(n[0]) &&
         std::all_of(n.begin(), n.end(), [](char c) { return is_digit(c) || c == '.'; });
}

bool model_variant(std::string_view t) {
  static constexpr std::array<std::string_view, 6> kVariants = {"instruct", "it",   "chat",
                                                                "base",     "code", "qat"};
  return one_of(t, kVariants);
}

bool quant_start(std::string_view t) {
  if (t.size() >= 2 && t[0] == 'q' && is_digit(t[1])) return true;
  if (t.size() >= 3 && t[0] == 'i' && t[1] == 'q' && is_digit(t[2])) return true;
  static constexpr std::array<std::string_view, 11> kNames = {
      "f16", "fp16", "bf16", "f32", "fp32", "fp8", "int8", "int4", "awq", "gptq", "nf4"};
  return one_of(t, kNames);
}

// The tail of a quantisation name split on '_': "q4" "_0", "q5" "_k" "_m".
bool quant_part(std::string_view t) {
  return t == "0" || t == "1" || t == "k" || t == "m" || t == "s" || t == "l" || t == "xs" ||
         t == "xxs";
}

struct Token {
  std::string text;
  char sep_before = 0;  // the separator before it (0 for the first)
};

std::vector<Token> tokenize(std::string_view s, std::string_view seps) {
  std::vector<Token> out;
  char sep = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    if (seps.find(s[i]) != std::string_view::npos) {
      sep = s[i++];
      continue;
    }
    std::size_t j = i;
    while (j < s.size() && seps.find(s[j]) == std::string_view::npos) ++j;
    out.push_back({std::string(s.substr(i, j - i)), sep});
    sep = 0;
    i = j;
  }
  return out;
}

// Settings in tokens without '=' (see read_segment). Unused tokens go to `rest`.
void read_tokens(const std::vector<Token>& tokens, SegmentReading& out,
                 std::vector<std::string>& rest) {
  auto setting = [&](std::string key, std::string value, bool rep) {
    out.settings.push_back({std::move(key), std::move(value), rep});
  };
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i].text;
    auto next = [&](std::size_t k) -> std::string_view {
      return i + k < tokens.size() ? std::string_view(tokens[i + k].text) : std::string_view{};
    };
    // Timestamps: 20251002-151824, 1759099000, 2025-10-02.
    if (all_digits(t) && t.size() >= 8) {
      std::string v = t;
      if (all_digits(next(1)) && next(1).size() == 6) v += "-" + tokens[++i].text;
      setting("timestamp", v, true);
      continue;
    }
    if (all_digits(t) && t.size() == 4 && (t[0] == '1' || t[0] == '2') && all_digits(next(1)) &&
        next(1).size() == 2 && all_digits(next(2)) && next(2).size() == 2) {
      setting("timestamp", t + "-" + tokens[i + 1].text + "-" + tokens[i + 2].text, true);
      i += 2;
      continue;
    }
    if (quant_start(t)) {
      std::string q = t;
      while (quant_part(next(1)) && tokens[i + 1].sep_before == '_') q += "_" + tokens[++i].text;
      setting("quantization", q, false);
      continue;
    }
    if (model_family(t)) {
      // Written as Ollama tags are: "gemma3_270m" -> "gemma3:270m", "llama3.1-8b-instruct" ->
      // "llama3.1:8b-instruct", so that names and columns agree.
      std::string m = t;
      char sep = ':';
      while (model_size(next(1)) || model_variant(next(1))) {
        m += sep + tokens[++i].text;
        sep = '-';
      }
      setting("model", m, false);
      continue;
    }
    // A word and a number run together: gpu100, ctx512, temp0p6, t0.8, run3.
    std::size_t a = 0;
    while (a < t.size() && is_alpha(t[a])) ++a;
    if (a > 0 && a < t.size()) {
      std::string value = number_value(std::string_view(t).substr(a));
      if (!value.empty()) {
        std::string word = t.substr(0, a);
        bool rep = repetition_word(word);
        setting(rep ? word : canonical_setting_key(word), value, rep);
        continue;
      }
    }
    // A word, then a number: gpu_80, temp-0.8, run_2, seed_7. After a document word the
    // number tells documents apart ("report_109", "results_1759099000"): a marker.
    if (a == t.size() && a > 0) {
      std::string value = number_value(next(1));
      if (!value.empty()) {
        const bool stamp = all_digits(next(1)) && next(1).size() >= 8;
        bool rep = repetition_word(t) || document_word(t) || stamp;
        setting(stamp ? "timestamp"
                : rep ? t
                      : canonical_setting_key(t),
                stamp ? std::string(next(1)) : value, rep);
        ++i;
        continue;
      }
      if (!document_word(t)) rest.push_back(t);
      continue;
    }
    rest.push_back(t);
  }
}

using chimera::text::to_lower;

}  // namespace

SegmentReading read_segment(std::string_view raw) {
  SegmentReading out;
  const std::string s = to_lower(detail::trim(raw));
  std::vector<std::string> rest;
  if (s.find('=') == std::string::npos) {
    read_tokens(tokenize(s, "_-, +;&"), out, rest);
  } else {
    // key=value pairs: "runtime=async-std_gpu_layers=80,ctx=512_rep=3", "quant=q4_0_ctx=512".
    // Between two '=' the first token (and any that start with a digit or continue a
    // quantisation) is the value, the rest names the next key.
    std::vector<std::string_view> parts;  // text around each '='
    std::size_t start = 0;
    for (std::size_t eq = s.find('='); eq != std::string::npos; eq = s.find('=', start)) {
      parts.push_back(std::string_view(s).substr(start, eq - start));
      start = eq + 1;
    }
    parts.push_back(std::string_view(s).substr(start));
    constexpr std::string_view kSeps = "_, ;&";
    std::string key;
    for (std::size_t p = 0; p < parts.size(); ++p) {
      auto tokens = tokenize(parts[p], kSeps);
      std::size_t value_end = 0;
      std::string value;
      if (p > 0 && !tokens.empty()) {
        value = tokens[0].text;
        value_end = 1;
        while (value_end < tokens.size() &&
               (is_digit(tokens[value_end].text[0]) || quant_part(tokens[value_end].text)) &&
               (p + 1 == parts.size() || value_end + 1 < tokens.size())) {
          value += "_" + tokens[value_end].text;
          ++value_end;
        }
      }
      if (p > 0 && !key.empty() && !value.empty()) {
        std::string k = canonical_setting_key(key);
        bool rep = repetition_word(k) || detail::is_repetition_key(k);
        std::string n = number_value(value);
        out.settings.push_back({k, n.empty() ? value : n, rep});
      }
      key.clear();
      if (p + 1 == parts.size()) {
        std::vector<Token> tail(tokens.begin() + static_cast<std::ptrdiff_t>(value_end),
                                tokens.end());
        read_tokens(tail, out, rest);
        break;
      }
      // The next key: the longest run of trailing words that is a known key, else the last word.
      std::size_t key_from = tokens.size();
      if (tokens.size() > value_end) key_from = tokens.size() - 1;
      for (std::size_t k = value_end; k + 1 < tokens.size(); ++k) {
        std::string joined;
        for (std::size_t j = k; j < tokens.size(); ++j)
          joined += (j > k ? "_" : "") + tokens[j].text;
        if (canonical_setting_key(joined) != joined || !detail::setting_label(joined).empty()) {
          key_from = k;
          break;
        }
      }
      std::vector<Token> before(tokens.begin() + static_cast<std::ptrdiff_t>(value_end),
                                tokens.begin() + static_cast<std::ptrdiff_t>(key_from));
      read_tokens(before, out, rest);
      for (std::size_t j = key_from; j < tokens.size(); ++j)
        key += (j > key_from ? "_" : "") + tokens[j].text;
    }
  }
  // The shape: the segment without its named words, digits as '#' ("baseline_report_run_1"
  // and "chimera_report_run_2" both "_report_run_#").
  out.shape = s;
  for (const auto& r : rest) {
    if (!out.rest.empty()) out.rest += '-';
    out.rest += r;
    auto at = out.shape.find(r);
    if (at != std::string::npos) out.shape.erase(at, r.size());
  }
  for (auto& c : out.shape)
    if (is_digit(c)) c = '#';
  return out;
}

}  // namespace chimera::ingest

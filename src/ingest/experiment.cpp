// The experiment behind a results tree: factors and levels, repetitions, per-configuration
// statistics over runs, effects and the best-vs-runner-up test. See experiment.hpp.
#include "ingest/internal.hpp"

#include <chimera/core/stats.hpp>
#include <chimera/ingest/experiment.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace chimera::ingest {

// ---- Student's t ----------------------------------------------------------------------------

namespace {

// Continued fraction of the regularised incomplete beta function (Lentz's method).
double beta_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 300; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-14) break;
  }
  return h;
}

double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                                a * std::log(x) + b * std::log(1 - x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_fraction(a, b, x) / a;
  return 1 - front * beta_fraction(b, a, 1 - x) / b;
}

}  // namespace

double t_two_sided_p(double t, double df) {
  if (!std::isfinite(t)) return 0;
  if (df <= 0) return 1;
  return incomplete_beta(df / 2, 0.5, df / (df + t * t));
}

double t_quantile(double confidence, double df) {
  const double target = 1 - confidence;  // two-sided tail
  double lo = 0, hi = 1e3;
  for (int i = 0; i < 64; ++i) {
    const double mid = (lo + hi) / 2;
    (t_two_sided_p(mid, df) > target ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

namespace {

Summary summarise(const std::vector<double>& v, std::size_t values) {
  Summary s;
  s.n = v.size();
  s.values = values;
  if (v.empty()) return s;
  const MeanSd spread = mean_sd(v);
  s.mean = *spread.mean;
  s.sd = spread.sd.value_or(0.0);
  auto [mn, mx] = std::minmax_element(v.begin(), v.end());
  s.min = *mn;
  s.max = *mx;
  s.ci_low = s.ci_high = s.mean;
  if (v.size() > 1) {
    // Thousands of configurations share a handful of run counts: one quantile per count.
    thread_local std::vector<double> quantile_for_n;
    if (quantile_for_n.size() <= v.size()) quantile_for_n.resize(v.size() + 1, 0.0);
    double& q = quantile_for_n[v.size()];
    if (q == 0) q = t_quantile(0.95, static_cast<double>(v.size() - 1));
    const double half = q * s.sd / std::sqrt(static_cast<double>(v.size()));
    s.ci_low = s.mean - half;
    s.ci_high = s.mean + half;
  }
  return s;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

std::size_t count_outliers(const std::vector<double>& v) {
  if (v.size() < 6) return 0;  // the median absolute deviation of fewer says little
  const double med = median_of(v);
  std::vector<double> dev;
  for (double x : v) dev.push_back(std::fabs(x - med));
  const double mad = median_of(dev) * 1.4826;
  if (mad <= 0) return 0;
  return static_cast<std::size_t>(
      std::count_if(v.begin(), v.end(), [&](double x) { return std::fabs(x - med) > 5 * mad; }));
}

bool parse_double(std::string_view s, double* v) {
  std::string_view unit;
  return detail::parse_number(s, v, &unit) && unit.empty();
}

// ---- key metrics ----------------------------------------------------------------------------

constexpr std::uint32_t kNone = UINT32_MAX;

struct MetricChoice {
  std::vector<KeyMetric> metrics;
  std::vector<std::uint32_t> of_record;  // metric index per record, kNone when not used
};

bool generation_rate(std::string_view metric) {
  return metric.find("prompt") == std::string_view::npos &&
         metric.find("prefill") == std::string_view::npos;
}

MetricChoice choose_metrics(const IngestResult& data, std::size_t max_metrics) {
  MetricChoice c;
  c.of_record.assign(data.records.size(), kNone);
  // Which record metric names feed which candidate, and in how many files.
  struct Candidate {
    std::string name, unit;
    bool higher = true;
    std::set<std::uint32_t> files;
    std::set<std::string> sources;
  };
  std::map<std::string, Candidate> candidates;
  std::vector<std::string> key_of(data.records.size());
  for (std::size_t i = 0; i < data.records.size(); ++i) {
    const Record& r = data.records[i];
    if (r.value <= 0 || !detail::central_metric(r.metric)) continue;
    std::string key, unit;
    bool higher = true;
    if (r.kind == MetricKind::throughput && generation_rate(r.metric)) {
      key = "throughput";
      unit = "tokens/s";
    } else if (r.kind == MetricKind::ttft && r.unit == "ms") {
      key = "ttft";
      unit = "ms";
      higher = false;
    } else if (r.kind == MetricKind::time || r.kind == MetricKind::memory ||
               r.kind == MetricKind::percent) {
      key = std::string(r.metric);
      unit = std::string(r.unit);
      higher = false;  // times and memory: less is better; a percentage is shown as is
    } else {
      continue;
    }
    auto& cand = candidates[key];
    cand.name = key;
    cand.unit = unit;
    cand.higher = higher;
    cand.files.insert(r.file);
    cand.sources.insert(std::string(r.metric));
    key_of[i] = key;
  }
  std::vector<const Candidate*> order;
  for (const auto& [k, cand] : candidates)
    if (k == "throughput" || k == "ttft" || cand.files.size() >= 2) order.push_back(&cand);
  std::stable_sort(order.begin(), order.end(), [](const Candidate* a, const Candidate* b) {
    auto rank = [](const Candidate* x) {
      return x->name == "throughput" ? 0 : x->name == "ttft" ? 1 : 2;
    };
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    return a->files.size() > b->files.size();
  });
  if (order.size() > max_metrics) order.resize(max_metrics);
  std::map<std::string, std::uint32_t> index;
  for (const auto* cand : order) {
    index[cand->name] = static_cast<std::uint32_t>(c.metrics.size());
    KeyMetric m;
    m.name = cand->name;
    m.unit = cand->unit;
    m.higher_is_better = cand->higher;
    m.sources.assign(cand->sources.begin(), cand->sources.end());
    c.metrics.push_back(std::move(m));
  }
  for (std::size_t i = 0; i < key_of.size(); ++i) {
    if (key_of[i].empty()) continue;
    auto it = index.find(key_of[i]);
    if (it == index.end()) continue;
    c.of_record[i] = it->second;
    ++c.metrics[it->second].values;
  }
  return c;
}

// ---- settings of each file and record --------------------------------------------------------

enum Origin : std::uint8_t { kFolder = 1, kFileName = 2, kContext = 4 };

struct Setting {
  std::string key, value;
  std::uint8_t origin = 0;
};

struct FileSettings {
  std::vector<Setting> settings;
  std::string repetition;  // markers in the path ("run=3 seed=7")
  std::string stem_path;   // relative path without the extension: one document
};

std::vector<std::string> split_path(const std::string& relative) {
  std::vector<std::string> segs;
  std::size_t start = 0;
  while (start <= relative.size()) {
    auto end = relative.find('/', start);
    if (end == std::string::npos) end = relative.size();
    if (end > start) segs.push_back(relative.substr(start, end - start));
    start = end + 1;
  }
  if (!segs.empty()) {
    auto dot = segs.back().rfind('.');
    if (dot != std::string::npos && dot > 0) segs.back().resize(dot);
  }
  return segs;
}

std::string shape_of(std::string_view s) {
  std::string out(s);
  for (auto& ch : out)
    if (ch >= '0' && ch <= '9') ch = '#';
  return out;
}

bool numeric_key(std::string_view k) {
  static constexpr std::string_view kKeys[] = {
      "num_gpu",        "num_ctx",    "temperature", "top_p",       "top_k",
      "batch_size",     "num_thread", "parallel",    "concurrency", "num_predict",
      "repeat_penalty", "min_p",      "num_batch"};
  return std::find(std::begin(kKeys), std::end(kKeys), k) != std::end(kKeys);
}

// A level as it is compared: numbers of numeric settings without a unit word ("40 layers" ->
// "40"; a name under a numeric key is dropped), model names in lower case.
bool normalise_level(std::string_view key, std::string& value) {
  if (numeric_key(key)) {
    double v = 0;
    std::string_view unit;
    if (!detail::parse_number(value, &v, &unit)) return false;
    if (!unit.empty() && unit.find(' ') != std::string_view::npos) return false;
    value = detail::shortest_number_text(v);
    return true;
  }
  if (key == "model" || key == "quantization")
    for (auto& c : value)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return !value.empty();
}

void add_setting(std::vector<Setting>& v, std::string key, std::string value, std::uint8_t origin) {
  if (!normalise_level(key, value)) return;
  for (auto& s : v) {
    if (s.key == key) {
      s.value = std::move(value);  // deeper or later names win
      s.origin = origin;
      return;
    }
  }
  v.push_back({std::move(key), std::move(value), origin});
}

// Sibling folders or files with the same kind of content under different names are the levels
// of a named factor ("runtime-tokio/", "runtime-async-std/"). Adds (key, level) to the files.
void named_levels(const IngestResult& data, const std::vector<std::vector<std::string>>& segs,
                  const std::vector<std::vector<SegmentReading>>& reads,
                  std::vector<FileSettings>& files) {
  struct Child {
    bool is_file = false;
    std::string rest;
    std::set<std::string> shapes;  // folders: what lies below; files: the name's shape
    std::vector<std::uint32_t> files;
  };
  // parent path -> child segment -> info
  std::map<std::string, std::map<std::string, Child>> tree;
  for (std::uint32_t f = 0; f < segs.size(); ++f) {
    std::string parent;
    for (std::size_t d = 0; d < segs[f].size(); ++d) {
      const bool is_file = d + 1 == segs[f].size();
      const auto& rest = reads[f][d].rest;
      if (!rest.empty()) {
        Child& c = tree[parent][segs[f][d]];
        c.is_file = is_file;
        c.rest = rest;
        c.files.push_back(f);
        if (is_file) {
          std::string sig = std::string(to_string(data.files[f].type)) + "|" + reads[f][d].shape;
          for (const auto& s : reads[f][d].settings) sig += "|" + s.key;
          c.shapes.insert(sig);
        } else {
          std::string below;
          for (std::size_t k = d + 1; k < segs[f].size(); ++k) below += "/" + shape_of(segs[f][k]);
          c.shapes.insert(below);
        }
      }
      parent += "/" + segs[f][d];
    }
  }
  auto similar = [](const Child& a, const Child& b) {
    if (a.is_file != b.is_file) return false;
    if (a.is_file) return a.shapes == b.shapes;
    std::size_t common = 0;
    for (const auto& s : a.shapes) common += b.shapes.count(s);
    const std::size_t all = a.shapes.size() + b.shapes.size() - common;
    return all > 0 && common * 2 >= all;
  };
  auto split_words = [](const std::string& s) {
    std::vector<std::string> w;
    std::size_t start = 0;
    while (start <= s.size()) {
      auto end = s.find('-', start);
      if (end == std::string::npos) end = s.size();
      w.push_back(s.substr(start, end - start));
      start = end + 1;
    }
    return w;
  };
  auto join = [](const std::vector<std::string>& w, std::size_t from, std::size_t to) {
    std::string s;
    for (std::size_t i = from; i < to; ++i) s += (i > from ? "-" : "") + w[i];
    return s;
  };
  for (const auto& [parent, children] : tree) {
    std::vector<std::vector<const Child*>> clusters;
    for (const auto& [name, child] : children) {
      bool placed = false;
      for (auto& cl : clusters) {
        if (similar(*cl.front(), child)) {
          cl.push_back(&child);
          placed = true;
          break;
        }
      }
      if (!placed) clusters.push_back({&child});
    }
    for (const auto& cl : clusters) {
      std::set<std::string> rests;
      for (const auto* c : cl) rests.insert(c->rest);
      if (rests.size() < 2) continue;
      // Name the factor by the words all levels share ("runtime-tokio", "runtime-smol").
      std::vector<std::vector<std::string>> words;
      for (const auto& r : rests) words.push_back(split_words(r));
      std::size_t lead = 0, trail = 0;
      auto shortest = std::min_element(words.begin(), words.end(), [](auto& a, auto& b) {
                        return a.size() < b.size();
                      })->size();
      while (lead + 1 < shortest && std::all_of(words.begin(), words.end(),
                                                [&](auto& w) { return w[lead] == words[0][lead]; }))
        ++lead;
      while (lead == 0 && trail + 1 < shortest &&
             std::all_of(words.begin(), words.end(), [&](auto& w) {
               return w[w.size() - 1 - trail] == words[0][words[0].size() - 1 - trail];
             }))
        ++trail;
      std::string key;
      if (lead > 0) {
        key = join(words[0], 0, lead);
      } else if (trail > 0) {
        key = join(words[0], words[0].size() - trail, words[0].size());
      } else {
        auto slash = parent.rfind('/');
        std::string last = slash == std::string::npos ? parent : parent.substr(slash + 1);
        auto r = read_segment(last);
        key = r.settings.empty() && !r.rest.empty() ? r.rest : "variant";
      }
      key = detail::canonical_setting_key(key);
      for (const auto* c : cl) {
        auto w = split_words(c->rest);
        std::string level = join(w, lead, w.size() - trail);
        for (auto f : c->files)
          add_setting(files[f].settings, key, level, c->is_file ? kFileName : kFolder);
      }
    }
  }
}

std::vector<FileSettings> read_paths(const IngestResult& data) {
  std::vector<FileSettings> files(data.files.size());
  std::vector<std::vector<std::string>> segs(data.files.size());
  std::vector<std::vector<SegmentReading>> reads(data.files.size());
  std::unordered_map<std::string, SegmentReading> cache;
  for (std::size_t f = 0; f < data.files.size(); ++f) {
    segs[f] = split_path(data.files[f].relative_path);
    FileSettings& fs = files[f];
    const auto& rel = data.files[f].relative_path;
    auto dot = rel.rfind('.');
    fs.stem_path = dot == std::string::npos ? rel : rel.substr(0, dot);
    for (std::size_t d = 0; d < segs[f].size(); ++d) {
      auto it = cache.find(segs[f][d]);
      if (it == cache.end()) it = cache.emplace(segs[f][d], read_segment(segs[f][d])).first;
      reads[f].push_back(it->second);
      const bool is_file = d + 1 == segs[f].size();
      for (const auto& s : it->second.settings) {
        if (s.repetition) {
          fs.repetition += s.key + "=" + s.value + " ";
        } else {
          add_setting(fs.settings, s.key, s.value, is_file ? kFileName : kFolder);
        }
      }
    }
  }
  named_levels(data, segs, reads, files);
  return files;
}

// Context keys that describe the document, not the run's settings.
bool descriptive_key(std::string_view k) {
  return k == "section" || k == "notes" || k == "note" || k == "comment" || k == "comments" ||
         k == "description" || k == "title" || k == "status" || k == "text" || k == "message";
}

// "2025-09-28T18:36:07", "2025-10-02 15:18": a time, whatever its key.
bool looks_like_date(std::string_view v) {
  auto digits = [&](std::size_t from, std::size_t n) {
    if (v.size() < from + n) return false;
    for (std::size_t i = from; i < from + n; ++i)
      if (v[i] < '0' || v[i] > '9') return false;
    return true;
  };
  return digits(0, 4) && v.size() >= 10 && v[4] == '-' && digits(5, 2) && v[7] == '-' &&
         digits(8, 2);
}

bool workload(std::string_view k, std::string_view v) {
  if (k == "prompt" || k.starts_with("prompt_") || k == "test_name" || k == "test" || k == "task" ||
      k == "query" || k == "question" || k == "input" || k == "case")
    return true;
  return v.find(' ') != std::string_view::npos;  // a sentence or a title, not a setting
}

// The settings of values with this context in this file: the path's, then the context's.
struct Observed {
  std::vector<Setting> settings;
  std::string repetition;
};

Observed observe(const FileSettings& file, const Context* ctx) {
  Observed o{file.settings, file.repetition};
  if (ctx == nullptr) return o;
  auto main = [&](const char* k, std::string_view v) {
    if (!v.empty()) add_setting(o.settings, k, std::string(v), kContext);
  };
  main("model", ctx->model);
  main("quantization", ctx->quantization);
  main("num_gpu", ctx->num_gpu);
  main("num_ctx", ctx->num_ctx);
  main("temperature", ctx->temperature);
  if (!ctx->run.empty()) o.repetition += "run=" + std::string(ctx->run) + " ";
  for (const auto& [k, v] : ctx->extra) {
    // A count of repetitions ("runs": 5, "warmup_runs") says how the data was taken, not
    // what was compared.
    if (v.empty() || descriptive_key(k) || detail::is_runs_key(k) || k.ends_with("_runs")) continue;
    // Prompts, tasks and named tests are the workload a configuration was measured on: its
    // values are repetitions over workloads, as a repeated run is.
    if (detail::is_repetition_key(k) || workload(k, v) || looks_like_date(v)) {
      o.repetition += std::string(k) + "=" + std::string(v) + " ";
      continue;
    }
    if (v.size() > 48) continue;  // a prompt or a sentence, not a setting
    add_setting(o.settings, detail::canonical_setting_key(k), std::string(v), kContext);
  }
  return o;
}

std::string_view repetition_kind(std::string_view marker) {
  auto eq = marker.find('=');
  auto k = marker.substr(0, eq);
  if (k == "timestamp" || k == "date" || k == "datetime" || k == "epoch" ||
      k.find("_at") != std::string_view::npos || k.find("time") != std::string_view::npos)
    return "timestamp";
  if (k == "seed") return "seed";
  if (k == "prompt" || k.starts_with("prompt_") || k == "test_name" || k == "test" || k == "task" ||
      k == "query" || k == "question" || k == "input" || k == "case")
    return "workload";
  if (k == "trial") return "trial";
  if (k == "rep" || k == "repeat" || k == "repetition") return "repetition";
  if (k == "iter" || k == "iteration") return "iteration";
  if (k == "run" || k.substr(0, 4) == "run_") return "run";
  return "id";
}

int key_rank(std::string_view k) {
  static constexpr std::string_view kOrder[] = {"model", "quantization", "num_gpu", "num_ctx",
                                                "temperature"};
  for (std::size_t i = 0; i < std::size(kOrder); ++i)
    if (k == kOrder[i]) return static_cast<int>(i);
  return 100;
}

}  // namespace

const ConfigMetric* Configuration::find(std::size_t metric) const {
  for (const auto& m : metrics)
    if (m.metric == metric) return &m;
  return nullptr;
}

std::vector<std::size_t> Experiment::ranked(std::size_t metric) const {
  std::vector<std::pair<double, std::size_t>> by_mean;
  for (std::size_t c = 0; c < configs.size(); ++c)
    if (const ConfigMetric* m = configs[c].find(metric)) by_mean.emplace_back(m->stats.mean, c);
  const bool higher = metric < metrics.size() && metrics[metric].higher_is_better;
  std::stable_sort(by_mean.begin(), by_mean.end(), [&](const auto& a, const auto& b) {
    return higher ? a.first > b.first : a.first < b.first;
  });
  std::vector<std::size_t> out;
  out.reserve(by_mean.size());
  for (const auto& [mean, c] : by_mean) out.push_back(c);
  return out;
}

std::vector<const Effect*> Experiment::effects_of(std::size_t metric) const {
  std::vector<const Effect*> out;
  for (const auto& e : effects)
    if (e.metric == metric) out.push_back(&e);
  return out;
}

Experiment analyse_experiment(const IngestResult& data, const ExperimentOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  Experiment x;
  MetricChoice choice = choose_metrics(data, options.max_metrics);
  x.metrics = std::move(choice.metrics);
  const std::vector<FileSettings> paths = read_paths(data);

  // 1. The distinct (file, context) pairs behind the key metrics' values and error values.
  struct Source {
    std::uint32_t file;
    const Context* ctx;
    Observed seen;
    std::size_t weight = 0;     // records
    std::uint32_t run = kNone;  // its run within a configuration (interned, see run_of)
    std::uint32_t doc = kNone;  // its run told apart by its document too (before configurations)
  };
  std::vector<Source> sources;
  std::map<std::pair<std::uint32_t, const Context*>, std::uint32_t> source_of;
  auto source_index = [&](std::uint32_t file, const Context* ctx) {
    auto [it, inserted] = source_of.emplace(std::make_pair(file, ctx), 0);
    if (inserted) {
      it->second = static_cast<std::uint32_t>(sources.size());
      sources.push_back({file, ctx, observe(paths[file], ctx), 0});
    }
    return it->second;
  };
  // A document's run: its repetition markers, else the document itself (a JSON file and a
  // Markdown file of the same name are one run), else (tables without markers) its row.
  std::unordered_map<std::string, std::uint32_t> interned;
  auto intern = [&](std::string key) {
    return interned.emplace(std::move(key), static_cast<std::uint32_t>(interned.size()))
        .first->second;
  };
  auto assign_runs = [&](Source& s, int line) {
    std::string u = s.seen.repetition;
    if (u.empty()) {
      u = paths[s.file].stem_path;
      if (data.files[s.file].type == FileType::csv) u += ":" + std::to_string(line);
    }
    s.doc = intern(paths[s.file].stem_path + "|" + u);
    s.run = intern(std::move(u));
  };
  std::vector<std::uint32_t> record_source(data.records.size(), kNone);
  std::pair<std::uint32_t, const Context*> last{kNone, nullptr};
  std::uint32_t last_source = kNone;
  for (std::size_t i = 0; i < data.records.size(); ++i) {
    if (choice.of_record[i] == kNone) continue;
    const Record& r = data.records[i];
    if (last.first != r.file || last.second != r.context) {
      last = {r.file, r.context};
      last_source = source_index(r.file, r.context);
    }
    record_source[i] = last_source;
    Source& src = sources[last_source];
    if (src.weight++ == 0) assign_runs(src, r.line);
  }

  // 2. Candidate keys: their levels and the runs behind each level.
  struct Candidate {
    std::map<std::string, std::unordered_set<std::uint32_t>> levels;  // value -> runs
    std::uint8_t origin = 0;
    std::size_t units = 0;
    std::size_t value_chars = 0, values = 0;
  };
  std::map<std::string, Candidate> candidates;
  std::set<std::string> repetition_kinds;
  for (const Source& s : sources) {
    if (s.weight == 0) continue;
    // Before configurations are known a run is told apart by its document as well.
    for (const auto& set : s.seen.settings) {
      auto& c = candidates[set.key];
      if (c.levels[set.value].insert(s.doc).second) {
        c.value_chars += set.value.size();
        ++c.values;
      }
      c.origin |= set.origin;
    }
  }
  for (const auto& s : sources) {
    std::string_view rep = s.seen.repetition;
    while (!rep.empty()) {
      auto sp = rep.find(' ');
      repetition_kinds.insert(std::string(repetition_kind(rep.substr(0, sp))));
      rep.remove_prefix(sp == std::string_view::npos ? rep.size() : sp + 1);
    }
  }
  x.repetition_markers.assign(repetition_kinds.begin(), repetition_kinds.end());

  // 3. Factors: at least two levels, each backed by two runs on average.
  std::vector<std::string> keys;
  for (auto& [key, c] : candidates) {
    std::size_t units = 0;
    for (const auto& [v, u] : c.levels) units += u.size();
    c.units = units;
    const std::size_t levels = c.levels.size();
    if (levels < 2) {
      x.unplaced.push_back({fmt::format("{}={}", key, c.levels.begin()->first),
                            "the same in every run: a constant, not a factor", units});
      continue;
    }
    if (levels > options.max_levels || units < 2 * levels) {
      x.unplaced.push_back(
          {key, fmt::format("{} values for {} runs: an identifier, not a setting", levels, units),
           units});
      continue;
    }
    if (c.values > 0 && c.value_chars / c.values > 40) {
      x.unplaced.push_back({key, "long text values: a description, not a setting", units});
      continue;
    }
    keys.push_back(key);
  }
  std::stable_sort(keys.begin(), keys.end(), [](const std::string& a, const std::string& b) {
    if (key_rank(a) != key_rank(b)) return key_rank(a) < key_rank(b);
    return a < b;
  });

  auto level_in = [](const Source& s, const std::string& key) -> const std::string* {
    for (const auto& set : s.seen.settings)
      if (set.key == key) return &set.value;
    return nullptr;
  };
  // The distinct combinations of the candidate keys' levels (ids per key, kNone when absent):
  // the checks below run over these, not over every value.
  std::set<std::vector<std::uint32_t>> combos;
  {
    std::vector<std::map<std::string, std::uint32_t>> ids(keys.size());
    for (const Source& s : sources) {
      if (s.weight == 0) continue;
      std::vector<std::uint32_t> t(keys.size(), kNone);
      for (std::size_t k = 0; k < keys.size(); ++k)
        if (const std::string* v = level_in(s, keys[k]))
          t[k] = ids[k].emplace(*v, static_cast<std::uint32_t>(ids[k].size())).first->second;
      combos.insert(std::move(t));
    }
  }
  // Two keys that always name the same split (a model and its tag) are one factor.
  std::vector<std::size_t> kept;  // indexes into keys
  for (std::size_t k = 0; k < keys.size(); ++k) {
    bool duplicate = false;
    for (std::size_t a : kept) {
      std::map<std::uint32_t, std::uint32_t> ab, ba;
      bool same = true;
      for (const auto& t : combos) {
        if ((t[a] == kNone) != (t[k] == kNone)) {
          same = false;
          break;
        }
        if (t[a] == kNone) continue;
        auto i1 = ab.emplace(t[a], t[k]).first;
        auto i2 = ba.emplace(t[k], t[a]).first;
        if (i1->second != t[k] || i2->second != t[a]) {
          same = false;
          break;
        }
      }
      if (same) {
        x.unplaced.push_back({keys[k],
                              fmt::format("always changes with {}: the same factor", keys[a]),
                              candidates[keys[k]].units});
        duplicate = true;
        break;
      }
    }
    if (!duplicate) kept.push_back(k);
  }
  // A key that the other factors' levels determine ("g40_c1024_t0.2" beside num_gpu 40,
  // num_ctx 1024, temperature 0.2) adds no split of its own. Checked from the least usual key
  // up, so that num_gpu stays and the name of the combination goes.
  for (std::size_t i = kept.size(); i-- > 0;) {
    const std::size_t k = kept[i];
    std::map<std::vector<std::uint32_t>, std::uint32_t> from_rest;
    bool determined = true, any = false;
    for (const auto& t : combos) {
      if (t[k] == kNone) continue;
      std::vector<std::uint32_t> others;
      bool some = false;
      for (std::size_t j : kept) {
        if (j == k) continue;
        others.push_back(t[j]);
        some |= t[j] != kNone;
      }
      auto b = from_rest.emplace(std::move(others), t[k]).first;
      if (!some || b->second != t[k]) {
        determined = false;
        break;
      }
      any = true;
    }
    if (determined && any) {
      x.unplaced.push_back({keys[k], "determined by the other factors' levels: no split of its own",
                            candidates[keys[k]].units});
      kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  std::vector<std::string> factors;
  for (std::size_t k : kept) factors.push_back(keys[k]);
  for (const auto& key : factors) {
    const Candidate& c = candidates[key];
    Factor f;
    f.key = key;
    auto label = detail::setting_label(key);
    f.label = label.empty() || label == key ? key : fmt::format("{} ({})", label, key);
    std::vector<std::string> where;
    if (c.origin & kFolder) where.push_back("folder names");
    if (c.origin & kFileName) where.push_back("file names");
    if (c.origin & kContext) where.push_back("columns and keys");
    f.found_in = fmt::format("{}", fmt::join(where, ", "));
    f.numeric = true;
    std::vector<std::pair<double, std::string>> numeric;
    for (const auto& [v, u] : c.levels) {
      double d = 0;
      if (!parse_double(v, &d)) f.numeric = false;
      numeric.emplace_back(d, v);
    }
    if (f.numeric) std::stable_sort(numeric.begin(), numeric.end());
    for (const auto& [d, v] : numeric) {
      f.levels.push_back(v);
      f.level_runs.push_back(c.levels.at(v).size());
    }
    x.factors.push_back(std::move(f));
  }

  // 4. Configurations and runs.
  std::map<std::vector<std::string>, std::size_t> config_index;
  std::vector<std::uint32_t> config_of_source(sources.size(), kNone);
  std::vector<std::set<std::uint32_t>> config_files;
  for (std::size_t s = 0; s < sources.size(); ++s) {
    std::vector<std::string> levels(x.factors.size());
    bool any = false;
    for (std::size_t f = 0; f < x.factors.size(); ++f) {
      if (const std::string* v = level_in(sources[s], x.factors[f].key)) {
        levels[f] = *v;
        any = true;
      }
    }
    if (!any) continue;
    auto [it, inserted] = config_index.emplace(levels, x.configs.size());
    if (inserted) {
      Configuration c;
      c.levels = levels;
      std::vector<std::string> parts;
      for (std::size_t f = 0; f < levels.size(); ++f)
        if (!levels[f].empty()) parts.push_back(x.factors[f].key + "=" + levels[f]);
      c.label = fmt::format("{}", fmt::join(parts, " "));
      x.configs.push_back(std::move(c));
      config_files.emplace_back();
    }
    config_of_source[s] = static_cast<std::uint32_t>(it->second);
    config_files[it->second].insert(sources[s].file);
  }

  // Values per (configuration, run, metric), with the first source of each.
  struct RunAcc {
    double sum = 0;
    std::size_t count = 0;
  };
  std::vector<std::map<std::uint32_t, std::map<std::uint32_t, RunAcc>>> runs(x.configs.size());
  std::map<std::pair<std::size_t, std::uint32_t>, std::string> first_source;
  std::size_t unplaced_values = 0;
  std::set<std::uint32_t> unplaced_files;
  for (std::size_t i = 0; i < data.records.size(); ++i) {
    if (record_source[i] == kNone) continue;
    const Record& r = data.records[i];
    const Source& s = sources[record_source[i]];
    const std::uint32_t c = config_of_source[record_source[i]];
    if (c == kNone) {
      ++unplaced_values;
      unplaced_files.insert(r.file);
      continue;
    }
    auto& acc = runs[c][s.run][choice.of_record[i]];
    acc.sum += r.value;
    ++acc.count;
    ++x.records_used;
    const auto first = std::make_pair(std::size_t{c}, choice.of_record[i]);
    if (first_source.find(first) == first_source.end())
      first_source.emplace(first, fmt::format("{}:{}", r.source_file, r.line));
  }
  if (unplaced_values > 0) {
    x.unplaced.insert(
        x.unplaced.begin(),
        {fmt::format("{} values in {} files (e.g. {})", unplaced_values, unplaced_files.size(),
                     data.files[*unplaced_files.begin()].relative_path),
         "no level of any factor in their path, columns or keys", unplaced_values});
  }

  // Run values per (configuration, metric), and per metric for the effects.
  struct RunValue {
    std::uint32_t config;
    double value;
  };
  std::vector<std::vector<RunValue>> by_metric(x.metrics.size());
  for (std::size_t c = 0; c < x.configs.size(); ++c) {
    Configuration& cfg = x.configs[c];
    cfg.runs = runs[c].size();
    cfg.files = config_files[c].size();
    x.runs += cfg.runs;
    std::vector<std::vector<double>> values(x.metrics.size());
    std::vector<std::size_t> counts(x.metrics.size());
    for (const auto& [unit, metrics] : runs[c]) {
      for (const auto& [m, acc] : metrics) {
        values[m].push_back(acc.sum / static_cast<double>(acc.count));
        counts[m] += acc.count;
      }
    }
    for (std::uint32_t m = 0; m < x.metrics.size(); ++m) {
      if (values[m].empty()) continue;
      ConfigMetric cm;
      cm.metric = m;
      cm.stats = summarise(values[m], counts[m]);
      cm.first_source = first_source[{c, m}];
      cm.outliers = count_outliers(values[m]);
      cfg.metrics.push_back(std::move(cm));
      for (double v : values[m]) by_metric[m].push_back({static_cast<std::uint32_t>(c), v});
    }
  }

  // Each configuration's level index per factor (kNone: not said), and the runs at each level.
  std::vector<std::vector<std::uint32_t>> level_of(
      x.configs.size(), std::vector<std::uint32_t>(x.factors.size(), kNone));
  for (std::size_t f = 0; f < x.factors.size(); ++f) {
    auto& factor = x.factors[f];
    std::fill(factor.level_runs.begin(), factor.level_runs.end(), 0);
    for (std::size_t c = 0; c < x.configs.size(); ++c) {
      auto at = std::find(factor.levels.begin(), factor.levels.end(), x.configs[c].levels[f]);
      if (at == factor.levels.end()) continue;
      level_of[c][f] = static_cast<std::uint32_t>(at - factor.levels.begin());
      factor.level_runs[level_of[c][f]] += x.configs[c].runs;
    }
  }

  // Failed requests per configuration.
  for (const auto& e : data.error_values) {
    const std::uint32_t s = source_index(e.file, e.context);
    std::uint32_t c = s < config_of_source.size() ? config_of_source[s] : kNone;
    if (c == kNone) {
      // A context seen only with errors: place it by its settings.
      std::vector<std::string> levels(x.factors.size());
      for (std::size_t f = 0; f < x.factors.size(); ++f)
        if (const std::string* v = level_in(sources[s], x.factors[f].key)) levels[f] = *v;
      auto it = config_index.find(levels);
      if (it != config_index.end()) c = static_cast<std::uint32_t>(it->second);
    }
    if (c != kNone) ++x.configs[c].failures;
  }

  // 5. Effects: the share of the run-to-run variance each factor's levels explain.
  for (std::uint32_t m = 0; m < x.metrics.size(); ++m) {
    std::vector<Effect> effects;
    for (std::size_t f = 0; f < x.factors.size(); ++f) {
      std::vector<std::vector<double>> at(x.factors[f].levels.size());
      std::vector<double> all;
      for (const auto& rv : by_metric[m]) {
        const std::uint32_t level = level_of[rv.config][f];
        if (level == kNone) continue;
        at[level].push_back(rv.value);
        all.push_back(rv.value);
      }
      const auto present = std::count_if(at.begin(), at.end(), [](auto& v) { return !v.empty(); });
      if (present < 2) continue;
      const double grand =
          std::accumulate(all.begin(), all.end(), 0.0) / static_cast<double>(all.size());
      double total = 0, between = 0;
      for (double v : all) total += (v - grand) * (v - grand);
      Effect e;
      e.metric = m;
      e.factor = f;
      e.n = all.size();
      double lo = INFINITY, hi = -INFINITY;
      for (std::size_t l = 0; l < at.size(); ++l) {
        if (at[l].empty()) continue;
        LevelMean lm{x.factors[f].levels[l], summarise(at[l], at[l].size())};
        between +=
            static_cast<double>(at[l].size()) * (lm.stats.mean - grand) * (lm.stats.mean - grand);
        lo = std::min(lo, lm.stats.mean);
        hi = std::max(hi, lm.stats.mean);
        e.levels.push_back(std::move(lm));
      }
      e.share = total > 0 ? between / total : 0;
      e.spread = hi - lo;
      effects.push_back(std::move(e));
    }
    // A factor seen in only a corner of the data explains that corner well and says little
    // about the rest: below half the runs, its share counts in proportion to what it covers.
    const double all_runs = static_cast<double>(by_metric[m].size());
    auto weight = [&](const Effect& e) {
      return e.share * std::min(1.0, 2.0 * static_cast<double>(e.n) / all_runs);
    };
    std::stable_sort(effects.begin(), effects.end(),
                     [&](const Effect& a, const Effect& b) { return weight(a) > weight(b); });
    for (auto& e : effects) x.effects.push_back(std::move(e));
  }

  // 6. Best against the runner-up.
  for (std::uint32_t m = 0; m < x.metrics.size(); ++m) {
    auto ranked = x.ranked(m);
    if (ranked.size() < 2) continue;
    Comparison cmp;
    cmp.metric = m;
    cmp.best = ranked[0];
    cmp.runner_up = ranked[1];
    const Summary& a = x.configs[cmp.best].find(m)->stats;
    const Summary& b = x.configs[cmp.runner_up].find(m)->stats;
    cmp.difference = a.mean - b.mean;
    if (a.n >= 2 && b.n >= 2) {
      const double va = a.sd * a.sd / static_cast<double>(a.n);
      const double vb = b.sd * b.sd / static_cast<double>(b.n);
      if (va + vb > 0) {
        cmp.t = cmp.difference / std::sqrt(va + vb);
        cmp.df = (va + vb) * (va + vb) /
                 (va * va / static_cast<double>(a.n - 1) + vb * vb / static_cast<double>(b.n - 1));
        cmp.p = t_two_sided_p(*cmp.t, *cmp.df);
        cmp.significant = *cmp.p < 0.05;
      }
    }
    x.comparisons.push_back(cmp);
  }
  x.elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return x;
}

}  // namespace chimera::ingest

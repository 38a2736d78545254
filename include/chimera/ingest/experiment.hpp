// The experiment behind a results tree: which settings were varied (factors and their levels),
// which files are repetitions of one configuration, and what each factor does to each key
// metric, computed from an IngestResult.
//
//   auto data = chimera::ingest::ingest({"results"});
//   auto x = chimera::ingest::analyse_experiment(data);
//   for (const auto& f : x.factors)            // "num_gpu: 60, 80, 100"
//     std::printf("%s: %zu levels\n", f.key.c_str(), f.levels.size());
//   for (const auto& e : x.effects)            // per metric, largest share first
//     std::printf("%s moves %s: %.0f%% of the variance\n", x.factors[e.factor].key.c_str(),
//                 x.metrics[e.metric].name.c_str(), 100 * e.share);
//
// Where factors come from (docs/ingest.md, "Experiment structure", has every rule):
//   - the records' context: model, quantization, num_gpu, num_ctx, temperature and the other
//     identifying keys and columns (top_p, backend, a text column such as "runtime");
//   - every folder and file name below the root, read as settings: `key=value`, `key-value`,
//     `key_value`, a name and a number run together (`gpu100`, `ctx512`, `temp0p6` = 0.6,
//     `t0.8`), model names and quantisations (`llama3.1-8b`, `q4_k_m`);
//   - named levels: sibling folders or files that hold the same kind of content under
//     different names (`runtime-tokio/`, `runtime-async-std/`; `baseline_report.md`,
//     `chimera_report.md`).
// A key is a factor when it takes at least two values and each value is backed by at least two
// observations on average (an identifier or a timestamp, new in every file, is not a setting).
// Repetition markers (`run_3`, `rep2`, `trial_4`, `seed-7`, timestamps, a `run` column) are
// never factors: values that differ only in them are runs of one configuration.
//
// Statistics: a run's value of a metric is the mean of its values (a JSON file and a Markdown
// report of the same run count once); a configuration's figure is over its runs: mean, sample
// sd, n, min, max and a 95% t interval. A factor's effect on a metric is the share of the
// variance of run values that its levels explain (eta squared, one factor at a time), with the
// mean of each level over the others. The best configuration is compared with the runner-up by
// Welch's t test.
//
// Pure function of the IngestResult (deterministic whatever the thread count); safe to call
// from several threads at once. Never throws for odd data; std::bad_alloc can escape.
#pragma once

#include <chimera/ingest/ingest.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::ingest {

// A number with sensible precision for people: 4 significant digits (no float32 artefacts:
// 0.800000011920929 prints as 0.8), no exponent between 1e-3 and 1e6, integers as integers.
std::string format_number(double value);

// A setting read from one folder or file name.
struct PathSetting {
  std::string key;          // canonical key: "num_gpu", "num_ctx", "temperature", "model", ...
  std::string value;        // normalised value ("0.6" for "0p6")
  bool repetition = false;  // a run, repetition, trial, seed or timestamp marker
};

// What one path segment ("gpu100_ctx512", "runtime=tokio,rep=3", "run_2") says. `rest` is
// what is left once settings, markers and document words ("report", "metrics", ...) are
// taken out, joined with '-': a candidate named level ("runtime-tokio"); empty when nothing
// is left.
struct SegmentReading {
  std::vector<PathSetting> settings;
  std::string rest;
  std::string shape;  // the segment without `rest`'s words, digits as '#'
};
SegmentReading read_segment(std::string_view segment);

struct Factor {
  std::string key;       // canonical key ("num_gpu") or the name of a named-level factor
  std::string label;     // for people: "GPU layers (num_gpu)"
  std::string found_in;  // "folder names", "file names", "columns and keys", or several
  bool numeric = false;  // every level is a number; levels are then sorted by value
  std::vector<std::string> levels;
  std::vector<std::size_t> level_runs;  // runs (observations) at each level
};

// One metric as compared across configurations; several names and units can feed it
// (throughput_tps, tokens_per_second, "Throughput (tok/s)").
struct KeyMetric {
  std::string name;  // "throughput", "ttft", or the record metric name
  std::string unit;  // "tokens/s", "ms", ...
  bool higher_is_better = true;
  std::vector<std::string> sources;  // the record metric names that fed it
  std::size_t values = 0;            // records used
};

// A statistic over runs. `ci_low`/`ci_high`: the 95% t interval of the mean (equal to the
// mean when n == 1).
struct Summary {
  std::size_t n = 0;  // runs
  double mean = 0, sd = 0, min = 0, max = 0, ci_low = 0, ci_high = 0;
  std::size_t values = 0;  // records behind the runs
};

struct ConfigMetric {
  std::size_t metric = 0;  // index into Experiment::metrics
  Summary stats;
  std::string first_source;  // "file:line" of its first value
  std::size_t outliers = 0;  // runs far from the others (over 5 MADs from the median)
};

struct Configuration {
  std::vector<std::string> levels;  // per factor, "" when the data does not say
  std::string label;                // "num_gpu=100 num_ctx=512 runtime=tokio"
  std::size_t runs = 0;             // distinct runs (repetitions) seen
  std::size_t files = 0;
  std::vector<ConfigMetric> metrics;
  std::size_t failures = 0;  // error values (failed requests) in its files
  const ConfigMetric* find(std::size_t metric) const;
};

struct LevelMean {
  std::string level;
  Summary stats;  // over the runs at this level, all other factors mixed
};

// What one factor does to one metric.
struct Effect {
  std::size_t metric = 0;
  std::size_t factor = 0;
  double share = 0;               // eta squared: between-level sum of squares / total, 0..1
  double spread = 0;              // largest minus smallest level mean
  std::size_t n = 0;              // runs behind it
  std::vector<LevelMean> levels;  // in the factor's level order
};

// Best against runner-up for one metric (Welch's t test on run values).
struct Comparison {
  std::size_t metric = 0;
  std::size_t best = 0, runner_up = 0;  // indexes into Experiment::configs
  double difference = 0;                // best mean - runner-up mean
  std::optional<double> t, df, p;       // empty when either has fewer than 2 runs
  bool significant = false;             // p < 0.05
};

// Something the structure could not use, and why.
struct Unplaced {
  std::string what;
  std::string why;
  std::size_t count = 0;
};

struct Experiment {
  std::vector<Factor> factors;                  // most levels-backed first: runs covered, then name
  std::vector<std::string> repetition_markers;  // kinds seen: "run", "seed", "timestamp", ...
  std::vector<KeyMetric> metrics;               // throughput and ttft first when present
  std::vector<Configuration> configs;           // by label
  std::vector<Effect> effects;          // grouped by metric (metrics order), largest share first
  std::vector<Comparison> comparisons;  // one per metric with at least two configurations
  std::vector<Unplaced> unplaced;
  std::size_t runs = 0;          // observations (configuration x repetition)
  std::size_t records_used = 0;  // records that fed a key metric
  double elapsed_ms = 0;

  // Configurations with `metric`, best first (by mean).
  std::vector<std::size_t> ranked(std::size_t metric) const;
  // Effects of one metric, largest first.
  std::vector<const Effect*> effects_of(std::size_t metric) const;
};

struct ExperimentOptions {
  std::size_t max_metrics = 6;  // key metrics compared (throughput and ttft count)
  std::size_t max_levels = 64;  // a key with more values is an identifier, not a factor
};

Experiment analyse_experiment(const IngestResult& data, const ExperimentOptions& options = {});

// The dense, ranked text for a model: structure, then the largest effects, then best and worst
// with n and sd, the best-vs-runner-up test, then level means and more configurations, each
// line only if it fits `token_budget` (estimate_tokens). Deterministic. With `only_metric`
// set, the structure and that metric's lines alone (a slice for map-reduce).
std::string experiment_digest(const Experiment& x, std::size_t token_budget,
                              std::optional<std::size_t> only_metric = std::nullopt);

// The two-sided p value of Student's t with `df` degrees of freedom, and the quantile
// t such that P(|T| <= t) = `confidence`.
double t_two_sided_p(double t, double df);
double t_quantile(double confidence, double df);

}  // namespace chimera::ingest

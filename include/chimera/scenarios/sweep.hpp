// A parameter sweep: a grid of request and server settings, each configuration run several
// times, one record per run, and a summary per configuration (`chimeraforge sweep`,
// docs/sweep.md). This header holds what does not run anything: the grid, where each setting
// goes for a backend, and the statistics over the runs' figures.
//
// Where a setting goes: Ollama takes every option with each request. An OpenAI-compatible
// server takes the sampling options with each request, but its context (num_ctx), GPU layers
// (num_gpu) and threads (num_thread) are the server's own flags (llama-server -c, -ngl, -t): a
// sweep can change them only on servers it starts, by restarting them. The in-process engine
// takes them when it loads the model: a sweep reloads it.
//
// Example:
//   std::vector<chimera::sweep::Axis> axes(2);
//   chimera::sweep::parse_axis("num_ctx=256,512", axes[0]);
//   chimera::sweep::parse_axis("temperature=0.6,0.8", axes[1]);
//   std::vector<chimera::sweep::Configuration> grid;
//   if (auto e = chimera::sweep::expand_grid(axes, {}, grid); !e.empty()) ...  // 4 configurations
#pragma once

#include <chimera/backends/backend.hpp>
#include <chimera/core/request.hpp>
#include <chimera/scenarios/multi.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chimera::sweep {

// One axis of the grid: an option of the table (options.hpp) and its values as written.
struct Axis {
  std::string name;
  std::vector<std::string> values;
};

// Reads "name=v1,v2,...": the name an option of the table, every value checked against the
// option's type and range, no value twice. Returns "" or what is wrong, quoting the text.
// A stop string cannot be an axis (its strings may hold commas): it is refused with a reason.
std::string parse_axis(std::string_view text, Axis& out);

// Where a setting is applied.
enum class Placement {
  per_request,     // sent with every request
  server_restart,  // a flag of the llama-servers the sweep started: they are restarted
  model_reload,    // a load setting of the in-process engine: the model is reloaded
};
const char* to_string(Placement p);

// Where the option `name` goes for a backend of `kind`. `servers_ours`: the OpenAI-compatible
// endpoints are llama-servers the sweep starts. Returns "" and sets `out`, or why the setting
// cannot be applied (and what to do instead).
std::string placement_of(BackendKind kind, std::string_view name, bool servers_ours,
                         Placement& out);

// One point of the grid.
struct Configuration {
  std::string label;  // "num_ctx=256 temperature=0.6", the axes in order; "defaults" without
  std::vector<std::pair<std::string, std::string>> settings;  // name, value as written
  Options options;  // the base options with the settings applied
};

// Every combination of the axes over `base`, the first axis varying slowest (so the axes that
// restart a server or reload the model should come first). Axes must name distinct options.
// Returns "" or what is wrong.
std::string expand_grid(const std::vector<Axis>& axes, const Options& base,
                        std::vector<Configuration>& out);

// The settings of `options` that a server or a model load takes for `kind` (num_ctx,
// num_gpu, num_thread where they are not per request), as "num_ctx=512 num_gpu=80": two
// configurations with the same key share their servers or loaded model.
std::string server_key(const Options& options, BackendKind kind, bool servers_ours);

// The study's contention signal (TR110/TR114): a run is anomalous when a request's
// ttft_client exceeds this.
inline constexpr double kTtftAnomalyMs = 3000;

// Requests of a run whose ttft_client exceeds `threshold_ms` (failed requests that never got
// a token within it count too: their wait was at least that long).
int ttft_anomalies(const std::vector<multi::RequestRecord>& records, double threshold_ms);

// A metric of the summary: a key of the run records' "figures".
struct Metric {
  const char* name;   // "ttft_client_p50_ms"
  const char* label;  // "TTFT p50 (ms)"
  bool higher_is_better;
};
// In the order the summary lists them. `ttft_anomaly` is 1 for an anomalous run, 0 otherwise:
// its mean is the share of anomalous runs.
extern const std::vector<Metric> kMetrics;

// The figures of one run, by metric name (a figure that could not be measured is absent).
std::map<std::string, double> run_figures(const multi::ConcurrencyFigures& f, int ttft_anomalies);

// One run as the summary reads it back from the records.
struct RunFigures {
  std::string config;
  int run = 0;
  std::map<std::string, double> figures;
};

struct MetricStats {
  std::optional<double> mean, sd;  // sd: sample sd, with two runs or more
  int n = 0;                       // runs that measured it
};

struct ConfigSummary {
  std::string config;
  int runs = 0;
  std::map<std::string, MetricStats> metrics;
};

// Mean, sd and n of every metric per configuration, configurations in `order` (those without
// runs are left out; runs of configurations not in `order` are ignored).
std::vector<ConfigSummary> summarize(const std::vector<RunFigures>& runs,
                                     const std::vector<std::string>& order);

// The configuration with the best mean of a metric.
struct Best {
  std::string metric;
  std::string config;
  double mean = 0;
  int n = 0;
};
// For every metric of kMetrics that some configuration measured; ties go to the first.
std::vector<Best> best_configurations(const std::vector<ConfigSummary>& summaries);

// The summary as Markdown: one table per metric (mean ± sd, n per configuration), the best
// configuration per metric, and the share of anomalous runs as "k of n".
std::string summary_markdown(const std::vector<ConfigSummary>& summaries,
                             double anomaly_threshold_ms);

}  // namespace chimera::sweep

// Many agents running a scenario, measured: what `chimeraforge multi` and the concurrency
// benchmark run.
//
// Every request leaves a record (docs/records.md), the same record the Python and Rust peers
// write, and the concurrency figures of METRICS.md are computed from records alone
// (concurrency_figures()), so that our engine and the peers are measured by the same code.
//
// Scenarios:
//   homogeneous  N identical agents, each making K streaming calls on one pool
//   personas     the study's two personas: a data collector and an insight agent, half the
//                agents each, on two pools (pools named "collector" and "insight", else the
//                first two pools, else one pool for both)
//   workflow     N agents each running the agent workflow (ingest -> analysis -> report) on
//                the data folder, each into its own output folder
#pragma once

#include <chimera/engine/engine.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace chimera::multi {

enum class Scenario { homogeneous, personas, workflow };
const char* to_string(Scenario s);
std::optional<Scenario> parse_scenario(std::string_view name);

// One request, as docs/records.md defines it. Times: steady-clock nanoseconds; 0 = none.
struct RequestRecord {
  int agent = 0;
  int request = 0;
  bool ok = false;
  std::string error;
  int64_t t_send_ns = 0;
  int64_t t_first_token_ns = 0;
  int64_t t_last_token_ns = 0;
  int64_t t_done_ns = 0;
  int64_t first_byte_server_ns = 0;
  int64_t tokens_out = -1;  // -1: the server did not say
  int64_t chunks = 0;
  int64_t lag_sum_ns = 0;
  int64_t lag_max_ns = 0;
  int64_t stalls = 0;
  std::vector<int64_t> lags_ns;  // kept only when asked (MultiOptions::record_lags)
  std::vector<int64_t> itl_ns;   // gaps between chunks (not written to the records file)
  std::string endpoint;
};

// The concurrency figures of METRICS.md over one run's records.
struct ConcurrencyFigures {
  int agents = 0;
  int64_t requests = 0;
  int64_t errors = 0;
  int64_t tokens = 0;
  double wall_s = 0;                 // first t_send to last token
  double system_tps = 0;             // derived: tokens / wall
  std::optional<double> efficiency;  // derived: system_tps / (N * lone decode_tps_client)
  std::optional<double> contention;  // derived: needs server timestamps and a loopback floor
  std::optional<double> stall_rate;  // derived: needs server timestamps
  double balance = 0;                // derived: sum of agent durations / (N * the longest)
  double decode_tps_client = 0;      // derived: mean over ok requests
  // Percentiles, milliseconds (nearest rank).
  double ttft_p50 = 0, ttft_p90 = 0, ttft_p99 = 0, ttft_max = 0;
  double itl_p50 = 0, itl_p99 = 0;
  std::optional<double> overhead_ttft_p50, overhead_ttft_p99;
  std::optional<double> lag_p50, lag_p99;
  double e2e_p50 = 0, e2e_p99 = 0;
};

// Computes the figures. `lone_decode_tps` (a lone agent's decode_tps_client) gives efficiency;
// `loopback_floor_ns` (the median lag of a lone agent) gives contention.
ConcurrencyFigures concurrency_figures(const std::vector<RequestRecord>& records, int agents,
                                       std::optional<double> lone_decode_tps,
                                       std::optional<int64_t> loopback_floor_ns);

// The median of every lag in `records` (a lone agent's run: the loopback floor).
std::optional<int64_t> median_lag(const std::vector<RequestRecord>& records);

// Bounds run_multi checks before it starts (in double, before any conversion).
inline constexpr double kMaxDurationS = 7 * 24 * 3600.0;  // a week
inline constexpr double kMaxStaggerMs = 3'600'000;        // an hour

struct MultiOptions {
  EngineOptions engine;  // pools and executor
  Scenario scenario = Scenario::homogeneous;
  int agents = 1;
  int requests_per_agent = 1;  // ignored when duration_s > 0
  double duration_s = 0;       // each agent calls until this much time has passed
  std::string pool;            // homogeneous: the pool (empty: the first)
  std::string model;           // model name for HTTP backends
  std::string prompt = "Summarize the benchmark results in one sentence.";
  int max_tokens = 64;  // num_predict of each call
  std::optional<double> temperature;
  // More options sent with every call (a sweep's configuration); max_tokens and temperature,
  // when set, take precedence. Workflow scenario: when any is set, the workflow's calls carry
  // these options alone instead of the study's "chimera" configuration.
  Options options;
  std::vector<std::filesystem::path> workflow_data = {"data/sample"};
  std::filesystem::path workflow_out = "out/multi";
  bool record_lags = false;  // keep every chunk's delivery_lag in the records
  // Agent i starts at i/N of this (ms), so that N agents do not all start in the same instant
  // (and, against a server with a fixed pace, receive their tokens in synchronized bursts).
  double stagger_ms = 0;
  // When set and true, agents start no new request: the run ends once the requests in flight
  // have (Ctrl-C in `chimeraforge multi`: the records so far are still written).
  const std::atomic<bool>* stop = nullptr;
  // Progress, from a thread of the engine: requests finished so far.
  std::function<void(int64_t done, int64_t errors)> on_progress;
};

struct MultiResult {
  std::vector<RequestRecord> records;
  AgentRun run;
  int64_t rss_peak_bytes = 0;  // VmHWM of this process after the run
};

// Runs the scenario. Throws std::invalid_argument for a configuration that cannot run (no pool,
// an unknown pool name, a duration or stagger that is not finite or out of its bounds).
MultiResult run_multi(Engine& engine, const MultiOptions& options);

// One record as a JSON line (docs/records.md).
std::string record_json(const RequestRecord& r, const std::string& program);

// Peak resident set of this process (VmHWM), bytes; 0 when unknown.
int64_t rss_peak_bytes();

}  // namespace chimera::multi

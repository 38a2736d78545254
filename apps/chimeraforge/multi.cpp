// `chimeraforge multi`: N agents running a scenario over endpoint pools, and the concurrency
// figures of METRICS.md.
#include "commands.hpp"
#include "connection_flags.hpp"
#include "open_files.hpp"
#include "option_flags.hpp"
#include "signals.hpp"

#include <chimera/core/system_error.hpp>
#include <chimera/engine/engine.hpp>
#include <chimera/pool/pool.hpp>
#include <chimera/scenarios/multi.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

namespace chimera::cli {

namespace {

constexpr int kMaxAgents = 100'000;

struct MultiArgs {
  int agents = 1;
  std::string pools_file;
  std::vector<std::string> endpoints;
  std::string backend = "openai";
  std::string routing = "least-outstanding";
  int max_concurrency = 0;
  int64_t hedge_after_ms = 0;
  std::string executor = "single";
  int threads = 0;
  int busy_poll_us = 0;
  bool pin_threads = true;
  std::string scenario = "homogeneous";
  int requests_per_agent = 1;
  double duration_s = 0;
  std::string pool;
  std::string model;
  std::string prompt = "Summarize the benchmark results in one sentence.";
  int max_tokens = 64;
  std::optional<double> temperature;
  std::string data = "data/sample";
  std::string workflow_out = "out/multi";
  std::string records;
  std::string results = "out/multi-results.json";
  bool record_lags = false;
  double stagger_ms = 0;
  bool calibrate = true;
  bool json = false;
  bool quiet = false;
  ConnectionFlags connection;  // defaults for every endpoint; a pool file's own settings win
};

// Writes `text` to `path` (its folder made first); false, with a message naming the flag, the
// file and the reason (EMFILE and ENOSPC in words), when it cannot.
bool write_output(const char* flag, const std::string& path, const std::string& text) {
  std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  errno = 0;
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (out) {
    out << text;
    out.flush();
  }
  if (!out || ec) {
    const int err = errno;
    fmt::print(stderr, "chimeraforge multi: {}: cannot write '{}': {}\n", flag, path,
               ec         ? ec.message()
               : err != 0 ? describe_errno(err)
                          : "the stream failed");
    return false;
  }
  return true;
}

// Empty when the numeric flags are usable; otherwise what is wrong, naming the flag. Checked
// before anything starts: a duration of 1e10 s or nan would overflow the deadline arithmetic.
std::string check_flags(const MultiArgs& a) {
  auto finite_in = [](const char* flag, double v, double lo, double hi) -> std::string {
    if (std::isfinite(v) && v >= lo && v <= hi) return {};
    return fmt::format("{} is {}; it must be a finite number from {} to {}", flag, v, lo, hi);
  };
  auto int_in = [](const char* flag, int64_t v, int64_t lo, int64_t hi) -> std::string {
    if (v >= lo && v <= hi) return {};
    return fmt::format("{} is {}; it must be from {} to {}", flag, v, lo, hi);
  };
  Options o;
  o.num_predict = a.max_tokens;
  o.temperature = a.temperature;
  for (std::string e : {int_in("--agents", a.agents, 1, kMaxAgents),
                        int_in("--requests-per-agent", a.requests_per_agent, 1, 1'000'000),
                        finite_in("--duration", a.duration_s, 0, multi::kMaxDurationS),
                        finite_in("--stagger-ms", a.stagger_ms, 0, multi::kMaxStaggerMs),
                        int_in("--hedge-after-ms", a.hedge_after_ms, 0, pool::kMaxHedgeAfterMs),
                        int_in("--max-concurrency", a.max_concurrency, 0, pool::kMaxConcurrency),
                        int_in("--threads", a.threads, 0, 4'096),
                        int_in("--busy-poll-us", a.busy_poll_us, 0, kMaxBusyPollUs), validate(o)}) {
    if (!e.empty()) return e;
  }
  return {};
}

boost::json::value opt(const std::optional<double>& v) {
  return v ? boost::json::value(*v) : boost::json::value(nullptr);
}

void say(const MultiArgs& a, const std::string& s) {
  if (!a.quiet) fmt::print(stderr, "{}\n", s);
}

// Each agent holds a socket while its request runs (and keeps it for the next call); the
// process needs a few dozen more for itself. Past the limit, connects fail with EMFILE.
void warn_if_few_open_files(const MultiArgs& a) {
  const rlim_t open_files = raise_open_files();
  constexpr rlim_t kOwnFiles = 64;
  if (open_files != 0 && rlim_t(a.agents) + kOwnFiles > open_files) {
    fmt::print(stderr,
               "chimeraforge multi: warning: {} agents need about {} open files (a socket each, "
               "plus the process's own), but this process may open {} (RLIMIT_NOFILE, hard "
               "limit included); requests beyond it fail with EMFILE. Raise it (`ulimit -n {}` "
               "as root or with a higher hard limit) or run fewer agents\n",
               a.agents, rlim_t(a.agents) + kOwnFiles, open_files,
               std::max<rlim_t>(4096, rlim_t(a.agents) * 2));
  }
}

// The pools from --pools or --endpoint; false (reported) when the flags do not give them.
bool pools_from_flags(const MultiArgs& a, std::vector<pool::PoolConfig>& pools) {
  if (!a.pools_file.empty() && !a.endpoints.empty()) {
    fmt::print(stderr, "give either --pools FILE or --endpoint URL, not both\n");
    return false;
  }
  if (!a.pools_file.empty()) {
    std::string error;
    if (!pool::load_pools(a.pools_file, pools, error)) {
      fmt::print(stderr, "--pools: {}\n", error);
      return false;
    }
    return true;
  }
  std::vector<std::string> urls = a.endpoints;
  if (urls.empty()) {
    if (std::string url = endpoint_from_environment(a.backend); !url.empty()) urls.push_back(url);
  }
  if (urls.empty()) {
    fmt::print(stderr,
               "no endpoint: give --endpoint URL (repeat it for a pool of several) or "
               "--pools FILE (or set $OLLAMA_HOST or $OPENAI_BASE_URL)\n");
    return false;
  }
  pool::PoolConfig pc;
  pc.name = "default";
  auto routing = pool::parse_routing(a.routing);
  if (!routing) {
    fmt::print(stderr,
               "--routing: unknown policy '{}' (pinned, round-robin, "
               "least-outstanding, session-affinity)\n",
               a.routing);
    return false;
  }
  pc.routing = *routing;
  pc.hedge_after_ms = a.hedge_after_ms;
  for (const auto& url : urls) {
    pool::PoolEndpoint pe;
    pe.config.url = url;
    pe.config.kind = parse_backend_kind(a.backend).value_or(BackendKind::openai);
    pe.max_concurrency = a.max_concurrency;
    pc.endpoints.push_back(std::move(pe));
  }
  pools.push_back(std::move(pc));
  return true;
}

// The executor and the pools; false (reported) on a usage error.
bool engine_options_from_flags(const MultiArgs& a, EngineOptions& eo) {
  if (auto e = parse_executor(a.executor)) {
    eo.executor = *e;
  } else {
    fmt::print(stderr,
               "--executor: unknown executor '{}' (single, shared, per-core, "
               "thread-per-agent)\n",
               a.executor);
    return false;
  }
  eo.threads = a.threads;
  eo.busy_poll_us = a.busy_poll_us;
  eo.pin_threads = a.pin_threads;
  if (!pools_from_flags(a, eo.pools)) return false;
  // Keep a connection per agent open between calls instead of reconnecting.
  for (auto& pc : eo.pools) {
    for (auto& e : pc.endpoints) {
      apply_connection_flags(a.connection, e.config);
      e.config.limits.max_idle_connections =
          std::max<std::size_t>(e.config.limits.max_idle_connections, std::size_t(a.agents) + 1);
    }
  }
  return true;
}

// The scenario and its load; false (reported) on an unknown scenario.
bool multi_options_from_flags(const MultiArgs& a, multi::MultiOptions& mo) {
  if (auto s = multi::parse_scenario(a.scenario)) {
    mo.scenario = *s;
  } else {
    fmt::print(stderr, "--scenario: unknown scenario '{}' (homogeneous, personas, workflow)\n",
               a.scenario);
    return false;
  }
  mo.agents = a.agents;
  mo.requests_per_agent = a.requests_per_agent;
  mo.duration_s = a.duration_s;
  mo.pool = a.pool;
  mo.model = a.model;
  mo.prompt = a.prompt;
  mo.max_tokens = a.max_tokens;
  mo.temperature = a.temperature;
  mo.workflow_data = {a.data};
  mo.workflow_out = a.workflow_out;
  mo.record_lags = a.record_lags;
  mo.stagger_ms = a.stagger_ms;
  return true;
}

// With one loop thread doing nearly all the allocation, every thread allocates from glibc's main
// heap. A thread's own heap grows by exactly what each allocation lacks, one mprotect each
// (5,075 in a run of 1,000 agents), where the main heap grows by sbrk with a 128 KiB margin
// (171). Set before the engine starts its threads (a thread takes its heap at its first
// allocation). Not for several loop threads: they would then contend for one heap's lock
// (docs/performance.md, "The floor").
void use_one_heap() {
  mallopt(M_ARENA_MAX, 1);
}

// The engine, or the exit code (reported) when it cannot be made.
std::optional<int> open_engine(const EngineOptions& eo, std::optional<Engine>& engine) {
  try {
    engine.emplace(eo);
  } catch (const std::invalid_argument& e) {
    // A URL or setting that cannot be used is a usage error; a model that cannot be loaded is
    // a failure (as for `generate`).
    bool in_process = false;
    for (const auto& pc : eo.pools) {
      for (const auto& ep : pc.endpoints) in_process |= ep.config.kind == BackendKind::llama;
    }
    fmt::print(stderr, "chimeraforge multi: {}\n", e.what());
    return in_process ? kFailed : kUsage;
  }
  return std::nullopt;
}

// What the main run is measured against (METRICS.md); empty without calibration.
struct Calibration {
  std::optional<double> lone_tps;
  std::optional<double> lone_system_tps;
  std::optional<int64_t> floor;
};

// A lone agent first: its decode rate is efficiency's denominator and its median delivery lag
// is contention's loopback floor (METRICS.md). False (reported) when the lone agent failed.
bool calibrate(const MultiArgs& a, Engine& engine, const multi::MultiOptions& mo, Calibration& c) {
  if (!a.calibrate || mo.scenario == multi::Scenario::workflow) return true;
  multi::MultiOptions lone = mo;
  lone.agents = 1;
  lone.duration_s = 0;
  lone.requests_per_agent = std::min(a.requests_per_agent, 5);
  lone.record_lags = true;
  const auto r = multi::run_multi(engine, lone);
  const auto f = multi::concurrency_figures(r.records, 1, std::nullopt, std::nullopt);
  if (f.errors > 0) {
    fmt::print(stderr, "the lone-agent calibration failed: {}\n",
               r.records.empty() ? "no request" : r.records.front().error);
    return false;
  }
  if (f.decode_tps_client > 0) c.lone_tps = f.decode_tps_client;
  if (f.system_tps > 0) c.lone_system_tps = f.system_tps;
  c.floor = multi::median_lag(r.records);
  say(a,
      fmt::format("calibration: a lone agent decodes {:.1f} tokens/s{}", f.decode_tps_client,
                  c.floor ? fmt::format(", median delivery lag {:.3f} ms", *c.floor / 1e6) : ""));
  return true;
}

// The measured run, with progress on stderr. Ctrl-C: no new requests; those in flight finish
// and every record so far is written.
multi::MultiResult run_measured(const MultiArgs& a, Engine& engine, multi::MultiOptions& mo,
                                bool tty) {
  std::atomic<int64_t> last_print{0};
  const int64_t total = mo.duration_s > 0 ? 0 : int64_t(a.agents) * a.requests_per_agent;
  mo.on_progress = [&](int64_t done, int64_t errors) {
    const int64_t now = now_ns();
    int64_t last = last_print.load();
    if ((now - last < 1'000'000'000 && done != total) ||
        !last_print.compare_exchange_strong(last, now)) {
      return;
    }
    if (a.quiet) return;
    fmt::print(stderr, "{}{} requests done{}, {} errors{}", tty ? "\r" : "", done,
               total ? fmt::format(" of {}", total) : "", errors, tty ? "   " : "\n");
  };
  mo.stop = &StopFlag::flag();
  const StopFlag stop_flag({SIGINT, SIGTERM});
  return multi::run_multi(engine, mo);
}

// What the records' header and the figures need from the engine, taken before it is closed.
struct EngineFacts {
  std::vector<std::string> pool_names;
  std::string executor_name;
  EndpointConfig first_endpoint;
  boost::json::array endpoints;  // each endpoint's status
};

EngineFacts engine_facts(Engine& engine) {
  EngineFacts facts;
  facts.pool_names = engine.pool_names();
  facts.executor_name = to_string(engine.executor());
  facts.first_endpoint = engine.pool(facts.pool_names.front()).config().endpoints.front().config;
  for (const auto& name : facts.pool_names) {
    for (const auto& s : engine.pool(name).status()) {
      facts.endpoints.push_back({{"pool", name},
                                 {"url", s.url},
                                 {"address", s.address},
                                 {"up", s.up},
                                 {"dispatched", s.dispatched},
                                 {"last_error", s.last_error}});
    }
  }
  return facts;
}

boost::json::object figures_json(const MultiArgs& a, const multi::ConcurrencyFigures& f,
                                 const multi::MultiResult& result, const Calibration& c,
                                 EngineFacts& facts) {
  boost::json::object o{
      {"program", "chimeraforge"},
      {"scenario", a.scenario},
      {"executor", facts.executor_name},
      {"busy_poll_us", a.busy_poll_us},
      {"pin_threads", a.pin_threads},
      {"agents", a.agents},
      {"requests", f.requests},
      {"errors", f.errors},
      {"tokens", f.tokens},
      {"wall_s", f.wall_s},
      {"system_tps", f.system_tps},
      {"efficiency", opt(f.efficiency)},
      // system_tps(N) / (N x system_tps(1)): efficiency without the (tokens-1)/tokens bias of
      // comparing a whole-run rate with a decode rate (docs/multi.md).
      {"scaling", c.lone_system_tps
                      ? boost::json::value(f.system_tps / (a.agents * *c.lone_system_tps))
                      : boost::json::value(nullptr)},
      {"contention", opt(f.contention)},
      {"stall_rate", opt(f.stall_rate)},
      {"balance", f.balance},
      {"decode_tps_client", f.decode_tps_client},
      {"lone_decode_tps_client", opt(c.lone_tps)},
      {"loopback_floor_ms", c.floor ? boost::json::value(*c.floor / 1e6) : nullptr},
      {"ttft_client_p50_ms", f.ttft_p50},
      {"ttft_client_p90_ms", f.ttft_p90},
      {"ttft_client_p99_ms", f.ttft_p99},
      {"ttft_client_max_ms", f.ttft_max},
      {"itl_p50_ms", f.itl_p50},
      {"itl_p99_ms", f.itl_p99},
      {"overhead_ttft_p50_ms", opt(f.overhead_ttft_p50)},
      {"overhead_ttft_p99_ms", opt(f.overhead_ttft_p99)},
      {"delivery_lag_p50_ms", opt(f.lag_p50)},
      {"delivery_lag_p99_ms", opt(f.lag_p99)},
      {"e2e_p50_ms", f.e2e_p50},
      {"e2e_p99_ms", f.e2e_p99},
      {"rss_peak", result.rss_peak_bytes},
      {"agents_failed", result.run.failed},
      {"sources",
       {{"system_tps", "derived"},
        {"efficiency", "derived"},
        {"scaling", "derived"},
        {"contention", "derived"},
        {"stall_rate", "derived"},
        {"balance", "derived"},
        {"ttft_client", "measured"},
        {"itl", "measured"},
        {"overhead_ttft", "derived"},
        {"rss_peak", "measured"}}}};
  o["endpoints"] = std::move(facts.endpoints);
  return o;
}

void print_figures_text(const MultiArgs& a, const multi::ConcurrencyFigures& f,
                        const multi::MultiResult& result) {
  auto pct = [](const std::optional<double>& v, const char* unit) {
    return v ? fmt::format("{:.3f}{}", *v * (std::string(unit) == "%" ? 100 : 1), unit)
             : std::string("n/a");
  };
  fmt::print("agents {}  requests {}  errors {}  tokens {}  wall {:.2f} s\n", a.agents, f.requests,
             f.errors, f.tokens, f.wall_s);
  fmt::print("system_tps {:.1f}  efficiency {}  contention {}  stall_rate {}  balance {:.3f}\n",
             f.system_tps, pct(f.efficiency, "%"), pct(f.contention, "%"), pct(f.stall_rate, "%"),
             f.balance);
  fmt::print(
      "ttft_client p50 {:.2f} ms  p99 {:.2f} ms  max {:.2f} ms   itl p50 {:.3f} ms  "
      "p99 {:.3f} ms\n",
      f.ttft_p50, f.ttft_p99, f.ttft_max, f.itl_p50, f.itl_p99);
  if (f.overhead_ttft_p50) {
    fmt::print("overhead_ttft p50 {:.3f} ms  p99 {:.3f} ms   delivery_lag p50 {} ms  p99 {} ms\n",
               *f.overhead_ttft_p50, *f.overhead_ttft_p99,
               f.lag_p50 ? fmt::format("{:.3f}", *f.lag_p50) : "n/a",
               f.lag_p99 ? fmt::format("{:.3f}", *f.lag_p99) : "n/a");
  }
  fmt::print("rss_peak {:.1f} MB\n", static_cast<double>(result.rss_peak_bytes) / 1e6);
  if (f.errors > 0) {
    for (const auto& r : result.records) {
      if (!r.ok) {
        fmt::print("first error: agent {} request {}: {}\n", r.agent, r.request, r.error);
        break;
      }
    }
  }
}

// One JSON record per request after a header with the same keys as the peers' (bench/peers,
// docs/records.md); false (reported) when the file cannot be written.
bool write_records(const MultiArgs& a, const EngineFacts& facts, const multi::MultiResult& result) {
  std::string records;
  boost::json::array argv;
  for (auto& arg : redacted_command_line()) argv.emplace_back(arg);
  boost::json::object header{
      {"kind", "header"},
      {"program", "chimeraforge"},
      {"command", std::move(argv)},
      {"endpoint", redact_url(facts.first_endpoint.url)},
      {"backend", to_string(facts.first_endpoint.kind)},
      {"agents", a.agents},
      {"requests_per_agent", a.requests_per_agent},
      {"model", a.model},
      {"prompt", a.prompt},
      {"max_tokens", a.max_tokens},
      {"record_lags", a.record_lags},
      {"stagger_ms", a.stagger_ms},
      {"executor", facts.executor_name},
      {"busy_poll_us", a.busy_poll_us},
      {"pin_threads", a.pin_threads},
      {"scenario", a.scenario},
      {"pools", fmt::format("{}", fmt::join(facts.pool_names, ","))},
      {"env", {{"cpu_count", std::thread::hardware_concurrency()}, {"compiler", __VERSION__}}}};
  records += boost::json::serialize(header) + "\n";
  for (const auto& r : result.records) records += multi::record_json(r, "chimeraforge") + "\n";
  return write_output("--records", a.records, records);
}

int run_multi_cmd(const MultiArgs& a) {
  if (const std::string bad = check_flags(a); !bad.empty()) {
    fmt::print(stderr, "chimeraforge multi: {}\n", bad);
    return kUsage;
  }
  warn_if_few_open_files(a);
  EngineOptions eo;
  if (!engine_options_from_flags(a, eo)) return kUsage;
  multi::MultiOptions mo;
  if (!multi_options_from_flags(a, mo)) return kUsage;
  if (eo.executor == ExecutorKind::single) use_one_heap();
  std::optional<Engine> engine_holder;
  if (const auto code = open_engine(eo, engine_holder)) return *code;
  Engine& engine = *engine_holder;
  const bool tty = isatty(STDERR_FILENO) != 0;
  say(a, fmt::format("multi: {} agents, scenario {}, executor {} ({} loops, {} lanes), pools: {}",
                     a.agents, a.scenario, to_string(engine.executor()), engine.loops(),
                     engine.lanes(), fmt::join(engine.pool_names(), ", ")));

  Calibration calibration;
  if (!calibrate(a, engine, mo, calibration)) return kFailed;
  const auto result = run_measured(a, engine, mo, tty);
  const bool interrupted = StopFlag::raised();
  if (interrupted)
    say(a, "interrupted: the requests in flight finished; writing what was measured");
  if (tty && !a.quiet) fmt::print(stderr, "\n");
  const auto f =
      multi::concurrency_figures(result.records, a.agents, calibration.lone_tps, calibration.floor);

  // The engine is closed before anything is written, so that its idle connections (one per
  // agent) no longer hold the descriptors the output files need.
  EngineFacts facts = engine_facts(engine);
  engine_holder.reset();

  const std::string text = boost::json::serialize(figures_json(a, f, result, calibration, facts));
  if (a.json) {
    fmt::print("{}\n", text);
  } else {
    print_figures_text(a, f, result);
  }
  std::fflush(stdout);

  // The files last: a summary is never lost to a file that cannot be written, and a file that
  // cannot be written is said so (a full disk, EMFILE), never skipped in silence.
  bool written = true;
  if (!a.records.empty()) written &= write_records(a, facts, result);
  if (!a.results.empty()) written &= write_output("--results", a.results, text + "\n");
  if (interrupted) return kInterrupted;
  if (!written) return kFailed;
  return f.errors == 0 && result.run.failed == 0 ? kOk : kFailed;
}

}  // namespace

std::function<int()> add_multi(CLI::App& app) {
  auto a = std::make_shared<MultiArgs>();
  auto* cmd = app.add_subcommand(
      "multi",
      "Run N agents at once over endpoint pools and print the concurrency figures "
      "(docs/multi.md).\n\n"
      "Examples:\n"
      "  chimeraforge synth-server --port 11500 &\n"
      "  chimeraforge multi --agents 1000 --endpoint http://127.0.0.1:11500 --backend ollama \\\n"
      "      --executor per-core --requests-per-agent 2\n"
      "  chimeraforge multi --agents 8 --pools pools.toml --scenario personas --json\n"
      "  chimeraforge multi --agents 4 --endpoint tiny.gguf --backend llama --scenario "
      "workflow\n\n" +
          connection_env_help());
  add_connection_flags(cmd, a->connection);
  cmd->add_option("--agents,-n", a->agents, "Agents running at once (1 to 100000)")
      ->capture_default_str();
  cmd->add_option("--pools", a->pools_file,
                  "Pool file (TOML, see docs/pools.md); instead of --endpoint");
  cmd->add_option("--endpoint", a->endpoints,
                  "Endpoint URL (or GGUF file with --backend llama); repeat it for a pool of "
                  "several");
  cmd->add_option("--backend,-b", a->backend, "Protocol of --endpoint: ollama, openai or llama")
      ->check(CLI::IsMember({"ollama", "openai", "llama"}))
      ->capture_default_str();
  cmd->add_option("--routing", a->routing,
                  "With several --endpoint: pinned, round-robin, least-outstanding, "
                  "session-affinity")
      ->capture_default_str();
  cmd->add_option("--max-concurrency", a->max_concurrency,
                  "Requests in flight per --endpoint (its slots); 0: no limit")
      ->capture_default_str();
  cmd->add_option("--hedge-after-ms", a->hedge_after_ms,
                  "Send a request to a second endpoint when no token came after this long; 0: "
                  "never")
      ->capture_default_str();
  cmd->add_option("--executor,-e", a->executor,
                  "single (one thread, one loop), shared (one loop, a thread pool), per-core "
                  "(a loop per core, agents pinned), thread-per-agent")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads,
                  "Loop threads / loops / I/O threads; 0: one per CPU the process may use")
      ->capture_default_str();
  cmd->add_option("--busy-poll-us", a->busy_poll_us,
                  "Each loop thread polls this many microseconds for the next event before it "
                  "sleeps: fewer wake-ups between the tokens of many streams, for that much CPU "
                  "after each lull (docs/performance.md); 0: sleep at once")
      ->capture_default_str();
  cmd->add_option("--pin-threads", a->pin_threads,
                  "per-core: pin each loop's thread to its core; single: hold the loop's thread "
                  "on its CPU while it is busy and calm there, giving it back to the kernel when "
                  "it waits, so that the kernel moves a busy local server away from it instead "
                  "(docs/multi.md); false: leave the threads to the kernel")
      ->capture_default_str();
  cmd->add_option("--scenario", a->scenario, "homogeneous, personas or workflow")
      ->capture_default_str();
  cmd->add_option("--requests-per-agent,-k", a->requests_per_agent, "Calls each agent makes")
      ->capture_default_str();
  cmd->add_option("--duration", a->duration_s,
                  "Seconds each agent keeps calling (instead of --requests-per-agent)");
  cmd->add_option("--pool", a->pool, "Homogeneous and workflow: the pool to use (default: first)");
  cmd->add_option("--model,-m", a->model, "Model name sent to HTTP servers");
  cmd->add_option("--prompt", a->prompt, "The user message of each call")->capture_default_str();
  cmd->add_option("--max-tokens", a->max_tokens, "num_predict of each call")->capture_default_str();
  add_option_flag(cmd, "temperature", a->temperature, "(default: the server's)");
  cmd->add_option("--data", a->data, "Workflow scenario: data folder")->capture_default_str();
  cmd->add_option("--workflow-out", a->workflow_out, "Workflow scenario: output folder")
      ->capture_default_str();
  cmd->add_option("--records", a->records,
                  "Write one JSON record per request here (docs/records.md)");
  cmd->add_option("--stagger-ms", a->stagger_ms,
                  "Spread the agents' starts evenly over this many ms (agent i waits i/N of it)")
      ->capture_default_str();
  cmd->add_flag("--record-lags", a->record_lags, "Keep every chunk's delivery_lag in the records");
  cmd->add_option("--results", a->results, "Write the figures (JSON) here")->capture_default_str();
  cmd->add_flag("!--no-calibrate", a->calibrate,
                "Skip the lone-agent run that efficiency and contention are relative to");
  cmd->add_flag("--json", a->json, "Print one JSON object (METRICS.md names) instead of text");
  cmd->add_flag("--quiet,-q", a->quiet, "No progress on stderr");
  return [a]() { return run_multi_cmd(*a); };
}

}  // namespace chimera::cli

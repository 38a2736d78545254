// `chimeraforge sweep`: a grid of request and server settings, each configuration run several
// times through a scenario, one JSON record per run, and the summary per configuration
// (docs/sweep.md).
#include "commands.hpp"
#include "connection_flags.hpp"
#include "signals.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/backends/server_process.hpp>
#include <chimera/core/options.hpp>
#include <chimera/core/system_error.hpp>
#include <chimera/engine/engine.hpp>
#include <chimera/pool/pool.hpp>
#include <chimera/scenarios/multi.hpp>
#include <chimera/scenarios/sweep.hpp>
#include <chimera/workflow/svg.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

namespace chimera::cli {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr const char* kCmd = "chimeraforge sweep";
constexpr int kMaxRuns = 10'000;
constexpr int kMaxAgents = 10'000;
constexpr int kMaxServers = 64;

struct SweepArgs {
  std::vector<std::string> endpoints;
  std::string backend = "ollama";
  std::string model;
  std::vector<std::string> grid;
  std::vector<std::string> set;
  int runs = 3;
  std::string scenario = "single";
  int agents = 0;  // 0: 1 for single and workflow, 2 for multi
  int requests_per_agent = 1;
  int max_tokens = 64;
  std::string prompt = "Summarize the benchmark results in one sentence.";
  std::string executor = "single";
  std::string data = "data/sample";
  int servers = 1;
  int parallel = 0;  // 0: the agents
  double anomaly_ms = sweep::kTtftAnomalyMs;
  std::string out = "out/sweep";
  bool resume = false;
  bool quiet = false;
  std::vector<std::string> server_args;
  ConnectionFlags connection;  // for every endpoint (--endpoint, or the servers started)
};

// Everything the run loop needs, decided before anything starts.
struct Plan {
  BackendKind kind = BackendKind::ollama;
  bool servers_ours = false;  // OpenAI-compatible: llama-servers this sweep starts
  multi::Scenario scenario = multi::Scenario::homogeneous;
  int agents = 1;
  std::vector<sweep::Axis> axes;
  Options base;
  std::vector<sweep::Configuration> grid;
  std::map<std::string, std::string> placements;  // option name -> where it goes
};

void say(const SweepArgs& a, const std::string& s) {
  if (!a.quiet) fmt::print(stderr, "{}\n", s);
}

std::string check_numbers(const SweepArgs& a) {
  auto in = [](const char* flag, double v, double lo, double hi) -> std::string {
    if (std::isfinite(v) && v >= lo && v <= hi) return {};
    return fmt::format("{} is {}; it must be from {} to {}", flag, v, lo, hi);
  };
  for (std::string e :
       {in("--runs", a.runs, 1, kMaxRuns), in("--agents", a.agents, 0, kMaxAgents),
        in("--requests-per-agent", a.requests_per_agent, 1, 1'000'000),
        in("--max-tokens", a.max_tokens, 1, kMaxNumPredict),
        in("--servers", a.servers, 1, kMaxServers), in("--parallel", a.parallel, 0, kMaxParallel),
        in("--anomaly-ms", a.anomaly_ms, 0, 3.6e6)}) {
    if (!e.empty()) return e;
  }
  return {};
}

// Where the endpoints come from, for the backend chosen.
std::string check_model_file(const std::string& model) {
  std::error_code ec;
  if (fs::is_regular_file(model, ec)) return {};
  return fmt::format(
      "--model '{}': no such file (a GGUF model; `chimeraforge model synth` makes "
      "one)",
      model);
}

std::string check_endpoints(const SweepArgs& a, Plan& p) {
  p.kind = parse_backend_kind(a.backend).value_or(BackendKind::ollama);
  if (p.kind == BackendKind::llama) {
    if (a.model.empty()) return "--backend llama needs --model FILE.gguf (the model it loads)";
    if (!a.endpoints.empty())
      return "--backend llama runs in-process: give --model, not --endpoint";
    return check_model_file(a.model);
  }
  if (p.kind == BackendKind::openai && a.endpoints.empty()) {
    if (a.model.empty()) {
      return "give --endpoint URL, or --model FILE.gguf and the sweep starts llama-servers";
    }
    p.servers_ours = true;
    return check_model_file(a.model);
  }
  if (a.endpoints.empty()) return "give --endpoint URL (repeat it for a pool of several)";
  if (p.kind == BackendKind::ollama && a.model.empty()) {
    return "--backend ollama needs --model NAME (`ollama list` shows them)";
  }
  return {};
}

std::string parse_scenario(const SweepArgs& a, Plan& p) {
  if (a.scenario == "single" || a.scenario == "multi") {
    p.scenario = multi::Scenario::homogeneous;
  } else if (a.scenario == "workflow") {
    p.scenario = multi::Scenario::workflow;
  } else {
    return fmt::format("--scenario is '{}'; it must be single, multi or workflow", a.scenario);
  }
  p.agents = a.agents > 0 ? a.agents : a.scenario == "multi" ? 2 : 1;
  if (a.scenario == "single" && p.agents != 1) return "--scenario single runs one agent";
  return {};
}

// The grid's axes and the fixed settings, each checked against the table and the backend;
// the axes that restart or reload come first, so that they change least often.
std::string parse_settings(const SweepArgs& a, Plan& p) {
  for (const auto& text : a.grid) {
    sweep::Axis axis;
    if (auto e = sweep::parse_axis(text, axis); !e.empty()) return e;
    p.axes.push_back(std::move(axis));
  }
  std::vector<std::string> names;
  for (const auto& text : a.set) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0)
      return fmt::format("--set '{}': write NAME=VALUE", text);
    names.push_back(text.substr(0, eq));
    if (auto e = set_option_text(p.base, names.back(), text.substr(eq + 1)); !e.empty()) {
      return fmt::format("--set '{}': {}", text, e);
    }
  }
  for (const auto& axis : p.axes) names.push_back(axis.name);
  for (const auto& name : names) {
    sweep::Placement where{};
    if (auto e = sweep::placement_of(p.kind, name, p.servers_ours, where); !e.empty()) return e;
    p.placements[name] = sweep::to_string(where);
  }
  std::stable_partition(p.axes.begin(), p.axes.end(), [&](const sweep::Axis& axis) {
    return p.placements[axis.name] != sweep::to_string(sweep::Placement::per_request);
  });
  return sweep::expand_grid(p.axes, p.base, p.grid);
}

std::string make_plan(const SweepArgs& a, Plan& p) {
  for (std::string e : {check_numbers(a), check_endpoints(a, p), parse_scenario(a, p)}) {
    if (!e.empty()) return e;
  }
  if (!parse_executor(a.executor)) {
    return fmt::format(
        "--executor is '{}'; it must be single, shared, per-core or "
        "thread-per-agent",
        a.executor);
  }
  return parse_settings(a, p);
}

// ---- servers and engines ----

// What one server key runs on: the llama-servers started for it (if any) and the engine.
struct Stage {
  std::vector<std::unique_ptr<ServerProcess>> servers;
  std::unique_ptr<Engine> engine;
  std::string key;
};

int slots(const SweepArgs& a, const Plan& p) {
  return a.parallel > 0 ? a.parallel : std::max(1, p.agents);
}

// -1 (as many layers as fit) is llama.cpp's "all layers": 999 is what its tools pass for it.
int gpu_layers(const Options& o) {
  return !o.num_gpu ? 0 : *o.num_gpu < 0 ? 999 : *o.num_gpu;
}

// Starts the llama-servers for `o`'s server settings: all at once, then waits for each.
std::string start_servers(const SweepArgs& a, const Plan& p, const Options& o, Stage& s) {
  for (int i = 0; i < a.servers; ++i) {
    ServerOptions so;
    so.model = a.model;
    so.parallel = slots(a, p);
    // -c is shared by the slots: each slot gets num_ctx.
    so.ctx = o.num_ctx ? *o.num_ctx * so.parallel : so.ctx;
    so.threads = o.num_thread.value_or(0);
    so.gpu_layers = gpu_layers(o);
    so.extra = a.server_args;
    so.wait_until_ready = false;
    s.servers.push_back(std::make_unique<ServerProcess>(std::move(so)));
  }
  for (auto& server : s.servers) {
    while (!server->poll_ready()) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (!server->ok()) return fmt::format("a llama-server failed to start: {}", server->error());
  }
  return {};
}

EngineOptions engine_options(const SweepArgs& a, const Plan& p, const Options& o, const Stage& s) {
  EngineOptions eo;
  eo.executor = parse_executor(a.executor).value_or(ExecutorKind::single);
  pool::PoolConfig pc;
  pc.name = "default";
  std::vector<std::string> urls = a.endpoints;
  if (p.kind == BackendKind::llama) urls = {a.model};
  for (const auto& server : s.servers) urls.push_back(server->url());
  for (const auto& url : urls) {
    pool::PoolEndpoint pe;
    pe.config.url = url;
    pe.config.kind = p.kind;
    pe.config.limits.max_idle_connections =
        std::max<std::size_t>(pe.config.limits.max_idle_connections, std::size_t(p.agents) + 1);
    apply_connection_flags(a.connection, pe.config);  // nothing for llama (in-process)
    if (p.kind == BackendKind::llama) {
      pe.config.llama.parallel = slots(a, p);
      if (o.num_ctx) pe.config.llama.ctx_per_seq = *o.num_ctx;
      pe.config.llama.gpu_layers = gpu_layers(o);
      pe.config.llama.threads = o.num_thread.value_or(0);
    }
    pc.endpoints.push_back(std::move(pe));
  }
  eo.pools.push_back(std::move(pc));
  return eo;
}

// Makes `s` serve configuration `c`: nothing to do when its server settings are those
// running; otherwise the servers are restarted or the model reloaded. Returns what was done
// ("" when nothing), or throws std::runtime_error with why it could not.
std::string prepare_stage(const SweepArgs& a, const Plan& p, const sweep::Configuration& c,
                          Stage& s) {
  const std::string key = sweep::server_key(c.options, p.kind, p.servers_ours);
  if (s.engine && key == s.key) return {};
  const bool first = !s.engine;
  s.engine.reset();  // its connections go before the servers do
  s.servers.clear();
  const int64_t t0 = now_ns();
  if (p.servers_ours) {
    if (auto e = start_servers(a, p, c.options, s); !e.empty()) throw std::runtime_error(e);
  }
  try {
    s.engine = std::make_unique<Engine>(engine_options(a, p, c.options, s));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  s.key = key;
  const std::string what = p.servers_ours                 ? (first ? "started" : "restarted")
                           : p.kind == BackendKind::llama ? (first ? "loaded" : "reloaded")
                                                          : "";
  if (what.empty()) return {};
  return fmt::format("{} {}{} in {:.0f} ms",
                     p.servers_ours ? fmt::format("{} llama-server(s)", a.servers) : "the model",
                     what, key.empty() ? "" : " with " + key,
                     static_cast<double>(now_ns() - t0) / 1e6);
}

// ---- one run ----

struct RunResult {
  multi::ConcurrencyFigures figures;
  std::optional<double> lone_tps;  // the references the figures were computed with
  std::optional<int64_t> floor_ns;
  int anomalies = 0;
  std::string first_error;
  double seconds = 0;
};

multi::MultiOptions multi_options(const SweepArgs& a, const Plan& p,
                                  const sweep::Configuration& c) {
  multi::MultiOptions mo;
  mo.scenario = p.scenario;
  mo.agents = p.agents;
  mo.requests_per_agent = a.requests_per_agent;
  // The model's name for servers given by --endpoint; a file otherwise, loaded already.
  mo.model = p.kind == BackendKind::llama || p.servers_ours ? "" : a.model;
  mo.prompt = a.prompt;
  mo.options = c.options;
  // GPU layers and threads went to the servers' restart or the model's reload: a request that
  // repeated them would be refused by the backends (they cannot take them per request).
  if (p.kind != BackendKind::ollama) {
    mo.options.num_gpu.reset();
    mo.options.num_thread.reset();
  }
  mo.max_tokens = c.options.num_predict.value_or(a.max_tokens);
  mo.workflow_data = {a.data};
  mo.workflow_out = fs::path(a.out) / "workflow";
  mo.stop = &StopFlag::flag();
  return mo;
}

// A lone agent's decode rate and median delivery lag (efficiency's and contention's
// references, METRICS.md): only for several agents.
struct Reference {
  std::optional<double> lone_tps;
  std::optional<int64_t> floor;
};

Reference calibrate(Engine& engine, multi::MultiOptions mo, int agents) {
  Reference ref;
  if (agents < 2 || mo.scenario == multi::Scenario::workflow) return ref;
  mo.agents = 1;
  mo.record_lags = true;
  const auto r = multi::run_multi(engine, mo);
  const auto f = multi::concurrency_figures(r.records, 1, std::nullopt, std::nullopt);
  if (f.errors == 0 && f.decode_tps_client > 0) ref.lone_tps = f.decode_tps_client;
  ref.floor = multi::median_lag(r.records);
  return ref;
}

RunResult run_once(const SweepArgs& a, Engine& engine, const multi::MultiOptions& mo,
                   const Reference& ref) {
  const int64_t t0 = now_ns();
  const auto r = multi::run_multi(engine, mo);
  RunResult out;
  out.seconds = static_cast<double>(now_ns() - t0) / 1e9;
  out.figures = multi::concurrency_figures(r.records, mo.agents, ref.lone_tps, ref.floor);
  out.lone_tps = ref.lone_tps;
  out.floor_ns = ref.floor;
  out.anomalies = sweep::ttft_anomalies(r.records, a.anomaly_ms);
  for (const auto& rec : r.records) {
    if (!rec.ok) {
      out.first_error = rec.error;
      break;
    }
  }
  return out;
}

// ---- records ----

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json::object options_json(const Options& o) {
  json::object out;
  for_each_set_option(
      o, [&out](std::string_view name, const auto& value) { out[name] = json::value_from(value); });
  return out;
}

json::object run_record(const SweepArgs& a, const Plan& p, const sweep::Configuration& c, int run,
                        const RunResult& r, const std::string& setup) {
  json::object settings;
  for (const auto& [name, value] : c.settings) settings[name] = json::parse(value);
  json::object figures;
  for (const auto& [name, v] : sweep::run_figures(r.figures, r.anomalies)) figures[name] = v;
  json::object placement;
  for (const auto& [name, where] : p.placements) placement[name] = where;
  return {{"kind", "run"},
          {"time", utc_now()},
          {"config", c.label},
          {"settings", std::move(settings)},
          {"options", options_json(c.options)},
          {"placement", std::move(placement)},
          {"server_settings", sweep::server_key(c.options, p.kind, p.servers_ours)},
          {"setup", setup},
          {"run", run},
          {"runs", a.runs},
          {"scenario", a.scenario},
          {"agents", p.agents},
          {"requests_per_agent", a.requests_per_agent},
          {"backend", to_string(p.kind)},
          {"ttft_anomaly_ms", a.anomaly_ms},
          {"seconds", r.seconds},
          {"first_error", r.first_error},
          {"lone_decode_tps_client", r.lone_tps ? json::value(*r.lone_tps) : nullptr},
          {"loopback_floor_ms", r.floor_ns ? json::value(*r.floor_ns / 1e6) : nullptr},
          {"figures", std::move(figures)}};
}

json::object header_record(const SweepArgs& a, const Plan& p) {
  json::array argv;
  for (auto& arg : redacted_command_line()) argv.emplace_back(arg);
  json::object grid;
  for (const auto& axis : p.axes) grid[axis.name] = json::value_from(axis.values);
  return {{"kind", "header"},
          {"time", utc_now()},
          {"program", "chimeraforge"},
          {"command", std::move(argv)},
          {"backend", to_string(p.kind)},
          {"endpoints",
           [&] {
             json::array urls;
             for (const auto& u : a.endpoints) urls.emplace_back(redact_url(u));
             return urls;
           }()},
          {"model", a.model},
          {"servers_started", p.servers_ours ? a.servers : 0},
          {"grid", std::move(grid)},
          {"configurations", p.grid.size()},
          {"env", {{"cpu_count", std::thread::hardware_concurrency()}, {"compiler", __VERSION__}}}};
}

// A run record's configuration, run number and figures; throws when one is missing.
sweep::RunFigures run_of(const json::object& o) {
  sweep::RunFigures r;
  r.config = json::value_to<std::string>(o.at("config"));
  r.run = static_cast<int>(o.at("run").to_number<int64_t>());
  for (const auto& [name, value] : o.at("figures").as_object()) {
    if (!value.is_null()) r.figures[std::string(name)] = value.to_number<double>();
  }
  return r;
}

// The runs recorded in `path` (earlier runs when resuming). A line that is not a whole record
// (a run cut off by a crash) is skipped and said so.
std::vector<sweep::RunFigures> read_runs(const fs::path& path) {
  std::vector<sweep::RunFigures> runs;
  std::ifstream in(path);
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    const json::object* o = ec ? nullptr : v.if_object();
    if (o == nullptr) {
      fmt::print(stderr, "{}: {}:{} is not a whole record; skipped\n", kCmd, path.string(),
                 line_no);
      continue;
    }
    const json::value* kind = o->if_contains("kind");
    if (kind == nullptr || !kind->is_string() || kind->get_string() != "run") continue;
    try {
      runs.push_back(run_of(*o));
    } catch (const std::exception& e) {
      fmt::print(stderr, "{}: {}:{}: {}; skipped\n", kCmd, path.string(), line_no, e.what());
    }
  }
  return runs;
}

// Appends one line and flushes it: a run recorded is never lost to a later crash.
bool append_line(const fs::path& path, const json::object& o) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << json::serialize(o) << '\n';
  out.flush();
  if (!out) {
    fmt::print(stderr, "{}: cannot write '{}': {}\n", kCmd, path.string(), describe_errno(errno));
  }
  return static_cast<bool>(out);
}

bool write_file(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) {
      fmt::print(stderr, "{}: cannot write '{}': {}\n", kCmd, tmp.string(), describe_errno(errno));
      return false;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fmt::print(stderr, "{}: cannot write '{}': {}\n", kCmd, path.string(), ec.message());
  return !ec;
}

// ---- the summary ----

json::object summary_json(const SweepArgs& a, const Plan& p,
                          const std::vector<sweep::ConfigSummary>& summaries) {
  json::array configs;
  for (const auto& s : summaries) {
    json::object metrics;
    for (const auto& [name, m] : s.metrics) {
      metrics[name] = {{"mean", m.mean ? json::value(*m.mean) : nullptr},
                       {"sd", m.sd ? json::value(*m.sd) : nullptr},
                       {"n", m.n}};
    }
    configs.push_back({{"config", s.config}, {"runs", s.runs}, {"metrics", std::move(metrics)}});
  }
  json::array best;
  for (const auto& b : sweep::best_configurations(summaries)) {
    best.push_back({{"metric", b.metric}, {"config", b.config}, {"mean", b.mean}, {"n", b.n}});
  }
  return {{"backend", to_string(p.kind)},
          {"scenario", a.scenario},
          {"agents", p.agents},
          {"runs", a.runs},
          {"ttft_anomaly_ms", a.anomaly_ms},
          {"records", "runs.jsonl"},
          {"configurations", std::move(configs)},
          {"best", std::move(best)}};
}

// One bar chart per key metric beside summary.md; returns the Markdown that links them.
std::string write_charts(const fs::path& dir, const std::vector<sweep::ConfigSummary>& summaries) {
  std::string links;
  for (const char* name : {"ttft_client_p50_ms", "system_tps", "ttft_anomaly"}) {
    std::vector<workflow::svg::Bar> bars;
    std::string label;
    for (const auto& metric : sweep::kMetrics) {
      if (metric.name == std::string_view(name)) label = metric.label;
    }
    for (const auto& s : summaries) {
      const auto it = s.metrics.find(name);
      if (it == s.metrics.end() || !it->second.mean) continue;
      const double m = *it->second.mean, sd = it->second.sd.value_or(0);
      bars.push_back({s.config, m, m - sd, m + sd, fmt::format("n={}", it->second.n)});
    }
    if (bars.empty()) continue;
    const std::string file = fmt::format("chart-{}.svg", name);
    if (write_file(dir / file, workflow::svg::bar_chart(label, label, "configuration", bars))) {
      links += fmt::format("![{}]({})\n", label, file);
    }
  }
  return links;
}

bool write_summary(const SweepArgs& a, const Plan& p) {
  const fs::path dir(a.out);
  std::vector<std::string> order;
  for (const auto& c : p.grid) order.push_back(c.label);
  const auto summaries = sweep::summarize(read_runs(dir / "runs.jsonl"), order);
  std::string md = sweep::summary_markdown(summaries, a.anomaly_ms);
  md += "\n## Charts (mean, bars ± sd)\n\n" + write_charts(dir, summaries);
  const bool ok =
      write_file(dir / "summary.md", md) &&
      write_file(dir / "sweep.json", json::serialize(summary_json(a, p, summaries)) + "\n");
  if (!a.quiet) {
    for (const auto& b : sweep::best_configurations(summaries)) {
      fmt::print("best {}: {} ({:.4g}, n={})\n", b.metric, b.config, b.mean, b.n);
    }
    fmt::print("summary: {}\n", (dir / "summary.md").string());
  }
  return ok;
}

// ---- the run loop ----

struct Progress {
  int total = 0;
  int done = 0;  // runs measured in this invocation
  double seconds = 0;
};

std::string eta(const Progress& pr) {
  if (pr.done == 0) return "";
  const double left = pr.seconds / pr.done * (pr.total - pr.done);
  return fmt::format(", about {:.1f} s left", left);
}

// Runs every configuration's missing runs; false when a run could not be recorded or the
// sweep was stopped (Ctrl-C); throws std::runtime_error when servers cannot be (re)started.
bool run_grid(const SweepArgs& a, const Plan& p, const std::set<std::pair<std::string, int>>& done,
              Progress& pr) {
  const fs::path records = fs::path(a.out) / "runs.jsonl";
  Stage stage;
  for (std::size_t i = 0; i < p.grid.size(); ++i) {
    const auto& c = p.grid[i];
    std::string setup;
    Reference ref;
    bool prepared = false;
    for (int run = 1; run <= a.runs; ++run) {
      if (done.count({c.label, run}) != 0) continue;
      if (!prepared) {
        setup = prepare_stage(a, p, c, stage);
        if (!setup.empty()) say(a, fmt::format("{}: {}", c.label, setup));
        ref = calibrate(*stage.engine, multi_options(a, p, c), p.agents);
        prepared = true;
      }
      const RunResult r = run_once(a, *stage.engine, multi_options(a, p, c), ref);
      if (StopFlag::raised()) return false;  // a cut-short run is not recorded
      if (!append_line(records, run_record(a, p, c, run, r, setup))) return false;
      setup.clear();
      ++pr.done;
      pr.seconds += r.seconds;
      say(a, fmt::format("[{}/{}] {} run {}/{}: ttft p50 {:.1f} ms, {:.1f} tokens/s, {} errors, "
                         "{} TTFT anomalies{}",
                         i + 1, p.grid.size(), c.label, run, a.runs, r.figures.ttft_p50,
                         r.figures.system_tps, r.figures.errors, r.anomalies, eta(pr)));
    }
  }
  return true;
}

// The runs already recorded, or a message when the folder holds records and --resume was
// not given.
std::string open_records(const SweepArgs& a, const Plan& p,
                         std::set<std::pair<std::string, int>>& done) {
  const fs::path dir(a.out), records = dir / "runs.jsonl";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fmt::format("--out: cannot make '{}': {}", dir.string(), ec.message());
  const bool exists = fs::exists(records) && fs::file_size(records, ec) > 0;
  if (exists && !a.resume) {
    return fmt::format(
        "'{}' holds the records of an earlier sweep: add --resume to run only the "
        "runs it lacks, or choose another --out",
        records.string());
  }
  if (exists) {
    for (const auto& r : read_runs(records)) done.insert({r.config, r.run});
    return {};
  }
  if (!append_line(records, header_record(a, p))) return "cannot write the records";
  return {};
}

int run_sweep_cmd(const SweepArgs& a) {
  Plan p;
  if (auto e = make_plan(a, p); !e.empty()) {
    fmt::print(stderr, "{}: {}\n", kCmd, e);
    return kUsage;
  }
  std::set<std::pair<std::string, int>> done;
  if (auto e = open_records(a, p, done); !e.empty()) {
    fmt::print(stderr, "{}: {}\n", kCmd, e);
    return kUsage;
  }
  Progress pr;
  pr.total = static_cast<int>(p.grid.size()) * a.runs - static_cast<int>(done.size());
  say(a, fmt::format("sweep: {} configurations x {} runs, scenario {} ({} agent{}), {}{}; "
                     "records in {}",
                     p.grid.size(), a.runs, a.scenario, p.agents, p.agents == 1 ? "" : "s",
                     to_string(p.kind),
                     done.empty() ? "" : fmt::format(", {} runs already recorded", done.size()),
                     (fs::path(a.out) / "runs.jsonl").string()));
  for (const auto& [name, where] : p.placements) say(a, fmt::format("  {}: {}", name, where));
  bool complete = false;
  {
    const StopFlag stop_flag({SIGINT, SIGTERM});
    try {
      complete = run_grid(a, p, done, pr);
    } catch (const std::runtime_error& e) {
      fmt::print(stderr, "{}: {}\n", kCmd, e.what());
      write_summary(a, p);
      return kFailed;
    }
  }
  if (StopFlag::raised()) say(a, "interrupted: the summary covers the runs recorded so far");
  const bool written = write_summary(a, p);
  if (StopFlag::raised()) return kInterrupted;
  return complete && written ? kOk : kFailed;
}

}  // namespace

std::function<int()> add_sweep(CLI::App& app) {
  auto a = std::make_shared<SweepArgs>();
  auto* cmd = app.add_subcommand(
      "sweep",
      "Run a grid of request and server settings, each configuration --runs times, and write "
      "one record per run and a summary per configuration (docs/sweep.md).\n\n"
      "Examples:\n"
      "  chimeraforge sweep --endpoint http://127.0.0.1:11434 --backend ollama --model m \\\n"
      "      --grid num_gpu=60,80,120 --grid num_ctx=256,512,1024 --runs 3 --out out/sweep\n"
      "  chimeraforge sweep --backend openai --model tiny.gguf --grid num_ctx=256,512 \\\n"
      "      --grid temperature=0.6,0.8 --runs 2     # starts and restarts llama-servers\n"
      "  chimeraforge sweep --backend llama --model tiny.gguf --grid num_ctx=256,512  # reloads"
      "\n\nWithout --endpoint: $OLLAMA_HOST (ollama), or $OPENAI_BASE_URL (openai, when --model "
      "is not a GGUF file to start llama-servers with). " +
          connection_env_help());
  add_connection_flags(cmd, a->connection);
  cmd->add_option("--endpoint", a->endpoints, "Endpoint URL; repeat it for a pool of several");
  cmd->add_option("--backend,-b", a->backend, "ollama, openai or llama (in-process)")
      ->check(CLI::IsMember({"ollama", "openai", "llama"}))
      ->capture_default_str();
  cmd->add_option("--model,-m", a->model,
                  "Ollama: the model's name. llama: the GGUF file. openai without --endpoint: "
                  "the GGUF file of the llama-servers the sweep starts");
  cmd->add_option("--grid", a->grid,
                  "An axis: NAME=V1,V2,... (an option of `generate`, e.g. num_ctx=256,512); "
                  "repeat it for more axes");
  cmd->add_option("--set", a->set, "A setting for every configuration: NAME=VALUE (repeatable)");
  cmd->add_option("--runs", a->runs, "Runs of each configuration")->capture_default_str();
  cmd->add_option("--scenario", a->scenario,
                  "single (one agent), multi (--agents at once) or workflow (the agent workflow "
                  "per agent)")
      ->capture_default_str();
  cmd->add_option("--agents,-n", a->agents, "Agents at once (default: 1; multi: 2)");
  cmd->add_option("--requests-per-agent,-k", a->requests_per_agent,
                  "Calls each agent makes per run")
      ->capture_default_str();
  cmd->add_option("--max-tokens", a->max_tokens,
                  "num_predict of each call (unless the grid sets it)")
      ->capture_default_str();
  cmd->add_option("--prompt", a->prompt, "The user message of each call")->capture_default_str();
  cmd->add_option("--executor,-e", a->executor, "single, shared, per-core or thread-per-agent")
      ->capture_default_str();
  cmd->add_option("--data", a->data, "Workflow scenario: the data folder")->capture_default_str();
  cmd->add_option("--servers", a->servers, "llama-servers started per configuration (openai)")
      ->capture_default_str();
  cmd->add_option("--parallel", a->parallel,
                  "Slots per started llama-server, or sequences in-process (0: the agents)")
      ->capture_default_str();
  cmd->add_option("--anomaly-ms", a->anomaly_ms,
                  "A run whose request waited longer than this for its first token is a TTFT "
                  "anomaly (the study's contention signal)")
      ->capture_default_str();
  cmd->add_option("--out,-o", a->out, "Folder of runs.jsonl, summary.md, sweep.json and charts")
      ->capture_default_str();
  cmd->add_flag("--resume", a->resume, "Run only the runs that --out's records lack");
  cmd->add_flag("--quiet,-q", a->quiet, "No progress on stderr");
  cmd->add_option("server-args", a->server_args, "Flags for the started llama-servers, after `--`");
  return [a]() {
    // No --endpoint: the environment's, as generate, run and multi read it; an openai sweep
    // given a GGUF file starts its own llama-servers instead.
    if (a->endpoints.empty()) {
      const auto kind = parse_backend_kind(a->backend);
      std::error_code ec;
      const bool model_file = fs::is_regular_file(a->model, ec);
      if (kind == BackendKind::ollama || (kind == BackendKind::openai && !model_file)) {
        if (auto url = endpoint_from_environment(a->backend); !url.empty()) {
          a->endpoints.push_back(std::move(url));
        }
      }
    }
    return run_sweep_cmd(*a);
  };
}

}  // namespace chimera::cli

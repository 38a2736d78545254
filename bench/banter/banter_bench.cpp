// Live banter: a scene of 4 characters, 50 lines, on the tiny model in-process and through two
// llama-servers, with and without warm-up, sessions and background catch-up; on request
// (--configs) also one llama-server with its defaults or `--cache-ram 0`, and one character alone
// (in-process and on a llama-server), the layouts compared on a GPU (bench/gpu/run.sh).
//
// Per configuration and run: per-line time to first token (`ttft_line`, from the moment the line
// is asked for, and METRICS.md's `ttft_client`) p50/p99, the budget's hit rate, and the prompt
// tokens per line served from cache and prefilled. Configurations alternate within each run on
// the same machine (A B C ... A B C ...). Writes JSON lines (--out) and a Markdown table (--md).
#include "gpu_flags.hpp"
#include "provenance.hpp"

#include <chimera/backends/server_process.hpp>
#include <chimera/banter/scene.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/model/synthetic_model.hpp>

#include <CLI/CLI.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <thread>

namespace {

using namespace chimera;
using namespace chimera::banter;

// Mean and sample sd over runs (metrics::mean_sd), 0 where there are too few runs for one.
struct Stats {
  double mean = 0, sd = 0;
};
Stats stats(const std::vector<double>& v) {
  const auto m = chimera::metrics::mean_sd(v);
  return {m.mean.value_or(0), m.sd.value_or(0)};
}

using chimera::bench::cpu_model;

double ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

// A set of llama-servers that configurations share: `count` servers of `slots` slots each.
struct ServerSetSpec {
  std::string key;
  int count = 1;
  int slots = 1;
  std::vector<std::string> flags;  // besides -m, -c, -np, -ngl, -t
};

const std::vector<ServerSetSpec>& server_set_specs() {
  static const std::vector<ServerSetSpec> kSpecs = {
      {"two", 2, 2, {"--no-warmup", "--cache-ram", "0"}},
      {"one", 1, 4, {}},
      {"one-cache-ram-0", 1, 4, {"--cache-ram", "0"}},
      {"alone", 1, 1, {}},
  };
  return kSpecs;
}

struct Config {
  std::string key;      // what --configs names
  std::string name;     // what the records and the table say
  std::string servers;  // a ServerSetSpec key; empty: in-process
  int characters = 4;
  bool warm_up = true;
  bool sessions = true;
  bool catch_up = true;
};

const std::vector<Config>& all_configs() {
  static const std::vector<Config> kConfigs = {
      {"inproc", "in-process: sessions, warm-up, catch-up", "", 4, true, true, true},
      {"inproc-no-catch-up", "in-process: sessions, warm-up, no catch-up", "", 4, true, true,
       false},
      {"inproc-no-warm-up", "in-process: sessions, no warm-up", "", 4, false, true, true},
      {"inproc-no-sessions", "in-process: no sessions", "", 4, false, false, false},
      {"two-servers", "2 llama-servers: sessions, warm-up, catch-up", "two", 4, true, true, true},
      {"two-servers-no-warm-up", "2 llama-servers: sessions, no warm-up", "two", 4, false, true,
       true},
      {"two-servers-no-sessions", "2 llama-servers: no sessions", "two", 4, false, false, false},
      {"one-server", "1 llama-server -np 4, defaults: sessions, warm-up, catch-up", "one", 4, true,
       true, true},
      {"one-server-cache-ram-0", "1 llama-server -np 4, --cache-ram 0: sessions, warm-up, catch-up",
       "one-cache-ram-0", 4, true, true, true},
      {"alone-inproc", "1 character alone, in-process: sessions, warm-up, catch-up", "", 1, true,
       true, true},
      {"alone-server", "1 character alone, llama-server defaults: sessions, warm-up, catch-up",
       "alone", 1, true, true, true},
  };
  return kConfigs;
}

const std::vector<std::string> kDefaultConfigs = {
    "inproc",      "inproc-no-catch-up",     "inproc-no-warm-up",      "inproc-no-sessions",
    "two-servers", "two-servers-no-warm-up", "two-servers-no-sessions"};

// A started ServerSetSpec and the pool that routes to it.
struct ServerSet {
  std::vector<std::unique_ptr<ServerProcess>> processes;
  pool::PoolConfig pool;
};

struct ServerParams {
  std::string model;
  int num_ctx = 512;
  int threads = 1;
  int gpu_layers = 0;
};

// Starts every server of the sets the chosen configurations use, all at once, and waits until
// each answers. Returns false, having printed why, when one does not start.
bool start_server_sets(const std::vector<Config>& configs, const ServerParams& p,
                       std::map<std::string, ServerSet>& sets) {
  for (const auto& spec : server_set_specs()) {
    const bool used = std::any_of(configs.begin(), configs.end(),
                                  [&](const Config& c) { return c.servers == spec.key; });
    if (!used) continue;
    ServerSet& set = sets[spec.key];
    set.pool.name = "servers-" + spec.key;
    set.pool.routing = pool::Routing::session_affinity;
    set.pool.health_interval_ms = 0;
    for (int i = 0; i < spec.count; ++i) {
      ServerOptions o;
      o.model = p.model;
      o.parallel = spec.slots;
      o.ctx = spec.slots * p.num_ctx;
      o.threads = p.threads;
      o.gpu_layers = p.gpu_layers;
      o.extra = spec.flags;
      o.wait_until_ready = false;
      o.ready_timeout_ms = 300'000;  // a 3B f16 model from a cold page cache
      set.processes.push_back(std::make_unique<ServerProcess>(o));
    }
  }
  for (auto& [key, set] : sets) {
    const int slots = std::find_if(server_set_specs().begin(), server_set_specs().end(),
                                   [&](const ServerSetSpec& s) { return s.key == key; })
                          ->slots;
    for (auto& s : set.processes) {
      while (!s->poll_ready()) std::this_thread::sleep_for(std::chrono::milliseconds(25));
      if (!s->ok()) {
        fmt::print(stderr, "{}\n", s->error());
        return false;
      }
      pool::PoolEndpoint e;
      e.config.url = s->url();
      e.config.kind = BackendKind::openai;
      e.max_concurrency = slots;
      set.pool.endpoints.push_back(e);
    }
  }
  return true;
}

// "2 x llama-server -np 2 -c 1024 --no-warmup --cache-ram 0 -t 1 -ngl 0; ..." for provenance.
std::string describe_server_sets(const std::map<std::string, ServerSet>& sets,
                                 const ServerParams& p) {
  std::string out;
  for (const auto& spec : server_set_specs()) {
    if (!sets.contains(spec.key)) continue;
    if (!out.empty()) out += "; ";
    out += fmt::format("{}: {} x {} -np {} -c {}{}{} -t {} -ngl {}", spec.key, spec.count,
                       CHIMERA_LLAMA_SERVER, spec.slots, spec.slots * p.num_ctx,
                       spec.flags.empty() ? "" : " ", fmt::join(spec.flags, " "), p.threads,
                       p.gpu_layers);
  }
  return out;
}

// What one run of one configuration measured.
struct RunResult {
  std::vector<double> ttft_line, ttft_client, cached, prefilled;
  int lines = 0, held = 0, judged = 0, failed = 0;
  double warm_ms = 0;
  double p(const std::vector<double>& v, double q) const { return metrics::percentile(v, q); }
  double mean(const std::vector<double>& v) const { return stats(v).mean; }
  double hit_rate() const { return judged ? static_cast<double>(held) / judged : 0.0; }
};

SceneConfig make_scene(const std::string& model, int characters, int lines, int num_ctx,
                       int num_predict, int64_t budget_ms) {
  SceneConfig c;
  c.title = "Last orders at the Drowned Lantern";
  c.setting =
      "A harbour tavern at closing time. Rain on the windows, a storm coming in, one lamp left "
      "burning. The regulars argue about whether to stay the night.";
  c.turns = TurnPolicy::round_robin;
  c.budget_ms = budget_ms;
  c.lines = lines;
  c.opening = "The bell over the bar rings for last orders. Nobody moves.";
  const char* names[] = {"Mira", "Tor", "Sable", "Old Wick"};
  const char* personas[] = {
      "The tavern keeper. Tired, kind, and sharp with anyone who outstays their welcome. She has "
      "run the Drowned Lantern for twenty years and knows every secret in the harbour.",
      "A fisherman who lost his boat last winter and tells everyone about it. Loud, warm, "
      "stubborn, owes Mira three weeks of drinks and swears he will pay after the storm.",
      "A travelling card player with a secret; polite, watchful, never answers a question "
      "straight. Arrived a week ago on the mail coach and has been winning ever since.",
      "The oldest man in the harbour. Claims to have seen the sea serpent twice, remembers the "
      "great flood, and has an opinion about everything, especially the weather."};
  const char* styles[] = {"Short sentences. Dry humour. Calls everyone 'love'.",
                          "Rambling, nautical words, sighs a lot.",
                          "Smooth and precise. Answers questions with questions.",
                          "Slow, proverbs, drifts into stories."};
  for (int i = 0; i < characters; ++i) {
    CharacterConfig ch;
    ch.name = names[i];
    ch.persona = personas[i];
    ch.style = styles[i];
    ch.placement.model = model;
    ch.options.num_ctx = num_ctx;
    ch.options.num_predict = num_predict;
    ch.options.temperature = 0.8;
    ch.options.top_p = 0.9;
    ch.options.seed = 100 + i;
    c.characters.push_back(ch);
  }
  return c;
}

RunResult run_scene(SceneConfig scene, const SceneOptions& so, int lines, int64_t gap_ms) {
  RunResult r;
  Scene s(std::move(scene), so);
  if (s.config().warm_up && s.config().sessions) {
    const auto w = s.warm_up();
    r.warm_ms = ms(w.wall_ns);
    for (const auto& e : w.entries) {
      if (!e.error.empty()) fmt::print(stderr, "warm-up of {} failed: {}\n", e.who, e.error);
    }
  }
  for (int i = 0; i < lines; ++i) {
    const LineRecord rec = s.line();
    ++r.lines;
    if (!rec.ok()) {
      ++r.failed;
      fmt::print(stderr, "line {} failed: {}\n", i, rec.completion.error.message);
    }
    if (rec.budget_held) {
      ++r.judged;
      if (*rec.budget_held) ++r.held;
    }
    const Figures& f = rec.completion.figures;
    if (rec.ttft_line_ns) r.ttft_line.push_back(ms(*rec.ttft_line_ns));
    if (f.ttft_client_ns) r.ttft_client.push_back(ms(*f.ttft_client_ns));
    if (f.tokens_in) {
      const double cached = static_cast<double>(f.prompt_tokens_cached.value_or(0));
      r.cached.push_back(cached);
      r.prefilled.push_back(static_cast<double>(*f.tokens_in) - cached);
    }
    if (gap_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
  }
  return r;
}

// The configurations --configs names, in their order of the table; an unknown name is a usage
// error that lists the known ones.
bool choose_configs(const std::vector<std::string>& keys, bool no_servers,
                    std::vector<Config>& chosen) {
  for (const auto& c : all_configs()) {
    if (std::find(keys.begin(), keys.end(), c.key) == keys.end()) continue;
    if (no_servers && !c.servers.empty()) continue;
    chosen.push_back(c);
  }
  for (const auto& k : keys) {
    const bool known = std::any_of(all_configs().begin(), all_configs().end(),
                                   [&](const Config& c) { return c.key == k; });
    if (!known) {
      std::vector<std::string> names;
      for (const auto& c : all_configs()) names.push_back(c.key);
      fmt::print(stderr, "--configs: unknown configuration '{}'; known: {}\n", k,
                 fmt::join(names, ", "));
      return false;
    }
  }
  return true;
}

// Mean ± sd over runs of each figure of one configuration, for the table and the record.
struct Summary {
  std::vector<double> p50, p99, c50, c99, hit, cached, prefilled;
  int failed = 0;
  explicit Summary(const std::vector<RunResult>& runs) {
    for (const auto& r : runs) {
      p50.push_back(r.p(r.ttft_line, 50));
      p99.push_back(r.p(r.ttft_line, 99));
      c50.push_back(r.p(r.ttft_client, 50));
      c99.push_back(r.p(r.ttft_client, 99));
      hit.push_back(100 * r.hit_rate());
      cached.push_back(r.mean(r.cached));
      prefilled.push_back(r.mean(r.prefilled));
      failed += r.failed;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Live banter: 4 characters, 50 lines; TTFT per line, budget hit rate, cached "
      "prompt tokens; in-process and via llama-servers."};
  int runs = 3;
  int lines = 50;
  int threads = 1;
  int num_ctx = 512;
  int num_predict = 48;
  int64_t budget_ms = 200;
  int64_t gap_ms = 0;
  chimera::bench::GpuFlags gpu;
  std::string model;
  std::string out_path = "bench/results/banter.jsonl";
  std::string md_path = "bench/results/banter.md";
  std::vector<std::string> config_keys = kDefaultConfigs;
  bool no_servers = false;
  app.add_option("--runs", runs, "Runs of every configuration")->capture_default_str();
  app.add_option("--lines", lines, "Lines per scene")->capture_default_str();
  app.add_option("--threads", threads, "Decode threads (in-process, and -t of each llama-server)")
      ->capture_default_str();
  app.add_option("--num-ctx", num_ctx, "Each character's context")->capture_default_str();
  app.add_option("--num-predict", num_predict, "Longest line, tokens")->capture_default_str();
  app.add_option("--budget-ms", budget_ms, "Budget to a line's first token")->capture_default_str();
  app.add_option("--gap-ms", gap_ms, "Pause between lines (speech time); 0: back to back")
      ->capture_default_str();
  app.add_option("--model", model, "GGUF file (default: the tiny synthetic model)");
  gpu.add_to(app,
             "Layers on the GPU, in-process and on each llama-server (-ngl); needs a CUDA build");
  app.add_option("--configs", config_keys,
                 "Configurations, comma-separated, from: inproc, inproc-no-catch-up, "
                 "inproc-no-warm-up, inproc-no-sessions, two-servers, two-servers-no-warm-up, "
                 "two-servers-no-sessions, one-server (defaults), one-server-cache-ram-0, "
                 "alone-inproc, alone-server (default: the inproc and two-servers ones)")
      ->delimiter(',');
  app.add_flag("--no-servers", no_servers, "Only the in-process configurations");
  app.add_option("--out", out_path, "Results file (JSON lines, appended)")->capture_default_str();
  app.add_option("--md", md_path, "Markdown table (replaced)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<Config> configs;
  if (!choose_configs(config_keys, no_servers, configs)) return 2;
  const bool flash = gpu.flash();
  const int gpu_layers = gpu.layers;
  if (model.empty()) {
    bool created = false;
    std::string error;
    model = model::cached_tiny_model(created, error).string();
    if (model.empty()) {
      fmt::print(stderr, "{}\n", error);
      return 1;
    }
  }
  chimera::bench::Provenance provenance(argc, argv);
  provenance.set_model(model);
  const std::string cmdline = chimera::bench::command_line(argc, argv);
  std::error_code ec;
  const auto model_bytes = std::filesystem::file_size(model, ec);

  const ServerParams sp{model, num_ctx, threads, gpu_layers};
  std::map<std::string, ServerSet> server_sets;
  if (!start_server_sets(configs, sp, server_sets)) return 1;
  if (!server_sets.empty()) provenance.set_server(describe_server_sets(server_sets, sp));

  std::map<std::string, std::vector<RunResult>> results;
  for (int run = 0; run < runs; ++run) {
    for (const auto& cfg : configs) {
      SceneConfig sc = make_scene(model, cfg.characters, lines, num_ctx, num_predict, budget_ms);
      sc.warm_up = cfg.warm_up;
      sc.sessions = cfg.sessions;
      sc.catch_up = cfg.catch_up;
      SceneOptions so;
      so.threads = threads;
      so.gpu_layers = gpu_layers;
      so.flash_attention = flash;
      if (!cfg.servers.empty()) {
        const pool::PoolConfig& pc = server_sets.at(cfg.servers).pool;
        sc.pools = {pc};
        for (auto& ch : sc.characters) ch.placement = {"", pc.name};
      }
      const RunResult r = run_scene(std::move(sc), so, lines, gap_ms);
      fmt::print(
          "run {} {:<46} ttft_line p50 {:6.1f} p99 {:6.1f} ms  hit {:5.1f}%  cached {:5.0f}  "
          "prefilled {:5.0f}{}\n",
          run + 1, cfg.name, r.p(r.ttft_line, 50), r.p(r.ttft_line, 99), 100 * r.hit_rate(),
          r.mean(r.cached), r.mean(r.prefilled),
          r.failed ? fmt::format("  {} failed", r.failed) : "");
      results[cfg.name].push_back(r);
    }
  }

  std::filesystem::create_directories(std::filesystem::path(out_path).parent_path(), ec);
  std::ofstream out(out_path, std::ios::app);
  std::string md;
  md += fmt::format(
      "| configuration | ttft_line p50 ms | ttft_line p99 ms | ttft_client p50 ms | "
      "ttft_client p99 ms | budget hit rate ({} ms) | cached prompt tokens / line | prefilled "
      "tokens / line |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
      budget_ms);
  for (const auto& cfg : configs) {
    auto it = results.find(cfg.name);
    if (it == results.end()) continue;
    const Summary sum(it->second);
    auto f = [](const std::vector<double>& v, int prec) {
      const Stats st = stats(v);
      return fmt::format("{:.{}f} ± {:.{}f}", st.mean, prec, st.sd, prec);
    };
    md += fmt::format("| {} | {} | {} | {} | {} | {}% | {} | {} |\n", cfg.name, f(sum.p50, 1),
                      f(sum.p99, 1), f(sum.c50, 1), f(sum.c99, 1), f(sum.hit, 1), f(sum.cached, 0),
                      f(sum.prefilled, 0));
    boost::json::object o;
    o["bench"] = "banter";
    o["configuration"] = cfg.name;
    o["config_key"] = cfg.key;
    o["runs"] = it->second.size();
    o["lines"] = lines;
    o["characters"] = cfg.characters;
    o["num_ctx"] = num_ctx;
    o["num_predict"] = num_predict;
    o["budget_ms"] = budget_ms;
    o["gap_ms"] = gap_ms;
    o["threads"] = threads;
    o["gpu_layers"] = gpu_layers;
    o["flash_attention_inproc"] = flash;
    o["ttft_line_p50_ms"] = stats(sum.p50).mean;
    o["ttft_line_p50_sd"] = stats(sum.p50).sd;
    o["ttft_line_p99_ms"] = stats(sum.p99).mean;
    o["ttft_line_p99_sd"] = stats(sum.p99).sd;
    o["ttft_client_p50_ms"] = stats(sum.c50).mean;
    o["ttft_client_p50_sd"] = stats(sum.c50).sd;
    o["ttft_client_p99_ms"] = stats(sum.c99).mean;
    o["ttft_client_p99_sd"] = stats(sum.c99).sd;
    o["budget_hit_rate_pct"] = stats(sum.hit).mean;
    o["budget_hit_rate_sd"] = stats(sum.hit).sd;
    o["prompt_tokens_cached_per_line"] = stats(sum.cached).mean;
    o["prompt_tokens_cached_sd"] = stats(sum.cached).sd;
    o["prompt_tokens_prefilled_per_line"] = stats(sum.prefilled).mean;
    o["prompt_tokens_prefilled_sd"] = stats(sum.prefilled).sd;
    o["failed_lines"] = sum.failed;
    o["source"] = "measured; percentiles per run, then mean ± sample sd over runs";
    o["provenance"] = provenance.stamp();
    out << boost::json::serialize(o) << "\n";
  }
  md += fmt::format(
      "\n{} runs of {} lines each (4 characters unless the configuration says 1, round-robin, "
      "num_ctx {}, num_predict {}, {} decode thread(s), {} GPU layers, gap {} ms); percentiles "
      "per run, mean ± sd over runs. Model {} ({:.1f} MB). CPU: {} ({} cores). Commit {}{}. "
      "Command: `{}`\n",
      runs, lines, num_ctx, num_predict, threads, gpu_layers, gap_ms,
      std::filesystem::path(model).filename().string(), static_cast<double>(model_bytes) / 1e6,
      cpu_model(), std::thread::hardware_concurrency(), provenance.commit(),
      provenance.dirty() ? " (dirty tree)" : "", cmdline);
  std::ofstream(md_path) << md;
  fmt::print("\n{}\nresults appended to {}; table written to {}\n", md, out_path, md_path);
  return 0;
}

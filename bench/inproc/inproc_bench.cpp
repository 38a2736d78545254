// In-process llama.cpp vs llama-server over HTTP, same model, same prompts, on this machine.
//
//   1. one agent: ttft_client and decode_tps_client, ratio llama-server / in-process;
//   2. aggregate tokens/s (system_tps) at N concurrent agents, in-process with N sequences vs
//      llama-server with -np N;
//   3. a session's turn-2 TTFT with a ~300-token persona already cached vs a cold request;
//   4. (`--parts idle`, not run by default) one agent's TTFT when each request comes after a
//      pause (`--idle-gaps`), as a game's banter comes: the time a program's sleeping threads
//      take to wake is in it.
//
// Programs alternate (A B A B ...) on the same machine, `--runs` times each; every stored figure
// names its source. Prints a table and appends JSON lines to --out. `--parts` picks the parts;
// `--gpu-layers` puts the model on a GPU (a CUDA build) for both programs.
#include "gpu_flags.hpp"
#include "provenance.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/backends/server_process.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/model/synthetic_model.hpp>

#include <CLI/CLI.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <future>
#include <numeric>
#include <optional>
#include <sstream>
#include <thread>

namespace {

using namespace chimera;

// Mean and sample sd over runs (metrics::mean_sd), 0 where there are too few runs for one.
struct Stats {
  double mean = 0, sd = 0;
};
Stats stats(const std::vector<double>& v) {
  const auto m = chimera::metrics::mean_sd(v);
  return {m.mean.value_or(0), m.sd.value_or(0)};
}
double median(std::vector<double> v) {
  return metrics::percentile(std::move(v), 50);
}

using chimera::bench::cpu_model;

const char* kLines[] = {
    "The innkeeper wipes the counter and says",
    "A stranger walks in from the rain, and the bard",
    "The blacksmith looks up from the anvil:",
    "Guards! The thief ran towards the docks, and",
};

Request line(int i, int tokens, int64_t seed) {
  Request r;
  r.kind = RequestKind::completion;
  r.prompt = kLines[i % 4];
  r.options.num_predict = tokens;
  r.options.temperature = 0.8;
  r.options.seed = seed;
  return r;
}

// Runs `n` requests at once; returns their completions and the wall time from the first
// t_send to the last token (for system_tps).
std::vector<Completion> burst(Backend& b, int n, int tokens, int64_t seed, double& wall_s) {
  std::vector<std::promise<Completion>> done(static_cast<std::size_t>(n));
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (int i = 0; i < n; ++i) {
    handles.push_back(b.start(line(i, tokens, seed + i), {}, [&done, i](Completion c) {
      done[static_cast<std::size_t>(i)].set_value(std::move(c));
    }));
  }
  std::vector<Completion> out;
  for (auto& d : done) out.push_back(d.get_future().get());
  int64_t first = INT64_MAX, last = 0;
  for (const auto& c : out) {
    first = std::min(first, c.figures.t_send_ns);
    last = std::max(last, c.figures.t_last_token_ns.value_or(0));
  }
  wall_s = static_cast<double>(last - first) / 1e9;
  return out;
}

// The two programs compared: the in-process engine with `parallel` sequences, and llama-server
// with `-np parallel`, on the same model file and threads. Empty when the server did not start.
struct Contestants {
  std::unique_ptr<Backend> inproc;
  std::unique_ptr<ServerProcess> server;
  std::unique_ptr<Backend> http;
};
// Where both programs run: CPU threads, and layers on a GPU (in-process flash attention too).
struct Placement {
  int threads = 1;
  int gpu_layers = 0;
  bool flash_attention = false;
};
std::optional<Contestants> contestants(const std::string& model, int parallel, int ctx_per_seq,
                                       const Placement& where, Runtime& rt) {
  Contestants c;
  EndpointConfig ic;
  ic.kind = BackendKind::llama;
  ic.url = model;
  ic.llama.parallel = parallel;
  ic.llama.ctx_per_seq = ctx_per_seq;
  ic.llama.threads = where.threads;
  ic.llama.gpu_layers = where.gpu_layers;
  ic.llama.flash_attention = where.flash_attention;
  c.inproc = make_backend(ic, rt);
  c.server = std::make_unique<ServerProcess>(ServerOptions{.model = model,
                                                           .parallel = parallel,
                                                           .ctx = ctx_per_seq * parallel,
                                                           .threads = where.threads,
                                                           .gpu_layers = where.gpu_layers,
                                                           .extra = {"--cache-ram", "0"},
                                                           .ready_timeout_ms = 300'000});
  if (!c.server->ok()) {
    fmt::print(stderr, "{}\n", c.server->error());
    return std::nullopt;
  }
  EndpointConfig hc;
  hc.url = c.server->url();
  c.http = make_backend(hc, rt);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "In-process llama.cpp vs llama-server: TTFT, decode rate, aggregate tokens/s, "
      "session reuse. Writes JSON lines to --out."};
  std::string model;
  int runs = 5;
  int tokens = 64;
  int requests = 10;
  std::vector<int> agents = {1, 2, 4, 8, 16, 32};
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  chimera::bench::GpuFlags gpu;
  std::vector<std::string> parts = {"single", "aggregate", "session"};
  std::vector<int> idle_gaps = {0, 20, 100, 300};
  std::string out_path = "bench/results/inproc.jsonl";
  app.add_option("--model", model, "GGUF model (default: the tiny synthetic model)");
  app.add_option("--runs", runs, "Runs of each program per comparison")->capture_default_str();
  app.add_option("--tokens", tokens, "Tokens per request")->capture_default_str();
  app.add_option("--requests", requests, "Sequential requests per single-agent run")
      ->capture_default_str();
  app.add_option("--agents", agents, "Concurrency levels")->delimiter(',');
  app.add_option("--threads", threads, "CPU threads for both programs")->capture_default_str();
  gpu.add_to(app, "Layers on the GPU for both programs (-ngl); needs a CUDA build");
  app.add_option("--parts", parts,
                 "Parts to run: single, aggregate, session (the default), idle (one agent's "
                 "first token after pauses of --idle-gaps)")
      ->delimiter(',')
      ->check(CLI::IsMember({"single", "aggregate", "session", "idle"}));
  app.add_option("--idle-gaps", idle_gaps, "--parts idle: pauses before each request, ms")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0, 60'000));
  app.add_option("--out", out_path, "Results file (JSON lines, appended)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

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
  provenance.set_server(
      fmt::format("llama-server {} (same build and model, --cache-ram 0)", CHIMERA_LLAMA_SERVER));
  std::filesystem::create_directories(std::filesystem::path(out_path).parent_path());
  std::ofstream out(out_path, std::ios::app);
  // Each record: the figures (fields given as JSON text), then where and how they were made.
  auto record = [&](const std::string& fields) {
    boost::json::object o = boost::json::parse("{" + fields + "}").as_object();
    o["provenance"] = provenance.stamp();
    out << boost::json::serialize(o) << "\n" << std::flush;
  };
  Runtime rt(1);
  const Placement where{threads, gpu.layers, gpu.flash()};
  auto wanted = [&parts](const char* part) {
    return std::find(parts.begin(), parts.end(), part) != parts.end();
  };

  fmt::print("model {}\nCPU {} ({} threads used), {} runs each, {} tokens per request\n\n", model,
             cpu_model(), threads, runs, tokens);

  // 1. One agent.
  if (wanted("single")) {
    std::vector<double> ttft_ratio, tps_ratio, ttft_in, ttft_http, tps_in, tps_http;
    auto pair = contestants(model, 1, 1024, where, rt);
    if (!pair) return 1;
    Backend& inproc = *pair->inproc;
    Backend& http = *pair->http;
    auto run = [&](Backend& b, std::vector<double>& ttft, std::vector<double>& tps, int r) {
      std::vector<double> t, d;
      for (int i = 0; i < requests; ++i) {
        Request req = line(i, tokens, 1000 * r + i);
        req.kind = RequestKind::chat;
        req.messages = {{"user", req.prompt, {}, {}, {}}};
        const Completion c = b.generate(req);
        if (!c.ok()) throw std::runtime_error(c.error.message);
        t.push_back(static_cast<double>(*c.figures.ttft_client_ns) / 1e6);
        if (c.figures.decode_tps_client) d.push_back(*c.figures.decode_tps_client);
      }
      ttft.push_back(median(t));
      tps.push_back(median(d));
    };
    {
      std::vector<double> t, d;  // warm-up, not recorded
      run(inproc, t, d, 99);
      run(http, t, d, 99);
    }
    for (int r = 0; r < runs; ++r) {
      run(inproc, ttft_in, tps_in, r);
      run(http, ttft_http, tps_http, r);
      ttft_ratio.push_back(ttft_http.back() / ttft_in.back());
      tps_ratio.push_back(tps_in.back() / tps_http.back());
    }
    const auto a = stats(ttft_in), b = stats(ttft_http), ra = stats(ttft_ratio);
    const auto c = stats(tps_in), d = stats(tps_http), rb = stats(tps_ratio);
    fmt::print("one agent, chat, {} requests per run (median per run; mean ± sd over runs)\n",
               requests);
    fmt::print(
        "  ttft_client        in-process {:7.2f} ± {:5.2f} ms   llama-server {:7.2f} ± "
        "{:5.2f} ms   llama-server/in-process {:.2f} ± {:.2f}\n",
        a.mean, a.sd, b.mean, b.sd, ra.mean, ra.sd);
    fmt::print(
        "  decode_tps_client  in-process {:7.1f} ± {:5.1f} /s   llama-server {:7.1f} ± "
        "{:5.1f} /s   in-process/llama-server {:.2f} ± {:.2f}\n\n",
        c.mean, c.sd, d.mean, d.sd, rb.mean, rb.sd);
    record(fmt::format(
        R"j("bench":"single_agent","ttft_client_ms_inproc":{:.3f},"ttft_client_ms_inproc_sd":{:.3f},"ttft_client_ms_llama_server":{:.3f},"ttft_client_ms_llama_server_sd":{:.3f},"ttft_ratio_server_over_inproc":{:.3f},"ttft_ratio_sd":{:.3f},"decode_tps_client_inproc":{:.1f},"decode_tps_client_inproc_sd":{:.1f},"decode_tps_client_llama_server":{:.1f},"decode_tps_client_llama_server_sd":{:.1f},"tps_ratio_inproc_over_server":{:.3f},"tps_ratio_sd":{:.3f},"runs":{},"requests_per_run":{},"source":"measured: median per run, then mean and sample sd over runs; ratios per run")j",
        a.mean, a.sd, b.mean, b.sd, ra.mean, ra.sd, c.mean, c.sd, d.mean, d.sd, rb.mean, rb.sd,
        runs, requests));
  }

  // 2. Aggregate tokens/s at N agents.
  if (wanted("aggregate")) {
    fmt::print(
        "aggregate tokens/s (system_tps = tokens delivered / wall from first t_send to last "
        "token)\n  {:>6} {:>22} {:>22} {:>10} {:>14}\n",
        "agents", "in-process", "llama-server -np N", "ratio", "vs 1 agent");
  }
  double base_inproc = 0;
  for (int n : wanted("aggregate") ? agents : std::vector<int>{}) {
    auto pair = contestants(model, n, 512, where, rt);
    if (!pair) return 1;
    Backend& inproc = *pair->inproc;
    Backend& http = *pair->http;
    std::vector<double> a, b, ratio;
    // ttft_client p50 and p99 of each run's requests, per program.
    std::vector<double> a50, a99, b50, b99;
    {
      double wall = 0;  // warm-up: first decodes allocate buffers and fault in the model
      burst(inproc, n, 8, 1, wall);
      burst(http, n, 8, 1, wall);
    }
    for (int r = 0; r < runs; ++r) {
      for (int which = 0; which < 2; ++which) {
        double wall = 0;
        auto cs = burst(which == 0 ? inproc : http, n, tokens, 7000 + r, wall);
        int64_t total = 0;
        std::vector<double> ttft;
        for (const auto& c : cs) {
          if (!c.ok()) throw std::runtime_error(c.error.message);
          total += c.figures.tokens_out.value_or(0);
          if (c.figures.ttft_client_ns)
            ttft.push_back(static_cast<double>(*c.figures.ttft_client_ns) / 1e6);
        }
        (which == 0 ? a : b).push_back(static_cast<double>(total) / wall);
        (which == 0 ? a50 : b50).push_back(metrics::percentile(ttft, 50));
        (which == 0 ? a99 : b99).push_back(metrics::percentile(ttft, 99));
      }
      ratio.push_back(a.back() / b.back());
    }
    const auto sa = stats(a), sb = stats(b), sr = stats(ratio);
    if (n == agents.front()) base_inproc = sa.mean;
    fmt::print("  {:>6} {:>12.0f} ± {:<7.0f} {:>12.0f} ± {:<7.0f} {:>5.2f} ± {:<4.2f} {:>8.2f}x\n",
               n, sa.mean, sa.sd, sb.mean, sb.sd, sr.mean, sr.sd, sa.mean / base_inproc);
    fmt::print(
        "  {:>6} ttft_client p50/p99 in-process {:.1f}/{:.1f} ms, llama-server {:.1f}/{:.1f} ms\n",
        "", stats(a50).mean, stats(a99).mean, stats(b50).mean, stats(b99).mean);
    record(fmt::format(
        R"j("bench":"aggregate","agents":{},"system_tps_inproc":{:.1f},"system_tps_inproc_sd":{:.1f},"system_tps_llama_server":{:.1f},"system_tps_llama_server_sd":{:.1f},"ratio_inproc_over_server":{:.3f},"ratio_sd":{:.3f},"scaling_vs_first":{:.3f},"ttft_client_p50_ms_inproc":{:.3f},"ttft_client_p99_ms_inproc":{:.3f},"ttft_client_p50_ms_llama_server":{:.3f},"ttft_client_p99_ms_llama_server":{:.3f},"tokens_per_request":{},"gpu_layers":{},"flash_attention_inproc":{},"runs":{},"source":"derived from measured tokens (server-reported counts) and wall time; ttft percentiles over each run's requests, then the mean over runs")j",
        n, sa.mean, sa.sd, sb.mean, sb.sd, sr.mean, sr.sd, sa.mean / base_inproc, stats(a50).mean,
        stats(a99).mean, stats(b50).mean, stats(b99).mean, tokens, gpu.layers,
        where.flash_attention, runs));
  }
  fmt::print("\n");

  // 3. Session reuse: turn 2 with a cached ~300-token persona vs a cold request.
  if (wanted("session")) {
    EndpointConfig ic;
    ic.kind = BackendKind::llama;
    ic.url = model;
    ic.llama.parallel = 2;
    ic.llama.ctx_per_seq = 1024;
    ic.llama.threads = threads;
    ic.llama.gpu_layers = gpu.layers;
    ic.llama.flash_attention = where.flash_attention;
    auto b = make_backend(ic, rt);
    std::string persona = "You are Mira, the innkeeper of the Gilded Stag. ";
    while (persona.size() < 1400) {
      persona +=
          "She remembers every traveller, speaks warmly but briefly, and never reveals "
          "the secret cellar beneath the inn. ";
    }
    std::vector<double> cold, warm, ratio;
    int persona_tokens = 0;
    for (int r = 0; r < runs; ++r) {
      Request c = line(0, 16, r);
      c.prompt = persona + "\nA traveller asks about the road north. Mira:";
      const Completion cc = b->generate(c);  // no session: prefills everything
      Request t1 = c;
      t1.session = fmt::format("mira-{}", r);
      const Completion c1 = b->generate(t1);  // turn 1 fills the session
      Request t2 = t1;
      t2.prompt = t1.prompt + c1.text + "\nThe traveller thanks her and asks for a room. Mira:";
      const Completion c2 = b->generate(t2);
      if (!cc.ok() || !c1.ok() || !c2.ok()) throw std::runtime_error("session run failed");
      persona_tokens = static_cast<int>(*cc.figures.tokens_in);
      cold.push_back(static_cast<double>(*cc.figures.ttft_client_ns) / 1e6);
      warm.push_back(static_cast<double>(*c2.figures.ttft_client_ns) / 1e6);
      ratio.push_back(cold.back() / warm.back());
      b->drop_session(t1.session);
    }
    const auto sc = stats(cold), sw = stats(warm), sr = stats(ratio);
    fmt::print(
        "session reuse ({}-token prompt): cold ttft_client {:.2f} ± {:.2f} ms, turn 2 "
        "{:.2f} ± {:.2f} ms, cold/turn-2 {:.1f} ± {:.1f}x\n",
        persona_tokens, sc.mean, sc.sd, sw.mean, sw.sd, sr.mean, sr.sd);
    record(fmt::format(
        R"j("bench":"session_reuse","prompt_tokens":{},"ttft_cold_ms":{:.3f},"ttft_cold_ms_sd":{:.3f},"ttft_turn2_ms":{:.3f},"ttft_turn2_ms_sd":{:.3f},"ratio_cold_over_turn2":{:.3f},"ratio_sd":{:.3f},"runs":{},"source":"measured: mean and sample sd over runs; ratio per run")j",
        persona_tokens, sc.mean, sc.sd, sw.mean, sw.sd, sr.mean, sr.sd, runs));
  }
  // 4. A request after a pause: an agent that speaks now and then (a game's banter) finds the
  // program idle, its compute threads asleep. Both programs, alternating per run and pause.
  if (wanted("idle")) {
    auto pair = contestants(model, 1, 1024, where, rt);
    if (!pair) return 1;
    fmt::print(
        "\none agent after a pause, {} requests per run (ttft_client: median and largest per "
        "run; mean ± sd over runs)\n",
        requests);
    for (const int gap : idle_gaps) {
      std::vector<double> p50[2], worst[2], ratio;
      for (int r = 0; r < runs; ++r) {
        for (int which = 0; which < 2; ++which) {
          Backend& b = which == 0 ? *pair->inproc : *pair->http;
          std::vector<double> t;
          for (int i = 0; i < requests; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(gap));
            const Completion c = b.generate(line(i, 4, 100 * r + i));
            if (!c.ok()) throw std::runtime_error(c.error.message);
            t.push_back(static_cast<double>(*c.figures.ttft_client_ns) / 1e6);
          }
          p50[which].push_back(median(t));
          worst[which].push_back(*std::max_element(t.begin(), t.end()));
        }
        ratio.push_back(p50[1].back() / p50[0].back());
      }
      const auto a = stats(p50[0]), aw = stats(worst[0]), b = stats(p50[1]), bw = stats(worst[1]),
                 ra = stats(ratio);
      fmt::print(
          "  pause {:>5} ms  in-process {:6.2f} ± {:4.2f} ms (largest {:6.2f})   llama-server "
          "{:6.2f} ± {:4.2f} ms (largest {:6.2f})   llama-server/in-process {:.2f} ± {:.2f}\n",
          gap, a.mean, a.sd, aw.mean, b.mean, b.sd, bw.mean, ra.mean, ra.sd);
      record(fmt::format(
          R"j("bench":"idle_ttft","pause_ms":{},"ttft_client_p50_ms_inproc":{:.3f},"ttft_client_p50_ms_inproc_sd":{:.3f},"ttft_client_max_ms_inproc":{:.3f},"ttft_client_p50_ms_llama_server":{:.3f},"ttft_client_p50_ms_llama_server_sd":{:.3f},"ttft_client_max_ms_llama_server":{:.3f},"ratio_server_over_inproc":{:.3f},"ratio_sd":{:.3f},"threads":{},"runs":{},"requests_per_run":{},"source":"measured: median and largest per run, then mean and sample sd over runs; ratio per run")j",
          gap, a.mean, a.sd, aw.mean, b.mean, b.sd, bw.mean, ra.mean, ra.sd, threads, runs,
          requests));
    }
  }
  fmt::print("\nresults appended to {}\n", out_path);
  return 0;
}

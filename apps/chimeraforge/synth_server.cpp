// `chimeraforge synth-server`: the synthetic LLM server, for measuring clients (see
// include/chimera/synth/server.hpp and docs/synth-server.md).
#include "commands.hpp"
#include "signals.hpp"

#include <chimera/synth/server.hpp>

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace chimera::cli {

namespace {

struct SynthArgs {
  synth::Options options;
  std::string fault = "none";
  bool quiet = false;
};

int run_synth_server(const SynthArgs& a) {
  synth::Options o = a.options;
  std::string error;
  if (!synth::parse_fault(a.fault, o.fault, error)) {
    fmt::print(stderr, "chimeraforge synth-server: --fault: {}\n", error);
    return kUsage;
  }
  if (auto e = synth::validate(o); !e.empty()) {
    fmt::print(stderr, "chimeraforge synth-server: {}\n", e);
    return kUsage;
  }

  // SIGINT and SIGTERM are blocked before the I/O threads exist (they inherit the mask), so the
  // signal reaches only the sigwait below and the server stops in order.
  const StopSignals stop_signals({SIGINT, SIGTERM});

  synth::SynthServer server(o);
  try {
    server.start();
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "chimeraforge {}\n", e.what());
    return kUsage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "chimeraforge {}\n", e.what());
    return kFailed;
  }
  fmt::print(
      "synth-server listening on {} (ttft {} ms, {} tokens/s, {} tokens, jitter {} ms, "
      "fault {} at rate {}, {} thread{})\n",
      server.url(), o.ttft_ms, o.tokens_per_s, o.tokens, o.jitter_ms, synth::to_string(o.fault),
      o.fault_rate, o.threads, o.threads == 1 ? "" : "s");
  std::fflush(stdout);

  const int sig = stop_signals.wait();
  server.stop();
  const synth::Stats s = server.stats();
  fmt::print(
      "synth-server stopped ({}): {} connections, {} requests, {} tokens, peak {} "
      "streams, {} faults\n",
      sig == SIGINT ? "SIGINT" : "SIGTERM", s.connections_accepted, s.requests_served,
      s.tokens_sent, s.streams_peak, s.faults_injected);
  if (!a.quiet) fmt::print("{}\n", server.stats_json());
  std::fflush(stdout);
  return kOk;
}

}  // namespace

std::function<int()> add_synth_server(CLI::App& app) {
  auto a = std::make_shared<SynthArgs>();
  a->options.port = 11500;
  auto* cmd = app.add_subcommand(
      "synth-server",
      "Serve Ollama's and OpenAI's streaming APIs with synthetic tokens at a fixed pace, for\n"
      "measuring clients: the first token comes --ttft-ms after a request arrives, then one\n"
      "every 1/--tokens-per-s seconds, on an absolute schedule that does not slow down with\n"
      "load. Every token chunk carries \"server_sent_ns\" (CLOCK_MONOTONIC send time) and\n"
      "\"scheduled_ns\". Endpoints: POST /api/chat /api/generate /v1/chat/completions\n"
      "/v1/completions; GET /health /api/version /api/tags /v1/models /stats; POST /stats/reset.\n"
      "A request may override the defaults: {\"synth\": {\"ttft_ms\": 50, \"tokens_per_s\": 20,\n"
      "\"tokens\": 8, \"fault\": \"stall:2\"}}; options.num_predict / max_tokens set the count.\n"
      "Prints one line with its URL when ready; stops on Ctrl-C or SIGTERM and prints its "
      "stats.\n\n"
      "Examples:\n"
      "  chimeraforge synth-server                       # http://127.0.0.1:11500, 50 tok/s\n"
      "  chimeraforge synth-server --port 0 --ttft-ms 80 --tokens-per-s 30 --tokens 128\n"
      "  chimeraforge synth-server --fault drop-after:5 --fault-rate 0.1   # 1 in 10 cut\n"
      "  chimeraforge generate --endpoint http://127.0.0.1:11500 --backend ollama \\\n"
      "      --model synth --prompt hi\n"
      "  curl -N http://127.0.0.1:11500/api/chat -d '{\"model\":\"synth\",\"messages\":[],\n"
      "      \"synth\":{\"tokens\":5,\"fault\":\"error-after:3\"}}'\n"
      "  curl http://127.0.0.1:11500/stats");
  synth::Options& o = a->options;
  cmd->add_option("--port,-p", o.port, "TCP port; 0 picks a free one (printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--bind", o.bind, "Address to listen on")->capture_default_str();
  cmd->add_option("--ttft-ms", o.ttft_ms, "Delay from a request's arrival to its first token, ms")
      ->check(CLI::Range(0.0, 3'600'000.0))
      ->capture_default_str();
  cmd->add_option("--tokens-per-s", o.tokens_per_s, "Pace of each stream after its first token")
      ->check(CLI::Range(0.001, 1e9))
      ->capture_default_str();
  cmd->add_option("--tokens,-n", o.tokens,
                  "Tokens per response when the request sets no num_predict / max_tokens")
      ->check(CLI::Range(0, 10'000'000))
      ->capture_default_str();
  cmd->add_option("--jitter-ms", o.jitter_ms,
                  "Move each token's scheduled time by a uniform amount in [-J, +J] ms "
                  "(deterministic for a --seed)")
      ->check(CLI::Range(0.0, 3'600'000.0))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed for jitter and fault selection")->capture_default_str();
  cmd->add_option("--fault", a->fault,
                  "Fault for generation requests: drop-after:K (close the connection after K "
                  "tokens), stall:K (stop sending after K tokens, keep the connection open), "
                  "error-after:K (an error record after K tokens), 503, none")
      ->capture_default_str();
  cmd->add_option("--fault-rate", o.fault_rate,
                  "Fraction of generation requests that get --fault (deterministic "
                  "pseudo-random for a --seed)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--threads", o.threads, "I/O threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_flag("--quiet,-q", a->quiet, "On exit print the one-line summary, not the JSON stats");
  return [a]() -> int { return run_synth_server(*a); };
}

}  // namespace chimera::cli

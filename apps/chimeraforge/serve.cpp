// `chimeraforge serve`: the engine as an OpenAI- and Ollama-compatible server in front of pools
// of endpoints or a GGUF file (include/chimera/serve/server.hpp, docs/serve.md).
#include "commands.hpp"
#include "connection_flags.hpp"
#include "open_files.hpp"
#include "signals.hpp"

#include <chimera/pool/pool.hpp>
#include <chimera/serve/server.hpp>

#include <fmt/format.h>

#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>

namespace chimera::cli {

namespace {

// Each stream holds a socket to its client and, through a pool, one to its upstream: lift the
// soft limit on open files to the hard one, and say how many streams the limit allows when it
// is low. Returns the limit in force (0 when unknown).
rlim_t raise_stream_files(bool in_process) {
  const rlim_t limit = raise_open_files();
  if (limit == 0) return 0;
  constexpr rlim_t kOwnFiles = 64;
  constexpr rlim_t kWanted = 1000;  // streams at once that should fit without a word
  const rlim_t per_stream = in_process ? 1 : 2;
  if (limit < kOwnFiles + kWanted * per_stream) {
    const rlim_t streams = limit > kOwnFiles ? (limit - kOwnFiles) / per_stream : 0;
    fmt::print(stderr,
               "chimeraforge serve: warning: this process may open {} files (RLIMIT_NOFILE, hard "
               "limit included), enough for about {} streams at once ({} per stream); "
               "connections beyond it wait to be accepted. Raise it (`ulimit -n {}`) for more\n",
               limit, streams, in_process ? "a socket" : "a socket to the client and one upstream",
               kOwnFiles + kWanted * per_stream * 4);
  }
  return limit;
}

struct ServeArgs {
  serve::Options options;
  std::string pools_file;
  std::string keys_file;
  std::vector<std::string> accept_keys;  // --accept-key: client keys without limits
  std::vector<std::string> endpoints;
  std::string backend;
  std::string model_file;
  std::string name;
  std::string upstream_model;
  std::string routing = "session-affinity";
  int max_concurrency = 0;
  int64_t hedge_after_ms = 0;
  // Idle connections kept open to each upstream for reuse. A client library's default (16) is
  // too few for a gateway: when more streams than that end together, the rest of their
  // connections close, and the requests after them each open a new one.
  int upstream_idle = 256;
  int busy_poll_us = 0;
  LlamaConfig llama;
  int64_t grace_ms = 10'000;
  ConnectionFlags connection;
};

// The pools from the flags; false (reported) when the flags do not give them.
bool pools_from_flags(const ServeArgs& a, std::vector<pool::PoolConfig>& pools) {
  const int sources = !a.pools_file.empty() + !a.endpoints.empty() + !a.model_file.empty();
  if (sources != 1) {
    fmt::print(stderr,
               "chimeraforge serve: give one of --pools FILE, --endpoint URL (with --backend) or "
               "--model FILE.gguf\n");
    return false;
  }
  if (!a.pools_file.empty()) {
    std::string error;
    if (!pool::load_pools(a.pools_file, pools, error)) {
      fmt::print(stderr, "chimeraforge serve: --pools: {}\n", error);
      return false;
    }
    for (auto& pc : pools) {
      for (auto& e : pc.endpoints) apply_connection_flags(a.connection, e.config);
    }
    return true;
  }
  pool::PoolConfig pc;
  const auto routing = pool::parse_routing(a.routing);
  if (!routing) {
    fmt::print(stderr,
               "chimeraforge serve: --routing: unknown policy '{}' (pinned, round-robin, "
               "least-outstanding, session-affinity)\n",
               a.routing);
    return false;
  }
  pc.routing = *routing;
  pc.hedge_after_ms = a.hedge_after_ms;
  pc.model = a.upstream_model;
  if (!a.model_file.empty()) {
    if (auto e = validate(a.llama); !e.empty()) {
      fmt::print(stderr, "chimeraforge serve: {}\n", e);
      return false;
    }
    pc.name = a.name.empty() ? std::filesystem::path(a.model_file).stem().string() : a.name;
    pool::PoolEndpoint pe;
    pe.config.url = a.model_file;
    pe.config.kind = BackendKind::llama;
    pe.config.llama = a.llama;
    pc.endpoints.push_back(std::move(pe));
  } else {
    const auto kind = parse_backend_kind(a.backend);
    if (!kind || *kind == BackendKind::llama) {
      fmt::print(stderr,
                 "chimeraforge serve: --endpoint needs --backend ollama or --backend openai (the "
                 "protocol the endpoints speak; a GGUF file is served with --model)\n");
      return false;
    }
    pc.name = a.name.empty() ? "default" : a.name;
    for (const auto& url : a.endpoints) {
      pool::PoolEndpoint pe;
      pe.config.url = url;
      pe.config.kind = *kind;
      pe.max_concurrency = a.max_concurrency;
      apply_connection_flags(a.connection, pe.config);
      pc.endpoints.push_back(std::move(pe));
    }
  }
  if (auto e = pool::validate(pc); !e.empty()) {
    fmt::print(stderr, "chimeraforge serve: {}\n", e);
    return false;
  }
  pools.push_back(std::move(pc));
  return true;
}

int run_serve(const ServeArgs& a) {
  std::vector<pool::PoolConfig> configs;
  if (!pools_from_flags(a, configs)) return kUsage;
  for (auto& pc : configs) {
    for (auto& e : pc.endpoints) {
      e.config.limits.max_idle_connections = static_cast<std::size_t>(a.upstream_idle);
    }
  }
  serve::Options options = a.options;
  if (options.cors_origins == std::vector<std::string>{"none"}) options.cors_origins.clear();
  if (!a.keys_file.empty()) {
    std::string error;
    if (!serve::load_keys(a.keys_file, options.keys, error)) {
      fmt::print(stderr, "chimeraforge serve: --keys: {}\n", error);
      return kUsage;
    }
  }
  for (const auto& key : a.accept_keys) {
    if (key.empty() || key.find_first_of(" \t\r\n") != std::string::npos) {
      // (The key itself is not printed: it is a secret even when it is not usable.)
      fmt::print(stderr,
                 "chimeraforge serve: --accept-key: a key is one word without spaces (a client "
                 "sends it as 'Authorization: Bearer KEY'); one given is {}\n",
                 key.empty() ? "empty" : "not");
      return kUsage;
    }
    options.keys.push_back({.key = key, .name = "--accept-key"});
  }
  if (auto e = serve::validate(options); !e.empty()) {
    fmt::print(stderr, "chimeraforge serve: {}\n", e);
    return kUsage;
  }

  // SIGINT and SIGTERM are blocked before any thread exists (threads inherit the mask), so the
  // signal reaches only the wait below and the server shuts down in order.
  const StopSignals stop_signals({SIGINT, SIGTERM});

  // One event loop for the server and the pools' clients: a token goes from the upstream
  // connection to the client's without passing between threads.
  Runtime runtime(a.options.threads, a.busy_poll_us);
  options.runtime = &runtime;
  std::vector<std::unique_ptr<pool::Pool>> pools;
  std::vector<serve::Route> routes;
  try {
    for (auto& pc : configs) {
      pools.push_back(std::make_unique<pool::Pool>(pc, runtime));
      routes.push_back({.name = pc.name, .pool = pools.back().get(), .model = pc.model});
    }
    std::vector<pool::Pool*> raw;
    for (auto& p : pools) raw.push_back(p.get());
    pool::link_fallbacks(raw);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "chimeraforge serve: {}\n", e.what());
    return a.model_file.empty() ? kUsage : kFailed;
  }

  raise_stream_files(!a.model_file.empty());
  auto server = std::make_unique<serve::Server>(options, routes);
  try {
    server->start();
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "chimeraforge {}\n", e.what());
    return kUsage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "chimeraforge {}\n", e.what());
    return kFailed;
  }
  std::string names;
  for (const auto& r : routes) names += fmt::format("{}{}", names.empty() ? "" : ", ", r.name);
  fmt::print("serve listening on {} (pools: {})\n", server->url(), names);
  std::fflush(stdout);

  const int sig = stop_signals.wait();
  fmt::print("serve: {}: finishing requests in flight (up to {} ms)\n", signal_name(sig),
             a.grace_ms);
  std::fflush(stdout);
  const int left = server->shutdown(a.grace_ms);
  const serve::Stats s = server->stats();
  // The pools go first: their requests have ended, and with them every callback into the server.
  pools.clear();
  server.reset();
  fmt::print(
      "serve stopped: {} connections, {} requests, {} cancelled by clients, {} cut at "
      "the deadline\n",
      s.connections, s.requests, s.cancelled, left);
  std::fflush(stdout);
  return kOk;
}

}  // namespace

std::function<int()> add_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve OpenAI's and Ollama's HTTP APIs in front of endpoint pools or a GGUF file: any\n"
      "client that speaks either protocol (curl, LangChain, the openai and ollama libraries)\n"
      "reaches any backend, with the pools' routing, session affinity, failover and hedging.\n"
      "Endpoints: POST /v1/chat/completions /v1/completions /api/chat /api/generate (streamed\n"
      "or not), /api/show; GET / /v1/models /v1/models/{id} /api/tags /api/ps /api/version\n"
      "/health /metrics (Prometheus).\n"
      "A request's \"model\" picks the pool of that name (else the first pool); the header\n"
      "X-Session-Id or OpenAI's \"user\" keeps a conversation on one endpoint (and, in-process,\n"
      "on its cached KV). Prints one line with its URL when ready; on SIGTERM or Ctrl-C it\n"
      "stops accepting and lets requests in flight finish (--shutdown-grace-ms).\n\n"
      "Examples:\n"
      "  chimeraforge serve --port 8000 --model tiny.gguf --parallel 8\n"
      "  chimeraforge serve --port 11434 --backend ollama \\\n"
      "      --endpoint http://10.0.0.2:11434 --endpoint http://10.0.0.3:11434\n"
      "  chimeraforge serve --port 8000 --pools pools.toml      # docs/pools.md\n"
      "  curl -N http://127.0.0.1:8000/v1/chat/completions \\\n"
      "      -d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}'\n"
      "See docs/serve.md.");
  serve::Options& o = a->options;
  cmd->add_option("--port,-p", o.port, "TCP port; 0 picks a free one (printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--host", o.host, "Address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  cmd->add_option("--pools", a->pools_file, "Pool file (TOML, docs/pools.md): one route per pool");
  cmd->add_option("--keys", a->keys_file,
                  "API keys file (TOML [[key]] tables: key, name, max_concurrency, "
                  "requests_per_minute); generation requests then need 'Authorization: Bearer "
                  "KEY' (401 without, 429 over a limit)");
  cmd->add_option("--accept-key", a->accept_keys,
                  "A key clients must send, without limits (repeat for several; beside --keys): "
                  "generation requests then need 'Authorization: Bearer KEY' (--api-key is the "
                  "key serve sends upstream). A command line is visible to this machine's other "
                  "users: there, use --keys or $CHIMERA_SERVE_ACCEPT_KEY")
      ->envname("CHIMERA_SERVE_ACCEPT_KEY");
  cmd->add_option("--endpoint", a->endpoints,
                  "Upstream server URL; repeat it for a pool of several (with --backend)");
  cmd->add_option("--backend,-b", a->backend, "Protocol of --endpoint: ollama or openai")
      ->check(CLI::IsMember({"ollama", "openai"}));
  cmd->add_option("--model,-m", a->model_file, "GGUF file to serve in-process (llama.cpp)");
  cmd->add_option("--name", a->name,
                  "The route's name, as clients' \"model\" gives it (default: \"default\", or "
                  "the GGUF file's stem)");
  cmd->add_option("--upstream-model", a->upstream_model,
                  "Model name sent upstream when a request names none or names the route");
  cmd->add_option("--routing", a->routing,
                  "With several --endpoint: pinned, round-robin, least-outstanding, "
                  "session-affinity")
      ->capture_default_str();
  cmd->add_option("--max-concurrency", a->max_concurrency,
                  "Requests in flight per --endpoint (its slots); 0: no limit")
      ->check(CLI::Range(0, pool::kMaxConcurrency))
      ->capture_default_str();
  cmd->add_option("--upstream-idle", a->upstream_idle,
                  "Idle connections kept open to each upstream for reuse (about as many as the "
                  "streams at once that end together); 0: close each after its response")
      ->check(CLI::Range(0, 65'535))
      ->capture_default_str();
  cmd->add_option("--hedge-after-ms", a->hedge_after_ms,
                  "Send a request to a second endpoint when no token came after this long; 0: "
                  "never")
      ->check(CLI::Range(int64_t{0}, pool::kMaxHedgeAfterMs))
      ->capture_default_str();
  cmd->add_option("--parallel", a->llama.parallel,
                  "--model: sequences decoded together (more requests queue)")
      ->capture_default_str();
  cmd->add_option("--ctx-per-seq", a->llama.ctx_per_seq, "--model: context of each sequence")
      ->capture_default_str();
  cmd->add_option("--model-threads", a->llama.threads, "--model: CPU threads; 0: all")
      ->capture_default_str();
  cmd->add_option("--gpu-layers", a->llama.gpu_layers, "--model: layers offloaded to a GPU")
      ->capture_default_str();
  cmd->add_option("--threads", o.threads,
                  "I/O threads, shared by the server and its upstream connections")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_flag("--relay", o.relay,
                "Pass an OpenAI-compatible upstream's events on as they came to a streamed OpenAI "
                "request (its ids, model name and fields serve does not know, such as logprobs, "
                "included) instead of writing serve's own; other requests are as without");
  cmd->add_option("--busy-poll-us", a->busy_poll_us,
                  "Keep each I/O thread polling for this long after its last event before it "
                  "sleeps: a stream's next byte is then handled without a wake-up, for CPU "
                  "spent polling (a choice for a gateway with a core to spare); 0: sleep at once")
      ->check(CLI::Range(0, kMaxBusyPollUs))
      ->capture_default_str();
  cmd->add_option("--cors-origin", o.cors_origins,
                  "Origins whose web pages may call serve from a browser (CORS; repeat for "
                  "several): an exact origin (https://game.example), one on any port "
                  "(http://localhost:*), * for any, or none. Default: pages served from this "
                  "machine (localhost, 127.0.0.1 and [::1], any port)")
      ->capture_default_str();
  cmd->add_option("--body-limit", o.body_limit, "Largest request body, bytes (413 above)")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--client-timeout-ms", o.client_timeout_ms,
                  "A request must arrive within this; idle connections close after it; a "
                  "client that reads nothing for this long is dropped")
      ->check(CLI::Range(int64_t{1}, int64_t{86'400'000}))
      ->capture_default_str();
  cmd->add_option("--tls-cert", o.tls_cert,
                  "TLS on the listening side: the server's certificate chain (PEM); with --tls-key")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tls-key", o.tls_key, "The private key of --tls-cert (PEM)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--shutdown-grace-ms", a->grace_ms,
                  "On SIGTERM, how long requests in flight may take to finish")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400'000}))
      ->capture_default_str();
  add_connection_flags(cmd, a->connection);
  return [a]() -> int { return run_serve(*a); };
}

}  // namespace chimera::cli

// `chimeraforge serve`: the engine as an OpenAI- and Ollama-compatible HTTP server.
//
// Any protocol in, any backend out: a request in OpenAI's shape (/v1/chat/completions,
// /v1/completions) or Ollama's (/api/chat, /api/generate) is read into a chimera::Request, sent
// to a pool (pool.hpp: Ollama or OpenAI-compatible endpoints, or llama.cpp in-process), and its
// tokens are written back in the shape the client asked in, each as it arrives.
//
// Which pool serves a request: the one whose name the request's `model` gives; otherwise the
// first route, and the model name goes upstream as given (or the route's model when the request
// names none).
//
// Endpoints:
//   POST /v1/chat/completions, /v1/completions     SSE with "stream": true, else one JSON object
//   POST /api/chat, /api/generate                  NDJSON unless "stream": false (Ollama's default)
//   GET  /v1/models, /api/tags, /api/version, /health, /metrics (Prometheus text format)
//
// Behaviour a client can rely on:
// - a body that is malformed, or asks for what cannot be mapped (n > 1, logprobs, images, ...),
//   is answered 400 with a JSON error in the protocol's shape ({"error": {"message": ...}} for
//   OpenAI, {"error": "..."} for Ollama), naming the field;
// - an upstream failure before the first token is an HTTP error (502, 503, 504 or the upstream's
//   4xx); after it, the protocol's in-stream error record, then the end of the stream;
// - a client that disconnects cancels its upstream request (the upstream slot is freed);
// - a session id from the `X-Session-Id` header or OpenAI's `user` field keeps a conversation on
//   one endpoint (session-affinity routing) and, in-process, on its cached KV.
//
// Threading: start() spawns `threads` I/O threads, or serves on `runtime`'s; backends call back
// on their own Runtime threads. Every member is thread-safe.
//
// Example:
//   chimera::Runtime rt;
//   chimera::pool::Pool pool(config, rt);
//   chimera::serve::Server server({.port = 8000}, {{.name = "default", .pool = &pool}});
//   server.start();                 // throws std::runtime_error when it cannot listen
//   ...
//   server.shutdown(10'000);        // stop accepting; streams in flight get 10 s to finish
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace chimera {
class Runtime;
}
namespace chimera::pool {
class Pool;
}

namespace chimera::serve {

struct Route {
  std::string name;            // what a request's `model` names to reach this pool
  pool::Pool* pool = nullptr;  // not owned; outlives the Server
  std::string model;           // sent upstream when the request names no model ("": none)
};

// An API key a client sends as "Authorization: Bearer KEY", with its limits (0: none).
struct ApiKey {
  std::string key;
  std::string name;             // for messages (the key itself is never printed)
  int max_concurrency = 0;      // generation requests in flight at once (429 above)
  int requests_per_minute = 0;  // generation requests started per minute (429 above)
};

// Keys from TOML:
//   [[key]]
//   key = "sk-team-red"
//   name = "red"                # optional
//   max_concurrency = 4         # optional, 0 to 1000000
//   requests_per_minute = 120   # optional, 0 to 1000000000
// Returns false with `error` naming the file, the line and the key.
bool load_keys(const std::string& file, std::vector<ApiKey>& out, std::string& error);
bool parse_keys(std::string_view toml_text, const std::string& source, std::vector<ApiKey>& out,
                std::string& error);

struct Options {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: a free port, chosen at start()
  int threads = 1;  // I/O threads (without `runtime`)
  // Serve on this runtime's event loop (its threads) instead of threads of its own. When the
  // pools run on the same runtime, their callbacks come on the connections' threads and a token
  // goes out without passing from one thread to another. Not owned; outlives the Server.
  Runtime* runtime = nullptr;
  // When not empty, generation requests need one of these keys (401 without, 429 over a limit).
  std::vector<ApiKey> keys;
  std::size_t body_limit = 8u << 20;  // request bodies, bytes (413 above)
  // A request (its header and body) must arrive within this once its first byte has; an idle
  // keep-alive connection is closed after it; a client that takes no bytes of a response for
  // this long is dropped (its upstream request cancelled).
  int64_t client_timeout_ms = 30'000;
  // TLS on the listening side: a PEM certificate (chain) and its PEM private key, both or
  // neither. With them, every connection starts with a TLS handshake and url() is https://.
  std::string tls_cert;
  std::string tls_key;
  // A streamed OpenAI request served by an OpenAI-compatible upstream gets the upstream's
  // events as the upstream wrote them (Request::relay), as a plain proxy would pass them on:
  // its ids, its model's name and any fields serve does not know (logprobs, llama-server's
  // timings) included. Other requests are unchanged.
  bool relay = false;
  // The origins whose web pages may call serve from a browser (CORS): an exact origin
  // ("https://game.example"), one on any port ("http://localhost:*"), or "*" for any. A request
  // from an allowed origin gets Access-Control-Allow-Origin, and a preflight (OPTIONS) is
  // answered; one from another origin is answered without it (its browser withholds the
  // response), and its preflight is a 403 naming the option. The default: pages served from this
  // machine. Empty: none.
  std::vector<std::string> cors_origins = {"http://localhost:*", "https://localhost:*",
                                           "http://127.0.0.1:*", "https://127.0.0.1:*",
                                           "http://[::1]:*",     "https://[::1]:*"};
};

// Whether a browser page of `origin` (a request's Origin header) may call a server whose
// Options::cors_origins are `allowed`.
bool cors_allows(const std::vector<std::string>& allowed, std::string_view origin);

// "" when usable, else what is wrong, naming the option.
std::string validate(const Options& options);

struct Stats {
  int64_t connections = 0;     // accepted since start
  int64_t requests = 0;        // HTTP requests answered
  int64_t streams_active = 0;  // generation requests in flight now
  int64_t cancelled = 0;       // generation requests cancelled because the client went away
};

class Server {
 public:
  // Throws std::invalid_argument when the options or the routes are not usable.
  Server(Options options, std::vector<Route> routes);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens and serves. Throws std::runtime_error naming the address when it cannot listen.
  void start();
  // Graceful: stops accepting, closes idle connections, lets requests in flight finish for up to
  // `grace_ms`, then cancels what remains (their clients get the in-stream error) and stops.
  // Returns the number of requests still in flight at the deadline. Idempotent.
  int shutdown(int64_t grace_ms);
  // At once: shutdown(0).
  void stop();

  int port() const;
  std::string url() const;  // "http://HOST:PORT" ("https://" with TLS)
  Stats stats() const;
  // The /metrics text (Prometheus exposition format 0.0.4).
  std::string metrics_text() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace chimera::serve

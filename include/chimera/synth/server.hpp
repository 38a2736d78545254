// The synthetic LLM server: Ollama's and OpenAI's streaming APIs at a scheduled pace, for
// measuring clients.
//
// A benchmark that runs its client against a real inference server measures both at once, and
// a real server slows down as streams are added. SynthServer generates no text: it answers every
// generation request with tokens "tok1 ", "tok2 ", ... on an absolute schedule (the first token
// `ttft_ms` after the request has arrived, token i at first + i / tokens_per_s), so its
// per-stream pace does not drop with load and whatever a client loses, the client lost. Every
// token chunk carries `server_sent_ns`, the server's CLOCK_MONOTONIC send time (docs/records.md),
// so a client on the same machine can compute each chunk's delivery lag; and `scheduled_ns`, the
// time the schedule asked for, so the server's own lateness can be checked.
//
// Endpoints (docs/synth-server.md has the wire format):
//   POST /api/chat, /api/generate                  Ollama NDJSON ("stream": false: one object)
//   POST /v1/chat/completions, /v1/completions     OpenAI SSE (or one object), llama-server timings
//   GET  /health, /api/version, /v1/models, /api/tags, /stats;   POST /stats/reset
// A request may override the server's defaults with a "synth" object:
//   {"synth": {"ttft_ms": 50, "tokens_per_s": 20, "tokens": 8, "fault": "drop-after:3"}}
// and `options.num_predict` (Ollama) or `max_tokens` (OpenAI) sets its token count.
//
// Threading: start() spawns `threads` I/O threads; every connection runs there. All members are
// thread-safe. stats() may be called at any time. The destructor stops the server.
//
// Process-wide effect: start() raises this process's soft RLIMIT_NOFILE to its hard limit, so
// that thousands of connections can be open (each is a file descriptor).
//
// Example:
//   chimera::synth::SynthServer srv({.ttft_ms = 20, .tokens_per_s = 100, .tokens = 32});
//   srv.start();                        // throws std::runtime_error when it cannot listen
//   auto backend = chimera::make_backend({.url = srv.url(),
//                                         .kind = chimera::BackendKind::ollama}, runtime);
//   ... backend->generate(request) ...
//   chimera::synth::Stats s = srv.stats();  // s.connections_accepted, s.streams_peak, ...
//   srv.stop();
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace chimera::synth {

enum class FaultKind {
  none,
  drop_after,   // close the connection abruptly after K tokens (no final record)
  stall,        // stop sending after K tokens; keep the connection open, silent
  error_after,  // after K tokens, a protocol error record, then the body ends
  http_503,     // answer HTTP 503 with a JSON error instead of generating
  mix,          // each chosen request gets one of the four above (drop, stall, error, 503),
                // picked by a pseudo-random function of the seed and the request's number
};

// What goes wrong in a request. A fault "after K tokens" happens after min(K, tokens) tokens,
// so a selected request always fails, even when it asks for fewer than K tokens.
struct Fault {
  FaultKind kind = FaultKind::none;
  int after_tokens = 0;  // K
};

// Parses a fault spec: "drop-after:K", "stall:K", "error-after:K", "503", "mix:K" or "none"
// (K >= 0).
// On failure returns false and sets `error` to a message that lists the accepted forms.
bool parse_fault(std::string_view spec, Fault& out, std::string& error);
// The spec form of a fault ("stall:3"), as parse_fault reads it.
std::string to_string(const Fault& fault);

struct Options {
  std::string bind = "127.0.0.1";  // address to listen on
  int port = 0;                    // 0: a free port, chosen at start(); read it with port()
  double ttft_ms = 0;              // delay from a request's arrival to its first token
  double tokens_per_s = 50;        // pace of each stream after its first token (> 0)
  int tokens = 64;                 // tokens per response when the request does not say
  double jitter_ms = 0;            // each token's scheduled time moves by a uniform amount in
                                   // [-jitter, +jitter] (never before the previous token's)
  uint64_t seed = 1;               // for jitter and fault selection: same seed, same choices
  int threads = 1;                 // I/O threads
  Fault fault;                     // applied to generation requests chosen by fault_rate
  double fault_rate = 1.0;         // fraction of generation requests that get `fault`, chosen
                                   // by a deterministic pseudo-random function of the seed and
                                   // the request's number (0, 1, 2, ... since start)
};

// Checks options; returns "" when they are usable, else what is wrong, naming the option.
std::string validate(const Options& options);

// Counters since start() or the last reset_stats(). Nanosecond times are CLOCK_MONOTONIC
// (std::chrono::steady_clock), comparable with a client's on the same machine.
struct Stats {
  int64_t connections_accepted = 0;
  int64_t requests_served = 0;   // every HTTP request answered (or begun), any endpoint
  int64_t streams_active = 0;    // generation requests in progress now (not reset)
  int64_t streams_peak = 0;      // most generation requests in progress at once
  int64_t tokens_sent = 0;       // token chunks written
  int64_t faults_injected = 0;   // generation requests that got a fault
  int64_t first_request_ns = 0;  // when the first byte of the first request arrived; 0: none
  // The server's own timeliness, streamed token chunks only: how far behind its schedule it
  // wrote them, with no client work in it (a harness tells the server's share of a run's lateness
  // from the client's with these).
  int64_t tokens_late = 0;              // token chunks written more than 1 ms after their time
  int64_t lateness_ns_sum = 0;          // sum over token chunks of max(0, written - scheduled)
  int64_t last_token_sent_ns = 0;       // the latest server_sent_ns written; 0: none
  int64_t last_token_scheduled_ns = 0;  // the latest scheduled_ns written; 0: none
};

class SynthServer {
 public:
  explicit SynthServer(Options options = {});
  ~SynthServer();
  SynthServer(const SynthServer&) = delete;
  SynthServer& operator=(const SynthServer&) = delete;

  // Listens and starts serving. Throws std::invalid_argument when the options are not usable
  // (validate()) and std::runtime_error when the address cannot be bound, naming it. Calling it
  // on a running server does nothing.
  void start();
  // Stops accepting, shuts every open connection down (clients see the connection end), stops
  // the I/O threads and frees every connection. Idempotent. The server cannot be started again.
  void stop();
  bool running() const;

  int port() const;         // the bound port (after start())
  std::string url() const;  // "http://BIND:PORT"
  const Options& options() const;

  Stats stats() const;
  // Zeroes the counters and first_request_ns; streams_peak becomes streams_active.
  void reset_stats();
  // The stats as /stats answers them: one JSON object, with the options and the process's CPU
  // time (`cpu_ns`, user + system) and open-file limit added.
  std::string stats_json() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace chimera::synth

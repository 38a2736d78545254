// One interface for every inference backend: Ollama's API, OpenAI-compatible servers
// (llama-server, vLLM, ...) and, later, llama.cpp in-process.
//
// A request goes in; token events stream to `on_token` as they arrive; a Completion comes out
// through `on_done`, exactly once, whatever happened (success, error, cancellation). An agent
// never needs to know which backend it runs on.
//
// Threading: callbacks run on the backend's Runtime threads, never on the caller's; they must
// not block for long (every stream on the same thread waits) and must not throw. `on_token`
// returns false to cancel the request.
//
// Cancellation: RequestHandle::cancel() may be called from any thread at any moment. When it
// returns, `on_token` will not be called again for that request; `on_done` then runs once with
// ErrorKind::cancelled and the text received so far. The connection is closed, which makes
// llama-server and Ollama stop generating and free the slot.
//
// Example:
//   chimera::Runtime rt;
//   auto backend = chimera::make_backend({.url = "http://127.0.0.1:8080",
//                                         .kind = chimera::BackendKind::openai}, rt);
//   chimera::Request req;
//   req.messages = {{.role = "user", .content = "Hello"}};
//   chimera::Completion c = backend->generate(req, [](const chimera::TokenEvent& t) {
//     std::fwrite(t.text.data(), 1, t.text.size(), stdout);
//     return true;
//   });
//   if (!c.ok()) std::fprintf(stderr, "%s\n", c.error.message.c_str());
#pragma once

#include <chimera/core/request.hpp>
#include <chimera/core/runtime.hpp>
#include <chimera/http/settings.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera {

enum class BackendKind {
  ollama,  // Ollama's native API: /api/chat, /api/generate (NDJSON streams)
  openai,  // OpenAI-compatible: /v1/chat/completions, /v1/completions (SSE streams)
  llama,   // llama.cpp in-process
};
const char* to_string(BackendKind k);
// The kind a name gives ("ollama", "openai", "llama", as to_string writes them); nullopt for
// any other name.
std::optional<BackendKind> parse_backend_kind(std::string_view name);

// In-process llama.cpp (BackendKind::llama): one model and one context serve every request,
// `parallel` sequences decoded together in one batch per step.
struct LlamaConfig {
  int gpu_layers = 0;       // layers offloaded to a GPU (num_gpu); 0 on a CPU-only build
  int ctx_per_seq = 2048;   // context of each sequence, tokens (the largest num_ctx served)
  int parallel = 8;         // sequences decoded together; more requests queue, idle sessions
                            // are evicted least-recently-used
  int threads = 0;          // CPU threads; 0: all hardware threads
  int batch = 512;          // most tokens in one decode step
  int prefill_chunk = 256;  // most prompt tokens of one sequence in one step, so that running
                            // streams keep going while a long prompt is read
  // Flash attention. Off by default: llama.cpp's CPU flash attention gives a sequence slightly
  // different numbers depending on which other sequences share its batch (measured: greedy
  // outputs diverged after about 70 tokens), while without it a sequence computes exactly what
  // it computes alone. Turn it on for GPUs and long contexts, where it is faster.
  bool flash_attention = false;
};

// The in-process engine's bounds, checked before anything is allocated: llama.cpp serves at
// most 256 sequences, and a sequence's context is bounded like a request's (kMaxNumCtx).
inline constexpr int kMaxParallel = 256;
inline constexpr int kMaxBatch = 65'536;
// "" when the settings are within their bounds; otherwise what is wrong, naming the field.
std::string validate(const LlamaConfig& config);

struct EndpointConfig {
  // e.g. "http://127.0.0.1:11434" (a path prefix is kept); for BackendKind::llama, the GGUF
  // file. Credentials in the URL (http://user:pass@host:port) are sent as HTTP Basic
  // authentication and shown as "user:***@" in every message and record (redact_url).
  // Control characters, NUL and percent-encoded control characters are refused; the path is
  // sent as written, percent-encoding kept (as curl does).
  std::string url;
  BackendKind kind = BackendKind::openai;
  Timeouts timeouts;
  Limits limits;
  std::string api_key;  // sent as "Authorization: Bearer ..." when set
  Tls tls;              // https:// only: CA file, client certificate, verification
  // Sent on every request, as given ({"X-Team", "red"}); an Authorization header here is sent
  // unless api_key is set. Names must be HTTP tokens; values are never printed.
  Headers headers;
  Retry retry;  // on this endpoint, before anything reached the caller (settings.hpp)
  // The forward proxy: "" for the environment's (https_proxy, http_proxy, all_proxy, no_proxy,
  // as curl reads them; never for a loopback host), "direct" for none, else an http:// proxy URL
  // (credentials in it are sent as Proxy-Authorization; https:// goes through CONNECT).
  std::string proxy;
  // An address to connect to instead of resolving the URL's host, as curl's --connect-to (a
  // pool endpoint expanded from DNS, one per address); the Host header, SNI and the
  // certificate check keep the URL's host. "" to resolve the host.
  std::string connect_to;
  LlamaConfig llama;  // BackendKind::llama only
};

using TokenCallback = std::function<bool(const TokenEvent&)>;
using DoneCallback = std::function<void(Completion)>;

// A request in flight.
class RequestHandle {
 public:
  virtual ~RequestHandle() = default;
  // Cancels the request (see the header comment). Idempotent; thread-safe.
  virtual void cancel() = 0;
  // Blocks until on_done has run and returns the Completion it was given.
  // Must not be called from a Runtime thread.
  virtual Completion wait() = 0;
};

// How much of an in-process engine is in use (Backend::engine_load), as of its last decode step.
struct EngineLoad {
  int sequences = 0;          // sequences (`parallel`)
  int sequences_busy = 0;     // sequences running a request
  int sessions = 0;           // sequences holding a session's KV cells between its requests
  int64_t kv_cells_used = 0;  // KV cells (token positions) held, over every sequence
  int64_t kv_cells = 0;       // KV cells in all (sequences x context per sequence)
};

// What an in-process engine knows of the model it serves (Backend::model_facts), read from the
// GGUF file when it was loaded; `serve` answers Ollama's /api/show from it.
struct ModelFacts {
  std::string architecture;  // general.architecture ("llama", "qwen2", ...)
  std::string name;          // general.name ("" when the file has none)
  std::string file_type;     // the weights' type as Ollama names it ("F16", "Q4_K_M"; "" unknown)
  uint64_t parameters = 0;
  uint64_t file_bytes = 0;     // the tensors' bytes
  int64_t context_length = 0;  // the context the model was trained for
  int64_t context_served = 0;  // the context each sequence gets here (ctx_per_seq)
  int64_t embedding_length = 0;
  int64_t block_count = 0;
  int64_t head_count = 0;
  int64_t head_count_kv = 0;
  bool tool_calls = false;  // its chat template shows tools and parses tool calls
  bool thinking = false;    // its chat template turns reasoning on and off
};

// What an endpoint says about itself (`chimeraforge endpoints check`).
struct EndpointInfo {
  std::string url;
  bool healthy = false;
  BackendKind kind = BackendKind::openai;
  std::string server;               // "ollama", "llama-server", or what the server calls itself
  std::string version;              // when the server tells it
  std::vector<std::string> models;  // models it serves
  std::string detail;               // health detail or the error, in words
  int64_t latency_ns = 0;           // round trip of the health check
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  virtual const std::string& endpoint() const = 0;

  // Starts a request and returns at once.
  virtual std::shared_ptr<RequestHandle> start(Request request, TokenCallback on_token,
                                               DoneCallback on_done) = 0;

  // Health, version and models. Blocks; never throws.
  virtual EndpointInfo check() = 0;

  // Forgets a session's cached state (Request::session). Backends without sessions ignore it.
  virtual void drop_session(const std::string& session) { (void)session; }

  // In-process backends: their engine's sequences and KV cells in use. Others: none. Thread-safe.
  virtual std::optional<EngineLoad> engine_load() const { return std::nullopt; }

  // In-process backends: what their engine knows of its model. Others: none. Thread-safe.
  virtual std::optional<ModelFacts> model_facts() const { return std::nullopt; }

  // Runs a request to the end and returns its Completion. Blocks the calling thread, which must
  // not be a Runtime thread.
  Completion generate(Request request, TokenCallback on_token = {});
};

// Makes the backend for an endpoint. Throws std::invalid_argument with a clear message when the
// URL is not usable, or (BackendKind::llama) when the model file cannot be loaded. In-process
// backends made for the same file and LlamaConfig share one loaded model and one decode loop.
std::unique_ptr<Backend> make_backend(const EndpointConfig& config, Runtime& runtime);

// Asks the server which API it speaks: Ollama answers /api/version, OpenAI-compatible servers
// answer /v1/models. Returns the kind, or an Error naming what was tried.
struct DetectResult {
  BackendKind kind = BackendKind::openai;
  Error error;
};
DetectResult detect_backend(const std::string& url, Runtime& runtime, int64_t timeout_ms = 5'000);
// The same with the endpoint's TLS settings and API key (its url; its kind is ignored).
DetectResult detect_backend(const EndpointConfig& config, Runtime& runtime,
                            int64_t timeout_ms = 5'000);

}  // namespace chimera

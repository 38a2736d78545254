// What goes into a backend and what comes out of it: one shape for every backend.
//
// A Request names a model and carries either chat messages or a raw prompt, plus options named
// after Ollama's (the names most local-LLM users know). Token events stream to a callback; a
// Completion comes out, with the text, why generation stopped, what the server reported
// (usage, timings) and what we measured ourselves (the per-request figures of METRICS.md).
//
// These are plain value types: copy them freely; they hold no resources and do no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera {

// A tool call the model asked for. `arguments_json` is the JSON text of the arguments object.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments_json;
};

struct Message {
  std::string role;      // "system", "user", "assistant" or "tool"
  std::string content;
  std::string thinking;  // reasoning text, kept apart from content
  std::vector<ToolCall> tool_calls;
  std::string tool_name; // for role "tool": which tool answered
};

// Sampling and runtime options. Unset fields are not sent, so the server's defaults apply.
struct Options {
  std::optional<int> num_ctx;          // context window, tokens
  std::optional<int> num_gpu;          // layers offloaded to the GPU
  std::optional<int> num_predict;      // most tokens to generate (-1: no limit)
  std::optional<int> num_thread;       // CPU threads
  std::optional<int> top_k;
  std::optional<double> top_p;
  std::optional<double> min_p;
  std::optional<double> temperature;
  std::optional<double> repeat_penalty;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;       // stop strings
};

enum class RequestKind {
  chat,        // messages in, an assistant message out (/api/chat, /v1/chat/completions)
  completion,  // a raw prompt in, a continuation out (/api/generate, /v1/completions)
};

struct Request {
  RequestKind kind = RequestKind::chat;
  std::string model;                  // empty: the server's default, where it has one
  std::vector<Message> messages;      // for chat
  std::string prompt;                 // for completion
  std::string system;                 // completion only: a system prompt (Ollama's `system`)
  Options options;
  bool stream = true;                 // false: one response at the end (no per-token figures)
  std::optional<std::string> keep_alive;    // Ollama: how long the model stays loaded ("5m", "0")
  std::optional<std::string> format_json;   // a JSON schema (JSON text), or "json" for any JSON
  std::optional<std::string> tools_json;    // a JSON array of tool definitions (OpenAI/Ollama form)
  std::optional<bool> think;                // Ollama: ask a thinking model to think (or not)
  // A conversation that keeps going (a game character, a multi-turn chat). The in-process backend
  // keeps the session's KV cache between turns, so a turn whose prompt extends the previous
  // turn's prompt and answer prefills only what is new. Empty: no session.
  std::string session;
  // Endpoint pools: who asks (an agent's name: the fair queue's key; empty: the session) and,
  // with pinned routing, the endpoint's index in the pool (-1: none).
  std::string agent;
  int pin = -1;
  // llama-server extras, ignored elsewhere.
  std::optional<int> slot_id;               // `id_slot`: pin to a server slot (its prompt cache)
  std::optional<bool> cache_prompt;         // reuse the slot's cached prompt prefix
};

// Why generation ended.
enum class FinishReason { none, stop, length, tool_calls, cancelled, error };
const char* to_string(FinishReason r);

// What failed, when something did. `message` names the endpoint and what went wrong.
enum class ErrorKind {
  none,
  bad_request,     // the request itself is wrong (bad URL, bad option); fix and retry
  connect,         // cannot reach the endpoint (refused, unresolvable, connect timeout)
  timeout,         // first token, idle or total timeout ran out
  http_status,     // the server answered with a non-200 status
  server,          // the server reported an error (an error object, possibly mid-stream)
  protocol,        // the response is malformed: invalid JSON, a record over the size limit
  truncated,       // the connection ended before the response was complete
  cancelled,       // the caller cancelled
};
const char* to_string(ErrorKind k);

struct Error {
  ErrorKind kind = ErrorKind::none;
  std::string message;
  int http_status = 0;  // for http_status
  explicit operator bool() const { return kind != ErrorKind::none; }
};

// Where a figure came from (METRICS.md): measured by us in this run, reported by the server, or
// derived from measured figures.
enum class Source { measured, server, derived };

// The per-request figures of METRICS.md. Times in nanoseconds of CLOCK_MONOTONIC
// (std::chrono::steady_clock on Linux); a figure that could not be obtained stays empty.
struct Figures {
  int64_t t_send_ns = 0;                     // measured: just before the first request byte
  std::optional<int64_t> t_first_token_ns;   // measured: first token handed to the callback
  std::optional<int64_t> t_last_token_ns;    // measured
  std::optional<int64_t> ttft_client_ns;     // measured: t_first_token - t_send
  std::optional<double> ttft_server_ms;      // server: prompt_ms / load+prompt_eval duration
  std::optional<int64_t> e2e_ns;             // measured: last response byte handled - t_send
  std::vector<int64_t> itl_ns;               // measured: gap per token (chunk gaps split over k)
  std::optional<int64_t> tokens_out;         // server: generated tokens
  std::optional<int64_t> tokens_in;          // server: prompt tokens
  std::optional<int64_t> prompt_tokens_cached;  // server: prompt tokens served from cache
  std::optional<double> decode_tps_server;   // server
  std::optional<double> decode_tps_client;   // derived: (tokens_out-1)/(t_last-t_first)
  std::optional<int64_t> chunks;             // measured: token-bearing chunks received
  std::optional<int64_t> bytes_dropped;      // in-process: bytes of tokens that never completed
                                             // a UTF-8 character, dropped instead of passed on
  // server: the send time the server wrote into the first token chunk (synthetic server);
  // overhead_ttft = t_first_token - first_byte_server.
  std::optional<int64_t> first_byte_server_ns;
  std::optional<int64_t> queued_ns;          // measured: time spent in a pool's queue before
                                             // t_send (not part of ttft_client)
  int attempts = 1;                          // measured: endpoints tried (pool retries, hedges)
  bool connection_reused = false;            // measured: served over a pooled connection
};

// Server-reported statistics, as the server said them (for Ollama, in nanoseconds).
struct ServerStats {
  std::optional<int64_t> total_duration_ns;
  std::optional<int64_t> load_duration_ns;
  std::optional<int64_t> prompt_eval_count;
  std::optional<int64_t> prompt_eval_duration_ns;
  std::optional<int64_t> eval_count;
  std::optional<int64_t> eval_duration_ns;
  // llama-server `timings`
  std::optional<double> prompt_ms;
  std::optional<double> predicted_ms;
  std::optional<double> predicted_per_second;
  std::optional<int64_t> cache_n;
  std::optional<int64_t> slot_id;
};

struct Completion {
  std::string text;        // generated content (for chat, the assistant message's content)
  std::string thinking;    // reasoning text, when the server sends it apart
  std::vector<ToolCall> tool_calls;
  FinishReason finish = FinishReason::none;
  std::string finish_raw;  // the server's own word for it ("stop", "length", "eos", ...)
  std::string model;       // the model that answered, as the server named it
  std::string endpoint;    // which endpoint served it (URL)
  ServerStats server;
  Figures figures;
  std::vector<int32_t> tokens;  // in-process only: the generated token ids
  Error error;             // set when the request failed; text holds what arrived before
  bool ok() const { return !error; }
};

// One streamed piece of output, handed to the caller as it arrives.
struct TokenEvent {
  std::string_view text;      // generated content (may be empty when only thinking arrived)
  std::string_view thinking;  // reasoning text
  const ToolCall* tool_call = nullptr;  // a tool call delta, when the chunk carried one
  int64_t t_ns = 0;           // when it was handed over (steady clock)
  int index = 0;              // 0 for the first token-bearing chunk, then 1, 2, ...
  // The server's own send time of this chunk (steady clock ns), when it writes one (the
  // synthetic server's `server_sent_ns`); 0 otherwise. delivery_lag = t_ns - server_sent_ns.
  int64_t server_sent_ns = 0;
};

// Nanoseconds on the monotonic clock shared by every figure.
int64_t now_ns();

}  // namespace chimera

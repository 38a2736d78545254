// The synthetic server's protocol without its sockets: what a generation request asks for, and
// the bytes of every record it answers with (Ollama NDJSON, OpenAI SSE, whole-response JSON,
// errors). The transport (server.cpp) frames these records as HTTP chunks and decides when each
// is written.
//
// Token records are on every stream's hot path: they are formatted with fmt into a buffer the
// caller reuses, never built as JSON trees. Everything they contain is our own ASCII (the model
// name is echoed only when it needs no escaping), so no escaping happens there.
#pragma once

#include <chimera/synth/server.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace chimera::synth {

enum class Api { ollama_chat, ollama_generate, openai_chat, openai_completion };

// Ollama's endpoints answer errors as {"error": "..."}, OpenAI's as {"error": {"message": ...}}.
inline bool is_openai(Api a) {
  return a == Api::openai_chat || a == Api::openai_completion;
}

// One generation request, parsed, with the server's defaults filled in.
struct GenRequest {
  Api api = Api::ollama_chat;
  bool stream = true;
  int tokens = 0;        // tokens to generate
  bool limited = false;  // `tokens` came from num_predict / max_tokens: finish "length"
  double ttft_ms = 0;
  double tokens_per_s = 1;
  std::optional<Fault> fault;  // the request's own fault ("synth.fault"), which replaces the
                               // server-wide one (even "none")
  int prompt_tokens = 1;       // an estimate: the prompt's bytes / 4, at least 1
  std::string model;           // echoed in responses: the request's model when it needs no JSON
                               // escaping, else "synth"
};

// The most tokens one request may ask for (a guard against typos that would stream for days).
constexpr int kMaxTokens = 10'000'000;

// Parses a generation request's JSON body. Returns "" on success, else what is wrong with it,
// naming the field ("synth.tokens_per_s must be a number > 0, got -1").
std::string parse_generation(Api api, std::string_view body, const Options& defaults,
                             GenRequest& out);

// What a response says about itself, fixed when the request arrives.
struct ResponseInfo {
  Api api = Api::ollama_chat;
  std::string_view model;
  uint64_t id = 0;        // the generation request's number: "chatcmpl-synth-<id>"
  int64_t created_s = 0;  // Unix time of the request (OpenAI's `created`)
};

// What the final record reports (durations as a real server would: prompt = the scheduled ttft,
// eval = tokens at the scheduled pace).
struct Summary {
  int prompt_tokens = 1;
  int tokens = 0;
  double ttft_ms = 0;
  double tokens_per_s = 1;
  bool limited = false;
  int64_t total_ns = 0;  // request arrival to this record
};

// Each append_* appends exactly one record (with its line ending or SSE "\n\n") to `out`.
// `sent_ns` is the server_sent_ns written into the record; `scheduled_ns` the time the schedule
// asked for (both CLOCK_MONOTONIC).
void append_token(std::string& out, const ResponseInfo& info, int index, int64_t sent_ns,
                  int64_t scheduled_ns);
// Ollama: the final record (done: true). OpenAI: the chunk with finish_reason and timings.
void append_finish(std::string& out, const ResponseInfo& info, const Summary& s, int64_t sent_ns);
// OpenAI only: the usage chunk (empty choices, usage and timings), then "data: [DONE]".
void append_usage(std::string& out, const ResponseInfo& info, const Summary& s, int64_t sent_ns);
void append_done(std::string& out);
// A protocol error record mid-stream: Ollama {"error": "..."}; OpenAI
// data: {"error": {"message": "...", "type": "server_error"}}.
void append_stream_error(std::string& out, Api api, std::string_view message);
// A whole non-streaming response: every token's text at once, with the final statistics.
void append_whole(std::string& out, const ResponseInfo& info, const Summary& s, int64_t sent_ns);

// A JSON error body in the endpoint family's shape. `type` is OpenAI's error type
// ("invalid_request_error", "server_error", "not_found_error").
std::string error_body(bool openai_shape, int status, std::string_view message,
                       std::string_view type);

// Token i's text (0-based): "tok<i+1> ".
void append_token_text(std::string& out, int index);

}  // namespace chimera::synth

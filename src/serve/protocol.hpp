// The wire shapes serve speaks (private header): request bodies of OpenAI's and Ollama's APIs
// read into a chimera::Request, and the records written back (SSE events, NDJSON lines, whole
// JSON responses). No I/O here.
#pragma once

#include <chimera/core/request.hpp>

#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace chimera::serve {

enum class Api { openai_chat, openai_completion, ollama_chat, ollama_generate };
inline bool is_openai(Api api) {
  return api == Api::openai_chat || api == Api::openai_completion;
}
const char* route_of(Api api);                     // "/v1/chat/completions", ...
std::optional<Api> api_of(std::string_view path);  // route_of's inverse; none for other paths

struct Parsed {
  Request request;
  std::string model;           // as the client named it ("" when it named none)
  bool include_usage = false;  // OpenAI stream_options.include_usage
};

// Reads a request body of `api` into `out`. Returns "" when usable; otherwise what is wrong,
// naming the field (a 400 for the client).
std::string parse_request(Api api, std::string_view body, Parsed& out);

// Ollama's way to load a model (a generate request with no prompt, a chat request with no
// messages) or, with keep_alive 0, to unload it: the one-line reply Ollama gives at once (done,
// done_reason "load" or "unload"); none for any other request. serve's models stay as they are:
// an in-process model is loaded at start, and upstream servers keep theirs.
std::optional<std::string> ollama_load_reply(Api api, const Request& r, std::string_view model);

// An error response body in the protocol's shape. `type` is OpenAI's error type
// ("invalid_request_error", "server_error", ...); Ollama's shape has none.
std::string error_body(bool openai, std::string_view message, std::string_view type);

// Writes one response in the client's protocol. One Encoder per request; not thread-safe.
class Encoder {
 public:
  Encoder(Api api, bool stream, std::string model, bool include_usage);

  const char* content_type() const;
  // Appends the record of one token event (streaming), "" when it carries nothing to send. An
  // event whose upstream events are relayed (TokenEvent::relayed) appends those; once one has,
  // so do the rest of the response's (a record that brought several tokens came with the first).
  void token(const TokenEvent& ev, std::string& out);
  // Appends the last records of a stream that ended well (finish reason, usage, [DONE]).
  void finish(const Completion& c, std::string& out);
  // Appends the protocol's in-stream error record (and, for OpenAI, [DONE]).
  void stream_error(std::string_view message, std::string& out);
  // The body of a non-streamed response.
  std::string whole(const Completion& c);

 private:
  std::string id_prefix() const;
  const std::string& record_head();
  void token_with_tool_call(const TokenEvent& ev, std::string& out);

  Api api_;
  bool stream_;
  std::string model_;
  bool include_usage_;
  std::string id_;
  int64_t created_;
  std::set<int> calls_started_;  // OpenAI: tool-call indexes whose id and name were sent
  bool relaying_ = false;        // the upstream's events are passed on (TokenEvent::relayed)
  std::string record_head_;      // the start of every token record, made on the first
};

// The HTTP status for an upstream failure before the first byte.
int status_for(const Error& e);

}  // namespace chimera::serve

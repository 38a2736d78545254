// What the Ollama and OpenAI-compatible backends share (private to the library): a request
// coroutine on the endpoint's executor, cancellation, callbacks, deadlines and the METRICS.md
// figures. A protocol supplies two things: how a Request becomes an HTTP request, and a
// StreamDecoder that turns response bytes into tokens and the final statistics.
#pragma once

#include "backends/stream_state.hpp"
#include "http/client.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/json/value.hpp>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace chimera::backends {

// Hands decoded output to the caller and records the figures. Used by decoders.
class Emitter {
 public:
  virtual ~Emitter() = default;
  // Delivers a token-bearing chunk. Returns false when the request was cancelled.
  virtual bool token(std::string_view text, std::string_view thinking,
                     const ToolCall* tool_call) = 0;
  // Delivers a chunk that added to the tool call at `index` of completion().tool_calls:
  // `arguments_delta` is the arguments text it added. Returns false when cancelled.
  virtual bool tool_call(std::size_t index, std::string_view arguments_delta) = 0;
  virtual Completion& completion() = 0;
  // The send time the server wrote into the record being decoded (the synthetic server's
  // `server_sent_ns`), 0 when it wrote none. Applies to the tokens of that record.
  virtual void server_sent(int64_t ns) = 0;
  // Request::relay: the server's events that the next token() or tool_call() hands on
  // (TokenEvent::relayed); valid until that call returns.
  virtual void relay(std::string_view events) = 0;
};

class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;
  // Body bytes as they arrive. Returns false to stop reading: an error was recorded in
  // completion().error, or the caller cancelled.
  virtual bool on_bytes(std::string_view bytes, Emitter& out) = 0;
  // The body ended normally. Checks that the final record arrived; sets error if not.
  virtual void on_end(Emitter& out) = 0;
  // The final record has arrived; what follows is only the end of the body, which is still read
  // (briefly) so that the connection can be reused.
  virtual bool finished() const { return false; }
  // Decodes a canned token record of this decoder's kind into nothing, once per process. Called
  // while the first request is in flight: its first record then finds the code and tables that
  // decoding runs already touched, which a process otherwise pays for on its first token. A
  // no-op for a whole-body decoder.
  virtual void warm() {}
};

// Feeds `record` to `fresh`, a decoder made for this and used for nothing else, and drops what
// it decodes.
void decode_discarding(StreamDecoder& fresh, std::string_view record);

// StreamDecoder::warm for a decoder class D: the process's first call decodes `record` with a D
// made from `args` into nothing; later calls do nothing.
template <class D, class... Args>
void warm_once(std::string_view record, Args&&... args) {
  static const bool warmed = [&] {
    D fresh(std::forward<Args>(args)...);
    decode_discarding(fresh, record);
    return true;
  }();
  (void)warmed;
}

// Shared helpers for decoders.
std::string json_excerpt(std::string_view text, std::size_t max = 200);
// The message inside a server's error JSON ({"error": "..."} or {"error": {"message": ...}}),
// or the text itself when it is not JSON.
std::string error_message_from_body(std::string_view body);
// A number that fits: get_int gives nullopt for a value that is not an integral number within
// int64 (1e999, 1.5, a string), get_double for one that is not finite.
std::optional<int64_t> get_int(const boost::json::object& o, std::string_view key);
std::optional<int64_t> get_int(const boost::json::value* v);  // nullptr: absent
std::optional<double> get_double(const boost::json::object& o, std::string_view key);
std::optional<double> get_double(const boost::json::value* v);  // nullptr: absent
std::string get_string(const boost::json::object& o, std::string_view key);

// The largest count or duration a server figure may have (2^53: exact as a JSON number).
inline constexpr int64_t kMaxServerCount = int64_t{1} << 53;
// A count or duration the server reported: an integer from 0 to kMaxServerCount. Absent: nullopt.
// Present but not such a number: nullopt, and a warning in `c` naming the key and the value
// (the figure is left out rather than reported wrong).
std::optional<int64_t> server_count(const boost::json::object& o, std::string_view key,
                                    Completion& c);
// The same for a value already looked up (nullptr: absent); `key` names it in the warning.
std::optional<int64_t> server_count(const boost::json::value* v, std::string_view key,
                                    Completion& c);
// A time or rate the server reported: finite and not negative; otherwise as server_count.
std::optional<double> server_number(const boost::json::object& o, std::string_view key,
                                    Completion& c);
std::optional<double> server_number(const boost::json::value* v, std::string_view key,
                                    Completion& c);

// Why a record could not be parsed as JSON, in words: the parser's reason, or, when the text is
// not UTF-8 at all, where ("invalid UTF-8 at byte 12 (0xff)"), or that it is an HTML page.
std::string json_failure(std::string_view text, const boost::system::error_code& ec);

// Is `body` an OpenAI-compatible model list ({"data": [...]}, as /v1/models answers)?
bool is_model_list(std::string_view body);
// What a body that is not the expected JSON is, in words: "an HTML page (text/html): <html>...",
// "not JSON: ...".
std::string describe_body(std::string_view content_type, std::string_view body);

class HttpBackend : public Backend {
 public:
  HttpBackend(const EndpointConfig& config, Runtime& runtime, http::EndpointUrl url);
  ~HttpBackend() override;

  BackendKind kind() const override { return kind_; }
  const std::string& endpoint() const override { return endpoint_->url().url; }
  std::shared_ptr<RequestHandle> start(Request request, TokenCallback on_token,
                                       DoneCallback on_done) override;

  http::HttpEndpoint& http_endpoint() { return *endpoint_; }

  // Runs a short request to completion from a non-runtime thread (for check()).
  http::HttpResult fetch_blocking(const http::HttpRequest& request, std::string& body,
                                  int64_t timeout_ms);

 protected:
  // Builds the HTTP request. Returns false with `error` set when the Request cannot be sent.
  virtual bool build(const Request& request, http::HttpRequest& out, std::string& error) = 0;
  virtual std::unique_ptr<StreamDecoder> make_decoder(const Request& request) = 0;

  BackendKind kind_ = BackendKind::openai;
  std::shared_ptr<http::HttpEndpoint> endpoint_;
};

}  // namespace chimera::backends

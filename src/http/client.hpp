// HTTP/1.1 client on Boost.Beast with C++20 coroutines (private to the library).
//
// One HttpEndpoint per server URL holds a keep-alive connection pool. A request borrows a
// connection (a pooled one after checking that the server has not closed it, or a new one),
// writes the request, and streams the response body to a sink in whatever pieces the socket
// gives; record framing is the caller's (see framing.hpp). Timeouts are deadlines the caller
// recomputes before every read, so "first token" and "idle" can depend on what the caller has
// seen. A request that fails on a reused connection before any response byte is retried once
// on a new connection: the server may have closed the connection as we reused it.
//
// https:// endpoints run the same code over a TLS stream (tls_stream.hpp: OpenSSL reading and
// writing the TCP stream's socket itself) laid on the TCP stream: the socket stays the one that
// deadlines, cancellation and the idle check use. The TLS handshake shares the connect timeout.
// Sessions are resumed on new connections.
// Through a forward proxy (proxy.hpp), https:// runs in a CONNECT tunnel and http:// sends the
// absolute URL.
//
// Thread safety: an HttpEndpoint and all its requests run on its executor: a strand when the
// event loop has several threads, the loop itself when it has one (which runs one handler at a
// time, so that a strand's hand-off on every completion would buy nothing). Callers post or
// co_spawn onto executor().
#pragma once

#include "http/proxy.hpp"
#include "http/tls_stream.hpp"

#include <chimera/core/request.hpp>
#include <chimera/http/settings.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::http {

using Clock = std::chrono::steady_clock;
using Executor = boost::asio::any_io_executor;

// A parsed endpoint URL: http[s]://[user[:password]@]host[:port][/base].
struct EndpointUrl {
  std::string url;  // as given, without a trailing '/', its password shown as "***":
                    // the form every message and record uses
  std::string host;
  std::string port;
  std::string base_path;  // "" or "/prefix" (no trailing '/'), percent-encoded as written: the
                          // request target starts with it as it is, never decoded
  std::string host_header;
  std::string authorization;     // "Basic ..." from the URL's user and password, or ""
  bool tls = false;              // https://
  bool host_is_address = false;  // an IPv4 or IPv6 address, not a name (no SNI)
  std::string connect_to;        // connect here instead of resolving host (EndpointConfig)
};

// Parses an endpoint URL. On failure returns false and sets `error` to a message that says
// what is wrong and what a valid URL looks like. Refused: control characters, NUL and spaces,
// raw or percent-encoded (%00-%1F, %7F) anywhere; a host that is not a name or an address; a
// port outside 1-65535; a query or a fragment; any scheme but http and https.
bool parse_endpoint_url(const std::string& url, EndpointUrl& out, std::string& error);

struct HttpRequest {
  boost::beast::http::verb method = boost::beast::http::verb::post;
  std::string path;  // appended to the endpoint's base path, e.g. "/api/chat"
  std::string body;
  std::string content_type = "application/json";
  std::string accept;
};

// The deadline that applies to the next network operation, and its name for error messages.
struct Phase {
  Clock::time_point deadline = Clock::time_point::max();
  const char* what = "total";
  // When set, the whole reason, used instead of "<what> timeout ran out" (it must outlive the
  // read it applies to).
  const char* why = nullptr;
  // Or, when set, makes that reason from `explain_arg`, only if the deadline passes: a reason
  // with figures in it, formatted before every read, would cost a string per token.
  std::string (*explain)(const void* arg) = nullptr;
  const void* explain_arg = nullptr;
};

struct HttpCallbacks {
  // Called just before the first request byte is written (each attempt); for t_send.
  std::function<void()> on_send;
  // Called once the request is written (each attempt), while the response is awaited: for work
  // best done before it arrives.
  std::function<void()> on_sent;
  // Deadline for the next read of the response; called before every read.
  std::function<Phase()> next_phase;
  // Body bytes of a 2xx response as they arrive; `last`: the body ends with them, and the
  // request's result follows without another read. Return false to stop reading (the
  // connection is then closed, not pooled).
  std::function<bool(std::string_view bytes, bool last)> on_body;
  // The Content-Type of a 2xx response, before its body: "" to go on, or why the body cannot be
  // what was asked for (an HTML page where a stream was expected); the request then fails.
  std::function<std::string(std::string_view content_type)> check_headers;
};

struct HttpResult {
  int status = 0;
  std::string content_type;
  std::string content_encoding;  // e.g. "gzip": a body this client cannot read
  std::string error_body;        // the first 64 KiB of a non-2xx response's body
  Error error;                   // transport failure: connect, timeout, truncated, cancelled, ...
  std::string retry_after;       // a non-2xx response's Retry-After header
  int attempts = 1;              // tries on this endpoint (see Retry)
  bool transient = false;        // refused or reset before any response: worth another try
  bool delivered = false;        // body bytes went to on_body: never retried
  bool reused = false;           // served over a pooled connection
  bool retried = false;          // the first attempt on a reused connection failed and was retried
  bool stopped = false;          // on_body returned false
  bool complete = false;         // the whole response was read
};

struct Connection {
  explicit Connection(const Executor& ex) : stream(ex) {}
  boost::beast::tcp_stream stream;
  std::unique_ptr<TlsStream> tls;  // over `stream`'s socket, for https://
  boost::beast::flat_buffer buffer;
  int uses = 0;
  Clock::time_point idle_since{};  // when it was last given back to the idle set
};

// The deadline of one attempt's network operations (see HttpEndpoint::attempt). On the
// endpoint's executor.
struct Watchdog : std::enable_shared_from_this<Watchdog> {
  Watchdog(const Executor& ex, Connection* c) : timer(ex), conn(c) {}
  void set(const Phase& ph);  // the deadline of the next operation
  void stop();                // the attempt is over
  boost::asio::steady_timer timer;
  Connection* conn;
  Phase phase;
  Clock::time_point armed_at{};
  bool armed = false;
  bool fired = false;  // a deadline ran out and the pending operation was cancelled
  bool stopped = false;

 private:
  void arm(Clock::time_point at);
};

// Cancellation of one request: close() may be posted to the endpoint's executor at any time.
struct CancelSlot {
  bool cancelled = false;
  Connection* active = nullptr;                  // the connection in use, if any
  boost::asio::steady_timer* waiting = nullptr;  // the wait before a retry, if any
  void cancel();
};

class HttpEndpoint {
 public:
  // Throws std::invalid_argument when the TLS settings cannot be used (a CA file or a client
  // certificate that cannot be read), naming the file and the endpoint.
  // `executor` runs on `io`: a strand over it when several threads run it (see above).
  HttpEndpoint(boost::asio::io_context& io, Executor executor, EndpointUrl url, Timeouts timeouts,
               Limits limits, std::string api_key, const Tls& tls = {}, Headers headers = {},
               Retry retry = {}, const std::string& proxy = {});
  ~HttpEndpoint();

  const EndpointUrl& url() const { return url_; }
  const Timeouts& timeouts() const { return timeouts_; }
  const Limits& limits() const { return limits_; }
  Executor& executor() { return executor_; }

  // Runs one request, retried on this endpoint as Retry says. Must be awaited on executor().
  // Never throws.
  boost::asio::awaitable<HttpResult> send(const HttpRequest& request, HttpCallbacks& callbacks,
                                          CancelSlot& cancel);

  // A simple GET/POST that collects the whole body (for health checks, model lists), tried
  // once (no Retry).
  boost::asio::awaitable<HttpResult> fetch(const HttpRequest& request, std::string& body,
                                           int64_t timeout_ms, CancelSlot& cancel);

  // Connections: opened so far, and idle in the pool now (for tests and diagnostics).
  int connections_opened() const { return opened_; }
  std::size_t idle_connections() const { return idle_.size(); }

 private:
  enum class Attempt { done, retry };
  boost::asio::awaitable<HttpResult> send_once(const HttpRequest& request, HttpCallbacks& callbacks,
                                               CancelSlot& cancel);
  // How long to wait before trying `result`'s request again, or nothing: no retry.
  std::optional<Clock::duration> retry_wait(const HttpResult& result, HttpCallbacks& callbacks,
                                            Clock::time_point first_try);
  boost::asio::awaitable<bool> wait(Clock::duration delay, CancelSlot& cancel);
  boost::asio::awaitable<Attempt> attempt(const HttpRequest& request, HttpCallbacks& callbacks,
                                          CancelSlot& cancel, std::unique_ptr<Connection> conn,
                                          bool reused, HttpResult& result);
  boost::asio::awaitable<std::unique_ptr<Connection>> connect(CancelSlot& cancel,
                                                              HttpResult& result);
  std::unique_ptr<Connection> take_idle();
  std::string request_head(const HttpRequest& request) const;
  boost::asio::awaitable<boost::system::error_code> write_request(Connection& conn,
                                                                  std::string_view head,
                                                                  std::string_view body,
                                                                  Watchdog& wd, const Phase& phase);
  void give_back(std::unique_ptr<Connection> conn);
  // Closes the idle connections kept longer than Limits::idle_expiry_ms (the oldest are first).
  void drop_expired(Clock::time_point now);
  std::string describe(const char* what) const;
  // Hides the API key and the extra headers' values in a server's error body (some echo the
  // key they refused), so that no message or record shows them.
  void redact(std::string& text) const;
  boost::asio::awaitable<bool> tunnel(Connection& conn, CancelSlot& cancel, HttpResult& result);
  std::string via() const;
  boost::asio::awaitable<bool> handshake(Connection& conn, CancelSlot& cancel, HttpResult& result);
  void keep_session(Connection& conn);

  boost::asio::io_context& io_;
  Executor executor_;
  EndpointUrl url_;
  Timeouts timeouts_;
  Limits limits_;
  std::string api_key_;
  Headers headers_;  // sent on every request
  Retry retry_;
  std::optional<ProxyUrl> proxy_;  // the forward proxy requests go through, if any
  std::unique_ptr<boost::asio::ssl::context> tls_context_;  // https:// only
  SSL_SESSION* tls_session_ = nullptr;  // the last session, offered to new connections
  std::vector<std::unique_ptr<Connection>> idle_;
  int opened_ = 0;
};

}  // namespace chimera::http

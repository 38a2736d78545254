#include "http/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <chimera/version.h>
#include <fmt/format.h>

#include <sys/socket.h>

#include <array>
#include <cerrno>

namespace chimera::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {
constexpr std::size_t kMaxErrorBody = 64 * 1024;

bool is_disconnect(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == bhttp::error::partial_message;
}
}  // namespace

bool parse_endpoint_url(const std::string& in, EndpointUrl& out, std::string& error) {
  const auto parsed = boost::urls::parse_uri(in);
  if (!parsed) {
    error = fmt::format("'{}' is not a URL ({}); expected http://HOST:PORT, e.g. "
                        "http://127.0.0.1:11434",
                        in, parsed.error().message());
    return false;
  }
  const auto& u = *parsed;
  if (u.scheme() != "http") {
    error = fmt::format("'{}': scheme '{}' is not supported; local inference servers speak plain "
                        "HTTP, so use http://HOST:PORT",
                        in, std::string(u.scheme()));
    return false;
  }
  if (u.host_address().empty()) {
    error = fmt::format("'{}' names no host; expected http://HOST:PORT", in);
    return false;
  }
  if (u.has_query() || u.has_fragment()) {
    error = fmt::format("'{}': an endpoint URL takes no query or fragment", in);
    return false;
  }
  out.host = u.host_address();
  out.port = u.has_port() ? std::string(u.port()) : "80";
  out.base_path = u.path();
  while (!out.base_path.empty() && out.base_path.back() == '/') out.base_path.pop_back();
  const bool v6 = u.host_type() == boost::urls::host_type::ipv6;
  out.host_header = (v6 ? "[" + out.host + "]" : out.host) + ":" + out.port;
  out.url = in;
  while (!out.url.empty() && out.url.back() == '/') out.url.pop_back();
  return true;
}

void CancelSlot::cancel() {
  cancelled = true;
  if (active != nullptr) {
    beast::error_code ec;
    active->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    active->stream.close();
  }
}

void Watchdog::set(const Phase& ph) {
  phase = ph;
  if (stopped || fired || ph.deadline == Clock::time_point::max()) return;
  if (armed && armed_at <= ph.deadline) return;  // fires earlier; it will look again then
  arm(ph.deadline);
}

void Watchdog::arm(Clock::time_point at) {
  armed = true;
  armed_at = at;
  timer.expires_at(at);
  timer.async_wait([self = shared_from_this(), at](const beast::error_code& ec) {
    if (ec || self->stopped || self->armed_at != at) return;  // re-armed, stopped or cancelled
    self->armed = false;
    if (self->phase.deadline == Clock::time_point::max()) return;
    if (Clock::now() < self->phase.deadline) {
      self->arm(self->phase.deadline);  // the deadline moved on: sleep until then
      return;
    }
    self->fired = true;
    beast::error_code ignored;
    self->conn->stream.socket().cancel(ignored);  // the pending operation ends: a timeout
  });
}

void Watchdog::stop() {
  stopped = true;
  timer.cancel();
}

HttpEndpoint::HttpEndpoint(asio::io_context& io, EndpointUrl url, Timeouts timeouts,
                           Limits limits, std::string api_key)
    : io_(io),
      strand_(asio::make_strand(io)),
      url_(std::move(url)),
      timeouts_(timeouts),
      limits_(limits),
      api_key_(std::move(api_key)) {}

std::string HttpEndpoint::describe(const char* what) const {
  return fmt::format("{}: {}", url_.url, what);
}

std::unique_ptr<Connection> HttpEndpoint::take_idle() {
  while (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    if (conn->buffer.size() != 0) continue;  // bytes after a complete response: not trustworthy
    // Has the server closed it? llama-server closes after every streamed response while still
    // advertising keep-alive; a peek tells without consuming anything.
    char byte = 0;
    const auto n = ::recv(conn->stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return conn;
    // n == 0: closed by the server; n > 0: unsolicited bytes; n < 0: a socket error.
  }
  return nullptr;
}

void HttpEndpoint::give_back(std::unique_ptr<Connection> conn) {
  if (idle_.size() >= limits_.max_idle_connections) return;  // closes it
  idle_.push_back(std::move(conn));
}

asio::awaitable<std::unique_ptr<Connection>> HttpEndpoint::connect(CancelSlot& cancel,
                                                                    HttpResult& result) {
  auto conn = std::make_unique<Connection>(strand_);
  tcp::resolver resolver(strand_);
  auto [rec, endpoints] = co_await resolver.async_resolve(url_.host, url_.port, use_tuple);
  if (rec) {
    result.error = {ErrorKind::connect,
                    describe(fmt::format("cannot resolve host '{}': {}", url_.host, rec.message())
                                 .c_str())};
    co_return nullptr;
  }
  if (cancel.cancelled) {
    result.error = {ErrorKind::cancelled, describe("cancelled")};
    co_return nullptr;
  }
  if (timeouts_.connect_ms > 0) {
    conn->stream.expires_after(std::chrono::milliseconds(timeouts_.connect_ms));
  }
  cancel.active = conn.get();
  auto [cec, ep] = co_await conn->stream.async_connect(endpoints, use_tuple);
  cancel.active = nullptr;
  if (cec) {
    if (cancel.cancelled) {
      result.error = {ErrorKind::cancelled, describe("cancelled while connecting")};
    } else if (cec == beast::error::timeout) {
      result.error = {ErrorKind::connect,
                      describe(fmt::format("connect timed out after {} ms; is the server up?",
                                           timeouts_.connect_ms)
                                   .c_str())};
    } else {
      result.error = {ErrorKind::connect,
                      describe(fmt::format("cannot connect: {}; is the server running?",
                                           cec.message())
                                   .c_str())};
    }
    co_return nullptr;
  }
  beast::error_code ec;
  conn->stream.socket().set_option(tcp::no_delay(true), ec);  // tokens are tiny writes
  ++opened_;
  co_return conn;
}

asio::awaitable<HttpResult> HttpEndpoint::send(const HttpRequest& request,
                                               HttpCallbacks& callbacks, CancelSlot& cancel) {
  HttpResult result;
  for (int attempt_no = 0; attempt_no < 2; ++attempt_no) {
    // The retry always takes a new connection: the pool may hold more stale ones.
    std::unique_ptr<Connection> conn = attempt_no == 0 ? take_idle() : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) {
      conn = co_await connect(cancel, result);
      if (!conn) co_return result;
    }
    const Attempt a = co_await attempt(request, callbacks, cancel, std::move(conn), reused, result);
    if (a == Attempt::done) co_return result;
    result = HttpResult{};
    result.retried = true;
  }
  co_return result;
}

asio::awaitable<HttpEndpoint::Attempt> HttpEndpoint::attempt(
    const HttpRequest& request, HttpCallbacks& callbacks, CancelSlot& cancel,
    std::unique_ptr<Connection> conn, bool reused, HttpResult& result) {
  result.reused = reused;
  const bool may_retry = reused && !result.retried;

  bhttp::request<bhttp::string_body> req{request.method, url_.base_path + request.path, 11};
  req.set(bhttp::field::host, url_.host_header);
  req.set(bhttp::field::user_agent, "chimeraforge/" CHIMERA_VERSION_STRING);
  if (!request.body.empty() || request.method == bhttp::verb::post) {
    req.set(bhttp::field::content_type, request.content_type);
  }
  if (!request.accept.empty()) req.set(bhttp::field::accept, request.accept);
  if (!api_key_.empty()) req.set(bhttp::field::authorization, "Bearer " + api_key_);
  req.keep_alive(true);
  req.body() = request.body;
  req.prepare_payload();

  // Deadlines: one timer for the whole attempt, armed lazily. A deadline that moves later (the
  // idle deadline moves with every read) leaves the timer alone; when it fires it looks at the
  // current deadline and sleeps again if that is still ahead. Arming the stream's own timer on
  // every read instead cost a timer insert, a cancel and an aborted completion per token.
  conn->stream.expires_never();
  auto wd = std::make_shared<Watchdog>(strand_, conn.get());
  struct Disarm {
    std::shared_ptr<Watchdog> wd;
    ~Disarm() { wd->stop(); }
  } disarm{wd};
  auto set_deadline = [&](const Phase& ph) { wd->set(ph); };
  auto fail = [&](ErrorKind kind, std::string what) {
    result.error = {kind, describe(what.c_str())};
  };
  auto fail_io = [&](const beast::error_code& ec, const Phase& ph, const char* doing) {
    if (cancel.cancelled) {
      fail(ErrorKind::cancelled, "cancelled");
    } else if (wd->fired || ec == beast::error::timeout) {
      fail(ErrorKind::timeout,
           fmt::format("{} timeout ran out while {}", wd->fired ? wd->phase.what : ph.what, doing));
    } else if (ec == bhttp::error::body_limit) {
      fail(ErrorKind::protocol, fmt::format("the response body exceeds the limit of {} bytes",
                                            limits_.max_body_bytes));
    } else if (is_disconnect(ec)) {
      fail(ErrorKind::truncated,
           fmt::format("the server closed the connection while {} ({})", doing, ec.message()));
    } else {
      fail(ErrorKind::truncated, fmt::format("{} failed: {}", doing, ec.message()));
    }
  };

  cancel.active = conn.get();
  ++conn->uses;
  if (callbacks.on_send) callbacks.on_send();
  Phase phase = callbacks.next_phase ? callbacks.next_phase() : Phase{};
  set_deadline(phase);
  auto [wec, written] = co_await bhttp::async_write(conn->stream, req, use_tuple);
  if (wec) {
    cancel.active = nullptr;
    if (may_retry && !cancel.cancelled && is_disconnect(wec)) co_return Attempt::retry;
    fail_io(wec, phase, "sending the request");
    co_return Attempt::done;
  }

  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(limits_.max_body_bytes);
  parser.header_limit(64 * 1024);
  phase = callbacks.next_phase ? callbacks.next_phase() : Phase{};
  set_deadline(phase);
  auto [hec, hn] = co_await bhttp::async_read_header(conn->stream, conn->buffer, parser, use_tuple);
  if (hec) {
    cancel.active = nullptr;
    if (may_retry && !cancel.cancelled && !parser.got_some() && is_disconnect(hec)) {
      co_return Attempt::retry;
    }
    fail_io(hec, phase, "waiting for the response");
    co_return Attempt::done;
  }
  result.status = static_cast<int>(parser.get().result_int());
  result.content_type = std::string(parser.get()[bhttp::field::content_type]);
  const bool success = result.status / 100 == 2;

  // Small: one lives in every request in flight (thousands at once); a token chunk is ~100 bytes.
  std::array<char, 4 * 1024> chunk{};
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    phase = callbacks.next_phase ? callbacks.next_phase() : Phase{};
    set_deadline(phase);
      // read_some, not read: http::async_read returns only when the body buffer is full, which
    // turns a token stream into 16 KiB bursts (measured: every token of a short reply arrived
    // at the end). read_some hands over whatever one socket read brought.
    auto [rec, rn] =
        co_await bhttp::async_read_some(conn->stream, conn->buffer, parser, use_tuple);
    if (rec == bhttp::error::need_buffer) rec = {};
    const std::size_t got = chunk.size() - parser.get().body().size;
    if (got > 0 && !cancel.cancelled) {
      const std::string_view bytes(chunk.data(), got);
      if (success) {
        if (callbacks.on_body && !callbacks.on_body(bytes)) {
          result.stopped = true;
          break;
        }
      } else if (result.error_body.size() < kMaxErrorBody) {
        result.error_body.append(bytes.substr(0, kMaxErrorBody - result.error_body.size()));
      }
    }
    if (rec) {
      cancel.active = nullptr;
      fail_io(rec, phase, "reading the response");
      co_return Attempt::done;
    }
  }
  cancel.active = nullptr;
  if (result.stopped || cancel.cancelled) {
    if (cancel.cancelled) fail(ErrorKind::cancelled, "cancelled");
    conn->stream.close();  // unread bytes may remain: never reuse
    co_return Attempt::done;
  }
  result.complete = true;
  if (parser.keep_alive()) give_back(std::move(conn));
  co_return Attempt::done;
}

asio::awaitable<HttpResult> HttpEndpoint::fetch(const HttpRequest& request, std::string& body,
                                                int64_t timeout_ms, CancelSlot& cancel) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  HttpCallbacks cb;
  cb.next_phase = [deadline] { return Phase{deadline, "request"}; };
  cb.on_body = [&body, this](std::string_view bytes) {
    body.append(bytes);
    return body.size() <= limits_.max_record_bytes * 8;
  };
  HttpResult r = co_await send(request, cb, cancel);
  if (r.stopped && !r.error) {
    r.error = {ErrorKind::protocol, describe("response too large")};
  }
  co_return r;
}

}  // namespace chimera::http

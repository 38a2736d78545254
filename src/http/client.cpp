#include "http/client.hpp"

#include "http/proxy.hpp"

#include <chimera/core/system_error.hpp>
#include <chimera/version.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <stdexcept>
#include <vector>

namespace chimera::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {
constexpr std::size_t kMaxErrorBody = 64 * 1024;

bool is_disconnect(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == bhttp::error::partial_message || ec == ssl::error::stream_truncated;
}

// Runs `op` (an async operation taking a stream) on the connection's TLS stream for https://,
// on its TCP stream otherwise. Both give the same awaitable, so a read costs the same either way.
template <class Op>
auto on_stream(Connection& conn, Op&& op) {
  return conn.tls ? op(*conn.tls) : op(conn.stream);
}

// How far read_response reads: the body bytes that have arrived (however many elements, chunk
// headers and data, the bytes already read hold), or the whole head.
enum class ReadUntil { available, head };

// The largest a connection's read buffer grows to (bytes). A read that fills the buffer's free
// space doubles it, so a connection whose server writes in bursts (many streams sharing a
// loaded server) takes a burst in one system call; one that gets a token at a time keeps the
// 512 bytes Beast starts with (a thousand idle agents hold a thousand of these).
constexpr std::size_t kMaxReadBuffer = 16 * 1024;

// Reads a response as Beast's http::async_read_some (ReadUntil::available) or
// http::async_read_header (ReadUntil::head) does, with the same errors (end_of_stream when the
// connection ends before any byte, partial_message after some, buffer_overflow, the parser's
// own): what the buffer holds is parsed first, then `stream` is read. Without Beast's composed
// operation, which posts its completion even when the buffer held the element (an event-loop
// trip per token) and tracks outstanding work on a copy of the executor. Over plain TCP `stream`
// is the socket itself, not the tcp_stream, whose timed transfer operation this client does not
// use (the Watchdog cancels the socket). Together about a third of the client's instructions per
// streamed token, and 97.2k -> 95.3k for a one-token request with the head read here too
// (callgrind).
// ReadUntil::available returns as soon as the parser has put body bytes into the body buffer
// and the bytes read hold no further whole element, or the body buffer is full (need_buffer):
// every record one read brought goes to the caller at once (one decode pass, one write by a
// server passing them on), and the socket is read only when nothing is left to hand over.
template <class Stream>
asio::awaitable<beast::error_code> read_response(Stream& stream, beast::flat_buffer& buffer,
                                                 bhttp::response_parser<bhttp::buffer_body>& parser,
                                                 ReadUntil until) {
  beast::error_code ec;
  const std::size_t room = parser.get().body().size;
  for (;;) {
    while (buffer.size() > 0) {
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == bhttp::error::need_more) {  // the rest is not a whole element yet
        ec = {};
        break;
      }
      if (used == 0 && !ec) break;  // (never seen: the parser always moves or asks for more)
      if (ec || parser.is_done() || (until == ReadUntil::head && parser.is_header_done())) {
        co_return ec;
      }
    }
    if (until == ReadUntil::available && parser.get().body().size < room) co_return ec;
    // Before reading the body again, the loop's other ready work runs first (other streams'
    // records, new requests): under load a stream that was just read does not go ahead of the
    // rest again at once, and finds more of its own bytes waiting when its turn comes.
    if (parser.is_header_done()) co_await asio::post(asio::use_awaitable);
    const std::size_t size = beast::read_size(buffer, 65536);
    if (size == 0) co_return bhttp::error::buffer_overflow;
    auto [rec, n] = co_await stream.async_read_some(buffer.prepare(size), use_tuple);
    buffer.commit(n);
    if (n == size && buffer.capacity() < kMaxReadBuffer) {
      buffer.reserve(std::min(2 * buffer.capacity(), kMaxReadBuffer));
    }
    if (rec == asio::error::eof) {
      // As Beast: a body that ends with the connection (no length, not chunked) is complete
      // now; any other message is cut short.
      if (!parser.got_some()) co_return bhttp::error::end_of_stream;
      parser.put_eof(ec);
      co_return ec;
    }
    if (rec) co_return rec;
  }
}

// The first response a process reads runs code and touches tables nothing has run or touched
// before (Beast builds its table of known header names, 16 KiB, when it parses its first
// header). Parsing a canned streamed response here, while the first request is in flight,
// takes that first-time cost out of the first token's way.
void warm_response_path() {
  static const bool warm = [] {
    static constexpr std::string_view kCanned =
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n"
        "\r\n5\r\nhello\r\n";
    bhttp::response_parser<bhttp::buffer_body> parser;
    char body[16];
    parser.get().body().data = body;
    parser.get().body().size = sizeof body;
    beast::error_code ec;
    std::string_view rest = kCanned;
    while (!rest.empty() && !ec) {
      const std::size_t used = parser.put(asio::buffer(rest.data(), rest.size()), ec);
      if (ec == bhttp::error::need_buffer) ec = {};
      if (used == 0) break;
      rest.remove_prefix(used);
      parser.get().body().data = body;
      parser.get().body().size = sizeof body;
    }
    return !ec;
  }();
  (void)warm;
}

void require_readable(const std::string& path, const char* what, const std::string& url) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::invalid_argument(
        fmt::format("{}: cannot read the {} '{}': {}", url, what, path, std::strerror(errno)));
  }
}

// The client context of an https:// endpoint: the CA store (the system's, or ca_file), the
// client certificate for mutual TLS, verification on unless `insecure`.
std::unique_ptr<ssl::context> make_tls_context(const Tls& tls, const std::string& url) {
  if (tls.client_cert.empty() != tls.client_key.empty()) {
    throw std::invalid_argument(
        fmt::format("{}: a client certificate needs its key and a key its certificate (give both "
                    "client_cert and client_key)",
                    url));
  }
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  const char* doing = "the system's CA store";
  std::string file;
  try {
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx->set_verify_mode(tls.insecure ? ssl::verify_none : ssl::verify_peer);
    if (!tls.ca_file.empty()) {
      doing = "CA file";
      file = tls.ca_file;
      require_readable(file, doing, url);
      ctx->load_verify_file(file);
    } else if (!tls.insecure) {
      ctx->set_default_verify_paths();
    }
    if (!tls.client_cert.empty()) {
      doing = "client certificate";
      file = tls.client_cert;
      require_readable(file, doing, url);
      ctx->use_certificate_chain_file(file);
      doing = "client key";
      file = tls.client_key;
      require_readable(file, doing, url);
      ctx->use_private_key_file(file, ssl::context::pem);
    }
  } catch (const boost::system::system_error& e) {
    throw std::invalid_argument(fmt::format("{}: cannot use the {}{}: {} (a PEM file is expected)",
                                            url, doing, file.empty() ? "" : " '" + file + "'",
                                            e.code().message()));
  }
  SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_CLIENT);
  return ctx;
}
}  // namespace

namespace {

// The text as a message may show it: control characters escaped, the password hidden.
std::string printable(std::string_view text) {
  std::string out;
  for (const unsigned char c : redact_url(text)) {
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The first control character or space, raw or percent-encoded: its offset, its value and how
// it was written. A request line or a header must never carry one.
struct Control {
  std::size_t at = std::string_view::npos;
  int value = 0;
  bool encoded = false;
};
Control find_control(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == ' ') return {i, c, false};
    if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      const int v = hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]);
      if (v < 0x20 || v == 0x7f) return {i, v, true};
    }
  }
  return {};
}

}  // namespace

bool parse_endpoint_url(const std::string& in, EndpointUrl& out, std::string& error) {
  constexpr const char* kExpected =
      "expected http://HOST:PORT or https://HOST[:PORT], e.g. http://127.0.0.1:11434";
  if (const Control c = find_control(in); c.at != std::string_view::npos) {
    error = fmt::format(
        "'{}': {} at offset {} ({}); a URL must not carry control characters, "
        "NUL or spaces (write a space in a path as %20); {}",
        printable(in),
        c.value == ' ' ? std::string("a space")
                       : fmt::format("the control character 0x{:02x}", c.value),
        c.at, c.encoded ? "percent-encoded" : "raw", kExpected);
    return false;
  }
  const auto parsed = boost::urls::parse_uri(in);
  if (!parsed) {
    error = fmt::format("'{}' is not a URL ({}); {}", printable(in), parsed.error().message(),
                        kExpected);
    return false;
  }
  const auto& u = *parsed;
  if (u.scheme_id() != boost::urls::scheme::http && u.scheme_id() != boost::urls::scheme::https) {
    error = fmt::format("'{}': scheme '{}' is not supported; use http:// or https://",
                        printable(in), std::string(u.scheme()));
    return false;
  }
  out.tls = u.scheme_id() == boost::urls::scheme::https;
  if (u.host_address().empty()) {
    error = fmt::format("'{}' names no host; {}", printable(in), kExpected);
    return false;
  }
  if (u.host_type() == boost::urls::host_type::name) {
    const std::string_view host = u.encoded_host();
    if (host.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
        std::string_view::npos) {
      error = fmt::format(
          "'{}': the host '{}' is not a host name (letters, digits, '.', '-', "
          "'_'; no percent-encoding) nor an address; {}",
          printable(in), printable(host), kExpected);
      return false;
    }
  } else if (u.host_type() == boost::urls::host_type::ipvfuture) {
    error = fmt::format("'{}': the host is neither a name nor an IPv4 or IPv6 address; {}",
                        printable(in), kExpected);
    return false;
  }
  if (u.has_query() || u.has_fragment()) {
    error = fmt::format("'{}': an endpoint URL takes no query or fragment", printable(in));
    return false;
  }
  out.port = out.tls ? "443" : "80";
  if (u.has_port()) {
    const std::string_view port = u.port();  // digits only (the grammar allows nothing else)
    const bool in_range = !port.empty() && port.size() <= 5 && std::stoi(std::string(port)) >= 1 &&
                          std::stoi(std::string(port)) <= 65535;
    if (!in_range) {
      error = fmt::format("'{}': port '{}' is out of range: a port is from 1 to 65535",
                          printable(in), port);
      return false;
    }
    out.port = std::to_string(std::stoi(std::string(port)));
  }
  out.host = u.host_address();
  // The path exactly as written, percent-encoding and all: decoding it would let "%0d%0a" or
  // "%20HTTP/1.1" rewrite the request line (curl sends it as written too).
  out.base_path = u.encoded_path();
  while (!out.base_path.empty() && out.base_path.back() == '/') out.base_path.pop_back();
  const bool v6 = u.host_type() == boost::urls::host_type::ipv6;
  out.host_is_address = v6 || u.host_type() == boost::urls::host_type::ipv4;
  out.host_header = (v6 ? "[" + out.host + "]" : out.host) + ":" + out.port;
  out.authorization.clear();
  if (u.has_userinfo()) {
    out.authorization = "Basic " + base64(std::string(u.user()) + ":" + std::string(u.password()));
  }
  out.url = redact_url(in);
  while (!out.url.empty() && out.url.back() == '/') out.url.pop_back();
  return true;
}

void CancelSlot::cancel() {
  cancelled = true;
  if (waiting != nullptr) waiting->cancel();
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

HttpEndpoint::HttpEndpoint(asio::io_context& io, Executor executor, EndpointUrl url,
                           Timeouts timeouts, Limits limits, std::string api_key, const Tls& tls,
                           Headers headers, Retry retry, const std::string& proxy)
    : io_(io),
      executor_(std::move(executor)),
      url_(std::move(url)),
      timeouts_(timeouts),
      limits_(limits),
      api_key_(std::move(api_key)),
      headers_(std::move(headers)),
      retry_(retry) {
  const std::string chosen = choose_proxy(proxy, url_.tls, url_.host, url_.port,
                                          [](const char* n) { return std::getenv(n); });
  if (!chosen.empty()) {
    ProxyUrl p;
    std::string error;
    if (!parse_proxy_url(chosen, p, error)) {
      throw std::invalid_argument(fmt::format("{}: {}", url_.url, error));
    }
    proxy_ = std::move(p);
  }
  if (!url_.tls) return;
  tls_context_ = make_tls_context(tls, url_.url);
  if (tls.insecure) {
    fmt::print(stderr,
               "warning: {}: TLS verification is off (insecure): the server's certificate and "
               "name are not checked\n",
               url_.url);
  }
}

HttpEndpoint::~HttpEndpoint() {
  idle_.clear();  // their TLS streams refer to the context
  if (tls_session_ != nullptr) SSL_SESSION_free(tls_session_);
}

// The TLS handshake on a connected socket, bounded by the connect timeout: SNI, the host name
// (or address) the certificate must carry, the last session offered for resumption.
asio::awaitable<bool> HttpEndpoint::handshake(Connection& conn, CancelSlot& cancel,
                                              HttpResult& result) {
  try {
    conn.tls = std::make_unique<TlsStream>(conn.stream.socket(), tls_context_->native_handle());
  } catch (const std::exception& e) {
    result.error = {ErrorKind::connect, describe(e.what())};
    co_return false;
  }
  SSL* native = conn.tls->native_handle();
  if (url_.host_is_address) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(native), url_.host.c_str());
  } else {
    SSL_set_tlsext_host_name(native, url_.host.c_str());
    SSL_set1_host(native, url_.host.c_str());
  }
  if (tls_session_ != nullptr) SSL_set_session(native, tls_session_);
  // The TLS stream waits on the socket itself, so the deadline is a watchdog's, as in attempt().
  auto wd = std::make_shared<Watchdog>(executor_, &conn);
  if (timeouts_.connect_ms > 0) {
    wd->set(Phase{Clock::now() + std::chrono::milliseconds(timeouts_.connect_ms), "connect"});
  }
  cancel.active = &conn;
  auto [ec] = co_await conn.tls->async_handshake(use_tuple);
  cancel.active = nullptr;
  wd->stop();
  if (!ec) co_return true;
  const long verify = SSL_get_verify_result(native);
  std::string why;
  if (cancel.cancelled) {
    result.error = {ErrorKind::cancelled, describe("cancelled during the TLS handshake")};
    co_return false;
  }
  if (wd->fired) {
    why = fmt::format("the TLS handshake timed out after {} ms", timeouts_.connect_ms);
  } else if (verify != X509_V_OK) {
    why = fmt::format(
        "TLS certificate verification failed: {}; give the server's CA with --ca-file "
        "(ca_file), or --insecure (insecure = true) to skip verification",
        X509_verify_cert_error_string(verify));
  } else {
    why = fmt::format("the TLS handshake failed: {}; does the server speak https here?",
                      ec.message());
  }
  result.error = {ErrorKind::connect, describe(why.c_str())};
  co_return false;
}

std::string HttpEndpoint::via() const {
  return proxy_ ? fmt::format(" through the proxy {}", proxy_->url) : std::string();
}

// CONNECT host:port through the proxy, so that TLS runs end to end through the tunnel.
asio::awaitable<bool> HttpEndpoint::tunnel(Connection& conn, CancelSlot& cancel,
                                           HttpResult& result) {
  bhttp::request<bhttp::empty_body> req{bhttp::verb::connect, url_.host_header, 11};
  req.set(bhttp::field::host, url_.host_header);
  if (!proxy_->authorization.empty()) {
    req.set(bhttp::field::proxy_authorization, proxy_->authorization);
  }
  cancel.active = &conn;
  auto [ec, written] = co_await bhttp::async_write(conn.stream, req, use_tuple);
  bhttp::response_parser<bhttp::empty_body> parser;
  parser.skip(true);  // the answer to a CONNECT has no body: the tunnel follows it
  if (!ec) {
    auto [rec, read] =
        co_await bhttp::async_read_header(conn.stream, conn.buffer, parser, use_tuple);
    ec = rec;
  }
  cancel.active = nullptr;
  std::string why;
  if (cancel.cancelled) {
    result.error = {ErrorKind::cancelled, describe("cancelled while opening the proxy tunnel")};
    co_return false;
  }
  if (ec) {
    why = fmt::format("the proxy {} did not open a tunnel (CONNECT {}): {}", proxy_->url,
                      url_.host_header, ec.message());
  } else if (const unsigned status = parser.get().result_int(); status / 100 != 2) {
    why = fmt::format("the proxy {} refused the tunnel (CONNECT {}): HTTP {} {}{}", proxy_->url,
                      url_.host_header, status, std::string(parser.get().reason()),
                      status == 407 ? "; give the proxy's user and password in its URL "
                                      "(http://user:password@host:port)"
                                    : "");
  } else if (conn.buffer.size() != 0) {
    why = fmt::format("the proxy {} sent bytes after accepting the tunnel", proxy_->url);
  }
  if (why.empty()) co_return true;
  result.error = {ErrorKind::connect, describe(why.c_str())};
  co_return false;
}

// Keeps the connection's session for the next new connection to resume (TLS 1.3 sends its
// tickets after the handshake, so this runs after a response).
void HttpEndpoint::keep_session(Connection& conn) {
  SSL_SESSION* session = SSL_get0_session(conn.tls->native_handle());
  if (session == nullptr || session == tls_session_ || SSL_SESSION_is_resumable(session) == 0) {
    return;
  }
  if (tls_session_ != nullptr) SSL_SESSION_free(tls_session_);
  SSL_SESSION_up_ref(session);
  tls_session_ = session;
}

std::string HttpEndpoint::describe(const char* what) const {
  if (!url_.connect_to.empty()) return fmt::format("{} ({}): {}", url_.url, url_.connect_to, what);
  return fmt::format("{}: {}", url_.url, what);
}

void HttpEndpoint::drop_expired(Clock::time_point now) {
  if (limits_.idle_expiry_ms <= 0 || idle_.empty()) return;
  const auto expiry = std::chrono::milliseconds(limits_.idle_expiry_ms);
  std::size_t n = 0;
  while (n < idle_.size() && now - idle_[n]->idle_since > expiry) ++n;
  idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(n));
}

std::unique_ptr<Connection> HttpEndpoint::take_idle() {
  if (!idle_.empty()) drop_expired(Clock::now());
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

// The idle set is in the order the connections came back: the newest is reused first, the
// oldest expire first.
void HttpEndpoint::give_back(std::unique_ptr<Connection> conn) {
  conn->idle_since = Clock::now();
  drop_expired(conn->idle_since);
  if (idle_.size() >= limits_.max_idle_connections) return;  // closes it
  idle_.push_back(std::move(conn));
}

asio::awaitable<std::unique_ptr<Connection>> HttpEndpoint::connect(CancelSlot& cancel,
                                                                   HttpResult& result) {
  auto conn = std::make_unique<Connection>(executor_);
  const std::string& host =
      proxy_ ? proxy_->host : (url_.connect_to.empty() ? url_.host : url_.connect_to);
  const std::string& port = proxy_ ? proxy_->port : url_.port;
  // An address given as such (127.0.0.1, ::1) needs no lookup. Asio's resolver runs getaddrinfo
  // on a thread of its own, started on first use: a thread, two hand-offs between threads and
  // the reading of /etc/nsswitch.conf and /etc/hosts for every connection, all before the first
  // request byte (as hyper does, a literal address skips the resolver).
  std::vector<tcp::endpoint> endpoints;
  {
    beast::error_code aec;
    const auto address = asio::ip::make_address(host, aec);
    unsigned port_number = 0;
    const auto [end, pec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
    if (!aec && pec == std::errc() && end == port.data() + port.size() && port_number <= 65535) {
      endpoints.emplace_back(address, static_cast<unsigned short>(port_number));
    }
  }
  if (endpoints.empty()) {
    tcp::resolver resolver(executor_);
    auto [rec, found] = co_await resolver.async_resolve(host, port, use_tuple);
    if (rec) {
      result.error = {
          ErrorKind::connect,
          describe(
              fmt::format("cannot resolve host '{}'{}: {}", host, via(), rec.message()).c_str())};
      co_return nullptr;
    }
    for (const auto& entry : found) endpoints.push_back(entry.endpoint());
  }
  if (cancel.cancelled) {
    result.error = {ErrorKind::cancelled, describe("cancelled")};
    co_return nullptr;
  }
  // The socket is opened here, not inside async_connect, so that running out of descriptors
  // (EMFILE with thousands of agents) is reported as such, with the limit and what to do. It is
  // made non-blocking now, once: write_request writes without waiting, and Asio's own
  // operations then find it so.
  {
    beast::error_code oec;
    conn->stream.socket().open(endpoints.front().protocol(), oec);
    if (!oec) conn->stream.socket().non_blocking(true, oec);
    if (oec) {
      result.error = {ErrorKind::connect,
                      describe(fmt::format("cannot open a socket: {}",
                                           oec.category() == boost::system::system_category()
                                               ? describe_errno(oec.value())
                                               : oec.message())
                                   .c_str())};
      co_return nullptr;
    }
  }
  if (timeouts_.connect_ms > 0) {
    conn->stream.expires_after(std::chrono::milliseconds(timeouts_.connect_ms));
  }
  cancel.active = conn.get();
  // One address (the usual case: a literal one, or a name with one address) is connected on
  // the socket opened above; the overload for several closes and reopens it before each try,
  // a socket, an epoll registration and a close more per connection.
  beast::error_code cec;
  if (endpoints.size() == 1) {
    auto [e] = co_await conn->stream.async_connect(endpoints.front(), use_tuple);
    cec = e;
  } else {
    auto [e, ep] = co_await conn->stream.async_connect(endpoints, use_tuple);
    cec = e;
  }
  cancel.active = nullptr;
  if (cec) {
    if (cancel.cancelled) {
      result.error = {ErrorKind::cancelled, describe("cancelled while connecting")};
    } else if (cec == beast::error::timeout) {
      result.error = {ErrorKind::connect,
                      describe(fmt::format("connect timed out after {} ms; is the server up?",
                                           timeouts_.connect_ms)
                                   .c_str())};
    } else if (cec == asio::error::no_descriptors || cec == asio::error::no_memory ||
               cec == asio::error::no_buffer_space) {
      result.error = {
          ErrorKind::connect,
          describe(fmt::format("cannot connect: {}", describe_errno(cec.value())).c_str())};
    } else {
      result.error = {ErrorKind::connect,
                      describe(fmt::format("cannot connect{}: {}; is the {} running?", via(),
                                           cec.message(), proxy_ ? "proxy" : "server")
                                   .c_str())};
      result.transient =
          cec == asio::error::connection_refused || cec == asio::error::connection_reset;
    }
    co_return nullptr;
  }
  beast::error_code ec;
  conn->stream.socket().set_option(tcp::no_delay(true), ec);  // tokens are tiny writes
  if (proxy_ && url_.tls && !co_await tunnel(*conn, cancel, result)) co_return nullptr;
  if (url_.tls && !co_await handshake(*conn, cancel, result)) co_return nullptr;
  ++opened_;
  co_return conn;
}

void HttpEndpoint::redact(std::string& text) const {
  auto hide = [&text](const std::string& secret) {
    if (secret.size() < 4) return;  // too short to tell from ordinary text
    for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
      text.replace(at, secret.size(), "***");
    }
  };
  hide(api_key_);
  for (const auto& header : headers_) hide(header.second);
}

asio::awaitable<HttpResult> HttpEndpoint::send(const HttpRequest& request, HttpCallbacks& callbacks,
                                               CancelSlot& cancel) {
  const auto first_try = Clock::now();
  HttpResult result = co_await send_once(request, callbacks, cancel);
  for (int tries = 1;; ++tries) {
    result.attempts = tries;
    const auto delay = retry_wait(result, callbacks, first_try);
    if (!delay || cancel.cancelled || !co_await wait(*delay, cancel)) break;
    result = co_await send_once(request, callbacks, cancel);
  }
  redact(result.error_body);
  co_return result;
}

std::optional<Clock::duration> HttpEndpoint::retry_wait(const HttpResult& result,
                                                        HttpCallbacks& callbacks,
                                                        Clock::time_point first_try) {
  const bool worth_it = result.transient || result.status == 429 || result.status == 503;
  if (!worth_it || result.delivered || result.attempts >= retry_.attempts) return std::nullopt;
  int64_t ms = retry_after_ms(result.retry_after);
  if (ms < 0) {
    const int shift = std::min(result.attempts - 1, 20);
    const int64_t backoff = std::min(retry_.max_delay_ms, retry_.base_delay_ms << shift);
    thread_local std::minstd_rand jitter(std::random_device{}());
    ms = backoff - static_cast<int64_t>(jitter() % static_cast<uint64_t>(backoff / 2 + 1));
  }
  const auto wake = Clock::now() + std::chrono::milliseconds(ms);
  if (wake > first_try + std::chrono::milliseconds(retry_.budget_ms)) return std::nullopt;
  if (callbacks.next_phase && wake >= callbacks.next_phase().deadline) return std::nullopt;
  return wake - Clock::now();
}

asio::awaitable<bool> HttpEndpoint::wait(Clock::duration delay, CancelSlot& cancel) {
  asio::steady_timer timer(executor_);
  timer.expires_after(delay);
  cancel.waiting = &timer;
  co_await timer.async_wait(use_tuple);
  cancel.waiting = nullptr;
  co_return !cancel.cancelled;
}

asio::awaitable<HttpResult> HttpEndpoint::send_once(const HttpRequest& request,
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

// The request's head as it goes on the wire (RFC 9112): one string, built in one pass. Beast's
// message and serializer cost an allocation per field and a buffer sequence of a dozen parts
// per request, on the path of every first token. The extra headers (validated when the
// endpoint is configured: no Host, Content-Length, Transfer-Encoding or Connection, no control
// characters) replace the client's own of the same name; of two with one name, the last is sent.
std::string HttpEndpoint::request_head(const HttpRequest& request) const {
  const auto custom = [this](std::string_view name) {
    return std::any_of(headers_.begin(), headers_.end(),
                       [name](const auto& h) { return beast::iequals(h.first, name); });
  };
  std::string h;
  h.reserve(256 + url_.base_path.size() + request.path.size());
  const auto field = [&h](std::string_view name, std::string_view value) {
    h.append(name).append(": ").append(value).append("\r\n");
  };
  h.append(bhttp::to_string(request.method)).push_back(' ');
  // The target is the endpoint's path as written (percent-encoding kept) and our own path.
  // Through a proxy, plain HTTP asks for the absolute URL (RFC 9112, 3.2.2).
  const bool absolute = proxy_ && !url_.tls;
  if (absolute) h.append("http://").append(url_.host_header);
  h.append(url_.base_path).append(request.path).append(" HTTP/1.1\r\n");
  field("Host", url_.host_header);
  if (absolute && !proxy_->authorization.empty() && !custom("Proxy-Authorization")) {
    field("Proxy-Authorization", proxy_->authorization);
  }
  if (!custom("User-Agent")) field("User-Agent", "chimeraforge/" CHIMERA_VERSION_STRING);
  const bool has_body = !request.body.empty() || request.method == bhttp::verb::post ||
                        request.method == bhttp::verb::put || request.method == bhttp::verb::patch;
  if (has_body && !custom("Content-Type")) field("Content-Type", request.content_type);
  if (!request.accept.empty() && !custom("Accept")) field("Accept", request.accept);
  for (std::size_t i = 0; i < headers_.size(); ++i) {
    // (Not a structured binding: a lambda may not capture one before C++20's P1091, which
    // clang-tidy's clang 14 lacks.)
    const std::string& name = headers_[i].first;
    const bool later =
        std::any_of(headers_.begin() + static_cast<std::ptrdiff_t>(i) + 1, headers_.end(),
                    [&](const auto& o) { return beast::iequals(o.first, name); });
    if (later || (!api_key_.empty() && beast::iequals(name, "Authorization"))) continue;
    field(name, headers_[i].second);
  }
  if (!api_key_.empty()) {
    h.append("Authorization: Bearer ").append(api_key_).append("\r\n");
  } else if (!url_.authorization.empty() && !custom("Authorization")) {
    field("Authorization", url_.authorization);
  }
  if (has_body) h.append(fmt::format("Content-Length: {}\r\n", request.body.size()));
  h.append("\r\n");
  return h;
}

// Sends the head and the body. Over plain TCP the socket nearly always takes a request whole at
// once: written here, it costs one sendmsg and no trip through the event loop (an asynchronous
// write posts its completion even when it needed no wait), and no deadline timer is armed
// before it (a timerfd update before the request leaves). What the socket does not take at
// once, and everything over TLS, goes out asynchronously under `phase`'s deadline.
asio::awaitable<beast::error_code> HttpEndpoint::write_request(Connection& conn,
                                                               std::string_view head,
                                                               std::string_view body, Watchdog& wd,
                                                               const Phase& phase) {
  const std::array<asio::const_buffer, 2> wire{asio::buffer(head.data(), head.size()),
                                               asio::buffer(body.data(), body.size())};
  const std::size_t total = head.size() + body.size();
  std::size_t sent = 0;
  beast::error_code ec;
  if (!conn.tls) {
    auto& sock = conn.stream.socket();
    if (!sock.non_blocking()) sock.non_blocking(true, ec);
    while (!ec && sent < total) {
      beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(wire);
      rest.consume(sent);
      sent += sock.write_some(rest, ec);
    }
    if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
    if (ec || sent == total) co_return ec;
  }
  beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(wire);
  rest.consume(sent);
  wd.set(phase);
  auto [wec, n] = co_await on_stream(
      conn, [&](auto& stream) { return asio::async_write(stream, rest, use_tuple); });
  co_return wec;
}

asio::awaitable<HttpEndpoint::Attempt> HttpEndpoint::attempt(const HttpRequest& request,
                                                             HttpCallbacks& callbacks,
                                                             CancelSlot& cancel,
                                                             std::unique_ptr<Connection> conn,
                                                             bool reused, HttpResult& result) {
  result.reused = reused;
  const bool may_retry = reused && !result.retried;

  const std::string head = request_head(request);

  // Deadlines: one timer for the whole attempt, armed lazily. A deadline that moves later (the
  // idle deadline moves with every read) leaves the timer alone; when it fires it looks at the
  // current deadline and sleeps again if that is still ahead. Arming the stream's own timer on
  // every read instead cost a timer insert, a cancel and an aborted completion per token.
  conn->stream.expires_never();
  auto wd = std::make_shared<Watchdog>(executor_, conn.get());
  struct Disarm {
    std::shared_ptr<Watchdog> wd;
    ~Disarm() { wd->stop(); }
  } disarm{wd};
  auto set_deadline = [&](const Phase& ph) { wd->set(ph); };
  auto fail = [&](ErrorKind kind, const std::string& what) {
    result.error = {kind, describe(what.c_str())};
  };
  auto fail_io = [&](const beast::error_code& ec, const Phase& ph, const char* doing) {
    if (cancel.cancelled) {
      fail(ErrorKind::cancelled, "cancelled");
    } else if (wd->fired || ec == beast::error::timeout) {
      const Phase& p = wd->fired ? wd->phase : ph;
      fail(ErrorKind::timeout,
           p.explain != nullptr ? fmt::format("{} while {}", p.explain(p.explain_arg), doing)
           : p.why != nullptr   ? fmt::format("{} while {}", p.why, doing)
                                : fmt::format("{} timeout ran out while {}", p.what, doing));
    } else if (ec == bhttp::error::body_limit) {
      fail(ErrorKind::protocol,
           fmt::format("the response body exceeds the limit of {} bytes", limits_.max_body_bytes));
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
  const beast::error_code wec = co_await write_request(*conn, head, request.body, *wd, phase);
  if (wec) {
    cancel.active = nullptr;
    if (may_retry && !cancel.cancelled && is_disconnect(wec)) co_return Attempt::retry;
    fail_io(wec, phase, "sending the request");
    co_return Attempt::done;
  }
  warm_response_path();
  if (callbacks.on_sent) callbacks.on_sent();

  // Interim responses (1xx) come before the final one and are skipped (RFC 9110, 15.2: a
  // client must accept them even when it did not ask for them); a parser reads one message, so
  // each gets a fresh one. 101 (Switching Protocols) would end HTTP on this connection.
  std::optional<bhttp::response_parser<bhttp::buffer_body>> parser_holder;
  constexpr int kMaxInterim = 16;
  for (int interim = 0;; ++interim) {
    parser_holder.emplace();
    parser_holder->body_limit(limits_.max_body_bytes);
    parser_holder->header_limit(64 * 1024);
    phase = callbacks.next_phase ? callbacks.next_phase() : Phase{};
    set_deadline(phase);
    beast::error_code hec;
    if (conn->tls) {
      hec = co_await read_response(*conn->tls, conn->buffer, *parser_holder, ReadUntil::head);
    } else {
      hec = co_await read_response(conn->stream.socket(), conn->buffer, *parser_holder,
                                   ReadUntil::head);
    }
    if (hec) {
      cancel.active = nullptr;
      if (may_retry && !cancel.cancelled && interim == 0 && !parser_holder->got_some() &&
          is_disconnect(hec)) {
        co_return Attempt::retry;
      }
      result.transient = hec == asio::error::connection_reset && !parser_holder->got_some();
      fail_io(hec, phase, "waiting for the response");
      co_return Attempt::done;
    }
    const unsigned code = parser_holder->get().result_int();
    if (code / 100 != 1) break;
    if (code == 101 || interim + 1 >= kMaxInterim) {
      cancel.active = nullptr;
      conn->stream.close();
      fail(ErrorKind::protocol,
           code == 101
               ? std::string("the server switched protocols (HTTP 101) on a request that "
                             "did not ask for it")
               : fmt::format("the server sent more than {} interim (1xx) responses", kMaxInterim));
      co_return Attempt::done;
    }
  }
  auto& parser = *parser_holder;
  result.status = static_cast<int>(parser.get().result_int());
  result.content_type = std::string(parser.get()[bhttp::field::content_type]);
  result.content_encoding = std::string(parser.get()[bhttp::field::content_encoding]);
  const bool success = result.status / 100 == 2;
  if (!success) result.retry_after = std::string(parser.get()[bhttp::field::retry_after]);
  if (success) {
    // We send no Accept-Encoding, so a compressed body is the server's (or a proxy's) mistake;
    // decoding it as text would only yield a confusing JSON error.
    std::string why;
    if (!result.content_encoding.empty() &&
        !boost::beast::iequals(result.content_encoding, "identity")) {
      why = fmt::format(
          "the server sent a compressed body (Content-Encoding: {}), which this "
          "client does not decode and did not ask for; turn compression off for "
          "this path (a proxy in front of the server may add it)",
          result.content_encoding);
    } else if (callbacks.check_headers) {
      why = callbacks.check_headers(result.content_type);
    }
    if (!why.empty()) {
      cancel.active = nullptr;
      conn->stream.close();
      fail(ErrorKind::protocol, why);
      co_return Attempt::done;
    }
  }

  // Small: one lives in every request in flight (thousands at once); a token chunk is ~100 bytes.
  // A read of more than this (the read buffer grows to kMaxReadBuffer) is handed over in
  // several on_body calls, each its own burst.
  std::array<char, 4 * 1024> chunk{};
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    phase = callbacks.next_phase ? callbacks.next_phase() : Phase{};
    set_deadline(phase);
    // What has arrived, not a full body buffer (http::async_read returns only when the body
    // buffer is full, which turns a token stream into 16 KiB bursts; measured: every token of
    // a short reply arrived at the end). All the records one socket read brought come in one
    // call, and one on_body: a server that read several tokens at once (a loaded upstream
    // writes in bursts) decodes them in one pass and passes them on in one write.
    // (Each co_await is its own statement: GCC 12 miscompiles some co_await operands of
    // conditions.)
    beast::error_code rec;
    if (conn->tls) {
      rec = co_await read_response(*conn->tls, conn->buffer, parser, ReadUntil::available);
    } else {
      rec =
          co_await read_response(conn->stream.socket(), conn->buffer, parser, ReadUntil::available);
    }
    if (rec == bhttp::error::need_buffer) rec = {};
    const std::size_t got = chunk.size() - parser.get().body().size;
    if (got > 0 && !cancel.cancelled) {
      const std::string_view bytes(chunk.data(), got);
      if (success) {
        result.delivered = true;
        if (callbacks.on_body && !callbacks.on_body(bytes, !rec && parser.is_done())) {
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
  if (conn->tls) keep_session(*conn);
  if (parser.keep_alive()) give_back(std::move(conn));
  co_return Attempt::done;
}

asio::awaitable<HttpResult> HttpEndpoint::fetch(const HttpRequest& request, std::string& body,
                                                int64_t timeout_ms, CancelSlot& cancel) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  HttpCallbacks cb;
  cb.next_phase = [deadline] { return Phase{deadline, "request"}; };
  cb.on_body = [&body, this](std::string_view bytes, bool /*last*/) {
    body.append(bytes);
    return body.size() <= limits_.max_record_bytes * 8;
  };
  // No retries: a health check or a model list reports the endpoint as it is now.
  HttpResult r = co_await send_once(request, cb, cancel);
  redact(r.error_body);
  if (r.stopped && !r.error) {
    r.error = {ErrorKind::protocol, describe("response too large")};
  }
  co_return r;
}

}  // namespace chimera::http

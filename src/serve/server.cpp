// serve's transport: an Asio accept loop, one coroutine per connection, Beast's request parser,
// and responses written as raw bytes (a stream's head goes out with its first token, so that an
// upstream failure before it is still an HTTP error).
//
// A generation request is an Exchange shared by the connection's coroutine and the backend's
// callbacks (which run on the backend's Runtime threads): a callback encodes its record into the
// exchange's pending bytes under its mutex and wakes the coroutine through a one-slot channel;
// the coroutine writes whatever is pending. Nothing is held back: each record is written as soon
// as the coroutine runs after it arrived. (A timer cancelled from a posted handler served as the
// wake-up first and lost about one in ten, with data pending: the channel keeps the signal.)
//
// When the callback runs on the connection's own thread (one I/O thread, the pools on the same
// event loop: `chimeraforge serve`'s default) while the coroutine waits with nothing left to
// write, the callback writes its record to the socket itself: the token goes out from the
// upstream read's completion, with no trip through the event loop in between. Only a write the
// socket does not take whole, a failed one, and the end of the response wake the coroutine.
#include "core/runtime_impl.hpp"
#include "http/listener.hpp"
#include "serve/keys.hpp"
#include "serve/metrics.hpp"
#include "serve/protocol.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/pool/pool.hpp>
#include <chimera/serve/server.hpp>
#include <chimera/version.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace chimera::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr std::uint32_t kHeaderLimit = 64 * 1024;
using Signal = asio::experimental::concurrent_channel<void(boost::system::error_code)>;
using TlsStream = asio::ssl::stream<beast::tcp_stream&>;
constexpr int kBacklog = 4096;

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

// Gives a key's request back to its limits when it goes out of scope.
struct KeyRelease {
  KeyLimits& limits;
  int index;
  ~KeyRelease() { limits.release(index); }
};

// GET /v1/models/{id}: a model's name after the prefix.
bool is_model_route(std::string_view path) {
  return path.starts_with("/v1/models/") && path.size() > 11;
}

bool is_get_route(std::string_view path) {
  return path == "/" || path == "/health" || path == "/v1/models" || path == "/api/tags" ||
         path == "/api/ps" || path == "/api/version" || path == "/metrics";
}

// (Bodies are made outside the coroutines: GCC 12 rejects JSON initializer lists of string
// literals in a coroutine's frame.)
std::string version_body() {
  return json::serialize(json::object{{"version", CHIMERA_VERSION_STRING}});
}

std::string models_body(const std::vector<Route>& routes) {
  json::array data;
  for (const auto& r : routes) {
    data.push_back(json::object{
        {"id", r.name}, {"object", "model"}, {"created", 0}, {"owned_by", "chimeraforge"}});
  }
  return json::serialize(json::object{{"object", "list"}, {"data", std::move(data)}});
}

// A parameter count as Ollama writes it in /api/show's details ("8.6M", "1.2B").
std::string parameter_size(uint64_t n) {
  const auto d = static_cast<double>(n);
  if (n >= 1'000'000'000) return fmt::format("{:.1f}B", d / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.1f}M", d / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f}K", d / 1e3);
  return std::to_string(n);
}

// A model's details as Ollama lists them (/api/tags, /api/show): what an in-process pool's GGUF
// file says; empty for a pool in front of other servers, which serve does not ask.
json::object model_details(const std::optional<ModelFacts>& facts) {
  json::object details{{"parent_model", ""},   {"format", ""},
                       {"family", ""},         {"families", json::array{}},
                       {"parameter_size", ""}, {"quantization_level", ""}};
  if (facts) {
    details["format"] = "gguf";
    details["family"] = facts->architecture;
    details["families"] = json::array{json::value(facts->architecture)};
    details["parameter_size"] = parameter_size(facts->parameters);
    details["quantization_level"] = facts->file_type;
  }
  return details;
}

std::string tags_body(const std::vector<Route>& routes) {
  json::array models;
  for (const auto& r : routes) {
    const auto facts = r.pool->model_facts();
    models.push_back(json::object{{"name", r.name},
                                  {"model", r.name},
                                  {"modified_at", "1970-01-01T00:00:00Z"},
                                  {"size", facts ? facts->file_bytes : 0},
                                  {"digest", ""},
                                  {"details", model_details(facts)}});
  }
  return json::serialize(json::object{{"models", std::move(models)}});
}

// Ollama's GET /api/ps, the models loaded in memory: the in-process pools' (loaded at start, for
// as long as serve runs); pools in front of other servers are not listed (their servers load and
// unload models themselves).
std::string ps_body(const std::vector<Route>& routes) {
  json::array models;
  for (const auto& r : routes) {
    const auto facts = r.pool->model_facts();
    if (!facts) continue;
    models.push_back(json::object{{"name", r.name},
                                  {"model", r.name},
                                  {"size", facts->file_bytes},
                                  {"digest", ""},
                                  {"details", model_details(facts)},
                                  {"expires_at", "9999-12-31T23:59:59Z"},
                                  {"size_vram", 0}});
  }
  return json::serialize(json::object{{"models", std::move(models)}});
}

// OpenAI's model object (GET /v1/models/{id}): any name reaches a pool (the first, when no pool
// has that name), so every name is a model here, as a request naming it would find.
std::string model_body(std::string_view id) {
  return json::serialize(
      json::object{{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "chimeraforge"}});
}

// Ollama's POST /api/show for the pool a name reaches. An in-process pool answers from its GGUF
// file (architecture, sizes, the context trained for; `num_ctx` in parameters is the context
// each sequence gets here); a pool in front of other servers knows no more than the name.
std::string show_body(const Route& route) {
  const auto facts = route.pool->model_facts();
  json::object details = model_details(facts);
  json::object info;
  json::array capabilities{"completion"};
  std::string parameters;
  if (facts) {
    const auto& f = *facts;
    info["general.architecture"] = f.architecture;
    if (!f.name.empty()) info["general.name"] = f.name;
    info["general.parameter_count"] = f.parameters;
    if (!f.architecture.empty()) {
      const std::string& a = f.architecture;
      info[a + ".context_length"] = f.context_length;
      info[a + ".embedding_length"] = f.embedding_length;
      info[a + ".block_count"] = f.block_count;
      info[a + ".attention.head_count"] = f.head_count;
      if (f.head_count_kv > 0) info[a + ".attention.head_count_kv"] = f.head_count_kv;
    }
    parameters = fmt::format("num_ctx {}", f.context_served);
    if (f.tool_calls) capabilities.emplace_back("tools");
    if (f.thinking) capabilities.emplace_back("thinking");
  }
  return json::serialize(json::object{{"modelfile", ""},
                                      {"parameters", parameters},
                                      {"template", ""},
                                      {"details", std::move(details)},
                                      {"model_info", std::move(info)},
                                      {"capabilities", std::move(capabilities)},
                                      {"modified_at", "1970-01-01T00:00:00Z"}});
}

// The model an /api/show body names ("model", or the older "name"); "" when it names none, with
// `error` saying why.
std::string show_request_model(std::string_view body, std::string& error) {
  boost::system::error_code ec;
  const json::value v = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec || !v.is_object()) {
    error = "the body is not a JSON object";
    return {};
  }
  for (const char* key : {"model", "name"}) {
    if (const auto* m = v.as_object().if_contains(key)) {
      if (!m->is_string() || m->as_string().empty()) {
        error = fmt::format("'{}' must be a non-empty string", key);
        return {};
      }
      return std::string(m->as_string());
    }
  }
  error = "'model' is required: the model to show";
  return {};
}

// Whether a request's client waits for "100 Continue" before it sends its body (RFC 9110,
// 10.1.1): HTTP/1.1, "Expect: 100-continue", and none of the body arrived yet.
bool waits_for_continue(const bhttp::request<bhttp::string_body>& req) {
  return req.version() >= 11 && beast::iequals(req[bhttp::field::expect], "100-continue") &&
         req.body().empty();
}

// One record, in a chunk of its own when the body is chunked. (On every token's path: the size
// line is written in place, not formatted into a string of its own.)
void append_chunk(std::string& out, std::string_view record, bool chunked) {
  if (record.empty()) return;
  if (chunked) {
    char size[2 * sizeof(std::size_t)];
    const auto end = std::to_chars(size, size + sizeof size, record.size(), 16).ptr;
    out.append(size, end);
    out += "\r\n";
  }
  out += record;
  if (chunked) out += "\r\n";
}

// Whether the caller runs on `ex`: on its io_context's thread, or inside its strand.
bool running_on(const asio::any_io_executor& ex) {
  if (const auto* e = ex.target<asio::io_context::executor_type>()) {
    return e->running_in_this_thread();
  }
  if (const auto* st = ex.target<asio::strand<asio::io_context::executor_type>>()) {
    return st->running_in_this_thread();
  }
  return false;
}

struct Exchange;

// Writes an exchange's pending bytes from a backend callback while the connection's coroutine
// is parked (see Exchange::parked); the Connection implements it.
class DirectWriter {
 public:
  virtual void write_parked(Exchange& x) = 0;

 protected:
  ~DirectWriter() = default;
};

// One generation request, shared by the connection's coroutine and the backend's callbacks.
// It keeps the io_context alive (declared first, destroyed last): the backend may drop its
// callbacks, and with them the last reference, after the server has stopped.
struct Exchange {
  Exchange(std::shared_ptr<asio::io_context> io_, const asio::any_io_executor& ex, Encoder e,
           bool stream_, bool chunked_, bool reusable_)
      : io(std::move(io_)),
        executor(ex),
        wake(ex, 1),
        enc(std::move(e)),
        reusable(reusable_),
        stream(stream_),
        chunked(chunked_) {}

  // Wakes the coroutine (from any thread). The channel holds one signal, so a wake-up sent while
  // the coroutine is busy writing is not lost: its next wait returns at once.
  void notify() { wake.try_send(boost::system::error_code{}); }

  // After a callback added to `pending` (under mu): writes it at once when the coroutine is
  // parked and this is its thread, else wakes the coroutine to write it.
  void flush_or_notify() {
    if (parked != nullptr && running_on(executor)) {
      parked->write_parked(*this);  // wakes the coroutine itself when it must
      return;
    }
    notify();
  }

  std::shared_ptr<asio::io_context> io;
  asio::any_io_executor executor;  // the connection's
  Signal wake;
  std::mutex mu;
  Encoder enc;             // under mu
  std::string pending;     // framed bytes not yet written; under mu
  std::string rec;         // scratch; under mu
  bool started = false;    // records were encoded: the head goes out (under mu)
  bool head_sent = false;  // under mu
  bool reusable;           // the connection stays open after it (under mu)
  bool done = false;       // under mu
  // The connection, while its coroutine waits for the channel with nothing left to write (its
  // sockets's writes are then free to a callback on its thread); under mu.
  DirectWriter* parked = nullptr;
  Completion completion;                  // once done
  std::shared_ptr<RequestHandle> handle;  // under mu
  std::atomic<bool> client_gone{false};
  const bool stream;
  const bool chunked;
  bool watching = false;  // the disconnect watcher is armed (connection's executor only)
};

}  // namespace

struct Server::Impl {
  Impl(Options o, std::vector<Route> r)
      : opt(std::move(o)), routes(std::move(r)), limits(opt.keys) {}

  Options opt;
  std::vector<Route> routes;
  KeyLimits limits;
  Metrics metrics;
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> cancelled{0};

  // Connections by descriptor, with whether each is busy with a request (graceful shutdown closes
  // the idle ones at once and waits for the busy ones).
  std::mutex conns_mu;
  std::condition_variable conns_cv;
  std::unordered_map<int, bool> conns;
  int busy = 0;
  bool draining = false;
  // Upstream requests in flight (their callbacks may still post to the io_context).
  std::unordered_set<std::shared_ptr<Exchange>> exchanges;  // under conns_mu
  int64_t streams_active = 0;                               // under conns_mu

  std::mutex life_mu;
  bool running = false;
  bool stopped = false;
  int port = 0;
  std::shared_ptr<asio::io_context> io;  // its own event loop (null on a Runtime's)
  asio::io_context* ioc = nullptr;       // the loop it serves on
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<asio::ssl::context> tls;  // with Options::tls_cert
  bool accepting = false;                   // the accept loop runs (under conns_mu)
  std::vector<std::thread> threads;

  asio::any_io_executor connection_executor() {
    // One thread needs no strand; with several, a strand keeps each connection on one at a time.
    const int n = opt.runtime != nullptr ? opt.runtime->threads() : opt.threads;
    if (n > 1) return asio::make_strand(*ioc);
    return ioc->get_executor();
  }

  const Route& route_for(const std::string& model) const {
    for (const auto& r : routes) {
      if (r.name == model) return r;
    }
    return routes.front();
  }

  // Marks a connection idle (false: the server is draining; close it) or busy.
  bool set_busy(int fd, bool is_busy) {
    std::lock_guard lock(conns_mu);
    auto it = conns.find(fd);
    if (it == conns.end()) return false;
    if (it->second != is_busy) {
      busy += is_busy ? 1 : -1;
      it->second = is_busy;
    }
    conns_cv.notify_all();
    return is_busy || !draining;
  }

  asio::awaitable<void> accept_loop();
};

namespace {

void cancel(const std::shared_ptr<Exchange>& x) {
  std::shared_ptr<RequestHandle> h;
  {
    std::lock_guard lock(x->mu);
    h = x->handle;
  }
  if (h) h->cancel();
}

class Connection final : public DirectWriter {
 public:
  Connection(Server::Impl& s, tcp::socket sock)
      : s_(s), stream_(std::move(sock)), fd_(stream_.socket().native_handle()) {
    if (s_.tls) tls_ = std::make_unique<TlsStream>(stream_, *s_.tls);
    std::lock_guard lock(s_.conns_mu);
    s_.conns.emplace(fd_, false);
  }
  ~Connection() {
    {
      std::lock_guard lock(s_.conns_mu);
      auto it = s_.conns.find(fd_);
      if (it != s_.conns.end()) {
        if (it->second) --s_.busy;
        s_.conns.erase(it);
      }
      s_.conns_cv.notify_all();
    }
    beast::error_code ec;
    stream_.socket().close(ec);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  asio::awaitable<void> run() {
    // (Each co_await is its own statement: GCC 12 miscompiles some co_await operands of
    // conditions.)
    if (tls_) {
      stream_.expires_after(client_timeout());
      auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::server, use_tuple);
      stream_.expires_never();
      if (ec) co_return;  // not a TLS client, or it gave up: nothing to answer in
    }
    for (;;) {
      const bool more = co_await serve_one();
      if (!more) co_return;
    }
  }

 private:
  std::chrono::milliseconds client_timeout() const {
    return std::chrono::milliseconds(s_.opt.client_timeout_ms);
  }

  // Writes at once what the socket takes (nearly always all of it: a token is a few hundred
  // bytes), with no timer and no trip through the event loop; only what remains waits for the
  // socket, under the client timeout. (Arming and cancelling the timer around every write cost
  // two timerfd updates and an aborted completion per token.)
  asio::awaitable<bool> write(std::string_view bytes) {
    if (tls_) {
      stream_.expires_after(client_timeout());
      auto [tec, tn] =
          co_await asio::async_write(*tls_, asio::buffer(bytes.data(), bytes.size()), use_tuple);
      stream_.expires_never();
      co_return !tec;
    }
    auto& sock = stream_.socket();
    beast::error_code ec;
    if (!sock.non_blocking()) sock.non_blocking(true, ec);
    std::size_t done = 0;
    while (!ec && done < bytes.size()) {
      done += sock.write_some(asio::buffer(bytes.data() + done, bytes.size() - done), ec);
    }
    if (done == bytes.size()) co_return true;
    if (ec != asio::error::would_block && ec != asio::error::try_again) co_return false;
    stream_.expires_after(client_timeout());
    auto [wec, n] = co_await asio::async_write(
        stream_, asio::buffer(bytes.data() + done, bytes.size() - done), use_tuple);
    stream_.expires_never();
    co_return !wec;
  }

  // With x.mu held, on the connection's thread, while the coroutine is parked (nothing else
  // writes to the socket): writes the pending bytes, the response's head first if it has not
  // gone out. What the socket does not take, or a failure, goes to the coroutine.
  void write_parked(Exchange& x) override {
    if (!x.head_sent) x.pending.insert(0, stream_head(x));
    auto& sock = stream_.socket();
    beast::error_code ec;
    if (!sock.non_blocking()) sock.non_blocking(true, ec);
    std::size_t done = 0;
    while (!ec && done < x.pending.size()) {
      done += sock.write_some(asio::buffer(x.pending.data() + done, x.pending.size() - done), ec);
    }
    x.pending.erase(0, done);
    if (x.pending.empty()) return;
    x.parked = nullptr;  // the coroutine writes the rest (waiting for the socket) or gives up
    if (ec != asio::error::would_block && ec != asio::error::try_again) x.client_gone = true;
    x.notify();
  }

  // The head of a streamed response (with x.mu held); the exchange records that it went out.
  std::string stream_head(Exchange& x) {
    x.head_sent = true;
    x.reusable = x.reusable && !draining();
    std::string h = head(200, x.enc.content_type(),
                         x.chunked ? "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
                                   : "Cache-Control: no-cache\r\n",
                         x.reusable);
    h += "\r\n";
    return h;
  }

  // Written piece by piece: once per request, on the first token's path.
  std::string head(int status, std::string_view content_type, std::string_view extra,
                   bool keep_alive) {
    std::string h;
    h.reserve(128 + content_type.size() + extra.size());
    h += "HTTP/1.1 ";
    char code[8];
    h.append(code, std::to_chars(code, code + sizeof code, status).ptr);
    h += ' ';
    h += reason(status);
    h += "\r\nServer: chimeraforge-serve/" CHIMERA_VERSION_STRING "\r\nContent-Type: ";
    h += content_type;
    h += "\r\n";
    h += extra;
    h += cors_;
    if (!keep_alive) h += "Connection: close\r\n";
    return h;
  }

  // A complete response. Returns whether the connection stays open.
  asio::awaitable<bool> respond(int status, std::string body, bool keep_alive,
                                std::string_view content_type = "application/json",
                                std::string extra = {}) {
    keep_alive = keep_alive && !draining();
    out_ = head(status, content_type, extra, keep_alive);
    // 204 has no body and no Content-Length (RFC 9110, 8.6).
    if (status != 204) out_ += fmt::format("Content-Length: {}\r\n", body.size());
    out_ += "\r\n";
    if (!head_only_) out_ += body;  // HEAD: the GET's header, no body (RFC 9110, 9.3.2)
    s_.metrics.http_request(path_label_, status);
    ++s_.requests;
    const bool ok = co_await write(out_);
    co_return ok&& keep_alive;
  }

  // `type` is a literal (a view of the caller's frame would not outlive a suspension).
  asio::awaitable<bool> respond_error(int status, bool openai, std::string message,
                                      std::string_view type, bool keep_alive,
                                      std::string extra = {}) {
    std::string body = error_body(openai, message, type);
    co_return co_await respond(status, std::move(body), keep_alive, "application/json",
                               std::move(extra));
  }

  bool draining() {
    std::lock_guard lock(s_.conns_mu);
    return s_.draining;
  }

  // Reads the request on `parser` from the connection (TLS or TCP): its head alone (`head`), or
  // all that is left of it.
  asio::awaitable<boost::system::error_code> read_request(
      bhttp::request_parser<bhttp::string_body>& parser, bool head) {
    boost::system::error_code ec;
    if (tls_ && head) {
      std::tie(ec, std::ignore) = co_await bhttp::async_read_header(*tls_, buf_, parser, use_tuple);
    } else if (tls_) {
      std::tie(ec, std::ignore) = co_await bhttp::async_read(*tls_, buf_, parser, use_tuple);
    } else if (head) {
      std::tie(ec, std::ignore) =
          co_await bhttp::async_read_header(stream_, buf_, parser, use_tuple);
    } else {
      std::tie(ec, std::ignore) = co_await bhttp::async_read(stream_, buf_, parser, use_tuple);
    }
    co_return ec;
  }

  // Parses what has arrived of the request on `parser` (buffered or in the plain TCP socket)
  // without waiting. Returns true when the rest must be waited for (`ec` then clear); else the
  // request is whole or `ec` says why not.
  bool read_arrived(bhttp::request_parser<bhttp::string_body>& parser,
                    boost::system::error_code& ec) {
    auto& sock = stream_.socket();
    if (!sock.non_blocking()) sock.non_blocking(true, ec);
    if (!ec) bhttp::read(sock, buf_, parser, ec);
    const bool more = ec == asio::error::would_block || ec == asio::error::try_again;
    if (more) ec = {};
    return more;
  }

  // Reads and answers one request. Returns whether the connection stays open for the next.
  asio::awaitable<bool> serve_one() {
    if (!s_.set_busy(fd_, false)) co_return false;
    head_only_ = false;
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(s_.opt.body_limit);
    boost::system::error_code ec;
    bool wait = tls_ != nullptr;
    if (!tls_) {
      // A request already in the socket (a keep-alive client sends the next one as soon as the
      // last response ends) is read and parsed here: no timer armed and stopped, no posted
      // completion and no trip through the event loop before its upstream request goes out.
      // What has not arrived yet is waited for below, the parser going on where it stopped.
      wait = read_arrived(parser, ec);
    }
    if (wait) {
      stream_.expires_after(client_timeout());
      // The head first: a client that sent "Expect: 100-continue" holds its body back until it
      // gets a 100 (curl does for bodies over 1 MiB, and gives up waiting after a second).
      if (!parser.is_header_done()) ec = co_await read_request(parser, true);
      if (!ec && !parser.is_done() && waits_for_continue(parser.get())) {
        const bool sent = co_await write("HTTP/1.1 100 Continue\r\n\r\n");
        if (!sent) co_return false;
        stream_.expires_after(client_timeout());  // (write() clears the expiry it may set)
      }
      if (!ec && !parser.is_done() && !tls_) {
        // The body nearly always came with the head and waits in buf_: parsed here, it costs
        // nothing, where Beast's asynchronous read, which never completes inline, would post
        // its completion and send the request through the event loop once more (an epoll_wait
        // and a handler) before its upstream request goes out.
        read_arrived(parser, ec);
      }
      if (!ec && !parser.is_done()) ec = co_await read_request(parser, false);
      stream_.expires_never();
    }
    if (!s_.set_busy(fd_, true)) co_return false;
    path_label_ = "other";
    if (ec) {
      if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
          ec == asio::ssl::error::stream_truncated ||
          (ec == beast::error::timeout && buf_.size() == 0 && !parser.got_some())) {
        co_return false;
      }
      if (ec == beast::error::timeout) {
        co_await respond_error(
            408, false,
            fmt::format("the request did not arrive within {} ms", s_.opt.client_timeout_ms),
            "invalid_request_error", false);
      } else if (ec == bhttp::error::body_limit) {
        co_await respond_error(
            413, false,
            fmt::format("the request body exceeds the limit of {} bytes", s_.opt.body_limit),
            "invalid_request_error", false);
      } else if (ec == bhttp::error::header_limit) {
        co_await respond_error(
            431, false,
            fmt::format("the request header exceeds the limit of {} bytes", kHeaderLimit),
            "invalid_request_error", false);
      } else {
        co_await respond_error(400, false, fmt::format("malformed HTTP request: {}", ec.message()),
                               "invalid_request_error", false);
      }
      co_return false;
    }
    auto& req = parser.get();
    const bool keep_alive = req.keep_alive();
    const bool http11 = req.version() >= 11;
    const bhttp::verb method = req.method();
    const std::string_view origin = req[bhttp::field::origin];
    const bool cross_origin_allowed = cors_allows(s_.opt.cors_origins, origin);
    cors_.clear();
    if (cross_origin_allowed) {
      const bool any = std::find(s_.opt.cors_origins.begin(), s_.opt.cors_origins.end(), "*") !=
                       s_.opt.cors_origins.end();
      cors_ = any ? "Access-Control-Allow-Origin: *\r\n"
                  : fmt::format("Access-Control-Allow-Origin: {}\r\nVary: Origin\r\n", origin);
    }
    head_only_ = method == bhttp::verb::head;
    std::string path(req.target());
    if (const auto q = path.find('?'); q != std::string::npos) path.resize(q);
    if (buf_.size() == 0) buf_.shrink_to_fit();

    if (method == bhttp::verb::options) {
      path_label_ = "preflight";
      co_return co_await preflight(req, path, origin, cross_origin_allowed, keep_alive);
    }
    const std::optional<Api> api = api_of(path);
    const bool openai_path = path.starts_with("/v1/");
    if (api) {
      path_label_ = route_of(*api);
      if (method != bhttp::verb::post) {
        co_return co_await method_not_allowed(method, path, "POST", openai_path, keep_alive);
      }
      int key = -1;
      if (s_.limits.enabled()) {
        KeyLimits::Verdict v = s_.limits.admit(std::string_view(req[bhttp::field::authorization]));
        if (v.status != 0) {
          std::string extra;
          if (v.retry_after_s > 0) extra = fmt::format("Retry-After: {}\r\n", v.retry_after_s);
          co_return co_await respond_error(
              v.status, is_openai(*api), std::move(v.message),
              v.status == 401 ? "authentication_error" : "rate_limit_error", keep_alive,
              std::move(extra));
        }
        key = v.index;
      }
      const KeyRelease release{s_.limits, key};  // when the request ends, however it ends
      Parsed parsed;
      if (auto error = parse_request(*api, req.body(), parsed); !error.empty()) {
        co_return co_await respond_error(400, is_openai(*api), error, "invalid_request_error",
                                         keep_alive);
      }
      if (auto sid = req[beast::string_view("X-Session-Id")]; !sid.empty()) {
        parsed.request.session = std::string(sid);
      }
      req.body() = std::string();
      co_return co_await generate(*api, std::move(parsed), keep_alive, http11);
    }

    if (path == "/api/show") {
      path_label_ = path;
      if (method != bhttp::verb::post) {
        co_return co_await method_not_allowed(method, path, "POST", false, keep_alive);
      }
      std::string error;
      const std::string model = show_request_model(req.body(), error);
      if (!error.empty())
        co_return co_await respond_error(400, false, std::move(error), "", keep_alive);
      co_return co_await respond(200, show_body(s_.route_for(model)), keep_alive);
    }
    if (is_model_route(path)) {
      path_label_ = "/v1/models/{id}";
      if (method != bhttp::verb::get && method != bhttp::verb::head) {
        co_return co_await method_not_allowed(method, path, "GET", true, keep_alive);
      }
      co_return co_await respond(200, model_body(std::string_view(path).substr(11)), keep_alive);
    }
    const bool known = is_get_route(path);
    if (!known) {
      co_return co_await respond_error(
          404, openai_path,
          fmt::format("no route for {} {}; serve answers POST /v1/chat/completions, "
                      "/v1/completions, /api/chat, /api/generate, /api/show and GET /, /health, "
                      "/v1/models, /v1/models/{{id}}, /api/tags, /api/ps, /api/version, /metrics",
                      std::string_view(bhttp::to_string(method)), path),
          "not_found_error", keep_alive);
    }
    path_label_ = path;
    if (method != bhttp::verb::get && method != bhttp::verb::head) {
      co_return co_await method_not_allowed(method, path, "GET", openai_path, keep_alive);
    }
    if (path == "/health") {
      bool up = false;
      for (const auto& r : s_.routes) {
        for (const auto& e : r.pool->status()) up = up || e.up;
      }
      std::string body = up ? R"({"status":"ok"})" : R"({"status":"no endpoint is up"})";
      co_return co_await respond(up ? 200 : 503, std::move(body), keep_alive);
    }
    if (path == "/") {
      // Ollama's clients check that the server is there with HEAD / before anything else.
      co_return co_await respond(200, "chimeraforge serve is running", keep_alive,
                                 "text/plain; charset=utf-8");
    }
    if (path == "/api/ps") co_return co_await respond(200, ps_body(s_.routes), keep_alive);
    if (path == "/api/version") co_return co_await respond(200, version_body(), keep_alive);
    if (path == "/metrics") {
      co_return co_await respond(200, s_.metrics.text(s_.routes), keep_alive,
                                 "text/plain; version=0.0.4; charset=utf-8");
    }
    if (path == "/v1/models") co_return co_await respond(200, models_body(s_.routes), keep_alive);
    co_return co_await respond(200, tags_body(s_.routes), keep_alive);  // /api/tags
  }

  // OPTIONS: a browser's CORS preflight (Origin and Access-Control-Request-Method) for a page
  // of an allowed origin gets 204 with what it may send; from another origin, a 403 naming the
  // option. Without Origin: the route's methods (Allow).
  asio::awaitable<bool> preflight(const bhttp::request<bhttp::string_body>& req,
                                  const std::string& path, std::string_view origin, bool allowed,
                                  bool keep_alive) {
    const bool post = api_of(path) || path == "/api/show";
    if (!post && !is_get_route(path) && !is_model_route(path)) {
      co_return co_await respond_error(404, path.starts_with("/v1/"),
                                       fmt::format("no route for OPTIONS {}", path),
                                       "not_found_error", keep_alive);
    }
    const std::string methods = post ? "POST, OPTIONS" : "GET, HEAD, OPTIONS";
    const bool is_preflight =
        !origin.empty() && !req[bhttp::field::access_control_request_method].empty();
    if (is_preflight && !allowed) {
      co_return co_await respond_error(
          403, path.starts_with("/v1/"),
          fmt::format("pages of the origin {} may not call this server; start serve with "
                      "--cors-origin {} to let them",
                      origin, origin),
          "permission_error", keep_alive);
    }
    std::string extra = fmt::format("Allow: {}\r\n", methods);
    if (is_preflight) {
      // The headers the page asks to send, whatever its client library adds (the OpenAI SDK's
      // own x-stainless-* among them), when they are a list of header names; else the ones a
      // client of these APIs sends.
      std::string_view wanted = req[bhttp::field::access_control_request_headers];
      if (wanted.empty() ||
          wanted.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                                   "QRSTUVWXYZ0123456789-_, ") != std::string_view::npos) {
        wanted = "Authorization, Content-Type, X-Session-Id, Accept";
      }
      extra += fmt::format(
          "Access-Control-Allow-Methods: {}\r\nAccess-Control-Allow-Headers: {}\r\n"
          "Access-Control-Max-Age: 600\r\n",
          methods, wanted);
    }
    co_return co_await respond(204, {}, keep_alive, "text/plain", std::move(extra));
  }

  asio::awaitable<bool> method_not_allowed(bhttp::verb method, std::string path,
                                           std::string_view allowed, bool openai, bool keep_alive) {
    co_return co_await respond_error(
        405, openai,
        fmt::format("{} {}: method not allowed; use {}", std::string_view(bhttp::to_string(method)),
                    path, allowed),
        "invalid_request_error", keep_alive, fmt::format("Allow: {}\r\n", allowed));
  }

  // Waits for the client to close its side while a response is in progress; a client that does
  // cancels the upstream request. Data that arrives instead (a pipelined request) ends the watch.
  // A receive that only peeks, not a readiness wait: the reactor tries it at once and again on
  // each readiness event, and it ends only on data, the close or an error. A wait ended on any
  // readiness event, even one Asio had queued before this request's bytes were read (the next
  // request of a kept-alive connection arriving while the last response ended), which ended
  // the watch at its start; it also cost an epoll_ctl per request.
  static asio::awaitable<void> watch_disconnect(std::shared_ptr<Exchange> x, tcp::socket& sock) {
    char c = 0;
    auto [ec, n] =
        co_await sock.async_receive(asio::buffer(&c, 1), tcp::socket::message_peek, use_tuple);
    if (!x->watching || ec == asio::error::operation_aborted) co_return;
    if (ec) {  // the close (eof) or a reset
      x->client_gone = true;
      x->notify();
    }
  }

  // Starts the upstream request; its callbacks fill the exchange.
  void start_upstream(const std::shared_ptr<Exchange>& x, const Route& route, Request request) {
    {
      std::lock_guard lock(s_.conns_mu);
      s_.exchanges.insert(x);
      ++s_.streams_active;
    }
    s_.metrics.stream_began();
    Server::Impl* s = &s_;
    const std::string pool_name = route.name;
    auto on_token = [x](const TokenEvent& ev) {
      if (x->client_gone) return false;
      if (x->stream) {
        std::lock_guard lock(x->mu);
        x->rec.clear();
        x->enc.token(ev, x->rec);
        if (!x->rec.empty()) {
          append_chunk(x->pending, x->rec, x->chunked);
          x->started = true;
        }
        // The tokens of one upstream read go out in one write: each is passed on as it
        // arrived, together with those that arrived with it.
        if (!ev.more && !x->pending.empty()) x->flush_or_notify();
        return !x->client_gone;
      }
      x->notify();
      return true;
    };
    auto on_done = [x, s, pool_name](Completion c) {
      s->metrics.generation(pool_name, c, x->client_gone);
      {
        std::lock_guard lock(x->mu);
        if (x->stream && (x->started || !c.error)) {
          x->rec.clear();
          if (c.error) {
            x->enc.stream_error(c.error.message, x->rec);
          } else {
            x->enc.finish(c, x->rec);
          }
          append_chunk(x->pending, x->rec, x->chunked);
          if (x->chunked) x->pending += "0\r\n\r\n";
          x->started = true;
          if (x->parked != nullptr && running_on(x->executor)) x->parked->write_parked(*x);
        }
        x->completion = std::move(c);
        x->done = true;
      }
      x->notify();
      s->metrics.stream_ended();
      std::lock_guard lock(s->conns_mu);
      s->exchanges.erase(x);
      --s->streams_active;
      s->conns_cv.notify_all();
    };
    request.stream = true;  // upstream always streams: first-token figures, early errors
    auto handle = route.pool->start(std::move(request), std::move(on_token), std::move(on_done));
    std::lock_guard lock(x->mu);
    x->handle = std::move(handle);
  }

  // One generation request, streamed or whole. Returns whether the connection stays open.
  asio::awaitable<bool> generate(Api api, Parsed parsed, bool keep_alive, bool http11) {
    const Route& route = s_.route_for(parsed.model);
    Request request = std::move(parsed.request);
    if (route.name == parsed.model || request.model.empty()) request.model = route.model;
    const bool stream = request.stream;
    if (auto loaded =
            ollama_load_reply(api, request, parsed.model.empty() ? route.name : parsed.model)) {
      co_return co_await respond(200, std::move(*loaded), keep_alive,
                                 stream ? "application/x-ndjson" : "application/json");
    }
    request.relay = s_.opt.relay && stream && is_openai(api);
    const bool chunked = http11;
    auto x = std::make_shared<Exchange>(
        s_.io, stream_.get_executor(),
        Encoder(api, stream, parsed.model.empty() ? route.name : parsed.model,
                parsed.include_usage),
        stream, chunked, keep_alive && chunked);
    start_upstream(x, route, std::move(request));
    // The request's handle holds its callbacks, and they hold the exchange: dropped when this
    // request is over, or each exchange would keep itself alive (a leak of every request).
    struct DropHandle {
      Exchange& x;
      ~DropHandle() {
        std::lock_guard lock(x.mu);
        x.handle.reset();
      }
    } drop_handle{*x};

    x->watching = true;
    asio::co_spawn(stream_.get_executor(), watch_disconnect(x, stream_.socket()), asio::detached);
    // A streamed response over plain TCP may be written by the callbacks themselves while this
    // coroutine is parked (Exchange::parked); over TLS every write is the stream's own operation.
    const bool direct = stream && !tls_;
    bool head_sent = false;
    bool reusable = false;
    bool ok = true;
    for (;;) {
      std::string out;
      bool done = false;
      {
        std::lock_guard lock(x->mu);
        x->parked = nullptr;
        out.swap(x->pending);
        done = x->done;
        if (x->started && !out.empty() && !x->head_sent) out.insert(0, stream_head(*x));
        head_sent = x->head_sent;
        reusable = x->reusable;
        if (out.empty() && !done && !x->client_gone && direct) x->parked = this;
      }
      if (!out.empty()) {
        ok = co_await write(out);
        if (!ok) break;
        continue;  // what came meanwhile, or park
      }
      if (done || x->client_gone) break;
      co_await x->wake.async_receive(use_tuple);
    }
    {
      std::lock_guard lock(x->mu);
      x->parked = nullptr;
    }
    x->watching = false;
    beast::error_code cec;
    stream_.socket().cancel(cec);  // the watcher's wait

    if (!ok || x->client_gone) {
      ++s_.cancelled;
      x->client_gone = true;
      cancel(x);
      if (head_sent) {
        s_.metrics.http_request(path_label_, 200);
        ++s_.requests;
      }
      co_return false;
    }
    if (head_sent) {
      s_.metrics.http_request(path_label_, 200);
      ++s_.requests;
      co_return reusable;
    }
    // Nothing went out yet: a whole response, or an error before the first byte.
    const Completion& c = x->completion;
    if (c.error) {
      const int status = status_for(c.error);
      co_return co_await respond_error(status, is_openai(api), c.error.message,
                                       status < 500 ? "invalid_request_error" : "server_error",
                                       keep_alive);
    }
    std::string body;
    {
      std::lock_guard lock(x->mu);
      body = x->enc.whole(c);
    }
    co_return co_await respond(200, std::move(body), keep_alive);
  }

  Server::Impl& s_;
  beast::tcp_stream stream_;
  std::unique_ptr<TlsStream> tls_;  // over stream_, when the server has TLS
  int fd_;
  beast::flat_buffer buf_;
  std::string out_;
  std::string path_label_ = "other";
  // The CORS header of the request being answered ("" for none): its Origin is allowed.
  std::string cors_;
  bool head_only_ = false;  // the request is a HEAD: responses go without their body
};

asio::awaitable<void> run_connection(Server::Impl& s, tcp::socket sock) {
  Connection conn(s, std::move(sock));
  co_await conn.run();
}

}  // namespace

asio::awaitable<void> Server::Impl::accept_loop() {
  co_await http::accept_loop(
      *acceptor, [this] { return connection_executor(); },
      [this](tcp::socket sock) {
        ++connections;
        auto ex = sock.get_executor();
        asio::co_spawn(ex, run_connection(*this, std::move(sock)), asio::detached);
      });
  std::lock_guard lock(conns_mu);
  accepting = false;
  conns_cv.notify_all();
}

bool cors_allows(const std::vector<std::string>& allowed, std::string_view origin) {
  if (origin.empty()) return false;
  for (const auto& a : allowed) {
    if (a == "*" || a == origin) return true;
    // "scheme://host:*": that origin without a port, or with any port.
    if (a.ends_with(":*")) {
      const std::string_view base = std::string_view(a).substr(0, a.size() - 2);
      if (origin == base) return true;
      if (origin.size() > base.size() + 1 && origin.starts_with(base) &&
          origin[base.size()] == ':' &&
          origin.find_first_not_of("0123456789", base.size() + 1) == std::string_view::npos) {
        return true;
      }
    }
  }
  return false;
}

std::string validate(const Options& o) {
  if (o.port < 0 || o.port > 65535) return fmt::format("port {} is not from 0 to 65535", o.port);
  if (o.threads < 1 || o.threads > 256) {
    return fmt::format("threads is {}; it must be from 1 to 256", o.threads);
  }
  if (o.body_limit < 1024) {
    return fmt::format("the body limit is {} bytes; it must be at least 1024", o.body_limit);
  }
  if (o.client_timeout_ms < 1) {
    return fmt::format("the client timeout is {} ms; it must be at least 1", o.client_timeout_ms);
  }
  for (const auto& origin : o.cors_origins) {
    // An origin is echoed in a response header: nothing but a scheme, a host and a port.
    const bool scheme = origin.starts_with("http://") || origin.starts_with("https://");
    if (origin != "*" && (!scheme || origin.ends_with('/') ||
                          origin.find_first_of(" \t\r\n,") != std::string::npos ||
                          origin.find('/', origin.find("://") + 3) != std::string::npos)) {
      return fmt::format(
          "the CORS origin '{}' is not an origin: give a scheme and a host, with a port or ':*' "
          "for any (\"http://localhost:*\", \"https://game.example\"), or \"*\" for any origin",
          origin);
    }
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return o.tls_cert.empty() ? "a TLS key needs its certificate (tls_cert, --tls-cert)"
                              : "a TLS certificate needs its private key (tls_key, --tls-key)";
  }
  return {};
}

Server::Server(Options options, std::vector<Route> routes) {
  if (auto e = validate(options); !e.empty()) throw std::invalid_argument("serve: " + e);
  if (routes.empty()) throw std::invalid_argument("serve: no pool to serve from");
  for (const auto& r : routes) {
    if (r.pool == nullptr) {
      throw std::invalid_argument(fmt::format("serve: route '{}' has no pool", r.name));
    }
  }
  impl_ = std::make_unique<Impl>(std::move(options), std::move(routes));
}

Server::~Server() {
  stop();
}

void Server::start() {
  Impl& s = *impl_;
  std::lock_guard lock(s.life_mu);
  if (s.running) return;
  if (s.stopped) throw std::logic_error("serve: a stopped Server cannot start again");
  beast::error_code ec;
  const auto address = asio::ip::make_address(s.opt.host, ec);
  if (ec) {
    throw std::invalid_argument(fmt::format(
        "serve: host '{}' is not an IP address (e.g. 127.0.0.1, 0.0.0.0 or ::1)", s.opt.host));
  }
  if (!s.opt.tls_cert.empty() && !s.tls) {
    auto tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    tls->use_certificate_chain_file(s.opt.tls_cert, ec);
    if (ec) {
      throw std::invalid_argument(
          fmt::format("serve: cannot read the TLS certificate '{}': {} (a PEM certificate chain "
                      "is expected)",
                      s.opt.tls_cert, ec.message()));
    }
    tls->use_private_key_file(s.opt.tls_key, asio::ssl::context::pem, ec);
    if (ec) {
      throw std::invalid_argument(fmt::format(
          "serve: cannot use the TLS key '{}': {} (a PEM private key matching '{}' is expected)",
          s.opt.tls_key, ec.message(), s.opt.tls_cert));
    }
    s.tls = std::move(tls);
  }
  std::shared_ptr<asio::io_context> io;
  asio::io_context* ioc = nullptr;
  if (s.opt.runtime != nullptr) {
    ioc = &RuntimeAccess::io(*s.opt.runtime);
  } else {
    io = std::make_shared<asio::io_context>(s.opt.threads);
    ioc = io.get();
  }
  auto acceptor = http::open_listener(asio::make_strand(*ioc), address, s.opt.port, kBacklog,
                                      "serve", s.opt.host);
  s.port = acceptor->local_endpoint(ec).port();
  s.io = std::move(io);
  s.ioc = ioc;
  s.acceptor = std::move(acceptor);
  {
    std::lock_guard conns_lock(s.conns_mu);
    s.accepting = true;
  }
  asio::co_spawn(s.acceptor->get_executor(), s.accept_loop(), asio::detached);
  if (s.io) {
    for (int i = 0; i < s.opt.threads; ++i) s.threads.emplace_back([&s] { s.io->run(); });
  }
  s.running = true;
}

int Server::shutdown(int64_t grace_ms) {
  Impl& s = *impl_;
  std::lock_guard life(s.life_mu);
  if (!s.running) return 0;
  s.running = false;
  s.stopped = true;
  asio::post(s.acceptor->get_executor(), [a = s.acceptor.get()] {
    beast::error_code ec;
    a->close(ec);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  int left = 0;
  {
    std::unique_lock lock(s.conns_mu);
    s.draining = true;
    // Idle connections (waiting for a next request) close now; busy ones finish their request.
    for (const auto& [fd, busy] : s.conns) {
      if (!busy) ::shutdown(fd, SHUT_RDWR);
    }
    s.conns_cv.wait_until(lock, deadline, [&] { return s.busy == 0 && s.exchanges.empty(); });
    left = static_cast<int>(s.exchanges.size());
  }
  // What is still in flight is cancelled: its clients get the in-stream error (or an HTTP error)
  // and the upstream requests end, so no callback outlives the io_context.
  std::vector<std::shared_ptr<Exchange>> rest;
  {
    std::lock_guard lock(s.conns_mu);
    rest.assign(s.exchanges.begin(), s.exchanges.end());
  }
  for (const auto& x : rest) cancel(x);
  {
    std::unique_lock lock(s.conns_mu);
    s.conns_cv.wait_for(lock, std::chrono::seconds(5),
                        [&] { return s.busy == 0 && s.exchanges.empty(); });
    for (const auto& [fd, busy] : s.conns) ::shutdown(fd, SHUT_RDWR);
    // Every connection's coroutine ends (its socket is shut down), and so does the accept loop,
    // so none outlives the server.
    s.conns_cv.wait_for(lock, std::chrono::seconds(5),
                        [&] { return s.conns.empty() && !s.accepting; });
  }
  if (s.io) {
    s.io->stop();
    for (auto& t : s.threads) t.join();
    s.threads.clear();
  }
  s.acceptor.reset();
  s.io.reset();
  return left;
}

void Server::stop() {
  shutdown(0);
}

int Server::port() const {
  std::lock_guard lock(impl_->life_mu);
  return impl_->port;
}

std::string Server::url() const {
  const std::string& host = impl_->opt.host;
  const bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}:{}", impl_->opt.tls_cert.empty() ? "http" : "https",
                     v6 ? "[" : "", host, v6 ? "]" : "", port());
}

Stats Server::stats() const {
  Stats out;
  out.connections = impl_->connections.load();
  out.requests = impl_->requests.load();
  out.cancelled = impl_->cancelled.load();
  std::lock_guard lock(impl_->conns_mu);
  out.streams_active = impl_->streams_active;
  return out;
}

std::string Server::metrics_text() const {
  return impl_->metrics.text(impl_->routes);
}

}  // namespace chimera::serve

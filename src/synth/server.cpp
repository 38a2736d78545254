// The synthetic server's transport: Asio accept loop, one coroutine per connection, HTTP/1.1
// keep-alive with Beast's request parser, responses written as raw bytes (see server.hpp for
// what it is, wire.hpp for the records).
//
// Built to hold ten thousand slow streams on one thread without becoming what a benchmark
// measures: every stream waits on its own timer for an absolute deadline (no drift, no
// per-token sleep arithmetic), each chunk is formatted into two strings the connection reuses,
// and a connection keeps no read buffer while it streams.
#include "http/listener.hpp"
#include "synth/wire.hpp"

#include <chimera/synth/server.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/compile.h>
#include <fmt/format.h>

#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iterator>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_set>
#include <vector>

namespace chimera::synth {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr std::string_view kServerHeader = "Server: chimeraforge-synth/0.1\r\n";
constexpr std::size_t kFirstRead = 1024;  // bytes asked for when a request starts
constexpr std::uint32_t kHeaderLimit = 16 * 1024;
constexpr std::uint64_t kBodyLimit = 4u << 20;  // a long chat history fits; a runaway does not
// The kernel caps the backlog at net.core.somaxconn; asking for more lets a raised sysctl count.
constexpr int kBacklog = 65535;

int64_t to_ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
int64_t now_ns() {
  return to_ns(Clock::now());
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
// Uniform in [0, 1).
double unit(uint64_t bits) {
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

bool is_disconnect(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == bhttp::error::partial_message || ec == asio::error::operation_aborted ||
         ec == asio::error::bad_descriptor;
}

// Each token's send time: the first at arrival + ttft, token i at first + i / rate, computed from
// the start every time (so rounding never accumulates), each moved by its own uniform jitter
// draw and never earlier than the token before it (tokens go out in order).
class Schedule {
 public:
  Schedule(Clock::time_point t_request, double ttft_ms, double tokens_per_s, double jitter_ms,
           uint64_t seed)
      : first_(t_request + ns(ttft_ms * 1e6)),
        prev_(t_request),
        interval_ns_(1e9 / tokens_per_s),
        jitter_ns_(jitter_ms * 1e6),
        rng_(seed) {}

  Clock::time_point first() const { return first_; }

  // Token i's time; call for i = 0, 1, 2, ... in order (each call draws the next jitter).
  Clock::time_point at(int i) {
    auto t = first_ + ns(static_cast<double>(i) * interval_ns_);
    if (jitter_ns_ > 0) {
      rng_ = splitmix64(rng_);
      t += ns((unit(rng_) * 2 - 1) * jitter_ns_);
    }
    t = std::max(t, prev_);
    prev_ = t;
    return t;
  }

 private:
  static Clock::duration ns(double v) {
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::nanoseconds(static_cast<int64_t>(std::llround(v))));
  }

  Clock::time_point first_;
  Clock::time_point prev_;
  double interval_ns_;
  double jitter_ns_;
  uint64_t rng_;
};

void append_chunk(std::string& out, std::string_view record, bool chunked) {
  if (chunked) fmt::format_to(std::back_inserter(out), FMT_COMPILE("{:x}\r\n"), record.size());
  out += record;
  if (chunked) out += "\r\n";
}

}  // namespace

// ---- the server's state ------------------------------------------------------------------------

struct SynthServer::Impl {
  explicit Impl(Options o) : opt(std::move(o)) {}

  Options opt;
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> active{0};
  std::atomic<int64_t> peak{0};
  std::atomic<int64_t> tokens{0};
  std::atomic<int64_t> faults{0};
  std::atomic<int64_t> first_request_ns{0};
  std::atomic<int64_t> tokens_late{0};
  std::atomic<int64_t> lateness_ns_sum{0};
  std::atomic<int64_t> last_token_sent_ns{0};
  std::atomic<int64_t> last_token_scheduled_ns{0};
  std::atomic<uint64_t> generations{0};  // numbers generation requests; never reset
  int64_t fd_limit = 0;

  // Open connections' descriptors, so that stop() can shut them down from its own thread
  // (shutdown(2) is safe on a descriptor another thread waits on; a connection leaves this set
  // before its descriptor is closed, so a number is never reused under us).
  std::mutex fds_mu;
  std::unordered_set<int> fds;

  std::mutex life_mu;  // start() and stop()
  bool running = false;
  bool stopped = false;
  int port = 0;
  std::unique_ptr<asio::io_context> io;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;

  void reset() {
    connections = 0;
    requests = 0;
    tokens = 0;
    faults = 0;
    peak = active.load();
    first_request_ns = 0;
    tokens_late = 0;
    lateness_ns_sum = 0;
    last_token_sent_ns = 0;
    last_token_scheduled_ns = 0;
  }
  // A streamed token chunk written at `sent`, due at `scheduled`.
  void note_token(int64_t sent, int64_t scheduled) {
    const int64_t late = sent - scheduled;
    if (late > 0) lateness_ns_sum.fetch_add(late, std::memory_order_relaxed);
    if (late > kLateNs) tokens_late.fetch_add(1, std::memory_order_relaxed);
    raise_to(last_token_sent_ns, sent);
    raise_to(last_token_scheduled_ns, scheduled);
  }
  static void raise_to(std::atomic<int64_t>& a, int64_t v) {
    int64_t cur = a.load(std::memory_order_relaxed);
    while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
  }
  // Late as docs/records.md's stall: more than 1 ms.
  static constexpr int64_t kLateNs = 1'000'000;
  void note_first_byte(int64_t t) {
    int64_t none = 0;
    first_request_ns.compare_exchange_strong(none, t);
  }
  void stream_began() {
    const int64_t n = ++active;
    int64_t p = peak.load();
    while (n > p && !peak.compare_exchange_weak(p, n)) {
    }
  }
  // Does the server-wide fault hit generation request `gen`? A pure function of seed and gen.
  bool fault_selected(uint64_t gen) const {
    if (opt.fault.kind == FaultKind::none) return false;
    return unit(splitmix64(opt.seed * 0x2545F4914F6CDD1Dull + gen)) < opt.fault_rate;
  }
  // The fault a request chosen under `mix:K` gets: drop, stall, error or 503, each about a
  // quarter of the time; a pure function of seed and gen, independent of fault_selected's draw.
  Fault mixed_fault(uint64_t gen, int after_tokens) const {
    static constexpr FaultKind kKinds[] = {FaultKind::drop_after, FaultKind::stall,
                                           FaultKind::error_after, FaultKind::http_503};
    const uint64_t pick = splitmix64(opt.seed * 0x9E3779B97F4A7C15ull + gen + 0x5EED) % 4;
    return {kKinds[pick], after_tokens};
  }
  uint64_t jitter_seed(uint64_t gen) const { return splitmix64(opt.seed ^ (gen << 20) ^ 0xA5A5); }

  asio::any_io_executor connection_executor() {
    // One thread needs no strand; with several, a strand keeps each connection's operations
    // (and the coroutine that issues them) on one thread at a time.
    if (opt.threads > 1) return asio::make_strand(*io);
    return io->get_executor();
  }

  asio::awaitable<void> accept_loop();
  std::string stats_json() const;
};

// ---- one connection ----------------------------------------------------------------------------

namespace {

// Counts a generation request as in progress for its lifetime.
class ActiveStream {
 public:
  explicit ActiveStream(SynthServer::Impl& s) : s_(s) { s_.stream_began(); }
  ~ActiveStream() { --s_.active; }
  ActiveStream(const ActiveStream&) = delete;
  ActiveStream& operator=(const ActiveStream&) = delete;

 private:
  SynthServer::Impl& s_;
};

class Connection {
 public:
  Connection(SynthServer::Impl& s, tcp::socket sock)
      : s_(s), sock_(std::move(sock)), timer_(sock_.get_executor()), fd_(sock_.native_handle()) {
    beast::error_code ec;
    sock_.non_blocking(true, ec);  // write() sends directly and must never block the thread
    std::lock_guard lock(s_.fds_mu);
    s_.fds.insert(fd_);
  }
  ~Connection() { close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  asio::awaitable<void> run() {
    // (Each co_await is its own statement in this file: GCC 12 miscompiles some co_await
    // operands of conditions and short-circuit expressions.)
    for (;;) {
      const bool more = co_await serve_one();
      if (!more) co_return;
    }
  }

 private:
  void close() {
    if (fd_ < 0) return;
    {
      std::lock_guard lock(s_.fds_mu);
      s_.fds.erase(fd_);
    }
    fd_ = -1;
    beast::error_code ec;
    sock_.close(ec);
  }

  // Writes all of `bytes`. A chunk nearly always fits the socket's send buffer, so it is sent
  // at once (the socket is non-blocking); only the rest of a partial send waits for the socket,
  // which spares every chunk a round trip through the scheduler (a third of the server's CPU
  // time is its own, the rest the kernel's send).
  asio::awaitable<bool> write(std::string_view bytes) {
    beast::error_code ec;
    std::size_t sent = sock_.write_some(asio::buffer(bytes.data(), bytes.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      sent = 0;
    }
    if (ec) co_return false;
    if (sent == bytes.size()) co_return true;
    auto [wec, n] = co_await asio::async_write(
        sock_, asio::buffer(bytes.data() + sent, bytes.size() - sent), use_tuple);
    co_return !wec;
  }

  // Waits until `t`. With `yield`, a stream already behind its schedule still lets the other
  // streams on this thread run first, so that catching up cannot starve them (a token after the
  // first: nothing else suspended the stream since the previous one). False when the wait was
  // cut short.
  asio::awaitable<bool> wait_until(Clock::time_point t, bool yield = false) {
    if (Clock::now() >= t) {
      if (!yield) co_return true;
      co_await asio::post(sock_.get_executor(), asio::use_awaitable);
      co_return sock_.is_open();
    }
    timer_.expires_at(t);
    auto [ec] = co_await timer_.async_wait(use_tuple);
    co_return !ec;
  }

  // A stalled response: nothing more is sent; the connection stays open until the client gives
  // up (or the server stops). Whatever the client sends meanwhile is read and ignored.
  asio::awaitable<void> hold_until_peer_closes() {
    char sink[256];
    for (;;) {
      auto [ec, n] = co_await sock_.async_read_some(asio::buffer(sink), use_tuple);
      if (ec) co_return;
    }
  }

  // A complete response with Content-Length. Returns whether the connection stays open.
  // (Coroutine parameters are taken by value: a view of a caller's temporary would dangle.)
  asio::awaitable<bool> respond(int status, std::string body, bool keep_alive,
                                std::string extra_headers = {},
                                std::string_view content_type = "application/json") {
    out_.clear();
    fmt::format_to(std::back_inserter(out_),
                   "HTTP/1.1 {} {}\r\n{}Content-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n", status,
                   reason(status), kServerHeader, content_type, body.size(), extra_headers,
                   keep_alive ? "" : "Connection: close\r\n");
    out_ += body;
    const bool ok = co_await write(out_);
    co_return ok&& keep_alive;
  }

  // `type` is one of OpenAI's error types, a literal.
  asio::awaitable<bool> respond_error(int status, bool openai_shape, std::string message,
                                      std::string_view type, bool keep_alive,
                                      std::string extra_headers = {}) {
    std::string body = error_body(openai_shape, status, message, type);
    co_return co_await respond(status, std::move(body), keep_alive, std::move(extra_headers));
  }

  // The request could not be read. A client that went away gets nothing; a malformed request
  // gets an error that says what was wrong, and the connection closes (its bytes cannot be
  // trusted to delimit a next request).
  asio::awaitable<bool> reading_failed(const beast::error_code& ec) {
    if (is_disconnect(ec)) co_return false;
    ++s_.requests;
    if (ec == bhttp::error::body_limit) {
      co_await respond_error(
          413, false, fmt::format("the request body exceeds the limit of {} bytes", kBodyLimit),
          "invalid_request_error", false);
    } else if (ec == bhttp::error::header_limit) {
      co_await respond_error(
          431, false, fmt::format("the request header exceeds the limit of {} bytes", kHeaderLimit),
          "invalid_request_error", false);
    } else {
      co_await respond_error(400, false, fmt::format("malformed HTTP request: {}", ec.message()),
                             "invalid_request_error", false);
    }
    co_return false;
  }

  // Reads and answers one request. Returns whether the connection stays open for the next.
  asio::awaitable<bool> serve_one() {
    // The first byte of a request: its arrival time is what `first_request_ns` reports.
    if (buf_.size() == 0) {
      auto [ec, n] = co_await sock_.async_read_some(buf_.prepare(kFirstRead), use_tuple);
      if (ec) co_return false;
      buf_.commit(n);
    }
    s_.note_first_byte(now_ns());

    Clock::time_point t_request;
    std::string target;
    std::string body;
    bhttp::verb method = bhttp::verb::unknown;
    bool keep_alive = true;
    bool http11 = true;
    {
      // The parser is fed from the connection's buffer here, and the socket read only when it
      // needs more: a request nearly always arrives in one read, and Beast's composed
      // async_read machinery cost more per request than the parse itself.
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(kBodyLimit);
      parser.eager(true);
      bool continued = false;
      for (;;) {
        beast::error_code ec;
        const std::size_t used = parser.put(buf_.data(), ec);
        buf_.consume(used);
        if (ec == bhttp::error::need_more) ec = {};
        if (ec) co_return co_await reading_failed(ec);
        if (parser.is_done()) break;
        if (parser.is_header_done() && !continued &&
            beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
          continued = true;
          const bool ok = co_await write("HTTP/1.1 100 Continue\r\n\r\n");
          if (!ok) co_return false;
        }
        auto [rec, n] = co_await sock_.async_read_some(buf_.prepare(kFirstRead * 4), use_tuple);
        if (rec == asio::error::eof) {
          parser.put_eof(ec);  // a body that ends with the connection; else partial_message
          if (!ec && parser.is_done()) break;
          co_return false;
        }
        if (rec) co_return false;
        buf_.commit(n);
      }
      t_request = Clock::now();
      auto& req = parser.get();
      method = req.method();
      target = std::string(req.target());
      keep_alive = req.keep_alive();
      http11 = req.version() >= 11;
      body = std::move(req.body());
    }
    ++s_.requests;
    // A connection that waits for its next request, or streams, holds no read buffer.
    if (buf_.size() == 0) buf_.shrink_to_fit();

    std::string_view path(target);
    if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);

    std::optional<Api> api;
    if (path == "/api/chat") api = Api::ollama_chat;
    if (path == "/api/generate") api = Api::ollama_generate;
    if (path == "/v1/chat/completions") api = Api::openai_chat;
    if (path == "/v1/completions") api = Api::openai_completion;
    if (api) {
      if (method != bhttp::verb::post) {
        co_return co_await method_not_allowed(method, path, "POST", is_openai(*api), keep_alive);
      }
      GenRequest g;
      if (auto error = parse_generation(*api, body, s_.opt, g); !error.empty()) {
        co_return co_await respond_error(400, is_openai(*api), error, "invalid_request_error",
                                         keep_alive);
      }
      body = std::string();  // not needed while streaming
      co_return co_await generate(std::move(g), t_request, keep_alive, http11);
    }

    if (path == "/stats/reset") {
      if (method != bhttp::verb::post) {
        co_return co_await method_not_allowed(method, path, "POST", false, keep_alive);
      }
      s_.reset();
      co_return co_await respond(200, R"({"status":"reset"})", keep_alive);
    }
    const bool get_route = path == "/health" || path == "/api/version" || path == "/api/tags" ||
                           path == "/api/ps" || path == "/v1/models" || path == "/stats";
    if (!get_route) {
      co_return co_await respond_error(
          404, path.starts_with("/v1/"),
          fmt::format("no route for {} {}; the synthetic server answers POST /api/chat, "
                      "/api/generate, /v1/chat/completions, /v1/completions, /stats/reset and "
                      "GET /health, /api/version, /api/tags, /api/ps, /v1/models, /stats",
                      std::string_view(bhttp::to_string(method)), path),
          "not_found_error", keep_alive);
    }
    if (method != bhttp::verb::get) {
      co_return co_await method_not_allowed(method, path, "GET", path.starts_with("/v1/"),
                                            keep_alive);
    }
    if (path == "/health") co_return co_await respond(200, R"({"status":"ok"})", keep_alive);
    if (path == "/api/version") {
      co_return co_await respond(200, R"({"version":"synth-0.1"})", keep_alive);
    }
    if (path == "/api/tags" || path == "/api/ps") {
      co_return co_await respond(
          200,
          R"({"models":[{"name":"synth","model":"synth","modified_at":"2025-01-01T00:00:00Z",)"
          R"("size":0,"digest":"synth","details":{"format":"synthetic","family":"synth",)"
          R"("parameter_size":"0","quantization_level":"none"}}]})",
          keep_alive);
    }
    if (path == "/v1/models") {
      co_return co_await respond(
          200,
          R"({"object":"list","data":[{"id":"synth","object":"model","created":1735689600,)"
          R"("owned_by":"chimeraforge-synth"}]})",
          keep_alive);
    }
    co_return co_await respond(200, s_.stats_json(), keep_alive);  // /stats
  }

  // `path` lives in the caller's frame; `allowed` is a literal.
  asio::awaitable<bool> method_not_allowed(bhttp::verb method, std::string_view path,
                                           std::string_view allowed, bool openai_shape,
                                           bool keep_alive) {
    co_return co_await respond_error(
        405, openai_shape,
        fmt::format("{} {}: method not allowed; use {}", std::string_view(bhttp::to_string(method)),
                    path, allowed),
        "invalid_request_error", keep_alive, fmt::format("Allow: {}\r\n", allowed));
  }

  // One generation request, streamed or whole. Returns whether the connection stays open.
  asio::awaitable<bool> generate(GenRequest g, Clock::time_point t_request, bool keep_alive,
                                 bool http11) {
    const uint64_t gen = s_.generations.fetch_add(1);
    Fault fault = g.fault ? *g.fault : s_.fault_selected(gen) ? s_.opt.fault : Fault{};
    if (fault.kind == FaultKind::mix) fault = s_.mixed_fault(gen, fault.after_tokens);
    ActiveStream counted(s_);
    const bool openai = is_openai(g.api);
    if (fault.kind != FaultKind::none) ++s_.faults;
    if (fault.kind == FaultKind::http_503) {
      co_return co_await respond_error(503, openai,
                                       "synthetic fault: the server is overloaded (503)",
                                       "server_error", keep_alive);
    }

    const ResponseInfo info{g.api, g.model, gen, static_cast<int64_t>(std::time(nullptr))};
    Schedule schedule(t_request, g.ttft_ms, g.tokens_per_s, s_.opt.jitter_ms, s_.jitter_seed(gen));
    const bool cut = fault.kind == FaultKind::drop_after || fault.kind == FaultKind::stall ||
                     fault.kind == FaultKind::error_after;
    const int emit = cut ? std::min(fault.after_tokens, g.tokens) : g.tokens;
    const std::string fault_message =
        fault.kind == FaultKind::error_after
            ? fmt::format("synthetic fault: error after {} tokens", emit)
            : std::string();
    Summary sum{g.prompt_tokens, g.tokens, g.ttft_ms, g.tokens_per_s, g.limited, 0};

    if (!g.stream) {
      // One response, when the last token would have been generated.
      Clock::time_point at = schedule.first();
      for (int i = 0; i < emit; ++i) at = schedule.at(i);
      const bool waited = co_await wait_until(at);
      if (!waited || fault.kind == FaultKind::drop_after) co_return false;
      if (fault.kind == FaultKind::stall) {
        co_await hold_until_peer_closes();
        co_return false;
      }
      if (fault.kind == FaultKind::error_after) {
        co_return co_await respond_error(500, openai, fault_message, "server_error", keep_alive);
      }
      rec_.clear();
      const int64_t sent = now_ns();
      sum.total_ns = sent - to_ns(t_request);
      append_whole(rec_, info, sum, sent);
      s_.tokens += g.tokens;
      co_return co_await respond(200, rec_, keep_alive);
    }

    // HTTP/1.0 has no chunked encoding: its stream ends when the connection closes.
    const bool chunked = http11;
    const bool reusable = keep_alive && chunked;
    // Syscalls are most of the cost of a stream (one send per chunk), so the response head goes
    // out with the first token (as Ollama's does: Go sends headers on the first flush) and the
    // final records with the last token. A stream that faults before any token sends its head
    // alone.
    bool head_pending = true;
    auto start_write = [&] {
      out_.clear();
      if (!head_pending) return;
      head_pending = false;
      fmt::format_to(std::back_inserter(out_), "HTTP/1.1 200 OK\r\n{}{}{}{}\r\n", kServerHeader,
                     openai ? "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                            : "Content-Type: application/x-ndjson\r\n",
                     chunked ? "Transfer-Encoding: chunked\r\n" : "",
                     reusable ? "" : "Connection: close\r\n");
    };
    auto append_end = [&](int64_t sent) {
      sum.total_ns = sent - to_ns(t_request);
      rec_.clear();
      append_finish(rec_, info, sum, sent);
      append_chunk(out_, rec_, chunked);
      if (openai) {
        rec_.clear();
        append_usage(rec_, info, sum, sent);
        append_chunk(out_, rec_, chunked);
        rec_.clear();
        append_done(rec_);
        append_chunk(out_, rec_, chunked);
      }
      if (chunked) out_ += "0\r\n\r\n";
    };

    for (int i = 0; i < emit; ++i) {
      const Clock::time_point at = schedule.at(i);
      const bool waited = co_await wait_until(at, /*yield=*/i > 0);
      if (!waited) co_return false;
      start_write();
      rec_.clear();
      const int64_t sent = now_ns();
      append_token(rec_, info, i, sent, to_ns(at));
      append_chunk(out_, rec_, chunked);
      const bool last = i + 1 == g.tokens && fault.kind == FaultKind::none;
      if (last) append_end(sent);
      const bool written = co_await write(out_);
      if (!written) co_return false;
      ++s_.tokens;
      s_.note_token(sent, to_ns(at));
      if (last) co_return reusable;
    }

    if (fault.kind == FaultKind::drop_after || fault.kind == FaultKind::stall) {
      if (head_pending) {
        start_write();
        const bool written = co_await write(out_);
        if (!written) co_return false;
      }
      // drop: closed without the terminating chunk, the body cut short.
      if (fault.kind == FaultKind::stall) co_await hold_until_peer_closes();
      co_return false;
    }
    if (fault.kind == FaultKind::error_after) {
      start_write();
      rec_.clear();
      append_stream_error(rec_, g.api, fault_message);
      append_chunk(out_, rec_, chunked);
      if (chunked) out_ += "0\r\n\r\n";
      const bool written = co_await write(out_);
      co_return written&& reusable;
    }

    // No tokens at all: the final record when the first token would have come.
    const bool waited = co_await wait_until(schedule.first());
    if (!waited) co_return false;
    start_write();
    append_end(now_ns());
    const bool written = co_await write(out_);
    co_return written&& reusable;
  }

  SynthServer::Impl& s_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  beast::flat_buffer buf_;
  std::string out_;  // the bytes of one write
  std::string rec_;  // one record
  int fd_;
};

asio::awaitable<void> run_connection(SynthServer::Impl& s, tcp::socket sock) {
  Connection conn(s, std::move(sock));
  co_await conn.run();
}

void raise_fd_limit(int64_t& limit) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  limit = rl.rlim_cur == RLIM_INFINITY ? -1 : static_cast<int64_t>(rl.rlim_cur);
}

int64_t process_cpu_ns() {
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  auto ns = [](const timeval& tv) {
    return static_cast<int64_t>(tv.tv_sec) * 1'000'000'000 +
           static_cast<int64_t>(tv.tv_usec) * 1000;
  };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

}  // namespace

asio::awaitable<void> SynthServer::Impl::accept_loop() {
  co_await http::accept_loop(
      *acceptor, [this] { return connection_executor(); },
      [this](tcp::socket sock) {
        ++connections;
        auto ex = sock.get_executor();
        asio::co_spawn(ex, run_connection(*this, std::move(sock)), asio::detached);
      });
}

std::string SynthServer::Impl::stats_json() const {
  namespace json = boost::json;
  return json::serialize(json::object{{"connections_accepted", connections.load()},
                                      {"requests_served", requests.load()},
                                      {"streams_active", active.load()},
                                      {"streams_peak", peak.load()},
                                      {"tokens_sent", tokens.load()},
                                      {"faults_injected", faults.load()},
                                      {"first_request_ns", first_request_ns.load()},
                                      {"tokens_late", tokens_late.load()},
                                      {"lateness_ns_sum", lateness_ns_sum.load()},
                                      {"last_token_sent_ns", last_token_sent_ns.load()},
                                      {"last_token_scheduled_ns", last_token_scheduled_ns.load()},
                                      {"now_ns", now_ns()},
                                      {"cpu_ns", process_cpu_ns()},
                                      {"fd_limit", fd_limit},
                                      {"options", json::object{{"ttft_ms", opt.ttft_ms},
                                                               {"tokens_per_s", opt.tokens_per_s},
                                                               {"tokens", opt.tokens},
                                                               {"jitter_ms", opt.jitter_ms},
                                                               {"seed", opt.seed},
                                                               {"threads", opt.threads},
                                                               {"fault", to_string(opt.fault)},
                                                               {"fault_rate", opt.fault_rate}}}});
}

// ---- SynthServer -------------------------------------------------------------------------------

SynthServer::SynthServer(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

SynthServer::~SynthServer() {
  stop();
}

void SynthServer::start() {
  Impl& s = *impl_;
  std::lock_guard lock(s.life_mu);
  if (s.running) return;
  if (s.stopped) throw std::logic_error("synth-server: a stopped SynthServer cannot start again");
  if (auto error = validate(s.opt); !error.empty()) {
    throw std::invalid_argument("synth-server: " + error);
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(s.opt.bind, ec);
  if (ec) {
    throw std::invalid_argument(
        fmt::format("synth-server: bind address '{}' is not an IP address (e.g. 127.0.0.1 or ::1)",
                    s.opt.bind));
  }
  raise_fd_limit(s.fd_limit);

  auto io = std::make_unique<asio::io_context>(s.opt.threads);
  auto acceptor = http::open_listener(asio::make_strand(*io), address, s.opt.port, kBacklog,
                                      "synth-server", s.opt.bind);
  s.port = acceptor->local_endpoint(ec).port();

  s.io = std::move(io);
  s.acceptor = std::move(acceptor);
  asio::co_spawn(s.acceptor->get_executor(), s.accept_loop(), asio::detached);
  s.threads.reserve(static_cast<std::size_t>(s.opt.threads));
  for (int i = 0; i < s.opt.threads; ++i) {
    s.threads.emplace_back([&s] { s.io->run(); });
  }
  s.running = true;
}

void SynthServer::stop() {
  Impl& s = *impl_;
  std::lock_guard lock(s.life_mu);
  if (!s.running) return;
  s.running = false;
  s.stopped = true;
  asio::post(s.acceptor->get_executor(), [a = s.acceptor.get()] {
    beast::error_code ec;
    a->close(ec);
  });
  {
    // Clients see their connections end now, whatever their coroutines are waiting for.
    std::lock_guard fds_lock(s.fds_mu);
    for (int fd : s.fds) ::shutdown(fd, SHUT_RDWR);
  }
  s.io->stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  // With no thread running, destroying the acceptor and then the io_context frees every
  // connection's coroutine (its socket closes, its counters are given back).
  s.acceptor.reset();
  s.io.reset();
}

bool SynthServer::running() const {
  std::lock_guard lock(impl_->life_mu);
  return impl_->running;
}

int SynthServer::port() const {
  std::lock_guard lock(impl_->life_mu);
  return impl_->port;
}

std::string SynthServer::url() const {
  const std::string& bind = impl_->opt.bind;
  const bool v6 = bind.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}", v6 ? "[" : "", bind, v6 ? "]" : "", port());
}

const Options& SynthServer::options() const {
  return impl_->opt;
}

Stats SynthServer::stats() const {
  const Impl& s = *impl_;
  Stats out;
  out.connections_accepted = s.connections.load();
  out.requests_served = s.requests.load();
  out.streams_active = s.active.load();
  out.streams_peak = s.peak.load();
  out.tokens_sent = s.tokens.load();
  out.faults_injected = s.faults.load();
  out.first_request_ns = s.first_request_ns.load();
  out.tokens_late = s.tokens_late.load();
  out.lateness_ns_sum = s.lateness_ns_sum.load();
  out.last_token_sent_ns = s.last_token_sent_ns.load();
  out.last_token_scheduled_ns = s.last_token_scheduled_ns.load();
  return out;
}

void SynthServer::reset_stats() {
  impl_->reset();
}

std::string SynthServer::stats_json() const {
  return impl_->stats_json();
}

}  // namespace chimera::synth

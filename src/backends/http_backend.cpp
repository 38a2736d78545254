#include "backends/http_backend.hpp"

#include "core/recycling_allocator.hpp"
#include "core/runtime_impl.hpp"

#include <chimera/core/text.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <cmath>
#include <future>
#include <limits>

namespace chimera::backends {

namespace asio = boost::asio;
namespace json = boost::json;
using http::Clock;

using text::invalid_utf8_at;

void decode_discarding(StreamDecoder& fresh, std::string_view record) {
  struct Discard final : Emitter {
    Completion c;
    bool token(std::string_view, std::string_view, const ToolCall*) override { return true; }
    bool tool_call(std::size_t, std::string_view) override { return true; }
    Completion& completion() override { return c; }
    void server_sent(int64_t) override {}
    void relay(std::string_view) override {}
  } out;
  fresh.on_bytes(record, out);
}

std::string json_excerpt(std::string_view text, std::size_t max) {
  // Shown in messages and records (JSON): bytes that are not UTF-8, and control characters,
  // are written as \xNN so that the message itself stays valid text.
  const bool cut = text.size() > max;
  std::string_view rest = text.substr(0, max);
  std::string out;
  while (!rest.empty()) {
    const std::size_t bad = invalid_utf8_at(rest);
    const std::string_view good = rest.substr(0, bad);
    for (const char ch : good) {
      const auto c = static_cast<unsigned char>(ch);
      if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
        out += fmt::format("\\x{:02x}", c);
      } else {
        out.push_back(ch);
      }
    }
    if (bad == std::string_view::npos) break;
    out += fmt::format("\\x{:02x}", static_cast<unsigned char>(rest[bad]));
    rest.remove_prefix(bad + 1);
  }
  if (cut) out += "...";
  return out;
}

std::string error_message_from_body(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.get_object();
    if (const auto* e = o.if_contains("error")) {
      if (e->is_string()) return std::string(e->get_string());
      if (e->is_object()) {
        if (const auto* m = e->get_object().if_contains("message"); m && m->is_string()) {
          return std::string(m->get_string());
        }
      }
      return json::serialize(*e);
    }
    if (const auto* m = o.if_contains("message"); m && m->is_string()) {
      return std::string(m->get_string());
    }
  }
  if (body.empty()) return "(empty body)";
  return json_excerpt(body, 300);
}

std::optional<int64_t> get_int(const json::object& o, std::string_view key) {
  return get_int(o.if_contains(key));
}

std::optional<int64_t> get_int(const json::value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) {
    if (v->get_uint64() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<int64_t>(v->get_uint64());
  }
  if (v->is_double()) {
    // Converting a double outside int64's range is undefined; 2^63 itself is outside.
    const double d = v->get_double();
    if (!std::isfinite(d) || d != std::trunc(d) || d < -9.2233720368547758e18 ||
        d >= 9.2233720368547758e18) {
      return std::nullopt;
    }
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::optional<double> get_double(const json::object& o, std::string_view key) {
  return get_double(o.if_contains(key));
}

std::optional<double> get_double(const json::value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is_double()) {
    if (!std::isfinite(v->get_double())) return std::nullopt;
    return v->get_double();
  }
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return std::nullopt;
}

std::optional<int64_t> server_count(const json::object& o, std::string_view key, Completion& c) {
  return server_count(o.if_contains(key), key, c);
}

std::optional<int64_t> server_count(const json::value* v, std::string_view key, Completion& c) {
  if (v == nullptr || v->is_null()) return std::nullopt;
  const auto n = get_int(v);
  if (n && *n >= 0 && *n <= kMaxServerCount) return n;
  c.warnings.push_back(
      fmt::format("the server reported {} = {}, which is not a count (an "
                  "integer from 0 to 2^53); it is left out",
                  key, json_excerpt(json::serialize(*v), 40)));
  return std::nullopt;
}

std::optional<double> server_number(const json::object& o, std::string_view key, Completion& c) {
  return server_number(o.if_contains(key), key, c);
}

std::optional<double> server_number(const json::value* v, std::string_view key, Completion& c) {
  if (v == nullptr || v->is_null()) return std::nullopt;
  const auto d = get_double(v);
  if (d && *d >= 0) return d;
  c.warnings.push_back(
      fmt::format("the server reported {} = {}, which is not a finite number "
                  "of 0 or more; it is left out",
                  key, json_excerpt(json::serialize(*v), 40)));
  return std::nullopt;
}

std::string json_failure(std::string_view text, const boost::system::error_code& ec) {
  if (const auto at = invalid_utf8_at(text); at != std::string_view::npos) {
    return fmt::format("invalid UTF-8 at byte {} (0x{:02x})", at,
                       static_cast<unsigned char>(text[at]));
  }
  if (text.substr(0, std::min<std::size_t>(text.size(), 64)).find('<') != std::string_view::npos &&
      (text.find("<html") != std::string_view::npos ||
       text.find("<!DOCTYPE") != std::string_view::npos ||
       text.find("<!doctype") != std::string_view::npos)) {
    return "an HTML page, not JSON";
  }
  return ec ? ec.message() : "not an object";
}

bool is_model_list(std::string_view body) {
  boost::system::error_code ec;
  const json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return false;
  const auto* data = v.get_object().if_contains("data");
  return data != nullptr && data->is_array();
}

std::string describe_body(std::string_view content_type, std::string_view body) {
  const auto excerpt = json_excerpt(body, 80);
  if (content_type.find("html") != std::string_view::npos ||
      body.substr(0, std::min<std::size_t>(body.size(), 512)).find("<html") !=
          std::string_view::npos) {
    return fmt::format("an HTML page ({}), not JSON: {}",
                       content_type.empty() ? "no Content-Type" : content_type, excerpt);
  }
  if (body.empty()) return "an empty body";
  return fmt::format("not the expected JSON ({}): {}",
                     content_type.empty() ? "no Content-Type" : content_type, excerpt);
}

std::string get_string(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return {};
  return std::string(v->get_string());
}

namespace {

// One request in flight: the handle the caller holds, and the Emitter the decoder writes to.
class RequestState final : public StreamState,
                           public Emitter,
                           public std::enable_shared_from_this<RequestState> {
 public:
  RequestState(http::Executor executor, TokenCallback on_token, DoneCallback on_done)
      : StreamState(std::move(on_token), std::move(on_done)), executor_(std::move(executor)) {}

  bool token(std::string_view text, std::string_view thinking, const ToolCall* tool_call) override {
    return deliver(text, thinking, tool_call);
  }
  bool tool_call(std::size_t index, std::string_view arguments_delta) override {
    const auto& calls = StreamState::completion().tool_calls;
    return deliver({}, {}, &calls.at(index), static_cast<int>(index), arguments_delta);
  }
  Completion& completion() override { return StreamState::completion(); }
  void server_sent(int64_t ns) override { set_server_sent(ns); }
  void relay(std::string_view events) override { set_relayed(events); }

  http::CancelSlot slot;  // used on the endpoint's executor only

 private:
  void wake() override {
    asio::post(executor_, [self = shared_from_this()] { self->slot.cancel(); });
  }

  http::Executor executor_;
};

asio::awaitable<void> run_request(std::shared_ptr<http::HttpEndpoint> ep,
                                  std::shared_ptr<RequestState> st, http::HttpRequest hreq,
                                  std::unique_ptr<StreamDecoder> decoder) {
  Completion& c = st->completion();
  c.endpoint = ep->url().url;
  try {
    const Timeouts to = ep->timeouts();
    const auto start = Clock::now();
    Clock::time_point sent = start;
    bool have_sent = false;

    http::HttpCallbacks cb;
    cb.on_send = [&] {
      if (have_sent) return;  // a retry keeps the first attempt's t_send: its cost is ours
      have_sent = true;
      sent = Clock::now();
      c.figures.t_send_ns = now_ns();
    };
    // The minimum rate (Timeouts::min_rate_*): bytes counted per window from the first token on.
    struct Rate {
      bool started = false;
      Clock::time_point window_end{};
      int64_t bytes = 0;
      int64_t window_ms = 0;
      int64_t bytes_per_s = 0;
      // The reason, made only when the window's deadline passes.
      static std::string explain(const void* arg) {
        const auto& r = *static_cast<const Rate*>(arg);
        return fmt::format(
            "the stream fell below the minimum rate: {} bytes in {} ms, fewer than {} "
            "bytes/s (Timeouts::min_rate_bytes_per_s; --min-rate and --min-rate-window)",
            r.bytes, r.window_ms, r.bytes_per_s);
      }
    } rate;
    rate.window_ms = to.min_rate_window_ms;
    rate.bytes_per_s = to.min_rate_bytes_per_s;
    const bool rate_rule = to.min_rate_bytes_per_s > 0 && to.min_rate_window_ms > 0;
    const auto window = std::chrono::milliseconds(to.min_rate_window_ms);
    // At least one byte per window, so that a tiny rate over a short window still means something.
    const int64_t window_needs =
        std::max<int64_t>(1, to.min_rate_bytes_per_s * to.min_rate_window_ms / 1000);
    cb.next_phase = [&]() -> http::Phase {
      if (decoder->finished()) {
        // The answer is complete; wait briefly for the end of the body so that the connection
        // can go back to the pool. A server that never ends it costs one connection, not an error.
        return {Clock::now() + std::chrono::milliseconds(1000), "end-of-body"};
      }
      http::Phase total;
      if (to.total_ms > 0) total = {start + std::chrono::milliseconds(to.total_ms), "total"};
      http::Phase phase;
      if (!c.figures.t_first_token_ns) {
        if (to.first_token_ms > 0) {
          phase = {sent + std::chrono::milliseconds(to.first_token_ms), "first-token"};
        }
      } else {
        const auto now = Clock::now();
        if (to.idle_ms > 0) phase = {now + std::chrono::milliseconds(to.idle_ms), "idle"};
        if (rate_rule) {
          if (!rate.started || now >= rate.window_end) {
            if (rate.started && rate.bytes < window_needs) {
              return {now, "minimum-rate", nullptr, &Rate::explain, &rate};  // fails at once
            }
            rate.started = true;
            rate.window_end = now + window;
            rate.bytes = 0;
          }
          // Too few bytes in this window so far: its end is a deadline, unless more arrive.
          if (rate.bytes < window_needs && rate.window_end < phase.deadline) {
            phase = {rate.window_end, "minimum-rate", nullptr, &Rate::explain, &rate};
          }
        }
      }
      return phase.deadline < total.deadline ? phase : total;
    };
    cb.on_sent = [&] { decoder->warm(); };
    cb.on_body = [&](std::string_view bytes, bool last) {
      if (st->cancel_requested()) return false;
      rate.bytes += static_cast<int64_t>(bytes.size());
      // What one read brought is one burst (StreamState::begin_burst): its tokens go to the
      // caller marked as followed by more, the last not, unless the read also ended the
      // response: the request's end then follows at once, and a server passing tokens on
      // writes the last with the end (one write and one wake-up of its client, not two).
      st->begin_burst();
      const bool go_on = decoder->on_bytes(bytes, *st);
      return st->end_burst(/*end_follows=*/last) && go_on;
    };
    cb.check_headers = [&](std::string_view content_type) -> std::string {
      if (content_type.find("html") == std::string_view::npos) return {};
      return fmt::format(
          "the server answered {} with an HTML page (Content-Type: {}), not the "
          "API's JSON; is this the inference server's address, or did a web "
          "server or proxy answer?",
          ep->url().base_path + hreq.path, content_type);
    };

    http::HttpResult r;
    if (st->cancel_requested()) {
      r.error = {ErrorKind::cancelled, "cancelled"};
    } else {
      r = co_await ep->send(hreq, cb, st->slot);
    }
    c.figures.connection_reused = r.reused;
    if (r.error && decoder->finished() && r.error.kind != ErrorKind::cancelled) {
      r.error = {};  // the response was whole; only its trailing end of body went missing
      r.status = 200;
    }

    if (!st->callback_error().empty()) {
      c.error = {ErrorKind::cancelled, fmt::format("{}: {}", ep->url().url, st->callback_error())};
    } else if (st->cancel_requested() || r.error.kind == ErrorKind::cancelled) {
      c.error = {ErrorKind::cancelled, fmt::format("{}: cancelled", ep->url().url)};
    } else if (c.error) {
      // The decoder already said what went wrong (a server error mid-stream, bad JSON, ...).
    } else if (r.error) {
      c.error = r.error;
      if (c.figures.t_first_token_ns && r.error.kind == ErrorKind::truncated) {
        c.error.message += fmt::format(" after {} chunks", c.figures.chunks.value_or(0));
      }
    } else if (r.status / 100 != 2) {
      c.error = {
          ErrorKind::http_status,
          fmt::format("{}: HTTP {} from {} {}: {}", ep->url().url, r.status,
                      std::string(boost::beast::http::to_string(hreq.method)),
                      ep->url().base_path + hreq.path, error_message_from_body(r.error_body)),
          r.status};
    } else {
      decoder->on_end(*st);
    }
    if (c.error && r.attempts > 1) {
      c.error.message += fmt::format(" (after {} attempts)", r.attempts);
    }
    if (c.error.kind == ErrorKind::cancelled) {
      c.finish = FinishReason::cancelled;
    } else if (c.error) {
      c.finish = FinishReason::error;
    }
  } catch (const std::exception& e) {
    c.error = {ErrorKind::protocol, fmt::format("{}: internal error: {}", ep->url().url, e.what())};
    c.finish = FinishReason::error;
  }

  st->end_burst();  // a token still held (the decoder threw mid-burst) goes before the figures
  Figures& f = c.figures;
  if (f.t_send_ns != 0) f.e2e_ns = now_ns() - f.t_send_ns;
  if (f.tokens_out && *f.tokens_out > 1 && f.t_first_token_ns && f.t_last_token_ns &&
      *f.t_last_token_ns > *f.t_first_token_ns) {
    f.decode_tps_client = static_cast<double>(*f.tokens_out - 1) * 1e9 /
                          static_cast<double>(*f.t_last_token_ns - *f.t_first_token_ns);
  }
  st->complete();
}

// The executor an endpoint's requests run on. A loop with one thread runs one handler at a time,
// so it needs no strand, whose hand-off on every completion cost about 950 instructions per
// streamed token (callgrind of serve proxying 20-token streams: 10.95k -> 10.0k a token); with
// several threads a strand keeps the endpoint's requests on one at a time.
http::Executor endpoint_executor(Runtime& runtime) {
  asio::io_context& io = RuntimeAccess::io(runtime);
  if (runtime.threads() > 1) return asio::make_strand(io);
  return io.get_executor();
}

}  // namespace

HttpBackend::HttpBackend(const EndpointConfig& config, Runtime& runtime, http::EndpointUrl url)
    : kind_(config.kind),
      endpoint_(std::make_shared<http::HttpEndpoint>(
          RuntimeAccess::io(runtime), endpoint_executor(runtime),
          [&] {
            url.connect_to = config.connect_to;
            return std::move(url);
          }(),
          config.timeouts, config.limits, config.api_key, config.tls, config.headers, config.retry,
          config.proxy)) {}

HttpBackend::~HttpBackend() = default;

std::shared_ptr<RequestHandle> HttpBackend::start(Request request, TokenCallback on_token,
                                                  DoneCallback on_done) {
  auto st =
      std::allocate_shared<RequestState>(RecyclingAllocator<RequestState>{}, endpoint_->executor(),
                                         std::move(on_token), std::move(on_done));
  http::HttpRequest hreq;
  std::string error = validate(request.options);
  if (error.empty()) error = validate(request.logit_bias);
  if (!error.empty() || !build(request, hreq, error)) {
    st->completion().endpoint = endpoint_->url().url;
    st->completion().error = {ErrorKind::bad_request,
                              fmt::format("{}: {}", endpoint_->url().url, error)};
    st->completion().finish = FinishReason::error;
    asio::post(endpoint_->executor(), [st] { st->complete(); });
    return st;
  }
  asio::co_spawn(endpoint_->executor(),
                 run_request(endpoint_, st, std::move(hreq), make_decoder(request)),
                 asio::detached);
  return st;
}

http::HttpResult HttpBackend::fetch_blocking(const http::HttpRequest& request, std::string& body,
                                             int64_t timeout_ms) {
  std::promise<http::HttpResult> done;
  auto fut = done.get_future();
  auto ep = endpoint_;
  asio::co_spawn(
      ep->executor(),
      [ep, &request, &body, timeout_ms, &done]() -> asio::awaitable<void> {
        http::CancelSlot slot;
        done.set_value(co_await ep->fetch(request, body, timeout_ms, slot));
      },
      asio::detached);
  return fut.get();
}

}  // namespace chimera::backends

namespace chimera {

Completion Backend::generate(Request request, TokenCallback on_token) {
  if (on_runtime_thread()) {
    Completion c;
    c.endpoint = endpoint();
    c.error = {ErrorKind::bad_request,
               "Backend::generate() blocks and was called on a runtime thread; use start()"};
    c.finish = FinishReason::error;
    return c;
  }
  auto handle = start(std::move(request), std::move(on_token), {});
  return handle->wait();
}

}  // namespace chimera

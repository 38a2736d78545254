#include "backends/http_backend.hpp"

#include "core/runtime_impl.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <future>

namespace chimera::backends {

namespace asio = boost::asio;
namespace json = boost::json;
using http::Clock;

std::string json_excerpt(std::string_view text, std::size_t max) {
  if (text.size() <= max) return std::string(text);
  return std::string(text.substr(0, max)) + "...";
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
  const auto* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->get_double());
  return std::nullopt;
}

std::optional<double> get_double(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_double()) return v->get_double();
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return std::nullopt;
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
  RequestState(http::Strand strand, TokenCallback on_token, DoneCallback on_done)
      : StreamState(std::move(on_token), std::move(on_done)), strand_(std::move(strand)) {}

  bool token(std::string_view text, std::string_view thinking,
             const ToolCall* tool_call) override {
    return deliver(text, thinking, tool_call);
  }
  Completion& completion() override { return StreamState::completion(); }
  void server_sent(int64_t ns) override { set_server_sent(ns); }

  http::CancelSlot slot;  // used on the strand only

 private:
  void wake() override {
    asio::post(strand_, [self = shared_from_this()] { self->slot.cancel(); });
  }

  http::Strand strand_;
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
      } else if (to.idle_ms > 0) {
        phase = {Clock::now() + std::chrono::milliseconds(to.idle_ms), "idle"};
      }
      return phase.deadline < total.deadline ? phase : total;
    };
    cb.on_body = [&](std::string_view bytes) {
      if (st->cancel_requested()) return false;
      return decoder->on_bytes(bytes, *st);
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
      c.error = {ErrorKind::http_status,
                 fmt::format("{}: HTTP {} from {} {}: {}", ep->url().url, r.status,
                             std::string(boost::beast::http::to_string(hreq.method)),
                             ep->url().base_path + hreq.path,
                             error_message_from_body(r.error_body)),
                 r.status};
    } else {
      decoder->on_end(*st);
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

  Figures& f = c.figures;
  if (f.t_send_ns != 0) f.e2e_ns = now_ns() - f.t_send_ns;
  if (f.tokens_out && *f.tokens_out > 1 && f.t_first_token_ns && f.t_last_token_ns &&
      *f.t_last_token_ns > *f.t_first_token_ns) {
    f.decode_tps_client = static_cast<double>(*f.tokens_out - 1) * 1e9 /
                          static_cast<double>(*f.t_last_token_ns - *f.t_first_token_ns);
  }
  st->complete();
}

}  // namespace

HttpBackend::HttpBackend(const EndpointConfig& config, Runtime& runtime, http::EndpointUrl url)
    : kind_(config.kind),
      endpoint_(std::make_shared<http::HttpEndpoint>(runtime.impl().io, std::move(url),
                                                     config.timeouts, config.limits,
                                                     config.api_key)) {}

HttpBackend::~HttpBackend() = default;

std::shared_ptr<RequestHandle> HttpBackend::start(Request request, TokenCallback on_token,
                                                  DoneCallback on_done) {
  auto st = std::make_shared<RequestState>(endpoint_->executor(), std::move(on_token),
                                           std::move(on_done));
  http::HttpRequest hreq;
  std::string error;
  if (!build(request, hreq, error)) {
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

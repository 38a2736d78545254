// OpenAI-compatible servers: /v1/chat/completions and /v1/completions, SSE streams with
// `stream_options.include_usage`. llama-server's extras are used when present: `timings` in the
// last chunk, `id_slot` and `cache_prompt` in the request, /health and /props.
#include "backends/openai.hpp"

#include "backends/request_json.hpp"
#include "backends/stream_chunk.hpp"
#include "http/client.hpp"

#include <chimera/core/options.hpp>
#include <chimera/http/framing.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>
#include <fmt/format.h>

namespace chimera::backends {

namespace json = boost::json;
namespace bhttp = boost::beast::http;

bool add_json_field(json::object& body, std::string_view key, const std::string& text,
                    std::string_view what, std::string& error, bool allow_json_word) {
  if (allow_json_word && text == "json") {
    body[key] = "json";
    return true;
  }
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    error = fmt::format("{} is not valid JSON ({}): {}", what, ec.message(), json_excerpt(text));
    return false;
  }
  body[key] = std::move(v);
  return true;
}

bool check_tool_choice(const Request& r, std::string& error) {
  if (!r.tool_choice) return true;
  const std::string& c = *r.tool_choice;
  if (c != "auto" && c != "required" && c != "none") {
    error = fmt::format("tool_choice is '{}'; it must be auto, required or none", c);
    return false;
  }
  if (c == "required" && !r.tools_json) {
    error = "tool_choice is 'required' but the request has no tools";
    return false;
  }
  return true;
}

namespace {

// The options in OpenAI's request body: our (Ollama's) names where OpenAI's API or the
// OpenAI-compatible servers take them as they are (top_k, min_p: llama-server and vLLM;
// repeat_penalty: llama-server), with these exceptions.
struct OpenAIName {
  std::string_view ours;
  const char* theirs;  // nullptr: not sent
};
constexpr OpenAIName kOpenAINames[] = {
    {"num_predict", "max_tokens"},
    // Server settings here (llama-server -c, -ngl, -t), not per-request options.
    {"num_ctx", nullptr},
    {"num_gpu", nullptr},
    {"num_thread", nullptr},
};

void add_openai_options(const Options& o, json::object& body) {
  for_each_set_option(o, [&body](std::string_view name, const auto& value) {
    std::string_view key = name;
    for (const auto& n : kOpenAINames) {
      if (n.ours == name) key = n.theirs != nullptr ? n.theirs : "";
    }
    if (!key.empty()) body[key] = json::value_from(value, body.storage());
  });
}

constexpr int64_t kMaxToolCalls = 256;

// One message in OpenAI's shape: an assistant's calls under `tool_calls` (arguments as JSON
// text), a tool result's call id under `tool_call_id`, reasoning as `reasoning_content`
// (llama-server's and vLLM's name; templates that keep earlier reasoning read it).
json::object openai_message(const Message& m, const json::storage_ptr& sp) {
  json::object jm(sp);
  jm.reserve(4);  // no table growth for the usual fields
  jm["role"] = m.role;
  jm["content"] = m.content;
  if (!m.thinking.empty()) jm["reasoning_content"] = m.thinking;
  if (!m.tool_calls.empty()) {
    json::array calls(sp);
    for (const auto& tc : m.tool_calls) {
      calls.push_back(json::object(
          {{"id", tc.id},
           {"type", "function"},
           {"function", json::object({{"name", tc.name}, {"arguments", tc.arguments_json}}, sp)}},
          sp));
    }
    jm["tool_calls"] = std::move(calls);
  }
  if (m.role == "tool" && !m.tool_call_id.empty()) jm["tool_call_id"] = m.tool_call_id;
  return jm;
}

FinishReason map_finish(std::string_view raw) {
  if (raw == "length") return FinishReason::length;
  if (raw == "tool_calls" || raw == "function_call") return FinishReason::tool_calls;
  return FinishReason::stop;
}

// The counts of an OpenAI-compatible `usage` object, however the record was read (a field is
// nullptr or null when absent): the scanned and the whole-record paths must give the same
// figures and warnings, in the same order.
struct UsageFields {
  const json::value* completion_tokens;
  const json::value* prompt_tokens;
  const json::value* cached_tokens;  // in `prompt_tokens_details`
};

void apply_usage(const UsageFields& u, Completion& c) {
  if (auto n = server_count(u.completion_tokens, "completion_tokens", c)) c.figures.tokens_out = n;
  if (auto n = server_count(u.prompt_tokens, "prompt_tokens", c)) c.figures.tokens_in = n;
  if (auto n = server_count(u.cached_tokens, "cached_tokens", c))
    c.figures.prompt_tokens_cached = n;
}

// llama-server's `timings` object, as apply_usage takes `usage`.
struct TimingsFields {
  const json::value* prompt_ms;
  const json::value* predicted_ms;
  const json::value* predicted_per_second;
  const json::value* cache_n;
  const json::value* prompt_n;
  const json::value* predicted_n;
};

void apply_timings(const TimingsFields& t, Completion& c) {
  ServerStats& s = c.server;
  s.prompt_ms = server_number(t.prompt_ms, "prompt_ms", c);
  s.predicted_ms = server_number(t.predicted_ms, "predicted_ms", c);
  s.predicted_per_second = server_number(t.predicted_per_second, "predicted_per_second", c);
  s.cache_n = server_count(t.cache_n, "cache_n", c);
  s.prompt_eval_count = server_count(t.prompt_n, "prompt_n", c);
  s.eval_count = server_count(t.predicted_n, "predicted_n", c);
  c.figures.ttft_server_ms = s.prompt_ms;
  c.figures.decode_tps_server = s.predicted_per_second;
  if (s.cache_n) c.figures.prompt_tokens_cached = s.cache_n;
  if (!c.figures.tokens_out && s.eval_count) c.figures.tokens_out = s.eval_count;
}

// The event whose data is `data`, in SSE's framing: a "data:" field for each line of it (the
// framer joins the lines of an event's data fields with '\n'), then the blank line.
void append_sse_event(std::string& out, std::string_view data) {
  for (;;) {
    const auto nl = data.find('\n');
    out.append("data: ").append(data.substr(0, nl)).push_back('\n');
    if (nl == std::string_view::npos) break;
    data.remove_prefix(nl + 1);
  }
  out.push_back('\n');
}

class OpenAIDecoder final : public StreamDecoder {
 public:
  OpenAIDecoder(bool chat, bool stream, std::size_t max_record, std::string url, bool scan,
                bool relay)
      : chat_(chat),
        stream_(stream),
        relay_(relay && stream),
        max_record_(max_record),
        framer_(max_record),
        url_(std::move(url)) {
    if (stream && scan) scanner_ = std::make_unique<StreamChunkScanner>(StreamProtocol::openai);
  }

  bool on_bytes(std::string_view bytes, Emitter& out) override {
    if (!stream_) {
      whole_.append(bytes);
      return true;
    }
    const auto status =
        framer_.feed(bytes, [&](const http::SseEvent& ev) { return handle_event(ev, out); });
    if (status == http::FrameStatus::too_long) {
      out.completion().error = {
          ErrorKind::protocol,
          fmt::format("{}: a stream event exceeds the limit of {} bytes (event {})", url_,
                      max_record_, events_ + 1)};
      return false;
    }
    return status == http::FrameStatus::ok;
  }

  bool finished() const override { return done_; }

  void warm() override {
    if (!stream_) return;
    warm_once<OpenAIDecoder>(openai_warm_record(chat_), chat_, true, max_record_, std::string(),
                             scanner_ != nullptr, false);
  }

  void on_end(Emitter& out) override {
    Completion& c = out.completion();
    if (!stream_) {
      handle_json(whole_, out, /*whole=*/true);
      if (!c.error && !finish_seen_) {
        c.error = {ErrorKind::protocol,
                   fmt::format("{}: the response has no choices: {}", url_, json_excerpt(whole_))};
      }
      return;
    }
    if (!c.error && !done_ && !finish_seen_) {
      c.error = {ErrorKind::truncated,
                 fmt::format("{}: the stream ended without a finish_reason or [DONE] after {} "
                             "events",
                             url_, events_)};
    }
    if (relay_) {
      c.relayed.on = true;
      c.relayed.tail = std::move(relay_buf_);
    }
  }

 private:
  bool fail(Emitter& out, ErrorKind kind, std::string message) {
    out.completion().error = {kind, std::move(message)};
    return false;
  }

  bool handle_event(const http::SseEvent& ev, Emitter& out) {
    if (done_) return true;  // nothing counts after [DONE]
    ++events_;
    if (ev.data == "[DONE]") {
      done_ = true;
      return true;
    }
    if (ev.event == "error") {
      return fail(out, ErrorKind::server,
                  fmt::format("{}: the server sent an error event mid-stream (event {}): {}", url_,
                              events_, error_message_from_body(ev.data)));
    }
    if (relay_) return relay_event(ev.data, out);
    if (scanner_ && scanner_->scan(ev.data)) return handle_scanned(scanner_->chunk(), out);
    return handle_json(ev.data, out, /*whole=*/false);
  }

  // Request::relay: the event is kept as the server wrote it and decoded as without relay. One
  // that gives a token goes out with it, with the events before it that gave none (the role's
  // record before the first token); the rest end in the completion (the finish record in `tail`,
  // the usage record, one with no choices, in `usage`, which a client gets only when it asked).
  bool relay_event(std::string_view data, Emitter& out) {
    const std::size_t at = relay_buf_.size();
    append_sse_event(relay_buf_, data);
    record_had_choice_ = true;
    const bool ok = scanner_ && scanner_->scan(data) ? handle_scanned(scanner_->chunk(), out)
                                                     : handle_json(data, out, /*whole=*/false);
    if (ok && relay_buf_.size() > at && !record_had_choice_) {  // a usage record
      out.completion().relayed.usage.append(relay_buf_, at);
      relay_buf_.resize(at);
    }
    // Events that bring no token wait for one: a server that sends them without end must not
    // take the memory it likes (twice the limit of one event; a real server keeps a role's
    // record and one usage record).
    const std::size_t limit = 2 * max_record_;
    const std::size_t kept = std::max(relay_buf_.size(), out.completion().relayed.usage.size());
    if (ok && kept > limit) {
      return fail(out, ErrorKind::protocol,
                  fmt::format("{}: {} bytes of stream events without a token (up to event {}) "
                              "exceed the limit of {} bytes kept for relaying",
                              url_, kept, events_, limit));
    }
    return ok;
  }

  // Hands a token (and tool-call delta) on, with the relayed events that brought it.
  bool emit_token(Emitter& out, std::string_view text, std::string_view thinking) {
    if (relay_) out.relay(relay_buf_);
    const bool ok = out.token(text, thinking, nullptr);
    relay_buf_.clear();
    return ok;
  }
  bool emit_tool_call(Emitter& out, std::size_t index, std::string_view arguments_delta) {
    if (relay_) out.relay(relay_buf_);
    const bool ok = out.tool_call(index, arguments_delta);
    relay_buf_.clear();
    return ok;
  }

  // A record of the common shape, as handle_json would take it (stream_chunk.hpp).
  bool handle_scanned(const StreamChunk& k, Emitter& out) {
    out.server_sent(std::max<int64_t>(0, get_int(&k.server_sent_ns).value_or(0)));
    Completion& c = out.completion();
    if (k.has_model && !k.model.empty()) c.model = k.model;
    record_had_choice_ = k.has_choice;
    if (k.has_choice && get_int(&k.index).value_or(0) == 0) {
      std::string_view text;
      std::string_view thinking;
      if (chat_ && k.has_delta) {
        if (k.has_content) text = k.content;
        if (k.has_reasoning_content) thinking = k.reasoning_content;
        if (k.has_reasoning) thinking = k.reasoning;
      } else if (k.has_text) {
        text = k.text;
      }
      if (!text.empty() || !thinking.empty()) {
        if (!emit_token(out, text, thinking)) return false;
      }
      if (k.has_finish) {
        finish_seen_ = true;
        c.finish_raw = k.finish;
        c.finish = map_finish(c.finish_raw);
      }
    }
    if (k.has_usage) {
      apply_usage({&k.completion_tokens, &k.prompt_tokens,
                   k.has_usage_details ? &k.cached_tokens : nullptr},
                  c);
    }
    if (k.has_timings) {
      apply_timings({&k.prompt_ms, &k.predicted_ms, &k.predicted_per_second, &k.cache_n,
                     &k.prompt_n, &k.predicted_n},
                    c);
    }
    if (auto slot = server_count(&k.id_slot, "id_slot", c)) c.server.slot_id = slot;
    return true;
  }

  bool handle_json(std::string_view text, Emitter& out, bool whole) {
    boost::system::error_code ec;
    // A stream record is small: parse it into stack memory, no heap allocation per token.
    unsigned char scratch[4096];
    json::monotonic_resource mr(scratch, sizeof scratch);
    json::value v = json::parse(text, ec, &mr);
    if (ec || !v.is_object()) {
      return fail(out, ErrorKind::protocol,
                  fmt::format("{}: {} is not a JSON object ({}): {}", url_,
                              whole ? "the response" : fmt::format("stream event {}", events_),
                              ec ? json_failure(text, ec) : "wrong type", json_excerpt(text)));
    }
    const auto& o = v.get_object();
    out.server_sent(std::max<int64_t>(0, get_int(o, "server_sent_ns").value_or(0)));
    if (o.contains("error")) {
      return fail(out, ErrorKind::server,
                  fmt::format("{}: the server reported an error{}: {}", url_,
                              whole ? "" : fmt::format(" mid-stream (event {})", events_),
                              error_message_from_body(text)));
    }
    Completion& c = out.completion();
    if (auto m = get_string(o, "model"); !m.empty()) c.model = std::move(m);
    const auto* choices = o.if_contains("choices");
    record_had_choice_ = choices && choices->is_array() && !choices->get_array().empty();
    if (record_had_choice_) {
      for (const auto& ch : choices->get_array()) {
        if (!ch.is_object()) continue;
        const auto& cho = ch.get_object();
        if (get_int(cho, "index").value_or(0) != 0) continue;  // we ask for one choice
        if (!handle_choice(cho, out, whole)) return false;
      }
    }
    if (const auto* u = o.if_contains("usage"); u && u->is_object()) {
      const auto& uo = u->get_object();
      const auto* d = uo.if_contains("prompt_tokens_details");
      apply_usage(
          {uo.if_contains("completion_tokens"), uo.if_contains("prompt_tokens"),
           d != nullptr && d->is_object() ? d->get_object().if_contains("cached_tokens") : nullptr},
          c);
    }
    if (const auto* t = o.if_contains("timings"); t && t->is_object()) {
      const auto& to = t->get_object();
      apply_timings({to.if_contains("prompt_ms"), to.if_contains("predicted_ms"),
                     to.if_contains("predicted_per_second"), to.if_contains("cache_n"),
                     to.if_contains("prompt_n"), to.if_contains("predicted_n")},
                    c);
    }
    if (auto slot = server_count(o, "id_slot", c)) c.server.slot_id = slot;
    return true;
  }

  bool handle_choice(const json::object& ch, Emitter& out, bool whole) {
    Completion& c = out.completion();
    std::string_view text;
    std::string_view thinking;
    const json::object* msg = nullptr;
    if (chat_) {
      const char* key = whole ? "message" : "delta";
      if (const auto* d = ch.if_contains(key); d && d->is_object()) msg = &d->get_object();
    }
    if (msg != nullptr) {
      if (const auto* t = msg->if_contains("content"); t && t->is_string()) text = t->get_string();
      for (const char* k : {"reasoning_content", "reasoning"}) {
        if (const auto* t = msg->if_contains(k); t && t->is_string()) thinking = t->get_string();
      }
      if (const auto* tcs = msg->if_contains("tool_calls"); tcs && tcs->is_array()) {
        if (!handle_tool_calls(tcs->get_array(), out)) return false;
      }
    } else if (const auto* t = ch.if_contains("text"); t && t->is_string()) {
      text = t->get_string();
    }
    if (!text.empty() || !thinking.empty()) {
      if (!emit_token(out, text, thinking)) return false;
    }
    if (const auto* fr = ch.if_contains("finish_reason"); fr && fr->is_string()) {
      finish_seen_ = true;
      c.finish_raw = fr->get_string();
      c.finish = map_finish(c.finish_raw);
    }
    return true;
  }

  // Streamed deltas name their call by `index` (parallel calls arrive interleaved); a whole
  // message lists its calls in order, usually without an index.
  bool handle_tool_calls(const json::array& calls, Emitter& out) {
    Completion& c = out.completion();
    for (std::size_t pos = 0; pos < calls.size(); ++pos) {
      if (!calls[pos].is_object()) continue;
      const auto& tco = calls[pos].get_object();
      const json::value* given = tco.if_contains("index");
      // The index sizes a vector: a server's word for it is bounded first.
      const auto index =
          given ? get_int(tco, "index") : std::optional<int64_t>(static_cast<int64_t>(pos));
      if (!index || *index < 0 || *index >= kMaxToolCalls) {
        return fail(
            out, ErrorKind::protocol,
            fmt::format("{}: a tool call has index {}; at most {} tool calls are "
                        "accepted in one response",
                        url_,
                        given ? json_excerpt(json::serialize(*given), 40) : std::to_string(pos),
                        kMaxToolCalls));
      }
      const auto idx = static_cast<std::size_t>(*index);
      if (c.tool_calls.size() <= idx) c.tool_calls.resize(idx + 1);
      ToolCall& call = c.tool_calls[idx];
      if (auto id = get_string(tco, "id"); !id.empty()) call.id = std::move(id);
      const std::size_t before = call.arguments_json.size();
      if (const auto* fn = tco.if_contains("function"); fn && fn->is_object()) {
        const auto& fo = fn->get_object();
        if (auto n = get_string(fo, "name"); !n.empty()) call.name += n;
        if (const auto* args = fo.if_contains("arguments"); args && args->is_string()) {
          call.arguments_json += args->get_string();
        } else if (args && args->is_object()) {  // some servers send the object itself
          call.arguments_json += json::serialize(*args);
        }
      }
      if (!emit_tool_call(out, idx, std::string_view(call.arguments_json).substr(before))) {
        return false;
      }
    }
    return true;
  }

  bool chat_;
  bool stream_;
  bool relay_;  // Request::relay, for a stream
  // The relayed events since the last token's ("data: ...\n\n" each).
  std::string relay_buf_;
  bool record_had_choice_ = true;  // the record just decoded held a choice (else: usage)
  std::size_t max_record_;
  http::SseFramer framer_;
  std::string url_;
  std::unique_ptr<StreamChunkScanner> scanner_;  // streamed records of the common shape
  std::string whole_;
  bool done_ = false;
  bool finish_seen_ = false;
  int events_ = 0;
};

}  // namespace

OpenAIBackend::OpenAIBackend(const EndpointConfig& config, Runtime& runtime, http::EndpointUrl url)
    : HttpBackend(config, runtime, std::move(url)) {
  kind_ = BackendKind::openai;
}

bool OpenAIBackend::build(const Request& r, http::HttpRequest& out, std::string& error) {
  // The body's tree lives only until it is written out below: it is built in one arena (on the
  // stack for an ordinary request) rather than with a heap allocation for each key, string and
  // table growth.
  unsigned char arena[4096];
  json::monotonic_resource mr(arena, sizeof arena);
  const json::storage_ptr sp(&mr);
  json::object body(sp);
  body.reserve(16);  // room for every field an ordinary request has: the table never regrows
  if (!r.model.empty()) body["model"] = r.model;
  if (r.kind == RequestKind::chat) {
    if (r.messages.empty()) {
      error = "a chat request needs at least one message";
      return false;
    }
    json::array messages(sp);
    messages.reserve(r.messages.size());
    for (const auto& m : r.messages) messages.push_back(openai_message(m, sp));
    body["messages"] = std::move(messages);
    out.path = "/v1/chat/completions";
  } else {
    body["prompt"] = r.system.empty() ? r.prompt : r.system + "\n\n" + r.prompt;
    out.path = "/v1/completions";
  }
  body["stream"] = r.stream;
  if (r.stream) body["stream_options"] = json::object({{"include_usage", true}}, sp);
  // GPU layers and threads are fixed when the server loads its model (llama-server -ngl, -t):
  // a request that asks for them cannot have them, and saying so beats dropping them.
  // (num_ctx is not sent either: the server's -c bounds the context, and a request's num_ctx is
  // the caller's own budget, which the caller applies to its prompt.)
  if (r.options.num_gpu || r.options.num_thread) {
    const bool gpu = r.options.num_gpu.has_value();
    error = fmt::format(
        "{} is {}, but an OpenAI-compatible server takes {} only as its own flag when it starts "
        "(llama-server {}), not with a request: start the server with it (`chimeraforge "
        "endpoints up {}`) or leave {} unset",
        gpu ? "num_gpu" : "num_thread", gpu ? *r.options.num_gpu : *r.options.num_thread,
        gpu ? "GPU layers" : "threads", gpu ? "-ngl" : "-t", gpu ? "--gpu-layers N" : "-- -t N",
        gpu ? "num_gpu" : "num_thread");
    return false;
  }
  add_openai_options(r.options, body);
  if (r.format_json) {
    if (*r.format_json == "json") {
      body["response_format"] = json::object{{"type", "json_object"}};
    } else {
      json::object schema_holder;
      if (!add_json_field(schema_holder, "schema", *r.format_json, "format", error, false)) {
        return false;
      }
      body["response_format"] = json::object{
          {"type", "json_schema"},
          {"json_schema", json::object{{"name", "response"}, {"schema", schema_holder["schema"]}}}};
    }
  }
  if (r.tools_json && !add_json_field(body, "tools", *r.tools_json, "tools", error, false)) {
    return false;
  }
  if (r.tool_choice) {
    if (!check_tool_choice(r, error)) return false;
    body["tool_choice"] = *r.tool_choice;
  }
  // llama-server and vLLM pass these to the chat template; Qwen 3 and others read
  // enable_thinking.
  if (r.think) body["chat_template_kwargs"] = json::object{{"enable_thinking", *r.think}};
  if (!r.logit_bias.empty()) {
    json::object bias;  // OpenAI's form: token id (as a string) -> bias
    for (const auto& b : r.logit_bias) bias[std::to_string(b.token)] = b.bias;
    body["logit_bias"] = std::move(bias);
  }
  if (r.slot_id) body["id_slot"] = *r.slot_id;
  if (r.cache_prompt) body["cache_prompt"] = *r.cache_prompt;
  out.method = bhttp::verb::post;
  out.accept = r.stream ? "text/event-stream" : "application/json";
  out.body = json::serialize(body);
  return true;
}

std::unique_ptr<StreamDecoder> OpenAIBackend::make_decoder(const Request& r) {
  return make_openai_decoder(r.kind == RequestKind::chat, r.stream,
                             endpoint_->limits().max_record_bytes, endpoint(), true, r.relay);
}

std::string_view openai_warm_record(bool chat) {
  return chat ? R"(data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m",)"
                R"("choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]})"
                "\n\n"
              : R"(data: {"id":"c","object":"text_completion","created":0,"model":"m",)"
                R"("choices":[{"index":0,"text":"a","finish_reason":null}]})"
                "\n\n";
}

std::unique_ptr<StreamDecoder> make_openai_decoder(bool chat, bool stream, std::size_t max_record,
                                                   std::string url, bool scan, bool relay) {
  return std::make_unique<OpenAIDecoder>(chat, stream, max_record, std::move(url), scan, relay);
}

EndpointInfo OpenAIBackend::check() {
  EndpointInfo info;
  info.url = endpoint();
  info.kind = BackendKind::openai;
  info.server = "openai-compatible";
  const int64_t timeout_ms = endpoint_->timeouts().check_ms;
  std::string body;
  const int64_t t0 = now_ns();
  auto r =
      fetch_blocking({bhttp::verb::get, "/health", "", "", "application/json"}, body, timeout_ms);
  info.latency_ns = now_ns() - t0;
  if (r.error && r.error.kind != ErrorKind::protocol) {
    info.detail = r.error.message;
    return info;
  }
  // /health is llama-server's and vLLM's (503 while a model loads); other servers have none.
  // Up means the API itself answers: /v1/models with a model list, not merely any 200 (a web
  // server's HTML page is a 200 too).
  if (!r.error && r.status != 200 && r.status != 404) {
    info.detail = fmt::format("/health answered HTTP {}: {}", r.status,
                              error_message_from_body(r.error_body));
    return info;
  }
  const bool has_health = !r.error && r.status == 200;

  body.clear();
  r = fetch_blocking({bhttp::verb::get, "/v1/models", "", "", "application/json"}, body,
                     timeout_ms);
  if (r.error) {
    info.detail = fmt::format("/v1/models: {}", r.error.message);
    return info;
  }
  if (r.status != 200) {
    info.detail = fmt::format("/v1/models answered HTTP {}{}", r.status,
                              has_health ? "" : " (and there is no /health)");
    return info;
  }
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  const json::array* data = nullptr;
  if (!ec && v.is_object()) {
    if (const auto* d = v.get_object().if_contains("data")) data = d->if_array();
  }
  if (data == nullptr) {
    info.detail = fmt::format(
        "/v1/models answered HTTP 200 with {}, not an OpenAI-compatible "
        "model list ({{\"data\": [...]}}); is this an inference server?",
        describe_body(r.content_type, body));
    return info;
  }
  info.healthy = true;
  info.detail = has_health ? "ok" : "ok (no /health; /v1/models answered)";
  for (const auto& m : *data) {
    if (!m.is_object()) continue;
    info.models.push_back(get_string(m.get_object(), "id"));
    const auto owner = get_string(m.get_object(), "owned_by");
    if (owner == "llamacpp") info.server = "llama-server";
    if (owner == "vllm") info.server = "vllm";
  }

  body.clear();
  r = fetch_blocking({bhttp::verb::get, "/props", "", "", "application/json"}, body, timeout_ms);
  if (!r.error && r.status == 200) {
    v = json::parse(body, ec);
    if (!ec && v.is_object()) {
      info.server = "llama-server";
      info.version = get_string(v.get_object(), "build_info");
    }
  }
  return info;
}

}  // namespace chimera::backends

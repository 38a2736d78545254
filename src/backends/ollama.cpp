// Ollama's native API: /api/chat and /api/generate, NDJSON streams.
// Reference: Ollama's docs/api.md. Every option an agent sets goes under "options"; the final
// record (done: true) carries the statistics, durations in nanoseconds.
#include "backends/ollama.hpp"

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

#include <algorithm>
#include <charconv>

namespace chimera::backends {

namespace json = boost::json;
namespace bhttp = boost::beast::http;

namespace {

// Ollama's `options` take our option names as they are (the table's names are Ollama's).
json::object ollama_options(const Options& o, const json::storage_ptr& sp) {
  json::object opts(sp);
  for_each_set_option(o, [&opts](std::string_view name, const auto& value) {
    opts[name] = json::value_from(value, opts.storage());
  });
  return opts;
}

bool all_digits(std::string_view s) {
  if (!s.empty() && s.front() == '-') s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

class OllamaDecoder final : public StreamDecoder {
 public:
  OllamaDecoder(bool chat, bool stream, std::size_t max_record, std::string url, bool scan)
      : chat_(chat),
        stream_(stream),
        max_record_(max_record),
        framer_(max_record),
        url_(std::move(url)) {
    if (stream && scan) scanner_ = std::make_unique<StreamChunkScanner>(StreamProtocol::ollama);
  }

  bool on_bytes(std::string_view bytes, Emitter& out) override {
    if (!stream_) {
      whole_.append(bytes);
      return true;
    }
    const auto status =
        framer_.feed(bytes, [&](std::string_view line) { return handle(line, out); });
    return check(status, out);
  }

  // After the final record only the end of the body remains: a body cut short there lost
  // nothing (as for the OpenAI stream after [DONE]).
  bool finished() const override { return stream_ && done_seen_; }

  void warm() override {
    if (!stream_) return;
    warm_once<OllamaDecoder>(ollama_warm_record(chat_), chat_, true, max_record_, std::string(),
                             scanner_ != nullptr);
  }

  void on_end(Emitter& out) override {
    if (!stream_) {
      if (!handle(whole_, out)) return;
    } else if (!check(framer_.finish([&](std::string_view line) { return handle(line, out); }),
                      out)) {
      return;
    }
    if (!done_seen_ && !out.completion().error) {
      out.completion().error = {
          ErrorKind::truncated,
          fmt::format("{}: the stream ended without its final record (\"done\": true) after {} "
                      "records",
                      url_, records_)};
    }
  }

 private:
  bool check(http::FrameStatus status, Emitter& out) {
    if (status == http::FrameStatus::too_long) {
      out.completion().error = {
          ErrorKind::protocol,
          fmt::format("{}: a stream record exceeds the limit of {} bytes (record {})", url_,
                      max_record_, records_ + 1)};
      return false;
    }
    return status == http::FrameStatus::ok;
  }

  bool fail(Emitter& out, ErrorKind kind, std::string message) {
    out.completion().error = {kind, std::move(message)};
    return false;
  }

  bool handle(std::string_view line, Emitter& out) {
    ++records_;
    if (stream_ && scanner_ && scanner_->scan(line)) return handle_scanned(scanner_->chunk(), out);
    boost::system::error_code ec;
    // A stream record is small: parse it into stack memory, no heap allocation per token.
    unsigned char scratch[4096];
    json::monotonic_resource mr(scratch, sizeof scratch);
    json::value v = json::parse(line, ec, &mr);
    if (ec || !v.is_object()) {
      return fail(
          out, ErrorKind::protocol,
          fmt::format("{}: record {} of the stream is not a JSON object ({}): {}", url_, records_,
                      ec ? json_failure(line, ec) : "wrong type", json_excerpt(line)));
    }
    const auto& o = v.get_object();
    out.server_sent(std::max<int64_t>(0, get_int(o, "server_sent_ns").value_or(0)));
    if (const auto* e = o.if_contains("error")) {
      const std::string msg = e->is_string() ? std::string(e->get_string()) : json::serialize(*e);
      return fail(
          out, ErrorKind::server,
          fmt::format("{}: Ollama reported an error{}: {}", url_,
                      records_ > 1 ? fmt::format(" mid-stream (record {})", records_) : "", msg));
    }
    Completion& c = out.completion();
    std::string_view text;
    std::string_view thinking;
    if (chat_) {
      if (const auto* m = o.if_contains("message"); m && m->is_object()) {
        const auto& msg = m->get_object();
        if (const auto* t = msg.if_contains("content"); t && t->is_string()) text = t->get_string();
        if (const auto* t = msg.if_contains("thinking"); t && t->is_string()) {
          thinking = t->get_string();
        }
        if (const auto* tc = msg.if_contains("tool_calls"); tc && tc->is_array()) {
          for (const auto& call : tc->get_array()) {
            if (!call.is_object()) continue;
            ToolCall t;
            t.id = get_string(call.get_object(), "id");
            if (const auto* fn = call.get_object().if_contains("function"); fn && fn->is_object()) {
              t.name = get_string(fn->get_object(), "name");
              if (const auto* args = fn->get_object().if_contains("arguments")) {
                t.arguments_json =
                    args->is_string() ? std::string(args->get_string()) : json::serialize(*args);
              }
            }
            // Ollama sends each call whole, parallel calls in one array or one record each.
            c.tool_calls.push_back(std::move(t));
            const std::size_t idx = c.tool_calls.size() - 1;
            if (!out.tool_call(idx, c.tool_calls[idx].arguments_json)) return false;
          }
        }
      }
    } else {
      if (const auto* t = o.if_contains("response"); t && t->is_string()) text = t->get_string();
      if (const auto* t = o.if_contains("thinking"); t && t->is_string()) {
        thinking = t->get_string();
      }
    }
    if (!text.empty() || !thinking.empty()) {
      if (!out.token(text, thinking, nullptr)) return false;
    }
    if (const auto* m = o.if_contains("model"); m && m->is_string()) c.model = m->get_string();
    const auto* done = o.if_contains("done");
    if (done && done->is_bool() && done->get_bool()) {
      const auto* reason = o.if_contains("done_reason");
      apply_final({o.if_contains("total_duration"), o.if_contains("load_duration"),
                   o.if_contains("prompt_eval_count"), o.if_contains("prompt_eval_duration"),
                   o.if_contains("eval_count"), o.if_contains("eval_duration"),
                   reason != nullptr && reason->is_string() ? std::string_view(reason->get_string())
                                                            : std::string_view()},
                  c);
    }
    return true;
  }

  // The final record's statistics (durations in nanoseconds), from either path.
  struct FinalFields {
    const json::value* total_duration;
    const json::value* load_duration;
    const json::value* prompt_eval_count;
    const json::value* prompt_eval_duration;
    const json::value* eval_count;
    const json::value* eval_duration;
    std::string_view done_reason;
  };

  void apply_final(const FinalFields& k, Completion& c) {
    done_seen_ = true;
    ServerStats& s = c.server;
    s.total_duration_ns = server_count(k.total_duration, "total_duration", c);
    s.load_duration_ns = server_count(k.load_duration, "load_duration", c);
    s.prompt_eval_count = server_count(k.prompt_eval_count, "prompt_eval_count", c);
    s.prompt_eval_duration_ns = server_count(k.prompt_eval_duration, "prompt_eval_duration", c);
    s.eval_count = server_count(k.eval_count, "eval_count", c);
    s.eval_duration_ns = server_count(k.eval_duration, "eval_duration", c);
    c.finish_raw = k.done_reason;
    if (!c.tool_calls.empty()) {
      c.finish = FinishReason::tool_calls;
    } else if (c.finish_raw == "length") {
      c.finish = FinishReason::length;
    } else {
      c.finish = FinishReason::stop;
    }
    Figures& f = c.figures;
    f.tokens_out = s.eval_count;
    f.tokens_in = s.prompt_eval_count;
    if (s.load_duration_ns || s.prompt_eval_duration_ns) {
      f.ttft_server_ms = (static_cast<double>(s.load_duration_ns.value_or(0)) +
                          static_cast<double>(s.prompt_eval_duration_ns.value_or(0))) /
                         1e6;
    }
    if (s.eval_count && s.eval_duration_ns && *s.eval_duration_ns > 0) {
      f.decode_tps_server =
          static_cast<double>(*s.eval_count) * 1e9 / static_cast<double>(*s.eval_duration_ns);
    }
  }

  // A record of the common shape (the final one included), as handle would take it
  // (stream_chunk.hpp).
  bool handle_scanned(const StreamChunk& k, Emitter& out) {
    out.server_sent(std::max<int64_t>(0, get_int(&k.server_sent_ns).value_or(0)));
    std::string_view text;
    std::string_view thinking;
    if (chat_) {
      if (k.has_message) {
        if (k.has_message_content) text = k.message_content;
        if (k.has_message_thinking) thinking = k.message_thinking;
      }
    } else {
      if (k.has_response) text = k.response;
      if (k.has_thinking) thinking = k.thinking;
    }
    if (!text.empty() || !thinking.empty()) {
      if (!out.token(text, thinking, nullptr)) return false;
    }
    if (k.has_model) out.completion().model = k.model;
    if (k.done) {
      apply_final({&k.total_duration, &k.load_duration, &k.prompt_eval_count,
                   &k.prompt_eval_duration, &k.eval_count, &k.eval_duration,
                   k.has_done_reason ? std::string_view(k.done_reason) : std::string_view()},
                  out.completion());
    }
    return true;
  }

  bool chat_;
  bool stream_;
  std::size_t max_record_;
  http::NdjsonFramer framer_;
  std::string url_;
  std::unique_ptr<StreamChunkScanner> scanner_;  // streamed records of the common shape
  std::string whole_;
  bool done_seen_ = false;
  int records_ = 0;
};

}  // namespace

OllamaBackend::OllamaBackend(const EndpointConfig& config, Runtime& runtime, http::EndpointUrl url)
    : HttpBackend(config, runtime, std::move(url)) {
  kind_ = BackendKind::ollama;
}

bool OllamaBackend::build(const Request& r, http::HttpRequest& out, std::string& error) {
  if (r.model.empty()) {
    error = "Ollama needs a model name (e.g. --model llama3.2:1b); `ollama list` shows them";
    return false;
  }
  // The body's tree lives only until it is written out below: built in one arena (on the stack
  // for an ordinary request), as the OpenAI-compatible backend's, rather than with a heap
  // allocation for each key, string and table growth.
  unsigned char arena[4096];
  json::monotonic_resource mr(arena, sizeof arena);
  const json::storage_ptr sp(&mr);
  json::object body(sp);
  body.reserve(16);  // room for every field an ordinary request has: the table never regrows
  body["model"] = r.model;
  if (r.kind == RequestKind::chat) {
    if (r.messages.empty()) {
      error = "a chat request needs at least one message";
      return false;
    }
    json::array messages(sp);
    messages.reserve(r.messages.size());
    for (const auto& m : r.messages) {
      json::object jm(sp);
      jm.reserve(4);
      jm["role"] = m.role;
      jm["content"] = m.content;
      if (!m.thinking.empty()) jm["thinking"] = m.thinking;
      if (!m.tool_name.empty()) jm["tool_name"] = m.tool_name;
      // Recent Ollama versions give calls an id and take it back with the result; older ones
      // ignore both fields.
      if (!m.tool_call_id.empty()) jm["tool_call_id"] = m.tool_call_id;
      if (!m.tool_calls.empty()) {
        json::array calls(sp);
        for (const auto& tc : m.tool_calls) {
          json::object fn(sp);
          fn["name"] = tc.name;
          boost::system::error_code ec;
          json::value args =
              json::parse(tc.arguments_json.empty() ? "{}" : tc.arguments_json, ec, sp);
          // Arguments a model wrote that are not JSON go back as it wrote them, as text.
          fn["arguments"] = ec ? json::value(tc.arguments_json, sp) : std::move(args);
          json::object call({{"function", std::move(fn)}}, sp);
          if (!tc.id.empty()) call["id"] = tc.id;
          calls.push_back(std::move(call));
        }
        jm["tool_calls"] = std::move(calls);
      }
      messages.push_back(std::move(jm));
    }
    body["messages"] = std::move(messages);
    out.path = "/api/chat";
  } else {
    body["prompt"] = r.prompt;
    if (!r.system.empty()) body["system"] = r.system;
    out.path = "/api/generate";
  }
  body["stream"] = r.stream;
  auto opts = ollama_options(r.options, sp);
  if (!opts.empty()) body["options"] = std::move(opts);
  if (r.keep_alive) {
    if (all_digits(*r.keep_alive)) {
      int64_t seconds = 0;
      const auto& k = *r.keep_alive;
      const auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), seconds);
      if (ec != std::errc{} || end != k.data() + k.size()) {
        error = fmt::format("keep_alive '{}' is out of range (seconds, as a 64-bit integer)", k);
        return false;
      }
      body["keep_alive"] = seconds;
    } else {
      body["keep_alive"] = *r.keep_alive;
    }
  }
  if (r.format_json) {
    if (!add_json_field(body, "format", *r.format_json, "format", error,
                        /*allow_json_word=*/true)) {
      return false;
    }
  }
  if (!check_tool_choice(r, error)) return false;
  if (!r.logit_bias.empty()) {
    error = "Ollama has no logit_bias; bias tokens on an OpenAI-compatible server or in-process";
    return false;
  }
  if (r.tool_choice == "required") {
    error = "Ollama cannot be made to call a tool (tool_choice 'required'); use auto";
    return false;
  }
  const bool send_tools = r.tools_json && r.tool_choice != "none";
  if (send_tools && !add_json_field(body, "tools", *r.tools_json, "tools", error, false)) {
    return false;
  }
  if (r.think) body["think"] = *r.think;
  out.method = bhttp::verb::post;
  out.accept = "application/x-ndjson";
  out.body = json::serialize(body);
  return true;
}

std::unique_ptr<StreamDecoder> OllamaBackend::make_decoder(const Request& r) {
  return make_ollama_decoder(r.kind == RequestKind::chat, r.stream,
                             endpoint_->limits().max_record_bytes, endpoint());
}

std::string_view ollama_warm_record(bool chat) {
  return chat ? R"({"model":"m","created_at":"2026-01-01T00:00:00Z",)"
                R"("message":{"role":"assistant","content":"a"},"done":false})"
                "\n"
              : R"({"model":"m","created_at":"2026-01-01T00:00:00Z","response":"a","done":false})"
                "\n";
}

std::unique_ptr<StreamDecoder> make_ollama_decoder(bool chat, bool stream, std::size_t max_record,
                                                   std::string url, bool scan) {
  return std::make_unique<OllamaDecoder>(chat, stream, max_record, std::move(url), scan);
}

EndpointInfo OllamaBackend::check() {
  EndpointInfo info;
  info.url = endpoint();
  info.kind = BackendKind::ollama;
  info.server = "ollama";
  const int64_t timeout_ms = endpoint_->timeouts().check_ms;
  const int64_t t0 = now_ns();
  std::string body;
  auto r = fetch_blocking({bhttp::verb::get, "/api/version", "", "", "application/json"}, body,
                          timeout_ms);
  info.latency_ns = now_ns() - t0;
  if (r.error) {
    info.detail = r.error.message;
    return info;
  }
  if (r.status != 200) {
    info.detail = fmt::format("/api/version answered HTTP {}", r.status);
    return info;
  }
  // Up means Ollama's API answers: {"version": "..."}, not merely any 200.
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  const json::value* version =
      !ec && v.is_object() ? v.get_object().if_contains("version") : nullptr;
  if (version == nullptr || !version->is_string()) {
    info.detail = fmt::format(
        "/api/version answered HTTP 200 with {}, not Ollama's "
        "{{\"version\": ...}}; is this an Ollama server?",
        describe_body(r.content_type, body));
    return info;
  }
  info.version = std::string(version->get_string());
  info.healthy = true;
  info.detail = "ok";

  body.clear();
  r = fetch_blocking({bhttp::verb::get, "/api/tags", "", "", "application/json"}, body, timeout_ms);
  if (!r.error && r.status == 200) {
    v = json::parse(body, ec);
    if (!ec && v.is_object()) {
      if (const auto* models = v.get_object().if_contains("models"); models && models->is_array()) {
        for (const auto& m : models->get_array()) {
          if (m.is_object()) info.models.push_back(get_string(m.get_object(), "name"));
        }
      }
    }
  }
  body.clear();
  r = fetch_blocking({bhttp::verb::get, "/api/ps", "", "", "application/json"}, body, timeout_ms);
  if (!r.error && r.status == 200) {
    v = json::parse(body, ec);
    if (!ec && v.is_object()) {
      if (const auto* models = v.get_object().if_contains("models"); models && models->is_array()) {
        std::vector<std::string> loaded;
        for (const auto& m : models->get_array()) {
          if (m.is_object()) loaded.push_back(get_string(m.get_object(), "name"));
        }
        info.detail = loaded.empty() ? "ok, no model loaded"
                                     : fmt::format("ok, loaded: {}", fmt::join(loaded, ", "));
      }
    }
  }
  return info;
}

}  // namespace chimera::backends

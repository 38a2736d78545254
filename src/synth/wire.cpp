// The synthetic server's requests and records (see wire.hpp).
#include "synth/wire.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/stream_parser.hpp>
#include <boost/json/value.hpp>
#include <fmt/compile.h>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <iterator>
#include <limits>

namespace chimera::synth {

namespace json = boost::json;

// ---- faults and options ------------------------------------------------------------------------

namespace {

constexpr std::string_view kFaultForms =
    "expected drop-after:K, stall:K, error-after:K, 503, mix:K (each of the four in turn) or "
    "none (K: a token count >= 0)";

bool parse_count(std::string_view s, int& out) {
  if (s.empty() || s.size() > 9) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

}  // namespace

bool parse_fault(std::string_view spec, Fault& out, std::string& error) {
  if (spec == "none" || spec.empty()) {
    out = {};
    return true;
  }
  if (spec == "503") {
    out = {FaultKind::http_503, 0};
    return true;
  }
  const auto colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  FaultKind kind = FaultKind::none;
  if (name == "drop-after") {
    kind = FaultKind::drop_after;
  } else if (name == "stall") {
    kind = FaultKind::stall;
  } else if (name == "error-after") {
    kind = FaultKind::error_after;
  } else if (name == "mix") {
    kind = FaultKind::mix;
  } else {
    error = fmt::format("unknown fault '{}'; {}", spec, kFaultForms);
    return false;
  }
  int k = 0;
  if (colon == std::string_view::npos || !parse_count(spec.substr(colon + 1), k)) {
    error = fmt::format("fault '{}' needs a token count after the colon, e.g. {}:3; {}", spec, name,
                        kFaultForms);
    return false;
  }
  out = {kind, k};
  return true;
}

std::string to_string(const Fault& f) {
  switch (f.kind) {
    case FaultKind::none:
      return "none";
    case FaultKind::drop_after:
      return fmt::format("drop-after:{}", f.after_tokens);
    case FaultKind::stall:
      return fmt::format("stall:{}", f.after_tokens);
    case FaultKind::error_after:
      return fmt::format("error-after:{}", f.after_tokens);
    case FaultKind::http_503:
      return "503";
    case FaultKind::mix:
      return fmt::format("mix:{}", f.after_tokens);
  }
  return "none";
}

std::string validate(const Options& o) {
  if (o.port < 0 || o.port > 65535) return fmt::format("port {} is not in 0..65535", o.port);
  if (!(o.ttft_ms >= 0) || !std::isfinite(o.ttft_ms)) {
    return fmt::format("ttft_ms must be a number >= 0, got {}", o.ttft_ms);
  }
  if (!(o.tokens_per_s > 0) || !std::isfinite(o.tokens_per_s)) {
    return fmt::format("tokens_per_s must be a number > 0, got {}", o.tokens_per_s);
  }
  if (o.tokens < 0 || o.tokens > kMaxTokens) {
    return fmt::format("tokens must be in 0..{}, got {}", kMaxTokens, o.tokens);
  }
  if (!(o.jitter_ms >= 0) || !std::isfinite(o.jitter_ms)) {
    return fmt::format("jitter_ms must be a number >= 0, got {}", o.jitter_ms);
  }
  if (o.threads < 1 || o.threads > 256) {
    return fmt::format("threads must be in 1..256, got {}", o.threads);
  }
  if (!(o.fault_rate >= 0 && o.fault_rate <= 1)) {
    return fmt::format("fault_rate must be in 0..1, got {}", o.fault_rate);
  }
  if (o.fault.after_tokens < 0) {
    return fmt::format("the fault's token count must be >= 0, got {}", o.fault.after_tokens);
  }
  return {};
}

// ---- requests ----------------------------------------------------------------------------------

namespace {

std::string excerpt(const json::value& v) {
  std::string s = json::serialize(v);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

std::optional<double> as_number(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return std::nullopt;
}

// An integer, also when written as 8.0.
std::optional<int64_t> as_integer(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<int64_t>(v.get_uint64());
  }
  if (v.is_double()) {
    const double d = v.get_double();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
      return static_cast<int64_t>(d);
    }
  }
  return std::nullopt;
}

bool safe_model_name(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == ':' || c == '/' || c == '@' ||
                    c == '+';
    if (!ok) return false;
  }
  return true;
}

// Bytes of prompt text in messages (strings, or OpenAI's content parts with "text").
std::size_t message_bytes(const json::array& messages) {
  std::size_t n = 0;
  for (const auto& m : messages) {
    const auto* o = m.if_object();
    if (o == nullptr) continue;
    const auto* c = o->if_contains("content");
    if (c == nullptr) continue;
    if (c->is_string()) {
      n += c->get_string().size();
    } else if (c->is_array()) {
      for (const auto& part : c->get_array()) {
        if (const auto* po = part.if_object()) {
          if (const auto* t = po->if_contains("text"); t && t->is_string()) {
            n += t->get_string().size();
          }
        }
      }
    }
  }
  return n;
}

std::string parse_synth(const json::value& v, GenRequest& out) {
  const auto* o = v.if_object();
  if (o == nullptr) {
    return fmt::format(
        "synth must be an object such as {{\"ttft_ms\": 50, \"tokens_per_s\": 20, "
        "\"tokens\": 8, \"fault\": \"stall:2\"}}, got {}",
        excerpt(v));
  }
  for (const auto& [key, value] : *o) {
    if (key == "ttft_ms") {
      const auto d = as_number(value);
      if (!d || !(*d >= 0) || !std::isfinite(*d)) {
        return fmt::format("synth.ttft_ms must be a number >= 0, got {}", excerpt(value));
      }
      out.ttft_ms = *d;
    } else if (key == "tokens_per_s") {
      const auto d = as_number(value);
      if (!d || !(*d > 0) || !std::isfinite(*d)) {
        return fmt::format("synth.tokens_per_s must be a number > 0, got {}", excerpt(value));
      }
      out.tokens_per_s = *d;
    } else if (key == "tokens") {
      const auto n = as_integer(value);
      if (!n || *n < 0 || *n > kMaxTokens) {
        return fmt::format("synth.tokens must be an integer in 0..{}, got {}", kMaxTokens,
                           excerpt(value));
      }
      out.tokens = static_cast<int>(*n);
      out.limited = false;
    } else if (key == "fault") {
      if (!value.is_string()) {
        return fmt::format("synth.fault must be a string such as \"drop-after:3\", got {}",
                           excerpt(value));
      }
      Fault f;
      std::string error;
      if (!parse_fault(value.get_string(), f, error)) return "synth.fault: " + error;
      out.fault = f;
    } else {
      return fmt::format(
          "synth.{} is not a synthetic-server setting; known: ttft_ms, "
          "tokens_per_s, tokens, fault",
          std::string_view(key));
    }
  }
  return {};
}

}  // namespace

std::string parse_generation(Api api, std::string_view body, const Options& defaults,
                             GenRequest& out) {
  out = GenRequest{};
  out.api = api;
  out.stream = !is_openai(api);  // Ollama streams unless told not to; OpenAI the other way
  out.tokens = defaults.tokens;
  out.ttft_ms = defaults.ttft_ms;
  out.tokens_per_s = defaults.tokens_per_s;
  out.model = "synth";

  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return "the request body is empty; expected a JSON object such as "
           "{\"model\": \"synth\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}";
  }
  // Requests are small: the parser's stack and the parsed tree live in buffers on this stack
  // (spilling to the heap only for big bodies) instead of a malloc per node.
  unsigned char parser_stack[1024];
  unsigned char tree[8192];
  json::monotonic_resource tree_memory(tree, sizeof tree);
  json::stream_parser parser({}, {}, parser_stack);
  parser.reset(&tree_memory);
  boost::system::error_code ec;
  const std::size_t used = parser.write(body.data(), body.size(), ec);
  if (!ec) parser.finish(ec);
  if (ec) {
    return fmt::format("the request body is not valid JSON: {} (at byte {} of {})", ec.message(),
                       used, body.size());
  }
  const json::value v = parser.release();
  const auto* o = v.if_object();
  if (o == nullptr) {
    return fmt::format("the request body must be a JSON object, got {}", excerpt(v));
  }

  if (const auto* s = o->if_contains("stream"); s && !s->is_null()) {
    if (!s->is_bool()) return fmt::format("stream must be true or false, got {}", excerpt(*s));
    out.stream = s->get_bool();
  }
  if (const auto* m = o->if_contains("model"); m && !m->is_null()) {
    if (!m->is_string()) return fmt::format("model must be a string, got {}", excerpt(*m));
    if (safe_model_name(m->get_string())) out.model = std::string(m->get_string());
  }

  std::size_t prompt_bytes = 0;
  const bool chat = api == Api::ollama_chat || api == Api::openai_chat;
  if (chat) {
    const auto* m = o->if_contains("messages");
    if (m == nullptr || m->is_null()) {
      if (is_openai(api)) {
        return "messages is required: an array of {\"role\", \"content\"} objects";
      }
    } else if (!m->is_array()) {
      return fmt::format("messages must be an array of {{\"role\", \"content\"}} objects, got {}",
                         excerpt(*m));
    } else {
      prompt_bytes = message_bytes(m->get_array());
    }
  } else {
    const auto* p = o->if_contains("prompt");
    if (p == nullptr || p->is_null()) {
      if (is_openai(api)) return "prompt is required: a string";
    } else if (p->is_string()) {
      prompt_bytes = p->get_string().size();
    } else if (p->is_array() && is_openai(api)) {
      for (const auto& part : p->get_array()) {
        if (!part.is_string()) {
          return fmt::format("prompt must be a string or an array of strings, got {}", excerpt(*p));
        }
        prompt_bytes += part.get_string().size();
      }
    } else {
      return fmt::format("prompt must be a string, got {}", excerpt(*p));
    }
    if (const auto* s = o->if_contains("system"); s && s->is_string()) {
      prompt_bytes += s->get_string().size();
    }
  }
  out.prompt_tokens = static_cast<int>(std::max<std::size_t>(1, (prompt_bytes + 3) / 4));

  if (is_openai(api)) {
    for (const char* key : {"max_tokens", "max_completion_tokens"}) {
      const auto* t = o->if_contains(key);
      if (t == nullptr || t->is_null()) continue;
      const auto n = as_integer(*t);
      if (!n || *n < 0 || *n > kMaxTokens) {
        return fmt::format("{} must be an integer in 0..{}, got {}", key, kMaxTokens, excerpt(*t));
      }
      out.tokens = static_cast<int>(*n);
      out.limited = true;
    }
  } else if (const auto* opts = o->if_contains("options"); opts && !opts->is_null()) {
    if (!opts->is_object()) {
      return fmt::format("options must be an object, got {}", excerpt(*opts));
    }
    if (const auto* np = opts->get_object().if_contains("num_predict"); np && !np->is_null()) {
      const auto n = as_integer(*np);
      if (!n || *n > kMaxTokens) {
        return fmt::format("options.num_predict must be an integer up to {}, got {}", kMaxTokens,
                           excerpt(*np));
      }
      // Ollama: -1 is "no limit" and -2 "fill the context"; both leave the server's default.
      if (*n >= 0) {
        out.tokens = static_cast<int>(*n);
        out.limited = true;
      }
    }
  }

  if (const auto* s = o->if_contains("synth"); s && !s->is_null()) {
    if (auto error = parse_synth(*s, out); !error.empty()) return error;
  }
  return {};
}

// ---- records -----------------------------------------------------------------------------------

namespace {

// Ollama's created_at: RFC 3339 UTC with nanoseconds, written into `buf` (at least 40 bytes).
// The date part changes once a second, so each thread keeps the last one it formatted.
std::string_view created_at(char* buf) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  thread_local std::time_t cached_secs = -1;
  thread_local char cached[32];
  thread_local std::size_t cached_len = 0;
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    cached_len = std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_secs = secs;
  }
  std::memcpy(buf, cached, cached_len);
  char* end = fmt::format_to(buf + cached_len, FMT_COMPILE(".{:09}Z"), ns % 1'000'000'000);
  return {buf, static_cast<std::size_t>(end - buf)};
}

int64_t eval_duration_ns(const Summary& s) {
  return s.tokens > 0 ? std::llround(static_cast<double>(s.tokens) * 1e9 / s.tokens_per_s) : 0;
}

const char* finish_word(const Summary& s) {
  return s.limited ? "length" : "stop";
}

void append_timings(std::string& out, const Summary& s) {
  const double predicted_ms = static_cast<double>(eval_duration_ns(s)) / 1e6;
  fmt::format_to(std::back_inserter(out),
                 FMT_COMPILE("\"timings\":{{\"prompt_n\":{},\"prompt_ms\":{},\"predicted_n\":{},"
                             "\"predicted_ms\":{},\"predicted_per_second\":{}}}"),
                 s.prompt_tokens, s.ttft_ms, s.tokens, predicted_ms,
                 s.tokens > 0 ? s.tokens_per_s : 0.0);
}

void append_usage_object(std::string& out, const Summary& s) {
  fmt::format_to(std::back_inserter(out),
                 FMT_COMPILE("\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},"
                             "\"total_tokens\":{}}}"),
                 s.prompt_tokens, s.tokens, s.prompt_tokens + s.tokens);
}

// Ollama's statistics fields of a final record, after "done":true.
void append_ollama_stats(std::string& out, const Summary& s) {
  fmt::format_to(std::back_inserter(out),
                 FMT_COMPILE(",\"done_reason\":\"{}\",\"total_duration\":{},\"load_duration\":0,"
                             "\"prompt_eval_count\":{},\"prompt_eval_duration\":{},"
                             "\"eval_count\":{},\"eval_duration\":{}"),
                 finish_word(s), s.total_ns, s.prompt_tokens, std::llround(s.ttft_ms * 1e6),
                 s.tokens, eval_duration_ns(s));
}

// The fields every OpenAI chunk or response starts with.
void append_openai_head(std::string& out, const ResponseInfo& info, bool chunk) {
  const bool chat = info.api == Api::openai_chat;
  const char* object =
      chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  fmt::format_to(std::back_inserter(out),
                 FMT_COMPILE("{{\"id\":\"{}-synth-{}\",\"object\":\"{}\",\"created\":{},"
                             "\"model\":\"{}\","),
                 chat ? "chatcmpl" : "cmpl", info.id, object, info.created_s, info.model);
}

void append_ollama_head(std::string& out, const ResponseInfo& info) {
  out += "{\"model\":\"";
  out += info.model;
  out += "\",\"created_at\":\"";
  char date[48];
  out += created_at(date);
  out += "\",";
}

}  // namespace

void append_token_text(std::string& out, int index) {
  fmt::format_to(std::back_inserter(out), FMT_COMPILE("tok{} "), index + 1);
}

void append_token(std::string& out, const ResponseInfo& info, int index, int64_t sent_ns,
                  int64_t scheduled_ns) {
  // The hot path: the whole record in one pass of a compiled format into a stack buffer, then
  // one append (formatting piecewise into the string cost a quarter of the server's own CPU
  // time). Bounded by construction: the model name has at most 128 bytes (safe_model_name), the
  // date 30, the five integers 20 each, the literal text under 250.
  char buf[1024];
  char* end = buf;
  switch (info.api) {
    case Api::ollama_chat: {
      char date[48];
      end = fmt::format_to(buf,
                           FMT_COMPILE("{{\"model\":\"{}\",\"created_at\":\"{}\",\"message\":"
                                       "{{\"role\":\"assistant\",\"content\":\"tok{} \"}},"
                                       "\"done\":false,\"server_sent_ns\":{},"
                                       "\"scheduled_ns\":{}}}\n"),
                           info.model, created_at(date), index + 1, sent_ns, scheduled_ns);
      break;
    }
    case Api::ollama_generate: {
      char date[48];
      end = fmt::format_to(buf,
                           FMT_COMPILE("{{\"model\":\"{}\",\"created_at\":\"{}\","
                                       "\"response\":\"tok{} \",\"done\":false,"
                                       "\"server_sent_ns\":{},\"scheduled_ns\":{}}}\n"),
                           info.model, created_at(date), index + 1, sent_ns, scheduled_ns);
      break;
    }
    case Api::openai_chat:
      end = fmt::format_to(
          buf,
          FMT_COMPILE("data: {{\"id\":\"chatcmpl-synth-{}\",\"object\":\"chat.completion.chunk\","
                      "\"created\":{},\"model\":\"{}\",\"choices\":[{{\"index\":0,\"delta\":"
                      "{{{}\"content\":\"tok{} \"}},\"finish_reason\":null}}],"
                      "\"server_sent_ns\":{},\"scheduled_ns\":{}}}\n\n"),
          info.id, info.created_s, info.model, index == 0 ? "\"role\":\"assistant\"," : "",
          index + 1, sent_ns, scheduled_ns);
      break;
    case Api::openai_completion:
      end = fmt::format_to(
          buf,
          FMT_COMPILE("data: {{\"id\":\"cmpl-synth-{}\",\"object\":\"text_completion\","
                      "\"created\":{},\"model\":\"{}\",\"choices\":[{{\"index\":0,"
                      "\"text\":\"tok{} \",\"logprobs\":null,\"finish_reason\":null}}],"
                      "\"server_sent_ns\":{},\"scheduled_ns\":{}}}\n\n"),
          info.id, info.created_s, info.model, index + 1, sent_ns, scheduled_ns);
      break;
  }
  out.append(buf, static_cast<std::size_t>(end - buf));
}

void append_finish(std::string& out, const ResponseInfo& info, const Summary& s, int64_t sent_ns) {
  auto it = std::back_inserter(out);
  switch (info.api) {
    case Api::ollama_chat:
    case Api::ollama_generate:
      append_ollama_head(out, info);
      out += info.api == Api::ollama_chat
                 ? "\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true"
                 : "\"response\":\"\",\"done\":true";
      append_ollama_stats(out, s);
      fmt::format_to(it, FMT_COMPILE(",\"server_sent_ns\":{}}}\n"), sent_ns);
      return;
    case Api::openai_chat:
    case Api::openai_completion:
      out += "data: ";
      append_openai_head(out, info, true);
      fmt::format_to(
          it, FMT_COMPILE("\"choices\":[{{\"index\":0,{},\"finish_reason\":\"{}\"}}],"),
          info.api == Api::openai_chat ? "\"delta\":{}" : "\"text\":\"\",\"logprobs\":null",
          finish_word(s));
      append_timings(out, s);
      fmt::format_to(it, FMT_COMPILE(",\"server_sent_ns\":{}}}\n\n"), sent_ns);
      return;
  }
}

void append_usage(std::string& out, const ResponseInfo& info, const Summary& s, int64_t sent_ns) {
  out += "data: ";
  append_openai_head(out, info, true);
  out += "\"choices\":[],";
  append_usage_object(out, s);
  out += ',';
  append_timings(out, s);
  fmt::format_to(std::back_inserter(out), FMT_COMPILE(",\"server_sent_ns\":{}}}\n\n"), sent_ns);
}

void append_done(std::string& out) {
  out += "data: [DONE]\n\n";
}

void append_stream_error(std::string& out, Api api, std::string_view message) {
  const std::string quoted = json::serialize(json::value(json::string(message)));
  if (is_openai(api)) {
    fmt::format_to(std::back_inserter(out),
                   "data: {{\"error\":{{\"message\":{},\"type\":\"server_error\"}}}}\n\n", quoted);
  } else {
    fmt::format_to(std::back_inserter(out), "{{\"error\":{}}}\n", quoted);
  }
}

void append_whole(std::string& out, const ResponseInfo& info, const Summary& s, int64_t sent_ns) {
  auto it = std::back_inserter(out);
  auto all_tokens = [&] {
    for (int i = 0; i < s.tokens; ++i) append_token_text(out, i);
  };
  switch (info.api) {
    case Api::ollama_chat:
    case Api::ollama_generate:
      append_ollama_head(out, info);
      out += info.api == Api::ollama_chat ? "\"message\":{\"role\":\"assistant\",\"content\":\""
                                          : "\"response\":\"";
      all_tokens();
      out += info.api == Api::ollama_chat ? "\"},\"done\":true" : "\",\"done\":true";
      append_ollama_stats(out, s);
      fmt::format_to(it, FMT_COMPILE(",\"server_sent_ns\":{}}}\n"), sent_ns);
      return;
    case Api::openai_chat:
    case Api::openai_completion:
      append_openai_head(out, info, false);
      out += info.api == Api::openai_chat
                 ? "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\""
                 : "\"choices\":[{\"index\":0,\"text\":\"";
      all_tokens();
      fmt::format_to(it, FMT_COMPILE("\"{},{}\"finish_reason\":\"{}\"}}],"),
                     info.api == Api::openai_chat ? "}" : "",
                     info.api == Api::openai_chat ? "" : "\"logprobs\":null,", finish_word(s));
      append_usage_object(out, s);
      out += ',';
      append_timings(out, s);
      fmt::format_to(it, FMT_COMPILE(",\"server_sent_ns\":{}}}\n"), sent_ns);
      return;
  }
}

std::string error_body(bool openai_shape, int status, std::string_view message,
                       std::string_view type) {
  if (openai_shape) {
    return json::serialize(json::object{
        {"error", json::object{{"message", message}, {"type", type}, {"code", status}}}});
  }
  return json::serialize(json::object{{"error", message}});
}

}  // namespace chimera::synth

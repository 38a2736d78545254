#include "serve/protocol.hpp"

#include <chimera/core/options.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <ctime>

namespace chimera::serve {

namespace json = boost::json;

const char* route_of(Api api) {
  switch (api) {
    case Api::openai_chat:
      return "/v1/chat/completions";
    case Api::openai_completion:
      return "/v1/completions";
    case Api::ollama_chat:
      return "/api/chat";
    case Api::ollama_generate:
      return "/api/generate";
  }
  return "";
}

std::optional<Api> api_of(std::string_view path) {
  for (Api api :
       {Api::openai_chat, Api::openai_completion, Api::ollama_chat, Api::ollama_generate}) {
    if (path == route_of(api)) return api;
  }
  return std::nullopt;
}

namespace {

const char* kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

std::string wrong_type(std::string_view field, const json::value& v, std::string_view want) {
  return fmt::format("'{}' is {}; it must be {}", field, kind_name(v), want);
}

std::string get_string(const json::object& o, std::string_view key, std::string& out,
                       std::string_view where = {}) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return {};
  if (!v->is_string()) return wrong_type(fmt::format("{}{}", where, key), *v, "a string");
  out = std::string(v->get_string());
  return {};
}

std::string get_bool(const json::object& o, std::string_view key, std::optional<bool>& out) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return {};
  if (!v->is_bool()) return wrong_type(key, *v, "true or false");
  out = v->get_bool();
  return {};
}

std::optional<double> as_number(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return std::nullopt;
}

// Sets one option of the table from its JSON value.
template <class Spec>
std::string set_option(Options& o, const Spec& spec, std::string_view field, const json::value& v) {
  using Field = std::remove_cvref_t<decltype(o.*spec.member)>;
  auto& member = o.*spec.member;
  if constexpr (kIsStringsOption<Field>) {
    member.clear();
    if (v.is_string()) {
      member.emplace_back(v.get_string());
    } else if (v.is_array()) {
      for (const auto& s : v.get_array()) {
        if (!s.is_string()) return wrong_type(field, v, "a string or an array of strings");
        member.emplace_back(s.get_string());
      }
    } else {
      return wrong_type(field, v, "a string or an array of strings");
    }
    if (member.size() > static_cast<std::size_t>(spec.hi)) {
      return fmt::format("'{}' has {} strings; at most {} are accepted", field, member.size(),
                         spec.hi);
    }
    return {};
  } else {
    const auto n = as_number(v);
    if (!n) return wrong_type(field, v, "a number");
    if constexpr (kIsNumberOption<Field>) {
      member = *n;
    } else {
      if (v.is_double() && (std::trunc(*n) != *n || !std::isfinite(*n))) {
        return fmt::format("'{}' is {}; it must be a whole number", field, *n);
      }
      if (*n < static_cast<double>(spec.lo) || *n > static_cast<double>(spec.hi)) {
        return fmt::format("'{}' is {}; it must be from {} to {}", field, json::serialize(v),
                           spec.lo, spec.hi);
      }
      using T = typename Field::value_type;
      member = v.is_int64()    ? static_cast<T>(v.get_int64())
               : v.is_uint64() ? static_cast<T>(v.get_uint64())
                               : static_cast<T>(*n);
    }
    return {};
  }
}

// Sets the option our table calls `name` from `v`; "" also when the table has no such name and
// `known` is set false.
std::string set_named_option(Options& o, std::string_view name, std::string_view field,
                             const json::value& v, bool& known) {
  known = false;
  std::string error;
  for_each_option([&](const auto& spec) {
    if (known || name != spec.name) return;
    known = true;
    error = set_option(o, spec, field, v);
  });
  return error;
}

// Message content: a string, or OpenAI's array of parts of which only text parts are taken.
std::string read_content(const json::value& v, std::string_view where, std::string& out) {
  if (v.is_null()) return {};
  if (v.is_string()) {
    out = std::string(v.get_string());
    return {};
  }
  if (!v.is_array()) return wrong_type(where, v, "a string or an array of content parts");
  for (const auto& part : v.get_array()) {
    const auto* po = part.if_object();
    const auto* type = po ? po->if_contains("type") : nullptr;
    if (po == nullptr || type == nullptr || !type->is_string()) {
      return fmt::format("{}: each content part must be an object with a 'type'", where);
    }
    if (type->get_string() != "text") {
      return fmt::format(
          "{}: content parts of type '{}' are not supported; only 'text' parts are (the "
          "backends behind this server take text)",
          where, std::string_view(type->get_string()));
    }
    const auto* text = po->if_contains("text");
    if (text == nullptr || !text->is_string()) {
      return fmt::format("{}: a text part needs a string 'text'", where);
    }
    out += std::string_view(text->get_string());
  }
  return {};
}

std::string read_tool_calls(const json::value& v, std::string_view where, bool openai,
                            std::vector<ToolCall>& out) {
  if (v.is_null()) return {};
  if (!v.is_array()) return wrong_type(where, v, "an array");
  for (const auto& c : v.get_array()) {
    const auto* co = c.if_object();
    const auto* fn = co ? co->if_contains("function") : nullptr;
    if (fn == nullptr || !fn->is_object()) {
      return fmt::format("{}: each tool call must be an object with a 'function' object", where);
    }
    ToolCall tc;
    if (const auto* id = co->if_contains("id"); id && id->is_string()) tc.id = id->get_string();
    const auto& f = fn->get_object();
    if (const auto* name = f.if_contains("name"); name && name->is_string()) {
      tc.name = name->get_string();
    } else {
      return fmt::format("{}: a tool call's function needs a string 'name'", where);
    }
    if (const auto* args = f.if_contains("arguments"); args != nullptr) {
      // OpenAI sends the arguments as JSON text, Ollama as an object.
      if (args->is_string()) {
        tc.arguments_json = std::string(args->get_string());
      } else if (args->is_object()) {
        tc.arguments_json = json::serialize(*args);
      } else {
        return fmt::format("{}: a tool call's arguments must be {}", where,
                           openai ? "JSON text" : "an object");
      }
    } else {
      tc.arguments_json = "{}";
    }
    out.push_back(std::move(tc));
  }
  return {};
}

// An Ollama option outside the option table that changes nothing in the reply, as clients that
// send Ollama's defaults give it: a sampler's "off" value (mirostat 0, tfs_z 1, typical_p 1, no
// presence or frequency penalty), the repeat penalty's window at every backend's default (64),
// or how a server runs the model (batch size, memory mapping and locking, low-VRAM mode, NUMA,
// main GPU, F16 KV cache), which the pool's own settings decide. Any other value is a 400.
bool ollama_option_asks_nothing(std::string_view key, const json::value& v) {
  const auto num = as_number(v);
  const auto is = [&num](double x) { return num && *num == x; };
  if (key == "mirostat" || key == "presence_penalty" || key == "frequency_penalty") return is(0);
  if (key == "tfs_z" || key == "typical_p") return is(1);
  if (key == "repeat_last_n") return is(64);
  for (const char* k :
       {"num_batch", "use_mmap", "use_mlock", "low_vram", "numa", "main_gpu", "f16_kv"}) {
    if (key == k) return true;
  }
  return false;
}

std::string read_messages(const json::object& o, bool openai, std::vector<Message>& out) {
  const auto* v = o.if_contains("messages");
  // Ollama takes a chat request without messages as one with none: a request to load the model
  // (ollama_load_reply).
  if ((v == nullptr || v->is_null()) && !openai) return {};
  if (v == nullptr) return "'messages' is missing; a chat request needs an array of messages";
  if (!v->is_array()) return wrong_type("messages", *v, "an array of messages");
  std::size_t i = 0;
  for (const auto& m : v->get_array()) {
    const std::string where = fmt::format("messages[{}]", i++);
    const auto* mo = m.if_object();
    if (mo == nullptr) return wrong_type(where, m, "an object");
    Message msg;
    const auto* role = mo->if_contains("role");
    if (role == nullptr || !role->is_string()) {
      return fmt::format("{}.role is missing or not a string", where);
    }
    msg.role = role->get_string();
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for it
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" &&
        msg.role != "tool") {
      return fmt::format("{}.role is '{}'; it must be system, user, assistant or tool", where,
                         msg.role);
    }
    if (const auto* c = mo->if_contains("content")) {
      if (auto e = read_content(*c, where + ".content", msg.content); !e.empty()) return e;
    }
    if (const auto* images = mo->if_contains("images");
        images && !(images->is_array() && images->get_array().empty()) && !images->is_null()) {
      return fmt::format("{}.images: images are not supported by this server", where);
    }
    if (const auto* tc = mo->if_contains("tool_calls")) {
      if (auto e = read_tool_calls(*tc, where + ".tool_calls", openai, msg.tool_calls);
          !e.empty()) {
        return e;
      }
    }
    for (const char* key : {"thinking", "reasoning_content"}) {
      if (auto e = get_string(*mo, key, msg.thinking, where + "."); !e.empty()) return e;
    }
    if (auto e = get_string(*mo, "tool_call_id", msg.tool_call_id, where + "."); !e.empty()) {
      return e;
    }
    if (auto e = get_string(*mo, "tool_name", msg.tool_name, where + "."); !e.empty()) return e;
    if (msg.role == "tool" && msg.tool_name.empty()) {
      if (auto e = get_string(*mo, "name", msg.tool_name, where + "."); !e.empty()) return e;
    }
    out.push_back(std::move(msg));
  }
  return {};
}

// OpenAI fields that change what comes back in ways the backends cannot give: refused unless
// they ask for the default.
std::string refuse_unmappable_openai(const json::object& o) {
  if (const auto* n = o.if_contains("n"); n && !n->is_null()) {
    const auto v = as_number(*n);
    if (!v || *v != 1) {
      return fmt::format("'n' is {}; this server returns one choice per request (n = 1)",
                         json::serialize(*n));
    }
  }
  for (const char* key : {"logprobs", "echo"}) {
    if (const auto* v = o.if_contains(key); v && !v->is_null()) {
      const bool off = (v->is_bool() && !v->get_bool()) || (v->is_int64() && v->get_int64() == 0);
      if (!off) return fmt::format("'{}' is not supported by this server", key);
    }
  }
  for (const char* key : {"top_logprobs", "best_of", "suffix"}) {
    if (const auto* v = o.if_contains(key); v && !v->is_null()) {
      // The values that ask for nothing (as clients that fill in every field send them).
      const auto num = as_number(*v);
      if (std::string_view(key) == "best_of" && num && *num == 1) continue;
      if (std::string_view(key) == "top_logprobs" && num && *num == 0) continue;
      if (std::string_view(key) == "suffix" && v->is_string() && v->get_string().empty()) continue;
      return fmt::format("'{}' is not supported by this server", key);
    }
  }
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    if (const auto* v = o.if_contains(key); v && !v->is_null()) {
      const auto num = as_number(*v);
      if (!num) return wrong_type(key, *v, "a number");
      if (*num != 0) {
        return fmt::format(
            "'{}' is {}; it has no equivalent in every backend: use repeat_penalty (1: none)", key,
            *num);
      }
    }
  }
  if (const auto* v = o.if_contains("logit_bias");
      v && !v->is_null() && !(v->is_object() && v->get_object().empty())) {
    return "'logit_bias' is not supported by this server";
  }
  return {};
}

std::string parse_openai(Api api, const json::object& o, Parsed& out) {
  Request& r = out.request;
  if (auto e = refuse_unmappable_openai(o); !e.empty()) return e;
  std::optional<bool> stream;
  if (auto e = get_bool(o, "stream", stream); !e.empty()) return e;
  r.stream = stream.value_or(false);
  if (const auto* so = o.if_contains("stream_options"); so && so->is_object()) {
    if (const auto* u = so->get_object().if_contains("include_usage"); u && u->is_bool()) {
      out.include_usage = u->get_bool();
    }
  }
  if (api == Api::openai_chat) {
    r.kind = RequestKind::chat;
    if (auto e = read_messages(o, true, r.messages); !e.empty()) return e;
  } else {
    r.kind = RequestKind::completion;
    const auto* p = o.if_contains("prompt");
    if (p == nullptr) return "'prompt' is missing; a completion request needs a prompt";
    if (p->is_string()) {
      r.prompt = p->get_string();
    } else if (p->is_array() && p->get_array().size() == 1 && p->get_array()[0].is_string()) {
      r.prompt = p->get_array()[0].get_string();
    } else {
      return wrong_type("prompt", *p, "a string (or an array of one string)");
    }
  }
  // Sampling options: our names where OpenAI-compatible servers take them as they are.
  for (const auto& [key, value] : o) {
    if (value.is_null()) continue;
    std::string_view name = key;
    if (name == "max_tokens" || name == "max_completion_tokens") name = "num_predict";
    if (name == "num_ctx" || name == "num_gpu" || name == "num_thread" || name == "num_predict" ||
        name == "top_k" || name == "top_p" || name == "min_p" || name == "temperature" ||
        name == "repeat_penalty" || name == "seed" || name == "stop") {
      bool known = false;
      if (auto e = set_named_option(r.options, name, key, value, known); !e.empty()) return e;
    }
  }
  std::string user;
  if (auto e = get_string(o, "user", user); !e.empty()) return e;
  r.session = user;
  if (const auto* tools = o.if_contains("tools"); tools && !tools->is_null()) {
    if (!tools->is_array()) return wrong_type("tools", *tools, "an array of tool definitions");
    if (!tools->get_array().empty()) r.tools_json = json::serialize(*tools);
  }
  if (const auto* tc = o.if_contains("tool_choice"); tc && !tc->is_null()) {
    if (!tc->is_string()) {
      return "'tool_choice' naming one function is not supported; use \"auto\", \"required\" or "
             "\"none\"";
    }
    r.tool_choice = std::string(tc->get_string());
  }
  if (const auto* rf = o.if_contains("response_format"); rf && !rf->is_null()) {
    const auto* ro = rf->if_object();
    const auto* type = ro ? ro->if_contains("type") : nullptr;
    if (type == nullptr || !type->is_string()) {
      return "'response_format' must be an object with a 'type'";
    }
    const std::string_view t = type->get_string();
    if (t == "json_object") {
      r.format_json = "json";
    } else if (t == "json_schema") {
      const auto* js = ro->if_contains("json_schema");
      const auto* schema = js && js->is_object() ? js->get_object().if_contains("schema") : nullptr;
      if (schema == nullptr || !schema->is_object()) {
        return "'response_format.json_schema.schema' must be a JSON schema object";
      }
      r.format_json = json::serialize(*schema);
    } else if (t != "text") {
      return fmt::format(
          "'response_format.type' is '{}'; it must be text, json_object or "
          "json_schema",
          t);
    }
  }
  return {};
}

std::string parse_ollama(Api api, const json::object& o, Parsed& out) {
  Request& r = out.request;
  std::optional<bool> stream;
  if (auto e = get_bool(o, "stream", stream); !e.empty()) return e;
  r.stream = stream.value_or(true);  // Ollama streams unless told not to
  for (const char* key : {"images", "context", "template", "suffix"}) {
    if (const auto* v = o.if_contains(key); v && !v->is_null()) {
      if (v->is_array() && v->get_array().empty()) continue;
      if (v->is_string() && v->get_string().empty()) continue;
      return fmt::format("'{}' is not supported by this server", key);
    }
  }
  if (api == Api::ollama_chat) {
    r.kind = RequestKind::chat;
    if (auto e = read_messages(o, false, r.messages); !e.empty()) return e;
  } else {
    r.kind = RequestKind::completion;
    if (auto e = get_string(o, "prompt", r.prompt); !e.empty()) return e;
    if (auto e = get_string(o, "system", r.system); !e.empty()) return e;
  }
  if (const auto* opts = o.if_contains("options"); opts && !opts->is_null()) {
    if (!opts->is_object()) return wrong_type("options", *opts, "an object");
    for (const auto& [key, value] : opts->get_object()) {
      if (value.is_null()) continue;
      bool known = false;
      const std::string field = fmt::format("options.{}", std::string_view(key));
      if (auto e = set_named_option(r.options, key, field, value, known); !e.empty()) return e;
      if (!known && ollama_option_asks_nothing(key, value)) continue;
      if (!known) {
        std::string names;
        for (auto n : option_names()) names += fmt::format("{}{}", names.empty() ? "" : ", ", n);
        return fmt::format("'{}' is not an option this server can pass on; it takes {}", field,
                           names);
      }
    }
  }
  if (const auto* f = o.if_contains("format"); f && !f->is_null()) {
    if (f->is_string()) {
      if (f->get_string() == "json") {
        r.format_json = "json";
      } else if (!f->get_string().empty()) {
        return fmt::format("'format' is '{}'; it must be \"json\" or a JSON schema object",
                           std::string_view(f->get_string()));
      }
    } else if (f->is_object()) {
      r.format_json = json::serialize(*f);
    } else {
      return wrong_type("format", *f, "\"json\" or a JSON schema object");
    }
  }
  if (const auto* k = o.if_contains("keep_alive"); k && !k->is_null()) {
    if (k->is_string()) {
      r.keep_alive = std::string(k->get_string());
    } else if (const auto n = as_number(*k)) {
      r.keep_alive = fmt::format("{}s", static_cast<int64_t>(*n));
    } else {
      return wrong_type("keep_alive", *k, "a duration (\"5m\") or a number of seconds");
    }
  }
  if (const auto* tools = o.if_contains("tools"); tools && !tools->is_null()) {
    if (!tools->is_array()) return wrong_type("tools", *tools, "an array of tool definitions");
    if (!tools->get_array().empty()) r.tools_json = json::serialize(*tools);
  }
  if (auto e = get_bool(o, "think", r.think); !e.empty()) return e;
  return {};
}

std::string iso_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  ::gmtime_r(&ts.tv_sec, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
}

const char* openai_finish(FinishReason f) {
  switch (f) {
    case FinishReason::length:
      return "length";
    case FinishReason::tool_calls:
      return "tool_calls";
    default:
      return "stop";
  }
}

std::optional<int64_t> prompt_tokens(const Completion& c) {
  if (c.figures.tokens_in) return c.figures.tokens_in;
  return c.server.prompt_eval_count;
}
std::optional<int64_t> output_tokens(const Completion& c) {
  if (c.figures.tokens_out) return c.figures.tokens_out;
  return c.server.eval_count;
}

json::object usage_of(const Completion& c) {
  const int64_t in = prompt_tokens(c).value_or(0);
  const int64_t outn = output_tokens(c).value_or(0);
  json::object u{{"prompt_tokens", in}, {"completion_tokens", outn}, {"total_tokens", in + outn}};
  // Prompt tokens served from a cache (in-process: the session's KV; llama-server: cache_n), in
  // OpenAI's field for them.
  std::optional<int64_t> cached = c.figures.prompt_tokens_cached;
  if (!cached) cached = c.server.cache_n;
  if (cached) u["prompt_tokens_details"] = json::object{{"cached_tokens", *cached}};
  return u;
}

json::array openai_tool_calls(const std::vector<ToolCall>& calls) {
  json::array a;
  for (const auto& tc : calls) {
    a.push_back(json::object{
        {"id", tc.id},
        {"type", "function"},
        {"function", json::object{{"name", tc.name}, {"arguments", tc.arguments_json}}}});
  }
  return a;
}

json::array ollama_tool_calls(const std::vector<ToolCall>& calls) {
  json::array a;
  for (const auto& tc : calls) {
    boost::system::error_code ec;
    json::value args = json::parse(tc.arguments_json, ec);
    if (ec || !args.is_object()) args = json::object{};
    a.push_back(json::object{{"function", json::object{{"name", tc.name}, {"arguments", args}}}});
  }
  return a;
}

// Ollama's closing statistics, from what the backend measured or was told.
void add_ollama_stats(const Completion& c, json::object& o) {
  o["done_reason"] = c.finish == FinishReason::length ? "length" : "stop";
  if (c.figures.e2e_ns) o["total_duration"] = *c.figures.e2e_ns;
  if (c.server.load_duration_ns) o["load_duration"] = *c.server.load_duration_ns;
  if (auto n = prompt_tokens(c)) o["prompt_eval_count"] = *n;
  if (c.server.prompt_eval_duration_ns) {
    o["prompt_eval_duration"] = *c.server.prompt_eval_duration_ns;
  } else if (c.server.prompt_ms) {
    o["prompt_eval_duration"] = static_cast<int64_t>(*c.server.prompt_ms * 1e6);
  }
  if (auto n = output_tokens(c)) o["eval_count"] = *n;
  if (c.server.eval_duration_ns) {
    o["eval_duration"] = *c.server.eval_duration_ns;
  } else if (c.server.predicted_ms) {
    o["eval_duration"] = static_cast<int64_t>(*c.server.predicted_ms * 1e6);
  }
}

// Appends `s` as a JSON string, escaped as boost::json::serialize escapes it: '"', '\\' and
// the control characters below 0x20 ("\n" and the like by name, the rest as \u00XX), every
// other byte as it is.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // where the bytes not yet copied begin
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_sse(std::string& out, const json::value& v) {
  out += "data: ";
  out += json::serialize(v);
  out += "\n\n";
}
void append_line(std::string& out, const json::value& v) {
  out += json::serialize(v);
  out += '\n';
}

std::atomic<uint64_t> g_next_id{1};

}  // namespace

std::string parse_request(Api api, std::string_view body, Parsed& out) {
  boost::system::error_code ec;
  // The tree lives only while the request is read into `out`: one arena (on the stack for an
  // ordinary request) rather than a heap allocation per key and string.
  unsigned char arena[8192];
  json::monotonic_resource mr(arena, sizeof arena);
  json::value v = json::parse(body, ec, &mr);
  if (ec) {
    return fmt::format("the request body is not valid JSON ({}); send one JSON object",
                       ec.message());
  }
  if (!v.is_object())
    return fmt::format("the request body is {}; it must be a JSON object", kind_name(v));
  const auto& o = v.get_object();
  if (auto e = get_string(o, "model", out.model); !e.empty()) return e;
  out.request.model = out.model;
  std::string error = is_openai(api) ? parse_openai(api, o, out) : parse_ollama(api, o, out);
  if (!error.empty()) return error;
  if (auto e = validate(out.request.options); !e.empty()) return e;
  return {};
}

std::optional<std::string> ollama_load_reply(Api api, const Request& r, std::string_view model) {
  const bool load = (api == Api::ollama_generate && r.prompt.empty() && r.system.empty()) ||
                    (api == Api::ollama_chat && r.messages.empty());
  if (!load) return std::nullopt;
  // keep_alive 0 ("0", "0s", "0m", the number 0, read as "0s") asks Ollama to unload the model.
  bool unload = false;
  if (r.keep_alive) {
    const std::string_view k = *r.keep_alive;
    const std::string_view number =
        k.substr(0, std::min(k.find_first_not_of("0123456789."), k.size()));
    unload = number.find('0') != std::string_view::npos &&
             number.find_first_of("123456789") == std::string_view::npos;
  }
  json::object o{{"model", model}, {"created_at", iso_now()}};
  if (api == Api::ollama_chat) {
    o["message"] = json::object{{"role", "assistant"}, {"content", ""}};
  } else {
    o["response"] = "";
  }
  o["done"] = true;
  o["done_reason"] = unload ? "unload" : "load";
  return json::serialize(o) + "\n";
}

std::string error_body(bool openai, std::string_view message, std::string_view type) {
  if (openai) {
    return json::serialize(json::object{
        {"error", json::object{{"message", message}, {"type", type}, {"code", nullptr}}}});
  }
  return json::serialize(json::object{{"error", message}});
}

int status_for(const Error& e) {
  switch (e.kind) {
    case ErrorKind::bad_request:
      return 400;
    case ErrorKind::connect:
      return 502;
    case ErrorKind::timeout:
      return 504;
    case ErrorKind::http_status:
      if (e.http_status >= 400 && e.http_status < 600) return e.http_status;
      return 502;
    case ErrorKind::cancelled:
      return 503;
    default:
      return 502;
  }
}

Encoder::Encoder(Api api, bool stream, std::string model, bool include_usage)
    : api_(api),
      stream_(stream),
      model_(std::move(model)),
      include_usage_(include_usage),
      id_(fmt::format("{}{}", api == Api::openai_chat ? "chatcmpl-" : "cmpl-",
                      g_next_id.fetch_add(1))),
      created_(static_cast<int64_t>(std::time(nullptr))) {}

const char* Encoder::content_type() const {
  if (!stream_) return "application/json";
  return is_openai(api_) ? "text/event-stream" : "application/x-ndjson";
}

// A token's record is written straight into `out`: building a JSON value and serializing it
// cost about 7,000 instructions and a dozen allocations per token, on the path of every token
// the client waits for. The bytes are those boost::json::serialize writes for the same value
// (keys in the same order, strings escaped the same way; tests/serve/protocol_test.cpp checks
// it). Tool calls, rare, still go through a JSON value.
void Encoder::token(const TokenEvent& ev, std::string& out) {
  if (!ev.relayed.empty()) relaying_ = true;
  if (relaying_) {
    out += ev.relayed;
    return;
  }
  const bool tool_call = ev.tool_call != nullptr && ev.tool_call_index >= 0;
  switch (api_) {
    case Api::openai_chat: {
      if (tool_call) {
        token_with_tool_call(ev, out);
        return;
      }
      if (ev.index != 0 && ev.text.empty() && ev.thinking.empty()) return;
      out += record_head();
      const char* sep = "";
      if (ev.index == 0) {
        out += R"("role":"assistant")";
        sep = ",";
      }
      if (!ev.text.empty()) {
        out.append(sep).append(R"("content":)");
        append_json_string(out, ev.text);
        sep = ",";
      }
      if (!ev.thinking.empty()) {
        out.append(sep).append(R"("reasoning_content":)");
        append_json_string(out, ev.thinking);
      }
      out += "},\"finish_reason\":null}]}\n\n";
      return;
    }
    case Api::openai_completion:
      if (ev.text.empty()) return;
      out += record_head();
      append_json_string(out, ev.text);
      out += ",\"finish_reason\":null}]}\n\n";
      return;
    case Api::ollama_chat:
      // Tool calls go out whole, before the last line, as Ollama sends them.
      if (ev.text.empty() && ev.thinking.empty()) return;
      out += record_head();
      append_json_string(out, iso_now());
      out += R"(,"message":{"role":"assistant","content":)";
      append_json_string(out, ev.text);
      if (!ev.thinking.empty()) {
        out += R"(,"thinking":)";
        append_json_string(out, ev.thinking);
      }
      out += "},\"done\":false}\n";
      return;
    case Api::ollama_generate:
      if (ev.text.empty() && ev.thinking.empty()) return;
      out += record_head();
      append_json_string(out, iso_now());
      out += R"(,"response":)";
      append_json_string(out, ev.text);
      if (!ev.thinking.empty()) {
        out += R"(,"thinking":)";
        append_json_string(out, ev.thinking);
      }
      out += ",\"done\":false}\n";
      return;
  }
}

// What every token record of this response begins with, up to its first varying field.
const std::string& Encoder::record_head() {
  if (!record_head_.empty()) return record_head_;
  std::string& h = record_head_;
  if (is_openai(api_)) {
    const bool chat = api_ == Api::openai_chat;
    h = R"(data: {"id":)";
    append_json_string(h, id_);
    h += chat ? R"(,"object":"chat.completion.chunk","created":)"
              : R"(,"object":"text_completion","created":)";
    h += std::to_string(created_);
    h += R"(,"model":)";
    append_json_string(h, model_);
    h += chat ? R"(,"choices":[{"index":0,"delta":{)" : R"(,"choices":[{"index":0,"text":)";
  } else {
    h = R"({"model":)";
    append_json_string(h, model_);
    h += R"(,"created_at":)";
  }
  return h;
}

void Encoder::token_with_tool_call(const TokenEvent& ev, std::string& out) {
  json::object delta;
  if (ev.index == 0) delta["role"] = "assistant";
  if (!ev.text.empty()) delta["content"] = ev.text;
  if (!ev.thinking.empty()) delta["reasoning_content"] = ev.thinking;
  json::object fn{{"arguments", ev.arguments_delta}};
  json::object call{{"index", ev.tool_call_index}};
  if (calls_started_.insert(ev.tool_call_index).second) {
    call["id"] = ev.tool_call->id;
    call["type"] = "function";
    fn["name"] = ev.tool_call->name;
  }
  call["function"] = std::move(fn);
  delta["tool_calls"] = json::array{std::move(call)};
  append_sse(out, json::object{{"id", id_},
                               {"object", "chat.completion.chunk"},
                               {"created", created_},
                               {"model", model_},
                               {"choices", json::array{json::object{{"index", 0},
                                                                    {"delta", std::move(delta)},
                                                                    {"finish_reason", nullptr}}}}});
}

void Encoder::finish(const Completion& c, std::string& out) {
  switch (api_) {
    case Api::openai_chat:
    case Api::openai_completion: {
      if (c.relayed.on) {  // the upstream's own last records; [DONE] ends every stream
        out += c.relayed.tail;
        if (include_usage_) out += c.relayed.usage;
        out += "data: [DONE]\n\n";
        return;
      }
      const bool chat = api_ == Api::openai_chat;
      // {..., "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}, or "text":"" for
      // completions: written as the token records are (record_head), the same bytes as
      // boost::json's serializer (tests/serve/protocol_test.cpp).
      out += record_head();
      out += chat ? R"(},"finish_reason":")" : R"("","finish_reason":")";
      out += openai_finish(c.finish);
      out += "\"}]}\n\n";
      if (include_usage_) {
        append_sse(out, json::object{{"id", id_},
                                     {"object", chat ? "chat.completion.chunk" : "text_completion"},
                                     {"created", created_},
                                     {"model", model_},
                                     {"choices", json::array{}},
                                     {"usage", usage_of(c)}});
      }
      out += "data: [DONE]\n\n";
      return;
    }
    case Api::ollama_chat: {
      if (!c.tool_calls.empty()) {
        append_line(
            out,
            json::object{{"model", model_},
                         {"created_at", iso_now()},
                         {"message", json::object{{"role", "assistant"},
                                                  {"content", ""},
                                                  {"tool_calls", ollama_tool_calls(c.tool_calls)}}},
                         {"done", false}});
      }
      json::object o{{"model", model_},
                     {"created_at", iso_now()},
                     {"message", json::object{{"role", "assistant"}, {"content", ""}}},
                     {"done", true}};
      add_ollama_stats(c, o);
      append_line(out, o);
      return;
    }
    case Api::ollama_generate: {
      json::object o{
          {"model", model_}, {"created_at", iso_now()}, {"response", ""}, {"done", true}};
      add_ollama_stats(c, o);
      append_line(out, o);
      return;
    }
  }
}

void Encoder::stream_error(std::string_view message, std::string& out) {
  if (is_openai(api_)) {
    append_sse(out, json::object{{"error", json::object{{"message", message},
                                                        {"type", "server_error"},
                                                        {"code", nullptr}}}});
    out += "data: [DONE]\n\n";
  } else {
    append_line(out, json::object{{"error", message}});
  }
}

std::string Encoder::whole(const Completion& c) {
  switch (api_) {
    case Api::openai_chat: {
      json::object msg{{"role", "assistant"}, {"content", c.text}};
      if (!c.thinking.empty()) msg["reasoning_content"] = c.thinking;
      if (!c.tool_calls.empty()) msg["tool_calls"] = openai_tool_calls(c.tool_calls);
      return json::serialize(json::object{
          {"id", id_},
          {"object", "chat.completion"},
          {"created", created_},
          {"model", model_},
          {"choices", json::array{json::object{{"index", 0},
                                               {"message", std::move(msg)},
                                               {"finish_reason", openai_finish(c.finish)}}}},
          {"usage", usage_of(c)}});
    }
    case Api::openai_completion:
      return json::serialize(json::object{
          {"id", id_},
          {"object", "text_completion"},
          {"created", created_},
          {"model", model_},
          {"choices",
           json::array{json::object{
               {"index", 0}, {"text", c.text}, {"finish_reason", openai_finish(c.finish)}}}},
          {"usage", usage_of(c)}});
    case Api::ollama_chat: {
      json::object msg{{"role", "assistant"}, {"content", c.text}};
      if (!c.thinking.empty()) msg["thinking"] = c.thinking;
      if (!c.tool_calls.empty()) msg["tool_calls"] = ollama_tool_calls(c.tool_calls);
      json::object o{{"model", model_},
                     {"created_at", iso_now()},
                     {"message", std::move(msg)},
                     {"done", true}};
      add_ollama_stats(c, o);
      return json::serialize(o);
    }
    case Api::ollama_generate: {
      json::object o{{"model", model_}, {"created_at", iso_now()}, {"response", c.text}};
      if (!c.thinking.empty()) o["thinking"] = c.thinking;
      o["done"] = true;
      add_ollama_stats(c, o);
      return json::serialize(o);
    }
  }
  return {};
}

}  // namespace chimera::serve

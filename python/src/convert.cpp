// Python dicts <-> the engine's structs. Strict: an unknown key or a wrong type is a BadInput
// naming the key, so a typo never goes unnoticed.
#include "native.hpp"

#include <chimera/backends/environment.hpp>
#include <chimera/core/options.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <initializer_list>
#include <span>
#include <string_view>

namespace chimera::python {

namespace {

[[noreturn]] void bad(const std::string& message) {
  throw BadInput(message);
}

std::string type_name(const py::handle& v) {
  return py::str(py::type::handle_of(v).attr("__name__")).cast<std::string>();
}

template <class T>
T as(const py::handle& v, const std::string& what, const char* expected) {
  try {
    return v.cast<T>();
  } catch (const py::cast_error&) {
    bad(fmt::format("{} must be {} (got {})", what, expected, type_name(v)));
  }
}

py::dict as_dict(const py::handle& v, const std::string& what) {
  if (!py::isinstance<py::dict>(v))
    bad(fmt::format("{} must be a dict (got {})", what, type_name(v)));
  return py::reinterpret_borrow<py::dict>(v);
}

void known_keys(const py::dict& d, std::span<const std::string_view> keys,
                const std::string& what) {
  for (const auto& [k, v] : d) {
    (void)v;
    if (!py::isinstance<py::str>(k)) bad(fmt::format("{}: keys must be strings", what));
    const std::string key = k.cast<std::string>();
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      bad(fmt::format("{}: unknown key '{}' (known: {})", what, key, fmt::join(keys, ", ")));
    }
  }
}

void known_keys(const py::dict& d, std::initializer_list<std::string_view> keys,
                const std::string& what) {
  known_keys(d, std::span<const std::string_view>(keys.begin(), keys.size()), what);
}

// d[key] when present and not None.
py::object get(const py::dict& d, const char* key) {
  if (!d.contains(key)) return py::none();
  return py::reinterpret_borrow<py::object>(d[key]);
}

template <class T>
void read(const py::dict& d, const char* key, const std::string& what, const char* expected,
          T& out) {
  py::object v = get(d, key);
  if (!v.is_none()) out = as<T>(v, fmt::format("{} '{}'", what, key), expected);
}

template <class T>
void read_opt(const py::dict& d, const char* key, const std::string& what, const char* expected,
              std::optional<T>& out) {
  py::object v = get(d, key);
  if (!v.is_none()) out = as<T>(v, fmt::format("{} '{}'", what, key), expected);
}

std::vector<std::string> string_list(const py::handle& v, const std::string& what) {
  if (py::isinstance<py::str>(v)) return {v.cast<std::string>()};
  if (!py::isinstance<py::list>(v) && !py::isinstance<py::tuple>(v)) {
    bad(fmt::format("{} must be a string or a list of strings (got {})", what, type_name(v)));
  }
  std::vector<std::string> out;
  for (const auto& item : v) out.push_back(as<std::string>(item, what, "a string"));
  return out;
}

// The option table (options.hpp) drives both directions: a key per option, an int where the
// option is whole, a number where it is fractional, a string or a list of strings for stop.
Options options_from(const py::handle& h) {
  const std::string what = "options";
  py::dict d = as_dict(h, what);
  known_keys(d, option_names(), what);
  Options o;
  for_each_option([&](const auto& spec) {
    auto& field = o.*spec.member;
    using Field = std::remove_cvref_t<decltype(field)>;
    if constexpr (kIsStringsOption<Field>) {
      if (py::object v = get(d, spec.name); !v.is_none()) {
        field = string_list(v, fmt::format("{} '{}'", what, spec.name));
      }
    } else {
      read_opt(d, spec.name, what, kIsNumberOption<Field> ? "a number" : "an int", field);
    }
  });
  return o;
}

py::dict options_to_dict(const Options& o) {
  py::dict d;
  for_each_set_option(o, [&d](std::string_view name, const auto& value) {
    d[py::str(name.data(), name.size())] = value;
  });
  return d;
}

Message message_from(const py::handle& h, std::size_t i) {
  const std::string what = fmt::format("messages[{}]", i);
  py::dict d = as_dict(h, what);
  known_keys(d, {"role", "content", "thinking", "tool_calls", "tool_name", "tool_call_id"}, what);
  Message m;
  read(d, "role", what, "a string", m.role);
  if (m.role.empty()) bad(fmt::format("{} needs a 'role' (system, user, assistant or tool)", what));
  read(d, "content", what, "a string", m.content);
  read(d, "thinking", what, "a string", m.thinking);
  read(d, "tool_name", what, "a string", m.tool_name);
  read(d, "tool_call_id", what, "a string", m.tool_call_id);
  if (py::object calls = get(d, "tool_calls"); !calls.is_none()) {
    std::size_t j = 0;
    for (const auto& c : calls) {
      const std::string cw = fmt::format("{} tool_calls[{}]", what, j++);
      py::dict cd = as_dict(c, cw);
      known_keys(cd, {"id", "name", "arguments"}, cw);
      ToolCall t;
      read(cd, "id", cw, "a string", t.id);
      read(cd, "name", cw, "a string", t.name);
      read(cd, "arguments", cw, "a string of JSON", t.arguments_json);
      m.tool_calls.push_back(std::move(t));
    }
  }
  return m;
}

BackendKind backend_from(const std::string& name, const std::string& what) {
  if (const auto kind = parse_backend_kind(name)) return *kind;
  bad(fmt::format("{}: unknown backend '{}' (ollama, openai, llama)", what, name));
}

pool::PoolEndpoint endpoint_from(const py::handle& h, const std::string& what) {
  py::dict d = as_dict(h, what);
  known_keys(d,
             {"url", "backend", "max_concurrency", "api_key", "headers", "ca_file", "client_cert",
              "client_key", "insecure", "proxy", "retry_attempts", "retry_budget_ms", "timeouts",
              "limits", "llama", "expand", "resolve_interval_ms"},
             what);
  pool::PoolEndpoint pe;
  EndpointConfig& c = pe.config;
  read(d, "url", what, "a string", c.url);
  std::string backend = "openai";
  read(d, "backend", what, "a string", backend);
  c.kind = backend_from(backend, what);
  // No url: the environment's (OLLAMA_HOST, OPENAI_BASE_URL), as ollama-python and
  // openai-python read it.
  if (c.url.empty()) c.url = endpoint_from_environment(c.kind);
  if (c.url.empty())
    bad(
        fmt::format("{} needs a 'url' (a server URL, or a GGUF file for "
                    "backend 'llama'; $OLLAMA_HOST or $OPENAI_BASE_URL may give it)",
                    what));
  read(d, "max_concurrency", what, "an int", pe.max_concurrency);
  read(d, "expand", what, "a string", pe.expand);
  read(d, "resolve_interval_ms", what, "an int", pe.resolve_interval_ms);
  if (pe.max_concurrency < 0)
    bad(fmt::format("{}: max_concurrency must be 0 (no limit) or more", what));
  read(d, "api_key", what, "a string", c.api_key);
  if (c.api_key.empty()) c.api_key = api_key_from_environment(c.kind);
  read(d, "ca_file", what, "a string", c.tls.ca_file);
  read(d, "client_cert", what, "a string", c.tls.client_cert);
  read(d, "client_key", what, "a string", c.tls.client_key);
  read(d, "insecure", what, "a bool", c.tls.insecure);
  read(d, "proxy", what, "a string", c.proxy);
  read(d, "retry_attempts", what, "an int", c.retry.attempts);
  read(d, "retry_budget_ms", what, "an int", c.retry.budget_ms);
  if (py::object h = get(d, "headers"); !h.is_none()) {
    const std::string hw = what + " headers";
    for (const auto& [name, value] : as_dict(h, hw)) {
      c.headers.emplace_back(as<std::string>(name, hw, "a dict of str to str"),
                             as<std::string>(value, hw, "a dict of str to str"));
    }
  }
  if (py::object t = get(d, "timeouts"); !t.is_none()) {
    const std::string tw = what + " timeouts";
    py::dict td = as_dict(t, tw);
    known_keys(td, {"connect_ms", "first_token_ms", "idle_ms", "total_ms"}, tw);
    read(td, "connect_ms", tw, "an int", c.timeouts.connect_ms);
    read(td, "first_token_ms", tw, "an int", c.timeouts.first_token_ms);
    read(td, "idle_ms", tw, "an int", c.timeouts.idle_ms);
    read(td, "total_ms", tw, "an int", c.timeouts.total_ms);
  }
  if (py::object l = get(d, "limits"); !l.is_none()) {
    const std::string lw = what + " limits";
    py::dict ld = as_dict(l, lw);
    known_keys(ld, {"max_record_bytes", "max_body_bytes", "max_idle_connections", "idle_expiry_ms"},
               lw);
    read(ld, "max_record_bytes", lw, "an int", c.limits.max_record_bytes);
    read(ld, "max_body_bytes", lw, "an int", c.limits.max_body_bytes);
    read(ld, "max_idle_connections", lw, "an int", c.limits.max_idle_connections);
    read(ld, "idle_expiry_ms", lw, "an int", c.limits.idle_expiry_ms);
  }
  if (py::object l = get(d, "llama"); !l.is_none()) {
    const std::string lw = what + " llama";
    py::dict ld = as_dict(l, lw);
    known_keys(ld,
               {"gpu_layers", "ctx_per_seq", "parallel", "threads", "batch", "prefill_chunk",
                "flash_attention"},
               lw);
    read(ld, "gpu_layers", lw, "an int", c.llama.gpu_layers);
    read(ld, "ctx_per_seq", lw, "an int", c.llama.ctx_per_seq);
    read(ld, "parallel", lw, "an int", c.llama.parallel);
    read(ld, "threads", lw, "an int", c.llama.threads);
    read(ld, "batch", lw, "an int", c.llama.batch);
    read(ld, "prefill_chunk", lw, "an int", c.llama.prefill_chunk);
    read(ld, "flash_attention", lw, "a bool", c.llama.flash_attention);
  }
  return pe;
}

py::dict endpoint_to_dict(const pool::PoolEndpoint& pe) {
  const EndpointConfig& c = pe.config;
  py::dict d;
  d["url"] = c.url;
  d["backend"] = to_string(c.kind);
  d["max_concurrency"] = pe.max_concurrency;
  if (!pe.expand.empty()) {
    d["expand"] = pe.expand;
    d["resolve_interval_ms"] = pe.resolve_interval_ms;
  }
  if (!c.api_key.empty()) d["api_key"] = c.api_key;
  if (!c.tls.ca_file.empty()) d["ca_file"] = c.tls.ca_file;
  if (!c.tls.client_cert.empty()) d["client_cert"] = c.tls.client_cert;
  if (!c.tls.client_key.empty()) d["client_key"] = c.tls.client_key;
  if (c.tls.insecure) d["insecure"] = true;
  if (!c.proxy.empty()) d["proxy"] = c.proxy;
  d["retry_attempts"] = c.retry.attempts;
  d["retry_budget_ms"] = c.retry.budget_ms;
  if (!c.headers.empty()) {
    py::dict headers;
    for (const auto& [name, value] : c.headers) headers[py::str(name)] = value;
    d["headers"] = headers;
  }
  d["timeouts"] =
      py::dict(py::arg("connect_ms") = c.timeouts.connect_ms,
               py::arg("first_token_ms") = c.timeouts.first_token_ms,
               py::arg("idle_ms") = c.timeouts.idle_ms, py::arg("total_ms") = c.timeouts.total_ms);
  d["limits"] = py::dict(py::arg("max_record_bytes") = c.limits.max_record_bytes,
                         py::arg("max_body_bytes") = c.limits.max_body_bytes,
                         py::arg("max_idle_connections") = c.limits.max_idle_connections,
                         py::arg("idle_expiry_ms") = c.limits.idle_expiry_ms);
  if (c.kind == BackendKind::llama) {
    d["llama"] = py::dict(
        py::arg("gpu_layers") = c.llama.gpu_layers, py::arg("ctx_per_seq") = c.llama.ctx_per_seq,
        py::arg("parallel") = c.llama.parallel, py::arg("threads") = c.llama.threads,
        py::arg("batch") = c.llama.batch, py::arg("prefill_chunk") = c.llama.prefill_chunk,
        py::arg("flash_attention") = c.llama.flash_attention);
  }
  return d;
}

}  // namespace

Request request_from(const py::dict& d) {
  const std::string what = "request";
  known_keys(
      d,
      {"kind", "model", "messages", "prompt", "system", "options", "stream", "keep_alive", "format",
       "tools", "tool_choice", "think", "session", "agent", "pin", "slot_id", "cache_prompt"},
      what);
  Request r;
  std::string kind = "chat";
  read(d, "kind", what, "a string", kind);
  if (kind == "chat") {
    r.kind = RequestKind::chat;
  } else if (kind == "completion") {
    r.kind = RequestKind::completion;
  } else {
    bad(fmt::format("request 'kind' must be 'chat' or 'completion' (got '{}')", kind));
  }
  read(d, "model", what, "a string", r.model);
  if (py::object msgs = get(d, "messages"); !msgs.is_none()) {
    if (!py::isinstance<py::list>(msgs) && !py::isinstance<py::tuple>(msgs)) {
      bad(fmt::format("messages must be a list of dicts (got {})", type_name(msgs)));
    }
    std::size_t i = 0;
    for (const auto& m : msgs) r.messages.push_back(message_from(m, i++));
  }
  read(d, "prompt", what, "a string", r.prompt);
  read(d, "system", what, "a string", r.system);
  if (r.kind == RequestKind::chat && r.messages.empty()) {
    bad("a chat request needs at least one message");
  }
  if (py::object o = get(d, "options"); !o.is_none()) r.options = options_from(o);
  read(d, "stream", what, "a bool", r.stream);
  read_opt(d, "keep_alive", what, "a string", r.keep_alive);
  read_opt(d, "format", what, "a string (\"json\" or a JSON schema)", r.format_json);
  read_opt(d, "tools", what, "a string (a JSON array)", r.tools_json);
  read_opt(d, "tool_choice", what, "a string (auto, required or none)", r.tool_choice);
  read_opt(d, "think", what, "a bool", r.think);
  read(d, "session", what, "a string", r.session);
  read(d, "agent", what, "a string", r.agent);
  read(d, "pin", what, "an int", r.pin);
  read_opt(d, "slot_id", what, "an int", r.slot_id);
  read_opt(d, "cache_prompt", what, "a bool", r.cache_prompt);
  return r;
}

std::vector<pool::PoolConfig> pools_from(const py::handle& list) {
  if (!py::isinstance<py::list>(list) && !py::isinstance<py::tuple>(list)) {
    bad(fmt::format("pools must be a list of dicts (got {})", type_name(list)));
  }
  std::vector<pool::PoolConfig> out;
  std::size_t i = 0;
  for (const auto& h : list) {
    std::string what = fmt::format("pools[{}]", i++);
    py::dict d = as_dict(h, what);
    known_keys(d,
               {"name", "routing", "model", "retries", "hedge_after_ms", "health_interval_ms",
                "breaker", "endpoints", "fallback"},
               what);
    pool::PoolConfig pc;
    read(d, "name", what, "a string", pc.name);
    what = fmt::format("pool '{}'", pc.name);
    std::string routing = to_string(pc.routing);
    read(d, "routing", what, "a string", routing);
    auto r = pool::parse_routing(routing);
    if (!r) {
      bad(
          fmt::format("{}: unknown routing '{}' (pinned, round-robin, least-outstanding, "
                      "session-affinity)",
                      what, routing));
    }
    pc.routing = *r;
    read(d, "model", what, "a string", pc.model);
    read(d, "retries", what, "an int", pc.retries);
    read(d, "hedge_after_ms", what, "an int", pc.hedge_after_ms);
    read(d, "health_interval_ms", what, "an int", pc.health_interval_ms);
    read(d, "fallback", what, "a string", pc.fallback);
    if (py::object b = get(d, "breaker"); !b.is_none()) {
      const std::string bw = what + " breaker";
      py::dict bd = as_dict(b, bw);
      known_keys(bd, {"base_backoff_ms", "max_backoff_ms"}, bw);
      read(bd, "base_backoff_ms", bw, "an int", pc.breaker.base_backoff_ms);
      read(bd, "max_backoff_ms", bw, "an int", pc.breaker.max_backoff_ms);
    }
    py::object eps = get(d, "endpoints");
    if (eps.is_none() || py::len(eps) == 0) bad(fmt::format("{} has no endpoints", what));
    std::size_t j = 0;
    for (const auto& e : eps) {
      pc.endpoints.push_back(endpoint_from(e, fmt::format("{} endpoints[{}]", what, j++)));
    }
    for (const auto& other : out) {
      if (other.name == pc.name) bad(fmt::format("two pools are named '{}'", pc.name));
    }
    out.push_back(std::move(pc));
  }
  if (out.empty()) bad("no pool: give at least one pool with one endpoint");
  return out;
}

py::dict pool_to_dict(const pool::PoolConfig& pc) {
  py::dict d;
  d["name"] = pc.name;
  d["routing"] = pool::to_string(pc.routing);
  d["model"] = pc.model;
  d["retries"] = pc.retries;
  d["hedge_after_ms"] = pc.hedge_after_ms;
  d["health_interval_ms"] = pc.health_interval_ms;
  if (!pc.fallback.empty()) d["fallback"] = pc.fallback;
  d["breaker"] = py::dict(py::arg("base_backoff_ms") = pc.breaker.base_backoff_ms,
                          py::arg("max_backoff_ms") = pc.breaker.max_backoff_ms);
  py::list eps;
  for (const auto& e : pc.endpoints) eps.append(endpoint_to_dict(e));
  d["endpoints"] = eps;
  return d;
}

workflow::WorkflowConfig workflow_config_from(const py::handle& h) {
  if (py::isinstance<py::str>(h)) {
    const std::string s = h.cast<std::string>();
    if (s == "baseline") return workflow::baseline_config();
    if (s == "chimera") return workflow::chimera_config();
    workflow::WorkflowConfig c;
    std::string error;
    if (!workflow::load_config(s, c, error)) bad(error);
    return c;
  }
  const std::string what = "workflow config";
  py::dict d = as_dict(h, what);
  known_keys(d, {"name", "options", "digest_budget", "analysis_tokens", "report_tokens"}, what);
  workflow::WorkflowConfig c;
  read(d, "name", what, "a string", c.name);
  if (py::object o = get(d, "options"); !o.is_none()) c.options = options_from(o);
  read(d, "digest_budget", what, "an int", c.digest_budget);
  read(d, "analysis_tokens", what, "an int", c.analysis_tokens);
  read(d, "report_tokens", what, "an int", c.report_tokens);
  if (c.name.empty()) c.name = "custom";
  return c;
}

py::dict workflow_config_to_dict(const workflow::WorkflowConfig& c) {
  py::dict d;
  d["name"] = c.name;
  d["options"] = options_to_dict(c.options);
  d["digest_budget"] = c.digest_budget;
  d["analysis_tokens"] = c.analysis_tokens;
  d["report_tokens"] = c.report_tokens;
  return d;
}

py::dict record_to_dict(const multi::RequestRecord& r, const std::string& program) {
  auto opt = [](int64_t v) -> py::object {
    return v != 0 ? py::object(py::int_(v)) : py::object(py::none());
  };
  py::dict d;
  d["program"] = program;
  d["agent"] = r.agent;
  d["request"] = r.request;
  d["ok"] = r.ok;
  d["error"] = r.error;
  d["t_send_ns"] = r.t_send_ns;
  d["t_first_token_ns"] = opt(r.t_first_token_ns);
  d["t_last_token_ns"] = opt(r.t_last_token_ns);
  d["t_done_ns"] = r.t_done_ns;
  d["first_byte_server_ns"] = opt(r.first_byte_server_ns);
  d["tokens_out"] = r.tokens_out >= 0 ? py::object(py::int_(r.tokens_out)) : py::object(py::none());
  d["chunks"] = r.chunks;
  d["lag_sum_ns"] = r.lag_sum_ns;
  d["lag_max_ns"] = r.lag_max_ns;
  d["stalls"] = r.stalls;
  if (!r.lags_ns.empty()) d["lags_ns"] = r.lags_ns;
  if (!r.endpoint.empty()) d["endpoint"] = r.endpoint;
  return d;
}

multi::RequestRecord record_from(const py::handle& h) {
  const std::string what = "record";
  py::dict d = as_dict(h, what);
  multi::RequestRecord r;
  auto i64 = [&](const char* key, int64_t& out, int64_t none_value) {
    py::object v = get(d, key);
    out = v.is_none() ? none_value : as<int64_t>(v, fmt::format("record '{}'", key), "an int");
  };
  py::object agent = get(d, "agent");
  if (!agent.is_none()) r.agent = as<int>(agent, "record 'agent'", "an int");
  py::object request = get(d, "request");
  if (!request.is_none()) r.request = as<int>(request, "record 'request'", "an int");
  read(d, "ok", what, "a bool", r.ok);
  read(d, "error", what, "a string", r.error);
  read(d, "endpoint", what, "a string", r.endpoint);
  i64("t_send_ns", r.t_send_ns, 0);
  i64("t_first_token_ns", r.t_first_token_ns, 0);
  i64("t_last_token_ns", r.t_last_token_ns, 0);
  i64("t_done_ns", r.t_done_ns, 0);
  i64("first_byte_server_ns", r.first_byte_server_ns, 0);
  i64("tokens_out", r.tokens_out, -1);
  i64("chunks", r.chunks, 0);
  i64("lag_sum_ns", r.lag_sum_ns, 0);
  i64("lag_max_ns", r.lag_max_ns, 0);
  i64("stalls", r.stalls, 0);
  if (py::object lags = get(d, "lags_ns"); !lags.is_none()) {
    r.lags_ns = as<std::vector<int64_t>>(lags, "record 'lags_ns'", "a list of ints");
  }
  return r;
}

py::dict figures_to_dict(const multi::ConcurrencyFigures& f) {
  auto opt = [](const std::optional<double>& v) -> py::object {
    return v ? py::object(py::float_(*v)) : py::object(py::none());
  };
  py::dict d;
  d["agents"] = f.agents;
  d["requests"] = f.requests;
  d["errors"] = f.errors;
  d["tokens"] = f.tokens;
  d["wall_s"] = f.wall_s;
  d["system_tps"] = f.system_tps;
  d["efficiency"] = opt(f.efficiency);
  d["contention"] = opt(f.contention);
  d["stall_rate"] = opt(f.stall_rate);
  d["balance"] = f.balance;
  d["decode_tps_client"] = f.decode_tps_client;
  d["ttft_client_p50_ms"] = f.ttft_p50;
  d["ttft_client_p90_ms"] = f.ttft_p90;
  d["ttft_client_p99_ms"] = f.ttft_p99;
  d["ttft_client_max_ms"] = f.ttft_max;
  d["itl_p50_ms"] = f.itl_p50;
  d["itl_p99_ms"] = f.itl_p99;
  d["overhead_ttft_p50_ms"] = opt(f.overhead_ttft_p50);
  d["overhead_ttft_p99_ms"] = opt(f.overhead_ttft_p99);
  d["delivery_lag_p50_ms"] = opt(f.lag_p50);
  d["delivery_lag_p99_ms"] = opt(f.lag_p99);
  d["e2e_p50_ms"] = f.e2e_p50;
  d["e2e_p99_ms"] = f.e2e_p99;
  return d;
}

void register_convert(py::module_& m) {
  m.def(
      "load_pools",
      [](const std::string& path) {
        std::vector<pool::PoolConfig> pools;
        std::string error;
        bool ok = false;
        {
          py::gil_scoped_release nogil;
          ok = pool::load_pools(path, pools, error);
        }
        if (!ok) throw BadInput(error);
        py::list out;
        for (const auto& pc : pools) out.append(pool_to_dict(pc));
        return out;
      },
      py::arg("path"),
      "Pools from a TOML file (docs/pools.md), as a list of dicts. Raises BadInputError naming "
      "the file, line and key that is wrong.");
  m.def(
      "parse_pools",
      [](const std::string& text, const std::string& source) {
        std::vector<pool::PoolConfig> pools;
        std::string error;
        if (!pool::parse_pools(text, source, pools, error)) throw BadInput(error);
        py::list out;
        for (const auto& pc : pools) out.append(pool_to_dict(pc));
        return out;
      },
      py::arg("text"), py::arg("source") = "<string>", "Pools from TOML text, as a list of dicts.");
  m.def(
      "normalize_pools",
      [](const py::handle& pools) {
        py::list out;
        for (const auto& pc : pools_from(pools)) out.append(pool_to_dict(pc));
        return out;
      },
      py::arg("pools"), "Checks pool dicts and fills in every default, as the engine reads them.");
  m.def(
      "option_table",
      [] {
        py::list out;
        for_each_option([&out](const auto& spec) {
          using Field = std::remove_cvref_t<decltype(Options{}.*spec.member)>;
          py::dict d;
          d["name"] = spec.name;
          d["type"] = kIsStringsOption<Field>  ? "strings"
                      : kIsNumberOption<Field> ? "number"
                                               : "int";
          d["lo"] = spec.lo;
          d["hi"] = spec.hi;
          d["doc"] = spec.doc;
          out.append(d);
        });
        return out;
      },
      "The request options (the engine's option table): name, type ('int', 'number' or "
      "'strings'), lo, hi (for 'strings': how many) and doc, in the table's order.");
  m.def(
      "workflow_config",
      [](const py::handle& h) { return workflow_config_to_dict(workflow_config_from(h)); },
      py::arg("config"),
      "A workflow configuration as a dict: 'baseline', 'chimera', a TOML file, or a dict.");
  m.def(
      "check_request",
      [](const py::dict& d) {
        (void)request_from(d);
        return true;
      },
      py::arg("request"), "Checks a request dict as the engine reads it (raises BadInputError).");
}

}  // namespace chimera::python

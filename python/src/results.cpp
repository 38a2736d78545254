// What a request gives back: Completion (chimeraforge.Result) and Chunk.
#include "bridge.hpp"

#include <chimera/metrics/figures.hpp>

#include <fmt/format.h>

namespace chimera::python {

namespace {

std::optional<double> ms(const std::optional<int64_t>& ns) {
  if (!ns) return std::nullopt;
  return static_cast<double>(*ns) / 1e6;
}

py::object tool_call_dict(const ToolCall& t) {
  return py::dict(py::arg("id") = t.id, py::arg("name") = t.name,
                  py::arg("arguments") = t.arguments_json);
}

// Times of the record: t_done is when the caller got the result when that is known.
multi::RequestRecord record_of(const PyCompletion& p, int agent, int request) {
  const Completion& c = p.c;
  const Figures& f = c.figures;
  multi::RequestRecord r;
  r.agent = agent;
  r.request = request;
  r.ok = c.ok();
  r.error = c.error.message;
  r.endpoint = c.endpoint;
  r.t_send_ns = f.t_send_ns;
  r.t_first_token_ns = f.t_first_token_ns.value_or(0);
  r.t_last_token_ns = f.t_last_token_ns.value_or(0);
  if (p.t_delivered_ns != 0) {
    r.t_done_ns = p.t_delivered_ns;
  } else {
    r.t_done_ns = f.e2e_ns ? f.t_send_ns + *f.e2e_ns : f.t_send_ns;
  }
  if (r.t_send_ns == 0) r.t_send_ns = r.t_done_ns;  // nothing was sent (a bad request)
  r.first_byte_server_ns = f.first_byte_server_ns.value_or(0);
  r.tokens_out = f.tokens_out.value_or(-1);
  r.chunks = f.chunks.value_or(0);
  r.lag_sum_ns = p.lags.sum_ns;
  r.lag_max_ns = p.lags.max_ns;
  r.stalls = p.lags.stalls;
  r.lags_ns = p.lags.all_ns;
  r.itl_ns = f.itl_ns;
  return r;
}

}  // namespace

py::object make_completion(CallState& st) {
  if (st.result_obj) return st.result_obj;
  auto pc = std::make_shared<PyCompletion>();
  {
    std::lock_guard lock(st.mu);
    // done: on_done was the request's last callback, nothing writes these any more.
    if (st.completion) pc->c = std::move(*st.completion);
    st.completion.reset();
    pc->lags = std::move(st.lags);
  }
  pc->backend = st.backend;
  pc->t_delivered_ns = now_ns();
  st.result_obj = py::cast(pc);
  return st.result_obj;
}

void register_results(py::module_& m) {
  using P = PyCompletion;
  py::class_<P, std::shared_ptr<P>>(
      m, "Completion",
      "A finished request: the text, why it stopped, what failed (if anything), and every "
      "per-request figure of METRICS.md. Times are CLOCK_MONOTONIC nanoseconds (`*_ns`, "
      "comparable with time.monotonic_ns()) or milliseconds (`*_ms`); a figure that could not "
      "be obtained is None.")
      .def_property_readonly(
          "ok", [](const P& p) { return p.c.ok(); },
          "True when the request completed without error.")
      .def_property_readonly(
          "text", [](const P& p) { return p.c.text; },
          "The generated text (for chat, the assistant message's content).")
      .def_property_readonly(
          "thinking", [](const P& p) { return p.c.thinking; },
          "Reasoning text, when the server sends it apart.")
      .def_property_readonly(
          "tool_calls",
          [](const P& p) {
            py::list out;
            for (const auto& t : p.c.tool_calls) out.append(tool_call_dict(t));
            return out;
          },
          "Tool calls the model asked for: dicts with id, name, arguments (JSON text).")
      .def_property_readonly(
          "finish_reason", [](const P& p) { return std::string(to_string(p.c.finish)); },
          "none, stop, length, tool_calls, cancelled or error.")
      .def_property_readonly(
          "finish_raw", [](const P& p) { return p.c.finish_raw; },
          "The server's own word for why it stopped.")
      .def_property_readonly("model", [](const P& p) { return p.c.model; })
      .def_property_readonly(
          "endpoint", [](const P& p) { return p.c.endpoint; },
          "The endpoint that served the request (URL or GGUF file).")
      .def_property_readonly(
          "backend", [](const P& p) { return p.backend; }, "ollama, openai or llama.")
      .def_property_readonly(
          "error_kind",
          [](const P& p) -> std::optional<std::string> {
            if (p.c.ok()) return std::nullopt;
            return std::string(to_string(p.c.error.kind));
          },
          "None, or bad_request, connect, timeout, http_status, server, protocol, truncated, "
          "cancelled.")
      .def_property_readonly(
          "error_message", [](const P& p) { return p.c.error.message; },
          "What failed, naming the endpoint; empty when ok.")
      .def_property_readonly("http_status", [](const P& p) { return p.c.error.http_status; })
      .def_property_readonly(
          "tokens", [](const P& p) { return p.c.tokens; },
          "In-process backend: the generated token ids.")
      .def_property_readonly(
          "server",
          [](const P& p) {
            const ServerStats& s = p.c.server;
            py::dict d;
            auto put = [&d](const char* k, const auto& v) {
              if (v) d[k] = *v;
            };
            put("total_duration_ns", s.total_duration_ns);
            put("load_duration_ns", s.load_duration_ns);
            put("prompt_eval_count", s.prompt_eval_count);
            put("prompt_eval_duration_ns", s.prompt_eval_duration_ns);
            put("eval_count", s.eval_count);
            put("eval_duration_ns", s.eval_duration_ns);
            put("prompt_ms", s.prompt_ms);
            put("predicted_ms", s.predicted_ms);
            put("predicted_per_second", s.predicted_per_second);
            put("cache_n", s.cache_n);
            put("slot_id", s.slot_id);
            return d;
          },
          "What the server reported, as it said it (only the fields it sent).")
      // METRICS.md, per request.
      .def_property_readonly(
          "t_send_ns", [](const P& p) { return p.c.figures.t_send_ns; },
          "measured: just before the first request byte was written.")
      .def_property_readonly(
          "t_first_token_ns", [](const P& p) { return p.c.figures.t_first_token_ns; },
          "measured: the first token handed over by the engine.")
      .def_property_readonly("t_last_token_ns",
                             [](const P& p) { return p.c.figures.t_last_token_ns; })
      .def_property_readonly(
          "t_delivered_ns", [](const P& p) { return p.t_delivered_ns; },
          "measured: when this result reached the caller's thread.")
      .def_property_readonly(
          "ttft_client_ms", [](const P& p) { return ms(p.c.figures.ttft_client_ns); },
          "measured: first token - t_send.")
      .def_property_readonly(
          "ttft_server_ms", [](const P& p) { return p.c.figures.ttft_server_ms; },
          "server: what the server spent before the first token.")
      .def_property_readonly(
          "overhead_ttft_ms",
          [](const P& p) -> std::optional<double> {
            const Figures& f = p.c.figures;
            if (!f.t_first_token_ns || !f.first_byte_server_ns) return std::nullopt;
            return static_cast<double>(*f.t_first_token_ns - *f.first_byte_server_ns) / 1e6;
          },
          "derived: first token - the server's send time of it (synthetic server only).")
      .def_property_readonly(
          "e2e_ms", [](const P& p) { return ms(p.c.figures.e2e_ns); },
          "measured: last response byte handled - t_send.")
      .def_property_readonly(
          "itl_ms",
          [](const P& p) {
            std::vector<double> out;
            out.reserve(p.c.figures.itl_ns.size());
            for (auto v : p.c.figures.itl_ns) out.push_back(static_cast<double>(v) / 1e6);
            return out;
          },
          "measured: the gap before each token after the first.")
      .def_property_readonly(
          "tokens_out", [](const P& p) { return p.c.figures.tokens_out; },
          "server: generated tokens.")
      .def_property_readonly(
          "tokens_in", [](const P& p) { return p.c.figures.tokens_in; }, "server: prompt tokens.")
      .def_property_readonly("prompt_tokens_cached",
                             [](const P& p) { return p.c.figures.prompt_tokens_cached; })
      .def_property_readonly("decode_tps_server",
                             [](const P& p) { return p.c.figures.decode_tps_server; })
      .def_property_readonly(
          "decode_tps_client", [](const P& p) { return p.c.figures.decode_tps_client; },
          "derived: (tokens_out - 1) / (t_last_token - t_first_token).")
      .def_property_readonly(
          "chunks", [](const P& p) { return p.c.figures.chunks; },
          "measured: token-bearing chunks received.")
      .def_property_readonly("first_byte_server_ns",
                             [](const P& p) { return p.c.figures.first_byte_server_ns; })
      .def_property_readonly(
          "queued_ms", [](const P& p) { return ms(p.c.figures.queued_ns); },
          "measured: time in the pool's queue before t_send.")
      .def_property_readonly("attempts", [](const P& p) { return p.c.figures.attempts; })
      .def_property_readonly("connection_reused",
                             [](const P& p) { return p.c.figures.connection_reused; })
      .def_property_readonly("bytes_dropped", [](const P& p) { return p.c.figures.bytes_dropped; })
      .def_property_readonly(
          "lag_sum_ns", [](const P& p) { return p.lags.sum_ns; },
          "measured: sum of delivery_lag over the chunks (synthetic server).")
      .def_property_readonly("lag_max_ns", [](const P& p) { return p.lags.max_ns; })
      .def_property_readonly(
          "stalls", [](const P& p) { return p.lags.stalls; },
          "measured: chunks whose delivery_lag exceeded 1 ms.")
      .def_property_readonly(
          "lags_ns", [](const P& p) { return p.lags.all_ns; },
          "Every chunk's delivery_lag, when record_lags was asked for.")
      .def(
          "to_json", [](const P& p) { return metrics::completion_json(p.c, p.backend); },
          "One JSON object: text, finish_reason, error, and the figures under their METRICS.md "
          "names (times in ms), with each figure's source under 'sources'.")
      .def(
          "figures_line", [](const P& p) { return metrics::figures_line(p.c); },
          "The one-line summary the CLI prints after a stream.")
      .def(
          "record",
          [](const P& p, int agent, int request, const std::string& program) {
            return record_to_dict(record_of(p, agent, request), program);
          },
          py::arg("agent") = 0, py::arg("request") = 0, py::arg("program") = "python-engine",
          "This request as a per-request record (docs/records.md); t_done_ns is when the result "
          "reached the caller.")
      .def("__repr__", [](const P& p) {
        std::string text = p.c.text.size() > 40 ? p.c.text.substr(0, 40) + "..." : p.c.text;
        if (!p.c.ok()) {
          return fmt::format("<Completion error={} {:?}>", to_string(p.c.error.kind),
                             p.c.error.message);
        }
        return fmt::format("<Completion finish={} tokens_out={} text={:?}>", to_string(p.c.finish),
                           p.c.figures.tokens_out ? std::to_string(*p.c.figures.tokens_out) : "?",
                           text);
      });

  py::class_<ChunkData>(
      m, "Chunk",
      "One streamed piece of output, as the engine received it. When a consumer falls more "
      "than the stream's buffer behind, later pieces are merged into one chunk (`pieces`).")
      .def_readonly("text", &ChunkData::text)
      .def_readonly("thinking", &ChunkData::thinking)
      .def_property_readonly("tool_call",
                             [](const ChunkData& c) -> py::object {
                               return c.tool_call ? tool_call_dict(*c.tool_call) : py::none();
                             })
      .def_readonly("t_ns", &ChunkData::t_ns, "When the engine handed it over (monotonic ns).")
      .def_readonly("server_sent_ns", &ChunkData::server_sent_ns,
                    "The server's send time (synthetic server), else 0.")
      .def_readonly("index", &ChunkData::index)
      .def_readonly("pieces", &ChunkData::pieces)
      .def("__str__", [](const ChunkData& c) { return c.text; })
      .def("__repr__", [](const ChunkData& c) {
        return fmt::format("<Chunk {} {:?}{}>", c.index, c.text,
                           c.pieces > 1 ? fmt::format(" pieces={}", c.pieces) : "");
      });
}

}  // namespace chimera::python

#include <chimera/metrics/figures.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace chimera::metrics {

namespace json = boost::json;

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  // p * n / 100 rounded to 9 decimals before the ceiling: 7 / 100 * 100 is 7.000000000000001
  // in binary floating point, and a bare ceil would take the 8th value for p7 of 100.
  const double exact = p * static_cast<double>(values.size()) / 100.0;
  const double rank = std::ceil(std::round(exact * 1e9) / 1e9);
  const auto idx = static_cast<std::size_t>(std::clamp(rank, 1.0, double(values.size()))) - 1;
  return values[idx];
}

namespace {
double ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

std::vector<double> itl_ms(const Figures& f) {
  std::vector<double> out;
  out.reserve(f.itl_ns.size());
  for (auto v : f.itl_ns) out.push_back(ms(v));
  return out;
}
}  // namespace

std::string figures_line(const Completion& c) {
  const Figures& f = c.figures;
  std::string line;
  auto add = [&line](const std::string& part) {
    if (!line.empty()) line += "  ";
    line += part;
  };
  add(f.ttft_client_ns ? fmt::format("ttft_client {:.1f} ms", ms(*f.ttft_client_ns))
                       : "ttft_client -");
  add(f.ttft_server_ms ? fmt::format("ttft_server {:.1f} ms", *f.ttft_server_ms) : "ttft_server -");
  add(f.tokens_out ? fmt::format("tokens {}", *f.tokens_out) : "tokens -");
  add(f.decode_tps_client ? fmt::format("decode_tps_client {:.1f}/s", *f.decode_tps_client)
                          : "decode_tps_client -");
  add(f.decode_tps_server ? fmt::format("decode_tps_server {:.1f}/s", *f.decode_tps_server)
                          : "decode_tps_server -");
  if (!f.itl_ns.empty()) {
    const auto itl = itl_ms(f);
    add(fmt::format("itl p50 {:.2f} ms p99 {:.2f} ms", percentile(itl, 50), percentile(itl, 99)));
  }
  if (f.e2e_ns) add(fmt::format("e2e {:.1f} ms", ms(*f.e2e_ns)));
  add(fmt::format("finish {}", c.finish_raw.empty() ? to_string(c.finish) : c.finish_raw));
  return line;
}

std::string completion_json(const Completion& c, const std::string& backend) {
  const Figures& f = c.figures;
  json::object o;
  json::object sources;
  auto put = [&](const char* key, auto value, const char* source) {
    if (value) {
      o[key] = *value;
      sources[key] = source;
    } else {
      o[key] = nullptr;
    }
  };
  o["text"] = c.text;
  if (!c.thinking.empty()) o["thinking"] = c.thinking;
  if (!c.tool_calls.empty()) {
    json::array calls;
    for (const auto& t : c.tool_calls) {
      calls.push_back(
          json::object{{"id", t.id}, {"name", t.name}, {"arguments", t.arguments_json}});
    }
    o["tool_calls"] = std::move(calls);
  }
  o["finish_reason"] = c.finish_raw.empty() ? to_string(c.finish) : c.finish_raw;
  o["model"] = c.model;
  o["backend"] = backend;
  o["endpoint"] = c.endpoint;
  if (c.error) {
    o["error"] = json::object{{"kind", to_string(c.error.kind)}, {"message", c.error.message}};
  } else {
    o["error"] = nullptr;
  }
  std::optional<double> ttft_client;
  if (f.ttft_client_ns) ttft_client = ms(*f.ttft_client_ns);
  std::optional<double> e2e;
  if (f.e2e_ns) e2e = ms(*f.e2e_ns);
  o["t_send_ns"] = f.t_send_ns;
  sources["t_send_ns"] = "measured";
  put("ttft_client", ttft_client, "measured");
  put("ttft_server", f.ttft_server_ms, "server");
  put("e2e", e2e, "measured");
  put("tokens_out", f.tokens_out, "server");
  put("tokens_in", f.tokens_in, "server");
  put("prompt_tokens_cached", f.prompt_tokens_cached, "server");
  put("decode_tps_server", f.decode_tps_server, "server");
  put("decode_tps_client", f.decode_tps_client, "derived");
  put("chunks", f.chunks, "measured");
  json::array itl;
  for (auto v : f.itl_ns) itl.push_back(ms(v));
  o["itl"] = std::move(itl);
  sources["itl"] = "measured";
  o["connection_reused"] = f.connection_reused;
  o["units"] = json::object{{"time", "ms"}, {"rate", "tokens/s"}};
  o["sources"] = std::move(sources);
  return json::serialize(o);
}

}  // namespace chimera::metrics

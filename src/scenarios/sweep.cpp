#include <chimera/core/options.hpp>
#include <chimera/core/stats.hpp>
#include <chimera/scenarios/sweep.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace chimera::sweep {

namespace {

// The options that are a server's flags or a model-load setting rather than a request's.
bool is_load_setting(std::string_view name) {
  return name == "num_ctx" || name == "num_gpu" || name == "num_thread";
}

std::vector<std::string> split_values(std::string_view list) {
  std::vector<std::string> values;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    values.emplace_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return values;
}

}  // namespace

std::string parse_axis(std::string_view text, Axis& out) {
  const std::size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    return fmt::format("--grid '{}': write it as NAME=V1,V2,... (e.g. num_ctx=256,512)", text);
  }
  Axis axis;
  axis.name = std::string(text.substr(0, eq));
  if (axis.name == "stop") {
    return fmt::format(
        "--grid '{}': stop strings cannot be a grid axis (a string may hold a "
        "comma); give them with --set stop=STRING",
        text);
  }
  std::set<std::string> seen;
  for (auto& value : split_values(text.substr(eq + 1))) {
    Options probe;
    if (auto e = set_option_text(probe, axis.name, value); !e.empty()) {
      return fmt::format("--grid '{}': {}", text, e);
    }
    if (!seen.insert(value).second) {
      return fmt::format("--grid '{}': the value '{}' is given twice", text, value);
    }
    axis.values.push_back(std::move(value));
  }
  out = std::move(axis);
  return {};
}

const char* to_string(Placement p) {
  switch (p) {
    case Placement::per_request:
      return "per request";
    case Placement::server_restart:
      return "server restart";
    case Placement::model_reload:
      return "model reload";
  }
  return "?";
}

std::string placement_of(BackendKind kind, std::string_view name, bool servers_ours,
                         Placement& out) {
  out = Placement::per_request;
  if (!is_load_setting(name) || kind == BackendKind::ollama) return {};
  if (kind == BackendKind::llama) {
    out = Placement::model_reload;
    return {};
  }
  if (servers_ours) {
    out = Placement::server_restart;
    return {};
  }
  return fmt::format(
      "{} cannot be applied to an OpenAI-compatible endpoint that this sweep did not start: "
      "it is the server's own setting (llama-server {}), not a request option of the OpenAI "
      "API. Give --model FILE.gguf without --endpoint, and the sweep starts llama-servers "
      "with each value",
      name,
      name == "num_ctx"   ? "-c"
      : name == "num_gpu" ? "-ngl"
                          : "-t");
}

std::string expand_grid(const std::vector<Axis>& axes, const Options& base,
                        std::vector<Configuration>& out) {
  std::set<std::string> names;
  for (const auto& axis : axes) {
    if (!names.insert(axis.name).second) {
      return fmt::format("--grid {} is given twice: list every value in one --grid", axis.name);
    }
    if (axis.values.empty()) return fmt::format("--grid {} has no value", axis.name);
  }
  std::vector<Configuration> grid(1);
  for (const auto& axis : axes) {
    std::vector<Configuration> next;
    for (const auto& partial : grid) {
      for (const auto& value : axis.values) {
        Configuration c = partial;
        if (auto e = set_option_text(c.options, axis.name, value); !e.empty()) return e;
        c.settings.emplace_back(axis.name, value);
        next.push_back(std::move(c));
      }
    }
    grid = std::move(next);
  }
  for (auto& c : grid) {
    Options options = c.options;
    inherit_options(options, base);
    c.options = std::move(options);
    std::vector<std::string> parts;
    for (const auto& [name, value] : c.settings) parts.push_back(fmt::format("{}={}", name, value));
    c.label = parts.empty() ? "defaults" : fmt::format("{}", fmt::join(parts, " "));
  }
  out = std::move(grid);
  return {};
}

std::string server_key(const Options& options, BackendKind kind, bool servers_ours) {
  std::vector<std::string> parts;
  for_each_set_option(options, [&](std::string_view name, const auto& value) {
    Placement p{};
    if (!placement_of(kind, name, servers_ours, p).empty() || p == Placement::per_request) {
      return;
    }
    parts.push_back(fmt::format("{}={}", name, value));
  });
  return fmt::format("{}", fmt::join(parts, " "));
}

int ttft_anomalies(const std::vector<multi::RequestRecord>& records, double threshold_ms) {
  const auto threshold_ns = static_cast<int64_t>(threshold_ms * 1e6);
  int count = 0;
  for (const auto& r : records) {
    if (r.t_send_ns == 0) continue;
    const int64_t waited =
        r.t_first_token_ns != 0 ? r.t_first_token_ns - r.t_send_ns : r.t_done_ns - r.t_send_ns;
    if (waited > threshold_ns) ++count;
  }
  return count;
}

const std::vector<Metric> kMetrics = {
    {"ttft_client_p50_ms", "TTFT p50 (ms)", false},
    {"ttft_client_p99_ms", "TTFT p99 (ms)", false},
    {"decode_tps_client", "decode rate per request (tokens/s)", true},
    {"system_tps", "throughput, all agents (tokens/s)", true},
    {"itl_p50_ms", "inter-token latency p50 (ms)", false},
    {"e2e_p50_ms", "request time p50 (ms)", false},
    {"contention", "contention (share of agent time)", false},
    {"stall_rate", "stall rate (chunks later than 1 ms)", false},
    {"ttft_anomaly", "runs with a TTFT anomaly (share)", false},
    {"errors", "failed requests per run", false},
};

std::map<std::string, double> run_figures(const multi::ConcurrencyFigures& f, int ttft_anomalies) {
  std::map<std::string, double> m{
      {"requests", static_cast<double>(f.requests)},
      {"errors", static_cast<double>(f.errors)},
      {"tokens", static_cast<double>(f.tokens)},
      {"wall_s", f.wall_s},
      {"system_tps", f.system_tps},
      {"decode_tps_client", f.decode_tps_client},
      {"ttft_anomalies", static_cast<double>(ttft_anomalies)},
      {"ttft_anomaly", ttft_anomalies > 0 ? 1.0 : 0.0},
  };
  // Percentiles of a run where no request produced a token say nothing: left out.
  if (f.requests > f.errors) {
    m["ttft_client_p50_ms"] = f.ttft_p50;
    m["ttft_client_p99_ms"] = f.ttft_p99;
    m["ttft_client_max_ms"] = f.ttft_max;
    m["itl_p50_ms"] = f.itl_p50;
    m["itl_p99_ms"] = f.itl_p99;
    m["e2e_p50_ms"] = f.e2e_p50;
  }
  if (f.contention) m["contention"] = *f.contention;
  if (f.stall_rate) m["stall_rate"] = *f.stall_rate;
  if (f.efficiency) m["efficiency"] = *f.efficiency;
  return m;
}

std::vector<ConfigSummary> summarize(const std::vector<RunFigures>& runs,
                                     const std::vector<std::string>& order) {
  std::vector<ConfigSummary> out;
  for (const auto& config : order) {
    ConfigSummary s;
    s.config = config;
    std::map<std::string, std::vector<double>> values;
    for (const auto& r : runs) {
      if (r.config != config) continue;
      ++s.runs;
      for (const auto& [name, v] : r.figures) values[name].push_back(v);
    }
    if (s.runs == 0) continue;
    for (const auto& [name, v] : values) {
      const MeanSd ms = mean_sd(v);
      s.metrics[name] = {ms.mean, ms.sd, static_cast<int>(v.size())};
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<Best> best_configurations(const std::vector<ConfigSummary>& summaries) {
  std::vector<Best> out;
  for (const auto& metric : kMetrics) {
    std::optional<Best> best;
    for (const auto& s : summaries) {
      const auto it = s.metrics.find(metric.name);
      if (it == s.metrics.end() || !it->second.mean) continue;
      const double mean = *it->second.mean;
      const bool better =
          !best || (metric.higher_is_better ? mean > best->mean : mean < best->mean);
      if (better) best = Best{metric.name, s.config, mean, it->second.n};
    }
    if (best) out.push_back(std::move(*best));
  }
  return out;
}

namespace {

std::string number(double v) {
  const double a = std::abs(v);
  if (a != 0 && a < 0.01) return fmt::format("{:.5f}", v);
  if (a < 10) return fmt::format("{:.3f}", v);
  return fmt::format("{:.1f}", v);
}

std::string cell(const MetricStats& m) {
  if (!m.mean) return "n/a";
  return m.sd ? fmt::format("{} ± {}", number(*m.mean), number(*m.sd)) : number(*m.mean);
}

void metric_table(std::string& md, const Metric& metric,
                  const std::vector<ConfigSummary>& summaries) {
  md += fmt::format("\n### {} (`{}`)\n\n| configuration | mean ± sd | n |\n| --- | ---: | ---: |\n",
                    metric.label, metric.name);
  for (const auto& s : summaries) {
    const auto it = s.metrics.find(metric.name);
    if (it == s.metrics.end()) {
      md += fmt::format("| {} | not measured | 0 |\n", s.config);
    } else {
      md += fmt::format("| {} | {} | {} |\n", s.config, cell(it->second), it->second.n);
    }
  }
}

}  // namespace

std::string summary_markdown(const std::vector<ConfigSummary>& summaries,
                             double anomaly_threshold_ms) {
  std::string md =
      "# Sweep summary\n\nMean ± sample sd over the runs of each configuration; n: "
      "runs that measured the figure (docs/sweep.md).\n";
  md +=
      "\n## Best configuration per metric\n\n| metric | configuration | mean | n |\n"
      "| --- | --- | ---: | ---: |\n";
  for (const auto& b : best_configurations(summaries)) {
    md += fmt::format("| `{}` | {} | {} | {} |\n", b.metric, b.config, number(b.mean), b.n);
  }
  md += fmt::format(
      "\n## TTFT anomalies (the study's contention signal)\n\nA run is anomalous when a "
      "request waited more than {} ms for its first token.\n\n| configuration | anomalous runs "
      "| share |\n| --- | ---: | ---: |\n",
      anomaly_threshold_ms);
  for (const auto& s : summaries) {
    const auto it = s.metrics.find("ttft_anomaly");
    const double share = it != s.metrics.end() && it->second.mean ? *it->second.mean : 0;
    md += fmt::format("| {} | {} of {} | {:.1f}% |\n", s.config,
                      static_cast<int>(std::lround(share * s.runs)), s.runs, share * 100);
  }
  md += "\n## Per metric\n";
  for (const auto& metric : kMetrics) metric_table(md, metric, summaries);
  return md;
}

}  // namespace chimera::sweep

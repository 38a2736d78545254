// The report's sections about the experiment, computed by us from the data. See
// experiment_report.hpp.
#include "workflow/experiment_report.hpp"

#include <chimera/workflow/svg.hpp>

#include <boost/json/array.hpp>
#include <boost/json/value_from.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>

namespace chimera::workflow {

namespace json = boost::json;
using ingest::format_number;

namespace {

std::string metric_title(const ingest::KeyMetric& m) {
  if (m.name == "throughput") return "throughput";
  if (m.name == "ttft") return "time to first token";
  return m.name;
}

std::string source_text(const ingest::Summary& s, const std::string& first) {
  return fmt::format("computed from {} values in {} runs (first: `{}`)", s.values, s.n, first);
}

std::string file_safe(std::string_view s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '-';
  return out;
}

}  // namespace

std::string markdown_cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::vector<Chart> experiment_charts(const ingest::Experiment& x) {
  std::vector<Chart> charts;
  for (std::size_t m = 0; m < x.metrics.size() && m < 2; ++m) {
    const auto effects = x.effects_of(m);
    if (effects.empty()) continue;
    const auto& km = x.metrics[m];
    const ingest::Effect& top = *effects[0];
    const auto& factor = x.factors[top.factor];
    std::vector<svg::Bar> bars;
    for (const auto& l : top.levels)
      bars.push_back(
          {l.level, l.stats.mean, l.stats.ci_low, l.stats.ci_high, fmt::format("n={}", l.stats.n)});
    Chart c;
    c.file = file_safe(fmt::format("chart-{}-by-{}", km.name, factor.key)) + ".svg";
    c.caption =
        fmt::format("{} by {}: mean over runs with 95% intervals", metric_title(km), factor.key);
    c.svg = svg::bar_chart(fmt::format("{} by {}", metric_title(km), factor.key), km.unit,
                           factor.label, bars);
    charts.push_back(std::move(c));
    if (effects.size() < 2 || effects[1]->share < 0.1 || top.share < 0.1) continue;
    // Two factors matter: their combinations, each cell the mean of its configurations' runs.
    const std::size_t fa = top.factor, fb = effects[1]->factor;
    svg::HeatMap h;
    h.title =
        fmt::format("{} by {} and {}", metric_title(km), x.factors[fa].key, x.factors[fb].key);
    h.row_label = x.factors[fa].key;
    h.col_label = x.factors[fb].key;
    h.rows = x.factors[fa].levels;
    h.cols = x.factors[fb].levels;
    h.unit = km.unit;
    h.higher_is_better = km.higher_is_better;
    std::vector<double> sum(h.rows.size() * h.cols.size(), 0.0), n(sum.size(), 0.0);
    for (const auto& cfg : x.configs) {
      const auto* cm = cfg.find(m);
      if (cm == nullptr || cfg.levels[fa].empty() || cfg.levels[fb].empty()) continue;
      const auto r = std::find(h.rows.begin(), h.rows.end(), cfg.levels[fa]) - h.rows.begin();
      const auto k = std::find(h.cols.begin(), h.cols.end(), cfg.levels[fb]) - h.cols.begin();
      const auto i = static_cast<std::size_t>(r) * h.cols.size() + static_cast<std::size_t>(k);
      sum[i] += cm->stats.mean * static_cast<double>(cm->stats.n);
      n[i] += static_cast<double>(cm->stats.n);
    }
    for (std::size_t i = 0; i < sum.size(); ++i) h.values.push_back(n[i] > 0 ? sum[i] / n[i] : NAN);
    Chart hc;
    hc.file =
        file_safe(fmt::format("heatmap-{}-{}-{}", km.name, x.factors[fa].key, x.factors[fb].key)) +
        ".svg";
    hc.caption = fmt::format("{} by {} and {}: mean over runs", metric_title(km), x.factors[fa].key,
                             x.factors[fb].key);
    hc.svg = svg::heat_map(h);
    charts.push_back(std::move(hc));
  }
  return charts;
}

std::string experiment_sections(const ingest::Experiment& x, const std::vector<Chart>& charts) {
  std::string md;
  auto add = [&md](const std::string& s) {
    md += s;
    md += '\n';
  };
  add("## Experiment structure");
  add("");
  add(fmt::format("Computed by Chimeraforge from the data, not by the model ({:.1f} ms).",
                  x.elapsed_ms));
  add("");
  if (x.factors.empty()) {
    add("No factor was found: no setting takes two or more values across the runs.");
  } else {
    add("| factor | levels | runs per level | found in |");
    add("| --- | --- | --- | --- |");
    for (const auto& f : x.factors) {
      std::vector<std::string> runs;
      for (std::size_t i = 0; i < f.levels.size(); ++i)
        runs.push_back(fmt::format("{}", f.level_runs[i]));
      add(fmt::format("| {} | {} | {} | {} |", markdown_cell(f.label),
                      markdown_cell(fmt::format("{}", fmt::join(f.levels, ", "))),
                      fmt::join(runs, ", "), f.found_in));
    }
  }
  add("");
  std::map<std::size_t, std::size_t> runs_hist;
  for (const auto& c : x.configs) ++runs_hist[c.runs];
  std::vector<std::string> hist;
  hist.reserve(runs_hist.size());
  for (const auto& [runs, configs] : runs_hist)
    hist.push_back(fmt::format("{} with n={}", configs, runs));
  if (hist.size() > 4) {
    // Many different counts: the extremes and the most common one.
    auto common =
        std::max_element(runs_hist.begin(), runs_hist.end(),
                         [](const auto& a, const auto& b) { return a.second < b.second; });
    hist = {fmt::format("n={} to {}", runs_hist.begin()->first, runs_hist.rbegin()->first),
            fmt::format("most often n={} ({} configurations)", common->first, common->second)};
  }
  add(fmt::format(
      "{} configurations, {} runs ({}); {} values of {} key metrics used. "
      "Repetitions recognised by: {}.",
      x.configs.size(), x.runs, fmt::join(hist, ", "), x.records_used, x.metrics.size(),
      x.repetition_markers.empty() ? std::string("none (each file is one run)")
                                   : fmt::format("{}", fmt::join(x.repetition_markers, ", "))));
  add("");
  if (!x.metrics.empty()) {
    add("Key metrics, each unified from the names it was found under:");
    add("");
    for (const auto& m : x.metrics)
      add(fmt::format("- {} ({}, {} is better): {} values from `{}`", m.name, m.unit,
                      m.higher_is_better ? "higher" : "lower", m.values,
                      fmt::join(m.sources, "`, `")));
    add("");
  }
  if (!x.unplaced.empty()) {
    add("Not placed in the structure:");
    add("");
    std::size_t shown = 0;
    for (const auto& u : x.unplaced) {
      if (++shown > 15) {
        add(fmt::format("- ... and {} more", x.unplaced.size() - 15));
        break;
      }
      add(fmt::format("- `{}`: {}", u.what, u.why));
    }
    add("");
  }

  add("## Effects");
  add("");
  add("How much each factor moves each key metric: the share of the variance of run values "
      "that its levels explain (one factor at a time), and the mean of each level over all "
      "other settings. Computed from the runs, n as stated.");
  add("");
  for (std::size_t m = 0; m < x.metrics.size(); ++m) {
    const auto effects = x.effects_of(m);
    if (effects.empty()) continue;
    const auto& km = x.metrics[m];
    add(fmt::format("### {} ({})", metric_title(km), km.unit));
    add("");
    add("| rank | factor | variance explained | spread of level means | n |");
    add("| ---: | --- | ---: | ---: | ---: |");
    for (std::size_t i = 0; i < effects.size(); ++i)
      add(fmt::format("| {} | {} | {:.1f}% | {} {} | {} |", i + 1,
                      markdown_cell(x.factors[effects[i]->factor].label), 100 * effects[i]->share,
                      format_number(effects[i]->spread), km.unit, effects[i]->n));
    add("");
    for (std::size_t i = 0; i < effects.size() && i < 2; ++i) {
      const auto& f = x.factors[effects[i]->factor];
      add(fmt::format("Level means of {}:", f.key));
      add("");
      add("| level | mean | sd | n | 95% interval |");
      add("| --- | ---: | ---: | ---: | --- |");
      for (const auto& l : effects[i]->levels)
        add(fmt::format("| {} | {} | {} | {} | {} to {} |", markdown_cell(l.level),
                        format_number(l.stats.mean), format_number(l.stats.sd), l.stats.n,
                        format_number(l.stats.ci_low), format_number(l.stats.ci_high)));
      add("");
    }
    for (const auto& c : charts) {
      if (c.file.find("-" + km.name + "-") == std::string::npos) continue;
      add(fmt::format("![{}]({})", c.caption, c.file));
      add("");
    }
  }

  add("## Metric tables");
  add("");
  add("Configurations by their mean over runs. Each figure is computed from the runs named by "
      "n; the source column gives the first file and line behind it.");
  add("");
  for (std::size_t m = 0; m < x.metrics.size() && m < 2; ++m) {
    const auto& km = x.metrics[m];
    const auto ranked = x.ranked(m);
    if (ranked.empty()) continue;
    const std::string title = m == 0 && km.name == "throughput" ? "throughput"
                              : km.name == "ttft"               ? "time to first token"
                                                                : km.name;
    auto table = [&](const std::string& heading, bool best) {
      add(fmt::format("### {}", heading));
      add("");
      add(fmt::format("| configuration | mean ({}) | sd | n | 95% interval | min | max | source |",
                      km.unit));
      add("| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |");
      const std::size_t show = std::min<std::size_t>(3, ranked.size());
      for (std::size_t i = 0; i < show; ++i) {
        const auto& c = x.configs[best ? ranked[i] : ranked[ranked.size() - 1 - i]];
        const auto* cm = c.find(m);
        const auto& s = cm->stats;
        add(fmt::format("| {} | {} | {} | {} | {} to {} | {} | {} | {} |", markdown_cell(c.label),
                        format_number(s.mean), format_number(s.sd), s.n, format_number(s.ci_low),
                        format_number(s.ci_high), format_number(s.min), format_number(s.max),
                        source_text(s, cm->first_source)));
      }
      add("");
    };
    table("Best " + title, true);
    table("Worst " + title, false);
  }
  for (const auto& c : x.comparisons) {
    if (c.metric >= 2) continue;
    const auto& km = x.metrics[c.metric];
    const auto& best = x.configs[c.best];
    const auto& runner = x.configs[c.runner_up];
    add(fmt::format("### Best against runner-up: {}", metric_title(km)));
    add("");
    std::string verdict;
    if (c.p) {
      verdict = fmt::format("Welch's t = {}, df = {}, p = {}: the difference is {} the noise.",
                            format_number(*c.t), format_number(*c.df), format_number(*c.p),
                            c.significant ? "larger than" : "within");
    } else {
      verdict =
          "Too few runs (n < 2, or no spread) to test whether the difference is larger "
          "than the noise.";
    }
    add(fmt::format("`{}` ({} ± {}, n={}) against `{}` ({} ± {}, n={}): difference {} {}. {}",
                    best.label, format_number(best.find(c.metric)->stats.mean),
                    format_number(best.find(c.metric)->stats.sd), best.find(c.metric)->stats.n,
                    runner.label, format_number(runner.find(c.metric)->stats.mean),
                    format_number(runner.find(c.metric)->stats.sd), runner.find(c.metric)->stats.n,
                    format_number(c.difference), km.unit, verdict));
    add("");
  }

  add("## Anomalies");
  add("");
  bool any = false;
  for (const auto& c : x.configs) {
    std::size_t outliers = 0;
    for (const auto& m : c.metrics) outliers += m.outliers;
    if (c.failures == 0 && outliers == 0) continue;
    if (!any) {
      add("| configuration | failed requests | outlier runs (over 5 MADs from the median) | runs "
          "|");
      add("| --- | ---: | ---: | ---: |");
      any = true;
    }
    add(fmt::format("| {} | {} | {} | {} |", markdown_cell(c.label), c.failures, outliers, c.runs));
  }
  if (!any) add("No failed request and no outlier run in any configuration.");
  add("");
  return md;
}

json::object experiment_json(const ingest::Experiment& x) {
  json::array factors;
  for (const auto& f : x.factors) {
    json::array levels;
    for (std::size_t i = 0; i < f.levels.size(); ++i)
      levels.push_back(json::object{{"level", f.levels[i]}, {"runs", f.level_runs[i]}});
    factors.push_back(json::object{{"key", f.key},
                                   {"label", f.label},
                                   {"found_in", f.found_in},
                                   {"numeric", f.numeric},
                                   {"levels", std::move(levels)}});
  }
  json::array metrics;
  for (const auto& m : x.metrics)
    metrics.push_back(json::object{{"name", m.name},
                                   {"unit", m.unit},
                                   {"higher_is_better", m.higher_is_better},
                                   {"sources", json::value_from(m.sources)},
                                   {"values", m.values}});
  auto stats = [](const ingest::Summary& s) {
    return json::object{{"n", s.n},          {"mean", s.mean},
                        {"sd", s.sd},        {"min", s.min},
                        {"max", s.max},      {"ci95", json::array{s.ci_low, s.ci_high}},
                        {"values", s.values}};
  };
  json::array configs;
  for (const auto& c : x.configs) {
    json::object levels;
    for (std::size_t f = 0; f < x.factors.size(); ++f)
      if (!c.levels[f].empty()) levels[x.factors[f].key] = c.levels[f];
    json::object ms;
    for (const auto& cm : c.metrics) {
      json::object o = stats(cm.stats);
      o["source"] =
          fmt::format("computed from {} values; first {}", cm.stats.values, cm.first_source);
      o["outliers"] = cm.outliers;
      ms[x.metrics[cm.metric].name] = std::move(o);
    }
    configs.push_back(json::object{{"label", c.label},
                                   {"levels", std::move(levels)},
                                   {"runs", c.runs},
                                   {"files", c.files},
                                   {"failures", c.failures},
                                   {"metrics", std::move(ms)}});
  }
  json::array effects;
  for (const auto& e : x.effects) {
    json::array levels;
    for (const auto& l : e.levels) {
      json::object o = stats(l.stats);
      o["level"] = l.level;
      levels.push_back(std::move(o));
    }
    effects.push_back(json::object{{"metric", x.metrics[e.metric].name},
                                   {"factor", x.factors[e.factor].key},
                                   {"variance_share", e.share},
                                   {"spread", e.spread},
                                   {"n", e.n},
                                   {"levels", std::move(levels)}});
  }
  json::array comparisons;
  for (const auto& c : x.comparisons) {
    auto opt = [](const std::optional<double>& v) {
      return v ? json::value(*v) : json::value(nullptr);
    };
    comparisons.push_back(json::object{{"metric", x.metrics[c.metric].name},
                                       {"best", x.configs[c.best].label},
                                       {"runner_up", x.configs[c.runner_up].label},
                                       {"difference", c.difference},
                                       {"welch_t", opt(c.t)},
                                       {"df", opt(c.df)},
                                       {"p", opt(c.p)},
                                       {"significant", c.significant}});
  }
  json::array unplaced;
  for (const auto& u : x.unplaced)
    unplaced.push_back(json::object{{"what", u.what}, {"why", u.why}, {"count", u.count}});
  return json::object{{"factors", std::move(factors)},
                      {"repetition_markers", json::value_from(x.repetition_markers)},
                      {"metrics", std::move(metrics)},
                      {"configurations", std::move(configs)},
                      {"effects", std::move(effects)},
                      {"comparisons", std::move(comparisons)},
                      {"unplaced", std::move(unplaced)},
                      {"runs", x.runs},
                      {"records_used", x.records_used},
                      {"elapsed_ms", x.elapsed_ms}};
}

}  // namespace chimera::workflow

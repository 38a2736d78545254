#include "workflow/experiment_report.hpp"

#include <chimera/core/options.hpp>
#include <chimera/core/text.hpp>
#include <chimera/ingest/digest.hpp>
#include <chimera/ingest/experiment.hpp>
#include <chimera/ingest/ingest.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/workflow/workflow.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <thread>

namespace chimera::workflow {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string system_description(json::object& sys) {
  std::string cpu = "unknown";
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  ::uname(&u);
  sys["cpu"] = cpu;
  sys["cores"] = std::thread::hardware_concurrency();
  sys["os"] = fmt::format("{} {} {}", u.sysname, u.release, u.machine);
  sys["compiler"] = __VERSION__;
  sys["hostname"] = u.nodename;
  return fmt::format("{}, {} cores, {} {}", cpu, std::thread::hardware_concurrency(), u.sysname,
                     u.release);
}

std::string now_iso() {
  const auto t = std::chrono::system_clock::now();
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

std::string kb(uint64_t bytes) {
  return fmt::format("{:.1f} KB", static_cast<double>(bytes) / 1024.0);
}

std::string md_escape(std::string_view s) {
  return markdown_cell(s);
}

// A figure as metrics.json stores it: value, unit and where it came from.
json::value fig(std::optional<double> v, const char* unit, const char* source) {
  if (!v) return nullptr;
  return json::object{{"value", *v}, {"unit", unit}, {"source", source}};
}

json::object call_json(const CallRecord& call) {
  const Completion& c = call.completion;
  const Figures& f = c.figures;
  auto ms = [](std::optional<int64_t> ns) -> std::optional<double> {
    if (!ns) return std::nullopt;
    return static_cast<double>(*ns) / 1e6;
  };
  auto num = [](std::optional<int64_t> n) -> std::optional<double> {
    if (!n) return std::nullopt;
    return static_cast<double>(*n);
  };
  json::object figures{
      {"ttft_client", fig(ms(f.ttft_client_ns), "ms", "measured")},
      {"ttft_server", fig(f.ttft_server_ms, "ms", "server")},
      {"e2e", fig(ms(f.e2e_ns), "ms", "measured")},
      {"tokens_out", fig(num(f.tokens_out), "tokens", "server")},
      {"tokens_in", fig(num(f.tokens_in), "tokens", "server")},
      {"prompt_tokens_cached", fig(num(f.prompt_tokens_cached), "tokens", "server")},
      {"decode_tps_server", fig(f.decode_tps_server, "tokens/s", "server")},
      {"decode_tps_client", fig(f.decode_tps_client, "tokens/s", "derived")},
  };
  if (!f.itl_ns.empty()) {
    std::vector<double> itl;
    for (auto v : f.itl_ns) itl.push_back(static_cast<double>(v) / 1e6);
    figures["itl_p50"] = fig(metrics::percentile(itl, 50), "ms", "measured");
    figures["itl_p99"] = fig(metrics::percentile(itl, 99), "ms", "measured");
  }
  return json::object{
      {"stage", call.stage},
      {"endpoint", c.endpoint},
      {"model", c.model},
      {"finish_reason", c.finish_raw.empty() ? to_string(c.finish) : c.finish_raw},
      {"error", c.error ? json::value(c.error.message) : json::value(nullptr)},
      {"prompt_chars", call.prompt.size()},
      {"text_chars", c.text.size()},
      {"figures", std::move(figures)},
  };
}

// The options as records store them: every option that is set, under its own name.
json::object options_json(const Options& o) {
  json::object j;
  for_each_set_option(
      o, [&j](std::string_view name, const auto& value) { j[name] = json::value_from(value); });
  return j;
}

// The options as the report's header lists them: "num_ctx=512 temperature=0.8".
std::string options_text(const Options& o) {
  std::vector<std::string> parts;
  for_each_set_option(o, [&parts](std::string_view name, const auto& value) {
    using Value = std::remove_cvref_t<decltype(value)>;
    if constexpr (std::is_same_v<Value, double>) {
      parts.push_back(fmt::format("{}={:g}", name, value));
    } else if constexpr (std::is_same_v<Value, std::vector<std::string>>) {
      // Stop strings are the user's text: escaped, as the report's table cell needs.
      parts.push_back(
          fmt::format("{}={}", name, md_escape(fmt::format("{}", fmt::join(value, ",")))));
    } else {
      parts.push_back(fmt::format("{}={}", name, value));
    }
  });
  return parts.empty() ? "server defaults" : fmt::format("{}", fmt::join(parts, " "));
}

const char* kAnalysisSystem =
    "You are a performance engineer who analyses benchmark results of local LLM inference "
    "(Ollama, llama.cpp) and writes precise, figure-backed conclusions.";
const char* kReportSystem =
    "You are a technical writer. You turn an engineer's analysis into a clear technical report.";

std::string analysis_prompt(const std::string& digest) {
  return fmt::format(
      "Benchmark results, computed from the data (factors, effects as variance explained, "
      "best and worst configurations with sd and n, then detail):\n\n{}\n\n"
      "Write your analysis with exactly these four headings:\n"
      "## Executive Summary\n## Key Findings\n## Metrics Analysis\n## Recommendations\n"
      "Cite the figures you rely on.",
      digest);
}

std::string slice_prompt(const std::string& slice) {
  return fmt::format(
      "One slice of a benchmark experiment, computed from the data:\n\n{}\n\n"
      "List the three most important findings of this slice as short bullets, each with its "
      "figures.",
      slice);
}

std::string synthesis_prompt(const std::string& structure, const std::string& findings) {
  return fmt::format(
      "{}\nFindings from separate analyses of each metric:\n{}\n\n"
      "Write one analysis with exactly these four headings:\n"
      "## Executive Summary\n## Key Findings\n## Metrics Analysis\n## Recommendations\n"
      "Cite the figures you rely on.",
      structure, findings);
}

std::string report_prompt(const std::string& analysis) {
  return fmt::format(
      "Turn this analysis into a technical report for engineers: a title, an introduction, the "
      "findings with their figures, and recommendations.\n\nAnalysis:\n{}",
      analysis);
}

struct Ctx {
  const WorkflowOptions& o;
  Backend& backend;
  std::string backend_name;
  std::string system_text;
  json::object system_json;
};

void progress(const WorkflowOptions& o, const ProgressEvent& e) {
  if (o.on_progress) o.on_progress(e);
}

CallRecord call(const Ctx& ctx, const WorkflowConfig& cfg, int run, const char* stage,
                const char* system, std::string prompt, int num_predict) {
  CallRecord rec;
  rec.stage = stage;
  rec.prompt = prompt;
  Request r;
  r.model = ctx.o.model;
  r.options = cfg.options;
  if (!r.options.num_predict) r.options.num_predict = num_predict;
  r.messages = {{"system", system, {}, {}, {}}, {"user", std::move(prompt), {}, {}, {}}};
  int64_t n = 0;
  rec.completion = ctx.backend.generate(r, [&](const TokenEvent&) {
    ++n;
    if (n % 16 == 0) {
      progress(ctx.o, {ProgressEvent::Kind::tokens, cfg.name, run, ctx.o.runs, stage, "", n});
    }
    return true;
  });
  return rec;
}

void write_file(const fs::path& p, const std::string& text, WorkflowResult& result) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", tmp.string()));
  }
  fs::rename(tmp, p);
  result.written.push_back(p);
}

std::string figures_row(const CallRecord& c) {
  const Figures& f = c.completion.figures;
  auto o = [](auto v, const char* fmtstr) {
    return v ? fmt::format(fmt::runtime(fmtstr), *v) : std::string("-");
  };
  std::optional<double> ttft, e2e;
  if (f.ttft_client_ns) ttft = static_cast<double>(*f.ttft_client_ns) / 1e6;
  if (f.e2e_ns) e2e = static_cast<double>(*f.e2e_ns) / 1e6;
  return fmt::format(
      "| {} | {} | {} | {} | {} | {} | {} | {} | {} |", c.stage, o(ttft, "{:.1f}"),
      o(f.ttft_server_ms, "{:.1f}"), o(f.tokens_in, "{}"), o(f.tokens_out, "{}"),
      o(f.decode_tps_client, "{:.1f}"), o(f.decode_tps_server, "{:.1f}"), o(e2e, "{:.1f}"),
      c.completion.finish_raw.empty() ? to_string(c.completion.finish) : c.completion.finish_raw);
}

std::string render_report(const Ctx& ctx, const WorkflowConfig& cfg, const RunRecord& run,
                          const ingest::IngestResult& data, const ingest::Experiment& x,
                          const std::vector<Chart>& charts, const std::string& digest_text,
                          const Sections& sections) {
  std::string md;
  auto add = [&md](const std::string& s) {
    md += s;
    md += '\n';
  };
  add("# Benchmark analysis report");
  add("");
  add("| | |");
  add("| --- | --- |");
  add(fmt::format("| date | {} |", now_iso()));
  add(fmt::format("| model | {} |", md_escape(run.analysis.completion.model.empty()
                                                  ? ctx.o.model
                                                  : run.analysis.completion.model)));
  add(fmt::format("| backend | {} |", ctx.backend_name));
  add(fmt::format("| endpoint | {} |", md_escape(ctx.backend.endpoint())));
  add(fmt::format("| configuration | {} ({}) |", cfg.name, options_text(cfg.options)));
  add(fmt::format("| run | {} of {} |", run.run, ctx.o.runs));
  add(fmt::format("| system | {} |", md_escape(ctx.system_text)));
  add("");
  add("## Ingestion summary");
  add("");
  add("Computed by Chimeraforge from the data, not by the model.");
  add("");
  add("| type | files | bytes |");
  add("| --- | ---: | ---: |");
  for (auto t : {ingest::FileType::csv, ingest::FileType::json, ingest::FileType::markdown,
                 ingest::FileType::text}) {
    add(fmt::format("| {} | {} | {} |", ingest::to_string(t), data.file_count(t),
                    data.file_bytes(t)));
  }
  add("");
  add(fmt::format(
      "{} files, {} in all; {} metric records, {} error values, {} files with errors; "
      "ingested in {:.1f} ms on {} threads.",
      data.files.size(), kb(data.total_bytes), data.records.size(), data.error_values.size(),
      data.errors.size(), data.timings.total_ms, data.timings.threads));
  add("");
  md += experiment_sections(x, charts);
  add("## Errors found");
  add("");
  if (data.errors.empty() && data.error_values.empty()) add("None.");
  for (const auto& e : data.errors) {
    add(fmt::format("- `{}`{}: {}", e.path, e.line > 0 ? fmt::format(" line {}", e.line) : "",
                    e.reason));
  }
  std::size_t shown = 0;
  for (const auto& e : data.error_values) {
    if (++shown > 20) {
      add(fmt::format("- ... and {} more error values", data.error_values.size() - 20));
      break;
    }
    add(fmt::format("- `{}` line {}: {} = \"{}\"", e.source_file, e.line, e.metric,
                    md_escape(e.text)));
  }
  add("");
  add("## Analysis");
  add("");
  add(fmt::format("Written by the model ({}). ", ctx.backend_name) +
      (sections.missing.empty() ? std::string("All four sections were found.")
                                : fmt::format("Sections missing from its answer: {}.",
                                              fmt::join(sections.missing, ", "))));
  add("");
  for (const auto& [name, body] : sections.found) {
    add(fmt::format("### {}", name));
    add("");
    add(body.empty() ? "(empty)" : body);
    add("");
  }
  if (sections.found.empty()) {
    add("The answer had none of the four headings; here it is as written:");
    add("");
    add(run.analysis.completion.text);
    add("");
  }
  add("## Technical report");
  add("");
  add(run.report.completion.text.empty() ? "(empty)" : run.report.completion.text);
  add("");
  add("## Appendix");
  add("");
  add("### Stage times");
  add("");
  add("| stage | ms |");
  add("| --- | ---: |");
  add(fmt::format("| ingest | {:.1f} |", run.ingest_ms));
  add(fmt::format("| digest (experiment structure {:.1f}) | {:.1f} |", run.experiment_ms,
                  run.digest_ms));
  if (!run.slices.empty())
    add(fmt::format("| {} slice calls | {:.1f} |", run.slices.size(), run.slices_ms));
  add(fmt::format("| analysis call | {:.1f} |", run.analysis_ms));
  add(fmt::format("| report call | {:.1f} |", run.report_ms));
  add("");
  add("### LLM calls");
  add("");
  add("Times in ms, rates in tokens/s; definitions in docs/metrics.md.");
  add("");
  add("| call | ttft_client | ttft_server | tokens_in | tokens_out | decode_tps_client | "
      "decode_tps_server | e2e | finish |");
  add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
  for (const auto& slice : run.slices) add(figures_row(slice));
  add(figures_row(run.analysis));
  add(figures_row(run.report));
  add("");
  add(fmt::format("### The digest sent to the model ({} of {} estimated tokens)", run.digest_tokens,
                  run.digest_budget));
  add("");
  add("```");
  add(digest_text);
  add("```");
  return md;
}

}  // namespace

namespace {

// The analysis call's token budget for the digest: what the context leaves once the answer and
// the instructions have their room.
std::size_t digest_budget(const WorkflowConfig& cfg, int analysis_predict) {
  std::size_t budget = cfg.digest_budget;
  if (cfg.options.num_ctx) {
    // The instructions as sent, and a chat template's role markers.
    const auto instructions = static_cast<long>(ingest::estimate_tokens(kAnalysisSystem) +
                                                ingest::estimate_tokens(analysis_prompt("")) + 24);
    const long room = static_cast<long>(*cfg.options.num_ctx) - analysis_predict - instructions;
    // Estimates err high already; real tokenizers can still need up to 1.5 times as many.
    const auto fits = static_cast<std::size_t>(std::max(64L, room * 2 / 3));
    budget = std::min(budget, fits);
  }
  return budget;
}

// The digest: the experiment first (structure, effects, best and worst), then the ingest
// digest's detail in what is left.
std::string compose_digest(const ingest::IngestResult& data, const ingest::Experiment& x,
                           std::size_t budget) {
  std::string text = ingest::experiment_digest(x, budget);
  const std::size_t used = ingest::estimate_tokens(text);
  if (budget > used + 48) {
    ingest::DigestOptions dopt;
    dopt.token_budget = budget - used - 2;
    text += "\n" + ingest::make_digest(data, dopt).text;
  }
  return text;
}

// Map-reduce: one call per key metric's slice, then one synthesis call (the analysis).
void analyse_in_slices(const Ctx& ctx, const WorkflowConfig& cfg, int run,
                       const ingest::Experiment& x, std::size_t budget, int predict,
                       RunRecord& rec) {
  const int slice_predict = std::max(32, predict / 2);
  std::string findings;
  for (std::size_t m = 0; m < x.metrics.size() && m < 4; ++m) {
    const auto t0 = Clock::now();
    CallRecord c = call(ctx, cfg, run, "slice", kAnalysisSystem,
                        slice_prompt(ingest::experiment_digest(x, budget, m)), slice_predict);
    rec.slices_ms += ms_since(t0);
    c.stage = fmt::format("slice {} ({})", m + 1, x.metrics[m].name);
    if (!c.completion.ok())
      throw std::runtime_error(
          fmt::format("the {} call failed: {}", c.stage, c.completion.error.message));
    findings += fmt::format("[{}] {}\n", x.metrics[m].name, c.completion.text);
    rec.slices.push_back(std::move(c));
  }
  // The synthesis sees the structure and the slices' findings, cut to the same budget.
  std::string structure = ingest::experiment_digest(x, budget / 3);
  const std::size_t max_chars = budget * 4 > structure.size() ? budget * 4 - structure.size() : 256;
  findings.resize(text::utf8_prefix(findings, max_chars).size());
  progress(ctx.o,
           {ProgressEvent::Kind::stage_started, cfg.name, run, ctx.o.runs, "analysis", "", 0});
  const auto t0 = Clock::now();
  rec.analysis = call(ctx, cfg, run, "analysis", kAnalysisSystem,
                      synthesis_prompt(structure, findings), predict);
  rec.analysis_ms = ms_since(t0);
}

json::object run_json(const WorkflowConfig& cfg, const RunRecord& rec) {
  const double llm_ms = rec.analysis_ms + rec.report_ms + rec.slices_ms;
  json::array calls;
  for (const auto& c : rec.slices) calls.push_back(call_json(c));
  calls.push_back(call_json(rec.analysis));
  calls.push_back(call_json(rec.report));
  return json::object{
      {"config", cfg.name},
      {"run", rec.run},
      {"options", options_json(cfg.options)},
      {"strategy", rec.slices.empty() ? "single" : "map-reduce"},
      {"stages_ms", json::object{{"ingest", rec.ingest_ms},
                                 {"experiment", rec.experiment_ms},
                                 {"digest", rec.digest_ms},
                                 {"slices", rec.slices_ms},
                                 {"analysis", rec.analysis_ms},
                                 {"report", rec.report_ms},
                                 {"write", rec.write_ms},
                                 {"total", rec.total_ms},
                                 {"outside_llm", rec.total_ms - llm_ms}}},
      {"ingest", json::object{{"files", rec.files},
                              {"bytes", rec.bytes},
                              {"records", rec.records},
                              {"error_values", rec.error_values},
                              {"file_errors", rec.file_errors}}},
      {"experiment", json::object{{"factors", rec.factors},
                                  {"configurations", rec.configurations},
                                  {"runs", rec.experiment_runs}}},
      {"digest",
       json::object{{"estimated_tokens", rec.digest_tokens}, {"token_budget", rec.digest_budget}}},
      {"sections", json::object{{"found", json::value_from(rec.sections_found)},
                                {"missing", json::value_from(rec.sections_missing)}}},
      {"calls", std::move(calls)},
      {"report", rec.report_file.string()},
  };
}

std::string comparison_md(const WorkflowOptions& o, const WorkflowResult& result,
                          const std::string& system_text) {
  auto series = [&](const std::string& config, auto get) {
    std::vector<double> v;
    for (const auto& r : result.runs) {
      if (r.config != config) continue;
      if (auto x = get(r)) v.push_back(*x);
    }
    return v;
  };
  auto mean_sd = [](const std::vector<double>& v) {
    if (v.empty()) return std::pair<double, double>{NAN, NAN};
    const MeanSd spread = chimera::mean_sd(v);
    return std::pair<double, double>{*spread.mean, spread.sd.value_or(0.0)};
  };
  auto ms = [](const std::optional<int64_t>& ns) -> std::optional<double> {
    if (!ns) return std::nullopt;
    return static_cast<double>(*ns) / 1e6;
  };
  using Get = std::function<std::optional<double>(const RunRecord&)>;
  const std::vector<std::pair<std::string, Get>> rows = {
      {"analysis decode_tps_client (tokens/s)",
       [](const RunRecord& r) { return r.analysis.completion.figures.decode_tps_client; }},
      {"analysis decode_tps_server (tokens/s)",
       [](const RunRecord& r) { return r.analysis.completion.figures.decode_tps_server; }},
      {"analysis ttft_client (ms)",
       [&](const RunRecord& r) { return ms(r.analysis.completion.figures.ttft_client_ns); }},
      {"report ttft_client (ms)",
       [&](const RunRecord& r) { return ms(r.report.completion.figures.ttft_client_ns); }},
      {"run duration (ms)", [](const RunRecord& r) -> std::optional<double> { return r.total_ms; }},
  };
  std::string md = fmt::format(
      "# Configuration comparison\n\n{} runs each, on {}; mean ± sample standard deviation "
      "over runs; delta relative to `{}`.\n\n",
      o.runs, md_escape(system_text), o.configs.front().name);
  for (std::size_t k = 1; k < o.configs.size(); ++k) {
    const auto& a = o.configs.front().name;
    const auto& b = o.configs[k].name;
    md += fmt::format("## {} vs {}\n\n| figure | {} | {} | delta |\n| --- | ---: | ---: | ---: |\n",
                      b, a, a, b);
    for (const auto& [label, get] : rows) {
      const auto [ma, sa] = mean_sd(series(a, get));
      const auto [mb, sb] = mean_sd(series(b, get));
      md += fmt::format("| {} | {} ± {} | {} ± {} | {:+.1f}% |\n", label, ingest::format_number(ma),
                        ingest::format_number(sa), ingest::format_number(mb),
                        ingest::format_number(sb), 100.0 * (mb - ma) / ma);
    }
    md += "\n";
  }
  return md;
}

}  // namespace

namespace {

// ---------------------------------------------------------------------------- a run's phases

void stage_started(const Ctx& ctx, const WorkflowConfig& cfg, int run, const char* stage) {
  progress(ctx.o, {ProgressEvent::Kind::stage_started, cfg.name, run, ctx.o.runs, stage, "", 0});
}

void stage_done(const Ctx& ctx, const WorkflowConfig& cfg, int run, const char* stage,
                std::string text) {
  progress(ctx.o,
           {ProgressEvent::Kind::stage_done, cfg.name, run, ctx.o.runs, stage, std::move(text), 0});
}

// Every output of the workflow, kept in memory and written as one set at the end (see
// WorkflowOptions). A later run of the same configuration replaces its report, as it always has.
class Outputs {
 public:
  void put(const std::string& file, std::string text) {
    auto same = std::find_if(files_.begin(), files_.end(),
                             [&](const auto& out) { return out.first == file; });
    if (same != files_.end())
      same->second = std::move(text);
    else
      files_.emplace_back(file, std::move(text));
  }
  std::vector<std::pair<std::string, std::string>>& files() { return files_; }

 private:
  std::vector<std::pair<std::string, std::string>> files_;
};

// The num_predict of the analysis and the report calls: the configuration's, within what the
// context leaves (the digest must leave room in it for the instructions and the answer).
struct CallBudgets {
  int analysis_predict = 0;
  int report_predict = 0;
};

CallBudgets call_budgets(const WorkflowConfig& cfg) {
  CallBudgets b;
  b.analysis_predict = cfg.options.num_predict.value_or(cfg.analysis_tokens);
  b.report_predict = cfg.options.num_predict.value_or(cfg.report_tokens);
  if (cfg.options.num_ctx) {
    b.analysis_predict = std::min(b.analysis_predict, *cfg.options.num_ctx / 3);
    b.report_predict = std::min(b.report_predict, *cfg.options.num_ctx / 2);
  }
  return b;
}

// Ingest: scan and parse the data. No file at all is an error (nothing to analyse).
ingest::IngestResult ingest_phase(const Ctx& ctx, const WorkflowConfig& cfg, int run,
                                  RunRecord& rec) {
  stage_started(ctx, cfg, run, "ingest");
  const auto t0 = Clock::now();
  ingest::IngestResult data = ingest::ingest(ctx.o.data);
  rec.ingest_ms = ms_since(t0);
  rec.files = data.files.size();
  rec.records = data.records.size();
  rec.file_errors = data.errors.size();
  rec.error_values = data.error_values.size();
  rec.bytes = data.total_bytes;
  stage_done(ctx, cfg, run, "ingest",
             fmt::format("{} files, {}, {} records, {} file errors ({:.1f} ms)", rec.files,
                         kb(rec.bytes), rec.records, rec.file_errors, rec.ingest_ms));
  if (data.files.empty()) {
    throw std::runtime_error(fmt::format(
        "no CSV, JSON, Markdown or text files found under {}; point --data at benchmark results",
        ctx.o.data.empty() ? std::string("(nothing)") : ctx.o.data.front().string()));
  }
  return data;
}

// Digest: the experiment's structure and statistics, and the text the model is given.
struct Digest {
  ingest::Experiment experiment;
  std::string text;
};

Digest digest_phase(const Ctx& ctx, const WorkflowConfig& cfg, int run,
                    const ingest::IngestResult& data, const CallBudgets& budgets, RunRecord& rec) {
  const auto t0 = Clock::now();
  Digest d{ingest::analyse_experiment(data), {}};
  const ingest::Experiment& x = d.experiment;
  rec.experiment_ms = x.elapsed_ms;
  rec.factors = x.factors.size();
  rec.configurations = x.configs.size();
  rec.experiment_runs = x.runs;
  rec.digest_budget = digest_budget(cfg, budgets.analysis_predict);
  d.text = compose_digest(data, x, rec.digest_budget);
  rec.digest_ms = ms_since(t0);
  rec.digest_tokens = ingest::estimate_tokens(d.text);
  stage_done(ctx, cfg, run, "digest",
             fmt::format("{} factors, {} configurations, {} runs; {} of {} estimated tokens "
                         "({:.1f} ms)",
                         x.factors.size(), x.configs.size(), x.runs, rec.digest_tokens,
                         rec.digest_budget, rec.digest_ms));
  return d;
}

// Analysis: one call with the digest, or map-reduce over the key metrics' slices; then the
// answer's four sections.
Sections analysis_phase(const Ctx& ctx, const WorkflowConfig& cfg, int run, const Digest& d,
                        const CallBudgets& budgets, RunRecord& rec) {
  if (ctx.o.strategy == Strategy::map_reduce && !d.experiment.metrics.empty()) {
    stage_started(ctx, cfg, run, "slices");
    analyse_in_slices(ctx, cfg, run, d.experiment, rec.digest_budget, budgets.analysis_predict,
                      rec);
  } else {
    stage_started(ctx, cfg, run, "analysis");
    const auto t0 = Clock::now();
    rec.analysis = call(ctx, cfg, run, "analysis", kAnalysisSystem, analysis_prompt(d.text),
                        budgets.analysis_predict);
    rec.analysis_ms = ms_since(t0);
  }
  if (!rec.analysis.completion.ok()) {
    throw std::runtime_error("the analysis call failed: " + rec.analysis.completion.error.message);
  }
  stage_done(ctx, cfg, run, "analysis", metrics::figures_line(rec.analysis.completion));
  Sections sections = parse_sections(rec.analysis.completion.text);
  for (const auto& [name, body] : sections.found) rec.sections_found.push_back(name);
  rec.sections_missing = sections.missing;
  return sections;
}

// Report: one call that turns the analysis, cut to what fits its context, into a report.
void report_phase(const Ctx& ctx, const WorkflowConfig& cfg, int run, const CallBudgets& budgets,
                  RunRecord& rec) {
  std::string analysis_text = rec.analysis.completion.text;
  if (cfg.options.num_ctx) {
    const auto max_chars = static_cast<std::size_t>(
        std::max(256, (*cfg.options.num_ctx - budgets.report_predict - 120) * 2));
    analysis_text.resize(text::utf8_prefix(analysis_text, max_chars).size());
  }
  stage_started(ctx, cfg, run, "report");
  const auto t0 = Clock::now();
  rec.report = call(ctx, cfg, run, "report", kReportSystem, report_prompt(analysis_text),
                    budgets.report_predict);
  rec.report_ms = ms_since(t0);
  if (!rec.report.completion.ok()) {
    throw std::runtime_error("the report call failed: " + rec.report.completion.error.message);
  }
  stage_done(ctx, cfg, run, "report", metrics::figures_line(rec.report.completion));
}

// Render: the run's report and the experiment's charts, into `outputs` (written at the end).
void render_phase(const Ctx& ctx, const WorkflowConfig& cfg, const ingest::IngestResult& data,
                  const Digest& d, const Sections& sections, RunRecord& rec, Outputs& outputs,
                  json::object& experiment) {
  const auto t0 = Clock::now();
  const std::string name =
      ctx.o.configs.size() == 1 ? "report.md" : fmt::format("report-{}.md", cfg.name);
  rec.report_file = ctx.o.out_dir / name;
  const std::vector<Chart> charts = experiment_charts(d.experiment);
  outputs.put(name, render_report(ctx, cfg, rec, data, d.experiment, charts, d.text, sections));
  for (const auto& c : charts) outputs.put(c.file, c.svg);
  experiment = experiment_json(d.experiment);
  rec.write_ms = ms_since(t0);
}

// One run of one configuration: ingest, digest, analysis, report, render.
RunRecord run_once(const Ctx& ctx, const WorkflowConfig& cfg, int run, Outputs& outputs,
                   json::object& experiment) {
  RunRecord rec;
  rec.config = cfg.name;
  rec.run = run;
  const auto t_run = Clock::now();
  const ingest::IngestResult data = ingest_phase(ctx, cfg, run, rec);
  const CallBudgets budgets = call_budgets(cfg);
  const Digest digest = digest_phase(ctx, cfg, run, data, budgets, rec);
  const Sections sections = analysis_phase(ctx, cfg, run, digest, budgets, rec);
  report_phase(ctx, cfg, run, budgets, rec);
  render_phase(ctx, cfg, data, digest, sections, rec, outputs, experiment);
  rec.total_ms = ms_since(t_run);
  const double llm_ms = rec.analysis_ms + rec.report_ms + rec.slices_ms;
  stage_done(ctx, cfg, run, "write",
             fmt::format("{} ({:.1f} ms); run took {:.1f} ms, {:.1f}% outside the LLM calls",
                         rec.report_file.string(), rec.write_ms, rec.total_ms,
                         100.0 * (rec.total_ms - llm_ms) / rec.total_ms));
  return rec;
}

// -------------------------------------------------------------------- the workflow's phases

// What must hold before anything starts: "" when it does.
std::string check_options(const WorkflowOptions& o) {
  if (o.configs.empty()) return "no configuration given";
  if (o.runs < 1) return "--runs must be at least 1";
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) {
    return fmt::format("cannot create the output folder '{}': {}", o.out_dir.string(),
                       ec.message());
  }
  return {};
}

// The caller's backend, or one made from the endpoint (kept in `owned`); nullptr with `error`.
Backend* open_backend(const WorkflowOptions& o, std::unique_ptr<Backend>& owned,
                      std::string& error) {
  if (o.backend != nullptr) return o.backend;
  try {
    owned = make_backend(o.endpoint, Runtime::shared());
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
  return owned.get();
}

// metrics.json (or, on failure, the body of failed-run.json).
json::object metrics_document(const Ctx& ctx, const WorkflowResult& result, json::array runs,
                              json::object experiment) {
  json::array data_roots;
  for (const auto& d : ctx.o.data) data_roots.emplace_back(d.string());
  return json::object{
      {"schema", "chimeraforge.metrics"},
      {"version", 1},
      {"generated_at", now_iso()},
      {"system", ctx.system_json},
      {"backend", json::object{{"kind", ctx.backend_name},
                               {"endpoint", ctx.backend.endpoint()},
                               {"model", ctx.o.model}}},
      {"data", std::move(data_roots)},
      {"experiment", std::move(experiment)},
      {"runs", std::move(runs)},
      {"ok", result.ok},
      {"error", result.ok ? json::value(nullptr) : json::value(result.error)},
  };
}

// A failure replaces nothing of a good earlier result: the error and whatever finished are
// recorded beside it, in failed-run.json.
void write_failure(const WorkflowOptions& o, Outputs& outputs, json::object doc,
                   WorkflowResult& result) {
  json::object reports;
  for (const auto& [name, text] : outputs.files())
    if (name.ends_with(".md")) reports[name] = text;
  doc["unwritten_reports"] = std::move(reports);
  write_file(o.out_dir / "failed-run.json", json::serialize(doc) + "\n", result);
}

// Every output through a temporary first, then the renames together, metrics.json last; a
// stale failed-run.json no longer applies. The temporaries are removed when anything fails.
void write_outputs(const Ctx& ctx, Outputs& outputs, const json::object& doc,
                   WorkflowResult& result) {
  const WorkflowOptions& o = ctx.o;
  if (o.configs.size() > 1)
    outputs.files().emplace_back("comparison.md", comparison_md(o, result, ctx.system_text));
  outputs.files().emplace_back("metrics.json", json::serialize(doc) + "\n");
  const auto& files = outputs.files();
  std::vector<fs::path> temps;
  std::error_code ec;
  try {
    for (const auto& [name, text] : files) {
      const fs::path tmp = o.out_dir / (name + ".tmp");
      std::ofstream out(tmp, std::ios::binary);
      out << text;
      out.close();
      if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", tmp.string()));
      temps.push_back(tmp);
    }
    for (std::size_t i = 0; i < files.size(); ++i) {
      fs::rename(temps[i], o.out_dir / files[i].first);
      result.written.push_back(o.out_dir / files[i].first);
    }
  } catch (...) {
    for (const auto& tmp : temps) fs::remove(tmp, ec);
    throw;
  }
  fs::remove(o.out_dir / "failed-run.json", ec);
}

}  // namespace

WorkflowResult run_workflow(const WorkflowOptions& o) {
  WorkflowResult result;
  if (result.error = check_options(o); !result.error.empty()) return result;
  std::unique_ptr<Backend> owned;
  Backend* backend = open_backend(o, owned, result.error);
  if (backend == nullptr) return result;
  Ctx ctx{o, *backend, to_string(o.endpoint.kind), "", {}};
  ctx.system_text = system_description(ctx.system_json);

  Outputs outputs;
  json::array runs_json;
  json::object experiment;
  try {
    for (auto cfg : o.configs) {
      if (cfg.preset && backend->kind() != BackendKind::ollama) {
        cfg.options.num_gpu.reset();  // a load setting there: see WorkflowConfig::preset
        cfg.options.num_thread.reset();
      }
      for (int run = 1; run <= o.runs; ++run) {
        RunRecord rec = run_once(ctx, cfg, run, outputs, experiment);
        runs_json.push_back(run_json(cfg, rec));
        result.runs.push_back(std::move(rec));
      }
    }
    result.ok = true;
  } catch (const std::exception& e) {
    result.error = e.what();
  }

  json::object doc = metrics_document(ctx, result, std::move(runs_json), std::move(experiment));
  try {
    if (result.ok) {
      write_outputs(ctx, outputs, doc, result);
    } else {
      write_failure(o, outputs, std::move(doc), result);
    }
  } catch (const std::exception& e) {
    result.error = e.what();
    result.ok = false;
  }
  return result;
}

}  // namespace chimera::workflow

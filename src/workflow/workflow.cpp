#include <chimera/ingest/digest.hpp>
#include <chimera/ingest/ingest.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/workflow/workflow.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <toml++/toml.h>

#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <thread>

namespace chimera::workflow {

namespace json = boost::json;
namespace fs = std::filesystem;

WorkflowConfig baseline_config() {
  WorkflowConfig c;
  c.name = "baseline";
  return c;
}

WorkflowConfig chimera_config() {
  WorkflowConfig c;
  c.name = "chimera";
  c.options.num_gpu = 80;
  c.options.num_ctx = 512;
  c.options.temperature = 0.8;
  c.options.top_p = 0.9;
  c.options.top_k = 40;
  c.options.repeat_penalty = 1.1;
  return c;
}

bool load_config(const fs::path& file, WorkflowConfig& out, std::string& error) {
  toml::table t;
  try {
    t = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    error = fmt::format("{}:{}:{}: {}", file.string(), e.source().begin.line,
                        e.source().begin.column, e.description());
    return false;
  }
  WorkflowConfig c;
  c.name = t["name"].value_or(file.stem().string());
  c.digest_budget = static_cast<std::size_t>(t["digest_budget"].value_or(int64_t{1500}));
  c.analysis_tokens = static_cast<int>(t["analysis_tokens"].value_or(int64_t{320}));
  c.report_tokens = static_cast<int>(t["report_tokens"].value_or(int64_t{480}));
  if (const auto* opts = t["options"].as_table()) {
    for (const auto& [key, value] : *opts) {
      const std::string k(key.str());
      auto as_int = [&]() -> std::optional<int64_t> { return value.value<int64_t>(); };
      auto as_double = [&]() -> std::optional<double> { return value.value<double>(); };
      Options& o = c.options;
      bool ok = true;
      if (k == "num_ctx") ok = (o.num_ctx = as_int()).has_value();
      else if (k == "num_gpu") ok = (o.num_gpu = as_int()).has_value();
      else if (k == "num_predict") ok = (o.num_predict = as_int()).has_value();
      else if (k == "num_thread") ok = (o.num_thread = as_int()).has_value();
      else if (k == "top_k") ok = (o.top_k = as_int()).has_value();
      else if (k == "seed") ok = (o.seed = as_int()).has_value();
      else if (k == "temperature") ok = (o.temperature = as_double()).has_value();
      else if (k == "top_p") ok = (o.top_p = as_double()).has_value();
      else if (k == "min_p") ok = (o.min_p = as_double()).has_value();
      else if (k == "repeat_penalty") ok = (o.repeat_penalty = as_double()).has_value();
      else if (k == "stop") {
        if (const auto* arr = value.as_array()) {
          for (const auto& s : *arr) {
            if (auto v = s.value<std::string>()) o.stop.push_back(*v);
          }
        } else {
          ok = false;
        }
      } else {
        error = fmt::format("{}:{}: unknown option '{}' (known: num_ctx, num_gpu, num_predict, "
                            "num_thread, top_k, top_p, min_p, temperature, repeat_penalty, "
                            "seed, stop)",
                            file.string(), value.source().begin.line, k);
        return false;
      }
      if (!ok) {
        error = fmt::format("{}:{}: option '{}' has the wrong type", file.string(),
                            value.source().begin.line, k);
        return false;
      }
    }
  }
  out = std::move(c);
  return true;
}

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

std::string kb(uint64_t bytes) { return fmt::format("{:.1f} KB", static_cast<double>(bytes) / 1024.0); }

std::string md_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
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

json::object options_json(const Options& o) {
  json::object j;
  if (o.num_ctx) j["num_ctx"] = *o.num_ctx;
  if (o.num_gpu) j["num_gpu"] = *o.num_gpu;
  if (o.num_predict) j["num_predict"] = *o.num_predict;
  if (o.num_thread) j["num_thread"] = *o.num_thread;
  if (o.top_k) j["top_k"] = *o.top_k;
  if (o.top_p) j["top_p"] = *o.top_p;
  if (o.min_p) j["min_p"] = *o.min_p;
  if (o.temperature) j["temperature"] = *o.temperature;
  if (o.repeat_penalty) j["repeat_penalty"] = *o.repeat_penalty;
  if (o.seed) j["seed"] = *o.seed;
  return j;
}

std::string options_text(const Options& o) {
  std::vector<std::string> parts;
  auto i = [&](const char* k, const std::optional<int>& v) {
    if (v) parts.push_back(fmt::format("{}={}", k, *v));
  };
  auto d = [&](const char* k, const std::optional<double>& v) {
    if (v) parts.push_back(fmt::format("{}={:g}", k, *v));
  };
  i("num_ctx", o.num_ctx);
  i("num_gpu", o.num_gpu);
  i("num_predict", o.num_predict);
  i("num_thread", o.num_thread);
  d("temperature", o.temperature);
  d("top_p", o.top_p);
  i("top_k", o.top_k);
  d("min_p", o.min_p);
  d("repeat_penalty", o.repeat_penalty);
  if (o.seed) parts.push_back(fmt::format("seed={}", *o.seed));
  return parts.empty() ? "server defaults" : fmt::format("{}", fmt::join(parts, " "));
}

const char* kAnalysisSystem =
    "You are a performance engineer who analyses benchmark results of local LLM inference "
    "(Ollama, llama.cpp) and writes precise, figure-backed conclusions.";
const char* kReportSystem =
    "You are a technical writer. You turn an engineer's analysis into a clear technical report.";

std::string analysis_prompt(const std::string& digest) {
  return fmt::format(
      "Here is a digest of benchmark data (files, per-metric statistics by model and "
      "configuration, best and worst configurations, errors):\n\n{}\n\n"
      "Write your analysis with exactly these four headings:\n"
      "## Executive Summary\n## Key Findings\n## Metrics Analysis\n## Recommendations\n"
      "Cite the figures you rely on.",
      digest);
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

void progress(const WorkflowOptions& o, ProgressEvent e) {
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
  return fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |", c.stage, o(ttft, "{:.1f}"),
                     o(f.ttft_server_ms, "{:.1f}"), o(f.tokens_in, "{}"), o(f.tokens_out, "{}"),
                     o(f.decode_tps_client, "{:.1f}"), o(f.decode_tps_server, "{:.1f}"),
                     o(e2e, "{:.1f}"),
                     c.completion.finish_raw.empty() ? to_string(c.completion.finish)
                                                     : c.completion.finish_raw);
}

std::string render_report(const Ctx& ctx, const WorkflowConfig& cfg, const RunRecord& run,
                          const ingest::IngestResult& data, const ingest::Digest& digest,
                          const Sections& sections) {
  std::string md;
  auto add = [&md](const std::string& s) { md += s; md += '\n'; };
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
  add(fmt::format("{} files, {} in all; {} metric records, {} error values, {} files with errors; "
                  "ingested in {:.1f} ms on {} threads.",
                  data.files.size(), kb(data.total_bytes), data.records.size(),
                  data.error_values.size(), data.errors.size(), data.timings.total_ms,
                  data.timings.threads));
  add("");
  add("## Metric tables");
  add("");
  auto table = [&](const char* title, const std::vector<ingest::ConfigFigure>& v) {
    if (v.empty()) return;
    add(fmt::format("### {}", title));
    add("");
    add("| configuration | median | min | max | values | first source |");
    add("| --- | ---: | ---: | ---: | ---: | --- |");
    for (const auto& f : v) {
      add(fmt::format("| {} | {:.2f} {} | {:.2f} | {:.2f} | {} | {}:{} |", md_escape(f.label),
                      f.median, f.unit, f.min, f.max, f.count, md_escape(f.source_file), f.line));
    }
    add("");
  };
  table("Best throughput", digest.best_throughput);
  table("Worst throughput", digest.worst_throughput);
  table("Best time to first token", digest.best_ttft);
  table("Worst time to first token", digest.worst_ttft);
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
      (sections.missing.empty()
           ? std::string("All four sections were found.")
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
  add(fmt::format("| digest | {:.1f} |", run.digest_ms));
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
  add(figures_row(run.analysis));
  add(figures_row(run.report));
  add("");
  add(fmt::format("### The digest sent to the model ({} of {} estimated tokens)", digest.estimated_tokens,
                  digest.token_budget));
  add("");
  add("```");
  add(digest.text);
  add("```");
  return md;
}

}  // namespace

WorkflowResult run_workflow(const WorkflowOptions& o) {
  WorkflowResult result;
  if (o.configs.empty()) {
    result.error = "no configuration given";
    return result;
  }
  if (o.runs < 1) {
    result.error = "--runs must be at least 1";
    return result;
  }
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) {
    result.error = fmt::format("cannot create the output folder '{}': {}", o.out_dir.string(),
                               ec.message());
    return result;
  }
  std::unique_ptr<Backend> owned;
  Backend* backend = o.backend;
  if (backend == nullptr) {
    try {
      owned = make_backend(o.endpoint, Runtime::shared());
    } catch (const std::exception& e) {
      result.error = e.what();
      return result;
    }
    backend = owned.get();
  }
  Ctx ctx{o, *backend, to_string(o.endpoint.kind), "", {}};
  ctx.system_text = system_description(ctx.system_json);

  json::array runs_json;
  try {
    for (const auto& cfg : o.configs) {
      for (int run = 1; run <= o.runs; ++run) {
        RunRecord rec;
        rec.config = cfg.name;
        rec.run = run;
        const auto t_run = Clock::now();
        auto stage = [&](const char* name, std::string text) {
          progress(o, {ProgressEvent::Kind::stage_done, cfg.name, run, o.runs, name,
                       std::move(text), 0});
        };
        progress(o, {ProgressEvent::Kind::stage_started, cfg.name, run, o.runs, "ingest", "", 0});
        auto t0 = Clock::now();
        ingest::IngestResult data = ingest::ingest(o.data);
        rec.ingest_ms = ms_since(t0);
        rec.files = data.files.size();
        rec.records = data.records.size();
        rec.file_errors = data.errors.size();
        rec.error_values = data.error_values.size();
        rec.bytes = data.total_bytes;
        stage("ingest", fmt::format("{} files, {}, {} records, {} file errors ({:.1f} ms)",
                                    rec.files, kb(rec.bytes), rec.records, rec.file_errors,
                                    rec.ingest_ms));
        if (data.files.empty()) {
          throw std::runtime_error(fmt::format(
              "no CSV, JSON, Markdown or text files found under {}; point --data at benchmark "
              "results",
              o.data.empty() ? std::string("(nothing)") : o.data.front().string()));
        }

        // The digest must leave room in the context for the instructions and the answer.
        ingest::DigestOptions dopt;
        dopt.token_budget = cfg.digest_budget;
        int analysis_predict = cfg.options.num_predict.value_or(cfg.analysis_tokens);
        int report_predict = cfg.options.num_predict.value_or(cfg.report_tokens);
        if (cfg.options.num_ctx) {
          analysis_predict = std::min(analysis_predict, *cfg.options.num_ctx / 3);
          report_predict = std::min(report_predict, *cfg.options.num_ctx / 2);
        }
        if (cfg.options.num_ctx) {
          const long room = static_cast<long>(*cfg.options.num_ctx) - analysis_predict - 160;
          // Estimates are characters / 4; real tokenizers can need up to about 1.5 times that.
          const auto fits = static_cast<std::size_t>(std::max(64L, room * 2 / 3));
          dopt.token_budget = std::min(dopt.token_budget, fits);
        }
        t0 = Clock::now();
        const ingest::Digest digest = ingest::make_digest(data, dopt);
        rec.digest_ms = ms_since(t0);
        rec.digest_tokens = digest.estimated_tokens;
        rec.digest_budget = digest.token_budget;
        stage("digest", fmt::format("{} of {} estimated tokens ({:.1f} ms)", digest.estimated_tokens,
                                    digest.token_budget, rec.digest_ms));

        progress(o, {ProgressEvent::Kind::stage_started, cfg.name, run, o.runs, "analysis", "", 0});
        t0 = Clock::now();
        rec.analysis = call(ctx, cfg, run, "analysis", kAnalysisSystem,
                            analysis_prompt(digest.text), analysis_predict);
        rec.analysis_ms = ms_since(t0);
        if (!rec.analysis.completion.ok()) {
          throw std::runtime_error("the analysis call failed: " +
                                   rec.analysis.completion.error.message);
        }
        stage("analysis", metrics::figures_line(rec.analysis.completion));
        const Sections sections = parse_sections(rec.analysis.completion.text);
        for (const auto& [name, body] : sections.found) rec.sections_found.push_back(name);
        rec.sections_missing = sections.missing;

        // The report call gets the analysis, cut to what fits its context.
        std::string analysis_text = rec.analysis.completion.text;
        if (cfg.options.num_ctx) {
          const auto max_chars = static_cast<std::size_t>(
              std::max(256, (*cfg.options.num_ctx - report_predict - 120) * 2));
          if (analysis_text.size() > max_chars) analysis_text.resize(max_chars);
        }
        progress(o, {ProgressEvent::Kind::stage_started, cfg.name, run, o.runs, "report", "", 0});
        t0 = Clock::now();
        rec.report = call(ctx, cfg, run, "report", kReportSystem, report_prompt(analysis_text),
                          report_predict);
        rec.report_ms = ms_since(t0);
        if (!rec.report.completion.ok()) {
          throw std::runtime_error("the report call failed: " + rec.report.completion.error.message);
        }
        stage("report", metrics::figures_line(rec.report.completion));

        t0 = Clock::now();
        const std::string name =
            o.configs.size() == 1 ? "report.md" : fmt::format("report-{}.md", cfg.name);
        rec.report_file = o.out_dir / name;
        write_file(rec.report_file, render_report(ctx, cfg, rec, data, digest, sections), result);
        rec.write_ms = ms_since(t0);
        rec.total_ms = ms_since(t_run);
        const double llm_ms = rec.analysis_ms + rec.report_ms;
        stage("write", fmt::format("{} ({:.1f} ms); run took {:.1f} ms, {:.1f}% outside the LLM "
                                   "calls",
                                   rec.report_file.string(), rec.write_ms, rec.total_ms,
                                   100.0 * (rec.total_ms - llm_ms) / rec.total_ms));
        runs_json.push_back(json::object{
            {"config", cfg.name},
            {"run", run},
            {"options", options_json(cfg.options)},
            {"stages_ms",
             json::object{{"ingest", rec.ingest_ms},
                          {"digest", rec.digest_ms},
                          {"analysis", rec.analysis_ms},
                          {"report", rec.report_ms},
                          {"write", rec.write_ms},
                          {"total", rec.total_ms},
                          {"outside_llm", rec.total_ms - llm_ms}}},
            {"ingest",
             json::object{{"files", rec.files},
                          {"bytes", rec.bytes},
                          {"records", rec.records},
                          {"error_values", rec.error_values},
                          {"file_errors", rec.file_errors}}},
            {"digest", json::object{{"estimated_tokens", rec.digest_tokens},
                                    {"token_budget", rec.digest_budget}}},
            {"sections", json::object{{"found", json::value_from(rec.sections_found)},
                                      {"missing", json::value_from(rec.sections_missing)}}},
            {"calls", json::array{call_json(rec.analysis), call_json(rec.report)}},
            {"report", rec.report_file.string()},
        });
        result.runs.push_back(std::move(rec));
      }
    }
    result.ok = true;
  } catch (const std::exception& e) {
    result.error = e.what();
  }

  // metrics.json holds every run that finished, even when a later one failed.
  json::array data_roots;
  for (const auto& d : o.data) data_roots.emplace_back(d.string());
  json::object doc{
      {"schema", "chimeraforge.metrics"},
      {"version", 1},
      {"generated_at", now_iso()},
      {"system", ctx.system_json},
      {"backend", json::object{{"kind", ctx.backend_name},
                               {"endpoint", backend->endpoint()},
                               {"model", o.model}}},
      {"data", std::move(data_roots)},
      {"runs", std::move(runs_json)},
      {"ok", result.ok},
      {"error", result.ok ? json::value(nullptr) : json::value(result.error)},
  };
  try {
    write_file(o.out_dir / "metrics.json", json::serialize(doc) + "\n", result);
    if (o.configs.size() > 1 && result.ok) {
      // comparison.md: each configuration against the first, mean ± sd over runs.
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
        const double m = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
        double acc = 0;
        for (double x : v) acc += (x - m) * (x - m);
        return std::pair<double, double>{m, v.size() > 1 ? std::sqrt(acc / static_cast<double>(v.size() - 1)) : 0.0};
      };
      using Get = std::function<std::optional<double>(const RunRecord&)>;
      const std::vector<std::pair<std::string, Get>> rows = {
          {"analysis decode_tps_client (tokens/s)",
           [](const RunRecord& r) { return r.analysis.completion.figures.decode_tps_client; }},
          {"analysis decode_tps_server (tokens/s)",
           [](const RunRecord& r) { return r.analysis.completion.figures.decode_tps_server; }},
          {"analysis ttft_client (ms)",
           [](const RunRecord& r) -> std::optional<double> {
             const auto& v = r.analysis.completion.figures.ttft_client_ns;
             if (!v) return std::nullopt;
             return static_cast<double>(*v) / 1e6;
           }},
          {"report ttft_client (ms)",
           [](const RunRecord& r) -> std::optional<double> {
             const auto& v = r.report.completion.figures.ttft_client_ns;
             if (!v) return std::nullopt;
             return static_cast<double>(*v) / 1e6;
           }},
          {"run duration (ms)", [](const RunRecord& r) -> std::optional<double> { return r.total_ms; }},
      };
      std::string md = fmt::format(
          "# Configuration comparison\n\n{} runs each, on {}; mean ± sample standard deviation "
          "over runs; delta relative to `{}`.\n\n",
          o.runs, md_escape(ctx.system_text), o.configs.front().name);
      for (std::size_t k = 1; k < o.configs.size(); ++k) {
        const auto& a = o.configs.front().name;
        const auto& b = o.configs[k].name;
        md += fmt::format("## {} vs {}\n\n| figure | {} | {} | delta |\n| --- | ---: | ---: | ---: |\n",
                          b, a, a, b);
        for (const auto& [label, get] : rows) {
          const auto [ma, sa] = mean_sd(series(a, get));
          const auto [mb, sb] = mean_sd(series(b, get));
          md += fmt::format("| {} | {:.2f} ± {:.2f} | {:.2f} ± {:.2f} | {:+.1f}% |\n", label, ma,
                            sa, mb, sb, 100.0 * (mb - ma) / ma);
        }
        md += "\n";
      }
      write_file(o.out_dir / "comparison.md", md, result);
    }
  } catch (const std::exception& e) {
    if (result.ok) result.error = e.what();
    result.ok = false;
  }
  return result;
}

}  // namespace chimera::workflow

// The Chimera agent workflow: ingest benchmark data, digest it, ask a "reasoning" call for an
// analysis and a "reporting" call for a technical report, and write report.md and metrics.json.
//
// One run: ingest (parallel scan and parse of CSV, JSON, Markdown, text) -> digest (a compact,
// deterministic summary within a token budget that fits the model's context) -> analysis call
// -> report call -> files. Several configurations (sampling and runtime options, e.g. the
// study's "chimera" settings against the server's defaults) and several runs each give
// comparison.md. Every LLM call's figures follow METRICS.md; see docs/metrics-json.md.
//
// Thread safety: run_workflow() is reentrant; callbacks run on the calling thread or on the
// backend's thread, never two at once.
//
// Example:
//   chimera::workflow::WorkflowOptions o;
//   o.data = {"data/sample"};
//   o.endpoint.kind = chimera::BackendKind::llama;   // in-process; url: a GGUF file
//   o.endpoint.url = "tiny.gguf";
//   o.configs = {chimera::workflow::chimera_config()};
//   o.out_dir = "out";
//   auto r = chimera::workflow::run_workflow(o);
//   if (!r.ok) std::fprintf(stderr, "%s\n", r.error.c_str());
#pragma once

#include <chimera/backends/backend.hpp>
#include <chimera/core/request.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace chimera::workflow {

// Options sent with each LLM call, and the sizes of the workflow's prompts.
struct WorkflowConfig {
  std::string name;                  // "baseline", "chimera", or the TOML file's stem
  Options options;                   // unset fields: the backend's defaults
  std::size_t digest_budget = 1500;  // tokens; shrunk to fit options.num_ctx when it is set
  int analysis_tokens = 320;         // num_predict of the analysis call (unless options says)
  int report_tokens = 480;           // num_predict of the report call
  // A built-in configuration (chimera_config()): its settings that the backend cannot take with
  // a request (num_gpu, num_thread on the in-process engine or an OpenAI-compatible server) are
  // left out of the calls instead of failing them; a configuration file's are sent (and a
  // backend that cannot apply them refuses the call).
  bool preset = false;
};

// The server's defaults: no option sent.
WorkflowConfig baseline_config();
// The study's recommendation: num_gpu 80, num_ctx 512, temperature 0.8, top_p 0.9, top_k 40,
// repeat_penalty 1.1.
WorkflowConfig chimera_config();
// A TOML file: name = "...", digest_budget, analysis_tokens, report_tokens, and an [options]
// table with Ollama's option names. Returns false with `error` naming the file, line and key.
bool load_config(const std::filesystem::path& file, WorkflowConfig& out, std::string& error);

struct ProgressEvent {
  enum class Kind { stage_started, stage_done, tokens, message };
  Kind kind = Kind::message;
  std::string config;
  int run = 0;  // 1-based
  int runs = 0;
  std::string stage;   // "ingest", "digest", "analysis", "report", "write"
  std::string text;    // a one-line description
  int64_t tokens = 0;  // kind == tokens: tokens streamed so far in this call
};

// How the data reaches the model.
enum class Strategy {
  single,      // one analysis call with the ranked digest (structure and top findings first)
  map_reduce,  // one call per slice (per key metric, with the structure), then one synthesis
               // call over their answers: more of the data is seen, at the cost of more calls
};

struct WorkflowOptions {
  std::vector<std::filesystem::path> data;  // folders (or files) to ingest
  EndpointConfig endpoint;                  // kind + URL, or kind llama + GGUF path
  Backend* backend = nullptr;               // when set, used instead of making one from
                                            // `endpoint` (an endpoint pool, a shared backend);
                                            // not owned; `endpoint.kind` still names it
  std::string model;                        // model name for HTTP backends
  std::vector<WorkflowConfig> configs;      // at least one
  int runs = 1;
  Strategy strategy = Strategy::single;
  // report.md (report-<config>.md with several), metrics.json, comparison.md and the charts
  // are written as a set once every run succeeded (each file through a temporary and a
  // rename, metrics.json last). A failed workflow replaces none of them: it writes
  // failed-run.json beside them (the error, every finished run, their reports' text).
  std::filesystem::path out_dir = "out";
  std::function<void(const ProgressEvent&)> on_progress;
};

// One LLM call of a run.
struct CallRecord {
  std::string stage;   // "analysis", "report", or "slice N" (map-reduce)
  std::string prompt;  // the user message sent
  Completion completion;
};

struct RunRecord {
  std::string config;
  int run = 0;
  double ingest_ms = 0, digest_ms = 0, analysis_ms = 0, report_ms = 0, write_ms = 0, total_ms = 0;
  double experiment_ms = 0;  // the experiment structure and statistics (part of digest_ms)
  std::size_t factors = 0, configurations = 0, experiment_runs = 0;
  std::size_t files = 0, records = 0, file_errors = 0, error_values = 0;
  uint64_t bytes = 0;
  std::size_t digest_tokens = 0, digest_budget = 0;
  CallRecord analysis, report;
  std::vector<CallRecord> slices;  // map-reduce: one call per slice before `analysis`
  double slices_ms = 0;
  std::vector<std::string> sections_found, sections_missing;
  std::filesystem::path report_file;
};

struct WorkflowResult {
  bool ok = false;
  std::string error;  // what failed, where, and what to do
  std::vector<RunRecord> runs;
  std::vector<std::filesystem::path> written;  // every file written (failed-run.json on failure)
};

// Runs every configuration `runs` times. Never throws. A failed LLM call fails the workflow
// (recorded in failed-run.json, see `out_dir`); a file that cannot be parsed is reported in the
// report, and the run goes on.
WorkflowResult run_workflow(const WorkflowOptions& options);

// The model's answer split into the four analysis sections, whatever the heading style:
// "## Key Findings", "**Key findings:**", "3. KEY FINDINGS", "Key findings:" ... Section names:
// "Executive Summary", "Key Findings", "Metrics Analysis", "Recommendations".
struct Sections {
  std::vector<std::pair<std::string, std::string>> found;  // name, body (in answer order)
  std::vector<std::string> missing;
};
Sections parse_sections(const std::string& answer);

}  // namespace chimera::workflow

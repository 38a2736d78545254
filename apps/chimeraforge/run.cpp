// `chimeraforge run`: the agent workflow (ingest -> digest -> analysis -> report).
#include "commands.hpp"
#include "connection_flags.hpp"

#include <chimera/core/options.hpp>
#include <chimera/model/synthetic_model.hpp>
#include <chimera/workflow/workflow.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <unistd.h>

#include <filesystem>
#include <optional>

namespace chimera::cli {

namespace {

struct RunArgs {
  std::vector<std::string> data = {"data/sample"};
  std::string backend = "llama";
  std::string endpoint;
  std::string model;
  std::vector<std::string> configs = {"chimera"};
  int runs = 1;
  std::string strategy = "single";
  std::string out = "out";
  bool quiet = false;
  bool json = false;
  ConnectionFlags connection;
};

// A configuration's settings that the backend cannot take with a request are never dropped in
// silence. GPU layers and threads belong to a loaded model: the in-process engine takes them when
// it loads the model (once for the run, so the configurations that set them must agree), an
// OpenAI-compatible server only as its own flags (llama-server -ngl, -t). A preset's value
// (the study's num_gpu 80) that cannot be applied is left out with a one-line note; a value the
// user wrote in a configuration file is applied or refused. num_ctx is not sent to an
// OpenAI-compatible server: the digest is still sized to it, and the server's -c bounds it.
// Returns "" or the error.
std::string resolve_load_settings(workflow::WorkflowOptions& o, const std::vector<bool>& preset) {
  if (o.endpoint.kind == BackendKind::ollama) return {};
  const bool in_process = o.endpoint.kind == BackendKind::llama;
  struct Chosen {
    std::string config;
    int value = 0;
  };
  std::optional<Chosen> gpu;
  std::optional<Chosen> threads;
  for (std::size_t i = 0; i < o.configs.size(); ++i) {
    auto& c = o.configs[i];
    const auto settle = [&](std::string_view name, std::optional<int>& value,
                            std::optional<Chosen>& chosen) -> std::string {
      if (!value) return {};
      if (preset[i]) {
        fmt::print(stderr,
                   "chimeraforge run: note: the '{}' preset's {}={} is left out: {} (set it in "
                   "a TOML configuration to have it applied)\n",
                   c.name, name, *value,
                   in_process ? "the in-process engine takes it when it loads the model"
                              : "an OpenAI-compatible server takes it only as its own flag "
                                "(llama-server -ngl, -t)");
        value.reset();
        return {};
      }
      if (!in_process) {
        return fmt::format(
            "configuration '{}' sets {}={}, which an OpenAI-compatible server cannot take with "
            "a request: it is the server's own flag (llama-server {}); start the server with it "
            "(`chimeraforge endpoints up`) and remove it from the configuration",
            c.name, name, *value, name == "num_gpu" ? "-ngl" : "-t");
      }
      if (chosen && chosen->value != *value) {
        return fmt::format(
            "configurations '{}' and '{}' set {} to {} and {}: the in-process engine loads the "
            "model once for the run; run them separately, or use `chimeraforge sweep --grid "
            "{}=...`, which reloads the model",
            chosen->config, c.name, name, chosen->value, *value, name);
      }
      chosen = Chosen{c.name, *value};
      return {};
    };
    if (auto e = settle("num_gpu", c.options.num_gpu, gpu); !e.empty()) return e;
    if (auto e = settle("num_thread", c.options.num_thread, threads); !e.empty()) return e;
    if (!in_process && c.options.num_ctx) {
      fmt::print(stderr,
                 "chimeraforge run: note: configuration '{}' sets num_ctx={}: the digest is sized "
                 "to it, but it is not sent (the server's own -c bounds the context)\n",
                 c.name, *c.options.num_ctx);
    }
  }
  if (gpu) o.endpoint.llama.gpu_layers = gpu->value;
  if (threads) o.endpoint.llama.threads = threads->value;
  return {};
}

int run_workflow_command(const RunArgs& a) {
  workflow::WorkflowOptions o;
  for (const auto& d : a.data) {
    if (!std::filesystem::exists(d)) {
      fmt::print(stderr, "chimeraforge run: data folder '{}' does not exist\n", d);
      return kUsage;
    }
    o.data.emplace_back(d);
  }
  std::vector<bool> preset;
  for (const auto& c : a.configs) {
    if (c == "baseline") {
      o.configs.push_back(workflow::baseline_config());
    } else if (c == "chimera") {
      o.configs.push_back(workflow::chimera_config());
    } else if (c == "both") {
      o.configs.push_back(workflow::baseline_config());
      o.configs.push_back(workflow::chimera_config());
      preset.push_back(true);
    } else {
      workflow::WorkflowConfig wc;
      std::string error;
      if (!std::filesystem::exists(c)) {
        fmt::print(stderr,
                   "chimeraforge run: --config '{}' is neither baseline, chimera, both "
                   "nor an existing TOML file\n",
                   c);
        return kUsage;
      }
      if (!workflow::load_config(c, wc, error)) {
        fmt::print(stderr, "chimeraforge run: {}\n", error);
        return kUsage;
      }
      o.configs.push_back(std::move(wc));
      preset.push_back(false);
      continue;
    }
    preset.push_back(true);
  }
  o.runs = a.runs;
  o.strategy =
      a.strategy == "map-reduce" ? workflow::Strategy::map_reduce : workflow::Strategy::single;
  o.out_dir = a.out;
  o.model = a.model;
  if (a.backend == "llama") {
    o.endpoint.kind = BackendKind::llama;
    o.endpoint.url = a.model;
    if (o.endpoint.url.empty()) {
      bool created = false;
      std::string error;
      o.endpoint.url = model::cached_tiny_model(created, error).string();
      if (o.endpoint.url.empty()) {
        fmt::print(stderr, "chimeraforge run: {}\n", error);
        return kFailed;
      }
      if (!a.quiet && !a.json) {
        fmt::print(stderr,
                   "note: no --model given; using the tiny synthetic model {} (random weights: "
                   "its text is noise, its timings are real)\n",
                   o.endpoint.url);
      }
    }
    o.endpoint.llama.parallel = 1;
    o.endpoint.llama.ctx_per_seq = 4096;
  } else {
    o.endpoint.kind = parse_backend_kind(a.backend).value_or(BackendKind::openai);
    o.endpoint.url = a.endpoint.empty() ? endpoint_from_environment(a.backend) : a.endpoint;
    if (o.endpoint.url.empty()) {
      fmt::print(stderr, "chimeraforge run: --backend {} needs --endpoint URL (or ${})\n",
                 a.backend, "OPENAI_BASE_URL");
      return kUsage;
    }
    apply_connection_flags(a.connection, o.endpoint);
  }
  const bool tty = ::isatty(2) != 0;
  if (auto e = resolve_load_settings(o, preset); !e.empty()) {
    fmt::print(stderr, "chimeraforge run: {}\n", e);
    return kUsage;
  }
  if (!a.quiet && !a.json) {
    o.on_progress = [tty](const workflow::ProgressEvent& e) {
      using K = workflow::ProgressEvent::Kind;
      const std::string who = fmt::format("[{} run {}/{}]", e.config, e.run, e.runs);
      switch (e.kind) {
        case K::stage_started:
          if (tty) fmt::print(stderr, "{} {}...", who, e.stage);
          break;
        case K::tokens:
          if (tty) fmt::print(stderr, "\r{} {}: {} tokens", who, e.stage, e.tokens);
          break;
        case K::stage_done:
          fmt::print(stderr, "{}{} {}: {}\n", tty ? "\r\033[K" : "", who, e.stage, e.text);
          break;
        case K::message:
          fmt::print(stderr, "{} {}\n", who, e.text);
          break;
      }
    };
  }
  const auto r = workflow::run_workflow(o);
  if (a.json) {
    boost::json::array runs;
    for (const auto& run : r.runs) {
      runs.push_back(boost::json::object{{"config", run.config},
                                         {"run", run.run},
                                         {"total_ms", run.total_ms},
                                         {"report", run.report_file.string()}});
    }
    boost::json::array written;
    for (const auto& p : r.written) written.emplace_back(p.string());
    fmt::print("{}\n",
               boost::json::serialize(boost::json::object{
                   {"ok", r.ok},
                   {"error", r.ok ? boost::json::value(nullptr) : boost::json::value(r.error)},
                   {"runs", std::move(runs)},
                   {"written", std::move(written)}}));
  } else if (!a.quiet) {
    for (const auto& p : r.written) fmt::print("wrote {}\n", p.string());
  }
  if (!r.ok) {
    fmt::print(stderr, "chimeraforge run: {}\n", r.error);
    return kFailed;
  }
  return kOk;
}

}  // namespace

std::function<int()> add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand(
      "run",
      "The agent workflow: ingest benchmark data (CSV, JSON, Markdown, text), digest it, ask the "
      "model for an analysis and a technical report, and write report.md and metrics.json "
      "(and comparison.md with several configurations).\n\n"
      "Examples:\n"
      "  chimeraforge run                                  # data/sample, in-process tiny model\n"
      "  chimeraforge run --data ../shared/corpus --config both --runs 5\n"
      "  chimeraforge run --backend ollama --endpoint http://127.0.0.1:11434 --model llama3.2:1b"
      "\n\n" +
          connection_env_help());
  add_connection_flags(cmd, a->connection);
  cmd->add_option("--data,-d", a->data, "Folders or files to ingest")->capture_default_str();
  cmd->add_option("--backend,-b", a->backend, "llama (in-process), ollama or openai")
      ->check(CLI::IsMember({"llama", "ollama", "openai"}))
      ->capture_default_str();
  cmd->add_option("--endpoint,-e", a->endpoint, "Server URL for ollama and openai");
  cmd->add_option("--model,-m", a->model,
                  "Model: a GGUF file for llama (default: the tiny synthetic model), a model "
                  "name for servers");
  cmd->add_option("--config,-c", a->configs,
                  "baseline (server defaults), chimera (the study's settings), both, or a TOML "
                  "file; repeat for several")
      ->capture_default_str();
  cmd->add_option("--runs,-n", a->runs, "Runs of each configuration")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--strategy", a->strategy,
                  "single: one analysis call with the ranked digest; map-reduce: one call per key "
                  "metric's slice, then one synthesis call (more calls, more of the data seen)")
      ->check(CLI::IsMember({"single", "map-reduce"}))
      ->capture_default_str();
  cmd->add_option("--out,-o", a->out,
                  "Output folder; a failed run replaces nothing there and writes failed-run.json")
      ->capture_default_str();
  cmd->add_flag("--quiet,-q", a->quiet, "No progress output");
  cmd->add_flag("--json", a->json, "Print one JSON summary instead of progress");
  return [a]() { return run_workflow_command(*a); };
}

}  // namespace chimera::cli

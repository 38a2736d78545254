// Workflow configurations: the two built in, and TOML files read with the shared checked reader
// (core/toml_reader.hpp) and the option table (options.hpp).
#include "core/toml_reader.hpp"

#include <chimera/core/options.hpp>
#include <chimera/workflow/workflow.hpp>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <string>

namespace chimera::workflow {

namespace fs = std::filesystem;

WorkflowConfig baseline_config() {
  WorkflowConfig c;
  c.name = "baseline";
  return c;
}

WorkflowConfig chimera_config() {
  WorkflowConfig c;
  c.name = "chimera";
  c.preset = true;
  c.options.num_gpu = 80;
  c.options.num_ctx = 512;
  c.options.temperature = 0.8;
  c.options.top_p = 0.9;
  c.options.top_k = 40;
  c.options.repeat_penalty = 1.1;
  return c;
}

bool load_config(const fs::path& file, WorkflowConfig& out, std::string& error) {
  std::string text;
  if (!detail::read_config_file(file, "workflow configuration", text, error)) return false;
  // One checked reader, as pool and scene files use: unknown keys, wrong types, integers out of
  // their type's range and non-finite numbers are errors naming the file, line and key.
  const std::string source = file.string();
  toml::table t;
  if (!detail::parse_toml(text, source, t, error)) return false;
  WorkflowConfig c;
  c.name = file.stem().string();
  detail::Reader top(t, source, error);
  int64_t digest_budget = 1500;
  if (!top.known({"name", "digest_budget", "analysis_tokens", "report_tokens", "options"},
                 "a workflow configuration") ||
      !top.str("name", c.name) || !top.integer("digest_budget", digest_budget, 16, 1'000'000) ||
      !top.integer("analysis_tokens", c.analysis_tokens, 1, 131072) ||
      !top.integer("report_tokens", c.report_tokens, 1, 131072)) {
    return false;
  }
  c.digest_budget = static_cast<std::size_t>(digest_budget);
  if (const toml::node* n = t.get("options")) {
    const auto* opts = n->as_table();
    if (opts == nullptr) {
      error = fmt::format("{}: 'options' must be a table", detail::where(source, *n));
      return false;
    }
    detail::Reader r(*opts, source, error);
    if (!r.known(option_names(), "[options]") || !detail::read_options(r, c.options)) {
      return false;
    }
  }
  out = std::move(c);
  return true;
}

}  // namespace chimera::workflow

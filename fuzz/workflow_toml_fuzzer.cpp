// Workflow configuration files (`chimeraforge run --config FILE.toml`): any text is either a
// configuration whose options are usable (chimera::validate) and whose sizes are positive, or
// a message naming the file. The reader takes a path, so the input goes through a file in
// memory-backed /dev/shm (or the temporary folder).
#include <chimera/core/request.hpp>
#include <chimera/workflow/workflow.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

std::filesystem::path scratch_file() {
  std::filesystem::path dir = "/dev/shm";
  if (!std::filesystem::is_directory(dir)) dir = std::filesystem::temp_directory_path();
  return dir / ("chimera-fuzz-workflow-" + std::to_string(::getpid()) + ".toml");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path path = scratch_file();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  chimera::workflow::WorkflowConfig config;
  std::string error;
  if (!chimera::workflow::load_config(path, config, error)) {
    if (error.find(path.filename().string()) == std::string::npos) {
      std::fprintf(stderr, "error does not name the file: %s\n", error.c_str());
      std::abort();
    }
    return 0;
  }
  const std::string problem = chimera::validate(config.options);
  if (!problem.empty() || config.analysis_tokens <= 0 || config.report_tokens <= 0 ||
      config.digest_budget == 0) {
    std::fprintf(stderr, "accepted a configuration with %s; analysis %d, report %d, budget %zu\n",
                 problem.empty() ? "usable options" : problem.c_str(), config.analysis_tokens,
                 config.report_tokens, config.digest_budget);
    std::abort();
  }
  return 0;
}

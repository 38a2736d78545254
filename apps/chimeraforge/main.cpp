// chimeraforge: the command-line front end of the engine.
#include "commands.hpp"

#include <chimera/version.h>

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Command {
  const char* name;
  std::function<int()> (*add)(CLI::App&);
};

constexpr Command kCommands[] = {
    {"generate", chimera::cli::add_generate},
    {"agent", chimera::cli::add_agent},
    {"endpoints", chimera::cli::add_endpoints},
    {"model", chimera::cli::add_model},
    {"run", chimera::cli::add_run},
    {"multi", chimera::cli::add_multi},
    {"sweep", chimera::cli::add_sweep},
    {"study", chimera::cli::add_study},
    {"synth-server", chimera::cli::add_synth_server},
    {"banter", chimera::cli::add_banter},
    {"serve", chimera::cli::add_serve},
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "chimeraforge: run LLM agents as fast as the hardware allows.\n\n"
      "Talks to Ollama and OpenAI-compatible servers (llama-server, vLLM), streams tokens, and\n"
      "measures every request the same way (see docs/metrics.md).\n\n"
      "Examples:\n"
      "  chimeraforge run            # the agent workflow on data/sample, in-process\n"
      "  chimeraforge model synth --preset tiny --out tiny.gguf\n"
      "  chimeraforge generate --endpoint http://127.0.0.1:8080 --backend openai --prompt hi\n"
      "  chimeraforge agent --endpoint http://127.0.0.1:8080 --tools tools.json --exec ./tool.sh "
      "--prompt 'Weather in Paris?'\n"
      "  chimeraforge endpoints check http://127.0.0.1:11434 http://127.0.0.1:8080\n",
      "chimeraforge"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "chimeraforge " CHIMERA_VERSION_STRING);
  // Building every command's options costs thousands of allocations at each start
  // (docs/performance.md); when the first argument names a command, only that one is built.
  // Anything else (--help, --version, an unknown name, none) builds them all, so that help
  // lists every command and a mistake is reported as before.
  const Command* named = nullptr;
  for (const auto& c : kCommands) {
    if (argc > 1 && std::strcmp(argv[1], c.name) == 0) named = &c;
  }
  std::vector<std::pair<std::string, std::function<int()>>> runners;
  for (const auto& c : kCommands) {
    if (named == nullptr || named == &c) runners.emplace_back(c.name, c.add(app));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help, or the error and a hint
    return rc == 0 ? chimera::cli::kOk : chimera::cli::kUsage;
  }
  try {
    for (const auto& [name, run] : runners) {
      if (app.got_subcommand(name)) return run();
    }
  } catch (const std::bad_alloc&) {
    fmt::print(stderr,
               "chimeraforge: out of memory (ENOMEM): an allocation failed; lower "
               "num_ctx, the number of agents or characters, or raise the memory limit\n");
    return chimera::cli::kFailed;
  } catch (const std::exception& e) {
    fmt::print(stderr, "chimeraforge: {}\n", e.what());
    return chimera::cli::kFailed;
  }
  return chimera::cli::kUsage;
}

// chimeraforge: the command-line front end of the engine.
#include "dispatch.hpp"

#include <chimera/version.h>

namespace {

using chimera::cli::Command;

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
  app.set_version_flag("--version", "chimeraforge " CHIMERA_VERSION_STRING);
  return chimera::cli::dispatch(app, kCommands, argc, argv, "chimeraforge",
                                "num_ctx, the number of agents or characters");
}

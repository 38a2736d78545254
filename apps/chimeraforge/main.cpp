// chimeraforge: the command-line front end of the engine.
#include "commands.hpp"

#include <chimera/version.h>

#include <fmt/format.h>

#include <cstdio>
#include <new>

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
  auto run_generate = chimera::cli::add_generate(app);
  auto run_agent = chimera::cli::add_agent(app);
  auto run_endpoints = chimera::cli::add_endpoints(app);
  auto run_model = chimera::cli::add_model(app);
  auto run_run = chimera::cli::add_run(app);
  auto run_multi = chimera::cli::add_multi(app);
  auto run_sweep = chimera::cli::add_sweep(app);
  auto run_synth_server = chimera::cli::add_synth_server(app);
  auto run_banter = chimera::cli::add_banter(app);
  auto run_serve = chimera::cli::add_serve(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help, or the error and a hint
    return rc == 0 ? chimera::cli::kOk : chimera::cli::kUsage;
  }
  try {
    if (app.got_subcommand("generate")) return run_generate();
    if (app.got_subcommand("agent")) return run_agent();
    if (app.got_subcommand("endpoints")) return run_endpoints();
    if (app.got_subcommand("model")) return run_model();
    if (app.got_subcommand("run")) return run_run();
    if (app.got_subcommand("multi")) return run_multi();
    if (app.got_subcommand("sweep")) return run_sweep();
    if (app.got_subcommand("synth-server")) return run_synth_server();
    if (app.got_subcommand("banter")) return run_banter();
    if (app.got_subcommand("serve")) return run_serve();
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

// chimeraforge-client: chimeraforge's commands that talk to servers, in a program without
// llama.cpp (docs/performance.md). A process that only speaks HTTP then maps neither llama.cpp's
// code nor runs its static initialisers at start-up. Any other command (model, run, banter,
// serve, ...) runs in chimeraforge, found beside this program, with the same arguments.
#include "../chimeraforge/dispatch.hpp"

#include <chimera/version.h>

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <system_error>

namespace {

using chimera::cli::Command;

constexpr Command kCommands[] = {
    {"generate", chimera::cli::add_generate},   {"agent", chimera::cli::add_agent},
    {"endpoints", chimera::cli::add_endpoints}, {"multi", chimera::cli::add_multi},
    {"sweep", chimera::cli::add_sweep},         {"synth-server", chimera::cli::add_synth_server},
};

// Replaces this process with chimeraforge from this program's folder, same arguments.
int run_full_cli(char** argv) {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto full = (ec ? std::filesystem::path(argv[0]) : self).parent_path() / "chimeraforge";
  ::execv(full.c_str(), argv);
  fmt::print(stderr,
             "chimeraforge-client: `{}` is a command of chimeraforge, which could not be run from "
             "{}: {}\n",
             argv[1], full.string(), std::strerror(errno));
  return chimera::cli::kFailed;
}

}  // namespace

int main(int argc, char** argv) {
  // A command this program does not have (or a mistyped one, which chimeraforge reports).
  if (argc > 1 && argv[1][0] != '-' &&
      std::none_of(std::begin(kCommands), std::end(kCommands),
                   [&](const Command& c) { return std::strcmp(argv[1], c.name) == 0; })) {
    return run_full_cli(argv);
  }
  CLI::App app{
      "chimeraforge-client: chimeraforge's commands that talk to servers, in a small process\n"
      "without llama.cpp. The in-process backend (--backend llama) and model synthesis are in\n"
      "chimeraforge; any other command given here (model, run, banter, serve, ...) runs there.\n",
      "chimeraforge-client"};
  app.set_version_flag("--version", "chimeraforge-client " CHIMERA_VERSION_STRING);
  return chimera::cli::dispatch(app, kCommands, argc, argv, "chimeraforge-client",
                                "the number of agents");
}

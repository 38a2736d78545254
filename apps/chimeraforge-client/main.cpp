// chimeraforge-client: chimeraforge's commands that talk to servers, in a program without
// llama.cpp (docs/performance.md). A process that only speaks HTTP then maps neither llama.cpp's
// code nor runs its static initialisers at start-up. Any other command (model, run, banter,
// serve, ...) runs in chimeraforge, found beside this program, with the same arguments.
#include "../chimeraforge/commands.hpp"

#include <chimera/version.h>

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iterator>
#include <new>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace {

struct Command {
  const char* name;
  std::function<int()> (*add)(CLI::App&);
};

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
  app.require_subcommand(1);
  app.set_version_flag("--version", "chimeraforge-client " CHIMERA_VERSION_STRING);
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
    const int rc = app.exit(e);
    return rc == 0 ? chimera::cli::kOk : chimera::cli::kUsage;
  }
  try {
    for (const auto& [name, run] : runners) {
      if (app.got_subcommand(name)) return run();
    }
  } catch (const std::bad_alloc&) {
    fmt::print(stderr,
               "chimeraforge-client: out of memory (ENOMEM): an allocation failed; lower the "
               "number of agents, or raise the memory limit\n");
    return chimera::cli::kFailed;
  } catch (const std::exception& e) {
    fmt::print(stderr, "chimeraforge-client: {}\n", e.what());
    return chimera::cli::kFailed;
  }
  return chimera::cli::kUsage;
}

// The command table and its dispatch, shared by chimeraforge and chimeraforge-client: each
// program lists the commands it links, and one function builds, parses and runs them the same
// way (the same help, usage errors, exit codes and last-resort error messages).
#pragma once

#include "commands.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <new>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace chimera::cli {

struct Command {
  const char* name;
  std::function<int()> (*add)(CLI::App&);
};

// Builds `app`'s commands, parses argv and runs the command named. `program` prefixes the
// last-resort messages; `memory_hint` says what to lower when an allocation fails.
inline int dispatch(CLI::App& app, std::span<const Command> commands, int argc, char** argv,
                    const char* program, const char* memory_hint) {
  app.require_subcommand(1);
  // Building every command's options costs thousands of allocations at each start
  // (docs/performance.md); when the first argument names a command, only that one is built.
  // Anything else (--help, --version, an unknown name, none) builds them all, so that help
  // lists every command and a mistake is reported as before.
  const Command* named = nullptr;
  for (const auto& c : commands) {
    if (argc > 1 && std::strcmp(argv[1], c.name) == 0) named = &c;
  }
  std::vector<std::pair<std::string, std::function<int()>>> runners;
  for (const auto& c : commands) {
    if (named == nullptr || named == &c) runners.emplace_back(c.name, c.add(app));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help, or the error and a hint
    return rc == 0 ? kOk : kUsage;
  }
  try {
    for (const auto& [name, run] : runners) {
      if (app.got_subcommand(name)) return run();
    }
  } catch (const std::bad_alloc&) {
    fmt::print(stderr,
               "{}: out of memory (ENOMEM): an allocation failed; lower {}, or raise the memory "
               "limit\n",
               program, memory_hint);
    return kFailed;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return kFailed;
  }
  return kUsage;
}

}  // namespace chimera::cli

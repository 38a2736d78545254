// The CLI's subcommands. Each registers itself on the app and runs when chosen.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace chimera::cli {

// Exit codes shared by every subcommand.
enum Exit : int {
  kOk = 0,
  kFailed = 1,  // the operation failed (the request, the server, the file)
  kUsage = 2,   // the command line was wrong
  kInterrupted = 130,
};

// The longest --busy-poll-us a command takes (multi, serve): the Runtime's polling after each
// event, 10 ms at most.
constexpr int kMaxBusyPollUs = 10'000;

// Each returns the function that runs the subcommand once parsed.
std::function<int()> add_generate(CLI::App& app);
std::function<int()> add_agent(CLI::App& app);
std::function<int()> add_endpoints(CLI::App& app);
std::function<int()> add_model(CLI::App& app);
std::function<int()> add_run(CLI::App& app);
std::function<int()> add_multi(CLI::App& app);
std::function<int()> add_sweep(CLI::App& app);
std::function<int()> add_study(CLI::App& app);
std::function<int()> add_synth_server(CLI::App& app);
std::function<int()> add_banter(CLI::App& app);
std::function<int()> add_serve(CLI::App& app);

}  // namespace chimera::cli

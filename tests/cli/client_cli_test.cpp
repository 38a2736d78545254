// chimeraforge-client, the CLI's server-facing commands without llama.cpp: it runs them as the
// CLI does, hands every other command to chimeraforge beside it, and refuses the in-process
// backend with an error that names chimeraforge.
#include "support/test_support.hpp"

#include <chimera/synth/server.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using chimera::test::CliRun;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

CliRun run_client(const std::string& args) {
  static int n = 0;
  const fs::path dir = fs::temp_directory_path() / ("chimera-client-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto out = dir / ("out" + std::to_string(n));
  const auto err = dir / ("err" + std::to_string(n++));
  const std::string cmd = std::string(CHIMERA_CLIENT) + " " + args + " >" + out.string() + " 2>" +
                          err.string() + " </dev/null";
  const int status = std::system(cmd.c_str());
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  CliRun r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

TEST(ClientCli, HelpListsTheServerCommands) {
  const CliRun top = run_client("--help");
  EXPECT_EQ(top.rc, 0) << top.err;
  for (const char* name : {"generate", "agent", "endpoints", "multi", "sweep", "synth-server"}) {
    EXPECT_TRUE(contains(top.out, name)) << name << "\n" << top.out;
  }
  EXPECT_TRUE(contains(top.out, "chimeraforge-client")) << top.out;
  const CliRun version = run_client("--version");
  EXPECT_EQ(version.rc, 0);
  EXPECT_TRUE(contains(version.out, "chimeraforge-client")) << version.out;
  EXPECT_EQ(run_client("").rc, 2);  // no command: a usage error, as with chimeraforge
  const CliRun flag = run_client("generate --endpoint http://127.0.0.1:1 --no-such-flag");
  EXPECT_EQ(flag.rc, 2);
  EXPECT_TRUE(contains(flag.err, "no-such-flag")) << flag.err;
}

TEST(ClientCli, OtherCommandsRunInChimeraforge) {
  // `model` is not in the client: chimeraforge beside it answers, with its own help.
  CliRun r = run_client("model synth --help");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "llama-1b")) << r.out;
  // A mistyped command reaches chimeraforge too, which reports it as a usage error.
  r = run_client("genrate --prompt hi");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "subcommand")) << r.err;
}

TEST(ClientCli, GeneratesAndRunsAgentsAgainstTheSyntheticServer) {
  chimera::synth::SynthServer srv({.ttft_ms = 1, .tokens_per_s = 2000, .tokens = 8});
  srv.start();
  CliRun r = run_client("generate --endpoint " + srv.url() +
                        " --backend ollama --model synth --prompt hi --num-predict 5 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "\"tokens\"") || contains(r.out, "ttft")) << r.out;
  r = run_client("multi --endpoint " + srv.url() +
                 " --backend openai --model synth --prompt hi --agents 3 --requests-per-agent 2 "
                 "--max-tokens 4 --no-calibrate --results ''");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.out + r.err, "6 requests done of 6, 0 errors")) << r.out << r.err;
}

TEST(ClientCli, TheInProcessBackendIsRefusedNamingChimeraforge) {
  const fs::path model = chimera::test::tiny_model();
  const CliRun r = run_client("generate --backend llama --model " + model.string() +
                              " --prompt hi --num-predict 2");
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "in-process backend")) << r.err;
  EXPECT_TRUE(contains(r.err, "run the same command with chimeraforge")) << r.err;
}

}  // namespace

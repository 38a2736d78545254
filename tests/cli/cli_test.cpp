// The chimeraforge command line, run as a user runs it: a real process, real exit codes.
#include "support/test_support.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;
using chimera::test::LlamaServer;

using chimera::test::CliRun;
using chimera::test::run_cli;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(Cli, HelpOnEveryCommand) {
  for (const char* args :
       {"--help", "generate --help", "endpoints --help", "endpoints check --help", "model --help",
        "model synth --help", "run --help"}) {
    const CliRun r = run_cli(args);
    EXPECT_EQ(r.rc, 0) << args << "\n" << r.err;
    EXPECT_TRUE(contains(r.out, "Usage") || contains(r.out, "usage") || contains(r.out, "USAGE"))
        << args << "\n"
        << r.out;
  }
  EXPECT_TRUE(contains(run_cli("generate --help").out, "--num-ctx"));
  EXPECT_TRUE(contains(run_cli("model synth --help").out, "llama-1b"));
  // A command named first is the only one built (start-up); help without one lists them all.
  const CliRun top = run_cli("--help");
  for (const char* name : {"generate", "agent", "endpoints", "model", "run", "multi", "sweep",
                           "synth-server", "banter", "serve"}) {
    EXPECT_TRUE(contains(top.out, name)) << name << "\n" << top.out;
  }
  const CliRun version = run_cli("--version");
  EXPECT_EQ(version.rc, 0);
  EXPECT_TRUE(contains(version.out, "chimeraforge")) << version.out;
}

TEST(Cli, UsageErrorsExitTwoWithAMessage) {
  CliRun r = run_cli("");
  EXPECT_EQ(r.rc, 2);
  EXPECT_FALSE(r.err.empty());
  r = run_cli("genrate --prompt hi");  // not a command: a usage error, as with none
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "subcommand")) << r.err;
  r = run_cli("generate --endpoint http://127.0.0.1:1 --no-such-flag");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "no-such-flag")) << r.err;
  r = run_cli("generate --endpoint http://127.0.0.1:1");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--prompt")) << r.err;
  r = run_cli("generate --endpoint http://127.0.0.1:1 --backend bogus --prompt hi");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "bogus")) << r.err;
  r = run_cli("generate --endpoint ftp://x --backend openai --prompt hi");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "ftp")) << r.err;
  r = run_cli("generate --endpoint http://127.0.0.1:1 --top-p 7 --prompt hi");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "top-p")) << r.err;
}

TEST(Cli, RunRejectsMissingDataAndBadConfigs) {
  CliRun r = run_cli("run --data /no/such/folder");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "/no/such/folder")) << r.err;
  r = run_cli("run --data . --config warp-speed");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "warp-speed")) << r.err;
  r = run_cli("run --data . --backend ollama");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--endpoint")) << r.err;
}

TEST(Cli, BadMessagesFileNamesTheFile) {
  const fs::path p = fs::temp_directory_path() / "chimera-cli-bad-messages.json";
  std::ofstream(p) << "[{\"role\": \"user\", \"content\": ";
  CliRun r =
      run_cli("generate --endpoint http://127.0.0.1:1 --backend openai --messages " + p.string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, p.string())) << r.err;
  std::ofstream(p) << "[{\"role\": \"user\"}]";
  r = run_cli("generate --endpoint http://127.0.0.1:1 --backend openai --messages " + p.string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "message 0")) << r.err;
  fs::remove(p);
}

TEST(Cli, DeadEndpointFailsClearly) {
  const std::string url = "http://127.0.0.1:" + std::to_string(chimera::free_loopback_port());
  CliRun r = run_cli("generate --endpoint " + url + " --backend openai --prompt hi");
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.err, url)) << r.err;
  EXPECT_TRUE(contains(r.err, "cannot connect")) << r.err;
  r = run_cli("generate --endpoint " + url + " --prompt hi");  // auto-detection
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.err, url)) << r.err;
}

TEST(Cli, ModelSynthWritesAModelAndRejectsUnknownPresets) {
  const fs::path p =
      fs::temp_directory_path() / ("chimera-cli-tiny-" + std::to_string(::getpid()) + ".gguf");
  CliRun r = run_cli("model synth --preset tiny --out " + p.string() + " --quiet");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::exists(p));
  EXPECT_TRUE(contains(r.out, "8.6M parameters")) << r.out;
  fs::remove(p);
  r = run_cli("model synth --preset nonesuch --out " + p.string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.err, "nonesuch")) << r.err;
  EXPECT_TRUE(contains(r.err, "tiny")) << r.err;
  EXPECT_FALSE(fs::exists(p));
}

// `--backend llama` with no model: the tiny synthetic model is made on first use, and the user
// is told what it is.
TEST(Cli, GenerateInProcessWithNoModel) {
  const fs::path cache =
      fs::temp_directory_path() / ("chimera-cli-cache-" + std::to_string(::getpid()));
  fs::remove_all(cache);
  const std::string env = "XDG_CACHE_HOME=" + cache.string() + " ";
  const std::string cmd = std::string("env ") + env + CHIMERA_CLI +
                          " generate --backend llama --prompt hi --num-predict 8";
  const fs::path out = cache.string() + ".out", err = cache.string() + ".err";
  const int status = std::system((cmd + " >" + out.string() + " 2>" + err.string()).c_str());
  ASSERT_EQ(WEXITSTATUS(status), 0) << slurp(err);
  const std::string e = slurp(err);
  EXPECT_TRUE(contains(e, "tiny synthetic model")) << e;
  EXPECT_TRUE(contains(e, "written just now")) << e;
  EXPECT_TRUE(contains(e, "tokens 8")) << e;
  EXPECT_TRUE(fs::exists(cache / "chimeraforge" / "models" / "tiny-seed42.gguf"));
  const int again = std::system((cmd + " --json >" + out.string() + " 2>" + err.string()).c_str());
  ASSERT_EQ(WEXITSTATUS(again), 0) << slurp(err);
  EXPECT_TRUE(contains(slurp(out), "\"tokens_out\":8")) << slurp(out);
  fs::remove_all(cache);
  fs::remove(out);
  fs::remove(err);
}

TEST(Cli, GenerateInProcessWithAMissingModelFailsClearly) {
  const CliRun r = run_cli("generate --backend llama --model /no/such/model.gguf --prompt hi");
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.err, "/no/such/model.gguf")) << r.err;
}

class CliAgainstLlamaServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<LlamaServer>(chimera::test::tiny_model());
    ASSERT_TRUE(server_->ok()) << server_->error();
  }
  static void TearDownTestSuite() { server_.reset(); }
  static std::unique_ptr<LlamaServer> server_;
};
std::unique_ptr<LlamaServer> CliAgainstLlamaServer::server_;

// The acceptance line of the foundation: text streams, then the figures.
TEST_F(CliAgainstLlamaServer, GenerateStreamsTextAndPrintsFigures) {
  const CliRun r = run_cli("generate --endpoint " + server_->url() +
                           " --backend openai --model m --prompt hi --num-predict 32");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_GT(r.out.size(), 1u);
  for (const char* figure : {"ttft_client", "ttft_server", "tokens 32", "decode_tps_client",
                             "decode_tps_server", "e2e"}) {
    EXPECT_TRUE(contains(r.err, figure)) << figure << " missing from: " << r.err;
  }
}

TEST_F(CliAgainstLlamaServer, GenerateJsonHasTextAndMetricsNames) {
  const CliRun r = run_cli("generate --endpoint " + server_->url() +
                           " --prompt hi --num-predict 8 --temperature 0.7 --seed 3 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  boost::system::error_code ec;
  const auto v = boost::json::parse(r.out, ec);
  ASSERT_FALSE(ec) << r.out;
  const auto& o = v.as_object();
  for (const char* key : {"text", "ttft_client", "ttft_server", "tokens_out", "decode_tps_client",
                          "decode_tps_server", "e2e", "itl", "sources"}) {
    EXPECT_TRUE(o.contains(key)) << key;
  }
  EXPECT_EQ(o.at("tokens_out").as_int64(), 8);
  EXPECT_EQ(o.at("backend").as_string(), "openai");  // detected
  EXPECT_EQ(o.at("sources").as_object().at("ttft_client").as_string(), "measured");
  EXPECT_EQ(o.at("sources").as_object().at("tokens_out").as_string(), "server");
}

TEST_F(CliAgainstLlamaServer, EndpointsCheckReportsUpAndDown) {
  const std::string dead = "http://127.0.0.1:" + std::to_string(chimera::free_loopback_port());
  const CliRun r = run_cli("endpoints check " + server_->url() + " " + dead);
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(contains(r.out, server_->url() + "  UP  api=openai server=llama-server")) << r.out;
  EXPECT_TRUE(contains(r.out, dead + "  DOWN")) << r.out;
  const CliRun ok = run_cli("endpoints check --json " + server_->url());
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_TRUE(contains(ok.out, "\"healthy\":true")) << ok.out;
}

}  // namespace

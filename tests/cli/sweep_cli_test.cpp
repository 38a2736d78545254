// `chimeraforge sweep` run as a user runs it: against the synthetic server (Ollama's protocol),
// against llama-servers it starts and restarts itself, and in-process with reloads. A fixture
// server stands in for Ollama where the test reads the requests received (no Ollama can be
// installed here; the synthetic server does not keep what it received).
#include "support/fixture_server.hpp"
#include "support/test_support.hpp"

#include <chimera/synth/server.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using chimera::test::CliRun;
using chimera::test::run_cli;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

fs::path out_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("chimera-sweep-test-" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  return dir;
}

class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(out_dir("x").parent_path(), ec);
  }
};
[[maybe_unused]] ::testing::Environment* const sweep_cleanup =
    ::testing::AddGlobalTestEnvironment(new ScratchCleanup);  // gtest owns it

// The run records of runs.jsonl (the header left out).
std::vector<json::object> run_records(const fs::path& dir) {
  std::vector<json::object> runs;
  std::ifstream in(dir / "runs.jsonl");
  for (std::string line; std::getline(in, line);) {
    json::object o = json::parse(line).as_object();
    if (o.at("kind") == json::value("run")) runs.push_back(std::move(o));
  }
  return runs;
}

json::object sweep_json(const fs::path& dir) {
  std::ifstream in(dir / "sweep.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str()).as_object();
}

std::string config_of(const json::object& run) {
  return std::string(run.at("config").as_string());
}

// The acceptance line: a 2 x 2 grid against the synthetic server gives 4 configurations with
// n = runs each and a best configuration per metric; several agents give contention.
TEST(SweepCli, TwoByTwoGridAgainstTheSyntheticServer) {
  chimera::synth::SynthServer srv({.ttft_ms = 2, .tokens_per_s = 2000, .tokens = 8});
  srv.start();
  const fs::path dir = out_dir("synth");
  const CliRun r = run_cli("sweep --endpoint " + srv.url() +
                           " --backend ollama --model m --scenario multi --agents 2 "
                           "--grid temperature=0.6,0.8 --grid top_k=20,40 --runs 2 "
                           "--max-tokens 8 --out " +
                           dir.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "[4/4] temperature=0.8 top_k=40 run 2/2")) << r.err;
  EXPECT_TRUE(contains(r.err, "left")) << r.err;  // the estimate of the time left
  const auto runs = run_records(dir);
  ASSERT_EQ(runs.size(), 8u);
  EXPECT_EQ(runs[0].at("settings").at("temperature").as_double(), 0.6);
  EXPECT_EQ(runs[0].at("placement").at("top_k"), json::value("per request"));
  EXPECT_TRUE(runs[0].at("figures").as_object().contains("contention"));
  EXPECT_TRUE(runs[0].at("figures").as_object().contains("ttft_anomaly"));

  const json::object s = sweep_json(dir);
  const auto& configs = s.at("configurations").as_array();
  ASSERT_EQ(configs.size(), 4u);
  for (const auto& c : configs) {
    EXPECT_EQ(c.at("runs").as_int64(), 2);
    EXPECT_EQ(c.at("metrics").at("ttft_client_p50_ms").at("n").as_int64(), 2);
    EXPECT_EQ(c.at("metrics").at("errors").at("mean").as_double(), 0);
  }
  std::set<std::string> best;
  for (const auto& b : s.at("best").as_array())
    best.insert(std::string(b.at("metric").as_string()));
  for (const char* m : {"ttft_client_p50_ms", "system_tps", "contention", "ttft_anomaly"}) {
    EXPECT_EQ(best.count(m), 1u) << m;
  }
  std::ifstream md(dir / "summary.md");
  std::stringstream text;
  text << md.rdbuf();
  EXPECT_TRUE(contains(text.str(), "| temperature=0.6 top_k=20 | 0 of 2 | 0.0% |")) << text.str();
  EXPECT_TRUE(fs::exists(dir / "chart-system_tps.svg"));

  // The records are there: a second sweep into the folder is refused, --resume runs nothing
  // more and rewrites the same summary.
  const std::string again =
      "sweep --endpoint " + srv.url() +
      " --backend ollama --model m --grid temperature=0.6,0.8 --grid top_k=20,40 "
      "--runs 2 --scenario multi --agents 2 --out " +
      dir.string();
  const CliRun refused = run_cli(again);
  EXPECT_EQ(refused.rc, 2);
  EXPECT_TRUE(contains(refused.err, "--resume")) << refused.err;
  const CliRun resumed = run_cli(again + " --resume");
  EXPECT_EQ(resumed.rc, 0) << resumed.err;
  EXPECT_TRUE(contains(resumed.err, "8 runs already recorded")) << resumed.err;
  EXPECT_EQ(run_records(dir).size(), 8u);
}

std::string ollama_stream() {
  return "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":"
         "\"assistant\",\"content\":\"hi\"},\"done\":false}\n"
         "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":"
         "\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,"
         "\"eval_count\":1,\"eval_duration\":1000000,\"prompt_eval_count\":3,"
         "\"prompt_eval_duration\":1000000}\n";
}

// Ollama takes every setting with the request: each configuration's options arrive as sent.
TEST(SweepCli, OllamaReceivesEachConfigurationsOptions) {
  chimera::test::FixtureServer srv;
  srv.route("POST", "/api/chat", chimera::test::Script::ndjson({ollama_stream()}));
  const fs::path dir = out_dir("options");
  const CliRun r = run_cli("sweep --endpoint " + srv.url() +
                           " --backend ollama --model m --grid num_gpu=60,80 "
                           "--grid num_ctx=256,512 --set seed=5 --runs 1 -q --out " +
                           dir.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  std::set<std::pair<int64_t, int64_t>> received;
  for (const auto& req : srv.requests()) {
    if (req.target != "/api/chat") continue;
    const json::object body = json::parse(req.body).as_object();
    const auto& o = body.at("options");
    EXPECT_EQ(o.at("seed").as_int64(), 5);
    received.insert({o.at("num_gpu").as_int64(), o.at("num_ctx").as_int64()});
  }
  EXPECT_EQ(received,
            (std::set<std::pair<int64_t, int64_t>>{{60, 256}, {60, 512}, {80, 256}, {80, 512}}));
}

TEST(SweepCli, ASettingThatCannotBeAppliedIsAnErrorBeforeAnythingRuns) {
  const fs::path dir = out_dir("refused");
  CliRun r = run_cli(
      "sweep --endpoint http://127.0.0.1:9 --backend openai --grid num_gpu=60,80 "
      "--out " +
      dir.string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err,
                       "num_gpu cannot be applied to an OpenAI-compatible endpoint that "
                       "this sweep did not start"))
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "runs.jsonl"));
  r = run_cli("sweep --endpoint http://127.0.0.1:9 --model m --grid num_ctx=256,abc --out " +
              dir.string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--grid 'num_ctx=256,abc': num_ctx is 'abc'")) << r.err;
  r = run_cli("sweep --endpoint http://127.0.0.1:9 --grid top_k=20,40 --out " + dir.string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--backend ollama needs --model NAME")) << r.err;
  r = run_cli("sweep --backend openai --model /no/such.gguf --out " + dir.string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--model '/no/such.gguf': no such file")) << r.err;
}

// The in-process engine takes num_ctx when it loads the model: the sweep reloads it, and the
// records say so.
TEST(SweepCli, InProcessReloadsTheModelForEachContextSize) {
  const fs::path dir = out_dir("inproc");
  const CliRun r = run_cli("sweep --backend llama --model " + chimera::test::tiny_model().string() +
                           " --grid num_ctx=256,512 --runs 1 --max-tokens 4 --out " + dir.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto runs = run_records(dir);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_TRUE(contains(std::string(runs[0].at("setup").as_string()),
                       "the model loaded with "
                       "num_ctx=256"));
  EXPECT_TRUE(contains(std::string(runs[1].at("setup").as_string()),
                       "the model reloaded with "
                       "num_ctx=512"));
  EXPECT_EQ(runs[1].at("placement").at("num_ctx"), json::value("model reload"));
  EXPECT_TRUE(contains(r.err, "reloaded")) << r.err;
}

// llama-server takes num_ctx as its -c flag: the sweep starts its servers, restarts them when
// the context changes (not when only a per-request option does), and stops them at the end.
TEST(SweepCli, StartedLlamaServersAreRestartedForServerSettings) {
  const fs::path dir = out_dir("servers");
  const CliRun r =
      run_cli("sweep --backend openai --model " + chimera::test::tiny_model().string() +
              " --grid temperature=0.6,0.8 --grid num_ctx=256,512 --runs 1 "
              "--max-tokens 4 --out " +
              dir.string() + " -- --no-warmup --cache-ram 0 -t 2");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto runs = run_records(dir);
  ASSERT_EQ(runs.size(), 4u);
  // The server setting varies slowest, whatever the order of the axes.
  EXPECT_EQ(config_of(runs[0]), "num_ctx=256 temperature=0.6");
  EXPECT_EQ(config_of(runs[1]), "num_ctx=256 temperature=0.8");
  EXPECT_TRUE(contains(std::string(runs[0].at("setup").as_string()), "started with num_ctx=256"));
  EXPECT_EQ(runs[1].at("setup"), json::value(""));
  EXPECT_TRUE(contains(std::string(runs[2].at("setup").as_string()), "restarted with num_ctx=512"));
  EXPECT_EQ(runs[2].at("placement").at("num_ctx"), json::value("server restart"));
}

}  // namespace

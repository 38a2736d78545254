// Absurd flags, hostile files and hostile servers through the command line, as a user meets
// them: a clear message and exit 2 for bad input, exit 1 for a failed request, the right
// behaviour otherwise. The servers are the fixture (support/fixture_server.hpp) and the
// synthetic server, both in this process.
#include "support/fixture_server.hpp"
#include "support/test_support.hpp"

#include <chimera/synth/server.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using chimera::test::CliRun;
using chimera::test::FixtureServer;
using chimera::test::run_cli;
using chimera::test::Script;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

fs::path scratch() {
  const fs::path dir =
      fs::temp_directory_path() / ("chimera-hardening-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

fs::path write(const std::string& name, const std::string& text) {
  const fs::path p = scratch() / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string dead_url() {
  return "http://127.0.0.1:" + std::to_string(chimera::free_loopback_port());
}

// ---- defect 1
// -------------------------------------------------------------------------------------

TEST(Hardening, AnInjectingEndpointIsAUsageErrorEverywhere) {
  const std::string url =
      "'http://127.0.0.1:9/x%20HTTP/1.1%0d%0aX-Injected:%20yes%0d%0aFoo:%20bar'";
  for (const std::string& args :
       {"generate --backend openai --prompt hi --endpoint " + url,
        "generate --backend auto --prompt hi --endpoint " + url, "endpoints check " + url,
        "endpoints check --backend ollama " + url,
        "multi --agents 1 --backend openai --no-calibrate --results '' --endpoint " + url}) {
    const CliRun r = run_cli(args);
    EXPECT_EQ(r.rc, 2) << args << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.out + r.err, "control character 0x0d")) << args << "\n"
                                                                   << r.out << r.err;
  }
}

// ---- defects 3 and 8: flags ---------------------------------------------------------------------

TEST(Hardening, GenerateRefusesOptionsOutOfRange) {
  const std::string base = "generate --backend openai --prompt hi --endpoint " + dead_url() + " ";
  for (const std::string& flag :
       {"--temperature nan", "--temperature inf", "--temperature -1", "--top-p 7.5", "--top-k -5",
        "--min-p nan", "--repeat-penalty nan", "--num-predict -5", "--num-predict 1000000",
        "--num-ctx 1073741824", "--slot -3", "--total-timeout -1", "--idle-timeout 99999999999999",
        "--min-rate -1"}) {
    const CliRun r = run_cli(base + flag);
    EXPECT_EQ(r.rc, 2) << flag << "\n" << r.err;
    EXPECT_FALSE(contains(r.err, "cannot connect")) << flag << ": a request was attempted";
  }
  // The in-process backend checks them before it sizes a context.
  const CliRun r = run_cli("generate --backend llama --prompt hi --num-ctx 1073741824");
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "num_ctx")) << r.err;
}

TEST(Hardening, MultiRefusesDurationsAndStaggersThatWouldOverflow) {
  const std::string base =
      "multi --agents 2 --backend openai --no-calibrate --results '' --endpoint " + dead_url() +
      " ";
  for (const std::string& flag :
       {"--duration 1e10", "--duration -1", "--duration nan", "--stagger-ms 1e15",
        "--stagger-ms nan", "--hedge-after-ms -5", "--max-concurrency -1", "--max-tokens -5",
        "--temperature nan", "--requests-per-agent 0"}) {
    const CliRun r = run_cli(base + flag);
    EXPECT_EQ(r.rc, 2) << flag << "\n" << r.err;
  }
}

// ---- defects 3 and 8: pool files ----------------------------------------------------------------

TEST(Hardening, PoolFilesAreReadWithRanges) {
  struct Case {
    const char* body;
    const char* says;
  };
  const Case cases[] = {
      {"max_concurrency = 4294967297", "4294967297"},
      {"max_concurrency = -1", "max_concurrency"},
  };
  for (const auto& c : cases) {
    const auto p = write("pool.toml", std::string("[[pool]]\n[[pool.endpoint]]\nurl = \"") +
                                          dead_url() + "\"\n" + c.body + "\n");
    const CliRun r = run_cli("multi --agents 1 --no-calibrate --results '' --pools " + p.string());
    EXPECT_EQ(r.rc, 2) << c.body << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, c.says)) << r.err;
    EXPECT_TRUE(contains(r.err, "pool.toml:4")) << "no line in: " << r.err;
  }
  for (const char* pool_key :
       {"retries = -5", "hedge_after_ms = -1", "health_interval_ms = 9223372036854775807"}) {
    const auto p = write("pool.toml", std::string("[[pool]]\n") + pool_key +
                                          "\n[[pool.endpoint]]\nurl = \"" + dead_url() + "\"\n");
    const CliRun r = run_cli("multi --agents 1 --no-calibrate --results '' --pools " + p.string());
    EXPECT_EQ(r.rc, 2) << pool_key << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, "pool.toml:2")) << r.err;
  }
  const auto typo = write("pool.toml", std::string("[[pool]]\n[[pool.endpoint]]\nurl = \"") +
                                           dead_url() + "\"\n[pools]\nname = \"x\"\n");
  const CliRun r = run_cli("multi --agents 1 --no-calibrate --results '' --pools " + typo.string());
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "unknown key 'pools'")) << r.err;
  const auto port =
      write("pool.toml", "[[pool]]\n[[pool.endpoint]]\nurl = \"http://127.0.0.1:70000\"\n");
  const CliRun bad_port =
      run_cli("multi --agents 1 --no-calibrate --results '' --pools " + port.string());
  EXPECT_EQ(bad_port.rc, 2) << bad_port.err;
  EXPECT_TRUE(contains(bad_port.err, "1 to 65535")) << bad_port.err;
}

// ---- defect 4: server figures
// --------------------------------------------------------------------

TEST(Hardening, GenerateJsonStaysJsonWhateverTheServerReports) {
  FixtureServer srv;
  srv.route(
      "POST", "/api/chat",
      Script::ndjson({R"({"model":"m","message":{"role":"assistant","content":"hi"},"done":false})"
                      "\n",
                      R"({"model":"m","message":{"role":"assistant","content":""},"done":true,)"
                      R"("done_reason":"stop","eval_count":1e999,"eval_duration":5})"
                      "\n"}));
  const CliRun r =
      run_cli("generate --backend ollama --model m --prompt hi --json --endpoint " + srv.url());
  EXPECT_EQ(r.rc, 0) << r.err;
  boost::system::error_code ec;
  const auto v = boost::json::parse(r.out, ec);
  ASSERT_FALSE(ec) << r.out;
  EXPECT_FALSE(contains(r.out, "-9223372036854775808")) << r.out;
  EXPECT_TRUE(contains(r.err, "eval_count")) << r.err;
  EXPECT_TRUE(contains(r.err, "warning")) << r.err;
}

// ---- defect 7: endpoints check
// --------------------------------------------------------------------

TEST(Hardening, EndpointsCheckWantsTheApiNotAnyPage) {
  FixtureServer srv;
  Script page = Script::text(200, "<html><body>Welcome to nginx!</body></html>");
  page.headers = {{"Content-Type", "text/html"}};
  for (const char* path : {"/health", "/v1/models", "/api/version"}) srv.route("GET", path, page);
  for (const char* backend : {"auto", "openai", "ollama"}) {
    const CliRun r = run_cli(std::string("endpoints check --backend ") + backend + " " + srv.url());
    EXPECT_EQ(r.rc, 1) << backend << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.out, "DOWN")) << backend << "\n" << r.out;
    EXPECT_FALSE(contains(r.out, "UP")) << backend << "\n" << r.out;
  }
}

TEST(Hardening, EndpointsCheckHonoursTimeoutWithAnExplicitBackend) {
  FixtureServer srv;
  Script silent;
  silent.ending = chimera::test::Ending::no_response;
  for (const char* path : {"/health", "/api/version"}) srv.route("GET", path, silent);
  for (const char* backend : {"openai", "ollama"}) {
    const auto t0 = std::chrono::steady_clock::now();
    const CliRun r = run_cli(std::string("endpoints check --timeout 300 --backend ") + backend +
                             " " + srv.url());
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.rc, 1) << r.out << r.err;
    // 300 ms per request, not the 5,000 ms the check used with an explicit backend (a generous
    // margin for a loaded machine).
    EXPECT_LT(took, std::chrono::milliseconds(4'500)) << backend << ": " << r.out;
  }
}

TEST(Hardening, EndpointsCheckNeverPrintsAPassword) {
  const std::string url =
      "http://user:s3cret@127.0.0.1:" + std::to_string(chimera::free_loopback_port());
  for (const char* flags : {"", "--json ", "--backend openai "}) {
    const CliRun r = run_cli(std::string("endpoints check ") + flags + url);
    EXPECT_EQ(r.rc, 1) << r.out << r.err;
    EXPECT_FALSE(contains(r.out + r.err, "s3cret")) << r.out << r.err;
    EXPECT_TRUE(contains(r.out + r.err, "user:***@")) << r.out << r.err;
  }
}

// ---- defect 3: integers read from files
// -----------------------------------------------------------

TEST(Hardening, EndpointsDownRefusesAPidThatWouldWrap) {
  // 4294967297 cast to a 32-bit pid is 1: `down` would have signalled init.
  const auto state = write(
      "state.json", R"({"program":"chimeraforge endpoints up","pid":4294967297,)"
                    R"("status":"running","started":"x","model":"m","binary":"b","servers":[]})");
  const CliRun r = run_cli("endpoints down --state " + state.string());
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "4294967297")) << r.err;
  EXPECT_TRUE(fs::exists(state)) << "a damaged state file is left alone";
}

// ---- defect 5: running out of file descriptors
// ------------------------------------------------------

TEST(Hardening, RunningOutOfDescriptorsIsNamedAndNothingIsLost) {
  chimera::synth::Options so;
  so.tokens = 4;
  so.tokens_per_s = 200;
  chimera::synth::SynthServer srv(so);
  srv.start();
  const fs::path results = scratch() / "results.json";
  const fs::path records = scratch() / "records.jsonl";
  fs::remove(results);
  fs::remove(records);
  // dash's `ulimit -n` sets the soft and the hard limit: the command cannot raise it.
  const CliRun r = run_cli(
      "multi --agents 300 --no-calibrate --json --backend ollama --model m "
      "--endpoint " +
          srv.url() + " --results " + results.string() + " --records " + records.string(),
      "ulimit -n 96; ");
  srv.stop();
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "warning")) << r.err;
  EXPECT_TRUE(contains(r.err, "RLIMIT_NOFILE")) << r.err;
  boost::system::error_code ec;
  const auto v = boost::json::parse(r.out, ec);
  ASSERT_FALSE(ec) << "the summary was lost: " << r.out << "\n" << r.err;
  EXPECT_GT(v.at("rss_peak").to_number<int64_t>(), 0);
  EXPECT_EQ(v.at("requests").to_number<int64_t>(), 300);
  EXPECT_GT(v.at("errors").to_number<int64_t>(), 0);
  ASSERT_TRUE(fs::exists(results)) << r.err;
  ASSERT_TRUE(fs::exists(records)) << r.err;
  std::ifstream in(records);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(contains(ss.str(), "EMFILE")) << ss.str().substr(0, 2000);
  EXPECT_FALSE(contains(ss.str(), "Operation canceled")) << ss.str().substr(0, 2000);
}

TEST(Hardening, AResultsFileThatCannotBeWrittenIsAnError) {
  chimera::synth::Options so;
  so.tokens = 2;
  so.tokens_per_s = 1000;
  chimera::synth::SynthServer srv(so);
  srv.start();
  const auto blocker = write("not-a-folder", "x");
  const CliRun r =
      run_cli("multi --agents 1 --no-calibrate --backend ollama --model m --endpoint " + srv.url() +
              " --results " + (blocker / "results.json").string());
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "--results")) << r.err;
  EXPECT_TRUE(contains(r.out, "agents 1")) << "the summary is still printed: " << r.out;
}

}  // namespace

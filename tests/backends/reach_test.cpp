// Reaching an endpoint the way users' other clients do: API keys (flag, CHIMERA_API_KEY,
// OPENAI_API_KEY) against a real llama-server started with --api-key, keys never printed,
// endpoints from OLLAMA_HOST (against the synthetic server) and OPENAI_BASE_URL, extra headers.
#include "support/test_support.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/backends/environment.hpp>
#include <chimera/pool/pool.hpp>
#include <chimera/synth/server.hpp>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

using namespace chimera;
namespace fs = std::filesystem;
using chimera::test::LlamaServer;

// A key long and odd enough that finding it anywhere means it leaked.
constexpr const char* kKey = "sk-chimera-test-Zq81vXw3kP";
// No variable of the caller's environment leaks into a CLI run of these tests.
constexpr const char* kCleanEnv =
    "env -u CHIMERA_API_KEY -u OPENAI_API_KEY -u OPENAI_BASE_URL -u OLLAMA_HOST "
    "-u CHIMERA_ENDPOINT ";

TEST(OllamaHost, ReadAsOllamasClientsReadIt) {
  EXPECT_EQ(ollama_host_url(""), "http://127.0.0.1:11434");
  EXPECT_EQ(ollama_host_url("example.com"), "http://example.com:11434");
  EXPECT_EQ(ollama_host_url("example.com:56789"), "http://example.com:56789");
  EXPECT_EQ(ollama_host_url(":8000"), "http://127.0.0.1:8000");
  EXPECT_EQ(ollama_host_url("http://example.com"), "http://example.com:80");
  EXPECT_EQ(ollama_host_url("https://example.com"), "https://example.com:443");
  EXPECT_EQ(ollama_host_url("https://example.com:8443/ollama/"), "https://example.com:8443/ollama");
  EXPECT_EQ(ollama_host_url("[::1]:11434"), "http://[::1]:11434");
  EXPECT_EQ(ollama_host_url("[::1]"), "http://[::1]:11434");
}

TEST(OpenAiBaseUrl, DropsTheVersionTheClientAdds) {
  EXPECT_EQ(openai_base_url("https://api.example.com/v1"), "https://api.example.com");
  EXPECT_EQ(openai_base_url("https://api.example.com/v1/"), "https://api.example.com");
  EXPECT_EQ(openai_base_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
  EXPECT_EQ(openai_base_url("https://host/proxy/v1"), "https://host/proxy");
}

TEST(Headers, ParsedAndCheckedWithoutShowingValues) {
  std::pair<std::string, std::string> h;
  std::string error;
  ASSERT_TRUE(parse_header("X-Team:  red ", h, error));
  EXPECT_EQ(h.first, "X-Team");
  EXPECT_EQ(h.second, "red");
  EXPECT_FALSE(parse_header("no colon here", h, error));
  EXPECT_FALSE(parse_header(": value", h, error));
  EXPECT_EQ(validate_headers({{"X-Team", "red"}}), "");
  const std::string bad_value = validate_headers({{"X-Key", "secret\r\nX-Evil: 1"}});
  EXPECT_NE(bad_value.find("control character"), std::string::npos) << bad_value;
  EXPECT_EQ(bad_value.find("secret"), std::string::npos) << bad_value;
  EXPECT_NE(validate_headers({{"Bearer secret", "x"}}).find("not an HTTP token"),
            std::string::npos);
  EXPECT_EQ(validate_headers({{"Bearer secret", "x"}}).find("secret"), std::string::npos);
  EXPECT_NE(validate_headers({{"content-length", "3"}}).find("written by the client"),
            std::string::npos);
  Runtime rt(1);
  EndpointConfig cfg;
  cfg.url = "http://127.0.0.1:1";
  cfg.headers = {{"X-Key", "a\nb"}};
  EXPECT_THROW(make_backend(cfg, rt), std::invalid_argument);
}

TEST(PoolFile, TakesHeadersTlsAndTheEnvironmentsEndpoint) {
  ::setenv("OPENAI_BASE_URL", "https://api.example.com/v1", 1);
  std::vector<pool::PoolConfig> pools;
  std::string error;
  const bool ok = pool::parse_pools(R"(
[[pool]]
name = "hosted"
[[pool.endpoint]]
headers = { "X-Team" = "red" }
ca_file = "ca.pem"
client_cert = "client.pem"
client_key = "client.key"
insecure = true
)",
                                    "test.toml", pools, error);
  ::unsetenv("OPENAI_BASE_URL");
  ASSERT_TRUE(ok) << error;
  const EndpointConfig& c = pools.at(0).endpoints.at(0).config;
  EXPECT_EQ(c.url, "https://api.example.com");
  ASSERT_EQ(c.headers.size(), 1u);
  EXPECT_EQ(c.headers[0].first, "X-Team");
  EXPECT_EQ(c.tls.ca_file, "ca.pem");
  EXPECT_EQ(c.tls.client_key, "client.key");
  EXPECT_TRUE(c.tls.insecure);
  EXPECT_FALSE(pool::parse_pools(
      "[[pool]]\nname = \"p\"\n[[pool.endpoint]]\nurl = \"http://h:1\"\nheaders = 3\n", "bad.toml",
      pools, error));
  EXPECT_NE(error.find("bad.toml:5"), std::string::npos) << error;
}

class KeyedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<LlamaServer>(
        test::tiny_model(),
        LlamaServer::Options{.parallel = 2, .ctx = 16384, .extra = {"--api-key", kKey}});
    ASSERT_TRUE(server_->ok()) << server_->error();
  }
  static void TearDownTestSuite() { server_.reset(); }
  void SetUp() override { ASSERT_TRUE(server_ && server_->ok()); }

  static Completion generate(const std::string& key) {
    Runtime rt(1);
    EndpointConfig cfg;
    cfg.url = server_->url();
    cfg.api_key = key;
    Request r;
    r.messages = {{"user", "hi", {}, {}, {}}};
    r.options.num_predict = 4;
    return make_backend(cfg, rt)->generate(r);
  }

  static std::string cli(const std::string& env, const std::string& args, int* rc = nullptr) {
    const auto run = test::run_cli(args, std::string(kCleanEnv) + env + " ");
    if (rc != nullptr) *rc = run.rc;
    return run.out + run.err;
  }

  static std::unique_ptr<LlamaServer> server_;
};

std::unique_ptr<LlamaServer> KeyedServerTest::server_;

TEST_F(KeyedServerTest, TheKeyIsSentAsABearerToken) {
  const Completion ok = generate(kKey);
  EXPECT_TRUE(ok.ok()) << ok.error.message;
  const Completion refused = generate("");
  EXPECT_EQ(refused.error.kind, ErrorKind::http_status) << refused.error.message;
  EXPECT_EQ(refused.error.http_status, 401) << refused.error.message;
}

TEST_F(KeyedServerTest, CliTakesTheFlagThenChimeraApiKeyThenOpenAiApiKey) {
  const std::string gen =
      fmt::format("generate --endpoint {} --backend openai --prompt hi --num-predict 4 --quiet",
                  server_->url());
  int rc = -1;
  std::string out = cli("", gen + fmt::format(" --api-key {}", kKey), &rc);
  EXPECT_EQ(rc, 0) << out;
  out = cli(fmt::format("OPENAI_API_KEY={}", kKey), gen, &rc);
  EXPECT_EQ(rc, 0) << out;
  out = cli(fmt::format("CHIMERA_API_KEY={}", kKey), gen, &rc);
  EXPECT_EQ(rc, 0) << out;
  out = cli(fmt::format("CHIMERA_API_KEY={} OPENAI_API_KEY=wrong-key", kKey), gen, &rc);
  EXPECT_EQ(rc, 0) << "CHIMERA_API_KEY comes before OPENAI_API_KEY: " << out;
  out = cli(fmt::format("CHIMERA_API_KEY={}", kKey), gen + " --api-key wrong-key-123", &rc);
  EXPECT_EQ(rc, 1) << "the flag comes first: " << out;
  EXPECT_NE(out.find("401"), std::string::npos) << out;
  EXPECT_EQ(out.find("wrong-key-123"), std::string::npos) << "a refused key is printed: " << out;
  out = cli("", gen, &rc);
  EXPECT_EQ(rc, 1) << out;
}

TEST_F(KeyedServerTest, OpenAiBaseUrlGivesTheEndpoint) {
  int rc = -1;
  const std::string out =
      cli(fmt::format("OPENAI_BASE_URL={}/v1 OPENAI_API_KEY={}", server_->url(), kKey),
          "generate --backend openai --prompt hi --num-predict 4 --quiet", &rc);
  EXPECT_EQ(rc, 0) << out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(KeyedServerTest, NoOutputShowsTheKey) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("chimera-redact-{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string all;
  int rc = -1;
  const fs::path sample = fs::path(CHIMERA_TEST_DATA).parent_path().parent_path() / "data/sample";
  all += cli("",
             fmt::format("run --backend openai --endpoint {} --api-key {} --data {} --out {}/run",
                         server_->url(), kKey, sample.string(), dir.string()),
             &rc);
  EXPECT_EQ(rc, 0) << all;
  all += cli(fmt::format("OPENAI_API_KEY={}", kKey),
             fmt::format("multi --agents 2 --endpoint {} --backend openai --max-tokens 4 "
                         "--records {}/records.jsonl --results {}/results.json --json",
                         server_->url(), dir.string(), dir.string()),
             &rc);
  EXPECT_EQ(rc, 0) << all;
  all += cli("",
             fmt::format("generate --endpoint {} --backend openai --prompt hi "
                         "--num-predict 4 --json --api-key {} -H 'X-Secret: {}'",
                         server_->url(), kKey, kKey),
             &rc);
  EXPECT_EQ(rc, 0) << all;
  all += cli("", fmt::format("endpoints check {} --json --api-key {}", server_->url(), kKey), &rc);
  // The key as a flag and in a header: the command line stored in the records has neither.
  all += cli("",
             fmt::format("multi --agents 1 --endpoint {} --backend openai --max-tokens 4 "
                         "--api-key {} -H 'X-Secret: {}' --records {}/flag-records.jsonl "
                         "--results '' --quiet",
                         server_->url(), kKey, kKey, dir.string()),
             &rc);
  EXPECT_EQ(rc, 0) << all;
  // banter and sweep take the connection flags too: the server refuses requests without the key.
  std::ofstream(dir / "scene.toml") << fmt::format(
      "[scene]\nlines = 2\nwarm_up = false\n[[character]]\nname = \"A\"\npool = \"p\"\n"
      "[[character]]\nname = \"B\"\npool = \"p\"\n"
      "[[pool]]\nname = \"p\"\n[[pool.endpoint]]\nurl = \"{}\"\nbackend = \"openai\"\n",
      server_->url());
  const std::string banter = fmt::format(
      "banter --scene {}/scene.toml --lines 2 --out {}/banter.md", dir.string(), dir.string());
  all += cli("", banter + fmt::format(" --api-key {}", kKey), &rc);
  EXPECT_EQ(rc, 0) << all;
  const std::string refused = cli("", banter, &rc);
  EXPECT_NE(rc, 0) << "banter without the key: " << refused;
  EXPECT_NE(refused.find("401"), std::string::npos) << refused;
  all += cli("",
             fmt::format("sweep --endpoint {} --backend openai --model tiny --grid "
                         "temperature=0.1,0.2 --runs 1 --max-tokens 4 --quiet --api-key {} "
                         "-H 'X-Secret: {}' --out {}/sweep",
                         server_->url(), kKey, kKey, dir.string()),
             &rc);
  EXPECT_EQ(rc, 0) << all;
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    ++files;
    all += slurp(e.path());
  }
  EXPECT_GE(files, 3);  // report.md, metrics.json, records, results
  EXPECT_EQ(all.find(kKey), std::string::npos) << "the API key leaked";
  fs::remove_all(dir);
}

// A scene's pool on a dead port with `fallback = "spare"`: banter's lines come from the spare
// pool, a real llama-server.
TEST_F(KeyedServerTest, BanterFollowsAPoolsFallback) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("chimera-fallback-{}", ::getpid());
  fs::create_directories(dir);
  const int dead = free_loopback_port();
  for (const bool fallback : {true, false}) {
    std::ofstream(dir / "scene.toml") << fmt::format(
        "[scene]\nlines = 2\nwarm_up = false\n[[character]]\nname = \"A\"\npool = "
        "\"main\"\n[[character]]\nname = \"B\"\npool = \"main\"\n"
        "[[pool]]\nname = \"main\"\n{}[[pool.endpoint]]\n"
        "url = \"http://127.0.0.1:{}\"\nbackend = \"openai\"\nretry_attempts = 1\n"
        "[[pool]]\nname = \"spare\"\n[[pool.endpoint]]\nurl = \"{}\"\nbackend = "
        "\"openai\"\n",
        fallback ? "fallback = \"spare\"\n" : "", dead, server_->url());
    int rc = -1;
    const std::string out =
        cli("",
            fmt::format("banter --scene {}/scene.toml --lines 2 --json --api-key {}", dir.string(),
                        kKey),
            &rc);
    if (fallback) {
      EXPECT_EQ(rc, 0) << "the lines come from the fallback pool: " << out;
    } else {
      EXPECT_NE(rc, 0) << "without the fallback, the dead endpoint fails the lines: " << out;
    }
  }
  fs::remove_all(dir);
}

TEST(EnvironmentEndpoint, OllamaHostGivesTheEndpointWithoutAScheme) {
  synth::SynthServer srv({.tokens = 4});
  srv.start();
  const auto run =
      test::run_cli("generate --backend ollama --model m --prompt hi --quiet",
                    std::string(kCleanEnv) + fmt::format("OLLAMA_HOST=127.0.0.1:{} ", srv.port()));
  EXPECT_EQ(run.rc, 0) << run.err;
  EXPECT_GE(srv.stats().requests_served, 1);
  for (const char* cmd : {"generate", "banter", "sweep"}) {
    const auto help = test::run_cli(std::string(cmd) + " --help");
    for (const char* var :
         {"OLLAMA_HOST", "OPENAI_BASE_URL", "CHIMERA_API_KEY", "OPENAI_API_KEY"}) {
      EXPECT_NE(help.out.find(var), std::string::npos)
          << var << " missing from " << cmd << " --help";
    }
    for (const char* flag : {"--api-key", "--header", "--ca-file", "--proxy", "--retry-attempts"}) {
      EXPECT_NE(help.out.find(flag), std::string::npos)
          << flag << " missing from " << cmd << " --help";
    }
  }
  // sweep without --endpoint takes OLLAMA_HOST, as generate does.
  const fs::path out = fs::temp_directory_path() / fmt::format("chimera-sweep-env-{}", ::getpid());
  const auto before = srv.stats().requests_served;
  const auto sweep =
      test::run_cli(fmt::format("sweep --backend ollama --model m --grid temperature=0.1 --runs 1 "
                                "--max-tokens 4 --quiet --out {}",
                                out.string()),
                    std::string(kCleanEnv) + fmt::format("OLLAMA_HOST=127.0.0.1:{} ", srv.port()));
  EXPECT_EQ(sweep.rc, 0) << sweep.out << sweep.err;
  EXPECT_GT(srv.stats().requests_served, before);
  fs::remove_all(out);
}

}  // namespace

// `chimeraforge banter` end to end: the shipped scenes in batch mode with --json.
#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

const std::filesystem::path kSource =
    std::filesystem::path(CHIMERA_TEST_DATA).parent_path().parent_path();

struct CliRun {
  int rc = -1;
  std::string out;
};

CliRun run(const std::string& args) {
  CliRun r;
  const std::string cmd = std::string(CHIMERA_CLI) + " " + args + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(BanterCli, BatchJsonHasOneObjectPerLineWithTheMetricsNames) {
  for (const char* scene : {"tavern.toml", "heist.toml"}) {
    const CliRun r = run("banter --scene " + (kSource / "examples/scenes" / scene).string() +
                         " --lines 3 --json --threads 1");
    ASSERT_EQ(r.rc, 0) << r.out;
    std::istringstream in(r.out);
    std::string line;
    int lines = 0, warm = 0, summary = 0;
    while (std::getline(in, line)) {
      const auto v = boost::json::parse(line).as_object();
      const auto type = v.at("type").as_string();
      if (type == "warm_up") ++warm;
      if (type == "summary") {
        ++summary;
        EXPECT_EQ(v.at("lines").as_int64(), 3);
        EXPECT_EQ(v.at("budget_hit_rate").as_double(), 1.0);
      }
      if (type != "line") continue;
      ++lines;
      for (const char* key :
           {"speaker", "text", "ttft_client", "ttft_line", "budget_ms", "budget_held", "tokens_out",
            "tokens_in", "prompt_tokens_cached", "e2e", "sources"}) {
        EXPECT_TRUE(v.contains(key)) << key << " missing in " << line;
      }
      EXPECT_TRUE(v.at("budget_held").as_bool());
      EXPECT_GT(v.at("prompt_tokens_cached").as_int64(), 0);
    }
    EXPECT_EQ(warm, 1);
    EXPECT_EQ(lines, 3);
    EXPECT_EQ(summary, 1);
  }
}

TEST(BanterCli, ABadSceneIsAUsageError) {
  const auto bad = std::filesystem::temp_directory_path() / "chimera-bad-scene.toml";
  std::ofstream(bad) << "[scene]\nturns = \"chaos\"\n[[character]]\nname = \"A\"\n";
  const CliRun r = run("banter --scene " + bad.string());
  EXPECT_EQ(r.rc, 2);
  std::filesystem::remove(bad);
}

}  // namespace

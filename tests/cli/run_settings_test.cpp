// `chimeraforge run` says which settings of a configuration its backend cannot take with a
// request, instead of dropping them in silence.
#include "support/test_support.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;
using chimera::test::CliRun;
using chimera::test::run_cli;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The study's configuration sets num_gpu and num_ctx: an OpenAI-compatible server takes neither
// with a request. The warning comes before any request (the endpoint here answers nothing).
TEST(RunSettings, ServerSettingsOfAConfigurationAreSaidNotDropped) {
  const fs::path out =
      fs::temp_directory_path() / ("chimera-run-settings-" + std::to_string(::getpid()));
  // The project's sample data: CHIMERA_TEST_DATA is <source>/tests/data.
  const fs::path data = fs::path(CHIMERA_TEST_DATA).parent_path().parent_path() / "data" / "sample";
  const CliRun r =
      run_cli("run --backend openai --endpoint http://127.0.0.1:9 --config chimera --data " +
              data.string() + " --quiet --out " + out.string());
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(contains(r.err, "configuration 'chimera' sets num_gpu=80, which is not applied"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "sets num_ctx=512, which is not applied")) << r.err;
  EXPECT_FALSE(contains(r.err, "temperature")) << r.err;  // sent with each request
  fs::remove_all(out);
}

}  // namespace

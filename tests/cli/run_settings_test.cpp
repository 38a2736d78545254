// `chimeraforge run` says which settings of a configuration its backend cannot take with a
// request, instead of dropping them in silence.
#include "support/test_support.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using chimera::test::CliRun;
using chimera::test::run_cli;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The study's configuration (a preset) sets num_gpu and num_ctx: an OpenAI-compatible server
// takes neither with a request. The preset's num_gpu is left out with a note, before any request
// (the endpoint here answers nothing).
TEST(RunSettings, ServerSettingsOfAPresetAreSaidNotDropped) {
  const fs::path out =
      fs::temp_directory_path() / ("chimera-run-settings-" + std::to_string(::getpid()));
  // The project's sample data: CHIMERA_TEST_DATA is <source>/tests/data.
  const fs::path data = fs::path(CHIMERA_TEST_DATA).parent_path().parent_path() / "data" / "sample";
  const CliRun r =
      run_cli("run --backend openai --endpoint http://127.0.0.1:9 --config chimera --data " +
              data.string() + " --quiet --out " + out.string());
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(contains(r.err, "the 'chimera' preset's num_gpu=80 is left out")) << r.err;
  EXPECT_TRUE(contains(r.err, "sets num_ctx=512: the digest is sized to it, but it is not sent"))
      << r.err;
  EXPECT_FALSE(contains(r.err, "temperature")) << r.err;  // sent with each request
  fs::remove_all(out);
}

// A value the user wrote is applied or refused: num_gpu in a configuration file is an error
// against an OpenAI-compatible server, and two configurations that disagree on the in-process
// engine's GPU layers are refused (the model is loaded once per run); `generate --num-gpu`
// against an OpenAI-compatible server is refused too.
TEST(RunSettings, AnExplicitSettingThatCannotBeAppliedIsAnError) {
  const fs::path dir =
      fs::temp_directory_path() / ("chimera-run-explicit-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path data = fs::path(CHIMERA_TEST_DATA).parent_path().parent_path() / "data" / "sample";
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const std::string a = write("a.toml", "[options]\nnum_gpu = 60\ntemperature = 0.5\n");
  const std::string b = write("b.toml", "[options]\nnum_gpu = 80\n");
  CliRun r = run_cli("run --backend openai --endpoint http://127.0.0.1:9 --config " + a +
                     " --data " + data.string() + " --quiet --out " + (dir / "o").string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err,
                       "configuration 'a' sets num_gpu=60, which an OpenAI-compatible "
                       "server cannot take with a request"))
      << r.err;
  r = run_cli("run --backend llama --model /nonexistent.gguf --config " + a + " --config " + b +
              " --data " + data.string() + " --quiet --out " + (dir / "o").string());
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "configurations 'a' and 'b' set num_gpu to 60 and 80")) << r.err;
  r = run_cli("generate --backend openai --endpoint http://127.0.0.1:9 --prompt hi --num-gpu 80");
  EXPECT_EQ(r.rc, 2);
  EXPECT_TRUE(contains(r.err, "--num-gpu cannot be applied")) << r.err;
  fs::remove_all(dir);
}

}  // namespace

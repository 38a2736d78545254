// `chimeraforge generate --tools`, run as a user runs it: in-process with the tiny model carrying
// a tool-calling chat template, the call printed as it streams; and the tools file checked.
#include "support/test_support.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;
using chimera::test::CliRun;
using chimera::test::run_cli;

fs::path write_file(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
  std::ofstream(p) << text;
  return p;
}

constexpr const char* kTools =
    R"([{"type":"function","function":{"name":"get_weather","description":"The weather in a city",)"
    R"("parameters":{"type":"object","properties":{"city":{"type":"string","enum":["Paris","Oslo"]}},)"
    R"("required":["city"]}}}])";

// A conversation that holds a call and its result, continued by hand with the tools: the
// model's own template renders it (a random-weight model cannot be made to write a call itself;
// tests/engine/tool_loop_test.cpp says why).
TEST(CliTools, GenerateContinuesAConversationWithToolCalls) {
  const fs::path tools = write_file("chimera-tools.json", kTools);
  const fs::path convo = write_file("chimera-convo.json", R"([
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "tool_name": "get_weather",
     "content": "{\"temp_c\": 18}"}])");
  const CliRun r = run_cli("generate --backend llama --model " +
                           chimera::test::tool_model().string() + " --tools " + tools.string() +
                           " --messages " + convo.string() + " --num-predict 4 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto v = boost::json::parse(r.out);
  EXPECT_GT(v.at("tokens_in").to_number<int64_t>(), 100) << r.out;  // tools, call and result
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;     // the model's own template
  fs::remove(tools);
  fs::remove(convo);
}

TEST(CliTools, BadToolsAreUsageErrors) {
  const fs::path bad = write_file("chimera-bad-tools.json", R"({"name": "x"})");
  const CliRun r = run_cli("generate --backend llama --tools " + bad.string() + " --prompt hi");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("is not a JSON array of tool definitions"), std::string::npos) << r.err;
  fs::remove(bad);
  // The tiny model has no chat template: it cannot be given tools, and says so.
  const fs::path tools = write_file("chimera-tools2.json", kTools);
  const CliRun t =
      run_cli("generate --backend llama --model " + chimera::test::tiny_model().string() +
              " --tools " + tools.string() + " --prompt hi");
  EXPECT_EQ(t.rc, 1);
  EXPECT_NE(t.err.find("carries no chat template"), std::string::npos) << t.err;
  fs::remove(tools);
}

}  // namespace

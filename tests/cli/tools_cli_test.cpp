// `chimeraforge generate --tools` and `chimeraforge agent`, run as a user runs them: in-process
// with the tiny model carrying a tool-calling chat template; the tools file checked; the agent's
// model calling a tool that a command runs.
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
// model's own template renders it.
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

// The agent: the tiny model with Llama 3.2's template calls get_weather itself (tool_choice
// required and the two biases of test::tool_call_model, greedy), the command runs it with the
// arguments on stdin and the tool's name in $CHIMERA_TOOL_NAME, and its output goes back to the
// model under the call's id.
std::string agent_args(const fs::path& tools, const std::string& exec) {
  return "agent --backend llama --model " + chimera::test::tool_call_model().string() +
         " --num-thread 1 --tools " + tools.string() + " --exec '" + exec +
         "' --prompt 'What is the weather in Paris?' --tool-choice required --temperature 0"
         " --seed 42 --num-predict 96 --max-steps 3 --logit-bias " +
         std::to_string(chimera::test::kCallStartToken) + "=30 --logit-bias " +
         std::to_string(chimera::test::kEndOfTurnToken) + "=60 --json";
}

TEST(CliAgent, TheModelCallsAToolThatACommandRuns) {
  const fs::path tools = write_file("chimera-agent-tools.json", kTools);
  const fs::path seen = write_file("chimera-agent-seen", "");
  const CliRun r =
      run_cli(agent_args(tools, "cat > " + seen.string() + "; echo \"$CHIMERA_TOOL_NAME: 18 C\""));
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  const auto v = boost::json::parse(r.out);
  EXPECT_EQ(v.at("end"), "answer");
  const auto& steps = v.at("steps").as_array();
  ASSERT_EQ(steps.size(), 2u) << r.out;
  const auto& call = steps[0].at("tool_calls").at(0);
  EXPECT_EQ(call.at("name"), "get_weather");
  EXPECT_EQ(call.at("outcome"), "ok");
  EXPECT_EQ(call.at("result"), "get_weather: 18 C");  // stdout, its last newline dropped
  // The command read the model's arguments on its stdin.
  std::ifstream in(seen);
  const std::string args((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(boost::json::parse(args), boost::json::parse(call.at("arguments").as_string()));
  const auto& msgs = v.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 4u);
  EXPECT_EQ(msgs[2].at("role"), "tool");
  EXPECT_EQ(msgs[2].at("tool_call_id"), call.at("id"));
  EXPECT_EQ(msgs[2].at("content"), "get_weather: 18 C");
  fs::remove(tools);
  fs::remove(seen);
}

TEST(CliAgent, ACommandThatFailsIsAnErrorResultTheModelReads) {
  const fs::path tools = write_file("chimera-agent-tools2.json", kTools);
  const CliRun r = run_cli(agent_args(tools, "echo sensor offline >&2; exit 3"));
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  const auto v = boost::json::parse(r.out);
  const auto& call = v.at("steps").at(0).at("tool_calls").at(0);
  EXPECT_EQ(call.at("outcome"), "error");
  EXPECT_EQ(call.at("result"),
            "error: the tool 'get_weather' failed: the command exited with status 3: sensor "
            "offline");
  fs::remove(tools);
}

TEST(CliAgent, BadFlagsAreUsageErrors) {
  const fs::path tools = write_file("chimera-agent-tools3.json", kTools);
  const std::string base = "agent --backend llama --tools " + tools.string() + " --prompt hi";
  CliRun r = run_cli(base);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--exec"), std::string::npos) << r.err;
  r = run_cli(base + " --exec cat --logit-bias 90");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--logit-bias '90' is not TOKEN=BIAS"), std::string::npos) << r.err;
  r = run_cli(base + " --exec cat --logit-bias 90=500");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("from -100 to 100"), std::string::npos) << r.err;
  r = run_cli(base + " --exec cat --max-steps 0");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--max-steps is 0"), std::string::npos) << r.err;
  const fs::path bad = write_file("chimera-agent-bad.json", R"([{"function": {"name": "a b"}}])");
  r = run_cli("agent --backend llama --tools " + bad.string() + " --prompt hi --exec cat");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("tool name 'a b'"), std::string::npos) << r.err;
  fs::remove(tools);
  fs::remove(bad);
}

}  // namespace

// The tool loop. The model itself calls the tool on a real llama-server (--jinja) and in-process:
// the random-weight model with Llama 3.2's template, two of its tokens biased (see
// test::tool_call_model), writes a call that the "required" grammar holds to the tool's schema;
// the loop runs the tool and the server takes the result under the call's id. Outcomes a model
// cannot be steered to (a tool it does not have, arguments that are not JSON, parallel calls,
// Ollama's records and calls without ids) come scripted from the fixture server.
#include "support/fixture_server.hpp"
#include "support/test_support.hpp"

#include <chimera/engine/tool_loop.hpp>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace {

using namespace chimera;
namespace json = boost::json;

constexpr const char* kCityParams =
    R"({"type":"object","properties":{"city":{"type":"string","enum":["Paris","Oslo"]}},)"
    R"("required":["city"]})";

Tool weather_tool(std::function<std::string(const std::string&)> run) {
  return Tool{.name = "get_weather",
              .description = "The weather in a city",
              .parameters_json = kCityParams,
              .run = std::move(run)};
}

Request weather_question() {
  Request r;
  r.messages = {{.role = "user", .content = "What is the weather in Paris?"}};
  r.tool_choice = "required";
  r.options.temperature = 0.0;
  r.options.num_predict = 64;
  return r;
}

EndpointConfig config(const std::string& url, BackendKind kind) {
  EndpointConfig c;
  c.url = url;
  c.kind = kind;
  c.timeouts.first_token_ms = 30'000;
  c.timeouts.total_ms = 60'000;
  return c;
}

// The conversation after a step whose calls were answered.
void expect_answered(const LoopResult& r, std::size_t step, const std::string& id) {
  ASSERT_GT(r.steps.size(), step);
  bool found = false;
  for (const auto& m : r.messages) {
    if (m.role == "tool" && m.tool_call_id == id) found = true;
  }
  EXPECT_TRUE(found) << "no tool result answers call " << id;
}

std::string sse(const std::string& json) {
  return "data: " + json + "\n\n";
}

// An OpenAI-compatible stream that asks for get_weather (id call_w1), as llama-server streams a
// call: id and name first, then the arguments in pieces.
test::Script call_stream(const std::string& name = "get_weather") {
  const std::string head = R"({"choices":[{"index":0,"delta":{"tool_calls":[)";
  return test::Script::sse({
      sse(head + R"({"index":0,"id":"call_w1","type":"function","function":{"name":")" + name +
          R"(","arguments":""}}]},"finish_reason":null}]})"),
      sse(head + R"({"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]})"),
      sse(head + R"({"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]})"),
      sse(R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],)"
          R"("usage":{"prompt_tokens":40,"completion_tokens":12}})"),
      "data: [DONE]\n\n",
  });
}

test::Script answer_stream() {
  return test::Script::sse({
      sse(R"({"choices":[{"index":0,"delta":{"content":"Mild."},"finish_reason":null}]})"),
      sse(R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],)"
          R"("usage":{"prompt_tokens":60,"completion_tokens":2}})"),
      "data: [DONE]\n\n",
  });
}

// Replies scripted in order: a call, then (for every later request) the answer.
class ToolLoopScripted : public ::testing::Test {
 protected:
  void SetUp() override {
    srv_.route("POST", "/v1/chat/completions",
               std::vector<test::Script>{call_stream(), answer_stream()});
    backend_ = make_backend(config(srv_.url(), BackendKind::openai), rt_);
  }
  // The body of the n-th request the loop sent.
  json::value sent(std::size_t n) const { return json::parse(srv_.requests().at(n).body); }

  test::FixtureServer srv_;
  Runtime rt_{1};
  std::unique_ptr<Backend> backend_;
};

TEST_F(ToolLoopScripted, RunsTheToolAndSendsItsResultUnderTheCallsId) {
  std::atomic<int> runs{0};
  std::string seen_args;
  Toolbox tools;
  tools.add(weather_tool([&](const std::string& args) {
    ++runs;
    seen_args = args;
    return std::string(R"({"temp_c": 18})");
  }));
  const LoopResult r = run_tool_loop(*backend_, weather_question(), tools, {.max_steps = 4});
  ASSERT_EQ(r.end, LoopEnd::answer) << to_string(r.end) << " " << r.error.message;
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(runs.load(), 1);
  const LoopStep& first = r.steps[0];
  ASSERT_EQ(first.tools.size(), 1u);
  const ToolRecord& rec = first.tools[0];
  EXPECT_EQ(rec.outcome, ToolOutcome::ok);
  EXPECT_EQ(rec.result, R"({"temp_c": 18})");
  EXPECT_EQ(rec.call.id, "call_w1");  // the server's own id
  // The result went back under it, after the call with its arguments as JSON text.
  const json::value second = sent(1);
  const auto& msgs = second.at("messages").as_array();
  EXPECT_EQ(msgs.at(1).at("tool_calls").at(0).at("id"), "call_w1");
  EXPECT_EQ(msgs.at(1).at("tool_calls").at(0).at("function").at("arguments"),
            R"({"city":"Paris"})");
  EXPECT_EQ(msgs.at(2).at("tool_call_id"), "call_w1");
  EXPECT_EQ(msgs.at(2).at("content"), R"({"temp_c": 18})");
  EXPECT_EQ(sent(0).at("tool_choice"), "required");
  EXPECT_EQ(sent(1).at("tool_choice"), "auto");
  EXPECT_EQ(json::parse(seen_args), json::parse(rec.call.arguments_json));
  expect_answered(r, 0, rec.call.id);
  // user, assistant (the call), tool (the result), assistant (the answer)
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1].tool_calls.at(0).id, rec.call.id);
  EXPECT_EQ(r.messages[3].role, "assistant");
  EXPECT_TRUE(r.steps[1].tools.empty());
  for (const auto& s : r.steps) {
    EXPECT_TRUE(s.completion.figures.ttft_client_ns.has_value());
    EXPECT_GT(s.completion.figures.tokens_out.value_or(0), 0);
    EXPECT_GE(s.step_ns, s.model_ns + s.tools_ns);
  }
  EXPECT_GE(r.overhead_ns(), 0);
}

TEST_F(ToolLoopScripted, ToolThatThrowsBecomesAnErrorResult) {
  Toolbox tools;
  tools.add(weather_tool(
      [](const std::string&) -> std::string { throw std::runtime_error("sensor offline"); }));
  const LoopResult r = run_tool_loop(*backend_, weather_question(), tools, {.max_steps = 3});
  ASSERT_EQ(r.end, LoopEnd::answer) << r.error.message;
  const ToolRecord& rec = r.steps.at(0).tools.at(0);
  EXPECT_EQ(rec.outcome, ToolOutcome::error);
  EXPECT_NE(rec.result.find("sensor offline"), std::string::npos) << rec.result;
  EXPECT_EQ(r.messages.at(2).content, rec.result);
}

TEST_F(ToolLoopScripted, ToolThatTimesOutBecomesATimeoutResult) {
  Toolbox tools;
  tools.add(weather_tool([](const std::string&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    return std::string("too late");
  }));
  const LoopResult r =
      run_tool_loop(*backend_, weather_question(), tools, {.max_steps = 3, .tool_timeout_ms = 50});
  ASSERT_EQ(r.end, LoopEnd::answer) << r.error.message;
  const ToolRecord& rec = r.steps.at(0).tools.at(0);
  EXPECT_EQ(rec.outcome, ToolOutcome::timeout);
  EXPECT_NE(rec.result.find("did not answer within 50 ms"), std::string::npos) << rec.result;
  EXPECT_GE(rec.elapsed_ns, 50'000'000);
}

TEST_F(ToolLoopScripted, UnknownToolIsToldToTheModel) {
  // The model is told of get_weather (the request's own definitions); the toolbox runs only
  // get_time, so the call names a tool that is not there.
  Toolbox tools;
  tools.add({.name = "get_time", .run = [](const std::string&) { return std::string("12:00"); }});
  Request req = weather_question();
  req.tools_json = R"([{"type":"function","function":{"name":"get_weather",)"
                   R"("description":"The weather in a city","parameters":)" +
                   std::string(kCityParams) + "}}]";
  const LoopResult r = run_tool_loop(*backend_, req, tools, {.max_steps = 3});
  ASSERT_EQ(r.end, LoopEnd::answer) << r.error.message;
  const ToolRecord& rec = r.steps.at(0).tools.at(0);
  EXPECT_EQ(rec.outcome, ToolOutcome::unknown_tool);
  EXPECT_EQ(rec.call.name, "get_weather");
  EXPECT_NE(rec.result.find("the tools are: get_time"), std::string::npos) << rec.result;
}

TEST_F(ToolLoopScripted, StepLimitEndsTheLoopWithTheCallsAnswered) {
  Toolbox tools;
  tools.add(weather_tool([](const std::string&) { return std::string("18 C"); }));
  const LoopResult r = run_tool_loop(*backend_, weather_question(), tools, {.max_steps = 1});
  EXPECT_EQ(r.end, LoopEnd::max_steps);
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].tools.at(0).outcome, ToolOutcome::ok);
  EXPECT_EQ(r.messages.back().role, "tool");
  EXPECT_EQ(r.messages.back().tool_call_id, r.steps[0].tools[0].call.id);
}

TEST_F(ToolLoopScripted, ModelErrorEndsTheLoop) {
  Toolbox tools;
  tools.add(weather_tool([](const std::string&) { return std::string("18 C"); }));
  Request req = weather_question();
  req.tools_json = "[not json";  // the request cannot be sent
  const LoopResult r = run_tool_loop(*backend_, req, tools);
  EXPECT_EQ(r.end, LoopEnd::model_error);
  EXPECT_EQ(r.error.kind, ErrorKind::bad_request);
  EXPECT_EQ(r.steps.size(), 1u);
}

// ---- a real llama-server and in-process ---------------------------------------------------------

EndpointConfig inprocess_config(const std::filesystem::path& model) {
  EndpointConfig cfg;
  cfg.kind = BackendKind::llama;
  cfg.url = model.string();
  cfg.llama.parallel = 1;
  cfg.llama.ctx_per_seq = 2048;
  // One decode thread: ggml's OpenMP workers synchronise in ways ThreadSanitizer cannot see
  // (scripts/sanitizers/tsan.supp), and the template is what is under test here.
  cfg.llama.threads = 1;
  return cfg;
}

// The question, with the biases that make the random-weight tool_call_model open a call at once
// and end its turn when the call is whole (greedy: the same tokens every run).
Request steered_weather_question() {
  Request r = weather_question();
  r.options.seed = 42;
  r.options.num_predict = 96;  // a call under the grammar is about 50 tokens
  r.logit_bias = {{test::kCallStartToken, 30.0}, {test::kEndOfTurnToken, 60.0}};
  return r;
}

// The model called get_weather, the tool ran with the model's arguments, its result went back
// under the call's id, and the model's next call (the answer) was accepted.
void expect_model_called_the_tool(const LoopResult& r, const std::vector<std::string>& seen) {
  ASSERT_EQ(r.end, LoopEnd::answer) << to_string(r.end) << " " << r.error.message;
  ASSERT_EQ(r.steps.size(), 2u);
  const Completion& first = r.steps[0].completion;
  EXPECT_EQ(first.finish, FinishReason::tool_calls) << first.finish_raw;
  ASSERT_EQ(first.tool_calls.size(), 1u) << first.text;
  const ToolCall& call = first.tool_calls[0];
  EXPECT_EQ(call.name, "get_weather");
  EXPECT_FALSE(call.id.empty());
  // The grammar held the arguments to the schema: a city from its enum.
  const json::value args = json::parse(call.arguments_json);
  const std::string city(args.at("city").as_string());
  EXPECT_TRUE(city == "Paris" || city == "Oslo") << call.arguments_json;
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(json::parse(seen[0]), args);
  const ToolRecord& rec = r.steps[0].tools.at(0);
  EXPECT_EQ(rec.outcome, ToolOutcome::ok);
  EXPECT_EQ(rec.call.id, call.id);  // the model's (the server's) id, kept
  // user, assistant (the call), tool (the result under the call's id), assistant (the answer)
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1].tool_calls.at(0).id, call.id);
  EXPECT_EQ(r.messages[2].role, "tool");
  EXPECT_EQ(r.messages[2].tool_call_id, call.id);
  EXPECT_EQ(r.messages[2].content, city + ": 18 C");
  const Completion& second = r.steps[1].completion;
  EXPECT_TRUE(second.ok()) << second.error.message;
  EXPECT_TRUE(second.tool_calls.empty());
  // The result is in the second prompt: it is longer than the first by the call and the result.
  EXPECT_GT(second.figures.tokens_in.value_or(0), first.figures.tokens_in.value_or(0));
}

Tool recording_weather_tool(std::vector<std::string>& seen) {
  return weather_tool([&seen](const std::string& args) {
    seen.push_back(args);
    return std::string(json::parse(args).at("city").as_string()) + ": 18 C";
  });
}

TEST(ToolLoopEndToEnd, RealServerModelCallsTheToolAndTakesItsResult) {
  test::LlamaServer server(test::tool_call_model(),
                           {.parallel = 1, .ctx = 4096, .extra = {"--jinja"}});
  ASSERT_TRUE(server.ok()) << server.error();
  Runtime rt(1);
  auto backend = make_backend(config(server.url(), BackendKind::openai), rt);
  std::vector<std::string> seen;
  Toolbox tools;
  tools.add(recording_weather_tool(seen));
  const LoopResult r = run_tool_loop(*backend, steered_weather_question(), tools, {.max_steps = 3});
  expect_model_called_the_tool(r, seen);
  if (HasFailure()) ADD_FAILURE() << server.log_tail();
}

TEST(ToolLoopEndToEnd, InProcessModelCallsTheToolAndTakesItsResult) {
  Runtime rt(1);
  auto backend = make_backend(inprocess_config(test::tool_call_model()), rt);
  std::vector<std::string> seen;
  Toolbox tools;
  tools.add(recording_weather_tool(seen));
  const LoopResult r = run_tool_loop(*backend, steered_weather_question(), tools, {.max_steps = 3});
  expect_model_called_the_tool(r, seen);
  EXPECT_TRUE(r.steps.at(0).completion.warnings.empty());  // the model has its own template
}

// Where the model answers: the tools go to a real llama-server and to the in-process engine
// through the model's own template (Qwen 2.5's); the random-weight model answers in text.
TEST(ToolLoopEndToEnd, RealServerTakesTheToolsAndTheModelAnswers) {
  test::LlamaServer server(test::tool_model(), {.parallel = 1, .ctx = 4096, .extra = {"--jinja"}});
  ASSERT_TRUE(server.ok()) << server.error();
  Runtime rt(1);
  auto backend = make_backend(config(server.url(), BackendKind::openai), rt);
  Toolbox tools;
  tools.add(weather_tool([](const std::string&) { return std::string("18 C"); }));
  Request req = weather_question();
  req.tool_choice = "auto";
  req.options.num_predict = 8;
  const LoopResult r = run_tool_loop(*backend, req, tools, {.max_steps = 2});
  ASSERT_EQ(r.end, LoopEnd::answer) << r.error.message << "\n" << server.log_tail();
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.messages.back().role, "assistant");
  EXPECT_EQ(r.answer, r.steps[0].completion.text);
}

TEST(ToolLoopEndToEnd, InProcessFormatsTheToolsWithTheModelsOwnTemplate) {
  Runtime rt(1);
  auto backend = make_backend(inprocess_config(test::tool_model()), rt);
  Toolbox tools;
  tools.add(weather_tool([](const std::string&) { return std::string("18 C"); }));
  Request req = weather_question();
  req.options.num_predict = 8;
  const LoopResult r = run_tool_loop(*backend, req, tools, {.max_steps = 2});
  ASSERT_NE(r.end, LoopEnd::model_error) << r.error.message;
  const Completion& c = r.steps.at(0).completion;
  EXPECT_TRUE(c.warnings.empty());  // the model has its own template
  // The template's tool section (the definitions) is in the prompt.
  EXPECT_GT(c.figures.tokens_in.value_or(0), 100);
}

TEST(ToolLoopInProcess, ToolsAskedOfAModelWithoutATemplateAreAnError) {
  Runtime rt(1);
  auto backend = make_backend(inprocess_config(test::tiny_model()), rt);
  Toolbox tools;
  tools.add(weather_tool([](const std::string&) { return std::string("18 C"); }));
  const LoopResult r = run_tool_loop(*backend, weather_question(), tools);
  EXPECT_EQ(r.end, LoopEnd::model_error);
  EXPECT_NE(r.error.message.find("carries no chat template"), std::string::npos) << r.error.message;
}

// ---- Ollama, fixture ----------------------------------------------------------------------------

TEST(ToolLoopOllama, ParallelCallsWithoutIdsRunAndAnswerInOrder) {
  test::FixtureServer srv;
  const std::string calls =
      R"({"model":"m","message":{"role":"assistant","content":"","tool_calls":[)"
      R"({"function":{"name":"get_weather","arguments":{"city":"Oslo"}}},)"
      R"({"function":{"name":"get_weather","arguments":{"city":"Paris"}}},)"
      R"({"function":{"name":"get_weather","arguments":"oops"}}]},)"
      R"("done":true,"done_reason":"stop"})"
      "\n";
  const std::string answer =
      R"({"model":"m","message":{"role":"assistant","content":"Mild."},"done":true,)"
      R"("done_reason":"stop"})"
      "\n";
  srv.route(
      "POST", "/api/chat",
      std::vector<test::Script>{test::Script::ndjson({calls}), test::Script::ndjson({answer})});
  Runtime rt(1);
  auto backend = make_backend(config(srv.url(), BackendKind::ollama), rt);
  // Each good call waits (up to 5 s) until the other has started: both see 2 only when they
  // run at once.
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  int most = 0;
  Toolbox tools;
  tools.add(weather_tool([&](const std::string& args) {
    {
      std::unique_lock lock(mu);
      ++started;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(5), [&] { return started >= 2; });
      most = std::max(most, started);
    }
    return json::parse(args).at("city").as_string().c_str() + std::string(": 18 C");
  }));
  Request req = weather_question();
  req.model = "m";
  req.tool_choice.reset();  // Ollama has none
  const LoopResult r = run_tool_loop(*backend, req, tools);
  ASSERT_EQ(r.end, LoopEnd::answer) << r.error.message;
  EXPECT_EQ(r.answer, "Mild.");
  const auto& recs = r.steps.at(0).tools;
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].call.id, "call_1_1");
  EXPECT_EQ(recs[0].result, "Oslo: 18 C");
  EXPECT_EQ(recs[1].result, "Paris: 18 C");
  EXPECT_EQ(recs[2].outcome, ToolOutcome::bad_arguments);
  EXPECT_EQ(most, 2);  // the two good calls ran at once
  const json::value second = json::parse(srv.requests().at(1).body);
  const auto& msgs = second.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 5u);  // user, assistant, three results in the calls' order
  EXPECT_EQ(msgs[2].at("tool_name"), "get_weather");
  EXPECT_EQ(msgs[2].at("tool_call_id"), "call_1_1");
  EXPECT_EQ(msgs[3].at("content"), "Paris: 18 C");
}

// The biases that steer the test model: OpenAI's form on the wire, checked, refused by Ollama.
TEST(ToolLoop, LogitBiasIsSentCheckedOrRefused) {
  test::FixtureServer srv;
  srv.route("POST", "/v1/chat/completions", answer_stream());
  Runtime rt(1);
  auto openai = make_backend(config(srv.url(), BackendKind::openai), rt);
  Request req = weather_question();
  req.tool_choice.reset();
  req.logit_bias = {{90, 30.0}, {128009, -100.0}};
  const Completion c = openai->generate(req);
  ASSERT_TRUE(c.ok()) << c.error.message;
  const json::value body = json::parse(srv.requests().at(0).body);
  EXPECT_EQ(body.at("logit_bias").at("90").to_number<double>(), 30.0);
  EXPECT_EQ(body.at("logit_bias").at("128009").to_number<double>(), -100.0);
  req.logit_bias = {{-1, 1.0}};
  EXPECT_NE(openai->generate(req).error.message.find("token -1"), std::string::npos);
  req.logit_bias = {{5, 1e9}};
  EXPECT_NE(openai->generate(req).error.message.find("from -100 to 100"), std::string::npos);
  auto ollama = make_backend(config(srv.url(), BackendKind::ollama), rt);
  req.model = "m";
  req.logit_bias = {{90, 30.0}};
  const Completion o = ollama->generate(req);
  EXPECT_EQ(o.error.kind, ErrorKind::bad_request);
  EXPECT_NE(o.error.message.find("Ollama has no logit_bias"), std::string::npos) << o.error.message;
}

TEST(ToolLoop, BadOptionsAndToolsAreRefusedClearly) {
  Toolbox tools;
  EXPECT_THROW(tools.add({.name = "has space", .run = [](const std::string&) { return ""; }}),
               std::invalid_argument);
  EXPECT_THROW(tools.add({.name = "t",
                          .parameters_json = "[1]",
                          .run = [](const std::string&) { return std::string(); }}),
               std::invalid_argument);
  EXPECT_THROW(tools.add({.name = "t"}), std::invalid_argument);
  tools.add({.name = "t", .run = [](const std::string&) { return std::string(); }});
  EXPECT_THROW(tools.add({.name = "t", .run = [](const std::string&) { return std::string(); }}),
               std::invalid_argument);
  EXPECT_EQ(json::parse(tools.definitions_json()).at(0).at("function").at("name"), "t");
  test::FixtureServer srv;
  Runtime rt(1);
  auto backend = make_backend(config(srv.url(), BackendKind::openai), rt);
  EXPECT_THROW(run_tool_loop(*backend, weather_question(), tools, {.max_steps = 0}),
               std::invalid_argument);
  EXPECT_THROW(run_tool_loop(*backend, weather_question(), tools, {.tool_timeout_ms = 0}),
               std::invalid_argument);
}

}  // namespace

// Tool calls over both protocols: a call's id, name and arguments read as the server sends them
// (streamed deltas assembled, parallel calls kept apart), and a tool result sent back with the
// id of the call it answers.
//
// Against a real llama-server (--jinja, the tiny model carrying a tool-calling chat template): a
// conversation with a call and its result is accepted and rendered. The fixture server
// (tests/support/fixture_server.hpp) plays what no server here can be made to do on demand: a
// random-weight model writing calls, parallel calls streamed interleaved, Ollama's records.
#include "support/fixture_server.hpp"
#include "support/test_support.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <map>

namespace {

using namespace chimera;
namespace json = boost::json;
using test::FixtureServer;
using test::Script;

constexpr const char* kWeatherTool =
    R"([{"type":"function","function":{"name":"get_weather","description":"The weather in a city",)"
    R"("parameters":{"type":"object","properties":{"city":{"type":"string","enum":["Paris","Oslo"]}},)"
    R"("required":["city"]}}}])";

EndpointConfig config(const std::string& url, BackendKind kind) {
  EndpointConfig c;
  c.url = url;
  c.kind = kind;
  c.timeouts.connect_ms = 2'000;
  c.timeouts.first_token_ms = 30'000;
  c.timeouts.total_ms = 60'000;
  return c;
}

// What the token callback saw of tool calls, per index.
struct CallEvents {
  std::map<int, std::string> arguments;  // the deltas joined
  std::map<int, std::string> names;
  std::map<int, std::string> ids;
  int events = 0;
  TokenCallback callback() {
    return [this](const TokenEvent& e) {
      if (e.tool_call == nullptr) return true;
      ++events;
      EXPECT_GE(e.tool_call_index, 0);
      arguments[e.tool_call_index] += e.arguments_delta;
      names[e.tool_call_index] = e.tool_call->name;
      ids[e.tool_call_index] = e.tool_call->id;
      return true;
    };
  }
};

json::object sent_json(const test::ReceivedRequest& req) {
  boost::system::error_code ec;
  json::value v = json::parse(req.body, ec);
  EXPECT_FALSE(ec) << req.body;
  return v.is_object() ? v.get_object() : json::object{};
}

std::string sse(const json::value& v) {
  return "data: " + json::serialize(v) + "\n\n";
}

// A chunk whose delta carries one tool call fragment.
json::object delta_event(json::object call) {
  json::array calls;
  calls.push_back(std::move(call));
  json::object choice{{"index", 0},
                      {"delta", json::object{{"tool_calls", std::move(calls)}}},
                      {"finish_reason", nullptr}};
  json::array choices;
  choices.push_back(std::move(choice));
  return json::object{{"id", "chatcmpl-1"},
                      {"object", "chat.completion.chunk"},
                      {"model", "m"},
                      {"choices", std::move(choices)}};
}

// The last chunk: an empty delta and the finish reason.
json::object finish_event(const char* finish) {
  json::array choices;
  choices.push_back(
      json::object{{"index", 0}, {"delta", json::object{}}, {"finish_reason", finish}});
  return json::object{{"id", "chatcmpl-1"},
                      {"object", "chat.completion.chunk"},
                      {"model", "m"},
                      {"choices", std::move(choices)}};
}

json::object call_delta(int index, const char* id, const char* name, const char* args) {
  json::object fn{{"arguments", args}};
  if (name != nullptr) fn["name"] = name;
  json::object d{{"index", index}, {"function", std::move(fn)}};
  if (id != nullptr) {
    d["id"] = id;
    d["type"] = "function";
  }
  return d;
}

Request weather_request() {
  Request r;
  r.messages = {{.role = "user", .content = "What is the weather in Paris?"}};
  r.tools_json = kWeatherTool;
  return r;
}

// A conversation that asked for a tool and now answers it.
Request answered_request(const ToolCall& call) {
  Request r = weather_request();
  r.messages.push_back({.role = "assistant", .tool_calls = {call}});
  r.messages.push_back({.role = "tool",
                        .content = R"({"temp_c": 18})",
                        .tool_name = call.name,
                        .tool_call_id = call.id});
  return r;
}

// ---- OpenAI-compatible, fixture -----------------------------------------------------------------

TEST(ToolCallsOpenAI, ParallelCallsStreamedInterleavedAreKeptApart) {
  // As OpenAI streams parallel calls: the first delta of each carries id, type and name, later
  // ones only argument fragments, under the call's index.
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions",
            Script::sse({
                sse(delta_event(call_delta(0, "call_a", "get_weather", ""))),
                sse(delta_event(call_delta(1, "call_b", "get_time", ""))),
                sse(delta_event(call_delta(0, nullptr, nullptr, "{\"city\":"))),
                sse(delta_event(call_delta(1, nullptr, nullptr, "{\"zone\":\"CET\"}"))),
                sse(delta_event(call_delta(0, nullptr, nullptr, "\"Paris\"}"))),
                sse(finish_event("tool_calls")),
                "data: [DONE]\n\n",
            }));
  Runtime rt(1);
  auto b = make_backend(config(srv.url(), BackendKind::openai), rt);
  CallEvents ev;
  const Completion c = b->generate(weather_request(), ev.callback());
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.finish, FinishReason::tool_calls);
  ASSERT_EQ(c.tool_calls.size(), 2u);
  EXPECT_EQ(c.tool_calls[0].id, "call_a");
  EXPECT_EQ(c.tool_calls[0].name, "get_weather");
  EXPECT_EQ(c.tool_calls[0].arguments_json, R"({"city":"Paris"})");
  EXPECT_EQ(c.tool_calls[1].id, "call_b");
  EXPECT_EQ(c.tool_calls[1].name, "get_time");
  EXPECT_EQ(c.tool_calls[1].arguments_json, R"({"zone":"CET"})");
  EXPECT_EQ(ev.events, 5);
  EXPECT_EQ(ev.arguments[0], c.tool_calls[0].arguments_json);
  EXPECT_EQ(ev.arguments[1], c.tool_calls[1].arguments_json);
  EXPECT_EQ(ev.ids[1], "call_b");
}

TEST(ToolCallsOpenAI, WholeResponseListsItsCallsInOrder) {
  // A non-streamed message's calls carry no index: each is its own call, in order.
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions", Script::json(200, R"({
    "id": "chatcmpl-2", "object": "chat.completion", "model": "m",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
      "role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
        {"id": "call_2", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 30}})"));
  Runtime rt(1);
  auto b = make_backend(config(srv.url(), BackendKind::openai), rt);
  Request r = weather_request();
  r.stream = false;
  const Completion c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  ASSERT_EQ(c.tool_calls.size(), 2u);
  EXPECT_EQ(c.tool_calls[0].id, "call_1");
  EXPECT_EQ(c.tool_calls[0].arguments_json, R"({"city":"Oslo"})");
  EXPECT_EQ(c.tool_calls[1].id, "call_2");
  EXPECT_EQ(c.tool_calls[1].arguments_json, R"({"city":"Paris"})");
  EXPECT_EQ(c.finish, FinishReason::tool_calls);
}

TEST(ToolCallsOpenAI, ResultGoesBackWithTheIdOfItsCall) {
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions",
            Script::sse({sse(finish_event("stop")), "data: [DONE]\n\n"}));
  Runtime rt(1);
  auto b = make_backend(config(srv.url(), BackendKind::openai), rt);
  Request r = answered_request(
      {.id = "call_x7", .name = "get_weather", .arguments_json = R"({"city":"Paris"})"});
  r.tool_choice = "auto";
  r.think = false;
  r.messages[1].thinking = "The user wants the weather.";
  const Completion c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  const json::object body = sent_json(srv.requests().at(0));
  const auto& msgs = body.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 3u);
  const auto& call = msgs[1].at("tool_calls").at(0);
  EXPECT_EQ(call.at("id"), "call_x7");
  EXPECT_EQ(call.at("type"), "function");
  EXPECT_EQ(call.at("function").at("name"), "get_weather");
  // OpenAI's arguments are JSON text, not an object.
  EXPECT_EQ(call.at("function").at("arguments"), R"({"city":"Paris"})");
  EXPECT_EQ(msgs[1].at("reasoning_content"), "The user wants the weather.");
  EXPECT_EQ(msgs[2].at("role"), "tool");
  EXPECT_EQ(msgs[2].at("tool_call_id"), "call_x7");
  EXPECT_EQ(msgs[2].at("content"), R"({"temp_c": 18})");
  EXPECT_EQ(body.at("tool_choice"), "auto");
  EXPECT_EQ(body.at("chat_template_kwargs").at("enable_thinking"), false);
}

TEST(ToolCallsOpenAI, UnknownToolChoiceIsRefusedBeforeSending) {
  FixtureServer srv;
  Runtime rt(1);
  auto b = make_backend(config(srv.url(), BackendKind::openai), rt);
  Request r = weather_request();
  r.tool_choice = "always";
  const Completion c = b->generate(r);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error.kind, ErrorKind::bad_request);
  EXPECT_NE(c.error.message.find("tool_choice is 'always'"), std::string::npos) << c.error.message;
  Request no_tools;
  no_tools.messages = r.messages;
  no_tools.tool_choice = "required";
  const Completion c2 = b->generate(no_tools);
  EXPECT_NE(c2.error.message.find("has no tools"), std::string::npos) << c2.error.message;
  EXPECT_TRUE(srv.requests().empty());
}

// ---- Ollama, fixture ----------------------------------------------------------------------------

TEST(ToolCallsOllama, ResultGoesBackWithNameAndId) {
  FixtureServer srv;
  srv.route("POST", "/api/chat",
            Script::ndjson({R"({"model":"m","message":{"role":"assistant","content":"18"},)"
                            R"("done":true,"done_reason":"stop"})"
                            "\n"}));
  Runtime rt(1);
  auto b = make_backend(config(srv.url(), BackendKind::ollama), rt);
  Request r = answered_request(
      {.id = "call_x7", .name = "get_weather", .arguments_json = R"({"city":"Paris"})"});
  r.model = "m";
  const Completion c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  const json::object body = sent_json(srv.requests().at(0));
  const auto& msgs = body.at("messages").as_array();
  const auto& call = msgs[1].at("tool_calls").at(0);
  EXPECT_EQ(call.at("id"), "call_x7");
  // Ollama's arguments are an object.
  EXPECT_EQ(call.at("function").at("arguments"), json::parse(R"({"city":"Paris"})"));
  EXPECT_EQ(msgs[2].at("tool_name"), "get_weather");
  EXPECT_EQ(msgs[2].at("tool_call_id"), "call_x7");
}

TEST(ToolCallsOllama, StreamedCallsTakeIndexesInArrivalOrder) {
  FixtureServer srv;
  srv.route(
      "POST", "/api/chat",
      Script::ndjson(
          {R"({"model":"m","message":{"role":"assistant","content":"","tool_calls":[)"
           R"({"id":"c1","function":{"index":0,"name":"get_weather","arguments":{"city":"Oslo"}}}]},"done":false})"
           "\n",
           R"({"model":"m","message":{"role":"assistant","content":"","tool_calls":[)"
           R"({"id":"c2","function":{"index":1,"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false})"
           "\n",
           R"({"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"})"
           "\n"}));
  Runtime rt(1);
  auto b = make_backend(config(srv.url(), BackendKind::ollama), rt);
  Request r = weather_request();
  r.model = "m";
  CallEvents ev;
  const Completion c = b->generate(r, ev.callback());
  ASSERT_TRUE(c.ok()) << c.error.message;
  ASSERT_EQ(c.tool_calls.size(), 2u);
  EXPECT_EQ(c.tool_calls[1].id, "c2");
  EXPECT_EQ(c.finish, FinishReason::tool_calls);
  EXPECT_EQ(ev.ids[0], "c1");
  EXPECT_EQ(json::parse(ev.arguments[1]), json::parse(R"({"city":"Paris"})"));
}

TEST(ToolCallsOllama, RequiredToolChoiceIsRefused) {
  FixtureServer srv;
  Runtime rt(1);
  auto b = make_backend(config(srv.url(), BackendKind::ollama), rt);
  Request r = weather_request();
  r.model = "m";
  r.tool_choice = "required";
  const Completion c = b->generate(r);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error.message.find("Ollama cannot be made to call a tool"), std::string::npos)
      << c.error.message;
  EXPECT_TRUE(srv.requests().empty());
}

// ---- a real llama-server ------------------------------------------------------------------------

class ToolCallsLlamaServer : public ::testing::TestWithParam<bool> {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<test::LlamaServer>(
        test::tool_model(),
        test::LlamaServer::Options{.parallel = 1, .ctx = 4096, .extra = {"--jinja"}});
    ASSERT_TRUE(server_->ok()) << server_->error();
  }
  static void TearDownTestSuite() { server_.reset(); }
  void SetUp() override { ASSERT_TRUE(server_ && server_->ok()); }

  static std::unique_ptr<test::LlamaServer> server_;
  Runtime rt_{1};
};

std::unique_ptr<test::LlamaServer> ToolCallsLlamaServer::server_;

// A random-weight model cannot be made to write a call here: with tool_choice "required" the
// pinned llama-server's grammar still lets content come before the call, and the model never
// reaches it. What a real server can check is the other half: it takes a conversation that holds
// a call and its result (the id the call had, the arguments as JSON text) and renders it through
// the template.
TEST_P(ToolCallsLlamaServer, ConversationWithAnAnsweredCallIsAccepted) {
  auto b = make_backend(config(server_->url(), BackendKind::openai), rt_);
  Request plain = weather_request();
  plain.stream = GetParam();
  plain.options.temperature = 0.0;
  plain.options.num_predict = 4;
  plain.tool_choice = "auto";
  const Completion c = b->generate(plain);
  ASSERT_TRUE(c.ok()) << c.error.message << "\n" << server_->log_tail();

  Request answered = answered_request(
      {.id = "call_0a1b2c3d", .name = "get_weather", .arguments_json = R"({"city":"Paris"})"});
  answered.stream = GetParam();
  answered.options = plain.options;
  answered.tool_choice = "auto";
  const Completion c2 = b->generate(answered);
  ASSERT_TRUE(c2.ok()) << c2.error.message << "\n" << server_->log_tail();
  // The call and its result are in the prompt (Hermes-style <tool_call> and <tool_response>).
  EXPECT_GT(c2.figures.tokens_in.value_or(0), c.figures.tokens_in.value_or(0) + 10);
}

INSTANTIATE_TEST_SUITE_P(StreamedAndWhole, ToolCallsLlamaServer, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "streamed" : "whole"; });

}  // namespace

// The Ollama backend against Ollama's documented responses (docs/api.md), replayed by the
// fixture server (no Ollama can be installed where the tests run; see fixture_server.hpp).
// Records have the documented field names and shapes: streamed and whole /api/chat and
// /api/generate, the final record's statistics, tool calls, `thinking`, an error line, and the
// /api/version, /api/tags and /api/ps answers behind Backend::check(). Streams are cut at
// awkward places (inside JSON strings, inside UTF-8 characters, around every newline) so that
// no test passes because records happened to arrive whole.
#include "support/fixture_server.hpp"
#include "support/test_support.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace json = boost::json;
using chimera::BackendKind;
using chimera::Completion;
using chimera::ErrorKind;
using chimera::FinishReason;
using chimera::Request;
using chimera::RequestKind;
using chimera::TokenEvent;
using chimera::test::FixtureServer;
using chimera::test::Script;
using chimera::test::split_awkwardly;

// Go's encoding/json, which Ollama answers with, escapes <, > and & as \u003c, \u003e, \u0026.
std::string go_json(const json::value& v) {
  std::string s = json::serialize(v);
  std::string out;
  for (char c : s) {
    if (c == '<') {
      out += "\\u003c";
    } else if (c == '>') {
      out += "\\u003e";
    } else if (c == '&') {
      out += "\\u0026";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string created_at(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "2023-08-04T08:52:19.%09d-07:00", 385406455 + i * 11'000'000);
  return buf;
}

// A streamed /api/chat record ("done": false), as in "Chat Request (Streaming)".
std::string chat_record(int i, std::string_view content, std::string_view thinking = {},
                        std::string_view model = "llama3.2") {
  json::object msg{{"role", "assistant"}, {"content", content}};
  if (!thinking.empty()) msg["thinking"] = thinking;
  return go_json(json::object{
      {"model", model}, {"created_at", created_at(i)}, {"message", msg}, {"done", false}});
}

// The documented final /api/chat record of a stream, with its statistics.
std::string chat_final(std::string_view done_reason = "stop") {
  return go_json(json::object{{"model", "llama3.2"},
                              {"created_at", "2023-08-04T19:22:45.499127Z"},
                              {"message", json::object{{"role", "assistant"}, {"content", ""}}},
                              {"done_reason", done_reason},
                              {"done", true},
                              {"total_duration", 4883583458},
                              {"load_duration", 1334875},
                              {"prompt_eval_count", 26},
                              {"prompt_eval_duration", 342546000},
                              {"eval_count", 282},
                              {"eval_duration", 4535599000}});
}

// Tokens chosen to be awkward: multi-byte UTF-8 (2, 3 and 4 bytes), JSON escapes, characters
// Go escapes, a CR LF inside the text, leading spaces.
const std::vector<std::string>& tokens() {
  static const std::vector<std::string> t = {"The",
                                             " sky",
                                             " is",
                                             " blue",
                                             " because",
                                             " of",
                                             " Rayleigh",
                                             " scattering",
                                             ":",
                                             " λ≈450 nm",
                                             " — ",
                                             "日本語",
                                             " 🌈",
                                             "\n\n",
                                             "He said \"hi\"",
                                             " a < b && c > d",
                                             " C:\\path",
                                             "\ttab",
                                             "\r\n",
                                             "é",
                                             "ñ",
                                             " done."};
  return t;
}

std::string joined_tokens() {
  std::string s;
  for (const auto& t : tokens()) s += t;
  return s;
}

std::string chat_stream_body(const char* eol = "\n") {
  std::string body;
  int i = 0;
  for (const auto& t : tokens()) body += chat_record(i++, t) + eol;
  body += chat_final() + eol;
  return body;
}

chimera::EndpointConfig config(const FixtureServer& srv) {
  chimera::EndpointConfig c;
  c.url = srv.url();
  c.kind = BackendKind::ollama;
  c.timeouts.connect_ms = 2'000;
  c.timeouts.first_token_ms = 5'000;
  c.timeouts.idle_ms = 5'000;
  c.timeouts.total_ms = 10'000;
  return c;
}

Request chat_request(bool stream = true) {
  Request r;
  r.model = "llama3.2";
  r.messages = {{.role = "user", .content = "why is the sky blue?"}};
  r.stream = stream;
  return r;
}

json::object sent_json(const chimera::test::ReceivedRequest& req) {
  boost::system::error_code ec;
  json::value v = json::parse(req.body, ec);
  EXPECT_FALSE(ec) << "the client sent a body that is not JSON: " << req.body;
  EXPECT_TRUE(v.is_object()) << req.body;
  return v.is_object() ? v.get_object() : json::object{};
}

// Collects the events a stream hands to the token callback.
struct Events {
  std::vector<std::string> text;
  std::vector<std::string> thinking;
  std::vector<chimera::ToolCall> tool_calls;
  std::vector<int> index;
  bool all_utf8 = true;
  chimera::TokenCallback callback() {
    return [this](const TokenEvent& e) {
      text.emplace_back(e.text);
      thinking.emplace_back(e.thinking);
      if (e.tool_call != nullptr) tool_calls.push_back(*e.tool_call);
      index.push_back(e.index);
      all_utf8 =
          all_utf8 && chimera::test::valid_utf8(e.text) && chimera::test::valid_utf8(e.thinking);
      return true;
    };
  }
};

void expect_chat_final_figures(const Completion& c, std::size_t token_chunks) {
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.finish_raw, "stop");
  EXPECT_EQ(c.model, "llama3.2");
  EXPECT_EQ(c.server.total_duration_ns, 4883583458);
  EXPECT_EQ(c.server.load_duration_ns, 1334875);
  EXPECT_EQ(c.server.prompt_eval_count, 26);
  EXPECT_EQ(c.server.prompt_eval_duration_ns, 342546000);
  EXPECT_EQ(c.server.eval_count, 282);
  EXPECT_EQ(c.server.eval_duration_ns, 4535599000);
  const chimera::Figures& f = c.figures;
  EXPECT_EQ(f.tokens_out, 282);
  EXPECT_EQ(f.tokens_in, 26);
  ASSERT_TRUE(f.ttft_server_ms.has_value());
  EXPECT_DOUBLE_EQ(*f.ttft_server_ms, (1334875.0 + 342546000.0) / 1e6);
  ASSERT_TRUE(f.decode_tps_server.has_value());
  EXPECT_DOUBLE_EQ(*f.decode_tps_server, 282.0 / 4535599000.0 * 1e9);
  ASSERT_TRUE(f.ttft_client_ns.has_value());
  EXPECT_GT(*f.ttft_client_ns, 0);
  EXPECT_GT(f.t_send_ns, 0);
  ASSERT_TRUE(f.e2e_ns.has_value());
  EXPECT_GE(*f.e2e_ns, *f.ttft_client_ns);
  EXPECT_EQ(f.chunks, static_cast<int64_t>(token_chunks));
  EXPECT_EQ(f.itl_ns.size(), token_chunks - 1);
  for (int64_t gap : f.itl_ns) EXPECT_GE(gap, 0);
  ASSERT_TRUE(f.t_first_token_ns && f.t_last_token_ns);
  EXPECT_GE(*f.t_last_token_ns, *f.t_first_token_ns);
}

class OllamaFixture : public ::testing::Test {
 protected:
  FixtureServer srv;
  chimera::Runtime rt;
};

// ---- /api/chat, streamed -----------------------------------------------------------------------

TEST_F(OllamaFixture, ChatStreamSplitAwkwardlyReassemblesExactly) {
  const std::string body = chat_stream_body();
  std::vector<Script> scripts;
  for (uint32_t seed = 1; seed <= 6; ++seed)
    scripts.push_back(Script::ndjson(split_awkwardly(body, seed)));
  scripts.push_back(Script::ndjson(chimera::test::split_every(body, 1)));        // one byte a chunk
  scripts.push_back(Script::ndjson(split_awkwardly(body, 99), /*delay_ms=*/1));  // separate reads
  scripts.push_back(Script::ndjson(split_awkwardly(chat_stream_body("\r\n"), 5)));  // CRLF lines
  Script plain = Script::ndjson(split_awkwardly(body, 3));
  plain.framing = chimera::test::Framing::content_length;
  scripts.push_back(plain);
  const std::size_t runs = scripts.size();
  srv.route("POST", "/api/chat", std::move(scripts));
  auto backend = chimera::make_backend(config(srv), rt);

  for (std::size_t run = 0; run < runs; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    Events ev;
    const Completion c = backend->generate(chat_request(), ev.callback());
    ASSERT_TRUE(c.ok()) << c.error.message;
    EXPECT_EQ(c.text, joined_tokens());
    EXPECT_TRUE(c.thinking.empty());
    EXPECT_TRUE(c.tool_calls.empty());
    EXPECT_EQ(c.endpoint, srv.url());
    // Every record is one event with exactly its token, however the bytes were cut.
    EXPECT_EQ(ev.text, tokens());
    EXPECT_TRUE(ev.all_utf8);
    for (std::size_t i = 0; i < ev.index.size(); ++i) EXPECT_EQ(ev.index[i], static_cast<int>(i));
    expect_chat_final_figures(c, tokens().size());
    if (run == 7) {
      // 1 ms before every piece and at least one piece between two newlines: the records
      // arrived over time, in separate reads, not as one burst.
      EXPECT_GE(*c.figures.t_last_token_ns - *c.figures.t_first_token_ns,
                static_cast<int64_t>(tokens().size() - 2) * 1'000'000);
    }
  }
  const auto reqs = srv.requests();
  ASSERT_EQ(reqs.size(), runs);
  for (const auto& r : reqs) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/api/chat");
  }
}

TEST_F(OllamaFixture, ChatRequestCarriesEveryOption) {
  srv.route("POST", "/api/chat",
            Script::ndjson({chat_record(0, "ok") + "\n" + chat_final() + "\n"}));
  auto backend = chimera::make_backend(config(srv), rt);

  Request r;
  r.model = "llama3.2";
  chimera::Message assistant{.role = "assistant", .content = ""};
  assistant.tool_calls = {{.id = "",
                           .name = "get_current_weather",
                           .arguments_json = R"({"format":"celsius","location":"Paris, FR"})"}};
  r.messages = {{.role = "system", .content = "You are terse."},
                {.role = "user", .content = "What is the weather today in Paris? ☀"},
                assistant,
                {.role = "tool", .content = "22 degrees", .tool_name = "get_current_weather"}};
  r.options.num_ctx = 8192;
  r.options.num_gpu = 99;
  r.options.num_predict = 128;
  r.options.num_thread = 4;
  r.options.top_k = 40;
  r.options.top_p = 0.9;
  r.options.min_p = 0.05;
  r.options.temperature = 0.7;
  r.options.repeat_penalty = 1.1;
  r.options.seed = 42;
  r.options.stop = {"\n\n", "user:"};
  r.keep_alive = "10m";
  const std::string schema =
      R"({"type":"object","properties":{"age":{"type":"integer"},"available":{"type":"boolean"}},"required":["age","available"]})";
  r.format_json = schema;
  const std::string tools =
      R"([{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather for a location","parameters":{"type":"object","properties":{"location":{"type":"string"},"format":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location","format"]}}}])";
  r.tools_json = tools;
  r.think = true;
  r.slot_id = 3;          // llama-server only: must not be sent to Ollama
  r.cache_prompt = true;  // likewise

  const Completion c = backend->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "ok");

  const auto reqs = srv.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const auto& req = reqs[0];
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/api/chat");
  EXPECT_NE(req.header("content-type").find("application/json"), std::string::npos);
  EXPECT_EQ(req.header("accept"), "application/x-ndjson");
  EXPECT_EQ(req.header("host"), "127.0.0.1:" + std::to_string(srv.port()));
  EXPECT_TRUE(req.header("authorization").empty());

  const json::object body = sent_json(req);
  EXPECT_EQ(body.at("model"), "llama3.2");
  EXPECT_EQ(body.at("stream"), true);
  const auto& msgs = body.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 4u);
  EXPECT_EQ(msgs[0].at("role"), "system");
  EXPECT_EQ(msgs[0].at("content"), "You are terse.");
  EXPECT_EQ(msgs[1].at("role"), "user");
  EXPECT_EQ(msgs[1].at("content"), "What is the weather today in Paris? ☀");
  EXPECT_EQ(msgs[2].at("role"), "assistant");
  const auto& call = msgs[2].at("tool_calls").as_array().at(0).at("function");
  EXPECT_EQ(call.at("name"), "get_current_weather");
  // Ollama takes the arguments as an object, not as a JSON string.
  EXPECT_EQ(call.at("arguments"), json::parse(R"({"format":"celsius","location":"Paris, FR"})"));
  EXPECT_EQ(msgs[3].at("role"), "tool");
  EXPECT_EQ(msgs[3].at("tool_name"), "get_current_weather");
  EXPECT_EQ(msgs[3].at("content"), "22 degrees");

  const auto& o = body.at("options").as_object();
  EXPECT_EQ(o.at("num_ctx").to_number<int64_t>(), 8192);
  EXPECT_EQ(o.at("num_gpu").to_number<int64_t>(), 99);
  EXPECT_EQ(o.at("num_predict").to_number<int64_t>(), 128);
  EXPECT_EQ(o.at("num_thread").to_number<int64_t>(), 4);
  EXPECT_EQ(o.at("top_k").to_number<int64_t>(), 40);
  EXPECT_DOUBLE_EQ(o.at("top_p").to_number<double>(), 0.9);
  EXPECT_DOUBLE_EQ(o.at("min_p").to_number<double>(), 0.05);
  EXPECT_DOUBLE_EQ(o.at("temperature").to_number<double>(), 0.7);
  EXPECT_DOUBLE_EQ(o.at("repeat_penalty").to_number<double>(), 1.1);
  EXPECT_EQ(o.at("seed").to_number<int64_t>(), 42);
  EXPECT_EQ(o.at("stop"), json::parse(R"(["\n\n","user:"])"));
  EXPECT_EQ(body.at("keep_alive"), "10m");
  EXPECT_EQ(body.at("format"), json::parse(schema));  // the schema object itself, not a string
  EXPECT_EQ(body.at("tools"), json::parse(tools));
  EXPECT_EQ(body.at("think"), true);
  EXPECT_FALSE(body.contains("id_slot"));
  EXPECT_FALSE(body.contains("cache_prompt"));
  EXPECT_FALSE(body.contains("prompt"));
  EXPECT_FALSE(body.contains("system"));
}

TEST_F(OllamaFixture, ChatRequestMinimalFormsAndNumericKeepAlive) {
  srv.route("POST", "/api/chat",
            Script::ndjson({chat_record(0, "{}") + "\n" + chat_final() + "\n"}));
  auto backend = chimera::make_backend(config(srv), rt);

  Request r = chat_request();
  r.keep_alive = "0";  // documented as a number: "keep_alive": 0 unloads the model
  r.format_json = "json";
  r.think = false;
  ASSERT_TRUE(backend->generate(r).ok());

  Request plain = chat_request(/*stream=*/true);
  ASSERT_TRUE(backend->generate(plain).ok());

  const auto reqs = srv.requests();
  ASSERT_EQ(reqs.size(), 2u);
  const json::object first = sent_json(reqs[0]);
  EXPECT_EQ(first.at("keep_alive"), 0);
  EXPECT_EQ(first.at("format"), "json");
  EXPECT_EQ(first.at("think"), false);
  EXPECT_FALSE(first.contains("options"));  // nothing set: the server's defaults apply
  const json::object second = sent_json(reqs[1]);
  for (const char* key : {"options", "keep_alive", "format", "think", "tools"}) {
    EXPECT_FALSE(second.contains(key)) << key;
  }
  EXPECT_EQ(second.at("messages"),
            json::parse(R"([{"role":"user","content":"why is the sky blue?"}])"));
}

// ---- /api/chat, whole response -----------------------------------------------------------------

TEST_F(OllamaFixture, ChatNotStreamed) {
  // "Chat request (No streaming)", with the done_reason that current servers add.
  const std::string body = R"({
  "model": "llama3.2",
  "created_at": "2023-12-12T14:13:43.416799Z",
  "message": {
    "role": "assistant",
    "content": "Hello! How are you today?"
  },
  "done_reason": "stop",
  "done": true,
  "total_duration": 5191566416,
  "load_duration": 2154458,
  "prompt_eval_count": 26,
  "prompt_eval_duration": 383809000,
  "eval_count": 298,
  "eval_duration": 4799921000
})";
  Script s = Script::json(200, body);
  s.pieces.clear();
  for (auto& p : split_awkwardly(body, 11)) s.pieces.push_back({p, 0});
  srv.route("POST", "/api/chat", s);
  auto backend = chimera::make_backend(config(srv), rt);

  Events ev;
  const Completion c = backend->generate(chat_request(/*stream=*/false), ev.callback());
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "Hello! How are you today?");
  EXPECT_EQ(ev.text, std::vector<std::string>{"Hello! How are you today?"});
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.figures.tokens_out, 298);
  EXPECT_EQ(c.figures.tokens_in, 26);
  EXPECT_DOUBLE_EQ(*c.figures.ttft_server_ms, (2154458.0 + 383809000.0) / 1e6);
  EXPECT_DOUBLE_EQ(*c.figures.decode_tps_server, 298.0 / 4799921000.0 * 1e9);
  EXPECT_EQ(c.figures.chunks, 1);
  EXPECT_TRUE(c.figures.itl_ns.empty());
  ASSERT_TRUE(c.figures.e2e_ns.has_value());
  EXPECT_GT(*c.figures.e2e_ns, 0);

  const json::object sent = sent_json(srv.requests().at(0));
  EXPECT_EQ(sent.at("stream"), false);
}

TEST_F(OllamaFixture, ChatStructuredOutputNotStreamed) {
  // "Chat request (Structured outputs)": the content is JSON text, escapes and all.
  srv.route("POST", "/api/chat", Script::json(200, R"({
  "model": "llama3.1",
  "created_at": "2024-12-06T00:46:58.265747Z",
  "message": { "role": "assistant", "content": "{\"age\": 22, \"available\": false}" },
  "done_reason": "stop",
  "done": true,
  "total_duration": 2254970291,
  "load_duration": 574751416,
  "prompt_eval_count": 34,
  "prompt_eval_duration": 1502000000,
  "eval_count": 12,
  "eval_duration": 175000000
})"));
  auto backend = chimera::make_backend(config(srv), rt);
  Request r = chat_request(false);
  r.model = "llama3.1";
  r.format_json =
      R"({"type":"object","properties":{"age":{"type":"integer"},"available":{"type":"boolean"}},"required":["age","available"]})";
  r.options.temperature = 0;
  const Completion c = backend->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, R"({"age": 22, "available": false})");
  EXPECT_EQ(c.model, "llama3.1");
  EXPECT_EQ(json::parse(c.text), json::parse(R"({"age":22,"available":false})"));
  EXPECT_DOUBLE_EQ(*c.figures.ttft_server_ms, (574751416.0 + 1502000000.0) / 1e6);
  const json::object sent = sent_json(srv.requests().at(0));
  EXPECT_EQ(sent.at("format").at("required"), json::parse(R"(["age","available"])"));
  EXPECT_EQ(sent.at("options").at("temperature").to_number<double>(), 0.0);
}

// ---- thinking ----------------------------------------------------------------------------------

TEST_F(OllamaFixture, ChatThinkingKeptApartFromContent) {
  // A thinking model streams message.thinking first, then message.content.
  const std::vector<std::string> thoughts = {"The user", " asks about", " colour — ", "Rayleigh",
                                             " scattering ∝ 1/λ⁴."};
  const std::vector<std::string> answer = {"Because", " blue light", " scatters most."};
  std::string body;
  int i = 0;
  for (const auto& t : thoughts) body += chat_record(i++, "", t, "qwen3") + "\n";
  for (const auto& a : answer) body += chat_record(i++, a, "", "qwen3") + "\n";
  body += chat_final() + "\n";
  srv.route("POST", "/api/chat", Script::ndjson(split_awkwardly(body, 21)));
  auto backend = chimera::make_backend(config(srv), rt);

  Request r = chat_request();
  r.think = true;
  Events ev;
  const Completion c = backend->generate(r, ev.callback());
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.thinking, "The user asks about colour — Rayleigh scattering ∝ 1/λ⁴.");
  EXPECT_EQ(c.text, "Because blue light scatters most.");
  ASSERT_EQ(ev.text.size(), thoughts.size() + answer.size());
  for (std::size_t k = 0; k < thoughts.size(); ++k) {
    EXPECT_EQ(ev.thinking[k], thoughts[k]);
    EXPECT_TRUE(ev.text[k].empty());
  }
  for (std::size_t k = 0; k < answer.size(); ++k) {
    EXPECT_EQ(ev.text[thoughts.size() + k], answer[k]);
    EXPECT_TRUE(ev.thinking[thoughts.size() + k].empty());
  }
  EXPECT_TRUE(ev.all_utf8);
  // Thinking records are output too: they count as chunks and the first one is the first token.
  EXPECT_EQ(c.figures.chunks, static_cast<int64_t>(thoughts.size() + answer.size()));
  EXPECT_EQ(c.figures.itl_ns.size(), thoughts.size() + answer.size() - 1);
  EXPECT_EQ(sent_json(srv.requests().at(0)).at("think"), true);
}

// ---- tool calls --------------------------------------------------------------------------------

TEST_F(OllamaFixture, ToolCallNotStreamed) {
  // "Chat request (with tools)", verbatim in shape.
  srv.route("POST", "/api/chat", Script::json(200, R"({
  "model": "llama3.2",
  "created_at": "2024-07-22T20:33:28.123648Z",
  "message": {
    "role": "assistant",
    "content": "",
    "tool_calls": [
      {
        "function": {
          "name": "get_current_weather",
          "arguments": {
            "format": "celsius",
            "location": "Paris, FR"
          }
        }
      }
    ]
  },
  "done_reason": "stop",
  "done": true,
  "total_duration": 885095291,
  "load_duration": 3753500,
  "prompt_eval_count": 122,
  "prompt_eval_duration": 328493000,
  "eval_count": 33,
  "eval_duration": 552222000
})"));
  auto backend = chimera::make_backend(config(srv), rt);
  Request r = chat_request(false);
  r.messages = {{.role = "user", .content = "What is the weather today in Paris?"}};
  r.tools_json =
      R"([{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather for a location","parameters":{"type":"object","properties":{"location":{"type":"string","description":"The location to get the weather for, e.g. San Francisco, CA"},"format":{"type":"string","description":"The format to return the weather in, e.g. 'celsius' or 'fahrenheit'","enum":["celsius","fahrenheit"]}},"required":["location","format"]}}}])";
  Events ev;
  const Completion c = backend->generate(r, ev.callback());
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "");
  ASSERT_EQ(c.tool_calls.size(), 1u);
  EXPECT_EQ(c.tool_calls[0].name, "get_current_weather");
  EXPECT_EQ(json::parse(c.tool_calls[0].arguments_json),
            json::parse(R"({"format":"celsius","location":"Paris, FR"})"));
  EXPECT_EQ(c.finish, FinishReason::tool_calls);
  EXPECT_EQ(c.finish_raw, "stop");
  ASSERT_EQ(ev.tool_calls.size(), 1u);
  EXPECT_EQ(ev.tool_calls[0].name, "get_current_weather");
  EXPECT_EQ(c.figures.tokens_out, 33);
  const json::object sent = sent_json(srv.requests().at(0));
  EXPECT_EQ(sent.at("tools").at(0).at("function").at("name"), "get_current_weather");
  EXPECT_EQ(sent.at("stream"), false);
}

TEST_F(OllamaFixture, ToolCallsStreamed) {
  // Current servers stream tool calls as a record of their own, then the final record.
  const std::string call_record = go_json(json::object{
      {"model", "llama3.2"},
      {"created_at", created_at(0)},
      {"message",
       json::object{
           {"role", "assistant"},
           {"content", ""},
           {"tool_calls",
            json::array{json::object{
                            {"function",
                             json::object{{"name", "get_current_weather"},
                                          {"arguments", json::object{{"format", "celsius"},
                                                                     {"location", "Paris, FR"}}}}}},
                        json::object{
                            {"function", json::object{{"name", "get_time"},
                                                      {"arguments",
                                                       json::object{{"tz", "Europe/Paris"}}}}}}}}}},
      {"done", false}});
  const std::string body = call_record + "\n" + chat_final() + "\n";
  srv.route("POST", "/api/chat", Script::ndjson(split_awkwardly(body, 4)));
  auto backend = chimera::make_backend(config(srv), rt);
  Events ev;
  const Completion c = backend->generate(chat_request(), ev.callback());
  ASSERT_TRUE(c.ok()) << c.error.message;
  ASSERT_EQ(c.tool_calls.size(), 2u);
  EXPECT_EQ(c.tool_calls[0].name, "get_current_weather");
  EXPECT_EQ(json::parse(c.tool_calls[0].arguments_json),
            json::parse(R"({"format":"celsius","location":"Paris, FR"})"));
  EXPECT_EQ(c.tool_calls[1].name, "get_time");
  EXPECT_EQ(json::parse(c.tool_calls[1].arguments_json), json::parse(R"({"tz":"Europe/Paris"})"));
  EXPECT_EQ(c.finish, FinishReason::tool_calls);
  ASSERT_EQ(ev.tool_calls.size(), 2u);
  EXPECT_EQ(ev.tool_calls[1].name, "get_time");
}

// ---- /api/generate -----------------------------------------------------------------------------

TEST_F(OllamaFixture, GenerateStreamedWithThinking) {
  const std::vector<std::pair<std::string, std::string>> recs = {
      {"", "Short answer"}, {"", " wanted."}, {"The", ""},   {" sky", ""},
      {" scatters", ""},    {" blue ", ""},   {"light.", ""}};
  std::string body;
  int i = 0;
  for (const auto& [resp, think] : recs) {
    json::object o{{"model", "llama3.2"}, {"created_at", created_at(i++)}, {"response", resp}};
    if (!think.empty()) o["thinking"] = think;
    o["done"] = false;
    body += go_json(o) + "\n";
  }
  // The documented final record of a generate stream, context and all.
  body +=
      R"({"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","response":"","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":10706818083,"load_duration":6338219291,"prompt_eval_count":26,"prompt_eval_duration":130079000,"eval_count":259,"eval_duration":4232710000})";
  body += "\n";
  srv.route("POST", "/api/generate", Script::ndjson(split_awkwardly(body, 8)));
  auto backend = chimera::make_backend(config(srv), rt);

  Request r;
  r.kind = RequestKind::completion;
  r.model = "llama3.2";
  r.prompt = "Why is the sky blue?";
  r.system = "Answer in one sentence.";
  r.options.seed = 123;
  r.think = true;
  Events ev;
  const Completion c = backend->generate(r, ev.callback());
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "The sky scatters blue light.");
  EXPECT_EQ(c.thinking, "Short answer wanted.");
  EXPECT_EQ(ev.text.size(), recs.size());
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.figures.tokens_out, 259);
  EXPECT_EQ(c.figures.tokens_in, 26);
  EXPECT_DOUBLE_EQ(*c.figures.ttft_server_ms, (6338219291.0 + 130079000.0) / 1e6);
  EXPECT_DOUBLE_EQ(*c.figures.decode_tps_server, 259.0 / 4232710000.0 * 1e9);
  EXPECT_EQ(c.figures.itl_ns.size(), recs.size() - 1);

  const auto reqs = srv.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/api/generate");
  const json::object sent = sent_json(reqs[0]);
  EXPECT_EQ(sent.at("model"), "llama3.2");
  EXPECT_EQ(sent.at("prompt"), "Why is the sky blue?");
  EXPECT_EQ(sent.at("system"), "Answer in one sentence.");
  EXPECT_EQ(sent.at("stream"), true);
  EXPECT_EQ(sent.at("options").at("seed").to_number<int64_t>(), 123);
  EXPECT_EQ(sent.at("think"), true);
  EXPECT_FALSE(sent.contains("messages"));
}

TEST_F(OllamaFixture, GenerateNotStreamed) {
  // "Request (with suffix)": a whole response with newlines escaped inside the string.
  srv.route("POST", "/api/generate", Script::json(200, R"({
  "model": "codellama:code",
  "created_at": "2024-07-22T20:47:51.147561Z",
  "response": "\n  if a == 0:\n    return b\n  else:\n    return compute_gcd(b % a, a)\n\ndef compute_lcm(a, b):\n  result = (a * b) / compute_gcd(a, b)\n",
  "done": true,
  "done_reason": "stop",
  "context": [1, 2, 3],
  "total_duration": 1162761250,
  "load_duration": 6683708,
  "prompt_eval_count": 17,
  "prompt_eval_duration": 201222000,
  "eval_count": 63,
  "eval_duration": 953997000
})"));
  auto backend = chimera::make_backend(config(srv), rt);
  Request r;
  r.kind = RequestKind::completion;
  r.model = "codellama:code";
  r.prompt = "def compute_gcd(a, b):";
  r.options.temperature = 0;
  r.stream = false;
  const Completion c = backend->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text,
            "\n  if a == 0:\n    return b\n  else:\n    return compute_gcd(b % a, a)\n\ndef "
            "compute_lcm(a, b):\n  result = (a * b) / compute_gcd(a, b)\n");
  EXPECT_EQ(c.model, "codellama:code");
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.figures.tokens_out, 63);
  EXPECT_DOUBLE_EQ(*c.figures.ttft_server_ms, (6683708.0 + 201222000.0) / 1e6);
  const json::object sent = sent_json(srv.requests().at(0));
  EXPECT_EQ(srv.requests().at(0).target, "/api/generate");
  EXPECT_EQ(sent.at("stream"), false);
  EXPECT_FALSE(sent.contains("system"));  // not set: not sent
}

TEST_F(OllamaFixture, GenerateStoppedByLength) {
  std::string body;
  body +=
      R"({"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","response":"The","done":false})"
      "\n";
  body +=
      R"({"model":"llama3.2","created_at":"2023-08-04T08:52:19.395406455-07:00","response":" sky","done":false})"
      "\n";
  body +=
      R"({"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","response":"","done":true,"done_reason":"length","total_duration":100,"load_duration":1,"prompt_eval_count":5,"prompt_eval_duration":2,"eval_count":2,"eval_duration":50})"
      "\n";
  srv.route("POST", "/api/generate", Script::ndjson(split_awkwardly(body, 2)));
  auto backend = chimera::make_backend(config(srv), rt);
  Request r;
  r.kind = RequestKind::completion;
  r.model = "llama3.2";
  r.prompt = "Why is the sky blue?";
  r.options.num_predict = 2;
  const Completion c = backend->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "The sky");
  EXPECT_EQ(c.finish, FinishReason::length);
  EXPECT_EQ(c.finish_raw, "length");
  EXPECT_EQ(sent_json(srv.requests().at(0)).at("options").at("num_predict").to_number<int64_t>(),
            2);
}

// ---- an error line ---------------------------------------------------------------------------

TEST_F(OllamaFixture, ErrorLineMidStreamEndsTheRequest) {
  std::string body =
      chat_record(0, "The") + "\n" + chat_record(1, " sky") + "\n" +
      R"({"error":"an error was encountered while running the model: unexpected EOF"})"
      "\n";
  srv.route("POST", "/api/chat", Script::ndjson(split_awkwardly(body, 13)));
  auto backend = chimera::make_backend(config(srv), rt);
  const Completion c = backend->generate(chat_request());
  EXPECT_EQ(c.error.kind, ErrorKind::server);
  EXPECT_NE(c.error.message.find(srv.url()), std::string::npos) << c.error.message;
  EXPECT_NE(c.error.message.find("unexpected EOF"), std::string::npos) << c.error.message;
  EXPECT_EQ(c.text, "The sky");
  EXPECT_EQ(c.finish, FinishReason::error);
}

// ---- bursts: records that arrive together ------------------------------------------------------

// The text and TokenEvent::more of every event a stream hands over; `stop_at` makes the callback
// return false at that event (cancelling the request).
struct BurstEvents {
  std::vector<std::string> text;
  std::vector<bool> more;
  std::vector<bool> tool_call;
  std::size_t stop_at = SIZE_MAX;
  chimera::TokenCallback callback() {
    return [this](const TokenEvent& e) {
      text.emplace_back(e.text);
      more.push_back(e.more);
      tool_call.push_back(e.tool_call != nullptr);
      return text.size() - 1 != stop_at;
    };
  }
  // Streams chat_request() from `srv` answering with `script`, the events recorded here.
  Completion stream(FixtureServer& srv, chimera::Runtime& rt, const Script& script) {
    srv.route("POST", "/api/chat", script);
    auto backend = chimera::make_backend(config(srv), rt);
    return backend->generate(chat_request(), callback());
  }
};

// The records of the tokens "a", "b" and "c", each with its newline.
std::vector<std::string> abc_records() {
  return {chat_record(0, "a") + "\n", chat_record(1, "b") + "\n", chat_record(2, "c") + "\n"};
}

// `data` as one HTTP/1.1 chunk: its size in hex, the data, CRLF.
std::string chunk(const std::string& data) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

// A chunked NDJSON response written as given (the pieces framed with chunk() by the test).
Script chunked_ndjson() {
  Script s;
  s.framing = chimera::test::Framing::raw;
  s.headers = {{"Content-Type", "application/x-ndjson"}, {"Transfer-Encoding", "chunked"}};
  return s;
}

// Three records in one send, after a pause (so the head was read before): one read, one burst.
// The first two say that another follows; the last does not. (The head and the three records
// are about 480 bytes: one first read of 512 takes them even when they arrive together.)
TEST_F(OllamaFixture, RecordsReadTogetherAreHandedOverAsOneBurst) {
  const auto abc = abc_records();
  BurstEvents ev;
  const Completion c =
      ev.stream(srv, rt, Script::ndjson({abc[0] + abc[1] + abc[2], chat_final() + "\n"}, 30));
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "abc");
  EXPECT_EQ(ev.text, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ev.more, (std::vector<bool>{true, true, false}));
  // The figures are taken as each token is handed over: three chunks, two gaps.
  EXPECT_EQ(c.figures.chunks, 3);
  EXPECT_EQ(c.figures.itl_ns.size(), 2u);
}

// The same three records as three HTTP chunks in one send: the client hands over every element
// one read brought, not one element per call.
TEST_F(OllamaFixture, ChunksReadTogetherAreOneBurst) {
  const auto abc = abc_records();
  Script s = chunked_ndjson();
  s.pieces = {{chunk(abc[0]) + chunk(abc[1]) + chunk(abc[2]), 30},
              {chunk(chat_final() + "\n") + "0\r\n\r\n", 30}};
  BurstEvents ev;
  const Completion c = ev.stream(srv, rt, s);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(ev.text, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ev.more, (std::vector<bool>{true, true, false}));
}

// A read that brings the last records and the end of the body: the request's end follows the
// last token at once, so that token says so too (a server passing tokens on writes it with the
// end of its response). When the end comes in a later read (the test above), the last token of
// the burst goes without `more`, and is not held for it.
TEST_F(OllamaFixture, TheLastTokenOfAReadThatEndsTheResponseSaysTheEndFollows) {
  const auto abc = abc_records();
  Script s = chunked_ndjson();
  // (The second send, about 430 bytes, fits the client's first read buffer of 512.)
  s.pieces = {{chunk(abc[0]) + chunk(abc[1]), 30},
              {chunk(abc[2]) + chunk(chat_final() + "\n") + "0\r\n\r\n", 30}};
  BurstEvents ev;
  const Completion c = ev.stream(srv, rt, s);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(ev.text, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ev.more, (std::vector<bool>{true, false, true}));
  EXPECT_EQ(c.figures.chunks, 3);
}

// Records that arrive apart are not held for each other: none says that another follows.
TEST_F(OllamaFixture, RecordsReadApartAreEachTheirOwnBurst) {
  auto pieces = abc_records();
  pieces.push_back(chat_final() + "\n");
  BurstEvents ev;
  const Completion c = ev.stream(srv, rt, Script::ndjson(pieces, /*delay_ms=*/60));
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(ev.text, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ev.more, (std::vector<bool>{false, false, false}));
}

// A callback that returns false inside a burst gets nothing more, the tokens after it in the
// same read included; the request ends cancelled with the text that arrived.
TEST_F(OllamaFixture, CancellingInsideABurstStopsAtOnce) {
  const auto abc = abc_records();
  BurstEvents ev;
  ev.stop_at = 0;
  const Completion c =
      ev.stream(srv, rt, Script::ndjson({abc[0] + abc[1] + abc[2], chat_final() + "\n"}, 30));
  EXPECT_EQ(c.error.kind, ErrorKind::cancelled) << c.error.message;
  EXPECT_EQ(ev.text, (std::vector<std::string>{"a"}));
  EXPECT_EQ(ev.more, (std::vector<bool>{true}));
}

// A tool call inside a burst goes in order: the token before it, the call, the token after it,
// the last without `more`.
TEST_F(OllamaFixture, ToolCallInsideABurstKeepsItsPlace) {
  const std::string call = go_json(json::object{
      {"model", "llama3.2"},
      {"created_at", created_at(1)},
      {"message", json::object{{"role", "assistant"},
                               {"content", ""},
                               {"tool_calls",
                                json::array{json::object{
                                    {"function", json::object{{"name", "get_time"},
                                                              {"arguments", json::object{}}}}}}}}},
      {"done", false}});
  const auto abc = abc_records();
  BurstEvents ev;
  const Completion c =
      ev.stream(srv, rt, Script::ndjson({abc[0] + call + "\n" + abc[2], chat_final() + "\n"}, 30));
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(ev.text, (std::vector<std::string>{"a", "", "c"}));
  EXPECT_EQ(ev.tool_call, (std::vector<bool>{false, true, false}));
  ASSERT_EQ(ev.more.size(), 3u);
  EXPECT_FALSE(ev.more.back());
  ASSERT_EQ(c.tool_calls.size(), 1u);
  EXPECT_EQ(c.tool_calls[0].name, "get_time");
}

// ---- check() -----------------------------------------------------------------------------------

const char* kTags = R"({
  "models": [
    {
      "name": "codellama:13b",
      "modified_at": "2023-11-04T14:56:49.277302595-07:00",
      "size": 7365960935,
      "digest": "9f438cb9cd581fc025612d27f7c1a6669ff83a8bb0ed86c94fcf4c5440555697",
      "details": {
        "format": "gguf",
        "family": "llama",
        "families": null,
        "parameter_size": "13B",
        "quantization_level": "Q4_0"
      }
    },
    {
      "name": "llama3:latest",
      "modified_at": "2023-12-07T09:32:18.757212583-08:00",
      "size": 3825819519,
      "digest": "fe938a131f40e6f6d40083c9f0f430a515233eb2edaa6d72eb85c50d64f2300e",
      "details": {
        "format": "gguf",
        "family": "llama",
        "families": null,
        "parameter_size": "7B",
        "quantization_level": "Q4_0"
      }
    }
  ]
})";

const char* kPs = R"({
  "models": [
    {
      "name": "mistral:latest",
      "model": "mistral:latest",
      "size": 5137025024,
      "digest": "2ae6f6dd7a3dd734790bbbf58b8909a606e0e7e97e94b7604e0aa7ae4490e6d8",
      "details": {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": [
          "llama"
        ],
        "parameter_size": "7.2B",
        "quantization_level": "Q4_0"
      },
      "expires_at": "2024-06-04T14:38:31.83753-07:00",
      "size_vram": 5137025024
    }
  ]
})";

TEST_F(OllamaFixture, CheckReadsVersionTagsAndRunningModels) {
  srv.route("GET", "/api/version", Script::json(200, R"({"version":"0.5.1"})"));
  srv.route("GET", "/api/tags", Script::json(200, kTags));
  srv.route("GET", "/api/ps", Script::json(200, kPs));
  auto backend = chimera::make_backend(config(srv), rt);
  const chimera::EndpointInfo info = backend->check();
  EXPECT_TRUE(info.healthy) << info.detail;
  EXPECT_EQ(info.url, srv.url());
  EXPECT_EQ(info.kind, BackendKind::ollama);
  EXPECT_EQ(info.server, "ollama");
  EXPECT_EQ(info.version, "0.5.1");
  EXPECT_EQ(info.models, (std::vector<std::string>{"codellama:13b", "llama3:latest"}));
  EXPECT_NE(info.detail.find("mistral:latest"), std::string::npos) << info.detail;
  EXPECT_GT(info.latency_ns, 0);
  const auto reqs = srv.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].target, "/api/version");
  EXPECT_EQ(reqs[1].target, "/api/tags");
  EXPECT_EQ(reqs[2].target, "/api/ps");
  EXPECT_EQ(srv.connections(), 1);  // one keep-alive connection for all three
}

TEST_F(OllamaFixture, CheckWithNoModelLoaded) {
  srv.route("GET", "/api/version", Script::json(200, R"({"version":"0.6.2"})"));
  srv.route("GET", "/api/tags", Script::json(200, R"({"models":[]})"));
  srv.route("GET", "/api/ps", Script::json(200, R"({"models":[]})"));
  auto backend = chimera::make_backend(config(srv), rt);
  const chimera::EndpointInfo info = backend->check();
  EXPECT_TRUE(info.healthy);
  EXPECT_EQ(info.version, "0.6.2");
  EXPECT_TRUE(info.models.empty());
  EXPECT_EQ(info.detail, "ok, no model loaded");
}

TEST_F(OllamaFixture, CheckOnAServerThatIsNotOllama) {
  // No /api/version route: the fixture answers 404 with a JSON error.
  auto backend = chimera::make_backend(config(srv), rt);
  const chimera::EndpointInfo info = backend->check();
  EXPECT_FALSE(info.healthy);
  EXPECT_NE(info.detail.find("404"), std::string::npos) << info.detail;
  EXPECT_NE(info.detail.find("/api/version"), std::string::npos) << info.detail;
}

TEST_F(OllamaFixture, CheckOnADeadEndpoint) {
  chimera::EndpointConfig cfg = config(srv);
  cfg.url = "http://127.0.0.1:" + std::to_string(chimera::free_loopback_port());
  auto backend = chimera::make_backend(cfg, rt);
  const chimera::EndpointInfo info = backend->check();
  EXPECT_FALSE(info.healthy);
  EXPECT_NE(info.detail.find(cfg.url), std::string::npos) << info.detail;
}

TEST_F(OllamaFixture, DetectsOllamaByItsVersionEndpoint) {
  srv.route("GET", "/api/version", Script::json(200, R"({"version":"0.5.1"})"));
  const chimera::DetectResult d = chimera::detect_backend(srv.url(), rt, 2'000);
  EXPECT_FALSE(d.error) << d.error.message;
  EXPECT_EQ(d.kind, BackendKind::ollama);
}

}  // namespace

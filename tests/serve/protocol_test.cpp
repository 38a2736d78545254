// The records serve writes for each token (serve/protocol.hpp): what a client of each protocol
// reads, and byte for byte what boost::json::serialize writes for the same value, whatever the
// text holds (quotes, backslashes, control characters, multi-byte UTF-8).
#include "serve/protocol.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace {

namespace json = boost::json;
using chimera::TokenEvent;
using chimera::serve::Api;
using chimera::serve::Encoder;

// Texts a model may stream, every escaping case among them.
std::vector<std::string> awkward_texts() {
  std::vector<std::string> texts = {
      "Hello",     " world",      "say \"hi\"", "back\\slash", "a/b",
      "tab\there", "line\nbreak", "\r\n",       "caf\xc3\xa9", "\xe2\x9c\x93 \xf0\x9f\x98\x80",
      "\x7f"};
  std::string controls;
  for (int c = 1; c < 0x20; ++c) controls += static_cast<char>(c);
  texts.push_back(controls);
  texts.push_back(std::string("nul\0inside", 10));
  return texts;
}

// The record without its framing ("data: ", the blank line, the newline), parsed.
json::value body_of(Api api, const std::string& record) {
  std::string_view body(record);
  if (api == Api::openai_chat || api == Api::openai_completion) {
    EXPECT_TRUE(body.starts_with("data: ")) << record;
    EXPECT_TRUE(body.ends_with("\n\n")) << record;
    body = body.substr(6, body.size() - 8);
  } else {
    EXPECT_TRUE(body.ends_with("\n")) << record;
    body.remove_suffix(1);
  }
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  EXPECT_FALSE(ec) << ec.message() << ": " << record;
  // Exactly the serializer's bytes for the value the record holds.
  EXPECT_EQ(json::serialize(v), body);
  return v;
}

TEST(Encoder, OpenAiFinishRecordsAreTheSerializersBytes) {
  for (const Api api : {Api::openai_chat, Api::openai_completion}) {
    for (const auto& [finish, word] : std::vector<std::pair<chimera::FinishReason, std::string>>{
             {chimera::FinishReason::stop, "stop"},
             {chimera::FinishReason::length, "length"},
             {chimera::FinishReason::tool_calls, "tool_calls"},
             {chimera::FinishReason::none, "stop"}}) {
      Encoder enc(api, true, "m\\odel", false);
      chimera::Completion c;
      c.finish = finish;
      std::string out;
      enc.finish(c, out);
      const std::string done = "data: [DONE]\n\n";
      ASSERT_TRUE(out.ends_with(done)) << out;
      const json::value v = body_of(api, out.substr(0, out.size() - done.size()));
      const auto& o = v.as_object();
      EXPECT_EQ(o.at("model"), "m\\odel");
      EXPECT_EQ(o.at("object"),
                api == Api::openai_chat ? "chat.completion.chunk" : "text_completion");
      const auto& choice = o.at("choices").as_array().at(0).as_object();
      EXPECT_EQ(choice.at("index"), 0);
      EXPECT_EQ(choice.at("finish_reason"), word.c_str());
      if (api == Api::openai_chat) {
        EXPECT_TRUE(choice.at("delta").as_object().empty());
      } else {
        EXPECT_EQ(choice.at("text"), "");
      }
    }
  }
}

TEST(Encoder, OpenAiChatTokensAreTheSerializersBytes) {
  Encoder enc(Api::openai_chat, true, "my \"model\"", false);
  int index = 0;
  for (const auto& text : awkward_texts()) {
    TokenEvent ev;
    ev.index = index++;
    ev.text = text;
    ev.thinking = index % 3 == 0 ? std::string_view(text) : std::string_view();
    std::string out;
    enc.token(ev, out);
    const json::value v = body_of(Api::openai_chat, out);
    const auto& o = v.as_object();
    EXPECT_EQ(o.at("object"), "chat.completion.chunk");
    EXPECT_EQ(o.at("model"), "my \"model\"");
    const auto& choice = o.at("choices").as_array().at(0).as_object();
    EXPECT_EQ(choice.at("index"), 0);
    EXPECT_TRUE(choice.at("finish_reason").is_null());
    const auto& delta = choice.at("delta").as_object();
    EXPECT_EQ(delta.at("content").as_string(), text);
    EXPECT_EQ(delta.contains("role"), ev.index == 0);
    EXPECT_EQ(delta.contains("reasoning_content"), !ev.thinking.empty());
  }
  // The role alone on the first token; nothing at all for an empty later one.
  TokenEvent first;
  std::string out;
  Encoder fresh(Api::openai_chat, true, "m", false);
  fresh.token(first, out);
  EXPECT_EQ(body_of(Api::openai_chat, out).at("choices").at(0).at("delta"),
            json::parse(R"({"role":"assistant"})"));
  TokenEvent empty;
  empty.index = 3;
  out.clear();
  fresh.token(empty, out);
  EXPECT_EQ(out, "");
}

TEST(Encoder, CompletionAndOllamaTokensAreTheSerializersBytes) {
  for (Api api : {Api::openai_completion, Api::ollama_chat, Api::ollama_generate}) {
    Encoder enc(api, true, "tiny", false);
    for (const auto& text : awkward_texts()) {
      TokenEvent ev;
      ev.index = 1;
      ev.text = text;
      ev.thinking = api == Api::ollama_chat ? "hm\n" : "";
      std::string out;
      enc.token(ev, out);
      const json::value v = body_of(api, out);
      const auto& o = v.as_object();
      if (api == Api::openai_completion) {
        EXPECT_EQ(o.at("choices").at(0).at("text").as_string(), text);
      } else if (api == Api::ollama_chat) {
        EXPECT_EQ(o.at("message").at("content").as_string(), text);
        EXPECT_EQ(o.at("message").at("thinking"), "hm\n");
        EXPECT_EQ(o.at("done"), false);
      } else {
        EXPECT_EQ(o.at("response").as_string(), text);
        EXPECT_FALSE(o.contains("thinking"));
        EXPECT_EQ(o.at("done"), false);
      }
    }
  }
}

TEST(Encoder, ToolCallDeltasNameTheCallOnce) {
  Encoder enc(Api::openai_chat, true, "tiny", false);
  chimera::ToolCall call;
  call.id = "call_1";
  call.name = "get_weather";
  for (int i = 0; i < 2; ++i) {
    TokenEvent ev;
    ev.index = i;
    ev.tool_call = &call;
    ev.tool_call_index = 0;
    ev.arguments_delta = i == 0 ? "{\"city\":" : "\"Paris\"}";
    std::string out;
    enc.token(ev, out);
    const json::value v = body_of(Api::openai_chat, out);
    const auto& tc = v.at("choices").at(0).at("delta").at("tool_calls").at(0).as_object();
    EXPECT_EQ(tc.at("function").at("arguments").as_string(), ev.arguments_delta);
    EXPECT_EQ(tc.contains("id"), i == 0);
    EXPECT_EQ(tc.at("function").as_object().contains("name"), i == 0);
  }
}

// With relayed events (serve --relay) the encoder writes them as they came: a token's, nothing
// for a later token of the same record (its events came with the first), and at the end the
// upstream's tail, its usage record only when the client asked for usage, and [DONE].
TEST(Encoder, RelayedEventsAreWrittenAsTheyCame) {
  for (const bool usage : {false, true}) {
    Encoder enc(Api::openai_chat, /*stream=*/true, "m", usage);
    std::string out;
    TokenEvent first;
    first.text = "Hi";
    first.relayed = "data: {\"role\"}\n\ndata: {\"a\":1}\n\n";
    enc.token(first, out);
    EXPECT_EQ(out, first.relayed);
    out.clear();
    TokenEvent same_record;  // a second token of the same record carries no events of its own
    same_record.text = "there";
    same_record.index = 1;
    enc.token(same_record, out);
    EXPECT_EQ(out, "");
    chimera::Completion c;
    c.relayed.on = true;
    c.relayed.tail = "data: {\"finish\"}\n\n";
    c.relayed.usage = "data: {\"usage\"}\n\n";
    enc.finish(c, out);
    EXPECT_EQ(out, std::string("data: {\"finish\"}\n\n") + (usage ? "data: {\"usage\"}\n\n" : "") +
                       "data: [DONE]\n\n");
  }
}

}  // namespace

namespace {

// The load reply a body gets, parsed (null when the body is not a load request).
json::value load_reply(Api api, std::string_view body) {
  chimera::serve::Parsed p;
  const std::string error = chimera::serve::parse_request(api, body, p);
  EXPECT_EQ(error, "") << body;
  const auto reply = chimera::serve::ollama_load_reply(api, p.request, "m");
  if (!reply) return nullptr;
  EXPECT_TRUE(reply->ends_with("\n")) << *reply;  // one NDJSON line
  return json::parse(*reply);
}

}  // namespace

TEST(OllamaLoad, AGenerateWithoutAPromptOrAChatWithoutMessagesLoadsTheModel) {
  // Ollama's way to load a model ahead of its first request (`ollama run` sends one).
  for (const char* body : {R"({"model":"m"})", R"({"model":"m","prompt":""})"}) {
    const auto v = load_reply(Api::ollama_generate, body);
    ASSERT_TRUE(v.is_object()) << body;
    EXPECT_EQ(v.at("model").as_string(), "m");
    EXPECT_EQ(v.at("response").as_string(), "");
    EXPECT_TRUE(v.at("done").as_bool());
    EXPECT_EQ(v.at("done_reason").as_string(), "load");
    EXPECT_TRUE(v.as_object().contains("created_at"));
  }
  for (const char* body :
       {R"({"model":"m"})", R"({"model":"m","messages":[]})", R"({"model":"m","messages":null})"}) {
    const auto v = load_reply(Api::ollama_chat, body);
    ASSERT_TRUE(v.is_object()) << body;
    EXPECT_EQ(v.at("message").at("role").as_string(), "assistant");
    EXPECT_EQ(v.at("message").at("content").as_string(), "");
    EXPECT_EQ(v.at("done_reason").as_string(), "load");
  }
}

TEST(OllamaLoad, KeepAliveZeroUnloadsAndAnyOtherLoads) {
  for (const char* k : {R"(0)", R"("0")", R"("0s")", R"("0m")", R"("00h")", R"("0.0s")"}) {
    const std::string body = std::string(R"({"model":"m","keep_alive":)") + k + "}";
    EXPECT_EQ(load_reply(Api::ollama_generate, body).at("done_reason").as_string(), "unload")
        << body;
    EXPECT_EQ(load_reply(Api::ollama_chat, body).at("done_reason").as_string(), "unload") << body;
  }
  for (const char* k :
       {R"(-1)", R"("10m")", R"("5m")", R"(300)", R"("-1")", R"("0.5h")", R"("1h0m")"}) {
    const std::string body = std::string(R"({"model":"m","keep_alive":)") + k + "}";
    EXPECT_EQ(load_reply(Api::ollama_generate, body).at("done_reason").as_string(), "load") << body;
  }
}

TEST(OllamaLoad, RequestsWithSomethingToAnswerAreNotLoads) {
  EXPECT_TRUE(load_reply(Api::ollama_generate, R"({"prompt":"Hi"})").is_null());
  EXPECT_TRUE(load_reply(Api::ollama_generate, R"({"system":"Be brief."})").is_null());
  EXPECT_TRUE(
      load_reply(Api::ollama_chat, R"({"messages":[{"role":"user","content":"Hi"}]})").is_null());
  // OpenAI's APIs have no such request: a chat without messages is a 400, naming them.
  chimera::serve::Parsed p;
  EXPECT_NE(chimera::serve::parse_request(Api::openai_chat, R"({"model":"m"})", p)
                .find("'messages' is missing"),
            std::string::npos);
  EXPECT_FALSE(chimera::serve::ollama_load_reply(Api::openai_completion, p.request, "m"));
}

TEST(OpenAiRequest, FieldsThatAskForNothingAreTakenAndTheRestNamed) {
  // Clients that fill in every field send the values that ask for nothing; those pass, any
  // other value of a field serve cannot honour is a 400 naming the field.
  const std::string head = R"({"messages":[{"role":"user","content":"Hi"}],)";
  for (const char* field : {R"("logprobs":false)", R"("logprobs":null)", R"("top_logprobs":0)",
                            R"("top_logprobs":null)", R"("n":1)", R"("echo":false)",
                            R"("presence_penalty":0)", R"("frequency_penalty":0.0)"}) {
    chimera::serve::Parsed p;
    EXPECT_EQ(chimera::serve::parse_request(Api::openai_chat, head + field + "}", p), "") << field;
  }
  for (const char* field : {R"("best_of":1)", R"("suffix":"")"}) {
    chimera::serve::Parsed p;
    EXPECT_EQ(chimera::serve::parse_request(Api::openai_completion,
                                            std::string(R"({"prompt":"Hi",)") + field + "}", p),
              "")
        << field;
  }
  for (const auto& [field, name] : std::vector<std::pair<std::string, std::string>>{
           {R"("logprobs":true)", "logprobs"},
           {R"("top_logprobs":2)", "top_logprobs"},
           {R"("n":2)", "'n'"},
           {R"("presence_penalty":0.5)", "presence_penalty"}}) {
    chimera::serve::Parsed p;
    const auto error = chimera::serve::parse_request(Api::openai_chat, head + field + "}", p);
    EXPECT_NE(error.find(name), std::string::npos) << field << ": " << error;
  }
  chimera::serve::Parsed p;
  EXPECT_NE(
      chimera::serve::parse_request(Api::openai_completion, R"({"prompt":"Hi","suffix":" end"})", p)
          .find("suffix"),
      std::string::npos);
}

TEST(OllamaRequest, OptionsThatChangeNothingPassAndTheRestAreNamed) {
  // Ollama's defaults, as clients that send a whole option set give them: nothing to change.
  const auto with = [](const std::string& options) {
    chimera::serve::Parsed p;
    return chimera::serve::parse_request(Api::ollama_generate,
                                         R"({"prompt":"Hi","options":{)" + options + "}}", p);
  };
  for (const char* o :
       {R"("mirostat":0)", R"("tfs_z":1)", R"("typical_p":1.0)", R"("presence_penalty":0)",
        R"("frequency_penalty":0)", R"("repeat_last_n":64)", R"("num_batch":512)",
        R"("use_mmap":true)", R"("use_mlock":false)", R"("low_vram":false)", R"("numa":false)",
        R"("main_gpu":0)", R"("f16_kv":true)", R"("mirostat":null)"}) {
    EXPECT_EQ(with(o), "") << o;
  }
  for (const auto& [o, name] : std::vector<std::pair<std::string, std::string>>{
           {R"("mirostat":2)", "options.mirostat"},
           {R"("tfs_z":0.9)", "options.tfs_z"},
           {R"("typical_p":0.5)", "options.typical_p"},
           {R"("presence_penalty":0.3)", "options.presence_penalty"},
           {R"("repeat_last_n":128)", "options.repeat_last_n"},
           {R"("num_keep":5)", "options.num_keep"}}) {
    const auto error = with(o);
    EXPECT_NE(error.find("'" + name + "' is not an option this server can pass on"),
              std::string::npos)
        << o << ": " << error;
  }
}

// StreamChunkScanner (src/backends/stream_chunk.hpp) reads the common streamed record without
// building its JSON tree; a record it declines is parsed whole. These tests feed the same
// records to the OpenAI-compatible and Ollama decoders with and without the scanner and require
// the same tokens, figures, warnings and errors, and check which records take which path.
#include "backends/stream_chunk.hpp"

#include "backends/ollama.hpp"
#include "backends/openai.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace chimera::backends {
namespace {

// Everything a decoder hands on, in order, as text that two runs can compare.
class RecordingEmitter final : public Emitter {
 public:
  bool token(std::string_view text, std::string_view thinking, const ToolCall* call) override {
    log += "token[" + std::string(text) + "|" + std::string(thinking) + "|" +
           (call ? call->name : "") + "]\n";
    take_relayed();
    return true;
  }
  bool tool_call(std::size_t index, std::string_view delta) override {
    log += "tool_call[" + std::to_string(index) + "|" + std::string(delta) + "]\n";
    take_relayed();
    return true;
  }
  Completion& completion() override { return c; }
  void server_sent(int64_t ns) override { log += "sent[" + std::to_string(ns) + "]\n"; }
  void relay(std::string_view events) override { pending_relayed = events; }

  // What Emitter::relay gave the tokens, in order (Request::relay).
  std::string relayed;
  std::string_view pending_relayed;
  void take_relayed() {
    relayed += pending_relayed;
    pending_relayed = {};
  }

  // Every figure a decoder may set, "-" when unset.
  template <typename T>
  static std::string opt(const std::optional<T>& v) {
    if (!v) return "-";
    std::ostringstream o;
    o.precision(17);
    o << *v;
    return o.str();
  }

  std::string summary() const {
    const Figures& f = c.figures;
    const ServerStats& s = c.server;
    std::string out = log;
    out += "model=" + c.model + " finish=" + std::to_string(static_cast<int>(c.finish)) + "/" +
           c.finish_raw + " error=" + c.error.message + "\n";
    out += "figures " + opt(f.tokens_out) + " " + opt(f.tokens_in) + " " +
           opt(f.prompt_tokens_cached) + " " + opt(f.ttft_server_ms) + " " +
           opt(f.decode_tps_server) + "\n";
    out += "server " + opt(s.slot_id) + " " + opt(s.prompt_ms) + " " + opt(s.predicted_ms) + " " +
           opt(s.predicted_per_second) + " " + opt(s.cache_n) + " " + opt(s.prompt_eval_count) +
           " " + opt(s.eval_count) + " " + opt(s.total_duration_ns) + " " +
           opt(s.load_duration_ns) + " " + opt(s.prompt_eval_duration_ns) + " " +
           opt(s.eval_duration_ns) + "\n";
    for (const auto& w : c.warnings) out += "warning: " + w + "\n";
    return out;
  }

  std::string log;
  Completion c;
};

// The decoder's output for one body, with the scanner or without it.
// `warm`: the decoder is asked to warm first (StreamDecoder::warm), as a request's is once it
// has been sent.
std::string decode(const std::string& body, bool ollama, bool chat, bool scan, bool warm = false) {
  auto d = ollama ? make_ollama_decoder(chat, /*stream=*/true, 1 << 20, "http://up", scan)
                  : make_openai_decoder(chat, /*stream=*/true, 1 << 20, "http://up", scan);
  if (warm) d->warm();
  RecordingEmitter e;
  if (d->on_bytes(body, e)) d->on_end(e);
  return e.summary();
}

std::string sse(const std::vector<std::string>& records) {
  std::string body;
  for (const auto& r : records) body += "data: " + r + "\n\n";
  return body;
}

// A relaying decoder (Request::relay) hands on the tokens, figures and errors that one that does
// not relay gives, and the events themselves: those of the tokens, then the tail, are the body's
// events in order, less [DONE] and the usage records, which come apart.
void expect_relayed(const std::vector<std::string>& records, bool chat) {
  const std::string body = sse(records) + "data: [DONE]\n\n";
  auto d = make_openai_decoder(chat, /*stream=*/true, 1 << 20, "http://up", true, /*relay=*/true);
  RecordingEmitter e;
  const bool read = d->on_bytes(body, e);
  if (read) d->on_end(e);
  const std::string plain = decode(body, false, chat, true);
  EXPECT_EQ(e.summary(), plain) << (chat ? "chat" : "completions") << " body:\n" << body;
  if (!read || e.c.error) return;  // what was relayed before an error is not all of the body
  EXPECT_TRUE(e.c.relayed.on);
  std::string kept;
  std::string usage;
  for (const auto& r : records) {
    // A record with no choices (usage, timings): "choices" absent, empty or not an array.
    const auto* choices = boost::json::parse(r).as_object().if_contains("choices");
    const bool usage_only =
        choices == nullptr || !choices->is_array() || choices->as_array().empty();
    (usage_only ? usage : kept) += "data: " + r + "\n\n";
  }
  EXPECT_EQ(e.relayed + e.c.relayed.tail, kept) << body;
  EXPECT_EQ(e.c.relayed.usage, usage) << body;
}

// An event whose data comes in several "data:" lines is relayed in as many: one line of data
// with the framer's '\n' inside would end the event early for the client's parser.
TEST(StreamChunk, AnEventOfSeveralDataLinesIsRelayedInAsMany) {
  auto d = make_openai_decoder(true, /*stream=*/true, 1 << 20, "http://up", true, /*relay=*/true);
  RecordingEmitter e;
  const std::string event = "data: {\"choices\":[{\"delta\":\ndata: {\"content\":\"x\"}}]}\n\n";
  ASSERT_TRUE(d->on_bytes(event, e));
  EXPECT_EQ(e.log, "sent[0]\ntoken[x||]\n");
  EXPECT_EQ(e.relayed, event);
}

// A relaying decoder keeps the events that bring no token until one comes; a server that sends
// them without end is stopped at twice the limit of one event, with an error naming it.
TEST(StreamChunk, EventsWithoutATokenAreNotKeptWithoutEnd) {
  auto d = make_openai_decoder(true, /*stream=*/true, /*max_record=*/1024, "http://up", true,
                               /*relay=*/true);
  RecordingEmitter e;
  const std::string empty = R"({"choices":[{"index":0,"delta":{},"finish_reason":null}]})";
  bool read = true;
  int sent = 0;
  for (; sent < 1000 && read; ++sent) read = d->on_bytes("data: " + empty + "\n\n", e);
  EXPECT_FALSE(read);
  EXPECT_LT(sent, 100);
  EXPECT_EQ(e.c.error.kind, ErrorKind::protocol);
  EXPECT_NE(e.c.error.message.find("exceed the limit of 2048 bytes kept for relaying"),
            std::string::npos)
      << e.c.error.message;
  // Without relaying the same events are read and dropped.
  auto plain = make_openai_decoder(true, /*stream=*/true, 1024, "http://up", true);
  RecordingEmitter p;
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(plain->on_bytes("data: " + empty + "\n\n", p));
}

void expect_same(const std::vector<std::string>& records) {
  const std::string body = sse(records) + "data: [DONE]\n\n";
  for (const bool chat : {true, false}) {
    EXPECT_EQ(decode(body, false, chat, true), decode(body, false, chat, false))
        << (chat ? "chat" : "completions") << " body:\n"
        << body;
    expect_relayed(records, chat);
  }
}

void expect_same_ollama(const std::vector<std::string>& records) {
  std::string body;
  for (const auto& r : records) body += r + "\n";
  for (const bool chat : {true, false}) {
    EXPECT_EQ(decode(body, true, chat, true), decode(body, true, chat, false))
        << (chat ? "chat" : "generate") << " body:\n"
        << body;
  }
}

// The canned record a decoder warms with is one it reads as a token, on both paths; and warming
// (which decodes it into nothing, once per process) leaves the decoder's own output unchanged.
TEST(StreamChunk, WarmingDecodesACannedTokenAndChangesNothing) {
  for (const bool ollama : {true, false}) {
    for (const bool chat : {true, false}) {
      for (const bool scan : {true, false}) {
        const std::string_view canned =
            ollama ? ollama_warm_record(chat) : openai_warm_record(chat);
        auto d = ollama ? make_ollama_decoder(chat, /*stream=*/true, 1 << 20, "http://up", scan)
                        : make_openai_decoder(chat, /*stream=*/true, 1 << 20, "http://up", scan);
        RecordingEmitter e;
        EXPECT_TRUE(d->on_bytes(canned, e));
        EXPECT_EQ(e.log, "sent[0]\ntoken[a||]\n") << canned;  // sent[0]: no send time
        EXPECT_EQ(e.c.error.message, "") << canned;
        EXPECT_TRUE(e.c.warnings.empty()) << canned;

        std::string body;
        if (ollama) {
          body = chat ? R"({"model":"m","message":{"role":"assistant","content":"x"},"done":false})"
                        "\n"
                        R"({"model":"m","message":{"content":""},"done":true,"eval_count":1})"
                        "\n"
                      : R"({"model":"m","response":"x","done":false})"
                        "\n"
                        R"({"model":"m","response":"","done":true,"eval_count":1})"
                        "\n";
        } else {
          body = chat ? sse({R"({"model":"m","choices":[{"delta":{"content":"x"}}]})",
                             R"({"choices":[{"delta":{},"finish_reason":"stop"}]})"})
                      : sse({R"({"model":"m","choices":[{"text":"x"}]})",
                             R"({"choices":[{"text":"","finish_reason":"stop"}]})"});
          body += "data: [DONE]\n\n";
        }
        const std::string warmed = decode(body, ollama, chat, scan, /*warm=*/true);
        EXPECT_EQ(warmed, decode(body, ollama, chat, scan)) << body;
        EXPECT_NE(warmed.find("token[x||]"), std::string::npos) << warmed;
      }
    }
  }
}

TEST(StreamChunk, TheCommonRecordIsReadWithoutTheTree) {
  StreamChunkScanner s(StreamProtocol::openai);
  ASSERT_TRUE(
      s.scan(R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
             R"("choices":[{"index":0,"delta":{"role":"assistant","content":"Hi \"there\"\n"},)"
             R"("finish_reason":null,"logprobs":{"content":[{"token":"x","top":[1,2]}]}}],)"
             R"("server_sent_ns":123,"system_fingerprint":"b1"})"));
  const auto& k = s.chunk();
  EXPECT_TRUE(k.has_model);
  EXPECT_EQ(k.model, "m");
  EXPECT_TRUE(k.has_choice);
  EXPECT_TRUE(k.has_delta);
  EXPECT_TRUE(k.has_content);
  EXPECT_EQ(k.content, "Hi \"there\"\n");
  EXPECT_FALSE(k.has_finish);
  EXPECT_EQ(k.server_sent_ns.as_int64(), 123);

  // Buffers are reused: a shorter record leaves nothing of the longer one.
  ASSERT_TRUE(s.scan(R"({"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]})"));
  EXPECT_FALSE(s.chunk().has_model);
  EXPECT_EQ(s.chunk().content, "a");
  EXPECT_EQ(s.chunk().finish, "stop");
  EXPECT_TRUE(s.chunk().server_sent_ns.is_null());
}

TEST(StreamChunk, TheCommonOllamaRecordIsReadWithoutTheTree) {
  StreamChunkScanner s(StreamProtocol::ollama);
  ASSERT_TRUE(s.scan(R"({"model":"llama3.2:1b","created_at":"2026-01-01T00:00:00Z",)"
                     R"("message":{"role":"assistant","content":"Hi\u00e9","thinking":"hm"},)"
                     R"("done":false,"server_sent_ns":5})"));
  EXPECT_TRUE(s.chunk().has_message);
  EXPECT_EQ(s.chunk().message_content, "Hi\xc3\xa9");
  EXPECT_EQ(s.chunk().message_thinking, "hm");
  EXPECT_EQ(s.chunk().model, "llama3.2:1b");
  EXPECT_FALSE(s.chunk().done);
  // The final record too: its statistics are read as the tree would hold them.
  ASSERT_TRUE(s.scan(R"({"model":"m","done":true,"done_reason":"length","eval_count":3,)"
                     R"("eval_duration":1.5e9,"load_duration":null})"));
  EXPECT_TRUE(s.chunk().done);
  EXPECT_EQ(s.chunk().done_reason, "length");
  EXPECT_EQ(s.chunk().eval_count.as_int64(), 3);
  EXPECT_EQ(s.chunk().eval_duration.as_double(), 1.5e9);
  EXPECT_TRUE(s.chunk().load_duration.is_null());
  EXPECT_TRUE(s.chunk().total_duration.is_null());
  ASSERT_TRUE(s.scan(R"({"model":"m","done":false})"));  // nothing of the last one is left
  EXPECT_FALSE(s.chunk().done);
  EXPECT_FALSE(s.chunk().has_done_reason);
  EXPECT_TRUE(s.chunk().eval_count.is_null());
  for (const char* r : {
           R"({"model":"m","done":true,"eval_count":3,"eval_count":4})",
           R"({"done":true,"eval_count":"3"})",
           R"({"done":true,"total_duration":{"ns":1}})",
           R"({"error":"model not found"})",
           R"({"message":{"content":"","tool_calls":[{"function":{"name":"f"}}]},"done":false})",
           R"({"done":"false"})",
       }) {
    EXPECT_FALSE(s.scan(r)) << r;
  }
}

TEST(StreamChunk, RecordsThatNeedTheWholeTreeAreDeclined) {
  StreamChunkScanner s(StreamProtocol::openai);
  for (const char* r : {
           R"({"choices":[],"usage":{"completion_tokens":"3"}})",
           R"({"choices":[],"usage":[]})",
           R"({"choices":[{"delta":{},"finish_reason":"stop"}],"timings":{"prompt_n":{}}})",
           R"({"error":{"message":"boom"}})",
           R"({"choices":[{"delta":{"tool_calls":[{"index":0}]}}]})",
           R"({"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]})",
           R"({"choices":[{"delta":{"content":"a","content":"b"}}]})",
           R"({"model":"a","model":"b","choices":[]})",
           R"({"choices":{"delta":{}}})",
           R"({"choices":[1]})",
           R"({"choices":[{"index":"0"}]})",
           R"({"choices":[{"delta":[]}]})",
           R"({"server_sent_ns":"12"})",
           R"({"id_slot":{"n":1}})",
           R"([1,2])",
           R"("text")",
           R"({"choices":[{"delta":{"content":"a"}}]} x)",
           R"({"choices":[{"delta":{"content":"a"}})",
           R"({"choices":[{"delta":{"content":"a\x"}}]})",
           "{\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}",
       }) {
    EXPECT_FALSE(s.scan(r)) << r;
  }
}

TEST(StreamChunk, BothPathsGiveTheSameTokensFiguresAndErrors) {
  // llama-server's and the synthetic server's records, as they come.
  expect_same({
      R"({"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1,"id":"c","model":"tiny","system_fingerprint":"b1","object":"chat.completion.chunk"})",
      R"({"choices":[{"finish_reason":null,"index":0,"delta":{"content":" once"}}],"created":1,"id":"c","model":"tiny","object":"chat.completion.chunk"})",
      R"({"choices":[{"finish_reason":"length","index":0,"delta":{}}],"created":1,"id":"c","model":"tiny","object":"chat.completion.chunk","usage":{"completion_tokens":2,"prompt_tokens":5,"total_tokens":7},"timings":{"prompt_n":5,"prompt_ms":1.5,"predicted_n":2,"predicted_ms":2.0,"predicted_per_second":1000.0,"cache_n":0}})",
  });
  expect_same({
      R"({"model":"synth","choices":[{"index":0,"delta":{"content":"tok1 "},"finish_reason":null}],"server_sent_ns":1667558881081,"scheduled_ns":1})",
      R"({"model":"synth","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"timings":{"prompt_n":1},"server_sent_ns":1667564100243})",
  });
  // Completions records, reasoning, escapes and odd but valid values.
  expect_same(
      {R"({"choices":[{"text":"Once","index":0,"finish_reason":null}]})",
       R"({"choices":[{"text":" upon \u00e9\ud83d\ude00 \\ \/","finish_reason":"stop"}]})"});
  expect_same(
      {R"({"choices":[{"delta":{"reasoning_content":"think","content":""}}]})",
       R"({"choices":[{"delta":{"reasoning":"more","reasoning_content":"x"}}]})",
       R"({"choices":[{"delta":{"reasoning":null,"content":"done"},"text":"not used"}]})",
       R"({"choices":[{"text":"only text","delta":null}]})",
       R"({"choices":[{"delta":{"content":7},"finish_reason":7}]})",
       R"({"choices":[{"index":1,"delta":{"content":"other choice"}}]})",
       R"({"choices":[{"index":0.0,"delta":{"content":"index 0.0"}}]})",
       R"({"choices":[{"index":1e999,"delta":{"content":"huge index"}}]})",
       R"({"choices":[{"index":null,"delta":{"content":"null index"}}]})",
       R"({"choices":[{"index":true,"delta":{"content":"bool index"}}]})",
       R"({"model":"","choices":[],"server_sent_ns":-5})",
       R"({"model":7,"choices":[],"server_sent_ns":18446744073709551615})",
       R"({"server_sent_ns":1.5,"id_slot":3})",
       R"({"id_slot":-1})",
       R"({"id_slot":2.5})",
       R"({"id_slot":true})",
       R"({"id_slot":null,"server_sent_ns":null})",
       R"({"nested":{"error":{"usage":[{"choices":[1,{"a":[[[]]]}]}]}},"choices":[]})",
       R"({"choices":[{"delta":{"content":"x","extra":{"tool_calls":[]}}}]})",
       R"({"choices":[{"delta":{"content":"long \\n )" + std::string(5000, 'z') + R"("}}]})",
       R"({ "choices" : [ { "delta" : { "content" : "spaced" } } ] } )",
       R"({"choices":[{"delta":{"content":"stop"},"finish_reason":"tool_calls"}]})"});
  // Usage and timings, with values a server should not send.
  expect_same(
      {R"({"choices":[],"usage":{"completion_tokens":5,"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}})",
       R"({"choices":[],"usage":null,"timings":null})",
       R"({"choices":[],"usage":{"completion_tokens":-1,"prompt_tokens":1e300,"prompt_tokens_details":null}})",
       R"({"choices":[],"usage":{"completion_tokens":null,"prompt_tokens_details":{"cached_tokens":true,"x":[1]}}})",
       R"({"timings":{"prompt_ms":-1,"predicted_ms":1e300,"predicted_per_second":12.5,"cache_n":3,"prompt_n":null,"predicted_n":9,"extra":{"a":1}}})",
       R"({"timings":{"prompt_ms":0.25},"usage":{"completion_tokens":7},"id_slot":1})",
       R"({"timings":{},"usage":{}})", R"({"usage":{"completion_tokens":1,"completion_tokens":2}})",
       R"({"timings":{"cache_n":false,"prompt_n":18446744073709551615}})"});
  // Records the scanner declines, among the others.
  expect_same(
      {R"({"choices":[{"delta":{"content":"a"}}]})",
       R"({"choices":[{"delta":{"content":"b"}},{"delta":{"content":"c"}}]})",
       R"({"choices":[{"delta":{"tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":"{}"}}]}}]})",
       R"({"usage":{"completion_tokens":"many"},"choices":[]})"});
  expect_same({R"({"choices":[{"delta":{"content":"a"}}]})", R"({"error":"mid-stream"})"});
  expect_same({R"({"choices":[{"delta":{"content":"a"}}]})", R"([1])"});
  expect_same({R"({"choices":[{"delta":{"content":"a"}}]})", R"({"choices":[{"delta":)"});
  expect_same({R"({"choices":[{"delta":{"content":"a"}}]})", "{\"choices\":\"\xff\"}"});
}

// Numbers at the edges of int64, whitespace of every kind, odd literals and malformed records:
// the scanner reads each as the tree does.
TEST(StreamChunk, RecordsAtTheEdgesOfJsonReadAsTheTreeReadsThem) {
  StreamChunkScanner s(StreamProtocol::openai);
  ASSERT_TRUE(s.scan("{\n\"model\" :\t\"m\",\r\n\"choices\":[ ]\n}\n"));
  EXPECT_EQ(s.chunk().model, "m");
  ASSERT_TRUE(
      s.scan(R"({"choices":[{"delta":{"content":"n"}}],"server_sent_ns":123456789012345678})"));
  EXPECT_EQ(s.chunk().server_sent_ns.as_int64(), 123456789012345678);
  ASSERT_TRUE(s.scan(R"({"choices":[],"server_sent_ns":1234567890123456789})"));
  EXPECT_EQ(s.chunk().server_sent_ns.as_int64(), 1234567890123456789);
  ASSERT_TRUE(s.scan(R"({"choices":[],"server_sent_ns":-0})"));
  EXPECT_EQ(s.chunk().server_sent_ns.as_int64(), 0);

  const std::string good = R"({"choices":[{"delta":{"content":"a"}}]})";
  expect_same({
      R"({"choices":[{"index":0,"delta":{"content":"n"}}],"server_sent_ns":123456789012345678})",
      R"({"choices":[],"server_sent_ns":1234567890123456789})",
      R"({"choices":[],"server_sent_ns":12345678901234567890})",
      R"({"choices":[],"server_sent_ns":-123456789012345678})",
      R"({"choices":[],"server_sent_ns":-0,"id_slot":0})",
      R"({"choices":[],"id_slot":-7,"server_sent_ns":10})",
      "{\t\"choices\" :\t[ ] , \"model\":\"m\"\t}",
      "{\"choices\":[{\"delta\":{\"content\":\"del \x7f\"}}]}",
      R"({"choices":[],"":{},"x":[],"y":[[],{}]})",
      R"({"choices":[{"delta":{"content":"a"}}],"extra":[true,false,null,{},[],-1,0,"s"]})",
  });
  // Malformed records, each after a good one: the tree's own error ends the stream.
  std::string deep = R"({"x":)" + std::string(40, '[') + std::string(40, ']') + R"(,"choices":[]})";
  for (const std::string& bad : std::vector<std::string>{
           R"({"choices":[],"id_slot":01})", R"({"choices":[],"x":truex})",
           R"({"choices":[],"x":nul})", R"({"choices":[,]})", R"({"choices":[],})",
           R"({"choices" []})", "{\"choices\":[\"a\tb\"]}", R"({"choices":[],"x":-})",
           R"({"choices":[],"x":1.})", R"({"choices":[],"x":2e})", R"({"choices":[]}})", deep,
           R"({"choices":[],"x":"open)", R"({"choices":[],"x":tru)", "{\"choices\":[]"}) {
    expect_same({good, bad});
  }
}

TEST(StreamChunk, BothOllamaPathsGiveTheSameTokensFiguresAndErrors) {
  // Ollama's records and the synthetic server's, as they come.
  expect_same_ollama({
      R"({"model":"llama3.2:1b","created_at":"2026-01-01T00:00:00.1Z","message":{"role":"assistant","content":"Once"},"done":false})",
      R"({"model":"llama3.2:1b","created_at":"2026-01-01T00:00:00.2Z","message":{"role":"assistant","content":" upon","thinking":"x"},"done":false,"server_sent_ns":77})",
      R"({"model":"llama3.2:1b","created_at":"2026-01-01T00:00:00.3Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","total_duration":5000,"load_duration":10,"prompt_eval_count":3,"prompt_eval_duration":20,"eval_count":2,"eval_duration":4000})",
  });
  expect_same_ollama({
      R"({"model":"m","response":"Once","done":false})",
      R"({"model":"m","response":" upon","thinking":"t","message":{"content":"chat only"},"done":false})",
      R"({"model":"m","response":"","done":true,"done_reason":"stop","eval_count":1e999})",
  });
  // Odd but valid values, nesting, escapes, and records the scanner declines among the others.
  expect_same_ollama({
      R"({"model":"first","done":false})",
      R"({"model":7,"message":null,"response":null,"done":null,"server_sent_ns":-3})",
      R"({"model":"","message":{"content":7,"thinking":"\ud83d\ude00"},"response":"r","done":0})",
      R"({"message":{"content":"a","extra":{"tool_calls":[1]}},"other":[{"error":1}],"done":false})",
      R"({"server_sent_ns":1.5,"message":{"content":"b"},"thinking":"top"})",
      R"({"message":{"content":"c","content":"d"}})",
      R"({"message":{"content":"e","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]}})",
      R"({"message":[],"response":{"x":1}})",
      R"({"message":{"content":"f"},"done":false,"error":"mid-stream"})",
  });
  // Final records with odd statistics: each path warns, or leaves a figure out, alike.
  expect_same_ollama({
      R"({"message":{"content":"a"},"done":false})",
      R"({"message":{"content":"b"},"done":true,"done_reason":7,"total_duration":-1,"load_duration":true,"prompt_eval_count":2.5,"prompt_eval_duration":null,"eval_count":18446744073709551615,"eval_duration":0})",
  });
  expect_same_ollama({
      R"({"message":{"content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false})",
      R"({"message":{"content":""},"done":true,"done_reason":"stop","eval_count":1,"eval_duration":5})",
  });
  expect_same_ollama({R"({"response":"x","done":true,"done_reason":"length","eval_count":"1"})"});
  expect_same_ollama({R"({"done":true,"eval_count":2,"eval_count":3,"message":{"content":"z"}})"});
  expect_same_ollama({R"({"message":{"content":"a"},"done":false})", R"([1])"});
  expect_same_ollama({R"({"message":{"content":"a"},"done":false})", R"({"message":)"});
}

}  // namespace
}  // namespace chimera::backends

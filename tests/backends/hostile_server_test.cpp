// A hostile or broken server, and absurd requests: every case ends with a clear error or the
// right behaviour, never a wrong figure, a hang or a header of the server's choosing. Driven by
// the fixture server (support/fixture_server.hpp): no real server sends these on demand.
#include "support/fixture_server.hpp"
#include "support/test_support.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/metrics/figures.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

namespace json = boost::json;
using chimera::BackendKind;
using chimera::Completion;
using chimera::ErrorKind;
using chimera::Request;
using chimera::test::Ending;
using chimera::test::FixtureServer;
using chimera::test::Framing;
using chimera::test::Piece;
using chimera::test::Script;

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

chimera::EndpointConfig config(const std::string& url, BackendKind kind) {
  chimera::EndpointConfig c;
  c.url = url;
  c.kind = kind;
  c.timeouts.connect_ms = 1'000;
  c.timeouts.first_token_ms = 3'000;
  c.timeouts.idle_ms = 3'000;
  c.timeouts.total_ms = 8'000;
  c.timeouts.check_ms = 2'000;
  return c;
}

Request chat(BackendKind kind) {
  Request r;
  r.model = kind == BackendKind::ollama ? "llama3.2" : "tiny";
  r.messages = {{.role = "user", .content = "Say hello."}};
  return r;
}

const char* path_of(BackendKind kind) {
  return kind == BackendKind::ollama ? "/api/chat" : "/v1/chat/completions";
}

std::string ollama_record(std::string_view content) {
  return json::serialize(
      json::object{{"model", "llama3.2"},
                   {"message", json::object{{"role", "assistant"}, {"content", content}}},
                   {"done", false}});
}

std::string ollama_final(std::string_view stats = R"("eval_count":3,"eval_duration":30000000)") {
  return std::string(R"({"model":"llama3.2","message":{"role":"assistant","content":""},)") +
         R"("done_reason":"stop","done":true,)" + std::string(stats) + "}";
}

std::string sse_chunk(std::string_view content, std::string_view finish = {}) {
  json::object choice{
      {"index", 0},
      {"delta", json::object{{"content", content}}},
      {"finish_reason", finish.empty() ? json::value(nullptr) : json::value(finish)}};
  return "data: " +
         json::serialize(json::object{{"model", "tiny"}, {"choices", json::array{choice}}}) +
         "\n\n";
}

// A whole stream of three tokens in the protocol, one record (event) per piece.
Script stream(BackendKind kind) {
  if (kind == BackendKind::ollama) {
    return Script::ndjson({ollama_record("one") + "\n", ollama_record(" two") + "\n",
                           ollama_record(" three") + "\n", ollama_final() + "\n"});
  }
  return Script::sse({sse_chunk("one"), sse_chunk(" two"), sse_chunk(" three"),
                      sse_chunk("", "stop"), "data: [DONE]\n\n"});
}

class Hostile : public ::testing::TestWithParam<BackendKind> {
 protected:
  BackendKind kind() const { return GetParam(); }
  std::unique_ptr<chimera::Backend> backend(chimera::EndpointConfig cfg) {
    return chimera::make_backend(cfg, rt);
  }
  std::unique_ptr<chimera::Backend> backend() { return backend(config(srv.url(), kind())); }
  void route(Script s) { srv.route("POST", path_of(kind()), std::move(s)); }

  FixtureServer srv;
  chimera::Runtime rt;
};

std::string kind_name(const ::testing::TestParamInfo<BackendKind>& info) {
  return chimera::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(BothProtocols, Hostile,
                         ::testing::Values(BackendKind::ollama, BackendKind::openai), kind_name);

// ---- defect 1: the URL decides no header
// ---------------------------------------------------------

TEST_P(Hostile, AnInjectingUrlIsRefusedBeforeAnyConnection) {
  const std::string url = srv.url() + "/x%20HTTP/1.1%0d%0aX-Injected:%20yes%0d%0aFoo:%20bar";
  try {
    backend(config(url, kind()));
    ADD_FAILURE() << "accepted " << url;
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "control character")) << e.what();
  }
  EXPECT_EQ(srv.connections(), 0);
}

TEST_P(Hostile, APathPrefixIsSentEncodedAsWritten) {
  srv.route("POST", std::string("/a%20b") + path_of(kind()), stream(kind()));
  auto b = backend(config(srv.url() + "/a%20b/", kind()));
  const Completion c = b->generate(chat(kind()));
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "one two three");
  ASSERT_EQ(srv.requests().size(), 1u);
  EXPECT_EQ(srv.requests()[0].target, std::string("/a%20b") + path_of(kind()));
  EXPECT_EQ(srv.requests()[0].header("x-injected"), "");
}

// ---- defect 7: credentials kept for the request, never shown
// ---------------------------------------

TEST_P(Hostile, UrlCredentialsAreSentAsBasicAuthAndRedactedEverywhere) {
  route(stream(kind()));
  const std::string url = "http://user:s3cret@127.0.0.1:" + std::to_string(srv.port());
  auto b = backend(config(url, kind()));
  const Completion c = b->generate(chat(kind()));
  ASSERT_TRUE(c.ok()) << c.error.message;
  ASSERT_EQ(srv.requests().size(), 1u);
  EXPECT_EQ(srv.requests()[0].header("authorization"), "Basic dXNlcjpzM2NyZXQ=");
  EXPECT_EQ(c.endpoint, "http://user:***@127.0.0.1:" + std::to_string(srv.port()));
  EXPECT_EQ(b->endpoint(), c.endpoint);

  // A failure names the endpoint without its password.
  const std::string dead =
      "http://user:s3cret@127.0.0.1:" + std::to_string(chimera::free_loopback_port());
  const Completion f = backend(config(dead, kind()))->generate(chat(kind()));
  ASSERT_FALSE(f.ok());
  EXPECT_FALSE(contains(f.error.message, "s3cret")) << f.error.message;
  EXPECT_TRUE(contains(f.error.message, "user:***@")) << f.error.message;
  EXPECT_FALSE(contains(f.endpoint, "s3cret"));
}

// ---- defect 7: protocol corners
// ----------------------------------------------------------------------

TEST_P(Hostile, InterimResponsesBeforeTheAnswerAreSkipped) {
  Script s = stream(kind());
  s.interim = {"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"};
  route(s);
  auto b = backend();
  const Completion c = b->generate(chat(kind()));
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "one two three");
  // The connection stays usable for the next request.
  route(stream(kind()));
  EXPECT_TRUE(b->generate(chat(kind())).ok());
  EXPECT_EQ(srv.connections(), 1);
}

TEST_P(Hostile, SwitchingProtocolsUnaskedIsAProtocolError) {
  Script s = stream(kind());
  s.status = 101;
  s.reason = "Switching Protocols";
  route(s);
  const Completion c = backend()->generate(chat(kind()));
  EXPECT_EQ(c.error.kind, ErrorKind::protocol) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, "101")) << c.error.message;
}

TEST_P(Hostile, ABodyCutShortAfterTheFinalRecordLosesNothing) {
  // The same on both protocols: after Ollama's "done": true, as after [DONE], only the end of
  // the chunked body is missing.
  Script s = stream(kind());
  s.ending = Ending::abort;
  s.stop_after = s.pieces.size();  // every record, then no terminating chunk
  route(s);
  const Completion c = backend()->generate(chat(kind()));
  EXPECT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, "one two three");
}

TEST_P(Hostile, AnHtmlPageIsNamedAsSuch) {
  Script s = Script::text(200, "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>");
  s.headers = {{"Content-Type", "text/html"}};
  route(s);
  const Completion c = backend()->generate(chat(kind()));
  EXPECT_EQ(c.error.kind, ErrorKind::protocol) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, "HTML page")) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, srv.url())) << c.error.message;
}

TEST_P(Hostile, ACompressedBodyIsNamedAsSuch) {
  Script s = stream(kind());
  s.headers = {{"Content-Encoding", "gzip"}};
  route(s);
  const Completion c = backend()->generate(chat(kind()));
  EXPECT_EQ(c.error.kind, ErrorKind::protocol) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, "Content-Encoding: gzip")) << c.error.message;
}

TEST_P(Hostile, InvalidUtf8IsNamedWithItsOffset) {
  const std::string bad =
      kind() == BackendKind::ollama
          ? std::string("{\"message\":{\"content\":\"a\xff\"},\"done\":false}\n")
          : std::string("data: {\"choices\":[{\"delta\":{\"content\":\"a\xff\"}}]}\n\n");
  route(kind() == BackendKind::ollama ? Script::ndjson({bad}) : Script::sse({bad}));
  const Completion c = backend()->generate(chat(kind()));
  EXPECT_EQ(c.error.kind, ErrorKind::protocol) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, "invalid UTF-8 at byte")) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, "\\xff")) << c.error.message;
  EXPECT_FALSE(contains(c.error.message, "\xff")) << "the raw byte reached the message";
}

TEST_P(Hostile, ATrickleAfterTheFirstTokenFailsTheMinimumRate) {
  // One token, then a byte every 40 ms that never completes a record: the idle timeout never
  // runs out (bytes keep coming), the minimum rate does.
  const std::string first =
      kind() == BackendKind::ollama ? ollama_record("hi") + "\n" : sse_chunk("hi");
  std::vector<Piece> pieces{{first, 0}};
  for (int i = 0; i < 200; ++i) pieces.push_back({" ", 40});
  Script s = kind() == BackendKind::ollama ? Script::ndjson({}) : Script::sse({});
  s.pieces = pieces;
  route(s);
  auto cfg = config(srv.url(), kind());
  cfg.timeouts.min_rate_bytes_per_s = 100;  // the trickle brings 25 bytes/s
  cfg.timeouts.min_rate_window_ms = 500;
  const Completion c = backend(cfg)->generate(chat(kind()));
  // The minimum rate ended it, not the total timeout (8 s): the message names the rule.
  EXPECT_EQ(c.error.kind, ErrorKind::timeout) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, "minimum rate")) << c.error.message;
  // The reason is made when the deadline passes, with the window's own figures.
  EXPECT_TRUE(contains(c.error.message, "bytes in 500 ms, fewer than 100 bytes/s"))
      << c.error.message;
  EXPECT_EQ(c.text, "hi");
}

TEST_P(Hostile, AStreamAboveTheMinimumRateIsUntouched) {
  Script s = stream(kind());
  s.with_delay(150);  // records of 60-200 bytes every 150 ms: far above 16 bytes/s
  route(s);
  auto cfg = config(srv.url(), kind());
  cfg.timeouts.min_rate_window_ms = 200;
  const Completion c = backend(cfg)->generate(chat(kind()));
  EXPECT_TRUE(c.ok()) << c.error.message;
}

// ---- defect 4: figures the server reports
// ------------------------------------------------------------

// The completion as `generate --json` prints it must stay JSON, whatever the server said.
void expect_valid_json(const Completion& c) {
  const std::string text = chimera::metrics::completion_json(c, "test");
  boost::system::error_code ec;
  json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  EXPECT_FALSE(contains(text, "Infinity")) << text;
  EXPECT_FALSE(contains(text, "NaN")) << text;
}

class HostileOne : public ::testing::Test {
 protected:
  FixtureServer srv;
  chimera::Runtime rt;
};

TEST_F(HostileOne, OllamaFiguresThatAreNotCountsAreLeftOutWithAWarning) {
  srv.route("POST", "/api/chat",
            Script::ndjson({ollama_record("hi") + "\n",
                            ollama_final(R"("eval_count":1e999,"eval_duration":-5,)"
                                         R"("prompt_eval_count":1.5,"load_duration":1e300,)"
                                         R"("prompt_eval_duration":18446744073709551615)") +
                                "\n"}));
  auto b = chimera::make_backend(config(srv.url(), BackendKind::ollama), rt);
  const Completion c = b->generate(chat(BackendKind::ollama));
  ASSERT_TRUE(c.ok()) << c.error.message;  // the text is fine; only the figures are not
  EXPECT_FALSE(c.figures.tokens_out.has_value());
  EXPECT_FALSE(c.figures.tokens_in.has_value());
  EXPECT_FALSE(c.figures.decode_tps_server.has_value());
  EXPECT_FALSE(c.server.eval_count.has_value());
  EXPECT_FALSE(c.server.eval_duration_ns.has_value());
  std::string all;
  for (const auto& w : c.warnings) all += w + "\n";
  for (const char* key : {"eval_count", "eval_duration", "prompt_eval_count", "load_duration",
                          "prompt_eval_duration"}) {
    EXPECT_TRUE(contains(all, key)) << key << " not in:\n" << all;
  }
  expect_valid_json(c);
}

TEST_F(HostileOne, OpenAIFiguresThatAreNotFiniteAreLeftOutWithAWarning) {
  const std::string last =
      R"(data: {"model":"tiny","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],)"
      R"("usage":{"completion_tokens":-3,"prompt_tokens":1e999},)"
      R"("timings":{"predicted_per_second":-1e999,"prompt_ms":1e999,"predicted_ms":-1,)"
      R"("predicted_n":18446744073709551615,"cache_n":-2}})"
      "\n\n";
  srv.route("POST", "/v1/chat/completions",
            Script::sse({sse_chunk("hi"), last, "data: [DONE]\n\n"}));
  auto b = chimera::make_backend(config(srv.url(), BackendKind::openai), rt);
  const Completion c = b->generate(chat(BackendKind::openai));
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_FALSE(c.figures.decode_tps_server.has_value());
  EXPECT_FALSE(c.figures.ttft_server_ms.has_value());
  EXPECT_FALSE(c.figures.tokens_out.has_value());
  EXPECT_FALSE(c.figures.prompt_tokens_cached.has_value());
  EXPECT_GE(c.warnings.size(), 5u);
  expect_valid_json(c);
}

TEST_F(HostileOne, AToolCallIndexIsBoundedBeforeItSizesAnything) {
  const std::string call =
      R"(data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1000000000000,)"
      R"("function":{"name":"f","arguments":"{}"}}]}}]})"
      "\n\n";
  srv.route("POST", "/v1/chat/completions", Script::sse({call, "data: [DONE]\n\n"}));
  auto b = chimera::make_backend(config(srv.url(), BackendKind::openai), rt);
  const Completion c = b->generate(chat(BackendKind::openai));
  EXPECT_EQ(c.error.kind, ErrorKind::protocol) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, "1000000000000")) << c.error.message;
}

// ---- defect 8: options out of range never reach a server
// ---------------------------------------------

TEST_P(Hostile, OptionsOutOfRangeAreBadRequestsWithoutAConnection) {
  auto b = backend();
  struct Case {
    const char* name;
    void (*set)(chimera::Options&);
  };
  const Case cases[] = {
      {"temperature", [](chimera::Options& o) { o.temperature = std::nan(""); }},
      {"temperature",
       [](chimera::Options& o) { o.temperature = std::numeric_limits<double>::infinity(); }},
      {"top_k", [](chimera::Options& o) { o.top_k = -5; }},
      {"top_p", [](chimera::Options& o) { o.top_p = 7.5; }},
      {"min_p", [](chimera::Options& o) { o.min_p = -0.1; }},
      {"repeat_penalty", [](chimera::Options& o) { o.repeat_penalty = std::nan(""); }},
      {"num_predict", [](chimera::Options& o) { o.num_predict = -5; }},
      {"num_predict", [](chimera::Options& o) { o.num_predict = 1 << 30; }},
      {"num_ctx", [](chimera::Options& o) { o.num_ctx = 1 << 30; }},
      {"num_thread", [](chimera::Options& o) { o.num_thread = -1; }},
  };
  for (const auto& k : cases) {
    Request r = chat(kind());
    k.set(r.options);
    const Completion c = b->generate(r);
    EXPECT_EQ(c.error.kind, ErrorKind::bad_request) << k.name << ": " << c.error.message;
    EXPECT_TRUE(contains(c.error.message, k.name)) << c.error.message;
  }
  EXPECT_EQ(srv.connections(), 0);
}

TEST_P(Hostile, TimeoutsOutOfRangeAreRefusedWhenTheBackendIsMade) {
  auto cfg = config(srv.url(), kind());
  cfg.timeouts.total_ms = std::numeric_limits<int64_t>::max();
  EXPECT_THROW(backend(cfg), std::invalid_argument);
  cfg = config(srv.url(), kind());
  cfg.timeouts.idle_ms = -1;
  EXPECT_THROW(backend(cfg), std::invalid_argument);
  cfg = config(srv.url(), kind());
  cfg.api_key = "key\r\nX-Injected: yes";
  EXPECT_THROW(backend(cfg), std::invalid_argument);
}

// ---- defect 7: `endpoints check` wants the API, not any 200
// --------------------------------------------

TEST_F(HostileOne, AWebServerIsNotAnOpenAIEndpoint) {
  Script page = Script::text(200, "<html><body>Welcome to nginx!</body></html>");
  page.headers = {{"Content-Type", "text/html"}};
  srv.route("GET", "/health", page);
  srv.route("GET", "/v1/models", page);
  const auto info = chimera::make_backend(config(srv.url(), BackendKind::openai), rt)->check();
  EXPECT_FALSE(info.healthy) << info.detail;
  EXPECT_TRUE(contains(info.detail, "HTML page")) << info.detail;
  EXPECT_TRUE(contains(info.detail, "/v1/models")) << info.detail;
}

TEST_F(HostileOne, AWebServerIsNotAnOllamaEndpoint) {
  Script page = Script::text(200, "<html><body>It works!</body></html>");
  page.headers = {{"Content-Type", "text/html"}};
  srv.route("GET", "/api/version", page);
  const auto info = chimera::make_backend(config(srv.url(), BackendKind::ollama), rt)->check();
  EXPECT_FALSE(info.healthy) << info.detail;
  EXPECT_TRUE(contains(info.detail, "HTML page")) << info.detail;
}

TEST_F(HostileOne, AnyJsonIsNotAModelListEither) {
  srv.route("GET", "/health", Script::json(200, R"({"status":"ok"})"));
  srv.route("GET", "/v1/models", Script::json(200, R"({"models":"none"})"));
  const auto info = chimera::make_backend(config(srv.url(), BackendKind::openai), rt)->check();
  EXPECT_FALSE(info.healthy) << info.detail;
  srv.route("GET", "/v1/models", Script::json(200, R"({"object":"list","data":[{"id":"m"}]})"));
  const auto ok = chimera::make_backend(config(srv.url(), BackendKind::openai), rt)->check();
  EXPECT_TRUE(ok.healthy) << ok.detail;
  EXPECT_EQ(ok.models, std::vector<std::string>{"m"});
}

TEST_F(HostileOne, TheCheckTimeoutBoundsEveryRequestOfACheck) {
  Script silent;
  silent.ending = Ending::no_response;
  srv.route("GET", "/health", silent);
  auto cfg = config(srv.url(), BackendKind::openai);
  cfg.timeouts.check_ms = 300;
  const auto t0 = std::chrono::steady_clock::now();
  const auto info = chimera::make_backend(cfg, rt)->check();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_FALSE(info.healthy);
  EXPECT_TRUE(contains(info.detail, "timeout")) << info.detail;
  // Which timeout ran out: 300 ms, not the default 5,000 ms (a generous margin for a loaded
  // machine).
  EXPECT_LT(ms, 4'500) << info.detail;
}

}  // namespace

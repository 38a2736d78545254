// Retries on the same endpoint before the first token. The fixture server plays the server: no
// real server answers 503 with Retry-After, 429, or a cut stream on demand.
#include "support/fixture_server.hpp"

#include <chimera/backends/backend.hpp>
#include <chimera/http/settings.hpp>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>

namespace {

using namespace chimera;
using chimera::test::Ending;
using chimera::test::FixtureServer;
using chimera::test::Script;
using Ms = std::chrono::milliseconds;

std::string sse_chunk(const std::string& text, const char* finish = nullptr) {
  return fmt::format(
      R"(data: {{"choices":[{{"index":0,"delta":{{"content":"{}"}},"finish_reason":{}}}]}})"
      "\n\n",
      text, finish != nullptr ? fmt::format("\"{}\"", finish) : "null");
}

Script stream() {
  return Script::sse(
      {sse_chunk("Hello"), sse_chunk(" there"), sse_chunk("", "stop"), "data: [DONE]\n\n"});
}

Script status(int code, const std::string& retry_after = {}) {
  Script s = Script::json(code, R"({"error":{"message":"busy, try later"}})");
  if (!retry_after.empty()) s.headers = {{"Retry-After", retry_after}};
  return s;
}

struct Outcome {
  Completion c;
  Ms took{};
};

Outcome generate(const std::string& url, Retry retry = {}) {
  Runtime rt(1);
  EndpointConfig cfg;
  cfg.url = url;
  cfg.kind = BackendKind::openai;
  cfg.retry = retry;
  cfg.timeouts.first_token_ms = 20'000;
  auto b = make_backend(cfg, rt);
  Request r;
  r.messages = {{"user", "hi", {}, {}, {}}};
  const auto t0 = std::chrono::steady_clock::now();
  Outcome run;
  run.c = b->generate(r);
  run.took = std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - t0);
  return run;
}

TEST(RetryAfter, SecondsAndHttpDates) {
  EXPECT_EQ(retry_after_ms("1"), 1000);
  EXPECT_EQ(retry_after_ms(" 120 "), 120'000);
  EXPECT_EQ(retry_after_ms("soon"), -1);
  EXPECT_EQ(retry_after_ms(""), -1);
  EXPECT_EQ(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), 0);  // in the past
  char date[64];
  const std::time_t later = std::time(nullptr) + 30;
  std::tm tm{};
  ::gmtime_r(&later, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  const int64_t ms = retry_after_ms(date);
  EXPECT_GE(ms, 28'000) << date;
  EXPECT_LE(ms, 30'000) << date;
}

TEST(Retry, ServiceUnavailableWithRetryAfterIsTriedAgain) {
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions",
            std::vector<Script>{status(503, "1"), status(503, "1"), stream()});
  const Outcome run = generate(srv.url());
  ASSERT_TRUE(run.c.ok()) << run.c.error.message;
  EXPECT_EQ(run.c.text, "Hello there");
  EXPECT_EQ(srv.requests().size(), 3u);
  EXPECT_GE(run.took, Ms(1'900)) << "Retry-After: 1, twice";
  // The first try's send time is kept: the waits count in the time to first token.
  ASSERT_TRUE(run.c.figures.ttft_client_ns.has_value());
  EXPECT_GE(*run.c.figures.ttft_client_ns, 1'900'000'000);
}

TEST(Retry, TooManyRequestsBacksOffWithoutRetryAfter) {
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions", std::vector<Script>{status(429), stream()});
  const Outcome run = generate(srv.url(), Retry{.attempts = 3, .base_delay_ms = 200});
  ASSERT_TRUE(run.c.ok()) << run.c.error.message;
  EXPECT_EQ(srv.requests().size(), 2u);
  EXPECT_GE(run.took, Ms(100)) << "the first back-off is 100 to 200 ms";
}

TEST(Retry, GivesUpAfterTheAttemptsAndSaysSo) {
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions", status(503));
  const Outcome run = generate(srv.url(), Retry{.attempts = 2, .base_delay_ms = 10});
  EXPECT_EQ(run.c.error.kind, ErrorKind::http_status);
  EXPECT_EQ(run.c.error.http_status, 503);
  EXPECT_NE(run.c.error.message.find("after 2 attempts"), std::string::npos) << run.c.error.message;
  EXPECT_EQ(srv.requests().size(), 2u);
}

TEST(Retry, RetryAfterBeyondTheBudgetIsNotWaitedFor) {
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions", status(503, "3600"));
  const Outcome run = generate(srv.url());
  EXPECT_EQ(run.c.error.http_status, 503);
  EXPECT_EQ(srv.requests().size(), 1u);
  EXPECT_LT(run.took, Ms(5'000));
}

TEST(Retry, OtherStatusesAreNotRetried) {
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions", status(500));
  EXPECT_EQ(generate(srv.url()).c.error.http_status, 500);
  EXPECT_EQ(srv.requests().size(), 1u);
}

TEST(Retry, AStreamThatDeliveredTokensIsNeverRetried) {
  FixtureServer srv;
  Script cut = stream();
  cut.ending = Ending::abort;
  cut.stop_after = 1;  // "Hello", then the connection is cut
  cut.reset = true;
  srv.route("POST", "/v1/chat/completions", std::vector<Script>{cut, stream()});
  const Outcome run = generate(srv.url());
  EXPECT_EQ(run.c.error.kind, ErrorKind::truncated) << run.c.error.message;
  EXPECT_EQ(run.c.text, "Hello");
  EXPECT_EQ(srv.requests().size(), 1u);
}

TEST(Retry, OffWithOneAttempt) {
  FixtureServer srv;
  srv.route("POST", "/v1/chat/completions", std::vector<Script>{status(503, "1"), stream()});
  EXPECT_EQ(generate(srv.url(), Retry{.attempts = 1}).c.error.http_status, 503);
  EXPECT_EQ(srv.requests().size(), 1u);
}

TEST(Retry, RefusedConnectionsAreTriedAgain) {
  int port = 0;
  {
    FixtureServer gone;  // a port that was just free: nothing listens there now
    port = gone.port();
  }
  const Outcome run =
      generate(fmt::format("http://127.0.0.1:{}", port), Retry{.attempts = 3, .base_delay_ms = 10});
  EXPECT_EQ(run.c.error.kind, ErrorKind::connect);
  EXPECT_NE(run.c.error.message.find("after 3 attempts"), std::string::npos) << run.c.error.message;
}

TEST(Retry, SettingsAreChecked) {
  Runtime rt(1);
  EndpointConfig cfg;
  cfg.url = "http://127.0.0.1:1";
  cfg.retry.attempts = 0;
  EXPECT_THROW(make_backend(cfg, rt), std::invalid_argument);
  cfg.retry.attempts = 3;
  cfg.retry.budget_ms = -1;
  EXPECT_THROW(make_backend(cfg, rt), std::invalid_argument);
}

}  // namespace

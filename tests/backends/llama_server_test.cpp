// The HTTP backends against a real llama-server (started here on a free loopback port with the
// tiny synthetic model, stopped at the end).
#include "backends/http_backend.hpp"
#include "support/test_support.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

namespace {

using namespace chimera;
using chimera::test::LlamaServer;

class LlamaServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<LlamaServer>(test::tiny_model(),
                                            LlamaServer::Options{.parallel = 2, .ctx = 8192});
    ASSERT_TRUE(server_->ok()) << server_->error();
  }
  static void TearDownTestSuite() { server_.reset(); }

  void SetUp() override { ASSERT_TRUE(server_ && server_->ok()); }

  std::unique_ptr<Backend> backend(BackendKind kind = BackendKind::openai) {
    EndpointConfig cfg;
    cfg.url = server_->url();
    cfg.kind = kind;
    cfg.timeouts.first_token_ms = 30'000;
    cfg.timeouts.total_ms = 60'000;
    return make_backend(cfg, runtime_);
  }

  static Request chat(int n) {
    Request r;
    r.messages = {{"user", "Tell me something.", {}, {}, {}}};
    r.options.num_predict = n;
    return r;
  }

  static bool slots_idle() { return test::slots_idle(server_->port()); }

  static std::unique_ptr<LlamaServer> server_;
  Runtime runtime_{1};
};

std::unique_ptr<LlamaServer> LlamaServerTest::server_;

void expect_figures(const Completion& c, int n) {
  const Figures& f = c.figures;
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(f.tokens_out.value_or(-1), n);
  EXPECT_GT(f.tokens_in.value_or(0), 0);
  ASSERT_TRUE(f.ttft_client_ns.has_value());
  EXPECT_GT(*f.ttft_client_ns, 0);
  ASSERT_TRUE(f.ttft_server_ms.has_value());
  EXPECT_GE(*f.ttft_server_ms, 0.0);
  ASSERT_TRUE(f.e2e_ns.has_value());
  EXPECT_GE(*f.e2e_ns, *f.ttft_client_ns);
  ASSERT_TRUE(f.decode_tps_server.has_value());
  EXPECT_GT(*f.decode_tps_server, 0.0);
  ASSERT_TRUE(f.decode_tps_client.has_value());
  EXPECT_GT(*f.decode_tps_client, 0.0);
  ASSERT_TRUE(f.chunks.has_value());
  EXPECT_EQ(f.itl_ns.size(), static_cast<std::size_t>(*f.chunks - 1));
  EXPECT_TRUE(test::valid_utf8(c.text));
}

TEST_F(LlamaServerTest, StreamingChatParsesUsageAndTimings) {
  auto b = backend();
  std::string streamed;
  int calls = 0;
  const Completion c = b->generate(chat(24), [&](const TokenEvent& t) {
    EXPECT_EQ(t.index, calls);
    ++calls;
    streamed += t.text;
    return true;
  });
  expect_figures(c, 24);
  EXPECT_EQ(c.finish, FinishReason::length);
  EXPECT_EQ(c.finish_raw, "length");
  EXPECT_EQ(streamed, c.text);
  EXPECT_EQ(calls, *c.figures.chunks);
  EXPECT_EQ(c.endpoint, server_->url());
  EXPECT_TRUE(c.server.predicted_per_second.has_value());
  EXPECT_TRUE(c.server.prompt_ms.has_value());
}

TEST_F(LlamaServerTest, StreamingCompletion) {
  auto b = backend();
  Request r;
  r.kind = RequestKind::completion;
  r.prompt = "Once upon a time";
  r.options.num_predict = 16;
  const Completion c = b->generate(r);
  expect_figures(c, 16);
}

TEST_F(LlamaServerTest, NonStreamingRequestsReuseOneConnection) {
  auto b = backend();
  auto& ep = static_cast<backends::HttpBackend&>(*b).http_endpoint();
  for (int i = 0; i < 50; ++i) {
    Request r = chat(4);
    r.stream = false;
    const Completion c = b->generate(r);
    ASSERT_TRUE(c.ok()) << "request " << i << ": " << c.error.message;
    EXPECT_EQ(c.figures.tokens_out.value_or(-1), 4);
    EXPECT_FALSE(c.text.empty());
    if (i > 0) EXPECT_TRUE(c.figures.connection_reused) << "request " << i;
  }
  EXPECT_EQ(ep.connections_opened(), 1);
}

// llama-server 0.4.0 closes the connection after every streamed response while advertising
// keep-alive. A pooled client must notice before reusing it (or retry once when it did not).
TEST_F(LlamaServerTest, FiftySequentialStreamsAllSucceed) {
  auto b = backend();
  for (int i = 0; i < 50; ++i) {
    const Completion c = b->generate(chat(4));
    ASSERT_TRUE(c.ok()) << "stream " << i << ": " << c.error.message;
    EXPECT_EQ(c.figures.tokens_out.value_or(-1), 4);
  }
}

TEST_F(LlamaServerTest, MixedStreamingAndNonStreamingOnOnePool) {
  auto b = backend();
  for (int i = 0; i < 20; ++i) {
    Request r = chat(3);
    r.stream = (i % 3 != 0);
    const Completion c = b->generate(r);
    ASSERT_TRUE(c.ok()) << "request " << i << ": " << c.error.message;
  }
}

// Random weights sample every token; the synthetic model marks the ones that are not whole
// UTF-8 as unused, so llama-server never ends a stream with its "does not match the expected
// Content-only format" error. Default sampling, 40 streams of 64 tokens.
TEST_F(LlamaServerTest, SyntheticModelStreamsAreAlwaysValidUtf8) {
  auto b = backend();
  for (int i = 0; i < 40; ++i) {
    Request r = chat(64);
    r.options.seed = 1000 + i;
    const Completion c = b->generate(r);
    ASSERT_TRUE(c.ok()) << "stream " << i << ": " << c.error.message;
    EXPECT_TRUE(test::valid_utf8(c.text)) << "stream " << i;
  }
}

TEST_F(LlamaServerTest, CancelStopsCallbacksAndFreesTheSlot) {
  auto b = backend();
  std::atomic<int> tokens{0};
  std::atomic<bool> cancelled{false};
  std::atomic<int> after_cancel{0};
  std::promise<Completion> done;
  auto fut = done.get_future();
  Request r = chat(3000);
  auto h = b->start(
      r,
      [&](const TokenEvent&) {
        if (cancelled.load()) after_cancel.fetch_add(1);
        tokens.fetch_add(1);
        return true;
      },
      [&](Completion c) { done.set_value(std::move(c)); });
  while (tokens.load() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(slots_idle());
  h->cancel();
  cancelled.store(true);
  const Completion c = fut.get();
  EXPECT_EQ(c.error.kind, ErrorKind::cancelled) << c.error.message;
  EXPECT_EQ(c.finish, FinishReason::cancelled);
  EXPECT_EQ(after_cancel.load(), 0);
  EXPECT_LT(c.figures.chunks.value_or(0), 3000);
  // The server notices the closed connection and stops generating.
  bool idle = false;
  for (int i = 0; i < 200 && !idle; ++i) {
    idle = slots_idle();
    if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(idle) << "a slot is still processing after the request was cancelled";
  // And the backend still works.
  EXPECT_TRUE(b->generate(chat(2)).ok());
}

TEST_F(LlamaServerTest, CallbackReturningFalseCancels) {
  auto b = backend();
  int n = 0;
  const Completion c = b->generate(chat(500), [&](const TokenEvent&) { return ++n < 3; });
  EXPECT_EQ(c.error.kind, ErrorKind::cancelled);
  EXPECT_EQ(n, 3);
}

TEST_F(LlamaServerTest, CheckReportsServerAndModels) {
  auto b = backend();
  const EndpointInfo info = b->check();
  EXPECT_TRUE(info.healthy) << info.detail;
  EXPECT_EQ(info.server, "llama-server");
  ASSERT_FALSE(info.models.empty());
  EXPECT_NE(info.models.front().find("tiny"), std::string::npos);
}

TEST_F(LlamaServerTest, DetectsOpenAICompatibleApi) {
  const DetectResult d = detect_backend(server_->url(), runtime_);
  EXPECT_FALSE(d.error) << d.error.message;
  EXPECT_EQ(d.kind, BackendKind::openai);
}

TEST(LlamaServerFaults, KilledServerGivesClearErrors) {
  LlamaServer server(test::tiny_model(), LlamaServer::Options{.parallel = 1, .ctx = 8192});
  ASSERT_TRUE(server.ok()) << server.error();
  Runtime rt(1);
  EndpointConfig cfg;
  cfg.url = server.url();
  cfg.timeouts.first_token_ms = 10'000;
  cfg.timeouts.idle_ms = 5'000;
  auto b = make_backend(cfg, rt);
  std::atomic<int> tokens{0};
  std::promise<Completion> done;
  auto fut = done.get_future();
  Request r;
  r.messages = {{"user", "go on", {}, {}, {}}};
  r.options.num_predict = 4000;
  auto h = b->start(
      r, [&](const TokenEvent&) { return tokens.fetch_add(1), true; },
      [&](Completion c) { done.set_value(std::move(c)); });
  while (tokens.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  server.kill();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "hung";
  const Completion c = fut.get();
  EXPECT_EQ(c.error.kind, ErrorKind::truncated) << c.error.message;
  EXPECT_NE(c.error.message.find(server.url()), std::string::npos) << c.error.message;
  EXPECT_FALSE(c.text.empty());  // what arrived before the crash is kept

  const Completion next = b->generate(r);
  EXPECT_EQ(next.error.kind, ErrorKind::connect) << next.error.message;
  EXPECT_NE(next.error.message.find(server.url()), std::string::npos);
  EXPECT_NE(next.error.message.find("cannot connect"), std::string::npos) << next.error.message;
}

}  // namespace

// Every way a request can go wrong ends it with a clear error that names the endpoint, and
// returns: no hang, no crash, on_done exactly once. Both HTTP protocols (Ollama's NDJSON and the
// OpenAI-compatible SSE) are driven by the fixture server (fixture_server.hpp), which produces
// on demand the faults no real server produces on demand: cut connections, stalls, oversized
// records, bad JSON, stale keep-alive connections.
#include "support/fixture_server.hpp"
#include "support/test_support.hpp"

#include <chimera/backends/backend.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace json = boost::json;
using chimera::BackendKind;
using chimera::Completion;
using chimera::ErrorKind;
using chimera::FinishReason;
using chimera::Request;
using chimera::TokenEvent;
using chimera::test::Ending;
using chimera::test::FixtureServer;
using chimera::test::Framing;
using chimera::test::Script;
using chimera::test::split_awkwardly;
using namespace std::chrono_literals;

// No test here may take longer than this per request: a hang fails instead of blocking ctest.
constexpr int64_t kMaxCallMs = 4'000;

std::string ollama_record(int i, std::string_view content) {
  return json::serialize(
      json::object{{"model", "llama3.2"},
                   {"created_at", "2024-07-22T20:33:28." + std::to_string(100000 + i) + "Z"},
                   {"message", json::object{{"role", "assistant"}, {"content", content}}},
                   {"done", false}});
}

std::string ollama_final() {
  return R"({"model":"llama3.2","created_at":"2024-07-22T20:33:29.000000Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":885095291,"load_duration":3753500,"prompt_eval_count":12,"prompt_eval_duration":32849300,"eval_count":5,"eval_duration":55222200})";
}

// One record per piece, "\n" included.
std::vector<std::string> ollama_stream(const std::vector<std::string>& tokens, bool final = true) {
  std::vector<std::string> out;
  int i = 0;
  for (const auto& t : tokens) out.push_back(ollama_record(i++, t) + "\n");
  if (final) out.push_back(ollama_final() + "\n");
  return out;
}

// An OpenAI-compatible chat.completion.chunk event, as llama-server sends it.
std::string sse_chunk(std::string_view content, std::string_view finish = {}) {
  json::object choice{
      {"index", 0},
      {"delta", content.empty() ? json::object{} : json::object{{"content", content}}},
      {"finish_reason", finish.empty() ? json::value(nullptr) : json::value(finish)}};
  return "data: " +
         json::serialize(json::object{{"id", "chatcmpl-7"},
                                      {"object", "chat.completion.chunk"},
                                      {"created", 1735000000},
                                      {"model", "tiny"},
                                      {"choices", json::array{choice}}}) +
         "\n\n";
}

std::vector<std::string> sse_stream(const std::vector<std::string>& tokens, bool finish = true) {
  std::vector<std::string> out;
  for (const auto& t : tokens) out.push_back(sse_chunk(t));
  if (finish) {
    out.push_back(sse_chunk("", "stop"));
    out.push_back("data: [DONE]\n\n");
  }
  return out;
}

chimera::EndpointConfig config(const std::string& url, BackendKind kind) {
  chimera::EndpointConfig c;
  c.url = url;
  c.kind = kind;
  c.timeouts.connect_ms = 1'000;
  c.timeouts.first_token_ms = 3'000;
  c.timeouts.idle_ms = 3'000;
  c.timeouts.total_ms = 6'000;
  return c;
}

Request chat(BackendKind kind, bool stream = true) {
  Request r;
  r.model = kind == BackendKind::ollama ? "llama3.2" : "tiny";
  r.messages = {{.role = "user", .content = "Say hello."}};
  r.stream = stream;
  return r;
}

const char* path_of(BackendKind kind) {
  return kind == BackendKind::ollama ? "/api/chat" : "/v1/chat/completions";
}

struct Timed {
  Completion c;
  int64_t ms = 0;
};

Timed timed_generate(chimera::Backend& b, Request r, chimera::TokenCallback cb = {}) {
  const auto t0 = std::chrono::steady_clock::now();
  Timed t;
  t.c = b.generate(std::move(r), std::move(cb));
  t.ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  return t;
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// The common checks: the kind, the endpoint named, a phrase that says what happened, a
// finish reason that matches, and a call that returned in time.
void expect_error(const Timed& t, ErrorKind kind, const std::string& url,
                  std::vector<std::string_view> phrases) {
  EXPECT_EQ(t.c.error.kind, kind) << chimera::to_string(t.c.error.kind) << ": "
                                  << t.c.error.message;
  EXPECT_TRUE(contains(t.c.error.message, url)) << "no endpoint in: " << t.c.error.message;
  for (auto p : phrases) {
    EXPECT_TRUE(contains(t.c.error.message, p)) << "'" << p << "' not in: " << t.c.error.message;
  }
  EXPECT_EQ(t.c.finish,
            kind == ErrorKind::cancelled ? FinishReason::cancelled : FinishReason::error);
  EXPECT_EQ(t.c.endpoint, url);
  EXPECT_LT(t.ms, kMaxCallMs);
}

class Faults : public ::testing::TestWithParam<BackendKind> {
 protected:
  BackendKind kind() const { return GetParam(); }
  std::unique_ptr<chimera::Backend> backend(chimera::EndpointConfig cfg) {
    return chimera::make_backend(cfg, rt);
  }
  std::unique_ptr<chimera::Backend> backend() { return backend(config(srv.url(), kind())); }
  // A stream in this protocol, one record (or event) per piece.
  Script stream(const std::vector<std::string>& tokens, bool finish = true) const {
    return kind() == BackendKind::ollama ? Script::ndjson(ollama_stream(tokens, finish))
                                         : Script::sse(sse_stream(tokens, finish));
  }
  void route_stream(Script s) { srv.route("POST", path_of(kind()), std::move(s)); }

  FixtureServer srv;
  chimera::Runtime rt;
};

// Tests for one protocol only.
class FaultsOllama : public ::testing::Test {
 protected:
  FixtureServer srv;
  chimera::Runtime rt;
};
using FaultsOpenAI = FaultsOllama;

std::string kind_name(const ::testing::TestParamInfo<BackendKind>& info) {
  return chimera::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(BothProtocols, Faults,
                         ::testing::Values(BackendKind::ollama, BackendKind::openai), kind_name);

// ---- cannot reach the server -------------------------------------------------------------------

TEST_P(Faults, DeadEndpointIsAConnectError) {
  const std::string url = "http://127.0.0.1:" + std::to_string(chimera::free_loopback_port());
  auto b = backend(config(url, kind()));
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::connect, url, {"cannot connect"});
  EXPECT_FALSE(t.c.figures.ttft_client_ns.has_value());
  EXPECT_TRUE(t.c.text.empty());
}

// ---- the server says no ------------------------------------------------------------------------

TEST_P(Faults, Status404WithAJsonErrorBody) {
  srv.route("POST", path_of(kind()), Script::json(404, R"({"error":"model 'x' not found"})"));
  auto b = backend();
  Request r = chat(kind());
  r.model = "x";
  const Timed t = timed_generate(*b, r);
  expect_error(t, ErrorKind::http_status, srv.url(),
               {"404", "model 'x' not found", path_of(kind())});
  EXPECT_EQ(t.c.error.http_status, 404);
}

TEST_P(Faults, Status500WithAPlainTextBody) {
  srv.route("POST", path_of(kind()), Script::text(500, "upstream exploded: CUDA out of memory\n"));
  auto b = backend();
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::http_status, srv.url(), {"500", "CUDA out of memory"});
  EXPECT_EQ(t.c.error.http_status, 500);
}

TEST_P(Faults, Status503WhileTheModelLoads) {
  // llama-server's answer while it loads a model; chunked, as it sends it.
  Script s = Script::json(
      503, R"({"error":{"code":503,"message":"Loading model","type":"unavailable_error"}})");
  s.framing = Framing::chunked;
  s.pieces = {{R"({"error":{"code":503,"mess)", 0},
              {R"(age":"Loading model","type":"unavailable_error"}})", 0}};
  srv.route("POST", path_of(kind()), s);
  auto b = backend();
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::http_status, srv.url(), {"503", "Loading model"});
  // The connection stays usable: the next request goes over it.
  srv.route("POST", path_of(kind()), stream({"ok"}));
  const Timed ok = timed_generate(*b, chat(kind()));
  EXPECT_TRUE(ok.c.ok()) << ok.c.error.message;
  EXPECT_EQ(srv.connections(), 1);
}

// ---- the server reports an error mid-stream ----------------------------------------------------

TEST_P(Faults, ErrorObjectMidStreamKeepsTheTextBefore) {
  std::vector<std::string> pieces;
  if (kind() == BackendKind::ollama) {
    pieces = ollama_stream({"Hello", ", wor"}, false);
    pieces.push_back(R"({"error":"an error was encountered while running the model: CUDA error"})"
                     "\n");
  } else {
    pieces = sse_stream({"Hello", ", wor"}, false);
    // llama-server's form of an error inside a stream.
    pieces.push_back(
        R"(data: {"error":{"code":500,"message":"an error was encountered while running the model: CUDA error","type":"server_error"}})"
        "\n\n");
  }
  std::string body;
  for (auto& p : pieces) body += p;
  Script s = kind() == BackendKind::ollama ? Script::ndjson(split_awkwardly(body, 31))
                                           : Script::sse(split_awkwardly(body, 31));
  route_stream(s);
  auto b = backend();
  std::vector<std::string> seen;
  const Timed t = timed_generate(*b, chat(kind()), [&](const TokenEvent& e) {
    seen.emplace_back(e.text);
    return true;
  });
  expect_error(t, ErrorKind::server, srv.url(), {"CUDA error", "mid-stream"});
  EXPECT_EQ(t.c.text, "Hello, wor");
  EXPECT_EQ(seen, (std::vector<std::string>{"Hello", ", wor"}));
  ASSERT_TRUE(t.c.figures.ttft_client_ns.has_value());
  EXPECT_EQ(t.c.figures.chunks, 2);
}

// ---- the connection ends before the response does ----------------------------------------------

TEST_P(Faults, TruncatedChunkedStream) {
  Script s = stream({"one", " two", " three", " four", " five"});
  s.ending = Ending::abort;
  s.stop_after = 3;  // three records, then the server dies mid-body (no terminating chunk)
  route_stream(s);
  auto b = backend();
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::truncated, srv.url(), {"closed the connection", "after 3 chunks"});
  EXPECT_EQ(t.c.text, "one two three");
}

TEST_P(Faults, TruncatedCloseDelimitedStream) {
  // No Content-Length, no chunking: the close looks like a normal end of body to HTTP, so only
  // the missing final record (or [DONE]) tells.
  Script s = stream({"one", " two", " three", " four", " five"});
  s.framing = Framing::close_delimited;
  s.ending = Ending::abort;
  s.stop_after = 3;
  route_stream(s);
  auto b = backend();
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(
      t, ErrorKind::truncated, srv.url(),
      {kind() == BackendKind::ollama ? "without its final record" : "without a finish_reason"});
  EXPECT_EQ(t.c.text, "one two three");
}

TEST_P(Faults, TruncatedContentLengthBody) {
  Script s = stream({"one", " two", " three", " four", " five"});
  s.framing = Framing::content_length;  // declares the whole length, sends part of it
  s.ending = Ending::abort;
  s.stop_after = 2;
  route_stream(s);
  auto b = backend();
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::truncated, srv.url(), {"closed the connection"});
  EXPECT_EQ(t.c.text, "one two");
}

TEST_P(Faults, TruncatedByAConnectionReset) {
  Script s = stream({"one", " two", " three"});
  s.ending = Ending::abort;
  s.stop_after = 1;
  s.reset = true;  // RST instead of FIN, as when the server process is killed
  route_stream(s);
  auto b = backend();
  const Timed t = timed_generate(*b, chat(kind()));
  EXPECT_EQ(t.c.error.kind, ErrorKind::truncated) << t.c.error.message;
  EXPECT_TRUE(contains(t.c.error.message, srv.url())) << t.c.error.message;
  EXPECT_LT(t.ms, kMaxCallMs);
}

TEST_P(Faults, TruncatedInsideAChunk) {
  // Hand-framed: a chunk announces 0x64 = 100 bytes, 20 arrive, then the connection closes.
  const std::string first = kind() == BackendKind::ollama ? ollama_stream({"Hi"}, false)[0]
                                                          : sse_stream({"Hi"}, false)[0];
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", first.size());
  Script s = stream({});
  s.framing = Framing::raw;
  s.headers.emplace_back("Transfer-Encoding", "chunked");
  s.pieces = {{std::string(size) + first + "\r\n", 0}, {"64\r\n", 0}, {first.substr(0, 20), 5}};
  s.ending = Ending::abort;
  s.stop_after = 3;
  route_stream(s);
  auto b = backend();
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::truncated, srv.url(), {"closed the connection"});
  EXPECT_EQ(t.c.text, "Hi");
}

// ---- malformed responses -----------------------------------------------------------------------

TEST_P(Faults, RecordOverTheSizeLimit) {
  const std::string huge(2'000, 'x');
  route_stream(Script(stream({"fine", huge, "never"})));
  chimera::EndpointConfig cfg = config(srv.url(), kind());
  cfg.limits.max_record_bytes = 1024;
  auto b = backend(cfg);
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::protocol, srv.url(), {"exceeds the limit of 1024 bytes"});
  EXPECT_EQ(t.c.text, "fine");
}

TEST_P(Faults, RecordOverTheSizeLimitWithoutANewline) {
  // A server that never ends its line: the framer must give up at the limit, not buffer forever.
  Script s = stream({"fine"}, false);
  s.pieces.push_back({std::string(kind() == BackendKind::ollama ? "{\"x\":\"" : "data: {\"x\":\"") +
                          std::string(4'000, 'y'),
                      0});
  s.ending = Ending::stall;
  s.stop_after = s.pieces.size();
  route_stream(s);
  chimera::EndpointConfig cfg = config(srv.url(), kind());
  cfg.limits.max_record_bytes = 1024;
  auto b = backend(cfg);
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::protocol, srv.url(), {"exceeds the limit of 1024 bytes"});
}

TEST_P(Faults, InvalidJsonRecord) {
  Script s = stream({"The"}, false);
  if (kind() == BackendKind::ollama) {
    s.pieces.push_back(
        {R"({"model":"llama3.2","message":{"role":"assistant","content":" sky"},"done":fals})"
         "\n",
         0});
  } else {
    s.pieces.push_back({R"(data: {"choices":[{"index":0,"delta":{"content":" sky"}}]})"
                        "\n\n",
                        0});
    s.pieces.back().bytes.erase(s.pieces.back().bytes.find("]}") + 1, 1);  // drop the last '}'
  }
  s.pieces.push_back(
      {kind() == BackendKind::ollama ? ollama_final() + "\n" : "data: [DONE]\n\n", 0});
  route_stream(s);
  auto b = backend();
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(
      t, ErrorKind::protocol, srv.url(),
      {"not a JSON object",
       kind() == BackendKind::ollama ? R"("done":fals)" : R"("delta":{"content":" sky"})"});
  EXPECT_EQ(t.c.text, "The");
}

// ---- timeouts ----------------------------------------------------------------------------------

TEST_P(Faults, FirstTokenTimeoutAfterTheHeaders) {
  Script s = stream({"late"});
  s.ending = Ending::stall;
  s.stop_after = 0;  // the status line and headers, then nothing
  route_stream(s);
  chimera::EndpointConfig cfg = config(srv.url(), kind());
  cfg.timeouts.first_token_ms = 300;
  auto b = backend(cfg);
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::timeout, srv.url(), {"first-token"});
  EXPECT_GE(t.ms, 250);
  EXPECT_TRUE(t.c.text.empty());
  EXPECT_TRUE(srv.wait_for_peer_closes(1, 2'000));  // the client hung up; the server may stop
}

TEST_P(Faults, FirstTokenTimeoutWithoutAnyAnswer) {
  Script s = stream({"late"});
  s.ending = Ending::no_response;
  route_stream(s);
  chimera::EndpointConfig cfg = config(srv.url(), kind());
  cfg.timeouts.first_token_ms = 300;
  auto b = backend(cfg);
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::timeout, srv.url(), {"first-token"});
  EXPECT_GE(t.ms, 250);
}

TEST_P(Faults, IdleTimeoutAfterAToken) {
  Script s = stream({"first", " second"});
  s.ending = Ending::stall;
  s.stop_after = 1;  // one token, then silence
  route_stream(s);
  chimera::EndpointConfig cfg = config(srv.url(), kind());
  cfg.timeouts.idle_ms = 300;
  auto b = backend(cfg);
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::timeout, srv.url(), {"idle"});
  EXPECT_EQ(t.c.text, "first");
  EXPECT_GE(t.ms, 250);
}

TEST_P(Faults, TotalTimeoutOnAStreamThatNeverEnds) {
  std::vector<std::string> toks(200, "tok ");
  route_stream(stream(toks).with_delay(40));  // 8 s of steady tokens: never idle
  chimera::EndpointConfig cfg = config(srv.url(), kind());
  cfg.timeouts.total_ms = 500;
  auto b = backend(cfg);
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::timeout, srv.url(), {"total"});
  EXPECT_GE(t.ms, 450);
  EXPECT_FALSE(t.c.text.empty());
}

// ---- cancellation ------------------------------------------------------------------------------

TEST_P(Faults, CancelMidStream) {
  std::vector<std::string> toks(400, "tok ");
  route_stream(stream(toks).with_delay(5));  // 2 s unless cancelled
  auto b = backend();

  std::atomic<int> calls{0};
  std::atomic<int> calls_after_cancel{0};
  std::atomic<bool> cancel_returned{false};
  std::atomic<int> done_calls{0};
  std::mutex mu;
  std::condition_variable cv;
  auto handle = b->start(
      chat(kind()),
      [&](const TokenEvent&) {
        if (cancel_returned.load()) ++calls_after_cancel;
        ++calls;
        cv.notify_all();
        std::this_thread::sleep_for(2ms);  // let cancel() land while a callback runs
        if (cancel_returned.load()) ++calls_after_cancel;
        return true;
      },
      [&](Completion) { ++done_calls; });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 3s, [&] { return calls.load() >= 3; }));
  }
  const auto t0 = std::chrono::steady_clock::now();
  handle->cancel();
  cancel_returned.store(true);
  const Completion c = handle->wait();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  handle->cancel();  // idempotent
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(calls_after_cancel.load(), 0);
  EXPECT_EQ(done_calls.load(), 1);
  EXPECT_EQ(c.error.kind, ErrorKind::cancelled) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, srv.url())) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, "cancelled")) << c.error.message;
  EXPECT_EQ(c.finish, FinishReason::cancelled);
  EXPECT_LT(ms, 1'000);
  // The text received so far is kept (a token may land in it just as cancel() begins).
  const auto n = static_cast<std::size_t>(calls.load());
  EXPECT_GE(c.text.size(), 4 * n);
  EXPECT_LE(c.text.size(), 4 * (n + 1));
  // The connection is closed, which is what tells a server to stop generating.
  EXPECT_TRUE(srv.wait_for_peer_closes(1, 2'000));
}

TEST_P(Faults, CancelWhileWaitingForTheFirstToken) {
  Script s = stream({"late"});
  s.ending = Ending::no_response;
  route_stream(s);
  auto b = backend();
  std::atomic<int> done_calls{0};
  auto handle = b->start(chat(kind()), {}, [&](Completion) { ++done_calls; });
  ASSERT_TRUE(srv.wait_for_requests(1, 2'000));
  const auto t0 = std::chrono::steady_clock::now();
  handle->cancel();
  const Completion c = handle->wait();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);  // not the 3 s first-token timeout
  EXPECT_EQ(c.error.kind, ErrorKind::cancelled) << c.error.message;
  EXPECT_TRUE(contains(c.error.message, srv.url())) << c.error.message;
  EXPECT_EQ(done_calls.load(), 1);
  EXPECT_TRUE(srv.wait_for_peer_closes(1, 2'000));
}

TEST_P(Faults, TokenCallbackReturningFalseCancels) {
  std::vector<std::string> toks(50, "tok ");
  route_stream(stream(toks).with_delay(2));
  auto b = backend();
  int calls = 0;
  const Timed t = timed_generate(*b, chat(kind()), [&](const TokenEvent&) { return ++calls < 3; });
  expect_error(t, ErrorKind::cancelled, srv.url(), {"cancelled"});
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(t.c.text, "tok tok tok ");
}

TEST_P(Faults, CancelFromInsideTheTokenCallback) {
  std::vector<std::string> toks(50, "tok ");
  route_stream(stream(toks).with_delay(2));
  auto b = backend();
  std::shared_ptr<chimera::RequestHandle> handle;
  std::atomic<bool> have_handle{false};
  std::atomic<int> calls{0};
  std::atomic<int> done_calls{0};
  handle = b->start(
      chat(kind()),
      [&](const TokenEvent&) {
        while (!have_handle.load()) std::this_thread::yield();
        if (++calls == 2) handle->cancel();  // must not deadlock on its own callback
        return true;
      },
      [&](Completion) { ++done_calls; });
  have_handle.store(true);
  const Completion c = handle->wait();
  EXPECT_EQ(c.error.kind, ErrorKind::cancelled) << c.error.message;
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(done_calls.load(), 1);
}

TEST_P(Faults, TokenCallbackThatThrowsCancels) {
  route_stream(stream({"a", "b", "c"}));
  auto b = backend();
  const Timed t = timed_generate(
      *b, chat(kind()), [](const TokenEvent&) -> bool { throw std::runtime_error("agent bug"); });
  expect_error(t, ErrorKind::cancelled, srv.url(), {"agent bug"});
}

// ---- limits ------------------------------------------------------------------------------------

TEST_P(Faults, StreamedBodyOverTheLimit) {
  std::vector<std::string> toks(60, std::string(100, 'z'));
  route_stream(stream(toks));  // about 10 KiB, chunked
  chimera::EndpointConfig cfg = config(srv.url(), kind());
  cfg.limits.max_body_bytes = 4'096;
  auto b = backend(cfg);
  const Timed t = timed_generate(*b, chat(kind()));
  expect_error(t, ErrorKind::protocol, srv.url(), {"exceeds the limit of 4096 bytes"});
}

TEST_P(Faults, WholeBodyOverTheLimit) {
  const std::string content(8'000, 'w');
  const std::string body =
      kind() == BackendKind::ollama
          ? json::serialize(
                json::object{{"model", "llama3.2"},
                             {"message", json::object{{"role", "assistant"}, {"content", content}}},
                             {"done", true}})
          : json::serialize(json::object{
                {"choices",
                 json::array{json::object{
                     {"index", 0},
                     {"message", json::object{{"role", "assistant"}, {"content", content}}},
                     {"finish_reason", "stop"}}}}});
  srv.route("POST", path_of(kind()), Script::json(200, body));  // Content-Length over the limit
  chimera::EndpointConfig cfg = config(srv.url(), kind());
  cfg.limits.max_body_bytes = 4'096;
  auto b = backend(cfg);
  const Timed t = timed_generate(*b, chat(kind(), /*stream=*/false));
  expect_error(t, ErrorKind::protocol, srv.url(), {"exceeds the limit of 4096 bytes"});
}

// ---- keep-alive --------------------------------------------------------------------------------

TEST_P(Faults, FiveRequestsShareOneConnection) {
  const std::string body =
      kind() == BackendKind::ollama
          ? R"({"model":"llama3.2","created_at":"2023-12-12T14:13:43.416799Z","message":{"role":"assistant","content":"Hello! How are you today?"},"done_reason":"stop","done":true,"total_duration":5191566416,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,"eval_duration":4799921000})"
          : R"({"id":"chatcmpl-1","object":"chat.completion","created":1735000000,"model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How are you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":7,"total_tokens":33}})";
  srv.route("POST", path_of(kind()), Script::json(200, body));
  auto b = backend();
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const Timed t = timed_generate(*b, chat(kind(), /*stream=*/false));
    ASSERT_TRUE(t.c.ok()) << t.c.error.message;
    EXPECT_EQ(t.c.text, "Hello! How are you today?");
    EXPECT_EQ(t.c.figures.connection_reused, i > 0);
  }
  EXPECT_EQ(srv.requests().size(), 5u);
  EXPECT_EQ(srv.connections(), 1);
}

TEST_F(FaultsOllama, StreamedRequestsShareOneConnection) {
  srv.route("POST", "/api/chat", Script::ndjson(ollama_stream({"a", "b"})));
  auto b = chimera::make_backend(config(srv.url(), BackendKind::ollama), rt);
  for (int i = 0; i < 3; ++i) {
    const Completion c = b->generate(chat(BackendKind::ollama));
    ASSERT_TRUE(c.ok()) << c.error.message;
    EXPECT_EQ(c.figures.connection_reused, i > 0);
  }
  EXPECT_EQ(srv.connections(), 1);
}

// A connection left idle longer than Limits::idle_expiry_ms is closed, not reused: the next
// request connects again.
TEST_F(FaultsOllama, AnIdleConnectionPastItsExpiryIsNotReused) {
  srv.route("POST", "/api/chat", Script::ndjson(ollama_stream({"a", "b"})));
  chimera::EndpointConfig cfg = config(srv.url(), BackendKind::ollama);
  cfg.limits.idle_expiry_ms = 200;
  auto b = chimera::make_backend(cfg, rt);
  const Completion first = b->generate(chat(BackendKind::ollama));
  ASSERT_TRUE(first.ok()) << first.error.message;
  const Completion soon = b->generate(chat(BackendKind::ollama));  // well within 200 ms
  ASSERT_TRUE(soon.ok()) << soon.error.message;
  EXPECT_TRUE(soon.figures.connection_reused);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  const Completion late = b->generate(chat(BackendKind::ollama));
  ASSERT_TRUE(late.ok()) << late.error.message;
  EXPECT_FALSE(late.figures.connection_reused);
  EXPECT_EQ(srv.connections(), 2);
}

// After [DONE] the client still reads the body to its end, so a server that keeps the
// connection alive (vLLM does; llama-server closes it anyway) gets it reused.
TEST_F(FaultsOpenAI, StreamedRequestsShareOneConnection) {
  srv.route("POST", "/v1/chat/completions", Script::sse(sse_stream({"a", "b"})));
  auto b = chimera::make_backend(config(srv.url(), BackendKind::openai), rt);
  for (int i = 0; i < 3; ++i) {
    const Completion c = b->generate(chat(BackendKind::openai));
    ASSERT_TRUE(c.ok()) << c.error.message;
    EXPECT_EQ(c.text, "ab");
    EXPECT_EQ(c.figures.connection_reused, i > 0);
  }
  EXPECT_EQ(srv.connections(), 1);
}

// The request as it reaches the server: one head with the client's own fields, the extra
// headers in place of the client's fields of the same name (the last of two with one name),
// the API key as a bearer token in place of an extra Authorization, and the body whole.
TEST_F(FaultsOpenAI, RequestHeadCarriesOwnAndExtraHeaders) {
  chimera::EndpointConfig cfg = config(srv.url() + "/base/", BackendKind::openai);
  srv.route("POST", "/base/v1/chat/completions", Script::sse(sse_stream({"a"})));
  cfg.headers = {{"X-Team", "red"},
                 {"user-agent", "game/1.0"},
                 {"X-Team", "blue"},
                 {"Authorization", "Basic Zm9vOmJhcg=="}};
  auto plain = chimera::make_backend(cfg, rt);
  cfg.api_key = "sk-head-test";
  auto keyed = chimera::make_backend(cfg, rt);
  for (auto* b : {plain.get(), keyed.get()}) {
    const Completion c = b->generate(chat(BackendKind::openai));
    ASSERT_TRUE(c.ok()) << c.error.message;
    EXPECT_EQ(c.text, "a");
  }
  const auto reqs = srv.requests();
  ASSERT_EQ(reqs.size(), 2u);
  for (const auto& r : reqs) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/base/v1/chat/completions");
    EXPECT_EQ(r.header("host"), fmt::format("127.0.0.1:{}", srv.port()));
    EXPECT_EQ(r.header("user-agent"), "game/1.0");
    EXPECT_EQ(r.header("x-team"), "blue");
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.header("accept"), "text/event-stream");
    EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
    EXPECT_TRUE(json::parse(r.body).is_object()) << r.body;
    int team = 0;
    int auth = 0;
    for (const auto& [name, value] : r.headers) {
      team += name == "x-team";
      auth += name == "authorization";
    }
    EXPECT_EQ(team, 1);
    EXPECT_EQ(auth, 1);
  }
  EXPECT_EQ(reqs[0].header("authorization"), "Basic Zm9vOmJhcg==");
  EXPECT_EQ(reqs[1].header("authorization"), "Bearer sk-head-test");
}

TEST_P(Faults, StaleConnectionClosedAfterTheResponse) {
  // The server closes each connection after its response while claiming keep-alive (as
  // llama-server does after a stream): the client pools it, finds it dead, opens another.
  Script streamed = stream({"hello"});
  streamed.ending = Ending::close;
  Script whole = Script::json(
      200,
      kind() == BackendKind::ollama
          ? R"({"model":"llama3.2","message":{"role":"assistant","content":"hello"},"done_reason":"stop","done":true})"
          : R"({"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]})");
  whole.ending = Ending::close;
  srv.route("POST", path_of(kind()), std::vector<Script>{streamed, whole, streamed});
  auto b = backend();
  for (bool stream_it : {true, false, true}) {
    const Timed t = timed_generate(*b, chat(kind(), stream_it));
    ASSERT_TRUE(t.c.ok()) << t.c.error.message;
    EXPECT_EQ(t.c.text, "hello");
  }
  EXPECT_EQ(srv.requests().size(), 3u);
  EXPECT_EQ(srv.connections(), 3);
}

TEST_P(Faults, ReusedConnectionDroppedBeforeAnswerIsRetriedOnce) {
  const std::string body =
      kind() == BackendKind::ollama
          ? R"({"model":"llama3.2","message":{"role":"assistant","content":"hello"},"done_reason":"stop","done":true})"
          : R"({"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]})";
  Script ok = Script::json(200, body);
  Script drop;
  drop.ending = Ending::drop;  // reads the request, closes without a byte
  srv.route("POST", path_of(kind()), std::vector<Script>{ok, drop, ok});
  auto b = backend();
  ASSERT_TRUE(timed_generate(*b, chat(kind(), false)).c.ok());
  const Timed t = timed_generate(*b, chat(kind(), false));
  ASSERT_TRUE(t.c.ok()) << t.c.error.message;
  EXPECT_EQ(t.c.text, "hello");
  EXPECT_FALSE(t.c.figures.connection_reused);  // served by the retry, on a new connection
  EXPECT_EQ(srv.requests().size(), 3u);
  EXPECT_EQ(srv.connections(), 2);
}

TEST_P(Faults, ANewConnectionDroppedIsNotRetriedAgain) {
  Script ok = Script::json(
      200,
      kind() == BackendKind::ollama
          ? R"({"model":"llama3.2","message":{"role":"assistant","content":"hello"},"done_reason":"stop","done":true})"
          : R"({"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]})");
  Script drop;
  drop.ending = Ending::drop;
  srv.route("POST", path_of(kind()), std::vector<Script>{ok, drop});
  auto b = backend();
  ASSERT_TRUE(timed_generate(*b, chat(kind(), false)).c.ok());
  const Timed t = timed_generate(*b, chat(kind(), false));
  expect_error(t, ErrorKind::truncated, srv.url(), {"closed the connection"});
  EXPECT_EQ(srv.requests().size(), 3u);  // the first try and one retry, no more
  EXPECT_EQ(srv.connections(), 2);
}

// ---- protocol-specific faults ------------------------------------------------------------------

TEST_F(FaultsOpenAI, SseErrorEventMidStream) {
  std::vector<std::string> events = sse_stream({"Hel", "lo"}, false);
  events.push_back(
      "event: error\n"
      R"(data: {"error":{"code":500,"message":"slot 0 was released","type":"server_error"}})"
      "\n\n");
  std::string body;
  for (auto& e : events) body += e;
  srv.route("POST", "/v1/chat/completions", Script::sse(split_awkwardly(body, 17)));
  auto b = chimera::make_backend(config(srv.url(), BackendKind::openai), rt);
  const Timed t = timed_generate(*b, chat(BackendKind::openai));
  expect_error(t, ErrorKind::server, srv.url(), {"error event", "slot 0 was released"});
  EXPECT_EQ(t.c.text, "Hello");
}

TEST_F(FaultsOllama, BadRequestsMakeNoConnection) {
  auto ollama = chimera::make_backend(config(srv.url(), BackendKind::ollama), rt);
  auto openai = chimera::make_backend(config(srv.url(), BackendKind::openai), rt);

  Request no_model = chat(BackendKind::ollama);
  no_model.model.clear();
  Timed t = timed_generate(*ollama, no_model);
  expect_error(t, ErrorKind::bad_request, srv.url(), {"model"});

  Request no_messages = chat(BackendKind::openai);
  no_messages.messages.clear();
  t = timed_generate(*openai, no_messages);
  expect_error(t, ErrorKind::bad_request, srv.url(), {"at least one message"});

  Request bad_schema = chat(BackendKind::ollama);
  bad_schema.format_json = "{\"type\": ";
  t = timed_generate(*ollama, bad_schema);
  expect_error(t, ErrorKind::bad_request, srv.url(), {"format"});

  Request bad_tools = chat(BackendKind::openai);
  bad_tools.tools_json = "[{]";
  t = timed_generate(*openai, bad_tools);
  expect_error(t, ErrorKind::bad_request, srv.url(), {"tools"});

  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(srv.connections(), 0);
  EXPECT_TRUE(srv.requests().empty());
}

TEST_F(FaultsOllama, UnknownRouteIsA404FromTheFixture) {
  // The fixture itself: an unrouted target gets 404 and a JSON error, like a real server.
  auto b = chimera::make_backend(config(srv.url(), BackendKind::ollama), rt);
  const Timed t = timed_generate(*b, chat(BackendKind::ollama));
  expect_error(t, ErrorKind::http_status, srv.url(), {"404", "no route for POST /api/chat"});
}

TEST_F(FaultsOllama, UnusableUrlIsRejectedBeforeAnyIo) {
  for (const char* url : {"ftp://127.0.0.1:1", "127.0.0.1:11434", "http://", "http://h:1/?q=1"}) {
    EXPECT_THROW(chimera::make_backend(config(url, BackendKind::ollama), rt), std::invalid_argument)
        << url;
  }
}

}  // namespace

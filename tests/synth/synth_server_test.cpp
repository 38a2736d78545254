// The synthetic server, tested the way benchmarks use it: through the project's real client
// (make_backend + generate) for what a client sees, and through a plain Beast socket for the
// wire itself (server_sent_ns in every chunk, the record shapes, status codes). Timing checks
// are one-sided where the server guarantees it (it never sends before the schedule) and loose
// where the machine decides (a shared 2-core box may delay anything).
#include <chimera/backends/backend.hpp>
#include <chimera/synth/server.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using chimera::BackendKind;
using chimera::Completion;
using chimera::ErrorKind;
using chimera::FinishReason;
using chimera::Request;
using chimera::RequestKind;
using chimera::TokenEvent;
using chimera::synth::Options;
using chimera::synth::SynthServer;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

constexpr int64_t kMs = 1'000'000;

int64_t now_ns() {
  return chimera::now_ns();
}

std::string tokens_text(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) s += "tok" + std::to_string(i) + " ";
  return s;
}

Options fast(int tokens = 5) {
  Options o;
  o.tokens_per_s = 1000;
  o.tokens = tokens;
  return o;
}

Request chat() {
  Request r;
  r.model = "synth";
  r.messages = {{.role = "user", .content = "hello there"}};
  return r;
}

Request completion() {
  Request r;
  r.kind = RequestKind::completion;
  r.model = "synth";
  r.prompt = "Once upon a time";
  return r;
}

std::unique_ptr<chimera::Backend> backend(const SynthServer& srv, BackendKind kind,
                                          chimera::Runtime& rt, int64_t idle_ms = 5'000) {
  chimera::EndpointConfig cfg{.url = srv.url(), .kind = kind};
  cfg.timeouts.idle_ms = idle_ms;
  cfg.timeouts.first_token_ms = 5'000;
  cfg.timeouts.total_ms = 20'000;
  cfg.retry.attempts = 1;  // each fault as the client reports it, not retried away
  return chimera::make_backend(cfg, rt);
}

// ---- a plain HTTP client, independent of the project's --------------------------------------

struct Raw {
  int status = 0;
  std::string body;  // chunked encoding removed
  std::string content_type;
  std::string transfer_encoding;
  bool keep_alive = false;
};

class RawClient {
 public:
  explicit RawClient(int port) : sock_(io_) {
    sock_.connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    timeval tv{5, 0};  // no test waits on a silent server for more than this
    ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  Raw send(bhttp::verb method, const std::string& target, const std::string& body = "") {
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    bhttp::write(sock_, req);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64u << 20);
    beast::error_code ec;
    bhttp::read(sock_, buf_, parser, ec);
    Raw r;
    if (ec) {
      r.status = -1;
      r.body = ec.message();
      return r;
    }
    auto& res = parser.get();
    r.status = static_cast<int>(res.result_int());
    r.body = res.body();
    r.content_type = std::string(res[bhttp::field::content_type]);
    r.transfer_encoding = std::string(res[bhttp::field::transfer_encoding]);
    r.keep_alive = res.keep_alive();
    return r;
  }

 private:
  asio::io_context io_;
  tcp::socket sock_;
  beast::flat_buffer buf_;
};

Raw get(const SynthServer& srv, const std::string& target) {
  return RawClient(srv.port()).send(bhttp::verb::get, target);
}
Raw post(const SynthServer& srv, const std::string& target, const std::string& body) {
  return RawClient(srv.port()).send(bhttp::verb::post, target, body);
}

json::object object(const std::string& text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "not a JSON object: " << text;
    return {};
  }
  return v.get_object();
}

// NDJSON lines, or SSE data payloads ("[DONE]" kept as a string record).
std::vector<std::string> records(const std::string& body, bool sse) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  const std::string sep = sse ? "\n\n" : "\n";
  while (pos < body.size()) {
    auto end = body.find(sep, pos);
    if (end == std::string::npos) end = body.size();
    std::string rec = body.substr(pos, end - pos);
    pos = end + sep.size();
    if (rec.empty()) continue;
    if (sse) {
      EXPECT_EQ(rec.rfind("data: ", 0), 0u) << rec;
      rec = rec.substr(6);
    }
    out.push_back(rec);
  }
  return out;
}

std::string str(const json::value& v) {
  return v.is_string() ? std::string(v.get_string()) : json::serialize(v);
}

int64_t int_of(const json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_int64()) {
    ADD_FAILURE() << "no integer \"" << key << "\" in " << json::serialize(o);
    return 0;
  }
  return v->get_int64();
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 3s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// ---- through the project's client -----------------------------------------------------------

TEST(SynthServer, OllamaChatStreamsEveryTokenOnSchedule) {
  Options o;
  o.ttft_ms = 80;
  o.tokens_per_s = 100;
  o.tokens = 20;
  SynthServer srv(o);
  srv.start();
  chimera::Runtime rt;
  auto b = backend(srv, BackendKind::ollama, rt);
  std::vector<int64_t> times;
  const int64_t t0 = now_ns();
  const Completion c = b->generate(chat(), [&](const TokenEvent& t) {
    times.push_back(t.t_ns);
    return true;
  });
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(20));
  EXPECT_EQ(times.size(), 20u);
  EXPECT_EQ(c.figures.tokens_out, 20);
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.model, "synth");
  // The server never sends early: the first token is at least the scheduled delay after the
  // request, and the last at least 19 intervals after the first token's schedule.
  ASSERT_TRUE(c.figures.ttft_client_ns);
  EXPECT_GE(*c.figures.ttft_client_ns, 80 * kMs);
  EXPECT_LT(*c.figures.ttft_client_ns, 2'000 * kMs);
  EXPECT_GE(times.back() - t0, (80 + 190) * kMs);
  EXPECT_LT(times.back() - t0, 4'000 * kMs);
  ASSERT_TRUE(c.figures.ttft_server_ms);
  EXPECT_DOUBLE_EQ(*c.figures.ttft_server_ms, 80.0);
  ASSERT_TRUE(c.figures.decode_tps_server);
  EXPECT_NEAR(*c.figures.decode_tps_server, 100.0, 1e-6);
  ASSERT_TRUE(c.figures.decode_tps_client);
  EXPECT_GT(*c.figures.decode_tps_client, 30.0);
  EXPECT_LT(*c.figures.decode_tps_client, 1000.0);  // a late first token shortens the span
  EXPECT_EQ(c.server.load_duration_ns, 0);
  EXPECT_EQ(c.server.prompt_eval_duration_ns, 80 * kMs);
  EXPECT_EQ(c.server.eval_duration_ns, 200 * kMs);  // 20 tokens at 100/s
}

TEST(SynthServer, OllamaGenerateNumPredictAndWholeResponses) {
  SynthServer srv(fast(9));
  srv.start();
  chimera::Runtime rt;
  auto b = backend(srv, BackendKind::ollama, rt);

  Request r = completion();
  r.options.num_predict = 5;
  Completion c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(5));
  EXPECT_EQ(c.figures.tokens_out, 5);
  EXPECT_EQ(c.finish, FinishReason::length);  // the request's limit ended it
  EXPECT_EQ(c.figures.tokens_in, 4);          // 16 prompt bytes / 4

  r = chat();
  r.stream = false;
  c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(9));
  EXPECT_EQ(c.figures.tokens_out, 9);

  r = completion();
  r.stream = false;
  r.options.num_predict = 3;
  c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(3));
  EXPECT_EQ(c.finish, FinishReason::length);
}

TEST(SynthServer, OpenAIChatAndCompletionStreamsAndWhole) {
  Options o = fast(8);
  o.ttft_ms = 30;
  o.tokens_per_s = 400;
  SynthServer srv(o);
  srv.start();
  chimera::Runtime rt;
  auto b = backend(srv, BackendKind::openai, rt);

  Request r = chat();
  r.options.num_predict = 12;
  int chunks = 0;
  Completion c = b->generate(r, [&](const TokenEvent&) {
    ++chunks;
    return true;
  });
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(12));
  EXPECT_EQ(chunks, 12);
  EXPECT_EQ(c.figures.tokens_out, 12);  // usage.completion_tokens
  EXPECT_EQ(c.finish, FinishReason::length);
  ASSERT_TRUE(c.figures.ttft_server_ms);
  EXPECT_DOUBLE_EQ(*c.figures.ttft_server_ms, 30.0);  // timings.prompt_ms
  ASSERT_TRUE(c.figures.decode_tps_server);
  EXPECT_DOUBLE_EQ(*c.figures.decode_tps_server, 400.0);
  ASSERT_TRUE(c.figures.ttft_client_ns);
  EXPECT_GE(*c.figures.ttft_client_ns, 30 * kMs);

  c = b->generate(completion());
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(8));
  EXPECT_EQ(c.finish, FinishReason::stop);

  r = chat();
  r.stream = false;
  c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(8));
  EXPECT_EQ(c.figures.tokens_out, 8);

  r = completion();
  r.stream = false;
  r.options.num_predict = 2;
  c = b->generate(r);
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(2));
  EXPECT_EQ(c.finish, FinishReason::length);
}

TEST(SynthServer, KeepAliveServesSequentialRequestsOverOneConnection) {
  for (const BackendKind kind : {BackendKind::ollama, BackendKind::openai}) {
    SynthServer srv(fast(5));
    srv.start();
    chimera::Runtime rt;
    auto b = backend(srv, kind, rt);
    const int64_t t0 = now_ns();
    for (int i = 0; i < 5; ++i) {
      const Completion c = b->generate(chat());
      ASSERT_TRUE(c.ok()) << c.error.message;
      EXPECT_EQ(c.text, tokens_text(5));
      if (i > 0) EXPECT_TRUE(c.figures.connection_reused) << to_string(kind) << " request " << i;
    }
    // The server counts a stream's last token and its end after the write the client may
    // already have read: wait for its books to close before reading them.
    EXPECT_TRUE(eventually([&] { return srv.stats().streams_active == 0; }));
    const auto s = srv.stats();
    EXPECT_EQ(s.connections_accepted, 1) << to_string(kind);
    EXPECT_EQ(s.requests_served, 5);
    EXPECT_EQ(s.streams_active, 0);
    EXPECT_EQ(s.streams_peak, 1);
    EXPECT_EQ(s.tokens_sent, 25);
    EXPECT_EQ(s.faults_injected, 0);
    EXPECT_GE(s.first_request_ns, t0);
    EXPECT_LE(s.first_request_ns, now_ns());
  }
}

TEST(SynthServer, StatsCountConcurrentStreamsAndReset) {
  Options o;
  o.ttft_ms = 1500;  // every stream still waits for its first token when the last one starts
  o.tokens_per_s = 200;
  o.tokens = 4;
  SynthServer srv(o);
  srv.start();
  chimera::Runtime rt;
  auto b = backend(srv, BackendKind::ollama, rt);
  constexpr int kStreams = 60;
  std::vector<std::shared_ptr<chimera::RequestHandle>> handles;
  for (int i = 0; i < kStreams; ++i) handles.push_back(b->start(chat(), {}, {}));
  EXPECT_TRUE(eventually([&] { return srv.stats().streams_active == kStreams; }))
      << srv.stats().streams_active;
  for (auto& h : handles) {
    const Completion c = h->wait();
    EXPECT_TRUE(c.ok()) << c.error.message;
    EXPECT_EQ(c.text, tokens_text(4));
  }
  EXPECT_TRUE(eventually([&] { return srv.stats().streams_active == 0; }));
  auto s = srv.stats();
  EXPECT_EQ(s.streams_peak, kStreams);
  EXPECT_EQ(s.streams_active, 0);
  EXPECT_EQ(s.connections_accepted, kStreams);
  EXPECT_EQ(s.tokens_sent, kStreams * 4);

  srv.reset_stats();
  s = srv.stats();
  EXPECT_EQ(s.connections_accepted, 0);
  EXPECT_EQ(s.requests_served, 0);
  EXPECT_EQ(s.streams_peak, 0);
  EXPECT_EQ(s.tokens_sent, 0);
  EXPECT_EQ(s.first_request_ns, 0);
  EXPECT_EQ(s.tokens_late, 0);
  EXPECT_EQ(s.lateness_ns_sum, 0);
  EXPECT_EQ(s.last_token_sent_ns, 0);
  EXPECT_EQ(s.last_token_scheduled_ns, 0);

  // Over HTTP: the reset's own connection and request are counted before the reset.
  EXPECT_EQ(post(srv, "/stats/reset", "").status, 200);
  const int64_t t_before = now_ns();
  const Raw r = get(srv, "/stats");
  ASSERT_EQ(r.status, 200);
  const auto st = object(r.body);
  EXPECT_EQ(int_of(st, "connections_accepted"), 1);
  EXPECT_EQ(int_of(st, "requests_served"), 1);
  EXPECT_EQ(int_of(st, "streams_active"), 0);
  EXPECT_EQ(int_of(st, "streams_peak"), 0);
  EXPECT_GE(int_of(st, "first_request_ns"), t_before);
  EXPECT_EQ(int_of(st, "tokens_late"), 0);
  EXPECT_EQ(int_of(st, "lateness_ns_sum"), 0);
  EXPECT_EQ(int_of(st, "last_token_sent_ns"), 0);
  EXPECT_EQ(int_of(st, "last_token_scheduled_ns"), 0);
  EXPECT_GT(int_of(st, "cpu_ns"), 0);
  EXPECT_TRUE(st.contains("options"));
}

// ---- the wire ---------------------------------------------------------------------------------

struct WireCase {
  const char* target;
  bool sse;
  bool chat;
};

TEST(SynthServer, EveryTokenChunkCarriesServerSentNs) {
  Options o;
  o.ttft_ms = 20;
  o.tokens_per_s = 200;
  o.tokens = 10;
  SynthServer srv(o);
  srv.start();
  for (const WireCase wc :
       {WireCase{"/api/chat", false, true}, WireCase{"/api/generate", false, false},
        WireCase{"/v1/chat/completions", true, true}, WireCase{"/v1/completions", true, false}}) {
    SCOPED_TRACE(wc.target);
    const std::string body =
        wc.chat ? R"({"model":"m1","messages":[{"role":"user","content":"hi"}],"stream":true})"
                : R"({"model":"m1","prompt":"hi","stream":true})";
    srv.reset_stats();
    const int64_t t0 = now_ns();
    const Raw r = post(srv, wc.target, body);
    const int64_t t1 = now_ns();
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.transfer_encoding, "chunked");
    EXPECT_EQ(r.content_type, wc.sse ? "text/event-stream" : "application/x-ndjson");
    EXPECT_TRUE(r.keep_alive);
    const auto recs = records(r.body, wc.sse);
    int tokens = 0;
    int64_t prev_sent = 0;
    int64_t prev_scheduled = 0;
    int64_t lateness_sum = 0;
    int64_t late = 0;
    std::string text;
    for (const auto& rec : recs) {
      if (rec == "[DONE]") continue;
      const auto o = object(rec);
      bool token = false;
      if (wc.sse) {
        const auto& choices = o.at("choices").as_array();
        if (!choices.empty() && choices[0].as_object().at("finish_reason").is_null()) {
          token = true;
          const auto& ch = choices[0].as_object();
          text += wc.chat ? str(ch.at("delta").at("content")) : str(ch.at("text"));
          if (wc.chat && tokens == 0) EXPECT_EQ(ch.at("delta").at("role"), "assistant");
        }
      } else if (!o.at("done").as_bool()) {
        token = true;
        text += wc.chat ? str(o.at("message").at("content")) : str(o.at("response"));
      }
      EXPECT_EQ(o.at("model"), "m1");
      if (!token) continue;
      const int64_t sent = int_of(o, "server_sent_ns");
      const int64_t scheduled = int_of(o, "scheduled_ns");
      EXPECT_GE(sent, t0);
      EXPECT_LE(sent, t1);
      EXPECT_GE(sent, scheduled);  // never early
      EXPECT_GE(sent, prev_sent);
      if (tokens == 0) {
        EXPECT_GE(scheduled, t0 + 20 * kMs);
      } else {
        EXPECT_NEAR(static_cast<double>(scheduled - prev_scheduled), 5e6, 1e3);  // 1/200 s
      }
      prev_sent = sent;
      prev_scheduled = scheduled;
      lateness_sum += sent - scheduled;
      late += sent - scheduled > kMs ? 1 : 0;
      ++tokens;
    }
    EXPECT_EQ(tokens, 10);
    EXPECT_EQ(text, tokens_text(10));
    // The server's own timeliness figures are those of the chunks it wrote.
    EXPECT_TRUE(eventually([&] { return srv.stats().streams_active == 0; }));
    const auto st = srv.stats();
    EXPECT_EQ(st.lateness_ns_sum, lateness_sum);
    EXPECT_EQ(st.tokens_late, late);
    EXPECT_EQ(st.last_token_sent_ns, prev_sent);
    EXPECT_EQ(st.last_token_scheduled_ns, prev_scheduled);

    if (wc.sse) {
      // ..., the chunk with finish_reason, the usage chunk, [DONE].
      ASSERT_GE(recs.size(), 13u);
      EXPECT_EQ(recs.back(), "[DONE]");
      const auto finish = object(recs[recs.size() - 3]);
      EXPECT_EQ(finish.at("choices").at(0).at("finish_reason"), "stop");
      const auto usage = object(recs[recs.size() - 2]);
      EXPECT_TRUE(usage.at("choices").as_array().empty());
      EXPECT_EQ(usage.at("usage").at("completion_tokens"), 10);
      EXPECT_EQ(usage.at("usage").at("prompt_tokens"), 1);
      EXPECT_EQ(usage.at("usage").at("total_tokens"), 11);
      const auto& t = usage.at("timings").as_object();
      EXPECT_EQ(t.at("prompt_ms").to_number<double>(), 20.0);
      EXPECT_EQ(t.at("predicted_n"), 10);
      EXPECT_EQ(t.at("predicted_ms").to_number<double>(), 50.0);
      EXPECT_EQ(t.at("predicted_per_second").to_number<double>(), 200.0);
      EXPECT_EQ(usage.at("object"), wc.chat ? "chat.completion.chunk" : "text_completion");
    } else {
      const auto last = object(recs.back());
      EXPECT_EQ(last.at("done"), true);
      EXPECT_EQ(last.at("done_reason"), "stop");
      EXPECT_EQ(int_of(last, "eval_count"), 10);
      EXPECT_EQ(int_of(last, "eval_duration"), 50 * kMs);
      EXPECT_EQ(int_of(last, "prompt_eval_duration"), 20 * kMs);
      EXPECT_EQ(int_of(last, "prompt_eval_count"), 1);
      EXPECT_EQ(int_of(last, "load_duration"), 0);
      EXPECT_GE(int_of(last, "total_duration"), 65 * kMs);  // 20 ms + 9 intervals of 5 ms
      EXPECT_TRUE(last.contains("created_at"));
    }
  }
}

TEST(SynthServer, PerRequestOverridesAndTokenLimits) {
  SynthServer srv(fast(64));
  srv.start();
  // synth.tokens, synth.tokens_per_s, synth.ttft_ms.
  const int64_t t0 = now_ns();
  Raw r = post(
      srv, "/api/chat",
      R"({"model":"synth","messages":[],"synth":{"tokens":3,"tokens_per_s":50,"ttft_ms":40}})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto recs = records(r.body, false);
  ASSERT_EQ(recs.size(), 4u);
  auto first = object(recs[0]);
  EXPECT_GE(int_of(first, "scheduled_ns"), t0 + 40 * kMs);
  EXPECT_EQ(int_of(object(recs[2]), "scheduled_ns") - int_of(first, "scheduled_ns"), 40 * kMs);
  EXPECT_EQ(object(recs[3]).at("eval_count"), 3);

  // options.num_predict (Ollama) and max_tokens (OpenAI) set the count and finish "length".
  r = post(srv, "/api/generate", R"({"model":"synth","prompt":"x","options":{"num_predict":4}})");
  recs = records(r.body, false);
  ASSERT_EQ(recs.size(), 5u);
  EXPECT_EQ(object(recs[4]).at("done_reason"), "length");
  r = post(srv, "/api/generate", R"({"model":"synth","prompt":"x","options":{"num_predict":-1}})");
  EXPECT_EQ(records(r.body, false).size(), 65u);  // -1: no limit, the server's default
  r = post(srv, "/v1/completions", R"({"prompt":"x","max_tokens":2,"stream":true})");
  recs = records(r.body, true);
  ASSERT_EQ(recs.size(), 5u);  // 2 tokens, finish, usage, [DONE]
  EXPECT_EQ(object(recs[2]).at("choices").at(0).at("finish_reason"), "length");
  // Non-streaming OpenAI is the default.
  r = post(srv, "/v1/chat/completions",
           R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":3})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/json");
  auto whole = object(r.body);
  EXPECT_EQ(str(whole.at("choices").at(0).at("message").at("content")), tokens_text(3));
  EXPECT_EQ(whole.at("usage").at("completion_tokens"), 3);
  EXPECT_TRUE(whole.contains("server_sent_ns"));
  // Zero tokens: only the final record.
  r = post(srv, "/api/chat", R"({"model":"synth","messages":[],"options":{"num_predict":0}})");
  recs = records(r.body, false);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(object(recs[0]).at("eval_count"), 0);
}

TEST(SynthServer, JitterIsDeterministicForASeed) {
  auto deltas = [](uint64_t seed) {
    Options o;
    o.tokens_per_s = 200;  // 5 ms apart
    o.tokens = 20;
    o.jitter_ms = 2;
    o.seed = seed;
    SynthServer srv(o);
    srv.start();
    const Raw r = post(srv, "/api/chat", R"({"model":"synth","messages":[]})");
    std::vector<int64_t> d;
    int64_t prev = 0;
    for (const auto& rec : records(r.body, false)) {
      const auto o2 = object(rec);
      if (o2.at("done").as_bool()) break;
      const int64_t s = int_of(o2, "scheduled_ns");
      if (prev != 0) d.push_back(s - prev);
      prev = s;
    }
    return d;
  };
  const auto a = deltas(5);
  const auto b = deltas(5);
  const auto c = deltas(6);
  ASSERT_EQ(a.size(), 19u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  bool moved = false;
  for (int64_t d : a) {
    EXPECT_GE(d, 0);            // never out of order
    EXPECT_LE(d, 9 * kMs + 1);  // 5 ms + 2 x 2 ms at most
    if (d != 5 * kMs) moved = true;
  }
  EXPECT_TRUE(moved);
}

TEST(SynthServer, EndpointsAndErrors) {
  SynthServer srv(fast());
  srv.start();
  Raw r = get(srv, "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(object(r.body).at("status"), "ok");
  r = get(srv, "/api/version");
  EXPECT_EQ(object(r.body).at("version"), "synth-0.1");
  r = get(srv, "/v1/models");
  EXPECT_EQ(object(r.body).at("data").at(0).at("id"), "synth");
  r = get(srv, "/api/tags");
  EXPECT_EQ(object(r.body).at("models").at(0).at("name"), "synth");

  r = get(srv, "/nowhere");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(str(object(r.body).at("error")).find("/nowhere"), std::string::npos);
  r = get(srv, "/api/chat");
  EXPECT_EQ(r.status, 405);

  r = post(srv, "/api/chat", R"({"model": "synth", "messages": [)");
  EXPECT_EQ(r.status, 400);
  const auto msg = str(object(r.body).at("error"));
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at byte"), std::string::npos) << msg;
  r = post(srv, "/v1/chat/completions", R"({"messages": "hi"})");
  EXPECT_EQ(r.status, 400);
  const auto oa = object(r.body).at("error").as_object();
  EXPECT_NE(str(oa.at("message")).find("messages"), std::string::npos);
  EXPECT_EQ(oa.at("type"), "invalid_request_error");
  r = post(srv, "/api/chat", R"({"messages": [], "synth": {"tokens_per_s": -1}})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("synth.tokens_per_s"), std::string::npos) << r.body;
  r = post(srv, "/api/chat", R"({"messages": [], "synth": {"fault": "explode"}})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("explode"), std::string::npos) << r.body;
  r = post(srv, "/api/chat", "");
  EXPECT_EQ(r.status, 400);

  // A 400 keeps the connection usable.
  RawClient client(srv.port());
  EXPECT_EQ(client.send(bhttp::verb::post, "/api/chat", "[1]").status, 400);
  EXPECT_EQ(client.send(bhttp::verb::get, "/health").status, 200);

  // The project's own endpoint checks and protocol detection.
  chimera::Runtime rt;
  for (const BackendKind kind : {BackendKind::ollama, BackendKind::openai}) {
    const auto info = backend(srv, kind, rt)->check();
    EXPECT_TRUE(info.healthy) << info.detail;
    ASSERT_FALSE(info.models.empty());
    EXPECT_EQ(info.models[0], "synth");
  }
  const auto detected = chimera::detect_backend(srv.url(), rt);
  EXPECT_FALSE(detected.error) << detected.error.message;
}

// ---- faults -----------------------------------------------------------------------------------

struct FaultCase {
  const char* spec;
  ErrorKind kind;
  int tokens_before;
  const char* words;  // in the client's error message
};

TEST(SynthServer, EveryFaultGivesTheErrorTheClientReports) {
  for (const FaultCase fc : {FaultCase{"drop-after:3", ErrorKind::truncated, 3, "closed"},
                             FaultCase{"stall:2", ErrorKind::timeout, 2, "idle"},
                             FaultCase{"error-after:2", ErrorKind::server, 2, "synthetic fault"},
                             FaultCase{"503", ErrorKind::http_status, 0, "503"}}) {
    for (const BackendKind kind : {BackendKind::ollama, BackendKind::openai}) {
      SCOPED_TRACE(std::string(fc.spec) + " " + to_string(kind));
      Options o = fast(6);
      std::string error;
      ASSERT_TRUE(chimera::synth::parse_fault(fc.spec, o.fault, error)) << error;
      SynthServer srv(o);
      srv.start();
      chimera::Runtime rt;
      auto b = backend(srv, kind, rt, /*idle_ms=*/300);
      int tokens = 0;
      const auto t0 = std::chrono::steady_clock::now();
      const Completion c = b->generate(chat(), [&](const TokenEvent&) {
        ++tokens;
        return true;
      });
      EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
      EXPECT_EQ(c.error.kind, fc.kind) << c.error.message;
      EXPECT_NE(c.error.message.find(fc.words), std::string::npos) << c.error.message;
      EXPECT_EQ(tokens, fc.tokens_before);
      EXPECT_EQ(c.text, tokens_text(fc.tokens_before));
      if (fc.kind == ErrorKind::http_status) EXPECT_EQ(c.error.http_status, 503);
      EXPECT_EQ(srv.stats().faults_injected, 1);
      // The stalled stream ends on the server once the client has given up.
      EXPECT_TRUE(eventually([&] { return srv.stats().streams_active == 0; }));
    }
  }
}

TEST(SynthServer, FaultsOnWholeResponsesAndPerRequest) {
  SynthServer srv(fast(4));
  srv.start();
  // Per request, on a server without faults.
  Raw r = post(srv, "/api/chat", R"({"messages":[],"synth":{"fault":"error-after:1"}})");
  ASSERT_EQ(r.status, 200);
  auto recs = records(r.body, false);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(object(recs[1]).at("error"), "synthetic fault: error after 1 tokens");
  r = post(srv, "/v1/completions",
           R"({"prompt":"x","stream":true,"synth":{"fault":"error-after:0"}})");
  recs = records(r.body, true);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(object(recs[0]).at("error").at("type"), "server_error");
  r = post(srv, "/v1/completions", R"({"prompt":"x","synth":{"fault":"503"}})");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(object(r.body).at("error").at("type"), "server_error");
  r = post(srv, "/api/chat", R"({"messages":[],"stream":false,"synth":{"fault":"error-after:2"}})");
  EXPECT_EQ(r.status, 500);
  r = post(srv, "/api/chat", R"({"messages":[],"stream":false,"synth":{"fault":"drop-after:2"}})");
  EXPECT_EQ(r.status, -1);  // closed without a response
  // A K beyond the token count still faults, after the last token.
  r = post(srv, "/api/chat", R"({"messages":[],"synth":{"fault":"error-after:99"}})");
  recs = records(r.body, false);
  ASSERT_EQ(recs.size(), 5u);
  EXPECT_TRUE(object(recs[4]).contains("error"));

  // "none" lifts the server-wide fault for one request.
  Options o = fast(2);
  o.fault = {chimera::synth::FaultKind::http_503, 0};
  SynthServer faulty(o);
  faulty.start();
  EXPECT_EQ(post(faulty, "/api/chat", R"({"messages":[]})").status, 503);
  EXPECT_EQ(post(faulty, "/api/chat", R"({"messages":[],"synth":{"fault":"none"}})").status, 200);
}

TEST(SynthServer, FaultRatePicksTheSameRequestsForASeed) {
  auto pattern = [](uint64_t seed) {
    Options o = fast(1);
    o.fault = {chimera::synth::FaultKind::http_503, 0};
    o.fault_rate = 0.3;
    o.seed = seed;
    SynthServer srv(o);
    srv.start();
    chimera::Runtime rt;
    auto b = backend(srv, BackendKind::ollama, rt);
    std::string p;
    for (int i = 0; i < 60; ++i) p += b->generate(chat()).ok() ? '.' : 'x';
    EXPECT_EQ(srv.stats().faults_injected, std::count(p.begin(), p.end(), 'x'));
    return p;
  };
  const std::string a = pattern(11);
  EXPECT_EQ(a, pattern(11));
  EXPECT_NE(a, pattern(12));
  const auto failed = std::count(a.begin(), a.end(), 'x');
  EXPECT_GT(failed, 5) << a;  // 18 expected
  EXPECT_LT(failed, 35) << a;
}

TEST(SynthServer, MixGivesEachFaultInTurn) {
  Options o = fast(4);
  o.fault = {chimera::synth::FaultKind::mix, 1};
  SynthServer srv(o);
  srv.start();
  chimera::Runtime rt;
  auto b = backend(srv, BackendKind::openai, rt, /*idle_ms=*/300);
  std::map<ErrorKind, int> seen;
  for (int i = 0; i < 24; ++i) {
    const Completion c = b->generate(chat());
    ASSERT_FALSE(c.ok()) << "request " << i << " was not faulted";
    EXPECT_EQ(c.text.empty(), c.error.kind == ErrorKind::http_status) << c.error.message;
    ++seen[c.error.kind];
  }
  // drop -> truncated, stall -> timeout, error-after -> server, 503 -> http_status.
  for (ErrorKind k :
       {ErrorKind::truncated, ErrorKind::timeout, ErrorKind::server, ErrorKind::http_status}) {
    EXPECT_GT(seen[k], 0) << "error kind " << static_cast<int>(k) << " never seen in 24 requests";
  }
  EXPECT_EQ(srv.stats().faults_injected, 24);

  chimera::synth::Fault f;
  std::string error;
  ASSERT_TRUE(chimera::synth::parse_fault("mix:2", f, error)) << error;
  EXPECT_EQ(f.kind, chimera::synth::FaultKind::mix);
  EXPECT_EQ(chimera::synth::to_string(f), "mix:2");
}

// ---- lifetime and load ------------------------------------------------------------------------

TEST(SynthServer, ClientCancelEndsTheStream) {
  Options o;
  o.tokens_per_s = 50;
  o.tokens = 500;  // 10 s if nobody stops it
  SynthServer srv(o);
  srv.start();
  chimera::Runtime rt;
  auto b = backend(srv, BackendKind::openai, rt);
  Request r = chat();
  r.stream = true;
  std::atomic<int> seen{0};
  auto h = b->start(r, [&](const TokenEvent&) { return ++seen < 3; }, {});
  const Completion c = h->wait();
  EXPECT_EQ(c.error.kind, ErrorKind::cancelled);
  EXPECT_TRUE(eventually([&] { return srv.stats().streams_active == 0; }));
  EXPECT_LT(srv.stats().tokens_sent, 20);
}

TEST(SynthServer, StopEndsEveryConnectionPromptly) {
  Options o = fast(3);
  o.fault = {chimera::synth::FaultKind::stall, 1};
  SynthServer srv(o);
  srv.start();
  chimera::Runtime rt;
  auto b = backend(srv, BackendKind::ollama, rt, /*idle_ms=*/20'000);
  std::promise<void> first_token;
  auto h = b->start(chat(),
                    [&](const TokenEvent&) {
                      first_token.set_value();
                      return true;
                    },
                    {});
  ASSERT_EQ(first_token.get_future().wait_for(3s), std::future_status::ready);
  RawClient idle(srv.port());  // an idle keep-alive connection too
  EXPECT_EQ(idle.send(bhttp::verb::get, "/health").status, 200);
  EXPECT_EQ(srv.stats().streams_active, 1);
  const auto t0 = std::chrono::steady_clock::now();
  srv.stop();
  EXPECT_FALSE(srv.running());
  const Completion c = h->wait();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(c.error.kind, ErrorKind::truncated) << c.error.message;
  EXPECT_EQ(srv.stats().streams_active, 0);
  EXPECT_EQ(idle.send(bhttp::verb::get, "/health").status, -1);
  srv.stop();  // idempotent
}

TEST(SynthServer, HundredsOfStreamsAtOnceThroughTheClient) {
  Options o;
  o.ttft_ms = 1000;
  o.tokens_per_s = 50;
  o.tokens = 10;
  SynthServer srv(o);
  srv.start();
  chimera::Runtime rt;
  auto b = backend(srv, BackendKind::ollama, rt);
  constexpr int kStreams = 400;
  std::vector<std::shared_ptr<chimera::RequestHandle>> handles;
  for (int i = 0; i < kStreams; ++i) handles.push_back(b->start(chat(), {}, {}));
  int ok = 0;
  for (auto& h : handles) {
    const Completion c = h->wait();
    if (c.ok() && c.text == tokens_text(10)) ++ok;
  }
  EXPECT_EQ(ok, kStreams);
  EXPECT_EQ(srv.stats().tokens_sent, kStreams * 10);
  EXPECT_GE(srv.stats().streams_peak, kStreams / 2);  // most overlap, on any machine
}

TEST(SynthServer, SeveralIoThreadsServeTheSameWay) {
  Options o;
  o.threads = 3;  // each connection on its own strand
  o.ttft_ms = 20;
  o.tokens_per_s = 200;
  o.tokens = 10;
  o.fault = {chimera::synth::FaultKind::error_after, 4};
  o.fault_rate = 0.25;
  SynthServer srv(o);
  srv.start();
  chimera::Runtime rt(2);
  auto b = backend(srv, BackendKind::openai, rt);
  constexpr int kStreams = 120;
  std::vector<std::shared_ptr<chimera::RequestHandle>> handles;
  for (int i = 0; i < kStreams; ++i) handles.push_back(b->start(chat(), {}, {}));
  int ok = 0;
  int faulted = 0;
  for (auto& h : handles) {
    const Completion c = h->wait();
    if (c.ok() && c.text == tokens_text(10)) ++ok;
    if (c.error.kind == ErrorKind::server && c.text == tokens_text(4)) ++faulted;
  }
  EXPECT_EQ(ok + faulted, kStreams);
  EXPECT_TRUE(eventually([&] { return srv.stats().streams_active == 0; }));
  const auto s = srv.stats();
  EXPECT_EQ(s.faults_injected, faulted);
  EXPECT_EQ(s.tokens_sent, ok * 10 + faulted * 4);
  EXPECT_EQ(s.streams_active, 0);
  srv.stop();
}

TEST(SynthServer, OptionsAreValidated) {
  Options o;
  o.tokens_per_s = 0;
  EXPECT_NE(chimera::synth::validate(o).find("tokens_per_s"), std::string::npos);
  SynthServer bad(o);
  EXPECT_THROW(bad.start(), std::invalid_argument);
  o = Options{};
  o.bind = "not-an-address";
  SynthServer bad_bind(o);
  EXPECT_THROW(bad_bind.start(), std::invalid_argument);

  SynthServer first(fast());
  first.start();
  o = fast();
  o.port = first.port();
  SynthServer second(o);
  try {
    second.start();
    ADD_FAILURE() << "a second server bound the same port";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(first.port())), std::string::npos)
        << e.what();
  }

  chimera::synth::Fault f;
  std::string error;
  EXPECT_TRUE(chimera::synth::parse_fault("drop-after:7", f, error));
  EXPECT_EQ(f.kind, chimera::synth::FaultKind::drop_after);
  EXPECT_EQ(f.after_tokens, 7);
  EXPECT_EQ(chimera::synth::to_string(f), "drop-after:7");
  EXPECT_FALSE(chimera::synth::parse_fault("stall", f, error));
  EXPECT_NE(error.find("stall:3"), std::string::npos) << error;
  EXPECT_FALSE(chimera::synth::parse_fault("stall:-1", f, error));
  EXPECT_FALSE(chimera::synth::parse_fault("boom:1", f, error));
  EXPECT_NE(error.find("drop-after:K"), std::string::npos) << error;
}

// ---- the command ------------------------------------------------------------------------------

struct CliResult {
  int rc = -1;
  std::string out;
};

CliResult run_cli(const std::string& args) {
  const std::string cmd = std::string(CHIMERA_CLI) + " " + args + " 2>&1 </dev/null";
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(SynthServerCli, ServesUntilSigtermThenPrintsStats) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::vector<std::string> args = {CHIMERA_CLI, "synth-server",   "--port", "0", "--tokens",
                                   "3",         "--tokens-per-s", "500"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(::posix_spawn(&pid, CHIMERA_CLI, &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  FILE* out = ::fdopen(fds[0], "r");
  char line[512] = {};
  ASSERT_NE(std::fgets(line, sizeof line, out), nullptr);
  const std::string first(line);
  ASSERT_EQ(first.rfind("synth-server listening on http://127.0.0.1:", 0), 0u) << first;
  const auto at = first.find("http://");
  const std::string url = first.substr(at, first.find(' ', at) - at);

  chimera::Runtime rt;
  auto b = chimera::make_backend({.url = url, .kind = BackendKind::ollama}, rt);
  const Completion c = b->generate(chat());
  EXPECT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.text, tokens_text(3));

  ::kill(pid, SIGTERM);
  std::string rest;
  while (std::fgets(line, sizeof line, out) != nullptr) rest += line;
  std::fclose(out);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(rest.find("synth-server stopped (SIGTERM)"), std::string::npos) << rest;
  EXPECT_NE(rest.find("1 requests, 3 tokens"), std::string::npos) << rest;
  EXPECT_NE(rest.find("\"tokens_sent\":3"), std::string::npos) << rest;
}

TEST(SynthServerCli, HelpTeachesAndBadFlagsExitTwo) {
  CliResult r = run_cli("synth-server --help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("Examples"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--fault-rate"), std::string::npos);
  r = run_cli("synth-server --tokens-per-s 0");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("tokens-per-s"), std::string::npos) << r.out;
  r = run_cli("synth-server --fault explode:3");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("explode"), std::string::npos) << r.out;
  r = run_cli("synth-server --fault-rate 2");
  EXPECT_EQ(r.rc, 2) << r.out;
  r = run_cli("synth-server --no-such-flag");
  EXPECT_EQ(r.rc, 2) << r.out;
  r = run_cli("synth-server --bind nowhere --port 0");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("nowhere"), std::string::npos) << r.out;

  SynthServer holder(fast());
  holder.start();
  r = run_cli("synth-server --port " + std::to_string(holder.port()));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("in use"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("synth-server: cannot bind 127.0.0.1:" + std::to_string(holder.port())),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("another process holds the port"), std::string::npos) << r.out;
}

}  // namespace

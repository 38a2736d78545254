// The multi-agent runner: the METRICS.md figures on hand-made records with known answers, and
// whole scenarios against the synthetic server (the tool the benchmarks measure with) and the
// in-process engine.
#include "support/test_support.hpp"

#include <chimera/scenarios/multi.hpp>
#include <chimera/synth/server.hpp>

#include <gtest/gtest.h>

#include <filesystem>

using namespace chimera;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMs = 1'000'000;

multi::RequestRecord rec(int agent, int request, int64_t send, int64_t first, int64_t last,
                         int64_t tokens, int64_t chunks, int64_t lag_sum, int64_t stalls) {
  // Times start at 1 s: a zero time means "none" in a record.
  constexpr int64_t kBase = 1000 * kMs;
  send += kBase;
  first += kBase;
  last += kBase;
  multi::RequestRecord r;
  r.agent = agent;
  r.request = request;
  r.ok = true;
  r.t_send_ns = send;
  r.t_first_token_ns = first;
  r.t_last_token_ns = last;
  r.t_done_ns = last + 1 * kMs;
  r.tokens_out = tokens;
  r.chunks = chunks;
  r.lag_sum_ns = lag_sum;
  r.stalls = stalls;
  r.first_byte_server_ns = first - kMs / 2;
  return r;
}

pool::PoolConfig pool_of(const std::string& url, BackendKind kind) {
  pool::PoolConfig pc;
  pool::PoolEndpoint e;
  e.config.url = url;
  e.config.kind = kind;
  pc.endpoints = {e};
  return pc;
}

}  // namespace

TEST(MultiFigures, KnownAnswers) {
  // Two agents. Agent 0: one request, 11 tokens over 100 ms after a 10 ms TTFT. Agent 1: two
  // requests of 11 tokens, each 100 ms of decoding.
  std::vector<multi::RequestRecord> rs = {
      rec(0, 0, 0, 10 * kMs, 110 * kMs, 11, 11, 11 * 2 * kMs, 2),
      rec(1, 0, 0, 10 * kMs, 110 * kMs, 11, 11, 11 * 1 * kMs, 0),
      rec(1, 1, 111 * kMs, 121 * kMs, 221 * kMs, 11, 11, 11 * 1 * kMs, 1),
  };
  const auto f = multi::concurrency_figures(rs, 2, /*lone decode*/ 100.0, /*floor*/ kMs);
  EXPECT_EQ(f.requests, 3);
  EXPECT_EQ(f.tokens, 33);
  EXPECT_DOUBLE_EQ(f.wall_s, 0.221);  // first t_send 0 to last token 221 ms
  EXPECT_DOUBLE_EQ(f.system_tps, 33 / 0.221);
  EXPECT_DOUBLE_EQ(*f.efficiency, (33 / 0.221) / (2 * 100.0));
  EXPECT_DOUBLE_EQ(f.decode_tps_client, 100.0);  // (11-1) / 100 ms for each request
  EXPECT_DOUBLE_EQ(*f.stall_rate, 3.0 / 33.0);
  // Σ lag − chunks × floor = (22 + 11 + 11 − 33) ms = 11 ms, over Σ e2e = 111 + 111 + 111 ms.
  EXPECT_NEAR(*f.contention, 11.0 / 333.0, 1e-12);
  // Agent 0 ran 111 ms, agent 1 ran 222 ms: balance = 333 / (2 × 222).
  EXPECT_NEAR(f.balance, 333.0 / 444.0, 1e-12);
  EXPECT_DOUBLE_EQ(f.ttft_p50, 10.0);
  EXPECT_DOUBLE_EQ(*f.overhead_ttft_p50, 0.5);

  std::vector<multi::RequestRecord> lone(1);
  lone[0].lags_ns = {5, 1, 3, 2, 4};
  EXPECT_EQ(multi::median_lag(lone), 3);
  EXPECT_FALSE(multi::median_lag({}));
}

TEST(MultiRecords, JsonLineHasTheRecordKeys) {
  auto r = rec(3, 1, 5, 10, 20, 4, 4, 0, 0);
  r.lags_ns = {7, 8};
  const std::string line = multi::record_json(r, "chimeraforge");
  for (const char* key :
       {"\"program\":\"chimeraforge\"", "\"agent\":3", "\"request\":1", "\"ok\":true",
        "\"t_send_ns\":1000000005", "\"tokens_out\":4", "\"chunks\":4", "\"lag_sum_ns\":0",
        "\"stalls\":0", "\"lags_ns\":[7,8]"}) {
    EXPECT_NE(line.find(key), std::string::npos) << key << " in " << line;
  }
}

TEST(Multi, HomogeneousAgainstTheSynthServerOnEveryExecutor) {
  synth::Options so;
  so.tokens_per_s = 200;
  so.tokens = 10;
  synth::SynthServer server(so);
  server.start();
  for (ExecutorKind e : {ExecutorKind::single, ExecutorKind::shared, ExecutorKind::per_core,
                         ExecutorKind::thread_per_agent}) {
    for (BackendKind kind : {BackendKind::ollama, BackendKind::openai}) {
      Engine engine({.pools = {pool_of(server.url(), kind)}, .executor = e, .threads = 2});
      multi::MultiOptions mo;
      mo.agents = 20;
      mo.requests_per_agent = 2;
      mo.model = "synth";
      mo.max_tokens = 10;
      mo.record_lags = true;
      const auto r = multi::run_multi(engine, mo);
      ASSERT_EQ(r.records.size(), 40u) << to_string(e);
      for (const auto& rec : r.records) {
        EXPECT_TRUE(rec.ok) << rec.error;
        EXPECT_EQ(rec.tokens_out, 10);
        EXPECT_EQ(rec.chunks, 10);
        EXPECT_EQ(rec.lags_ns.size(), 10u);  // every chunk carried the server's send time
        EXPECT_NE(rec.first_byte_server_ns, 0);
        EXPECT_GE(rec.t_first_token_ns, rec.first_byte_server_ns);
      }
      const auto f = multi::concurrency_figures(r.records, 20, std::nullopt, std::nullopt);
      EXPECT_EQ(f.errors, 0);
      EXPECT_EQ(f.tokens, 400);
      EXPECT_TRUE(f.stall_rate.has_value());
      EXPECT_GT(r.rss_peak_bytes, 0);
    }
  }
}

TEST(Multi, PersonasUseTwoPools) {
  synth::Options so;
  so.tokens_per_s = 500;
  so.tokens = 5;
  synth::SynthServer a(so), b(so);
  a.start();
  b.start();
  auto pa = pool_of(a.url(), BackendKind::ollama);
  pa.name = "collector";
  auto pb = pool_of(b.url(), BackendKind::ollama);
  pb.name = "insight";
  Engine engine({.pools = {pa, pb}});
  multi::MultiOptions mo;
  mo.scenario = multi::Scenario::personas;
  mo.agents = 6;
  mo.requests_per_agent = 2;
  mo.model = "synth";
  const auto r = multi::run_multi(engine, mo);
  ASSERT_EQ(r.records.size(), 12u);
  for (const auto& rec : r.records) {
    EXPECT_TRUE(rec.ok) << rec.error;
    EXPECT_EQ(rec.endpoint, rec.agent % 2 == 0 ? a.url() : b.url()) << "agent " << rec.agent;
  }
}

TEST(Multi, WorkflowScenarioInProcess) {
  pool::PoolConfig pc = pool_of(test::tiny_model().string(), BackendKind::llama);
  pc.endpoints[0].config.llama.ctx_per_seq = 2048;
  pc.endpoints[0].config.llama.parallel = 4;
  pc.endpoints[0].config.llama.threads = 2;
  Engine engine({.pools = {pc}, .executor = ExecutorKind::single});
  const fs::path out = fs::temp_directory_path() / "chimera-multi-workflow-test";
  fs::remove_all(out);
  multi::MultiOptions mo;
  mo.scenario = multi::Scenario::workflow;
  mo.agents = 3;
  mo.max_tokens = 24;
  mo.workflow_data = {
      (fs::path(CHIMERA_TEST_DATA) / ".." / ".." / "data" / "sample").lexically_normal()};
  mo.workflow_out = out;
  const auto r = multi::run_multi(engine, mo);
  EXPECT_EQ(r.run.failed, 0);
  for (const auto& rec : r.records) EXPECT_TRUE(rec.ok) << rec.error;
  ASSERT_EQ(r.records.size(), 6u);  // an analysis and a report call per agent
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(fs::exists(out / ("agent-" + std::to_string(i)) / "report.md")) << i;
  }
  fs::remove_all(out);
}

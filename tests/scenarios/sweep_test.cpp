// The sweep's grid, where each setting goes for each backend, and the statistics over runs
// (sweep.hpp). `chimeraforge sweep` itself runs in tests/cli/sweep_cli_test.cpp.
#include <chimera/core/options.hpp>
#include <chimera/scenarios/sweep.hpp>

#include <gtest/gtest.h>

#include <cmath>

namespace {

using namespace chimera;
using chimera::sweep::Axis;
using chimera::sweep::Placement;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(SweepAxis, ReadsNameAndValuesCheckedByTheOptionTable) {
  Axis a;
  ASSERT_EQ(sweep::parse_axis("num_ctx=256,512", a), "");
  EXPECT_EQ(a.name, "num_ctx");
  EXPECT_EQ(a.values, (std::vector<std::string>{"256", "512"}));
  ASSERT_EQ(sweep::parse_axis("temperature=0.6", a), "");
  EXPECT_EQ(a.values.size(), 1u);
}

TEST(SweepAxis, RefusesWhatTheTableRefusesNamingTheText) {
  Axis a;
  EXPECT_TRUE(contains(sweep::parse_axis("num_gpus=60,80", a), "'num_gpus' is not an option"));
  EXPECT_TRUE(contains(sweep::parse_axis("num_ctx=256,0", a), "num_ctx is 0"));
  EXPECT_TRUE(contains(sweep::parse_axis("num_ctx=256,5l2", a), "it must be a whole number"));
  EXPECT_TRUE(contains(sweep::parse_axis("temperature=0.6,nan", a), "finite"));
  EXPECT_TRUE(contains(sweep::parse_axis("top_k=40,40", a), "given twice"));
  EXPECT_TRUE(contains(sweep::parse_axis("top_k=40,", a), "top_k is ''"));
  EXPECT_TRUE(contains(sweep::parse_axis("num_ctx", a), "NAME=V1,V2"));
  EXPECT_TRUE(contains(sweep::parse_axis("stop=a,b", a), "cannot be a grid axis"));
}

TEST(SweepGrid, EveryCombinationFirstAxisSlowest) {
  std::vector<Axis> axes(2);
  ASSERT_EQ(sweep::parse_axis("num_ctx=256,512", axes[0]), "");
  ASSERT_EQ(sweep::parse_axis("temperature=0.6,0.8", axes[1]), "");
  Options base;
  base.seed = 7;
  std::vector<sweep::Configuration> grid;
  ASSERT_EQ(sweep::expand_grid(axes, base, grid), "");
  ASSERT_EQ(grid.size(), 4u);
  EXPECT_EQ(grid[0].label, "num_ctx=256 temperature=0.6");
  EXPECT_EQ(grid[1].label, "num_ctx=256 temperature=0.8");
  EXPECT_EQ(grid[3].label, "num_ctx=512 temperature=0.8");
  EXPECT_EQ(grid[3].options.num_ctx, 512);
  EXPECT_EQ(grid[3].options.temperature, 0.8);
  EXPECT_EQ(grid[3].options.seed, 7);  // the base applies to every configuration

  std::vector<sweep::Configuration> none;
  ASSERT_EQ(sweep::expand_grid({}, base, none), "");
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].label, "defaults");

  axes.push_back(axes[0]);
  EXPECT_TRUE(contains(sweep::expand_grid(axes, base, grid), "num_ctx is given twice"));
}

TEST(SweepPlacement, EachBackendTakesEachSettingWhereItCan) {
  Placement p{};
  EXPECT_EQ(sweep::placement_of(BackendKind::ollama, "num_gpu", false, p), "");
  EXPECT_EQ(p, Placement::per_request);
  EXPECT_EQ(sweep::placement_of(BackendKind::llama, "num_ctx", false, p), "");
  EXPECT_EQ(p, Placement::model_reload);
  EXPECT_EQ(sweep::placement_of(BackendKind::llama, "temperature", false, p), "");
  EXPECT_EQ(p, Placement::per_request);
  EXPECT_EQ(sweep::placement_of(BackendKind::openai, "num_gpu", true, p), "");
  EXPECT_EQ(p, Placement::server_restart);
  EXPECT_EQ(sweep::placement_of(BackendKind::openai, "top_p", false, p), "");
  EXPECT_EQ(p, Placement::per_request);
  const std::string e = sweep::placement_of(BackendKind::openai, "num_gpu", false, p);
  EXPECT_TRUE(contains(e, "did not start")) << e;
  EXPECT_TRUE(contains(e, "-ngl")) << e;
}

TEST(SweepPlacement, ServerKeyHoldsOnlyWhatRestartsOrReloads) {
  Options o;
  o.num_ctx = 512;
  o.num_gpu = 80;
  o.temperature = 0.8;
  EXPECT_EQ(sweep::server_key(o, BackendKind::llama, false), "num_ctx=512 num_gpu=80");
  EXPECT_EQ(sweep::server_key(o, BackendKind::openai, true), "num_ctx=512 num_gpu=80");
  EXPECT_EQ(sweep::server_key(o, BackendKind::ollama, false), "");
}

multi::RequestRecord request(int64_t ttft_ms, bool ok = true) {
  multi::RequestRecord r;
  r.ok = ok;
  r.t_send_ns = 1'000'000'000;
  if (ok) r.t_first_token_ns = r.t_send_ns + ttft_ms * 1'000'000;
  r.t_done_ns = r.t_send_ns + (ttft_ms + 10) * 1'000'000;
  return r;
}

TEST(SweepAnomalies, CountsRequestsWaitingLongerThanTheThreshold) {
  const std::vector<multi::RequestRecord> records = {request(100), request(3'500), request(2'999),
                                                     request(4'000, false)};
  EXPECT_EQ(sweep::ttft_anomalies(records, sweep::kTtftAnomalyMs), 2);
  EXPECT_EQ(sweep::ttft_anomalies(records, 50), 4);
}

TEST(SweepSummary, MeanSdAndNPerConfigurationAndTheBest) {
  std::vector<sweep::RunFigures> runs = {
      {"a", 1, {{"ttft_client_p50_ms", 10}, {"system_tps", 100}, {"ttft_anomaly", 0}}},
      {"a", 2, {{"ttft_client_p50_ms", 14}, {"system_tps", 120}, {"ttft_anomaly", 1}}},
      {"b", 1, {{"ttft_client_p50_ms", 8}, {"system_tps", 90}, {"ttft_anomaly", 0}}},
      {"stray", 1, {{"ttft_client_p50_ms", 1}}},
  };
  const auto s = sweep::summarize(runs, {"a", "b", "never-ran"});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].runs, 2);
  const auto& ttft = s[0].metrics.at("ttft_client_p50_ms");
  EXPECT_DOUBLE_EQ(*ttft.mean, 12);
  EXPECT_NEAR(*ttft.sd, std::sqrt(8.0), 1e-12);
  EXPECT_EQ(ttft.n, 2);
  EXPECT_FALSE(s[1].metrics.at("system_tps").sd);  // one run: no sd

  const auto best = sweep::best_configurations(s);
  auto best_of = [&](const std::string& m) {
    for (const auto& b : best)
      if (b.metric == m) return b.config;
    return std::string("none");
  };
  EXPECT_EQ(best_of("ttft_client_p50_ms"), "b");  // lower is better
  EXPECT_EQ(best_of("system_tps"), "a");          // higher is better
  EXPECT_EQ(best_of("ttft_anomaly"), "b");
  EXPECT_EQ(best_of("contention"), "none");  // measured by none

  const std::string md = sweep::summary_markdown(s, 3000);
  EXPECT_TRUE(contains(md, "| a | 1 of 2 | 50.0% |")) << md;
  EXPECT_TRUE(contains(md, "| a | 12.0 ± 2.828 | 2 |")) << md;
}

TEST(SweepSummary, RunFiguresLeaveOutWhatWasNotMeasured) {
  multi::ConcurrencyFigures f;
  f.requests = 2;
  f.errors = 2;
  const auto m = sweep::run_figures(f, 0);
  EXPECT_EQ(m.count("ttft_client_p50_ms"), 0u);  // no request produced a token
  EXPECT_EQ(m.count("contention"), 0u);
  EXPECT_EQ(m.at("errors"), 2);
  EXPECT_EQ(m.at("ttft_anomaly"), 0);
}

TEST(OptionText, SetsAnOptionFromItsTextThroughTheTable) {
  Options o;
  EXPECT_EQ(set_option_text(o, "num_ctx", "512"), "");
  EXPECT_EQ(o.num_ctx, 512);
  EXPECT_EQ(set_option_text(o, "seed", "-9000000000"), "");
  EXPECT_EQ(o.seed, -9'000'000'000);
  EXPECT_EQ(set_option_text(o, "stop", "a,b"), "");
  EXPECT_EQ(o.stop, (std::vector<std::string>{"a,b"}));
  EXPECT_TRUE(contains(set_option_text(o, "num_ctx", "0"), "num_ctx is 0; it must be from 1"));
  EXPECT_TRUE(contains(set_option_text(o, "top_p", "1.5"), "top_p is 1.5"));
  EXPECT_TRUE(contains(set_option_text(o, "num_ctx", "512.5"), "a whole number"));
  EXPECT_EQ(o.num_ctx, 512);  // unchanged by the errors
}

}  // namespace

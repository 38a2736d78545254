// Experiment structure: settings in names, factors and repetitions on generated trees in three
// naming styles, effects, the best-vs-runner-up test, the dense digest, and the shared corpus.
#include "ingest/experiment_tree.hpp"

#include <chimera/ingest/digest.hpp>
#include <chimera/ingest/experiment.hpp>
#include <chimera/ingest/ingest.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

namespace ci = chimera::ingest;
namespace fs = std::filesystem;

namespace {

std::map<std::string, std::string> settings_of(std::string_view segment) {
  std::map<std::string, std::string> out;
  for (const auto& s : ci::read_segment(segment).settings)
    out[(s.repetition ? "rep:" : "") + s.key] = s.value;
  return out;
}

using Map = std::map<std::string, std::string>;

}  // namespace

TEST(Segments, NameAndNumberTokens) {
  EXPECT_EQ(settings_of("gpu100_ctx512"), (Map{{"num_gpu", "100"}, {"num_ctx", "512"}}));
  EXPECT_EQ(settings_of("run_gpu120_ctx1024_temp0p6"),
            (Map{{"num_gpu", "120"}, {"num_ctx", "1024"}, {"temperature", "0.6"}}));
  EXPECT_EQ(settings_of("t0.8"), (Map{{"temperature", "0.8"}}));
  EXPECT_EQ(settings_of("temp-0.80"), (Map{{"temperature", "0.8"}}));
  EXPECT_EQ(settings_of("ctx_2048"), (Map{{"num_ctx", "2048"}}));
  EXPECT_EQ(settings_of("run_2"), (Map{{"rep:run", "2"}}));
  EXPECT_EQ(settings_of("rep2"), (Map{{"rep:rep", "2"}}));
  EXPECT_EQ(settings_of("trial_4"), (Map{{"rep:trial", "4"}}));
  EXPECT_EQ(settings_of("20251002-151824"), (Map{{"rep:timestamp", "20251002-151824"}}));
  EXPECT_EQ(settings_of("llama3.1-8b-instruct-q4_k_m"),
            (Map{{"model", "llama3.1:8b-instruct"}, {"quantization", "q4_k_m"}}));
  EXPECT_EQ(settings_of("gemma3_270m_baseline"), (Map{{"model", "gemma3:270m"}}));
  EXPECT_EQ(ci::read_segment("gemma3_270m_baseline").rest, "baseline");
  EXPECT_EQ(ci::read_segment("runtime-async-std").rest, "runtime-async-std");
  EXPECT_EQ(ci::read_segment("baseline_report_run_1").rest, "baseline");
  EXPECT_EQ(ci::read_segment("metrics").rest, "");
}

TEST(Segments, KeyValuePairs) {
  EXPECT_EQ(
      settings_of("runtime=async-std_gpu_layers=80_ctx=512_rep=3"),
      (Map{{"runtime", "async-std"}, {"num_gpu", "80"}, {"num_ctx", "512"}, {"rep:rep", "3"}}));
  EXPECT_EQ(settings_of("bench_quant=q4_0,temperature=0.80;seed=7"),
            (Map{{"quantization", "q4_0"}, {"temperature", "0.8"}, {"rep:seed", "7"}}));
}

TEST(Numbers, SensiblePrecisionWithoutFloat32Noise) {
  EXPECT_EQ(ci::format_number(0.800000011920929), "0.8");
  EXPECT_EQ(ci::format_number(0.8999999761581421), "0.9");
  EXPECT_EQ(ci::format_number(52.3456), "52.35");
  EXPECT_EQ(ci::format_number(1234.6), "1235");
  EXPECT_EQ(ci::format_number(100), "100");
  EXPECT_EQ(ci::format_number(0), "0");
  EXPECT_EQ(ci::format_number(-3.25), "-3.25");
  // Context values from JSON written as widened float32.
  auto r = ci::ingest_buffer(R"({"options": {"temperature": 0.800000011920929,
      "top_p": 0.8999999761581421}, "tokens_per_second": 50})",
                             ci::FileType::json, "a.json");
  ASSERT_FALSE(r.records.empty());
  EXPECT_EQ(r.records[0].context->temperature, "0.8");
  EXPECT_EQ(r.records[0].context->find("top_p"), "0.9");
}

TEST(Stats, StudentT) {
  EXPECT_NEAR(ci::t_quantile(0.95, 4), 2.776, 1e-3);
  EXPECT_NEAR(ci::t_quantile(0.95, 1e6), 1.960, 1e-3);
  EXPECT_NEAR(ci::t_two_sided_p(2.776, 4), 0.05, 1e-3);
  EXPECT_NEAR(ci::t_two_sided_p(0, 10), 1.0, 1e-9);
}

class PlantedStyles : public ::testing::TestWithParam<chimera::test::TreeStyle> {};

TEST_P(PlantedStyles, FactorsLevelsRunsEffectsAndBest) {
  const fs::path root = fs::temp_directory_path() /
                        ("chimera-planted-" + std::to_string(static_cast<int>(GetParam())) + "-" +
                         std::to_string(::getpid()));
  chimera::test::PlantedTree planted;
  chimera::test::write_planted_tree(root, GetParam(), planted);
  const auto data = ci::ingest({root});
  ASSERT_TRUE(data.errors.empty())
      << data.errors.front().path << ": " << data.errors.front().reason;
  const auto x = ci::analyse_experiment(data);

  // Every factor and level, exactly.
  std::map<std::string, std::vector<std::string>> factors;
  for (const auto& f : x.factors) factors[f.key] = f.levels;
  EXPECT_EQ(factors, (std::map<std::string, std::vector<std::string>>{
                         {"num_gpu", {"60", "80", "100"}},
                         {"num_ctx", {"512", "1024"}},
                         {"runtime", {"async-std", "smol", "tokio"}}}))
      << [&] {
           std::string s;
           for (const auto& u : x.unplaced) s += u.what + ": " + u.why + "\n";
           return s;
         }();
  // The 5 runs of each configuration are one group.
  EXPECT_EQ(x.configs.size(), 18u);
  EXPECT_EQ(x.runs, 90u);
  ASSERT_GE(x.metrics.size(), 2u);
  EXPECT_EQ(x.metrics[0].name, "throughput");
  EXPECT_EQ(x.metrics[1].name, "ttft");
  EXPECT_EQ(x.metrics[1].unit, "ms");
  for (const auto& c : x.configs) {
    EXPECT_EQ(c.runs, 5u) << c.label;
    ASSERT_NE(c.find(0), nullptr) << c.label;
    EXPECT_EQ(c.find(0)->stats.n, 5u) << c.label;
    EXPECT_EQ(c.find(1)->stats.n, 5u) << c.label;
    EXPECT_LT(c.find(0)->stats.sd, 3.0) << c.label;
    EXPECT_LE(c.find(0)->stats.ci_low, c.find(0)->stats.mean);
    EXPECT_GE(c.find(0)->stats.ci_high, c.find(0)->stats.mean);
  }
  // The planted factor first for the metric it moves.
  auto throughput = x.effects_of(0);
  ASSERT_EQ(throughput.size(), 3u);
  EXPECT_EQ(x.factors[throughput[0]->factor].key, "num_gpu");
  EXPECT_GT(throughput[0]->share, 0.6);
  auto ttft = x.effects_of(1);
  ASSERT_FALSE(ttft.empty());
  EXPECT_EQ(x.factors[ttft[0]->factor].key, "runtime");
  // Level means over the others: 100 GPU layers about 16 tokens/s above 60.
  const auto& gpu = *throughput[0];
  ASSERT_EQ(gpu.levels.size(), 3u);
  EXPECT_NEAR(gpu.levels[2].stats.mean - gpu.levels[0].stats.mean, 16.0, 1.5);
  EXPECT_EQ(gpu.levels[0].stats.n, 30u);
  // The right best configuration, clear of the runner-up.
  auto ranked = x.ranked(0);
  EXPECT_EQ(x.configs[ranked[0]].label, planted.best_label);
  ASSERT_FALSE(x.comparisons.empty());
  EXPECT_EQ(x.comparisons[0].best, ranked[0]);
  ASSERT_TRUE(x.comparisons[0].p.has_value());
  EXPECT_TRUE(x.comparisons[0].significant);
  // TTFT: lower is better; the best runs on tokio with 100 layers.
  auto ttft_ranked = x.ranked(1);
  EXPECT_NE(x.configs[ttft_ranked[0]].label.find("runtime=tokio"), std::string::npos);
  EXPECT_NE(x.configs[ttft_ranked[0]].label.find("num_gpu=100"), std::string::npos);

  // Under the chimera configuration's budget the digest still holds the structure and the
  // top effects.
  const std::string digest = ci::experiment_digest(x, 121);
  EXPECT_LE(ci::estimate_tokens(digest), 121u);
  // With room for a line more, the best configuration with its n and sd.
  const std::string wider = ci::experiment_digest(x, 150);
  EXPECT_NE(wider.find("throughput best " + planted.best_label), std::string::npos) << wider;
  EXPECT_NE(wider.find(" n=5"), std::string::npos) << wider;
  for (const char* s :
       {"18 configs", "n=5", "num_gpu 60|80|100", "num_ctx 512|1024",
        "runtime async-std|smol|tokio", "higher better): num_gpu", "lower better): runtime"})
    EXPECT_NE(digest.find(s), std::string::npos) << s << "\n" << digest;
  fs::remove_all(root);
}

INSTANTIATE_TEST_SUITE_P(ThreeNamingStyles, PlantedStyles,
                         ::testing::Values(chimera::test::TreeStyle::folders,
                                           chimera::test::TreeStyle::key_value,
                                           chimera::test::TreeStyle::columns));

TEST(Experiment, NamedLevelsInFileNamesAndUnplacedFiles) {
  const fs::path root = fs::temp_directory_path() / ("chimera-named-" + std::to_string(::getpid()));
  fs::remove_all(root);
  for (const char* variant : {"baseline", "chimera"}) {
    for (int run = 1; run <= 3; ++run) {
      const double tps = std::string(variant) == "chimera" ? 60 + run : 40 + run;
      chimera::test::write_file(
          root / "sweep" / "run_gpu120_ctx1024" / "reports" /
              (std::string(variant) + "_report_run_" + std::to_string(run) + ".md"),
          "# Report\n\nThroughput: " + std::to_string(tps) + " tok/s\n");
    }
  }
  chimera::test::write_file(root / "notes.json", "{\"tokens_per_second\": 5}");
  const auto x = ci::analyse_experiment(ci::ingest({root}));
  ASSERT_EQ(x.factors.size(), 1u);
  EXPECT_EQ(x.factors[0].levels, (std::vector<std::string>{"baseline", "chimera"}));
  EXPECT_EQ(x.factors[0].found_in, "file names");
  ASSERT_EQ(x.configs.size(), 2u);
  EXPECT_EQ(x.configs[0].runs, 3u);
  // The constant settings and the file with no level are said, with why.
  bool constant = false, unplaced = false;
  for (const auto& u : x.unplaced) {
    constant |= u.what == "num_gpu=120";
    unplaced |= u.what.find("notes.json") != std::string::npos;
  }
  EXPECT_TRUE(constant);
  EXPECT_TRUE(unplaced);
  fs::remove_all(root);
}

TEST(Experiment, SharedCorpusFactorsAndFewGroups) {
  const fs::path corpus = fs::path(CHIMERA_TEST_DATA).parent_path().parent_path().parent_path() /
                          "shared/corpus/chimeraforge";
  if (!fs::is_directory(corpus))
    GTEST_SKIP() << "the shared corpus is not at " << corpus << " (shared/ beside the clone)";
  const auto data = ci::ingest({corpus});
  const auto x = ci::analyse_experiment(data);
  std::map<std::string, std::size_t> levels;
  for (const auto& f : x.factors) levels[f.key] = f.levels.size();
  for (const char* key : {"model", "num_gpu", "num_ctx", "temperature"})
    EXPECT_TRUE(levels.count(key)) << key;
  // The corpus' sweeps hold one configuration per CSV row, so configurations outnumber its
  // 104 files; values of one configuration (runs, prompts, summaries) still group together.
  EXPECT_LT(x.configs.size(), x.runs);
  EXPECT_LT(x.configs.size() * 5, x.records_used);
  EXPECT_LT(x.elapsed_ms, 1000.0);
  const std::string digest = ci::experiment_digest(x, 121);
  EXPECT_NE(digest.find("Factors"), std::string::npos) << digest;
  EXPECT_NE(digest.find("throughput (tokens/s, higher better): model"), std::string::npos)
      << digest;
}

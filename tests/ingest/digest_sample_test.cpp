// The digest (deterministic, within budget, names the best configuration) and the project's own
// sample data (data/sample).
#include <chimera/ingest/digest.hpp>
#include <chimera/ingest/ingest.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>

namespace ci = chimera::ingest;
namespace fs = std::filesystem;

namespace {

fs::path sample_dir() {
  return fs::path(CHIMERA_TEST_DATA).parent_path().parent_path() / "data/sample";
}
fs::path corpus_dir() {
  return fs::path(CHIMERA_TEST_DATA).parent_path().parent_path().parent_path() /
         "shared/corpus/chimeraforge";
}

}  // namespace

TEST(Sample, IngestsWithOnlyTheIntentionalProblems) {
  auto r = ci::ingest({sample_dir()});
  EXPECT_EQ(r.file_count(ci::FileType::csv), 2u);
  EXPECT_EQ(r.file_count(ci::FileType::json), 3u);
  EXPECT_EQ(r.file_count(ci::FileType::markdown), 1u);
  EXPECT_EQ(r.file_count(ci::FileType::text), 1u);
  EXPECT_LT(r.total_bytes, 64u * 1024);
  // The one ragged row (a truncated write) and the one failed request.
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_FALSE(r.errors[0].fatal);
  EXPECT_EQ(r.errors[0].line, 31);
  EXPECT_NE(r.errors[0].reason.find("ragged row"), std::string::npos);
  ASSERT_EQ(r.error_values.size(), 1u);
  EXPECT_EQ(r.error_values[0].text.substr(0, 17), "Failed to connect");
  EXPECT_EQ(r.error_values[0].line, 38);
  for (const auto& f : r.files) EXPECT_TRUE(f.parsed) << f.path;

  // Records for the main metrics, in normalised units.
  std::set<std::string> metrics;
  std::set<ci::MetricKind> kinds;
  for (const auto& rec : r.records) {
    metrics.insert(std::string(rec.metric));
    kinds.insert(rec.kind);
  }
  for (const char* m : {"tokens_per_s", "ttft", "load_duration", "prompt_eval_duration",
                        "eval_duration", "eval_count", "memory", "total_duration"})
    EXPECT_TRUE(metrics.count(m)) << m;
  for (auto k : {ci::MetricKind::throughput, ci::MetricKind::ttft, ci::MetricKind::time,
                 ci::MetricKind::memory, ci::MetricKind::count, ci::MetricKind::percent})
    EXPECT_TRUE(kinds.count(k)) << ci::to_string(k);
  // Ollama's nanoseconds became milliseconds.
  for (const auto& rec : r.records)
    if (rec.metric == "load_duration") EXPECT_LT(rec.value, 5000.0) << rec.line;
  // llama-server's timings: predicted_ms is the eval duration, predicted_per_second tokens/s.
  bool server_eval = false, server_rate = false, note = false;
  for (const auto& rec : r.records) {
    if (rec.source_file.ends_with("llama_server_timings.json")) {
      server_eval |= rec.metric == "eval_duration" && rec.unit == "ms";
      server_rate |=
          rec.metric == "predicted_tokens_per_s" && rec.kind == ci::MetricKind::throughput;
      EXPECT_NE(rec.metric, "id_slot");
    }
    // A quoted field across two lines, kept as the row's context.
    if (rec.source_file.ends_with("quant_bench.csv") && rec.line == 2)
      note = rec.context->find("notes") == "first request:\nincludes the model load";
  }
  EXPECT_TRUE(server_eval);
  EXPECT_TRUE(server_rate);
  EXPECT_TRUE(note);
}

TEST(Digest, DeterministicWithinBudgetAndNamesTheBest) {
  std::vector<fs::path> roots = {sample_dir()};
  if (fs::is_directory(corpus_dir())) roots.push_back(corpus_dir());
  for (const auto& root : roots) {
    SCOPED_TRACE(root.string());
    auto a = ci::ingest({root});
    auto b = ci::ingest({root});
    for (std::size_t budget : {300u, 800u, 1500u}) {
      SCOPED_TRACE(budget);
      ci::DigestOptions opts;
      opts.token_budget = budget;
      auto da = ci::make_digest(a, opts);
      auto db = ci::make_digest(b, opts);
      EXPECT_EQ(da.text, db.text);
      EXPECT_LE(da.estimated_tokens, budget);
      EXPECT_EQ(da.estimated_tokens, ci::estimate_tokens(da.text));
      EXPECT_EQ(da.token_budget, budget);
      ASSERT_FALSE(da.best_throughput.empty());
      ASSERT_FALSE(da.best_ttft.empty());
      EXPECT_NE(da.text.find(da.best_throughput.front().label), std::string::npos) << da.text;
      EXPECT_NE(da.text.find("# Benchmark data digest"), std::string::npos);
      if (!da.dropped.empty()) EXPECT_NE(da.text.find("Left out to fit"), std::string::npos);
    }
  }
}

TEST(Digest, SampleFiguresAreStructured) {
  auto r = ci::ingest({sample_dir()});
  auto d = ci::make_digest(r);
  ASSERT_EQ(d.best_throughput.size(), 3u);
  ASSERT_EQ(d.worst_throughput.size(), 3u);
  // gemma3:270m on the GPU is the fastest configuration in the sample, llama3.2:1b on the CPU
  // the slowest.
  EXPECT_NE(d.best_throughput[0].config.find("model=gemma3:270m"), std::string::npos);
  EXPECT_NE(d.best_throughput[0].config.find("num_gpu=99"), std::string::npos);
  EXPECT_GT(d.best_throughput[0].median, 300.0);
  EXPECT_NE(d.worst_throughput[0].config.find("model=llama3.2:1b"), std::string::npos);
  EXPECT_NE(d.worst_throughput[0].config.find("num_gpu=0"), std::string::npos);
  EXPECT_EQ(d.best_throughput[0].unit, "tokens/s");
  EXPECT_EQ(d.best_ttft[0].unit, "ms");
  EXPECT_LE(d.best_ttft[0].median, d.worst_ttft[0].median);
  for (std::size_t i = 1; i < d.best_throughput.size(); ++i)
    EXPECT_GE(d.best_throughput[i - 1].median, d.best_throughput[i].median);
  EXPECT_FALSE(d.stats.empty());
  // The errors are in the text.
  EXPECT_NE(d.text.find("Failed to connect"), std::string::npos);
  EXPECT_NE(d.text.find("ragged row"), std::string::npos);
}

TEST(Digest, TinyBudgetStillFits) {
  auto r = ci::ingest({sample_dir()});
  ci::DigestOptions opts;
  opts.token_budget = 40;
  auto d = ci::make_digest(r, opts);
  EXPECT_LE(d.estimated_tokens, 40u);
  EXPECT_FALSE(d.text.empty());
}

TEST(Digest, EmptyResult) {
  ci::IngestResult empty;
  auto d = ci::make_digest(empty);
  EXPECT_NE(d.text.find("Files: 0"), std::string::npos);
  EXPECT_TRUE(d.best_throughput.empty());
  EXPECT_LE(d.estimated_tokens, 1500u);
}

TEST(Digest, TokenEstimate) {
  EXPECT_EQ(ci::estimate_tokens(""), 0u);
  EXPECT_EQ(ci::estimate_tokens("abcd"), 1u);
  // Digits cost one token per 3, more than bytes / 4.
  EXPECT_EQ(ci::estimate_tokens("123456789012"), 4u);
  EXPECT_GE(ci::estimate_tokens("a, b, c, d"), 7u);
}

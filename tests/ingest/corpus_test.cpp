// Data-driven: the shared corpus (../shared/corpus/chimeraforge beside the clone), read in place.
// Each expectation names its input file; the values were read from those files by hand.
#include <chimera/ingest/digest.hpp>
#include <chimera/ingest/ingest.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

namespace ci = chimera::ingest;
namespace fs = std::filesystem;

namespace {

fs::path corpus_dir() {
  return fs::path(CHIMERA_TEST_DATA).parent_path().parent_path().parent_path() /
         "shared/corpus/chimeraforge";
}

// One ingest of the corpus for the whole suite (about 20 ms).
const ci::IngestResult& corpus() {
  static const ci::IngestResult result = ci::ingest({corpus_dir()});
  return result;
}

const ci::FileInfo* file(const ci::IngestResult& r, std::string_view relative) {
  for (const auto& f : r.files)
    if (f.relative_path == relative) return &f;
  return nullptr;
}

class Corpus : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(corpus_dir()))
      GTEST_SKIP() << "the shared corpus is not at " << corpus_dir()
                   << " (shared/ beside the clone)";
  }
};

// file -> rows, for the CSVs and Markdown tables whose row count we know.
struct RowsCase {
  const char* file;
  std::size_t rows;
};
constexpr RowsCase kRows[] = {
    {"data/csv/ollama_param_tuning.csv", 36},             // 37 lines: header + 36 runs
    {"data/csv/ollama_param_tuning_summary.csv", 36},     // 36 configurations
    {"data/csv/ollama_quant_bench.csv", 15},              // 3 quantizations x 5 prompts
    {"data/csv/baseline_performance_summary.csv", 5},     // 5 banter tests
    {"outputs/reports/profiling/ncu_ollama_raw.csv", 1},  // header, units row, one kernel
};

// A value harvested from a file, with its context.
struct ValueCase {
  const char* file;
  int line;
  const char* metric;
  double value;
  const char* unit;
  const char* model;         // "" when none
  const char* num_gpu;       // "" when none
  const char* num_ctx;       // "" when none
  const char* temperature;   // "" when none
  const char* quantization;  // "" when none
};
constexpr ValueCase kValues[] = {
    // "2025-09-30T20:11:33","llama3.1:8b-instruct-q4_0","999","1024","0.2","5.7669","77.5",...
    {"data/csv/ollama_param_tuning.csv", 2, "tokens_per_s", 77.5, "tokens/s",
     "llama3.1:8b-instruct-q4_0", "999", "1024", "0.2", "q4_0"},
    {"data/csv/ollama_param_tuning.csv", 2, "ttft", 5766.9, "ms", "llama3.1:8b-instruct-q4_0",
     "999", "1024", "0.2", "q4_0"},
    {"data/csv/ollama_param_tuning.csv", 2, "load_duration", 5580.8, "ms",
     "llama3.1:8b-instruct-q4_0", "999", "1024", "0.2", "q4_0"},
    // ...,"q4_0",2,...,"0.0987","76.96","0.0904",...
    {"data/csv/ollama_quant_bench.csv", 3, "tokens_per_s", 76.96, "tokens/s",
     "llama3.1:8b-instruct-q4_0", "", "", "", "q4_0"},
    // Player Died (Encouraging),player_died,encouraging,3089.02,44,14.24,TRUE
    {"data/csv/baseline_performance_summary.csv", 2, "generation_time", 3089.02, "ms", "", "", "",
     "", ""},
    // {"model": "gemma3:270m", "results": [{... "ttft_s": 7.8366299, "tokens_s": 238.239...
    {"outputs/reports/gemma3/gemma3_270m_baseline.json", 6, "ttft", 7836.6299, "ms", "gemma3:270m",
     "", "", "", ""},
    {"outputs/reports/gemma3/gemma3_270m_baseline.json", 7, "tokens_per_s", 238.23929187638413,
     "tokens/s", "gemma3:270m", "", "", "", ""},
    // One line of JSON: "models": [{"model": "llama3.1:8b-instruct-q5_K_M", "options":
    // {"temperature": 0.3, ...}, "mean_ttft_s": 1.5508833799999997, ...
    {"outputs/reports/ollama/20251002-151824/prompt_suite_summary.json", 1, "mean_ttft",
     1550.8833799999997, "ms", "llama3.1:8b-instruct-q5_K_M", "", "", "0.3", "q5_K_M"},
    // | Mean Throughput | 102.85 tokens/s | 76.59 tokens/s | **+34% faster** |
    {"outputs/reports/gemma3/Gemma3_Benchmark_Report.md", 92, "mean_throughput", 102.85, "tokens/s",
     "Gemma3:latest", "", "", "", ""},
    // ## Baseline (llama3.1:8b-instruct-q4_0) / - Tokens per second: 7.90
    {"outputs/reports/llama3/ollama_benchmark_summary.md", 4, "tokens_per_s", 7.9, "tokens/s",
     "llama3.1:8b-instruct-q4_0", "", "", "", "q4_0"},
    // Nsight Compute: launch__shared_mem_config_size, unit row "Kbyte", value 32.768000
    {"outputs/reports/profiling/ncu_ollama_raw.csv", 3, "launch_shared_mem_config_size", 0.032,
     "MB", "", "", "", "", ""},
};

// Files that cannot be read, with the line reported.
struct FileErrorCase {
  const char* file;
  int line;
  const char* reason;
};
constexpr FileErrorCase kFileErrors[] = {
    // UTF-16 text with a mangled byte order mark and an unquoted line break: NUL bytes.
    {"outputs/reports/profiling/ncu_summary.csv", 1, "NUL byte at line 1"},
    // "Temperature: 54.7\xB0C avg" in Latin-1.
    {"outputs/reports/llama3/baseline_system_report.txt", 16, "invalid UTF-8 at line 16"},
};

}  // namespace

TEST_F(Corpus, FilesOfEachType) {
  const auto& r = corpus();
  EXPECT_EQ(r.file_count(ci::FileType::csv), 28u);
  EXPECT_EQ(r.file_count(ci::FileType::json), 44u);
  EXPECT_EQ(r.file_count(ci::FileType::markdown), 29u);
  EXPECT_EQ(r.file_count(ci::FileType::text), 3u);
  EXPECT_EQ(r.scan.skipped_files, 1u);  // LICENSE
  EXPECT_GT(r.records.size(), 4000u);
}

TEST_F(Corpus, RowsOfSpecificTables) {
  for (const auto& c : kRows) {
    SCOPED_TRACE(c.file);
    const auto* f = file(corpus(), c.file);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->rows, c.rows);
    EXPECT_TRUE(f->parsed);
  }
}

TEST_F(Corpus, HarvestedValuesWithContext) {
  const auto& r = corpus();
  for (const auto& c : kValues) {
    SCOPED_TRACE(std::string(c.file) + ":" + std::to_string(c.line) + " " + c.metric);
    const ci::Record* found = nullptr;
    for (const auto& rec : r.records) {
      if (r.files[rec.file].relative_path == c.file && rec.line == c.line &&
          rec.metric == c.metric && rec.context->model == c.model) {
        found = &rec;
        break;
      }
    }
    ASSERT_NE(found, nullptr);
    EXPECT_NEAR(found->value, c.value, std::fabs(c.value) * 1e-9);
    EXPECT_EQ(found->unit, c.unit);
    EXPECT_EQ(found->context->num_gpu, c.num_gpu);
    EXPECT_EQ(found->context->num_ctx, c.num_ctx);
    EXPECT_EQ(found->context->temperature, c.temperature);
    EXPECT_EQ(found->context->quantization, c.quantization);
  }
}

TEST_F(Corpus, UnreadableFilesReportedWithTheirLine) {
  const auto& r = corpus();
  EXPECT_EQ(r.errors.size(), std::size(kFileErrors));
  for (const auto& c : kFileErrors) {
    SCOPED_TRACE(c.file);
    const auto* f = file(r, c.file);
    ASSERT_NE(f, nullptr);
    EXPECT_FALSE(f->parsed);
    EXPECT_NE(f->error.find(c.reason), std::string::npos) << f->error;
    bool reported = false;
    for (const auto& e : r.errors) {
      if (e.path == f->path) {
        reported = true;
        EXPECT_EQ(e.line, c.line);
        EXPECT_TRUE(e.fatal);
      }
    }
    EXPECT_TRUE(reported);
  }
}

TEST_F(Corpus, FailedRunsAreErrorValues) {
  const auto& r = corpus();
  // outputs/reports/ollama/20251002-151446/prompt_suite_runs.csv: all 15 runs failed to connect.
  const auto* f = file(r, "outputs/reports/ollama/20251002-151446/prompt_suite_runs.csv");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->error_values, 15u);
  EXPECT_EQ(f->records, 0u);  // their zeros are placeholders
  bool seen = false;
  for (const auto& e : r.error_values) {
    if (r.files[e.file].relative_path == f->relative_path && e.line == 2) {
      seen = true;
      EXPECT_EQ(e.text.substr(0, 27), "Failed to connect to Ollama");
      EXPECT_EQ(e.context->model, "llama3.1:8b-instruct-q4_0");
    }
  }
  EXPECT_TRUE(seen);
}

TEST_F(Corpus, SameResultWithAnyThreadCount) {
  ci::IngestOptions one;
  one.threads = 1;
  ci::IngestOptions four;
  four.threads = 4;
  auto a = ci::ingest({corpus_dir()}, one);
  auto b = ci::ingest({corpus_dir()}, four);
  ASSERT_EQ(a.records.size(), b.records.size());
  for (std::size_t i = 0; i < a.records.size(); ++i) {
    ASSERT_EQ(a.records[i].metric, b.records[i].metric);
    ASSERT_EQ(a.records[i].value, b.records[i].value);
    ASSERT_EQ(a.records[i].line, b.records[i].line);
    ASSERT_EQ(a.records[i].source_file, b.records[i].source_file);
  }
  EXPECT_EQ(ci::make_digest(a).text, ci::make_digest(b).text);
}

TEST_F(Corpus, FastEnough) {
  // The goal is under 50 ms on this 2-core machine; a loose bound here keeps the test stable on
  // busy CI machines and sanitizer builds. bench/ingest measures it properly.
  ci::IngestOptions opts;
  auto r = ci::ingest({corpus_dir()}, opts);
  EXPECT_LT(r.timings.total_ms, 2000.0);
}

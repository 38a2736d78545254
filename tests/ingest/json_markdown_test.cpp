// JSON and Markdown parsing: numeric leaves with their paths and context, tables, headings,
// "Key: value" lines, depth and size limits.
#include <chimera/ingest/ingest.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace ci = chimera::ingest;

namespace {

std::vector<const ci::Record*> find(const ci::IngestResult& r, std::string_view metric) {
  std::vector<const ci::Record*> out;
  for (const auto& rec : r.records)
    if (rec.metric == metric) out.push_back(&rec);
  return out;
}

}  // namespace

TEST(Json, LeavesWithPathsLinesAndContext) {
  auto r = ci::ingest_buffer(R"({
  "generated_at": "2025-10-02T19:18:24Z",
  "models": [
    {
      "model": "llama3.1:8b-instruct-q4_0",
      "completed": 5,
      "options": {"temperature": 0.3, "top_p": 0.9},
      "mean_ttft_s": 0.65,
      "mean_tokens_s": 77.6
    },
    {
      "mean_tokens_s": 65.1,
      "model": "llama3.1:8b-instruct-q5_K_M"
    }
  ]
})",
                             ci::FileType::json, "suite.json");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].reason;
  auto tps = find(r, "mean_tokens_per_s");
  ASSERT_EQ(tps.size(), 2u);
  EXPECT_EQ(tps[0]->origin, "models[0].mean_tokens_s");
  EXPECT_EQ(tps[0]->line, 9);
  EXPECT_EQ(tps[0]->context->model, "llama3.1:8b-instruct-q4_0");
  EXPECT_EQ(tps[0]->context->quantization, "q4_0");
  EXPECT_EQ(tps[0]->context->temperature, "0.3");
  EXPECT_EQ(tps[0]->context->find("top_p"), "0.9");
  EXPECT_EQ(tps[0]->context->find("generated_at"), "2025-10-02T19:18:24Z");
  // A sibling written after the value still gives its context.
  EXPECT_EQ(tps[1]->context->model, "llama3.1:8b-instruct-q5_K_M");
  EXPECT_EQ(tps[1]->context->quantization, "q5_K_M");
  EXPECT_TRUE(tps[1]->context->temperature.empty());
  auto ttft = find(r, "mean_ttft");
  ASSERT_EQ(ttft.size(), 1u);
  EXPECT_DOUBLE_EQ(ttft[0]->value, 650.0);
  EXPECT_EQ(ttft[0]->kind, ci::MetricKind::ttft);
  // Settings are context, not metrics.
  EXPECT_TRUE(find(r, "temperature").empty());
  EXPECT_TRUE(find(r, "top_p").empty());
}

TEST(Json, OllamaDurationsRunsAndGenericNames) {
  auto r = ci::ingest_buffer(R"({"model": "llama3.2:1b",
 "runs": [{"load_duration": 1500000000, "eval_count": 120},
          {"load_duration": 30000000, "eval_count": 130}],
 "timing": {"p50_ms": 10.5, "samples": 10},
 "latency": {"value": 2.5, "unit": "s"},
 "memory": {"rss_bytes": 1048576},
 "errors": 0,
 "status": {"error": "CUDA out of memory"},
 "gpu": [{"temperature": 48}]})",
                             ci::FileType::json, "run.json");
  ASSERT_TRUE(r.errors.empty());
  auto load = find(r, "load_duration");
  ASSERT_EQ(load.size(), 2u);
  EXPECT_DOUBLE_EQ(load[0]->value, 1500.0);
  EXPECT_EQ(load[0]->context->run, "1");
  EXPECT_EQ(load[1]->context->run, "2");
  EXPECT_EQ(load[1]->context->model, "llama3.2:1b");
  auto p50 = find(r, "timing_p50");
  ASSERT_EQ(p50.size(), 1u);
  EXPECT_EQ(p50[0]->unit, "ms");
  auto lat = find(r, "latency_value");
  ASSERT_EQ(lat.size(), 1u);
  EXPECT_DOUBLE_EQ(lat[0]->value, 2500.0);  // the "unit" sibling
  auto rss = find(r, "memory_rss");
  ASSERT_EQ(rss.size(), 0u);
  auto rss2 = find(r, "rss");
  ASSERT_EQ(rss2.size(), 1u);
  EXPECT_DOUBLE_EQ(rss2[0]->value, 1.0);
  EXPECT_EQ(find(r, "errors").size(), 1u);  // a count of errors is a number
  ASSERT_EQ(r.error_values.size(), 1u);
  EXPECT_EQ(r.error_values[0].text, "CUDA out of memory");
  EXPECT_EQ(r.error_values[0].line, 8);
  // A "temperature" of 48 is a sensor reading, not a sampling setting.
  auto temp = find(r, "temperature_value");
  ASSERT_EQ(temp.size(), 1u);
  EXPECT_TRUE(temp[0]->context->temperature.empty());
}

TEST(Json, DepthLimitIsAClearError) {
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "[";
  for (int i = 0; i < 5000; ++i) deep += "]";
  auto r = ci::ingest_buffer(deep, ci::FileType::json, "deep.json");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_TRUE(r.errors[0].fatal);
  EXPECT_NE(r.errors[0].reason.find("nested deeper than 64 levels"), std::string::npos)
      << r.errors[0].reason;
  EXPECT_FALSE(r.files[0].parsed);
}

TEST(Json, HugeStringIsAClearError) {
  ci::IngestOptions opts;
  opts.max_line_bytes = 1000;
  std::string text = "{\"a\": 1,\n \"b\": \"" + std::string(5000, 'x') + "\"}";
  auto r = ci::ingest_buffer(text, ci::FileType::json, "big.json", opts);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].reason.find("over the 1000-byte limit"), std::string::npos)
      << r.errors[0].reason;
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_TRUE(r.records.empty());
}

TEST(Markdown, TablesHeadingsAndKeyValueLines) {
  auto r = ci::ingest_buffer(R"(# Ollama summary

## Baseline (llama3.1:8b-instruct-q4_0)
- Tokens per second: 7.90
- Mean generation time: 5.15 s

## Quantization sweep (num_ctx 2048)

| tag | mean_tokens_s | TTFT (ms) | notes |
| --- | --- | --- | --- |
| q4_0 | 76.59 | 97 | fine |
| q8_0 | 46.57 | Failed to connect | |

```
tokens_s: 1234
```
)",
                             ci::FileType::markdown, "summary.md");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].reason;
  auto tps = find(r, "tokens_per_s");
  ASSERT_EQ(tps.size(), 1u);  // not the one in the code block
  EXPECT_DOUBLE_EQ(tps[0]->value, 7.9);
  EXPECT_EQ(tps[0]->line, 4);
  EXPECT_EQ(tps[0]->context->model, "llama3.1:8b-instruct-q4_0");
  EXPECT_EQ(tps[0]->context->find("section"), "Baseline (llama3.1:8b-instruct-q4_0)");
  auto gen = find(r, "mean_generation_time");
  ASSERT_EQ(gen.size(), 1u);
  EXPECT_DOUBLE_EQ(gen[0]->value, 5150.0);
  EXPECT_EQ(gen[0]->line, 5);

  auto mean = find(r, "mean_tokens_per_s");
  ASSERT_EQ(mean.size(), 2u);
  EXPECT_EQ(mean[0]->line, 11);
  EXPECT_EQ(mean[1]->line, 12);
  EXPECT_EQ(mean[0]->context->quantization, "q4_0");
  EXPECT_EQ(mean[1]->context->quantization, "q8_0");
  EXPECT_EQ(mean[0]->context->num_ctx, "2048");
  EXPECT_TRUE(mean[0]->context->model.empty());  // a sibling section, not the baseline
  auto ttft = find(r, "ttft");
  ASSERT_EQ(ttft.size(), 1u);
  EXPECT_EQ(ttft[0]->unit, "ms");
  ASSERT_EQ(r.error_values.size(), 1u);
  EXPECT_EQ(r.error_values[0].line, 12);
  EXPECT_EQ(r.files[0].rows, 2u);
}

TEST(Text, KeyValueLines) {
  auto r = ci::ingest_buffer(
      "CHIMERA REPORT\nGenerated: 2025-09-30 19:46:27\nModel: llama3.2:1b\n\n"
      "SYSTEM METRICS:\n- CPU Usage: 13.9% avg,\n  15.4% peak\n- Memory Used: 11.3 GB avg,\n"
      "Generation Times:\n- Average: 3203.54ms\n- Min: 2527.22ms (Level Up)\n"
      "See http://example.com: 5 times\n",
      ci::FileType::text, "report.txt");
  ASSERT_TRUE(r.errors.empty());
  auto cpu = find(r, "cpu_usage_avg");
  ASSERT_EQ(cpu.size(), 1u);
  EXPECT_EQ(cpu[0]->unit, "%");
  EXPECT_EQ(cpu[0]->line, 6);
  EXPECT_EQ(cpu[0]->context->model, "llama3.2:1b");
  auto mem = find(r, "memory_used_avg");
  ASSERT_EQ(mem.size(), 1u);
  EXPECT_NEAR(mem[0]->value, 11.3 * 1024, 1e-9);
  auto avg = find(r, "generation_times_average");
  ASSERT_EQ(avg.size(), 1u);
  EXPECT_DOUBLE_EQ(avg[0]->value, 3203.54);
  EXPECT_EQ(find(r, "generation_times_min").size(), 1u);
}

TEST(Json, SettingsObjectsAreContextOfTheirSiblings) {
  auto r = ci::ingest_buffer(
      R"({"config": {"num_ctx": 2048, "num_gpu": 99}, "model": {"name": "gemma3:270m"},
          "results": {"tokens_s": 316.0}})",
      ci::FileType::json, "cfg.json");
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].metric, "tokens_per_s");
  EXPECT_EQ(r.records[0].context->num_ctx, "2048");
  EXPECT_EQ(r.records[0].context->num_gpu, "99");
  EXPECT_EQ(r.records[0].context->model, "gemma3:270m");
}

// A number beyond a double's range is named as a problem of its line and skipped; the rest of
// the file is kept (no infinite figure reaches a record).
TEST(Json, NumberBeyondDoubleRangeIsNamedAndSkipped) {
  auto r = ci::ingest_buffer(
      "{\"model\": \"m\",\n \"kv_cache_kb\": 1e999,\n \"tokens_per_second\": 42.5}",
      ci::FileType::json, "big.json");
  for (const auto& rec : r.records) EXPECT_TRUE(std::isfinite(rec.value)) << rec.metric;
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_FALSE(r.errors[0].fatal);
  EXPECT_NE(r.errors[0].reason.find("kv_cache_kb"), std::string::npos) << r.errors[0].reason;
  EXPECT_NE(r.errors[0].reason.find("out of range"), std::string::npos) << r.errors[0].reason;
  EXPECT_FALSE(r.records.empty());  // the throughput on line 3 is kept
}

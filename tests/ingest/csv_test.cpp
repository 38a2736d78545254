// CSV parsing: RFC 4180 cases, column rules, units, error values, ragged rows.
#include <chimera/ingest/ingest.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ci = chimera::ingest;

namespace {

ci::IngestResult csv(std::string_view text) {
  return ci::ingest_buffer(text, ci::FileType::csv, "test.csv");
}

std::vector<const ci::Record*> find(const ci::IngestResult& r, std::string_view metric) {
  std::vector<const ci::Record*> out;
  for (const auto& rec : r.records)
    if (rec.metric == metric) out.push_back(&rec);
  return out;
}

}  // namespace

TEST(Csv, QuotedFieldsWithCommasQuotesAndNewlines) {
  auto r =
      csv("model,prompt,tokens_s\n"
          "llama3.2:1b,\"Greet the player, briefly\",181.5\n"
          "llama3.2:1b,\"Taunt: \"\"You missed!\"\"\",180.0\n"
          "gemma3:270m,\"two\nlines\",316.25\n"
          "gemma3:270m,plain,317\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].reason;
  auto tps = find(r, "tokens_per_s");
  ASSERT_EQ(tps.size(), 4u);
  EXPECT_EQ(tps[0]->context->find("prompt"), "Greet the player, briefly");
  EXPECT_EQ(tps[1]->context->find("prompt"), "Taunt: \"You missed!\"");
  EXPECT_EQ(tps[2]->context->find("prompt"), "two\nlines");
  EXPECT_EQ(tps[2]->line, 4);
  EXPECT_EQ(tps[3]->line, 6);  // the quoted newline moved it down one line
  EXPECT_DOUBLE_EQ(tps[2]->value, 316.25);
  EXPECT_EQ(tps[0]->unit, "tokens/s");
  EXPECT_EQ(tps[0]->kind, ci::MetricKind::throughput);
  EXPECT_EQ(r.files[0].rows, 4u);
}

TEST(Csv, BomAndCrlf) {
  auto r = csv("\xEF\xBB\xBFmodel,ttft_s\r\nllama3.2:1b,0.5\r\ngemma3:270m,0.25\r\n");
  ASSERT_TRUE(r.errors.empty());
  auto ttft = find(r, "ttft");
  ASSERT_EQ(ttft.size(), 2u);
  EXPECT_EQ(ttft[0]->context->model, "llama3.2:1b");  // the BOM is not part of "model"
  EXPECT_DOUBLE_EQ(ttft[0]->value, 500.0);            // seconds -> ms
  EXPECT_EQ(ttft[0]->unit, "ms");
  EXPECT_EQ(ttft[1]->line, 3);
  EXPECT_EQ(ttft[1]->kind, ci::MetricKind::ttft);
}

TEST(Csv, RaggedRowsReportedWithTheirLine) {
  auto r =
      csv("model,num_ctx,tokens_s\n"
          "llama3.2:1b,2048,181.5\n"
          "llama3.2:1b,2048\n"
          "gemma3:270m,2048,316.0,extra\n"
          "gemma3:270m,4096,310.0\n");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_FALSE(r.errors[0].fatal);
  EXPECT_NE(r.errors[0].reason.find("ragged row at line 3: 2 fields where the header has 3"),
            std::string::npos)
      << r.errors[0].reason;
  EXPECT_EQ(r.errors[1].line, 4);
  // The other rows are kept.
  EXPECT_EQ(find(r, "tokens_per_s").size(), 2u);
  EXPECT_TRUE(r.files[0].parsed);
}

TEST(Csv, TrailingEmptyFieldIsNotRagged) {
  auto r = csv("model,tokens_s,error\nllama3.2:1b,181.5,\nllama3.2:1b,180.5,,\n");
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(find(r, "tokens_per_s").size(), 2u);
}

TEST(Csv, FailedToConnectIsAnErrorValueNotANumber) {
  auto r = csv(
      "model,tokens_s,ttft_ms,error\n"
      "llama3.2:1b,181.5,29.5,\n"
      "llama3.2:1b,0.00,0.0,\"Failed to connect to Ollama. Please check that Ollama is running\"\n"
      "gemma3:270m,Failed to connect,,\n");
  ASSERT_EQ(r.error_values.size(), 2u);
  EXPECT_EQ(r.error_values[0].metric, "error");
  EXPECT_EQ(r.error_values[0].text.substr(0, 17), "Failed to connect");
  EXPECT_EQ(r.error_values[0].line, 3);
  EXPECT_EQ(r.error_values[0].context->model, "llama3.2:1b");
  EXPECT_EQ(r.error_values[1].metric, "tokens_s");
  EXPECT_EQ(r.error_values[1].text, "Failed to connect");
  EXPECT_EQ(r.error_values[1].line, 4);
  // The failed row's zeros are placeholders, not measurements.
  auto tps = find(r, "tokens_per_s");
  ASSERT_EQ(tps.size(), 1u);
  EXPECT_DOUBLE_EQ(tps[0]->value, 181.5);
  EXPECT_TRUE(r.errors.empty());
}

TEST(Csv, UnterminatedQuoteKeepsEarlierRows) {
  auto r = csv("model,tokens_s,note\nllama3.2:1b,180.1,ok\nllama3.2:1b,179.4,\"cut off");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_FALSE(r.errors[0].fatal);
  EXPECT_EQ(find(r, "tokens_per_s").size(), 1u);
}

TEST(Csv, ContextColumnsAndNormalisedValues) {
  auto r =
      csv("timestamp,model,tag,num_gpu,num_ctx,temperature,run,prompt_index,tokens_s,load_s,"
          "eval_duration,memory_gb,eval_count\n"
          "2025-09-30T20:11:33,llama3.1:8b-instruct,q4_0,40.00,1024.0,0.40,2,3,77.5,1.5,"
          "1000000000,1.5,99\n");
  ASSERT_TRUE(r.errors.empty());
  ASSERT_FALSE(r.records.empty());
  const auto& c = *r.records[0].context;
  EXPECT_EQ(c.model, "llama3.1:8b-instruct");
  EXPECT_EQ(c.quantization, "q4_0");  // from the tag column
  EXPECT_EQ(c.num_gpu, "40");
  EXPECT_EQ(c.num_ctx, "1024");
  EXPECT_EQ(c.temperature, "0.4");
  EXPECT_EQ(c.run, "2");
  EXPECT_EQ(c.find("prompt_index"), "3");
  EXPECT_EQ(c.find("timestamp"), "2025-09-30T20:11:33");
  EXPECT_EQ(c.config_key(),
            "model=llama3.1:8b-instruct quantization=q4_0 num_gpu=40 num_ctx=1024 temperature=0.4");
  // Only the numeric non-context columns are metrics.
  ASSERT_EQ(r.records.size(), 5u);
  auto load = find(r, "load_duration");
  ASSERT_EQ(load.size(), 1u);
  EXPECT_DOUBLE_EQ(load[0]->value, 1500.0);
  auto eval = find(r, "eval_duration");  // Ollama nanoseconds
  ASSERT_EQ(eval.size(), 1u);
  EXPECT_DOUBLE_EQ(eval[0]->value, 1000.0);
  auto mem = find(r, "memory");
  ASSERT_EQ(mem.size(), 1u);
  EXPECT_DOUBLE_EQ(mem[0]->value, 1536.0);
  EXPECT_EQ(mem[0]->unit, "MB");
  EXPECT_EQ(mem[0]->kind, ci::MetricKind::memory);
  auto count = find(r, "eval_count");
  ASSERT_EQ(count.size(), 1u);
  EXPECT_EQ(count[0]->kind, ci::MetricKind::count);
  EXPECT_EQ(count[0]->origin, "eval_count");
}

TEST(Csv, QuantizationFromTheModelTag) {
  auto r = csv("model,tokens_s\nllama3.1:8b-instruct-q5_K_M,65.1\n");
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].context->quantization, "q5_K_M");
}

TEST(Csv, HeaderUnitsAndCellUnits) {
  auto r =
      csv("Test Name,Generation Time (ms),Tokens per Second,Memory (GB),Latency\n"
          "a,3089.02,14.24,1.5,0.25 s\n");
  ASSERT_TRUE(r.errors.empty());
  auto gen = find(r, "generation_time");
  ASSERT_EQ(gen.size(), 1u);
  EXPECT_EQ(gen[0]->unit, "ms");
  EXPECT_EQ(gen[0]->origin, "Generation Time (ms)");
  EXPECT_EQ(find(r, "tokens_per_s").size(), 1u);
  auto mem = find(r, "memory");
  ASSERT_EQ(mem.size(), 1u);
  EXPECT_DOUBLE_EQ(mem[0]->value, 1536.0);
  auto lat = find(r, "latency");
  ASSERT_EQ(lat.size(), 1u);
  EXPECT_DOUBLE_EQ(lat[0]->value, 250.0);
  EXPECT_EQ(lat[0]->unit, "ms");
  EXPECT_EQ(r.records[0].context->find("test_name"), "a");
}

TEST(Csv, NsightUnitsRowAndGroupedDigits) {
  auto r =
      csv("\"ID\",\"Kernel Name\",\"dram__bytes\",\"gpu__time_duration\",\"sm__throughput_pct\"\n"
          "\"\",\"\",\"Kbyte\",\"nsecond\",\"%\"\n"
          "\"0\",\"gemv\",\"2,048\",\"1,500,000\",\"87.5\"\n");
  ASSERT_TRUE(r.errors.empty());
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_EQ(r.records[0].metric, "dram");
  EXPECT_DOUBLE_EQ(r.records[0].value, 2.0);  // 2048 KB = 2 MB
  EXPECT_EQ(r.records[0].unit, "MB");
  EXPECT_EQ(r.records[0].line, 3);
  EXPECT_DOUBLE_EQ(r.records[1].value, 1.5);  // ns -> ms
  EXPECT_EQ(r.records[2].unit, "%");
  EXPECT_EQ(r.files[0].rows, 1u);
}

TEST(Csv, SettingsInAJsonCell) {
  auto r =
      csv("model,tokens_s,options\n"
          "llama3.1:8b-instruct-q4_0,77.6,\"{\"\"temperature\"\":0.3,\"\"top_p\"\":0.9}\"\n");
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].context->temperature, "0.3");
  EXPECT_EQ(r.records[0].context->find("top_p"), "0.9");
}

TEST(Csv, HugeFieldIsAFileError) {
  ci::IngestOptions opts;
  opts.max_line_bytes = 64;
  std::string text =
      "model,note\nllama,\"" + std::string(40, 'x') + "\n" + std::string(40, 'y') + "\"\n";
  auto r = ci::ingest_buffer(text, ci::FileType::csv, "big.csv", opts);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_TRUE(r.errors[0].fatal);
  EXPECT_NE(r.errors[0].reason.find("over the 64-byte limit"), std::string::npos);
  EXPECT_EQ(r.errors[0].line, 2);
}

TEST(Csv, HeaderOnlyAndEmptyFiles) {
  EXPECT_TRUE(csv("").records.empty());
  EXPECT_TRUE(csv("model,tokens_s\n").records.empty());
  EXPECT_TRUE(csv("model,tokens_s\n").errors.empty());
}

// The agent workflow end to end on the synthetic model (in-process), and its parts.
#include "support/test_support.hpp"

#include <chimera/workflow/workflow.hpp>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;
using namespace chimera;
using namespace chimera::workflow;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path corpus() {
  return fs::path(CHIMERA_TEST_DATA).parent_path().parent_path().parent_path() / "shared" /
         "corpus" / "chimeraforge";
}

// The end-to-end runs read the shared corpus beside the clone; a clone without it (../shared
// absent) runs them on the project's own sample data instead, which every check here also holds
// for (more than 100 records, every section).
fs::path workflow_data() {
  if (fs::is_directory(corpus() / "data")) return corpus() / "data";
  return fs::path(CHIMERA_TEST_DATA).parent_path().parent_path() / "data" / "sample";
}

TEST(Sections, AnyHeadingStyle) {
  const std::string answer =
      "Intro line that belongs nowhere.\n"
      "## Executive Summary\nFast and steady.\n\n"
      "**Key findings:** num_gpu 80 wins.\nMore.\n"
      "3. METRICS ANALYSIS\nTTFT p50 is 120 ms.\n"
      "Recommendations:\n- use num_ctx 512\n";
  const Sections s = parse_sections(answer);
  ASSERT_EQ(s.found.size(), 4u);
  EXPECT_TRUE(s.missing.empty());
  EXPECT_EQ(s.found[0].first, "Executive Summary");
  EXPECT_EQ(s.found[0].second, "Fast and steady.");
  EXPECT_EQ(s.found[1].first, "Key Findings");
  EXPECT_EQ(s.found[1].second, "num_gpu 80 wins.\nMore.");
  EXPECT_EQ(s.found[2].second, "TTFT p50 is 120 ms.");
  EXPECT_EQ(s.found[3].second, "- use num_ctx 512");
}

TEST(Sections, MissingSectionsAreReported) {
  const Sections s = parse_sections("# Summary\nok\n\nThe findings are in the summary text.");
  ASSERT_EQ(s.found.size(), 1u);
  EXPECT_EQ(s.missing,
            (std::vector<std::string>{"Key Findings", "Metrics Analysis", "Recommendations"}));
  EXPECT_EQ(parse_sections("random noise from a random model").missing.size(), 4u);
}

TEST(Config, TomlFileAndClearErrors) {
  const fs::path dir = fs::temp_directory_path() / ("chimera-wf-config-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "fast.toml") << "name = \"fast\"\ndigest_budget = 800\n[options]\n"
                                      "num_ctx = 1024\ntemperature = 0.5\nstop = [\"END\"]\n";
  WorkflowConfig c;
  std::string error;
  ASSERT_TRUE(load_config(dir / "fast.toml", c, error)) << error;
  EXPECT_EQ(c.name, "fast");
  EXPECT_EQ(c.digest_budget, 800u);
  EXPECT_EQ(c.options.num_ctx.value_or(0), 1024);
  EXPECT_DOUBLE_EQ(c.options.temperature.value_or(0), 0.5);
  EXPECT_EQ(c.options.stop, std::vector<std::string>{"END"});

  std::ofstream(dir / "bad.toml") << "[options]\nnum_ctx = 512\nwarp_speed = 9\n";
  EXPECT_FALSE(load_config(dir / "bad.toml", c, error));
  EXPECT_NE(error.find("bad.toml:3"), std::string::npos) << error;
  EXPECT_NE(error.find("warp_speed"), std::string::npos) << error;

  std::ofstream(dir / "broken.toml") << "name = \"x\n";
  EXPECT_FALSE(load_config(dir / "broken.toml", c, error));
  EXPECT_NE(error.find("broken.toml:1"), std::string::npos) << error;
  fs::remove_all(dir);
}

class WorkflowEndToEnd : public ::testing::Test {
 protected:
  WorkflowOptions options(const fs::path& out) {
    WorkflowOptions o;
    o.data = {workflow_data()};
    o.endpoint.kind = BackendKind::llama;
    o.endpoint.url = test::tiny_model().string();
    o.endpoint.llama.parallel = 1;
    o.endpoint.llama.ctx_per_seq = 4096;
    o.out_dir = out;
    return o;
  }
};

TEST_F(WorkflowEndToEnd, ReportAndMetricsCarryEverySectionAndFigure) {
  const fs::path out = fs::temp_directory_path() / ("chimera-wf-" + std::to_string(::getpid()));
  fs::remove_all(out);
  WorkflowOptions o = options(out);
  WorkflowConfig cfg = baseline_config();
  cfg.analysis_tokens = 48;
  cfg.report_tokens = 48;
  o.configs = {cfg};
  std::vector<std::string> stages;
  o.on_progress = [&](const ProgressEvent& e) {
    if (e.kind == ProgressEvent::Kind::stage_done) stages.push_back(e.stage);
  };
  const WorkflowResult r = run_workflow(o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(stages, (std::vector<std::string>{"ingest", "digest", "analysis", "report", "write"}));

  const std::string report = slurp(out / "report.md");
  for (const char* section : {"# Benchmark analysis report", "| configuration | baseline",
                              "## Ingestion summary", "## Metric tables", "### Best throughput",
                              "## Errors found", "## Analysis", "## Technical report",
                              "## Appendix", "### Stage times", "### LLM calls",
                              "### The digest sent to the model"}) {
    EXPECT_NE(report.find(section), std::string::npos) << section;
  }

  const auto doc = boost::json::parse(slurp(out / "metrics.json")).as_object();
  EXPECT_EQ(doc.at("schema").as_string(), "chimeraforge.metrics");
  EXPECT_EQ(doc.at("version").as_int64(), 1);
  EXPECT_TRUE(doc.at("ok").as_bool());
  EXPECT_TRUE(doc.at("system").as_object().contains("cpu"));
  const auto& run = doc.at("runs").as_array().at(0).as_object();
  const auto& digest = run.at("digest").as_object();
  EXPECT_LE(digest.at("estimated_tokens").to_number<int64_t>(),
            digest.at("token_budget").to_number<int64_t>());
  EXPECT_GT(run.at("ingest").as_object().at("records").to_number<int64_t>(), 100);
  const auto& calls = run.at("calls").as_array();
  ASSERT_EQ(calls.size(), 2u);
  for (const auto& c : calls) {
    const auto& f = c.as_object().at("figures").as_object();
    for (const char* name : {"ttft_client", "ttft_server", "e2e", "tokens_out", "tokens_in",
                             "decode_tps_server", "decode_tps_client"}) {
      ASSERT_TRUE(f.at(name).is_object()) << name;
    }
    EXPECT_EQ(f.at("ttft_client").as_object().at("source").as_string(), "measured");
    EXPECT_EQ(f.at("tokens_out").as_object().at("source").as_string(), "server");
    EXPECT_EQ(f.at("decode_tps_client").as_object().at("source").as_string(), "derived");
    EXPECT_EQ(f.at("tokens_out").as_object().at("value").to_number<int64_t>(), 48);
  }
  fs::remove_all(out);
}

TEST_F(WorkflowEndToEnd, TwoConfigurationsGiveAComparison) {
  const fs::path out = fs::temp_directory_path() / ("chimera-wf2-" + std::to_string(::getpid()));
  fs::remove_all(out);
  WorkflowOptions o = options(out);
  WorkflowConfig a = baseline_config(), b = chimera_config();
  a.analysis_tokens = a.report_tokens = b.analysis_tokens = b.report_tokens = 24;
  o.configs = {a, b};
  o.runs = 2;
  const WorkflowResult r = run_workflow(o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.runs.size(), 4u);
  EXPECT_TRUE(fs::exists(out / "report-baseline.md"));
  EXPECT_TRUE(fs::exists(out / "report-chimera.md"));
  const std::string cmp = slurp(out / "comparison.md");
  EXPECT_NE(cmp.find("## chimera vs baseline"), std::string::npos) << cmp;
  EXPECT_NE(cmp.find("run duration"), std::string::npos) << cmp;
  // The chimera configuration's num_ctx 512 shrinks the digest to fit.
  EXPECT_LT(r.runs[2].digest_budget, r.runs[0].digest_budget);
  fs::remove_all(out);
}

TEST_F(WorkflowEndToEnd, ClearErrors) {
  WorkflowOptions o = options(fs::temp_directory_path() / "chimera-wf-none");
  o.configs = {baseline_config()};
  o.data = {fs::temp_directory_path() / "no-such-folder-for-chimera"};
  WorkflowResult r = run_workflow(o);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.error.empty());
  o.data = {workflow_data()};
  o.endpoint.url = "/no/model.gguf";
  r = run_workflow(o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("/no/model.gguf"), std::string::npos) << r.error;
}

}  // namespace

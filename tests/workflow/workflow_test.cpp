// The agent workflow end to end on the synthetic model (in-process), and its parts.
#include "ingest/experiment_tree.hpp"
#include "support/test_support.hpp"

#include <chimera/workflow/workflow.hpp>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <regex>
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
  const fs::path dir =
      fs::temp_directory_path() / ("chimera-wf-config-" + std::to_string(::getpid()));
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

  // Integers are range-checked in their own type (4294967297 is not 1), numbers must be finite,
  // and a misspelled top-level key is an error instead of a silent default.
  std::ofstream(dir / "wrap.toml") << "name = \"w\"\nreport_tokens = 4294967297\n";
  EXPECT_FALSE(load_config(dir / "wrap.toml", c, error));
  EXPECT_NE(error.find("wrap.toml:2"), std::string::npos) << error;
  EXPECT_NE(error.find("4294967297"), std::string::npos) << error;
  std::ofstream(dir / "nan.toml") << "[options]\ntemperature = nan\n";
  EXPECT_FALSE(load_config(dir / "nan.toml", c, error));
  EXPECT_NE(error.find("nan.toml:2"), std::string::npos) << error;
  EXPECT_NE(error.find("finite"), std::string::npos) << error;
  std::ofstream(dir / "typo.toml") << "name = \"t\"\ndigest_budgte = 900\n";
  EXPECT_FALSE(load_config(dir / "typo.toml", c, error));
  EXPECT_NE(error.find("typo.toml:2"), std::string::npos) << error;
  EXPECT_NE(error.find("digest_budgte"), std::string::npos) << error;
  // A syntax error names the file, line and column; a missing file says it cannot be read.
  std::ofstream(dir / "syntax.toml") << "name = \"s\"\n[options\n";
  EXPECT_FALSE(load_config(dir / "syntax.toml", c, error));
  EXPECT_NE(error.find("syntax.toml:2:"), std::string::npos) << error;
  EXPECT_FALSE(load_config(dir / "absent.toml", c, error));
  EXPECT_NE(error.find("cannot read workflow configuration"), std::string::npos) << error;
  EXPECT_NE(error.find("absent.toml"), std::string::npos) << error;
  std::ofstream(dir / "topk.toml") << "[options]\ntop_k = -5\n";
  EXPECT_FALSE(load_config(dir / "topk.toml", c, error));
  EXPECT_NE(error.find("top_k"), std::string::npos) << error;

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
  for (const char* section :
       {"# Benchmark analysis report", "| configuration | baseline", "## Ingestion summary",
        "## Metric tables", "### Best throughput", "## Errors found", "## Analysis",
        "## Technical report", "## Appendix", "### Stage times", "### LLM calls",
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

// The report without the model's sections (random text from the synthetic model).
std::string computed_part(const std::string& report) {
  std::string out = report;
  const auto a = out.find("## Analysis\n");
  const auto b = out.find("## Appendix\n");
  if (a != std::string::npos && b != std::string::npos && b > a) out.erase(a, b - a);
  return out;
}

TEST_F(WorkflowEndToEnd, PlantedExperimentUnderTheChimeraContext) {
  const fs::path data =
      fs::temp_directory_path() / ("chimera-wf-tree-" + std::to_string(::getpid()));
  const fs::path out = fs::temp_directory_path() / ("chimera-wf-x-" + std::to_string(::getpid()));
  fs::remove_all(out);
  test::PlantedTree planted;
  test::write_planted_tree(data, test::TreeStyle::folders, planted);
  WorkflowOptions o = options(out);
  o.data = {data};
  WorkflowConfig cfg = chimera_config();
  cfg.analysis_tokens = 32;
  cfg.report_tokens = 32;
  o.configs = {cfg};
  const WorkflowResult r = run_workflow(o);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.runs.size(), 1u);
  const RunRecord& run = r.runs[0];
  EXPECT_EQ(run.factors, 3u);
  EXPECT_EQ(run.configurations, 18u);
  EXPECT_EQ(run.experiment_runs, 90u);
  // num_ctx 512: the model still receives the structure, the top effects and the best.
  EXPECT_LE(run.digest_tokens, run.digest_budget);
  const std::string& prompt = run.analysis.prompt;
  for (const char* s :
       {"18 configs, 90 runs (n=5 each)", "runtime async-std|smol|tokio", "num_gpu 60|80|100",
        "num_ctx 512|1024", "higher better): num_gpu", "lower better): runtime",
        "throughput best num_gpu=100 num_ctx=512 runtime=tokio"})
    EXPECT_NE(prompt.find(s), std::string::npos) << s << "\n" << prompt;

  const std::string report = slurp(out / "report.md");
  for (const char* s :
       {"## Experiment structure", "| runtime | async-std, smol, tokio | 30, 30, 30 |",
        "| GPU layers (num_gpu) | 60, 80, 100 |", "18 with n=5", "## Effects",
        "### throughput (tokens/s)", "Level means of num_gpu:", "## Metric tables",
        "### Best throughput", "| num_gpu=100 num_ctx=512 runtime=tokio |",
        "### Best against runner-up: throughput", "larger than the noise", "## Anomalies",
        "computed from 10 values in 5 runs (first: `"})
    EXPECT_NE(report.find(s), std::string::npos) << s;
  // Charts beside the report, linked from it.
  const std::regex link(R"(!\[[^\]]*\]\((chart-[^)]+\.svg)\))");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(report, m, link)) << report;
  EXPECT_TRUE(fs::exists(out / m[1].str())) << m[1];
  EXPECT_NE(slurp(out / m[1].str()).find("<svg"), std::string::npos);
  // No float32 artefacts or long fractions anywhere we wrote numbers.
  const std::regex noise(R"(\d\.\d{7,})");
  const std::string computed = computed_part(report);
  EXPECT_FALSE(std::regex_search(computed, m, noise)) << m[0];

  const auto doc = boost::json::parse(slurp(out / "metrics.json")).as_object();
  const auto& x = doc.at("experiment").as_object();
  EXPECT_EQ(x.at("factors").as_array().size(), 3u);
  EXPECT_EQ(x.at("configurations").as_array().size(), 18u);
  const auto& first = x.at("configurations").as_array()[0].as_object();
  const auto& tps = first.at("metrics").as_object().at("throughput").as_object();
  EXPECT_EQ(tps.at("n").as_int64(), 5);
  EXPECT_TRUE(tps.at("mean").is_double());
  EXPECT_EQ(tps.at("ci95").as_array().size(), 2u);
  EXPECT_EQ(x.at("effects").as_array()[0].as_object().at("factor").as_string(), "num_gpu");
  fs::remove_all(out);
  fs::remove_all(data);
}

TEST_F(WorkflowEndToEnd, MapReduceAnalysesEachMetricThenSynthesises) {
  const fs::path data = fs::temp_directory_path() / ("chimera-wf-mr-" + std::to_string(::getpid()));
  const fs::path out = fs::temp_directory_path() / ("chimera-wf-mro-" + std::to_string(::getpid()));
  test::write_planted_tree(data, test::TreeStyle::key_value);
  WorkflowOptions o = options(out);
  o.data = {data};
  WorkflowConfig cfg = chimera_config();
  cfg.analysis_tokens = cfg.report_tokens = 24;
  o.configs = {cfg};
  o.strategy = Strategy::map_reduce;
  const WorkflowResult r = run_workflow(o);
  ASSERT_TRUE(r.ok) << r.error;
  const RunRecord& run = r.runs[0];
  ASSERT_EQ(run.slices.size(), 2u);  // throughput and TTFT
  EXPECT_NE(run.slices[0].prompt.find("throughput (tokens/s"), std::string::npos);
  EXPECT_EQ(run.slices[1].prompt.find("throughput (tokens/s"), std::string::npos);
  EXPECT_NE(run.analysis.prompt.find("Findings from separate analyses"), std::string::npos);
  EXPECT_GT(run.slices_ms, 0.0);
  const auto doc = boost::json::parse(slurp(out / "metrics.json")).as_object();
  const auto& j = doc.at("runs").as_array()[0].as_object();
  EXPECT_EQ(j.at("strategy").as_string(), "map-reduce");
  EXPECT_EQ(j.at("calls").as_array().size(), 4u);
  fs::remove_all(out);
  fs::remove_all(data);
}

TEST_F(WorkflowEndToEnd, AFailedRunLeavesTheGoodResultAndRecordsItselfBeside) {
  const fs::path out =
      fs::temp_directory_path() / ("chimera-wf-keep-" + std::to_string(::getpid()));
  fs::remove_all(out);
  WorkflowOptions o = options(out);
  WorkflowConfig cfg = baseline_config();
  cfg.analysis_tokens = cfg.report_tokens = 16;
  o.configs = {cfg};
  ASSERT_TRUE(run_workflow(o).ok);
  const std::string report = slurp(out / "report.md");
  const std::string metrics = slurp(out / "metrics.json");
  ASSERT_FALSE(report.empty());

  // The same folder, a dead endpoint, through the CLI: exit code 1, nothing replaced.
  const std::string cmd = std::string(CHIMERA_CLI) + " run --backend ollama --endpoint " +
                          "http://127.0.0.1:1 --model m --quiet --data " + o.data[0].string() +
                          " --out " + out.string() + " 2>/dev/null";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_EQ(slurp(out / "report.md"), report);
  EXPECT_EQ(slurp(out / "metrics.json"), metrics);
  ASSERT_TRUE(fs::exists(out / "failed-run.json"));
  const auto failed = boost::json::parse(slurp(out / "failed-run.json")).as_object();
  EXPECT_FALSE(failed.at("ok").as_bool());
  EXPECT_NE(failed.at("error").as_string().find("127.0.0.1:1"), std::string::npos)
      << failed.at("error").as_string();
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();

  // A later good run replaces the set and drops the stale failure.
  ASSERT_TRUE(run_workflow(o).ok);
  EXPECT_FALSE(fs::exists(out / "failed-run.json"));
  fs::remove_all(out);
}

}  // namespace

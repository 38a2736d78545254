// The statistics every published figure rests on, against answers worked out by hand: the same
// file (known_answers.json) is checked against the Python harness (bench/compare/compare.py) by
// tests/bench/test_known_answers.py, so the two implementations cannot drift apart unnoticed.
// The records are those of tests/bench/test_compare.py, whose comments work out each answer.
#include <chimera/metrics/figures.hpp>
#include <chimera/scenarios/multi.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>

namespace {

namespace json = boost::json;
using chimera::multi::RequestRecord;

const json::object& known() {
  static const json::object doc = [] {
    // CHIMERA_TEST_DATA is tests/data; its parent is tests/, whose metrics/ holds the file.
    const auto path =
        std::filesystem::path(CHIMERA_TEST_DATA).parent_path() / "metrics" / "known_answers.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    std::stringstream text;
    text << in.rdbuf();
    return json::parse(text.str()).as_object();
  }();
  return doc;
}

std::vector<double> numbers(const json::array& a) {
  std::vector<double> out;
  for (const auto& v : a) out.push_back(v.to_number<double>());
  return out;
}

int64_t ns_or_zero(const json::value& v) {
  return v.is_null() ? 0 : v.to_number<int64_t>();
}

RequestRecord record(const json::object& o) {
  RequestRecord r;
  r.agent = static_cast<int>(o.at("agent").to_number<int64_t>());
  r.request = static_cast<int>(o.at("request").to_number<int64_t>());
  r.ok = o.at("ok").as_bool();
  r.error = o.at("error").as_string().c_str();
  r.t_send_ns = ns_or_zero(o.at("t_send_ns"));
  r.t_first_token_ns = ns_or_zero(o.at("t_first_token_ns"));
  r.t_last_token_ns = ns_or_zero(o.at("t_last_token_ns"));
  r.t_done_ns = ns_or_zero(o.at("t_done_ns"));
  r.first_byte_server_ns = ns_or_zero(o.at("first_byte_server_ns"));
  r.tokens_out = o.at("tokens_out").is_null() ? -1 : o.at("tokens_out").to_number<int64_t>();
  r.chunks = o.at("chunks").to_number<int64_t>();
  r.lag_sum_ns = o.at("lag_sum_ns").to_number<int64_t>();
  r.lag_max_ns = o.at("lag_max_ns").to_number<int64_t>();
  r.stalls = o.at("stalls").to_number<int64_t>();
  for (const auto& l : o.at("lags_ns").as_array()) r.lags_ns.push_back(l.to_number<int64_t>());
  return r;
}

double expect_of(const json::object& run, const char* key) {
  return run.at("expect").as_object().at(key).to_number<double>();
}

chimera::multi::ConcurrencyFigures figures_of(const json::object& run,
                                              const std::vector<RequestRecord>& records) {
  return chimera::multi::concurrency_figures(
      records, static_cast<int>(run.at("agents").to_number<int64_t>()),
      run.at("lone_decode_tps").to_number<double>(),
      run.at("loopback_floor_ns").to_number<int64_t>());
}

std::vector<RequestRecord> all_records() {
  std::vector<RequestRecord> out;
  for (const auto& r : known().at("records").as_array()) out.push_back(record(r.as_object()));
  return out;
}

TEST(KnownAnswers, NearestRankPercentile) {
  for (const auto& c : known().at("percentile").as_array()) {
    const auto& o = c.as_object();
    std::vector<double> values;
    if (o.contains("one_to")) {
      values.resize(static_cast<std::size_t>(o.at("one_to").to_number<int64_t>()));
      std::iota(values.begin(), values.end(), 1.0);
    } else {
      values = numbers(o.at("values").as_array());
    }
    const double p = o.at("p").to_number<double>();
    EXPECT_EQ(chimera::metrics::percentile(values, p), o.at("expect").to_number<double>())
        << "p" << p << " of " << values.size() << " values";
  }
  EXPECT_EQ(chimera::metrics::percentile({}, 50), 0.0);  // C++ says 0 where Python says None
}

TEST(KnownAnswers, MeanAndSampleSd) {
  for (const auto& c : known().at("mean_sd").as_array()) {
    const auto& o = c.as_object();
    const auto got = chimera::metrics::mean_sd(numbers(o.at("values").as_array()));
    if (o.at("mean").is_null()) {
      EXPECT_FALSE(got.mean.has_value());
    } else {
      ASSERT_TRUE(got.mean.has_value());
      EXPECT_DOUBLE_EQ(*got.mean, o.at("mean").to_number<double>());
    }
    if (o.at("sd").is_null()) {
      EXPECT_FALSE(got.sd.has_value());
    } else {
      ASSERT_TRUE(got.sd.has_value());
      EXPECT_DOUBLE_EQ(*got.sd, o.at("sd").to_number<double>());
    }
  }
}

TEST(KnownAnswers, ConcurrencyFiguresOfARunWithAFailedRequest) {
  const auto& run = known().at("run").as_object();
  const auto f = figures_of(run, all_records());
  EXPECT_EQ(f.requests, static_cast<int64_t>(expect_of(run, "requests")));
  EXPECT_EQ(f.errors, static_cast<int64_t>(expect_of(run, "errors")));
  EXPECT_EQ(f.tokens, static_cast<int64_t>(expect_of(run, "tokens")));
  EXPECT_DOUBLE_EQ(f.ttft_p50, expect_of(run, "ttft_client_p50_ms"));
  EXPECT_DOUBLE_EQ(f.ttft_p90, expect_of(run, "ttft_client_p90_ms"));
  EXPECT_DOUBLE_EQ(f.ttft_p99, expect_of(run, "ttft_client_p99_ms"));
  EXPECT_DOUBLE_EQ(f.ttft_max, expect_of(run, "ttft_client_max_ms"));
  ASSERT_TRUE(f.overhead_ttft_p50 && f.overhead_ttft_p99);
  EXPECT_DOUBLE_EQ(*f.overhead_ttft_p50, expect_of(run, "overhead_ttft_p50_ms"));
  EXPECT_DOUBLE_EQ(*f.overhead_ttft_p99, expect_of(run, "overhead_ttft_p99_ms"));
  EXPECT_DOUBLE_EQ(f.e2e_p50, expect_of(run, "e2e_p50_ms"));
  EXPECT_NEAR(f.system_tps, expect_of(run, "system_tps"), 1e-9);
  ASSERT_TRUE(f.efficiency.has_value());
  EXPECT_NEAR(*f.efficiency, expect_of(run, "efficiency"), 1e-12);
  ASSERT_TRUE(f.stall_rate.has_value());
  EXPECT_DOUBLE_EQ(*f.stall_rate, expect_of(run, "stall_rate"));
  EXPECT_NEAR(f.balance, expect_of(run, "balance"), 1e-12);
  ASSERT_TRUE(f.lag_p50.has_value());
  EXPECT_DOUBLE_EQ(*f.lag_p50, expect_of(run, "delivery_lag_p50_ms"));
}

TEST(KnownAnswers, ContentionOverRequestsThatStreamed) {
  // (14.2 ms of lags - 28 chunks x the 0.1 ms floor) / (13 + 22 + 9) ms of request time.
  const auto& run = known().at("run_ok_only").as_object();
  const auto all = all_records();
  std::vector<RequestRecord> records;
  for (const auto& i : run.at("records").as_array()) {
    records.push_back(all.at(static_cast<std::size_t>(i.to_number<int64_t>())));
  }
  const auto f = figures_of(run, records);
  ASSERT_TRUE(f.contention.has_value());
  EXPECT_NEAR(*f.contention, expect_of(run, "contention"), 1e-12);
  ASSERT_TRUE(f.efficiency.has_value());
  EXPECT_NEAR(*f.efficiency, expect_of(run, "efficiency"), 1e-12);
  EXPECT_NEAR(f.system_tps, expect_of(run, "system_tps"), 1e-9);
}

TEST(KnownAnswers, NoEfficiencyWithoutALoneRateNoContentionWithoutAFloor) {
  const auto f = chimera::multi::concurrency_figures(all_records(), 2, std::nullopt, std::nullopt);
  EXPECT_FALSE(f.efficiency.has_value());
  EXPECT_FALSE(f.contention.has_value());
  EXPECT_TRUE(f.stall_rate.has_value());  // needs server times only
}

}  // namespace

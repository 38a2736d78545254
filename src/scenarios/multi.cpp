#include <chimera/core/options.hpp>
#include <chimera/metrics/figures.hpp>
#include <chimera/scenarios/multi.hpp>
#include <chimera/workflow/workflow.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <stdexcept>

namespace chimera::multi {

namespace json = boost::json;

const char* to_string(Scenario s) {
  switch (s) {
    case Scenario::homogeneous:
      return "homogeneous";
    case Scenario::personas:
      return "personas";
    case Scenario::workflow:
      return "workflow";
  }
  return "?";
}

std::optional<Scenario> parse_scenario(std::string_view name) {
  for (Scenario s : {Scenario::homogeneous, Scenario::personas, Scenario::workflow}) {
    if (name == to_string(s)) return s;
  }
  return std::nullopt;
}

int64_t rss_peak_bytes() {
  // getrusage, not /proc/self/status: it needs no file descriptor, so the figure survives a run
  // that used up every descriptor (EMFILE). ru_maxrss is VmHWM, in KiB on Linux.
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0) {
    return static_cast<int64_t>(ru.ru_maxrss) * 1024;
  }
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::strtoll(line.c_str() + 6, nullptr, 10) * 1024;  // "VmHWM:   12345 kB"
    }
  }
  return 0;
}

namespace {

double ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

double pct_ms(const std::vector<double>& v, double p) {
  return metrics::percentile(v, p);
}

}  // namespace

std::optional<int64_t> median_lag(const std::vector<RequestRecord>& records) {
  std::vector<int64_t> all;
  for (const auto& r : records) all.insert(all.end(), r.lags_ns.begin(), r.lags_ns.end());
  if (all.empty()) return std::nullopt;
  std::sort(all.begin(), all.end());
  return all[(all.size() - 1) / 2];
}

ConcurrencyFigures concurrency_figures(const std::vector<RequestRecord>& records, int agents,
                                       std::optional<double> lone_decode_tps,
                                       std::optional<int64_t> loopback_floor_ns) {
  ConcurrencyFigures f;
  f.agents = agents;
  f.requests = static_cast<int64_t>(records.size());
  int64_t first_send = std::numeric_limits<int64_t>::max();
  int64_t last_token = 0;
  int64_t chunks = 0, lag_sum = 0, stalls = 0, stream_wall = 0;
  bool have_lags = false;
  std::vector<double> ttft, itl, overhead, e2e, lags;
  std::vector<double> decode;
  struct Span {
    int64_t start = std::numeric_limits<int64_t>::max();
    int64_t end = 0;
  };
  std::map<int, Span> per_agent;
  for (const auto& r : records) {
    if (!r.ok) ++f.errors;
    if (r.t_send_ns != 0) {
      first_send = std::min(first_send, r.t_send_ns);
      auto& s = per_agent[r.agent];
      s.start = std::min(s.start, r.t_send_ns);
      s.end = std::max(s.end, r.t_done_ns);
    }
    if (r.t_last_token_ns != 0) last_token = std::max(last_token, r.t_last_token_ns);
    const int64_t tokens = r.tokens_out >= 0 ? r.tokens_out : r.chunks;
    f.tokens += tokens;
    if (r.first_byte_server_ns != 0 || r.lag_sum_ns != 0 || !r.lags_ns.empty()) have_lags = true;
    chunks += r.chunks;
    lag_sum += r.lag_sum_ns;
    stalls += r.stalls;
    if (r.t_done_ns > r.t_send_ns && r.t_send_ns != 0) stream_wall += r.t_done_ns - r.t_send_ns;
    if (!r.ok) continue;
    if (r.t_first_token_ns != 0) ttft.push_back(ms(r.t_first_token_ns - r.t_send_ns));
    if (r.t_first_token_ns != 0 && r.first_byte_server_ns != 0) {
      overhead.push_back(ms(r.t_first_token_ns - r.first_byte_server_ns));
    }
    for (int64_t g : r.itl_ns) itl.push_back(ms(g));
    for (int64_t l : r.lags_ns) lags.push_back(ms(l));
    if (r.t_done_ns > r.t_send_ns) e2e.push_back(ms(r.t_done_ns - r.t_send_ns));
    if (tokens > 1 && r.t_last_token_ns > r.t_first_token_ns && r.t_first_token_ns != 0) {
      decode.push_back(static_cast<double>(tokens - 1) * 1e9 /
                       static_cast<double>(r.t_last_token_ns - r.t_first_token_ns));
    }
  }
  if (last_token > first_send) {
    f.wall_s = static_cast<double>(last_token - first_send) / 1e9;
    f.system_tps = static_cast<double>(f.tokens) / f.wall_s;
  }
  if (lone_decode_tps && *lone_decode_tps > 0 && agents > 0) {
    f.efficiency = f.system_tps / (agents * *lone_decode_tps);
  }
  if (have_lags && chunks > 0) {
    f.stall_rate = static_cast<double>(stalls) / static_cast<double>(chunks);
    if (loopback_floor_ns && stream_wall > 0) {
      f.contention = static_cast<double>(lag_sum - chunks * *loopback_floor_ns) /
                     static_cast<double>(stream_wall);
    }
  }
  if (!per_agent.empty()) {
    int64_t sum = 0, longest = 0;
    for (const auto& [a, s] : per_agent) {
      const int64_t d = s.end > s.start ? s.end - s.start : 0;
      sum += d;
      longest = std::max(longest, d);
    }
    if (longest > 0) {
      f.balance = static_cast<double>(sum) /
                  (static_cast<double>(per_agent.size()) * static_cast<double>(longest));
    }
  }
  if (!decode.empty()) {
    f.decode_tps_client =
        std::accumulate(decode.begin(), decode.end(), 0.0) / static_cast<double>(decode.size());
  }
  f.ttft_p50 = pct_ms(ttft, 50);
  f.ttft_p90 = pct_ms(ttft, 90);
  f.ttft_p99 = pct_ms(ttft, 99);
  f.ttft_max = pct_ms(ttft, 100);
  f.itl_p50 = pct_ms(itl, 50);
  f.itl_p99 = pct_ms(itl, 99);
  if (!overhead.empty()) {
    f.overhead_ttft_p50 = pct_ms(overhead, 50);
    f.overhead_ttft_p99 = pct_ms(overhead, 99);
  }
  if (!lags.empty()) {
    f.lag_p50 = pct_ms(lags, 50);
    f.lag_p99 = pct_ms(lags, 99);
  }
  f.e2e_p50 = pct_ms(e2e, 50);
  f.e2e_p99 = pct_ms(e2e, 99);
  return f;
}

namespace {

bool any_option_set(const Options& options) {
  bool any = false;
  for_each_set_option(options, [&any](std::string_view, const auto&) { any = true; });
  return any;
}

RequestRecord record_of(const Completion& c, int agent, int request) {
  RequestRecord rec;
  rec.agent = agent;
  rec.request = request;
  rec.ok = c.ok();
  rec.error = c.error.message;
  rec.endpoint = c.endpoint;
  const auto& f = c.figures;
  rec.t_send_ns = f.t_send_ns;
  rec.t_first_token_ns = f.t_first_token_ns.value_or(0);
  rec.t_last_token_ns = f.t_last_token_ns.value_or(0);
  rec.t_done_ns = f.t_send_ns != 0 && f.e2e_ns ? f.t_send_ns + *f.e2e_ns : now_ns();
  rec.first_byte_server_ns = f.first_byte_server_ns.value_or(0);
  rec.tokens_out = f.tokens_out.value_or(-1);
  rec.chunks = f.chunks.value_or(0);
  rec.itl_ns = f.itl_ns;
  return rec;
}

// The study's two personas (TR114): one gathers, one interprets.
const char* kCollectorSystem =
    "You are a data collection agent. Gather the benchmark metrics you are given and list them "
    "plainly, one per line.";
const char* kInsightSystem =
    "You are an insight agent. Read benchmark metrics and give the one recommendation that "
    "matters most, with its reason.";

}  // namespace

MultiResult run_multi(Engine& engine, const MultiOptions& o) {
  const auto names = engine.pool_names();
  if (names.empty()) throw std::invalid_argument("no endpoint pool: give --pools or --endpoint");
  std::string main_pool = o.pool.empty() ? names.front() : o.pool;
  if (engine.find_pool(main_pool) == nullptr) {
    throw std::invalid_argument(
        fmt::format("no pool named '{}' (pools: {})", main_pool, fmt::join(names, ", ")));
  }
  std::string collector = main_pool, insight = main_pool;
  if (o.scenario == Scenario::personas) {
    if (engine.find_pool("collector") && engine.find_pool("insight")) {
      collector = "collector";
      insight = "insight";
    } else if (names.size() >= 2) {
      collector = names[0];
      insight = names[1];
    }
  }
  if (o.agents < 1) throw std::invalid_argument("--agents must be at least 1");

  std::vector<std::vector<RequestRecord>> per_agent(static_cast<std::size_t>(o.agents));
  std::atomic<int64_t> done{0}, errors{0};
  // Checked in double before any conversion: 1e10 s, -1 or nan would overflow (or be undefined
  // as) an int64 count of nanoseconds.
  if (!std::isfinite(o.duration_s) || o.duration_s < 0 || o.duration_s > kMaxDurationS) {
    throw std::invalid_argument(
        fmt::format("duration_s is {}; it must be a finite number from 0 "
                    "to {} (a week)",
                    o.duration_s, kMaxDurationS));
  }
  if (!std::isfinite(o.stagger_ms) || o.stagger_ms < 0 || o.stagger_ms > kMaxStaggerMs) {
    throw std::invalid_argument(
        fmt::format("stagger_ms is {}; it must be a finite number from 0 "
                    "to {} (an hour)",
                    o.stagger_ms, kMaxStaggerMs));
  }
  const int64_t deadline =
      o.duration_s > 0 ? now_ns() + static_cast<int64_t>(o.duration_s * 1e9) : 0;
  const bool record_lags = o.record_lags;

  auto more = [&](int k) {
    if (o.stop != nullptr && o.stop->load()) return false;
    return deadline > 0 ? now_ns() < deadline : k < o.requests_per_agent;
  };
  auto note = [&](const RequestRecord& rec) {
    const int64_t n = done.fetch_add(1) + 1;
    const int64_t e = rec.ok ? errors.load() : errors.fetch_add(1) + 1;
    if (o.on_progress) o.on_progress(n, e);
  };

  const int64_t t_start = now_ns();
  auto stagger = [&](Agent& a) {
    return a.sleep_until(t_start + static_cast<int64_t>(o.stagger_ms * 1e6 * a.id() / o.agents));
  };
  auto chat_agent = [&](Agent& a) -> Task<void> {
    auto& recs = per_agent[std::size_t(a.id())];
    if (o.stagger_ms > 0) {
      auto wait = stagger(a);
      co_await wait;
    }
    const bool is_insight = o.scenario == Scenario::personas && a.id() % 2 == 1;
    const std::string& pool =
        o.scenario == Scenario::personas ? (is_insight ? insight : collector) : main_pool;
    for (int k = 0; more(k); ++k) {
      Request r;
      r.model = o.model;
      if (o.scenario == Scenario::personas) {
        r.messages = {{"system", is_insight ? kInsightSystem : kCollectorSystem, {}, {}, {}},
                      {"user", o.prompt, {}, {}, {}}};
      } else {
        r.messages = {{"user", o.prompt, {}, {}, {}}};
      }
      r.options = o.options;
      r.options.num_predict = o.max_tokens;
      if (o.temperature) r.options.temperature = o.temperature;
      r.pin = a.id();  // used by pinned routing only
      // Lags, counted as the tokens arrive (the agent is suspended meanwhile, so only this
      // callback touches them).
      struct Lag {
        int64_t sum = 0, max = 0, stalls = 0;
        std::vector<int64_t> all;
      };
      auto lag = std::make_shared<Lag>();
      TokenCallback on_token = [lag, record_lags](const TokenEvent& ev) {
        if (ev.server_sent_ns != 0) {
          const int64_t l = ev.t_ns - ev.server_sent_ns;
          lag->sum += l;
          lag->max = std::max(lag->max, l);
          if (l > 1'000'000) ++lag->stalls;
          if (record_lags) lag->all.push_back(l);
        }
        return true;
      };
      // Named, not temporaries inside the co_await (see Agent::Generate on GCC 12).
      auto call = a.generate(pool, r, std::move(on_token));
      const Completion c = co_await call;
      RequestRecord rec = record_of(c, a.id(), k);
      rec.lag_sum_ns = lag->sum;
      rec.lag_max_ns = lag->max;
      rec.stalls = lag->stalls;
      rec.lags_ns = std::move(lag->all);
      note(rec);
      recs.push_back(std::move(rec));
    }
  };

  auto workflow_agent = [&](Agent& a) -> Task<void> {
    auto& recs = per_agent[std::size_t(a.id())];
    if (o.stagger_ms > 0) {
      auto wait = stagger(a);
      co_await wait;
    }
    for (int k = 0; more(k); ++k) {
      workflow::WorkflowOptions wo;
      wo.data = o.workflow_data;
      wo.backend = &engine.pool(main_pool);
      wo.endpoint.kind = engine.pool(main_pool).kind();
      wo.model = o.model;
      wo.configs = {workflow::chimera_config()};
      if (any_option_set(o.options)) {
        wo.configs[0] = workflow::baseline_config();
        wo.configs[0].name = "sweep";
        wo.configs[0].options = o.options;
      }
      wo.configs[0].analysis_tokens = o.max_tokens;
      wo.configs[0].report_tokens = o.max_tokens;
      wo.out_dir = o.workflow_out / fmt::format("agent-{}", a.id());
      // The workflow blocks on its calls: it runs on the blocking pool, the agent waits.
      auto step = a.blocking([wo] { return workflow::run_workflow(wo); });
      const workflow::WorkflowResult wr = co_await step;
      int idx = 0;
      for (const auto& run : wr.runs) {
        for (const auto* call : {&run.analysis, &run.report}) {
          if (call->completion.figures.t_send_ns == 0 && call->completion.ok()) continue;
          RequestRecord rec = record_of(call->completion, a.id(), k * 2 + idx++);
          note(rec);
          recs.push_back(std::move(rec));
        }
      }
      if (!wr.ok) {
        RequestRecord rec;
        rec.agent = a.id();
        rec.request = k * 2 + idx;
        rec.ok = false;
        rec.error = wr.error;
        rec.t_send_ns = rec.t_done_ns = now_ns();
        note(rec);
        recs.push_back(std::move(rec));
      }
    }
  };

  MultiResult result;
  if (o.scenario == Scenario::workflow) {
    result.run = engine.run(o.agents, workflow_agent);
  } else {
    result.run = engine.run(o.agents, chat_agent);
  }
  for (auto& v : per_agent) {
    for (auto& r : v) result.records.push_back(std::move(r));
  }
  result.rss_peak_bytes = rss_peak_bytes();
  return result;
}

std::string record_json(const RequestRecord& r, const std::string& program) {
  auto opt = [](int64_t v) { return v != 0 ? json::value(v) : json::value(nullptr); };
  json::object o{{"program", program},
                 {"agent", r.agent},
                 {"request", r.request},
                 {"ok", r.ok},
                 {"error", r.error},
                 {"t_send_ns", r.t_send_ns},
                 {"t_first_token_ns", opt(r.t_first_token_ns)},
                 {"t_last_token_ns", opt(r.t_last_token_ns)},
                 {"t_done_ns", r.t_done_ns},
                 {"first_byte_server_ns", opt(r.first_byte_server_ns)},
                 {"tokens_out", r.tokens_out >= 0 ? json::value(r.tokens_out) : nullptr},
                 {"chunks", r.chunks},
                 {"lag_sum_ns", r.lag_sum_ns},
                 {"lag_max_ns", r.lag_max_ns},
                 {"stalls", r.stalls}};
  if (!r.lags_ns.empty()) {
    json::array a;
    for (int64_t l : r.lags_ns) a.emplace_back(l);
    o["lags_ns"] = std::move(a);
  }
  if (!r.endpoint.empty()) o["endpoint"] = r.endpoint;
  return json::serialize(o);
}

}  // namespace chimera::multi

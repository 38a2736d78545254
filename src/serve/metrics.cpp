#include "serve/metrics.hpp"

#include <chimera/pool/pool.hpp>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace chimera::serve {

namespace {

// Seconds; first-token and queue times of local models span a millisecond to tens of seconds.
prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

constexpr std::string_view kOutcomes[] = {"ok", "error", "cancelled", "client_gone"};

const char* outcome(const Completion& c, bool client_gone) {
  if (client_gone) return "client_gone";
  if (!c.error) return "ok";
  return c.error.kind == ErrorKind::cancelled ? "cancelled" : "error";
}

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& http = prometheus::BuildCounter()
                                                      .Name("chimera_serve_http_requests_total")
                                                      .Help(
                                                          "HTTP requests answered, by path and "
                                                          "status code")
                                                      .Register(*registry);
  prometheus::Family<prometheus::Counter>& generations =
      prometheus::BuildCounter()
          .Name("chimera_serve_generations_total")
          .Help(
              "Generation requests ended, by pool, endpoint and outcome (ok, error, cancelled, "
              "client_gone)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& retries =
      prometheus::BuildCounter()
          .Name("chimera_serve_retries_total")
          .Help("Endpoints tried again after a failure before the first token (failover), by pool")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& hedges =
      prometheus::BuildCounter()
          .Name("chimera_serve_hedges_total")
          .Help("Requests sent to a second endpoint because the first was slow to answer, by pool")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& tokens =
      prometheus::BuildCounter()
          .Name("chimera_serve_tokens_total")
          .Help("Token-bearing chunks passed on to clients, by pool and endpoint")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& ttft =
      prometheus::BuildHistogram()
          .Name("chimera_serve_ttft_seconds")
          .Help("Time from sending upstream to the first token, by pool and endpoint")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& itl =
      prometheus::BuildHistogram()
          .Name("chimera_serve_itl_seconds")
          .Help("Gaps between tokens, by pool and endpoint")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& queue =
      prometheus::BuildHistogram()
          .Name("chimera_serve_queue_seconds")
          .Help("Time in a pool's queue before sending, by pool and endpoint")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& streams = prometheus::BuildGauge()
                                                       .Name("chimera_serve_streams_active")
                                                       .Help("Generation requests in flight")
                                                       .Register(*registry);
  prometheus::Gauge& streams_active = streams.Add({});

  // The pools' state, refreshed when scraped (under `mu`, one scrape at a time).
  mutable std::mutex mu;
  prometheus::Family<prometheus::Gauge>& up =
      prometheus::BuildGauge()
          .Name("chimera_pool_endpoint_up")
          .Help("1 when the pool routes to the endpoint, 0 while it is taken out")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& outstanding =
      prometheus::BuildGauge()
          .Name("chimera_pool_endpoint_outstanding")
          .Help("Requests in flight on the endpoint (in-process: sequences in use)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& limit =
      prometheus::BuildGauge()
          .Name("chimera_pool_endpoint_limit")
          .Help("Most requests in flight on the endpoint at once (0: no limit)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& dispatched =
      prometheus::BuildGauge()
          .Name("chimera_pool_endpoint_dispatched")
          .Help("Requests the pool has sent to the endpoint since it started")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& failures =
      prometheus::BuildGauge()
          .Name("chimera_pool_endpoint_failures")
          .Help("Consecutive failures of the endpoint")
          .Register(*registry);
  // In-process endpoints only: the engine's sequences and KV cells.
  prometheus::Family<prometheus::Gauge>& seqs =
      prometheus::BuildGauge()
          .Name("chimera_inproc_sequences")
          .Help("In-process sequences (slots): state=busy running a request, total")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& sessions =
      prometheus::BuildGauge()
          .Name("chimera_inproc_sessions_cached")
          .Help("In-process sequences holding a session's KV cells between its requests")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& kv =
      prometheus::BuildGauge()
          .Name("chimera_inproc_kv_cells")
          .Help("In-process KV cells (token positions): state=used, total")
          .Register(*registry);

  // The series a request's end writes, per pool and endpoint, found once and kept: a family's
  // Add builds, hashes and compares a label map under the family's lock, which cost about
  // 20,000 instructions per request. A family never drops a series, so the pointers stay valid.
  struct Series {
    prometheus::Labels labels;
    std::array<prometheus::Counter*, std::size(kOutcomes)> outcome{};
    prometheus::Counter* retries = nullptr;
    prometheus::Counter* hedges = nullptr;
    prometheus::Counter* tokens = nullptr;
    prometheus::Histogram* ttft = nullptr;
    prometheus::Histogram* queue = nullptr;
    prometheus::Histogram* itl = nullptr;
    prometheus::Labels with(const char* k, const char* v) const {
      prometheus::Labels l = labels;
      l[k] = v;
      return l;
    }
  };
  std::mutex series_mu;
  std::map<std::string, Series, std::less<>> series;  // by pool + '\n' + endpoint; series_mu
  // HTTP answers' counters, by path + ' ' + status code; under series_mu.
  std::map<std::string, prometheus::Counter*, std::less<>> http_series;
  std::string key;  // scratch; under series_mu

  Series& series_of(const std::string& pool, const std::string& endpoint) {
    key.assign(pool).append(1, '\n').append(endpoint);
    auto it = series.find(key);
    if (it == series.end()) {
      it = series.emplace(key, Series{}).first;
      it->second.labels = {{"pool", pool}, {"endpoint", endpoint}};
    }
    return it->second;
  }
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {}
Metrics::~Metrics() = default;

void Metrics::http_request(std::string_view path, int status) {
  Impl& m = *impl_;
  std::lock_guard lock(m.series_mu);
  m.key.assign(path).append(1, ' ').append(std::to_string(status));
  auto it = m.http_series.find(m.key);
  if (it == m.http_series.end()) {
    it = m.http_series
             .emplace(m.key,
                      &m.http.Add({{"path", std::string(path)}, {"code", std::to_string(status)}}))
             .first;
  }
  it->second->Increment();
}

void Metrics::generation(const std::string& pool, const Completion& c, bool client_gone) {
  Impl& m = *impl_;
  const auto& f = c.figures;
  const int hedged = std::max(0, f.hedges);
  const int retried = std::max(0, f.attempts - 1 - hedged);
  std::lock_guard lock(m.series_mu);
  Impl::Series& s = m.series_of(pool, c.endpoint);
  // Each series is made when first needed, so that a scrape shows only what happened, and the
  // retry and hedge counts from zero for every pool.
  const char* what = outcome(c, client_gone);
  const auto o = static_cast<std::size_t>(
      std::find(std::begin(kOutcomes), std::end(kOutcomes), std::string_view(what)) -
      std::begin(kOutcomes));
  if (s.outcome[o] == nullptr) s.outcome[o] = &m.generations.Add(s.with("outcome", what));
  s.outcome[o]->Increment();
  if (s.retries == nullptr) s.retries = &m.retries.Add({{"pool", pool}});
  if (s.hedges == nullptr) s.hedges = &m.hedges.Add({{"pool", pool}});
  s.retries->Increment(retried);
  s.hedges->Increment(hedged);
  if (f.chunks) {
    if (s.tokens == nullptr) s.tokens = &m.tokens.Add(s.labels);
    s.tokens->Increment(static_cast<double>(*f.chunks));
  }
  if (f.ttft_client_ns) {
    if (s.ttft == nullptr) s.ttft = &m.ttft.Add(s.labels, latency_buckets());
    s.ttft->Observe(*f.ttft_client_ns / 1e9);
  }
  if (f.queued_ns) {
    if (s.queue == nullptr) s.queue = &m.queue.Add(s.labels, latency_buckets());
    s.queue->Observe(*f.queued_ns / 1e9);
  }
  if (!f.itl_ns.empty()) {
    if (s.itl == nullptr) s.itl = &m.itl.Add(s.labels, latency_buckets());
    for (int64_t gap : f.itl_ns) s.itl->Observe(gap / 1e9);
  }
}

void Metrics::stream_began() {
  impl_->streams_active.Increment();
}
void Metrics::stream_ended() {
  impl_->streams_active.Decrement();
}

std::string Metrics::text(const std::vector<Route>& routes) const {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  for (const auto& r : routes) {
    for (const auto& e : r.pool->status()) {
      const prometheus::Labels labels{{"pool", r.name}, {"endpoint", e.url}};
      m.up.Add(labels).Set(e.up ? 1 : 0);
      m.outstanding.Add(labels).Set(e.outstanding);
      m.limit.Add(labels).Set(e.limit);
      m.dispatched.Add(labels).Set(static_cast<double>(e.dispatched));
      m.failures.Add(labels).Set(e.failures);
      if (e.engine) {
        auto with_state = [&](const char* state) {
          prometheus::Labels l = labels;
          l["state"] = state;
          return l;
        };
        m.seqs.Add(with_state("busy")).Set(e.engine->sequences_busy);
        m.seqs.Add(with_state("total")).Set(e.engine->sequences);
        m.sessions.Add(labels).Set(e.engine->sessions);
        m.kv.Add(with_state("used")).Set(static_cast<double>(e.engine->kv_cells_used));
        m.kv.Add(with_state("total")).Set(static_cast<double>(e.engine->kv_cells));
      }
    }
  }
  return prometheus::TextSerializer().Serialize(m.registry->Collect());
}

}  // namespace chimera::serve

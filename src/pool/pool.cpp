#include "core/recycling_allocator.hpp"
#include "http/client.hpp"

#include <chimera/pool/pool.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace chimera::pool {

std::string validate(const PoolConfig& c) {
  if (c.retries < -1 || c.retries > kMaxRetries) {
    return fmt::format(
        "pool '{}': retries is {}; it must be from -1 (one per other endpoint) to "
        "{}",
        c.name, c.retries, kMaxRetries);
  }
  if (c.hedge_after_ms < 0 || c.hedge_after_ms > kMaxHedgeAfterMs) {
    return fmt::format("pool '{}': hedge_after_ms is {}; it must be from 0 (no hedging) to {}",
                       c.name, c.hedge_after_ms, kMaxHedgeAfterMs);
  }
  if (c.health_interval_ms < 0 || c.health_interval_ms > kMaxHealthIntervalMs) {
    return fmt::format(
        "pool '{}': health_interval_ms is {}; it must be from 0 (no periodic "
        "checks) to {}",
        c.name, c.health_interval_ms, kMaxHealthIntervalMs);
  }
  if (c.breaker.base_backoff_ms < 1 || c.breaker.base_backoff_ms > kMaxHealthIntervalMs ||
      c.breaker.max_backoff_ms < c.breaker.base_backoff_ms ||
      c.breaker.max_backoff_ms > kMaxHealthIntervalMs) {
    return fmt::format(
        "pool '{}': the breaker's back-off ({} to {} ms) must be from 1 to {} ms, "
        "base first",
        c.name, c.breaker.base_backoff_ms, c.breaker.max_backoff_ms, kMaxHealthIntervalMs);
  }
  for (std::size_t i = 0; i < c.endpoints.size(); ++i) {
    const auto& ep = c.endpoints[i];
    if (!ep.expand.empty() && ep.expand != "dns") {
      return fmt::format("pool '{}', endpoint {}: expand is '{}'; it may be \"dns\" or nothing",
                         c.name, i + 1, ep.expand);
    }
    if (ep.expand == "dns" && ep.config.kind == BackendKind::llama) {
      return fmt::format(
          "pool '{}', endpoint {}: expand = \"dns\" needs an HTTP endpoint, not a GGUF file",
          c.name, i + 1);
    }
    if (ep.resolve_interval_ms < kMinResolveIntervalMs ||
        ep.resolve_interval_ms > kMaxResolveIntervalMs) {
      return fmt::format(
          "pool '{}', endpoint {}: resolve_interval_ms is {}; it must be from {} to {}", c.name,
          i + 1, ep.resolve_interval_ms, kMinResolveIntervalMs, kMaxResolveIntervalMs);
    }
    const int limit = ep.max_concurrency;
    if (limit < 0 || limit > kMaxConcurrency) {
      return fmt::format(
          "pool '{}', endpoint {}: max_concurrency is {}; it must be from 0 (no "
          "limit) to {}",
          c.name, i + 1, limit, kMaxConcurrency);
    }
  }
  return {};
}

namespace {

// Errors that say the endpoint, not the request, is at fault: the endpoint is taken out.
bool endpoint_fault(const Error& e) {
  switch (e.kind) {
    case ErrorKind::connect:
    case ErrorKind::truncated:
      return true;
    case ErrorKind::http_status:
      return e.http_status >= 500;
    default:
      return false;
  }
}

// Errors worth another endpoint when no token has reached the caller yet.
bool retryable(const Error& e) {
  switch (e.kind) {
    case ErrorKind::connect:
    case ErrorKind::truncated:
    case ErrorKind::timeout:
    case ErrorKind::server:
    case ErrorKind::protocol:
      return true;
    case ErrorKind::http_status:
      return e.http_status >= 500 || e.http_status == 429 || e.http_status == 408;
    default:
      return false;
  }
}

// PoolRequest::winner when the request went to the fallback pool: no attempt of this pool's
// may hand the caller a token any more.
constexpr int kFallbackWinner = INT32_MAX;

}  // namespace

std::string check_fallbacks(const std::vector<const PoolConfig*>& pools, std::size_t* at) {
  auto find = [&](const std::string& name) -> const PoolConfig* {
    for (const auto* p : pools) {
      if (p->name == name) return p;
    }
    return nullptr;
  };
  for (std::size_t i = 0; i < pools.size(); ++i) {
    const PoolConfig* p = pools[i];
    if (at != nullptr) *at = i;
    if (p->fallback.empty()) continue;
    if (p->fallback == p->name)
      return fmt::format("pool '{}' names itself as its fallback", p->name);
    if (find(p->fallback) == nullptr) {
      std::vector<std::string> names;
      for (const auto* q : pools) names.push_back("'" + q->name + "'");
      return fmt::format("pool '{}': its fallback '{}' is not a pool here (pools: {})", p->name,
                         p->fallback, fmt::join(names, ", "));
    }
    // Follow the chain: it must end, or a request could go round for ever.
    std::vector<std::string> chain{p->name};
    for (const PoolConfig* q = find(p->fallback); q != nullptr;
         q = q->fallback.empty() ? nullptr : find(q->fallback)) {
      chain.push_back(q->name);
      if (q->name == p->name) {
        return fmt::format("the fallbacks of pools form a loop: {}", fmt::join(chain, " -> "));
      }
      if (chain.size() > pools.size() + 1) break;  // a loop that p is not on: found from its own
    }
  }
  return {};
}

void link_fallbacks(const std::vector<Pool*>& pools) {
  std::vector<const PoolConfig*> configs;
  for (const auto* p : pools) configs.push_back(&p->config());
  if (auto e = check_fallbacks(configs); !e.empty()) throw std::invalid_argument(e);
  for (auto* p : pools) {
    Pool* fb = nullptr;
    for (auto* q : pools) {
      if (!p->config().fallback.empty() && q->config().name == p->config().fallback) fb = q;
    }
    p->set_fallback(fb);
  }
}

struct PoolRequest;

struct Pool::Impl {
  PoolConfig config;
  std::string label;  // "pool:NAME"
  std::vector<Runtime*> runtimes;
  // The pool's endpoints, index for index the router's: one per configured endpoint, or one per
  // address of an endpoint with expand = "dns" (those come and go; one that left is retired in
  // the router and kept here, so that requests on it finish and it may come back).
  struct Member {
    int source = 0;       // its config.endpoints index
    std::string address;  // expand = "dns": the address it connects to; else ""
    std::string label;    // the URL, with " (address)" for an expanded one
    EndpointConfig config;
    std::vector<std::unique_ptr<Backend>> lanes;
  };
  // Guards the deque's structure only: a Member, once added, never moves or changes until the
  // pool is destroyed. Taken after `mu` when both are held.
  mutable std::mutex members_mu;
  std::deque<Member> members;
  const Member& member(int e) const {
    std::lock_guard lock(members_mu);
    return members[std::size_t(e)];
  }
  Backend& backend(int e, int lane) const {
    const Member& m = member(e);
    return *m.lanes[std::size_t(lane % lanes)];
  }
  // Endpoints with expand = "dns", resolved again by the service thread.
  struct Dns {
    int source = 0;
    std::string host;
    int64_t interval_ns = 0;
    int64_t next_ns = 0;
    std::string last_error;
  };
  std::vector<Dns> dns;
  int lanes = 1;
  std::atomic<uint64_t> rr{0};
  std::atomic<Pool*> fallback{nullptr};

  mutable std::mutex mu;  // guards router, waiting, PoolRequest::ticket
  Router router;
  std::unordered_map<Router::Ticket, std::shared_ptr<PoolRequest>> waiting;
  std::unordered_map<PoolRequest*, std::weak_ptr<PoolRequest>> live;  // not finished yet

  // Callbacks still to run that use this Impl (attempts in flight, posted failures): the Pool's
  // destructor waits for them, so that the backends are destroyed on the owner's thread.
  std::mutex pending_mu;
  std::condition_variable pending_cv;
  int pending = 0;
  void hold() {
    std::lock_guard lock(pending_mu);
    ++pending;
  }
  void unhold() {
    std::lock_guard lock(pending_mu);
    if (--pending == 0) pending_cv.notify_all();
  }

  // The service thread: health checks, breaker probes and hedge timers.
  std::mutex svc_mu;
  std::condition_variable svc_cv;
  bool stopping = false;
  using Timer = std::pair<int64_t, std::weak_ptr<PoolRequest>>;
  struct Later {
    bool operator()(const Timer& a, const Timer& b) const { return a.first > b.first; }
  };
  std::priority_queue<Timer, std::vector<Timer>, Later> hedges;
  std::thread service;

  Impl(PoolConfig c, std::vector<Runtime*> rts, int lanes_wanted);
  ~Impl();

  void submit(const std::shared_ptr<PoolRequest>& p);
  void pump();
  void launch(const std::shared_ptr<PoolRequest>& p, int endpoint, bool hedge);
  void attempt_done(const std::shared_ptr<PoolRequest>& p, int idx, int endpoint, Completion c);
  void finish(const std::shared_ptr<PoolRequest>& p, Completion c);
  void fail(const std::shared_ptr<PoolRequest>& p, ErrorKind kind, std::string message);
  // No endpoint of this pool can serve the request any more (`message` says why): it goes to
  // the fallback pool when there is one, else it fails with `message`.
  void give_up(const std::shared_ptr<PoolRequest>& p, ErrorKind kind, std::string message);
  void fallback_done(const std::shared_ptr<PoolRequest>& p, Completion c);
  void fail_unplaceable(const std::vector<Router::Ticket>& tickets);
  std::string why_unplaceable(const Router::Want& want) const;  // mu held
  // Queues the request, or says why no endpoint can ever take it (then it is not queued).
  // mu held.
  std::string queue(const std::shared_ptr<PoolRequest>& p);
  void wait_in_queue(const std::shared_ptr<PoolRequest>& p);  // mu held; placeable
  void cancel(const std::shared_ptr<PoolRequest>& p);
  void hedge_due(const std::shared_ptr<PoolRequest>& p);
  void probe(int endpoint);
  void run_service();
  // Makes an endpoint's backends (one per lane) and adds it to `members` and the router.
  int add_member(int source, const std::string& address);
  // Resolves a DNS endpoint's name again: new addresses join, those gone are retired.
  void refresh(Dns& d);
  bool resolve(const std::string& host, std::vector<std::string>& out, std::string& error) const;
  int active() const;  // endpoints not retired; mu held
  // Tells the service thread that what it sleeps for has changed. Called without `mu` held:
  // taking svc_mu first means the thread is either before its look at the router (and will see
  // the change) or already waiting (and is woken).
  void wake_service() {
    { std::lock_guard lock(svc_mu); }
    svc_cv.notify_all();
  }
  int max_attempts() const {  // mu held
    const int others = std::max(0, active() - 1);
    return 1 + (config.retries < 0 ? others : std::min(config.retries, others));
  }
};

struct PoolRequest final : RequestHandle, std::enable_shared_from_this<PoolRequest> {
  struct Attempt {
    int endpoint = -1;
    int64_t launched_ns = 0;
    std::shared_ptr<RequestHandle> handle;
    bool done = false;
    bool hedge = false;  // sent because the first was slow, not because it failed
  };

  std::shared_ptr<Pool::Impl> pool;
  Request request;
  TokenCallback on_token;
  DoneCallback on_done;
  int lane = 0;
  Router::Want want;
  int64_t enqueued_ns = 0;
  std::optional<Router::Ticket> ticket;  // guarded by pool->mu

  std::mutex mu;  // guards what follows
  std::vector<Attempt> attempts;
  std::vector<std::string> errors;  // of the attempts that failed, in order
  bool finished = false;
  bool fell_back = false;                          // sent to the fallback pool
  std::string fallback_label;                      // "pool:NAME" of the fallback
  std::string fallback_reason;                     // why
  std::shared_ptr<RequestHandle> fallback_handle;  // the fallback pool's request
  std::atomic<bool> cancel_requested{false};
  std::atomic<int> winner{-1};  // the attempt whose tokens reach the caller

  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;
  Completion result;

  void cancel() override { pool->cancel(shared_from_this()); }
  Completion wait() override {
    std::unique_lock lock(done_mu);
    done_cv.wait(lock, [this] { return done; });
    return result;
  }

  // A token from attempt `idx`: the first attempt to deliver one wins; the others are cancelled.
  bool token(int idx, const TokenEvent& ev) {
    int w = winner.load();
    if (w < 0 && winner.compare_exchange_strong(w, idx)) {
      w = idx;
      std::vector<std::shared_ptr<RequestHandle>> losers;
      {
        std::lock_guard lock(mu);
        for (std::size_t i = 0; i < attempts.size(); ++i) {
          if (static_cast<int>(i) != idx && !attempts[i].done && attempts[i].handle) {
            losers.push_back(attempts[i].handle);
          }
        }
      }
      for (auto& h : losers) h->cancel();
    }
    if (w != idx || cancel_requested.load()) return false;
    if (!on_token) return true;
    return on_token(ev);
  }
};

Pool::Impl::Impl(PoolConfig c, std::vector<Runtime*> rts, int lanes_wanted)
    : config(std::move(c)),
      label("pool:" + config.name),
      runtimes(std::move(rts)),
      router({}, config.routing, config.breaker) {
  if (runtimes.empty())
    throw std::invalid_argument(fmt::format("pool '{}': no runtime", config.name));
  if (auto e = validate(config); !e.empty()) throw std::invalid_argument(e);
  if (config.endpoints.empty()) {
    throw std::invalid_argument(fmt::format("pool '{}' has no endpoints", config.name));
  }
  lanes = lanes_wanted > 0 ? lanes_wanted : static_cast<int>(runtimes.size());
  for (std::size_t e = 0; e < config.endpoints.size(); ++e) {
    const auto& ep = config.endpoints[e];
    if (ep.expand != "dns") {
      add_member(static_cast<int>(e), "");
      continue;
    }
    http::EndpointUrl url;
    std::string error;
    if (!http::parse_endpoint_url(ep.config.url, url, error)) {
      throw std::invalid_argument(
          fmt::format("pool '{}', endpoint {}: {}", config.name, e + 1, error));
    }
    Dns d{static_cast<int>(e), url.host, ep.resolve_interval_ms * 1'000'000, 0, {}};
    std::vector<std::string> addresses;
    if (!resolve(d.host, addresses, error)) {
      throw std::invalid_argument(fmt::format("pool '{}', endpoint {} ({}): expand = \"dns\": {}",
                                              config.name, e + 1, redact_url(ep.config.url),
                                              error));
    }
    for (const auto& a : addresses) add_member(d.source, a);
    d.next_ns = now_ns() + d.interval_ns;
    dns.push_back(std::move(d));
  }
  service = std::thread([this] { run_service(); });
}

bool system_resolve(const std::string& host, std::vector<std::string>& out, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    error = fmt::format("cannot resolve '{}': {}", host, ::gai_strerror(rc));
    return false;
  }
  out.clear();
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* where =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
        ::inet_ntop(a->ai_family, where, text, sizeof text) != nullptr) {
      out.emplace_back(text);
    }
  }
  ::freeaddrinfo(res);
  return true;
}

bool Pool::Impl::resolve(const std::string& host, std::vector<std::string>& out,
                         std::string& error) const {
  std::vector<std::string> found;
  const bool ok =
      config.resolver ? config.resolver(host, found, error) : system_resolve(host, found, error);
  if (!ok) return false;
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  if (found.empty()) {
    error = fmt::format("'{}' resolves to no address", host);
    return false;
  }
  out = std::move(found);
  return true;
}

int Pool::Impl::add_member(int source, const std::string& address) {
  const auto& ep = config.endpoints[std::size_t(source)];
  Member m;
  m.source = source;
  m.address = address;
  m.config = ep.config;
  m.config.connect_to = address;
  m.label = redact_url(ep.config.url);
  if (!address.empty()) m.label += " (" + address + ")";
  for (int l = 0; l < lanes; ++l) {
    try {
      m.lanes.push_back(make_backend(m.config, *runtimes[std::size_t(l) % runtimes.size()]));
    } catch (const std::exception& ex) {
      throw std::invalid_argument(fmt::format("pool '{}', endpoint {} ({}): {}", config.name,
                                              source + 1, m.label, ex.what()));
    }
  }
  {
    std::lock_guard lock(members_mu);
    members.push_back(std::move(m));
  }
  std::lock_guard lock(mu);
  return router.add(ep.max_concurrency);
}

int Pool::Impl::active() const {
  int n = 0;
  for (std::size_t e = 0; e < router.size(); ++e) n += !router.load(static_cast<int>(e)).retired;
  return n;
}

void Pool::Impl::refresh(Dns& d) {
  std::vector<std::string> addresses;
  std::string error;
  if (!resolve(d.host, addresses, error)) {
    // As Envoy does: the last answer stands until a new one comes.
    d.last_error = error;
    return;
  }
  d.last_error.clear();
  std::vector<std::string> to_add;
  std::vector<Router::Ticket> stranded;
  {
    std::lock_guard lock(mu);
    std::vector<std::string> known;
    for (std::size_t e = 0; e < router.size(); ++e) {
      const Member& m = member(static_cast<int>(e));
      if (m.source != d.source) continue;
      known.push_back(m.address);
      const bool wanted =
          std::find(addresses.begin(), addresses.end(), m.address) != addresses.end();
      const bool retired = router.load(static_cast<int>(e)).retired;
      if (wanted == retired) router.retire(static_cast<int>(e), !wanted);
    }
    for (const auto& a : addresses) {
      if (std::find(known.begin(), known.end(), a) == known.end()) to_add.push_back(a);
    }
    stranded = router.take_unplaceable();
  }
  for (const auto& a : to_add) {
    try {
      add_member(d.source, a);
    } catch (const std::exception& ex) {
      d.last_error = ex.what();
    }
  }
  if (!stranded.empty()) fail_unplaceable(stranded);
  pump();
}

Pool::Impl::~Impl() {
  {
    std::lock_guard lock(svc_mu);
    stopping = true;
  }
  svc_cv.notify_all();
  if (service.joinable()) service.join();
}

std::string Pool::Impl::why_unplaceable(const Router::Want& want) const {
  std::string why;
  for (std::size_t e = 0; e < router.size(); ++e) {
    const auto& load = router.load(static_cast<int>(e));
    if (load.retired) continue;
    const bool excluded =
        std::find(want.exclude.begin(), want.exclude.end(), int(e)) != want.exclude.end();
    why += fmt::format("{}{} {}", why.empty() ? "" : "; ", member(static_cast<int>(e)).label,
                       excluded  ? "already failed this request"
                       : load.up ? "up"
                                 : "is down (" + load.last_error + ")");
  }
  if (why.empty()) why = "it has no endpoint now (every address has left the DNS answer)";
  return why;
}

std::string Pool::Impl::queue(const std::shared_ptr<PoolRequest>& p) {
  if (router.unplaceable(p->want)) return why_unplaceable(p->want);
  wait_in_queue(p);
  return {};
}

void Pool::Impl::wait_in_queue(const std::shared_ptr<PoolRequest>& p) {
  const auto t = router.enqueue(p->want);
  p->ticket = t;
  waiting.emplace(t, p);
}

void Pool::Impl::submit(const std::shared_ptr<PoolRequest>& p) {
  std::string why;
  std::optional<int> direct;  // the endpoint, when nothing waits and it has room
  {
    std::lock_guard lock(mu);
    live.emplace(p.get(), p);
    if (router.unplaceable(p->want)) {
      why = why_unplaceable(p->want);
    } else {
      direct = router.place_now(p->want, now_ns());
      if (!direct) wait_in_queue(p);
    }
  }
  if (!why.empty()) {
    give_up(p, ErrorKind::connect,
            fmt::format("{}: no endpoint can take the request: {}", label, why));
    return;
  }
  if (direct) {
    launch(p, *direct, false);  // nothing was queued, so nothing else can go now either
    return;
  }
  pump();
}

void Pool::Impl::pump() {
  std::vector<std::pair<std::shared_ptr<PoolRequest>, int>> go;
  {
    std::lock_guard lock(mu);
    const int64_t now = now_ns();
    while (auto n = router.next(now)) {
      auto it = waiting.find(n->first);
      if (it == waiting.end()) {  // cannot happen: every queued ticket is waiting
        router.release(n->second);
        continue;
      }
      auto p = std::move(it->second);
      waiting.erase(it);
      p->ticket.reset();
      go.emplace_back(std::move(p), n->second);
    }
  }
  for (auto& [p, e] : go) launch(p, e, false);
}

void Pool::Impl::launch(const std::shared_ptr<PoolRequest>& p, int endpoint, bool hedge) {
  int idx = 0;
  {
    std::lock_guard lock(p->mu);
    if (p->finished || p->cancel_requested.load() || (hedge && p->winner.load() >= 0)) {
      idx = -1;
    } else {
      idx = static_cast<int>(p->attempts.size());
      p->attempts.push_back({endpoint, now_ns(), nullptr, false, hedge});
      if (idx == 0) p->result.figures.queued_ns = p->attempts[0].launched_ns - p->enqueued_ns;
    }
  }
  if (idx < 0) {  // nothing to send after all: give the slot back
    {
      std::lock_guard lock(mu);
      router.release(endpoint);
    }
    if (!hedge && p->cancel_requested.load()) fail(p, ErrorKind::cancelled, label + ": cancelled");
    pump();
    return;
  }
  Request r = p->request;
  if (r.model.empty()) r.model = config.model;
  Impl* self = this;
  hold();  // released at the end of attempt_done
  auto handle = backend(endpoint, p->lane)
                    .start(
                        std::move(r), [p, idx](const TokenEvent& ev) { return p->token(idx, ev); },
                        [self, p, idx, endpoint](Completion c) {
                          self->attempt_done(p, idx, endpoint, std::move(c));
                        });
  bool cancel_now = false;
  {
    std::lock_guard lock(p->mu);
    if (!p->attempts[std::size_t(idx)].done) p->attempts[std::size_t(idx)].handle = handle;
    const int w = p->winner.load();
    cancel_now = p->cancel_requested.load() || (w >= 0 && w != idx);
  }
  if (cancel_now) handle->cancel();
  if (!hedge && config.hedge_after_ms > 0) {
    {
      std::lock_guard lock(svc_mu);
      hedges.emplace(now_ns() + config.hedge_after_ms * 1'000'000, p);
    }
    svc_cv.notify_all();
  }
}

void Pool::Impl::attempt_done(const std::shared_ptr<PoolRequest>& p, int idx, int endpoint,
                              Completion c) {
  const bool fault = endpoint_fault(c.error) && !p->cancel_requested.load();
  std::vector<Router::Ticket> stranded;
  int most_attempts = 1;
  {
    std::lock_guard lock(mu);
    most_attempts = max_attempts();
    router.release(endpoint);
    if (fault) {
      router.failed(endpoint, now_ns(), c.error.message);
      stranded = router.take_unplaceable();
    } else if (c.ok()) {
      router.succeeded(endpoint);
    }
  }
  if (!stranded.empty()) fail_unplaceable(stranded);
  if (fault) wake_service();  // it probes the endpoint when its back-off runs out
  struct Unhold {
    Impl* impl;
    ~Unhold() { impl->unhold(); }
  } unhold_at_end{this};

  enum class Next { nothing, finish, retry, fail_all };
  Next next = Next::nothing;
  {
    std::lock_guard lock(p->mu);
    auto& a = p->attempts[std::size_t(idx)];
    a.done = true;
    a.handle.reset();
    bool others_running = false;
    for (const auto& o : p->attempts) others_running |= !o.done;
    int w = p->winner.load();
    // One branch per case, in the order they are decided; two of them do nothing.
    if (p->finished) {  // NOLINT(bugprone-branch-clone)
      next = Next::nothing;
    } else if (w == idx) {
      next = Next::finish;
    } else if (w >= 0) {
      next = Next::nothing;  // a loser: the winner finishes the request
    } else if (c.ok() || c.error.kind == ErrorKind::cancelled || !retryable(c.error) ||
               p->cancel_requested.load()) {
      if (others_running && !c.ok()) {
        next = Next::nothing;  // a hedge is still running: it may yet answer
      } else if (p->winner.compare_exchange_strong(w, idx)) {
        next = Next::finish;
      }
    } else {
      p->errors.push_back(c.error.message);
      if (others_running) {
        next = Next::nothing;
      } else if (static_cast<int>(p->attempts.size()) < most_attempts) {
        next = Next::retry;
      } else {
        next = Next::fail_all;
      }
    }
  }

  switch (next) {
    case Next::nothing:
      break;
    case Next::finish: {
      std::vector<std::shared_ptr<RequestHandle>> others;
      {
        std::lock_guard lock(p->mu);
        for (auto& o : p->attempts) {
          if (!o.done && o.handle) others.push_back(o.handle);
        }
      }
      for (auto& h : others) h->cancel();
      if (c.error && c.figures.t_first_token_ns && c.error.kind != ErrorKind::cancelled) {
        c.error.message += fmt::format(
            "; not retried on another endpoint: {} chunks had already reached the caller",
            c.figures.chunks.value_or(0));
      }
      finish(p, std::move(c));
      break;
    }
    case Next::retry: {
      std::string why;
      {
        std::lock_guard lock(mu);
        p->want.exclude.clear();
        {
          std::lock_guard plock(p->mu);
          for (const auto& o : p->attempts) p->want.exclude.push_back(o.endpoint);
        }
        p->want.front = true;
        why = queue(p);
      }
      if (!why.empty()) {
        std::string all;
        {
          std::lock_guard plock(p->mu);
          for (const auto& e : p->errors) all += (all.empty() ? "" : " | ") + e;
        }
        give_up(p, c.error.kind,
                fmt::format("{}: the request failed before its first token and no other "
                            "endpoint can take it ({}): {}",
                            label, why, all));
      }
      break;
    }
    case Next::fail_all: {
      std::string all;
      std::size_t n = 0;
      {
        std::lock_guard plock(p->mu);
        for (const auto& e : p->errors) all += (all.empty() ? "" : " | ") + e;
        n = p->attempts.size();
      }
      c.error.message =
          fmt::format("{}: all {} attempts failed before the first token: {}", label, n, all);
      if (fallback.load() != nullptr && !p->cancel_requested.load()) {
        give_up(p, c.error.kind, std::move(c.error.message));
      } else {
        finish(p, std::move(c));
      }
      break;
    }
  }
  pump();
}

void Pool::Impl::finish(const std::shared_ptr<PoolRequest>& p, Completion c) {
  {
    std::lock_guard lock(p->mu);
    if (p->finished) return;
    p->finished = true;
    const int n = static_cast<int>(p->attempts.size());
    if (p->fell_back) {
      // This pool's attempts and then the fallback's; with none here (every endpoint was down),
      // the fallback's own figures stand.
      c.figures.attempts = n + std::max(1, c.figures.attempts);
      if (n > 0) c.figures.queued_ns = p->result.figures.queued_ns;
    } else {
      c.figures.attempts = std::max(1, n);
      c.figures.queued_ns = p->result.figures.queued_ns;
    }
    for (const auto& a : p->attempts) c.figures.hedges += a.hedge ? 1 : 0;
    if (n > 1 || (p->fell_back && n > 0)) {
      // Retried or hedged: the caller has waited since the first attempt was sent, so that is
      // the request's t_send (the first attempt's own send time may never have come).
      Figures& f = c.figures;
      f.t_send_ns = p->attempts[0].launched_ns;
      if (f.t_first_token_ns) f.ttft_client_ns = *f.t_first_token_ns - f.t_send_ns;
      f.e2e_ns = now_ns() - f.t_send_ns;
    }
  }
  {
    // Not under p->mu: the retry path takes the pool's mu and then p->mu, and taking them here
    // in the other order could deadlock two attempts finishing at once. A finished request
    // still in `live` for a moment is harmless: cancelling it finds nothing running.
    std::lock_guard lock(mu);
    live.erase(p.get());
  }
  {
    std::lock_guard lock(p->done_mu);
    p->result = c;
  }
  if (p->on_done) {
    try {
      p->on_done(std::move(c));
    } catch (...) {
      // Callbacks must not throw (backend.hpp); one that does must not take a thread down.
    }
  }
  {
    std::lock_guard lock(p->done_mu);
    p->done = true;
  }
  p->done_cv.notify_all();
}

void Pool::Impl::fail(const std::shared_ptr<PoolRequest>& p, ErrorKind kind, std::string message) {
  // Callbacks run on a runtime thread, never on the caller's (backend.hpp).
  hold();
  runtimes[std::size_t(p->lane) % runtimes.size()]->post(
      [this, p, kind, message = std::move(message)] {
        Completion c;
        c.endpoint = label;
        c.error = {kind, message};
        c.finish = kind == ErrorKind::cancelled ? FinishReason::cancelled : FinishReason::error;
        finish(p, std::move(c));
        unhold();
      });
}

void Pool::Impl::give_up(const std::shared_ptr<PoolRequest>& p, ErrorKind kind,
                         std::string message) {
  Pool* fb = fallback.load();
  if (fb == nullptr || kind == ErrorKind::cancelled || p->cancel_requested.load()) {
    fail(p, kind, std::move(message));
    return;
  }
  bool forward = false;
  {
    std::lock_guard lock(p->mu);
    if (p->finished) return;
    // Only while no token has reached the caller (always so on the paths that give up): the
    // fallback would repeat it.
    int w = p->winner.load();
    if (w < 0 && p->winner.compare_exchange_strong(w, kFallbackWinner)) {
      p->fell_back = true;
      p->fallback_reason = message;
      p->fallback_label = fb->endpoint();
      forward = true;
    }
  }
  if (!forward) {
    fail(p, kind, std::move(message));
    return;
  }
  hold();                  // released when the fallback's request is done
  Request r = p->request;  // a request that names no model gets the fallback pool's default
  auto handle = fb->start_on(
      p->lane, std::move(r),
      [p](const TokenEvent& ev) {
        if (p->cancel_requested.load()) return false;
        return p->on_token ? p->on_token(ev) : true;
      },
      [this, p](Completion c) {
        fallback_done(p, std::move(c));
        unhold();
      });
  bool cancel_now = false;
  {
    std::lock_guard lock(p->mu);
    if (!p->finished) p->fallback_handle = handle;
    cancel_now = p->cancel_requested.load();
  }
  if (cancel_now) handle->cancel();
}

void Pool::Impl::fallback_done(const std::shared_ptr<PoolRequest>& p, Completion c) {
  std::string reason;
  std::string fallback_label;
  {
    std::lock_guard lock(p->mu);
    reason = p->fallback_reason;
    fallback_label = p->fallback_label;
    p->fallback_handle.reset();
  }
  if (c.error && c.error.kind != ErrorKind::cancelled) {
    c.error.message =
        fmt::format("{}; then its fallback {}: {}", reason, fallback_label, c.error.message);
  } else if (c.ok()) {
    c.warnings.push_back(
        fmt::format("{}: served by its fallback {}: {}", label, fallback_label, reason));
  }
  finish(p, std::move(c));
}

void Pool::Impl::fail_unplaceable(const std::vector<Router::Ticket>& tickets) {
  for (auto t : tickets) {
    std::shared_ptr<PoolRequest> p;
    std::string why;
    {
      std::lock_guard lock(mu);
      auto it = waiting.find(t);
      if (it == waiting.end()) continue;
      p = std::move(it->second);
      waiting.erase(it);
      p->ticket.reset();
      why = why_unplaceable(p->want);
    }
    give_up(p, ErrorKind::connect,
            fmt::format("{}: no endpoint can take the request: {}", label, why));
  }
}

void Pool::Impl::cancel(const std::shared_ptr<PoolRequest>& p) {
  if (p->cancel_requested.exchange(true)) return;
  bool was_queued = false;
  {
    std::lock_guard lock(mu);
    if (p->ticket) {
      router.remove(*p->ticket);
      waiting.erase(*p->ticket);
      p->ticket.reset();
      was_queued = true;
    }
  }
  if (was_queued) {
    fail(p, ErrorKind::cancelled, label + ": cancelled while queued");
    return;
  }
  std::vector<std::shared_ptr<RequestHandle>> running;
  {
    std::lock_guard lock(p->mu);
    for (auto& a : p->attempts) {
      if (!a.done && a.handle) running.push_back(a.handle);
    }
    if (p->fallback_handle) running.push_back(p->fallback_handle);
  }
  for (auto& h : running) h->cancel();
}

void Pool::Impl::hedge_due(const std::shared_ptr<PoolRequest>& p) {
  int busy = -1;
  {
    std::lock_guard lock(p->mu);
    if (p->finished || p->cancel_requested.load() || p->winner.load() >= 0 ||
        p->attempts.size() != 1 || p->attempts[0].done) {
      return;
    }
    busy = p->attempts[0].endpoint;
  }
  std::optional<int> e;
  {
    std::lock_guard lock(mu);
    Router::Want w = p->want;
    w.exclude.push_back(busy);
    e = router.extra(w, busy, now_ns());
  }
  if (e) launch(p, *e, true);  // no free endpoint: no hedge (it would only queue)
}

void Pool::Impl::probe(int endpoint) {
  const EndpointInfo info = backend(endpoint, 0).check();
  std::vector<Router::Ticket> stranded;
  {
    std::lock_guard lock(mu);
    const bool was_up = router.load(endpoint).up;
    if (info.healthy) {
      router.succeeded(endpoint);
    } else if (was_up || now_ns() >= router.load(endpoint).down_until_ns) {
      router.failed(endpoint, now_ns(), "health check: " + info.detail);
      stranded = router.take_unplaceable();
    }
  }
  if (!stranded.empty()) fail_unplaceable(stranded);
  if (info.healthy) pump();
}

void Pool::Impl::run_service() {
  const int64_t interval = config.health_interval_ms * 1'000'000;
  int64_t next_check = interval > 0 ? now_ns() + interval : INT64_MAX;
  std::unique_lock lock(svc_mu);
  while (!stopping) {
    int64_t wake = next_check;
    {
      std::lock_guard rlock(mu);
      for (std::size_t e = 0; e < router.size(); ++e) {
        const auto& l = router.load(static_cast<int>(e));
        if (!l.up && !l.retired) wake = std::min(wake, l.down_until_ns);
      }
    }
    if (!hedges.empty()) wake = std::min(wake, hedges.top().first);
    for (const auto& d : dns) wake = std::min(wake, d.next_ns);
    const int64_t now = now_ns();
    if (wake > now) {
      // Sleeps until the next check, probe or hedge is due; a new hedge or an endpoint that
      // goes down wakes it sooner (wake_service).
      if (wake == INT64_MAX) {
        svc_cv.wait(lock);
      } else {
        svc_cv.wait_for(lock, std::chrono::nanoseconds(wake - now));
      }
      continue;
    }
    std::vector<std::shared_ptr<PoolRequest>> due;
    while (!hedges.empty() && hedges.top().first <= now) {
      if (auto p = hedges.top().second.lock()) due.push_back(std::move(p));
      hedges.pop();
    }
    std::vector<int> probes;
    {
      std::lock_guard rlock(mu);
      probes = router.due_for_probe(now);
    }
    const bool periodic = now >= next_check;
    if (periodic) next_check = now + interval;
    if (periodic) {
      probes.clear();
      std::lock_guard rlock(mu);
      for (std::size_t e = 0; e < router.size(); ++e) {
        if (!router.load(static_cast<int>(e)).retired) probes.push_back(static_cast<int>(e));
      }
    }
    lock.unlock();
    for (auto& p : due) hedge_due(p);
    for (int e : probes) probe(e);
    for (auto& d : dns) {  // only this thread touches `dns` once the pool is made
      if (d.next_ns <= now) {
        refresh(d);
        d.next_ns = now_ns() + d.interval_ns;
      }
    }
    lock.lock();
  }
}

Pool::Pool(PoolConfig config, std::vector<Runtime*> runtimes, int lanes)
    : impl_(std::make_shared<Impl>(std::move(config), std::move(runtimes), lanes)) {}

Pool::Pool(PoolConfig config, Runtime& runtime) : Pool(std::move(config), {&runtime}, 1) {}

Pool::~Pool() {
  // Queued requests fail now; requests in flight finish on their own (they hold the Impl).
  std::vector<std::shared_ptr<PoolRequest>> queued;
  {
    std::lock_guard lock(impl_->mu);
    for (auto& [t, p] : impl_->waiting) {
      impl_->router.remove(t);
      p->ticket.reset();
      queued.push_back(p);
    }
    impl_->waiting.clear();
  }
  for (auto& p : queued) impl_->fail(p, ErrorKind::cancelled, impl_->label + ": pool closed");
  {
    std::lock_guard lock(impl_->svc_mu);
    impl_->stopping = true;
  }
  impl_->svc_cv.notify_all();
  if (impl_->service.joinable()) impl_->service.join();
  // Requests in flight are cancelled and waited for: their callbacks use the backends.
  std::vector<std::shared_ptr<PoolRequest>> running;
  {
    std::lock_guard lock(impl_->mu);
    for (auto& [raw, weak] : impl_->live) {
      if (auto p = weak.lock()) running.push_back(std::move(p));
    }
  }
  for (auto& p : running) impl_->cancel(p);
  running.clear();
  {
    std::unique_lock lock(impl_->pending_mu);
    impl_->pending_cv.wait(lock, [this] { return impl_->pending == 0; });
  }
  impl_->members.clear();  // here, on the owner's thread, not on a runtime thread later
}

BackendKind Pool::kind() const {
  return impl_->config.endpoints.front().config.kind;
}
const std::string& Pool::endpoint() const {
  return impl_->label;
}
const PoolConfig& Pool::config() const {
  return impl_->config;
}
int Pool::lanes() const {
  return impl_->lanes;
}

std::shared_ptr<RequestHandle> Pool::start(Request request, TokenCallback on_token,
                                           DoneCallback on_done) {
  const int lane = static_cast<int>(impl_->rr.fetch_add(1) % uint64_t(impl_->lanes));
  return start_on(lane, std::move(request), std::move(on_token), std::move(on_done));
}

std::shared_ptr<RequestHandle> Pool::start_on(int lane, Request request, TokenCallback on_token,
                                              DoneCallback on_done) {
  auto p = std::allocate_shared<PoolRequest>(RecyclingAllocator<PoolRequest>{});
  p->pool = impl_;
  p->lane = std::max(0, lane) % impl_->lanes;
  p->want.key = !request.agent.empty() ? request.agent : request.session;
  p->want.session = request.session;
  p->want.pin = request.pin;
  p->request = std::move(request);
  p->on_token = std::move(on_token);
  p->on_done = std::move(on_done);
  p->enqueued_ns = now_ns();
  impl_->submit(p);
  return p;
}

EndpointInfo Pool::check() {
  EndpointInfo info;
  info.url = impl_->label;
  info.kind = kind();
  info.server = "pool";
  const int64_t t0 = now_ns();
  int healthy = 0;
  std::vector<int> active;
  {
    std::lock_guard lock(impl_->mu);
    for (std::size_t e = 0; e < impl_->router.size(); ++e) {
      if (!impl_->router.load(static_cast<int>(e)).retired) active.push_back(static_cast<int>(e));
    }
  }
  for (int e : active) {
    const EndpointInfo m = impl_->backend(e, 0).check();
    if (m.healthy) ++healthy;
    info.detail += fmt::format("{}{} {}", info.detail.empty() ? "" : "; ", m.url,
                               m.healthy ? "up" : "DOWN (" + m.detail + ")");
    for (const auto& model : m.models) {
      if (std::find(info.models.begin(), info.models.end(), model) == info.models.end()) {
        info.models.push_back(model);
      }
    }
  }
  info.healthy = healthy > 0;
  info.latency_ns = now_ns() - t0;
  info.detail = fmt::format("{}/{} endpoints up: {}", healthy, active.size(), info.detail);
  return info;
}

void Pool::drop_session(const std::string& session) {
  std::lock_guard lock(impl_->members_mu);
  for (auto& m : impl_->members) {
    for (auto& b : m.lanes) b->drop_session(session);
  }
}

std::vector<EndpointStatus> Pool::status() const {
  std::vector<EndpointStatus> out;
  std::lock_guard lock(impl_->mu);
  for (std::size_t e = 0; e < impl_->router.size(); ++e) {
    const auto& l = impl_->router.load(static_cast<int>(e));
    if (l.retired) continue;
    const auto& m = impl_->member(static_cast<int>(e));
    EndpointStatus& st = out.emplace_back();
    st.url = redact_url(m.config.url);
    st.address = m.address;
    st.kind = m.config.kind;
    st.up = l.up;
    st.outstanding = l.outstanding;
    st.limit = l.limit;
    st.dispatched = l.dispatched;
    st.failures = l.failures;
    st.last_error = l.last_error;
    if (!m.lanes.empty()) st.engine = m.lanes.front()->engine_load();
  }
  return out;
}

std::optional<ModelFacts> Pool::model_facts() const {
  std::lock_guard lock(impl_->mu);
  for (std::size_t e = 0; e < impl_->router.size(); ++e) {
    if (impl_->router.load(static_cast<int>(e)).retired) continue;
    const auto& m = impl_->member(static_cast<int>(e));
    if (m.lanes.empty()) continue;
    if (auto facts = m.lanes.front()->model_facts()) return facts;
  }
  return std::nullopt;
}

void Pool::set_fallback(Pool* other) {
  impl_->fallback.store(other);
}

Pool* Pool::fallback() const {
  return impl_->fallback.load();
}

void Pool::check_now() {
  std::vector<int> active;
  {
    std::lock_guard lock(impl_->mu);
    for (std::size_t e = 0; e < impl_->router.size(); ++e) {
      if (!impl_->router.load(static_cast<int>(e)).retired) active.push_back(static_cast<int>(e));
    }
  }
  for (int e : active) impl_->probe(e);
}

}  // namespace chimera::pool

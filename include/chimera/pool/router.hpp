// Where the next request of an endpoint pool goes, and when: routing policies, per-endpoint
// concurrency limits with a fair queue in front of them, and a circuit breaker per endpoint.
//
// The Router is pure bookkeeping: no I/O, no threads, no clock of its own (every call that needs
// the time is given it), so that its decisions can be tested with a fake clock. The Pool
// (pool.hpp) owns one behind a mutex and does the I/O.
//
// Fairness: requests are queued per key (the agent, or the session when no agent is named), and
// keys are served round-robin, so an agent that submits many requests cannot starve the others;
// within a key, requests go in order.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chimera::pool {

enum class Routing {
  pinned,             // a request names its endpoint (Want::pin); the next one while it is down
  round_robin,        // endpoints in turn (skipping full and down ones)
  least_outstanding,  // the endpoint with the fewest requests in flight (the default)
  session_affinity,   // a session sticks to one endpoint, so the server's prompt cache stays warm;
                      // moved only when that endpoint is down
};
const char* to_string(Routing r);
// "pinned", "round-robin", "least-outstanding", "session-affinity" (underscores also accepted).
std::optional<Routing> parse_routing(std::string_view name);

// Circuit breaker: an endpoint that fails is taken out for a back-off that doubles with each
// consecutive failure, up to a ceiling; after it, a probe (a health check) decides.
struct BreakerConfig {
  int64_t base_backoff_ms = 250;
  int64_t max_backoff_ms = 5'000;
};

struct EndpointLoad {
  int limit = 0;        // most requests in flight; 0: no limit
  int outstanding = 0;  // in flight now
  bool up = true;
  int failures = 0;           // consecutive failures
  int64_t down_until_ns = 0;  // a down endpoint is probed from then on
  uint64_t dispatched = 0;    // requests sent to it so far
  std::string last_error;     // why it was taken out
  bool retired = false;       // no longer an endpoint (its address left the DNS answer): never
                              // chosen or probed; requests already on it finish there
};

class Router {
 public:
  using Ticket = uint64_t;

  // What a request asks of the router.
  struct Want {
    std::string key;           // fairness key (agent id or session); "" is a key like any other
    std::string session;       // for session_affinity
    int pin = -1;              // for pinned: the endpoint index (taken modulo the endpoint count)
    std::vector<int> exclude;  // endpoints not to use (those that already failed this request)
    bool front = false;        // a retry: goes first in its key's queue
  };

  Router(std::vector<int> limits, Routing routing, BreakerConfig breaker = {});

  Routing routing() const { return routing_; }
  std::size_t size() const { return endpoints_.size(); }
  const EndpointLoad& load(int endpoint) const { return endpoints_.at(std::size_t(endpoint)); }
  std::size_t queued() const { return queued_; }

  // Queues a request.
  Ticket enqueue(Want want);
  // Takes a queued request out (it was cancelled). False when it is no longer queued.
  bool remove(Ticket ticket);

  // The next queued request that can be sent now, and its endpoint, with a slot on that endpoint
  // reserved. nullopt when nothing can go (queue empty, or every candidate endpoint is full).
  // Call it again until nullopt after anything that frees a slot.
  std::optional<std::pair<Ticket, int>> next(int64_t now_ns);

  // A request that finds nothing queued goes straight to an endpoint with room, with its slot
  // reserved: what enqueue() and then next() would do, without a queue of its own (the common
  // case, where a request's queueing cost more than its routing). nullopt when anything is
  // queued (those go first) or no endpoint can take it now: then enqueue() it.
  std::optional<int> place_now(const Want& want, int64_t now_ns);

  // True when the request can never be placed: every endpoint it may use is down or excluded.
  // Such a request fails instead of waiting.
  bool unplaceable(const Want& want) const;
  // Requests in the queue that can never be placed now (see unplaceable()); removed from the
  // queue. The Pool fails them.
  std::vector<Ticket> take_unplaceable();

  // For hedging: another endpoint with a free slot now, other than `busy`, reserved. nullopt
  // when there is none.
  std::optional<int> extra(const Want& want, int busy, int64_t now_ns);

  // A request on `endpoint` ended: frees its slot.
  void release(int endpoint);
  // The endpoint failed (could not connect, broke a stream, answered 5xx): out, with back-off.
  void failed(int endpoint, int64_t now_ns, std::string why);
  // The endpoint answered (a request or a probe succeeded): back in.
  void succeeded(int endpoint);
  // Down endpoints whose back-off has run out: probe them.
  std::vector<int> due_for_probe(int64_t now_ns) const;

  // Endpoints joining and leaving (a pool endpoint expanded from DNS): a new one gets the next
  // index; a retired one keeps its index (so requests on it still release their slot) and may
  // come back with retire(e, false). Requests queued that no endpoint can take any more are
  // left for take_unplaceable().
  int add(int limit);
  void retire(int endpoint, bool retired = true);

  // Where a session is bound (session_affinity), or -1.
  int session_endpoint(const std::string& session) const;

 private:
  struct Entry {
    Want want;
    bool live = true;
  };
  int choose(const Want& want, int64_t now_ns);  // -1: no endpoint can take it now
  void dispatch(int e);  // a request goes to e (next(), place_now()): its slot taken
  bool usable(int e, const Want& want) const;  // up and not excluded
  bool has_room(int e) const;
  int least_outstanding(const Want& want, int avoid) const;

  std::vector<EndpointLoad> endpoints_;
  Routing routing_;
  BreakerConfig breaker_;
  Ticket next_ticket_ = 1;
  std::unordered_map<Ticket, Entry> entries_;
  std::unordered_map<std::string, std::deque<Ticket>> queues_;  // per key, in order
  std::deque<std::string> active_;                              // keys with queued requests
  std::unordered_map<std::string, int> sessions_;               // session -> endpoint
  std::size_t queued_ = 0;
  std::size_t rr_cursor_ = 0;
  std::size_t tie_cursor_ = 0;
};

}  // namespace chimera::pool

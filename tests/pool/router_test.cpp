// The Router's decisions, with a fake clock: routing policies, limits, the fair queue and the
// circuit breaker. No I/O.
#include <chimera/pool/router.hpp>

#include <gtest/gtest.h>

#include <map>

using chimera::pool::BreakerConfig;
using chimera::pool::Router;
using chimera::pool::Routing;

namespace {

constexpr int64_t kMs = 1'000'000;

Router::Want want(std::string key, std::string session = {}, int pin = -1) {
  Router::Want w;
  w.key = std::move(key);
  w.session = std::move(session);
  w.pin = pin;
  return w;
}

// Dispatches everything that can go now; returns the endpoint of each ticket.
std::map<Router::Ticket, int> drain(Router& r, int64_t now = 0) {
  std::map<Router::Ticket, int> out;
  while (auto n = r.next(now)) out[n->first] = n->second;
  return out;
}

}  // namespace

TEST(Router, ParsesRoutingNames) {
  EXPECT_EQ(chimera::pool::parse_routing("least-outstanding"), Routing::least_outstanding);
  EXPECT_EQ(chimera::pool::parse_routing("session_affinity"), Routing::session_affinity);
  EXPECT_EQ(chimera::pool::parse_routing("round-robin"), Routing::round_robin);
  EXPECT_EQ(chimera::pool::parse_routing("pinned"), Routing::pinned);
  EXPECT_FALSE(chimera::pool::parse_routing("random"));
}

TEST(Router, LeastOutstandingSpreadsAndRespectsLimits) {
  Router r({2, 2}, Routing::least_outstanding);
  for (int i = 0; i < 6; ++i) r.enqueue(want("a" + std::to_string(i)));
  auto sent = drain(r);
  ASSERT_EQ(sent.size(), 4u);  // 2 slots on each endpoint
  EXPECT_EQ(r.load(0).outstanding, 2);
  EXPECT_EQ(r.load(1).outstanding, 2);
  EXPECT_EQ(r.queued(), 2u);
  r.release(1);
  auto more = drain(r);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more.begin()->second, 1);  // the endpoint with the free slot
  EXPECT_EQ(r.queued(), 1u);
}

TEST(Router, LeastOutstandingPrefersTheIdleEndpoint) {
  Router r({0, 0}, Routing::least_outstanding);  // no limits
  r.enqueue(want("a"));
  r.enqueue(want("b"));
  r.enqueue(want("c"));
  auto sent = drain(r);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(r.load(0).outstanding + r.load(1).outstanding, 3);
  EXPECT_LE(std::abs(r.load(0).outstanding - r.load(1).outstanding), 1);
  // Endpoint 0 finishes both of its requests: the next one goes there.
  while (r.load(0).outstanding > 0) r.release(0);
  r.enqueue(want("d"));
  auto next = drain(r);
  EXPECT_EQ(next.begin()->second, 0);
}

TEST(Router, RoundRobinTakesTurns) {
  Router r({0, 0, 0}, Routing::round_robin);
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) {
    r.enqueue(want("k"));
    order.push_back(r.next(0)->second);
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 0, 1, 2}));
}

TEST(Router, PinnedWaitsForItsEndpointAndFailsOverWhenItIsDown) {
  Router r({1, 1}, Routing::pinned);
  r.enqueue(want("a", "", 1));
  r.enqueue(want("b", "", 1));
  auto sent = drain(r);
  ASSERT_EQ(sent.size(), 1u);  // b waits for endpoint 1, though endpoint 0 is free
  EXPECT_EQ(sent.begin()->second, 1);
  EXPECT_EQ(r.queued(), 1u);
  r.failed(1, 0, "connection refused");
  auto moved = drain(r);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved.begin()->second, 0);
}

TEST(Router, SessionAffinitySticksAndRebalancesOnlyWhenDown) {
  Router r({0, 0}, Routing::session_affinity);
  r.enqueue(want("x", "s1"));
  const int first = r.next(0)->second;
  for (int i = 0; i < 5; ++i) {
    r.enqueue(want("x", "s1"));
    EXPECT_EQ(r.next(0)->second, first) << "turn " << i;
  }
  EXPECT_EQ(r.session_endpoint("s1"), first);
  // A second session goes to the less loaded endpoint.
  r.enqueue(want("y", "s2"));
  EXPECT_EQ(r.next(0)->second, 1 - first);
  r.failed(first, 0, "down");
  r.enqueue(want("x", "s1"));
  EXPECT_EQ(r.next(0)->second, 1 - first);
  EXPECT_EQ(r.session_endpoint("s1"), 1 - first);
}

TEST(Router, SessionAffinityWaitsForAFullStickyEndpoint) {
  Router r({1, 1}, Routing::session_affinity);
  r.enqueue(want("x", "s1"));
  const int e = r.next(0)->second;
  r.enqueue(want("x", "s1"));
  EXPECT_FALSE(r.next(0));  // its endpoint is busy; the other is free but cold
  r.release(e);
  EXPECT_EQ(r.next(0)->second, e);
}

TEST(Router, FairQueueServesKeysRoundRobin) {
  Router r({1}, Routing::least_outstanding);
  // Agent a floods the queue first; b and c come later with one request each.
  for (int i = 0; i < 5; ++i) r.enqueue(want("a"));
  r.enqueue(want("b"));
  r.enqueue(want("c"));
  std::vector<std::string> order;
  std::map<Router::Ticket, std::string> key_of;
  // Tickets are issued in order: 1-5 a, 6 b, 7 c.
  for (Router::Ticket t = 1; t <= 5; ++t) key_of[t] = "a";
  key_of[6] = "b";
  key_of[7] = "c";
  for (int i = 0; i < 7; ++i) {
    auto n = r.next(0);
    ASSERT_TRUE(n);
    order.push_back(key_of[n->first]);
    r.release(n->second);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "a", "a", "a", "a"}));
}

TEST(Router, RetryGoesFirstInItsKeyAndAvoidsExcludedEndpoints) {
  Router r({0, 0}, Routing::least_outstanding);
  r.enqueue(want("a"));
  Router::Want retry = want("a");
  retry.exclude = {0};
  retry.front = true;
  const auto t = r.enqueue(retry);
  auto n = r.next(0);
  EXPECT_EQ(n->first, t);
  EXPECT_EQ(n->second, 1);
}

TEST(Router, RemovedTicketsAreSkipped) {
  Router r({1}, Routing::least_outstanding);
  const auto t1 = r.enqueue(want("a"));
  const auto t2 = r.enqueue(want("a"));
  EXPECT_TRUE(r.remove(t1));
  EXPECT_FALSE(r.remove(t1));
  EXPECT_EQ(r.queued(), 1u);
  EXPECT_EQ(r.next(0)->first, t2);
}

TEST(Router, BreakerBacksOffAndDoublesUpToTheCeiling) {
  Router r({0, 0}, Routing::least_outstanding, BreakerConfig{100, 400});
  r.failed(0, 0, "refused");
  EXPECT_FALSE(r.load(0).up);
  EXPECT_TRUE(r.due_for_probe(99 * kMs).empty());
  EXPECT_EQ(r.due_for_probe(100 * kMs), std::vector<int>{0});
  r.failed(0, 100 * kMs, "refused");  // the probe failed: 200 ms
  EXPECT_TRUE(r.due_for_probe(299 * kMs).empty());
  EXPECT_EQ(r.due_for_probe(300 * kMs), std::vector<int>{0});
  r.failed(0, 300 * kMs, "refused");  // 400 ms
  r.failed(0, 700 * kMs, "refused");  // still 400 ms: the ceiling
  EXPECT_TRUE(r.due_for_probe(1099 * kMs).empty());
  EXPECT_EQ(r.due_for_probe(1100 * kMs), std::vector<int>{0});
  r.succeeded(0);
  EXPECT_TRUE(r.load(0).up);
  EXPECT_EQ(r.load(0).failures, 0);
  // While down, nothing is routed to it.
  r.failed(1, 2000 * kMs, "refused");
  r.enqueue(want("a"));
  EXPECT_EQ(r.next(2000 * kMs)->second, 0);
}

TEST(Router, UnplaceableWhenEveryEndpointIsDownOrExcluded) {
  Router r({0, 0}, Routing::least_outstanding);
  Router::Want w = want("a");
  w.exclude = {0};
  EXPECT_FALSE(r.unplaceable(w));
  r.failed(1, 0, "refused");
  EXPECT_TRUE(r.unplaceable(w));
  r.enqueue(w);
  r.enqueue(want("b"));
  const auto stranded = r.take_unplaceable();
  EXPECT_EQ(stranded.size(), 1u);
  EXPECT_EQ(r.queued(), 1u);
}

TEST(Router, ExtraPicksAnotherFreeEndpointForAHedge) {
  Router r({1, 1}, Routing::least_outstanding);
  r.enqueue(want("a"));
  const int busy = r.next(0)->second;
  auto e = r.extra(want("a"), busy, 0);
  ASSERT_TRUE(e);
  EXPECT_NE(*e, busy);
  EXPECT_FALSE(r.extra(want("b"), busy, 0));  // both full now
}

// place_now() sends a request that finds nothing queued as enqueue() and next() would, and
// leaves it to the queue when anything waits or no endpoint has room.
TEST(Router, PlaceNowIsWhatTheQueueWouldDoWhenNothingWaits) {
  Router queued({1, 1}, Routing::least_outstanding);
  Router direct({1, 1}, Routing::least_outstanding);
  for (const char* key : {"a", "b"}) {
    queued.enqueue(want(key));
    const auto sent = drain(queued);
    ASSERT_EQ(sent.size(), 1u);
    const auto e = direct.place_now(want(key), 0);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(*e, sent.begin()->second);  // the same endpoint, its slot reserved alike
  }
  for (int e = 0; e < 2; ++e) {
    EXPECT_EQ(direct.load(e).outstanding, queued.load(e).outstanding);
    EXPECT_EQ(direct.load(e).dispatched, queued.load(e).dispatched);
  }
  EXPECT_FALSE(direct.place_now(want("c"), 0));  // both endpoints full: it must queue
  EXPECT_EQ(direct.queued(), 0u);                // and place_now() did not queue it

  direct.enqueue(want("c"));
  direct.release(0);
  EXPECT_FALSE(direct.place_now(want("d"), 0));  // "c" waits, so "d" does not pass it
  const auto sent = drain(direct);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent.begin()->second, 0);
}

TEST(Router, PlaceNowKeepsASessionOnItsEndpoint) {
  Router r({0, 0}, Routing::session_affinity);
  const auto first = r.place_now(want("a", "s1"), 0);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(r.session_endpoint("s1"), *first);
  r.release(*first);
  r.place_now(want("b", "s2"), 0);  // the other endpoint, for another session
  EXPECT_EQ(r.place_now(want("a", "s1"), 0), first);
}

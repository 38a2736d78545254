// Endpoint pools against real llama-servers: failover when a server dies mid-run, the health
// check taking it out and putting it back, hedging, limits and cancellation in the queue, and the
// pool file format.
#include "support/test_support.hpp"

#include <chimera/backends/server_process.hpp>
#include <chimera/pool/pool.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <iostream>
#include <mutex>
#include <thread>

using namespace chimera;
using namespace std::chrono_literals;

namespace {

ServerOptions server_options(int port, int parallel) {
  ServerOptions o;
  o.model = test::tiny_model().string();
  o.port = port;
  o.parallel = parallel;
  o.ctx = 2048 * parallel;
  o.threads = 1;
  o.extra = {"--no-warmup", "--cache-ram", "0"};
  return o;
}

pool::PoolEndpoint endpoint(const std::string& url, int limit) {
  pool::PoolEndpoint e;
  e.config.url = url;
  e.config.kind = BackendKind::openai;
  e.max_concurrency = limit;
  return e;
}

Request chat(int n, const std::string& text = "Tell me something.") {
  Request r;
  r.messages = {{"user", text, {}, {}, {}}};
  r.options.num_predict = n;
  r.options.temperature = 0.0;
  return r;
}

template <class F>
bool eventually(F f, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return f();
}

}  // namespace

TEST(PoolFile, ParsesPoolsAndNamesErrors) {
  std::vector<pool::PoolConfig> pools;
  std::string error;
  ASSERT_TRUE(pool::parse_pools(R"(
[[pool]]
name = "collector"
routing = "session-affinity"
hedge_after_ms = 150
[[pool.endpoint]]
url = "http://127.0.0.1:11434"
backend = "ollama"
max_concurrency = 4

[[pool]]
name = "insight"
[[pool.endpoint]]
url = "http://127.0.0.1:11435"
backend = "ollama"
[[pool.endpoint]]
url = "http://127.0.0.1:8080"
)",
                                "pools.toml", pools, error))
      << error;
  ASSERT_EQ(pools.size(), 2u);
  EXPECT_EQ(pools[0].name, "collector");
  EXPECT_EQ(pools[0].routing, pool::Routing::session_affinity);
  EXPECT_EQ(pools[0].hedge_after_ms, 150);
  EXPECT_EQ(pools[0].endpoints[0].max_concurrency, 4);
  EXPECT_EQ(pools[0].endpoints[0].config.kind, BackendKind::ollama);
  EXPECT_EQ(pools[1].routing, pool::Routing::least_outstanding);
  EXPECT_EQ(pools[1].endpoints.size(), 2u);
  EXPECT_EQ(pools[1].endpoints[1].config.kind, BackendKind::openai);

  EXPECT_FALSE(
      pool::parse_pools("[[pool]]\nname = \"a\"\nrouting = \"random\"\n"
                        "[[pool.endpoint]]\nurl = \"http://x:1\"\n",
                        "p.toml", pools, error));
  EXPECT_NE(error.find("p.toml:3"), std::string::npos) << error;
  EXPECT_NE(error.find("random"), std::string::npos) << error;
  EXPECT_FALSE(pool::parse_pools("[[pool]]\nname = \"a\"\n", "p.toml", pools, error));
  EXPECT_NE(error.find("no [[pool.endpoint]]"), std::string::npos) << error;
  EXPECT_FALSE(pool::parse_pools("[[pool]]\nnmae = \"a\"\n", "p.toml", pools, error));
  EXPECT_NE(error.find("unknown key 'nmae'"), std::string::npos) << error;
  EXPECT_FALSE(pool::parse_pools("[[pool\n", "p.toml", pools, error));
  EXPECT_NE(error.find("p.toml:1"), std::string::npos) << error;
  EXPECT_FALSE(pool::load_pools("/nonexistent/pools.toml", pools, error));
  EXPECT_NE(error.find("/nonexistent/pools.toml"), std::string::npos) << error;
}

TEST(Pool, EveryEndpointDownFailsAtOnceWithEachNamed) {
  Runtime rt;
  pool::PoolConfig pc;
  pc.name = "dead";
  pc.endpoints = {endpoint("http://127.0.0.1:" + std::to_string(free_loopback_port()), 0),
                  endpoint("http://127.0.0.1:" + std::to_string(free_loopback_port()), 0)};
  pool::Pool p(pc, rt);
  const Completion c = p.generate(chat(4));
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.error.kind, ErrorKind::connect) << c.error.message;
  EXPECT_EQ(c.figures.attempts, 2);
  EXPECT_NE(c.error.message.find(pc.endpoints[0].config.url), std::string::npos) << c.error.message;
  EXPECT_NE(c.error.message.find(pc.endpoints[1].config.url), std::string::npos) << c.error.message;
  // Both are out now: the next request fails without trying.
  const Completion d = p.generate(chat(4));
  EXPECT_FALSE(d.ok());
  EXPECT_NE(d.error.message.find("no endpoint can take the request"), std::string::npos)
      << d.error.message;
}

class PoolServers : public ::testing::Test {
 protected:
  void SetUp() override {
    a_port_ = free_loopback_port();
    b_port_ = free_loopback_port();
    a_ = std::make_unique<ServerProcess>(server_options(a_port_, 4));
    b_ = std::make_unique<ServerProcess>(server_options(b_port_, 4));
    ASSERT_TRUE(a_->ok()) << a_->error();
    ASSERT_TRUE(b_->ok()) << b_->error();
  }
  int a_port_ = 0, b_port_ = 0;
  std::unique_ptr<ServerProcess> a_, b_;
};

// 32 agents on two servers; one is killed mid-run. Requests that had not started streaming
// complete on the other; those streaming from the dead one fail with a clear error; nothing is
// delivered twice; the health check takes the dead one out and puts it back after a restart.
TEST_F(PoolServers, FailoverWhenAServerDiesMidRun) {
  Runtime rt(2);
  pool::PoolConfig pc;
  pc.name = "pair";
  pc.endpoints = {endpoint(a_->url(), 4), endpoint(b_->url(), 4)};
  pc.health_interval_ms = 200;
  pc.breaker = {100, 400};
  pool::Pool p(pc, rt);

  constexpr int kAgents = 32;
  struct Track {
    std::atomic<int> tokens{0};
    std::atomic<bool> done{false};
    std::atomic<int> after_done{0};
    bool streaming_at_kill = false;
    Completion c;
  };
  std::vector<Track> track(kAgents);
  std::mutex mu;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  std::atomic<int> finished{0};
  for (int i = 0; i < kAgents; ++i) {
    Request r = chat(150, "Agent " + std::to_string(i) + " speaks.");
    r.agent = "agent-" + std::to_string(i);
    handles.push_back(p.start(
        r,
        [&track, i](const TokenEvent&) {
          if (track[i].done.load()) track[i].after_done.fetch_add(1);
          track[i].tokens.fetch_add(1);
          return true;
        },
        [&track, &finished, i](Completion c) {
          track[i].c = std::move(c);
          track[i].done.store(true);
          finished.fetch_add(1);
        }));
  }
  // Kill B once some of its requests stream.
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& s : p.status()) {
          if (s.url == b_->url() && s.dispatched >= 2) return true;
        }
        return false;
      },
      10s));
  ASSERT_TRUE(eventually(
      [&] {
        int streaming = 0;
        for (auto& t : track) streaming += t.tokens.load() > 0 && !t.done.load();
        return streaming >= 4;
      },
      10s));
  std::vector<int> tokens_at_kill(kAgents);
  for (int i = 0; i < kAgents; ++i) {
    tokens_at_kill[i] = track[i].tokens.load();
  }
  b_->kill();
  ASSERT_TRUE(eventually([&] { return finished.load() == kAgents; }, 60s));

  int ok = 0, failed = 0;
  for (int i = 0; i < kAgents; ++i) {
    const Completion& c = track[i].c;
    EXPECT_EQ(track[i].after_done.load(), 0) << "agent " << i;
    if (c.ok()) {
      ++ok;
      // Every token reached the caller once: the count matches what the server says it sent.
      EXPECT_EQ(track[i].tokens.load(), c.figures.chunks.value_or(-1)) << "agent " << i;
      continue;
    }
    ++failed;
    // Only a request already streaming from the dead server may fail, and it says so.
    EXPECT_EQ(c.endpoint, b_->url()) << c.error.message;
    EXPECT_GT(track[i].tokens.load(), 0) << "agent " << i << ": " << c.error.message;
    EXPECT_NE(c.error.message.find("not retried"), std::string::npos) << c.error.message;
    EXPECT_NE(c.error.message.find(b_->url()), std::string::npos) << c.error.message;
  }
  for (int i = 0; i < kAgents; ++i) {
    if (tokens_at_kill[i] == 0 && !track[i].c.ok()) {
      // It had not started streaming at the kill, so it must have failed over... unless it
      // started streaming from B in the moment between our look and the kill.
      EXPECT_GT(track[i].tokens.load(), 0) << "agent " << i << ": " << track[i].c.error.message;
    }
  }
  EXPECT_GE(ok, kAgents - 4);  // at most B's four slots were streaming
  EXPECT_LE(failed, 4);

  // The dead server is out; the pool keeps working on A alone.
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& s : p.status()) {
          if (s.url == b_->url()) return !s.up;
        }
        return false;
      },
      5s));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(p.generate(chat(4)).ok());

  // Restart B on its port: the health check puts it back.
  b_ = std::make_unique<ServerProcess>(server_options(b_port_, 4));
  ASSERT_TRUE(b_->ok()) << b_->error();
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& s : p.status()) {
          if (s.url == b_->url()) return s.up;
        }
        return false;
      },
      10s));
}

// No first token within the hedge delay: the same request goes to the other endpoint, the first
// to answer is kept and the other cancelled, leaving its server idle.
TEST(PoolHedging, TheFirstAnswerWinsAndTheLoserIsCancelled) {
  const int a_port = free_loopback_port();
  ServerProcess a(server_options(a_port, 1));
  ServerProcess b(server_options(free_loopback_port(), 1));
  ASSERT_TRUE(a.ok()) << a.error();
  ASSERT_TRUE(b.ok()) << b.error();
  Runtime rt;

  // A's only slot is busy with a long request from elsewhere: a request pinned to A gets no
  // first token until it ends.
  auto direct = make_backend({.url = a.url(), .kind = BackendKind::openai}, rt);
  std::atomic<int> blocker_tokens{0};
  auto blocker = direct->start(chat(100000),
                               [&](const TokenEvent&) {
                                 blocker_tokens.fetch_add(1);
                                 return true;
                               },
                               {});
  ASSERT_TRUE(eventually([&] { return blocker_tokens.load() > 0; }, 10s));

  pool::PoolConfig pc;
  pc.name = "hedged";
  pc.routing = pool::Routing::pinned;
  pc.hedge_after_ms = 100;
  pc.health_interval_ms = 0;
  pc.endpoints = {endpoint(a.url(), 0), endpoint(b.url(), 0)};
  pool::Pool p(pc, rt);
  Request r = chat(8);
  r.pin = 0;
  std::atomic<int> tokens{0};
  const Completion c = p.generate(r, [&](const TokenEvent&) {
    tokens.fetch_add(1);
    return true;
  });
  ASSERT_TRUE(c.ok()) << c.error.message;
  EXPECT_EQ(c.endpoint, b.url());
  EXPECT_EQ(c.figures.attempts, 2);
  EXPECT_EQ(tokens.load(), c.figures.chunks.value_or(-1));
  EXPECT_GE(*c.figures.ttft_client_ns, 100'000'000);  // measured from the first attempt

  // Free A's slot: the cancelled request must not run there.
  blocker->cancel();
  blocker->wait();
  EXPECT_TRUE(eventually([&] { return test::slots_idle(a_port); }, 3s))
      << "the hedged request's loser is still being processed on A";

  // A first token before the delay: no hedge.
  Request quick = chat(4);
  quick.pin = 1;
  const Completion q = p.generate(quick);
  ASSERT_TRUE(q.ok()) << q.error.message;
  EXPECT_EQ(q.figures.attempts, 1);
}

// The per-endpoint limit holds with a queue in front; a queued request can be cancelled.
TEST(PoolLimits, LimitQueuesAndCancelInTheQueue) {
  ServerProcess s(server_options(free_loopback_port(), 2));
  ASSERT_TRUE(s.ok()) << s.error();
  Runtime rt;
  pool::PoolConfig pc;
  pc.endpoints = {endpoint(s.url(), 1)};
  pool::Pool p(pc, rt);

  std::atomic<int> max_seen{0};
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    while (!stop.load()) {
      for (const auto& st : p.status()) {
        max_seen.store(std::max(max_seen.load(), st.outstanding));
      }
      std::this_thread::sleep_for(1ms);
    }
  });
  auto first = p.start(chat(200), {}, {});
  auto second = p.start(chat(4), {}, {});
  second->cancel();
  const Completion c2 = second->wait();
  EXPECT_EQ(c2.error.kind, ErrorKind::cancelled) << c2.error.message;
  EXPECT_NE(c2.error.message.find("queued"), std::string::npos) << c2.error.message;
  std::vector<std::shared_ptr<RequestHandle>> more;
  for (int i = 0; i < 4; ++i) more.push_back(p.start(chat(8), {}, {}));
  EXPECT_TRUE(first->wait().ok());
  for (auto& h : more) {
    const Completion c = h->wait();
    EXPECT_TRUE(c.ok()) << c.error.message;
    EXPECT_TRUE(c.figures.queued_ns.has_value());
  }
  stop.store(true);
  watcher.join();
  EXPECT_EQ(max_seen.load(), 1);
}

TEST(PoolFile, FallbackNamesAnotherPoolOfTheFile) {
  std::vector<pool::PoolConfig> pools;
  std::string error;
  const std::string spare =
      "[[pool]]\nname = \"spare\"\n[[pool.endpoint]]\nurl = \"http://127.0.0.1:2\"\n";
  ASSERT_TRUE(
      pool::parse_pools("[[pool]]\nname = \"main\"\nfallback = \"spare\"\n"
                        "[[pool.endpoint]]\nurl = \"http://127.0.0.1:1\"\n" +
                            spare,
                        "p.toml", pools, error))
      << error;
  EXPECT_EQ(pools[0].fallback, "spare");
  EXPECT_EQ(pools[1].fallback, "");
  // An unknown name, itself, and a loop: each names the line of the `fallback` at fault.
  EXPECT_FALSE(
      pool::parse_pools("[[pool]]\nname = \"main\"\nfallback = \"spar\"\n"
                        "[[pool.endpoint]]\nurl = \"http://127.0.0.1:1\"\n" +
                            spare,
                        "p.toml", pools, error));
  EXPECT_NE(error.find("p.toml:3"), std::string::npos) << error;
  EXPECT_NE(error.find("'spar' is not a pool here"), std::string::npos) << error;
  EXPECT_FALSE(
      pool::parse_pools("[[pool]]\nname = \"main\"\nfallback = \"main\"\n"
                        "[[pool.endpoint]]\nurl = \"http://127.0.0.1:1\"\n",
                        "p.toml", pools, error));
  EXPECT_NE(error.find("names itself"), std::string::npos) << error;
  EXPECT_FALSE(
      pool::parse_pools("[[pool]]\nname = \"main\"\nfallback = \"spare\"\n"
                        "[[pool.endpoint]]\nurl = \"http://127.0.0.1:1\"\n"
                        "[[pool]]\nname = \"spare\"\nfallback = \"main\"\n"
                        "[[pool.endpoint]]\nurl = \"http://127.0.0.1:2\"\n",
                        "p.toml", pools, error));
  EXPECT_NE(error.find("loop: main -> spare -> main"), std::string::npos) << error;
}

// A pool whose only endpoint is a dead port hands its requests to its fallback pool, a real
// llama-server: they stream from there, and say so; with the fallback dead too, the error names
// both pools' reasons.
TEST(PoolFallback, RequestsGoToTheFallbackWhenEveryEndpointIsDown) {
  const int port = free_loopback_port();
  ServerProcess server(server_options(port, 2));
  ASSERT_TRUE(server.ok()) << server.error();
  Runtime rt(2);
  pool::PoolConfig main_pc;
  main_pc.name = "main";
  main_pc.fallback = "spare";
  main_pc.endpoints = {endpoint("http://127.0.0.1:" + std::to_string(free_loopback_port()), 0)};
  main_pc.endpoints[0].config.retry.attempts = 1;
  pool::PoolConfig spare_pc;
  spare_pc.name = "spare";
  spare_pc.endpoints = {endpoint(server.url(), 2)};
  pool::Pool spare(spare_pc, rt);
  pool::Pool main(main_pc, rt);
  pool::link_fallbacks({&main, &spare});
  EXPECT_EQ(main.fallback(), &spare);
  EXPECT_EQ(spare.fallback(), nullptr);

  for (int round = 0; round < 2; ++round) {
    std::atomic<int> tokens{0};
    auto h = main.start(chat(8), [&](const TokenEvent&) { return tokens.fetch_add(1), true; }, {});
    const Completion c = h->wait();
    ASSERT_TRUE(c.ok()) << c.error.message;
    EXPECT_GT(tokens.load(), 0);
    EXPECT_EQ(c.endpoint, server.url());  // the fallback pool's endpoint that answered
    // Round 0 tried the dead endpoint first; in round 1 it is already out, so nothing is tried
    // here before the fallback.
    EXPECT_EQ(c.figures.attempts, round == 0 ? 2 : 1);
    ASSERT_FALSE(c.warnings.empty());
    EXPECT_NE(c.warnings.back().find("pool:main: served by its fallback pool:spare"),
              std::string::npos)
        << c.warnings.back();
  }

  server.stop();
  const Completion d = main.generate(chat(4));
  EXPECT_FALSE(d.ok());
  EXPECT_NE(d.error.message.find("pool:main:"), std::string::npos) << d.error.message;
  EXPECT_NE(d.error.message.find("then its fallback pool:spare:"), std::string::npos)
      << d.error.message;

  pool::PoolConfig loop = main_pc;
  loop.name = "spare";
  loop.fallback = "main";
  pool::Pool other(loop, rt);
  EXPECT_THROW(pool::link_fallbacks({&main, &other}), std::invalid_argument);
}

namespace {

// Whether this machine can listen on ::1.
bool have_ipv6_loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A llama-server listening on every address, IPv4 and IPv6 (a dual-stack socket), so that
// 127.0.0.1 and ::1 both reach it.
ServerOptions dual_stack(int port) {
  ServerOptions o = server_options(port, 4);
  o.extra.insert(o.extra.end(), {"--host", "::"});
  return o;
}

std::vector<pool::EndpointStatus> addresses_now(const pool::Pool& p) {
  return p.status();
}

}  // namespace

// `localhost` with expand = "dns" gives one endpoint per address it resolves to, and requests
// reach the server through each. Where this machine's localhost is 127.0.0.1 only (no ::1 line
// in /etc/hosts), the two-address part runs on a resolver that answers both.
TEST(PoolDns, LocalhostGivesAnEndpointPerAddress) {
  if (!have_ipv6_loopback()) GTEST_SKIP() << "this machine has no IPv6 loopback (::1)";
  const int port = free_loopback_port();
  ServerProcess server(dual_stack(port));
  ASSERT_TRUE(server.ok()) << server.error();
  std::vector<std::string> system;
  std::string error;
  ASSERT_TRUE(pool::system_resolve("localhost", system, error)) << error;
  std::sort(system.begin(), system.end());
  system.erase(std::unique(system.begin(), system.end()), system.end());

  Runtime rt(2);
  pool::PoolConfig pc;
  pc.name = "byname";
  pc.routing = pool::Routing::round_robin;
  pc.endpoints = {endpoint("http://localhost:" + std::to_string(port), 2)};
  pc.endpoints[0].expand = "dns";
  {
    pool::Pool p(pc, rt);
    ASSERT_EQ(p.status().size(), system.size());
    for (std::size_t i = 0; i < system.size(); ++i) EXPECT_EQ(p.status()[i].address, system[i]);
    for (std::size_t i = 0; i < 2 * system.size(); ++i) {
      const Completion c = p.generate(chat(4));
      EXPECT_TRUE(c.ok()) << c.error.message;
    }
    for (const auto& s : p.status()) EXPECT_GE(s.dispatched, 1u) << s.address;
  }
  const bool both = std::find(system.begin(), system.end(), "::1") != system.end() &&
                    std::find(system.begin(), system.end(), "127.0.0.1") != system.end();
  if (!both) {
    std::cout << "[ INFO     ] localhost resolves here to " << system.size()
              << " address(es), not to both 127.0.0.1 and ::1: the two-address part runs on a "
                 "resolver that answers both\n";
    pc.resolver = [](const std::string& host, std::vector<std::string>& out, std::string&) {
      EXPECT_EQ(host, "localhost");
      out = {"::1", "127.0.0.1"};
      return true;
    };
  }
  pool::Pool p(pc, rt);
  const auto st = p.status();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].address, "127.0.0.1");
  EXPECT_EQ(st[1].address, "::1");
  EXPECT_EQ(st[1].url, "http://localhost:" + std::to_string(port));
  for (int i = 0; i < 4; ++i) {
    const Completion c = p.generate(chat(4));
    EXPECT_TRUE(c.ok()) << c.error.message;
  }
  for (const auto& s : p.status()) EXPECT_EQ(s.dispatched, 2u) << s.address;
}

// Addresses joining and leaving the answer: streams already on an address that left finish
// there; new requests go to the addresses in the answer; an address that comes back is used
// again; a failed or empty answer leaves the endpoints as they were.
TEST(PoolDns, AddressesJoinAndLeaveWithoutFailingRequestsInFlight) {
  if (!have_ipv6_loopback()) GTEST_SKIP() << "this machine has no IPv6 loopback (::1)";
  const int port = free_loopback_port();
  ServerProcess server(dual_stack(port));
  ASSERT_TRUE(server.ok()) << server.error();
  std::mutex mu;
  std::vector<std::string> answer = {"127.0.0.1"};
  bool fail = false;
  std::atomic<int> lookups{0};
  Runtime rt(2);
  pool::PoolConfig pc;
  pc.name = "service";
  pc.endpoints = {endpoint("http://backend.internal:" + std::to_string(port), 4)};
  pc.endpoints[0].expand = "dns";
  pc.endpoints[0].resolve_interval_ms = 100;
  pc.resolver = [&](const std::string& host, std::vector<std::string>& out, std::string& error) {
    EXPECT_EQ(host, "backend.internal");
    lookups.fetch_add(1);
    std::lock_guard lock(mu);
    if (fail) {
      error = "no answer";
      return false;
    }
    out = answer;
    return true;
  };
  pool::Pool p(pc, rt);
  auto only = [&](const std::string& address) {
    return eventually(
        [&] {
          const auto st = addresses_now(p);
          return st.size() == 1 && st[0].address == address;
        },
        5s);
  };
  ASSERT_TRUE(only("127.0.0.1"));

  // Two long streams on 127.0.0.1; then the answer moves to ::1.
  std::atomic<int> tokens{0};
  std::vector<std::shared_ptr<RequestHandle>> streams;
  for (int i = 0; i < 2; ++i) {
    streams.push_back(
        p.start(chat(120), [&](const TokenEvent&) { return tokens.fetch_add(1), true; }, {}));
  }
  ASSERT_TRUE(eventually([&] { return tokens.load() >= 4; }, 10s));
  {
    std::lock_guard lock(mu);
    answer = {"::1"};
  }
  ASSERT_TRUE(only("::1"));
  for (int i = 0; i < 2; ++i) {
    const Completion c = p.generate(chat(4));
    EXPECT_TRUE(c.ok()) << c.error.message;
  }
  EXPECT_EQ(p.status()[0].dispatched, 2u);
  for (auto& h : streams) {
    const Completion c = h->wait();
    EXPECT_TRUE(c.ok()) << c.error.message;  // finished on the address that left
    EXPECT_GT(c.figures.tokens_out.value_or(0), 4);
  }

  // 127.0.0.1 comes back (the same endpoint as before, as new); then the answers fail, and
  // then come back empty: the endpoints stay.
  {
    std::lock_guard lock(mu);
    answer = {"127.0.0.1", "::1"};
  }
  ASSERT_TRUE(eventually([&] { return addresses_now(p).size() == 2; }, 5s));
  {
    std::lock_guard lock(mu);
    fail = true;
  }
  int before = lookups.load();
  ASSERT_TRUE(eventually([&] { return lookups.load() >= before + 2; }, 5s));
  EXPECT_EQ(p.status().size(), 2u);
  {
    std::lock_guard lock(mu);
    fail = false;
    answer.clear();
  }
  before = lookups.load();
  ASSERT_TRUE(eventually([&] { return lookups.load() >= before + 2; }, 5s));
  EXPECT_EQ(p.status().size(), 2u);
  for (int i = 0; i < 4; ++i) {
    const Completion c = p.generate(chat(4));
    EXPECT_TRUE(c.ok()) << c.error.message;
  }
}

TEST(PoolDns, SettingsAreChecked) {
  std::vector<pool::PoolConfig> pools;
  std::string error;
  const std::string head = "[[pool]]\nname = \"a\"\n[[pool.endpoint]]\nurl = \"http://h:1\"\n";
  ASSERT_TRUE(pool::parse_pools(head + "expand = \"dns\"\nresolve_interval_ms = 250\n", "p.toml",
                                pools, error))
      << error;
  EXPECT_EQ(pools[0].endpoints[0].expand, "dns");
  EXPECT_EQ(pools[0].endpoints[0].resolve_interval_ms, 250);
  EXPECT_FALSE(pool::parse_pools(head + "expand = \"srv\"\n", "p.toml", pools, error));
  EXPECT_NE(error.find("p.toml:5"), std::string::npos) << error;
  EXPECT_NE(error.find("unknown expand 'srv'"), std::string::npos) << error;
  EXPECT_FALSE(pool::parse_pools(head + "resolve_interval_ms = 10\n", "p.toml", pools, error));
  EXPECT_NE(error.find("resolve_interval_ms"), std::string::npos) << error;
  // A name that does not resolve is an error when the pool is made.
  Runtime rt;
  pool::PoolConfig pc;
  pc.name = "nowhere";
  pc.endpoints = {endpoint("http://no-such-host.invalid:8080", 0)};
  pc.endpoints[0].expand = "dns";
  try {
    pool::Pool p(pc, rt);
    ADD_FAILURE() << "a pool on a name that does not resolve was made";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-host.invalid"), std::string::npos) << e.what();
  }
}

// The Engine: agents as coroutines over pools, on each executor. The same greedy workload gives
// the same outputs whichever executor runs it.
#include "engine/loop_affinity.hpp"
#include "support/test_support.hpp"

#include <chimera/backends/server_process.hpp>
#include <chimera/engine/engine.hpp>

#include <gtest/gtest.h>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using namespace chimera;

namespace {

const ExecutorKind kExecutors[] = {ExecutorKind::single, ExecutorKind::shared,
                                   ExecutorKind::per_core, ExecutorKind::thread_per_agent};

pool::PoolConfig one_endpoint_pool(const std::string& name, const std::string& url,
                                   BackendKind kind, int limit) {
  pool::PoolConfig pc;
  pc.name = name;
  pool::PoolEndpoint e;
  e.config.url = url;
  e.config.kind = kind;
  if (kind == BackendKind::llama) {
    e.config.llama.parallel = 4;
    e.config.llama.ctx_per_seq = 512;
    e.config.llama.threads = 1;
  }
  e.max_concurrency = limit;
  pc.endpoints = {e};
  return pc;
}

// Each agent asks two questions in turn; the outputs by (agent, turn).
std::map<std::pair<int, int>, std::string> greedy_workload(Engine& engine, int agents) {
  std::mutex mu;
  std::map<std::pair<int, int>, std::string> out;
  const AgentRun run = engine.run(agents, [&](Agent& a) -> Task<void> {
    for (int turn = 0; turn < 2; ++turn) {
      Request r;
      r.kind = RequestKind::completion;
      r.prompt = "Agent " + std::to_string(a.id()) + " turn " + std::to_string(turn) + ":";
      r.options.num_predict = 12;
      r.options.temperature = 0.0;
      r.options.seed = 7;
      const Completion c = co_await a.generate("default", r);
      if (!c.ok()) throw std::runtime_error(c.error.message);
      std::lock_guard lock(mu);
      out[{a.id(), turn}] = c.text;
    }
  });
  EXPECT_EQ(run.failed, 0) << (run.errors.empty() ? "" : run.errors.front());
  return out;
}

}  // namespace

TEST(Executors, ParseNames) {
  EXPECT_EQ(parse_executor("single"), ExecutorKind::single);
  EXPECT_EQ(parse_executor("per_core"), ExecutorKind::per_core);
  EXPECT_EQ(parse_executor("thread-per-agent"), ExecutorKind::thread_per_agent);
  EXPECT_FALSE(parse_executor("fibers"));
}

TEST(Engine, SameOutputsOnEveryExecutorInProcess) {
  const std::string model = test::tiny_model().string();
  std::map<std::pair<int, int>, std::string> reference;
  for (ExecutorKind e : kExecutors) {
    Engine engine({.pools = {one_endpoint_pool("default", model, BackendKind::llama, 0)},
                   .executor = e,
                   .threads = 2});
    auto out = greedy_workload(engine, 12);
    ASSERT_EQ(out.size(), 24u) << to_string(e);
    if (reference.empty()) {
      reference = out;
      continue;
    }
    EXPECT_EQ(out, reference) << "executor " << to_string(e);
  }
}

TEST(Engine, SameOutputsOnEveryExecutorOverHttp) {
  // One slot: the server decodes one sequence at a time, so its output cannot depend on which
  // requests share a batch, and every executor must see exactly the same text.
  ServerOptions so;
  so.model = test::tiny_model().string();
  so.parallel = 1;
  so.threads = 1;
  so.extra = {"--no-warmup", "--cache-ram", "0"};
  ServerProcess server(so);
  ASSERT_TRUE(server.ok()) << server.error();
  std::map<std::pair<int, int>, std::string> reference;
  for (ExecutorKind e : kExecutors) {
    Engine engine({.pools = {one_endpoint_pool("default", server.url(), BackendKind::openai, 1)},
                   .executor = e,
                   .threads = 2});
    auto out = greedy_workload(engine, 8);
    ASSERT_EQ(out.size(), 16u) << to_string(e);
    if (reference.empty()) {
      reference = out;
      continue;
    }
    EXPECT_EQ(out, reference) << "executor " << to_string(e);
  }
  // Loops that poll before they sleep run the same work.
  for (ExecutorKind e : {ExecutorKind::single, ExecutorKind::shared}) {
    Engine engine({.pools = {one_endpoint_pool("default", server.url(), BackendKind::openai, 1)},
                   .executor = e,
                   .threads = 2,
                   .busy_poll_us = 50});
    EXPECT_EQ(greedy_workload(engine, 8), reference) << "executor " << to_string(e);
  }
}

namespace {
Task<int> add_later(Agent& a, int x) {
  const int y = co_await a.blocking([x] { return x + 1; });
  co_return y * 2;
}
Task<void> throws_later(Agent& a) {
  co_await a.blocking([] { return 0; });
  throw std::runtime_error("step failed on purpose");
}
}  // namespace

TEST(Engine, TasksNestBlockingStepsAndErrorsReachTheRun) {
  for (ExecutorKind e : kExecutors) {
    Engine engine({.executor = e, .threads = 2});
    std::atomic<int> sum{0};
    const AgentRun ok = engine.run(
        50, [&](Agent& a) -> Task<void> { sum.fetch_add(co_await add_later(a, a.id())); });
    EXPECT_EQ(ok.failed, 0) << to_string(e);
    EXPECT_EQ(sum.load(), 2 * (49 * 50 / 2 + 50)) << to_string(e);

    const AgentRun bad = engine.run(3, [&](Agent& a) -> Task<void> { co_await throws_later(a); });
    EXPECT_EQ(bad.failed, 3) << to_string(e);
    ASSERT_FALSE(bad.errors.empty());
    EXPECT_NE(bad.errors.front().find("on purpose"), std::string::npos);
  }
}

TEST(Engine, BlockingStepsRunSideBySideUpToTheThreadCount) {
  // The blocking pool starts its threads as steps arrive: four steps that each wait for all four
  // to have started must still find four threads. (The wait's limit only ends a broken run.)
  Engine engine({.executor = ExecutorKind::single, .blocking_threads = 4});
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  std::atomic<int> met{0};
  const AgentRun r = engine.run(4, [&](Agent& a) -> Task<void> {
    const bool all = co_await a.blocking([&] {
      std::unique_lock lock(mu);
      ++arrived;
      cv.notify_all();
      return cv.wait_for(lock, std::chrono::seconds(60), [&] { return arrived == 4; });
    });
    if (all) met.fetch_add(1);
  });
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(met.load(), 4);
  // Later steps reuse the threads that are idle again.
  std::atomic<int> sum{0};
  engine.run(8, [&](Agent& a) -> Task<void> { sum.fetch_add(co_await add_later(a, a.id())); });
  EXPECT_EQ(sum.load(), 2 * (7 * 8 / 2 + 8));
}

TEST(Engine, UnknownPoolNamesThePools) {
  Engine engine(
      {.pools = {one_endpoint_pool("collector", "http://127.0.0.1:9", BackendKind::openai, 0)}});
  Completion c;
  const AgentRun r = engine.run(1, [&c](Agent& a) -> Task<void> {
    Request request;  // named: GCC 12 frees a braced temporary inside co_await twice
    c = co_await a.generate("nope", request);
  });
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(c.error.kind, ErrorKind::bad_request);
  EXPECT_NE(c.error.message.find("no pool named 'nope' (pools: collector)"), std::string::npos)
      << c.error.message;
}

TEST(Engine, PerCoreAgentsStayOnTheirLoop) {
  Engine engine({.executor = ExecutorKind::per_core, .threads = 2});
  std::mutex mu;
  std::map<int, std::set<std::thread::id>> threads_of_lane;
  engine.run(20, [&](Agent& a) -> Task<void> {
    for (int i = 0; i < 3; ++i) {
      {
        std::lock_guard lock(mu);
        threads_of_lane[a.lane()].insert(std::this_thread::get_id());
      }
      co_await a.blocking([] { return 0; });
    }
  });
  ASSERT_EQ(threads_of_lane.size(), 2u);
  for (const auto& [lane, ids] : threads_of_lane) EXPECT_EQ(ids.size(), 1u) << "lane " << lane;
}

TEST(Engine, PerCoreLoopsArePinnedAmongTheCpusTheProcessMayUse) {
  // A process limited to some CPUs (taskset, a container's cpuset) keeps its loops there: loop
  // i is pinned to the i-th CPU of its set, not to CPU i of the machine.
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(all), &all), 0);
  const std::vector<int> cpus = detail::allowed_cpus();
  if (cpus.size() < 2) GTEST_SKIP() << "this process may use one CPU only";
  const int last = cpus.back();
  ASSERT_TRUE(detail::hold_thread_on(last));
  struct Restore {
    cpu_set_t set;
    ~Restore() { pthread_setaffinity_np(pthread_self(), sizeof(set), &set); }
  } restore{all};
  std::mutex mu;
  std::set<int> seen;  // the one CPU each agent's loop may use, or -1
  {
    Engine engine({.executor = ExecutorKind::per_core, .threads = 2});
    engine.run(8, [&](Agent& a) -> Task<void> {
      co_await a.sleep_until(0);  // on the loop, after its pinning task
      const std::vector<int> mine = detail::allowed_cpus();
      std::lock_guard lock(mu);
      seen.insert(mine.size() == 1 ? mine.front() : -1);
    });
  }
  EXPECT_EQ(seen, std::set<int>{last}) << "a loop was pinned outside the process's CPU";
}

TEST(Engine, ALoopsAgentsAllStartBeforeAnyOfThemResumes) {
  // The agents of a run start together: none gets its first step (a request sent, its reply
  // awaited) in while the loop is still starting the others, which would give it a head start
  // the rest pay for in the run's figures.
  for (const ExecutorKind executor : {ExecutorKind::single, ExecutorKind::per_core}) {
    SCOPED_TRACE(to_string(executor));
    Engine engine({.executor = executor, .threads = 2});
    constexpr int kAgents = 5000;
    std::mutex mu;
    std::map<int, std::vector<std::pair<bool, int>>> events_of_lane;  // (resumed, agent)
    const AgentRun run = engine.run(kAgents, [&](Agent& a) -> Task<void> {
      {
        std::lock_guard lock(mu);
        events_of_lane[a.lane()].emplace_back(false, a.id());
      }
      co_await a.sleep_until(0);  // long past: the loop resumes it as soon as it can
      std::lock_guard lock(mu);
      events_of_lane[a.lane()].emplace_back(true, a.id());
    });
    EXPECT_EQ(run.failed, 0);
    int events = 0;
    for (const auto& [lane, ev] : events_of_lane) {
      const auto first_resume = std::find_if(ev.begin(), ev.end(), [](auto e) { return e.first; });
      const auto starts =
          static_cast<int>(std::count_if(ev.begin(), ev.end(), [](auto e) { return !e.first; }));
      EXPECT_EQ(std::distance(ev.begin(), first_resume), starts)
          << "lane " << lane << ": agent " << first_resume->second
          << " resumed before every agent of its loop had started";
      events += static_cast<int>(ev.size());
    }
    EXPECT_EQ(events, 2 * kAgents);
  }
}

TEST(Engine, ABurstOfResumesLetsTheLoopLookAtItsEventsInBetween) {
  // Many agents resumed at once (their calls completed together) run a few at a time on a loop
  // with one thread, and the loop handles what became ready meanwhile between them: the reply
  // to a request an early agent sent is not left waiting until every other agent has run.
  Engine engine({.executor = ExecutorKind::single});
  constexpr int kAgents = 200;
  std::vector<int> order;    // agent ids as they resume from generate(); -1: the first woke again
  bool first_taken = false;  // every agent runs on the loop's one thread
  const int64_t together = now_ns() + 200'000'000;
  const AgentRun run = engine.run(kAgents, [&](Agent& a) -> Task<void> {
    co_await a.sleep_until(together);  // every agent wakes in the same turn of the loop
    Request request;                   // named: GCC 12 frees a braced temporary twice
    (void)co_await a.generate("no such pool", request);  // completes at once: a burst
    order.push_back(a.id());
    // The burst's first agent (timers due together fire in no set order) sleeps once more.
    if (first_taken) co_return;
    first_taken = true;
    co_await a.sleep_until(0);  // long past: due at the loop's next look at its timers
    order.push_back(-1);
  });
  EXPECT_EQ(run.failed, 0);
  ASSERT_EQ(order.size(), std::size_t{kAgents + 1});
  const auto woke = std::find(order.begin(), order.end(), -1);
  EXPECT_LT(std::distance(order.begin(), woke), kAgents / 2)
      << "the burst's first agent's timer was handled only after the other agents had run";
}

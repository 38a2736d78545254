// The single executor's loop thread: held on one CPU while agents run, moved when it waits there
// for long, and given its CPUs back when the run ends (src/engine/loop_affinity.hpp).
#include "engine/loop_affinity.hpp"

#include <chimera/core/request.hpp>
#include <chimera/engine/engine.hpp>

#include <gtest/gtest.h>

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace chimera;
using chimera::detail::AffinityPolicy;
using chimera::detail::allowed_cpus;

namespace {

// The CPUs thread `tid` of this process may use, as the kernel lists them ("0-1").
std::string allowed_list(long tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Cpus_allowed_list:", 0) == 0)
      return line.substr(line.find_first_not_of(" \t", 18));
  }
  return {};
}

long this_tid() {
  return static_cast<long>(::syscall(SYS_gettid));
}

// Why the loop cannot be held here, or empty when it can.
std::string why_not_held() {
  if (allowed_cpus().size() < 2) return "this process may use one CPU only";
  if (::access("/proc/thread-self/schedstat", R_OK) != 0) {
    return "the kernel does not report a thread's run delay (/proc/thread-self/schedstat)";
  }
  return {};
}

// The calling thread's time waiting for a CPU so far, ns (the second field of its schedstat).
int64_t waited_ns() {
  std::ifstream in("/proc/thread-self/schedstat");
  int64_t ran = 0;
  int64_t waited = 0;
  in >> ran >> waited;
  return waited;
}

// Whether the calling thread waited for a CPU more than the policy's crowded share since
// (t0, waited0): a loop that never gets a calm period is rightly never held.
bool crowded_since(std::chrono::steady_clock::time_point t0, int64_t waited0) {
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  return static_cast<double>(waited_ns() - waited0) >
         AffinityPolicy::kCrowdedShare * static_cast<double>(elapsed);
}

void burn_cpu_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

}  // namespace

TEST(AffinityPolicy, HoldsABusyCalmThreadAndReleasesItWhenCrowded) {
  using Action = AffinityPolicy::Action;
  AffinityPolicy p;
  const int64_t period = AffinityPolicy::kPeriodNs;
  const auto busy = static_cast<int64_t>(period * 0.5);
  const auto idle = static_cast<int64_t>(period * 0.01);
  const auto crowded = static_cast<int64_t>(period * 0.5);
  const auto calm = static_cast<int64_t>(period * 0.05);
  EXPECT_EQ(p.look(idle, calm, period), Action::none) << "an idle thread is left alone";
  EXPECT_EQ(p.look(busy, crowded, period), Action::none) << "nor one the kernel has not placed";
  EXPECT_EQ(p.look(busy, calm, period), Action::hold);
  EXPECT_EQ(p.look(busy, crowded, period), Action::none);
  EXPECT_EQ(p.look(busy, calm, period), Action::none) << "a calm period starts the count again";
  EXPECT_EQ(p.look(busy, crowded, period), Action::none);
  EXPECT_EQ(p.look(idle, crowded, period), Action::release) << "two crowded periods in a row";
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(p.look(busy, crowded, period), Action::none) << "every CPU busy: left released";
  }
  EXPECT_EQ(p.look(busy, calm, period), Action::hold) << "busy and calm again, where it is now";
  EXPECT_EQ(p.look(busy, crowded, 0), Action::none) << "a period of no length says nothing";
}

// Agents that keep the loop busy (each burns `slice` of CPU, then lets the others run) until
// `done` says so or `limit` has passed.
Task<void> keep_busy(Agent& a, std::chrono::milliseconds limit, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline && !done()) {
    burn_cpu_for(std::chrono::milliseconds(2));
    co_await a.sleep_until(0);  // back through the loop, where the periodic look runs
  }
}

TEST(LoopAffinity, ABusyLoopIsHeldOnOneCpuAndFreedAfterTheRun) {
  if (const auto why = why_not_held(); !why.empty()) GTEST_SKIP() << why;
  const std::string before = allowed_list(this_tid());
  Engine engine({.executor = ExecutorKind::single});
  std::size_t cpus = 0;
  long loop_tid = 0;
  bool crowded = false;
  const AgentRun run = engine.run(1, [&](Agent& a) -> Task<void> {
    loop_tid = this_tid();
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t waited0 = waited_ns();
    co_await keep_busy(a, std::chrono::seconds(5), [&] {
      cpus = allowed_cpus().size();
      return cpus == 1;
    });
    crowded = crowded_since(t0, waited0);
  });
  EXPECT_EQ(run.failed, 0);
  if (cpus != 1 && crowded) GTEST_SKIP() << "the machine was too busy: the loop was never calm";
  EXPECT_EQ(cpus, 1u) << "a busy loop's thread could still use more than one CPU after 5 s";
  ASSERT_NE(loop_tid, 0);
  EXPECT_EQ(allowed_list(loop_tid), before) << "the loop's thread did not get its CPUs back";
}

TEST(LoopAffinity, AnIdleLoopIsLeftToTheKernel) {
  if (const auto why = why_not_held(); !why.empty()) GTEST_SKIP() << why;
  const std::size_t allowed = allowed_cpus().size();
  Engine engine({.executor = ExecutorKind::single});
  std::set<std::size_t> seen;
  engine.run(2, [&](Agent& a) -> Task<void> {
    for (int i = 0; i < 6; ++i) {  // 300 ms, about six of the periodic looks
      seen.insert(allowed_cpus().size());
      co_await a.sleep_until(now_ns() + 50'000'000);
    }
  });
  EXPECT_EQ(seen, std::set<std::size_t>{allowed});
}

TEST(LoopAffinity, WithoutPinningABusyLoopKeepsItsCpus) {
  if (const auto why = why_not_held(); !why.empty()) GTEST_SKIP() << why;
  const std::size_t allowed = allowed_cpus().size();
  Engine engine({.executor = ExecutorKind::single, .pin_threads = false});
  std::set<std::size_t> seen;
  engine.run(1, [&](Agent& a) -> Task<void> {
    co_await keep_busy(a, std::chrono::milliseconds(300), [&] {
      seen.insert(allowed_cpus().size());
      return false;
    });
  });
  EXPECT_EQ(seen, std::set<std::size_t>{allowed});
}

TEST(LoopAffinity, AHeldLoopThatWaitsForItsCpuIsReleased) {
  // A thread that never sleeps, pinned to the CPU the loop is held on, takes half of it; the
  // loop, busy itself, waits for it about half of the time and is released within a few periods
  // (then held again wherever the kernel puts it, once it is calm there; where every CPU is busy,
  // as on a loaded machine, it stays released).
  if (const auto why = why_not_held(); !why.empty()) GTEST_SKIP() << why;
  Engine engine({.executor = ExecutorKind::single});
  std::atomic<bool> stop_spinner{false};
  std::thread spinner;
  int first = -1;
  int later = -1;  // the CPU it is held on, -1 when released
  bool crowded = false;
  const AgentRun run = engine.run(1, [&](Agent& a) -> Task<void> {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t waited0 = waited_ns();
    co_await keep_busy(a, std::chrono::seconds(5), [&] {  // until it is held
      const auto cpus = allowed_cpus();
      if (cpus.size() == 1) first = cpus.front();
      return first >= 0;
    });
    crowded = crowded_since(t0, waited0);
    if (first < 0) co_return;
    spinner = std::thread([&stop_spinner, cpu = first] {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
      while (!stop_spinner.load(std::memory_order_relaxed)) {
      }
    });
    co_await keep_busy(a, std::chrono::seconds(5), [&] {
      const auto cpus = allowed_cpus();
      later = cpus.size() == 1 ? cpus.front() : -1;  // -1: released
      return later != first;
    });
  });
  stop_spinner = true;
  if (spinner.joinable()) spinner.join();
  EXPECT_EQ(run.failed, 0);
  if (first < 0 && crowded) GTEST_SKIP() << "the machine was too busy: the loop was never calm";
  ASSERT_GE(first, 0) << "the busy loop was never held";
  EXPECT_NE(later, first) << "the loop stayed held on CPU " << first
                          << " with a thread that never sleeps pinned there";
}

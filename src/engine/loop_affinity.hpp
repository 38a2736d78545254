// Keeps the one thread of a single-threaded event loop on one CPU while agents run (private).
//
// Why: on a machine with a few cores, the loop thread and a local server's thread were often on
// the same CPU. A socket wake-up invites the woken thread onto the waker's CPU, so the kernel kept
// putting the loop next to the server that had just written to it, and the loop's reads waited
// for the server's writes: at 256 agents, unpinned, a quarter to half of the chunks came more than
// 1 ms late in the runs where the two shared a CPU, a few percent in the others
// (docs/performance.md, "Unpinned at 256 agents"). With the loop thread held on one CPU, the
// kernel moves the server instead. A thread held on a CPU another thread keeps busy (a server
// pinned there, a second client pinned the same way) waits for it; so the loop watches how long it
// waits for its CPU (the kernel's run delay of the thread) and moves to another CPU it may use
// when it waited for too long.
#pragma once

#include <chimera/core/runtime.hpp>

#include <cstdint>
#include <memory>
#include <vector>

namespace chimera::detail {

// What a look every kPeriodNs decides from the thread's time on its CPU and its time waiting
// for it in that period.
struct AffinityPolicy {
  static constexpr int64_t kPeriodNs = 50'000'000;
  // A thread busy this share of a period is held: one that runs a few streams is idle nearly
  // all of the time, and where the kernel puts it matters little.
  static constexpr double kBusyShare = 0.1;
  // A held thread waiting this share of a period, kCrowdedPeriods periods in a row, moves. A
  // thread that shares its CPU with one that never sleeps waits about half of the time.
  static constexpr double kCrowdedShare = 0.2;
  static constexpr int kCrowdedPeriods = 2;
  // Where every CPU is busy a move does not help: each move that is not followed by a calm
  // period doubles the crowded periods the next one takes, up to 2^kMaxBackoff times as many.
  static constexpr int kMaxBackoff = 5;

  enum class Action { none, hold, move };
  bool holding = false;
  int crowded = 0;  // periods in a row over kCrowdedShare, while holding
  int backoff = 0;  // moves since the last calm period, at most kMaxBackoff
  Action look(int64_t ran_ns, int64_t waited_ns, int64_t period_ns);
};

// The CPU after `cpu` among `allowed` (ascending), wrapping around; `cpu` when it is the only one.
int next_cpu(const std::vector<int>& allowed, int cpu);

// Watches the calling loop thread from start() to stop(), holds it on its CPU once it is busy,
// and moves it when it waits there. Both run on the loop's thread. Nothing happens where the
// thread may use one CPU only, or where the kernel does not report the thread's times
// (/proc/thread-self/schedstat).
class LoopAffinity {
 public:
  explicit LoopAffinity(Runtime& runtime);
  ~LoopAffinity();
  LoopAffinity(const LoopAffinity&) = delete;
  LoopAffinity& operator=(const LoopAffinity&) = delete;

  void start();  // starts the periodic look
  void stop();   // stops looking; the thread may use the CPUs it could before start()

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace chimera::detail

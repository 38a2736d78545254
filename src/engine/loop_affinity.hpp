// Keeps the one thread of a single-threaded event loop on its CPU while it is busy (private).
//
// Why: on a machine with a few cores, the loop thread and a local server's thread were often on
// the same CPU. A socket wake-up invites the woken thread onto the waker's CPU, so the kernel kept
// putting the loop next to the server that had just written to it, and the loop's reads waited
// for the server's writes: at 256 agents, unpinned, a quarter to half of the chunks came more than
// 1 ms late in the runs where the two shared a CPU, a few percent in the others
// (docs/performance.md, "Unpinned at 256 agents"). With the loop thread held on its CPU, the
// kernel moves the server instead. A thread held on a CPU another thread keeps busy (a server
// pinned there, a second client pinned the same way) waits for it; so the loop watches how long it
// waits for its CPU (the kernel's run delay of the thread) and gives itself back to the kernel
// when it waited for too long.
#pragma once

#include <chimera/core/runtime.hpp>

#include <cstdint>
#include <memory>
#include <vector>

namespace chimera::detail {

// The CPUs the calling thread may run on, ascending: those its process was started with
// (`taskset`, a container's cpuset), not every CPU of the machine. All of the machine's when the
// mask cannot be read.
std::vector<int> allowed_cpus();

// Limits the calling thread to `cpu`; false when the kernel refused.
bool hold_thread_on(int cpu);

// What a look every kPeriodNs decides from the thread's time on its CPU and its time waiting
// for it in that period.
struct AffinityPolicy {
  static constexpr int64_t kPeriodNs = 50'000'000;
  // A thread busy this share of a period, and not crowded, is held where it is: one that runs a
  // few streams is idle nearly all of the time, and where the kernel puts it matters little.
  static constexpr double kBusyShare = 0.1;
  // Waiting for its CPU this share of a period is crowded; a held thread crowded kCrowdedPeriods
  // periods in a row is released to the kernel, which moves it where it can run (a thread that
  // shares its CPU with one that never sleeps waits about half of the time). Where every CPU is
  // busy it stays released, as if it had never been held, until a period finds it busy and calm.
  static constexpr double kCrowdedShare = 0.2;
  static constexpr int kCrowdedPeriods = 2;

  enum class Action { none, hold, release };
  bool holding = false;
  int crowded = 0;  // periods in a row over kCrowdedShare, while holding
  Action look(int64_t ran_ns, int64_t waited_ns, int64_t period_ns);
};

// Watches the calling loop thread from start() to stop(), holds it on its CPU while it is busy,
// and releases it when it waits there. Both run on the loop's thread. Nothing happens where the
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

#include "engine/loop_affinity.hpp"

#include "core/runtime_impl.hpp"

#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

namespace chimera::detail {

std::vector<int> allowed_cpus() {
  std::vector<int> out;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) out.push_back(cpu);
    }
  }
  if (out.empty()) {
    for (int cpu = 0; cpu < static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
         ++cpu) {
      out.push_back(cpu);
    }
  }
  return out;
}

bool hold_thread_on(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0;
}

AffinityPolicy::Action AffinityPolicy::look(int64_t ran_ns, int64_t waited_ns, int64_t period_ns) {
  if (period_ns <= 0) return Action::none;
  const auto period = static_cast<double>(period_ns);
  const bool busy = static_cast<double>(ran_ns) >= kBusyShare * period;
  const bool calm = static_cast<double>(waited_ns) <= kCrowdedShare * period;
  if (!holding) {
    if (!busy || !calm) return Action::none;
    holding = true;
    crowded = 0;
    return Action::hold;
  }
  crowded = calm ? 0 : crowded + 1;
  if (crowded < kCrowdedPeriods) return Action::none;
  holding = false;
  crowded = 0;
  return Action::release;
}

namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The calling thread's time on its CPU and time waiting for it so far (ns): the first two
// fields of its schedstat.
bool read_times(int fd, int64_t& ran, int64_t& waited) {
  char buf[128];
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* end = nullptr;
  const unsigned long long r = std::strtoull(buf, &end, 10);
  if (end == buf) return false;
  const char* second = end;
  const unsigned long long w = std::strtoull(second, &end, 10);
  if (end == second) return false;
  ran = static_cast<int64_t>(r);
  waited = static_cast<int64_t>(w);
  return true;
}

}  // namespace

struct LoopAffinity::State : std::enable_shared_from_this<LoopAffinity::State> {
  explicit State(Runtime& r) : rt(&r) {}
  ~State() {
    if (fd >= 0) ::close(fd);
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  void start() {
    if (running) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) != 0) return;
    if (CPU_COUNT(&set) < 2) return;  // held already, by whoever started the process
    fd = ::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;  // without its times the thread could not tell when to hold or release
    if (!read_times(fd, last_ran, last_waited)) {
      ::close(fd);
      fd = -1;
      return;
    }
    saved = set;
    held = -1;
    running = true;
    last_look = steady_ns();
    policy = {};
    ++generation;
    schedule();
  }

  void stop() {
    if (!running) return;
    running = false;
    if (auto t = timer.lock()) t->cancel();
    if (held >= 0) pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
    held = -1;
    ::close(fd);
    fd = -1;
  }

  void schedule() {
    auto t = std::make_shared<boost::asio::steady_timer>(RuntimeAccess::io(*rt));
    t->expires_after(std::chrono::nanoseconds(AffinityPolicy::kPeriodNs));
    timer = t;
    t->async_wait(
        [self = shared_from_this(), t, gen = generation](const boost::system::error_code& ec) {
          if (ec || !self->running || gen != self->generation) return;
          self->look();
        });
  }

  void look() {
    int64_t ran = 0;
    int64_t waited = 0;
    if (!read_times(fd, ran, waited)) {
      stop();  // the file stopped answering: give the thread its CPUs back
      return;
    }
    const int64_t now = steady_ns();
    const auto action = policy.look(ran - last_ran, waited - last_waited, now - last_look);
    last_ran = ran;
    last_waited = waited;
    last_look = now;
    if (action == AffinityPolicy::Action::hold) {
      const int cpu = sched_getcpu();
      if (cpu >= 0 && hold_thread_on(cpu)) held = cpu;
    } else if (action == AffinityPolicy::Action::release && held >= 0) {
      pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
      held = -1;
    }
    schedule();
  }

  Runtime* rt;
  bool running = false;
  cpu_set_t saved{};        // its affinity before start()
  int held = -1;            // the CPU it is held on; -1: not held
  int fd = -1;              // its /proc/thread-self/schedstat
  int64_t last_ran = 0;     // its time on a CPU at the last look, ns
  int64_t last_waited = 0;  // its time waiting for one at the last look, ns
  int64_t last_look = 0;    // steady clock of the last look, ns
  AffinityPolicy policy;
  uint64_t generation = 0;  // a look scheduled before a stop() and start() is dropped
  std::weak_ptr<boost::asio::steady_timer> timer;
};

LoopAffinity::LoopAffinity(Runtime& runtime) : state_(std::make_shared<State>(runtime)) {}

LoopAffinity::~LoopAffinity() = default;

void LoopAffinity::start() {
  state_->start();
}
void LoopAffinity::stop() {
  state_->stop();
}

}  // namespace chimera::detail

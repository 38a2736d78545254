// The threads that run I/O for backends.
//
// A Runtime owns an event loop and the threads that drive it. Every HTTP backend made on it runs
// its requests there as coroutines; many concurrent requests share these threads. One thread is
// the default and is what a latency-sensitive single process wants; more threads help when
// thousands of streams are in flight.
//
// Thread safety: all members are thread-safe. Destroying a Runtime stops its threads after the
// work queued on it has been abandoned: destroy backends first.
#pragma once

#include <functional>
#include <memory>

namespace chimera {

struct RuntimeAccess;

class Runtime {
 public:
  // `busy_poll_us`: after the last event it handled, each thread keeps polling the event loop for
  // up to this many microseconds before it sleeps. An event that comes meanwhile (the next
  // token of a burst of streams) is handled without a wake-up, which on a virtual machine takes
  // tens of microseconds; the price is up to that much CPU after every lull. 0 (the default):
  // a thread sleeps as soon as it has nothing to do. Measured in docs/performance.md.
  explicit Runtime(int threads = 1, int busy_poll_us = 0);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  int threads() const;
  int busy_poll_us() const;

  // Runs `fn` on one of this runtime's threads, soon. Thread-safe.
  void post(std::function<void()> fn);

  // A process-wide runtime with one thread, started on first use.
  static Runtime& shared();

 private:
  // The event loop stays private to the library: src/core/runtime_impl.hpp gives the modules
  // that run I/O on it (backends, engine) access through RuntimeAccess.
  struct Impl;
  friend struct RuntimeAccess;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chimera

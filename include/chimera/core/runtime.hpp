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
  explicit Runtime(int threads = 1);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  int threads() const;

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

// The Engine as Python holds it: the C++ Engine behind a lock that close() takes exclusively,
// so that closing while another thread starts a request or runs a scenario is safe.
#pragma once

#include "bridge.hpp"

#include <shared_mutex>

namespace chimera::python {

class NativeEngine {
 public:
  // GIL held on entry; released while the engine starts (loading a GGUF model can take a while).
  NativeEngine(const py::handle& pools, const std::string& executor, int threads, bool pin_threads,
               int blocking_threads);
  ~NativeEngine();

  // Destroys the C++ engine: requests in flight are cancelled and waited for. GIL released.
  void close();
  bool closed() const;

  // Runs fn(engine) under the shared lock, GIL released. Throws Failure when closed.
  template <class F>
  auto with_engine(F&& fn) {
    py::gil_scoped_release nogil;
    std::shared_lock lock(mu_);
    if (!engine_) throw Failure("the engine is closed");
    return fn(*engine_);
  }

  // The same without touching the GIL: on a thread that does not hold it, or for a short,
  // non-blocking call made with it held.
  template <class F>
  auto use_engine(F&& fn) {
    std::shared_lock lock(mu_);
    if (!engine_) throw Failure("the engine is closed");
    return fn(*engine_);
  }

  // Runs of Engine::run (run_multi) are not reentrant: one at a time.
  std::mutex& run_mutex() { return run_mu_; }

 private:
  mutable std::shared_mutex mu_;
  std::unique_ptr<Engine> engine_;
  std::mutex run_mu_;
};

pool::Pool& find_pool(Engine& e, const std::string& name);

}  // namespace chimera::python

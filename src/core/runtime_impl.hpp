// The event loop behind chimera::Runtime (private: Asio stays out of public headers).
#pragma once

#include <chimera/core/runtime.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <thread>
#include <vector>

namespace chimera {

struct Runtime::Impl {
  Impl(int threads, int busy_poll_us);
  ~Impl();

  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
  std::vector<std::thread> threads;
  int busy_poll_us = 0;

 private:
  void run_polling();  // one thread's loop when busy_poll_us > 0
};

// The library's way into a Runtime's event loop (the public header keeps it private).
struct RuntimeAccess {
  static Runtime::Impl& impl(Runtime& runtime) { return *runtime.impl_; }
  static boost::asio::io_context& io(Runtime& runtime) { return runtime.impl_->io; }
};

// True on a thread that is running some Runtime's event loop (blocking there would deadlock).
bool on_runtime_thread();

}  // namespace chimera

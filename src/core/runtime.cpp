#include "core/runtime_impl.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>

namespace chimera {

namespace {
thread_local bool t_on_runtime_thread = false;
}

bool on_runtime_thread() {
  return t_on_runtime_thread;
}

Runtime::Impl::Impl(int n, int poll_us)
    : io(std::max(1, n)), work(io.get_executor()), busy_poll_us(std::max(0, poll_us)) {
  n = std::max(1, n);
  threads.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([this] {
      t_on_runtime_thread = true;
      if (busy_poll_us > 0) {
        run_polling();
      } else {
        io.run();
      }
    });
  }
}

// Handles what is ready; when nothing is, polls (a non-blocking look at the sockets and the
// queue) until busy_poll_us pass without an event, and only then sleeps until the next one.
void Runtime::Impl::run_polling() {
  using Clock = std::chrono::steady_clock;
  const auto window = std::chrono::microseconds(busy_poll_us);
  while (!io.stopped()) {
    if (io.poll() > 0) continue;
    const auto until = Clock::now() + window;
    bool handled = false;
    while (!handled && !io.stopped() && Clock::now() < until) handled = io.poll() > 0;
    if (!handled) io.run_one();
  }
}

Runtime::Impl::~Impl() {
  work.reset();
  io.stop();
  for (auto& t : threads) t.join();
}

Runtime::Runtime(int threads, int busy_poll_us)
    : impl_(std::make_unique<Impl>(threads, busy_poll_us)) {}
Runtime::~Runtime() = default;

void Runtime::post(std::function<void()> fn) {
  boost::asio::post(impl_->io, std::move(fn));
}

int Runtime::threads() const {
  return static_cast<int>(impl_->threads.size());
}

int Runtime::busy_poll_us() const {
  return impl_->busy_poll_us;
}

Runtime& Runtime::shared() {
  // Never destroyed: backends made on it may live in other statics.
  static Runtime* rt = new Runtime(1);  // NOLINT(cppcoreguidelines-owning-memory)
  return *rt;
}

}  // namespace chimera

#include "core/runtime_impl.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>

namespace chimera {

namespace {
thread_local bool t_on_runtime_thread = false;
}

bool on_runtime_thread() {
  return t_on_runtime_thread;
}

Runtime::Impl::Impl(int n) : io(std::max(1, n)), work(io.get_executor()) {
  n = std::max(1, n);
  threads.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([this] {
      t_on_runtime_thread = true;
      io.run();
    });
  }
}

Runtime::Impl::~Impl() {
  work.reset();
  io.stop();
  for (auto& t : threads) t.join();
}

Runtime::Runtime(int threads) : impl_(std::make_unique<Impl>(threads)) {}
Runtime::~Runtime() = default;

void Runtime::post(std::function<void()> fn) {
  boost::asio::post(impl_->io, std::move(fn));
}

int Runtime::threads() const {
  return static_cast<int>(impl_->threads.size());
}

Runtime& Runtime::shared() {
  // Never destroyed: backends made on it may live in other statics.
  static Runtime* rt = new Runtime(1);  // NOLINT(cppcoreguidelines-owning-memory)
  return *rt;
}

}  // namespace chimera

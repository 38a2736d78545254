#include "bridge.hpp"

#include <algorithm>

namespace chimera::python {

void LagStats::add(int64_t lag_ns, bool keep) {
  sum_ns += lag_ns;
  max_ns = std::max(max_ns, lag_ns);
  if (lag_ns > 1'000'000) ++stalls;
  if (keep) all_ns.push_back(lag_ns);
}

bool CallState::on_token(const TokenEvent& ev) {
  std::unique_lock lock(mu);
  if (ev.server_sent_ns != 0) lags.add(ev.t_ns - ev.server_sent_ns, record_lags);
  if (mode == CallMode::result) return true;
  if (chunks.size() >= max_buffer && !chunks.empty() && ev.tool_call == nullptr &&
      !chunks.back().tool_call) {
    // The consumer is this far behind: merge instead of growing the buffer. The consumer has
    // unread chunks, so it is already awake or will look again; no wake-up is needed.
    ChunkData& last = chunks.back();
    last.text.append(ev.text);
    last.thinking.append(ev.thinking);
    ++last.pieces;
    ++merged;
    return true;
  }
  ChunkData& c = chunks.emplace_back();
  c.text.assign(ev.text);
  c.thinking.assign(ev.thinking);
  if (ev.tool_call != nullptr) c.tool_call = *ev.tool_call;
  c.t_ns = ev.t_ns;
  c.server_sent_ns = ev.server_sent_ns;
  c.index = ev.index;
  wake_locked(lock);
  return true;
}

void CallState::on_done(Completion c) {
  std::unique_lock lock(mu);
  completion = std::move(c);
  done = true;
  wake_locked(lock);
}

void CallState::wake_locked(std::unique_lock<std::mutex>& lock) {
  cv.notify_all();
  if (bridge && waiting && !queued) {
    queued = true;
    auto b = bridge;
    lock.unlock();
    b->post(shared_from_this());
  }
}

bool CallState::park(py::object future) {
  {
    std::lock_guard lock(mu);
    const bool ready = done || (mode == CallMode::stream && !chunks.empty());
    if (ready) return false;
    waiting = true;
  }
  // Only the loop's thread (this one, holding the GIL) reads `waiter`: drain cannot run before
  // this returns.
  waiter = std::move(future);
  return true;
}

std::deque<ChunkData> CallState::take(bool& finished) {
  std::lock_guard lock(mu);
  std::deque<ChunkData> out;
  out.swap(chunks);
  finished = done && out.empty();
  return out;
}

void CallState::cancel() {
  std::shared_ptr<RequestHandle> h;
  {
    std::lock_guard lock(mu);
    if (done) return;
    h = handle;
  }
  if (h) h->cancel();
}

BridgeCore::BridgeCore(py::object loop, bool direct) : direct_(direct), loop_(std::move(loop)) {
  call_soon_threadsafe_ = loop_.attr("call_soon_threadsafe");
}

void BridgeCore::start() {
  std::weak_ptr<BridgeCore> weak = weak_from_this();
  drain_fn_ = py::cpp_function([weak] {
    if (auto self = weak.lock()) self->drain();
  });
  if (!direct_) thread_ = std::thread([this] { notifier(); });
}

BridgeCore::~BridgeCore() {
  // close() has run with the GIL (PyBridge's destructor) and joined the notifier; nothing
  // Python is left to release.
  if (thread_.joinable()) thread_.detach();
}

void BridgeCore::close() {
  if (closed_) return;
  closed_ = true;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    // The notifier may be waiting for the GIL: let it have it, see closed_, and end.
    py::gil_scoped_release nogil;
    thread_.join();
  }
  drain_fn_ = py::object();
  call_soon_threadsafe_ = py::object();
  loop_ = py::object();
  std::vector<std::shared_ptr<CallState>> dropped;
  {
    std::lock_guard lock(mu_);
    dropped.swap(ready_);
  }
}

void BridgeCore::post(std::shared_ptr<CallState> state) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    ready_.push_back(std::move(state));
    if (scheduled_) return;
    scheduled_ = true;
    if (!direct_) {
      signal_ = true;
      cv_.notify_one();
      return;
    }
  }
  wake();
}

void BridgeCore::notifier() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || signal_; });
    if (stop_) return;
    signal_ = false;
    lock.unlock();
    wake();
    lock.lock();
  }
}

void BridgeCore::wake() {
  const int64_t t0 = now_ns();
  py::gil_scoped_acquire gil;
  gil_wait_ns_.fetch_add(now_ns() - t0, std::memory_order_relaxed);
  if (closed_) return;
  try {
    call_soon_threadsafe_(drain_fn_);
    ++wakeups_;
  } catch (py::error_already_set&) {
    // The loop is closed: nobody is awaiting these any more.
    std::vector<std::shared_ptr<CallState>> dropped;
    std::lock_guard lock(mu_);
    dropped.swap(ready_);
    scheduled_ = false;
  }
}

void BridgeCore::drain() {
  std::vector<std::shared_ptr<CallState>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(ready_);
    scheduled_ = false;
  }
  for (auto& st : batch) {
    bool done = false;
    {
      std::lock_guard lock(st->mu);
      st->queued = false;
      st->waiting = false;
      done = st->done;
    }
    py::object w = std::move(st->waiter);
    st->waiter = py::object();
    if (!w) continue;
    try {
      if (st->mode == CallMode::result && done) {
        w.attr("set_result")(make_completion(*st));
      } else {
        w.attr("set_result")(py::none());
      }
    } catch (py::error_already_set&) {
      // The awaiting task was cancelled (the future is done): nothing to deliver.
    }
  }
}

PyCall::~PyCall() {
  if (!state) return;
  state->waiter = py::object();
  state->result_obj = py::object();
  bool done = false;
  {
    std::lock_guard lock(state->mu);
    done = state->done;
  }
  if (!done) {
    py::gil_scoped_release nogil;
    state->cancel();
  }
}

}  // namespace chimera::python

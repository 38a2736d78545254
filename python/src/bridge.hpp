// From the engine's I/O threads to Python: per-request state and the asyncio bridge.
//
// A CallState is what a request's callbacks write into (chunks, the Completion, lag figures),
// under its own mutex, without the GIL. Python reads it on its own thread.
//
// Waking Python:
// - synchronous callers wait on the state's condition variable (GIL released);
// - asyncio callers park an asyncio.Future in the state (`waiter`) and await it. When the state
//   changes while a waiter is parked, the state is put on its loop's Bridge ready list. The
//   first state put on an empty list wakes the Bridge's notifier thread, which takes the GIL
//   once to call loop.call_soon_threadsafe(drain); drain runs on the loop's thread and resolves
//   the waiters of every state on the list at once. So with many streams in flight one wake-up
//   of the loop serves them all, nothing polls, no thread waits per request, and the engine's
//   I/O threads never wait for the GIL: while Python code holds it (the event loop busy, or a
//   CPU-bound thread), the I/O threads keep reading every other stream. (`direct` bridges make
//   the I/O thread take the GIL itself, saving one thread hand-off per wake-up at the price of
//   stalling its streams while the GIL is busy; kept for measurement.)
//
// Back-pressure: a stream's buffer holds at most `max_buffer` chunks; when the consumer falls
// that far behind, later pieces are merged into the last buffered chunk (its `pieces` counts
// them; a chunk with a tool call is never merged), so memory stays bounded by the response
// itself while the I/O thread never waits for Python.
#pragma once

#include "native.hpp"

#include <chimera/backends/backend.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

namespace chimera::python {

class BridgeCore;

// One streamed piece, as handed to Python (chimeraforge.Chunk).
struct ChunkData {
  std::string text;
  std::string thinking;
  std::optional<ToolCall> tool_call;
  int64_t t_ns = 0;            // when the engine handed it over (steady clock)
  int64_t server_sent_ns = 0;  // the server's send time, when it writes one (synthetic server)
  int index = 0;               // 0 for the first token-bearing chunk
  int pieces = 1;              // chunks merged into this one (a consumer that fell behind)
};

enum class CallMode { result, stream };

struct CallState : std::enable_shared_from_this<CallState> {
  CallMode mode = CallMode::result;
  std::size_t max_buffer = 1024;
  bool record_lags = false;
  std::string backend;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<ChunkData> chunks;
  bool done = false;
  std::optional<Completion> completion;
  LagStats lags;
  int64_t merged = 0;  // pieces merged into earlier chunks (back-pressure)

  // asyncio
  std::shared_ptr<BridgeCore> bridge;  // null for synchronous calls
  bool waiting = false;                // a waiter is parked (under mu)
  bool queued = false;                 // on the bridge's ready list (under mu)
  py::object waiter;                   // the parked asyncio.Future; GIL only
  py::object result_obj;               // the Completion handed to Python, made once; GIL only

  std::shared_ptr<RequestHandle> handle;

  // The engine's callbacks (I/O threads, no GIL).
  bool on_token(const TokenEvent& ev);
  void on_done(Completion c);

  // Parks `future` unless something is ready; false when the caller should look again now.
  bool park(py::object future);
  // The chunks buffered so far (moved out); `finished` tells whether the request has ended
  // and nothing is left.
  std::deque<ChunkData> take(bool& finished);
  void cancel();

 private:
  void wake_locked(std::unique_lock<std::mutex>& lock);
};

// The wake-up path of one asyncio event loop.
class BridgeCore : public std::enable_shared_from_this<BridgeCore> {
 public:
  // GIL held. Call start() once made (it needs shared_from_this).
  BridgeCore(py::object loop, bool direct);
  void start();
  ~BridgeCore();
  // GIL held: forgets the loop (no more wake-ups). Idempotent.
  void close();
  const py::object& loop() const { return loop_; }
  // Any thread, no GIL: `state` has news for its waiter.
  void post(std::shared_ptr<CallState> state);
  // The loop's thread, GIL held: resolves every parked waiter that has news.
  void drain();
  int64_t wakeups() const { return wakeups_; }
  // Time spent waiting for the GIL to wake the loop, ns (diagnostics).
  int64_t gil_wait_ns() const { return gil_wait_ns_.load(std::memory_order_relaxed); }
  bool direct() const { return direct_; }

 private:
  void wake();      // takes the GIL and calls loop.call_soon_threadsafe(drain)
  void notifier();  // the notifier thread's body

  const bool direct_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<CallState>> ready_;
  bool scheduled_ = false;  // a drain is due (asked for or coming)
  bool signal_ = false;     // the notifier has a wake-up to make
  bool stop_ = false;
  std::thread thread_;
  // GIL only:
  bool closed_ = false;
  py::object loop_;
  py::object call_soon_threadsafe_;
  py::object drain_fn_;
  int64_t wakeups_ = 0;
  std::atomic<int64_t> gil_wait_ns_{0};
};

// The Python object wrapping a CallState: cancels an unfinished request when dropped.
struct PyCall {
  std::shared_ptr<CallState> state;
  ~PyCall();
};

// The chimeraforge.Completion of a finished call, made on first use. GIL held; st.done.
py::object make_completion(CallState& st);

}  // namespace chimera::python

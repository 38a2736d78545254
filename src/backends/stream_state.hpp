// The caller's side of one request, shared by every backend (private header): the callbacks,
// cancellation, waiting, and the per-token figures of METRICS.md.
//
// Cancellation contract (see backend.hpp): when cancel() returns, on_token will not run again;
// on_done runs exactly once, whatever happened. A backend reports tokens with deliver(), ends the
// request with complete(), and learns of a cancellation through wake() and cancel_requested().
#pragma once

#include <chimera/backends/backend.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace chimera::backends {

class StreamState : public RequestHandle {
 public:
  StreamState(TokenCallback on_token, DoneCallback on_done)
      : on_token_(std::move(on_token)), on_done_(std::move(on_done)) {}

  void cancel() final;
  Completion wait() final;

  // Appends a token-bearing chunk's text and hands it to on_token, recording the figures of
  // METRICS.md (ttft_client, itl, chunks) at the handover, as the caller sees them. Returns false
  // when the request is cancelled (by cancel(), by the callback returning false, or by the callback
  // throwing: see callback_error()). A tool call chunk also names the call's index and the
  // arguments text it added (TokenEvent).
  bool deliver(std::string_view text, std::string_view thinking, const ToolCall* tool_call,
               int tool_call_index = -1, std::string_view arguments_delta = {});
  // The server's own send time of the chunk delivered next (0: none); see TokenEvent.
  void set_server_sent(int64_t ns) { server_sent_ns_ = ns; }
  // The relayed events of the token delivered next (TokenEvent::relayed; Request::relay): a view
  // that must stay valid until deliver() returns, which copies it when it holds the token.
  void set_relayed(std::string_view events) { relayed_ = events; }
  // A burst: the tokens decoded from what one read from the server brought. Within it each
  // token goes to on_token once the next has been decoded, so that its TokenEvent can say that
  // another follows (TokenEvent::more); end_burst() hands over the last (more = false, or true
  // with end_follows: the caller completes the request next, without waiting for more). Its
  // figures are taken when it is handed over (METRICS.md: as the caller sees it). Returns false
  // when the request is cancelled. Outside a burst every token goes to on_token at once. A
  // backend that begins a burst ends it before its last figures and complete(), whatever
  // happened (run_request does, its decoder's exceptions included).
  void begin_burst() { in_burst_ = true; }
  bool end_burst(bool end_follows = false);
  // Runs on_done once with the completion, then releases wait().
  void complete();

  bool cancel_requested() const { return cancel_requested_.load(); }
  const std::string& callback_error() const { return callback_error_; }
  Completion& completion() { return completion_; }

 protected:
  // Tells the backend's loop to look at cancel_requested(); called by cancel() from any thread.
  virtual void wake() = 0;

 private:
  Completion completion_;
  TokenCallback on_token_;
  DoneCallback on_done_;
  std::atomic<bool> cancel_requested_{false};
  std::mutex cb_mu_;                          // held while on_token runs
  std::atomic<std::thread::id> cb_thread_{};  // the thread running on_token, if any
  // Records a token's handover now (ttft_client or an itl gap, chunks); returns the time.
  int64_t record_handover(int64_t server_sent_ns);
  // Hands `ev` to on_token (under cb_mu_), with its time and index, and records its figures;
  // false when the request is cancelled (then nothing is recorded).
  bool emit(TokenEvent ev);
  // Hands over the held token of a burst, if any.
  bool release_held(bool more);

  // The token a burst holds back: where its text and thinking lie in completion_ (appended
  // there when it was delivered), and the server's send time of its record.
  struct Held {
    std::size_t text_at = 0, text_size = 0, thinking_at = 0, thinking_size = 0;
    int64_t server_sent_ns = 0;
  };
  std::optional<Held> held_;
  std::string held_relayed_;  // the held token's relayed events (a copy)
  std::string_view relayed_;  // set_relayed's, for the next deliver()
  bool in_burst_ = false;
  int index_ = 0;
  int64_t server_sent_ns_ = 0;
  std::string callback_error_;

  std::mutex done_mu_;
  std::condition_variable done_cv_;
  bool finished_ = false;
  Completion result_;
};

}  // namespace chimera::backends

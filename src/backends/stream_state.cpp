#include "backends/stream_state.hpp"

#include <fmt/format.h>

#include <utility>

namespace chimera::backends {

void StreamState::cancel() {
  if (cancel_requested_.exchange(true)) return;
  // A token callback running on another thread finishes before cancel() returns, so none runs
  // after it. From inside the callback itself, waiting would deadlock.
  if (cb_thread_.load() != std::this_thread::get_id()) {
    std::lock_guard lock(cb_mu_);
  }
  wake();
}

Completion StreamState::wait() {
  std::unique_lock lock(done_mu_);
  done_cv_.wait(lock, [this] { return finished_; });
  return result_;
}

int64_t StreamState::record_handover(int64_t server_sent_ns) {
  const int64_t t = now_ns();
  Figures& f = completion_.figures;
  if (!f.t_first_token_ns) {
    f.t_first_token_ns = t;
    f.ttft_client_ns = t - f.t_send_ns;
    if (server_sent_ns != 0) f.first_byte_server_ns = server_sent_ns;
  } else {
    f.itl_ns.push_back(t - *f.t_last_token_ns);
  }
  f.t_last_token_ns = t;
  f.chunks = f.chunks.value_or(0) + 1;
  return t;
}

bool StreamState::deliver(std::string_view text, std::string_view thinking,
                          const ToolCall* tool_call, int tool_call_index,
                          std::string_view arguments_delta) {
  const std::string_view relayed = std::exchange(relayed_, {});
  if (cancel_requested_.load()) return false;
  const std::size_t text_at = completion_.text.size();
  const std::size_t thinking_at = completion_.thinking.size();
  completion_.text.append(text);
  completion_.thinking.append(thinking);
  if (!on_token_) {
    record_handover(server_sent_ns_);
    return true;
  }

  // In a burst a token waits for the next; a tool call's chunk (which points into the
  // completion's calls, moved by the next call) goes at once, after the one held.
  if (in_burst_ && tool_call == nullptr) {
    const bool go_on = release_held(/*more=*/true);
    held_ = Held{text_at, text.size(), thinking_at, thinking.size(), server_sent_ns_};
    held_relayed_.assign(relayed);
    return go_on;
  }
  if (!release_held(/*more=*/true)) return false;
  TokenEvent ev{text, thinking, tool_call, 0, 0, server_sent_ns_, tool_call_index, arguments_delta};
  ev.relayed = relayed;
  return emit(ev);
}

bool StreamState::end_burst(bool end_follows) {
  in_burst_ = false;
  return release_held(/*more=*/end_follows);
}

bool StreamState::release_held(bool more) {
  if (!held_) return !cancel_requested_.load();
  const Held h = *held_;
  held_.reset();
  // A token held when the request was cancelled is not handed over, nor counted (its text,
  // which arrived, stays in the completion's).
  if (cancel_requested_.load()) return false;
  TokenEvent ev;
  ev.text = std::string_view(completion_.text).substr(h.text_at, h.text_size);
  ev.thinking = std::string_view(completion_.thinking).substr(h.thinking_at, h.thinking_size);
  ev.server_sent_ns = h.server_sent_ns;
  ev.more = more;
  ev.relayed = held_relayed_;
  return emit(ev);
}

bool StreamState::emit(TokenEvent ev) {
  std::lock_guard lock(cb_mu_);
  if (cancel_requested_.load()) return false;
  // Counted and timed only once it is sure to be handed over.
  ev.t_ns = record_handover(ev.server_sent_ns);
  ev.index = index_++;
  cb_thread_.store(std::this_thread::get_id());
  bool go_on = false;
  try {
    go_on = on_token_(ev);
  } catch (const std::exception& e) {
    callback_error_ = fmt::format("the token callback threw: {}", e.what());
  } catch (...) {
    callback_error_ = "the token callback threw";
  }
  cb_thread_.store(std::thread::id{});
  if (!go_on) cancel_requested_.store(true);
  return go_on;
}

void StreamState::complete() {
  // One copy for on_done, and the completion itself moved to what wait() returns: nothing reads
  // completion_ once the request is complete.
  Completion copy = completion_;
  {
    std::lock_guard lock(done_mu_);
    result_ = std::move(completion_);
  }
  if (on_done_) {
    try {
      on_done_(std::move(copy));
    } catch (...) {
      // Callbacks must not throw; one that does must not take the backend's thread down.
    }
  }
  {
    std::lock_guard lock(done_mu_);
    finished_ = true;
  }
  done_cv_.notify_all();
}

}  // namespace chimera::backends

// What each actor's prompt holds: see prompt_window.hpp.
#include "banter/prompt_window.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace chimera::banter::detail {

std::vector<ChatMessage> PromptWindow::messages(const Actor& a, std::size_t from,
                                                std::size_t upto) const {
  std::vector<ChatMessage> out;
  out.push_back({"system", a.system});
  const int self = a.director ? -2 : static_cast<int>(&a - actors_.data());
  for (std::size_t i = from; i < upto && i < transcript_.size(); ++i) {
    const LineRecord& e = transcript_[i];
    if (e.character == self && !e.raw.empty()) {
      out.push_back({"assistant", e.raw});
    } else if (!e.text.empty()) {
      out.push_back(
          {"user", fmt::format("{}: {}{}", e.speaker, e.text, e.interrupted ? " —" : "")});
    }
  }
  // A server reads a list that ends with an assistant message as the start of that message to
  // continue, and refuses one that ends with two (llama-server: "Cannot have 2 or more
  // assistant messages at the end of the list"). When the actor spoke last (a character alone,
  // or one that speaks twice in a row), a stage direction asks for its next line. Only at the
  // end, so the prefix the server has cached stays the same from one line to the next.
  // In-process lanes format the prompt themselves and open a new assistant turn as it is.
  if (!placement_.lane(a.lane).inproc && out.size() > 1 && out.back().role == "assistant") {
    out.push_back({"user", fmt::format("({} goes on.)", a.name)});
  }
  return out;
}

int PromptWindow::count_tokens(const Actor& a, std::size_t from, std::size_t upto) const {
  const auto msgs = messages(a, from, upto);
  const Lane& l = placement_.lane(a.lane);
  if (l.text) return l.text->count_tokens(l.text->format(msgs, true));
  // No local vocabulary (a remote server): a conservative estimate, 3 bytes per token.
  int n = 8;
  for (const auto& m : msgs) n += static_cast<int>(m.content.size() / 3) + 6;
  return n;
}

int PromptWindow::line_tokens(const Actor& a, std::size_t i) {
  const Lane& l = placement_.lane(a.lane);
  if (line_tokens_.size() <= std::size_t(a.lane)) line_tokens_.resize(std::size_t(a.lane) + 1);
  auto& counts = line_tokens_[std::size_t(a.lane)];
  const LineRecord& e = transcript_[i];
  const bool own = !a.director && e.character == static_cast<int>(&a - actors_.data());
  if (counts.size() < transcript_.size()) counts.resize(transcript_.size(), {-1, -1});
  int& n = counts[i][own ? 1 : 0];
  if (n < 0) {
    const std::string text =
        own ? e.raw : fmt::format("{}: {}{}", e.speaker, e.text, e.interrupted ? " —" : "");
    // The text alone (without its BOS), plus what the chat template puts around a message.
    n = (l.text ? l.text->count_tokens(text) - 1 : static_cast<int>(text.size() / 3)) +
        l.wrap[own ? 1 : 0];
  }
  return n;
}

bool PromptWindow::fit(Actor& a, bool prefill, std::size_t upto, std::string& error) {
  const int num_ctx = *a.options.num_ctx;
  const int predict = *a.options.num_predict;
  int limit = num_ctx - predict - 8;
  // A prefill prepares the actor's next line: leave room for one more line on top, so that the
  // line itself need not move the window (which would prefill everything again).
  if (prefill) limit -= predict + 24;
  if (a.window_start > upto) a.window_start = upto;
  // Sized line by line (each line is tokenized once), so that a line's request does not wait
  // for its whole prompt to be tokenized; counted exactly only near the limit.
  constexpr int kMargin = 24;
  int estimate = a.sys_tokens;
  for (std::size_t i = a.window_start; i < upto; ++i) estimate += line_tokens(a, i);
  if (estimate <= limit - kMargin) return true;
  if (estimate <= limit + kMargin && count_tokens(a, a.window_start, upto) <= limit) return true;
  // Move the window: keep the newest lines that fill half of what the persona leaves, so the
  // window moves again only after several lines.
  const int target = a.sys_tokens + std::max(0, limit - a.sys_tokens) / 2;
  std::size_t start = upto;
  for (int sum = a.sys_tokens; start > a.window_start;) {
    sum += line_tokens(a, start - 1);
    if (sum > target) break;
    --start;
  }
  while (start < upto && count_tokens(a, start, upto) > limit) ++start;
  a.window_start = start;
  const int n = count_tokens(a, start, upto);
  if (n > num_ctx - predict - 8) {
    error = fmt::format(
        "{}'s prompt needs {} tokens even without earlier lines; num_ctx {} "
        "minus num_predict {} is too small",
        a.name, n, num_ctx, predict);
    return false;
  }
  return true;
}

}  // namespace chimera::banter::detail

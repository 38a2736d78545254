#include "backends/text_stream.hpp"

#include <chimera/core/text.hpp>

#include <algorithm>

namespace chimera::backends {

using text::utf8_sequence_length;
using text::utf8_valid_second;

std::string Utf8Assembler::push(std::string_view piece) {
  pending_.append(piece);
  std::string out;
  std::size_t i = 0;
  const std::size_t n = pending_.size();
  while (i < n) {
    const auto lead = static_cast<unsigned char>(pending_[i]);
    const int len = static_cast<int>(utf8_sequence_length(lead));
    if (len == 0) {  // a stray continuation byte or an invalid lead byte
      ++dropped_;
      ++i;
      continue;
    }
    if (len == 1) {
      out.push_back(static_cast<char>(lead));
      ++i;
      continue;
    }
    // Check the continuation bytes that have arrived.
    int have = 1;
    bool bad = false;
    while (have < len && i + static_cast<std::size_t>(have) < n) {
      const auto b = static_cast<unsigned char>(pending_[i + static_cast<std::size_t>(have)]);
      const bool ok = have == 1 ? utf8_valid_second(lead, b) : (b & 0xC0) == 0x80;
      if (!ok) {
        bad = true;
        break;
      }
      ++have;
    }
    if (bad) {  // this lead byte can never complete: drop it, look again from the next byte
      ++dropped_;
      ++i;
      continue;
    }
    if (have < len) break;  // incomplete: wait for the next piece
    out.append(pending_, i, static_cast<std::size_t>(len));
    i += static_cast<std::size_t>(len);
  }
  pending_.erase(0, i);
  return out;
}

void Utf8Assembler::finish() {
  dropped_ += static_cast<int64_t>(pending_.size());
  pending_.clear();
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return {};
  if (stops_.empty()) return std::string(text);
  held_.append(text);
  std::size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a prefix of some stop string.
  std::size_t keep = 0;
  for (const auto& s : stops_) {
    for (std::size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k) {
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(held_);
  return stopped_ ? std::string() : out;
}

}  // namespace chimera::backends

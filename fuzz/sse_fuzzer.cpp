// The Server-Sent Events framer (OpenAI-compatible streams): the same events and the same
// outcome whether the body arrives at once, a byte at a time, or in pieces of any size (a
// "\r\n" split between two reads included).
//
// Input: [limit byte][split byte][body...].
#include "support/splits.hpp"

#include <chimera/http/framing.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using chimera::http::FrameStatus;
using chimera::http::SseEvent;
using chimera::http::SseFramer;

struct Event {
  std::string event, data, id;
  bool operator==(const Event&) const = default;
};

struct Outcome {
  std::vector<Event> events;
  FrameStatus status = FrameStatus::ok;
  bool unterminated = false;
  bool operator==(const Outcome&) const = default;
  std::size_t size() const { return events.size(); }
};

Outcome frame(const std::vector<std::string_view>& pieces, std::size_t limit) {
  SseFramer framer(limit);
  Outcome out;
  auto on_event = [&](const SseEvent& e) {
    if (e.data.size() > limit) {
      std::fprintf(stderr, "event data of %zu bytes over the limit %zu\n", e.data.size(), limit);
      std::abort();
    }
    out.events.push_back({std::string(e.event), std::string(e.data), std::string(e.id)});
    return true;
  };
  for (std::string_view piece : pieces) {
    out.status = framer.feed(piece, on_event);
    if (out.status != FrameStatus::ok) return out;
  }
  out.unterminated = framer.has_unterminated_event();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t limit = 1 + data[0] * 4;
  const std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  chimera::fuzz::check_split_invariance(body, data[1], "SSE",
                                        [&](const auto& pieces) { return frame(pieces, limit); });
  return 0;
}

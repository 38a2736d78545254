// The NDJSON framer (Ollama's streams): the same records and the same outcome whether the body
// arrives at once, a byte at a time, or in pieces of any size; no record over the limit is
// ever handed out.
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
using chimera::http::NdjsonFramer;

struct Outcome {
  std::vector<std::string> records;
  FrameStatus status = FrameStatus::ok;
  bool operator==(const Outcome&) const = default;
  std::size_t size() const { return records.size(); }
};

Outcome frame(const std::vector<std::string_view>& pieces, std::size_t limit) {
  NdjsonFramer framer(limit);
  Outcome out;
  auto on_record = [&](std::string_view record) {
    if (record.size() > limit || record.empty() || record.find('\n') != std::string_view::npos) {
      std::fprintf(stderr, "bad record of %zu bytes (limit %zu)\n", record.size(), limit);
      std::abort();
    }
    out.records.emplace_back(record);
    return true;
  };
  for (std::string_view piece : pieces) {
    out.status = framer.feed(piece, on_record);
    if (out.status != FrameStatus::ok) return out;
  }
  out.status = framer.finish(on_record);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t limit = 1 + data[0] * 4;
  const std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  chimera::fuzz::check_split_invariance(body, data[1], "NDJSON",
                                        [&](const auto& pieces) { return frame(pieces, limit); });
  return 0;
}

// Cutting a byte stream into pieces the way sockets do, for the framing targets: record
// framing must give the same records whatever the pieces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace chimera::fuzz {

// Pieces of 1 .. max_piece bytes whose sizes cycle with a step the seed chooses.
inline std::vector<std::string_view> cut(std::string_view s, std::uint8_t seed,
                                         std::size_t max_piece) {
  std::vector<std::string_view> pieces;
  std::size_t piece = 1 + seed % max_piece;
  const std::size_t step = 1 + (seed >> 4);
  while (!s.empty()) {
    const std::size_t n = piece < s.size() ? piece : s.size();
    pieces.push_back(s.substr(0, n));
    s.remove_prefix(n);
    piece = (piece + step) % max_piece + 1;
  }
  return pieces;
}

// Frames `body` whole, a byte at a time and in pieces the seed picks, and aborts unless the
// three outcomes are equal. `frame(pieces)` returns an outcome with operator== and a `size()`
// (records framed) for the message.
template <class Frame>
void check_split_invariance(std::string_view body, std::uint8_t seed, const char* what,
                            Frame frame) {
  const auto whole = frame(std::vector<std::string_view>{body});
  const auto bytes = frame(cut(body, 0, 1));
  const auto pieces = frame(cut(body, seed, 64));
  if (!(whole == bytes) || !(whole == pieces)) {
    std::fprintf(stderr, "%s framing depends on how the body is split: %zu/%zu/%zu records\n", what,
                 whole.size(), bytes.size(), pieces.size());
    std::abort();
  }
}

}  // namespace chimera::fuzz

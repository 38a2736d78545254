// Response bodies of a well-formed 200 response: the NDJSON (Ollama) and Server-Sent Events
// (OpenAI-compatible) decoders and each backend's record handling (tokens, thinking, tool
// calls, final statistics, errors inside the stream). The body goes out chunked, in pieces
// whose sizes the input chooses, so records and UTF-8 characters straddle chunk boundaries.
//
// Input: [shape byte][split byte][body...]. Shape as in support/backend_run.hpp.
#include "support/backend_run.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

std::string chunked_response(std::string_view body, bool ollama, std::uint8_t split) {
  std::string out = "HTTP/1.1 200 OK\r\nContent-Type: ";
  out += ollama ? "application/x-ndjson" : "text/event-stream";
  out += "\r\nTransfer-Encoding: chunked\r\n\r\n";
  // Piece sizes cycle through 1 .. split+1 bytes.
  std::size_t piece = 1;
  while (!body.empty()) {
    const std::size_t n = std::min(piece, body.size());
    char size_line[24];
    const int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
    out.append(size_line, static_cast<std::size_t>(len));
    out.append(body.substr(0, n));
    out += "\r\n";
    body.remove_prefix(n);
    piece = piece % (std::size_t{split} + 1) + 1;
  }
  out += "0\r\n\r\n";
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static auto* run = new chimera::fuzz::BackendRun;
  const auto shape = chimera::fuzz::shape_from(data[0]);
  const std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  run->run(shape, chunked_response(body, shape.kind == chimera::BackendKind::ollama, data[1]));
  return 0;
}

// Whole HTTP responses, byte for byte as a server could send them: status line, headers
// (Content-Length, Transfer-Encoding, Connection, Content-Type), chunked framing, bodies, 1xx
// interim responses, garbage. Each runs through the real client and one of the two HTTP
// backends; the first input byte picks the backend, chat or completion, streamed or not.
#include "support/backend_run.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static auto* run = new chimera::fuzz::BackendRun;
  run->run(chimera::fuzz::shape_from(data[0]),
           std::string(reinterpret_cast<const char*>(data) + 1, size - 1));
  return 0;
}

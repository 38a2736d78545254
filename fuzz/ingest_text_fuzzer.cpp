// Ingestion of plain text ("Key: 12.3 unit" lines, headings, binary and UTF-16 detection).
#include "support/ingest_one.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chimera::fuzz::ingest_one(data, size, chimera::ingest::FileType::text, "fuzz.txt");
  return 0;
}

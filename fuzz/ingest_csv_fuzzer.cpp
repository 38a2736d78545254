// Ingestion of CSV (RFC 4180: quotes, doubled quotes, quoted newlines, BOM, CRLF, unit rows, ragged
// rows).
#include "support/ingest_one.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chimera::fuzz::ingest_one(data, size, chimera::ingest::FileType::csv, "fuzz.csv");
  return 0;
}

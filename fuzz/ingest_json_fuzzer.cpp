// Ingestion of JSON of any shape (the SAX parser, depth limit, numeric leaves named from their
// keys, context from siblings).
#include "support/ingest_one.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chimera::fuzz::ingest_one(data, size, chimera::ingest::FileType::json, "fuzz.json");
  return 0;
}

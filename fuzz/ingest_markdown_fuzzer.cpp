// Ingestion of Markdown (cmark-gfm tables, headings as context, "Key: 12.3 unit" lines).
#include "support/ingest_one.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  chimera::fuzz::ingest_one(data, size, chimera::ingest::FileType::markdown, "fuzz.md");
  return 0;
}

// One in-memory file through an ingestion parser (the same parsers and limits as a folder
// walk), with the limits lowered so that the fuzzer reaches them, and the promises of
// ingest.hpp checked: nothing throws, every record and error points into the file.
#pragma once

#include <chimera/ingest/ingest.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace chimera::fuzz {

inline ingest::IngestResult ingest_one(const std::uint8_t* data, std::size_t size,
                                       ingest::FileType type, std::string_view name) {
  ingest::IngestOptions opts;
  opts.threads = 1;
  opts.max_line_bytes = 512;
  opts.max_json_depth = 16;
  const std::string_view content(reinterpret_cast<const char*>(data), size);
  ingest::IngestResult result = ingest::ingest_buffer(content, type, name, opts);
  for (const auto& r : result.records) {
    if (!std::isfinite(r.value) || r.line < 0 || r.context == nullptr) {
      std::fprintf(stderr, "bad record: value %g line %d\n", r.value, r.line);
      std::abort();
    }
  }
  for (const auto& e : result.errors) {
    if (e.reason.empty() || e.line < 0) {
      std::fprintf(stderr, "file error without a reason or with line %d\n", e.line);
      std::abort();
    }
  }
  return result;
}

}  // namespace chimera::fuzz

// The digest over whatever ingestion made of a file: it must stay within its token budget and
// be deterministic (the same result, the same text, byte for byte).
//
// Input: [type byte][budget byte][file...].
#include "support/ingest_one.hpp"

#include <chimera/ingest/digest.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  using chimera::ingest::FileType;
  static constexpr FileType kTypes[] = {FileType::csv, FileType::json, FileType::markdown,
                                        FileType::text};
  static constexpr const char* kNames[] = {"d.csv", "d.json", "d.md", "d.txt"};
  const int type = data[0] % 4;
  const auto result = chimera::fuzz::ingest_one(data + 2, size - 2, kTypes[type], kNames[type]);
  chimera::ingest::DigestOptions opts;
  opts.token_budget = 40 + std::size_t{data[1]} * 8;
  opts.top_n = 1 + data[0] / 64;
  const auto a = chimera::ingest::make_digest(result, opts);
  const auto b = chimera::ingest::make_digest(result, opts);
  if (a.estimated_tokens > opts.token_budget || a.text != b.text ||
      a.estimated_tokens != chimera::ingest::estimate_tokens(a.text)) {
    std::fprintf(stderr, "digest: %zu estimated tokens for a budget of %zu; deterministic: %d\n",
                 a.estimated_tokens, opts.token_budget, a.text == b.text);
    std::abort();
  }
  return 0;
}

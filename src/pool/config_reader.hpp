// The readers of documents that hold [[pool]] tables beside their own (private to the library):
// a scene file reads its pools from the document it has already parsed, and the C ABI's engine
// configuration ([engine] and [[pool]]) is read here, so that the C ABI only translates what
// the library read. Errors name the file (or the source's name), the line and the key.
#pragma once

#include <chimera/pool/pool.hpp>

#include <toml++/toml.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chimera::pool::detail {

// The [[pool]] tables of a parsed document; false with `error` set when there are none or one
// is wrong.
bool read_pools(const toml::table& root, const std::string& source, std::vector<PoolConfig>& out,
                std::string& error);

// The C ABI's engine configuration:
//   [engine]
//   model = "tiny.gguf"   # optional: the model of sessions and characters that name none
//   threads = 4           # optional: 0 (all cores) to max_threads
//   io_threads = 1        # optional: 1 to max_io_threads
//   [[pool]] ...          # optional, as in a pool file
// Any other table or key is an error naming the source, the line and the key.
struct EngineFileConfig {
  std::string model;
  std::optional<int> threads;
  std::optional<int> io_threads;
  std::vector<PoolConfig> pools;
};
bool parse_engine_config(std::string_view text, const std::string& source, int max_threads,
                         int max_io_threads, EngineFileConfig& out, std::string& error);

}  // namespace chimera::pool::detail

// Pool files (docs/pools.md): any text is either pools whose every figure is in range, or a
// message that names the file, the line and the key.
#include <chimera/pool/pool.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<chimera::pool::PoolConfig> pools;
  std::string error;
  if (!chimera::pool::parse_pools(text, "fuzz.toml", pools, error)) {
    if (error.find("fuzz.toml") == std::string::npos) {
      std::fprintf(stderr, "error does not name the file: %s\n", error.c_str());
      std::abort();
    }
    return 0;
  }
  for (const auto& p : pools) {
    if (p.hedge_after_ms < 0 || p.health_interval_ms < 0 || p.retries < -1) {
      std::fprintf(stderr, "pool '%s' accepted with hedge %lld, health %lld, retries %d\n",
                   p.name.c_str(), static_cast<long long>(p.hedge_after_ms),
                   static_cast<long long>(p.health_interval_ms), p.retries);
      std::abort();
    }
    for (const auto& e : p.endpoints) {
      if (e.max_concurrency < 0) {
        std::fprintf(stderr, "endpoint '%s' accepted with max_concurrency %d\n",
                     e.config.url.c_str(), e.max_concurrency);
        std::abort();
      }
    }
  }
  return 0;
}

// Pool files and PoolConfig: every integer range-checked in its own type, each bound named with
// the file and line; settings that would overflow (hedge_after_ms x 1,000,000) never reach the
// pool.
#include <chimera/core/runtime.hpp>
#include <chimera/pool/pool.hpp>

#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <string>

namespace {

using namespace chimera;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string pool_error(const std::string& pool_keys, const std::string& endpoint_keys = {}) {
  std::vector<pool::PoolConfig> pools;
  std::string error;
  const std::string text = "[[pool]]\n" + pool_keys +
                           "\n[[pool.endpoint]]\nurl = \"http://127.0.0.1:9\"\n" + endpoint_keys +
                           "\n";
  EXPECT_FALSE(pool::parse_pools(text, "p.toml", pools, error)) << text;
  return error;
}

TEST(PoolBounds, IntegersAreCheckedInTheirOwnType) {
  std::string e = pool_error("", "max_concurrency = 4294967297");  // used to become 1
  EXPECT_TRUE(contains(e, "4294967297")) << e;
  EXPECT_TRUE(contains(e, "p.toml:5")) << e;
  e = pool_error("retries = 4294967296");
  EXPECT_TRUE(contains(e, "4294967296")) << e;
  e = pool_error("retries = -5");
  EXPECT_TRUE(contains(e, "retries")) << e;
  e = pool_error("hedge_after_ms = -1");
  EXPECT_TRUE(contains(e, "hedge_after_ms")) << e;
  e = pool_error("hedge_after_ms = 9223372036854775807");  // x 1,000,000 overflowed
  EXPECT_TRUE(contains(e, "hedge_after_ms")) << e;
  e = pool_error("health_interval_ms = 9223372036854775807");
  EXPECT_TRUE(contains(e, "health_interval_ms")) << e;
  e = pool_error("health_interval_ms = -2000");
  EXPECT_TRUE(contains(e, "p.toml:2")) << e;
}

TEST(PoolBounds, APoolFileHoldsPoolsOnly) {
  const std::string path = ::testing::TempDir() + "pools-typo.toml";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("[[pool]]\n[[pool.endpoint]]\nurl = \"http://127.0.0.1:9\"\n[pols]\nx = 1\n", f);
    std::fclose(f);
  }
  std::vector<pool::PoolConfig> pools;
  std::string error;
  EXPECT_FALSE(pool::load_pools(path, pools, error));
  EXPECT_TRUE(contains(error, "unknown key 'pols'")) << error;
}

TEST(PoolBounds, ThePoolChecksConfigsMadeInCode) {
  Runtime rt;
  pool::PoolConfig pc;
  pc.endpoints.resize(2);
  pc.endpoints[0].config.url = "http://127.0.0.1:9";
  pc.endpoints[1].config.url = "http://127.0.0.1:10";
  pc.hedge_after_ms = std::numeric_limits<int64_t>::max() / 2;
  try {
    pool::Pool p(pc, rt);
    ADD_FAILURE() << "accepted hedge_after_ms " << pc.hedge_after_ms;
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "hedge_after_ms")) << e.what();
  }
  pc.hedge_after_ms = 0;
  pc.health_interval_ms = -1;
  EXPECT_THROW(pool::Pool(pc, rt), std::invalid_argument);
  pc.health_interval_ms = 2'000;
  pc.retries = -7;
  EXPECT_THROW(pool::Pool(pc, rt), std::invalid_argument);
  pc.retries = 1;
  pc.endpoints[1].config.url = "http://user:s3cret@127.0.0.1:0";
  try {
    pool::Pool p(pc, rt);
    ADD_FAILURE() << "accepted port 0";
  } catch (const std::invalid_argument& e) {
    EXPECT_FALSE(contains(e.what(), "s3cret")) << e.what();
    EXPECT_TRUE(contains(e.what(), "1 to 65535")) << e.what();
  }
}

}  // namespace

// The core module: the clock every figure is measured on, the names records use, and the
// runtime whose threads run every request.
#include <chimera/core/request.hpp>
#include <chimera/core/runtime.hpp>
#include <chimera/core/text.hpp>

#include <gtest/gtest.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace {

int64_t clock_monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// METRICS.md: every timestamp is CLOCK_MONOTONIC nanoseconds, so that a time written by the
// synthetic server or a peer process compares with one read here.
TEST(Clock, NowIsClockMonotonicNanoseconds) {
  const int64_t before = clock_monotonic_ns();
  const int64_t now = chimera::now_ns();
  const int64_t after = clock_monotonic_ns();
  EXPECT_LE(before, now);
  EXPECT_LE(now, after);
}

TEST(Clock, NeverGoesBack) {
  int64_t last = chimera::now_ns();
  for (int i = 0; i < 10'000; ++i) {
    const int64_t t = chimera::now_ns();
    ASSERT_GE(t, last);
    last = t;
  }
}

TEST(Names, AsRecordsSpellThem) {
  EXPECT_STREQ(chimera::to_string(chimera::FinishReason::stop), "stop");
  EXPECT_STREQ(chimera::to_string(chimera::FinishReason::length), "length");
  EXPECT_STREQ(chimera::to_string(chimera::FinishReason::tool_calls), "tool_calls");
  EXPECT_STREQ(chimera::to_string(chimera::FinishReason::cancelled), "cancelled");
  EXPECT_STREQ(chimera::to_string(chimera::ErrorKind::http_status), "http_status");
  EXPECT_STREQ(chimera::to_string(chimera::ErrorKind::truncated), "truncated");
  EXPECT_STREQ(chimera::to_string(chimera::ErrorKind::timeout), "timeout");
}

TEST(Text, Utf8PrefixNeverEndsInsideACharacter) {
  // One character of each length: a (1 byte), e-acute (2), the euro sign (3), a G clef (4).
  const std::string s =
      "a\xC3\xA9\xE2\x82\xAC\xF0\x9D\x84\x9E"
      "b";
  const std::size_t starts[] = {0, 1, 3, 6, 10, 11};  // where each character begins, and the end
  for (std::size_t n = 0; n <= s.size() + 2; ++n) {
    const std::string_view p = chimera::text::utf8_prefix(s, n);
    EXPECT_TRUE(chimera::text::valid_utf8(p)) << n;
    std::size_t want = 0;
    for (std::size_t b : starts) {
      if (b <= n) want = b;
    }
    EXPECT_EQ(p.size(), std::min(want, s.size())) << n;
  }
  EXPECT_EQ(chimera::text::utf8_prefix("", 3), "");
}

TEST(Runtime, RunsPostedWorkOnItsOwnThreads) {
  chimera::Runtime rt(2);
  EXPECT_EQ(rt.threads(), 2);
  constexpr int kJobs = 1'000;
  std::mutex m;
  std::condition_variable cv;
  std::set<std::thread::id> ran_on;
  int done = 0;
  std::vector<std::thread> posters;
  for (int p = 0; p < 4; ++p) {  // post() is thread-safe: four threads post at once
    posters.emplace_back([&] {
      for (int i = 0; i < kJobs / 4; ++i) {
        rt.post([&] {
          std::lock_guard lock(m);
          ran_on.insert(std::this_thread::get_id());
          if (++done == kJobs) cv.notify_one();
        });
      }
    });
  }
  for (auto& t : posters) t.join();
  std::unique_lock lock(m);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return done == kJobs; }))
      << done << " of " << kJobs << " jobs ran";
  EXPECT_EQ(ran_on.count(std::this_thread::get_id()), 0u);
  EXPECT_LE(ran_on.size(), 2u);
}

TEST(Runtime, OneThreadByDefault) {
  chimera::Runtime rt;
  EXPECT_EQ(rt.threads(), 1);
  EXPECT_EQ(rt.busy_poll_us(), 0);
}

TEST(Runtime, ThreadsThatPollBeforeSleepingRunWorkAndStop) {
  for (int threads : {1, 2}) {
    std::atomic<int> done{0};
    {
      chimera::Runtime rt(threads, 200);
      EXPECT_EQ(rt.busy_poll_us(), 200);
      for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < 100; ++i) rt.post([&] { ++done; });
        // Work that comes after a lull longer than the polling window wakes a sleeping thread.
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (done < 300 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      rt.post([] {});  // still running when it is destroyed: the destructor stops it
    }
    EXPECT_EQ(done, 300) << threads << " threads";
  }
}

}  // namespace

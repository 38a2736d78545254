// The scheduler's decisions, with a fake clock.
#include <chimera/banter/schedule.hpp>

#include <gtest/gtest.h>

namespace {

using namespace chimera::banter;
constexpr int64_t ms = 1'000'000;

TEST(Scheduler, SoonestDeadlineFirstAndLiveBeforeBackground) {
  Scheduler s({1}, 0);
  const auto bg = s.submit({0, 0, Priority::background, 1 * ms});
  const auto late = s.submit({0, 1, Priority::live, 500 * ms});
  const auto soon = s.submit({0, 2, Priority::live, 100 * ms});
  EXPECT_EQ(s.take_ready(0), std::vector<Scheduler::Id>{soon});
  EXPECT_TRUE(s.take_ready(0).empty());  // the lane is full
  s.first_token(soon);
  s.finished(soon, 1 * ms);
  EXPECT_EQ(s.take_ready(2 * ms), std::vector<Scheduler::Id>{late});
  s.first_token(late);
  s.finished(late, 3 * ms);
  EXPECT_EQ(s.take_ready(4 * ms), std::vector<Scheduler::Id>{bg});
}

TEST(Scheduler, OneJobPerActorAtATime) {
  Scheduler s({0}, 0);
  const auto a1 = s.submit({0, 7, Priority::live, 10});
  const auto a2 = s.submit({0, 7, Priority::live, 20});
  const auto b = s.submit({0, 8, Priority::live, 30});
  EXPECT_EQ(s.take_ready(0), (std::vector<Scheduler::Id>{a1, b}));  // a2 waits for its actor
  s.finished(a1, 1);
  EXPECT_EQ(s.take_ready(2), std::vector<Scheduler::Id>{a2});
}

TEST(Scheduler, BackgroundWaitsForLiveFirstTokenAndGrace) {
  Scheduler s({0}, 20 * ms);
  const auto live = s.submit({0, 0, Priority::live, 100 * ms});
  const auto bg = s.submit({0, 1, Priority::background, 1 * ms});
  EXPECT_EQ(s.take_ready(0), std::vector<Scheduler::Id>{live});
  EXPECT_TRUE(s.take_ready(1 * ms).empty());  // the live line has no first token yet
  s.first_token(live);
  EXPECT_EQ(s.take_ready(2 * ms), std::vector<Scheduler::Id>{bg});
  s.finished(bg, 3 * ms);
  s.finished(live, 10 * ms);
  // After a live line ends, background work waits out the grace period.
  const auto bg2 = s.submit({0, 1, Priority::background, 1 * ms});
  EXPECT_TRUE(s.take_ready(11 * ms).empty());
  ASSERT_TRUE(s.next_wake(11 * ms).has_value());
  EXPECT_EQ(*s.next_wake(11 * ms), 30 * ms);
  EXPECT_EQ(s.take_ready(30 * ms), std::vector<Scheduler::Id>{bg2});
  s.finished(bg2, 31 * ms);
  // Within the grace period, a live line that already streams lets background work go.
  const auto live2 = s.submit({0, 0, Priority::live, 100 * ms});
  EXPECT_EQ(s.take_ready(32 * ms), std::vector<Scheduler::Id>{live2});
  s.first_token(live2);
  s.finished(live2, 33 * ms);
  const auto live3 = s.submit({0, 0, Priority::live, 100 * ms});
  const auto bg3 = s.submit({0, 1, Priority::background, 1 * ms});
  EXPECT_EQ(s.take_ready(34 * ms), std::vector<Scheduler::Id>{live3});
  s.first_token(live3);
  EXPECT_EQ(s.take_ready(35 * ms), std::vector<Scheduler::Id>{bg3});
}

TEST(Scheduler, OneBackgroundJobPerLaneAtATime) {
  Scheduler s({0}, 0);
  const auto b1 = s.submit({0, 1, Priority::background, 2});
  const auto b2 = s.submit({0, 2, Priority::background, 1});
  EXPECT_EQ(s.take_ready(0), std::vector<Scheduler::Id>{b2});
  const auto live = s.submit({0, 3, Priority::live, 5});
  EXPECT_EQ(s.take_ready(0), std::vector<Scheduler::Id>{live});  // live work is not held back
  s.first_token(live);
  s.finished(b2, 1);
  EXPECT_EQ(s.take_ready(2), std::vector<Scheduler::Id>{b1});
}

TEST(Scheduler, LanesAreIndependent) {
  Scheduler s({1, 1}, 0);
  const auto a = s.submit({0, 0, Priority::live, 10});
  const auto b = s.submit({1, 1, Priority::background, 20});
  const auto c = s.submit({0, 2, Priority::live, 5});
  EXPECT_EQ(s.take_ready(0), (std::vector<Scheduler::Id>{c, b}));
  EXPECT_TRUE(s.is_queued(a));
  EXPECT_TRUE(s.remove(a));
  EXPECT_FALSE(s.remove(c));  // running
  EXPECT_EQ(s.running(), 2u);
  EXPECT_EQ(s.queued(), 0u);
}

}  // namespace

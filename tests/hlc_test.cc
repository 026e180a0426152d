#include "fieldsync/sync/hlc.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "fieldsync/sync/change.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;  // a realistic wall clock, 2023-11-14
constexpr int64_t kSkew = tuning::kMaxClockSkewMs;

TEST(HlcTest, PackingRoundTrips) {
  const Hlc h = make_hlc(kT0, 42);
  EXPECT_EQ(hlc_physical_ms(h), kT0);
  EXPECT_EQ(hlc_logical(h), 42);
  EXPECT_LT(make_hlc(kT0, 0xffff), make_hlc(kT0 + 1, 0));
  EXPECT_LT(make_hlc(kT0, 1), make_hlc(kT0, 2));
}

TEST(HlcTest, TickFollowsAnAdvancingWallClock) {
  HybridClock clock;
  EXPECT_EQ(clock.tick(kT0), make_hlc(kT0, 0));
  EXPECT_EQ(clock.tick(kT0 + 5), make_hlc(kT0 + 5, 0));
  EXPECT_EQ(clock.last(), make_hlc(kT0 + 5, 0));
}

TEST(HlcTest, TickCountsLogicallyWhenTheWallClockStalls) {
  HybridClock clock;
  EXPECT_EQ(clock.tick(kT0), make_hlc(kT0, 0));
  EXPECT_EQ(clock.tick(kT0), make_hlc(kT0, 1));
  EXPECT_EQ(clock.tick(kT0), make_hlc(kT0, 2));
  EXPECT_EQ(clock.tick(kT0 + 1), make_hlc(kT0 + 1, 0));  // the wall catching up resets the counter
}

TEST(HlcTest, TickIsMonotonicWhenTheWallClockGoesBackwards) {
  HybridClock clock;
  const Hlc a = clock.tick(kT0);
  const Hlc b = clock.tick(kT0 - 10'000);  // NTP stepped the clock back 10 s
  const Hlc c = clock.tick(kT0 - 9'999);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(hlc_physical_ms(c), kT0);  // the physical part never goes back
  EXPECT_EQ(clock.tick(kT0 + 1), make_hlc(kT0 + 1, 0));
}

TEST(HlcTest, TickIsMonotonicUnderAnErraticWallClock) {
  // Backwards steps, stalls and jumps, including negative and absurd values.
  const std::vector<int64_t> walls = {kT0,
                                      kT0,
                                      kT0 - 1,
                                      kT0 + 3'600'000,
                                      kT0,
                                      0,
                                      -1,
                                      std::numeric_limits<int64_t>::min(),
                                      std::numeric_limits<int64_t>::max(),
                                      int64_t{1} << 48,
                                      kT0 + 3'600'001,
                                      kT0 + 3'600'001,
                                      kT0 + 7'200'000};
  HybridClock clock;
  Hlc prev = 0;
  for (int64_t wall : walls) {
    const Hlc h = clock.tick(wall);
    EXPECT_GT(h, prev) << "wall " << wall;
    EXPECT_EQ(clock.last(), h);
    prev = h;
  }
  EXPECT_EQ(prev, make_hlc(kT0 + 7'200'000, 0));
}

TEST(HlcTest, AbsurdWallClockDoesNotJumpTheClock) {
  HybridClock clock;
  clock.tick(kT0);
  const Hlc h = clock.tick(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(h, make_hlc(kT0, 1));
  EXPECT_EQ(clock.tick(-5), make_hlc(kT0, 2));
}

TEST(HlcTest, FreshClockHandlesNegativeWall) {
  HybridClock clock;
  const Hlc a = clock.tick(-1000);
  const Hlc b = clock.tick(-2000);
  EXPECT_GT(a, Hlc{0});
  EXPECT_GT(b, a);
}

TEST(HlcTest, LogicalOverflowCarriesIntoPhysical) {
  HybridClock clock;
  Hlc prev = clock.tick(kT0);
  for (int i = 0; i < 70'000; ++i) {
    const Hlc h = clock.tick(kT0);
    ASSERT_GT(h, prev) << "tick " << i;
    prev = h;
  }
  // 70,000 ticks after (kT0, 0): 65,535 fill the counter, the next carries to (kT0 + 1, 0).
  EXPECT_EQ(prev, make_hlc(kT0 + 1, 70'000 - 65'536));
  // The wall clock reaching the carried millisecond does not go back to logical 0.
  EXPECT_GT(clock.tick(kT0 + 1), prev);
}

TEST(HlcTest, CarryFromExplicitState) {
  HybridClock clock(make_hlc(kT0, 0xffff));
  EXPECT_EQ(clock.tick(kT0), make_hlc(kT0 + 1, 0));
  EXPECT_EQ(clock.tick(kT0 - 100), make_hlc(kT0 + 1, 1));
}

TEST(HlcTest, ReceiveTakesTheMaxAndLaterTicksExceedIt) {
  HybridClock clock;
  clock.tick(kT0);
  const Hlc remote = make_hlc(kT0 + 500, 7);  // a peer half a second ahead
  ASSERT_TRUE(clock.receive(remote, kT0).is_ok());
  EXPECT_EQ(clock.last(), remote);
  const Hlc h = clock.tick(kT0 + 1);
  EXPECT_GT(h, remote);
  EXPECT_EQ(h, make_hlc(kT0 + 500, 8));
}

TEST(HlcTest, ReceiveOfAnOlderTimestampKeepsTheClock) {
  HybridClock clock;
  clock.tick(kT0);
  const Hlc local = clock.tick(kT0);
  ASSERT_TRUE(clock.receive(make_hlc(kT0 - 60'000, 3), kT0).is_ok());
  EXPECT_EQ(clock.last(), local);
  EXPECT_GT(clock.tick(kT0), local);
}

TEST(HlcTest, ReceiveRefusesARemoteBeyondTheSkewLimit) {
  HybridClock clock;
  const Hlc before = clock.tick(kT0);
  const Status s = clock.receive(make_hlc(kT0 + kSkew + 1, 0), kT0);
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), ErrorCode::kClockSkew);
  EXPECT_NE(s.message().find(std::to_string(kSkew + 1)), std::string::npos) << s.message();
  EXPECT_EQ(clock.last(), before);
  EXPECT_EQ(clock.tick(kT0), make_hlc(kT0, 1));  // nothing leaked into the clock
}

TEST(HlcTest, ReceiveAcceptsARemoteJustUnderTheSkewLimit) {
  HybridClock clock;
  clock.tick(kT0);
  const Hlc remote = make_hlc(kT0 + kSkew, 0xffff);
  ASSERT_TRUE(clock.receive(remote, kT0).is_ok());
  EXPECT_EQ(clock.last(), remote);
  EXPECT_EQ(clock.tick(kT0), make_hlc(kT0 + kSkew + 1, 0));
}

TEST(HlcTest, ReceiveWithAbsurdWallIsJudgedAgainstTheClock) {
  HybridClock clock;
  clock.tick(kT0);
  // A broken local clock must not let through a remote that would exhaust the HLC range.
  const Hlc top = ~Hlc{0};
  EXPECT_EQ(clock.receive(top, std::numeric_limits<int64_t>::max()).code(), ErrorCode::kClockSkew);
  EXPECT_EQ(clock.receive(top, std::numeric_limits<int64_t>::min()).code(), ErrorCode::kClockSkew);
  EXPECT_EQ(clock.last(), make_hlc(kT0, 0));
  // Within the limit of what the clock already knows, the remote is accepted.
  EXPECT_TRUE(clock.receive(make_hlc(kT0 + 10, 0), -1).is_ok());
  EXPECT_EQ(clock.last(), make_hlc(kT0 + 10, 0));
}

TEST(HlcTest, ReceiveThenTickInterleavedStaysMonotonic) {
  HybridClock a;
  HybridClock b;
  Hlc prev_a = 0;
  Hlc prev_b = 0;
  int64_t wall_a = kT0;
  int64_t wall_b = kT0 + 2'000;  // b's clock is 2 s ahead
  for (int i = 0; i < 1000; ++i) {
    wall_a += (i % 3 == 0) ? -5 : 1;
    wall_b += (i % 7 == 0) ? 0 : 1;
    const Hlc ha = a.tick(wall_a);
    ASSERT_GT(ha, prev_a);
    prev_a = ha;
    ASSERT_TRUE(b.receive(ha, wall_b).is_ok());
    const Hlc hb = b.tick(wall_b);
    ASSERT_GT(hb, prev_b);
    ASSERT_GT(hb, ha);
    prev_b = hb;
    ASSERT_TRUE(a.receive(hb, wall_a).is_ok());
    ASSERT_GT(a.tick(wall_a), hb);
    prev_a = a.last();
  }
}

TEST(VersionTest, OrderedByHlcThenNode) {
  const Version v1{make_hlc(kT0, 0), 9};
  const Version v2{make_hlc(kT0, 1), 1};
  EXPECT_LT(v1, v2);  // the clock decides first, whatever the node
  const Version a{make_hlc(kT0, 5), 1};
  const Version b{make_hlc(kT0, 5), 2};
  EXPECT_LT(a, b);  // equal clocks: the node id breaks the tie
  EXPECT_NE(a, b);
  EXPECT_EQ(a, (Version{make_hlc(kT0, 5), 1}));
  EXPECT_TRUE(Version{}.is_zero());
  EXPECT_FALSE(a.is_zero());
  EXPECT_LT(Version{}, a);
}

}  // namespace
}  // namespace fieldsync

#include "fieldsync/sync/record_id.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

namespace fieldsync {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;

int version_of(const RecordId& id) {
  return static_cast<int>((id.hi >> 12) & 0xf);
}
int variant_of(const RecordId& id) {
  return static_cast<int>(id.lo >> 62);
}
int counter_of(const RecordId& id) {
  return static_cast<int>(id.hi & 0xfff);
}

TEST(RecordIdTest, NilAndOrdering) {
  EXPECT_TRUE(RecordId{}.is_nil());
  EXPECT_FALSE((RecordId{0, 1}).is_nil());
  EXPECT_LT((RecordId{1, 0}), (RecordId{1, 1}));
  EXPECT_LT((RecordId{1, ~uint64_t{0}}), (RecordId{2, 0}));  // hi decides first
}

TEST(RecordIdTest, ToStringIsCanonicalLowercase) {
  const RecordId id{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(id.to_string(), "01234567-89ab-cdef-fedc-ba9876543210");
  EXPECT_EQ(RecordId{}.to_string(), "00000000-0000-0000-0000-000000000000");
  EXPECT_EQ((RecordId{~uint64_t{0}, ~uint64_t{0}}).to_string(), "ffffffff-ffff-ffff-ffff-ffffffffffff");
}

TEST(RecordIdTest, ParseAcceptsEitherCase) {
  const RecordId want{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(RecordId::parse("01234567-89ab-cdef-fedc-ba9876543210"), want);
  EXPECT_EQ(RecordId::parse("01234567-89AB-CDEF-FEDC-BA9876543210"), want);
  EXPECT_EQ(RecordId::parse("01234567-89aB-CdEf-FeDc-bA9876543210"), want);
  EXPECT_EQ(RecordId::parse("00000000-0000-0000-0000-000000000000"), RecordId{});
}

TEST(RecordIdTest, ParseRejectsBadInput) {
  const std::string good = "01234567-89ab-cdef-fedc-ba9876543210";
  ASSERT_TRUE(RecordId::parse(good).has_value());
  const std::vector<std::string> bad = {
      "",
      "01234567-89ab-cdef-fedc-ba987654321",     // too short
      "01234567-89ab-cdef-fedc-ba98765432100",   // too long
      " 1234567-89ab-cdef-fedc-ba9876543210",    // leading space in place of a digit
      "{01234567-89ab-cdef-fedc-ba9876543210}",  // braces
      "0123456789abcdeffedcba9876543210",        // no hyphens (32 chars)
      "0123456789abcdeffedcba9876543210----",    // 36 chars, hyphens at the end
      "0123456-789ab-cdef-fedc-ba9876543210",    // hyphen one early
      "012345678-9ab-cdef-fedc-ba9876543210",    // hyphen one late
      "01234567-89ab-cdef-fedc-ba987654321-",    // hyphen in place of a digit
      "01234567_89ab_cdef_fedc_ba9876543210",    // wrong separator
      "01234567-89ab-cdef-fedc-ba987654321g",    // non-hex
      "0123456z-89ab-cdef-fedc-ba9876543210",    // non-hex
      "01234567-89ab-cdef-fedc-ba98765432 0",    // space
      "01234567-89ab-cdef-fedc-ba98765432\xff"
      "0",                                     // high byte
      "+1234567-89ab-cdef-fedc-ba9876543210",  // sign
  };
  for (const std::string& text : bad) EXPECT_FALSE(RecordId::parse(text).has_value()) << '"' << text << '"';
  // An embedded NUL is not a hex digit either.
  std::string with_nul = good;
  with_nul[3] = '\0';
  EXPECT_FALSE(RecordId::parse(with_nul).has_value());
}

TEST(RecordIdGeneratorTest, FormatIsUuidV7) {
  RecordIdGenerator gen(1);
  for (int i = 0; i < 1000; ++i) {
    const RecordId id = gen.next(kT0 + i / 10);
    EXPECT_EQ(version_of(id), 7);
    EXPECT_EQ(variant_of(id), 0b10);
    const std::string text = id.to_string();
    ASSERT_EQ(text.size(), 36u);
    EXPECT_EQ(text[14], '7');                                          // version nibble
    EXPECT_NE(std::string("89ab").find(text[19]), std::string::npos);  // variant 10xx
    EXPECT_EQ(RecordId::parse(text), id);
  }
}

TEST(RecordIdGeneratorTest, UnixMsIsTheTimestampUsed) {
  RecordIdGenerator gen(2);
  EXPECT_EQ(gen.next(kT0).unix_ms(), kT0);
  EXPECT_EQ(gen.next(kT0 + 1234).unix_ms(), kT0 + 1234);
  EXPECT_EQ(gen.next(0x0000ffffffffffffLL).unix_ms(), 0x0000ffffffffffffLL);  // the largest 48-bit time
  RecordIdGenerator fresh(3);
  EXPECT_EQ(fresh.next(0).unix_ms(), 0);
}

TEST(RecordIdGeneratorTest, NewMillisecondStartsCounterInLowHalf) {
  for (uint64_t seed = 0; seed < 200; ++seed) {
    RecordIdGenerator gen(seed);
    const RecordId id = gen.next(kT0);
    EXPECT_LT(counter_of(id), 0x800) << "seed " << seed;
    EXPECT_LT(counter_of(gen.next(kT0 + 1)), 0x800) << "seed " << seed;
  }
}

TEST(RecordIdGeneratorTest, SameMillisecondIdsAreOrdered) {
  RecordIdGenerator gen(4);
  RecordId prev = gen.next(kT0);
  for (int i = 0; i < 100; ++i) {
    const RecordId id = gen.next(kT0);
    EXPECT_EQ(id.unix_ms(), kT0);
    EXPECT_EQ(counter_of(id), counter_of(prev) + 1);  // the counter, not chance, orders them
    EXPECT_GT(id, prev);
    EXPECT_GT(id.to_string(), prev.to_string());
    prev = id;
  }
}

TEST(RecordIdGeneratorTest, CounterOverflowAdvancesTheTimestamp) {
  RecordIdGenerator gen(5);
  RecordId prev = gen.next(kT0);
  // At most 0x1000 ids fit one millisecond; 5,000 at the same time must spill into the next one.
  for (int i = 0; i < 5000; ++i) {
    const RecordId id = gen.next(kT0);
    ASSERT_GT(id, prev) << i;
    prev = id;
  }
  EXPECT_EQ(prev.unix_ms(), kT0 + 1);
  // The real clock reaching the borrowed millisecond keeps counting in it rather than going back.
  const RecordId next = gen.next(kT0 + 1);
  EXPECT_GT(next, prev);
  EXPECT_EQ(next.unix_ms(), kT0 + 1);
  // A later millisecond starts over.
  EXPECT_EQ(gen.next(kT0 + 2).unix_ms(), kT0 + 2);
}

TEST(RecordIdGeneratorTest, ClockGoingBackwardsStillIncreases) {
  RecordIdGenerator gen(6);
  const std::vector<int64_t> clock = {kT0,
                                      kT0 - 1000,
                                      kT0 - 1,
                                      kT0,
                                      kT0 + 1,
                                      0,
                                      -1,
                                      std::numeric_limits<int64_t>::min(),
                                      std::numeric_limits<int64_t>::max(),
                                      int64_t{1} << 48,
                                      kT0 + 1,
                                      kT0 + 2};
  RecordId prev;
  for (int64_t ms : clock) {
    const RecordId id = gen.next(ms);
    EXPECT_GT(id, prev) << "clock " << ms;
    EXPECT_GT(id.to_string(), prev.to_string());
    EXPECT_EQ(version_of(id), 7);
    EXPECT_EQ(variant_of(id), 0b10);
    prev = id;
  }
  EXPECT_EQ(prev.unix_ms(), kT0 + 2);
}

TEST(RecordIdGeneratorTest, FreshGeneratorWithBrokenClock) {
  RecordIdGenerator gen(7);
  const RecordId a = gen.next(-5);
  const RecordId b = gen.next(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(a.unix_ms(), 0);
  EXPECT_GT(b, a);
  EXPECT_EQ(version_of(a), 7);
}

TEST(RecordIdGeneratorTest, HundredThousandIdsStrictlyIncreasingAsNumbersAndText) {
  RecordIdGenerator gen(8);
  RecordId prev = gen.next(kT0);
  std::string prev_text = prev.to_string();
  int64_t ms = kT0;
  for (int i = 0; i < 100'000; ++i) {
    // A realistic clock: several ids per millisecond, occasional small steps back.
    if (i % 7 == 0) ++ms;
    if (i % 1000 == 999) ms -= 3;
    const RecordId id = gen.next(ms);
    const std::string text = id.to_string();
    ASSERT_GT(id, prev) << i;
    ASSERT_GT(text, prev_text) << i;
    prev = id;
    prev_text = text;
  }
}

TEST(RecordIdGeneratorTest, DifferentSeedsDoNotCollide) {
  RecordIdGenerator a(0x1234);
  RecordIdGenerator b(0x5678);
  std::unordered_set<RecordId, RecordIdHash> seen;
  seen.reserve(200'000);
  for (int i = 0; i < 100'000; ++i) {
    const int64_t ms = kT0 + i / 50;  // both devices create ids in the same milliseconds
    EXPECT_TRUE(seen.insert(a.next(ms)).second) << i;
    EXPECT_TRUE(seen.insert(b.next(ms)).second) << i;
  }
  EXPECT_EQ(seen.size(), 200'000u);
}

TEST(RecordIdGeneratorTest, SameSeedIsDeterministic) {
  RecordIdGenerator a(42);
  RecordIdGenerator b(42);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next(kT0 + i), b.next(kT0 + i));
}

}  // namespace
}  // namespace fieldsync

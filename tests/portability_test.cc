// What a 32-bit target must not lose (armhf: 32-bit size_t, long and pointers, and in Debian 12 a 32-bit
// time_t in the C library): times after 2038 (signed 32-bit seconds) and after 2106 (unsigned), and 64-bit
// ids and sequence numbers, through the clock, the ids and every frame form of the codec. Runs in every build
// and under qemu-user on aarch64 and armhf (scripts/cross-test.sh), where a value squeezed through size_t,
// long or time_t on the way would come back different.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <set>
#include <variant>

#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/hlc.h"
#include "fieldsync/sync/record_id.h"
#include "support/codec_samples.h"

namespace fieldsync {
namespace {

constexpr int64_t kYear2100Ms = 4'102'444'800'000;  // 2100-01-01T00:00:00Z: past both 32-bit second limits
constexpr int64_t kYear2039Ms = 2'177'452'800'000;  // 2039-01-01T00:00:00Z: past the signed one only

TEST(Portability, ClockTicksPastTheYear2038And2106) {
  for (int64_t wall : {kYear2039Ms, kYear2100Ms}) {
    HybridClock clock;
    const Hlc a = clock.tick(wall);
    const Hlc b = clock.tick(wall);
    EXPECT_EQ(hlc_physical_ms(a), wall);
    EXPECT_EQ(hlc_logical(a), 0);
    EXPECT_EQ(hlc_logical(b), 1);
    EXPECT_GT(b, a);
    // A remote clock a second ahead is within the skew bound and moves this one past it.
    EXPECT_TRUE(clock.receive(make_hlc(wall + 1000, 7), wall).is_ok());
    EXPECT_EQ(hlc_physical_ms(clock.tick(wall)), wall + 1000);
  }
}

TEST(Portability, RecordIdsCarryTheirMillisecondPast2106) {
  RecordIdGenerator gen(42);
  const RecordId a = gen.next(kYear2100Ms);
  const RecordId b = gen.next(kYear2100Ms);
  EXPECT_EQ(a.unix_ms(), kYear2100Ms);
  EXPECT_LT(a, b);
  const std::optional<RecordId> back = RecordId::parse(b.to_string());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, b);
}

// RecordIdHash folds the two 64-bit halves into a size_t: on a 32-bit target the ids of one millisecond (the
// same high half) must still spread, or every unordered_map of a bootstrap page collides.
TEST(Portability, RecordIdHashSpreadsIdsOfOneMillisecond) {
  RecordIdGenerator gen(7);
  std::set<size_t> hashes;
  for (int i = 0; i < 1000; ++i) hashes.insert(RecordIdHash{}(gen.next(kYear2100Ms)));
  EXPECT_GE(hashes.size(), 995u);
}

TEST(Portability, FramesKeep64BitTimesIdsAndSequencesInEveryForm) {
  protocol::PushTxns m;
  ClientTxn t;
  t.node = std::numeric_limits<uint64_t>::max();
  t.node_seq = (uint64_t{1} << 32) + 5;  // past 32 bits: a size_t or long on the way would drop the high half
  t.created_at_ms = kYear2100Ms;
  Change c = samples::set(EntityId::kCalendarEvent, 4, schema::fields::kEventStart,
                          Value::integer(kYear2100Ms + 3'600'000), static_cast<uint64_t>(kYear2100Ms));
  t.changes.push_back(c);
  m.txns.push_back(t);
  codec::EncodeOptions v1, v2_plain, v2_compressed;
  v2_plain.protocol_version = v2_compressed.protocol_version = 2;
  v2_plain.compression_level = 0;
  v2_compressed.compress_min_bytes = 0;
  for (const codec::EncodeOptions& form : {v1, v2_plain, v2_compressed}) {
    Result<protocol::Message> back = codec::decode(codec::encode(m, form));
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    const auto& got = std::get<protocol::PushTxns>(*back);
    ASSERT_EQ(got.txns.size(), 1u);
    EXPECT_EQ(got.txns[0], t) << "protocol version " << form.protocol_version;
    EXPECT_EQ(hlc_physical_ms(got.txns[0].changes[0].version.hlc), kYear2100Ms);
  }
}

}  // namespace
}  // namespace fieldsync

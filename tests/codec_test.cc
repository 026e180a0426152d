// The codec: every message survives a round trip unchanged, and no frame from the network (truncated,
// corrupted, random, oversized, or well-formed but outside the model and the limits) crashes decode() or gets
// past it.
#include "fieldsync/sync/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "fieldsync/schema/fieldsync_generated.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync {
namespace {

namespace fb = ::fieldsync::wire;
namespace f = schema::fields;
using protocol::Message;

// Field ids of the model used below beyond those named in schema::fields.
constexpr uint16_t kAccountAddress = 3;
constexpr uint16_t kAccountPhone = 5;
constexpr uint16_t kAccountCreditLimit = 8;
constexpr uint16_t kAccountNotes = 9;
constexpr uint16_t kContactIsPrimary = 6;
constexpr uint16_t kVisitLatitude = 6;
constexpr uint16_t kVisitLongitude = 7;

RecordId rid(uint64_t n) {
  return RecordId{0x0190'a1b2'c3d4'7000ULL | n, 0x8000'0000'0000'0000ULL | (n * 7919)};
}
Version ver(uint64_t ms, NodeId node) {
  return Version{make_hlc(static_cast<int64_t>(ms), 3), node};
}

Change set(EntityId e, uint64_t rec, uint16_t field, Value v, uint64_t ms) {
  Change c;
  c.op = ChangeOp::kSet;
  c.entity = e;
  c.record = rid(rec);
  c.field = field;
  c.value = std::move(v);
  c.version = ver(ms, 0xabcdef);
  c.base = ver(ms - 1000, 0x1234);
  return c;
}

// One change of every op and one value of every kind (null, int, real, bool, text incl. empty and UTF-8).
std::vector<Change> sample_changes() {
  std::vector<Change> changes;
  Change create;
  create.op = ChangeOp::kCreate;
  create.entity = EntityId::kAccount;
  create.record = rid(1);
  create.version = ver(1'700'000'000'000, 0xabcdef);
  changes.push_back(create);
  changes.push_back(set(EntityId::kAccount, 1, f::kAccountName,
                        Value::text("Caf\u00e9 Z\u00fcrich \u2014 \u5317\u4eac \U0001F600"),
                        1'700'000'000'001));
  changes.push_back(set(EntityId::kAccount, 1, kAccountAddress, Value::text(""), 1'700'000'000'002));
  changes.push_back(set(EntityId::kAccount, 1, kAccountPhone, Value::null(), 1'700'000'000'003));
  changes.push_back(
      set(EntityId::kAccount, 1, kAccountCreditLimit, Value::integer(-1'234'567'890'123), 1'700'000'000'004));
  changes.push_back(set(EntityId::kAccount, 1, kAccountCreditLimit, Value::integer(0), 1'700'000'000'005));
  changes.push_back(set(EntityId::kContact, 2, kContactIsPrimary, Value::boolean(true), 1'700'000'000'006));
  changes.push_back(set(EntityId::kContact, 2, kContactIsPrimary, Value::boolean(false), 1'700'000'000'007));
  changes.push_back(set(EntityId::kVisit, 3, kVisitLatitude, Value::real(47.376887), 1'700'000'000'008));
  changes.push_back(set(EntityId::kVisit, 3, kVisitLongitude, Value::real(-0.0), 1'700'000'000'009));
  changes.push_back(set(EntityId::kVisit, 3, kVisitLongitude, Value::real(0.0), 1'700'000'000'010));
  changes.push_back(
      set(EntityId::kCalendarEvent, 4, f::kEventStart, Value::integer(1'700'003'600'000), 1'700'000'000'011));
  Change append = set(EntityId::kAccount, 1, kAccountNotes, Value::text("met the buyer, wants a quote"),
                      1'700'000'000'012);
  append.op = ChangeOp::kAppend;
  append.base = Version{};
  changes.push_back(append);
  Change del;
  del.op = ChangeOp::kDelete;
  del.entity = EntityId::kContact;
  del.record = rid(2);
  del.version = ver(1'700'000'000'013, 0xabcdef);
  del.seen = {{0, ver(1'699'000'000'000, 7)},
              {2, ver(1'699'000'000'100, 7)},
              {kContactIsPrimary, ver(1'700'000'000'007, 0xabcdef)}};
  changes.push_back(del);
  return changes;
}

RecordState sample_account() {
  RecordState r;
  r.entity = EntityId::kAccount;
  r.id = rid(1);
  r.created = ver(1'699'000'000'000, 7);
  FieldState name;
  name.field = f::kAccountName;
  name.value = Value::text("Acme GmbH");
  name.version = ver(1'699'000'000'000, 7);
  name.user = "rep-7";
  FieldState territory;
  territory.field = f::kAccountTerritory;
  territory.value = Value::text("ch-zh");
  territory.version = ver(1'699'000'000'000, 7);
  territory.user = "rep-7";
  FieldState credit;
  credit.field = kAccountCreditLimit;
  credit.value = Value::integer(5'000'000);
  credit.version = ver(1'699'500'000'000, 1);
  credit.user = "head-office";
  FieldState notes;
  notes.field = kAccountNotes;
  notes.fragments = {{ver(1'699'000'000'500, 7), "rep-7", "first visit. "},
                     {ver(1'699'000'000'500, 9), "rep-9", "called back. "},
                     {ver(1'699'600'000'000, 7), "rep-7", "\u00e9t\u00e9 "}};
  notes.value = Value::text("first visit. called back. \u00e9t\u00e9 ");
  notes.version = notes.fragments.back().version;
  notes.user = "rep-7";
  r.fields = {name, territory, credit, notes};
  return r;
}

RecordState sample_tombstone() {
  RecordState r;
  r.entity = EntityId::kContact;
  r.id = rid(2);
  r.created = ver(1'699'000'000'000, 7);
  r.deleted = true;
  r.deleted_version = ver(1'700'000'000'013, 0xabcdef);
  r.deleted_by = "rep-7";
  r.delete_seen = {{0, ver(1'699'000'000'000, 7)}, {2, ver(1'699'000'000'100, 7)}};
  return r;
}

std::vector<ConflictRecord> sample_conflicts() {
  ConflictRecord write;
  write.server_seq = 41;
  write.kind = ConflictKind::kConcurrentWrite;
  write.entity = EntityId::kAccount;
  write.record = rid(1);
  write.field = f::kAccountName;
  write.winner = {Value::text("Acme AG"), ver(1'700'000'000'100, 9), "rep-9"};
  write.loser = {Value::text("Acme GmbH"), ver(1'700'000'000'050, 7), "rep-7"};
  write.rule = "last_writer_wins";
  ConflictRecord del;
  del.server_seq = 42;
  del.kind = ConflictKind::kDeleteWins;
  del.entity = EntityId::kContact;
  del.record = rid(2);
  del.field = kContactIsPrimary;
  del.winner = {Value::null(), ver(1'700'000'000'013, 0xabcdef), "rep-7"};
  del.loser = {Value::boolean(true), ver(1'700'000'000'010, 9), "rep-9"};
  del.rule = "delete_wins";
  ConflictRecord overlap;
  overlap.server_seq = 43;
  overlap.kind = ConflictKind::kScheduling;
  overlap.entity = EntityId::kCalendarEvent;
  overlap.record = rid(4);
  overlap.field = f::kEventStart;
  overlap.winner = {Value::integer(1'700'003'600'000), ver(1'700'000'000'011, 0xabcdef), "rep-7"};
  overlap.loser = {Value::integer(1'700'003'000'000), ver(1'699'900'000'000, 7), "manager-1"};
  overlap.other_record = rid(5);
  overlap.rule = "overlap_flagged";
  return {write, del, overlap};
}

protocol::Hello sample_hello() {
  protocol::Hello m;
  m.protocol_version = protocol::kProtocolVersion;
  m.schema_version = schema::kSchemaVersion;
  m.node = 0xfeed'beef'dead'c0deULL;
  m.token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJyZXAtNyJ9.c2lnbmF0dXJl";
  m.cursor = 123'456;
  m.client_time_ms = 1'700'000'000'000;
  m.client_hlc = make_hlc(1'700'000'000'000, 17);
  return m;
}

protocol::Welcome sample_welcome() {
  protocol::Welcome m;
  m.schema_version = schema::kSchemaVersion;
  m.user = "manager-1";
  m.role = schema::Role::kManager;
  m.last_node_seq = 99;
  m.server_seq = 123'999;
  m.server_hlc = make_hlc(1'700'000'000'500, 2);
  m.server_time_ms = 1'700'000'000'500;
  return m;
}

protocol::PushTxns sample_push() {
  protocol::PushTxns m;
  m.request_id = 7;
  ClientTxn a;
  a.node = 0xabcdef;
  a.node_seq = 100;
  a.created_at_ms = 1'700'000'000'000;
  a.changes = sample_changes();
  ClientTxn b = a;
  b.node_seq = 101;
  b.changes.resize(2);
  ClientTxn empty;
  empty.node = 0xabcdef;
  empty.node_seq = 102;
  m.txns = {a, b, empty};
  return m;
}

protocol::PushAck sample_ack() {
  protocol::PushAck m;
  m.request_id = 7;
  m.server_hlc = make_hlc(1'700'000'001'000, 0);
  protocol::TxnResult applied;
  applied.node_seq = 100;
  applied.outcome = protocol::TxnOutcome::kApplied;
  applied.server_seq = 500;
  applied.conflicts = sample_conflicts();
  protocol::TxnResult rejected;
  rejected.node_seq = 101;
  rejected.outcome = protocol::TxnOutcome::kRejected;
  rejected.reason = ErrorCode::kOrderLocked;
  rejected.message = "order 0190... is approved";
  rejected.records = {sample_account(), sample_tombstone()};
  rejected.absent = {{EntityId::kOrderLine, rid(8)}, {EntityId::kOrder, rid(9)}};
  protocol::TxnResult duplicate;
  duplicate.node_seq = 99;
  duplicate.outcome = protocol::TxnOutcome::kDuplicate;
  m.results = {applied, rejected, duplicate};
  return m;
}

protocol::PullRequest sample_pull(bool live) {
  protocol::PullRequest m;
  m.request_id = 8;
  m.cursor = 123'456;
  m.max_changes = 250;
  m.live = live;
  return m;
}

protocol::ChangeBatch sample_batch() {
  protocol::ChangeBatch m;
  m.request_id = 8;
  m.from_cursor = 123'456;
  m.to_cursor = 123'460;
  m.has_more = true;
  ServerTxn t;
  t.server_seq = 123'458;
  t.origin_node = 0xabcdef;
  t.origin_user = "rep-7";
  t.origin_node_seq = 100;
  t.changes = sample_changes();
  ServerTxn u = t;
  u.server_seq = 123'460;
  u.origin_user = "rep-9";
  u.changes.resize(3);
  m.txns = {t, u};
  m.conflicts = sample_conflicts();
  m.records = {sample_account(), sample_tombstone()};
  m.purges = {{EntityId::kVisit, rid(3)}, {EntityId::kOpportunity, rid(10)}};
  m.server_hlc = make_hlc(1'700'000'002'000, 1);
  return m;
}

protocol::BootstrapRequest sample_bootstrap_request() {
  protocol::BootstrapRequest m;
  m.request_id = 9;
  m.snapshot_seq = 123'000;
  m.page_token = "account/0190a1b2-c3d4-7001-8000-000000001eef";
  m.page_size = 200;
  return m;
}

protocol::BootstrapPage sample_bootstrap_page() {
  protocol::BootstrapPage m;
  m.request_id = 9;
  m.snapshot_seq = 123'000;
  m.total_records = 12'345;
  m.records_before = 1'000;
  m.records = {sample_account(), sample_tombstone()};
  m.next_page_token = "contact/0190a1b2-c3d4-7002-8000-000000003dde";
  m.done = true;
  m.conflicts = sample_conflicts();
  m.purges = {{EntityId::kAccount, rid(4)}};
  return m;
}

protocol::Error sample_error() {
  protocol::Error m;
  m.code = ErrorCode::kSequenceGap;
  m.message = "expected node_seq 100, got 103";
  m.retryable = true;
  m.request_id = 7;
  m.resume_node_seq = 100;
  return m;
}

std::vector<Message> sample_messages() {
  return {sample_hello(),
          sample_welcome(),
          sample_push(),
          sample_ack(),
          sample_pull(true),
          sample_pull(false),
          sample_batch(),
          sample_bootstrap_request(),
          sample_bootstrap_page(),
          sample_error(),
          protocol::Hello{},
          protocol::Welcome{},
          protocol::PushTxns{},
          protocol::PushAck{},
          protocol::ChangeBatch{},
          protocol::BootstrapRequest{},
          protocol::BootstrapPage{},
          protocol::Error{}};
}

Result<Message> decode(const std::vector<uint8_t>& frame) {
  return codec::decode(frame);
}

void expect_round_trip(const Message& m) {
  SCOPED_TRACE(protocol::message_name(m));
  std::vector<uint8_t> frame = codec::encode(m);
  Result<Message> back = decode(frame);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->index(), m.index());
  EXPECT_TRUE(*back == m);
  // Encoding is deterministic, so the re-encoded frame is byte for byte the same.
  EXPECT_EQ(codec::encode(*back), frame);
}

// Whatever decode() accepts is a well-formed message: it encodes and decodes to itself again, and its
// encoding is a fixed point (what tests/fuzz/codec_fuzz.cc asserts on arbitrary input).
void expect_stable(const Message& m) {
  std::vector<uint8_t> again = codec::encode(m);
  Result<Message> back = decode(again);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_TRUE(*back == m);
  EXPECT_EQ(codec::encode(*back), again);
}

ErrorCode decode_error(const std::vector<uint8_t>& frame) {
  Result<Message> r = decode(frame);
  EXPECT_FALSE(r.is_ok()) << "decoded a frame that should have been refused";
  EXPECT_FALSE(r.status().message().empty());
  return r.status().code();
}

ErrorCode push_error(std::vector<Change> changes) {
  protocol::PushTxns m;
  m.request_id = 1;
  ClientTxn t;
  t.node = 5;
  t.node_seq = 1;
  t.changes = std::move(changes);
  m.txns.push_back(std::move(t));
  return decode_error(codec::encode(m));
}

// ---- Round trips ------------------------------------------------------------------------------------------

TEST(CodecRoundTrip, Hello) {
  expect_round_trip(sample_hello());
}
TEST(CodecRoundTrip, Welcome) {
  expect_round_trip(sample_welcome());
}
TEST(CodecRoundTrip, PushTxns) {
  expect_round_trip(sample_push());
}
TEST(CodecRoundTrip, PushAckWithEveryOutcome) {
  expect_round_trip(sample_ack());
}
TEST(CodecRoundTrip, PullRequestLiveAndNot) {
  expect_round_trip(sample_pull(true));
  expect_round_trip(sample_pull(false));
}
TEST(CodecRoundTrip, ChangeBatch) {
  expect_round_trip(sample_batch());
}
TEST(CodecRoundTrip, BootstrapRequest) {
  expect_round_trip(sample_bootstrap_request());
}
TEST(CodecRoundTrip, BootstrapPage) {
  expect_round_trip(sample_bootstrap_page());
}
TEST(CodecRoundTrip, Error) {
  expect_round_trip(sample_error());
}

TEST(CodecRoundTrip, DefaultValuedMessages) {
  for (const Message& m : sample_messages()) expect_round_trip(m);
}

TEST(CodecRoundTrip, EveryMessageTypeIsCovered) {
  std::set<size_t> seen;
  for (const Message& m : sample_messages()) seen.insert(m.index());
  // PullRequest{} is covered by sample_pull; everything else appears above.
  EXPECT_EQ(seen.size(), std::variant_size_v<Message>);
}

TEST(CodecRoundTrip, EveryErrorCodeAndExtremeScalars) {
  for (fb::ErrorCode code : fb::EnumValuesErrorCode()) {
    protocol::Error m;
    m.code = static_cast<ErrorCode>(code);
    m.request_id = std::numeric_limits<uint64_t>::max();
    m.resume_node_seq = std::numeric_limits<uint64_t>::max() - 1;
    expect_round_trip(m);
  }
  protocol::Hello h;
  h.client_time_ms = std::numeric_limits<int64_t>::min();
  h.node = std::numeric_limits<uint64_t>::max();
  expect_round_trip(h);
}

TEST(CodecRoundTrip, RealKeepsSignOfZeroAndExtremes) {
  for (double d : {-0.0, 0.0, 1e-308, -1.7976931348623157e308, 4.9e-324}) {
    protocol::PushTxns m;
    m.txns.push_back(ClientTxn{5, 1, 0, {set(EntityId::kVisit, 3, kVisitLatitude, Value::real(d), 2000)}});
    Result<Message> back = decode(codec::encode(m));
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    double got = std::get<protocol::PushTxns>(*back).txns[0].changes[0].value.as_real();
    EXPECT_EQ(std::memcmp(&got, &d, sizeof d), 0) << d;
  }
}

TEST(CodecRoundTrip, TextAtTheLimitsIsAccepted) {
  expect_round_trip(
      protocol::PushTxns{1,
                         {ClientTxn{5,
                                    1,
                                    0,
                                    {set(EntityId::kAccount, 1, kAccountAddress,
                                         Value::text(std::string(tuning::kMaxTextBytes, 'x')), 2000)}}}});
  protocol::Hello h;
  h.token = std::string(tuning::kMaxTokenBytes, 't');
  expect_round_trip(h);
  protocol::Welcome w;
  w.user = std::string(tuning::kMaxIdentifierBytes, 'u');
  expect_round_trip(w);
}

TEST(CodecRoundTrip, AppendTextStateMayExceedTheTextLimit) {
  // The joined value of an append-only field grows with every fragment; only the frame size bounds it.
  RecordState r = sample_account();
  FieldState& notes = r.fields.back();
  notes.fragments = {{ver(1000, 1), "rep-1", std::string(tuning::kMaxTextBytes, 'a')},
                     {ver(2000, 1), "rep-1", std::string(tuning::kMaxTextBytes, 'b')}};
  notes.value = Value::text(notes.fragments[0].text + notes.fragments[1].text);
  protocol::BootstrapPage m;
  m.records = {r};
  expect_round_trip(m);
}

TEST(CodecRoundTrip, MaximumCountsAreAccepted) {
  protocol::PushTxns m;
  for (uint64_t i = 0; i < tuning::kMaxTxnsPerPush; ++i) m.txns.push_back(ClientTxn{5, i + 1, 0, {}});
  m.txns[0].changes.assign(tuning::kMaxChangesPerTxn,
                           set(EntityId::kAccount, 1, f::kAccountName, Value::text("n"), 2000));
  m.txns[1].changes = m.txns[0].changes;  // exactly kMaxChangesPerPush in all
  static_assert(2 * tuning::kMaxChangesPerTxn == tuning::kMaxChangesPerPush);
  expect_round_trip(m);
  protocol::ChangeBatch b;
  b.purges.assign(tuning::kMaxRecordsPerMessage, RecordKey{EntityId::kAccount, rid(1)});
  expect_round_trip(b);
}

TEST(CodecRoundTrip, UnalignedFrameDecodes) {
  std::vector<uint8_t> frame = codec::encode(sample_batch());
  std::vector<uint8_t> shifted(frame.size() + 3);
  for (size_t offset = 1; offset < 4; ++offset) {
    std::memcpy(shifted.data() + offset, frame.data(), frame.size());
    Result<Message> back = codec::decode(std::span<const uint8_t>(shifted.data() + offset, frame.size()));
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_TRUE(*back == Message(sample_batch()));
  }
}

TEST(CodecSchema, WireErrorCodesMirrorStatusNames) {
  // fieldsync.fbs spells codes in CamelCase, status.cc in snake_case: the same words, and the same values.
  for (fb::ErrorCode code : fb::EnumValuesErrorCode()) {
    std::string snake;
    for (const char* p = fb::EnumNameErrorCode(code); *p; ++p) {
      if (std::isupper(static_cast<unsigned char>(*p)) && !snake.empty()) snake += '_';
      snake += static_cast<char>(std::tolower(static_cast<unsigned char>(*p)));
    }
    EXPECT_EQ(snake, to_string(static_cast<ErrorCode>(code)));
  }
}

// ---- Malformed frames -------------------------------------------------------------------------------------

TEST(CodecMalformed, EmptyFrame) {
  EXPECT_EQ(decode_error({}), ErrorCode::kMalformedMessage);
}

TEST(CodecMalformed, RandomBytes) {
  std::mt19937_64 rng(20240611);
  for (int i = 0; i < 20'000; ++i) {
    std::vector<uint8_t> bytes(rng() % 300);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    // Half of them carry the right identifier, so the verifier (not just the identifier check) gets
    // exercised.
    if (bytes.size() >= 8 && i % 2 == 0) std::memcpy(bytes.data() + 4, "FSY1", 4);
    Result<Message> r = decode(bytes);
    EXPECT_FALSE(r.is_ok()) << "seed 20240611, iteration " << i;
  }
}

TEST(CodecMalformed, EveryTruncationIsRefused) {
  // A push whose first transaction starts with a delete: the encoder builds that delete's seen-list first, so
  // the frame ends in data the verifier covers. (A frame that ends in alignment padding still decodes, to the
  // very same message, when cut inside the padding: see TruncationNeverYieldsADifferentMessage.)
  protocol::PushTxns m = sample_push();
  std::rotate(m.txns[0].changes.begin(), m.txns[0].changes.end() - 1, m.txns[0].changes.end());
  ASSERT_EQ(m.txns[0].changes[0].op, ChangeOp::kDelete);
  std::vector<uint8_t> frame = codec::encode(m);
  ASSERT_TRUE(decode(frame).is_ok());
  for (size_t n = 0; n < frame.size(); ++n) {
    std::vector<uint8_t> cut(frame.begin(), frame.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_EQ(decode_error(cut), ErrorCode::kMalformedMessage) << "cut at " << n;
  }
}

TEST(CodecMalformed, TruncationNeverYieldsADifferentMessage) {
  for (const Message& m : sample_messages()) {
    SCOPED_TRACE(protocol::message_name(m));
    std::vector<uint8_t> frame = codec::encode(m);
    for (size_t n = 0; n < frame.size(); ++n) {
      Result<Message> r =
          decode(std::vector<uint8_t>(frame.begin(), frame.begin() + static_cast<ptrdiff_t>(n)));
      if (r.is_ok()) {
        EXPECT_TRUE(*r == m) << "cut at " << n;
        EXPECT_GT(n + 8, frame.size()) << "only trailing padding may be lost";
      }
    }
  }
}

TEST(CodecMalformed, SingleByteFlipsNeverCrash) {
  const std::vector<Message> messages = {sample_push(), sample_ack(), sample_batch(),
                                         sample_bootstrap_page()};
  size_t refused = 0, decoded = 0;
  for (const Message& m : messages) {
    const std::vector<uint8_t> frame = codec::encode(m);
    for (size_t i = 0; i < frame.size(); ++i) {
      for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x10}, uint8_t{0x80}, uint8_t{0xff}}) {
        std::vector<uint8_t> bad = frame;
        bad[i] ^= mask;
        Result<Message> r = decode(bad);
        if (r.is_ok()) {
          ++decoded;
          expect_stable(*r);
        } else {
          ++refused;
        }
      }
    }
  }
  EXPECT_GT(refused, 0u);
  EXPECT_GT(decoded, 0u);  // flips inside values decode to other values
}

TEST(CodecMalformed, RandomMutationsNeverCrash) {
  const std::vector<Message> messages = sample_messages();
  std::vector<std::vector<uint8_t>> frames;
  for (const Message& m : messages) frames.push_back(codec::encode(m));
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20'000; ++i) {
    std::vector<uint8_t> bad = frames[rng() % frames.size()];
    for (int n = 1 + static_cast<int>(rng() % 8); n > 0; --n)
      bad[rng() % bad.size()] = static_cast<uint8_t>(rng());
    Result<Message> r = decode(bad);
    if (r.is_ok()) {
      SCOPED_TRACE("seed 7, iteration " + std::to_string(i));
      expect_stable(*r);
    }
  }
}

TEST(CodecMalformed, FrameOverTheLimit) {
  EXPECT_EQ(decode_error(std::vector<uint8_t>(tuning::kMaxMessageBytes + 1, 0)), ErrorCode::kMessageTooLarge);
  // Also when the oversized frame is otherwise valid.
  std::vector<uint8_t> frame = codec::encode(sample_hello());
  frame.resize(tuning::kMaxMessageBytes + 1);
  EXPECT_EQ(decode_error(frame), ErrorCode::kMessageTooLarge);
}

TEST(CodecMalformed, WrongFileIdentifier) {
  std::vector<uint8_t> frame = codec::encode(sample_hello());
  std::memcpy(frame.data() + 4, "FSY0", 4);
  EXPECT_EQ(decode_error(frame), ErrorCode::kMalformedMessage);
}

TEST(CodecMalformed, UnknownMessageTypeAndMissingBody) {
  {
    flatbuffers::FlatBufferBuilder b;
    auto hello = fb::CreateHello(b, 1);
    fb::FinishFrameBuffer(b, fb::CreateFrame(b, static_cast<fb::Body>(42), hello.Union()));
    EXPECT_EQ(decode_error({b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()}),
              ErrorCode::kMalformedMessage);
  }
  {
    // Built field by field: the generated FrameBuilder would assert on the missing required body.
    flatbuffers::FlatBufferBuilder b;
    auto start = b.StartTable();
    b.Finish(flatbuffers::Offset<fb::Frame>(b.EndTable(start)), fb::FrameIdentifier());
    EXPECT_EQ(decode_error({b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()}),
              ErrorCode::kMalformedMessage);
  }
}

TEST(CodecMalformed, MissingRequiredRecordId) {
  flatbuffers::FlatBufferBuilder b;
  const fb::Version version(1, 2);
  auto start = b.StartTable();
  b.AddElement<uint8_t>(fb::Change::VT_OP, static_cast<uint8_t>(fb::ChangeOp::Create), 0);
  b.AddElement<uint16_t>(fb::Change::VT_ENTITY, static_cast<uint16_t>(EntityId::kAccount), 0);
  b.AddStruct(fb::Change::VT_VERSION, &version);
  flatbuffers::Offset<fb::Change> change(b.EndTable(start));
  auto txn = fb::CreateClientTxn(b, 5, 1, 0, b.CreateVector(&change, 1));
  auto push = fb::CreatePushTxns(b, 1, b.CreateVector(&txn, 1));
  fb::FinishFrameBuffer(b, fb::CreateFrame(b, fb::Body::PushTxns, push.Union()));
  EXPECT_EQ(decode_error({b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()}),
            ErrorCode::kMalformedMessage);
}

// ---- Content outside the model ----------------------------------------------------------------------------

TEST(CodecModel, UnknownEntity) {
  Change c = set(EntityId::kAccount, 1, f::kAccountName, Value::text("x"), 2000);
  c.entity = static_cast<EntityId>(77);
  EXPECT_EQ(push_error({c}), ErrorCode::kUnknownEntity);
  c.entity = EntityId::kNone;
  EXPECT_EQ(push_error({c}), ErrorCode::kUnknownEntity);

  protocol::ChangeBatch b;
  b.purges = {{static_cast<EntityId>(500), rid(1)}};
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kUnknownEntity);
}

TEST(CodecModel, UnknownField) {
  EXPECT_EQ(push_error({set(EntityId::kAccount, 1, 99, Value::text("x"), 2000)}), ErrorCode::kUnknownField);
  // Field 0 is the record itself: fine for create and delete, not for a set.
  EXPECT_EQ(push_error({set(EntityId::kAccount, 1, 0, Value::text("x"), 2000)}), ErrorCode::kUnknownField);
  Change del = sample_changes().back();
  del.seen.push_back({42, ver(1, 1)});
  EXPECT_EQ(push_error({del}), ErrorCode::kUnknownField);

  RecordState r = sample_account();
  r.fields.push_back(FieldState{});
  r.fields.back().field = 11;
  protocol::BootstrapPage page;
  page.records = {r};
  EXPECT_EQ(decode_error(codec::encode(page)), ErrorCode::kUnknownField);
}

TEST(CodecModel, TypeMismatch) {
  EXPECT_EQ(push_error({set(EntityId::kAccount, 1, f::kAccountName, Value::integer(5), 2000)}),
            ErrorCode::kTypeMismatch);
  EXPECT_EQ(push_error({set(EntityId::kAccount, 1, kAccountCreditLimit, Value::text("5"), 2000)}),
            ErrorCode::kTypeMismatch);
  EXPECT_EQ(push_error({set(EntityId::kVisit, 3, kVisitLatitude, Value::integer(47), 2000)}),
            ErrorCode::kTypeMismatch);
  Change append = set(EntityId::kAccount, 1, kAccountNotes, Value::integer(1), 2000);
  append.op = ChangeOp::kAppend;
  EXPECT_EQ(push_error({append}), ErrorCode::kTypeMismatch);
  append.value = Value::null();
  EXPECT_EQ(push_error({append}), ErrorCode::kTypeMismatch);

  RecordState r = sample_account();
  r.fields[0].value = Value::boolean(true);
  protocol::ChangeBatch b;
  b.records = {r};
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kTypeMismatch);

  ConflictRecord c = sample_conflicts()[0];
  c.loser.value = Value::real(1.5);
  b = {};
  b.conflicts = {c};
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kTypeMismatch);
}

TEST(CodecModel, NullIsLeftToTheRules) {
  // A null for a non-nullable field passes the codec; rules.h rejects it with kNullViolation.
  protocol::PushTxns m{
      1, {ClientTxn{5, 1, 0, {set(EntityId::kAccount, 1, f::kAccountName, Value::null(), 2000)}}}};
  expect_round_trip(m);
}

TEST(CodecModel, UnknownEnumValues) {
  Change c = set(EntityId::kAccount, 1, f::kAccountName, Value::text("x"), 2000);
  c.op = static_cast<ChangeOp>(9);
  EXPECT_EQ(push_error({c}), ErrorCode::kMalformedMessage);
  c.op = static_cast<ChangeOp>(0);
  EXPECT_EQ(push_error({c}), ErrorCode::kMalformedMessage);

  protocol::ChangeBatch b;
  b.conflicts = sample_conflicts();
  b.conflicts[1].kind = static_cast<ConflictKind>(7);
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kMalformedMessage);

  protocol::Welcome w = sample_welcome();
  w.role = static_cast<schema::Role>(5);
  EXPECT_EQ(decode_error(codec::encode(w)), ErrorCode::kMalformedMessage);

  protocol::PushAck ack = sample_ack();
  ack.results[2].outcome = static_cast<protocol::TxnOutcome>(0);
  EXPECT_EQ(decode_error(codec::encode(ack)), ErrorCode::kMalformedMessage);
  ack = sample_ack();
  ack.results[1].reason = static_cast<ErrorCode>(12345);
  EXPECT_EQ(decode_error(codec::encode(ack)), ErrorCode::kMalformedMessage);

  protocol::Error e = sample_error();
  e.code = static_cast<ErrorCode>(24);  // a gap in the list
  EXPECT_EQ(decode_error(codec::encode(e)), ErrorCode::kMalformedMessage);

  flatbuffers::FlatBufferBuilder fbb;
  auto value = fb::CreateValue(fbb, static_cast<fb::ValueKind>(9), 1);
  const fb::Id128 id(1, 2);
  const fb::Version version(3, 4);
  auto change = fb::CreateChange(fbb, fb::ChangeOp::Set, 1, &id, f::kAccountName, value, &version);
  auto txn = fb::CreateClientTxn(fbb, 5, 1, 0, fbb.CreateVector(&change, 1));
  auto push = fb::CreatePushTxns(fbb, 1, fbb.CreateVector(&txn, 1));
  fb::FinishFrameBuffer(fbb, fb::CreateFrame(fbb, fb::Body::PushTxns, push.Union()));
  EXPECT_EQ(decode_error({fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()}),
            ErrorCode::kMalformedMessage);
}

TEST(CodecModel, NonFiniteRealIsRefused) {
  for (double d : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    EXPECT_EQ(push_error({set(EntityId::kVisit, 3, kVisitLatitude, Value::real(d), 2000)}),
              ErrorCode::kValueInvalid);
  }
}

TEST(CodecModel, OrderingInvariantsOfRecordStates) {
  RecordState r = sample_account();
  std::swap(r.fields[0], r.fields[1]);
  protocol::BootstrapPage page;
  page.records = {r};
  EXPECT_EQ(decode_error(codec::encode(page)), ErrorCode::kMalformedMessage);

  r = sample_account();
  std::swap(r.fields.back().fragments[0], r.fields.back().fragments[1]);
  page.records = {r};
  EXPECT_EQ(decode_error(codec::encode(page)), ErrorCode::kMalformedMessage);
}

// ---- Limits -----------------------------------------------------------------------------------------------

TEST(CodecLimits, TooManyChangesInATransaction) {
  std::vector<Change> changes(tuning::kMaxChangesPerTxn + 1,
                              set(EntityId::kAccount, 1, f::kAccountName, Value::text("n"), 2000));
  EXPECT_EQ(push_error(changes), ErrorCode::kTooManyChanges);

  protocol::ChangeBatch b;
  b.txns.push_back(ServerTxn{1, 5, "rep-1", 1, std::move(changes)});
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kTooManyChanges);
}

TEST(CodecLimits, TooManyTransactionsOrRecords) {
  protocol::PushTxns m;
  for (uint64_t i = 0; i <= tuning::kMaxTxnsPerPush; ++i) m.txns.push_back(ClientTxn{5, i + 1, 0, {}});
  EXPECT_EQ(decode_error(codec::encode(m)), ErrorCode::kTooManyChanges);

  // Three full transactions: each within kMaxChangesPerTxn, together over kMaxChangesPerPush.
  m.txns.assign(3, ClientTxn{5, 1, 0, {}});
  for (uint64_t i = 0; i < 3; ++i) {
    m.txns[i].node_seq = i + 1;
    m.txns[i].changes.assign(tuning::kMaxChangesPerTxn,
                             set(EntityId::kAccount, 1, f::kAccountName, Value::text("n"), 2000));
  }
  static_assert(3 * tuning::kMaxChangesPerTxn > tuning::kMaxChangesPerPush);
  EXPECT_EQ(decode_error(codec::encode(m)), ErrorCode::kTooManyChanges);

  protocol::ChangeBatch b;
  b.purges.assign(tuning::kMaxRecordsPerMessage + 1, RecordKey{EntityId::kAccount, rid(1)});
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kTooManyChanges);

  RecordState tiny;
  tiny.entity = EntityId::kProduct;
  b = {};
  b.records.assign(tuning::kMaxRecordsPerMessage + 1, tiny);
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kTooManyChanges);

  ConflictRecord c = sample_conflicts()[0];
  protocol::BootstrapPage page;
  page.conflicts.assign(tuning::kMaxRecordsPerMessage + 1, c);
  EXPECT_EQ(decode_error(codec::encode(page)), ErrorCode::kTooManyChanges);

  // In a push ack the limit holds for the whole message, not per result.
  protocol::PushAck ack;
  for (uint64_t i = 0; i < 2; ++i) {
    protocol::TxnResult r;
    r.node_seq = i + 1;
    r.outcome = protocol::TxnOutcome::kRejected;
    r.absent.assign(tuning::kMaxRecordsPerMessage / 2 + 1, RecordKey{EntityId::kAccount, rid(1)});
    ack.results.push_back(r);
  }
  EXPECT_EQ(decode_error(codec::encode(ack)), ErrorCode::kTooManyChanges);
}

TEST(CodecLimits, OversizedStrings) {
  EXPECT_EQ(push_error({set(EntityId::kAccount, 1, kAccountAddress,
                            Value::text(std::string(tuning::kMaxTextBytes + 1, 'x')), 2000)}),
            ErrorCode::kValueInvalid);
  Change append = set(EntityId::kAccount, 1, kAccountNotes,
                      Value::text(std::string(tuning::kMaxTextBytes + 1, 'x')), 2000);
  append.op = ChangeOp::kAppend;
  EXPECT_EQ(push_error({append}), ErrorCode::kValueInvalid);

  protocol::Hello h = sample_hello();
  h.token = std::string(tuning::kMaxTokenBytes + 1, 't');
  EXPECT_EQ(decode_error(codec::encode(h)), ErrorCode::kValueInvalid);

  protocol::Welcome w = sample_welcome();
  w.user = std::string(tuning::kMaxIdentifierBytes + 1, 'u');
  EXPECT_EQ(decode_error(codec::encode(w)), ErrorCode::kValueInvalid);

  protocol::ChangeBatch b = sample_batch();
  b.txns[1].origin_user = std::string(tuning::kMaxIdentifierBytes + 1, 'u');
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kValueInvalid);

  b = sample_batch();
  b.records[0].fields.back().fragments[1].user = std::string(tuning::kMaxIdentifierBytes + 1, 'u');
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kValueInvalid);

  b = sample_batch();
  b.records[0].fields[0].value = Value::text(std::string(tuning::kMaxTextBytes + 1, 'x'));
  EXPECT_EQ(decode_error(codec::encode(b)), ErrorCode::kValueInvalid);
}

TEST(CodecErrors, MessageSaysWhere) {
  protocol::PushTxns m = sample_push();
  m.txns[1].changes[1].field = 99;
  Result<Message> r = decode(codec::encode(m));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnknownField);
  EXPECT_EQ(r.status().message(), "txns[1]: changes[1]: unknown field 99 of entity account");
}

}  // namespace
}  // namespace fieldsync

namespace fieldsync {
namespace {

// ---- Stored encodings (the stores' blobs)
// ---------------------------------------------------------------------

TEST(CodecStored, RecordsTransactionsAndConflictsRoundTrip) {
  for (const RecordState& r : {sample_account(), sample_tombstone()}) {
    Result<RecordState> back = codec::decode_record(codec::encode_record(r));
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ(back.value(), r);
  }
  ClientTxn t;
  t.node = 7;
  t.node_seq = 42;
  t.created_at_ms = 1'699'000'000'000;
  t.changes = sample_changes();
  Result<ClientTxn> tb = codec::decode_client_txn(codec::encode_client_txn(t));
  ASSERT_TRUE(tb.is_ok()) << tb.status().to_string();
  EXPECT_EQ(tb.value(), t);

  ServerTxn st;
  st.server_seq = 9;
  st.origin_node = 7;
  st.origin_user = "rep-7";
  st.origin_node_seq = 42;
  st.changes = sample_changes();
  st.moves.push_back(ScopeMove{EntityId::kAccount, rid(1), ScopeKey{ScopeKey::Kind::kTerritory, "t-north"},
                               ScopeKey{ScopeKey::Kind::kTerritory, "t-south"}});
  Result<ServerTxn> sb = codec::decode_server_txn(codec::encode_server_txn(st));
  ASSERT_TRUE(sb.is_ok()) << sb.status().to_string();
  EXPECT_EQ(sb.value(), st);

  for (const ConflictRecord& c : sample_conflicts()) {
    Result<ConflictRecord> cb = codec::decode_conflict(codec::encode_conflict(c));
    ASSERT_TRUE(cb.is_ok()) << cb.status().to_string();
    EXPECT_EQ(cb.value(), c);
  }
}

TEST(CodecStored, CorruptBlobsAreTypedErrors) {
  std::vector<uint8_t> bytes = codec::encode_record(sample_account());
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + cut);
    Result<RecordState> r = codec::decode_record(prefix);
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().code(), ErrorCode::kMalformedMessage);
    }
  }
  EXPECT_FALSE(codec::decode_record({}).is_ok());
  std::vector<uint8_t> junk(64, 0xff);
  EXPECT_EQ(codec::decode_client_txn(junk).status().code(), ErrorCode::kMalformedMessage);
}

}  // namespace
}  // namespace fieldsync

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
#include <thread>
#include <vector>

#include <flatbuffers/flatbuffers.h>
#include <zstd.h>

#include "fieldsync/schema/fieldsync_generated.h"
#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/tuning.h"
#include "support/codec_samples.h"

namespace fieldsync {
namespace {

namespace fb = ::fieldsync::wire;
namespace f = schema::fields;
using protocol::Message;

using namespace samples;  // support/codec_samples.h

Result<Message> decode(const std::vector<uint8_t>& frame) {
  return codec::decode(frame);
}

// The forms a frame can take: v1; v2 (compact forms) uncompressed; v2 compressed whatever its size (only the
// compressible messages); v2 as sent (compressed above the threshold).
std::vector<codec::EncodeOptions> frame_forms() {
  codec::EncodeOptions v1, v2_plain, v2_compressed, v2;
  v2_plain.protocol_version = v2_compressed.protocol_version = v2.protocol_version = 2;
  v2_plain.compression_level = 0;
  v2_compressed.compress_min_bytes = 0;
  return {v1, v2_plain, v2_compressed, v2};
}

std::string form_name(const codec::EncodeOptions& o) {
  return "v" + std::to_string(o.protocol_version) + " level " + std::to_string(o.compression_level) +
         " from " + std::to_string(o.compress_min_bytes) + " bytes";
}

void expect_round_trip(const Message& m) {
  SCOPED_TRACE(protocol::message_name(m));
  for (const codec::EncodeOptions& form : frame_forms()) {
    SCOPED_TRACE(form_name(form));
    std::vector<uint8_t> frame = codec::encode(m, form);
    Result<Message> back = decode(frame);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ(back->index(), m.index());
    EXPECT_TRUE(*back == m);
    // Encoding is deterministic, so the re-encoded frame is byte for byte the same.
    EXPECT_EQ(codec::encode(*back, form), frame);
  }
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

// The error decode() gives for `m` in every frame form; the v2 forms must be refused exactly like v1.
ErrorCode message_error(const Message& m) {
  const std::vector<codec::EncodeOptions> forms = frame_forms();
  const ErrorCode v1 = decode_error(codec::encode(m, forms[0]));
  for (const codec::EncodeOptions& form : forms) {
    SCOPED_TRACE(form_name(form));
    EXPECT_EQ(decode_error(codec::encode(m, form)), v1);
  }
  return v1;
}

ErrorCode push_error(std::vector<Change> changes) {
  protocol::PushTxns m;
  m.request_id = 1;
  ClientTxn t;
  t.node = 5;
  t.node_seq = 1;
  t.changes = std::move(changes);
  m.txns.push_back(std::move(t));
  return message_error(m);
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

// Hello.app_version (appended to the table, still protocol 2): carried when set; a Hello from an app built
// before the field decodes with none; too long or unprintable is refused.
TEST(CodecHelloAppVersion, RoundTripsAndIsAbsentFromOlderApps) {
  protocol::Hello h = sample_hello();
  h.app_version = std::string("2.4.1 (317)");
  expect_round_trip(h);
  h.app_version = std::string(tuning::kMaxAppVersionBytes, 'v');
  expect_round_trip(h);
  // What an older device sends: the table without the field, built as its generated code did.
  const protocol::Hello old = sample_hello();
  flatbuffers::FlatBufferBuilder b;
  auto token = b.CreateString(old.token);
  auto hello = fb::CreateHello(b, old.protocol_version, old.schema_version, old.node, token, old.cursor,
                               old.client_time_ms, old.client_hlc);
  fb::FinishFrameBuffer(b, fb::CreateFrame(b, fb::Body::Hello, hello.Union()));
  Result<Message> back = decode({b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()});
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(std::get<protocol::Hello>(*back), old);
  EXPECT_TRUE(std::get<protocol::Hello>(*back).app_version.empty());
  // And a Hello without one is encoded without the field: the bytes an older device sends.
  EXPECT_LT(codec::encode(old).size(), codec::encode(h).size());
}

TEST(CodecHelloAppVersion, TooLongOrUnprintableIsRefused) {
  for (const std::string& bad : {std::string(tuning::kMaxAppVersionBytes + 1, 'v'), std::string("2.4\n1"),
                                 std::string("v\x7f"), std::string("caf\xc3\xa9")}) {
    protocol::Hello h = sample_hello();
    h.app_version = bad;
    EXPECT_EQ(message_error(h), ErrorCode::kValueInvalid) << bad;
  }
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
  // The largest limits of any protocol version (SyncServer holds version 1 sessions to version 1's).
  for (uint64_t i = 0; i < tuning::kMaxTxnsPerPushV2; ++i) m.txns.push_back(ClientTxn{5, i + 1, 0, {}});
  m.txns[0].changes.assign(tuning::kMaxChangesPerTxn,
                           set(EntityId::kAccount, 1, f::kAccountName, Value::text("n"), 2000));
  for (size_t i = 1; i < 4; ++i) m.txns[i].changes = m.txns[0].changes;  // exactly kMaxChangesPerPushV2
  static_assert(4 * tuning::kMaxChangesPerTxn == tuning::kMaxChangesPerPushV2);
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
  EXPECT_EQ(message_error(b), ErrorCode::kUnknownEntity);
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
  EXPECT_EQ(message_error(page), ErrorCode::kUnknownField);
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
  EXPECT_EQ(message_error(b), ErrorCode::kTypeMismatch);

  ConflictRecord c = sample_conflicts()[0];
  c.loser.value = Value::real(1.5);
  b = {};
  b.conflicts = {c};
  EXPECT_EQ(message_error(b), ErrorCode::kTypeMismatch);
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
  EXPECT_EQ(message_error(b), ErrorCode::kMalformedMessage);

  protocol::Welcome w = sample_welcome();
  w.role = static_cast<schema::Role>(5);
  EXPECT_EQ(message_error(w), ErrorCode::kMalformedMessage);

  protocol::PushAck ack = sample_ack();
  ack.results[2].outcome = static_cast<protocol::TxnOutcome>(0);
  EXPECT_EQ(message_error(ack), ErrorCode::kMalformedMessage);
  ack = sample_ack();
  ack.results[1].reason = static_cast<ErrorCode>(12345);
  EXPECT_EQ(message_error(ack), ErrorCode::kMalformedMessage);

  protocol::Error e = sample_error();
  e.code = static_cast<ErrorCode>(24);  // a gap in the list
  EXPECT_EQ(message_error(e), ErrorCode::kMalformedMessage);

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
  EXPECT_EQ(message_error(page), ErrorCode::kMalformedMessage);

  r = sample_account();
  std::swap(r.fields.back().fragments[0], r.fields.back().fragments[1]);
  page.records = {r};
  EXPECT_EQ(message_error(page), ErrorCode::kMalformedMessage);
}

// ---- Limits -----------------------------------------------------------------------------------------------

TEST(CodecLimits, TooManyChangesInATransaction) {
  std::vector<Change> changes(tuning::kMaxChangesPerTxn + 1,
                              set(EntityId::kAccount, 1, f::kAccountName, Value::text("n"), 2000));
  EXPECT_EQ(push_error(changes), ErrorCode::kTooManyChanges);

  protocol::ChangeBatch b;
  b.txns.push_back(ServerTxn{1, 5, "rep-1", 1, std::move(changes)});
  EXPECT_EQ(message_error(b), ErrorCode::kTooManyChanges);
}

// The largest push a version 2 session may send decodes in every frame form (the compact form once kept
// version 1's limit of kMaxTxnsPerPush and refused every full version 2 push).
TEST(CodecLimits, TheLargestVersionTwoPushDecodesInEveryForm) {
  protocol::PushTxns m;
  m.request_id = 1;
  const size_t per_txn = tuning::kMaxChangesPerPushV2 / tuning::kMaxTxnsPerPushV2;
  for (uint64_t i = 0; i < tuning::kMaxTxnsPerPushV2; ++i) {
    ClientTxn t{5, i + 1, 0, {}};
    t.changes.assign(per_txn, set(EntityId::kAccount, i + 1, f::kAccountName, Value::text("n"), 2000 + i));
    m.txns.push_back(std::move(t));
  }
  for (const codec::EncodeOptions& form : frame_forms()) {
    SCOPED_TRACE(form_name(form));
    Result<Message> back = decode(codec::encode(m, form));
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_TRUE(*back == Message(m));
  }
}

TEST(CodecLimits, TooManyTransactionsOrRecords) {
  protocol::PushTxns m;
  for (uint64_t i = 0; i <= tuning::kMaxTxnsPerPushV2; ++i) m.txns.push_back(ClientTxn{5, i + 1, 0, {}});
  EXPECT_EQ(message_error(m), ErrorCode::kTooManyChanges);

  // Five full transactions: each within kMaxChangesPerTxn, together over kMaxChangesPerPushV2.
  m.txns.assign(5, ClientTxn{5, 1, 0, {}});
  for (uint64_t i = 0; i < 5; ++i) {
    m.txns[i].node_seq = i + 1;
    m.txns[i].changes.assign(tuning::kMaxChangesPerTxn,
                             set(EntityId::kAccount, 1, f::kAccountName, Value::text("n"), 2000));
  }
  static_assert(5 * tuning::kMaxChangesPerTxn > tuning::kMaxChangesPerPushV2);
  EXPECT_EQ(message_error(m), ErrorCode::kTooManyChanges);

  protocol::ChangeBatch b;
  b.purges.assign(tuning::kMaxRecordsPerMessage + 1, RecordKey{EntityId::kAccount, rid(1)});
  EXPECT_EQ(message_error(b), ErrorCode::kTooManyChanges);

  RecordState tiny;
  tiny.entity = EntityId::kProduct;
  b = {};
  b.records.assign(tuning::kMaxRecordsPerMessage + 1, tiny);
  EXPECT_EQ(message_error(b), ErrorCode::kTooManyChanges);

  ConflictRecord c = sample_conflicts()[0];
  protocol::BootstrapPage page;
  page.conflicts.assign(tuning::kMaxRecordsPerMessage + 1, c);
  EXPECT_EQ(message_error(page), ErrorCode::kTooManyChanges);

  // In a push ack the limit holds for the whole message, not per result.
  protocol::PushAck ack;
  for (uint64_t i = 0; i < 2; ++i) {
    protocol::TxnResult r;
    r.node_seq = i + 1;
    r.outcome = protocol::TxnOutcome::kRejected;
    r.absent.assign(tuning::kMaxRecordsPerMessage / 2 + 1, RecordKey{EntityId::kAccount, rid(1)});
    ack.results.push_back(r);
  }
  EXPECT_EQ(message_error(ack), ErrorCode::kTooManyChanges);
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
  EXPECT_EQ(message_error(h), ErrorCode::kValueInvalid);

  protocol::Welcome w = sample_welcome();
  w.user = std::string(tuning::kMaxIdentifierBytes + 1, 'u');
  EXPECT_EQ(message_error(w), ErrorCode::kValueInvalid);

  protocol::ChangeBatch b = sample_batch();
  b.txns[1].origin_user = std::string(tuning::kMaxIdentifierBytes + 1, 'u');
  EXPECT_EQ(message_error(b), ErrorCode::kValueInvalid);

  b = sample_batch();
  b.records[0].fields.back().fragments[1].user = std::string(tuning::kMaxIdentifierBytes + 1, 'u');
  EXPECT_EQ(message_error(b), ErrorCode::kValueInvalid);

  b = sample_batch();
  b.records[0].fields[0].value = Value::text(std::string(tuning::kMaxTextBytes + 1, 'x'));
  EXPECT_EQ(message_error(b), ErrorCode::kValueInvalid);
}

TEST(CodecErrors, MessageSaysWhere) {
  protocol::PushTxns m = sample_push();
  m.txns[1].changes[1].field = 99;
  for (const codec::EncodeOptions& form : frame_forms()) {
    Result<Message> r = decode(codec::encode(m, form));
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kUnknownField);
    EXPECT_EQ(r.status().message(), "txns[1]: changes[1]: unknown field 99 of entity account");
  }
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

// The stored blobs are built with the thread's reused builder (encode_root): what the thread encoded before
// -- a smaller blob, a larger one, one big enough that the builder gives its buffer back -- changes no byte.
// The reference is each blob encoded on a thread of its own, i.e. by a fresh builder, as before the reuse.
TEST(CodecStored, BlobsDoNotDependOnWhatTheThreadEncodedBefore) {
  auto fresh = [](auto encode) {
    std::vector<uint8_t> out;
    std::thread([&] { out = encode(); }).join();
    return out;
  };
  ServerTxn big;
  big.server_seq = 9;
  big.origin_node = 7;
  big.origin_user = "rep-7";
  big.origin_node_seq = 42;
  for (uint64_t i = 0; i < 40; ++i)  // ~160 kB: past the 64 kB a thread's builder keeps
    big.changes.push_back(set(EntityId::kAccount, i + 1, f::kAccountName,
                              Value::text(std::string(4000, 'a' + i % 26)), 1000 + i));
  ServerTxn small = big;
  small.changes.resize(2);
  const std::vector<uint8_t> account = fresh([] { return codec::encode_record(sample_account()); });
  const std::vector<uint8_t> tomb = fresh([] { return codec::encode_record(sample_tombstone()); });
  const std::vector<uint8_t> big_bytes = fresh([&] { return codec::encode_server_txn(big); });
  const std::vector<uint8_t> small_bytes = fresh([&] { return codec::encode_server_txn(small); });
  ASSERT_GT(big_bytes.size(), 64u * 1024);

  EXPECT_EQ(codec::encode_record(sample_account()), account);
  EXPECT_EQ(codec::encode_server_txn(small), small_bytes);
  EXPECT_EQ(codec::encode_record(sample_account()), account);
  EXPECT_EQ(codec::encode_server_txn(big), big_bytes);
  EXPECT_EQ(codec::encode_record(sample_tombstone()), tomb);  // after the builder gave its buffer back
  EXPECT_EQ(codec::encode_server_txn(small), small_bytes);
  EXPECT_EQ(codec::encode_server_txn(big), big_bytes);
  EXPECT_EQ(codec::encode_record(sample_account()), account);
  Result<ServerTxn> back = codec::decode_server_txn(codec::encode_server_txn(big));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back.value(), big);
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

// ---- Protocol version 2: compact forms and compressed frames ------------------------------------------

fb::Body body_type(const std::vector<uint8_t>& frame) {
  return fb::GetFrame(frame.data())->body_type();
}

std::vector<uint8_t> finish(flatbuffers::FlatBufferBuilder& b, fb::Body type,
                            flatbuffers::Offset<void> body) {
  fb::FinishFrameBuffer(b, fb::CreateFrame(b, type, body));
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

// The compressed frame layout of docs/protocol.md: declared size (uint32 LE), "FSZ1", one zstd frame.
std::vector<uint8_t> compressed_frame(uint32_t declared, const std::vector<uint8_t>& zstd_frame) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 4; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(declared >> (8 * i));
  std::memcpy(out.data() + 4, "FSZ1", 4);
  out.insert(out.end(), zstd_frame.begin(), zstd_frame.end());
  return out;
}

std::vector<uint8_t> zstd(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
  const size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

codec::EncodeOptions v2_plain() {
  codec::EncodeOptions o;
  o.protocol_version = 2;
  o.compression_level = 0;
  return o;
}

TEST(CodecV2, PushAndBootstrapPageUseTheCompactFormsOtherMessagesTheV1Form) {
  EXPECT_EQ(body_type(codec::encode(sample_push(), v2_plain())), fb::Body::PushTxnsCompact);
  EXPECT_EQ(body_type(codec::encode(sample_bootstrap_page(), v2_plain())), fb::Body::BootstrapPageCompact);
  for (const Message& m : sample_messages()) {
    if (std::holds_alternative<protocol::PushTxns>(m) || std::holds_alternative<protocol::BootstrapPage>(m))
      continue;
    EXPECT_EQ(codec::encode(m, v2_plain()), codec::encode(m)) << protocol::message_name(m);
  }
  // Version 1 (the default) is exactly the v1 form.
  for (const Message& m : sample_messages()) EXPECT_EQ(codec::encode(m, 1), codec::encode(m));
}

TEST(CodecV2, HandshakeIsNeverCompactNorCompressed) {
  codec::EncodeOptions always;
  always.protocol_version = 2;
  always.compress_min_bytes = 0;
  protocol::Hello h = sample_hello();
  h.token = std::string(3000, 't');  // large and repetitive: it would compress well
  EXPECT_EQ(codec::encode(h, always), codec::encode(h));
  protocol::Welcome w = sample_welcome();
  w.user = std::string(200, 'u');
  EXPECT_EQ(codec::encode(w, always), codec::encode(w));
  // And a compressed handshake from a peer is refused.
  EXPECT_EQ(
      decode_error(compressed_frame(static_cast<uint32_t>(codec::encode(h).size()), zstd(codec::encode(h)))),
      ErrorCode::kMalformedMessage);
}

TEST(CodecV2, OnlyFramesWithoutSecretsAboveTheThresholdAreCompressed) {
  protocol::PushTxns push;
  push.txns.push_back(ClientTxn{5, 1, 0, {}});
  for (int i = 0; i < 40; ++i)
    push.txns[0].changes.push_back(
        set(EntityId::kAccount, 1, kAccountAddress, Value::text("Hauptstrasse 1"), 2000 + i));
  const std::vector<uint8_t> frame = codec::encode(push, 2);
  ASSERT_GE(frame.size(), 8u);
  EXPECT_EQ(std::memcmp(frame.data() + 4, "FSZ1", 4), 0);
  EXPECT_LT(frame.size(), codec::encode(push, v2_plain()).size());
  // Below the threshold: as is (an ack of one result).
  protocol::PushAck small;
  small.results.push_back(protocol::TxnResult{1, protocol::TxnOutcome::kApplied, 500});
  ASSERT_LT(codec::encode(small, v2_plain()).size(), tuning::kCompressMinBytes);
  EXPECT_EQ(codec::encode(small, 2), codec::encode(small, v2_plain()));
  // Live batches are not compressed (an outsider can time them: docs/DESIGN.md), a pull's answer is.
  protocol::ChangeBatch batch = sample_batch();
  for (int i = 0; i < 5; ++i) batch.txns.push_back(batch.txns[0]);
  EXPECT_TRUE(codec::compressible(batch));
  EXPECT_EQ(std::memcmp(codec::encode(batch, 2).data() + 4, "FSZ1", 4), 0);
  batch.request_id = 0;
  EXPECT_FALSE(codec::compressible(batch));
  EXPECT_EQ(codec::encode(batch, 2), codec::encode(batch));
  EXPECT_FALSE(codec::compressible(sample_hello()));
  EXPECT_FALSE(codec::compressible(sample_welcome()));
  EXPECT_FALSE(codec::compressible(sample_error()));
}

TEST(CodecV2, JoinedAppendTextIsNotSentTwice) {
  protocol::BootstrapPage page;
  page.records = {sample_account()};
  ASSERT_EQ(page.records[0].fields.back().field, kAccountNotes);
  FieldState& notes = page.records[0].fields.back();
  notes.value = Value::text(join_fragments(notes.fragments));  // as merge.h keeps it
  expect_round_trip(page);
  const size_t joined = codec::encode(page, v2_plain()).size();
  page.records[0].fields.back().value = Value::text("not the fragments");  // kept as is, and round-trips
  expect_round_trip(page);
  EXPECT_LT(joined, codec::encode(page, v2_plain()).size());
}

TEST(CodecV2, CompressedFrameDeclaringTooMuchIsRefusedBeforeAllocating) {
  // A bomb: 64 MiB of zeros compress to a few KiB; the frame says so and is refused on its header.
  const std::vector<uint8_t> zeros(64 << 20, 0);
  const std::vector<uint8_t> z = zstd(zeros);
  ASSERT_LT(z.size(), 64u * 1024);
  EXPECT_EQ(decode_error(compressed_frame(64u << 20, z)), ErrorCode::kMessageTooLarge);
  EXPECT_EQ(decode_error(compressed_frame(0xffffffffu, z)), ErrorCode::kMessageTooLarge);
  // The header lies (small), the zstd frame says 64 MiB: refused on the mismatch, nothing inflated.
  EXPECT_EQ(decode_error(compressed_frame(1000, z)), ErrorCode::kMalformedMessage);
  // Just over the limit, honestly declared.
  const std::vector<uint8_t> over(tuning::kMaxMessageBytes + 1, 0);
  EXPECT_EQ(decode_error(compressed_frame(static_cast<uint32_t>(over.size()), zstd(over))),
            ErrorCode::kMessageTooLarge);
}

TEST(CodecV2, LyingTruncatedAndGarbageCompressedFramesAreRefused) {
  const std::vector<uint8_t> inner = codec::encode(sample_push(), v2_plain());
  const std::vector<uint8_t> z = zstd(inner);
  const uint32_t size = static_cast<uint32_t>(inner.size());
  ASSERT_TRUE(decode(compressed_frame(size, z)).is_ok());
  EXPECT_EQ(decode_error(compressed_frame(size + 1, z)), ErrorCode::kMalformedMessage);
  EXPECT_EQ(decode_error(compressed_frame(size - 1, z)), ErrorCode::kMalformedMessage);
  // Every truncation.
  const std::vector<uint8_t> whole = compressed_frame(size, z);
  for (size_t n = 0; n < whole.size(); ++n) {
    std::vector<uint8_t> cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(decode(cut).is_ok()) << n;
  }
  // Trailing bytes, a second zstd frame.
  std::vector<uint8_t> trailing = whole;
  trailing.push_back(0);
  EXPECT_EQ(decode_error(trailing), ErrorCode::kMalformedMessage);
  std::vector<uint8_t> two = z;
  two.insert(two.end(), z.begin(), z.end());
  EXPECT_EQ(decode_error(compressed_frame(2 * size, two)), ErrorCode::kMalformedMessage);
  // A zstd frame that does not declare its size (streaming), garbage instead of zstd.
  {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
    std::vector<uint8_t> out(ZSTD_compressBound(inner.size()));
    const size_t n = ZSTD_compress2(c, out.data(), out.size(), inner.data(), inner.size());
    ZSTD_freeCCtx(c);
    ASSERT_FALSE(ZSTD_isError(n));
    out.resize(n);
    EXPECT_EQ(decode_error(compressed_frame(size, out)), ErrorCode::kMalformedMessage);
  }
  std::mt19937 rng(17);
  for (int i = 0; i < 200; ++i) {
    std::vector<uint8_t> garbage(1 + rng() % 300);
    for (uint8_t& b : garbage) b = static_cast<uint8_t>(rng());
    EXPECT_FALSE(decode(compressed_frame(size, garbage)).is_ok());
  }
  // Byte flips of a good compressed frame never crash, and never pass as a different message.
  for (size_t i = 8; i < whole.size(); ++i) {
    std::vector<uint8_t> flipped = whole;
    flipped[i] ^= 0x5a;
    Result<Message> r = decode(flipped);
    if (r.is_ok()) expect_stable(*r);
  }
  // Decompressed garbage, and a compressed frame inside a compressed frame.
  std::vector<uint8_t> noise(5000);
  for (uint8_t& b : noise) b = static_cast<uint8_t>(rng());
  EXPECT_EQ(decode_error(compressed_frame(5000, zstd(noise))), ErrorCode::kMalformedMessage);
  EXPECT_EQ(decode_error(compressed_frame(static_cast<uint32_t>(whole.size()), zstd(whole))),
            ErrorCode::kMalformedMessage);
}

TEST(CodecV2, CompactColumnsOfTheWrongLengthAreRefused) {
  const std::vector<uint64_t> one{5}, two{5, 6};
  const std::vector<uint32_t> count1{1}, count2{2};
  const std::vector<uint16_t> account{static_cast<uint16_t>(EntityId::kAccount)}, name{f::kAccountName};
  const std::vector<fb::Id128> id{fb::Id128(1, 2)};
  const std::vector<uint8_t> set_op{2}, text_kind{4}, x{'x'};
  const std::vector<uint64_t> hlc{make_hlc(1'700'000'000'000, 0)};
  auto push = [&](const std::vector<uint64_t>* nodes, const std::vector<uint32_t>* counts,
                  const std::vector<uint32_t>* sizes, const std::vector<uint32_t>* base_changes,
                  const std::vector<fb::Version>* bases, const std::vector<uint8_t>* kinds) {
    flatbuffers::FlatBufferBuilder b;
    auto cols = fb::CreateTxnColumnsDirect(b, nodes, nodes, nodes, counts, &account, &id, &count1, &set_op,
                                           &name, kinds, &hlc, nullptr, nullptr, nullptr, nullptr, sizes, &x,
                                           base_changes, bases);
    return finish(b, fb::Body::PushTxnsCompact, fb::CreatePushTxnsCompact(b, 1, cols).Union());
  };
  const std::vector<fb::Version> base{fb::Version(1, 1)};
  const std::vector<uint32_t> at0{0}, at1{1};
  ASSERT_TRUE(decode(push(&one, &count1, &count1, nullptr, nullptr, &text_kind)).is_ok());
  EXPECT_TRUE(decode(push(&one, &count1, &count1, &at0, &base, &text_kind)).is_ok());
  EXPECT_EQ(decode_error(push(&two, &count1, &count1, nullptr, nullptr, &text_kind)),
            ErrorCode::kMalformedMessage);
  EXPECT_EQ(decode_error(push(&one, &count2, &count1, nullptr, nullptr, &text_kind)),
            ErrorCode::kMalformedMessage);
  EXPECT_EQ(decode_error(push(&one, &count1, &count2, nullptr, nullptr, &text_kind)),
            ErrorCode::kMalformedMessage);
  EXPECT_EQ(decode_error(push(&one, &count1, &count1, &at1, &base, &text_kind)),
            ErrorCode::kMalformedMessage);
  EXPECT_EQ(decode_error(push(&one, &count1, &count1, &at0, nullptr, &text_kind)),
            ErrorCode::kMalformedMessage);
  const std::vector<uint8_t> bad_kind{9}, int_kind{1};
  EXPECT_EQ(decode_error(push(&one, &count1, &count1, nullptr, nullptr, &bad_kind)),
            ErrorCode::kMalformedMessage);
  // An int value without an int, and a text left over.
  EXPECT_EQ(decode_error(push(&one, &count1, &count1, nullptr, nullptr, &int_kind)),
            ErrorCode::kMalformedMessage);
}

TEST(CodecV2, CompactRecordColumnsAreCheckedLikeRecordStates) {
  auto page = [](const std::vector<uint32_t>& users, const std::vector<uint8_t>& kinds,
                 const std::vector<uint16_t>& fields, const std::vector<uint32_t>& tomb_at) {
    flatbuffers::FlatBufferBuilder b;
    const std::vector<uint16_t> entities{static_cast<uint16_t>(EntityId::kAccount)};
    const std::vector<fb::Id128> ids{fb::Id128(1, 2)};
    const std::vector<uint64_t> zero{0}, hlcs(fields.size(), 0);
    const std::vector<uint32_t> counts{static_cast<uint32_t>(fields.size())};
    std::vector<uint32_t> sizes;
    std::vector<uint8_t> text;
    for (uint8_t k : kinds)
      if (k == 4) sizes.push_back(1), text.push_back('a');
    std::vector<flatbuffers::Offset<fb::Tombstone>> tombs;
    for (uint32_t at : tomb_at) tombs.push_back(fb::CreateTombstone(b, at, true));
    std::vector<flatbuffers::Offset<flatbuffers::String>> table{b.CreateString("rep-1")};
    auto cols = fb::CreateRecordColumnsDirect(
        b, &entities, &ids, &zero, &zero, &counts, &tombs, &fields, &kinds, &hlcs, nullptr, &users, nullptr,
        nullptr, nullptr, &sizes, &text, nullptr, nullptr, nullptr, nullptr, nullptr, &table);
    return finish(b, fb::Body::BootstrapPageCompact,
                  fb::CreateBootstrapPageCompact(b, 1, 0, 0, 0, cols).Union());
  };
  const std::vector<uint16_t> name_city{f::kAccountName, 4};
  ASSERT_TRUE(decode(page({0, 0}, {4, 4}, name_city, {})).is_ok());
  EXPECT_TRUE(decode(page({0, 0}, {4, 4}, name_city, {0})).is_ok());
  EXPECT_EQ(decode_error(page({0, 1}, {4, 4}, name_city, {})), ErrorCode::kMalformedMessage);  // user index
  EXPECT_EQ(decode_error(page({0, 0}, {4, 4}, {4, f::kAccountName}, {})), ErrorCode::kMalformedMessage);
  EXPECT_EQ(decode_error(page({0, 0}, {4, 4}, {f::kAccountName, 99}, {})), ErrorCode::kUnknownField);
  EXPECT_EQ(decode_error(page({0, 0}, {4, 1}, name_city, {})), ErrorCode::kMalformedMessage);  // no int
  EXPECT_EQ(decode_error(page({0, 0}, {4, 5}, name_city, {})), ErrorCode::kMalformedMessage);  // no fragments
  EXPECT_EQ(decode_error(page({0, 0}, {4, 4}, name_city, {1})), ErrorCode::kMalformedMessage);  // no record 1
}

TEST(CodecV2, ExceptionsToTheCompactDefaultsRoundTrip) {
  // A change whose version node is not its transaction's, a base on a create, interleaved records (runs of
  // one), wrapping deltas (clocks and sequence numbers going down), a record state whose field nodes differ
  // from its creation's and whose created version is zero, a state with a tombstone part but not deleted.
  protocol::PushTxns push = sample_push();
  push.txns[0].changes[3].version.node = 42;
  push.txns[0].changes[0].base = ver(5, 6);
  std::swap(push.txns[0].changes[1], push.txns[0].changes[7]);
  push.txns[1].node_seq = 3;
  push.txns[1].created_at_ms = -5;
  push.txns[1].changes[0].version.hlc = 1;
  expect_round_trip(push);
  protocol::BootstrapPage page = sample_bootstrap_page();
  page.records[0].created = Version{};
  page.records[0].fields[1].version.node = 0;
  RecordState odd = sample_account();
  odd.deleted_by = "rep-9";
  odd.fields.clear();
  page.records.push_back(odd);
  expect_round_trip(page);
}

TEST(CodecV2, BigRealisticMessagesRoundTripInEveryForm) {
  protocol::PushTxns push;
  protocol::BootstrapPage page;
  for (uint64_t i = 0; i < 60; ++i) {
    ClientTxn t;
    t.node = 0xabcdef;
    t.node_seq = 1000 + i;
    t.created_at_ms = 1'700'000'000'000 + static_cast<int64_t>(i) * 1000;
    for (Change c : sample_changes()) {
      c.record = rid(i * 10 + static_cast<uint64_t>(c.record.lo % 7));
      c.version.hlc += i << 16;
      t.changes.push_back(c);
    }
    push.txns.push_back(t);
    RecordState r = i % 9 == 0 ? sample_tombstone() : sample_account();
    r.id = rid(i);
    page.records.push_back(r);
  }
  expect_round_trip(push);
  expect_round_trip(page);
  EXPECT_LT(codec::encode(push, v2_plain()).size(), codec::encode(push).size() * 3 / 4);
  EXPECT_LT(codec::encode(page, v2_plain()).size(), codec::encode(page).size() * 3 / 4);
  EXPECT_LT(codec::encode(page, 2).size(), codec::encode(page, v2_plain()).size());
}

// ---- Stored records straight into a page (ServerConfig::stored_pages) ---------------------------------

protocol::BootstrapPage as_stored(const protocol::BootstrapPage& page) {
  protocol::BootstrapPage out = page;
  out.records.clear();
  for (const RecordState& r : page.records) {
    Result<codec::CheckedRecord> c = codec::check_stored_record(codec::encode_record(r));
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    if (c) out.stored.push_back(std::move(c->record));
  }
  return out;
}

// Every record shape of the samples (joined and unjoined append text, fragments of several writers, field
// nodes that differ, a zero created version, tombstones and a live record with a tombstone part, every value
// kind): the page from stored bytes is the same frame as from decoded records, in every form.
TEST(CodecStoredPage, IsTheSameFrameAsFromDecodedRecords) {
  protocol::BootstrapPage page = sample_bootstrap_page();
  FieldState& notes = page.records[0].fields.back();
  RecordState joined = page.records[0];
  joined.id = rid(11);
  joined.fields.back().value = Value::text(join_fragments(notes.fragments));
  page.records.push_back(joined);
  RecordState odd = sample_account();
  odd.id = rid(12);
  odd.created = Version{};
  odd.fields[1].version.node = 0;
  odd.deleted_by = "rep-9";
  page.records.push_back(odd);
  RecordState kinds = sample_account();
  kinds.id = rid(13);
  kinds.fields[0].value = Value::text("");
  kinds.fields[2].value = Value::null();
  page.records.push_back(kinds);
  for (uint64_t i = 0; i < 40; ++i) {
    RecordState r = sample_account();
    r.id = rid(100 + i);
    r.fields[0].user = "rep-" + std::to_string(i % 5);
    page.records.push_back(r);
  }
  const protocol::BootstrapPage stored = as_stored(page);
  ASSERT_EQ(stored.stored.size(), page.records.size());
  for (const codec::EncodeOptions& form : frame_forms()) {
    EXPECT_EQ(codec::encode(stored, form), codec::encode(page, form)) << form_name(form);
  }
  EXPECT_EQ(codec::with_records(stored), page);
  // Both kinds in one page (not what the server sends): the stored ones follow the decoded ones.
  protocol::BootstrapPage mixed = stored;
  mixed.records = {sample_account()};
  protocol::BootstrapPage expected = page;
  expected.records.insert(expected.records.begin(), sample_account());
  EXPECT_EQ(codec::encode(mixed, 2), codec::encode(expected, 2));
}

TEST(CodecStoredPage, TheScopeStubHoldsWhatResolveScopeReads) {
  Result<codec::CheckedRecord> account = codec::check_stored_record(codec::encode_record(sample_account()));
  ASSERT_TRUE(account.is_ok());
  EXPECT_EQ(account->scope.entity, EntityId::kAccount);
  EXPECT_EQ(account->scope.id, rid(1));
  ASSERT_EQ(account->scope.fields.size(), 1u);
  EXPECT_EQ(account->scope.fields[0].field, f::kAccountTerritory);
  EXPECT_EQ(account->scope.fields[0].value, Value::text("ch-zh"));
  Result<codec::CheckedRecord> tomb = codec::check_stored_record(codec::encode_record(sample_tombstone()));
  ASSERT_TRUE(tomb.is_ok());
  EXPECT_EQ(tomb->scope.entity, EntityId::kContact);
  EXPECT_TRUE(tomb->scope.fields.empty());  // its parent link was not kept: unresolved, head office only
}

// The store's bytes pass the same verifier as decode_record: no truncation, byte flip or junk gets through
// to the encoder, which reads them unchecked.
TEST(CodecStoredPage, CorruptStoredBytesAreRefused) {
  for (const RecordState& r : {sample_account(), sample_tombstone()}) {
    const std::vector<uint8_t> bytes = codec::encode_record(r);
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      Result<codec::CheckedRecord> c =
          codec::check_stored_record(std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut));
      if (!c) continue;  // most prefixes are refused; one that passes must encode like its decoding
      protocol::BootstrapPage page;
      page.stored.push_back(c->record);
      (void)codec::encode(page, 2);
    }
    std::mt19937 rng(7);
    for (int i = 0; i < 2000; ++i) {
      std::vector<uint8_t> flipped = bytes;
      flipped[rng() % flipped.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
      Result<codec::CheckedRecord> c = codec::check_stored_record(flipped);
      if (!c) {
        EXPECT_EQ(c.status().code() == ErrorCode::kMalformedMessage ||
                      c.status().code() == ErrorCode::kUnknownEntity ||
                      c.status().code() == ErrorCode::kUnknownField ||
                      c.status().code() == ErrorCode::kValueInvalid ||
                      c.status().code() == ErrorCode::kTypeMismatch,
                  true)
            << c.status().to_string();
        continue;
      }
      protocol::BootstrapPage page;
      page.stored.push_back(c->record);
      const std::vector<uint8_t> frame = codec::encode(page, 2);
      EXPECT_FALSE(frame.empty());
    }
  }
  EXPECT_FALSE(codec::check_stored_record({}).is_ok());
  EXPECT_EQ(codec::check_stored_record(std::vector<uint8_t>(64, 0xff)).status().code(),
            ErrorCode::kMalformedMessage);
  // A value kind no column holds.
  flatbuffers::FlatBufferBuilder b;
  const fb::Id128 id(0, 1);
  auto value = fb::CreateValue(b, static_cast<fb::ValueKind>(9));
  const fb::Version version(1, 1);
  auto field = fb::CreateFieldState(b, f::kAccountName, value, &version);
  auto fields = b.CreateVector(std::vector<flatbuffers::Offset<fb::FieldState>>{field});
  b.Finish(fb::CreateRecordState(b, static_cast<uint16_t>(EntityId::kAccount), &id, nullptr, false, nullptr,
                                 0, 0, fields));
  EXPECT_EQ(
      codec::check_stored_record({b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()}).status().code(),
      ErrorCode::kMalformedMessage);
}

TEST(CodecV2, BootstrapPagesUseTheirOwnCompressionLevel) {
  protocol::BootstrapPage page;
  for (uint64_t i = 0; i < 50; ++i) {
    RecordState r = sample_account();
    r.id = rid(i);
    page.records.push_back(r);
  }
  codec::EncodeOptions one, three;
  one.protocol_version = three.protocol_version = 2;
  one.bootstrap_compression_level = 1;
  three.bootstrap_compression_level = 3;
  EXPECT_EQ(codec::encode(page, 2),
            codec::encode(page, one));  // the default: tuning::kBootstrapCompressionLevel
  EXPECT_NE(codec::encode(page, one), codec::encode(page, three));
  EXPECT_EQ(decode(codec::encode(page, one)).value(), Message(page));
  // Other messages keep compression_level.
  protocol::PushTxns push = sample_push();
  EXPECT_EQ(codec::encode(push, one), codec::encode(push, three));
  // compression_level 0 still means never.
  one.compression_level = 0;
  EXPECT_EQ(codec::encode(page, one), codec::encode(page, v2_plain()));
}

}  // namespace
}  // namespace fieldsync

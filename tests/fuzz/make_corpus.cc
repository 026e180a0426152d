// Writes the fuzz targets' seed corpus (tests/fuzz/corpus/<target>/) from real encodings: codec::encode of
// every protocol message type (full and empty), the stored blobs of codec::encode_record and friends, and
// /login bodies. Usage: make_corpus <corpus dir>. Its output is committed; rerun it when the schema grows:
//   build/bin/make_corpus tests/fuzz/corpus
// The sample values are those of tests/codec_test.cc (one change of every op, one value of every kind).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fieldsync/sync/codec.h"

namespace fieldsync {
namespace {

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

ServerTxn sample_server_txn_with_moves() {
  ServerTxn t;
  t.server_seq = 123'470;
  t.origin_node = 0x1;
  t.origin_user = "head-office";
  t.origin_node_seq = 12;
  t.changes = {set(EntityId::kAccount, 1, f::kAccountTerritory, Value::text("ch-be"), 1'700'000'003'000)};
  ScopeMove move;
  move.entity = EntityId::kAccount;
  move.record = rid(1);
  move.from = {ScopeKey::Kind::kTerritory, "ch-zh"};
  move.to = {ScopeKey::Kind::kTerritory, "ch-be"};
  ScopeMove owner;
  owner.entity = EntityId::kCalendarEvent;
  owner.record = rid(4);
  owner.from = {ScopeKey::Kind::kOwner, "rep-7"};
  owner.to = {ScopeKey::Kind::kUnresolved, ""};
  t.moves = {move, owner};
  return t;
}

// A seed that does not decode would only teach the fuzzer the first check.
void check(bool decoded, const std::string& what) {
  if (decoded) return;
  std::fprintf(stderr, "make_corpus: %s does not decode\n", what.c_str());
  std::exit(1);
}

void write(const std::filesystem::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
void write(const std::filesystem::path& dir, const std::string& name, const std::string& text) {
  write(dir, name, std::vector<uint8_t>(text.begin(), text.end()));
}

}  // namespace
}  // namespace fieldsync

int main(int argc, char** argv) {
  using namespace fieldsync;
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <corpus dir>\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];

  const std::filesystem::path frames = root / "codec_fuzz";
  int n = 0;
  for (const Message& m : sample_messages()) {
    const std::vector<uint8_t> frame = codec::encode(m);
    check(codec::decode(frame).is_ok(), protocol::message_name(m));
    write(frames, (n < 10 ? "0" : "") + std::to_string(n) + "-" + protocol::message_name(m), frame);
    ++n;
  }

  const std::filesystem::path blobs = root / "blob_fuzz";
  const auto record = [&](const std::string& name, const RecordState& r) {
    const std::vector<uint8_t> b = codec::encode_record(r);
    check(codec::decode_record(b).is_ok(), name);
    write(blobs, name, b);
  };
  record("record-account", sample_account());
  record("record-tombstone", sample_tombstone());
  const protocol::PushTxns push = sample_push();
  for (size_t i = 0; i < push.txns.size(); ++i) {
    const std::vector<uint8_t> b = codec::encode_client_txn(push.txns[i]);
    check(codec::decode_client_txn(b).is_ok(), "client txn");
    write(blobs, "client-txn-" + std::to_string(i), b);
  }
  const protocol::ChangeBatch batch = sample_batch();
  std::vector<ServerTxn> server_txns = batch.txns;
  server_txns.push_back(sample_server_txn_with_moves());
  for (size_t i = 0; i < server_txns.size(); ++i) {
    const std::vector<uint8_t> b = codec::encode_server_txn(server_txns[i]);
    check(codec::decode_server_txn(b).is_ok(), "server txn");
    write(blobs, "server-txn-" + std::to_string(i), b);
  }
  const std::vector<ConflictRecord> conflicts = sample_conflicts();
  for (size_t i = 0; i < conflicts.size(); ++i) {
    const std::vector<uint8_t> b = codec::encode_conflict(conflicts[i]);
    check(codec::decode_conflict(b).is_ok(), "conflict");
    write(blobs, "conflict-" + std::to_string(i), b);
  }

  const std::filesystem::path login = root / "login_fuzz";
  write(login, "number", R"({"user":"rep-7","password":"correct horse","node":12345})");
  write(login, "text-node", R"({"user":"rep-7","password":"pw","node":"18446744073709551615"})");
  write(login, "negative-node", R"({"user":"rep-7","password":"pw","node":-3})");
  write(login, "big-node", R"({"user":"r","password":"p","node":18446744073709551615})");
  write(login, "bad-text-node", R"({"user":"r","password":"p","node":"12x"})");
  write(login, "escapes",
        R"({"user":"caf\u00e9\n","password":"\"\\\/\b\f\r\t","node":1.5e3,"extra":[null,true,false,{}]})");
  write(login, "missing", R"({"user":"r","node":0})");
  write(login, "not-object", R"(["user","password",1])");
  std::printf("corpus written to %s\n", root.c_str());
  return 0;
}

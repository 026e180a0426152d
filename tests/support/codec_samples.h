// Sample values of every protocol message and stored blob: one change of every op, one value of every kind,
// conflicts, records and tombstones. The codec's tests round-trip them and the fuzz corpus (make_corpus) is
// written from their encodings, so both see the same shapes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/protocol.h"

namespace fieldsync::samples {

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

inline RecordId rid(uint64_t n) {
  return RecordId{0x0190'a1b2'c3d4'7000ULL | n, 0x8000'0000'0000'0000ULL | (n * 7919)};
}
inline Version ver(uint64_t ms, NodeId node) {
  return Version{make_hlc(static_cast<int64_t>(ms), 3), node};
}

inline Change set(EntityId e, uint64_t rec, uint16_t field, Value v, uint64_t ms) {
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
inline std::vector<Change> sample_changes() {
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

inline RecordState sample_account() {
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

inline RecordState sample_tombstone() {
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

inline std::vector<ConflictRecord> sample_conflicts() {
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

inline protocol::Hello sample_hello() {
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

inline protocol::Welcome sample_welcome() {
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

inline protocol::PushTxns sample_push() {
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

inline protocol::PushAck sample_ack() {
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

inline protocol::PullRequest sample_pull(bool live) {
  protocol::PullRequest m;
  m.request_id = 8;
  m.cursor = 123'456;
  m.max_changes = 250;
  m.live = live;
  return m;
}

inline protocol::ChangeBatch sample_batch() {
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

inline protocol::BootstrapRequest sample_bootstrap_request() {
  protocol::BootstrapRequest m;
  m.request_id = 9;
  m.snapshot_seq = 123'000;
  m.page_token = "account/0190a1b2-c3d4-7001-8000-000000001eef";
  m.page_size = 200;
  m.max_pages = 8;
  return m;
}

inline protocol::BootstrapPage sample_bootstrap_page() {
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

inline protocol::Error sample_error() {
  protocol::Error m;
  m.code = ErrorCode::kSequenceGap;
  m.message = "expected node_seq 100, got 103";
  m.retryable = true;
  m.request_id = 7;
  m.resume_node_seq = 100;
  return m;
}

inline std::vector<Message> sample_messages() {
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
}  // namespace fieldsync::samples

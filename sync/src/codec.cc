// FlatBuffers encoding of protocol messages (schema/fbs/fieldsync.fbs).
//
// decode() is the trust boundary of both the device and the server: it takes bytes from the network and
// either returns messages that fit the entity model and the limits in tuning.h, or a Status. It only reads a
// frame after flatbuffers::Verifier has checked every offset, so a hostile or corrupt frame cannot make it
// read out of bounds. What decode does not check (nullability, enum values, per-field lengths, permissions)
// is left to rules.h, which runs on every change the server applies.
//
// The code is one plain function per struct in each direction, so each wire table is converted in exactly one
// place and a reader can follow a message from top to bottom.
#include "fieldsync/sync/codec.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include <flatbuffers/flatbuffers.h>

#include "compression.h"
#include "fieldsync/schema/fieldsync_generated.h"
#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync::protocol {
// The one maker of StoredRecords: check_stored_record, after the verifier.
class StoredRecordMaker {
 public:
  static StoredRecord make(std::vector<uint8_t> bytes) { return StoredRecord(std::move(bytes)); }
};
}  // namespace fieldsync::protocol

namespace fieldsync::codec {
namespace {

namespace fb = ::fieldsync::wire;
using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;
using flatbuffers::Vector;
using StringOffset = Offset<flatbuffers::String>;

// ---- The wire enums mirror the C++ ones value for value ---------------------------------------------------

template <typename A, typename B>
constexpr bool same(A a, B b) {
  return static_cast<uint64_t>(a) == static_cast<uint64_t>(b);
}

static_assert(same(ChangeOp::kCreate, fb::ChangeOp::Create) && same(ChangeOp::kSet, fb::ChangeOp::Set) &&
              same(ChangeOp::kAppend, fb::ChangeOp::Append) && same(ChangeOp::kDelete, fb::ChangeOp::Delete));
static_assert(same(ConflictKind::kConcurrentWrite, fb::ConflictKind::ConcurrentWrite) &&
              same(ConflictKind::kDeleteWins, fb::ConflictKind::DeleteWins) &&
              same(ConflictKind::kScheduling, fb::ConflictKind::Scheduling));
static_assert(same(protocol::TxnOutcome::kApplied, fb::TxnOutcome::Applied) &&
              same(protocol::TxnOutcome::kRejected, fb::TxnOutcome::Rejected) &&
              same(protocol::TxnOutcome::kDuplicate, fb::TxnOutcome::Duplicate));
static_assert(same(schema::Role::kRep, fb::Role::Rep) && same(schema::Role::kManager, fb::Role::Manager) &&
              same(schema::Role::kHeadOffice, fb::Role::HeadOffice));
static_assert(same(Value::Kind::kNull, fb::ValueKind::Null) && same(Value::Kind::kInt, fb::ValueKind::Int) &&
              same(Value::Kind::kReal, fb::ValueKind::Real) &&
              same(Value::Kind::kBool, fb::ValueKind::Bool) && same(Value::Kind::kText, fb::ValueKind::Text));
static_assert(same(ErrorCode::kOk, fb::ErrorCode::Ok));
static_assert(same(ErrorCode::kMalformedMessage, fb::ErrorCode::MalformedMessage));
static_assert(same(ErrorCode::kUnsupportedProtocol, fb::ErrorCode::UnsupportedProtocol));
static_assert(same(ErrorCode::kUnsupportedSchema, fb::ErrorCode::UnsupportedSchema));
static_assert(same(ErrorCode::kMessageTooLarge, fb::ErrorCode::MessageTooLarge));
static_assert(same(ErrorCode::kTooManyChanges, fb::ErrorCode::TooManyChanges));
static_assert(same(ErrorCode::kUnexpectedMessage, fb::ErrorCode::UnexpectedMessage));
static_assert(same(ErrorCode::kSequenceGap, fb::ErrorCode::SequenceGap));
static_assert(same(ErrorCode::kRateLimited, fb::ErrorCode::RateLimited));
static_assert(same(ErrorCode::kAuthFailed, fb::ErrorCode::AuthFailed));
static_assert(same(ErrorCode::kTokenExpired, fb::ErrorCode::TokenExpired));
static_assert(same(ErrorCode::kDeviceRevoked, fb::ErrorCode::DeviceRevoked));
static_assert(same(ErrorCode::kClockSkew, fb::ErrorCode::ClockSkew));
static_assert(same(ErrorCode::kUnknownEntity, fb::ErrorCode::UnknownEntity));
static_assert(same(ErrorCode::kUnknownField, fb::ErrorCode::UnknownField));
static_assert(same(ErrorCode::kTypeMismatch, fb::ErrorCode::TypeMismatch));
static_assert(same(ErrorCode::kNullViolation, fb::ErrorCode::NullViolation));
static_assert(same(ErrorCode::kValueInvalid, fb::ErrorCode::ValueInvalid));
static_assert(same(ErrorCode::kImmutableField, fb::ErrorCode::ImmutableField));
static_assert(same(ErrorCode::kServerOwnedField, fb::ErrorCode::ServerOwnedField));
static_assert(same(ErrorCode::kInvalidTransition, fb::ErrorCode::InvalidTransition));
static_assert(same(ErrorCode::kOrderLocked, fb::ErrorCode::OrderLocked));
static_assert(same(ErrorCode::kDuplicateId, fb::ErrorCode::DuplicateId));
static_assert(same(ErrorCode::kRecordNotFound, fb::ErrorCode::RecordNotFound));
static_assert(same(ErrorCode::kRecordDeleted, fb::ErrorCode::RecordDeleted));
static_assert(same(ErrorCode::kOutOfScope, fb::ErrorCode::OutOfScope));
static_assert(same(ErrorCode::kNotDeletable, fb::ErrorCode::NotDeletable));
static_assert(same(ErrorCode::kPermissionDenied, fb::ErrorCode::PermissionDenied));
static_assert(same(ErrorCode::kMissingField, fb::ErrorCode::MissingField));
static_assert(same(ErrorCode::kStorageFull, fb::ErrorCode::StorageFull));
static_assert(same(ErrorCode::kStorageCorrupt, fb::ErrorCode::StorageCorrupt));
static_assert(same(ErrorCode::kStorageLocked, fb::ErrorCode::StorageLocked));
static_assert(same(ErrorCode::kStorageReadOnly, fb::ErrorCode::StorageReadOnly));
static_assert(same(ErrorCode::kStorageIo, fb::ErrorCode::StorageIo));
static_assert(same(ErrorCode::kSchemaTooNew, fb::ErrorCode::SchemaTooNew));
static_assert(same(ErrorCode::kInvalidArgument, fb::ErrorCode::InvalidArgument));
static_assert(same(ErrorCode::kInternal, fb::ErrorCode::Internal));

// No case may be missing: -Wswitch (an error here) then points at this function when status.h grows, and the
// .fbs enum and the asserts above must grow with it.
bool known_error_code(uint16_t raw) {
  switch (static_cast<ErrorCode>(raw)) {
    case ErrorCode::kOk:
    case ErrorCode::kMalformedMessage:
    case ErrorCode::kUnsupportedProtocol:
    case ErrorCode::kUnsupportedSchema:
    case ErrorCode::kMessageTooLarge:
    case ErrorCode::kTooManyChanges:
    case ErrorCode::kUnexpectedMessage:
    case ErrorCode::kSequenceGap:
    case ErrorCode::kRateLimited:
    case ErrorCode::kAuthFailed:
    case ErrorCode::kTokenExpired:
    case ErrorCode::kDeviceRevoked:
    case ErrorCode::kClockSkew:
    case ErrorCode::kUnknownEntity:
    case ErrorCode::kUnknownField:
    case ErrorCode::kTypeMismatch:
    case ErrorCode::kNullViolation:
    case ErrorCode::kValueInvalid:
    case ErrorCode::kImmutableField:
    case ErrorCode::kServerOwnedField:
    case ErrorCode::kInvalidTransition:
    case ErrorCode::kOrderLocked:
    case ErrorCode::kDuplicateId:
    case ErrorCode::kRecordNotFound:
    case ErrorCode::kRecordDeleted:
    case ErrorCode::kOutOfScope:
    case ErrorCode::kNotDeletable:
    case ErrorCode::kPermissionDenied:
    case ErrorCode::kMissingField:
    case ErrorCode::kStorageFull:
    case ErrorCode::kStorageCorrupt:
    case ErrorCode::kStorageLocked:
    case ErrorCode::kStorageReadOnly:
    case ErrorCode::kStorageIo:
    case ErrorCode::kSchemaTooNew:
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kInternal:
      return true;
  }
  return false;
}

// ---- Encoding ---------------------------------------------------------------------------------------------
// Conventions (the decoder relies on them, fieldsync.fbs states them): empty strings, empty vectors, null
// values and zero versions of optional fields are left out; the reader turns an absent field back into the
// C++ default.

fb::Id128 wire_id(const RecordId& id) {
  return fb::Id128(id.hi, id.lo);
}
fb::Version wire_version(const Version& v) {
  return fb::Version(v.hlc, v.node);
}

StringOffset put_text(FlatBufferBuilder& b, const std::string& s) {
  return s.empty() ? StringOffset() : b.CreateString(s);
}

// Identifiers (user ids, rule names) repeat across a message (every field state names its writer), so they
// are stored once per frame.
StringOffset put_ident(FlatBufferBuilder& b, const std::string& s) {
  return s.empty() ? StringOffset() : b.CreateSharedString(s);
}

Offset<fb::Value> put_value(FlatBufferBuilder& b, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return {};
    case Value::Kind::kInt:
      return fb::CreateValue(b, fb::ValueKind::Int, v.as_int());
    case Value::Kind::kBool:
      return fb::CreateValue(b, fb::ValueKind::Bool, 0, 0.0, v.as_bool());
    case Value::Kind::kText: {
      StringOffset s = put_text(b, v.as_text());
      return fb::CreateValue(b, fb::ValueKind::Text, 0, 0.0, false, s);
    }
    case Value::Kind::kReal: {
      // Written even when zero: the builder's default check compares with ==, which would drop -0.0 and the
      // value would come back as +0.0.
      fb::ValueBuilder vb(b);
      vb.add_kind(fb::ValueKind::Real);
      b.AddElement<double>(fb::Value::VT_D, v.as_real(), std::numeric_limits<double>::quiet_NaN());
      return vb.Finish();
    }
  }
  return {};
}

// (Not CreateUninitializedVectorOfStructs: in FlatBuffers 2.0.8 it aligns to the struct's size instead of its
// alignment, which for these 24-byte structs pads and misaligns the vector.)
Offset<Vector<const fb::FieldVersion*>> put_field_versions(FlatBufferBuilder& b,
                                                           const std::vector<FieldVersion>& in) {
  if (in.empty()) return {};
  return b.CreateVectorOfStructs<fb::FieldVersion>(
      in.size(),
      [](size_t i, fb::FieldVersion* out, const std::vector<FieldVersion>* src) {
        *out = fb::FieldVersion((*src)[i].field, wire_version((*src)[i].version));
      },
      &in);
}

Offset<Vector<const fb::RecordKey*>> put_keys(FlatBufferBuilder& b, const std::vector<RecordKey>& in) {
  if (in.empty()) return {};
  return b.CreateVectorOfStructs<fb::RecordKey>(
      in.size(),
      [](size_t i, fb::RecordKey* out, const std::vector<RecordKey>* src) {
        *out = fb::RecordKey(static_cast<uint16_t>((*src)[i].entity), wire_id((*src)[i].id));
      },
      &in);
}

// A vector of tables, each built by `put_one`; absent when empty.
template <typename W, typename T>
Offset<Vector<Offset<W>>> put_tables(FlatBufferBuilder& b, const std::vector<T>& in,
                                     Offset<W> (*put_one)(FlatBufferBuilder&, const T&)) {
  if (in.empty()) return {};
  std::vector<Offset<W>> offsets;
  offsets.reserve(in.size());
  for (const T& x : in) offsets.push_back(put_one(b, x));
  return b.CreateVector(offsets);
}

Offset<fb::Change> put_change(FlatBufferBuilder& b, const Change& c) {
  auto seen = put_field_versions(b, c.seen);
  auto value = put_value(b, c.value);
  const fb::Id128 record = wire_id(c.record);
  const fb::Version version = wire_version(c.version);
  const fb::Version base = wire_version(c.base);
  return fb::CreateChange(b, static_cast<fb::ChangeOp>(c.op), static_cast<uint16_t>(c.entity), &record,
                          c.field, value, &version, c.base.is_zero() ? nullptr : &base, seen);
}

Offset<fb::ClientTxn> put_client_txn(FlatBufferBuilder& b, const ClientTxn& t) {
  auto changes = put_tables(b, t.changes, put_change);
  return fb::CreateClientTxn(b, t.node, t.node_seq, t.created_at_ms, changes);
}

Offset<fb::ScopeKey> put_scope_key(FlatBufferBuilder& b, const ScopeKey& k) {
  return fb::CreateScopeKey(b, static_cast<uint8_t>(k.kind), put_ident(b, k.value));
}

Offset<fb::ScopeMove> put_scope_move(FlatBufferBuilder& b, const ScopeMove& m) {
  auto from = put_scope_key(b, m.from);
  auto to = put_scope_key(b, m.to);
  const fb::Id128 id = wire_id(m.record);
  return fb::CreateScopeMove(b, static_cast<uint16_t>(m.entity), &id, from, to);
}

Offset<fb::ServerTxn> put_server_txn(FlatBufferBuilder& b, const ServerTxn& t) {
  auto changes = put_tables(b, t.changes, put_change);
  auto moves = put_tables(b, t.moves, put_scope_move);
  auto user = put_ident(b, t.origin_user);
  return fb::CreateServerTxn(b, t.server_seq, t.origin_node, user, t.origin_node_seq, changes, moves);
}

Offset<fb::Fragment> put_fragment(FlatBufferBuilder& b, const Fragment& f) {
  auto user = put_ident(b, f.user);
  auto text = put_text(b, f.text);
  const fb::Version version = wire_version(f.version);
  return fb::CreateFragment(b, &version, user, text);
}

Offset<fb::FieldState> put_field_state(FlatBufferBuilder& b, const FieldState& f) {
  auto value = put_value(b, f.value);
  auto user = put_ident(b, f.user);
  auto fragments = put_tables(b, f.fragments, put_fragment);
  const fb::Version version = wire_version(f.version);
  return fb::CreateFieldState(b, f.field, value, &version, user, fragments);
}

Offset<fb::RecordState> put_record_state(FlatBufferBuilder& b, const RecordState& r) {
  auto deleted_by = put_ident(b, r.deleted_by);
  auto delete_seen = put_field_versions(b, r.delete_seen);
  auto fields = put_tables(b, r.fields, put_field_state);
  const fb::Id128 id = wire_id(r.id);
  const fb::Version created = wire_version(r.created);
  const fb::Version deleted_version = wire_version(r.deleted_version);
  return fb::CreateRecordState(
      b, static_cast<uint16_t>(r.entity), &id, r.created.is_zero() ? nullptr : &created, r.deleted,
      r.deleted_version.is_zero() ? nullptr : &deleted_version, deleted_by, delete_seen, fields);
}

Offset<fb::ConflictSide> put_conflict_side(FlatBufferBuilder& b, const ConflictSide& s) {
  auto value = put_value(b, s.value);
  auto user = put_ident(b, s.user);
  const fb::Version version = wire_version(s.version);
  return fb::CreateConflictSide(b, value, s.version.is_zero() ? nullptr : &version, user);
}

Offset<fb::ConflictRecord> put_conflict(FlatBufferBuilder& b, const ConflictRecord& c) {
  auto winner = put_conflict_side(b, c.winner);
  auto loser = put_conflict_side(b, c.loser);
  auto rule = put_ident(b, c.rule);
  const fb::Id128 record = wire_id(c.record);
  const fb::Id128 other = wire_id(c.other_record);
  return fb::CreateConflictRecord(b, c.server_seq, static_cast<fb::ConflictKind>(c.kind),
                                  static_cast<uint16_t>(c.entity), &record, c.field, winner, loser,
                                  c.other_record.is_nil() ? nullptr : &other, rule);
}

Offset<fb::TxnResult> put_txn_result(FlatBufferBuilder& b, const protocol::TxnResult& r) {
  auto message = put_text(b, r.message);
  auto conflicts = put_tables(b, r.conflicts, put_conflict);
  auto records = put_tables(b, r.records, put_record_state);
  auto absent = put_keys(b, r.absent);
  return fb::CreateTxnResult(b, r.node_seq, static_cast<fb::TxnOutcome>(r.outcome), r.server_seq,
                             static_cast<fb::ErrorCode>(r.reason), message, conflicts, records, absent);
}

using Body = std::pair<fb::Body, Offset<void>>;

Body put_body(FlatBufferBuilder& b, const protocol::Hello& m) {
  auto token = put_text(b, m.token);
  // Absent when empty, so a Hello without an app version is byte for byte what older devices send.
  auto app_version = put_text(b, m.app_version);
  return {fb::Body::Hello, fb::CreateHello(b, m.protocol_version, m.schema_version, m.node, token, m.cursor,
                                           m.client_time_ms, m.client_hlc, app_version)
                               .Union()};
}

Body put_body(FlatBufferBuilder& b, const protocol::Welcome& m) {
  auto user = put_ident(b, m.user);
  return {fb::Body::Welcome,
          fb::CreateWelcome(b, m.protocol_version, m.schema_version, user, static_cast<fb::Role>(m.role),
                            m.last_node_seq, m.server_seq, m.server_hlc, m.server_time_ms)
              .Union()};
}

Body put_body(FlatBufferBuilder& b, const protocol::PushTxns& m) {
  auto txns = put_tables(b, m.txns, put_client_txn);
  return {fb::Body::PushTxns, fb::CreatePushTxns(b, m.request_id, txns).Union()};
}

Body put_body(FlatBufferBuilder& b, const protocol::PushAck& m) {
  auto results = put_tables(b, m.results, put_txn_result);
  return {fb::Body::PushAck, fb::CreatePushAck(b, m.request_id, results, m.server_hlc).Union()};
}

Body put_body(FlatBufferBuilder& b, const protocol::PullRequest& m) {
  return {fb::Body::PullRequest,
          fb::CreatePullRequest(b, m.request_id, m.cursor, m.max_changes, m.live).Union()};
}

Body put_body(FlatBufferBuilder& b, const protocol::ChangeBatch& m) {
  auto txns = put_tables(b, m.txns, put_server_txn);
  auto conflicts = put_tables(b, m.conflicts, put_conflict);
  auto records = put_tables(b, m.records, put_record_state);
  auto purges = put_keys(b, m.purges);
  return {fb::Body::ChangeBatch,
          fb::CreateChangeBatch(b, m.request_id, m.from_cursor, m.to_cursor, m.has_more, txns, conflicts,
                                records, purges, m.server_hlc)
              .Union()};
}

Body put_body(FlatBufferBuilder& b, const protocol::BootstrapRequest& m) {
  auto token = put_text(b, m.page_token);
  return {fb::Body::BootstrapRequest, fb::CreateBootstrapRequest(b, m.request_id, m.snapshot_seq, token,
                                                                 m.page_size, m.max_pages, m.from_schema)
                                          .Union()};
}

Body put_body(FlatBufferBuilder& b, const protocol::BootstrapPage& m) {
  auto records = put_tables(b, m.records, put_record_state);
  auto token = put_text(b, m.next_page_token);
  auto conflicts = put_tables(b, m.conflicts, put_conflict);
  auto purges = put_keys(b, m.purges);
  return {fb::Body::BootstrapPage,
          fb::CreateBootstrapPage(b, m.request_id, m.snapshot_seq, m.total_records, m.records_before, records,
                                  token, m.done, conflicts, purges)
              .Union()};
}

Body put_body(FlatBufferBuilder& b, const protocol::Error& m) {
  auto message = put_text(b, m.message);
  return {fb::Body::Error, fb::CreateError(b, static_cast<fb::ErrorCode>(m.code), message, m.retryable,
                                           m.request_id, m.resume_node_seq)
                               .Union()};
}

// ---- Encoding, protocol version 2: the compact forms ----------------------------------------------------
// fieldsync.fbs describes the columns. Every ClientTxn and RecordState has exactly one compact encoding, so
// encode(decode(frame)) is stable like the v1 form.

// The kind byte of an append-text field whose value is its fragments joined (RecordColumns.kinds).
constexpr uint8_t kJoinedFragments = 5;

// Values split by kind into columns.
struct ValueColumns {
  std::vector<uint8_t> kinds;
  std::vector<int64_t> ints;
  std::vector<double> reals;
  std::vector<uint32_t> text_sizes;
  std::vector<uint8_t> text;

  void add_text(std::string_view s) {
    text_sizes.push_back(static_cast<uint32_t>(s.size()));
    text.insert(text.end(), s.begin(), s.end());
  }
  void add(const Value& v) {
    kinds.push_back(static_cast<uint8_t>(v.kind()));
    switch (v.kind()) {
      case Value::Kind::kNull:
        return;
      case Value::Kind::kInt:
        ints.push_back(v.as_int());
        return;
      case Value::Kind::kBool:
        ints.push_back(v.as_bool() ? 1 : 0);
        return;
      case Value::Kind::kReal:
        reals.push_back(v.as_real());
        return;
      case Value::Kind::kText:
        add_text(v.as_text());
        return;
    }
  }
};

// The distinct user ids of one message.
class UserTable {
 public:
  uint32_t index(const std::string& user) {
    auto [it, inserted] = index_.try_emplace(user, static_cast<uint32_t>(users_.size()));
    if (inserted) users_.push_back(user);
    return it->second;
  }
  Offset<Vector<StringOffset>> put(FlatBufferBuilder& b) const {
    return users_.empty() ? Offset<Vector<StringOffset>>() : b.CreateVectorOfStrings(users_);
  }

 private:
  std::unordered_map<std::string, uint32_t> index_;
  std::vector<std::string> users_;
};

// A column; absent when empty (the decoder reads an absent vector as empty).
template <typename T>
Offset<Vector<T>> put_column(FlatBufferBuilder& b, const std::vector<T>& v) {
  return v.empty() ? Offset<Vector<T>>() : b.CreateVector(v);
}
template <typename S>
Offset<Vector<const S*>> put_struct_column(FlatBufferBuilder& b, const std::vector<S>& v) {
  return v.empty() ? Offset<Vector<const S*>>() : b.CreateVectorOfStructs(v.data(), v.size());
}

Offset<fb::TxnColumns> put_txn_columns(FlatBufferBuilder& b, const std::vector<ClientTxn>& txns) {
  std::vector<uint64_t> nodes, node_seqs, created_at, version_hlc, version_node;
  std::vector<uint32_t> change_counts, run_lengths, seen_counts, base_changes;
  std::vector<uint16_t> run_entities, fields;
  std::vector<fb::Id128> run_records;
  std::vector<uint8_t> ops;
  std::vector<fb::Version> bases;
  std::vector<fb::FieldVersion> seen;
  ValueColumns values;
  bool nodes_differ = false, any_seen = false;
  uint64_t prev_seq = 0, prev_created = 0, prev_hlc = 0;
  uint32_t index = 0;
  for (const ClientTxn& t : txns) {
    nodes.push_back(t.node);
    node_seqs.push_back(t.node_seq - prev_seq);
    created_at.push_back(static_cast<uint64_t>(t.created_at_ms) - prev_created);
    prev_seq = t.node_seq;
    prev_created = static_cast<uint64_t>(t.created_at_ms);
    change_counts.push_back(static_cast<uint32_t>(t.changes.size()));
    for (size_t i = 0; i < t.changes.size(); ++i, ++index) {
      const Change& c = t.changes[i];
      if (i == 0 || c.record != t.changes[i - 1].record || c.entity != t.changes[i - 1].entity) {
        run_entities.push_back(static_cast<uint16_t>(c.entity));
        run_records.push_back(wire_id(c.record));
        run_lengths.push_back(0);
      }
      run_lengths.back()++;
      ops.push_back(static_cast<uint8_t>(c.op));
      fields.push_back(c.field);
      values.add(c.value);
      version_hlc.push_back(c.version.hlc - prev_hlc);
      prev_hlc = c.version.hlc;
      version_node.push_back(c.version.node);
      nodes_differ = nodes_differ || c.version.node != t.node;
      if (!c.base.is_zero()) {
        base_changes.push_back(index);
        bases.push_back(wire_version(c.base));
      }
      seen_counts.push_back(static_cast<uint32_t>(c.seen.size()));
      any_seen = any_seen || !c.seen.empty();
      for (const FieldVersion& fv : c.seen)
        seen.push_back(fb::FieldVersion(fv.field, wire_version(fv.version)));
    }
  }
  if (!nodes_differ) version_node.clear();
  if (!any_seen) seen_counts.clear();
  auto o_nodes = put_column(b, nodes);
  auto o_seqs = put_column(b, node_seqs);
  auto o_created = put_column(b, created_at);
  auto o_counts = put_column(b, change_counts);
  auto o_run_entities = put_column(b, run_entities);
  auto o_run_records = put_struct_column(b, run_records);
  auto o_run_lengths = put_column(b, run_lengths);
  auto o_ops = put_column(b, ops);
  auto o_fields = put_column(b, fields);
  auto o_kinds = put_column(b, values.kinds);
  auto o_hlc = put_column(b, version_hlc);
  auto o_node = put_column(b, version_node);
  auto o_seen_counts = put_column(b, seen_counts);
  auto o_ints = put_column(b, values.ints);
  auto o_reals = put_column(b, values.reals);
  auto o_text_sizes = put_column(b, values.text_sizes);
  auto o_text = put_column(b, values.text);
  auto o_base_changes = put_column(b, base_changes);
  auto o_bases = put_struct_column(b, bases);
  auto o_seen = put_struct_column(b, seen);
  return fb::CreateTxnColumns(b, o_nodes, o_seqs, o_created, o_counts, o_run_entities, o_run_records,
                              o_run_lengths, o_ops, o_fields, o_kinds, o_hlc, o_node, o_seen_counts, o_ints,
                              o_reals, o_text_sizes, o_text, o_base_changes, o_bases, o_seen);
}

Offset<fb::Tombstone> put_tombstone(FlatBufferBuilder& b, uint32_t record, const RecordState& r) {
  auto deleted_by = put_ident(b, r.deleted_by);
  auto delete_seen = put_field_versions(b, r.delete_seen);
  const fb::Version deleted_version = wire_version(r.deleted_version);
  return fb::CreateTombstone(b, record, r.deleted, r.deleted_version.is_zero() ? nullptr : &deleted_version,
                             deleted_by, delete_seen);
}

// The columns of a page of records (fb::RecordColumns) as put_record_columns fills them from decoded records
// and put_stored_record_columns straight from stored ones: one set of columns and one way to finish them, so
// the two write the same bytes.
struct RecordColumnsBuilder {
  std::vector<uint16_t> entities, field_ids;
  std::vector<fb::Id128> ids;
  std::vector<uint64_t> created_hlc, created_node, version_hlc, version_node, fragment_hlc, fragment_node;
  std::vector<uint32_t> field_counts, users, fragment_counts, fragment_users, fragment_text_sizes;
  std::vector<uint8_t> fragment_text;
  std::vector<Offset<fb::Tombstone>> tombstones;
  ValueColumns values;
  UserTable user_table;
  bool nodes_differ = false, any_fragments = false;
  uint64_t prev_created = 0;

  Offset<fb::RecordColumns> finish(FlatBufferBuilder& b) {
    if (!nodes_differ) version_node.clear();
    if (!any_fragments) fragment_counts.clear();
    auto o_entities = put_column(b, entities);
    auto o_ids = put_struct_column(b, ids);
    auto o_created_hlc = put_column(b, created_hlc);
    auto o_created_node = put_column(b, created_node);
    auto o_field_counts = put_column(b, field_counts);
    auto o_tombstones =
        tombstones.empty() ? Offset<Vector<Offset<fb::Tombstone>>>() : b.CreateVector(tombstones);
    auto o_field_ids = put_column(b, field_ids);
    auto o_kinds = put_column(b, values.kinds);
    auto o_version_hlc = put_column(b, version_hlc);
    auto o_version_node = put_column(b, version_node);
    auto o_users = put_column(b, users);
    auto o_fragment_counts = put_column(b, fragment_counts);
    auto o_ints = put_column(b, values.ints);
    auto o_reals = put_column(b, values.reals);
    auto o_text_sizes = put_column(b, values.text_sizes);
    auto o_text = put_column(b, values.text);
    auto o_fragment_hlc = put_column(b, fragment_hlc);
    auto o_fragment_node = put_column(b, fragment_node);
    auto o_fragment_users = put_column(b, fragment_users);
    auto o_fragment_text_sizes = put_column(b, fragment_text_sizes);
    auto o_fragment_text = put_column(b, fragment_text);
    auto o_user_table = user_table.put(b);
    return fb::CreateRecordColumns(b, o_entities, o_ids, o_created_hlc, o_created_node, o_field_counts,
                                   o_tombstones, o_field_ids, o_kinds, o_version_hlc, o_version_node, o_users,
                                   o_fragment_counts, o_ints, o_reals, o_text_sizes, o_text, o_fragment_hlc,
                                   o_fragment_node, o_fragment_users, o_fragment_text_sizes, o_fragment_text,
                                   o_user_table);
  }
};

Offset<fb::RecordColumns> put_record_columns(FlatBufferBuilder& b, const std::vector<RecordState>& records) {
  RecordColumnsBuilder c;
  for (size_t i = 0; i < records.size(); ++i) {
    const RecordState& r = records[i];
    c.entities.push_back(static_cast<uint16_t>(r.entity));
    c.ids.push_back(wire_id(r.id));
    c.created_hlc.push_back(r.created.hlc - c.prev_created);
    c.prev_created = r.created.hlc;
    c.created_node.push_back(r.created.node);
    c.field_counts.push_back(static_cast<uint32_t>(r.fields.size()));
    if (r.deleted || !r.deleted_version.is_zero() || !r.deleted_by.empty() || !r.delete_seen.empty())
      c.tombstones.push_back(put_tombstone(b, static_cast<uint32_t>(i), r));
    for (const FieldState& f : r.fields) {
      c.field_ids.push_back(f.field);
      if (!f.fragments.empty() && f.value.kind() == Value::Kind::kText &&
          f.value.as_text() == join_fragments(f.fragments)) {
        c.values.kinds.push_back(kJoinedFragments);
      } else {
        c.values.add(f.value);
      }
      c.version_hlc.push_back(f.version.hlc - r.created.hlc);
      c.version_node.push_back(f.version.node);
      c.nodes_differ = c.nodes_differ || f.version.node != r.created.node;
      c.users.push_back(c.user_table.index(f.user));
      c.fragment_counts.push_back(static_cast<uint32_t>(f.fragments.size()));
      c.any_fragments = c.any_fragments || !f.fragments.empty();
      for (const Fragment& fr : f.fragments) {
        c.fragment_hlc.push_back(fr.version.hlc - f.version.hlc);
        c.fragment_node.push_back(fr.version.node);
        c.fragment_users.push_back(c.user_table.index(fr.user));
        c.fragment_text_sizes.push_back(static_cast<uint32_t>(fr.text.size()));
        c.fragment_text.insert(c.fragment_text.end(), fr.text.begin(), fr.text.end());
      }
    }
  }
  return c.finish(b);
}

Status get_record_state(const fb::RecordState* in, RecordState& out);
RecordId get_id(const fb::Id128* in);
Version get_version(const fb::Version* in);

std::string_view view(const flatbuffers::String* s) {
  return s ? std::string_view(s->c_str(), s->size()) : std::string_view();
}

// A stored record's root: check_stored_record verified it (a StoredRecord is made nowhere else).
const fb::RecordState* stored_root(const protocol::StoredRecord& r) {
  return flatbuffers::GetRoot<fb::RecordState>(r.bytes().data());
}

// Whether `value` is `fragments` joined (join_fragments: the texts separated by a newline).
bool joins(std::string_view value, const Vector<Offset<fb::Fragment>>& fragments) {
  size_t at = 0;
  for (flatbuffers::uoffset_t i = 0; i < fragments.size(); ++i) {
    if (i > 0) {
      if (at >= value.size() || value[at] != '\n') return false;
      ++at;
    }
    const std::string_view text = view(fragments.Get(i)->text());
    if (value.substr(at, text.size()) != text) return false;
    at += text.size();
  }
  return at == value.size();
}

void add_stored_value(ValueColumns& values, const fb::Value* v) {
  if (v == nullptr) {
    values.kinds.push_back(static_cast<uint8_t>(Value::Kind::kNull));
    return;
  }
  switch (v->kind()) {
    case fb::ValueKind::Null:
      values.kinds.push_back(static_cast<uint8_t>(Value::Kind::kNull));
      return;
    case fb::ValueKind::Int:
      values.kinds.push_back(static_cast<uint8_t>(Value::Kind::kInt));
      values.ints.push_back(v->i());
      return;
    case fb::ValueKind::Bool:
      values.kinds.push_back(static_cast<uint8_t>(Value::Kind::kBool));
      values.ints.push_back(v->b() ? 1 : 0);
      return;
    case fb::ValueKind::Real:
      values.kinds.push_back(static_cast<uint8_t>(Value::Kind::kReal));
      values.reals.push_back(v->d());
      return;
    case fb::ValueKind::Text:
      values.kinds.push_back(static_cast<uint8_t>(Value::Kind::kText));
      values.add_text(view(v->s()));
      return;
  }
  std::abort();  // check_stored_record refused any other kind
}

// put_record_columns of the records `stored` decodes to, byte for byte (codec_test compares them), read
// straight from the stored FlatBuffers: no RecordState, no per-field strings. Tombstones (rare) are decoded
// whole for put_tombstone.
Offset<fb::RecordColumns> put_stored_record_columns(FlatBufferBuilder& b,
                                                    const std::vector<protocol::StoredRecord>& stored) {
  RecordColumnsBuilder c;
  c.entities.reserve(stored.size());
  c.ids.reserve(stored.size());
  c.created_hlc.reserve(stored.size());
  c.created_node.reserve(stored.size());
  c.field_counts.reserve(stored.size());
  std::string user;
  for (size_t i = 0; i < stored.size(); ++i) {
    const fb::RecordState* r = stored_root(stored[i]);
    c.entities.push_back(r->entity());
    c.ids.push_back(wire_id(get_id(r->id())));
    const Version created = get_version(r->created());
    c.created_hlc.push_back(created.hlc - c.prev_created);
    c.prev_created = created.hlc;
    c.created_node.push_back(created.node);
    const auto* fields = r->fields();
    c.field_counts.push_back(fields ? fields->size() : 0);
    if (r->deleted() || !get_version(r->deleted_version()).is_zero() || !view(r->deleted_by()).empty() ||
        (r->delete_seen() && r->delete_seen()->size() > 0)) {
      RecordState whole;
      (void)get_record_state(r, whole);  // check_stored_record decoded this tombstone whole once already
      c.tombstones.push_back(put_tombstone(b, static_cast<uint32_t>(i), whole));
    }
    if (fields == nullptr) continue;
    for (const fb::FieldState* f : *fields) {
      c.field_ids.push_back(f->field());
      const fb::Value* v = f->value();
      const auto* fragments = f->fragments();
      const uint32_t fragment_count = fragments ? fragments->size() : 0;
      if (fragment_count > 0 && v && v->kind() == fb::ValueKind::Text && joins(view(v->s()), *fragments)) {
        c.values.kinds.push_back(kJoinedFragments);
      } else {
        add_stored_value(c.values, v);
      }
      const Version version = get_version(f->version());
      c.version_hlc.push_back(version.hlc - created.hlc);
      c.version_node.push_back(version.node);
      c.nodes_differ = c.nodes_differ || version.node != created.node;
      user.assign(view(f->user()));
      c.users.push_back(c.user_table.index(user));
      c.fragment_counts.push_back(fragment_count);
      c.any_fragments = c.any_fragments || fragment_count > 0;
      for (uint32_t k = 0; k < fragment_count; ++k) {
        const fb::Fragment* fr = fragments->Get(k);
        const Version fv = get_version(fr->version());
        c.fragment_hlc.push_back(fv.hlc - version.hlc);
        c.fragment_node.push_back(fv.node);
        user.assign(view(fr->user()));
        c.fragment_users.push_back(c.user_table.index(user));
        const std::string_view text = view(fr->text());
        c.fragment_text_sizes.push_back(static_cast<uint32_t>(text.size()));
        c.fragment_text.insert(c.fragment_text.end(), text.begin(), text.end());
      }
    }
  }
  return c.finish(b);
}

// The v2 body of a message: the compact form where there is one, else the v1 form.
template <typename M>
Body put_body_v2(FlatBufferBuilder& b, const M& m) {
  return put_body(b, m);
}

Body put_body_v2(FlatBufferBuilder& b, const protocol::PushTxns& m) {
  auto txns = m.txns.empty() ? Offset<fb::TxnColumns>() : put_txn_columns(b, m.txns);
  return {fb::Body::PushTxnsCompact, fb::CreatePushTxnsCompact(b, m.request_id, txns).Union()};
}

Body put_body_v2(FlatBufferBuilder& b, const protocol::BootstrapPage& m) {
  // encode() decodes `stored` into `records` first when a page has both.
  auto records = !m.stored.empty()   ? put_stored_record_columns(b, m.stored)
                 : m.records.empty() ? Offset<fb::RecordColumns>()
                                     : put_record_columns(b, m.records);
  auto token = put_text(b, m.next_page_token);
  auto conflicts = put_tables(b, m.conflicts, put_conflict);
  auto purges = put_keys(b, m.purges);
  return {fb::Body::BootstrapPageCompact,
          fb::CreateBootstrapPageCompact(b, m.request_id, m.snapshot_seq, m.total_records, m.records_before,
                                         records, token, m.done, conflicts, purges)
              .Union()};
}

// ---- Decoding ---------------------------------------------------------------------------------------------

// Deepest legitimate nesting of tables: Frame > PushAck > TxnResult > RecordState > FieldState >
// Fragment/Value is 6. Unknown (newer) fields are not verified, so this does not constrain schema evolution
// of this version.
constexpr flatbuffers::uoffset_t kMaxDepth = 8;
// Every table we write is at least 8 bytes (its vtable offset plus one field), so a frame within
// kMaxMessageBytes that claims more tables than this is not one we wrote. Bounds the verifier's work.
constexpr flatbuffers::uoffset_t kMaxTables = tuning::kMaxMessageBytes / 8;

Status malformed(std::string message) {
  return Status(ErrorCode::kMalformedMessage, std::move(message));
}

// Says where in the message a child's error happened: "txns[3]: changes[17]: unknown field 99 of entity
// order".
Status within(const Status& s, std::string_view what, size_t index) {
  return Status(s.code(), std::string(what) + "[" + std::to_string(index) + "]: " + s.message(),
                s.retryable());
}

Status within(const Status& s, std::string_view what) {
  return Status(s.code(), std::string(what) + ": " + s.message(), s.retryable());
}

Status too_many(std::string_view what, size_t count, size_t limit) {
  return Status(ErrorCode::kTooManyChanges, std::to_string(count) + " " + std::string(what) +
                                                " in one message, over the limit of " +
                                                std::to_string(limit));
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::kNull:
      return "null";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kReal:
      return "real";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kText:
      return "text";
  }
  return "?";
}

// FlatBuffers structs are read through a copy: the 2.0.8 verifier checks a struct vector's length prefix for
// 4-byte alignment only, so an 8-byte struct (Version, FieldVersion) may sit at an offset that is 4 mod 8,
// and calling its accessors in place would read a misaligned object (undefined behaviour; codec_fuzz found
// it).
template <typename Struct>
Struct copy_struct(const Struct* in) {
  static_assert(std::is_trivially_copyable_v<Struct>);
  Struct out;
  std::memcpy(static_cast<void*>(&out), static_cast<const void*>(in), sizeof out);
  return out;
}

RecordId get_id(const fb::Id128* in) {
  if (!in) return RecordId{};
  const fb::Id128 id = copy_struct(in);
  return RecordId{id.hi(), id.lo()};
}
Version get_version(const fb::Version* in) {
  if (!in) return Version{};
  const fb::Version v = copy_struct(in);
  return Version{v.hlc(), v.node()};
}

// An absent string is the empty string. `max_bytes` is the limit of this kind of string (text, identifier,
// token); over it the message is refused with kValueInvalid.
Status get_string(const flatbuffers::String* in, size_t max_bytes, std::string_view what, std::string& out) {
  if (!in) {
    out.clear();
    return Status::ok();
  }
  if (in->size() > max_bytes) {
    return Status(ErrorCode::kValueInvalid, std::string(what) + " is " + std::to_string(in->size()) +
                                                " bytes, over the limit of " + std::to_string(max_bytes));
  }
  out.assign(in->c_str(), in->size());
  return Status::ok();
}

Status get_ident(const flatbuffers::String* in, std::string_view what, std::string& out) {
  return get_string(in, tuning::kMaxIdentifierBytes, what, out);
}

// An absent Value is null. Text longer than `max_text` is refused; reals must be finite (coordinates), since
// NaN compares unequal to itself and would make replicas that hold the same value look different forever.
Status get_value(const fb::Value* in, size_t max_text, Value& out) {
  if (!in) {
    out = Value::null();
    return Status::ok();
  }
  switch (in->kind()) {
    case fb::ValueKind::Null:
      out = Value::null();
      return Status::ok();
    case fb::ValueKind::Int:
      out = Value::integer(in->i());
      return Status::ok();
    case fb::ValueKind::Bool:
      out = Value::boolean(in->b());
      return Status::ok();
    case fb::ValueKind::Real:
      if (!std::isfinite(in->d())) return Status(ErrorCode::kValueInvalid, "real value is not finite");
      out = Value::real(in->d());
      return Status::ok();
    case fb::ValueKind::Text: {
      std::string text;
      Status s = get_string(in->s(), max_text, "text value", text);
      if (!s) return s;
      out = Value::text(std::move(text));
      return Status::ok();
    }
  }
  return malformed("unknown value kind " + std::to_string(static_cast<int>(in->kind())));
}

// Text limit for the value of a field in a record state or conflict: the joined text of an append-only field
// grows with every fragment, so only the frame size bounds it; every other text is bounded by kMaxTextBytes.
size_t state_text_limit(const schema::FieldDef* field) {
  return field && field->policy == schema::MergePolicy::kAppendText ? tuning::kMaxMessageBytes
                                                                    : tuning::kMaxTextBytes;
}

// A value stored in `field` must have the field type's storage kind; null is allowed here (nullability is a
// rule checked by rules.h, and a cleared field's state holds null).
Status check_kind(const schema::EntityDef& entity, const schema::FieldDef& field, const Value& v) {
  const Value::Kind want = storage_kind(field.type);
  if (v.is_null() || v.kind() == want) return Status::ok();
  return Status(ErrorCode::kTypeMismatch, std::string(entity.name) + "." + std::string(field.name) +
                                              " holds " + kind_name(want) + ", got " + kind_name(v.kind()));
}

Status get_entity(uint16_t raw, const schema::EntityDef*& out) {
  out = schema::entity(static_cast<EntityId>(raw));
  if (!out) return Status(ErrorCode::kUnknownEntity, "unknown entity " + std::to_string(raw));
  return Status::ok();
}

// A field id of `entity`; field 0 ("the record itself") only where `allow_record` says so, in which case
// `out` is null.
Status get_field(const schema::EntityDef& entity, uint16_t id, bool allow_record,
                 const schema::FieldDef*& out) {
  out = nullptr;
  if (id == 0 && allow_record) return Status::ok();
  out = entity.field(id);
  if (!out) {
    return Status(ErrorCode::kUnknownField,
                  "unknown field " + std::to_string(id) + " of entity " + std::string(entity.name));
  }
  return Status::ok();
}

// Field versions name real fields or, with field 0, the record itself (its creation).
Status get_field_versions(const Vector<const fb::FieldVersion*>* in, const schema::EntityDef& entity,
                          std::vector<FieldVersion>& out) {
  out.clear();
  if (!in) return Status::ok();
  out.reserve(in->size());
  for (flatbuffers::uoffset_t i = 0; i < in->size(); ++i) {
    const fb::FieldVersion fv = copy_struct(in->Get(i));
    const schema::FieldDef* field = nullptr;
    Status s = get_field(entity, fv.field(), /*allow_record=*/true, field);
    if (!s) return within(s, "seen", i);
    out.push_back(FieldVersion{fv.field(), get_version(&fv.version())});
  }
  return Status::ok();
}

Status get_keys(const Vector<const fb::RecordKey*>* in, std::vector<RecordKey>& out) {
  out.clear();
  if (!in) return Status::ok();
  if (in->size() > tuning::kMaxRecordsPerMessage) {
    return too_many("record keys", in->size(), tuning::kMaxRecordsPerMessage);
  }
  out.reserve(in->size());
  for (flatbuffers::uoffset_t i = 0; i < in->size(); ++i) {
    const fb::RecordKey k = copy_struct(in->Get(i));
    const schema::EntityDef* entity = nullptr;
    Status s = get_entity(k.entity(), entity);
    if (!s) return within(s, "keys", i);
    out.push_back(RecordKey{entity->id, get_id(&k.id())});
  }
  return Status::ok();
}

// A vector of tables, each converted by `get_one`, at most `max` of them (over: kTooManyChanges).
template <typename W, typename T>
Status get_tables(const Vector<Offset<W>>* in, size_t max, std::string_view what, std::vector<T>& out,
                  Status (*get_one)(const W*, T&)) {
  out.clear();
  if (!in) return Status::ok();
  if (in->size() > max) return too_many(what, in->size(), max);
  out.resize(in->size());
  for (flatbuffers::uoffset_t i = 0; i < in->size(); ++i) {
    Status s = get_one(in->Get(i), out[i]);
    if (!s) return within(s, what, i);
  }
  return Status::ok();
}

Status get_change(const fb::Change* in, Change& out) {
  switch (in->op()) {
    case fb::ChangeOp::Create:
    case fb::ChangeOp::Set:
    case fb::ChangeOp::Append:
    case fb::ChangeOp::Delete:
      break;
    default:
      return malformed("unknown change op " + std::to_string(static_cast<int>(in->op())));
  }
  out.op = static_cast<ChangeOp>(in->op());
  const schema::EntityDef* entity = nullptr;
  Status s = get_entity(in->entity(), entity);
  if (!s) return s;
  out.entity = entity->id;
  out.record = get_id(in->record());
  out.field = in->field();
  const bool record_op = out.op == ChangeOp::kCreate || out.op == ChangeOp::kDelete;
  const schema::FieldDef* field = nullptr;
  s = get_field(*entity, out.field, /*allow_record=*/record_op, field);
  if (!s) return s;
  s = get_value(in->value(), tuning::kMaxTextBytes, out.value);
  if (!s) return s;
  if (out.op == ChangeOp::kSet) {
    s = check_kind(*entity, *field, out.value);
    if (!s) return s;
  } else if (out.op == ChangeOp::kAppend && out.value.kind() != Value::Kind::kText) {
    return Status(ErrorCode::kTypeMismatch, "append to " + std::string(entity->name) + "." +
                                                std::string(field->name) + " carries " +
                                                kind_name(out.value.kind()) + ", not text");
  }
  out.version = get_version(in->version());
  out.base = get_version(in->base());
  return get_field_versions(in->seen(), *entity, out.seen);
}

Status get_changes(const Vector<Offset<fb::Change>>* in, std::vector<Change>& out) {
  return get_tables(in, tuning::kMaxChangesPerTxn, "changes", out, get_change);
}

Status get_client_txn(const fb::ClientTxn* in, ClientTxn& out) {
  out.node = in->node();
  out.node_seq = in->node_seq();
  out.created_at_ms = in->created_at_ms();
  return get_changes(in->changes(), out.changes);
}

Status get_scope_key(const fb::ScopeKey* in, ScopeKey& out) {
  if (!in) {
    out = ScopeKey{};
    return Status::ok();
  }
  if (in->kind() < static_cast<uint8_t>(ScopeKey::Kind::kGlobal) ||
      in->kind() > static_cast<uint8_t>(ScopeKey::Kind::kUnresolved))
    return malformed("unknown scope kind " + std::to_string(in->kind()));
  out.kind = static_cast<ScopeKey::Kind>(in->kind());
  return get_ident(in->value(), "scope", out.value);
}

Status get_scope_move(const fb::ScopeMove* in, ScopeMove& out) {
  const schema::EntityDef* entity = nullptr;
  Status s = get_entity(in->entity(), entity);
  if (!s) return s;
  out.entity = entity->id;
  out.record = get_id(in->record());
  s = get_scope_key(in->from(), out.from);
  if (!s) return s;
  return get_scope_key(in->to(), out.to);
}

Status get_server_txn(const fb::ServerTxn* in, ServerTxn& out) {
  out.server_seq = in->server_seq();
  out.origin_node = in->origin_node();
  Status s = get_ident(in->origin_user(), "origin_user", out.origin_user);
  if (!s) return s;
  out.origin_node_seq = in->origin_node_seq();
  s = get_tables(in->moves(), tuning::kMaxChangesPerTxn, "moves", out.moves, get_scope_move);
  if (!s) return s;
  return get_changes(in->changes(), out.changes);
}

Status get_fragment(const fb::Fragment* in, Fragment& out) {
  out.version = get_version(in->version());
  Status s = get_ident(in->user(), "fragment user", out.user);
  if (!s) return s;
  return get_string(in->text(), tuning::kMaxTextBytes, "fragment text", out.text);
}

// Record states arrive from the server only, but a device must still not trust them blindly: they are checked
// against the model like changes, and the ordering invariants RecordState's lookups rely on are enforced.
Status get_field_state(const schema::EntityDef& entity, const fb::FieldState* in, FieldState& out) {
  out.field = in->field();
  const schema::FieldDef* field = nullptr;
  Status s = get_field(entity, out.field, /*allow_record=*/false, field);
  if (!s) return s;
  s = get_value(in->value(), state_text_limit(field), out.value);
  if (!s) return s;
  s = check_kind(entity, *field, out.value);
  if (!s) return s;
  out.version = get_version(in->version());
  s = get_ident(in->user(), "user", out.user);
  if (!s) return s;
  s = get_tables(in->fragments(), std::numeric_limits<size_t>::max(), "fragments", out.fragments,
                 get_fragment);
  if (!s) return s;
  for (size_t i = 1; i < out.fragments.size(); ++i) {
    if (!(out.fragments[i - 1].version < out.fragments[i].version)) {
      return malformed("fragments of " + std::string(entity.name) + "." + std::string(field->name) +
                       " are not in strictly increasing version order");
    }
  }
  return Status::ok();
}

Status get_record_state(const fb::RecordState* in, RecordState& out) {
  const schema::EntityDef* entity = nullptr;
  Status s = get_entity(in->entity(), entity);
  if (!s) return s;
  out.entity = entity->id;
  out.id = get_id(in->id());
  out.created = get_version(in->created());
  out.deleted = in->deleted();
  out.deleted_version = get_version(in->deleted_version());
  s = get_ident(in->deleted_by(), "deleted_by", out.deleted_by);
  if (!s) return s;
  s = get_field_versions(in->delete_seen(), *entity, out.delete_seen);
  if (!s) return s;
  out.fields.clear();
  if (const auto* fields = in->fields()) {
    out.fields.resize(fields->size());
    for (flatbuffers::uoffset_t i = 0; i < fields->size(); ++i) {
      s = get_field_state(*entity, fields->Get(i), out.fields[i]);
      if (!s) return within(s, "fields", i);
      if (i > 0 && out.fields[i - 1].field >= out.fields[i].field) {
        return malformed("fields of a " + std::string(entity->name) + " record are not sorted by id");
      }
    }
  }
  return Status::ok();
}

// The value of a conflict side has the field's storage kind; a record-level conflict (field 0, e.g. an
// overlap of two events) may carry any kind.
Status get_conflict_side(const schema::EntityDef& entity, const schema::FieldDef* field,
                         const fb::ConflictSide* in, ConflictSide& out) {
  Status s = get_value(in->value(), state_text_limit(field), out.value);
  if (!s) return s;
  if (field) {
    s = check_kind(entity, *field, out.value);
    if (!s) return s;
  }
  out.version = get_version(in->version());
  return get_ident(in->user(), "user", out.user);
}

Status get_conflict(const fb::ConflictRecord* in, ConflictRecord& out) {
  switch (in->kind()) {
    case fb::ConflictKind::ConcurrentWrite:
    case fb::ConflictKind::DeleteWins:
    case fb::ConflictKind::Scheduling:
      break;
    default:
      return malformed("unknown conflict kind " + std::to_string(static_cast<int>(in->kind())));
  }
  out.server_seq = in->server_seq();
  out.kind = static_cast<ConflictKind>(in->kind());
  const schema::EntityDef* entity = nullptr;
  Status s = get_entity(in->entity(), entity);
  if (!s) return s;
  out.entity = entity->id;
  out.record = get_id(in->record());
  out.field = in->field();
  const schema::FieldDef* field = nullptr;
  s = get_field(*entity, out.field, /*allow_record=*/true, field);
  if (!s) return s;
  s = get_conflict_side(*entity, field, in->winner(), out.winner);
  if (!s) return within(s, "winner");
  s = get_conflict_side(*entity, field, in->loser(), out.loser);
  if (!s) return within(s, "loser");
  out.other_record = get_id(in->other_record());
  return get_ident(in->rule(), "rule", out.rule);
}

Status get_records(const Vector<Offset<fb::RecordState>>* in, std::vector<RecordState>& out) {
  return get_tables(in, tuning::kMaxRecordsPerMessage, "records", out, get_record_state);
}

Status get_conflicts(const Vector<Offset<fb::ConflictRecord>>* in, std::vector<ConflictRecord>& out) {
  return get_tables(in, tuning::kMaxRecordsPerMessage, "conflicts", out, get_conflict);
}

Status get_error_code(uint16_t raw, ErrorCode& out) {
  if (!known_error_code(raw)) return malformed("unknown error code " + std::to_string(raw));
  out = static_cast<ErrorCode>(raw);
  return Status::ok();
}

Status get_txn_result(const fb::TxnResult* in, protocol::TxnResult& out) {
  switch (in->outcome()) {
    case fb::TxnOutcome::Applied:
    case fb::TxnOutcome::Rejected:
    case fb::TxnOutcome::Duplicate:
      break;
    default:
      return malformed("unknown transaction outcome " + std::to_string(static_cast<int>(in->outcome())));
  }
  out.node_seq = in->node_seq();
  out.outcome = static_cast<protocol::TxnOutcome>(in->outcome());
  out.server_seq = in->server_seq();
  Status s = get_error_code(static_cast<uint16_t>(in->reason()), out.reason);
  if (!s) return s;
  s = get_string(in->message(), tuning::kMaxTextBytes, "message", out.message);
  if (!s) return s;
  s = get_conflicts(in->conflicts(), out.conflicts);
  if (!s) return s;
  s = get_records(in->records(), out.records);
  if (!s) return s;
  return get_keys(in->absent(), out.absent);
}

// ---- Messages ---------------------------------------------------------------------------------------------

Status get_message(const fb::Hello* in, protocol::Hello& out) {
  out.protocol_version = in->protocol_version();
  out.schema_version = in->schema_version();
  out.node = in->node();
  out.cursor = in->cursor();
  out.client_time_ms = in->client_time_ms();
  out.client_hlc = in->client_hlc();
  if (Status s = get_string(in->app_version(), tuning::kMaxAppVersionBytes, "app_version", out.app_version);
      !s)
    return s;
  // Shown to people on head office's pages and written to logs: printable ASCII only.
  for (char c : out.app_version)
    if (c < 0x20 || c > 0x7e) return Status(ErrorCode::kValueInvalid, "app_version must be printable ASCII");
  return get_string(in->token(), tuning::kMaxTokenBytes, "token", out.token);
}

Status get_message(const fb::Welcome* in, protocol::Welcome& out) {
  switch (in->role()) {
    case fb::Role::Rep:
    case fb::Role::Manager:
    case fb::Role::HeadOffice:
      break;
    default:
      return malformed("unknown role " + std::to_string(static_cast<int>(in->role())));
  }
  out.protocol_version = in->protocol_version();
  out.schema_version = in->schema_version();
  out.role = static_cast<schema::Role>(in->role());
  out.last_node_seq = in->last_node_seq();
  out.server_seq = in->server_seq();
  out.server_hlc = in->server_hlc();
  out.server_time_ms = in->server_time_ms();
  return get_ident(in->user(), "user", out.user);
}

Status get_message(const fb::PushTxns* in, protocol::PushTxns& out) {
  out.request_id = in->request_id();
  // The whole push is bounded too (a client never puts more than its session's kMaxChangesPerPush[V2]
  // changes in one push, and one transaction alone stays under it); checked before any conversion work. The
  // frame does not say its session's version: these are the largest any version allows, and SyncServer
  // holds a version 1 session to the version 1 limits.
  if (const auto* txns = in->txns()) {
    size_t changes = 0;
    for (const fb::ClientTxn* t : *txns) changes += t->changes() ? t->changes()->size() : 0;
    if (changes > tuning::kMaxChangesPerPushV2)
      return too_many("changes", changes, tuning::kMaxChangesPerPushV2);
  }
  return get_tables(in->txns(), tuning::kMaxTxnsPerPushV2, "txns", out.txns, get_client_txn);
}

Status get_message(const fb::PushAck* in, protocol::PushAck& out) {
  out.request_id = in->request_id();
  out.server_hlc = in->server_hlc();
  // The per-message limits apply to the sum over all results; checked before any conversion work.
  if (const auto* results = in->results()) {
    size_t records = 0, conflicts = 0, keys = 0;
    for (const fb::TxnResult* r : *results) {
      records += r->records() ? r->records()->size() : 0;
      conflicts += r->conflicts() ? r->conflicts()->size() : 0;
      keys += r->absent() ? r->absent()->size() : 0;
    }
    if (records > tuning::kMaxRecordsPerMessage)
      return too_many("records", records, tuning::kMaxRecordsPerMessage);
    if (conflicts > tuning::kMaxRecordsPerMessage) {
      return too_many("conflicts", conflicts, tuning::kMaxRecordsPerMessage);
    }
    if (keys > tuning::kMaxRecordsPerMessage)
      return too_many("record keys", keys, tuning::kMaxRecordsPerMessage);
  }
  return get_tables(in->results(), tuning::kMaxTxnsPerPushV2, "results", out.results, get_txn_result);
}

Status get_message(const fb::PullRequest* in, protocol::PullRequest& out) {
  out.request_id = in->request_id();
  out.cursor = in->cursor();
  out.max_changes = in->max_changes();
  out.live = in->live();
  return Status::ok();
}

Status get_message(const fb::ChangeBatch* in, protocol::ChangeBatch& out) {
  out.request_id = in->request_id();
  out.from_cursor = in->from_cursor();
  out.to_cursor = in->to_cursor();
  out.has_more = in->has_more();
  out.server_hlc = in->server_hlc();
  // The number of transactions is bounded by the frame size; each one's changes by kMaxChangesPerTxn.
  Status s = get_tables(in->txns(), std::numeric_limits<size_t>::max(), "txns", out.txns, get_server_txn);
  if (!s) return s;
  s = get_conflicts(in->conflicts(), out.conflicts);
  if (!s) return s;
  s = get_records(in->records(), out.records);
  if (!s) return s;
  return get_keys(in->purges(), out.purges);
}

Status get_message(const fb::BootstrapRequest* in, protocol::BootstrapRequest& out) {
  out.request_id = in->request_id();
  out.snapshot_seq = in->snapshot_seq();
  out.page_size = in->page_size();
  out.max_pages = in->max_pages();
  out.from_schema = in->from_schema();
  return get_string(in->page_token(), tuning::kMaxTokenBytes, "page_token", out.page_token);
}

// Everything of a page but its records, the same in both forms (BootstrapPage, BootstrapPageCompact), read
// after them.
template <typename Page>
Status get_page_rest(const Page* in, protocol::BootstrapPage& out) {
  out.request_id = in->request_id();
  out.snapshot_seq = in->snapshot_seq();
  out.total_records = in->total_records();
  out.records_before = in->records_before();
  out.done = in->done();
  Status s =
      get_string(in->next_page_token(), tuning::kMaxTokenBytes, "next_page_token", out.next_page_token);
  if (!s) return s;
  s = get_keys(in->purges(), out.purges);
  if (!s) return s;
  return get_conflicts(in->conflicts(), out.conflicts);
}

Status get_message(const fb::BootstrapPage* in, protocol::BootstrapPage& out) {
  Status s = get_records(in->records(), out.records);
  if (!s) return s;
  return get_page_rest(in, out);
}

Status get_message(const fb::Error* in, protocol::Error& out) {
  Status s = get_error_code(static_cast<uint16_t>(in->code()), out.code);
  if (!s) return s;
  out.retryable = in->retryable();
  out.request_id = in->request_id();
  out.resume_node_seq = in->resume_node_seq();
  return get_string(in->message(), tuning::kMaxTextBytes, "message", out.message);
}

// ---- Decoding, protocol version 2: the compact forms ----------------------------------------------------
// Columns are read through cursors that refuse to run past a column's end and, once the message is read,
// any entry left over, so a column of the wrong length is a malformed frame. The values then go through the
// same model checks as the v1 form's.

// One column. Elements are read through a copy like structs: the 2.0.8 verifier checks a vector's length
// prefix for 4-byte alignment only, so an 8-byte element may be misaligned.
template <typename T>
class Column {
 public:
  Column(const Vector<T>* v, const char* name)
      : data_(v ? v->Data() : nullptr), size_(v ? v->size() : 0), name_(name) {}
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool done() const { return next_ >= size_; }
  size_t remaining() const { return size_ - next_; }
  Status take(T& out) {
    if (next_ >= size_) return malformed(std::string("column ") + name_ + " is too short");
    std::memcpy(static_cast<void*>(&out), data_ + next_ * sizeof(T), sizeof(T));
    out = flatbuffers::EndianScalar(out);
    ++next_;
    return Status::ok();
  }
  Status finished() const {
    if (next_ != size_) return malformed(std::string("column ") + name_ + " is too long");
    return Status::ok();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  const char* name_;
  size_t next_ = 0;
};

template <typename S>
class StructColumn {
 public:
  StructColumn(const Vector<const S*>* v, const char* name) : v_(v), name_(name) {}
  size_t size() const { return v_ ? v_->size() : 0; }
  size_t remaining() const { return size() - next_; }
  Status take(S& out) {
    if (next_ >= size()) return malformed(std::string("column ") + name_ + " is too short");
    out = copy_struct(v_->Get(static_cast<flatbuffers::uoffset_t>(next_++)));
    return Status::ok();
  }
  Status finished() const {
    if (next_ != size()) return malformed(std::string("column ") + name_ + " is too long");
    return Status::ok();
  }

 private:
  const Vector<const S*>* v_;
  const char* name_;
  size_t next_ = 0;
};

// Texts: their sizes, then the concatenated bytes.
class TextColumn {
 public:
  TextColumn(const Vector<uint32_t>* sizes, const Vector<uint8_t>* bytes, const char* name)
      : sizes_(sizes, name), bytes_(bytes), name_(name) {}
  Status take(size_t max_bytes, std::string& out) {
    uint32_t size = 0;
    Status s = sizes_.take(size);
    if (!s) return s;
    if (size > max_bytes) {
      return Status(ErrorCode::kValueInvalid, std::string(name_) + " is " + std::to_string(size) +
                                                  " bytes, over the limit of " + std::to_string(max_bytes));
    }
    const size_t available = bytes_ ? bytes_->size() : 0;
    if (size > available - offset_) return malformed(std::string("column ") + name_ + " is too short");
    if (size == 0) {  // also when the bytes column is absent altogether (codec_fuzz's first v2 finding)
      out.clear();
      return Status::ok();
    }
    out.assign(reinterpret_cast<const char*>(bytes_->Data()) + offset_, size);
    offset_ += size;
    return Status::ok();
  }
  Status finished() const {
    Status s = sizes_.finished();
    if (!s) return s;
    if (offset_ != (bytes_ ? bytes_->size() : 0))
      return malformed(std::string("column ") + name_ + " is too long");
    return Status::ok();
  }

 private:
  Column<uint32_t> sizes_;
  const Vector<uint8_t>* bytes_;
  const char* name_;
  size_t offset_ = 0;
};

// Values split by kind (ValueColumns).
struct ValueReader {
  Column<uint8_t> kinds;
  Column<int64_t> ints;
  Column<double> reals;
  TextColumn text;

  // `kind` was taken from `kinds` by the caller; text over `max_text` is refused.
  Status take(uint8_t kind, size_t max_text, Value& out) {
    switch (kind) {
      case static_cast<uint8_t>(Value::Kind::kNull):
        out = Value::null();
        return Status::ok();
      case static_cast<uint8_t>(Value::Kind::kInt): {
        int64_t i = 0;
        Status s = ints.take(i);
        if (!s) return s;
        out = Value::integer(i);
        return Status::ok();
      }
      case static_cast<uint8_t>(Value::Kind::kBool): {
        int64_t i = 0;
        Status s = ints.take(i);
        if (!s) return s;
        if (i != 0 && i != 1) return malformed("bool value " + std::to_string(i));
        out = Value::boolean(i == 1);
        return Status::ok();
      }
      case static_cast<uint8_t>(Value::Kind::kReal): {
        double d = 0;
        Status s = reals.take(d);
        if (!s) return s;
        if (!std::isfinite(d)) return Status(ErrorCode::kValueInvalid, "real value is not finite");
        out = Value::real(d);
        return Status::ok();
      }
      case static_cast<uint8_t>(Value::Kind::kText): {
        std::string t;
        Status s = text.take(max_text, t);
        if (!s) return s;
        out = Value::text(std::move(t));
        return Status::ok();
      }
      default:
        return malformed("unknown value kind " + std::to_string(kind));
    }
  }
  Status finished() const {
    Status s = kinds.finished();
    if (s) s = ints.finished();
    if (s) s = reals.finished();
    if (s) s = text.finished();
    return s;
  }
};

template <typename W>
ValueReader value_reader(const W* in) {
  return ValueReader{Column<uint8_t>(in->kinds(), "kinds"), Column<int64_t>(in->ints(), "ints"),
                     Column<double>(in->reals(), "reals"),
                     TextColumn(in->text_sizes(), in->text(), "text value")};
}

Status get_user_table(const Vector<Offset<flatbuffers::String>>* in, std::vector<std::string>& out) {
  return get_tables(
      in, std::numeric_limits<size_t>::max(), "user_table", out,
      +[](const flatbuffers::String* s, std::string& u) { return get_ident(s, "user", u); });
}

Status get_user(const std::vector<std::string>& table, Column<uint32_t>& column, std::string& out) {
  uint32_t index = 0;
  Status s = column.take(index);
  if (!s) return s;
  if (index >= table.size()) return malformed("user index " + std::to_string(index) + " out of range");
  out = table[index];
  return Status::ok();
}

// The checks get_change() applies to a v1 change, on a change read from columns.
Status check_change(const schema::EntityDef& entity, const Change& c) {
  const bool record_op = c.op == ChangeOp::kCreate || c.op == ChangeOp::kDelete;
  const schema::FieldDef* field = nullptr;
  Status s = get_field(entity, c.field, /*allow_record=*/record_op, field);
  if (!s) return s;
  if (c.op == ChangeOp::kSet) return check_kind(entity, *field, c.value);
  if (c.op == ChangeOp::kAppend && c.value.kind() != Value::Kind::kText) {
    return Status(ErrorCode::kTypeMismatch, "append to " + std::string(entity.name) + "." +
                                                std::string(field->name) + " carries " +
                                                kind_name(c.value.kind()) + ", not text");
  }
  return Status::ok();
}

Status get_txn_columns(const fb::TxnColumns* in, std::vector<ClientTxn>& out) {
  out.clear();
  if (!in) return Status::ok();
  Column<uint64_t> nodes(in->nodes(), "nodes"), node_seqs(in->node_seqs(), "node_seqs"),
      created_at(in->created_at_ms(), "created_at_ms");
  Column<uint32_t> change_counts(in->change_counts(), "change_counts");
  Column<uint16_t> run_entities(in->run_entities(), "run_entities");
  StructColumn<fb::Id128> run_records(in->run_records(), "run_records");
  Column<uint32_t> run_lengths(in->run_lengths(), "run_lengths");
  Column<uint8_t> ops(in->ops(), "ops");
  Column<uint16_t> fields(in->fields(), "fields");
  Column<uint64_t> version_hlc(in->version_hlc(), "version_hlc"),
      version_node(in->version_node(), "version_node");
  Column<uint32_t> seen_counts(in->seen_counts(), "seen_counts");
  Column<uint32_t> base_changes(in->base_changes(), "base_changes");
  StructColumn<fb::Version> bases(in->bases(), "bases");
  StructColumn<fb::FieldVersion> seen(in->seen(), "seen");
  ValueReader values = value_reader(in);

  // The limits first, before any conversion work: transactions, changes per transaction and per push.
  const size_t txns = nodes.size();
  if (txns > tuning::kMaxTxnsPerPushV2) return too_many("txns", txns, tuning::kMaxTxnsPerPushV2);
  const size_t changes = ops.size();
  if (changes > tuning::kMaxChangesPerPushV2)
    return too_many("changes", changes, tuning::kMaxChangesPerPushV2);
  const bool per_change_nodes = !version_node.empty(), per_change_seen = !seen_counts.empty();

  // The changes with a non-zero base, in increasing order: next_base is the next one.
  if (base_changes.size() != bases.size()) return malformed("base_changes and bases differ in length");
  bool have_base = false;
  uint32_t next_base = 0;
  auto advance_base = [&]() -> Status {
    if (base_changes.done()) {
      have_base = false;
      return Status::ok();
    }
    uint32_t following = 0;
    Status st = base_changes.take(following);
    if (!st) return st;
    if (have_base && following <= next_base) return malformed("base_changes are not increasing");
    next_base = following;
    have_base = true;
    return Status::ok();
  };
  Status s = advance_base();
  if (!s) return s;
  uint64_t seq = 0, created = 0, hlc = 0;
  uint32_t index = 0, run_left = 0;
  const schema::EntityDef* entity = nullptr;
  RecordId record;
  out.resize(txns);
  for (size_t t = 0; t < txns; ++t) {
    ClientTxn& txn = out[t];
    uint64_t delta_seq = 0, delta_created = 0;
    uint32_t count = 0;
    if (!(s = nodes.take(txn.node)) || !(s = node_seqs.take(delta_seq)) ||
        !(s = created_at.take(delta_created)) || !(s = change_counts.take(count)))
      return within(s, "txns", t);
    seq += delta_seq;
    created += delta_created;
    txn.node_seq = seq;
    txn.created_at_ms = static_cast<int64_t>(created);
    if (count > tuning::kMaxChangesPerTxn)
      return within(too_many("changes", count, tuning::kMaxChangesPerTxn), "txns", t);
    if (count > changes - index) return malformed("change_counts exceed the changes");
    if (run_left != 0) return malformed("a run crosses a transaction boundary");
    txn.changes.resize(count);
    for (uint32_t i = 0; i < count; ++i, ++index) {
      Change& c = txn.changes[i];
      if (run_left == 0) {
        uint16_t raw_entity = 0;
        fb::Id128 id;
        if (!(s = run_entities.take(raw_entity)) || !(s = run_records.take(id)) ||
            !(s = run_lengths.take(run_left)))
          return s;
        if (run_left == 0) return malformed("empty run");
        s = get_entity(raw_entity, entity);
        if (!s) return within(within(s, "changes", i), "txns", t);
        record = RecordId{id.hi(), id.lo()};
      }
      --run_left;
      c.entity = entity->id;
      c.record = record;
      uint8_t op = 0, kind = 0;
      uint64_t delta_hlc = 0;
      if (!(s = ops.take(op)) || !(s = fields.take(c.field)) || !(s = values.kinds.take(kind)) ||
          !(s = version_hlc.take(delta_hlc)))
        return s;
      if (op < static_cast<uint8_t>(ChangeOp::kCreate) || op > static_cast<uint8_t>(ChangeOp::kDelete))
        return within(within(malformed("unknown change op " + std::to_string(op)), "changes", i), "txns", t);
      c.op = static_cast<ChangeOp>(op);
      s = values.take(kind, tuning::kMaxTextBytes, c.value);
      if (!s) return within(within(s, "changes", i), "txns", t);
      hlc += delta_hlc;
      c.version.hlc = hlc;
      c.version.node = txn.node;
      if (per_change_nodes && !(s = version_node.take(c.version.node))) return s;
      if (have_base && next_base == index) {
        fb::Version base;
        if (!(s = bases.take(base))) return s;
        c.base = get_version(&base);
        if (c.base.is_zero()) return malformed("a zero version among the bases");
        if (!(s = advance_base())) return s;
      }
      uint32_t seen_count = 0;
      if (per_change_seen && !(s = seen_counts.take(seen_count))) return s;
      if (seen_count > seen.remaining()) return malformed("seen_counts exceed the seen versions");
      c.seen.resize(seen_count);
      for (FieldVersion& fv : c.seen) {
        fb::FieldVersion w;
        if (!(s = seen.take(w))) return s;
        const schema::FieldDef* field = nullptr;
        s = get_field(*entity, w.field(), /*allow_record=*/true, field);
        if (!s) return within(within(s, "changes", i), "txns", t);
        fv = FieldVersion{w.field(), get_version(&w.version())};
      }
      s = check_change(*entity, c);
      if (!s) return within(within(s, "changes", i), "txns", t);
    }
  }
  if (run_left != 0) return malformed("a run outlasts its transaction");
  if (have_base) return malformed("base_changes name a change that does not exist");
  for (Status f : {nodes.finished(), node_seqs.finished(), created_at.finished(), change_counts.finished(),
                   run_entities.finished(), run_records.finished(), run_lengths.finished(), ops.finished(),
                   fields.finished(), version_hlc.finished(), version_node.finished(), seen_counts.finished(),
                   base_changes.finished(), bases.finished(), seen.finished(), values.finished()})
    if (!f) return f;
  return Status::ok();
}

Status get_tombstone(const fb::Tombstone* in, const schema::EntityDef& entity, RecordState& out) {
  out.deleted = in->deleted();
  out.deleted_version = get_version(in->deleted_version());
  Status s = get_ident(in->deleted_by(), "deleted_by", out.deleted_by);
  if (!s) return s;
  return get_field_versions(in->delete_seen(), entity, out.delete_seen);
}

Status get_record_columns(const fb::RecordColumns* in, std::vector<RecordState>& out) {
  out.clear();
  if (!in) return Status::ok();
  Column<uint16_t> entities(in->entities(), "entities");
  StructColumn<fb::Id128> ids(in->ids(), "ids");
  Column<uint64_t> created_hlc(in->created_hlc(), "created_hlc"),
      created_node(in->created_node(), "created_node");
  Column<uint32_t> field_counts(in->field_counts(), "field_counts");
  Column<uint16_t> field_ids(in->field_ids(), "field_ids");
  Column<uint64_t> version_hlc(in->version_hlc(), "version_hlc"),
      version_node(in->version_node(), "version_node");
  Column<uint32_t> users(in->users(), "users"), fragment_counts(in->fragment_counts(), "fragment_counts");
  Column<uint64_t> fragment_hlc(in->fragment_hlc(), "fragment_hlc"),
      fragment_node(in->fragment_node(), "fragment_node");
  Column<uint32_t> fragment_users(in->fragment_users(), "fragment_users");
  TextColumn fragment_text(in->fragment_text_sizes(), in->fragment_text(), "fragment text");
  ValueReader values = value_reader(in);
  std::vector<std::string> user_table;
  Status s = get_user_table(in->user_table(), user_table);
  if (!s) return s;

  const size_t records = entities.size();
  if (records > tuning::kMaxRecordsPerMessage)
    return too_many("records", records, tuning::kMaxRecordsPerMessage);
  const bool per_field_nodes = !version_node.empty(), per_field_fragments = !fragment_counts.empty();
  const auto* tombstones = in->tombstones();
  flatbuffers::uoffset_t next_tombstone = 0;
  uint64_t created = 0;
  out.resize(records);
  for (size_t i = 0; i < records; ++i) {
    RecordState& r = out[i];
    uint16_t raw_entity = 0;
    fb::Id128 id;
    uint64_t delta_created = 0;
    uint32_t count = 0;
    if (!(s = entities.take(raw_entity)) || !(s = ids.take(id)) || !(s = created_hlc.take(delta_created)) ||
        !(s = created_node.take(r.created.node)) || !(s = field_counts.take(count)))
      return s;
    const schema::EntityDef* entity = nullptr;
    s = get_entity(raw_entity, entity);
    if (!s) return within(s, "records", i);
    r.entity = entity->id;
    r.id = RecordId{id.hi(), id.lo()};
    created += delta_created;
    r.created.hlc = created;
    if (tombstones && next_tombstone < tombstones->size() && tombstones->Get(next_tombstone)->record() == i) {
      s = get_tombstone(tombstones->Get(next_tombstone++), *entity, r);
      if (!s) return within(s, "records", i);
    }
    if (count > field_ids.remaining()) return malformed("field_counts exceed the fields");
    r.fields.resize(count);
    for (uint32_t k = 0; k < count; ++k) {
      FieldState& f = r.fields[k];
      uint8_t kind = 0;
      uint64_t delta_hlc = 0;
      if (!(s = field_ids.take(f.field)) || !(s = values.kinds.take(kind)) ||
          !(s = version_hlc.take(delta_hlc)) || !(s = get_user(user_table, users, f.user)))
        return s;
      const schema::FieldDef* field = nullptr;
      s = get_field(*entity, f.field, /*allow_record=*/false, field);
      if (!s) return within(within(s, "fields", k), "records", i);
      if (k > 0 && r.fields[k - 1].field >= f.field)
        return malformed("fields of a " + std::string(entity->name) + " record are not sorted by id");
      f.version.hlc = r.created.hlc + delta_hlc;
      f.version.node = r.created.node;
      if (per_field_nodes && !(s = version_node.take(f.version.node))) return s;
      uint32_t fragments = 0;
      if (per_field_fragments && !(s = fragment_counts.take(fragments))) return s;
      if (fragments > fragment_hlc.remaining()) return malformed("fragment_counts exceed the fragments");
      f.fragments.resize(fragments);
      for (uint32_t j = 0; j < fragments; ++j) {
        Fragment& fr = f.fragments[j];
        uint64_t delta = 0;
        if (!(s = fragment_hlc.take(delta)) || !(s = fragment_node.take(fr.version.node)) ||
            !(s = get_user(user_table, fragment_users, fr.user)) ||
            !(s = fragment_text.take(tuning::kMaxTextBytes, fr.text)))
          return within(within(s, "fields", k), "records", i);
        fr.version.hlc = f.version.hlc + delta;
        if (j > 0 && !(f.fragments[j - 1].version < fr.version)) {
          return malformed("fragments of " + std::string(entity->name) + "." + std::string(field->name) +
                           " are not in strictly increasing version order");
        }
      }
      if (kind == kJoinedFragments) {
        if (f.fragments.empty()) return malformed("joined fragments without fragments");
        f.value = Value::text(join_fragments(f.fragments));
        if (field->policy != schema::MergePolicy::kAppendText &&
            f.value.as_text().size() > tuning::kMaxTextBytes)
          return Status(ErrorCode::kValueInvalid, "joined text over the limit");
      } else {
        s = values.take(kind, state_text_limit(field), f.value);
        if (!s) return within(within(s, "fields", k), "records", i);
      }
      s = check_kind(*entity, *field, f.value);
      if (!s) return within(within(s, "fields", k), "records", i);
    }
  }
  if (tombstones && next_tombstone != tombstones->size())
    return malformed("tombstones are not in increasing record order or name a record that does not exist");
  for (Status f :
       {entities.finished(), ids.finished(), created_hlc.finished(), created_node.finished(),
        field_counts.finished(), field_ids.finished(), version_hlc.finished(), version_node.finished(),
        users.finished(), fragment_counts.finished(), fragment_hlc.finished(), fragment_node.finished(),
        fragment_users.finished(), fragment_text.finished(), values.finished()})
    if (!f) return f;
  return Status::ok();
}

Status get_message(const fb::PushTxnsCompact* in, protocol::PushTxns& out) {
  out.request_id = in->request_id();
  return get_txn_columns(in->txns(), out.txns);
}

Status get_message(const fb::BootstrapPageCompact* in, protocol::BootstrapPage& out) {
  Status s = get_record_columns(in->records(), out.records);
  if (!s) return s;
  return get_page_rest(in, out);
}

template <typename W, typename M>
Result<protocol::Message> convert(const W* in) {
  M out;
  Status s = get_message(in, out);
  if (!s) return s;
  return protocol::Message(std::move(out));
}

Result<protocol::Message> decode_verified(const fb::Frame* frame) {
  switch (frame->body_type()) {
    case fb::Body::Hello:
      return convert<fb::Hello, protocol::Hello>(frame->body_as_Hello());
    case fb::Body::Welcome:
      return convert<fb::Welcome, protocol::Welcome>(frame->body_as_Welcome());
    case fb::Body::PushTxns:
      return convert<fb::PushTxns, protocol::PushTxns>(frame->body_as_PushTxns());
    case fb::Body::PushAck:
      return convert<fb::PushAck, protocol::PushAck>(frame->body_as_PushAck());
    case fb::Body::PullRequest:
      return convert<fb::PullRequest, protocol::PullRequest>(frame->body_as_PullRequest());
    case fb::Body::ChangeBatch:
      return convert<fb::ChangeBatch, protocol::ChangeBatch>(frame->body_as_ChangeBatch());
    case fb::Body::BootstrapRequest:
      return convert<fb::BootstrapRequest, protocol::BootstrapRequest>(frame->body_as_BootstrapRequest());
    case fb::Body::BootstrapPage:
      return convert<fb::BootstrapPage, protocol::BootstrapPage>(frame->body_as_BootstrapPage());
    case fb::Body::Error:
      return convert<fb::Error, protocol::Error>(frame->body_as_Error());
    case fb::Body::PushTxnsCompact:
      return convert<fb::PushTxnsCompact, protocol::PushTxns>(frame->body_as_PushTxnsCompact());
    case fb::Body::BootstrapPageCompact:
      return convert<fb::BootstrapPageCompact, protocol::BootstrapPage>(
          frame->body_as_BootstrapPageCompact());
    case fb::Body::NONE:
      break;
  }
  return malformed("unknown message type " + std::to_string(static_cast<int>(frame->body_type())));
}

// `compressed`: the frame came out of a compressed frame, which must not hold another one.
Result<protocol::Message> decode_frame(std::span<const uint8_t> frame, bool compressed = false) {
  if (frame.size() > tuning::kMaxMessageBytes) {
    return Status(ErrorCode::kMessageTooLarge, "frame of " + std::to_string(frame.size()) +
                                                   " bytes, over the limit of " +
                                                   std::to_string(tuning::kMaxMessageBytes));
  }
  if (detail::is_compressed_frame(frame)) {
    if (compressed) return malformed("a compressed frame inside a compressed frame");
    Result<detail::Decompressed> inner = detail::decompress_frame(frame, tuning::kMaxMessageBytes);
    if (!inner) return inner.status();
    Result<protocol::Message> m = decode_frame(inner.value().bytes(), /*compressed=*/true);
    // Never sent compressed (Hello carries the device token): a peer that does is not one of ours.
    if (m.is_ok() && (std::holds_alternative<protocol::Hello>(m.value()) ||
                      std::holds_alternative<protocol::Welcome>(m.value())))
      return malformed("a compressed handshake message");
    return m;
  }
  if (frame.size() < 2 * sizeof(flatbuffers::uoffset_t)) {
    return malformed("frame of " + std::to_string(frame.size()) + " bytes is too short");
  }
  // FlatBuffers reads scalars in place, which needs them aligned in memory, not just within the buffer (the
  // verifier checks the latter). A frame sliced out of a network buffer may start anywhere, so copy it then.
  const uint8_t* data = frame.data();
  std::unique_ptr<uint64_t[]> aligned;
  if (reinterpret_cast<uintptr_t>(data) % alignof(uint64_t) != 0) {
    aligned.reset(new uint64_t[(frame.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t)]);
    std::memcpy(aligned.get(), frame.data(), frame.size());
    data = reinterpret_cast<const uint8_t*>(aligned.get());
  }
  flatbuffers::Verifier::Options options;
  options.max_depth = kMaxDepth;
  options.max_tables = kMaxTables;
  options.check_alignment = true;
  flatbuffers::Verifier verifier(data, frame.size(), options);
  if (!verifier.VerifyBuffer<fb::Frame>(nullptr)) return malformed("frame failed FlatBuffers verification");
  if (!fb::FrameBufferHasIdentifier(data)) {
    return malformed(std::string("frame does not carry the file identifier ") + fb::FrameIdentifier());
  }
  return decode_verified(fb::GetFrame(data));
}

// Stored values: one table as the root of its own buffer (no file identifier), verified like a frame.
// The builder is the thread's, cleared and reused: the server encodes two of these for every transaction it
// applies (the record's `_meta`, the log entry), and a fresh builder's first buffer and its regrowths were a
// tenth of that encoding. One that grew past kKeptBuilderBytes (a huge transaction) gives its buffer back.
template <typename W, typename T>
std::vector<uint8_t> encode_root(const T& value, Offset<W> (*put_one)(FlatBufferBuilder&, const T&)) {
  constexpr size_t kKeptBuilderBytes = 64 * 1024;
  thread_local FlatBufferBuilder b(1024);
  b.Clear();
  b.Finish(put_one(b, value));
  std::vector<uint8_t> out(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
  if (out.size() > kKeptBuilderBytes) b.Reset();
  return out;
}

template <typename W, typename T>
Result<T> decode_root(std::span<const uint8_t> bytes, Status (*get_one)(const W*, T&), const char* what) {
  if (bytes.size() > tuning::kMaxMessageBytes || bytes.size() < 2 * sizeof(flatbuffers::uoffset_t))
    return malformed(std::string("stored ") + what + " of " + std::to_string(bytes.size()) + " bytes");
  const uint8_t* data = bytes.data();
  std::unique_ptr<uint64_t[]> aligned;
  if (reinterpret_cast<uintptr_t>(data) % alignof(uint64_t) != 0) {
    aligned.reset(new uint64_t[(bytes.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t)]);
    std::memcpy(aligned.get(), bytes.data(), bytes.size());
    data = reinterpret_cast<const uint8_t*>(aligned.get());
  }
  flatbuffers::Verifier::Options options;
  options.max_depth = kMaxDepth;
  options.max_tables = kMaxTables;
  flatbuffers::Verifier verifier(data, bytes.size(), options);
  if (!verifier.VerifyBuffer<W>(nullptr))
    return malformed(std::string("stored ") + what + " failed verification");
  T out;
  Status s = get_one(flatbuffers::GetRoot<W>(data), out);
  if (!s) return s;
  return out;
}

}  // namespace

std::vector<uint8_t> encode_record(const RecordState& record) {
  return encode_root(record, put_record_state);
}
Result<RecordState> decode_record(std::span<const uint8_t> bytes) {
  return decode_root(bytes, get_record_state, "record");
}
Result<CheckedRecord> check_stored_record(std::vector<uint8_t> bytes) {
  if (bytes.size() > tuning::kMaxMessageBytes || bytes.size() < 2 * sizeof(flatbuffers::uoffset_t))
    return malformed("stored record of " + std::to_string(bytes.size()) + " bytes");
  // A vector's storage is aligned for any scalar (operator new), as GetRoot's reads need.
  flatbuffers::Verifier::Options options;
  options.max_depth = kMaxDepth;
  options.max_tables = kMaxTables;
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), options);
  if (!verifier.VerifyBuffer<fb::RecordState>(nullptr)) return malformed("stored record failed verification");
  const fb::RecordState* r = flatbuffers::GetRoot<fb::RecordState>(bytes.data());
  const schema::EntityDef* entity = nullptr;
  if (Status s = get_entity(r->entity(), entity); !s) return s;
  CheckedRecord out{protocol::StoredRecordMaker::make({}), RecordState{}};
  RecordState& scope = out.scope;
  scope.entity = entity->id;
  scope.id = get_id(r->id());
  if (r->deleted() || !get_version(r->deleted_version()).is_zero() || r->deleted_by() ||
      (r->delete_seen() && r->delete_seen()->size() > 0)) {
    // A tombstone: decoded whole once here (put_stored_record_columns decodes it again and cannot fail).
    RecordState whole;
    if (Status s = get_record_state(r, whole); !s) return s;
  }
  // The value kinds the page's columns can hold (the encoder switches over them); the device's decoder
  // applies the model's checks to every record of the page as before.
  const uint16_t scope_field = entity->scope.kind == schema::ScopeKind::kGlobal ? 0 : entity->scope.field;
  if (const auto* fields = r->fields()) {
    for (const fb::FieldState* f : *fields) {
      const fb::Value* v = f->value();
      if (v && v->kind() > fb::ValueKind::MAX)
        return malformed("unknown value kind " + std::to_string(static_cast<int>(v->kind())));
      if (scope_field != 0 && f->field() == scope_field) {
        FieldState& field = scope.fields.emplace_back();
        field.field = f->field();
        if (Status s = get_value(v, tuning::kMaxTextBytes, field.value); !s) return s;
      }
    }
  }
  out.record = protocol::StoredRecordMaker::make(std::move(bytes));
  return out;
}

protocol::BootstrapPage with_records(const protocol::BootstrapPage& page) {
  protocol::BootstrapPage out = page;
  out.stored.clear();
  out.records.reserve(page.records.size() + page.stored.size());
  for (const protocol::StoredRecord& r : page.stored) {
    RecordState& state = out.records.emplace_back();
    (void)get_record_state(stored_root(r), state);  // checked when it was made
  }
  return out;
}

std::vector<uint8_t> encode_client_txn(const ClientTxn& txn) {
  return encode_root(txn, put_client_txn);
}
Result<ClientTxn> decode_client_txn(std::span<const uint8_t> bytes) {
  return decode_root(bytes, get_client_txn, "client transaction");
}
std::vector<uint8_t> encode_server_txn(const ServerTxn& txn) {
  return encode_root(txn, put_server_txn);
}
Result<ServerTxn> decode_server_txn(std::span<const uint8_t> bytes) {
  return decode_root(bytes, get_server_txn, "server transaction");
}
std::vector<uint8_t> encode_conflict(const ConflictRecord& conflict) {
  return encode_root(conflict, put_conflict);
}
Result<ConflictRecord> decode_conflict(std::span<const uint8_t> bytes) {
  return decode_root(bytes, get_conflict, "conflict");
}

namespace {
bool is_handshake(const protocol::Message& m) {
  return std::holds_alternative<protocol::Hello>(m) || std::holds_alternative<protocol::Welcome>(m);
}
}  // namespace

bool compressible(const protocol::Message& message) {
  return std::visit(
      [](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, protocol::ChangeBatch>) {
          return m.request_id != 0;  // a pull's answer, not a live batch
        } else {
          return std::is_same_v<M, protocol::PushTxns> || std::is_same_v<M, protocol::PushAck> ||
                 std::is_same_v<M, protocol::BootstrapPage>;
        }
      },
      message);
}

std::vector<uint8_t> encode(const protocol::Message& message, uint32_t protocol_version) {
  EncodeOptions options;
  options.protocol_version = protocol_version;
  return encode(message, options);
}

std::vector<uint8_t> encode(const protocol::Message& message, const EncodeOptions& options) {
  const bool v2 = options.protocol_version >= 2 && !is_handshake(message);
  // Stored records go straight into a version-2 page's columns; every other form reads them decoded.
  if (const auto* page = std::get_if<protocol::BootstrapPage>(&message);
      page && !page->stored.empty() && (!v2 || !page->records.empty()))
    return encode(protocol::Message(with_records(*page)), options);
  FlatBufferBuilder b(1024);
  const Body body =
      std::visit([&](const auto& m) { return v2 ? put_body_v2(b, m) : put_body(b, m); }, message);
  fb::FinishFrameBuffer(b, fb::CreateFrame(b, body.first, body.second));
  const std::span<const uint8_t> frame(b.GetBufferPointer(), b.GetSize());
  if (v2 && options.compression_level > 0 && frame.size() >= options.compress_min_bytes &&
      compressible(message)) {
    const int level = std::holds_alternative<protocol::BootstrapPage>(message)
                          ? options.bootstrap_compression_level
                          : options.compression_level;
    if (std::optional<std::vector<uint8_t>> z = detail::compress_frame(frame, level)) return std::move(*z);
  }
  return std::vector<uint8_t>(frame.begin(), frame.end());
}

Result<protocol::Message> decode(std::span<const uint8_t> frame) {
  // Nothing below throws but allocation; a frame within kMaxMessageBytes cannot make it fail short of the
  // process running out of memory, which the caller hears about as an internal error, never as an exception.
  try {
    return decode_frame(frame);
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kInternal, "out of memory decoding a frame", /*retryable=*/true);
  } catch (...) {
    return Status(ErrorCode::kInternal, "unexpected exception decoding a frame");
  }
}

}  // namespace fieldsync::codec

// The data that moves: versions, field changes, client transactions, record states and conflict records.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fieldsync/schema/model.h"
#include "fieldsync/sync/hlc.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/status.h"
#include "fieldsync/sync/value.h"

namespace fieldsync {

using NodeId = uint64_t;  // random 64-bit id of a device (or of the server), registered with the server
using UserId = std::string;
using schema::EntityId;

// The version of a field value: who wrote it and when, totally ordered by (hlc, node). Zero means "never
// written".
struct Version {
  Hlc hlc = 0;
  NodeId node = 0;
  bool is_zero() const { return hlc == 0 && node == 0; }
  friend auto operator<=>(const Version&, const Version&) = default;
};

struct FieldVersion {
  uint16_t field = 0;
  Version version;
  friend bool operator==(const FieldVersion&, const FieldVersion&) = default;
};

enum class ChangeOp : uint8_t {
  kCreate = 1,  // the record comes into existence; its fields follow as kSet/kAppend changes in the same txn
  kSet = 2,     // set one field (all policies but kAppendText)
  kAppend = 3,  // append a fragment to a kAppendText field
  kDelete = 4,  // tombstone the record (deletable entities only)
};

struct Change {
  ChangeOp op = ChangeOp::kSet;
  EntityId entity = EntityId::kNone;
  RecordId record;
  uint16_t field = 0;              // 0 for kCreate and kDelete
  Value value;                     // kSet: the new value; kAppend: the fragment (text)
  Version version;                 // this change's own version (each change gets its own HLC tick)
  Version base;                    // kSet: the field version the writer had seen when it wrote (zero if none)
  std::vector<FieldVersion> seen;  // kDelete: every field version the deleter had seen

  friend bool operator==(const Change&, const Change&) = default;
};

// A group of changes that apply together or not at all (an order with its lines), as written on one device.
struct ClientTxn {
  NodeId node = 0;
  uint64_t node_seq = 0;  // 1, 2, 3... per node, assigned durably with the outbox entry
  int64_t created_at_ms = 0;
  std::vector<Change> changes;

  friend bool operator==(const ClientTxn&, const ClientTxn&) = default;
};

// Who may see a record, as resolved from the model's scope rules (scope.h).
struct ScopeKey {
  enum class Kind : uint8_t {
    kGlobal = 1,      // catalogue data: everyone
    kTerritory = 2,   // value: territory id
    kOwner = 3,       // value: user id
    kUnresolved = 4,  // a parent is missing or has no scope field yet: only head office
  };
  Kind kind = Kind::kUnresolved;
  std::string value;
  friend bool operator==(const ScopeKey&, const ScopeKey&) = default;
  friend auto operator<=>(const ScopeKey&, const ScopeKey&) = default;
};

// A record whose scope changed in a transaction (head office moved an account to another territory). Kept in
// the server's log so pulls can send the record and everything that hangs off it to devices that gained it,
// and purges to devices that lost it. Server-side bookkeeping: never sent on the wire.
struct ScopeMove {
  EntityId entity = EntityId::kNone;
  RecordId record;
  ScopeKey from;
  ScopeKey to;
  friend bool operator==(const ScopeMove&, const ScopeMove&) = default;
};

// A transaction as accepted by the server, with its place in the global order.
struct ServerTxn {
  uint64_t server_seq = 0;
  NodeId origin_node = 0;
  UserId origin_user;
  uint64_t origin_node_seq = 0;
  std::vector<Change> changes;   // only the changes that altered the store (losing LWW writes are dropped)
  std::vector<ScopeMove> moves;  // server-side only (not encoded): scope changes this transaction made

  friend bool operator==(const ServerTxn&, const ServerTxn&) = default;
};

struct Fragment {
  Version version;
  UserId user;
  std::string text;
  friend bool operator==(const Fragment&, const Fragment&) = default;
};

struct FieldState {
  uint16_t field = 0;
  Value value;  // for kAppendText: the fragments joined in version order (derived, kept for reads)
  Version version;
  UserId user;                      // who wrote `version`
  std::vector<Fragment> fragments;  // kAppendText only, sorted by version, no duplicates
  friend bool operator==(const FieldState&, const FieldState&) = default;
};

// Everything known about one record: its fields with versions, or its tombstone.
struct RecordState {
  EntityId entity = EntityId::kNone;
  RecordId id;
  Version created;  // version of the kCreate change; zero if only updates were seen so far
  bool deleted = false;
  Version deleted_version;
  UserId deleted_by;
  std::vector<FieldVersion> delete_seen;  // the deleter's view, kept so late updates are judged consistently
  std::vector<FieldState> fields;         // sorted by field id

  const FieldState* field(uint16_t id) const;
  FieldState* mutable_field(uint16_t id);  // creates the entry if missing
  // The current value of a field (null if unset or deleted record).
  const Value& get(uint16_t id) const;
  friend bool operator==(const RecordState&, const RecordState&) = default;
};

struct RecordKey {
  EntityId entity = EntityId::kNone;
  RecordId id;
  friend auto operator<=>(const RecordKey&, const RecordKey&) = default;
};

enum class ConflictKind : uint8_t {
  kConcurrentWrite = 1,  // two writers set the same field without seeing each other; one value lost (LWW)
  kDeleteWins = 2,       // a field write concurrent with a delete of its record; the write was discarded
  kScheduling = 3,       // two events of the same owner overlap; both kept, both sides informed
};
// "concurrent_write", "delete_wins", "scheduling": the name stores, logs and metrics use.
std::string_view to_string(ConflictKind kind);

struct ConflictSide {
  Value value;
  Version version;
  UserId user;
  friend bool operator==(const ConflictSide&, const ConflictSide&) = default;
};

// One entry of the conflict log: a value that did not survive (or an overlap), with both origins and the
// rule.
struct ConflictRecord {
  uint64_t server_seq = 0;  // the commit that detected it; 0 until committed
  ConflictKind kind = ConflictKind::kConcurrentWrite;
  EntityId entity = EntityId::kNone;
  RecordId record;
  uint16_t field = 0;
  ConflictSide winner;
  ConflictSide loser;
  RecordId other_record;  // kScheduling: the overlapping event
  std::string rule;       // "last_writer_wins", "delete_wins", "overlap_flagged"
  friend bool operator==(const ConflictRecord&, const ConflictRecord&) = default;
};

// Who is acting: resolved by the server from a verified token.
struct Principal {
  UserId user;
  schema::Role role = schema::Role::kRep;
  std::vector<std::string> territories;  // reps: their own; managers: their team's
  std::vector<UserId> team;              // managers: the reps whose calendars they see
};

}  // namespace fieldsync

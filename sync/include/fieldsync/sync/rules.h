// Validation and the server's application of a client transaction: model checks, permissions, scope, domain
// rules (order locks, status transitions), merge and scheduling-conflict detection, as one pure function.
#pragma once

#include <vector>

#include "fieldsync/sync/change.h"
#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/scope.h"

namespace fieldsync {

// Checks one change against the model alone: entity and field exist, the op fits the field's policy and the
// entity (deletes only where deletable), the value has the field's type, nullability, enum value, length and
// value rule (schema::ValueRule: currency code, e-mail, money, quantity, basis points, coordinates). The
// device (SyncClient::write) and the server both call it: kValueInvalid names the field.
Status validate_change(const Change& change);

// Checks a whole client transaction's shape: size limits, every change valid, node and versions filled in.
Status validate_txn(const ClientTxn& txn);

// What the server needs beyond point reads: the owner's events that overlap [start_ms, end_ms).
class CentralReader : public RecordReader {
 public:
  virtual std::vector<RecordState> events_overlapping(const UserId& owner, int64_t start_ms,
                                                      int64_t end_ms) = 0;
};

struct TxnApplication {
  std::vector<RecordState> records;       // new states of every record the txn touched, to be saved
  std::vector<Change> effective;          // changes that altered state, for the change log
  std::vector<ConflictRecord> conflicts;  // concurrency and scheduling conflicts found
  std::vector<ScopeMove> moves;           // records that existed before and now resolve to another scope
  // The scope every touched record resolves to once the txn is applied (the server caches them).
  std::vector<std::pair<RecordKey, ScopeKey>> scopes;
};

// Applies `txn`, written by `who`, on top of the states `reader` returns, without writing anything.
// Either every change is acceptable and the result holds the new states, or the Status says why the whole
// transaction is rejected (validation, scope, permission, immutable or server-owned field, a user-id field
// naming someone the writer may not name (schema::UserRef), a reference to a record that is missing or
// outside the writer's scope, order lock, status transition, duplicate id, update of a missing record).
// `merge` merges each change (merge.h: the seam of the simulator's mutation tests).
Result<TxnApplication> apply_client_txn(const ClientTxn& txn, const Principal& who, CentralReader& reader,
                                        MergeChangeFn merge = &merge_change);

}  // namespace fieldsync

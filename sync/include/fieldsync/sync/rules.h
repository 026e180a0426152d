// Validation and the server's application of a client transaction: model checks, permissions, scope, domain
// rules (order locks, status transitions), merge and scheduling-conflict detection, as one pure function.
#pragma once

#include <optional>
#include <span>
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

// The domain rules of leads and service cases that the model's tables cannot say, judged on a
// transaction's changes and the records as they were before it (`before`). The device runs it on its replica
// before a write is stored (SyncClient::write), the server in apply_client_txn on the central store, so an
// app learns at once what the server would refuse, and the server refuses what a changed app sends:
// - Converting a lead is one transaction: it moves the lead to "converted" and sets converted_account_id,
//   converted_contact_id, converted_opportunity_id and converted_at (kMissingField naming the one left out).
//   Each link names a record created in the same transaction or one that already exists (kRecordNotFound;
//   on the server a record outside the writer's scope is out_of_scope first), the contact and the
//   opportunity belong to the linked account (kValueInvalid). The links and converted_at are never set in
//   any other transaction (kImmutableField); a converted lead is frozen by the model (locked_statuses).
// - Disqualifying a lead sets a non-blank disqualify_reason in the same transaction (kMissingField).
// - A service case's assignee: a rep may only take an unassigned case for themselves (from no assignee to
//   their own id; kPermissionDenied otherwise, also when a colleague took it first). Whom a manager or head
//   office may name is the model's UserRef (a manager their team, head office anyone), checked by
//   apply_client_txn's user-reference rule.
// - A service case's contact and asset belong to the case's account (kValueInvalid).
// `who.team` and `who.territories` are not read (the device does not know them).
Status check_domain_rules(std::span<const Change> changes, const Principal& who, RecordReader& before);

// Whether a service case is billable, derived and never stored (device reads, the API, the reports): the case
// concerns an installed asset whose warranty ended before the case was opened, or whose asset has no warranty
// end on record. A case on no asset is not billable (there is no machine to charge the service of).
bool case_billable(bool has_asset, std::optional<int64_t> warranty_end_at_ms, int64_t opened_at_ms);

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

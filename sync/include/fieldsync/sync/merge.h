// Field-level merge: pure, deterministic, idempotent and order-independent.
//
// Rules (docs/DESIGN.md has examples):
//  - kSet on kLastWriterWins / kServerOwned / kImmutable fields: the higher Version wins. If the loser was
//  written
//    without seeing the winner (its base is not the winner's version) and by another node, a kConcurrentWrite
//    conflict records the losing value.
//  - kAppend: the fragment joins the field's fragment set; the value is all fragments in version order joined
//  by
//    "\n". Nothing is lost, so no conflict.
//  - kDelete: the record becomes a tombstone forever (delete wins). Every field value the deleter had not
//  seen
//    (not in Change::seen) is recorded as a kDeleteWins conflict; a later write to the tombstone is discarded
//    and recorded the same way, so the log is the same whichever arrives first.
//  - kCreate: marks the record as created (Version of the create); merging it twice is a no-op.
#pragma once

#include <vector>

#include "fieldsync/sync/change.h"

namespace fieldsync {

// Merges one change written by `user` into `rec` (which must be the record the change names; a fresh
// RecordState with entity and id set stands for "never seen"). Conflicts found are appended to `conflicts`
// when it is not null: the server keeps the log, devices pass null. Returns true if `rec` changed.
bool merge_change(RecordState& rec, const Change& change, const UserId& user,
                  std::vector<ConflictRecord>* conflicts);

// merge_change's shape. The state machines take one in their config (ServerConfig, ClientConfig) and the
// rules as a parameter (apply_client_txn), merge_change by default. It is the seam for the simulator's
// mutation tests, whose deliberately broken merges live in the test support library
// (tests/support/faulty_merge.h), not here: the shipped library has no fault switch, and one run's broken
// merge cannot leak into another.
using MergeChangeFn = bool (*)(RecordState& rec, const Change& change, const UserId& user,
                               std::vector<ConflictRecord>* conflicts);

// Merges a full record state from the server (bootstrap page, rollback, scope entry) into a local one, field
// by field with the same rules; no conflicts are produced. Returns true if `local` changed.
bool merge_record(RecordState& local, const RecordState& remote);

// The text of an append-only field: fragments in version order joined by "\n".
std::string join_fragments(const std::vector<Fragment>& fragments);

}  // namespace fieldsync

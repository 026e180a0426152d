// Who may see and write a record, derived from the entity model's scope rules.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fieldsync/sync/change.h"

namespace fieldsync {

// Read access to current record states, for following parent links (a line's order's account's territory).
class RecordReader {
 public:
  virtual ~RecordReader() = default;
  virtual std::optional<RecordState> load(EntityId entity, const RecordId& id) = 0;
};

// A RecordReader over a map of records (a memory store's, or a snapshot of one); the map must outlive it.
class MapRecordReader final : public RecordReader {
 public:
  explicit MapRecordReader(const std::map<RecordKey, RecordState>& records) : records_(records) {}
  std::optional<RecordState> load(EntityId entity, const RecordId& id) override {
    auto it = records_.find(RecordKey{entity, id});
    if (it == records_.end()) return std::nullopt;
    return it->second;
  }

 private:
  const std::map<RecordKey, RecordState>& records_;
};

// Parent links resolve_scope follows before giving up (kUnresolved). The model's deepest chain is order_line
// -> order -> account (two hops); four leaves room for one more level without letting a cycle of bad
// references loop forever. Stores that narrow by scope in their own query language follow exactly as many.
inline constexpr int kMaxScopeHops = 4;

// Follows the entity's scope rule (through parents, at most kMaxScopeHops) to the key that decides
// visibility.
ScopeKey resolve_scope(const RecordState& record, RecordReader& reader);

bool can_see(const Principal& who, const ScopeKey& scope);

// can_see inverted: every scope key `who` can see, sorted, without duplicates; nullopt for head office, who
// sees everything (kUnresolved included).
std::optional<std::vector<ScopeKey>> visible_scopes(const Principal& who);

// The scope keys the server's log files a committed transaction under (CentralStore::read_log_for): the
// scope of every record it changed or has a conflict on (a write that lost is no change), resolved on
// `reader` (the state the transaction committed), both ends of every scope move it made, and the owner key
// of every user named in its conflicts (a device is told of a conflict over its own write even when the
// record is no longer in its scope); kUnresolved left out (head office reads the whole log). Sorted, without
// duplicates. A device whose scope holds none of them has
// nothing to gain from the transaction, then or later: a record that enters its scope afterwards does so by
// a move, which brings the whole record.
// `resolved`: scopes already resolved on that same state (TxnApplication::scopes); a record found there is
// not loaded again, which the server's apply path would otherwise do for every record it just saved.
std::vector<ScopeKey> log_scopes(const ServerTxn& txn, const std::vector<ConflictRecord>& conflicts,
                                 RecordReader& reader,
                                 const std::vector<std::pair<RecordKey, ScopeKey>>& resolved = {});

}  // namespace fieldsync

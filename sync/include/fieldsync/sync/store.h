// Storage seen by the sync state machines. The device's replica (client-core's SQLite file) and the server's
// central store (embedded SQLite, later PostgreSQL) implement these; the test support library
// (tests/support/memory_store.h) has in-memory versions for the simulator and tests. Nothing engine-specific
// crosses these interfaces.
//
// Every method of a *Txn object runs inside one atomic unit of work: commit() makes all of it durable at
// once, and destroying the object without commit() discards all of it.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "fieldsync/sync/change.h"
#include "fieldsync/sync/protocol.h"
#include "fieldsync/sync/rules.h"
#include "fieldsync/sync/scope.h"

namespace fieldsync {

// ---- Device side
// --------------------------------------------------------------------------------------------

// Durable sync state of a replica, stored in the same file as the data.
struct ReplicaMeta {
  NodeId node = 0;
  Hlc hlc = 0;                 // last HLC issued or received
  uint64_t next_node_seq = 1;  // node_seq of the next local transaction
  uint64_t cursor = 0;         // server_seq applied up to; 0 with bootstrap_done=false: never synced
  bool bootstrap_done = false;
  uint64_t bootstrap_snapshot_seq = 0;  // bootstrap in progress: the snapshot being paged
  std::string bootstrap_page_token;     // ...and the next page to ask for
  uint64_t bootstrap_total = 0;
  uint64_t bootstrap_received = 0;
  int64_t last_synced_ms = 0;  // when the device was last fully synced (outbox empty, caught up); 0: never
  // The model version whose records this replica holds in full (docs/DESIGN.md "Model evolution"): set when
  // its first bootstrap starts; lower than the library's after an app upgrade, until the backfill of what
  // the newer version added completes. 0: not yet known (a new replica).
  uint32_t schema_version = 0;
  friend bool operator==(const ReplicaMeta&, const ReplicaMeta&) = default;
};

// A transaction the server refused, kept so the user can see what was undone and why.
struct Rejection {
  uint64_t node_seq = 0;
  ErrorCode reason = ErrorCode::kOk;
  std::string message;
  std::vector<Change> changes;
  friend bool operator==(const Rejection&, const Rejection&) = default;
};

class ReplicaTxn : public RecordReader {
 public:
  // RecordReader::load returns the local (optimistic) state: server state plus pending local changes.
  virtual void save(const RecordState& record) = 0;
  virtual void erase(EntityId entity,
                     const RecordId& id) = 0;  // purge without tombstone (left scope, rollback)

  virtual void outbox_append(const ClientTxn& txn) = 0;
  virtual std::vector<ClientTxn> outbox_peek(size_t max_txns) = 0;  // oldest first
  // Entries with node_seq > after_node_seq, oldest first, at most max_txns: costs what it returns (the
  // client reads only what it is about to push, never the whole outbox).
  virtual std::vector<ClientTxn> outbox_after(uint64_t after_node_seq, size_t max_txns) = 0;
  // One entry, if the outbox holds it (a rejection's rebase needs the rejected transaction).
  virtual std::optional<ClientTxn> outbox_get(uint64_t node_seq) = 0;
  // Returns whether the entry was there: a late or duplicate acknowledgement removes nothing.
  virtual bool outbox_remove(uint64_t node_seq) = 0;
  virtual size_t outbox_size() = 0;  // counts every entry: read once when the client opens

  virtual ReplicaMeta meta() = 0;
  virtual void set_meta(const ReplicaMeta& meta) = 0;

  virtual void add_conflict(const ConflictRecord& conflict) = 0;
  virtual void add_rejection(const Rejection& rejection) = 0;

  virtual Status commit() = 0;
};

class ReplicaStore {
 public:
  virtual ~ReplicaStore() = default;
  virtual std::unique_ptr<ReplicaTxn> begin() = 0;
};

// ---- Server side
// --------------------------------------------------------------------------------------------

struct NodeState {
  NodeId node = 0;
  uint64_t last_node_seq = 0;  // every txn of this node up to here is applied or rejected
};

struct StoredRejection {
  NodeId node = 0;
  uint64_t node_seq = 0;
  UserId user;
  ErrorCode reason = ErrorCode::kOk;
  std::string message;
};

// Reads of a central store can fail (an I/O error, a corrupt row; with PostgreSQL, a dropped connection):
// every read returns Result<T>, so "absent" (an empty optional, an empty range, 0) is never an error in
// disguise. Whoever drives a store answers a failed read with a retryable error and applies nothing
// (SyncServer).
class CentralTxn {
 public:
  virtual ~CentralTxn() = default;

  // This transaction's view: committed state plus its own writes.
  virtual Result<std::optional<RecordState>> load(EntityId entity, const RecordId& id) = 0;
  // The owner's scheduled events overlapping [start_ms, end_ms) (scheduled_overlap in rules.h): committed
  // ones first, then those this transaction saved, each group by id.
  virtual Result<std::vector<RecordState>> events_overlapping(const UserId& owner, int64_t start_ms,
                                                              int64_t end_ms) = 0;
  virtual void save(const RecordState& record) = 0;

  virtual Result<NodeState> node_state(NodeId node) = 0;
  virtual void set_node_state(const NodeState& state) = 0;
  virtual void add_rejection(const StoredRejection& rejection) = 0;
  virtual Result<std::optional<StoredRejection>> rejection(NodeId node, uint64_t node_seq) = 0;

  // Appends a committed transaction and its conflicts to the log and returns the server_seq it was given.
  // Sequences are strictly increasing and a reader never sees seq N before every seq below N is visible (the
  // PostgreSQL store must hold this even for concurrent writers). The entry is indexed under `scopes`
  // (log_scopes in scope.h) for read_log_for.
  virtual uint64_t append_log(ServerTxn txn, std::vector<ConflictRecord> conflicts,
                              std::vector<ScopeKey> scopes) = 0;

  // The server's HLC, persisted with the commit so that it never goes back across a restart.
  virtual void set_clock(Hlc hlc) = 0;

  virtual Status commit() = 0;
};

class CentralStore {
 public:
  virtual ~CentralStore() = default;
  virtual std::unique_ptr<CentralTxn> begin() = 0;

  // Read side (consistent with every committed transaction). Every read may fail (see CentralTxn).
  virtual Result<uint64_t> head_seq() = 0;
  // Committed transactions with server_seq > after, in order, until their changes total at least max_changes
  // or the log ends.
  virtual Result<std::vector<ServerTxn>> read_log(uint64_t after, size_t max_changes) = 0;
  // The same, restricted to after < server_seq <= up_to and to transactions indexed under at least one of
  // `scopes`: a device's catch-up reads its own scope's part of the log, not the whole log. Costs what it
  // returns, plus one index probe per scope key per few hundred entries. `searched_to`: every such
  // transaction in (after, searched_to] is in `txns` -- up_to, or less when the read stopped at max_changes
  // (the last one returned).
  struct LogSlice {
    std::vector<ServerTxn> txns;
    uint64_t searched_to = 0;
  };
  virtual Result<LogSlice> read_log_for(uint64_t after, uint64_t up_to, const std::vector<ScopeKey>& scopes,
                                        size_t max_changes) = 0;
  virtual Result<std::vector<ConflictRecord>> read_conflicts(uint64_t after, uint64_t up_to) = 0;
  virtual Result<std::optional<RecordState>> load(EntityId entity, const RecordId& id) = 0;
  // Records, live and tombstones, in (entity, id) order after the given position, for bootstrap paging.
  // Tombstones are included because a device that wrote offline before its first sync may hold a record that
  // someone else deleted before the snapshot: only the tombstone tells it so.
  virtual Result<std::vector<RecordState>> scan(RecordKey after, size_t max_records) = 0;
  // The same narrowed to records whose scope resolves (on committed state) into `scopes`, so a rep's
  // bootstrap costs its scope, not the store. A store may return more (callers judge every record), never
  // fewer, and in the same order.
  virtual Result<std::vector<RecordState>> scan_in_scopes(const std::vector<ScopeKey>& scopes,
                                                          RecordKey after, size_t max_records) = 0;
  // scan_in_scopes' records as the store keeps them (codec::encode_record's bytes, not yet checked:
  // codec::check_stored_record), for a version-2 bootstrap page that puts them into its columns without
  // decoding them. The default encodes scan_in_scopes' records (server.cc).
  virtual Result<std::vector<std::vector<uint8_t>>> scan_stored_in_scopes(const std::vector<ScopeKey>& scopes,
                                                                          RecordKey after,
                                                                          size_t max_records);
  // How many records scan (nullopt) or scan_in_scopes (the scopes) would return in all, without reading
  // them (a bootstrap's total, for progress): may count more, never fewer.
  virtual Result<uint64_t> count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) = 0;
  // Every record (live or tombstone) created by a transaction of `node`, possibly more: the last bootstrap
  // page checks which of them a device must drop. Only for a device that pushed before its first bootstrap
  // ended; the SQLite store walks its log for it (decoding only that node's entries) rather than keep an
  // index on every log row that every push would pay for.
  virtual Result<std::vector<RecordKey>> keys_created_by(NodeId node) = 0;
  virtual Result<uint64_t> record_count() = 0;
  // Records (live or tombstones) whose scope rule points at the given parent: an account's contacts, visits,
  // orders and opportunities; an order's lines. One level; callers recurse.
  virtual Result<std::vector<RecordState>> scope_children(EntityId parent_entity, const RecordId& parent) = 0;
  // The last HLC persisted with set_clock (0 for a new store).
  virtual Result<Hlc> clock() = 0;
  // A node's dedupe watermark as committed (NodeState{node, 0} for an unknown node), without opening a write
  // transaction: what the handshake tells a device.
  virtual Result<NodeState> node_state(NodeId node) = 0;

  // Group commit. A store whose commit() may return before the transaction is durable says so here; sync()
  // then makes every commit that returned before the call durable, with one flush for all of them. Whoever
  // drives the store holds back every message produced since its last sync() -- acknowledgements, and pulls
  // and live batches that may show those commits -- until a sync() that began after them returned ok. The
  // default is a store whose every commit is durable when it returns.
  virtual bool commits_need_sync() const { return false; }
  virtual Status sync() { return Status::ok(); }
};

// The pure logic (resolve_scope, log_scopes, apply_client_txn) reads through RecordReader / CentralReader,
// whose answers cannot fail. These adapt a store's Result-returning reads to them: a failed read answers
// "absent" to the logic and is kept, and whoever made the adapter must check status() afterwards and throw
// away everything computed through it when it is not ok (SyncServer answers a retryable error, applies
// nothing). The first failure is kept; later reads still go to the store; reads made beside an adapter go
// through its keep() and count the same.
class ReadFailures {
 public:
  const Status& status() const { return status_; }
  // The value of a read, its failure kept (the value then is T{}: "absent" to the pure logic).
  template <typename T>
  T keep(Result<T> r) {
    if (r) return std::move(r.value());
    if (status_) status_ = r.status();
    return T{};
  }

 private:
  Status status_;
};

class CheckedStoreReader final : public RecordReader, public ReadFailures {
 public:
  explicit CheckedStoreReader(CentralStore& store) : store_(store) {}
  std::optional<RecordState> load(EntityId entity, const RecordId& id) override {
    return keep(store_.load(entity, id));
  }

 private:
  CentralStore& store_;
};

class CheckedTxnReader final : public CentralReader, public ReadFailures {
 public:
  explicit CheckedTxnReader(CentralTxn& txn) : txn_(txn) {}
  std::optional<RecordState> load(EntityId entity, const RecordId& id) override {
    return keep(txn_.load(entity, id));
  }
  std::vector<RecordState> events_overlapping(const UserId& owner, int64_t start_ms,
                                              int64_t end_ms) override {
    return keep(txn_.events_overlapping(owner, start_ms, end_ms));
  }

 private:
  CentralTxn& txn_;
};

}  // namespace fieldsync

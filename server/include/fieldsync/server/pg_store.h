// The central store on PostgreSQL (issue 20): what a head office that already runs PostgreSQL, replicates and
// backs it up, and wants several stateless fieldsync-server instances in front of one database, uses instead
// of the embedded SQLite file.
//
// Semantics are exactly MemoryCentralStore's and SqliteCentralStore's: tests/store_contract.h runs one
// contract suite against all three. Durability: every commit() that returned ok is durable
// (synchronous_commit is on for the store's connections), or, with Options::group_commit, every commit before
// a sync() that returned ok (see commits_need_sync), so SyncServer acknowledges only what survives.
//
// Layout (one database, or the schema the URL's search_path names; DDL in PostgreSQL dialect from
// schema::all_ddl(Dialect::kPostgres)):
//   <entity>      one table per model entity: typed columns (TEXT COLLATE "C", BIGINT, BOOLEAN, DOUBLE
//                 PRECISION) are a projection for head office; `_meta` BYTEA (codec::encode_record) is the
//                 source of truth. (scope field, id) index on territory- and owner-scoped entities (bootstrap
//                 pages), (owner_id, start_at) on calendar_event (scheduling conflicts).
//   _log          server_seq BIGINT PRIMARY KEY, origin node/user/node_seq (node (origin_node) indexed: the
//                 dedupe check of another instance and keys_created_by), change_count, blob BYTEA
//                 (codec::encode_server_txn), recorded_at_ms.
//   _log_scope    (scope, server_seq) PRIMARY KEY: each entry under each key of log_scopes() (read_log_for).
//   _conflicts    id BIGSERIAL, server_seq (indexed), kind, entity, record, field, winner/loser user, rule,
//   blob. _nodes        node BIGINT PRIMARY KEY, last_node_seq: the per-device dedupe watermark. _rejections
//   (node, node_seq) PRIMARY KEY, user, reason code and name, message, recorded_at_ms. _head         one row:
//   server_seq (the last sequence handed out) and clock (the server's HLC). Its row
//                 lock is the sequence rule (below).
//   _state        key/value: "format" (the store's format, 1; newer is refused with kSchemaTooNew, older
//                 migrated on open).
// Node ids, node sequences and HLCs are unsigned 64-bit, stored as BIGINT with the same bit pattern.
// Not yet here (SQLite has them): the head-office report tables (_stage_history, _order_fact) and audit().
//
// The sequence rule: a transaction's first append_log takes the next server_seq with `UPDATE _head SET
// server_seq = server_seq + 1 RETURNING server_seq`, whose row lock is held until the transaction commits or
// rolls back (its later entries count on from it, and the head's final value is written with COMMIT). A
// second writer (another thread, another store object, another server instance) waits in its own append_log
// until the first has committed, and then reads the committed counter. So sequences commit in the order they
// are handed out, with no gaps (a rollback gives its number back), and a reader that sees N sees every
// sequence below N: a pull never skips a change that commits late. The price is that writers serialise from
// append_log to the end of their commit (the log, scope index and conflict rows, node watermark and, without
// group commit, one WAL flush): append_log is the last write SyncServer makes before commit, so record writes
// and the rules still run in parallel. set_clock writes the same row, so the two never deadlock with each
// other.
//
// Dedupe across instances: CentralTxn::node_state locks the node's _nodes row (creating it at 0 if absent)
// until commit, so two instances offered the same node's transaction at once apply it once: the second waits,
// then reads the first one's watermark and answers `duplicate`.
// No lost updates across instances: CentralTxn::load reads a record FOR UPDATE, so a transaction that merges
// into a record another one is changing waits for that one's commit and merges into its result (at READ
// COMMITTED a plain read would return the older state, and the later save would overwrite the other's merge).
// events_overlapping takes a transaction-scoped advisory lock on the owner's calendar for the same reason.
// Two pushes locking the same records in opposite orders may deadlock: PostgreSQL aborts one (40P01), which
// is kStorageLocked, retryable, and the device pushes it again.
//
// Threads: the store may be used from several threads, and several CentralTxns may be open at once (each on a
// connection of its own; they serialise in the database as above). A CentralTxn must be used from one thread
// at a time. Read-side methods take a pooled connection for the call; multi-statement reads (scans, counts,
// read_log_for) run in one REPEATABLE READ snapshot. Waiting for a lock is bounded by lock_timeout_ms (then
// kStorageLocked, retryable).
//
// Errors: pg::status_from's mapping (server/src/pg.h): a lost connection is kStorageIo, retryable, and the
// connection is dropped from the pool (the next call opens a new one); a row whose blob fails verification is
// kStorageCorrupt. Inside a CentralTxn the first error (of a write or a read) is kept and returned by
// commit(), which then rolls back. Every read returns its error as a Result.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fieldsync/sync/store.h"

namespace fieldsync::pg {
class Conn;  // server/src/pg.h
}

namespace fieldsync::server {

class PgCentralStore final : public CentralStore {
 public:
  struct Options {
    // Longest wait for a row lock (another instance's commit holding the log head, a node's watermark).
    int lock_timeout_ms = 5000;
    // Wall clock for the log's and rejections' timestamps; tests inject a fixed one.
    std::function<int64_t()> now_ms;
    // Idle connections kept for reuse; more are opened when more threads use the store at once.
    size_t max_idle_connections = 8;
    // Group commit (fieldsync-server --group-commit on, the default there): a CentralTxn commits with
    // synchronous_commit off (visible at once, durable once the WAL is flushed) and sync() makes every commit
    // so far durable with one flush, so the caller must hold back what it produced since its last sync()
    // (CentralStore::commits_need_sync; SyncService does). Off (the default here, and for fieldsync-admin):
    // every commit is durable when it returns.
    bool group_commit = false;
    // The company's time zone (fieldsync-server --time-zone, an IANA name): the days and months of
    // head-office reports asked without a zone (reports.h ReportFilter::company_zone), kept in the database
    // so every instance answers alike. Unset: the database's zone stays (UTC for a new one). An unknown name
    // fails open.
    std::optional<std::string> time_zone;
  };

  // Connects to `url` (a libpq URL, "postgresql://user@host:port/db"), creates or migrates the store's
  // tables (serialised between instances by an advisory lock). Errors: kStorageIo (retryable) when the server
  // cannot be reached, kSchemaTooNew for a database written by a newer format, the mapping above otherwise.
  static Result<std::unique_ptr<PgCentralStore>> open(const std::string& url, Options options);
  ~PgCentralStore() override;

  std::unique_ptr<CentralTxn> begin() override;
  Result<uint64_t> head_seq() override;
  Result<std::vector<ServerTxn>> read_log(uint64_t after, size_t max_changes) override;
  Result<LogSlice> read_log_for(uint64_t after, uint64_t up_to, const std::vector<ScopeKey>& scopes,
                                size_t max_changes) override;
  Result<std::vector<ConflictRecord>> read_conflicts(uint64_t after, uint64_t up_to) override;
  Result<std::optional<RecordState>> load(EntityId entity, const RecordId& id) override;
  Result<std::vector<RecordState>> scan(RecordKey after, size_t max_records) override;
  Result<std::vector<RecordState>> scan_in_scopes(const std::vector<ScopeKey>& scopes, RecordKey after,
                                                  size_t max_records) override;
  Result<uint64_t> count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) override;
  Result<std::vector<RecordKey>> keys_created_by(NodeId node) override;
  Result<uint64_t> record_count() override;
  Result<std::vector<RecordState>> scope_children(EntityId parent_entity, const RecordId& parent) override;
  Result<Hlc> clock() override;
  Result<NodeState> node_state(NodeId node) override;
  // Without group commit every commit is durable when it returns (synchronous_commit on: the commit's WAL
  // record is flushed, and with synchronous standbys configured, acknowledged by them, before COMMIT
  // returns), and sync() has nothing to do. With it (Options::group_commit), commits return before their
  // flush, and sync() makes every commit that returned before it began durable: one flush for all of them.
  // That also covers other instances' commits this one has read (a live batch built from another instance's
  // log entry): a commit record is in the WAL before anyone can see the commit, and the WAL is flushed in
  // order. So an instance that holds back every frame until its next sync() never shows a device a change
  // that a crash of the database could take back.
  bool commits_need_sync() const override { return options_.group_commit; }
  Status sync() override;

  // Inspection for tests and the admin tool.
  Result<std::vector<StoredRejection>> rejections();
  Result<std::map<NodeId, NodeState>> node_states();

 private:
  friend class PgCentralTxn;
  class Lease;  // a pooled connection for one call or one transaction (pg_store.cc)
  explicit PgCentralStore(Options options);  // out of line: pg::Conn is complete only in pg_store.cc
  Result<std::unique_ptr<pg::Conn>> acquire();
  void release(std::unique_ptr<pg::Conn> conn);
  int64_t now_ms() const;

  Options options_;
  std::string url_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<pg::Conn>> idle_;  // guarded by pool_mu_
};

}  // namespace fieldsync::server

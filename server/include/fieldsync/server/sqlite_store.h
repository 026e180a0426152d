// The default central store: one embedded SQLite file in WAL mode.
//
// Semantics are exactly MemoryCentralStore's (tests/support/memory_store.h); tests/sqlite_store_test.cc runs
// one contract suite against both. What SQLite adds is durability: synchronous=FULL, so a CentralTxn whose
// commit() returned ok survives a killed process and a power loss, and every acknowledgement SyncServer sends
// is sent after that commit.
//
// Layout (one file, `central.db` in the server's data directory):
//   <entity>      one table per model entity from schema::all_ddl(): typed columns are a projection for head
//                 office queries and reports; `_meta` (codec::encode_record) is the source of truth.
//   _log          server_seq INTEGER PRIMARY KEY, origin node/user/node_seq, blob (codec::encode_server_txn,
//                 scope moves included), recorded_at_ms (server wall time of the commit). Also the audit of
//                 who changed what and when: audit() lists each entry's changes with its origin and time.
//   _conflicts    id, server_seq (indexed), kind, entity, record, field, winner/loser user, rule, blob
//                 (codec::encode_conflict).
//   _nodes        node INTEGER PRIMARY KEY, last_node_seq: the per-device dedupe watermark.
//   _rejections   (node, node_seq) PRIMARY KEY, user, reason code and name, message, recorded_at_ms.
//   _log_scope    (scope, server_seq) PRIMARY KEY, WITHOUT ROWID: each log entry under each key of
//                 log_scopes(), so a device's catch-up (read_log_for) reads its scope's entries only.
//   _state        key/value: the persisted server HLC ("clock") and the file format ("format", 5; older files
//                 are migrated on open: format 2's per-change _audit table becomes _log.recorded_at_ms).
//   For head-office reports (reports.h; format 5):
//   _stage_history one row per stint of an opportunity in a stage (entered, left, next stage), written by
//                 save() when the merged stage changes, at the stage field's version time.
//   _order_fact   one row per order: date, status, rep, account, the account's territory, currency, its live
//                 lines' quantity and net; kept by triggers on order, order_line and account.territory_id.
//   _stage_probability the forecast's probability per stage, set by head office.
//
// Threads: the store may be used from several threads. A CentralTxn holds the single writer connection for
// its whole life (BEGIN IMMEDIATE ... COMMIT), so at most one is open at a time per store: begin() waits for
// the previous one to end (up to busy_timeout_ms, then the new one fails at commit() with kStorageLocked and
// reads committed state meanwhile). Read-side methods use a second connection, which in WAL mode sees every
// committed transaction and never blocks the writer. Another process (fieldsync-admin) may write the same
// file; SQLite's own lock serialises the two writers and busy_timeout_ms bounds the wait.
// With group commit a CentralTxn is a SAVEPOINT inside one SQLite transaction per group (see Options), which
// only the writer connection sees before the group ends: read-side methods then use the writer too, so a
// read from another thread waits for an open CentralTxn to end, and a read from the thread holding one sees
// that transaction's own writes (read through the CentralTxn there instead).
//
// Errors: SQLite result codes become typed Status values (kStorageFull, kStorageCorrupt, kStorageLocked
// (retryable), kStorageReadOnly, kStorageIo); a row whose blob fails verification is kStorageCorrupt. Inside
// a CentralTxn the first error (of a write or a read) is kept and returned by commit(), which then rolls
// back. Every read returns its error as a Result (CentralStore's contract): nothing is answered as absent or
// empty because a read failed.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fieldsync/sync/store.h"

namespace fieldsync::server {

// The central store's file name inside the server's data directory.
inline constexpr std::string_view kCentralStoreFileName = "central.db";

}  // namespace fieldsync::server
struct sqlite3_file;  // <sqlite3.h>
namespace fieldsync::sqlite {
class Db;  // fieldsync/io/sqlite_db.h
}
namespace fieldsync::schema {
struct EntityDef;  // fieldsync/schema/model.h
}
namespace fieldsync::server {

class SqliteCentralStore final : public CentralStore {
 public:
  struct Options {
    // How long a writer waits for SQLite's lock (another process) or for this store's previous transaction.
    int busy_timeout_ms = 5000;
    // Wall clock for the audit and rejection timestamps; tests inject a fixed one.
    std::function<int64_t()> now_ms;
    // false (default): every commit() is durable when it returns (synchronous=FULL, one fsync per commit).
    // true: group commit. commit() returns once the transaction is applied and visible to this store's
    // reads but not yet on disk; sync() then makes every commit so far durable. The caller must hold back
    // every message produced since its last sync() -- acks, and also pulls and live batches, which may show
    // those commits -- until a sync() that began after those commits returned ok. A crash before that loses
    // a suffix of the commits, never a middle one, and nothing of it was acknowledged.
    // The commits between two sync()s form one SQLite transaction (a SAVEPOINT each, so a failed or
    // dropped CentralTxn undoes only itself), which sync() commits (synchronous=NORMAL: WAL writes only)
    // before one sync of the WAL (through SQLite's VFS, see sync()). Other processes see a group when it
    // ends: at sync(), or at the latest at the next checkpoint tick. Should SQLite roll back a whole group by
    // itself (an I/O error, disk full), or a sync of the WAL fail, every later write and sync() fail with
    // kStorageIo: the caller must stop (SyncService does).
    // Checkpoints (copying the WAL into the database file) then run on a thread of the store's own, every
    // checkpoint_interval_ms, instead of inside whichever commit crosses SQLite's 1,000-page mark.
    bool group_commit = false;
    int checkpoint_interval_ms = 100;
    // group_commit: past this many bytes of WAL a checkpoint runs with no group open, so that the WAL starts
    // over (checkpoint_loop); also the size the WAL file is truncated back to.
    int64_t wal_restart_bytes = 64 * 1024 * 1024;
    // The company's time zone (an IANA name, "Europe/Berlin"): the head-office reports' visits-per-day
    // rollup counts its local days, so a report in that zone reads the rollup (reports.h). Set: the file
    // takes this zone, recounting the rollup if it had another (one pass over the visits). Unset: the file
    // keeps the zone it has; a new file gets "UTC". Errors of open(): kInvalidArgument for a zone the
    // system's time zone database does not know.
    std::optional<std::string> time_zone;
  };

  // Opens or creates the store. Errors: the storage codes above, kSchemaTooNew for a file written by a newer
  // format.
  static Result<std::unique_ptr<SqliteCentralStore>> open(const std::string& path, Options options);
  ~SqliteCentralStore() override;

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
  // SQLite's EXPLAIN QUERY PLAN of every statement scan_in_scopes(scopes, ...) runs (one line per plan step,
  // "<entity>: <detail>"): tests check that a page is an index range in page order (no "USE TEMP B-TREE FOR
  // ORDER BY", which would read and sort the whole territory for every page).
  Result<std::vector<std::string>> scan_in_scopes_plan(const std::vector<ScopeKey>& scopes);
  // scan_in_scopes' rows as stored, not decoded (CentralStore::scan_stored_in_scopes).
  Result<std::vector<std::vector<uint8_t>>> scan_stored_in_scopes(const std::vector<ScopeKey>& scopes,
                                                                  RecordKey after,
                                                                  size_t max_records) override;
  Result<uint64_t> count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) override;
  Result<std::vector<RecordKey>> keys_created_by(NodeId node) override;
  Result<uint64_t> record_count() override;
  Result<std::vector<RecordState>> scope_children(EntityId parent_entity, const RecordId& parent) override;
  Result<Hlc> clock() override;
  Result<NodeState> node_state(NodeId node) override;
  bool commits_need_sync() const override { return options_.group_commit; }
  // group_commit: makes every transaction committed before the call durable: ends the group (waiting for
  // an open CentralTxn of another thread to finish first), then one sync of the WAL without any store
  // lock, so the next group's commits go on while the disk flushes: that overlap is what groups them. From
  // the thread holding an open CentralTxn it fails with kInternal. A failed sync of the WAL is permanent:
  // that and every later write and sync() fail with kStorageIo. A no-op without group commit.
  Status sync() override;

  // Inspection for tests, reports and the admin tool.
  Result<std::vector<StoredRejection>> rejections();
  Result<std::map<NodeId, NodeState>> node_states();
  struct AuditEntry {
    uint64_t server_seq = 0;
    int64_t recorded_at_ms = 0;
    UserId user;
    NodeId node = 0;
    uint64_t node_seq = 0;
    std::string entity;  // model name
    std::string record;
    std::string op;     // "create", "set", "append", "delete"
    std::string field;  // model name; empty for create and delete
    int64_t version_ms = 0;
  };
  // The changes of the log entries after after_seq, in order, each with its entry's origin and time: whole
  // entries only, up to max_entries (at least one entry), so the next page starts after the last server_seq.
  Result<std::vector<AuditEntry>> audit(uint64_t after_seq, size_t max_entries);
  // Bytes in the database file (page_count * page_size), for metrics.
  uint64_t size_bytes();

  // Group commit (Options::group_commit): many CentralTxns, one SQLite transaction, one fsync. SyncServer
  // stays unchanged: the driver (server/sync_service) handles the events that arrive while the disk is busy,
  // collects what SyncServer produced for them, calls sync() once, and only then sends it all. Each commit
  // is a SAVEPOINT, so a rejected or failed push never undoes another session's, and server_seq stays
  // gap-free.

 private:
  friend class SqliteCentralTxn;
  class ReadAccess;  // the connection and locks of one read-side call (sqlite_store.cc)
  explicit SqliteCentralStore(Options options);
  int64_t now_ms() const;
  // The writer's transaction for one CentralTxn (writer_mu_ held): BEGIN IMMEDIATE / COMMIT / ROLLBACK, or
  // with group commit a SAVEPOINT in the open group (opened here when none is).
  Status begin_writes();
  Status end_writes();
  void undo_writes(const Status& why);
  // scan and scan_in_scopes: the rows of every entity table in (entity, id) order after `after`, up to
  // max_records, from one snapshot, each table narrowed by `where(entity, params)`: an SQL condition on its
  // columns with `?` for the strings it appends to params; "" for every row, "0" to skip the table.
  using TableFilter = std::function<std::string(const schema::EntityDef&, std::vector<std::string>&)>;
  Result<std::vector<RecordState>> scan_where(RecordKey after, size_t max_records, const TableFilter& where);
  // scan_in_scopes, or with `plan` its statements' query plans instead of their rows, or with `stored` the
  // rows' record bytes appended there instead of decoded.
  Result<std::vector<RecordState>> scan_scopes(const std::vector<ScopeKey>& scopes, RecordKey after,
                                               size_t max_records, std::vector<std::string>* plan,
                                               std::vector<std::vector<uint8_t>>* stored = nullptr);
  // group_commit, writer_mu_ held: commits the open group, if any; or the error that lost one.
  Status end_group();
  void lose_group(const Status& why);

  Options options_;
  std::timed_mutex writer_mu_;  // held by the open CentralTxn
  std::atomic<std::thread::id>
      writer_owner_;  // its thread: a second begin() there fails instead of deadlocking
  std::unique_ptr<sqlite::Db> writer_;
  bool group_open_ =
      false;           // group_commit: the writer is inside a group's transaction; guarded by writer_mu_
  Status group_lost_;  // why SQLite rolled back a group (then permanent); guarded by writer_mu_
  std::mutex reader_mu_;
  std::unique_ptr<sqlite::Db> reader_;  // without group_commit only; guarded by reader_mu_
  std::string path_;
  std::mutex sync_mu_;
  // group_commit: the writer connection's own handle of the WAL (SQLITE_FCNTL_JOURNAL_POINTER), which sync()
  // flushes through the VFS's xSync, under sync_mu_ only (see sync()).
  sqlite3_file* wal_file_ = nullptr;

  // group_commit: PASSIVE checkpoints on a connection of their own, off the writer's path (a checkpoint in
  // the commit that triggers it stalls every push queued behind that commit).
  void checkpoint_loop();
  std::unique_ptr<sqlite::Db> checkpointer_;  // used by checkpoint_thread_ only
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool stopping_ = false;  // guarded by checkpoint_mu_
  std::thread checkpoint_thread_;
};

}  // namespace fieldsync::server

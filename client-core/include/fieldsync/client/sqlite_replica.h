// The device's durable replica: one SQLite file holding the records (one table per entity, derived from the
// model), the outbox, the sync state and the conflicts and rejections that concern this user. It implements
// the sync core's ReplicaStore, so SyncClient's "write and outbox entry in one transaction" is one SQLite
// transaction here.
//
// Layout (format kFormatVersion, in PRAGMA user_version):
//   <entity> tables   schema::all_ddl(): typed columns are a projection for the API's queries; `_meta` (the
//                     codec::encode_record blob) is the source of truth for sync; `_deleted` marks
//                     tombstones.
//   _outbox           node_seq -> codec::encode_client_txn blob, oldest first; the last HLC it issued (v5).
//   _sync_meta        one row: ReplicaMeta (last_synced_ms since v3). Since v5 a local write does not rewrite
//                     it: next_node_seq and hlc are the row's or those the newest outbox entry implies,
//                     whichever is greater, and reach the row when entries leave the outbox.
//   _conflicts        codec::encode_conflict blob plus listing columns and a `seen` flag (v2).
//   _rejections       reason, message, the undone changes (an encode_client_txn blob) and a `seen` flag (v2).
//
// Format history:
//   1: the tables above without `seen`.
//   2: `seen` on _conflicts and _rejections, and indexes for the app's unread-conflicts inbox and a record's
//      conflict history.
//   3: `last_synced_ms` on _sync_meta (when the device was last fully synced: outbox empty and caught up).
//   4: model schema 3 (leads, service cases, assets, tasks, calendar_event.opportunity_id) and
//      `schema_version` on _sync_meta: the model version whose records the file holds in full (2 for a
//      migrated older file, until the backfill of what schema 3 added completes).
//   5: `hlc` on _outbox, so that a local write is the record, its outbox entry and nothing else (the
//      _sync_meta row's next_node_seq and hlc derived from the newest entry; docs/PERFORMANCE.md "A
//      check-in's cost under emulation").
// An older file is migrated in place, step by step, in one transaction, on open.
// A change of the entity model (schema::kSchemaVersion) that adds tables or columns needs a format bump with
// its migration here.
//
// Errors are typed (status.h; SQLite's codes mapped by fieldsync/io/sqlite_db.h, as on the server):
// kStorageFull, kStorageCorrupt, kStorageLocked (retryable), kStorageReadOnly, kStorageIo, kSchemaTooNew. A
// ReplicaTxn whose statement failed remembers the first failure, skips its remaining writes and makes
// commit() roll everything back and return it: nothing is ever half-written.
//
// The sync meta (ReplicaMeta) a write transaction reads first is cached per connection: the value the last
// commit of this connection left, kept with the file's data version (SQLITE_FCNTL_DATA_VERSION) read right
// after that commit. SQLite changes that version at every commit of this connection and whenever it sees
// another connection's, so a write transaction (BEGIN IMMEDIATE: it holds the write lock, and its snapshot
// is the newest) that finds the same version finds the same bytes, and skips the read. A commit that changed
// the meta in a way the transaction cannot state exactly, or a failed COMMIT, drops the cache; a transaction
// that rolls back (destroyed, a failed statement, an injected fault) stores nothing and leaves the earlier
// cache to the version check (the file is as it was).
//
// Threading: one connection per store, serialised by an internal mutex that a ReplicaTxn holds from begin()
// until it is destroyed. Do not call read() or begin() on a thread that already holds a ReplicaTxn of the
// same store.
#pragma once

#include <array>
#include <atomic>
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

struct sqlite3;
struct sqlite3_stmt;
namespace fieldsync::sqlite {
class Db;  // fieldsync/io/sqlite_db.h
}

namespace fieldsync::client {

class SqliteReplicaTxn;

class SqliteReplicaStore final : public ReplicaStore {
 public:
  struct Options {
    bool create_if_missing = true;
    bool synchronous_full = true;  // fsync on every commit (power-loss safe); false: WAL + NORMAL
    NodeId node = 0;               // for a new file: 0 picks a random non-zero 64-bit node id
    int busy_timeout_ms = 2000;    // how long a write waits for another connection's lock (kStorageLocked)
    bool read_only = false;        // open without write access (inspection tools); writes: kStorageReadOnly
    // The model version of the app (ClientConfig::schema_version): a new file gets that version's tables; a
    // file of an older version is brought to it in place (its new tables and columns, one transaction); a
    // file of a newer version is refused (kSchemaTooNew: the app was downgraded).
    uint32_t schema_version = schema::kSchemaVersion;
  };

  // Opens (or creates) the replica, migrating an older format in place. A file of a newer format is refused
  // with kSchemaTooNew and left untouched; a file that is not a fieldsync replica is kStorageCorrupt.
  static Result<std::unique_ptr<SqliteReplicaStore>> open(const std::string& path, Options options);
  ~SqliteReplicaStore() override;
  SqliteReplicaStore(const SqliteReplicaStore&) = delete;
  SqliteReplicaStore& operator=(const SqliteReplicaStore&) = delete;

  std::unique_ptr<ReplicaTxn> begin() override;

  // Read-only access for the API's queries: runs fn with the connection while no write transaction is open
  // (serialised with begin()/commit() by an internal mutex). Returns fn's status.
  Status read(const std::function<Status(sqlite3*)>& fn);

  // The app's conflict and rejection inbox (format 2): marks every entry up to and including `up_to_id`
  // (the rowid of _conflicts / _rejections) as seen.
  Status mark_conflicts_seen(int64_t up_to_id);
  Status mark_rejections_seen(int64_t up_to_id);

  // Everything committed, decoded from the blobs (export, tests, the simulator's checks). A row whose blob
  // does not decode is kStorageCorrupt.
  Result<std::map<RecordKey, RecordState>> records();
  Result<std::vector<ConflictRecord>> conflicts();  // oldest first
  Result<std::vector<Rejection>> rejections();      // oldest first

  // How write transactions got the sync meta: from the per-connection cache, or by reading the file (tests
  // and benches: a check-in after a check-in on the same connection should be a cache hit).
  struct MetaReads {
    uint64_t cached = 0;
    uint64_t from_file = 0;
  };
  MetaReads meta_reads();

  // Fault injection for tests and the simulator: the next commit() rolls back and returns `status`.
  void fail_next_commit(Status status);

  // Closes the connection for good (the device was revoked and its files are about to be deleted). Waits for
  // an open transaction or read() to end, runs `before_close` with the connection (to finalize statements a
  // caller prepared on it), then closes it. From then on read(), mark_*_seen(), the listings and every
  // ReplicaTxn's reads and writes fail with `reason`; nothing touches the file again. Idempotent.
  void close(Status reason, const std::function<void(sqlite3*)>& before_close = {});
  bool closed();

  NodeId node() const { return node_; }
  uint32_t schema_version() const { return schema_version_; }  // of the tables (Options::schema_version)
  const std::string& path() const { return path_; }

  static constexpr int kFormatVersion = 5;

 private:
  friend class SqliteReplicaTxn;
  SqliteReplicaStore(std::string path, std::unique_ptr<sqlite::Db> conn);
  Status init(const Options& options);
  Status create_schema(NodeId node);
  Status migrate(int from_version);
  Status upgrade_tables(const Options& options);
  Status exec(const char* sql);
  // A cached prepared statement (prepared once per connection, reset by the caller after use).
  sqlite3_stmt* statement(const std::string& sql, Status& status);
  // The write path's statements, prepared once and then found by index, not by hashing their text: a check-in
  // is a handful of statements, and under emulation (qemu-user on ARM) every instruction spent finding,
  // building or re-parsing one counts against the write (docs/PERFORMANCE.md, "A check-in's cost").
  enum class Fixed { kBegin, kCommit, kRollback, kMeta, kSetMeta, kOutboxAppend, kCount };
  sqlite3_stmt* fixed_statement(Fixed which, Status& status);
  // A record's upsert ("INSERT OR REPLACE ... every column of this schema version") or its _meta read, built
  // from the model on first use per entity.
  enum class PerEntity { kUpsert, kLoad, kCount };
  sqlite3_stmt* entity_statement(PerEntity which, const schema::EntityDef& e, Status& status);
  // Steps one of BEGIN IMMEDIATE / COMMIT / ROLLBACK and resets it: SQLITE_OK or the error code (`status`
  // says why when the statement could not be prepared).
  int run(Fixed which, Status& status);
  Status mark_seen(const char* table, int64_t up_to_id);
  // SQLITE_FCNTL_DATA_VERSION of the main database; nullopt if SQLite cannot say (the cache is then unused).
  std::optional<uint32_t> data_version();
  std::unique_lock<std::mutex> lock();  // aborts if this thread already holds a transaction of this store

  const std::string path_;
  // The connection, its statement cache and its busy handler (io/sqlite_db.h, as the server's stores use).
  // Both are null once close() ran.
  std::unique_ptr<sqlite::Db> conn_;
  sqlite3* db_ = nullptr;  // conn_->raw()
  NodeId node_ = 0;
  uint32_t schema_version_ = schema::kSchemaVersion;
  std::mutex mu_;                       // held by an open ReplicaTxn, read(), mark_*_seen() and close()
  std::atomic<std::thread::id> owner_;  // the thread holding an open ReplicaTxn, if any
  std::optional<Status> pending_fault_;
  std::optional<Status> closed_;  // set by close(): why the connection is gone (db_ is null)
  // The meta as the last commit of this connection left it: what SqliteReplicaTxn::meta() returns and the
  // _sync_meta row, valid while data_version() is still `data_version` (see the top of this file).
  struct MetaCache {
    uint32_t data_version = 0;
    ReplicaMeta meta;
    ReplicaMeta row;
  };
  std::optional<MetaCache> meta_cache_;
  MetaReads meta_reads_;
  // Owned by conn_ (its cache finalizes them); cleared by close().
  std::array<sqlite3_stmt*, static_cast<size_t>(Fixed::kCount)> fixed_{};
  std::array<std::vector<sqlite3_stmt*>, static_cast<size_t>(PerEntity::kCount)> per_entity_;
};

}  // namespace fieldsync::client

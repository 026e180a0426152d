#include "fieldsync/client/sqlite_replica.h"

#include <sqlite3.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <random>
#include <thread>
#include <utility>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/schema/ddl.h"
#include "fieldsync/sync/codec.h"

namespace fieldsync::client {
namespace {

using sqlite::quoted;

// The frozen format-1 layout of the bookkeeping tables. Never edit: format 2 and later are migrations on top
// of it, so a new file and a migrated one go through the same steps and end up identical.
constexpr const char* kFormat1Ddl[] = {
    "CREATE TABLE _sync_meta (id INTEGER PRIMARY KEY CHECK (id = 1), node INTEGER NOT NULL, hlc INTEGER NOT "
    "NULL, next_node_seq INTEGER NOT NULL, cursor INTEGER NOT NULL, bootstrap_done INTEGER NOT NULL, "
    "bootstrap_snapshot_seq INTEGER NOT NULL, bootstrap_page_token TEXT NOT NULL, bootstrap_total INTEGER "
    "NOT "
    "NULL, bootstrap_received INTEGER NOT NULL)",
    "CREATE TABLE _outbox (node_seq INTEGER PRIMARY KEY, created_at_ms INTEGER NOT NULL, change_count "
    "INTEGER "
    "NOT NULL, txn BLOB NOT NULL)",
    "CREATE TABLE _conflicts (id INTEGER PRIMARY KEY AUTOINCREMENT, server_seq INTEGER NOT NULL, kind "
    "INTEGER "
    "NOT NULL, entity INTEGER NOT NULL, record TEXT NOT NULL, field INTEGER NOT NULL, winner_user TEXT NOT "
    "NULL, loser_user TEXT NOT NULL, rule TEXT NOT NULL, conflict BLOB NOT NULL)",
    "CREATE TABLE _rejections (id INTEGER PRIMARY KEY AUTOINCREMENT, node_seq INTEGER NOT NULL, reason "
    "INTEGER "
    "NOT NULL, message TEXT NOT NULL, changes BLOB NOT NULL)",
};

// Format 1 -> 2: an unread flag for the app's conflict and rejection inbox, and the indexes its listing
// queries use ("unread, newest first"; "the conflict history of this record").
constexpr const char* kMigrate1To2[] = {
    "ALTER TABLE _conflicts ADD COLUMN seen INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE _rejections ADD COLUMN seen INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX _conflicts_by_seen ON _conflicts (seen, id)",
    "CREATE INDEX _conflicts_by_record ON _conflicts (entity, record)",
    "CREATE INDEX _rejections_by_seen ON _rejections (seen, id)",
};

// Format 2 -> 3: when the device was last fully synced, so "last synced" survives an app restart.
constexpr const char* kMigrate2To3[] = {
    "ALTER TABLE _sync_meta ADD COLUMN last_synced_ms INTEGER NOT NULL DEFAULT 0",
};

// Format 3 -> 4: model schema 3. The schema version whose records the file holds in full: files before format
// 4 were written by libraries of schema 2 at most (schema 1 added no field schema 2 lacks). The new entities'
// tables and calendar_event.opportunity_id come from the model (migrate(): added_columns_ddl, all_ddl), not
// from here, because a new file's DDL already has them.
constexpr const char* kMigrate3To4[] = {
    "ALTER TABLE _sync_meta ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 2",
    // The version of the record tables (Options::schema_version), which a projected library keeps older.
    "ALTER TABLE _sync_meta ADD COLUMN tables_version INTEGER NOT NULL DEFAULT 2",
};
// Format 4 -> 5: each outbox entry keeps the last HLC its transaction issued, so that a local write no longer
// rewrites the _sync_meta row: the next node_seq and the clock are derived on read from the newest outbox
// entry (SqliteReplicaTxn::meta()), and written to _sync_meta when an entry leaves the outbox. Rows of older
// formats read 0 here, which changes nothing: their writes updated _sync_meta.
constexpr const char* kMigrate4To5[] = {
    "ALTER TABLE _outbox ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0",
};

// The newest model schema a file of format 3 or older may hold.
constexpr uint32_t kSchemaOfFormat3 = 2;

// Every migration in order: kMigrations[i] takes format i + 1 to i + 2. Frozen once shipped; a new format
// appends its step here and raises SqliteReplicaStore::kFormatVersion.
struct Migration {
  const char* const* begin;
  const char* const* end;
};
constexpr Migration kMigrations[] = {
    {std::begin(kMigrate1To2), std::end(kMigrate1To2)},
    {std::begin(kMigrate2To3), std::end(kMigrate2To3)},
    {std::begin(kMigrate3To4), std::end(kMigrate3To4)},
    {std::begin(kMigrate4To5), std::end(kMigrate4To5)},
};
static_assert(std::size(kMigrations) + 1 == SqliteReplicaStore::kFormatVersion,
              "one migration per format step");

const std::string kSetFormatVersion =
    "PRAGMA user_version = " + std::to_string(SqliteReplicaStore::kFormatVersion);

int64_t to_sql(uint64_t v) {
  return static_cast<int64_t>(v);
}
uint64_t from_sql(int64_t v) {
  return static_cast<uint64_t>(v);
}

std::span<const uint8_t> column_blob(sqlite3_stmt* s, int col) {
  const void* p = sqlite3_column_blob(s, col);
  const int n = sqlite3_column_bytes(s, col);
  if (p == nullptr || n <= 0) return {};
  return {static_cast<const uint8_t*>(p), static_cast<size_t>(n)};
}

std::string column_text(sqlite3_stmt* s, int col) {
  const unsigned char* p = sqlite3_column_text(s, col);
  const int n = sqlite3_column_bytes(s, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

// Resets a cached statement when the scope that used it ends, whatever path it leaves by.
class Use {
 public:
  explicit Use(sqlite3_stmt* s) : s_(s) {}
  ~Use() {
    if (s_) {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

 private:
  sqlite3_stmt* s_;
};

Status corrupt(std::string what, const Status& decode) {
  return Status(ErrorCode::kStorageCorrupt, std::move(what) + ": " + decode.to_string());
}

}  // namespace

// ---- Transaction
// --------------------------------------------------------------------------------------------

// One SQLite transaction (BEGIN IMMEDIATE ... COMMIT). Holds the store's mutex for its whole life.
class SqliteReplicaTxn final : public ReplicaTxn {
 public:
  explicit SqliteReplicaTxn(SqliteReplicaStore& store) : store_(store), lock_(store.lock()) {
    store_.owner_ = std::this_thread::get_id();
    if (store_.closed_) {  // reads find nothing and report why; the first write fails with the reason
      write_error_ = *store_.closed_;
      return;
    }
    Status prepared;
    int rc = store_.run(SqliteReplicaStore::Fixed::kBegin, prepared);
    if (rc == SQLITE_OK) {
      open_ = true;
      // Now, holding the write lock on the newest snapshot, the data version says whether anything committed
      // since the cache was filled.
      cache_valid_ = store_.meta_cache_ && store_.data_version() == store_.meta_cache_->data_version;
      return;
    }
    // A read-only or locked file still serves reads (the constructor of SyncClient, the API's queries): they
    // run in autocommit mode, and the first write records the failure so commit() reports it.
    write_error_ = prepared ? sqlite::status_from(rc, "begin transaction", store_.db_) : prepared;
  }

  ~SqliteReplicaTxn() override {
    if (open_) rollback();
    if (lock_.owns_lock()) store_.owner_ = std::thread::id();
  }

  std::optional<RecordState> load(EntityId entity, const RecordId& id) override {
    auto relocked = relock();
    const schema::EntityDef* e = schema::entity(entity);
    if (e == nullptr) return std::nullopt;
    sqlite3_stmt* s = entity_stmt(SqliteReplicaStore::PerEntity::kLoad, *e);
    if (s == nullptr) return std::nullopt;
    Use use(s);
    const std::string key = id.to_string();
    sqlite3_bind_text(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc != SQLITE_ROW) {
      fail(sqlite::status_from(rc, "load record", store_.db_));
      return std::nullopt;
    }
    Result<RecordState> r = codec::decode_record(column_blob(s, 0));
    if (!r) {
      fail(corrupt(std::string(e->name) + " " + key, r.status()));
      return std::nullopt;
    }
    if (r->entity != entity || r->id != id) {
      fail(Status(ErrorCode::kStorageCorrupt,
                  std::string(e->name) + " " + key + ": _meta names another record"));
      return std::nullopt;
    }
    return std::move(r).value();
  }

  void save(const RecordState& record) override {
    if (!writable()) return;
    const schema::EntityDef* e = schema::entity(record.entity);
    assert(e != nullptr && "save() of an entity outside the model");
    if (e == nullptr) return fail(Status(ErrorCode::kUnknownEntity, "save of an unknown entity"));
    const uint32_t version = store_.schema_version_;
    if (e->since > version)
      return fail(
          Status(ErrorCode::kUnknownEntity, std::string(e->name) + " is newer than this replica's schema"));
    sqlite3_stmt* s = entity_stmt(SqliteReplicaStore::PerEntity::kUpsert, *e);
    if (s == nullptr) return;
    Use use(s);
    const std::string key = record.id.to_string();
    const std::vector<uint8_t> meta = codec::encode_record(record);
    int col = 1;
    sqlite3_bind_text(s, col++, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    for (const schema::FieldDef& f : e->fields) {
      if (f.since > version) continue;  // no column (the record's _meta keeps whatever it holds)
      const FieldState* fs = record.field(f.id);
      const int c = col++;
      if (fs == nullptr) continue;  // bindings were cleared: NULL
      const Value& v = fs->value;
      switch (v.kind()) {
        case Value::Kind::kNull:
          break;
        case Value::Kind::kInt:
          sqlite3_bind_int64(s, c, v.as_int());
          break;
        case Value::Kind::kReal:
          sqlite3_bind_double(s, c, v.as_real());
          break;
        case Value::Kind::kBool:
          sqlite3_bind_int(s, c, v.as_bool() ? 1 : 0);
          break;
        case Value::Kind::kText:
          sqlite3_bind_text(s, c, v.as_text().data(), static_cast<int>(v.as_text().size()), SQLITE_STATIC);
          break;
      }
    }
    sqlite3_bind_int(s, col++, record.deleted ? 1 : 0);
    sqlite3_bind_blob(s, col++, meta.data(), static_cast<int>(meta.size()), SQLITE_STATIC);
    step_done(s, "save record");
  }

  void erase(EntityId entity, const RecordId& id) override {
    if (!writable()) return;
    const schema::EntityDef* e = schema::entity(entity);
    if (e == nullptr) return;
    sqlite3_stmt* s = stmt("DELETE FROM " + quoted(e->name) + " WHERE id = ?1");
    if (s == nullptr) return;
    Use use(s);
    const std::string key = id.to_string();
    sqlite3_bind_text(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    step_done(s, "erase record");
  }

  void outbox_append(const ClientTxn& txn) override {
    if (!writable()) return;
    sqlite3_stmt* s = fixed_stmt(SqliteReplicaStore::Fixed::kOutboxAppend);
    if (s == nullptr) return;
    Use use(s);
    Hlc hlc = 0;
    for (const Change& c : txn.changes) hlc = std::max(hlc, c.version.hlc);
    // Newest: its node_seq is at or past the derived next one, so every other entry is older.
    const bool newest = txn.node_seq >= meta().next_node_seq;
    const std::vector<uint8_t> blob = codec::encode_client_txn(txn);
    sqlite3_bind_int64(s, 1, to_sql(txn.node_seq));
    sqlite3_bind_int64(s, 2, txn.created_at_ms);
    sqlite3_bind_int64(s, 3, static_cast<int64_t>(txn.changes.size()));
    sqlite3_bind_blob(s, 4, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, to_sql(hlc));
    meta_exact_ = false;  // until set_meta() says what the new entry implies (carried_by_outbox)
    if (!step_done(s, "append to outbox")) return;
    appended_ = newest ? std::optional<Appended>(Appended{txn.node_seq, hlc}) : std::nullopt;
  }

  std::vector<ClientTxn> outbox_peek(size_t max_txns) override { return outbox_after(0, max_txns); }

  std::vector<ClientTxn> outbox_after(uint64_t after_node_seq, size_t max_txns) override {
    auto relocked = relock();
    std::vector<ClientTxn> out;
    if (max_txns == 0) return out;
    sqlite3_stmt* s =
        stmt("SELECT node_seq, txn FROM _outbox WHERE node_seq > ?1 ORDER BY node_seq LIMIT ?2");
    if (s == nullptr) return out;
    Use use(s);
    sqlite3_bind_int64(s, 1, to_sql(after_node_seq));
    // Widened before the clamp: where size_t is 32 bits (armhf) a size_t compared with INT64_MAX is always
    // smaller, and GCC refuses the comparison (-Wtype-limits).
    sqlite3_bind_int64(s, 2, static_cast<int64_t>(std::min<uint64_t>(max_txns, INT64_MAX)));
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      std::optional<ClientTxn> t = outbox_row(s);
      if (!t) {
        out.clear();
        return out;
      }
      out.push_back(std::move(*t));
    }
    if (rc != SQLITE_DONE) {
      fail(sqlite::status_from(rc, "read outbox", store_.db_));
      out.clear();
    }
    return out;
  }

  std::optional<ClientTxn> outbox_get(uint64_t node_seq) override {
    auto relocked = relock();
    sqlite3_stmt* s = stmt("SELECT node_seq, txn FROM _outbox WHERE node_seq = ?1");
    if (s == nullptr) return std::nullopt;
    Use use(s);
    sqlite3_bind_int64(s, 1, to_sql(node_seq));
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return outbox_row(s);
    if (rc != SQLITE_DONE) fail(sqlite::status_from(rc, "read outbox", store_.db_));
    return std::nullopt;
  }

  bool outbox_remove(uint64_t node_seq) override {
    if (!writable()) return false;
    // The newest entry may be what the next node_seq and the clock are derived from: read them before it
    // goes, and finish() writes them to _sync_meta.
    (void)meta();
    meta_from_outbox_ = true;
    meta_exact_ = false;
    sqlite3_stmt* s = stmt("DELETE FROM _outbox WHERE node_seq = ?1");
    if (s == nullptr) return false;
    Use use(s);
    sqlite3_bind_int64(s, 1, to_sql(node_seq));
    return step_done(s, "remove from outbox") && sqlite3_changes(store_.db_) > 0;
  }

  size_t outbox_size() override {
    auto relocked = relock();
    sqlite3_stmt* s = stmt("SELECT count(*) FROM _outbox");
    if (s == nullptr) return 0;
    Use use(s);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
      fail(sqlite::status_from(rc, "count outbox", store_.db_));
      return 0;
    }
    return static_cast<size_t>(sqlite3_column_int64(s, 0));
  }

  ReplicaMeta meta() override {
    if (meta_) return *meta_;
    auto relocked = relock();
    if (open_ && cache_valid_) {
      meta_ = store_.meta_cache_->meta;
      row_ = store_.meta_cache_->row;
      store_.meta_reads_.cached++;
      return *meta_;
    }
    ReplicaMeta m;
    sqlite3_stmt* s = fixed_stmt(SqliteReplicaStore::Fixed::kMeta);
    if (s == nullptr) return m;
    Use use(s);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
      fail(rc == SQLITE_DONE ? Status(ErrorCode::kStorageCorrupt, "replica has no sync state row")
                             : sqlite::status_from(rc, "read sync state", store_.db_));
      m.node = store_.node_;
      return m;
    }
    m.node = from_sql(sqlite3_column_int64(s, 0));
    m.hlc = from_sql(sqlite3_column_int64(s, 1));
    m.next_node_seq = from_sql(sqlite3_column_int64(s, 2));
    m.cursor = from_sql(sqlite3_column_int64(s, 3));
    m.bootstrap_done = sqlite3_column_int(s, 4) != 0;
    m.bootstrap_snapshot_seq = from_sql(sqlite3_column_int64(s, 5));
    m.bootstrap_page_token = column_text(s, 6);
    m.bootstrap_total = from_sql(sqlite3_column_int64(s, 7));
    m.bootstrap_received = from_sql(sqlite3_column_int64(s, 8));
    m.last_synced_ms = sqlite3_column_int64(s, 9);
    m.schema_version = static_cast<uint32_t>(sqlite3_column_int64(s, 10));
    const ReplicaMeta row = m;
    if (sqlite3_column_type(s, 11) != SQLITE_NULL) {  // the newest outbox entry
      m.next_node_seq = std::max(m.next_node_seq, from_sql(sqlite3_column_int64(s, 11)) + 1);
      m.hlc = std::max(m.hlc, from_sql(sqlite3_column_int64(s, 12)));
    }
    if (open_) {  // stable for the rest of this transaction (we hold the write lock)
      meta_ = m;
      row_ = row;
      store_.meta_reads_.from_file++;
    }
    return m;
  }

  void set_meta(const ReplicaMeta& m) override {
    if (!writable()) return;
    if (carried_by_outbox(m)) {
      meta_ = m;
      meta_exact_ = true;  // what meta() derives from the row and the newest entry once this commits
      return;
    }
    write_meta_row(m);
  }

  // A local write's set_meta changes only next_node_seq and the clock, to what the outbox entry it just
  // appended implies: meta() derives the same from that entry, so the row is not rewritten (one statement and
  // one page less per write).
  bool carried_by_outbox(const ReplicaMeta& m) {
    if (!appended_ || !row_) return false;
    ReplicaMeta same = m;
    same.next_node_seq = row_->next_node_seq;
    same.hlc = row_->hlc;
    return same == *row_ && m.next_node_seq == appended_->node_seq + 1 && m.hlc == appended_->hlc &&
           row_->hlc <= m.hlc && row_->next_node_seq <= m.next_node_seq;
  }

  void write_meta_row(const ReplicaMeta& m) {
    // meta() will derive from this row and the newest outbox entry, which may imply more: read it again.
    meta_exact_ = false;
    sqlite3_stmt* s = fixed_stmt(SqliteReplicaStore::Fixed::kSetMeta);
    if (s == nullptr) return;
    Use use(s);
    sqlite3_bind_int64(s, 1, to_sql(m.node));
    sqlite3_bind_int64(s, 2, to_sql(m.hlc));
    sqlite3_bind_int64(s, 3, to_sql(m.next_node_seq));
    sqlite3_bind_int64(s, 4, to_sql(m.cursor));
    sqlite3_bind_int(s, 5, m.bootstrap_done ? 1 : 0);
    sqlite3_bind_int64(s, 6, to_sql(m.bootstrap_snapshot_seq));
    sqlite3_bind_text(s, 7, m.bootstrap_page_token.data(), static_cast<int>(m.bootstrap_page_token.size()),
                      SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, to_sql(m.bootstrap_total));
    sqlite3_bind_int64(s, 9, to_sql(m.bootstrap_received));
    sqlite3_bind_int64(s, 10, m.last_synced_ms);
    sqlite3_bind_int64(s, 11, m.schema_version);
    if (step_done(s, "write sync state")) meta_ = row_ = m;
  }

  void add_conflict(const ConflictRecord& c) override {
    if (!writable()) return;
    sqlite3_stmt* s = stmt(
        "INSERT INTO _conflicts (server_seq, kind, entity, record, field, winner_user, loser_user, rule, "
        "conflict) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    if (s == nullptr) return;
    Use use(s);
    const std::vector<uint8_t> blob = codec::encode_conflict(c);
    const std::string record = c.record.to_string();
    sqlite3_bind_int64(s, 1, to_sql(c.server_seq));
    sqlite3_bind_int(s, 2, static_cast<int>(c.kind));
    sqlite3_bind_int(s, 3, static_cast<int>(c.entity));
    sqlite3_bind_text(s, 4, record.data(), static_cast<int>(record.size()), SQLITE_STATIC);
    sqlite3_bind_int(s, 5, c.field);
    sqlite3_bind_text(s, 6, c.winner.user.data(), static_cast<int>(c.winner.user.size()), SQLITE_STATIC);
    sqlite3_bind_text(s, 7, c.loser.user.data(), static_cast<int>(c.loser.user.size()), SQLITE_STATIC);
    sqlite3_bind_text(s, 8, c.rule.data(), static_cast<int>(c.rule.size()), SQLITE_STATIC);
    sqlite3_bind_blob(s, 9, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    step_done(s, "add conflict");
  }

  void add_rejection(const Rejection& r) override {
    if (!writable()) return;
    sqlite3_stmt* s =
        stmt("INSERT INTO _rejections (node_seq, reason, message, changes) VALUES (?1, ?2, ?3, ?4)");
    if (s == nullptr) return;
    Use use(s);
    ClientTxn holder;
    holder.node = store_.node_;
    holder.node_seq = r.node_seq;
    holder.changes = r.changes;
    const std::vector<uint8_t> blob = codec::encode_client_txn(holder);
    sqlite3_bind_int64(s, 1, to_sql(r.node_seq));
    sqlite3_bind_int(s, 2, static_cast<int>(r.reason));
    sqlite3_bind_text(s, 3, r.message.data(), static_cast<int>(r.message.size()), SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    step_done(s, "add rejection");
  }

  // Ends the transaction and releases the store: SyncClient goes on to begin the next one while this object
  // is still alive. Reads on a finished transaction see the committed state; writes are ignored.
  Status commit() override {
    if (committed_) return Status(ErrorCode::kInternal, "commit() called twice");
    committed_ = true;
    Status s = finish();
    store_.owner_ = std::thread::id();
    lock_.unlock();
    return s;
  }

 private:
  Status finish() {
    if (!error_.is_ok() || !open_) {
      if (open_) rollback();
      open_ = false;
      // A transaction that only read commits fine even when the file could not be locked for writing.
      return error_.is_ok() && !wrote_ ? Status::ok() : error_;
    }
    // An entry left the outbox: what meta() derived from it goes into the row now.
    if (meta_from_outbox_ && meta_ && row_ && !(*meta_ == *row_)) {
      write_meta_row(*meta_);
      if (!error_.is_ok()) {
        rollback();
        open_ = false;
        return error_;
      }
    }
    if (store_.pending_fault_) {
      Status s = std::move(*store_.pending_fault_);
      store_.pending_fault_.reset();
      rollback();
      open_ = false;
      return s;
    }
    Status prepared;
    int rc = store_.run(SqliteReplicaStore::Fixed::kCommit, prepared);
    if (rc != SQLITE_OK) {
      Status s = prepared ? sqlite::status_from(rc, "commit", store_.db_) : prepared;
      // COMMIT can fail and leave the transaction open (SQLITE_BUSY, SQLITE_FULL on the journal): end it.
      if (sqlite3_get_autocommit(store_.db_) == 0) rollback();
      open_ = false;
      store_.meta_cache_.reset();  // whatever the file now holds, the next transaction reads it
      return s;
    }
    open_ = false;
    remember_meta();
    return Status::ok();
  }

  // After a commit: what the next write transaction of this connection may take as the meta without reading
  // it, tied to the data version this commit produced.
  void remember_meta() {
    std::optional<SqliteReplicaStore::MetaCache>& cache = store_.meta_cache_;
    const std::optional<uint32_t> version = store_.data_version();
    if (!version || !meta_exact_) {
      cache.reset();
    } else if (meta_ && row_) {
      cache = SqliteReplicaStore::MetaCache{*version, *meta_, *row_};
    } else if (cache_valid_) {  // the meta was neither read nor changed: the cached one still holds
      cache->data_version = *version;
    } else {
      cache.reset();
    }
  }

  // Reads after commit() take the store's lock for their own duration.
  std::unique_lock<std::mutex> relock() {
    return lock_.owns_lock() ? std::unique_lock<std::mutex>() : store_.lock();
  }

  // Writes go on only while nothing failed; the first failure (including "could not begin") is what commit()
  // returns.
  bool writable() {
    assert(!committed_ && "write to a committed ReplicaTxn");
    if (committed_) return false;
    wrote_ = true;
    if (!open_ && error_.is_ok()) error_ = write_error_;
    return error_.is_ok();
  }

  void fail(Status s) {
    if (error_.is_ok()) error_ = std::move(s);
  }

  bool step_done(sqlite3_stmt* s, std::string_view what) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return true;
    fail(sqlite::status_from(rc, what, store_.db_));
    return false;
  }

  // An outbox row (node_seq, txn) decoded; a corrupt one fails the transaction.
  std::optional<ClientTxn> outbox_row(sqlite3_stmt* s) {
    Result<ClientTxn> t = codec::decode_client_txn(column_blob(s, 1));
    if (!t || t->node_seq != from_sql(sqlite3_column_int64(s, 0))) {
      fail(corrupt("outbox entry " + std::to_string(sqlite3_column_int64(s, 0)),
                   t ? Status(ErrorCode::kMalformedMessage, "node_seq mismatch") : t.status()));
      return std::nullopt;
    }
    return std::move(t).value();
  }

  sqlite3_stmt* stmt(const std::string& sql) {
    Status st;
    sqlite3_stmt* s = store_.statement(sql, st);
    if (!st) fail(std::move(st));
    return s;
  }
  sqlite3_stmt* fixed_stmt(SqliteReplicaStore::Fixed which) {
    Status st;
    sqlite3_stmt* s = store_.fixed_statement(which, st);
    if (!st) fail(std::move(st));
    return s;
  }
  sqlite3_stmt* entity_stmt(SqliteReplicaStore::PerEntity which, const schema::EntityDef& e) {
    Status st;
    sqlite3_stmt* s = store_.entity_statement(which, e, st);
    if (!st) fail(std::move(st));
    return s;
  }

  // Best effort, as before: a failed ROLLBACK leaves nothing to do (SQLite rolls back what it can).
  void rollback() {
    Status ignored;
    (void)store_.run(SqliteReplicaStore::Fixed::kRollback, ignored);
  }

  SqliteReplicaStore& store_;
  std::unique_lock<std::mutex> lock_;  // the store's; owner_ names this thread while it is held
  bool open_ = false;                  // inside BEGIN IMMEDIATE
  bool committed_ = false;             // commit() was called
  bool wrote_ = false;
  Status write_error_;               // why BEGIN IMMEDIATE failed: reported at the first write
  Status error_;                     // first failure: commit() rolls back and returns it
  std::optional<ReplicaMeta> meta_;  // as meta() returns it: the row, next_node_seq and hlc from the outbox
  std::optional<ReplicaMeta> row_;   // the _sync_meta row as stored
  struct Appended {
    uint64_t node_seq = 0;
    Hlc hlc = 0;
  };
  std::optional<Appended> appended_;  // the newest outbox entry, appended by this transaction
  bool meta_from_outbox_ = false;     // an entry was removed: finish() writes meta_ to the row
  // The store's meta cache was current when BEGIN IMMEDIATE took the write lock (nothing committed since).
  bool cache_valid_ = false;
  // meta_ (if read) is what meta() would derive from the file after this transaction commits; false after
  // any change to the outbox or the row that set_meta() did not state exactly.
  bool meta_exact_ = true;
};

// ---- Store
// --------------------------------------------------------------------------------------------------

SqliteReplicaStore::SqliteReplicaStore(std::string path, std::unique_ptr<sqlite::Db> conn)
    : path_(std::move(path)), conn_(std::move(conn)), db_(conn_->raw()) {}

SqliteReplicaStore::~SqliteReplicaStore() = default;  // conn_ finalizes its statements and closes

Result<std::unique_ptr<SqliteReplicaStore>> SqliteReplicaStore::open(const std::string& path,
                                                                     Options options) {
  int flags = options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (options.create_if_missing && !options.read_only) flags |= SQLITE_OPEN_CREATE;
  // One connection per store, serialised by mu_: SQLite's own mutex would only be taken twice.
  Result<std::unique_ptr<sqlite::Db>> conn =
      sqlite::Db::open(path, flags | SQLITE_OPEN_NOMUTEX, options.busy_timeout_ms);
  if (!conn) return conn.status();
  std::unique_ptr<SqliteReplicaStore> store(new SqliteReplicaStore(path, std::move(*conn)));
  if (Status s = store->init(options); !s) {
    return Status(s.code(), path + ": " + s.message(), s.retryable());
  }
  return store;
}

Status SqliteReplicaStore::exec(const char* sql) {
  return sqlite::status_from(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), sql, db_);
}

Status SqliteReplicaStore::init(const Options& options) {
  schema_version_ = options.schema_version;
  // The version is read before anything could write to the file: a newer file must stay untouched.
  int version = 0;
  int tables = 0;
  {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &s, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) return sqlite::status_from(rc, "read format version", db_);
    rc = sqlite3_prepare_v2(db_, "SELECT count(*) FROM sqlite_schema", -1, &s, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) tables = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) return sqlite::status_from(rc, "read schema", db_);
  }
  if (version > kFormatVersion) {
    return Status(ErrorCode::kSchemaTooNew,
                  "replica format " + std::to_string(version) +
                      " was written by a newer version of the app (this one reads up "
                      "to format " +
                      std::to_string(kFormatVersion) + "); update the app");
  }
  if (version == 0 && tables != 0) {
    return Status(ErrorCode::kStorageCorrupt, "not a fieldsync replica (tables present, no format version)");
  }
  if (!options.read_only) {
    if (Status s = exec("PRAGMA journal_mode = WAL"); !s) return s;
    if (Status s =
            exec(options.synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
        !s)
      return s;
  }
  if (version == 0) {
    if (options.read_only) return Status(ErrorCode::kStorageReadOnly, "cannot create a replica read-only");
    NodeId node = options.node;
    std::random_device rd;
    while (node == 0) node = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    if (Status s = create_schema(node); !s) return s;
  } else if (version < kFormatVersion) {
    if (options.read_only)
      return Status(ErrorCode::kStorageReadOnly, "replica needs a format migration but was opened read-only");
    if (Status s = migrate(version); !s) return s;
  }
  if (Status s = upgrade_tables(options); !s) return s;
  // The node id of the file.
  auto txn = begin();
  const ReplicaMeta meta = txn->meta();
  if (Status s = txn->commit(); !s) return s;
  if (meta.node == 0) return Status(ErrorCode::kStorageCorrupt, "replica has no node id");
  if (options.node != 0 && options.node != meta.node)
    return Status(ErrorCode::kInvalidArgument, "replica belongs to node " + std::to_string(meta.node) +
                                                   ", not " + std::to_string(options.node));
  node_ = meta.node;
  return Status::ok();
}

// A new file: the format-1 layout, then every migration, in one transaction.
Status SqliteReplicaStore::create_schema(NodeId node) {
  if (Status s = exec("BEGIN IMMEDIATE"); !s) return s;
  auto body = [&]() -> Status {
    for (const std::string& sql : schema::all_ddl(schema::Dialect::kSqlite, schema_version_)) {
      if (Status s = exec(sql.c_str()); !s) return s;
    }
    for (const char* sql : kFormat1Ddl) {
      if (Status s = exec(sql); !s) return s;
    }
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db_, "INSERT INTO _sync_meta VALUES (1, ?1, 0, 1, 0, 0, 0, '', 0, 0)", -1, &s,
                                nullptr);
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(s, 1, to_sql(node));
      rc = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return sqlite::status_from(rc, "write sync state", db_);
    for (const Migration& m : kMigrations) {
      for (const char* const* sql = m.begin; sql != m.end; ++sql) {
        if (Status st = exec(*sql); !st) return st;
      }
    }
    // schema_version 0: set by the first bootstrap (ReplicaMeta::schema_version).
    const std::string version =
        "UPDATE _sync_meta SET schema_version = 0, tables_version = " + std::to_string(schema_version_);
    if (Status st = exec(version.c_str()); !st) return st;
    return exec(kSetFormatVersion.c_str());
  };
  Status s = body();
  if (s) s = exec("COMMIT");
  if (!s && sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  return s;
}

// The record tables to the app's model version (Options::schema_version), in place and in one transaction:
// a replica an older app (or a library projected to an older version) wrote gets the new tables and
// columns; its records, outbox and unsynced writes stay as they are, and the backfill of the next sync
// brings what it could not see (ReplicaMeta::schema_version stays the older version until then).
Status SqliteReplicaStore::upgrade_tables(const Options& options) {
  int64_t tables = 0;
  {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db_, "SELECT tables_version FROM _sync_meta WHERE id = 1", -1, &s, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) tables = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
      return sqlite::status_from(rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "read tables version", db_);
  }
  const auto have = static_cast<uint32_t>(tables);
  if (have > schema_version_) {
    if (options.read_only) {  // an inspection tool reads what is there
      schema_version_ = have;
      return Status::ok();
    }
    return Status(ErrorCode::kSchemaTooNew, "replica holds model schema " + std::to_string(have) +
                                                " but this app speaks " + std::to_string(schema_version_) +
                                                "; update the app");
  }
  if (have == schema_version_) return Status::ok();
  if (options.read_only) {
    schema_version_ = have;
    return Status::ok();
  }
  if (Status s = exec("BEGIN IMMEDIATE"); !s) return s;
  auto body = [&]() -> Status {
    for (const std::string& sql : schema::added_columns_ddl(have, schema::Dialect::kSqlite, schema_version_))
      if (Status s = exec(sql.c_str()); !s) return s;
    for (const std::string& sql : schema::all_ddl(schema::Dialect::kSqlite, schema_version_))
      if (Status s = exec(sql.c_str()); !s) return s;
    const std::string set = "UPDATE _sync_meta SET tables_version = " + std::to_string(schema_version_);
    return exec(set.c_str());
  };
  Status s = body();
  if (s) s = exec("COMMIT");
  if (!s && sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  if (!s)
    return Status(s.code(),
                  "upgrading the replica to schema " + std::to_string(schema_version_) + ": " + s.message(),
                  s.retryable());
  return s;
}

// In place and atomic: a crash or error mid-way leaves the old format, which the next open migrates again.
Status SqliteReplicaStore::migrate(int from_version) {
  if (Status s = exec("BEGIN IMMEDIATE"); !s) return s;
  auto body = [&]() -> Status {
    for (int step = from_version; step < kFormatVersion; ++step) {
      const Migration& m = kMigrations[step - 1];
      for (const char* const* sql = m.begin; sql != m.end; ++sql) {
        if (Status s = exec(*sql); !s) return s;
      }
    }
    // Columns, then tables and indexes, of the entity model that the old file lacks.
    if (from_version < 4)
      for (const std::string& sql :
           schema::added_columns_ddl(kSchemaOfFormat3, schema::Dialect::kSqlite, schema_version_)) {
        if (Status s = exec(sql.c_str()); !s) return s;
      }
    for (const std::string& sql : schema::all_ddl(schema::Dialect::kSqlite, schema_version_)) {
      if (Status s = exec(sql.c_str()); !s) return s;
    }
    const std::string tables = "UPDATE _sync_meta SET tables_version = " + std::to_string(schema_version_);
    if (Status s = exec(tables.c_str()); !s) return s;
    return exec(kSetFormatVersion.c_str());
  };
  Status s = body();
  if (s) s = exec("COMMIT");
  if (!s && sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  if (!s)
    return Status(s.code(), "migrating replica format " + std::to_string(from_version) + ": " + s.message(),
                  s.retryable());
  return s;
}

sqlite3_stmt* SqliteReplicaStore::statement(const std::string& sql, Status& status) {
  if (closed_) {
    status = *closed_;
    return nullptr;
  }
  Result<sqlite3_stmt*> s = conn_->prepare(sql);
  if (!s) {
    status = s.status();
    return nullptr;
  }
  return *s;
}

namespace {

// Indexed by SqliteReplicaStore::Fixed.
constexpr const char* kFixedSql[] = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SELECT node, hlc, next_node_seq, cursor, bootstrap_done, bootstrap_snapshot_seq, bootstrap_page_token, "
    "bootstrap_total, bootstrap_received, last_synced_ms, schema_version, "
    "(SELECT node_seq FROM _outbox ORDER BY node_seq DESC LIMIT 1), "
    "(SELECT hlc FROM _outbox ORDER BY node_seq DESC LIMIT 1) FROM _sync_meta WHERE id = 1",
    "UPDATE _sync_meta SET node = ?1, hlc = ?2, next_node_seq = ?3, cursor = ?4, bootstrap_done = ?5, "
    "bootstrap_snapshot_seq = ?6, bootstrap_page_token = ?7, bootstrap_total = ?8, bootstrap_received = ?9, "
    "last_synced_ms = ?10, schema_version = ?11 WHERE id = 1",
    "INSERT OR REPLACE INTO _outbox (node_seq, created_at_ms, change_count, txn, hlc) VALUES (?1, ?2, ?3, "
    "?4, "
    "?5)",
};

// From model identifiers, never from values. The upsert names every column of the tables' schema version
// (save() binds them in the model's order).
std::string entity_sql(bool load, const schema::EntityDef& e, uint32_t version) {
  if (load) return "SELECT _meta FROM " + quoted(e.name) + " WHERE id = ?1";
  std::string sql = "INSERT OR REPLACE INTO " + quoted(e.name) + " (id";
  std::string values = "?";
  for (const schema::FieldDef& f : e.fields) {
    if (f.since > version) continue;
    sql += ", " + quoted(f.name);
    values += ", ?";
  }
  sql += ", _deleted, _meta) VALUES (" + values + ", ?, ?)";
  return sql;
}

}  // namespace

sqlite3_stmt* SqliteReplicaStore::fixed_statement(Fixed which, Status& status) {
  static_assert(std::size(kFixedSql) == static_cast<size_t>(Fixed::kCount));
  sqlite3_stmt*& s = fixed_[static_cast<size_t>(which)];
  if (s == nullptr) s = statement(kFixedSql[static_cast<size_t>(which)], status);
  return s;
}

sqlite3_stmt* SqliteReplicaStore::entity_statement(PerEntity which, const schema::EntityDef& e,
                                                   Status& status) {
  std::vector<sqlite3_stmt*>& slots = per_entity_[static_cast<size_t>(which)];
  const auto i = static_cast<size_t>(e.id);
  if (i >= slots.size()) slots.resize(i + 1, nullptr);
  if (slots[i] == nullptr)
    slots[i] = statement(entity_sql(which == PerEntity::kLoad, e, schema_version_), status);
  return slots[i];
}

std::optional<uint32_t> SqliteReplicaStore::data_version() {
  unsigned int version = 0;
  if (db_ == nullptr || sqlite3_file_control(db_, "main", SQLITE_FCNTL_DATA_VERSION, &version) != SQLITE_OK)
    return std::nullopt;
  return version;
}

int SqliteReplicaStore::run(Fixed which, Status& status) {
  sqlite3_stmt* s = fixed_statement(which, status);
  if (s == nullptr) return SQLITE_ERROR;
  const int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

std::unique_ptr<ReplicaTxn> SqliteReplicaStore::begin() {
  return std::make_unique<SqliteReplicaTxn>(*this);
}

std::unique_lock<std::mutex> SqliteReplicaStore::lock() {
  // A second transaction (or read()) on the thread that holds one would wait for itself forever: a programmer
  // error, reported instead of hanging.
  if (owner_.load() == std::this_thread::get_id()) {
    std::fprintf(stderr,
                 "fieldsync: SqliteReplicaStore used while this thread holds one of its transactions\n");
    std::abort();
  }
  std::unique_lock<std::mutex> l(mu_);
  return l;
}

Status SqliteReplicaStore::read(const std::function<Status(sqlite3*)>& fn) {
  auto l = lock();
  if (closed_) return *closed_;
  return fn(db_);
}

void SqliteReplicaStore::close(Status reason, const std::function<void(sqlite3*)>& before_close) {
  auto l = lock();
  if (closed_) return;
  if (before_close) before_close(db_);
  fixed_.fill(nullptr);  // conn_ finalizes them
  meta_cache_.reset();
  for (auto& slots : per_entity_) slots.clear();
  conn_.reset();  // finalizes the cached statements and closes (sqlite_db.h: a zombie while others remain)
  db_ = nullptr;
  closed_ = std::move(reason);
}

bool SqliteReplicaStore::closed() {
  auto l = lock();
  return closed_.has_value();
}

Status SqliteReplicaStore::mark_seen(const char* table, int64_t up_to_id) {
  auto l = lock();
  Status st;
  sqlite3_stmt* s =
      statement(std::string("UPDATE ") + table + " SET seen = 1 WHERE seen = 0 AND id <= ?1", st);
  if (s == nullptr) return st;
  Use use(s);
  sqlite3_bind_int64(s, 1, up_to_id);
  return sqlite::status_from(sqlite3_step(s), "mark seen", db_);
}

SqliteReplicaStore::MetaReads SqliteReplicaStore::meta_reads() {
  auto l = lock();
  return meta_reads_;
}

void SqliteReplicaStore::fail_next_commit(Status status) {
  auto l = lock();
  pending_fault_ = std::move(status);
}

Result<std::map<RecordKey, RecordState>> SqliteReplicaStore::records() {
  auto l = lock();
  std::map<RecordKey, RecordState> out;
  for (const schema::EntityDef& e : schema::entities()) {
    if (e.since > schema_version_) continue;  // a projected app's file has no table for it
    Status st;
    sqlite3_stmt* s = statement("SELECT id, _meta FROM " + quoted(e.name), st);
    if (s == nullptr) return st;
    Use use(s);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      Result<RecordState> r = codec::decode_record(column_blob(s, 1));
      if (!r) return corrupt(std::string(e.name) + " " + column_text(s, 0), r.status());
      if (r->entity != e.id || r->id.to_string() != column_text(s, 0))
        return Status(ErrorCode::kStorageCorrupt,
                      std::string(e.name) + " " + column_text(s, 0) + ": _meta names another record");
      RecordKey key{r->entity, r->id};
      out.emplace(key, std::move(r).value());
    }
    if (rc != SQLITE_DONE) return sqlite::status_from(rc, "read records", db_);
  }
  return out;
}

Result<std::vector<ConflictRecord>> SqliteReplicaStore::conflicts() {
  auto l = lock();
  Status st;
  sqlite3_stmt* s = statement("SELECT id, conflict FROM _conflicts ORDER BY id", st);
  if (s == nullptr) return st;
  Use use(s);
  std::vector<ConflictRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    Result<ConflictRecord> c = codec::decode_conflict(column_blob(s, 1));
    if (!c) return corrupt("conflict " + std::to_string(sqlite3_column_int64(s, 0)), c.status());
    out.push_back(std::move(c).value());
  }
  if (rc != SQLITE_DONE) return sqlite::status_from(rc, "read conflicts", db_);
  return out;
}

Result<std::vector<Rejection>> SqliteReplicaStore::rejections() {
  auto l = lock();
  Status st;
  sqlite3_stmt* s =
      statement("SELECT id, node_seq, reason, message, changes FROM _rejections ORDER BY id", st);
  if (s == nullptr) return st;
  Use use(s);
  std::vector<Rejection> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    Result<ClientTxn> t = codec::decode_client_txn(column_blob(s, 4));
    if (!t) return corrupt("rejection " + std::to_string(sqlite3_column_int64(s, 0)), t.status());
    Rejection r;
    r.node_seq = from_sql(sqlite3_column_int64(s, 1));
    r.reason = static_cast<ErrorCode>(sqlite3_column_int(s, 2));
    r.message = column_text(s, 3);
    r.changes = std::move(t->changes);
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return sqlite::status_from(rc, "read rejections", db_);
  return out;
}

Status SqliteReplicaStore::mark_conflicts_seen(int64_t up_to_id) {
  return mark_seen("_conflicts", up_to_id);
}
Status SqliteReplicaStore::mark_rejections_seen(int64_t up_to_id) {
  return mark_seen("_rejections", up_to_id);
}

}  // namespace fieldsync::client

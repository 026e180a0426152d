// The CentralStore contract (store_contract.h), run against MemoryCentralStore (the reference) and
// SqliteCentralStore; then what only SQLite adds: reopening, the audit, typed errors, a sync round trip, and
// durability under kill -9.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/client.h"
#include "fieldsync/sync/export.h"
#include "fieldsync/sync/server.h"
#include "fieldsync/sync/tuning.h"
#include "store_contract.h"
#include "support/memory_store.h"
#include "support/sync_fixtures.h"

namespace fieldsync {
namespace {

using schema::EntityId;
using schema::Role;
using server::SqliteCentralStore;
namespace f = schema::fields;
using namespace store_contract;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-store-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::unique_ptr<SqliteCentralStore> open_sqlite(const std::string& path) {
  SqliteCentralStore::Options options;
  options.now_ms = [] { return kStart; };
  auto r = SqliteCentralStore::open(path, options);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r ? std::move(r.value()) : nullptr;
}

// ---- The contract (store_contract.h) over the memory store and SQLite, with and without group commit

struct MemoryStoreFactory {
  static constexpr bool kDurable = false;
  std::unique_ptr<CentralStore> open() { return std::make_unique<MemoryCentralStore>(); }
};

struct SqliteStoreFactory {
  static constexpr bool kDurable = true;
  TempDir dir;
  std::unique_ptr<CentralStore> open() { return open_sqlite(dir.file("central.db")); }
};

// Group commit changes only when commits reach the disk, never what they do.
struct SqliteGroupCommitStoreFactory {
  static constexpr bool kDurable = true;
  TempDir dir;
  std::unique_ptr<CentralStore> open() {
    SqliteCentralStore::Options options;
    options.now_ms = [] { return kStart; };
    options.group_commit = true;
    auto r = SqliteCentralStore::open(dir.file("central.db"), options);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r ? std::move(r.value()) : nullptr;
  }
};

using StoreTypes = testing::Types<MemoryStoreFactory, SqliteStoreFactory, SqliteGroupCommitStoreFactory>;
class StoreNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same_v<T, MemoryStoreFactory>) return "Memory";
    return std::is_same_v<T, SqliteStoreFactory> ? "Sqlite" : "SqliteGroupCommit";
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(Stores, CentralStoreContract, StoreTypes, StoreNames);
using DurableStoreTypes = testing::Types<SqliteStoreFactory, SqliteGroupCommitStoreFactory>;
INSTANTIATE_TYPED_TEST_SUITE_P(Stores, DurableStoreContract, DurableStoreTypes, StoreNames);

// ---- SQLite only

TEST(SqliteStore, FormatOneFileGetsItsLogIndexedOnOpen) {
  TempDir dir;
  const std::string path = dir.file("c.db");
  {
    auto store = open_sqlite(path);
    ASSERT_TRUE(store);
    auto txn = store->begin();
    txn->save(account(rid(100), "t-north"));  // log_txn(n) changes accounts rid(100), rid(101), ...
    txn->save(account(rid(101), "t-south"));
    txn->append_log(log_txn(1, 11, 1), {}, {territory("t-north")});
    txn->append_log(log_txn(2, 11, 2), {}, {territory("t-north"), territory("t-south")});
    ASSERT_TRUE(txn->commit().is_ok());
  }
  {  // what a format-1 file looks like: no index rows, format 1
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "DELETE FROM _log_scope; UPDATE _state SET value = 1 WHERE key = 'format'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  {
    auto store = open_sqlite(path);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->read_log_for(0, 2, {territory("t-south")}, 100).value().txns.size(), 1u);
    EXPECT_EQ(store->read_log_for(0, 2, {territory("t-north")}, 100).value().txns.size(), 2u);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT value FROM _state WHERE key = 'format'", -1, &q, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), 9) << "migrated files say so";
  sqlite3_finalize(q);
  sqlite3_close(db);
}

// Format 7 is model schema 3: a format-6 file (schema 2) has calendar_event without opportunity_id and no
// tables for leads, cases, assets and tasks. Opening it adds the column (before the model's DDL indexes it)
// and the tables, keeping every record.
TEST(SqliteStore, FormatSixFileGetsSchemaThreesColumnAndTables) {
  TempDir dir;
  const std::string path = dir.file("c.db");
  {
    auto store = open_sqlite(path);
    ASSERT_TRUE(store);
    auto txn = store->begin();
    txn->save(event(rid(300), "alice", kStart, kStart + 3'600'000));
    ASSERT_TRUE(txn->commit().is_ok());
  }
  {  // what a format-6 file looks like
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db,
                     "DROP INDEX idx_calendar_event_opportunity_id; ALTER TABLE calendar_event DROP COLUMN "
                     "opportunity_id; DROP TABLE task; DROP TABLE service_case; DROP TABLE asset; DROP "
                     "TABLE lead; UPDATE _state SET value = 6 WHERE key = 'format'",
                     nullptr, nullptr, nullptr),
        SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  {
    auto store = open_sqlite(path);
    ASSERT_TRUE(store);
    auto txn = store->begin();
    Result<std::optional<RecordState>> loaded = txn->load(EntityId::kCalendarEvent, rid(300));
    ASSERT_TRUE(loaded && loaded->has_value());
    const std::optional<RecordState>& e = *loaded;
    EXPECT_EQ(e->get(f::kEventOwner), Value::text("alice"));
    RecordState linked = *e;
    linked.fields.push_back(FieldState{f::kEventOpportunity, Value::text(rid(301).to_string()), {}, {}});
    txn->save(linked);
    ASSERT_TRUE(txn->commit().is_ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto scalar = [&](const char* sql) {
    sqlite3_stmt* q = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &q, nullptr), SQLITE_OK) << sql;
    EXPECT_EQ(sqlite3_step(q), SQLITE_ROW) << sql;
    std::string v = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return v;
  };
  EXPECT_EQ(scalar("SELECT value FROM _state WHERE key = 'format'"), "9");
  EXPECT_EQ(scalar("SELECT opportunity_id FROM calendar_event"), rid(301).to_string());
  EXPECT_EQ(
      scalar("SELECT count(*) FROM sqlite_schema WHERE name IN ('lead', 'service_case', 'asset', 'task', "
             "'idx_calendar_event_opportunity_id')"),
      "5");
  sqlite3_close(db);
}

// Format 2 kept a per-change _audit table; format 3 keeps the commit time in the log entry and lists the
// audit from the log. Opening a format-2 file moves the times over and drops the table.
TEST(SqliteStore, FormatTwoAuditTableBecomesTheLogsCommitTime) {
  TempDir dir;
  const std::string path = dir.file("c.db");
  {
    auto store = open_sqlite(path);
    auto txn = store->begin();
    txn->append_log(log_txn(2, 11, 1), {}, {});
    txn->append_log(log_txn(1, 12, 1), {}, {});
    ASSERT_TRUE(txn->commit().is_ok());
  }
  {  // what a format-2 file looks like: no recorded_at_ms in _log, an _audit row per change
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db,
                     "ALTER TABLE _log DROP COLUMN recorded_at_ms;"
                     "CREATE TABLE _audit (id INTEGER PRIMARY KEY, server_seq INTEGER NOT NULL, "
                     "recorded_at_ms INTEGER NOT NULL, user TEXT NOT NULL, node INTEGER NOT NULL, "
                     "node_seq INTEGER NOT NULL, entity TEXT NOT NULL, record TEXT NOT NULL, op TEXT NOT "
                     "NULL, field TEXT, version_ms INTEGER NOT NULL);"
                     "CREATE INDEX idx_audit_seq ON _audit (server_seq);"
                     "INSERT INTO _audit (server_seq, recorded_at_ms, user, node, node_seq, entity, record, "
                     "op, field, version_ms) VALUES (1, 1111, 'alice', 11, 1, 'account', 'x', 'set', "
                     "'name', 0), (1, 1111, 'alice', 11, 1, 'account', 'y', 'set', 'name', 0), "
                     "(2, 2222, 'alice', 12, 1, 'account', 'z', 'set', 'name', 0);"
                     "UPDATE _state SET value = 2 WHERE key = 'format'",
                     nullptr, nullptr, nullptr),
        SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto store = open_sqlite(path);
  ASSERT_TRUE(store);
  std::vector<SqliteCentralStore::AuditEntry> audit = store->audit(0, 100).value();
  ASSERT_EQ(audit.size(), 3u);
  EXPECT_EQ(audit[0].recorded_at_ms, 1111);
  EXPECT_EQ(audit[1].recorded_at_ms, 1111);
  EXPECT_EQ(audit[2].recorded_at_ms, 2222);
  EXPECT_EQ(audit[2].node, 12u);
  store.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(
      sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name LIKE '%audit%'", -1, &q, nullptr),
      SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), 0) << "the table and its index are gone";
  sqlite3_finalize(q);
  sqlite3_close(db);
}

TEST(SqliteStore, AuditRowsAreWrittenWithTheLogEntry) {
  TempDir dir;
  auto store = open_sqlite(dir.file("c.db"));
  {
    auto txn = store->begin();
    ServerTxn t = log_txn(2, 11, 7);
    t.changes.insert(t.changes.begin(), Change{ChangeOp::kCreate, EntityId::kAccount, rid(100)});
    txn->append_log(t, {}, {});
  }  // dropped: no audit either
  EXPECT_TRUE(store->audit(0, 100).value().empty());
  auto txn = store->begin();
  ServerTxn t = log_txn(1, 11, 7);
  t.changes.insert(t.changes.begin(), Change{ChangeOp::kCreate, EntityId::kAccount, rid(100)});
  txn->append_log(t, {}, {});
  ASSERT_TRUE(txn->commit().is_ok());
  std::vector<SqliteCentralStore::AuditEntry> audit = store->audit(0, 100).value();
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0].op, "create");
  EXPECT_EQ(audit[0].field, "");
  EXPECT_EQ(audit[1].op, "set");
  EXPECT_EQ(audit[1].field, "name");
  EXPECT_EQ(audit[1].entity, "account");
  EXPECT_EQ(audit[1].record, rid(100).to_string());
  EXPECT_EQ(audit[1].user, "alice");
  EXPECT_EQ(audit[1].node, 11u);
  EXPECT_EQ(audit[1].node_seq, 7u);
  EXPECT_EQ(audit[1].server_seq, 1u);
  EXPECT_EQ(audit[1].recorded_at_ms, kStart);
  {
    auto more = store->begin();
    more->append_log(log_txn(3, 12, 1), {}, {});
    ASSERT_TRUE(more->commit().is_ok());
  }
  // Pages hold whole log entries (at least one), so paging by server_seq never skips a change.
  EXPECT_EQ(store->audit(0, 1).value().size(), 2u) << "the first entry, whole";
  EXPECT_EQ(store->audit(0, 4).value().size(), 2u) << "the second entry does not fit";
  EXPECT_EQ(store->audit(0, 5).value().size(), 5u);
  EXPECT_EQ(store->audit(1, 100).value().size(), 3u);
  EXPECT_GT(store->size_bytes(), 0u);
}

TEST(SqliteStore, TypedErrorsOnOpen) {
  TempDir dir;
  auto r = SqliteCentralStore::open(dir.file("missing/dir/c.db"), {});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kStorageIo) << r.status().to_string();

  {
    std::ofstream junk(dir.file("junk.db"), std::ios::binary);
    junk << std::string(8192, 'x');
  }
  r = SqliteCentralStore::open(dir.file("junk.db"), {});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kStorageCorrupt) << r.status().to_string();
}

TEST(SqliteStore, SecondTxnOnOneThreadFailsInsteadOfDeadlocking) {
  TempDir dir;
  auto store = open_sqlite(dir.file("c.db"));
  auto first = store->begin();
  first->save(account(rid(1), "t1"));
  auto second = store->begin();
  second->save(account(rid(2), "t1"));
  EXPECT_EQ(second->commit().code(), ErrorCode::kInternal);
  ASSERT_TRUE(first->commit().is_ok());
  EXPECT_TRUE(store->load(EntityId::kAccount, rid(1)).value().has_value());
  EXPECT_FALSE(store->load(EntityId::kAccount, rid(2)).value().has_value());
}

// The head of the log as another process sees it: a plain read-only connection, which takes no write lock.
uint64_t committed_head(const std::string& path) {
  sqlite3* db = nullptr;
  uint64_t head = 0;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(server_seq), 0) FROM _log", -1, &q, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
      head = static_cast<uint64_t>(sqlite3_column_int64(q, 0));
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  return head;
}

TEST(SqliteStore, SyncMakesGroupCommitsDurable) {
  TempDir dir;
  SqliteCentralStore::Options options;
  options.group_commit = true;
  options.checkpoint_interval_ms = 3'600'000;  // its tick would also end the group
  auto store = std::move(*SqliteCentralStore::open(dir.file("c.db"), options));
  EXPECT_TRUE(store->sync().is_ok()) << "nothing written yet";
  for (int i = 0; i < 3; ++i) {
    auto txn = store->begin();
    txn->append_log(log_txn(1, 11, i + 1), {}, {});
    ASSERT_TRUE(txn->commit().is_ok());
  }
  EXPECT_EQ(store->head_seq().value(), 3u) << "committed and visible before the sync";
  EXPECT_EQ(committed_head(dir.file("c.db")), 0u) << "the group is one SQLite transaction, still open";
  {
    // A sync() from another thread waits for the open transaction (the next group being applied) and makes
    // it part of the group; from the transaction's own thread it is refused (it would commit half of it).
    auto open_txn = store->begin();
    open_txn->append_log(log_txn(1, 11, 4), {}, {});
    EXPECT_EQ(store->sync().code(), ErrorCode::kInternal);
    std::atomic<bool> committed{false}, synced_after_commit{false};
    std::thread flusher([&] {
      EXPECT_TRUE(store->sync().is_ok());
      synced_after_commit = committed.load();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    committed = true;
    ASSERT_TRUE(open_txn->commit().is_ok());
    flusher.join();
    EXPECT_TRUE(synced_after_commit);
    EXPECT_EQ(committed_head(dir.file("c.db")), 4u) << "another connection sees the synced group";
  }
  {
    auto dropped = store->begin();  // a dropped transaction inside a group undoes only itself
    dropped->append_log(log_txn(1, 11, 5), {}, {});
  }
  EXPECT_TRUE(store->commits_need_sync());
  EXPECT_TRUE(store->sync().is_ok());
  store.reset();
  EXPECT_EQ(open_sqlite(dir.file("c.db"))->head_seq().value(), 4u);
  // Without group commit, sync() is a no-op: every commit synced itself.
  EXPECT_FALSE(open_sqlite(dir.file("d.db"))->commits_need_sync());
  EXPECT_TRUE(open_sqlite(dir.file("d.db"))->sync().is_ok());
}

// With group commit the writer never checkpoints (a checkpoint inside a commit stalls every push behind it);
// the store's own thread does, every checkpoint_interval_ms. In WAL mode only a checkpoint writes the
// database file, so its size tells who did.
TEST(SqliteStore, GroupCommitCheckpointsOnItsOwnThreadNotInCommits) {
  auto fill = [](SqliteCentralStore& store) {
    for (int t = 0; t < 40; ++t) {  // ~8 MiB of records: far past SQLite's 1,000-page automatic checkpoint
      auto txn = store.begin();
      for (int i = 0; i < 50; ++i) {
        RecordState r = account(rid(static_cast<uint64_t>(t * 50 + i + 1)), "t-north");
        r.mutable_field(f::kAccountName)->value =
            Value::text(std::string(4000, static_cast<char>('a' + t % 26)));
        txn->save(r);
      }
      ASSERT_TRUE(txn->commit().is_ok());
    }
    ASSERT_TRUE(store.sync().is_ok());
  };
  auto db_size = [](const std::string& path) { return std::filesystem::file_size(path); };
  TempDir dir;
  SqliteCentralStore::Options options;
  options.group_commit = true;
  {
    options.checkpoint_interval_ms = 3'600'000;  // never, within this test
    auto store = std::move(*SqliteCentralStore::open(dir.file("a.db"), options));
    const auto before = db_size(dir.file("a.db"));
    fill(*store);
    EXPECT_EQ(db_size(dir.file("a.db")), before) << "a commit checkpointed";
    EXPECT_EQ(store->record_count().value(), 2000u);
  }
  options.checkpoint_interval_ms = 20;
  auto store = std::move(*SqliteCentralStore::open(dir.file("b.db"), options));
  const auto before = db_size(dir.file("b.db"));
  fill(*store);
  for (int i = 0; i < 200 && db_size(dir.file("b.db")) < before + 4'000'000; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(db_size(dir.file("b.db")), before + 4'000'000) << "the checkpoint thread copied the WAL";
  EXPECT_EQ(store->record_count().value(), 2000u);
}

std::unique_ptr<SqliteCentralStore> open_group_commit(const std::string& path, int checkpoint_interval_ms) {
  SqliteCentralStore::Options options;
  options.group_commit = true;
  options.checkpoint_interval_ms = checkpoint_interval_ms;
  auto r = SqliteCentralStore::open(path, options);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r ? std::move(r.value()) : nullptr;
}

// A group is one SQLite transaction with a SAVEPOINT per CentralTxn: a transaction that fails inside it
// undoes only its own writes, before and after it the group's commits stand.
TEST(SqliteStore, FailedTxnInAGroupUndoesOnlyItself) {
  TempDir dir;
  auto store = open_group_commit(dir.file("c.db"), 3'600'000);
  {
    auto a = store->begin();
    a->set_node_state(NodeState{11, 1});
    EXPECT_EQ(a->append_log(log_txn(1, 11, 1), {}, {}), 1u);
    ASSERT_TRUE(a->commit().is_ok());
  }
  {
    auto b = store->begin();
    b->set_node_state(NodeState{12, 7});
    b->save(account(rid(5), "t1"));
    RecordState unknown = account(rid(6), "t1");
    unknown.entity = static_cast<EntityId>(200);
    b->save(unknown);  // refused: the transaction fails at commit
    EXPECT_EQ(b->commit().code(), ErrorCode::kInvalidArgument);
  }
  {
    auto c = store->begin();
    EXPECT_EQ(c->node_state(12).value().last_node_seq, 0u) << "the failed transaction's writes are undone";
    c->set_node_state(NodeState{13, 1});
    EXPECT_EQ(c->append_log(log_txn(1, 13, 1), {}, {}), 2u);
    ASSERT_TRUE(c->commit().is_ok());
  }
  ASSERT_TRUE(store->sync().is_ok());
  store.reset();
  auto reopened = open_sqlite(dir.file("c.db"));
  EXPECT_EQ(reopened->head_seq().value(), 2u);
  EXPECT_EQ(reopened->node_state(11).value().last_node_seq, 1u);
  EXPECT_EQ(reopened->node_state(12).value().last_node_seq, 0u);
  EXPECT_EQ(reopened->node_state(13).value().last_node_seq, 1u);
  EXPECT_FALSE(reopened->load(EntityId::kAccount, rid(5)).value().has_value());
}

// When SQLite rolls back the whole group by itself (here a trigger's RAISE(ROLLBACK); in production an I/O
// error or a full disk), the group's earlier commits are gone although their commit() returned ok. The store
// must then fail sync() and every later write, so that nothing that showed them is ever acknowledged.
TEST(SqliteStore, LostGroupFailsSyncAndEveryLaterWrite) {
  TempDir dir;
  const std::string path = dir.file("c.db");
  open_sqlite(path).reset();  // creates the tables
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db,
                     "CREATE TRIGGER lose_group BEFORE INSERT ON _rejections WHEN NEW.message = 'poison' "
                     "BEGIN SELECT RAISE(ROLLBACK, 'injected'); END",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = open_group_commit(path, 3'600'000);
  {
    auto a = store->begin();
    EXPECT_EQ(a->append_log(log_txn(1, 11, 1), {}, {}), 1u);
    ASSERT_TRUE(a->commit().is_ok());
  }
  {
    auto b = store->begin();
    b->add_rejection(StoredRejection{12, 1, "bob", ErrorCode::kOutOfScope, "poison"});
    EXPECT_FALSE(b->commit().is_ok());
  }
  {
    auto c = store->begin();  // would otherwise commit on its own, after a's loss, as if nothing happened
    c->append_log(log_txn(1, 13, 1), {}, {});
    EXPECT_EQ(c->commit().code(), ErrorCode::kStorageIo);
  }
  Status synced = store->sync();
  EXPECT_EQ(synced.code(), ErrorCode::kStorageIo) << synced.to_string();
  EXPECT_EQ(store->sync().code(), ErrorCode::kStorageIo) << "stays failed";
  store.reset();
  EXPECT_EQ(open_sqlite(path)->head_seq().value(), 0u) << "the lost group never reached the file";
}

// A group that no sync() ends (a write with nothing to acknowledge) still ends at the next checkpoint tick:
// another process (fieldsync-admin) then sees it and gets SQLite's write lock.
TEST(SqliteStore, CheckpointTickEndsAGroupForOtherProcesses) {
  TempDir dir;
  auto server = open_group_commit(dir.file("c.db"), 20);
  auto admin = open_sqlite(dir.file("c.db"));
  {
    auto txn = server->begin();
    EXPECT_EQ(txn->append_log(log_txn(1, 11, 1), {}, {}), 1u);
    ASSERT_TRUE(txn->commit().is_ok());
  }
  auto txn = admin->begin();  // BEGIN IMMEDIATE waits for the server's group to end
  EXPECT_EQ(txn->append_log(log_txn(1, 12, 1), {}, {}), 2u) << "the admin sees the server's commit";
  ASSERT_TRUE(txn->commit().is_ok());
  EXPECT_EQ(server->head_seq().value(), 2u);
}

// Under continuous load one group begins right after the last one commits, before the checkpoint thread
// copies it, and SQLite only starts a WAL over when a write transaction begins with every frame copied:
// without help the WAL grows for as long as the load lasts. Past wal_restart_bytes the checkpoint runs with
// no group open, and the WAL stays bounded.
TEST(SqliteStore, GroupCommitWalStaysBoundedUnderContinuousWrites) {
  TempDir dir;
  SqliteCentralStore::Options options;
  options.group_commit = true;
  options.checkpoint_interval_ms = 10;
  options.wal_restart_bytes = 1 << 20;
  auto store = std::move(*SqliteCentralStore::open(dir.file("c.db"), options));
  const std::string wal = dir.file("c.db") + "-wal";
  uint64_t id = 1, largest = 0, written = 0;
  for (int t = 0; written < (24u << 20); ++t) {  // 24 times the limit
    auto txn = store->begin();
    for (int i = 0; i < 10; ++i) {
      RecordState r = account(rid(id++), "t-north");
      r.mutable_field(f::kAccountName)->value =
          Value::text(std::string(1000, static_cast<char>('a' + t % 26)));
      txn->save(r);
      written += 1000;
    }
    ASSERT_TRUE(txn->commit().is_ok());
    if (t % 4 == 3) {
      ASSERT_TRUE(store->sync().is_ok());
      std::error_code ec;
      largest = std::max<uint64_t>(largest, std::filesystem::file_size(wal, ec));
    }
  }
  EXPECT_LT(largest, 8u << 20) << "the WAL kept growing";
  EXPECT_EQ(store->record_count().value(), id - 1);
}

TEST(SqliteStore, WriterInAnotherThreadWaitsForTheOpenTxn) {
  TempDir dir;
  auto store = open_sqlite(dir.file("c.db"));
  auto first = store->begin();
  first->append_log(log_txn(1), {}, {});
  std::thread other([&] {
    auto txn = store->begin();  // waits until `first` commits
    EXPECT_EQ(txn->append_log(log_txn(1, 12), {}, {}), 2u);
    EXPECT_TRUE(txn->commit().is_ok());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(first->commit().is_ok());
  other.join();
  EXPECT_EQ(store->head_seq().value(), 2u);
}

TEST(SqliteStore, ConcurrentProcessWriterIsSerialisedBySqlite) {
  TempDir dir;
  auto a = open_sqlite(dir.file("c.db"));
  auto b = open_sqlite(dir.file("c.db"));  // a second process would look the same: another connection pair
  auto ta = a->begin();
  EXPECT_EQ(ta->append_log(log_txn(1), {}, {}), 1u);
  std::thread other([&] {
    auto tb = b->begin();  // BEGIN IMMEDIATE waits on SQLite's lock (busy_timeout)
    EXPECT_EQ(tb->append_log(log_txn(1, 12), {}, {}), 2u) << "server_seq is read under the write lock";
    EXPECT_TRUE(tb->commit().is_ok());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(ta->commit().is_ok());
  other.join();
  EXPECT_EQ(a->head_seq().value(), 2u);
  EXPECT_EQ(b->read_log(0, 10).value().size(), 2u);
}

// Waiting on another writer (fieldsync-admin and the server share central.db) is bounded by busy_timeout_ms:
// the store's own busy handler (it retries every millisecond, where SQLite's backs off to 100 ms sleeps)
// gives up then, and the transaction fails with a typed, retryable error.
TEST(SqliteStore, AWriterLockedOutGivesUpAfterTheBusyTimeout) {
  TempDir dir;
  auto a = open_sqlite(dir.file("c.db"));
  SqliteCentralStore::Options options;
  options.now_ms = [] { return kStart; };
  options.busy_timeout_ms = 150;
  auto b = SqliteCentralStore::open(dir.file("c.db"), options);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  auto ta = a->begin();
  EXPECT_EQ(ta->append_log(log_txn(1), {}, {}), 1u);

  const auto start = std::chrono::steady_clock::now();
  auto tb = (*b)->begin();
  (void)tb->append_log(log_txn(1, 12), {}, {});
  Status s = tb->commit();
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), ErrorCode::kStorageLocked) << s.to_string();
  EXPECT_TRUE(s.retryable());
  EXPECT_GE(waited, std::chrono::milliseconds(140)) << "gave up before the timeout";
  ASSERT_TRUE(ta->commit().is_ok());
  EXPECT_EQ((*b)->head_seq().value(), 1u) << "nothing of the refused transaction";
}

// ---- The sync state machines over both stores

using testing_support::Device;
using testing_support::TokenAuth;

class World {
 public:
  explicit World(CentralStore& store) : store(store) {
    auth.tokens["token-ho"] = Principal{"ho", Role::kHeadOffice, {}, {}};
    auth.tokens["token-alice"] = Principal{"alice", Role::kRep, {"t-north"}, {}};
    auth.tokens["token-bob"] = Principal{"bob", Role::kRep, {"t-north"}, {}};
    auth.tokens["token-carol"] = Principal{"carol", Role::kRep, {"t-south"}, {}};
    server = std::make_unique<SyncServer>(store, auth, ServerConfig{});
  }
  Device& add(NodeId node, UserId user) {
    devices.push_back(std::make_unique<Device>(node, std::move(user)));
    return *devices.back();
  }
  void connect(Device& d) {
    d.session = next_session++;
    server->on_connect(d.session, now);
    d.client->on_connected(now);
    pump();
  }
  void disconnect(Device& d) {
    server->on_disconnect(d.session);
    d.client->on_disconnected(now);
    d.session = 0;
  }
  void pump() {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (auto& d : devices) {
        for (protocol::Message& m : d->client->take_outgoing()) {
          moved = true;
          if (d->session != 0) server->on_message(d->session, m, now);
        }
        d->client->take_events();
      }
      for (SyncServer::Outgoing& o : server->take_outgoing()) {
        moved = true;
        for (auto& d : devices)
          if (d->session == o.session) d->client->on_message(o.message, now);
      }
      server->take_closing();
      if (!moved) return;
    }
    FAIL() << "messages still moving";
  }

  CentralStore& store;
  TokenAuth auth;
  std::unique_ptr<SyncServer> server;
  std::vector<std::unique_ptr<Device>> devices;
  SessionId next_session = 1;
  int64_t now = kStart;
};

Change create(EntityId e, RecordId id) {
  return Change{ChangeOp::kCreate, e, id};
}
Change set(EntityId e, RecordId id, uint16_t field, Value val) {
  Change c{ChangeOp::kSet, e, id, field};
  c.value = std::move(val);
  return c;
}

std::vector<RecordState> all_records(CentralStore& s) {
  std::vector<RecordState> out;
  RecordKey after;
  for (;;) {
    std::vector<RecordState> chunk = s.scan(after, 100).value();
    if (chunk.empty()) return out;
    after = RecordKey{chunk.back().entity, chunk.back().id};
    for (RecordState& r : chunk) out.push_back(std::move(r));
  }
}

std::vector<RecordState> replica_records(Device& d) {
  std::vector<RecordState> out;
  for (auto& [k, r] : d.store.records()) out.push_back(r);
  return out;
}

// A short scripted day: two reps and head office edit offline (the same account, overlapping events, a
// rejected write), then reconnect. Returns a digest of everything the server stored.
struct Outcome {
  std::vector<ServerTxn> log;
  std::vector<ConflictRecord> conflicts;
  std::vector<RecordState> records;
  std::string alice_json, bob_json, carol_json;
};

Outcome run_day(CentralStore& store) {
  World w(store);
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  Device& ho = w.add(14, "ho");
  w.connect(alice);
  w.connect(bob);
  w.connect(carol);
  w.connect(ho);

  RecordId acct = alice.ids.next(w.now);
  EXPECT_TRUE(
      alice.client
          ->write({create(EntityId::kAccount, acct), set(EntityId::kAccount, acct, 1, Value::text("Bakery")),
                   set(EntityId::kAccount, acct, 2, Value::text("t-north")),
                   set(EntityId::kAccount, acct, 10, Value::text("alice"))},
                  w.now)
          .is_ok());
  w.pump();
  w.disconnect(alice);
  w.disconnect(bob);
  w.now += 1000;
  // Concurrent edits of the same field offline.
  EXPECT_TRUE(alice.client->write({set(EntityId::kAccount, acct, 5, Value::text("+49 1"))}, w.now).is_ok());
  EXPECT_TRUE(bob.client->write({set(EntityId::kAccount, acct, 5, Value::text("+49 2"))}, w.now + 5).is_ok());
  // Overlapping events of alice.
  for (int i = 0; i < 2; ++i) {
    RecordId ev = alice.ids.next(w.now);
    EXPECT_TRUE(
        alice.client
            ->write({create(EntityId::kCalendarEvent, ev),
                     set(EntityId::kCalendarEvent, ev, 1, Value::text("alice")),
                     set(EntityId::kCalendarEvent, ev, 3, Value::text("Visit")),
                     set(EntityId::kCalendarEvent, ev, 4, Value::integer(kStart + 3'600'000 + i * 600'000)),
                     set(EntityId::kCalendarEvent, ev, 5, Value::integer(kStart + 7'200'000)),
                     set(EntityId::kCalendarEvent, ev, 6, Value::text("scheduled"))},
                    w.now + 10 + i)
            .is_ok());
  }
  // A rep may not move an account to another territory: rejected whole.
  EXPECT_TRUE(
      bob.client->write({set(EntityId::kAccount, acct, 2, Value::text("t-south"))}, w.now + 20).is_ok());
  w.now += 1000;
  w.connect(bob);
  w.connect(alice);
  // Head office moves the account to carol's territory: it enters her device and leaves alice's and bob's.
  EXPECT_TRUE(ho.client->write({set(EntityId::kAccount, acct, 2, Value::text("t-south"))}, w.now).is_ok());
  w.pump();
  for (int i = 0; i < 3; ++i) {
    w.now += tuning::kIdlePullIntervalMs + 1;
    for (auto& d : w.devices) d->client->on_tick(w.now);
    w.pump();
  }

  Outcome out;
  out.log = store.read_log(0, 1'000'000).value();
  out.conflicts = store.read_conflicts(0, store.head_seq().value()).value();
  out.records = all_records(store);
  out.alice_json = canonical_json(replica_records(alice));
  out.bob_json = canonical_json(replica_records(bob));
  out.carol_json = canonical_json(replica_records(carol));
  EXPECT_EQ(store.record_count().value(), std::count_if(out.records.begin(), out.records.end(),
                                                        [](const RecordState& r) { return !r.deleted; }));
  return out;
}

TEST(SqliteStore, SyncRoundTripMatchesTheMemoryStore) {
  MemoryCentralStore memory;
  Outcome expected = run_day(memory);
  TempDir dir;
  auto sqlite = open_sqlite(dir.file("c.db"));
  Outcome got = run_day(*sqlite);

  ASSERT_GE(expected.log.size(), 5u);
  EXPECT_GE(expected.conflicts.size(), 2u) << "a concurrent write and a scheduling overlap";
  EXPECT_EQ(got.log, expected.log);
  EXPECT_EQ(got.conflicts, expected.conflicts);
  EXPECT_EQ(got.records, expected.records);
  EXPECT_EQ(got.alice_json, expected.alice_json);
  EXPECT_EQ(got.bob_json, expected.bob_json);
  EXPECT_EQ(got.carol_json, expected.carol_json);
  EXPECT_NE(got.carol_json.find("+49"), std::string::npos) << "the moved account reached carol";
  EXPECT_EQ(got.bob_json.find("Bakery"), std::string::npos) << "and left bob";
  EXPECT_EQ(sqlite->rejections().value().size(), 1u);
  EXPECT_EQ(sqlite->rejections().value()[0].user, "bob") << "a rep may not move an account";
  // The replicas hold what the server holds for them.
}

// ---- Durability: kill -9 while pushing

constexpr NodeId kPusher = 77;

ClientTxn numbered_txn(uint64_t node_seq) {
  ClientTxn t;
  t.node = kPusher;
  t.node_seq = node_seq;
  t.created_at_ms = kStart;
  RecordId id{0x0190000000007000ULL + node_seq, 0x9000000000000000ULL + node_seq};
  Hlc base = make_hlc(kStart + static_cast<int64_t>(node_seq), 0);
  auto add = [&](Change c) {
    c.version = Version{base + t.changes.size(), kPusher};
    t.changes.push_back(std::move(c));
  };
  add(create(EntityId::kAccount, id));
  add(set(EntityId::kAccount, id, 1, Value::text("Account " + std::to_string(node_seq))));
  add(set(EntityId::kAccount, id, 2, Value::text("t-north")));
  add(set(EntityId::kAccount, id, 10, Value::text("alice")));
  return t;
}

class PusherAuth final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello&, int64_t) override {
    return Principal{"alice", Role::kRep, {"t-north"}, {}};
  }
};

// Connects a session for kPusher and returns its id.
SessionId hello(SyncServer& server, int64_t now) {
  server.on_connect(1, now);
  protocol::Hello h;
  h.schema_version = schema::kSchemaVersion;
  h.node = kPusher;
  h.token = "t";
  h.client_time_ms = now;
  server.on_message(1, h, now);
  server.take_outgoing();
  return 1;
}

std::vector<protocol::TxnResult> push(SyncServer& server, SessionId session, std::vector<ClientTxn> txns,
                                      int64_t now) {
  protocol::PushTxns p;
  p.request_id = txns.front().node_seq;
  p.txns = std::move(txns);
  server.on_message(session, p, now);
  std::vector<protocol::TxnResult> out;
  for (SyncServer::Outgoing& o : server.take_outgoing())
    if (auto* ack = std::get_if<protocol::PushAck>(&o.message)) out = ack->results;
  return out;
}

[[noreturn]] void pusher_child(const std::string& path, int fd, bool group_commit) {
  SqliteCentralStore::Options options;
  options.group_commit = group_commit;
  auto opened = SqliteCentralStore::open(path, options);
  if (!opened) _exit(3);
  PusherAuth auth;
  SyncServer server(**opened, auth, ServerConfig{});
  const int64_t now = kStart + 10'000'000;
  SessionId session = hello(server, now);
  for (uint64_t seq = 1; seq <= 100'000; seq += 2) {
    // Two transactions per push, so the kill can land between the two commits of one push too.
    std::vector<protocol::TxnResult> results =
        push(server, session, {numbered_txn(seq), numbered_txn(seq + 1)}, now);
    // Group commit: the acks are held until one sync() covers both commits.
    if (group_commit && !(*opened)->sync().is_ok()) _exit(6);
    for (const protocol::TxnResult& r : results) {
      if (r.outcome != protocol::TxnOutcome::kApplied) _exit(4);
      // The ack exists only after the commit returned: report it as acknowledged.
      if (write(fd, &r.node_seq, sizeof r.node_seq) != sizeof r.node_seq) _exit(5);
    }
  }
  _exit(0);
}

class KillNine : public testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(SqliteStore, KillNine, testing::Bool(),
                         [](const auto& info) { return info.param ? "GroupCommit" : "CommitEach"; });

TEST_P(KillNine, LosesNoAcknowledgedWrite) {
  const bool group_commit = GetParam();
  std::mt19937_64 rng(std::random_device{}());
  for (int round = 0; round < 3; ++round) {
    TempDir dir;
    const std::string path = dir.file("central.db");
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(fds[0]);
      pusher_child(path, fds[1], group_commit);
    }
    close(fds[1]);
    // The kill lands at a random moment after the first acknowledgement (a loaded machine may take a while
    // to get there, so wait for it rather than for a fixed time).
    std::vector<uint64_t> acked;
    uint64_t seq;
    pollfd first{fds[0], POLLIN, 0};
    ASSERT_EQ(poll(&first, 1, 60'000), 1) << "no acknowledgement within a minute";
    ASSERT_EQ(read(fds[0], &seq, sizeof seq), static_cast<ssize_t>(sizeof seq));
    acked.push_back(seq);
    const auto kill_after = std::chrono::milliseconds(rng() % 400);
    std::this_thread::sleep_for(kill_after);
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child ended on its own with " << status;
    while (read(fds[0], &seq, sizeof seq) == sizeof seq) acked.push_back(seq);
    close(fds[0]);

    auto store = open_sqlite(path);
    ASSERT_TRUE(store);
    std::map<uint64_t, int> in_log;
    for (const ServerTxn& t : store->read_log(0, 10'000'000).value()) {
      EXPECT_EQ(t.origin_node, kPusher);
      in_log[t.origin_node_seq]++;
    }
    for (uint64_t s : acked) EXPECT_EQ(in_log[s], 1) << "acknowledged txn " << s << " round " << round;
    for (auto& [s, n] : in_log) EXPECT_EQ(n, 1) << "txn " << s << " applied " << n << " times";
    const uint64_t watermark = store->begin()->node_state(kPusher).value().last_node_seq;
    EXPECT_GE(watermark, acked.back());
    EXPECT_EQ(watermark, in_log.rbegin()->first) << "watermark and log committed together";
    for (uint64_t s : acked)
      EXPECT_TRUE(store->load(EntityId::kAccount, numbered_txn(s).changes[0].record).value());

    // The device re-sends everything it saw acknowledged (say it missed the acks): all duplicates.
    PusherAuth auth;
    SyncServer server(*store, auth, ServerConfig{});
    const int64_t now = kStart + 20'000'000;
    SessionId session = hello(server, now);
    const uint64_t head = store->head_seq().value();
    for (size_t i = 0; i < acked.size(); i += 32) {
      std::vector<ClientTxn> batch;
      for (size_t j = i; j < std::min(acked.size(), i + 32); ++j) batch.push_back(numbered_txn(acked[j]));
      for (const protocol::TxnResult& r : push(server, session, batch, now))
        EXPECT_EQ(r.outcome, protocol::TxnOutcome::kDuplicate) << r.node_seq;
    }
    EXPECT_EQ(store->head_seq().value(), head);
    // And the next new one applies at once after the watermark.
    std::vector<protocol::TxnResult> next = push(server, session, {numbered_txn(watermark + 1)}, now);
    ASSERT_EQ(next.size(), 1u);
    EXPECT_EQ(next[0].outcome, protocol::TxnOutcome::kApplied);
    EXPECT_EQ(next[0].server_seq, head + 1);
  }
}

// Applied transactions per second through SyncServer with synchronous=FULL (every commit is an fsync).
class Throughput : public testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(SqliteStore, Throughput, testing::Bool(),
                         [](const auto& info) { return info.param ? "GroupCommit" : "CommitEach"; });

TEST_P(Throughput, AppliedTxnsPerSecond) {
  const bool group_commit = GetParam();
  TempDir dir;
  SqliteCentralStore::Options options;
  options.group_commit = group_commit;
  auto store = std::move(*SqliteCentralStore::open(dir.file("central.db"), options));
  PusherAuth auth;
  SyncServer server(*store, auth, ServerConfig{});
  const int64_t now = kStart + 10'000'000;
  SessionId session = hello(server, now);
  constexpr uint64_t kTxns = 400;
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t seq = 1; seq <= kTxns; seq += 8) {
    std::vector<ClientTxn> batch;
    for (uint64_t s = seq; s < seq + 8; ++s) batch.push_back(numbered_txn(s));
    for (const protocol::TxnResult& r : push(server, session, batch, now))
      ASSERT_EQ(r.outcome, protocol::TxnOutcome::kApplied);
    ASSERT_TRUE(store->sync().is_ok());  // one fsync per push of 8 (a no-op when every commit synced itself)
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double per_sec = kTxns / secs;
  std::printf("[ figures  ] SqliteCentralStore, %s: %.0f applied txns/s (%.0f changes/s), %.2f ms/txn\n",
              group_commit ? "group commit, one sync() per push of 8" : "synchronous=FULL, fsync per commit",
              per_sec, per_sec * 4, 1000 * secs / kTxns);
  RecordProperty("applied_txns_per_sec", static_cast<int>(per_sec));
  EXPECT_EQ(store->head_seq().value(), kTxns);
}

// A bootstrap page is a range of one index in page order for every scope key: never a sort of the whole
// territory (SQLite's "USE TEMP B-TREE FOR ORDER BY" read every record of the territory for each page).
TEST(SqliteStore, BootstrapPageQueriesNeedNoSort) {
  TempDir dir;
  auto store = open_sqlite(dir.file("central.db"));
  ASSERT_TRUE(store);
  const ScopeKey global{ScopeKey::Kind::kGlobal, {}}, alice{ScopeKey::Kind::kOwner, "alice"};
  std::vector<std::string> plan =
      store->scan_in_scopes_plan({global, territory("t1"), territory("t2"), alice}).value();
  ASSERT_FALSE(plan.empty());
  bool account_by_index = false;
  for (const std::string& step : plan) {
    EXPECT_EQ(step.find("TEMP B-TREE"), std::string::npos) << step;
    EXPECT_EQ(step.find("SCAN account"), std::string::npos) << step;
    account_by_index |= step.rfind("account: SEARCH account USING INDEX idx_scan_account", 0) == 0;
  }
  EXPECT_TRUE(account_by_index) << "account pages come from (territory_id, id)";
}

}  // namespace
}  // namespace fieldsync

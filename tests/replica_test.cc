// SqliteReplicaStore: the ReplicaStore contract, persistence, the format migration from a frozen format-1
// file, typed storage errors (corrupt, read-only, locked, full) with nothing half-written, SyncClient over a
// real file, and a kill -9 crash-safety loop.
#include "fieldsync/client/sqlite_replica.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/sync/client.h"
#include "fieldsync/sync/server.h"
#include "support/memory_store.h"
#ifdef FIELDSYNC_HAVE_SERVER
#include "fieldsync/server/sqlite_store.h"
#endif

namespace fieldsync::client {
namespace {

namespace fs = std::filesystem;
namespace f = schema::fields;
using schema::EntityId;

constexpr int64_t kStart = 1'760'000'000'000;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "replica_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::unique_ptr<SqliteReplicaStore> open_ok(const std::string& path, SqliteReplicaStore::Options o = {}) {
  auto r = SqliteReplicaStore::open(path, o);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r ? std::move(r).value() : nullptr;
}

RecordState account(RecordId id, const std::string& name, Hlc hlc = 100) {
  RecordState r;
  r.entity = EntityId::kAccount;
  r.id = id;
  r.created = Version{hlc, 7};
  FieldState* n = r.mutable_field(f::kAccountName);
  n->value = Value::text(name);
  n->version = Version{hlc, 7};
  n->user = "alice";
  FieldState* t = r.mutable_field(f::kAccountTerritory);
  t->value = Value::text("t-north");
  t->version = Version{hlc, 7};
  t->user = "alice";
  return r;
}

Change create(EntityId e, RecordId id) {
  return Change{ChangeOp::kCreate, e, id};
}
Change set(EntityId e, RecordId id, uint16_t field, Value v) {
  Change c{ChangeOp::kSet, e, id, field};
  c.value = std::move(v);
  return c;
}

ClientTxn outbox_txn(uint64_t seq, RecordId id) {
  ClientTxn t;
  t.node = 7;
  t.node_seq = seq;
  t.created_at_ms = kStart + static_cast<int64_t>(seq);
  Change c = set(EntityId::kAccount, id, f::kAccountName, Value::text("n" + std::to_string(seq)));
  c.version = Version{1000 + seq, 7};
  t.changes.push_back(c);
  return t;
}

// Raw access to a file with a second connection (what another process or a careless tool would do).
struct RawDb {
  explicit RawDb(const std::string& path) { EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK); }
  ~RawDb() { sqlite3_close(db); }
  int exec(const std::string& sql) { return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr); }
  int64_t scalar(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
      v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
  }
  sqlite3* db = nullptr;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RecordIdGenerator& ids() {
  static RecordIdGenerator gen(42);
  return gen;
}

// ---- The ReplicaStore contract
// ------------------------------------------------------------------------------

TEST(SqliteReplica, NewFileHasFormatAndRandomNode) {
  TempDir dir;
  auto a = open_ok(dir.file("a.db"));
  auto b = open_ok(dir.file("b.db"));
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->node(), 0u);
  EXPECT_NE(a->node(), b->node());
  EXPECT_EQ(a->begin()->meta().node, a->node());
  EXPECT_EQ(a->begin()->meta().next_node_seq, 1u);
  int64_t version = 0;
  ASSERT_TRUE(a->read([&](sqlite3* db) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr);
    sqlite3_step(s);
    version = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return Status::ok();
  }));
  EXPECT_EQ(version, SqliteReplicaStore::kFormatVersion);
}

TEST(SqliteReplica, SaveLoadEraseAndTypedColumns) {
  TempDir dir;
  SqliteReplicaStore::Options o;
  o.node = 7;
  auto store = open_ok(dir.file("r.db"), o);
  ASSERT_TRUE(store);
  const RecordId id = ids().next(kStart);
  RecordState rec = account(id, "Acme");
  FieldState* notes = rec.mutable_field(9);
  notes->fragments.push_back(Fragment{Version{5, 7}, "alice", "first"});
  notes->value = Value::text("first");
  notes->version = Version{5, 7};
  {
    auto txn = store->begin();
    EXPECT_FALSE(txn->load(EntityId::kAccount, id).has_value());
    txn->save(rec);
    EXPECT_EQ(txn->load(EntityId::kAccount, id), rec);  // a transaction sees its own writes
    ASSERT_TRUE(txn->commit());
  }
  EXPECT_EQ(store->begin()->load(EntityId::kAccount, id), rec);
  // The typed projection the API queries.
  std::string name, territory;
  int64_t deleted = -1;
  ASSERT_TRUE(store->read([&](sqlite3* db) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT name, territory_id, _deleted FROM account WHERE id = ?", -1, &s, nullptr);
    const std::string key = id.to_string();
    sqlite3_bind_text(s, 1, key.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) != SQLITE_ROW) return Status(ErrorCode::kInternal, "no row");
    name = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    territory = reinterpret_cast<const char*>(sqlite3_column_text(s, 1));
    deleted = sqlite3_column_int64(s, 2);
    sqlite3_finalize(s);
    return Status::ok();
  }));
  EXPECT_EQ(name, "Acme");
  EXPECT_EQ(territory, "t-north");
  EXPECT_EQ(deleted, 0);

  // Tombstone: _deleted set, state kept.
  rec.deleted = true;
  rec.deleted_version = Version{200, 7};
  {
    auto txn = store->begin();
    txn->save(rec);
    ASSERT_TRUE(txn->commit());
  }
  EXPECT_TRUE(store->begin()->load(EntityId::kAccount, id)->deleted);
  {
    auto txn = store->begin();
    txn->erase(EntityId::kAccount, id);
    EXPECT_FALSE(txn->load(EntityId::kAccount, id).has_value());
    ASSERT_TRUE(txn->commit());
  }
  EXPECT_FALSE(store->begin()->load(EntityId::kAccount, id).has_value());
  auto all = store->records();
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->empty());
}

TEST(SqliteReplica, OutboxOrderPeekRemoveSize) {
  TempDir dir;
  auto store = open_ok(dir.file("r.db"));
  ASSERT_TRUE(store);
  const RecordId id = ids().next(kStart);
  {
    auto txn = store->begin();
    for (uint64_t seq : {3, 1, 2, 5}) txn->outbox_append(outbox_txn(seq, id));
    EXPECT_EQ(txn->outbox_size(), 4u);
    ASSERT_TRUE(txn->commit());
  }
  {
    auto txn = store->begin();
    std::vector<ClientTxn> two = txn->outbox_peek(2);
    ASSERT_EQ(two.size(), 2u);
    EXPECT_EQ(two[0], outbox_txn(1, id));
    EXPECT_EQ(two[1].node_seq, 2u);
    std::vector<ClientTxn> all = txn->outbox_peek(SIZE_MAX);
    ASSERT_EQ(all.size(), 4u);
    EXPECT_EQ(all[3].node_seq, 5u);
    EXPECT_TRUE(txn->outbox_peek(0).empty());
    txn->outbox_remove(1);
    txn->outbox_remove(3);
    txn->outbox_remove(99);  // absent: no-op
    EXPECT_EQ(txn->outbox_size(), 2u);
    ASSERT_TRUE(txn->commit());
  }
  auto txn = store->begin();
  std::vector<ClientTxn> left = txn->outbox_peek(10);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].node_seq, 2u);
  EXPECT_EQ(left[1].node_seq, 5u);
}

// What the client's push path reads: a range after a node_seq (never the whole outbox), one entry, and a
// removal that says whether the entry was there. The SQLite replica and the memory one agree, within a
// transaction too (its own appends and removals count).
void check_outbox_ranges(ReplicaStore& store, const RecordId& id) {
  {
    auto txn = store.begin();
    for (uint64_t seq : {3, 1, 2, 5, 8}) txn->outbox_append(outbox_txn(seq, id));
    ASSERT_TRUE(txn->commit());
  }
  auto seqs = [](const std::vector<ClientTxn>& txns) {
    std::vector<uint64_t> out;
    for (const ClientTxn& t : txns) out.push_back(t.node_seq);
    return out;
  };
  auto txn = store.begin();
  EXPECT_EQ(seqs(txn->outbox_after(0, 2)), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(seqs(txn->outbox_after(2, 10)), (std::vector<uint64_t>{3, 5, 8}));
  EXPECT_EQ(seqs(txn->outbox_after(4, 1)), (std::vector<uint64_t>{5}));
  EXPECT_TRUE(txn->outbox_after(8, 10).empty());
  EXPECT_TRUE(txn->outbox_after(0, 0).empty());
  ASSERT_TRUE(txn->outbox_get(5).has_value());
  EXPECT_EQ(*txn->outbox_get(5), outbox_txn(5, id));
  EXPECT_FALSE(txn->outbox_get(4).has_value());
  EXPECT_TRUE(txn->outbox_remove(3));
  EXPECT_FALSE(txn->outbox_remove(3)) << "already removed in this transaction";
  EXPECT_FALSE(txn->outbox_remove(99));
  txn->outbox_append(outbox_txn(9, id));
  EXPECT_FALSE(txn->outbox_get(3).has_value());
  EXPECT_EQ(seqs(txn->outbox_after(2, 10)), (std::vector<uint64_t>{5, 8, 9}));
  ASSERT_TRUE(txn->commit());
  EXPECT_EQ(seqs(store.begin()->outbox_after(0, 10)), (std::vector<uint64_t>{1, 2, 5, 8, 9}));
}

TEST(SqliteReplica, OutboxRangesAndRemovalsThatSayWhatWasThere) {
  TempDir dir;
  auto store = open_ok(dir.file("r.db"));
  ASSERT_TRUE(store);
  check_outbox_ranges(*store, ids().next(kStart));
  MemoryReplicaStore memory(7);
  check_outbox_ranges(memory, ids().next(kStart));
}

TEST(SqliteReplica, MetaConflictsRejections) {
  TempDir dir;
  auto store = open_ok(dir.file("r.db"));
  ASSERT_TRUE(store);
  ReplicaMeta m = store->begin()->meta();
  m.hlc = 123456789;
  m.next_node_seq = 42;
  m.cursor = 17;
  m.bootstrap_done = true;
  m.bootstrap_snapshot_seq = 9;
  m.bootstrap_page_token = "page\x01token";
  m.bootstrap_total = 1000;
  m.bootstrap_received = 500;
  ConflictRecord c;
  c.server_seq = 17;
  c.entity = EntityId::kAccount;
  c.record = ids().next(kStart);
  c.field = f::kAccountName;
  c.winner = ConflictSide{Value::text("B"), Version{10, 2}, "bob"};
  c.loser = ConflictSide{Value::text("A"), Version{9, 1}, "alice"};
  c.rule = "last_writer_wins";
  Rejection r;
  r.node_seq = 4;
  r.reason = ErrorCode::kServerOwnedField;
  r.message = "credit_limit_cents is owned by head office";
  r.changes = outbox_txn(4, c.record).changes;
  {
    auto txn = store->begin();
    txn->set_meta(m);
    EXPECT_EQ(txn->meta(), m);
    txn->add_conflict(c);
    txn->add_rejection(r);
    ASSERT_TRUE(txn->commit());
  }
  EXPECT_EQ(store->begin()->meta(), m);
  auto cs = store->conflicts();
  ASSERT_TRUE(cs);
  ASSERT_EQ(cs->size(), 1u);
  EXPECT_EQ((*cs)[0], c);
  auto rs = store->rejections();
  ASSERT_TRUE(rs);
  ASSERT_EQ(rs->size(), 1u);
  EXPECT_EQ((*rs)[0], r);
}

TEST(SqliteReplica, DestroyWithoutCommitRollsBackEverything) {
  TempDir dir;
  auto store = open_ok(dir.file("r.db"));
  ASSERT_TRUE(store);
  const RecordId id = ids().next(kStart);
  const ReplicaMeta before = store->begin()->meta();
  {
    auto txn = store->begin();
    txn->save(account(id, "gone"));
    txn->outbox_append(outbox_txn(1, id));
    ReplicaMeta m = before;
    m.next_node_seq = 2;
    txn->set_meta(m);
    txn->add_conflict(ConflictRecord{});
    txn->add_rejection(Rejection{});
  }
  auto txn = store->begin();
  EXPECT_FALSE(txn->load(EntityId::kAccount, id).has_value());
  EXPECT_EQ(txn->outbox_size(), 0u);
  EXPECT_EQ(txn->meta(), before);
  txn.reset();
  EXPECT_TRUE(store->conflicts()->empty());
  EXPECT_TRUE(store->rejections()->empty());
}

TEST(SqliteReplica, ReopenKeepsEverythingAndTheNode) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  const RecordId id = ids().next(kStart);
  NodeId node = 0;
  ReplicaMeta m;
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    node = store->node();
    auto txn = store->begin();
    txn->save(account(id, "kept"));
    txn->outbox_append(outbox_txn(1, id));
    m = txn->meta();
    m.next_node_seq = 2;
    // At or above the outbox entry's HLC (1001), as SyncClient keeps it: since format 5, meta() never reads
    // a clock or a next node_seq below what the newest outbox entry implies.
    m.hlc = 5000;
    txn->set_meta(m);
    ASSERT_TRUE(txn->commit());
  }
  auto store = open_ok(path);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->node(), node);
  auto txn = store->begin();
  EXPECT_EQ(txn->meta(), m);
  EXPECT_EQ(txn->load(EntityId::kAccount, id), account(id, "kept"));
  EXPECT_EQ(txn->outbox_peek(5).size(), 1u);
  txn.reset();
  // Asking for another node than the file's is a mistake, not a silent re-identification.
  SqliteReplicaStore::Options o;
  o.node = node + 1;
  store.reset();
  auto other = SqliteReplicaStore::open(path, o);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.status().code(), ErrorCode::kInvalidArgument);
  SqliteReplicaStore::Options no_create;
  no_create.create_if_missing = false;
  auto missing = SqliteReplicaStore::open(dir.file("missing.db"), no_create);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.status().code(), ErrorCode::kStorageIo);
  EXPECT_NE(missing.status().message().find("missing.db"), std::string::npos) << missing.status().message();
}

TEST(SqliteReplica, InboxListingUsesItsIndex) {
  TempDir dir;
  auto store = open_ok(dir.file("r.db"));
  ASSERT_TRUE(store);
  std::string plan;
  ASSERT_TRUE(store->read([&](sqlite3* db) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "EXPLAIN QUERY PLAN SELECT id FROM _conflicts WHERE seen = 0 ORDER BY id DESC", -1,
                       &s, nullptr);
    while (sqlite3_step(s) == SQLITE_ROW) plan += reinterpret_cast<const char*>(sqlite3_column_text(s, 3));
    sqlite3_finalize(s);
    return Status::ok();
  }));
  EXPECT_NE(plan.find("_conflicts_by_seen"), std::string::npos) << plan;
}

TEST(SqliteReplicaDeathTest, SecondTransactionOnTheSameThreadAbortsInsteadOfHanging) {
  TempDir dir;
  auto store = open_ok(dir.file("r.db"));
  ASSERT_TRUE(store);
  EXPECT_DEATH(
      {
        auto first = store->begin();
        auto second = store->begin();
      },
      "holds one of its transactions");
  // After commit() the transaction no longer holds the store (SyncClient relies on this).
  auto first = store->begin();
  ASSERT_TRUE(first->commit());
  auto second = store->begin();
  ASSERT_TRUE(second->commit());
  second.reset();
  EXPECT_EQ(first->meta().node, store->node());  // a finished transaction still reads (taking the lock again)
}

// ---- Migration
// ----------------------------------------------------------------------------------------------

std::string make_v1(const TempDir& dir, const std::string& extra_sql = {}) {
  const std::string path = dir.file("v1.db");
  const std::string sql = slurp(std::string(FIELDSYNC_FIXTURES_DIR) + "/replica_v1.sql");
  EXPECT_FALSE(sql.empty());
  RawDb raw(path);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(raw.db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  if (!extra_sql.empty()) {
    EXPECT_EQ(raw.exec(extra_sql), SQLITE_OK);
  }
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), 1);
  return path;
}

TEST(SqliteReplicaMigration, FormatOneFileMigratesInPlaceKeepingTheOutbox) {
  TempDir dir;
  const std::string path = make_v1(dir);
  const NodeId node = 0x51f0c0ffee000001ull;
  const RecordId acc = *RecordId::parse("0199a2b4-6c00-7000-8000-000000000001");
  const RecordId con = *RecordId::parse("0199a2b4-6c00-7001-8000-000000000002");
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->node(), node);
    auto txn = store->begin();
    ReplicaMeta m = txn->meta();
    EXPECT_EQ(m.next_node_seq, 4u);
    EXPECT_EQ(m.cursor, 7u);
    EXPECT_TRUE(m.bootstrap_done);
    std::vector<ClientTxn> outbox = txn->outbox_peek(SIZE_MAX);
    ASSERT_EQ(outbox.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(outbox[i].node_seq, i + 1);
      EXPECT_EQ(outbox[i].node, node);
    }
    std::optional<RecordState> a = txn->load(EntityId::kAccount, acc);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->get(f::kAccountName), Value::text("Müller's Bäckerei"));
    EXPECT_EQ(a->get(5), Value::text("+49 30 1234"));
    std::optional<RecordState> c = txn->load(EntityId::kContact, con);
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->get(6), Value::boolean(true));
    ASSERT_TRUE(txn->commit());
    txn.reset();
    auto conflicts = store->conflicts();
    ASSERT_TRUE(conflicts) << conflicts.status().to_string();
    ASSERT_EQ(conflicts->size(), 1u);
    EXPECT_EQ((*conflicts)[0].loser.value, Value::text("Potsdam"));
    auto rejections = store->rejections();
    ASSERT_TRUE(rejections) << rejections.status().to_string();
    ASSERT_EQ(rejections->size(), 1u);
    EXPECT_EQ((*rejections)[0].reason, ErrorCode::kServerOwnedField);

    // Format 2's inbox: everything migrated is unread; marking it read sticks.
    ASSERT_TRUE(store->mark_conflicts_seen(INT64_MAX));
    int64_t unread_conflicts = -1, unread_rejections = -1;
    ASSERT_TRUE(store->read([&](sqlite3* db) {
      sqlite3_stmt* s = nullptr;
      sqlite3_prepare_v2(db,
                         "SELECT (SELECT count(*) FROM _conflicts WHERE seen = 0), "
                         "(SELECT count(*) FROM _rejections WHERE seen = 0)",
                         -1, &s, nullptr);
      sqlite3_step(s);
      unread_conflicts = sqlite3_column_int64(s, 0);
      unread_rejections = sqlite3_column_int64(s, 1);
      sqlite3_finalize(s);
      return Status::ok();
    }));
    EXPECT_EQ(unread_conflicts, 0);
    EXPECT_EQ(unread_rejections, 1);

    // The migrated replica keeps working: the next local write continues the node's sequence.
    ClientConfig cfg;
    cfg.user = "alice";
    SyncClient client(*store, cfg);
    Result<uint64_t> seq =
        client.write({set(EntityId::kAccount, acc, 4, Value::text("Berlin"))}, kStart + 5000);
    ASSERT_TRUE(seq) << seq.status().to_string();
    EXPECT_EQ(*seq, 4u);
  }
  RawDb raw(path);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), SqliteReplicaStore::kFormatVersion);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM _outbox"), 4);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM sqlite_schema WHERE name = '_conflicts_by_seen'"), 1);
}

TEST(SqliteReplicaMigration, FormatTwoFileMigratesToThreeKeepingOutboxAndInbox) {
  TempDir dir;
  const std::string path = dir.file("v2.db");
  {
    const std::string sql = slurp(std::string(FIELDSYNC_FIXTURES_DIR) + "/replica_v2.sql");
    ASSERT_FALSE(sql.empty());
    RawDb raw(path);
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(raw.db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    ASSERT_EQ(raw.scalar("PRAGMA user_version"), 2);
  }
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    auto txn = store->begin();
    ReplicaMeta m = txn->meta();
    EXPECT_EQ(m.next_node_seq, 4u);
    EXPECT_EQ(m.cursor, 7u);
    EXPECT_EQ(m.last_synced_ms, 0);  // never fully synced as far as format 2 knew
    EXPECT_EQ(txn->outbox_peek(SIZE_MAX).size(), 3u);
    m.last_synced_ms = kStart + 42;
    txn->set_meta(m);
    ASSERT_TRUE(txn->commit());
  }
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->begin()->meta().last_synced_ms, kStart + 42);
  }
  RawDb raw(path);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), SqliteReplicaStore::kFormatVersion);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM _outbox"), 3);
  // The inbox state format 2 kept (its one rejection read, the conflict unread) is untouched.
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM _rejections WHERE seen = 1"), 1);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM _conflicts WHERE seen = 0"), 1);
}

// The last replica of model schema 2 (tests/fixtures/replica_schema2.sql, written by the library at e29be63):
// the schema-3 library migrates it in place in one open, keeps its records, outbox and unsynced writes, and
// knows it must be backfilled with what schema 3 added.
TEST(SqliteReplicaMigration, FrozenSchemaTwoReplicaOpensUnderSchemaThree) {
  TempDir dir;
  const std::string path = dir.file("schema2.db");
  {
    const std::string sql = slurp(std::string(FIELDSYNC_FIXTURES_DIR) + "/replica_schema2.sql");
    ASSERT_FALSE(sql.empty());
    RawDb raw(path);
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(raw.db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    ASSERT_EQ(raw.scalar("PRAGMA user_version"), 3);
    ASSERT_EQ(raw.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'lead'"), 0);
  }
  const NodeId node = 0x51f0c0ffee000002ull;
  const RecordId account = *RecordId::parse("0199a2b4-6c00-7000-8000-000000000001");
  const RecordId event = *RecordId::parse("0199a2b4-6c00-7003-8000-000000000004");
  const RecordId visit = *RecordId::parse("0199a2b4-6c00-7007-8000-000000000008");
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->node(), node);
    EXPECT_EQ(store->schema_version(), schema::kSchemaVersion);
    auto txn = store->begin();
    ReplicaMeta m = txn->meta();
    EXPECT_TRUE(m.bootstrap_done);
    EXPECT_EQ(m.schema_version, 2u);  // what it holds in full: the backfill brings the rest
    EXPECT_EQ(m.next_node_seq, 8u);
    const std::vector<ClientTxn> outbox = txn->outbox_peek(SIZE_MAX);
    ASSERT_EQ(outbox.size(), 3u);
    EXPECT_EQ(outbox.front().node_seq, 5u);
    EXPECT_EQ(outbox.back().node_seq, 7u);
    std::optional<RecordState> a = txn->load(EntityId::kAccount, account);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->get(f::kAccountName), Value::text("Müller's Bäckerei"));
    EXPECT_EQ(a->get(5), Value::text("+49 30 1234"));  // an unsynced write, applied locally
    std::optional<RecordState> v = txn->load(EntityId::kVisit, visit);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->get(f::kVisitNotes), Value::text("Demo went well; wants a quote"));
    std::optional<RecordState> e = txn->load(EntityId::kCalendarEvent, event);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->get(f::kEventStatus), Value::text("done"));
    ASSERT_TRUE(txn->commit());
    txn.reset();

    // The newer library over it: a backfill is due, and it writes schema 3 right away.
    ClientConfig cfg;
    cfg.user = "alice";
    SyncClient client(*store, cfg);
    EXPECT_TRUE(client.backfilling());
    const RecordId opp = *RecordId::parse("0199a2b4-6c00-7002-8000-000000000003");
    Result<uint64_t> seq = client.write(
        {set(EntityId::kCalendarEvent, event, f::kEventOpportunity, Value::text(opp.to_string()))},
        kStart + 100'000);
    ASSERT_TRUE(seq) << seq.status().to_string();
    EXPECT_EQ(*seq, 8u);
  }
  RawDb raw(path);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), SqliteReplicaStore::kFormatVersion);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM _outbox"), 4);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM sqlite_schema WHERE name IN ('lead', 'service_case', 'asset', "
                       "'task', 'idx_calendar_event_opportunity_id')"),
            5);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM calendar_event WHERE opportunity_id IS NOT NULL"), 1);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM account"), 1);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM contact"), 2);
}

// A library projected to schema 2 keeps a replica's tables at schema 2; the app upgraded to schema 3 brings
// them forward in place, and a schema-2 app can no longer open it.
TEST(SqliteReplicaMigration, TablesFollowTheAppsSchemaVersionForwardOnly) {
  TempDir dir;
  const std::string path = dir.file("projected.db");
  SqliteReplicaStore::Options old_app;
  old_app.schema_version = 2;
  {
    auto store = open_ok(path, old_app);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->schema_version(), 2u);
    RecordState lead;
    lead.entity = EntityId::kLead;
    lead.id = *RecordId::parse("0199a2b4-6c00-7000-8000-0000000000c1");
    auto txn = store->begin();
    txn->save(lead);
    Status s = txn->commit();
    EXPECT_EQ(s.code(), ErrorCode::kUnknownEntity) << s.to_string();
  }
  {
    RawDb raw(path);
    EXPECT_EQ(raw.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'lead'"), 0);
    EXPECT_EQ(raw.scalar("SELECT count(*) FROM pragma_table_info('calendar_event') WHERE name = "
                         "'opportunity_id'"),
              0);
  }
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->schema_version(), schema::kSchemaVersion);
  }
  {
    RawDb raw(path);
    EXPECT_EQ(raw.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'lead'"), 1);
    EXPECT_EQ(raw.scalar("SELECT count(*) FROM pragma_table_info('calendar_event') WHERE name = "
                         "'opportunity_id'"),
              1);
  }
  Result<std::unique_ptr<SqliteReplicaStore>> downgraded = SqliteReplicaStore::open(path, old_app);
  ASSERT_FALSE(downgraded);
  EXPECT_EQ(downgraded.status().code(), ErrorCode::kSchemaTooNew);
}

TEST(SqliteReplicaMigration, FailedMigrationLeavesTheOldFormatUntouched) {
  TempDir dir;
  // An object in the way of one of the migration's indexes makes the migration fail half-way.
  const std::string path = make_v1(dir, "CREATE TABLE _conflicts_by_record (x)");
  auto r = SqliteReplicaStore::open(path, {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("migrating"), std::string::npos) << r.status().to_string();
  RawDb raw(path);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), 1);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM pragma_table_info('_conflicts') WHERE name = 'seen'"), 0);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM _outbox"), 3);
}

TEST(SqliteReplicaMigration, NewerFormatIsRefusedAndLeftUntouched) {
  TempDir dir;
  const std::string path = dir.file("new.db");
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
  }
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec("PRAGMA journal_mode = DELETE"), SQLITE_OK);
    ASSERT_EQ(raw.exec("PRAGMA user_version = " + std::to_string(SqliteReplicaStore::kFormatVersion + 1)),
              SQLITE_OK);
  }
  const std::string before = slurp(path);
  auto r = SqliteReplicaStore::open(path, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kSchemaTooNew);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos) << r.status().message();
  EXPECT_EQ(slurp(path), before);
  EXPECT_FALSE(fs::exists(path + "-wal"));
}

// ---- Storage errors
// -----------------------------------------------------------------------------------------

TEST(SqliteReplicaErrors, GarbageFileIsCorrupt) {
  TempDir dir;
  const std::string path = dir.file("junk.db");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 512; ++i) out << "this is not a database, just some bytes ";
  }
  auto r = SqliteReplicaStore::open(path, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kStorageCorrupt) << r.status().to_string();
}

TEST(SqliteReplicaErrors, ForeignDatabaseIsRefused) {
  TempDir dir;
  const std::string path = dir.file("other.db");
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec("CREATE TABLE t (x)"), SQLITE_OK);
  }
  auto r = SqliteReplicaStore::open(path, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kStorageCorrupt);
}

TEST(SqliteReplicaErrors, CorruptMetaBlobIsTypedNotUndefined) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  auto store = open_ok(path);
  ASSERT_TRUE(store);
  const RecordId id = ids().next(kStart);
  {
    auto txn = store->begin();
    txn->save(account(id, "x"));
    txn->outbox_append(outbox_txn(1, id));
    ASSERT_TRUE(txn->commit());
  }
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec("UPDATE account SET _meta = X'0badc0de0badc0de'"), SQLITE_OK);
  }
  auto txn = store->begin();
  EXPECT_FALSE(txn->load(EntityId::kAccount, id).has_value());
  txn->outbox_remove(1);
  Status s = txn->commit();
  EXPECT_EQ(s.code(), ErrorCode::kStorageCorrupt) << s.to_string();
  txn.reset();
  EXPECT_EQ(store->begin()->outbox_size(), 1u);  // the removal in the failed transaction was rolled back
  EXPECT_EQ(store->records().status().code(), ErrorCode::kStorageCorrupt);
}

TEST(SqliteReplicaErrors, ReadOnlyFileRefusesWritesTyped) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  const RecordId id = ids().next(kStart);
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    auto txn = store->begin();
    txn->save(account(id, "x"));
    ASSERT_TRUE(txn->commit());
  }
  auto check = [&](SqliteReplicaStore& store) {
    auto txn = store.begin();
    EXPECT_TRUE(txn->load(EntityId::kAccount, id).has_value());  // reads still work
    txn->save(account(ids().next(kStart), "y"));
    Status s = txn->commit();
    EXPECT_EQ(s.code(), ErrorCode::kStorageReadOnly) << s.to_string();
  };
  SqliteReplicaStore::Options ro;
  ro.read_only = true;
  auto store = open_ok(path, ro);
  ASSERT_TRUE(store);
  check(*store);
  store.reset();
  if (geteuid() != 0) {  // root ignores file permissions
    fs::permissions(path, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
    auto plain = open_ok(path);
    ASSERT_TRUE(plain);
    check(*plain);
  }
}

TEST(SqliteReplicaErrors, LockedByAnotherConnectionIsRetryable) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  SqliteReplicaStore::Options o;
  o.busy_timeout_ms = 50;
  auto store = open_ok(path, o);
  ASSERT_TRUE(store);
  const RecordId id = ids().next(kStart);
  {
    RawDb other(path);
    ASSERT_EQ(other.exec("BEGIN IMMEDIATE"), SQLITE_OK);
    auto txn = store->begin();
    EXPECT_EQ(txn->meta().node, store->node());  // reads are not blocked by a writer (WAL)
    txn->save(account(id, "x"));
    txn->outbox_append(outbox_txn(1, id));
    Status s = txn->commit();
    EXPECT_EQ(s.code(), ErrorCode::kStorageLocked) << s.to_string();
    EXPECT_TRUE(s.retryable());
    ASSERT_EQ(other.exec("ROLLBACK"), SQLITE_OK);
  }
  EXPECT_EQ(store->begin()->outbox_size(), 0u);
  auto txn = store->begin();
  txn->save(account(id, "x"));
  EXPECT_TRUE(txn->commit());
}

TEST(SqliteReplicaErrors, DiskFullWritesNothing) {
  TempDir dir;
  auto store = open_ok(dir.file("r.db"));
  ASSERT_TRUE(store);
  const RecordId kept = ids().next(kStart);
  {
    auto txn = store->begin();
    txn->save(account(kept, "kept"));
    ASSERT_TRUE(txn->commit());
  }
  const ReplicaMeta before = store->begin()->meta();
  auto set_max_pages = [&](const char* sql) {
    return store->read([&](sqlite3* db) {
      return sqlite::status_from(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), "max_page_count", db);
    });
  };
  ASSERT_TRUE(set_max_pages("PRAGMA max_page_count = 1"));  // clamps to the current size: no growth
  std::vector<RecordId> written;
  {
    auto txn = store->begin();
    for (int i = 0; i < 200; ++i) {
      written.push_back(ids().next(kStart));
      txn->save(account(written.back(), std::string(2000, 'x')));
    }
    txn->outbox_append(outbox_txn(1, written[0]));
    ReplicaMeta m = before;
    m.next_node_seq = 2;
    txn->set_meta(m);
    Status s = txn->commit();
    EXPECT_EQ(s.code(), ErrorCode::kStorageFull) << s.to_string();
  }
  ASSERT_TRUE(set_max_pages("PRAGMA max_page_count = 1073741823"));
  auto txn = store->begin();
  for (const RecordId& id : written) EXPECT_FALSE(txn->load(EntityId::kAccount, id).has_value());
  EXPECT_EQ(txn->outbox_size(), 0u);
  EXPECT_EQ(txn->meta(), before);
  EXPECT_TRUE(txn->load(EntityId::kAccount, kept).has_value());
  txn->save(account(written[0], "fits now"));
  EXPECT_TRUE(txn->commit());
}

// ---- SyncClient over the real file
// --------------------------------------------------------------------------

class TokenAuth final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello&, int64_t) override {
    return Principal{"alice", schema::Role::kRep, {"t-north"}, {}};
  }
};

std::vector<Change> new_account(RecordId id, const std::string& name) {
  return {create(EntityId::kAccount, id), set(EntityId::kAccount, id, f::kAccountName, Value::text(name)),
          set(EntityId::kAccount, id, f::kAccountTerritory, Value::text("t-north")),
          set(EntityId::kAccount, id, 10, Value::text("alice"))};
}

TEST(SqliteReplicaSync, WriteAndOutboxEntryCommitTogetherAndAckDropsIt) {
  TempDir dir;
  auto store = open_ok(dir.file("r.db"));
  ASSERT_TRUE(store);
  ClientConfig cfg;
  cfg.user = "alice";
  cfg.token = "t";
  SyncClient client(*store, cfg);
  const RecordId a = ids().next(kStart);
  Result<uint64_t> seq = client.write(new_account(a, "Acme"), kStart);
  ASSERT_TRUE(seq) << seq.status().to_string();
  {
    auto txn = store->begin();
    EXPECT_TRUE(txn->load(EntityId::kAccount, a).has_value());
    ASSERT_EQ(txn->outbox_size(), 1u);
    EXPECT_EQ(txn->outbox_peek(1)[0].node_seq, *seq);
    EXPECT_EQ(txn->meta().next_node_seq, *seq + 1);
  }
  // A failed commit leaves neither the record nor the outbox entry.
  const RecordId b = ids().next(kStart);
  store->fail_next_commit(Status(ErrorCode::kStorageFull, "injected", true));
  EXPECT_FALSE(client.write(new_account(b, "Lost"), kStart + 1));
  {
    auto txn = store->begin();
    EXPECT_FALSE(txn->load(EntityId::kAccount, b).has_value());
    EXPECT_EQ(txn->outbox_size(), 1u);
  }
  // Round trip with a server: the ack drops the outbox entry; the record stays.
  MemoryCentralStore central;
  TokenAuth auth;
  SyncServer server(central, auth, ServerConfig{});
  server.on_connect(1, kStart);
  client.on_connected(kStart);
  for (int round = 0; round < 100; ++round) {
    bool moved = false;
    for (protocol::Message& m : client.take_outgoing()) {
      moved = true;
      server.on_message(1, m, kStart);
    }
    for (SyncServer::Outgoing& o : server.take_outgoing()) {
      moved = true;
      client.on_message(o.message, kStart);
    }
    if (!moved) break;
  }
  EXPECT_TRUE(client.idle());
  EXPECT_EQ(store->begin()->outbox_size(), 0u);
  EXPECT_TRUE(store->begin()->load(EntityId::kAccount, a).has_value());
  EXPECT_TRUE(central.load(EntityId::kAccount, a).value().has_value());
}

// Format 5: a local write is the record and its outbox entry; the _sync_meta row is not rewritten. The next
// node_seq and the clock come back from the newest outbox entry on reopen (also after the wall clock went
// back), and reach the row when the entries leave the outbox, so an emptied outbox never reuses a node_seq.
TEST(SqliteReplicaSync, LocalWriteLeavesTheMetaRowAndReopenDerivesSequenceAndClock) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  ClientConfig cfg;
  cfg.user = "alice";
  Hlc after_three = 0;
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    SyncClient client(*store, cfg);
    for (uint64_t i = 1; i <= 3; ++i) {
      Result<uint64_t> seq = client.write(new_account(ids().next(kStart), "A" + std::to_string(i)), kStart);
      ASSERT_TRUE(seq) << seq.status().to_string();
      EXPECT_EQ(*seq, i);
    }
    after_three = store->begin()->meta().hlc;
    EXPECT_GT(after_three, 0u);
  }
  {
    RawDb raw(path);
    EXPECT_EQ(raw.scalar("SELECT next_node_seq FROM _sync_meta"), 1);  // not rewritten by the writes
    EXPECT_EQ(raw.scalar("SELECT hlc FROM _outbox ORDER BY node_seq DESC LIMIT 1"),
              static_cast<int64_t>(after_three));
  }
  Hlc after_four = 0;
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    ReplicaMeta m = store->begin()->meta();
    EXPECT_EQ(m.next_node_seq, 4u);
    EXPECT_EQ(m.hlc, after_three);
    // The device's clock went back a minute: the next write still orders after the earlier ones.
    SyncClient client(*store, cfg);
    Result<uint64_t> seq = client.write(new_account(ids().next(kStart), "A4"), kStart - 60'000);
    ASSERT_TRUE(seq) << seq.status().to_string();
    EXPECT_EQ(*seq, 4u);
    after_four = store->begin()->meta().hlc;
    EXPECT_GT(after_four, after_three);
    // Every entry leaves the outbox (as acks do) without a set_meta of its own.
    auto txn = store->begin();
    for (uint64_t s = 1; s <= 4; ++s) EXPECT_TRUE(txn->outbox_remove(s));
    ASSERT_TRUE(txn->commit());
  }
  {
    RawDb raw(path);
    EXPECT_EQ(raw.scalar("SELECT count(*) FROM _outbox"), 0);
    EXPECT_EQ(raw.scalar("SELECT next_node_seq FROM _sync_meta"), 5);
    EXPECT_EQ(raw.scalar("SELECT hlc FROM _sync_meta"), static_cast<int64_t>(after_four));
  }
  auto store = open_ok(path);
  ASSERT_TRUE(store);
  SyncClient client(*store, cfg);
  Result<uint64_t> seq = client.write(new_account(ids().next(kStart), "A5"), kStart - 60'000);
  ASSERT_TRUE(seq) << seq.status().to_string();
  EXPECT_EQ(*seq, 5u);
  EXPECT_GT(store->begin()->meta().hlc, after_four);
}

// The per-connection meta cache (sqlite_replica.h): consecutive writes of one connection skip the meta read,
// and a second connection reading the file finds the meta the cache holds.
TEST(SqliteReplicaSync, MetaCacheServesConsecutiveWritesOfOneConnection) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  ClientConfig cfg;
  cfg.user = "alice";
  auto store = open_ok(path);
  ASSERT_TRUE(store);
  SyncClient client(*store, cfg);
  const SqliteReplicaStore::MetaReads before = store->meta_reads();
  for (uint64_t i = 1; i <= 3; ++i) {
    Result<uint64_t> seq = client.write(new_account(ids().next(kStart), "A" + std::to_string(i)), kStart);
    ASSERT_TRUE(seq) << seq.status().to_string();
    EXPECT_EQ(*seq, i);
  }
  const SqliteReplicaStore::MetaReads after = store->meta_reads();
  EXPECT_EQ(after.cached - before.cached, 3u);
  EXPECT_EQ(after.from_file, before.from_file);
  {  // a transaction that neither reads nor changes the meta keeps the cache current
    auto txn = store->begin();
    txn->save(account(ids().next(kStart), "no meta"));
    ASSERT_TRUE(txn->commit());
  }
  ASSERT_EQ(client.write(new_account(ids().next(kStart), "A4"), kStart).value(), 4u);
  auto txn = store->begin();
  const ReplicaMeta cached = txn->meta();
  ASSERT_TRUE(txn->commit());
  EXPECT_EQ(store->meta_reads().from_file, before.from_file);
  auto fresh = open_ok(path);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(cached, fresh->begin()->meta());
  EXPECT_EQ(cached.next_node_seq, 5u);
}

TEST(SqliteReplicaSync, MetaCacheNeverServesAStaleValue) {
  TempDir dir;
  const std::string path = dir.file("r.db");
  ClientConfig cfg;
  cfg.user = "alice";
  auto a = open_ok(path);
  auto b = open_ok(path);
  ASSERT_TRUE(a && b);
  auto on_a = std::make_unique<SyncClient>(*a, cfg);
  ASSERT_EQ(on_a->write(new_account(ids().next(kStart), "A1"), kStart).value(), 1u);

  // Another connection's write: a stale next_node_seq would overwrite its outbox entry.
  {
    SyncClient on_b(*b, cfg);
    ASSERT_EQ(on_b.write(new_account(ids().next(kStart), "B2"), kStart).value(), 2u);
  }
  const SqliteReplicaStore::MetaReads before = a->meta_reads();
  ASSERT_EQ(on_a->write(new_account(ids().next(kStart), "A3"), kStart).value(), 3u);
  EXPECT_EQ(a->meta_reads().from_file, before.from_file + 1);
  on_a.reset();
  EXPECT_EQ(a->begin()->outbox_size(), 3u);

  // Another connection's raw change to the row, then one through this connection's own read().
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec("UPDATE _sync_meta SET cursor = 77"), SQLITE_OK);
  }
  EXPECT_EQ(a->begin()->meta().cursor, 77u);
  ASSERT_TRUE(a->read([](sqlite3* db) {
    return sqlite::status_from(
        sqlite3_exec(db, "UPDATE _sync_meta SET cursor = 78", nullptr, nullptr, nullptr), "update", db);
  }));
  EXPECT_EQ(a->begin()->meta().cursor, 78u);

  // A transaction that changed the meta and rolled back (destroyed, or its commit failed) leaves the cache
  // as it was before it: the next transaction finds the committed value.
  ReplicaMeta committed;
  {
    auto txn = a->begin();
    committed = txn->meta();
    ASSERT_TRUE(txn->commit());  // fills the cache
  }
  for (bool by_fault : {false, true}) {
    const SqliteReplicaStore::MetaReads reads = a->meta_reads();
    if (by_fault) a->fail_next_commit(Status(ErrorCode::kStorageIo, "injected"));
    auto txn = a->begin();
    ReplicaMeta m = txn->meta();
    const RecordId id = ids().next(kStart);
    txn->save(account(id, "rolled back"));
    ClientTxn t = outbox_txn(m.next_node_seq, id);
    t.changes[0].version.hlc = m.hlc + 1;
    txn->outbox_append(t);
    m.next_node_seq++;
    m.hlc++;
    txn->set_meta(m);
    EXPECT_EQ(txn->meta().next_node_seq, committed.next_node_seq + 1);
    if (by_fault) {
      EXPECT_FALSE(txn->commit());
    }
    txn.reset();
    EXPECT_EQ(a->meta_reads().cached, reads.cached + 1);  // the rolled-back transaction's meta() was a hit
    auto next = a->begin();
    EXPECT_EQ(next->meta(), committed) << (by_fault ? "failed commit" : "destroyed");
    EXPECT_EQ(next->outbox_size(), 3u);
    ASSERT_TRUE(next->commit());
  }

  // Reopen: a new connection starts without a cache and reads what the file holds.
  a.reset();
  {
    RawDb raw(path);
    ASSERT_EQ(raw.exec("UPDATE _sync_meta SET cursor = 79"), SQLITE_OK);
  }
  a = open_ok(path);
  ASSERT_TRUE(a);
  const ReplicaMeta reopened = a->begin()->meta();
  EXPECT_EQ(reopened.cursor, 79u);
  EXPECT_EQ(reopened.next_node_seq, 4u);
}

// ---- Crash safety: kill -9 between writes and acknowledgements
// ---------------------------------------------------------------

// The child writes transactions (an account and a contact each) as fast as it can until it is killed.
[[noreturn]] void crash_child(const std::string& path, uint64_t seed) {
  auto r = SqliteReplicaStore::open(path, {});
  if (!r) _exit(3);
  ClientConfig cfg;
  cfg.user = "alice";
  SyncClient client(**r, cfg);
  RecordIdGenerator gen(seed);
  for (int64_t i = 0;; ++i) {
    const RecordId a = gen.next(kStart + i);
    const RecordId c = gen.next(kStart + i);
    std::vector<Change> changes = new_account(a, "acct " + std::to_string(i));
    changes.push_back(create(EntityId::kContact, c));
    changes.push_back(set(EntityId::kContact, c, f::kContactAccount, Value::text(a.to_string())));
    changes.push_back(set(EntityId::kContact, c, 2, Value::text("contact " + std::to_string(i))));
    if (!client.write(std::move(changes), kStart + i)) _exit(4);
  }
}

// Under qemu-user (the ARM cross builds, FIELDSYNC_EMULATED) a child needs longer than the kill window just
// to open the replica: armhf committed nothing in 8 rounds. The kill comes that much later there.
#ifdef FIELDSYNC_EMULATED
constexpr uint64_t kEmulatorSlowdown = 20;
#else
constexpr uint64_t kEmulatorSlowdown = 1;
#endif

TEST(SqliteReplicaCrash, KillNineNeverLeavesAHalfWrittenTransaction) {
  TempDir dir;
  const std::string path = dir.file("crash.db");
  std::mt19937_64 rng(std::random_device{}());
  NodeId node = 0;
  {
    auto store = open_ok(path);
    ASSERT_TRUE(store);
    node = store->node();
  }
  uint64_t last_count = 0;
  for (int round = 0; round < 8; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) crash_child(path, 1000 + static_cast<uint64_t>(round));
    std::this_thread::sleep_for(std::chrono::milliseconds((30 + rng() % 120) * kEmulatorSlowdown));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited on its own with " << WEXITSTATUS(wstatus);

    auto store = open_ok(path);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->node(), node);
    auto txn = store->begin();
    const std::vector<ClientTxn> outbox = txn->outbox_peek(SIZE_MAX);
    const ReplicaMeta meta = txn->meta();
    txn.reset();
    auto records = store->records();
    ASSERT_TRUE(records) << records.status().to_string();
    // Outbox: 1..N without gaps or duplicates, and next_node_seq right after it.
    for (size_t i = 0; i < outbox.size(); ++i) ASSERT_EQ(outbox[i].node_seq, i + 1);
    EXPECT_EQ(meta.next_node_seq, outbox.size() + 1);
    EXPECT_GE(outbox.size(), last_count);  // nothing committed earlier was lost
    last_count = outbox.size();
    // Every record has its outbox entry and every entry its records.
    std::set<RecordKey> in_outbox;
    for (const ClientTxn& t : outbox) {
      for (const Change& c : t.changes) {
        if (c.op == ChangeOp::kCreate) {
          EXPECT_TRUE(in_outbox.insert(RecordKey{c.entity, c.record}).second);
        }
      }
    }
    std::set<RecordKey> stored;
    for (const auto& [key, rec] : *records) stored.insert(key);
    EXPECT_EQ(stored, in_outbox);
    EXPECT_EQ(stored.size(), 2 * outbox.size());
  }
  EXPECT_GT(last_count, 0u) << "the child never committed a write: the test proved nothing";
}

#ifdef FIELDSYNC_HAVE_SERVER
// Kill -9 between a write, its push, the server's commit and the client's handling of the ack: the device
// (SQLite replica) and the server (SQLite central store) live in the child, each in its own file, so the kill
// lands between the two commits of one exchange. After each kill the parent reopens both, syncs to the end
// and checks that every write the app was told had committed reached the server exactly once.
void pump(SyncClient& client, SyncServer& server, int64_t now, int rounds) {
  for (int round = 0; round < rounds; ++round) {
    bool moved = false;
    for (protocol::Message& m : client.take_outgoing()) {
      moved = true;
      server.on_message(1, m, now);
    }
    for (SyncServer::Outgoing& o : server.take_outgoing()) {
      moved = true;
      client.on_message(o.message, now);
    }
    (void)client.take_events();
    if (!moved) return;
  }
}

// With `lose_ack`, the child does not wait for the parent's kill: after a few writes it lets every exchange
// finish, writes once more, hands that push to the server (which commits it) and kills itself before the ack
// reaches the device. That makes the case the random kills only hit by luck happen on every run.
[[noreturn]] void sync_crash_child(const std::string& replica, const std::string& central, int round, int fd,
                                   bool lose_ack) {
  auto r = SqliteReplicaStore::open(replica, {});
  server::SqliteCentralStore::Options co;
  co.now_ms = [] { return kStart; };
  auto c = server::SqliteCentralStore::open(central, co);
  if (!r || !c) _exit(3);
  TokenAuth auth;
  SyncServer srv(**c, auth, ServerConfig{});
  ClientConfig cfg;
  cfg.user = "alice";
  cfg.token = "t";
  SyncClient client(**r, cfg);
  const int64_t base = kStart + round * 1'000'000;
  srv.on_connect(1, base);
  client.on_connected(base);
  pump(client, srv, base, 50);
  RecordIdGenerator gen(static_cast<uint64_t>(round) + 77);
  for (int64_t i = 0;; ++i) {
    const int64_t now = base + i;
    Result<uint64_t> seq = client.write(new_account(gen.next(now), "acct " + std::to_string(i)), now);
    if (!seq) _exit(4);
    const uint64_t v = *seq;
    if (write(fd, &v, sizeof v) != static_cast<ssize_t>(sizeof v)) _exit(5);
    if (lose_ack && i == 20) {
      pump(client, srv, now, 1000);  // nothing in flight, everything acknowledged
      Result<uint64_t> last = client.write(new_account(gen.next(now), "acct before the kill"), now);
      if (!last) _exit(4);
      const uint64_t lv = *last;
      if (write(fd, &lv, sizeof lv) != static_cast<ssize_t>(sizeof lv)) _exit(5);
      std::vector<protocol::Message> push = client.take_outgoing();
      if (push.empty() || !std::holds_alternative<protocol::PushTxns>(push.front())) _exit(6);
      for (protocol::Message& m : push) srv.on_message(1, m, now);  // the server commits and answers...
      kill(getpid(), SIGKILL);                                      // ...and the device dies first
      _exit(7);
    }
    pump(client, srv, now, 1 + static_cast<int>(i % 4));  // leave some acks undelivered at the kill
  }
}

TEST(SqliteReplicaCrash, KillNineBetweenWriteAndAckAppliesEveryWriteExactlyOnce) {
  TempDir dir;
  const std::string replica = dir.file("device.db");
  const std::string central = dir.file("server.db");
  std::mt19937_64 rng(std::random_device{}());
  std::set<uint64_t> reported;  // node_seqs whose write() returned to the app
  uint64_t acks_lost = 0;
  NodeId node = 0;
  {
    auto r = open_ok(replica);
    ASSERT_TRUE(r);
    node = r->node();
  }
  for (int round = 0; round < 6; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    const bool lose_ack = round == 2;
    if (pid == 0) {
      close(fds[0]);
      sync_crash_child(replica, central, round, fds[1], lose_ack);
    }
    close(fds[1]);
    uint64_t v;
    if (!lose_ack) {
      // The kill lands after the child's first write (opening two stores can take a while on a loaded
      // machine), somewhere in the stream of writes, pushes and acks that follows.
      if (read(fds[0], &v, sizeof v) == static_cast<ssize_t>(sizeof v)) reported.insert(v);
      std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 160));
      ASSERT_EQ(kill(pid, SIGKILL), 0);
    }
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited on its own with " << WEXITSTATUS(wstatus);
    while (read(fds[0], &v, sizeof v) == static_cast<ssize_t>(sizeof v)) reported.insert(v);
    close(fds[0]);

    // Reconnect and sync everything.
    auto r = open_ok(replica);
    server::SqliteCentralStore::Options co;
    co.now_ms = [] { return kStart; };
    auto c = server::SqliteCentralStore::open(central, co);
    ASSERT_TRUE(r && c) << c.status().to_string();
    {
      // Writes the server applied whose ack the kill kept from the device: the re-push must be a duplicate.
      const uint64_t watermark = (*c)->node_states().value()[node].last_node_seq;
      uint64_t lost = 0;
      for (const ClientTxn& t : r->begin()->outbox_peek(SIZE_MAX)) lost += t.node_seq <= watermark ? 1 : 0;
      if (lose_ack) {
        EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
        EXPECT_EQ(lost, 1u) << "the push the server committed before the kill should still be in the outbox";
        EXPECT_EQ(watermark, *reported.rbegin());
      }
      acks_lost += lost;
    }
    TokenAuth auth;
    {
      SyncServer srv(**c, auth, ServerConfig{});
      ClientConfig cfg;
      cfg.user = "alice";
      cfg.token = "t";
      SyncClient client(*r, cfg);
      const int64_t now = kStart + (round + 1) * 1'000'000 - 1;
      srv.on_connect(1, now);
      client.on_connected(now);
      pump(client, srv, now, 10'000);
      EXPECT_TRUE(client.idle());
    }
    auto txn = r->begin();
    const ReplicaMeta meta = txn->meta();
    EXPECT_EQ(txn->outbox_size(), 0u);
    txn.reset();
    const uint64_t written = meta.next_node_seq - 1;
    ASSERT_FALSE(reported.empty());
    EXPECT_LE(*reported.rbegin(), written);  // nothing the app was told about is missing from the replica
    // Exactly once: the server's log holds every node_seq 1..written once.
    std::map<uint64_t, int> applied;
    for (const ServerTxn& t : (*c)->read_log(0, SIZE_MAX).value()) {
      if (t.origin_node == node) ++applied[t.origin_node_seq];
    }
    ASSERT_EQ(applied.size(), written);
    for (const auto& [seq, count] : applied) EXPECT_EQ(count, 1) << "node_seq " << seq << " applied twice";
    EXPECT_EQ((*c)->node_states().value()[node].last_node_seq, written);
    // The device and the server hold the same records.
    auto local = r->records();
    ASSERT_TRUE(local);
    EXPECT_EQ((*c)->record_count().value(), local->size());
    for (const auto& [key, rec] : *local) EXPECT_TRUE((*c)->load(key.entity, key.id).value().has_value());
  }
  std::printf("%zu writes, %llu applied by the server but unacknowledged at a kill\n", reported.size(),
              static_cast<unsigned long long>(acks_lost));
  EXPECT_GE(acks_lost, 1u)
      << "no kill landed between the server's commit and the ack: the test proved nothing";
}
#endif

}  // namespace
}  // namespace fieldsync::client

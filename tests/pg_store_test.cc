// The PostgreSQL central store against the real PostgreSQL of the pg_cluster fixture: the store contract
// (store_contract.h, as for the memory and SQLite stores), the model's DDL in PostgreSQL dialect, the store's
// format on open, the sequence rule with concurrent writers on two store objects, dedupe per node across two
// store objects (through SyncServer), and a dropped connection.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "fieldsync/schema/ddl.h"
#include "fieldsync/server/pg_store.h"
#include "fieldsync/sync/client.h"
#include "fieldsync/sync/server.h"
#include "pg.h"
#include "store_contract.h"
#include "support/pg_test_db.h"
#include "support/sync_fixtures.h"

namespace fieldsync {
namespace {

using namespace store_contract;
using server::PgCentralStore;
using testing::PgTestDatabase;

std::unique_ptr<PgCentralStore> open_pg(const std::string& url, bool group_commit = false) {
  PgCentralStore::Options options;
  options.now_ms = [] { return kStart; };
  options.group_commit = group_commit;
  auto r = PgCentralStore::open(url, options);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r ? std::move(r.value()) : nullptr;
}

// ---- The contract

struct PgStoreFactory {
  static constexpr bool kDurable = true;
  PgTestDatabase db;
  std::unique_ptr<CentralStore> open() { return open_pg(db.url()); }
};
// Group commit (fieldsync-server's default): commits with synchronous_commit off, made durable by sync().
struct PgGroupCommitStoreFactory {
  static constexpr bool kDurable = true;
  PgTestDatabase db;
  std::unique_ptr<CentralStore> open() { return open_pg(db.url(), true); }
};
using PgTypes = ::testing::Types<PgStoreFactory, PgGroupCommitStoreFactory>;
class PgNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, PgStoreFactory> ? "Postgres" : "PostgresGroupCommit";
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(Pg, CentralStoreContract, PgTypes, PgNames);
INSTANTIATE_TYPED_TEST_SUITE_P(Pg, DurableStoreContract, PgTypes, PgNames);

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.ok());
    auto c = pg::Conn::open(db_.url());
    ASSERT_TRUE(c) << c.status().to_string();
    sql_ = std::move(c.value());
  }
  int64_t scalar(const std::string& query, const pg::Params& params = {}) {
    auto rows = sql_->query(query, params);
    EXPECT_TRUE(rows) << rows.status().to_string();
    if (!rows || rows->size() == 0) return -1;
    return rows->i64(0, 0);
  }
  PgTestDatabase db_;
  std::unique_ptr<pg::Conn> sql_;  // the test's own look at the database
};

// ---- One model, two dialects

TEST_F(PgStoreTest, ModelDdlCreatesEveryTableWithTheModelsColumnsAndTypes) {
  for (int round = 0; round < 2; ++round)  // idempotent: a second instance starting runs it again
    for (const std::string& sql : schema::all_ddl(schema::Dialect::kPostgres))
      ASSERT_TRUE(sql_->exec_script(sql)) << sql;
  for (const schema::EntityDef& e : schema::entities()) {
    auto rows = sql_->query(
        "SELECT column_name::text, data_type::text, coalesce(collation_name::text, '') FROM "
        "information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        pg::Params().add(std::string_view(e.name)));
    ASSERT_TRUE(rows) << rows.status().to_string();
    std::vector<std::string> expected = {"id"};
    for (const schema::FieldDef& f : e.fields) expected.emplace_back(f.name);
    expected.insert(expected.end(), {"_deleted", "_meta"});
    ASSERT_EQ(rows->size(), static_cast<int>(expected.size())) << e.name;
    for (int i = 0; i < rows->size(); ++i) {
      EXPECT_EQ(rows->text(i, 0), expected[i]) << e.name;
      const std::string type = rows->text(i, 1), collation = rows->text(i, 2);
      if (i == 0) {
        EXPECT_EQ(type, "text");
        EXPECT_EQ(collation, "C") << "ids sort byte by byte";
        continue;
      }
      if (i > static_cast<int>(e.fields.size())) {
        EXPECT_EQ(type, rows->text(i, 0) == "_deleted" ? "boolean" : "bytea");
        continue;
      }
      switch (e.fields[i - 1].type) {
        case schema::FieldType::kText:
        case schema::FieldType::kId:
        case schema::FieldType::kEnum:
        case schema::FieldType::kUserId:
          EXPECT_EQ(type, "text") << e.name << "." << rows->text(i, 0);
          EXPECT_EQ(collation, "C") << e.name << "." << rows->text(i, 0);
          break;
        case schema::FieldType::kInt:
        case schema::FieldType::kTimestamp:
          EXPECT_EQ(type, "bigint") << e.name << "." << rows->text(i, 0);
          break;
        case schema::FieldType::kBool:
          EXPECT_EQ(type, "boolean") << e.name << "." << rows->text(i, 0);
          break;
        case schema::FieldType::kReal:
          EXPECT_EQ(type, "double precision") << e.name << "." << rows->text(i, 0);
          break;
      }
    }
    // The same indexes as the SQLite dialect names.
    for (const std::string& sql : schema::create_index_sql(e, schema::Dialect::kPostgres)) {
      const size_t a = sql.find('"'), b = sql.find('"', a + 1);
      const std::string name = sql.substr(a + 1, b - a - 1);
      EXPECT_EQ(scalar("SELECT count(*) FROM pg_indexes WHERE indexname = $1", pg::Params().add(name)), 1)
          << name;
    }
  }
  // A keyword table ("order") is usable, and ids order by bytes whatever the database's collation.
  ASSERT_TRUE(sql_->exec("INSERT INTO \"order\" (id, _deleted) VALUES ($1, false), ($2, false), ($3, false)",
                         pg::Params().add("a-b").add("ab").add("a_c")));
  auto rows = sql_->query("SELECT id FROM \"order\" ORDER BY id");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 3);
  EXPECT_EQ(rows->text(0, 0), "a-b");  // '-' 0x2d < '_' 0x5f < 'b' 0x62
  EXPECT_EQ(rows->text(1, 0), "a_c");
  EXPECT_EQ(rows->text(2, 0), "ab");
  // The SQLite dialect is unchanged by the second one.
  EXPECT_EQ(schema::all_ddl(), schema::all_ddl(schema::Dialect::kSqlite));
  EXPECT_NE(schema::all_ddl()[0], schema::all_ddl(schema::Dialect::kPostgres)[0]);
}

// The typed columns are a projection of _meta that head office can query, with PostgreSQL's types.
TEST_F(PgStoreTest, TypedColumnsProjectTheRecord) {
  auto store = open_pg(db_.url());
  ASSERT_TRUE(store);
  RecordState ev = event(rid(1), "alice", kStart, kStart + 3'600'000);
  auto txn = store->begin();
  txn->save(account(rid(2), "t-north"));
  txn->save(ev);
  txn->save(tombstone(contact(rid(3), rid(2)), f::kContactAccount));
  ASSERT_TRUE(txn->commit());
  EXPECT_EQ(scalar("SELECT start_at FROM calendar_event WHERE id = $1", pg::Params().add(rid(1).to_string())),
            kStart);
  EXPECT_EQ(scalar("SELECT count(*) FROM account WHERE territory_id = 't-north' AND NOT _deleted"), 1);
  EXPECT_EQ(scalar("SELECT count(*) FROM contact WHERE _deleted AND account_id = $1",
                   pg::Params().add(rid(2).to_string())),
            1)
      << "a tombstone keeps its scope field";
}

// ---- The store's format

TEST_F(PgStoreTest, FormatIsRecordedAndANewerDatabaseIsRefusedUntouched) {
  {
    auto store = open_pg(db_.url());
    ASSERT_TRUE(store);
  }
  EXPECT_EQ(scalar("SELECT value FROM _state WHERE key = 'format'"), 2)
      << "format 2: the reports' tables (pg_store.cc)";
  ASSERT_TRUE(open_pg(db_.url())) << "reopening is idempotent";
  ASSERT_TRUE(sql_->exec("UPDATE _state SET value = 99 WHERE key = 'format'"));
  auto newer = PgCentralStore::open(db_.url(), {});
  ASSERT_FALSE(newer);
  EXPECT_EQ(newer.status().code(), ErrorCode::kSchemaTooNew) << newer.status().to_string();
  EXPECT_EQ(scalar("SELECT value FROM _state WHERE key = 'format'"), 99);
}

TEST_F(PgStoreTest, InstancesOpeningAtOnceCreateTheTablesOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      auto r = PgCentralStore::open(db_.url(), {});
      if (r)
        ++ok;
      else
        ADD_FAILURE() << r.status().to_string();
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(scalar("SELECT count(*) FROM _head"), 1);
}

TEST(PgStoreOpenTest, UnreachableServerIsRetryableStorageIo) {
  auto r = PgCentralStore::open("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2", {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kStorageIo);
  EXPECT_TRUE(r.status().retryable());
}

// ---- The sequence rule: a pull never skips a change that commits late

ScopeKey key_all() {
  return ScopeKey{ScopeKey::Kind::kTerritory, "t-all"};
}

// One store object holds a transaction with sequence 1 open; another store object's transaction (another
// connection, as another server instance would have) commits while it is open. A pull in between sees neither
// 2 without 1 nor anything past what committed in order.
// Group commit: a CentralTxn's commit returns before its WAL flush (what the server gains: the flush leaves
// the service's serial section and is shared), and sync() flushes the WAL past every commit that returned
// before it began (what the acknowledgements wait for).
TEST_F(PgStoreTest, GroupCommitSyncFlushesTheWalPastEveryCommitBeforeIt) {
  auto store = open_pg(db_.url(), /*group_commit=*/true);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->commits_need_sync());
  auto lsn = [&](const std::string& fn) { return scalar("SELECT (" + fn + "() - '0/0'::pg_lsn)::bigint"); };
  int unflushed_at_commit = 0;
  for (int i = 1; i <= 20; ++i) {
    auto txn = store->begin();
    txn->save(account(rid(i), "t-north"));
    EXPECT_EQ(txn->append_log(log_txn(1, 11, static_cast<uint64_t>(i)), {}, {}), static_cast<uint64_t>(i));
    ASSERT_TRUE(txn->commit());
    const int64_t written = lsn("pg_current_wal_insert_lsn");
    unflushed_at_commit += lsn("pg_current_wal_flush_lsn") < written;
    ASSERT_TRUE(store->sync());
    EXPECT_GE(lsn("pg_current_wal_flush_lsn"), written) << "commit " << i << " not flushed by sync()";
  }
  EXPECT_GT(unflushed_at_commit, 0) << "every commit flushed by itself: group commit is not in effect";
}

TEST_F(PgStoreTest, ALateCommitIsNeverSkipped) {
  auto a = open_pg(db_.url()), b = open_pg(db_.url()), reader = open_pg(db_.url());
  ASSERT_TRUE(a && b && reader);
  auto first = a->begin();
  ASSERT_EQ(first->append_log(log_txn(1, 11, 1), {}, {key_all()}), 1u);

  std::atomic<bool> second_committed{false};
  std::atomic<uint64_t> second_seq{0};
  Status second_status;
  std::thread writer([&] {
    auto second = b->begin();
    second_seq = second->append_log(log_txn(1, 12, 1), {}, {key_all()});  // waits for `first`
    second_status = second->commit();
    second_committed = true;
  });
  // While `first` is open: the second writer cannot have committed, and every pull sees an empty log.
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_FALSE(second_committed.load()) << "a later sequence committed before an earlier one";
    EXPECT_EQ(reader->head_seq().value(), 0u);
    EXPECT_TRUE(reader->read_log(0, 100).value().empty());
    EXPECT_TRUE(reader->read_log_for(0, 10, {key_all()}, 100).value().txns.empty());
  }
  ASSERT_TRUE(first->commit());  // the late commit
  writer.join();
  ASSERT_TRUE(second_status) << second_status.to_string();
  EXPECT_EQ(second_seq.load(), 2u);
  std::vector<uint64_t> seqs;
  for (const ServerTxn& t : reader->read_log(0, 100).value()) seqs.push_back(t.server_seq);
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(reader->read_log_for(0, 2, {key_all()}, 100).value().txns.size(), 2u);
}

TEST_F(PgStoreTest, ARolledBackSequenceIsGivenBack) {
  auto a = open_pg(db_.url()), b = open_pg(db_.url());
  ASSERT_TRUE(a && b);
  auto first = a->begin();
  ASSERT_EQ(first->append_log(log_txn(1, 11, 1), {}, {}), 1u);
  std::atomic<uint64_t> seq{0};
  std::thread writer([&] {
    auto second = b->begin();
    seq = second->append_log(log_txn(1, 12, 1), {}, {});
    EXPECT_TRUE(second->commit());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  first.reset();  // rolled back
  writer.join();
  EXPECT_EQ(seq.load(), 1u) << "no gap";
  EXPECT_EQ(a->head_seq().value(), 1u);
  EXPECT_EQ(a->read_log(0, 10).value().at(0).origin_node, 12u);
}

// Writers on two store objects, each holding its transaction open a little after taking its sequence, and a
// puller that follows the log by its cursor as a device does (read_log, read_log_for, head_seq): it sees
// every sequence exactly once and in order, never a later one before an earlier.
TEST_F(PgStoreTest, ConcurrentWritersNeverLetAPullerSkip) {
  auto a = open_pg(db_.url()), b = open_pg(db_.url()), reader = open_pg(db_.url());
  ASSERT_TRUE(a && b && reader);
  constexpr int kWriters = 4, kTxnsEach = 25;
  std::atomic<int> writers_left{kWriters};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w));
      CentralStore& store = w % 2 ? *b : *a;
      for (int i = 1; i <= kTxnsEach; ++i) {
        auto txn = store.begin();
        txn->save(account(rid(static_cast<uint64_t>(w * 1000 + i)), "t-all"));
        txn->append_log(log_txn(1, static_cast<NodeId>(100 + w), static_cast<uint64_t>(i)), {}, {key_all()});
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
        Status s = txn->commit();
        EXPECT_TRUE(s) << s.to_string();
      }
      --writers_left;
    });
  std::vector<uint64_t> by_log, by_scope;
  uint64_t cursor_log = 0, cursor_scope = 0;
  auto follow = [&] {
    for (const ServerTxn& t : reader->read_log(cursor_log, 7).value()) {
      EXPECT_EQ(t.server_seq, cursor_log + 1) << "read_log skipped or repeated a sequence";
      cursor_log = t.server_seq;
      by_log.push_back(t.server_seq);
    }
    const uint64_t head = reader->head_seq().value();
    EXPECT_GE(head, cursor_scope);
    CentralStore::LogSlice slice = reader->read_log_for(cursor_scope, head, {key_all()}, 5).value();
    for (const ServerTxn& t : slice.txns) {
      EXPECT_EQ(t.server_seq, cursor_scope + 1) << "read_log_for skipped or repeated a sequence";
      cursor_scope = t.server_seq;
      by_scope.push_back(t.server_seq);
    }
    EXPECT_GE(slice.searched_to, cursor_scope);
    cursor_scope = std::max(cursor_scope, slice.searched_to);
  };
  while (writers_left.load() > 0) follow();
  for (auto& t : writers) t.join();
  follow();
  follow();
  EXPECT_EQ(by_log.size(), static_cast<size_t>(kWriters * kTxnsEach));
  EXPECT_EQ(by_scope.size(), static_cast<size_t>(kWriters * kTxnsEach));
  EXPECT_EQ(reader->head_seq().value(), static_cast<uint64_t>(kWriters * kTxnsEach));
}

// Two instances merge into the same record at once: the second reads it only after the first committed, so
// its save contains the first one's change (at READ COMMITTED a plain read would give it the older state, and
// its save would overwrite the first one's merge).
TEST_F(PgStoreTest, ConcurrentWritersOfOneRecordNeverLoseAnUpdate) {
  auto a = open_pg(db_.url()), b = open_pg(db_.url());
  ASSERT_TRUE(a && b);
  {
    auto txn = a->begin();
    txn->save(account(rid(1), "t1"));
    ASSERT_TRUE(txn->commit());
  }
  auto first = a->begin();
  RecordState mine = first->load(EntityId::kAccount, rid(1)).value().value();
  mine.mutable_field(5)->value = Value::text("+49 1");  // phone
  first->save(mine);
  std::atomic<bool> loaded{false};
  std::thread other([&] {
    auto second = b->begin();
    RecordState theirs = second->load(EntityId::kAccount, rid(1)).value().value();  // waits for `first`
    loaded = true;
    theirs.mutable_field(4)->value = Value::text("Springfield");  // city
    second->save(theirs);
    EXPECT_TRUE(second->commit());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(loaded.load()) << "read a record another transaction is changing";
  ASSERT_TRUE(first->commit());
  other.join();
  RecordState end = a->load(EntityId::kAccount, rid(1)).value().value();
  ASSERT_NE(end.field(5), nullptr) << "the first writer's change was lost";
  EXPECT_EQ(end.field(5)->value, Value::text("+49 1"));
  ASSERT_NE(end.field(4), nullptr);
  EXPECT_EQ(end.field(4)->value, Value::text("Springfield"));
}

// ---- Dedupe per node across store objects (instances)

// Two instances are offered the same node's transaction at once: the first locks the node's watermark, the
// second waits for its commit and then reads the new watermark.
TEST_F(PgStoreTest, TheSameNodesTxnIsAppliedOnceAcrossStores) {
  auto a = open_pg(db_.url()), b = open_pg(db_.url());
  ASSERT_TRUE(a && b);
  auto first = a->begin();
  ASSERT_EQ(first->node_state(42).value().last_node_seq, 0u);
  std::atomic<bool> read{false};
  uint64_t seen = 99;
  std::thread other([&] {
    auto second = b->begin();
    seen = second->node_state(42).value().last_node_seq;  // waits for `first`
    read = true;
    if (seen < 1) {  // what SyncServer would do: apply only above the watermark
      second->append_log(log_txn(1, 42, 1), {}, {});
      second->set_node_state(NodeState{42, 1});
    }
    EXPECT_TRUE(second->commit());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(read.load()) << "the second instance read the watermark while the first was applying";
  first->append_log(log_txn(1, 42, 1), {}, {});
  first->set_node_state(NodeState{42, 1});
  ASSERT_TRUE(first->commit());
  other.join();
  EXPECT_EQ(seen, 1u);
  EXPECT_EQ(a->head_seq().value(), 1u) << "applied once";
  EXPECT_EQ(b->node_state(42).value().last_node_seq, 1u);
}

// Through SyncServer: a device pushes to instance A, whose acknowledgement never arrives (the instance dies);
// the device reconnects to instance B (another store object on the same database) and pushes again: B answers
// `duplicate` and the change is in the log once.
TEST_F(PgStoreTest, APushRetriedOnAnotherInstanceIsADuplicate) {
  auto store_a = open_pg(db_.url()), store_b = open_pg(db_.url());
  ASSERT_TRUE(store_a && store_b);
  testing_support::TokenAuth auth;
  auth.tokens["token-alice"] = Principal{"alice", schema::Role::kRep, {"t-north"}, {}};
  SyncServer a(*store_a, auth, ServerConfig{}), b(*store_b, auth, ServerConfig{});
  testing_support::Device alice(11, "alice");
  int64_t now = kStart;
  std::vector<protocol::PushAck> acks_from_b;
  // Moves messages between the device and one instance until quiet; `deliver_to_device` false drops what the
  // instance sends (it died before its acknowledgement left).
  auto pump = [&](SyncServer& server, bool deliver_to_device, std::vector<protocol::PushAck>* acks) {
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      for (protocol::Message& m : alice.client->take_outgoing()) {
        moved = true;
        server.on_message(alice.session, m, now);
      }
      alice.client->take_events();
      for (SyncServer::Outgoing& o : server.take_outgoing()) {
        moved = true;
        if (auto* ack = std::get_if<protocol::PushAck>(&o.message); ack && acks) acks->push_back(*ack);
        if (deliver_to_device) alice.client->on_message(o.message, now);
      }
      server.take_closing();
      if (!moved) return;
    }
    FAIL() << "messages still moving";
  };
  alice.session = 1;
  a.on_connect(alice.session, now);
  alice.client->on_connected(now);
  pump(a, true, nullptr);
  RecordId acct = alice.ids.next(now);
  ASSERT_TRUE(alice.client
                  ->write({Change{ChangeOp::kCreate, EntityId::kAccount, acct},
                           Change{ChangeOp::kSet, EntityId::kAccount, acct, 1, Value::text("Bakery")},
                           Change{ChangeOp::kSet, EntityId::kAccount, acct, 2, Value::text("t-north")},
                           Change{ChangeOp::kSet, EntityId::kAccount, acct, 10, Value::text("alice")}},
                          now)
                  .is_ok());
  pump(a, false, nullptr);  // A applies and commits; its ack is lost
  ASSERT_EQ(store_a->head_seq().value(), 1u);
  ASSERT_EQ(alice.store.outbox().size(), 1u) << "the device never saw the ack";
  a.on_disconnect(alice.session);
  alice.client->on_disconnected(now);

  now += 1000;
  alice.session = 1;
  b.on_connect(alice.session, now);
  alice.client->on_connected(now);
  pump(b, true, &acks_from_b);
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_EQ(store_b->head_seq().value(), 1u) << "applied once";
  EXPECT_EQ(store_b->read_log(0, 100).value().size(), 1u);
  // B learnt the watermark at the handshake (the device is told it already has node_seq 1) or answered the
  // resent push `duplicate`: either way, never a second application.
  for (const protocol::PushAck& ack : acks_from_b)
    for (const protocol::TxnResult& r : ack.results) EXPECT_EQ(r.outcome, protocol::TxnOutcome::kDuplicate);
  EXPECT_TRUE(store_b->load(EntityId::kAccount, acct).value().has_value());
}

// ---- A dropped connection

TEST_F(PgStoreTest, ADroppedConnectionFailsRetryablyAndTheStoreRecovers) {
  auto store = open_pg(db_.url());
  ASSERT_TRUE(store);
  {
    auto txn = store->begin();
    txn->save(account(rid(1), "t1"));
    ASSERT_TRUE(txn->commit());
  }
  // Every connection of the database is terminated (the server restarted, a failover): the pooled ones too.
  auto terminate_all = [&] {
    auto admin = pg::Conn::open(db_.admin_url());
    ASSERT_TRUE(admin);
    ASSERT_TRUE(
        (*admin)->exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid "
                       "<> pg_backend_pid()",
                       pg::Params().add(db_.name())));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  };
  terminate_all();
  Result<std::optional<RecordState>> lost = store->load(EntityId::kAccount, rid(1));
  ASSERT_FALSE(lost) << "a failed read is never \"absent\"";
  EXPECT_EQ(lost.status().code(), ErrorCode::kStorageIo);
  EXPECT_TRUE(lost.status().retryable());
  auto again = store->load(EntityId::kAccount, rid(1));
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_TRUE(again->has_value()) << "the next call opens a new connection";

  // A transaction whose connection drops keeps the error; commit() returns it and nothing is applied.
  SetUp();  // the test's own connection was terminated too
  auto txn = store->begin();
  txn->save(account(rid(2), "t1"));
  terminate_all();
  txn->save(account(rid(3), "t1"));
  txn->set_node_state(NodeState{5, 1});
  Status s = txn->commit();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), ErrorCode::kStorageIo) << s.to_string();
  EXPECT_TRUE(s.retryable());
  SetUp();
  EXPECT_EQ(scalar("SELECT count(*) FROM account"), 1);
  EXPECT_EQ(store->node_state(5).value().last_node_seq, 0u);
}

}  // namespace
}  // namespace fieldsync

// The CentralStore contract, run against MemoryCentralStore (the reference) and SqliteCentralStore; then what
// only SQLite adds: reopening, the audit, typed errors, a sync round trip, and durability under kill -9.
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
#include "support/memory_store.h"
#include "support/sync_fixtures.h"

namespace fieldsync {
namespace {

using schema::EntityId;
using schema::Role;
using server::SqliteCentralStore;
namespace f = schema::fields;

constexpr int64_t kStart = 1'760'000'000'000;

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

// ---- Record helpers

Version v(int64_t ms, NodeId node = 7) {
  return Version{make_hlc(ms, 0), node};
}

RecordId rid(uint64_t n) {
  return RecordId{0x0190000000007000ULL + n, 0x8000000000000000ULL + n};
}

RecordState record(EntityId e, RecordId id, std::vector<std::pair<uint16_t, Value>> fields,
                   Version ver = v(kStart)) {
  RecordState r;
  r.entity = e;
  r.id = id;
  r.created = ver;
  for (auto& [field, value] : fields) {
    FieldState* fs = r.mutable_field(field);
    fs->value = std::move(value);
    fs->version = ver;
    fs->user = "alice";
  }
  return r;
}

RecordState account(RecordId id, const std::string& territory) {
  return record(EntityId::kAccount, id,
                {{f::kAccountName, Value::text("Account " + id.to_string().substr(0, 8))},
                 {f::kAccountTerritory, Value::text(territory)},
                 {10, Value::text("alice")}});
}

RecordState contact(RecordId id, RecordId acct) {
  return record(EntityId::kContact, id,
                {{f::kContactAccount, Value::text(acct.to_string())}, {2, Value::text("C")}});
}

RecordState event(RecordId id, const std::string& owner, int64_t start, int64_t end,
                  const std::string& status = "scheduled") {
  return record(EntityId::kCalendarEvent, id,
                {{f::kEventOwner, Value::text(owner)},
                 {3, Value::text("Meeting")},
                 {f::kEventStart, Value::integer(start)},
                 {f::kEventEnd, Value::integer(end)},
                 {f::kEventStatus, Value::text(status)}});
}

// A tombstone keeps its scope field only, as merge leaves it.
RecordState tombstone(RecordState r, uint16_t scope_field) {
  r.deleted = true;
  r.deleted_version = v(kStart + 1000);
  r.deleted_by = "bob";
  std::erase_if(r.fields, [&](const FieldState& fs) { return fs.field != scope_field; });
  return r;
}

ServerTxn log_txn(int changes, NodeId node = 11, uint64_t node_seq = 1) {
  ServerTxn t;
  t.origin_node = node;
  t.origin_user = "alice";
  t.origin_node_seq = node_seq;
  for (int i = 0; i < changes; ++i) {
    Change c{ChangeOp::kSet, EntityId::kAccount, rid(100 + i), f::kAccountName};
    c.value = Value::text("name " + std::to_string(i));
    c.version = v(kStart + i, node);
    t.changes.push_back(c);
  }
  return t;
}

ConflictRecord conflict(RecordId rec, const std::string& loser) {
  ConflictRecord c;
  c.kind = ConflictKind::kConcurrentWrite;
  c.entity = EntityId::kAccount;
  c.record = rec;
  c.field = f::kAccountName;
  c.winner = ConflictSide{Value::text("w"), v(kStart + 2, 2), "bob"};
  c.loser = ConflictSide{Value::text("l"), v(kStart + 1, 1), loser};
  c.rule = "last_writer_wins";
  return c;
}

// ---- The contract, typed over both stores

struct MemoryStoreFactory {
  static constexpr bool kDurable = false;
  std::unique_ptr<CentralStore> open(const TempDir&) { return std::make_unique<MemoryCentralStore>(); }
};

struct SqliteStoreFactory {
  static constexpr bool kDurable = true;
  std::unique_ptr<CentralStore> open(const TempDir& dir) { return open_sqlite(dir.file("central.db")); }
};

template <typename Factory>
class CentralStoreContract : public testing::Test {
 protected:
  CentralStoreContract() { store_ = factory_.open(dir_); }
  CentralStore& store() { return *store_; }
  // Closes and reopens a durable store; an in-memory one stays as it is.
  void reopen() {
    if constexpr (Factory::kDurable) {
      store_.reset();
      store_ = factory_.open(dir_);
    }
  }
  void commit(std::unique_ptr<CentralTxn> txn) {
    Status s = txn->commit();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }
  void save_all(const std::vector<RecordState>& records) {
    auto txn = store().begin();
    for (const RecordState& r : records) txn->save(r);
    commit(std::move(txn));
  }

  TempDir dir_;
  Factory factory_;
  std::unique_ptr<CentralStore> store_;
};

// Group commit changes only when commits reach the disk, never what they do.
struct SqliteGroupCommitStoreFactory {
  static constexpr bool kDurable = true;
  std::unique_ptr<CentralStore> open(const TempDir& dir) {
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
TYPED_TEST_SUITE(CentralStoreContract, StoreTypes, StoreNames);

TYPED_TEST(CentralStoreContract, EmptyStore) {
  CentralStore& s = this->store();
  EXPECT_EQ(s.head_seq().value(), 0u);
  EXPECT_EQ(s.clock().value(), 0u);
  EXPECT_EQ(s.record_count().value(), 0u);
  EXPECT_TRUE(s.read_log(0, 100).value().empty());
  EXPECT_TRUE(s.read_conflicts(0, 100).value().empty());
  EXPECT_FALSE(s.load(EntityId::kAccount, rid(1)).value().has_value());
  EXPECT_TRUE(s.scan(RecordKey{}, 10).value().empty());
  auto txn = s.begin();
  EXPECT_EQ(txn->node_state(42).value().node, 42u);
  EXPECT_EQ(txn->node_state(42).value().last_node_seq, 0u);
  EXPECT_FALSE(txn->rejection(42, 1).value().has_value());
  EXPECT_TRUE(txn->events_overlapping("alice", 0, kStart * 2).value().empty());
}

TYPED_TEST(CentralStoreContract, SaveIsVisibleInTheTxnAndAfterCommitOnly) {
  CentralStore& s = this->store();
  RecordState a = account(rid(1), "t-north");
  a.fields[0].fragments.clear();
  auto txn = s.begin();
  txn->save(a);
  ASSERT_TRUE(txn->load(EntityId::kAccount, rid(1)).value().has_value());
  EXPECT_EQ(*txn->load(EntityId::kAccount, rid(1)).value(), a);
  {
    // A reader on another thread answers from committed state at once, or (group commit) waits for the open
    // transaction to end: never with its uncommitted write.
    std::atomic<bool> ended{false};
    bool seen = false, seen_after_end = false;
    std::thread reader([&] {
      seen = s.load(EntityId::kAccount, rid(1)).value().has_value();
      seen_after_end = ended.load();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ended = true;
    this->commit(std::move(txn));
    reader.join();
    EXPECT_TRUE(!seen || seen_after_end) << "uncommitted write visible to readers";
  }
  ASSERT_TRUE(s.load(EntityId::kAccount, rid(1)).value().has_value());
  EXPECT_EQ(*s.load(EntityId::kAccount, rid(1)).value(), a);
  EXPECT_FALSE(s.load(EntityId::kContact, rid(1)).value().has_value()) << "same id, other entity";

  // An update replaces the whole state, tombstone included.
  RecordState c = contact(rid(2), rid(1));
  this->save_all({c});
  RecordState gone = tombstone(c, f::kContactAccount);
  this->save_all({gone});
  EXPECT_EQ(*s.load(EntityId::kContact, rid(2)).value(), gone);
}

TYPED_TEST(CentralStoreContract, DroppedTxnLeavesNothing) {
  CentralStore& s = this->store();
  {
    auto txn = s.begin();
    txn->save(account(rid(1), "t-north"));
    txn->set_node_state(NodeState{11, 5});
    txn->add_rejection(StoredRejection{11, 4, "alice", ErrorCode::kOutOfScope, "nope"});
    EXPECT_EQ(txn->append_log(log_txn(2), {conflict(rid(1), "alice")}, {}), 1u);
    txn->set_clock(make_hlc(kStart, 3));
    EXPECT_EQ(txn->node_state(11).value().last_node_seq, 5u);
    EXPECT_TRUE(txn->rejection(11, 4).value().has_value());
    // The store's read side, on another thread, sees committed state only: at once, or (group commit) once
    // this transaction is dropped.
    uint64_t seen = 99;
    std::thread reader([&] { seen = s.node_state(11).value().last_node_seq; });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    txn.reset();
    reader.join();
    EXPECT_EQ(seen, 0u);
  }
  EXPECT_EQ(s.node_state(11).value().last_node_seq, 0u);
  EXPECT_EQ(s.head_seq().value(), 0u);
  EXPECT_EQ(s.clock().value(), 0u);
  EXPECT_EQ(s.record_count().value(), 0u);
  EXPECT_TRUE(s.read_log(0, 100).value().empty());
  EXPECT_TRUE(s.read_conflicts(0, 100).value().empty());
  auto txn = s.begin();
  EXPECT_EQ(txn->node_state(11).value().last_node_seq, 0u);
  EXPECT_FALSE(txn->rejection(11, 4).value().has_value());
  // And the store still works afterwards.
  EXPECT_EQ(txn->append_log(log_txn(1), {}, {}), 1u);
  this->commit(std::move(txn));
  EXPECT_EQ(s.head_seq().value(), 1u);
}

TYPED_TEST(CentralStoreContract, NodeStateAndRejections) {
  CentralStore& s = this->store();
  auto txn = s.begin();
  txn->set_node_state(NodeState{11, 3});
  txn->set_node_state(NodeState{0xfedcba9876543210ULL, 9});  // node ids use all 64 bits
  txn->add_rejection(StoredRejection{11, 2, "alice", ErrorCode::kOrderLocked, "order is approved"});
  this->commit(std::move(txn));
  txn = s.begin();
  EXPECT_EQ(txn->node_state(11).value().last_node_seq, 3u);
  EXPECT_EQ(txn->node_state(0xfedcba9876543210ULL).value().last_node_seq, 9u);
  auto rej = txn->rejection(11, 2).value();
  ASSERT_TRUE(rej.has_value());
  EXPECT_EQ(rej->user, "alice");
  EXPECT_EQ(rej->reason, ErrorCode::kOrderLocked);
  EXPECT_EQ(rej->message, "order is approved");
  EXPECT_EQ(rej->node, 11u);
  EXPECT_EQ(rej->node_seq, 2u);
  EXPECT_FALSE(txn->rejection(11, 3).value().has_value());
  txn->set_node_state(NodeState{11, 4});
  this->commit(std::move(txn));
  EXPECT_EQ(s.begin()->node_state(11).value().last_node_seq, 4u);
  EXPECT_EQ(s.node_state(11).value().last_node_seq, 4u);
  EXPECT_EQ(s.node_state(0xfedcba9876543210ULL).value().last_node_seq, 9u);
  EXPECT_EQ(s.node_state(12).value().node, 12u);
  EXPECT_EQ(s.node_state(12).value().last_node_seq, 0u);
}

TYPED_TEST(CentralStoreContract, AppendLogAssignsConsecutiveSequences) {
  CentralStore& s = this->store();
  auto txn = s.begin();
  ServerTxn first = log_txn(2, 11, 1);
  first.moves.push_back(ScopeMove{EntityId::kAccount, rid(100),
                                  ScopeKey{ScopeKey::Kind::kTerritory, "t-north"},
                                  ScopeKey{ScopeKey::Kind::kTerritory, "t-south"}});
  EXPECT_EQ(txn->append_log(first, {conflict(rid(100), "alice")}, {}), 1u);
  EXPECT_EQ(txn->append_log(log_txn(1, 12, 1), {}, {}), 2u);
  this->commit(std::move(txn));
  txn = s.begin();
  EXPECT_EQ(txn->append_log(log_txn(3, 11, 2), {}, {}), 3u);
  this->commit(std::move(txn));

  EXPECT_EQ(s.head_seq().value(), 3u);
  std::vector<ServerTxn> log = s.read_log(0, 1000).value();
  ASSERT_EQ(log.size(), 3u);
  first.server_seq = 1;
  EXPECT_EQ(log[0], first) << "scope moves are kept in the log";
  EXPECT_EQ(log[1].server_seq, 2u);
  EXPECT_EQ(log[1].origin_node, 12u);
  EXPECT_EQ(log[2].server_seq, 3u);
  EXPECT_EQ(log[2].changes.size(), 3u);
  std::vector<ConflictRecord> cs = s.read_conflicts(0, 3).value();
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].server_seq, 1u);
}

TYPED_TEST(CentralStoreContract, ReadLogBatchesByChangeCount) {
  CentralStore& s = this->store();
  for (int i = 0; i < 4; ++i) {
    auto txn = s.begin();
    txn->append_log(log_txn(3, 11, i + 1), {}, {});
    this->commit(std::move(txn));
  }
  auto seqs = [&](uint64_t after, size_t max) {
    std::vector<uint64_t> out;
    for (const ServerTxn& t : s.read_log(after, max).value()) out.push_back(t.server_seq);
    return out;
  };
  EXPECT_EQ(seqs(0, 5), (std::vector<uint64_t>{1, 2}));  // 3 < 5, 6 >= 5
  EXPECT_EQ(seqs(0, 6), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(seqs(0, 7), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(seqs(0, 1), (std::vector<uint64_t>{1}));  // whole transactions, at least one
  EXPECT_EQ(seqs(0, 0), (std::vector<uint64_t>{1}));
  EXPECT_EQ(seqs(2, 100), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(seqs(4, 100), (std::vector<uint64_t>{}));
  EXPECT_EQ(seqs(9, 100), (std::vector<uint64_t>{}));
}

ScopeKey territory(const std::string& t) {
  return ScopeKey{ScopeKey::Kind::kTerritory, t};
}

TYPED_TEST(CentralStoreContract, ReadLogForReadsOnlyTheGivenScopes) {
  CentralStore& s = this->store();
  // 700 entries: every one under "t-busy" (more than one index chunk), every 100th also under "t-quiet",
  // every 250th under the global key; the rest under "t-other".
  const ScopeKey busy = territory("t-busy"), quiet = territory("t-quiet"), other = territory("t-other");
  const ScopeKey global{ScopeKey::Kind::kGlobal, {}};
  for (uint64_t i = 1; i <= 700; ++i) {
    std::vector<ScopeKey> keys{i % 2 ? busy : other};
    if (i % 100 == 0) keys.push_back(quiet);
    if (i % 250 == 0) keys.push_back(global);
    auto txn = s.begin();
    EXPECT_EQ(txn->append_log(log_txn(2, 11, i), {}, keys), i);
    this->commit(std::move(txn));
  }
  auto seqs = [&](uint64_t after, uint64_t up_to, std::vector<ScopeKey> keys, size_t max,
                  uint64_t* searched = nullptr) {
    CentralStore::LogSlice slice = s.read_log_for(after, up_to, keys, max).value();
    std::vector<uint64_t> out;
    for (const ServerTxn& t : slice.txns) {
      out.push_back(t.server_seq);
      EXPECT_EQ(t.changes.size(), 2u);
    }
    if (searched) *searched = slice.searched_to;
    return out;
  };
  uint64_t searched = 0;
  EXPECT_EQ(seqs(0, 700, {quiet}, 1000, &searched),
            (std::vector<uint64_t>{100, 200, 300, 400, 500, 600, 700}));
  EXPECT_EQ(searched, 700u) << "nothing else under the key: searched to up_to";
  EXPECT_EQ(seqs(150, 450, {quiet}, 1000, &searched), (std::vector<uint64_t>{200, 300, 400}));
  EXPECT_EQ(searched, 450u);
  EXPECT_EQ(seqs(0, 700, {quiet, global}, 1000),
            (std::vector<uint64_t>{100, 200, 250, 300, 400, 500, 600, 700}));
  EXPECT_EQ(seqs(0, 700, {quiet}, 5, &searched), (std::vector<uint64_t>{100, 200, 300}));
  EXPECT_EQ(searched, 300u) << "stopped at max_changes: searched to the last one returned";
  EXPECT_TRUE(seqs(0, 700, {territory("t-none")}, 1000, &searched).empty());
  EXPECT_EQ(searched, 700u);
  EXPECT_TRUE(seqs(700, 700, {busy}, 1000, &searched).empty());
  EXPECT_EQ(searched, 700u);

  // A key with more entries than one index chunk, merged with a sparse one: every entry once, in order.
  std::vector<uint64_t> expected;
  for (uint64_t i = 1; i <= 700; ++i)
    if (i % 2 || i % 100 == 0) expected.push_back(i);
  EXPECT_EQ(seqs(0, 700, {quiet, busy}, 100000, &searched), expected);
  EXPECT_EQ(searched, 700u);
  // The same read in pages, each resuming at the previous searched_to, loses and repeats nothing.
  std::vector<uint64_t> paged;
  for (uint64_t after = 0; after < 700;) {
    std::vector<uint64_t> page = seqs(after, 700, {busy, quiet}, 61, &searched);
    paged.insert(paged.end(), page.begin(), page.end());
    ASSERT_GT(searched, after);
    after = searched;
  }
  EXPECT_EQ(paged, expected);
}

TYPED_TEST(CentralStoreContract, ReadConflictsRange) {
  CentralStore& s = this->store();
  for (int i = 1; i <= 3; ++i) {
    auto txn = s.begin();
    std::vector<ConflictRecord> cs;
    if (i == 1) cs.push_back(conflict(rid(1), "a1"));
    if (i == 3) cs = {conflict(rid(3), "c1"), conflict(rid(2), "c2")};
    txn->append_log(log_txn(1, 11, i), cs, {});
    this->commit(std::move(txn));
  }
  auto losers = [&](uint64_t after, uint64_t up_to) {
    std::vector<std::string> out;
    for (const ConflictRecord& c : s.read_conflicts(after, up_to).value()) {
      out.push_back(c.loser.user);
      EXPECT_GT(c.server_seq, after);
      EXPECT_LE(c.server_seq, up_to);
    }
    return out;
  };
  EXPECT_EQ(losers(0, 3), (std::vector<std::string>{"a1", "c1", "c2"}));
  EXPECT_EQ(losers(1, 3), (std::vector<std::string>{"c1", "c2"}));
  EXPECT_EQ(losers(0, 2), (std::vector<std::string>{"a1"}));
  EXPECT_EQ(losers(1, 2), (std::vector<std::string>{}));
  EXPECT_EQ(losers(3, 3), (std::vector<std::string>{}));
  ConflictRecord expected = conflict(rid(3), "c1");
  expected.server_seq = 3;
  EXPECT_EQ(s.read_conflicts(2, 3).value().at(0), expected);
}

TYPED_TEST(CentralStoreContract, ScanIsOrderedWithTombstones) {
  CentralStore& s = this->store();
  std::vector<RecordState> all = {
      account(rid(5), "t1"),        account(rid(2), "t1"),
      contact(rid(1), rid(2)),      contact(rid(3), rid(2)),
      event(rid(4), "alice", 1, 2), record(EntityId::kProduct, rid(9), {{1, Value::text("SKU")}}),
  };
  all.push_back(tombstone(contact(rid(7), rid(2)), f::kContactAccount));
  this->save_all(all);
  std::vector<RecordKey> keys;
  for (const RecordState& r : s.scan(RecordKey{}, 100).value()) keys.push_back(RecordKey{r.entity, r.id});
  std::vector<RecordKey> expected = {
      {EntityId::kAccount, rid(2)},       {EntityId::kAccount, rid(5)}, {EntityId::kContact, rid(1)},
      {EntityId::kContact, rid(3)},       {EntityId::kContact, rid(7)}, {EntityId::kProduct, rid(9)},
      {EntityId::kCalendarEvent, rid(4)},
  };
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(s.record_count().value(), 6u) << "tombstones are not counted";

  // Paging by the last key gives the same sequence, whatever the page size.
  for (size_t page : {1, 2, 4}) {
    std::vector<RecordKey> paged;
    RecordKey after;
    for (;;) {
      std::vector<RecordState> chunk = s.scan(after, page).value();
      ASSERT_LE(chunk.size(), page);
      if (chunk.empty()) break;
      for (const RecordState& r : chunk) paged.push_back(RecordKey{r.entity, r.id});
      after = paged.back();
    }
    EXPECT_EQ(paged, expected) << "page size " << page;
  }
  // Starting after a tombstone's key and after an absent key.
  std::vector<RecordState> from = s.scan(RecordKey{EntityId::kContact, rid(1)}, 100).value();
  ASSERT_EQ(from.size(), 4u);
  EXPECT_EQ(from[0].id, rid(3));
  EXPECT_TRUE(from[1].deleted);
  from = s.scan(RecordKey{EntityId::kPriceListEntry, rid(0)}, 100).value();
  ASSERT_EQ(from.size(), 1u);
  EXPECT_EQ(from[0].entity, EntityId::kCalendarEvent);
}

// Exactly the records that resolve into the scopes (tombstones included), in scan order, page by page. The
// SQLite store narrows through its projection columns and must agree with resolve_scope.
TYPED_TEST(CentralStoreContract, ScanInScopesIsScanNarrowedToTheScopes) {
  CentralStore& s = this->store();
  std::vector<RecordState> all = {
      account(rid(5), "t1"),
      account(rid(2), "t2"),
      account(rid(6), "t1"),
      contact(rid(1), rid(2)),
      contact(rid(3), rid(6)),
      contact(rid(8), rid(99)),  // orphan
      event(rid(4), "alice", 1, 2),
      event(rid(10), "bob", 1, 2),
      record(EntityId::kProduct, rid(9), {{1, Value::text("SKU")}}),
  };
  all.push_back(tombstone(contact(rid(7), rid(5)), f::kContactAccount));
  this->save_all(all);
  auto keys = [&](const std::vector<ScopeKey>& scopes, size_t page) {
    std::vector<RecordKey> out;
    RecordKey after;
    for (;;) {
      std::vector<RecordState> chunk = s.scan_in_scopes(scopes, after, page).value();
      EXPECT_LE(chunk.size(), page);
      if (chunk.empty()) break;
      for (const RecordState& r : chunk) out.push_back(RecordKey{r.entity, r.id});
      after = out.back();
    }
    return out;
  };
  const ScopeKey global{ScopeKey::Kind::kGlobal, {}}, alice{ScopeKey::Kind::kOwner, "alice"};
  const std::vector<RecordKey> t1_alice_global = {
      {EntityId::kAccount, rid(5)}, {EntityId::kAccount, rid(6)}, {EntityId::kContact, rid(3)},
      {EntityId::kContact, rid(7)}, {EntityId::kProduct, rid(9)}, {EntityId::kCalendarEvent, rid(4)},
  };
  for (size_t page : {1, 2, 100})
    EXPECT_EQ(keys({global, territory("t1"), alice}, page), t1_alice_global) << "page size " << page;
  EXPECT_EQ(keys({territory("t2")}, 100),
            (std::vector<RecordKey>{{EntityId::kAccount, rid(2)}, {EntityId::kContact, rid(1)}}));
  EXPECT_EQ(keys({ScopeKey{ScopeKey::Kind::kOwner, "bob"}}, 100),
            (std::vector<RecordKey>{{EntityId::kCalendarEvent, rid(10)}}));
  EXPECT_TRUE(keys({territory("t9")}, 100).empty());
  EXPECT_TRUE(keys({}, 100).empty());
}

// The bootstrap total: what scan or scan_in_scopes would return, counted without reading the records (the
// SQLite store: index counts). Never fewer.
TYPED_TEST(CentralStoreContract, CountInScopesCountsWhatTheScanReturns) {
  CentralStore& s = this->store();
  std::vector<RecordState> all = {
      account(rid(5), "t1"),       account(rid(2), "t2"),
      account(rid(6), "t1"),       contact(rid(1), rid(2)),
      contact(rid(3), rid(6)),     event(rid(4), "alice", 1, 2),
      event(rid(10), "bob", 1, 2), record(EntityId::kProduct, rid(9), {{1, Value::text("SKU")}}),
  };
  all.push_back(tombstone(contact(rid(7), rid(5)), f::kContactAccount));
  this->save_all(all);
  auto scanned = [&](const std::optional<std::vector<ScopeKey>>& scopes) {
    uint64_t n = 0;
    RecordKey after;
    for (;;) {
      std::vector<RecordState> chunk =
          (scopes ? s.scan_in_scopes(*scopes, after, 2) : s.scan(after, 2)).value();
      if (chunk.empty()) return n;
      n += chunk.size();
      after = RecordKey{chunk.back().entity, chunk.back().id};
    }
  };
  const ScopeKey global{ScopeKey::Kind::kGlobal, {}}, alice{ScopeKey::Kind::kOwner, "alice"};
  for (const std::optional<std::vector<ScopeKey>>& scopes :
       {std::optional<std::vector<ScopeKey>>(), std::optional<std::vector<ScopeKey>>({territory("t1")}),
        std::optional<std::vector<ScopeKey>>({global, territory("t1"), alice}),
        std::optional<std::vector<ScopeKey>>({territory("t9")})}) {
    EXPECT_EQ(s.count_in_scopes(scopes).value(), scanned(scopes));
  }
  EXPECT_EQ(s.count_in_scopes({{territory("t1")}}).value(), 4u);  // two accounts, a contact, a tombstone
}

// The last bootstrap page's purge check reads what the node created, never the store: every record a
// node's logged transactions created is listed (a store may list more; callers check created.node).
TYPED_TEST(CentralStoreContract, KeysCreatedByListsTheNodesCreations) {
  CentralStore& s = this->store();
  RecordState mine = account(rid(1), "t1"), other = account(rid(2), "t1");
  mine.created = v(kStart, 21);
  other.created = v(kStart, 22);
  auto txn = s.begin();
  txn->save(mine);
  txn->save(other);
  for (const RecordState& r : {mine, other}) {
    ServerTxn t;
    t.origin_node = r.created.node;
    t.origin_user = "alice";
    t.origin_node_seq = 1;
    Change c{ChangeOp::kCreate, EntityId::kAccount, r.id};
    c.version = r.created;
    t.changes.push_back(c);
    txn->append_log(t, {}, {});
  }
  this->commit(std::move(txn));
  std::vector<RecordKey> keys = s.keys_created_by(21).value();
  EXPECT_NE(std::find(keys.begin(), keys.end(), RecordKey{EntityId::kAccount, rid(1)}), keys.end());
  EXPECT_TRUE(s.keys_created_by(23).value().empty());
}

TYPED_TEST(CentralStoreContract, ScopeChildrenOneLevelTombstonesIncluded) {
  CentralStore& s = this->store();
  RecordState order = record(EntityId::kOrder, rid(20),
                             {{f::kOrderAccount, Value::text(rid(1).to_string())},
                              {2, Value::text("alice")},
                              {f::kOrderStatus, Value::text("draft")},
                              {4, Value::text("EUR")}});
  RecordState line = record(EntityId::kOrderLine, rid(21),
                            {{f::kOrderLineOrder, Value::text(rid(20).to_string())}, {3, Value::integer(2)}});
  RecordState visit =
      record(EntityId::kVisit, rid(15),
             {{f::kVisitAccount, Value::text(rid(1).to_string())}, {f::kVisitRep, Value::text("alice")}});
  this->save_all({account(rid(1), "t1"), account(rid(2), "t1"), contact(rid(11), rid(1)),
                  contact(rid(10), rid(1)), tombstone(contact(rid(12), rid(1)), f::kContactAccount),
                  contact(rid(13), rid(2)), order, line, visit});
  std::vector<RecordKey> keys;
  for (const RecordState& r : s.scope_children(EntityId::kAccount, rid(1)).value())
    keys.push_back(RecordKey{r.entity, r.id});
  EXPECT_EQ(keys, (std::vector<RecordKey>{{EntityId::kContact, rid(10)},
                                          {EntityId::kContact, rid(11)},
                                          {EntityId::kContact, rid(12)},
                                          {EntityId::kVisit, rid(15)},
                                          {EntityId::kOrder, rid(20)}}));
  std::vector<RecordState> lines = s.scope_children(EntityId::kOrder, rid(20)).value();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], line);
  EXPECT_TRUE(s.scope_children(EntityId::kAccount, rid(3)).value().empty());
  EXPECT_TRUE(s.scope_children(EntityId::kContact, rid(10)).value().empty());
}

TYPED_TEST(CentralStoreContract, EventsOverlappingSeesTheTxnsOwnWrites) {
  CentralStore& s = this->store();
  this->save_all({event(rid(10), "alice", 100, 200), event(rid(11), "alice", 300, 400),
                  event(rid(12), "bob", 100, 200), event(rid(13), "alice", 120, 180, "cancelled"),
                  tombstone(event(rid(14), "alice", 100, 200), f::kEventOwner),
                  event(rid(15), "alice", 200, 300), event(rid(16), "alice", 50, 100)});
  auto ids = [](const std::vector<RecordState>& rs) {
    std::vector<RecordId> out;
    for (const RecordState& r : rs) out.push_back(r.id);
    return out;
  };
  auto txn = s.begin();
  // [150, 350): 10 and 15 and 11 overlap; 16 ends at 100 (half-open), 13 is cancelled, 12 is bob's.
  EXPECT_EQ(ids(txn->events_overlapping("alice", 150, 350).value()),
            (std::vector<RecordId>{rid(10), rid(11), rid(15)}));
  EXPECT_EQ(ids(txn->events_overlapping("alice", 200, 300).value()), (std::vector<RecordId>{rid(15)}));
  // This transaction moves 10 away, cancels 15 and adds 5 (a lower id than every committed event): the
  // committed ones come first, then the transaction's own, as MemoryCentralTxn orders them.
  txn->save(event(rid(10), "alice", 1000, 1100));
  txn->save(event(rid(15), "alice", 200, 300, "cancelled"));
  txn->save(event(rid(5), "alice", 160, 170));
  txn->save(event(rid(11), "alice", 300, 400));  // rewritten unchanged
  EXPECT_EQ(ids(txn->events_overlapping("alice", 150, 350).value()),
            (std::vector<RecordId>{rid(5), rid(11)}));
  EXPECT_EQ(ids(txn->events_overlapping("alice", 1050, 1060).value()), (std::vector<RecordId>{rid(10)}));
}

TYPED_TEST(CentralStoreContract, ClockPersistsAndNeverGoesBack) {
  CentralStore& s = this->store();
  auto txn = s.begin();
  txn->set_clock(make_hlc(kStart, 5));
  txn->set_clock(make_hlc(kStart, 2));
  this->commit(std::move(txn));
  EXPECT_EQ(s.clock().value(), make_hlc(kStart, 5));
  txn = s.begin();
  txn->set_clock(make_hlc(kStart - 10, 0));
  this->commit(std::move(txn));
  EXPECT_EQ(s.clock().value(), make_hlc(kStart, 5));
  this->reopen();
  EXPECT_EQ(this->store().clock().value(), make_hlc(kStart, 5));
}

TYPED_TEST(CentralStoreContract, EverythingSurvivesReopen) {
  if constexpr (!TypeParam::kDurable) GTEST_SKIP() << "in-memory store";
  RecordState a = account(rid(1), "t1");
  RecordState c = tombstone(contact(rid(2), rid(1)), f::kContactAccount);
  {
    auto txn = this->store().begin();
    txn->save(a);
    txn->save(c);
    txn->set_node_state(NodeState{11, 2});
    txn->add_rejection(StoredRejection{11, 1, "alice", ErrorCode::kOutOfScope, "no"});
    txn->append_log(log_txn(2, 11, 2), {conflict(rid(1), "alice")}, {});
    txn->set_clock(make_hlc(kStart, 1));
    this->commit(std::move(txn));
  }
  this->reopen();
  CentralStore& s = this->store();
  EXPECT_EQ(*s.load(EntityId::kAccount, rid(1)).value(), a);
  EXPECT_EQ(*s.load(EntityId::kContact, rid(2)).value(), c);
  EXPECT_EQ(s.head_seq().value(), 1u);
  EXPECT_EQ(s.read_log(0, 10).value().size(), 1u);
  EXPECT_EQ(s.read_conflicts(0, 1).value().size(), 1u);
  EXPECT_EQ(s.clock().value(), make_hlc(kStart, 1));
  EXPECT_EQ(s.record_count().value(), 1u);
  auto txn = s.begin();
  EXPECT_EQ(txn->node_state(11).value().last_node_seq, 2u);
  EXPECT_TRUE(txn->rejection(11, 1).value().has_value());
  EXPECT_EQ(txn->append_log(log_txn(1, 11, 3), {}, {}), 2u);
}

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
  EXPECT_EQ(sqlite3_column_int(q, 0), 6) << "migrated files say so";
  sqlite3_finalize(q);
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

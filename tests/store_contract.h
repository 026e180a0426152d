// The CentralStore contract: what every central store must do exactly as MemoryCentralStore (the reference)
// does. tests/sqlite_store_test.cc runs it against the memory and SQLite stores, tests/pg_store_test.cc
// against PostgreSQL.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/store.h"

namespace fieldsync::store_contract {

using schema::EntityId;
namespace f = schema::fields;

inline constexpr int64_t kStart = 1'760'000'000'000;

// ---- Record helpers

inline Version v(int64_t ms, NodeId node = 7) {
  return Version{make_hlc(ms, 0), node};
}

inline RecordId rid(uint64_t n) {
  return RecordId{0x0190000000007000ULL + n, 0x8000000000000000ULL + n};
}

inline RecordState record(EntityId e, RecordId id, std::vector<std::pair<uint16_t, Value>> fields,
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

inline RecordState account(RecordId id, const std::string& territory) {
  return record(EntityId::kAccount, id,
                {{f::kAccountName, Value::text("Account " + id.to_string().substr(0, 8))},
                 {f::kAccountTerritory, Value::text(territory)},
                 {10, Value::text("alice")}});
}

inline RecordState contact(RecordId id, RecordId acct) {
  return record(EntityId::kContact, id,
                {{f::kContactAccount, Value::text(acct.to_string())}, {2, Value::text("C")}});
}

inline RecordState event(RecordId id, const std::string& owner, int64_t start, int64_t end,
                         const std::string& status = "scheduled") {
  return record(EntityId::kCalendarEvent, id,
                {{f::kEventOwner, Value::text(owner)},
                 {3, Value::text("Meeting")},
                 {f::kEventStart, Value::integer(start)},
                 {f::kEventEnd, Value::integer(end)},
                 {f::kEventStatus, Value::text(status)}});
}

// A tombstone keeps its scope field only, as merge leaves it.
inline RecordState tombstone(RecordState r, uint16_t scope_field) {
  r.deleted = true;
  r.deleted_version = v(kStart + 1000);
  r.deleted_by = "bob";
  std::erase_if(r.fields, [&](const FieldState& fs) { return fs.field != scope_field; });
  return r;
}

inline ServerTxn log_txn(int changes, NodeId node = 11, uint64_t node_seq = 1) {
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

inline ConflictRecord conflict(RecordId rec, const std::string& loser) {
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

// ---- The contract, typed over the stores: each test binary instantiates it with its factories
// (INSTANTIATE_TYPED_TEST_SUITE_P). A factory owns its storage (a directory, a database) and has
//   static constexpr bool kDurable;            // reopen() gives back what was committed
//   std::unique_ptr<CentralStore> open();      // a store on that storage; again after the last one closed

template <typename Factory>
class CentralStoreContract : public testing::Test {
 protected:
  CentralStoreContract() { store_ = factory_.open(); }
  CentralStore& store() { return *store_; }
  // Closes and reopens a durable store; an in-memory one stays as it is.
  void reopen() {
    if constexpr (Factory::kDurable) {
      store_.reset();
      store_ = factory_.open();
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

  Factory factory_;
  std::unique_ptr<CentralStore> store_;
};
TYPED_TEST_SUITE_P(CentralStoreContract);

TYPED_TEST_P(CentralStoreContract, EmptyStore) {
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

TYPED_TEST_P(CentralStoreContract, SaveIsVisibleInTheTxnAndAfterCommitOnly) {
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

// A record the transaction read as absent is saved (SQLite: a plain INSERT, no statement journal), then saved
// again in the same transaction (the upsert: it exists now), then moved in a later one.
TYPED_TEST_P(CentralStoreContract, ARecordReadAsAbsentIsCreatedThenUpdated) {
  CentralStore& s = this->store();
  RecordState a = account(rid(1), "t-north");
  a.fields[0].fragments.clear();
  RecordState moved = a;
  moved.mutable_field(f::kAccountTerritory)->value = Value::text("t-south");
  {
    auto txn = s.begin();
    ASSERT_FALSE(txn->load(EntityId::kAccount, rid(1)).value().has_value());
    ASSERT_FALSE(txn->load(EntityId::kContact, rid(2)).value().has_value());
    txn->save(a);
    EXPECT_EQ(*txn->load(EntityId::kAccount, rid(1)).value(), a);
    txn->save(moved);  // the second save of a record read as absent
    EXPECT_EQ(*txn->load(EntityId::kAccount, rid(1)).value(), moved);
    txn->save(a);
    this->commit(std::move(txn));
  }
  EXPECT_EQ(*s.load(EntityId::kAccount, rid(1)).value(), a);
  EXPECT_EQ(s.record_count().value(), 1u);
  {
    // Read as absent in a dropped transaction: the next one reads it again.
    auto txn = s.begin();
    ASSERT_FALSE(txn->load(EntityId::kContact, rid(2)).value().has_value());
    txn->save(contact(rid(2), rid(1)));
  }
  {
    auto txn = s.begin();
    ASSERT_FALSE(txn->load(EntityId::kContact, rid(2)).value().has_value());
    txn->save(contact(rid(2), rid(1)));
    ASSERT_TRUE(txn->load(EntityId::kAccount, rid(1)).value().has_value());
    txn->save(moved);  // read as present: updated in place
    this->commit(std::move(txn));
  }
  EXPECT_EQ(*s.load(EntityId::kAccount, rid(1)).value(), moved);
  EXPECT_EQ(*s.load(EntityId::kContact, rid(2)).value(), contact(rid(2), rid(1)));
  EXPECT_EQ(s.record_count().value(), 2u);
}

TYPED_TEST_P(CentralStoreContract, DroppedTxnLeavesNothing) {
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

TYPED_TEST_P(CentralStoreContract, NodeStateAndRejections) {
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

TYPED_TEST_P(CentralStoreContract, AppendLogAssignsConsecutiveSequences) {
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

TYPED_TEST_P(CentralStoreContract, ReadLogBatchesByChangeCount) {
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

inline ScopeKey territory(const std::string& t) {
  return ScopeKey{ScopeKey::Kind::kTerritory, t};
}

TYPED_TEST_P(CentralStoreContract, ReadLogForReadsOnlyTheGivenScopes) {
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

TYPED_TEST_P(CentralStoreContract, ReadConflictsRange) {
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

TYPED_TEST_P(CentralStoreContract, ScanIsOrderedWithTombstones) {
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
TYPED_TEST_P(CentralStoreContract, ScanInScopesIsScanNarrowedToTheScopes) {
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
TYPED_TEST_P(CentralStoreContract, CountInScopesCountsWhatTheScanReturns) {
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
  // A bootstrap page's records as stored (scan_stored_in_scopes) are the scan's records, page for page.
  for (const std::vector<ScopeKey>& scopes :
       {std::vector<ScopeKey>{territory("t1")}, std::vector<ScopeKey>{global, territory("t1"), alice},
        std::vector<ScopeKey>{territory("t1"), territory("t2")}, std::vector<ScopeKey>{territory("t9")}}) {
    for (RecordKey after;;) {
      std::vector<RecordState> chunk = s.scan_in_scopes(scopes, after, 2).value();
      std::vector<std::vector<uint8_t>> stored = s.scan_stored_in_scopes(scopes, after, 2).value();
      ASSERT_EQ(stored.size(), chunk.size());
      for (size_t i = 0; i < chunk.size(); ++i) EXPECT_EQ(codec::decode_record(stored[i]).value(), chunk[i]);
      if (chunk.empty()) break;
      after = RecordKey{chunk.back().entity, chunk.back().id};
    }
  }
}

// The last bootstrap page's purge check reads what the node created, never the store: every record a
// node's logged transactions created is listed (a store may list more; callers check created.node).
TYPED_TEST_P(CentralStoreContract, KeysCreatedByListsTheNodesCreations) {
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

TYPED_TEST_P(CentralStoreContract, ScopeChildrenOneLevelTombstonesIncluded) {
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

TYPED_TEST_P(CentralStoreContract, EventsOverlappingSeesTheTxnsOwnWrites) {
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

TYPED_TEST_P(CentralStoreContract, ClockPersistsAndNeverGoesBack) {
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

REGISTER_TYPED_TEST_SUITE_P(CentralStoreContract, EmptyStore, SaveIsVisibleInTheTxnAndAfterCommitOnly,
                            ARecordReadAsAbsentIsCreatedThenUpdated, DroppedTxnLeavesNothing,
                            NodeStateAndRejections, AppendLogAssignsConsecutiveSequences,
                            ReadLogBatchesByChangeCount, ReadLogForReadsOnlyTheGivenScopes,
                            ReadConflictsRange, ScanIsOrderedWithTombstones,
                            ScanInScopesIsScanNarrowedToTheScopes, CountInScopesCountsWhatTheScanReturns,
                            KeysCreatedByListsTheNodesCreations, ScopeChildrenOneLevelTombstonesIncluded,
                            EventsOverlappingSeesTheTxnsOwnWrites, ClockPersistsAndNeverGoesBack);

// ---- What only a durable store promises (instantiated for SQLite and PostgreSQL, not the memory store, so
// no test is skipped).
template <typename Factory>
class DurableStoreContract : public CentralStoreContract<Factory> {
  static_assert(Factory::kDurable, "the durable contract is for stores that keep their data across a reopen");
};
TYPED_TEST_SUITE_P(DurableStoreContract);

TYPED_TEST_P(DurableStoreContract, EverythingSurvivesReopen) {
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

REGISTER_TYPED_TEST_SUITE_P(DurableStoreContract, EverythingSurvivesReopen);

}  // namespace fieldsync::store_contract

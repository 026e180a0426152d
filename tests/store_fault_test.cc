// Store reads that fail (issue 16, section 4): SyncServer over a SQLite central store whose reads fail on
// demand (support/read_fault_store.h). Each test sweeps the failure over every read a request makes -- the
// first, the second, ... until a request makes no read that fails -- and requires each time a retryable error
// and nothing applied, recorded or sent that the failed read would have decided.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <utility>

#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/server.h"
#include "fieldsync/sync/tuning.h"
#include "support/read_fault_store.h"
#include "support/sync_fixtures.h"

namespace fieldsync {
namespace {

using schema::EntityId;
using schema::Role;
using testing_support::ReadFaultStore;
using testing_support::TokenAuth;
namespace f = schema::fields;

constexpr int64_t kStart = 1'760'000'000'000;
constexpr uint16_t kAccountName = 1;
constexpr uint16_t kAccountTerritory = 2;
constexpr uint16_t kAccountOwner = 10;
constexpr uint16_t kEventTitle = 3;

Change create(EntityId e, RecordId id) {
  return Change{ChangeOp::kCreate, e, id};
}
Change set(EntityId e, RecordId id, uint16_t field, Value v) {
  Change c{ChangeOp::kSet, e, id, field};
  c.value = std::move(v);
  return c;
}

class Rig {
 public:
  Rig() {
    char tmpl[] = "/tmp/fieldsync-store-fault-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    auto opened = server::SqliteCentralStore::open(dir_ + "/central.db", {});
    EXPECT_TRUE(opened.is_ok()) << opened.status().to_string();
    sqlite = std::move(opened.value());
    store = std::make_unique<ReadFaultStore>(*sqlite);
    auth.tokens["token-alice"] = Principal{"alice", Role::kRep, {"t-north"}, {}};
    auth.tokens["token-bob"] = Principal{"bob", Role::kRep, {"t-north"}, {}};
    server = std::make_unique<SyncServer>(*store, auth, ServerConfig{});
  }
  ~Rig() {
    server.reset();
    store.reset();
    sqlite.reset();
    std::filesystem::remove_all(dir_);
  }

  // The k-th read from now fails (once); 0: none.
  void fail_read_number(uint64_t k) {
    uint64_t n = 0;
    store->set_fail_read([n, k]() mutable { return ++n == k; });
  }
  void heal() { store->set_fail_read({}); }

  SessionId connect(NodeId node, const std::string& user, uint64_t cursor = 0) {
    SessionId s = next_session++;
    server->on_connect(s, now);
    protocol::Hello h;
    h.schema_version = schema::kSchemaVersion;
    h.node = node;
    h.token = "token-" + user;
    h.cursor = cursor;
    h.client_time_ms = now;
    server->on_message(s, h, now);
    return s;
  }
  std::vector<protocol::Message> take(SessionId s) {
    std::vector<protocol::Message> out;
    for (SyncServer::Outgoing& o : server->take_outgoing())
      if (o.session == s) out.push_back(std::move(o.message));
    return out;
  }
  ClientTxn txn(NodeId node, uint64_t node_seq, std::vector<Change> changes) {
    ClientTxn t;
    t.node = node;
    t.node_seq = node_seq;
    t.created_at_ms = now;
    for (Change& c : changes) c.version = Version{make_hlc(now, ++logical), node};
    t.changes = std::move(changes);
    return t;
  }
  uint64_t head() { return sqlite->head_seq().value(); }
  uint64_t last_node_seq(NodeId node) { return sqlite->node_state(node).value().last_node_seq; }

  std::string dir_;
  std::unique_ptr<server::SqliteCentralStore> sqlite;
  std::unique_ptr<ReadFaultStore> store;
  TokenAuth auth;
  std::unique_ptr<SyncServer> server;
  SessionId next_session = 1;
  int64_t now = kStart;
  uint16_t logical = 0;
};

const protocol::Error* error_in(const std::vector<protocol::Message>& out) {
  for (const protocol::Message& m : out)
    if (const auto* e = std::get_if<protocol::Error>(&m)) return e;
  return nullptr;
}

template <typename M>
const M* find(const std::vector<protocol::Message>& out) {
  for (const protocol::Message& m : out)
    if (const auto* x = std::get_if<M>(&m)) return x;
  return nullptr;
}

// alice's account in the north and a scheduled event of hers, committed without faults.
struct Seeded {
  RecordId account{1, 1};
  RecordId event{1, 2};
};
Seeded seed(Rig& r, SessionId alice) {
  Seeded s;
  protocol::PushTxns push;
  push.request_id = 1;
  push.txns.push_back(r.txn(11, 1,
                            {create(EntityId::kAccount, s.account),
                             set(EntityId::kAccount, s.account, kAccountName, Value::text("Bakery")),
                             set(EntityId::kAccount, s.account, kAccountTerritory, Value::text("t-north")),
                             set(EntityId::kAccount, s.account, kAccountOwner, Value::text("alice"))}));
  push.txns.push_back(
      r.txn(11, 2,
            {create(EntityId::kCalendarEvent, s.event),
             set(EntityId::kCalendarEvent, s.event, f::kEventOwner, Value::text("alice")),
             set(EntityId::kCalendarEvent, s.event, kEventTitle, Value::text("Visit")),
             set(EntityId::kCalendarEvent, s.event, f::kEventStart, Value::integer(kStart)),
             set(EntityId::kCalendarEvent, s.event, f::kEventEnd, Value::integer(kStart + 3600000)),
             set(EntityId::kCalendarEvent, s.event, f::kEventStatus, Value::text("scheduled"))}));
  r.server->on_message(alice, push, r.now);
  std::vector<protocol::Message> out = r.take(alice);
  const auto* ack = find<protocol::PushAck>(out);
  const protocol::Error* e = error_in(out);
  EXPECT_TRUE(ack != nullptr && ack->results.size() == 2) << (e ? e->message : std::string("no error"));
  if (ack != nullptr) {
    for (const protocol::TxnResult& t : ack->results) EXPECT_EQ(t.outcome, protocol::TxnOutcome::kApplied);
  }
  return s;
}

TEST(StoreReadFaults, AFailedReadInAPushAppliesNothingAndIsRetryable) {
  Rig r;
  SessionId alice = r.connect(11, "alice");
  ASSERT_NE(find<protocol::Welcome>(r.take(alice)), nullptr);
  Seeded s = seed(r, alice);
  const uint64_t head = r.head();
  // An update of the account (a failed load must not look like "no such record") and an overlapping event
  // (a failed events_overlapping must not look like "no conflict").
  RecordId second{1, 3};
  ClientTxn t = r.txn(11, 3,
                      {set(EntityId::kAccount, s.account, kAccountName, Value::text("Bakery Nord")),
                       create(EntityId::kCalendarEvent, second),
                       set(EntityId::kCalendarEvent, second, f::kEventOwner, Value::text("alice")),
                       set(EntityId::kCalendarEvent, second, kEventTitle, Value::text("Call")),
                       set(EntityId::kCalendarEvent, second, f::kEventStart, Value::integer(kStart + 60000)),
                       set(EntityId::kCalendarEvent, second, f::kEventEnd, Value::integer(kStart + 120000)),
                       set(EntityId::kCalendarEvent, second, f::kEventStatus, Value::text("scheduled"))});
  uint64_t failures = 0;
  for (uint64_t k = 1;; ++k) {
    ASSERT_LT(k, 200u);
    const uint64_t failed_before = r.store->failed_reads;
    r.fail_read_number(k);
    protocol::PushTxns push;
    push.request_id = 100 + k;
    push.txns = {t};
    r.server->on_message(alice, push, r.now);
    std::vector<protocol::Message> out = r.take(alice);
    r.heal();
    // Once the push makes fewer than k reads (or the k-th is the live fan-out's, after the commit) it goes
    // through.
    if (const auto* ack = find<protocol::PushAck>(out)) {
      ASSERT_EQ(ack->results.size(), 1u);
      EXPECT_EQ(ack->results[0].outcome, protocol::TxnOutcome::kApplied);
      EXPECT_EQ(ack->results[0].conflicts.size(), 1u) << "the overlapping event";
      break;
    }
    ASSERT_GT(r.store->failed_reads, failed_before);
    ++failures;
    SCOPED_TRACE("read " + std::to_string(k) + " failed");
    const protocol::Error* e = error_in(out);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(e->retryable);
    EXPECT_EQ(e->code, ErrorCode::kStorageIo);
    EXPECT_EQ(e->request_id, push.request_id);
    EXPECT_EQ(find<protocol::PushAck>(out), nullptr) << "nothing acknowledged";
    EXPECT_TRUE(r.server->take_closing().empty()) << "the session stays; the device pushes again";
    EXPECT_EQ(r.head(), head) << "nothing applied";
    EXPECT_EQ(r.last_node_seq(11), 2u) << "nothing recorded, not even a rejection";
    EXPECT_EQ(r.sqlite->load(EntityId::kAccount, s.account).value()->get(kAccountName),
              Value::text("Bakery"));
  }
  EXPECT_GE(failures, 4u) << "the sweep covered the push's reads";
  EXPECT_EQ(r.head(), head + 1);
  EXPECT_EQ(r.sqlite->load(EntityId::kAccount, s.account).value()->get(kAccountName),
            Value::text("Bakery Nord"));
}

TEST(StoreReadFaults, AFailedReadLaterInAPushAcknowledgesOnlyWhatWentBefore) {
  Rig r;
  SessionId alice = r.connect(11, "alice");
  r.take(alice);
  Seeded s = seed(r, alice);
  const uint64_t head = r.head();
  protocol::PushTxns push;
  push.request_id = 7;
  push.txns = {r.txn(11, 3, {set(EntityId::kAccount, s.account, kAccountName, Value::text("One"))}),
               r.txn(11, 4, {set(EntityId::kAccount, s.account, kAccountName, Value::text("Two"))})};
  // One read fails once the first transaction is applied (not yet committed: the server applies a push's
  // transactions in runs of one store transaction, and drops a run whose read failed).
  bool failed = false;
  const uint64_t appended = r.store->appended;
  r.store->set_fail_read([&] { return r.store->appended > appended && !std::exchange(failed, true); });
  r.server->on_message(alice, push, r.now);
  std::vector<protocol::Message> out = r.take(alice);
  r.heal();
  const auto* ack = find<protocol::PushAck>(out);
  ASSERT_NE(ack, nullptr);
  ASSERT_EQ(ack->results.size(), 1u);
  EXPECT_EQ(ack->results[0].node_seq, 3u);
  const protocol::Error* e = error_in(out);
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->retryable);
  EXPECT_EQ(r.last_node_seq(11), 3u);
  EXPECT_EQ(r.head(), head + 1);
}

// The server applies a push's transactions in runs of one store transaction; a run whose read fails is
// dropped and applied again one transaction at a time up to the failure. Whichever read fails, what is
// acknowledged is exactly what is committed, in order, and the device's resend of the rest applies it once.
TEST(StoreReadFaults, AnyFailedReadInAPushAcknowledgesExactlyWhatIsCommitted) {
  const std::vector<std::string> names = {"A", "B", "C"};
  bool partly = false;
  for (uint64_t k = 1;; ++k) {
    ASSERT_LT(k, 200u);
    SCOPED_TRACE("read " + std::to_string(k) + " fails");
    Rig r;
    SessionId alice = r.connect(11, "alice");
    r.take(alice);
    Seeded s = seed(r, alice);
    const uint64_t head = r.head();
    std::vector<ClientTxn> txns;
    for (size_t i = 0; i < names.size(); ++i)
      txns.push_back(
          r.txn(11, 3 + i, {set(EntityId::kAccount, s.account, kAccountName, Value::text(names[i]))}));
    protocol::PushTxns push;
    push.request_id = 7;
    push.txns = txns;
    r.fail_read_number(k);
    r.server->on_message(alice, push, r.now);
    std::vector<protocol::Message> out = r.take(alice);
    r.heal();
    const auto* ack = find<protocol::PushAck>(out);
    const size_t acked = ack ? ack->results.size() : 0;
    for (size_t i = 0; i < acked; ++i) {
      EXPECT_EQ(ack->results[i].node_seq, 3 + i);
      EXPECT_EQ(ack->results[i].outcome, protocol::TxnOutcome::kApplied);
    }
    EXPECT_EQ(r.last_node_seq(11), 2 + acked);
    EXPECT_EQ(r.head(), head + acked);
    EXPECT_EQ(r.sqlite->load(EntityId::kAccount, s.account).value()->get(kAccountName),
              Value::text(acked == 0 ? "Bakery" : names[acked - 1]));
    if (acked == names.size()) {
      EXPECT_EQ(error_in(out), nullptr);
      break;  // the push makes fewer than k reads
    }
    ASSERT_NE(error_in(out), nullptr);
    EXPECT_TRUE(error_in(out)->retryable);
    partly |= acked > 0;
    // The device sends what was not acknowledged again: applied once.
    push.request_id = 8;
    push.txns.assign(txns.begin() + static_cast<std::ptrdiff_t>(acked), txns.end());
    r.server->on_message(alice, push, r.now);
    out = r.take(alice);
    ack = find<protocol::PushAck>(out);
    ASSERT_NE(ack, nullptr);
    EXPECT_EQ(ack->results.size(), names.size() - acked);
    EXPECT_EQ(r.head(), head + names.size());
    EXPECT_EQ(r.last_node_seq(11), 2 + names.size());
    EXPECT_EQ(r.sqlite->load(EntityId::kAccount, s.account).value()->get(kAccountName), Value::text("C"));
  }
  EXPECT_TRUE(partly) << "some failure fell after the first transaction: the run was applied again";
}

// A run whose commit fails is applied again one transaction at a time.
TEST(StoreReadFaults, ARunWhoseCommitFailsIsAppliedAgainOneTransactionAtATime) {
  Rig r;
  SessionId alice = r.connect(11, "alice");
  r.take(alice);
  Seeded s = seed(r, alice);
  const uint64_t head = r.head();
  protocol::PushTxns push;
  push.request_id = 7;
  push.txns = {r.txn(11, 3, {set(EntityId::kAccount, s.account, kAccountName, Value::text("One"))}),
               r.txn(11, 4, {set(EntityId::kAccount, s.account, kAccountName, Value::text("Two"))})};
  r.store->fail_next_commits = 1;
  r.server->on_message(alice, push, r.now);
  std::vector<protocol::Message> out = r.take(alice);
  EXPECT_EQ(error_in(out), nullptr);
  const auto* ack = find<protocol::PushAck>(out);
  ASSERT_NE(ack, nullptr);
  ASSERT_EQ(ack->results.size(), 2u);
  EXPECT_EQ(r.head(), head + 2);
  EXPECT_EQ(r.last_node_seq(11), 4u);
  // The run's commit and then the first transaction's own commit fail: nothing is acknowledged or applied.
  push.request_id = 8;
  push.txns = {r.txn(11, 5, {set(EntityId::kAccount, s.account, kAccountName, Value::text("Three"))}),
               r.txn(11, 6, {set(EntityId::kAccount, s.account, kAccountName, Value::text("Four"))})};
  r.store->fail_next_commits = 2;
  r.server->on_message(alice, push, r.now);
  out = r.take(alice);
  EXPECT_EQ(find<protocol::PushAck>(out), nullptr);
  ASSERT_NE(error_in(out), nullptr);
  EXPECT_TRUE(error_in(out)->retryable);
  EXPECT_EQ(r.head(), head + 2);
  EXPECT_EQ(r.last_node_seq(11), 4u);
  EXPECT_EQ(r.sqlite->load(EntityId::kAccount, s.account).value()->get(kAccountName), Value::text("Two"));
}

// More transactions than one run holds, with a rejection in the middle: each is judged alone, on what the
// ones before it left, across runs.
TEST(PushRuns, EveryTransactionOfALongPushIsJudgedAlone) {
  Rig r;
  SessionId alice = r.connect(11, "alice");
  r.take(alice);
  Seeded s = seed(r, alice);
  const uint64_t head = r.head();
  const size_t n = 2 * tuning::kMaxTxnsPerStoreTxn + 10;
  const size_t bad = tuning::kMaxTxnsPerStoreTxn + 3;  // in the second run
  protocol::PushTxns push;
  push.request_id = 7;
  for (size_t i = 0; i < n; ++i) {
    // The bad one sets the account's name to a number: rejected by validation, and alone.
    Value v = i == bad ? Value::integer(5) : Value::text("N" + std::to_string(i));
    push.txns.push_back(r.txn(11, 3 + i, {set(EntityId::kAccount, s.account, kAccountName, v)}));
  }
  r.server->on_message(alice, push, r.now);
  std::vector<protocol::Message> out = r.take(alice);
  ASSERT_EQ(error_in(out), nullptr);
  const auto* ack = find<protocol::PushAck>(out);
  ASSERT_NE(ack, nullptr);
  ASSERT_EQ(ack->results.size(), n);
  uint64_t seq = head;
  for (size_t i = 0; i < n; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(ack->results[i].node_seq, 3 + i);
    if (i == bad) {
      EXPECT_EQ(ack->results[i].outcome, protocol::TxnOutcome::kRejected);
      ASSERT_EQ(ack->results[i].records.size(), 1u) << "the record as the transactions before it left it";
      EXPECT_EQ(ack->results[i].records[0].get(kAccountName), Value::text("N" + std::to_string(i - 1)));
      EXPECT_EQ(ack->results[i].server_seq, seq);
    } else {
      EXPECT_EQ(ack->results[i].outcome, protocol::TxnOutcome::kApplied);
      EXPECT_EQ(ack->results[i].server_seq, ++seq);
    }
  }
  EXPECT_EQ(r.head(), head + n - 1);
  EXPECT_EQ(r.last_node_seq(11), 2 + n);
  EXPECT_EQ(r.sqlite->load(EntityId::kAccount, s.account).value()->get(kAccountName),
            Value::text("N" + std::to_string(n - 1)));
  // The same push again: duplicates, and the rejection as recorded.
  push.request_id = 8;
  r.server->on_message(alice, push, r.now);
  out = r.take(alice);
  ack = find<protocol::PushAck>(out);
  ASSERT_NE(ack, nullptr);
  ASSERT_EQ(ack->results.size(), n);
  for (size_t i = 0; i < n; ++i)
    EXPECT_EQ(ack->results[i].outcome,
              i == bad ? protocol::TxnOutcome::kRejected : protocol::TxnOutcome::kDuplicate);
  EXPECT_EQ(r.head(), head + n - 1);
}

// ServerConfig::stored_pages (as SyncService runs): pages of stored record bytes. Every failed read of the
// bootstrap is a retryable error with no page, and the page after healing holds what the decoded path sends.
TEST(StoreReadFaults, StoredPagesFailedReadsAreRetryableAndSendNothing) {
  Rig r;
  ServerConfig config;
  config.stored_pages = true;
  r.server = std::make_unique<SyncServer>(*r.store, r.auth, config);
  SessionId alice = r.connect(11, "alice");
  r.take(alice);
  seed(r, alice);
  SessionId bob = r.connect(12, "bob");
  r.take(bob);
  protocol::BootstrapRequest boot;
  boot.request_id = 6;
  r.server->on_message(bob, boot, r.now);
  const protocol::BootstrapPage expected_page = *find<protocol::BootstrapPage>(r.take(bob));
  ASSERT_TRUE(expected_page.records.empty());
  ASSERT_EQ(expected_page.stored.size(), 1u);
  ASSERT_EQ(codec::with_records(expected_page).records.size(), 1u);
  EXPECT_EQ(
      codec::with_records(expected_page).records[0].id,
      r.sqlite->scan_in_scopes({ScopeKey{ScopeKey::Kind::kTerritory, "t-north"}}, {}, 10).value()[0].id);
  uint64_t boot_failures = 0;
  for (uint64_t k = 1;; ++k) {
    ASSERT_LT(k, 200u);
    const uint64_t before = r.store->failed_reads;
    r.fail_read_number(k);
    r.server->on_message(bob, boot, r.now);
    std::vector<protocol::Message> out = r.take(bob);
    r.heal();
    if (r.store->failed_reads == before) {
      const auto* page = find<protocol::BootstrapPage>(out);
      ASSERT_NE(page, nullptr);
      EXPECT_EQ(*page, expected_page);
      break;
    }
    ++boot_failures;
    const protocol::Error* e = error_in(out);
    ASSERT_NE(e, nullptr) << "bootstrap, read " << k;
    EXPECT_TRUE(e->retryable);
    EXPECT_EQ(find<protocol::BootstrapPage>(out), nullptr);
    ASSERT_EQ(r.server->take_closing().size(), 1u);
    r.server->on_disconnect(bob);
    bob = r.connect(12, "bob");
    ASSERT_NE(find<protocol::Welcome>(r.take(bob)), nullptr);
  }
  EXPECT_GE(boot_failures, 3u);  // head, count, the stored scan (and the scan for the end)
}

TEST(StoreReadFaults, FailedReadsOnPullHelloAndBootstrapAreRetryableAndSendNothing) {
  Rig r;
  SessionId alice = r.connect(11, "alice");
  r.take(alice);
  seed(r, alice);
  // The answers without faults, to compare with.
  SessionId bob = r.connect(12, "bob");
  r.take(bob);
  protocol::PullRequest pull;
  pull.request_id = 5;
  pull.cursor = 0;
  r.server->on_message(bob, pull, r.now);
  const protocol::ChangeBatch expected_batch = *find<protocol::ChangeBatch>(r.take(bob));
  ASSERT_EQ(expected_batch.txns.size(), 1u) << "the account (alice's event is hers alone)";
  protocol::BootstrapRequest boot;
  boot.request_id = 6;
  r.server->on_message(bob, boot, r.now);
  const protocol::BootstrapPage expected_page = *find<protocol::BootstrapPage>(r.take(bob));
  ASSERT_EQ(expected_page.records.size(), 1u);

  uint64_t pull_failures = 0, boot_failures = 0, hello_failures = 0;
  for (uint64_t k = 1;; ++k) {
    ASSERT_LT(k, 200u);
    const uint64_t before = r.store->failed_reads;
    r.fail_read_number(k);
    r.server->on_message(bob, pull, r.now);
    std::vector<protocol::Message> out = r.take(bob);
    r.heal();
    if (r.store->failed_reads == before) {
      const auto* batch = find<protocol::ChangeBatch>(out);
      ASSERT_NE(batch, nullptr);
      EXPECT_EQ(*batch, expected_batch);
      break;
    }
    ++pull_failures;
    const protocol::Error* e = error_in(out);
    ASSERT_NE(e, nullptr) << "pull, read " << k;
    EXPECT_TRUE(e->retryable);
    EXPECT_EQ(e->request_id, pull.request_id);
    EXPECT_EQ(find<protocol::ChangeBatch>(out), nullptr);
    EXPECT_TRUE(r.server->take_closing().empty());
  }
  for (uint64_t k = 1;; ++k) {
    ASSERT_LT(k, 200u);
    const uint64_t before = r.store->failed_reads;
    r.fail_read_number(k);
    r.server->on_message(bob, boot, r.now);
    std::vector<protocol::Message> out = r.take(bob);
    r.heal();
    if (r.store->failed_reads == before) {
      const auto* page = find<protocol::BootstrapPage>(out);
      ASSERT_NE(page, nullptr);
      EXPECT_EQ(*page, expected_page);
      break;
    }
    ++boot_failures;
    const protocol::Error* e = error_in(out);
    ASSERT_NE(e, nullptr) << "bootstrap, read " << k;
    EXPECT_TRUE(e->retryable);
    EXPECT_EQ(find<protocol::BootstrapPage>(out), nullptr);
    // The session closes: a bootstrapping device asks again after it reconnects.
    std::vector<SessionId> closing = r.server->take_closing();
    ASSERT_EQ(closing.size(), 1u);
    r.server->on_disconnect(bob);
    bob = r.connect(12, "bob");
    ASSERT_NE(find<protocol::Welcome>(r.take(bob)), nullptr);
  }
  for (uint64_t k = 1;; ++k) {
    ASSERT_LT(k, 50u);
    const uint64_t before = r.store->failed_reads;
    r.fail_read_number(k);
    SessionId s = r.connect(12, "bob", 2);
    std::vector<protocol::Message> out = r.take(s);
    r.heal();
    if (r.store->failed_reads == before) {
      const auto* w = find<protocol::Welcome>(out);
      ASSERT_NE(w, nullptr);
      EXPECT_EQ(w->server_seq, 2u);
      break;
    }
    ++hello_failures;
    const protocol::Error* e = error_in(out);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(e->retryable);
    EXPECT_EQ(find<protocol::Welcome>(out), nullptr);
    EXPECT_EQ(r.server->take_closing().size(), 1u);
    r.server->on_disconnect(s);
  }
  EXPECT_GE(pull_failures, 2u);
  EXPECT_GE(boot_failures, 3u);
  EXPECT_GE(hello_failures, 2u);
}

TEST(StoreReadFaults, AFailedFanOutReadIsRetriedByThePoll) {
  Rig r;
  SessionId alice = r.connect(11, "alice");
  r.take(alice);
  SessionId bob = r.connect(12, "bob");
  r.take(bob);
  protocol::PullRequest live;
  live.request_id = 3;
  live.live = true;
  r.server->on_message(bob, live, r.now);
  ASSERT_NE(find<protocol::ChangeBatch>(r.take(bob)), nullptr);
  // Reads fail as soon as alice's push is committed: the fan-out to bob cannot read the log.
  r.store->set_fail_read([&] { return r.head() >= 2; });
  seed(r, alice);
  EXPECT_EQ(find<protocol::ChangeBatch>(r.take(bob)), nullptr) << "nothing sent from a failed read";
  r.server->poll_external_commits(r.now);
  EXPECT_EQ(find<protocol::ChangeBatch>(r.take(bob)), nullptr) << "still failing";
  r.heal();
  r.server->poll_external_commits(r.now);
  const std::vector<protocol::Message> out = r.take(bob);  // kept: `batch` points into it
  const auto* batch = find<protocol::ChangeBatch>(out);
  ASSERT_NE(batch, nullptr) << "the poll retried the fan-out";
  EXPECT_EQ(batch->to_cursor, 2u);
  EXPECT_EQ(batch->txns.size(), 1u) << "the account; alice's event is not bob's";
}

TEST(StoreReadFaults, AFailedCommitIsAStatusNotAnOutcome) {
  Rig r;
  SessionId alice = r.connect(11, "alice");
  r.take(alice);
  Seeded s = seed(r, alice);
  r.store->fail_commits = true;
  Result<protocol::TxnResult> local = r.server->apply_local(
      r.txn(77, 1, {set(EntityId::kAccount, s.account, kAccountName, Value::text("HQ"))}),
      Principal{"ho", Role::kHeadOffice, {}, {}}, r.now);
  ASSERT_FALSE(local.is_ok());
  EXPECT_TRUE(local.status().retryable());
  EXPECT_EQ(local.status().code(), ErrorCode::kStorageFull);
  protocol::PushTxns push;
  push.request_id = 9;
  push.txns = {r.txn(11, 3, {set(EntityId::kAccount, s.account, kAccountName, Value::text("X"))})};
  r.server->on_message(alice, push, r.now);
  std::vector<protocol::Message> out = r.take(alice);
  EXPECT_EQ(find<protocol::PushAck>(out), nullptr);
  ASSERT_NE(error_in(out), nullptr);
  EXPECT_TRUE(error_in(out)->retryable);
  EXPECT_EQ(r.head(), 2u);
  EXPECT_EQ(r.last_node_seq(77), 0u);
  EXPECT_EQ(r.last_node_seq(11), 2u);
}

}  // namespace
}  // namespace fieldsync

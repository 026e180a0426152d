// The client and server state machines driven together through their public interfaces, with in-memory stores
// and a loopback that hands messages across directly (the simulator adds the codec and network faults).
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>

#include "fieldsync/sync/client.h"
#include "fieldsync/sync/server.h"
#include "fieldsync/sync/tuning.h"
#include "support/forwarding_store.h"
#include "support/memory_store.h"
#include "support/sync_fixtures.h"

namespace fieldsync {
namespace {

using schema::EntityId;
using schema::Role;
namespace f = schema::fields;

constexpr int64_t kStart = 1'760'000'000'000;

using testing_support::Device;
using testing_support::TokenAuth;

class World {
 public:
  explicit World(ServerConfig config = {}) {
    auth.tokens["token-ho"] = Principal{"ho", Role::kHeadOffice, {}, {}};
    auth.tokens["token-alice"] = Principal{"alice", Role::kRep, {"t-north"}, {}};
    auth.tokens["token-bob"] = Principal{"bob", Role::kRep, {"t-north"}, {}};
    auth.tokens["token-carol"] = Principal{"carol", Role::kRep, {"t-south"}, {}};
    server = std::make_unique<SyncServer>(store, auth, config);
  }

  void connect(Device& d) {
    d.session = next_session++;
    server->on_connect(d.session, now);
    d.client->on_connected(now);
    pump();
  }
  void disconnect(Device& d) {
    if (d.session == 0) return;
    server->on_disconnect(d.session);
    d.client->on_disconnected(now);
    d.session = 0;
  }

  // Delivers messages both ways until nothing moves. `drop_to_client` loses every server->client message
  // (an ack lost on the way), to test re-sends.
  void pump(bool drop_to_client = false) {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (Device* d : devices) {
        for (protocol::Message& m : d->client->take_outgoing()) {
          moved = true;
          if (watch) watch(*d, m, true);
          if (d->session != 0) server->on_message(d->session, m, now);
        }
        for (ClientEvent& e : d->client->take_events()) d->events.push_back(std::move(e));
      }
      for (SyncServer::Outgoing& o : server->take_outgoing()) {
        moved = true;
        if (drop_to_client) continue;
        for (Device* d : devices) {
          if (d->session != o.session) continue;
          if (watch) watch(*d, o.message, false);
          d->client->on_message(o.message, now);
        }
      }
      for (SessionId closed : server->take_closing()) {
        for (Device* d : devices)
          if (d->session == closed) disconnect(*d);
      }
      if (!moved) return;
    }
    FAIL() << "messages still moving after 1000 rounds";
  }

  Device& add(NodeId node, UserId user) {
    owned.push_back(std::make_unique<Device>(node, user));
    devices.push_back(owned.back().get());
    return *owned.back();
  }

  MemoryCentralStore store;
  TokenAuth auth;
  std::unique_ptr<SyncServer> server;
  // Sees every message pump() delivers (to_server: from the device).
  std::function<void(Device&, const protocol::Message&, bool to_server)> watch;
  std::vector<std::unique_ptr<Device>> owned;
  std::vector<Device*> devices;
  SessionId next_session = 1;
  int64_t now = kStart;
};

Change create(EntityId e, RecordId id) {
  return Change{ChangeOp::kCreate, e, id};
}
Change set(EntityId e, RecordId id, uint16_t field, Value v) {
  Change c{ChangeOp::kSet, e, id, field};
  c.value = std::move(v);
  return c;
}

RecordId new_account(World& w, Device& d, const std::string& territory, const std::string& name) {
  RecordId id = d.ids.next(w.now);
  auto r = d.client->write({create(EntityId::kAccount, id), set(EntityId::kAccount, id, 1, Value::text(name)),
                            set(EntityId::kAccount, id, 2, Value::text(territory)),
                            set(EntityId::kAccount, id, 10, Value::text(d.config.user))},
                           w.now);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return id;
}

RecordId new_contact(World& w, Device& d, RecordId account, const std::string& name) {
  RecordId id = d.ids.next(w.now);
  auto r = d.client->write({create(EntityId::kContact, id),
                            set(EntityId::kContact, id, f::kContactAccount, Value::text(account.to_string())),
                            set(EntityId::kContact, id, 2, Value::text(name))},
                           w.now);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return id;
}

const Value& server_value(World& w, EntityId e, RecordId id, uint16_t field) {
  static Value none;
  auto recs = w.store.records();
  auto it = recs.find(RecordKey{e, id});
  if (it == recs.end()) return none;
  static RecordState keep;
  keep = it->second;
  return keep.get(field);
}

TEST(ClientServer, OfflineWriteIsPushedAndAcknowledged) {
  World w;
  Device& alice = w.add(11, "alice");
  RecordId acct = new_account(w, alice, "t-north", "Bakery Nord");
  EXPECT_EQ(alice.store.outbox().size(), 1u);
  EXPECT_TRUE(w.store.records().empty());

  w.connect(alice);
  EXPECT_EQ(alice.client->state(), SyncClient::State::kSyncing);
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_EQ(server_value(w, EntityId::kAccount, acct, 1), Value::text("Bakery Nord"));
  ASSERT_EQ(w.store.log().size(), 1u);
  EXPECT_EQ(w.store.log()[0].origin_user, "alice");
  EXPECT_TRUE(alice.client->idle());
  // The server's copy is identical to the device's, versions included.
  EXPECT_EQ(w.store.records().at(RecordKey{EntityId::kAccount, acct}),
            alice.store.records().at(RecordKey{EntityId::kAccount, acct}));
}

TEST(ClientServer, LiveChangesReachOtherDevicesInScopeOnly) {
  World w;
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  w.connect(alice);
  w.connect(bob);
  w.connect(carol);
  RecordId acct = new_account(w, alice, "t-north", "Bakery Nord");
  w.pump();
  EXPECT_EQ(bob.store.records().count(RecordKey{EntityId::kAccount, acct}), 1u);
  EXPECT_EQ(carol.store.records().count(RecordKey{EntityId::kAccount, acct}), 0u);
  bool saw_change = false;
  for (const ClientEvent& e : bob.events) saw_change |= e.kind == ClientEvent::Kind::kRecordsChanged;
  EXPECT_TRUE(saw_change);
}

TEST(ClientServer, CommitsOfAnotherWriterReachLiveSessionsWhenPolled) {
  World w;
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  w.connect(bob);
  w.connect(carol);
  w.server->poll_external_commits(w.now);
  EXPECT_TRUE(w.server->take_outgoing().empty()) << "nothing new: nobody is woken";

  // Another server instance (or fieldsync-admin) on the same store commits: this server hears nothing.
  SyncServer other(w.store, w.auth, ServerConfig{});
  RecordIdGenerator ids(99);
  const RecordId id = ids.next(w.now);
  ClientTxn txn;
  txn.node = 99;
  txn.node_seq = 1;
  txn.created_at_ms = w.now;
  Hlc hlc = make_hlc(w.now, 0);
  for (Change c : {create(EntityId::kAccount, id), set(EntityId::kAccount, id, 1, Value::text("Café Nord")),
                   set(EntityId::kAccount, id, 2, Value::text("t-north")),
                   set(EntityId::kAccount, id, 10, Value::text("ho"))}) {
    c.version = Version{hlc++, 99};
    txn.changes.push_back(c);
  }
  ASSERT_EQ(other.apply_local(txn, Principal{"ho", Role::kHeadOffice, {}, {}}, w.now).value().outcome,
            protocol::TxnOutcome::kApplied);
  w.pump();
  EXPECT_EQ(bob.store.records().count(RecordKey{EntityId::kAccount, id}), 0u);

  w.server->poll_external_commits(w.now);
  w.pump();
  EXPECT_EQ(bob.store.records().count(RecordKey{EntityId::kAccount, id}), 1u) << "live, without a pull";
  EXPECT_EQ(carol.store.records().count(RecordKey{EntityId::kAccount, id}), 0u) << "not in carol's scope";
  w.server->poll_external_commits(w.now);
  EXPECT_TRUE(w.server->take_outgoing().empty());
}

TEST(ClientServer, ResentPushAfterLostAckIsAppliedOnce) {
  World w;
  Device& alice = w.add(11, "alice");
  new_account(w, alice, "t-north", "A");
  alice.session = w.next_session++;
  w.server->on_connect(alice.session, w.now);
  alice.client->on_connected(w.now);
  w.pump();  // handshake
  new_account(w, alice, "t-north", "B");
  w.pump(/*drop_to_client=*/true);  // the server applies, the ack is lost
  EXPECT_EQ(w.store.log().size(), 2u);
  EXPECT_EQ(alice.store.outbox().size(), 1u);

  // The device crashes and comes back: volatile state is gone, the outbox is durable.
  w.disconnect(alice);
  alice.restart();
  w.connect(alice);
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_EQ(w.store.log().size(), 2u) << "the re-sent transaction must not be applied twice";
}

TEST(ClientServer, RequestTimeoutResendsPush) {
  World w;
  Device& alice = w.add(11, "alice");
  w.connect(alice);
  new_account(w, alice, "t-north", "A");
  w.pump(/*drop_to_client=*/true);
  EXPECT_EQ(alice.store.outbox().size(), 1u);
  w.now += tuning::kRequestTimeoutMs;
  alice.client->on_tick(w.now);
  w.pump();
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_EQ(w.store.log().size(), 1u);
}

TEST(ClientServer, RejectedTransactionIsRolledBackWithReason) {
  World w;
  Device& ho = w.add(10, "ho");
  Device& alice = w.add(11, "alice");
  w.connect(ho);
  w.connect(alice);
  RecordId acct = new_account(w, alice, "t-north", "A");
  w.pump();
  // Alice drafts and submits an order; head office approves it while Alice is offline.
  RecordId order = alice.ids.next(w.now);
  ASSERT_TRUE(alice.client
                  ->write({create(EntityId::kOrder, order),
                           set(EntityId::kOrder, order, 1, Value::text(acct.to_string())),
                           set(EntityId::kOrder, order, 2, Value::text("alice")),
                           set(EntityId::kOrder, order, 3, Value::text("submitted")),
                           set(EntityId::kOrder, order, 4, Value::text("EUR"))},
                          w.now)
                  .is_ok());
  w.pump();
  w.disconnect(alice);
  w.pump();
  ASSERT_TRUE(
      ho.client->write({set(EntityId::kOrder, order, f::kOrderStatus, Value::text("approved"))}, w.now)
          .is_ok());
  w.pump();
  ASSERT_EQ(server_value(w, EntityId::kOrder, order, f::kOrderStatus), Value::text("approved"));

  // Offline, Alice still sees "submitted" and changes the currency: the server must refuse it.
  w.now += 1000;
  ASSERT_TRUE(alice.client->write({set(EntityId::kOrder, order, 4, Value::text("USD"))}, w.now).is_ok());
  w.connect(alice);
  EXPECT_TRUE(alice.store.outbox().empty());
  auto rejections = alice.store.rejections();
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].reason, ErrorCode::kOrderLocked);
  const RecordState local = alice.store.records().at(RecordKey{EntityId::kOrder, order});
  EXPECT_EQ(local.get(4), Value::text("EUR"));
  EXPECT_EQ(local.get(f::kOrderStatus), Value::text("approved"));
  EXPECT_EQ(local, w.store.records().at(RecordKey{EntityId::kOrder, order}));
  bool event = false;
  for (const ClientEvent& e : alice.events) event |= e.kind == ClientEvent::Kind::kRejected;
  EXPECT_TRUE(event);
}

TEST(ClientServer, ConcurrentEditsConvergeAndConflictIsLogged) {
  World w;
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  w.connect(alice);
  w.connect(bob);
  RecordId acct = new_account(w, alice, "t-north", "A");
  w.pump();
  w.disconnect(alice);
  w.disconnect(bob);
  ASSERT_TRUE(alice.client->write({set(EntityId::kAccount, acct, 5, Value::text("+49 1"))}, w.now).is_ok());
  w.now += 5;
  ASSERT_TRUE(bob.client->write({set(EntityId::kAccount, acct, 5, Value::text("+49 2"))}, w.now).is_ok());
  w.connect(bob);
  w.connect(alice);
  w.pump();
  RecordKey key{EntityId::kAccount, acct};
  EXPECT_EQ(w.store.records().at(key).get(5), Value::text("+49 2"));
  EXPECT_EQ(alice.store.records().at(key), w.store.records().at(key));
  EXPECT_EQ(bob.store.records().at(key), w.store.records().at(key));
  auto conflicts = w.store.conflicts();
  ASSERT_EQ(conflicts.size(), 1u);
  EXPECT_EQ(conflicts[0].loser.value, Value::text("+49 1"));
  EXPECT_EQ(conflicts[0].loser.user, "alice");
  EXPECT_EQ(conflicts[0].winner.user, "bob");
  // Both writers hear about it.
  EXPECT_EQ(alice.store.conflicts().size(), 1u);
  EXPECT_EQ(bob.store.conflicts().size(), 1u);
}

TEST(ClientServer, FreshDeviceBootstrapsInPagesWithProgress) {
  World w;
  Device& ho = w.add(10, "ho");
  w.connect(ho);
  for (int i = 0; i < 25; ++i) new_account(w, ho, i % 2 ? "t-north" : "t-south", "acct " + std::to_string(i));
  w.pump();
  Device& alice = w.add(11, "alice");
  alice.config.bootstrap_page_size = 4;
  alice.restart();
  w.connect(alice);
  EXPECT_EQ(alice.client->state(), SyncClient::State::kSyncing);
  EXPECT_EQ(alice.store.records().size(), 12u);
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  for (const ClientEvent& e : alice.events)
    if (e.kind == ClientEvent::Kind::kBootstrapProgress) progress.emplace_back(e.done, e.total);
  ASSERT_GE(progress.size(), 3u);
  EXPECT_EQ(progress.back(), std::make_pair(uint64_t{12}, uint64_t{12}));
  for (size_t i = 1; i < progress.size(); ++i) EXPECT_GE(progress[i].first, progress[i - 1].first);
  EXPECT_TRUE(alice.store.meta().bootstrap_done);
  EXPECT_EQ(alice.store.meta().cursor, w.store.head_seq().value());
}

TEST(ClientServer, BootstrapResumesAfterDisconnect) {
  World w;
  Device& ho = w.add(10, "ho");
  w.connect(ho);
  for (int i = 0; i < 20; ++i) new_account(w, ho, "t-north", "acct " + std::to_string(i));
  w.pump();
  Device& alice = w.add(11, "alice");
  alice.config.bootstrap_page_size = 5;
  alice.restart();
  // Hand-drive: handshake and the first page only (a version 2 request is answered with several), then the
  // link drops.
  alice.session = w.next_session++;
  w.server->on_connect(alice.session, w.now);
  alice.client->on_connected(w.now);
  for (int step = 0; step < 2; ++step) {
    for (auto& m : alice.client->take_outgoing()) w.server->on_message(alice.session, m, w.now);
    std::vector<SyncServer::Outgoing> out = w.server->take_outgoing();
    ASSERT_FALSE(out.empty());
    alice.client->on_message(out.front().message, w.now);
  }
  EXPECT_EQ(alice.store.records().size(), 5u);
  EXPECT_FALSE(alice.store.meta().bootstrap_done);
  w.disconnect(alice);
  alice.restart();
  w.connect(alice);
  EXPECT_EQ(alice.store.records().size(), 20u);
  EXPECT_TRUE(alice.store.meta().bootstrap_done);
}

TEST(ClientServer, HandshakeErrorsAreTypedAndClose) {
  World w;
  Device& mallory = w.add(66, "mallory");
  w.connect(mallory);
  EXPECT_EQ(mallory.client->state(), SyncClient::State::kStopped);
  EXPECT_EQ(mallory.client->stop_reason().code(), ErrorCode::kAuthFailed);

  // A raw session that skips the handshake.
  SessionId raw = 99;
  w.server->on_connect(raw, w.now);
  w.server->on_message(raw, protocol::PullRequest{1, 0, 0, true}, w.now);
  auto out = w.server->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<protocol::Error>(out[0].message));
  EXPECT_EQ(std::get<protocol::Error>(out[0].message).code, ErrorCode::kUnexpectedMessage);
  EXPECT_EQ(w.server->take_closing(), std::vector<SessionId>{raw});

  // A future protocol version.
  SessionId future = 100;
  w.server->on_connect(future, w.now);
  protocol::Hello hello;
  hello.protocol_version = protocol::kProtocolVersion + 1;
  hello.schema_version = schema::kSchemaVersion;
  hello.node = 5;
  hello.token = "token-alice";
  w.server->on_message(future, hello, w.now);
  out = w.server->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<protocol::Error>(out[0].message).code, ErrorCode::kUnsupportedProtocol);

  // A device clock two hours ahead.
  SessionId skewed = 101;
  w.server->on_connect(skewed, w.now);
  hello.protocol_version = protocol::kProtocolVersion;
  hello.client_time_ms = w.now + 2 * 3600 * 1000;
  w.server->on_message(skewed, hello, w.now);
  out = w.server->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<protocol::Error>(out[0].message).code, ErrorCode::kClockSkew);
  EXPECT_TRUE(w.store.log().empty());
}

TEST(ClientServer, SequenceGapIsReportedWithResumePoint) {
  World w;
  Device& alice = w.add(11, "alice");
  w.connect(alice);
  SessionId s = alice.session;
  ClientTxn t;
  t.node = 11;
  t.node_seq = 5;  // the server has nothing from node 11
  RecordId id = alice.ids.next(w.now);
  t.changes.push_back(create(EntityId::kAccount, id));
  t.changes[0].version = Version{make_hlc(w.now, 0), 11};
  w.server->on_message(s, protocol::PushTxns{7, {t}}, w.now);
  auto out = w.server->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  const auto& err = std::get<protocol::Error>(out[0].message);
  EXPECT_EQ(err.code, ErrorCode::kSequenceGap);
  EXPECT_EQ(err.resume_node_seq, 1u);
  EXPECT_TRUE(w.store.log().empty());
}

TEST(ClientServer, PushForAnotherNodeIsRefused) {
  World w;
  Device& alice = w.add(11, "alice");
  w.connect(alice);
  ClientTxn t;
  t.node = 12;
  t.node_seq = 1;
  RecordId id = alice.ids.next(w.now);
  t.changes.push_back(create(EntityId::kAccount, id));
  t.changes[0].version = Version{make_hlc(w.now, 0), 12};
  w.server->on_message(alice.session, protocol::PushTxns{7, {t}}, w.now);
  auto out = w.server->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<protocol::Error>(out[0].message).code, ErrorCode::kPermissionDenied);
  EXPECT_TRUE(w.store.log().empty());
}

// Another client (a modified phone, the C ABI) can push anything: the server applies the model's value rules
// and user-reference rules itself. Each hand-built transaction below carries one bad value or another
// person's name; each is rejected with the reason and the field, and nothing of it is applied.
TEST(ClientServer, HandBuiltPushWithABadValueOrAnotherUsersNameIsRejected) {
  World w;
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");  // pushes by hand only: his SyncClient never writes
  w.connect(alice);
  w.connect(bob);
  RecordId acct = new_account(w, alice, "t-north", "A");
  w.pump();
  const std::string account = acct.to_string();

  struct Case {
    std::string what;
    ErrorCode reason;
    std::string field;  // named in the message
    std::function<std::vector<Change>(RecordId)> changes;
  };
  auto order = [&](RecordId id, const std::string& rep, const std::string& currency) {
    return std::vector<Change>{create(EntityId::kOrder, id),
                               set(EntityId::kOrder, id, f::kOrderAccount, Value::text(account)),
                               set(EntityId::kOrder, id, f::kOrderRep, Value::text(rep)),
                               set(EntityId::kOrder, id, f::kOrderStatus, Value::text("draft")),
                               set(EntityId::kOrder, id, f::kOrderCurrency, Value::text(currency))};
  };
  auto order_with_line = [&](RecordId id, uint16_t field, Value v) {
    std::vector<Change> changes = order(id, "bob", "EUR");
    RecordId line{id.hi, id.lo + 1};
    changes.push_back(create(EntityId::kOrderLine, line));
    changes.push_back(set(EntityId::kOrderLine, line, f::kOrderLineOrder, Value::text(id.to_string())));
    changes.push_back(set(EntityId::kOrderLine, line, f::kOrderLineProduct, Value::text(id.to_string())));
    for (uint16_t fld : {f::kOrderLineQuantity, f::kOrderLineUnitPrice, f::kOrderLineDiscount})
      changes.push_back(set(EntityId::kOrderLine, line, fld, fld == field ? v : Value::integer(1)));
    return changes;
  };
  auto contact = [&](RecordId id, const std::string& email) {
    return std::vector<Change>{create(EntityId::kContact, id),
                               set(EntityId::kContact, id, f::kContactAccount, Value::text(account)),
                               set(EntityId::kContact, id, f::kContactName, Value::text("Jo")),
                               set(EntityId::kContact, id, f::kContactEmail, Value::text(email))};
  };
  const std::vector<Case> cases = {
      {"currency", ErrorCode::kValueInvalid, "currency",
       [&](RecordId id) { return order(id, "bob", "eur"); }},
      {"e-mail", ErrorCode::kValueInvalid, "email", [&](RecordId id) { return contact(id, "jo.at.x.de"); }},
      {"quantity 0", ErrorCode::kValueInvalid, "quantity",
       [&](RecordId id) { return order_with_line(id, f::kOrderLineQuantity, Value::integer(0)); }},
      {"quantity too big", ErrorCode::kValueInvalid, "quantity",
       [&](RecordId id) {
         return order_with_line(id, f::kOrderLineQuantity, Value::integer(schema::kMaxQuantity + 1));
       }},
      {"negative price", ErrorCode::kValueInvalid, "unit_price_cents",
       [&](RecordId id) { return order_with_line(id, f::kOrderLineUnitPrice, Value::integer(-1)); }},
      {"discount over 100 %", ErrorCode::kValueInvalid, "discount_bp",
       [&](RecordId id) { return order_with_line(id, f::kOrderLineDiscount, Value::integer(10'001)); }},
      {"order in alice's name", ErrorCode::kPermissionDenied, "rep_id",
       [&](RecordId id) { return order(id, "alice", "EUR"); }},
      {"account filed by head office", ErrorCode::kPermissionDenied, "created_by",
       [&](RecordId id) {
         return std::vector<Change>{create(EntityId::kAccount, id),
                                    set(EntityId::kAccount, id, f::kAccountName, Value::text("B")),
                                    set(EntityId::kAccount, id, f::kAccountTerritory, Value::text("t-north")),
                                    set(EntityId::kAccount, id, f::kAccountCreatedBy, Value::text("ho"))};
       }},
  };

  const std::vector<ServerTxn> log_before = w.store.log();
  const auto records_before = w.store.records();
  uint64_t node_seq = 0;
  Hlc hlc = make_hlc(w.now, 0);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ClientTxn t;
    t.node = 12;
    t.node_seq = ++node_seq;
    t.created_at_ms = w.now;
    t.changes = c.changes(bob.ids.next(w.now));
    for (Change& ch : t.changes) ch.version = Version{++hlc, 12};
    w.server->on_message(bob.session, protocol::PushTxns{node_seq, {t}}, w.now);
    auto out = w.server->take_outgoing();
    ASSERT_EQ(out.size(), 1u);
    const auto* ack = std::get_if<protocol::PushAck>(&out[0].message);
    ASSERT_NE(ack, nullptr);
    ASSERT_EQ(ack->results.size(), 1u);
    const protocol::TxnResult& r = ack->results[0];
    EXPECT_EQ(r.outcome, protocol::TxnOutcome::kRejected);
    EXPECT_EQ(r.reason, c.reason) << r.message;
    EXPECT_NE(r.message.find("field " + c.field), std::string::npos) << r.message;
  }
  EXPECT_EQ(w.store.log(), log_before);
  EXPECT_EQ(w.store.records(), records_before);
}

// A device cannot know what lies outside its scope, so SyncClient::write takes a link to a record it does not
// hold; the server judges it: an event at another territory's account and a visit of a colleague's event are
// rejected naming the field, and the device rolls both back. Links within her scope are applied.
TEST(ClientServer, LinksToRecordsOutsideTheWritersScopeAreRejectedAndRolledBack) {
  World w;
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  for (Device* d : w.devices) w.connect(*d);
  const RecordId north = new_account(w, alice, "t-north", "N");
  const RecordId south = new_account(w, carol, "t-south", "S");
  const EntityId ev = EntityId::kCalendarEvent;
  auto event = [&](Device& d, RecordId at) {
    RecordId id = d.ids.next(w.now);
    std::vector<Change> changes = {create(ev, id),
                                   set(ev, id, f::kEventOwner, Value::text(d.config.user)),
                                   set(ev, id, 2, Value::text(at.to_string())),
                                   set(ev, id, 3, Value::text("Call")),
                                   set(ev, id, f::kEventStart, Value::integer(w.now + 3'600'000)),
                                   set(ev, id, f::kEventEnd, Value::integer(w.now + 7'200'000)),
                                   set(ev, id, f::kEventStatus, Value::text("scheduled"))};
    return std::pair{id, changes};
  };
  auto visit = [&](Device& d, RecordId at, RecordId event_id) {
    RecordId id = d.ids.next(w.now);
    std::vector<Change> changes = {create(EntityId::kVisit, id),
                                   set(EntityId::kVisit, id, f::kVisitAccount, Value::text(at.to_string())),
                                   set(EntityId::kVisit, id, f::kVisitRep, Value::text(d.config.user)),
                                   set(EntityId::kVisit, id, 4, Value::integer(w.now)),
                                   set(EntityId::kVisit, id, 3, Value::text(event_id.to_string()))};
    return std::pair{id, changes};
  };
  auto [bobs_event, bobs] = event(bob, north);
  ASSERT_TRUE(bob.client->write(bobs, w.now).is_ok());
  w.pump();
  const size_t log_before = w.store.log().size();

  auto [at_south, e1] = event(alice, south);
  ASSERT_TRUE(alice.client->write(e1, w.now).is_ok());
  auto [of_bobs, v1] = visit(alice, north, bobs_event);
  ASSERT_TRUE(alice.client->write(v1, w.now).is_ok());
  w.pump();
  EXPECT_EQ(w.store.log().size(), log_before) << "nothing applied";
  EXPECT_TRUE(alice.store.outbox().empty());
  const std::vector<Rejection> rejections = alice.store.rejections();
  ASSERT_EQ(rejections.size(), 2u);
  EXPECT_EQ(rejections[0].reason, ErrorCode::kOutOfScope);
  EXPECT_NE(rejections[0].message.find("field account_id"), std::string::npos) << rejections[0].message;
  EXPECT_EQ(rejections[1].reason, ErrorCode::kOutOfScope);
  EXPECT_NE(rejections[1].message.find("field calendar_event_id"), std::string::npos)
      << rejections[1].message;
  const auto local = alice.store.records();
  EXPECT_EQ(local.count(RecordKey{ev, at_south}), 0u);
  EXPECT_EQ(local.count(RecordKey{EntityId::kVisit, of_bobs}), 0u);
  EXPECT_EQ(w.store.records().count(RecordKey{ev, at_south}), 0u);

  // Her own territory's account and her own event are hers to link.
  auto [at_north, e2] = event(alice, north);
  ASSERT_TRUE(alice.client->write(e2, w.now).is_ok());
  auto [of_hers, v2] = visit(alice, north, at_north);
  ASSERT_TRUE(alice.client->write(v2, w.now).is_ok());
  w.pump();
  EXPECT_EQ(w.store.log().size(), log_before + 2);
  EXPECT_EQ(server_value(w, EntityId::kVisit, of_hers, 3), Value::text(at_north.to_string()));
  EXPECT_EQ(alice.store.rejections().size(), 2u);
}

TEST(ClientServer, LocalValidationWritesNothing) {
  World w;
  Device& alice = w.add(11, "alice");
  RecordId id = alice.ids.next(w.now);
  auto r = alice.client->write(
      {create(EntityId::kAccount, id), set(EntityId::kAccount, id, 7, Value::text("zz"))}, w.now);
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kValueInvalid);
  EXPECT_TRUE(alice.store.records().empty());
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_EQ(alice.store.meta().next_node_seq, 1u);

  auto missing = alice.client->write({set(EntityId::kAccount, id, 1, Value::text("x"))}, w.now);
  EXPECT_EQ(missing.status().code(), ErrorCode::kRecordNotFound);
}

TEST(ClientServer, FailedLocalCommitLeavesNothingBehind) {
  World w;
  Device& alice = w.add(11, "alice");
  alice.store.fail_next_commit(Status(ErrorCode::kStorageFull, "disk full"));
  RecordId id = alice.ids.next(w.now);
  auto r = alice.client->write({create(EntityId::kAccount, id)}, w.now);
  EXPECT_EQ(r.status().code(), ErrorCode::kStorageFull);
  EXPECT_TRUE(alice.store.records().empty());
  EXPECT_TRUE(alice.store.outbox().empty());
  Hlc before = alice.client->hlc();
  new_account(w, alice, "t-north", "ok");
  EXPECT_GT(alice.client->hlc(), before);
  EXPECT_EQ(alice.store.outbox().front().node_seq, 1u);
}

TEST(Backoff, GrowsWithJitterAndIsCapped) {
  Backoff b(42);
  int64_t max_seen = 0;
  for (int i = 0; i < 40; ++i) {
    int64_t d = b.next_delay_ms();
    EXPECT_GE(d, tuning::kReconnectBaseMs / 2);
    EXPECT_LE(d, tuning::kReconnectCapMs);
    max_seen = std::max(max_seen, d);
  }
  EXPECT_GT(max_seen, tuning::kReconnectCapMs / 4);
  b.reset();
  EXPECT_LE(b.next_delay_ms(), tuning::kReconnectBaseMs);
}

}  // namespace
}  // namespace fieldsync

namespace fieldsync {
namespace {

TEST(ClientServer, ServerSideWritesReachLiveDevices) {
  World w;
  Device& alice = w.add(11, "alice");
  w.connect(alice);
  RecordIdGenerator ids(1);
  RecordId acct = ids.next(w.now);
  ClientTxn t;
  t.node = 1'000'001;  // the admin tool's own node
  t.node_seq = 1;
  Hlc h = make_hlc(w.now, 0);
  auto stamp = [&](Change c) {
    c.version = Version{h++, t.node};
    return c;
  };
  t.changes = {stamp(create(EntityId::kAccount, acct)),
               stamp(set(EntityId::kAccount, acct, 1, Value::text("HQ"))),
               stamp(set(EntityId::kAccount, acct, 2, Value::text("t-north"))),
               stamp(set(EntityId::kAccount, acct, 10, Value::text("admin")))};
  Principal admin{"admin", Role::kHeadOffice, {}, {}};
  protocol::TxnResult r = w.server->apply_local(t, admin, w.now).value();
  EXPECT_EQ(r.outcome, protocol::TxnOutcome::kApplied) << r.message;
  w.pump();
  EXPECT_EQ(alice.store.records().count(RecordKey{EntityId::kAccount, acct}), 1u);
  // Exactly once here too.
  EXPECT_EQ(w.server->apply_local(t, admin, w.now).value().outcome, protocol::TxnOutcome::kDuplicate);
  EXPECT_EQ(w.store.log().size(), 1u);
}

}  // namespace
}  // namespace fieldsync

namespace fieldsync {
namespace {

// A device that wrote offline before its first sync, whose account head office moved away meanwhile, drops it
// when its bootstrap ends (nothing else would ever tell it).
TEST(ClientServer, BootstrapDropsOwnRecordsThatLeftScope) {
  World w;
  Device& ho = w.add(10, "ho");
  Device& alice = w.add(11, "alice");
  RecordId acct = new_account(w, alice, "t-north", "Mine");
  // Push only (hand-driven): the bootstrap request is lost, the push is applied.
  alice.session = w.next_session++;
  w.server->on_connect(alice.session, w.now);
  alice.client->on_connected(w.now);
  for (auto& m : alice.client->take_outgoing()) w.server->on_message(alice.session, m, w.now);
  for (auto& o : w.server->take_outgoing()) alice.client->on_message(o.message, w.now);
  for (auto& m : alice.client->take_outgoing())
    if (std::holds_alternative<protocol::PushTxns>(m)) w.server->on_message(alice.session, m, w.now);
  for (auto& o : w.server->take_outgoing()) alice.client->on_message(o.message, w.now);
  ASSERT_TRUE(alice.store.outbox().empty());
  ASSERT_FALSE(alice.store.meta().bootstrap_done);
  w.disconnect(alice);

  w.connect(ho);
  ASSERT_TRUE(
      ho.client->write({set(EntityId::kAccount, acct, f::kAccountTerritory, Value::text("t-south"))}, w.now)
          .is_ok());
  w.pump();
  alice.restart();
  w.connect(alice);
  EXPECT_TRUE(alice.store.meta().bootstrap_done);
  EXPECT_EQ(alice.store.records().count(RecordKey{EntityId::kAccount, acct}), 0u);
}

// The pulls a device sent and the batches it got, from its session's traffic.
struct PullTrace {
  int pulls = 0;
  std::vector<protocol::ChangeBatch> batches;
};

// Connects `d` and delivers everything by hand, counting its pulls.
PullTrace connect_counting_pulls(World& w, Device& d) {
  PullTrace trace;
  d.session = w.next_session++;
  w.server->on_connect(d.session, w.now);
  d.client->on_connected(w.now);
  for (int round = 0; round < 1000; ++round) {
    bool moved = false;
    for (protocol::Message& m : d.client->take_outgoing()) {
      moved = true;
      if (std::holds_alternative<protocol::PullRequest>(m)) ++trace.pulls;
      w.server->on_message(d.session, m, w.now);
    }
    for (SyncServer::Outgoing& o : w.server->take_outgoing()) {
      moved = true;
      if (o.session != d.session) continue;
      if (const auto* b = std::get_if<protocol::ChangeBatch>(&o.message)) trace.batches.push_back(*b);
      d.client->on_message(o.message, w.now);
    }
    if (!moved) break;
  }
  return trace;
}

// A rep in one territory of many catches up on its own part of the log: the pull does not page through
// everybody else's transactions (the log is indexed by scope), and what it gets is exactly what concerns it.
TEST(ClientServer, CatchUpPullReadsOnlyTheDevicesPartOfTheLog) {
  World w;
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  alice.config.pull_max_changes = 20;
  alice.restart();
  w.connect(alice);
  ASSERT_TRUE(alice.client->idle());
  w.disconnect(alice);

  // 200 transactions in t-south, then one in t-north, then 200 more in t-south.
  w.connect(carol);
  w.connect(bob);
  for (int i = 0; i < 200; ++i) new_account(w, carol, "t-south", "South " + std::to_string(i));
  w.pump();
  RecordId north = new_account(w, bob, "t-north", "North");
  w.pump();
  for (int i = 0; i < 200; ++i) new_account(w, carol, "t-south", "South more " + std::to_string(i));
  w.pump();
  const uint64_t head = w.store.head_seq().value();
  ASSERT_EQ(head, 401u);

  PullTrace trace = connect_counting_pulls(w, alice);
  EXPECT_EQ(trace.pulls, 1) << "one pull of 20 changes reaches the head past 400 foreign transactions";
  ASSERT_EQ(trace.batches.size(), 1u);
  EXPECT_EQ(trace.batches[0].to_cursor, head);
  EXPECT_FALSE(trace.batches[0].has_more);
  ASSERT_EQ(trace.batches[0].txns.size(), 1u);
  EXPECT_EQ(trace.batches[0].txns[0].origin_user, "bob");
  EXPECT_EQ(alice.store.meta().cursor, head);
  EXPECT_EQ(alice.store.records().count(RecordKey{EntityId::kAccount, north}), 1u);
  EXPECT_EQ(alice.store.records().size(), 1u);
}

// Both sides of a move reach devices that were offline when it happened, through their catch-up pulls: the
// rep who lost the account drops it with its contact, the one who gained it receives both.
TEST(ClientServer, ScopeMoveReachesOfflineDevicesOnBothSides) {
  World w;
  Device& ho = w.add(10, "ho");
  Device& alice = w.add(11, "alice");
  Device& carol = w.add(13, "carol");
  w.connect(alice);
  w.connect(carol);
  RecordId acct = new_account(w, alice, "t-north", "Moving");
  RecordId contact = new_contact(w, alice, acct, "Ines");
  w.pump();
  ASSERT_EQ(alice.store.records().size(), 2u);
  ASSERT_TRUE(carol.store.records().empty());
  w.disconnect(alice);
  w.disconnect(carol);

  w.connect(ho);
  ASSERT_TRUE(
      ho.client->write({set(EntityId::kAccount, acct, f::kAccountTerritory, Value::text("t-south"))}, w.now)
          .is_ok());
  for (int i = 0; i < 50; ++i) new_account(w, ho, "t-east", "East " + std::to_string(i));
  w.pump();

  connect_counting_pulls(w, alice);
  EXPECT_TRUE(alice.store.records().empty()) << "the account and its contact left alice's device";
  connect_counting_pulls(w, carol);
  EXPECT_EQ(carol.store.records().count(RecordKey{EntityId::kAccount, acct}), 1u);
  EXPECT_EQ(carol.store.records().count(RecordKey{EntityId::kContact, contact}), 1u);
  EXPECT_EQ(carol.store.records().size(), 2u);
}

// An account moves away from alice's territory and back while she is offline, and its contact is deleted in
// between: the delete was filed under the territory the contact had then, so her catch-up (which reads only
// her territory's part of the log) never sees it; the move back must bring the contact's tombstone along with
// the live records. Checked from the server's in-memory log tail and, after a restart, from the store.
TEST(ClientServer, ChildDeletedWhileItsAccountWasAwayIsGoneWhenItComesBack) {
  for (const bool restart_server : {false, true}) {
    SCOPED_TRACE(restart_server ? "catch-up read from the store" : "catch-up read from the log tail");
    World w;
    Device& ho = w.add(10, "ho");
    Device& alice = w.add(11, "alice");
    Device& carol = w.add(13, "carol");
    w.connect(alice);
    w.connect(carol);
    w.connect(ho);
    RecordId acct = new_account(w, alice, "t-north", "Away and back");
    RecordId contact = new_contact(w, alice, acct, "Ines");
    RecordId kept = new_contact(w, alice, acct, "Jon");
    w.pump();
    ASSERT_EQ(alice.store.records().size(), 3u);
    w.disconnect(alice);

    auto move_to = [&](const char* territory) {
      ASSERT_TRUE(
          ho.client
              ->write({set(EntityId::kAccount, acct, f::kAccountTerritory, Value::text(territory))}, w.now)
              .is_ok());
      w.pump();
    };
    move_to("t-south");
    ASSERT_EQ(carol.store.records().size(), 3u);
    ASSERT_TRUE(carol.client->write({Change{ChangeOp::kDelete, EntityId::kContact, contact}}, w.now).is_ok());
    w.pump();
    move_to("t-north");
    if (restart_server) w.server = std::make_unique<SyncServer>(w.store, w.auth, ServerConfig{});

    connect_counting_pulls(w, alice);
    ASSERT_EQ(alice.store.meta().cursor, w.store.head_seq().value());
    const auto& records = alice.store.records();
    auto gone = records.find(RecordKey{EntityId::kContact, contact});
    EXPECT_TRUE(gone == records.end() || gone->second.deleted)
        << "the contact deleted while away is still live";
    ASSERT_EQ(records.count(RecordKey{EntityId::kContact, kept}), 1u);
    EXPECT_FALSE(records.at(RecordKey{EntityId::kContact, kept}).deleted);
    ASSERT_EQ(records.count(RecordKey{EntityId::kAccount, acct}), 1u);
  }
}

// Alice (t-north) writes an account with a contact and goes offline; bob (t-north) edits the contact; carol
// (t-south) is live throughout.
std::pair<RecordId, RecordId> contact_edited_while_alice_is_away(World& w, Device& alice, Device& bob,
                                                                 Device& carol) {
  w.connect(alice);
  w.connect(bob);
  w.connect(carol);
  RecordId acct = new_account(w, alice, "t-north", "Moving");
  RecordId contact = new_contact(w, alice, acct, "Ines");
  w.pump();
  w.disconnect(alice);
  EXPECT_TRUE(bob.client->write({set(EntityId::kContact, contact, 2, Value::text("Ines B"))}, w.now).is_ok());
  w.pump();
  return {acct, contact};
}

// The server caches record scopes (resolved at commit) for fan-out and catch-up. Moving an account moves its
// contact too, though the move's transaction does not touch the contact: a change of the contact made
// before the move is judged on the contact's current scope, so the old territory's rep, catching up across
// the move, is not sent it (only the purge), and the new territory's live rep gets the next change.
TEST(ClientServer, ChildOfAMovedAccountIsJudgedOnItsNewScope) {
  World w;
  Device& ho = w.add(10, "ho");
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  auto [acct, contact] = contact_edited_while_alice_is_away(w, alice, bob, carol);
  w.connect(ho);
  ASSERT_TRUE(
      ho.client->write({set(EntityId::kAccount, acct, f::kAccountTerritory, Value::text("t-south"))}, w.now)
          .is_ok());
  w.pump();
  ASSERT_EQ(carol.store.records().size(), 2u);

  PullTrace trace = connect_counting_pulls(w, alice);
  EXPECT_TRUE(alice.store.records().empty()) << "the account and its contact left alice's device";
  for (const protocol::ChangeBatch& b : trace.batches)
    for (const ServerTxn& t : b.txns)
      for (const Change& c : t.changes)
        EXPECT_FALSE(c.entity == EntityId::kContact)
            << "bob's change of a contact now in t-south sent to alice";

  ASSERT_TRUE(ho.client->write({set(EntityId::kContact, contact, 2, Value::text("Ines S"))}, w.now).is_ok());
  w.pump();
  const RecordKey key{EntityId::kContact, contact};
  ASSERT_EQ(carol.store.records().count(key), 1u);
  EXPECT_EQ(carol.store.records().at(key).get(2), Value::text("Ines S"));
  EXPECT_TRUE(alice.store.records().empty());
}

// A commit the server did not make (fieldsync-admin writes the same store through its own SyncServer) may
// move records too: the server's scope cache must not outlive it.
TEST(ClientServer, CommitByAnotherProcessInvalidatesTheScopeCache) {
  World w;
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  auto [acct, contact] = contact_edited_while_alice_is_away(w, alice, bob, carol);

  SyncServer admin(w.store, w.auth, ServerConfig{});
  ClientTxn move;
  move.node = 99;
  move.node_seq = 1;
  move.created_at_ms = w.now;
  Change c = set(EntityId::kAccount, acct, f::kAccountTerritory, Value::text("t-south"));
  c.version = Version{make_hlc(w.now + 1000, 0), 99};
  move.changes.push_back(c);
  ASSERT_EQ(admin.apply_local(move, Principal{"admin", Role::kHeadOffice, {}, {}}, w.now).value().outcome,
            protocol::TxnOutcome::kApplied);
  w.server->poll_external_commits(w.now);
  w.pump();
  ASSERT_EQ(carol.store.records().size(), 2u) << "the move reached the new territory live";

  PullTrace trace = connect_counting_pulls(w, alice);
  EXPECT_TRUE(alice.store.records().empty());
  for (const protocol::ChangeBatch& b : trace.batches)
    for (const ServerTxn& t : b.txns)
      for (const Change& ch : t.changes)
        EXPECT_FALSE(ch.entity == EntityId::kContact) << "judged on the scope cached before the admin's move";
}

// Runs the world's server as the group-commit driver does: commits only mark a fan-out; fan_out() makes the
// live batches of everything since the last one (one per store flush).
void defer_fan_out(World& w) {
  ServerConfig config;
  config.defer_fan_out = true;
  w.server = std::make_unique<SyncServer>(w.store, w.auth, config);
}

// `d` writes `txns` transactions of 10 new t-north accounts each (40 changes apiece).
void write_big_transactions(World& w, Device& d, int txns) {
  for (int t = 0; t < txns; ++t) {
    std::vector<Change> changes;
    for (int a = 0; a < 10; ++a) {
      RecordId id = d.ids.next(w.now);
      changes.push_back(create(EntityId::kAccount, id));
      changes.push_back(set(EntityId::kAccount, id, 1, Value::text("Big " + std::to_string(t * 10 + a))));
      changes.push_back(set(EntityId::kAccount, id, 2, Value::text("t-north")));
      changes.push_back(set(EntityId::kAccount, id, 10, Value::text(d.config.user)));
    }
    ASSERT_TRUE(d.client->write(changes, w.now).is_ok());
  }
}

// With defer_fan_out: one fan_out(), its live batches delivered to `d` only; what it got and the pulls that
// made it send.
struct FanOutRound {
  std::vector<protocol::ChangeBatch> live;
  int pulls = 0;
};
FanOutRound fan_out_to(World& w, Device& d) {
  FanOutRound round;
  w.server->fan_out(w.now);
  for (SyncServer::Outgoing& o : w.server->take_outgoing()) {
    if (o.session != d.session) continue;
    if (const auto* b = std::get_if<protocol::ChangeBatch>(&o.message)) round.live.push_back(*b);
    d.client->on_message(o.message, w.now);
  }
  for (protocol::Message& m : d.client->take_outgoing())
    if (std::holds_alternative<protocol::PullRequest>(m)) ++round.pulls;
  return round;
}

// A deferred-fan-out world with alice and bob (both t-north) connected and synced.
std::pair<Device*, Device*> alice_and_bob_live(World& w) {
  defer_fan_out(w);
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  w.connect(alice);
  w.connect(bob);
  w.server->fan_out(w.now);
  w.pump();
  EXPECT_TRUE(alice.client->idle());
  return {&alice, &bob};
}

// A flush that committed more than a pull's worth (several reps pushing big orders at once) still reaches
// live sessions live: the live scan is shared by every session and each gets only its part, so its window is
// kMaxChangesPerLiveScan, not a pull's kMaxChangesPerPull.
TEST(ClientServer, BusyFlushReachesLiveSessionsWithoutPulls) {
  World w;
  auto [alice_p, bob_p] = alice_and_bob_live(w);
  Device& alice = *alice_p;
  Device& bob = *bob_p;

  // 24 transactions of 10 accounts (40 changes each): 960 changes committed before one flush.
  write_big_transactions(w, bob, 24);
  w.pump();  // bob's push is applied; nothing fanned out yet
  ASSERT_GT(w.store.head_seq().value(), 0u);
  size_t changes = 0;
  for (const ServerTxn& t : w.store.log()) changes += t.changes.size();
  ASSERT_GT(changes, tuning::kMaxChangesPerPull);
  ASSERT_LE(changes, tuning::kMaxChangesPerLiveScan);

  auto [live, pulls] = fan_out_to(w, alice);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_FALSE(live[0].has_more);
  EXPECT_EQ(live[0].to_cursor, w.store.head_seq().value());
  EXPECT_EQ(pulls, 0) << "alice stays live";
  EXPECT_EQ(alice.store.records().size(), 240u);
}

// A flush bigger than one live scan (a crowd of reps pushing large orders at once) is sent in consecutive
// live batches over the next fan-outs: sessions stay live instead of all being told to pull the rest.
TEST(ClientServer, FlushBiggerThanALiveScanContinuesLive) {
  World w;
  auto [alice_p, bob_p] = alice_and_bob_live(w);
  Device& alice = *alice_p;
  Device& bob = *bob_p;

  const int txns = static_cast<int>(tuning::kMaxChangesPerLiveScan / 40 + 60);  // 40 changes each
  write_big_transactions(w, bob, txns);
  w.pump();  // every push applied; nothing fanned out yet
  ASSERT_TRUE(bob.client->idle());

  int fan_outs = 0, live = 0, pulls = 0;
  do {
    FanOutRound round = fan_out_to(w, alice);
    ++fan_outs;
    for (const protocol::ChangeBatch& b : round.live) EXPECT_FALSE(b.has_more) << "told the device to pull";
    live += static_cast<int>(round.live.size());
    pulls += round.pulls;
  } while (w.server->fan_out_pending() && fan_outs < 10);
  EXPECT_EQ(fan_outs, 2) << "one live scan's worth per fan-out";
  EXPECT_EQ(live, 2);
  EXPECT_EQ(pulls, 0) << "alice stays live";
  EXPECT_EQ(alice.store.meta().cursor, w.store.head_seq().value());
  EXPECT_EQ(alice.store.records().size(), static_cast<size_t>(txns * 10));
}

// A live rep whose territory is quiet while others are busy is sent nothing for their commits; its cursor
// moves forward only now and then (tuning::kLiveSkipAdvanceMs), with one empty batch, not every few commits.
TEST(ClientServer, QuietTerritoryIsNotWokenByEveryCommitElsewhere) {
  World w;
  Device& alice = w.add(11, "alice");
  Device& carol = w.add(13, "carol");
  w.connect(alice);
  w.connect(carol);
  ASSERT_TRUE(carol.client->idle());
  auto batches_for_carol = [&] {
    std::vector<protocol::ChangeBatch> got;
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      for (protocol::Message& m : alice.client->take_outgoing()) {
        moved = true;
        w.server->on_message(alice.session, m, w.now);
      }
      for (SyncServer::Outgoing& o : w.server->take_outgoing()) {
        moved = true;
        if (const auto* b = std::get_if<protocol::ChangeBatch>(&o.message); b && o.session == carol.session)
          got.push_back(*b);
        for (Device* d : w.devices)
          if (d->session == o.session) d->client->on_message(o.message, w.now);
      }
      if (!moved) break;
    }
    EXPECT_TRUE(carol.client->take_outgoing().empty()) << "carol stays live without pulling";
    return got;
  };

  const uint64_t carol_cursor = carol.store.meta().cursor;
  const int busy = static_cast<int>(4 * tuning::kLiveSkipAdvance);
  for (int i = 0; i < busy; ++i) {
    new_account(w, alice, "t-north", "North " + std::to_string(i));
    w.now += tuning::kLiveSkipAdvanceMs / (2 * busy);  // all of it within half the interval
    EXPECT_TRUE(batches_for_carol().empty()) << "commit " << i << " woke carol";
  }
  ASSERT_GE(w.store.head_seq().value(), carol_cursor + static_cast<uint64_t>(busy));
  EXPECT_EQ(carol.store.meta().cursor, carol_cursor);

  w.now += tuning::kLiveSkipAdvanceMs;
  new_account(w, alice, "t-north", "North, later");
  std::vector<protocol::ChangeBatch> advance = batches_for_carol();
  ASSERT_EQ(advance.size(), 1u);
  EXPECT_TRUE(advance[0].txns.empty());
  EXPECT_EQ(advance[0].to_cursor, w.store.head_seq().value());
  EXPECT_EQ(carol.store.meta().cursor, w.store.head_seq().value());
  EXPECT_EQ(carol.store.records().size(), 0u);

  // Her own territory still reaches her at once.
  Device& bob = w.add(12, "bob");
  w.auth.tokens["token-bob"] = Principal{"bob", Role::kRep, {"t-south"}, {}};
  w.connect(bob);
  new_account(w, bob, "t-south", "South");
  for (protocol::Message& m : bob.client->take_outgoing()) w.server->on_message(bob.session, m, w.now);
  std::vector<protocol::ChangeBatch> own = batches_for_carol();
  ASSERT_EQ(own.size(), 1u);
  EXPECT_EQ(own[0].txns.size(), 1u);
}

// A replica that counts record loads and saves (everything else passes through).
class CountingReplica final : public ReplicaStore {
 public:
  explicit CountingReplica(ReplicaStore& inner) : inner_(inner) {}
  std::unique_ptr<ReplicaTxn> begin() override { return std::make_unique<Txn>(*this, inner_.begin()); }
  size_t loads = 0;
  size_t saves = 0;
  size_t outbox_reads = 0;  // outbox entries read and decoded

 private:
  class Txn final : public ReplicaTxn {
   public:
    Txn(CountingReplica& owner, std::unique_ptr<ReplicaTxn> inner)
        : owner_(owner), inner_(std::move(inner)) {}
    std::optional<RecordState> load(EntityId e, const RecordId& id) override {
      ++owner_.loads;
      return inner_->load(e, id);
    }
    void save(const RecordState& r) override {
      ++owner_.saves;
      inner_->save(r);
    }
    void erase(EntityId e, const RecordId& id) override { inner_->erase(e, id); }
    void outbox_append(const ClientTxn& t) override { inner_->outbox_append(t); }
    std::vector<ClientTxn> outbox_peek(size_t max) override { return counted(inner_->outbox_peek(max)); }
    std::vector<ClientTxn> outbox_after(uint64_t after, size_t max) override {
      return counted(inner_->outbox_after(after, max));
    }
    std::optional<ClientTxn> outbox_get(uint64_t seq) override {
      std::optional<ClientTxn> t = inner_->outbox_get(seq);
      owner_.outbox_reads += t ? 1 : 0;
      return t;
    }
    bool outbox_remove(uint64_t seq) override { return inner_->outbox_remove(seq); }
    size_t outbox_size() override { return inner_->outbox_size(); }
    ReplicaMeta meta() override { return inner_->meta(); }
    void set_meta(const ReplicaMeta& m) override { inner_->set_meta(m); }
    void add_conflict(const ConflictRecord& c) override { inner_->add_conflict(c); }
    void add_rejection(const Rejection& r) override { inner_->add_rejection(r); }
    Status commit() override { return inner_->commit(); }

   private:
    std::vector<ClientTxn> counted(std::vector<ClientTxn> txns) {
      owner_.outbox_reads += txns.size();
      return txns;
    }
    CountingReplica& owner_;
    std::unique_ptr<ReplicaTxn> inner_;
  };
  ReplicaStore& inner_;
};

// Applying a batch costs one load and one save per record it changes, not one per change: on a device each
// is a query and a row write, and a new account alone is four changes.
TEST(ClientServer, BatchLoadsAndSavesEachRecordOnce) {
  World w;
  defer_fan_out(w);
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  CountingReplica counting(alice.store);
  alice.client = std::make_unique<SyncClient>(counting, alice.config);
  w.connect(alice);
  w.connect(bob);
  w.server->fan_out(w.now);
  w.pump();
  ASSERT_TRUE(alice.client->idle());

  std::vector<RecordId> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(new_account(w, bob, "t-north", "North " + std::to_string(i)));
  ASSERT_TRUE(bob.client->write({set(EntityId::kAccount, ids[0], 1, Value::text("North 0, renamed"))}, w.now)
                  .is_ok());
  w.pump();  // bob's pushes are applied; nothing fanned out yet
  counting.loads = counting.saves = 0;
  w.server->fan_out(w.now);
  w.pump();
  EXPECT_EQ(counting.loads, 3u) << "13 changes of 3 records";
  EXPECT_EQ(counting.saves, 3u);
  ASSERT_EQ(alice.store.records().size(), 3u);
  EXPECT_EQ(alice.store.records().at(RecordKey{EntityId::kAccount, ids[0]}).get(1),
            Value::text("North 0, renamed"));
  EXPECT_EQ(alice.store.records().at(RecordKey{EntityId::kAccount, ids[2]}).get(1), Value::text("North 2"));
}

// A live session whose socket is backed up is sent nothing while it is; when it drains, one batch brings it
// up to date, and it stays live.
TEST(ClientServer, BacklogCoalescesLiveBatchesUntilTheSessionDrains) {
  World w;
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  w.connect(alice);
  w.connect(bob);
  w.connect(carol);
  ASSERT_TRUE(alice.client->idle());

  w.server->set_backlogged(alice.session, true);
  auto batches_for_alice = [&] {
    int n = 0;
    for (SyncServer::Outgoing& o : w.server->take_outgoing()) {
      if (std::holds_alternative<protocol::ChangeBatch>(o.message) && o.session == alice.session) ++n;
      for (Device* d : w.devices)
        if (d->session == o.session) d->client->on_message(o.message, w.now);
    }
    for (Device* d : w.devices) (void)d->client->take_outgoing();  // acks and the like: nothing for alice
    return n;
  };
  std::vector<RecordId> accounts;
  for (int i = 0; i < 5; ++i) {
    accounts.push_back(new_account(w, bob, "t-north", "North " + std::to_string(i)));
    for (protocol::Message& m : bob.client->take_outgoing()) w.server->on_message(bob.session, m, w.now);
    EXPECT_EQ(batches_for_alice(), 0) << "commit " << i << " sent a live batch to a backlogged session";
  }
  new_account(w, carol, "t-south", "South");  // not alice's: her catch-up batch leaves it out
  for (protocol::Message& m : carol.client->take_outgoing()) w.server->on_message(carol.session, m, w.now);
  EXPECT_EQ(batches_for_alice(), 0);
  EXPECT_TRUE(alice.store.records().empty());

  w.server->set_backlogged(alice.session, false);
  std::vector<protocol::ChangeBatch> got;
  for (SyncServer::Outgoing& o : w.server->take_outgoing()) {
    ASSERT_EQ(o.session, alice.session);
    const auto* b = std::get_if<protocol::ChangeBatch>(&o.message);
    ASSERT_NE(b, nullptr);
    got.push_back(*b);
    alice.client->on_message(o.message, w.now);
  }
  ASSERT_EQ(got.size(), 1u) << "one batch for everything she missed";
  EXPECT_EQ(got[0].txns.size(), 5u);
  EXPECT_EQ(got[0].to_cursor, w.store.head_seq().value());
  EXPECT_FALSE(got[0].has_more);
  EXPECT_EQ(alice.store.records().size(), 5u);
  for (const RecordId& id : accounts)
    EXPECT_EQ(alice.store.records().count(RecordKey{EntityId::kAccount, id}), 1u);
  EXPECT_EQ(alice.store.meta().cursor, w.store.head_seq().value());
  EXPECT_TRUE(alice.client->take_outgoing().empty()) << "no pull: she is still live";

  // Live again: the next commit reaches her at once.
  new_account(w, bob, "t-north", "After");
  w.pump();
  EXPECT_EQ(alice.store.records().size(), 6u);
}

// Counts what the state machine reads from the store.
// What a backlogged session is owed is gathered from the fan-outs while it stays a plain run of
// transactions; a scope move (records entering whole) ends the gathering, and the drain reads the session's
// part of the log again from what the device has -- including what had been gathered before the move.
TEST(ClientServer, BacklogAcrossAScopeMoveCatchesUpFromWhatTheDeviceHas) {
  World w;
  Device& ho = w.add(10, "ho");
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  for (Device* d : {&ho, &alice, &bob, &carol}) w.connect(*d);
  RecordId south = new_account(w, carol, "t-south", "Comes north");
  w.pump();
  ASSERT_TRUE(alice.store.records().empty());

  w.server->set_backlogged(alice.session, true);
  auto deliver_except_alice = [&] {
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      for (Device* d : w.devices)
        for (protocol::Message& m : d->client->take_outgoing()) {
          moved = true;
          w.server->on_message(d->session, m, w.now);
        }
      for (SyncServer::Outgoing& o : w.server->take_outgoing()) {
        moved = true;
        ASSERT_NE(o.session, alice.session) << "sent to a backlogged session";
        for (Device* d : w.devices)
          if (d->session == o.session) d->client->on_message(o.message, w.now);
      }
      if (!moved) return;
    }
  };
  RecordId north = new_account(w, bob, "t-north", "Gathered first");
  deliver_except_alice();
  ASSERT_TRUE(
      ho.client->write({set(EntityId::kAccount, south, f::kAccountTerritory, Value::text("t-north"))}, w.now)
          .is_ok());
  deliver_except_alice();
  RecordId later = new_account(w, bob, "t-north", "After the move");
  deliver_except_alice();

  w.server->set_backlogged(alice.session, false);
  w.pump();
  EXPECT_EQ(alice.store.meta().cursor, w.store.head_seq().value());
  for (RecordId id : {north, south, later})
    EXPECT_EQ(alice.store.records().count(RecordKey{EntityId::kAccount, id}), 1u) << id.to_string();
  EXPECT_EQ(alice.store.records().size(), 3u);
}

class CountingStore final : public testing_support::ForwardingCentralStore {
 public:
  explicit CountingStore(MemoryCentralStore& inner) : ForwardingCentralStore(inner) {}
  size_t txns_read = 0, conflicts_read = 0, records_scanned = 0, records_loaded = 0;

  // Reads outside a store transaction (fan-out and catch-up resolving scopes); a CentralTxn's are not seen.
  Result<std::optional<RecordState>> load(EntityId e, const RecordId& id) override {
    ++records_loaded;
    return ForwardingCentralStore::load(e, id);
  }

  Result<std::vector<ServerTxn>> read_log(uint64_t after, size_t max) override {
    Result<std::vector<ServerTxn>> out = ForwardingCentralStore::read_log(after, max);
    if (out) txns_read += out->size();
    return out;
  }
  Result<LogSlice> read_log_for(uint64_t after, uint64_t up_to, const std::vector<ScopeKey>& scopes,
                                size_t max) override {
    Result<LogSlice> out = ForwardingCentralStore::read_log_for(after, up_to, scopes, max);
    if (out) txns_read += out->txns.size();
    return out;
  }
  Result<std::vector<ConflictRecord>> read_conflicts(uint64_t after, uint64_t up_to) override {
    Result<std::vector<ConflictRecord>> out = ForwardingCentralStore::read_conflicts(after, up_to);
    if (out) conflicts_read += out->size();
    return out;
  }
  Result<std::vector<RecordState>> scan(RecordKey after, size_t max) override {
    Result<std::vector<RecordState>> out = ForwardingCentralStore::scan(after, max);
    if (out) records_scanned += out->size();
    return out;
  }
  Result<std::vector<RecordState>> scan_in_scopes(const std::vector<ScopeKey>& scopes, RecordKey after,
                                                  size_t max) override {
    Result<std::vector<RecordState>> out = ForwardingCentralStore::scan_in_scopes(scopes, after, max);
    if (out) records_scanned += out->size();
    return out;
  }
};

// A rep's catch-up reads neither another territory's transactions nor its conflicts: a busy day of
// conflicts elsewhere costs her nothing.
TEST(ClientServer, CatchUpReadsNoOtherTerritorysConflicts) {
  World w;
  CountingStore counting(w.store);
  w.server = std::make_unique<SyncServer>(counting, w.auth, ServerConfig{});
  Device& ho = w.add(10, "ho");
  Device& alice = w.add(11, "alice");
  Device& carol = w.add(13, "carol");
  w.connect(alice);
  w.disconnect(alice);
  w.connect(ho);
  w.connect(carol);
  RecordId south = new_account(w, carol, "t-south", "Contested");
  w.pump();
  for (int i = 0; i < 30; ++i) {  // carol edits offline, head office edits later, carol's write loses
    w.disconnect(carol);
    ASSERT_TRUE(
        carol.client
            ->write({set(EntityId::kAccount, south, 1, Value::text("carol " + std::to_string(i)))}, w.now)
            .is_ok());
    w.now += 10;
    ASSERT_TRUE(
        ho.client->write({set(EntityId::kAccount, south, 1, Value::text("ho " + std::to_string(i)))}, w.now)
            .is_ok());
    w.pump();
    w.now += 10;
    w.connect(carol);
  }
  ASSERT_GE(w.store.conflicts().size(), 30u);

  // A restarted server: its log tail (the newest entries, kept in memory) is empty, so the catch-up reads
  // the store's log index.
  w.server = std::make_unique<SyncServer>(counting, w.auth, ServerConfig{});
  counting.txns_read = counting.conflicts_read = 0;
  PullTrace trace = connect_counting_pulls(w, alice);
  ASSERT_EQ(trace.batches.size(), 1u);
  EXPECT_EQ(trace.batches[0].to_cursor, w.store.head_seq().value());
  EXPECT_TRUE(trace.batches[0].conflicts.empty());
  EXPECT_EQ(counting.txns_read, 0u) << "nothing in the log is alice's";
  EXPECT_EQ(counting.conflicts_read, 0u) << "the conflicts are all in t-south";
  // Carol, who lost every one of them, was told of each.
  size_t carols = 0;
  for (const ConflictRecord& c : carol.store.conflicts()) carols += c.loser.user == "carol";
  EXPECT_GE(carols, 30u);
}

// A rep's bootstrap costs her scope, not the store: the pages come from her own scopes
// (CentralStore::scan_in_scopes), and a fresh device (nothing of it ever applied) cannot have created
// anything that left its scope, so the scan for such records is skipped.
TEST(ClientServer, FreshDeviceBootstrapReadsOnlyItsScope) {
  World w;
  CountingStore counting(w.store);
  w.server = std::make_unique<SyncServer>(counting, w.auth, ServerConfig{});
  Device& ho = w.add(10, "ho");
  Device& alice = w.add(11, "alice");
  w.connect(ho);
  for (int i = 0; i < 100; ++i) new_account(w, ho, i % 2 ? "t-north" : "t-south", "A" + std::to_string(i));
  w.pump();
  ASSERT_EQ(w.store.records().size(), 100u);
  counting.records_scanned = 0;
  w.connect(alice);
  ASSERT_TRUE(alice.store.meta().bootstrap_done);
  EXPECT_EQ(alice.store.records().size(), 50u);
  // One pass over her 50 to count them, one for the pages, a few one-record probes; not the other 50.
  EXPECT_LE(counting.records_scanned, 2 * 50u + 10u);
}

// ---- Two server instances on one store (issue 20)

// Applies `changes` through `instance` -- another server process in front of the same store, whose commits
// this test's server (w.server) hears of only through poll_external_commits -- as head office's node 99.
void apply_through(SyncServer& instance, World& w, std::vector<Change> changes) {
  ClientTxn txn;
  txn.node = 99;
  txn.node_seq = w.store.node_state(99).value().last_node_seq + 1;
  txn.created_at_ms = w.now;
  Hlc hlc = make_hlc(w.now + 1000, 0);  // after every device's write so far
  for (Change& c : changes) {
    c.version = Version{hlc++, 99};
    txn.changes.push_back(std::move(c));
  }
  Result<protocol::TxnResult> r =
      instance.apply_local(txn, Principal{"ho", Role::kHeadOffice, {}, {}}, w.now);
  ASSERT_TRUE(r) << r.status().to_string();
  ASSERT_EQ(r->outcome, protocol::TxnOutcome::kApplied) << r->message;
}

std::vector<Change> account_changes(RecordId id, const std::string& territory, const std::string& name) {
  return {create(EntityId::kAccount, id), set(EntityId::kAccount, id, 1, Value::text(name)),
          set(EntityId::kAccount, id, 2, Value::text(territory)),
          set(EntityId::kAccount, id, 10, Value::text("ho"))};
}

// With two instances every commit of one is a commit the other did not make. Those used to empty the other's
// scope cache (and every own commit after one, the head having moved unseen), so each fan-out loaded every
// record of its range again. Now the fan-out that reads another instance's commits applies them to the
// cache: an account's territory set in the transaction is its scope, the records a commit touches lose
// their older entries, and the instance's own commits keep theirs.
TEST(ClientServer, AnotherInstancesCommitsLeaveTheScopeCacheInUse) {
  World w;
  CountingStore counting(w.store);
  w.server = std::make_unique<SyncServer>(counting, w.auth, ServerConfig{});
  SyncServer other(w.store, w.auth, ServerConfig{});
  Device& alice = w.add(11, "alice");
  Device& bob = w.add(12, "bob");
  Device& carol = w.add(13, "carol");
  w.connect(alice);
  w.connect(bob);
  w.connect(carol);
  const RecordId mine = new_account(w, alice, "t-north", "Mine");
  w.pump();
  RecordIdGenerator ids(99);

  // Another instance's commit reaches the live sessions it concerns without a record load.
  const RecordId theirs = ids.next(w.now);
  apply_through(other, w, account_changes(theirs, "t-north", "Theirs"));
  counting.records_loaded = 0;
  w.server->poll_external_commits(w.now);
  w.pump();
  EXPECT_EQ(alice.store.records().count(RecordKey{EntityId::kAccount, theirs}), 1u);
  EXPECT_EQ(bob.store.records().count(RecordKey{EntityId::kAccount, theirs}), 1u);
  EXPECT_EQ(carol.store.records().count(RecordKey{EntityId::kAccount, theirs}), 0u);
  EXPECT_EQ(counting.records_loaded, 0u) << "the transaction sets the account's territory";

  // This instance commits after another instance's commit it has not read yet: its fan-out reads both,
  // and still loads nothing (its own account's scope is from its own commit).
  const RecordId south = ids.next(w.now);
  apply_through(other, w, account_changes(south, "t-south", "South"));
  w.now += 10;
  counting.records_loaded = 0;
  ASSERT_TRUE(alice.client->write({set(EntityId::kAccount, mine, 1, Value::text("Mine 2"))}, w.now).is_ok());
  w.pump();
  EXPECT_EQ(bob.store.records().at(RecordKey{EntityId::kAccount, mine}).get(1), Value::text("Mine 2"));
  EXPECT_EQ(carol.store.records().count(RecordKey{EntityId::kAccount, south}), 1u) << "in the same range";
  EXPECT_EQ(bob.store.records().count(RecordKey{EntityId::kAccount, south}), 0u);
  EXPECT_EQ(counting.records_loaded, 0u);

  // An edit through the other instance of a record this one has cached, which does not say its scope: the
  // entry from before the edit is dropped and the record loaded once.
  apply_through(other, w, {set(EntityId::kAccount, mine, 1, Value::text("Mine 3"))});
  counting.records_loaded = 0;
  w.server->poll_external_commits(w.now);
  w.pump();
  EXPECT_EQ(bob.store.records().at(RecordKey{EntityId::kAccount, mine}).get(1), Value::text("Mine 3"));
  EXPECT_EQ(carol.store.records().count(RecordKey{EntityId::kAccount, mine}), 0u);
  EXPECT_EQ(counting.records_loaded, 1u);
}

// The scope cache must never outlive what another instance did to a record's scope. The account (and with
// it its contact, which the move does not touch) moves through the other instance while this one holds the
// contact's scope from its own commit; this instance serves both reps' catch-ups past the move (reads of
// their own part of the log, which do not bring its cache up to date), then another instance's edit of the
// contact: the old territory's rep must not be sent it, the new territory's rep must be.
TEST(ClientServer, AMoveThroughAnotherInstanceIsNeverJudgedOnAScopeCachedBeforeIt) {
  World w;
  SyncServer other(w.store, w.auth, ServerConfig{});
  Device& alice = w.add(11, "alice");
  Device& carol = w.add(13, "carol");
  w.connect(alice);
  const RecordId acct = new_account(w, alice, "t-north", "Moving");
  const RecordId contact = new_contact(w, alice, acct, "Ines");
  w.pump();
  w.disconnect(alice);

  apply_through(other, w, {set(EntityId::kAccount, acct, f::kAccountTerritory, Value::text("t-south"))});
  w.connect(alice);
  w.connect(carol);
  ASSERT_TRUE(alice.store.records().empty()) << "the account and its contact left alice's device";
  ASSERT_EQ(carol.store.records().count(RecordKey{EntityId::kContact, contact}), 1u);

  apply_through(other, w, {set(EntityId::kContact, contact, 2, Value::text("Ines S"))});
  w.server->poll_external_commits(w.now);
  w.pump();
  EXPECT_EQ(carol.store.records().at(RecordKey{EntityId::kContact, contact}).get(2), Value::text("Ines S"));
  EXPECT_TRUE(alice.store.records().empty()) << "sent on the contact's scope from before the move";
}

// ---- Protocol version 2: pipelined pushes, multi-page bootstrap, and old devices

// Offline writes of one account each (4 changes), `n` of them.
void offline_accounts(World& w, Device& d, int n) {
  for (int i = 0; i < n; ++i) new_account(w, d, "t-north", "acct " + std::to_string(i));
}

// The server applied each of the node's transactions once, in node_seq order 1..n.
void expect_exactly_once_in_order(World& w, NodeId node, uint64_t n) {
  std::vector<uint64_t> seqs;
  for (const ServerTxn& t : w.store.log())
    if (t.origin_node == node) seqs.push_back(t.origin_node_seq);
  ASSERT_EQ(seqs.size(), n);
  for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(seqs[i], i + 1) << "position " << i;
  EXPECT_EQ(w.store.node_state(node).value().last_node_seq, n);
}

// A big backlog is pushed reading each outbox entry once: an acknowledgement costs the entries it
// acknowledges, not the outbox left (every ack used to read and decode the whole outbox: quadratic).
TEST(ClientServer, BacklogPushReadsEachOutboxEntryOnce) {
  for (uint32_t version : {1u, 2u}) {
    SCOPED_TRACE("protocol version " + std::to_string(version));
    World w;
    Device& alice = w.add(11, "alice");
    alice.config.protocol_version = version;
    CountingReplica counting(alice.store);
    alice.client = std::make_unique<SyncClient>(counting, alice.config);
    const int n = 1500;
    offline_accounts(w, alice, n);
    size_t pushes = 0;
    w.watch = [&](Device&, const protocol::Message& m, bool to_server) {
      if (to_server && std::holds_alternative<protocol::PushTxns>(m)) ++pushes;
    };
    w.connect(alice);
    EXPECT_TRUE(alice.store.outbox().empty());
    expect_exactly_once_in_order(w, 11, n);
    EXPECT_EQ(counting.outbox_reads, static_cast<size_t>(n));
    const size_t per_push = version >= 2 ? tuning::kMaxTxnsPerPushV2 : tuning::kMaxTxnsPerPush;
    EXPECT_EQ(pushes, (n + per_push - 1) / per_push);
    // Push progress: acknowledged of pending, rising to all of them.
    std::vector<const ClientEvent*> progress;
    for (const ClientEvent& e : alice.events)
      if (e.kind == ClientEvent::Kind::kPushProgress) progress.push_back(&e);
    ASSERT_EQ(progress.size(), pushes);
    for (size_t i = 1; i < progress.size(); ++i) EXPECT_GT(progress[i]->done, progress[i - 1]->done);
    EXPECT_EQ(progress.back()->done, static_cast<uint64_t>(n));
    EXPECT_EQ(progress.back()->total, static_cast<uint64_t>(n));
  }
}

// A version 2 device keeps several pushes in flight. Their acknowledgements lost, the oldest times out: all
// are sent again from the oldest entry, and the server's node_seq watermark answers what it already has as
// duplicates. Each transaction is applied once and in order.
TEST(ClientServer, PipelinedPushesAreExactlyOnceAndInOrderWhenAcksAreLost) {
  World w;
  Device& alice = w.add(11, "alice");
  const int n = 3000;  // more than a full window (4 x 512)
  offline_accounts(w, alice, n);
  alice.session = w.next_session++;
  w.server->on_connect(alice.session, w.now);
  alice.client->on_connected(w.now);
  w.pump();  // nothing lost: the window slides to the end
  ASSERT_EQ(alice.client->protocol_version(), 2u);
  EXPECT_EQ(alice.client->pushes_in_flight(), 0u);
  EXPECT_TRUE(alice.store.outbox().empty());
  expect_exactly_once_in_order(w, 11, n);

  // Now with acks lost from the start: the whole window is unanswered.
  Device& bob = w.add(12, "bob");
  offline_accounts(w, bob, n);
  bob.session = w.next_session++;
  w.server->on_connect(bob.session, w.now);
  bob.client->on_connected(w.now);
  // Handshake by hand, then the window goes out and every answer is lost.
  for (auto& m : bob.client->take_outgoing()) w.server->on_message(bob.session, m, w.now);
  for (auto& o : w.server->take_outgoing()) bob.client->on_message(o.message, w.now);
  EXPECT_EQ(bob.client->pushes_in_flight(), tuning::kMaxPushesInFlight);
  w.pump(/*drop_to_client=*/true);
  EXPECT_EQ(bob.client->pushes_in_flight(), tuning::kMaxPushesInFlight);
  EXPECT_EQ(bob.store.outbox().size(), static_cast<size_t>(n));
  w.now += tuning::kRequestTimeoutMs;
  bob.client->on_tick(w.now);
  w.pump();
  EXPECT_TRUE(bob.store.outbox().empty());
  expect_exactly_once_in_order(w, 12, n);
}

// A push the server answers only in part (here: an ack of the first transactions only, as after a failed
// store read) makes the device drop the window and send again from the oldest entry; the gap errors the
// pushes behind it meet are for pushes already dropped and change nothing.
TEST(ClientServer, PartlyAnsweredPushResendsFromTheOldestEntry) {
  World w;
  Device& alice = w.add(11, "alice");
  const int n = 1200;
  offline_accounts(w, alice, n);
  alice.session = w.next_session++;
  w.server->on_connect(alice.session, w.now);
  alice.client->on_connected(w.now);
  for (auto& m : alice.client->take_outgoing()) w.server->on_message(alice.session, m, w.now);
  for (auto& o : w.server->take_outgoing()) alice.client->on_message(o.message, w.now);
  std::vector<protocol::PushTxns> pushes;
  for (auto& m : alice.client->take_outgoing())
    if (auto* p = std::get_if<protocol::PushTxns>(&m)) pushes.push_back(*p);
  ASSERT_EQ(pushes.size(), 3u);  // 512 + 512 + 176
  // The server sees the first push cut after 10 transactions, then the other two (which meet a gap).
  protocol::PushTxns cut = pushes[0];
  cut.txns.resize(10);
  w.server->on_message(alice.session, cut, w.now);
  for (size_t i = 1; i < pushes.size(); ++i) w.server->on_message(alice.session, pushes[i], w.now);
  std::vector<SyncServer::Outgoing> answers = w.server->take_outgoing();
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(std::get<protocol::Error>(answers[1].message).code, ErrorCode::kSequenceGap);
  // The client hears "10 of 512 applied" for its first push, then the two gaps.
  protocol::PushAck ack = std::get<protocol::PushAck>(answers[0].message);
  alice.client->on_message(ack, w.now);
  EXPECT_EQ(alice.store.outbox().size(), static_cast<size_t>(n - 10));
  for (size_t i = 1; i < answers.size(); ++i) alice.client->on_message(answers[i].message, w.now);
  w.pump();
  EXPECT_TRUE(alice.store.outbox().empty());
  expect_exactly_once_in_order(w, 11, n);
}

// An old device (protocol version 1) against this server: the session is version 1, one push in flight of
// at most kMaxTxnsPerPush, one bootstrap page per request, and the request carries no max_pages.
// A server held at version 1 (fieldsync-server --max-protocol 1: no compressed frames) speaks version 1 with
// a version 2 device: one push in flight of at most kMaxTxnsPerPush, one page per bootstrap request.
TEST(ClientServer, ServerHeldAtVersion1SpeaksVersion1WithNewDevices) {
  ServerConfig config;
  config.max_protocol_version = 1;
  World w(config);
  Device& alice = w.add(11, "alice");
  offline_accounts(w, alice, 300);
  size_t max_in_flight = 0;
  uint32_t welcome_version = 0;
  w.watch = [&](Device& d, const protocol::Message& m, bool) {
    if (&d != &alice) return;
    max_in_flight = std::max(max_in_flight, alice.client->pushes_in_flight());
    if (const auto* p = std::get_if<protocol::PushTxns>(&m)) {
      EXPECT_LE(p->txns.size(), tuning::kMaxTxnsPerPush);
    }
    if (const auto* r = std::get_if<protocol::BootstrapRequest>(&m)) {
      EXPECT_EQ(r->max_pages, 0u);
    }
    if (const auto* welcome = std::get_if<protocol::Welcome>(&m)) welcome_version = welcome->protocol_version;
  };
  w.connect(alice);
  EXPECT_EQ(welcome_version, 1u);
  EXPECT_EQ(w.server->session_version(alice.session), 1u);
  EXPECT_EQ(alice.client->protocol_version(), 1u);
  EXPECT_EQ(max_in_flight, 1u);
  EXPECT_TRUE(alice.store.outbox().empty());
  expect_exactly_once_in_order(w, 11, 300);
}

TEST(ClientServer, Version1DeviceKeepsTheVersion1Exchange) {
  World w;
  Device& ho = w.add(10, "ho");
  w.connect(ho);
  for (int i = 0; i < 20; ++i) new_account(w, ho, "t-north", "acct " + std::to_string(i));
  w.pump();

  Device& old = w.add(11, "alice");
  old.config.protocol_version = 1;
  old.config.bootstrap_page_size = 5;
  old.restart();
  offline_accounts(w, old, 300);
  size_t requests = 0, pages = 0, max_in_flight = 0;
  uint32_t welcome_version = 0;
  w.watch = [&](Device& d, const protocol::Message& m, bool to_server) {
    if (&d != &old) return;
    max_in_flight = std::max(max_in_flight, old.client->pushes_in_flight());
    if (const auto* p = std::get_if<protocol::PushTxns>(&m)) {
      EXPECT_LE(p->txns.size(), tuning::kMaxTxnsPerPush);
    }
    if (const auto* r = std::get_if<protocol::BootstrapRequest>(&m)) {
      EXPECT_EQ(r->max_pages, 0u);
      ++requests;
    }
    if (std::holds_alternative<protocol::BootstrapPage>(m)) ++pages;
    if (const auto* welcome = std::get_if<protocol::Welcome>(&m)) welcome_version = welcome->protocol_version;
    (void)to_server;
  };
  w.connect(old);
  EXPECT_EQ(welcome_version, 1u);
  EXPECT_EQ(w.server->session_version(old.session), 1u);
  EXPECT_EQ(old.client->protocol_version(), 1u);
  EXPECT_EQ(max_in_flight, 1u);
  EXPECT_EQ(requests, pages) << "one page per request";
  EXPECT_GE(pages, 20u / 5);
  EXPECT_TRUE(old.store.outbox().empty());
  EXPECT_TRUE(old.store.meta().bootstrap_done);
  expect_exactly_once_in_order(w, 11, 300);

  // A new device in the same territory sees everything; its session is version 2.
  Device& bob = w.add(12, "bob");
  w.connect(bob);
  EXPECT_EQ(w.server->session_version(bob.session), 2u);
  EXPECT_EQ(bob.store.records().size(), 320u);
}

// A server older than the device refuses version 2 at the handshake: the device offers version 1 on its
// next connection instead of stopping.
TEST(ClientServer, DeviceFallsBackToVersion1WithAnOlderServer) {
  MemoryReplicaStore store(11);
  ClientConfig config;
  config.user = "alice";
  config.token = "token-alice";
  SyncClient client(store, config);
  client.on_connected(kStart);
  std::vector<protocol::Message> out = client.take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<protocol::Hello>(out[0]).protocol_version, 2u);
  protocol::Error refused;
  refused.code = ErrorCode::kUnsupportedProtocol;
  refused.message = "protocol version 2 is not supported; this server speaks 1 to 1";
  client.on_message(refused, kStart);
  EXPECT_NE(client.state(), SyncClient::State::kStopped);
  client.on_disconnected(kStart);
  client.on_connected(kStart + 1000);
  out = client.take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<protocol::Hello>(out[0]).protocol_version, 1u);
  // Refused at version 1 too: nothing older to offer, the device stops.
  client.on_message(refused, kStart + 1000);
  EXPECT_EQ(client.state(), SyncClient::State::kStopped);
}

// The codec admits the largest push of any version; a version 1 session is held to version 1's limits.
TEST(ClientServer, Version1SessionIsHeldToVersion1PushLimits) {
  World w;
  Device& old = w.add(11, "alice");
  old.config.protocol_version = 1;
  old.restart();
  w.connect(old);
  protocol::PushTxns push;
  push.request_id = 99;
  for (uint64_t i = 0; i <= tuning::kMaxTxnsPerPush; ++i) push.txns.push_back(ClientTxn{11, i + 1, 0, {}});
  w.server->on_message(old.session, push, w.now);
  std::vector<SyncServer::Outgoing> out = w.server->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<protocol::Error>(out[0].message).code, ErrorCode::kTooManyChanges);
  EXPECT_TRUE(w.store.log().empty());
}

// bootstrap_in_steps (SyncService): a multi-page request is answered one page per call, the driver asking
// for each further one; the device gets the same pages in the same order.
TEST(ClientServer, BootstrapInStepsAnswersOnePagePerCall) {
  World w;
  Device& ho = w.add(10, "ho");
  w.connect(ho);
  for (int i = 0; i < 60; ++i) new_account(w, ho, "t-north", "acct " + std::to_string(i));
  w.pump();
  ServerConfig config;
  config.bootstrap_in_steps = true;
  w.server = std::make_unique<SyncServer>(w.store, w.auth, config);
  Device& alice = w.add(11, "alice");
  alice.config.bootstrap_page_size = 5;
  alice.restart();
  alice.session = w.next_session++;
  w.server->on_connect(alice.session, w.now);
  alice.client->on_connected(w.now);
  size_t calls = 0, pages = 0;
  for (int round = 0; round < 100 && !alice.store.meta().bootstrap_done; ++round) {
    for (auto& m : alice.client->take_outgoing()) w.server->on_message(alice.session, m, w.now);
    for (;;) {
      std::vector<SyncServer::Outgoing> out = w.server->take_outgoing();
      size_t here = 0;
      for (auto& o : out) {
        here += std::holds_alternative<protocol::BootstrapPage>(o.message) ? 1 : 0;
        alice.client->on_message(o.message, w.now);
      }
      EXPECT_LE(here, 1u) << "one page per call";
      pages += here;
      if (!w.server->bootstrap_pages_owed(alice.session)) break;
      w.server->continue_bootstrap(alice.session, w.now);
      ++calls;
    }
  }
  EXPECT_TRUE(alice.store.meta().bootstrap_done);
  EXPECT_EQ(alice.store.records().size(), 60u);
  EXPECT_EQ(pages, 12u);
  EXPECT_EQ(calls, 12u - 2) << "two requests (8 pages, then 4), each answered first by on_message";

  // A session closed while pages are owed is owed nothing more (a driver looping on bootstrap_pages_owed
  // ends).
  Device& bob = w.add(12, "bob");
  bob.config.bootstrap_page_size = 5;
  bob.restart();
  bob.session = w.next_session++;
  w.server->on_connect(bob.session, w.now);
  bob.client->on_connected(w.now);
  for (int step = 0; step < 2; ++step) {
    for (auto& m : bob.client->take_outgoing()) w.server->on_message(bob.session, m, w.now);
    for (auto& o : w.server->take_outgoing()) bob.client->on_message(o.message, w.now);
  }
  ASSERT_TRUE(w.server->bootstrap_pages_owed(bob.session));
  // A backlogged session's pages wait until its queue drains.
  w.server->set_backlogged(bob.session, true);
  EXPECT_FALSE(w.server->bootstrap_pages_owed(bob.session));
  w.server->set_backlogged(bob.session, false);
  EXPECT_TRUE(w.server->bootstrap_pages_owed(bob.session));
  w.server->on_bad_frame(bob.session, Status(ErrorCode::kMalformedMessage, "garbage"));
  w.server->continue_bootstrap(bob.session, w.now);
  EXPECT_FALSE(w.server->bootstrap_pages_owed(bob.session));
  for (auto& o : w.server->take_outgoing())
    EXPECT_FALSE(std::holds_alternative<protocol::BootstrapPage>(o.message));
}

// A version 2 bootstrap interrupted after any page resumes from the last page applied: no page the device
// committed is sent again.
TEST(ClientServer, MultiPageBootstrapInterruptedAtAnyPageResumesWithoutResending) {
  World w;
  Device& ho = w.add(10, "ho");
  w.connect(ho);
  const size_t records = 60, page = 5, page_count = records / page;  // two runs: 8 pages, then 4
  for (size_t i = 0; i < records; ++i) new_account(w, ho, "t-north", "acct " + std::to_string(i));
  w.pump();
  for (size_t k = 1; k < page_count; ++k) {
    SCOPED_TRACE("interrupted after page " + std::to_string(k));
    Device& d = w.add(100 + k, "alice");
    d.config.bootstrap_page_size = page;
    d.restart();
    d.session = w.next_session++;
    w.server->on_connect(d.session, w.now);
    d.client->on_connected(w.now);
    // Deliver pages one at a time, the device's requests as soon as it sends them, until k pages arrived.
    std::deque<protocol::Message> to_device;
    size_t delivered = 0;
    while (delivered < k) {
      for (auto& m : d.client->take_outgoing()) w.server->on_message(d.session, m, w.now);
      for (auto& o : w.server->take_outgoing()) to_device.push_back(std::move(o.message));
      ASSERT_FALSE(to_device.empty());
      protocol::Message m = std::move(to_device.front());
      to_device.pop_front();
      delivered += std::holds_alternative<protocol::BootstrapPage>(m) ? 1 : 0;
      d.client->on_message(m, w.now);
    }
    ASSERT_EQ(d.store.records().size(), k * page);
    EXPECT_EQ(d.store.meta().bootstrap_received, k * page);
    w.disconnect(d);
    d.restart();
    size_t resent = 0;
    w.watch = [&](Device& to, const protocol::Message& m, bool to_server) {
      if (&to != &d || to_server) return;
      if (const auto* p = std::get_if<protocol::BootstrapPage>(&m)) resent += p->records.size();
    };
    w.connect(d);
    w.watch = nullptr;
    EXPECT_TRUE(d.store.meta().bootstrap_done);
    EXPECT_EQ(d.store.records().size(), records);
    EXPECT_EQ(resent, records - k * page) << "only the pages after the last one applied";
    w.disconnect(d);
  }
}

}  // namespace
}  // namespace fieldsync

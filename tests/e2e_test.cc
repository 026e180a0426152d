// End to end over real TLS on loopback with the real binaries: fieldsync-server runs as a child process
// (--dev certificate in a temporary data directory), users, territories, devices and tokens are seeded with
// the real Directory (fieldsync::server::Admin on the data directory, or the fieldsync-admin binary while the
// server runs), and phones are client-core FieldClients on SQLite replicas driven by WsClient, trusting the
// server's generated certificate. Issue 4's Tests section: convergence with conflicts recorded, scope
// enforcement both ways, expired and bad tokens, a revoked device, kill -9 during a push stream, scope moves
// over the network, and the binary's own flags, config file and SIGTERM drain.
//
// Every wait is a bounded poll of a condition (under ASan the server child is several times slower).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fieldsync/client/field_client.h"
#include "fieldsync/client/ws_client.h"
#include "fieldsync/server/admin.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/record_id.h"
#include "support/server_process.h"

#ifndef FIELDSYNC_SERVER_BIN
#error "FIELDSYNC_SERVER_BIN must name the fieldsync-server binary"
#endif
#ifndef FIELDSYNC_ADMIN_BIN
#error "FIELDSYNC_ADMIN_BIN must name the fieldsync-admin binary"
#endif
#ifndef FIELDSYNC_REP_BIN
#error "FIELDSYNC_REP_BIN must name the fieldsync-rep binary"
#endif

extern char** environ;

namespace fieldsync {
namespace {

using namespace std::chrono_literals;
using client::FieldClient;
using client::WsClient;
using client::WsClientOptions;
using client::WsError;
using client::WsRawPeer;
using client::WsStatus;
using schema::EntityId;
using schema::Role;
using testsupport::Child;
using testsupport::eventually;
using testsupport::ExitStatus;
using testsupport::kWait;
using testsupport::run;
using testsupport::RunResult;
using testsupport::ServerProcess;
using testsupport::slurp;
using testsupport::TempDir;

constexpr uint16_t kAccountPhone = 5, kAccountEmail = 6, kLineQuantity = 3, kLineDiscount = 5;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- Phones

// One device: a FieldClient on its own SQLite replica, and (while online) a WsClient. Everything the
// observers hear is recorded.
struct Phone {
  std::string user;
  NodeId node = 0;
  std::string path;
  WsClientOptions transport;
  std::unique_ptr<FieldClient> client;
  std::unique_ptr<WsClient> ws;
  RecordIdGenerator ids{1};

  std::mutex mu;
  std::vector<Status> errors;
  std::vector<Rejection> rejections;
  std::vector<ConflictRecord> conflicts;
  std::atomic<int> bootstrap_events{0};
  std::atomic<int> erase_events{0};

  ~Phone() { offline(); }

  WsClientOptions options() {
    WsClientOptions o = transport;
    o.after_frame = [this] { client->dispatch_events(); };
    o.on_connection = [this](bool) { client->dispatch_events(); };
    return o;
  }
  void online() {
    ws = std::make_unique<WsClient>(client->engine(), options());
    WsStatus s = ws->start();
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  void offline() {
    if (ws) {
      ws->stop();
      ws.reset();
    }
    if (client) client->dispatch_events();
  }
  // Connects, pushes and pulls until idle, disconnects.
  WsStatus sync_once() {
    WsClient c(client->engine(), options());
    WsStatus s = c.sync_once(kWait);
    client->dispatch_events();
    return s;
  }
  bool has_error(ErrorCode code) {
    std::lock_guard lock(mu);
    return std::any_of(errors.begin(), errors.end(), [&](const Status& s) { return s.code() == code; });
  }
  std::string exported() {
    auto j = client->export_json();
    EXPECT_TRUE(j.is_ok()) << j.status().to_string();
    return j ? *j : std::string();
  }
  size_t pending() {
    auto n = client->pending_count();
    EXPECT_TRUE(n.is_ok()) << n.status().to_string();
    return n ? *n : 0;
  }
  // A raw transaction through the sync engine (what a buggy or hostile app could send).
  Result<uint64_t> write(std::vector<Change> changes) {
    return client->engine().write(std::move(changes), wall_ms());
  }
};

Change create(EntityId e, const RecordId& id) {
  return Change{ChangeOp::kCreate, e, id};
}
Change set(EntityId e, const RecordId& id, uint16_t field, Value v) {
  Change c{ChangeOp::kSet, e, id, field};
  c.value = std::move(v);
  return c;
}
std::vector<Change> new_account(const RecordId& id, const std::string& name, const std::string& territory,
                                const std::string& user) {
  return {create(EntityId::kAccount, id), set(EntityId::kAccount, id, 1, Value::text(name)),
          set(EntityId::kAccount, id, 2, Value::text(territory)),
          set(EntityId::kAccount, id, 10, Value::text(user))};
}

#define ASSERT_OK(expr)                                 \
  do {                                                  \
    const auto& r_ = (expr);                            \
    ASSERT_TRUE(r_.is_ok()) << r_.status().to_string(); \
  } while (0)

// ---- The fixture: a seeded company on a fresh data directory.
//
// Territories north (reps alice and bob) and south (rep carol); hq is head office. Each user has one
// registered device. Seeding goes through the real Directory with a low PBKDF2 work factor (the server never
// hashes passwords: it only verifies the directory's signed tokens, with the key stored in directory.db).
class E2E : public testing::Test {
 protected:
  void SetUp() override {
    data_dir = tmp.file("data");
    server::Admin::Options o;
    o.directory.pbkdf2_iterations = 1000;  // tests only
    auto a = server::Admin::open(data_dir, o);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    admin = std::move(a.value());
    server::Directory& dir = admin->directory();
    const int64_t now = wall_ms();
    for (const char* t : {"north", "south"}) ASSERT_TRUE(dir.add_territory({t, t}).is_ok());
    struct Seed {
      const char* id;
      Role role;
      const char* territory;
      NodeId node;
    };
    for (const Seed& s :
         {Seed{"alice", Role::kRep, "north", 0x1001}, Seed{"bob", Role::kRep, "north", 0x1002},
          Seed{"carol", Role::kRep, "south", 0x1003}, Seed{"hq", Role::kHeadOffice, nullptr, 0x1004}}) {
      ASSERT_TRUE(dir.add_user({s.id, s.id, s.role}, password(s.id), now).is_ok());
      if (s.territory) {
        ASSERT_TRUE(dir.assign_territory(s.id, s.territory).is_ok());
      }
      ASSERT_TRUE(dir.register_device(s.node, s.id, now).is_ok());
      nodes[s.id] = s.node;
      roles[s.id] = s.role;
    }
    auto flour = admin->add_product("P-1", "Flour", "bag");
    ASSERT_OK(flour);
    auto sugar = admin->add_product("P-2", "Sugar", "bag");
    ASSERT_OK(sugar);
    flour_id = flour->to_string();
    sugar_id = sugar->to_string();
    ASSERT_OK(admin->set_price("P-1", "retail", 250, "EUR"));
    ASSERT_OK(admin->set_price("P-2", "retail", 180, "EUR"));
  }
  void TearDown() override {
    phones.clear();  // transports stop before the server goes
    if (server.running()) server.kill9();
  }

  static std::string password(const std::string& user) { return user + "-password"; }
  std::string token(const std::string& user) {
    auto t = admin->directory().login(user, password(user), nodes.at(user), wall_ms());
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return t ? *t : std::string();
  }
  // A hand-built session of `user`'s device (what a modified app could send): connected, Hello sent with a
  // valid token; the caller reads the answer. nullptr (with a failure) if the connection or send failed.
  std::unique_ptr<WsRawPeer> raw_hello(const std::string& user) {
    WsClientOptions o;
    o.url = server.url();
    o.ca_file = server.ca_file();
    o.connect_timeout_ms = 10'000;
    auto peer = std::make_unique<WsRawPeer>(o);
    protocol::Hello hello;
    hello.schema_version = schema::kSchemaVersion;
    hello.node = nodes.at(user);
    hello.token = token(user);
    hello.client_time_ms = wall_ms();
    WsStatus s = peer->connect();
    if (s.ok()) s = peer->send(codec::encode(hello), kWait);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return s.ok() ? std::move(peer) : nullptr;
  }

  // A phone for `user` on its registered node, with a fresh token unless one is given.
  // `schema_version` below the model's is an app of that older version; `path` reopens an existing replica.
  Phone& phone(const std::string& user, std::optional<std::string> tok = std::nullopt,
               std::optional<NodeId> node = std::nullopt, uint32_t schema_version = schema::kSchemaVersion,
               std::optional<std::string> path = std::nullopt) {
    auto p = std::make_unique<Phone>();
    p->user = user;
    p->node = node.value_or(nodes.at(user));
    p->path = path.value_or(tmp.file(user + "-" + std::to_string(phones.size()) + ".db"));
    p->ids = RecordIdGenerator(p->node);
    FieldClient::Options o;
    o.user = user;
    o.token = tok ? *tok : token(user);  // not value_or: a revoked device's user cannot log in on it
    o.role = roles.at(user);
    o.node = p->node;
    o.synchronous_full = false;  // the device's durability is replica_test's subject, not this suite's
    o.schema_version = schema_version;
    auto c = FieldClient::open(p->path, std::move(o));
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    p->client = std::move(c.value());
    Phone* raw = p.get();
    client::Observer obs;
    obs.error = [raw](const Status& s) {
      std::lock_guard lock(raw->mu);
      raw->errors.push_back(s);
    };
    obs.rejection = [raw](const Rejection& r) {
      std::lock_guard lock(raw->mu);
      raw->rejections.push_back(r);
    };
    obs.conflict = [raw](const ConflictRecord& c) {
      std::lock_guard lock(raw->mu);
      raw->conflicts.push_back(c);
    };
    obs.sync_progress = [raw](uint64_t, uint64_t) { raw->bootstrap_events++; };
    obs.erased = [raw](const Status&) { raw->erase_events++; };
    p->client->add_observer(std::move(obs));
    p->transport.url = server.url();
    p->transport.ca_file = server.ca_file();
    p->transport.connect_timeout_ms = 10'000;
    p->transport.reconnect_cap_ms = 100;  // reconnect quickly after a server restart
    p->transport.tick_interval_ms = 200;
    phones.push_back(std::move(p));
    return *raw;
  }

  std::string server_export(const std::string& user) {
    auto j = admin->export_json(user);
    EXPECT_TRUE(j.is_ok()) << j.status().to_string();
    return j ? *j : std::string();
  }
  // The phone's replica equals what the server holds for its user (polls: changes may be in flight).
  testing::AssertionResult converges(Phone& p) {
    std::string mine, theirs;
    if (eventually([&] {
          mine = p.exported();
          theirs = server_export(p.user);
          return mine == theirs;
        }))
      return testing::AssertionSuccess();
    size_t at = 0;
    while (at < mine.size() && at < theirs.size() && mine[at] == theirs[at]) ++at;
    return testing::AssertionFailure() << p.user << "'s replica differs from the server's export at byte "
                                       << at << ":\n  device: " << mine.substr(at > 80 ? at - 80 : 0, 240)
                                       << "\n  server: " << theirs.substr(at > 80 ? at - 80 : 0, 240);
  }
  std::vector<ConflictRecord> central_conflicts() {
    return admin->store().read_conflicts(0, admin->store().head_seq().value()).value();
  }

  TempDir tmp;
  std::string data_dir;
  std::unique_ptr<server::Admin> admin;
  ServerProcess server{tmp.file("data"), tmp.file("server")};
  std::map<std::string, NodeId> nodes;
  std::map<std::string, Role> roles;
  std::string flour_id, sugar_id;
  std::vector<std::unique_ptr<Phone>> phones;
};

bool same_conflict(const ConflictRecord& a, const ConflictRecord& b) {
  return a.server_seq == b.server_seq && a.kind == b.kind && a.entity == b.entity && a.record == b.record &&
         a.field == b.field && a.winner == b.winner && a.loser == b.loser && a.rule == b.rule;
}
std::vector<ConflictRecord> sorted(std::vector<ConflictRecord> v) {
  std::sort(v.begin(), v.end(), [](const ConflictRecord& a, const ConflictRecord& b) {
    return std::tie(a.server_seq, a.record, a.field, a.loser.version) <
           std::tie(b.server_seq, b.record, b.field, b.loser.version);
  });
  return v;
}

// ---- 1. Offline edits by two reps and head office converge, with every overwritten value logged.

TEST_F(E2E, OfflineEditsByTwoRepsAndHeadOfficeConvergeWithConflictsRecorded) {
  ASSERT_TRUE(server.start());
  Phone& alice = phone("alice");
  Phone& bob = phone("bob");
  Phone& hq = phone("hq");

  // Alice gets the catalogue, sets up an account with an order of two lines; everyone syncs.
  ASSERT_TRUE(alice.sync_once().ok());
  auto account =
      alice.client->create_account({.name = "Kiel Bakery", .territory_id = "north", .phone = "+49 0"});
  ASSERT_OK(account);
  auto order = alice.client->draft_order_with_lines(
      *account, "EUR", {{.product_id = flour_id, .quantity = 1}, {.product_id = sugar_id, .quantity = 1}});
  ASSERT_OK(order);
  auto lines = alice.client->order(*order);
  ASSERT_OK(lines);
  ASSERT_EQ(lines->lines.size(), 2u);
  const std::string l1 = lines->lines[0].id, l2 = lines->lines[1].id;
  for (Phone* p : {&alice, &bob, &hq}) {
    WsStatus s = p->sync_once();
    ASSERT_TRUE(s.ok()) << p->user << ": " << s.to_string();
  }
  ASSERT_TRUE(bob.client->order(*order).is_ok());
  ASSERT_TRUE(hq.client->order(*order).is_ok());
  ASSERT_TRUE(central_conflicts().empty());

  // The versions decide the winners: a pause between offline edits orders them (each device's clock is
  // the wall clock, already above every server timestamp it has seen).
  auto later = [] { std::this_thread::sleep_for(15ms); };

  // Round 1, everyone offline: the same phone, the same order line, a line deleted by one and edited by
  // another, and notes from two reps.
  ASSERT_TRUE(alice.client->edit_account(*account, {.phone = "+49 1", .add_note = "alice: ring twice"}));
  ASSERT_TRUE(alice.client->change_line(l1, {.quantity = 2}));
  later();
  ASSERT_TRUE(bob.client->edit_account(*account, {.phone = "+49 2", .add_note = "bob: closed Mondays"}));
  ASSERT_TRUE(bob.client->change_line(l1, {.quantity = 3}));
  ASSERT_TRUE(bob.client->remove_line(l2));
  later();
  ASSERT_TRUE(hq.client->edit_account(*account, {.phone = "+49 3"}));
  ASSERT_TRUE(hq.client->change_line(l1, {.quantity = 4}));
  ASSERT_TRUE(hq.client->change_line(l2, {.discount_bp = 500}));
  // They come back one by one: bob, head office, alice.
  for (Phone* p : {&bob, &hq, &alice}) {
    WsStatus s = p->sync_once();
    ASSERT_TRUE(s.ok()) << p->user << ": " << s.to_string();
  }
  for (Phone* p : {&alice, &bob, &hq}) p->online();
  for (Phone* p : {&alice, &bob, &hq}) EXPECT_TRUE(converges(*p));
  for (Phone* p : {&alice, &bob, &hq}) p->offline();

  // Round 2, offline again, back in another order: alice, head office, bob.
  ASSERT_TRUE(bob.client->edit_account(*account, {.email = "bob@kiel.example"}));
  ASSERT_TRUE(bob.client->change_line(l1, {.quantity = 5}));
  later();
  ASSERT_TRUE(hq.client->edit_account(*account, {.email = "hq@kiel.example", .add_note = "hq: key account"}));
  later();
  ASSERT_TRUE(alice.client->edit_account(*account, {.email = "alice@kiel.example"}));
  ASSERT_TRUE(alice.client->change_line(l1, {.quantity = 6}));
  for (Phone* p : {&alice, &hq, &bob}) {
    WsStatus s = p->sync_once();
    ASSERT_TRUE(s.ok()) << p->user << ": " << s.to_string();
  }
  for (Phone* p : {&alice, &bob, &hq}) p->online();
  for (Phone* p : {&alice, &bob, &hq}) EXPECT_TRUE(converges(*p));

  // Everyone holds the same winners, and both reps' notes.
  for (Phone* p : {&alice, &bob, &hq}) {
    auto a = p->client->account(*account);
    ASSERT_OK(a);
    EXPECT_EQ(a->account.phone, "+49 3") << p->user;
    EXPECT_EQ(a->account.email, "alice@kiel.example") << p->user;
    for (const char* note : {"alice: ring twice", "bob: closed Mondays", "hq: key account"})
      EXPECT_NE(a->account.notes.find(note), std::string::npos) << p->user << " lost the note " << note;
    auto o = p->client->order(*order);
    ASSERT_OK(o);
    ASSERT_EQ(o->lines.size(), 1u) << p->user << ": the deleted line stays deleted";
    EXPECT_EQ(o->lines[0].id, l1);
    EXPECT_EQ(o->lines[0].quantity, 6);
  }

  // The central conflict log names every overwritten value, with both sides.
  const std::vector<ConflictRecord> log = central_conflicts();
  auto losers = [&](const std::string& record, uint16_t field) {
    std::multiset<std::pair<std::string, std::string>> out;  // (loser user, loser value / winner user)
    for (const ConflictRecord& c : log)
      if (c.record.to_string() == record && c.field == field)
        out.insert({c.loser.user, c.loser.value.debug_string() + " < " + c.winner.value.debug_string() +
                                      " by " + c.winner.user});
    return out;
  };
  using Set = std::multiset<std::pair<std::string, std::string>>;
  EXPECT_EQ(losers(*account, kAccountPhone),
            (Set{{"alice", Value::text("+49 1").debug_string() + " < " + Value::text("+49 3").debug_string() +
                               " by hq"},
                 {"bob", Value::text("+49 2").debug_string() + " < " + Value::text("+49 3").debug_string() +
                             " by hq"}}));
  EXPECT_EQ(losers(*account, kAccountEmail),
            (Set{{"bob", Value::text("bob@kiel.example").debug_string() + " < " +
                             Value::text("alice@kiel.example").debug_string() + " by alice"},
                 {"hq", Value::text("hq@kiel.example").debug_string() + " < " +
                            Value::text("alice@kiel.example").debug_string() + " by alice"}}));
  auto q = [](int64_t v) { return Value::integer(v).debug_string(); };
  EXPECT_EQ(losers(l1, kLineQuantity), (Set{{"alice", q(2) + " < " + q(4) + " by hq"},
                                            {"bob", q(3) + " < " + q(4) + " by hq"},
                                            {"bob", q(5) + " < " + q(6) + " by alice"}}));
  size_t delete_wins = 0;
  for (const ConflictRecord& c : log)
    if (c.record.to_string() == l2) {
      ++delete_wins;
      EXPECT_EQ(c.kind, ConflictKind::kDeleteWins);
      EXPECT_EQ(c.field, kLineDiscount);
      EXPECT_EQ(c.loser.user, "hq");
      EXPECT_EQ(c.loser.value, Value::integer(500));
      EXPECT_EQ(c.winner.user, "bob");
    }
  EXPECT_EQ(delete_wins, 1u);
  EXPECT_EQ(log.size(), 8u) << "no conflict for the notes (append-only) or the writes that saw their base";

  // Every device involved holds the same log (each can see the records), and heard each conflict once. A
  // transaction whose writes all lost changes no record, so converged records do not yet mean its conflicts
  // arrived: wait for them.
  for (Phone* p : {&alice, &bob, &hq}) {
    EXPECT_TRUE(eventually([&] {
      auto n = p->client->conflicts();
      return n && n->size() >= log.size();
    })) << p->user
        << " holds " << p->client->conflicts()->size() << " of " << log.size() << " conflicts";
    auto mine = p->client->conflicts();
    ASSERT_OK(mine);
    std::vector<ConflictRecord> a = sorted(*mine), b = sorted(log);
    ASSERT_EQ(a.size(), b.size()) << p->user;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_conflict(a[i], b[i])) << p->user << " #" << i;
    auto observed = [p] {
      std::lock_guard lock(p->mu);
      return p->conflicts.size();
    };
    eventually([&] { return observed() >= log.size(); });  // dispatched right after the frame is applied
    EXPECT_EQ(observed(), log.size()) << p->user << ": each conflict observed exactly once";
  }

  // The binaries agree: fieldsync-rep's export of alice's replica file equals fieldsync-admin's export for
  // alice, byte for byte.
  const std::string alice_json = alice.exported();
  const std::string alice_db = alice.path;
  phones.clear();
  RunResult rep = run({FIELDSYNC_REP_BIN, "--db", alice_db, "--user", "alice", "export"}, tmp);
  ASSERT_EQ(rep.status.code, 0) << rep.err;
  RunResult adm = run({FIELDSYNC_ADMIN_BIN, "--data-dir", data_dir, "export", "--user", "alice"}, tmp);
  ASSERT_EQ(adm.status.code, 0) << adm.err;
  EXPECT_EQ(rep.out, adm.out);
  EXPECT_EQ(rep.out, alice_json);
}

// ---- 2. Scope enforcement, both ways.

TEST_F(E2E, RepsNeverSeeOtherTerritoriesAndOutOfScopePushesAreRejectedWhole) {
  ASSERT_TRUE(server.start());
  Phone& carol = phone("carol");
  Phone& hq = phone("hq");

  // South records exist before alice's first sync.
  auto south =
      carol.client->create_account({.name = "South Mill", .territory_id = "south", .phone = "+34 0"});
  ASSERT_OK(south);
  ASSERT_OK(carol.client->create_contact({.account_id = *south, .name = "Sol"}));
  ASSERT_OK(carol.client->check_in({.account_id = *south}));
  auto north = hq.client->create_account({.name = "North Farm", .territory_id = "north", .phone = "+45 0"});
  ASSERT_OK(north);
  ASSERT_TRUE(carol.sync_once().ok());
  ASSERT_TRUE(hq.sync_once().ok());

  // Bootstrap: alice gets north and the catalogue, nothing of south.
  Phone& alice = phone("alice");
  alice.online();
  carol.online();
  hq.online();
  ASSERT_TRUE(converges(alice));
  // Observers are called after the frame is applied: the replica may converge a moment before.
  EXPECT_TRUE(eventually([&] { return alice.bootstrap_events.load() > 0; }))
      << "no bootstrap progress observed";
  EXPECT_TRUE(alice.client->account(*north).is_ok());
  EXPECT_FALSE(alice.client->account(*south).is_ok());
  EXPECT_EQ(alice.exported().find("South Mill"), std::string::npos);
  EXPECT_EQ(alice.exported().find("Sol"), std::string::npos);

  // Live: a south change, then a north one; once alice has the north one, the south one (committed
  // earlier) has been filtered out of her stream, not merely delayed.
  auto south2 = carol.client->create_account({.name = "South Quarry", .territory_id = "south"});
  ASSERT_OK(south2);
  ASSERT_TRUE(eventually([&] {
    return admin->store().load(EntityId::kAccount, *RecordId::parse(*south2)).value().has_value();
  }));
  auto north2 = hq.client->create_account({.name = "North Dairy", .territory_id = "north"});
  ASSERT_OK(north2);
  ASSERT_TRUE(eventually([&] { return alice.client->account(*north2).is_ok(); }))
      << "live change not received";
  EXPECT_FALSE(alice.client->account(*south2).is_ok());
  EXPECT_TRUE(converges(alice));
  EXPECT_TRUE(converges(carol));
  EXPECT_EQ(carol.exported().find("North"), std::string::npos);

  // Pushes touching a south record: rejected whole with a typed reason, rolled back on the device with
  // the reason kept, nothing applied on the server. A device only holds records in its scope, so the way a
  // rep's push reaches another territory's record is a stale replica: alice writes offline to an account
  // head office meanwhile moved south.
  auto border = hq.client->create_account({.name = "Border Shop", .territory_id = "north", .phone = "+46 0"});
  ASSERT_OK(border);
  ASSERT_TRUE(eventually([&] { return alice.client->account(*border).is_ok(); }));
  alice.offline();
  const RecordId north_id = *RecordId::parse(*north), border_id = *RecordId::parse(*border);
  ASSERT_OK(hq.write({set(EntityId::kAccount, border_id, 2, Value::text("south"))}));
  ASSERT_TRUE(eventually([&] {
    auto r = admin->store().load(EntityId::kAccount, border_id).value();
    return r && r->get(2) == Value::text("south");
  }));
  const uint64_t head = admin->store().head_seq().value();
  // (a) edits of a north account and of the account that is now south, in one transaction.
  auto bad1 = alice.write({set(EntityId::kAccount, north_id, kAccountPhone, Value::text("+45 9")),
                           set(EntityId::kAccount, border_id, kAccountPhone, Value::text("+46 9"))});
  ASSERT_OK(bad1);
  // (b) a north account and a south account created together.
  const RecordId n3 = alice.ids.next(wall_ms()), s3 = alice.ids.next(wall_ms());
  std::vector<Change> both = new_account(n3, "North Orchard", "north", "alice");
  for (Change& c : new_account(s3, "South Orchard", "south", "alice")) both.push_back(std::move(c));
  auto bad2 = alice.write(std::move(both));
  ASSERT_OK(bad2);
  // (c) the next valid transaction still goes through.
  auto good = alice.client->create_account({.name = "North Bakery", .territory_id = "north"});
  ASSERT_OK(good);
  ASSERT_EQ(alice.pending(), 3u);
  alice.online();

  ASSERT_TRUE(eventually([&] { return alice.pending() == 0; })) << alice.ws->last_error().to_string();
  ASSERT_TRUE(eventually([&] { return hq.client->account(*good).is_ok(); }));
  EXPECT_EQ(admin->store().head_seq().value(), head + 1) << "only the valid transaction was applied";
  auto n1 = admin->store().load(EntityId::kAccount, north_id).value();
  auto b1 = admin->store().load(EntityId::kAccount, border_id).value();
  ASSERT_TRUE(n1 && b1);
  EXPECT_EQ(n1->get(kAccountPhone), Value::text("+45 0"));
  EXPECT_EQ(b1->get(kAccountPhone), Value::text("+46 0"));
  EXPECT_FALSE(admin->store().load(EntityId::kAccount, n3).value().has_value());
  EXPECT_FALSE(admin->store().load(EntityId::kAccount, s3).value().has_value());
  std::map<uint64_t, ErrorCode> stored;
  for (const StoredRejection& r : admin->sqlite_store()->rejections().value())
    if (r.node == alice.node) stored[r.node_seq] = r.reason;
  EXPECT_EQ(stored, (std::map<uint64_t, ErrorCode>{{*bad1, ErrorCode::kOutOfScope},
                                                   {*bad2, ErrorCode::kOutOfScope}}));

  // On the device: rolled back to the server's state, the created records gone, the reasons kept.
  auto mine = alice.client->account(*north);
  ASSERT_OK(mine);
  EXPECT_EQ(mine->account.phone, "+45 0");
  EXPECT_FALSE(alice.client->account(n3.to_string()).is_ok());
  EXPECT_FALSE(alice.client->account(s3.to_string()).is_ok());
  EXPECT_TRUE(alice.client->account(*good).is_ok());
  EXPECT_TRUE(eventually([&] { return !alice.client->account(*border).is_ok(); }))
      << "moved out of her scope";
  auto kept = alice.client->rejections();
  ASSERT_OK(kept);
  ASSERT_EQ(kept->size(), 2u);
  EXPECT_EQ((*kept)[0].node_seq, *bad1);
  EXPECT_EQ((*kept)[0].reason, ErrorCode::kOutOfScope);
  EXPECT_EQ((*kept)[0].changes.size(), 2u);
  EXPECT_EQ((*kept)[1].node_seq, *bad2);
  EXPECT_EQ((*kept)[1].reason, ErrorCode::kOutOfScope);
  // Observers are called after the commit that stored the rejections, on the client's thread: wait for them.
  EXPECT_TRUE(eventually([&] {
    std::lock_guard lock(alice.mu);
    return alice.rejections.size() == 2u;
  })) << "the rejection observer heard both";
  EXPECT_TRUE(converges(alice));
  EXPECT_TRUE(converges(carol));
  EXPECT_TRUE(carol.client->account(*south).is_ok());
  EXPECT_TRUE(carol.client->account(*border).is_ok());
}

// A hand-built push over the real server with bob's own valid token: an account filed in alice's name and
// one with a malformed e-mail are rejected naming the field and leave the store as it was; his honest account
// right after is applied.
TEST_F(E2E, HandBuiltPushesInAnotherRepsNameOrWithABadValueAreRejected) {
  ASSERT_TRUE(server.start());
  std::unique_ptr<WsRawPeer> peer = raw_hello("bob");
  ASSERT_TRUE(peer);
  std::vector<uint8_t> msg;
  ASSERT_TRUE(peer->receive(msg, kWait).ok());
  ASSERT_TRUE(std::holds_alternative<protocol::Welcome>(codec::decode(msg).value()));

  RecordIdGenerator ids(nodes.at("bob"));
  uint64_t node_seq = 0;
  Hlc hlc = make_hlc(wall_ms(), 0);
  auto push = [&](std::vector<Change> changes) -> protocol::TxnResult {
    ClientTxn txn;
    txn.node = nodes.at("bob");
    txn.node_seq = ++node_seq;
    txn.created_at_ms = wall_ms();
    for (Change& c : changes) c.version = Version{++hlc, txn.node};
    txn.changes = std::move(changes);
    EXPECT_TRUE(peer->send(codec::encode(protocol::PushTxns{node_seq, {txn}}), kWait).ok());
    for (;;) {  // skip anything else the server sends
      if (!peer->receive(msg, kWait).ok()) return {};
      Result<protocol::Message> m = codec::decode(msg);
      if (m.is_ok() && std::holds_alternative<protocol::PushAck>(m.value()))
        return std::get<protocol::PushAck>(m.value()).results.at(0);
    }
  };
  const uint64_t head = admin->store().head_seq().value();

  const RecordId forged = ids.next(wall_ms());
  protocol::TxnResult r = push(new_account(forged, "Alice's Mill", "north", "alice"));
  EXPECT_EQ(r.outcome, protocol::TxnOutcome::kRejected);
  EXPECT_EQ(r.reason, ErrorCode::kPermissionDenied) << r.message;
  EXPECT_NE(r.message.find("field created_by"), std::string::npos) << r.message;

  const RecordId bad_email = ids.next(wall_ms());
  std::vector<Change> changes = new_account(bad_email, "Bob's Mill", "north", "bob");
  changes.push_back(set(EntityId::kAccount, bad_email, kAccountEmail, Value::text("bob at mill")));
  r = push(std::move(changes));
  EXPECT_EQ(r.outcome, protocol::TxnOutcome::kRejected);
  EXPECT_EQ(r.reason, ErrorCode::kValueInvalid) << r.message;
  EXPECT_NE(r.message.find("field email"), std::string::npos) << r.message;

  EXPECT_EQ(admin->store().head_seq().value(), head) << "nothing applied";
  EXPECT_FALSE(admin->store().load(EntityId::kAccount, forged).value().has_value());
  EXPECT_FALSE(admin->store().load(EntityId::kAccount, bad_email).value().has_value());

  const RecordId honest = ids.next(wall_ms());
  r = push(new_account(honest, "Bob's Mill", "north", "bob"));
  EXPECT_EQ(r.outcome, protocol::TxnOutcome::kApplied) << r.message;
  EXPECT_EQ(admin->store().head_seq().value(), head + 1);
}

// ---- 3. Tokens: expired at the handshake, and wrong or unsigned ones.

TEST_F(E2E, ExpiredAndForgedTokensAreRefusedWithTypedErrorsAndTheClientStops) {
  ASSERT_TRUE(server.start());
  // A real token from the admin binary, valid for 1 ms.
  RunResult login = run({FIELDSYNC_ADMIN_BIN, "--data-dir", data_dir, "login", "--user", "alice", "--node",
                         std::to_string(nodes.at("alice")), "--password", password("alice"), "--ttl-ms", "1"},
                        tmp);
  ASSERT_EQ(login.status.code, 0) << login.err;
  std::string expired = login.out.substr(0, login.out.find('\n'));
  auto claims = admin->directory().verify_token(expired);
  ASSERT_TRUE(claims.has_value()) << "a properly signed token";
  ASSERT_TRUE(eventually([&] { return wall_ms() > claims->expiry_ms; }));

  // A token signed with another server's key, and one for the same user on another device.
  TempDir other;
  server::Admin::Options fast;
  fast.directory.pbkdf2_iterations = 1000;
  auto foreign_admin = server::Admin::open(other.file("data"), fast);
  ASSERT_OK(foreign_admin);
  server::Directory& foreign = (*foreign_admin)->directory();
  ASSERT_TRUE(foreign.add_user({"alice", "alice", Role::kRep}, password("alice"), wall_ms()).is_ok());
  ASSERT_TRUE(foreign.register_device(nodes.at("alice"), "alice", wall_ms()).is_ok());
  auto forged = foreign.login("alice", password("alice"), nodes.at("alice"), wall_ms());
  ASSERT_OK(forged);
  const std::string bobs = token("bob");

  struct Case {
    std::string name, token;
    ErrorCode expected;
  };
  for (const Case& c :
       {Case{"expired", expired, ErrorCode::kTokenExpired},
        Case{"foreign key", *forged, ErrorCode::kAuthFailed},
        Case{"garbage", "not-a-token", ErrorCode::kAuthFailed},
        Case{"unsigned dev token", "dev:alice:head_office:north,south", ErrorCode::kAuthFailed},
        Case{"another device's token", bobs, ErrorCode::kAuthFailed}}) {
    SCOPED_TRACE(c.name);
    Phone& p = phone("alice", c.token);
    auto offline_write = p.client->create_account({.name = "Never Sent " + c.name, .territory_id = "north"});
    ASSERT_OK(offline_write);
    p.online();
    ASSERT_TRUE(eventually([&] { return p.client->engine().stopped(); })) << p.ws->last_error().to_string();
    EXPECT_EQ(p.client->engine().stop_reason().code(), c.expected)
        << p.client->engine().stop_reason().to_string();
    EXPECT_TRUE(p.ws->wait_until([&] { return !p.ws->running(); }, kWait)) << "the client stops retrying";
    EXPECT_EQ(p.ws->last_error().code, WsError::kStopped);
    p.client->dispatch_events();
    EXPECT_TRUE(p.has_error(c.expected)) << "the error observer heard it";
    EXPECT_EQ(p.pending(), 1u);
    EXPECT_FALSE(
        admin->store().load(EntityId::kAccount, *RecordId::parse(*offline_write)).value().has_value());
    p.offline();
  }

  // The server is unharmed: a good token syncs.
  Phone& good = phone("alice");
  ASSERT_OK(good.client->create_account({.name = "Good Token Shop", .territory_id = "north"}));
  WsStatus s = good.sync_once();
  EXPECT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(converges(good));
}

// ---- 4. A revoked device is refused at its next connection and told to erase.

TEST_F(E2E, RevokedDeviceIsRefusedAtItsNextConnectionAndStops) {
  ASSERT_TRUE(server.start());
  Phone& alice = phone("alice");
  auto account = alice.client->create_account({.name = "Lost Phone Shop", .territory_id = "north"});
  ASSERT_OK(account);
  ASSERT_TRUE(alice.sync_once().ok());
  ASSERT_TRUE(converges(alice));

  // The phone is lost while offline; it still records a visit. Head office revokes it with the binary while
  // the server runs.
  auto visit = alice.client->check_in({.account_id = *account});
  ASSERT_OK(visit);
  RunResult revoke = run(
      {FIELDSYNC_ADMIN_BIN, "--data-dir", data_dir, "device", "revoke", "--node", std::to_string(alice.node)},
      tmp);
  ASSERT_EQ(revoke.status.code, 0) << revoke.err;

  alice.online();
  ASSERT_TRUE(eventually([&] { return alice.client->engine().stopped(); }))
      << alice.ws->last_error().to_string();
  EXPECT_EQ(alice.client->engine().stop_reason().code(), ErrorCode::kDeviceRevoked);
  EXPECT_TRUE(alice.ws->wait_until([&] { return !alice.ws->running(); }, kWait)) << "no reconnecting";
  EXPECT_EQ(alice.ws->last_error().code, WsError::kStopped);
  alice.client->dispatch_events();
  EXPECT_TRUE(alice.has_error(ErrorCode::kDeviceRevoked)) << "the error observer heard the must-erase";
  // Nothing of the lost phone's offline work reached the server, and it cannot write any more.
  EXPECT_FALSE(admin->store().load(EntityId::kVisit, *RecordId::parse(*visit)).value().has_value());
  EXPECT_EQ(alice.client->create_account({.name = "After Revoke", .territory_id = "north"}).status().code(),
            ErrorCode::kDeviceRevoked);
  // The replica is erased: the files are gone, the observer heard it once, and the file cannot be reopened.
  EXPECT_TRUE(alice.client->erased());
  EXPECT_EQ(alice.erase_events.load(), 1);
  for (const char* suffix : {"", "-wal", "-shm"})
    EXPECT_FALSE(std::filesystem::exists(alice.path + suffix)) << alice.path << suffix;
  client::FieldClient::Options reopen;
  reopen.user = "alice";
  EXPECT_EQ(client::FieldClient::open(alice.path, reopen).status().code(), ErrorCode::kDeviceRevoked);

  // Another phone of the same user, registered anew, is served.
  ASSERT_TRUE(admin->directory().register_device(0x2001, "alice", wall_ms()).is_ok());
  auto fresh = admin->directory().login("alice", password("alice"), 0x2001, wall_ms());
  ASSERT_OK(fresh);
  Phone& replacement = phone("alice", *fresh, NodeId{0x2001});
  WsStatus s = replacement.sync_once();
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(replacement.client->account(*account).is_ok());
}

// ---- 5. kill -9 of the server during a push stream.

TEST_F(E2E, KillNineDuringPushStreamLosesNoAcknowledgedWriteAndAppliesEachOnce) {
  ASSERT_TRUE(server.start());
  const uint16_t port = server.port();
  Phone& alice = phone("alice");
  alice.online();
  ASSERT_TRUE(converges(alice));

  // The writer: one account per transaction, as fast as a busy app, connected or not.
  std::mutex write_mu;
  std::vector<RecordId> written;  // in node_seq order
  std::atomic<bool> stop{false};
  std::atomic<int> write_errors{0};
  std::thread writer([&] {
    int i = 0;
    while (!stop) {
      {
        std::lock_guard lock(write_mu);
        auto id =
            alice.client->create_account({.name = "Stream " + std::to_string(i++), .territory_id = "north"});
        if (id)
          written.push_back(*RecordId::parse(*id));
        else
          write_errors++;
      }
      std::this_thread::sleep_for(1ms);
    }
  });
  struct Join {  // also when an assertion below returns early
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } join_writer{stop, writer};

  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  RecordProperty("kill_seed", std::to_string(seed));
  std::cout << "kill -9 schedule seed " << seed << "\n";
  auto acked = [&] {
    std::lock_guard lock(write_mu);
    return written.size() - alice.pending();
  };
  constexpr int kRounds = 5;
  size_t rounds_with_writes_in_flight = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Mid-stream: the device is connected and acknowledgements are flowing.
    const size_t before = acked();
    ASSERT_TRUE(eventually([&] { return alice.ws->connected() && acked() >= before + 10; }))
        << "no progress: " << alice.ws->last_error().to_string() << "\n"
        << server.stderr_text().substr(0, 2000);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 120));
    server.kill9();
    // Every acknowledgement the device ever received has been processed once it saw the connection drop.
    ASSERT_TRUE(eventually([&] { return !alice.ws->connected(); }));
    std::vector<RecordId> acknowledged;
    size_t unacked = 0;
    {
      std::lock_guard lock(write_mu);
      unacked = alice.pending();
      acknowledged.assign(written.begin(), written.end() - static_cast<std::ptrdiff_t>(unacked));
    }
    if (unacked > 0) ++rounds_with_writes_in_flight;
    // Every write the server acknowledged is in the store the dead server left behind.
    {
      auto store = server::SqliteCentralStore::open(data_dir + "/central.db", {});
      ASSERT_OK(store);
      size_t missing = 0;
      for (const RecordId& id : acknowledged)
        if (!store.value()->load(EntityId::kAccount, id).value()) ++missing;
      EXPECT_EQ(missing, 0u) << "of " << acknowledged.size() << " acknowledged writes";
    }
    ASSERT_TRUE(server.start(port)) << "restart on the same port";
  }
  std::this_thread::sleep_for(50ms);
  stop = true;
  writer.join();  // every write is in `written` from here on
  EXPECT_EQ(write_errors.load(), 0);
  EXPECT_GT(rounds_with_writes_in_flight, 0u) << "the kills should land while writes are unacknowledged";

  // The device reconnects by itself and drains its outbox.
  ASSERT_TRUE(eventually([&] { return alice.ws->connected() && alice.pending() == 0; }))
      << alice.pending() << " pending; " << alice.ws->last_error().to_string();
  EXPECT_TRUE(converges(alice));
  alice.offline();
  std::optional<ExitStatus> exit = server.terminate();
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code, 0);

  // Cold open of the store after the server stopped: every write exactly once, node_seq 1..N without gaps.
  admin.reset();
  auto store = server::SqliteCentralStore::open(data_dir + "/central.db", {});
  ASSERT_OK(store);
  std::vector<uint64_t> seqs;
  for (uint64_t after = 0;;) {
    std::vector<ServerTxn> page = store.value()->read_log(after, 1000).value();
    if (page.empty()) break;
    for (const ServerTxn& t : page)
      if (t.origin_node == alice.node) seqs.push_back(t.origin_node_seq);
    after = page.back().server_seq;
  }
  std::vector<uint64_t> expected(written.size());
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = i + 1;
  EXPECT_EQ(seqs.size(), written.size()) << "one ServerTxn per write";
  EXPECT_EQ(seqs, expected) << "each node_seq once, in order, no gaps";
  size_t missing = 0;
  for (const RecordId& id : written)
    if (!store.value()->load(EntityId::kAccount, id).value()) ++missing;
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(store.value()->node_states().value()[alice.node].last_node_seq, written.size());
  for (const StoredRejection& r : store.value()->rejections().value())
    EXPECT_NE(r.node, alice.node) << r.message;
  std::cout << written.size() << " writes, " << kRounds << " kills\n";
}

// ---- 6. Head office moves an account to another territory over the network.

TEST_F(E2E, ScopeMoveMovesTheAccountFamilyBetweenDevicesWithoutResync) {
  ASSERT_TRUE(server.start());
  Phone& alice = phone("alice");
  Phone& carol = phone("carol");
  Phone& hq = phone("hq");

  // Alice's account A with everything that hangs off it, and another account B that stays.
  ASSERT_TRUE(alice.sync_once().ok());  // the catalogue, for the order
  auto a = alice.client->create_account({.name = "Moving Mill", .territory_id = "north"});
  ASSERT_OK(a);
  auto contact = alice.client->create_contact({.account_id = *a, .name = "Mo"});
  ASSERT_OK(contact);
  auto visit = alice.client->check_in({.account_id = *a});
  ASSERT_OK(visit);
  auto order = alice.client->draft_order_with_lines(*a, "EUR", {{.product_id = flour_id, .quantity = 3}});
  ASSERT_OK(order);
  auto deal =
      alice.client->create_opportunity({.account_id = *a, .name = "Mill upgrade", .amount_cents = 90000});
  ASSERT_OK(deal);
  auto b = alice.client->create_account({.name = "Staying Store", .territory_id = "north"});
  ASSERT_OK(b);
  ASSERT_OK(alice.client->create_contact({.account_id = *b, .name = "Stay"}));
  auto c = carol.client->create_account({.name = "Southern Stall", .territory_id = "south"});
  ASSERT_OK(c);
  for (Phone* p : {&alice, &carol, &hq}) ASSERT_TRUE(p->sync_once().ok()) << p->user;
  ASSERT_TRUE(alice.sync_once().ok());  // carol's writes came after alice's first sync; none are hers to see
  for (Phone* p : {&alice, &carol, &hq}) ASSERT_TRUE(converges(*p));
  ASSERT_TRUE(carol.client->account(*a).status().code() != ErrorCode::kOk);
  auto b_before = alice.client->account(*b);
  ASSERT_OK(b_before);
  for (Phone* p : {&alice, &carol}) p->bootstrap_events = 0;

  // (a) With the admin binary while the server runs; the devices get it on their next sync.
  RunResult move = run({FIELDSYNC_ADMIN_BIN, "--data-dir", data_dir, "account", "move", *a, "south"}, tmp);
  ASSERT_EQ(move.status.code, 0) << move.err;
  ASSERT_TRUE(carol.sync_once().ok());
  ASSERT_TRUE(alice.sync_once().ok());
  auto check_family = [&](Phone& p, bool present, const std::string& territory) {
    SCOPED_TRACE(p.user + (present ? " has" : " lost") + " the family");
    EXPECT_EQ(p.client->account(*a).is_ok(), present);
    EXPECT_EQ(p.client->visit(*visit).is_ok(), present);
    EXPECT_EQ(p.client->order(*order).is_ok(), present);
    EXPECT_EQ(p.client->opportunity(*deal).is_ok(), present);
    const std::string json = p.exported();
    for (const std::string& id : {*a, *contact, *visit, *order, *deal})
      EXPECT_EQ(json.find(id) != std::string::npos, present) << id;
    if (present) {
      auto acc = p.client->account(*a);
      ASSERT_OK(acc);
      EXPECT_EQ(acc->account.territory_id, territory);
      ASSERT_EQ(acc->contacts.size(), 1u);
      EXPECT_EQ(acc->contacts[0].id, *contact);
      auto o = p.client->order(*order);
      ASSERT_OK(o);
      ASSERT_EQ(o->lines.size(), 1u);
      EXPECT_EQ(o->lines[0].quantity, 3);
    }
  };
  check_family(carol, true, "south");
  check_family(alice, false, "south");
  auto b_after = alice.client->account(*b);
  ASSERT_OK(b_after);
  EXPECT_EQ(b_after->account.name, b_before->account.name);
  EXPECT_EQ(b_after->contacts.size(), 1u) << "alice's other records untouched";
  EXPECT_TRUE(carol.client->account(*c).is_ok());
  for (Phone* p : {&alice, &carol}) {
    EXPECT_TRUE(converges(*p));
    EXPECT_EQ(p->bootstrap_events.load(), 0) << p->user << " resynced instead of receiving the move";
  }

  // (b) Head office's own device moves it back while everyone is connected: live, no reconnect.
  for (Phone* p : {&alice, &carol, &hq}) p->online();
  ASSERT_TRUE(converges(hq));
  ASSERT_OK(hq.write({set(EntityId::kAccount, *RecordId::parse(*a), 2, Value::text("north"))}));
  EXPECT_TRUE(eventually([&] { return alice.client->account(*a).is_ok(); })) << "the family came back live";
  EXPECT_TRUE(eventually([&] { return !carol.client->account(*a).is_ok(); })) << "and left carol live";
  check_family(alice, true, "north");
  check_family(carol, false, "north");
  for (Phone* p : {&alice, &carol, &hq}) EXPECT_TRUE(converges(*p));
  for (Phone* p : {&alice, &carol}) EXPECT_EQ(p->bootstrap_events.load(), 0) << p->user;
  EXPECT_EQ(carol.exported().find(*visit), std::string::npos);
  EXPECT_NE(alice.exported().find(*visit), std::string::npos);
}

// ---- 6b. Rolling upgrade over TLS: an app of schema 2 against the schema-3 server, then the same phone
// upgraded to schema 3 with writes still pending (issue 21).
TEST_F(E2E, ASchemaTwoPhoneSyncsWithTheSchemaThreeServerThenUpgradesKeepingItsPendingWrites) {
  static_assert(schema::kSchemaVersion == 3, "the test's old app is the version before the model's");
  ASSERT_TRUE(server.start());
  Phone& bob = phone("bob");
  Phone& hq = phone("hq");
  Phone* alice = &phone("alice", std::nullopt, std::nullopt, 2);

  // Schema 3 records of the north territory: an account, a deal, a lead, and an appointment of alice's
  // linked to the deal (head office books it for her; the link is schema 3's field of a schema-1 entity).
  ASSERT_TRUE(bob.sync_once().ok());
  auto account = bob.client->create_account({.name = "Upgrade Mill", .territory_id = "north"});
  ASSERT_OK(account);
  auto deal = bob.client->create_opportunity({.account_id = *account, .name = "Silo", .amount_cents = 5000});
  ASSERT_OK(deal);
  auto lead =
      bob.client->create_lead({.person_name = "Lena Lead", .source = "referral", .territory_id = "north"});
  ASSERT_OK(lead);
  ASSERT_TRUE(bob.sync_once().ok());
  ASSERT_TRUE(hq.sync_once().ok());
  const RecordId event = hq.ids.next(wall_ms());
  const int64_t start = wall_ms() + 86'400'000;
  ASSERT_OK(hq.write(
      {create(EntityId::kCalendarEvent, event), set(EntityId::kCalendarEvent, event, 1, Value::text("alice")),
       set(EntityId::kCalendarEvent, event, 2, Value::text(*account)),
       set(EntityId::kCalendarEvent, event, 3, Value::text("Silo walk-through")),
       set(EntityId::kCalendarEvent, event, 4, Value::integer(start)),
       set(EntityId::kCalendarEvent, event, 5, Value::integer(start + 3'600'000)),
       set(EntityId::kCalendarEvent, event, 6, Value::text("scheduled")),
       set(EntityId::kCalendarEvent, event, schema::fields::kEventOpportunity, Value::text(*deal))}));
  ASSERT_TRUE(hq.sync_once().ok());

  // The schema-2 app syncs: what its schema knows arrives, nothing newer (no lead, no link on the event).
  ASSERT_TRUE(alice->sync_once().ok());
  EXPECT_FALSE(alice->has_error(ErrorCode::kMalformedMessage)) << "the server sent it something newer";
  ASSERT_OK(alice->client->account(*account));
  ASSERT_OK(alice->client->opportunity(*deal));
  auto old_event = alice->client->event(event.to_string());
  ASSERT_OK(old_event);
  EXPECT_EQ(old_event->title, "Silo walk-through");
  EXPECT_EQ(old_event->opportunity_id, "");
  EXPECT_FALSE(alice->client->lead(*lead).is_ok());
  EXPECT_EQ(alice->exported().find(*lead), std::string::npos);

  // Offline, still on schema 2: a check-in and a retitled appointment wait in the outbox.
  auto visit = alice->client->check_in({.account_id = *account});
  ASSERT_OK(visit);
  ASSERT_OK(
      alice->write({set(EntityId::kCalendarEvent, event, 3, Value::text("Silo walk-through (moved gate)"))}));
  ASSERT_EQ(alice->pending(), 2u);

  // The app is updated: the same replica file opened by the schema-3 library keeps its outbox.
  const std::string path = alice->path;
  alice->offline();
  alice->client.reset();
  alice = &phone("alice", std::nullopt, std::nullopt, schema::kSchemaVersion, path);
  EXPECT_EQ(alice->pending(), 2u) << "the migration kept every unsynced write";
  ASSERT_OK(alice->client->visit(*visit));

  // Its next sync pushes them once and brings what it could not see before.
  ASSERT_TRUE(alice->sync_once().ok());
  EXPECT_EQ(alice->pending(), 0u);
  auto new_lead = alice->client->lead(*lead);
  ASSERT_OK(new_lead);
  EXPECT_EQ(new_lead->person_name, "Lena Lead");
  auto new_event = alice->client->event(event.to_string());
  ASSERT_OK(new_event);
  EXPECT_EQ(new_event->opportunity_id, *deal) << "the new field of an entity it already had";
  EXPECT_EQ(new_event->title, "Silo walk-through (moved gate)");
  EXPECT_TRUE(converges(*alice));
  ASSERT_TRUE(bob.sync_once().ok());
  EXPECT_TRUE(converges(bob));
}

// ---- 7. The binary itself: help, config file, unknown options, SIGTERM drain.

// ---- 8. A rep logs in over HTTPS with fieldsync-rep and syncs with the token it got.

TEST_F(E2E, RepBinaryLogsInOverHttpsAndSyncsWithTheToken) {
  ASSERT_TRUE(server.start());
  const std::string db = tmp.file("carol-cli.db");
  auto rep = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {FIELDSYNC_REP_BIN, "--db", db, "--user", "carol"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, tmp);
  };
  // A new device: head office registers the node it reports.
  RunResult status = rep({"status"});
  ASSERT_EQ(status.status.code, 0) << status.err;
  const std::string node = status.out.substr(5, status.out.find('\n') - 5);
  RunResult reg = run(
      {FIELDSYNC_ADMIN_BIN, "--data-dir", data_dir, "device", "register", "--node", node, "--user", "carol"},
      tmp);
  ASSERT_EQ(reg.status.code, 0) << reg.err;

  RunResult wrong =
      rep({"login", "--server", server.url(), "--ca", server.ca_file(), "--password", "not-carols-password"});
  EXPECT_EQ(wrong.status.code, 1);
  EXPECT_EQ(wrong.err, "fieldsync-rep: login: auth_failed: authentication failed\n");
  RunResult login =
      rep({"login", "--server", server.url(), "--ca", server.ca_file(), "--password", password("carol")});
  ASSERT_EQ(login.status.code, 0) << login.err;
  const std::string tok = login.out.substr(0, login.out.find('\n'));
  ASSERT_FALSE(tok.empty());

  RunResult synced = run({FIELDSYNC_REP_BIN, "--db", db, "--user", "carol", "--token", tok, "sync",
                          "--server", server.url(), "--ca", server.ca_file(), "--once", "--timeout", "30"},
                         tmp);
  EXPECT_EQ(synced.status.code, 0) << synced.err;
  EXPECT_EQ(synced.out, "synced\tpending 0\n");
  RunResult exported = rep({"export"});
  ASSERT_EQ(exported.status.code, 0);
  EXPECT_EQ(exported.out, server_export("carol")) << "the fresh device bootstrapped carol's scope";
}

TEST_F(E2E, ServerBinaryHelpConfigUnknownOptionsAndSigtermDrain) {
  RunResult help = run({FIELDSYNC_SERVER_BIN, "--help"}, tmp);
  EXPECT_EQ(help.status.code, 0);
  for (const char* flag : {"--config",
                           "--listen",
                           "--data-dir",
                           "--cert",
                           "--key",
                           "--dev",
                           "--dev-tokens",
                           "--threads",
                           "--max-sessions",
                           "--tls-timeout-ms",
                           "--ws-timeout-ms",
                           "--idle-timeout-ms",
                           "--drain-timeout-ms",
                           "--max-queue-bytes",
                           "--max-queue-frames",
                           "--group-commit",
                           "--metrics-token",
                           "--max-protocol",
                           "/login",
                           "/metrics",
                           "--help",
                           "SIGTERM"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag << " is not documented";

  // An unknown option: one clear line, non-zero exit, nothing started.
  RunResult unknown = run({FIELDSYNC_SERVER_BIN, "--frobnicate", "3"}, tmp);
  EXPECT_NE(unknown.status.code, 0);
  EXPECT_EQ(std::count(unknown.err.begin(), unknown.err.end(), '\n'), 1) << unknown.err;
  EXPECT_NE(unknown.err.find("--frobnicate"), std::string::npos) << unknown.err;
  EXPECT_EQ(unknown.out, "");

  // A protocol version the server does not speak cannot be the newest it answers with.
  RunResult too_new = run({FIELDSYNC_SERVER_BIN, "--max-protocol", "3"}, tmp);
  EXPECT_EQ(too_new.status.code, 1);
  EXPECT_NE(too_new.err.find("max-protocol"), std::string::npos) << too_new.err;

  // A config file is honoured (listen address, dev mode, data dir) and flags override it.
  const std::string cfg = tmp.file("server.conf"), cfg_dir = tmp.file("from-config"),
                    flag_dir = tmp.file("from-flag");
  {
    std::ofstream f(cfg);
    f << "# a test config\nlisten = 127.0.0.1:0\ndev = true\ndata-dir = " << cfg_dir
      << "\nmax-queue-frames = 1   # below the minimum\n";
  }
  RunResult bad = run({FIELDSYNC_SERVER_BIN, "--config", cfg}, tmp);
  EXPECT_EQ(bad.status.code, 1);
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_NE(bad.err.find("max-queue-frames"), std::string::npos) << bad.err;
  {
    std::ofstream f(tmp.file("unknown.conf"));
    f << "bogus = 1\n";
  }
  RunResult bogus = run({FIELDSYNC_SERVER_BIN, "--config", tmp.file("unknown.conf")}, tmp);
  EXPECT_EQ(bogus.status.code, 1);
  EXPECT_EQ(std::count(bogus.err.begin(), bogus.err.end(), '\n'), 1) << bogus.err;
  EXPECT_NE(bogus.err.find("bogus"), std::string::npos) << bogus.err;
  {
    Child c;
    const std::string out = tmp.file("cfg.out"), err = tmp.file("cfg.err");
    ASSERT_TRUE(
        c.spawn({FIELDSYNC_SERVER_BIN, "--config", cfg, "--max-queue-frames", "16", "--data-dir", flag_dir},
                out, err));
    ASSERT_TRUE(eventually([&] {
      return slurp(out).find("listening on wss://127.0.0.1:") != std::string::npos;
    })) << slurp(err);
    EXPECT_NE(slurp(out).find("data in " + flag_dir), std::string::npos) << slurp(out);
    EXPECT_TRUE(std::filesystem::exists(flag_dir + "/dev-cert.pem")) << "dev = true from the file";
    EXPECT_FALSE(std::filesystem::exists(cfg_dir)) << "--data-dir overrides the file";
    c.signal(SIGTERM);
    std::optional<ExitStatus> e = c.wait_for(kWait);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, 0);
  }

  // SIGTERM drains: a connected device is sent a close frame (going away) and the process exits 0.
  ASSERT_TRUE(server.start());
  Phone& alice = phone("alice");
  alice.online();
  ASSERT_TRUE(converges(alice));
  std::unique_ptr<WsRawPeer> peer = raw_hello("bob");
  ASSERT_TRUE(peer);
  std::vector<uint8_t> msg;
  ASSERT_TRUE(peer->receive(msg, kWait).ok());
  auto welcome = codec::decode(msg);
  ASSERT_OK(welcome);
  ASSERT_TRUE(std::holds_alternative<protocol::Welcome>(welcome.value()));

  const auto t0 = std::chrono::steady_clock::now();
  std::thread term([&] {
    std::optional<ExitStatus> e = server.terminate();
    EXPECT_TRUE(e.has_value());
    if (e) {
      EXPECT_TRUE(e->exited);
      EXPECT_EQ(e->code, 0);
    }
  });
  WsStatus closed = peer->receive(msg, kWait);  // reading lets the peer answer the close frame
  EXPECT_EQ(closed.code, WsError::kClosed) << closed.to_string();
  EXPECT_EQ(closed.close_code, 1001) << closed.to_string();
  term.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "both peers answered: no drain timeout";
  EXPECT_TRUE(eventually([&] { return !alice.ws->connected(); }));
  EXPECT_NE(server.stdout_text().find("SIGTERM, draining"), std::string::npos);
}

}  // namespace
}  // namespace fieldsync

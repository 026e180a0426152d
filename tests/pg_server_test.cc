// Several fieldsync-server instances on one PostgreSQL database (issue 20, "Several instances"): the
// cross-instance notification (log_follower.h), then two real fieldsync-server processes with --store
// postgresql://, real FieldClients over TLS given both URLs, fan-out across instances (latency measured),
// kill -9 of one instance in the middle of pushes, dedupe across instances, and fieldsync-admin --store.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "fieldsync/client/field_client.h"
#include "fieldsync/client/ws_client.h"
#include "fieldsync/server/admin.h"
#include "fieldsync/server/log_follower.h"
#include "fieldsync/server/tls.h"
#include "fieldsync/sync/codec.h"
#include "migrate.h"
#include "pg.h"
#include "support/pg_test_db.h"
#include "support/server_process.h"

namespace fieldsync::server {
namespace {

using namespace std::chrono_literals;
using client::FieldClient;
using client::WsClient;
using client::WsClientOptions;
using client::WsRawPeer;
using client::WsStatus;
using schema::EntityId;
using schema::Role;
using testsupport::eventually;
using testsupport::kWait;
using PgTestDb = fieldsync::testing::PgTestDatabase;
using testsupport::ServerProcess;
using testsupport::TempDir;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Counted {
  std::atomic<int> commits{0};
  std::unique_ptr<LogFollower> follower;
};

void follow(Counted& c, const std::string& url) {
  auto f = LogFollower::start(url, [&c] { c.commits++; });
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  c.follower = std::move(f.value());
}

TEST(LogFollower, ACommitOnOneServerWakesTheOthersNotItself) {
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  Counted a, b, c;
  follow(a, db.url());
  follow(b, db.url());
  follow(c, db.url());
  a.follower->local_commit();
  ASSERT_TRUE(eventually([&] { return b.commits >= 1 && c.commits >= 1; }, 5s));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(a.commits.load(), 0) << "a server's own NOTIFY is not news to it";
  EXPECT_EQ(b.follower->notifications(), 1u);

  // Many local commits in a burst: at least one NOTIFY, at most one per call (coalesced).
  const int before = b.commits;
  for (int i = 0; i < 1000; ++i) a.follower->local_commit();
  ASSERT_TRUE(eventually([&] { return b.commits > before; }, 5s));
  std::this_thread::sleep_for(200ms);
  EXPECT_LT(b.commits - before, 1000) << "a burst of commits is told in fewer notifications";

  // fieldsync-admin's one-off NOTIFY wakes every server.
  const int a0 = a.commits, b0 = b.commits;
  ASSERT_TRUE(notify_log(db.url()).is_ok());
  ASSERT_TRUE(eventually([&] { return a.commits > a0 && b.commits > b0; }, 5s));
}

// The follower's connection drops (a database restart or failover): it reconnects by itself, wakes its
// server once for whatever was committed meanwhile, and is told of later commits again.
TEST(LogFollower, ReconnectsAndCatchesUpAfterItsConnectionDrops) {
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  Counted a, b;
  follow(a, db.url());
  follow(b, db.url());
  {
    auto c = pg::Conn::open(db.admin_url());
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    ASSERT_TRUE((*c)->exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                           pg::Params().add(db.name()))
                    .is_ok());
  }
  ASSERT_TRUE(
      eventually([&] { return a.follower->reconnects() >= 1 && b.follower->reconnects() >= 1; }, 10s));
  EXPECT_GE(b.commits.load(), 1) << "a reconnect looks at the log once";
  const int b0 = b.commits;
  a.follower->local_commit();
  ASSERT_TRUE(eventually([&] { return b.commits > b0; }, 5s));
}

TEST(LogFollower, AnUnreachableDatabaseIsATypedError) {
  auto f = LogFollower::start("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", [] {});
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), ErrorCode::kStorageIo);
  EXPECT_EQ(notify_log("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2").code(),
            ErrorCode::kStorageIo);
}

// ---- Two fieldsync-server processes on one database

// One device: a FieldClient on its own SQLite replica and a WsClient given every server URL.
struct Phone {
  std::string user;
  NodeId node = 0;
  std::unique_ptr<FieldClient> client;
  std::unique_ptr<WsClient> ws;
  std::mutex mu;  // serialises writes with reading what was written (the writer threads)
  std::vector<std::string> written;
  std::atomic<int> bootstrap_progress{0};  // FieldClient::Options::sync_progress calls (bootstraps)
  std::atomic<int> auth_failures{0};       // kAuthFailed errors the engine reported

  ~Phone() {
    if (ws) ws->stop();
  }
  size_t pending() {
    auto n = client->pending_count();
    EXPECT_TRUE(n.is_ok()) << n.status().to_string();
    return n ? *n : 0;
  }
  std::string exported() {
    auto j = client->export_json();
    return j ? *j : std::string("<export failed>");
  }
  bool has_account(const std::string& id) {
    auto a = client->accounts_by_prefix("");
    return a && std::any_of(a->begin(), a->end(), [&](const client::Account& x) { return x.id == id; });
  }
};

class TwoInstances : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db.ok());
    // One certificate for both instances (--dev reuses DIR/dev-cert.pem): a device trusts either.
    shared = tmp.file("shared");
    std::filesystem::create_directories(shared);
    auto pem = make_self_signed(SelfSignedOptions{});
    ASSERT_TRUE(pem.is_ok()) << pem.status().to_string();
    ASSERT_TRUE(write_file(shared + "/dev-key.pem", pem->key_pem, true).is_ok());
    ASSERT_TRUE(write_file(shared + "/dev-cert.pem", pem->cert_pem, false).is_ok());

    Admin::Options o;
    o.directory.pbkdf2_iterations = 1000;  // tests only
    auto a = Admin::open(seed_location(), o);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    admin = std::move(a.value());
    Directory& dir = admin->directory();
    for (const char* t : {"north", "south"}) ASSERT_TRUE(dir.add_territory({t, t}).is_ok());
    struct Seed {
      const char* id;
      Role role;
      const char* territory;
      NodeId node;
    };
    for (const Seed& s :
         {Seed{"alice", Role::kRep, "north", 0x2001}, Seed{"bob", Role::kRep, "north", 0x2002},
          Seed{"carol", Role::kRep, "south", 0x2003}, Seed{"dave", Role::kRep, "south", 0x2004},
          Seed{"hq", Role::kHeadOffice, nullptr, 0x2005}}) {
      ASSERT_TRUE(dir.add_user({s.id, s.id, s.role}, std::string(s.id) + "-password", wall_ms()).is_ok());
      if (s.territory) {
        ASSERT_TRUE(dir.assign_territory(s.id, s.territory).is_ok());
      }
      ASSERT_TRUE(dir.register_device(s.node, s.id, wall_ms()).is_ok());
      nodes[s.id] = s.node;
      roles[s.id] = s.role;
    }
    ASSERT_TRUE(admin->add_product("P-1", "Flour", "bag").is_ok());
  }
  void TearDown() override {
    phones.clear();
    for (ServerProcess* s : {&a, &b})
      if (s->running()) s->kill9();
  }

  // Where SetUp seeds users, devices and the catalogue: the PostgreSQL database the instances share.
  virtual std::string seed_location() { return db.url(); }

  ::testing::AssertionResult start(ServerProcess& s, uint16_t port = 0) {
    return s.start(port, {"--store", db.url()});
  }
  std::string token(const std::string& user) {
    auto t = admin->directory().login(user, user + "-password", nodes.at(user), wall_ms());
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return t ? *t : std::string();
  }
  WsClientOptions transport(const std::vector<std::string>& urls) {
    WsClientOptions o;
    o.url = urls.at(0);
    o.fallback_urls.assign(urls.begin() + 1, urls.end());
    o.ca_file = shared + "/dev-cert.pem";
    o.connect_timeout_ms = 10'000;
    o.reconnect_cap_ms = 100;
    o.tick_interval_ms = 200;
    return o;
  }
  // A phone for `user`, online through the first of `urls`, failing over to the others.
  Phone& phone(const std::string& user, const std::vector<std::string>& urls,
               std::optional<std::string> tok = std::nullopt) {
    auto p = std::make_unique<Phone>();
    p->user = user;
    p->node = nodes.at(user);
    FieldClient::Options o;
    o.user = user;
    o.token = tok ? *tok : token(user);
    o.role = roles.at(user);
    o.node = p->node;
    o.synchronous_full = false;
    Phone* raw = p.get();
    auto c = FieldClient::open(tmp.file(user + ".db"), std::move(o));
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    p->client = std::move(c.value());
    client::Observer watch;
    watch.sync_progress = [raw](uint64_t, uint64_t) { raw->bootstrap_progress++; };
    watch.error = [raw](const Status& s) {
      if (s.code() == ErrorCode::kAuthFailed) raw->auth_failures++;
    };
    p->client->add_observer(std::move(watch));
    connect(*p, urls);
    phones.push_back(std::move(p));
    return *raw;
  }
  // (Re)connects a phone's transport to `urls` (the same replica, cursor and token).
  void connect(Phone& p, const std::vector<std::string>& urls) {
    if (p.ws) p.ws->stop();
    WsClientOptions t = transport(urls);
    Phone* raw = &p;
    t.after_frame = [raw] { raw->client->dispatch_events(); };
    p.ws = std::make_unique<WsClient>(p.client->engine(), t);
    WsStatus st = p.ws->start();
    EXPECT_TRUE(st.ok()) << st.to_string();
  }
  // The ends of both servers' logs, for a failure message.
  std::string logs() {
    auto tail = [](const std::string& t) { return t.substr(t.size() > 2500 ? t.size() - 2500 : 0); };
    return "\nA's log:\n" + tail(a.stderr_text()) + "\nB's log:\n" + tail(b.stderr_text());
  }
  std::string server_export(const std::string& user) {
    auto j = admin->export_json(user);
    EXPECT_TRUE(j.is_ok()) << j.status().to_string();
    return j ? *j : std::string();
  }
  ::testing::AssertionResult converges(Phone& p) {
    std::string mine, theirs;
    if (eventually([&] { return (mine = p.exported()) == (theirs = server_export(p.user)); }))
      return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << p.user << "'s replica differs from the store (" << mine.size()
                                         << " vs " << theirs.size() << " bytes)";
  }
  // Every transaction of `node` in the store's log, by node_seq.
  std::vector<uint64_t> logged_node_seqs(NodeId node) {
    std::vector<uint64_t> seqs;
    for (uint64_t after = 0;;) {
      auto page = admin->store().read_log(after, 1000);
      EXPECT_TRUE(page.is_ok()) << page.status().to_string();
      if (!page || page->empty()) break;
      for (const ServerTxn& t : *page)
        if (t.origin_node == node) seqs.push_back(t.origin_node_seq);
      after = page->back().server_seq;
    }
    return seqs;
  }

  PgTestDb db;
  TempDir tmp{"pg-e2e"};
  std::string shared;
  std::unique_ptr<Admin> admin;
  ServerProcess a{tmp.file("shared"), tmp.file("server-a")};
  ServerProcess b{tmp.file("shared"), tmp.file("server-b")};
  std::map<std::string, NodeId> nodes;
  std::map<std::string, Role> roles;
  std::vector<std::unique_ptr<Phone>> phones;
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// A commit through instance A reaches a device live on instance B without a pull, through B's
// notification (not its once-a-second poll of the log head). Measured: the p50/p99 latency from the
// write on the phone on A to the record on the phone on B (docs/PERFORMANCE.md, "Several instances").
TEST_F(TwoInstances, ACommitOnOneInstanceReachesDevicesOnTheOtherLive) {
  ASSERT_TRUE(start(a));
  ASSERT_TRUE(start(b));
  Phone& alice = phone("alice", {a.url()});
  Phone& bob = phone("bob", {b.url()});
  ASSERT_TRUE(eventually([&] { return alice.ws->connected() && bob.ws->connected(); }));
  ASSERT_TRUE(converges(alice));
  ASSERT_TRUE(converges(bob));

  const char* env = std::getenv("FIELDSYNC_FANOUT_SAMPLES");
  const int samples = env ? std::max(10, std::atoi(env)) : 100;
  std::vector<double> ms;
  for (int i = 0; i < samples; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto id = alice.client->create_account({.name = "Across " + std::to_string(i), .territory_id = "north"});
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    ASSERT_TRUE(eventually([&] { return bob.has_account(*id); }, 10s)) << "sample " << i;
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  const double p50 = percentile(ms, 0.50), p99 = percentile(ms, 0.99);
  std::cout << "cross-instance fan-out over " << samples << " commits: p50 " << p50 << " ms, p99 " << p99
            << " ms\n";
  RecordProperty("fanout_p50_ms", std::to_string(p50));
  RecordProperty("fanout_p99_ms", std::to_string(p99));
  // The once-a-second poll alone would put the median near 500 ms: well below it, the notification did it.
  EXPECT_LT(p50, 250.0);
  EXPECT_TRUE(converges(bob));
}

// kill -9 of instance A in the middle of pushes: every device moves to B by itself, nothing acknowledged is
// lost, nothing is applied twice, and every replica converges with the store.
TEST_F(TwoInstances, KillNineOfOneInstanceMidPushLosesNothingAndAppliesNothingTwice) {
  ASSERT_TRUE(start(a));
  ASSERT_TRUE(start(b));
  // Devices spread over both instances, each given both URLs.
  Phone& alice = phone("alice", {a.url(), b.url()});
  Phone& bob = phone("bob", {b.url(), a.url()});
  Phone& carol = phone("carol", {a.url(), b.url()});
  Phone& dave = phone("dave", {b.url(), a.url()});
  Phone& hq = phone("hq", {a.url(), b.url()});
  std::vector<Phone*> writers = {&alice, &bob, &carol, &dave};
  ASSERT_TRUE(eventually([&] {
    return std::all_of(phones.begin(), phones.end(), [](const auto& p) { return p->ws->connected(); });
  }));

  std::atomic<bool> stop{false};
  std::atomic<int> write_errors{0};
  std::vector<std::thread> threads;
  for (Phone* p : writers) {
    threads.emplace_back([&, p] {
      const std::string territory = p->user == "alice" || p->user == "bob" ? "north" : "south";
      for (int i = 0; !stop; ++i) {
        {
          std::lock_guard lock(p->mu);
          auto id = p->client->create_account(
              {.name = p->user + " " + std::to_string(i), .territory_id = territory});
          if (id)
            p->written.push_back(*id);
          else
            write_errors++;
        }
        // A rep's pace, not a flood: the instances share one log head (every commit takes its row lock) and
        // one fsync per transaction on this 2-core machine is about 20 ms.
        std::this_thread::sleep_for(50ms);
      }
    });
  }
  struct Join {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~Join() {
      stop = true;
      for (std::thread& t : threads)
        if (t.joinable()) t.join();
    }
  } join{stop, threads};

  auto acked = [](Phone& p) {
    std::lock_guard lock(p.mu);
    return p.written.size() - p.pending();
  };
  // Mid-stream on A: alice's and carol's acknowledgements are flowing through it.
  const size_t alice0 = acked(alice), carol0 = acked(carol);
  ASSERT_TRUE(eventually([&] { return acked(alice) >= alice0 + 20 && acked(carol) >= carol0 + 20; }))
      << "alice " << acked(alice) << " acked, " << alice.pending() << " pending; " << logs();
  std::mt19937_64 rng(std::random_device{}());
  std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 100));
  // What each device knew to be acknowledged when A died.
  std::map<std::string, std::vector<std::string>> acknowledged;
  a.kill9();
  for (Phone* p : writers) {
    std::lock_guard lock(p->mu);
    acknowledged[p->user].assign(p->written.begin(),
                                 p->written.end() - static_cast<std::ptrdiff_t>(p->pending()));
  }
  bool in_flight = alice.pending() + carol.pending() > 0;

  // The writes go on through B. Right after the kill a device may still count itself connected to A (it has
  // not read the reset yet, slower under ASan), so wait for each to be connected through B.
  auto on_b = [&](Phone& p) { return p.ws->connected() && p.ws->current_url() == b.url(); };
  ASSERT_TRUE(eventually([&] { return on_b(alice) && on_b(carol) && on_b(hq); }))
      << alice.ws->current_url() << ": " << alice.ws->last_error().to_string();
  const size_t alice1 = acked(alice);
  ASSERT_TRUE(eventually([&] { return acked(alice) >= alice1 + 20; }))
      << alice.ws->last_error().to_string() << "; alice pending " << alice.pending() << logs();
  stop = true;
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(write_errors.load(), 0);
  RecordProperty("writes_in_flight_at_kill", in_flight ? "yes" : "no");

  for (Phone* p : writers) {
    SCOPED_TRACE(p->user);
    ASSERT_TRUE(eventually([&] { return p->pending() == 0; })) << p->pending() << " pending";
    for (const std::string& id : acknowledged[p->user]) {
      auto r = admin->store().load(EntityId::kAccount, *RecordId::parse(id));
      ASSERT_TRUE(r.is_ok());
      EXPECT_TRUE(r->has_value()) << "acknowledged write " << id << " lost";
    }
    std::vector<uint64_t> expected(p->written.size());
    for (size_t i = 0; i < expected.size(); ++i) expected[i] = i + 1;
    EXPECT_EQ(logged_node_seqs(p->node), expected) << "each write once, in order";
  }
  for (const auto& p : phones) EXPECT_TRUE(converges(*p));
  size_t total = 0;
  for (Phone* p : writers) total += p->written.size();
  std::cout << total << " writes by " << writers.size() << " devices, one instance killed mid-push"
            << (in_flight ? " with writes in flight" : "") << "\n";
}

// A push that went to instance A and whose retry goes to B (the acknowledgement was lost with A): B answers
// duplicate, from the shared per-node watermark, and applies nothing.
TEST_F(TwoInstances, ARetryOnTheOtherInstanceIsADuplicate) {
  ASSERT_TRUE(start(a));
  ASSERT_TRUE(start(b));
  const NodeId node = nodes.at("bob");
  ClientTxn txn;
  txn.node = node;
  txn.node_seq = 1;
  txn.created_at_ms = wall_ms();
  RecordIdGenerator ids(node);
  const RecordId id = ids.next(wall_ms());
  Hlc hlc = make_hlc(wall_ms(), 0);
  auto set = [&](uint16_t field, Value v) {
    Change c{ChangeOp::kSet, EntityId::kAccount, id, field};
    c.value = std::move(v);
    return c;
  };
  txn.changes = {Change{ChangeOp::kCreate, EntityId::kAccount, id}, set(1, Value::text("Mill")),
                 set(2, Value::text("north")), set(10, Value::text("bob"))};
  for (Change& c : txn.changes) c.version = Version{++hlc, node};

  auto push_through = [&](ServerProcess& s) -> protocol::TxnResult {
    WsRawPeer peer(transport({s.url()}));
    EXPECT_TRUE(peer.connect().ok());
    protocol::Hello hello;
    hello.schema_version = schema::kSchemaVersion;
    hello.node = node;
    hello.token = token("bob");
    hello.client_time_ms = wall_ms();
    EXPECT_TRUE(peer.send(codec::encode(hello), kWait).ok());
    EXPECT_TRUE(peer.send(codec::encode(protocol::PushTxns{1, {txn}}), kWait).ok());
    std::vector<uint8_t> msg;
    while (peer.receive(msg, kWait).ok()) {
      Result<protocol::Message> m = codec::decode(msg);
      if (m.is_ok() && std::holds_alternative<protocol::PushAck>(m.value()))
        return std::get<protocol::PushAck>(m.value()).results.at(0);
    }
    ADD_FAILURE() << "no PushAck from " << s.url();
    return {};
  };
  EXPECT_EQ(push_through(a).outcome, protocol::TxnOutcome::kApplied);
  const uint64_t head = admin->store().head_seq().value();
  EXPECT_EQ(push_through(b).outcome, protocol::TxnOutcome::kDuplicate);
  EXPECT_EQ(admin->store().head_seq().value(), head) << "nothing applied twice";
  EXPECT_EQ(logged_node_seqs(node), std::vector<uint64_t>{1});
}

// fieldsync-admin --store: a catalogue write reaches a device live on a running instance at once (its
// NOTIFY), and directory commands work on the shared database.
TEST_F(TwoInstances, AdminOnTheDatabaseReachesLiveDevicesAndRevokesEverywhere) {
  ASSERT_TRUE(start(a));
  ASSERT_TRUE(start(b));
  Phone& hq = phone("hq", {b.url()});
  ASSERT_TRUE(converges(hq));
  const auto t0 = std::chrono::steady_clock::now();
  testsupport::RunResult r = testsupport::run({FIELDSYNC_ADMIN_BIN, "--store", db.url(), "product", "add",
                                               "--sku", "P-9", "--name", "Salt", "--unit", "bag"},
                                              tmp);
  ASSERT_EQ(r.status.code, 0) << r.err;
  ASSERT_TRUE(converges(hq));
  std::cout << "admin write to a live device on an instance: "
            << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()
            << " ms (including the admin process's start)\n";

  // A device revoked through the admin tool is refused by both instances at its next connection.
  const std::string carol_token = token("carol");
  r = testsupport::run({FIELDSYNC_ADMIN_BIN, "--store", db.url(), "device", "revoke", "--node",
                        std::to_string(nodes.at("carol"))},
                       tmp);
  ASSERT_EQ(r.status.code, 0) << r.err;
  Phone& carol = phone("carol", {a.url(), b.url()}, carol_token);
  ASSERT_TRUE(eventually([&] { return carol.client->engine().stopped(); }));
  EXPECT_EQ(carol.client->engine().stop_reason().code(), ErrorCode::kDeviceRevoked);

  // The reports are served on PostgreSQL too (without a session: 401, not 501 or a crash; api_test runs
  // them).
  r = testsupport::run({"curl", "-sk", "-o", "-", "-w", "%{http_code}",
                        "https://127.0.0.1:" + std::to_string(a.port()) + "/api/v1/reports/revenue"},
                       tmp);
  EXPECT_EQ(r.out.find("not_available_on_postgresql"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("401"), std::string::npos) << r.out;
}

// A device live on instance A, revoked through instance B's head-office API, is cut at once (B's directory
// NOTIFY reaches A's follower), not at its next handshake; the same for a user disabled through B.
TEST_F(TwoInstances, ARevocationThroughOneInstanceCutsALiveDeviceOnTheOther) {
  ASSERT_TRUE(start(a));
  ASSERT_TRUE(start(b));
  Phone& carol = phone("carol", {a.url()});
  Phone& dave = phone("dave", {a.url()});
  ASSERT_TRUE(converges(carol));
  ASSERT_TRUE(converges(dave));
  ASSERT_TRUE(eventually([&] { return carol.ws->connected() && dave.ws->connected(); }));
  const std::string api = "https://127.0.0.1:" + std::to_string(b.port()) + "/api/v1";
  testsupport::RunResult signed_in =
      testsupport::run({"curl", "-sk", "-X", "POST", "-H", "Content-Type: application/json", "-d",
                        R"({"user":"hq","password":"hq-password","mode":"token"})", api + "/session"},
                       tmp);
  ASSERT_EQ(signed_in.status.code, 0) << signed_in.err;
  boost::system::error_code ec;
  boost::json::value session = boost::json::parse(signed_in.out, ec);
  ASSERT_FALSE(ec) << signed_in.out;
  const std::string bearer = "Authorization: Bearer " + std::string(session.at("token").as_string());
  auto call = [&](const char* method, const std::string& path, const std::string& body) {
    return testsupport::run({"curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, "-H",
                             bearer, "-H", "Content-Type: application/json", "-d", body, api + path},
                            tmp);
  };

  auto t0 = std::chrono::steady_clock::now();
  testsupport::RunResult r = call("POST", "/devices/" + std::to_string(nodes.at("carol")) + "/revoke", "{}");
  ASSERT_EQ(r.out, "200") << r.err;
  ASSERT_TRUE(eventually([&] { return carol.client->engine().stopped(); }, 5s)) << logs();
  EXPECT_EQ(carol.client->engine().stop_reason().code(), ErrorCode::kDeviceRevoked);
  std::cout << "revocation through B reaching a device live on A: "
            << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()
            << " ms (including curl)\n";

  t0 = std::chrono::steady_clock::now();
  r = call("PATCH", "/users/dave", R"({"disabled":true})");
  ASSERT_EQ(r.out, "200") << r.err;
  ASSERT_TRUE(eventually([&] { return dave.auth_failures.load() > 0; }, 5s)) << logs();
  std::cout << "disabling through B reaching a device live on A: "
            << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()
            << " ms (including curl)\n";
}

// ---- Moving from the embedded store: `fieldsync-admin migrate --from DIR --to postgresql://...`

// The migration's verification (verify_migration: the comparison migrate_to_postgresql ends with, by row
// count and checksum per table) fails on a copy that differs from its source -- one value changed in one
// row, one row missing -- with kStorageCorrupt naming the table and both sides' figures; the faithful copy
// passes it first (so the check can fail only on the change).
TEST(MigrationVerification, ACopyThatDiffersFromItsSourceFailsNamingTheTable) {
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  TempDir tmp("migrate-verify");
  const std::string dir = tmp.file("data");
  std::filesystem::create_directories(dir);
  Admin::Options o;
  o.directory.pbkdf2_iterations = 1000;  // tests only
  RecordId changed;
  {
    auto a = Admin::open(dir, o);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    ASSERT_TRUE((*a)->directory().add_territory({"north", "north"}).is_ok());
    for (int i = 0; i < 3; ++i) {
      auto p = (*a)->add_product("SKU-" + std::to_string(i), "Flour " + std::to_string(i), "kg");
      ASSERT_TRUE(p.is_ok()) << p.status().to_string();
      changed = *p;
    }
  }
  Result<MigrationReport> migrated = migrate_to_postgresql(dir, db.url(), o.directory);
  ASSERT_TRUE(migrated.is_ok()) << migrated.status().to_string();
  ASSERT_EQ(migrated->head_seq, 3u);
  Result<MigrationReport> verified = verify_migration(dir, db.url());
  ASSERT_TRUE(verified.is_ok()) << verified.status().to_string();
  EXPECT_EQ(verified->tables.size(), migrated->tables.size());

  auto conn = pg::Conn::open(db.url());
  ASSERT_TRUE(conn.is_ok()) << conn.status().to_string();
  ASSERT_TRUE((*conn)->exec("UPDATE product SET name = 'Flour (changed)' WHERE id = $1",
                            pg::Params().add(changed.to_string())));
  Result<MigrationReport> after_change = verify_migration(dir, db.url());
  ASSERT_FALSE(after_change.is_ok());
  EXPECT_EQ(after_change.status().code(), ErrorCode::kStorageCorrupt);
  // Entity tables are named as quoted identifiers; the same row count, the checksums differ.
  EXPECT_NE(after_change.status().message().find("verification failed for \"product\": 3 rows "),
            std::string::npos)
      << after_change.status().message();
  EXPECT_NE(after_change.status().message().find(" in SQLite, 3 rows "), std::string::npos)
      << after_change.status().message();

  ASSERT_TRUE((*conn)->exec("UPDATE product SET name = 'Flour 2' WHERE id = $1",
                            pg::Params().add(changed.to_string())));
  ASSERT_TRUE(verify_migration(dir, db.url()).is_ok()) << "the original value back: equal again";
  ASSERT_TRUE((*conn)->exec("DELETE FROM _log WHERE server_seq = 2"));
  Result<MigrationReport> after_delete = verify_migration(dir, db.url());
  ASSERT_FALSE(after_delete.is_ok());
  EXPECT_EQ(after_delete.status().code(), ErrorCode::kStorageCorrupt);
  EXPECT_NE(after_delete.status().message().find("verification failed for _log: 3 rows "), std::string::npos)
      << after_delete.status().message();
  EXPECT_NE(after_delete.status().message().find(", 2 rows "), std::string::npos)
      << after_delete.status().message();
}

// The users, devices and catalogue are seeded in the SQLite data directory (`shared`, which instance A runs
// on without --store); the PostgreSQL database starts empty.
class Migration : public TwoInstances {
 protected:
  std::string seed_location() override { return shared; }
};

// A device synced against the SQLite server continues against the PostgreSQL one with no bootstrap: its
// token verifies (same key), its cursor is valid (same server_seq), and its next write continues the log.
TEST_F(Migration, ADeviceSyncedOnSqliteContinuesOnPostgresqlWithoutAResync) {
  ASSERT_TRUE(a.start());  // SQLite
  Phone& alice = phone("alice", {a.url()});
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(alice.client->create_account({.name = "Before " + std::to_string(i), .territory_id = "north"})
                    .is_ok());
  ASSERT_TRUE(eventually([&] { return alice.pending() == 0; }));
  ASSERT_TRUE(converges(alice));
  const int bootstraps = alice.bootstrap_progress.load();
  ASSERT_GT(bootstraps, 0) << "the first sync bootstraps, and the counter sees it";
  const uint64_t head = *admin->store().head_seq();
  const std::string before = server_export("alice");
  alice.ws->stop();
  ASSERT_TRUE(a.terminate().has_value());
  admin.reset();
  // Head office's report settings and a deal's stage history in the SQLite store (as the API and save()
  // write them): a deal that moved prospect -> qualified, the forecast's probability, the case SLA.
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open((shared + "/central.db").c_str(), &raw), SQLITE_OK);
    const char* sql =
        "INSERT INTO _stage_history (opportunity_id, stage, entered_at_ms, left_at_ms, next_stage) VALUES "
        "('deal-1', 'prospect', 1000, 2000, 'qualified'), ('deal-1', 'qualified', 2000, NULL, NULL); "
        "INSERT INTO _stage_probability (stage, probability_bp) VALUES ('qualified', 3500); "
        "CREATE TABLE IF NOT EXISTS _case_sla (priority TEXT PRIMARY KEY, due_minutes INTEGER NOT NULL); "
        "INSERT INTO _case_sla (priority, due_minutes) VALUES ('high', 480);";
    ASSERT_EQ(sqlite3_exec(raw, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
    sqlite3_close(raw);
  }

  testsupport::RunResult r =
      testsupport::run({FIELDSYNC_ADMIN_BIN, "migrate", "--from", shared, "--to", db.url()}, tmp);
  ASSERT_EQ(r.status.code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("migrated and verified"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("_log\t" + std::to_string(head) + "\t"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fieldsync_directory.devices\t"), std::string::npos) << r.out;
  // Into a database that is no longer empty: refused, nothing written.
  testsupport::RunResult again =
      testsupport::run({FIELDSYNC_ADMIN_BIN, "migrate", "--from", shared, "--to", db.url()}, tmp);
  EXPECT_EQ(again.status.code, 1);
  EXPECT_NE(again.err.find("not empty"), std::string::npos) << again.err;

  Admin::Options o;
  o.directory.pbkdf2_iterations = 1000;
  auto opened = Admin::open(db.url(), o);
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  admin = std::move(opened.value());
  EXPECT_EQ(*admin->store().head_seq(), head);
  EXPECT_EQ(server_export("alice"), before);
  {  // the stage history and the settings came along; a new stint continues the ids
    auto conn = pg::Conn::open(db.url());
    ASSERT_TRUE(conn.is_ok()) << conn.status().to_string();
    auto stints = (*conn)->query(
        "SELECT string_agg(stage || ':' || coalesce(next_stage, '-'), ',' ORDER BY entered_at_ms) FROM "
        "_stage_history WHERE opportunity_id = 'deal-1'");
    ASSERT_TRUE(stints.is_ok()) << stints.status().to_string();
    EXPECT_EQ(stints->text(0, 0), "prospect:qualified,qualified:-");
    auto settings = (*conn)->query(
        "SELECT (SELECT probability_bp FROM _stage_probability WHERE stage = 'qualified'), (SELECT "
        "due_minutes "
        "FROM _case_sla WHERE priority = 'high')");
    ASSERT_TRUE(settings.is_ok()) << settings.status().to_string();
    EXPECT_EQ(settings->i64(0, 0), 3500);
    EXPECT_EQ(settings->i64(0, 1), 480);
    EXPECT_TRUE(
        (*conn)
            ->exec("INSERT INTO _stage_history (opportunity_id, stage, entered_at_ms) VALUES ('deal-2', "
                   "'prospect', 3000)")
            .is_ok());
  }

  ASSERT_TRUE(start(b));  // PostgreSQL
  connect(alice, {b.url()});
  auto id = alice.client->create_account({.name = "After", .territory_id = "north"});
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  ASSERT_TRUE(eventually([&] { return alice.pending() == 0; })) << logs();
  ASSERT_TRUE(converges(alice));
  EXPECT_EQ(alice.bootstrap_progress.load(), bootstraps) << "no resync after the move";
  EXPECT_EQ(*admin->store().head_seq(), head + 1) << "the log continues where SQLite's ended";
  // Another device of the same territory bootstraps from the migrated store and has everything.
  Phone& bob = phone("bob", {b.url()});
  ASSERT_TRUE(converges(bob));
  EXPECT_TRUE(bob.has_account(*id));
}

}  // namespace
}  // namespace fieldsync::server

// FieldClient through its public header: every API call, validation that writes nothing, totals, agenda
// windows, offline overlaps, the pipeline, observers, a round trip through an in-process SyncServer (frames
// through the real codec), and the fieldsync-rep binary.
#include "fieldsync/client/field_client.h"
#include "support/sync_fixtures.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "fieldsync/client/ws_client.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/server.h"
#include "support/memory_store.h"
#ifdef FIELDSYNC_HAVE_SERVER
#include "fieldsync/server/net_server.h"
#include "fieldsync/server/tls.h"
#include "support/test_pki.h"
#endif

namespace fieldsync::client {
namespace {

using schema::Role;

// 2026-11-18 (a Wednesday) 09:00:00 UTC.
constexpr int64_t kStart = 1'794'992'400'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;

// A fresh replica path. ctest runs every test in a process of its own, so pids come round again: the name
// also carries a random token of this process, and whatever an earlier run left there (the revocation
// marker included: a stale one made a later test's replica "revoked") is removed.
std::string temp_file(const std::string& name) {
  static std::atomic<int> counter{0};
  static const std::string run = std::to_string(std::random_device{}());
  std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / "field_client_test";
  std::filesystem::create_directories(dir);
  std::string path =
      (dir / (name + "-" + std::to_string(::getpid()) + "-" + run + "-" + std::to_string(counter++) + ".db"))
          .string();
  for (const char* suffix : {"", "-wal", "-shm", "-journal", ".revoked"})
    std::filesystem::remove(path + suffix);
  return path;
}

struct TestClock {
  int64_t now = kStart;
};

std::unique_ptr<FieldClient> open_client(const std::string& user, TestClock& clock,
                                         const std::string& path = "", Role role = Role::kRep) {
  FieldClient::Options o;
  o.user = user;
  o.role = role;
  o.token = "token-" + user;
  o.now_ms = [&clock] { return clock.now; };
  o.synchronous_full = false;
  auto r = FieldClient::open(path.empty() ? temp_file(user) : path, std::move(o));
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r ? std::move(r.value()) : nullptr;
}

size_t pending(FieldClient& c) {
  auto n = c.pending_count();
  EXPECT_TRUE(n.is_ok()) << n.status().to_string();
  return n ? *n : 0;
}

#define ASSERT_OK(expr)                                 \
  do {                                                  \
    const auto& r_ = (expr);                            \
    ASSERT_TRUE(r_.is_ok()) << r_.status().to_string(); \
  } while (0)

// Expects a typed error and that nothing reached the outbox.
#define EXPECT_REFUSED(client, expr, expected)                              \
  do {                                                                      \
    const size_t before_ = pending(client);                                 \
    auto r_ = (expr);                                                       \
    EXPECT_FALSE(r_.is_ok());                                               \
    EXPECT_EQ(status_of(r_).code(), expected) << status_of(r_).to_string(); \
    EXPECT_EQ(pending(client), before_);                                    \
  } while (0)

const Status& status_of(const Status& s) {
  return s;
}
template <typename T>
const Status& status_of(const Result<T>& r) {
  return r.status();
}

class FieldClientTest : public testing::Test {
 protected:
  void SetUp() override {
    client = open_client("alice", clock);
    ASSERT_NE(client, nullptr);
    auto a = client->create_account({.name = "Bäckerei Müller", .territory_id = "t-north", .city = "Kiel"});
    ASSERT_OK(a);
    account = *a;
  }
  TestClock clock;
  std::unique_ptr<FieldClient> client;
  std::string account;
};

TEST_F(FieldClientTest, AccountsAndContacts) {
  ASSERT_OK(client->create_account({.name = "Bakery Bauer", .territory_id = "t-north"}));
  ASSERT_OK(client->create_account({.name = "Café Sol", .territory_id = "t-south"}));
  ASSERT_TRUE(client->edit_account(account, {.phone = "+49 1", .segment = "a", .add_note = "likes rye"}));

  auto b = client->accounts_by_prefix("b");
  ASSERT_OK(b);
  ASSERT_EQ(b->size(), 2u);  // case-insensitive, sorted by name
  EXPECT_EQ((*b)[0].name, "Bakery Bauer");
  EXPECT_EQ((*b)[1].name, "Bäckerei Müller");
  EXPECT_EQ((*b)[1].phone, "+49 1");
  EXPECT_EQ((*b)[1].segment, "a");
  EXPECT_EQ((*b)[1].notes, "likes rye");
  EXPECT_EQ((*b)[1].created_by, "alice");
  auto none = client->accounts_by_prefix("%");  // wildcards are literal
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  auto all = client->accounts_by_prefix("");
  ASSERT_OK(all);
  EXPECT_EQ(all->size(), 3u);
  auto south = client->accounts_in_territory("t-south");
  ASSERT_OK(south);
  ASSERT_EQ(south->size(), 1u);
  EXPECT_EQ(south->front().name, "Café Sol");

  auto c1 =
      client->create_contact({.account_id = account, .name = "Zoe", .email = "zoe@x.de", .is_primary = true});
  ASSERT_OK(c1);
  ASSERT_OK(client->create_contact({.account_id = account, .name = "Anna"}));
  ASSERT_TRUE(client->edit_contact(*c1, {.title = "Owner"}));
  auto detail = client->account(account);
  ASSERT_OK(detail);
  EXPECT_EQ(detail->account.city, "Kiel");
  ASSERT_EQ(detail->contacts.size(), 2u);
  EXPECT_EQ(detail->contacts[0].name, "Anna");
  EXPECT_EQ(detail->contacts[1].title, "Owner");
  EXPECT_TRUE(detail->contacts[1].is_primary);
}

TEST_F(FieldClientTest, BadAccountAndContactValuesWriteNothing) {
  EXPECT_REFUSED(*client, client->create_account({.name = " ", .territory_id = "t"}),
                 ErrorCode::kNullViolation);
  EXPECT_REFUSED(*client, client->create_account({.name = "x", .territory_id = ""}),
                 ErrorCode::kNullViolation);
  EXPECT_REFUSED(*client, client->create_account({.name = "x", .territory_id = "t", .segment = "z"}),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*client, client->create_account({.name = "x", .territory_id = "t", .email = "nope"}),
                 ErrorCode::kValueInvalid);
  // Lengths come from the model and are checked by the sync core: still nothing written.
  EXPECT_REFUSED(*client, client->create_account({.name = "x", .territory_id = std::string(100, 't')}),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*client, client->edit_account(account, {}), ErrorCode::kInvalidArgument);
  EXPECT_REFUSED(*client, client->edit_account("not-an-id", {.name = "x"}), ErrorCode::kInvalidArgument);
  EXPECT_REFUSED(*client, client->edit_account("01890a5d-ac96-774b-bcce-b302099a8057", {.name = "x"}),
                 ErrorCode::kRecordNotFound);
  EXPECT_REFUSED(*client, client->create_contact({.account_id = account, .name = ""}),
                 ErrorCode::kNullViolation);
  EXPECT_REFUSED(*client,
                 client->create_contact({.account_id = "01890a5d-ac96-774b-bcce-b302099a8057", .name = "x"}),
                 ErrorCode::kRecordNotFound);
  EXPECT_EQ(client->account("01890a5d-ac96-774b-bcce-b302099a8057").status().code(),
            ErrorCode::kRecordNotFound);
}

TEST_F(FieldClientTest, VisitsCheckInNotesCheckOutHistoryAndToday) {
  auto v1 = client->check_in({.account_id = account, .latitude = 54.32, .longitude = 10.13});
  ASSERT_OK(v1);
  ASSERT_TRUE(client->add_visit_note(*v1, "new oven"));
  ASSERT_TRUE(client->add_visit_note(*v1, "wants a quote"));
  clock.now += kHour;
  ASSERT_TRUE(client->check_out(*v1, "follow_up"));
  auto v = client->visit(*v1);
  ASSERT_OK(v);
  EXPECT_EQ(v->check_in_at_ms, kStart);
  EXPECT_EQ(v->check_out_at_ms, kStart + kHour);
  EXPECT_EQ(v->notes, "new oven\nwants a quote");
  EXPECT_EQ(v->outcome, "follow_up");
  EXPECT_EQ(v->rep_id, "alice");
  EXPECT_DOUBLE_EQ(v->latitude.value_or(0), 54.32);

  auto yesterday = client->check_in({.account_id = account, .at_ms = kStart - kDay});
  ASSERT_OK(yesterday);
  auto history = client->visits_of_account(account);
  ASSERT_OK(history);
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].id, *v1);  // newest first
  auto today = client->todays_visits();
  ASSERT_OK(today);
  ASSERT_EQ(today->size(), 1u);
  EXPECT_EQ(today->front().id, *v1);

  EXPECT_REFUSED(*client, client->check_out(*v1, "order_taken"), ErrorCode::kInvalidArgument);  // already out
  EXPECT_REFUSED(*client, client->check_out(*yesterday, "maybe"), ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*client, client->check_out(*yesterday, "other", kStart - 2 * kDay),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*client, client->add_visit_note(*v1, ""), ErrorCode::kNullViolation);
  EXPECT_REFUSED(*client, client->check_in({.account_id = account, .latitude = 91, .longitude = 0}),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*client, client->check_in({.account_id = account, .latitude = 1}),
                 ErrorCode::kInvalidArgument);
  EXPECT_REFUSED(*client, client->check_in({.account_id = "01890a5d-ac96-774b-bcce-b302099a8057"}),
                 ErrorCode::kRecordNotFound);
}

// Without a clock in the options the client reads the system clock (in milliseconds, converted without a
// 64-bit division); one call takes one reading: the visit's id carries the millisecond of its check-in time.
TEST(FieldClientClock, DefaultClockIsTheSystemClockInMilliseconds) {
  FieldClient::Options o;
  o.user = "alice";
  o.token = "token-alice";
  o.synchronous_full = false;
  auto opened = FieldClient::open(temp_file("clock"), std::move(o));
  ASSERT_OK(opened);
  FieldClient& c = **opened;
  auto system_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  auto a = c.create_account({.name = "Clock", .territory_id = "t-north", .city = "Kiel"});
  ASSERT_OK(a);
  for (int i = 0; i < 20; ++i) {
    const int64_t before = system_ms();
    auto v = c.check_in({.account_id = *a});
    const int64_t after = system_ms();
    ASSERT_OK(v);
    auto visit = c.visit(*v);
    ASSERT_OK(visit);
    EXPECT_GE(visit->check_in_at_ms, before);
    EXPECT_LE(visit->check_in_at_ms, after);
    EXPECT_EQ(RecordId::parse(*v)->unix_ms(), visit->check_in_at_ms);
  }
}

TEST_F(FieldClientTest, LineTotalsRoundDiscountHalfUp) {
  OrderLine l;
  l.quantity = 3;
  l.unit_price_cents = 199;
  l.discount_bp = 250;  // 2.5 % of 597 = 14.925 -> 15
  compute_line_totals(l);
  EXPECT_EQ(l.gross_cents, 597);
  EXPECT_EQ(l.discount_cents, 15);
  EXPECT_EQ(l.net_cents, 582);
  l.quantity = kMaxQuantity;
  l.unit_price_cents = kMaxUnitPriceCents;
  l.discount_bp = kMaxDiscountBp;
  compute_line_totals(l);  // no overflow at the limits
  EXPECT_EQ(l.net_cents, 0);
}

TEST_F(FieldClientTest, CalendarOverlapsAgendaAndCancel) {
  auto e1 = client->create_event({.title = "Müller", .start_at_ms = kStart, .end_at_ms = kStart + kHour});
  ASSERT_OK(e1);
  EXPECT_TRUE(e1->overlaps.empty());
  auto e2 = client->create_event({.title = "Bauer",
                                  .start_at_ms = kStart + kHour / 2,
                                  .end_at_ms = kStart + 2 * kHour,
                                  .account_id = account});
  ASSERT_OK(e2);
  ASSERT_EQ(e2->overlaps.size(), 1u);  // reported at once, offline
  EXPECT_EQ(e2->overlaps[0].id, e1->id);
  // Touching ends do not overlap.
  auto moved = client->move_event(e2->id, kStart + kHour, kStart + 2 * kHour);
  ASSERT_OK(moved);
  EXPECT_TRUE(moved->overlaps.empty());
  auto next_week = client->create_event(
      {.title = "later", .start_at_ms = kStart + 7 * kDay, .end_at_ms = kStart + 7 * kDay + kHour});
  ASSERT_OK(next_week);
  auto monday = client->create_event(
      {.title = "monday", .start_at_ms = kStart - 2 * kDay, .end_at_ms = kStart - 2 * kDay + kHour});
  ASSERT_OK(monday);

  auto today = client->agenda_today();
  ASSERT_OK(today);
  ASSERT_EQ(today->size(), 2u);
  EXPECT_EQ((*today)[0].id, e1->id);
  auto week = client->agenda_week();  // Monday 2026-11-16 .. Sunday 2026-11-22
  ASSERT_OK(week);
  EXPECT_EQ(week->size(), 3u);
  ASSERT_TRUE(client->cancel_event(e1->id));
  today = client->agenda_today();
  ASSERT_OK(today);
  EXPECT_EQ(today->size(), 1u);
  // Cancelled events neither block nor show up as overlaps.
  auto e3 = client->create_event({.title = "x", .start_at_ms = kStart, .end_at_ms = kStart + kHour});
  ASSERT_OK(e3);
  EXPECT_TRUE(e3->overlaps.empty());

  EXPECT_REFUSED(*client, client->cancel_event(e1->id), ErrorCode::kInvalidTransition);
  EXPECT_REFUSED(*client, client->move_event(e1->id, kStart, kStart + kHour), ErrorCode::kInvalidTransition);
  EXPECT_REFUSED(*client, client->create_event({.title = "x", .start_at_ms = kStart, .end_at_ms = kStart}),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*client, client->create_event({.title = "", .start_at_ms = kStart, .end_at_ms = kStart + 1}),
                 ErrorCode::kNullViolation);
  EXPECT_REFUSED(*client, client->move_event(e3->id, kStart + kHour, kStart), ErrorCode::kValueInvalid);
}

TEST_F(FieldClientTest, DayAndWeekWindowsFollowTheRepsZone) {
  auto [d0, d1] = client->day_window(kStart);
  EXPECT_EQ(d1 - d0, kDay);
  EXPECT_EQ(d0, kStart - 9 * kHour);
  auto [w0, w1] = client->week_window(kStart);
  EXPECT_EQ(w0, kStart - 9 * kHour - 2 * kDay);  // Monday 00:00
  EXPECT_EQ(w1 - w0, 7 * kDay);

  TestClock c2;
  FieldClient::Options o;
  o.user = "bob";
  o.now_ms = [&c2] { return c2.now; };
  o.utc_offset_minutes = 600;  // UTC+10: 09:00 UTC is 19:00 local, same day
  auto r = FieldClient::open(temp_file("bob"), o);
  ASSERT_OK(r);
  auto [z0, z1] = (*r)->day_window(kStart);
  EXPECT_EQ(z0, kStart - 19 * kHour);
  EXPECT_EQ(z1, z0 + kDay);
}

TEST_F(FieldClientTest, OpportunitiesMoveAlongTheFunnelAndSumThePipeline) {
  auto o1 = client->create_opportunity({.account_id = account, .name = "Ovens", .amount_cents = 500'000});
  ASSERT_OK(o1);
  auto o2 = client->create_opportunity({.account_id = account, .name = "Flour", .amount_cents = 120'000});
  ASSERT_OK(o2);
  ASSERT_OK(client->create_opportunity(
      {.account_id = account, .name = "Van", .amount_cents = 3'000'000, .stage = "negotiation"}));
  ASSERT_OK(client->create_opportunity(
      {.account_id = account, .name = "Swiss", .amount_cents = 700, .currency = "CHF"}));
  ASSERT_TRUE(client->move_opportunity(*o2, "qualified"));
  ASSERT_TRUE(client->move_opportunity(*o1, "won"));
  EXPECT_REFUSED(*client, client->move_opportunity(*o1, "negotiation"),
                 ErrorCode::kPermissionDenied);  // reopen
  EXPECT_REFUSED(*client, client->move_opportunity(*o1, "won"), ErrorCode::kInvalidTransition);
  EXPECT_REFUSED(*client, client->move_opportunity(*o2, "closed"), ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*client,
                 client->create_opportunity({.account_id = account, .name = "x", .amount_cents = -1}),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*client, client->create_opportunity({.account_id = account, .name = "x", .currency = "eur"}),
                 ErrorCode::kValueInvalid);

  auto p = client->pipeline();
  ASSERT_OK(p);
  ASSERT_EQ(p->size(), 4u);
  EXPECT_EQ((*p)[0].stage, "prospect");
  EXPECT_EQ((*p)[0].currency, "CHF");
  EXPECT_EQ((*p)[0].amount_cents, 700);
  EXPECT_EQ((*p)[1].stage, "qualified");
  EXPECT_EQ((*p)[1].amount_cents, 120'000);
  EXPECT_EQ((*p)[2].stage, "negotiation");
  EXPECT_EQ((*p)[2].count, 1);
  EXPECT_EQ((*p)[3].stage, "won");
  EXPECT_EQ((*p)[3].amount_cents, 500'000);
  EXPECT_EQ(client->opportunity(*o1)->stage, "won");
}

TEST_F(FieldClientTest, ObserversHearTheAppsOwnWritesOutsideTheLock) {
  std::vector<RecordKey> seen;
  const uint64_t id = client->add_observer({.records_changed = [&](const std::vector<RecordKey>& keys) {
    seen.insert(seen.end(), keys.begin(), keys.end());
    // Calling back into the client from an observer must not deadlock.
    EXPECT_TRUE(client->todays_visits().is_ok());
  }});
  auto v = client->check_in({.account_id = account});
  ASSERT_OK(v);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].entity, EntityId::kVisit);
  EXPECT_EQ(seen[0].id.to_string(), *v);
  (void)client->check_in({.account_id = "bad"});
  EXPECT_EQ(seen.size(), 1u);  // refused writes are silent
  client->remove_observer(id);
  ASSERT_OK(client->check_in({.account_id = account}));
  EXPECT_EQ(seen.size(), 1u);
}

TEST_F(FieldClientTest, ConcurrentWritersAndReaders) {
  constexpr int kThreads = 4, kPerThread = 25;
  std::atomic<int> notified{0};
  client->add_observer({.records_changed = [&](const std::vector<RecordKey>&) { ++notified; }});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_TRUE(client->check_in({.account_id = account}).is_ok());
        EXPECT_TRUE(client->visits_of_account(account).is_ok());
        EXPECT_TRUE(client->sync_status().is_ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  auto visits = client->visits_of_account(account);
  ASSERT_OK(visits);
  EXPECT_EQ(visits->size(), size_t{kThreads * kPerThread});
  EXPECT_EQ(pending(*client), size_t{1 + kThreads * kPerThread});
  EXPECT_EQ(notified.load(), kThreads * kPerThread);
}

TEST_F(FieldClientTest, SyncStatusOffline) {
  auto st = client->sync_status();
  ASSERT_OK(st);
  EXPECT_EQ(st->pending_txns, 1u);  // the account from SetUp
  EXPECT_FALSE(st->connected);
  EXPECT_FALSE(st->last_synced_at_ms.has_value());
  auto conflicts = client->conflicts();
  ASSERT_OK(conflicts);
  EXPECT_TRUE(conflicts->empty());
  auto json = client->export_json();
  ASSERT_OK(json);
  EXPECT_NE(json->find("Bäckerei Müller"), std::string::npos);
}

// ---- with a server

// Tokens to principals; a token in `revoked` belongs to a device head office revoked. Thread-safe: the
// network tests' server threads call it.
using testing_support::TokenAuth;

constexpr NodeId kHeadOfficeNode = 77;

class ServerWorld {
 public:
  ServerWorld() {
    auth.tokens["token-alice"] = Principal{"alice", Role::kRep, {"t-north"}, {}};
    auth.tokens["token-bob"] = Principal{"bob", Role::kRep, {"t-north"}, {}};
    auth.tokens["token-ho"] = Principal{"ho", Role::kHeadOffice, {}, {}};
    server = std::make_unique<SyncServer>(store, auth, ServerConfig{});
  }

  void connect(FieldClient& c) {
    const SessionId id = next_session++;
    sessions[id] = &c;
    server->on_connect(id, clock.now);
    c.engine().connected(clock.now);
    pump();
  }
  void disconnect(FieldClient& c) {
    for (auto it = sessions.begin(); it != sessions.end(); ++it) {
      if (it->second != &c) continue;
      server->on_disconnect(it->first);
      c.engine().disconnected(clock.now);
      sessions.erase(it);
      return;
    }
  }
  // Moves encoded frames both ways until nothing moves, then lets every client dispatch its events.
  void pump() {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (auto& [id, c] : sessions) {
        for (std::vector<uint8_t>& f : c->engine().take_frames()) {
          moved = true;
          auto m = codec::decode(f);
          ASSERT_TRUE(m.is_ok()) << m.status().to_string();
          server->on_message(id, *m, clock.now);
        }
      }
      for (SyncServer::Outgoing& o : server->take_outgoing()) {
        moved = true;
        auto it = sessions.find(o.session);
        if (it != sessions.end()) it->second->engine().frame(codec::encode(o.message), clock.now);
      }
      if (!moved) break;
    }
    for (auto& [id, c] : sessions) c->dispatch_events();
  }
  // A head-office write through SyncServer::apply_local (the catalogue, or booking a rep's calendar).
  void head_office_write(EntityId entity, RecordId id, std::vector<std::pair<uint16_t, Value>> fields) {
    ClientTxn txn;
    txn.node = kHeadOfficeNode;
    txn.node_seq = ++ho_seq;
    txn.created_at_ms = clock.now;
    Hlc hlc = make_hlc(clock.now, 0);
    Change create{ChangeOp::kCreate, entity, id};
    create.version = Version{hlc++, kHeadOfficeNode};
    txn.changes.push_back(create);
    for (auto& [field, value] : fields) {
      Change c{ChangeOp::kSet, entity, id, field};
      c.value = std::move(value);
      c.version = Version{hlc++, kHeadOfficeNode};
      txn.changes.push_back(std::move(c));
    }
    protocol::TxnResult r =
        server->apply_local(txn, Principal{"ho", Role::kHeadOffice, {}, {}}, clock.now).value();
    ASSERT_EQ(r.outcome, protocol::TxnOutcome::kApplied) << r.message;
    pump();
  }

  TestClock clock;
  MemoryCentralStore store;
  TokenAuth auth;
  std::unique_ptr<SyncServer> server;
  std::map<SessionId, FieldClient*> sessions;
  SessionId next_session = 1;
  uint64_t ho_seq = 0;
  RecordIdGenerator ids{kHeadOfficeNode};
};

TEST(FieldClientSync, SecondDeviceSeesTheFirstsVisitAndLastSyncIsRecorded) {
  ServerWorld w;
  const std::string alice_path = temp_file("alice");
  auto alice = open_client("alice", w.clock, alice_path);
  auto bob = open_client("bob", w.clock);
  ASSERT_TRUE(alice && bob);
  auto account = alice->create_account({.name = "Müller", .territory_id = "t-north"});
  ASSERT_OK(account);
  auto visit = alice->check_in({.account_id = *account, .latitude = 54.3, .longitude = 10.1});
  ASSERT_OK(visit);
  ASSERT_TRUE(alice->add_visit_note(*visit, "offline note"));
  EXPECT_EQ(pending(*alice), 3u);

  int synced = 0;
  alice->add_observer({.synced = [&] { ++synced; }});
  w.connect(*alice);
  EXPECT_EQ(pending(*alice), 0u);
  EXPECT_GE(synced, 1);
  auto st = alice->sync_status();
  ASSERT_OK(st);
  EXPECT_TRUE(st->connected);
  EXPECT_EQ(st->last_synced_at_ms, w.clock.now);
  const int64_t first_sync = w.clock.now;

  std::vector<RecordKey> changed;
  uint64_t progress_total = 0;
  bob->add_observer(
      {.records_changed =
           [&](const std::vector<RecordKey>& k) { changed.insert(changed.end(), k.begin(), k.end()); },
       .sync_progress = [&](uint64_t, uint64_t total) { progress_total = total; }});
  w.connect(*bob);  // bootstrap
  EXPECT_GE(progress_total, 2u);
  auto history = bob->visits_of_account(*account);
  ASSERT_OK(history);
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ(history->front().id, *visit);
  EXPECT_EQ(history->front().notes, "offline note");
  EXPECT_EQ(history->front().rep_id, "alice");

  // Live: alice checks out while both are connected; bob's observer hears about it.
  changed.clear();
  w.clock.now += kHour;
  ASSERT_TRUE(alice->check_out(*visit, "order_taken"));
  w.pump();
  EXPECT_EQ(bob->visit(*visit)->outcome, "order_taken");
  ASSERT_FALSE(changed.empty());
  EXPECT_EQ(changed.back().id.to_string(), *visit);

  // Both replicas export the same bytes.
  EXPECT_EQ(*alice->export_json(), *bob->export_json());

  // "Last synced" is the time of the latest full sync and survives closing the app: the check-out's ack at
  // first_sync + 1 h emptied the outbox while caught up.
  const int64_t second_sync = w.clock.now;
  ASSERT_GT(second_sync, first_sync);
  EXPECT_EQ(alice->sync_status()->last_synced_at_ms, second_sync);
  w.disconnect(*alice);
  alice.reset();
  w.clock.now += kHour;
  alice = open_client("alice", w.clock, alice_path);
  ASSERT_TRUE(alice);
  st = alice->sync_status();
  ASSERT_OK(st);
  EXPECT_FALSE(st->connected);
  EXPECT_EQ(st->last_synced_at_ms, second_sync);
}

TEST(FieldClientSync, OrdersFromSyncedProductsAndPriceLists) {
  ServerWorld w;
  auto alice = open_client("alice", w.clock);
  ASSERT_TRUE(alice);
  const RecordId flour = w.ids.next(w.clock.now), oven = w.ids.next(w.clock.now),
                 old = w.ids.next(w.clock.now);
  w.head_office_write(EntityId::kProduct, flour,
                      {{1, Value::text("FL-1")}, {2, Value::text("Flour")}, {4, Value::boolean(true)}});
  w.head_office_write(EntityId::kProduct, oven,
                      {{1, Value::text("OV-1")}, {2, Value::text("Oven")}, {4, Value::boolean(true)}});
  w.head_office_write(EntityId::kProduct, old,
                      {{1, Value::text("OLD")}, {2, Value::text("Gone")}, {4, Value::boolean(false)}});
  w.head_office_write(EntityId::kPriceListEntry, w.ids.next(w.clock.now),
                      {{1, Value::text(flour.to_string())},
                       {2, Value::text("std")},
                       {3, Value::integer(199)},
                       {4, Value::text("EUR")}});
  w.head_office_write(EntityId::kPriceListEntry, w.ids.next(w.clock.now),
                      {{1, Value::text(flour.to_string())},
                       {2, Value::text("std")},
                       {3, Value::integer(99)},
                       {4, Value::text("EUR")},
                       {6, Value::integer(kStart - kDay)}});
  w.connect(*alice);  // bootstrap the catalogue
  auto account = alice->create_account({.name = "Müller", .territory_id = "t-north"});
  ASSERT_OK(account);

  auto order = alice->draft_order(*account, "EUR");
  ASSERT_OK(order);
  auto l1 = alice->add_line(*order, {.product_id = flour.to_string(), .quantity = 3, .discount_bp = 250});
  ASSERT_OK(l1);
  auto l2 =
      alice->add_line(*order, {.product_id = oven.to_string(), .quantity = 1, .unit_price_cents = 250'000});
  ASSERT_OK(l2);
  auto l3 = alice->add_line(*order, {.product_id = oven.to_string(), .quantity = 2, .unit_price_cents = 10});
  ASSERT_OK(l3);
  ASSERT_TRUE(alice->change_line(*l2, {.quantity = 2, .discount_bp = 1000}));
  ASSERT_TRUE(alice->remove_line(*l3));
  ASSERT_TRUE(alice->change_line(*l1, {.note = "gift wrap"}));
  EXPECT_EQ(alice->order(*order)->lines[0].note, "gift wrap");
  ASSERT_TRUE(alice->change_line(*l1, {.note = "rush"}));
  EXPECT_EQ(alice->order(*order)->lines[0].note, "rush");
  ASSERT_TRUE(alice->change_line(*l1, {.note = ""}));  // cleared
  EXPECT_EQ(alice->order(*order)->lines[0].note, "");
  EXPECT_REFUSED(*alice, alice->change_line(*l1, {.note = std::string(100'000, 'x')}),
                 ErrorCode::kValueInvalid);

  auto o = alice->order(*order);
  ASSERT_OK(o);
  ASSERT_EQ(o->lines.size(), 2u);
  EXPECT_EQ(o->lines[0].unit_price_cents, 199);  // the valid price, not the expired 99
  EXPECT_EQ(o->lines[0].net_cents, 582);
  EXPECT_EQ(o->lines[1].net_cents, 450'000);
  EXPECT_EQ(o->gross_cents, 597 + 500'000);
  EXPECT_EQ(o->discount_cents, 15 + 50'000);
  EXPECT_EQ(o->total_cents, 582 + 450'000);

  EXPECT_REFUSED(*alice, alice->add_line(*order, {.product_id = oven.to_string()}),
                 ErrorCode::kRecordNotFound);
  EXPECT_REFUSED(*alice, alice->add_line(*order, {.product_id = old.to_string(), .unit_price_cents = 1}),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*alice, alice->add_line(*order, {.product_id = flour.to_string(), .quantity = 0}),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*alice, alice->add_line(*order, {.product_id = flour.to_string(), .discount_bp = 10'001}),
                 ErrorCode::kValueInvalid);
  EXPECT_REFUSED(*alice, alice->draft_order(*account, "euro"), ErrorCode::kValueInvalid);
  auto empty = alice->draft_order(*account, "CHF");
  ASSERT_OK(empty);
  EXPECT_REFUSED(*alice, alice->submit_order(*empty), ErrorCode::kInvalidArgument);
  EXPECT_REFUSED(*alice, alice->add_line(*empty, {.product_id = flour.to_string()}),
                 ErrorCode::kRecordNotFound);

  auto open = alice->open_orders();
  ASSERT_OK(open);
  EXPECT_EQ(open->size(), 2u);
  ASSERT_TRUE(alice->submit_order(*order));
  EXPECT_EQ(alice->order(*order)->status, "submitted");
  EXPECT_REFUSED(*alice, alice->submit_order(*order), ErrorCode::kInvalidTransition);
  w.pump();
  EXPECT_EQ(pending(*alice), 0u);
  auto rejections = alice->rejections();
  ASSERT_OK(rejections);
  EXPECT_TRUE(rejections->empty());
  open = alice->open_orders();
  ASSERT_OK(open);
  ASSERT_EQ(open->size(), 2u);
  EXPECT_EQ(open->front().total_cents, 582 + 450'000);

  // An order with its lines in one transaction; one bad line and nothing of it is written.
  const size_t before = pending(*alice);
  auto whole = alice->draft_order_with_lines(*account, "EUR",
                                             {{.product_id = flour.to_string(), .quantity = 10},
                                              {.product_id = oven.to_string(), .unit_price_cents = 5}});
  ASSERT_OK(whole);
  EXPECT_EQ(pending(*alice), before + 1);
  EXPECT_EQ(alice->order(*whole)->total_cents, 10 * 199 + 5);
  EXPECT_REFUSED(*alice,
                 alice->draft_order_with_lines(
                     *account, "EUR", {{.product_id = flour.to_string()}, {.product_id = oven.to_string()}}),
                 ErrorCode::kRecordNotFound);
  open = alice->open_orders();
  ASSERT_OK(open);
  EXPECT_EQ(open->size(), 3u);
}

TEST(FieldClientSync, SchedulingConflictFromTheServerIsListedAndObserved) {
  ServerWorld w;
  auto alice = open_client("alice", w.clock);
  ASSERT_TRUE(alice);
  w.connect(*alice);
  // Offline, alice books 10:00-11:00; meanwhile head office books her 10:30-11:30.
  w.disconnect(*alice);
  ASSERT_OK(
      alice->create_event({.title = "mine", .start_at_ms = kStart + kHour, .end_at_ms = kStart + 2 * kHour}));
  w.head_office_write(EntityId::kCalendarEvent, w.ids.next(w.clock.now),
                      {{1, Value::text("alice")},
                       {3, Value::text("training")},
                       {4, Value::integer(kStart + kHour + kHour / 2)},
                       {5, Value::integer(kStart + 2 * kHour + kHour / 2)},
                       {6, Value::text("scheduled")}});
  std::vector<ConflictRecord> heard;
  alice->add_observer({.conflict = [&](const ConflictRecord& c) { heard.push_back(c); }});
  w.connect(*alice);
  auto conflicts = alice->conflicts();
  ASSERT_OK(conflicts);
  ASSERT_EQ(conflicts->size(), 1u);
  EXPECT_EQ(conflicts->front().kind, ConflictKind::kScheduling);
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_EQ(heard.front().kind, ConflictKind::kScheduling);
  auto agenda = alice->agenda_today();
  ASSERT_OK(agenda);
  EXPECT_EQ(agenda->size(), 2u);  // both kept
}

TEST(FieldClientSync, RejectionKeepsTheReasonAndIsObserved) {
  ServerWorld w;
  auto alice = open_client("alice", w.clock);
  ASSERT_TRUE(alice);
  // A territory alice is not assigned to: the server refuses it (out of scope) and rolls it back.
  auto account = alice->create_account({.name = "Far away", .territory_id = "t-south"});
  ASSERT_OK(account);
  std::vector<Rejection> heard;
  alice->add_observer({.rejection = [&](const Rejection& r) { heard.push_back(r); }});
  w.connect(*alice);
  auto rejections = alice->rejections();
  ASSERT_OK(rejections);
  ASSERT_EQ(rejections->size(), 1u);
  EXPECT_EQ(rejections->front().reason, ErrorCode::kOutOfScope);
  EXPECT_FALSE(rejections->front().message.empty());
  EXPECT_EQ(heard.size(), 1u);
  EXPECT_EQ(alice->account(*account).status().code(), ErrorCode::kRecordNotFound);
  EXPECT_EQ(pending(*alice), 0u);
}

TEST(FieldClientSync, RejectedTransactionsDoNotBlockTheRestOfTheOutbox) {
  ServerWorld w;
  auto alice = open_client("alice", w.clock);
  ASSERT_TRUE(alice);
  // Offline, in outbox order: a poisoned transaction first (a territory alice is not assigned to), a valid
  // one, a second poisoned one in the middle (a rep may not move an account), then three valid ones.
  auto far = alice->create_account({.name = "Far away", .territory_id = "t-south"});
  ASSERT_OK(far);
  auto near = alice->create_account({.name = "Near", .territory_id = "t-north"});
  ASSERT_OK(near);
  ASSERT_TRUE(alice->edit_account(*near, {.territory_id = "t-south"}));
  auto visit = alice->check_in({.account_id = *near});
  ASSERT_OK(visit);
  ASSERT_TRUE(alice->add_visit_note(*visit, "after the rejections"));
  ASSERT_TRUE(alice->edit_account(*near, {.phone = "+49 3"}));
  EXPECT_EQ(pending(*alice), 6u);

  w.connect(*alice);
  EXPECT_EQ(pending(*alice), 0u);
  auto rejections = alice->rejections();
  ASSERT_OK(rejections);
  ASSERT_EQ(rejections->size(), 2u);
  EXPECT_EQ((*rejections)[0].reason, ErrorCode::kOutOfScope);
  EXPECT_EQ((*rejections)[0].node_seq, 1u);
  EXPECT_EQ((*rejections)[1].reason, ErrorCode::kPermissionDenied);
  EXPECT_EQ((*rejections)[1].node_seq, 3u);
  // The server applied every valid transaction, none of the poisoned ones.
  std::set<uint64_t> applied;
  for (const ServerTxn& t : w.store.log())
    if (t.origin_node == alice->node()) applied.insert(t.origin_node_seq);
  EXPECT_EQ(applied, (std::set<uint64_t>{2, 4, 5, 6}));
  EXPECT_FALSE(w.store.load(EntityId::kAccount, *RecordId::parse(*far)).value().has_value());
  auto central = w.store.load(EntityId::kAccount, *RecordId::parse(*near)).value();
  ASSERT_TRUE(central.has_value());
  EXPECT_EQ(central->field(2)->value.as_text(), "t-north");
  EXPECT_EQ(central->field(5)->value.as_text(), "+49 3");
  EXPECT_TRUE(w.store.load(EntityId::kVisit, *RecordId::parse(*visit)).value().has_value());
  // Locally: the rejected writes are undone, the later ones kept.
  EXPECT_EQ(alice->account(*far).status().code(), ErrorCode::kRecordNotFound);
  auto local = alice->account(*near);
  ASSERT_OK(local);
  EXPECT_EQ(local->account.territory_id, "t-north");
  EXPECT_EQ(local->account.phone, "+49 3");
  EXPECT_EQ(alice->visit(*visit)->notes, "after the rejections");
}

TEST(FieldClientSync, OnlyHeadOfficeMovesAnAccountToAnotherTerritory) {
  ServerWorld w;
  auto alice = open_client("alice", w.clock);
  auto ho = open_client("ho", w.clock, "", Role::kHeadOffice);
  ASSERT_TRUE(alice && ho);
  auto account = alice->create_account({.name = "Müller", .territory_id = "t-north"});
  ASSERT_OK(account);
  w.connect(*alice);
  // Bad values are refused at the API, nothing written.
  EXPECT_REFUSED(*alice, alice->edit_account(*account, {.territory_id = " "}), ErrorCode::kNullViolation);
  EXPECT_REFUSED(*alice, alice->edit_account(*account, {.territory_id = std::string(100, 't')}),
                 ErrorCode::kValueInvalid);
  // A rep's move is a valid value: written locally, then the server decides and undoes it.
  ASSERT_TRUE(alice->edit_account(*account, {.territory_id = "t-east"}));
  EXPECT_EQ(alice->account(*account)->account.territory_id, "t-east");
  w.pump();
  EXPECT_EQ(pending(*alice), 0u);
  auto rejections = alice->rejections();
  ASSERT_OK(rejections);
  ASSERT_EQ(rejections->size(), 1u);
  EXPECT_EQ(rejections->front().reason, ErrorCode::kPermissionDenied) << rejections->front().message;
  EXPECT_EQ(alice->account(*account)->account.territory_id, "t-north");

  // Head office moves it: applied, and it leaves alice's replica (not her territory any more).
  w.connect(*ho);
  ASSERT_OK(ho->account(*account));
  ASSERT_TRUE(ho->edit_account(*account, {.territory_id = "t-east"}));
  w.pump();
  EXPECT_EQ(pending(*ho), 0u);
  EXPECT_TRUE(ho->rejections()->empty());
  auto central = w.store.load(EntityId::kAccount, *RecordId::parse(*account)).value();
  ASSERT_TRUE(central.has_value());
  EXPECT_EQ(central->field(2)->value.as_text(), "t-east");
  EXPECT_EQ(alice->account(*account).status().code(), ErrorCode::kRecordNotFound);
}

TEST(FieldClientSync, InboxListsNewestFirstMarksSeenAndCountsUnread) {
  ServerWorld w;
  const std::string path = temp_file("alice");
  auto alice = open_client("alice", w.clock, path);
  ASSERT_TRUE(alice);
  auto counts = alice->unread_counts();
  ASSERT_OK(counts);
  EXPECT_EQ(counts->unread_conflicts, 0u);
  EXPECT_EQ(counts->unread_rejections, 0u);
  w.connect(*alice);
  w.disconnect(*alice);
  // Offline: two bookings that head office overlaps meanwhile, and two writes the server refuses.
  ASSERT_OK(
      alice->create_event({.title = "a", .start_at_ms = kStart + kHour, .end_at_ms = kStart + 2 * kHour}));
  ASSERT_OK(alice->create_event(
      {.title = "b", .start_at_ms = kStart + 5 * kHour, .end_at_ms = kStart + 6 * kHour}));
  ASSERT_OK(alice->create_account({.name = "Far 1", .territory_id = "t-south"}));
  ASSERT_OK(alice->create_account({.name = "Far 2", .territory_id = "t-west"}));
  for (int64_t start : {kStart + kHour + kHour / 2, kStart + 5 * kHour + kHour / 2})
    w.head_office_write(EntityId::kCalendarEvent, w.ids.next(w.clock.now),
                        {{1, Value::text("alice")},
                         {3, Value::text("training")},
                         {4, Value::integer(start)},
                         {5, Value::integer(start + kHour)},
                         {6, Value::text("scheduled")}});
  w.connect(*alice);

  counts = alice->unread_counts();
  ASSERT_OK(counts);
  EXPECT_EQ(counts->unread_conflicts, 2u);
  EXPECT_EQ(counts->unread_rejections, 2u);
  auto conflicts = alice->conflict_inbox();
  ASSERT_OK(conflicts);
  ASSERT_EQ(conflicts->size(), 2u);
  EXPECT_GT((*conflicts)[0].inbox_id, (*conflicts)[1].inbox_id);  // newest first
  EXPECT_FALSE((*conflicts)[0].seen);
  EXPECT_EQ((*conflicts)[0].conflict.kind, ConflictKind::kScheduling);
  auto rejections = alice->rejection_inbox();
  ASSERT_OK(rejections);
  ASSERT_EQ(rejections->size(), 2u);
  EXPECT_EQ((*rejections)[0].rejection.reason, ErrorCode::kOutOfScope);
  EXPECT_FALSE((*rejections)[0].rejection.message.empty());
  EXPECT_FALSE((*rejections)[0].rejection.changes.empty());
  EXPECT_GT((*rejections)[0].rejection.node_seq, (*rejections)[1].rejection.node_seq);

  // The older conflict seen: one unread left, listed alone with unread_only.
  ASSERT_TRUE(alice->mark_conflicts_seen((*conflicts)[1].inbox_id));
  counts = alice->unread_counts();
  EXPECT_EQ(counts->unread_conflicts, 1u);
  auto unread = alice->conflict_inbox(true);
  ASSERT_OK(unread);
  ASSERT_EQ(unread->size(), 1u);
  EXPECT_EQ(unread->front().inbox_id, (*conflicts)[0].inbox_id);
  auto all = alice->conflict_inbox();
  ASSERT_OK(all);
  EXPECT_TRUE((*all)[1].seen);
  ASSERT_TRUE(alice->mark_rejections_seen((*rejections)[0].inbox_id));
  EXPECT_TRUE(alice->rejection_inbox(true)->empty());
  EXPECT_EQ(alice->unread_counts()->unread_rejections, 0u);
  EXPECT_EQ(alice->mark_conflicts_seen(0).code(), ErrorCode::kInvalidArgument);

  // The flags are in the file.
  w.disconnect(*alice);
  alice.reset();
  alice = open_client("alice", w.clock, path);
  ASSERT_TRUE(alice);
  counts = alice->unread_counts();
  ASSERT_OK(counts);
  EXPECT_EQ(counts->unread_conflicts, 1u);
  EXPECT_EQ(counts->unread_rejections, 0u);
}

// ---- revocation: the replica is erased

bool replica_files_gone(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"})
    if (std::filesystem::exists(path + suffix)) return false;
  return true;
}

FieldClient::Options options_for(const std::string& user, TestClock& clock) {
  FieldClient::Options o;
  o.user = user;
  o.token = "token-" + user;
  o.now_ms = [&clock] { return clock.now; };
  o.synchronous_full = false;
  return o;
}

TEST(FieldClientRevocation, RevokedDeviceErasesItsReplicaAndEveryCallFailsTyped) {
  ServerWorld w;
  const std::string path = temp_file("alice");
  auto alice = open_client("alice", w.clock, path);
  ASSERT_TRUE(alice);
  auto account = alice->create_account({.name = "Müller", .territory_id = "t-north"});
  ASSERT_OK(account);
  w.connect(*alice);
  EXPECT_EQ(pending(*alice), 0u);
  w.disconnect(*alice);
  // Written offline and never synced: lost with the replica, by design (the phone is gone).
  auto visit = alice->check_in({.account_id = *account});
  ASSERT_OK(visit);
  EXPECT_EQ(pending(*alice), 1u);
  ASSERT_TRUE(std::filesystem::exists(path));
  ASSERT_TRUE(std::filesystem::exists(path + "-wal"));

  std::vector<Status> errors, erased;
  Status seen_from_observer;
  alice->add_observer({.error = [&](const Status& s) { errors.push_back(s); },
                       .erased =
                           [&](const Status& s) {
                             erased.push_back(s);
                             // No lock is held: calling back in works, and already fails typed.
                             seen_from_observer = alice->pending_count().status();
                           }});
  w.auth.revoked.insert("token-alice");
  w.connect(*alice);

  ASSERT_EQ(erased.size(), 1u);
  EXPECT_EQ(erased[0].code(), ErrorCode::kDeviceRevoked);
  EXPECT_EQ(erased[0].message(), "device revoked by head office: local replica erased");
  EXPECT_EQ(seen_from_observer.code(), ErrorCode::kDeviceRevoked);
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.back().code(), ErrorCode::kDeviceRevoked);
  EXPECT_TRUE(alice->erased());
  EXPECT_TRUE(replica_files_gone(path));
  EXPECT_TRUE(std::filesystem::exists(path + ".revoked"));

  // Every call fails with the same typed error; none of them brings a file back.
  const ErrorCode revoked = ErrorCode::kDeviceRevoked;
  EXPECT_EQ(alice->create_account({.name = "x", .territory_id = "t-north"}).status().code(), revoked);
  EXPECT_EQ(alice->edit_account(*account, {.name = "y"}).code(), revoked);
  EXPECT_EQ(alice->accounts_by_prefix("").status().code(), revoked);
  EXPECT_EQ(alice->accounts_in_territory("t-north").status().code(), revoked);
  EXPECT_EQ(alice->account(*account).status().code(), revoked);
  EXPECT_EQ(alice->create_contact({.account_id = *account, .name = "z"}).status().code(), revoked);
  EXPECT_EQ(alice->check_in({.account_id = *account}).status().code(), revoked);
  EXPECT_EQ(alice->add_visit_note(*visit, "n").code(), revoked);
  EXPECT_EQ(alice->check_out(*visit, "other").code(), revoked);
  EXPECT_EQ(alice->visit(*visit).status().code(), revoked);
  EXPECT_EQ(alice->visits_of_account(*account).status().code(), revoked);
  EXPECT_EQ(alice->todays_visits().status().code(), revoked);
  EXPECT_EQ(alice->draft_order(*account).status().code(), revoked);
  EXPECT_EQ(alice->open_orders().status().code(), revoked);
  EXPECT_EQ(
      alice->create_event({.title = "t", .start_at_ms = kStart, .end_at_ms = kStart + kHour}).status().code(),
      revoked);
  EXPECT_EQ(alice->agenda_today().status().code(), revoked);
  EXPECT_EQ(alice->agenda_week().status().code(), revoked);
  EXPECT_EQ(alice->create_opportunity({.account_id = *account, .name = "o"}).status().code(), revoked);
  EXPECT_EQ(alice->pipeline().status().code(), revoked);
  EXPECT_EQ(alice->pending_count().status().code(), revoked);
  EXPECT_EQ(alice->sync_status().status().code(), revoked);
  EXPECT_EQ(alice->conflicts().status().code(), revoked);
  EXPECT_EQ(alice->rejections().status().code(), revoked);
  EXPECT_EQ(alice->conflict_inbox().status().code(), revoked);
  EXPECT_EQ(alice->rejection_inbox().status().code(), revoked);
  EXPECT_EQ(alice->unread_counts().status().code(), revoked);
  EXPECT_EQ(alice->mark_conflicts_seen(1).code(), revoked);
  EXPECT_EQ(alice->mark_rejections_seen(1).code(), revoked);
  EXPECT_EQ(alice->export_json().status().code(), revoked);
  EXPECT_TRUE(replica_files_gone(path));
  alice->dispatch_events();
  EXPECT_EQ(erased.size(), 1u);  // once

  // Reopening does not resurrect anything: the marker keeps the path refused.
  w.disconnect(*alice);
  alice.reset();
  auto again = FieldClient::open(path, options_for("alice", w.clock));
  EXPECT_EQ(again.status().code(), revoked);
  EXPECT_TRUE(replica_files_gone(path));
  // Once head office has registered the device again, the app starts over with an empty replica.
  ASSERT_TRUE(FieldClient::clear_revocation(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".revoked"));
  auto fresh = open_client("alice", w.clock, path);
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(fresh->accounts_by_prefix("")->empty());
  EXPECT_EQ(pending(*fresh), 0u);
}

TEST(FieldClientRevocation, OpenFinishesAnEraseACrashInterrupted) {
  TestClock clock;
  const std::string path = temp_file("alice");
  {
    auto c = open_client("alice", clock, path);
    ASSERT_TRUE(c);
    ASSERT_OK(c->create_account({.name = "Müller", .territory_id = "t-north"}));
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  // A crash right after the marker was made durable, before any file was deleted.
  { std::ofstream(path + ".revoked") << "device revoked\n"; }
  auto r = FieldClient::open(path, options_for("alice", clock));
  EXPECT_EQ(r.status().code(), ErrorCode::kDeviceRevoked);
  EXPECT_TRUE(replica_files_gone(path));
  EXPECT_EQ(FieldClient::open(path, options_for("alice", clock)).status().code(), ErrorCode::kDeviceRevoked);
  EXPECT_TRUE(replica_files_gone(path));
}

TEST(FieldClientRevocation, EraseIsSafeWhileOtherThreadsUseTheClient) {
  ServerWorld w;
  const std::string path = temp_file("alice");
  auto alice = open_client("alice", w.clock, path);
  ASSERT_TRUE(alice);
  auto account = alice->create_account({.name = "Müller", .territory_id = "t-north"});
  ASSERT_OK(account);
  w.connect(*alice);
  w.disconnect(*alice);
  w.auth.revoked.insert("token-alice");

  std::atomic<int> unexpected{0}, ok_after_erase{0}, calls{0};
  auto worker = [&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    int after = 0;
    while (after < 20 && std::chrono::steady_clock::now() < deadline) {
      const bool was_erased = alice->erased();
      const Status results[] = {alice->check_in({.account_id = *account}).status(),
                                alice->visits_of_account(*account).status(), alice->export_json().status(),
                                alice->sync_status().status(), alice->unread_counts().status()};
      for (const Status& s : results) {
        ++calls;
        if (!s.is_ok() && s.code() != ErrorCode::kDeviceRevoked) ++unexpected;
        if (was_erased && s.is_ok()) ++ok_after_erase;
      }
      if (was_erased) ++after;
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back(worker);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  w.connect(*alice);  // Error kDeviceRevoked, then dispatch_events() erases while the workers run
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(alice->erased());
  EXPECT_GT(calls.load(), 0);
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(ok_after_erase.load(), 0);
  EXPECT_TRUE(replica_files_gone(path));
}

// ---- fieldsync-rep
// ---------------------------------------------------------------------------------------------

struct RepRun {
  int exit_code = -1;
  std::string out;
};

RepRun rep(const std::string& args) {
  const std::string cmd = std::string(FIELDSYNC_REP_BIN) + " " + args + " 2>&1";
  RepRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST(FieldsyncRep, CommandsAndStableExport) {
  const std::string db = temp_file("rep");
  const std::string base = "--db " + db + " --user alice ";
  RepRun help = rep("--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* cmd : {"account add", "checkin", "order draft", "event book", "agenda", "pipeline",
                          "export", "inbox", "sync --server", "--not-primary", "--territory"})
    EXPECT_NE(help.out.find(cmd), std::string::npos) << cmd;
  // COMMAND --help: that command's entries only, no replica needed.
  RepRun edit_help = rep("account edit --help");
  EXPECT_EQ(edit_help.exit_code, 0) << edit_help.out;
  EXPECT_NE(edit_help.out.find("account edit --id ID"), std::string::npos) << edit_help.out;
  EXPECT_NE(edit_help.out.find("--territory"), std::string::npos) << edit_help.out;
  EXPECT_EQ(edit_help.out.find("account add"), std::string::npos) << edit_help.out;
  RepRun contact_help = rep("--db " + db + " --user alice contact --help");
  EXPECT_EQ(contact_help.exit_code, 0) << contact_help.out;
  EXPECT_NE(contact_help.out.find("contact add"), std::string::npos) << contact_help.out;
  EXPECT_NE(
      contact_help.out.find("contact edit --id ID [--name N] [--title T] [--email E] [--phone P] [--primary"),
      std::string::npos)
      << contact_help.out;
  RepRun line_help = rep("order line-edit --help");
  EXPECT_NE(line_help.out.find("--note"), std::string::npos) << line_help.out;
  EXPECT_EQ(line_help.out.find("order submit"), std::string::npos) << line_help.out;
  RepRun sync_help = rep("sync --help");
  EXPECT_NE(sync_help.out.find("--stay SECONDS"), std::string::npos) << sync_help.out;
  EXPECT_EQ(rep("accounts --help").out.find("account add"), std::string::npos);  // not a prefix match
  EXPECT_EQ(rep("frobnicate --help").exit_code, 2);
  EXPECT_FALSE(std::filesystem::exists(db));  // help opened nothing

  RepRun acc = rep(base + "account add --name 'Bäckerei Müller' --territory t-north");
  ASSERT_EQ(acc.exit_code, 0) << acc.out;
  const std::string account = trim(acc.out);
  ASSERT_TRUE(RecordId::parse(account).has_value()) << acc.out;
  RepRun visit = rep(base + "checkin --account " + account + " --lat 54.3 --lon 10.1");
  ASSERT_EQ(visit.exit_code, 0) << visit.out;
  const std::string visit_id = trim(visit.out);
  EXPECT_EQ(rep(base + "note --visit " + visit_id + " 'new oven'").exit_code, 0);
  EXPECT_EQ(rep(base + "checkout --visit " + visit_id + " --outcome follow_up").exit_code, 0);
  RepRun book = rep(base + "event book --title Demo --start 2030-01-07T10:00 --end 2030-01-07T11:00");
  ASSERT_EQ(book.exit_code, 0) << book.out;
  RepRun clash =
      rep(base + "event book --title Clash --start 2030-01-07T10:30:00Z --end 2030-01-07T12:00:00Z");
  ASSERT_EQ(clash.exit_code, 0) << clash.out;
  EXPECT_NE(clash.out.find("overlaps"), std::string::npos) << clash.out;
  RepRun opp = rep(base + "opp add --account " + account + " --name Ovens --amount 500050");
  ASSERT_EQ(opp.exit_code, 0) << opp.out;
  RepRun pipeline = rep(base + "pipeline");
  EXPECT_NE(pipeline.out.find("500050"), std::string::npos) << pipeline.out;
  RepRun accounts = rep(base + "accounts --prefix bäck");
  EXPECT_NE(accounts.out.find(account), std::string::npos) << accounts.out;
  RepRun pend = rep(base + "pending");
  EXPECT_EQ(trim(pend.out), "7") << pend.out;
  RepRun contact = rep(base + "contact add --account " + account + " --name Zoe");
  ASSERT_EQ(contact.exit_code, 0) << contact.out;
  EXPECT_EQ(rep(base + "contact edit --id " + trim(contact.out) + " --primary").exit_code, 0);
  EXPECT_NE(rep(base + "account show --id " + account).out.find("primary"), std::string::npos);
  EXPECT_EQ(rep(base + "contact edit --id " + trim(contact.out) + " --not-primary").exit_code, 0);
  EXPECT_EQ(rep(base + "account show --id " + account).out.find("primary"), std::string::npos);
  EXPECT_EQ(rep(base + "contact edit --id " + trim(contact.out) + " --primary --not-primary").exit_code, 2);
  RepRun move = rep(base + "account edit --id " + account + " --territory t-south");
  EXPECT_EQ(move.exit_code, 0) << move.out;  // the server decides (alice is a rep: it will be refused)
  EXPECT_NE(rep(base + "accounts --territory t-south").out.find(account), std::string::npos);
  RepRun inbox = rep(base + "inbox --unread");
  EXPECT_EQ(inbox.exit_code, 0) << inbox.out;
  EXPECT_EQ(trim(inbox.out), "unread\t0 conflicts\t0 rejections") << inbox.out;
  pend = rep(base + "pending");
  EXPECT_EQ(trim(pend.out), "11") << pend.out;

  // Errors: one line, non-zero exit, nothing written.
  RepRun bad = rep(base + "checkout --visit " + visit_id + " --outcome maybe");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_EQ(std::count(bad.out.begin(), bad.out.end(), '\n'), 1) << bad.out;
  EXPECT_NE(bad.out.find("value_invalid"), std::string::npos) << bad.out;
  EXPECT_NE(rep(base + "frobnicate").exit_code, 0);
  EXPECT_NE(rep("--db " + db + " pending").exit_code, 0);  // no --user
  EXPECT_EQ(trim(rep(base + "pending").out), "11");

  RepRun e1 = rep(base + "export");
  RepRun e2 = rep(base + "export");
  ASSERT_EQ(e1.exit_code, 0) << e1.out;
  EXPECT_EQ(e1.out, e2.out);
  EXPECT_EQ(e1.out.front(), '{');
  EXPECT_EQ(e1.out.back(), '\n');
  EXPECT_NE(e1.out.find("\"visit\""), std::string::npos);
  EXPECT_NE(e1.out.find("new oven"), std::string::npos);
  EXPECT_NE(e1.out.find(visit_id), std::string::npos);
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(e1.out, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(parsed.at("visit").as_array().size(), 1u);
  EXPECT_EQ(parsed.at("visit").as_array()[0].at("outcome").as_string(), "follow_up");
  EXPECT_EQ(parsed.at("calendar_event").as_array().size(), 2u);
  // The export of a client opened on the same file is byte-identical.
  TestClock clock;
  auto c = open_client("alice", clock, db);
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->export_json(), e1.out);
}

// Bad usage: exit 2 and one line on stderr naming what is wrong. Options are checked before the replica is
// opened; values (a missing option, a number that is not one) when the command runs.
TEST(FieldsyncRep, UsageErrorsExitTwoWithAMessage) {
  const std::string db = temp_file("rep-usage");
  const std::string base = "--db " + db + " --user alice ";
  auto expect_usage_error = [](const std::string& args, const std::string& message) {
    RepRun r = rep(args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out;
    EXPECT_EQ(r.out.rfind("fieldsync-rep: ", 0), 0u) << args << ": " << r.out;
    EXPECT_NE(r.out.find(message), std::string::npos) << args << ": " << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << args << ": " << r.out;
  };
  expect_usage_error("--frobnicate x pending", "unknown option --frobnicate");       // a global option
  expect_usage_error(base + "pending --frobnicate", "unknown option --frobnicate");  // a command's option
  expect_usage_error(base + "agenda --today", "unknown option --today");  // another command's switch
  expect_usage_error(base + "account add --name X --bogus 1", "unknown option --bogus");
  expect_usage_error(base + "pending --role rep", "unknown option --role");  // global options come first
  expect_usage_error(base + "note --visit v one two", "unexpected argument 'two'");
  expect_usage_error("--db " + db + " --user alice --role boss pending",
                     "--role must be rep, manager or head_office");
  expect_usage_error(base + "--utc-offset east pending", "--utc-offset");
  expect_usage_error(base + "--db", "--db needs a value");
  expect_usage_error(base + "order", "order needs a subcommand");
  expect_usage_error(base + "order frob --order o", "unknown command 'order frob'");
  EXPECT_FALSE(std::filesystem::exists(db));  // no replica was opened
  expect_usage_error(base + "sync --server wss://127.0.0.1:1/sync --stay 0", "--stay");
  expect_usage_error(base + "sync --server wss://127.0.0.1:1/sync --once --stay 5", "not both");
  expect_usage_error(base + "account add --name X", "missing --territory");
  expect_usage_error(base + "order line --order o --product p --qty many", "--qty must be an integer");
}

#ifdef FIELDSYNC_HAVE_SERVER
// ---- over real TLS WebSockets: a NetServer in this process; fieldsync-rep processes and WsClients as
// devices

using testing_support::TestPki;

class NetWorld {
 public:
  NetWorld() {
    auth.tokens["token-alice"] = Principal{"alice", Role::kRep, {"t-north"}, {}};
    auth.tokens["token-bob"] = Principal{"bob", Role::kRep, {"t-north"}, {}};
    server::NetServerOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.cert_pem = TestPki::get().pem.cert_pem;
    o.key_pem = TestPki::get().pem.key_pem;
    o.drain_timeout_ms = 2000;
    o.log = [](const std::string&) {};
    net = std::make_unique<server::NetServer>(store, auth, o);
    Result<uint16_t> p = net->start();
    EXPECT_TRUE(p.is_ok()) << p.status().to_string();
    port = p ? *p : 0;
  }
  ~NetWorld() { stop(); }
  // The store is only read once the server is stopped (it is not thread-safe on its own).
  void stop() {
    if (net) net->stop();
    net.reset();
  }
  std::string url() const { return "wss://127.0.0.1:" + std::to_string(port) + "/sync"; }
  void revoke(const std::string& token) {
    std::lock_guard lock(auth.mu);
    auth.revoked.insert(token);
  }

  MemoryCentralStore store;
  TokenAuth auth;
  std::unique_ptr<server::NetServer> net;
  uint16_t port = 0;
};

size_t lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST(FieldsyncRepNet, SyncOnceAndStayAgainstARealServer) {
  NetWorld w;
  const std::string db = temp_file("rep-alice");
  const std::string base = "--db " + db + " --user alice --token token-alice ";
  RepRun acc = rep(base + "account add --name 'Net GmbH' --territory t-north");
  ASSERT_EQ(acc.exit_code, 0) << acc.out;
  const std::string account = trim(acc.out);

  RepRun once = rep(base + "sync --server " + w.url() + " --ca " + TestPki::get().ca_file + " --once");
  EXPECT_EQ(once.exit_code, 0) << once.out;
  EXPECT_EQ(trim(once.out), "synced\tpending 0");
  ASSERT_EQ(rep(base + "account edit --id " + account + " --phone '+49 7'").exit_code, 0);
  RepRun stay = rep(base + "sync --server " + w.url() + " --pin " + TestPki::get().pin + " --stay 1");
  EXPECT_EQ(stay.exit_code, 0) << stay.out;
  EXPECT_EQ(trim(stay.out), "synced\tpending 0");
  // Several server URLs: the first answers nothing (a dead instance), the device syncs through the next.
  ASSERT_EQ(rep(base + "account edit --id " + account + " --phone '+49 8'").exit_code, 0);
  RepRun failover = rep(base + "sync --server wss://127.0.0.1:1/sync," + w.url() + " --ca " +
                        TestPki::get().ca_file + " --once");
  EXPECT_EQ(failover.exit_code, 0) << failover.out;
  EXPECT_EQ(trim(failover.out), "synced\tpending 0");
  EXPECT_EQ(trim(rep(base + "status").out).find("last_synced\t-"), std::string::npos);

  // A second device bootstraps both writes.
  const std::string bob_db = temp_file("rep-bob");
  const std::string bob = "--db " + bob_db + " --user bob --token token-bob ";
  RepRun bob_sync = rep(bob + "sync --server " + w.url() + " --ca " + TestPki::get().ca_file);
  EXPECT_EQ(bob_sync.exit_code, 0) << bob_sync.out;
  RepRun bob_export = rep(bob + "export");
  EXPECT_NE(bob_export.out.find(account), std::string::npos) << bob_export.out;
  EXPECT_NE(bob_export.out.find("+49 8"), std::string::npos) << bob_export.out;

  w.stop();
  auto central = w.store.load(EntityId::kAccount, *RecordId::parse(account)).value();
  ASSERT_TRUE(central.has_value());
  EXPECT_EQ(central->field(5)->value.as_text(), "+49 8");
}

// A big push and a big bootstrap show their progress on stderr; not on a terminal (here a pipe) as plain
// lines, each phase ending with a closing line, and stdout's one line unchanged.
TEST(FieldsyncRepNet, SyncShowsProgressOfABigPushAndBootstrapAsPlainLines) {
  NetWorld w;
  const std::string db = temp_file("rep-backlog");
  constexpr int kAccounts = 1200;  // above the progress display's 1,000 records; three bootstrap pages
  {
    FieldClient::Options o;
    o.user = "alice";
    o.token = "token-alice";
    o.synchronous_full = false;  // writing the backlog is not what is tested
    auto c = FieldClient::open(db, o);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    for (int i = 0; i < kAccounts; ++i) {
      NewAccount a;
      a.name = "Backlog " + std::to_string(i);
      a.territory_id = "t-north";
      ASSERT_TRUE((*c)->create_account(a).is_ok());
    }
  }
  const std::string sync = "sync --server " + w.url() + " --ca " + TestPki::get().ca_file;
  const std::string all = std::to_string(kAccounts) + "/" + std::to_string(kAccounts) + " records, ";

  RepRun push = rep("--db " + db + " --user alice --token token-alice " + sync);
  EXPECT_EQ(push.exit_code, 0) << push.out;
  EXPECT_NE(push.out.find("push: " + all), std::string::npos) << push.out;
  EXPECT_NE(push.out.find(" MB in "), std::string::npos) << push.out;
  EXPECT_EQ(push.out.find("not finished"), std::string::npos) << push.out;
  EXPECT_EQ(push.out.find("bootstrap:"), std::string::npos) << push.out;  // its territory was empty
  EXPECT_EQ(push.out.find('\r'), std::string::npos) << push.out;          // no line rewritten in place
  EXPECT_TRUE(push.out.ends_with("\nsynced\tpending 0\n")) << push.out;

  RepRun boot = rep("--db " + temp_file("rep-new-phone") + " --user bob --token token-bob " + sync);
  EXPECT_EQ(boot.exit_code, 0) << boot.out;
  EXPECT_NE(boot.out.find("bootstrap: " + all), std::string::npos) << boot.out;
  EXPECT_EQ(boot.out.find("push:"), std::string::npos) << boot.out;
  EXPECT_EQ(boot.out.find('\r'), std::string::npos) << boot.out;
  EXPECT_TRUE(boot.out.ends_with("\nsynced\tpending 0\n")) << boot.out;
}

// WsClient::counters(): the sync messages and their payload bytes each way, kept across connections.
TEST(WsClientNet, CountsMessagesAndPayloadBytesEachWay) {
  NetWorld w;
  FieldClient::Options o;
  o.user = "alice";
  o.token = "token-alice";
  auto c = FieldClient::open(temp_file("counters"), o);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  WsClientOptions wo;
  wo.url = w.url();
  wo.ca_file = TestPki::get().ca_file;
  WsClient ws((*c)->engine(), wo);
  EXPECT_EQ(ws.counters().messages_sent, 0u);
  EXPECT_EQ(ws.counters().bytes_received, 0u);

  ASSERT_TRUE((*c)->create_account({.name = "Counted GmbH", .territory_id = "t-north"}).is_ok());
  ASSERT_TRUE(ws.sync_once(std::chrono::seconds(10)).ok()) << ws.last_error().to_string();
  const WsCounters first = ws.counters();
  // At least Hello, the bootstrap request and the push; Welcome, the page and the push's ack.
  EXPECT_GE(first.messages_sent, 3u);
  EXPECT_GE(first.messages_received, 3u);
  EXPECT_GT(first.bytes_sent, 10 * first.messages_sent);  // every message is a FlatBuffer, not a byte
  EXPECT_GT(first.bytes_received, 10 * first.messages_received);

  ASSERT_TRUE((*c)->create_account({.name = "Counted Too GmbH", .territory_id = "t-north"}).is_ok());
  ASSERT_TRUE(ws.sync_once(std::chrono::seconds(10)).ok()) << ws.last_error().to_string();
  const WsCounters second = ws.counters();
  EXPECT_GE(second.messages_sent, first.messages_sent + 2);  // Hello and the push, at least
  EXPECT_GT(second.bytes_sent, first.bytes_sent);
  EXPECT_GT(second.messages_received, first.messages_received);
  EXPECT_GT(second.bytes_received, first.bytes_received);
}

TEST(FieldsyncRepNet, TransportFailuresAreOneLineAndANonZeroExit) {
  NetWorld w;
  const std::string db = temp_file("rep-alice");
  const std::string base = "--db " + db + " --user alice --token token-alice ";
  ASSERT_EQ(rep(base + "account add --name 'Net GmbH' --territory t-north").exit_code, 0);
  const std::string wrong_pin = " --pin " + std::string(64, 'a');

  RepRun pin_once = rep(base + "sync --server " + w.url() + wrong_pin + " --once");
  EXPECT_EQ(pin_once.exit_code, 1) << pin_once.out;
  EXPECT_EQ(lines(pin_once.out), 1u) << pin_once.out;
  EXPECT_NE(pin_once.out.find("pin_mismatch"), std::string::npos) << pin_once.out;

  // --stay with a certificate that can never be accepted ends at once instead of waiting out the stay.
  const auto t0 = std::chrono::steady_clock::now();
  RepRun pin_stay = rep(base + "sync --server " + w.url() + wrong_pin + " --stay 60");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  EXPECT_EQ(pin_stay.exit_code, 1) << pin_stay.out;
  EXPECT_EQ(lines(pin_stay.out), 1u) << pin_stay.out;
  EXPECT_NE(pin_stay.out.find("pin_mismatch"), std::string::npos) << pin_stay.out;

  RepRun untrusted = rep(base + "sync --server " + w.url() + " --once --timeout 10");  // system CAs only
  EXPECT_EQ(untrusted.exit_code, 1) << untrusted.out;
  EXPECT_EQ(lines(untrusted.out), 1u) << untrusted.out;
  EXPECT_NE(untrusted.out.find("certificate"), std::string::npos) << untrusted.out;

  // Nothing listening any more on that port.
  const std::string dead = w.url();
  w.stop();
  RepRun refused_once =
      rep(base + "sync --server " + dead + " --ca " + TestPki::get().ca_file + " --once --timeout 2");
  EXPECT_EQ(refused_once.exit_code, 1) << refused_once.out;
  EXPECT_EQ(lines(refused_once.out), 1u) << refused_once.out;
  EXPECT_NE(refused_once.out.find("connect"), std::string::npos) << refused_once.out;
  RepRun refused_stay = rep(base + "sync --server " + dead + " --ca " + TestPki::get().ca_file + " --stay 1");
  EXPECT_EQ(refused_stay.exit_code, 1) << refused_stay.out;
  EXPECT_EQ(lines(refused_stay.out), 1u) << refused_stay.out;
  EXPECT_NE(refused_stay.out.find("connect"), std::string::npos) << refused_stay.out;
  EXPECT_EQ(rep(base + "sync --server " + dead + " --stay 1 --timeout 2").exit_code, 2);

  EXPECT_EQ(trim(rep(base + "pending").out), "1");  // nothing lost on the way
}

TEST(FieldsyncRepNet, RevokedDeviceErasesItsReplicaAndSaysSo) {
  NetWorld w;
  const std::string db = temp_file("rep-alice");
  const std::string base = "--db " + db + " --user alice --token token-alice ";
  const std::string sync = "sync --server " + w.url() + " --ca " + TestPki::get().ca_file + " --once";
  ASSERT_EQ(rep(base + "account add --name 'Net GmbH' --territory t-north").exit_code, 0);
  ASSERT_EQ(rep(base + sync).exit_code, 0);
  ASSERT_EQ(rep(base + "account add --name 'Offline' --territory t-north").exit_code, 0);
  ASSERT_TRUE(std::filesystem::exists(db));

  w.revoke("token-alice");
  RepRun revoked = rep(base + sync);
  EXPECT_EQ(revoked.exit_code, 3) << revoked.out;
  EXPECT_EQ(revoked.out, "fieldsync-rep: device revoked by head office: local replica erased\n");
  EXPECT_TRUE(replica_files_gone(db));
  RepRun after = rep(base + "accounts");
  EXPECT_EQ(after.exit_code, 3) << after.out;
  EXPECT_EQ(after.out, "fieldsync-rep: device revoked by head office: local replica erased\n");
  EXPECT_TRUE(replica_files_gone(db));
}

TEST(FieldClientNet, AppThreadsWriteWhileTheTransportAppliesFrames) {
  NetWorld w;
  auto open_real = [](const std::string& user) {
    FieldClient::Options o;
    o.user = user;
    o.token = "token-" + user;
    o.synchronous_full = false;
    auto r = FieldClient::open(temp_file(user), std::move(o));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r ? std::move(r.value()) : nullptr;
  };
  auto alice = open_real("alice");
  auto bob = open_real("bob");
  ASSERT_TRUE(alice && bob);
  std::atomic<bool> writing{false};
  std::atomic<int> frames_while_writing{0};
  auto ws_options = [&](FieldClient& c) {
    WsClientOptions o;
    o.url = w.url();
    o.ca_file = TestPki::get().ca_file;
    o.connect_timeout_ms = 2000;
    o.reconnect_cap_ms = 200;
    o.after_frame = [&c, &writing, &frames_while_writing] {
      if (writing) ++frames_while_writing;
      c.dispatch_events();
    };
    return o;
  };
  WsClient wa(alice->engine(), ws_options(*alice));
  WsClient wb(bob->engine(), ws_options(*bob));
  ASSERT_TRUE(wa.start().ok());
  ASSERT_TRUE(wb.start().ok());
  auto account = alice->create_account({.name = "Shared", .territory_id = "t-north"});
  ASSERT_OK(account);
  ASSERT_TRUE(wb.wait_until([&] { return bob->account(*account).is_ok(); }, std::chrono::seconds(10)))
      << wb.last_error().to_string();

  // Each app thread writes and reads while its transport thread applies the other device's live changes.
  constexpr int kWrites = 60;
  auto writer = [&account](FieldClient& c, bool notes) {
    for (int i = 0; i < kWrites; ++i) {
      auto v = c.check_in({.account_id = *account});
      if (!v) return v.status();
      if (notes)
        if (Status s = c.add_visit_note(*v, "note " + std::to_string(i)); !s) return s;
      if (auto h = c.visits_of_account(*account); !h) return h.status();
    }
    return Status::ok();
  };
  writing = true;
  auto fa = std::async(std::launch::async, writer, std::ref(*alice), true);
  auto fb = std::async(std::launch::async, writer, std::ref(*bob), false);
  for (auto* f : {&fa, &fb}) {
    if (f->wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      std::fprintf(stderr, "writers still running after 60 s: deadlock\n");
      std::abort();  // a deadlocked thread cannot be joined
    }
  }
  writing = false;
  EXPECT_TRUE(fa.get()) << "alice's writes failed";
  EXPECT_TRUE(fb.get()) << "bob's writes failed";
  auto all_synced = [&](FieldClient& c) {
    auto n = c.pending_count();
    auto visits = c.visits_of_account(*account);
    return n && *n == 0 && c.engine().idle() && visits && visits->size() == size_t{2 * kWrites};
  };
  // Wait for what is compared: both replicas settled *and* equal. Counting visits alone let the comparison
  // run before alice's last note (its own transaction, after its visit) reached bob.
  auto same_exports = [&] {
    auto a = alice->export_json();
    auto b = bob->export_json();
    return a && b && *a == *b;
  };
  EXPECT_TRUE(wa.wait_until([&] { return all_synced(*alice) && all_synced(*bob) && same_exports(); },
                            std::chrono::seconds(30)))
      << wa.last_error().to_string() << " / " << wb.last_error().to_string();
  EXPECT_GT(frames_while_writing.load(), 0);
  EXPECT_EQ(*alice->export_json(), *bob->export_json());
  wa.stop();
  wb.stop();
  w.stop();
  size_t from_alice = 0, from_bob = 0;
  for (const ServerTxn& t : w.store.log()) {
    from_alice += t.origin_node == alice->node() ? 1 : 0;
    from_bob += t.origin_node == bob->node() ? 1 : 0;
  }
  EXPECT_EQ(from_alice, size_t{1 + 2 * kWrites});
  EXPECT_EQ(from_bob, size_t{kWrites});
}
#endif  // FIELDSYNC_HAVE_SERVER

// ---- Schema 3: leads, service cases, assets, tasks

TEST_F(FieldClientTest, LeadFromCreationToConversionOfflineInOneTransaction) {
  auto lead = client->create_lead({.person_name = "Dana Diaz",
                                   .source = "field_prospecting",
                                   .territory_id = "t-north",
                                   .company_name = "Diaz Bakery",
                                   .email = "dana@diaz.example",
                                   .notes = "met at the fair"});
  ASSERT_OK(lead);
  EXPECT_REFUSED(*client,
                 client->create_lead({.person_name = "X", .source = "billboard", .territory_id = "t"}),
                 ErrorCode::kValueInvalid);
  ASSERT_TRUE(client->mark_lead_contacted(*lead));
  ASSERT_TRUE(client->qualify_lead(*lead));
  EXPECT_REFUSED(*client, client->mark_lead_contacted(*lead), ErrorCode::kInvalidTransition);
  ASSERT_EQ(client->my_leads()->size(), 1u);

  const size_t before = pending(*client);
  clock.now += kHour;
  auto conv = client->convert_lead(*lead, {.opportunity_name = "Ovens", .amount_cents = 250000});
  ASSERT_OK(conv);
  EXPECT_EQ(pending(*client), before + 1);  // account, contact, deal and lead: one transaction
  auto l = client->lead(*lead);
  ASSERT_OK(l);
  EXPECT_EQ(l->status, "converted");
  EXPECT_EQ(l->converted_account_id, conv->account_id);
  EXPECT_EQ(l->converted_contact_id, conv->contact_id);
  EXPECT_EQ(l->converted_opportunity_id, conv->opportunity_id);
  EXPECT_EQ(l->converted_at_ms, clock.now);
  EXPECT_EQ(l->notes, "met at the fair");
  auto acct = client->account(conv->account_id);
  ASSERT_OK(acct);
  EXPECT_EQ(acct->account.name, "Diaz Bakery");
  EXPECT_EQ(acct->account.territory_id, "t-north");
  ASSERT_EQ(acct->contacts.size(), 1u);
  EXPECT_EQ(acct->contacts[0].name, "Dana Diaz");
  EXPECT_EQ(acct->contacts[0].email, "dana@diaz.example");
  auto opp = client->opportunity(conv->opportunity_id);
  ASSERT_OK(opp);
  EXPECT_EQ(opp->name, "Ovens");
  EXPECT_EQ(opp->amount_cents, 250000);
  EXPECT_EQ(opp->account_id, conv->account_id);
  // Converted is final: no second conversion, no note, out of my open leads.
  EXPECT_REFUSED(*client, client->convert_lead(*lead, {}), ErrorCode::kInvalidTransition);
  EXPECT_REFUSED(*client, client->add_lead_note(*lead, "late"), ErrorCode::kOrderLocked);
  EXPECT_REFUSED(*client, client->disqualify_lead(*lead, "changed mind"), ErrorCode::kInvalidTransition);
  EXPECT_TRUE(client->my_leads()->empty());

  // Into an existing account: no new account.
  auto lead2 = client->create_lead({.person_name = "Eve", .source = "referral", .territory_id = "t-north"});
  ASSERT_OK(lead2);
  auto conv2 = client->convert_lead(*lead2, {.existing_account_id = account});
  ASSERT_OK(conv2);
  EXPECT_EQ(conv2->account_id, account);
  EXPECT_EQ(client->account(account)->contacts.size(), 1u);
  EXPECT_EQ(client->accounts_by_prefix("")->size(), 2u);
  auto lead3 = client->create_lead({.person_name = "Fay", .source = "other", .territory_id = "t-north"});
  ASSERT_OK(lead3);
  EXPECT_REFUSED(*client, client->convert_lead(*lead3, {.existing_account_id = lead3.value()}),
                 ErrorCode::kRecordNotFound);
}

TEST_F(FieldClientTest, DisqualifyingALeadNeedsAReason) {
  auto lead = client->create_lead({.person_name = "Gus", .source = "web_form", .territory_id = "t-north"});
  ASSERT_OK(lead);
  EXPECT_REFUSED(*client, client->disqualify_lead(*lead, "  "), ErrorCode::kMissingField);
  ASSERT_TRUE(client->disqualify_lead(*lead, "no budget this year"));
  EXPECT_EQ(client->lead(*lead)->status, "disqualified");
  EXPECT_EQ(client->lead(*lead)->disqualify_reason, "no budget this year");
  // Back to new is a manager's move.
  EXPECT_REFUSED(*client, client->qualify_lead(*lead), ErrorCode::kInvalidTransition);
}

TEST_F(FieldClientTest, TheSyncCoreChecksTheDomainRulesOnTheDevice) {
  auto lead = client->create_lead({.person_name = "Hal", .source = "campaign", .territory_id = "t-north"});
  ASSERT_OK(lead);
  const RecordId id = *RecordId::parse(*lead);
  const schema::EntityDef& L = schema::entity_ref(EntityId::kLead);
  auto change = [&](std::string_view field, Value v) {
    Change c{ChangeOp::kSet, EntityId::kLead, id, L.field(field)->id};
    c.value = std::move(v);
    return c;
  };
  // A link outside a conversion, and a conversion without its links: refused before anything is stored,
  // exactly as the server would refuse them.
  EXPECT_REFUSED(*client,
                 client->engine().write({change("converted_account_id", Value::text(account))}, clock.now),
                 ErrorCode::kImmutableField);
  EXPECT_REFUSED(*client, client->engine().write({change("status", Value::text("converted"))}, clock.now),
                 ErrorCode::kMissingField);
  EXPECT_REFUSED(*client, client->engine().write({change("status", Value::text("disqualified"))}, clock.now),
                 ErrorCode::kMissingField);
  EXPECT_EQ(client->lead(*lead)->status, "new");
}

TEST_F(FieldClientTest, ServiceCasesShowOnTheAccountAndFollowTheirStatuses) {
  // Warranty ended before the case: billable; still under warranty: not; no asset: not.
  auto old_oven = client->register_asset(
      {.account_id = account, .serial_number = "OV-1", .warranty_end_at_ms = kStart - kDay});
  ASSERT_OK(old_oven);
  auto new_oven = client->register_asset({.account_id = account,
                                          .serial_number = "OV-2",
                                          .installed_at_ms = kStart - kDay,
                                          .warranty_end_at_ms = kStart + 365 * kDay});
  ASSERT_OK(new_oven);
  EXPECT_EQ(client->assets_of_account(account)->size(), 2u);
  EXPECT_EQ(client->asset(*new_oven)->installed_at_ms, kStart - kDay);

  auto billable = client->open_case(
      {.account_id = account, .subject = "Old oven cold", .priority = "urgent", .asset_id = *old_oven});
  ASSERT_OK(billable);
  auto covered =
      client->open_case({.account_id = account, .subject = "New oven noisy", .asset_id = *new_oven});
  ASSERT_OK(covered);
  auto plain = client->open_case({.account_id = account, .subject = "Invoice question", .take = true});
  ASSERT_OK(plain);
  EXPECT_REFUSED(*client, client->open_case({.account_id = account, .subject = "x", .priority = "asap"}),
                 ErrorCode::kValueInvalid);
  EXPECT_TRUE(client->service_case(*billable)->billable);
  EXPECT_FALSE(client->service_case(*covered)->billable);
  EXPECT_FALSE(client->service_case(*plain)->billable);
  EXPECT_EQ(client->service_case(*plain)->status, "assigned");
  EXPECT_EQ(client->service_case(*plain)->assignee_id, "alice");
  EXPECT_EQ(client->service_case(*plain)->opened_by, "alice");

  // The account screen shows the open complaints before a visit.
  auto screen = client->account(account);
  ASSERT_OK(screen);
  ASSERT_EQ(screen->open_cases.size(), 3u);
  EXPECT_EQ(screen->open_cases[0].subject, "Old oven cold");
  EXPECT_TRUE(screen->open_cases[0].billable);

  ASSERT_TRUE(client->take_case(*billable));
  EXPECT_REFUSED(*client, client->take_case(*billable), ErrorCode::kPermissionDenied);
  EXPECT_REFUSED(*client, client->dispatch_case(*covered, "bob"), ErrorCode::kPermissionDenied);
  ASSERT_TRUE(client->start_case(*billable));
  ASSERT_TRUE(client->add_case_note(*billable, "ordered a heating element"));
  EXPECT_REFUSED(*client, client->resolve_case(*billable, ""), ErrorCode::kMissingField);
  clock.now += kHour;
  ASSERT_TRUE(client->resolve_case(*billable, "replaced the heating element"));
  auto done = client->service_case(*billable);
  ASSERT_OK(done);
  EXPECT_EQ(done->status, "resolved");
  EXPECT_EQ(done->resolved_at_ms, clock.now);
  EXPECT_EQ(done->resolution_notes, "ordered a heating element\nreplaced the heating element");
  ASSERT_TRUE(client->close_case(*billable));
  EXPECT_REFUSED(*client, client->reopen_case(*billable), ErrorCode::kPermissionDenied);  // managers reopen
  EXPECT_EQ(client->account(account)->open_cases.size(), 2u);
  auto mine = client->my_cases();
  ASSERT_OK(mine);
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ(mine->front().id, *plain);
}

TEST_F(FieldClientTest, ManagerDispatchesAndReopensCases) {
  auto mgr = open_client("mia", clock, "", Role::kManager);
  ASSERT_TRUE(mgr);
  auto acct = mgr->create_account({.name = "Depot", .territory_id = "t-north"});
  ASSERT_OK(acct);
  auto sc = mgr->open_case({.account_id = *acct, .subject = "Door jammed", .priority = "high"});
  ASSERT_OK(sc);
  ASSERT_TRUE(mgr->dispatch_case(*sc, "bob"));
  EXPECT_EQ(mgr->service_case(*sc)->assignee_id, "bob");
  EXPECT_EQ(mgr->service_case(*sc)->status, "assigned");
  ASSERT_TRUE(mgr->start_case(*sc));
  ASSERT_TRUE(mgr->resolve_case(*sc, "oiled the hinge"));
  ASSERT_TRUE(mgr->reopen_case(*sc));
  EXPECT_EQ(mgr->service_case(*sc)->status, "in_progress");
  EXPECT_FALSE(mgr->service_case(*sc)->resolved_at_ms.has_value());
}

TEST_F(FieldClientTest, TasksCompleteCancelReopenAndOverdue) {
  auto late = client->create_task({.title = "Call back", .due_at_ms = kStart - kHour, .account_id = account});
  ASSERT_OK(late);
  auto later = client->create_task(
      {.title = "Send offer", .due_at_ms = kStart + kDay, .remind_at_ms = kStart + kDay - kHour});
  ASSERT_OK(later);
  auto undated = client->create_task({.title = "Tidy the van"});
  ASSERT_OK(undated);
  EXPECT_REFUSED(*client, client->create_task({.title = "x", .lead_id = account}),
                 ErrorCode::kRecordNotFound);
  auto overdue = client->overdue_tasks();
  ASSERT_OK(overdue);
  ASSERT_EQ(overdue->size(), 1u);
  EXPECT_EQ(overdue->front().id, *late);
  EXPECT_EQ(overdue->front().account_id, account);
  auto open = client->open_tasks();
  ASSERT_OK(open);
  ASSERT_EQ(open->size(), 3u);
  EXPECT_EQ((*open)[0].id, *late);
  EXPECT_EQ((*open)[2].id, *undated);  // undated last

  ASSERT_TRUE(client->complete_task(*late));
  EXPECT_EQ(client->task(*late)->status, "done");
  EXPECT_EQ(client->task(*late)->completed_at_ms, clock.now);
  EXPECT_TRUE(client->overdue_tasks()->empty());
  EXPECT_REFUSED(*client, client->cancel_task(*late), ErrorCode::kInvalidTransition);  // done -> cancelled
  ASSERT_TRUE(client->reopen_task(*late));
  EXPECT_FALSE(client->task(*late)->completed_at_ms.has_value());
  ASSERT_TRUE(client->cancel_task(*later));
  EXPECT_EQ(client->task(*later)->status, "cancelled");
  EXPECT_EQ(client->open_tasks()->size(), 2u);
}

TEST_F(FieldClientTest, EventsLinkAnOpportunity) {
  auto opp = client->create_opportunity({.account_id = account, .name = "Ovens", .amount_cents = 1000});
  ASSERT_OK(opp);
  auto ev = client->create_event({.title = "Oven demo",
                                  .start_at_ms = kStart,
                                  .end_at_ms = kStart + kHour,
                                  .account_id = account,
                                  .opportunity_id = *opp});
  ASSERT_OK(ev);
  EXPECT_EQ(client->event(ev->id)->opportunity_id, *opp);
  EXPECT_REFUSED(
      *client,
      client->create_event(
          {.title = "x", .start_at_ms = kStart, .end_at_ms = kStart + kHour, .opportunity_id = account}),
      ErrorCode::kRecordNotFound);
}

TEST(FieldClientSync, LeadConvertedOfflineReachesTheServerAndATakenCaseStaysTaken) {
  ServerWorld w;
  auto alice = open_client("alice", w.clock);
  auto bob = open_client("bob", w.clock);
  ASSERT_TRUE(alice && bob);
  auto acct = alice->create_account({.name = "Müller", .territory_id = "t-north"});
  ASSERT_OK(acct);
  auto sc = alice->open_case({.account_id = *acct, .subject = "Scale broken"});
  ASSERT_OK(sc);
  w.connect(*alice);
  w.connect(*bob);
  EXPECT_EQ(bob->account(*acct)->open_cases.size(), 1u);
  w.disconnect(*alice);
  w.disconnect(*bob);

  // Offline: alice converts a lead and takes the case; bob takes the same case.
  auto lead =
      alice->create_lead({.person_name = "Ina", .source = "phone_enquiry", .territory_id = "t-north"});
  ASSERT_OK(lead);
  auto conv = alice->convert_lead(*lead, {.account_name = "Ina's Deli"});
  ASSERT_OK(conv);
  ASSERT_TRUE(alice->take_case(*sc));
  ASSERT_TRUE(bob->take_case(*sc));

  std::vector<Rejection> rejected;
  bob->add_observer({.rejection = [&](const Rejection& r) { rejected.push_back(r); }});
  w.connect(*alice);
  EXPECT_EQ(pending(*alice), 0u);
  w.connect(*bob);
  EXPECT_EQ(pending(*bob), 0u);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].reason, ErrorCode::kPermissionDenied) << rejected[0].message;
  EXPECT_EQ(bob->service_case(*sc)->assignee_id, "alice");  // bob's take rolled back
  auto seen = bob->lead(*lead);
  ASSERT_OK(seen);
  EXPECT_EQ(seen->status, "converted");
  EXPECT_EQ(bob->account(conv->account_id)->account.name, "Ina's Deli");
  // The server holds the conversion whole.
  auto stored = w.store.load(EntityId::kLead, *RecordId::parse(*lead));
  ASSERT_TRUE(stored.is_ok() && stored->has_value());
  EXPECT_EQ((*stored)->get(schema::entity_ref(EntityId::kLead).field("converted_contact_id")->id),
            Value::text(conv->contact_id));
}

TEST(FieldsyncRep, LeadsCasesAssetsAndTasks) {
  const std::string db = temp_file("rep3");
  const std::string base = "--db " + db + " --user alice ";
  EXPECT_NE(rep("lead --help").out.find("lead convert --id ID"), std::string::npos);
  RepRun acc = rep(base + "account add --name Depot --territory t-north");
  ASSERT_EQ(acc.exit_code, 0) << acc.out;
  const std::string account = trim(acc.out);
  RepRun lead =
      rep(base + "lead add --person 'Jo Kim' --company 'Kim GmbH' --source referral --territory t-north");
  ASSERT_EQ(lead.exit_code, 0) << lead.out;
  const std::string lead_id = trim(lead.out);
  EXPECT_EQ(rep(base + "lead qualify --id " + lead_id).exit_code, 0);
  RepRun conv = rep(base + "lead convert --id " + lead_id + " --amount 90000");
  ASSERT_EQ(conv.exit_code, 0) << conv.out;
  EXPECT_NE(conv.out.find("opportunity\t"), std::string::npos) << conv.out;
  RepRun show = rep(base + "lead show --id " + lead_id);
  EXPECT_NE(show.out.find("converted"), std::string::npos) << show.out;
  RepRun bad = rep(base + "lead disqualify --id " + lead_id + " --reason late");
  EXPECT_EQ(bad.exit_code, 1) << bad.out;

  RepRun asset =
      rep(base + "asset add --account " + account + " --serial SN-9 --warranty-end 2020-01-01T00:00");
  ASSERT_EQ(asset.exit_code, 0) << asset.out;
  RepRun sc = rep(base + "case open --account " + account +
                  " --subject 'Belt torn' --priority urgent --asset " + trim(asset.out));
  ASSERT_EQ(sc.exit_code, 0) << sc.out;
  const std::string case_id = trim(sc.out);
  EXPECT_EQ(rep(base + "case take --id " + case_id).exit_code, 0);
  RepRun cshow = rep(base + "case show --id " + case_id);
  EXPECT_NE(cshow.out.find("\tassigned\turgent\talice\t"), std::string::npos) << cshow.out;
  EXPECT_NE(cshow.out.find("billable"), std::string::npos) << cshow.out;
  RepRun screen = rep(base + "account show --id " + account);
  EXPECT_NE(screen.out.find("case\t" + case_id), std::string::npos) << screen.out;
  EXPECT_EQ(rep(base + "case resolve --id " + case_id + " --note 'new belt'").exit_code, 0);
  EXPECT_EQ(rep(base + "cases --account " + account).out, "");

  RepRun task = rep(base + "task add --title 'Call Jo' --due 2020-01-02T09:00");
  ASSERT_EQ(task.exit_code, 0) << task.out;
  EXPECT_NE(rep(base + "tasks --overdue").out.find("Call Jo"), std::string::npos);
  EXPECT_EQ(rep(base + "task done --id " + trim(task.out)).exit_code, 0);
  EXPECT_EQ(rep(base + "tasks --overdue").out, "");
}

}  // namespace
}  // namespace fieldsync::client

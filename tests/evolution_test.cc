// The rolling upgrade of the model (docs/DESIGN.md "Model evolution"): devices on an older schema version
// next to newer ones on one server, sans-IO. An old device is this library projected to the old version
// (ClientConfig::schema_version), which writes, sends and accepts exactly what that version's app would.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "fieldsync/sync/client.h"
#include "fieldsync/sync/projection.h"
#include "fieldsync/sync/server.h"
#include "fieldsync/sync/tuning.h"
#include "support/memory_store.h"
#include "support/sync_fixtures.h"

namespace fieldsync {
namespace {

using schema::EntityId;
using schema::Role;
namespace f = schema::fields;
using testing_support::Device;
using testing_support::TokenAuth;

constexpr int64_t kStart = 1'760'000'000'000;

class World {
 public:
  World() {
    auth.tokens["token-ho"] = Principal{"ho", Role::kHeadOffice, {}, {}};
    auth.tokens["token-alice"] = Principal{"alice", Role::kRep, {"t-north"}, {}};
    server = std::make_unique<SyncServer>(store, auth, ServerConfig{});
  }
  Device& add(NodeId node, UserId user, uint32_t schema_version) {
    owned.push_back(std::make_unique<Device>(node, user));
    Device& d = *owned.back();
    d.config.schema_version = schema_version;
    d.restart();
    return d;
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
  void pump() {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (auto& d : owned) {
        for (protocol::Message& m : d->client->take_outgoing()) {
          moved = true;
          if (d->session != 0) server->on_message(d->session, m, now);
        }
        for (ClientEvent& e : d->client->take_events()) d->events.push_back(std::move(e));
      }
      for (SyncServer::Outgoing& o : server->take_outgoing()) {
        moved = true;
        for (auto& d : owned) {
          if (d->session != o.session) continue;
          received[d.get()].push_back(o.message);
          d->client->on_message(o.message, now);
        }
      }
      for (SessionId closed : server->take_closing())
        for (auto& d : owned)
          if (d->session == closed) disconnect(*d);
      if (!moved) return;
    }
    FAIL() << "messages still moving after 1000 rounds";
  }

  MemoryCentralStore store;
  TokenAuth auth;
  std::unique_ptr<SyncServer> server;
  std::vector<std::unique_ptr<Device>> owned;
  std::map<Device*, std::vector<protocol::Message>> received;
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
Value ref(RecordId id) {
  return Value::text(id.to_string());
}

// Head office (schema 3) files an account with an opportunity, an appointment of alice's linked to the
// opportunity (a schema-3 field) and a lead of alice's territory (a schema-3 entity).
struct Office {
  RecordId account, opportunity, event, lead;
};
Office file_records(World& w, Device& ho) {
  Office o{ho.ids.next(w.now), ho.ids.next(w.now), ho.ids.next(w.now), ho.ids.next(w.now)};
  auto r = ho.client->write(
      {create(EntityId::kAccount, o.account),
       set(EntityId::kAccount, o.account, f::kAccountName, Value::text("Nord")),
       set(EntityId::kAccount, o.account, f::kAccountTerritory, Value::text("t-north")),
       set(EntityId::kAccount, o.account, f::kAccountCreatedBy, Value::text("ho")),
       create(EntityId::kOpportunity, o.opportunity),
       set(EntityId::kOpportunity, o.opportunity, 1, ref(o.account)),
       set(EntityId::kOpportunity, o.opportunity, f::kOpportunityOwner, Value::text("alice")),
       set(EntityId::kOpportunity, o.opportunity, 3, Value::text("Ovens")),
       set(EntityId::kOpportunity, o.opportunity, f::kOpportunityStage, Value::text("prospect")),
       set(EntityId::kOpportunity, o.opportunity, f::kOpportunityAmount, Value::integer(100)),
       set(EntityId::kOpportunity, o.opportunity, f::kOpportunityCurrency, Value::text("EUR"))},
      w.now);
  EXPECT_TRUE(r) << r.status().to_string();
  r = ho.client->write(
      {create(EntityId::kCalendarEvent, o.event),
       set(EntityId::kCalendarEvent, o.event, f::kEventOwner, Value::text("alice")),
       set(EntityId::kCalendarEvent, o.event, 2, ref(o.account)),
       set(EntityId::kCalendarEvent, o.event, 3, Value::text("Demo")),
       set(EntityId::kCalendarEvent, o.event, f::kEventStart, Value::integer(kStart + 3'600'000)),
       set(EntityId::kCalendarEvent, o.event, f::kEventEnd, Value::integer(kStart + 7'200'000)),
       set(EntityId::kCalendarEvent, o.event, f::kEventStatus, Value::text("scheduled")),
       set(EntityId::kCalendarEvent, o.event, f::kEventOpportunity, ref(o.opportunity))},
      w.now);
  EXPECT_TRUE(r) << r.status().to_string();
  r = ho.client->write({create(EntityId::kLead, o.lead),
                        set(EntityId::kLead, o.lead, f::kLeadPersonName, Value::text("Eva Roth")),
                        set(EntityId::kLead, o.lead, f::kLeadSource, Value::text("web_form")),
                        set(EntityId::kLead, o.lead, f::kLeadOwner, Value::text("alice")),
                        set(EntityId::kLead, o.lead, f::kLeadTerritory, Value::text("t-north")),
                        set(EntityId::kLead, o.lead, f::kLeadStatus, Value::text("new")),
                        set(EntityId::kLead, o.lead, f::kLeadCreatedAt, Value::integer(kStart))},
                       w.now);
  EXPECT_TRUE(r) << r.status().to_string();
  return o;
}

bool mentions_newer(const protocol::Message& m, uint32_t version) {
  protocol::Message p = m;
  projection::project(p, version);
  return !(p == m);
}

TEST(Evolution, AnOldDeviceReceivesOnlyWhatItsSchemaKnowsAndItsPushesAreAccepted) {
  World w;
  Device& ho = w.add(1'001, "ho", schema::kSchemaVersion);
  Device& alice = w.add(1'002, "alice", 2);
  w.connect(ho);
  const Office o = file_records(w, ho);
  w.pump();
  w.connect(alice);  // bootstrap
  w.now += 1000;
  // Live: a later change of the schema-3 field and of the lead reach her as nothing at all.
  ASSERT_TRUE(ho.client->write({set(EntityId::kCalendarEvent, o.event, f::kEventOpportunity, Value::null()),
                                set(EntityId::kLead, o.lead, f::kLeadStatus, Value::text("contacted"))},
                               w.now));
  w.pump();
  ASSERT_EQ(alice.client->state(), SyncClient::State::kSyncing) << alice.client->stop_reason().to_string();
  for (const protocol::Message& m : w.received[&alice])
    EXPECT_FALSE(mentions_newer(m, 2)) << protocol::message_name(m);
  const auto records = alice.store.records();
  EXPECT_EQ(records.count(RecordKey{EntityId::kLead, o.lead}), 0u);
  ASSERT_EQ(records.count(RecordKey{EntityId::kCalendarEvent, o.event}), 1u);
  EXPECT_EQ(records.at(RecordKey{EntityId::kCalendarEvent, o.event}).field(f::kEventOpportunity), nullptr);
  EXPECT_EQ(records.at(RecordKey{EntityId::kCalendarEvent, o.event}).get(3), Value::text("Demo"));
  // Her writes go through as before, and leave the field she does not know alone on the server.
  w.now += 1000;
  ASSERT_TRUE(ho.client->write(
      {set(EntityId::kCalendarEvent, o.event, f::kEventOpportunity, ref(o.opportunity))}, w.now));
  w.pump();
  ASSERT_TRUE(
      alice.client->write({set(EntityId::kCalendarEvent, o.event, 7, Value::text("Back door"))}, w.now));
  w.pump();
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_TRUE(alice.store.rejections().empty());
  const RecordState server_event = w.store.records().at(RecordKey{EntityId::kCalendarEvent, o.event});
  EXPECT_EQ(server_event.get(7), Value::text("Back door"));
  EXPECT_EQ(server_event.get(f::kEventOpportunity), ref(o.opportunity));
}

TEST(Evolution, AProjectedLibraryWritesNothingItsSchemaDoesNotKnow) {
  World w;
  Device& alice = w.add(1'002, "alice", 2);
  const RecordId lead = alice.ids.next(w.now);
  auto r = alice.client->write(
      {create(EntityId::kLead, lead), set(EntityId::kLead, lead, f::kLeadPersonName, Value::text("Eva"))},
      w.now);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kUnknownEntity) << r.status().to_string();
  const RecordId event = alice.ids.next(w.now);
  r = alice.client->write({create(EntityId::kCalendarEvent, event),
                           set(EntityId::kCalendarEvent, event, f::kEventOpportunity, ref(lead))},
                          w.now);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kUnknownField) << r.status().to_string();
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_TRUE(alice.store.records().empty());
}

TEST(Evolution, AnOldDeviceRefusesAMessageWithSomethingNewerThanItsSchema) {
  // What an old app would do with a server that did not filter: stop, instead of storing half of it.
  World w;
  Device& alice = w.add(1'002, "alice", 2);
  w.connect(alice);
  ASSERT_EQ(alice.client->state(), SyncClient::State::kSyncing);
  protocol::ChangeBatch batch;
  batch.from_cursor = batch.to_cursor = 0;
  RecordState lead;
  lead.entity = EntityId::kLead;
  lead.id = alice.ids.next(w.now);
  batch.records.push_back(lead);
  alice.client->on_message(batch, w.now);
  EXPECT_EQ(alice.client->state(), SyncClient::State::kStopped);
  EXPECT_EQ(alice.client->stop_reason().code(), ErrorCode::kMalformedMessage);
  EXPECT_TRUE(alice.store.records().empty());
}

TEST(Evolution, AnUpgradedDeviceIsBackfilledWithOnlyWhatItCouldNotSeeKeepingItsPendingWrites) {
  World w;
  Device& ho = w.add(1'001, "ho", schema::kSchemaVersion);
  Device& alice = w.add(1'002, "alice", 2);
  w.connect(ho);
  const Office o = file_records(w, ho);
  w.pump();
  w.connect(alice);
  const uint64_t cursor = alice.store.meta().cursor;
  EXPECT_EQ(alice.store.meta().schema_version, 2u);
  // Offline, still on the old app: a write waits in the outbox.
  w.disconnect(alice);
  w.now += 1000;
  ASSERT_TRUE(alice.client->write({set(EntityId::kAccount, o.account, 4, Value::text("Kiel"))}, w.now));
  // The app is upgraded: the same replica under the newer library.
  alice.config.schema_version = schema::kSchemaVersion;
  alice.restart();
  EXPECT_TRUE(alice.client->backfilling());
  w.received[&alice].clear();
  alice.events.clear();
  w.now += 1000;
  w.connect(alice);
  ASSERT_EQ(alice.client->state(), SyncClient::State::kSyncing) << alice.client->stop_reason().to_string();
  EXPECT_FALSE(alice.client->backfilling());
  EXPECT_EQ(alice.store.meta().schema_version, schema::kSchemaVersion);
  EXPECT_GE(alice.store.meta().cursor, cursor);
  // The backfill's pages held only the lead and the appointment's new field: no account, no opportunity.
  size_t pages = 0;
  for (const protocol::Message& m : w.received[&alice]) {
    const auto* page = std::get_if<protocol::BootstrapPage>(&m);
    if (page == nullptr) continue;
    ++pages;
    for (const RecordState& r : page->records) {
      EXPECT_TRUE(r.entity == EntityId::kLead || r.entity == EntityId::kCalendarEvent)
          << static_cast<int>(r.entity);
      if (r.entity == EntityId::kCalendarEvent) {
        ASSERT_EQ(r.fields.size(), 1u);
        EXPECT_EQ(r.fields[0].field, f::kEventOpportunity);
      }
    }
  }
  EXPECT_GE(pages, 1u);
  bool progress = false;
  for (const ClientEvent& e : alice.events)
    progress |= e.kind == ClientEvent::Kind::kBootstrapProgress && e.done == 2;
  EXPECT_TRUE(progress);
  // Now she has everything of her scope, and the write made on the old app reached the server.
  const auto records = alice.store.records();
  ASSERT_EQ(records.count(RecordKey{EntityId::kLead, o.lead}), 1u);
  EXPECT_EQ(records.at(RecordKey{EntityId::kLead, o.lead}),
            w.store.records().at(RecordKey{EntityId::kLead, o.lead}));
  EXPECT_EQ(records.at(RecordKey{EntityId::kCalendarEvent, o.event}),
            w.store.records().at(RecordKey{EntityId::kCalendarEvent, o.event}));
  EXPECT_EQ(records.at(RecordKey{EntityId::kAccount, o.account}),
            w.store.records().at(RecordKey{EntityId::kAccount, o.account}));
  EXPECT_EQ(w.store.records().at(RecordKey{EntityId::kAccount, o.account}).get(4), Value::text("Kiel"));
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_TRUE(alice.client->idle());
}

TEST(Evolution, ABackfillCutOffMidWayResumesFromItsLastPage) {
  World w;
  Device& ho = w.add(1'001, "ho", schema::kSchemaVersion);
  Device& alice = w.add(1'002, "alice", 2);
  w.connect(ho);
  std::vector<RecordId> leads;
  for (int i = 0; i < 6; ++i) {
    const RecordId id = ho.ids.next(w.now);
    leads.push_back(id);
    ASSERT_TRUE(
        ho.client->write({create(EntityId::kLead, id),
                          set(EntityId::kLead, id, f::kLeadPersonName, Value::text("L" + std::to_string(i))),
                          set(EntityId::kLead, id, f::kLeadSource, Value::text("campaign")),
                          set(EntityId::kLead, id, f::kLeadOwner, Value::text("alice")),
                          set(EntityId::kLead, id, f::kLeadTerritory, Value::text("t-north")),
                          set(EntityId::kLead, id, f::kLeadStatus, Value::text("new")),
                          set(EntityId::kLead, id, f::kLeadCreatedAt, Value::integer(kStart))},
                         w.now));
  }
  w.pump();
  w.connect(alice);
  w.disconnect(alice);
  alice.config.schema_version = schema::kSchemaVersion;
  alice.config.bootstrap_page_size = 2;
  alice.config.protocol_version = 1;  // one page per request, so the cut falls between pages
  alice.restart();
  // Connect and deliver only the first page, then lose the connection.
  alice.session = w.next_session++;
  w.server->on_connect(alice.session, w.now);
  alice.client->on_connected(w.now);
  for (int step = 0; step < 2; ++step) {
    for (protocol::Message& m : alice.client->take_outgoing()) w.server->on_message(alice.session, m, w.now);
    for (SyncServer::Outgoing& o : w.server->take_outgoing()) alice.client->on_message(o.message, w.now);
  }
  w.disconnect(alice);
  EXPECT_EQ(alice.store.meta().bootstrap_received, 2u);
  EXPECT_FALSE(alice.store.meta().bootstrap_page_token.empty());
  EXPECT_EQ(alice.store.meta().schema_version, 2u);
  alice.restart();  // and the app restarts
  w.received[&alice].clear();
  w.connect(alice);
  ASSERT_EQ(alice.client->state(), SyncClient::State::kSyncing) << alice.client->stop_reason().to_string();
  size_t resent = 0;
  for (const protocol::Message& m : w.received[&alice])
    if (const auto* page = std::get_if<protocol::BootstrapPage>(&m)) resent += page->records.size();
  EXPECT_EQ(resent, 4u);  // the rest, not the first page again
  for (const RecordId& id : leads) EXPECT_EQ(alice.store.records().count(RecordKey{EntityId::kLead, id}), 1u);
  EXPECT_EQ(alice.store.meta().schema_version, schema::kSchemaVersion);
}

TEST(Evolution, ADeviceNewerThanItsServerIsToldWaitsLongAndLosesNothing) {
  // The server refuses a schema it does not know with kUnsupportedSchema (a schema-2 server answers a
  // schema-3 app so); a device one version ahead of this server stands for it.
  World w;
  Device& alice = w.add(1'002, "alice", schema::kSchemaVersion + 1);
  const RecordId acct = alice.ids.next(w.now);
  ASSERT_TRUE(alice.client->write(
      {create(EntityId::kAccount, acct), set(EntityId::kAccount, acct, f::kAccountName, Value::text("Nord")),
       set(EntityId::kAccount, acct, f::kAccountTerritory, Value::text("t-north")),
       set(EntityId::kAccount, acct, f::kAccountCreatedBy, Value::text("alice"))},
      w.now));
  w.connect(alice);
  EXPECT_NE(alice.client->state(), SyncClient::State::kStopped);  // not for good: the server will be upgraded
  ASSERT_FALSE(alice.events.empty());
  EXPECT_EQ(alice.events.back().kind, ClientEvent::Kind::kError);
  EXPECT_EQ(alice.events.back().status.code(), ErrorCode::kUnsupportedSchema);
  EXPECT_EQ(alice.client->reconnect_not_before_ms(), w.now + tuning::kServerTooOldRetryMs);
  EXPECT_GE(tuning::kServerTooOldRetryMs, 10 * tuning::kReconnectCapMs);
  // Offline work goes on and waits in the outbox.
  ASSERT_TRUE(alice.client->write({set(EntityId::kAccount, acct, 4, Value::text("Kiel"))}, w.now));
  EXPECT_EQ(alice.store.outbox().size(), 2u);
  EXPECT_TRUE(w.store.records().empty());
  // Once the server speaks its version (here: the device goes back to this server's), all of it arrives.
  alice.config.schema_version = schema::kSchemaVersion;
  alice.restart();
  w.connect(alice);
  EXPECT_EQ(alice.client->reconnect_not_before_ms(), 0);
  EXPECT_TRUE(alice.store.outbox().empty());
  EXPECT_EQ(w.store.records().at(RecordKey{EntityId::kAccount, acct}).get(4), Value::text("Kiel"));
}

}  // namespace
}  // namespace fieldsync

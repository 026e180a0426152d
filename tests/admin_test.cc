// The admin API (server/include/fieldsync/server/admin.h) and the fieldsync-admin binary: catalogue writes
// reach devices like any change, exports equal what a device holds, directory commands, errors and exit
// codes.
#include "fieldsync/server/admin.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fieldsync/sync/client.h"
#include "fieldsync/sync/export.h"
#include "fieldsync/sync/server.h"
#include "fieldsync/sync/tuning.h"
#include "support/memory_store.h"

#ifndef FIELDSYNC_ADMIN_BIN
#error "FIELDSYNC_ADMIN_BIN must name the fieldsync-admin binary"
#endif

namespace fieldsync::server {
namespace {

using schema::EntityId;
using schema::Role;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-admin-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

Admin::Options fast_options() {
  Admin::Options o;
  o.directory.pbkdf2_iterations = 1000;  // tests only
  return o;
}

std::unique_ptr<Admin> open_admin(const std::string& dir) {
  auto r = Admin::open(dir, fast_options());
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r ? std::move(r.value()) : nullptr;
}

// Head office (or a rep) writing an account straight through SyncServer::apply_local, as a device would push
// it.
void write_account(SyncServer& server, CentralStore& store, NodeId node, const Principal& who, RecordId id,
                   const std::string& name, const std::string& territory, int64_t now) {
  ClientTxn txn;
  txn.node = node;
  txn.node_seq = store.begin()->node_state(node).value().last_node_seq + 1;
  txn.created_at_ms = now;
  Hlc hlc = make_hlc(now, 0);
  auto add = [&](ChangeOp op, uint16_t field, Value v) {
    Change c{op, EntityId::kAccount, id, field};
    c.value = std::move(v);
    c.version = Version{hlc++, node};
    txn.changes.push_back(std::move(c));
  };
  add(ChangeOp::kCreate, 0, Value());
  add(ChangeOp::kSet, 1, Value::text(name));
  add(ChangeOp::kSet, 2, Value::text(territory));
  add(ChangeOp::kSet, 10, Value::text(who.user));
  protocol::TxnResult r = server.apply_local(txn, who, now).value();
  ASSERT_EQ(r.outcome, protocol::TxnOutcome::kApplied) << r.message;
}

TEST(Admin, CatalogueWritesAreLoggedTransactionsFromTheAdminNode) {
  TempDir tmp;
  auto admin = open_admin(tmp.path());
  auto product = admin->add_product("P-1", "Flour 1kg", "bag");
  ASSERT_TRUE(product.is_ok()) << product.status().to_string();
  EXPECT_EQ(admin->add_product("P-1", "Again", "").status().code(), ErrorCode::kInvalidArgument);
  auto price = admin->set_price("P-1", "retail", 299, "EUR");
  ASSERT_TRUE(price.is_ok()) << price.status().to_string();
  auto again = admin->set_price(product->to_string(), "retail", 349, "EUR");  // by id; updates the entry
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(*again, *price);
  auto wholesale = admin->set_price("P-1", "wholesale", 250, "EUR");
  ASSERT_TRUE(wholesale.is_ok());
  EXPECT_NE(*wholesale, *price);
  EXPECT_EQ(admin->set_price("P-404", "retail", 1, "EUR").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(admin->set_price("P-1", "retail", 1, "EURO").status().code(), ErrorCode::kValueInvalid)
      << "the model's validation applies";

  SqliteCentralStore& store = *admin->sqlite_store();
  std::vector<ServerTxn> log = store.read_log(0, 1000).value();
  ASSERT_EQ(log.size(), 4u);
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].origin_node, kAdminNode);
    EXPECT_EQ(log[i].origin_user, kAdminUser);
    EXPECT_EQ(log[i].origin_node_seq, i + 1) << "the durable node_seq counter";
  }
  EXPECT_EQ(store.node_states().value().at(kAdminNode).last_node_seq, 5u)
      << "the rejected one took a number too";
  auto entry = store.load(EntityId::kPriceListEntry, *price).value();
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->get(3), Value::integer(349));
  EXPECT_TRUE(store.read_conflicts(0, 100).value().empty())
      << "admin writes carry their bases: never concurrent";
  EXPECT_FALSE(store.audit(0, 100).value().empty());
  EXPECT_EQ(store.audit(0, 1).value()[0].user, kAdminUser);

  // The counter survives reopening (a new admin process).
  admin.reset();
  admin = open_admin(tmp.path());
  ASSERT_TRUE(admin->add_product("P-2", "Sugar", "").is_ok());
  EXPECT_EQ(admin->store().read_log(4, 10).value().at(0).origin_node_seq, 6u);
}

// The admin tool writes through the model's rules like any client: a price in a malformed currency or below
// zero is refused naming the field, on an entry that exists and on a new one, and nothing is logged.
TEST(Admin, PricesFollowTheModelsValueRules) {
  TempDir tmp;
  auto admin = open_admin(tmp.path());
  ASSERT_TRUE(admin->add_product("P-1", "Flour 1kg", "bag").is_ok());
  ASSERT_TRUE(admin->set_price("P-1", "retail", 299, "EUR").is_ok());
  const size_t logged = admin->store().read_log(0, 1000).value().size();
  for (const char* list : {"retail", "promo"}) {
    Result<RecordId> bad_currency = admin->set_price("P-1", list, 1, "eur");
    EXPECT_EQ(bad_currency.status().code(), ErrorCode::kValueInvalid) << list;
    EXPECT_NE(bad_currency.status().message().find("field currency"), std::string::npos)
        << bad_currency.status().to_string();
    Result<RecordId> negative = admin->set_price("P-1", list, -1, "EUR");
    EXPECT_EQ(negative.status().code(), ErrorCode::kValueInvalid) << list;
    EXPECT_NE(negative.status().message().find("field unit_price_cents"), std::string::npos)
        << negative.status().to_string();
  }
  EXPECT_EQ(admin->store().read_log(0, 1000).value().size(), logged);
}

// Catalogue and accounts written on the server reach a device through the Directory's token check, and the
// device's replica exports the same bytes as the admin export for that user.
TEST(Admin, DeviceReplicaEqualsTheUsersExport) {
  TempDir tmp;
  auto admin = open_admin(tmp.path());
  Directory& dir = admin->directory();
  const int64_t now = admin->now_ms();
  ASSERT_TRUE(dir.add_territory({"north", "North"}).is_ok());
  ASSERT_TRUE(dir.add_territory({"south", "South"}).is_ok());
  ASSERT_TRUE(dir.add_user({"alice", "Alice", Role::kRep}, "alice-password", now).is_ok());
  ASSERT_TRUE(dir.add_user({"hq", "HQ", Role::kHeadOffice}, "hq-password", now).is_ok());
  ASSERT_TRUE(dir.assign_territory("alice", "north").is_ok());
  ASSERT_TRUE(dir.register_device(1001, "alice", now).is_ok());
  ASSERT_TRUE(admin->add_product("P-1", "Flour", "bag").is_ok());
  ASSERT_TRUE(admin->set_price("P-1", "retail", 299, "EUR").is_ok());

  SyncServer server(admin->store(), dir, ServerConfig{});
  const Principal hq = *dir.principal("hq");
  RecordIdGenerator ids(5);
  write_account(server, admin->store(), 3, hq, ids.next(now), "North Bakery", "north", now);
  write_account(server, admin->store(), 3, hq, ids.next(now), "South Bakery", "south", now);

  MemoryReplicaStore replica(1001);
  ClientConfig config;
  config.user = "alice";
  auto token = dir.login("alice", "alice-password", 1001, now);
  ASSERT_TRUE(token.is_ok());
  config.token = *token;
  SyncClient client(replica, config);
  server.on_connect(1, now);
  client.on_connected(now);
  for (int round = 0; round < 100; ++round) {
    bool moved = false;
    for (protocol::Message& m : client.take_outgoing()) {
      moved = true;
      server.on_message(1, m, now);
    }
    for (SyncServer::Outgoing& o : server.take_outgoing()) {
      moved = true;
      client.on_message(o.message, now);
    }
    if (!moved) break;
  }
  ASSERT_EQ(client.state(), SyncClient::State::kSyncing) << client.stop_reason().to_string();
  std::vector<RecordState> records;
  for (auto& [key, r] : replica.records()) records.push_back(r);
  auto alice_export = admin->export_json(std::string("alice"));
  ASSERT_TRUE(alice_export.is_ok());
  EXPECT_EQ(canonical_json(records), *alice_export);
  EXPECT_NE(alice_export->find("North Bakery"), std::string::npos);
  EXPECT_EQ(alice_export->find("South Bakery"), std::string::npos);
  EXPECT_NE(alice_export->find("Flour"), std::string::npos);
  auto whole = admin->export_json(std::nullopt);
  ASSERT_TRUE(whole.is_ok());
  EXPECT_NE(whole->find("South Bakery"), std::string::npos);
  EXPECT_EQ(admin->export_json(std::string("nobody")).status().code(), ErrorCode::kInvalidArgument);

  // Revoked: refused at the next connection, told to erase.
  ASSERT_TRUE(dir.revoke_device(1001, now).is_ok());
  protocol::Hello hello;
  hello.schema_version = schema::kSchemaVersion;
  hello.node = 1001;
  hello.token = *token;
  hello.client_time_ms = now;
  server.on_connect(2, now);
  server.on_message(2, hello, now);
  std::vector<SyncServer::Outgoing> out = server.take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  auto* error = std::get_if<protocol::Error>(&out[0].message);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->code, ErrorCode::kDeviceRevoked);
}

struct CliRun {
  int code = 0;
  std::string out, err;
};

CliRun admin_cli(const std::vector<std::string>& args, const std::string& stdin_text = "") {
  std::istringstream in(stdin_text);
  std::ostringstream out, err;
  CliRun r;
  r.code = run_admin(args, in, out, err, fast_options());
  r.out = out.str();
  r.err = err.str();
  return r;
}

// `account move` (API and command line): a head-office transaction from the admin node that carries the scope
// move, so the old territory's device drops the account on its next pull; refusals write nothing.
TEST(Admin, MoveAccountIsAHeadOfficeTransactionWithAScopeMove) {
  TempDir tmp;
  auto admin = open_admin(tmp.path());
  Directory& dir = admin->directory();
  const int64_t now = admin->now_ms();
  ASSERT_TRUE(dir.add_territory({"north", "North"}).is_ok());
  ASSERT_TRUE(dir.add_territory({"south", "South"}).is_ok());
  ASSERT_TRUE(dir.add_user({"alice", "Alice", Role::kRep}, "alice-password", now).is_ok());
  ASSERT_TRUE(dir.add_user({"carol", "Carol", Role::kRep}, "carol-password", now).is_ok());
  ASSERT_TRUE(dir.add_user({"hq", "HQ", Role::kHeadOffice}, "hq-password", now).is_ok());
  ASSERT_TRUE(dir.assign_territory("alice", "north").is_ok());
  ASSERT_TRUE(dir.assign_territory("carol", "south").is_ok());
  ASSERT_TRUE(dir.register_device(1001, "alice", now).is_ok());
  SyncServer server(admin->store(), dir, ServerConfig{});
  RecordIdGenerator ids(5);
  const RecordId account = ids.next(now);
  write_account(server, admin->store(), 3, *dir.principal("hq"), account, "Moving Bakery", "north", now);

  // Alice's device holds the account before the move.
  MemoryReplicaStore replica(1001);
  ClientConfig config;
  config.user = "alice";
  config.token = *dir.login("alice", "alice-password", 1001, now);
  SyncClient client(replica, config);
  auto exchange = [&] {
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      for (protocol::Message& m : client.take_outgoing()) {
        moved = true;
        server.on_message(7, m, now);
      }
      for (SyncServer::Outgoing& o : server.take_outgoing()) {
        moved = true;
        client.on_message(o.message, now);
      }
      if (!moved) break;
    }
  };
  server.on_connect(7, now);
  client.on_connected(now);
  exchange();
  ASSERT_EQ(replica.records().count(RecordKey{EntityId::kAccount, account}), 1u);

  CentralStore& store = admin->store();
  const uint64_t head = store.head_seq().value();
  EXPECT_EQ(admin->move_account("not-an-id", "south").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(admin->move_account(account.to_string(), "west").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(admin->move_account(ids.next(now).to_string(), "south").code(), ErrorCode::kRecordNotFound);
  EXPECT_TRUE(admin->move_account(account.to_string(), "north").is_ok()) << "already there";
  EXPECT_EQ(store.head_seq().value(), head) << "nothing written";

  CliRun moved = admin_cli({"--data-dir", tmp.path(), "account", "move", account.to_string(), "south"});
  ASSERT_EQ(moved.code, 0) << moved.err;
  EXPECT_EQ(moved.out, "");
  ASSERT_EQ(store.head_seq().value(), head + 1);
  std::vector<ServerTxn> log = store.read_log(head, 100).value();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].origin_node, kAdminNode);
  EXPECT_EQ(log[0].origin_user, kAdminUser);
  ASSERT_EQ(log[0].moves.size(), 1u);
  EXPECT_EQ(log[0].moves[0].record, account);
  EXPECT_EQ(log[0].moves[0].from, (ScopeKey{ScopeKey::Kind::kTerritory, "north"}));
  EXPECT_EQ(log[0].moves[0].to, (ScopeKey{ScopeKey::Kind::kTerritory, "south"}));
  EXPECT_TRUE(store.read_conflicts(0, 100).value().empty()) << "the move carries its base: not concurrent";
  EXPECT_EQ(admin->export_json(std::string("alice"))->find("Moving Bakery"), std::string::npos);
  EXPECT_NE(admin->export_json(std::string("carol"))->find("Moving Bakery"), std::string::npos);

  client.on_tick(now + tuning::kIdlePullIntervalMs + 1);  // the next pull
  exchange();
  EXPECT_EQ(client.state(), SyncClient::State::kSyncing) << client.stop_reason().to_string();
  EXPECT_EQ(replica.records().count(RecordKey{EntityId::kAccount, account}), 0u) << "purged, not resynced";

  CliRun back = admin_cli({"--data-dir", tmp.path(), "account", "move", account.to_string(), "west"});
  EXPECT_EQ(back.code, 1);
  EXPECT_EQ(back.err, "fieldsync-admin: no territory west (invalid_argument)\n");
}

TEST(AdminCli, CommandsAndErrors) {
  TempDir tmp;
  const std::string d = tmp.file("data");
  auto ok = [&](std::vector<std::string> args, const std::string& in = "") {
    args.insert(args.begin(), {"--data-dir", d});
    CliRun r = admin_cli(args, in);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    return r.out;
  };
  ok({"territory", "add", "--id", "north", "--name", "North"});
  ok({"user", "add", "--id", "alice", "--name", "Alice A", "--role", "rep"}, "alice-password\n");
  ok({"user", "add", "--id", "mia", "--name", "Mia", "--role", "manager", "--password", "mia-password"});
  ok({"assign", "--user", "alice", "--territory", "north"});
  ok({"assign", "--manager", "mia", "--rep", "alice"});
  ok({"device", "register", "--node", "0x10ab", "--user", "alice"});
  EXPECT_EQ(ok({"user", "list"}), "alice\trep\tAlice A\nmia\tmanager\tMia\n");
  EXPECT_EQ(ok({"territory", "list"}), "north\tNorth\n");
  EXPECT_NE(ok({"device", "list"}).find("4267\talice\t"), std::string::npos);
  std::string token = ok({"login", "--user", "alice", "--node", "4267"}, "alice-password\n");
  ASSERT_FALSE(token.empty());
  token.pop_back();
  std::string product = ok({"product", "add", "--sku", "P-1", "--name", "Flour", "--unit", "bag"});
  EXPECT_TRUE(RecordId::parse(product.substr(0, product.size() - 1)).has_value()) << product;
  ok({"price", "set", "--product", "P-1", "--list", "retail", "--cents", "299", "--currency", "EUR"});
  std::string all = ok({"export"});
  EXPECT_EQ(ok({"export", "--user", "alice"}), all) << "only catalogue so far: alice sees all of it";
  // A short-lived token: the directory refuses it once it ran out.
  {
    const int64_t before = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    std::string short_lived =
        ok({"login", "--user", "alice", "--node", "4267", "--ttl-ms", "50"}, "alice-password\n");
    ASSERT_FALSE(short_lived.empty());
    short_lived.pop_back();
    auto admin = open_admin(d);
    std::optional<TokenClaims> claims = admin->directory().verify_token(short_lived);
    ASSERT_TRUE(claims.has_value());
    EXPECT_GE(claims->expiry_ms, before + 50);
    EXPECT_LT(claims->expiry_ms, before + 50 + 60'000);
    protocol::Hello h;
    h.node = 4267;
    h.token = short_lived;
    EXPECT_TRUE(admin->directory().authenticate(h, claims->expiry_ms - 1).is_ok());
    EXPECT_EQ(admin->directory().authenticate(h, claims->expiry_ms).status().code(),
              ErrorCode::kTokenExpired);
  }
  ok({"device", "revoke", "--node", "4267"});
  EXPECT_NE(ok({"device", "list"}).find("revoked"), std::string::npos);

  // The token works against the directory the CLI wrote (until the revoke above).
  {
    auto admin = open_admin(d);
    protocol::Hello h;
    h.node = 4267;
    h.token = token;
    EXPECT_EQ(admin->directory().authenticate(h, admin->now_ms()).status().code(), ErrorCode::kDeviceRevoked);
  }

  auto fails = [&](std::vector<std::string> args, int code, const std::string& in = "") {
    CliRun r = admin_cli(args, in);
    EXPECT_EQ(r.code, code) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_EQ(r.out, "");
    return r.err;
  };
  EXPECT_NE(fails({"user", "list"}, 2).find("--data-dir"), std::string::npos);
  // --store names a PostgreSQL database, --data-dir a SQLite directory: one of them, and each its kind.
  EXPECT_NE(fails({"--store", d, "user", "list"}, 2).find("postgresql://"), std::string::npos);
  EXPECT_NE(
      fails({"--data-dir", d, "--store", "postgresql://u@127.0.0.1:1/x", "user", "list"}, 2).find("either"),
      std::string::npos);
  EXPECT_NE(fails({"--store", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "user", "list"}, 1)
                .find("storage_io"),
            std::string::npos)
      << "an unreachable database is a storage error, not a crash";
  fails({"--data-dir", d}, 2);
  fails({"--data-dir", d, "frobnicate"}, 2);
  fails({"--data-dir", d, "user", "add", "--id", "x", "--name", "X", "--role", "king", "--password",
         "12345678"},
        2);
  fails({"--data-dir", d, "user", "add", "--id", "x", "--name", "X", "--role", "rep"}, 2,
        "");  // no stdin line
  fails({"--data-dir", d, "device", "register", "--node", "12z", "--user", "alice"}, 2);
  fails({"--data-dir", d, "price", "set", "--product", "P-1", "--list", "r", "--cents", "1.5", "--currency",
         "EUR"},
        2);
  fails({"--data-dir", d, "user", "list", "--sku", "x"}, 2);
  fails({"--data-dir", d, "export", "--bogus", "x"}, 2);
  EXPECT_NE(
      fails({"--data-dir", d, "login", "--user", "alice", "--node", "4267", "--password", "wrong-pass"}, 1)
          .find("authentication failed"),
      std::string::npos);
  fails({"--data-dir", d, "user", "add", "--id", "alice", "--name", "A", "--role", "rep", "--password",
         "12345678"},
        1);
  fails({"--data-dir", d, "assign", "--user", "alice", "--territory", "nowhere"}, 1);
  fails({"--data-dir", d, "product", "add", "--sku", "P-1", "--name", "Dup"}, 1);
  fails({"--data-dir", d, "device", "revoke", "--node", "999999"}, 1);
  fails({"--data-dir", d, "export", "--user", "nobody"}, 1);
  fails({"--data-dir", tmp.file("data/directory.db"), "user", "list"}, 1);  // not a directory
  fails({"--data-dir", d, "login", "--user", "alice", "--node", "4267", "--ttl-ms", "0"}, 2,
        "alice-password\n");
  fails({"--data-dir", d, "login", "--user", "alice", "--node", "4267", "--ttl-ms", "1e3"}, 2,
        "alice-password\n");
  fails({"--data-dir", d, "export", "--ttl-ms", "5"}, 2);
  fails({"--data-dir", d, "account", "move", "01"}, 2);
  fails({"--data-dir", d, "account", "move", "a", "b", "c"}, 2);
  fails({"--data-dir", d, "account", "move", "not-an-id", "north"}, 1);
  fails({"--data-dir", d, "account", "move", "0190f3b2-0000-7000-8000-000000000000", "north"}, 1);
}

// Directory changes made with the admin tool leave audit rows like the API's, with the tool as the actor;
// reads (list, login, export) leave none.
TEST(AdminCli, DirectoryChangesLeaveAnAuditTrail) {
  TempDir tmp;
  const std::string d = tmp.file("data");
  auto ok = [&](std::vector<std::string> args, const std::string& in = "") {
    args.insert(args.begin(), {"--data-dir", d});
    CliRun r = admin_cli(args, in);
    EXPECT_EQ(r.code, 0) << r.err;
  };
  ok({"territory", "add", "--id", "north", "--name", "North"});
  ok({"user", "add", "--id", "alice", "--name", "Alice A", "--role", "rep"}, "alice-password\n");
  ok({"user", "add", "--id", "mia", "--name", "Mia", "--role", "manager", "--password", "mia-password"});
  ok({"assign", "--user", "alice", "--territory", "north"});
  ok({"assign", "--manager", "mia", "--rep", "alice"});
  ok({"user", "passwd", "--id", "alice"}, "new-alice-password\n");
  ok({"device", "register", "--node", "0x10ab", "--user", "alice"});
  ok({"user", "list"});
  ok({"login", "--user", "alice", "--node", "4267"}, "new-alice-password\n");
  ok({"device", "revoke", "--node", "4267"});
  // A refused change leaves no row.
  CliRun bad = admin_cli({"--data-dir", d, "assign", "--manager", "alice", "--rep", "mia"});
  EXPECT_NE(bad.code, 0);

  auto admin = open_admin(d);
  Result<std::vector<AuditRecord>> trail = admin->directory().audit_trail(0, 100);
  ASSERT_TRUE(trail.is_ok()) << trail.status().to_string();
  std::vector<std::string> seen;
  for (const AuditRecord& r : *trail) {
    EXPECT_EQ(r.actor, kAdminUser);
    EXPECT_GT(r.at_ms, 0);
    seen.push_back(r.action + " " + r.target + " " + r.detail);
  }
  const std::vector<std::string> expected = {
      R"(territory.create north {"name":"North"})",
      R"(user.create alice {"role":"rep","display_name":"Alice A"})",
      R"(user.create mia {"role":"manager","display_name":"Mia"})",
      R"(user.update alice {"territories":["north"]})",
      R"(user.update mia {"team":["alice"]})",
      "user.password alice {}",
      R"(device.register 4267 {"user":"alice"})",
      "device.revoke 4267 {}",
  };
  EXPECT_EQ(seen, expected);
}

TEST(AdminCli, HelpDocumentsEveryCommand) {
  CliRun r = admin_cli({"--help"});
  EXPECT_EQ(r.code, 0);
  for (const char* cmd :
       {"user add", "user passwd", "user list", "territory add", "territory list", "assign --user",
        "assign --manager", "product add", "price set", "device register", "device list", "device revoke",
        "login", "--ttl-ms", "account move", "export", "--data-dir", "--password"})
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
}

// ---- The binary

CliRun shell(const std::string& command) {
  TempDir tmp;
  const std::string out = tmp.file("out"), err = tmp.file("err");
  int status = std::system((command + " >" + out + " 2>" + err).c_str());
  auto slurp = [](const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  };
  return CliRun{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

TEST(AdminBinary, ScriptedSetupThenExport) {
  TempDir tmp;
  const std::string bin = FIELDSYNC_ADMIN_BIN;
  const std::string d = " --data-dir '" + tmp.file("data") + "' ";
  CliRun help = shell(bin + " --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("device revoke"), std::string::npos);

  EXPECT_EQ(shell(bin + d + "territory add --id north").code, 0);
  // The real work factor here (210,000 iterations), password from stdin.
  CliRun add =
      shell("printf 'alice-password\\n' | " + bin + d + "user add --id alice --name 'Alice A' --role rep");
  EXPECT_EQ(add.code, 0) << add.err;
  EXPECT_EQ(shell(bin + d + "assign --user alice --territory north").code, 0);
  EXPECT_EQ(shell(bin + d + "device register --node 4242 --user alice").code, 0);
  CliRun login = shell("printf 'alice-password\\n' | " + bin + d + "login --user alice --node 4242");
  EXPECT_EQ(login.code, 0) << login.err;
  EXPECT_GT(login.out.size(), 40u);
  CliRun bad = shell(bin + d + "login --user alice --node 4242 --password nope-nope");
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(bad.err, "fieldsync-admin: authentication failed (auth_failed)\n");
  EXPECT_EQ(shell(bin + d + "product add --sku P-9 --name Salt").code, 0);
  CliRun exported = shell(bin + d + "export --user alice");
  EXPECT_EQ(exported.code, 0) << exported.err;
  auto admin = open_admin(tmp.file("data"));
  EXPECT_EQ(exported.out, *admin->export_json(std::string("alice")));
  EXPECT_NE(exported.out.find("\"sku\":\"P-9\""), std::string::npos);
  CliRun usage = shell(bin + d + "nonsense");
  EXPECT_EQ(usage.code, 2);
}

}  // namespace
}  // namespace fieldsync::server

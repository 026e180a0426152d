#include "fieldsync/server/admin.h"

#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>

#include "fieldsync/io/cli_options.h"
#include "fieldsync/server/log_follower.h"
#include "fieldsync/sync/export.h"
#include "fieldsync/sync/scope.h"
#include "fieldsync/sync/server.h"
#include "migrate.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace {

namespace fs = std::filesystem;

using namespace schema::fields;

// The admin tool's SyncServer never has sessions: nothing authenticates through it.
class NoSessions final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello&, int64_t) override {
    return Status(ErrorCode::kAuthFailed, "authentication failed");
  }
};

Change create(EntityId e, RecordId id) {
  return Change{ChangeOp::kCreate, e, id};
}
Change set(EntityId e, RecordId id, uint16_t field, Value v) {
  Change c{ChangeOp::kSet, e, id, field};
  c.value = std::move(v);
  return c;
}

}  // namespace

Admin::Admin(Options options, OpenedStore opened)
    : options_(std::move(options)),
      directory_(std::move(opened.directory)),
      store_(std::move(opened.store)),
      sqlite_(opened.sqlite),
      postgres_(opened.postgres),
      postgresql_url_(std::move(opened.postgresql_url)),
      ids_(std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32)) {}

Admin::~Admin() = default;

int64_t Admin::now_ms() const {
  return options_.now_ms ? options_.now_ms() : wall_ms();
}

Result<std::unique_ptr<Admin>> Admin::open(const std::string& location, Options options) {
  if (!is_postgresql_url(location)) {
    const std::string& data_dir = location;
    std::error_code ec;
    if (!fs::exists(data_dir, ec)) {
      if (!fs::create_directories(data_dir, ec) || ec)
        return Status(ErrorCode::kStorageIo,
                      "cannot create data directory " + data_dir + ": " + ec.message());
      ::chmod(data_dir.c_str(), 0700);
    } else if (!fs::is_directory(data_dir, ec)) {
      return Status(ErrorCode::kInvalidArgument, data_dir + " is not a directory");
    }
  }
  StoreOpenOptions o;
  o.sqlite = options.store;
  o.directory = options.directory;
  Result<OpenedStore> opened = open_store(location, o);
  if (!opened) return opened.status();
  return std::unique_ptr<Admin>(new Admin(std::move(options), std::move(opened.value())));
}

Status Admin::apply(std::vector<Change> changes) {
  NoSessions auth;
  SyncServer server(*store_, auth, ServerConfig{});
  const Principal who{std::string(kAdminUser), schema::Role::kHeadOffice, {}, {}};
  const int64_t now = now_ms();
  Result<Hlc> persisted = store_->clock();
  if (!persisted) return persisted.status();
  HybridClock clock(std::max(*persisted, server.hlc()));
  std::map<RecordKey, std::optional<RecordState>> current;
  for (Change& c : changes) {
    c.version = Version{clock.tick(now), kAdminNode};
    if (c.op != ChangeOp::kSet) continue;
    // The base is the version this write replaces: head office saw it, so the write is not concurrent.
    RecordKey key{c.entity, c.record};
    auto it = current.find(key);
    if (it == current.end()) {
      Result<std::optional<RecordState>> stored = store_->load(c.entity, c.record);
      if (!stored) return stored.status();
      it = current.emplace(key, std::move(stored.value())).first;
    }
    if (it->second)
      if (const FieldState* f = it->second->field(c.field)) c.base = f->version;
  }
  // Another admin process may take the same node_seq between our read and our commit: the store's dedupe
  // answers kDuplicate and we try again with the next one.
  for (int attempt = 0; attempt < 5; ++attempt) {
    ClientTxn txn;
    txn.node = kAdminNode;
    Result<NodeState> node = store_->begin()->node_state(kAdminNode);
    if (!node) return node.status();
    txn.node_seq = node->last_node_seq + 1;
    txn.created_at_ms = now;
    txn.changes = changes;
    Result<protocol::TxnResult> applied = server.apply_local(txn, who, now);
    if (!applied) return applied.status();  // the store failed: nothing was written
    const protocol::TxnResult& r = *applied;
    switch (r.outcome) {
      case protocol::TxnOutcome::kApplied:
        // Servers on a shared PostgreSQL store fan it out now rather than at their next poll; the write
        // stands either way.
        if (!postgresql_url_.empty()) (void)notify_log(postgresql_url_);
        return Status::ok();
      case protocol::TxnOutcome::kRejected:
        return Status(r.reason, r.message);
      case protocol::TxnOutcome::kDuplicate:
        continue;
    }
  }
  return Status(ErrorCode::kStorageLocked, "another admin keeps writing; try again", true);
}

Result<std::vector<RecordState>> Admin::records_of(EntityId entity) {
  std::vector<RecordState> out;
  RecordKey after{entity, RecordId{}};
  for (;;) {
    Result<std::vector<RecordState>> chunk = store_->scan(after, 500);
    if (!chunk) return chunk.status();
    bool more = !chunk->empty();
    for (RecordState& r : *chunk) {
      if (r.entity != entity) {
        more = false;
        break;
      }
      after = RecordKey{r.entity, r.id};
      if (!r.deleted) out.push_back(std::move(r));
    }
    if (!more) return out;
  }
}

Result<std::optional<RecordState>> Admin::find_product(const std::string& sku_or_id) {
  if (std::optional<RecordId> id = RecordId::parse(sku_or_id)) {
    Result<std::optional<RecordState>> r = store_->load(EntityId::kProduct, *id);
    if (!r || (*r && !(*r)->deleted)) return r;
  }
  Result<std::vector<RecordState>> products = records_of(EntityId::kProduct);
  if (!products) return products.status();
  for (RecordState& r : *products) {
    const Value& sku = r.get(kProductSku);
    if (sku.kind() == Value::Kind::kText && sku.as_text() == sku_or_id)
      return std::optional<RecordState>(std::move(r));
  }
  return std::optional<RecordState>();
}

Result<RecordId> Admin::add_product(const std::string& sku, const std::string& name,
                                    const std::string& unit) {
  Result<std::optional<RecordState>> existing = find_product(sku);
  if (!existing) return existing.status();
  if (*existing) return Status(ErrorCode::kInvalidArgument, "a product with SKU " + sku + " exists");
  RecordId id = ids_.next(now_ms());
  std::vector<Change> changes = {create(EntityId::kProduct, id),
                                 set(EntityId::kProduct, id, kProductSku, Value::text(sku)),
                                 set(EntityId::kProduct, id, kProductName, Value::text(name)),
                                 set(EntityId::kProduct, id, kProductActive, Value::boolean(true))};
  if (!unit.empty()) changes.push_back(set(EntityId::kProduct, id, kProductUnit, Value::text(unit)));
  if (Status s = apply(std::move(changes)); !s) return s;
  return id;
}

Result<RecordId> Admin::set_price(const std::string& product, const std::string& price_list, int64_t cents,
                                  const std::string& currency) {
  Result<std::optional<RecordState>> p = find_product(product);
  if (!p) return p.status();
  if (!*p) return Status(ErrorCode::kInvalidArgument, "no product " + product);
  const std::string product_id = (*p)->id.to_string();
  Result<std::vector<RecordState>> entries = records_of(EntityId::kPriceListEntry);
  if (!entries) return entries.status();
  for (const RecordState& e : *entries) {
    const Value& pid = e.get(kPriceProduct);
    const Value& list = e.get(kPriceList);
    if (pid.kind() == Value::Kind::kText && pid.as_text() == product_id &&
        list.kind() == Value::Kind::kText && list.as_text() == price_list) {
      Status s = apply({set(EntityId::kPriceListEntry, e.id, kPriceUnitPrice, Value::integer(cents)),
                        set(EntityId::kPriceListEntry, e.id, kPriceCurrency, Value::text(currency))});
      if (!s) return s;
      return e.id;
    }
  }
  RecordId id = ids_.next(now_ms());
  Status s = apply({create(EntityId::kPriceListEntry, id),
                    set(EntityId::kPriceListEntry, id, kPriceProduct, Value::text(product_id)),
                    set(EntityId::kPriceListEntry, id, kPriceList, Value::text(price_list)),
                    set(EntityId::kPriceListEntry, id, kPriceUnitPrice, Value::integer(cents)),
                    set(EntityId::kPriceListEntry, id, kPriceCurrency, Value::text(currency))});
  if (!s) return s;
  return id;
}

Status Admin::move_account(const std::string& account_id, const std::string& territory) {
  std::optional<RecordId> id = RecordId::parse(account_id);
  if (!id) return Status(ErrorCode::kInvalidArgument, "bad account id " + account_id);
  std::vector<Territory> known = directory_->territories();
  if (std::none_of(known.begin(), known.end(), [&](const Territory& t) { return t.id == territory; }))
    return Status(ErrorCode::kInvalidArgument, "no territory " + territory);
  Result<std::optional<RecordState>> stored = store_->load(EntityId::kAccount, *id);
  if (!stored) return stored.status();
  const std::optional<RecordState>& account = *stored;
  if (!account || account->deleted) return Status(ErrorCode::kRecordNotFound, "no account " + account_id);
  const Value& current = account->get(kAccountTerritory);
  if (current.kind() == Value::Kind::kText && current.as_text() == territory) return Status::ok();
  return apply({set(EntityId::kAccount, *id, kAccountTerritory, Value::text(territory))});
}

Result<std::string> Admin::export_json(const std::optional<UserId>& user) {
  std::optional<Principal> who;
  if (user) {
    Result<Principal> p = directory_->principal(*user);
    if (!p) return Status(ErrorCode::kInvalidArgument, "no user " + *user);
    who = std::move(p.value());
  }
  CheckedStoreReader reader(*store_);
  std::vector<RecordState> records;
  RecordKey after;
  for (;;) {
    Result<std::vector<RecordState>> chunk = store_->scan(after, 500);
    if (!chunk) return chunk.status();
    if (chunk->empty()) break;
    after = RecordKey{chunk->back().entity, chunk->back().id};
    for (RecordState& r : *chunk) {
      if (r.deleted) continue;
      if (who && !can_see(*who, resolve_scope(r, reader))) continue;
      records.push_back(std::move(r));
    }
  }
  if (Status s = reader.status(); !s) return s;
  return canonical_json(records);
}

// ---- Command line

std::string admin_usage() {
  return R"(usage: fieldsync-admin --data-dir DIR COMMAND [OPTIONS]
       fieldsync-admin --store postgresql://USER@HOST:PORT/DB COMMAND [OPTIONS]

Administers a fieldsync server's data directory (DIR/directory.db: users, territories, devices, token key;
DIR/central.db: the central store). DIR is created (mode 0700) if missing. Safe to run while fieldsync-server
runs on the same directory: connected devices receive catalogue changes on their next pull.

Users, territories and assignments:
  user add --id ID --name NAME --role rep|manager|head_office [--password PASSWORD]
                         add a user; without --password, the password is read as one line from stdin
                         (at least 8 characters)
  user passwd --id ID [--password PASSWORD]
                         set a user's password
  user list              print: id, role, display name (tab-separated)
  territory add --id ID [--name NAME]
                         add a territory (ids: letters, digits, . _ - @; at most 64 characters)
  territory list         print: id, name
  assign --user USER --territory TERRITORY
                         give a rep (or a manager, for their own) a territory
  assign --manager MANAGER --rep REP
                         put a rep in a manager's team: the manager sees the rep's territories and calendar

Catalogue (written to the central store as head office, pulled by devices like any change):
  product add --sku SKU --name NAME [--unit UNIT]
                         add an active product; prints its record id
  price set --product SKU|ID --list PRICE_LIST --cents CENTS --currency CUR
                         set a product's unit price in a price list (creates the entry if needed); prints the
                         entry's record id

Devices and tokens:
  device register --node NODE --user USER
                         register a device's node id (decimal or 0x-hex, >= 16, unique) for a user
  device list            print: node, user, registered (UTC ms), active|revoked
  device revoke --node NODE
                         revoke a device (a lost phone): refused at its next connection and told to erase
                         its local data
  login --user USER --node NODE [--password PASSWORD] [--ttl-ms MS]
                         print a signed device token for the user on that registered device (for scripts
                         and the demo); without --password it is read from stdin. The token expires after
                         MS milliseconds (default 12 hours, at most 366 days)

Accounts (written to the central store as head office):
  account move ACCOUNT_ID TERRITORY
                         move an account to another territory: it leaves the devices that could see it and
                         enters those of TERRITORY, with its contacts, visits, orders and lines and
                         opportunities, on their next sync (no resync)

Moving to PostgreSQL:
  migrate --from DIR --to postgresql://USER@HOST:PORT/DB
                         copy a data directory (stop its server first) into an empty PostgreSQL database:
                         records, log with its sequence numbers, conflicts, rejections, node watermarks,
                         users, devices and the token key; then verify every table (rows and a checksum,
                         printed: table, rows, sha256). Devices continue against servers started with
                         --store on it without a resync. Takes neither --data-dir nor --store

Export:
  export [--user USER]   print the central store's records as canonical JSON: all of them, or only what
                         USER can see -- the same bytes `fieldsync-rep export` prints for that user's replica

Options:
  --data-dir DIR         the server's data directory
  --store URL            or: the PostgreSQL database of servers started with --store URL (every command
                         works on it; servers running on it receive catalogue changes and account moves
                         at once)
  -h, --help             this text

Exit status: 0 done; 1 the command failed (one line on stderr); 2 usage error.
)";
}

namespace {

struct Args {
  std::vector<std::string> words;
  std::map<std::string, std::string> options;
};

struct UsageError {
  std::string message;
};

Args parse(const std::vector<std::string>& argv) {
  cli::Options o(
      {"data-dir", "store", "id",      "name", "role",  "password", "territory", "user",   "manager", "rep",
       "sku",      "unit",  "product", "list", "cents", "currency", "node",      "ttl-ms", "from",    "to"},
      {});
  if (std::string e = o.parse(argv); !e.empty()) throw UsageError{e};
  Args a;
  a.words = o.words();
  for (const std::string& name : o.given()) a.options["--" + name] = o.get(name);
  return a;
}

std::string need(const Args& a, const std::string& key) {
  auto it = a.options.find(key);
  if (it == a.options.end() || it->second.empty()) throw UsageError{"missing " + key};
  return it->second;
}

std::optional<std::string> maybe(const Args& a, const std::string& key) {
  auto it = a.options.find(key);
  if (it == a.options.end()) return std::nullopt;
  return it->second;
}

void only(const Args& a, std::initializer_list<std::string> allowed) {
  for (const auto& [key, value] : a.options) {
    if (key == "--data-dir" || key == "--store") continue;
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      throw UsageError{key + " does not apply to this command"};
  }
}

NodeId parse_node(const std::string& text) {
  uint64_t v = 0;
  const bool hex = text.rfind("0x", 0) == 0 || text.rfind("0X", 0) == 0;
  const char* first = text.data() + (hex ? 2 : 0);
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, v, hex ? 16 : 10);
  if (ec != std::errc() || ptr != last || first == last) throw UsageError{"bad node id " + text};
  return v;
}

int64_t parse_ttl_ms(const std::string& text) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty() || v < 1 || v > kMaxTokenTtlMs)
    throw UsageError{"--ttl-ms takes milliseconds in [1, " + std::to_string(kMaxTokenTtlMs) + "], got " +
                     text};
  return v;
}

int64_t parse_cents(const std::string& text) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty())
    throw UsageError{"--cents takes an integer number of cents, got " + text};
  return v;
}

std::string password(const Args& a, std::istream& in) {
  if (auto p = maybe(a, "--password")) return *p;
  std::string line;
  if (!std::getline(in, line)) throw UsageError{"no password: give --password or one line on stdin"};
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  return line;
}

}  // namespace

int run_admin(const std::vector<std::string>& argv, std::istream& in, std::ostream& out, std::ostream& err,
              const Admin::Options& options) {
  for (const std::string& s : argv) {
    if (s == "--help" || s == "-h" || s == "help") {
      out << admin_usage();
      return 0;
    }
  }
  auto fail = [&](const Status& s) {
    err << "fieldsync-admin: " << s.message() << " (" << to_string(s.code()) << ")\n";
    return 1;
  };
  try {
    Args a = parse(argv);
    if (a.words.empty()) throw UsageError{"no command"};
    if (a.words.size() == 1 && a.words[0] == "migrate") {
      only(a, {"--from", "--to"});
      if (a.options.count("--data-dir") || a.options.count("--store"))
        throw UsageError{"migrate takes --from DIR --to URL, not --data-dir or --store"};
      if (!is_postgresql_url(need(a, "--to"))) throw UsageError{"--to takes a postgresql:// URL"};
      Result<MigrationReport> r =
          migrate_to_postgresql(need(a, "--from"), need(a, "--to"), options.directory);
      if (!r) return fail(r.status());
      for (const MigrationReport::Table& t : r->tables)
        out << t.name << '\t' << t.rows << '\t' << t.sha256 << '\n';
      out << "migrated and verified: " << r->tables.size() << " tables, log head " << r->head_seq << '\n';
      return 0;
    }
    const bool has_store = a.options.count("--store") != 0, has_dir = a.options.count("--data-dir") != 0;
    if (has_store == has_dir) throw UsageError{"give either --data-dir DIR or --store postgresql://..."};
    const std::string data_dir = has_store ? need(a, "--store") : need(a, "--data-dir");
    if (has_store && !is_postgresql_url(data_dir))
      throw UsageError{"--store takes a postgresql:// URL; a SQLite store is named by --data-dir"};
    auto cmd = [&](std::string_view w0, std::string_view w1 = {}) {
      if (a.words[0] != w0) return false;
      if (w1.empty()) return a.words.size() == 1;
      return a.words.size() == 2 && a.words[1] == w1;
    };
    // `account move` takes its two operands as words.
    const bool account_move = a.words.size() >= 2 && a.words[0] == "account" && a.words[1] == "move";
    if (account_move && a.words.size() != 4) throw UsageError{"usage: account move ACCOUNT_ID TERRITORY"};
    const bool known = cmd("user", "add") || cmd("user", "passwd") || cmd("user", "list") ||
                       cmd("territory", "add") || cmd("territory", "list") || cmd("assign") ||
                       cmd("product", "add") || cmd("price", "set") || cmd("device", "register") ||
                       cmd("device", "list") || cmd("device", "revoke") || cmd("login") || cmd("export") ||
                       account_move;
    if (!known) {
      std::string words;
      for (const std::string& w : a.words) words += (words.empty() ? "" : " ") + w;
      throw UsageError{"unknown command '" + words + "'"};
    }
    Admin::Options effective = options;
    if (auto ttl = maybe(a, "--ttl-ms")) {
      if (!cmd("login")) throw UsageError{"--ttl-ms does not apply to this command"};
      effective.directory.token_ttl_ms = parse_ttl_ms(*ttl);
    }
    Result<std::unique_ptr<Admin>> opened = Admin::open(data_dir, effective);
    if (!opened) return fail(opened.status());
    Admin& admin = **opened;
    Directory& dir = admin.directory();
    const int64_t now = admin.now_ms();
    // The directory changes below leave the same audit rows as the head-office API's (who, when, what),
    // with the admin tool's writer name as the actor: whoever can run it owns the data directory.
    auto audited = [&](std::string action, std::string target, boost::json::object detail = {}) {
      if (Status s = dir.audit(AuditRecord{0, now, std::string(kAdminUser), std::move(action),
                                           std::move(target), boost::json::serialize(detail)});
          !s)
        return fail(
            Status(s.code(), "the change was made but its audit row was not written: " + s.message()));
      return 0;
    };
    auto list = [](Result<std::vector<std::string>> r) {
      boost::json::array a;
      if (r)
        for (const std::string& v : r.value()) a.emplace_back(v);
      return a;
    };

    if (cmd("user", "add")) {
      only(a, {"--id", "--name", "--role", "--password"});
      std::optional<schema::Role> role = schema::role_from_string(need(a, "--role"));
      if (!role) throw UsageError{"--role must be rep, manager or head_office"};
      User u{need(a, "--id"), need(a, "--name"), *role};
      if (Status s = dir.add_user(u, password(a, in), now); !s) return fail(s);
      return audited("user.create", u.id,
                     {{"role", schema::to_string(u.role)}, {"display_name", u.display_name}});
    } else if (cmd("user", "passwd")) {
      only(a, {"--id", "--password"});
      std::string id = need(a, "--id");
      if (Status s = dir.set_password(id, password(a, in)); !s) return fail(s);
      return audited("user.password", id);
    } else if (cmd("user", "list")) {
      only(a, {});
      for (const User& u : dir.users())
        out << u.id << '\t' << schema::to_string(u.role) << '\t' << u.display_name << '\n';
    } else if (cmd("territory", "add")) {
      only(a, {"--id", "--name"});
      if (Status s = dir.add_territory({need(a, "--id"), maybe(a, "--name").value_or("")}); !s)
        return fail(s);
      return audited("territory.create", need(a, "--id"), {{"name", maybe(a, "--name").value_or("")}});
    } else if (cmd("territory", "list")) {
      only(a, {});
      for (const Territory& t : dir.territories()) out << t.id << '\t' << t.name << '\n';
    } else if (cmd("assign")) {
      if (a.options.count("--manager")) {
        only(a, {"--manager", "--rep"});
        if (Status s = dir.assign_team(need(a, "--manager"), need(a, "--rep")); !s) return fail(s);
        return audited("user.update", need(a, "--manager"), {{"team", list(dir.team(need(a, "--manager")))}});
      } else {
        only(a, {"--user", "--territory"});
        if (Status s = dir.assign_territory(need(a, "--user"), need(a, "--territory")); !s) return fail(s);
        return audited("user.update", need(a, "--user"),
                       {{"territories", list(dir.user_territories(need(a, "--user")))}});
      }
    } else if (cmd("product", "add")) {
      only(a, {"--sku", "--name", "--unit"});
      auto id = admin.add_product(need(a, "--sku"), need(a, "--name"), maybe(a, "--unit").value_or(""));
      if (!id) return fail(id.status());
      out << id->to_string() << '\n';
    } else if (cmd("price", "set")) {
      only(a, {"--product", "--list", "--cents", "--currency"});
      auto id = admin.set_price(need(a, "--product"), need(a, "--list"), parse_cents(need(a, "--cents")),
                                need(a, "--currency"));
      if (!id) return fail(id.status());
      out << id->to_string() << '\n';
    } else if (cmd("device", "register")) {
      only(a, {"--node", "--user"});
      if (Status s = dir.register_device(parse_node(need(a, "--node")), need(a, "--user"), now); !s)
        return fail(s);
      return audited("device.register", std::to_string(parse_node(need(a, "--node"))),
                     {{"user", need(a, "--user")}});
    } else if (cmd("device", "list")) {
      only(a, {});
      for (const Device& d : dir.devices())
        out << d.node << '\t' << d.user << '\t' << d.registered_at_ms << '\t'
            << (d.revoked ? "revoked" : "active") << '\n';
    } else if (cmd("device", "revoke")) {
      only(a, {"--node"});
      if (Status s = dir.revoke_device(parse_node(need(a, "--node")), now); !s) return fail(s);
      return audited("device.revoke", std::to_string(parse_node(need(a, "--node"))));
    } else if (cmd("login")) {
      only(a, {"--user", "--node", "--password", "--ttl-ms"});
      std::string user = need(a, "--user");
      NodeId node = parse_node(need(a, "--node"));
      auto token = dir.login(user, password(a, in), node, now);
      if (!token) return fail(token.status());
      out << *token << '\n';
    } else if (account_move) {
      only(a, {});
      if (Status s = admin.move_account(a.words[2], a.words[3]); !s) return fail(s);
    } else if (cmd("export")) {
      only(a, {"--user"});
      auto json = admin.export_json(maybe(a, "--user"));
      if (!json) return fail(json.status());
      out << *json;
    }
    return 0;
  } catch (const UsageError& e) {
    err << "fieldsync-admin: " << e.message << " (see --help)\n";
    return 2;
  }
}

}  // namespace fieldsync::server

// FieldClient's queries: prepared statements on the replica's typed columns (values are always bound, never
// spliced into SQL), tombstoned rows excluded. Table and column names come from the model.
#include <sqlite3.h>

#include <algorithm>
#include <map>

#include "field_client_internal.h"
#include "fieldsync/client/field_client.h"
#include "fieldsync/client/sqlite_replica.h"
#include "fieldsync/io/sqlite_db.h"

namespace fieldsync::client {

using schema::EntityId;

namespace detail {

Status invalid(ErrorCode code, std::string message) {
  return Status(code, std::move(message));
}

Result<RecordId> parse_id(std::string_view what, const std::string& text) {
  auto id = RecordId::parse(text);
  if (!id || id->is_nil())
    return invalid(ErrorCode::kInvalidArgument, std::string(what) + " id '" + text + "' is not a record id");
  return *id;
}

void Queries::finalize_all() {
  for (auto& [sql, stmt] : cache) sqlite3_finalize(stmt);
  cache.clear();
  live.clear();
}

namespace {

// The cached statement of `sql`, prepared on first use (nullptr and `error` set if it cannot be).
sqlite3_stmt* cached(Queries& q, sqlite3* db, const std::string& sql, Status& error) {
  sqlite3_stmt*& s = q.cache[sql];
  if (s == nullptr) {
    const int rc = sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      s = nullptr;
      q.cache.erase(sql);
      error = sqlite::status_from(rc, "prepare query", db);
      return nullptr;
    }
  }
  return s;
}

}  // namespace

Status query(Queries& q, SqliteReplicaStore& store, const std::string& sql, const std::vector<Bind>& binds,
             const std::function<void(sqlite3_stmt*)>& row) {
  return store.read([&](sqlite3* db) -> Status {
    Status error;
    sqlite3_stmt* s = cached(q, db, sql, error);
    if (s == nullptr) return error;
    for (size_t i = 0; i < binds.size(); ++i) {
      const int col = static_cast<int>(i + 1);
      if (const auto* n = std::get_if<int64_t>(&binds[i])) {
        sqlite3_bind_int64(s, col, *n);
      } else {
        // Static: `binds` outlives the statement's use (reset and cleared below), so SQLite need not copy it.
        const std::string& t = std::get<std::string>(binds[i]);
        sqlite3_bind_text(s, col, t.data(), static_cast<int>(t.size()), SQLITE_STATIC);
      }
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) row(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) return sqlite::status_from(rc, "query", db);
    return Status::ok();
  });
}

std::string text(sqlite3_stmt* s, int col) {
  const unsigned char* p = sqlite3_column_text(s, col);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s, col)));
}
std::optional<int64_t> opt_int(sqlite3_stmt* s, int col) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(s, col);
}
std::optional<double> opt_real(sqlite3_stmt* s, int col) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_double(s, col);
}

std::string table(EntityId e) {
  std::string t(1, '"');
  t += schema::entity_ref(e).name;
  t += '"';
  return t;
}

Status not_found(std::string_view what, const std::string& id) {
  return Status(ErrorCode::kRecordNotFound, std::string(what) + " " + id + " not found");
}

namespace {

const std::string kAccountCols =
    "id, name, territory_id, address, city, phone, email, segment, credit_limit_cents, notes, created_by";
Account account_row(sqlite3_stmt* s) {
  Account a;
  a.id = text(s, 0);
  a.name = text(s, 1);
  a.territory_id = text(s, 2);
  a.address = text(s, 3);
  a.city = text(s, 4);
  a.phone = text(s, 5);
  a.email = text(s, 6);
  a.segment = text(s, 7);
  a.credit_limit_cents = opt_int(s, 8);
  a.notes = text(s, 9);
  a.created_by = text(s, 10);
  return a;
}

const std::string kContactCols = "id, account_id, name, title, email, phone, is_primary";
Contact contact_row(sqlite3_stmt* s) {
  Contact c;
  c.id = text(s, 0);
  c.account_id = text(s, 1);
  c.name = text(s, 2);
  c.title = text(s, 3);
  c.email = text(s, 4);
  c.phone = text(s, 5);
  c.is_primary = opt_int(s, 6).value_or(0) != 0;
  return c;
}

const std::string kVisitCols =
    "id, account_id, rep_id, calendar_event_id, check_in_at, check_out_at, latitude, longitude, notes, "
    "outcome";
Visit visit_row(sqlite3_stmt* s) {
  Visit v;
  v.id = text(s, 0);
  v.account_id = text(s, 1);
  v.rep_id = text(s, 2);
  v.calendar_event_id = text(s, 3);
  v.check_in_at_ms = opt_int(s, 4).value_or(0);
  v.check_out_at_ms = opt_int(s, 5);
  v.latitude = opt_real(s, 6);
  v.longitude = opt_real(s, 7);
  v.notes = text(s, 8);
  v.outcome = text(s, 9);
  return v;
}

const std::string kOrderCols = "id, account_id, rep_id, status, currency, notes, submitted_at";
Order order_row(sqlite3_stmt* s) {
  Order o;
  o.id = text(s, 0);
  o.account_id = text(s, 1);
  o.rep_id = text(s, 2);
  o.status = text(s, 3);
  o.currency = text(s, 4);
  o.notes = text(s, 5);
  o.submitted_at_ms = opt_int(s, 6);
  return o;
}

const std::string kEventCols = "id, owner_id, account_id, title, start_at, end_at, status, location, ";
// The columns event_row reads: an app projected to a schema before the appointment's opportunity link has no
// such column (its replica's tables are that schema's), so the link reads as none there.
std::string event_cols(const SqliteReplicaStore& store) {
  const schema::FieldDef* link =
      schema::entity_ref(EntityId::kCalendarEvent).field(schema::fields::kEventOpportunity);
  return kEventCols + (store.schema_version() >= link->since ? "opportunity_id" : "NULL");
}
Event event_row(sqlite3_stmt* s) {
  Event e;
  e.id = text(s, 0);
  e.owner_id = text(s, 1);
  e.account_id = text(s, 2);
  e.title = text(s, 3);
  e.start_at_ms = opt_int(s, 4).value_or(0);
  e.end_at_ms = opt_int(s, 5).value_or(0);
  e.status = text(s, 6);
  e.location = text(s, 7);
  e.opportunity_id = text(s, 8);
  return e;
}

const std::string kOpportunityCols =
    "id, account_id, owner_id, name, stage, amount_cents, currency, expected_close";
Opportunity opportunity_row(sqlite3_stmt* s) {
  Opportunity o;
  o.id = text(s, 0);
  o.account_id = text(s, 1);
  o.owner_id = text(s, 2);
  o.name = text(s, 3);
  o.stage = text(s, 4);
  o.amount_cents = opt_int(s, 5).value_or(0);
  o.currency = text(s, 6);
  o.expected_close_ms = opt_int(s, 7);
  return o;
}

Status load_lines(Queries& q, SqliteReplicaStore& store, Order& o) {
  o.lines.clear();
  Status s = query(q, store,
                   "SELECT id, product_id, quantity, unit_price_cents, discount_bp, note FROM " +
                       table(EntityId::kOrderLine) + " WHERE order_id = ?1 AND _deleted = 0 ORDER BY id",
                   {Bind{o.id}}, [&](sqlite3_stmt* st) {
                     OrderLine l;
                     l.id = text(st, 0);
                     l.product_id = text(st, 1);
                     l.quantity = opt_int(st, 2).value_or(0);
                     l.unit_price_cents = opt_int(st, 3).value_or(0);
                     l.discount_bp = opt_int(st, 4).value_or(0);
                     l.note = text(st, 5);
                     o.lines.push_back(std::move(l));
                   });
  if (!s) return s;
  o.gross_cents = o.discount_cents = o.total_cents = 0;
  for (OrderLine& l : o.lines) {
    compute_line_totals(l);
    o.gross_cents += l.gross_cents;
    o.discount_cents += l.discount_cents;
    o.total_cents += l.net_cents;
  }
  return Status::ok();
}

}  // namespace

Status require_live(Queries& q, SqliteReplicaStore& store, EntityId entity, const std::string& id) {
  // This runs before most writes: its statement is kept per entity (no SQL text built, hashed or compared
  // per call) and the id is bound in place (no Bind vector, no copy).
  bool found = false;
  Status s = store.read([&](sqlite3* db) -> Status {
    sqlite3_stmt*& st = q.live[entity];
    if (st == nullptr) {
      Status error;
      st = cached(q, db, "SELECT 1 FROM " + table(entity) + " WHERE id = ?1 AND _deleted = 0", error);
      if (st == nullptr) {
        q.live.erase(entity);
        return error;
      }
    }
    sqlite3_bind_text(st, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(st);  // the primary key: one row or none
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sqlite::status_from(rc, "query", db);
    found = rc == SQLITE_ROW;
    return Status::ok();
  });
  if (!s) return s;
  if (!found) return not_found(schema::entity_ref(entity).name, id);
  return Status::ok();
}

Result<Visit> load_visit(Queries& q, SqliteReplicaStore& store, const std::string& id) {
  return select_one(q, store, EntityId::kVisit, kVisitCols, id, visit_row, "visit");
}

Result<Order> load_order_head(Queries& q, SqliteReplicaStore& store, const std::string& id) {
  return select_one(q, store, EntityId::kOrder, kOrderCols, id, order_row, "order");
}

Result<Order> load_order(Queries& q, SqliteReplicaStore& store, const std::string& id) {
  auto o = load_order_head(q, store, id);
  if (!o) return o;
  if (Status s = load_lines(q, store, *o); !s) return s;
  return o;
}

Result<std::string> line_order(Queries& q, SqliteReplicaStore& store, const std::string& line_id) {
  std::optional<std::string> order;
  Status s = query(q, store,
                   "SELECT order_id FROM " + table(EntityId::kOrderLine) + " WHERE id = ?1 AND _deleted = 0",
                   {Bind{line_id}}, [&](sqlite3_stmt* st) { order = text(st, 0); });
  if (!s) return s;
  if (!order) return not_found("order line", line_id);
  return *order;
}

Result<bool> product_active(Queries& q, SqliteReplicaStore& store, const std::string& product_id) {
  std::optional<bool> active;
  Status s =
      query(q, store, "SELECT active FROM " + table(EntityId::kProduct) + " WHERE id = ?1 AND _deleted = 0",
            {Bind{product_id}}, [&](sqlite3_stmt* st) { active = opt_int(st, 0).value_or(0) != 0; });
  if (!s) return s;
  if (!active) return not_found("product", product_id);
  return *active;
}

Result<int64_t> list_price(Queries& q, SqliteReplicaStore& store, const std::string& product_id,
                           const std::string& currency, const std::string& price_list, int64_t now_ms) {
  std::optional<int64_t> price;
  Status s = query(q, store,
                   "SELECT unit_price_cents FROM " + table(EntityId::kPriceListEntry) +
                       " WHERE product_id = ?1 AND currency = ?2 AND _deleted = 0"
                       " AND (valid_from IS NULL OR valid_from <= ?3) AND (valid_to IS NULL OR valid_to > ?3)"
                       " ORDER BY (price_list = ?4) DESC, valid_from DESC, id DESC LIMIT 1",
                   {Bind{product_id}, Bind{currency}, Bind{now_ms}, Bind{price_list}},
                   [&](sqlite3_stmt* st) { price = opt_int(st, 0); });
  if (!s) return s;
  if (!price)
    return Status(ErrorCode::kRecordNotFound,
                  "no price for product " + product_id + " in " + currency + " today; give the unit price");
  return *price;
}

Result<Event> load_event(Queries& q, SqliteReplicaStore& store, const std::string& id) {
  return select_one(q, store, EntityId::kCalendarEvent, event_cols(store), id, event_row, "calendar event");
}

Result<Opportunity> load_opportunity(Queries& q, SqliteReplicaStore& store, const std::string& id) {
  return select_one(q, store, EntityId::kOpportunity, kOpportunityCols, id, opportunity_row, "opportunity");
}

Status check_transition(EntityId entity, const std::string& from, const std::string& to, schema::Role role) {
  const schema::EntityDef& e = schema::entity_ref(entity);
  auto needed = schema::transition_role(e, from, to);
  if (!needed)
    return Status(ErrorCode::kInvalidTransition,
                  std::string(e.name) + " cannot move from " + from + " to " + to);
  if (*needed > role)
    return Status(ErrorCode::kPermissionDenied, std::string(e.name) + " from " + from + " to " + to +
                                                    " needs a " + std::string(schema::to_string(*needed)));
  return Status::ok();
}

}  // namespace detail

using detail::Bind;

// ---- FieldClient reads

Result<std::vector<Account>> FieldClient::accounts_by_prefix(const std::string& prefix) {
  // LIKE with every wildcard in the prefix escaped: a case-insensitive (ASCII) prefix match.
  std::string pattern;
  for (char c : prefix) {
    if (c == '%' || c == '_' || c == '\\') pattern += '\\';
    pattern += c;
  }
  pattern += '%';
  return detail::select(*queries_, *store_,
                        "SELECT " + detail::kAccountCols + " FROM " + detail::table(EntityId::kAccount) +
                            " WHERE _deleted = 0 AND name LIKE ?1 ESCAPE '\\' ORDER BY name, id",
                        {Bind{pattern}}, detail::account_row);
}

Result<std::vector<Account>> FieldClient::accounts_in_territory(const std::string& territory_id) {
  return detail::select(*queries_, *store_,
                        "SELECT " + detail::kAccountCols + " FROM " + detail::table(EntityId::kAccount) +
                            " WHERE _deleted = 0 AND territory_id = ?1 ORDER BY name, id",
                        {Bind{territory_id}}, detail::account_row);
}

Result<AccountWithContacts> FieldClient::account(const std::string& id) {
  if (auto p = detail::parse_id("account", id); !p) return p.status();
  auto a = detail::select_one(*queries_, *store_, EntityId::kAccount, detail::kAccountCols, id,
                              detail::account_row, "account");
  if (!a) return a.status();
  auto contacts =
      detail::select(*queries_, *store_,
                     "SELECT " + detail::kContactCols + " FROM " + detail::table(EntityId::kContact) +
                         " WHERE _deleted = 0 AND account_id = ?1 ORDER BY name, id",
                     {Bind{id}}, detail::contact_row);
  if (!contacts) return contacts.status();
  auto cases = open_cases_of_account(id);
  if (!cases) return cases.status();
  return AccountWithContacts{std::move(a).value(), std::move(contacts).value(), std::move(cases).value()};
}

Result<Visit> FieldClient::visit(const std::string& id) {
  if (auto p = detail::parse_id("visit", id); !p) return p.status();
  return detail::load_visit(*queries_, *store_, id);
}

Result<std::vector<Visit>> FieldClient::visits_of_account(const std::string& account_id) {
  if (auto p = detail::parse_id("account", account_id); !p) return p.status();
  return detail::select(*queries_, *store_,
                        "SELECT " + detail::kVisitCols + " FROM " + detail::table(EntityId::kVisit) +
                            " WHERE _deleted = 0 AND account_id = ?1 ORDER BY check_in_at DESC, id DESC",
                        {Bind{account_id}}, detail::visit_row);
}

Result<std::vector<Visit>> FieldClient::todays_visits() {
  auto [from, to] = day_window(now_ms());
  return detail::select(*queries_, *store_,
                        "SELECT " + detail::kVisitCols + " FROM " + detail::table(EntityId::kVisit) +
                            " WHERE _deleted = 0 AND rep_id = ?1 AND check_in_at >= ?2 AND check_in_at < ?3"
                            " ORDER BY check_in_at, id",
                        {Bind{options_.user}, Bind{from}, Bind{to}}, detail::visit_row);
}

Result<Order> FieldClient::order(const std::string& id) {
  if (auto p = detail::parse_id("order", id); !p) return p.status();
  return detail::load_order(*queries_, *store_, id);
}

Result<std::vector<Order>> FieldClient::open_orders() {
  auto orders = detail::select(*queries_, *store_,
                               "SELECT " + detail::kOrderCols + " FROM " + detail::table(EntityId::kOrder) +
                                   " WHERE _deleted = 0 AND rep_id = ?1 AND status IN ('draft', 'submitted')"
                                   " ORDER BY id",
                               {Bind{options_.user}}, detail::order_row);
  if (!orders) return orders;
  for (Order& o : *orders)
    if (Status s = detail::load_lines(*queries_, *store_, o); !s) return s;
  return orders;
}

Result<Event> FieldClient::event(const std::string& id) {
  if (auto p = detail::parse_id("calendar event", id); !p) return p.status();
  return detail::load_event(*queries_, *store_, id);
}

Result<std::vector<Event>> FieldClient::agenda(int64_t from_ms, int64_t to_ms) {
  return detail::select(*queries_, *store_,
                        "SELECT " + detail::event_cols(*store_) + " FROM " +
                            detail::table(EntityId::kCalendarEvent) +
                            " WHERE _deleted = 0 AND owner_id = ?1 AND status = 'scheduled'"
                            " AND start_at < ?3 AND end_at > ?2 ORDER BY start_at, id",
                        {Bind{options_.user}, Bind{from_ms}, Bind{to_ms}}, detail::event_row);
}

Result<std::vector<Event>> FieldClient::overlaps(const std::string& self_id, int64_t start_ms,
                                                 int64_t end_ms) {
  auto self = detail::load_event(*queries_, *store_, self_id);
  if (!self) return self.status();
  return detail::select(
      *queries_, *store_,
      "SELECT " + detail::event_cols(*store_) + " FROM " + detail::table(EntityId::kCalendarEvent) +
          " WHERE _deleted = 0 AND owner_id = ?1 AND status = 'scheduled' AND id <> ?2"
          " AND start_at < ?4 AND end_at > ?3 ORDER BY start_at, id",
      {Bind{self->owner_id}, Bind{self_id}, Bind{start_ms}, Bind{end_ms}}, detail::event_row);
}

Result<Opportunity> FieldClient::opportunity(const std::string& id) {
  if (auto p = detail::parse_id("opportunity", id); !p) return p.status();
  return detail::load_opportunity(*queries_, *store_, id);
}

Result<std::vector<PipelineStage>> FieldClient::pipeline() {
  std::vector<PipelineStage> out;
  Status s = detail::query(*queries_, *store_,
                           "SELECT stage, currency, COUNT(*), SUM(amount_cents) FROM " +
                               detail::table(EntityId::kOpportunity) +
                               " WHERE _deleted = 0 AND owner_id = ?1 GROUP BY stage, currency",
                           {Bind{options_.user}}, [&](sqlite3_stmt* st) {
                             PipelineStage p;
                             p.stage = detail::text(st, 0);
                             p.currency = detail::text(st, 1);
                             p.count = sqlite3_column_int64(st, 2);
                             p.amount_cents = sqlite3_column_int64(st, 3);
                             out.push_back(std::move(p));
                           });
  if (!s) return s;
  const auto stages = schema::entity_ref(EntityId::kOpportunity).field("stage")->enum_values;
  auto rank = [&](const std::string& stage) {
    return std::find(stages.begin(), stages.end(), stage) - stages.begin();
  };
  std::sort(out.begin(), out.end(), [&](const PipelineStage& a, const PipelineStage& b) {
    if (rank(a.stage) != rank(b.stage)) return rank(a.stage) < rank(b.stage);
    return a.currency < b.currency;
  });
  return out;
}

Result<size_t> FieldClient::pending_count() {
  int64_t n = 0;
  Status s = detail::query(*queries_, *store_, "SELECT COUNT(*) FROM _outbox", {},
                           [&](sqlite3_stmt* st) { n = sqlite3_column_int64(st, 0); });
  if (!s) return s;
  return static_cast<size_t>(n);
}

}  // namespace fieldsync::client

// The head-office API's data endpoints, derived from the entity model (api.h has the map): one generic list,
// record and history handler over schema::entities(), writes through SyncService::write (a device's path),
// order actions, reassignment and handover, the conflict inbox, the change feed and sync health.
//
// Reads run SQL on connections of their own to the central store's file (the entity tables' typed columns
// are the model's projection, DESIGN.md section 9), narrowed in SQL by the caller's scope exactly as can_see
// judges it; with group commit they see every group that ended, which every API write waits for.
#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cmath>
#include <future>
#include <random>
#include <set>

#include "api.h"
#include "fieldsync/schema/ddl.h"
#include "fieldsync/server/directory.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/export.h"
#include "fieldsync/sync/scope.h"
#include "reader_pool.h"
#include "sql_reader.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace http = boost::beast::http;
namespace json = boost::json;
using schema::EntityDef;
using schema::FieldDef;
using schema::FieldType;

namespace {

const std::vector<std::string> kAll = {"head_office", "manager", "rep", "partner"};
const std::vector<std::string> kStaff = {"head_office", "manager", "rep"};
const std::vector<std::string> kManagers = {"head_office", "manager"};
const std::vector<std::string> kHeadOffice = {"head_office"};

// What a partner may read: the accounts of their grants and what they add there, and the catalogue.
bool partner_reads(EntityId e) {
  return e == EntityId::kAccount || e == EntityId::kVisit || e == EntityId::kOrder ||
         e == EntityId::kOrderLine || e == EntityId::kProduct || e == EntityId::kPriceListEntry;
}

ApiReply ok(json::value body, http::status status = http::status::ok) {
  return ApiReply{status, std::move(body), {}};
}

ApiError not_found() {
  return api_error(http::status::not_found, "not_found", "no such record");
}

// A read connection from the API's pool (reader_pool.h; api.cc keeps it).
Result<ReaderPool::Lease> open_reader(NetServer::Impl& impl) {
  return api_readers(impl).lease();
}

// ---- Values

// A JSON value for field `f` as the model's Value, or why not (wrong_type).
Result<Value> from_json(const FieldDef& f, const json::value& v) {
  if (v.is_null()) return Value::null();
  const auto wrong = [&](const char* want) {
    return Status(ErrorCode::kTypeMismatch, std::string(f.name) + " must be " + want);
  };
  switch (f.type) {
    case FieldType::kText:
    case FieldType::kEnum:
    case FieldType::kId:
    case FieldType::kUserId:
      if (!v.is_string()) return wrong("a string");
      return Value::text(std::string(v.as_string()));
    case FieldType::kInt:
    case FieldType::kTimestamp:
      if (v.is_int64()) return Value::integer(v.as_int64());
      if (v.is_uint64() && v.as_uint64() <= static_cast<uint64_t>(INT64_MAX))
        return Value::integer(static_cast<int64_t>(v.as_uint64()));
      return wrong(f.type == FieldType::kTimestamp ? "epoch milliseconds (an integer)" : "an integer");
    case FieldType::kReal:
      if (v.is_double()) return Value::real(v.as_double());
      if (v.is_int64()) return Value::real(static_cast<double>(v.as_int64()));
      return wrong("a number");
    case FieldType::kBool:
      if (!v.is_bool()) return wrong("true or false");
      return Value::boolean(v.as_bool());
  }
  return wrong("a value");
}

// A query-string value for field `f`.
std::optional<Value> from_text(const FieldDef& f, const std::string& text) {
  switch (f.type) {
    case FieldType::kInt:
    case FieldType::kTimestamp:
      if (std::optional<int64_t> v = parse_int(text)) return Value::integer(*v);
      return std::nullopt;
    case FieldType::kBool:
      if (text == "true" || text == "1") return Value::boolean(true);
      if (text == "false" || text == "0") return Value::boolean(false);
      return std::nullopt;
    case FieldType::kReal:
      return std::nullopt;
    default:
      return Value::text(text);
  }
}

json::value column_json(const SqlRows& q, int i, const FieldDef& f) {
  if (q.col_null(i)) return nullptr;
  switch (f.type) {
    case FieldType::kInt:
    case FieldType::kTimestamp:
      return q.col_int(i);
    case FieldType::kBool:
      return q.col_int(i) != 0;
    case FieldType::kReal:
      return q.col_double(i);
    default:
      return json::value(q.col_text(i));
  }
}

// ---- Scope in SQL: can_see (scope.cc) for one entity's rows, following the model's parent links.

std::string scope_sql(const EntityDef& e, const Principal& p, std::vector<Value>& params, int depth = 0) {
  if (p.role == schema::Role::kHeadOffice) return "TRUE";
  switch (e.scope.kind) {
    case schema::ScopeKind::kGlobal:
      return "TRUE";
    case schema::ScopeKind::kTerritory: {
      if (p.territories.empty()) return "FALSE";
      std::string sql = schema::quoted(e.field(e.scope.field)->name) + " IN (";
      for (size_t i = 0; i < p.territories.size(); ++i) {
        sql += i ? ",?" : "?";
        params.push_back(Value::text(p.territories[i]));
      }
      return sql + ")";
    }
    case schema::ScopeKind::kOwner: {
      std::vector<std::string> owners{p.user};
      if (p.role >= schema::Role::kManager) owners.insert(owners.end(), p.team.begin(), p.team.end());
      std::string sql = schema::quoted(e.field(e.scope.field)->name) + " IN (";
      for (size_t i = 0; i < owners.size(); ++i) {
        sql += i ? ",?" : "?";
        params.push_back(Value::text(owners[i]));
      }
      return sql + ")";
    }
    case schema::ScopeKind::kParent: {
      if (depth >= kMaxScopeHops) return "FALSE";
      const EntityDef& parent = schema::entity_ref(e.scope.parent);
      return schema::quoted(e.field(e.scope.field)->name) + " IN (SELECT id FROM " +
             schema::quoted(parent.name) + " WHERE _deleted = FALSE AND " +
             scope_sql(parent, p, params, depth + 1) + ")";
    }
  }
  return "FALSE";
}

bool may_read(const Caller& c, const EntityDef& e) {
  return !c.partner() || partner_reads(e.id);
}

// One row's JSON: id and every field of the model.
json::object row_json(const SqlRows& q, const EntityDef& e) {
  json::object o;
  o["id"] = q.col_text(0);
  int i = 1;
  for (const FieldDef& f : e.fields) o[f.name] = column_json(q, i++, f);
  return o;
}

std::string columns(const EntityDef& e) {
  std::string sql = "id";
  for (const FieldDef& f : e.fields) sql += ", " + schema::quoted(f.name);
  return sql;
}

// ---- Cursors: base64url of JSON {"v": last sort value, "id": last id, "s": sort field, "o": order}.

std::string encode_cursor(const json::value& v, const std::string& id, const std::string& sort,
                          const std::string& order) {
  json::object o;
  o["v"] = v;
  o["id"] = id;
  o["s"] = sort;
  o["o"] = order;
  const std::string text = json::serialize(o);
  return base64url_encode(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// ---- List: GET /api/v1/entities/{entity}

}  // namespace

// Whether `who` sees the record: its current scope judged by can_see, on the central store.
Result<bool> visible(NetServer::Impl& impl, const Caller& c, EntityId entity, const RecordId& id,
                     std::optional<RecordState>* out) {
  Result<std::optional<RecordState>> rec = impl.store.load(entity, id);
  if (!rec) return rec.status();
  if (!*rec || (*rec)->deleted) return false;
  if (!may_read(c, schema::entity_ref(entity))) return false;
  CheckedStoreReader reader(impl.store);
  const ScopeKey scope = resolve_scope(**rec, reader);
  if (!reader.status()) return reader.status();
  if (!can_see(c.principal, scope)) return false;
  if (out) *out = std::move(*rec);
  return true;
}

Result<protocol::TxnResult> write(ApiRequest& r, const Principal& who, std::vector<Change> changes) {
  std::promise<Result<protocol::TxnResult>> done;
  std::future<Result<protocol::TxnResult>> f = done.get_future();
  // The worker waits for the flush that makes the write durable (a few ms with group commit): the answer
  // then says it is saved, and every read after it sees it.
  r.impl->service.write(kApiNode, who, std::move(changes), wall_ms(),
                        [&done](Result<protocol::TxnResult> res) { done.set_value(std::move(res)); });
  return f.get();
}

ApiResult write_answer(Result<protocol::TxnResult> res, json::object body, http::status status) {
  if (!res) return api_error_from(res.status());
  if (res->outcome == protocol::TxnOutcome::kRejected)
    return api_error_from(Status(res->reason, res->message));
  if (res->outcome != protocol::TxnOutcome::kApplied)
    return api_error(http::status::internal_server_error, "internal", "the write was not applied");
  body["server_seq"] = res->server_seq;
  json::array conflicts;
  for (const ConflictRecord& c : res->conflicts) conflicts.emplace_back(to_string(c.kind));
  body["conflicts"] = std::move(conflicts);
  return ok(std::move(body), status);
}

std::variant<ListQuery, ApiError> parse_list_query(const EntityDef& e, const Principal& caller,
                                                   const std::map<std::string, std::string>& query,
                                                   SqlDialect dialect) {
  ListQuery out;
  std::string& sort = out.sort;
  std::string& order = out.order;
  size_t& limit = out.limit;
  limit = limits::kApiDefaultPage;
  std::optional<std::string> cursor, search;
  std::vector<std::string> where{"_deleted = FALSE"};
  std::vector<Value>& params = out.params;
  for (const auto& [k, v] : query) {
    if (k == "sort") {
      if (v != "id" && e.field(v) == nullptr)
        return api_error(http::status::bad_request, "unknown_field", "cannot sort on " + v, "sort");
      sort = v;
    } else if (k == "order") {
      if (v != "asc" && v != "desc")
        return api_error(http::status::bad_request, "value_invalid", "order is asc or desc", "order");
      order = v;
    } else if (k == "limit") {
      std::optional<int64_t> n = parse_int(v);
      if (!n || *n < 1 || *n > static_cast<int64_t>(limits::kApiMaxPage))
        return api_error(http::status::bad_request, "value_invalid", "limit is 1..500", "limit");
      limit = static_cast<size_t>(*n);
    } else if (k == "cursor") {
      cursor = v;
    } else if (k == "q") {
      search = v;
    } else {
      // <field>=<value> (equality on reference, scope, status, user, bool fields), <field>.gte / .lt (times
      // and numbers).
      const size_t dot = k.find('.');
      const std::string name = k.substr(0, dot);
      const std::string op = dot == std::string::npos ? "" : k.substr(dot + 1);
      const FieldDef* f = e.field(name);
      if (f == nullptr) return api_error(http::status::bad_request, "unknown_field", "no field " + name, k);
      const bool ordered = f->type == FieldType::kTimestamp || f->type == FieldType::kInt;
      const bool equality = f->type == FieldType::kId || f->type == FieldType::kUserId ||
                            f->type == FieldType::kEnum || f->type == FieldType::kBool ||
                            (e.scope.kind == schema::ScopeKind::kTerritory && f->id == e.scope.field) ||
                            ordered;
      if ((op.empty() && !equality) || (!op.empty() && (!ordered || (op != "gte" && op != "lt"))))
        return api_error(http::status::bad_request, "unknown_field", "cannot filter on " + k, k);
      std::optional<Value> value = from_text(*f, v);
      if (!value) return api_error(http::status::bad_request, "wrong_type", "bad value for " + k, k);
      where.push_back(schema::quoted(f->name) + (op.empty() ? " = ?" : op == "gte" ? " >= ?" : " < ?"));
      params.push_back(*value);
    }
  }
  if (search) {
    std::string any;
    for (const FieldDef& f : e.fields) {
      if (f.type != FieldType::kText) continue;
      any += (any.empty() ? "" : " OR ") + schema::quoted(f.name) + " " + like_operator(dialect) +
             " ? ESCAPE '\\'";
      std::string pattern = "%";
      for (char ch : *search) {
        if (ch == '%' || ch == '_' || ch == '\\') pattern += '\\';
        pattern += ch;
      }
      params.push_back(Value::text(pattern + "%"));
    }
    where.push_back(any.empty() ? "FALSE" : "(" + any + ")");
  }
  where.push_back(scope_sql(e, caller, params));
  const std::string col = sort == "id" ? "id" : schema::quoted(sort);
  const bool desc = order == "desc";
  if (cursor) {
    std::optional<std::vector<uint8_t>> raw = base64url_decode(*cursor);
    boost::system::error_code ec;
    json::value c =
        raw ? json::parse(std::string_view(reinterpret_cast<const char*>(raw->data()), raw->size()), ec)
            : json::value();
    if (!raw || ec || !c.is_object() || !c.as_object().contains("id") || !c.as_object()["id"].is_string() ||
        c.as_object()["s"] != json::value(sort) || c.as_object()["o"] != json::value(order))
      return api_error(http::status::bad_request, "bad_cursor", "the cursor is not one of this listing's",
                       "cursor");
    const std::string last_id(c.as_object()["id"].as_string());
    const json::value& last = c.as_object()["v"];
    const std::string cmp = desc ? "<" : ">";
    if (sort == "id") {
      where.push_back("id " + cmp + " ?");
      params.push_back(Value::text(last_id));
    } else if (last.is_null()) {
      // NULLs sort last in both orders: past a NULL only NULLs remain.
      where.push_back("(" + col + " IS NULL AND id " + cmp + " ?)");
      params.push_back(Value::text(last_id));
    } else {
      Result<Value> v = from_json(*e.field(sort), last);
      if (!v) return api_error(http::status::bad_request, "bad_cursor", "the cursor is damaged", "cursor");
      where.push_back("(" + col + " IS NULL OR " + col + " " + cmp + " ? OR (" + col + " = ? AND id " + cmp +
                      " ?))");
      params.push_back(*v);
      params.push_back(*v);
      params.push_back(Value::text(last_id));
    }
  }
  std::string& sql = out.sql;
  sql = "SELECT " + columns(e) + " FROM " + schema::quoted(e.name) + " WHERE ";
  for (size_t i = 0; i < where.size(); ++i) sql += (i ? " AND " : "") + where[i];
  if (sort == "id") {
    sql += " ORDER BY id " + std::string(desc ? "DESC" : "ASC");
  } else {
    sql += " ORDER BY (" + col + " IS NULL), " + col + (desc ? " DESC" : " ASC") + ", id" +
           (desc ? " DESC" : " ASC");
  }
  sql += " LIMIT " + std::to_string(limit + 1);
  return out;
}

namespace {

ApiResult list_entities(ApiRequest& r) {
  const EntityDef* e = schema::entity(r.params["entity"]);
  if (e == nullptr || !may_read(r.caller, *e))
    return api_error(http::status::not_found, "unknown_entity", "no such entity", "entity");
  Result<ReaderPool::Lease> db = open_reader(*r.impl);
  if (!db) return api_error_from(db.status());
  std::variant<ListQuery, ApiError> parsed =
      parse_list_query(*e, r.caller.principal, r.query, (*db)->dialect());
  if (ApiError* bad = std::get_if<ApiError>(&parsed)) return std::move(*bad);
  const auto& [sql, params, sort, order, limit] = std::get<ListQuery>(parsed);
  SqlRows q = (*db)->query(sql, params);
  json::array items;
  bool more = false;
  while (q.step()) {
    if (items.size() == limit) {
      more = true;
      break;
    }
    items.push_back(row_json(q, *e));
  }
  if (!q.ok()) return api_error_from(q.status());
  json::object out;
  if (more) {
    const json::object& last = items.back().as_object();
    out["next_cursor"] = encode_cursor(sort == "id" ? last.at("id") : last.at(sort),
                                       std::string(last.at("id").as_string()), sort, order);
  } else {
    out["next_cursor"] = nullptr;
  }
  out["items"] = std::move(items);
  return ok(std::move(out));
}

// ---- One record with its children: GET /api/v1/entities/{entity}/{id}

Result<std::optional<json::object>> read_row(SqlReader& db, const EntityDef& e, const std::string& id) {
  SqlRows q = db.query(
      "SELECT " + columns(e) + " FROM " + schema::quoted(e.name) + " WHERE id = ? AND _deleted = FALSE",
      {Value::text(id)});
  if (q.step()) return std::optional<json::object>(row_json(q, e));
  if (!q.ok()) return q.status();
  return std::optional<json::object>();
}

// An order's totals: gross and net of line discounts, in cents.
json::object order_totals(const json::array& lines) {
  int64_t gross = 0, net = 0;
  for (const json::value& l : lines) {
    const json::object& o = l.as_object();
    if (!o.at("quantity").is_int64() || !o.at("unit_price_cents").is_int64()) continue;
    const int64_t g = o.at("quantity").as_int64() * o.at("unit_price_cents").as_int64();
    const int64_t bp = o.at("discount_bp").is_int64() ? o.at("discount_bp").as_int64() : 0;
    gross += g;
    net += g - (g * bp + 5000) / 10000;
  }
  json::object t;
  t["lines"] = static_cast<int64_t>(lines.size());
  t["gross_cents"] = gross;
  t["net_cents"] = net;
  return t;
}

ApiResult get_record(ApiRequest& r) {
  const EntityDef* e = schema::entity(r.params["entity"]);
  if (e == nullptr || !may_read(r.caller, *e))
    return api_error(http::status::not_found, "unknown_entity", "no such entity", "entity");
  std::optional<RecordId> id = RecordId::parse(r.params["id"]);
  if (!id) return not_found();
  Result<bool> seen = visible(*r.impl, r.caller, e->id, *id);
  if (!seen) return api_error_from(seen.status());
  if (!*seen) return not_found();
  Result<ReaderPool::Lease> db = open_reader(*r.impl);
  if (!db) return api_error_from(db.status());
  Result<std::optional<json::object>> row = read_row(**db, *e, id->to_string());
  if (!row) return api_error_from(row.status());
  if (!*row) return not_found();
  json::object children;
  // Every entity whose scope hangs off this one (an account's contacts, visits, orders, deals; an order's
  // lines): they share its scope, so whoever sees it sees them.
  for (const EntityDef& child : schema::entities()) {
    if (child.scope.kind != schema::ScopeKind::kParent || child.scope.parent != e->id) continue;
    if (!may_read(r.caller, child)) continue;
    SqlRows q = (*db)->query("SELECT " + columns(child) + " FROM " + schema::quoted(child.name) + " WHERE " +
                                 schema::quoted(child.field(child.scope.field)->name) +
                                 " = ? AND _deleted = FALSE ORDER BY id",
                             {Value::text(id->to_string())});
    json::array items;
    while (q.step()) items.push_back(row_json(q, child));
    if (!q.ok()) return api_error_from(q.status());
    children[child.name] = std::move(items);
  }
  json::object out;
  if (e->id == EntityId::kOrder) out["totals"] = order_totals(children["order_line"].as_array());
  out["record"] = std::move(**row);
  out["children"] = std::move(children);
  return ok(std::move(out));
}

// ---- History: GET /api/v1/entities/{entity}/{id}/history

ApiResult get_history(ApiRequest& r) {
  const EntityDef* e = schema::entity(r.params["entity"]);
  if (e == nullptr || !may_read(r.caller, *e))
    return api_error(http::status::not_found, "unknown_entity", "no such entity", "entity");
  std::optional<RecordId> id = RecordId::parse(r.params["id"]);
  if (!id) return not_found();
  std::optional<RecordState> rec;
  Result<bool> seen = visible(*r.impl, r.caller, e->id, *id, &rec);
  if (!seen) return api_error_from(seen.status());
  if (!*seen) return not_found();
  CentralStore& store = r.impl->store;
  CheckedStoreReader reader(store);
  const ScopeKey scope = resolve_scope(*rec, reader);
  Result<uint64_t> head = store.head_seq();
  if (!head) return api_error_from(head.status());
  // The record's part of the log: the entries filed under its scope, and under every scope a move took it
  // (or the account it hangs off) from -- the move's own entry is filed under both ends, so each round
  // finds the scopes of the round before, until no move leads further back.
  std::set<ScopeKey> scopes;
  const bool whole_log = scope.kind == ScopeKey::Kind::kUnresolved;
  if (!whole_log) scopes.insert(scope);
  std::vector<ServerTxn> txns;
  for (int round = 0; round < 8; ++round) {
    txns.clear();
    std::set<ScopeKey> found = scopes;
    size_t changes = 0;
    for (uint64_t after = 0; after < *head && changes < limits::kApiMaxHistory * 50;) {
      std::vector<ServerTxn> part;
      if (whole_log) {
        Result<std::vector<ServerTxn>> all = store.read_log(after, limits::kApiHistoryStep);
        if (!all) return api_error_from(all.status());
        if (all->empty()) break;
        after = all->back().server_seq;
        part = std::move(*all);
      } else {
        Result<CentralStore::LogSlice> slice = store.read_log_for(
            after, *head, std::vector<ScopeKey>(scopes.begin(), scopes.end()), limits::kApiHistoryStep);
        if (!slice) return api_error_from(slice.status());
        after = std::max(slice->searched_to, after + 1);
        part = std::move(slice->txns);
      }
      for (ServerTxn& t : part) {
        changes += t.changes.size();
        for (const ScopeMove& m : t.moves)
          if (scopes.count(m.to)) found.insert(m.from);
        txns.push_back(std::move(t));
      }
    }
    if (found == scopes || whole_log) break;
    scopes = std::move(found);
  }
  json::array items;
  std::map<uint16_t, Value> last;
  {
    for (const ServerTxn& t : txns) {
      for (const Change& c : t.changes) {
        if (c.entity != e->id || c.record != *id || items.size() >= limits::kApiMaxHistory) continue;
        json::object o;
        o["server_seq"] = t.server_seq;
        o["at_ms"] = hlc_physical_ms(c.version.hlc);
        o["user"] = t.origin_user;
        o["node"] = std::to_string(t.origin_node);
        o["device"] = t.origin_node == kApiNode ? "web"
                      : t.origin_node == 2      ? "admin"
                                                : std::to_string(t.origin_node);
        o["op"] = c.op == ChangeOp::kCreate   ? "create"
                  : c.op == ChangeOp::kSet    ? "set"
                  : c.op == ChangeOp::kAppend ? "append"
                                              : "delete";
        if (c.field != 0) {
          const FieldDef* f = e->field(c.field);
          o["field"] = f ? std::string(f->name) : std::to_string(c.field);
          auto it = last.find(c.field);
          o["old"] = it == last.end() ? json::value(nullptr) : value_to_json(it->second);
          o["new"] = value_to_json(c.value);
          if (c.op == ChangeOp::kAppend && it != last.end() && it->second.kind() == Value::Kind::kText)
            last[c.field] = Value::text(it->second.as_text() + "\n" + c.value.as_text());
          else
            last[c.field] = c.value;
        } else {
          o["field"] = nullptr;
        }
        items.push_back(std::move(o));
      }
    }
  }
  json::object out;
  out["items"] = std::move(items);
  return ok(std::move(out));
}

// ---- Writes

// The changes for a JSON object of fields: a set per field, an append for append-only text.
Result<std::vector<Change>> field_changes(const EntityDef& e, const RecordId& id, const json::object& body,
                                          bool creating, std::string* bad_field) {
  std::vector<Change> out;
  for (const auto& [k, v] : body) {
    const std::string name(k);
    if (creating && name == "id") continue;
    const FieldDef* f = e.field(name);
    if (f == nullptr) {
      *bad_field = name;
      return Status(ErrorCode::kUnknownField, "no field " + name + " in " + std::string(e.name));
    }
    Result<Value> value = from_json(*f, v);
    if (!value) {
      *bad_field = name;
      return value.status();
    }
    if (f->policy == schema::MergePolicy::kAppendText) {
      if (value->is_null()) continue;
      out.push_back(make(ChangeOp::kAppend, e.id, id, f->id, std::move(*value)));
    } else {
      out.push_back(make(ChangeOp::kSet, e.id, id, f->id, std::move(*value)));
    }
  }
  return out;
}

ApiError bad_body(const Status& s, const std::string& field) {
  if (s.code() == ErrorCode::kUnknownField)
    return api_error(http::status::bad_request, "unknown_field", s.message(), field);
  return api_error(http::status::bad_request, "wrong_type", s.message(), field);
}

// What a partner may write: new visits, orders and their lines, and notes on accounts.
bool partner_writes(EntityId e, bool creating, const json::object& body) {
  if (creating) return e == EntityId::kVisit || e == EntityId::kOrder || e == EntityId::kOrderLine;
  if (e != EntityId::kAccount) return false;
  return body.size() == 1 && body.contains("notes");
}

}  // namespace

std::variant<std::vector<Change>, ApiError> create_changes(const EntityDef& e, const RecordId& fresh,
                                                           const json::object& body) {
  RecordId id = fresh;
  if (auto it = body.find("id"); it != body.end()) {
    std::optional<RecordId> given =
        it->value().is_string() ? RecordId::parse(it->value().as_string()) : std::nullopt;
    if (!given) return api_error(http::status::bad_request, "wrong_type", "id must be a UUIDv7 text", "id");
    id = *given;
  }
  std::string field;
  Result<std::vector<Change>> changes = field_changes(e, id, body, true, &field);
  if (!changes) return bad_body(changes.status(), field);
  changes->insert(changes->begin(), make(ChangeOp::kCreate, e.id, id));
  return std::move(*changes);
}

std::variant<std::vector<Change>, ApiError> patch_changes(const EntityDef& e, const RecordId& id,
                                                          const json::object& body) {
  if (body.empty()) return api_error(http::status::bad_request, "missing_field", "nothing to change");
  if (body.contains("id"))
    return api_error(http::status::bad_request, "unknown_field", "the id is the path's", "id");
  std::string field;
  Result<std::vector<Change>> changes = field_changes(e, id, body, false, &field);
  if (!changes) return bad_body(changes.status(), field);
  return std::move(*changes);
}

namespace {

ApiResult create_record(ApiRequest& r) {
  const EntityDef* e = schema::entity(r.params["entity"]);
  if (e == nullptr || !may_read(r.caller, *e))
    return api_error(http::status::not_found, "unknown_entity", "no such entity", "entity");
  const json::object& body = r.body->as_object();
  if (r.caller.partner() && !partner_writes(e->id, true, body))
    return api_error(http::status::forbidden, "forbidden", "partners add visits, notes and orders only");
  std::variant<std::vector<Change>, ApiError> changes =
      create_changes(*e, id_generator().next(wall_ms()), body);
  if (ApiError* bad = std::get_if<ApiError>(&changes)) return std::move(*bad);
  std::vector<Change>& c = std::get<std::vector<Change>>(changes);
  const RecordId id = c.front().record;
  json::object out;
  out["id"] = id.to_string();
  return write_answer(write(r, r.caller.principal, std::move(c)), std::move(out), http::status::created);
}

ApiResult patch_record(ApiRequest& r) {
  const EntityDef* e = schema::entity(r.params["entity"]);
  if (e == nullptr || !may_read(r.caller, *e))
    return api_error(http::status::not_found, "unknown_entity", "no such entity", "entity");
  const json::object& body = r.body->as_object();
  std::optional<RecordId> id = RecordId::parse(r.params["id"]);
  if (!id) return not_found();
  Result<bool> seen = visible(*r.impl, r.caller, e->id, *id);
  if (!seen) return api_error_from(seen.status());
  if (!*seen) return not_found();
  if (r.caller.partner() && !partner_writes(e->id, false, body))
    return api_error(http::status::forbidden, "forbidden", "partners add visits, notes and orders only");
  std::variant<std::vector<Change>, ApiError> changes = patch_changes(*e, *id, body);
  if (ApiError* bad = std::get_if<ApiError>(&changes)) return std::move(*bad);
  json::object out;
  out["id"] = id->to_string();
  return write_answer(write(r, r.caller.principal, std::move(std::get<std::vector<Change>>(changes))),
                      std::move(out));
}

// ---- The actions' bodies (api.h)

}  // namespace

std::variant<std::string, ApiError> parse_reject_body(const json::object& b) {
  std::string reason;
  if (std::optional<ApiError> bad = only_fields(b, {"reason"})) return *bad;
  if (std::optional<ApiError> bad = string_field(b, "reason", &reason, true)) return *bad;
  if (reason.find_first_not_of(" \t\r\n") == std::string::npos)
    return api_error(http::status::unprocessable_entity, "value_invalid", "the reason may not be blank",
                     "reason");
  return reason;
}

std::variant<std::string, ApiError> parse_handover_body(const json::object& b) {
  std::string to;
  if (std::optional<ApiError> bad = only_fields(b, {"to"})) return *bad;
  if (std::optional<ApiError> bad = string_field(b, "to", &to, true)) return *bad;
  return to;
}

std::variant<std::string, ApiError> parse_resolve_body(const json::object& b) {
  std::string action;
  if (std::optional<ApiError> bad = only_fields(b, {"action"})) return *bad;
  if (std::optional<ApiError> bad = string_field(b, "action", &action, true)) return *bad;
  if (action != "accept" && action != "restore")
    return api_error(http::status::bad_request, "value_invalid", "action is accept or restore", "action");
  return action;
}

std::variant<ReassignBody, ApiError> parse_reassign_body(const json::object& b) {
  if (std::optional<ApiError> bad = only_fields(b, {"accounts", "from_rep", "to_rep", "territory"}))
    return *bad;
  ReassignBody out;
  std::string text;
  if (b.contains("territory")) {
    if (std::optional<ApiError> bad = string_field(b, "territory", &text, true)) return *bad;
    out.territory = text;
  } else if (b.contains("to_rep")) {
    if (std::optional<ApiError> bad = string_field(b, "to_rep", &text, true)) return *bad;
    out.to_rep = text;
  } else {
    return api_error(http::status::bad_request, "missing_field", "to_rep or territory is required",
                     "territory");
  }
  if (auto it = b.find("accounts"); it != b.end()) {
    Result<std::vector<std::string>> ids = string_list(it->value(), "accounts");
    if (!ids) return api_error(http::status::bad_request, "wrong_type", ids.status().message(), "accounts");
    out.accounts.emplace();
    for (const std::string& s : *ids) {
      std::optional<RecordId> id = RecordId::parse(s);
      // Not an id of any record: as absent as one outside the caller's scope.
      if (!id) return api_error(http::status::not_found, "not_found", "no account " + s, "accounts");
      out.accounts->push_back(*id);
    }
  } else if (b.contains("from_rep")) {
    if (std::optional<ApiError> bad = string_field(b, "from_rep", &text, true)) return *bad;
    out.from_rep = text;
  } else {
    return api_error(http::status::bad_request, "missing_field", "accounts or from_rep is required",
                     "accounts");
  }
  return out;
}

namespace {

// ---- Orders: approve, reject, fulfil

Result<RecordState> visible_order(ApiRequest& r) {
  std::optional<RecordId> id = RecordId::parse(r.params["id"]);
  if (!id) return Status(ErrorCode::kRecordNotFound, "no such order");
  std::optional<RecordState> rec;
  Result<bool> seen = visible(*r.impl, r.caller, EntityId::kOrder, *id, &rec);
  if (!seen) return seen.status();
  if (!*seen) return Status(ErrorCode::kRecordNotFound, "no such order");
  return std::move(*rec);
}

std::string status_of(const RecordState& order) {
  const Value& v = order.get(schema::fields::kOrderStatus);
  return v.kind() == Value::Kind::kText ? v.as_text() : std::string();
}

constexpr uint16_t kOrderApprovedAt = 8;
constexpr uint16_t kOrderNotes = 5;

ApiResult approve_order(ApiRequest& r) {
  if (std::optional<ApiError> bad = only_fields(r.body->as_object(), {})) return *bad;  // takes no fields
  Result<RecordState> order = visible_order(r);
  if (!order) return api_error_from(order.status());
  if (status_of(*order) != "submitted")
    return api_error(http::status::conflict, "invalid_transition",
                     "only a submitted order is approved (it is " + status_of(*order) + ")", "status");
  const EntityDef& e = schema::entity_ref(EntityId::kOrder);
  std::optional<schema::Role> needed = schema::transition_role(e, "submitted", "approved");
  if (!needed || r.caller.principal.role < *needed)
    return api_error(http::status::forbidden, "permission_denied", "your role may not approve orders",
                     "status");
  // approved_by and approved_at are server-owned: the server stamps them in the approval's own transaction,
  // which is therefore applied with head office's rights once the caller's own were checked above (the
  // transition's role, and the order in their scope).
  Principal stamp = r.caller.principal;
  stamp.role = schema::Role::kHeadOffice;
  using namespace schema::fields;
  const int64_t now = wall_ms();
  // The stamps before the status: once the status says approved, the order is locked.
  std::vector<Change> changes = {
      make(ChangeOp::kSet, EntityId::kOrder, order->id, kOrderApprovedBy, Value::text(r.caller.user)),
      make(ChangeOp::kSet, EntityId::kOrder, order->id, kOrderApprovedAt, Value::integer(now)),
      make(ChangeOp::kSet, EntityId::kOrder, order->id, kOrderStatus, Value::text("approved"))};
  json::object out;
  out["id"] = order->id.to_string();
  out["status"] = "approved";
  return write_answer(write(r, stamp, std::move(changes)), std::move(out));
}

ApiResult reject_order(ApiRequest& r) {
  std::variant<std::string, ApiError> parsed = parse_reject_body(r.body->as_object());
  if (ApiError* bad = std::get_if<ApiError>(&parsed)) return std::move(*bad);
  const std::string& reason = std::get<std::string>(parsed);
  if (!r.caller.manager_or_above())
    return api_error(http::status::forbidden, "permission_denied", "your role may not reject orders",
                     "status");
  Result<RecordState> order = visible_order(r);
  if (!order) return api_error_from(order.status());
  if (status_of(*order) != "submitted")
    return api_error(http::status::conflict, "invalid_transition",
                     "only a submitted order is rejected (it is " + status_of(*order) + ")", "status");
  // Back to draft, and the reason in the order's notes, which the rep's device shows.
  std::vector<Change> changes = {
      make(ChangeOp::kSet, EntityId::kOrder, order->id, schema::fields::kOrderStatus, Value::text("draft")),
      make(ChangeOp::kAppend, EntityId::kOrder, order->id, kOrderNotes,
           Value::text("Rejected by " + r.caller.user + ": " + reason))};
  json::object out;
  out["id"] = order->id.to_string();
  out["status"] = "draft";
  return write_answer(write(r, r.caller.principal, std::move(changes)), std::move(out));
}

ApiResult fulfil_order(ApiRequest& r) {
  if (std::optional<ApiError> bad = only_fields(r.body->as_object(), {})) return *bad;  // takes no fields
  Result<RecordState> order = visible_order(r);
  if (!order) return api_error_from(order.status());
  if (status_of(*order) != "approved")
    return api_error(http::status::conflict, "invalid_transition",
                     "only an approved order is fulfilled (it is " + status_of(*order) + ")", "status");
  std::vector<Change> changes = {make(ChangeOp::kSet, EntityId::kOrder, order->id,
                                      schema::fields::kOrderStatus, Value::text("fulfilled"))};
  json::object out;
  out["id"] = order->id.to_string();
  out["status"] = "fulfilled";
  return write_answer(write(r, r.caller.principal, std::move(changes)), std::move(out));
}

// ---- Reassignment and handover (head office)

// Applies `changes` in transactions of at most kApiChangesPerTxn; stops at the first rejection.
ApiResult write_in_steps(ApiRequest& r, std::vector<Change> changes, json::object out) {
  size_t applied = 0;
  uint64_t last_seq = 0;
  for (size_t i = 0; i < changes.size(); i += limits::kApiChangesPerTxn) {
    std::vector<Change> part(changes.begin() + static_cast<std::ptrdiff_t>(i),
                             changes.begin() + static_cast<std::ptrdiff_t>(
                                                   std::min(changes.size(), i + limits::kApiChangesPerTxn)));
    const size_t n = part.size();
    Result<protocol::TxnResult> res = write(r, r.caller.principal, std::move(part));
    if (!res || res->outcome != protocol::TxnOutcome::kApplied) {
      if (applied == 0) return write_answer(std::move(res), std::move(out));
      ApiError e = res ? api_error_from(Status(res->reason, res->message)) : api_error_from(res.status());
      e.message += " (after " + std::to_string(applied) + " changes were applied)";
      return e;
    }
    applied += n;
    last_seq = res->server_seq;
  }
  out["server_seq"] = last_seq;
  out["changes"] = static_cast<int64_t>(applied);
  return ok(std::move(out));
}

ApiResult reassign(ApiRequest& r) {
  std::variant<ReassignBody, ApiError> parsed = parse_reassign_body(r.body->as_object());
  if (ApiError* bad = std::get_if<ApiError>(&parsed)) return std::move(*bad);
  const ReassignBody& body = std::get<ReassignBody>(parsed);
  Directory& dir = *r.impl->options.directory;
  // Where to: a territory, or the one territory of a rep.
  std::string territory;
  if (body.territory) {
    territory = *body.territory;
  } else {
    Result<std::vector<std::string>> t = dir.user_territories(*body.to_rep);
    if (!t || t->size() != 1)
      return api_error(http::status::unprocessable_entity, "value_invalid",
                       "to_rep must have exactly one territory; name the territory instead", "to_rep");
    territory = t->front();
  }
  bool known = false;
  for (const Territory& t : dir.territories()) known |= t.id == territory;
  if (!known)
    return api_error(http::status::unprocessable_entity, "value_invalid", "no territory " + territory,
                     "territory");
  std::vector<RecordId> accounts;
  if (body.accounts) {
    for (const RecordId& id : *body.accounts) {
      Result<bool> seen = visible(*r.impl, r.caller, EntityId::kAccount, id);
      if (!seen) return api_error_from(seen.status());
      if (!*seen)
        return api_error(http::status::not_found, "not_found", "no account " + id.to_string(), "accounts");
      accounts.push_back(id);
    }
  } else {
    Result<std::vector<std::string>> t = dir.user_territories(*body.from_rep);
    if (!t) return api_error_from(t.status());
    Result<ReaderPool::Lease> db = open_reader(*r.impl);
    if (!db) return api_error_from(db.status());
    for (const std::string& terr : *t) {
      SqlRows q =
          (*db)->query("SELECT id FROM account WHERE territory_id = ? AND _deleted = FALSE ORDER BY id",
                       {Value::text(terr)});
      while (q.step())
        if (std::optional<RecordId> id = RecordId::parse(q.col_text(0))) accounts.push_back(*id);
      if (!q.ok()) return api_error_from(q.status());
    }
  }
  std::vector<Change> changes;
  for (const RecordId& id : accounts)
    changes.push_back(make(ChangeOp::kSet, EntityId::kAccount, id, schema::fields::kAccountTerritory,
                           Value::text(territory)));
  json::object out;
  out["territory"] = territory;
  out["accounts"] = static_cast<int64_t>(accounts.size());
  if (changes.empty()) {
    out["server_seq"] = nullptr;
    out["changes"] = 0;
    return ok(std::move(out));
  }
  return write_in_steps(r, std::move(changes), std::move(out));
}

// POST /api/v1/users/{id}/handover {"to"}: the departing user's territories, open deals, open orders, future
// appointments, open leads and tasks and the service cases assigned to them go to a colleague in one step.
ApiResult handover(ApiRequest& r) {
  std::variant<std::string, ApiError> parsed = parse_handover_body(r.body->as_object());
  if (ApiError* bad = std::get_if<ApiError>(&parsed)) return std::move(*bad);
  const UserId to = std::get<std::string>(parsed);
  const UserId from = r.params["id"];
  Directory& dir = *r.impl->options.directory;
  Result<User> fu = dir.user(from);
  if (!fu) return api_error(http::status::not_found, "not_found", "no such user");
  Result<User> tu = dir.user(to);
  if (!tu || tu->partner || tu->role == schema::Role::kHeadOffice || to == from)
    return api_error(http::status::unprocessable_entity, "value_invalid", "to must be another rep or manager",
                     "to");
  Result<ReaderPool::Lease> db = open_reader(*r.impl);
  if (!db) return api_error_from(db.status());
  // What changes hands, each kind by one query of the departing user's open records and the field that
  // names them. Open orders (draft or submitted: a locked one keeps the rep who took it) and future
  // appointments move in place (schema 2: order.rep_id and calendar_event.owner_id are head office's and a
  // manager's to reassign), so a link from a visit still holds; so do schema 3's open leads, open tasks and
  // the service cases assigned to them.
  struct Held {
    const char* key;  // in the answer
    EntityId entity;
    uint16_t field;
    std::string sql;  // the ids; binds the user, then `now` where it says so
    bool binds_now = false;
    int64_t count = 0;
  };
  Held held[] = {
      {"deals", EntityId::kOpportunity, schema::fields::kOpportunityOwner,
       "SELECT id FROM opportunity WHERE owner_id = ? AND _deleted = FALSE AND stage NOT IN ('won', 'lost')"},
      {"orders", EntityId::kOrder, schema::fields::kOrderRep,
       "SELECT id FROM \"order\" WHERE rep_id = ? AND _deleted = FALSE AND status IN ('draft', 'submitted')"},
      {"appointments", EntityId::kCalendarEvent, schema::fields::kEventOwner,
       "SELECT id FROM calendar_event WHERE owner_id = ? AND _deleted = FALSE AND status = 'scheduled' AND "
       "start_at >= ?",
       true},
      {"leads", EntityId::kLead, schema::fields::kLeadOwner,
       "SELECT id FROM lead WHERE owner_id = ? AND _deleted = FALSE AND status IN ('new', 'contacted', "
       "'qualified')"},
      {"tasks", EntityId::kTask, schema::fields::kTaskOwner,
       "SELECT id FROM task WHERE owner_id = ? AND _deleted = FALSE AND status = 'open'"},
      {"service_cases", EntityId::kServiceCase, schema::fields::kCaseAssignee,
       "SELECT id FROM service_case WHERE assignee_id = ? AND _deleted = FALSE AND status NOT IN "
       "('resolved', "
       "'closed')"},
  };
  std::vector<Change> changes;
  for (Held& h : held) {
    std::vector<Value> binds{Value::text(from)};
    if (h.binds_now) binds.push_back(Value::integer(wall_ms()));
    SqlRows q = (*db)->query(h.sql, std::move(binds));
    while (q.step()) {
      if (std::optional<RecordId> id = RecordId::parse(q.col_text(0))) {
        changes.push_back(make(ChangeOp::kSet, h.entity, *id, h.field, Value::text(to)));
        ++h.count;
      }
    }
    if (!q.ok()) return api_error_from(q.status());
  }
  // Territories first: the records are the colleague's to see before their ownership moves.
  Result<std::vector<std::string>> territories = dir.user_territories(from);
  if (!territories) return api_error_from(territories.status());
  for (const std::string& t : *territories) {
    if (Status s = dir.assign_territory(to, t); !s) return api_error_from(s);
    (void)dir.unassign_territory(from, t);
  }
  json::object detail;
  detail["to"] = to;
  json::array ts;
  for (const std::string& t : *territories) ts.emplace_back(t);
  detail["territories"] = ts;
  (void)dir.audit(AuditRecord{0, wall_ms(), r.caller.user, "user.handover", from, json::serialize(detail)});
  json::object out;
  out["territories"] = std::move(ts);
  for (const Held& h : held) out[h.key] = h.count;
  if (changes.empty()) {
    out["server_seq"] = nullptr;
    out["changes"] = 0;
    return ok(std::move(out));
  }
  return write_in_steps(r, std::move(changes), std::move(out));
}

// ---- Conflicts

json::object conflict_json(int64_t id, const ConflictRecord& c,
                           const std::optional<ConflictResolution>& res) {
  json::object o;
  o["id"] = id;
  o["server_seq"] = c.server_seq;
  o["kind"] = to_string(c.kind);
  const EntityDef* e = schema::entity(c.entity);
  o["entity"] = e ? std::string(e->name) : std::string();
  o["record"] = c.record.to_string();
  const FieldDef* f = e && c.field ? e->field(c.field) : nullptr;
  o["field"] = f ? json::value(std::string(f->name)) : json::value(nullptr);
  auto side = [](const ConflictSide& s) {
    json::object x;
    x["value"] = value_to_json(s.value);
    x["user"] = s.user;
    x["at_ms"] = hlc_physical_ms(s.version.hlc);
    x["node"] = std::to_string(s.version.node);
    return x;
  };
  o["winner"] = side(c.winner);
  o["loser"] = side(c.loser);
  o["other_record"] =
      c.kind == ConflictKind::kScheduling ? json::value(c.other_record.to_string()) : json::value(nullptr);
  o["rule"] = c.rule;
  if (res) {
    json::object x;
    x["by"] = res->resolved_by;
    x["at_ms"] = res->at_ms;
    x["action"] = res->action;
    x["server_seq"] = res->server_seq ? json::value(res->server_seq) : json::value(nullptr);
    o["resolution"] = std::move(x);
  } else {
    o["resolution"] = nullptr;
  }
  return o;
}

// Whether the caller may see a conflict: one of its sides, or its record in their scope.
bool conflict_visible(NetServer::Impl& impl, const Caller& c, const ConflictRecord& rec) {
  if (c.head_office()) return true;
  if (rec.winner.user == c.user || rec.loser.user == c.user) return !c.partner() || partner_reads(rec.entity);
  Result<bool> seen = visible(impl, c, rec.entity, rec.record);
  return seen && *seen;
}

ApiResult list_conflicts(ApiRequest& r) {
  std::vector<std::string> where{"TRUE"};
  std::vector<Value> params;
  std::optional<bool> resolved;
  int64_t after = 0;
  size_t limit = limits::kApiDefaultPage;
  for (const auto& [k, v] : r.query) {
    if (k == "kind" || k == "entity") {
      where.push_back(k + " = ?");
      params.push_back(Value::text(v));
    } else if (k == "rep") {
      where.push_back("(winner_user = ? OR loser_user = ?)");
      params.push_back(Value::text(v));
      params.push_back(Value::text(v));
    } else if (k == "resolved") {
      if (v != "true" && v != "false")
        return api_error(http::status::bad_request, "value_invalid", "resolved is true or false", k);
      resolved = v == "true";
    } else if (k == "after") {
      std::optional<int64_t> n = parse_int(v);
      if (!n) return api_error(http::status::bad_request, "value_invalid", "after is a conflict id", k);
      after = *n;
    } else if (k == "limit") {
      std::optional<int64_t> n = parse_int(v);
      if (!n || *n < 1 || *n > static_cast<int64_t>(limits::kApiMaxPage))
        return api_error(http::status::bad_request, "value_invalid", "limit is 1..500", k);
      limit = static_cast<size_t>(*n);
    } else {
      return api_error(http::status::bad_request, "unknown_field", "unknown parameter " + k, k);
    }
  }
  Result<std::vector<ConflictResolution>> all = r.impl->options.directory->resolutions();
  if (!all) return api_error_from(all.status());
  std::map<int64_t, ConflictResolution> resolutions;
  for (ConflictResolution& c : *all) resolutions[c.conflict_id] = std::move(c);
  Result<ReaderPool::Lease> db = open_reader(*r.impl);
  if (!db) return api_error_from(db.status());
  json::array items;
  int64_t last = after;
  bool more = false;
  // Pages of rows until a page of visible, matching conflicts is full (scope is judged per conflict).
  for (;;) {
    std::string sql = "SELECT id, blob FROM _conflicts WHERE id > ?";
    for (const std::string& w : where) sql += " AND " + w;
    sql += " ORDER BY id LIMIT 500";
    std::vector<Value> bound{Value::integer(last)};
    bound.insert(bound.end(), params.begin(), params.end());
    SqlRows q = (*db)->query(sql, bound);
    size_t rows = 0;
    while (q.step()) {
      ++rows;
      const int64_t id = q.col_int(0);
      Result<ConflictRecord> c = codec::decode_conflict(q.col_blob(1));
      if (!c) return api_error_from(c.status());
      if (items.size() == limit) {
        more = true;
        break;
      }
      last = id;
      auto res = resolutions.find(id);
      const bool is_resolved = res != resolutions.end();
      if (resolved && *resolved != is_resolved) continue;
      if (!conflict_visible(*r.impl, r.caller, *c)) continue;
      items.push_back(conflict_json(id, *c, is_resolved ? std::optional(res->second) : std::nullopt));
    }
    if (!q.ok()) return api_error_from(q.status());
    if (more || rows < 500) break;
  }
  json::object out;
  out["next_after"] = more ? json::value(last) : json::value(nullptr);
  out["items"] = std::move(items);
  return ok(std::move(out));
}

Result<std::optional<ConflictRecord>> read_conflict(NetServer::Impl& impl, int64_t id) {
  Result<ReaderPool::Lease> db = open_reader(impl);
  if (!db) return db.status();
  SqlRows q = (*db)->query("SELECT blob FROM _conflicts WHERE id = ?", {Value::integer(id)});
  if (!q.step()) {
    if (!q.ok()) return q.status();
    return std::optional<ConflictRecord>();
  }
  Result<ConflictRecord> c = codec::decode_conflict(q.col_blob(0));
  if (!c) return c.status();
  return std::optional<ConflictRecord>(std::move(*c));
}

ApiResult resolve_conflict(ApiRequest& r) {
  std::variant<std::string, ApiError> parsed = parse_resolve_body(r.body->as_object());
  if (ApiError* bad = std::get_if<ApiError>(&parsed)) return std::move(*bad);
  const std::string action = std::get<std::string>(parsed);
  std::optional<int64_t> id = parse_int(r.params["id"]);
  if (!id) return api_error(http::status::not_found, "not_found", "no such conflict");
  Result<std::optional<ConflictRecord>> c = read_conflict(*r.impl, *id);
  if (!c) return api_error_from(c.status());
  if (!*c || !conflict_visible(*r.impl, r.caller, **c))
    return api_error(http::status::not_found, "not_found", "no such conflict");
  Directory& dir = *r.impl->options.directory;
  Result<std::optional<ConflictResolution>> existing = dir.resolution(*id);
  if (!existing) return api_error_from(existing.status());
  if (*existing)
    return api_error(http::status::conflict, "already_resolved", "this conflict is already resolved");
  ConflictResolution res{*id, r.caller.user, wall_ms(), action, 0};
  json::object out;
  out["id"] = *id;
  out["action"] = action;
  if (action == "restore") {
    const ConflictRecord& cr = **c;
    if (cr.kind != ConflictKind::kConcurrentWrite || cr.field == 0)
      return api_error(http::status::unprocessable_entity, "not_restorable",
                       "only a concurrent write's losing value can be restored", "action");
    // The losing value becomes a new change of the web user: the same rules, and it syncs out like any other.
    Result<protocol::TxnResult> w =
        write(r, r.caller.principal, {make(ChangeOp::kSet, cr.entity, cr.record, cr.field, cr.loser.value)});
    if (!w) return api_error_from(w.status());
    if (w->outcome != protocol::TxnOutcome::kApplied) return api_error_from(Status(w->reason, w->message));
    res.server_seq = w->server_seq;
    out["server_seq"] = w->server_seq;
  } else {
    out["server_seq"] = nullptr;
  }
  if (Status s = dir.set_resolution(res); !s)
    return api_error(http::status::conflict, "already_resolved", s.message());
  return ok(std::move(out));
}

// Scheduling conflicts per rep and day (UTC day of the event's start; the page shows it in local time).
ApiResult scheduling_conflicts(ApiRequest& r) {
  std::optional<std::string> rep;
  for (const auto& [k, v] : r.query) {
    if (k == "rep") {
      rep = v;
    } else {
      return api_error(http::status::bad_request, "unknown_field", "unknown parameter " + k, k);
    }
  }
  Result<ReaderPool::Lease> db = open_reader(*r.impl);
  if (!db) return api_error_from(db.status());
  // The rep is the events' owner, not necessarily who booked them (a manager books for the team).
  SqlRows q =
      (*db)->query("SELECT id, blob FROM _conflicts WHERE kind = 'scheduling' ORDER BY id LIMIT 5000");
  std::map<std::pair<std::string, int64_t>, json::array> groups;
  while (q.step()) {
    Result<ConflictRecord> c = codec::decode_conflict(q.col_blob(1));
    if (!c) return api_error_from(c.status());
    std::optional<RecordState> ev;
    Result<bool> seen = visible(*r.impl, r.caller, EntityId::kCalendarEvent, c->record, &ev);
    if (!seen || !*seen) continue;
    const Value& start = ev->get(schema::fields::kEventStart);
    const Value& owner = ev->get(schema::fields::kEventOwner);
    if (start.kind() != Value::Kind::kInt || owner.kind() != Value::Kind::kText) continue;
    if (rep && owner.as_text() != *rep) continue;
    const int64_t day = start.as_int() - ((start.as_int() % 86'400'000) + 86'400'000) % 86'400'000;
    groups[{owner.as_text(), day}].push_back(conflict_json(q.col_int(0), *c, std::nullopt));
  }
  if (!q.ok()) return api_error_from(q.status());
  json::array items;
  for (auto& [key, list] : groups) {
    json::object o;
    o["rep"] = key.first;
    o["day_ms"] = key.second;
    o["conflicts"] = std::move(list);
    items.push_back(std::move(o));
  }
  json::object out;
  out["items"] = std::move(items);
  return ok(std::move(out));
}

// ---- Change feed

// One server transaction as the caller may see it: its visible changes (nullopt: none).
std::optional<json::object> txn_json(NetServer::Impl& impl, const Caller& c, const ServerTxn& t,
                                     std::map<RecordKey, bool>& seen_cache) {
  json::array changes;
  for (const Change& ch : t.changes) {
    const RecordKey key{ch.entity, ch.record};
    auto it = seen_cache.find(key);
    if (it == seen_cache.end()) {
      bool v = c.head_office();
      if (!v) {
        // Judged on current state, like a device's pull: a record that later left the scope is not shown.
        Result<bool> s = visible(impl, c, ch.entity, ch.record);
        v = s && *s;
      }
      it = seen_cache.emplace(key, v).first;
    }
    if (!it->second) continue;
    json::object o;
    const EntityDef& e = schema::entity_ref(ch.entity);
    o["entity"] = e.name;
    o["id"] = ch.record.to_string();
    o["op"] = ch.op == ChangeOp::kCreate   ? "create"
              : ch.op == ChangeOp::kSet    ? "set"
              : ch.op == ChangeOp::kAppend ? "append"
                                           : "delete";
    const FieldDef* f = ch.field ? e.field(ch.field) : nullptr;
    o["field"] = f ? json::value(std::string(f->name)) : json::value(nullptr);
    o["value"] = ch.field ? value_to_json(ch.value) : json::value(nullptr);
    o["at_ms"] = hlc_physical_ms(ch.version.hlc);
    changes.push_back(std::move(o));
  }
  if (changes.empty()) return std::nullopt;
  json::object o;
  o["server_seq"] = t.server_seq;
  o["user"] = t.origin_user;
  o["node"] = std::to_string(t.origin_node);
  o["changes"] = std::move(changes);
  return o;
}

struct FeedPage {
  json::array txns;
  json::array conflicts;
  // Each conflict's place: its server_seq and its 1-based position among every conflict of that commit
  // (visible or not, in the store's order), which the SSE stream's event ids carry.
  std::vector<std::pair<uint64_t, size_t>> conflict_pos;
  uint64_t next = 0;
  uint64_t head = 0;
};

// The conflicts of commits (after, up_to] that `c` may see, with their places (FeedPage::conflict_pos).
Status visible_conflicts(NetServer::Impl& impl, const Caller& c, uint64_t after, uint64_t up_to,
                         json::array& out, std::vector<std::pair<uint64_t, size_t>>& pos) {
  Result<std::vector<ConflictRecord>> conflicts = impl.store.read_conflicts(after, up_to);
  if (!conflicts) return conflicts.status();
  uint64_t seq = 0;
  size_t n = 0;
  for (const ConflictRecord& rec : *conflicts) {
    n = rec.server_seq == seq ? n + 1 : 1;
    seq = rec.server_seq;
    if (!conflict_visible(impl, c, rec)) continue;
    out.push_back(conflict_json(0, rec, std::nullopt));
    pos.emplace_back(seq, n);
  }
  return Status::ok();
}

Result<FeedPage> read_feed(NetServer::Impl& impl, const Caller& c, uint64_t since, size_t max_changes) {
  CentralStore& store = impl.store;
  Result<uint64_t> head = store.head_seq();
  if (!head) return head.status();
  FeedPage page;
  page.head = *head;
  page.next = since;
  if (since >= *head) return page;
  std::vector<ServerTxn> txns;
  uint64_t searched = since;
  std::optional<std::vector<ScopeKey>> scopes = visible_scopes(c.principal);
  if (!scopes) {
    Result<std::vector<ServerTxn>> all = store.read_log(since, max_changes);
    if (!all) return all.status();
    txns = std::move(*all);
    searched = txns.empty() ? *head : txns.back().server_seq;
  } else {
    Result<CentralStore::LogSlice> slice = store.read_log_for(since, *head, *scopes, max_changes);
    if (!slice) return slice.status();
    txns = std::move(slice->txns);
    searched = slice->searched_to;
  }
  std::map<RecordKey, bool> cache;
  for (const ServerTxn& t : txns)
    if (std::optional<json::object> o = txn_json(impl, c, t, cache)) page.txns.push_back(std::move(*o));
  if (Status st = visible_conflicts(impl, c, since, searched, page.conflicts, page.conflict_pos); !st)
    return st;
  page.next = searched;
  return page;
}

ApiResult changes(ApiRequest& r) {
  uint64_t since = 0;
  size_t limit = 500;
  for (const auto& [k, v] : r.query) {
    std::optional<int64_t> n = parse_int(v);
    if (k == "since") {
      if (!n || *n < 0)
        return api_error(http::status::bad_request, "value_invalid", "since is a server_seq", k);
      since = static_cast<uint64_t>(*n);
    } else if (k == "limit") {
      if (!n || *n < 1 || *n > 4000)
        return api_error(http::status::bad_request, "value_invalid", "limit is 1..4000 changes", k);
      limit = static_cast<size_t>(*n);
    } else {
      return api_error(http::status::bad_request, "unknown_field", "unknown parameter " + k, k);
    }
  }
  Result<FeedPage> page = read_feed(*r.impl, r.caller, since, limit);
  if (!page) return api_error_from(page.status());
  json::object out;
  out["items"] = std::move(page->txns);
  out["conflicts"] = std::move(page->conflicts);
  out["next_since"] = page->next;
  out["head"] = page->head;
  return ok(std::move(out));
}

// The SSE stream's state, shared by its chunk source's calls (one at a time: the session asks for the next
// chunk only once the previous one is written).
struct Stream {
  NetServer::Impl* impl = nullptr;
  Caller caller;
  std::shared_ptr<HttpSession> session;
  // Where the stream is: every change up to `since` and, with `partial` unset, every conflict of those
  // commits; with it set, only the first *partial conflicts of commit `since` (the rest follow first).
  uint64_t since = 0;
  std::optional<size_t> partial;
  int64_t last_write_ms = 0;
  bool started = false;
};

void next_sse_chunk(const std::shared_ptr<Stream>& s, HttpSession::ChunkSink deliver) {
  api_post(*s->impl, [s, deliver = std::move(deliver)]() mutable {
    std::string out;
    if (!s->started) {
      s->started = true;
      out = "retry: 2000\n\n";  // the browser's EventSource reconnects after 2 s, with Last-Event-ID
    }
    // A disabled user's stream ends with their session.
    Result<User> u = s->impl->options.directory->user(s->caller.user);
    if (!u || u->disabled) return deliver(std::nullopt);
    Result<FeedPage> page = read_feed(*s->impl, s->caller, s->since, 500);
    if (!page) return deliver(std::nullopt);  // the browser reconnects from its last id
    // Events in log order, each conflict right after the change of its commit. A change's id is its
    // server_seq: resuming from it sends that commit's conflicts. A conflict's is "SEQ.N", the Nth conflict
    // of commit SEQ: resuming from it sends the ones after it. So a drop anywhere loses and repeats nothing.
    json::array first;  // the rest of commit `since`'s conflicts, when the stream resumed between them
    std::vector<std::pair<uint64_t, size_t>> first_pos;
    if (s->partial && s->since > 0) {
      json::array all;
      std::vector<std::pair<uint64_t, size_t>> pos;
      if (!visible_conflicts(*s->impl, s->caller, s->since - 1, s->since, all, pos))
        return deliver(std::nullopt);
      for (size_t i = 0; i < all.size(); ++i)
        if (pos[i].second > *s->partial) {
          first.push_back(std::move(all[i]));
          first_pos.push_back(pos[i]);
        }
    }
    s->partial.reset();
    auto conflict_event = [&](const json::value& c, std::pair<uint64_t, size_t> at) {
      out += "id: " + std::to_string(at.first) + "." + std::to_string(at.second) +
             "\nevent: conflict\ndata: " + json::serialize(c) + "\n\n";
    };
    for (size_t i = 0; i < first.size(); ++i) conflict_event(first[i], first_pos[i]);
    size_t next_conflict = 0;
    for (const json::value& t : page->txns) {
      const uint64_t seq = t.as_object().at("server_seq").as_uint64();
      for (; next_conflict < page->conflicts.size() && page->conflict_pos[next_conflict].first < seq;
           ++next_conflict)
        conflict_event(page->conflicts[next_conflict], page->conflict_pos[next_conflict]);
      out += "id: " + std::to_string(seq) + "\nevent: change\ndata: " + json::serialize(t) + "\n\n";
    }
    for (; next_conflict < page->conflicts.size(); ++next_conflict)
      conflict_event(page->conflicts[next_conflict], page->conflict_pos[next_conflict]);
    if (page->next > s->since && page->txns.empty() && page->conflicts.empty() && first.empty())
      out += "id: " + std::to_string(page->next) + "\n\n";  // nothing visible, but the position moved
    s->since = page->next;
    const int64_t now = wall_ms();
    if (out.empty() && now - s->last_write_ms >= limits::kSseKeepAliveMs) out = ": keep-alive\n\n";
    if (!out.empty()) {
      s->last_write_ms = now;
      return deliver(std::move(out));
    }
    // Nothing new: ask again after a pause, on the session's strand (so a drain's close cancels the wait).
    Strand strand = s->session->strand();
    boost::asio::post(strand, [s, deliver = std::move(deliver)]() mutable {
      s->session->after(limits::kSsePollMs, [s, deliver = std::move(deliver)]() mutable {
        next_sse_chunk(s, std::move(deliver));
      });
    });
  });
}

std::optional<ApiError> start_stream(ApiRequest& r) {
  auto s = std::make_shared<Stream>();
  s->impl = r.impl;
  s->caller = r.caller;
  s->session = r.session;
  for (const auto& [k, v] : r.query) {
    if (k != "since")
      return api_error(http::status::bad_request, "unknown_field", "unknown parameter " + k, k);
    std::optional<int64_t> n = parse_int(v);
    if (!n || *n < 0)
      return api_error(http::status::bad_request, "value_invalid", "since is a server_seq", k);
    s->since = static_cast<uint64_t>(*n);
  }
  // A reconnecting EventSource repeats the URL it was opened with (its `since`) and says in Last-Event-ID
  // the last event it received: the stream resumes after that, so nothing is sent twice or skipped. An
  // event's id is a server_seq (a change's own, after which that commit's conflicts follow, or the position
  // the stream had reached) or "SEQ.N" (the Nth conflict of commit SEQ).
  if (!r.last_event_id.empty()) {
    const std::string& id = r.last_event_id;
    const size_t dot = id.find('.');
    std::optional<int64_t> n = parse_int(id.substr(0, dot));
    std::optional<int64_t> k =
        dot == std::string::npos ? std::optional<int64_t>(0) : parse_int(id.substr(dot + 1));
    if (!n || *n < 0 || !k || *k < 0)
      return api_error(http::status::bad_request, "value_invalid", "Last-Event-ID is SEQ or SEQ.N",
                       "Last-Event-ID");
    s->since = static_cast<uint64_t>(*n);
    s->partial = static_cast<size_t>(*k);
  }
  Strand strand = r.session->strand();
  boost::asio::post(strand, [s] {
    s->session->respond_stream(
        http::status::ok, "text/event-stream", {{http::field::cache_control, "no-store"}},
        [s](HttpSession::ChunkSink deliver) { next_sse_chunk(s, std::move(deliver)); });
  });
  return std::nullopt;
}

// GET /api/v1/changes/export?since=SEQ: every visible change after `since` up to the head at the start, as
// NDJSON (one transaction per line), streamed in chunks of one feed page: an ERP's bulk catch-up without
// paging, in constant memory however long the log.
std::optional<ApiError> start_export(ApiRequest& r) {
  uint64_t since = 0;
  for (const auto& [k, v] : r.query) {
    if (k != "since")
      return api_error(http::status::bad_request, "unknown_field", "unknown parameter " + k, k);
    std::optional<int64_t> n = parse_int(v);
    if (!n || *n < 0)
      return api_error(http::status::bad_request, "value_invalid", "since is a server_seq", k);
    since = static_cast<uint64_t>(*n);
  }
  Result<uint64_t> head = r.impl->store.head_seq();
  if (!head) return api_error_from(head.status());
  struct Cursor {
    uint64_t since = 0;
    uint64_t until = 0;
  };
  auto cursor = std::make_shared<Cursor>(Cursor{since, *head});
  NetServer::Impl* impl = r.impl;
  Caller caller = r.caller;
  api_stream_checked(r, "application/x-ndjson", {},
                     [impl, caller, cursor]() -> Result<std::optional<std::string>> {
                       if (cursor->since >= cursor->until) return std::optional<std::string>();
                       Result<FeedPage> page = read_feed(*impl, caller, cursor->since, 500);
                       // A store error ends the connection without the last chunk: the client sees a cut
                       // transfer and continues from the last server_seq it read.
                       if (!page) return page.status();
                       std::string out;
                       for (const json::value& t : page->txns)
                         if (t.as_object().at("server_seq").as_uint64() <= cursor->until)
                           out += json::serialize(t) + "\n";
                       cursor->since = page->next;
                       return std::optional<std::string>(std::move(out));  // empty: nothing visible here
                     });
  return std::nullopt;
}

}  // namespace

// ---- Sync health

ApiResult sync_health(ApiRequest& r) {
  Directory& dir = *r.impl->options.directory;
  std::set<UserId> users{r.caller.user};
  for (const UserId& m : r.caller.principal.team) users.insert(m);
  Result<uint64_t> head = r.impl->store.head_seq();
  if (!head) return api_error_from(head.status());
  Result<ReaderPool::Lease> db = open_reader(*r.impl);
  if (!db) return api_error_from(db.status());
  std::map<NodeId, SyncService::LiveDevice> activity = r.impl->service.device_activity();
  std::set<NodeId> online;
  for (const SyncService::LiveDevice& d : r.impl->service.live_devices()) online.insert(d.node);
  json::array devices;
  for (const Device& d : dir.devices()) {
    if (!r.caller.head_office() && !users.count(d.user)) continue;
    json::object o;
    o["node"] = std::to_string(d.node);
    o["user"] = d.user;
    o["revoked"] = d.revoked;
    o["online"] = online.count(d.node) > 0;
    auto it = activity.find(d.node);
    auto ms = [](int64_t v) { return v == 0 ? json::value(nullptr) : json::value(v); };
    o["last_connected_ms"] = it != activity.end() ? ms(it->second.connected_at_ms) : json::value(nullptr);
    o["last_push_ms"] = it != activity.end() ? ms(it->second.last_push_ms) : json::value(nullptr);
    o["last_pull_ms"] = it != activity.end() ? ms(it->second.last_pull_ms) : json::value(nullptr);
    o["protocol_version"] =
        it != activity.end() ? json::value(it->second.protocol_version) : json::value(nullptr);
    o["schema_version"] =
        it != activity.end() ? json::value(it->second.schema_version) : json::value(nullptr);
    // null: unknown (an app built before Hello.app_version, or not connected since the server started).
    o["app_version"] = it != activity.end() && !it->second.app_version.empty()
                           ? json::value(it->second.app_version)
                           : json::value(nullptr);
    // The device's position: what it said at its handshake, then every batch the server sent it.
    o["cursor"] = it != activity.end() ? json::value(it->second.cursor) : json::value(nullptr);
    {
      SqlRows q = (*db)->query("SELECT last_node_seq FROM _nodes WHERE node = ?",
                               {Value::integer(static_cast<int64_t>(d.node))});
      o["last_node_seq"] = q.step() ? q.col_int(0) : 0;
    }
    {
      SqlRows q = (*db)->query("SELECT COUNT(*), MAX(recorded_at_ms) FROM _rejections WHERE node = ?",
                               {Value::integer(static_cast<int64_t>(d.node))});
      const bool row = q.step();
      o["rejections"] = row ? q.col_int(0) : 0;
      o["last_rejection_ms"] = row && !q.col_null(1) ? json::value(q.col_int(1)) : json::value(nullptr);
    }
    o["log_head"] = *head;
    devices.push_back(std::move(o));
  }
  json::array reps;
  for (const User& u : dir.users()) {
    if (u.partner || u.role != schema::Role::kRep) continue;
    if (!r.caller.head_office() && !users.count(u.id)) continue;
    json::object o;
    o["user"] = u.id;
    // When their work last reached head office (the log's receive time of their latest push), and the
    // latest visit and order it brought.
    const auto latest = [&](const std::string& sql) -> json::value {
      SqlRows q = (*db)->query(sql, {Value::text(u.id)});
      return q.step() && !q.col_null(0) ? json::value(q.col_int(0)) : json::value(nullptr);
    };
    o["last_change_reached_ms"] = latest("SELECT MAX(recorded_at_ms) FROM _log WHERE origin_user = ?");
    o["last_visit_check_in_ms"] =
        latest("SELECT MAX(check_in_at) FROM visit WHERE rep_id = ? AND _deleted = FALSE");
    o["last_order_submitted_ms"] =
        latest("SELECT MAX(submitted_at) FROM \"order\" WHERE rep_id = ? AND _deleted = FALSE");
    reps.push_back(std::move(o));
  }
  json::object out;
  out["log_head"] = *head;
  out["devices"] = std::move(devices);
  out["reps"] = std::move(reps);
  return ok(std::move(out));
}

void add_entity_routes(NetServer::Impl& impl, RouteTable& routes) {
  const std::string base = "/api/v1";
  add_api_route(impl, routes, http::verb::get, base + "/entities/{entity}", kAll, list_entities);
  add_api_route(impl, routes, http::verb::post, base + "/entities/{entity}", kAll, create_record);
  add_api_route(impl, routes, http::verb::get, base + "/entities/{entity}/{id}", kAll, get_record);
  add_api_route(impl, routes, http::verb::patch, base + "/entities/{entity}/{id}", kAll, patch_record);
  add_api_route(impl, routes, http::verb::get, base + "/entities/{entity}/{id}/history", kAll, get_history);
  add_api_route(impl, routes, http::verb::post, base + "/orders/{id}/approve", kManagers, approve_order);
  add_api_route(impl, routes, http::verb::post, base + "/orders/{id}/reject", kManagers, reject_order);
  add_api_route(impl, routes, http::verb::post, base + "/orders/{id}/fulfil", kHeadOffice, fulfil_order);
  add_api_route(impl, routes, http::verb::post, base + "/accounts/reassign", kHeadOffice, reassign);
  add_api_route(impl, routes, http::verb::post, base + "/users/{id}/handover", kHeadOffice, handover);
  add_api_route(impl, routes, http::verb::get, base + "/conflicts", kStaff, list_conflicts);
  add_api_route(impl, routes, http::verb::get, base + "/conflicts/scheduling", kStaff, scheduling_conflicts);
  add_api_route(impl, routes, http::verb::post, base + "/conflicts/{id}/resolve", kManagers,
                resolve_conflict);
  add_api_route(impl, routes, http::verb::get, base + "/changes", kAll, changes);
  add_api_stream_route(impl, routes, base + "/changes/stream", kAll, start_stream);
  add_api_stream_route(impl, routes, base + "/changes/export", kAll, start_export);
}

}  // namespace fieldsync::server

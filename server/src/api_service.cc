// The head-office API's actions on schema 3's entities that the model cannot derive (docs/API.md, "Leads and
// service cases"): converting a lead, dispatching a service case to a rep with a due time from the
// per-priority SLA setting, escalating a case, one case with its derived billable flag, and the SLA setting.
// Everything else about leads, cases, assets and tasks (lists, records, history, plain edits) is the generic
// entity API of api_entities.cc, derived from the model.
//
// Writes go through SyncService::write like a device's push, so the sync rules (sync/rules.h, including
// check_domain_rules) judge them exactly as they judge a device's transaction.
#include <algorithm>
#include <boost/json/serialize.hpp>
#include <map>
#include <random>

#include "api.h"
#include "fieldsync/server/directory.h"
#include "fieldsync/sync/export.h"
#include "fieldsync/sync/rules.h"
#include "fieldsync/sync/scope.h"
#include "net_impl.h"
#include "wall_clock.h"

namespace fieldsync::server {

namespace http = boost::beast::http;
namespace json = boost::json;
using schema::EntityId;

namespace {

const std::vector<std::string> kStaff = {"head_office", "manager", "rep"};
const std::vector<std::string> kManagers = {"head_office", "manager"};
const std::vector<std::string> kHeadOffice = {"head_office"};

// The SLA until a case of each priority is due, counted from when it was opened, unless head office set
// its own (PUT /api/v1/settings/case-sla): urgent the same half-day, high within a working day, normal the
// next day, low within three.
const std::map<std::string, int64_t> kDefaultSlaMinutes = {
    {"low", 72 * 60}, {"normal", 24 * 60}, {"high", 8 * 60}, {"urgent", 4 * 60}};
// At most a year: a longer SLA is a typo, and due_at stays far from overflowing.
constexpr int64_t kMaxSlaMinutes = 366 * 24 * 60;

uint16_t fid(EntityId e, std::string_view name) {
  const schema::FieldDef* f = schema::entity_ref(e).field(name);
  if (f == nullptr) std::abort();  // programmer error: the names below are the model's
  return f->id;
}

std::string text_of(const Value& v) {
  return v.kind() == Value::Kind::kText ? v.as_text() : std::string();
}

std::optional<int64_t> int_of(const Value& v) {
  if (v.kind() == Value::Kind::kInt) return v.as_int();
  return std::nullopt;
}

json::object record_json(const RecordState& r) {
  json::object o;
  o["id"] = r.id.to_string();
  for (const schema::FieldDef& f : schema::entity_ref(r.entity).fields)
    o[f.name] = value_to_json(r.get(f.id));
  return o;
}

ApiError no_such(std::string_view what) {
  return api_error(http::status::not_found, "not_found", "no such " + std::string(what));
}

// The record if it exists and `c` sees it (404 alike otherwise: nothing revealed).
Result<std::optional<RecordState>> visible_record(NetServer::Impl& impl, const Caller& c, EntityId e,
                                                  const std::string& id_text) {
  std::optional<RecordId> id = RecordId::parse(id_text);
  if (!id) return std::optional<RecordState>();
  std::optional<RecordState> rec;
  Result<bool> seen = visible(impl, c, e, *id, &rec);
  if (!seen) return seen.status();
  return rec;
}

// ---- The SLA setting: one row per priority in the store's _case_sla table (SQLite: created on first write;
// PostgreSQL: in the store's DDL, shared by every instance).

Result<std::map<std::string, int64_t>> sla_minutes(SqlReader& db) {
  std::map<std::string, int64_t> out = kDefaultSlaMinutes;
  if (db.dialect() == SqlDialect::kSqlite) {
    SqlRows exists = db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_case_sla'");
    const bool has = exists.step();
    if (!exists.ok()) return exists.status();
    if (!has) return out;
  }
  SqlRows q = db.query("SELECT priority, due_minutes FROM _case_sla");
  while (q.step()) {
    std::string p = q.col_text(0);
    if (out.count(p) != 0) out[p] = q.col_int(1);
  }
  if (!q.ok()) return q.status();
  return out;
}

Result<std::map<std::string, int64_t>> read_sla(NetServer::Impl& impl) {
  Result<ReportConnection> db = report_connection(impl);
  if (!db) return db.status();
  return sla_minutes(**db);
}

ApiReply sla_reply(const std::map<std::string, int64_t>& sla) {
  json::object o;
  for (const auto& [p, m] : sla) o[p] = m;
  return ApiReply{http::status::ok, json::object{{"due_minutes", std::move(o)}}, {}};
}

ApiResult get_sla(ApiRequest& r) {
  Result<std::map<std::string, int64_t>> sla = read_sla(*r.impl);
  if (!sla) return api_error_from(sla.status());
  return sla_reply(*sla);
}

// PUT {"due_minutes": {"urgent": 120, ...}}: the priorities named change, the others keep theirs.
ApiResult put_sla(ApiRequest& r) {
  const json::object& body = r.body->as_object();
  if (std::optional<ApiError> bad = only_fields(body, {"due_minutes"})) return *bad;
  const json::object* given = body.contains("due_minutes") ? body.at("due_minutes").if_object() : nullptr;
  if (given == nullptr)
    return api_error(http::status::bad_request, "wrong_type", "an object of priority: minutes",
                     "due_minutes");
  std::map<std::string, int64_t> set;
  for (const auto& [key, v] : *given) {
    const std::string p(key);
    if (kDefaultSlaMinutes.count(p) == 0)
      return api_error(http::status::bad_request, "value_invalid", "not a case priority: " + p, p);
    if (!v.is_int64() || v.as_int64() < 1 || v.as_int64() > kMaxSlaMinutes)
      return api_error(http::status::bad_request, "value_invalid",
                       "minutes are 1.." + std::to_string(kMaxSlaMinutes), p);
    set[p] = v.as_int64();
  }
  Result<std::unique_ptr<SqlReader>> db = settings_connection(*r.impl);
  if (!db) return api_error_from(db.status());
  SqlReader& d = **db;
  if (Status s = d.begin_write(); !s) return api_error_from(s);
  Status s;
  if (d.dialect() == SqlDialect::kSqlite)
    s = d.exec(
        "CREATE TABLE IF NOT EXISTS _case_sla (priority TEXT PRIMARY KEY, due_minutes INTEGER NOT NULL)");
  for (const auto& [p, m] : set) {
    if (!s) break;
    s = d.exec(
        "INSERT INTO _case_sla (priority, due_minutes) VALUES (?, ?) ON CONFLICT (priority) DO UPDATE "
        "SET due_minutes = excluded.due_minutes",
        {Value::text(p), Value::integer(m)});
  }
  if (s) s = d.commit();
  if (!s) {
    d.rollback();
    return api_error_from(s);
  }
  json::object detail;
  for (const auto& [p, m] : set) detail[p] = m;
  (void)r.impl->options.directory->audit(
      AuditRecord{0, wall_ms(), r.caller.user, "settings.case_sla", "service_case", json::serialize(detail)});
  return get_sla(r);
}

// ---- Lead conversion: POST /api/v1/leads/{id}/convert

ApiResult convert_lead(ApiRequest& r) {
  const json::object& b = r.body->as_object();
  if (std::optional<ApiError> bad = only_fields(
          b, {"existing_account_id", "account_name", "opportunity_name", "amount_cents", "currency"}))
    return *bad;
  std::string existing, account_name, opp_name, currency = "EUR";
  for (auto [name, out] :
       {std::pair{"existing_account_id", &existing}, std::pair{"account_name", &account_name},
        std::pair{"opportunity_name", &opp_name}, std::pair{"currency", &currency}})
    if (std::optional<ApiError> bad = string_field(b, name, out, false)) return *bad;
  int64_t amount = 0;
  if (b.contains("amount_cents")) {
    if (!b.at("amount_cents").is_int64())
      return api_error(http::status::bad_request, "wrong_type", "amount_cents must be an integer",
                       "amount_cents");
    amount = b.at("amount_cents").as_int64();
  }
  Result<std::optional<RecordState>> lead =
      visible_record(*r.impl, r.caller, EntityId::kLead, r.params["id"]);
  if (!lead) return api_error_from(lead.status());
  if (!*lead) return no_such("lead");
  const RecordState& l = **lead;
  const EntityId kL = EntityId::kLead;
  const std::string status = text_of(l.get(fid(kL, "status")));
  if (status == "converted" || status == "disqualified")
    return api_error(http::status::conflict, "invalid_transition", "the lead is " + status, "status");

  std::vector<Change> changes;
  RecordId account;
  if (!existing.empty()) {
    std::optional<RecordId> a = RecordId::parse(existing);
    if (!a)
      return api_error(http::status::bad_request, "value_invalid", "not a record id", "existing_account_id");
    account = *a;  // the rules check it exists and is in the caller's scope
  } else {
    const std::string company = text_of(l.get(fid(kL, "company_name")));
    if (account_name.empty())
      account_name = company.empty() ? text_of(l.get(fid(kL, "person_name"))) : company;
    account = id_generator().next(wall_ms());
    changes.push_back(make(ChangeOp::kCreate, EntityId::kAccount, account));
    changes.push_back(make(ChangeOp::kSet, EntityId::kAccount, account, fid(EntityId::kAccount, "name"),
                           Value::text(account_name)));
    changes.push_back(make(ChangeOp::kSet, EntityId::kAccount, account,
                           fid(EntityId::kAccount, "territory_id"), l.get(fid(kL, "territory_id"))));
    changes.push_back(make(ChangeOp::kSet, EntityId::kAccount, account, fid(EntityId::kAccount, "created_by"),
                           Value::text(r.caller.user)));
  }
  const RecordId contact = id_generator().next(wall_ms());
  changes.push_back(make(ChangeOp::kCreate, EntityId::kContact, contact));
  changes.push_back(make(ChangeOp::kSet, EntityId::kContact, contact, fid(EntityId::kContact, "account_id"),
                         Value::text(account.to_string())));
  changes.push_back(make(ChangeOp::kSet, EntityId::kContact, contact, fid(EntityId::kContact, "name"),
                         l.get(fid(kL, "person_name"))));
  for (const char* f : {"email", "phone"})
    if (!l.get(fid(kL, f)).is_null())
      changes.push_back(
          make(ChangeOp::kSet, EntityId::kContact, contact, fid(EntityId::kContact, f), l.get(fid(kL, f))));
  const RecordId opp = id_generator().next(wall_ms());
  // The deal stays with the lead's owner when a manager or head office converts it for them.
  const Value owner = r.caller.manager_or_above() ? l.get(fid(kL, "owner_id")) : Value::text(r.caller.user);
  if (opp_name.empty()) opp_name = text_of(l.get(fid(kL, "person_name"))) + " (lead)";
  const EntityId kO = EntityId::kOpportunity;
  changes.push_back(make(ChangeOp::kCreate, kO, opp));
  changes.push_back(make(ChangeOp::kSet, kO, opp, fid(kO, "account_id"), Value::text(account.to_string())));
  changes.push_back(make(ChangeOp::kSet, kO, opp, fid(kO, "owner_id"), owner));
  changes.push_back(make(ChangeOp::kSet, kO, opp, fid(kO, "name"), Value::text(opp_name)));
  changes.push_back(make(ChangeOp::kSet, kO, opp, fid(kO, "stage"), Value::text("prospect")));
  changes.push_back(make(ChangeOp::kSet, kO, opp, fid(kO, "amount_cents"), Value::integer(amount)));
  changes.push_back(make(ChangeOp::kSet, kO, opp, fid(kO, "currency"), Value::text(currency)));
  changes.push_back(
      make(ChangeOp::kSet, kL, l.id, fid(kL, "converted_account_id"), Value::text(account.to_string())));
  changes.push_back(
      make(ChangeOp::kSet, kL, l.id, fid(kL, "converted_contact_id"), Value::text(contact.to_string())));
  changes.push_back(
      make(ChangeOp::kSet, kL, l.id, fid(kL, "converted_opportunity_id"), Value::text(opp.to_string())));
  changes.push_back(make(ChangeOp::kSet, kL, l.id, fid(kL, "converted_at"), Value::integer(wall_ms())));
  // The status last: a converted lead is locked.
  changes.push_back(make(ChangeOp::kSet, kL, l.id, fid(kL, "status"), Value::text("converted")));
  json::object out{{"lead_id", l.id.to_string()},
                   {"account_id", account.to_string()},
                   {"contact_id", contact.to_string()},
                   {"opportunity_id", opp.to_string()}};
  return write_answer(write(r, r.caller.principal, std::move(changes)), std::move(out));
}

// ---- Service cases

const EntityId kCase = EntityId::kServiceCase;

Result<bool> billable(NetServer::Impl& impl, const RecordState& sc) {
  const Value asset_ref = sc.get(fid(kCase, "asset_id"));
  const int64_t opened = int_of(sc.get(fid(kCase, "opened_at"))).value_or(0);
  if (asset_ref.is_null()) return case_billable(false, std::nullopt, opened);
  std::optional<RecordId> asset_id = RecordId::parse(text_of(asset_ref));
  if (!asset_id) return case_billable(false, std::nullopt, opened);
  Result<std::optional<RecordState>> asset = impl.store.load(EntityId::kAsset, *asset_id);
  if (!asset) return asset.status();
  if (!*asset || (*asset)->deleted) return case_billable(false, std::nullopt, opened);
  return case_billable(true, int_of((*asset)->get(fid(EntityId::kAsset, "warranty_end_at"))), opened);
}

// GET /api/v1/service-cases/{id}: the record with its derived billable flag.
ApiResult get_case(ApiRequest& r) {
  Result<std::optional<RecordState>> sc = visible_record(*r.impl, r.caller, kCase, r.params["id"]);
  if (!sc) return api_error_from(sc.status());
  if (!*sc) return no_such("service case");
  Result<bool> b = billable(*r.impl, **sc);
  if (!b) return api_error_from(b.status());
  return ApiReply{http::status::ok, json::object{{"record", record_json(**sc)}, {"billable", *b}}, {}};
}

// POST /api/v1/service-cases/{id}/dispatch {"to"}: a manager (to a rep of their team or themselves) or head
// office (to anyone who may see the case) assigns the case; an open case becomes assigned, and a case
// without a due time gets one from its priority's SLA, counted from when it was opened. due_at is
// server-owned: the write is applied with head office's rights once the caller's own were checked here.
ApiResult dispatch_case(ApiRequest& r) {
  const json::object& b = r.body->as_object();
  std::string to;
  if (std::optional<ApiError> bad = only_fields(b, {"to"})) return *bad;
  if (std::optional<ApiError> bad = string_field(b, "to", &to, true)) return *bad;
  Result<std::optional<RecordState>> sc = visible_record(*r.impl, r.caller, kCase, r.params["id"]);
  if (!sc) return api_error_from(sc.status());
  if (!*sc) return no_such("service case");
  const RecordState& c = **sc;
  const std::string status = text_of(c.get(fid(kCase, "status")));
  if (status == "resolved" || status == "closed")
    return api_error(http::status::conflict, "invalid_transition", "the case is " + status, "status");
  const Principal& me = r.caller.principal;
  if (!r.caller.head_office() && to != me.user &&
      std::find(me.team.begin(), me.team.end(), to) == me.team.end())
    return api_error(http::status::forbidden, "permission_denied", "a manager dispatches within their team",
                     "to");
  Directory& dir = *r.impl->options.directory;
  Result<User> target = dir.user(to);
  if (!target || target->disabled || target->partner || target->role == schema::Role::kHeadOffice)
    return api_error(http::status::unprocessable_entity, "value_invalid",
                     "to must be an active rep or manager", "to");
  // The rep must see the case on their device, or it is assigned to nobody in practice.
  Result<Principal> tp = dir.principal(to);
  if (!tp) return api_error_from(tp.status());
  CheckedStoreReader reader(r.impl->store);
  const ScopeKey scope = resolve_scope(c, reader);
  if (!reader.status()) return api_error_from(reader.status());
  if (!can_see(*tp, scope))
    return api_error(http::status::unprocessable_entity, "value_invalid",
                     to + " does not cover the case's account (territory)", "to");

  std::vector<Change> changes = {
      make(ChangeOp::kSet, kCase, c.id, fid(kCase, "assignee_id"), Value::text(to))};
  std::optional<int64_t> due = int_of(c.get(fid(kCase, "due_at")));
  if (!due) {
    Result<std::map<std::string, int64_t>> sla = read_sla(*r.impl);
    if (!sla) return api_error_from(sla.status());
    const std::string priority = text_of(c.get(fid(kCase, "priority")));
    const int64_t minutes = sla->count(priority) ? sla->at(priority) : kDefaultSlaMinutes.at("normal");
    due = int_of(c.get(fid(kCase, "opened_at"))).value_or(wall_ms()) + minutes * 60'000;
    changes.push_back(make(ChangeOp::kSet, kCase, c.id, fid(kCase, "due_at"), Value::integer(*due)));
  }
  if (status == "open")
    changes.push_back(make(ChangeOp::kSet, kCase, c.id, fid(kCase, "status"), Value::text("assigned")));
  Principal stamp = me;
  stamp.role = schema::Role::kHeadOffice;
  json::object out{{"id", c.id.to_string()},
                   {"assignee_id", to},
                   {"status", status == "open" ? std::string("assigned") : status},
                   {"due_at", *due}};
  return write_answer(write(r, stamp, std::move(changes)), std::move(out));
}

// POST /api/v1/service-cases/{id}/escalate {}: head office raises the escalation level by one.
ApiResult escalate_case(ApiRequest& r) {
  if (std::optional<ApiError> bad = only_fields(r.body->as_object(), {})) return *bad;
  Result<std::optional<RecordState>> sc = visible_record(*r.impl, r.caller, kCase, r.params["id"]);
  if (!sc) return api_error_from(sc.status());
  if (!*sc) return no_such("service case");
  const RecordState& c = **sc;
  const std::string status = text_of(c.get(fid(kCase, "status")));
  if (status == "resolved" || status == "closed")
    return api_error(http::status::conflict, "invalid_transition", "the case is " + status, "status");
  const int64_t level = int_of(c.get(fid(kCase, "escalation_level"))).value_or(0) + 1;
  std::vector<Change> changes = {
      make(ChangeOp::kSet, kCase, c.id, fid(kCase, "escalation_level"), Value::integer(level))};
  json::object out{{"id", c.id.to_string()}, {"escalation_level", level}};
  return write_answer(write(r, r.caller.principal, std::move(changes)), std::move(out));
}

}  // namespace

void add_service_routes(NetServer::Impl& impl, RouteTable& routes) {
  const std::string base = "/api/v1";
  add_api_route(impl, routes, http::verb::post, base + "/leads/{id}/convert", kStaff, convert_lead);
  add_api_route(impl, routes, http::verb::get, base + "/service-cases/{id}", kStaff, get_case);
  add_api_route(impl, routes, http::verb::post, base + "/service-cases/{id}/escalate", kHeadOffice,
                escalate_case);
}

void add_case_sla_routes(NetServer::Impl& impl, RouteTable& routes) {
  const std::string base = "/api/v1";
  add_api_route(impl, routes, http::verb::post, base + "/service-cases/{id}/dispatch", kManagers,
                dispatch_case);
  add_api_route(impl, routes, http::verb::get, base + "/settings/case-sla", kManagers, get_sla);
  add_api_route(impl, routes, http::verb::put, base + "/settings/case-sla", kHeadOffice, put_sla);
}

}  // namespace fieldsync::server

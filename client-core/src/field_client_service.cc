// FieldClient's schema-3 operations: leads (with conversion in one transaction), service cases, installed
// assets, tasks. Every write is one SyncEngine::write; the domain rules (sync/rules.h check_domain_rules)
// are checked again by the sync core on the device and by the server.
#include <sqlite3.h>

#include <algorithm>

#include "field_client_internal.h"
#include "fieldsync/client/field_client.h"
#include "fieldsync/client/sqlite_replica.h"
#include "fieldsync/sync/rules.h"

namespace fieldsync::client {

using detail::Bind;
using detail::invalid;
using schema::EntityId;

namespace {

bool is_enum_value(EntityId e, std::string_view field, std::string_view v) {
  const schema::FieldDef* f = schema::entity_ref(e).field(field);
  return std::find(f->enum_values.begin(), f->enum_values.end(), v) != f->enum_values.end();
}

Status check_enum(EntityId e, std::string_view field, const std::string& v) {
  if (is_enum_value(e, field, v)) return Status::ok();
  std::string list;
  for (std::string_view x : schema::entity_ref(e).field(field)->enum_values) {
    if (!list.empty()) list += ", ";
    list += x;
  }
  return invalid(ErrorCode::kValueInvalid,
                 std::string(field) + " must be one of " + list + ", got '" + v + "'");
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

const std::string kLeadCols =
    "id, person_name, company_name, email, phone, source, owner_id, territory_id, status, disqualify_reason, "
    "converted_account_id, converted_contact_id, converted_opportunity_id, converted_at, created_at, notes";
Lead lead_row(sqlite3_stmt* s) {
  using detail::opt_int;
  using detail::text;
  Lead l;
  l.id = text(s, 0);
  l.person_name = text(s, 1);
  l.company_name = text(s, 2);
  l.email = text(s, 3);
  l.phone = text(s, 4);
  l.source = text(s, 5);
  l.owner_id = text(s, 6);
  l.territory_id = text(s, 7);
  l.status = text(s, 8);
  l.disqualify_reason = text(s, 9);
  l.converted_account_id = text(s, 10);
  l.converted_contact_id = text(s, 11);
  l.converted_opportunity_id = text(s, 12);
  l.converted_at_ms = opt_int(s, 13);
  l.created_at_ms = opt_int(s, 14).value_or(0);
  l.notes = text(s, 15);
  return l;
}

// A case with its asset's warranty end joined in, for the derived billable flag.
const std::string kCaseSelect =
    "SELECT c.id, c.account_id, c.contact_id, c.asset_id, c.subject, c.priority, c.status, c.assignee_id, "
    "c.due_at, c.escalation_level, c.resolution_notes, c.opened_at, c.resolved_at, c.opened_by, "
    "a.id IS NOT NULL, a.warranty_end_at FROM \"service_case\" c LEFT JOIN \"asset\" a ON a.id = c.asset_id "
    "AND a._deleted = 0 WHERE c._deleted = 0";
ServiceCase case_row(sqlite3_stmt* s) {
  using detail::opt_int;
  using detail::text;
  ServiceCase c;
  c.id = text(s, 0);
  c.account_id = text(s, 1);
  c.contact_id = text(s, 2);
  c.asset_id = text(s, 3);
  c.subject = text(s, 4);
  c.priority = text(s, 5);
  c.status = text(s, 6);
  c.assignee_id = text(s, 7);
  c.due_at_ms = opt_int(s, 8);
  c.escalation_level = opt_int(s, 9);
  c.resolution_notes = text(s, 10);
  c.opened_at_ms = opt_int(s, 11).value_or(0);
  c.resolved_at_ms = opt_int(s, 12);
  c.opened_by = text(s, 13);
  c.billable = case_billable(opt_int(s, 14).value_or(0) != 0, opt_int(s, 15), c.opened_at_ms);
  return c;
}

const std::string kAssetCols =
    "id, account_id, product_id, serial_number, installed_at, warranty_end_at, notes";
Asset asset_row(sqlite3_stmt* s) {
  using detail::opt_int;
  using detail::text;
  Asset a;
  a.id = text(s, 0);
  a.account_id = text(s, 1);
  a.product_id = text(s, 2);
  a.serial_number = text(s, 3);
  a.installed_at_ms = opt_int(s, 4);
  a.warranty_end_at_ms = opt_int(s, 5);
  a.notes = text(s, 6);
  return a;
}

const std::string kTaskCols =
    "id, owner_id, title, due_at, remind_at, status, account_id, opportunity_id, lead_id, service_case_id, "
    "notes, completed_at";
Task task_row(sqlite3_stmt* s) {
  using detail::opt_int;
  using detail::text;
  Task t;
  t.id = text(s, 0);
  t.owner_id = text(s, 1);
  t.title = text(s, 2);
  t.due_at_ms = opt_int(s, 3);
  t.remind_at_ms = opt_int(s, 4);
  t.status = text(s, 5);
  t.account_id = text(s, 6);
  t.opportunity_id = text(s, 7);
  t.lead_id = text(s, 8);
  t.service_case_id = text(s, 9);
  t.notes = text(s, 10);
  t.completed_at_ms = opt_int(s, 11);
  return t;
}

}  // namespace

// ---- status moves

Status FieldClient::move_status(EntityId entity, const std::string& id_text, const std::string& to,
                                const std::function<Status(Batch&, const RecordId&)>& extra) {
  const schema::EntityDef& e = schema::entity_ref(entity);
  const schema::FieldDef& status = *e.field(e.status_field);
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id(e.name, id_text);
    if (!id) return id.status();
    std::optional<std::string> from;
    Status s = detail::query(*queries_, *store_,
                             "SELECT " + std::string(status.name) + " FROM " + detail::table(entity) +
                                 " WHERE id = ?1 AND _deleted = 0",
                             {Bind{id_text}}, [&](sqlite3_stmt* st) { from = detail::text(st, 0); });
    if (!s) return s;
    if (!from) return detail::not_found(e.name, id_text);
    if (*from == to) return invalid(ErrorCode::kInvalidTransition, std::string(e.name) + " is already " + to);
    if (Status v = detail::check_transition(entity, *from, to, options_.role); !v) return v;
    if (extra)
      if (Status v = extra(b, *id); !v) return v;
    // The status last: a status that locks the record (a converted lead) must follow the changes it locks.
    b.set(entity, *id, status.name, Value::text(to));
    return Status::ok();
  });
}

// ---- leads

Result<std::string> FieldClient::create_lead(const NewLead& l) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    if (Status v = check_enum(EntityId::kLead, "source", l.source); !v) return v;
    const EntityId e = EntityId::kLead;
    id = b.create(e, b.next_id());
    b.set(e, id, "person_name", Value::text(l.person_name));
    b.set_text(e, id, "company_name", l.company_name);
    b.set_text(e, id, "email", l.email);
    b.set_text(e, id, "phone", l.phone);
    b.set(e, id, "source", Value::text(l.source));
    b.set(e, id, "owner_id", Value::text(options_.user));
    b.set(e, id, "territory_id", Value::text(l.territory_id));
    b.set(e, id, "status", Value::text("new"));
    b.set(e, id, "created_at", Value::integer(now_ms()));
    if (l.notes && !l.notes->empty()) b.append(e, id, "notes", *l.notes);
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Status FieldClient::mark_lead_contacted(const std::string& id) {
  return move_status(EntityId::kLead, id, "contacted");
}

Status FieldClient::qualify_lead(const std::string& id) {
  return move_status(EntityId::kLead, id, "qualified");
}

Status FieldClient::disqualify_lead(const std::string& id, const std::string& reason) {
  if (blank(reason)) return invalid(ErrorCode::kMissingField, "disqualifying a lead needs a reason");
  return move_status(EntityId::kLead, id, "disqualified", [&](Batch& b, const RecordId& rid) {
    b.set(EntityId::kLead, rid, "disqualify_reason", Value::text(reason));
    return Status::ok();
  });
}

Status FieldClient::add_lead_note(const std::string& id_text, const std::string& text) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("lead", id_text);
    if (!id) return id.status();
    auto l = detail::select_one(*queries_, *store_, EntityId::kLead, kLeadCols, id_text, lead_row, "lead");
    if (!l) return l.status();
    if (l->status == "converted")
      return invalid(ErrorCode::kOrderLocked, "lead " + id_text + " is converted and can no longer change");
    b.append(EntityId::kLead, *id, "notes", text);
    return Status::ok();
  });
}

Result<ConvertedLead> FieldClient::convert_lead(const std::string& id_text, const LeadConversion& c) {
  ConvertedLead out;
  out.lead_id = id_text;
  Status st = move_status(EntityId::kLead, id_text, "converted", [&](Batch& b, const RecordId& lead_id) {
    auto l = detail::select_one(*queries_, *store_, EntityId::kLead, kLeadCols, id_text, lead_row, "lead");
    if (!l) return l.status();
    RecordId account;
    if (c.existing_account_id) {
      auto a = detail::parse_id("account", *c.existing_account_id);
      if (!a) return a.status();
      if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, *c.existing_account_id); !v)
        return v;
      account = *a;
    } else {
      const std::string name =
          c.account_name.value_or(l->company_name.empty() ? l->person_name : l->company_name);
      account = b.create(EntityId::kAccount, b.next_id());
      b.set(EntityId::kAccount, account, "name", Value::text(name));
      b.set(EntityId::kAccount, account, "territory_id", Value::text(l->territory_id));
      b.set(EntityId::kAccount, account, "created_by", Value::text(options_.user));
    }
    const RecordId contact = b.create(EntityId::kContact, b.next_id());
    b.set(EntityId::kContact, contact, "account_id", Value::text(account.to_string()));
    b.set(EntityId::kContact, contact, "name", Value::text(l->person_name));
    b.set_text(EntityId::kContact, contact, "email", l->email);
    b.set_text(EntityId::kContact, contact, "phone", l->phone);
    const RecordId opp = b.create(EntityId::kOpportunity, b.next_id());
    const std::string opp_name =
        c.opportunity_name.empty() ? (l->company_name.empty() ? l->person_name : l->company_name) + " (lead)"
                                   : c.opportunity_name;
    b.set(EntityId::kOpportunity, opp, "account_id", Value::text(account.to_string()));
    b.set(EntityId::kOpportunity, opp, "owner_id", Value::text(options_.user));
    b.set(EntityId::kOpportunity, opp, "name", Value::text(opp_name));
    b.set(EntityId::kOpportunity, opp, "stage", Value::text("prospect"));
    b.set(EntityId::kOpportunity, opp, "amount_cents", Value::integer(c.amount_cents));
    b.set(EntityId::kOpportunity, opp, "currency", Value::text(c.currency));
    if (c.expected_close_ms)
      b.set(EntityId::kOpportunity, opp, "expected_close", Value::integer(*c.expected_close_ms));
    b.set(EntityId::kLead, lead_id, "converted_account_id", Value::text(account.to_string()));
    b.set(EntityId::kLead, lead_id, "converted_contact_id", Value::text(contact.to_string()));
    b.set(EntityId::kLead, lead_id, "converted_opportunity_id", Value::text(opp.to_string()));
    b.set(EntityId::kLead, lead_id, "converted_at", Value::integer(now_ms()));
    out.account_id = account.to_string();
    out.contact_id = contact.to_string();
    out.opportunity_id = opp.to_string();
    return Status::ok();
  });
  if (!st) return st;
  return out;
}

Result<Lead> FieldClient::lead(const std::string& id) {
  if (auto p = detail::parse_id("lead", id); !p) return p.status();
  return detail::select_one(*queries_, *store_, EntityId::kLead, kLeadCols, id, lead_row, "lead");
}

Result<std::vector<Lead>> FieldClient::my_leads() {
  return detail::select(*queries_, *store_,
                        "SELECT " + kLeadCols + " FROM " + detail::table(EntityId::kLead) +
                            " WHERE _deleted = 0 AND owner_id = ?1 AND status IN ('new', 'contacted', "
                            "'qualified') ORDER BY created_at, id",
                        {Bind{options_.user}}, lead_row);
}

// ---- service cases

Result<std::string> FieldClient::open_case(const NewServiceCase& c) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    auto account = detail::parse_id("account", c.account_id);
    if (!account) return account.status();
    if (Status v = check_enum(EntityId::kServiceCase, "priority", c.priority); !v) return v;
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, c.account_id); !v) return v;
    if (c.contact_id) {
      if (auto p = detail::parse_id("contact", *c.contact_id); !p) return p.status();
      if (Status v = detail::require_live(*queries_, *store_, EntityId::kContact, *c.contact_id); !v)
        return v;
    }
    if (c.asset_id) {
      if (auto p = detail::parse_id("asset", *c.asset_id); !p) return p.status();
      if (Status v = detail::require_live(*queries_, *store_, EntityId::kAsset, *c.asset_id); !v) return v;
    }
    const EntityId e = EntityId::kServiceCase;
    id = b.create(e, b.next_id());
    b.set(e, id, "account_id", Value::text(c.account_id));
    if (c.contact_id) b.set(e, id, "contact_id", Value::text(*c.contact_id));
    if (c.asset_id) b.set(e, id, "asset_id", Value::text(*c.asset_id));
    b.set(e, id, "subject", Value::text(c.subject));
    b.set(e, id, "priority", Value::text(c.priority));
    if (c.take) b.set(e, id, "assignee_id", Value::text(options_.user));
    b.set(e, id, "status", Value::text(c.take ? "assigned" : "open"));
    b.set(e, id, "opened_at", Value::integer(now_ms()));
    b.set(e, id, "opened_by", Value::text(options_.user));
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

namespace {

Result<ServiceCase> load_case(detail::Queries& q, SqliteReplicaStore& store, const std::string& id) {
  auto rows = detail::select(q, store, kCaseSelect + " AND c.id = ?1", {Bind{id}}, case_row);
  if (!rows) return rows.status();
  if (rows->empty()) return detail::not_found("service case", id);
  return std::move(rows->front());
}

}  // namespace

Status FieldClient::take_case(const std::string& id_text) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("service case", id_text);
    if (!id) return id.status();
    auto c = load_case(*queries_, *store_, id_text);
    if (!c) return c.status();
    if (!c->assignee_id.empty())
      return invalid(ErrorCode::kPermissionDenied,
                     "service case " + id_text + " is already assigned to " + c->assignee_id);
    if (c->status != "open")
      return invalid(ErrorCode::kInvalidTransition,
                     "service case " + id_text + " is " + c->status + ", not open");
    b.set(EntityId::kServiceCase, *id, "assignee_id", Value::text(options_.user));
    b.set(EntityId::kServiceCase, *id, "status", Value::text("assigned"));
    return Status::ok();
  });
}

Status FieldClient::dispatch_case(const std::string& id_text, const std::string& assignee) {
  if (options_.role < schema::Role::kManager)
    return invalid(ErrorCode::kPermissionDenied, "a rep may not dispatch a case; take it instead");
  if (assignee.empty()) return invalid(ErrorCode::kInvalidArgument, "dispatch names the rep");
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("service case", id_text);
    if (!id) return id.status();
    auto c = load_case(*queries_, *store_, id_text);
    if (!c) return c.status();
    if (c->status == "resolved" || c->status == "closed")
      return invalid(ErrorCode::kInvalidTransition, "service case " + id_text + " is " + c->status);
    b.set(EntityId::kServiceCase, *id, "assignee_id", Value::text(assignee));
    if (c->status == "open") b.set(EntityId::kServiceCase, *id, "status", Value::text("assigned"));
    return Status::ok();
  });
}

Status FieldClient::start_case(const std::string& id) {
  return move_status(EntityId::kServiceCase, id, "in_progress");
}

Status FieldClient::add_case_note(const std::string& id_text, const std::string& text) {
  return transact([&](Batch& b) -> Status {
    auto id = detail::parse_id("service case", id_text);
    if (!id) return id.status();
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kServiceCase, id_text); !v) return v;
    b.append(EntityId::kServiceCase, *id, "resolution_notes", text);
    return Status::ok();
  });
}

Status FieldClient::resolve_case(const std::string& id, const std::string& resolution_note) {
  if (blank(resolution_note))
    return invalid(ErrorCode::kMissingField, "resolving a case needs a resolution note");
  return move_status(EntityId::kServiceCase, id, "resolved", [&](Batch& b, const RecordId& rid) {
    b.append(EntityId::kServiceCase, rid, "resolution_notes", resolution_note);
    b.set(EntityId::kServiceCase, rid, "resolved_at", Value::integer(now_ms()));
    return Status::ok();
  });
}

Status FieldClient::close_case(const std::string& id) {
  return move_status(EntityId::kServiceCase, id, "closed");
}

Status FieldClient::reopen_case(const std::string& id) {
  return move_status(EntityId::kServiceCase, id, "in_progress", [&](Batch& b, const RecordId& rid) {
    b.set(EntityId::kServiceCase, rid, "resolved_at", Value::null());
    return Status::ok();
  });
}

Result<ServiceCase> FieldClient::service_case(const std::string& id) {
  if (auto p = detail::parse_id("service case", id); !p) return p.status();
  return load_case(*queries_, *store_, id);
}

Result<std::vector<ServiceCase>> FieldClient::open_cases_of_account(const std::string& account_id) {
  // The account screen of an app projected to a schema before cases: its replica has no case table.
  if (store_->schema_version() < schema::entity_ref(EntityId::kServiceCase).since)
    return std::vector<ServiceCase>{};
  return detail::select(*queries_, *store_,
                        kCaseSelect +
                            " AND c.account_id = ?1 AND c.status NOT IN ('resolved', 'closed') ORDER BY "
                            "c.opened_at, c.id",
                        {Bind{account_id}}, case_row);
}

Result<std::vector<ServiceCase>> FieldClient::my_cases() {
  return detail::select(*queries_, *store_,
                        kCaseSelect +
                            " AND c.assignee_id = ?1 AND c.status NOT IN ('resolved', 'closed') ORDER BY "
                            "c.due_at IS NULL, c.due_at, c.opened_at, c.id",
                        {Bind{options_.user}}, case_row);
}

// ---- installed assets

Result<std::string> FieldClient::register_asset(const NewAsset& a) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    auto account = detail::parse_id("account", a.account_id);
    if (!account) return account.status();
    if (Status v = detail::require_live(*queries_, *store_, EntityId::kAccount, a.account_id); !v) return v;
    if (a.product_id) {
      if (auto p = detail::parse_id("product", *a.product_id); !p) return p.status();
      if (Status v = detail::require_live(*queries_, *store_, EntityId::kProduct, *a.product_id); !v)
        return v;
    }
    const EntityId e = EntityId::kAsset;
    id = b.create(e, b.next_id());
    b.set(e, id, "account_id", Value::text(a.account_id));
    if (a.product_id) b.set(e, id, "product_id", Value::text(*a.product_id));
    b.set(e, id, "serial_number", Value::text(a.serial_number));
    if (a.installed_at_ms) b.set(e, id, "installed_at", Value::integer(*a.installed_at_ms));
    if (a.warranty_end_at_ms) b.set(e, id, "warranty_end_at", Value::integer(*a.warranty_end_at_ms));
    if (a.notes && !a.notes->empty()) b.append(e, id, "notes", *a.notes);
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Result<Asset> FieldClient::asset(const std::string& id) {
  if (auto p = detail::parse_id("asset", id); !p) return p.status();
  return detail::select_one(*queries_, *store_, EntityId::kAsset, kAssetCols, id, asset_row, "asset");
}

Result<std::vector<Asset>> FieldClient::assets_of_account(const std::string& account_id) {
  return detail::select(*queries_, *store_,
                        "SELECT " + kAssetCols + " FROM " + detail::table(EntityId::kAsset) +
                            " WHERE _deleted = 0 AND account_id = ?1 ORDER BY serial_number, id",
                        {Bind{account_id}}, asset_row);
}

// ---- tasks

Result<std::string> FieldClient::create_task(const NewTask& t) {
  RecordId id;
  Status s = transact([&](Batch& b) -> Status {
    const std::pair<const std::optional<std::string>*, EntityId> links[] = {
        {&t.account_id, EntityId::kAccount},
        {&t.opportunity_id, EntityId::kOpportunity},
        {&t.lead_id, EntityId::kLead},
        {&t.service_case_id, EntityId::kServiceCase}};
    for (const auto& [link, entity] : links) {
      if (!*link) continue;
      if (auto p = detail::parse_id(schema::entity_ref(entity).name, **link); !p) return p.status();
      if (Status v = detail::require_live(*queries_, *store_, entity, **link); !v) return v;
    }
    const EntityId e = EntityId::kTask;
    id = b.create(e, b.next_id());
    b.set(e, id, "owner_id", Value::text(options_.user));
    b.set(e, id, "title", Value::text(t.title));
    if (t.due_at_ms) b.set(e, id, "due_at", Value::integer(*t.due_at_ms));
    if (t.remind_at_ms) b.set(e, id, "remind_at", Value::integer(*t.remind_at_ms));
    b.set(e, id, "status", Value::text("open"));
    if (t.account_id) b.set(e, id, "account_id", Value::text(*t.account_id));
    if (t.opportunity_id) b.set(e, id, "opportunity_id", Value::text(*t.opportunity_id));
    if (t.lead_id) b.set(e, id, "lead_id", Value::text(*t.lead_id));
    if (t.service_case_id) b.set(e, id, "service_case_id", Value::text(*t.service_case_id));
    if (t.notes && !t.notes->empty()) b.append(e, id, "notes", *t.notes);
    return Status::ok();
  });
  if (!s) return s;
  return id.to_string();
}

Status FieldClient::complete_task(const std::string& id) {
  return move_status(EntityId::kTask, id, "done", [&](Batch& b, const RecordId& rid) {
    b.set(EntityId::kTask, rid, "completed_at", Value::integer(now_ms()));
    return Status::ok();
  });
}

Status FieldClient::cancel_task(const std::string& id) {
  return move_status(EntityId::kTask, id, "cancelled");
}

Status FieldClient::reopen_task(const std::string& id) {
  return move_status(EntityId::kTask, id, "open", [&](Batch& b, const RecordId& rid) {
    b.set(EntityId::kTask, rid, "completed_at", Value::null());
    return Status::ok();
  });
}

Result<Task> FieldClient::task(const std::string& id) {
  if (auto p = detail::parse_id("task", id); !p) return p.status();
  return detail::select_one(*queries_, *store_, EntityId::kTask, kTaskCols, id, task_row, "task");
}

Result<std::vector<Task>> FieldClient::open_tasks() {
  return detail::select(
      *queries_, *store_,
      "SELECT " + kTaskCols + " FROM " + detail::table(EntityId::kTask) +
          " WHERE _deleted = 0 AND owner_id = ?1 AND status = 'open' ORDER BY due_at IS NULL, "
          "due_at, id",
      {Bind{options_.user}}, task_row);
}

Result<std::vector<Task>> FieldClient::overdue_tasks() {
  return detail::select(
      *queries_, *store_,
      "SELECT " + kTaskCols + " FROM " + detail::table(EntityId::kTask) +
          " WHERE _deleted = 0 AND owner_id = ?1 AND status = 'open' AND due_at < ?2 ORDER BY "
          "due_at, id",
      {Bind{options_.user}, Bind{now_ms()}}, task_row);
}

}  // namespace fieldsync::client

#include "json_io.h"

#include <cmath>
#include <limits>

#include "fieldsync/sync/export.h"

namespace fieldsync::glue {
namespace {

template <typename T>
json::value opt(const std::optional<T>& v) {
  if (!v) return nullptr;
  return json::value(*v);
}

// Ids and names the app compares: empty text stays "" (the read models use "" for "not set").
json::value entity_name(schema::EntityId id) {
  const schema::EntityDef* e = schema::entity(id);
  return e ? json::value(std::string(e->name)) : json::value(static_cast<int64_t>(id));
}

json::value side_json(const ConflictSide& s) {
  return json::object{
      {"value", value_to_json(s.value)}, {"user", s.user}, {"hlc", s.version.hlc}, {"node", s.version.node}};
}

}  // namespace

json::value to_json(const client::Account& a) {
  return json::object{{"id", a.id},
                      {"name", a.name},
                      {"territory_id", a.territory_id},
                      {"address", a.address},
                      {"city", a.city},
                      {"phone", a.phone},
                      {"email", a.email},
                      {"segment", a.segment},
                      {"credit_limit_cents", opt(a.credit_limit_cents)},
                      {"notes", a.notes},
                      {"created_by", a.created_by}};
}

json::value to_json(const client::Contact& c) {
  return json::object{{"id", c.id},
                      {"account_id", c.account_id},
                      {"name", c.name},
                      {"title", c.title},
                      {"email", c.email},
                      {"phone", c.phone},
                      {"is_primary", c.is_primary}};
}

json::value to_json(const client::AccountWithContacts& a) {
  return json::object{{"account", to_json(a.account)},
                      {"contacts", to_json_array(a.contacts)},
                      {"open_cases", to_json_array(a.open_cases)}};
}

json::value to_json(const client::Visit& v) {
  return json::object{{"id", v.id},
                      {"account_id", v.account_id},
                      {"rep_id", v.rep_id},
                      {"calendar_event_id", v.calendar_event_id},
                      {"check_in_at_ms", v.check_in_at_ms},
                      {"check_out_at_ms", opt(v.check_out_at_ms)},
                      {"latitude", opt(v.latitude)},
                      {"longitude", opt(v.longitude)},
                      {"notes", v.notes},
                      {"outcome", v.outcome}};
}

json::value to_json(const client::OrderLine& l) {
  return json::object{{"id", l.id},
                      {"product_id", l.product_id},
                      {"quantity", l.quantity},
                      {"unit_price_cents", l.unit_price_cents},
                      {"discount_bp", l.discount_bp},
                      {"note", l.note},
                      {"gross_cents", l.gross_cents},
                      {"discount_cents", l.discount_cents},
                      {"net_cents", l.net_cents}};
}

json::value to_json(const client::Order& o) {
  return json::object{{"id", o.id},
                      {"account_id", o.account_id},
                      {"rep_id", o.rep_id},
                      {"status", o.status},
                      {"currency", o.currency},
                      {"notes", o.notes},
                      {"submitted_at_ms", opt(o.submitted_at_ms)},
                      {"lines", to_json_array(o.lines)},
                      {"gross_cents", o.gross_cents},
                      {"discount_cents", o.discount_cents},
                      {"total_cents", o.total_cents}};
}

json::value to_json(const client::Event& e) {
  return json::object{
      {"id", e.id},         {"owner_id", e.owner_id},       {"account_id", e.account_id},
      {"title", e.title},   {"start_at_ms", e.start_at_ms}, {"end_at_ms", e.end_at_ms},
      {"status", e.status}, {"location", e.location},       {"opportunity_id", e.opportunity_id}};
}

json::value to_json(const client::Lead& l) {
  return json::object{{"id", l.id},
                      {"person_name", l.person_name},
                      {"company_name", l.company_name},
                      {"email", l.email},
                      {"phone", l.phone},
                      {"source", l.source},
                      {"owner_id", l.owner_id},
                      {"territory_id", l.territory_id},
                      {"status", l.status},
                      {"disqualify_reason", l.disqualify_reason},
                      {"converted_account_id", l.converted_account_id},
                      {"converted_contact_id", l.converted_contact_id},
                      {"converted_opportunity_id", l.converted_opportunity_id},
                      {"converted_at_ms", opt(l.converted_at_ms)},
                      {"created_at_ms", l.created_at_ms},
                      {"notes", l.notes}};
}

json::value to_json(const client::ConvertedLead& c) {
  return json::object{{"lead_id", c.lead_id},
                      {"account_id", c.account_id},
                      {"contact_id", c.contact_id},
                      {"opportunity_id", c.opportunity_id}};
}

json::value to_json(const client::ServiceCase& c) {
  return json::object{{"id", c.id},
                      {"account_id", c.account_id},
                      {"contact_id", c.contact_id},
                      {"asset_id", c.asset_id},
                      {"subject", c.subject},
                      {"priority", c.priority},
                      {"status", c.status},
                      {"assignee_id", c.assignee_id},
                      {"due_at_ms", opt(c.due_at_ms)},
                      {"escalation_level", opt(c.escalation_level)},
                      {"resolution_notes", c.resolution_notes},
                      {"opened_at_ms", c.opened_at_ms},
                      {"resolved_at_ms", opt(c.resolved_at_ms)},
                      {"opened_by", c.opened_by},
                      {"billable", c.billable}};
}

json::value to_json(const client::Asset& a) {
  return json::object{{"id", a.id},
                      {"account_id", a.account_id},
                      {"product_id", a.product_id},
                      {"serial_number", a.serial_number},
                      {"installed_at_ms", opt(a.installed_at_ms)},
                      {"warranty_end_at_ms", opt(a.warranty_end_at_ms)},
                      {"notes", a.notes}};
}

json::value to_json(const client::Task& t) {
  return json::object{{"id", t.id},
                      {"owner_id", t.owner_id},
                      {"title", t.title},
                      {"due_at_ms", opt(t.due_at_ms)},
                      {"remind_at_ms", opt(t.remind_at_ms)},
                      {"status", t.status},
                      {"account_id", t.account_id},
                      {"opportunity_id", t.opportunity_id},
                      {"lead_id", t.lead_id},
                      {"service_case_id", t.service_case_id},
                      {"notes", t.notes},
                      {"completed_at_ms", opt(t.completed_at_ms)}};
}

json::value to_json(const client::EventWriteResult& r) {
  return json::object{{"id", r.id}, {"overlaps", to_json_array(r.overlaps)}};
}

json::value to_json(const client::Opportunity& o) {
  return json::object{{"id", o.id},
                      {"account_id", o.account_id},
                      {"owner_id", o.owner_id},
                      {"name", o.name},
                      {"stage", o.stage},
                      {"amount_cents", o.amount_cents},
                      {"currency", o.currency},
                      {"expected_close_ms", opt(o.expected_close_ms)}};
}

json::value to_json(const client::PipelineStage& s) {
  return json::object{
      {"stage", s.stage}, {"currency", s.currency}, {"count", s.count}, {"amount_cents", s.amount_cents}};
}

json::value to_json(const ConflictRecord& c) {
  const schema::EntityDef* e = schema::entity(c.entity);
  const schema::FieldDef* f = nullptr;
  if (e) {
    for (const schema::FieldDef& fd : e->fields)
      if (fd.id == c.field) f = &fd;
  }
  return json::object{{"kind", std::string(to_string(c.kind))},
                      {"entity", entity_name(c.entity)},
                      {"record", c.record.to_string()},
                      {"field", f ? json::value(std::string(f->name)) : json::value(nullptr)},
                      {"rule", c.rule},
                      {"server_seq", c.server_seq},
                      {"winner", side_json(c.winner)},
                      {"loser", side_json(c.loser)},
                      {"other_record", c.other_record.is_nil() ? json::value(nullptr)
                                                               : json::value(c.other_record.to_string())}};
}

json::value to_json(const Rejection& r) {
  json::array records;
  std::set<RecordKey> seen;
  for (const Change& ch : r.changes) {
    RecordKey k{ch.entity, ch.record};
    if (seen.insert(k).second) records.push_back(to_json(k));
  }
  return json::object{{"node_seq", r.node_seq},
                      {"reason", std::string(to_string(r.reason))},
                      {"code", static_cast<int64_t>(r.reason)},
                      {"message", r.message},
                      {"records", std::move(records)}};
}

json::value to_json(const client::InboxConflict& c) {
  return json::object{{"inbox_id", c.inbox_id}, {"seen", c.seen}, {"conflict", to_json(c.conflict)}};
}

json::value to_json(const client::InboxRejection& r) {
  return json::object{{"inbox_id", r.inbox_id}, {"seen", r.seen}, {"rejection", to_json(r.rejection)}};
}

json::value to_json(const RecordKey& k) {
  return json::object{{"entity", entity_name(k.entity)}, {"id", k.id.to_string()}};
}

// ---- Input

Input::Input(const char* text, std::string_view what) : what_(what) {
  if (text == nullptr) {
    fail(what_ + " is NULL");
    return;
  }
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    fail(what_ + " is not valid JSON: " + ec.message());
    return;
  }
  if (!v.is_object()) {
    fail(what_ + " must be a JSON object");
    return;
  }
  object_ = std::move(v.as_object());
}

Input::Input(const json::object& object, std::string_view what) : object_(object), what_(what) {}

void Input::fail(std::string message) {
  if (error_.empty()) error_ = std::move(message);
}

const json::value* Input::find(std::string_view key, bool required) {
  known_.emplace(key);
  if (!ok()) return nullptr;
  const json::value* v = object_.if_contains(key);
  if (v && v->is_null()) v = nullptr;  // null means "not given", as for optional keys left out
  if (!v && required) fail(what_ + ": \"" + std::string(key) + "\" is required");
  return v;
}

std::string Input::text(std::string_view key) {
  return opt_text_impl(key, true).value_or(std::string());
}

std::optional<std::string> Input::opt_text(std::string_view key) {
  return opt_text_impl(key, false);
}

std::optional<std::string> Input::opt_text_impl(std::string_view key, bool required) {
  const json::value* v = find(key, required);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    fail(what_ + ": \"" + std::string(key) + "\" must be a string");
    return std::nullopt;
  }
  return std::string(v->as_string());
}

int64_t Input::integer(std::string_view key) {
  return opt_integer_impl(key, true).value_or(0);
}

std::optional<int64_t> Input::opt_integer(std::string_view key) {
  return opt_integer_impl(key, false);
}

std::optional<int64_t> Input::opt_integer_impl(std::string_view key, bool required) {
  const json::value* v = find(key, required);
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return static_cast<int64_t>(v->as_uint64());
  fail(what_ + ": \"" + std::string(key) + "\" must be an integer (64-bit signed)");
  return std::nullopt;
}

std::optional<double> Input::opt_real(std::string_view key) {
  const json::value* v = find(key, false);
  if (!v) return std::nullopt;
  if (v->is_double() && std::isfinite(v->as_double())) return v->as_double();
  if (v->is_int64()) return static_cast<double>(v->as_int64());
  fail(what_ + ": \"" + std::string(key) + "\" must be a number");
  return std::nullopt;
}

std::optional<bool> Input::opt_boolean(std::string_view key) {
  const json::value* v = find(key, false);
  if (!v) return std::nullopt;
  if (v->is_bool()) return v->as_bool();
  fail(what_ + ": \"" + std::string(key) + "\" must be true or false");
  return std::nullopt;
}

bool Input::finish() {
  if (!ok()) return false;
  for (const auto& kv : object_) {
    if (!known_.contains(std::string_view(kv.key()))) {
      fail(what_ + ": unknown key \"" + std::string(kv.key()) + "\"");
      return false;
    }
  }
  return true;
}

std::optional<json::array> parse_array(const char* text, std::string_view what, std::string& error) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    error = std::string(what) + " is not valid JSON: " + ec.message();
    return std::nullopt;
  }
  if (!v.is_array()) {
    error = std::string(what) + " must be a JSON array";
    return std::nullopt;
  }
  for (const json::value& item : v.as_array()) {
    if (!item.is_object()) {
      error = std::string(what) + ": every element must be a JSON object";
      return std::nullopt;
    }
  }
  return std::move(v.as_array());
}

}  // namespace fieldsync::glue

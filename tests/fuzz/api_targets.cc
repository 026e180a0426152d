// The head-office API's fuzz targets (targets.h: api_query, api_body): the pure parsers of server/src/api.h
// that the handlers run on a request's query string and JSON body before any store or directory work.
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "api.h"
#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/schema/ddl.h"
#include "fieldsync/sync/rules.h"
#include "targets.h"

namespace fieldsync::fuzz {
namespace {

namespace json = boost::json;
using server::ApiError;

// The callers a listing is narrowed for: each role's scope SQL.
Principal caller(uint8_t selector) {
  Principal p;
  p.user = "rep-7";
  switch (selector % 4) {
    case 0:
      p.role = schema::Role::kHeadOffice;
      break;
    case 1:
      p.role = schema::Role::kManager;
      p.territories = {"ch-zh", "ch-be"};
      p.team = {"rep-7", "rep-8"};
      break;
    case 2:
      p.territories = {"ch-zh"};
      break;
    default:
      p.user = "partner-1";  // a partner: a rep's role over its grants' territories
      p.territories = {"grant-1"};
      break;
  }
  return p;
}

const schema::EntityDef& entity_of(uint8_t selector) {
  const std::span<const schema::EntityDef> all = schema::entities();
  return all[selector % all.size()];
}

// An error always names its code and carries a 4xx status: the handler answers it as is.
void check_error(const ApiError& e) {
  const unsigned status = static_cast<unsigned>(e.status);
  if (e.code.empty() || status < 400 || status >= 500) std::abort();
}

template <typename T>
const T* ok_or_checked(const std::variant<T, ApiError>& v) {
  if (const ApiError* e = std::get_if<ApiError>(&v)) {
    check_error(*e);
    return nullptr;
  }
  return &std::get<T>(v);
}

// The central store's tables, in memory: every listing the parser accepts must prepare against them with
// exactly one parameter per value (no request text inside the SQL).
sqlite3* tables() {
  static sqlite3* db = [] {
    sqlite3* d = nullptr;
    if (sqlite3_open(":memory:", &d) != SQLITE_OK) std::abort();
    for (const std::string& sql : schema::all_ddl())
      if (sqlite3_exec(d, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) std::abort();
    return d;
  }();
  return db;
}

void check_list_sql(const server::ListQuery& q) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(tables(), q.sql.c_str(), static_cast<int>(q.sql.size() + 1), &stmt, nullptr) !=
      SQLITE_OK)
    std::abort();
  const int n = sqlite3_bind_parameter_count(stmt);
  sqlite3_finalize(stmt);
  if (n != static_cast<int>(q.params.size())) std::abort();
  if (q.limit < 1 || q.limit > server::limits::kApiMaxPage || (q.order != "asc" && q.order != "desc"))
    std::abort();
}

void check_filter(const server::reports::ReportFilter& f) {
  if (f.to_ms <= f.from_ms || f.days < 1 || f.limit < 1 || f.territories.size() > 100 || f.reps.size() > 100)
    std::abort();
  for (const std::string& t : f.territories)
    if (t.empty() || t.find(',') != std::string::npos) std::abort();
}

constexpr int64_t kNow = 1'764'900'000'000;  // a fixed "now": the same input, the same answer

}  // namespace

int api_query(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  const std::string_view target(reinterpret_cast<const char*>(data + 1), size - 1);
  std::optional<std::map<std::string, std::string>> query = server::parse_query(target);
  if (!query) return 0;
  for (const auto& [k, v] : *query)
    if (k.empty()) std::abort();
  // The listing of one entity for one caller (the low bits), the reports and the exports (the high bits).
  const std::variant<server::ListQuery, ApiError> list =
      server::parse_list_query(entity_of(selector >> 2), caller(selector), *query);
  if (const server::ListQuery* q = ok_or_checked(list)) check_list_sql(*q);
  const auto report = server::parse_report_query(*query, kNow);
  if (const server::reports::ReportFilter* f = ok_or_checked(report)) check_filter(*f);
  static const char* const kFiles[] = {"orders.csv", "visits.csv", "accounts.csv", "orders", "x.csv", ".csv"};
  const std::variant<server::ExportRequest, ApiError> e =
      server::parse_export(kFiles[selector % std::size(kFiles)], *query, kNow);
  if (const server::ExportRequest* r = ok_or_checked(e)) {
    check_filter(r->filter);
    if (r->options.bom != (query->count("bom") && query->at("bom") == "1")) std::abort();
  }
  return 0;
}

int api_body(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  if (selector % 8 == 0) {
    // POST /api/v1/session reads its body itself (no session yet).
    const auto sign_in = server::parse_sign_in(body);
    if (const server::SignIn* s = ok_or_checked(sign_in))
      if (s->user.empty() || s->password.empty()) std::abort();
    return 0;
  }
  const std::variant<json::object, ApiError> parsed = server::parse_json_body(body);
  const json::object* o = ok_or_checked(parsed);
  if (o == nullptr) return 0;
  switch (selector % 8) {
    case 1:
    case 2: {
      // Create or patch of any entity, then the model's validation the write path runs on each change.
      const schema::EntityDef& e = entity_of(selector >> 3);
      const RecordId id = *RecordId::parse("01890a5d-ac96-774b-bcce-b302099a8057");
      const std::variant<std::vector<Change>, ApiError> changes =
          selector % 8 == 1 ? server::create_changes(e, id, *o) : server::patch_changes(e, id, *o);
      if (const std::vector<Change>* c = ok_or_checked(changes)) {
        if (selector % 8 == 1 && (c->empty() || c->front().op != ChangeOp::kCreate)) std::abort();
        if (c->size() > o->size() + 1) std::abort();
        for (Change ch : *c) {
          if (ch.entity != e.id) std::abort();
          ch.version = Version{1'764'900'000'000ull << 16, 3};  // stamped by the write path (SyncService)
          (void)validate_change(ch);
        }
      }
      break;
    }
    case 3: {
      const auto reject = server::parse_reject_body(*o);
      if (const std::string* reason = ok_or_checked(reject))
        if (reason->find_first_not_of(" \t\r\n") == std::string::npos) std::abort();
      break;
    }
    case 4:
      (void)ok_or_checked(server::parse_handover_body(*o));
      break;
    case 5: {
      const auto resolve = server::parse_resolve_body(*o);
      if (const std::string* action = ok_or_checked(resolve))
        if (*action != "accept" && *action != "restore") std::abort();
      break;
    }
    default: {
      const auto reassign = server::parse_reassign_body(*o);
      if (const server::ReassignBody* b = ok_or_checked(reassign)) {
        if (b->territory.has_value() == b->to_rep.has_value()) std::abort();
        if (b->accounts.has_value() == b->from_rep.has_value()) std::abort();
      }
      break;
    }
  }
  return 0;
}

}  // namespace fieldsync::fuzz

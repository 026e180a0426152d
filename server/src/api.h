// The head-office API under /api/v1/ (docs/API.md; DESIGN.md "Head office"). Internal to server/src.
//
//   api.cc           web sessions (cookie or bearer), CSRF and Origin checks, roles, the worker pool every
//                    handler's store work runs on, errors; people, devices, audit, sync health.
//   api_entities.cc  reads derived from the entity model (list, one record with children, history), writes
//                    through SyncService::write like a device's push, order actions, reassignment, handover,
//                    the conflict inbox and the change feed (paged and Server-Sent Events).
//   api_service.cc   what the model cannot derive for leads and service cases: lead conversion, case
//                    dispatch with an SLA due time, escalation, the billable flag, the SLA setting.
#pragma once

#include <boost/beast/http/status.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fieldsync/schema/model.h"
#include "fieldsync/server/reports.h"
#include "fieldsync/sync/change.h"
#include "fieldsync/sync/protocol.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/value.h"
#include "http_session.h"
#include "reader_pool.h"
#include "sql_reader.h"

namespace fieldsync::server {

// The node the API writes from (api_entities.cc, api_service.cc): 1 is SyncServer's own, 2 fieldsync-admin's;
// devices start at 16.
inline constexpr NodeId kApiNode = 3;

// Ids of the records the API creates: one generator per thread, seeded at random.
inline RecordIdGenerator& id_generator() {
  thread_local RecordIdGenerator gen(std::random_device{}() ^
                                     (static_cast<uint64_t>(std::random_device{}()) << 32));
  return gen;
}

inline Change make(ChangeOp op, schema::EntityId e, const RecordId& id, uint16_t field = 0,
                   Value v = Value::null()) {
  Change c{op, e, id, field};
  c.value = std::move(v);
  return c;
}

class Directory;
struct User;

// An error answer: `{"code", "message", "field"}` with an HTTP status.
struct ApiError {
  boost::beast::http::status status = boost::beast::http::status::bad_request;
  std::string code;
  std::string message;
  std::string field;  // empty: null
};

// A JSON answer.
struct ApiReply {
  boost::beast::http::status status = boost::beast::http::status::ok;
  boost::json::value body;
  HttpSession::Headers headers;
};

using ApiResult = std::variant<ApiReply, ApiError>;

// The caller of one request, once its session checked out (on a worker thread).
struct Caller {
  UserId user;
  std::string role;  // "head_office", "manager", "rep", "partner"
  Principal principal;
  bool partner() const { return role == "partner"; }
  bool head_office() const { return role == "head_office"; }
  bool manager_or_above() const { return role == "head_office" || role == "manager"; }
};

// What a handler gets: the request (body parsed when it had one), the caller and the server.
struct ApiRequest {
  NetServer::Impl* impl = nullptr;
  std::shared_ptr<HttpSession> session;
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::map<std::string, std::string> params;  // the path's {name} segments
  std::map<std::string, std::string> query;   // decoded query string (each name once)
  std::optional<boost::json::value> body;
  Caller caller;
  std::string session_key;  // the web session the request came with (logout)
  // A stream route's Last-Event-ID header (an EventSource reconnecting says where it got to); empty without.
  std::string last_event_id;
};

using ApiHandler = std::function<ApiResult(ApiRequest&)>;

ApiError api_error(boost::beast::http::status status, std::string code, std::string message,
                   std::string field = {});
// The API's pool of read connections to the central store (query_only; at most limits::kApiThreads + 1
// kept idle: one per worker, and one for a stream's chunk between two requests).
ReaderPool& api_readers(NetServer::Impl& impl);
// A sync-rule rejection (or a store failure) as an API error: the status and the field named in the message.
ApiError api_error_from(const Status& status);

// Registers an authenticated route: `method pattern` on the API's worker threads, for callers whose role is
// in `roles` (others: 403 forbidden). Body routes take JSON up to limits::kMaxApiBodyBytes.
void add_api_route(NetServer::Impl& impl, RouteTable& routes, boost::beast::http::verb method,
                   const std::string& pattern, std::vector<std::string> roles, ApiHandler handler);
// A streamed route (SSE): `start` runs on a worker thread after authentication and starts the stream itself.
void add_api_stream_route(NetServer::Impl& impl, RouteTable& routes, const std::string& pattern,
                          std::vector<std::string> roles,
                          std::function<std::optional<ApiError>(ApiRequest&)> start);

// For a streamed route's `start` (CSV exports): answers `r` with a chunked body whose chunks `produce` makes
// on the API's worker threads, one call per chunk, each only after the previous chunk was written
// (backpressure: memory stays one chunk however big the export); nullopt ends the body. `produce` owns
// whatever cursor it reads from and is destroyed when the stream ends or the client goes away. Example,
// the coordinator's CSV wiring: add_api_stream_route(impl, routes, "/api/v1/export/{file}", roles,
// [](ApiRequest& r) { /* check the query */ api_stream(r, "text/csv; charset=utf-8", {...}, producer);
// return std::nullopt; }).
void api_stream(ApiRequest& r, std::string content_type, HttpSession::Headers headers,
                std::function<std::optional<std::string>()> produce);

// As api_stream, for a producer that can fail (a store read): an error after the header ends the body
// without its last chunk (HttpSession::abort_stream), so the client never takes a cut export for a whole one.
void api_stream_checked(ApiRequest& r, std::string content_type, HttpSession::Headers headers,
                        std::function<Result<std::optional<std::string>>()> produce);

// Posts `fn` to the API's worker threads (counted against limits::kMaxApiQueued by the caller of the route).
void api_post(NetServer::Impl& impl, std::function<void()> fn);

void add_api_routes(NetServer::Impl& impl, RouteTable& routes);
void add_entity_routes(NetServer::Impl& impl, RouteTable& routes);   // api_entities.cc
void add_report_routes(NetServer::Impl& impl, RouteTable& routes);   // api_reports.cc
void add_service_routes(NetServer::Impl& impl, RouteTable& routes);  // api_service.cc (leads, cases)
// Dispatch and the per-priority SLA setting it reads (api_service.cc): the setting lives in the central store
// (SQLite's file, or the PostgreSQL database every instance shares) like the reports' settings.
void add_case_sla_routes(NetServer::Impl& impl, RouteTable& routes);

// A connection for one report, export or settings read, on either store: on SQLite its own (open_report_db:
// the page cache and mapping a report's range reads need), on PostgreSQL one of the API's pooled read
// connections. Kept by a CSV stream for its whole life.
class ReportConnection {
 public:
  ReportConnection(std::unique_ptr<SqlReader> own) : own_(std::move(own)) {}
  ReportConnection(ReaderPool::Lease lease) : lease_(std::move(lease)) {}
  SqlReader& operator*() { return own_ ? *own_ : *lease_.value(); }

 private:
  std::unique_ptr<SqlReader> own_;
  std::optional<ReaderPool::Lease> lease_;
};
Result<ReportConnection> report_connection(NetServer::Impl& impl);
// A writable connection for a settings change (api_reports.cc): SQLite's file, or a new PostgreSQL session.
Result<std::unique_ptr<SqlReader>> settings_connection(NetServer::Impl& impl);

// Web-session revocation for a disabled user (api.cc).
void api_revoke_sessions(NetServer::Impl& impl, const UserId& user);

// Reads and writes of single records shared by the entity routes and the service actions (api_entities.cc).
// Whether the caller sees the record (it exists, is live, the caller's role reads its entity and its current
// scope is the caller's); the record in `out` when it does.
Result<bool> visible(NetServer::Impl& impl, const Caller& c, schema::EntityId entity, const RecordId& id,
                     std::optional<RecordState>* out = nullptr);
// One transaction written as `who` through SyncService::write, like a device's push; returns when it is
// durable (or rejected).
Result<protocol::TxnResult> write(ApiRequest& r, const Principal& who, std::vector<Change> changes);
// The answer to a write: `body` with its server_seq and the conflicts it recorded, or the rejection as an
// error.
ApiResult write_answer(Result<protocol::TxnResult> res, boost::json::object body,
                       boost::beast::http::status status = boost::beast::http::status::ok);

// Helpers shared by both files.
// A body with a key not in `allowed`: 400 unknown_field naming it.
std::optional<ApiError> only_fields(const boost::json::object& o,
                                    std::initializer_list<std::string_view> allowed);
// Body field `name` as a string into *out: 400 missing_field (when required) or wrong_type.
std::optional<ApiError> string_field(const boost::json::object& o, const char* name, std::string* out,
                                     bool required);
std::optional<int64_t> parse_int(const std::string& text);
Result<std::vector<std::string>> string_list(const boost::json::value& v, const std::string& field);

// ---- The pure parsers of the API's untrusted input: no I/O, no directory, no store. The handlers call them
// first; the fuzz targets (tests/fuzz: api_query_fuzz, api_body_fuzz) call them directly.

// The query string of a request target ("/p?a=1&b=x%20y"), percent-decoded ('+' a space), each name once;
// nullopt when it does not parse (a bad escape, an empty or repeated name).
std::optional<std::map<std::string, std::string>> parse_query(std::string_view target);

// A request body: JSON, and an object (400 invalid_json otherwise).
std::variant<boost::json::object, ApiError> parse_json_body(std::string_view body);

// POST /api/v1/session: {"user", "password", "mode": "cookie" (default) | "token"}.
struct SignIn {
  std::string user;
  std::string password;
  bool bearer = false;
};
std::variant<SignIn, ApiError> parse_sign_in(std::string_view body);

// GET /api/v1/entities/{entity}?<filters>&sort&order&limit&cursor&q, as the SQL the listing runs (every value
// a parameter: no text of the request is in `sql`) for `caller`'s scope, in `dialect`'s SQL (sql_reader.h).
// limit + 1 rows are asked for.
struct ListQuery {
  std::string sql;
  std::vector<Value> params;
  std::string sort = "id";
  std::string order = "asc";
  size_t limit = 0;
};
std::variant<ListQuery, ApiError> parse_list_query(const schema::EntityDef& e, const Principal& caller,
                                                   const std::map<std::string, std::string>& query,
                                                   SqlDialect dialect = SqlDialect::kSqlite);

// POST /api/v1/entities/{entity}: the create and its field changes (`fresh` unless the body names a UUIDv7
// "id"); PATCH .../{id}: the field changes. Values typed by the model (wrong_type, unknown_field), not yet
// validated against its rules (the write path's validate_change does that).
std::variant<std::vector<Change>, ApiError> create_changes(const schema::EntityDef& e, const RecordId& fresh,
                                                           const boost::json::object& body);
std::variant<std::vector<Change>, ApiError> patch_changes(const schema::EntityDef& e, const RecordId& id,
                                                          const boost::json::object& body);

// The order and inbox actions' bodies: reject {"reason"} (not blank), handover {"to"}, resolve {"action":
// "accept" | "restore"}.
std::variant<std::string, ApiError> parse_reject_body(const boost::json::object& body);
std::variant<std::string, ApiError> parse_handover_body(const boost::json::object& body);
std::variant<std::string, ApiError> parse_resolve_body(const boost::json::object& body);
// Reassign {"territory" | "to_rep", "accounts": [ids] | "from_rep"}: where to (a territory, or a rep whose
// one territory it is) and which accounts (ids, or a rep's territories'), types and ids checked.
struct ReassignBody {
  std::optional<std::string> territory;
  std::optional<std::string> to_rep;
  std::optional<std::vector<RecordId>> accounts;
  std::optional<std::string> from_rep;
};
std::variant<ReassignBody, ApiError> parse_reassign_body(const boost::json::object& body);

// GET /api/v1/reports/{name}?<filter> (reports::parse_filter) and GET /api/v1/export/{file}?<filter>&bom=0|1
// (file: orders.csv, visits.csv, accounts.csv), at `now_ms`.
std::variant<reports::ReportFilter, ApiError> parse_report_query(
    const std::map<std::string, std::string>& query, int64_t now_ms);
struct ExportRequest {
  reports::CsvKind kind;
  reports::CsvOptions options;
  reports::ReportFilter filter;
};
std::variant<ExportRequest, ApiError> parse_export(const std::string& file,
                                                   const std::map<std::string, std::string>& query,
                                                   int64_t now_ms);

}  // namespace fieldsync::server

// The head-office reports, their forecast setting and the CSV exports on the API (docs/API.md, "Reports"):
// thin routes over reports.h, which owns the SQL, the scope rules and the CSV format. Each request opens its
// own read-only connection to the central store (report_connection: on SQLite open_report_db, on PostgreSQL a
// pooled read session) on an API worker thread; an export keeps its connection for its whole stream and is
// read a chunk at a time, each chunk only after the previous one was written to the client.
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <utility>

#include "api.h"
#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/server/directory.h"
#include "fieldsync/server/reports.h"
#include "pg.h"
#include "wall_clock.h"

namespace fieldsync::server {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;

// Partners read and write their customers' records; figures about the company's reps are not theirs.
const std::vector<std::string> kReportRoles = {"head_office", "manager", "rep"};
const std::vector<std::string> kHeadOffice = {"head_office"};

// A filter the library refused names its parameter: a 400 the page can put beside that field.
ApiError filter_error(const Status& s, const std::string& field) {
  if (s.code() == ErrorCode::kInvalidArgument)
    return api_error(http::status::bad_request, "value_invalid", s.message(), field);
  return api_error_from(s);
}

Result<reports::ReportFilter> filter_of(const std::map<std::string, std::string>& params, int64_t now_ms,
                                        std::string* field,
                                        std::initializer_list<std::string_view> own_params = {}) {
  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [k, v] : params) {
    bool own = false;
    for (std::string_view p : own_params) own = own || k == p;
    if (!own) query.emplace_back(k, v);
  }
  return reports::parse_filter(query, now_ms, field);
}

}  // namespace

Result<ReportConnection> report_connection(NetServer::Impl& impl) {
  if (is_postgresql_url(impl.options.store_path)) {
    Result<ReaderPool::Lease> lease = api_readers(impl).lease();
    if (!lease) return lease.status();
    return ReportConnection(std::move(*lease));
  }
  Result<std::unique_ptr<sqlite::Db>> db = reports::open_report_db(impl.options.store_path);
  if (!db) return db.status();
  return ReportConnection(sqlite_reader(std::move(*db)));
}

Result<std::unique_ptr<SqlReader>> settings_connection(NetServer::Impl& impl) {
  if (is_postgresql_url(impl.options.store_path)) {
    Result<std::unique_ptr<pg::Conn>> conn = pg::Conn::open(impl.options.store_path);
    if (!conn) return conn.status();
    return pg_reader(std::move(*conn));
  }
  Result<std::unique_ptr<sqlite::Db>> db = reports::open_settings_db(impl.options.store_path);
  if (!db) return db.status();
  return sqlite_reader(std::move(*db));
}

std::variant<reports::ReportFilter, ApiError> parse_report_query(
    const std::map<std::string, std::string>& query, int64_t now_ms) {
  std::string field;
  Result<reports::ReportFilter> filter = filter_of(query, now_ms, &field);
  if (!filter) return filter_error(filter.status(), field);
  return std::move(*filter);
}

std::variant<ExportRequest, ApiError> parse_export(const std::string& file,
                                                   const std::map<std::string, std::string>& query,
                                                   int64_t now_ms) {
  constexpr std::string_view kSuffix = ".csv";
  Result<reports::CsvKind> kind =
      file.size() > kSuffix.size() && file.ends_with(kSuffix)
          ? reports::csv_kind(std::string_view(file).substr(0, file.size() - kSuffix.size()))
          : Result<reports::CsvKind>(Status(ErrorCode::kInvalidArgument, "not a .csv file"));
  if (!kind) return api_error(http::status::not_found, "not_found", "no export named '" + file + "'");
  ExportRequest out{*kind, {}, {}};
  if (auto it = query.find("bom"); it != query.end()) {
    if (it->second != "0" && it->second != "1")
      return api_error(http::status::bad_request, "value_invalid", "bom is 0 or 1", "bom");
    out.options.bom = it->second == "1";
  }
  std::string field;
  Result<reports::ReportFilter> filter = filter_of(query, now_ms, &field, {"bom"});
  if (!filter) return filter_error(filter.status(), field);
  out.filter = std::move(*filter);
  return out;
}

namespace {

ApiResult report(ApiRequest& r) {
  const std::string& name = r.params.at("name");
  bool known = false;
  for (std::string_view n : reports::kReportNames) known = known || n == name;
  if (!known) return api_error(http::status::not_found, "not_found", "no report named '" + name + "'");
  std::variant<reports::ReportFilter, ApiError> filter = parse_report_query(r.query, wall_ms());
  if (ApiError* bad = std::get_if<ApiError>(&filter)) return std::move(*bad);
  Result<ReportConnection> db = report_connection(*r.impl);
  if (!db) return api_error_from(db.status());
  Result<json::value> answer =
      reports::run_report(**db, name, std::get<reports::ReportFilter>(filter), r.caller.principal);
  if (!answer) return filter_error(answer.status(), {});
  return ApiReply{http::status::ok, std::move(*answer), {}};
}

ApiResult get_probabilities(ApiRequest& r) {
  Result<ReportConnection> db = report_connection(*r.impl);
  if (!db) return api_error_from(db.status());
  Result<std::map<std::string, int>> bp = reports::stage_probabilities(**db);
  if (!bp) return api_error_from(bp.status());
  json::object o;
  for (const auto& [stage, v] : *bp) o[stage] = v;
  return ApiReply{http::status::ok, json::object{{"stage_probability_bp", std::move(o)}}, {}};
}

// PUT {"stage_probability_bp": {"proposal": 4000, ...}}: the stages named change, the others keep theirs.
ApiResult put_probabilities(ApiRequest& r) {
  const json::object* body = r.body ? r.body->if_object() : nullptr;
  if (body == nullptr || body->size() != 1 || !body->contains("stage_probability_bp"))
    return api_error(http::status::bad_request, "bad_request",
                     "expected {\"stage_probability_bp\": {\"<stage>\": basis points, ...}}");
  const json::object* given = body->at("stage_probability_bp").if_object();
  if (given == nullptr)
    return api_error(http::status::bad_request, "type_mismatch", "an object of stage: basis points",
                     "stage_probability_bp");
  std::map<std::string, int> bp;
  for (const auto& [stage, v] : *given) {
    const std::string key(stage);
    if (!v.is_int64() || v.as_int64() < 0 || v.as_int64() > 10'000)
      return api_error(http::status::bad_request, "value_invalid", "basis points are 0..10000", key);
    bp[key] = static_cast<int>(v.as_int64());
  }
  Result<std::unique_ptr<SqlReader>> db = settings_connection(*r.impl);
  if (!db) return api_error_from(db.status());
  if (Status s = reports::set_stage_probabilities(**db, r.caller.principal, bp); !s) {
    if (s.code() == ErrorCode::kInvalidArgument)
      return api_error(http::status::unprocessable_entity, "invalid_argument", s.message(),
                       "stage_probability_bp");
    return api_error_from(s);
  }
  json::object detail;
  for (const auto& [stage, v] : bp) detail[stage] = v;
  (void)r.impl->options.directory->audit(AuditRecord{
      0, wall_ms(), r.caller.user, "settings.stage_probability", "forecast", json::serialize(detail)});
  return get_probabilities(r);
}

// GET /api/v1/export/{orders|visits|accounts}.csv?<report filter>&bom=1
std::optional<ApiError> start_export(ApiRequest& r) {
  const std::string file = r.params.at("file");
  std::variant<ExportRequest, ApiError> parsed = parse_export(file, r.query, wall_ms());
  if (ApiError* bad = std::get_if<ApiError>(&parsed)) return std::move(*bad);
  const ExportRequest& request = std::get<ExportRequest>(parsed);
  Result<ReportConnection> db = report_connection(*r.impl);
  if (!db) return api_error_from(db.status());
  // The connection moves into the stream first: the export keeps a reference to it.
  struct Stream {
    ReportConnection db;  // declared first: outlives the export reading it
    std::unique_ptr<reports::CsvExport> csv;
  };
  auto stream = std::make_shared<Stream>(Stream{std::move(*db), nullptr});
  // Scope and filter errors are answered before the 200 and the first byte of the body.
  Result<std::unique_ptr<reports::CsvExport>> e = reports::CsvExport::start(
      *stream->db, request.kind, request.filter, r.caller.principal, request.options);
  if (!e) return filter_error(e.status(), {});
  stream->csv = std::move(*e);
  HttpSession::Headers headers = {{http::field::content_disposition, "attachment; filename=\"" + file + "\""},
                                  {http::field::cache_control, "no-store"}};
  api_stream_checked(r, "text/csv; charset=utf-8", std::move(headers),
                     [stream]() { return stream->csv->next(); });
  return std::nullopt;
}

}  // namespace

void add_report_routes(NetServer::Impl& impl, RouteTable& routes) {
  const std::string base = "/api/v1";
  add_api_route(impl, routes, http::verb::get, base + "/reports/{name}", kReportRoles, report);
  add_api_route(impl, routes, http::verb::get, base + "/settings/stage-probabilities", kReportRoles,
                get_probabilities);
  add_api_route(impl, routes, http::verb::put, base + "/settings/stage-probabilities", kHeadOffice,
                put_probabilities);
  add_api_stream_route(impl, routes, base + "/export/{file}", kReportRoles, start_export);
}

}  // namespace fieldsync::server

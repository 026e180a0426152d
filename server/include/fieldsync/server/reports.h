// Head-office reports and CSV exports over the central store (issue 18, sections 2 and 3).
//
// Every report is SQL over the store's typed tables and its derived `_stage_history` (sqlite_store.h), in
// one read snapshot, with the caller's scope and the filter in the WHERE clauses: nothing loads the records
// into C++, only the aggregated rows (and bounded lists) come back. The HTTP layer maps
// `GET /api/v1/reports/{name}?...` to run_report and `GET /api/v1/export/{kind}.csv?...` to export_csv, with
// the query parsed by parse_filter. The definitions (what counts as revenue, on time, stalled, ...) are in
// docs/DESIGN.md, "Reports"; the constants below carry them.
//
// Connections: every function takes a connection to the central store's file that the caller owns and uses
// from one thread at a time (open_report_db opens one). A report never writes; the stage probabilities are
// the one setting, written through set_stage_probabilities.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fieldsync/sync/change.h"
#include "fieldsync/sync/status.h"

namespace fieldsync::sqlite {
class Db;  // fieldsync/io/sqlite_db.h
}
namespace fieldsync::server {
class SqlReader;  // server/src/sql_reader.h: a SQLite or PostgreSQL connection
}

namespace fieldsync::server::reports {

// The report names of the API (`GET /api/v1/reports/{name}`).
inline constexpr std::string_view kReportNames[] = {
    "revenue", "abc", "activity", "plan_vs_execution", "funnel", "stalled", "forecast",
    // schema 3 (issue 21): leads by source, service cases by priority and status, open tasks per owner
    "leads", "service_cases", "tasks_overdue"};

// Limits (why these numbers): a list in a report (top accounts, accounts not visited, stalled deals) is a
// page for a person to read, not an export; the CSV is the way to get everything.
inline constexpr size_t kDefaultListRows = 50;
inline constexpr size_t kMaxListRows = 1000;
// N days for "not visited" and "stalled": up to ten years.
inline constexpr int kMaxDays = 3650;
// A period longer than this is refused: five years of day buckets is already 1,800 rows per rep.
inline constexpr int64_t kMaxPeriodMs = int64_t{5} * 366 * 24 * 3600 * 1000;
// Fixed offsets of real time zones lie within -12:00 .. +14:00.
inline constexpr int kMaxTzOffsetMinutes = 14 * 60;
// The longest IANA zone name is 32 bytes ("America/Argentina/ComodRivadavia").
inline constexpr size_t kMaxTimeZoneName = 64;
// At most this many territories and reps in one filter (each is a bound SQL parameter).
inline constexpr size_t kMaxFilterValues = 100;

// Plan versus execution: the visit of an appointment (a calendar event at an account, not cancelled) is the
// earliest one linked to it (visit.calendar_event_id) or, with none linked, the earliest by the
// appointment's owner at its account checked in from kMatchBeforeMs before the start to kMatchAfterMs after
// it. Its check-in decides: on time up to kOnTimeGraceMs after the start, late after that. Without one it is
// missed once kMatchAfterMs have passed since the start by the reference time (the period's end), pending
// before.
inline constexpr int64_t kMatchBeforeMs = 60 * 60 * 1000;
inline constexpr int64_t kMatchAfterMs = 24 * 60 * 60 * 1000;
inline constexpr int64_t kOnTimeGraceMs = 15 * 60 * 1000;

// The forecast's default probability per stage in basis points (10,000 = 100%), used for any stage head
// office has not set.
inline constexpr std::pair<std::string_view, int> kDefaultStageProbabilityBp[] = {
    {"prospect", 1000},    {"qualified", 2500}, {"proposal", 5000},
    {"negotiation", 7500}, {"won", 10000},      {"lost", 0}};

struct ReportFilter {
  int64_t from_ms = 0;  // the period: [from_ms, to_ms), epoch milliseconds
  int64_t to_ms = 0;  // also the reference time of "not visited for N days", stalled deals and missed visits
  std::vector<std::string> territories;  // empty: every territory the caller sees
  std::vector<UserId> reps;              // empty: every rep the caller sees
  int days = 30;                         // N of "not visited for N days" and "no stage move for N days"
  int tz_offset_minutes = 0;             // day and month buckets (and CSV times) at this offset from UTC
  // ... or, when not empty, in this time zone (an IANA name, "Europe/Berlin": local days with its summer
  // time, 23 or 25 hours long on the days it changes); it wins over tz_offset_minutes. On SQLite the
  // activity report without a territory condition reads whole days from a rollup in any zone, or at any
  // offset that is a multiple of 15 minutes: the company zone's visits per day (the store's
  // SqliteCentralStore::Options::time_zone; tz_offset_minutes 0 is the zone "UTC"), or for any other the
  // visits per UTC day and quarter-hour (store format 9); other offsets give the same figures from the
  // visits themselves, slower.
  std::string time_zone;
  // ... or, when set, the company's time zone (the store's, SqliteCentralStore::Options::time_zone; UTC for
  // a store without one), whatever time_zone and tz_offset_minutes say: the answer's period names it. The
  // API's default (parse_filter sets it when the query has neither tz nor tz_offset_minutes): head office
  // reads its reports in company days, which the rollups count, wherever the viewer is.
  bool company_zone = false;
  size_t limit = kDefaultListRows;  // rows of each list in a report
};

// The query string of the API, as decoded (name, value) pairs: from, to (epoch ms; default: the 90 days up
// to now_ms), territory and rep (repeatable, or comma-separated), days, tz_offset_minutes or tz (a time
// zone's IANA name, at most kMaxTimeZoneName bytes; not both; neither: the company's zone), limit. `bom` is
// the CSV's and left alone. Errors: kInvalidArgument, with the parameter's name in *bad_field.
Result<ReportFilter> parse_filter(const std::vector<std::pair<std::string, std::string>>& query,
                                  int64_t now_ms, std::string* bad_field = nullptr);

// Runs report `name` (kReportNames) as `caller` sees it: head office everything; a manager the territories
// of their Principal (their own and their team's); a rep their own figures (the orders, visits, deals and
// appointments that are theirs; accounts of their territories); any other role (a partner) the territories
// its Principal carries. A filter naming a territory or rep outside that is kOutOfScope, not an empty
// answer. Errors: kInvalidArgument (unknown report, empty or overlong period, a value out of range),
// kOutOfScope, the storage codes.
Result<boost::json::value> run_report(sqlite::Db& db, std::string_view name, const ReportFilter& filter,
                                      const Principal& caller);
// The same on either engine's connection (the API's: SQLite's file or the PostgreSQL store's database).
Result<boost::json::value> run_report(SqlReader& db, std::string_view name, const ReportFilter& filter,
                                      const Principal& caller);

enum class CsvKind : uint8_t { kOrders, kVisits, kAccounts, kLeads, kServiceCases };
// "orders", "visits", "accounts", "leads", "service_cases" (the API's file names without ".csv"). Errors:
// kInvalidArgument.
Result<CsvKind> csv_kind(std::string_view name);

struct CsvOptions {
  bool bom = false;  // start with the UTF-8 byte order mark, so Excel reads the file as UTF-8
  // Bytes handed to the sink at a time (the last chunk may be shorter): memory stays this, whatever the rows.
  size_t chunk_bytes = 64 * 1024;
};

// Streams a CSV (RFC 4180: comma, CRLF, fields with a quote, comma or line break in double quotes, quotes
// doubled) of the rows the caller sees under `filter`, in chunks, into `sink`. A sink that returns false
// (a client that went away) stops the export: export_csv returns ok at once without another call. Text cells
// beginning with = + - @, a tab or a carriage return get a leading apostrophe, so a spreadsheet shows them as
// text instead of running them as formulas.
//   orders:   one row per order line (an order without lines: one row, line columns empty), orders whose
//             date (submitted, else approved) is in the period, every status
//   visits:   visits checked in during the period
//   accounts: accounts of the territories in scope (the period does not apply; the rep filter neither:
//             accounts belong to territories, not reps)
//   leads:    leads created during the period (in scope by their territory and owner)
//   service_cases: cases opened during the period (by their account's territory; a rep's: assigned to
//             them), with whether each is billable (rules.h, case_billable: 1 or 0)
// Errors: as run_report.
Status export_csv(sqlite::Db& db, CsvKind kind, const ReportFilter& filter, const Principal& caller,
                  const CsvOptions& options, const std::function<bool(std::string_view chunk)>& sink);
Status export_csv(SqlReader& db, CsvKind kind, const ReportFilter& filter, const Principal& caller,
                  const CsvOptions& options, const std::function<bool(std::string_view chunk)>& sink);

// Rows fetched at a time by a CSV export on PostgreSQL (a cursor: memory stays this many rows, whatever the
// export's size; each FETCH is a round trip, so a few hundred rows amortise it).
inline constexpr int kCsvFetchRows = 500;

// The same export read a chunk at a time, for a caller that pulls (the HTTP layer writes a chunk, then asks
// for the next: memory stays one chunk and a slow client slows the query instead of growing a buffer). The
// statement and its read snapshot live in the object, on `db`, which must outlive it and is used by it alone.
// next() gives the next chunk (about chunk_bytes), nullopt once the export is complete, or the error that
// stopped it (the output is then incomplete). export_csv is a loop over it.
class CsvExport {
 public:
  // Errors: as export_csv (checked before any row is read).
  static Result<std::unique_ptr<CsvExport>> start(sqlite::Db& db, CsvKind kind, const ReportFilter& filter,
                                                  const Principal& caller, const CsvOptions& options);
  // On either engine (PostgreSQL: a cursor in a read-only snapshot, kCsvFetchRows rows at a time).
  static Result<std::unique_ptr<CsvExport>> start(SqlReader& db, CsvKind kind, const ReportFilter& filter,
                                                  const Principal& caller, const CsvOptions& options);
  ~CsvExport();
  CsvExport(const CsvExport&) = delete;
  CsvExport& operator=(const CsvExport&) = delete;
  Result<std::optional<std::string>> next();

 private:
  struct State;
  explicit CsvExport(std::unique_ptr<State> state);
  static Result<std::unique_ptr<CsvExport>> start_on(std::unique_ptr<SqlReader> owned, SqlReader* reader,
                                                     CsvKind kind, const ReportFilter& filter,
                                                     const Principal& caller, const CsvOptions& options);
  std::unique_ptr<State> state_;
};

// The forecast's probabilities: every stage of the model, head office's setting or the default.
Result<std::map<std::string, int>> stage_probabilities(sqlite::Db& db);
Result<std::map<std::string, int>> stage_probabilities(SqlReader& db);
// Sets some stages' probabilities (basis points, 0..10,000) in one transaction on a writable connection;
// the others keep theirs. Errors: kPermissionDenied unless head office, kInvalidArgument for an unknown
// stage or a value out of range (nothing is written), the storage codes.
Status set_stage_probabilities(sqlite::Db& db, const Principal& caller, const std::map<std::string, int>& bp);
// On a connection opened writable (SqlReader::begin_write).
Status set_stage_probabilities(SqlReader& db, const Principal& caller, const std::map<std::string, int>& bp);

// The report connection's page cache and memory mapping of the store file (open_report_db): per connection.
inline constexpr int64_t kReportCacheKiB = 64 * 1024;
inline constexpr int64_t kReportMmapBytes = int64_t{1} << 30;

// A connection for reports: read-only (query_only), waiting up to busy_timeout_ms for a lock, with the cache
// and mapping above.
Result<std::unique_ptr<sqlite::Db>> open_report_db(const std::string& path, int busy_timeout_ms = 5000);
// A writable connection (for set_stage_probabilities).
Result<std::unique_ptr<sqlite::Db>> open_settings_db(const std::string& path, int busy_timeout_ms = 5000);

}  // namespace fieldsync::server::reports

// SQLite central store. See sqlite_store.h for the layout and the threading and error rules.
//
// server_seq: append_log assigns max(server_seq) + 1 inside the open BEGIN IMMEDIATE transaction. There is
// one writer per file at a time (SQLite's write lock, held from BEGIN IMMEDIATE to COMMIT), so sequences
// commit in the order they were assigned and a reader can never see N before N-1: the contract of store.h
// holds trivially. With concurrent writers a plain sequence would not (N+1 may commit before N, and a pull
// that read N+1 would move its cursor past N forever): PgCentralStore hands out server_seq under a row lock
// held to commit (pg_store.h, DESIGN.md section 9).
#include "fieldsync/server/sqlite_store.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/schema/ddl.h"
#include "fieldsync/server/reports.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/schedule.h"
#include "fieldsync/sync/scope.h"
#include "local_time.h"
#include "sql_value.h"
#include "store_common.h"
#include "visit_quarters.h"
#include "wall_clock.h"

namespace fieldsync::server {

using sqlite::Db;
using sqlite::quoted;
using sqlite::Stmt;

namespace {

using namespace store_common;

// File format of the store's own tables; bump on a change and migrate on open (migrate_format).
//   1: the first.
//   2: _log_scope, the log indexed by scope key for read_log_for.
//   3: the audit is the log: _log.recorded_at_ms, and no per-change _audit table (its rows and two indexes
//      were half of the apply path's time; audit() expands the log entries instead).
//   4: bootstrap indexes: (scope field, id) on every territory- or owner-scoped entity (scan_in_scopes walks
//      each scope key in id order), which replaces the model's one-column index on that field (dropped by the
//      migration: two indexes on one field made every insert pay twice, -30% on the load bench's saturated
//      rate). (An index on _log (origin_node) for keys_created_by cost the same again: that rare read -- a
//      device's last bootstrap page, only if the device pushed before it -- scans the log instead.)
//   5: head-office reports (server/src/reports.cc): _stage_history, one row per stint of an opportunity in a
//      stage, kept by save() (the migration files each existing opportunity's current stage from its record);
//      _stage_probability (the forecast's per-stage probabilities head office sets); indexes the reports'
//      period filters walk (orders by date, visits by check-in, appointments by start).
//   6: report facts and rollups kept by triggers, so no head-office report walks a year of rows at report
//      time: _order_line_fact (revenue by product), _visit_day (visits per day, rep and outcome: UTC days
//      then, the company zone's days since set_rollup_zone), _appointment_fact (each appointment's visit);
//      idx_report_order_line and idx_report_event_start are dropped (their reads moved to the facts) and
//      idx_order_line_order_id is the model's again.
//   7: model schema 3 (leads, service cases, assets, tasks: new tables from the model's DDL) and
//      calendar_event.opportunity_id, added to the existing table before the model's DDL indexes it. Files of
//      format 6 and older hold model schema 2 at most.
//   8: _fact_order_insert writes a new order's fact with its totals in one insert (it inserted zeros and
//      summed the lines in a second statement: -29k of the ~390k instructions the report tables add to an
//      order-heavy transaction, PERFORMANCE.md); the migration recreates that trigger, and schema 3's report
//      indexes are created on open like the others.
//   9: _visit_quarter_day (visit_quarters.h), visits per UTC day, rep and outcome with running counts per
//      quarter-hour, kept by the visit triggers (recreated by the migration, which fills the table from the
//      visits in one statement), so the activity report of a viewer in any zone reads whole days from it
//      instead of every visit (590 ms for a year of the bench store, PERFORMANCE.md); and a trigger on a
//      visit row's deletion, which no writer of the model does.
constexpr int64_t kFormat = 9;
// The newest model schema version a file of each format before kFormat may hold, for added_columns_ddl.
constexpr uint32_t kSchemaOfFormat6 = 2;

// A line's net amount as FieldClient computes it: gross minus gross * discount_bp / 10,000 rounded half up,
// without overflowing int64. L is the row's prefix ("new." in a trigger, "l." in a query).
#define LINE_NET(L)                                                                                         \
  "(" L "quantity * " L "unit_price_cents - ((" L "quantity * " L "unit_price_cents) / 10000 * coalesce(" L \
  "discount_bp, 0) + ((" L "quantity * " L "unit_price_cents) % 10000 * coalesce(" L                        \
  "discount_bp, 0) + 5000) / 10000))"
// _order_fact's totals of order ORDER: quantity and net of its live lines, from their facts (a range of
// _order_line_fact's primary key).
#define ORDER_FACT_TOTALS(ORDER)                                                                          \
  "quantity = (SELECT coalesce(sum(f.quantity), 0) FROM _order_line_fact f WHERE f.order_id = " ORDER     \
  " AND f.deleted = 0), net_cents = (SELECT coalesce(sum(f.net_cents), 0) FROM _order_line_fact f WHERE " \
  "f.order_id = " ORDER " AND f.deleted = 0)"
// The fact of the order row `new` (its totals are kept by the lines' triggers), and what its lines' facts
// copy of it.
#define ORDER_FACT_UPSERT                                                                                  \
  "INSERT INTO _order_fact (order_id, at_ms, status, deleted, rep_id, account_id, territory, currency, "   \
  "quantity, net_cents) VALUES (new.id, coalesce(new.submitted_at, new.approved_at), new.status, "         \
  "new._deleted, new.rep_id, new.account_id, (SELECT territory_id FROM account WHERE id = "                \
  "new.account_id), new.currency, 0, 0) ON CONFLICT (order_id) DO UPDATE SET at_ms = excluded.at_ms, "     \
  "status = excluded.status, deleted = excluded.deleted, rep_id = excluded.rep_id, account_id = "          \
  "excluded.account_id, territory = excluded.territory, currency = excluded.currency; "                    \
  "UPDATE _order_line_fact SET at_ms = coalesce(new.submitted_at, new.approved_at), status = new.status, " \
  "order_deleted = new._deleted, rep_id = new.rep_id, territory = (SELECT territory_id FROM account "      \
  "WHERE id = new.account_id), currency = new.currency WHERE order_id = new.id;"
// A new order's fact with its totals in the one insert (format 8; format 7 inserted zeros and then summed the
// lines in an UPDATE, which rewrote the fact's row and its 10-column index entry a second time for every
// order): the live lines already stored, usually none -- an order's lines are stored after it --, from one
// range of _order_line_fact's primary key.
#define ORDER_FACT_INSERT                                                                                  \
  "INSERT INTO _order_fact (order_id, at_ms, status, deleted, rep_id, account_id, territory, currency, "   \
  "quantity, net_cents) SELECT new.id, coalesce(new.submitted_at, new.approved_at), new.status, "          \
  "new._deleted, new.rep_id, new.account_id, (SELECT territory_id FROM account WHERE id = "                \
  "new.account_id), new.currency, coalesce(sum(f.quantity), 0), coalesce(sum(f.net_cents), 0) FROM "       \
  "_order_line_fact f WHERE f.order_id = new.id AND f.deleted = 0 ON CONFLICT (order_id) DO UPDATE SET "   \
  "at_ms = excluded.at_ms, status = excluded.status, deleted = excluded.deleted, rep_id = "                \
  "excluded.rep_id, account_id = excluded.account_id, territory = excluded.territory, currency = "         \
  "excluded.currency, quantity = excluded.quantity, net_cents = excluded.net_cents; "                      \
  "UPDATE _order_line_fact SET at_ms = coalesce(new.submitted_at, new.approved_at), status = new.status, " \
  "order_deleted = new._deleted, rep_id = new.rep_id, territory = (SELECT territory_id FROM account "      \
  "WHERE id = new.account_id), currency = new.currency WHERE order_id = new.id;"
// The trigger that writes it (kStoreDdl, and format 8's migration replacing format 7's).
constexpr const char kOrderInsertTrigger[] =
    "CREATE TRIGGER IF NOT EXISTS _fact_order_insert AFTER INSERT ON \"order\" BEGIN " ORDER_FACT_INSERT
    " END";
// (Upserts, not INSERT OR REPLACE: a trigger's conflict clause gives way to the statement's that fired it.)
// The fact of the line row `new`, with its order's attributes from the order's fact (none yet if the line
// is stored before its order: the order's trigger fills them then).
#define LINE_FACT_UPSERT \
  "INSERT INTO _order_line_fact (order_id, line_id, product_id, deleted, quantity, net_cents, at_ms, "    \
  "status, order_deleted, rep_id, territory, currency) SELECT new.order_id, new.id, new.product_id, "      \
  "new._deleted, new.quantity, " LINE_NET("new.") ", x.at_ms, x.status, coalesce(x.deleted, 0), "         \
  "x.rep_id, x.territory, x.currency FROM (SELECT 1) LEFT JOIN _order_fact x ON x.order_id = "             \
  "new.order_id WHERE true ON CONFLICT (order_id, line_id) DO UPDATE SET product_id = "                    \
  "excluded.product_id, deleted = excluded.deleted, quantity = excluded.quantity, net_cents = "            \
  "excluded.net_cents, at_ms = excluded.at_ms, status = excluded.status, order_deleted = "                 \
  "excluded.order_deleted, rep_id = excluded.rep_id, territory = excluded.territory, currency = "          \
  "excluded.currency;"
// Visits per local day of the company's time zone, rep and outcome (_visit_day) of the visit row R ("new" or
// "old") when it counts: the offset in effect at the check-in is the last _tz_offset row starting at or
// before it (one seek of its primary key; no row: UTC).
#define VISIT_DAY(R)                                                                                \
  "(" R ".check_in_at + 1000 * coalesce((SELECT z.offset_s FROM _tz_offset z WHERE z.from_ms <= " R \
  ".check_in_at ORDER BY z.from_ms DESC LIMIT 1), 0)) / 86400000, " R ".rep_id, coalesce(" R        \
  ".outcome, "                                                                                      \
  "'none')"
#define VISIT_COUNTS(R) R "._deleted = 0 AND " R ".check_in_at IS NOT NULL AND " R ".rep_id IS NOT NULL"
// Takes the visit row `old` out of _visit_day.
#define VISIT_DAY_REMOVE                                           \
  "UPDATE _visit_day SET visits = visits - 1 WHERE " VISIT_COUNTS( \
      "old") " AND (day, rep_id, outcome) = (" VISIT_DAY("old") ");"
// The key of the visit row R in _visit_quarter_day (visit_quarters.h): its UTC day, rep and outcome.
#define VISIT_UTC_KEY(R) R ".check_in_at / 86400000, " R ".rep_id, coalesce(" R ".outcome, 'none')"

// _visit_quarter_day's running columns, "first_q1, ..., first_q95".
std::string visit_quarter_columns() {
  std::string out;
  for (int k = 1; k < kQuartersPerDay; ++k) out += (k > 1 ? ", " : "") + visit_quarter_column(k);
  return out;
}

// For each running column, whether the visit row R ("new", "old", "v") counts in it: 1 when checked in
// during the UTC day's first K quarter-hours, else 0; each inside `agg(...)` when agg is given (the fill's
// sums).
std::string visit_quarter_flags(std::string_view r, std::string_view agg = {}) {
  std::string out;
  for (int k = 1; k < kQuartersPerDay; ++k)
    out += std::string(k > 1 ? ", " : "") + std::string(agg) + (agg.empty() ? "" : "(") + "(" +
           std::string(r) + ".check_in_at % 86400000 < " + std::to_string(k * kQuarterHourMs) + ")" +
           (agg.empty() ? "" : ")");
  return out;
}

// The statement that counts the visit row `new` in _visit_quarter_day, and the one that takes the row `old`
// out of it (one upsert or update of a single row, like _visit_day's).
std::string visit_quarter_add() {
  std::string sql = "INSERT INTO _visit_quarter_day (day, rep_id, outcome, visits, " + visit_quarter_columns() +
                    ") SELECT " VISIT_UTC_KEY("new") ", 1, " + visit_quarter_flags("new") +
                    " WHERE " VISIT_COUNTS("new") " ON CONFLICT (day, rep_id, outcome) DO UPDATE SET visits = "
                    "visits + 1";
  for (int k = 1; k < kQuartersPerDay; ++k) {
    const std::string c = visit_quarter_column(k);
    sql += ", " + c + " = " + c + " + excluded." + c;
  }
  return sql + ";";
}
std::string visit_quarter_remove() {
  std::string sql = "UPDATE _visit_quarter_day SET visits = visits - 1";
  for (int k = 1; k < kQuartersPerDay; ++k) {
    const std::string c = visit_quarter_column(k);
    sql +=
        ", " + c + " = " + c + " - (old.check_in_at % 86400000 < " + std::to_string(k * kQuarterHourMs) + ")";
  }
  return sql + " WHERE " VISIT_COUNTS("old") " AND (day, rep_id, outcome) = (" VISIT_UTC_KEY("old") ");";
}
// The whole table from the visits, in one statement (format 9's migration).
std::string visit_quarter_fill() {
  return "INSERT INTO _visit_quarter_day (day, rep_id, outcome, visits, " + visit_quarter_columns() +
         ") SELECT " VISIT_UTC_KEY("v") ", count(*), " + visit_quarter_flags("v", "sum") +
         " FROM visit v WHERE " VISIT_COUNTS("v") " GROUP BY 1, 2, 3";
}

// The table (kStoreDdl holds fixed text; this one is generated).
std::string visit_quarter_table() {
  std::string sql =
      "CREATE TABLE IF NOT EXISTS _visit_quarter_day (day INTEGER NOT NULL, rep_id TEXT NOT NULL, outcome "
      "TEXT NOT NULL, visits INTEGER NOT NULL";
  for (int k = 1; k < kQuartersPerDay; ++k) sql += ", " + visit_quarter_column(k) + " INTEGER NOT NULL";
  return sql + ", PRIMARY KEY (day, rep_id, outcome)) WITHOUT ROWID";
}

const char* const kStoreDdl[] = {
    "CREATE TABLE IF NOT EXISTS _log (server_seq INTEGER PRIMARY KEY, origin_node INTEGER NOT NULL, "
    "origin_user TEXT NOT NULL, origin_node_seq INTEGER NOT NULL, change_count INTEGER NOT NULL, "
    "blob BLOB NOT NULL, recorded_at_ms INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS _conflicts (id INTEGER PRIMARY KEY, server_seq INTEGER NOT NULL, kind TEXT "
    "NOT "
    "NULL, entity TEXT NOT NULL, record TEXT NOT NULL, field TEXT, winner_user TEXT, loser_user TEXT, "
    "rule TEXT, blob BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_conflicts_seq ON _conflicts (server_seq)",
    "CREATE TABLE IF NOT EXISTS _nodes (node INTEGER PRIMARY KEY, last_node_seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _rejections (node INTEGER NOT NULL, node_seq INTEGER NOT NULL, "
    "user TEXT NOT NULL, reason INTEGER NOT NULL, reason_name TEXT NOT NULL, message TEXT NOT NULL, "
    "recorded_at_ms INTEGER NOT NULL, PRIMARY KEY (node, node_seq))",
    "CREATE TABLE IF NOT EXISTS _state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    // One row per (scope key, log entry) of log_scopes(): a device's catch-up walks its few keys here.
    ("CREATE TABLE IF NOT EXISTS _log_scope (scope TEXT NOT NULL, server_seq INTEGER NOT NULL, "
     "PRIMARY KEY (scope, server_seq)) WITHOUT ROWID"),  // parenthesised: one statement on two lines
    // Scheduling conflicts look up one owner's events by time (events_overlapping).
    "CREATE INDEX IF NOT EXISTS idx_calendar_event_owner_start ON calendar_event (owner_id, start_at)",
    // Reports (format 5). An opportunity's stage history as stints: entered when the stage took its value,
    // left (with the stage it moved to) when it changed again; the open stint has left_at_ms NULL. Times are
    // the stage field's version (the device's clock when the rep moved the deal, not when it synced).
    // Funnel conversion, days in stage, win rate and stalled deals are then ranges of these rows instead of
    // a decode of every log entry (DESIGN.md, "Reports").
    ("CREATE TABLE IF NOT EXISTS _stage_history (id INTEGER PRIMARY KEY, opportunity_id TEXT NOT NULL, "
     "stage TEXT NOT NULL, entered_at_ms INTEGER NOT NULL, left_at_ms INTEGER, next_stage TEXT)"),
    "CREATE INDEX IF NOT EXISTS idx_stage_history_opp ON _stage_history (opportunity_id, left_at_ms, "
    "entered_at_ms)",
    ("CREATE INDEX IF NOT EXISTS idx_stage_history_left ON _stage_history (left_at_ms, entered_at_ms, "
     "opportunity_id, stage, next_stage)"),
    ("CREATE INDEX IF NOT EXISTS idx_stage_history_entered ON _stage_history (stage, entered_at_ms, "
     "opportunity_id)"),
    // The forecast's probability per stage in basis points, set by head office; a stage without a row takes
    // the default of reports.h.
    ("CREATE TABLE IF NOT EXISTS _stage_probability (stage TEXT PRIMARY KEY, probability_bp INTEGER NOT "
     "NULL)"),
    // What the reports filter and group by, as covering indexes: an entity row carries its `_meta` blob
    // (most of its bytes), so a report that reached the rows would read the whole table's pages; these
    // answer from the index alone. An order's date is when it was submitted (approved, for one head office
    // entered as approved), written as the reports write it so the planner matches the expression.
    ("CREATE INDEX IF NOT EXISTS idx_report_order_date ON \"order\" (coalesce(submitted_at, approved_at), "
     "status, _deleted, rep_id, account_id, currency, id, submitted_at, approved_at)"),
    "CREATE INDEX IF NOT EXISTS idx_report_account ON account (id, territory_id, _deleted)",
    ("CREATE INDEX IF NOT EXISTS idx_report_visit_check_in ON visit (check_in_at, _deleted, rep_id, "
     "account_id, outcome)"),
    ("CREATE INDEX IF NOT EXISTS idx_report_visit_account ON visit (account_id, check_in_at, _deleted, "
     "rep_id)"),
    ("CREATE INDEX IF NOT EXISTS idx_report_visit_event ON visit (calendar_event_id, check_in_at, "
     "_deleted)"),
    ("CREATE INDEX IF NOT EXISTS idx_report_opportunity_stage ON opportunity (stage, _deleted, owner_id, "
     "account_id, currency, amount_cents, expected_close)"),
    ("CREATE INDEX IF NOT EXISTS idx_report_opportunity_id ON opportunity (id, _deleted, owner_id, "
     "account_id, currency, amount_cents)"),
    // Schema 3's reports (leads, service_cases, tasks_overdue), covering in the same way: leads by creation
    // time with what they are scoped and counted by; cases by opening time with their account, asset and
    // SLA columns; an asset's warranty beside its id (a case is billable by it); and the open tasks per owner
    // (partial: the report asks for open tasks only, so done and cancelled ones cost the write path nothing).
    // Created on open like the others: a format-7 file gets them without a format change.
    ("CREATE INDEX IF NOT EXISTS idx_report_lead_created ON lead (created_at, _deleted, territory_id, "
     "owner_id, source, status, converted_at)"),
    ("CREATE INDEX IF NOT EXISTS idx_report_case_opened ON service_case (opened_at, _deleted, assignee_id, "
     "account_id, asset_id, priority, status, resolved_at, due_at)"),
    "CREATE INDEX IF NOT EXISTS idx_report_asset ON asset (id, warranty_end_at)",
    ("CREATE INDEX IF NOT EXISTS idx_report_task_open ON task (owner_id, due_at) WHERE status = 'open' AND "
     "_deleted = 0"),
    // One row per order with what revenue is counted by -- its date, status, rep, account, the account's
    // territory and currency -- and its lines' totals (net as FieldClient computes it), kept by triggers
    // on every write of an order, a line or an account's territory, whoever writes (the server, the admin
    // tool). Revenue over a year is then a range of one covering index; summing each order's lines at
    // report time was a seek per order (4.4 s for a year of 1.1M records, PERFORMANCE.md).
    ("CREATE TABLE IF NOT EXISTS _order_fact (order_id TEXT PRIMARY KEY, at_ms INTEGER, status TEXT, "
     "deleted INTEGER NOT NULL, rep_id TEXT, account_id TEXT, territory TEXT, currency TEXT, "
     "quantity INTEGER NOT NULL, net_cents INTEGER NOT NULL) WITHOUT ROWID"),
    ("CREATE INDEX IF NOT EXISTS idx_order_fact_at ON _order_fact (at_ms, status, deleted, territory, "
     "rep_id, account_id, currency, quantity, net_cents, order_id)"),
    "CREATE INDEX IF NOT EXISTS idx_order_fact_account ON _order_fact (account_id)",
    // Format 6: one row per order line with its order's date, status, rep, territory and currency beside
    // its product, quantity and net, so revenue by product is a range of one covering index (it was a seek
    // of each order's lines: 867 ms CPU for a year of the bench store). Its primary key (order, line) is
    // also where an order's totals are summed from.
    ("CREATE TABLE IF NOT EXISTS _order_line_fact (order_id TEXT NOT NULL, line_id TEXT NOT NULL, "
     "product_id TEXT, deleted INTEGER NOT NULL, quantity INTEGER, net_cents INTEGER, at_ms INTEGER, status "
     "TEXT, order_deleted INTEGER NOT NULL, rep_id TEXT, territory TEXT, currency TEXT, PRIMARY KEY "
     "(order_id, line_id)) WITHOUT ROWID"),
    // Every column before order_id is the order's: in this index an order's live lines are consecutive
    // (reports.cc counts orders per product on that).
    ("CREATE INDEX IF NOT EXISTS idx_order_line_fact_at ON _order_line_fact (at_ms, status, order_deleted, "
     "deleted, territory, rep_id, currency, order_id, product_id, quantity, net_cents)"),
    // Format 6: visits per day, rep and outcome. Days are local days of the company's time zone (UTC unless
    // the server is told another: set_rollup_zone); reports in another zone or at another offset read
    // _visit_quarter_day instead (format 9, appointment_fact_ddl), and reports scoped by territory (a visit
    // counts for its account's current territory, which no rollup follows) the visits themselves
    // (reports.cc, activity).
    ("CREATE TABLE IF NOT EXISTS _visit_day (day INTEGER NOT NULL, rep_id TEXT NOT NULL, outcome TEXT NOT "
     "NULL, visits INTEGER NOT NULL, PRIMARY KEY (day, rep_id, outcome)) WITHOUT ROWID"),
    // The company's time zone, whose local days _visit_day counts (set_rollup_zone): its name, and its
    // offsets from UTC as spans (from_ms: the first instant of each; the first row starts at the smallest
    // integer), kept for kZoneTableFromMs..kZoneTableToMs (local_time.h).
    "CREATE TABLE IF NOT EXISTS _report_zone (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _tz_offset (from_ms INTEGER PRIMARY KEY, offset_s INTEGER NOT NULL)",
    kOrderInsertTrigger,
    // Only when what the facts hold changed (notes and delivery dates do not).
    ("CREATE TRIGGER IF NOT EXISTS _fact_order_update AFTER UPDATE ON \"order\" WHEN old.submitted_at IS NOT "
     "new.submitted_at OR old.approved_at IS NOT new.approved_at OR old.status IS NOT new.status OR "
     "old._deleted IS NOT new._deleted OR old.rep_id IS NOT new.rep_id OR old.account_id IS NOT "
     "new.account_id OR old.currency IS NOT new.currency BEGIN " ORDER_FACT_UPSERT " END"),
    // A new line adds to its order's totals (summing the order's line facts again, as an update does, cost
    // two range reads per line on the write path).
    ("CREATE TRIGGER IF NOT EXISTS _fact_line_insert AFTER INSERT ON order_line BEGIN " LINE_FACT_UPSERT
     " UPDATE _order_fact SET quantity = quantity + coalesce(new.quantity, 0), net_cents = net_cents + "
     "coalesce(" LINE_NET("new.") ", 0) WHERE order_id = new.order_id AND new._deleted = 0; END"),
    // The model keeps a line's order_id immutable; another writer moving a line still leaves no fact behind.
    ("CREATE TRIGGER IF NOT EXISTS _fact_line_update AFTER UPDATE ON order_line BEGIN DELETE FROM "
     "_order_line_fact WHERE order_id = old.order_id AND line_id = old.id AND old.order_id IS NOT "
     "new.order_id; UPDATE _order_fact SET " ORDER_FACT_TOTALS(
         "old.order_id") " WHERE order_id = "
                         "old.order_id AND old.order_id IS NOT new.order_id; " LINE_FACT_UPSERT
                         " UPDATE _order_fact SET " ORDER_FACT_TOTALS(
                             "new.order_id") " WHERE order_id = new.order_id; END"),
    ("CREATE TRIGGER IF NOT EXISTS _fact_account_territory AFTER UPDATE OF territory_id ON account WHEN "
     "old.territory_id IS NOT new.territory_id BEGIN UPDATE _order_fact SET territory = new.territory_id "
     "WHERE account_id = new.id; UPDATE _order_line_fact SET territory = new.territory_id WHERE order_id IN "
     "(SELECT order_id FROM _order_fact WHERE account_id = new.id); END"),
};
// The previous formats' triggers that format 6 replaced (migrate_format drops them).
constexpr std::string_view kFormat5Triggers[] = {"_order_fact_insert", "_order_fact_update",
                                                 "_order_fact_line_insert", "_order_fact_line_update",
                                                 "_order_fact_territory"};

// The model's own index on a scope field (schema::create_index_sql names it idx_<entity>_<field>), which the
// (scope field, id) index of scan_index_ddl (store_common.h) serves as well: the store does not create it.
std::string superseded_index_name(const schema::EntityDef& e, const schema::FieldDef& f) {
  return "idx_" + std::string(e.name) + "_" + std::string(f.name);
}

// The model's one-column indexes that a report index (kStoreDdl) starting with the same column replaces: two
// indexes on one field make every insert pay twice.
// (Format 5's idx_report_order_line also replaced idx_order_line_order_id; format 6 reads lines from
// _order_line_fact, so the model's narrower index is back.)
constexpr std::string_view kSupersededByReports[] = {"idx_visit_account_id", "idx_visit_calendar_event_id"};
// Format 5's report indexes that format 6 no longer reads (migrate_format drops them).
constexpr std::string_view kFormat5Indexes[] = {"idx_report_order_line", "idx_report_event_start"};

// Format 6: one row per calendar event with the check-in of the visit that executes it, as plan versus
// execution defines it (reports.h: the earliest visit linked to it, else the owner's earliest at its account
// from kMatchBeforeMs before the start to kMatchAfterMs after it), kept by triggers on events and visits.
// The report is then a range of one covering index; finding each appointment's visit at report time was
// two seeks per appointment (312 ms CPU for a year of the bench store). Changing those constants changes
// what the rows hold: it needs a format bump whose migration recomputes visit_at.
std::string visit_at_sql(std::string_view event, std::string_view account, std::string_view owner,
                         std::string_view start) {
  const std::string e(event), a(account), o(owner), st(start);
  return "coalesce((SELECT min(v.check_in_at) FROM visit v WHERE v.calendar_event_id = " + e +
         " AND v._deleted = 0), (SELECT min(v.check_in_at) FROM visit v WHERE v.account_id = " + a +
         " AND v._deleted = 0 AND v.check_in_at >= " + st + " - " + std::to_string(reports::kMatchBeforeMs) +
         " AND v.check_in_at < " + st + " + " + std::to_string(reports::kMatchAfterMs) +
         " AND v.rep_id = " + o + "))";
}

// The triggers on visits, which count _visit_day at the company's time zone: set_rollup_zone drops them and
// runs appointment_fact_ddl() again, since a format-6 file from before that zone has them with UTC days;
// format 9's migration too (they count _visit_quarter_day since).
constexpr std::string_view kVisitTriggers[] = {"_fact_visit_insert", "_fact_visit_update",
                                               "_fact_visit_delete"};

std::vector<std::string> appointment_fact_ddl() {
  const std::string fact_visit_at = visit_at_sql("_appointment_fact.event_id", "_appointment_fact.account_id",
                                                 "_appointment_fact.owner_id", "_appointment_fact.start_at");
  // The appointments a visit row R ("new" or "old") may be the visit of: the one it links, and its rep's at
  // its account starting within the match window around its check-in.
  auto touch = [&](const std::string& r) {
    return "UPDATE _appointment_fact SET visit_at = " + fact_visit_at + " WHERE event_id = " + r +
           ".calendar_event_id; UPDATE _appointment_fact SET visit_at = " + fact_visit_at +
           " WHERE account_id = " + r + ".account_id AND owner_id = " + r + ".rep_id AND start_at > " + r +
           ".check_in_at - " + std::to_string(reports::kMatchAfterMs) + " AND start_at <= " + r +
           ".check_in_at + " + std::to_string(reports::kMatchBeforeMs) + ";";
  };
  const std::string event_upsert =
      "INSERT INTO _appointment_fact (event_id, start_at, deleted, status, account_id, owner_id, visit_at) "
      "VALUES (new.id, new.start_at, new._deleted, new.status, new.account_id, new.owner_id, " +
      visit_at_sql("new.id", "new.account_id", "new.owner_id", "new.start_at") +
      ") ON CONFLICT (event_id) DO UPDATE SET start_at = excluded.start_at, deleted = excluded.deleted, "
      "status = excluded.status, account_id = excluded.account_id, owner_id = excluded.owner_id, visit_at = "
      "excluded.visit_at;";
  return {
      "CREATE TABLE IF NOT EXISTS _appointment_fact (event_id TEXT PRIMARY KEY, start_at INTEGER, deleted "
      "INTEGER NOT NULL, status TEXT, account_id TEXT, owner_id TEXT, visit_at INTEGER) WITHOUT ROWID",
      "CREATE INDEX IF NOT EXISTS idx_appointment_fact_start ON _appointment_fact (start_at, deleted, status, "
      "account_id, owner_id, visit_at)",
      "CREATE INDEX IF NOT EXISTS idx_appointment_fact_match ON _appointment_fact (account_id, owner_id, "
      "start_at)",
      "CREATE TRIGGER IF NOT EXISTS _fact_event_insert AFTER INSERT ON calendar_event BEGIN " + event_upsert +
          " END",
      "CREATE TRIGGER IF NOT EXISTS _fact_event_update AFTER UPDATE ON calendar_event BEGIN " + event_upsert +
          " END",
      // A visit: its day in _visit_day and its quarter-hour in _visit_quarter_day (format 9; in the same
      // triggers: each trigger firing costs SQLite a frame of its own), and the appointments it may execute.
      visit_quarter_table(),
      "CREATE TRIGGER IF NOT EXISTS _fact_visit_insert AFTER INSERT ON visit BEGIN INSERT INTO _visit_day "
      "(day, rep_id, outcome, visits) SELECT " VISIT_DAY("new") ", 1 WHERE " VISIT_COUNTS("new") " ON CONFLICT "
      "(day, rep_id, outcome) DO UPDATE SET visits = visits + 1; " + visit_quarter_add() + " " + touch("new") +
          " END",
      "CREATE TRIGGER IF NOT EXISTS _fact_visit_update AFTER UPDATE ON visit WHEN old.check_in_at IS NOT "
      "new.check_in_at OR old.rep_id IS NOT new.rep_id OR old.outcome IS NOT new.outcome OR old._deleted IS "
      "NOT new._deleted OR old.account_id IS NOT new.account_id OR old.calendar_event_id IS NOT "
      "new.calendar_event_id BEGIN " VISIT_DAY_REMOVE " INSERT INTO _visit_day (day, rep_id, outcome, "
      "visits) SELECT " VISIT_DAY("new") ", 1 WHERE " VISIT_COUNTS("new") " ON CONFLICT (day, rep_id, "
      "outcome) DO UPDATE SET visits = visits + 1; " + visit_quarter_remove() + " " + visit_quarter_add() + " " +
          touch("old") + " " + touch("new") + " END",
      // (The model never deletes a visit row, it marks it deleted; another writer that does still leaves the
      // rollups and facts right. Format 9.)
      "CREATE TRIGGER IF NOT EXISTS _fact_visit_delete AFTER DELETE ON visit BEGIN " VISIT_DAY_REMOVE " " +
          visit_quarter_remove() + " " + touch("old") + " END",
  };
}

// The model's DDL without the indexes the scan and report indexes supersede.
std::vector<std::string> model_ddl() {
  std::vector<std::string> skip;
  for (const schema::EntityDef& e : schema::entities())
    if (const schema::FieldDef* f = direct_scope_field(e))
      skip.push_back(quoted(superseded_index_name(e, *f)));
  for (std::string_view name : kSupersededByReports) skip.push_back(quoted(name));
  std::vector<std::string> out;
  for (std::string& sql : schema::all_ddl()) {
    const bool superseded = sql.rfind("CREATE INDEX", 0) == 0 &&
                            std::any_of(skip.begin(), skip.end(), [&](const std::string& name) {
                              return sql.find(" " + name + " ON ") != std::string::npos;
                            });
    if (!superseded) out.push_back(std::move(sql));
  }
  return out;
}

std::string_view op_name(ChangeOp op) {
  switch (op) {
    case ChangeOp::kCreate:
      return "create";
    case ChangeOp::kSet:
      return "set";
    case ChangeOp::kAppend:
      return "append";
    case ChangeOp::kDelete:
      return "delete";
  }
  return "?";
}

// ---- Reads shared by the transaction (writer connection) and the read side (reader connection)

Result<std::optional<RecordState>> read_record(Db& db, EntityId entity, const RecordId& id) {
  const schema::EntityDef* e = schema::entity(entity);
  if (e == nullptr) return std::optional<RecordState>();
  Stmt q(db, "SELECT _meta FROM " + quoted(e->name) + " WHERE id = ?");
  q.bind(1, id.to_string());
  if (!q.step()) {
    if (!q.ok()) return q.status();
    return std::optional<RecordState>();
  }
  Result<RecordState> r = codec::decode_record(q.col_blob(0));
  if (!r) return corrupt("record " + id.to_string(), r.status());
  return std::optional<RecordState>(std::move(r.value()));
}

// Runs `q` and decodes every row's column 0 as a record, appending to `out`.
Status read_records(Stmt& q, std::vector<RecordState>& out) {
  while (q.step()) {
    Result<RecordState> r = codec::decode_record(q.col_blob(0));
    if (!r) return corrupt("record", r.status());
    out.push_back(std::move(r.value()));
  }
  return q.status();
}

Result<NodeState> read_node_state(Db& db, NodeId node) {
  Stmt q(db, "SELECT last_node_seq FROM _nodes WHERE node = ?");
  q.bind(1, as_sql(node));
  if (q.step()) return NodeState{node, from_sql(q.col_int(0))};
  if (!q.ok()) return q.status();
  return NodeState{node, 0};
}

Result<std::optional<StoredRejection>> read_rejection(Db& db, NodeId node, uint64_t node_seq) {
  Stmt q(db, "SELECT user, reason, message FROM _rejections WHERE node = ? AND node_seq = ?");
  q.bind(1, as_sql(node)).bind(2, as_sql(node_seq));
  if (!q.step()) {
    if (!q.ok()) return q.status();
    return std::optional<StoredRejection>();
  }
  return std::optional<StoredRejection>(
      StoredRejection{node, node_seq, q.col_text(0), static_cast<ErrorCode>(q.col_int(1)), q.col_text(2)});
}

Result<uint64_t> read_head_seq(Db& db) {
  Stmt q(db, "SELECT coalesce(max(server_seq), 0) FROM _log");
  if (!q.step()) return q.ok() ? Status(ErrorCode::kInternal, "no row") : q.status();
  return from_sql(q.col_int(0));
}

Result<std::vector<RecordState>> read_events(Db& db, const UserId& owner, int64_t start_ms, int64_t end_ms) {
  std::vector<RecordState> out;
  Stmt q(db,
         "SELECT _meta FROM calendar_event WHERE owner_id = ? AND start_at < ? AND end_at > ? AND "
         "_deleted = 0 AND status = 'scheduled' ORDER BY id");
  q.bind(1, owner).bind(2, end_ms).bind(3, start_ms);
  if (Status s = read_records(q, out); !s) return s;
  std::erase_if(out, [&](const RecordState& r) { return !scheduled_overlap(r, owner, start_ms, end_ms); });
  return out;
}

// A record's row: the plain INSERT for a record known to be absent, else the upsert. Both bind the same
// parameters in the same order (id, the fields, _deleted, _meta).
std::string build_save_sql(const schema::EntityDef& e, bool upsert) {
  std::string cols = "id";
  std::string params = "?";
  std::string updates;
  for (const schema::FieldDef& f : e.fields) {
    cols += ", " + quoted(f.name);
    params += ", ?";
    updates += quoted(f.name) + " = excluded." + quoted(f.name) + ", ";
  }
  std::string sql =
      "INSERT INTO " + quoted(e.name) + " (" + cols + ", _deleted, _meta) VALUES (" + params + ", ?, ?)";
  if (upsert)
    sql +=
        " ON CONFLICT (id) DO UPDATE SET " + updates + "_deleted = excluded._deleted, _meta = excluded._meta";
  return sql;
}

// Built once per entity: every record save needs its entity's statement, and building the text (then
// hashing it for the statement cache) was a quarter of a save's instructions.
const std::string& upsert_sql(const schema::EntityDef& e) {
  static const std::map<EntityId, std::string> sql = [] {
    std::map<EntityId, std::string> m;
    for (const schema::EntityDef& def : schema::entities()) m.emplace(def.id, build_save_sql(def, true));
    return m;
  }();
  return sql.at(e.id);
}

// Why a new record gets a plain INSERT: the upsert's DO UPDATE part compiles in the table's UPDATE triggers
// (account's `_fact_account_territory`), which makes SQLite open a statement journal for every execution --
// each b-tree page the statement touches copied into the sub-journal, then truncated -- even when the row is
// new and no trigger fires. A plain INSERT into a table without INSERT triggers needs none: its constraint
// checks all run before its first write. A third of a pushed create's SQLite work (PERFORMANCE.md "Stop 21").
const std::string& insert_sql(const schema::EntityDef& e) {
  static const std::map<EntityId, std::string> sql = [] {
    std::map<EntityId, std::string> m;
    for (const schema::EntityDef& def : schema::entities()) m.emplace(def.id, build_save_sql(def, false));
    return m;
  }();
  return sql.at(e.id);
}

}  // namespace

// ---- Read access
// -----------------------------------------------------------------------------------------------

// The connection one read uses, with the locks it holds for the read. Without group commit: the reader
// connection, which in WAL mode sees every commit and never waits for the writer. With group commit the
// newest commits are SAVEPOINTs released inside the writer's still-open SQLite transaction (the group, see
// SqliteCentralTxn), which only the writer connection sees: a read takes the writer, waiting for an open
// CentralTxn of another thread to end, or uses it directly on the thread whose CentralTxn holds it.
// Lock order: writer_mu_, then reader_mu_.
class SqliteCentralStore::ReadAccess {
 public:
  explicit ReadAccess(SqliteCentralStore& store) {
    const bool group = store.options_.group_commit;
    if (group && store.writer_owner_.load() != std::this_thread::get_id())
      writer_lock_ = std::unique_lock<std::timed_mutex>(store.writer_mu_);
    reader_lock_ = std::unique_lock<std::mutex>(store.reader_mu_);
    db_ = group ? store.writer_.get() : store.reader_.get();
  }
  ~ReadAccess() {
    if (snapshot_) (void)db_->exec("COMMIT");
  }
  ReadAccess(const ReadAccess&) = delete;
  ReadAccess& operator=(const ReadAccess&) = delete;

  Db& db() { return *db_; }
  // Makes the rest of this read one snapshot. A connection inside a transaction already (the open group,
  // or the caller's own CentralTxn) is one, and nobody else writes through it meanwhile.
  Status begin_snapshot() {
    if (snapshot_ || !sqlite3_get_autocommit(db_->raw())) return Status::ok();
    Status s = db_->exec("BEGIN");
    snapshot_ = s.is_ok();
    return s;
  }

 private:
  std::unique_lock<std::timed_mutex> writer_lock_;
  std::unique_lock<std::mutex> reader_lock_;
  Db* db_ = nullptr;
  bool snapshot_ = false;
};

// ---- Transaction
// -----------------------------------------------------------------------------------------------

Status index_log_entry(Db& db, uint64_t seq, const std::vector<ScopeKey>& scopes) {
  for (const ScopeKey& k : scopes) {
    Stmt q(db, "INSERT OR IGNORE INTO _log_scope (scope, server_seq) VALUES (?, ?)");
    q.bind(1, scope_text(k)).bind(2, as_sql(seq));
    if (Status s = q.run(); !s) return s;
  }
  return Status::ok();
}

// Record reads on one connection, for scope resolution inside open().
class DbRecordReader final : public RecordReader {
 public:
  explicit DbRecordReader(Db& db) : db_(db) {}
  std::optional<RecordState> load(EntityId entity, const RecordId& id) override {
    Result<std::optional<RecordState>> r = read_record(db_, entity, id);
    if (!r) {
      if (error_) error_ = r.status();
      return std::nullopt;
    }
    return std::move(r.value());
  }
  Status error_;

 private:
  Db& db_;
};

// The company's time zone of the file (_report_zone), inside open()'s transaction: `zone`, or the file's own
// when unset ("UTC" for a file without one). A zone other than the file's refills _tz_offset, recreates the
// visit triggers and recounts _visit_day from the visits.
Status set_rollup_zone(Db& db, const std::optional<std::string>& zone) {
  std::optional<std::string> current;
  {
    Stmt q(db, "SELECT name FROM _report_zone WHERE id = 1");
    if (q.step()) {
      current = q.col_text(0);
    } else if (!q.ok()) {
      return q.status();
    }
  }
  const std::string want = zone ? *zone : current.value_or("UTC");
  if (current == want) return Status::ok();
  Result<std::vector<ZoneSpan>> spans = zone_spans(want, kZoneTableFromMs, kZoneTableToMs);
  if (!spans) return spans.status();
  if (Status s = db.exec("DELETE FROM _tz_offset"); !s) return s;
  for (const ZoneSpan& span : *spans) {
    Stmt q(db, "INSERT INTO _tz_offset (from_ms, offset_s) VALUES (?, ?)");
    q.bind(1, span.from_ms).bind(2, int64_t{span.offset_s});
    if (Status s = q.run(); !s) return s;
  }
  for (std::string_view name : kVisitTriggers)
    if (Status s = db.exec("DROP TRIGGER IF EXISTS " + quoted(name)); !s) return s;
  for (const std::string& sql : appointment_fact_ddl())
    if (Status s = db.exec(sql); !s) return s;
  const std::string recount[] = {
      "DELETE FROM _visit_day",
      "INSERT INTO _visit_day (day, rep_id, outcome, visits) SELECT " VISIT_DAY("v") ", count(*) FROM visit v "
      "WHERE " VISIT_COUNTS("v") " GROUP BY 1, 2, 3",
  };
  for (const std::string& sql : recount)
    if (Status s = db.exec(sql); !s) return s;
  Stmt q(db, "INSERT OR REPLACE INTO _report_zone (id, name) VALUES (1, ?)");
  q.bind(1, want);
  return q.run();
}

// Whether the column an added_columns_ddl statement (ALTER TABLE "t" ADD COLUMN "c" ...) adds is missing.
Result<bool> column_missing(Db& db, const std::string& alter) {
  const size_t t0 = alter.find('"'), t1 = alter.find('"', t0 + 1);
  const size_t c0 = alter.find('"', t1 + 1), c1 = alter.find('"', c0 + 1);
  Stmt q(db, "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?");
  q.bind(1, alter.substr(t0 + 1, t1 - t0 - 1)).bind(2, alter.substr(c0 + 1, c1 - c0 - 1));
  if (!q.step()) return q.ok() ? Status(ErrorCode::kInternal, "no row") : q.status();
  return q.col_int(0) == 0;
}

// Brings a file of an older format up to kFormat, inside open()'s transaction.
Status migrate_format(Db& db, int64_t from) {
  auto exists = [&](const std::string& sql) -> Result<bool> {
    Stmt q(db, sql);
    if (!q.step()) return q.ok() ? Status(ErrorCode::kInternal, "no row") : q.status();
    return q.col_int(0) > 0;
  };
  if (from < 9) {
    // Format 9's visit triggers in place of the file's (the DDL above kept them: IF NOT EXISTS), and the
    // zone-independent rollup they keep from now on filled from the visits (the bench store's 480,000: its
    // open took 4.2 s with this, PERFORMANCE.md).
    for (std::string_view name : kVisitTriggers)
      if (Status s = db.exec("DROP TRIGGER IF EXISTS " + quoted(name)); !s) return s;
    for (const std::string& sql : appointment_fact_ddl())
      if (Status s = db.exec(sql); !s) return s;
    if (Status s = db.exec("DELETE FROM _visit_quarter_day"); !s) return s;
    if (Status s = db.exec(visit_quarter_fill()); !s) return s;
  }
  if (from < 8) {
    // Format 8's order insert trigger (ORDER_FACT_INSERT) in place of format 6 and 7's: the DDL above kept
    // the file's own (IF NOT EXISTS). The facts it writes are the same.
    if (Status s = db.exec("DROP TRIGGER IF EXISTS _fact_order_insert"); !s) return s;
    if (Status s = db.exec(kOrderInsertTrigger); !s) return s;
  }
  if (from < 6) {
    // Format 6's facts and rollups (kStoreDdl, appointment_fact_ddl) for the rows already there; the
    // triggers keep them from now on. (_visit_day: set_rollup_zone counts it once the file has no zone.)
    // Lines first: a format-4 file's orders get their facts below, from these.
    for (std::string_view name : kFormat5Triggers)
      if (Status s = db.exec("DROP TRIGGER IF EXISTS " + quoted(name)); !s) return s;
    for (std::string_view name : kFormat5Indexes)
      if (Status s = db.exec("DROP INDEX IF EXISTS " + quoted(name)); !s) return s;
    const std::string fill[] = {
        "INSERT OR REPLACE INTO _order_line_fact (order_id, line_id, product_id, deleted, quantity, "
        "net_cents, at_ms, status, order_deleted, rep_id, territory, currency) SELECT l.order_id, l.id, "
        "l.product_id, l._deleted, l.quantity, " LINE_NET("l.") ", x.at_ms, x.status, coalesce(x.deleted, 0), "
        "x.rep_id, x.territory, x.currency FROM order_line l LEFT JOIN _order_fact x ON x.order_id = "
        "l.order_id",
        "UPDATE _order_fact SET " ORDER_FACT_TOTALS("_order_fact.order_id"),
        "INSERT OR REPLACE INTO _appointment_fact (event_id, start_at, deleted, status, account_id, owner_id, "
        "visit_at) SELECT e.id, e.start_at, e._deleted, e.status, e.account_id, e.owner_id, " +
            visit_at_sql("e.id", "e.account_id", "e.owner_id", "e.start_at") + " FROM calendar_event e",
    };
    for (const std::string& sql : fill)
      if (Status s = db.exec(sql); !s) return s;
    if (Status s = db.exec("DELETE FROM _report_zone"); !s) return s;
  }
  if (from < 5) {
    // The triggers keep _order_fact from now on; the orders already there get theirs here.
    const char* const fill[] = {
        "INSERT OR REPLACE INTO _order_fact (order_id, at_ms, status, deleted, rep_id, account_id, "
        "territory, "
        "currency, quantity, net_cents) SELECT o.id, coalesce(o.submitted_at, o.approved_at), o.status, "
        "o._deleted, o.rep_id, o.account_id, a.territory_id, o.currency, 0, 0 FROM \"order\" o LEFT JOIN "
        "account a ON a.id = o.account_id",
        "UPDATE _order_fact SET " ORDER_FACT_TOTALS("_order_fact.order_id"),
        "UPDATE _order_line_fact SET (at_ms, status, order_deleted, rep_id, territory, currency) = (SELECT "
        "x.at_ms, x.status, x.deleted, x.rep_id, x.territory, x.currency FROM _order_fact x WHERE x.order_id "
        "= "
        "_order_line_fact.order_id) WHERE order_id IN (SELECT order_id FROM _order_fact)",
    };
    for (const char* sql : fill)
      if (Status s = db.exec(sql); !s) return s;
    for (std::string_view name : kSupersededByReports)
      if (Status s = db.exec("DROP INDEX IF EXISTS " + quoted(name)); !s) return s;
    // Reports: each existing opportunity's current stage as its open stint, from its stage field's version
    // (earlier moves were not kept before format 5; the log has them, but replaying it here would count
    // moves that lost a merge).
    Stmt q(db, "SELECT _meta FROM opportunity WHERE _deleted = 0");
    std::vector<std::tuple<std::string, std::string, int64_t>> rows;
    while (q.step()) {
      Result<RecordState> r = codec::decode_record(q.col_blob(0));
      if (!r) return corrupt("opportunity", r.status());
      const FieldState* stage = r->field(schema::fields::kOpportunityStage);
      if (stage == nullptr || !(stage->value.kind() == Value::Kind::kText)) continue;
      rows.emplace_back(r->id.to_string(), stage->value.as_text(), hlc_physical_ms(stage->version.hlc));
    }
    if (!q.ok()) return q.status();
    for (const auto& [id, stage, at_ms] : rows) {
      Stmt ins(db, "INSERT INTO _stage_history (opportunity_id, stage, entered_at_ms) VALUES (?, ?, ?)");
      ins.bind(1, id).bind(2, stage).bind(3, at_ms);
      if (Status s = ins.run(); !s) return s;
    }
  }
  if (from < 4) {
    // The (scope field, id) indexes replace the model's one-column indexes on those fields.
    for (const schema::EntityDef& e : schema::entities())
      if (const schema::FieldDef* f = direct_scope_field(e))
        if (Status s = db.exec("DROP INDEX IF EXISTS " + quoted(superseded_index_name(e, *f))); !s) return s;
  }
  if (from < 3) {
    // The log takes the audit's timestamp; the per-change audit rows are then the log's changes.
    Result<bool> has_column =
        exists("SELECT count(*) FROM pragma_table_info('_log') WHERE name = 'recorded_at_ms'");
    if (!has_column) return has_column.status();
    if (!*has_column)
      if (Status s = db.exec("ALTER TABLE _log ADD COLUMN recorded_at_ms INTEGER NOT NULL DEFAULT 0"); !s)
        return s;
    Result<bool> has_audit =
        exists("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_audit'");
    if (!has_audit) return has_audit.status();
    if (*has_audit) {
      if (Status s = db.exec(
              "UPDATE _log SET recorded_at_ms = coalesce((SELECT min(a.recorded_at_ms) FROM _audit a WHERE "
              "a.server_seq = _log.server_seq), 0)");
          !s)
        return s;
      if (Status s = db.exec("DROP TABLE _audit"); !s) return s;
    }
  }
  if (from < 2) {
    // Format 1 had no _log_scope: file every existing entry under the scopes its records have now, which is
    // what pulls judged them by before the index existed.
    DbRecordReader reader(db);
    std::map<uint64_t, std::vector<ConflictRecord>> conflicts;  // by server_seq
    {
      Stmt q(db, "SELECT server_seq, blob FROM _conflicts ORDER BY server_seq, id");
      while (q.step()) {
        Result<ConflictRecord> c = codec::decode_conflict(q.col_blob(1));
        if (!c) return corrupt("conflict", c.status());
        conflicts[from_sql(q.col_int(0))].push_back(std::move(c.value()));
      }
      if (!q.ok()) return q.status();
    }
    Stmt q(db, "SELECT server_seq, blob FROM _log ORDER BY server_seq");
    std::vector<std::pair<uint64_t, std::vector<ScopeKey>>> rows;
    while (q.step()) {
      Result<ServerTxn> t = codec::decode_server_txn(q.col_blob(1));
      if (!t) return corrupt("log entry " + std::to_string(q.col_int(0)), t.status());
      const uint64_t seq = from_sql(q.col_int(0));
      rows.emplace_back(seq, log_scopes(*t, conflicts[seq], reader));
      if (!reader.error_) return reader.error_;
    }
    if (!q.ok()) return q.status();
    for (const auto& [seq, scopes] : rows)
      if (Status s = index_log_entry(db, seq, scopes); !s) return s;
  }
  return Status::ok();
}

class SqliteCentralTxn final : public CentralTxn {
 public:
  explicit SqliteCentralTxn(SqliteCentralStore& store)
      : store_(store), lock_(store.writer_mu_, std::defer_lock) {
    if (store.writer_owner_.load() == std::this_thread::get_id()) {
      // Programmer error in the caller, but a typed one beats a self-deadlock: this transaction never
      // commits.
      error_ = Status(ErrorCode::kInternal, "a second central store transaction opened on the same thread");
      return;
    }
    if (!lock_.try_lock_for(std::chrono::milliseconds(store.options_.busy_timeout_ms))) {
      error_ = Status(ErrorCode::kStorageLocked, "another central store transaction is still open", true);
      return;
    }
    if (Status s = store_.begin_writes(); !s) {
      error_ = s;
      lock_.unlock();
      return;
    }
    store_.writer_owner_.store(std::this_thread::get_id());
    open_ = true;
  }

  ~SqliteCentralTxn() override {
    if (open_) {
      store_.undo_writes(Status(ErrorCode::kInternal, "a central store transaction was dropped"));
      store_.writer_owner_.store(std::thread::id());
    }
  }

  // A failed read is also kept for commit(), so a caller that ignored it cannot commit what it computed.
  Result<std::optional<RecordState>> load(EntityId entity, const RecordId& id) override {
    if (!open_) return store_.load(entity, id);
    Result<std::optional<RecordState>> r = keep(read_record(*store_.writer_, entity, id));
    if (r && !r->has_value()) absent_.insert(RecordKey{entity, id});
    return r;
  }

  // The overlay order of MemoryCentralTxn: committed events first, then the ones this transaction saved,
  // each group by id. The rows already reflect this transaction's writes.
  Result<std::vector<RecordState>> events_overlapping(const UserId& owner, int64_t start_ms,
                                                      int64_t end_ms) override {
    if (!open_) {
      SqliteCentralStore::ReadAccess access(store_);
      return read_events(access.db(), owner, start_ms, end_ms);
    }
    Result<std::vector<RecordState>> out = keep(read_events(*store_.writer_, owner, start_ms, end_ms));
    if (!out) return out;
    std::stable_partition(out->begin(), out->end(), [&](const RecordState& r) {
      return saved_events_.count(RecordKey{r.entity, r.id}) == 0;
    });
    return out;
  }

  void save(const RecordState& record) override {
    if (!usable()) return;
    const schema::EntityDef* e = schema::entity(record.entity);
    if (e == nullptr) {
      fail(Status(ErrorCode::kInvalidArgument, "save of a record of an unknown entity"));
      return;
    }
    if (record.entity == EntityId::kOpportunity && !record.deleted) {
      if (Status s = record_stage(record); !s) return fail(s);
    }
    // A record this transaction read as absent and has not saved since is still absent: nobody else writes
    // while it holds the writer. Anything else (saved before, or never read here) takes the upsert.
    auto absent = absent_.find(RecordKey{record.entity, record.id});
    const bool is_new = absent != absent_.end();
    if (is_new) absent_.erase(absent);
    // Bound without copies: the id, the blob and `record` outlive `q`.
    const std::string id = record.id.to_string();
    const std::vector<uint8_t> meta = codec::encode_record(record);
    Stmt q(*store_.writer_, is_new ? insert_sql(*e) : upsert_sql(*e));
    int i = 1;
    q.bind_borrowed(i++, id);
    for (const schema::FieldDef& f : e->fields) {
      // The raw value, also for tombstones: they keep their scope field, which scope_children follows.
      if (const FieldState* fs = record.field(f.id)) {
        bind_value(q, i++, fs->value, true);
      } else {
        q.bind_null(i++);
      }
    }
    q.bind(i++, int64_t{record.deleted ? 1 : 0});
    q.bind_blob_borrowed(i++, meta);
    if (Status s = q.run(); !s) return fail(s);
    if (record.entity == EntityId::kCalendarEvent) saved_events_.insert(RecordKey{record.entity, record.id});
  }

  Result<NodeState> node_state(NodeId node) override {
    if (!open_) {
      return store_.node_state(node);
    }
    return keep(read_node_state(*store_.writer_, node));
  }

  void set_node_state(const NodeState& state) override {
    if (!usable()) return;
    Stmt q(*store_.writer_, "INSERT OR REPLACE INTO _nodes (node, last_node_seq) VALUES (?, ?)");
    q.bind(1, as_sql(state.node)).bind(2, as_sql(state.last_node_seq));
    if (Status s = q.run(); !s) fail(s);
  }

  void add_rejection(const StoredRejection& r) override {
    if (!usable()) return;
    Stmt q(*store_.writer_,
           "INSERT OR REPLACE INTO _rejections (node, node_seq, user, reason, reason_name, message, "
           "recorded_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
    q.bind(1, as_sql(r.node))
        .bind(2, as_sql(r.node_seq))
        .bind(3, std::string_view(r.user))
        .bind(4, int64_t{static_cast<uint16_t>(r.reason)})
        .bind(5, to_string(r.reason))
        .bind(6, std::string_view(r.message))
        .bind(7, store_.now_ms());
    if (Status s = q.run(); !s) fail(s);
  }

  Result<std::optional<StoredRejection>> rejection(NodeId node, uint64_t node_seq) override {
    if (!open_) {
      SqliteCentralStore::ReadAccess access(store_);
      return read_rejection(access.db(), node, node_seq);
    }
    return keep(read_rejection(*store_.writer_, node, node_seq));
  }

  uint64_t append_log(ServerTxn txn, std::vector<ConflictRecord> conflicts,
                      std::vector<ScopeKey> scopes) override {
    if (!usable()) return 0;  // never committed: commit() reports the error
    Db& db = *store_.writer_;
    // The head is read once per CentralTxn: nobody else writes while it holds the writer (SQLite's write
    // lock, held by the open transaction), so its later entries follow its own last one.
    if (last_seq_ == 0) {
      Result<uint64_t> head = read_head_seq(db);
      if (!head) {
        fail(head.status());
        return 0;
      }
      last_seq_ = *head;
    }
    const uint64_t seq = ++last_seq_;
    txn.server_seq = seq;
    const int64_t now = store_.now_ms();
    {
      const std::vector<uint8_t> blob = codec::encode_server_txn(txn);  // bound without a copy: outlives q
      Stmt q(db,
             "INSERT INTO _log (server_seq, origin_node, origin_user, origin_node_seq, change_count, blob, "
             "recorded_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
      q.bind(1, as_sql(seq))
          .bind(2, as_sql(txn.origin_node))
          .bind_borrowed(3, txn.origin_user)
          .bind(4, as_sql(txn.origin_node_seq))
          .bind(5, static_cast<int64_t>(txn.changes.size()))
          .bind_blob_borrowed(6, blob)
          .bind(7, now);
      if (Status s = q.run(); !s) {
        fail(s);
        return seq;
      }
    }
    if (Status s = index_log_entry(db, seq, scopes); !s) {
      fail(s);
      return seq;
    }
    for (ConflictRecord& c : conflicts) {
      c.server_seq = seq;
      Stmt q(
          db,
          "INSERT INTO _conflicts (server_seq, kind, entity, record, field, winner_user, loser_user, rule, "
          "blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
      q.bind(1, as_sql(seq))
          .bind(2, to_string(c.kind))
          .bind(3, entity_name(c.entity))
          .bind(4, c.record.to_string());
      if (c.field != 0) {
        q.bind(5, field_name(c.entity, c.field));
      } else {
        q.bind_null(5);
      }
      q.bind(6, std::string_view(c.winner.user))
          .bind(7, std::string_view(c.loser.user))
          .bind(8, std::string_view(c.rule))
          .bind_blob(9, codec::encode_conflict(c));
      if (Status s = q.run(); !s) {
        fail(s);
        return seq;
      }
    }
    return seq;
  }

  void set_clock(Hlc hlc) override {
    if (!usable()) return;
    Stmt q(*store_.writer_,
           "INSERT INTO _state (key, value) VALUES ('clock', ?) ON CONFLICT (key) DO UPDATE SET value = "
           "max(value, excluded.value)");
    q.bind(1, as_sql(hlc));
    if (Status s = q.run(); !s) fail(s);
  }

  Status commit() override {
    if (!open_) return error_;  // begin failed (kept its error), or committed already (see below)
    Status result = error_;
    if (result) result = store_.end_writes();
    if (!result) store_.undo_writes(result);
    open_ = false;
    store_.writer_owner_.store(std::thread::id());
    lock_.unlock();
    error_ = result ? Status(ErrorCode::kInternal, "central store transaction committed twice") : result;
    return result;
  }

 private:
  // Before an opportunity's row is overwritten: if its stage changes (or it is new), the open stint ends and
  // a new one begins at the stage field's version time. A move stamped before the stint it ends began (a
  // device whose clock was behind) ends it at its own start: no stint lasts less than nothing.
  Status record_stage(const RecordState& record) {
    const FieldState* stage = record.field(schema::fields::kOpportunityStage);
    if (stage == nullptr || !(stage->value.kind() == Value::Kind::kText)) return Status::ok();
    const std::string id = record.id.to_string();
    const int64_t at_ms = hlc_physical_ms(stage->version.hlc);
    Db& db = *store_.writer_;
    {
      Stmt q(db, "SELECT stage FROM opportunity WHERE id = ? AND _deleted = 0");
      q.bind(1, id);
      if (q.step() && q.col_text(0) == stage->value.as_text()) return Status::ok();
      if (!q.ok()) return q.status();
    }
    {
      Stmt q(db,
             "UPDATE _stage_history SET left_at_ms = max(?, entered_at_ms), next_stage = ? WHERE "
             "opportunity_id = ? AND left_at_ms IS NULL");
      q.bind(1, at_ms).bind(2, std::string_view(stage->value.as_text())).bind(3, id);
      if (Status s = q.run(); !s) return s;
    }
    Stmt q(db, "INSERT INTO _stage_history (opportunity_id, stage, entered_at_ms) VALUES (?, ?, ?)");
    q.bind(1, id).bind(2, std::string_view(stage->value.as_text())).bind(3, at_ms);
    return q.run();
  }

  bool usable() const { return open_ && error_.is_ok(); }
  void fail(const Status& s) {
    if (error_) error_ = s;
  }
  template <typename T>
  Result<T> keep(Result<T> r) {
    if (!r) fail(r.status());
    return r;
  }

  SqliteCentralStore& store_;
  std::unique_lock<std::timed_mutex> lock_;
  bool open_ = false;
  Status error_;
  std::set<RecordKey> saved_events_;  // calendar events saved here (ordering of events_overlapping)
  std::set<RecordKey> absent_;        // records read here as absent and not saved since (save: plain INSERT)
  uint64_t last_seq_ = 0;             // the last log position append_log gave (0: none yet)
};

// ---- Store
// -----------------------------------------------------------------------------------------------------

SqliteCentralStore::SqliteCentralStore(Options options) : options_(std::move(options)) {}
SqliteCentralStore::~SqliteCentralStore() {
  if (checkpoint_thread_.joinable()) {
    {
      std::lock_guard lock(checkpoint_mu_);
      stopping_ = true;
    }
    checkpoint_cv_.notify_all();
    checkpoint_thread_.join();
  }
  if (writer_) {
    std::lock_guard lock(writer_mu_);
    (void)end_group();  // what a clean shutdown committed stays committed (not necessarily synced)
  }
}

// Group commit: one SQLite transaction (BEGIN IMMEDIATE, opened by the first CentralTxn after the previous
// group ended) holds every CentralTxn until sync() or the checkpoint thread commits it, each CentralTxn a
// SAVEPOINT inside it. The WAL then gets each page the group dirtied once, instead of once per CentralTxn:
// the log tail, the indexes and _nodes are the same few pages for every push.
Status SqliteCentralStore::begin_writes() {
  Db& w = *writer_;
  if (!options_.group_commit) return w.exec("BEGIN IMMEDIATE");
  if (!group_lost_) return group_lost_;
  if (!group_open_) {
    if (Status s = w.exec("BEGIN IMMEDIATE"); !s) return s;
    group_open_ = true;
  }
  // Prepared once and cached, like every statement of a push: exec() would parse the text at every
  // CentralTxn.
  return Stmt(w, "SAVEPOINT central_txn").run();
}

Status SqliteCentralStore::end_writes() {
  if (!options_.group_commit) return writer_->exec("COMMIT");
  return Stmt(*writer_, "RELEASE central_txn").run();
}

// Undoes the open CentralTxn's writes: ROLLBACK, or in a group ROLLBACK TO its savepoint, which keeps the
// group's earlier commits. On some errors (I/O, disk full, out of memory) SQLite rolls back the whole
// transaction by itself: those earlier commits are then gone although their commit() returned ok. The store
// refuses every later write and sync() from then on, so nothing that showed them is ever acknowledged
// (SyncService stops the server on a failed sync).
void SqliteCentralStore::undo_writes(const Status& why) {
  Db& w = *writer_;
  if (!options_.group_commit) {
    (void)w.exec("ROLLBACK");
    return;
  }
  if (!sqlite3_get_autocommit(w.raw())) {
    (void)w.exec("ROLLBACK TO central_txn");
    (void)w.exec("RELEASE central_txn");
  }
  if (group_open_ && sqlite3_get_autocommit(w.raw())) lose_group(why);
}

void SqliteCentralStore::lose_group(const Status& why) {
  group_open_ = false;
  if (group_lost_)
    group_lost_ = Status(ErrorCode::kStorageIo,
                         "the central store lost its uncommitted group of transactions (" + why.to_string() +
                             "); restart the server: devices re-send what was not acknowledged");
}

Status SqliteCentralStore::end_group() {
  if (!group_lost_) return group_lost_;
  if (!group_open_) return Status::ok();
  Status s = writer_->exec("COMMIT");
  if (!s) {
    if (!sqlite3_get_autocommit(writer_->raw())) (void)writer_->exec("ROLLBACK");
    lose_group(s);
    return group_lost_;
  }
  group_open_ = false;
  return Status::ok();
}

void SqliteCentralStore::checkpoint_loop() {
  int64_t page_bytes = 4096;
  {
    Stmt q(*checkpointer_, "PRAGMA page_size");
    if (q.step()) page_bytes = q.col_int(0) + 24;  // a WAL frame: the page and its header
  }
  int64_t wal_bytes = 0;  // as of the last checkpoint
  std::unique_lock lock(checkpoint_mu_);
  while (!checkpoint_cv_.wait_for(lock, std::chrono::milliseconds(options_.checkpoint_interval_ms),
                                  [this] { return stopping_; })) {
    lock.unlock();
    // SQLite starts the WAL over only when a write transaction begins with every frame copied back, which
    // under load never happens by itself: the next group begins right after the last one commits, before
    // this thread copies it (the load benchmark grew an 880 MB WAL in 20 s, and appending to a growing file
    // costs the kernel more than overwriting). So once the WAL is past wal_restart_bytes, one checkpoint
    // runs with no group open: the writer lock is held for it (copying the last interval's frames), and the
    // next group rewinds the WAL, which journal_size_limit then truncates.
    const bool restart = wal_bytes > options_.wal_restart_bytes;
    std::unique_lock writer(writer_mu_);
    // A group that no sync() ended (writes without a message to hold, e.g. apply_local with nobody
    // connected) becomes visible to other processes and frees SQLite's write lock for them.
    (void)end_group();  // a failure is kept in group_lost_ for the next sync()
    if (!restart) writer.unlock();
    // PASSIVE: copies what no reader still needs, never waits for readers or the writer. It syncs the WAL
    // before copying and the database file after, like SQLite's own automatic checkpoint. SQLITE_BUSY (an
    // admin process checkpointing the same file) just means next time.
    int frames = 0;
    if (sqlite3_wal_checkpoint_v2(checkpointer_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames,
                                  nullptr) == SQLITE_OK)
      wal_bytes = static_cast<int64_t>(frames) * page_bytes;
    if (writer.owns_lock()) writer.unlock();
    lock.lock();
  }
}

int64_t SqliteCentralStore::now_ms() const {
  return options_.now_ms ? options_.now_ms() : wall_ms();
}

Result<std::unique_ptr<SqliteCentralStore>> SqliteCentralStore::open(const std::string& path,
                                                                     Options options) {
  std::unique_ptr<SqliteCentralStore> store(new SqliteCentralStore(std::move(options)));
  store->path_ = path;
  const int timeout = store->options_.busy_timeout_ms;
  Result<std::unique_ptr<Db>> writer =
      Db::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, timeout);
  if (!writer) return writer.status();
  store->writer_ = std::move(writer.value());
  Db& w = *store->writer_;
  {
    Stmt q(w, "PRAGMA journal_mode = WAL");
    if (!q.step())
      return q.ok() ? Status(ErrorCode::kStorageIo, "journal_mode returned nothing") : q.status();
    if (q.col_text(0) != "wal")
      return Status(ErrorCode::kStorageIo, "cannot switch " + path + " to WAL mode (" + q.col_text(0) + ")");
  }
  // FULL: the WAL is synced at every commit, so an acknowledged write survives a power loss, not only a
  // crash.
  // NORMAL (group commit): the WAL is synced by sync(), which the caller runs before acknowledging anything.
  if (Status s =
          w.exec(store->options_.group_commit ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL");
      !s)
    return s;
  if (store->options_.group_commit) {
    if (Status s = w.exec("PRAGMA wal_autocheckpoint = 0"); !s) return s;  // checkpoint_loop does it
    // The WAL file shrinks back to this when it starts over (checkpoint_loop).
    if (Status s = w.exec("PRAGMA journal_size_limit = " + std::to_string(store->options_.wal_restart_bytes));
        !s)
      return s;
  }
  if (Status s = w.exec("BEGIN IMMEDIATE"); !s) return s;
  auto fail = [&](Status s) {
    (void)w.exec("ROLLBACK");
    return s;
  };
  // The format is read before the model's DDL runs: an older file's tables lack columns that DDL indexes.
  int64_t format = kFormat;  // a new file
  {
    Stmt has_state(w, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '_state'");
    if (!has_state.step())
      return fail(has_state.ok() ? Status(ErrorCode::kInternal, "no row") : has_state.status());
    if (has_state.col_int(0) > 0) {
      Stmt q(w, "SELECT value FROM _state WHERE key = 'format'");
      if (q.step()) {
        format = q.col_int(0);
        if (format > kFormat)
          return fail(Status(ErrorCode::kSchemaTooNew, path + " was written by a newer fieldsync (format " +
                                                           std::to_string(format) + ")"));
      } else if (!q.ok()) {
        return fail(q.status());
      }
    }
  }
  if (format < 7)
    for (const std::string& sql : schema::added_columns_ddl(kSchemaOfFormat6)) {
      // A file whose tables were made by newer DDL than its format says (tests build old formats so)
      // already has the column.
      Result<bool> missing = column_missing(w, sql);
      if (!missing) return fail(missing.status());
      if (*missing)
        if (Status s = w.exec(sql); !s) return fail(s);
    }
  for (const std::string& sql : model_ddl())
    if (Status s = w.exec(sql); !s) return fail(s);
  for (const char* sql : kStoreDdl)
    if (Status s = w.exec(sql); !s) return fail(s);
  for (const std::string& sql : appointment_fact_ddl())
    if (Status s = w.exec(sql); !s) return fail(s);
  for (const std::string& sql : scan_index_ddl())
    if (Status s = w.exec(sql); !s) return fail(s);
  if (format < kFormat)
    if (Status s = migrate_format(w, format); !s) return fail(s);
  if (Status s = set_rollup_zone(w, store->options_.time_zone); !s) return fail(s);
  if (Status s = w.exec("INSERT OR REPLACE INTO _state (key, value) VALUES ('format', " +
                        std::to_string(kFormat) + ")");
      !s)
    return fail(s);
  if (Status s = w.exec("COMMIT"); !s) return fail(s);
  // Each CentralTxn is a SAVEPOINT in the group, so every page it changes is first copied to the
  // sub-journal. SQLite keeps that journal in memory only up to 64 KiB and then moves it to a temp file for
  // the rest of the group: that was 2 pwrite()s per page of every later transaction, more than half of the
  // apply path's system calls (BM_CentralApply/changes:8). In memory it holds the pages one CentralTxn (or
  // one of its statements) changed. Set only now: a format migration above may rewrite a whole table in one
  // statement, whose journal must be free to go to disk. (Sorts still spill to temp files: temp_store does
  // not apply to them.)
  if (store->options_.group_commit)
    if (Status s = w.exec("PRAGMA temp_store = MEMORY"); !s) return s;

  if (!store->options_.group_commit) {  // with group commit every read uses the writer (ReadAccess)
    Result<std::unique_ptr<Db>> reader = Db::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, timeout);
    if (!reader) return reader.status();
    store->reader_ = std::move(reader.value());
    if (Status s = store->reader_->exec("PRAGMA query_only = 1"); !s) return s;
  } else {
    Result<std::unique_ptr<Db>> ck = Db::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, timeout);
    if (!ck) return ck.status();
    store->checkpointer_ = std::move(ck.value());
    // A connection finds out the file is in WAL mode on its first read; before that a checkpoint does
    // nothing.
    if (Status s = store->checkpointer_->exec("SELECT count(*) FROM sqlite_master"); !s) return s;
    // sync() flushes the WAL through the writer's own handle of it: SQLite's VFS, like every other sync of
    // the store's files (a fault-injecting VFS in tests/powerloss sees it, and so would an encrypting or
    // replicating one). The WAL is open by now (the schema transaction above wrote it) and that handle lives
    // as long as the writer connection. The first sync here, still on one thread, also syncs the directory
    // of a WAL just created (SQLite's unix VFS does that once per new journal file and then clears a flag in
    // the handle: done now, later syncs from the flusher thread read that handle's state only).
    sqlite3_file* wal = nullptr;
    if (sqlite3_file_control(w.raw(), "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) != SQLITE_OK || !wal ||
        !wal->pMethods)
      return Status(ErrorCode::kStorageIo, "no WAL handle for " + path);
    if (int rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL); rc != SQLITE_OK)
      return sqlite::status_from(rc, "syncing the WAL of " + path, nullptr);
    store->wal_file_ = wal;
    store->checkpoint_thread_ = std::thread([s = store.get()] { s->checkpoint_loop(); });
  }
  return store;
}

std::unique_ptr<CentralTxn> SqliteCentralStore::begin() {
  return std::make_unique<SqliteCentralTxn>(*this);
}

Result<uint64_t> SqliteCentralStore::head_seq() {
  ReadAccess access(*this);
  return read_head_seq(access.db());
}

Result<std::vector<ServerTxn>> SqliteCentralStore::read_log(uint64_t after, size_t max_changes) {
  ReadAccess access(*this);
  std::vector<ServerTxn> out;
  size_t changes = 0;
  Stmt q(access.db(), "SELECT server_seq, blob FROM _log WHERE server_seq > ? ORDER BY server_seq");
  q.bind(1, as_sql(after));
  while (q.step()) {
    Result<ServerTxn> t = codec::decode_server_txn(q.col_blob(1));
    if (!t || t->server_seq != from_sql(q.col_int(0)))
      return corrupt("log entry " + std::to_string(q.col_int(0)),
                     t ? Status(ErrorCode::kStorageCorrupt, "sequence mismatch") : t.status());
    changes += t->changes.size();
    out.push_back(std::move(t.value()));
    if (changes >= max_changes) break;
  }
  if (!q.ok()) return q.status();
  return out;
}

Result<CentralStore::LogSlice> SqliteCentralStore::read_log_for(uint64_t after, uint64_t up_to,
                                                                const std::vector<ScopeKey>& scopes,
                                                                size_t max_changes) {
  // Each key's entries come from its own index range, a chunk at a time. Merged, they are complete up to the
  // lowest last entry among the keys whose chunk came back full; past that another key may still hold one.
  constexpr int64_t kChunk = 256;
  ReadAccess access(*this);
  LogSlice out;
  out.searched_to = after;
  size_t changes = 0;
  auto failed = [](const Status& s) { return Result<LogSlice>(s); };
  if (Status s = access.begin_snapshot(); !s) return failed(s);
  std::vector<std::string> keys;
  for (const ScopeKey& k : scopes) keys.push_back(scope_text(k));
  uint64_t pos = after;
  while (pos < up_to) {
    uint64_t complete_to = up_to;
    std::vector<uint64_t> seqs;
    for (const std::string& key : keys) {
      Stmt q(access.db(),
             "SELECT server_seq FROM _log_scope WHERE scope = ? AND server_seq > ? AND server_seq <= ? "
             "ORDER BY server_seq LIMIT ?");
      q.bind(1, std::string_view(key)).bind(2, as_sql(pos)).bind(3, as_sql(up_to)).bind(4, kChunk);
      int64_t n = 0;
      uint64_t last = 0;
      while (q.step()) {
        last = from_sql(q.col_int(0));
        seqs.push_back(last);
        ++n;
      }
      if (!q.ok()) return failed(q.status());
      if (n == kChunk) complete_to = std::min(complete_to, last);
    }
    std::sort(seqs.begin(), seqs.end());
    seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
    for (uint64_t seq : seqs) {
      if (seq > complete_to) break;
      Stmt q(access.db(), "SELECT blob FROM _log WHERE server_seq = ?");
      q.bind(1, as_sql(seq));
      if (!q.step())
        return failed(
            q.ok() ? corrupt("log index", Status(ErrorCode::kStorageCorrupt,
                                                 "entry " + std::to_string(seq) + " is indexed but missing"))
                   : q.status());
      Result<ServerTxn> t = codec::decode_server_txn(q.col_blob(0));
      if (!t || t->server_seq != seq)
        return failed(corrupt("log entry " + std::to_string(seq),
                              t ? Status(ErrorCode::kStorageCorrupt, "sequence mismatch") : t.status()));
      changes += t->changes.size();
      out.txns.push_back(std::move(t.value()));
      out.searched_to = seq;
      if (changes >= max_changes) return out;
    }
    pos = complete_to;
  }
  out.searched_to = std::max(after, up_to);
  return out;
}

Result<std::vector<ConflictRecord>> SqliteCentralStore::read_conflicts(uint64_t after, uint64_t up_to) {
  ReadAccess access(*this);
  std::vector<ConflictRecord> out;
  Stmt q(access.db(),
         "SELECT blob FROM _conflicts WHERE server_seq > ? AND server_seq <= ? ORDER BY server_seq, id");
  q.bind(1, as_sql(after)).bind(2, as_sql(up_to));
  while (q.step()) {
    Result<ConflictRecord> c = codec::decode_conflict(q.col_blob(0));
    if (!c) return corrupt("conflict", c.status());
    out.push_back(std::move(c.value()));
  }
  if (!q.ok()) return q.status();
  return out;
}

Result<std::optional<RecordState>> SqliteCentralStore::load(EntityId entity, const RecordId& id) {
  ReadAccess access(*this);
  return read_record(access.db(), entity, id);
}

Result<std::vector<RecordState>> SqliteCentralStore::scan_where(RecordKey after, size_t max_records,
                                                                const TableFilter& where) {
  ReadAccess access(*this);
  Db& db = access.db();
  std::vector<RecordState> out;
  Status result = access.begin_snapshot();  // every table from the same snapshot
  for (const schema::EntityDef& e : schema::entities()) {
    if (!result || out.size() >= max_records) break;
    if (e.id < after.entity) continue;
    const bool same = e.id == after.entity;
    std::vector<std::string> params;
    const std::string condition = where(e, params);
    if (condition == "0") continue;
    std::string clauses;
    if (!condition.empty()) clauses = " WHERE (" + condition + ")";
    if (same) clauses += condition.empty() ? " WHERE id > ?" : " AND id > ?";
    Stmt q(db, "SELECT _meta FROM " + quoted(e.name) + clauses + " ORDER BY id LIMIT ?");
    int i = 1;
    for (const std::string& p : params) q.bind(i++, std::string_view(p));
    if (same) q.bind(i++, after.id.to_string());
    q.bind(i, static_cast<int64_t>(max_records - out.size()));
    result = read_records(q, out);
  }
  if (!result) return result;
  return out;
}

Result<std::vector<RecordState>> SqliteCentralStore::scan(RecordKey after, size_t max_records) {
  return scan_where(after, max_records,
                    [](const schema::EntityDef&, std::vector<std::string>&) { return std::string(); });
}

namespace {

// The SQL condition on entity `e`'s projection columns under which a row's scope may be one of the
// territories or owners listed (parameters appended to `params`), following parent links as resolve_scope
// does. Tombstones keep their scope field, so they match too.
std::string scope_condition(const schema::EntityDef& e, const std::vector<std::string>& territories,
                            const std::vector<std::string>& owners, bool global,
                            std::vector<std::string>& params, int depth) {
  auto in_list = [&](const std::string& column, const std::vector<std::string>& values) {
    if (values.empty()) return std::string("0");
    std::string sql = quoted(column) + " IN (";
    for (size_t i = 0; i < values.size(); ++i) {
      sql += i ? ", ?" : "?";
      params.push_back(values[i]);
    }
    return sql + ")";
  };
  const schema::FieldDef* field = e.field(e.scope.field);
  switch (e.scope.kind) {
    case schema::ScopeKind::kGlobal:
      return global ? "1" : "0";
    case schema::ScopeKind::kTerritory:
      return field ? in_list(std::string(field->name), territories) : "0";
    case schema::ScopeKind::kOwner:
      return field ? in_list(std::string(field->name), owners) : "0";
    case schema::ScopeKind::kParent: {
      const schema::EntityDef* parent = schema::entity(e.scope.parent);
      if (field == nullptr || parent == nullptr || depth >= kMaxScopeHops) return "0";  // as resolve_scope
      return quoted(field->name) + " IN (SELECT id FROM " + quoted(parent->name) + " WHERE " +
             scope_condition(*parent, territories, owners, global, params, depth + 1) + ")";
    }
  }
  return "0";
}

}  // namespace

Result<std::vector<RecordState>> SqliteCentralStore::scan_in_scopes(const std::vector<ScopeKey>& scopes,
                                                                    RecordKey after, size_t max_records) {
  return scan_scopes(scopes, after, max_records, nullptr);
}

Result<std::vector<std::string>> SqliteCentralStore::scan_in_scopes_plan(
    const std::vector<ScopeKey>& scopes) {
  std::vector<std::string> plan;
  Result<std::vector<RecordState>> r = scan_scopes(scopes, RecordKey{}, 1, &plan);
  if (!r) return r.status();
  return plan;
}

Result<std::vector<std::vector<uint8_t>>> SqliteCentralStore::scan_stored_in_scopes(
    const std::vector<ScopeKey>& scopes, RecordKey after, size_t max_records) {
  std::vector<std::vector<uint8_t>> out;
  Result<std::vector<RecordState>> r = scan_scopes(scopes, after, max_records, nullptr, &out);
  if (!r) return r.status();
  return out;
}

Result<std::vector<RecordState>> SqliteCentralStore::scan_scopes(const std::vector<ScopeKey>& scopes,
                                                                 RecordKey after, size_t max_records,
                                                                 std::vector<std::string>* plan,
                                                                 std::vector<std::vector<uint8_t>>* stored) {
  // With `plan`: every statement is run as EXPLAIN QUERY PLAN and its steps collected (column 3: detail).
  auto explain = [&](const schema::EntityDef& e, Stmt& q) -> Status {
    while (q.step()) plan->push_back(std::string(e.name) + ": " + q.col_text(3));
    return q.status();
  };
  const std::string prefix = plan ? "EXPLAIN QUERY PLAN " : "";
  std::vector<std::string> territories, owners;
  bool global = false;
  for (const ScopeKey& k : scopes) {
    if (k.kind == ScopeKey::Kind::kTerritory) territories.push_back(k.value);
    if (k.kind == ScopeKey::Kind::kOwner) owners.push_back(k.value);
    global |= k.kind == ScopeKey::Kind::kGlobal;
  }
  ReadAccess access(*this);
  Db& db = access.db();
  std::vector<RecordState> out;
  auto have = [&] { return out.size() + (stored ? stored->size() : 0); };
  // A row's record: its bytes as stored, or decoded.
  auto take = [&](std::span<const uint8_t> meta, auto&& id) -> Status {  // id(): for an error only
    if (stored) {
      stored->emplace_back(meta.begin(), meta.end());
      return Status::ok();
    }
    Result<RecordState> r = codec::decode_record(meta);
    if (!r) return corrupt("record " + id(), r.status());
    out.push_back(std::move(r.value()));
    return Status::ok();
  };
  if (Status s = access.begin_snapshot(); !s) return s;
  for (const schema::EntityDef& e : schema::entities()) {
    if (have() >= max_records && !plan) break;
    if (e.id < after.entity) continue;
    const size_t want = max_records - std::min(have(), max_records);
    const std::string after_id = e.id == after.entity ? after.id.to_string() : std::string();
    if (const schema::FieldDef* f = direct_scope_field(e)) {
      // One keyset walk per scope key, each a range of idx_scan_<entity> in id order, merged: a page costs
      // its records times the keys, never the territory. ("" sorts before every id.)
      const std::vector<std::string>& keys =
          e.scope.kind == schema::ScopeKind::kTerritory ? territories : owners;
      std::vector<std::pair<std::string, std::vector<uint8_t>>> rows;
      const std::string sql = prefix + "SELECT id, _meta FROM " + quoted(e.name) + " WHERE " +
                              quoted(f->name) + " = ? AND id > ? ORDER BY id LIMIT ?";
      for (const std::string& key : keys) {
        Stmt q(db, sql);
        q.bind(1, std::string_view(key));
        q.bind(2, std::string_view(after_id));
        q.bind(3, static_cast<int64_t>(want));
        if (plan) {
          if (Status s = explain(e, q); !s) return s;
          continue;
        }
        if (keys.size() == 1) {  // already in id order: no copy of each row to merge
          while (q.step())
            if (Status s = take(q.col_blob(1), [&] { return q.col_text(0); }); !s) return s;
          if (!q.ok()) return q.status();
          continue;
        }
        while (q.step()) {
          std::span<const uint8_t> meta = q.col_blob(1);
          rows.emplace_back(q.col_text(0), std::vector<uint8_t>(meta.begin(), meta.end()));
        }
        if (!q.ok()) return q.status();
      }
      std::sort(rows.begin(), rows.end());
      if (rows.size() > want) rows.resize(want);
      for (const auto& row : rows)  // (not a structured binding: clang 14 cannot capture one)
        if (Status s = take(row.second, [&] { return row.first; }); !s) return s;
      continue;
    }
    // Global and parent-scoped entities: in id order (the primary key's index), the scope checked per row.
    // The unary + keeps SQLite from serving the parent condition from its index and sorting the whole scope
    // for every page; the walk costs the rows it passes (for a child entity, its parents' share of the
    // store).
    std::vector<std::string> params;
    const std::string condition = scope_condition(e, territories, owners, global, params, 0);
    if (condition == "0") continue;
    std::string sql = prefix + "SELECT _meta FROM " + quoted(e.name) + " WHERE id > ?";
    if (e.scope.kind == schema::ScopeKind::kParent)
      sql += " AND +" + condition;
    else if (condition != "1")
      sql += " AND (" + condition + ")";
    Stmt q(db, sql + " ORDER BY id LIMIT ?");
    int i = 1;
    q.bind(i++, std::string_view(after_id));
    for (const std::string& p : params) q.bind(i++, std::string_view(p));
    q.bind(i, static_cast<int64_t>(want));
    if (plan) {
      if (Status s = explain(e, q); !s) return s;
      continue;
    }
    while (q.step())
      if (Status s = take(q.col_blob(0), [&] { return "of " + std::string(e.name); }); !s) return s;
    if (!q.ok()) return q.status();
  }
  return out;
}

Result<uint64_t> SqliteCentralStore::count_in_scopes(const std::optional<std::vector<ScopeKey>>& scopes) {
  std::vector<std::string> territories, owners;
  bool global = !scopes;
  if (scopes) {
    for (const ScopeKey& k : *scopes) {
      if (k.kind == ScopeKey::Kind::kTerritory) territories.push_back(k.value);
      if (k.kind == ScopeKey::Kind::kOwner) owners.push_back(k.value);
      global |= k.kind == ScopeKey::Kind::kGlobal;
    }
  }
  ReadAccess access(*this);
  if (Status s = access.begin_snapshot(); !s) return s;
  uint64_t n = 0;
  for (const schema::EntityDef& e : schema::entities()) {
    // Index counts (the scope field's index, a parent's id): no record is read or decoded.
    std::vector<std::string> params;
    const std::string condition =
        scopes ? scope_condition(e, territories, owners, global, params, 0) : std::string("1");
    if (condition == "0") continue;
    if (e.scope.kind == schema::ScopeKind::kParent) {
      // SQLite answers a parent condition by first listing every in-scope parent id in a temporary b-tree
      // (a territory of 100k accounts: 100k inserts per child entity, as much as all of the bootstrap's
      // page reads together; BM_ServerBootstrap): not for a table with nothing in it.
      Stmt any(access.db(), "SELECT 1 FROM " + quoted(e.name) + " LIMIT 1");
      const bool rows = any.step();
      if (!any.ok()) return any.status();
      if (!rows) continue;
    }
    Stmt q(access.db(), "SELECT count(*) FROM " + quoted(e.name) + " WHERE " + condition);
    int i = 1;
    for (const std::string& p : params) q.bind(i++, std::string_view(p));
    if (!q.step()) return q.ok() ? Status(ErrorCode::kInternal, "count") : q.status();
    n += from_sql(q.col_int(0));
  }
  return n;
}

Result<std::vector<RecordKey>> SqliteCentralStore::keys_created_by(NodeId node) {
  ReadAccess access(*this);
  if (Status s = access.begin_snapshot(); !s) return s;
  std::vector<RecordKey> out;
  Stmt q(access.db(), "SELECT server_seq, blob FROM _log WHERE origin_node = ? ORDER BY server_seq");
  q.bind(1, as_sql(node));
  while (q.step()) {
    Result<ServerTxn> t = codec::decode_server_txn(q.col_blob(1));
    if (!t) return corrupt("log entry " + std::to_string(q.col_int(0)), t.status());
    for (const Change& c : t->changes)
      if (c.op == ChangeOp::kCreate) out.push_back(RecordKey{c.entity, c.record});
  }
  if (!q.ok()) return q.status();
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<uint64_t> SqliteCentralStore::record_count() {
  ReadAccess access(*this);
  uint64_t n = 0;
  if (Status s = access.begin_snapshot(); !s) return s;
  for (const schema::EntityDef& e : schema::entities()) {
    Stmt q(access.db(), "SELECT count(*) FROM " + quoted(e.name) + " WHERE _deleted = 0");
    if (!q.step()) return q.ok() ? Status(ErrorCode::kInternal, "count") : q.status();
    n += from_sql(q.col_int(0));
  }
  return n;
}

Result<std::vector<RecordState>> SqliteCentralStore::scope_children(EntityId parent_entity,
                                                                    const RecordId& parent) {
  ReadAccess access(*this);
  std::vector<RecordState> out;
  const std::string parent_text = parent.to_string();
  for (const schema::EntityDef& e : schema::entities()) {
    if (e.scope.kind != schema::ScopeKind::kParent || e.scope.parent != parent_entity) continue;
    const schema::FieldDef* f = e.field(e.scope.field);
    if (f == nullptr) continue;
    Stmt q(access.db(),
           "SELECT _meta FROM " + quoted(e.name) + " WHERE " + quoted(f->name) + " = ? ORDER BY id");
    q.bind(1, std::string_view(parent_text));
    if (Status s = read_records(q, out); !s) return s;
  }
  return out;
}

Result<Hlc> SqliteCentralStore::clock() {
  ReadAccess access(*this);
  Stmt q(access.db(), "SELECT value FROM _state WHERE key = 'clock'");
  if (q.step()) return Hlc{from_sql(q.col_int(0))};
  if (!q.ok()) return q.status();
  return Hlc{0};
}

Result<std::vector<StoredRejection>> SqliteCentralStore::rejections() {
  ReadAccess access(*this);
  std::vector<StoredRejection> out;
  Stmt q(access.db(),
         "SELECT node, node_seq, user, reason, message FROM _rejections ORDER BY node, node_seq");
  while (q.step())
    out.push_back(StoredRejection{from_sql(q.col_int(0)), from_sql(q.col_int(1)), q.col_text(2),
                                  static_cast<ErrorCode>(q.col_int(3)), q.col_text(4)});
  if (!q.ok()) return q.status();
  return out;
}

Result<std::map<NodeId, NodeState>> SqliteCentralStore::node_states() {
  ReadAccess access(*this);
  std::map<NodeId, NodeState> out;
  Stmt q(access.db(), "SELECT node, last_node_seq FROM _nodes");
  while (q.step()) {
    NodeId node = from_sql(q.col_int(0));
    out[node] = NodeState{node, from_sql(q.col_int(1))};
  }
  if (!q.ok()) return q.status();
  return out;
}

Result<std::vector<SqliteCentralStore::AuditEntry>> SqliteCentralStore::audit(uint64_t after_seq,
                                                                              size_t max_entries) {
  ReadAccess access(*this);
  std::vector<AuditEntry> out;
  Stmt q(
      access.db(),
      "SELECT server_seq, recorded_at_ms, origin_user, origin_node, origin_node_seq, change_count, blob FROM "
      "_log WHERE server_seq > ? ORDER BY server_seq");
  q.bind(1, as_sql(after_seq));
  while (q.step()) {
    // Whole log entries only, so that paging by the last server_seq returned never skips a change.
    if (!out.empty() && out.size() + static_cast<size_t>(q.col_int(5)) > max_entries) break;
    const uint64_t seq = from_sql(q.col_int(0));
    Result<ServerTxn> t = codec::decode_server_txn(q.col_blob(6));
    if (!t) return corrupt("log entry " + std::to_string(seq), t.status());
    for (const Change& c : t->changes) {
      const bool has_field = c.op == ChangeOp::kSet || c.op == ChangeOp::kAppend;
      out.push_back(AuditEntry{
          seq, q.col_int(1), q.col_text(2), from_sql(q.col_int(3)), from_sql(q.col_int(4)),
          entity_name(c.entity), c.record.to_string(), std::string(op_name(c.op)),
          has_field ? field_name(c.entity, c.field) : std::string(), hlc_physical_ms(c.version.hlc)});
    }
    if (out.size() >= max_entries) break;
  }
  if (!q.ok()) return q.status();
  return out;
}

Status SqliteCentralStore::sync() {
  if (!options_.group_commit) return Status::ok();  // every commit was synced already
  if (writer_owner_.load() == std::this_thread::get_id())
    return Status(ErrorCode::kInternal, "sync() called inside an open central store transaction");
  {
    // Waits for an open CentralTxn (the next group being applied) to end, then commits the group: quick,
    // since with synchronous=NORMAL a COMMIT only writes the WAL. The disk flush below holds no store lock.
    std::lock_guard writer(writer_mu_);
    if (Status s = end_group(); !s) return s;
  }
  // The WAL holds every commit not yet checkpointed into the database file (a checkpoint syncs the WAL before
  // copying and the database file after), so flushing it makes every commit so far durable: what a
  // synchronous=FULL commit does, once for the group. The flush goes through the writer connection's own
  // handle of the WAL and its VFS (xSync: fsync/fdatasync of that descriptor for the unix VFS), not through
  // the connection: no SQLite call, no connection mutex and no store lock but sync_mu_, so the next group is
  // applied on the writer meanwhile. Only the descriptor is shared with the writer's concurrent appends
  // (pwrite), which is what fsync is for; the handle stays open and the same while the writer is (SQLite
  // restarts the WAL in place and deletes it only when the last connection closes). It used to be an
  // fdatasync() of a descriptor of our own, which a VFS never saw: tests/powerloss's power-cut VFS then
  // (rightly) dropped acknowledged commits.
  // A failed sync is permanent (group_lost_): after an fsync error the kernel may have dropped the dirty
  // pages and a later fsync succeeds without them, so no later sync() may say that anything is durable.
  Status synced;
  {
    std::lock_guard lock(sync_mu_);
    if (int rc = wal_file_->pMethods->xSync(wal_file_, SQLITE_SYNC_NORMAL); rc != SQLITE_OK)
      synced = sqlite::status_from(rc, "syncing the WAL of " + path_, nullptr);
  }
  if (!synced) {
    std::lock_guard writer(writer_mu_);
    if (group_lost_)
      group_lost_ = Status(ErrorCode::kStorageIo,
                           "the central store could not sync its WAL (" + synced.to_string() +
                               "); restart the server: devices re-send what was not acknowledged");
    return group_lost_;
  }
  return Status::ok();
}

Result<NodeState> SqliteCentralStore::node_state(NodeId node) {
  ReadAccess access(*this);
  return read_node_state(access.db(), node);
}

uint64_t SqliteCentralStore::size_bytes() {
  ReadAccess access(*this);
  Stmt q(access.db(), "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()");
  if (q.step()) return from_sql(q.col_int(0));
  return 0;
}

}  // namespace fieldsync::server

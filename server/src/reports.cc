// Head-office reports and CSV exports. See reports.h for the interface and docs/DESIGN.md "Reports" for the
// definitions and the indexes each query walks.
#include "fieldsync/server/reports.h"

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <tuple>
#include <variant>

#include "csv.h"
#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/sync/rules.h"
#include "local_time.h"
#include "sql_reader.h"
#include "visit_quarters.h"

namespace fieldsync::server::reports {

using sqlite::Db;
using sqlite::Stmt;
using Rows = SqlRows;
namespace json = boost::json;

namespace {

constexpr std::string_view kOpenStages[] = {"prospect", "qualified", "proposal", "negotiation"};
constexpr std::string_view kAllStages[] = {"prospect", "qualified", "proposal", "negotiation", "won", "lost"};
constexpr int64_t kDayMs = 24 * 60 * 60 * 1000;

// Revenue counts orders a rep has committed to: submitted (awaiting approval), approved or fulfilled.
// Drafts may still change and cancelled orders never ship.
constexpr std::string_view kRevenueStatuses = "('submitted', 'approved', 'fulfilled')";
// An order's date: when it was submitted; one head office entered as approved directly has only that.
// Written exactly as idx_report_order_date's expression (sqlite_store.cc), so the planner uses the index.
constexpr std::string_view kOrderDate = "coalesce(o.submitted_at, o.approved_at)";
// A line's net amount, as FieldClient computes it (client-core/src/field_client.cc): the discount is
// gross * bp / 10,000 rounded half up, computed without overflowing int64.
constexpr std::string_view kLineNet =
    "(l.quantity * l.unit_price_cents - ((l.quantity * l.unit_price_cents) / 10000 * coalesce(l.discount_bp, "
    "0) + ((l.quantity * l.unit_price_cents) % 10000 * coalesce(l.discount_bp, 0) + 5000) / 10000))";

std::string stage_list(std::span<const std::string_view> stages) {
  std::string out = "(";
  for (size_t i = 0; i < stages.size(); ++i) {
    if (i) out += ", ";
    out += "'";
    out += stages[i];
    out += "'";
  }
  return out + ")";
}

// The probability of p.stage: head office's row, else the default.
std::string probability_sql() {
  std::string out = "coalesce(sp.probability_bp, CASE p.stage";
  for (const auto& [stage, bp] : kDefaultStageProbabilityBp)
    out += " WHEN '" + std::string(stage) + "' THEN " + std::to_string(bp);
  return out + " ELSE 0 END)";
}

// ---- SQL with its parameters

using Param = std::variant<int64_t, std::string>;

struct Sql {
  std::string text;
  std::vector<Param> params;
  Sql& operator<<(std::string_view s) {
    text += s;
    return *this;
  }
  Sql& p(int64_t v) {
    text += '?';
    params.emplace_back(v);
    return *this;
  }
  Sql& p(std::string v) {
    text += '?';
    params.emplace_back(std::move(v));
    return *this;
  }
  // " AND <column> IN (?, ...)"; an empty list matches nothing.
  Sql& and_in(std::string_view column, const std::vector<std::string>& values) {
    if (values.empty()) {
      text += " AND FALSE";
      return *this;
    }
    text += " AND ";
    text += column;
    text += " IN (";
    for (size_t i = 0; i < values.size(); ++i) {
      if (i) text += ", ";
      p(values[i]);
    }
    text += ')';
    return *this;
  }
};

std::vector<Value> values_of(const std::vector<Param>& params) {
  std::vector<Value> out;
  out.reserve(params.size());
  for (const Param& v : params) {
    if (const int64_t* n = std::get_if<int64_t>(&v)) {
      out.push_back(Value::integer(*n));
    } else {
      out.push_back(Value::text(std::get<std::string>(v)));
    }
  }
  return out;
}

// Runs `q`, calling on_row(rows) for each row; on_row returning false stops early.
template <typename F>
Status each_row(SqlReader& db, const Sql& q, F&& on_row) {
  Rows rows = db.query(q.text, values_of(q.params));
  while (rows.step())
    if (!on_row(rows)) return Status::ok();
  return rows.status();
}

// Every statement of one report or export reads one snapshot: a read transaction begun on a connection in
// autocommit, ended (nothing written) at the end.
class Snapshot {
 public:
  explicit Snapshot(SqlReader& db) : db_(db) { status_ = db_.begin_snapshot(&began_); }
  ~Snapshot() {
    if (began_) db_.end_snapshot();
  }
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;
  const Status& status() const { return status_; }

 private:
  SqlReader& db_;
  Status status_;
  bool began_ = false;
};

json::value text_or_null(Rows& st, int i) {
  if (st.col_null(i)) return nullptr;
  return json::value(st.col_text(i));
}

std::string key_text(Rows& st, int i) {
  return st.col_null(i) ? std::string() : st.col_text(i);
}

// ---- The dialects' differences, each in one place (the reports' SQL is otherwise one text for both).

// A sum of integers as an integer (PostgreSQL's sum of a bigint is a numeric).
std::string isum(std::string_view expr) {
  return "CAST(sum(" + std::string(expr) + ") AS BIGINT)";
}
// How many rows meet a condition (PostgreSQL sums no booleans).
std::string count_if(std::string_view cond) {
  return "CAST(sum(CASE WHEN " + std::string(cond) + " THEN 1 ELSE 0 END) AS BIGINT)";
}
// The rows of a JSON array of strings bound as one parameter, as a subquery: "(SELECT ... ?...)".
std::string json_text_array(SqlDialect d) {
  return d == SqlDialect::kPostgres ? "(SELECT json_array_elements_text(CAST(? AS json)))"
                                    : "(SELECT value FROM json_each(?))";
}
// A REAL column's text as the store renders it (CSV): SQLite's own rendering; PostgreSQL's shortest exact.
std::string real_text(std::string_view expr, SqlDialect d) {
  if (d == SqlDialect::kPostgres) return "CAST(" + std::string(expr) + " AS TEXT)";
  return std::string(expr);
}

double ratio(int64_t num, int64_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

double ms_to_days(int64_t ms) {
  return static_cast<double>(ms) / static_cast<double>(kDayMs);
}

// ---- Scope

// What one caller may see under one filter, as SQL conditions.
struct Scope {
  // Territories of the records' accounts; nullopt: no condition.
  std::optional<std::vector<std::string>> record_territories;
  // Territories of the accounts listed for themselves (not visited, the accounts export).
  std::optional<std::vector<std::string>> account_territories;
  std::vector<std::string> reps;  // empty: no condition on the record's rep or owner
  // Owners of records without a territory (tasks): nullopt every owner; a manager's are the team and
  // themselves, a rep's themselves, another role's none.
  std::optional<std::vector<std::string>> owners;
  LocalTime local;                           // the filter's days (local_time_of)
  SqlDialect dialect = SqlDialect::kSqlite;  // of the connection the report runs on
};

Status out_of_scope(std::string_view what, std::string_view value) {
  return Status(ErrorCode::kOutOfScope,
                std::string(what) + " '" + std::string(value) + "' is not in your scope");
}

bool contains(const std::vector<std::string>& list, std::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

Result<Scope> resolve_scope(const ReportFilter& f, const Principal& who) {
  Scope s;
  const std::optional<std::vector<std::string>> asked =
      f.territories.empty() ? std::nullopt : std::optional(f.territories);
  if (who.role == schema::Role::kHeadOffice) {
    s.record_territories = s.account_territories = asked;
    s.reps = f.reps;
    if (!f.reps.empty()) s.owners = f.reps;
    return s;
  }
  for (const std::string& t : f.territories)
    if (!contains(who.territories, t)) return out_of_scope("territory", t);
  if (who.role == schema::Role::kRep) {
    // A rep's own figures: their records wherever the account is now; accounts of their territories.
    for (const UserId& r : f.reps)
      if (r != who.user) return out_of_scope("rep", r);
    s.reps = {who.user};
    s.owners = s.reps;
    s.record_territories = asked;
    s.account_territories = asked ? *asked : who.territories;
    return s;
  }
  s.owners = std::vector<std::string>();
  if (who.role == schema::Role::kManager) {
    for (const UserId& r : f.reps)
      if (r != who.user && !contains(who.team, r)) return out_of_scope("rep", r);
    if (!f.reps.empty()) {
      s.owners = f.reps;
    } else {
      s.owners->push_back(who.user);
      s.owners->insert(s.owners->end(), who.team.begin(), who.team.end());
    }
  }
  // A manager, and any role that sees territories granted to it (a partner): those territories.
  s.record_territories = s.account_territories = asked ? *asked : who.territories;
  s.reps = f.reps;
  return s;
}

// " JOIN account a ON a.id = <alias>.account_id" when the territory condition needs the account.
void join_account(Sql& q, const Scope& s, std::string_view alias) {
  if (s.record_territories) q << " JOIN account a ON a.id = " << alias << ".account_id";
}
void where_scope(Sql& q, const Scope& s, std::string_view rep_column) {
  if (s.record_territories) q.and_in("a.territory_id", *s.record_territories);
  if (!s.reps.empty()) q.and_in(rep_column, s.reps);
}

Status check_filter(const ReportFilter& f) {
  if (f.to_ms <= f.from_ms)
    return Status(ErrorCode::kInvalidArgument, "to: the period ends before it begins");
  if (f.to_ms - f.from_ms > kMaxPeriodMs)
    return Status(ErrorCode::kInvalidArgument, "to: the period is longer than five years");
  if (f.days < 1 || f.days > kMaxDays)
    return Status(ErrorCode::kInvalidArgument, "days: must be 1.." + std::to_string(kMaxDays));
  if (f.tz_offset_minutes < -kMaxTzOffsetMinutes || f.tz_offset_minutes > kMaxTzOffsetMinutes)
    return Status(ErrorCode::kInvalidArgument, "tz_offset_minutes: must be -840..840");
  if (f.time_zone.size() > kMaxTimeZoneName)
    return Status(ErrorCode::kInvalidArgument, "tz: longer than a time zone's name");
  if (f.limit < 1 || f.limit > kMaxListRows)
    return Status(ErrorCode::kInvalidArgument, "limit: must be 1.." + std::to_string(kMaxListRows));
  if (f.territories.size() > kMaxFilterValues || f.reps.size() > kMaxFilterValues)
    return Status(ErrorCode::kInvalidArgument, "territory/rep: at most 100 values");
  return Status::ok();
}

// The filter's local time: its zone over its period, or its fixed offset.
Result<LocalTime> local_time_of(const ReportFilter& f) {
  if (f.time_zone.empty()) return LocalTime::fixed(f.tz_offset_minutes * 60);
  return LocalTime::zone(f.time_zone, f.from_ms, f.to_ms);
}

// The zone the filter's days are those of, if any: its time zone, or "UTC" for offset 0.
std::string zone_name(const ReportFilter& f) {
  if (!f.time_zone.empty()) return f.time_zone;
  return f.tz_offset_minutes == 0 ? "UTC" : "";
}

// Days since the epoch of an epoch-ms expression in local time.
std::string day_number(std::string_view ms_expr, const LocalTime& lt) {
  return "((" + std::string(ms_expr) + ") / 1000 + " + lt.offset_sql(ms_expr) + ") / 86400";
}

// "YYYY-MM-DD" of a day number (days since 1970-01-01; Howard Hinnant's civil_from_days).
std::string day_text(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", static_cast<int>(y), static_cast<int>(m),
                static_cast<int>(d));
  return buf;
}

// An epoch-ms expression in local time as text: "YYYY-MM" (kMonth) or "YYYY-MM-DD HH:MM:SS" (kTime). The
// local time is LocalTime's on both engines (our zone library: the same answers whatever time zone data the
// database carries); only the formatting function differs.
enum class TimeFormat : uint8_t { kMonth, kTime };
std::string bucket(TimeFormat format, std::string_view ms_expr, const Scope& s) {
  const std::string seconds = std::string(ms_expr) + " / 1000 + " + s.local.offset_sql(ms_expr);
  if (s.dialect == SqlDialect::kPostgres)
    return "to_char(to_timestamp(" + seconds + ") AT TIME ZONE 'UTC', '" +
           (format == TimeFormat::kMonth ? "YYYY-MM" : "YYYY-MM-DD HH24:MI:SS") + "')";
  return "strftime('" + std::string(format == TimeFormat::kMonth ? "%Y-%m" : "%Y-%m-%d %H:%M:%S") + "', " +
         seconds + ", 'unixepoch')";
}

json::object period_json(const ReportFilter& f) {
  json::object o;
  o["from"] = f.from_ms;
  o["to"] = f.to_ms;
  o["tz_offset_minutes"] = f.tz_offset_minutes;
  if (!f.time_zone.empty()) o["time_zone"] = f.time_zone;
  o["company_zone"] = f.company_zone;  // the days are the company's (asked without tz)
  return o;
}

// The facts (sqlite_store.cc, _order_fact: one row per order with its lines' totals, kept by triggers) of
// the orders counted as revenue in the period, in scope: " FROM _order_fact x WHERE ...".
void revenue_facts(Sql& q, const ReportFilter& f, const Scope& s) {
  q << " FROM _order_fact x WHERE x.at_ms >= ";
  q.p(f.from_ms) << " AND x.at_ms < ";
  q.p(f.to_ms) << " AND x.status IN " << kRevenueStatuses << " AND x.deleted = FALSE";
  if (s.record_territories) q.and_in("x.territory", *s.record_territories);
  if (!s.reps.empty()) q.and_in("x.rep_id", s.reps);
}

// ---- Reports

// Sums per (key, currency); a NULL key (an order of an account without territory) is kNullKey.
struct Sums {
  int64_t orders = 0;
  int64_t net = 0;
  int64_t quantity = 0;
};
using Groups = std::map<std::pair<std::string, std::string>, Sums>;
const std::string kNullKey(1, '\0');

std::string nullable_text(Rows& r, int i) {
  return r.col_null(i) ? kNullKey : r.col_text(i);
}

json::value key_json(const std::string& k) {
  return k == kNullKey ? json::value(nullptr) : json::value(k);
}

// The groups as rows, highest revenue first (then by key and currency), each with `key_name`.
json::array group_rows(const Groups& g, std::string_view key_name) {
  std::vector<const Groups::value_type*> rows;
  for (const auto& kv : g) rows.push_back(&kv);
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto* a, const auto* b) { return a->second.net > b->second.net; });
  json::array out;
  for (const auto* kv : rows) {
    json::object row;
    if (!key_name.empty()) row[key_name] = key_json(kv->first.first);
    row["currency"] = key_json(kv->first.second);
    row["orders"] = kv->second.orders;
    row["revenue_cents"] = kv->second.net;
    row["quantity"] = kv->second.quantity;
    out.push_back(std::move(row));
  }
  return out;
}

Result<json::value> revenue(SqlReader& db, const ReportFilter& f, const Scope& s) {
  // Aggregated here, not by GROUP BY: the facts come in date order from their index, and sorting a year of
  // them (100,000 orders, 300,000 lines) for SQLite's grouping was most of the report's time.
  Groups total, by_rep, by_territory, by_month, by_product;
  {
    Sql q;
    q << "SELECT x.at_ms, x.rep_id, x.territory, x.currency, x.net_cents, x.quantity";
    revenue_facts(q, f, s);
    int64_t last_day = 0;
    std::string month;
    Status st = each_row(db, q, [&](Rows& r) {
      const int64_t day = s.local.day(r.col_int(0));
      if (month.empty() || day != last_day) {
        last_day = day;
        month = day_text(day).substr(0, 7);
      }
      const std::string currency = nullable_text(r, 3);
      const Sums one{1, r.col_int(4), r.col_int(5)};
      for (auto [groups, key] :
           {std::pair{&total, std::string()}, std::pair{&by_rep, nullable_text(r, 1)},
            std::pair{&by_territory, nullable_text(r, 2)}, std::pair{&by_month, month}}) {
        Sums& g = (*groups)[{std::move(key), currency}];
        g.orders += one.orders;
        g.net += one.net;
        g.quantity += one.quantity;
      }
      return true;
    });
    if (!st) return st;
  }
  {  // by product, from the lines' facts (the order's date, status, rep and territory beside each line)
    Sql q;
    // The index's order puts an order's lines next to each other (every column before order_id is the
    // order's, and deleted lines are filtered out): the orders per product are counted on that, so the
    // index is named rather than left to the planner.
    q << "SELECT y.order_id, y.product_id, y.currency, y.net_cents, y.quantity FROM _order_line_fact y"
      << (s.dialect == SqlDialect::kSqlite ? " INDEXED BY idx_order_line_fact_at" : "")
      << " WHERE y.at_ms >= ";
    q.p(f.from_ms) << " AND y.at_ms < ";
    q.p(f.to_ms) << " AND y.status IN " << kRevenueStatuses
                 << " AND y.order_deleted = FALSE AND y.deleted = FALSE";
    if (s.record_territories) q.and_in("y.territory", *s.record_territories);
    if (!s.reps.empty()) q.and_in("y.rep_id", s.reps);
    // SQLite's index gives an order's lines together (above); PostgreSQL's facts are a view, so it is said.
    if (s.dialect == SqlDialect::kPostgres) q << " ORDER BY y.order_id";
    std::string order;
    std::vector<Groups::key_type> in_order;  // the products already counted for `order`
    Status st = each_row(db, q, [&](Rows& r) {
      std::string id = r.col_text(0);
      if (id != order) {
        order = std::move(id);
        in_order.clear();
      }
      Groups::key_type key{nullable_text(r, 1), nullable_text(r, 2)};
      Sums& g = by_product[key];
      g.net += r.col_int(3);
      g.quantity += r.col_int(4);
      if (std::find(in_order.begin(), in_order.end(), key) == in_order.end()) {
        g.orders += 1;
        in_order.push_back(std::move(key));
      }
      return true;
    });
    if (!st) return st;
  }
  json::object out;
  out["report"] = "revenue";
  out["period"] = period_json(f);
  out["total"] = group_rows(total, "");
  out["by_rep"] = group_rows(by_rep, "rep");
  out["by_territory"] = group_rows(by_territory, "territory");
  json::array months = group_rows(by_month, "month");  // in calendar order, by revenue within a month
  std::stable_sort(months.begin(), months.end(), [](const json::value& a, const json::value& b) {
    return a.at("month").as_string() < b.at("month").as_string();
  });
  out["by_month"] = std::move(months);
  json::array products = group_rows(by_product, "product_id");
  {  // the listed products' names, in one statement
    json::array ids;
    for (const json::value& p : products)
      if (p.at("product_id").is_string()) ids.push_back(p.at("product_id"));
    Sql q;
    const std::string list = json_text_array(s.dialect);
    q << "SELECT id, name FROM product WHERE id IN " << list.substr(0, list.find('?'));
    q.p(json::serialize(ids)) << list.substr(list.find('?') + 1);
    std::map<std::string, std::string> names;
    Status st = each_row(db, q, [&](Rows& r) {
      names[r.col_text(0)] = r.col_text(1);
      return true;
    });
    if (!st) return st;
    for (json::value& p : products) {
      auto it = p.at("product_id").is_string() ? names.find(std::string(p.at("product_id").as_string()))
                                               : names.end();
      p.as_object()["product_name"] = it == names.end() ? json::value(nullptr) : json::value(it->second);
    }
  }
  out["by_product"] = std::move(products);
  return json::value(std::move(out));
}

Result<json::value> abc(SqlReader& db, const ReportFilter& f, const Scope& s) {
  // Revenue per (account, currency), summed here from the facts in date order (SQLite's GROUP BY sorted
  // them all first).
  Groups per_account;
  {
    Sql q;
    q << "SELECT x.account_id, x.currency, x.net_cents";
    revenue_facts(q, f, s);
    Status st = each_row(db, q, [&](Rows& r) {
      Sums& g = per_account[{nullable_text(r, 0), nullable_text(r, 1)}];
      g.orders += 1;
      g.net += r.col_int(2);
      return true;
    });
    if (!st) return st;
  }
  // Accounts by revenue, highest first (ties by account id), per currency: amounts in different currencies
  // are never added. An account is A while the revenue of the accounts before it is under 80% of the total
  // (so the account that crosses 80% is A), B under 95%, C after.
  std::map<std::string, std::vector<const Groups::value_type*>> by_currency;
  for (const auto& kv : per_account) by_currency[kv.first.second].push_back(&kv);
  json::array classes, top;
  json::array top_ids;
  for (auto& [currency, accounts] : by_currency) {
    std::sort(accounts.begin(), accounts.end(), [](const auto* a, const auto* b) {
      return a->second.net != b->second.net ? a->second.net > b->second.net : a->first.first < b->first.first;
    });
    int64_t total = 0;
    for (const auto* a : accounts) total += a->second.net;
    std::map<std::string, Sums> per_class;  // class -> accounts, revenue, orders
    int64_t before = 0, rank = 0;
    for (const auto* a : accounts) {
      ++rank;
      // Compared as the statement did, in 128 bits: a total near INT64_MAX times 100 must not overflow.
      const __int128 b100 = static_cast<__int128>(before) * 100, t = total;
      const char* cls = total <= 0 ? "C" : b100 < t * 80 ? "A" : b100 < t * 95 ? "B" : "C";
      before += a->second.net;
      Sums& c = per_class[cls];
      c.orders += a->second.orders;
      c.net += a->second.net;
      c.quantity += 1;  // accounts
      if (rank <= static_cast<int64_t>(f.limit)) {
        json::object row;
        row["currency"] = key_json(currency);
        row["rank"] = rank;
        row["account_id"] = key_json(a->first.first);
        row["revenue_cents"] = a->second.net;
        row["orders"] = a->second.orders;
        row["class"] = cls;
        top.push_back(std::move(row));
        if (a->first.first != kNullKey) top_ids.push_back(json::value(a->first.first));
      }
    }
    for (const auto& [cls, c] : per_class) {
      json::object row;
      row["currency"] = key_json(currency);
      row["class"] = cls;
      row["accounts"] = c.quantity;
      row["revenue_cents"] = c.net;
      row["orders"] = c.orders;
      classes.push_back(std::move(row));
    }
  }
  {  // the listed accounts' names and territories, in one statement
    Sql q;
    const std::string list = json_text_array(s.dialect);
    q << "SELECT id, name, territory_id FROM account WHERE id IN " << list.substr(0, list.find('?'));
    q.p(json::serialize(top_ids)) << list.substr(list.find('?') + 1);
    std::map<std::string, std::pair<json::value, json::value>> found;
    Status st = each_row(db, q, [&](Rows& r) {
      found[r.col_text(0)] = {text_or_null(r, 1), text_or_null(r, 2)};
      return true;
    });
    if (!st) return st;
    for (json::value& row : top) {
      const json::value& id = row.at("account_id");
      auto it = id.is_string() ? found.find(std::string(id.as_string())) : found.end();
      row.as_object()["name"] = it == found.end() ? json::value(nullptr) : it->second.first;
      row.as_object()["territory"] = it == found.end() ? json::value(nullptr) : it->second.second;
    }
  }
  json::object out;
  out["report"] = "abc";
  out["period"] = period_json(f);
  out["classes"] = std::move(classes);
  out["top_accounts"] = std::move(top);
  return json::value(std::move(out));
}

// Visits per rep per day: each rep's totals and busiest day, the selection's visits per day, and the
// rows per rep and day themselves when the caller asked about particular reps (or is one): for every rep
// of a company over a year that list is tens of thousands of rows nobody reads.
// The company's time zone, whose local days the store's _visit_day counts (sqlite_store.cc); empty for a
// file without one (the rollup is then not read).
// PostgreSQL keeps no rollup (pg_store.cc: the reports read the visits there, DESIGN.md).
Result<std::string> store_rollup_zone(SqlReader& db) {
  if (db.dialect() != SqlDialect::kSqlite) return std::string();
  Rows q = db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_report_zone'");
  if (!q.step()) return q.ok() ? Result<std::string>(std::string()) : Result<std::string>(q.status());
  Rows z = db.query("SELECT name FROM _report_zone WHERE id = 1");
  if (z.step()) return z.col_text(0);
  if (!z.ok()) return z.status();
  return std::string();
}

// Whether the SQLite store has table `name` (a file of an older format, opened by no server since, may lack
// a report table; PostgreSQL has none of them).
Result<bool> has_sqlite_table(SqlReader& db, std::string_view name) {
  if (db.dialect() != SqlDialect::kSqlite) return false;
  Sql q;
  q << "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ";
  q.p(std::string(name));
  Rows r = db.query(q.text, values_of(q.params));
  if (!r.step()) return r.ok() ? Status(ErrorCode::kInternal, "no row") : r.status();
  return r.col_int(0) > 0;
}

int64_t floor_div(int64_t a, int64_t b) {
  return a / b - ((a % b != 0 && (a < 0) != (b < 0)) ? 1 : 0);
}

// Visits per local day, rep and outcome over the whole local days [first_day, end_day) of `local`, from the
// zone-independent rollup _visit_quarter_day (visit_quarters.h), handed to `emit(rep, day, outcome, visits)`
// in (day, rep, outcome) order, as _visit_day's rows come. A local day is a UTC interval from one local
// midnight to the next; where one falls inside a UTC day (the "cut", in quarter-hours), that day's row splits
// into the running count up to the cut and the rest, each added to its local day. The cuts move with summer
// time, so the UTC days are read in runs of equal cuts, one range of the primary key each (no sort). The
// pieces of a local day come from two UTC days (three for a 25-hour day around UTC midnight), each in (rep,
// outcome) order: they are merged when the last of them has been read. Returns false, having emitted
// nothing, when a local midnight of the period is not on a quarter-hour (a historical offset such as
// Amsterdam's +0:20 before 1937, or a fixed offset in minutes that is not a multiple of 15): the caller reads
// the visits then.
using DaySink =
    std::function<void(const std::string& rep, int64_t day, const std::string& outcome, int64_t visits)>;
Result<bool> days_from_quarters(SqlReader& db, const LocalTime& local, int64_t first_day, int64_t end_day,
                                const std::vector<std::string>& reps, const DaySink& emit) {
  std::vector<int64_t> starts;  // local midnights of first_day..end_day, UTC ms
  starts.reserve(static_cast<size_t>(end_day - first_day + 1));
  for (int64_t d = first_day; d <= end_day; ++d) {
    const int64_t t = local.day_start_ms(d);
    // (Before 1970 the rollup's days, SQL's truncating division of the check-in, are not floor days.)
    if (t % kQuarterHourMs != 0 || t < 0) return false;
    starts.push_back(t);
  }
  // The local day of an instant, if within the period's whole days.
  auto local_day_of = [&](int64_t ms) -> std::optional<int64_t> {
    if (ms < starts.front() || ms >= starts.back()) return std::nullopt;
    const auto it = std::upper_bound(starts.begin(), starts.end(), ms);
    return first_day + (it - starts.begin()) - 1;
  };
  // Each UTC day the period touches: its cuts (local midnights strictly inside it, in quarter-hours from
  // its start) and the local day of each piece between them (nullopt: outside the whole days).
  struct UtcDay {
    std::vector<int> cuts;
    std::vector<std::optional<int64_t>> piece_day;
  };
  const int64_t first_utc = floor_div(starts.front(), kDayMs),
                last_utc = floor_div(starts.back() - 1, kDayMs);
  std::vector<UtcDay> utc_days;
  for (int64_t u = first_utc; u <= last_utc; ++u) {
    UtcDay day;
    const int64_t lo = u * kDayMs, hi = lo + kDayMs;
    for (auto it = std::upper_bound(starts.begin(), starts.end(), lo); it != starts.end() && *it < hi; ++it)
      day.cuts.push_back(static_cast<int>((*it - lo) / kQuarterHourMs));
    day.piece_day.push_back(local_day_of(lo));
    for (int c : day.cuts) day.piece_day.push_back(local_day_of(lo + c * kQuarterHourMs));
    utc_days.push_back(std::move(day));
  }

  struct Piece {
    std::string rep, outcome;
    int64_t visits = 0;
  };
  // Local days read in part: per UTC day that gave pieces, the pieces in (rep, outcome) order.
  struct Pending {
    int64_t last_utc = 0;
    std::vector<std::vector<Piece>> lists;
  };
  std::map<int64_t, Pending> pending;
  auto emit_day = [&](int64_t day, std::vector<std::vector<Piece>>& lists) {
    std::vector<size_t> at(lists.size(), 0);
    for (;;) {
      const Piece* least = nullptr;
      for (size_t i = 0; i < lists.size(); ++i)
        if (at[i] < lists[i].size()) {
          const Piece& p = lists[i][at[i]];
          if (!least || std::tie(p.rep, p.outcome) < std::tie(least->rep, least->outcome)) least = &p;
        }
      if (!least) return;
      const std::string rep = least->rep, outcome = least->outcome;
      int64_t visits = 0;
      for (size_t i = 0; i < lists.size(); ++i)
        if (at[i] < lists[i].size() && lists[i][at[i]].rep == rep && lists[i][at[i]].outcome == outcome)
          visits += lists[i][at[i]++].visits;
      emit(rep, day, outcome, visits);
    }
  };
  // Emits the local days that end by `ms` (every UTC day before it has been read).
  auto emit_ended = [&](int64_t ms) {
    while (!pending.empty() && starts[static_cast<size_t>(pending.begin()->first + 1 - first_day)] <= ms) {
      emit_day(pending.begin()->first, pending.begin()->second.lists);
      pending.erase(pending.begin());
    }
  };
  int64_t current_utc = first_utc;
  for (size_t run = 0; run < utc_days.size();) {
    size_t run_end = run + 1;
    while (run_end < utc_days.size() && utc_days[run_end].cuts == utc_days[run].cuts) ++run_end;
    const std::vector<int>& cuts = utc_days[run].cuts;
    Sql q;
    q << "SELECT day, rep_id, outcome, visits";
    for (int c : cuts) q << ", " << visit_quarter_column(c);
    q << " FROM _visit_quarter_day WHERE day >= ";
    q.p(first_utc + static_cast<int64_t>(run)) << " AND day < ";
    q.p(first_utc + static_cast<int64_t>(run_end)) << " AND visits > 0";
    if (!reps.empty()) q.and_in("rep_id", reps);
    q << " ORDER BY day, rep_id, outcome";
    Status st = each_row(db, q, [&](Rows& r) {
      const int64_t u = r.col_int(0);
      if (u != current_utc) {
        emit_ended(u * kDayMs);
        current_utc = u;
      }
      const UtcDay& day = utc_days[static_cast<size_t>(u - first_utc)];
      const int64_t all = r.col_int(3);
      int64_t before = 0;  // the running count at the piece's start
      for (size_t i = 0; i <= cuts.size(); ++i) {
        const int64_t upto = i < cuts.size() ? r.col_int(4 + static_cast<int>(i)) : all;
        const int64_t visits = upto - before;
        before = upto;
        if (visits <= 0 || !day.piece_day[i]) continue;
        Pending& p = pending[*day.piece_day[i]];
        if (p.lists.empty() || p.last_utc != u) {
          p.lists.emplace_back();
          p.last_utc = u;
        }
        p.lists.back().push_back(Piece{key_text(r, 1), r.col_text(2), visits});
      }
      return true;
    });
    if (!st) return st;
    run = run_end;
  }
  emit_ended(std::numeric_limits<int64_t>::max());
  return true;
}

Result<json::value> activity(SqlReader& db, const ReportFilter& f, const Scope& s) {
  struct RepFigures {
    int64_t visits = 0;
    int64_t days = 0;
    int64_t max_per_day = 0;
    int64_t orders = 0;
    std::map<std::string, int64_t> outcomes;
  };
  std::map<std::string, RepFigures> reps;
  std::map<int64_t, std::pair<int64_t, int64_t>> days;  // day -> (visits, reps)
  const bool rep_days = !s.reps.empty();
  json::array per_rep_day;
  {  // one pass over visits per day, rep and outcome, in that order, so one rep's day is consecutive rows
    std::string last_rep;
    int64_t last_day = 0, day_visits = 0;
    bool open = false;
    RepFigures* current = nullptr;  // reps[last_rep]
    auto end_day = [&] {
      if (!open) return;
      RepFigures& rf = reps[last_rep];
      rf.days += 1;
      rf.max_per_day = std::max(rf.max_per_day, day_visits);
      auto& d = days[last_day];
      d.first += day_visits;
      d.second += 1;
      if (rep_days)
        per_rep_day.push_back(
            json::object{{"rep", last_rep}, {"day", day_text(last_day)}, {"visits", day_visits}});
    };
    // Visits of a rep on a day with an outcome.
    auto add = [&](const std::string& rep, int64_t day, const std::string& outcome, int64_t n) {
      if (!open || rep != last_rep || day != last_day) {
        end_day();
        last_rep = rep;
        last_day = day;
        day_visits = 0;
        open = true;
        current = &reps[last_rep];
      }
      day_visits += n;
      current->visits += n;
      current->outcomes[outcome] += n;
    };
    // A row (rep, day, outcome, visits).
    auto on_row = [&](Rows& r) {
      add(key_text(r, 0), r.col_int(1), r.col_text(2), r.col_int(3));
      return true;
    };
    // The visits checked in during [lo, hi), grouped (day first: the index gives them in time order, which
    // SQLite's sorter handles faster).
    auto from_visits = [&](int64_t lo, int64_t hi) {
      Sql q;
      q << "SELECT v.rep_id, " << day_number("v.check_in_at", s.local)
        << " AS day, coalesce(v.outcome, 'none') AS outcome, count(*) FROM visit v";
      join_account(q, s, "v");
      q << " WHERE v.check_in_at >= ";
      q.p(lo) << " AND v.check_in_at < ";
      q.p(hi) << " AND v._deleted = FALSE";
      where_scope(q, s, "v.rep_id");
      // (SQLite's grouping already returns them in this order; PostgreSQL's hash aggregate does not.)
      q << " GROUP BY 2, 1, 3 ORDER BY 2, 1, 3";
      return each_row(db, q, on_row);
    };
    // Whole local days of the period come from a rollup when no territory condition applies (no rollup
    // knows the visits' accounts): in the company's time zone from _visit_day, which counts its local days
    // (sqlite_store.cc; in its key's order: no sort); in any other zone or at another offset from
    // _visit_quarter_day, visits per UTC day with running counts per quarter-hour (days_from_quarters). The
    // partial days at either end, every report scoped by territory and PostgreSQL's (no rollups) read the
    // visits.
    int64_t first_day = s.local.day(f.from_ms);
    if (s.local.day_start_ms(first_day) < f.from_ms) ++first_day;
    const int64_t end_day_number = s.local.day(f.to_ms);
    const int64_t first_ms = s.local.day_start_ms(first_day), end_ms = s.local.day_start_ms(end_day_number);
    Status st;
    Result<std::string> rollup_zone = store_rollup_zone(db);
    if (!rollup_zone) return rollup_zone.status();
    Result<bool> quarters = has_sqlite_table(db, "_visit_quarter_day");
    if (!quarters) return quarters.status();
    const bool company_days = !rollup_zone->empty() && *rollup_zone == zone_name(f);
    if ((!company_days && !*quarters) || s.record_territories || first_day >= end_day_number) {
      st = from_visits(f.from_ms, f.to_ms);
    } else {
      if (f.from_ms < first_ms) st = from_visits(f.from_ms, first_ms);
      if (st && company_days) {
        Sql q;
        q << "SELECT rep_id, day, outcome, visits FROM _visit_day WHERE day >= ";
        q.p(first_day) << " AND day < ";
        q.p(end_day_number) << " AND visits > 0";
        if (!s.reps.empty()) q.and_in("rep_id", s.reps);
        q << " ORDER BY day, rep_id, outcome";
        st = each_row(db, q, on_row);
      } else if (st) {
        Result<bool> read = days_from_quarters(db, s.local, first_day, end_day_number, s.reps, add);
        if (!read) return read.status();
        if (!*read) st = from_visits(first_ms, end_ms);
      }
      if (st && end_ms < f.to_ms) st = from_visits(end_ms, f.to_ms);
    }
    if (!st) return st;
    end_day();
    std::stable_sort(per_rep_day.begin(), per_rep_day.end(), [](const json::value& a, const json::value& b) {
      return a.at("rep").as_string() < b.at("rep").as_string();
    });
  }
  {  // orders (as revenue counts them)
    Sql q;
    q << "SELECT x.rep_id, count(*)";
    revenue_facts(q, f, s);
    q << " GROUP BY 1";
    Status st = each_row(db, q, [&](Rows& r) {
      reps[key_text(r, 0)].orders = r.col_int(1);
      return true;
    });
    if (!st) return st;
  }
  json::array by_rep;
  for (auto& [rep, rf] : reps) {
    json::object o;
    o["rep"] = rep;
    o["visits"] = rf.visits;
    o["days_with_visits"] = rf.days;
    o["visits_per_day"] = ratio(rf.visits, rf.days);
    o["max_visits_per_day"] = rf.max_per_day;
    json::object outcomes;
    for (const auto& [outcome, n] : rf.outcomes) outcomes[outcome] = n;
    o["outcomes"] = std::move(outcomes);
    o["orders"] = rf.orders;
    o["orders_per_visit"] = ratio(rf.orders, rf.visits);
    by_rep.push_back(std::move(o));
  }
  json::array per_day;
  for (const auto& [day, d] : days)
    per_day.push_back(json::object{{"day", day_text(day)}, {"visits", d.first}, {"reps", d.second}});
  // Accounts in scope without a visit (in scope: a rep's own) in the N days up to the reference time. The
  // inner query walks the account index only; names are read for the listed page.
  json::array not_visited;
  int64_t not_visited_count = 0;
  {
    const int64_t cutoff = f.to_ms - int64_t{f.days} * kDayMs;
    Sql rep_cond;
    if (!s.reps.empty()) rep_cond.and_in("v.rep_id", s.reps);
    Sql q;
    // One seek per account: its last visit before the reference time (in scope), kept if older than the
    // cutoff or absent.
    q << "SELECT c.id, a.name, a.territory_id, c.last, c.n FROM (SELECT id, last, count(*) OVER () AS n FROM "
         "(SELECT a.id AS id, (SELECT max(v.check_in_at) FROM visit v WHERE v.account_id = a.id AND "
         "v._deleted = FALSE AND v.check_in_at < ";
    q.p(f.to_ms) << rep_cond.text;
    q.params.insert(q.params.end(), rep_cond.params.begin(), rep_cond.params.end());
    q << ") AS last FROM account a WHERE a._deleted = FALSE";
    if (s.account_territories) q.and_in("a.territory_id", *s.account_territories);
    q << ") u WHERE last IS NULL OR last < ";
    q.p(cutoff) << " ORDER BY last IS NOT NULL, last, id LIMIT ";
    q.p(static_cast<int64_t>(f.limit));
    q << ") c JOIN account a ON a.id = c.id ORDER BY c.last IS NOT NULL, c.last, c.id";
    Status st = each_row(db, q, [&](Rows& r) {
      not_visited_count = r.col_int(4);
      json::object o;
      o["account_id"] = text_or_null(r, 0);
      o["name"] = text_or_null(r, 1);
      o["territory"] = text_or_null(r, 2);
      o["last_visit_at"] = r.col_null(3) ? json::value(nullptr) : json::value(r.col_int(3));
      not_visited.push_back(std::move(o));
      return true;
    });
    if (!st) return st;
  }
  json::object out;
  out["report"] = "activity";
  out["period"] = period_json(f);
  out["by_rep"] = std::move(by_rep);
  out["per_day"] = std::move(per_day);
  if (rep_days) out["per_rep_day"] = std::move(per_rep_day);
  out["not_visited"] =
      json::object{{"days", f.days}, {"count", not_visited_count}, {"accounts", std::move(not_visited)}};
  return json::value(std::move(out));
}

Result<json::value> plan_vs_execution(SqlReader& db, const ReportFilter& f, const Scope& s) {
  Sql q;
  // Each appointment's visit is in its fact (sqlite_store.cc, _appointment_fact: the check-in of the visit
  // linked to it, else of the owner's earliest at its account in the window around the start, kept by
  // triggers on events and visits), so this is a range of one covering index.
  q << "WITH e AS MATERIALIZED (SELECT e.owner_id AS owner_id, e.start_at AS start_at, e.visit_at AS "
       "visit_at FROM _appointment_fact e";
  join_account(q, s, "e");
  q << " WHERE e.start_at >= ";
  q.p(f.from_ms) << " AND e.start_at < ";
  q.p(f.to_ms) << " AND e.deleted = FALSE AND e.account_id IS NOT NULL AND e.status <> 'cancelled'";
  where_scope(q, s, "e.owner_id");
  q << ") SELECT owner_id, CASE WHEN visit_at IS NULL THEN (CASE WHEN start_at + ";
  q.p(kMatchAfterMs) << " <= ";
  q.p(f.to_ms) << " THEN 'missed' ELSE 'pending' END) WHEN visit_at <= start_at + ";
  q.p(kOnTimeGraceMs)
      << " THEN 'on_time' ELSE 'late' END AS verdict, count(*) FROM e GROUP BY 1, 2 ORDER BY 1";
  std::map<std::string, std::map<std::string, int64_t>> per_rep;
  std::map<std::string, int64_t> total;
  Status st = each_row(db, q, [&](Rows& r) {
    per_rep[key_text(r, 0)][r.col_text(1)] += r.col_int(2);
    total[r.col_text(1)] += r.col_int(2);
    return true;
  });
  if (!st) return st;
  auto figures = [](std::map<std::string, int64_t>& m) {
    json::object o;
    int64_t booked = 0;
    for (std::string_view k : {"on_time", "late", "missed", "pending"}) {
      o[k] = m[std::string(k)];
      booked += m[std::string(k)];
    }
    o["booked"] = booked;
    const int64_t due = booked - m["pending"];
    o["executed_rate"] = ratio(m["on_time"] + m["late"], due);
    o["on_time_rate"] = ratio(m["on_time"], due);
    return o;
  };
  json::array by_rep;
  for (auto& [rep, m] : per_rep) {
    json::object o = figures(m);
    o["rep"] = rep;
    by_rep.push_back(std::move(o));
  }
  json::object out;
  out["report"] = "plan_vs_execution";
  out["period"] = period_json(f);
  out["rule"] = json::object{{"match_before_ms", kMatchBeforeMs},
                             {"match_after_ms", kMatchAfterMs},
                             {"on_time_grace_ms", kOnTimeGraceMs}};
  out["total"] = figures(total);
  out["by_rep"] = std::move(by_rep);
  return json::value(std::move(out));
}

// The stage history rows of opportunities in scope: "FROM _stage_history h JOIN opportunity p ... [JOIN
// account a]" and the scope conditions after the caller's own.
void history_from(Sql& q, const Scope& s) {
  q << " FROM _stage_history h JOIN opportunity p ON p.id = h.opportunity_id";
  join_account(q, s, "p");
}

// Counting stints of every deal: the model never deletes an opportunity (it is closed through its stage),
// so without a scope condition the deals themselves need not be read -- a seek per stint for a year of head
// office's funnel. Should the model ever let them be deleted, the join (and its _deleted check) comes back.
// " FROM ... WHERE <cond>": `cond` comes right after WHERE, the scope after it.
void stints_where(Sql& q, const Scope& s, const std::function<void(Sql&)>& cond) {
  static const bool deletable = schema::entity_ref(EntityId::kOpportunity).deletable;
  const bool scoped = deletable || s.record_territories.has_value() || !s.reps.empty();
  if (scoped) {
    history_from(q, s);
  } else {
    q << " FROM _stage_history h";
  }
  q << " WHERE ";
  cond(q);
  if (scoped) {
    q << " AND p._deleted = FALSE";
    where_scope(q, s, "p.owner_id");
  }
}

Result<json::value> funnel(SqlReader& db, const ReportFilter& f, const Scope& s) {
  const std::string open = stage_list(kOpenStages);
  std::map<std::string, json::object> stages;  // per stage
  for (std::string_view st : kAllStages) {
    json::object o;
    o["stage"] = st;
    o["open_deals"] = 0;
    o["open_amount"] = json::array();
    o["entered"] = 0;
    o["exits"] = 0;
    o["advanced"] = 0;
    o["moved_back"] = 0;
    o["won"] = 0;
    o["lost"] = 0;
    o["avg_days_in_stage"] = nullptr;
    stages.emplace(std::string(st), std::move(o));
  }
  auto stage_rank = [](std::string_view st) {
    for (size_t i = 0; i < std::size(kAllStages); ++i)
      if (kAllStages[i] == st) return static_cast<int>(i);
    return -1;
  };
  {  // open deals and amount per stage (now)
    Sql q;
    q << "SELECT p.stage, p.currency, count(*), " << isum("p.amount_cents") << " FROM opportunity p";
    join_account(q, s, "p");
    q << " WHERE p._deleted = FALSE AND p.stage IN " << open;
    where_scope(q, s, "p.owner_id");
    q << " GROUP BY 1, 2 ORDER BY 1, 2";
    Status st = each_row(db, q, [&](Rows& r) {
      auto it = stages.find(r.col_text(0));
      if (it == stages.end()) return true;
      it->second["open_deals"] = it->second["open_deals"].as_int64() + r.col_int(2);
      it->second["open_amount"].as_array().push_back(json::object{
          {"currency", text_or_null(r, 1)}, {"deals", r.col_int(2)}, {"amount_cents", r.col_int(3)}});
      return true;
    });
    if (!st) return st;
  }
  {  // deals entering each stage in the period
    Sql q;
    q << "SELECT h.stage, count(*)";
    stints_where(q, s, [&](Sql& c) {
      c << "h.stage IN " << stage_list(kAllStages) << " AND h.entered_at_ms >= ";
      c.p(f.from_ms) << " AND h.entered_at_ms < ";
      c.p(f.to_ms);
    });
    q << " GROUP BY 1";
    Status st = each_row(db, q, [&](Rows& r) {
      auto it = stages.find(r.col_text(0));
      if (it != stages.end()) it->second["entered"] = r.col_int(1);
      return true;
    });
    if (!st) return st;
  }
  {  // stints that ended in the period: where they went and how long they lasted
    Sql q;
    q << "SELECT h.stage, h.next_stage, count(*), " << isum("h.left_at_ms - h.entered_at_ms");
    stints_where(q, s, [&](Sql& c) {
      c << "h.left_at_ms >= ";
      c.p(f.from_ms) << " AND h.left_at_ms < ";
      c.p(f.to_ms);
    });
    q << " GROUP BY 1, 2";
    std::map<std::string, std::pair<int64_t, int64_t>> time_in;  // stage -> (stints, total ms)
    Status st = each_row(db, q, [&](Rows& r) {
      const std::string from = r.col_text(0);
      const std::string to = key_text(r, 1);
      auto it = stages.find(from);
      if (it == stages.end()) return true;
      json::object& o = it->second;
      const int64_t n = r.col_int(2);
      o["exits"] = o["exits"].as_int64() + n;
      if (to == "won") o["won"] = o["won"].as_int64() + n;
      if (to == "lost") o["lost"] = o["lost"].as_int64() + n;
      if (to != "lost" && stage_rank(to) > stage_rank(from)) o["advanced"] = o["advanced"].as_int64() + n;
      if (to != "lost" && stage_rank(to) < stage_rank(from)) o["moved_back"] = o["moved_back"].as_int64() + n;
      time_in[from].first += n;
      time_in[from].second += r.col_int(3);
      return true;
    });
    if (!st) return st;
    for (auto& [stage, o] : stages) {
      const auto& [n, ms] = time_in[stage];
      if (n > 0) o["avg_days_in_stage"] = ms_to_days(ms) / static_cast<double>(n);
      o["conversion_rate"] = ratio(o["advanced"].as_int64(), o["exits"].as_int64());
    }
  }
  json::array by_rep;
  {  // deals closed in the period per owner: win rate and days from creation to won
    Sql q;
    q << "SELECT p.owner_id, h.next_stage, count(*), "
      << isum(
             "h.left_at_ms - (SELECT min(f.entered_at_ms) FROM _stage_history f WHERE f.opportunity_id = "
             "h.opportunity_id)");
    history_from(q, s);
    q << " WHERE h.left_at_ms >= ";
    q.p(f.from_ms) << " AND h.left_at_ms < ";
    q.p(f.to_ms) << " AND h.next_stage IN ('won', 'lost') AND p._deleted = FALSE";
    where_scope(q, s, "p.owner_id");
    q << " GROUP BY 1, 2 ORDER BY 1";
    std::map<std::string, std::array<int64_t, 3>> per_rep;  // won, lost, ms to close of the won
    Status st = each_row(db, q, [&](Rows& r) {
      auto& v = per_rep[key_text(r, 0)];
      if (r.col_text(1) == "won") {
        v[0] += r.col_int(2);
        v[2] += r.col_int(3);
      } else {
        v[1] += r.col_int(2);
      }
      return true;
    });
    if (!st) return st;
    for (const auto& [rep, v] : per_rep) {
      json::object o;
      o["rep"] = rep;
      o["won"] = v[0];
      o["lost"] = v[1];
      o["win_rate"] = ratio(v[0], v[0] + v[1]);
      o["avg_days_to_close"] = v[0] > 0 ? json::value(ms_to_days(v[2]) / static_cast<double>(v[0])) : nullptr;
      by_rep.push_back(std::move(o));
    }
  }
  json::array stage_rows;
  for (std::string_view st : kAllStages) stage_rows.push_back(std::move(stages[std::string(st)]));
  json::object out;
  out["report"] = "funnel";
  out["period"] = period_json(f);
  out["stages"] = std::move(stage_rows);
  out["by_rep"] = std::move(by_rep);
  return json::value(std::move(out));
}

Result<json::value> stalled(SqlReader& db, const ReportFilter& f, const Scope& s) {
  const int64_t cutoff = f.to_ms - int64_t{f.days} * kDayMs;
  auto where = [&](Sql& q) {
    history_from(q, s);
    q << " WHERE h.left_at_ms IS NULL AND h.entered_at_ms < ";
    q.p(cutoff) << " AND h.stage IN " << stage_list(kOpenStages) << " AND p._deleted = FALSE";
    where_scope(q, s, "p.owner_id");
  };
  json::array totals, deals;
  {
    Sql q;
    q << "SELECT p.currency, count(*), " << isum("p.amount_cents");
    where(q);
    q << " GROUP BY 1 ORDER BY 1";
    Status st = each_row(db, q, [&](Rows& r) {
      totals.push_back(json::object{
          {"currency", text_or_null(r, 0)}, {"deals", r.col_int(1)}, {"amount_cents", r.col_int(2)}});
      return true;
    });
    if (!st) return st;
  }
  {
    Sql q;
    q << "SELECT p.id, p.name, p.owner_id, p.account_id, h.stage, h.entered_at_ms, p.amount_cents, "
         "p.currency, "
         "p.expected_close";
    where(q);
    q << " ORDER BY h.entered_at_ms, p.id LIMIT ";
    q.p(static_cast<int64_t>(f.limit));
    Status st = each_row(db, q, [&](Rows& r) {
      json::object o;
      o["opportunity_id"] = text_or_null(r, 0);
      o["name"] = text_or_null(r, 1);
      o["owner"] = text_or_null(r, 2);
      o["account_id"] = text_or_null(r, 3);
      o["stage"] = text_or_null(r, 4);
      o["in_stage_since"] = r.col_int(5);
      o["days_in_stage"] = ms_to_days(f.to_ms - r.col_int(5));
      o["amount_cents"] = r.col_int(6);
      o["currency"] = text_or_null(r, 7);
      o["expected_close"] = r.col_null(8) ? json::value(nullptr) : json::value(r.col_int(8));
      deals.push_back(std::move(o));
      return true;
    });
    if (!st) return st;
  }
  json::object out;
  out["report"] = "stalled";
  out["as_of"] = f.to_ms;
  out["days"] = f.days;
  out["totals"] = std::move(totals);
  out["deals"] = std::move(deals);
  return json::value(std::move(out));
}

Result<json::value> forecast(SqlReader& db, const ReportFilter& f, const Scope& s) {
  struct Month {
    int64_t open_deals = 0, pipeline = 0, weighted_bp = 0, won_deals = 0, won = 0;
  };
  std::map<std::pair<std::string, std::string>, Month> months;  // (month or "" unscheduled, currency)
  {  // open deals by expected close, weighted by their stage's probability
    Sql q;
    q << "SELECT CASE WHEN p.expected_close IS NULL THEN NULL ELSE "
      << bucket(TimeFormat::kMonth, "p.expected_close", s) << " END, p.currency, count(*), "
      << isum("p.amount_cents") << ", " << isum("p.amount_cents * " + probability_sql())
      << " FROM opportunity p LEFT JOIN _stage_probability sp ON sp.stage = p.stage";
    join_account(q, s, "p");
    q << " WHERE p._deleted = FALSE AND p.stage IN " << stage_list(kOpenStages)
      << " AND (p.expected_close IS NULL OR (p.expected_close >= ";
    q.p(f.from_ms) << " AND p.expected_close < ";
    q.p(f.to_ms) << "))";
    where_scope(q, s, "p.owner_id");
    q << " GROUP BY 1, 2";
    Status st = each_row(db, q, [&](Rows& r) {
      Month& m = months[{key_text(r, 0), key_text(r, 1)}];
      m.open_deals += r.col_int(2);
      m.pipeline += r.col_int(3);
      m.weighted_bp += r.col_int(4);
      return true;
    });
    if (!st) return st;
  }
  {  // won in the period, by the month it was won
    Sql q;
    q << "SELECT " << bucket(TimeFormat::kMonth, "h.entered_at_ms", s) << ", p.currency, count(*), "
      << isum("p.amount_cents");
    history_from(q, s);
    q << " WHERE h.stage = 'won' AND h.entered_at_ms >= ";
    q.p(f.from_ms) << " AND h.entered_at_ms < ";
    q.p(f.to_ms) << " AND p._deleted = FALSE";
    where_scope(q, s, "p.owner_id");
    q << " GROUP BY 1, 2";
    Status st = each_row(db, q, [&](Rows& r) {
      Month& m = months[{key_text(r, 0), key_text(r, 1)}];
      m.won_deals += r.col_int(2);
      m.won += r.col_int(3);
      return true;
    });
    if (!st) return st;
  }
  Result<std::map<std::string, int>> probs = stage_probabilities(db);
  if (!probs) return probs.status();
  json::array rows;
  for (const auto& [key, m] : months) {
    json::object o;
    o["month"] = key.first.empty() ? json::value(nullptr) : json::value(key.first);
    o["currency"] = key.second;
    o["open_deals"] = m.open_deals;
    o["pipeline_cents"] = m.pipeline;
    o["weighted_cents"] = (m.weighted_bp + 5000) / 10000;
    o["won_deals"] = m.won_deals;
    o["won_cents"] = m.won;
    rows.push_back(std::move(o));
  }
  // Unscheduled deals (no expected close) last.
  std::stable_partition(rows.begin(), rows.end(),
                        [](const json::value& v) { return !v.at("month").is_null(); });
  json::object p;
  for (const auto& [stage, bp] : *probs) p[stage] = bp;
  json::object out;
  out["report"] = "forecast";
  out["period"] = period_json(f);
  out["probabilities_bp"] = std::move(p);
  out["months"] = std::move(rows);
  return json::value(std::move(out));
}

// ---- Reports on leads, service cases and tasks (schema 3)

// The one billable rule (rules.h, case_billable) as an SQL function of the report connection, so the
// reports count exactly what the device and the API show: fs_case_billable(has_asset, warranty_end_at,
// opened_at).
// PostgreSQL has the same function in its DDL (pg_store.cc), written in SQL.
Status register_case_billable(SqlReader& reader) {
  if (reader.sqlite_db() == nullptr) return Status::ok();
  Db& db = *reader.sqlite_db();
  auto fn = [](sqlite3_context* ctx, int, sqlite3_value** v) {
    const bool has_asset = sqlite3_value_int64(v[0]) != 0;
    const std::optional<int64_t> warranty =
        sqlite3_value_type(v[1]) == SQLITE_NULL ? std::nullopt : std::optional(sqlite3_value_int64(v[1]));
    sqlite3_result_int(ctx, case_billable(has_asset, warranty, sqlite3_value_int64(v[2])) ? 1 : 0);
  };
  if (sqlite3_create_function_v2(db.raw(), "fs_case_billable", 3, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                 fn, nullptr, nullptr, nullptr) != SQLITE_OK)
    return Status(ErrorCode::kInternal, "cannot register fs_case_billable");
  return Status::ok();
}

double avg_days(int64_t sum_ms, int64_t n) {
  return n == 0 ? 0.0 : ms_to_days(sum_ms) / static_cast<double>(n);
}

// Leads created in the period, by source: how many, how many converted (by the period's end), disqualified
// or still open then (neither), the conversion rate (converted / created) and the average days from creation
// to conversion. A lead is in scope by its own territory and owner.
Result<json::value> leads(SqlReader& db, const ReportFilter& f, const Scope& s) {
  Sql q;
  // Converted by the period's end: the status says so and the conversion time is before the end.
  const std::string done =
      "l.status = 'converted' AND l.converted_at IS NOT NULL AND l.converted_at < " + std::to_string(f.to_ms);
  q << "SELECT l.source, count(*), " << count_if(done) << ", " << count_if("l.status = 'disqualified'")
    << ", " << count_if("l.status <> 'disqualified' AND NOT (" + done + ")") << ", "
    << isum("CASE WHEN " + done + " THEN l.converted_at - l.created_at ELSE 0 END")
    << " FROM lead l WHERE l.created_at >= ";
  q.p(f.from_ms) << " AND l.created_at < ";
  q.p(f.to_ms) << " AND l._deleted = FALSE";
  if (s.record_territories) q.and_in("l.territory_id", *s.record_territories);
  if (!s.reps.empty()) q.and_in("l.owner_id", s.reps);
  q << " GROUP BY 1 ORDER BY 1";
  json::array by_source;
  int64_t created = 0, converted = 0, disqualified = 0, open = 0, convert_ms = 0;
  auto figures = [](int64_t c, int64_t conv, int64_t dis, int64_t op, int64_t ms) {
    json::object o;
    o["created"] = c;
    o["converted"] = conv;
    o["disqualified"] = dis;
    o["open"] = op;
    o["conversion_rate"] = ratio(conv, c);
    o["avg_days_to_convert"] = avg_days(ms, conv);
    return o;
  };
  Status st = each_row(db, q, [&](Rows& r) {
    json::object o = figures(r.col_int(1), r.col_int(2), r.col_int(3), r.col_int(4), r.col_int(5));
    o["source"] = text_or_null(r, 0);
    by_source.push_back(std::move(o));
    created += r.col_int(1);
    converted += r.col_int(2);
    disqualified += r.col_int(3);
    open += r.col_int(4);
    convert_ms += r.col_int(5);
    return true;
  });
  if (!st) return st;
  json::object out;
  out["report"] = "leads";
  out["period"] = period_json(f);
  out["total"] = figures(created, converted, disqualified, open, convert_ms);
  out["by_source"] = std::move(by_source);
  return json::value(std::move(out));
}

// Service cases opened in the period (in scope by their account's territory; a rep's: assigned to them):
// per priority and status; per priority the resolved ones and their average days from opening to
// resolution, the SLA breaches (a due time passed before resolution, or unresolved at the period's end),
// the billable ones (rules.h); and the open cases past due at the period's end, most overdue first.
Result<json::value> service_cases(SqlReader& db, const ReportFilter& f, const Scope& s) {
  if (Status st = register_case_billable(db); !st) return st;
  auto from = [&](Sql& q) {
    q << " FROM service_case c";
    join_account(q, s, "c");
    // Named: the planner takes the primary key's index and then reads each asset's row for its warranty
    // (half the report's time on the bench store).
    q << " LEFT JOIN asset x" << (s.dialect == SqlDialect::kSqlite ? " INDEXED BY idx_report_asset" : "")
      << " ON x.id = c.asset_id WHERE c.opened_at >= ";
    q.p(f.from_ms) << " AND c.opened_at < ";
    q.p(f.to_ms) << " AND c._deleted = FALSE";
    where_scope(q, s, "c.assignee_id");
  };
  // Resolved by the period's end: a resolution time before it (a reopened case has its resolution time
  // cleared or moved on by the rules, so the status is not what decides).
  const std::string resolved =
      "(c.resolved_at IS NOT NULL AND c.resolved_at < " + std::to_string(f.to_ms) + ")";
  const std::string breached = "(c.due_at IS NOT NULL AND (CASE WHEN " + resolved +
                               " THEN c.resolved_at > c.due_at ELSE c.due_at < " + std::to_string(f.to_ms) +
                               " END))";
  std::map<std::string, json::object> priorities;
  std::map<std::string, int64_t> total_status;
  int64_t opened = 0, resolved_n = 0, resolve_ms = 0, breaches = 0, billable = 0;
  {
    Sql q;
    q << "SELECT c.priority, c.status, count(*), " << count_if(resolved) << ", "
      << isum("CASE WHEN " + resolved + " THEN c.resolved_at - c.opened_at ELSE 0 END") << ", "
      << count_if(breached) << ", "
      << isum("fs_case_billable(x.id IS NOT NULL, x.warranty_end_at, c.opened_at)");
    from(q);
    q << " GROUP BY 1, 2";
    Status st = each_row(db, q, [&](Rows& r) {
      json::object& p = priorities[key_text(r, 0)];
      if (p.empty()) {
        p["priority"] = text_or_null(r, 0);
        p["by_status"] = json::object();
        for (const char* k : {"opened", "resolved", "resolve_ms", "sla_breaches", "billable"}) p[k] = 0;
      }
      p["by_status"].as_object()[key_text(r, 1)] = r.col_int(2);
      total_status[key_text(r, 1)] += r.col_int(2);
      const int64_t add[] = {r.col_int(2), r.col_int(3), r.col_int(4), r.col_int(5), r.col_int(6)};
      int i = 0;
      for (const char* k : {"opened", "resolved", "resolve_ms", "sla_breaches", "billable"})
        p[k] = p[k].as_int64() + add[i++];
      opened += add[0];
      resolved_n += add[1];
      resolve_ms += add[2];
      breaches += add[3];
      billable += add[4];
      return true;
    });
    if (!st) return st;
  }
  json::array by_priority;
  for (std::string_view name : {"urgent", "high", "normal", "low"}) {
    auto it = priorities.find(std::string(name));
    if (it == priorities.end()) continue;
    json::object& p = it->second;
    p["avg_days_to_resolve"] = avg_days(p["resolve_ms"].as_int64(), p["resolved"].as_int64());
    p.erase("resolve_ms");
    by_priority.push_back(std::move(p));
  }
  json::array past_due;
  {
    Sql q;
    q << "SELECT c.id, c.subject, c.priority, c.status, c.account_id, c.assignee_id, c.due_at";
    from(q);
    q << " AND NOT " << resolved << " AND c.due_at IS NOT NULL AND c.due_at < ";
    q.p(f.to_ms) << " ORDER BY c.due_at, c.id LIMIT ";
    q.p(static_cast<int64_t>(f.limit));
    Status st = each_row(db, q, [&](Rows& r) {
      json::object o;
      o["case_id"] = text_or_null(r, 0);
      o["subject"] = text_or_null(r, 1);
      o["priority"] = text_or_null(r, 2);
      o["status"] = text_or_null(r, 3);
      o["account_id"] = text_or_null(r, 4);
      o["assignee"] = text_or_null(r, 5);
      o["due_at"] = r.col_int(6);
      o["days_overdue"] = ms_to_days(f.to_ms - r.col_int(6));
      past_due.push_back(std::move(o));
      return true;
    });
    if (!st) return st;
  }
  json::object status;
  for (const auto& [k, n] : total_status) status[k] = n;
  json::object out;
  out["report"] = "service_cases";
  out["period"] = period_json(f);
  out["total"] =
      json::object{{"opened", opened},         {"by_status", std::move(status)},
                   {"resolved", resolved_n},   {"avg_days_to_resolve", avg_days(resolve_ms, resolved_n)},
                   {"sla_breaches", breaches}, {"billable", billable}};
  out["by_priority"] = std::move(by_priority);
  out["open_past_due"] = std::move(past_due);
  return json::value(std::move(out));
}

// Open tasks per owner at the period's end (tasks have no territory: head office sees every owner's, a
// manager the team's and their own, a rep their own): how many are open, how many of them overdue (a due
// time before the period's end), and the oldest due time among those.
Result<json::value> tasks_overdue(SqlReader& db, const ReportFilter& f, const Scope& s) {
  Sql q;
  const std::string overdue_cond = "t.due_at IS NOT NULL AND t.due_at < " + std::to_string(f.to_ms);
  q << "SELECT t.owner_id, count(*), " << count_if(overdue_cond) << ", min(CASE WHEN " << overdue_cond
    << " THEN t.due_at END) FROM task t WHERE t.status = 'open' AND t._deleted = FALSE";
  if (s.owners) q.and_in("t.owner_id", *s.owners);
  q << " GROUP BY 1 ORDER BY 3 DESC, 1";
  json::array by_rep;
  int64_t open = 0, overdue = 0;
  Status st = each_row(db, q, [&](Rows& r) {
    json::object o;
    o["rep"] = text_or_null(r, 0);
    o["open"] = r.col_int(1);
    o["overdue"] = r.col_int(2);
    o["oldest_due_at"] = r.col_null(3) ? json::value(nullptr) : json::value(r.col_int(3));
    by_rep.push_back(std::move(o));
    open += r.col_int(1);
    overdue += r.col_int(2);
    return true;
  });
  if (!st) return st;
  json::object out;
  out["report"] = "tasks_overdue";
  out["as_of"] = f.to_ms;
  out["total"] = json::object{{"open", open}, {"overdue", overdue}};
  out["by_rep"] = std::move(by_rep);
  return json::value(std::move(out));
}

// ---- CSV

enum class Col : uint8_t { kText, kInt, kReal };

struct CsvQuery {
  std::vector<std::string_view> header;
  std::vector<Col> types;
  Sql sql;
};

std::string time_text(std::string_view ms_expr, const Scope& s) {
  return bucket(TimeFormat::kTime, ms_expr, s);
}

CsvQuery csv_query(CsvKind kind, const ReportFilter& f, const Scope& s) {
  CsvQuery c;
  using enum Col;
  Sql& q = c.sql;
  switch (kind) {
    case CsvKind::kOrders:
      c.header = {"order_id",    "order_date",    "status",      "currency",         "rep_id",
                  "account_id",  "account_name",  "territory",   "submitted_at",     "approved_at",
                  "approved_by", "delivery_date", "order_notes", "line_id",          "product_id",
                  "sku",         "product_name",  "quantity",    "unit_price_cents", "discount_bp",
                  "net_cents",   "line_note"};
      c.types = {kText, kText, kText, kText, kText, kText, kText, kText, kText, kText, kText,
                 kText, kText, kText, kText, kText, kText, kInt,  kInt,  kInt,  kInt,  kText};
      q << "SELECT o.id, " << time_text(kOrderDate, s)
        << ", o.status, o.currency, o.rep_id, o.account_id, a.name, "
        << "a.territory_id, " << time_text("o.submitted_at", s) << ", " << time_text("o.approved_at", s)
        << ", o.approved_by, " << time_text("o.delivery_date", s)
        << ", o.notes, l.id, l.product_id, pr.sku, pr.name, l.quantity, l.unit_price_cents, l.discount_bp, "
           "CASE WHEN l.id IS NULL THEN NULL ELSE "
        << kLineNet
        << " END, l.note FROM \"order\" o JOIN account a ON a.id = o.account_id LEFT JOIN order_line l ON "
           "l.order_id = o.id AND l._deleted = FALSE LEFT JOIN product pr ON pr.id = l.product_id WHERE "
        << kOrderDate << " >= ";
      q.p(f.from_ms) << " AND " << kOrderDate << " < ";
      q.p(f.to_ms) << " AND o._deleted = FALSE";
      where_scope(q, s, "o.rep_id");
      q << " ORDER BY " << kOrderDate << ", o.id";
      break;
    case CsvKind::kVisits:
      c.header = {"visit_id",  "check_in_at", "check_out_at",      "rep_id",   "account_id", "account_name",
                  "territory", "outcome",     "calendar_event_id", "latitude", "longitude",  "notes"};
      c.types = {kText, kText, kText, kText, kText, kText, kText, kText, kText, kReal, kReal, kText};
      q << "SELECT v.id, " << time_text("v.check_in_at", s) << ", " << time_text("v.check_out_at", s)
        << ", v.rep_id, v.account_id, a.name, a.territory_id, v.outcome, v.calendar_event_id, "
        << real_text("v.latitude", s.dialect) << ", " << real_text("v.longitude", s.dialect)
        << ", v.notes FROM visit v JOIN account a ON a.id = v.account_id WHERE v.check_in_at >= ";
      q.p(f.from_ms) << " AND v.check_in_at < ";
      q.p(f.to_ms) << " AND v._deleted = FALSE";
      where_scope(q, s, "v.rep_id");
      q << " ORDER BY v.check_in_at, v.id";
      break;
    case CsvKind::kAccounts:
      c.header = {"account_id", "name",    "territory",          "address",    "city", "phone",
                  "email",      "segment", "credit_limit_cents", "created_by", "notes"};
      c.types = {kText, kText, kText, kText, kText, kText, kText, kText, kInt, kText, kText};
      q << "SELECT a.id, a.name, a.territory_id, a.address, a.city, a.phone, a.email, a.segment, "
           "a.credit_limit_cents, a.created_by, a.notes FROM account a WHERE a._deleted = FALSE";
      if (s.account_territories) q.and_in("a.territory_id", *s.account_territories);
      q << " ORDER BY a.territory_id, a.id";
      break;
    case CsvKind::kLeads:
      c.header = {"lead_id",   "created_at", "person_name",  "company_name",
                  "email",     "phone",      "source",       "owner_id",
                  "territory", "status",     "converted_at", "disqualify_reason"};
      c.types = {kText, kText, kText, kText, kText, kText, kText, kText, kText, kText, kText, kText};
      q << "SELECT l.id, " << time_text("l.created_at", s)
        << ", l.person_name, l.company_name, l.email, l.phone, l.source, l.owner_id, l.territory_id, "
           "l.status, "
        << time_text("l.converted_at", s) << ", l.disqualify_reason FROM lead l WHERE l.created_at >= ";
      q.p(f.from_ms) << " AND l.created_at < ";
      q.p(f.to_ms) << " AND l._deleted = FALSE";
      if (s.record_territories) q.and_in("l.territory_id", *s.record_territories);
      if (!s.reps.empty()) q.and_in("l.owner_id", s.reps);
      q << " ORDER BY l.created_at, l.id";
      break;
    case CsvKind::kServiceCases:
      c.header = {"case_id",   "opened_at", "subject",     "priority", "status",      "account_id",
                  "territory", "asset_id",  "assignee_id", "due_at",   "resolved_at", "billable"};
      c.types = {kText, kText, kText, kText, kText, kText, kText, kText, kText, kText, kText, kInt};
      q << "SELECT c.id, " << time_text("c.opened_at", s)
        << ", c.subject, c.priority, c.status, c.account_id, a.territory_id, c.asset_id, c.assignee_id, "
        << time_text("c.due_at", s) << ", " << time_text("c.resolved_at", s)
        << ", fs_case_billable(x.id IS NOT NULL, x.warranty_end_at, c.opened_at) FROM service_case c LEFT "
           "JOIN "
           "account a ON a.id = c.account_id LEFT JOIN asset x ON x.id = c.asset_id WHERE c.opened_at >= ";
      q.p(f.from_ms) << " AND c.opened_at < ";
      q.p(f.to_ms) << " AND c._deleted = FALSE";
      where_scope(q, s, "c.assignee_id");
      q << " ORDER BY c.opened_at, c.id";
      break;
  }
  return c;
}

// The company's time zone: the one SQLite's rollup counts days in, or the one PostgreSQL's store keeps
// (PgCentralStore::Options::time_zone); empty when the store has none.
Result<std::string> store_company_zone(SqlReader& db) {
  if (db.dialect() == SqlDialect::kSqlite) return store_rollup_zone(db);
  Rows z = db.query("SELECT name FROM _report_zone WHERE id = 1");
  if (z.step()) return z.col_text(0);
  if (!z.ok()) return z.status();
  return std::string();
}

// The filter with company_zone resolved to the store's zone by name (reports.h).
Result<ReportFilter> with_company_zone(SqlReader& db, const ReportFilter& filter) {
  ReportFilter f = filter;
  if (!f.company_zone) return f;
  Result<std::string> zone = store_company_zone(db);
  if (!zone) return zone.status();
  f.time_zone = zone->empty() ? "UTC" : *zone;
  f.tz_offset_minutes = 0;
  return f;
}

}  // namespace

Result<ReportFilter> parse_filter(const std::vector<std::pair<std::string, std::string>>& query,
                                  int64_t now_ms, std::string* bad_field) {
  ReportFilter f;
  f.to_ms = now_ms;
  bool from_set = false, offset_set = false;
  auto bad = [&](const std::string& field, const std::string& why) {
    if (bad_field) *bad_field = field;
    return Status(ErrorCode::kInvalidArgument, field + ": " + why);
  };
  auto number = [](std::string_view v, int64_t& out) {
    auto r = std::from_chars(v.data(), v.data() + v.size(), out);
    return r.ec == std::errc() && r.ptr == v.data() + v.size() && !v.empty();
  };
  auto add_list = [](std::vector<std::string>& list, std::string_view v) {
    size_t start = 0;
    while (start <= v.size()) {
      size_t comma = v.find(',', start);
      if (comma == std::string_view::npos) comma = v.size();
      if (comma > start) list.emplace_back(v.substr(start, comma - start));
      start = comma + 1;
    }
  };
  for (const auto& [name, value] : query) {
    int64_t n = 0;
    if (name == "from" || name == "to" || name == "days" || name == "tz_offset_minutes" || name == "limit") {
      if (!number(value, n)) return bad(name, "not an integer");
      if (name == "from") {
        f.from_ms = n;
        from_set = true;
      } else if (name == "to") {
        f.to_ms = n;
      } else if (name == "days") {
        if (n < 1 || n > kMaxDays) return bad(name, "must be 1.." + std::to_string(kMaxDays));
        f.days = static_cast<int>(n);
      } else if (name == "tz_offset_minutes") {
        if (n < -kMaxTzOffsetMinutes || n > kMaxTzOffsetMinutes) return bad(name, "must be -840..840");
        f.tz_offset_minutes = static_cast<int>(n);
        offset_set = true;
      } else {
        if (n < 1 || n > static_cast<int64_t>(kMaxListRows))
          return bad(name, "must be 1.." + std::to_string(kMaxListRows));
        f.limit = static_cast<size_t>(n);
      }
    } else if (name == "tz") {
      if (value.empty() || value.size() > kMaxTimeZoneName) return bad(name, "not a time zone's name");
      if (Result<LocalTime> zone = LocalTime::zone(value, 0, 1); !zone)
        return bad(name, zone.status().message());
      f.time_zone = value;
    } else if (name == "territory") {
      add_list(f.territories, value);
    } else if (name == "rep") {
      add_list(f.reps, value);
    } else if (name != "bom") {
      return bad(name, "unknown parameter");
    }
  }
  if (!f.time_zone.empty() && offset_set) return bad("tz", "give tz or tz_offset_minutes, not both");
  f.company_zone = f.time_zone.empty() && !offset_set;
  if (!from_set) f.from_ms = f.to_ms - 90 * kDayMs;
  if (f.territories.size() > kMaxFilterValues) return bad("territory", "at most 100 values");
  if (f.reps.size() > kMaxFilterValues) return bad("rep", "at most 100 values");
  if (f.to_ms <= f.from_ms) return bad("to", "the period ends before it begins");
  if (f.to_ms - f.from_ms > kMaxPeriodMs) return bad("to", "the period is longer than five years");
  return f;
}

Result<boost::json::value> run_report(Db& db, std::string_view name, const ReportFilter& filter,
                                      const Principal& caller) {
  return run_report(*sqlite_reader_of(db), name, filter, caller);
}

Result<boost::json::value> run_report(SqlReader& db, std::string_view name,
                                      const ReportFilter& company_filter, const Principal& caller) {
  using Fn = Result<json::value> (*)(SqlReader&, const ReportFilter&, const Scope&);
  static const std::pair<std::string_view, Fn> kReports[] = {{"revenue", &revenue},
                                                             {"abc", &abc},
                                                             {"activity", &activity},
                                                             {"plan_vs_execution", &plan_vs_execution},
                                                             {"funnel", &funnel},
                                                             {"stalled", &stalled},
                                                             {"forecast", &forecast},
                                                             {"leads", &leads},
                                                             {"service_cases", &service_cases},
                                                             {"tasks_overdue", &tasks_overdue}};
  const Fn* fn = nullptr;
  for (const auto& [n, f] : kReports)
    if (n == name) fn = &f;
  if (fn == nullptr)
    return Status(ErrorCode::kInvalidArgument, "report: no report named '" + std::string(name) + "'");
  Result<ReportFilter> resolved = with_company_zone(db, company_filter);
  if (!resolved) return resolved.status();
  const ReportFilter& filter = *resolved;
  if (Status s = check_filter(filter); !s) return s;
  Result<Scope> scope = resolve_scope(filter, caller);
  if (!scope) return scope.status();
  Result<LocalTime> local = local_time_of(filter);
  if (!local) return Status(ErrorCode::kInvalidArgument, "tz: " + local.status().message());
  scope->local = std::move(*local);
  scope->dialect = db.dialect();
  Snapshot snapshot(db);
  if (!snapshot.status()) return snapshot.status();
  return (*fn)(db, filter, *scope);
}

Result<CsvKind> csv_kind(std::string_view name) {
  if (name == "orders") return CsvKind::kOrders;
  if (name == "visits") return CsvKind::kVisits;
  if (name == "accounts") return CsvKind::kAccounts;
  if (name == "leads") return CsvKind::kLeads;
  if (name == "service_cases") return CsvKind::kServiceCases;
  return Status(ErrorCode::kInvalidArgument, "export: no export named '" + std::string(name) + "'");
}

struct CsvExport::State {
  State(std::unique_ptr<SqlReader> own, SqlReader& db, size_t chunk_bytes)
      : owned(std::move(own)),
        snapshot(db),
        sink([this](std::string_view c) {
          pending.append(c);
          return true;
        }),
        out(sink, chunk_bytes),
        chunk_bytes(chunk_bytes) {}
  std::unique_ptr<SqlReader> owned;  // the reader over a caller's SQLite connection (start(Db&, ...))
  CsvQuery query;
  Snapshot snapshot;  // every chunk reads the snapshot the first one saw
  std::optional<Rows> stmt;
  std::string pending;  // what the writer has handed over and next() not yet returned
  CsvWriter::Sink sink;
  CsvWriter out;
  size_t chunk_bytes;
  bool done = false;
};

CsvExport::CsvExport(std::unique_ptr<State> state) : state_(std::move(state)) {}
CsvExport::~CsvExport() = default;

Result<std::unique_ptr<CsvExport>> CsvExport::start(Db& db, CsvKind kind, const ReportFilter& company_filter,
                                                    const Principal& caller, const CsvOptions& options) {
  return start_on(sqlite_reader_of(db), nullptr, kind, company_filter, caller, options);
}

Result<std::unique_ptr<CsvExport>> CsvExport::start(SqlReader& db, CsvKind kind,
                                                    const ReportFilter& company_filter,
                                                    const Principal& caller, const CsvOptions& options) {
  return start_on(nullptr, &db, kind, company_filter, caller, options);
}

Result<std::unique_ptr<CsvExport>> CsvExport::start_on(std::unique_ptr<SqlReader> owned, SqlReader* reader,
                                                       CsvKind kind, const ReportFilter& company_filter,
                                                       const Principal& caller, const CsvOptions& options) {
  SqlReader& db = owned ? *owned : *reader;
  Result<ReportFilter> resolved = with_company_zone(db, company_filter);
  if (!resolved) return resolved.status();
  const ReportFilter& filter = *resolved;
  if (Status s = check_filter(filter); !s) return s;
  Result<Scope> scope = resolve_scope(filter, caller);
  if (!scope) return scope.status();
  Result<LocalTime> local = local_time_of(filter);
  if (!local) return Status(ErrorCode::kInvalidArgument, "tz: " + local.status().message());
  scope->local = std::move(*local);
  scope->dialect = db.dialect();
  if (kind == CsvKind::kServiceCases)
    if (Status st = register_case_billable(db); !st) return st;
  auto state = std::make_unique<State>(std::move(owned), db, std::max<size_t>(options.chunk_bytes, 1));
  if (!state->snapshot.status()) return state->snapshot.status();
  state->query = csv_query(kind, filter, *scope);
  state->stmt.emplace(db.stream(state->query.sql.text, values_of(state->query.sql.params), kCsvFetchRows));
  if (!state->stmt->ok()) return state->stmt->status();
  if (options.bom) state->out.bom();
  for (std::string_view h : state->query.header) state->out.text(h);
  state->out.end_row();
  return std::unique_ptr<CsvExport>(new CsvExport(std::move(state)));
}

Result<std::optional<std::string>> CsvExport::next() {
  State& s = *state_;
  while (!s.done && s.pending.size() < s.chunk_bytes) {
    if (!s.stmt->step()) {
      if (!s.stmt->status()) return s.stmt->status();
      (void)s.out.flush();
      s.done = true;
      break;
    }
    const std::vector<Col>& types = s.query.types;
    for (size_t i = 0; i < types.size(); ++i) {
      const int col = static_cast<int>(i);
      if (s.stmt->col_null(col)) {
        s.out.empty();
      } else if (types[i] == Col::kInt) {
        s.out.integer(s.stmt->col_int(col));
      } else if (types[i] == Col::kReal) {
        s.out.raw_number(s.stmt->col_text(col));
      } else {
        s.out.text(s.stmt->col_text(col));
      }
    }
    s.out.end_row();
  }
  if (s.pending.empty()) return std::optional<std::string>();
  std::string chunk;
  chunk.swap(s.pending);
  return std::optional<std::string>(std::move(chunk));
}

Status export_csv(Db& db, CsvKind kind, const ReportFilter& filter, const Principal& caller,
                  const CsvOptions& options, const std::function<bool(std::string_view chunk)>& sink) {
  return export_csv(*sqlite_reader_of(db), kind, filter, caller, options, sink);
}

Status export_csv(SqlReader& db, CsvKind kind, const ReportFilter& filter, const Principal& caller,
                  const CsvOptions& options, const std::function<bool(std::string_view chunk)>& sink) {
  Result<std::unique_ptr<CsvExport>> e = CsvExport::start(db, kind, filter, caller, options);
  if (!e) return e.status();
  for (;;) {
    Result<std::optional<std::string>> chunk = (*e)->next();
    if (!chunk) return chunk.status();
    if (!*chunk || !sink(**chunk)) return Status::ok();  // done, or the reader went away
  }
}

Result<std::map<std::string, int>> stage_probabilities(Db& db) {
  return stage_probabilities(*sqlite_reader_of(db));
}

Result<std::map<std::string, int>> stage_probabilities(SqlReader& db) {
  std::map<std::string, int> out;
  for (const auto& [stage, bp] : kDefaultStageProbabilityBp) out[std::string(stage)] = bp;
  Sql q;
  q << "SELECT stage, probability_bp FROM _stage_probability";
  Status st = each_row(db, q, [&](Rows& r) {
    auto it = out.find(r.col_text(0));
    if (it != out.end()) it->second = static_cast<int>(r.col_int(1));
    return true;
  });
  if (!st) return st;
  return out;
}

Status set_stage_probabilities(Db& db, const Principal& caller, const std::map<std::string, int>& bp) {
  return set_stage_probabilities(*sqlite_reader_of(db), caller, bp);
}

Status set_stage_probabilities(SqlReader& db, const Principal& caller, const std::map<std::string, int>& bp) {
  if (caller.role != schema::Role::kHeadOffice)
    return Status(ErrorCode::kPermissionDenied, "only head office sets the forecast's probabilities");
  for (const auto& [stage, v] : bp) {
    if (std::find(std::begin(kAllStages), std::end(kAllStages), stage) == std::end(kAllStages))
      return Status(ErrorCode::kInvalidArgument, "stage: no stage named '" + stage + "'");
    if (v < 0 || v > 10000)
      return Status(ErrorCode::kInvalidArgument, "probability_bp: " + stage + " must be 0..10000");
  }
  if (Status s = db.begin_write(); !s) return s;
  for (const auto& [stage, v] : bp) {
    if (Status s = db.exec(
            "INSERT INTO _stage_probability (stage, probability_bp) VALUES (?, ?) ON CONFLICT (stage) DO "
            "UPDATE SET probability_bp = excluded.probability_bp",
            {Value::text(stage), Value::integer(v)});
        !s) {
      db.rollback();
      return s;
    }
  }
  if (Status s = db.commit(); !s) {
    db.rollback();
    return s;
  }
  return Status::ok();
}

Result<std::unique_ptr<Db>> open_report_db(const std::string& path, int busy_timeout_ms) {
  Result<std::unique_ptr<Db>> db =
      Db::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, busy_timeout_ms);
  if (!db) return db.status();
  if (Status s = (*db)->exec("PRAGMA query_only = 1"); !s) return s;
  // A report seeks an index once per order, visit or appointment of the period; through SQLite's default
  // 2 MiB page cache most seeks were a read() of a page the kernel already had (2-3x slower on a 110 MiB
  // store). A larger cache and a read-only mapping of the file keep them in memory; both are limits, not
  // allocations made up front.
  if (Status s = (*db)->exec("PRAGMA cache_size = -" + std::to_string(kReportCacheKiB)); !s) return s;
  if (Status s = (*db)->exec("PRAGMA mmap_size = " + std::to_string(kReportMmapBytes)); !s) return s;
  return db;
}

Result<std::unique_ptr<Db>> open_settings_db(const std::string& path, int busy_timeout_ms) {
  return Db::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, busy_timeout_ms);
}

}  // namespace fieldsync::server::reports

// Head-office reports and CSV exports (server/include/fieldsync/server/reports.h) on a small store seeded
// through the real write path (SyncServer::apply_local on a SqliteCentralStore), checked against figures
// worked out by hand in the comments beside the seed.
//
// Built twice: reports_test on SQLite, and pg_reports_test (FIELDSYNC_REPORTS_ON_POSTGRESQL) on a
// PgCentralStore in a database of its own per test (the pg_cluster fixture): the same figures from the same
// seed, except the tests of SQLite's own store files (older formats, the visit rollup of the company zone).
#include "fieldsync/server/reports.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <boost/json.hpp>
#include <filesystem>
#include <string>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/server.h"
#include "sql_reader.h"
#include "support/sync_fixtures.h"
#if FIELDSYNC_REPORTS_ON_POSTGRESQL
#include "fieldsync/server/pg_store.h"
#include "support/pg_test_db.h"
// The same tests under suite names of their own, so that ctest tells the two builds' tests apart.
#define ReportsTest PgReportsTest
#define ReportsFacts PgReportsFacts
#define ReportsTimeZone PgReportsTimeZone
#define NewEntityReports PgNewEntityReports
#endif

namespace fieldsync::server::reports {
namespace {

namespace json = boost::json;
using schema::Role;

constexpr int64_t kMin = 60 * 1000;
constexpr int64_t kHour = 60 * kMin;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kJan1 = 1767225600000;  // 2026-01-01T00:00Z
constexpr int64_t kFeb1 = kJan1 + 31 * kDay;
constexpr int64_t kMar1 = kFeb1 + 28 * kDay;
constexpr int64_t kApr1 = kMar1 + 31 * kDay;
constexpr int64_t kJul1 = kApr1 + 91 * kDay;
constexpr int64_t kDec1 = kJan1 - 31 * kDay;  // 2025-12-01
int64_t jan(int d, int64_t at = 0) {
  return kJan1 + (d - 1) * kDay + at;
}
int64_t feb(int d, int64_t at = 0) {
  return kFeb1 + (d - 1) * kDay + at;
}
int64_t mar(int d, int64_t at = 0) {
  return kMar1 + (d - 1) * kDay + at;
}

// Where one test's central store lives, removed at the end: a file in a temporary directory, or a PostgreSQL
// database of its own.
class StorePlace {
 public:
#if FIELDSYNC_REPORTS_ON_POSTGRESQL
  std::string location() const {
    return db_.url();
  }

 private:
  fieldsync::testing::PgTestDatabase db_;
#else
  StorePlace() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-reports-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~StorePlace() {
    std::filesystem::remove_all(path_);
  }
  std::string location() const {
    return (std::filesystem::path(path_) / "central.db").string();
  }

 private:
  std::string path_;
#endif
};

// A report connection to the store at `location`: as the API opens one (open_report_db; on PostgreSQL a
// read-only session).
std::unique_ptr<SqlReader> reader(const std::string& location) {
#if FIELDSYNC_REPORTS_ON_POSTGRESQL
  auto conn = pg::Conn::open(location);
  EXPECT_TRUE(conn.is_ok()) << conn.status().to_string();
  EXPECT_TRUE((*conn)->exec_script("SET default_transaction_read_only = on").is_ok());
  return pg_reader(std::move(*conn));
#else
  return sqlite_reader(open_report_db(location).value());
#endif
}

// A writable connection (settings, and the SQL some tests write rows with).
std::unique_ptr<SqlReader> writer(const std::string& location) {
#if FIELDSYNC_REPORTS_ON_POSTGRESQL
  auto conn = pg::Conn::open(location);
  EXPECT_TRUE(conn.is_ok()) << conn.status().to_string();
  return pg_reader(std::move(*conn));
#else
  return sqlite_reader(open_settings_db(location).value());
#endif
}

using Fields = std::vector<std::pair<uint16_t, Value>>;
Value text(const std::string& s) {
  return Value::text(s);
}
Value num(int64_t v) {
  return Value::integer(v);
}
Value ref(const RecordId& id) {
  return Value::text(id.to_string());
}

// Head office writing through the server's own path, one transaction per call, versions at the given
// times (so stage moves carry the times the funnel measures).
class Seed {
 public:
  explicit Seed(const std::string& path, NodeId node = 77, std::optional<std::string> time_zone = {})
      : node_(node), ids_(node) {
#if FIELDSYNC_REPORTS_ON_POSTGRESQL
    // (No rollup on PostgreSQL: every zone's days come from the visits; the zone names the company's days.)
    PgCentralStore::Options options;
    options.now_ms = [] { return kJul1; };
    options.time_zone = std::move(time_zone);
    store_ = PgCentralStore::open(path, options).value();
#else
    SqliteCentralStore::Options options;
    options.now_ms = [] { return kJul1; };
    options.time_zone = std::move(time_zone);
    store_ = SqliteCentralStore::open(path, options).value();
#endif
    server_ = std::make_unique<SyncServer>(*store_, auth_, ServerConfig{});
  }
  RecordId create(EntityId e, int64_t at, const Fields& fields) {
    RecordId id = ids_.next(at);
    ClientTxn t = txn(at);
    add(t, ChangeOp::kCreate, e, id, 0, Value(), at);
    for (const auto& [f, v] : fields) add(t, ChangeOp::kSet, e, id, f, v, at);
    apply(t);
    return id;
  }
  void set(EntityId e, const RecordId& id, int64_t at, const Fields& fields) {
    ClientTxn t = txn(at);
    for (const auto& [f, v] : fields) add(t, ChangeOp::kSet, e, id, f, v, at);
    apply(t);
  }
  // An order with its lines (product, quantity, unit price, discount bp) in one transaction.
  RecordId order(const RecordId& account, const std::string& rep, const std::string& status,
                 std::optional<int64_t> submitted_at, int64_t at,
                 const std::vector<std::tuple<RecordId, int64_t, int64_t, int64_t>>& lines) {
    RecordId id = ids_.next(at);
    ClientTxn t = txn(at);
    add(t, ChangeOp::kCreate, EntityId::kOrder, id, 0, Value(), at);
    add(t, ChangeOp::kSet, EntityId::kOrder, id, 1, ref(account), at);
    add(t, ChangeOp::kSet, EntityId::kOrder, id, 2, text(rep), at);
    add(t, ChangeOp::kSet, EntityId::kOrder, id, 3, text(status), at);
    add(t, ChangeOp::kSet, EntityId::kOrder, id, 4, text("EUR"), at);
    if (submitted_at) add(t, ChangeOp::kSet, EntityId::kOrder, id, 6, num(*submitted_at), at);
    for (const auto& [product, qty, price, bp] : lines) {
      RecordId line = ids_.next(at);
      add(t, ChangeOp::kCreate, EntityId::kOrderLine, line, 0, Value(), at);
      add(t, ChangeOp::kSet, EntityId::kOrderLine, line, 1, ref(id), at);
      add(t, ChangeOp::kSet, EntityId::kOrderLine, line, 2, ref(product), at);
      add(t, ChangeOp::kSet, EntityId::kOrderLine, line, 3, num(qty), at);
      add(t, ChangeOp::kSet, EntityId::kOrderLine, line, 4, num(price), at);
      if (bp) add(t, ChangeOp::kSet, EntityId::kOrderLine, line, 5, num(bp), at);
    }
    apply(t);
    return id;
  }
  void remove(EntityId e, const RecordId& id, int64_t at) {
    ClientTxn t = txn(at);
    add(t, ChangeOp::kDelete, e, id, 0, Value(), at);
    apply(t);
  }

 private:
  ClientTxn txn(int64_t at) {
    ClientTxn t;
    t.node = node_;
    t.node_seq = ++node_seq_;
    t.created_at_ms = at;
    return t;
  }
  void add(ClientTxn& t, ChangeOp op, EntityId e, const RecordId& id, uint16_t field, Value v, int64_t at) {
    Change c{op, e, id, field};
    c.value = std::move(v);
    c.version = Version{make_hlc(at, ++logical_), node_};
    t.changes.push_back(std::move(c));
  }
  void apply(const ClientTxn& t) {
    Result<protocol::TxnResult> r =
        server_->apply_local(t, Principal{"ho", Role::kHeadOffice, {}, {}}, kJul1);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_EQ(r->outcome, protocol::TxnOutcome::kApplied) << r->message;
  }
  NodeId node_;
  testing_support::TokenAuth auth_;
  std::unique_ptr<CentralStore> store_;
  std::unique_ptr<SyncServer> server_;
  RecordIdGenerator ids_;
  uint64_t node_seq_ = 0;
  uint16_t logical_ = 0;
};

const Principal kHeadOffice{"ho", Role::kHeadOffice, {}, {}};
const Principal kRep1{"r1", Role::kRep, {"north"}, {}};
const Principal kRep2{"r2", Role::kRep, {"south"}, {}};
const Principal kManager{"m1", Role::kManager, {"north"}, {"r1"}};

// The seed. Territories north (rep r1, manager m1 with r1 in the team) and south (rep r2).
//   accounts: A1 Alpha, A2 Beta, A5 "Delta, ""the"" shop" in north; A3 Gamma, A4 =HYPERLINK("x") in south
//   orders (EUR; date = submitted):
//     O1 A1 r1 Jan 10 submitted: P1 10 x 1000 + P2 5 x 333 -10% (gross 1665, discount 167) = 11498
//     O2 A3 r2 Feb 5  approved:  P1 20 x 1000 = 20000
//     O3 A2 r1 Feb 20 submitted: P2 1 x 5000 = 5000
//     O4 A1 r1 draft, no date:   P1 100 x 1000 (not revenue, not in a period)
//     O5 A3 r2 Jan 15 cancelled: P1 1 x 1000 (not revenue; in the CSV)
//     O6 A1 r1 Dec 20 2025:      P1 1 x 1000 (before the period)
//     O7 A4 r2 Mar 1 submitted:  P2 2 x 2500 = 5000
//     O8 A5 r1 Mar 10 submitted: P2 1 x 1000 = 1000
//   visits: r1 V1 A1 Jan 10 9:00 order_taken, V2 A2 Jan 10 14:00 follow_up, V3 A1 Feb 20 10:00 order_taken
//           (linked to E1), V6 A2 Dec 1 2025; r2 V4 A3 Feb 5 9:00 order_taken, V5 A4 Mar 1 11:00 no outcome,
//           V7 A3 Mar 2 10:00 not_available
//   appointments: E1 r1 A1 Feb 20 9:55; E2 r1 A2 Jan 10 13:00; E3 r2 A3 Mar 10 10:00; E4 r2 A4 Mar 31
//           20:00; E5 r1 A5 Feb 1 cancelled; E6 r2 A3 Feb 5 8:50; E7 r1 no account
//   deals: Op1 r1 A1 10000 prospect Jan 1 -> qualified Jan 11 -> proposal Jan 31 -> won Feb 10, close Feb 15
//          Op2 r1 A2 20000 prospect Jan 5 -> qualified Jan 15 -> lost Feb 14
//          Op3 r2 A3 30000 prospect Jan 10 -> qualified Feb 9, close Apr 15
//          Op4 r2 A4 40000 prospect Dec 1 2025 -> proposal Jan 20 -> negotiation Mar 21, close Apr 20
//          Op5 r1 A5 50000 prospect Feb 1, no close date
class ReportsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.location();
    Seed s(path_);
    using E = EntityId;
    auto account = [&](const std::string& name, const std::string& territory) {
      return s.create(E::kAccount, kDec1 - kDay, {{1, text(name)}, {2, text(territory)}, {10, text("ho")}});
    };
    a1 = account("Alpha", "north");
    a2 = account("Beta", "north");
    a3 = account("Gamma", "south");
    a4 = account("=HYPERLINK(\"x\")", "south");
    a5 = account("Delta, \"the\" shop", "north");
    p1 = s.create(E::kProduct, kDec1 - kDay,
                  {{1, text("P-1")}, {2, text("Flour")}, {4, Value::boolean(true)}});
    p2 = s.create(E::kProduct, kDec1 - kDay,
                  {{1, text("P-2")}, {2, text("Sugar")}, {4, Value::boolean(true)}});

    s.order(a1, "r1", "submitted", jan(10), jan(10), {{p1, 10, 1000, 0}, {p2, 5, 333, 1000}});
    RecordId o2 = s.order(a3, "r2", "submitted", feb(5), feb(5), {{p1, 20, 1000, 0}});
    s.set(E::kOrder, o2, feb(6), {{7, text("ho")}, {8, num(feb(6))}, {3, text("approved")}});
    s.order(a2, "r1", "submitted", feb(20), feb(20), {{p2, 1, 5000, 0}});
    s.order(a1, "r1", "draft", std::nullopt, jan(3), {{p1, 100, 1000, 0}});
    RecordId o5 = s.order(a3, "r2", "submitted", jan(15), jan(15), {{p1, 1, 1000, 0}});
    s.set(E::kOrder, o5, jan(16), {{3, text("cancelled")}});
    s.order(a1, "r1", "submitted", kDec1 + 19 * kDay, kDec1 + 19 * kDay, {{p1, 1, 1000, 0}});
    s.order(a4, "r2", "submitted", mar(1), mar(1), {{p2, 2, 2500, 0}});
    s.order(a5, "r1", "submitted", mar(10), mar(10), {{p2, 1, 1000, 0}});

    auto event = [&](const std::string& owner, std::optional<RecordId> account, int64_t start,
                     const std::string& status) {
      Fields f{{1, text(owner)},
               {3, text("visit")},
               {4, num(start)},
               {5, num(start + kHour)},
               {6, text("scheduled")}};
      if (account) f.push_back({2, ref(*account)});
      RecordId id = s.create(E::kCalendarEvent, kDec1, f);
      if (status != "scheduled") s.set(E::kCalendarEvent, id, kDec1 + kMin, {{6, text(status)}});
      return id;
    };
    RecordId e1 = event("r1", a1, feb(20, 9 * kHour + 55 * kMin), "scheduled");
    event("r1", a2, jan(10, 13 * kHour), "scheduled");
    event("r2", a3, mar(10, 10 * kHour), "scheduled");
    event("r2", a4, mar(31, 20 * kHour), "scheduled");
    event("r1", a5, feb(1, 10 * kHour), "cancelled");
    event("r2", a3, feb(5, 8 * kHour + 50 * kMin), "scheduled");
    event("r1", std::nullopt, feb(3, 10 * kHour), "scheduled");

    auto visit = [&](const std::string& rep, const RecordId& account, int64_t at, const char* outcome,
                     std::optional<RecordId> linked = std::nullopt) {
      Fields f{{1, ref(account)}, {2, text(rep)}, {4, num(at)}};
      if (outcome) f.push_back({9, text(outcome)});
      if (linked) f.push_back({3, ref(*linked)});
      s.create(E::kVisit, at, f);
    };
    visit("r1", a1, jan(10, 9 * kHour), "order_taken");
    visit("r1", a2, jan(10, 14 * kHour), "follow_up");
    visit("r1", a1, feb(20, 10 * kHour), "order_taken", e1);
    visit("r1", a2, kDec1, "follow_up");
    visit("r2", a3, feb(5, 9 * kHour), "order_taken");
    visit("r2", a4, mar(1, 11 * kHour), nullptr);
    visit("r2", a3, mar(2, 10 * kHour), "not_available");

    auto deal = [&](const std::string& owner, const RecordId& account, int64_t amount, int64_t created,
                    std::optional<int64_t> close, const std::vector<std::pair<std::string, int64_t>>& moves) {
      Fields f{{1, ref(account)},     {2, text(owner)}, {3, text("deal")},
               {4, text("prospect")}, {5, num(amount)}, {6, text("EUR")}};
      if (close) f.push_back({7, num(*close)});
      RecordId id = s.create(E::kOpportunity, created, f);
      for (const auto& [stage, at] : moves) s.set(E::kOpportunity, id, at, {{4, text(stage)}});
      return id;
    };
    op1 = deal("r1", a1, 10000, jan(1), feb(15),
               {{"qualified", jan(11)}, {"proposal", jan(31)}, {"won", feb(10)}});
    op2 = deal("r1", a2, 20000, jan(5), std::nullopt, {{"qualified", jan(15)}, {"lost", feb(14)}});
    op3 = deal("r2", a3, 30000, jan(10), kApr1 + 14 * kDay, {{"qualified", feb(9)}});
    op4 = deal("r2", a4, 40000, kDec1, kApr1 + 19 * kDay, {{"proposal", jan(20)}, {"negotiation", mar(21)}});
    op5 = deal("r1", a5, 50000, feb(1), std::nullopt, {});

    db_ = reader(path_);
  }

  json::object report(std::string_view name, const Principal& who, ReportFilter f) {
    Result<json::value> r = run_report(*db_, name, f, who);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r ? r->as_object() : json::object();
  }
  static ReportFilter q1() {
    ReportFilter f;
    f.from_ms = kJan1;
    f.to_ms = kApr1;
    return f;
  }
  std::string csv(CsvKind kind, const Principal& who, ReportFilter f, CsvOptions o = {}) {
    std::string out;
    Status s = export_csv(*db_, kind, f, who, o, [&](std::string_view chunk) {
      out += chunk;
      return true;
    });
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return out;
  }

  StorePlace dir_;
  std::string path_;
  std::unique_ptr<SqlReader> db_;
  RecordId a1, a2, a3, a4, a5, p1, p2, op1, op2, op3, op4, op5;
};

// The row of `list` whose `key` is `value`.
const json::object& row(const json::value& list, std::string_view key, std::string_view value) {
  for (const json::value& v : list.as_array())
    if (v.at(key).is_string() && v.at(key).as_string() == value) return v.as_object();
  ADD_FAILURE() << "no row with " << key << " = " << value << " in " << json::serialize(list);
  static const json::object kEmpty;
  return kEmpty;
}

int64_t i64(const json::value& v) {
  return v.as_int64();
}

std::vector<std::string> lines_of(const std::string& csv);

TEST_F(ReportsTest, RevenueByRepTerritoryMonthAndProduct) {
  json::object r = report("revenue", kHeadOffice, q1());
  ASSERT_EQ(r["total"].as_array().size(), 1u);
  EXPECT_EQ(i64(r["total"].at(0).at("revenue_cents")), 42498);
  EXPECT_EQ(i64(r["total"].at(0).at("orders")), 5) << "draft, cancelled and last year's orders are out";
  EXPECT_EQ(i64(row(r["by_rep"], "rep", "r1").at("revenue_cents")), 17498);
  EXPECT_EQ(i64(row(r["by_rep"], "rep", "r1").at("orders")), 3);
  EXPECT_EQ(i64(row(r["by_rep"], "rep", "r2").at("revenue_cents")), 25000);
  EXPECT_EQ(r["by_rep"].at(0).at("rep").as_string(), "r2") << "highest revenue first";
  EXPECT_EQ(i64(row(r["by_territory"], "territory", "north").at("revenue_cents")), 17498);
  EXPECT_EQ(i64(row(r["by_territory"], "territory", "south").at("revenue_cents")), 25000);
  const json::array& months = r["by_month"].as_array();
  ASSERT_EQ(months.size(), 3u);
  EXPECT_EQ(months[0].at("month").as_string(), "2026-01");
  EXPECT_EQ(i64(months[0].at("revenue_cents")), 11498);
  EXPECT_EQ(months[1].at("month").as_string(), "2026-02");
  EXPECT_EQ(i64(months[1].at("revenue_cents")), 25000);
  EXPECT_EQ(i64(months[1].at("orders")), 2);
  EXPECT_EQ(i64(months[2].at("revenue_cents")), 6000);
  const json::object& flour = row(r["by_product"], "product_id", p1.to_string());
  EXPECT_EQ(i64(flour.at("revenue_cents")), 30000);
  EXPECT_EQ(i64(flour.at("quantity")), 30);
  EXPECT_EQ(flour.at("product_name").as_string(), "Flour");
  const json::object& sugar = row(r["by_product"], "product_id", p2.to_string());
  EXPECT_EQ(i64(sugar.at("revenue_cents")), 12498) << "the 10% line rounds its discount half up (167)";
  EXPECT_EQ(i64(sugar.at("quantity")), 9);
  EXPECT_EQ(i64(sugar.at("orders")), 4);

  // A period of one month, and a time zone that moves the Feb 1 boundary: nothing on the edge here.
  ReportFilter feb_only = q1();
  feb_only.from_ms = kFeb1;
  feb_only.to_ms = kMar1;
  EXPECT_EQ(i64(report("revenue", kHeadOffice, feb_only)["total"].at(0).at("revenue_cents")), 25000);
}

TEST_F(ReportsTest, AbcClassesAndTopAccounts) {
  // Total 42498: A3 20000 (before 0: A), A1 11498 (before 20000 < 80%: A), A2 5000 (before 31498 = 74%: A),
  // A4 5000 (before 36498 = 86%: B), A5 1000 (before 41498 = 97.6%: C).
  json::object r = report("abc", kHeadOffice, q1());
  EXPECT_EQ(i64(row(r["classes"], "class", "A").at("accounts")), 3);
  EXPECT_EQ(i64(row(r["classes"], "class", "A").at("revenue_cents")), 36498);
  EXPECT_EQ(i64(row(r["classes"], "class", "B").at("accounts")), 1);
  EXPECT_EQ(i64(row(r["classes"], "class", "C").at("revenue_cents")), 1000);
  const json::array& top = r["top_accounts"].as_array();
  ASSERT_EQ(top.size(), 5u);
  EXPECT_EQ(top[0].at("account_id").as_string(), a3.to_string());
  EXPECT_EQ(top[1].at("account_id").as_string(), a1.to_string());
  EXPECT_EQ(top[2].at("account_id").as_string(), a2.to_string()) << "a tie goes by account id";
  EXPECT_EQ(top[3].at("class").as_string(), "B");
  EXPECT_EQ(top[4].at("class").as_string(), "C");
  EXPECT_EQ(top[4].at("name").as_string(), "Delta, \"the\" shop");
  ReportFilter two = q1();
  two.limit = 2;
  EXPECT_EQ(report("abc", kHeadOffice, two)["top_accounts"].as_array().size(), 2u);
}

TEST_F(ReportsTest, RepActivity) {
  json::object r = report("activity", kHeadOffice, q1());
  const json::object& r1 = row(r["by_rep"], "rep", "r1");
  EXPECT_EQ(i64(r1.at("visits")), 3) << "Dec 1's visit is before the period";
  EXPECT_EQ(i64(r1.at("days_with_visits")), 2);
  EXPECT_DOUBLE_EQ(r1.at("visits_per_day").as_double(), 1.5);
  EXPECT_EQ(i64(r1.at("outcomes").at("order_taken")), 2);
  EXPECT_EQ(i64(r1.at("outcomes").at("follow_up")), 1);
  EXPECT_EQ(i64(r1.at("orders")), 3);
  EXPECT_DOUBLE_EQ(r1.at("orders_per_visit").as_double(), 1.0);
  const json::object& r2 = row(r["by_rep"], "rep", "r2");
  EXPECT_EQ(i64(r2.at("visits")), 3);
  EXPECT_EQ(i64(r2.at("outcomes").at("none")), 1);
  EXPECT_DOUBLE_EQ(r2.at("orders_per_visit").as_double(), 2.0 / 3.0);
  EXPECT_EQ(i64(r1.at("max_visits_per_day")), 2);
  // Per day for the whole selection: Jan 10 had r1's two visits.
  const json::object& jan10 = row(r["per_day"], "day", "2026-01-10");
  EXPECT_EQ(i64(jan10.at("visits")), 2);
  EXPECT_EQ(i64(jan10.at("reps")), 1);
  EXPECT_EQ(r["per_day"].as_array().size(), 5u) << "Jan 10, Feb 5, Feb 20, Mar 1, Mar 2";
  EXPECT_FALSE(r.contains("per_rep_day")) << "only given when the filter names reps";
  ReportFilter only_r2 = q1();
  only_r2.reps = {"r2"};
  json::object r2_days = report("activity", kHeadOffice, only_r2);
  ASSERT_EQ(r2_days["per_rep_day"].as_array().size(), 3u);
  EXPECT_EQ(r2_days["per_rep_day"].at(2).at("day").as_string(), "2026-03-02");
  // Day buckets at UTC+10:00: r1's Jan 10 14:00Z visit falls on Jan 11, its 09:00Z one stays on Jan 10.
  ReportFilter east = q1();
  east.tz_offset_minutes = 600;
  json::object e = report("activity", kHeadOffice, east);
  EXPECT_EQ(i64(row(e["per_day"], "day", "2026-01-11").at("visits")), 1);
  EXPECT_EQ(i64(row(e["per_day"], "day", "2026-01-10").at("visits")), 1);

  // Not visited in the 30 days before Apr 1 (since Mar 2): all but A3; never visited first, then oldest.
  const json::object& nv = r["not_visited"].as_object();
  EXPECT_EQ(i64(nv.at("count")), 4);
  const json::array& accounts = nv.at("accounts").as_array();
  ASSERT_EQ(accounts.size(), 4u);
  EXPECT_EQ(accounts[0].at("account_id").as_string(), a5.to_string());
  EXPECT_TRUE(accounts[0].at("last_visit_at").is_null());
  EXPECT_EQ(accounts[1].at("account_id").as_string(), a2.to_string());
  EXPECT_EQ(i64(accounts[1].at("last_visit_at")), jan(10, 14 * kHour));
  EXPECT_EQ(accounts[2].at("account_id").as_string(), a1.to_string());
  EXPECT_EQ(accounts[3].at("account_id").as_string(), a4.to_string());

  ReportFilter short_window = q1();
  short_window.days = 40;  // since Feb 20: A1 (Feb 20), A3 and A4 were visited
  EXPECT_EQ(i64(report("activity", kHeadOffice, short_window)["not_visited"].at("count")), 2);
}

// Whole UTC days come from the _visit_day rollup, partial days at the ends from the visits: a period from
// Jan 10 12:00 to Feb 20 10:30 keeps V2 (Jan 10 14:00) but not V1 (9:00), and V3 (Feb 20 10:00). A filter
// by territory (which the rollup cannot apply) gives the same figures from the visits alone.
TEST_F(ReportsTest, RepActivityOverPartialDaysAndTheRollupAgreeWithTheVisits) {
  ReportFilter f;
  f.from_ms = jan(10, 12 * kHour);
  f.to_ms = feb(20, 10 * kHour + 30 * kMin);
  json::object r = report("activity", kHeadOffice, f);
  EXPECT_EQ(i64(row(r["by_rep"], "rep", "r1").at("visits")), 2);
  EXPECT_EQ(i64(row(r["by_rep"], "rep", "r1").at("days_with_visits")), 2);
  EXPECT_EQ(i64(row(r["by_rep"], "rep", "r2").at("visits")), 1);
  ASSERT_EQ(r["per_day"].as_array().size(), 3u);
  EXPECT_EQ(r["per_day"].at(0).at("day").as_string(), "2026-01-10");
  EXPECT_EQ(i64(r["per_day"].at(0).at("visits")), 1);
  EXPECT_EQ(r["per_day"].at(2).at("day").as_string(), "2026-02-20");
  ReportFilter both = q1();
  both.territories = {"north", "south"};
  json::object from_visits = report("activity", kHeadOffice, both);
  json::object from_rollup = report("activity", kHeadOffice, q1());
  EXPECT_EQ(json::serialize(from_visits["by_rep"]), json::serialize(from_rollup["by_rep"]));
  EXPECT_EQ(json::serialize(from_visits["per_day"]), json::serialize(from_rollup["per_day"]));
}

TEST_F(ReportsTest, PlanVersusExecution) {
  json::object r = report("plan_vs_execution", kHeadOffice, q1());
  const json::object& t = r["total"].as_object();
  EXPECT_EQ(i64(t.at("booked")), 5) << "cancelled and account-less appointments are not booked visits";
  EXPECT_EQ(i64(t.at("on_time")), 2) << "E1 (linked visit 5 min after) and E6 (10 min after)";
  EXPECT_EQ(i64(t.at("late")), 1) << "E2: the visit came an hour after the start";
  EXPECT_EQ(i64(t.at("missed")), 1) << "E3";
  EXPECT_EQ(i64(t.at("pending")), 1) << "E4's window is still open on Apr 1";
  EXPECT_DOUBLE_EQ(t.at("executed_rate").as_double(), 0.75);
  EXPECT_DOUBLE_EQ(t.at("on_time_rate").as_double(), 0.5);
  const json::object& r1 = row(r["by_rep"], "rep", "r1");
  EXPECT_EQ(i64(r1.at("on_time")), 1);
  EXPECT_EQ(i64(r1.at("late")), 1);
  EXPECT_EQ(i64(r1.at("missed")), 0);
  const json::object& r2 = row(r["by_rep"], "rep", "r2");
  EXPECT_EQ(i64(r2.at("missed")), 1);
  EXPECT_EQ(i64(r2.at("pending")), 1);
  // Seen from two days later, E4 is missed too.
  ReportFilter later = q1();
  later.to_ms = kApr1 + 2 * kDay;
  EXPECT_EQ(i64(report("plan_vs_execution", kHeadOffice, later)["total"].at("missed")), 2);
}

TEST_F(ReportsTest, Funnel) {
  json::object r = report("funnel", kHeadOffice, q1());
  const json::value& stages = r["stages"];
  const json::object& prospect = row(stages, "stage", "prospect");
  EXPECT_EQ(i64(prospect.at("open_deals")), 1);
  EXPECT_EQ(i64(prospect.at("open_amount").at(0).at("amount_cents")), 50000);
  EXPECT_EQ(i64(prospect.at("entered")), 4) << "Op4 entered prospect in December";
  EXPECT_EQ(i64(prospect.at("exits")), 4);
  EXPECT_EQ(i64(prospect.at("advanced")), 4);
  EXPECT_DOUBLE_EQ(prospect.at("avg_days_in_stage").as_double(), 25.0) << "(10 + 10 + 30 + 50) / 4";
  EXPECT_DOUBLE_EQ(prospect.at("conversion_rate").as_double(), 1.0);
  const json::object& qualified = row(stages, "stage", "qualified");
  EXPECT_EQ(i64(qualified.at("open_deals")), 1);
  EXPECT_EQ(i64(qualified.at("entered")), 3);
  EXPECT_EQ(i64(qualified.at("exits")), 2);
  EXPECT_EQ(i64(qualified.at("lost")), 1);
  EXPECT_DOUBLE_EQ(qualified.at("conversion_rate").as_double(), 0.5);
  EXPECT_DOUBLE_EQ(qualified.at("avg_days_in_stage").as_double(), 25.0) << "(20 + 30) / 2";
  const json::object& proposal = row(stages, "stage", "proposal");
  EXPECT_EQ(i64(proposal.at("open_deals")), 0);
  EXPECT_EQ(i64(proposal.at("won")), 1);
  EXPECT_EQ(i64(proposal.at("advanced")), 2);
  EXPECT_DOUBLE_EQ(proposal.at("avg_days_in_stage").as_double(), 35.0);
  const json::object& negotiation = row(stages, "stage", "negotiation");
  EXPECT_EQ(i64(negotiation.at("open_deals")), 1);
  EXPECT_EQ(i64(negotiation.at("exits")), 0);
  EXPECT_TRUE(negotiation.at("avg_days_in_stage").is_null());
  EXPECT_EQ(i64(row(stages, "stage", "won").at("entered")), 1);
  const json::object& r1 = row(r["by_rep"], "rep", "r1");
  EXPECT_EQ(i64(r1.at("won")), 1);
  EXPECT_EQ(i64(r1.at("lost")), 1);
  EXPECT_DOUBLE_EQ(r1.at("win_rate").as_double(), 0.5);
  EXPECT_DOUBLE_EQ(r1.at("avg_days_to_close").as_double(), 40.0) << "Jan 1 to Feb 10";
  EXPECT_EQ(r["by_rep"].as_array().size(), 1u) << "r2 closed nothing";

  // January only: exits of prospect are Op1 (Jan 11), Op2 (Jan 15), Op4 (Jan 20).
  ReportFilter january = q1();
  january.to_ms = kFeb1;
  json::object j = report("funnel", kHeadOffice, january);
  EXPECT_EQ(i64(row(j["stages"], "stage", "prospect").at("exits")), 3);
  EXPECT_DOUBLE_EQ(row(j["stages"], "stage", "prospect").at("avg_days_in_stage").as_double(), 70.0 / 3.0);

  // Unscoped (head office) and scoped (a rep, a territory) counts of the same stints agree.
  EXPECT_EQ(i64(row(report("funnel", kRep1, q1())["stages"], "stage", "prospect").at("exits")), 2)
      << "Op1 and Op2";
  ReportFilter south = q1();
  south.territories = {"south"};
  EXPECT_EQ(i64(row(report("funnel", kHeadOffice, south)["stages"], "stage", "prospect").at("exits")), 2)
      << "Op3 and Op4";
}

TEST_F(ReportsTest, StalledDeals) {
  json::object r = report("stalled", kHeadOffice, q1());
  const json::array& deals = r["deals"].as_array();
  ASSERT_EQ(deals.size(), 2u) << "Op4 moved on Mar 21, within 30 days";
  EXPECT_EQ(deals[0].at("opportunity_id").as_string(), op5.to_string());
  EXPECT_DOUBLE_EQ(deals[0].at("days_in_stage").as_double(), 59.0);
  EXPECT_EQ(deals[1].at("opportunity_id").as_string(), op3.to_string());
  EXPECT_EQ(deals[1].at("stage").as_string(), "qualified");
  EXPECT_EQ(i64(r["totals"].at(0).at("amount_cents")), 80000);
  ReportFilter f = q1();
  f.days = 55;
  EXPECT_EQ(report("stalled", kHeadOffice, f)["deals"].as_array().size(), 1u);
}

TEST_F(ReportsTest, ForecastWeightsByStageAgainstWon) {
  ReportFilter half = q1();
  half.to_ms = kJul1;
  json::object r = report("forecast", kHeadOffice, half);
  const json::object& april = row(r["months"], "month", "2026-04");
  EXPECT_EQ(i64(april.at("open_deals")), 2);
  EXPECT_EQ(i64(april.at("pipeline_cents")), 70000);
  EXPECT_EQ(i64(april.at("weighted_cents")), 37500) << "30000 x 25% + 40000 x 75%";
  EXPECT_EQ(i64(row(r["months"], "month", "2026-02").at("won_cents")), 10000);
  const json::value& unscheduled = r["months"].as_array().back();
  EXPECT_TRUE(unscheduled.at("month").is_null());
  EXPECT_EQ(i64(unscheduled.at("weighted_cents")), 5000);

  // Head office sets qualified to 50%; nobody else may.
  auto settings = writer(path_);
  EXPECT_EQ(set_stage_probabilities(*settings, kManager, {{"qualified", 5000}}).code(),
            ErrorCode::kPermissionDenied);
  EXPECT_EQ(set_stage_probabilities(*settings, kHeadOffice, {{"qualified", 5000}, {"bogus", 1}}).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(set_stage_probabilities(*settings, kHeadOffice, {{"qualified", 10001}}).code(),
            ErrorCode::kInvalidArgument);
  ASSERT_TRUE(set_stage_probabilities(*settings, kHeadOffice, {{"qualified", 5000}}).is_ok());
  json::object after = report("forecast", kHeadOffice, half);
  EXPECT_EQ(i64(row(after["months"], "month", "2026-04").at("weighted_cents")), 45000);
  EXPECT_EQ(i64(after["probabilities_bp"].at("qualified")), 5000);
  EXPECT_EQ(i64(after["probabilities_bp"].at("negotiation")), 7500) << "the others keep their default";
}

TEST_F(ReportsTest, ScopeOfEachRole) {
  // A rep: their own figures only.
  json::object rev = report("revenue", kRep1, q1());
  EXPECT_EQ(i64(rev["total"].at(0).at("revenue_cents")), 17498);
  EXPECT_EQ(rev["by_rep"].as_array().size(), 1u);
  json::object act = report("activity", kRep1, q1());
  EXPECT_EQ(act["by_rep"].as_array().size(), 1u);
  EXPECT_EQ(i64(act["not_visited"].at("count")), 3) << "north's A1, A2, A5; r1 visited none since Mar 2";
  EXPECT_EQ(report("stalled", kRep2, q1())["deals"].as_array().size(), 1u) << "Op3 only";
  // A manager: the team's territories.
  EXPECT_EQ(i64(report("revenue", kManager, q1())["total"].at(0).at("revenue_cents")), 17498);
  EXPECT_EQ(i64(report("plan_vs_execution", kManager, q1())["total"].at("booked")), 2);
  // Head office narrows by territory or rep.
  ReportFilter south = q1();
  south.territories = {"south"};
  EXPECT_EQ(i64(report("revenue", kHeadOffice, south)["total"].at(0).at("revenue_cents")), 25000);
  ReportFilter r2 = q1();
  r2.reps = {"r2"};
  EXPECT_EQ(i64(report("funnel", kHeadOffice, r2)["stages"].at(3).at("open_deals")), 1);

  // Outside the scope is an error, never an empty answer.
  for (std::string_view name : kReportNames) {
    EXPECT_EQ(run_report(*db_, name, south, kRep1).status().code(), ErrorCode::kOutOfScope) << name;
    EXPECT_EQ(run_report(*db_, name, south, kManager).status().code(), ErrorCode::kOutOfScope) << name;
    EXPECT_EQ(run_report(*db_, name, r2, kRep1).status().code(), ErrorCode::kOutOfScope) << name;
    EXPECT_EQ(run_report(*db_, name, r2, kManager).status().code(), ErrorCode::kOutOfScope) << name;
  }
  ReportFilter self = q1();
  self.reps = {"r1"};
  EXPECT_TRUE(run_report(*db_, "revenue", self, kRep1).is_ok());
  EXPECT_TRUE(run_report(*db_, "revenue", self, kManager).is_ok()) << "r1 is in m1's team";
  // A role that sees the territories granted to it (the partner the API adds; Role has no name for it on
  // this branch, so the next value stands in): those territories, any rep within them.
  const Principal partner{"p1", static_cast<Role>(3), {"south"}, {}};
  EXPECT_EQ(i64(report("revenue", partner, q1())["total"].at(0).at("revenue_cents")), 25000);
  EXPECT_EQ(lines_of(csv(CsvKind::kAccounts, partner, q1())).size(), 3u) << "header + A3, A4";
  EXPECT_TRUE(run_report(*db_, "revenue", r2, partner).is_ok());
  ReportFilter north = q1();
  north.territories = {"north"};
  EXPECT_EQ(run_report(*db_, "revenue", north, partner).status().code(), ErrorCode::kOutOfScope);
  // A manager without territories sees nothing.
  const Principal lonely{"m2", Role::kManager, {}, {}};
  EXPECT_TRUE(report("revenue", lonely, q1())["total"].as_array().empty());
  EXPECT_EQ(
      export_csv(*db_, CsvKind::kOrders, south, kRep1, {}, [](std::string_view) { return true; }).code(),
      ErrorCode::kOutOfScope);
}

TEST_F(ReportsTest, BadRequestsAreTypedErrors) {
  EXPECT_EQ(run_report(*db_, "nope", q1(), kHeadOffice).status().code(), ErrorCode::kInvalidArgument);
  ReportFilter backwards = q1();
  backwards.to_ms = backwards.from_ms;
  EXPECT_EQ(run_report(*db_, "revenue", backwards, kHeadOffice).status().code(), ErrorCode::kInvalidArgument);
  ReportFilter days = q1();
  days.days = 0;
  EXPECT_EQ(run_report(*db_, "stalled", days, kHeadOffice).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(csv_kind("orders").value(), CsvKind::kOrders);
  EXPECT_EQ(csv_kind("users").status().code(), ErrorCode::kInvalidArgument);

  std::string field;
  Result<ReportFilter> f = parse_filter({{"from", "100"},
                                         {"to", "200"},
                                         {"territory", "north,south"},
                                         {"territory", "x"},
                                         {"rep", "r1"},
                                         {"days", "7"},
                                         {"limit", "3"},
                                         {"bom", "1"}},
                                        999, &field);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(f->from_ms, 100);
  EXPECT_EQ(f->to_ms, 200);
  EXPECT_EQ(f->territories, (std::vector<std::string>{"north", "south", "x"}));
  EXPECT_EQ(f->reps, (std::vector<std::string>{"r1"}));
  EXPECT_EQ(f->days, 7);
  EXPECT_EQ(f->limit, 3u);
  Result<ReportFilter> dflt = parse_filter({}, kApr1);
  ASSERT_TRUE(dflt.is_ok());
  EXPECT_EQ(dflt->to_ms, kApr1);
  EXPECT_EQ(dflt->from_ms, kApr1 - 90 * kDay);
  EXPECT_FALSE(parse_filter({{"from", "12x"}}, kApr1, &field).is_ok());
  EXPECT_EQ(field, "from");
  EXPECT_FALSE(parse_filter({{"days", "0"}}, kApr1, &field).is_ok());
  EXPECT_EQ(field, "days");
  EXPECT_FALSE(parse_filter({{"colour", "red"}}, kApr1, &field).is_ok());
  EXPECT_EQ(field, "colour");
  EXPECT_FALSE(parse_filter({{"from", "5"}, {"to", "5"}}, kApr1, &field).is_ok());
  EXPECT_EQ(field, "to");
}

// ---- CSV exports

std::vector<std::string> lines_of(const std::string& csv) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t crlf; (crlf = csv.find("\r\n", start)) != std::string::npos; start = crlf + 2)
    out.push_back(csv.substr(start, crlf - start));
  EXPECT_EQ(start, csv.size()) << "every row ends with CRLF";
  return out;
}

TEST_F(ReportsTest, OrdersCsvHasEveryLineInThePeriod) {
  std::vector<std::string> rows = lines_of(csv(CsvKind::kOrders, kHeadOffice, q1()));
  ASSERT_EQ(rows.size(), 8u) << "header + O1 (2 lines), O2, O3, O5 (cancelled is data too), O7, O8";
  EXPECT_EQ(rows[0].rfind("order_id,order_date,status,currency,rep_id,account_id,account_name,territory", 0),
            0u);
  EXPECT_NE(rows[1].find(",2026-01-10 00:00:00,submitted,EUR,r1,"), std::string::npos) << rows[1];
  bool discounted = false;
  for (const std::string& r : rows)
    if (r.find(",Sugar,5,333,1000,1498,") != std::string::npos) discounted = true;
  EXPECT_TRUE(discounted) << "the net of the 10% line";
  EXPECT_EQ(lines_of(csv(CsvKind::kOrders, kRep2, q1())).size(), 4u) << "r2's O2, O5, O7";
  // Time zone: UTC+02:00 shows O1's date at 02:00.
  ReportFilter tz = q1();
  tz.tz_offset_minutes = 120;
  EXPECT_NE(csv(CsvKind::kOrders, kHeadOffice, tz).find(",2026-01-10 02:00:00,"), std::string::npos);
}

TEST_F(ReportsTest, VisitsAndAccountsCsvQuoteAndNeutralise) {
  const std::string visits = csv(CsvKind::kVisits, kHeadOffice, q1());
  std::vector<std::string> rows = lines_of(visits);
  ASSERT_EQ(rows.size(), 7u) << "header + 6 visits in the period";
  EXPECT_NE(visits.find(",\"'=HYPERLINK(\"\"x\"\")\",south,"), std::string::npos)
      << "a formula-looking name is quoted text behind an apostrophe";
  const std::string accounts = csv(CsvKind::kAccounts, kHeadOffice, q1());
  EXPECT_EQ(lines_of(accounts).size(), 6u);
  EXPECT_NE(accounts.find(",\"Delta, \"\"the\"\" shop\",north,"), std::string::npos) << accounts;
  EXPECT_EQ(lines_of(csv(CsvKind::kAccounts, kRep1, q1())).size(), 4u) << "north's three accounts";
  // BOM: three bytes before the header, only when asked.
  CsvOptions bom;
  bom.bom = true;
  EXPECT_EQ(csv(CsvKind::kAccounts, kHeadOffice, q1(), bom).substr(0, 13),
            "\xEF\xBB\xBF"
            "account_id");
  EXPECT_EQ(accounts.substr(0, 10), "account_id");
}

TEST_F(ReportsTest, CsvStreamsInBoundedChunksAndStopsWhenTheSinkSaysSo) {
  CsvOptions small;
  small.chunk_bytes = 100;
  std::vector<size_t> sizes;
  std::string whole;
  ASSERT_TRUE(export_csv(*db_, CsvKind::kOrders, q1(), kHeadOffice, small, [&](std::string_view c) {
                sizes.push_back(c.size());
                whole += c;
                return true;
              }).is_ok());
  ASSERT_GT(sizes.size(), 3u);
  size_t longest_row = 0;
  for (const std::string& r : lines_of(whole)) longest_row = std::max(longest_row, r.size() + 2);
  for (size_t s : sizes) EXPECT_LT(s, small.chunk_bytes + longest_row) << "a chunk is the limit plus one row";
  EXPECT_EQ(whole, csv(CsvKind::kOrders, kHeadOffice, q1())) << "chunking changes nothing";

  int calls = 0;
  ASSERT_TRUE(export_csv(*db_, CsvKind::kOrders, q1(), kHeadOffice, small, [&](std::string_view) {
                ++calls;
                return false;
              }).is_ok());
  EXPECT_EQ(calls, 1) << "no chunk after the sink refused one";
  // The connection is usable afterwards (the snapshot ended).
  EXPECT_TRUE(run_report(*db_, "revenue", q1(), kHeadOffice).is_ok());
}

#if FIELDSYNC_REPORTS_ON_POSTGRESQL
// On PostgreSQL an export reads through a cursor in its snapshot (a batch of kCsvFetchRows rows at a time),
// not the whole result at once, and ends it with the snapshot.
TEST_F(ReportsTest, CsvExportReadsThroughACursor) {
  CsvOptions small;
  small.chunk_bytes = 64;
  auto e = CsvExport::start(*db_, CsvKind::kOrders, q1(), kHeadOffice, small);
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  std::string out;
  auto chunk = (*e)->next();
  ASSERT_TRUE(chunk.is_ok() && chunk->has_value());
  out += **chunk;
  {
    SqlRows r = db_->query("SELECT count(*) FROM pg_cursors WHERE name = 'fs_stream'");
    ASSERT_TRUE(r.step()) << r.status().to_string();
    EXPECT_EQ(r.col_int(0), 1) << "the export's rows come from a cursor";
  }
  for (;;) {
    auto next = (*e)->next();
    ASSERT_TRUE(next.is_ok()) << next.status().to_string();
    if (!next->has_value()) break;
    out += **next;
  }
  e->reset();
  {
    SqlRows r = db_->query("SELECT count(*) FROM pg_cursors WHERE name = 'fs_stream'");
    ASSERT_TRUE(r.step()) << r.status().to_string();
    EXPECT_EQ(r.col_int(0), 0) << "closed with the export's snapshot";
  }
  EXPECT_EQ(out, csv(CsvKind::kOrders, kHeadOffice, q1()));
}

// A database whose deals came without their stage history (`fieldsync-admin migrate` copies records, not
// SQLite's derived stints) gets each deal's current stage as its open stint when the store opens: stalled
// deals read the same as before.
TEST_F(ReportsTest, DealsWithoutStintsGetTheirCurrentStageWhenTheStoreOpens) {
  ReportFilter f = q1();
  const std::string before = json::serialize(report("stalled", kHeadOffice, f));
  ASSERT_TRUE(writer(path_)->exec("DELETE FROM _stage_history").is_ok());
  EXPECT_NE(json::serialize(report("stalled", kHeadOffice, f)), before) << "the stints are gone";
  ASSERT_TRUE(PgCentralStore::open(path_, {}).is_ok());
  EXPECT_EQ(json::serialize(report("stalled", kHeadOffice, f)), before);
}
#endif

// Revenue reads _order_fact, which triggers keep: a line edited or deleted, an account moved to another
// territory and an order cancelled each show in the next report.
TEST(ReportsFacts, RevenueFollowsEditsDeletesMovesAndCancellations) {
  StorePlace dir;
  const std::string path = dir.location();
  Seed s(path);
  using E = EntityId;
  RecordId a = s.create(E::kAccount, kDec1, {{1, text("A")}, {2, text("north")}, {10, text("ho")}});
  RecordId p = s.create(E::kProduct, kDec1, {{1, text("P")}, {2, text("P")}, {4, Value::boolean(true)}});
  RecordId o = s.order(a, "r1", "submitted", jan(10), jan(10), {});
  auto line = [&](int64_t qty, int64_t price, int64_t at) {
    return s.create(E::kOrderLine, at, {{1, ref(o)}, {2, ref(p)}, {3, num(qty)}, {4, num(price)}});
  };
  RecordId l1 = line(10, 100, jan(10, kMin));
  RecordId l2 = line(5, 200, jan(10, 2 * kMin));
  auto db = reader(path);
  ReportFilter f;
  f.from_ms = kJan1;
  f.to_ms = kApr1;
  auto total = [&] {
    json::value r = run_report(*db, "revenue", f, kHeadOffice).value();
    const json::array& t = r.at("total").as_array();
    return t.empty() ? int64_t{-1} : t[0].at("revenue_cents").as_int64();
  };
  EXPECT_EQ(total(), 2000);
  s.set(E::kOrderLine, l1, jan(11), {{3, num(20)}});
  EXPECT_EQ(total(), 3000) << "an edited quantity";
  s.remove(E::kOrderLine, l2, jan(12));
  EXPECT_EQ(total(), 2000) << "a deleted line";
  s.set(E::kAccount, a, jan(13), {{2, text("south")}});
  ReportFilter south = f;
  south.territories = {"south"};
  json::value moved = run_report(*db, "revenue", south, kHeadOffice).value();
  ASSERT_EQ(moved.at("total").as_array().size(), 1u) << "the account's orders follow it to its territory";
  EXPECT_EQ(moved.at("total").at(0).at("revenue_cents").as_int64(), 2000);
  s.set(E::kOrder, o, jan(14), {{3, text("cancelled")}});
  EXPECT_EQ(total(), -1) << "a cancelled order is no revenue";
}

#if !FIELDSYNC_REPORTS_ON_POSTGRESQL  // SQLite's triggers and file format
// A new order's fact takes its totals in its insert (format 8): from the live lines already stored, which a
// writer other than the server may store before their order. Such lines get the order's attributes then,
// and later lines add to the totals. A format-7 file's trigger (two statements) is replaced on open.
TEST(ReportsFacts, AnOrderStoredAfterItsLinesCountsThemAndFormatSevenGetsTheNewTrigger) {
  StorePlace dir;
  const std::string path = dir.location();
  {
    Seed s(path);
    RecordId a = s.create(EntityId::kAccount, kDec1, {{1, text("A")}, {2, text("north")}, {10, text("ho")}});
    (void)a;
  }
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
    // Format 7's trigger and format number, as a file of that format has them.
    const std::string sql =
        "DROP TRIGGER _fact_order_insert; CREATE TRIGGER _fact_order_insert AFTER INSERT ON \"order\" BEGIN "
        "INSERT INTO _order_fact (order_id, at_ms, status, deleted, rep_id, account_id, territory, currency, "
        "quantity, net_cents) VALUES (new.id, coalesce(new.submitted_at, new.approved_at), new.status, "
        "new._deleted, new.rep_id, new.account_id, (SELECT territory_id FROM account WHERE id = "
        "new.account_id), new.currency, 0, 0) ON CONFLICT (order_id) DO NOTHING; UPDATE _order_fact SET "
        "quantity = (SELECT coalesce(sum(f.quantity), 0) FROM _order_line_fact f WHERE f.order_id = new.id "
        "AND f.deleted = 0) WHERE order_id = new.id; END; UPDATE _state SET value = 7 WHERE key = 'format'";
    ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
    sqlite3_close(raw);
  }
  ASSERT_TRUE(SqliteCentralStore::open(path, {}).is_ok());
  auto db = open_report_db(path).value();
  {
    sqlite::Stmt q(*db, "SELECT sql FROM sqlite_master WHERE name = '_fact_order_insert'");
    ASSERT_TRUE(q.step());
    EXPECT_NE(q.col_text(0).find("sum(f.net_cents)"), std::string::npos) << "format 8's trigger";
    sqlite::Stmt v(*db, "SELECT value FROM _state WHERE key = 'format'");
    ASSERT_TRUE(v.step());
    EXPECT_EQ(v.col_int(0), 9);
  }
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
    // Two lines (one deleted) before their order, then the order, then a third line.
    const std::string sql =
        "INSERT INTO order_line (id, order_id, product_id, quantity, unit_price_cents, _deleted) VALUES "
        "('l1', 'o1', 'p', 3, 100, 0), ('l2', 'o1', 'p', 7, 1000, 1); "
        "INSERT INTO \"order\" (id, account_id, rep_id, status, currency, submitted_at, _deleted) SELECT "
        "'o1', id, 'r1', 'submitted', 'EUR', " +
        std::to_string(jan(10)) +
        ", 0 FROM account; "
        "INSERT INTO order_line (id, order_id, product_id, quantity, unit_price_cents, discount_bp, "
        "_deleted) "
        "VALUES ('l3', 'o1', 'p', 2, 1000, 1000, 0);";
    ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
    sqlite3_close(raw);
  }
  ReportFilter f;
  f.from_ms = kJan1;
  f.to_ms = kApr1;
  json::value r = run_report(*db, "revenue", f, kHeadOffice).value();
  ASSERT_EQ(r.at("total").as_array().size(), 1u) << r;
  EXPECT_EQ(r.at("total").at(0).at("revenue_cents").as_int64(), 300 + 1800) << r;
  ASSERT_EQ(r.at("by_territory").as_array().size(), 1u) << r;
  EXPECT_EQ(r.at("by_territory").at(0).at("territory").as_string(), "north") << "the lines got the order's";
  ASSERT_EQ(r.at("by_product").as_array().size(), 1u) << r;
  EXPECT_EQ(r.at("by_product").at(0).at("revenue_cents").as_int64(), 2100) << "the line facts count too";
}
#endif

// Activity and plan versus execution read _visit_day and _appointment_fact, which triggers on visits and
// events keep: a visit's outcome edited, a visit linked to the appointment and linked elsewhere again, the
// appointment moved and cancelled, and (by a writer other than the server) a visit deleted or its check-in
// moved each show in the next report.
TEST(ReportsFacts, ActivityAndPlanFollowVisitAndAppointmentEdits) {
  StorePlace dir;
  const std::string path = dir.location();
  Seed s(path);
  using E = EntityId;
  RecordId a = s.create(E::kAccount, kDec1, {{1, text("A")}, {2, text("north")}, {10, text("ho")}});
  RecordId e = s.create(E::kCalendarEvent, kDec1,
                        {{1, text("r1")},
                         {2, ref(a)},
                         {3, text("visit")},
                         {4, num(jan(10, 10 * kHour))},
                         {5, num(jan(10, 11 * kHour))},
                         {6, text("scheduled")}});
  RecordId v = s.create(
      E::kVisit, jan(10, 10 * kHour + 5 * kMin),
      {{1, ref(a)}, {2, text("r1")}, {4, num(jan(10, 10 * kHour + 5 * kMin))}, {9, text("order_taken")}});
  auto db = reader(path);
  ReportFilter f;
  f.from_ms = kJan1;
  f.to_ms = kApr1;
  auto activity = [&] { return run_report(*db, "activity", f, kHeadOffice).value(); };
  auto plan = [&] { return run_report(*db, "plan_vs_execution", f, kHeadOffice).value().at("total"); };
  EXPECT_EQ(i64(plan().at("on_time")), 1) << "the owner's visit at the account 5 minutes after the start";
  EXPECT_EQ(i64(activity().at("by_rep").at(0).at("outcomes").at("order_taken")), 1);

  s.set(E::kVisit, v, jan(10, 12 * kHour), {{9, text("follow_up")}});
  json::value act = activity();
  EXPECT_FALSE(act.at("by_rep").at(0).at("outcomes").as_object().contains("order_taken"));
  EXPECT_EQ(i64(act.at("by_rep").at(0).at("outcomes").at("follow_up")), 1);

  RecordId e2 = s.create(E::kCalendarEvent, kDec1,
                         {{1, text("r1")},
                          {2, ref(a)},
                          {3, text("visit")},
                          {4, num(feb(10, 10 * kHour))},
                          {5, num(feb(10, 11 * kHour))},
                          {6, text("scheduled")}});
  RecordId late = s.create(E::kVisit, jan(13, 9 * kHour),
                           {{1, ref(a)}, {2, text("r1")}, {3, ref(e)}, {4, num(jan(13, 9 * kHour))}});
  EXPECT_EQ(i64(plan().at("late")), 1) << "a visit linked to the appointment executes it, however late";
  s.set(E::kVisit, late, jan(13, 10 * kHour), {{3, ref(e2)}});
  EXPECT_EQ(i64(plan().at("on_time")), 2)
      << "linked elsewhere, the first visit in the window counts again, and the other appointment has the "
         "linked one (checked in before its start)";
  EXPECT_EQ(i64(plan().at("late")), 0);

  s.set(E::kCalendarEvent, e, jan(13, 11 * kHour),
        {{5, num(jan(14, 9 * kHour + 55 * kMin))}, {4, num(jan(14, 8 * kHour + 55 * kMin))}});
  EXPECT_EQ(i64(plan().at("missed")), 1) << "moved four days after its visit";
  s.create(E::kVisit, jan(14, 9 * kHour), {{1, ref(a)}, {2, text("r1")}, {4, num(jan(14, 9 * kHour))}});
  EXPECT_EQ(i64(plan().at("on_time")), 2) << "a visit just after the moved start";

  // The model never deletes a visit nor moves its check-in, but the facts follow any writer that does.
  {
    auto raw = writer(path);
    ASSERT_TRUE(raw->exec("UPDATE visit SET _deleted = TRUE WHERE check_in_at = " +
                          std::to_string(jan(14, 9 * kHour)))
                    .is_ok());
    ASSERT_TRUE(raw->exec("UPDATE visit SET check_in_at = " + std::to_string(jan(20, 9 * kHour)) +
                          " WHERE id = '" + v.to_string() + "'")
                    .is_ok());
  }
  EXPECT_EQ(i64(plan().at("missed")), 1);
  act = activity();
  ASSERT_EQ(act.at("per_day").as_array().size(), 2u) << "Jan 13 (the linked visit) and Jan 20";
  EXPECT_EQ(act.at("per_day").at(1).at("day").as_string(), "2026-01-20");
  s.set(E::kCalendarEvent, e, jan(21, kHour), {{6, text("cancelled")}});
  EXPECT_EQ(i64(plan().at("booked")), 1) << "only the other appointment is still booked";
}

#if !FIELDSYNC_REPORTS_ON_POSTGRESQL  // SQLite store files of older formats
// Format 5 files had no line facts, visit rollup or appointment facts: opening one fills them from the rows,
// drops the format-5 triggers and indexes they replace, and the reports read the same figures.
TEST(ReportsMigration, FormatFiveFileGetsItsFactsAndRollups) {
  StorePlace dir;
  const std::string path = dir.location();
  RecordId product;
  {
    Seed s(path);
    RecordId a = s.create(EntityId::kAccount, kJan1, {{1, text("A")}, {2, text("north")}, {10, text("ho")}});
    product =
        s.create(EntityId::kProduct, kJan1, {{1, text("P")}, {2, text("P")}, {4, Value::boolean(true)}});
    s.order(a, "r1", "submitted", feb(2), feb(2), {{product, 3, 100, 0}, {product, 1, 1000, 2500}});
    s.create(EntityId::kCalendarEvent, kJan1,
             {{1, text("r1")},
              {2, ref(a)},
              {3, text("visit")},
              {4, num(feb(3, 9 * kHour))},
              {5, num(feb(3, 10 * kHour))},
              {6, text("scheduled")}});
    s.create(EntityId::kVisit, feb(3, 9 * kHour + 30 * kMin),
             {{1, ref(a)}, {2, text("r1")}, {4, num(feb(3, 9 * kHour + 30 * kMin))}});
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    std::string sql = "DROP TABLE _order_line_fact; DROP TABLE _visit_day; DROP TABLE _appointment_fact; ";
    for (const char* t : {"_fact_order_insert", "_fact_order_update", "_fact_line_insert",
                          "_fact_line_update", "_fact_account_territory", "_fact_event_insert",
                          "_fact_event_update", "_fact_visit_insert", "_fact_visit_update"})
      sql += "DROP TRIGGER " + std::string(t) + "; ";
    sql +=
        "CREATE TRIGGER _order_fact_insert AFTER INSERT ON \"order\" BEGIN SELECT 1; END; CREATE INDEX "
        "idx_report_order_line ON order_line (order_id, _deleted); UPDATE _state SET value = 5 WHERE key = "
        "'format'";
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  SqliteCentralStore::Options options;
  ASSERT_TRUE(SqliteCentralStore::open(path, options).is_ok());
  auto db = open_report_db(path).value();
  auto count = [&](const std::string& sql) {
    sqlite::Stmt q(*db, sql);
    EXPECT_TRUE(q.step()) << sql;
    return q.col_int(0);
  };
  EXPECT_EQ(count("SELECT value FROM _state WHERE key = 'format'"), 9) << "the current format";
  EXPECT_EQ(count("SELECT count(*) FROM sqlite_master WHERE name IN ('_order_fact_insert', "
                  "'idx_report_order_line')"),
            0);
  ReportFilter f;
  f.from_ms = kJan1;
  f.to_ms = kApr1;
  json::value revenue = run_report(*db, "revenue", f, kHeadOffice).value();
  ASSERT_EQ(revenue.at("by_product").as_array().size(), 1u);
  EXPECT_EQ(revenue.at("by_product").at(0).at("revenue_cents").as_int64(), 300 + 750);
  EXPECT_EQ(revenue.at("by_product").at(0).at("quantity").as_int64(), 4);
  EXPECT_EQ(revenue.at("total").at(0).at("revenue_cents").as_int64(), 1050);
  json::value activity = run_report(*db, "activity", f, kHeadOffice).value();
  EXPECT_EQ(activity.at("per_day").at(0).at("day").as_string(), "2026-02-03");
  EXPECT_EQ(activity.at("by_rep").at(0).at("outcomes").at("none").as_int64(), 1);
  json::value plan = run_report(*db, "plan_vs_execution", f, kHeadOffice).value();
  EXPECT_EQ(plan.at("total").at("late").as_int64(), 1) << "checked in 30 minutes after the start";
}

// Format 4 files had no stage history: opening one files each opportunity's current stage as its open stint.
TEST(ReportsMigration, FormatFourFileGetsItsOpenStints) {
  StorePlace dir;
  const std::string path = dir.location();
  RecordId deal;
  {
    Seed s(path);
    RecordId account =
        s.create(EntityId::kAccount, kJan1, {{1, text("A")}, {2, text("north")}, {10, text("ho")}});
    deal = s.create(EntityId::kOpportunity, kJan1,
                    {{1, ref(account)},
                     {2, text("r1")},
                     {3, text("d")},
                     {4, text("prospect")},
                     {5, num(100)},
                     {6, text("EUR")}});
    s.set(EntityId::kOpportunity, deal, feb(1), {{4, text("qualified")}});
    RecordId product =
        s.create(EntityId::kProduct, kJan1, {{1, text("P")}, {2, text("P")}, {4, Value::boolean(true)}});
    s.order(account, "r1", "submitted", feb(2), feb(2), {{product, 3, 100, 0}});
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "DROP TABLE _stage_history; DELETE FROM _order_fact; UPDATE _state SET value = 4 "
                           "WHERE key = 'format'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  SqliteCentralStore::Options options;
  ASSERT_TRUE(SqliteCentralStore::open(path, options).is_ok());
  auto db = open_report_db(path).value();
  ReportFilter f;
  f.from_ms = kJan1;
  f.to_ms = kApr1;
  json::value r = run_report(*db, "stalled", f, kHeadOffice).value();
  ASSERT_EQ(r.at("deals").as_array().size(), 1u);
  EXPECT_EQ(r.at("deals").at(0).at("stage").as_string(), "qualified");
  EXPECT_EQ(r.at("deals").at(0).at("in_stage_since").as_int64(), feb(1)) << "the stage field's version time";
  json::value revenue = run_report(*db, "revenue", f, kHeadOffice).value();
  ASSERT_EQ(revenue.at("total").as_array().size(), 1u) << "the existing orders got their facts";
  EXPECT_EQ(revenue.at("total").at(0).at("revenue_cents").as_int64(), 300);
}
#endif  // !FIELDSYNC_REPORTS_ON_POSTGRESQL

// The company's time zone (SqliteCentralStore::Options::time_zone): the visits-per-day rollup counts its
// local days, with summer time. Europe/Berlin moves from UTC+1 to UTC+2 at 2026-03-29 01:00Z (a 23-hour day)
// and back at 2026-10-25 01:00Z (a 25-hour day). Visits of r1, in UTC and Berlin time:
//   V1 Mar 28 22:30Z = Mar 28 23:30 CET      V2 Mar 28 23:30Z = Mar 29 00:30 CET
//   V3 Mar 29 21:30Z = Mar 29 23:30 CEST     V4 Mar 29 22:30Z = Mar 30 00:30 CEST
//   V5 Oct 24 22:30Z = Oct 25 00:30 CEST     V6 Oct 25 22:30Z = Oct 25 23:30 CET
// Berlin days: Mar 28: 1, Mar 29: 2 (V2, V3), Mar 30: 1, Oct 25: 2. UTC days: Mar 28: 2, Mar 29: 2, Oct 24:
// 1, Oct 25: 1. At a fixed +01:00 (the offset a browser in winter sends): Mar 28: 1, Mar 29: 3 (V4 is 23:30),
// Oct 24: 1, Oct 25: 1.
constexpr int64_t kMar28 = kMar1 + 27 * kDay;
constexpr int64_t kOct24 = kJan1 + 296 * kDay;

struct ZoneStore {
  StorePlace dir;
  std::string path = dir.location();
};

void seed_zone_visits(const std::string& path, std::optional<std::string> zone) {
  Seed s(path, 77, std::move(zone));
  RecordId a = s.create(EntityId::kAccount, kJan1, {{1, text("A")}, {2, text("north")}, {10, text("ho")}});
  for (int64_t at : {kMar28 + 22 * kHour + 30 * kMin, kMar28 + 23 * kHour + 30 * kMin,
                     kMar28 + kDay + 21 * kHour + 30 * kMin, kMar28 + kDay + 22 * kHour + 30 * kMin,
                     kOct24 + 22 * kHour + 30 * kMin, kOct24 + kDay + 22 * kHour + 30 * kMin})
    // (Written in June: the seed's server refuses versions from its future.)
    s.create(EntityId::kVisit, std::min(at, kJul1 - kDay), {{1, ref(a)}, {2, text("r1")}, {4, num(at)}});
}

std::map<std::string, int64_t> visits_per_day(const json::value& activity) {
  std::map<std::string, int64_t> out;
  for (const json::value& d : activity.at("per_day").as_array())
    out[std::string(d.at("day").as_string())] = d.at("visits").as_int64();
  return out;
}

using DayCounts = std::map<std::string, int64_t>;

TEST(ReportsTimeZone, TheRollupCountsLocalDaysOfTheCompanyZoneAcrossSummerTime) {
  ZoneStore z;
  seed_zone_visits(z.path, "Europe/Berlin");
  auto db = reader(z.path);
  ReportFilter berlin;
  berlin.from_ms = kJan1;
  berlin.to_ms = kJan1 + 365 * kDay;
  berlin.time_zone = "Europe/Berlin";
  const DayCounts expected = {{"2026-03-28", 1}, {"2026-03-29", 2}, {"2026-03-30", 1}, {"2026-10-25", 2}};
  EXPECT_EQ(visits_per_day(run_report(*db, "activity", berlin, kHeadOffice).value()), expected);
  // The same from the visits (a territory condition keeps the rollup out).
  ReportFilter by_territory = berlin;
  by_territory.territories = {"north"};
  EXPECT_EQ(visits_per_day(run_report(*db, "activity", by_territory, kHeadOffice).value()), expected);
  // Other zones and offsets are still right, from the visits.
  ReportFilter utc = berlin;
  utc.time_zone.clear();
  EXPECT_EQ(visits_per_day(run_report(*db, "activity", utc, kHeadOffice).value()),
            (DayCounts{{"2026-03-28", 2}, {"2026-03-29", 2}, {"2026-10-24", 1}, {"2026-10-25", 1}}));
  ReportFilter plus_one = utc;
  plus_one.tz_offset_minutes = 60;
  EXPECT_EQ(visits_per_day(run_report(*db, "activity", plus_one, kHeadOffice).value()),
            (DayCounts{{"2026-03-28", 1}, {"2026-03-29", 3}, {"2026-10-24", 1}, {"2026-10-25", 1}}));

  // Whole local days of 23 and 25 hours: Mar 29 is [Mar 28 23:00Z, Mar 29 22:00Z), Oct 25 is
  // [Oct 24 22:00Z, Oct 25 23:00Z). Read from the rollup, and equal to the visits'.
  for (auto [from, to, day] : {std::tuple{kMar28 + 23 * kHour, kMar28 + kDay + 22 * kHour, "2026-03-29"},
                               std::tuple{kOct24 + 22 * kHour, kOct24 + kDay + 23 * kHour, "2026-10-25"}}) {
    ReportFilter one_day = berlin;
    one_day.from_ms = from;
    one_day.to_ms = to;
    EXPECT_EQ(visits_per_day(run_report(*db, "activity", one_day, kHeadOffice).value()),
              (DayCounts{{day, 2}}));
    one_day.territories = {"north"};
    EXPECT_EQ(visits_per_day(run_report(*db, "activity", one_day, kHeadOffice).value()),
              (DayCounts{{day, 2}}));
  }
  // A period starting and ending inside local days (Mar 29 00:45 CET to Oct 25 00:45 CEST): V2 falls before
  // it, V5 in its last partial day, V6 after it; partial days come from the visits, whole ones from the
  // rollup.
  ReportFilter partial = berlin;
  partial.from_ms = kMar28 + 23 * kHour + 45 * kMin;
  partial.to_ms = kOct24 + 22 * kHour + 45 * kMin;
  EXPECT_EQ(visits_per_day(run_report(*db, "activity", partial, kHeadOffice).value()),
            (DayCounts{{"2026-03-29", 1}, {"2026-03-30", 1}, {"2026-10-25", 1}}));
}

// Asked with neither tz nor tz_offset_minutes (the API's default, and the dashboard's), a report is in the
// company's zone whatever the caller's: Berlin days (from the rollup on SQLite), the zone named in the
// answer; the CSV's times too. A store without a zone (fieldsync-admin's new file) answers in UTC.
TEST(ReportsTimeZone, WithoutAZoneAReportIsInTheCompanysZone) {
  ZoneStore z;
  seed_zone_visits(z.path, "Europe/Berlin");
  auto db = reader(z.path);
  Result<ReportFilter> f =
      parse_filter({{"from", std::to_string(kJan1)}, {"to", std::to_string(kJan1 + 365 * kDay)}}, 0);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_TRUE(f->company_zone);
  json::value r = run_report(*db, "activity", *f, kHeadOffice).value();
  EXPECT_EQ(visits_per_day(r),
            (DayCounts{{"2026-03-28", 1}, {"2026-03-29", 2}, {"2026-03-30", 1}, {"2026-10-25", 2}}));
  EXPECT_EQ(r.at("period").at("time_zone").as_string(), "Europe/Berlin");
  EXPECT_TRUE(r.at("period").at("company_zone").as_bool());
  // A zone or an offset given is the caller's, not the company's.
  for (const auto& q : {std::pair<std::string, std::string>{"tz", "UTC"}, {"tz_offset_minutes", "0"}}) {
    Result<ReportFilter> mine =
        parse_filter({{"from", std::to_string(kJan1)}, {"to", std::to_string(kJan1 + 365 * kDay)}, q}, 0);
    ASSERT_TRUE(mine.is_ok());
    EXPECT_FALSE(mine->company_zone) << q.first;
    json::value m = run_report(*db, "activity", *mine, kHeadOffice).value();
    EXPECT_EQ(visits_per_day(m),
              (DayCounts{{"2026-03-28", 2}, {"2026-03-29", 2}, {"2026-10-24", 1}, {"2026-10-25", 1}}))
        << q.first;
    EXPECT_FALSE(m.at("period").at("company_zone").as_bool());
  }
  // The CSV's times: V4 (Mar 29 22:30Z) is 00:30 on Mar 30 in Berlin.
  std::string csv;
  ASSERT_TRUE(export_csv(*db, CsvKind::kVisits, *f, kHeadOffice, {}, [&](std::string_view c) {
                csv += c;
                return true;
              }).is_ok());
  EXPECT_NE(csv.find("2026-03-30 00:30:00"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("2026-03-29 22:30:00"), std::string::npos) << csv;

  ZoneStore plain;
  seed_zone_visits(plain.path, std::nullopt);
  auto pdb = reader(plain.path);
  json::value u = run_report(*pdb, "activity", *f, kHeadOffice).value();
  EXPECT_EQ(u.at("period").at("time_zone").as_string(), "UTC");
  EXPECT_EQ(visits_per_day(u),
            (DayCounts{{"2026-03-28", 2}, {"2026-03-29", 2}, {"2026-10-24", 1}, {"2026-10-25", 1}}));
}

// A viewer in another zone than the company's (Europe/Berlin here) reads whole local days from the
// zone-independent rollup (visits per UTC day with running counts per quarter-hour, format 9) and partial
// days from the visits; the same figures as the visits alone (a territory condition keeps every rollup out).
// Visits of r1 on the quarter-hours where local midnights fall:
//   W1 Feb 10 18:29Z  W2 Feb 10 18:30Z (Kolkata +5:30: 23:59 and 00:00)  W3 Feb 10 18:14Z  W4 Feb 10 18:15Z
//   (at +5:45: 23:59 and 00:00)  W5 Mar 8 04:30Z  W6 Mar 9 03:59Z  W7 Mar 9 04:00Z  W8 Nov 1 04:30Z
//   W9 Nov 2 04:30Z (New York: EST until Mar 8 07:00Z, EDT until Nov 1 06:00Z: local Mar 8 is 23 hours,
//   [Mar 8 05:00Z, Mar 9 04:00Z), local Nov 1 25 hours, [Nov 1 04:00Z, Nov 2 05:00Z)).
constexpr int64_t kFeb10 = kFeb1 + 9 * kDay;
constexpr int64_t kMar8 = kMar1 + 7 * kDay;
constexpr int64_t kNov1 = kJan1 + 304 * kDay;

// Those visits of r1 at account A (north), in a store whose company zone is Europe/Berlin.
void seed_viewer_zone_visits(const ZoneStore& z) {
  const int64_t check_ins[] = {
      kFeb10 + 18 * kHour + 29 * kMin, kFeb10 + 18 * kHour + 30 * kMin, kFeb10 + 18 * kHour + 14 * kMin,
      kFeb10 + 18 * kHour + 15 * kMin, kMar8 + 4 * kHour + 30 * kMin,   kMar8 + kDay + 3 * kHour + 59 * kMin,
      kMar8 + kDay + 4 * kHour,        kNov1 + 4 * kHour + 30 * kMin,   kNov1 + kDay + 4 * kHour + 30 * kMin};
  Seed s(z.path, 77, "Europe/Berlin");
  RecordId a = s.create(EntityId::kAccount, kJan1, {{1, text("A")}, {2, text("north")}, {10, text("ho")}});
  for (int64_t at : check_ins)
    s.create(EntityId::kVisit, std::min(at, kJul1 - kDay), {{1, ref(a)}, {2, text("r1")}, {4, num(at)}});
}

// The activity report's visits per day, and the same asked with a territory condition (which reads the
// visits), which must agree.
DayCounts days_both_ways(SqlReader& db, const ReportFilter& f) {
  const DayCounts rollup = visits_per_day(run_report(db, "activity", f, kHeadOffice).value());
  ReportFilter by_territory = f;
  by_territory.territories = {"north"};
  EXPECT_EQ(rollup, visits_per_day(run_report(db, "activity", by_territory, kHeadOffice).value()))
      << "the rollup and the visits disagree";
  return rollup;
}

TEST(ReportsTimeZone, AViewersOwnZoneReadsTheQuarterRollupAndAgreesWithTheVisits) {
  ZoneStore z;
  seed_viewer_zone_visits(z);
  auto db = reader(z.path);
  ReportFilter year;
  year.from_ms = kJan1;
  year.to_ms = kJan1 + 365 * kDay;
  ReportFilter kolkata = year;
  kolkata.time_zone = "Asia/Kolkata";
  EXPECT_EQ(days_both_ways(*db, kolkata), (DayCounts{{"2026-02-10", 3},
                                                     {"2026-02-11", 1},
                                                     {"2026-03-08", 1},
                                                     {"2026-03-09", 2},
                                                     {"2026-11-01", 1},
                                                     {"2026-11-02", 1}}));
  ReportFilter nepal = year;  // a fixed offset, as a browser sends it
  nepal.tz_offset_minutes = 345;
  EXPECT_EQ(days_both_ways(*db, nepal), (DayCounts{{"2026-02-10", 1},
                                                   {"2026-02-11", 3},
                                                   {"2026-03-08", 1},
                                                   {"2026-03-09", 2},
                                                   {"2026-11-01", 1},
                                                   {"2026-11-02", 1}}));
  ReportFilter new_york = year;
  new_york.time_zone = "America/New_York";
  EXPECT_EQ(
      days_both_ways(*db, new_york),
      (DayCounts{
          {"2026-02-10", 4}, {"2026-03-07", 1}, {"2026-03-08", 1}, {"2026-03-09", 1}, {"2026-11-01", 2}}));
  ReportFilter utc = year;
  utc.time_zone = "UTC";
  EXPECT_EQ(
      days_both_ways(*db, utc),
      (DayCounts{
          {"2026-02-10", 4}, {"2026-03-08", 1}, {"2026-03-09", 2}, {"2026-11-01", 1}, {"2026-11-02", 1}}));
  // New York's 23- and 25-hour days alone.
  ReportFilter short_day = new_york;
  short_day.from_ms = kMar8 + 5 * kHour;
  short_day.to_ms = kMar8 + kDay + 4 * kHour;
  EXPECT_EQ(days_both_ways(*db, short_day), (DayCounts{{"2026-03-08", 1}}));
  ReportFilter long_day = new_york;
  long_day.from_ms = kNov1 + 4 * kHour;
  long_day.to_ms = kNov1 + kDay + 5 * kHour;
  EXPECT_EQ(days_both_ways(*db, long_day), (DayCounts{{"2026-11-01", 2}}));
  // A period from inside one Kolkata day to inside another (Feb 10 23:50 to Mar 9 09:30, local): W3 and W4
  // fall before it, W1 in its first partial day, W6 and W7 in its last.
  ReportFilter partial = kolkata;
  partial.from_ms = kFeb10 + 18 * kHour + 20 * kMin;
  partial.to_ms = kMar8 + kDay + 4 * kHour + 1;
  EXPECT_EQ(days_both_ways(*db, partial),
            (DayCounts{{"2026-02-10", 1}, {"2026-02-11", 1}, {"2026-03-08", 1}, {"2026-03-09", 2}}));
  // An offset off the quarter-hours (+0:07) has days no rollup holds: the visits.
  ReportFilter odd = year;
  odd.tz_offset_minutes = 7;
  EXPECT_EQ(
      days_both_ways(*db, odd),
      (DayCounts{
          {"2026-02-10", 4}, {"2026-03-08", 1}, {"2026-03-09", 2}, {"2026-11-01", 1}, {"2026-11-02", 1}}));
  // One rep's days, per rep and day (rows the report lists when it names reps).
  ReportFilter r1 = kolkata;
  r1.reps = {"r1"};
  json::value r = run_report(*db, "activity", r1, kHeadOffice).value();
  ASSERT_EQ(r.at("per_rep_day").as_array().size(), 6u) << r;
  EXPECT_EQ(r.at("per_rep_day").at(0).at("visits").as_int64(), 3);
  EXPECT_EQ(r.at("by_rep").at(0).at("max_visits_per_day").as_int64(), 3);
  EXPECT_EQ(r.at("by_rep").at(0).at("days_with_visits").as_int64(), 6);
}

// The quarter rollup follows a visit's edits: its outcome through the server, and what the model never does
// (a visit's rep changed, its check-in moved across Kolkata's midnight, the visit marked deleted, its row
// deleted) by another writer.
TEST(ReportsFacts, TheQuarterRollupFollowsVisitEditsMovesAndDeletes) {
  StorePlace dir;
  const std::string path = dir.location();
  Seed s(path, 77, "Europe/Berlin");
  using E = EntityId;
  RecordId a = s.create(E::kAccount, kJan1, {{1, text("A")}, {2, text("north")}, {10, text("ho")}});
  const int64_t w1 = kFeb10 + 18 * kHour + 29 * kMin, w2 = kFeb10 + 18 * kHour + 30 * kMin;
  RecordId v1 = s.create(E::kVisit, w1, {{1, ref(a)}, {2, text("r1")}, {4, num(w1)}, {9, text("follow_up")}});
  RecordId v2 = s.create(E::kVisit, w2, {{1, ref(a)}, {2, text("r1")}, {4, num(w2)}});
  RecordId v3 = s.create(E::kVisit, w2, {{1, ref(a)}, {2, text("r1")}, {4, num(w2 + kHour)}});
  auto db = reader(path);
  ReportFilter f;
  f.from_ms = kJan1;
  f.to_ms = kApr1;
  f.time_zone = "Asia/Kolkata";
  auto outcomes = [&](const std::string& rep) {
    ReportFilter one = f;
    one.reps = {rep};
    json::value r = run_report(*db, "activity", one, kHeadOffice).value();
    std::map<std::string, int64_t> out;
    if (r.at("by_rep").as_array().empty()) return out;
    for (const auto& [k, n] : r.at("by_rep").at(0).at("outcomes").as_object())
      out[std::string(k)] = n.as_int64();
    return out;
  };
  auto sql = [&](const std::string& statement) {
    auto raw = writer(path);
    ASSERT_TRUE(raw->exec(statement).is_ok()) << statement;
  };
  EXPECT_EQ(days_both_ways(*db, f), (DayCounts{{"2026-02-10", 1}, {"2026-02-11", 2}}));
  s.set(E::kVisit, v1, w2, {{9, text("order_taken")}});
  EXPECT_EQ(outcomes("r1"), (std::map<std::string, int64_t>{{"none", 2}, {"order_taken", 1}}));
  sql("UPDATE visit SET rep_id = 'r2' WHERE id = '" + v2.to_string() + "'");
  EXPECT_EQ(outcomes("r2"), (std::map<std::string, int64_t>{{"none", 1}}));
  EXPECT_EQ(outcomes("r1"), (std::map<std::string, int64_t>{{"none", 1}, {"order_taken", 1}}));
  EXPECT_EQ(days_both_ways(*db, f), (DayCounts{{"2026-02-10", 1}, {"2026-02-11", 2}}));
  sql("UPDATE visit SET _deleted = TRUE WHERE id = '" + v2.to_string() + "'");
  EXPECT_EQ(days_both_ways(*db, f), (DayCounts{{"2026-02-10", 1}, {"2026-02-11", 1}}));
  EXPECT_TRUE(outcomes("r2").empty());
  sql("UPDATE visit SET check_in_at = " + std::to_string(w2 + kMin) + " WHERE id = '" + v1.to_string() + "'");
  EXPECT_EQ(days_both_ways(*db, f), (DayCounts{{"2026-02-11", 2}})) << "moved past Kolkata's midnight";
  sql("DELETE FROM visit WHERE id = '" + v1.to_string() + "'");
  EXPECT_EQ(days_both_ways(*db, f), (DayCounts{{"2026-02-11", 1}}));
  EXPECT_EQ(outcomes("r1"), (std::map<std::string, int64_t>{{"none", 1}}));
  sql("DELETE FROM visit WHERE id = '" + v3.to_string() + "'");
  EXPECT_TRUE(days_both_ways(*db, f).empty());
}

#if !FIELDSYNC_REPORTS_ON_POSTGRESQL  // the rollup and the zone kept in SQLite's store file
// Which path a report takes: a row planted in the company zone's rollup shows in the company zone's report
// only, one planted in the quarter rollup in every other zone's and offset's (split at the zone's midnight),
// neither with a territory condition nor at an offset off the quarter-hours.
TEST(ReportsTimeZone, OnlyTheCompanyZoneReadsItsRollupOtherZonesTheQuarterRollupAndAnotherZoneRecountsIt) {
  ZoneStore z;
  seed_zone_visits(z.path, "Europe/Berlin");
  {
    auto w = open_settings_db(z.path).value();
    // Day 20541 is 2026-03-29. The quarter ghost's 7 visits that UTC day: 2 before 18:15Z (first_q73, 73
    // quarter-hours; Nepal's midnight at +5:45), 3 before 18:30Z (first_q74 and later; Kolkata's).
    ASSERT_TRUE(w->exec("INSERT INTO _visit_day (day, rep_id, outcome, visits) VALUES (20541, 'ghost', "
                        "'none', 7)")
                    .is_ok());
    std::string columns, values;
    for (int k = 1; k < 96; ++k) {
      columns += ", first_q" + std::to_string(k);
      values += k < 73 ? ", 0" : k == 73 ? ", 2" : ", 3";
    }
    ASSERT_TRUE(w->exec("INSERT INTO _visit_quarter_day (day, rep_id, outcome, visits" + columns +
                        ") VALUES (20541, 'quarter-ghost', 'none', 7" + values + ")")
                    .is_ok());
  }
  ReportFilter f;
  f.from_ms = kJan1;
  f.to_ms = kJan1 + 365 * kDay;
  f.time_zone = "Europe/Berlin";
  auto ghost_days = [&](const ReportFilter& filter, const std::string& ghost) {
    auto db = open_report_db(z.path).value();
    ReportFilter one = filter;
    one.reps = {ghost};
    json::value r = run_report(*db, "activity", one, kHeadOffice).value();
    DayCounts out;
    for (const json::value& d : r.at("per_rep_day").as_array())
      out[std::string(d.at("day").as_string())] = d.at("visits").as_int64();
    return out;
  };
  auto ghost = [&](const ReportFilter& filter) { return !ghost_days(filter, "ghost").empty(); };
  EXPECT_TRUE(ghost(f));
  EXPECT_TRUE(ghost_days(f, "quarter-ghost").empty()) << "the company's zone reads its own rollup";
  ReportFilter utc = f;
  utc.time_zone = "UTC";
  EXPECT_FALSE(ghost(utc));
  EXPECT_EQ(ghost_days(utc, "quarter-ghost"), (DayCounts{{"2026-03-29", 7}}));
  ReportFilter kolkata = f;
  kolkata.time_zone = "Asia/Kolkata";
  EXPECT_EQ(ghost_days(kolkata, "quarter-ghost"), (DayCounts{{"2026-03-29", 3}, {"2026-03-30", 4}}));
  ReportFilter nepal = f;
  nepal.time_zone.clear();
  nepal.tz_offset_minutes = 345;
  EXPECT_EQ(ghost_days(nepal, "quarter-ghost"), (DayCounts{{"2026-03-29", 2}, {"2026-03-30", 5}}));
  ReportFilter new_york = f;  // EDT since Mar 8: midnight at 04:00Z, quarter 16 (first_q16 is 0)
  new_york.time_zone = "America/New_York";
  EXPECT_EQ(ghost_days(new_york, "quarter-ghost"), (DayCounts{{"2026-03-29", 7}}));
  ReportFilter by_territory = kolkata;
  by_territory.territories = {"north"};
  {
    auto db = open_report_db(z.path).value();
    json::value r = run_report(*db, "activity", by_territory, kHeadOffice).value();
    for (const json::value& rep : r.at("by_rep").as_array())
      EXPECT_EQ(rep.at("rep").as_string(), "r1") << "a territory condition reads the visits";
  }
  ReportFilter odd = nepal;
  odd.tz_offset_minutes = 7;
  EXPECT_TRUE(ghost_days(odd, "quarter-ghost").empty()) << "days off the quarter-hours read the visits";
  // The server told another zone: the rollup is recounted from the visits (the planted row goes) in UTC.
  ASSERT_TRUE(SqliteCentralStore::open(z.path, {.time_zone = "UTC"}).is_ok());
  EXPECT_FALSE(ghost(f));
  {
    auto db = open_report_db(z.path).value();
    sqlite::Stmt q(*db, "SELECT day, visits FROM _visit_day WHERE rep_id = 'r1' ORDER BY day");
    std::vector<std::pair<int64_t, int64_t>> rows;
    while (q.step()) rows.emplace_back(q.col_int(0), q.col_int(1));
    EXPECT_EQ(rows,
              (std::vector<std::pair<int64_t, int64_t>>{{20540, 2}, {20541, 2}, {20750, 1}, {20751, 1}}));
  }
  // Opened without a zone (as fieldsync-admin opens it), the file keeps its own.
  ASSERT_TRUE(SqliteCentralStore::open(z.path, {}).is_ok());
  auto db = open_report_db(z.path).value();
  sqlite::Stmt q(*db, "SELECT name FROM _report_zone");
  ASSERT_TRUE(q.step());
  EXPECT_EQ(q.col_text(0), "UTC");
}

// Format 8 files had no quarter rollup: opening one fills it from the visits and recreates the visit
// triggers, which keep it from then on.
TEST(ReportsMigration, FormatEightFileGetsItsQuarterRollup) {
  ZoneStore z;
  seed_viewer_zone_visits(z);
  {
    // Format 8's visit triggers counted _visit_day only (their appointment part is left out here).
    auto w = open_settings_db(z.path).value();
    ASSERT_TRUE(
        w->exec("DROP TABLE _visit_quarter_day; DROP TRIGGER _fact_visit_insert; DROP TRIGGER "
                "_fact_visit_update; DROP TRIGGER _fact_visit_delete; CREATE TRIGGER _fact_visit_insert "
                "AFTER INSERT ON visit BEGIN SELECT 1; END; UPDATE _state SET value = 8 WHERE key = "
                "'format'")
            .is_ok());
  }
  SqliteCentralStore::Options options;
  options.now_ms = [] { return kJul1; };
  ASSERT_TRUE(SqliteCentralStore::open(z.path, options).is_ok());
  {
    auto db = open_report_db(z.path).value();
    sqlite::Stmt v(*db, "SELECT value FROM _state WHERE key = 'format'");
    ASSERT_TRUE(v.step());
    EXPECT_EQ(v.col_int(0), 9);
    sqlite::Stmt t(*db, "SELECT sql FROM sqlite_master WHERE name = '_fact_visit_insert'");
    ASSERT_TRUE(t.step());
    EXPECT_NE(t.col_text(0).find("_visit_quarter_day"), std::string::npos) << "format 9's trigger";
    sqlite::Stmt n(*db, "SELECT sum(visits), sum(first_q74) FROM _visit_quarter_day");
    ASSERT_TRUE(n.step());
    EXPECT_EQ(n.col_int(0), 9);
    EXPECT_EQ(n.col_int(1), 8) << "every visit but W2 checked in before 18:30Z";
  }
  auto db = reader(z.path);
  ReportFilter kolkata;
  kolkata.from_ms = kJan1;
  kolkata.to_ms = kJan1 + 365 * kDay;
  kolkata.time_zone = "Asia/Kolkata";
  EXPECT_EQ(days_both_ways(*db, kolkata), (DayCounts{{"2026-02-10", 3},
                                                     {"2026-02-11", 1},
                                                     {"2026-03-08", 1},
                                                     {"2026-03-09", 2},
                                                     {"2026-11-01", 1},
                                                     {"2026-11-02", 1}}));
  {  // a visit written after the migration counts
    auto w = open_settings_db(z.path).value();
    ASSERT_TRUE(w->exec("INSERT INTO visit (id, account_id, rep_id, check_in_at, _deleted, _meta) SELECT "
                        "'late', account_id, rep_id, " +
                        std::to_string(kFeb10 + 20 * kHour) + ", 0, _meta FROM visit LIMIT 1")
                    .is_ok());
  }
  EXPECT_EQ(days_both_ways(*db, kolkata)["2026-02-11"], 2);
}

TEST(ReportsTimeZone, UnknownZonesAreRefused) {
  ZoneStore z;
  Result<std::unique_ptr<SqliteCentralStore>> bad =
      SqliteCentralStore::open(z.path, {.time_zone = "Mars/Olympus"});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  std::string field;
  Result<ReportFilter> f = parse_filter({{"to", "1767225600000"}, {"tz", "Mars/Olympus"}}, 0, &field);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(field, "tz");
  f = parse_filter({{"to", "1767225600000"}, {"tz", "Europe/Berlin"}, {"tz_offset_minutes", "60"}}, 0,
                   &field);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(field, "tz");
  f = parse_filter({{"to", "1767225600000"}, {"tz", "Asia/Kolkata"}}, 0, &field);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(f->time_zone, "Asia/Kolkata");
}
#endif  // !FIELDSYNC_REPORTS_ON_POSTGRESQL

// ---- Schema 3: leads, service cases, tasks. The rows are written by SQL into the store's typed tables (the
// reports read nothing else), with the figures worked out by hand beside them. Q1 2026 is the period.
class NewEntityReports : public ::testing::Test {
 protected:
  void SetUp() override {
    { Seed s(path); }  // the store's tables
    auto w = writer(path);
    auto exec = [&](const std::string& sql) { ASSERT_TRUE(w->exec(sql).is_ok()) << sql; };
    auto n = [](int64_t v) { return std::to_string(v); };
    // Leads: id, territory, owner, source, status, created, converted.
    //   L1 north r1 campaign converted Jan 5 -> Jan 15 (10 days)   L2 north r1 campaign new Jan 10
    //   L3 south r2 campaign converted Feb 1 -> Feb 21 (20 days)   L4 south r2 referral disqualified Feb 3
    //   L5 north r1 referral converted Mar 1 -> Apr 3 (after the period: open at its end)
    //   L6 north r1 web_form new Dec 1 (before the period)
    for (const auto& [id, t, o, src, st, created, conv] : std::vector<
             std::tuple<const char*, const char*, const char*, const char*, const char*, int64_t, int64_t>>{
             {"L1", "north", "r1", "campaign", "converted", jan(5), jan(15)},
             {"L2", "north", "r1", "campaign", "new", jan(10), 0},
             {"L3", "south", "r2", "campaign", "converted", feb(1), feb(21)},
             {"L4", "south", "r2", "referral", "disqualified", feb(3), 0},
             {"L5", "north", "r1", "referral", "converted", mar(1), kApr1 + 2 * kDay},
             {"L6", "north", "r1", "web_form", "new", kDec1, 0}})
      exec(
          "INSERT INTO lead (id, person_name, territory_id, owner_id, source, status, created_at, "
          "converted_at) "
          "VALUES ('" +
          std::string(id) + "', 'P', '" + t + "', '" + o + "', '" + src + "', '" + st + "', " + n(created) +
          ", " + (conv ? n(conv) : "NULL") + ")");
    exec(
        "INSERT INTO account (id, name, territory_id) VALUES ('AN', 'North Co', 'north'), ('AS', 'South Co', "
        "'south')");
    // Assets: X1 out of warranty since Dec 1, X2 in warranty until July, X3 without a warranty end.
    exec("INSERT INTO asset (id, account_id, serial_number, warranty_end_at) VALUES ('X1', 'AN', 's1', " +
         n(kDec1) + "), ('X2', 'AN', 's2', " + n(kJul1) + "), ('X3', 'AS', 's3', NULL)");
    // Cases: id, account, priority, status, assignee, opened, due, resolved, asset.
    //   C1 AN urgent resolved r1 Jan 2, due Jan 3, resolved Jan 4: breached, 2 days, X1 billable
    //   C2 AN urgent in_progress r1 Feb 1, due Feb 2, unresolved: breached, past due 58 days, X2 in warranty
    //   C3 AS normal closed r2 Feb 10, due Feb 20, resolved Feb 12: 2 days, X3 billable (no warranty end)
    //   C4 AS low open unassigned Mar 1, no due time, no asset (not billable)
    //   C5 AN high open r1 Mar 20, due Apr 2 (after the period's end: not breached yet)
    //   C6 AN normal resolved r1 Dec 1 (before the period)
    for (const auto& [id, a, pr, st, who, opened, due, res, asset] :
         std::vector<std::tuple<const char*, const char*, const char*, const char*, const char*, int64_t,
                                int64_t, int64_t, const char*>>{
             {"C1", "AN", "urgent", "resolved", "r1", jan(2), jan(3), jan(4), "X1"},
             {"C2", "AN", "urgent", "in_progress", "r1", feb(1), feb(2), 0, "X2"},
             {"C3", "AS", "normal", "closed", "r2", feb(10), feb(20), feb(12), "X3"},
             {"C4", "AS", "low", "open", "", mar(1), 0, 0, ""},
             {"C5", "AN", "high", "open", "r1", mar(20), kApr1 + kDay, 0, ""},
             {"C6", "AN", "normal", "resolved", "r1", kDec1, 0, kDec1 + kDay, ""}}) {
      auto opt = [&](int64_t v) { return v ? n(v) : std::string("NULL"); };
      auto txt = [](const std::string& v) { return v.empty() ? std::string("NULL") : "'" + v + "'"; };
      exec(
          "INSERT INTO service_case (id, account_id, subject, priority, status, assignee_id, opened_at, "
          "due_at, "
          "resolved_at, asset_id, opened_by) VALUES ('" +
          std::string(id) + "', '" + a + "', 'S', '" + pr + "', '" + st + "', " + txt(who) + ", " +
          n(opened) + ", " + opt(due) + ", " + opt(res) + ", " + txt(asset) + ", 'r1')");
    }
    // Tasks: r1 open due Jan 10 (overdue), open due Apr 6 (not yet), done due Jan 1; r2 open due Feb 1
    // (overdue), open without a due time; r3 open due Mar 1 (overdue).
    exec("INSERT INTO task (id, owner_id, title, status, due_at) VALUES ('T1', 'r1', 't', 'open', " +
         n(jan(10)) + "), ('T2', 'r1', 't', 'open', " + n(kApr1 + 5 * kDay) +
         "), ('T3', 'r1', 't', 'done', " + n(jan(1)) + "), ('T4', 'r2', 't', 'open', " + n(feb(1)) +
         "), ('T5', 'r2', 't', 'open', NULL), ('T6', 'r3', 't', "
         "'open', " +
         n(mar(1)) + ")");
  }
  json::object report(const std::string& name, const Principal& who, ReportFilter f = {}) {
    if (f.to_ms == 0) {
      f.from_ms = kJan1;
      f.to_ms = kApr1;
    }
    auto db = reader(path);
    Result<json::value> r = run_report(*db, name, f, who);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r->as_object() : json::object{};
  }
  static const json::object& with(const json::value& rows, const char* key, const std::string& value) {
    for (const json::value& row : rows.as_array())
      if (row.at(key).is_string() && row.at(key).as_string() == value) return row.as_object();
    ADD_FAILURE() << "no " << key << " = " << value << " in " << json::serialize(rows);
    static const json::object none;
    return none;
  }
  StorePlace dir;
  std::string path = dir.location();
  const Principal rep1{"r1", Role::kRep, {"north"}, {}};
  const Principal mgr{"mgr", Role::kManager, {"north"}, {"r1"}};
};

TEST_F(NewEntityReports, LeadsBySourceWithConversionRateAndTimeToConvert) {
  json::object r = report("leads", kHeadOffice);
  const json::object& t = r["total"].as_object();
  EXPECT_EQ(t.at("created").as_int64(), 5) << "L6 was created before the period";
  EXPECT_EQ(t.at("converted").as_int64(), 2) << "L5 converted after the period's end";
  EXPECT_EQ(t.at("disqualified").as_int64(), 1);
  EXPECT_EQ(t.at("open").as_int64(), 2) << "L2, and L5 at the period's end";
  EXPECT_DOUBLE_EQ(t.at("conversion_rate").as_double(), 0.4);
  EXPECT_DOUBLE_EQ(t.at("avg_days_to_convert").as_double(), 15.0) << "(10 + 20) / 2";
  const json::object& campaign = with(r["by_source"], "source", "campaign");
  EXPECT_EQ(campaign.at("created").as_int64(), 3);
  EXPECT_EQ(campaign.at("converted").as_int64(), 2);
  EXPECT_DOUBLE_EQ(campaign.at("conversion_rate").as_double(), 2.0 / 3.0);
  const json::object& referral = with(r["by_source"], "source", "referral");
  EXPECT_EQ(referral.at("created").as_int64(), 2);
  EXPECT_EQ(referral.at("converted").as_int64(), 0);
  EXPECT_DOUBLE_EQ(referral.at("avg_days_to_convert").as_double(), 0.0);
  // A rep's own leads; a territory filter.
  json::object mine = report("leads", rep1);
  EXPECT_EQ(mine["total"].at("created").as_int64(), 3) << "L1, L2, L5";
  EXPECT_DOUBLE_EQ(mine["total"].at("avg_days_to_convert").as_double(), 10.0);
  ReportFilter south;
  south.from_ms = kJan1;
  south.to_ms = kApr1;
  south.territories = {"south"};
  EXPECT_EQ(report("leads", kHeadOffice, south)["total"].at("created").as_int64(), 2) << "L3, L4";
}

TEST_F(NewEntityReports, ServiceCasesByPriorityAndStatusWithResolutionBreachesAndBillable) {
  json::object r = report("service_cases", kHeadOffice);
  const json::object& t = r["total"].as_object();
  EXPECT_EQ(t.at("opened").as_int64(), 5) << "C6 opened before the period";
  EXPECT_EQ(t.at("by_status").at("open").as_int64(), 2);
  EXPECT_EQ(t.at("by_status").at("resolved").as_int64(), 1);
  EXPECT_EQ(t.at("by_status").at("in_progress").as_int64(), 1);
  EXPECT_EQ(t.at("by_status").at("closed").as_int64(), 1);
  EXPECT_EQ(t.at("resolved").as_int64(), 2) << "C1 and C3";
  EXPECT_DOUBLE_EQ(t.at("avg_days_to_resolve").as_double(), 2.0);
  EXPECT_EQ(t.at("sla_breaches").as_int64(), 2) << "C1 resolved late, C2 unresolved past due";
  EXPECT_EQ(t.at("billable").as_int64(), 2) << "C1 (warranty ended before), C3 (no warranty end)";
  ASSERT_EQ(r["by_priority"].as_array().size(), 4u);
  EXPECT_EQ(r["by_priority"].at(0).at("priority").as_string(), "urgent") << "most urgent first";
  const json::object& urgent = with(r["by_priority"], "priority", "urgent");
  EXPECT_EQ(urgent.at("opened").as_int64(), 2);
  EXPECT_EQ(urgent.at("sla_breaches").as_int64(), 2);
  EXPECT_EQ(urgent.at("billable").as_int64(), 1);
  EXPECT_EQ(urgent.at("by_status").at("in_progress").as_int64(), 1);
  const json::object& low = with(r["by_priority"], "priority", "low");
  EXPECT_EQ(low.at("billable").as_int64(), 0) << "no asset";
  ASSERT_EQ(r["open_past_due"].as_array().size(), 1u);
  EXPECT_EQ(r["open_past_due"].at(0).at("case_id").as_string(), "C2");
  EXPECT_DOUBLE_EQ(r["open_past_due"].at(0).at("days_overdue").as_double(), 58.0);
  // A rep's: the cases assigned to them.
  json::object mine = report("service_cases", rep1);
  EXPECT_EQ(mine["total"].at("opened").as_int64(), 3) << "C1, C2, C5";
  EXPECT_EQ(mine["total"].at("billable").as_int64(), 1);
  // A manager's: the accounts of their territories.
  EXPECT_EQ(report("service_cases", mgr)["total"].at("opened").as_int64(), 3);
}

TEST_F(NewEntityReports, OpenTasksOverduePerRep) {
  json::object r = report("tasks_overdue", kHeadOffice);
  EXPECT_EQ(r["total"].at("open").as_int64(), 5);
  EXPECT_EQ(r["total"].at("overdue").as_int64(), 3);
  const json::object& r1 = with(r["by_rep"], "rep", "r1");
  EXPECT_EQ(r1.at("open").as_int64(), 2) << "T3 is done";
  EXPECT_EQ(r1.at("overdue").as_int64(), 1) << "T2 is due after the period's end";
  EXPECT_EQ(r1.at("oldest_due_at").as_int64(), jan(10));
  const json::object& r2 = with(r["by_rep"], "rep", "r2");
  EXPECT_EQ(r2.at("open").as_int64(), 2);
  EXPECT_EQ(r2.at("overdue").as_int64(), 1) << "T5 has no due time";
  // A manager sees the team's (r1) and their own; a rep their own.
  json::object team = report("tasks_overdue", mgr);
  ASSERT_EQ(team["by_rep"].as_array().size(), 1u);
  EXPECT_EQ(team["by_rep"].at(0).at("rep").as_string(), "r1");
  EXPECT_EQ(report("tasks_overdue", rep1)["total"].at("open").as_int64(), 2);
  // Seen from Jan 5, nothing was overdue yet.
  ReportFilter early;
  early.from_ms = kJan1;
  early.to_ms = jan(5);
  EXPECT_EQ(report("tasks_overdue", kHeadOffice, early)["total"].at("overdue").as_int64(), 0);
}

TEST_F(NewEntityReports, LeadAndCaseExportsWithTheBillableFlag) {
  auto db = reader(path);
  ReportFilter f;
  f.from_ms = kJan1;
  f.to_ms = kApr1;
  auto csv = [&](CsvKind kind, const Principal& who) {
    std::string out;
    Status st = export_csv(*db, kind, f, who, {}, [&](std::string_view chunk) {
      out += chunk;
      return true;
    });
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    return out;
  };
  const std::string cases = csv(csv_kind("service_cases").value(), kHeadOffice);
  EXPECT_EQ(cases.rfind("case_id,opened_at,subject,priority,status,account_id,territory,asset_id,assignee_id,"
                        "due_at,resolved_at,billable\r\n",
                        0),
            0u)
      << cases;
  EXPECT_NE(cases.find("C1,2026-01-02 00:00:00,S,urgent,resolved,AN,north,X1,r1,2026-01-03 00:00:00,"
                       "2026-01-04 00:00:00,1\r\n"),
            std::string::npos)
      << cases;
  EXPECT_NE(
      cases.find("C2,2026-02-01 00:00:00,S,urgent,in_progress,AN,north,X2,r1,2026-02-02 00:00:00,,0\r\n"),
      std::string::npos)
      << cases;
  EXPECT_EQ(std::count(cases.begin(), cases.end(), '\n'), 6) << "the header and C1..C5";
  const std::string leads = csv(csv_kind("leads").value(), rep1);
  EXPECT_EQ(std::count(leads.begin(), leads.end(), '\n'), 4) << "the header and L1, L2, L5: " << leads;
}

}  // namespace
}  // namespace fieldsync::server::reports

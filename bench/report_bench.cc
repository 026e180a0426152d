// Head-office reports and CSV export on a generated central store of about a million records (issue 18
// section 2; figures in docs/PERFORMANCE.md, "Head-office reports").
//
// The store: SqliteCentralStore::open creates the file (schema, indexes, format), then one SQLite
// transaction fills the entity tables row by row with what the store's save() writes -- every typed column
// and the `_meta` blob (codec::encode_record of the record with its field versions) -- and `_stage_history`
// with the stints save() would have kept. That is the store's write path minus the rules and the log, which
// reports never read; it takes seconds where a million records through SyncServer would take many minutes.
// The file is kept (--db) and reused by later runs with the same shape.
//
// Then, for each report, --runs timed calls of run_report over the last quarter and over the whole year as
// head office (and a few as a manager and a rep), after one warm-up: p50 and p99. And a CSV export of the
// quarter's visits (about 100k rows) into a file against a bare SELECT of the same rows written to a file,
// in the same run.
//
// Reports are asked in the company's time zone (--time-zone, default Europe/Berlin: a zone with summer time,
// so the local-day arithmetic is measured, not UTC's shortcut), which the store is opened with; the whole
// year's activity is also asked in UTC and in Asia/Kolkata (+5:30: its days cut the UTC days at 18:30),
// viewers' zones other than the company's, which the company zone's visits-per-day rollup does not count.
// The load average is printed before and after: the machine may be shared.
//
//   fieldsync-bench-report [--db PATH] [--runs N] [--scale X] [--time-zone ZONE] [--reports NAME,...]
//                          [--apply-only]
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/schema/model.h"
#include "fieldsync/server/reports.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/server.h"

namespace fs = fieldsync;
using fieldsync::EntityId;
using fieldsync::RecordId;
using fieldsync::Value;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr int64_t kYearStart = 1767225600000;  // 2026-01-01T00:00Z
constexpr int64_t kYearEnd = kYearStart + 365 * kDayMs;
constexpr fs::NodeId kNode = 42;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "report_bench: %s\n", what.c_str());
  std::exit(1);
}

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    die(std::string(what) + ": " + sqlite3_errmsg(db));
}

struct Shape {
  int territories = 20;
  int reps_per_territory = 5;
  int accounts = 20000;
  int products = 500;
  int visits = 400000;  // besides those of appointments
  int events = 100000;
  int orders = 120000;  // 1-5 lines each (3 on average)
  int opportunities = 40000;
  // Schema 3 (issue 21), added by a second pass (generate_schema3) so a store of the shape above is reused
  int leads = 60000;
  int assets = 30000;
  int cases = 40000;
  int tasks = 80000;
  std::string schema3_key() const {
    return "s3-" + std::to_string(leads) + "-" + std::to_string(assets) + "-" + std::to_string(cases) + "-" +
           std::to_string(tasks);
  }
  std::string key() const {
    return std::to_string(accounts) + "-" + std::to_string(visits) + "-" + std::to_string(events) + "-" +
           std::to_string(orders) + "-" + std::to_string(opportunities);
  }
};

// Inserts records of every entity as the store's save() writes them: typed columns plus _meta.
class Writer {
 public:
  explicit Writer(sqlite3* db) : db_(db), ids_(7) {
    for (const fs::schema::EntityDef& e : fs::schema::entities()) {
      std::string cols = "id", params = "?";
      for (const fs::schema::FieldDef& f : e.fields) {
        cols += ", " + fs::schema::quoted(f.name);
        params += ", ?";
      }
      const std::string sql = "INSERT INTO " + fs::schema::quoted(e.name) + " (" + cols +
                              ", _deleted, _meta) VALUES (" + params + ", 0, ?)";
      sqlite3_stmt* st = nullptr;
      check(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr), db_, "prepare insert");
      stmts_[static_cast<size_t>(e.id)] = st;
    }
    check(sqlite3_prepare_v2(db_,
                             "INSERT INTO _stage_history (opportunity_id, stage, entered_at_ms, left_at_ms, "
                             "next_stage) VALUES (?, ?, ?, ?, ?)",
                             -1, &stint_, nullptr),
          db_, "prepare stint");
  }
  ~Writer() {
    for (sqlite3_stmt* st : stmts_)
      if (st) sqlite3_finalize(st);
    sqlite3_finalize(stint_);
  }

  RecordId insert(EntityId entity, int64_t at_ms, const std::vector<std::pair<uint16_t, Value>>& values,
                  const std::string& user) {
    const fs::schema::EntityDef& e = fs::schema::entity_ref(entity);
    RecordId id = ids_.next(at_ms);
    fs::RecordState r;
    r.entity = entity;
    r.id = id;
    fs::Hlc hlc = fs::make_hlc(at_ms, 0);
    r.created = fs::Version{hlc++, kNode};
    for (const auto& [field, v] : values) {
      fs::FieldState fsn;
      fsn.field = field;
      fsn.value = v;
      fsn.version = fs::Version{hlc++, kNode};
      fsn.user = user;
      r.fields.push_back(std::move(fsn));
    }
    std::sort(r.fields.begin(), r.fields.end(),
              [](const auto& a, const auto& b) { return a.field < b.field; });
    sqlite3_stmt* st = stmts_[static_cast<size_t>(entity)];
    const std::string id_text = id.to_string();
    sqlite3_bind_text(st, 1, id_text.c_str(), static_cast<int>(id_text.size()), SQLITE_TRANSIENT);
    int i = 2;
    for (const fs::schema::FieldDef& f : e.fields) {
      const fs::FieldState* fsn = r.field(f.id);
      const int col = i++;
      if (!fsn) {
        sqlite3_bind_null(st, col);
        continue;
      }
      const Value& v = fsn->value;
      switch (v.kind()) {
        case Value::Kind::kNull:
          sqlite3_bind_null(st, col);
          break;
        case Value::Kind::kInt:
          sqlite3_bind_int64(st, col, v.as_int());
          break;
        case Value::Kind::kReal:
          sqlite3_bind_double(st, col, v.as_real());
          break;
        case Value::Kind::kBool:
          sqlite3_bind_int64(st, col, v.as_bool() ? 1 : 0);
          break;
        case Value::Kind::kText:
          sqlite3_bind_text(st, col, v.as_text().c_str(), static_cast<int>(v.as_text().size()),
                            SQLITE_TRANSIENT);
          break;
      }
    }
    const std::vector<uint8_t> meta = fs::codec::encode_record(r);
    sqlite3_bind_blob(st, i, meta.data(), static_cast<int>(meta.size()), SQLITE_TRANSIENT);
    check(sqlite3_step(st), db_, "insert");
    sqlite3_reset(st);
    ++records_;
    return id;
  }

  void stint(const RecordId& opp, const std::string& stage, int64_t entered, std::optional<int64_t> left,
             const std::string& next) {
    const std::string id = opp.to_string();
    sqlite3_bind_text(stint_, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stint_, 2, stage.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stint_, 3, entered);
    if (left) {
      sqlite3_bind_int64(stint_, 4, *left);
      sqlite3_bind_text(stint_, 5, next.c_str(), -1, SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(stint_, 4);
      sqlite3_bind_null(stint_, 5);
    }
    check(sqlite3_step(stint_), db_, "stint");
    sqlite3_reset(stint_);
    ++stints_;
  }
  uint64_t records() const { return records_; }
  uint64_t stints() const { return stints_; }

 private:
  sqlite3* db_;
  fs::RecordIdGenerator ids_;
  sqlite3_stmt* stmts_[16] = {};
  sqlite3_stmt* stint_ = nullptr;
  uint64_t records_ = 0, stints_ = 0;
};

std::string rep_name(int territory, int k) {
  return "rep-" + std::to_string(territory) + "-" + std::to_string(k);
}
std::string territory_name(int t) {
  return "t" + std::to_string(t);
}

void generate(const std::string& path, const Shape& shape) {
  {
    fs::server::SqliteCentralStore::Options o;
    auto store = fs::server::SqliteCentralStore::open(path, o);
    if (!store) die("open store: " + store.status().to_string());
  }
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  check(
      sqlite3_exec(db, "PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144",
                   nullptr, nullptr, nullptr),
      db, "pragmas");
  check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
  const auto t0 = Clock::now();
  {
    Writer w(db);
    std::mt19937_64 rng(2026);
    auto uni = [&](int64_t lo, int64_t hi) {
      return std::uniform_int_distribution<int64_t>(lo, hi - 1)(rng);
    };
    auto day_time = [&](int64_t lo, int64_t hi) {  // a time in working hours (08:00-18:00) in [lo, hi)
      const int64_t day = kYearStart + (uni(lo, hi) - kYearStart) / kDayMs * kDayMs;
      return day + 8 * 3600000LL + uni(0, 10 * 3600000LL);
    };
    const int n_terr = shape.territories;
    std::vector<RecordId> accounts;
    std::vector<int> account_terr;
    for (int i = 0; i < shape.accounts; ++i) {
      const int t = i % n_terr;
      accounts.push_back(w.insert(EntityId::kAccount, kYearStart - 400 * kDayMs + i,
                                  {{1, Value::text("Account " + std::to_string(i) + " GmbH")},
                                   {2, Value::text(territory_name(t))},
                                   {3, Value::text(std::to_string(i % 300) + " Main Street")},
                                   {4, Value::text("City " + std::to_string(i % 97))},
                                   {7, Value::text(i % 3 == 0 ? "a" : (i % 3 == 1 ? "b" : "c"))},
                                   {8, Value::integer(100000 + i % 50 * 1000)},
                                   {10, Value::text("ho")}},
                                  "ho"));
      account_terr.push_back(t);
    }
    // An account of territory t (accounts are dealt round-robin).
    auto account_in = [&](int t) {
      const int per = shape.accounts / n_terr;
      return static_cast<size_t>(t + n_terr * uni(0, per));
    };
    std::vector<RecordId> products;
    for (int i = 0; i < shape.products; ++i)
      products.push_back(w.insert(EntityId::kProduct, kYearStart - 400 * kDayMs,
                                  {{1, Value::text("SKU-" + std::to_string(i))},
                                   {2, Value::text("Product " + std::to_string(i))},
                                   {4, Value::boolean(true)}},
                                  "ho"));
    // Records are created in time order, as devices create them: their UUIDv7 ids then follow their times,
    // as on a real server (a generator drawing times at random would scatter every index seek).
    auto sorted_times = [&](int n, auto draw) {
      std::vector<int64_t> v(static_cast<size_t>(n));
      for (int64_t& t : v) t = draw();
      std::sort(v.begin(), v.end());
      return v;
    };
    const auto event_times = sorted_times(shape.events, [&] { return day_time(kYearStart, kYearEnd); });
    const auto visit_times = sorted_times(shape.visits, [&] { return day_time(kYearStart, kYearEnd); });
    const auto order_times = sorted_times(shape.orders, [&] { return day_time(kYearStart, kYearEnd); });
    const auto deal_times = sorted_times(
        shape.opportunities, [&] { return uni(kYearStart - 60 * kDayMs, kYearEnd - 10 * kDayMs); });
    const char* outcomes[] = {"order_taken", "follow_up", "no_interest", "not_available", "other"};
    auto visit = [&](int t, int k, size_t a, int64_t at, std::optional<RecordId> linked) {
      std::vector<std::pair<uint16_t, Value>> v = {{1, Value::text(accounts[a].to_string())},
                                                   {2, Value::text(rep_name(t, k))},
                                                   {4, Value::integer(at)},
                                                   {5, Value::integer(at + 30 * 60000)},
                                                   {6, Value::real(48.0 + uni(0, 1000) / 1000.0)},
                                                   {7, Value::real(11.0 + uni(0, 1000) / 1000.0)},
                                                   {9, Value::text(outcomes[uni(0, 5)])}};
      if (linked) v.push_back({3, Value::text(linked->to_string())});
      w.insert(EntityId::kVisit, at, v, rep_name(t, k));
    };
    // Appointments: 80% are visited (a quarter of those linked, 70% on time), the rest missed.
    for (int i = 0; i < shape.events; ++i) {
      const int t = static_cast<int>(uni(0, n_terr)), k = static_cast<int>(uni(0, shape.reps_per_territory));
      const size_t a = account_in(t);
      const int64_t start = event_times[static_cast<size_t>(i)];
      RecordId e = w.insert(EntityId::kCalendarEvent, start - 7 * kDayMs,
                            {{1, Value::text(rep_name(t, k))},
                             {2, Value::text(accounts[a].to_string())},
                             {3, Value::text("Visit")},
                             {4, Value::integer(start)},
                             {5, Value::integer(start + 3600000)},
                             {6, Value::text(uni(0, 20) == 0 ? "cancelled" : "scheduled")}},
                            rep_name(t, k));
      if (uni(0, 10) < 8) {
        const int64_t at = start + (uni(0, 10) < 7 ? uni(-600000, 600000) : uni(1200000, 7200000));
        visit(t, k, a, at, uni(0, 4) == 0 ? std::optional(e) : std::nullopt);
      }
    }
    for (int i = 0; i < shape.visits; ++i) {
      const int t = static_cast<int>(uni(0, n_terr)), k = static_cast<int>(uni(0, shape.reps_per_territory));
      visit(t, k, account_in(t), visit_times[static_cast<size_t>(i)], std::nullopt);
    }
    for (int i = 0; i < shape.orders; ++i) {
      const int t = static_cast<int>(uni(0, n_terr)), k = static_cast<int>(uni(0, shape.reps_per_territory));
      const size_t a = account_in(t);
      const int64_t at = order_times[static_cast<size_t>(i)];
      const int64_t roll = uni(0, 100);
      const char* status = roll < 50   ? "approved"
                           : roll < 70 ? "fulfilled"
                           : roll < 85 ? "submitted"
                           : roll < 95 ? "draft"
                                       : "cancelled";
      std::vector<std::pair<uint16_t, Value>> v = {{1, Value::text(accounts[a].to_string())},
                                                   {2, Value::text(rep_name(t, k))},
                                                   {3, Value::text(status)},
                                                   {4, Value::text("EUR")}};
      if (std::string(status) != "draft") v.push_back({6, Value::integer(at)});
      if (roll < 70) {
        v.push_back({7, Value::text("ho")});
        v.push_back({8, Value::integer(at + kDayMs)});
      }
      RecordId o = w.insert(EntityId::kOrder, at, v, rep_name(t, k));
      const int lines = static_cast<int>(uni(1, 6));
      for (int l = 0; l < lines; ++l) {
        std::vector<std::pair<uint16_t, Value>> lv = {
            {1, Value::text(o.to_string())},
            {2, Value::text(products[uni(0, shape.products)].to_string())},
            {3, Value::integer(uni(1, 50))},
            {4, Value::integer(uni(100, 20000))}};
        if (uni(0, 4) == 0) lv.push_back({5, Value::integer(uni(1, 20) * 100)});
        w.insert(EntityId::kOrderLine, at, lv, rep_name(t, k));
      }
    }
    // Deals: created through the year, moving forward every 3-40 days; half end won or lost.
    const std::vector<std::string> stages = {"prospect", "qualified", "proposal", "negotiation"};
    for (int i = 0; i < shape.opportunities; ++i) {
      const int t = static_cast<int>(uni(0, n_terr)), k = static_cast<int>(uni(0, shape.reps_per_territory));
      const int64_t created = deal_times[static_cast<size_t>(i)];
      struct Stint {
        std::string stage;
        int64_t at;
      };
      std::vector<Stint> path = {{"prospect", created}};
      const int64_t fate = uni(0, 10);  // 0-2 won, 3-4 lost, else open
      size_t s = 0;
      int64_t at = created;
      while (true) {
        at += uni(3, 41) * kDayMs + uni(0, kDayMs);
        if (at >= kYearEnd) break;
        const bool last = s + 1 == stages.size() || uni(0, 4) == 0;
        if (last && fate <= 4) {
          path.push_back({fate <= 2 ? "won" : "lost", at});
          break;
        }
        if (s + 1 == stages.size()) break;
        path.push_back({stages[++s], at});
      }
      const std::string& stage = path.back().stage;
      std::vector<std::pair<uint16_t, Value>> v = {{1, Value::text(accounts[account_in(t)].to_string())},
                                                   {2, Value::text(rep_name(t, k))},
                                                   {3, Value::text("Deal " + std::to_string(i))},
                                                   {4, Value::text(stage)},
                                                   {5, Value::integer(uni(1000, 5000000))},
                                                   {6, Value::text("EUR")},
                                                   {7, Value::integer(created + uni(30, 200) * kDayMs)}};
      RecordId o = w.insert(EntityId::kOpportunity, created, v, rep_name(t, k));
      for (size_t j = 0; j < path.size(); ++j)
        w.stint(o, path[j].stage, path[j].at,
                j + 1 < path.size() ? std::optional(path[j + 1].at) : std::nullopt,
                j + 1 < path.size() ? path[j + 1].stage : "");
    }
    check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("generated %llu records and %llu stage-history rows in %.1f s (%.0f records/s)\n",
                static_cast<unsigned long long>(w.records()), static_cast<unsigned long long>(w.stints()), s,
                static_cast<double>(w.records()) / s);
  }
  // No ANALYZE: the store never runs it, so the planner sees what it sees on a real server.
  check(sqlite3_exec(db, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr), db, "wal");
  sqlite3_close(db);
}

// Schema 3's records (issue 21) in the same way, into a store that has the entities above: leads through
// the year (a quarter converted 3-60 days later, a fifth disqualified), assets at accounts (warranties
// ending before and after the year's end), service cases opened through the year (70% on an asset of their
// account, most resolved, with the SLA due time dispatch sets) and tasks (a third still open, part overdue).
// Owners and assignees are the reps of the record's territory, so a manager's or a rep's scope holds some.
void generate_schema3(const std::string& path, const Shape& shape) {
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  check(sqlite3_exec(db, "PRAGMA synchronous = OFF; PRAGMA cache_size = -262144", nullptr, nullptr, nullptr),
        db, "pragmas");
  check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
  const auto t0 = Clock::now();
  Writer w(db);
  std::mt19937_64 rng(2027);
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi - 1)(rng); };
  auto day_time = [&](int64_t lo, int64_t hi) {
    const int64_t day = kYearStart + (uni(lo, hi) - kYearStart) / kDayMs * kDayMs;
    return day + 8 * 3600000LL + uni(0, 10 * 3600000LL);
  };
  auto sorted_times = [&](int n, int64_t lo, int64_t hi) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t& t : v) t = day_time(lo, hi);
    std::sort(v.begin(), v.end());
    return v;
  };
  // The accounts (in the order generate() created them: account i is in territory i % territories) and
  // products already in the file.
  auto ids_of = [&](const char* sql) {
    std::vector<std::string> out;
    sqlite3_stmt* st = nullptr;
    check(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), db, "prepare ids");
    while (sqlite3_step(st) == SQLITE_ROW)
      out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    return out;
  };
  const std::vector<std::string> accounts = ids_of("SELECT id FROM account ORDER BY id");
  const std::vector<std::string> products = ids_of("SELECT id FROM product ORDER BY id");
  if (accounts.empty() || products.empty()) die("schema 3: the store has no accounts or products");
  const int n_terr = shape.territories;
  auto account_in = [&](int t) {
    const int64_t per = static_cast<int64_t>(accounts.size()) / n_terr;
    return static_cast<size_t>(t + n_terr * uni(0, per));
  };
  auto a_rep = [&](int t) { return rep_name(t, static_cast<int>(uni(0, shape.reps_per_territory))); };
  const char* sources[] = {"campaign",          "web_form", "email_enquiry", "phone_enquiry",
                           "field_prospecting", "referral", "other"};
  const auto lead_times = sorted_times(shape.leads, kYearStart, kYearEnd);
  for (int i = 0; i < shape.leads; ++i) {
    const int t = static_cast<int>(uni(0, n_terr));
    const int64_t created = lead_times[static_cast<size_t>(i)];
    const int64_t roll = uni(0, 100);
    const int64_t converted_at = created + uni(3, 61) * kDayMs;
    const char* status = roll < 25 && converted_at < kYearEnd ? "converted"
                         : roll < 45                          ? "disqualified"
                         : roll < 60                          ? "qualified"
                         : roll < 75                          ? "contacted"
                                                              : "new";
    const std::string owner = a_rep(t);
    std::vector<std::pair<uint16_t, Value>> v = {
        {1, Value::text("Person " + std::to_string(i))},
        {2, Value::text("Prospect " + std::to_string(i % 5000) + " AG")},
        {3, Value::text("lead" + std::to_string(i) + "@example.com")},
        {5, Value::text(sources[uni(0, 7)])},
        {6, Value::text(owner)},
        {7, Value::text(territory_name(t))},
        {8, Value::text(status)},
        {14, Value::integer(created)}};
    if (std::string(status) == "converted") {
      v.push_back({10, Value::text(accounts[account_in(t)])});
      v.push_back({13, Value::integer(converted_at)});
    } else if (std::string(status) == "disqualified") {
      v.push_back({9, Value::text("no budget")});
    }
    w.insert(EntityId::kLead, created, v, owner);
  }
  // Assets, installed before the year; the account index of each (for its cases).
  std::vector<std::pair<RecordId, size_t>> assets;
  for (int i = 0; i < shape.assets; ++i) {
    const int t = static_cast<int>(uni(0, n_terr));
    const size_t a = account_in(t);
    const int64_t installed = kYearStart - uni(30, 1000) * kDayMs;
    assets.emplace_back(
        w.insert(
            EntityId::kAsset, installed,
            {{1, Value::text(accounts[a])},
             {2, Value::text(products[static_cast<size_t>(uni(0, static_cast<int64_t>(products.size())))])},
             {3, Value::text("SN-" + std::to_string(100000 + i))},
             {4, Value::integer(installed)},
             {5, Value::integer(installed + uni(365, 1100) * kDayMs)}},
            "ho"),
        a);
  }
  const char* priorities[] = {"urgent", "high",   "high",   "normal", "normal",
                              "normal", "normal", "normal", "low",    "low"};
  const auto case_times = sorted_times(shape.cases, kYearStart, kYearEnd);
  for (int i = 0; i < shape.cases; ++i) {
    const int64_t opened = case_times[static_cast<size_t>(i)];
    size_t a;
    std::optional<RecordId> asset;
    if (uni(0, 10) < 7 && !assets.empty()) {
      const auto& [id, account] = assets[static_cast<size_t>(uni(0, static_cast<int64_t>(assets.size())))];
      asset = id;
      a = account;
    } else {
      a = account_in(static_cast<int>(uni(0, n_terr)));
    }
    const int t = static_cast<int>(a % static_cast<size_t>(n_terr));
    const std::string priority = priorities[uni(0, 10)];
    const int64_t sla_h = priority == "urgent" ? 4 : priority == "high" ? 8 : priority == "normal" ? 24 : 72;
    const int64_t roll = uni(0, 100);
    const char* status = roll < 10   ? "open"
                         : roll < 20 ? "assigned"
                         : roll < 30 ? "in_progress"
                         : roll < 60 ? "resolved"
                                     : "closed";
    const std::string opener = a_rep(t);
    std::vector<std::pair<uint16_t, Value>> v = {
        {1, Value::text(accounts[a])}, {4, Value::text("Case " + std::to_string(i))},
        {5, Value::text(priority)},    {6, Value::text(status)},
        {11, Value::integer(opened)},  {13, Value::text(opener)}};
    if (asset) v.push_back({3, Value::text(asset->to_string())});
    if (std::string(status) != "open") {
      v.push_back({7, Value::text(a_rep(t))});
      v.push_back({8, Value::integer(opened + sla_h * 3600000)});  // dispatch: opened + the priority's SLA
    }
    if (roll >= 30) {
      const int64_t resolved = opened + uni(1, 240) * 3600000;  // within 10 days, often past the SLA
      if (resolved < kYearEnd) v.push_back({12, Value::integer(resolved)});
    }
    w.insert(EntityId::kServiceCase, opened, v, opener);
  }
  const char* task_status[] = {"open", "done", "done", "cancelled"};
  const auto task_times = sorted_times(shape.tasks, kYearStart, kYearEnd);
  for (int i = 0; i < shape.tasks; ++i) {
    const int t = static_cast<int>(uni(0, n_terr));
    const int64_t created = task_times[static_cast<size_t>(i)];
    const std::string owner = a_rep(t);
    const char* status = task_status[uni(0, 4)];
    std::vector<std::pair<uint16_t, Value>> v = {{1, Value::text(owner)},
                                                 {2, Value::text("Call back " + std::to_string(i))},
                                                 {3, Value::integer(created + uni(1, 60) * kDayMs)},
                                                 {5, Value::text(status)}};
    if (i % 2 == 0) v.push_back({6, Value::text(accounts[account_in(t)])});
    if (std::string(status) == "done") v.push_back({11, Value::integer(created + uni(0, 30) * kDayMs)});
    w.insert(EntityId::kTask, created, v, owner);
  }
  check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  std::printf("generated %llu schema-3 records (leads, assets, service cases, tasks) in %.1f s\n",
              static_cast<unsigned long long>(w.records()),
              std::chrono::duration<double>(Clock::now() - t0).count());
  sqlite3_close(db);
}

// CPU time of this thread: what a report costs whatever else the machine runs (wall time on a shared
// two-core machine includes waiting for the other processes).
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// What the reports cost the write path: SyncServer::apply_local of transactions like a rep's day -- an
// order with three lines, a visit and a deal's stage move (24 changes) -- into a SqliteCentralStore with
// group commit (sync() every 64 transactions, as the service does), once as it is and once with the
// report indexes and triggers dropped and the model's one-column indexes they replaced put back (the
// format-4 layout for these tables; _stage_history is still written). Alternated twice, best of each.
class NoAuth final : public fs::Authenticator {
 public:
  fs::Result<fs::Principal> authenticate(const fs::protocol::Hello&, int64_t) override {
    return fs::Status(fs::ErrorCode::kAuthFailed, "not used");
  }
};

// Indexes and triggers dropped from the "with" store of --apply-profile (--drop a,b): what each costs.
std::vector<std::string> g_drop;
std::string g_exec;  // --exec SQL: run on that store after the drops (a trigger rewritten, to compare)

double apply_rate(const std::string& dir, bool without_reports, int txns) {
  const std::string path = dir + "/apply-" + std::to_string(without_reports) + ".db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  fs::server::SqliteCentralStore::Options o;
  o.group_commit = true;
  auto store_r = fs::server::SqliteCentralStore::open(path, o);
  if (!store_r) die("apply store: " + store_r.status().to_string());
  auto store = std::move(store_r.value());
  if (without_reports) {
    sqlite3* db = nullptr;
    check(sqlite3_open(path.c_str(), &db), db, "open");
    std::string sql;
    for (const char* name :
         {"idx_report_order_date", "idx_report_account", "idx_report_visit_check_in",
          "idx_report_visit_account", "idx_report_visit_event", "idx_report_opportunity_stage",
          "idx_report_opportunity_id", "idx_order_fact_at", "idx_order_fact_account",
          "idx_order_line_fact_at", "idx_appointment_fact_start", "idx_appointment_fact_match"})
      sql += "DROP INDEX " + std::string(name) + ";";
    for (const char* name :
         {"_fact_order_insert", "_fact_order_update", "_fact_line_insert", "_fact_line_update",
          "_fact_account_territory", "_fact_event_insert", "_fact_event_update", "_fact_visit_insert",
          "_fact_visit_update", "_fact_visit_delete"})
      sql += "DROP TRIGGER " + std::string(name) + ";";
    sql +=
        "CREATE INDEX idx_visit_account_id ON visit (account_id); CREATE INDEX idx_visit_calendar_event_id "
        "ON "
        "visit (calendar_event_id);";
    check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), db, "drop report indexes");
    sqlite3_close(db);
  }
  if (!without_reports && (!g_drop.empty() || !g_exec.empty())) {
    sqlite3* db = nullptr;
    check(sqlite3_open(path.c_str(), &db), db, "open");
    for (const std::string& name : g_drop) {
      const std::string sql = (name.rfind("idx_", 0) == 0 ? "DROP INDEX " : "DROP TRIGGER ") + name;
      check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), db, "drop");
    }
    if (!g_exec.empty()) check(sqlite3_exec(db, g_exec.c_str(), nullptr, nullptr, nullptr), db, "exec");
    sqlite3_close(db);
  }
  NoAuth auth;
  fs::SyncServer server(*store, auth, fs::ServerConfig{});
  const fs::Principal ho{"ho", fs::schema::Role::kHeadOffice, {}, {}};
  fs::RecordIdGenerator ids(9);
  uint64_t seq = 0;
  int64_t now = kYearStart;
  uint16_t logical = 0;
  auto txn = [&] {
    fs::ClientTxn t;
    t.node = kNode;
    t.node_seq = ++seq;
    t.created_at_ms = now;
    return t;
  };
  auto add = [&](fs::ClientTxn& t, fs::ChangeOp op, EntityId e, const RecordId& id, uint16_t field, Value v) {
    fs::Change c{op, e, id, field};
    c.value = std::move(v);
    c.version = fs::Version{fs::make_hlc(now, ++logical), kNode};
    t.changes.push_back(std::move(c));
  };
  auto create = [&](fs::ClientTxn& t, EntityId e, const std::vector<std::pair<uint16_t, Value>>& fields) {
    RecordId id = ids.next(now);
    add(t, fs::ChangeOp::kCreate, e, id, 0, Value());
    for (const auto& [f, v] : fields) add(t, fs::ChangeOp::kSet, e, id, f, v);
    return id;
  };
  auto apply = [&](const fs::ClientTxn& t) {
    auto r = server.apply_local(t, ho, now);
    if (!r || r->outcome != fs::protocol::TxnOutcome::kApplied)
      die("apply: " + (r ? r->message : r.status().to_string()));
  };
  fs::ClientTxn setup = txn();
  const RecordId account = create(setup, EntityId::kAccount,
                                  {{1, Value::text("A")}, {2, Value::text("t0")}, {10, Value::text("ho")}});
  const RecordId product = create(setup, EntityId::kProduct,
                                  {{1, Value::text("P")}, {2, Value::text("P")}, {4, Value::boolean(true)}});
  const RecordId deal = create(setup, EntityId::kOpportunity,
                               {{1, Value::text(account.to_string())},
                                {2, Value::text("rep")},
                                {3, Value::text("d")},
                                {4, Value::text("prospect")},
                                {5, Value::integer(100)},
                                {6, Value::text("EUR")}});
  apply(setup);
  if (!store->sync()) die("sync");
  const auto t0 = Clock::now();
  for (int i = 0; i < txns; ++i) {
    now += 1000;
    logical = 0;
    fs::ClientTxn t = txn();
    const RecordId order = create(t, EntityId::kOrder,
                                  {{1, Value::text(account.to_string())},
                                   {2, Value::text("rep")},
                                   {3, Value::text("submitted")},
                                   {4, Value::text("EUR")},
                                   {6, Value::integer(now)}});
    for (int l = 0; l < 3; ++l)
      create(t, EntityId::kOrderLine,
             {{1, Value::text(order.to_string())},
              {2, Value::text(product.to_string())},
              {3, Value::integer(2)},
              {4, Value::integer(150)}});
    create(t, EntityId::kVisit,
           {{1, Value::text(account.to_string())}, {2, Value::text("ho")}, {4, Value::integer(now)}});
    add(t, fs::ChangeOp::kSet, EntityId::kOpportunity, deal, 4,
        Value::text(i % 2 ? "qualified" : "proposal"));
    apply(t);
    if (i % 64 == 63 && !store->sync()) die("sync");
  }
  if (!store->sync()) die("sync");
  const double rate = txns / std::chrono::duration<double>(Clock::now() - t0).count();
  store.reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  return rate;
}

// The write path with and without what the reports add.
void apply_comparison(const std::string& dir) {
  double with = 0, without = 0;
  for (int i = 0; i < 2; ++i) {
    with = std::max(with, apply_rate(dir, false, 3000));
    without = std::max(without, apply_rate(dir, true, 3000));
  }
  std::printf(
      "\napply path (order + 3 lines + visit + stage move per transaction, group commit): %.0f txns/s "
      "with the report indexes and triggers, %.0f without: %.2fx\n",
      with, without, with / without);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = "/tmp/fieldsync-report-bench.db";
  int runs = 30;
  bool apply_only = false;        // only the write-path comparison at the end
  std::vector<std::string> only;  // --reports a,b: only these reports, no CSV or write-path part
  // --apply-profile with|without [--txns N]: one write-path run, for callgrind (instructions do not depend on
  // the machine's load): valgrind --tool=callgrind --toggle-collect='fieldsync::SyncServer::apply_local*'
  std::string profile;
  int profile_txns = 500;
  std::string zone = "Europe/Berlin";
  Shape shape;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--db" && i + 1 < argc) {
      path = argv[++i];
    } else if (a == "--time-zone" && i + 1 < argc) {
      zone = argv[++i];
    } else if (a == "--reports" && i + 1 < argc) {
      std::string list = argv[++i];
      for (size_t p = 0; p <= list.size();) {
        const size_t comma = std::min(list.find(',', p), list.size());
        if (comma > p) only.push_back(list.substr(p, comma - p));
        p = comma + 1;
      }
    } else if (a == "--apply-profile" && i + 1 < argc) {
      profile = argv[++i];
      if (profile != "with" && profile != "without") profile.clear();
    } else if (a == "--drop" && i + 1 < argc) {
      std::string list = argv[++i];
      for (size_t p = 0; p <= list.size();) {
        const size_t comma = std::min(list.find(',', p), list.size());
        if (comma > p) g_drop.push_back(list.substr(p, comma - p));
        p = comma + 1;
      }
    } else if (a == "--exec" && i + 1 < argc) {
      g_exec = argv[++i];
    } else if (a == "--txns" && i + 1 < argc) {
      profile_txns = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--apply-only") {
      apply_only = true;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::max(2, std::atoi(argv[++i]));
    } else if (a == "--scale" && i + 1 < argc) {
      const double x = std::atof(argv[++i]);
      shape.accounts = static_cast<int>(shape.accounts * x);
      shape.visits = static_cast<int>(shape.visits * x);
      shape.events = static_cast<int>(shape.events * x);
      shape.orders = static_cast<int>(shape.orders * x);
      shape.opportunities = static_cast<int>(shape.opportunities * x);
      shape.leads = static_cast<int>(shape.leads * x);
      shape.assets = static_cast<int>(shape.assets * x);
      shape.cases = static_cast<int>(shape.cases * x);
      shape.tasks = static_cast<int>(shape.tasks * x);
    } else {
      std::fprintf(stderr,
                   "usage: fieldsync-bench-report [--db PATH] [--runs N] [--scale X] [--time-zone ZONE] "
                   "[--reports NAME,...] [--apply-only] "
                   "[--apply-profile with|without [--txns N]]\n");
      return 2;
    }
  }
  if (!profile.empty()) {
    const double rate =
        apply_rate(std::filesystem::path(path).parent_path().string(), profile == "without", profile_txns);
    std::printf("%s the report tables: %d transactions, %.0f txns/s\n", profile.c_str(), profile_txns, rate);
    return 0;
  }
  if (apply_only) {
    apply_comparison(std::filesystem::path(path).parent_path().string());
    return 0;
  }
  // The marker names the shape in the file: the entities of generate() and, after a space, schema 3's (a
  // file from before schema 3's pass gets that pass only).
  const std::string marker = path + ".shape";
  std::string have;
  if (std::filesystem::exists(path) && std::filesystem::exists(marker)) {
    std::FILE* f = std::fopen(marker.c_str(), "r");
    char buf[256] = {};
    if (f && std::fgets(buf, sizeof buf, f)) have = buf;
    if (f) std::fclose(f);
  }
  const std::string base = have.substr(0, have.find(' '));
  const std::string s3 = have.find(' ') == std::string::npos ? "" : have.substr(have.find(' ') + 1);
  if (base != shape.key()) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(path + suffix);
    generate(path, shape);
  } else {
    std::printf("reusing %s\n", path.c_str());
  }
  if (base != shape.key() || s3 != shape.schema3_key()) {
    {  // through the store first: an older file gets schema 3's tables (format migration)
      fs::server::SqliteCentralStore::Options o;
      o.time_zone = zone;
      if (auto st = fs::server::SqliteCentralStore::open(path, o); !st)
        die("store open: " + st.status().to_string());
    }
    if (s3.empty() || base != shape.key()) {
      generate_schema3(path, shape);
    } else {
      die("the file has schema-3 records of another shape (" + s3 + "): remove it");
    }
    std::FILE* f = std::fopen(marker.c_str(), "w");
    std::fputs((shape.key() + " " + shape.schema3_key()).c_str(), f);
    std::fclose(f);
  }
  {  // open through the store once: the format check (and migration of an older file), and the same state a
     // server would leave
    fs::server::SqliteCentralStore::Options o;
    o.time_zone = zone;
    const auto t = Clock::now();
    if (auto st = fs::server::SqliteCentralStore::open(path, o); !st)
      die("store open: " + st.status().to_string());
    std::printf("store open (with any format migration or recount of the rollup in %s): %.1f s\n",
                zone.c_str(), std::chrono::duration<double>(Clock::now() - t).count());
  }
  auto db = fs::server::reports::open_report_db(path);
  if (!db) die("report db: " + db.status().to_string());
  {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(
        (*db)->raw(),
        "SELECT (SELECT count(*) FROM account) + (SELECT count(*) FROM product) + (SELECT count(*) "
        "FROM visit) + (SELECT count(*) FROM calendar_event) + (SELECT count(*) FROM \"order\") + "
        "(SELECT count(*) FROM order_line) + (SELECT count(*) FROM opportunity) + (SELECT count(*) FROM "
        "lead) + (SELECT count(*) FROM asset) + (SELECT count(*) FROM service_case) + (SELECT count(*) FROM "
        "task), (SELECT count(*) FROM _stage_history)",
        -1, &st, nullptr);
    sqlite3_step(st);
    std::printf("store: %lld records, %lld stage-history rows, %.0f MiB\n",
                static_cast<long long>(sqlite3_column_int64(st, 0)),
                static_cast<long long>(sqlite3_column_int64(st, 1)),
                static_cast<double>(std::filesystem::file_size(path)) / (1024.0 * 1024.0));
    sqlite3_finalize(st);
  }

  using fs::schema::Role;
  const fs::Principal head_office{"ho", Role::kHeadOffice, {}, {}};
  const fs::Principal manager{"mgr-0", Role::kManager, {"t0", "t1"}, {"rep-0-0", "rep-0-1", "rep-1-0"}};
  const fs::Principal rep{"rep-3-2", Role::kRep, {"t3"}, {}};
  fs::server::reports::ReportFilter quarter;
  quarter.to_ms = kYearEnd;
  quarter.from_ms = kYearEnd - 91 * kDayMs;
  quarter.time_zone = zone;
  fs::server::reports::ReportFilter year = quarter;
  year.from_ms = kYearStart;
  fs::server::reports::ReportFilter year_utc = year;  // other zones than the company's
  year_utc.time_zone = "UTC";
  fs::server::reports::ReportFilter year_kolkata = year;
  year_kolkata.time_zone = "Asia/Kolkata";
  fs::server::reports::ReportFilter forecast = quarter;  // half a year back, half a year ahead
  forecast.from_ms = kYearEnd - 182 * kDayMs;
  forecast.to_ms = kYearEnd + 182 * kDayMs;

  struct Case {
    const char* label;
    const fs::Principal* who;
    const fs::server::reports::ReportFilter* filter;
  };
  const Case cases[] = {{"head office, last quarter", &head_office, &quarter},
                        {"head office, whole year", &head_office, &year},
                        {"manager (2 territories), quarter", &manager, &quarter},
                        {"rep, quarter", &rep, &quarter},
                        {"head office, whole year in UTC", &head_office, &year_utc},
                        {"head office, whole year in Asia/Kolkata", &head_office, &year_kolkata}};
  double load[3] = {};
  if (getloadavg(load, 3) == 3)
    std::printf("\nload average before: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  std::printf(
      "\n| report | caller, period | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms | answer bytes "
      "|\n|---|---|---:|---:|---:|---:|---:|\n");
  double worst_p99 = 0, worst_cpu_p99 = 0, worst_viewer_p99 = 0, worst_viewer_cpu_p99 = 0;
  for (const Case& c : cases) {
    for (std::string_view name : fs::server::reports::kReportNames) {
      const bool viewer_zone = c.filter == &year_utc || c.filter == &year_kolkata;
      if (viewer_zone && name != "activity") continue;  // the one report the zone changes the path of
      if (!only.empty() && std::find(only.begin(), only.end(), std::string(name)) == only.end()) continue;
      const auto* f = (name == "forecast" && c.filter == &quarter) ? &forecast : c.filter;
      std::vector<double> ms, cpu;
      size_t bytes = 0;
      for (int i = 0; i <= runs; ++i) {
        const double cpu0 = thread_cpu_ms();
        const auto t = Clock::now();
        auto r = fs::server::reports::run_report(**db, name, *f, *c.who);
        const double elapsed = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
        if (i > 0) cpu.push_back(thread_cpu_ms() - cpu0);
        if (!r) die(std::string(name) + ": " + r.status().to_string());
        if (i == 0) {
          bytes = boost::json::serialize(*r).size();
          continue;  // warm-up
        }
        ms.push_back(elapsed);
      }
      const double p99 = percentile(ms, 0.99), cpu_p99 = percentile(cpu, 0.99);
      if (!viewer_zone) {
        worst_p99 = std::max(worst_p99, p99);
        worst_cpu_p99 = std::max(worst_cpu_p99, cpu_p99);
      } else {
        worst_viewer_p99 = std::max(worst_viewer_p99, p99);
        worst_viewer_cpu_p99 = std::max(worst_viewer_cpu_p99, cpu_p99);
      }
      std::printf("| %.*s | %s | %.1f | %.1f | %.1f | %.1f | %zu |\n", static_cast<int>(name.size()),
                  name.data(), c.label, percentile(ms, 0.5), p99, percentile(cpu, 0.5), cpu_p99, bytes);
    }
  }
  std::printf("\nworst p99 in the company's zone: %.1f ms wall, %.1f ms CPU (target < 300 ms)\n", worst_p99,
              worst_cpu_p99);
  std::printf("worst p99 in a viewer's zone (activity): %.1f ms wall, %.1f ms CPU (target < 300 ms)\n",
              worst_viewer_p99, worst_viewer_cpu_p99);
  if (getloadavg(load, 3) == 3)
    std::printf("load average after: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  if (!only.empty()) return 0;

  // CSV: the quarter's visits through export_csv into a file, against a bare SELECT of the same rows written
  // to a file (each column's text, comma-separated, no quoting, no time formatting), best of three each.
  const std::string out_path = path + ".csv";
  auto export_once = [&]() -> std::pair<double, size_t> {
    std::FILE* f = std::fopen(out_path.c_str(), "wb");
    size_t bytes = 0;
    const auto t = Clock::now();
    fs::Status s = fs::server::reports::export_csv(
        **db, fs::server::reports::CsvKind::kVisits, quarter, head_office, {}, [&](std::string_view chunk) {
          bytes += chunk.size();
          return std::fwrite(chunk.data(), 1, chunk.size(), f) == chunk.size();
        });
    std::fclose(f);
    if (!s) die("export: " + s.to_string());
    return {std::chrono::duration<double>(Clock::now() - t).count(), bytes};
  };
  auto select_once = [&]() -> std::pair<double, size_t> {
    std::FILE* f = std::fopen(out_path.c_str(), "wb");
    sqlite3_stmt* st = nullptr;
    const auto t = Clock::now();
    check(
        sqlite3_prepare_v2((*db)->raw(),
                           "SELECT v.id, v.check_in_at, v.check_out_at, v.rep_id, v.account_id, a.name, "
                           "a.territory_id, v.outcome, v.calendar_event_id, v.latitude, v.longitude, v.notes "
                           "FROM visit v JOIN account a ON a.id = v.account_id WHERE v.check_in_at >= ? AND "
                           "v.check_in_at < ? AND v._deleted = 0 ORDER BY v.check_in_at, v.id",
                           -1, &st, nullptr),
        (*db)->raw(), "prepare select");
    sqlite3_bind_int64(st, 1, quarter.from_ms);
    sqlite3_bind_int64(st, 2, quarter.to_ms);
    size_t rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
      for (int i = 0; i < 12; ++i) {
        if (i) std::fputc(',', f);
        const unsigned char* txt = sqlite3_column_text(st, i);
        if (txt) std::fwrite(txt, 1, static_cast<size_t>(sqlite3_column_bytes(st, i)), f);
      }
      std::fputs("\r\n", f);
      ++rows;
    }
    sqlite3_finalize(st);
    std::fclose(f);
    return {std::chrono::duration<double>(Clock::now() - t).count(), rows};
  };
  (void)select_once();  // warm the pages
  double export_s = 1e9, select_s = 1e9;
  size_t rows = 0, bytes = 0;
  for (int i = 0; i < 3; ++i) {
    auto [s1, r] = select_once();
    select_s = std::min(select_s, s1);
    rows = r;
    auto [s2, b] = export_once();
    export_s = std::min(export_s, s2);
    bytes = b;
  }
  std::filesystem::remove(out_path);
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "\nCSV export of %zu visit rows (%.1f MiB): %.0f rows/s; bare SELECT to a file: %.0f rows/s; "
      "ratio %.2f (target >= 0.5)\nmax RSS of the whole run: %ld MiB\n",
      rows, static_cast<double>(bytes) / (1024.0 * 1024.0), static_cast<double>(rows) / export_s,
      static_cast<double>(rows) / select_s, select_s / export_s, ru.ru_maxrss / 1024);
  apply_comparison(std::filesystem::path(path).parent_path().string());
  return 0;
}

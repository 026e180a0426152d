#include "migrate.h"

#include <openssl/evp.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/schema/ddl.h"
#include "fieldsync/schema/model.h"
#include "fieldsync/server/pg_store.h"
#include "fieldsync/server/sqlite_store.h"
#include "pg.h"

namespace fieldsync::server {

namespace {

using Digest = std::array<uint8_t, 32>;

// A table to copy: its name in SQLite and in PostgreSQL.
struct TableMap {
  std::string source;
  std::string target;
  bool optional = false;  // a source without it copies nothing (the target has it, empty)
};

std::vector<TableMap> store_tables() {
  std::vector<TableMap> out;
  for (const schema::EntityDef& e : schema::entities())
    out.push_back({schema::quoted(e.name), schema::quoted(e.name)});
  for (const char* t : {"_log", "_log_scope", "_conflicts", "_nodes", "_rejections"}) out.push_back({t, t});
  // The funnel's stage history (its stints cannot be rebuilt from the records: the store keeps only their
  // current stage) and head office's report settings; the SLA table exists once head office set one.
  for (const char* t : {"_stage_history", "_stage_probability"}) out.push_back({t, t});
  out.push_back({"_case_sla", "_case_sla", /*optional=*/true});
  return out;
}

std::vector<TableMap> directory_tables() {
  std::vector<TableMap> out;
  for (const char* t : {"users", "territories", "user_territories", "teams", "devices", "secrets", "audit",
                        "conflict_resolutions", "web_sessions"})
    out.push_back({t, std::string("fieldsync_directory.") + t});
  return out;
}

// One value in a canonical form both engines produce alike: a tag (n null, i integer -- booleans too, r
// real, s text or bytes) and its bytes, length-prefixed.
void canonical(std::string& row, char tag, std::string_view bytes) {
  row += tag;
  const uint64_t n = bytes.size();
  row.append(reinterpret_cast<const char*>(&n), sizeof n);
  row.append(bytes);
}

std::string real_text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

Digest sha256(std::string_view bytes) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), d.data(), &len, EVP_sha256(), nullptr) != 1) std::abort();
  return d;
}

// The table's checksum, order-independent so that the engines' row order (and collations) do not matter: the
// rows' SHA-256 digests summed as 256-bit integers (mod 2^256), then hashed. A missing, extra, duplicated or
// changed row changes it; it is kept in 32 bytes however many rows the table has, so a table is verified
// as it streams by (sorting the digests held 32 bytes per row).
class TableSum {
 public:
  void add(const Digest& d) {
    unsigned carry = 0;
    for (size_t i = d.size(); i-- > 0;) {
      const unsigned v = static_cast<unsigned>(sum_[i]) + d[i] + carry;
      sum_[i] = static_cast<uint8_t>(v);
      carry = v >> 8;
    }
    ++rows_;
  }
  int64_t rows() const { return rows_; }
  std::string hex() const {
    const Digest d = sha256(std::string_view(reinterpret_cast<const char*>(sum_.data()), sum_.size()));
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint8_t b : d) {
      out += digits[b >> 4];
      out += digits[b & 15];
    }
    return out;
  }

 private:
  Digest sum_{};
  int64_t rows_ = 0;
};

// The columns of a SQLite table, in order.
Result<std::vector<std::string>> columns_of(sqlite::Db& db, const std::string& table) {
  std::string bare = table;
  if (bare.size() >= 2 && bare.front() == '"') bare = bare.substr(1, bare.size() - 2);
  sqlite::Stmt q(db, "SELECT name FROM pragma_table_info(?) ORDER BY cid");
  q.bind(1, bare);
  std::vector<std::string> out;
  while (q.step()) out.push_back(q.col_text(0));
  if (!q.ok()) return q.status();
  if (out.empty()) return Status(ErrorCode::kInvalidArgument, "the SQLite store has no table " + table);
  return out;
}

std::string column_list(const std::vector<std::string>& cols) {
  std::string s;
  for (size_t i = 0; i < cols.size(); ++i) s += (i ? ", " : "") + schema::quoted(cols[i]);
  return s;
}

// Copies `t` from SQLite into PostgreSQL (inside the caller's transaction) in multi-row INSERTs.
Status copy_table(sqlite::Db& src, pg::Conn& dst, const TableMap& t, const std::vector<std::string>& cols) {
  constexpr size_t kRowsPerInsert = 200;
  const std::string head = "INSERT INTO " + t.target + " (" + column_list(cols) + ") VALUES ";
  sqlite::Stmt q(src, "SELECT " + column_list(cols) + " FROM " + t.source);
  pg::Params params;
  size_t rows = 0;
  std::string values;
  auto flush = [&]() -> Status {
    if (rows == 0) return Status::ok();
    Status s = dst.exec(head + values, params);
    params = pg::Params();
    values.clear();
    rows = 0;
    return s;
  };
  const int n = static_cast<int>(cols.size());
  while (q.step()) {
    values += rows ? ",(" : "(";
    for (int c = 0; c < n; ++c) {
      values += (c ? ",$" : "$") + std::to_string(params.size() + 1);
      switch (q.col_type(c)) {
        case SQLITE_NULL:
          params.add_null();
          break;
        case SQLITE_INTEGER:
          params.add(q.col_int(c));
          break;
        case SQLITE_FLOAT:
          params.add(q.col_double(c));
          break;
        case SQLITE_BLOB:
          params.add_bytes(q.col_blob(c));
          break;
        default:
          params.add(q.col_text(c));
      }
    }
    values += ')';
    if (++rows == kRowsPerInsert)
      if (Status s = flush(); !s) return s;
  }
  if (!q.ok()) return q.status();
  return flush();
}

// Row count and checksum of a SQLite table.
Result<MigrationReport::Table> sum_sqlite(sqlite::Db& db, const TableMap& t,
                                          const std::vector<std::string>& cols) {
  sqlite::Stmt q(db, "SELECT " + column_list(cols) + " FROM " + t.source);
  TableSum sum;
  const int n = static_cast<int>(cols.size());
  std::string row;
  while (q.step()) {
    row.clear();
    for (int c = 0; c < n; ++c) {
      switch (q.col_type(c)) {
        case SQLITE_NULL:
          canonical(row, 'n', {});
          break;
        case SQLITE_INTEGER:
          canonical(row, 'i', std::to_string(q.col_int(c)));
          break;
        case SQLITE_FLOAT:
          canonical(row, 'r', real_text(q.col_double(c)));
          break;
        default: {
          std::span<const uint8_t> b = q.col_blob(c);
          canonical(row, 's', std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
        }
      }
    }
    sum.add(sha256(row));
  }
  if (!q.ok()) return q.status();
  return MigrationReport::Table{t.target, sum.rows(), sum.hex()};
}

// The same of the PostgreSQL table, streamed row by row (constant memory).
Result<MigrationReport::Table> sum_pg(pg::Conn& db, const TableMap& t, const std::vector<std::string>& cols) {
  TableSum sum;
  std::string row;
  Status read = db.for_each_row("SELECT " + column_list(cols) + " FROM " + t.target, [&](const pg::Rows& rs) {
    row.clear();
    for (int c = 0; c < rs.columns(); ++c) {
      if (rs.null(0, c)) {
        canonical(row, 'n', {});
        continue;
      }
      switch (rs.kind(c)) {
        case pg::Rows::Kind::kInteger:
          canonical(row, 'i', std::to_string(rs.i64(0, c)));
          break;
        case pg::Rows::Kind::kFloat:
          canonical(row, 'r', real_text(rs.f64(0, c)));
          break;
        case pg::Rows::Kind::kBytes:
          canonical(row, 's', rs.bytes(0, c));
          break;
        case pg::Rows::Kind::kOther:
          return Status(ErrorCode::kInternal, t.target + ": a column of a type the migration does not read");
      }
    }
    sum.add(sha256(row));
    return Status::ok();
  });
  if (!read) return read;
  return MigrationReport::Table{t.target, sum.rows(), sum.hex()};
}

Result<int64_t> pg_count(pg::Conn& db, const std::string& sql) {
  Result<pg::Rows> r = db.query(sql);
  if (!r) return r.status();
  return r->size() ? r->i64(0, 0) : 0;
}

// A table to copy or verify, with the source it is read from and the columns it has there.
struct Plan {
  sqlite::Db* source;
  TableMap table;
  std::vector<std::string> columns;
};

Result<std::vector<Plan>> plan_tables(sqlite::Db& store, sqlite::Db& directory) {
  std::vector<Plan> plans;
  for (const TableMap& t : store_tables()) {
    if (t.optional) {
      sqlite::Stmt q(store, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
      q.bind(1, t.source);
      const bool present = q.step();
      if (!q.ok()) return q.status();
      if (!present) continue;
    }
    auto cols = columns_of(store, t.source);
    if (!cols) return cols.status();
    plans.push_back({&store, t, std::move(*cols)});
  }
  for (const TableMap& t : directory_tables()) {
    auto cols = columns_of(directory, t.source);
    if (!cols) return cols.status();
    plans.push_back({&directory, t, std::move(*cols)});
  }
  return plans;
}

// Every planned table of the source snapshot against PostgreSQL: the same row count and checksum, or
// kStorageCorrupt naming the first table that differs. The verified tables are appended to `report`.
Status verify_tables(const std::vector<Plan>& plans, pg::Conn& pg, MigrationReport& report) {
  for (const Plan& p : plans) {
    auto a = sum_sqlite(*p.source, p.table, p.columns);
    if (!a) return a.status();
    auto b = sum_pg(pg, p.table, p.columns);
    if (!b) return b.status();
    if (a->rows != b->rows || a->sha256 != b->sha256)
      return Status(ErrorCode::kStorageCorrupt, "verification failed for " + p.table.target + ": " +
                                                    std::to_string(a->rows) + " rows " + a->sha256 +
                                                    " in SQLite, " + std::to_string(b->rows) + " rows " +
                                                    b->sha256 + " in PostgreSQL");
    report.tables.push_back(std::move(*a));
  }
  return Status::ok();
}

Result<uint64_t> sqlite_head_seq(sqlite::Db& store) {
  sqlite::Stmt q(store, "SELECT coalesce(max(server_seq), 0) FROM _log");
  if (!q.step()) return q.ok() ? Status(ErrorCode::kInternal, "no head") : q.status();
  return static_cast<uint64_t>(q.col_int(0));
}

std::string store_path_in(const std::string& data_dir) {
  return (std::filesystem::path(data_dir) / kCentralStoreFileName).string();
}
std::string directory_path_in(const std::string& data_dir) {
  return (std::filesystem::path(data_dir) / kDirectoryFileName).string();
}
Status require_data_dir(const std::string& data_dir) {
  if (!std::filesystem::exists(store_path_in(data_dir)) ||
      !std::filesystem::exists(directory_path_in(data_dir)))
    return Status(ErrorCode::kInvalidArgument,
                  data_dir + " is not a fieldsync data directory (no central.db and directory.db)");
  return Status::ok();
}

}  // namespace

Result<MigrationReport> migrate_to_postgresql(const std::string& data_dir, const std::string& url,
                                              const Directory::Options& directory_options) {
  if (Status s = require_data_dir(data_dir); !s) return s;
  const std::string store_path = store_path_in(data_dir);
  const std::string directory_path = directory_path_in(data_dir);
  // Opened once the way the server opens them: an older store or directory is brought to this version's
  // format first, so the columns below are the current ones.
  {
    auto store = SqliteCentralStore::open(store_path, SqliteCentralStore::Options{});
    if (!store) return store.status();
    auto directory = Directory::open(directory_path, directory_options);
    if (!directory) return directory.status();
  }
  // The target's tables, made by the code that will use them.
  {
    auto store = PgCentralStore::open(url, PgCentralStore::Options{});
    if (!store) return store.status();
    auto directory = Directory::open(url, directory_options);
    if (!directory) return directory.status();
  }

  auto src = sqlite::Db::open(store_path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, 5000);
  if (!src) return src.status();
  auto src_dir = sqlite::Db::open(directory_path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, 5000);
  if (!src_dir) return src_dir.status();
  // One snapshot of each file for the copy and its verification.
  if (Status s = (*src)->exec("BEGIN"); !s) return s;
  if (Status s = (*src_dir)->exec("BEGIN"); !s) return s;
  auto dst = pg::Conn::open(url);
  if (!dst) return dst.status();
  pg::Conn& pg = **dst;

  auto plans_read = plan_tables(**src, **src_dir);
  if (!plans_read) return plans_read.status();
  const std::vector<Plan>& plans = *plans_read;

  if (Status s = pg.begin(); !s) return s;
  auto fail = [&](Status s) {
    (void)pg.rollback();
    return s;
  };
  // Only into an empty database: the target's log, watermarks and people must all be untouched. (Opening it
  // above made the directory's token key, which the source's replaces.)
  for (const char* sql : {"SELECT count(*) FROM _log", "SELECT count(*) FROM _nodes",
                          "SELECT count(*) FROM fieldsync_directory.users",
                          "SELECT count(*) FROM fieldsync_directory.devices"}) {
    Result<int64_t> n = pg_count(pg, sql);
    if (!n) return fail(n.status());
    if (*n != 0)
      return fail(Status(ErrorCode::kInvalidArgument, "the PostgreSQL database is not empty (" +
                                                          std::string(sql) + " is " + std::to_string(*n) +
                                                          "): migrate only into a new database"));
  }
  if (Status s = pg.exec("DELETE FROM fieldsync_directory.secrets"); !s) return fail(s);
  for (const Plan& p : plans)
    if (Status s = copy_table(*p.source, pg, p.table, p.columns); !s) return fail(s);

  // The log head and the server's clock; the identity columns continue after the copied ids.
  MigrationReport report;
  {
    Result<uint64_t> head = sqlite_head_seq(**src);
    if (!head) return fail(head.status());
    report.head_seq = *head;
  }
  int64_t clock = 0;
  {
    sqlite::Stmt q(**src, "SELECT value FROM _state WHERE key = 'clock'");
    if (q.step()) clock = q.col_int(0);
    if (!q.ok()) return fail(q.status());
  }
  if (Status s = pg.exec("UPDATE _head SET server_seq = $1, clock = $2",
                         pg::Params().add(static_cast<int64_t>(report.head_seq)).add(clock));
      !s)
    return fail(s);
  for (const char* sql :
       {"SELECT setval(pg_get_serial_sequence('_conflicts', 'id'), coalesce(max(id), 0) + 1, false) FROM "
        "_conflicts",
        "SELECT setval(pg_get_serial_sequence('_stage_history', 'id'), coalesce(max(id), 0) + 1, false) FROM "
        "_stage_history",
        "SELECT setval(pg_get_serial_sequence('fieldsync_directory.audit', 'id'), coalesce(max(id), 0) + 1, "
        "false) FROM fieldsync_directory.audit"})
    if (Status s = pg.exec(sql); !s) return fail(s);
  if (Status s = pg.commit(); !s) return s;

  // Verification: what PostgreSQL now holds, read back, against the source's snapshot.
  if (Status s = verify_tables(plans, pg, report); !s) return s;
  (void)(*src)->exec("COMMIT");
  (void)(*src_dir)->exec("COMMIT");
  return report;
}

Result<MigrationReport> verify_migration(const std::string& data_dir, const std::string& url) {
  if (Status s = require_data_dir(data_dir); !s) return s;
  auto src = sqlite::Db::open(store_path_in(data_dir), SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, 5000);
  if (!src) return src.status();
  auto src_dir =
      sqlite::Db::open(directory_path_in(data_dir), SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, 5000);
  if (!src_dir) return src_dir.status();
  // One snapshot of each file, as the migration's own verification reads.
  if (Status s = (*src)->exec("BEGIN"); !s) return s;
  if (Status s = (*src_dir)->exec("BEGIN"); !s) return s;
  auto dst = pg::Conn::open(url);
  if (!dst) return dst.status();
  auto plans = plan_tables(**src, **src_dir);
  if (!plans) return plans.status();
  MigrationReport report;
  Result<uint64_t> head = sqlite_head_seq(**src);
  if (!head) return head.status();
  report.head_seq = *head;
  if (Status s = verify_tables(*plans, **dst, report); !s) return s;
  (void)(*src)->exec("COMMIT");
  (void)(*src_dir)->exec("COMMIT");
  return report;
}

}  // namespace fieldsync::server

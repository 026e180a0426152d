#include "sql_reader.h"

#include <sqlite3.h>

#include <algorithm>

#include "fieldsync/io/sqlite_db.h"
#include "pg.h"
#include "sql_value.h"

namespace fieldsync::server {

namespace {

// ---- SQLite: the statement cache of sqlite::Db, stepped row by row.

class SqliteRows final : public SqlRows::Impl {
 public:
  SqliteRows(sqlite::Db& db, const std::string& sql, const std::vector<Value>& params)
      : stmt_(std::make_unique<sqlite::Stmt>(db, sql)) {
    for (size_t i = 0; i < params.size(); ++i) bind_value(*stmt_, static_cast<int>(i + 1), params[i]);
  }
  bool step() override { return stmt_->step(); }
  const Status& status() const override { return stmt_->status(); }
  bool col_null(int i) const override { return stmt_->col_null(i); }
  int64_t col_int(int i) const override { return stmt_->col_int(i); }
  double col_double(int i) const override { return stmt_->col_double(i); }
  std::string col_text(int i) const override { return stmt_->col_text(i); }
  std::span<const uint8_t> col_blob(int i) const override { return stmt_->col_blob(i); }

 private:
  std::unique_ptr<sqlite::Stmt> stmt_;
};

class SqliteReader final : public SqlReader {
 public:
  explicit SqliteReader(std::unique_ptr<sqlite::Db> db) : owned_(std::move(db)), db_(owned_.get()) {}
  explicit SqliteReader(sqlite::Db& db) : db_(&db) {}
  SqlDialect dialect() const override { return SqlDialect::kSqlite; }
  SqlRows query(const std::string& sql, const std::vector<Value>& params) override {
    return SqlRows(std::make_unique<SqliteRows>(*db_, sql, params));
  }
  bool reset() override { return sqlite3_get_autocommit(db_->raw()) || db_->exec("ROLLBACK"); }
  sqlite::Db* sqlite_db() override { return db_; }

  Status begin_snapshot(bool* began) override {
    *began = false;
    if (!sqlite3_get_autocommit(db_->raw())) return Status::ok();
    Status s = db_->exec("BEGIN");
    *began = s.is_ok();
    return s;
  }
  void end_snapshot() override { (void)db_->exec("COMMIT"); }
  // A SQLite statement is stepped from the file: it holds one row at a time already.
  SqlRows stream(const std::string& sql, const std::vector<Value>& params, int) override {
    return query(sql, params);
  }
  Status begin_write() override { return db_->exec("BEGIN IMMEDIATE"); }
  Status exec(const std::string& sql, const std::vector<Value>& params) override {
    sqlite::Stmt st(*db_, sql);
    for (size_t i = 0; i < params.size(); ++i) bind_value(st, static_cast<int>(i + 1), params[i]);
    return st.run();
  }
  Status commit() override { return db_->exec("COMMIT"); }
  void rollback() override {
    if (!sqlite3_get_autocommit(db_->raw())) (void)db_->exec("ROLLBACK");
  }

 private:
  std::unique_ptr<sqlite::Db> owned_;  // null when the caller owns the connection
  sqlite::Db* db_;
};

// ---- PostgreSQL: the whole result of one statement (the API's reads are pages: at most a few hundred rows),
// read through pg::Rows' typed getters.

// The current row of a window of rows read from PostgreSQL, through pg::Rows' typed getters; the classes
// below say how the window is filled and moved.
class PgRowWindow : public SqlRows::Impl {
 public:
  const Status& status() const override { return status_; }
  bool col_null(int i) const override { return rows_.null(row_, i); }
  int64_t col_int(int i) const override { return rows_.i64(row_, i); }
  double col_double(int i) const override { return rows_.f64(row_, i); }
  std::string col_text(int i) const override { return rows_.text(row_, i); }
  std::span<const uint8_t> col_blob(int i) const override { return rows_.blob(row_, i); }

 protected:
  pg::Rows rows_;
  Status status_;
  int row_ = -1;
};

class PgRows final : public PgRowWindow {
 public:
  explicit PgRows(Result<pg::Rows> rows) {
    if (rows) {
      rows_ = std::move(*rows);
    } else {
      status_ = rows.status();
    }
  }
  bool step() override {
    if (!status_ || row_ + 1 >= rows_.size()) {
      row_ = rows_.size();
      return false;
    }
    ++row_;
    return true;
  }
};

pg::Params pg_params(const std::vector<Value>& params) {
  pg::Params p;
  for (const Value& v : params) {
    switch (v.kind()) {
      case Value::Kind::kNull:
        p.add_null();
        break;
      case Value::Kind::kInt:
        p.add(v.as_int());
        break;
      case Value::Kind::kReal:
        p.add(v.as_real());
        break;
      case Value::Kind::kBool:
        p.add(v.as_bool());
        break;
      case Value::Kind::kText:
        p.add(std::string_view(v.as_text()));
        break;
    }
  }
  return p;
}

// A cursor's rows: FETCH `batch` rows at a time into a PgRows-like window. The cursor is declared once per
// stream (one per connection at a time: an export owns its connection) and closes with the transaction.
class PgCursorRows final : public PgRowWindow {
 public:
  PgCursorRows(pg::Conn& conn, const std::string& sql, const std::vector<Value>& params, int batch)
      : conn_(conn), fetch_("FETCH FORWARD " + std::to_string(std::max(batch, 1)) + " FROM fs_stream") {
    if (!conn_.in_transaction()) {
      status_ = Status(ErrorCode::kInternal, "a PostgreSQL stream needs a snapshot (begin_snapshot)");
      return;
    }
    // Closed first: an earlier stream on this connection inside the same transaction may still hold it.
    status_ = conn_.exec_script("CLOSE ALL");
    if (status_)
      status_ = conn_.exec("DECLARE fs_stream NO SCROLL CURSOR FOR " + numbered_placeholders(sql),
                           pg_params(params));
  }
  bool step() override {
    if (!status_ || done_) return false;
    if (row_ + 1 < rows_.size()) {
      ++row_;
      return true;
    }
    Result<pg::Rows> next = conn_.query(fetch_);
    if (!next) {
      status_ = next.status();
      return false;
    }
    rows_ = std::move(*next);
    row_ = 0;
    if (rows_.size() == 0) {
      done_ = true;
      return false;
    }
    return true;
  }

 private:
  pg::Conn& conn_;
  const std::string fetch_;
  bool done_ = false;
};

class PgReader final : public SqlReader {
 public:
  explicit PgReader(std::unique_ptr<pg::Conn> conn) : conn_(std::move(conn)) {}
  SqlDialect dialect() const override { return SqlDialect::kPostgres; }
  SqlRows query(const std::string& sql, const std::vector<Value>& params) override {
    return SqlRows(std::make_unique<PgRows>(conn_->query(numbered_placeholders(sql), pg_params(params))));
  }
  bool reset() override {
    if (conn_->broken()) return false;
    return !conn_->in_transaction() || conn_->rollback();
  }

  Status begin_snapshot(bool* began) override {
    *began = false;
    if (conn_->in_transaction()) return Status::ok();
    Status s = conn_->begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    *began = s.is_ok();
    return s;
  }
  void end_snapshot() override {
    if (!conn_->broken() && conn_->in_transaction()) (void)conn_->rollback();
  }
  SqlRows stream(const std::string& sql, const std::vector<Value>& params, int batch_rows) override {
    return SqlRows(std::make_unique<PgCursorRows>(*conn_, sql, params, batch_rows));
  }
  Status begin_write() override { return conn_->begin("BEGIN"); }
  Status exec(const std::string& sql, const std::vector<Value>& params) override {
    return conn_->exec(numbered_placeholders(sql), pg_params(params));
  }
  Status commit() override { return conn_->commit(); }
  void rollback() override {
    if (!conn_->broken() && conn_->in_transaction()) (void)conn_->rollback();
  }

 private:
  std::unique_ptr<pg::Conn> conn_;
};

}  // namespace

std::unique_ptr<SqlReader> sqlite_reader(std::unique_ptr<sqlite::Db> db) {
  return std::make_unique<SqliteReader>(std::move(db));
}

std::unique_ptr<SqlReader> sqlite_reader_of(sqlite::Db& db) {
  return std::make_unique<SqliteReader>(db);
}

std::unique_ptr<SqlReader> pg_reader(std::unique_ptr<pg::Conn> conn) {
  return std::make_unique<PgReader>(std::move(conn));
}

std::string numbered_placeholders(const std::string& sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  char quote = 0;
  for (char c : sql) {
    if (quote) {
      if (c == quote) quote = 0;
      out += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      out += c;
    } else if (c == '?') {
      out += '$';
      out += std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace fieldsync::server

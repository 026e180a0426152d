#include "sql_reader.h"

#include <sqlite3.h>

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
  explicit SqliteReader(std::unique_ptr<sqlite::Db> db) : db_(std::move(db)) {}
  SqlDialect dialect() const override { return SqlDialect::kSqlite; }
  SqlRows query(const std::string& sql, const std::vector<Value>& params) override {
    return SqlRows(std::make_unique<SqliteRows>(*db_, sql, params));
  }
  bool reset() override { return sqlite3_get_autocommit(db_->raw()) || db_->exec("ROLLBACK"); }
  sqlite::Db* sqlite_db() override { return db_.get(); }

 private:
  std::unique_ptr<sqlite::Db> db_;
};

// ---- PostgreSQL: the whole result of one statement (the API's reads are pages: at most a few hundred rows),
// read through pg::Rows' typed getters.

class PgRows final : public SqlRows::Impl {
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
  const Status& status() const override { return status_; }
  bool col_null(int i) const override { return rows_.null(row_, i); }
  int64_t col_int(int i) const override { return rows_.i64(row_, i); }
  double col_double(int i) const override { return rows_.f64(row_, i); }
  std::string col_text(int i) const override { return rows_.text(row_, i); }
  std::span<const uint8_t> col_blob(int i) const override { return rows_.blob(row_, i); }

 private:
  pg::Rows rows_;
  Status status_;
  int row_ = -1;
};

class PgReader final : public SqlReader {
 public:
  explicit PgReader(std::unique_ptr<pg::Conn> conn) : conn_(std::move(conn)) {}
  SqlDialect dialect() const override { return SqlDialect::kPostgres; }
  SqlRows query(const std::string& sql, const std::vector<Value>& params) override {
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
    return SqlRows(std::make_unique<PgRows>(conn_->query(numbered_placeholders(sql), p)));
  }
  bool reset() override {
    if (conn_->broken()) return false;
    return !conn_->in_transaction() || conn_->rollback();
  }

 private:
  std::unique_ptr<pg::Conn> conn_;
};

}  // namespace

std::unique_ptr<SqlReader> sqlite_reader(std::unique_ptr<sqlite::Db> db) {
  return std::make_unique<SqliteReader>(std::move(db));
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

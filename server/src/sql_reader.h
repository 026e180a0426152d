// Read-only SQL over the central store, whichever engine holds it (SQLite file or PostgreSQL): the seam under
// the head-office API's reads (api_entities.cc, the reader pool). Internal to server/src.
//
// One statement text serves both engines: `?` placeholders (the PostgreSQL reader numbers them $1, $2, ...
// outside quotes), values bound from the model's Value kinds, and the getters named as sqlite::Stmt's, so a
// handler reads rows the same way on either. What the SQL itself must respect to run on both:
//   * booleans: TRUE / FALSE (SQLite >= 3.23 reads them as 1 / 0; `_deleted = FALSE` is the live-row test on
//     both, and as cheap as `_deleted = 0` in SQLite);
//   * no engine-specific functions; text compares byte-wise on both (`COLLATE "C"` in PostgreSQL's DDL);
//   * case-insensitive search: like_operator() (SQLite's LIKE ignores ASCII case, PostgreSQL's does not);
//   * a getter must match the column's type (PostgreSQL reads binary results by type: an integer getter on a
//     text column is a bug in our SQL and aborts, as pg.h says).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fieldsync/sync/status.h"
#include "fieldsync/sync/value.h"

namespace fieldsync::sqlite {
class Db;
}
namespace fieldsync::pg {
class Conn;
}

namespace fieldsync::server {

enum class SqlDialect : uint8_t { kSqlite, kPostgres };

// The operator for a case-insensitive LIKE pattern in `d`.
inline const char* like_operator(SqlDialect d) {
  return d == SqlDialect::kPostgres ? "ILIKE" : "LIKE";
}

// The rows of one statement, read forward once. step() is false at the end or on an error (ok() tells).
class SqlRows {
 public:
  class Impl {
   public:
    virtual ~Impl() = default;
    virtual bool step() = 0;
    virtual const Status& status() const = 0;
    virtual bool col_null(int i) const = 0;
    virtual int64_t col_int(int i) const = 0;
    virtual double col_double(int i) const = 0;
    virtual std::string col_text(int i) const = 0;
    virtual std::span<const uint8_t> col_blob(int i) const = 0;
  };
  explicit SqlRows(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
  SqlRows(SqlRows&&) = default;
  SqlRows& operator=(SqlRows&&) = default;

  bool step() { return impl_->step(); }
  bool ok() const { return impl_->status().is_ok(); }
  const Status& status() const { return impl_->status(); }
  bool col_null(int i) const { return impl_->col_null(i); }
  int64_t col_int(int i) const { return impl_->col_int(i); }
  double col_double(int i) const { return impl_->col_double(i); }
  std::string col_text(int i) const { return impl_->col_text(i); }
  // Valid until the next step().
  std::span<const uint8_t> col_blob(int i) const { return impl_->col_blob(i); }

 private:
  std::unique_ptr<Impl> impl_;
};

// One read connection, used by one thread at a time.
class SqlReader {
 public:
  virtual ~SqlReader() = default;
  virtual SqlDialect dialect() const = 0;
  // Runs `sql` (one statement, `?` placeholders) with `params` bound in order. An error (a bad statement, the
  // store unavailable) shows as a SqlRows whose first step() is false and whose status() says why.
  virtual SqlRows query(const std::string& sql, const std::vector<Value>& params = {}) = 0;
  // Back to autocommit so the next user starts a fresh snapshot; false: the connection is unusable (closed,
  // not kept).
  virtual bool reset() = 0;
  // The SQLite connection underneath, else null.
  virtual sqlite::Db* sqlite_db() { return nullptr; }

  // ---- Several statements in one snapshot (reports, CSV exports) and the few writes of settings.

  // Begins a read transaction when the connection is in autocommit (SQLite: BEGIN; PostgreSQL: REPEATABLE
  // READ READ ONLY): every later statement reads one snapshot until end_snapshot(). *began says whether this
  // call began it (a caller nested in another's snapshot ends nothing).
  virtual Status begin_snapshot(bool* began) = 0;
  // Ends what begin_snapshot began (nothing was written: COMMIT on SQLite, ROLLBACK on PostgreSQL).
  virtual void end_snapshot() = 0;
  // Like query(), for a result of any size read forward once inside a snapshot: SQLite steps the statement;
  // PostgreSQL declares a cursor and fetches `batch_rows` rows at a time, so memory stays one batch whatever
  // the rows (query() holds the whole result). Needs begin_snapshot() first on PostgreSQL (a cursor lives in
  // a transaction).
  virtual SqlRows stream(const std::string& sql, const std::vector<Value>& params, int batch_rows) = 0;
  // A write transaction (SQLite: BEGIN IMMEDIATE) and statements without rows, on a connection opened
  // writable (the settings): exec() fails on a read-only one.
  virtual Status begin_write() = 0;
  virtual Status exec(const std::string& sql, const std::vector<Value>& params = {}) = 0;
  virtual Status commit() = 0;
  virtual void rollback() = 0;
};

// A reader over an open SQLite connection (owned).
std::unique_ptr<SqlReader> sqlite_reader(std::unique_ptr<sqlite::Db> db);
// A reader over a SQLite connection the caller owns and keeps open longer than the reader.
std::unique_ptr<SqlReader> sqlite_reader_of(sqlite::Db& db);
// A reader over an open PostgreSQL connection (owned).
std::unique_ptr<SqlReader> pg_reader(std::unique_ptr<pg::Conn> conn);

// `sql` with each `?` outside '...' and "..." replaced by $1, $2, ... (PostgreSQL's placeholders).
std::string numbered_placeholders(const std::string& sql);

}  // namespace fieldsync::server

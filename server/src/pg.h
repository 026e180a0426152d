// A thin layer over libpq (PostgreSQL's C client): a connection opened from a URL, statements that are always
// prepared with their parameters bound (never spliced into the SQL), results read through typed getters, and
// the one mapping from SQLSTATE / connection loss to fieldsync's typed Status. The PostgreSQL central store
// (pg_store.h) and the directory on PostgreSQL use it; libpq's own header stays out of every other file.
//
// Formats: parameters travel as text (PostgreSQL parses them by the type the statement infers), except bytes,
// which travel binary; results come back binary, so a blob is read without hex decoding and an integer by its
// width. A getter used on a column of another type is a bug in our SQL: it aborts with the column's name.
//
// Errors (status_from): the SQLSTATE class says what the caller can do:
//   08xxx, 57P01-57P03, lost connection   kStorageIo, retryable: the server went away or restarts; the
//                                         connection is then broken() and the store opens another
//   40001, 40P01, 55P03, 57014            kStorageLocked, retryable (serialization failure, deadlock, lock
//                                         not available, statement timeout)
//   53100                                 kStorageFull, retryable (disk full)
//   53xxx (other)                         kStorageIo, retryable (out of memory, too many connections)
//   58xxx                                 kStorageIo, retryable (the server's own I/O error)
//   XX001, XX002                          kStorageCorrupt
//   25006, 42501                          kStorageReadOnly (a read-only transaction or standby, no privilege)
//   anything else                         kInternal: SQL fieldsync wrote is wrong or an invariant broke
// The message is `what`, the server's message and the SQLSTATE; sqlstate() keeps the last one for callers
// that tell a unique violation (23505) from other errors.
//
// Threads: a Conn is used by one thread at a time (libpq's rule); the store keeps a pool of them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fieldsync/sync/status.h"

struct pg_conn;    // PGconn, <libpq-fe.h>
struct pg_result;  // PGresult

namespace fieldsync::pg {

// Parameters of one statement, $1, $2, ... in the order added.
class Params {
 public:
  Params() = default;
  Params& add(int64_t v);
  Params& add(std::string_view v);
  Params& add(const char* v) { return add(std::string_view(v)); }
  Params& add(const std::string& v) { return add(std::string_view(v)); }
  Params& add(double v);
  Params& add(bool v);
  Params& add_bytes(std::span<const uint8_t> v);
  Params& add_null();
  size_t size() const { return values_.size(); }

 private:
  friend class Conn;
  std::vector<std::string> values_;
  std::vector<bool> null_;
  std::vector<int> formats_;  // 0 text, 1 binary
};

// A text[] parameter in PostgreSQL's array literal syntax: every element double-quoted, '"' and '\' escaped.
// Bound as one parameter (`= ANY($n)`, `unnest($n)`), so a list is never spliced into the SQL.
std::string text_array(const std::vector<std::string>& values);

// The rows of one statement's result (binary format), freed with it.
class Rows {
 public:
  Rows() = default;
  int size() const;
  int columns() const;
  bool null(int row, int col) const;
  // INT2/INT4/INT8/BOOL (and OID) as a 64-bit integer.
  int64_t i64(int row, int col) const;
  double f64(int row, int col) const;  // FLOAT8 or FLOAT4
  // TEXT/VARCHAR/NAME/BYTEA: the raw bytes. The view lives as long as this Rows.
  std::string_view bytes(int row, int col) const;
  std::string text(int row, int col) const { return std::string(bytes(row, col)); }
  std::span<const uint8_t> blob(int row, int col) const;
  // INSERT/UPDATE/DELETE: the number of rows affected.
  uint64_t affected() const;
  // Which getter a column takes (for code that reads tables it did not write the SQL for: the migration's
  // verification): kInteger for i64 (booleans too), kFloat for f64, kBytes for bytes, kOther for none.
  enum class Kind : uint8_t { kInteger, kFloat, kBytes, kOther };
  Kind kind(int col) const;

 private:
  friend class Conn;
  struct Free {
    void operator()(pg_result* r) const;
  };
  explicit Rows(pg_result* r) : r_(r) {}
  [[noreturn]] void type_error(int col, const char* wanted) const;
  std::unique_ptr<pg_result, Free> r_;
};

class Conn {
 public:
  // A connection from a libpq URL or keyword string ("postgresql://user@host:port/db?..."), client encoding
  // UTF8. A refused or failed connection is kStorageIo, retryable.
  static Result<std::unique_ptr<Conn>> open(const std::string& url);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Runs `sql` (one statement, $n placeholders) as a prepared statement: prepared on this connection at first
  // use and kept until the connection closes.
  Result<Rows> query(const std::string& sql, const Params& params = {});
  // The same for a statement whose rows are not wanted.
  Status exec(const std::string& sql, const Params& params = {});
  // Runs `sql` (no parameters) and hands `row` each row as it arrives (libpq's single-row mode: a Rows of one
  // row), so a table of any size is read in constant memory. The first error -- the statement's or the
  // callback's -- is returned once the rest of the result has been drained.
  Status for_each_row(const std::string& sql, const std::function<Status(const Rows&)>& row);
  // Statements without parameters, possibly several separated by ';' (DDL, SET): the simple protocol.
  Status exec_script(const std::string& sql);

  Status begin(std::string_view how = "BEGIN");
  // COMMIT that checks the server really committed: a transaction that failed earlier ends in ROLLBACK,
  // which is an error here, not a silent ok. A connection lost during COMMIT leaves the outcome unknown:
  // kStorageIo, retryable (what fieldsync writes is idempotent per node_seq, so a retry is safe).
  // `before`: statements without parameters (each ending in ';') sent with COMMIT in one round trip; the
  // first that fails ends the transaction in ROLLBACK, which is then the error.
  Status commit(std::string_view before = {});
  Status rollback();

  // The connection is gone (the server closed it, a network error): every later statement fails, and the
  // owner opens a new connection instead.
  bool broken() const;
  // Inside a transaction (or a failed one) according to the server's last answer.
  bool in_transaction() const;
  const std::string& sqlstate() const { return sqlstate_; }
  pg_conn* raw() { return conn_; }

 private:
  explicit Conn(pg_conn* c) : conn_(c) {}
  Result<Rows> run(const std::string& sql, const Params& params);
  Status check(pg_result* r, std::string_view what);
  pg_conn* conn_;
  std::unordered_map<std::string, std::string> prepared_;  // sql -> statement name
  std::string sqlstate_;
};

// The Status for an SQLSTATE (see the table above); "" means the connection was lost.
Status status_from(std::string_view sqlstate, std::string_view what, std::string_view server_message);

}  // namespace fieldsync::pg

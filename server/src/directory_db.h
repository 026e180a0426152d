// The directory's storage seam (internal to server/): one SQL text for both engines, two small backends.
//
// Directory (directory.h) writes its statements once, with `?` placeholders and SQL that SQLite and
// PostgreSQL both accept (`INSERT ... ON CONFLICT DO NOTHING`, `LIMIT ?`); each backend owns its DDL and
// migrations and maps its engine's errors to the storage codes of status.h. What differs between the engines
// stays here, not in every method of Directory:
//   * SQLite (directory.db in the data directory): the file made owner-only, WAL, synchronous=FULL.
//   * PostgreSQL (`postgresql://...`): the tables live in their own schema (`fieldsync_directory`, the
//     connection's search_path) so they never meet the central store's tables; `?` become `$1..$n`;
//     migrations run under an advisory lock, so instances starting together agree.
// A directory is small and its calls are short: one connection, used under Directory's mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fieldsync/sync/status.h"

namespace fieldsync::server::dirdb {

struct Blob {
  std::span<const uint8_t> bytes;
};
// A bound parameter: NULL, an integer, text or bytes.
using Param = std::variant<std::monostate, int64_t, std::string_view, Blob>;

// One column of a result row.
class Cell {
 public:
  Cell() = default;
  static Cell integer(int64_t v) {
    Cell c;
    c.kind_ = Kind::kInt;
    c.int_ = v;
    return c;
  }
  static Cell text(std::string v) {
    Cell c;
    c.kind_ = Kind::kText;
    c.bytes_ = std::move(v);
    return c;
  }
  bool null() const { return kind_ == Kind::kNull; }
  int64_t as_int() const { return int_; }
  const std::string& as_text() const { return bytes_; }
  std::span<const uint8_t> as_blob() const {
    return {reinterpret_cast<const uint8_t*>(bytes_.data()), bytes_.size()};
  }

 private:
  enum class Kind : uint8_t { kNull, kInt, kText };
  Kind kind_ = Kind::kNull;
  int64_t int_ = 0;
  std::string bytes_;  // text or blob bytes
};

using Row = std::vector<Cell>;

struct Answer {
  Status status;
  std::vector<Row> rows;
  int64_t changes = 0;      // rows an INSERT / UPDATE / DELETE touched
  bool constraint = false;  // the statement broke a unique or primary key constraint
  bool ok() const { return status.is_ok(); }
};

// Directory::audit's insert on PostgreSQL: the next id from audit_head's row (locked until commit: ids commit
// in order; directory_pg.cc), and never below a row written otherwise (copied by `fieldsync-admin migrate`,
// numbered by the identity): one seek of the primary key. Parameters: at_ms, actor, action, target, detail.
inline constexpr const char* kPgAuditInsert =
    "WITH h AS (UPDATE audit_head SET last_id = greatest(last_id, (SELECT coalesce(max(id), 0) FROM audit)) "
    "+ "
    "1 RETURNING last_id) INSERT INTO audit (id, at_ms, actor, action, target, detail) SELECT h.last_id, ?, "
    "?, "
    "?, ?, ? FROM h";

class Db {
 public:
  virtual ~Db() = default;
  // Runs one statement with `?` placeholders. On a failure rows are empty and status says why (the storage
  // codes: kStorageIo for a lost connection, kStorageLocked, kStorageFull, ...); `constraint` marks a
  // unique-key violation, which the caller answers as its own kInvalidArgument.
  virtual Answer run(std::string_view sql, std::initializer_list<Param> params = {}) = 0;
  // Transactions for the few operations that are several statements (a role change and what it implies).
  virtual Status begin() = 0;
  virtual Status commit() = 0;
  virtual void rollback() = 0;
  // "sqlite" or "postgresql", for messages.
  virtual std::string_view engine() const = 0;
  // Tells the other servers on the same database of a committed change that must reach live sessions (a
  // revoked device, a disabled user): PostgreSQL NOTIFY on kDirectoryChannel (log_follower.h), which their
  // LogFollower hears. Best effort: the change itself is committed and holds at the next handshake anyway.
  // SQLite: one server per file, nothing to tell.
  virtual void notify(std::string_view payload) { (void)payload; }
};

// Opens (creating, owner-only) and migrates the SQLite directory file.
Result<std::unique_ptr<Db>> open_sqlite(const std::string& path, int busy_timeout_ms);
// Connects to PostgreSQL (`postgresql://` or `postgres://` URL, or a libpq key=value string) and migrates
// the directory schema. Errors: kStorageIo (cannot connect), kSchemaTooNew (a newer server's directory).
Result<std::unique_ptr<Db>> open_postgresql(const std::string& url);

}  // namespace fieldsync::server::dirdb

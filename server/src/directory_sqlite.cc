// The directory on SQLite: directory.db in the server's data directory (directory_db.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "directory_db.h"
#include "fieldsync/io/sqlite_db.h"

namespace fieldsync::server::dirdb {

namespace {

const char* const kDdl[] = {
    "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, role TEXT NOT NULL, "
    "pw_salt BLOB NOT NULL, pw_hash BLOB NOT NULL, pw_iterations INTEGER NOT NULL, created_at_ms INTEGER NOT "
    "NULL)",
    "CREATE TABLE IF NOT EXISTS territories (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS user_territories (user_id TEXT NOT NULL, territory_id TEXT NOT NULL, "
    "PRIMARY KEY (user_id, territory_id))",
    "CREATE TABLE IF NOT EXISTS teams (manager_id TEXT NOT NULL, rep_id TEXT NOT NULL, PRIMARY KEY "
    "(manager_id, rep_id))",
    "CREATE TABLE IF NOT EXISTS devices (node INTEGER PRIMARY KEY, user_id TEXT NOT NULL, registered_at_ms "
    "INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, revoked_at_ms INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS idx_devices_user ON devices (user_id)",
    "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, actor TEXT NOT NULL, "
    "action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS conflict_resolutions (conflict_id INTEGER PRIMARY KEY, resolved_by TEXT NOT "
    "NULL, at_ms INTEGER NOT NULL, action TEXT NOT NULL, server_seq INTEGER NOT NULL)",
    // Web sessions (directory.h WebSession): key is a digest of the token.
    "CREATE TABLE IF NOT EXISTS web_sessions (key TEXT PRIMARY KEY, user_id TEXT NOT NULL, csrf TEXT NOT "
    "NULL, "
    "bearer INTEGER NOT NULL, created_ms INTEGER NOT NULL, last_used_ms INTEGER NOT NULL, expires_at_ms "
    "INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_web_sessions_user ON web_sessions (user_id)",
};

class SqliteDb final : public Db {
 public:
  explicit SqliteDb(std::unique_ptr<sqlite::Db> db) : db_(std::move(db)) {}

  Answer run(std::string_view sql, std::initializer_list<Param> params) override {
    Answer a;
    Result<sqlite3_stmt*> prepared = db_->prepare(std::string(sql));
    if (!prepared) {
      a.status = prepared.status();
      return a;
    }
    sqlite3_stmt* q = *prepared;
    int i = 1;
    for (const Param& p : params) {
      if (const int64_t* v = std::get_if<int64_t>(&p))
        sqlite3_bind_int64(q, i, *v);
      else if (const std::string_view* t = std::get_if<std::string_view>(&p))
        sqlite3_bind_text(q, i, t->data(), static_cast<int>(t->size()), SQLITE_TRANSIENT);
      else if (const Blob* b = std::get_if<Blob>(&p))
        sqlite3_bind_blob(q, i, b->bytes.data(), static_cast<int>(b->bytes.size()), SQLITE_TRANSIENT);
      else
        sqlite3_bind_null(q, i);
      ++i;
    }
    int rc = SQLITE_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
      Row row;
      const int n = sqlite3_column_count(q);
      for (int c = 0; c < n; ++c) {
        switch (sqlite3_column_type(q, c)) {
          case SQLITE_NULL:
            row.emplace_back();
            break;
          case SQLITE_INTEGER:
            row.push_back(Cell::integer(sqlite3_column_int64(q, c)));
            break;
          case SQLITE_BLOB: {
            const char* p = static_cast<const char*>(sqlite3_column_blob(q, c));
            row.push_back(Cell::text(std::string(p, p + sqlite3_column_bytes(q, c))));
            break;
          }
          default: {
            const char* p = reinterpret_cast<const char*>(sqlite3_column_text(q, c));
            row.push_back(Cell::text(std::string(p, p + sqlite3_column_bytes(q, c))));
          }
        }
      }
      a.rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) {
      a.status = db_->error(rc, "directory: " + std::string(sql.substr(0, 60)));
      a.constraint = (rc & 0xff) == SQLITE_CONSTRAINT;
      a.rows.clear();
    } else {
      a.changes = sqlite3_changes(db_->raw());
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return a;
  }
  Status begin() override { return db_->exec("BEGIN IMMEDIATE"); }
  Status commit() override { return db_->exec("COMMIT"); }
  void rollback() override { (void)db_->exec("ROLLBACK"); }
  std::string_view engine() const override { return "sqlite"; }

 private:
  std::unique_ptr<sqlite::Db> db_;
};

}  // namespace

Result<std::unique_ptr<Db>> open_sqlite(const std::string& path, int busy_timeout_ms) {
  // Create the file owner-only before SQLite opens it: it holds password hashes and the signing key. SQLite
  // gives the -wal and -shm files the same permissions.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status(ErrorCode::kStorageIo, "cannot create " + path);
  const bool chmod_ok = fchmod(fd, 0600) == 0;
  ::close(fd);
  if (!chmod_ok) return Status(ErrorCode::kStorageIo, "cannot make " + path + " owner-only");

  Result<std::unique_ptr<sqlite::Db>> db = sqlite::Db::open(
      path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, busy_timeout_ms);
  if (!db) return db.status();
  sqlite::Db& d = **db;
  if (Status s = d.exec("PRAGMA journal_mode = WAL"); !s) return s;
  if (Status s = d.exec("PRAGMA synchronous = FULL"); !s) return s;
  if (Status s = d.exec("BEGIN IMMEDIATE"); !s) return s;
  for (const char* sql : kDdl) {
    if (Status s = d.exec(sql); !s) {
      (void)d.exec("ROLLBACK");
      return s;
    }
  }
  {
    // Files made before the head-office API have no disabled column: added in place.
    bool has_disabled = false;
    {
      sqlite::Stmt q(d, "SELECT 1 FROM pragma_table_info('users') WHERE name = 'disabled'");
      has_disabled = q.step();
    }
    if (!has_disabled) {
      if (Status s = d.exec("ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0"); !s) {
        (void)d.exec("ROLLBACK");
        return s;
      }
    }
  }
  if (Status s = d.exec("COMMIT"); !s) return s;
  return std::unique_ptr<Db>(new SqliteDb(std::move(db.value())));
}

}  // namespace fieldsync::server::dirdb

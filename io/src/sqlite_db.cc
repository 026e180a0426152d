#include "fieldsync/io/sqlite_db.h"

#include <thread>

namespace fieldsync::sqlite {

Status status_from(int rc, std::string_view what, sqlite3* db) {
  const int primary = rc & 0xff;
  if (primary == SQLITE_OK || primary == SQLITE_ROW || primary == SQLITE_DONE) return Status::ok();
  std::string msg(what);
  msg += ": ";
  // The connection's message may be about an earlier error than `rc` (a statement reset or finalized since).
  msg += db != nullptr && sqlite3_errcode(db) == rc ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  msg += " (sqlite " + std::to_string(rc) + ")";
  switch (primary) {
    case SQLITE_FULL:
      return Status(ErrorCode::kStorageFull, std::move(msg), true);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status(ErrorCode::kStorageCorrupt, std::move(msg));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status(ErrorCode::kStorageLocked, std::move(msg), true);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return Status(ErrorCode::kStorageReadOnly, std::move(msg));
    case SQLITE_IOERR:
      if (rc == SQLITE_IOERR_NOMEM) return Status(ErrorCode::kInternal, std::move(msg), true);
      return Status(ErrorCode::kStorageIo, std::move(msg), true);
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return Status(ErrorCode::kStorageIo, std::move(msg), true);
    case SQLITE_NOMEM:
      return Status(ErrorCode::kInternal, std::move(msg), true);
    default:
      return Status(ErrorCode::kInternal, std::move(msg));
  }
}

Result<std::unique_ptr<Db>> Db::open(const std::string& path, int flags, int busy_timeout_ms) {
  // No memory statistics (fieldsync reads none): with them every SQLite allocation and free takes a global
  // mutex and updates counters, ~10% of the central store's apply path in instructions (callgrind,
  // BM_CentralApply). Only possible before SQLite initializes, so the first open in the process (or its
  // first sqlite3_* call elsewhere) decides; afterwards the call is refused (SQLITE_MISUSE) and changes
  // nothing.
  static const int no_memstatus = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)no_memstatus;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    Status s = status_from(rc, "opening " + path, raw);
    sqlite3_close(raw);
    return s;
  }
  sqlite3_extended_result_codes(raw, 1);
  std::unique_ptr<Db> db(new Db(raw));
  db->busy_timeout_ms_ = busy_timeout_ms;
  sqlite3_busy_handler(raw, &Db::on_busy, db.get());
  return db;
}

int Db::on_busy(void* self, int tries) {
  Db& db = *static_cast<Db*>(self);
  const auto now = std::chrono::steady_clock::now();
  if (tries == 0) db.busy_since_ = now;
  if (now - db.busy_since_ >= std::chrono::milliseconds(db.busy_timeout_ms_)) return 0;  // SQLITE_BUSY
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 1;
}

Db::~Db() {
  for (auto& [sql, cached] : cache_) sqlite3_finalize(cached.stmt);
  // v2: a statement someone else prepared on this connection and still holds (the device API's queries run
  // through SqliteReplicaStore::read) keeps the handle alive as a zombie instead of failing the close.
  sqlite3_close_v2(db_);
}

Result<Db::Cached*> Db::find_or_prepare(const std::string& sql) {
  if (auto it = cache_.find(sql); it != cache_.end()) return &it->second;
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                              &stmt, nullptr);
  if (rc != SQLITE_OK) return error(rc, "preparing statement");
  auto [it, inserted] = cache_.emplace(sql, Cached{});
  (void)inserted;
  it->second.stmt = stmt;
  lru_.push_front(&it->first);
  it->second.lru = lru_.begin();
  return &it->second;
}

Result<sqlite3_stmt*> Db::prepare(const std::string& sql) {
  Result<Cached*> c = find_or_prepare(sql);
  if (!c) return c.status();
  if (!(*c)->pinned) {
    (*c)->pinned = true;
    lru_.erase((*c)->lru);
  }
  return (*c)->stmt;
}

Result<Db::Cached*> Db::check_out(const std::string& sql) {
  Result<Cached*> c = find_or_prepare(sql);
  if (!c) return c;
  Cached& cached = **c;
  ++cached.in_use;
  if (!cached.pinned) {
    lru_.splice(lru_.begin(), lru_, cached.lru);
    evict_unused();
  }
  return c;
}

void Db::evict_unused() {
  // From the least recently used end; a statement a Stmt holds is skipped (it is near the front anyway).
  auto it = lru_.end();
  while (lru_.size() > kMaxUnpinnedStatements && it != lru_.begin()) {
    --it;
    auto entry = cache_.find(**it);
    if (entry->second.in_use > 0) continue;
    sqlite3_finalize(entry->second.stmt);
    it = lru_.erase(it);
    cache_.erase(entry);
  }
}

Status Db::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return error(rc, sql.substr(0, 40));
  return Status::ok();
}

Stmt::Stmt(Db& db, const std::string& sql) : db_(db) {
  Result<Db::Cached*> c = db.check_out(sql);
  if (c) {
    cached_ = *c;
    s_ = cached_->stmt;
  } else {
    status_ = c.status();
  }
}

Stmt::~Stmt() {
  if (s_ != nullptr) {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  if (cached_ != nullptr) db_.check_in(*cached_);
}

Stmt& Stmt::bind(int i, int64_t v) {
  if (s_ != nullptr && status_) {
    if (int rc = sqlite3_bind_int64(s_, i, v); rc != SQLITE_OK) status_ = db_.error(rc, "bind");
  }
  return *this;
}

Stmt& Stmt::bind(int i, std::string_view v) {
  if (s_ != nullptr && status_) {
    if (int rc = sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
        rc != SQLITE_OK)
      status_ = db_.error(rc, "bind");
  }
  return *this;
}

Stmt& Stmt::bind_blob(int i, std::span<const uint8_t> v) {
  if (s_ != nullptr && status_) {
    if (int rc = sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT); rc != SQLITE_OK)
      status_ = db_.error(rc, "bind");
  }
  return *this;
}

Stmt& Stmt::bind_borrowed(int i, std::string_view v) {
  if (s_ != nullptr && status_) {
    if (int rc = sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8); rc != SQLITE_OK)
      status_ = db_.error(rc, "bind");
  }
  return *this;
}

Stmt& Stmt::bind_blob_borrowed(int i, std::span<const uint8_t> v) {
  if (s_ != nullptr && status_) {
    if (int rc = sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_STATIC); rc != SQLITE_OK)
      status_ = db_.error(rc, "bind");
  }
  return *this;
}

Stmt& Stmt::bind_null(int i) {
  if (s_ != nullptr && status_) {
    if (int rc = sqlite3_bind_null(s_, i); rc != SQLITE_OK) status_ = db_.error(rc, "bind");
  }
  return *this;
}

Stmt& Stmt::bind_double(int i, double v) {
  if (s_ != nullptr && status_) {
    if (int rc = sqlite3_bind_double(s_, i, v); rc != SQLITE_OK) status_ = db_.error(rc, "bind");
  }
  return *this;
}

bool Stmt::step() {
  if (s_ == nullptr || !status_) return false;
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) status_ = db_.error(rc, "step");
  return false;
}

Status Stmt::run() {
  while (step()) {
  }
  return status_;
}

std::string Stmt::col_text(int i) {
  const unsigned char* p = sqlite3_column_text(s_, i);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, i)));
}

std::span<const uint8_t> Stmt::col_blob(int i) {
  const void* p = sqlite3_column_blob(s_, i);
  if (p == nullptr) return {};
  return {static_cast<const uint8_t*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, i))};
}

}  // namespace fieldsync::sqlite

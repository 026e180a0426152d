// A thin layer over the SQLite C API: a connection with a cache of prepared statements and a busy handler,
// typed errors, and small binding helpers. The central store and the directory (server/) and the device
// replica (client-core/) all open their connections with Db, so a locked or failing file behaves and reads
// the same on both sides; the replica binds and steps its cached statements itself.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fieldsync/schema/ddl.h"
#include "fieldsync/sync/status.h"

namespace fieldsync::sqlite {

// SQLite result code (primary or extended) -> typed Status. The one mapping for every SQLite file fieldsync
// keeps; the code says what the caller can do about it, `retryable` whether trying again later can help
// without an operator:
//   OK, ROW, DONE               ok (any step's result may be passed)
//   FULL                        kStorageFull, retryable (space can be freed)
//   CORRUPT, NOTADB             kStorageCorrupt
//   BUSY, LOCKED                kStorageLocked, retryable (another connection holds the lock)
//   READONLY, PERM, AUTH        kStorageReadOnly: the file's mode, its mount or an authorizer refuses the
//                               access; an operator has to change that
//   IOERR, CANTOPEN, PROTOCOL   kStorageIo, retryable (IOERR_NOMEM: below)
//   NOMEM, IOERR_NOMEM          kInternal, retryable: the process ran short of memory, not the disk
//   anything else               kInternal (ERROR, CONSTRAINT, MISUSE, TOOBIG, ...): SQL fieldsync wrote is
//                               wrong or an invariant is broken
// The message is `what`, the connection's message when it is about this error (else SQLite's text for the
// code) and the code's number.
Status status_from(int rc, std::string_view what, sqlite3* db);

class Db {
 public:
  // Opens `path` with the given sqlite3_open_v2 flags, with extended result codes. A statement that finds the
  // database locked by another connection retries every millisecond for up to busy_timeout_ms (see on_busy).
  static Result<std::unique_ptr<Db>> open(const std::string& path, int flags, int busy_timeout_ms);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* raw() { return db_; }
  // A cached prepared statement for `sql` (prepared on first use, kept until the connection closes: the
  // caller may hold the pointer for as long as the connection lives). The caller resets it when done. For
  // SQL built per request (the API's lists, reports), use Stmt: its statements are kept in a bounded cache.
  Result<sqlite3_stmt*> prepare(const std::string& sql);
  // Runs statements without results (DDL, BEGIN, COMMIT, pragmas).
  Status exec(const std::string& sql);
  Status error(int rc, std::string_view what) { return status_from(rc, what, db_); }
  // How many statements the connection keeps prepared (pinned and not), for tests and metrics.
  size_t cached_statements() const { return cache_.size(); }
  static constexpr size_t kMaxUnpinnedStatements = 128;

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  // SQLite's own busy handler backs off to 100 ms sleeps; the server's write groups leave the lock free only
  // for short gaps, so fieldsync-admin waited up to ~2 s behind a busy server. Trying every millisecond
  // catches the gaps.
  static int on_busy(void* self, int tries);

  // One prepared statement of the cache. `pinned`: handed out by prepare(), whose callers may keep the
  // pointer, so never finalized before the connection closes. Otherwise it is only used through Stmt, which
  // checks it out (`in_use`) for its lifetime, and may be finalized when no Stmt holds it and more than
  // kMaxUnpinnedStatements unpinned ones are cached, least recently used first: SQL text that varies per
  // request (an IN list's length, a filter's combination) would otherwise keep a statement per variant for
  // the connection's life.
  struct Cached {
    sqlite3_stmt* stmt = nullptr;
    bool pinned = false;
    int in_use = 0;
    std::list<const std::string*>::iterator lru;  // position in lru_ (unpinned only)
  };
  friend class Stmt;
  Result<Cached*> find_or_prepare(const std::string& sql);
  Result<Cached*> check_out(const std::string& sql);
  void check_in(Cached& c) { --c.in_use; }
  void evict_unused();

  sqlite3* db_;
  int busy_timeout_ms_ = 0;
  std::chrono::steady_clock::time_point busy_since_;
  std::unordered_map<std::string, Cached> cache_;  // node-based: a Cached stays put while others come and go
  std::list<const std::string*> lru_;              // unpinned statements' keys, most recently used first
};

// One use of a cached statement: binds, steps, and resets (and clears bindings) when it goes out of scope, so
// a reader never keeps an old snapshot open. While it lives its statement is not evicted from the cache.
class Stmt {
 public:
  Stmt(Db& db, const std::string& sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return status_.is_ok(); }
  const Status& status() const { return status_; }

  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, std::string_view v);
  Stmt& bind_blob(int i, std::span<const uint8_t> v);
  // Without a copy (SQLITE_STATIC): the caller keeps the bytes alive and unchanged until this Stmt ends (it
  // resets the statement and clears its bindings). For hot writes whose values the caller holds anyway.
  Stmt& bind_borrowed(int i, std::string_view v);
  Stmt& bind_blob_borrowed(int i, std::span<const uint8_t> v);
  Stmt& bind_null(int i);
  Stmt& bind_double(int i, double v);

  // SQLITE_ROW: true; SQLITE_DONE: false; an error: false and status() says which.
  bool step();
  // Runs to completion (for INSERT/UPDATE/DELETE); returns status().
  Status run();

  int64_t col_int(int i) { return sqlite3_column_int64(s_, i); }
  double col_double(int i) { return sqlite3_column_double(s_, i); }
  bool col_null(int i) { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
  int col_type(int i) { return sqlite3_column_type(s_, i); }  // SQLITE_INTEGER, SQLITE_TEXT, ...
  std::string col_text(int i);
  std::span<const uint8_t> col_blob(int i);

 private:
  Db& db_;
  Db::Cached* cached_ = nullptr;  // checked out of db_'s cache for this Stmt's lifetime
  sqlite3_stmt* s_ = nullptr;
  Status status_;
};

// Quotes an SQL identifier ("order" is a keyword). Defined with the DDL (schema/ddl.h), so statements built
// over model names quote them exactly as the tables were created.
using schema::quoted;

}  // namespace fieldsync::sqlite

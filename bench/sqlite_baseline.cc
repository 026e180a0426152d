#include "sqlite_baseline.h"

#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace fieldsync::bench {
namespace {

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "baseline: %s: %s\n", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    std::abort();
  }
}

}  // namespace

BatchedUpsertBaseline::BatchedUpsertBaseline(const std::string& dir) : notes_(120, 'n') {
  std::string tmpl = dir + "/fieldsync-baseline-XXXXXX";
  std::vector<char> path(tmpl.begin(), tmpl.end());
  path.push_back('\0');
  int fd = mkstemp(path.data());
  if (fd < 0) {
    std::perror("baseline: mkstemp");
    std::abort();
  }
  close(fd);
  path_ = path.data();
  check(sqlite3_open(path_.c_str(), &db_), db_, "open");
  check(sqlite3_exec(db_,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE t(id TEXT PRIMARY KEY, name TEXT, city TEXT, phone TEXT, amount INTEGER,"
                     " notes TEXT)",
                     nullptr, nullptr, nullptr),
        db_, "schema");
  check(sqlite3_prepare_v2(db_,
                           "INSERT INTO t(id, name, city, phone, amount, notes) VALUES(?,?,?,?,?,?) "
                           "ON CONFLICT(id) DO UPDATE SET name=excluded.name, city=excluded.city, "
                           "phone=excluded.phone, amount=excluded.amount, notes=excluded.notes",
                           -1, &upsert_, nullptr),
        db_, "prepare");
}

BatchedUpsertBaseline::~BatchedUpsertBaseline() {
  sqlite3_finalize(upsert_);
  sqlite3_close(db_);
  std::remove(path_.c_str());
  std::remove((path_ + "-wal").c_str());
  std::remove((path_ + "-shm").c_str());
}

void BatchedUpsertBaseline::run_txn() {
  char id[40];
  check(sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr), db_, "begin");
  for (int i = 0; i < kRowsPerTxn; ++i, ++key_) {
    // Time-ordered keys, like the UUIDv7 record ids (lexicographic order = insertion order).
    std::snprintf(id, sizeof id, "0190%012llx-7000-8000-%012llx", static_cast<unsigned long long>(key_),
                  static_cast<unsigned long long>(key_));
    sqlite3_bind_text(upsert_, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(upsert_, 2, "Bakery Nord GmbH", -1, SQLITE_STATIC);
    sqlite3_bind_text(upsert_, 3, "Hamburg", -1, SQLITE_STATIC);
    sqlite3_bind_text(upsert_, 4, "+49 40 1234567", -1, SQLITE_STATIC);
    sqlite3_bind_int64(upsert_, 5, static_cast<sqlite3_int64>(key_));
    sqlite3_bind_text(upsert_, 6, notes_.c_str(), -1, SQLITE_STATIC);
    check(sqlite3_step(upsert_), db_, "upsert");
    sqlite3_reset(upsert_);
  }
  check(sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr), db_, "commit");
}

double BatchedUpsertBaseline::measure_rows_per_s(double seconds) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  uint64_t rows = 0;
  double elapsed = 0;
  do {
    run_txn();
    rows += kRowsPerTxn;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return static_cast<double>(rows) / elapsed;
}

}  // namespace fieldsync::bench

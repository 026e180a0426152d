// The baseline every figure in docs/PERFORMANCE.md is divided by: a bare SQLite batched upsert of ~200-byte
// rows with time-ordered text keys, 1,000 rows per transaction, WAL with synchronous=NORMAL, into a file on
// disk. It is measured in the same run as the benchmark it normalises, because these machines are noisy.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

constexpr int kRowsPerTxn = 1000;

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "baseline: %s: %s\n", what, sqlite3_errmsg(db));
    std::abort();
  }
}

void BM_BaselineSqliteBatchedUpsert(benchmark::State& state) {
  char path[] = "/tmp/fieldsync-baseline-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) std::abort();
  close(fd);
  sqlite3* db = nullptr;
  check(sqlite3_open(path, &db), db, "open");
  check(sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE t(id TEXT PRIMARY KEY, name TEXT, city TEXT, phone TEXT, amount INTEGER,"
                     " notes TEXT)",
                     nullptr, nullptr, nullptr),
        db, "schema");
  sqlite3_stmt* upsert = nullptr;
  check(sqlite3_prepare_v2(db,
                           "INSERT INTO t(id, name, city, phone, amount, notes) VALUES(?,?,?,?,?,?) "
                           "ON CONFLICT(id) DO UPDATE SET name=excluded.name, city=excluded.city, "
                           "phone=excluded.phone, amount=excluded.amount, notes=excluded.notes",
                           -1, &upsert, nullptr),
        db, "prepare");
  const std::string notes(120, 'n');
  uint64_t key = 0;
  char id[40];
  for (auto _ : state) {
    check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
    for (int i = 0; i < kRowsPerTxn; ++i, ++key) {
      // Time-ordered keys, like the UUIDv7 record ids (lexicographic order = insertion order).
      std::snprintf(id, sizeof id, "0190%012llx-7000-8000-%012llx", static_cast<unsigned long long>(key),
                    static_cast<unsigned long long>(key));
      sqlite3_bind_text(upsert, 1, id, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(upsert, 2, "Bakery Nord GmbH", -1, SQLITE_STATIC);
      sqlite3_bind_text(upsert, 3, "Hamburg", -1, SQLITE_STATIC);
      sqlite3_bind_text(upsert, 4, "+49 40 1234567", -1, SQLITE_STATIC);
      sqlite3_bind_int64(upsert, 5, static_cast<sqlite3_int64>(key));
      sqlite3_bind_text(upsert, 6, notes.c_str(), -1, SQLITE_STATIC);
      check(sqlite3_step(upsert), db, "upsert");
      sqlite3_reset(upsert);
    }
    check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  }
  state.SetItemsProcessed(state.iterations() * kRowsPerTxn);
  sqlite3_finalize(upsert);
  sqlite3_close(db);
  std::remove(path);
  std::remove((std::string(path) + "-wal").c_str());
  std::remove((std::string(path) + "-shm").c_str());
}
BENCHMARK(BM_BaselineSqliteBatchedUpsert)->Unit(benchmark::kMillisecond);

}  // namespace

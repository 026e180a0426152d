// The baseline every figure in docs/PERFORMANCE.md is divided by: a bare SQLite batched upsert of ~200-byte
// rows with time-ordered text keys, 1,000 rows per transaction, WAL with synchronous=NORMAL, into a file on
// disk. It is measured in the same run as the benchmark it normalises, because these machines are noisy.
// Google Benchmark binaries wrap it as BM_BaselineSqliteBatchedUpsert (baseline_bench.cc); plain tools such
// as fieldsync-bench-load call measure_rows_per_s().
#pragma once

#include <cstdint>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace fieldsync::bench {

class BatchedUpsertBaseline {
 public:
  static constexpr int kRowsPerTxn = 1000;

  // A fresh database file under `dir`, removed again by the destructor. Aborts on any SQLite error: a broken
  // baseline must not produce a figure.
  explicit BatchedUpsertBaseline(const std::string& dir = "/tmp");
  ~BatchedUpsertBaseline();
  BatchedUpsertBaseline(const BatchedUpsertBaseline&) = delete;
  BatchedUpsertBaseline& operator=(const BatchedUpsertBaseline&) = delete;

  // One transaction of kRowsPerTxn upserts.
  void run_txn();

  // Runs transactions for at least `seconds` of wall time and returns rows per second.
  double measure_rows_per_s(double seconds);

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
  uint64_t key_ = 0;
  std::string notes_;
};

}  // namespace fieldsync::bench

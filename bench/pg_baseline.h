// The PostgreSQL baseline (issue 20): the bare batched upsert PostgreSQL figures are divided by -- INSERT ...
// ON CONFLICT DO UPDATE of ~200-byte rows with time-ordered text keys, one prepared statement per row (as the
// SQLite baseline binds one per row), 1,000 rows per transaction, synchronous_commit on and fsync on (the
// durability the central store acknowledges with). Measured in the same run as what it normalises.
// fieldsync-bench-pg wraps it as BM_BaselinePgBatchedUpsert; fieldsync-bench-load's PostgreSQL mode calls
// measure_rows_per_s(). Both also use ScratchDatabase: a database of its own on the cluster, dropped at the
// end.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace fieldsync::pg {
class Conn;
}

namespace fieldsync::bench {

// A fresh database `name` on the cluster of `cluster_url` (any database of it: the URL's database is only
// used to create and drop this one), dropped by the destructor. Aborts on an error: a benchmark on a database
// it could not create would measure nothing.
class ScratchDatabase {
 public:
  ScratchDatabase(const std::string& cluster_url, const std::string& name);
  ~ScratchDatabase();
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;
  const std::string& url() const { return url_; }

 private:
  std::string admin_, name_, url_;
};

class PgBatchedUpsertBaseline {
 public:
  static constexpr int kRowsPerTxn = 1000;

  // Its table in a ScratchDatabase of its own on `cluster_url`'s cluster.
  explicit PgBatchedUpsertBaseline(const std::string& cluster_url);
  ~PgBatchedUpsertBaseline();
  PgBatchedUpsertBaseline(const PgBatchedUpsertBaseline&) = delete;
  PgBatchedUpsertBaseline& operator=(const PgBatchedUpsertBaseline&) = delete;

  // One transaction of kRowsPerTxn upserts, committed durably.
  void run_txn();
  // Runs transactions for at least `seconds` of wall time and returns rows per second.
  double measure_rows_per_s(double seconds);

 private:
  ScratchDatabase db_;
  std::unique_ptr<pg::Conn> conn_;
  uint64_t key_ = 0;
  std::string notes_;
};

}  // namespace fieldsync::bench

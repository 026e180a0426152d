#include "pg_baseline.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <unistd.h>

#include "pg.h"

namespace fieldsync::bench {

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "pg baseline: %s\n", what.c_str());
  std::exit(1);
}

}  // namespace

ScratchDatabase::ScratchDatabase(const std::string& cluster_url, const std::string& name)
    : admin_(cluster_url), name_(name) {
  auto c = pg::Conn::open(admin_);
  if (!c) die(c.status().to_string());
  (void)(*c)->exec_script("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  if (Status s = (*c)->exec_script("CREATE DATABASE " + name_); !s) die(s.to_string());
  const size_t q = admin_.find('?');
  const std::string base = admin_.substr(0, q);
  url_ = base.substr(0, base.rfind('/') + 1) + name_ + (q == std::string::npos ? "" : admin_.substr(q));
}

ScratchDatabase::~ScratchDatabase() {
  auto c = pg::Conn::open(admin_);
  if (c) (void)(*c)->exec_script("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
}

PgBatchedUpsertBaseline::PgBatchedUpsertBaseline(const std::string& cluster_url)
    : db_(cluster_url, "fs_bench_baseline_" + std::to_string(::getpid())), notes_(120, 'n') {
  auto opened = pg::Conn::open(db_.url());
  if (!opened) die(opened.status().to_string());
  conn_ = std::move(opened.value());
  if (Status s = conn_->exec_script(
          "SET synchronous_commit = on; CREATE TABLE t (id TEXT COLLATE \"C\" PRIMARY KEY, name TEXT, city "
          "TEXT, phone TEXT, amount BIGINT, notes TEXT)");
      !s)
    die(s.to_string());
}

PgBatchedUpsertBaseline::~PgBatchedUpsertBaseline() {
  conn_.reset();
}

void PgBatchedUpsertBaseline::run_txn() {
  static const std::string sql =
      "INSERT INTO t (id, name, city, phone, amount, notes) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) "
      "DO UPDATE SET name = EXCLUDED.name, city = EXCLUDED.city, phone = EXCLUDED.phone, amount = "
      "EXCLUDED.amount, notes = EXCLUDED.notes";
  if (Status s = conn_->begin(); !s) die(s.to_string());
  for (int i = 0; i < kRowsPerTxn; ++i, ++key_) {
    char id[64];
    std::snprintf(id, sizeof id, "0190%012llx-7000-8000-%012llx", static_cast<unsigned long long>(key_),
                  static_cast<unsigned long long>(key_));
    const std::string n = std::to_string(key_);
    if (Status s = conn_->exec(sql, pg::Params()
                                        .add(std::string_view(id))
                                        .add("Bakery " + n)
                                        .add("Springfield")
                                        .add("+1 555 " + n)
                                        .add(static_cast<int64_t>(key_))
                                        .add(std::string_view(notes_)));
        !s)
      die(s.to_string());
  }
  if (Status s = conn_->commit(); !s) die(s.to_string());
}

double PgBatchedUpsertBaseline::measure_rows_per_s(double seconds) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  uint64_t rows = 0;
  do {
    run_txn();
    rows += kRowsPerTxn;
  } while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds);
  return static_cast<double>(rows) / std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace fieldsync::bench

// A few read connections to the central store (sql_reader.h: SQLite or PostgreSQL), reused by the API's
// worker threads (api_entities.cc).
//
// Opening a connection per request paid sqlite3_open_v2, the schema parse on the first statement
// and a cold page cache each time. A lease hands one connection to one thread; returning it puts it back
// unless the pool already keeps `max_idle` (then it is closed). A connection comes back in autocommit: a
// caller that left a read transaction open has it rolled back, so the next lease starts a fresh snapshot and
// sees every commit (WAL readers see what has committed when their read transaction begins); a connection
// that cannot be reset (a PostgreSQL connection the server dropped) is closed instead of kept.
#pragma once

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "fieldsync/sync/status.h"
#include "fieldsync/sync/thread_annotations.h"
#include "sql_reader.h"

namespace fieldsync::server {

class ReaderPool : public std::enable_shared_from_this<ReaderPool> {
 public:
  using Opener = std::function<Result<std::unique_ptr<SqlReader>>()>;

  class Lease {
   public:
    Lease(std::shared_ptr<ReaderPool> pool, std::unique_ptr<SqlReader> db)
        : pool_(std::move(pool)), db_(std::move(db)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease() {
      if (pool_ && db_) pool_->put_back(std::move(db_));
    }
    SqlReader& operator*() const { return *db_; }
    SqlReader* operator->() const { return db_.get(); }

   private:
    std::shared_ptr<ReaderPool> pool_;
    std::unique_ptr<SqlReader> db_;
  };

  static std::shared_ptr<ReaderPool> make(Opener open, size_t max_idle) {
    return std::shared_ptr<ReaderPool>(new ReaderPool(std::move(open), max_idle));
  }

  // An idle connection, else a new one. Errors: the opener's.
  Result<Lease> lease() {
    {
      MutexLock lock(mu_);
      if (!idle_.empty()) {
        std::unique_ptr<SqlReader> db = std::move(idle_.back());
        idle_.pop_back();
        return Lease(shared_from_this(), std::move(db));
      }
    }
    Result<std::unique_ptr<SqlReader>> db = open_();
    if (!db) return db.status();
    return Lease(shared_from_this(), std::move(db.value()));
  }

  size_t idle() {
    MutexLock lock(mu_);
    return idle_.size();
  }

 private:
  ReaderPool(Opener open, size_t max_idle) : open_(std::move(open)), max_idle_(max_idle) {}

  void put_back(std::unique_ptr<SqlReader> db) {
    if (!db->reset()) return;  // closed, not kept
    MutexLock lock(mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(db));
  }

  const Opener open_;
  const size_t max_idle_;
  Mutex mu_;
  std::vector<std::unique_ptr<SqlReader>> idle_ GUARDED_BY(mu_);
};

}  // namespace fieldsync::server

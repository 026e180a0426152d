// A few read connections to the central store, reused by the API's worker threads (api_entities.cc).
//
// Opening a SQLite connection per request paid sqlite3_open_v2, the schema parse on the first statement
// and a cold page cache each time. A lease hands one connection to one thread; returning it puts it back
// unless the pool already keeps `max_idle` (then it is closed). A connection comes back in autocommit: a
// caller that left a read transaction open has it rolled back, so the next lease starts a fresh snapshot and
// sees every commit (WAL readers see what has committed when their read transaction begins).
#pragma once

#include <sqlite3.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "fieldsync/io/sqlite_db.h"
#include "fieldsync/sync/status.h"
#include "fieldsync/sync/thread_annotations.h"

namespace fieldsync::server {

class ReaderPool : public std::enable_shared_from_this<ReaderPool> {
 public:
  using Opener = std::function<Result<std::unique_ptr<sqlite::Db>>()>;

  class Lease {
   public:
    Lease(std::shared_ptr<ReaderPool> pool, std::unique_ptr<sqlite::Db> db)
        : pool_(std::move(pool)), db_(std::move(db)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease() {
      if (pool_ && db_) pool_->put_back(std::move(db_));
    }
    sqlite::Db& operator*() const { return *db_; }
    sqlite::Db* operator->() const { return db_.get(); }

   private:
    std::shared_ptr<ReaderPool> pool_;
    std::unique_ptr<sqlite::Db> db_;
  };

  static std::shared_ptr<ReaderPool> make(Opener open, size_t max_idle) {
    return std::shared_ptr<ReaderPool>(new ReaderPool(std::move(open), max_idle));
  }

  // An idle connection, else a new one. Errors: the opener's.
  Result<Lease> lease() {
    {
      MutexLock lock(mu_);
      if (!idle_.empty()) {
        std::unique_ptr<sqlite::Db> db = std::move(idle_.back());
        idle_.pop_back();
        return Lease(shared_from_this(), std::move(db));
      }
    }
    Result<std::unique_ptr<sqlite::Db>> db = open_();
    if (!db) return db.status();
    return Lease(shared_from_this(), std::move(db.value()));
  }

  size_t idle() {
    MutexLock lock(mu_);
    return idle_.size();
  }

 private:
  ReaderPool(Opener open, size_t max_idle) : open_(std::move(open)), max_idle_(max_idle) {}

  void put_back(std::unique_ptr<sqlite::Db> db) {
    if (!sqlite3_get_autocommit(db->raw()) && !db->exec("ROLLBACK")) return;  // closed, not kept
    MutexLock lock(mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(db));
  }

  const Opener open_;
  const size_t max_idle_;
  Mutex mu_;
  std::vector<std::unique_ptr<sqlite::Db>> idle_ GUARDED_BY(mu_);
};

}  // namespace fieldsync::server

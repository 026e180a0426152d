// A database of its own for each test, on the throwaway cluster that ctest's pg_cluster fixture starts
// (scripts/pg-cluster.sh; tests/CMakeLists.txt). The cluster's URL comes from FIELDSYNC_PG_URL, or from the
// file named by FIELDSYNC_PG_URL_FILE (what the fixture sets). Without either, or with a cluster that does
// not answer, the test fails: a test that needs PostgreSQL never skips.
//
// Header-only (tests link fieldsync_pg and see server/src for pg.h).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "pg.h"

namespace fieldsync::testing {

// The cluster's URL (to its `postgres` database), or "" with the reason in *why.
inline std::string pg_cluster_url(std::string* why) {
  if (const char* u = std::getenv("FIELDSYNC_PG_URL"); u != nullptr && *u) return u;
  const char* f = std::getenv("FIELDSYNC_PG_URL_FILE");
  if (f == nullptr || !*f) {
    *why =
        "no PostgreSQL for this test: set FIELDSYNC_PG_URL (scripts/pg-cluster.sh start DIR prints one) or "
        "run it "
        "through ctest, whose pg_cluster fixture starts a cluster";
    return "";
  }
  std::ifstream in(f);
  std::string url;
  std::getline(in, url);
  if (url.empty()) *why = std::string("no PostgreSQL URL in ") + f + " (did the pg_cluster_start test fail?)";
  return url;
}

// `url` with its database name replaced.
inline std::string pg_url_with_database(const std::string& url, const std::string& db) {
  auto q = url.find('?');
  std::string base = url.substr(0, q), query = q == std::string::npos ? "" : url.substr(q);
  auto slash = base.rfind('/');
  if (slash == std::string::npos || slash < base.find("//") + 2) return base + "/" + db + query;
  return base.substr(0, slash + 1) + db + query;
}

// Creates an empty database with a unique name; drops it (and closes whatever is still connected) when done.
class PgTestDatabase {
 public:
  PgTestDatabase() {
    std::string why;
    admin_url_ = pg_cluster_url(&why);
    if (admin_url_.empty()) {
      ADD_FAILURE() << why;
      return;
    }
    static std::atomic<int> counter{0};
    std::random_device rd;
    name_ = "fs_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(rd() % 1000000);
    auto admin = pg::Conn::open(admin_url_);
    if (!admin) {
      ADD_FAILURE() << "PostgreSQL at " << admin_url_ << ": " << admin.status().to_string();
      return;
    }
    // A name made above from digits and letters: nothing to quote. CREATE DATABASE takes no parameters.
    Status s = (*admin)->exec_script("CREATE DATABASE " + name_);
    if (!s) {
      ADD_FAILURE() << "CREATE DATABASE " << name_ << ": " << s.to_string();
      return;
    }
    url_ = pg_url_with_database(admin_url_, name_);
  }
  ~PgTestDatabase() {
    if (url_.empty()) return;
    auto admin = pg::Conn::open(admin_url_);
    if (admin) (void)(*admin)->exec_script("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  }
  PgTestDatabase(const PgTestDatabase&) = delete;
  PgTestDatabase& operator=(const PgTestDatabase&) = delete;

  bool ok() const { return !url_.empty(); }
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  const std::string& admin_url() const { return admin_url_; }

 private:
  std::string admin_url_, name_, url_;
};

}  // namespace fieldsync::testing

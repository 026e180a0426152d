// A fresh PostgreSQL database per test, on the throwaway cluster the test command starts
// (scripts/pg-cluster.sh; ctest's pg_cluster fixture passes its URL in FIELDSYNC_PG_URL). Without a cluster
// the test fails -- it never skips: a test that needs PostgreSQL and cannot reach it is a broken setup.
// Header-only; its users link libpq.
#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <string>

namespace fieldsync::testsupport {

// The cluster's URL (the maintenance database), or "" when the environment names none.
inline std::string pg_cluster_url() {
  const char* url = std::getenv("FIELDSYNC_PG_URL");
  return url ? std::string(url) : std::string();
}

// `url` with its database name replaced by `db`.
inline std::string pg_url_with_database(const std::string& url, const std::string& db) {
  const size_t query = url.find('?');
  const std::string base = url.substr(0, query);
  const size_t scheme = base.find("://");
  const size_t slash = base.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  std::string out = (slash == std::string::npos ? base : base.substr(0, slash)) + "/" + db;
  if (query != std::string::npos) out += url.substr(query);
  return out;
}

// Runs one statement on the maintenance database; "" on success, else the error.
inline std::string pg_admin_exec(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  std::string error;
  if (PQstatus(c) != CONNECTION_OK) {
    error = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
      error = PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(c);
  return error;
}

class PgTestDb {
 public:
  PgTestDb() {
    cluster_ = pg_cluster_url();
    if (cluster_.empty()) {
      ADD_FAILURE() << "FIELDSYNC_PG_URL is not set: run the tests through ctest (the pg_cluster fixture "
                       "starts PostgreSQL) or export the URL of scripts/pg-cluster.sh start DIR";
      return;
    }
    static std::atomic<int> counter{0};
    name_ = "fs_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(std::random_device{}() % 1000000);
    if (std::string e = pg_admin_exec(cluster_, "CREATE DATABASE " + name_); !e.empty()) {
      ADD_FAILURE() << "cannot create database " << name_ << ": " << e;
      name_.clear();
      return;
    }
    url_ = pg_url_with_database(cluster_, name_);
  }
  ~PgTestDb() {
    if (!name_.empty()) (void)pg_admin_exec(cluster_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  }
  PgTestDb(const PgTestDb&) = delete;
  PgTestDb& operator=(const PgTestDb&) = delete;

  bool ok() const { return !url_.empty(); }
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  const std::string& cluster() const { return cluster_; }
  // Runs SQL in this database; "" on success.
  std::string exec(const std::string& sql) const { return pg_admin_exec(url_, sql); }
  // Ends every other connection to this database (a PostgreSQL restart or failover, as clients see it).
  std::string drop_connections() const {
    return pg_admin_exec(
        cluster_, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name_ + "'");
  }

 private:
  std::string cluster_, name_, url_;
};

}  // namespace fieldsync::testsupport

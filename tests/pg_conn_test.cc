// The libpq wrapper (server/src/pg.h) against the real PostgreSQL of the pg_cluster fixture: bound
// parameters, typed getters, transactions, and the error mapping, including a connection the server drops.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "pg.h"
#include "support/pg_test_db.h"

namespace fieldsync {
namespace {

using testing::PgTestDatabase;

class PgConnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.ok());
    auto c = pg::Conn::open(db_.url());
    ASSERT_TRUE(c) << c.status().to_string();
    conn_ = std::move(c.value());
    ASSERT_TRUE(
        conn_->exec_script("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, i INTEGER, f DOUBLE PRECISION, "
                           "b BYTEA, flag BOOLEAN)"));
  }
  PgTestDatabase db_;
  std::unique_ptr<pg::Conn> conn_;
};

TEST_F(PgConnTest, ParametersAreBoundNeverSpliced) {
  // Text that would break or inject if it were spliced into the SQL, and bytes with zeros and invalid UTF-8.
  const std::string evil = "x'); DROP TABLE t; --\"\\ é";
  const std::vector<uint8_t> blob = {0, 1, 0xff, 0, 0x80, '\'', 0};
  ASSERT_TRUE(conn_->exec("INSERT INTO t (id, n, i, f, b, flag) VALUES ($1, $2, $3, $4, $5, $6)",
                          pg::Params()
                              .add(evil)
                              .add(int64_t{-9007199254740993})
                              .add(int64_t{-7})
                              .add(0.1)
                              .add_bytes(blob)
                              .add(true)));
  ASSERT_TRUE(conn_->exec("INSERT INTO t (id, n) VALUES ($1, $2)", pg::Params().add("null-row").add_null()));
  auto rows = conn_->query("SELECT id, n, i, f, b, flag FROM t WHERE id = $1", pg::Params().add(evil));
  ASSERT_TRUE(rows) << rows.status().to_string();
  ASSERT_EQ(rows->size(), 1);
  EXPECT_EQ(rows->text(0, 0), evil);
  EXPECT_EQ(rows->i64(0, 1), -9007199254740993);
  EXPECT_EQ(rows->i64(0, 2), -7);
  EXPECT_EQ(rows->f64(0, 3), 0.1);  // %.17g round-trips a double exactly
  auto b = rows->blob(0, 4);
  EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.end()), blob);
  EXPECT_EQ(rows->i64(0, 5), 1);
  auto nulls = conn_->query("SELECT n, b FROM t WHERE id = $1", pg::Params().add("null-row"));
  ASSERT_TRUE(nulls);
  EXPECT_TRUE(nulls->null(0, 0));
  EXPECT_TRUE(nulls->null(0, 1));
  auto count = conn_->query("SELECT count(*) FROM t");
  ASSERT_TRUE(count);
  EXPECT_EQ(count->i64(0, 0), 2);  // the table is still there
}

TEST_F(PgConnTest, RollbackDiscardsAndCommitKeeps) {
  ASSERT_TRUE(conn_->begin());
  EXPECT_TRUE(conn_->in_transaction());
  ASSERT_TRUE(conn_->exec("INSERT INTO t (id) VALUES ($1)", pg::Params().add("a")));
  ASSERT_TRUE(conn_->rollback());
  ASSERT_TRUE(conn_->begin());
  ASSERT_TRUE(conn_->exec("INSERT INTO t (id) VALUES ($1)", pg::Params().add("b")));
  ASSERT_TRUE(conn_->commit());
  EXPECT_FALSE(conn_->in_transaction());
  auto rows = conn_->query("SELECT id FROM t ORDER BY id");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1);
  EXPECT_EQ(rows->text(0, 0), "b");
  auto upd = conn_->query("UPDATE t SET n = $1", pg::Params().add(int64_t{1}));
  ASSERT_TRUE(upd);
  EXPECT_EQ(upd->affected(), 1u);
}

TEST_F(PgConnTest, CommitOfAFailedTransactionIsAnErrorNotASilentRollback) {
  ASSERT_TRUE(conn_->begin());
  ASSERT_TRUE(conn_->exec("INSERT INTO t (id) VALUES ($1)", pg::Params().add("a")));
  Status dup = conn_->exec("INSERT INTO t (id) VALUES ($1)", pg::Params().add("a"));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.code(), ErrorCode::kInternal);
  EXPECT_EQ(conn_->sqlstate(), "23505");
  EXPECT_NE(dup.message().find("23505"), std::string::npos) << dup.message();
  Status c = conn_->commit();
  EXPECT_FALSE(c);
  auto rows = conn_->query("SELECT count(*) FROM t");
  ASSERT_TRUE(rows);
  EXPECT_EQ(rows->i64(0, 0), 0);
}

// for_each_row (the migration's verification of tables of any size): every row once, in one-row Rows; an
// error of the callback or of the statement comes back after the rest is drained, and the connection works
// on.
TEST_F(PgConnTest, ForEachRowStreamsEveryRowAndReturnsTheFirstError) {
  ASSERT_TRUE(conn_->exec_script("INSERT INTO t (id, n) SELECT 'k' || g, g FROM generate_series(1, 5000) g"));
  int64_t rows = 0, sum = 0;
  ASSERT_TRUE(conn_->for_each_row("SELECT n FROM t", [&](const pg::Rows& r) {
    EXPECT_EQ(r.size(), 1);
    ++rows;
    sum += r.i64(0, 0);
    return Status::ok();
  }));
  EXPECT_EQ(rows, 5000);
  EXPECT_EQ(sum, int64_t{5000} * 5001 / 2);
  int calls = 0;
  Status stop = conn_->for_each_row("SELECT n FROM t", [&](const pg::Rows&) {
    return ++calls == 10 ? Status(ErrorCode::kStorageCorrupt, "tenth row") : Status::ok();
  });
  EXPECT_EQ(stop.code(), ErrorCode::kStorageCorrupt);
  EXPECT_EQ(calls, 10) << "not called again after its error";
  Status bad = conn_->for_each_row("SELECT n / 0 FROM t", [](const pg::Rows&) { return Status::ok(); });
  EXPECT_FALSE(bad);
  EXPECT_EQ(conn_->sqlstate(), "22012");
  auto count = conn_->query("SELECT count(*) FROM t");
  ASSERT_TRUE(count) << count.status().to_string();
  EXPECT_EQ(count->i64(0, 0), 5000);
}

TEST_F(PgConnTest, ErrorMapping) {
  Status syntax = conn_->exec("SELEC 1");
  EXPECT_EQ(syntax.code(), ErrorCode::kInternal);
  EXPECT_FALSE(syntax.retryable());
  EXPECT_EQ(pg::status_from("40001", "w", "m").code(), ErrorCode::kStorageLocked);
  EXPECT_TRUE(pg::status_from("40P01", "w", "m").retryable());
  EXPECT_EQ(pg::status_from("53100", "w", "m").code(), ErrorCode::kStorageFull);
  EXPECT_EQ(pg::status_from("XX001", "w", "m").code(), ErrorCode::kStorageCorrupt);
  EXPECT_EQ(pg::status_from("25006", "w", "m").code(), ErrorCode::kStorageReadOnly);
  EXPECT_EQ(pg::status_from("08006", "w", "m").code(), ErrorCode::kStorageIo);
  EXPECT_TRUE(pg::status_from("57P01", "w", "m").retryable());
  // A real serialization failure is retryable kStorageLocked: a lock the statement may not wait for.
  ASSERT_TRUE(conn_->exec("INSERT INTO t (id) VALUES ($1)", pg::Params().add("locked")));
  auto other = pg::Conn::open(db_.url());
  ASSERT_TRUE(other);
  ASSERT_TRUE((*other)->begin());
  ASSERT_TRUE((*other)->exec("SELECT id FROM t WHERE id = $1 FOR UPDATE", pg::Params().add("locked")));
  Status nowait = conn_->exec("SELECT id FROM t WHERE id = $1 FOR UPDATE NOWAIT", pg::Params().add("locked"));
  EXPECT_EQ(nowait.code(), ErrorCode::kStorageLocked) << nowait.to_string();
  EXPECT_TRUE(nowait.retryable());
}

TEST_F(PgConnTest, DroppedConnectionIsRetryableAndBroken) {
  auto pid = conn_->query("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid);
  int64_t backend = pid->i64(0, 0);
  auto killer = pg::Conn::open(db_.url());
  ASSERT_TRUE(killer);
  auto killed = (*killer)->query("SELECT pg_terminate_backend($1::int)", pg::Params().add(backend));
  ASSERT_TRUE(killed) << killed.status().to_string();
  // The backend is gone: the next statement fails, retryable, and the connection says it is broken.
  Status s = conn_->exec("SELECT 1");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), ErrorCode::kStorageIo) << s.to_string();
  EXPECT_TRUE(s.retryable());
  EXPECT_TRUE(conn_->broken());
  Status again = conn_->exec("SELECT 1");
  EXPECT_EQ(again.code(), ErrorCode::kStorageIo);
  EXPECT_TRUE(again.retryable());
}

TEST(PgConnOpenTest, RefusedConnectionIsRetryableStorageIo) {
  // Port 1 on loopback: nobody listens there.
  auto c = pg::Conn::open("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.status().code(), ErrorCode::kStorageIo) << c.status().to_string();
  EXPECT_TRUE(c.status().retryable());
}

TEST(PgConnOpenTest, TheClusterIsThere) {
  // Without the fixture's cluster this fails (it never skips): the test command must start PostgreSQL.
  std::string why;
  std::string url = testing::pg_cluster_url(&why);
  ASSERT_FALSE(url.empty()) << why;
  auto c = pg::Conn::open(url);
  ASSERT_TRUE(c) << c.status().to_string();
  auto rows = (*c)->query("SELECT current_setting('fsync'), current_setting('synchronous_commit')");
  ASSERT_TRUE(rows);
  EXPECT_EQ(rows->text(0, 0), "on");
  EXPECT_EQ(rows->text(0, 1), "on");
}

}  // namespace
}  // namespace fieldsync

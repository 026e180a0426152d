// Several fieldsync-server instances on one PostgreSQL database (issue 20, "Several instances"): the
// cross-instance notification (log_follower.h).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "fieldsync/server/log_follower.h"
#include "support/pg_test_db.h"
#include "support/server_process.h"

namespace fieldsync::server {
namespace {

using namespace std::chrono_literals;
using testsupport::eventually;
using testsupport::PgTestDb;

struct Counted {
  std::atomic<int> commits{0};
  std::unique_ptr<LogFollower> follower;
};

void follow(Counted& c, const std::string& url) {
  auto f = LogFollower::start(url, [&c] { c.commits++; });
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  c.follower = std::move(f.value());
}

TEST(LogFollower, ACommitOnOneServerWakesTheOthersNotItself) {
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  Counted a, b, c;
  follow(a, db.url());
  follow(b, db.url());
  follow(c, db.url());
  a.follower->local_commit();
  ASSERT_TRUE(eventually([&] { return b.commits >= 1 && c.commits >= 1; }, 5s));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(a.commits.load(), 0) << "a server's own NOTIFY is not news to it";
  EXPECT_EQ(b.follower->notifications(), 1u);

  // Many local commits in a burst: at least one NOTIFY, at most one per call (coalesced).
  const int before = b.commits;
  for (int i = 0; i < 1000; ++i) a.follower->local_commit();
  ASSERT_TRUE(eventually([&] { return b.commits > before; }, 5s));
  std::this_thread::sleep_for(200ms);
  EXPECT_LT(b.commits - before, 1000) << "a burst of commits is told in fewer notifications";

  // fieldsync-admin's one-off NOTIFY wakes every server.
  const int a0 = a.commits, b0 = b.commits;
  ASSERT_TRUE(notify_log(db.url()).is_ok());
  ASSERT_TRUE(eventually([&] { return a.commits > a0 && b.commits > b0; }, 5s));
}

// The follower's connection drops (a database restart or failover): it reconnects by itself, wakes its
// server once for whatever was committed meanwhile, and is told of later commits again.
TEST(LogFollower, ReconnectsAndCatchesUpAfterItsConnectionDrops) {
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  Counted a, b;
  follow(a, db.url());
  follow(b, db.url());
  ASSERT_EQ(db.drop_connections(), "");
  ASSERT_TRUE(
      eventually([&] { return a.follower->reconnects() >= 1 && b.follower->reconnects() >= 1; }, 10s));
  EXPECT_GE(b.commits.load(), 1) << "a reconnect looks at the log once";
  const int b0 = b.commits;
  a.follower->local_commit();
  ASSERT_TRUE(eventually([&] { return b.commits > b0; }, 5s));
}

TEST(LogFollower, AnUnreachableDatabaseIsATypedError) {
  auto f = LogFollower::start("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", [] {});
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), ErrorCode::kStorageIo);
  EXPECT_EQ(notify_log("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2").code(),
            ErrorCode::kStorageIo);
}

}  // namespace
}  // namespace fieldsync::server

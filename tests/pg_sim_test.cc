// The deterministic simulator (tests/sim) with PgCentralStore as the server's store, on the real PostgreSQL
// of the pg_cluster fixture: every seed must converge and account for every acknowledged write, as on the
// memory store. The same seed on the memory store must run exactly the same way: the simulation is
// deterministic, so any difference in what the server decided (applied, rejected, conflicts, messages) is a
// store that does not behave like the reference.
#include <gtest/gtest.h>

#include <string>

#include "fieldsync/server/pg_store.h"
#include "simulator.h"
#include "support/pg_test_db.h"

namespace fieldsync {
namespace {

using server::PgCentralStore;

// One test per seed (ctest runs them in parallel): each opens a new database and runs 600 steps against
// PostgreSQL (every commit flushed to disk), about 3 s each on an idle two-core machine. `servers`: server
// instances on the one database (issue 20), devices connected to either.
void converges_as_on_the_memory_store(uint64_t seed, int servers) {
  testing::PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  sim::SimOptions options;
  options.seed = seed;
  options.servers = servers;
  const sim::SimReport memory = sim::run_simulation(options);
  options.central_store = [&]() -> std::unique_ptr<CentralStore> {
    PgCentralStore::Options o;
    auto r = PgCentralStore::open(db.url(), o);
    EXPECT_TRUE(r) << r.status().to_string();
    if (!r) return nullptr;
    return std::move(r).value();
  };
  options.central_rejections = [](CentralStore& s) {
    Result<std::vector<StoredRejection>> r = static_cast<PgCentralStore&>(s).rejections();
    EXPECT_TRUE(r) << r.status().to_string();
    return r ? std::move(r).value() : std::vector<StoredRejection>();
  };
  const sim::SimReport pg = sim::run_simulation(options);
  std::string failures;
  for (const std::string& f : pg.failures) failures += "\n  " + f;
  EXPECT_TRUE(pg.ok) << "seed " << seed << " failed on PostgreSQL (reproduce: pg_sim_test, seed " << seed
                     << ", " << servers << " server(s))" << failures;
  EXPECT_TRUE(memory.ok) << "seed " << seed << " failed on the memory store";
  EXPECT_GT(pg.txns_applied, 0u) << "seed " << seed << ": the run must exercise the store";
  EXPECT_EQ(pg.txns_written, memory.txns_written) << "seed " << seed;
  EXPECT_EQ(pg.txns_applied, memory.txns_applied) << "seed " << seed;
  EXPECT_EQ(pg.txns_rejected, memory.txns_rejected) << "seed " << seed;
  EXPECT_EQ(pg.conflicts, memory.conflicts) << "seed " << seed;
  EXPECT_EQ(pg.messages_sent, memory.messages_sent) << "seed " << seed;
  EXPECT_EQ(pg.server_read_faults, memory.server_read_faults) << "seed " << seed;
}

class PgSimTest : public ::testing::TestWithParam<uint64_t> {};
INSTANTIATE_TEST_SUITE_P(Seeds, PgSimTest, ::testing::Range<uint64_t>(1, 9));

TEST_P(PgSimTest, ConvergesOnPostgresAsOnTheMemoryStore) {
  converges_as_on_the_memory_store(GetParam(), 1);
}

// Two SyncServers on one PgCentralStore: each instance's caches meet the other's commits.
class PgSimTwoServersTest : public ::testing::TestWithParam<uint64_t> {};
INSTANTIATE_TEST_SUITE_P(Seeds, PgSimTwoServersTest, ::testing::Range<uint64_t>(1, 5));

TEST_P(PgSimTwoServersTest, ConvergesOnPostgresAsOnTheMemoryStore) {
  converges_as_on_the_memory_store(GetParam(), 2);
}

}  // namespace
}  // namespace fieldsync

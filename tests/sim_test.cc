// The simulator as a test: a handful of seeds must pass, the same seed must replay identically, and
// deliberate merge bugs must be caught (a checker that cannot fail proves nothing).
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "fieldsync/sync/merge.h"
#include "simulator.h"

namespace fieldsync::sim {
namespace {

std::string summary(const SimReport& r) {
  std::string s;
  for (const std::string& f : r.failures) s += "\n  " + f;
  return s;
}

// The broken merge is an option of one run (SimOptions::fault), never process state: FaultIsResetAfterARun
// checks a faulty run leaves the next one alone.
class SimTest : public ::testing::Test {};

TEST_F(SimTest, SeedsConverge) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SimOptions opt;
    opt.seed = seed;
    SimReport r = run_simulation(opt);
    EXPECT_TRUE(r.ok) << "seed " << seed << " (reproduce: fieldsync-sim --seed " << seed << ")" << summary(r);
    EXPECT_GT(r.txns_applied, 0u) << "seed " << seed;
  }
}

// Two server instances on one store (issue 20): a connection lands on either, each keeps its own scope cache
// and log tail, and what one commits reaches the other's live sessions only through poll_external_commits.
// Head office's territory moves through one instance must reach, and leave, devices on the other.
TEST_F(SimTest, SeedsConvergeWithTwoServersOnOneStore) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    SimOptions opt;
    opt.seed = seed;
    opt.servers = 2;
    SimReport r = run_simulation(opt);
    EXPECT_TRUE(r.ok) << "seed " << seed << " (reproduce: fieldsync-sim --servers 2 --seed " << seed << ")"
                      << summary(r);
    EXPECT_GT(r.txns_applied, 0u) << "seed " << seed;
  }
}

TEST_F(SimTest, SameSeedSameReport) {
  SimOptions opt;
  opt.seed = 42;
  SimReport a = run_simulation(opt);
  SimReport b = run_simulation(opt);
  EXPECT_EQ(a.ok, b.ok);
  EXPECT_EQ(a.failures, b.failures);
  EXPECT_EQ(a.txns_written, b.txns_written);
  EXPECT_EQ(a.txns_local_errors, b.txns_local_errors);
  EXPECT_EQ(a.txns_applied, b.txns_applied);
  EXPECT_EQ(a.txns_rejected, b.txns_rejected);
  EXPECT_EQ(a.conflicts, b.conflicts);
  EXPECT_EQ(a.messages_sent, b.messages_sent);
  EXPECT_EQ(a.messages_dropped, b.messages_dropped);
  EXPECT_EQ(a.messages_duplicated, b.messages_duplicated);
  EXPECT_EQ(a.messages_reordered, b.messages_reordered);
  EXPECT_EQ(a.frames_corrupted, b.frames_corrupted);
  EXPECT_EQ(a.client_crashes, b.client_crashes);
  EXPECT_EQ(a.server_crashes, b.server_crashes);
  EXPECT_EQ(a.partitions, b.partitions);
  EXPECT_EQ(a.connection_resets, b.connection_resets);
  EXPECT_EQ(a.backlogs, b.backlogs);
  EXPECT_EQ(a.sim_time_ms, b.sim_time_ms);
}

TEST_F(SimTest, DifferentSeedsDiffer) {
  SimOptions a;
  a.seed = 7;
  SimOptions b;
  b.seed = 8;
  SimReport ra = run_simulation(a);
  SimReport rb = run_simulation(b);
  EXPECT_NE(std::make_tuple(ra.messages_sent, ra.txns_written, ra.sim_time_ms),
            std::make_tuple(rb.messages_sent, rb.txns_written, rb.sim_time_ms));
}

bool any_mentions(const SimReport& r, const std::string& what) {
  for (const std::string& f : r.failures)
    if (f.find(what) != std::string::npos) return true;
  return false;
}

// Mutation test: if "whatever arrives last wins", replicas that saw writes in different orders diverge, and
// the convergence check must say so.
TEST_F(SimTest, CatchesArrivalOrderMerge) {
  int failing = 0;
  bool convergence = false;
  for (uint64_t seed = 1; seed <= 50 && !convergence; ++seed) {
    SimOptions opt;
    opt.seed = seed;
    opt.fault = testing_support::MergeFault::kArrivalOrderWins;
    SimReport r = run_simulation(opt);
    if (!r.ok) ++failing;
    if (any_mentions(r, "convergence")) convergence = true;
  }
  EXPECT_GT(failing, 0);
  EXPECT_TRUE(convergence) << "no seed reported a convergence failure under kArrivalOrderWins";
}

// Mutation test: keeping only the newest of concurrent note fragments loses an acknowledged append.
TEST_F(SimTest, CatchesDroppedConcurrentAppend) {
  bool caught = false;
  for (uint64_t seed = 1; seed <= 50 && !caught; ++seed) {
    SimOptions opt;
    opt.seed = seed;
    opt.fault = testing_support::MergeFault::kDropConcurrentAppend;
    SimReport r = run_simulation(opt);
    caught = any_mentions(r, "lost") || any_mentions(r, "convergence");
  }
  EXPECT_TRUE(caught) << "no seed noticed appends dropped under kDropConcurrentAppend";
}

// The merge fault is process-wide: a run with it must leave none behind, so a later run of the same seed is
// the same as one before it.
TEST_F(SimTest, FaultIsResetAfterARun) {
  SimOptions clean;
  clean.seed = 3;
  SimReport before = run_simulation(clean);
  SimOptions faulty = clean;
  faulty.fault = testing_support::MergeFault::kArrivalOrderWins;
  (void)run_simulation(faulty);
  SimReport after = run_simulation(clean);
  EXPECT_EQ(before.failures, after.failures);
  EXPECT_EQ(before.txns_applied, after.txns_applied);
  EXPECT_EQ(before.conflicts, after.conflicts);
  EXPECT_EQ(before.messages_sent, after.messages_sent);
}

}  // namespace
}  // namespace fieldsync::sim

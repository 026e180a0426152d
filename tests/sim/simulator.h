// The deterministic simulator (after TigerBeetle's VOPR and realm-core's fuzz_tester): many offline replicas,
// a server, and a lossy network, driven by one seeded random generator through random edits, network faults,
// crashes and clock skew; at the end every replica is compared with the server and every acknowledged write
// is accounted for. One seed is one reproducible run: no wall clock, no threads, no iteration order that
// depends on addresses.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fieldsync/sync/store.h"
#include "support/faulty_merge.h"

namespace fieldsync::sim {

struct SimOptions {
  uint64_t seed = 1;
  // Sales reps, each with a device. A head-office client (no manager above it) and, with three reps or more,
  // a manager of the first three reps are added.
  int reps = 5;
  // Iterations of the random phase; each advances simulated time by up to a second and may make one local
  // write.
  int steps = 600;
  bool verbose = false;  // trace every event to stdout (use with one seed)
  // A deliberately broken merge on the server and every device, for the mutation tests.
  testing_support::MergeFault fault = testing_support::MergeFault::kNone;
  // Head office moves accounts between territories, so records enter and leave devices' scopes.
  bool scope_moves = true;
  // Each device's store is a client::SqliteReplicaStore file in a temporary directory (a client crash closes
  // and reopens it) instead of a MemoryReplicaStore.
  bool sqlite_replicas = false;
  // Server instances on the one central store (issue 20: several fieldsync-server processes in front of one
  // PostgreSQL database). Each connection goes to one of them, each keeps its own caches (scope cache, log
  // tail), and a commit through one reaches live sessions on the others only through their
  // poll_external_commits -- the path a notification takes -- which each runs every step. A server crash
  // takes down one instance and the sessions on it.
  int servers = 1;
  // The server's central store: a new MemoryCentralStore when unset. tests/pg_sim_test.cc runs seeds on a
  // PostgreSQL store (a new database per run). A store that could not be opened (nullptr) fails the run. The
  // checker reads it through CentralStore, plus `central_rejections` for what the interface does not list.
  std::function<std::unique_ptr<CentralStore>()> central_store;
  std::function<std::vector<StoredRejection>(CentralStore&)> central_rejections;
};

struct SimReport {
  bool ok = true;
  std::vector<std::string> failures;  // one readable line each

  uint64_t txns_written = 0;       // local writes that committed (SyncClient::write returned a node_seq)
  uint64_t txns_local_errors = 0;  // local writes refused by write() (validation or injected storage failure)
  uint64_t txns_applied = 0;       // client transactions in the server's log
  uint64_t txns_rejected = 0;      // client transactions the server rejected
  uint64_t conflicts = 0;          // conflict records in the server's log
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;
  uint64_t messages_duplicated = 0;
  uint64_t messages_reordered = 0;
  uint64_t frames_corrupted = 0;
  uint64_t client_crashes = 0;
  uint64_t server_crashes = 0;
  uint64_t app_upgrades = 0;  // devices moved from the previous model version to the current one mid-run
  uint64_t partitions = 0;
  uint64_t connection_resets = 0;
  uint64_t backlogs = 0;             // sessions the transport reported backed up (live batches held)
  uint64_t client_stops = 0;         // SyncClient went to kStopped (the simulated app restarts it)
  uint64_t storage_faults = 0;       // device commits made to fail (disk full)
  uint64_t server_read_faults = 0;   // server store reads made to fail (SyncServer answers retryable errors)
  uint64_t handshake_timeouts = 0;   // sessions the transport closed because no Welcome came
  uint64_t pipelined_pushes = 0;     // pushes sent with another one of the device still in flight
  uint64_t multi_page_requests = 0;  // bootstrap requests for several pages (version 2)
  uint64_t v1_sessions = 0;          // sessions of old devices (Welcome says version 1)
  int64_t sim_time_ms = 0;           // simulated time the run covered
};

SimReport run_simulation(const SimOptions& options);

}  // namespace fieldsync::sim

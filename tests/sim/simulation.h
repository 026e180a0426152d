// The simulator's world (internal to tests/sim): the Simulation class, its nodes and frames, and the helpers
// its parts share. simulator.cc runs it; network.cc, faults.cc, workload.cc and checker.cc hold its parts.
#pragma once

#include "simulator.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "fieldsync/client/sqlite_replica.h"
#include "fieldsync/schema/model.h"
#include "fieldsync/sync/change.h"
#include "fieldsync/sync/client.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/protocol.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/scope.h"
#include "fieldsync/sync/server.h"
#include "fieldsync/sync/tuning.h"
#include "support/memory_store.h"
#include "support/read_fault_store.h"

namespace fieldsync::sim::detail {

using schema::EntityId;
using schema::Role;

// ---- Simulation constants ---------------------------------------------------------------------------------
// Simulated time starts at a fixed, realistic Unix time so HLCs and UUIDv7 ids look like production ones.
constexpr int64_t kEpochMs = 1'750'000'000'000;
constexpr NodeId kServerNode = 1;

// Device clocks: a fixed offset per device plus occasional drift, kept far inside tuning::kMaxClockSkewMs (an
// hour) because the simulator tests convergence, not the skew guard.
constexpr int64_t kMaxClockOffsetMs = 3 * 60 * 1000;
constexpr int64_t kMaxClockDriftMs = 4 * 60 * 1000;
static_assert(kMaxClockDriftMs * 4 < tuning::kMaxClockSkewMs);

// Per frame.
constexpr double kDropP = 0.01;
constexpr double kDuplicateP = 0.01;
constexpr double kReorderP = 0.02;
constexpr double kCorruptP = 0.002;
constexpr int64_t kLatencyMinMs = 2;
constexpr int64_t kLatencyMaxMs = 40;
constexpr int64_t kReorderDelayMaxMs = 3000;

// Per step of the random phase.
constexpr int64_t kStepMinMs = 50;
constexpr int64_t kStepMaxMs = 1000;
constexpr double kWriteP = 0.45;
constexpr double kResetP = 0.004;
constexpr double kClientCrashP = 0.004;
constexpr double kServerCrashP = 0.0015;
constexpr double kOfficePartitionP = 0.002;  // head office and manager are mostly online
constexpr double kClockDriftP = 0.01;
constexpr double kBacklogP = 0.03;            // a session's socket backs up (SyncServer::set_backlogged) ...
constexpr double kDrainP = 0.2;               // ... and one backed-up session drains, per step
constexpr double kHotRecordP = 0.6;           // an edit picks one of the two oldest candidate records
constexpr double kStorageFaultP = 0.01;       // per local write
constexpr double kSyncStorageFaultP = 0.004;  // per message a device receives: applying it fails to commit
// The server's store reads fail (a disk error; with PostgreSQL, a dropped connection): now and then one read,
// and in outages of a few seconds many. Drawn from a generator of their own, so the rest of a seed's run is
// what it was without them until a failure changes what the server answers.
constexpr double kServerReadFaultP = 0.002;  // per store read
constexpr double kReadOutageP = 0.004;       // per step: an outage begins ...
constexpr double kReadOutageFailP = 0.3;     // ... during which each read fails with this probability
constexpr int64_t kReadOutageMaxMs = 15'000;

// Reps are mostly offline: online for a while, then out of coverage for longer.
constexpr int64_t kRepOnlineMinMs = 3'000;
constexpr int64_t kRepOnlineMaxMs = 30'000;
constexpr int64_t kRepOfflineMinMs = 15'000;
constexpr int64_t kRepOfflineMaxMs = 120'000;

// The transport gives up on a handshake after this long (client-core's WebSocket does the same).
constexpr int64_t kHandshakeTimeoutMs = 20'000;
// A session on which the client has neither asked for nor received changes for this long is stuck: a syncing
// client pulls at least every kIdlePullIntervalMs, and every request is re-sent after kRequestTimeoutMs.
constexpr int64_t kNoPullMs = tuning::kIdlePullIntervalMs + 2 * tuning::kRequestTimeoutMs;

// End of the run: rounds of kSettleRoundMs until every client is idle and the network empty.
constexpr int kMaxSettleRounds = 3000;
constexpr int64_t kSettleRoundMs = 100;

constexpr size_t kMaxFailures = 60;

const std::vector<std::string> kTerritories = {"t-north", "t-south", "t-east", "t-west"};

// ---- Small helpers ----------------------------------------------------------------------------------------

template <typename... A>
inline std::string cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

inline uint16_t fid(EntityId e, std::string_view name) {
  const schema::FieldDef* f = schema::entity_ref(e).field(name);
  if (!f) {
    std::fprintf(stderr, "simulator: entity %s has no field %.*s\n",
                 std::string(schema::entity_ref(e).name).c_str(), static_cast<int>(name.size()), name.data());
    std::abort();  // programmer error in the simulator's workload
  }
  return f->id;
}

inline std::string field_name(EntityId e, uint16_t field) {
  const schema::EntityDef* ed = schema::entity(e);
  if (!ed) return cat("field#", field);
  const schema::FieldDef* f = ed->field(field);
  return f ? std::string(f->name) : cat("field#", field);
}

inline std::string entity_name(EntityId e) {
  const schema::EntityDef* ed = schema::entity(e);
  return ed ? std::string(ed->name) : cat("entity#", static_cast<int>(e));
}

inline const Value& getv(const RecordState& r, std::string_view field) {
  return r.get(fid(r.entity, field));
}

inline std::string text_of(const RecordState& r, std::string_view field) {
  const Value& v = getv(r, field);
  return v.kind() == Value::Kind::kText ? v.as_text() : std::string();
}

inline int64_t int_of(const RecordState& r, std::string_view field) {
  const Value& v = getv(r, field);
  return v.kind() == Value::Kind::kInt ? v.as_int() : 0;
}

// A field's value even on a tombstone (RecordState::get hides them), for following scope links.
inline std::string link_of(const RecordState& r, std::string_view field) {
  const FieldState* f = r.field(fid(r.entity, field));
  return f && f->value.kind() == Value::Kind::kText ? f->value.as_text() : std::string();
}

inline Value T(std::string s) {
  return Value::text(std::move(s));
}
inline Value I(int64_t v) {
  return Value::integer(v);
}

// Builds the changes of one local transaction; write() fills in versions, bases and the delete's seen list.
class TxnBuilder {
 public:
  inline TxnBuilder& create(EntityId e, const RecordId& id) {
    Change c;
    c.op = ChangeOp::kCreate;
    c.entity = e;
    c.record = id;
    changes_.push_back(std::move(c));
    return *this;
  }
  inline TxnBuilder& set(EntityId e, const RecordId& id, std::string_view field, Value v) {
    Change c;
    c.op = ChangeOp::kSet;
    c.entity = e;
    c.record = id;
    c.field = fid(e, field);
    c.value = std::move(v);
    changes_.push_back(std::move(c));
    return *this;
  }
  inline TxnBuilder& append(EntityId e, const RecordId& id, std::string_view field, std::string text) {
    Change c;
    c.op = ChangeOp::kAppend;
    c.entity = e;
    c.record = id;
    c.field = fid(e, field);
    c.value = Value::text(std::move(text));
    changes_.push_back(std::move(c));
    return *this;
  }
  inline TxnBuilder& remove(EntityId e, const RecordId& id) {
    Change c;
    c.op = ChangeOp::kDelete;
    c.entity = e;
    c.record = id;
    changes_.push_back(std::move(c));
    return *this;
  }
  std::vector<Change> take() { return std::move(changes_); }

 private:
  std::vector<Change> changes_;
};

class SimAuthenticator final : public Authenticator {
 public:
  void add(const std::string& token, Principal p) { by_token_[token] = std::move(p); }
  Result<Principal> authenticate(const protocol::Hello& hello, int64_t) override {
    auto it = by_token_.find(hello.token);
    if (it == by_token_.end()) return Status(ErrorCode::kAuthFailed, "authentication failed");
    return it->second;
  }

 private:
  std::map<std::string, Principal> by_token_;
};

// ---- Message equality, to prove the codec's round trip is exact -------------------------------------------

inline bool same(const protocol::Hello& a, const protocol::Hello& b) {
  return std::tie(a.protocol_version, a.schema_version, a.node, a.token, a.cursor, a.client_time_ms,
                  a.client_hlc) == std::tie(b.protocol_version, b.schema_version, b.node, b.token, b.cursor,
                                            b.client_time_ms, b.client_hlc);
}
inline bool same(const protocol::Welcome& a, const protocol::Welcome& b) {
  return std::tie(a.protocol_version, a.schema_version, a.user, a.role, a.last_node_seq, a.server_seq,
                  a.server_hlc, a.server_time_ms) == std::tie(b.protocol_version, b.schema_version, b.user,
                                                              b.role, b.last_node_seq, b.server_seq,
                                                              b.server_hlc, b.server_time_ms);
}
inline bool same(const protocol::PushTxns& a, const protocol::PushTxns& b) {
  return a.request_id == b.request_id && a.txns == b.txns;
}
inline bool same(const protocol::TxnResult& a, const protocol::TxnResult& b) {
  return std::tie(a.node_seq, a.outcome, a.server_seq, a.reason, a.message, a.conflicts, a.records,
                  a.absent) ==
         std::tie(b.node_seq, b.outcome, b.server_seq, b.reason, b.message, b.conflicts, b.records, b.absent);
}
inline bool same(const protocol::PushAck& a, const protocol::PushAck& b) {
  if (a.request_id != b.request_id || a.server_hlc != b.server_hlc || a.results.size() != b.results.size())
    return false;
  for (size_t i = 0; i < a.results.size(); ++i)
    if (!same(a.results[i], b.results[i])) return false;
  return true;
}
inline bool same(const protocol::PullRequest& a, const protocol::PullRequest& b) {
  return std::tie(a.request_id, a.cursor, a.max_changes, a.live) ==
         std::tie(b.request_id, b.cursor, b.max_changes, b.live);
}
inline bool same(const protocol::ChangeBatch& a, const protocol::ChangeBatch& b) {
  return std::tie(a.request_id, a.from_cursor, a.to_cursor, a.has_more, a.txns, a.conflicts, a.records,
                  a.purges, a.server_hlc) == std::tie(b.request_id, b.from_cursor, b.to_cursor, b.has_more,
                                                      b.txns, b.conflicts, b.records, b.purges, b.server_hlc);
}
inline bool same(const protocol::BootstrapRequest& a, const protocol::BootstrapRequest& b) {
  return std::tie(a.request_id, a.snapshot_seq, a.page_token, a.page_size, a.max_pages) ==
         std::tie(b.request_id, b.snapshot_seq, b.page_token, b.page_size, b.max_pages);
}
inline bool same(const protocol::BootstrapPage& a_sent, const protocol::BootstrapPage& b_sent) {
  // A page of stored records (ServerConfig::stored_pages) arrives with them decoded.
  const protocol::BootstrapPage a = a_sent.stored.empty() ? a_sent : codec::with_records(a_sent);
  const protocol::BootstrapPage b = b_sent.stored.empty() ? b_sent : codec::with_records(b_sent);
  return std::tie(a.request_id, a.snapshot_seq, a.total_records, a.records_before, a.records,
                  a.next_page_token, a.done,
                  a.conflicts) == std::tie(b.request_id, b.snapshot_seq, b.total_records, b.records_before,
                                           b.records, b.next_page_token, b.done, b.conflicts);
}
inline bool same(const protocol::Error& a, const protocol::Error& b) {
  return std::tie(a.code, a.message, a.retryable, a.request_id, a.resume_node_seq) ==
         std::tie(b.code, b.message, b.retryable, b.request_id, b.resume_node_seq);
}
inline bool same(const protocol::Message& a, const protocol::Message& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&b](const auto& x) {
        using M = std::decay_t<decltype(x)>;
        return same(x, std::get<M>(b));
      },
      a);
}

// ---- Replicas -------------------------------------------------------------------------------------------
// A device's store: in memory (the default), or a real SQLite file (SimOptions::sqlite_replicas) that a
// client crash closes and reopens. The checker reads either through this class: committed state only.
class SimReplica final : public ReplicaStore {
 public:
  inline SimReplica(NodeId node, std::string path) : path_(std::move(path)) {
    if (path_.empty()) {
      memory_ = std::make_unique<MemoryReplicaStore>(node);
    } else {
      options_.synchronous_full = false;  // a simulated crash kills objects, not the machine
      options_.node = node;
      reopen();
    }
  }

  std::unique_ptr<ReplicaTxn> begin() override { return memory_ ? memory_->begin() : sqlite_->begin(); }

  // A crash of the app: the file is closed and opened again (nothing open survives).
  inline void reopen() {
    if (path_.empty()) return;
    sqlite_.reset();
    auto r = client::SqliteReplicaStore::open(path_, options_);
    if (!r) die("open", r.status());
    sqlite_ = std::move(r).value();
  }

  inline void fail_next_commit(Status status) {
    if (memory_) return memory_->fail_next_commit(std::move(status));
    sqlite_->fail_next_commit(std::move(status));
  }
  inline std::map<RecordKey, RecordState> records() {
    if (memory_) return memory_->records();
    return value(sqlite_->records(), "records");
  }
  inline std::vector<ClientTxn> outbox() {
    if (memory_) return memory_->outbox();
    return sqlite_->begin()->outbox_peek(SIZE_MAX);
  }
  inline ReplicaMeta meta() {
    if (memory_) return memory_->meta();
    return sqlite_->begin()->meta();
  }
  inline std::vector<ConflictRecord> conflicts() {
    if (memory_) return memory_->conflicts();
    return value(sqlite_->conflicts(), "conflicts");
  }
  inline std::vector<Rejection> rejections() {
    if (memory_) return memory_->rejections();
    return value(sqlite_->rejections(), "rejections");
  }

 private:
  // A replica the simulator cannot read is a broken store, not a sync outcome: stop loudly.
  [[noreturn]] void die(std::string_view what, const Status& s) {
    std::fprintf(stderr, "sim: replica %s %.*s failed: %s\n", path_.c_str(), static_cast<int>(what.size()),
                 what.data(), s.to_string().c_str());
    std::abort();
  }
  template <typename T>
  inline T value(Result<T> r, std::string_view what) {
    if (!r) die(what, r.status());
    return std::move(r).value();
  }

  std::string path_;
  client::SqliteReplicaStore::Options options_;
  std::unique_ptr<MemoryReplicaStore> memory_;
  std::unique_ptr<client::SqliteReplicaStore> sqlite_;
};

// A temporary directory for the SQLite replicas of one run, removed with it.
class TempDir {
 public:
  inline TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-sim.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("sim: mkdtemp");
      std::abort();
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

// ---- The world --------------------------------------------------------------------------------------------

struct Node {
  int index = 0;
  std::string name;  // user id, also used in reports
  Principal principal;
  ClientConfig config;
  NodeId node = 0;
  std::unique_ptr<SimReplica> store;
  std::unique_ptr<SyncClient> client;
  int64_t clock_offset_ms = 0;
  std::unique_ptr<RecordIdGenerator> ids;
  std::unique_ptr<Backoff> backoff;

  // Connection.
  SessionId session = 0;           // 0: no connection
  bool closing = false;            // the server asked to close once its last frames are delivered
  bool corrupted_session = false;  // a corrupt frame went over this connection (a stop may follow)
  bool lost_frame = false;         // a frame of this connection was dropped (a stuck handshake may follow)
  int64_t connected_at = 0;
  int64_t last_pull_ms = 0;         // last pull or bootstrap request sent, or batch or page delivered
  int64_t watermark_to_server = 0;  // in-order delivery per direction, like the real WebSocket
  int64_t watermark_to_client = 0;
  // Protocol version of the connection's frames, per direction: the server's from the Welcome it sent, the
  // client's from the Welcome it received (1 before: the handshake is the v1 form).
  uint32_t wire_version_to_server = 1;
  uint32_t wire_version_to_client = 1;
  int64_t reconnect_at = -1;
  int64_t restart_at = -1;  // the app restarts a stopped client

  // Connectivity plan: reps alternate between coverage and none.
  bool is_rep = false;
  int64_t partition_until = -1;  // offline while now < partition_until
  int64_t next_partition_at = -1;

  Hlc max_hlc = 0;            // of the current SyncClient object
  Hlc max_persisted_hlc = 0;  // of ReplicaMeta::hlc, over the whole run
  bool clock_failed = false;  // report one clock failure per device

  // The replica's records as last read; reading is a copy, so it is refreshed only after something changed
  // it.
  bool snapshot_dirty = true;
  std::map<RecordKey, RecordState> snapshot;
};

struct Frame {
  SessionId conn = 0;
  int node = 0;
  bool to_server = true;
  bool corrupted = false;
  std::vector<uint8_t> bytes;
  protocol::Message original;
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& options)
      : opt_(options), rng_(options.seed), read_rng_(options.seed ^ 0x5eadfa17ULL) {}

  SimReport run() {
    central_ = opt_.central_store ? opt_.central_store() : std::make_unique<MemoryCentralStore>();
    if (!central_) {
      fail("the server's central store could not be opened");
      finish_report();
      return std::move(report_);
    }
    setup();
    seed_catalogue();
    for (int step = 0; step < opt_.steps && report_.failures.size() < kMaxFailures; ++step) {
      advance_to(now_ + range(kStepMinMs, kStepMaxMs));
      inject_faults();
      if (chance(kWriteP)) act();
      check_clocks();
    }
    settle();
    if (settled_) check_end_state();
    finish_report();
    return std::move(report_);
  }

 private:
  // ---- Randomness and tracing -----------------------------------------------------------------------------
  // Own distributions (not <random>'s) so a seed replays the same on every standard library.
  uint64_t rnd(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rnd(static_cast<uint64_t>(hi - lo + 1)));
  }
  bool chance(double p) { return static_cast<double>(rng_() >> 11) * 0x1.0p-53 < p; }
  template <typename V>
  const auto& pick_one(const V& v) {
    return v[rnd(v.size())];
  }

  template <typename... A>
  void trace(const A&... a) {
    if (!opt_.verbose) return;
    char head[32];
    std::snprintf(head, sizeof head, "[%9.3f] ", static_cast<double>(now_ - start_ms_) / 1000.0);
    std::cout << head << cat(a...) << "\n";
  }

  void fail(std::string line) {
    trace("FAILURE: ", line);
    ++failure_count_;
    if (report_.failures.size() < kMaxFailures) report_.failures.push_back(std::move(line));
  }

  std::string node_name(NodeId node) const {
    if (node == kServerNode) return "server";
    auto it = node_index_.find(node);
    return it == node_index_.end() ? cat("node:", node) : nodes_[it->second]->name;
  }
  std::string vstr(const Version& v) const {
    if (v.is_zero()) return "v0";
    return cat("v(", hlc_physical_ms(v.hlc) - start_ms_, "ms+", hlc_logical(v.hlc), "@", node_name(v.node),
               ")");
  }
  static std::string rec_str(EntityId e, const RecordId& id) {
    return cat(entity_name(e), " ", id.to_string());
  }

  int64_t wall(const Node& n) const { return now_ + n.clock_offset_ms; }

  // ---- Setup ----------------------------------------------------------------------------------------------
  void setup() {
    now_ = kEpochMs + static_cast<int64_t>(rnd(86'400'000));
    start_ms_ = now_;

    std::vector<Principal> principals;
    const std::vector<std::vector<std::string>> rep_territories = {
        {"t-north"}, {"t-north"}, {"t-south"}, {"t-east"}, {"t-south", "t-east"}};
    Principal office;
    office.user = "head-office";
    office.role = Role::kHeadOffice;
    principals.push_back(office);
    if (opt_.reps >= 3) {
      Principal manager;
      manager.user = "manager";
      manager.role = Role::kManager;
      manager.territories = {"t-north", "t-south"};
      manager.team = {"rep1", "rep2", "rep3"};
      principals.push_back(manager);
    }
    for (int i = 0; i < opt_.reps; ++i) {
      Principal rep;
      rep.user = cat("rep", i + 1);
      rep.role = Role::kRep;
      rep.territories = rep_territories[static_cast<size_t>(i) % rep_territories.size()];
      principals.push_back(rep);
    }

    for (int i = 0; i < std::max(1, opt_.servers); ++i) {
      server_stores_.push_back(std::make_unique<testing_support::ReadFaultStore>(
          *central_, [this] { return fail_server_read(); }));
      servers_.push_back(std::make_unique<SyncServer>(*server_stores_.back(), auth_, server_config()));
      server_max_hlc_.push_back(0);
    }
    for (const Principal& p : principals) {
      auto n = std::make_unique<Node>();
      n->index = static_cast<int>(nodes_.size());
      n->name = p.user;
      n->principal = p;
      n->config.user = p.user;
      n->config.token = "token-" + p.user;
      n->config.merge_change = testing_support::merge_with(opt_.fault);
      // Small pages and batches on some devices, so multi-page bootstraps (and their resumption after a drop)
      // and has_more pulls happen with the simulator's few hundred records.
      if (chance(0.5)) n->config.bootstrap_page_size = static_cast<uint32_t>(range(3, 40));
      if (chance(0.5)) n->config.pull_max_changes = static_cast<uint32_t>(range(5, 80));
      // Old devices (protocol version 1: one push in flight, one page per request) beside new ones; small
      // pushes on some new ones, so that several are in flight under drops, duplicates and reconnects.
      if (chance(0.3)) n->config.protocol_version = 1;
      if (chance(0.5)) n->config.push_max_txns = static_cast<uint32_t>(range(1, 4));
      // Apps on the previous model version (issue 21) beside current ones: every third device, chosen without
      // drawing from the generator so other seeds' runs stay as they were. Some are upgraded mid-run
      // (restart_client), pending writes and all.
      if (n->index % 3 == 1) n->config.schema_version = schema::kSchemaVersion - 1;
      auth_.add(n->config.token, p);
      do {
        n->node = rng_();
      } while (n->node <= kServerNode || node_index_.count(n->node));
      node_index_[n->node] = n->index;
      n->store = std::make_unique<SimReplica>(
          n->node, opt_.sqlite_replicas ? replica_dir().file(n->name + ".db") : std::string());
      n->client = std::make_unique<SyncClient>(*n->store, n->config);
      n->clock_offset_ms = range(-kMaxClockOffsetMs, kMaxClockOffsetMs);
      n->ids = std::make_unique<RecordIdGenerator>(rng_());
      n->backoff = std::make_unique<Backoff>(rng_());
      n->is_rep = p.role == Role::kRep;
      if (n->is_rep) n->next_partition_at = now_ + range(1'000, 20'000);
      trace("node ", n->name, " id ", n->node, " clock offset ", n->clock_offset_ms, "ms territories ",
            p.territories.size());
      nodes_.push_back(std::move(n));
    }
    // One rep joins late (a new phone): its first sync is a bootstrap of everything its colleagues did so
    // far, after offline writes of its own.
    if (opt_.reps > 0) {
      Node& late = *nodes_[nodes_.size() - 1 - rnd(static_cast<uint64_t>(opt_.reps))];
      late.partition_until = now_ + range(60'000, 200'000);
      late.next_partition_at = -1;
      trace(late.name, ": joins late, at +", late.partition_until - now_, "ms");
    }
    for (auto& n : nodes_)
      if (!partitioned(*n)) connect(*n);
  }

  // Head office fills the catalogue and a few accounts per territory before the reps start.
  void seed_catalogue() {
    Node& office = *nodes_[0];
    const int products = 6;
    for (int i = 0; i < products; ++i) create_product(office);
    for (const std::string& territory : kTerritories)
      for (int i = 0; i < 2; ++i) create_account(office, territory);
  }

  // ---- Network --------------------------------------------------------------------------------------------
  void connect(Node& n);

  void erase_frames(SessionId s, bool to_server_only);

  // Closes the connection on both ends. `reconnect_delay_ms` < 0: stay disconnected (partition, crash).
  void close_connection(Node& n, std::string_view why, int64_t reconnect_delay_ms);

  void send_frame(Node& n, bool to_server, protocol::Message m);

  // Damage that no codec may accept: the frame cut to a stub, or a root offset pointing outside the frame.
  void corrupt(std::vector<uint8_t>& bytes);

  static const char* state_name(SyncClient::State s);

  static std::string describe(const protocol::Message& m);

  void deliver(Frame& f);

  // Odd seeds run the server as the group-commit driver does: commits only mark a fan-out, which happens
  // at some later pump (the flush), so live batches cover several commits and lag their acks.
  bool defers_fan_out() const { return (opt_.seed & 1) != 0; }
  // Half the runs serve multi-page bootstrap requests a page per step, as SyncService does.
  bool bootstrap_in_steps() const { return (opt_.seed & 2) != 0; }
  ServerConfig server_config() const;

  void pump_server();

  void pump_client(Node& n);

  void on_event(Node& n, const ClientEvent& e);

  // Every client transaction is recorded the first time it is pushed; a re-sent one must be identical (the
  // outbox entry is immutable once written).
  void note_push(Node& n, const protocol::PushTxns& push);

  void note_ack(SessionId s, const protocol::PushAck& ack);

  void advance_to(int64_t t);

  bool frames_to_client(SessionId s) const;

  bool partitioned(const Node& n) const { return n.partition_until >= 0 && now_ < n.partition_until; }

  void process_timers();

  // ---- Faults ---------------------------------------------------------------------------------------------
  void start_partition(Node& n, int64_t duration_ms);

  void restart_client(Node& n, std::string_view why);

  // Takes down one server instance (with several, a random one): its sessions end, the others go on.
  void crash_server();

  void drain(SessionId session);

  void inject_faults();

  // ---- Clock checks ---------------------------------------------------------------------------------------
  // A device's HLC never goes back while its SyncClient lives, and the HLC persisted in ReplicaMeta never
  // goes back at all, so a restarted client resumes at or above everything it persisted. (A timestamp a
  // client only observed, whose commit then failed with disk full, may be forgotten by a crash: nothing was
  // issued from it.)
  void check_client_clock(Node& n);

  // After a restart the clock must be above every version the replica holds: everything it wrote or applied.
  void check_restarted_clock(Node& n);

  void check_server_clock();

  void check_clocks();

  // ---- Workload -------------------------------------------------------------------------------------------
  const std::map<RecordKey, RecordState>& snapshot(Node& n);

  template <typename Pred>
  const RecordState* pick(Node& n, EntityId e, Pred pred) {
    const auto& snap = snapshot(n);
    std::vector<const RecordState*> found;
    for (auto it = snap.lower_bound(RecordKey{e, RecordId{}}); it != snap.end() && it->first.entity == e;
         ++it)
      if (!it->second.deleted && pred(it->second)) found.push_back(&it->second);
    if (found.empty()) return nullptr;
    // Half the time one of the oldest few: colleagues and head office then edit the same records
    // concurrently.
    if (chance(kHotRecordP)) return found[rnd(std::min<size_t>(found.size(), 2))];
    return found[rnd(found.size())];
  }
  const RecordState* pick(Node& n, EntityId e);
  const RecordState* find(Node& n, EntityId e, const std::string& id_text);

  std::string word();
  std::string phone() { return cat("+49 30 ", range(1'000'000, 9'999'999)); }
  int64_t event_slot_ms();

  void write(Node& n, std::vector<Change> changes, const std::string& what);

  void act();

  bool weighted(std::initializer_list<int> weights, int& chosen);

  bool in_territories(const Node& n, const std::string& territory) const;

  bool rep_action(Node& n);

  bool manager_action(Node& n);

  bool office_action(Node& n);

  // -- Accounts and contacts --
  bool create_account(Node& n, const std::string& territory);

  bool edit_account(Node& n);

  bool move_account(Node& n);

  bool create_contact(Node& n);

  bool edit_contact(Node& n);

  bool delete_contact(Node& n);

  // -- Visits --
  bool check_in(Node& n);

  bool append_visit_notes(Node& n);

  bool check_out(Node& n);

  // -- Orders --
  std::vector<const RecordState*> lines_of(Node& n, const RecordId& order);

  void add_line(Node& n, TxnBuilder& b, const RecordId& order);

  bool draft_order(Node& n);

  static bool order_open(const RecordState& order);

  // Mostly lines of orders that look open here; sometimes any line, which the server refuses if the order was
  // approved meanwhile (or already was).
  const RecordState* pick_line(Node& n, bool open_only);

  bool edit_order_line(Node& n);

  bool add_order_line(Node& n);

  bool remove_order_line(Node& n);

  bool set_order_status(Node& n, const RecordState& order, const std::string& status, bool stamp_submitted);

  bool submit_order(Node& n);

  bool withdraw_order(Node& n);

  bool approve_order(Node& n);

  bool fulfill_order(Node& n);

  bool cancel_order(Node& n);

  // Writes a rep should not make: the server refuses the first two (server-owned field, approval needs a
  // manager) and write() itself the last (a value outside the enum).
  bool mistake(Node& n);

  // -- Catalogue (head office) --
  bool create_product(Node& n);

  bool reprice(Node& n);

  bool edit_product(Node& n);

  bool delete_price(Node& n);

  // -- Calendar --
  bool create_event(Node& n);

  const RecordState* my_event(Node& n);

  bool move_event(Node& n);

  bool change_event_status(Node& n);

  // -- Opportunities --
  bool create_opportunity(Node& n);

  // Moves an opportunity along a transition the writer's role allows from the stage it sees. A concurrent
  // move by a colleague can make the same move invalid on the server (a deal won meanwhile cannot go back to
  // proposal).
  bool move_stage(Node& n);

  bool reopen_opportunity(Node& n);

  bool edit_opportunity(Node& n);

  // -- Schema 3: leads, service cases, tasks (current apps only; an older app has none of them) --
  bool schema3_action(Node& n);
  bool create_lead(Node& n);
  // One transaction: a new account, its contact and an opportunity, then the lead's links and status. A
  // colleague's conversion of the same lead meanwhile makes the server reject the second (converted is
  // locked).
  bool convert_lead(Node& n);
  bool open_case(Node& n);
  // A rep takes an unassigned case for themselves; two reps taking the same one offline: the later push is
  // rejected (the rules' "only from unassigned").
  bool take_case(Node& n);
  bool create_task(Node& n);
  bool complete_task(Node& n);

  // ---- End of the run -------------------------------------------------------------------------------------
  bool quiescent() const;

  bool settle_rounds(int max_rounds);

  void settle();

  std::string field_diff(const RecordState& client, const RecordState& server) const;

  void check_end_state();

  // The account whose territory decides the record's scope (nil for catalogue data and calendar events).
  static RecordId account_of(const RecordState& rec, const std::map<RecordKey, RecordState>& records);

  // Every change of an applied transaction either still shows on the server or is accounted for: a conflict
  // record kept the losing value, a later writer saw it and replaced it, or the record was deleted (delete
  // wins).
  void check_txn_survived(const ClientTxn& txn, const std::map<RecordKey, RecordState>& server_records,
                          const std::set<std::tuple<RecordKey, uint16_t, Version>>& losers,
                          const std::set<std::tuple<RecordKey, uint16_t, Version>>& superseded,
                          const std::map<std::tuple<RecordKey, uint16_t, NodeId>, Version>& latest_by_node);

  bool read_chance(double p) { return static_cast<double>(read_rng_() >> 11) * 0x1.0p-53 < p; }
  bool fail_server_read();

  void finish_report();

  TempDir& replica_dir();

  SimOptions opt_;
  std::unique_ptr<TempDir> replica_dir_;  // SQLite replicas; declared before the nodes, so removed after them
  std::mt19937_64 rng_;
  SimReport report_;
  size_t failure_count_ = 0;
  int64_t now_ = 0;
  std::set<SessionId> backlogged_;  // sessions whose socket is backed up (inject_faults)
  int64_t start_ms_ = 0;
  bool faults_on_ = true;
  bool settled_ = false;

  // The server's store: a MemoryCentralStore, or SimOptions::central_store's (never null once setup() ran).
  std::unique_ptr<CentralStore> central_;
  // What each server instance reads and writes through: central_ with injected read failures (the checker
  // reads central_ itself).
  std::vector<std::unique_ptr<testing_support::ReadFaultStore>> server_stores_;
  std::mt19937_64 read_rng_;
  int64_t read_outage_until_ = 0;
  SimAuthenticator auth_;
  std::vector<std::unique_ptr<SyncServer>> servers_;  // SimOptions::servers instances on central_
  std::vector<Hlc> server_max_hlc_;                   // per instance
  bool server_clock_failed_ = false;
  std::map<SessionId, size_t> session_server_;  // the instance each session is connected to
  // The instance `session` is (or was last) connected to.
  SyncServer& server_of(SessionId session) {
    auto it = session_server_.find(session);
    return *servers_[it == session_server_.end() ? 0 : it->second];
  }

  std::vector<std::unique_ptr<Node>> nodes_;
  std::map<NodeId, int> node_index_;
  std::map<SessionId, int> session_owner_;
  SessionId next_session_ = 1;

  std::map<std::pair<int64_t, uint64_t>, Frame> in_flight_;  // (delivery time, send order) -> frame
  uint64_t next_frame_ = 0;

  std::map<std::pair<NodeId, uint64_t>, ClientTxn> pushed_;  // every client txn as first pushed
  std::map<std::pair<NodeId, uint64_t>, uint64_t> acked_;    // applied or duplicate -> server_seq
  std::set<std::string> roundtrip_reported_;
  uint64_t client_conflict_events_ = 0;
};

}  // namespace fieldsync::sim::detail

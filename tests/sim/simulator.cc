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

namespace fieldsync::sim {
namespace {

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
std::string cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

uint16_t fid(EntityId e, std::string_view name) {
  const schema::FieldDef* f = schema::entity_ref(e).field(name);
  if (!f) {
    std::fprintf(stderr, "simulator: entity %s has no field %.*s\n",
                 std::string(schema::entity_ref(e).name).c_str(), static_cast<int>(name.size()), name.data());
    std::abort();  // programmer error in the simulator's workload
  }
  return f->id;
}

std::string field_name(EntityId e, uint16_t field) {
  const schema::EntityDef* ed = schema::entity(e);
  if (!ed) return cat("field#", field);
  const schema::FieldDef* f = ed->field(field);
  return f ? std::string(f->name) : cat("field#", field);
}

std::string entity_name(EntityId e) {
  const schema::EntityDef* ed = schema::entity(e);
  return ed ? std::string(ed->name) : cat("entity#", static_cast<int>(e));
}

const Value& getv(const RecordState& r, std::string_view field) {
  return r.get(fid(r.entity, field));
}

std::string text_of(const RecordState& r, std::string_view field) {
  const Value& v = getv(r, field);
  return v.kind() == Value::Kind::kText ? v.as_text() : std::string();
}

int64_t int_of(const RecordState& r, std::string_view field) {
  const Value& v = getv(r, field);
  return v.kind() == Value::Kind::kInt ? v.as_int() : 0;
}

// A field's value even on a tombstone (RecordState::get hides them), for following scope links.
std::string link_of(const RecordState& r, std::string_view field) {
  const FieldState* f = r.field(fid(r.entity, field));
  return f && f->value.kind() == Value::Kind::kText ? f->value.as_text() : std::string();
}

Value T(std::string s) {
  return Value::text(std::move(s));
}
Value I(int64_t v) {
  return Value::integer(v);
}

// Builds the changes of one local transaction; write() fills in versions, bases and the delete's seen list.
class TxnBuilder {
 public:
  TxnBuilder& create(EntityId e, const RecordId& id) {
    Change c;
    c.op = ChangeOp::kCreate;
    c.entity = e;
    c.record = id;
    changes_.push_back(std::move(c));
    return *this;
  }
  TxnBuilder& set(EntityId e, const RecordId& id, std::string_view field, Value v) {
    Change c;
    c.op = ChangeOp::kSet;
    c.entity = e;
    c.record = id;
    c.field = fid(e, field);
    c.value = std::move(v);
    changes_.push_back(std::move(c));
    return *this;
  }
  TxnBuilder& append(EntityId e, const RecordId& id, std::string_view field, std::string text) {
    Change c;
    c.op = ChangeOp::kAppend;
    c.entity = e;
    c.record = id;
    c.field = fid(e, field);
    c.value = Value::text(std::move(text));
    changes_.push_back(std::move(c));
    return *this;
  }
  TxnBuilder& remove(EntityId e, const RecordId& id) {
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

bool same(const protocol::Hello& a, const protocol::Hello& b) {
  return std::tie(a.protocol_version, a.schema_version, a.node, a.token, a.cursor, a.client_time_ms,
                  a.client_hlc) == std::tie(b.protocol_version, b.schema_version, b.node, b.token, b.cursor,
                                            b.client_time_ms, b.client_hlc);
}
bool same(const protocol::Welcome& a, const protocol::Welcome& b) {
  return std::tie(a.protocol_version, a.schema_version, a.user, a.role, a.last_node_seq, a.server_seq,
                  a.server_hlc, a.server_time_ms) == std::tie(b.protocol_version, b.schema_version, b.user,
                                                              b.role, b.last_node_seq, b.server_seq,
                                                              b.server_hlc, b.server_time_ms);
}
bool same(const protocol::PushTxns& a, const protocol::PushTxns& b) {
  return a.request_id == b.request_id && a.txns == b.txns;
}
bool same(const protocol::TxnResult& a, const protocol::TxnResult& b) {
  return std::tie(a.node_seq, a.outcome, a.server_seq, a.reason, a.message, a.conflicts, a.records,
                  a.absent) ==
         std::tie(b.node_seq, b.outcome, b.server_seq, b.reason, b.message, b.conflicts, b.records, b.absent);
}
bool same(const protocol::PushAck& a, const protocol::PushAck& b) {
  if (a.request_id != b.request_id || a.server_hlc != b.server_hlc || a.results.size() != b.results.size())
    return false;
  for (size_t i = 0; i < a.results.size(); ++i)
    if (!same(a.results[i], b.results[i])) return false;
  return true;
}
bool same(const protocol::PullRequest& a, const protocol::PullRequest& b) {
  return std::tie(a.request_id, a.cursor, a.max_changes, a.live) ==
         std::tie(b.request_id, b.cursor, b.max_changes, b.live);
}
bool same(const protocol::ChangeBatch& a, const protocol::ChangeBatch& b) {
  return std::tie(a.request_id, a.from_cursor, a.to_cursor, a.has_more, a.txns, a.conflicts, a.records,
                  a.purges, a.server_hlc) == std::tie(b.request_id, b.from_cursor, b.to_cursor, b.has_more,
                                                      b.txns, b.conflicts, b.records, b.purges, b.server_hlc);
}
bool same(const protocol::BootstrapRequest& a, const protocol::BootstrapRequest& b) {
  return std::tie(a.request_id, a.snapshot_seq, a.page_token, a.page_size) ==
         std::tie(b.request_id, b.snapshot_seq, b.page_token, b.page_size);
}
bool same(const protocol::BootstrapPage& a, const protocol::BootstrapPage& b) {
  return std::tie(a.request_id, a.snapshot_seq, a.total_records, a.records_before, a.records,
                  a.next_page_token, a.done,
                  a.conflicts) == std::tie(b.request_id, b.snapshot_seq, b.total_records, b.records_before,
                                           b.records, b.next_page_token, b.done, b.conflicts);
}
bool same(const protocol::Error& a, const protocol::Error& b) {
  return std::tie(a.code, a.message, a.retryable, a.request_id, a.resume_node_seq) ==
         std::tie(b.code, b.message, b.retryable, b.request_id, b.resume_node_seq);
}
bool same(const protocol::Message& a, const protocol::Message& b) {
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
  SimReplica(NodeId node, std::string path) : path_(std::move(path)) {
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
  void reopen() {
    if (path_.empty()) return;
    sqlite_.reset();
    auto r = client::SqliteReplicaStore::open(path_, options_);
    if (!r) die("open", r.status());
    sqlite_ = std::move(r).value();
  }

  void fail_next_commit(Status status) {
    if (memory_) return memory_->fail_next_commit(std::move(status));
    sqlite_->fail_next_commit(std::move(status));
  }
  std::map<RecordKey, RecordState> records() {
    if (memory_) return memory_->records();
    return value(sqlite_->records(), "records");
  }
  std::vector<ClientTxn> outbox() {
    if (memory_) return memory_->outbox();
    return sqlite_->begin()->outbox_peek(SIZE_MAX);
  }
  ReplicaMeta meta() {
    if (memory_) return memory_->meta();
    return sqlite_->begin()->meta();
  }
  std::vector<ConflictRecord> conflicts() {
    if (memory_) return memory_->conflicts();
    return value(sqlite_->conflicts(), "conflicts");
  }
  std::vector<Rejection> rejections() {
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
  T value(Result<T> r, std::string_view what) {
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
  TempDir() {
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

    server_store_ =
        std::make_unique<testing_support::ReadFaultStore>(central_, [this] { return fail_server_read(); });
    server_ = std::make_unique<SyncServer>(*server_store_, auth_, server_config());
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
  void connect(Node& n) {
    if (!n.client || n.session != 0) return;
    SessionId s = next_session_++;
    n.session = s;
    n.closing = false;
    n.corrupted_session = false;
    n.lost_frame = false;
    n.connected_at = now_;
    n.last_pull_ms = now_;
    n.reconnect_at = -1;
    n.watermark_to_server = now_;
    n.watermark_to_client = now_;
    session_owner_[s] = n.index;
    trace(n.name, ": connect session ", s);
    server_->on_connect(s, now_);
    pump_server();
    n.client->on_connected(wall(n));
    pump_client(n);
  }

  void erase_frames(SessionId s, bool to_server_only) {
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      if (it->second.conn == s && (!to_server_only || it->second.to_server))
        it = in_flight_.erase(it);
      else
        ++it;
    }
  }

  // Closes the connection on both ends. `reconnect_delay_ms` < 0: stay disconnected (partition, crash).
  void close_connection(Node& n, std::string_view why, int64_t reconnect_delay_ms) {
    if (n.session == 0) return;
    SessionId s = n.session;
    trace(n.name, ": close session ", s, " (", why, ")");
    erase_frames(s, false);
    session_owner_.erase(s);
    n.session = 0;
    n.closing = false;
    server_->on_disconnect(s);
    pump_server();
    if (n.client) {
      n.client->on_disconnected(wall(n));
      pump_client(n);
    }
    if (reconnect_delay_ms >= 0) n.reconnect_at = now_ + reconnect_delay_ms;
  }

  void send_frame(Node& n, bool to_server, protocol::Message m) {
    ++report_.messages_sent;
    if (std::holds_alternative<protocol::PullRequest>(m) ||
        std::holds_alternative<protocol::BootstrapRequest>(m))
      n.last_pull_ms = now_;
    std::vector<uint8_t> bytes = codec::encode(m);
    const bool handshake =
        std::holds_alternative<protocol::Hello>(m) || std::holds_alternative<protocol::Welcome>(m);
    bool reordered = false;
    bool duplicated = false;
    bool corrupted = false;
    if (faults_on_) {
      if (chance(kDropP)) {
        ++report_.messages_dropped;
        n.lost_frame = true;
        trace(n.name, to_server ? " -> server" : " <- server", ": DROP ", protocol::message_name(m));
        return;
      }
      if (chance(kCorruptP)) {
        corrupted = true;
        corrupt(bytes);
        ++report_.frames_corrupted;
      }
      // Duplicates and reordering of the handshake would be a broken transport, not a lossy one.
      if (!handshake && chance(kReorderP)) reordered = true;
      if (!handshake && chance(kDuplicateP)) duplicated = true;
    }
    int64_t& watermark = to_server ? n.watermark_to_server : n.watermark_to_client;
    int64_t at = now_ + range(kLatencyMinMs, kLatencyMaxMs);
    if (reordered) {
      ++report_.messages_reordered;
      at += range(1, kReorderDelayMaxMs);
    } else {
      at = std::max(at, watermark);
      watermark = at;
    }
    if (opt_.verbose)
      trace(n.name, to_server ? " -> server: " : " <- server: ", describe(m), reordered ? " [late]" : "",
            corrupted ? " [CORRUPT]" : "", duplicated ? " [dup]" : "");
    if (duplicated) {
      ++report_.messages_duplicated;
      Frame copy{n.session, n.index, to_server, corrupted, bytes, m};
      in_flight_.emplace(std::make_pair(at + range(1, kReorderDelayMaxMs), next_frame_++), std::move(copy));
    }
    Frame f{n.session, n.index, to_server, corrupted, std::move(bytes), std::move(m)};
    in_flight_.emplace(std::make_pair(at, next_frame_++), std::move(f));
  }

  // Damage that no codec may accept: the frame cut to a stub, or a root offset pointing outside the frame.
  void corrupt(std::vector<uint8_t>& bytes) {
    if (bytes.size() < 8 || chance(0.5)) {
      bytes.resize(static_cast<size_t>(rnd(std::min<size_t>(bytes.size(), 8))));
    } else {
      for (size_t i = 0; i < 4; ++i) bytes[i] = 0xff;
    }
  }

  static const char* state_name(SyncClient::State s) {
    switch (s) {
      case SyncClient::State::kDisconnected:
        return "disconnected";
      case SyncClient::State::kHandshaking:
        return "handshaking";
      case SyncClient::State::kBootstrapping:
        return "bootstrapping";
      case SyncClient::State::kSyncing:
        return "syncing";
      case SyncClient::State::kStopped:
        return "stopped";
    }
    return "?";
  }

  static std::string describe(const protocol::Message& m) {
    return std::visit(
        [](const auto& x) -> std::string {
          using M = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<M, protocol::Hello>) {
            return cat("Hello cursor=", x.cursor);
          } else if constexpr (std::is_same_v<M, protocol::Welcome>) {
            return cat("Welcome last_node_seq=", x.last_node_seq, " head=", x.server_seq);
          } else if constexpr (std::is_same_v<M, protocol::PushTxns>) {
            std::string s = cat("PushTxns req=", x.request_id, " seqs=");
            for (const auto& t : x.txns) s += cat(t.node_seq, ",");
            return s;
          } else if constexpr (std::is_same_v<M, protocol::PushAck>) {
            std::string s = cat("PushAck req=", x.request_id, " ");
            for (const auto& r : x.results)
              s += cat(r.node_seq, ":", static_cast<int>(r.outcome), r.reason != ErrorCode::kOk ? "/" : "",
                       r.reason != ErrorCode::kOk ? to_string(r.reason) : "", " ");
            return s;
          } else if constexpr (std::is_same_v<M, protocol::PullRequest>) {
            return cat("PullRequest req=", x.request_id, " cursor=", x.cursor);
          } else if constexpr (std::is_same_v<M, protocol::ChangeBatch>) {
            return cat("ChangeBatch req=", x.request_id, " (", x.from_cursor, ",", x.to_cursor,
                       "] txns=", x.txns.size(), " records=", x.records.size(), " purges=", x.purges.size(),
                       x.has_more ? " more" : "");
          } else if constexpr (std::is_same_v<M, protocol::BootstrapRequest>) {
            return cat("BootstrapRequest req=", x.request_id, " snapshot=", x.snapshot_seq);
          } else if constexpr (std::is_same_v<M, protocol::BootstrapPage>) {
            return cat("BootstrapPage req=", x.request_id, " snapshot=", x.snapshot_seq,
                       " records=", x.records.size(), x.done ? " done" : "");
          } else {
            return cat("Error ", to_string(x.code), " '", x.message, "'", x.retryable ? " retryable" : "");
          }
        },
        m);
  }

  void deliver(Frame& f) {
    auto owner = session_owner_.find(f.conn);
    if (owner == session_owner_.end()) return;  // closed meanwhile (its frames should be gone already)
    Node& n = *nodes_[static_cast<size_t>(owner->second)];
    if (std::holds_alternative<protocol::ChangeBatch>(f.original) ||
        std::holds_alternative<protocol::BootstrapPage>(f.original))
      n.last_pull_ms = now_;
    Result<protocol::Message> decoded = codec::decode(f.bytes);
    if (f.corrupted && decoded.is_ok())
      fail(cat("codec: decode accepted a corrupted ", protocol::message_name(f.original), " frame of ",
               f.bytes.size(), " bytes"));
    if (decoded.is_ok() && !f.corrupted && !same(*decoded, f.original)) {
      const char* name = protocol::message_name(f.original);
      if (roundtrip_reported_.insert(name).second)
        fail(cat("codec: a ", name, " changed in an encode/decode round trip"));
    }
    if (f.to_server) {
      if (!decoded.is_ok()) {
        trace(n.name, " -> server: bad frame: ", decoded.status().to_string());
        n.corrupted_session = true;
        server_->on_bad_frame(f.conn, decoded.status());
        pump_server();
        return;
      }
      server_->on_message(f.conn, *decoded, now_);
      pump_server();
    } else {
      if (!decoded.is_ok()) {
        trace(n.name, ": bad frame from server: ", decoded.status().to_string());
        n.corrupted_session = true;
        close_connection(n, "undecodable frame", range(100, 2000));
        return;
      }
      if (!n.client) return;
      const bool storage_fault = faults_on_ && chance(kSyncStorageFaultP);
      if (storage_fault) {
        ++report_.storage_faults;
        trace(n.name, ": disk full while applying ", protocol::message_name(*decoded));
        n.store->fail_next_commit(Status(ErrorCode::kStorageFull, "injected: disk full", true));
      }
      n.client->on_message(*decoded, wall(n));
      if (storage_fault) (void)n.store->begin()->commit();  // spends the failure if nothing committed
      n.snapshot_dirty = true;
      pump_client(n);
    }
  }

  // Odd seeds run the server as the group-commit driver does: commits only mark a fan-out, which happens
  // at some later pump (the flush), so live batches cover several commits and lag their acks.
  bool defers_fan_out() const { return (opt_.seed & 1) != 0; }
  ServerConfig server_config() const {
    ServerConfig c;
    c.server_node = kServerNode;
    c.defer_fan_out = defers_fan_out();
    c.merge_change = testing_support::merge_with(opt_.fault);
    return c;
  }

  void pump_server() {
    if (!server_) return;
    check_server_clock();
    if (defers_fan_out() && chance(0.5)) server_->fan_out(now_);
    for (auto& out : server_->take_outgoing()) {
      if (auto* ack = std::get_if<protocol::PushAck>(&out.message)) note_ack(out.session, *ack);
      auto owner = session_owner_.find(out.session);
      if (owner == session_owner_.end()) continue;  // session already gone
      Node& n = *nodes_[static_cast<size_t>(owner->second)];
      send_frame(n, false, std::move(out.message));
    }
    for (SessionId s : server_->take_closing()) {
      auto owner = session_owner_.find(s);
      if (owner == session_owner_.end()) continue;
      Node& n = *nodes_[static_cast<size_t>(owner->second)];
      if (n.session != s || n.closing) continue;
      trace(n.name, ": server closes session ", s);
      n.closing = true;
      erase_frames(s, true);  // the server reads nothing more from it
    }
  }

  void pump_client(Node& n) {
    if (!n.client) return;
    for (auto& m : n.client->take_outgoing()) {
      if (auto* push = std::get_if<protocol::PushTxns>(&m)) note_push(n, *push);
      if (n.session == 0 || n.closing) continue;  // nowhere to send it: lost with the connection
      send_frame(n, true, std::move(m));
    }
    for (auto& e : n.client->take_events()) on_event(n, e);
    check_client_clock(n);
    switch (n.client->state()) {
      case SyncClient::State::kSyncing:
        n.backoff->reset();
        break;
      case SyncClient::State::kDisconnected:
        if (n.session != 0) close_connection(n, "client dropped the session", n.backoff->next_delay_ms());
        break;
      case SyncClient::State::kStopped:
        if (n.restart_at < 0) {
          ++report_.client_stops;
          const Status& why = n.client->stop_reason();
          trace(n.name, ": client STOPPED: ", why.to_string());
          if (!n.corrupted_session)
            fail(cat("client ", n.name, " stopped without a corrupt frame to explain it: ", why.to_string()));
          n.restart_at = now_ + range(1'000, 10'000);
          close_connection(n, "client stopped", -1);
        }
        break;
      default:
        break;
    }
  }

  void on_event(Node& n, const ClientEvent& e) {
    switch (e.kind) {
      case ClientEvent::Kind::kMustErase:
        fail(cat("client ", n.name, " was told to erase its replica: ", e.status.to_string()));
        break;
      case ClientEvent::Kind::kError:
        trace(n.name, ": event error ", e.status.to_string());
        break;
      case ClientEvent::Kind::kRejected:
        if (e.rejection)
          trace(n.name, ": event rejected #", e.rejection->node_seq, " ", to_string(e.rejection->reason), " ",
                e.rejection->message);
        break;
      case ClientEvent::Kind::kConflict:
        ++client_conflict_events_;
        break;
      default:
        break;
    }
  }

  // Every client transaction is recorded the first time it is pushed; a re-sent one must be identical (the
  // outbox entry is immutable once written).
  void note_push(Node& n, const protocol::PushTxns& push) {
    for (const ClientTxn& t : push.txns) {
      if (t.node != n.node) fail(cat("client ", n.name, " pushed txn #", t.node_seq, " with node ", t.node));
      auto [it, inserted] = pushed_.emplace(std::make_pair(t.node, t.node_seq), t);
      if (!inserted && !(it->second == t))
        fail(cat("client ", n.name, " re-sent txn #", t.node_seq, " with different content"));
    }
  }

  void note_ack(SessionId s, const protocol::PushAck& ack) {
    auto owner = session_owner_.find(s);
    if (owner == session_owner_.end()) return;
    const Node& n = *nodes_[static_cast<size_t>(owner->second)];
    for (const auto& r : ack.results) {
      if (r.outcome == protocol::TxnOutcome::kApplied || r.outcome == protocol::TxnOutcome::kDuplicate)
        acked_[{n.node, r.node_seq}] = r.server_seq;
    }
  }

  void advance_to(int64_t t) {
    while (!in_flight_.empty() && in_flight_.begin()->first.first <= t) {
      auto node = in_flight_.extract(in_flight_.begin());
      now_ = std::max(now_, node.key().first);
      deliver(node.mapped());
    }
    now_ = std::max(now_, t);
    process_timers();
    for (auto& n : nodes_) {
      if (!n->client) continue;
      n->client->on_tick(wall(*n));
      pump_client(*n);
    }
  }

  bool frames_to_client(SessionId s) const {
    for (const auto& [key, f] : in_flight_)
      if (f.conn == s && !f.to_server) return true;
    return false;
  }

  bool partitioned(const Node& n) const { return n.partition_until >= 0 && now_ < n.partition_until; }

  void process_timers() {
    for (auto& np : nodes_) {
      Node& n = *np;
      if (n.restart_at >= 0 && now_ >= n.restart_at) {
        n.restart_at = -1;
        restart_client(n, "app restart after stop");
      }
      if (n.partition_until >= 0 && now_ >= n.partition_until) {
        trace(n.name, ": back in coverage");
        n.partition_until = -1;
        n.reconnect_at = now_;
        if (n.is_rep && faults_on_) n.next_partition_at = now_ + range(kRepOnlineMinMs, kRepOnlineMaxMs);
      }
      if (faults_on_ && n.next_partition_at >= 0 && now_ >= n.next_partition_at && !partitioned(n)) {
        n.next_partition_at = -1;
        start_partition(n, range(kRepOfflineMinMs, kRepOfflineMaxMs));
      }
      if (n.session != 0 && n.closing && !frames_to_client(n.session))
        close_connection(n, "closed by server", n.backoff->next_delay_ms());
      if (n.session != 0 && n.client && n.client->state() == SyncClient::State::kHandshaking &&
          now_ - n.connected_at > kHandshakeTimeoutMs) {
        ++report_.handshake_timeouts;
        if (!n.lost_frame && !n.corrupted_session)
          fail(cat("client ", n.name, " stuck in the handshake for ", kHandshakeTimeoutMs,
                   "ms although no frame of the session was lost (it has no handshake timer)"));
        close_connection(n, "handshake timeout", range(100, 2000));
      }
      if (n.session != 0 && !n.closing && n.client && now_ - n.last_pull_ms > kNoPullMs &&
          n.client->state() != SyncClient::State::kHandshaking) {
        fail(cat("client ", n.name, " in state ", state_name(n.client->state()),
                 " has neither asked for nor received changes for ", now_ - n.last_pull_ms,
                 "ms on an open session"));
        close_connection(n, "stuck session", range(100, 2000));
      }
      if (n.session == 0 && n.reconnect_at >= 0 && now_ >= n.reconnect_at && !partitioned(n) && n.client &&
          n.client->state() != SyncClient::State::kStopped)
        connect(n);
    }
  }

  // ---- Faults ---------------------------------------------------------------------------------------------
  void start_partition(Node& n, int64_t duration_ms) {
    ++report_.partitions;
    n.partition_until = now_ + duration_ms;
    trace(n.name, ": out of coverage for ", duration_ms, "ms");
    close_connection(n, "partition", -1);
  }

  void restart_client(Node& n, std::string_view why) {
    trace(n.name, ": restart client (", why, ")");
    if (n.session != 0) {
      SessionId s = n.session;
      erase_frames(s, false);
      session_owner_.erase(s);
      n.session = 0;
      n.closing = false;
      server_->on_disconnect(s);
      pump_server();
    }
    n.client.reset();
    n.store->reopen();
    n.client = std::make_unique<SyncClient>(*n.store, n.config);
    n.snapshot_dirty = true;
    check_restarted_clock(n);
    if (!partitioned(n)) n.reconnect_at = now_ + range(200, 3'000);
  }

  void crash_server() {
    ++report_.server_crashes;
    trace("SERVER CRASH");
    in_flight_.clear();
    session_owner_.clear();
    backlogged_.clear();
    server_.reset();
    server_ = std::make_unique<SyncServer>(*server_store_, auth_, server_config());
    for (auto& np : nodes_) {
      Node& n = *np;
      if (n.session == 0) continue;
      n.session = 0;
      n.closing = false;
      if (n.client) {
        n.client->on_disconnected(wall(n));
        pump_client(n);
      }
      if (!partitioned(n)) n.reconnect_at = now_ + range(500, 5'000);
    }
    check_server_clock();
  }

  void drain(SessionId session) {
    backlogged_.erase(session);
    trace("session ", session, " drained");
    server_->set_backlogged(session, false);  // a session already gone is ignored
    pump_server();
  }

  void inject_faults() {
    Node& any = *nodes_[rnd(nodes_.size())];
    if (chance(kResetP) && any.session != 0) {
      ++report_.connection_resets;
      close_connection(any, "connection reset", any.backoff->next_delay_ms());
    }
    Node& victim = *nodes_[rnd(nodes_.size())];
    if (chance(kClientCrashP) && victim.client) {
      ++report_.client_crashes;
      restart_client(victim, "crash");
    }
    if (chance(kServerCrashP)) crash_server();
    Node& office = *nodes_[rnd(nodes_.size())];
    if (!office.is_rep && !partitioned(office) && chance(kOfficePartitionP))
      start_partition(office, range(2'000, 20'000));
    // The transport reports a write queue backed up and later drained; live batches wait meanwhile.
    Node& slow = *nodes_[rnd(nodes_.size())];
    if (chance(kBacklogP) && slow.session != 0 && backlogged_.insert(slow.session).second) {
      ++report_.backlogs;
      trace(slow.name, ": socket backed up (session ", slow.session, ")");
      server_->set_backlogged(slow.session, true);
    }
    if (!backlogged_.empty() && chance(kDrainP))
      drain(*std::next(backlogged_.begin(), rnd(backlogged_.size())));
    if (now_ >= read_outage_until_ && read_chance(kReadOutageP)) {
      read_outage_until_ = now_ + 1'000 + static_cast<int64_t>(read_rng_() % kReadOutageMaxMs);
      trace("server store reads failing until +", read_outage_until_ - now_, "ms");
    }
    // The real server polls once a second (commits of other writers, fan-outs a failed read stopped).
    if (server_) {
      server_->poll_external_commits(now_);
      pump_server();
    }
    if (chance(kClockDriftP)) {
      Node& d = *nodes_[rnd(nodes_.size())];
      d.clock_offset_ms =
          std::clamp<int64_t>(d.clock_offset_ms + range(-500, 500), -kMaxClockDriftMs, kMaxClockDriftMs);
    }
  }

  // ---- Clock checks ---------------------------------------------------------------------------------------
  // A device's HLC never goes back while its SyncClient lives, and the HLC persisted in ReplicaMeta never
  // goes back at all, so a restarted client resumes at or above everything it persisted. (A timestamp a
  // client only observed, whose commit then failed with disk full, may be forgotten by a crash: nothing was
  // issued from it.)
  void check_client_clock(Node& n) {
    if (!n.client || n.clock_failed) return;
    Hlc h = n.client->hlc();
    Hlc persisted = n.store->meta().hlc;
    if (h < n.max_hlc) {
      n.clock_failed = true;
      fail(cat("clock: client ", n.name, " hlc went back from ", n.max_hlc, " to ", h, " (",
               hlc_physical_ms(n.max_hlc) - hlc_physical_ms(h), "ms)"));
    } else if (persisted < n.max_persisted_hlc) {
      n.clock_failed = true;
      fail(cat("clock: client ", n.name, " persisted hlc went back from ", n.max_persisted_hlc, " to ",
               persisted, " (", hlc_physical_ms(n.max_persisted_hlc) - hlc_physical_ms(persisted), "ms)"));
    }
    n.max_hlc = std::max(n.max_hlc, h);
    n.max_persisted_hlc = std::max(n.max_persisted_hlc, persisted);
  }

  // After a restart the clock must be above every version the replica holds: everything it wrote or applied.
  void check_restarted_clock(Node& n) {
    n.max_hlc = 0;  // a new SyncClient: its in-memory clock starts from the persisted one
    if (!n.client || n.clock_failed) return;
    Hlc h = n.client->hlc();
    Version top;
    for (const auto& [key, rec] : n.store->records()) {
      top = std::max(top, rec.created);
      for (const FieldState& f : rec.fields) top = std::max(top, f.version);
    }
    for (const ClientTxn& t : n.store->outbox())
      for (const Change& c : t.changes) top = std::max(top, c.version);
    if (h < n.max_persisted_hlc || h < top.hlc) {
      n.clock_failed = true;
      fail(cat("clock: client ", n.name, " restarted at hlc ", h, " below its persisted hlc ",
               n.max_persisted_hlc, " or the newest version in its replica ", top.hlc));
    }
    check_client_clock(n);
  }

  void check_server_clock() {
    if (!server_) return;
    Hlc h = server_->hlc();
    // A server that has not issued or received a timestamp yet (just restarted) reports 0; what matters is
    // that nothing it issues goes back.
    if (h != 0 && h < server_max_hlc_ && !server_clock_failed_) {
      server_clock_failed_ = true;
      fail(cat("clock: server hlc went back from ", server_max_hlc_, " to ", h, " (",
               hlc_physical_ms(server_max_hlc_) - hlc_physical_ms(h), "ms)"));
    }
    server_max_hlc_ = std::max(server_max_hlc_, h);
  }

  void check_clocks() {
    for (auto& n : nodes_) check_client_clock(*n);
    check_server_clock();
  }

  // ---- Workload -------------------------------------------------------------------------------------------
  const std::map<RecordKey, RecordState>& snapshot(Node& n) {
    if (n.snapshot_dirty) {
      n.snapshot = n.store->records();
      n.snapshot_dirty = false;
    }
    return n.snapshot;
  }

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
  const RecordState* pick(Node& n, EntityId e) {
    return pick(n, e, [](const RecordState&) { return true; });
  }
  const RecordState* find(Node& n, EntityId e, const std::string& id_text) {
    std::optional<RecordId> id = RecordId::parse(id_text);
    if (!id) return nullptr;
    const auto& snap = snapshot(n);
    auto it = snap.find(RecordKey{e, *id});
    return it == snap.end() || it->second.deleted ? nullptr : &it->second;
  }

  std::string word() {
    static const char* const kWords[] = {"alpine", "harbor",  "cedar",  "maple", "summit", "delta",
                                         "orchid", "granite", "willow", "coral", "ember",  "falcon"};
    return kWords[rnd(std::size(kWords))];
  }
  std::string phone() { return cat("+49 30 ", range(1'000'000, 9'999'999)); }
  int64_t event_slot_ms() {
    // Two working days of half-hour slots from the first morning: small enough that events of one owner
    // overlap.
    int64_t day0 = (start_ms_ / 86'400'000 + 1) * 86'400'000 + 8 * 3'600'000;
    return day0 + range(0, 1) * 86'400'000 + range(0, 15) * 1'800'000;
  }

  void write(Node& n, std::vector<Change> changes, const std::string& what) {
    if (changes.empty() || !n.client) return;
    bool injected = false;
    ReplicaMeta meta_before;
    size_t outbox_before = 0;
    if (faults_on_ && chance(kStorageFaultP)) {
      ++report_.storage_faults;
      injected = true;
      meta_before = n.store->meta();
      outbox_before = n.store->outbox().size();
      n.store->fail_next_commit(Status(ErrorCode::kStorageFull, "injected: disk full", true));
    }
    Result<uint64_t> r = n.client->write(std::move(changes), wall(n));
    n.snapshot_dirty = true;
    if (injected) {
      // If write() refused before committing, the armed failure is still pending: spend it on an empty commit
      // so it cannot hit a sync transaction (that is a different test).
      (void)n.store->begin()->commit();
      if (r.is_ok()) {
        fail(cat("client ", n.name, ": write() returned #", *r, " although its commit failed (", what, ")"));
      } else {
        if (!(n.store->meta() == meta_before) || n.store->outbox().size() != outbox_before)
          fail(
              cat("client ", n.name, ": a failed write() changed the replica's meta or outbox (", what, ")"));
      }
    }
    if (r.is_ok()) {
      ++report_.txns_written;
      trace(n.name, ": write #", *r, " ", what);
    } else {
      ++report_.txns_local_errors;
      trace(n.name, ": write refused: ", r.status().to_string(), " (", what, ")");
    }
    pump_client(n);
    pump_server();
  }

  void act() {
    // Reps write most; head office approves and edits; the manager approves now and then.
    std::vector<int> weights;
    for (auto& n : nodes_)
      weights.push_back(n->is_rep ? 4 : (n->principal.role == Role::kHeadOffice ? 3 : 2));
    int total = 0;
    for (int w : weights) total += w;
    int r = static_cast<int>(rnd(static_cast<uint64_t>(total)));
    size_t i = 0;
    while (r >= weights[i]) r -= weights[i++];
    Node& n = *nodes_[i];
    if (!n.client) return;
    for (int attempt = 0; attempt < 4; ++attempt) {
      bool done = false;
      switch (n.principal.role) {
        case Role::kRep:
          done = rep_action(n);
          break;
        case Role::kManager:
          done = manager_action(n);
          break;
        case Role::kHeadOffice:
          done = office_action(n);
          break;
      }
      if (done) return;
    }
  }

  bool weighted(std::initializer_list<int> weights, int& chosen) {
    int total = 0;
    for (int w : weights) total += w;
    int r = static_cast<int>(rnd(static_cast<uint64_t>(total)));
    chosen = 0;
    for (int w : weights) {
      if (r < w) return true;
      r -= w;
      ++chosen;
    }
    return false;
  }

  bool in_territories(const Node& n, const std::string& territory) const {
    return std::find(n.principal.territories.begin(), n.principal.territories.end(), territory) !=
           n.principal.territories.end();
  }

  bool rep_action(Node& n) {
    int op = 0;
    weighted({4, 14, 5, 6, 2, 5, 5, 4, 5, 6, 3, 3, 4, 2, 5, 5, 3, 3, 6, 3, 2}, op);
    switch (op) {
      case 0:
        return create_account(n, pick_one(n.principal.territories));
      case 1:
        return edit_account(n);
      case 2:
        return create_contact(n);
      case 3:
        return edit_contact(n);
      case 4:
        return delete_contact(n);
      case 5:
        return check_in(n);
      case 6:
        return append_visit_notes(n);
      case 7:
        return check_out(n);
      case 8:
        return draft_order(n);
      case 9:
        return edit_order_line(n);
      case 10:
        return add_order_line(n);
      case 11:
        return remove_order_line(n);
      case 12:
        return submit_order(n);
      case 13:
        return withdraw_order(n);
      case 14:
        return create_event(n);
      case 15:
        return move_event(n);
      case 16:
        return change_event_status(n);
      case 17:
        return create_opportunity(n);
      case 18:
        return move_stage(n);
      case 19:
        return edit_opportunity(n);
      default:
        return mistake(n);
    }
  }

  bool manager_action(Node& n) {
    int op = 0;
    weighted({8, 4, 2, 2, 2, 2}, op);
    switch (op) {
      case 0:
        return approve_order(n);
      case 1:
        return edit_account(n);
      case 2:
        return reopen_opportunity(n);
      case 3:
        return create_event(n);
      case 4:
        return move_event(n);
      default:
        return move_stage(n);
    }
  }

  bool office_action(Node& n) {
    int op = 0;
    weighted({10, 2, 3, 6, 3, 1, 1, opt_.scope_moves ? 1 : 0, 2, 1, 2}, op);
    switch (op) {
      case 0:
        return approve_order(n);
      case 1:
        return fulfill_order(n);
      case 2:
        return cancel_order(n);
      case 3:
        return edit_account(n);
      case 4:
        return reprice(n);
      case 5:
        return edit_product(n);
      case 6:
        return create_product(n);
      case 7:
        return move_account(n);
      case 8:
        return reopen_opportunity(n);
      case 9:
        return delete_price(n);
      default:
        return create_account(n, pick_one(kTerritories));
    }
  }

  // -- Accounts and contacts --
  bool create_account(Node& n, const std::string& territory) {
    RecordId id = n.ids->next(wall(n));
    const EntityId e = EntityId::kAccount;
    TxnBuilder b;
    b.create(e, id)
        .set(e, id, "name", T(cat(word(), " ", word(), " GmbH")))
        .set(e, id, "territory_id", T(territory))
        .set(e, id, "created_by", T(n.name));
    if (chance(0.7)) b.set(e, id, "city", T(word()));
    if (chance(0.7)) b.set(e, id, "phone", T(phone()));
    if (chance(0.5)) b.set(e, id, "segment", T(std::string(1, static_cast<char>('a' + rnd(3)))));
    write(n, b.take(), cat("create account ", id.to_string(), " in ", territory));
    return true;
  }

  bool edit_account(Node& n) {
    const RecordState* a = pick(n, EntityId::kAccount);
    if (!a) return false;
    const EntityId e = EntityId::kAccount;
    TxnBuilder b;
    std::string what;
    int op = 0;
    weighted({5, 5, 1, 1, 3, n.principal.role == Role::kHeadOffice ? 3 : 0}, op);
    switch (op) {
      case 0:
        b.set(e, a->id, "name", T(cat(word(), " ", word(), " AG")));
        what = "name";
        break;
      case 1:
        b.set(e, a->id, "phone", T(phone()));
        what = "phone";
        break;
      case 2:
        b.set(e, a->id, "segment", T(std::string(1, static_cast<char>('a' + rnd(3)))));
        what = "segment";
        break;
      case 3:
        b.set(e, a->id, "city", T(word()));
        what = "city";
        break;
      case 4:
        b.append(e, a->id, "notes", cat(n.name, ": ", word()));
        what = "notes+";
        break;
      default:
        b.set(e, a->id, "credit_limit_cents", I(range(1, 500) * 10'000));
        what = "credit limit";
        break;
    }
    write(n, b.take(), cat("edit account ", a->id.to_string(), " ", what));
    return true;
  }

  bool move_account(Node& n) {
    const RecordState* a = pick(n, EntityId::kAccount);
    if (!a) return false;
    std::string to = pick_one(kTerritories);
    if (to == text_of(*a, "territory_id")) return false;
    TxnBuilder b;
    b.set(EntityId::kAccount, a->id, "territory_id", T(to));
    write(n, b.take(), cat("move account ", a->id.to_string(), " to ", to));
    return true;
  }

  bool create_contact(Node& n) {
    const RecordState* a = pick(n, EntityId::kAccount);
    if (!a) return false;
    const EntityId e = EntityId::kContact;
    RecordId id = n.ids->next(wall(n));
    TxnBuilder b;
    b.create(e, id).set(e, id, "account_id", T(a->id.to_string())).set(e, id, "name", T(cat("Dr. ", word())));
    if (chance(0.5)) b.set(e, id, "title", T("buyer"));
    if (chance(0.5)) b.set(e, id, "email", T(cat(word(), "@example.com")));
    if (chance(0.3)) b.set(e, id, "is_primary", Value::boolean(true));
    write(n, b.take(), cat("create contact ", id.to_string(), " of account ", a->id.to_string()));
    return true;
  }

  bool edit_contact(Node& n) {
    const RecordState* c = pick(n, EntityId::kContact);
    if (!c) return false;
    const EntityId e = EntityId::kContact;
    TxnBuilder b;
    switch (rnd(4)) {
      case 0:
        b.set(e, c->id, "name", T(cat("Ms. ", word())));
        break;
      case 1:
        b.set(e, c->id, "title", T(pick_one(std::vector<std::string>{"buyer", "owner", "clerk"})));
        break;
      case 2:
        b.set(e, c->id, "phone", T(phone()));
        break;
      default:
        b.set(e, c->id, "is_primary", Value::boolean(chance(0.5)));
        break;
    }
    write(n, b.take(), cat("edit contact ", c->id.to_string()));
    return true;
  }

  bool delete_contact(Node& n) {
    const RecordState* c = pick(n, EntityId::kContact);
    if (!c) return false;
    TxnBuilder b;
    b.remove(EntityId::kContact, c->id);
    write(n, b.take(), cat("delete contact ", c->id.to_string()));
    return true;
  }

  // -- Visits --
  bool check_in(Node& n) {
    const RecordState* a = pick(n, EntityId::kAccount);
    if (!a) return false;
    const EntityId e = EntityId::kVisit;
    RecordId id = n.ids->next(wall(n));
    TxnBuilder b;
    b.create(e, id)
        .set(e, id, "account_id", T(a->id.to_string()))
        .set(e, id, "rep_id", T(n.name))
        .set(e, id, "check_in_at", I(wall(n)));
    if (chance(0.8)) {
      b.set(e, id, "latitude", Value::real(52.0 + static_cast<double>(rnd(1000)) / 1000.0));
      b.set(e, id, "longitude", Value::real(13.0 + static_cast<double>(rnd(1000)) / 1000.0));
    }
    const std::string& me = n.name;
    if (const RecordState* ev =
            chance(0.3) ? pick(n, EntityId::kCalendarEvent,
                               [&me](const RecordState& r) { return text_of(r, "owner_id") == me; })
                        : nullptr)
      b.set(e, id, "calendar_event_id", T(ev->id.to_string()));
    write(n, b.take(), cat("check in visit ", id.to_string(), " at account ", a->id.to_string()));
    return true;
  }

  bool append_visit_notes(Node& n) {
    const RecordState* v = pick(n, EntityId::kVisit);
    if (!v) return false;
    TxnBuilder b;
    b.append(EntityId::kVisit, v->id, "notes", cat(n.name, ": ", word(), " ", word()));
    write(n, b.take(), cat("visit notes+ ", v->id.to_string()));
    return true;
  }

  bool check_out(Node& n) {
    const std::string& me = n.name;
    const RecordState* v = pick(n, EntityId::kVisit, [&me](const RecordState& r) {
      return text_of(r, "rep_id") == me && getv(r, "check_out_at").is_null();
    });
    if (!v) return false;
    static const std::vector<std::string> kOutcomes = {"order_taken", "follow_up", "no_interest",
                                                       "not_available", "other"};
    TxnBuilder b;
    b.set(EntityId::kVisit, v->id, "check_out_at", I(wall(n)))
        .set(EntityId::kVisit, v->id, "outcome", T(pick_one(kOutcomes)));
    write(n, b.take(), cat("check out visit ", v->id.to_string()));
    return true;
  }

  // -- Orders --
  std::vector<const RecordState*> lines_of(Node& n, const RecordId& order) {
    std::vector<const RecordState*> lines;
    const std::string order_text = order.to_string();
    const auto& snap = snapshot(n);
    for (auto it = snap.lower_bound(RecordKey{EntityId::kOrderLine, RecordId{}});
         it != snap.end() && it->first.entity == EntityId::kOrderLine; ++it)
      if (!it->second.deleted && text_of(it->second, "order_id") == order_text) lines.push_back(&it->second);
    return lines;
  }

  void add_line(Node& n, TxnBuilder& b, const RecordId& order) {
    const RecordState* product = pick(n, EntityId::kProduct, [](const RecordState& r) {
      const Value& v = getv(r, "active");
      return v.kind() == Value::Kind::kBool && v.as_bool();
    });
    const EntityId e = EntityId::kOrderLine;
    RecordId id = n.ids->next(wall(n));
    int64_t price = 1'000;
    std::string product_text = product ? product->id.to_string() : std::string();
    if (product) {
      if (const RecordState* entry = pick(
              n, EntityId::kPriceListEntry,
              [&product_text](const RecordState& r) { return text_of(r, "product_id") == product_text; }))
        price = int_of(*entry, "unit_price_cents");
    }
    b.create(e, id)
        .set(e, id, "order_id", T(order.to_string()))
        .set(e, id, "product_id", T(product_text))
        .set(e, id, "quantity", I(range(1, 20)))
        .set(e, id, "unit_price_cents", I(price));
    if (chance(0.3)) b.set(e, id, "discount_bp", I(range(1, 20) * 50));
  }

  bool draft_order(Node& n) {
    const RecordState* a = pick(n, EntityId::kAccount);
    if (!a || !pick(n, EntityId::kProduct)) return false;
    const EntityId e = EntityId::kOrder;
    RecordId id = n.ids->next(wall(n));
    TxnBuilder b;
    b.create(e, id)
        .set(e, id, "account_id", T(a->id.to_string()))
        .set(e, id, "rep_id", T(n.name))
        .set(e, id, "status", T("draft"))
        .set(e, id, "currency", T("EUR"));
    if (chance(0.3)) b.append(e, id, "notes", cat("deliver to ", word()));
    int lines = static_cast<int>(range(1, 5));
    for (int i = 0; i < lines; ++i) add_line(n, b, id);
    write(n, b.take(),
          cat("draft order ", id.to_string(), " with ", lines, " lines for ", a->id.to_string()));
    return true;
  }

  static bool order_open(const RecordState& order) {
    std::string s = text_of(order, "status");
    return s == "draft" || s == "submitted";
  }

  // Mostly lines of orders that look open here; sometimes any line, which the server refuses if the order was
  // approved meanwhile (or already was).
  const RecordState* pick_line(Node& n, bool open_only) {
    return pick(n, EntityId::kOrderLine, [this, &n, open_only](const RecordState& line) {
      const RecordState* order = find(n, EntityId::kOrder, text_of(line, "order_id"));
      return order && (!open_only || order_open(*order));
    });
  }

  bool edit_order_line(Node& n) {
    const RecordState* line = pick_line(n, !chance(0.15));
    if (!line) return false;
    const EntityId e = EntityId::kOrderLine;
    TxnBuilder b;
    switch (rnd(3)) {
      case 0:
        b.set(e, line->id, "quantity", I(range(1, 50)));
        break;
      case 1:
        b.set(e, line->id, "discount_bp", I(range(0, 20) * 50));
        break;
      default:
        b.set(e, line->id, "note", T(cat("pack ", word())));
        break;
    }
    write(n, b.take(), cat("edit order line ", line->id.to_string()));
    return true;
  }

  bool add_order_line(Node& n) {
    const RecordState* order = pick(n, EntityId::kOrder, order_open);
    if (!order) return false;
    TxnBuilder b;
    add_line(n, b, order->id);
    write(n, b.take(), cat("add line to order ", order->id.to_string()));
    return true;
  }

  bool remove_order_line(Node& n) {
    const RecordState* line = pick_line(n, !chance(0.15));
    if (!line) return false;
    TxnBuilder b;
    b.remove(EntityId::kOrderLine, line->id);
    write(n, b.take(), cat("remove order line ", line->id.to_string()));
    return true;
  }

  bool set_order_status(Node& n, const RecordState& order, const std::string& status, bool stamp_submitted) {
    TxnBuilder b;
    b.set(EntityId::kOrder, order.id, "status", T(status));
    if (stamp_submitted) b.set(EntityId::kOrder, order.id, "submitted_at", I(wall(n)));
    write(n, b.take(), cat("order ", order.id.to_string(), " ", text_of(order, "status"), " -> ", status));
    return true;
  }

  bool submit_order(Node& n) {
    const RecordState* order =
        pick(n, EntityId::kOrder, [](const RecordState& r) { return text_of(r, "status") == "draft"; });
    return order && set_order_status(n, *order, "submitted", true);
  }

  bool withdraw_order(Node& n) {
    const RecordState* order = pick(n, EntityId::kOrder, order_open);
    if (!order) return false;
    if (text_of(*order, "status") == "submitted" && chance(0.6))
      return set_order_status(n, *order, "draft", false);
    return set_order_status(n, *order, "cancelled", false);
  }

  bool approve_order(Node& n) {
    const RecordState* order =
        pick(n, EntityId::kOrder, [](const RecordState& r) { return text_of(r, "status") == "submitted"; });
    return order && set_order_status(n, *order, "approved", false);
  }

  bool fulfill_order(Node& n) {
    const RecordState* order =
        pick(n, EntityId::kOrder, [](const RecordState& r) { return text_of(r, "status") == "approved"; });
    return order && set_order_status(n, *order, "fulfilled", false);
  }

  bool cancel_order(Node& n) {
    const RecordState* order = pick(n, EntityId::kOrder, [](const RecordState& r) {
      std::string s = text_of(r, "status");
      return s == "approved" || s == "submitted";
    });
    return order && set_order_status(n, *order, "cancelled", false);
  }

  // Writes a rep should not make: the server refuses the first two (server-owned field, approval needs a
  // manager) and write() itself the last (a value outside the enum).
  bool mistake(Node& n) {
    TxnBuilder b;
    std::string what;
    switch (rnd(3)) {
      case 0: {
        const RecordState* a = pick(n, EntityId::kAccount);
        if (!a) return false;
        b.set(EntityId::kAccount, a->id, "credit_limit_cents", I(99'999'900));
        what = cat("raise own credit limit of ", a->id.to_string());
        break;
      }
      case 1: {
        const RecordState* o = pick(n, EntityId::kOrder,
                                    [](const RecordState& r) { return text_of(r, "status") == "submitted"; });
        if (!o) return false;
        b.set(EntityId::kOrder, o->id, "status", T("approved"));
        what = cat("approve own order ", o->id.to_string());
        break;
      }
      default: {
        const RecordState* a = pick(n, EntityId::kAccount);
        if (!a) return false;
        b.set(EntityId::kAccount, a->id, "segment", T("platinum"));
        what = cat("segment of ", a->id.to_string(), " outside the enum");
        break;
      }
    }
    write(n, b.take(), what);
    return true;
  }

  // -- Catalogue (head office) --
  bool create_product(Node& n) {
    RecordId product = n.ids->next(wall(n));
    RecordId entry = n.ids->next(wall(n));
    TxnBuilder b;
    const EntityId p = EntityId::kProduct;
    const EntityId pe = EntityId::kPriceListEntry;
    b.create(p, product)
        .set(p, product, "sku", T(cat("SKU-", range(10'000, 99'999))))
        .set(p, product, "name", T(cat(word(), " ", word())))
        .set(p, product, "unit", T("box"))
        .set(p, product, "active", Value::boolean(true));
    b.create(pe, entry)
        .set(pe, entry, "product_id", T(product.to_string()))
        .set(pe, entry, "price_list", T("default"))
        .set(pe, entry, "unit_price_cents", I(range(100, 20'000)))
        .set(pe, entry, "currency", T("EUR"))
        .set(pe, entry, "valid_from", I(start_ms_));
    write(n, b.take(), cat("create product ", product.to_string()));
    return true;
  }

  bool reprice(Node& n) {
    const RecordState* entry = pick(n, EntityId::kPriceListEntry);
    if (!entry) return false;
    TxnBuilder b;
    b.set(EntityId::kPriceListEntry, entry->id, "unit_price_cents", I(range(100, 20'000)));
    write(n, b.take(), cat("reprice ", entry->id.to_string()));
    return true;
  }

  bool edit_product(Node& n) {
    const RecordState* product = pick(n, EntityId::kProduct);
    if (!product) return false;
    TxnBuilder b;
    if (chance(0.5))
      b.set(EntityId::kProduct, product->id, "active", Value::boolean(chance(0.7)));
    else
      b.set(EntityId::kProduct, product->id, "name", T(cat(word(), " ", word())));
    write(n, b.take(), cat("edit product ", product->id.to_string()));
    return true;
  }

  bool delete_price(Node& n) {
    const RecordState* entry = pick(n, EntityId::kPriceListEntry);
    if (!entry) return false;
    TxnBuilder b;
    b.remove(EntityId::kPriceListEntry, entry->id);
    write(n, b.take(), cat("delete price entry ", entry->id.to_string()));
    return true;
  }

  // -- Calendar --
  bool create_event(Node& n) {
    const EntityId e = EntityId::kCalendarEvent;
    RecordId id = n.ids->next(wall(n));
    int64_t start = event_slot_ms();
    TxnBuilder b;
    b.create(e, id)
        .set(e, id, "owner_id", T(n.name))
        .set(e, id, "title", T(cat("visit ", word())))
        .set(e, id, "start_at", I(start))
        .set(e, id, "end_at", I(start + range(1, 3) * 1'800'000))
        .set(e, id, "status", T("scheduled"));
    if (const RecordState* a = chance(0.6) ? pick(n, EntityId::kAccount) : nullptr)
      b.set(e, id, "account_id", T(a->id.to_string()));
    write(n, b.take(), cat("create event ", id.to_string()));
    return true;
  }

  const RecordState* my_event(Node& n) {
    const std::string& me = n.name;
    return pick(n, EntityId::kCalendarEvent,
                [&me](const RecordState& r) { return text_of(r, "owner_id") == me; });
  }

  bool move_event(Node& n) {
    const RecordState* ev = my_event(n);
    if (!ev) return false;
    int64_t start = event_slot_ms();
    TxnBuilder b;
    b.set(EntityId::kCalendarEvent, ev->id, "start_at", I(start))
        .set(EntityId::kCalendarEvent, ev->id, "end_at", I(start + range(1, 3) * 1'800'000));
    write(n, b.take(), cat("move event ", ev->id.to_string()));
    return true;
  }

  bool change_event_status(Node& n) {
    const RecordState* ev = my_event(n);
    if (!ev) return false;
    std::string from = text_of(*ev, "status");
    std::string to = from == "scheduled" ? (chance(0.5) ? "done" : "cancelled") : "scheduled";
    TxnBuilder b;
    b.set(EntityId::kCalendarEvent, ev->id, "status", T(to));
    if (chance(0.3)) b.append(EntityId::kCalendarEvent, ev->id, "notes", cat(n.name, ": ", word()));
    write(n, b.take(), cat("event ", ev->id.to_string(), " ", from, " -> ", to));
    return true;
  }

  // -- Opportunities --
  bool create_opportunity(Node& n) {
    const RecordState* a = pick(n, EntityId::kAccount);
    if (!a) return false;
    const EntityId e = EntityId::kOpportunity;
    RecordId id = n.ids->next(wall(n));
    TxnBuilder b;
    b.create(e, id)
        .set(e, id, "account_id", T(a->id.to_string()))
        .set(e, id, "owner_id", T(n.name))
        .set(e, id, "name", T(cat(word(), " deal")))
        .set(e, id, "stage", T("prospect"))
        .set(e, id, "amount_cents", I(range(10, 1'000) * 10'000))
        .set(e, id, "currency", T("EUR"));
    if (chance(0.5)) b.set(e, id, "expected_close", I(start_ms_ + range(1, 90) * 86'400'000));
    write(n, b.take(), cat("create opportunity ", id.to_string()));
    return true;
  }

  // Moves an opportunity along a transition the writer's role allows from the stage it sees. A concurrent
  // move by a colleague can make the same move invalid on the server (a deal won meanwhile cannot go back to
  // proposal).
  bool move_stage(Node& n) {
    const RecordState* o = pick(n, EntityId::kOpportunity);
    if (!o) return false;
    static const std::vector<std::string> kStages = {"prospect",    "qualified", "proposal",
                                                     "negotiation", "won",       "lost"};
    const schema::EntityDef& def = schema::entity_ref(EntityId::kOpportunity);
    std::string from = text_of(*o, "stage");
    std::vector<std::string> targets;
    for (const std::string& to : kStages) {
      if (to == from) continue;
      std::optional<Role> role = schema::transition_role(def, from, to);
      if (role && *role <= n.principal.role) targets.push_back(to);
    }
    if (targets.empty()) return false;
    std::string to = pick_one(targets);
    TxnBuilder b;
    b.set(EntityId::kOpportunity, o->id, "stage", T(to));
    write(n, b.take(), cat("opportunity ", o->id.to_string(), " ", from, " -> ", to));
    return true;
  }

  bool reopen_opportunity(Node& n) {
    const RecordState* o = pick(n, EntityId::kOpportunity, [](const RecordState& r) {
      std::string s = text_of(r, "stage");
      return s == "won" || s == "lost";
    });
    if (!o) return false;
    TxnBuilder b;
    b.set(EntityId::kOpportunity, o->id, "stage", T("negotiation"));
    write(n, b.take(), cat("reopen opportunity ", o->id.to_string()));
    return true;
  }

  bool edit_opportunity(Node& n) {
    const RecordState* o = pick(n, EntityId::kOpportunity);
    if (!o) return false;
    TxnBuilder b;
    if (chance(0.5))
      b.set(EntityId::kOpportunity, o->id, "amount_cents", I(range(10, 1'000) * 10'000));
    else
      b.append(EntityId::kOpportunity, o->id, "notes", cat(n.name, ": ", word()));
    write(n, b.take(), cat("edit opportunity ", o->id.to_string()));
    return true;
  }

  // ---- End of the run -------------------------------------------------------------------------------------
  bool quiescent() const {
    if (!in_flight_.empty()) return false;
    for (const auto& n : nodes_) {
      if (!n->client || n->session == 0 || n->closing) return false;
      if (n->client->state() != SyncClient::State::kSyncing || !n->client->idle()) return false;
    }
    return true;
  }

  bool settle_rounds(int max_rounds) {
    for (int round = 0; round < max_rounds; ++round) {
      if (quiescent()) return true;
      advance_to(now_ + kSettleRoundMs);
      check_clocks();
    }
    return quiescent();
  }

  void settle() {
    faults_on_ = false;
    while (!backlogged_.empty()) drain(*backlogged_.begin());
    trace("--- heal: faults off, everyone reconnects ---");
    for (auto& np : nodes_) {
      Node& n = *np;
      (void)n.store->begin()->commit();  // spends a storage failure still armed
      n.partition_until = -1;
      n.next_partition_at = -1;
      if (!n.client || n.client->state() == SyncClient::State::kStopped || n.restart_at >= 0) {
        n.restart_at = -1;
        restart_client(n, "heal");
      }
      n.reconnect_at = now_;
    }
    process_timers();
    bool ok = settle_rounds(kMaxSettleRounds);
    if (ok) {
      // One more explicit round: every client's idle pull comes due, so a lost live notification cannot hide.
      trace("--- quiescent; final pull round ---");
      const int64_t until = now_ + tuning::kIdlePullIntervalMs + 1;
      while (now_ < until) advance_to(std::min(until, now_ + 1'000));
      ok = settle_rounds(kMaxSettleRounds);
    }
    if (!ok) {
      std::string why = cat("not quiescent after ", kMaxSettleRounds, " rounds of ", kSettleRoundMs,
                            "ms: frames in flight ", in_flight_.size());
      for (const auto& n : nodes_) {
        if (!n->client) {
          why += cat("; ", n->name, " has no client");
          continue;
        }
        bool good = n->session != 0 && n->client->state() == SyncClient::State::kSyncing && n->client->idle();
        if (!good)
          why +=
              cat("; ", n->name, " state=", state_name(n->client->state()), n->session ? "" : " disconnected",
                  " idle=", n->client->idle(), " outbox=", n->store->outbox().size(),
                  " cursor=", n->store->meta().cursor, " stop=", n->client->stop_reason().to_string());
      }
      why += cat("; server head ", central_.head_seq().value());
      fail(why);
    }
    settled_ = ok;
  }

  std::string field_diff(const RecordState& client, const RecordState& server) const {
    std::string out;
    if (client.created != server.created)
      out += cat(" created client=", vstr(client.created), " server=", vstr(server.created), ";");
    std::set<uint16_t> ids;
    for (const auto& f : client.fields) ids.insert(f.field);
    for (const auto& f : server.fields) ids.insert(f.field);
    int shown = 0;
    for (uint16_t id : ids) {
      const FieldState* c = client.field(id);
      const FieldState* s = server.field(id);
      if (c && s && *c == *s) continue;
      if (++shown > 4) {
        out += " ...";
        break;
      }
      auto side = [this](const FieldState* f) {
        if (!f) return std::string("absent");
        std::string s = cat(f->value.debug_string(), " ", vstr(f->version), " by '", f->user, "'");
        if (!f->fragments.empty()) s += cat(" fragments=", f->fragments.size());
        return s;
      };
      out += cat(" field ", field_name(server.entity, id), ": client ", side(c), " / server ", side(s), ";");
    }
    if (out.empty()) out = " (states differ outside the fields: delete bookkeeping)";
    return out;
  }

  void check_end_state() {
    const std::map<RecordKey, RecordState> server_records = central_.records();
    const std::vector<ServerTxn> log = central_.log();
    const std::vector<ConflictRecord> conflicts = central_.conflicts();
    const std::vector<StoredRejection> rejections = central_.rejections();

    // 1. Convergence: every replica holds exactly the server's live records its user may see.
    MapRecordReader reader(server_records);  // a snapshot of the server's records, for the checker
    std::vector<std::pair<const RecordState*, ScopeKey>> live;
    for (const auto& [key, rec] : server_records)
      if (!rec.deleted) live.emplace_back(&rec, resolve_scope(rec, reader));
    for (const auto& np : nodes_) {
      const Node& n = *np;
      const std::map<RecordKey, RecordState> local = n.store->records();
      std::set<RecordKey> expected;
      for (const auto& [rec, scope] : live) {
        if (!can_see(n.principal, scope)) continue;
        RecordKey key{rec->entity, rec->id};
        expected.insert(key);
        auto it = local.find(key);
        if (it == local.end()) {
          fail(cat("convergence: ", n.name, " lacks ", rec_str(key.entity, key.id), " (live on the server)"));
        } else if (it->second.deleted) {
          fail(cat("convergence: ", n.name, " has ", rec_str(key.entity, key.id),
                   " deleted but it is live on the server"));
        } else if (!(it->second == *rec)) {
          fail(cat("convergence: ", n.name, " ", rec_str(key.entity, key.id),
                   " differs:", field_diff(it->second, *rec)));
        }
      }
      for (const auto& [key, rec] : local) {
        if (rec.deleted || expected.count(key)) continue;
        auto it = server_records.find(key);
        std::string server_side = it == server_records.end() ? "absent"
                                  : it->second.deleted       ? "deleted"
                                                             : "out of the user's scope";
        fail(cat("convergence: ", n.name, " has ", rec_str(key.entity, key.id), " live; on the server it is ",
                 server_side));
      }
    }

    // 3. Exactly once: no client transaction twice in the log.
    std::map<std::pair<NodeId, uint64_t>, uint64_t> in_log;  // -> server_seq
    for (const ServerTxn& t : log) {
      if (t.origin_node == kServerNode) continue;
      auto [it, inserted] = in_log.emplace(std::make_pair(t.origin_node, t.origin_node_seq), t.server_seq);
      if (!inserted)
        fail(cat("exactly once: txn #", t.origin_node_seq, " of ", node_name(t.origin_node),
                 " is in the server log twice (seq ", it->second, " and ", t.server_seq, ")"));
    }
    std::map<std::pair<NodeId, uint64_t>, const StoredRejection*> rejected;
    for (const StoredRejection& r : rejections) rejected[{r.node, r.node_seq}] = &r;
    for (const auto& np : nodes_) {
      const Node& n = *np;
      const ReplicaMeta meta = n.store->meta();
      for (uint64_t seq = 1; seq < meta.next_node_seq; ++seq) {
        bool applied = in_log.count({n.node, seq}) > 0;
        bool refused = rejected.count({n.node, seq}) > 0;
        if (applied && refused)
          fail(cat("exactly once: txn #", seq, " of ", n.name, " is both applied and rejected"));
        if (!applied && !refused)
          fail(
              cat("acknowledged write lost: txn #", seq, " of ", n.name, " is neither applied nor rejected"));
      }
    }

    // 2. No acknowledged write lost.
    for (const auto& [id, server_seq] : acked_) {
      auto it = in_log.find(id);
      if (it == in_log.end())
        fail(cat("acknowledged write lost: txn #", id.second, " of ", node_name(id.first),
                 " was acknowledged (seq ", server_seq, ") but is not in the server log"));
      else if (server_seq != 0 && it->second != server_seq)
        fail(cat("ack: txn #", id.second, " of ", node_name(id.first), " was acknowledged as seq ",
                 server_seq, " but is seq ", it->second, " in the log"));
    }
    std::set<std::tuple<RecordKey, uint16_t, Version>> losers;
    for (const ConflictRecord& c : conflicts)
      losers.insert({RecordKey{c.entity, c.record}, c.field, c.loser.version});
    std::set<std::tuple<RecordKey, uint16_t, Version>> superseded;
    // A device always sees its own earlier writes, so a later accepted write of the same field by the same
    // node replaced an earlier one knowingly even when its base is a version the server never had (a rejected
    // txn).
    std::map<std::tuple<RecordKey, uint16_t, NodeId>, Version> latest_by_node;
    for (const ServerTxn& t : log)
      for (const Change& c : t.changes) {
        if (c.op != ChangeOp::kSet) continue;
        RecordKey key{c.entity, c.record};
        superseded.insert({key, c.field, c.base});
        Version& latest = latest_by_node[{key, c.field, c.version.node}];
        latest = std::max(latest, c.version);
      }
    for (const auto& [id, server_seq] : in_log) {
      auto pushed = pushed_.find(id);
      if (pushed == pushed_.end()) {
        fail(cat("server log seq ", server_seq, " holds txn #", id.second, " of ", node_name(id.first),
                 " that was never pushed"));
        continue;
      }
      check_txn_survived(pushed->second, server_records, losers, superseded, latest_by_node);
    }

    // 4. Rejections reach their writer with the same reason; every outbox drained.
    for (const StoredRejection& r : rejections) {
      auto owner = node_index_.find(r.node);
      if (owner == node_index_.end()) {
        fail(cat("rejection of txn #", r.node_seq, " for unknown node ", r.node));
        continue;
      }
      const Node& n = *nodes_[static_cast<size_t>(owner->second)];
      if (in_log.count({r.node, r.node_seq}))
        fail(cat("rejection: txn #", r.node_seq, " of ", n.name, " is rejected but also in the log"));
      bool found = false;
      for (const Rejection& local : n.store->rejections()) {
        if (local.node_seq != r.node_seq) continue;
        found = true;
        if (local.reason != r.reason)
          fail(cat("rejection: txn #", r.node_seq, " of ", n.name, " rejected by the server for ",
                   to_string(r.reason), " but the client recorded ", to_string(local.reason)));
      }
      if (!found)
        fail(cat("rejection: txn #", r.node_seq, " of ", n.name, " rejected by the server (",
                 to_string(r.reason), ": ", r.message, ") but the client never recorded it"));
    }
    for (const auto& np : nodes_) {
      const Node& n = *np;
      for (const Rejection& local : n.store->rejections())
        if (!rejected.count({n.node, local.node_seq}))
          fail(cat("rejection: ", n.name, " recorded txn #", local.node_seq, " as rejected (",
                   to_string(local.reason), ") but the server has no such rejection"));
      size_t outbox = n.store->outbox().size();
      if (outbox != 0) fail(cat("outbox: ", n.name, " still holds ", outbox, " txns at the end"));
    }

    // 6. Conflicts reach every device they concern, exactly once: those committed after its bootstrap
    // snapshot come with the pulls that cover them (protocol.md section 7).
    using ConflictKey = std::tuple<uint64_t, ConflictKind, RecordKey, uint16_t, Version, Version, RecordId>;
    auto conflict_key = [](const ConflictRecord& c) {
      return ConflictKey{c.server_seq,  c.kind,           RecordKey{c.entity, c.record},
                         c.field,       c.winner.version, c.loser.version,
                         c.other_record};
    };
    std::set<RecordId> moved_accounts;  // accounts head office moved to another territory after creating them
    for (const ServerTxn& t : log)
      for (const Change& c : t.changes)
        if (c.op == ChangeOp::kSet && c.entity == EntityId::kAccount &&
            c.field == fid(EntityId::kAccount, "territory_id") &&
            std::none_of(t.changes.begin(), t.changes.end(), [&c](const Change& other) {
              return other.op == ChangeOp::kCreate && other.record == c.record;
            }))
          moved_accounts.insert(c.record);
    std::map<ConflictKey, const ConflictRecord*> logged;
    for (const ConflictRecord& c : conflicts) logged[conflict_key(c)] = &c;
    for (const auto& np : nodes_) {
      const Node& n = *np;
      const uint64_t snapshot = n.store->meta().bootstrap_snapshot_seq;
      std::map<ConflictKey, int> local;
      for (const ConflictRecord& c : n.store->conflicts()) ++local[conflict_key(c)];
      trace(n.name, ": ", local.size(), " conflicts held, bootstrap snapshot ", snapshot);
      for (const auto& [key, count] : local) {
        auto it = logged.find(key);
        if (it == logged.end()) {
          fail(cat("conflicts: ", n.name, " holds a conflict on ",
                   rec_str(std::get<2>(key).entity, std::get<2>(key).id), " (seq ", std::get<0>(key),
                   ") that the server never logged"));
        } else if (count > 1) {
          fail(cat("conflicts: ", n.name, " received the conflict on ",
                   rec_str(it->second->entity, it->second->record), " field ",
                   field_name(it->second->entity, it->second->field), " (seq ", std::get<0>(key), ") ", count,
                   " times"));
        }
      }
      for (const auto& [key, c] : logged) {
        if (c->server_seq <= snapshot || local.count(key)) continue;
        bool concerns = c->winner.user == n.name || c->loser.user == n.name;
        if (!concerns) {
          auto rec = server_records.find(RecordKey{c->entity, c->record});
          // Visibility is judged when the batch is built; a record that came into scope later (its account
          // moved) brings no past conflicts with it.
          concerns = rec != server_records.end() &&
                     can_see(n.principal, resolve_scope(rec->second, reader)) &&
                     !moved_accounts.count(account_of(rec->second, server_records));
        }
        if (concerns)
          fail(cat("conflicts: ", n.name, " never received the ", c->rule, " conflict on ",
                   rec_str(c->entity, c->record), " field ", field_name(c->entity, c->field), " (seq ",
                   c->server_seq, ", loser ", c->loser.value.debug_string(), " by '", c->loser.user, "')"));
      }
    }

    report_.txns_applied = in_log.size();
    report_.txns_rejected = rejections.size();
    report_.conflicts = conflicts.size();
    if (opt_.verbose) {
      std::map<std::string, int> kinds;
      for (const ConflictRecord& c : conflicts) ++kinds[c.rule];
      for (const auto& [rule, count] : kinds) trace("conflicts ", rule, ": ", count);
      std::map<std::string, int> reasons;
      for (const StoredRejection& r : rejections) ++reasons[std::string(to_string(r.reason))];
      for (const auto& [reason, count] : reasons) trace("rejections ", reason, ": ", count);
    }
  }

  // The account whose territory decides the record's scope (nil for catalogue data and calendar events).
  static RecordId account_of(const RecordState& rec, const std::map<RecordKey, RecordState>& records) {
    if (rec.entity == EntityId::kAccount) return rec.id;
    if (rec.entity == EntityId::kOrderLine) {
      auto order = records.find(
          RecordKey{EntityId::kOrder, RecordId::parse(link_of(rec, "order_id")).value_or(RecordId{})});
      return order == records.end() ? RecordId{} : account_of(order->second, records);
    }
    const schema::EntityDef& def = schema::entity_ref(rec.entity);
    if (def.scope.kind != schema::ScopeKind::kParent || def.scope.parent != EntityId::kAccount)
      return RecordId{};
    return RecordId::parse(link_of(rec, "account_id")).value_or(RecordId{});
  }

  // Every change of an applied transaction either still shows on the server or is accounted for: a conflict
  // record kept the losing value, a later writer saw it and replaced it, or the record was deleted (delete
  // wins).
  void check_txn_survived(const ClientTxn& txn, const std::map<RecordKey, RecordState>& server_records,
                          const std::set<std::tuple<RecordKey, uint16_t, Version>>& losers,
                          const std::set<std::tuple<RecordKey, uint16_t, Version>>& superseded,
                          const std::map<std::tuple<RecordKey, uint16_t, NodeId>, Version>& latest_by_node) {
    const std::string who = node_name(txn.node);
    for (const Change& c : txn.changes) {
      RecordKey key{c.entity, c.record};
      auto it = server_records.find(key);
      const std::string where = cat("txn #", txn.node_seq, " of ", who, " ");
      if (it == server_records.end()) {
        fail(cat("acknowledged write lost: ", where, "touched ", rec_str(c.entity, c.record),
                 " which the server does not have"));
        continue;
      }
      const RecordState& rec = it->second;
      switch (c.op) {
        case ChangeOp::kCreate:
          if (rec.created != c.version)
            fail(cat("acknowledged write lost: ", where, "created ", rec_str(c.entity, c.record), " at ",
                     vstr(c.version), " but the server's record says created ", vstr(rec.created)));
          break;
        case ChangeOp::kDelete:
          if (!rec.deleted)
            fail(cat("acknowledged write lost: ", where, "deleted ", rec_str(c.entity, c.record),
                     " but it is live on the server"));
          break;
        case ChangeOp::kAppend: {
          if (rec.deleted) break;
          const FieldState* f = rec.field(c.field);
          bool present = f && std::any_of(f->fragments.begin(), f->fragments.end(),
                                          [&c](const Fragment& fr) { return fr.version == c.version; });
          if (!present)
            fail(cat("acknowledged write lost: ", where, "appended ", c.value.debug_string(), " ",
                     vstr(c.version), " to ", field_name(c.entity, c.field), " of ",
                     rec_str(c.entity, c.record), "; the server's fragments: ", f ? f->fragments.size() : 0));
          break;
        }
        case ChangeOp::kSet: {
          if (rec.deleted) break;
          const FieldState* f = rec.field(c.field);
          if (f && f->version == c.version) break;
          if (losers.count({key, c.field, c.version}) || superseded.count({key, c.field, c.version})) break;
          auto own = latest_by_node.find({key, c.field, c.version.node});
          if (own != latest_by_node.end() && own->second > c.version) break;
          fail(cat("acknowledged write lost: ", where, "set ", field_name(c.entity, c.field), " of ",
                   rec_str(c.entity, c.record), " to ", c.value.debug_string(), " ", vstr(c.version),
                   " (base ", vstr(c.base), "); the server has ", f ? f->value.debug_string() : "nothing",
                   " ", f ? vstr(f->version) : "",
                   " and no conflict record or later writer accounts for it"));
          break;
        }
      }
    }
  }

  bool read_chance(double p) { return static_cast<double>(read_rng_() >> 11) * 0x1.0p-53 < p; }
  bool fail_server_read() {
    if (!faults_on_) return false;
    return read_chance(now_ < read_outage_until_ ? kReadOutageFailP : kServerReadFaultP);
  }

  void finish_report() {
    report_.server_read_faults = server_store_ ? server_store_->failed_reads : 0;
    if (failure_count_ > report_.failures.size())
      report_.failures.push_back(cat("... and ", failure_count_ - report_.failures.size(), " more failures"));
    report_.ok = failure_count_ == 0;
    report_.sim_time_ms = now_ - start_ms_;
    trace("done: ", report_.ok ? "ok" : "FAILED", ", ", report_.txns_written, " txns written, ",
          report_.txns_applied, " applied, ", report_.txns_rejected, " rejected, ", report_.conflicts,
          " conflicts, client conflict events ", client_conflict_events_);
  }

  TempDir& replica_dir() {
    if (!replica_dir_) replica_dir_ = std::make_unique<TempDir>();
    return *replica_dir_;
  }

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

  MemoryCentralStore central_;
  // What the server reads and writes through: central_ with injected read failures (the checker reads
  // central_ itself).
  std::unique_ptr<testing_support::ReadFaultStore> server_store_;
  std::mt19937_64 read_rng_;
  int64_t read_outage_until_ = 0;
  SimAuthenticator auth_;
  std::unique_ptr<SyncServer> server_;
  Hlc server_max_hlc_ = 0;
  bool server_clock_failed_ = false;

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

}  // namespace

SimReport run_simulation(const SimOptions& options) {
  Simulation sim(options);
  return sim.run();
}

}  // namespace fieldsync::sim

// Power loss below SQLite (issue 22 section 3). A kill -9 leaves everything a process wrote in the page
// cache; a power cut loses what no sync made durable. FaultVfs (fault_vfs.h) models that per file, and these
// tests cut the power of one machine -- the device (SqliteReplicaStore under SyncClient) or the server
// (SqliteCentralStore under SyncServer, with and without group commit) -- at every Nth mutating VFS call of
// one deterministic workload, which covers a bootstrap in small pages, local writes and their outbox
// entries, pushes and their acks, live batches applied on the device, group commits and checkpoints. Each
// cut rewrites the files with one of the four modes (drop, prefix, torn page, reorder; seeded), then the
// stores are reopened and checked: no acknowledged write lost on the server, no committed write or outbox
// entry lost on the device, no transaction half-applied, and after a resync everything exactly once. The
// same harness injects a failing fsync and a full disk at every sync and write point. A migration on open
// of a format-1 and of a format-2 replica is cut at every point too.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "fault_vfs.h"
#include "fieldsync/client/sqlite_replica.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/client.h"
#include "fieldsync/sync/record_id.h"
#include "fieldsync/sync/server.h"
#include "support/memory_store.h"

namespace fieldsync::powerloss {
namespace {

namespace fs = std::filesystem;
namespace f = schema::fields;
using client::SqliteReplicaStore;
using schema::EntityId;
using server::SqliteCentralStore;

constexpr int64_t kStart = 1'760'000'000'000;
constexpr NodeId kNodeA = 0xA1;  // the device under test (SQLite replica in the device tests)
constexpr NodeId kNodeB = 0xB2;  // a second device (memory replica), whose writes A receives in batches

FaultVfs& vfs() {
  return FaultVfs::install();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "powerloss_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
    fs::create_directory(fs::path(path_) / "device");
    fs::create_directory(fs::path(path_) / "server");
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string path(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

class Auth final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello&, int64_t) override {
    return Principal{"alice", schema::Role::kRep, {"t-north"}, {}};
  }
};

Change create(EntityId e, RecordId id) {
  return Change{ChangeOp::kCreate, e, id};
}
Change set(EntityId e, RecordId id, uint16_t field, Value v) {
  Change c{ChangeOp::kSet, e, id, field};
  c.value = std::move(v);
  return c;
}

// One transaction: an account and a contact of it, so "half applied" has two records to disagree on.
std::vector<Change> account_with_contact(RecordId a, RecordId c, const std::string& name) {
  return {create(EntityId::kAccount, a),
          set(EntityId::kAccount, a, f::kAccountName, Value::text(name)),
          set(EntityId::kAccount, a, f::kAccountTerritory, Value::text("t-north")),
          set(EntityId::kAccount, a, 10, Value::text("alice")),
          create(EntityId::kContact, c),
          set(EntityId::kContact, c, f::kContactAccount, Value::text(a.to_string())),
          set(EntityId::kContact, c, 2, Value::text("contact of " + name))};
}

std::vector<RecordKey> created_keys(const std::vector<Change>& changes) {
  std::vector<RecordKey> out;
  for (const Change& c : changes)
    if (c.op == ChangeOp::kCreate) out.push_back(RecordKey{c.entity, c.record});
  return out;
}

// A second connection checkpoints the WAL into the database file, as the store's own checkpoints and
// fieldsync-admin do (PASSIVE: never waits). Deterministic, unlike the group-commit checkpoint thread.
void checkpoint(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK)
    (void)sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  sqlite3_close(db);
}

bool is_storage_error(ErrorCode c) {
  return c == ErrorCode::kStorageFull || c == ErrorCode::kStorageCorrupt || c == ErrorCode::kStorageLocked ||
         c == ErrorCode::kStorageReadOnly || c == ErrorCode::kStorageIo || c == ErrorCode::kSchemaTooNew;
}

// kServerCheckpointThread: group commit with the store's own checkpoint thread running every millisecond
// and restarting the WAL past 16 KiB. Its timing makes the cut points differ from run to run (what is
// checked does not), so it is only cut, not failed.
enum class Target { kDevice, kServer, kServerGroupCommit, kServerCheckpointThread };
const char* target_name(Target t) {
  switch (t) {
    case Target::kDevice:
      return "device";
    case Target::kServer:
      return "server";
    case Target::kServerGroupCommit:
      return "server_group_commit";
    case Target::kServerCheckpointThread:
      return "server_checkpoint_thread";
  }
  return "?";
}

struct Device {
  NodeId node = 0;
  std::unique_ptr<ReplicaStore> store;
  std::unique_ptr<SyncClient> client;
  SessionId session = 0;
  std::map<uint64_t, std::vector<RecordKey>> attempted;  // node_seq a write would get -> its records
  std::set<uint64_t> reported;                           // node_seqs whose write() returned ok
  uint64_t writes = 0;
  bool online = false;
  std::vector<Status> write_errors;
  std::set<RecordKey> failed_keys;  // records of writes that returned an error
};

// Two devices and a server; the machine under test keeps its files in SQLite through FaultVfs, the others
// are memory stores. run() plays the workload until its end or until the power of the machine under test
// goes off (or its server fails stop).
class World {
 public:
  World(Target target, const TempDir& dir) : target_(target), dir_(dir) {
    replica_path_ = dir.path("device/replica.db");
    central_path_ = dir.path("server/central.db");
  }

  // Opens everything; false if the machine under test did not open (possible only with faults on).
  bool open() {
    a_.node = kNodeA;
    b_.node = kNodeB;
    b_.store = std::make_unique<MemoryReplicaStore>(kNodeB);
    make_client(b_);
    if (target_ == Target::kDevice) {
      central_mem_ = std::make_unique<MemoryCentralStore>();
      central_ = central_mem_.get();
      server_ = std::make_unique<SyncServer>(*central_, auth_, ServerConfig{});
      if (!open_replica()) return false;
      make_client(a_);
      return true;
    }
    a_.store = std::make_unique<MemoryReplicaStore>(kNodeA);
    make_client(a_);
    if (!open_central()) return false;
    server_ = std::make_unique<SyncServer>(*central_, auth_, ServerConfig{});
    return true;
  }
  bool opened() const { return a_.client && server_; }

  bool open_central() {
    SqliteCentralStore::Options o;
    o.now_ms = [] { return kStart; };
    o.group_commit = target_ == Target::kServerGroupCommit || target_ == Target::kServerCheckpointThread;
    o.checkpoint_interval_ms = 3'600'000;  // no timed checkpoints: the test checkpoints at fixed points
    if (target_ == Target::kServerCheckpointThread) {
      o.checkpoint_interval_ms = 1;
      o.wal_restart_bytes = 16 * 1024;
    }
    auto c = SqliteCentralStore::open(central_path_, o);
    if (!c) {
      open_error_ = c.status();
      return false;
    }
    central_sqlite_ = std::move(c).value();
    central_ = central_sqlite_.get();
    return true;
  }

  bool open_replica() {
    SqliteReplicaStore::Options o;
    o.node = kNodeA;
    auto r = SqliteReplicaStore::open(replica_path_, o);
    if (!r) {
      open_error_ = r.status();
      return false;
    }
    a_.store = std::move(r).value();
    return true;
  }

  void make_client(Device& d) {
    ClientConfig cfg;
    cfg.user = "alice";
    cfg.token = "t";
    cfg.bootstrap_page_size = 4;  // many pages, so cuts land between them
    d.client = std::make_unique<SyncClient>(*d.store, cfg);
    d.session = next_session_++;
  }

  void connect(Device& d, int64_t now) {
    d.online = true;
    server_->on_connect(d.session, now);
    d.client->on_connected(now);
  }
  void reconnect(Device& d, int64_t now) {
    server_->on_disconnect(d.session);
    d.client->on_disconnected(now);
    d.session = next_session_++;
    connect(d, now);
  }

  bool stopped() const { return vfs().power_is_off() || !server_failed_.is_ok(); }

  // Moves messages until nothing moves, `rounds` times at most, the way SyncService drives the server: with
  // group commit nothing the server produced is delivered before a sync() that began after it returned ok,
  // and a failed sync() stops the server.
  void pump(int64_t now, int rounds) {
    for (int round = 0; round < rounds && !stopped(); ++round) {
      bool moved = false;
      for (Device* d : {&a_, &b_}) {
        if (d->online && !d->client->connected() && d->client->state() != SyncClient::State::kStopped)
          reconnect(*d, now);
        for (protocol::Message& m : d->client->take_outgoing()) {
          moved = true;
          server_->on_message(d->session, m, now);
        }
      }
      if (central_->commits_need_sync()) {
        if (Status s = central_->sync(); !s) {
          server_failed_ = s;
          return;  // fail stop: nothing held is sent
        }
      }
      for (SyncServer::Outgoing& o : server_->take_outgoing()) {
        moved = true;
        for (Device* d : {&a_, &b_})
          if (d->session == o.session) d->client->on_message(o.message, now);
      }
      for (SessionId closed : server_->take_closing())
        for (Device* d : {&a_, &b_})
          if (d->session == closed) reconnect(*d, now);
      for (Device* d : {&a_, &b_}) (void)d->client->take_events();
      if (!moved) return;
    }
  }

  void write(Device& d, int64_t now) {
    RecordIdGenerator gen(d.node * 1000 + d.writes);
    const RecordId a = gen.next(now);
    const RecordId c = gen.next(now);
    std::vector<Change> changes =
        account_with_contact(a, c, std::to_string(d.node) + "/" + std::to_string(d.writes));
    const uint64_t expected_seq = d.reported.size() + 1;
    d.attempted[expected_seq] = created_keys(changes);
    ++d.writes;
    Result<uint64_t> seq = d.client->write(std::move(changes), now);
    if (seq) {
      EXPECT_EQ(*seq, expected_seq);
      d.reported.insert(*seq);
    } else {  // attempted[expected_seq] stays: a write cut at its commit may have reached the disk
      d.write_errors.push_back(seq.status());
      for (const RecordKey& k : d.attempted[expected_seq]) d.failed_keys.insert(k);
    }
  }

  // The workload: B fills the server, A bootstraps it in pages, then both write while A receives B's writes
  // in live batches; checkpoints of the machine under test's file every few steps.
  void run() {
    int64_t now = kStart;
    if (!opened()) return;
    connect(b_, now);
    for (int i = 0; i < 6; ++i) write(b_, now);
    pump(now, 50);
    connect(a_, now);
    for (int i = 0; i < 40 && !stopped(); ++i) pump(now, 1);  // the bootstrap, one message at a time
    for (int i = 0; i < 14 && !stopped(); ++i) {
      now += 10;
      write(a_, now);
      if (stopped()) break;
      if (i % 2 == 0) write(b_, now);
      pump(now, 1 + i % 3);
      if (i % 4 == 3 && !stopped()) checkpoint(target_ == Target::kDevice ? replica_path_ : central_path_);
    }
    pump(now, 100);
  }

  // Closes the machine under test's stores (the power is off: nothing more reaches its files).
  void close_machine_under_test() {
    if (target_ == Target::kDevice) {
      a_.client.reset();
      a_.store.reset();
    } else {
      server_.reset();
      central_ = nullptr;
      central_sqlite_.reset();
    }
  }

  // Reopens it after the power came back and checks what survived; then reconnects everything, syncs to
  // the end and checks exactly-once and convergence.
  void reopen_and_check(const std::string& what) {
    SCOPED_TRACE(what);
    const int64_t later = kStart + 1'000'000;
    if (target_ == Target::kDevice) {
      ASSERT_TRUE(open_replica()) << open_error_.to_string();
      check_device();
      server_->on_disconnect(a_.session);  // the dead device's session
      make_client(a_);
      connect(a_, later);
      reconnect(b_, later);
    } else {
      ASSERT_TRUE(open_central()) << open_error_.to_string();
      check_server();
      server_ = std::make_unique<SyncServer>(*central_, auth_, ServerConfig{});
      for (Device* d : {&a_, &b_}) {
        d->client->on_disconnected(later);
        d->session = next_session_++;
        connect(*d, later);
      }
    }
    server_failed_ = Status::ok();
    pump(later, 10'000);
    ASSERT_TRUE(server_failed_.is_ok()) << server_failed_.to_string();
    EXPECT_TRUE(a_.client->idle());
    EXPECT_TRUE(b_.client->idle());
    check_converged();
  }

  // The device after the cut: every write whose commit returned ok is there with its outbox entry (or the
  // server has it); its records and outbox agree; B's transactions are all or nothing; its cursor never
  // runs ahead of what it applied.
  void check_device() {
    auto* store = static_cast<SqliteReplicaStore*>(a_.store.get());
    auto txn = store->begin();
    const ReplicaMeta meta = txn->meta();
    const std::vector<ClientTxn> outbox = txn->outbox_peek(SIZE_MAX);
    txn.reset();
    auto records = store->records();
    ASSERT_TRUE(records) << records.status().to_string();
    const uint64_t acked = central_->node_state(kNodeA).value().last_node_seq;
    std::set<uint64_t> in_outbox;
    uint64_t prev = 0;
    for (const ClientTxn& t : outbox) {
      EXPECT_GT(t.node_seq, prev);
      prev = t.node_seq;
      in_outbox.insert(t.node_seq);
      EXPECT_LT(t.node_seq, meta.next_node_seq);
    }
    for (uint64_t seq : a_.reported) {
      EXPECT_LT(seq, meta.next_node_seq) << "committed write " << seq << " lost";
      EXPECT_TRUE(in_outbox.count(seq) || seq <= acked) << "outbox entry " << seq << " lost";
    }
    // A's own records: exactly those of node_seqs below next_node_seq (a write cut at its commit may
    // have made it to the disk although write() failed: then whole, with its outbox entry).
    std::set<RecordKey> expected_own, own_keys;
    for (const auto& [seq, keys] : a_.attempted) {
      for (const RecordKey& k : keys) {
        own_keys.insert(k);
        if (seq < meta.next_node_seq) expected_own.insert(k);
      }
    }
    for (uint64_t seq = acked + 1; seq < meta.next_node_seq; ++seq)
      EXPECT_TRUE(in_outbox.count(seq)) << "record of " << seq << " without its outbox entry";
    std::set<RecordKey> present_own;
    for (const auto& [key, rec] : *records)
      if (own_keys.count(key)) present_own.insert(key);
    EXPECT_EQ(present_own, expected_own);
    if (failed_writes_must_be_absent_) {
      for (const RecordKey& k : a_.failed_keys)
        EXPECT_FALSE(records->count(k)) << "a failed write left records";
    }
    // B's transactions: all or nothing, and everything up to the cursor.
    for (const ServerTxn& t : central_->read_log(0, SIZE_MAX).value()) {
      if (t.origin_node != kNodeB) continue;
      size_t present = 0, total = 0;
      for (const Change& c : t.changes) {
        if (c.op != ChangeOp::kCreate) continue;
        ++total;
        present += records->count(RecordKey{c.entity, c.record});
      }
      // A bootstrap in progress holds a key-ordered part of the snapshot (an account and its contact may be
      // pages apart); a finished one and every batch after it hold whole transactions.
      if (meta.bootstrap_done) {
        EXPECT_TRUE(present == 0 || present == total) << "server txn " << t.server_seq << " half applied";
      }
      if (meta.bootstrap_done && t.server_seq <= meta.cursor) {
        EXPECT_EQ(present, total) << "cursor " << meta.cursor << " past server txn " << t.server_seq;
      }
    }
  }

  // The server after the cut: every acknowledged write is in the log; the log, the watermarks and the
  // records agree (no transaction half applied, none twice).
  void check_server() {
    Result<std::vector<ServerTxn>> read = central_sqlite_->read_log(0, SIZE_MAX);
    ASSERT_TRUE(read.is_ok()) << read.status().to_string();
    const std::vector<ServerTxn>& log = read.value();
    EXPECT_EQ(central_sqlite_->head_seq().value(), log.size());
    std::map<NodeId, std::set<uint64_t>> logged;
    size_t keys = 0;
    for (size_t i = 0; i < log.size(); ++i) {
      const ServerTxn& t = log[i];
      EXPECT_EQ(t.server_seq, i + 1);
      EXPECT_TRUE(logged[t.origin_node].insert(t.origin_node_seq).second) << "applied twice";
      for (const Change& c : t.changes) {
        if (c.op != ChangeOp::kCreate) continue;
        ++keys;
        EXPECT_TRUE(central_sqlite_->load(c.entity, c.record).value().has_value())
            << "log entry without its record";
      }
    }
    EXPECT_EQ(central_sqlite_->record_count().value(), keys) << "records without their log entry";
    for (Device* d : {&a_, &b_}) {
      const NodeState st = central_sqlite_->node_state(d->node).value();
      const std::set<uint64_t>& mine = logged[d->node];
      EXPECT_EQ(mine.size(), st.last_node_seq) << "watermark and log disagree";
      if (!mine.empty()) {
        EXPECT_EQ(*mine.rbegin(), st.last_node_seq);
      }
      // Acknowledged: reported by write() and no longer in the device's outbox.
      auto* mem = static_cast<MemoryReplicaStore*>(d->store.get());
      std::set<uint64_t> outbox;
      for (const ClientTxn& t : mem->outbox()) outbox.insert(t.node_seq);
      for (uint64_t seq : d->reported)
        if (!outbox.count(seq)) {
          EXPECT_TRUE(mine.count(seq)) << "acknowledged write " << seq << " lost";
        }
    }
  }

  void check_converged() {
    std::map<NodeId, std::map<uint64_t, int>> applied;
    for (const ServerTxn& t : central_->read_log(0, SIZE_MAX).value())
      ++applied[t.origin_node][t.origin_node_seq];
    for (Device* d : {&a_, &b_}) {
      for (uint64_t seq : d->reported) EXPECT_EQ(applied[d->node][seq], 1) << "node_seq " << seq;
      EXPECT_EQ(central_->node_state(d->node).value().last_node_seq, applied[d->node].size());
    }
    std::set<RecordKey> server_keys;
    for (const RecordState& r : central_->scan(RecordKey{}, SIZE_MAX).value())
      server_keys.insert(RecordKey{r.entity, r.id});
    std::set<RecordKey> device_keys;
    if (target_ == Target::kDevice) {
      auto records = static_cast<SqliteReplicaStore*>(a_.store.get())->records();
      ASSERT_TRUE(records);
      for (const auto& [k, r] : *records) device_keys.insert(k);
    } else {
      for (const auto& [k, r] : static_cast<MemoryReplicaStore*>(a_.store.get())->records())
        device_keys.insert(k);
    }
    EXPECT_EQ(device_keys, server_keys);
  }

  // After a fault that is over (the disk has room again): a new write on A and a reconnect of both devices
  // (as after a network blip, so requests refused meanwhile go again). Returns A's write's status.
  Status continue_after_fault() {
    const int64_t now = kStart + 500'000;
    const size_t errors = a_.write_errors.size();
    write(a_, now);
    for (Device* d : {&a_, &b_}) reconnect(*d, now);
    pump(now, 1000);
    return a_.write_errors.size() == errors ? Status::ok() : a_.write_errors.back();
  }

  std::string machine_dir() const { return dir_.path(target_ == Target::kDevice ? "device/" : "server/"); }
  const std::vector<Status>& a_write_errors() const { return a_.write_errors; }
  const Status& server_failed() const { return server_failed_; }
  SqliteCentralStore* central_sqlite() { return central_sqlite_.get(); }
  // No power cut before the check: a write that returned an error must have left nothing.
  void failed_writes_must_be_absent() { failed_writes_must_be_absent_ = true; }

 private:
  Target target_;
  const TempDir& dir_;
  std::string replica_path_, central_path_;
  Auth auth_;
  std::unique_ptr<MemoryCentralStore> central_mem_;
  std::unique_ptr<SqliteCentralStore> central_sqlite_;
  CentralStore* central_ = nullptr;
  std::unique_ptr<SyncServer> server_;
  Device a_, b_;
  SessionId next_session_ = 1;
  bool failed_writes_must_be_absent_ = false;
  Status server_failed_;
  Status open_error_;
};

// The number of mutating calls (or writes, or syncs) the workload makes on the machine under test's files.
struct Counts {
  uint64_t ops = 0, writes = 0, syncs = 0;
};
Counts dry_run(Target target) {
  TempDir dir;
  World w(target, dir);
  vfs().reset();
  vfs().set_domain(w.machine_dir());
  EXPECT_TRUE(w.open());
  w.run();
  Counts c{vfs().ops(), vfs().writes(), vfs().syncs()};
  w.close_machine_under_test();
  vfs().reset();
  return c;
}

// Cut points: every `stride`th op, so each target runs about `runs` cuts whatever the workload's size
// (a third of them under the sanitizers).
#ifndef FIELDSYNC_POWERLOSS_SCALE
#define FIELDSYNC_POWERLOSS_SCALE 1
#endif
uint64_t stride_for(uint64_t ops, uint64_t runs) {
  return std::max<uint64_t>(1, ops * FIELDSYNC_POWERLOSS_SCALE / runs);
}

class PowerCut : public ::testing::TestWithParam<Target> {};

TEST_P(PowerCut, AtEveryPointInEveryModeNothingCommittedIsLost) {
  const Target target = GetParam();
  const Counts counts = dry_run(target);
  ASSERT_GT(counts.ops, 50u) << "the workload made too few VFS calls to test anything";
  const bool deterministic = target != Target::kServerCheckpointThread;
  const uint64_t stride = stride_for(counts.ops, deterministic ? 120 : 60);
  size_t cuts = 0, partial = 0, torn = 0;
  for (uint64_t cut = 1; cut <= counts.ops + 1; cut += stride) {
    const CutMode mode = kAllCutModes[(cut / stride) % 4];
    const std::string what = std::string(target_name(target)) + " cut at op " + std::to_string(cut) + "/" +
                             std::to_string(counts.ops) + " mode " + cut_mode_name(mode);
    TempDir dir;
    World w(target, dir);
    vfs().reset();
    vfs().set_domain(w.machine_dir());
    vfs().arm_power_cut(cut);
    if (w.open()) w.run();
    if (deterministic) {
      EXPECT_TRUE(vfs().power_is_off() || cut > counts.ops) << what;
    }
    for (const Status& s : w.a_write_errors())
      EXPECT_TRUE(is_storage_error(s.code())) << what << s.to_string();
    w.close_machine_under_test();
    const FaultVfs::CutReport report = vfs().restore_power(mode, cut);
    partial += report.kept > 0 && report.kept < report.pending ? 1 : 0;
    torn += report.torn;
    w.reopen_and_check(what);
    ++cuts;
    if (::testing::Test::HasFailure()) break;  // the first failing cut is the one to read
  }
  std::printf(
      "%s: %zu cuts over %llu VFS calls (%llu writes, %llu syncs); %zu kept part of the unsynced writes, %zu "
      "torn writes\n",
      target_name(target), cuts, static_cast<unsigned long long>(counts.ops),
      static_cast<unsigned long long>(counts.writes), static_cast<unsigned long long>(counts.syncs), partial,
      torn);
  // The modes must have had something to work on: cuts that kept some unsynced writes but not all, and tears.
  if (deterministic) {
    EXPECT_GT(partial, cuts / 8);
    EXPECT_GT(torn, 0u);
  }
  vfs().reset();
}

// fsync fails (EIO) at every sync point in turn. Like Linux, the VFS then forgets what that sync was to
// flush: a later sync succeeds without it. With group commit the central store must fail stop (SyncService
// aborts on a failed sync(); the store itself refuses every later write and sync, so nothing is acknowledged
// after it); SQLite's own commits (device, server without group commit) fail that one transaction. Then the
// power goes (every unsynced write dropped), and nothing acknowledged or reported committed may be missing.
class SyncFailure : public ::testing::TestWithParam<Target> {};

TEST_P(SyncFailure, AtEverySyncNothingAcknowledgedIsLost) {
  const Target target = GetParam();
  const Counts counts = dry_run(target);
  ASSERT_GT(counts.syncs, 3u);
  const uint64_t stride = stride_for(counts.syncs, 30);
  size_t runs = 0, fail_stops = 0;
  for (uint64_t n = 1; n <= counts.syncs; n += stride) {
    const std::string what = std::string(target_name(target)) + " fsync " + std::to_string(n) + "/" +
                             std::to_string(counts.syncs) + " fails";
    SCOPED_TRACE(what);
    TempDir dir;
    World w(target, dir);
    vfs().reset();
    vfs().set_domain(w.machine_dir());
    vfs().fail_sync(n);
    if (w.open()) {
      w.run();
    }
    for (const Status& s : w.a_write_errors()) EXPECT_EQ(s.code(), ErrorCode::kStorageIo) << s.to_string();
    if (!w.server_failed().is_ok()) {
      ++fail_stops;
      EXPECT_EQ(target, Target::kServerGroupCommit);
      EXPECT_EQ(w.server_failed().code(), ErrorCode::kStorageIo) << w.server_failed().to_string();
      // Fail stop: the store refuses every later write and sync, also with the disk healthy again.
      vfs().clear_faults();
      EXPECT_EQ(w.central_sqlite()->sync().code(), ErrorCode::kStorageIo);
      auto txn = w.central_sqlite()->begin();
      txn->set_node_state(NodeState{0x999, 1});  // a row to write
      EXPECT_EQ(txn->commit().code(), ErrorCode::kStorageIo);
      txn.reset();
      EXPECT_EQ(w.central_sqlite()->sync().code(), ErrorCode::kStorageIo);
    }
    w.close_machine_under_test();
    vfs().restore_power(CutMode::kDropAll, n);
    w.reopen_and_check(what);
    ++runs;
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("%s: %zu failing fsyncs of %llu, %zu fail stops\n", target_name(target), runs,
              static_cast<unsigned long long>(counts.syncs), fail_stops);
  if (target == Target::kServerGroupCommit) {
    EXPECT_GT(fail_stops, 0u);
  }
  vfs().reset();
}

// The disk is full from every write point in turn (SQLITE_FULL, nothing written) until the workload ends;
// then it has room again. A write that failed is kStorageFull and left nothing; the stores are usable
// again (a new write commits and everything syncs), or, for a group the full disk rolled back, the server
// failed stop and a restart recovers. Then the power goes and everything is checked.
class DiskFull : public ::testing::TestWithParam<Target> {};

TEST_P(DiskFull, AtEveryWritePointTypedErrorsNothingHalfAppliedUsableAfter) {
  const Target target = GetParam();
  const Counts counts = dry_run(target);
  const uint64_t stride = stride_for(counts.writes, 40);
  size_t runs = 0, fail_stops = 0;
  for (uint64_t n = 1; n <= counts.writes; n += stride) {
    const std::string what = std::string(target_name(target)) + " disk full from write " + std::to_string(n) +
                             "/" + std::to_string(counts.writes);
    SCOPED_TRACE(what);
    TempDir dir;
    World w(target, dir);
    w.failed_writes_must_be_absent();
    vfs().reset();
    vfs().set_domain(w.machine_dir());
    vfs().fail_writes_from(n);
    const bool opened = w.open();
    if (opened) w.run();
    bool store_stopped = false;
    if (opened && target != Target::kDevice && w.server_failed().is_ok()) {
      // The store itself, while the disk is still full: a commit is refused typed (kStorageFull); with group
      // commit the commit only writes at the group's end, which the full disk rolls back: sync() fails stop.
      auto txn = w.central_sqlite()->begin();
      txn->set_node_state(NodeState{0x999, 1});  // a row to write
      Status s = txn->commit();
      txn.reset();
      if (target == Target::kServerGroupCommit) {
        EXPECT_TRUE(s.is_ok()) << s.to_string();
        EXPECT_EQ(w.central_sqlite()->sync().code(), ErrorCode::kStorageIo);
        store_stopped = true;
      } else {
        EXPECT_EQ(s.code(), ErrorCode::kStorageFull) << s.to_string();
      }
    }
    vfs().clear_faults();
    for (const Status& s : w.a_write_errors()) EXPECT_EQ(s.code(), ErrorCode::kStorageFull) << s.to_string();
    if (!w.server_failed().is_ok()) {
      ++fail_stops;
      EXPECT_EQ(target, Target::kServerGroupCommit);
      EXPECT_EQ(w.server_failed().code(), ErrorCode::kStorageIo) << w.server_failed().to_string();
    } else if (opened && !store_stopped) {
      const Status s = w.continue_after_fault();
      EXPECT_TRUE(s.is_ok()) << "not usable after the disk has room again: " << s.to_string();
      EXPECT_TRUE(w.server_failed().is_ok()) << w.server_failed().to_string();
    }
    w.close_machine_under_test();
    vfs().restore_power(CutMode::kDropAll, n);
    w.reopen_and_check(what);
    ++runs;
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("%s: disk full from %zu write points of %llu, %zu fail stops\n", target_name(target), runs,
              static_cast<unsigned long long>(counts.writes), fail_stops);
  vfs().reset();
}

const auto kTargets = ::testing::Values(Target::kDevice, Target::kServer, Target::kServerGroupCommit);
std::string target_param_name(const ::testing::TestParamInfo<Target>& info) {
  return target_name(info.param);
}
INSTANTIATE_TEST_SUITE_P(Targets, PowerCut,
                         ::testing::Values(Target::kDevice, Target::kServer, Target::kServerGroupCommit,
                                           Target::kServerCheckpointThread),
                         target_param_name);
INSTANTIATE_TEST_SUITE_P(Targets, SyncFailure, kTargets, target_param_name);
INSTANTIATE_TEST_SUITE_P(Targets, DiskFull, kTargets, target_param_name);

// ---- A migration on open, cut anywhere
// A format-1 or format-2 replica (tests/fixtures/replica_v1.sql, replica_v2.sql) is migrated in place in one
// transaction when opened. Cut at every VFS call of that open, in every mode: the open fails with a typed
// error or succeeds, and after the power is back the file opens migrated with the fixture's outbox and
// records, never half.
std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct ReplicaSummary {
  size_t outbox = 0, records = 0;
  NodeId node = 0;
};
ReplicaSummary summarize(SqliteReplicaStore& store) {
  ReplicaSummary out;
  out.outbox = store.begin()->outbox_peek(SIZE_MAX).size();
  auto records = store.records();
  EXPECT_TRUE(records) << records.status().to_string();
  out.records = records ? records->size() : 0;
  out.node = store.node();
  return out;
}

class PowerCutMigration : public ::testing::TestWithParam<const char*> {};

TEST_P(PowerCutMigration, ReplicaCutAnywhereInItsMigration) {
  TempDir fixture;
  const std::string v1 = fixture.path("old.db");
  {
    const std::string sql = slurp(std::string(FIELDSYNC_FIXTURES_DIR) + "/" + GetParam());
    ASSERT_FALSE(sql.empty());
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(v1.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  vfs().reset();
  ReplicaSummary expected;
  uint64_t ops = 0;
  {
    TempDir dir;
    fs::copy_file(v1, dir.path("device/replica.db"));
    vfs().set_domain(dir.path("device/"));
    auto r = SqliteReplicaStore::open(dir.path("device/replica.db"), {});
    ASSERT_TRUE(r) << r.status().to_string();
    ops = vfs().ops();
    expected = summarize(**r);
    r->reset();
    vfs().reset();
  }
  ASSERT_GT(ops, 5u);
  ASSERT_GT(expected.outbox, 0u);
  size_t refused = 0;
  for (uint64_t cut = 1; cut <= ops; ++cut) {
    for (CutMode mode : kAllCutModes) {
      const std::string what =
          "cut at op " + std::to_string(cut) + "/" + std::to_string(ops) + " mode " + cut_mode_name(mode);
      SCOPED_TRACE(what);
      TempDir dir;
      const std::string path = dir.path("device/replica.db");
      fs::copy_file(v1, path);
      vfs().reset();
      vfs().set_domain(dir.path("device/"));
      vfs().arm_power_cut(cut);
      {
        auto r = SqliteReplicaStore::open(path, {});
        if (!r) {
          ++refused;
          EXPECT_TRUE(is_storage_error(r.status().code())) << r.status().to_string();
        }
      }
      vfs().restore_power(mode, cut * 4 + static_cast<uint64_t>(mode));
      auto r = SqliteReplicaStore::open(path, {});
      ASSERT_TRUE(r) << r.status().to_string();
      const ReplicaSummary got = summarize(**r);
      EXPECT_EQ(got.outbox, expected.outbox);
      EXPECT_EQ(got.records, expected.records);
      EXPECT_EQ(got.node, expected.node);
      r->reset();
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
      sqlite3_stmt* q = nullptr;
      ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, nullptr), SQLITE_OK);
      ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
      EXPECT_EQ(sqlite3_column_int(q, 0), client::SqliteReplicaStore::kFormatVersion);
      sqlite3_finalize(q);
      sqlite3_close(db);
      if (::testing::Test::HasFailure()) return;
    }
  }
  std::printf("migration of %s: %llu cut points x 4 modes, %zu opens refused at the cut\n", GetParam(),
              static_cast<unsigned long long>(ops), refused);
  EXPECT_GT(refused, 0u);
  vfs().reset();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PowerCutMigration, ::testing::Values("replica_v1.sql", "replica_v2.sql"),
                         [](const auto& info) { return std::string(info.param).substr(0, 10); });

}  // namespace
}  // namespace fieldsync::powerloss

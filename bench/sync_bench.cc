// One device's big sync through the sync core, in one process and without the network: a SyncClient over a
// SqliteReplicaStore (synchronous=FULL: every acknowledged push and every page durable on the device) and the
// server's SyncService over a SqliteCentralStore with group commit (its flusher thread syncs before any
// answer leaves), every frame through the codec. What it measures is the sync core's share of
// fieldsync-bench-device's figures (which add TLS, WebSocket and the link).
//   BM_SyncPushBacklog/N: N offline account creations (one transaction each, ~262 bytes of values) pushed,
//     from connect to every one acknowledged.
//   BM_SyncBootstrap/N/T: a fresh device of a rep bootstraps N accounts of its territory from a store of T
//     territories (T=1: the store is its territory; T=100: 99 others share as many records again).
// Records per second in items_per_second. docs/PERFORMANCE.md ("One device's big sync: sync core").
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fieldsync/client/sqlite_replica.h"
#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/server/sync_service.h"
#include "fieldsync/sync/client.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/server.h"

namespace fieldsync {
namespace {

using schema::EntityId;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::filesystem::path temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-bench-sync-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

void check(const Status& s, const char* what) {
  if (s) return;
  std::fprintf(stderr, "sync_bench: %s: %s\n", what, s.to_string().c_str());
  std::abort();
}

// The changes creating account `i`: ten changes, ~262 bytes of values (as fieldsync-bench-device's).
std::vector<Change> account_changes(const RecordId& id, uint64_t i, const std::string& territory,
                                    const std::string& user) {
  std::vector<Change> out;
  out.push_back(Change{ChangeOp::kCreate, EntityId::kAccount, id});
  auto add = [&](ChangeOp op, uint16_t field, std::string value) {
    Change c{op, EntityId::kAccount, id, field};
    c.value = Value::text(std::move(value));
    out.push_back(std::move(c));
  };
  const std::string n = std::to_string(i);
  add(ChangeOp::kSet, 1, "Baeckerei Hoffmann GmbH & Co. KG " + n);
  add(ChangeOp::kSet, 2, territory);
  add(ChangeOp::kSet, 3, "Industriestrasse " + std::to_string(1 + i % 180) + ", 22767 Hamburg");
  add(ChangeOp::kSet, 4, "Hamburg");
  add(ChangeOp::kSet, 5, "+49 40 " + std::to_string(1'000'000 + i % 9'000'000));
  add(ChangeOp::kSet, 6, "einkauf@baeckerei-hoffmann-" + std::to_string(i % 997) + ".example.de");
  add(ChangeOp::kSet, 7, std::string(1, static_cast<char>('a' + i % 3)));
  add(ChangeOp::kSet, 10, user);
  add(ChangeOp::kAppend, 9,
      "Delivery only Mon-Fri before 9:00 via the rear entrance; call the day before. Pays by direct debit, "
      "30 days net.");
  return out;
}

class DevAuth final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello& hello, int64_t) override {
    if (hello.token == "ho") return Principal{"ho", schema::Role::kHeadOffice, {}, {}};
    return Principal{"alice", schema::Role::kRep, {"t-000"}, {}};
  }
};

std::unique_ptr<server::SqliteCentralStore> open_central(const std::filesystem::path& dir) {
  server::SqliteCentralStore::Options options;
  options.group_commit = true;
  auto opened = server::SqliteCentralStore::open((dir / "central.db").string(), options);
  if (!opened) check(opened.status(), "open central store");
  return std::move(opened.value());
}

std::unique_ptr<client::SqliteReplicaStore> open_replica(const std::filesystem::path& path, bool full,
                                                         NodeId node) {
  client::SqliteReplicaStore::Options options;
  options.synchronous_full = full;
  options.node = node;
  auto opened = client::SqliteReplicaStore::open(path.string(), options);
  if (!opened) check(opened.status(), "open replica");
  return std::move(opened.value());
}

// One device and the server's SyncService in one process: the device's frames go to SyncService::frame on
// this thread, the service's (released by its flusher after each group sync) come back through a queue.
class Link {
 public:
  Link(server::SqliteCentralStore& store, SyncClient& client) : client_(client) {
    service_ =
        std::make_unique<server::SyncService>(store, auth_, server::SyncService::Options{},
                                              [this](server::Outbound out) { receive(std::move(out)); });
    service_->connect(kSession, wall_ms());
    client_.on_connected(wall_ms());
  }
  ~Link() {
    service_->disconnect(kSession);
    service_.reset();
  }
  // Outbox entries acknowledged so far (the last kPushProgress event).
  uint64_t pushed() const { return pushed_; }

  // Runs the exchange until `done` holds (checked after every message the device handles).
  template <typename Done>
  void run_until(Done done) {
    int64_t last_progress = wall_ms();
    while (!done()) {
      for (protocol::Message& m : client_.take_outgoing()) {
        if (trace_) std::fprintf(stderr, "-> %s\n", protocol::message_name(m));
        std::vector<uint8_t> frame = codec::encode(m);
        service_->frame(kSession, frame, wall_ms());
      }
      for (const ClientEvent& e : client_.take_events())
        if (e.kind == ClientEvent::Kind::kPushProgress) pushed_ = e.done;
      std::deque<server::Frame> frames;
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(5), [&] { return !queue_.empty(); });
        frames.swap(queue_);
      }
      for (const server::Frame& f : frames) {
        Result<protocol::Message> m = codec::decode(*f);
        if (!m) check(m.status(), "decode");
        if (trace_) std::fprintf(stderr, "<- %s\n", protocol::message_name(*m));
        if (const auto* e = std::get_if<protocol::Error>(&*m); e && trace_)
          std::fprintf(stderr, "   %s\n", e->message.c_str());
        client_.on_message(*m, wall_ms());
        last_progress = wall_ms();
      }
      client_.on_tick(wall_ms());
      if (wall_ms() - last_progress > 60'000) {
        std::fprintf(stderr, "sync_bench: no progress for a minute\n");
        std::abort();
      }
    }
  }

 private:
  static constexpr SessionId kSession = 1;
  void receive(server::Outbound out) {
    if (!out.frame) return;
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(out.frame));
    cv_.notify_one();
  }

 private:
  SyncClient& client_;
  const bool trace_ = std::getenv("SYNC_BENCH_TRACE") != nullptr;
  DevAuth auth_;
  std::unique_ptr<server::SyncService> service_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<server::Frame> queue_;
  uint64_t pushed_ = 0;
};

void BM_SyncPushBacklog(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    const std::filesystem::path dir = temp_dir();
    std::unique_ptr<server::SqliteCentralStore> central = open_central(dir);
    {
      // A device that bootstrapped (from the empty store) and then wrote the backlog offline (without fsync:
      // setup only).
      std::unique_ptr<client::SqliteReplicaStore> replica = open_replica(dir / "device.db", false, 77);
      ClientConfig config;
      config.user = "alice";
      config.token = "alice";
      SyncClient writer(*replica, config);
      {
        Link link(*central, writer);
        link.run_until([&] { return writer.idle(); });
      }
      writer.on_disconnected(wall_ms());
      RecordIdGenerator ids(77);
      for (uint64_t i = 0; i < n; ++i) {
        const int64_t now = wall_ms();
        Result<uint64_t> w = writer.write(account_changes(ids.next(now), i, "t-000", "alice"), now);
        if (!w) check(w.status(), "offline write");
      }
    }
    std::unique_ptr<client::SqliteReplicaStore> replica = open_replica(dir / "device.db", true, 77);
    ClientConfig config;
    config.user = "alice";
    config.token = "alice";
    SyncClient client(*replica, config);
    state.ResumeTiming();
    {
      // Connect to every entry acknowledged (what follows, pulling back past its own commits, is not timed).
      Link link(*central, client);
      link.run_until([&] { return link.pushed() == n; });
    }
    state.PauseTiming();
    if (replica->begin()->outbox_size() != 0) check(Status(ErrorCode::kInternal, "outbox not empty"), "push");
    replica.reset();
    central.reset();
    std::filesystem::remove_all(dir);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_SyncPushBacklog)
    ->Arg(10'000)
    ->Arg(30'000)
    ->Arg(100'000)
    ->Arg(300'000)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// A central store holding `n` accounts of t-000 and, with `territories` > 1, as many again spread over
// t-001.., written as head office's (setup: apply_local, synced every 1,000).
std::filesystem::path seeded_store(uint64_t n, int territories) {
  const std::filesystem::path dir = temp_dir();
  std::unique_ptr<server::SqliteCentralStore> central = open_central(dir);
  DevAuth auth;
  SyncServer seeder(*central, auth, ServerConfig{});
  const Principal ho{"ho", schema::Role::kHeadOffice, {}, {}};
  RecordIdGenerator ids(5);
  const uint64_t total = territories > 1 ? 2 * n : n;
  for (uint64_t i = 0; i < total; ++i) {
    const int64_t now = wall_ms();
    char territory[16];
    std::snprintf(territory, sizeof territory, "t-%03d",
                  i < n ? 0 : 1 + static_cast<int>(i % static_cast<uint64_t>(territories - 1)));
    ClientTxn txn;
    txn.node = 5;
    txn.node_seq = i + 1;
    txn.created_at_ms = now;
    txn.changes = account_changes(ids.next(now), i, territory, "ho");
    HybridClock clock(0);
    for (Change& c : txn.changes) c.version = Version{clock.tick(now), 5};
    Result<protocol::TxnResult> r = seeder.apply_local(txn, ho, now);
    if (!r || r->outcome != protocol::TxnOutcome::kApplied)
      check(r ? Status(r->reason, r->message) : r.status(), "seed");
    if (i % 1000 == 999) check(central->sync(), "seed sync");
  }
  check(central->sync(), "seed sync");
  return dir;
}

void BM_SyncBootstrap(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  const std::filesystem::path dir = seeded_store(n, static_cast<int>(state.range(1)));
  std::unique_ptr<server::SqliteCentralStore> central = open_central(dir);
  for (auto _ : state) {
    state.PauseTiming();
    std::filesystem::remove(dir / "device.db");
    std::unique_ptr<client::SqliteReplicaStore> replica = open_replica(dir / "device.db", true, 78);
    ClientConfig config;
    config.user = "alice";
    config.token = "alice";
    SyncClient client(*replica, config);
    state.ResumeTiming();
    {
      Link link(*central, client);
      link.run_until([&] { return client.idle(); });
    }
    state.PauseTiming();
    ReplicaMeta meta = replica->begin()->meta();
    if (!meta.bootstrap_done || meta.bootstrap_received != n)
      check(Status(ErrorCode::kInternal, "bootstrap incomplete: " + std::to_string(meta.bootstrap_received)),
            "bootstrap");
    replica.reset();
    for (const char* suffix : {"", "-wal", "-shm"})
      std::filesystem::remove(dir / (std::string("device.db") + suffix));
    state.ResumeTiming();
  }
  central.reset();
  std::filesystem::remove_all(dir);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_SyncBootstrap)
    ->Args({10'000, 1})
    ->Args({30'000, 1})
    ->Args({100'000, 1})
    ->Args({100'000, 100})
    ->Args({300'000, 1})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace fieldsync

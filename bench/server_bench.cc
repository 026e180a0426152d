// The server's apply path against the real central store, without the network: SyncServer::apply_local
// (dedupe, clock, rules and merge, record save, log entry, scope index, audit rows, commit) into a
// SqliteCentralStore with group commit, flushed every 64 transactions as the service's flusher would. Changes
// per second, to compare with BM_BaselineSqliteBatchedUpsert of the same run: this is the store's share of
// the load benchmark's per-change cost (docs/PERFORMANCE.md).
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "fieldsync/server/sqlite_store.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/server.h"
#include "fieldsync/sync/tuning.h"

namespace fieldsync {
namespace {

using schema::EntityId;

class NoAuth final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello&, int64_t) override {
    return Status(ErrorCode::kAuthFailed, "no sessions in this benchmark");
  }
};

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Args: changes per transaction, in accounts of 8 (create, name, territory, creator, address, city, phone,
// email), like the load generator's; writers, each a rep with its own device and territory, taking turns.
// With one writer every transaction lands on the same index and node pages; with 1,000 (the load
// benchmark's reps) each dirties pages of its own, as under real load.
void BM_CentralApply(benchmark::State& state) {
  const int accounts_per_txn = static_cast<int>(state.range(0)) / 8;
  const int writers = static_cast<int>(state.range(1));
  std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-bench-central-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  const std::filesystem::path dir = tmpl;
  {
    server::SqliteCentralStore::Options options;
    options.group_commit = true;
    auto opened = server::SqliteCentralStore::open((dir / "central.db").string(), options);
    if (!opened) std::abort();
    std::unique_ptr<server::SqliteCentralStore> store = std::move(opened.value());
    NoAuth auth;
    SyncServer server(*store, auth, ServerConfig{});
    struct Writer {
      Principal rep;
      NodeId node;
      RecordIdGenerator ids;
      uint64_t node_seq = 0;
    };
    std::vector<Writer> reps;
    for (int w = 0; w < writers; ++w) {
      const std::string n = std::to_string(w);
      const NodeId node = 0x9e3779b97f4a7c15ULL * static_cast<NodeId>(w + 1);  // spread like random ids
      reps.push_back(
          Writer{Principal{"rep" + n, schema::Role::kRep, {"t" + n}, {}}, node, RecordIdGenerator(node)});
    }
    uint64_t txns = 0;
    uint16_t logical = 0;
    int64_t changes = 0;
    for (auto _ : state) {
      const int64_t now = wall_ms();
      Writer& w = reps[txns++ % reps.size()];
      const uint64_t node_seq = ++w.node_seq;
      ClientTxn txn;
      txn.node = w.node;
      txn.node_seq = node_seq;
      txn.created_at_ms = now;
      for (int a = 0; a < accounts_per_txn; ++a) {
        const RecordId id = w.ids.next(now);
        auto add = [&](ChangeOp op, uint16_t field, Value value) {
          Change c{op, EntityId::kAccount, id, field};
          c.value = std::move(value);
          c.version = Version{make_hlc(now, logical++), w.node};
          txn.changes.push_back(std::move(c));
        };
        const std::string n = std::to_string(node_seq * 1000 + static_cast<uint64_t>(a));
        add(ChangeOp::kCreate, 0, Value::null());
        add(ChangeOp::kSet, 1, Value::text("Bakery " + n));
        add(ChangeOp::kSet, 2, Value::text(w.rep.territories.front()));
        add(ChangeOp::kSet, 10, Value::text(w.rep.user));
        add(ChangeOp::kSet, 3, Value::text("Main Street " + n));
        add(ChangeOp::kSet, 4, Value::text("Springfield"));
        add(ChangeOp::kSet, 5, Value::text("+1 555 " + n));
        add(ChangeOp::kSet, 6, Value::text("shop" + n + "@example.com"));
      }
      Result<protocol::TxnResult> applied = server.apply_local(txn, w.rep, now);
      if (!applied) {
        state.SkipWithError(applied.status().message().c_str());
        break;
      }
      const protocol::TxnResult& r = *applied;
      if (r.outcome != protocol::TxnOutcome::kApplied) {
        state.SkipWithError(r.message.c_str());
        break;
      }
      changes += static_cast<int64_t>(txn.changes.size());
      if (txns % 64 == 0 && !store->sync().is_ok()) std::abort();
    }
    state.SetItemsProcessed(changes);
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_CentralApply)
    ->ArgNames({"changes", "writers"})
    ->Args({8, 1})
    ->Args({96, 1})
    ->Args({8, 1000})
    ->Args({96, 1000})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

class AnyToken final : public Authenticator {
 public:
  explicit AnyToken(Principal who) : who_(std::move(who)) {}
  Result<Principal> authenticate(const protocol::Hello&, int64_t) override { return who_; }

 private:
  Principal who_;
};

// A device's backlog pushed through a session (SyncServer::on_message): pushes of `txns` one-account
// transactions (the 8 changes of BM_CentralApply/changes:8), which the server applies in runs of
// tuning::kMaxTxnsPerStoreTxn transactions a store transaction, synced after every push as the service's
// flusher does before the acknowledgement leaves. Items are accounts (transactions); real time. The
// server's side of fieldsync-bench-device's push, without TLS, codec or the device.
void BM_CentralPush(benchmark::State& state) {
  const size_t txns_per_push = static_cast<size_t>(state.range(0));
  std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-bench-central-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  const std::filesystem::path dir = tmpl;
  {
    server::SqliteCentralStore::Options options;
    options.group_commit = true;
    auto opened = server::SqliteCentralStore::open((dir / "central.db").string(), options);
    if (!opened) std::abort();
    std::unique_ptr<server::SqliteCentralStore> store = std::move(opened.value());
    const Principal rep{"rep0", schema::Role::kRep, {"t0"}, {}};
    AnyToken auth(rep);
    ServerConfig config;
    config.defer_fan_out = true;  // as the service runs it
    SyncServer server(*store, auth, config);
    const NodeId node = 0x9e3779b97f4a7c15ULL;
    RecordIdGenerator ids(node);
    const SessionId session = 1;
    server.on_connect(session, wall_ms());
    protocol::Hello hello;
    hello.schema_version = schema::kSchemaVersion;
    hello.protocol_version = protocol::kProtocolVersion;
    hello.node = node;
    hello.token = "t";
    server.on_message(session, hello, wall_ms());
    (void)server.take_outgoing();
    uint64_t node_seq = 0;
    uint16_t logical = 0;
    int64_t accounts = 0;
    for (auto _ : state) {
      const int64_t now = wall_ms();
      protocol::PushTxns push;
      push.request_id = node_seq + 1;
      for (size_t t = 0; t < txns_per_push; ++t) {
        ClientTxn txn;
        txn.node = node;
        txn.node_seq = ++node_seq;
        txn.created_at_ms = now;
        const RecordId id = ids.next(now);
        auto add = [&](ChangeOp op, uint16_t field, Value value) {
          Change c{op, EntityId::kAccount, id, field};
          c.value = std::move(value);
          c.version = Version{make_hlc(now, logical++), node};
          txn.changes.push_back(std::move(c));
        };
        const std::string n = std::to_string(node_seq);
        add(ChangeOp::kCreate, 0, Value::null());
        add(ChangeOp::kSet, 1, Value::text("Bakery " + n));
        add(ChangeOp::kSet, 2, Value::text("t0"));
        add(ChangeOp::kSet, 10, Value::text(rep.user));
        add(ChangeOp::kSet, 3, Value::text("Main Street " + n));
        add(ChangeOp::kSet, 4, Value::text("Springfield"));
        add(ChangeOp::kSet, 5, Value::text("+1 555 " + n));
        add(ChangeOp::kSet, 6, Value::text("shop" + n + "@example.com"));
        push.txns.push_back(std::move(txn));
      }
      server.on_message(session, push, now);
      if (!store->sync().is_ok()) std::abort();
      if (server.fan_out_pending()) server.fan_out(now);
      bool acked = false;
      for (const SyncServer::Outgoing& o : server.take_outgoing()) {
        if (const auto* ack = std::get_if<protocol::PushAck>(&o.message)) {
          acked = ack->results.size() == txns_per_push;
          for (const protocol::TxnResult& r : ack->results)
            acked &= r.outcome == protocol::TxnOutcome::kApplied;
        }
      }
      if (!acked) {
        state.SkipWithError("a push was not applied whole");
        break;
      }
      accounts += static_cast<int64_t>(txns_per_push);
    }
    state.SetItemsProcessed(accounts);
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_CentralPush)->ArgNames({"txns"})->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

// The server's side of a fresh device's bootstrap, without TLS or the device: a store of `n` accounts of the
// rep's territory t0 (with territories > 1, 99 others holding 0.1 x n each, as fieldsync-bench-device's
// among100 layout), seeded through pushes; each iteration a new session bootstraps all of t0, as a version-2
// device asks (runs of tuning::kMaxBootstrapPagesPerRequest pages), every page encoded as the service sends
// it (compact columns, zstd); arg stored: ServerConfig::stored_pages (1: as SyncService serves pages, 0:
// pages of decoded records). Items are records served. `serve_bootstrap` is a function of its own for
// callgrind's --toggle-collect (docs/PERFORMANCE.md).
std::string seed_value(const char* prefix, uint64_t i) {
  return prefix + std::to_string(i);
}

void seed_accounts(SyncServer& server, SessionId session, NodeId node, uint64_t count, uint64_t& node_seq,
                   const std::string& territory, server::SqliteCentralStore& store) {
  RecordIdGenerator ids(node);
  uint16_t logical = 0;
  for (uint64_t done = 0; done < count;) {
    const int64_t now = wall_ms();
    protocol::PushTxns push;
    push.request_id = node_seq + 1;
    for (; done < count && push.txns.size() < 512; ++done) {
      ClientTxn txn;
      txn.node = node;
      txn.node_seq = ++node_seq;
      txn.created_at_ms = now;
      const RecordId id = ids.next(now);
      auto add = [&](ChangeOp op, uint16_t field, std::string value) {
        Change c{op, EntityId::kAccount, id, field};
        c.value = op == ChangeOp::kCreate ? Value::null() : Value::text(std::move(value));
        c.version = Version{make_hlc(now, logical++), node};
        txn.changes.push_back(std::move(c));
      };
      const uint64_t i = node_seq;
      // ~262 bytes of values, as fieldsync-bench-device's accounts.
      add(ChangeOp::kCreate, 0, "");
      add(ChangeOp::kSet, 1, seed_value("Baeckerei Hoffmann GmbH & Co. KG ", i));
      add(ChangeOp::kSet, 2, territory);
      add(ChangeOp::kSet, 3, "Industriestrasse " + std::to_string(1 + i % 180) + ", 22767 Hamburg");
      add(ChangeOp::kSet, 4, "Hamburg");
      add(ChangeOp::kSet, 5, seed_value("+49 40 ", 1'000'000 + i % 9'000'000));
      add(ChangeOp::kSet, 6, seed_value("einkauf@baeckerei-hoffmann-", i % 997) + ".example.de");
      add(ChangeOp::kSet, 7, std::string(1, static_cast<char>('a' + i % 3)));
      add(ChangeOp::kSet, 10, "rep0");
      add(ChangeOp::kAppend, 9,
          "Delivery only Mon-Fri before 9:00 via the rear entrance; call the day before. Pays by direct "
          "debit, 30 days net.");
      push.txns.push_back(std::move(txn));
    }
    server.on_message(session, push, now);
    if (!store.sync().is_ok()) std::abort();
    for (const SyncServer::Outgoing& o : server.take_outgoing())
      if (const auto* ack = std::get_if<protocol::PushAck>(&o.message))
        for (const protocol::TxnResult& r : ack->results)
          if (r.outcome != protocol::TxnOutcome::kApplied) std::abort();
  }
}

// One whole bootstrap on a new session; returns the records served and adds the encoded bytes to `bytes`.
__attribute__((noinline)) uint64_t serve_bootstrap(SyncServer& server, SessionId session, NodeId node,
                                                   uint64_t& bytes) {
  const int64_t now = wall_ms();
  server.on_connect(session, now);
  protocol::Hello hello;
  hello.schema_version = schema::kSchemaVersion;
  hello.protocol_version = protocol::kProtocolVersion;
  hello.node = node;
  hello.token = "t";
  server.on_message(session, hello, now);
  (void)server.take_outgoing();
  protocol::BootstrapRequest req;
  req.max_pages = static_cast<uint32_t>(tuning::kMaxBootstrapPagesPerRequest);
  uint64_t records = 0;
  for (bool done = false; !done;) {
    ++req.request_id;
    server.on_message(session, req, now);
    bool any = false;
    for (const SyncServer::Outgoing& o : server.take_outgoing()) {
      const auto* page = std::get_if<protocol::BootstrapPage>(&o.message);
      if (page == nullptr) std::abort();  // an error: the bench's store is broken
      bytes += codec::encode(o.message, protocol::kProtocolVersion).size();
      records += page->records.size() + page->stored.size();
      req.snapshot_seq = page->snapshot_seq;
      req.page_token = page->next_page_token;
      done = page->done;
      any = true;
    }
    if (!any) std::abort();
  }
  server.on_disconnect(session);
  return records;
}

void BM_ServerBootstrap(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  const int territories = static_cast<int>(state.range(1));
  std::string tmpl = (std::filesystem::temp_directory_path() / "fieldsync-bench-central-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  const std::filesystem::path dir = tmpl;
  {
    server::SqliteCentralStore::Options options;
    options.group_commit = true;
    auto opened = server::SqliteCentralStore::open((dir / "central.db").string(), options);
    if (!opened) std::abort();
    std::unique_ptr<server::SqliteCentralStore> store = std::move(opened.value());
    const Principal rep{"rep0", schema::Role::kRep, {"t0"}, {}};
    AnyToken auth(rep);
    ServerConfig config;
    config.defer_fan_out = true;
    config.stored_pages = state.range(2) != 0;  // 1: as SyncService serves pages
    SyncServer server(*store, auth, config);
    uint64_t node_seq = 0;
    const NodeId writer = 0x9e3779b97f4a7c15ULL;
    server.on_connect(1, wall_ms());
    protocol::Hello hello;
    hello.schema_version = schema::kSchemaVersion;
    hello.protocol_version = protocol::kProtocolVersion;
    hello.node = writer;
    hello.token = "t";
    server.on_message(1, hello, wall_ms());
    (void)server.take_outgoing();
    // The others' records are written under t0's rep as head office would place them: their territory field
    // differs, which the rules allow a rep only for its own territories, so they go through apply_local.
    seed_accounts(server, 1, writer, n, node_seq, "t0", *store);
    if (territories > 1) {
      const Principal ho{"ho", schema::Role::kHeadOffice, {}, {}};
      RecordIdGenerator ids(7);
      const uint64_t each = n / 10;
      uint16_t logical = 0;
      uint64_t seq = 0;
      for (int t = 1; t < territories; ++t) {
        const std::string territory = "t" + std::to_string(t);
        for (uint64_t i = 0; i < each; ++i) {
          const int64_t now = wall_ms();
          ClientTxn txn;
          txn.node = 7;
          txn.node_seq = ++seq;
          txn.created_at_ms = now;
          const RecordId id = ids.next(now);
          auto add = [&](ChangeOp op, uint16_t field, std::string value) {
            Change c{op, EntityId::kAccount, id, field};
            c.value = op == ChangeOp::kCreate ? Value::null() : Value::text(std::move(value));
            c.version = Version{make_hlc(now, logical++), 7};
            txn.changes.push_back(std::move(c));
          };
          add(ChangeOp::kCreate, 0, "");
          add(ChangeOp::kSet, 1, seed_value("Other GmbH ", seq));
          add(ChangeOp::kSet, 2, territory);
          add(ChangeOp::kSet, 3, "Industriestrasse " + std::to_string(1 + seq % 180) + ", 22767 Hamburg");
          add(ChangeOp::kSet, 10, "ho");
          Result<protocol::TxnResult> r = server.apply_local(txn, ho, now);
          if (!r || r->outcome != protocol::TxnOutcome::kApplied) std::abort();
          if (seq % 1000 == 0 && !store->sync().is_ok()) std::abort();
        }
      }
      if (!store->sync().is_ok()) std::abort();
    }
    server.on_disconnect(1);
    SessionId session = 1;
    uint64_t records = 0, bytes = 0;
    for (auto _ : state) {
      ++session;
      const uint64_t got = serve_bootstrap(server, session, 0x1000 + session, bytes);
      if (got != n) {
        state.SkipWithError("the bootstrap did not serve the territory");
        break;
      }
      records += got;
    }
    state.SetItemsProcessed(static_cast<int64_t>(records));
    if (records > 0) state.counters["bytes_per_record"] = static_cast<double>(bytes) / records;
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_ServerBootstrap)
    ->ArgNames({"records", "territories", "stored"})
    ->Args({20'000, 1, 1})
    ->Args({20'000, 100, 1})
    ->Args({20'000, 1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace fieldsync

// The apply path into the PostgreSQL central store (issue 20), with its baseline measured in the same run:
//   BM_BaselinePgBatchedUpsert   the bare PostgreSQL batched upsert -- INSERT ... ON CONFLICT DO UPDATE of
//                                ~200-byte rows with time-ordered text keys, 1,000 rows per transaction, one
//                                prepared statement per row (as the SQLite baseline binds one per row), the
//                                same durability as the store (synchronous_commit on, fsync on)
//   BM_PgCentralApply/changes:N/instances:I   SyncServer::apply_local of transactions of N changes (accounts
//                                of 8: create plus 7 fields) into PgCentralStore: dedupe, clock, rules and
//                                merge, record save, log entry, scope index, commit. With I instances, I
//                                threads each drive a SyncServer over a PgCentralStore object of its own on
//                                the same database, as I server instances would (different reps).
// Changes per second of wall time; the ratio to the baseline is what docs/PERFORMANCE.md reports.
// Needs FIELDSYNC_PG_URL (scripts/pg-cluster.sh start DIR prints one); each benchmark makes its own database.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fieldsync/server/pg_store.h"
#include "fieldsync/sync/server.h"
#include "pg.h"
#include "pg_baseline.h"

namespace fieldsync {
namespace {

using schema::EntityId;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "pg_bench: %s\n", what.c_str());
  std::exit(1);
}

std::string cluster_url() {
  const char* u = std::getenv("FIELDSYNC_PG_URL");
  if (u == nullptr || !*u) die("set FIELDSYNC_PG_URL (scripts/pg-cluster.sh start DIR prints one)");
  return u;
}

// A database of its own, dropped at the end.
class Database : public bench::ScratchDatabase {
 public:
  explicit Database(const std::string& name) : ScratchDatabase(cluster_url(), name) {}
};

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void BM_BaselinePgBatchedUpsert(benchmark::State& state) {
  bench::PgBatchedUpsertBaseline baseline(cluster_url());
  int64_t rows = 0;
  for (auto _ : state) {
    baseline.run_txn();
    rows += bench::PgBatchedUpsertBaseline::kRowsPerTxn;
  }
  state.SetItemsProcessed(rows);
}
BENCHMARK(BM_BaselinePgBatchedUpsert)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

// The same rows in one statement per transaction (unnest of bound arrays): what a bulk loader would do, the
// ceiling for row-at-a-time writers on this machine. Reported beside the baseline, not as it.
void BM_PgBulkUpsertOneStatement(benchmark::State& state) {
  Database db("fs_bench_bulk");
  auto opened = pg::Conn::open(db.url());
  if (!opened) die(opened.status().to_string());
  pg::Conn& c = **opened;
  if (Status s =
          c.exec_script("SET synchronous_commit = on; CREATE TABLE t (id TEXT COLLATE \"C\" PRIMARY KEY, "
                        "name TEXT, city TEXT, phone TEXT, amount BIGINT, notes TEXT)");
      !s)
    die(s.to_string());
  const std::string notes(120, 'n');
  uint64_t key = 0;
  int64_t rows = 0;
  for (auto _ : state) {
    std::vector<std::string> ids, names, cities, phones, amounts, notes_v;
    for (int i = 0; i < 1000; ++i, ++key) {
      char id[64];
      std::snprintf(id, sizeof id, "0190%012llx-7000-8000-%012llx", static_cast<unsigned long long>(key),
                    static_cast<unsigned long long>(key));
      const std::string n = std::to_string(key);
      ids.emplace_back(id);
      names.push_back("Bakery " + n);
      cities.emplace_back("Springfield");
      phones.push_back("+1 555 " + n);
      amounts.push_back(n);
      notes_v.push_back(notes);
    }
    if (Status s = c.exec(
            "INSERT INTO t (id, name, city, phone, amount, notes) SELECT * FROM unnest($1::text[], "
            "$2::text[], "
            "$3::text[], $4::text[], $5::bigint[], $6::text[]) ON CONFLICT (id) DO UPDATE SET name = "
            "EXCLUDED.name, city = EXCLUDED.city, phone = EXCLUDED.phone, amount = EXCLUDED.amount, notes = "
            "EXCLUDED.notes",
            pg::Params()
                .add(pg::text_array(ids))
                .add(pg::text_array(names))
                .add(pg::text_array(cities))
                .add(pg::text_array(phones))
                .add(pg::text_array(amounts))
                .add(pg::text_array(notes_v)));
        !s)
      die(s.to_string());
    rows += 1000;
  }
  state.SetItemsProcessed(rows);
}
BENCHMARK(BM_PgBulkUpsertOneStatement)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

class NoAuth final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello&, int64_t) override {
    return Status(ErrorCode::kAuthFailed, "no sessions in this benchmark");
  }
};

// One instance: its own store object and SyncServer, its own rep (node id and territory apart from the other
// instances'), kept across iterations so node sequences go on.
struct Instance {
  explicit Instance(const std::string& url, int index) {
    auto opened = server::PgCentralStore::open(url, {});
    if (!opened) die(opened.status().to_string());
    store = std::move(opened.value());
    server = std::make_unique<SyncServer>(*store, auth, ServerConfig{});
    const std::string n = std::to_string(index);
    rep = Principal{"rep" + n, schema::Role::kRep, {"t" + n}, {}};
    node = 0x9e3779b97f4a7c15ULL * static_cast<NodeId>(index + 1);
    ids = std::make_unique<RecordIdGenerator>(node);
  }
  // Applies transactions until `stop`; returns the changes applied.
  int64_t apply_until(int accounts_per_txn, const std::atomic<bool>& stop) {
    int64_t changes = 0;
    while (!stop.load()) {
      const int64_t now = wall_ms();
      ClientTxn txn;
      txn.node = node;
      txn.node_seq = ++node_seq;
      txn.created_at_ms = now;
      for (int a = 0; a < accounts_per_txn; ++a) {
        const RecordId id = ids->next(now);
        auto add = [&](ChangeOp op, uint16_t field, Value value) {
          Change c{op, EntityId::kAccount, id, field};
          c.value = std::move(value);
          c.version = Version{make_hlc(now, logical++), node};
          txn.changes.push_back(std::move(c));
        };
        const std::string k = std::to_string(node_seq * 1000 + static_cast<uint64_t>(a));
        add(ChangeOp::kCreate, 0, Value::null());
        add(ChangeOp::kSet, 1, Value::text("Bakery " + k));
        add(ChangeOp::kSet, 2, Value::text(rep.territories.front()));
        add(ChangeOp::kSet, 10, Value::text(rep.user));
        add(ChangeOp::kSet, 3, Value::text("Main Street " + k));
        add(ChangeOp::kSet, 4, Value::text("Springfield"));
        add(ChangeOp::kSet, 5, Value::text("+1 555 " + k));
        add(ChangeOp::kSet, 6, Value::text("shop" + k + "@example.com"));
      }
      Result<protocol::TxnResult> applied = server->apply_local(txn, rep, now);
      if (!applied) die(applied.status().to_string());
      if (applied->outcome != protocol::TxnOutcome::kApplied) die("not applied: " + applied->message);
      changes += static_cast<int64_t>(txn.changes.size());
      ++txns;
    }
    return changes;
  }

  NoAuth auth;
  std::unique_ptr<server::PgCentralStore> store;
  std::unique_ptr<SyncServer> server;
  Principal rep;
  NodeId node = 0;
  std::unique_ptr<RecordIdGenerator> ids;
  uint64_t node_seq = 0;
  uint16_t logical = 0;
  int64_t txns = 0;
};

// Each iteration is 0.5 s of wall time of every instance applying as fast as it can.
void BM_PgCentralApply(benchmark::State& state) {
  const int accounts_per_txn = static_cast<int>(state.range(0)) / 8;
  const int instances = static_cast<int>(state.range(1));
  Database db("fs_bench_apply");
  std::vector<std::unique_ptr<Instance>> all;
  for (int i = 0; i < instances; ++i) all.push_back(std::make_unique<Instance>(db.url(), i));
  int64_t changes = 0;
  for (auto _ : state) {
    std::atomic<bool> stop{false};
    std::vector<int64_t> per(all.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < all.size(); ++i)
      threads.emplace_back([&, i] { per[i] = all[i]->apply_until(accounts_per_txn, stop); });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    stop = true;
    for (auto& t : threads) t.join();
    for (int64_t c : per) changes += c;
  }
  int64_t txns = 0;
  for (auto& i : all) txns += i->txns;
  state.SetItemsProcessed(changes);
  state.counters["txns"] = benchmark::Counter(static_cast<double>(txns), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PgCentralApply)
    ->ArgNames({"changes", "instances"})
    ->Args({8, 1})
    ->Args({8, 2})
    ->Args({96, 1})
    ->Args({96, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);

}  // namespace
}  // namespace fieldsync

// client-core's SQLite replica. Bootstrap apply rate: 100k account records delivered as 500-record
// BootstrapPage messages to a SyncClient over a SqliteReplicaStore (driven as the server would: on_connected,
// Welcome, then each page answering the client's BootstrapRequest), against a bare batched insert of the same
// rows (same table from schema::create_table_sql, same typed columns, the same pre-encoded _meta blob, one
// transaction per 500 rows) in the same run. Both with synchronous=FULL (the replica's default: every page
// durable) and NORMAL. Target (issue 3): the replica at least 50% of the bare rate.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fieldsync/client/sqlite_replica.h"
#include "fieldsync/schema/ddl.h"
#include "fieldsync/sync/client.h"
#include "fieldsync/sync/codec.h"
#include "realistic_accounts.h"

namespace fieldsync {
namespace {

constexpr size_t kRecords = 100'000;
constexpr size_t kPageSize = 500;  // tuning's default bootstrap page size
constexpr int64_t kNow = 1'760'000'000'000;
namespace f = schema::fields;

const std::vector<RecordState>& records() {
  static const std::vector<RecordState> all = [] {
    std::vector<RecordState> out;
    out.reserve(kRecords);
    RecordIdGenerator gen(7);
    for (size_t i = 0; i < kRecords; ++i) {
      RecordState r;
      r.entity = EntityId::kAccount;
      r.id = gen.next(kNow - 86'400'000 + static_cast<int64_t>(i));
      const Version v{(static_cast<Hlc>(kNow - 1000) << 16) + i, 1};
      r.created = v;
      auto put = [&](uint16_t field, std::string text) {
        FieldState* fs = r.mutable_field(field);
        fs->value = Value::text(std::move(text));
        fs->version = v;
        fs->user = "ho";
      };
      put(f::kAccountName, "Bakery Nord GmbH " + std::to_string(i));
      put(f::kAccountTerritory, "t-north");
      put(4, "Hamburg");
      put(5, "+49 40 1234567");
      put(10, "ho");
      out.push_back(std::move(r));
    }
    return out;
  }();
  return all;
}

std::string temp_path() {
  char path[] = "/tmp/fieldsync-replica-bench-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) std::abort();
  close(fd);
  unlink(path);
  return path;
}

void remove_db(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) unlink((path + suffix).c_str());
}

uint64_t request_id_of(std::vector<protocol::Message> out) {
  for (const protocol::Message& m : out) {
    if (const auto* r = std::get_if<protocol::BootstrapRequest>(&m)) return r->request_id;
  }
  std::fprintf(stderr, "replica_bench: the client asked for no bootstrap page\n");
  std::abort();
}

// Connects a never-synced client to a server whose log ends at `server_seq`: Hello, Welcome. Returns the
// request id of the first BootstrapRequest the client sends.
uint64_t connect_fresh(SyncClient& client, uint64_t server_seq) {
  client.on_connected(kNow);
  (void)client.take_outgoing();  // Hello
  protocol::Welcome welcome;
  welcome.schema_version = schema::kSchemaVersion;
  welcome.user = "alice";
  welcome.server_seq = server_seq;
  welcome.server_hlc = static_cast<Hlc>(kNow) << 16;
  welcome.server_time_ms = kNow;
  client.on_message(welcome, kNow);
  return request_id_of(client.take_outgoing());
}

// A fresh replica applies `all` as bootstrap pages of kPageSize records, one page a transaction, as a device
// does (SyncClient::on_message). Shared by the two record shapes below.
void bootstrap_apply(benchmark::State& state, const std::vector<RecordState>& all) {
  const bool full = state.range(0) != 0;
  std::vector<protocol::Message> pages;
  for (size_t first = 0; first < all.size(); first += kPageSize) {
    protocol::BootstrapPage p;
    p.snapshot_seq = 1;
    p.total_records = all.size();
    p.records_before = first;
    p.records.assign(all.begin() + static_cast<ptrdiff_t>(first),
                     all.begin() + static_cast<ptrdiff_t>(std::min(first + kPageSize, all.size())));
    p.done = first + kPageSize >= all.size();
    p.next_page_token = p.done ? "" : std::to_string(first + kPageSize);
    pages.emplace_back(std::move(p));
  }
  for (auto _ : state) {
    state.PauseTiming();
    const std::string path = temp_path();
    client::SqliteReplicaStore::Options options;
    options.synchronous_full = full;
    auto store = client::SqliteReplicaStore::open(path, options);
    if (!store) std::abort();
    ClientConfig config;
    config.user = "alice";
    SyncClient client(**store, config);
    state.ResumeTiming();

    uint64_t request = connect_fresh(client, 1);
    for (protocol::Message& m : pages) {
      std::get<protocol::BootstrapPage>(m).request_id = request;
      client.on_message(m, kNow);
      (void)client.take_events();
      std::vector<protocol::Message> out = client.take_outgoing();
      // A version 2 client asks for runs of pages: a new request only once the last page of a run arrived.
      if (!std::get<protocol::BootstrapPage>(m).done && !out.empty()) request = request_id_of(std::move(out));
    }

    state.PauseTiming();
    {
      auto txn = (*store)->begin();
      if (!txn->meta().bootstrap_done || txn->meta().bootstrap_received != all.size()) {
        std::fprintf(stderr, "replica_bench: bootstrap did not complete\n");
        std::abort();
      }
    }
    store.value().reset();
    remove_db(path);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * all.size()));
}

void BM_ReplicaBootstrapApply(benchmark::State& state) {
  bootstrap_apply(state, records());
}

// The accounts fieldsync-bench-device bootstraps (realistic_accounts.h: ten fields, ~262 bytes of values, a
// version per field, the note as a fragment), where BM_ReplicaBootstrapApply's have five fields and ~50
// bytes: the same-run baseline for that bench's "x local apply" ratio, like for like (docs/PERFORMANCE.md,
// "Stop 21").
const std::vector<RecordState>& realistic_accounts() {
  static const std::vector<RecordState> all = [] {
    std::vector<RecordState> out;
    out.reserve(kRecords);
    RecordIdGenerator gen(7);
    for (size_t i = 0; i < kRecords; ++i) {
      const Hlc hlc = (static_cast<Hlc>(kNow - 1000) << 16) + 16 * i;
      out.push_back(bench::account_state(gen.next(kNow - 86'400'000 + static_cast<int64_t>(i)),
                                         bench::account_values(i), "t042", "rep042", hlc, 1));
    }
    return out;
  }();
  return all;
}

void BM_ReplicaBootstrapApplyAccounts(benchmark::State& state) {
  bootstrap_apply(state, realistic_accounts());
}
BENCHMARK(BM_ReplicaBootstrapApplyAccounts)
    ->ArgName("sync_full")
    ->Arg(1)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_ReplicaBootstrapApply)
    ->ArgName("sync_full")
    ->Arg(1)
    ->Arg(0)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "replica_bench: %s: %s\n", what, sqlite3_errmsg(db));
    std::abort();
  }
}

// Live changes arriving at a synced replica: 20,000 new accounts, each one server transaction of 5 changes
// (create plus four fields, as another rep's new customer arrives), in live batches of 100 transactions.
// Items are changes applied.
void BM_ReplicaLiveBatchApply(benchmark::State& state) {
  constexpr size_t kTxns = 20'000;
  constexpr size_t kTxnsPerBatch = 100;
  const std::vector<RecordState>& all = records();
  std::vector<protocol::ChangeBatch> batches;
  size_t changes = 0;
  for (size_t first = 0; first < kTxns; first += kTxnsPerBatch) {
    protocol::ChangeBatch b;
    b.from_cursor = first;
    b.to_cursor = first + kTxnsPerBatch;
    for (size_t i = first; i < first + kTxnsPerBatch; ++i) {
      const RecordState& r = all[i];
      ServerTxn t;
      t.server_seq = i + 1;
      t.origin_node = 2;
      t.origin_user = "bob";
      t.origin_node_seq = i + 1;
      Change create{ChangeOp::kCreate, EntityId::kAccount, r.id};
      create.version = r.created;
      t.changes.push_back(create);
      for (const FieldState& fs : r.fields) {
        Change c{ChangeOp::kSet, EntityId::kAccount, r.id, fs.field};
        c.value = fs.value;
        c.version = fs.version;
        t.changes.push_back(c);
        if (t.changes.size() == 5) break;
      }
      changes += t.changes.size();
      b.txns.push_back(std::move(t));
    }
    b.server_hlc = static_cast<Hlc>(kNow) << 16;
    batches.push_back(std::move(b));
  }
  for (auto _ : state) {
    state.PauseTiming();
    const std::string path = temp_path();
    client::SqliteReplicaStore::Options options;
    options.synchronous_full = false;
    auto store = client::SqliteReplicaStore::open(path, options);
    if (!store) std::abort();
    ClientConfig config;
    config.user = "alice";
    SyncClient client(**store, config);
    protocol::BootstrapPage empty;
    empty.request_id = connect_fresh(client, 0);
    empty.snapshot_seq = 0;
    empty.done = true;
    client.on_message(empty, kNow);  // synced, empty; the pull it sends is answered by the first batch
    (void)client.take_outgoing();
    state.ResumeTiming();

    for (const protocol::ChangeBatch& b : batches) client.on_message(b, kNow);

    state.PauseTiming();
    if ((*store)->begin()->meta().cursor != kTxns) {
      std::fprintf(stderr, "replica_bench: live batches were not applied\n");
      std::abort();
    }
    store.value().reset();
    remove_db(path);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * changes));
}
BENCHMARK(BM_ReplicaLiveBatchApply)->Iterations(3)->UseRealTime()->Unit(benchmark::kMillisecond);

// The same rows, straight into the same table: what the bootstrap would cost with no sync layer at all.
void BM_BareBatchedInsert(benchmark::State& state) {
  const bool full = state.range(0) != 0;
  const std::vector<RecordState>& all = records();
  std::vector<std::vector<uint8_t>> blobs;
  std::vector<std::string> keys;
  for (const RecordState& r : all) {
    blobs.push_back(codec::encode_record(r));
    keys.push_back(r.id.to_string());
  }
  const schema::EntityDef& account = schema::entity_ref(EntityId::kAccount);
  for (auto _ : state) {
    state.PauseTiming();
    const std::string path = temp_path();
    sqlite3* db = nullptr;
    check(sqlite3_open(path.c_str(), &db), db, "open");
    check(sqlite3_exec(db,
                       full ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"
                            : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                       nullptr, nullptr, nullptr),
          db, "pragma");
    check(sqlite3_exec(db, schema::create_table_sql(account).c_str(), nullptr, nullptr, nullptr), db,
          "table");
    for (const std::string& sql : schema::create_index_sql(account))
      check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), db, "index");
    sqlite3_stmt* insert = nullptr;
    check(
        sqlite3_prepare_v2(db,
                           "INSERT INTO account (id, name, territory_id, city, phone, created_by, _deleted, "
                           "_meta) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                           -1, &insert, nullptr),
        db, "prepare");
    state.ResumeTiming();

    for (size_t first = 0; first < all.size(); first += kPageSize) {
      check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
      for (size_t i = first; i < std::min(first + kPageSize, all.size()); ++i) {
        const RecordState& r = all[i];
        sqlite3_bind_text(insert, 1, keys[i].data(), static_cast<int>(keys[i].size()), SQLITE_STATIC);
        int col = 2;
        for (uint16_t field :
             {f::kAccountName, f::kAccountTerritory, uint16_t{4}, uint16_t{5}, uint16_t{10}}) {
          const std::string& text = r.get(field).as_text();
          sqlite3_bind_text(insert, col++, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
        }
        sqlite3_bind_blob(insert, 7, blobs[i].data(), static_cast<int>(blobs[i].size()), SQLITE_STATIC);
        check(sqlite3_step(insert), db, "insert");
        sqlite3_reset(insert);
      }
      check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
    }

    state.PauseTiming();
    sqlite3_finalize(insert);
    sqlite3_close(db);
    remove_db(path);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * all.size()));
}
BENCHMARK(BM_BareBatchedInsert)
    ->ArgName("sync_full")
    ->Arg(1)
    ->Arg(0)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace fieldsync

// Merge throughput: the server's whole path for client transactions over the in-memory central store, and the
// pure merge_change underneath it.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>

#include "fieldsync/sync/merge.h"
#include "fieldsync/sync/rules.h"
#include "support/memory_store.h"

namespace fieldsync {
namespace {

using schema::EntityId;
namespace f = schema::fields;

constexpr size_t kRecords = 10'000;
constexpr size_t kChanges = 100'000;
constexpr size_t kChangesPerTxn = 100;
constexpr NodeId kNodes = 8;
constexpr uint16_t kSetFields[] = {f::kAccountName, 3, 4, 5};  // name, address, city, phone
constexpr uint16_t kAccountNotes = 9;
constexpr uint16_t kAccountCreatedBy = 10;

const Principal kRep{"ann", schema::Role::kRep, {"north"}, {}};

RecordId account_id(size_t i) {
  // uint64_t first: a 32-bit size_t (armhf) would shift out of range and narrow.
  const uint64_t n = i;
  return RecordId{0x0190'0000'0000'7000 + (n << 16), 0x8000'0000'0000'0000 + n};
}

Change make(ChangeOp op, size_t record, uint16_t field, Value value, Version version) {
  Change c;
  c.op = op;
  c.entity = EntityId::kAccount;
  c.record = account_id(record);
  c.field = field;
  c.value = std::move(value);
  c.version = version;
  return c;
}

// Accounts in the rep's territory, created in transactions of kChangesPerTxn changes.
std::vector<ClientTxn> seed_txns(Hlc& hlc) {
  std::vector<ClientTxn> txns;
  ClientTxn t;
  for (size_t i = 0; i < kRecords; ++i) {
    const NodeId node = 1;
    t.changes.push_back(make(ChangeOp::kCreate, i, 0, {}, Version{++hlc, node}));
    t.changes.push_back(
        make(ChangeOp::kSet, i, f::kAccountName, Value::text("Account"), Version{++hlc, node}));
    t.changes.push_back(
        make(ChangeOp::kSet, i, f::kAccountTerritory, Value::text("north"), Version{++hlc, node}));
    t.changes.push_back(make(ChangeOp::kSet, i, kAccountCreatedBy, Value::text("ann"), Version{++hlc, node}));
    if (t.changes.size() >= kChangesPerTxn) {
      t.node = node;
      t.node_seq = txns.size() + 1;
      txns.push_back(std::move(t));
      t = ClientTxn{};
    }
  }
  if (!t.changes.empty()) {
    t.node = 1;
    t.node_seq = txns.size() + 1;
    txns.push_back(std::move(t));
  }
  return txns;
}

// kChanges edits from kNodes devices: three quarters sets of last-writer-wins fields (base zero, so
// overwrites of another device's value are logged as conflicts), one quarter note fragments.
std::vector<ClientTxn> edit_txns(Hlc& hlc) {
  std::mt19937_64 rng(7);
  std::vector<ClientTxn> txns;
  std::vector<uint64_t> seq(kNodes + 1, 1'000'000);
  for (size_t done = 0; done < kChanges; done += kChangesPerTxn) {
    ClientTxn t;
    t.node = 1 + rng() % kNodes;
    t.node_seq = ++seq[t.node];
    for (size_t i = 0; i < kChangesPerTxn; ++i) {
      size_t record = rng() % kRecords;
      Version v{++hlc, t.node};
      if (rng() % 4 == 0) {
        t.changes.push_back(
            make(ChangeOp::kAppend, record, kAccountNotes, Value::text("called, left a message"), v));
      } else {
        uint16_t field = kSetFields[rng() % std::size(kSetFields)];
        t.changes.push_back(make(ChangeOp::kSet, record, field,
                                 Value::text(std::string("value ").append(std::to_string(rng() % 1000))), v));
      }
    }
    txns.push_back(std::move(t));
  }
  return txns;
}

// What the server does per transaction: apply on the store's transaction, save, log, commit.
void apply_and_commit(MemoryCentralStore& store, const ClientTxn& txn) {
  std::unique_ptr<CentralTxn> tx = store.begin();
  CheckedTxnReader reader(*tx);
  Result<TxnApplication> r = apply_client_txn(txn, kRep, reader);
  if (!r.is_ok()) std::abort();  // the generated workload is valid; a rejection is a bug
  for (const RecordState& rec : r->records) tx->save(rec);
  ServerTxn st;
  st.origin_node = txn.node;
  st.origin_user = kRep.user;
  st.origin_node_seq = txn.node_seq;
  st.changes = std::move(r->effective);
  std::vector<ScopeKey> scopes = log_scopes(st, r->conflicts, reader);
  tx->append_log(std::move(st), std::move(r->conflicts), std::move(scopes));
  if (!tx->commit().is_ok()) std::abort();
}

void BM_MergeIntoMemoryStore(benchmark::State& state) {
  Hlc hlc = 1'000'000;
  const std::vector<ClientTxn> seed = seed_txns(hlc);
  const std::vector<ClientTxn> edits = edit_txns(hlc);
  size_t conflicts = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto store = std::make_unique<MemoryCentralStore>();
    for (const ClientTxn& t : seed) apply_and_commit(*store, t);
    state.ResumeTiming();
    for (const ClientTxn& t : edits) apply_and_commit(*store, t);
    state.PauseTiming();
    conflicts = store->conflicts().size();
    store.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kChanges));
  state.counters["conflicts"] = static_cast<double>(conflicts);
}
BENCHMARK(BM_MergeIntoMemoryStore)->Unit(benchmark::kMillisecond);

// merge_change alone on one record of eight fields: every write wins, and one in four overwrites another
// node's value it had not seen (a logged conflict).
void BM_MergeChangePure(benchmark::State& state) {
  RecordState rec{EntityId::kAccount, account_id(0)};
  std::vector<ConflictRecord> conflicts;
  Change c = make(ChangeOp::kSet, 0, f::kAccountName, Value::text("a value of typical length"), Version{});
  Hlc hlc = 1;
  uint64_t i = 0;
  for (auto _ : state) {
    c.field = static_cast<uint16_t>(1 + i % 8);
    const FieldState* cur = rec.field(c.field);
    c.base = (cur != nullptr && i % 4 != 0) ? cur->version : Version{};
    c.version = Version{++hlc, 1 + i % 2};
    benchmark::DoNotOptimize(merge_change(rec, c, "ann", &conflicts));
    if (conflicts.size() > 1024) conflicts.clear();
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_MergeChangePure);

}  // namespace
}  // namespace fieldsync

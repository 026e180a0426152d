// Local write latency through FieldClient (validation, SyncClient::write: record states, outbox entry and
// sync meta in one SQLite transaction) against a bare SQLite insert of the same rows, measured interleaved in
// the same run, same file system, same journal mode and synchronous setting. Each iteration times one API
// write and one bare write; p50/p99 of each and their ratios are reported as counters.
//
//   build/bin/fieldsync-bench-client --benchmark_filter=FieldClient
//
// Arg 1: synchronous=FULL (the replica's default: fsync on every commit); arg 0: WAL + NORMAL.
//
// Under qemu-user with FIELDSYNC_GUEST_INSNS set, each API write and each bare write is also a region for the
// instruction-counting plugin (bench/guest_insns.h, scripts/guest-insns.sh): tags 1 / 2 are the check-in and
// its bare insert at NORMAL, 11 / 12 at FULL; 3 / 4 and 13 / 14 the order with 20 lines; 0 an empty region.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fieldsync/client/field_client.h"
#include "fieldsync/schema/ddl.h"
#include "fieldsync/sync/codec.h"
#include "fieldsync/sync/server.h"
#include "guest_insns.h"
#include "support/memory_store.h"

namespace fieldsync::client {
namespace {

constexpr int kLines = 20;

void die(const std::string& what) {
  std::fprintf(stderr, "client_bench: %s\n", what.c_str());
  std::abort();
}

template <typename T>
T must(Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.status().to_string());
  return std::move(r).value();
}

std::string temp_path(const char* tag) {
  char path[] = "/tmp/fieldsync-client-bench-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) die("mkstemp");
  close(fd);
  std::filesystem::remove(path);
  return std::string(path) + "-" + tag + ".db";
}

void remove_db(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class AllowAll final : public Authenticator {
 public:
  Result<Principal> authenticate(const protocol::Hello&, int64_t) override {
    return Principal{"rep", schema::Role::kRep, {"t-bench"}, {}};
  }
};

// A replica with one account and 20 synced products, as a rep's phone has after its first sync.
struct Fixture {
  std::unique_ptr<FieldClient> client;
  std::string path;
  std::string account;
  std::vector<std::string> products;
};

Fixture make_fixture(bool sync_full) {
  Fixture f;
  f.path = temp_path("api");
  FieldClient::Options o;
  o.user = "rep";
  o.token = "t";
  o.synchronous_full = sync_full;
  f.client = must(FieldClient::open(f.path, o), "open");

  MemoryCentralStore store;
  AllowAll auth;
  SyncServer server(store, auth, ServerConfig{});
  RecordIdGenerator ids(5);
  ClientTxn txn;
  txn.node = 9;
  txn.node_seq = 1;
  txn.created_at_ms = now_ms();
  Hlc hlc = make_hlc(now_ms(), 0);
  for (int i = 0; i < kLines; ++i) {
    const RecordId id = ids.next(now_ms());
    f.products.push_back(id.to_string());
    auto add = [&](ChangeOp op, uint16_t field, Value v) {
      Change c{op, EntityId::kProduct, id, field};
      c.value = std::move(v);
      c.version = Version{hlc++, 9};
      txn.changes.push_back(std::move(c));
    };
    add(ChangeOp::kCreate, 0, Value());
    add(ChangeOp::kSet, 1, Value::text("SKU-" + std::to_string(i)));
    add(ChangeOp::kSet, 2, Value::text("Product " + std::to_string(i)));
    add(ChangeOp::kSet, 4, Value::boolean(true));
  }
  if (server.apply_local(txn, Principal{"ho", schema::Role::kHeadOffice, {}, {}}, now_ms()).value().outcome !=
      protocol::TxnOutcome::kApplied)
    die("catalogue not applied");
  f.account = must(f.client->create_account({.name = "Bakery", .territory_id = "t-bench"}), "account");
  server.on_connect(1, now_ms());
  f.client->engine().connected(now_ms());
  for (int round = 0; round < 100; ++round) {
    bool moved = false;
    for (auto& frame : f.client->engine().take_frames()) {
      moved = true;
      server.on_message(1, must(codec::decode(frame), "decode"), now_ms());
    }
    for (auto& out : server.take_outgoing()) {
      moved = true;
      f.client->engine().frame(codec::encode(out.message), now_ms());
    }
    if (!moved) break;
  }
  f.client->engine().disconnected(now_ms());
  f.client->dispatch_events();
  if (must(f.client->pending_count(), "pending") != 0) die("fixture did not sync");
  return f;
}

// The bare baseline: the same tables (schema::all_ddl()), rows with the same typed values, one transaction
// per write, prepared statements, no validation, no blobs, no outbox.
class Bare {
 public:
  explicit Bare(bool sync_full) : path_(temp_path("bare")) {
    if (sqlite3_open(path_.c_str(), &db_) != SQLITE_OK) die("bare open");
    exec(sync_full ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"
                   : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
    for (const std::string& sql : schema::all_ddl()) exec(sql.c_str());
    visit_ = prepare(
        "INSERT INTO \"visit\"(id, account_id, rep_id, check_in_at, latitude, longitude) "
        "VALUES(?,?,?,?,?,?)");
    order_ = prepare("INSERT INTO \"order\"(id, account_id, rep_id, status, currency) VALUES(?,?,?,?,?)");
    line_ = prepare(
        "INSERT INTO \"order_line\"(id, order_id, product_id, quantity, unit_price_cents) VALUES(?,?,?,?,?)");
  }
  ~Bare() {
    sqlite3_finalize(visit_);
    sqlite3_finalize(order_);
    sqlite3_finalize(line_);
    sqlite3_close(db_);
    remove_db(path_);
  }
  // Not inlined, so that a profile (callgrind --toggle-collect) can count its instructions apart.
  [[gnu::noinline]] void check_in(const std::string& id, const std::string& account, int64_t at) {
    exec("BEGIN");
    bind(visit_, 1, id);
    bind(visit_, 2, account);
    bind(visit_, 3, "rep");
    sqlite3_bind_int64(visit_, 4, at);
    sqlite3_bind_double(visit_, 5, 54.32);
    sqlite3_bind_double(visit_, 6, 10.13);
    step(visit_);
    exec("COMMIT");
  }
  [[gnu::noinline]] void order(const std::string& id, const std::string& account,
                               const std::vector<std::string>& line_ids,
                               const std::vector<std::string>& products) {
    exec("BEGIN");
    bind(order_, 1, id);
    bind(order_, 2, account);
    bind(order_, 3, "rep");
    bind(order_, 4, "draft");
    bind(order_, 5, "EUR");
    step(order_);
    for (size_t i = 0; i < line_ids.size(); ++i) {
      bind(line_, 1, line_ids[i]);
      bind(line_, 2, id);
      bind(line_, 3, products[i]);
      sqlite3_bind_int64(line_, 4, 3);
      sqlite3_bind_int64(line_, 5, 199);
      step(line_);
    }
    exec("COMMIT");
  }

 private:
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) die(sqlite3_errmsg(db_));
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) die(sqlite3_errmsg(db_));
    return s;
  }
  static void bind(sqlite3_stmt* s, int col, const std::string& v) {
    sqlite3_bind_text(s, col, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void step(sqlite3_stmt* s) {
    if (sqlite3_step(s) != SQLITE_DONE) die(sqlite3_errmsg(db_));
    sqlite3_reset(s);
  }
  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* visit_ = nullptr;
  sqlite3_stmt* order_ = nullptr;
  sqlite3_stmt* line_ = nullptr;
};

double percentile_us(std::vector<double>& ns, double p) {
  if (ns.empty()) return 0;
  std::sort(ns.begin(), ns.end());
  const size_t i = std::min(ns.size() - 1, static_cast<size_t>(p * static_cast<double>(ns.size() - 1) + 0.5));
  return ns[i] / 1000.0;
}

void report(benchmark::State& state, std::vector<double>& api, std::vector<double>& bare) {
  const double api50 = percentile_us(api, 0.50), api99 = percentile_us(api, 0.99);
  const double bare50 = percentile_us(bare, 0.50), bare99 = percentile_us(bare, 0.99);
  state.counters["api_p50_us"] = api50;
  state.counters["api_p99_us"] = api99;
  state.counters["bare_p50_us"] = bare50;
  state.counters["bare_p99_us"] = bare99;
  state.counters["ratio_p50"] = bare50 > 0 ? api50 / bare50 : 0;
  state.counters["ratio_p99"] = bare99 > 0 ? api99 / bare99 : 0;
}

template <typename F>
double time_ns(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
}

// The plugin's tags (bench/guest_insns.h) of an API write and its bare counterpart.
constexpr long kTagCheckIn = 1, kTagBareCheckIn = 2, kTagOrder = 3, kTagBareOrder = 4;
constexpr long kTagFull = 10;  // added at synchronous=FULL

void BM_FieldClientCheckIn(benchmark::State& state) {
  const bool full = state.range(0) != 0;
  const long tags = full ? kTagFull : 0;
  Fixture f = make_fixture(full);
  Bare bare(full);
  RecordIdGenerator ids(7);
  std::vector<double> api_ns, bare_ns;
  for (auto _ : state) {
    bench::guest_insn_region(0, [] {});
    api_ns.push_back(time_ns([&] {
      bench::guest_insn_region(tags + kTagCheckIn, [&] {
        must(f.client->check_in({.account_id = f.account, .latitude = 54.32, .longitude = 10.13}),
             "check in");
      });
    }));
    // The bare insert's id and time are taken before its region, as an app's would be: the region is the
    // SQLite insert alone (a clock reading with duration_cast is a 64-bit division in libgcc on 32-bit ARM,
    // which would count against the baseline and flatter armhf's ratio).
    const std::string id = ids.next(now_ms()).to_string();
    const int64_t at = now_ms();
    bare_ns.push_back(time_ns([&] {
      bench::guest_insn_region(tags + kTagBareCheckIn, [&] { bare.check_in(id, f.account, at); });
    }));
  }
  report(state, api_ns, bare_ns);
  f.client.reset();
  remove_db(f.path);
}
BENCHMARK(BM_FieldClientCheckIn)->Arg(1)->Arg(0)->Iterations(400)->Unit(benchmark::kMicrosecond);

void BM_FieldClientOrder20Lines(benchmark::State& state) {
  const bool full = state.range(0) != 0;
  const long tags = full ? kTagFull : 0;
  Fixture f = make_fixture(full);
  Bare bare(full);
  RecordIdGenerator ids(7);
  std::vector<NewLine> lines;
  for (const std::string& p : f.products)
    lines.push_back({.product_id = p, .quantity = 3, .unit_price_cents = 199});
  std::vector<double> api_ns, bare_ns;
  for (auto _ : state) {
    api_ns.push_back(time_ns([&] {
      bench::guest_insn_region(tags + kTagOrder, [&] {
        must(f.client->draft_order_with_lines(f.account, "EUR", lines), "order");
      });
    }));
    const std::string id = ids.next(now_ms()).to_string();
    std::vector<std::string> line_ids;
    for (int i = 0; i < kLines; ++i) line_ids.push_back(ids.next(now_ms()).to_string());
    bare_ns.push_back(time_ns([&] {
      bench::guest_insn_region(tags + kTagBareOrder,
                               [&] { bare.order(id, f.account, line_ids, f.products); });
    }));
  }
  report(state, api_ns, bare_ns);
  f.client.reset();
  remove_db(f.path);
}
BENCHMARK(BM_FieldClientOrder20Lines)->Arg(1)->Arg(0)->Iterations(200)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace fieldsync::client

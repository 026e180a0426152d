// Codec cost and wire size of a realistic push: 50 transactions of 20 changes each (an order with two lines
// per transaction: ids as UUID text, a user id, enum text, money as integer cents, timestamps, a note
// fragment). And the bytes on the wire per account record (realistic_accounts.h, ~262 bytes of values) in
// a push of account-creating transactions and in a bootstrap page, in each frame form (v1; v2 compact; v2
// compact and zstd-compressed at several levels), with the encode and decode rates of each.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "fieldsync/sync/codec.h"
#include "realistic_accounts.h"

namespace fieldsync {
namespace {

constexpr int kTxns = 50;
constexpr int kChangesPerTxn = 20;
constexpr int64_t kChanges = kTxns * kChangesPerTxn;
constexpr NodeId kNode = 0x5eed'1234'abcd'0042ULL;
constexpr int64_t kStartMs = 1'718'000'000'000;

// UUIDv7-shaped ids without depending on RecordIdGenerator: time-ordered high half, random-looking low half.
RecordId make_id(uint64_t n) {
  return RecordId{(static_cast<uint64_t>(kStartMs + static_cast<int64_t>(n)) << 16) | 0x7000 | (n & 0xfff),
                  0x8000'0000'0000'0000ULL | (n * 0x9e37'79b9'7f4a'7c15ULL >> 2)};
}

std::string uuid_text(const RecordId& id) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(id.hi >> 32),
                static_cast<unsigned>((id.hi >> 16) & 0xffff), static_cast<unsigned>(id.hi & 0xffff),
                static_cast<unsigned>(id.lo >> 48),
                static_cast<unsigned long long>(id.lo & 0xffff'ffff'ffffULL));
  return buf;
}

class PushWriter {
 public:
  ClientTxn txn(uint64_t node_seq) {
    ClientTxn t;
    t.node = kNode;
    t.node_seq = node_seq;
    t.created_at_ms = now_ms_;
    const RecordId account = make_id(next_id_++);
    const RecordId order = make_id(next_id_++);
    create(t, EntityId::kOrder, order);
    set(t, EntityId::kOrder, order, 1, Value::text(uuid_text(account)));           // account_id
    set(t, EntityId::kOrder, order, 2, Value::text("rep-0042"));                   // rep_id
    set(t, EntityId::kOrder, order, 3, Value::text("draft"));                      // status
    set(t, EntityId::kOrder, order, 4, Value::text("EUR"));                        // currency
    set(t, EntityId::kOrder, order, 9, Value::integer(now_ms_ + 3 * 86'400'000));  // delivery_date
    Change note = change(ChangeOp::kAppend, EntityId::kOrder, order, 5,
                         Value::text("Customer asks for delivery before the weekend; gate code 4711."));
    t.changes.push_back(note);
    for (int line = 0; line < 2; ++line) {
      const RecordId id = make_id(next_id_++);
      const RecordId product = make_id(1'000'000 + static_cast<uint64_t>(line) * 17 + node_seq % 40);
      create(t, EntityId::kOrderLine, id);
      set(t, EntityId::kOrderLine, id, 1, Value::text(uuid_text(order)));       // order_id
      set(t, EntityId::kOrderLine, id, 2, Value::text(uuid_text(product)));     // product_id
      set(t, EntityId::kOrderLine, id, 3, Value::integer(12 + line));           // quantity
      set(t, EntityId::kOrderLine, id, 4, Value::integer(1'299 + 250 * line));  // unit_price_cents
      set(t, EntityId::kOrderLine, id, 5, Value::integer(250));                 // discount_bp
    }
    set(t, EntityId::kOrder, order, 6, Value::integer(now_ms_));  // submitted_at
    now_ms_ += 45'000;
    return t;
  }

 private:
  Change change(ChangeOp op, EntityId e, const RecordId& id, uint16_t field, Value v) {
    Change c;
    c.op = op;
    c.entity = e;
    c.record = id;
    c.field = field;
    c.value = std::move(v);
    c.version = Version{make_hlc(now_ms_, logical_++), kNode};
    return c;
  }
  void create(ClientTxn& t, EntityId e, const RecordId& id) {
    t.changes.push_back(change(ChangeOp::kCreate, e, id, 0, Value::null()));
  }
  void set(ClientTxn& t, EntityId e, const RecordId& id, uint16_t field, Value v) {
    t.changes.push_back(change(ChangeOp::kSet, e, id, field, std::move(v)));
  }

  int64_t now_ms_ = kStartMs;
  uint16_t logical_ = 0;
  uint64_t next_id_ = 1;
};

const protocol::Message& push_message() {
  static const protocol::Message message = [] {
    protocol::PushTxns push;
    push.request_id = 17;
    PushWriter writer;
    for (int i = 0; i < kTxns; ++i) push.txns.push_back(writer.txn(static_cast<uint64_t>(i) + 1));
    return protocol::Message(std::move(push));
  }();
  return message;
}

void report(benchmark::State& state, size_t frame_bytes) {
  state.SetItemsProcessed(state.iterations() * kChanges);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(frame_bytes));
  state.counters["bytes_per_change"] = static_cast<double>(frame_bytes) / kChanges;
  state.counters["frame_bytes"] = static_cast<double>(frame_bytes);
}

void BM_CodecEncodePush(benchmark::State& state) {
  const protocol::Message& message = push_message();
  size_t bytes = 0;
  for (auto _ : state) {
    std::vector<uint8_t> frame = codec::encode(message);
    bytes = frame.size();
    benchmark::DoNotOptimize(frame.data());
  }
  report(state, bytes);
}
BENCHMARK(BM_CodecEncodePush);

void BM_CodecDecodePush(benchmark::State& state) {
  const std::vector<uint8_t> frame = codec::encode(push_message());
  if (!codec::decode(frame).is_ok()) {
    state.SkipWithError("the push does not decode");
    return;
  }
  for (auto _ : state) {
    Result<protocol::Message> decoded = codec::decode(frame);
    benchmark::DoNotOptimize(decoded);
  }
  report(state, frame.size());
}
BENCHMARK(BM_CodecDecodePush);

void BM_CodecRoundTripPush(benchmark::State& state) {
  const protocol::Message& message = push_message();
  size_t bytes = 0;
  for (auto _ : state) {
    std::vector<uint8_t> frame = codec::encode(message);
    bytes = frame.size();
    Result<protocol::Message> decoded = codec::decode(frame);
    benchmark::DoNotOptimize(decoded);
  }
  report(state, bytes);
}
BENCHMARK(BM_CodecRoundTripPush);

// ---- Bytes per record, by frame form -------------------------------------------------------------------

constexpr size_t kPushAccounts = 64;   // tuning::kMaxTxnsPerPush transactions of one account each
constexpr size_t kPageAccounts = 500;  // tuning::kBootstrapPageRecords
constexpr int64_t kAccountsStartMs = 1'760'000'000'000;

struct WireSample {
  protocol::Message message;
  size_t records = 0;
  size_t value_bytes = 0;
};

// A rep's backlog: one account per transaction, written a few seconds apart while offline.
const WireSample& account_push() {
  static const WireSample sample = [] {
    WireSample w;
    protocol::PushTxns push;
    push.request_id = 3;
    RecordIdGenerator ids(11);
    const std::string territory = "t-0042", user = "rep-0042";
    for (size_t i = 0; i < kPushAccounts; ++i) {
      const int64_t ms = kAccountsStartMs + static_cast<int64_t>(i) * 7'000;
      const bench::AccountValues v = bench::account_values(i);
      ClientTxn t;
      t.node = kNode;
      t.node_seq = 1'000 + i;
      t.created_at_ms = ms;
      t.changes = bench::account_changes(ids.next(ms), v, territory, user, make_hlc(ms, 0), kNode);
      push.txns.push_back(std::move(t));
      w.value_bytes += v.bytes(territory, user);
    }
    w.records = kPushAccounts;
    w.message = std::move(push);
    return w;
  }();
  return sample;
}

// One page of a territory's accounts, created by its eight reps over a year, in id order like the server's.
const WireSample& account_page() {
  static const WireSample sample = [] {
    WireSample w;
    protocol::BootstrapPage page;
    page.request_id = 4;
    page.snapshot_seq = 987'654;
    page.total_records = 30'000;
    page.records_before = 2'000;
    RecordIdGenerator ids(12);
    const std::string territory = "t-0042";
    for (size_t i = 0; i < kPageAccounts; ++i) {
      const int64_t ms = kAccountsStartMs - 365LL * 86'400'000 + static_cast<int64_t>(i) * 63'000'000;
      const uint64_t rep = bench::account_detail::mix(i) % 8;
      const std::string user = "rep-00" + std::to_string(40 + rep);
      const bench::AccountValues v = bench::account_values(100'000 + i);
      page.records.push_back(
          bench::account_state(ids.next(ms), v, territory, user, make_hlc(ms, 0), kNode + rep));
      w.value_bytes += v.bytes(territory, user);
    }
    page.next_page_token = "30000:2500:1:" + page.records.back().id.to_string();
    w.records = kPageAccounts;
    w.message = std::move(page);
    return w;
  }();
  return sample;
}

// Arguments: form (1: v1, 2: v2 compact, 3: v2 compact compressed), zstd level (form 3).
codec::EncodeOptions wire_form(const benchmark::State& state) {
  codec::EncodeOptions o;
  o.protocol_version = state.range(0) == 1 ? 1 : 2;
  o.compression_level = state.range(0) == 3 ? static_cast<int>(state.range(1)) : 0;
  return o;
}

void report_wire(benchmark::State& state, const WireSample& w, size_t frame_bytes) {
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(w.records));
  // MB/s of field values: the same for every form, so the rates compare directly.
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(w.value_bytes));
  state.counters["bytes_per_record"] = static_cast<double>(frame_bytes) / static_cast<double>(w.records);
  state.counters["value_bytes_per_record"] =
      static_cast<double>(w.value_bytes) / static_cast<double>(w.records);
}

void wire_encode(benchmark::State& state, const WireSample& w) {
  const codec::EncodeOptions o = wire_form(state);
  size_t bytes = 0;
  for (auto _ : state) {
    std::vector<uint8_t> frame = codec::encode(w.message, o);
    bytes = frame.size();
    benchmark::DoNotOptimize(frame.data());
  }
  report_wire(state, w, bytes);
}

void wire_decode(benchmark::State& state, const WireSample& w) {
  const std::vector<uint8_t> frame = codec::encode(w.message, wire_form(state));
  Result<protocol::Message> first = codec::decode(frame);
  if (!first.is_ok() || !(first.value() == w.message)) {
    state.SkipWithError("the frame does not decode to the message");
    return;
  }
  for (auto _ : state) {
    Result<protocol::Message> decoded = codec::decode(frame);
    benchmark::DoNotOptimize(decoded);
  }
  report_wire(state, w, frame.size());
}

void BM_WireEncodeAccountPush(benchmark::State& state) {
  wire_encode(state, account_push());
}
void BM_WireDecodeAccountPush(benchmark::State& state) {
  wire_decode(state, account_push());
}
void BM_WireEncodeAccountPage(benchmark::State& state) {
  wire_encode(state, account_page());
}
void BM_WireDecodeAccountPage(benchmark::State& state) {
  wire_decode(state, account_page());
}

void wire_forms(benchmark::internal::Benchmark* b) {
  b->ArgNames({"form", "level"});
  b->Args({1, 0});
  b->Args({2, 0});
  for (int level : {1, 3, 6, 9, 19}) b->Args({3, level});
}
BENCHMARK(BM_WireEncodeAccountPush)->Apply(wire_forms);
BENCHMARK(BM_WireDecodeAccountPush)->Apply(wire_forms);
BENCHMARK(BM_WireEncodeAccountPage)->Apply(wire_forms);
BENCHMARK(BM_WireDecodeAccountPage)->Apply(wire_forms);

}  // namespace
}  // namespace fieldsync

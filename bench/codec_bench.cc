// Codec cost and wire size of a realistic push: 50 transactions of 20 changes each (an order with two lines
// per transaction: ids as UUID text, a user id, enum text, money as integer cents, timestamps, a note
// fragment).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "fieldsync/sync/codec.h"

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

}  // namespace
}  // namespace fieldsync

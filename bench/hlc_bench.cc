// Clocks and ids sit on every write path (one tick and often one id per change), so they must stay in the
// nanoseconds.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "fieldsync/sync/hlc.h"
#include "fieldsync/sync/record_id.h"

namespace fieldsync {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;

// A wall clock that advances one millisecond every 16 ticks: mostly logical increments, as in a burst of
// edits.
void BM_HlcTick(benchmark::State& state) {
  HybridClock clock;
  int64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(clock.tick(kT0 + (i >> 4)));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HlcTick);

// Merging remote timestamps as a pull batch does: each a little ahead of the last, the wall clock keeping
// pace so no run length can push the remote past the skew limit (that would time the error path instead).
void BM_HlcReceive(benchmark::State& state) {
  HybridClock clock;
  int64_t i = 0;
  for (auto _ : state) {
    const int64_t wall_ms = kT0 + (i >> 4);
    Status s = clock.receive(make_hlc(wall_ms + 250, static_cast<uint16_t>(i & 0xf)), wall_ms);
    benchmark::DoNotOptimize(s);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HlcReceive);

void BM_RecordIdNext(benchmark::State& state) {
  RecordIdGenerator gen(42);
  int64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(gen.next(kT0 + (i >> 4)));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordIdNext);

void BM_RecordIdToString(benchmark::State& state) {
  RecordIdGenerator gen(42);
  const RecordId id = gen.next(kT0);
  for (auto _ : state) benchmark::DoNotOptimize(id.to_string());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RecordIdToString);

}  // namespace
}  // namespace fieldsync

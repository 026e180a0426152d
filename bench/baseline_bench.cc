// BM_BaselineSqliteBatchedUpsert: the baseline every figure in docs/PERFORMANCE.md is divided by (see
// sqlite_baseline.h for what it does), registered in each Google Benchmark binary so ratios come from one
// run.
#include <benchmark/benchmark.h>

#include "sqlite_baseline.h"

namespace {

void BM_BaselineSqliteBatchedUpsert(benchmark::State& state) {
  fieldsync::bench::BatchedUpsertBaseline baseline;
  for (auto _ : state) baseline.run_txn();
  state.SetItemsProcessed(state.iterations() * fieldsync::bench::BatchedUpsertBaseline::kRowsPerTxn);
}
BENCHMARK(BM_BaselineSqliteBatchedUpsert)->Unit(benchmark::kMillisecond);

}  // namespace

#!/usr/bin/env bash
# Runs a benchmark binary and prints every benchmark's rate as a ratio to the SQLite baseline measured in the
# same run (docs/PERFORMANCE.md). Usage: scripts/bench.sh [binary-name] [extra google-benchmark flags...]
# fieldsync-bench-load is a plain load generator (not Google Benchmark) that prints its own table and ratios:
# scripts/bench.sh fieldsync-bench-load [its flags, see --help] builds it with fieldsync-server and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-fieldsync-bench-core}
shift || true
if [ "$bin" = fieldsync-bench-load ]; then
  ./scripts/build.sh release --target fieldsync-bench-load fieldsync-server >/dev/null
  exec build/bin/fieldsync-bench-load "$@"
fi
./scripts/build.sh release --target "$bin" >/dev/null
out=$(mktemp)
"build/bin/$bin" --benchmark_format=json --benchmark_repetitions=3 --benchmark_report_aggregates_only=true "$@" >"$out"
python3 - "$out" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
rows = [b for b in data["benchmarks"] if b.get("aggregate_name") == "median"]
base = next((b["items_per_second"] for b in rows if b["run_name"].startswith("BM_BaselineSqliteBatchedUpsert")), None)
print(f"{'benchmark':60} {'items/s':>14} {'x baseline':>11}  counters")
for b in rows:
    ips = b.get("items_per_second")
    extra = {k: v for k, v in b.items() if k not in ("name", "run_name", "run_type", "repetitions", "threads",
             "aggregate_name", "aggregate_unit", "iterations", "real_time", "cpu_time", "time_unit",
             "items_per_second", "family_index", "per_family_instance_index", "repetition_index")}
    ratio = f"{ips / base:11.3f}" if ips and base else " " * 11
    counters = " ".join(f"{k}={v:.4g}" for k, v in extra.items() if isinstance(v, (int, float)))
    print(f"{b['run_name']:60} {ips or 0:14,.0f} {ratio}  {counters}")
PY
rm -f "$out"

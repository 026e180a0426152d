#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz (every library instrumented: tests/fuzz/CMakeLists.txt)
# and runs each for a bounded time from a copy of its committed corpus (tests/fuzz/corpus/<target>), so the
# repository is not modified. Fails on the first crash, leak, abort or UBSan report; the reproducer is left in
# the temporary directory printed. Known findings not fixed yet are suppressed by tests/fuzz/known-findings.supp.
# Usage: tests/fuzz/run.sh [seconds per target, default 15]
# Each run's last line ("DONE cov: N ...") gives the coverage edges reached (docs/PERFORMANCE.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
targets=(codec_fuzz compressed_fuzz blob_fuzz login_fuzz cabi_fuzz api_query_fuzz api_body_fuzz)
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  cmake -S . -B build-fuzz "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DFIELDSYNC_BUILD_FUZZERS=ON -DFIELDSYNC_BUILD_TESTS=OFF \
    -DFIELDSYNC_BUILD_BENCH=OFF >/dev/null
fi
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"
work=$(mktemp -d)
for t in "${targets[@]}"; do
  cp -r "tests/fuzz/corpus/$t" "$work/$t"
  mkdir -p "$work/$t-artifacts"
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions="$PWD/tests/fuzz/known-findings.supp" \
      "build-fuzz/bin/$t" "$work/$t" -max_total_time="$seconds" -print_final_stats=0 \
      -artifact_prefix="$work/$t-artifacts/" >"$work/$t.log" 2>&1; then
    tail -40 "$work/$t.log"
    echo "$t: FAILED, reproducer in $work/$t-artifacts/ (replay: build-fuzz/bin/$t <file>)" >&2
    exit 1
  fi
  echo "$t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$t.log" | tail -1)"
done
rm -rf "$work"

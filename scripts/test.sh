#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test in Release, builds the tree with
# clang (warnings and lock annotations), runs each fuzz target for 15 s, then runs every test again under
# AddressSanitizer + UndefinedBehaviorSanitizer. Set FIELDSYNC_SKIP_ASAN=1 to skip the second pass locally.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

echo "== format check"
./scripts/check-format.sh

echo "== release build"
./scripts/build.sh release
echo "== release tests"
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 600

echo "== clang build (-Werror, -Wthread-safety)"
./scripts/build.sh clang

# The libFuzzer targets (tests/fuzz), every library instrumented, each run for a bounded time from a copy of
# the committed corpus; a crash, leak or UBSan report fails the command. FIELDSYNC_FUZZ_SECONDS: per target.
echo "== fuzz targets (clang, ${FIELDSYNC_FUZZ_SECONDS:-15} s each)"
./tests/fuzz/run.sh "${FIELDSYNC_FUZZ_SECONDS:-15}"

if [ "${FIELDSYNC_SKIP_ASAN:-0}" != "1" ]; then
  echo "== asan+ubsan build"
  ./scripts/build.sh asan
  echo "== asan+ubsan tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 900
fi

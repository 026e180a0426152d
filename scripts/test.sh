#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test in Release, builds the tree with
# clang (warnings and lock annotations), runs each fuzz target for 15 s, then runs every test again under
# AddressSanitizer + UndefinedBehaviorSanitizer. Set FIELDSYNC_SKIP_ASAN=1 to skip the second pass locally.
# Between the Release and the clang pass: the ARM cross builds and their tests under qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's wall time, printed as it ends and summed up at the end: CI has a budget (README), and this is where
# it goes.
step_start=$SECONDS
step_name="install-deps"
timings=()
step() {
  timings+=("$(printf '%5d s  %s' $((SECONDS - step_start)) "$step_name")")
  step_start=$SECONDS
  step_name="$1"
  echo "== $1"
}
trap 'step end; printf "== step times\n"; printf "%s\n" "${timings[@]}"; echo "== total ${SECONDS} s"' EXIT

./scripts/install-deps.sh

step "format check"
./scripts/check-format.sh

step "release build"
./scripts/build.sh release
step "release tests"
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 600

# The client side cross-built for aarch64 and armhf (32-bit), its tests under qemu-user (scripts/cross-test.sh;
# mobile-glue's C test against the native server of the Release build above). FIELDSYNC_SKIP_CROSS=1 skips it
# locally.
if [ "${FIELDSYNC_SKIP_CROSS:-0}" != "1" ]; then
  step "cross builds and tests (aarch64, armhf)"
  ./scripts/cross-test.sh
fi

step "clang build (-Werror, -Wthread-safety)"
./scripts/build.sh clang

# The libFuzzer targets (tests/fuzz), every library instrumented, each run for a bounded time from a copy of
# the committed corpus; a crash, leak or UBSan report fails the command. FIELDSYNC_FUZZ_SECONDS: per target.
step "fuzz targets (clang, ${FIELDSYNC_FUZZ_SECONDS:-15} s each)"
./tests/fuzz/run.sh "${FIELDSYNC_FUZZ_SECONDS:-15}"

if [ "${FIELDSYNC_SKIP_ASAN:-0}" != "1" ]; then
  step "asan+ubsan build"
  ./scripts/build.sh asan
  step "asan+ubsan tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 900
fi

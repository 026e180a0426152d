#!/usr/bin/env bash
# Configures and builds one flavour of fieldsync. Usage: scripts/build.sh [release|asan|clang] [cmake --build args...]
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
shift || true
case "$flavour" in
  release) dir=build; opts=(-DCMAKE_BUILD_TYPE=Release) ;;
  # -O1 keeps sanitizer builds fast enough for the full suite; -g1 (line tables: file and line in every report)
  # compiles a third faster than -g. Benches are measured in Release only.
  asan) dir=build-asan; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1"
                              -DFIELDSYNC_SANITIZE=ON -DFIELDSYNC_BUILD_BENCH=OFF) ;;
  # clang with -Werror (and -Wthread-safety: fieldsync_warnings() adds it under clang) at -O0, no benches: the
  # test command builds this flavour to keep the tree warning-free under both compilers and the lock
  # annotations checked; its tests are not run (the Release and sanitizer passes run them).
  clang) dir=build-clang; opts=(-DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DCMAKE_C_COMPILER=clang
                                -DCMAKE_CXX_COMPILER=clang++ -DFIELDSYNC_BUILD_BENCH=OFF) ;;
  *) echo "usage: scripts/build.sh [release|asan|clang] [cmake --build args...]" >&2; exit 2 ;;
esac
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S . -B "$dir" "${generator[@]}" "${opts[@]}" >/dev/null
else
  cmake -S . -B "$dir" "${opts[@]}" >/dev/null  # the flavour's options win over a stale cache
fi
cmake --build "$dir" -j"$(nproc)" "$@"

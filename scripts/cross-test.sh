#!/usr/bin/env bash
# The client side cross-built for 64-bit ARM (aarch64-linux-gnu: phones) and 32-bit ARM (arm-linux-gnueabihf:
# handhelds) and its tests run under qemu-user (scripts/qemu-run.sh): schema, sync, io, client-core and, where
# the tree has it, mobile-glue, with their tests (-DFIELDSYNC_CLIENT_ONLY=ON: no server/, no bench/). The
# server is not cross-built: a cross-built test that needs one (mobile-glue's C test) runs against the native
# programs of the Release build (build/bin, FIELDSYNC_HOST_TOOLS_DIR) on loopback, which qemu-user shares.
# Usage: scripts/cross-test.sh [aarch64|armhf]...   (default: both; scripts/test.sh runs both)
# Build dirs: build-aarch64, build-armhf. -O1 and no debug info: the cheapest compile whose tests still run at
# a useful speed under emulation (test bodies are -O0 anyway, tests/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

arches=("$@")
[ ${#arches[@]} -eq 0 ] && arches=(aarch64 armhf)

host_tools=()
if [ -d mobile-glue ]; then
  # The C test's harness (seeds and starts a real fieldsync-server) is a native program.
  host_tools=(fieldsync_with_server fieldsync-server fieldsync-admin)
  if [ ! -f build/CMakeCache.txt ]; then ./scripts/build.sh release --target "${host_tools[@]}"; fi
  cmake --build build -j"$(nproc)" --target "${host_tools[@]}"
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
for arch in "${arches[@]}"; do
  case "$arch" in
    aarch64) toolchain=aarch64-linux-gnu ;;
    armhf) toolchain=armhf-linux-gnueabihf ;;
    *) echo "usage: scripts/cross-test.sh [aarch64|armhf]..." >&2; exit 2 ;;
  esac
  dir=build-$arch
  start=$(date +%s)
  echo "== cross build ($arch, qemu-user)"
  opts=(-DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/$toolchain.cmake -DFIELDSYNC_CLIENT_ONLY=ON
        -DFIELDSYNC_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DCMAKE_C_FLAGS_RELEASE=-O1
        -DFIELDSYNC_HOST_TOOLS_DIR="$PWD/build/bin" -DFIELDSYNC_BUILD_JNI=OFF)
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S . -B "$dir" "${generator[@]}" --no-warn-unused-cli "${opts[@]}" >/dev/null
  else
    cmake -S . -B "$dir" --no-warn-unused-cli "${opts[@]}" >/dev/null
  fi
  cmake --build "$dir" -j"$(nproc)"
  built=$(date +%s)
  echo "== cross tests ($arch, qemu-user)"
  ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" --timeout 600
  echo "== cross $arch: build $((built - start)) s, tests $(($(date +%s) - built)) s"
done

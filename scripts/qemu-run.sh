#!/usr/bin/env bash
# Runs one target-architecture program under qemu-user with the cross toolchain's loader and libc
# (/usr/<triplet>) and the target libraries of scripts/cross-sysroot.sh. The cross toolchain files make this
# CMake's CMAKE_CROSSCOMPILING_EMULATOR, so ctest and gtest_discover_tests run cross-built tests through it.
# Usage: scripts/qemu-run.sh <triplet> <program> [args...]
# x86_64-linux-gnu runs a native program under qemu-x86_64 with the host's libraries (the control of
# docs/PERFORMANCE.md "A check-in's cost under emulation"). FIELDSYNC_QEMU_OPTS adds options for qemu itself
# (scripts/guest-insns.sh: its instruction-counting plugin).
set -euo pipefail
triplet=$1
shift
read -r -a extra <<<"${FIELDSYNC_QEMU_OPTS:-}"
case "$triplet" in
  aarch64-linux-gnu) qemu=qemu-aarch64 ;;
  arm-linux-gnueabihf) qemu=qemu-arm ;;
  x86_64-linux-gnu) exec qemu-x86_64 "${extra[@]}" "$@" ;;
  *) echo "qemu-run: unknown triplet $triplet" >&2; exit 2 ;;
esac
sysroot=${FIELDSYNC_CROSS_ROOT:-/opt/fieldsync-cross}/$triplet
# -E sets the variable for the guest only: the host's qemu binary must not look for its own libraries there.
exec "$qemu" "${extra[@]}" -L "/usr/$triplet" -E "LD_LIBRARY_PATH=$sysroot/usr/lib/$triplet:$sysroot/lib/$triplet" "$@"

#!/usr/bin/env bash
# Guest instructions of one check-in and of one bare SQLite insert on an emulated architecture, and their ratio:
# the bench binary (fieldsync-bench-client, BM_FieldClientCheckIn) runs under qemu-user with the counting
# plugin bench/qemu_insn_count.c, which it builds first (host cc). Deterministic: unlike wall time under
# emulation it does not mix translated instructions with native-speed system calls, nor depend on the load.
# docs/PERFORMANCE.md "A check-in's cost in guest instructions".
#
# Usage: scripts/guest-insns.sh <x86_64|aarch64|armhf> <fieldsync-bench-client of that architecture> [filter]
#   filter: --benchmark_filter (default FieldClientCheckIn/0: synchronous=NORMAL; the FULL run counts the same
#   within 0.1%, /1, and FieldClient gives the 20-line order too).
# Prints the plugin's lines (tag 1 check-in, 2 bare insert; 11 / 12 at FULL; 3 / 4 and 13 / 14 the order; 0
# the marks' own cost) and "ratio" lines: median and mean of the API write over its bare counterpart.
# FIELDSYNC_GUEST_SYMBOLS=1 also says where each region's instructions ran (the plugin's symbols=on): "where"
# lines per tag, instructions per region by function of the program (demangled) or by shared object;
# FIELDSYNC_GUEST_SYMBOLS=blocks splits a shared object by block ("[libc.so.6]+0xOFFSET", for nm -D);
# FIELDSYNC_GUEST_SYMBOLS=callers adds the C library's and libgcc's instructions by calling function.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 's/^# Usage: //p' "$0" >&2; exit 2; }
arch=$1
bin=$2
filter=${3:-FieldClientCheckIn/0}
case "$arch" in
  x86_64) triplet=x86_64-linux-gnu ;;
  aarch64) triplet=aarch64-linux-gnu ;;
  armhf) triplet=arm-linux-gnueabihf ;;
  *) echo "guest-insns: unknown architecture $arch (x86_64, aarch64, armhf)" >&2; exit 2 ;;
esac

plugin_dir=${FIELDSYNC_PLUGIN_DIR:-build-guest-insns}
plugin=$plugin_dir/qemu_insn_count.so
mkdir -p "$plugin_dir"
if [ ! -f "$plugin" ] || [ bench/qemu_insn_count.c -nt "$plugin" ]; then
  cc -O2 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -o "$plugin" bench/qemu_insn_count.c
fi

plugin_args=$plugin
[[ $plugin == /* ]] || plugin_args=$PWD/$plugin
[ "${FIELDSYNC_GUEST_SYMBOLS:-0}" = 1 ] && plugin_args+=,symbols=on
[ "${FIELDSYNC_GUEST_SYMBOLS:-0}" = blocks ] && plugin_args+=,symbols=on,objects=blocks
[ "${FIELDSYNC_GUEST_SYMBOLS:-0}" = callers ] && plugin_args+=,symbols=on,callers=on
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# -d plugin: qemu_plugin_outs() writes to qemu's log, which -D sends to the file.
FIELDSYNC_GUEST_INSNS=1 FIELDSYNC_QEMU_OPTS="-plugin $plugin_args -d plugin -D $log" \
  scripts/qemu-run.sh "$triplet" "$bin" --benchmark_filter="$filter" >/dev/null
grep -v '^guest_insns_sym ' "$log"
if grep -q '^guest_insns_sym ' "$log"; then
  # Instructions per region by place, largest first (names demangled; one line per place and tag).
  awk 'NR == FNR { if ($1 == "guest_insns" && $2 ~ /^tag=/) { split($2, t, "="); split($3, r, "="); regions[t[2]] = r[2] }
                   next }
       $1 == "guest_insns_sym" { split($2, t, "="); split($3, n, "=")
                                 printf "where tag=%s per_region=%.1f %s\n", t[2], n[2] / regions[t[2]],
                                        substr($0, index($0, " where=") + 7) }' "$log" "$log" |
    c++filt
fi
awk -v arch="$arch" '
  /^guest_insns tag=/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    median[v["tag"]] = v["median"]; mean[v["tag"]] = v["mean"]
  }
  END {
    for (t = 1; t <= 13; t += 2) {
      if (t == 5) t = 11
      if ((t in median) && ((t + 1) in median) && median[t + 1] > 0)
        printf "ratio %s tags %d/%d: median %.3f (%d / %d), mean %.3f\n", arch, t, t + 1,
               median[t] / median[t + 1], median[t], median[t + 1], mean[t] / mean[t + 1]
    }
  }' "$log"
grep -q "unmatched_markers=0" "$log" || { echo "guest-insns: unmatched markers (see above)" >&2; exit 1; }

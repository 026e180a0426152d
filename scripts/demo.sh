#!/usr/bin/env bash
# The README's main command. Until the server and client-core land (issues 3 and 4) the main job is the
# deterministic simulator: a server and several field reps plus head office, editing offline through dropped,
# duplicated and reordered messages, partitions, crashes and clock skew, then converging.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh release --target fieldsync-sim >/dev/null
echo "== one simulated day, traced summary (seed 1)"
build/bin/fieldsync-sim --seed 1
echo
echo "== 300 more seeds"
build/bin/fieldsync-sim --seeds 300 --start 2

#!/usr/bin/env bash
# Fails if any of our C/C++ files is not clang-formatted. Fix with: scripts/check-format.sh --fix
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.h' '*.cc' '*.c' '*.hpp' '*.cpp')
[ ${#files[@]} -eq 0 ] && exit 0
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/fieldsync-format.log; then
  grep -E "^[^ ]+:[0-9]+:[0-9]+: (warning|error)" /tmp/fieldsync-format.log | cut -d: -f1 | sort -u | sed "s/^/needs clang-format: /"
  echo "run scripts/check-format.sh --fix"
  exit 1
fi

#!/usr/bin/env bash
# The ctest browser_dashboard: installs playwright-core from the committed lockfile into the build directory
# (npm ci, only when the lockfile changed; no browser is downloaded: Debian's /usr/bin/chromium is driven),
# then runs dashboard.test.mjs against the binaries in BIN_DIR. Screenshots go to OUT_DIR/screenshots.
# Usage: tests/browser/run.sh BIN_DIR OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=$1
out_dir=$2
for tool in node npm /usr/bin/chromium; do
  command -v "$tool" >/dev/null || { echo "browser test: $tool is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
npm_dir=$out_dir/npm
mkdir -p "$npm_dir"
if ! cmp -s "$here/package-lock.json" "$npm_dir/node_modules/.fieldsync-lockfile"; then
  cp "$here/package.json" "$here/package-lock.json" "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$here/package-lock.json" "$npm_dir/node_modules/.fieldsync-lockfile"
fi
exec env FIELDSYNC_NODE_MODULES="$npm_dir" node "$here/dashboard.test.mjs" --bin-dir "$bin_dir" --out-dir "$out_dir"

#!/usr/bin/env bash
# Checks the shared library's dynamic symbol table against the C ABI: every defined, exported symbol starts
# with fs_ (nothing of client-core, the STL or Boost leaks out for apps to bind to), and every function the
# header declares with FS_API is exported. readelf reads any architecture's ELF, so cross builds use it too.
# Usage: check_symbols.sh LIBRARY HEADER
set -euo pipefail
lib=$1
header=$2
# Defined (Ndx not UND) global or weak symbols, whatever their type; the symbol version suffix dropped.
exported=$(readelf --dyn-syms --wide "$lib" |
  awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && ($5 == "GLOBAL" || $5 == "WEAK" || $5 == "UNIQUE") { print $8 }' |
  sed 's/@.*//' | sort -u)
if [ -z "$exported" ]; then
  echo "no exported symbols found in $lib" >&2
  exit 1
fi
status=0
stray=$(grep -v '^fs_' <<<"$exported" || true)
if [ -n "$stray" ]; then
  echo "exported symbols outside the C ABI (fix the version script or visibility):" >&2
  sed 's/^/  /' <<<"$stray" >&2
  status=1
fi
# FS_API declarations may wrap over lines: join the header, then take the name before each '('.
declared=$(tr '\n' ' ' <"$header" | grep -oE 'FS_API [^;(]*\(' | grep -oE 'fs_[a-z0-9_]+ *\($' | tr -d ' (' |
  sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
if [ -n "$missing" ]; then
  echo "declared in $header but not exported:" >&2
  sed 's/^/  /' <<<"$missing" >&2
  status=1
fi
echo "$(wc -l <<<"$exported") exported symbols, all fs_*; $(wc -l <<<"$declared") declared, all exported"
exit $status

#!/usr/bin/env bash
# Fails if a component includes the headers of one that is not below it (docs/DESIGN.md section 1):
# schema < sync < io < {client-core, server} < mobile-glue; client-core and server are siblings and never include
# each other.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
forbid() {  # forbid DIR HEADER-PREFIX...
  local dir=$1
  shift
  for prefix in "$@"; do
    if grep -rn --include='*.h' --include='*.cc' "#include \"fieldsync/$prefix/" "$dir"; then
      echo "layering: $dir/ must not include fieldsync/$prefix/ headers" >&2
      status=1
    fi
  done
}
forbid schema sync io client server
forbid sync io client server
forbid io client server
forbid client-core server
forbid server client
# mobile-glue's library stands on client-core only; the JNI bridge sees nothing but the C header (fieldsync.h).
forbid mobile-glue/src server
forbid mobile-glue/jni schema sync io client server
exit $status

#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (issue 20): Debian's PostgreSQL binaries, initdb into a temporary
# directory, a free loopback port, no Unix socket, trust authentication on 127.0.0.1 only, fsync and
# synchronous_commit on (the durability the store's acknowledgements rely on).
#
#   scripts/pg-cluster.sh start STATE_DIR   starts a cluster (or finds the one already running for STATE_DIR),
#                                           writes its URL to STATE_DIR/url and prints it
#   scripts/pg-cluster.sh stop STATE_DIR    stops it and deletes its data; nothing to do is not an error
#   scripts/pg-cluster.sh url STATE_DIR     prints the URL of the running cluster (fails when there is none)
#
# PostgreSQL refuses to run as root: as root the cluster runs as an unprivileged user, $FIELDSYNC_PG_USER if set,
# else Debian's `postgres` (the package creates it), else `fieldsync-pg`, created here. The data directory is a
# mktemp directory under ${TMPDIR:-/tmp} owned by that user (STATE_DIR may sit where it cannot reach). ctest
# starts one cluster per build directory (tests/CMakeLists.txt: the pg_cluster fixture). Quiet unless it fails;
# on failure it prints the server's log.
set -euo pipefail

usage() {
  echo "usage: scripts/pg-cluster.sh start|stop|url STATE_DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
state=$2

find_bindir() {
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
    return
  fi
  # Debian keeps the server binaries out of PATH, one directory per major version: take the newest.
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then
    echo "$d"
    return
  fi
  echo "pg-cluster: PostgreSQL's initdb not found (install the Debian package postgresql: scripts/install-deps.sh)" >&2
  exit 1
}

pg_user() {
  if [ -n "${FIELDSYNC_PG_USER:-}" ]; then
    echo "$FIELDSYNC_PG_USER"
  elif id -u postgres >/dev/null 2>&1; then
    echo postgres
  else
    if ! id -u fieldsync-pg >/dev/null 2>&1; then
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin fieldsync-pg
    fi
    echo fieldsync-pg
  fi
}

# Runs a command as the cluster's owner: the unprivileged user when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$owner" -- "$@"
  else
    "$@"
  fi
}

running() {  # the cluster recorded in $state is up
  [ -f "$state/datadir" ] || return 1
  local data
  data=$(cat "$state/datadir")
  [ -d "$data/data" ] || return 1
  as_owner "$bindir/pg_ctl" -D "$data/data" status >/dev/null 2>&1
}

port_in_use() {  # something accepts connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

stop_cluster() {
  if [ -f "$state/datadir" ]; then
    local data
    data=$(cat "$state/datadir")
    if [ -d "$data/data" ]; then
      as_owner "$bindir/pg_ctl" -D "$data/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
    fi
    case "$data" in
      */fieldsync-pg.*) rm -rf "$data" ;;  # only what start made
    esac
  fi
  rm -f "$state/datadir" "$state/url" "$state/port"
}

bindir=$(find_bindir)
mkdir -p "$state"
state=$(cd "$state" && pwd)
owner=$(if [ "$(id -u)" -eq 0 ]; then pg_user; else id -un; fi)

# One start or stop at a time per STATE_DIR (ctest may run the fixture's setup of two build trees at once; each
# has its own STATE_DIR and so its own cluster).
exec 9>"$state/lock"
flock 9

case "$cmd" in
  url)
    running || { echo "pg-cluster: no cluster running for $state" >&2; exit 1; }
    cat "$state/url"
    ;;
  stop)
    stop_cluster
    ;;
  start)
    if running && [ -f "$state/url" ]; then
      cat "$state/url"
      exit 0
    fi
    stop_cluster  # a stale record (the machine restarted, the data was deleted): start over
    data=$(mktemp -d "${TMPDIR:-/tmp}/fieldsync-pg.XXXXXXXX")
    chmod 700 "$data"
    [ "$(id -u)" -ne 0 ] || chown "$owner" "$data"
    echo "$data" >"$state/datadir"
    # --no-sync: only initdb's own final flush of the template files is skipped (a throwaway cluster that
    # crashes during initdb is simply made again); the server runs with fsync on.
    if ! as_owner "$bindir/initdb" -D "$data/data" -U postgres --auth=trust -E UTF8 --no-locale --no-sync \
      >"$data/initdb.log" 2>&1; then
      cat "$data/initdb.log" >&2
      stop_cluster
      exit 1
    fi
    cat >>"$data/data/postgresql.conf" <<'EOF'
# scripts/pg-cluster.sh: a throwaway test cluster on loopback, durable commits like production.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 300
log_min_messages = warning
EOF
    # A free port: a random one nobody answers on; a race with another process binding it between the check
    # and the start fails the start, and the next try takes another port.
    started=0
    for _ in $(seq 1 20); do
      port=$((20000 + RANDOM % 40000))
      port_in_use "$port" && continue
      if as_owner "$bindir/pg_ctl" -D "$data/data" -l "$data/server.log" -w -t 60 -o "-p $port" start \
        >/dev/null 2>&1 9>&-; then  # 9>&-: the server must not inherit (and hold) the lock
        started=1
        break
      fi
    done
    if [ "$started" -ne 1 ]; then
      echo "pg-cluster: the server did not start; its log:" >&2
      cat "$data/server.log" >&2 || true
      stop_cluster
      exit 1
    fi
    url="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "$port" >"$state/port"
    echo "$url" >"$state/url.tmp"
    mv "$state/url.tmp" "$state/url"
    echo "$url"
    ;;
  *)
    usage
    ;;
esac

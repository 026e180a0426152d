#!/usr/bin/env bash
# The README's main command: a small company on a real fieldsync server.
#
# Installs what is missing, builds, starts fieldsync-server on its embedded SQLite store with a generated dev
# certificate, seeds territories, people, products and accounts, then lets field reps work offline for a day
# (visits, orders, appointments, concurrent edits of the same account and deal), reconnect in a different order,
# and converge. It ends with what head office sees, checks every device byte for byte against the server's view
# of that user, and says where the data lives. Finally it runs the deterministic simulator over many seeds.
#
# The server also serves the head-office dashboard: the demo prints its address and a head-office login. With
# --keep the server keeps running after the demo (until you stop it), so you can open the dashboard, watch a
# rep's next sync arrive in its live feed, approve the orders and look at the conflicts.
#
# With --postgres the same day runs on PostgreSQL (issue 20): a throwaway cluster (scripts/pg-cluster.sh), two
# fieldsync-server instances on one database (--store postgresql://), the devices spread over both, so every
# change a rep makes through one instance reaches colleagues synced through the other. Both instances serve the
# dashboard and the head-office API: head office sets the SLA through one and dispatches through the other.
#
# FIELDSYNC_DEMO_DIR (default ./demo-run) and FIELDSYNC_DEMO_PORT (default 18443; --postgres also uses the
# next port) can be set. The ctest runs of this script (tests/CMakeLists.txt: demo_main_command, demo_postgres)
# set FIELDSYNC_DEMO_BIN to their build's bin directory, which skips the set-up (installing and building), and
# FIELDSYNC_DEMO_SIM_SEEDS (default 200) to a few simulator seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
POSTGRES=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    --postgres) POSTGRES=1 ;;
    *) echo "usage: scripts/demo.sh [--keep] [--postgres]   (--keep: leave the server and its dashboard running;" \
         "--postgres: two instances on PostgreSQL)" >&2; exit 2 ;;
  esac
done
if [ -z "${FIELDSYNC_DEMO_BIN:-}" ]; then
  ./scripts/install-deps.sh
  echo "== building"
  ./scripts/build.sh release --target fieldsync-server fieldsync-admin fieldsync-rep fieldsync-sim >/dev/null
fi

BIN=$(realpath "${FIELDSYNC_DEMO_BIN:-$PWD/build/bin}")
SIM_SEEDS=${FIELDSYNC_DEMO_SIM_SEEDS:-200}
DEMO=$(realpath -m "${FIELDSYNC_DEMO_DIR:-demo-run}")
PORT=${FIELDSYNC_DEMO_PORT:-18443}
DATA=$DEMO/server
[ ! -d "$DEMO/pg" ] || scripts/pg-cluster.sh stop "$DEMO/pg" >/dev/null 2>&1 || true  # an earlier --keep's cluster
rm -rf "$DEMO"
mkdir -p "$DEMO"
PASSWORD=field-sales-2026
PORT_B=$((PORT + 1))
STORE=(--data-dir "$DATA")
if [ "$POSTGRES" = 1 ]; then
  # A throwaway cluster under the demo directory, stopped when the demo ends (unless --keep).
  PG_URL=$(scripts/pg-cluster.sh start "$DEMO/pg")
  STORE=(--store "$PG_URL")
fi

step() { printf '\n== %s\n' "$*"; }
admin() { "$BIN/fieldsync-admin" "${STORE[@]}" "$@"; }
# Which instance each person's device syncs through: with --postgres the devices are spread over both.
declare -A INSTANCE=([ho]=$PORT [maria]=$PORT_B [alice]=$PORT [bob]=$PORT_B [carol]=$PORT)
[ "$POSTGRES" = 1 ] || for u in "${!INSTANCE[@]}"; do INSTANCE[$u]=$PORT; done
servers() {  # servers USER: the device's URL list, its own instance first and the other as its fallback
  local other=$PORT
  [ "${INSTANCE[$1]}" != "$PORT" ] || other=$PORT_B
  if [ "$POSTGRES" = 1 ]; then
    echo "wss://127.0.0.1:${INSTANCE[$1]}/sync,wss://127.0.0.1:$other/sync"
  else
    echo "wss://127.0.0.1:$PORT/sync"
  fi
}
declare -A ROLE TOKEN
rep() {  # rep USER COMMAND...: run fieldsync-rep on USER's own device (replica file)
  local u=$1
  shift
  "$BIN/fieldsync-rep" --db "$DEMO/$u.db" --user "$u" --role "${ROLE[$u]}" --token "${TOKEN[$u]:-}" "$@"
}
sync() {  # sync USER...: each device connects, pushes its outbox, pulls, disconnects
  for u in "$@"; do
    rep "$u" sync --server "$(servers "$u")" --ca "$DATA/dev-cert.pem" --once >/dev/null
    if [ "$POSTGRES" = 1 ]; then
      printf '  %-6s synced through :%s, %s transactions pending\n' "$u" "${INSTANCE[$u]}" "$(rep "$u" pending)"
    else
      printf '  %-6s synced, %s transactions pending\n' "$u" "$(rep "$u" pending)"
    fi
  done
}

step "seeding the company: territories, people, products and prices"
admin territory add --id north --name "North" >/dev/null
admin territory add --id south --name "South" >/dev/null
ROLE=([ho]=head_office [maria]=manager [alice]=rep [bob]=rep [carol]=rep)
for u in ho maria alice bob carol; do
  admin user add --id "$u" --name "${u^}" --role "${ROLE[$u]}" --password "$PASSWORD" >/dev/null
done
admin assign --user alice --territory north
admin assign --user bob --territory north
admin assign --user carol --territory south
admin assign --user maria --territory north
admin assign --user maria --territory south
for r in alice bob carol; do admin assign --manager maria --rep "$r"; done
declare -A PRODUCT
for p in "ESP-1:Espresso beans 1 kg:kg:2450" "MLK-6:Oat milk 6-pack:pack:1190" "CUP-50:Paper cups x50:box:675"; do
  IFS=: read -r sku name unit cents <<<"$p"
  PRODUCT[$sku]=$(admin product add --sku "$sku" --name "$name" --unit "$unit")
  admin price set --product "$sku" --list standard --cents "$cents" --currency EUR >/dev/null
done
echo "  territories north, south; head office ho, manager maria, reps alice + bob (north), carol (south)"
echo "  3 products with standard prices"

wait_for_port() {
  for _ in $(seq 1 100); do
    if [ -f "$DATA/dev-cert.pem" ] && (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: no server on port $1" >&2
  return 1
}
check_dashboard() {  # check_dashboard URL: the server there serves the head-office dashboard
  # (The page is read whole first: `grep -q` stopping early would fail curl's write under pipefail.)
  local page
  page=$(curl -sf --cacert "$DATA/dev-cert.pem" "$1" || true)
  if grep -q '<title>fieldsync head office</title>' <<<"$page"; then
    echo "  head-office dashboard: $1  (log in as ho, password $PASSWORD; the browser warns about the"
    echo "  generated certificate: its SHA-256 pin is in the log above)"
  else
    echo "demo: the server does not serve the dashboard at $1" >&2
    exit 1
  fi
}
if [ "$POSTGRES" = 1 ]; then
  step "starting two fieldsync-server instances on one PostgreSQL database (generated dev certificate)"
  mkdir -p "$DATA"
  "$BIN/fieldsync-server" --dev --data-dir "$DATA" --store "$PG_URL" --listen "127.0.0.1:$PORT" --threads 2 \
    >"$DEMO/server.log" 2>&1 &
  SERVER_PID=$!
  wait_for_port "$PORT"  # the first makes the certificate; the second reuses it
  "$BIN/fieldsync-server" --dev --data-dir "$DATA" --store "$PG_URL" --listen "127.0.0.1:$PORT_B" --threads 2 \
    >"$DEMO/server-b.log" 2>&1 &
  SERVER_B_PID=$!
  trap 'kill -TERM $SERVER_PID $SERVER_B_PID 2>/dev/null || true; wait $SERVER_PID $SERVER_B_PID 2>/dev/null || true
        scripts/pg-cluster.sh stop "$DEMO/pg" || true' EXIT
  wait_for_port "$PORT_B"
  sed 's/^/  A: /' "$DEMO/server.log" | head -3
  sed 's/^/  B: /' "$DEMO/server-b.log" | head -3
  echo "  devices: ho, alice and carol sync through :$PORT, maria and bob through :$PORT_B (each with the other"
  echo "  instance as its fallback)"
  DASHBOARD="https://127.0.0.1:$PORT/ and https://127.0.0.1:$PORT_B/"
  check_dashboard "https://127.0.0.1:$PORT/"
  check_dashboard "https://127.0.0.1:$PORT_B/"
else
  step "starting fieldsync-server (embedded SQLite store, generated dev certificate)"
  "$BIN/fieldsync-server" --dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" --threads 2 >"$DEMO/server.log" 2>&1 &
  SERVER_PID=$!
  trap 'kill -TERM $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true' EXIT
  wait_for_port "$PORT"
  sed 's/^/  /' "$DEMO/server.log" | head -5
  DASHBOARD="https://127.0.0.1:$PORT/"
  check_dashboard "$DASHBOARD"
fi

step "every device gets its own replica, is registered by head office, and logs in over HTTPS (POST /login)"
for u in ho maria alice bob carol; do
  node=$(rep "$u" status | awk -F'\t' '$1 == "node" { print $2 }')
  admin device register --node "$node" --user "$u" >/dev/null
  TOKEN[$u]=$(rep "$u" login --server "$(servers "$u")" --ca "$DATA/dev-cert.pem" \
    --password "$PASSWORD")
  printf '  %-6s device %s\n' "$u" "$node"
done

step "head office files the customer accounts and syncs"
declare -A ACCT
ACCT[rossi]=$(rep ho account add --name "Caffè Rossi" --territory north --city Hamburg --segment a)
ACCT[kiosk]=$(rep ho account add --name "Hafen Kiosk" --territory north --city Hamburg --segment b)
ACCT[mensa]=$(rep ho account add --name "Uni Mensa Süd" --territory south --city Munich --segment a)
GRINDER=$(rep ho asset add --account "${ACCT[rossi]}" --serial GR-2041 --installed 2023-03-01T00:00 \
  --warranty-end 2025-03-01T00:00)
echo "  and Caffè Rossi's grinder (serial GR-2041), whose warranty ended in March 2025"
sync ho

step "the field devices bootstrap their scope"
sync maria alice bob carol

step "a day offline (no device is connected)"
T=$(date -u +%Y-%m-%d)
VISIT=$(rep alice checkin --account "${ACCT[rossi]}" --lat 53.5511 --lon 9.9937)
rep alice note --visit "$VISIT" "Owner wants to switch to oat milk; asked for a tasting." >/dev/null
rep alice checkout --visit "$VISIT" --outcome order_taken >/dev/null
ORDER=$(rep alice order draft --account "${ACCT[rossi]}")
rep alice order line --order "$ORDER" --product "${PRODUCT[ESP-1]}" --qty 12 >/dev/null
rep alice order line --order "$ORDER" --product "${PRODUCT[MLK-6]}" --qty 20 >/dev/null
rep alice order submit --order "$ORDER" >/dev/null
echo "  alice: visit at Caffè Rossi with notes, order of 2 lines submitted"
MEET=$(rep alice event book --title "Tasting at Rossi" --start "${T}T14:00" --end "${T}T15:00" \
  --account "${ACCT[rossi]}" | head -1)
echo "  alice: booked a tasting 14:00-15:00"
echo "  alice: booked a kiosk follow-up 14:30-15:30; the app warns at once, offline, that it overlaps:"
rep alice event book --title "Kiosk follow-up" --start "${T}T14:30" --end "${T}T15:30" \
  --account "${ACCT[kiosk]}" | awk -F'\t' '$1 == "overlaps" { print "    " $6 " " $3 " - " $4 }'
rep alice account edit --id "${ACCT[rossi]}" --phone "+49 40 111111" >/dev/null
rep bob account edit --id "${ACCT[rossi]}" --phone "+49 40 222222" --note "Delivery only before 9:00." >/dev/null
echo "  alice and bob both changed Caffè Rossi's phone number, offline"
DEAL=$(rep bob opp add --account "${ACCT[kiosk]}" --name "Kiosk espresso contract" --amount 480000)
echo "  bob: opened a deal at Hafen Kiosk"
VISIT2=$(rep carol checkin --account "${ACCT[mensa]}")
rep carol checkout --visit "$VISIT2" --outcome follow_up >/dev/null
ORDER2=$(rep carol order draft --account "${ACCT[mensa]}")
rep carol order line --order "$ORDER2" --product "${PRODUCT[CUP-50]}" --qty 40 >/dev/null
rep carol order submit --order "$ORDER2" >/dev/null
echo "  carol: visit and a cups order at Uni Mensa Süd"
rep maria event book --title "Team review" --start "${T}T17:00" --end "${T}T18:00" >/dev/null
echo "  maria: booked a team review"
LEAD=$(rep alice lead add --person "Jonas Weber" --company "Weber Rösterei" --source field_prospecting \
  --territory north --email jonas@weber.example)
rep alice lead qualify --id "$LEAD" >/dev/null
CONVERTED=$(rep alice lead convert --id "$LEAD" --opp-name "Weber espresso blend" --amount 1250000)
echo "  alice: met a prospect at a fair and converted the lead offline, in one transaction:"
echo "$CONVERTED" | sed 's/^/    /'
CASE=$(rep alice case open --account "${ACCT[rossi]}" --subject "Grinder jams every morning" --priority high \
  --asset "$GRINDER")
echo "  alice: opened a service case at Caffè Rossi on the grinder; it is billable (warranty over):"
rep alice case show --id "$CASE" | sed 's/^/    /'
rep alice task add --title "Call Jonas about the blend" --due "${T}T08:00" --lead "$LEAD" >/dev/null
echo "  alice: a task for the new customer; already overdue: $(rep alice tasks --overdue | wc -l)"
for u in alice bob carol maria; do printf '  %-6s pending: %s transactions\n' "$u" "$(rep "$u" pending)"; done

step "reconnecting, in a different order than they left"
sync bob carol alice maria
step "a second round: bob moves his deal, alice (who pulled it) closes it, bob is back offline"
sync bob alice
rep alice opp move --id "$DEAL" --stage won >/dev/null
rep bob opp move --id "$DEAL" --stage negotiation >/dev/null
rep alice event move --id "$MEET" --start "${T}T16:00" --end "${T}T17:00" >/dev/null
sync alice bob
echo "  bob's later move of a deal alice had already won is refused; bob's device rolls it back:"
rep bob rejections | sed 's/^/    /'
step "head office dispatches alice's service case to bob; the SLA sets its due time"
# Head office's API; on PostgreSQL the setting goes through one instance and the dispatch through the other,
# which reads the setting from the shared database.
API_PORT_SET=$PORT
API_PORT=$PORT
[ "$POSTGRES" = 0 ] || API_PORT=$PORT_B
api() {  # api METHOD PATH [JSON]: head office's API as ho, with a bearer token, on instance $API_PORT
  curl -sf --cacert "$DATA/dev-cert.pem" -X "$1" -H "Authorization: Bearer $HO_API" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "https://127.0.0.1:$API_PORT/api/v1$2"
}
HO_API=$(curl -sf --cacert "$DATA/dev-cert.pem" -H 'Content-Type: application/json' \
  --data "{\"user\": \"ho\", \"password\": \"$PASSWORD\", \"mode\": \"token\"}" \
  "https://127.0.0.1:$API_PORT_SET/api/v1/session" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
API_PORT=$API_PORT_SET api PUT /settings/case-sla '{"due_minutes": {"high": 480}}' >/dev/null
echo "  SLA setting (on :$API_PORT_SET): a high-priority case is due 8 hours after it was opened"
echo "  POST /api/v1/service-cases/$CASE/dispatch {\"to\": \"bob\"} (on :$API_PORT):"
api POST "/service-cases/$CASE/dispatch" '{"to": "bob"}' | sed 's/^/    /'
echo
echo "  GET /api/v1/service-cases/$CASE (what head office sees, with the derived billable flag):"
api GET "/service-cases/$CASE" |
  sed -n 's/.*"status":"\([a-z_]*\)".*"billable":\([a-z]*\).*/    status \1, billable \2/p'
sync bob
echo "  bob's device now lists the case as his, with its due time:"
rep bob cases | sed 's/^/    /'

step "everyone syncs once more"
sync ho maria alice bob carol

step "what head office sees"
admin export >"$DEMO/central.json"
awk '/^  "[a-z_]+": \[/ { e = $1; gsub(/[":]/, "", e) } /^    \{/ { n[e]++ }
     END { for (k in n) printf "  %-18s %d\n", k, n[k] }' "$DEMO/central.json" | sort
echo "  conflicts recorded:"
rep ho conflicts | awk -F'\t' '{ printf "    %-16s %-14s %s: %s / %s\n", $2, $3, $5, $6, $7 }'

echo "  the server's own counters (GET /metrics):"
curl -s --cacert "$DATA/dev-cert.pem" "https://127.0.0.1:$PORT/metrics" |
  awk '/^fieldsync_(txns|conflicts|rejections|logins|store_syncs|handshakes|live_batches)_total/ { printf "    %s\n", $0 }
       /^fieldsync_push_durable_seconds_(sum|count)/ { v[$1] = $2 }
       END { if (v["fieldsync_push_durable_seconds_count"] > 0)
               printf "    push to durable ack: %.1f ms on average over %d pushes\n",
                      1000 * v["fieldsync_push_durable_seconds_sum"] / v["fieldsync_push_durable_seconds_count"],
                      v["fieldsync_push_durable_seconds_count"] }'

step "checking convergence: each device against the server's view of its user"
ok=1
for u in ho maria alice bob carol; do
  rep "$u" export >"$DEMO/$u.json"
  admin export --user "$u" >"$DEMO/$u.server.json"
  if cmp -s "$DEMO/$u.json" "$DEMO/$u.server.json"; then
    printf '  %-6s identical (%s bytes)\n' "$u" "$(wc -c <"$DEMO/$u.json")"
  else
    printf '  %-6s DIFFERS from the server (diff %s %s)\n' "$u" "$DEMO/$u.json" "$DEMO/$u.server.json"
    ok=0
  fi
done

step "where the data lives"
if [ "$POSTGRES" = 1 ]; then
  echo "  central store:   PostgreSQL $PG_URL (tables per entity, the log, conflicts, rejections)"
  echo "  users/devices:   the same database, schema fieldsync_directory"
  echo "  server logs:     $DEMO/server.log (:$PORT), $DEMO/server-b.log (:$PORT_B)"
else
  echo "  central store:   $DATA/central.db (SQLite, WAL; tables per entity, _log (also the audit), _conflicts, _rejections)"
  echo "  users/devices:   $DATA/directory.db"
  echo "  server log:      $DEMO/server.log"
fi
echo "  dev certificate: $DATA/dev-cert.pem"
echo "  device replicas: $DEMO/{ho,maria,alice,bob,carol}.db"

step "the deterministic simulator: $SIM_SEEDS seeds of faults, crashes and clock skew"
"$BIN/fieldsync-sim" --seeds "$SIM_SEEDS" --quiet

[ "$ok" = 1 ] || { echo "demo: devices did not converge" >&2; exit 1; }
# Without --keep the servers stop with this script, so their address would lead nowhere: say how to keep them.
dashboard_line() {
  if [ "$KEEP" = 1 ]; then
    echo "demo: head-office dashboard at $DASHBOARD (user ho, password $PASSWORD)"
  else
    echo "demo: the head-office dashboard was served at $DASHBOARD and stopped with the demo;"
    local again="scripts/demo.sh --keep"
    [ "$POSTGRES" = 1 ] && again+=" --postgres"
    echo "      run $again to open it (user ho, password $PASSWORD)"
  fi
}
echo
echo "demo: all devices converged with the server"
if [ "$POSTGRES" = 1 ]; then
  echo "demo: two instances on one PostgreSQL database; devices on either converged"
  dashboard_line
  if [ "$KEEP" = 1 ]; then
    trap - EXIT
    echo "demo: --keep: the servers (pids $SERVER_PID $SERVER_B_PID) and the cluster keep running; stop them with:"
    echo "  kill $SERVER_PID $SERVER_B_PID; scripts/pg-cluster.sh stop $DEMO/pg"
  fi
  exit 0
fi
dashboard_line
if [ "$KEEP" = 1 ]; then
  trap - EXIT
  echo "demo: --keep: the server (pid $SERVER_PID) keeps running; stop it with: kill $SERVER_PID"
  echo "  a rep's next day, for instance (their work appears in the dashboard's live feed as it syncs):"
  echo "    $BIN/fieldsync-rep --db $DEMO/carol.db --user carol --role rep --token ${TOKEN[carol]} \\"
  echo "      checkin --account ${ACCT[mensa]}"
  echo "    $BIN/fieldsync-rep --db $DEMO/carol.db --user carol --role rep --token ${TOKEN[carol]} \\"
  echo "      sync --server wss://127.0.0.1:$PORT/sync --ca $DATA/dev-cert.pem --once"
fi

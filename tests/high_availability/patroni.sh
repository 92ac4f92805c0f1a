#!/usr/bin/env bash
# pglock under a real cluster manager: etcd and three Patroni nodes (PostgreSQL 15,
# pglock preloaded, synchronous_mode) on loopback. Lock traffic runs from psql loops
# and from the Rust client (clients/rust/examples/ha_holder.rs), all over one libpq
# multi-host connection string with target_session_attrs=read-write, while
#   1. the leader's postmaster is killed with kill -9 (Patroni fails over), and
#   2. Patroni switches the leader over to the synchronous standby.
# For each it prints the locks before and after, the time from the event to the
# first successful acquire, the first RVN after it against the last before, and
# what the Rust client did; at the end the acknowledged writes lost (must be 0).
# Exits non-zero if a check fails.
#
#   bash tests/high_availability/patroni.sh           the checks (the test command runs them)
#   bash tests/high_availability/patroni.sh --bench   lock throughput of the primary instead:
#                                      synchronous, asynchronous, a plain server
#
# Run as root. Ports 55471-55473 (PostgreSQL), 55481-55483 (Patroni REST API),
# 55491-55492 (etcd) on 127.0.0.1 only, and 55474 (plain server, socket only) with
# --bench; files under /tmp/pglock-ha. Everything it starts is stopped at the end,
# also on failure.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$REPO"

mode=check
case ${1:-} in
    "") ;;
    --bench) mode=bench ;;
    *) echo "usage: $0 [--bench]" >&2; exit 2 ;;
esac

HA=/tmp/pglock-ha
NODES=(node1 node2 node3)
declare -A PG_PORT=([node1]=55471 [node2]=55472 [node3]=55473)
declare -A REST_PORT=([node1]=55481 [node2]=55482 [node3]=55483)
ETCD_PORT=55491 ETCD_PEER_PORT=55492 PLAIN_PORT=55474
RUST_LEASE_MS=15000 RUST_PERIOD_MS=1500
TRAFFIC_CLIENTS=4 LOCK_NAMES=4
EVENT_DEADLINE=90 # seconds for a new leader to take writes after an event

# One password for the superuser, replication and the application role, made
# per run; psql and the Rust client read PGPASSWORD.
PGPASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
export PGPASSWORD
hosts=127.0.0.1,127.0.0.1,127.0.0.1
ports=${PG_PORT[node1]},${PG_PORT[node2]},${PG_PORT[node3]}
APP_CONN="host=$hosts port=$ports dbname=postgres user=app target_session_attrs=read-write connect_timeout=2"

now_ms() { date +%s%3N; }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }
die() { echo "FAILED: $*" >&2; exit 1; }
failures=0
check() { # check CONDITION-STATUS MESSAGE: a failed check is counted, the run goes on
    if [[ $1 == 0 ]]; then echo "  ok: $2"; else echo "  FAILED: $2"; failures=$((failures + 1)); fi
}

# --- processes we start, and their clean-up -------------------------------------

# Everything started here, stopped in this order: clients, Patroni, etcd.
client_pids=() patroni_pids=() etcd_pids=()

# stop_all PID...: SIGTERM, up to 30 s to end, then SIGKILL.
stop_all() {
    local pid deadline=$((SECONDS + 30))
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
}

cleanup() {
    local status=$?
    set +e
    touch "$HA/stop" 2>/dev/null
    stop_all "${client_pids[@]}"
    stop_all "${patroni_pids[@]}" # Patroni stops its PostgreSQL when terminated
    for node in "${NODES[@]}"; do
        if [[ -f $HA/$node/data/postmaster.pid ]]; then
            as_postgres "$PG_BIN/pg_ctl" -D "$HA/$node/data" -m immediate -w stop >/dev/null 2>&1
        fi
    done
    stop_all "${etcd_pids[@]}"
    [[ $mode == bench ]] && private_server_stop ha-plain >/dev/null 2>&1
    # A failed check has said why; anything else shows the logs' last lines.
    if ((status != 0 && failures == 0)); then
        for log in "$HA"/node*/patroni.log "$HA"/etcd.log "$HA"/rust.log; do
            [[ -f $log ]] && { echo "--- last lines of $log"; tail -n 15 "$log"; }
        done
    fi
    exit "$status"
}

# start NAME COMMAND...: runs COMMAND as postgres in the background (from a
# folder postgres can read: Patroni's workers start in their parent's folder),
# output to $HA/NAME.log; its pid is in $!.
start() {
    local name=$1
    shift
    "$AS_POSTGRES" env HOME="$HA" "$@" >"$HA/$name.log" 2>&1 &
}

ports_free() {
    python3 - "$@" <<'PY' || die "a port this test needs is in use (see above); stop what uses it"
import socket, sys
busy = []
for port in map(int, sys.argv[1:]):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            busy.append(port)
if busy:
    print("ports in use on 127.0.0.1:", *busy, file=sys.stderr)
    sys.exit(1)
PY
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
    local limit=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what: not within $limit s"
        sleep 0.2
    done
}

# --- the cluster -----------------------------------------------------------------

# cluster: "name role state" per member, from the first Patroni REST API that answers.
cluster() {
    local args=()
    for node in "${NODES[@]}"; do args+=("${REST_PORT[$node]}"); done
    python3 - "${args[@]}" <<'PY'
import json, sys, urllib.request
for port in sys.argv[1:]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cluster", timeout=2) as reply:
            members = json.load(reply)["members"]
    except Exception:
        continue
    for member in members:
        print(member["name"], member["role"], member.get("state", "-"))
    break
PY
}
leader() { cluster | awk '$2 == "leader" && $3 == "running" { print $1 }'; }
sync_standby() {
    cluster | awk '$2 == "sync_standby" && ($3 == "running" || $3 == "streaming") { print $1; exit }'
}
has_leader_other_than() { local l; l=$(leader); [[ -n $l && $l != "$1" ]]; }
has_sync_standby() { [[ -n $(sync_standby) ]]; }

# sql NODE SQL: as the superuser on one node.
sql() {
    psql -X -q -At -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=${PG_PORT[$1]} user=postgres dbname=postgres connect_timeout=2" -c "$2"
}
# A standby reports itself synchronous to its primary before Patroni records it.
synchronous_on() { [[ $(sql "$1" "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == 1 ]]; }
asynchronous_on() { [[ -z $(sql "$1" "SHOW synchronous_standby_names") ]]; }
etcd_healthy() {
    python3 -c "import urllib.request, sys; sys.exit(b'true' not in urllib.request.urlopen('http://127.0.0.1:$ETCD_PORT/health', timeout=1).read())"
}

node_config() {
    local node=$1
    cat <<EOF
scope: pglock-ha
namespace: /pglock-ha/
name: $node
restapi:
  listen: 127.0.0.1:${REST_PORT[$node]}
  connect_address: 127.0.0.1:${REST_PORT[$node]}
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    # Fail over at once after the primary crashes, rather than restart it in place.
    primary_start_timeout: 0
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        shared_preload_libraries: pglock
        wal_log_hints: 'on'
        max_connections: 100
  initdb:
    - encoding: UTF8
    - auth-local: trust
    - auth-host: scram-sha-256
postgresql:
  listen: 127.0.0.1:${PG_PORT[$node]}
  connect_address: 127.0.0.1:${PG_PORT[$node]}
  use_unix_socket: true
  data_dir: $HA/$node/data
  bin_dir: $PG_BIN
  pgpass: $HA/$node/pgpass
  authentication:
    superuser: {username: postgres, password: '$PGPASSWORD'}
    replication: {username: replicator, password: '$PGPASSWORD'}
  parameters:
    unix_socket_directories: '$HA/$node'
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 scram-sha-256
    - host replication replicator 127.0.0.1/32 scram-sha-256
EOF
}

start_cluster() {
    say "etcd and three Patroni nodes (synchronous_mode), loopback only"
    rm -rf "$HA"
    mkdir -p "$HA"
    for node in "${NODES[@]}"; do
        mkdir -p "$HA/$node"
        node_config "$node" >"$HA/$node.yml"
    done
    chown -R postgres: "$HA"
    for node in "${NODES[@]}"; do chmod 700 "$HA/$node"; done
    start etcd etcd --name pglock-ha --data-dir "$HA/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "pglock-ha=http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster-state new
    etcd_pids+=($!)
    wait_until 30 "etcd healthy" etcd_healthy
    start node1/patroni patroni "$HA/node1.yml"
    patroni_pids+=($!)
    wait_until 60 "node1 leads" has_leader_other_than none
    for node in node2 node3; do
        start "$node/patroni" patroni "$HA/$node.yml"
        patroni_pids+=($!)
    done
    wait_until 90 "a synchronous standby" has_sync_standby
    wait_until 30 "synchronous replication on the leader" synchronous_on "$(leader)"
    cluster | sed 's/^/  /'
    sql "$(leader)" "CREATE EXTENSION pglock;
        CREATE ROLE app LOGIN PASSWORD '$PGPASSWORD';
        GRANT pglock_user TO app;
        CREATE TABLE ha_ledger (client int, cycle int, op text, name text, rvn bigint,
                                at timestamptz NOT NULL DEFAULT clock_timestamp(),
                                PRIMARY KEY (client, cycle, op));
        GRANT INSERT ON ha_ledger TO app;" >/dev/null
}

# --- traffic ---------------------------------------------------------------------

# traffic CLIENT: cycles of tests/high_availability/traffic.sql on random shared lock names,
# one connection per cycle, until the stop file appears.
traffic() {
    local client=$1 cycle=0 psql_pid=
    # Stopped from outside: stop the cycle under way too.
    trap '[[ -n $psql_pid ]] && kill -TERM "$psql_pid" 2>/dev/null; exit 0' TERM
    while [[ ! -e $HA/stop ]]; do
        cycle=$((cycle + 1))
        psql -X -q -At -v ON_ERROR_STOP=1 "$APP_CONN application_name=traffic-$client" \
            -v client="$client" -v cycle="$cycle" -v owner="psql-$client" \
            -v name="ha-lock-$((RANDOM % LOCK_NAMES))" -f tests/high_availability/traffic.sql \
            >>"$HA/traffic-$client.log" 2>>"$HA/traffic-$client.err" &
        psql_pid=$!
        wait "$psql_pid" || sleep 0.2
        psql_pid=
    done
}

start_traffic() {
    say "lock traffic: $TRAFFIC_CLIENTS psql loops and the Rust client, over $APP_CONN"
    for ((c = 1; c <= TRAFFIC_CLIENTS; c++)); do
        traffic "$c" &
        client_pids+=($!)
    done
    "$holder" "$APP_CONN application_name=ha-holder" ha-rust "$RUST_LEASE_MS" "$RUST_PERIOD_MS" \
        "$HA/stop" >"$HA/rust.log" 2>&1 &
    client_pids+=($!)
    wait_until 60 "the Rust client holds its lock" grep -q ' acquired ' "$HA/rust.log"
    wait_until 60 "psql traffic acknowledged" grep -qs '^ACK' "$HA"/traffic-1.log
}

# acked: every acknowledged write so far, "client cycle op name rvn at_ms port".
acked() { cat "$HA"/traffic-*.log | awk '$1 == "ACK" { print $2, $3, $4, $5, $6, $7, $8 }'; }

# locks NODE: the lock table as NODE has it, "name owner rvn released".
locks() {
    sql "$1" "SELECT name, owner, rvn, released FROM pglock.locks
               WHERE name NOT LIKE 'ha-probe-%'" | tr '|' ' ' | LC_ALL=C sort
}

# probe KIND OLD: acquires fresh locks until one is taken on a server other than
# node OLD (a switching-over leader still serves for a moment); prints "ms rvn".
probe() {
    local deadline=$((SECONDS + EVENT_DEADLINE)) attempt=0 reply rvn port
    while ((SECONDS < deadline)); do
        attempt=$((attempt + 1))
        reply=$(psql -X -q -At "$APP_CONN application_name=probe" -c \
            "SELECT rvn, inet_server_port() FROM pglock_acquire('ha-probe-$1-$attempt', 'probe',
                                                                '10 seconds') WHERE acquired" \
            2>/dev/null) || reply=
        IFS='|' read -r rvn port <<<"$reply"
        if [[ -n $rvn && $port != "${PG_PORT[$2]}" ]]; then
            echo "$(now_ms) $rvn"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# event KIND: "failover" (kill -9 of the leader's postmaster) or "switchover".
event() {
    local kind=$1 old standby at first first_ms first_rvn new
    old=$(leader) standby=$(sync_standby)
    say "$kind: leader $old, synchronous standby $standby"
    sleep 3 # traffic before
    # What is durable now: the synchronous standby's view (the primary may show
    # commits that wait for the standby and are not acknowledged yet).
    locks "$standby" >"$HA/$kind-before.txt"
    at=$(now_ms)
    case $kind in
        failover)
            kill -KILL "$(head -n 1 "$HA/$old/data/postmaster.pid")"
            echo "  kill -9 of $old's postmaster"
            ;;
        switchover)
            patronictl -c "$HA/$old.yml" switchover --leader "$old" --candidate "$standby" \
                --force >"$HA/switchover.log" 2>&1 &
            switchover_pid=$!
            client_pids+=("$switchover_pid")
            echo "  patronictl switchover --leader $old --candidate $standby"
            ;;
    esac
    first=$(probe "$kind" "$old") || die "$kind: no acquire succeeded within $EVENT_DEADLINE s"
    read -r first_ms first_rvn <<<"$first"
    if [[ $kind == switchover ]]; then
        wait "$switchover_pid" || die "patronictl switchover failed: $(cat "$HA/switchover.log")"
    fi
    wait_until "$EVENT_DEADLINE" "a new leader after the $kind" has_leader_other_than "$old"
    new=$(leader)
    locks "$new" >"$HA/$kind-after.txt"
    EVENT_AT[$kind]=$at

    echo "  new leader: $new; first successful acquire $(seconds $((first_ms - at))) after the $kind"
    echo "  locks before (on the synchronous standby) -> after (on the new leader):"
    LC_ALL=C join -a 1 -a 2 -e '-' -o '0,1.2,1.3,1.4,2.2,2.3,2.4' "$HA/$kind-before.txt" "$HA/$kind-after.txt" |
        awk '{ printf "    %-10s %-10s rvn %-8s released %-3s -> %-10s rvn %-8s released %s\n", $1, $2, $3, $4, $5, $6, $7 }'
    local went_back
    went_back=$(LC_ALL=C join -a 1 -e '-' -o '0,1.3,2.3' "$HA/$kind-before.txt" "$HA/$kind-after.txt" |
        awk '$3 == "-" || $3 + 0 < $2 + 0 { print $1 }')
    check "$([[ -z $went_back ]]; echo $?)" \
        "every lock of before is there after, at the same or a later RVN${went_back:+ (not: $went_back)}"
    # The last RVN the old leader acknowledged: to the psql clients (their port
    # tells the node), and to the Rust client before it reconnected.
    local last_before
    last_before=$({ acked | awk -v port="${PG_PORT[$old]}" '$7 == port && $3 != "release" { print $5 }'
        awk -v at="$at" '$NF !~ /^reconnects=/ { next }
                         $1 < at { base = $NF }
                         $1 >= at && $NF != base { exit }
                         $2 == "acquired" || $2 == "renewed" { print $3 }' "$HA/rust.log"; } |
        sort -n | tail -n 1)
    check "$([[ -n $last_before ]] && ((first_rvn > last_before)); echo $?)" \
        "first RVN after the $kind $first_rvn > last RVN acknowledged by $old ${last_before:-none}"
    sleep 3 # traffic after
    wait_until "$EVENT_DEADLINE" "a synchronous standby after the $kind" has_sync_standby
    wait_until 30 "synchronous replication on $new" synchronous_on "$new"
}

# rust_report KIND [UNTIL]: what the Rust client did after the event (and before
# UNTIL): renewed its lock over a new connection, or signalled the loss in time.
# Its lines end in reconnects=N; a renewal with a larger N came over a new one.
rust_report() {
    local kind=$1 at=${EVENT_AT[$1]} until=${2:-99999999999999}
    awk -v at="$at" -v until="$until" -v lease="$RUST_LEASE_MS" -v kind="$kind" '
        $1 < at && $NF ~ /^reconnects=/ { base = $NF }
        $1 >= at && $1 < until && !outcome {
            if ($2 == "renewed" && $NF != base) {
                outcome = sprintf("reconnected and kept its lock: RVN %s -> %s, renewed over a new connection %.1f s after the %s (lease %.0f s)",
                                  last_rvn, $3, ($1 - at) / 1000, kind, lease / 1000)
                ok = 1
            } else if ($2 == "lost") {
                since = $1 - last_ms
                reason = $0
                sub(/^[^ ]+ [^ ]+ /, "", reason)
                outcome = sprintf("signalled the loss %.1f s after its last renewal (lease %.0f s): %s",
                                  since / 1000, lease / 1000, reason)
                ok = since < lease
            }
        }
        $2 == "acquired" || $2 == "renewed" { last_ms = $1; last_rvn = $3 }
        END {
            if (!outcome) { outcome = "neither renewed its lock over a new connection nor signalled the loss"; ok = 0 }
            print (ok ? 0 : 1), outcome
        }' "$HA/rust.log"
}

finish_traffic() {
    say "stopping the traffic"
    touch "$HA/stop"
    local pid deadline=$((SECONDS + 30))
    for pid in "${client_pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do
            ((SECONDS < deadline)) || die "traffic did not stop"
            sleep 0.2
        done
    done
}

report() {
    local node lost total
    node=$(leader)
    say "results"
    acked >"$HA/acked.txt"
    total=$(wc -l <"$HA/acked.txt")
    lost=$(psql -X -q -At -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=${PG_PORT[$node]} user=postgres dbname=postgres" <<EOF
CREATE TEMP TABLE acked (client int, cycle int, op text, name text, rvn bigint, at_ms bigint,
                         port int);
\\copy acked FROM '$HA/acked.txt' WITH (DELIMITER ' ')
SELECT count(*) FROM acked a
 WHERE NOT EXISTS (SELECT FROM ha_ledger l
                    WHERE (l.client, l.cycle, l.op, l.rvn) = (a.client, a.cycle, a.op, a.rvn));
EOF
    )
    echo "  $lost acknowledged writes lost (of $total acknowledged by the psql clients)"
    check "$([[ $lost == 0 && $total -gt 0 ]]; echo $?)" "no acknowledged write lost"
    local failovers_rust switchover_rust
    read -r status failovers_rust < <(rust_report failover "${EVENT_AT[switchover]}")
    echo "  Rust client, failover: $failovers_rust"
    check "$status" "the Rust client kept its lock or signalled the loss within its lease (failover)"
    read -r status switchover_rust < <(rust_report switchover)
    echo "  Rust client, switchover: $switchover_rust"
    check "$status" "the Rust client kept its lock or signalled the loss within its lease (switchover)"
    local ending
    ending=$(awk '$2 == "released" || $2 == "release-failed" { $1 = ""; print substr($0, 2) }' \
        "$HA/rust.log" | tail -n 1)
    check "$([[ $ending == released ]]; echo $?)" \
        "the Rust client's final release succeeded (no one else held its lock meanwhile): ${ending:-no release}"
}

# --- throughput (--bench) ------------------------------------------------------------

# bench_case SETUP CONNINFO: one pgbench run per script and client count, each
# appended to $HA/bench.txt as "setup script clients tps".
bench_case() {
    local setup=$1 conn=$2 script clients output tps
    for script in pglock_acquire_release pglock_heartbeat; do
        for clients in 1 4 16; do
            psql -X -q -At -v ON_ERROR_STOP=1 "$conn" -c "TRUNCATE pglock.locks" -c CHECKPOINT >/dev/null
            output=$(pgbench -n -M prepared -c "$clients" -j "$((clients < 2 ? 1 : 2))" \
                -T "${PGLOCK_BENCH_SECONDS:-5}" -D rvn=0 -f "bench/scripts/$script.sql" "$conn" 2>&1) ||
                die "pgbench: $output"
            tps=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$output")
            printf '  %-13s %-23s %2s clients %6s/s\n' "$setup" "$script" "$clients" "$tps"
            echo "$setup $script $clients $tps" >>"$HA/bench.txt"
        done
    done
}

synchronous_mode() { # synchronous_mode true|false: set it and wait until it is in force
    patronictl -c "$HA/$1.yml" edit-config --set "synchronous_mode=$2" --force >/dev/null
    if [[ $2 == true ]]; then
        wait_until 60 "synchronous replication" synchronous_on "$1"
    else
        wait_until 60 "asynchronous replication" asynchronous_on "$1"
    fi
}

# The Patroni primary with synchronous_mode on and off, and a plain server with
# the same settings and no replication, all over TCP on loopback; rounds
# alternate them, and the table keeps each one's median run.
bench() {
    local node rounds=${PGLOCK_BENCH_ROUNDS:-3} round
    node=$(leader)
    local cluster_conn="host=127.0.0.1 port=${PG_PORT[$node]} user=postgres dbname=postgres"
    local plain_conn="host=127.0.0.1 port=$PLAIN_PORT user=postgres dbname=postgres"
    private_server_start ha-plain "$PLAIN_PORT" shared_preload_libraries=pglock wal_log_hints=on \
        listen_addresses=127.0.0.1
    psql -X -q -v ON_ERROR_STOP=1 "$plain_conn" -c "CREATE EXTENSION pglock" >/dev/null
    : >"$HA/bench.txt"
    for ((round = 1; round <= rounds; round++)); do
        say "round $round of $rounds (${PGLOCK_BENCH_SECONDS:-5} s per run)"
        synchronous_mode "$node" true
        bench_case synchronous "$cluster_conn"
        synchronous_mode "$node" false
        bench_case asynchronous "$cluster_conn"
        bench_case plain "$plain_conn"
    done
    say "lock throughput, median of $rounds runs (Patroni primary $node; plain: no replication)"
    echo "| script | clients | synchronous | asynchronous | plain | synchronous / plain |"
    echo "|---|---|---|---|---|---|"
    sort -k2,2 -k3,3n -k1,1 -k4,4n "$HA/bench.txt" | awk -v rounds="$rounds" '
        { key = $2 " " $3; values[key, $1, ++count[key, $1]] = $4; keys[key] = 1
          if (!(key in order)) { order[key] = ++n; names[n] = key } }
        function median(key, setup) { return values[key, setup, int((count[key, setup] + 1) / 2)] }
        END {
            for (i = 1; i <= n; i++) {
                split(names[i], part, " ")
                s = median(names[i], "synchronous"); a = median(names[i], "asynchronous")
                p = median(names[i], "plain")
                printf "| %s | %s | %s/s | %s/s | %s/s | %.2fx |\n", part[1], part[2], s, a, p, s / p
            }
        }'
}

# --- main ------------------------------------------------------------------------------

setup patroni etcd-server
# Patroni runs Debian's PostgreSQL 15 here (where the scripts know several versions).
if declare -F use_postgres >/dev/null; then use_postgres 15; fi
# PGLOCK_HA_HOLDER: an ha_holder built already, with pglock installed into 15's
# tree by the caller (the test command runs this script from a copy of the
# checkout, which has nothing built).
holder=${PGLOCK_HA_HOLDER:-}
if [[ -z $holder ]]; then
    install_extension
    if [[ $mode == check ]]; then
        cargo build --quiet -p pglock-client --example ha_holder
        holder=${CARGO_TARGET_DIR:-$REPO/target}/debug/examples/ha_holder
    fi
fi
ports_free "${PG_PORT[@]}" "${REST_PORT[@]}" "$ETCD_PORT" "$ETCD_PEER_PORT"
trap cleanup EXIT
trap 'exit 130' INT TERM # clean up after a signal too
declare -A EVENT_AT=()
started=$SECONDS
start_cluster
if [[ $mode == bench ]]; then
    bench
    exit 0
fi
start_traffic
event failover
event switchover
finish_traffic
report
echo
if ((failures)); then
    echo "high availability: $failures check(s) FAILED ($((SECONDS - started)) s)"
    exit 1
fi
echo "high availability: every check passed ($((SECONDS - started)) s)"

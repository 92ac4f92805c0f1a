#!/usr/bin/env bash
# pglock against the client-side protocol, the hand-written floor and advisory
# locks, all on one private PostgreSQL in one run; prints throughput, latency and
# the ratios that count.  `--smoke` runs every case for one second (the test
# command does, to keep this runner working); PGLOCK_BENCH_SECONDS overrides.
# `--pg N` picks the PostgreSQL major version (default 15).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO"

smoke=false
options=()
for arg in "$@"; do
    if [[ $arg == --smoke ]]; then smoke=true; else options+=("$arg"); fi
done
major=$(pg_option "${options[@]}")
if $smoke; then
    seconds=${PGLOCK_BENCH_SECONDS:-1} rounds=1 bloat_heartbeats=20000 scale_rows=100000
    handoff_seconds=1 handoff_rounds=5
else
    seconds=${PGLOCK_BENCH_SECONDS:-5} rounds=3 bloat_heartbeats=1000000 scale_rows=1000000
    handoff_seconds=8 handoff_rounds=40
fi
client_counts=(1 4 16)
scripts=bench/scripts
results=$(mktemp)
handoff_report=$(mktemp)

setup
use_postgres "$major"
install_extension
trap 'private_server_stop bench; rm -f "$results" "$handoff_report"' EXIT
# No timed checkpoint inside a run: each run starts right after one.  pglock
# preloaded, as the reference recommends: its waits queue and wake at once.
private_server_start bench 54332 max_connections=100 shared_buffers=256MB \
    checkpoint_timeout=1h max_wal_size=8GB shared_preload_libraries=pglock
export PGDATABASE=postgres
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pglock" -f bench/setup.sql

reset_tables() {
    sql "TRUNCATE pglock.locks, locks, floor_locks"
    sql "VACUUM ANALYZE pglock.locks, locks, floor_locks"
    sql "CHECKPOINT"
}

# run CASE LABEL CLIENTS SCRIPT [PGBENCH OPTIONS...]: one pgbench run, one result line.
run() {
    local case=$1 label=$2 clients=$3 script=$4 output
    shift 4
    output=$(pgbench -n -M prepared -c "$clients" -j "$((clients < 2 ? 1 : 2))" -T "$seconds" \
        -D rvn=0 -D clients="$clients" "$@" -f "$scripts/$script" 2>&1) \
        || { echo "$output"; return 1; }
    local tps latency
    tps=$(awk '/^tps = / {print $3}' <<<"$output")
    latency=$(awk '/^latency average = / {print $4}' <<<"$output")
    printf '%s %s %s %s %s\n' "$case" "$label" "$clients" "$tps" "$latency" >>"$results"
    printf '  %-28s %-18s %2s clients %10.0f/s %8.3f ms\n' "$case" "$label" "$clients" "$tps" "$latency"
}

# Runs of the compared variants alternate, $rounds times, and the report keeps
# each one's median run, so a slow moment of the machine hits all of them alike.
say "1-4. uncontended acquire + release, random lock out of 10,000 (${seconds}s per run, $rounds rounds)"
for ((round = 1; round <= rounds; round++)); do
    for clients in "${client_counts[@]}"; do
        for variant in pglock:pglock_acquire_release client:client_acquire_release \
            floor:floor_acquire_release advisory:advisory_lock_unlock; do
            reset_tables
            run uncontended "${variant%%:*}" "$clients" "${variant#*:}.sql"
        done
    done
done

say "5. heartbeats, each client on its own lock"
for ((round = 1; round <= rounds; round++)); do
    for clients in "${client_counts[@]}"; do
        for variant in pglock:pglock_heartbeat client:client_heartbeat; do
            reset_tables
            run heartbeat "${variant%%:*}" "$clients" "${variant#*:}.sql"
        done
    done
done

say "failed attempts on a lock another owner holds, 16 clients"
reset_tables
sql "SELECT FROM pglock_acquire('held', 'holder', '1 day')"
sql "INSERT INTO locks VALUES ('held', nextval('locks_rvn'), NULL, 'holder')"
# A failed attempt only reads: no WAL, no transaction id.  This is checked, not
# just reported (the smoke run in the test command fails if it breaks).  So that
# only the attempts count: autovacuum (which takes xids) is paused, the xid
# readings are taken outside the WAL range, and pg_waldump tells the attempts'
# records from the bgwriter's periodic running-xacts snapshot (rmgr Standby).
alter_system() { sql "ALTER SYSTEM $1" && sql "SELECT pg_reload_conf()" >/dev/null; }
alter_system "SET autovacuum = off"
for ((tries = 0; ; tries++)); do
    [[ $(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'") == 0 ]] && break
    ((tries < 600)) || { echo "autovacuum workers still running after 60 s" >&2; exit 1; }
    sleep 0.1
done
# The first read after the holder's commit sets the row's hint bits: that is
# reading, not the attempts' doing (with data checksums it can log a page image).
sql "SELECT FROM pglock_get('held')" >/dev/null
xid_before=$(sql "SELECT txid_current()")
wal_before=$(sql "SELECT pg_current_wal_insert_lsn()")
run failed-attempt pglock 16 pglock_attempt_held.sql
wal_after=$(sql "SELECT pg_current_wal_insert_lsn()")
# Its commit flushes every record before it, so pg_waldump finds them on disk.
xid_after=$(sql "SELECT txid_current()")
alter_system "RESET autovacuum"
attempts_of() { awk -v label="$1" -v seconds="$seconds" \
    '$1 == "failed-attempt" && $2 == label {printf "%d", $4 * seconds}' "$results"; }
failed_attempts=$(attempts_of pglock)
pglock_xids=$((xid_after - xid_before - 1))
attempt_records=
if [[ $wal_before != "$wal_after" ]]; then
    attempt_records=$("$PG_BIN/pg_waldump" -p "$PRIVATE_DIR/data/pg_wal" \
        -s "$wal_before" -e "$wal_after" | awk '$1 == "rmgr:" && $2 != "Standby"')
fi
pglock_wal=$(awk '{sub(/.*len \(rec\/tot\): *[0-9]+\/ */, ""); bytes += $1} END {print bytes + 0}' \
    <<<"$attempt_records")
echo "  pglock: ~$failed_attempts failed attempts wrote $pglock_wal bytes of WAL, took $pglock_xids xids"
if [[ -n $attempt_records ]] || ((pglock_xids != 0)); then
    echo "FAILED: failed attempts must write no WAL and take no transaction id;" \
        "$(grep -c . <<<"$attempt_records") WAL records, the first ones:" >&2
    head -n 10 <<<"${attempt_records:-(none)}" >&2
    exit 1
fi
wal_before=$(sql "SELECT pg_current_wal_insert_lsn()")
run failed-attempt client 16 client_attempt_held.sql
wal_after=$(sql "SELECT pg_current_wal_insert_lsn()")
client_attempts=$(attempts_of client)
client_wal=$(sql "SELECT pg_wal_lsn_diff('$wal_after', '$wal_before')")
echo "  client-side protocol: ~$client_attempts failed attempts wrote $client_wal bytes of WAL"
# The physical limit of a failed attempt is reading the lock's row: compare with
# a plain read of it, in both of pgbench's query modes, runs alternating.
for ((round = 1; round <= rounds; round++)); do
    for mode in prepared simple; do
        run "failed-attempt-$mode" pglock 16 pglock_attempt_held.sql -M "$mode"
        run "failed-attempt-$mode" plain-read 16 plain_read_held.sql -M "$mode"
    done
done

say "6. contention: 16 clients on one lock, winners release"
for variant in pglock:pglock_contended client:client_contended; do
    reset_tables
    run contention "${variant%%:*}" 16 "${variant#*:}.sql"
done

say "7. scale: pglock acquire + release with 1,000 and $scale_rows lock rows present"
for rows in 1000 "$scale_rows"; do
    reset_tables
    sql "INSERT INTO pglock.locks (name, owner, rvn, lease, holder_role)
         SELECT 'filler-' || g, 'filler', nextval('pglock.rvn_seq'), '1 hour', 10
           FROM generate_series(1, $rows) g"
    sql "VACUUM ANALYZE pglock.locks"
    for clients in 1 16; do
        run "scale-$([[ $rows == 1000 ]] && echo small || echo large)" pglock "$clients" \
            pglock_acquire_release.sql
    done
done

say "8. bloat: $bloat_heartbeats heartbeats on 1,000 locks, 16 clients"
reset_tables
sql "SELECT count(*) FROM generate_series(0, 999) n, pglock_acquire('bloat-' || n, 'bloat', '1 hour')" >/dev/null
sql "SELECT pg_stat_reset()"
size_sql="SELECT pg_table_size('pglock.locks') + pg_indexes_size('pglock.locks')"
size_before=$(sql "$size_sql")
pgbench -n -M prepared -c 16 -j 2 -t $((bloat_heartbeats / 16)) -D clients=16 \
    -f "$scripts/pglock_heartbeat_bloat.sql" >/dev/null
sleep 1 # let the last backends' statistics arrive
size_after=$(sql "$size_sql")
read -r updates hot < <(sql "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_all_tables
                               WHERE relid = 'pglock.locks'::regclass" | tr '|' ' ')

say "9. CPU-bound: fsync = off for pglock and the client-side protocol alike, 4 clients"
# Not synchronous_commit = off, which pglock overrides for its own writes.
alter_system "SET fsync = off"
for ((round = 1; round <= rounds; round++)); do
    for variant in pglock:pglock_acquire_release client:client_acquire_release; do
        reset_tables
        run cpu-uncontended "${variant%%:*}" 4 "${variant#*:}.sql"
    done
    for variant in pglock:pglock_heartbeat client:client_heartbeat; do
        reset_tables
        run cpu-heartbeat "${variant%%:*}" 4 "${variant#*:}.sql"
    done
done
alter_system "RESET fsync"

say "10. durability's cost: sessions with synchronous_commit = off, 4 clients"
# pglock still waits for its commits to reach disk; the client-side protocol's
# commits do not: the ratio is what durability costs where a session turns it off.
export PGOPTIONS="-c synchronous_commit=off"
for ((round = 1; round <= rounds; round++)); do
    for variant in pglock:pglock_acquire_release client:client_acquire_release; do
        reset_tables
        run async-uncontended "${variant%%:*}" 4 "${variant#*:}.sql"
    done
done
unset PGOPTIONS

say "11. renewing 100 locks in one session: one pglock_heartbeat_many per round against 100 pglock_heartbeat"
# Each pgbench transaction is one round: every lock renewed once.  The runner takes
# the locks and hands their RVNs to the script, which keeps each new one.
hb100_names="{$(seq -s, -f 'hb100-%g' 0 99)}"
for ((round = 1; round <= rounds; round++)); do
    for variant in many single; do
        reset_tables
        mapfile -t hb100_rvns < <(sql "SELECT a.rvn FROM generate_series(0, 99) n,
                                        pglock_acquire('hb100-' || n, 'bench', '1 hour') a ORDER BY n")
        if [[ $variant == many ]]; then
            options=(-D "names=$hb100_names" -D "rvns={$(IFS=,; echo "${hb100_rvns[*]}")}")
        else
            options=()
            for k in "${!hb100_rvns[@]}"; do options+=(-D "rvn$k=${hb100_rvns[k]}"); done
        fi
        run rounds-renewing-100-locks "$variant" 1 "pglock_heartbeat_100_$variant.sql" "${options[@]}"
    done
done

say "12. waiting: hand-offs against pg_advisory_lock (clients/rust/examples/handoff.rs)"
# Hand-off latency, 8 sessions looping wait + release, arrival order, a silent
# holder's lock taken, the Rust client's hand-off; its report joins ours, and
# the loop's hand-offs per second join the chart.
cargo build --release --quiet -p pglock-client --example handoff
"${CARGO_TARGET_DIR:-$REPO/target}/release/examples/handoff" \
    "host=$PGHOST port=$PGPORT user=postgres dbname=postgres" "$handoff_seconds" "$handoff_rounds" \
    | tee "$handoff_report"
awk '$1 == "result" && $2 == "handoff-loop" { print "waiting-handoffs", $3, $4, $5, 0 }' \
    "$handoff_report" >>"$results"

say "results"
awk -v size_before="$size_before" -v size_after="$size_after" -v updates="$updates" -v hot="$hot" \
    -v pglock_wal="$pglock_wal" -v pglock_xids="$pglock_xids" -v client_wal="$client_wal" \
    -v failed_attempts="$failed_attempts" -v client_attempts="$client_attempts" \
    -v scale_rows="$scale_rows" -v bloat_heartbeats="$bloat_heartbeats" \
    -f bench/report.awk "$results" | tee target/bench-report.txt
grep -v '^result ' "$handoff_report" >>target/bench-report.txt
awk -f bench/chart.awk "$results" >target/bench-chart.svg
echo "chart: target/bench-chart.svg"

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
else
    seconds=${PGLOCK_BENCH_SECONDS:-5} rounds=3 bloat_heartbeats=1000000 scale_rows=1000000
fi
client_counts=(1 4 16)
scripts=bench/scripts
results=$(mktemp)

setup
use_postgres "$major"
install_extension
trap 'private_server_stop bench; rm -f "$results"' EXIT
# No timed checkpoint inside a run: each run starts right after one.
private_server_start bench 54332 max_connections=100 shared_buffers=256MB \
    checkpoint_timeout=1h max_wal_size=8GB
export PGDATABASE=postgres
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pglock" -f bench/setup.sql

reset_tables() {
    sql "TRUNCATE pglock.locks, locks, floor_locks"
    sql "VACUUM ANALYZE pglock.locks, locks, floor_locks"
    sql "CHECKPOINT"
}

# run CASE LABEL CLIENTS SCRIPT: one pgbench run, one result line.
run() {
    local case=$1 label=$2 clients=$3 script=$4 output
    output=$(pgbench -n -M prepared -c "$clients" -j "$((clients < 2 ? 1 : 2))" -T "$seconds" \
        -D rvn=0 -D clients="$clients" -f "$scripts/$script" 2>&1) \
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
wal_before=$(sql "SELECT pg_current_wal_insert_lsn()")
xid_before=$(sql "SELECT txid_current()")
run failed-attempt pglock 16 pglock_attempt_held.sql
xid_after=$(sql "SELECT txid_current()")
wal_after=$(sql "SELECT pg_current_wal_insert_lsn()")
attempts_of() { awk -v label="$1" -v seconds="$seconds" \
    '$1 == "failed-attempt" && $2 == label {printf "%d", $4 * seconds}' "$results"; }
failed_attempts=$(attempts_of pglock)
pglock_wal=$(sql "SELECT pg_wal_lsn_diff('$wal_after', '$wal_before')")
pglock_xids=$((xid_after - xid_before - 1))
echo "  pglock: ~$failed_attempts failed attempts wrote $pglock_wal bytes of WAL, took $pglock_xids xids"
wal_before=$(sql "SELECT pg_current_wal_insert_lsn()")
run failed-attempt client 16 client_attempt_held.sql
wal_after=$(sql "SELECT pg_current_wal_insert_lsn()")
client_attempts=$(attempts_of client)
client_wal=$(sql "SELECT pg_wal_lsn_diff('$wal_after', '$wal_before')")
echo "  client-side protocol: ~$client_attempts failed attempts wrote $client_wal bytes of WAL"
run failed-attempt plain-read 16 plain_read_held.sql

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
    -f "$scripts/pglock_heartbeat_many.sql" >/dev/null
sleep 1 # let the last backends' statistics arrive
size_after=$(sql "$size_sql")
read -r updates hot < <(sql "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_all_tables
                               WHERE relid = 'pglock.locks'::regclass" | tr '|' ' ')

say "results"
awk -v size_before="$size_before" -v size_after="$size_after" -v updates="$updates" -v hot="$hot" \
    -v pglock_wal="$pglock_wal" -v pglock_xids="$pglock_xids" -v client_wal="$client_wal" \
    -v failed_attempts="$failed_attempts" -v client_attempts="$client_attempts" \
    -v scale_rows="$scale_rows" -v bloat_heartbeats="$bloat_heartbeats" \
    -f bench/report.awk "$results" | tee target/bench-report.txt

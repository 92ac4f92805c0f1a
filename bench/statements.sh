#!/usr/bin/env bash
# What the Rust client's unnamed statements cost against named prepared ones,
# straight to PostgreSQL and through PgBouncer in transaction pooling mode (pool
# size 4): runs clients/rust/examples/statement_cost.rs against a private server and a
# private PgBouncer, on 1 and on 12 connections, then the server's side alone
# with pgbench (-M prepared against -M extended, which sends unnamed statements).
#   bash bench/statements.sh [CALLS] [ROUNDS]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO"
calls=${1:-2000} rounds=${2:-5}

setup
install_extension
bouncer_dir=/tmp/pglock-bench-pgbouncer bouncer_port=54334
stop_all() {
    [[ -f $bouncer_dir/pgbouncer.pid ]] && kill "$(cat "$bouncer_dir/pgbouncer.pid")" 2>/dev/null
    private_server_stop bench-statements
}
trap stop_all EXIT
private_server_start bench-statements 54333 max_connections=100
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE EXTENSION pglock"

rm -rf "$bouncer_dir" && mkdir -p "$bouncer_dir/socket"
cat >"$bouncer_dir/pgbouncer.ini" <<INI
[databases]
postgres = host=$PGHOST port=$PGPORT dbname=postgres

[pgbouncer]
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
listen_addr =
listen_port = $bouncer_port
unix_socket_dir = $bouncer_dir/socket
auth_type = trust
auth_file = $bouncer_dir/userlist.txt
logfile = $bouncer_dir/pgbouncer.log
pidfile = $bouncer_dir/pgbouncer.pid
INI
echo '"postgres" ""' >"$bouncer_dir/userlist.txt"
chown -R postgres: "$bouncer_dir"
as_postgres /usr/sbin/pgbouncer -d "$bouncer_dir/pgbouncer.ini"
for _ in $(seq 100); do [[ -S $bouncer_dir/socket/.s.PGSQL.$bouncer_port ]] && break; sleep 0.1; done

cargo build --release --quiet -p pglock-client --example statement_cost
bench=target/release/examples/statement_cost
direct="host=$PGHOST port=$PGPORT user=postgres dbname=postgres"
pooled="host=$bouncer_dir/socket port=$bouncer_port user=postgres dbname=postgres"
for connections in 1 12; do
    say "straight to PostgreSQL, $connections connection(s)"
    "$bench" "$direct" "$calls" "$rounds" "$connections"
    say "through PgBouncer (transaction pooling, pool size 4), $connections connection(s)"
    "$bench" "$pooled" "$calls" "$rounds" "$connections"
done

say "the server's side alone: pgbench, 1 client, 5 s per run, $rounds rounds (transactions/s)"
scripts=$(mktemp -d)
trap 'stop_all; rm -rf "$scripts"' EXIT
cat >"$scripts/get.sql" <<SQL
SELECT name, owner, rvn, extract(epoch FROM lease)::float8, data, released FROM pglock_get('statement-cost-held');
SQL
cat >"$scripts/refused.sql" <<SQL
SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data FROM pglock_acquire('statement-cost-held'::text, 'bench-rival'::text, lease => make_interval(secs => 20::float8), data => NULL::bytea, replace_data => false, observed_rvn => NULL::bigint);
SQL
psql -X -q -v ON_ERROR_STOP=1 -d postgres \
    -c "SELECT pglock_acquire('statement-cost-held', 'bench-other', '1 day')" >/dev/null
for round in $(seq "$rounds"); do
    for script in get refused; do
        for mode in prepared extended; do
            tps=$("$PG_BIN/pgbench" -n -M "$mode" -c 1 -T 5 -f "$scripts/$script.sql" postgres 2>/dev/null \
                | awk '/^tps/ {print int($3)}')
            echo "round $round $script $mode $tps"
        done
    done
done | sort -k3,3 -k4,4 -k5,5n | awk '
    { key = $3 " " $4; values[key] = values[key] " " $5; count[key]++ }
    END { for (key in values) { n = split(values[key], v, " "); print key ": median " v[int((n + 1) / 2)] " of" values[key] } }' | sort

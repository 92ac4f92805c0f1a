#!/usr/bin/env bash
# clients/python/bench.sh [--fsync] [--seconds S] [--rounds N]: the Python client's
# acquire + release and hand-off beside the same SQL driven by pgbench, in one run
# (see bench.py), against a private server it starts (pglock preloaded) from
# PGLOCK_PG_CONFIG's bindir (default: the pg_config on PATH) on port 55510 in
# /tmp/pglock-py-bench, and stops at the end; pgbench comes from the same bindir.
# The server runs with fsync = off, so that what is measured is the client's cost
# and not the disk's flushes (which dominate, and vary, otherwise); --fsync keeps
# the flushes.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
benchenv=$target/python-bench-venv
export PGLOCK_PG_CONFIG=${PGLOCK_PG_CONFIG:-$(command -v pg_config)}
bindir=$("$PGLOCK_PG_CONFIG" --bindir)

stop_server() {
    "$repo/scripts/as-postgres" "$bindir/pg_ctl" -D /tmp/pglock-py-bench/data -m fast -w stop \
        >/dev/null 2>&1 || true
}

fsync=off
if [[ ${1:-} == --fsync ]]; then
    fsync=on
    shift
fi
dir=/tmp/pglock-py-bench port=55510
stop_server
rm -rf "$dir" && mkdir -p "$dir/socket" && chown -R postgres: "$dir"
trap stop_server EXIT
"$repo/scripts/as-postgres" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
    --no-sync >/dev/null
"$repo/scripts/as-postgres" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-c port=$port -c listen_addresses= -c unix_socket_directories=$dir/socket \
        -c shared_preload_libraries=pglock -c max_connections=100 -c fsync=$fsync" \
    start >/dev/null
"$bindir/psql" -X -q -h "$dir/socket" -p "$port" -U postgres -d postgres \
    -c "CREATE DATABASE pglock_bench" -c '\c pglock_bench' -c "CREATE EXTENSION pglock"
export PGHOST=$dir/socket PGPORT=$port PGUSER=postgres PGLOCK_TEST_DB=pglock_bench
echo "server: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'), fsync = $fsync" >&2

step "tools (pinned)" tools_venv >&2
step "wheel" wheel >&2
step "wheel installed into a fresh venv" fresh_env "$benchenv" >&2
cd "$target"
"$benchenv/bin/python" "$here/bench.py" "$@"

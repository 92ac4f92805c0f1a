#!/usr/bin/env bash
# Set up everything on a fresh machine, then run every pglock test:
#   1. formatting and clippy,
#   2. `cargo pgrx test`: pure Rust tests and in-server #[pg_test]s,
#   3. tests from outside over real connections, against a private server
#      (upgrade from 0.1.0, crashes, replication, pg_cron, ...),
#   4. the Rust client library's tests, against the same server,
#   5. concurrency specs with fixed interleavings (pg_isolation_regress),
#   6. the pg_regress suite pinning every result and message,
#   7. the packages (.deb, tarball) installed and used on clean server copies,
#   8. a smoke run of the benchmark (one second per case),
#   9. locks through a Patroni failover and switchover (tests/ha/patroni.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

setup

say "cargo fmt --check, cargo clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

say "the lease protocol's own tests (pglock-protocol, in memory, no server)"
cargo test -p pglock-protocol

say "cargo pgrx test (unit and in-server tests)"
pgrx_data=/tmp/pglock-pgrx-test
mkdir -p "$pgrx_data" && chown postgres: "$pgrx_data"
CARGO_PGRX_TEST_RUNAS=postgres CARGO_PGRX_TEST_PGDATA=$pgrx_data/data \
    cargo pgrx test pg15

install_extension
say "tests over real connections"
trap 'private_server_stop test' EXIT
private_server_start test 54331 max_connections=200 shared_preload_libraries=pglock
export PGLOCK_TEST_DB=pglock_test
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $PGLOCK_TEST_DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$PGLOCK_TEST_DB" -c "CREATE EXTENSION pglock"
cargo test -p pglock-tests

say "Rust client library (client/) against the same server"
cargo test -p pglock-client --all-features

say "concurrency specs (pg_isolation_regress, expected output in tests/isolation/expected)"
"$PG_PGXS/src/test/isolation/pg_isolation_regress" --host="$PGHOST" --port="$PGPORT" \
    --user=postgres --dbname=pglock_isolation --load-extension=pglock \
    --inputdir=tests/isolation --outputdir=target/isolation --schedule=tests/isolation/schedule \
    || { cat target/isolation/regression.diffs; exit 1; }

say "pg_regress: every result and message of the SQL interface (tests/regress/expected)"
"$PG_PGXS/src/test/regress/pg_regress" --host="$PGHOST" --port="$PGPORT" \
    --user=postgres --dbname=pglock_regress --load-extension=pglock \
    --inputdir=tests/regress --outputdir=target/regress --schedule=tests/regress/schedule \
    || { cat target/regress/regression.diffs; exit 1; }

say "packaging: the .deb and the tarball, installed into clean copies of PostgreSQL 15"
bash packaging/test.sh

# The bench reinstalls pglock; a server with the library preloaded must not be
# running while its file is replaced.
private_server_stop test

say "benchmark smoke run (bench/run.sh --smoke)"
bash bench/run.sh --smoke

say "high availability: a Patroni failover and switchover (tests/ha/patroni.sh)"
bash tests/ha/patroni.sh

say "all tests passed"

#!/usr/bin/env bash
# Set up everything on a fresh machine, then run every pglock test on every
# supported PostgreSQL (14 to 18), one version after the other:
#
#   once:           formatting and clippy; the lease protocol's own tests (in
#                   memory, no server); the tests over connections built;
#   every version:  `cargo pgrx test pgNN` (pure Rust and in-server tests);
#                   one release build, installed into that version's tree and
#                   used by everything below; a private server of that version;
#                   the tests over connections (tests/over_connections/tests);
#                   pg_isolation_regress and pg_regress; the tarball installed
#                   and used on a clean copy of that version;
#   15 and 18 also: the tests over connections that need more (crashes,
#                   replication, dump/restore, ...; pg_cron's on 15 only), the
#                   Rust, Go and Python clients, the Prometheus rules and
#                   exporter, the .deb (15 only), a benchmark smoke run;
#   at the end:     pg_upgrade 14 -> 18 and 15 -> 18 with locks in use; on
#                   15, locks through a Patroni failover and switchover
#                   (tests/high_availability/patroni.sh), then network
#                   partitions and bad links with histories a checker reads
#                   (tests/partitions).
#
# Every part runs under a time limit, prints how long it took, and the command
# ends with a table of the parts' times.  A part that fails or runs past its
# limit stops the command, naming the part.
#
# usage: bash scripts/test.sh [--pg N]...   only these versions (default: all)
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
source "$(dirname "$0")/lib.sh"
cd "$REPO"
# A test run builds each thing once: incremental caches would only take disk.
export CARGO_INCREMENTAL=0

# What runs where.  Every file of tests/over_connections/tests runs on every
# version (cargo finds them), but these, which need what only some versions
# have here or take long: the rest on FULL_MAJORS, pg_cron's on CRON_MAJORS.
FULL_MAJORS=(15 18)
FULL_ONLY_TESTS=(faults replication dump_restore counter counters waiting_vacuum checkpointed_job)
CRON_MAJORS=(15) # Debian has pg_cron only for its PostgreSQL 15
CRON_TESTS=(cron_leader)
OUTSIDE_TESTS=tests/over_connections/tests
TEST_PORT=54331

# member ITEM LIST...: whether ITEM is one of LIST.
member() {
    local item=$1
    shift
    [[ " $* " == *" $item "* ]]
}

# The tests over connections that run on MAJOR.
outside_tests_on() {
    local major=$1 file name
    for file in "$OUTSIDE_TESTS"/*.rs; do
        name=$(basename "$file" .rs)
        if member "$name" "${FULL_ONLY_TESTS[@]}" && ! member "$major" "${FULL_MAJORS[@]}"; then continue; fi
        if member "$name" "${CRON_TESTS[@]}" && ! member "$major" "${CRON_MAJORS[@]}"; then continue; fi
        echo "$name"
    done
}

# The exceptions name files that exist, and the table of README.md's "Tests"
# names each file of tests/over_connections/tests, and no file that is gone.
outside_tests_listed() {
    local name file problems=() table
    for name in "${FULL_ONLY_TESTS[@]}" "${CRON_TESTS[@]}"; do
        [[ -f $OUTSIDE_TESTS/$name.rs ]] || problems+=("scripts/test.sh names $name, which is no file of $OUTSIDE_TESTS")
    done
    table=$(awk '/^## /{tests = ($0 == "## Tests")} tests && /^ *\| `/' README.md)
    for file in "$OUTSIDE_TESTS"/*.rs; do
        name=$(basename "$file")
        grep -qF "\`$name\`" <<<"$table" || problems+=("README.md's table of tests has no row for $name")
    done
    for name in $(grep -o '`[a-z_]*\.rs`' <<<"$table" | tr -d '`'); do
        [[ -f $OUTSIDE_TESTS/$name ]] || problems+=("README.md's table of tests names $name, which is no file of $OUTSIDE_TESTS")
    done
    if ((${#problems[@]})); then
        printf '%s\n' "${problems[@]}" >&2
        return 1
    fi
}

# The parts, each run in a process of its own (see `part`).

fmt_and_clippy() {
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    # Not --workspace: the extension's features pick one PostgreSQL major each.
    cargo clippy -p pglock-client --all-targets --all-features --quiet -- -D warnings
}

protocol_tests() {
    cargo test -p pglock-protocol
}

build_outside_tests() {
    outside_tests_listed
    cargo test --no-run --quiet -p pglock-tests
    cargo test --no-run --quiet -p pglock-client --all-features
}

pgrx_test() {
    local data=/tmp/pglock-pgrx-test-$PG_MAJOR
    rm -rf "$data"
    mkdir -p "$data" && chown postgres: "$data"
    CARGO_PGRX_TEST_RUNAS=postgres CARGO_PGRX_TEST_PGDATA=$data/data \
        cargo pgrx test "pg$PG_MAJOR"
}

test_server() {
    private_server_start test "$TEST_PORT" max_connections=200 shared_preload_libraries=pglock
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $PGLOCK_TEST_DB"
    psql -X -q -v ON_ERROR_STOP=1 -d "$PGLOCK_TEST_DB" -c "CREATE EXTENSION pglock"
    psql -X -At -d "$PGLOCK_TEST_DB" -c "SELECT version()"
}

outside_tests() {
    local name args=()
    for name in "$@"; do args+=(--test "$name"); done
    cargo test --no-fail-fast -p pglock-tests "${args[@]}"
}

client_tests() {
    cargo test -p pglock-client --all-features
}

# What the clients in other languages, the operations tests and the fault
# tests need, fetched once: the Go modules and staticcheck, postgres_exporter
# and promtool, etcd, Patroni and the fault tests' workers.
client_setup() {
    bash packaging/prometheus/setup.sh
    bash clients/go/test.sh --setup
    bash tests/partitions/run.sh --setup
}

# upgrade_source MAJOR: the pg_config of the tree pg_upgrade starts from.  For
# 15 that is the 15.19 wheel (Debian's 15.20 cannot be upgraded to the 18 wheel:
# see PG_UPGRADE_15_VERSION), with the tarball this run built for 15 installed
# by its own install.sh, as an operator installs a package built against
# another minor release.
upgrade_source() {
    if [[ $1 != 15 ]]; then
        pg_config_of "$1"
        return
    fi
    local to tarball work
    to=$(wheel_pg_config "$PG_UPGRADE_15_VERSION")
    tarball=$(compgen -G "${CARGO_TARGET_DIR:-$REPO/target}/packages/pglock-*-pg15-linux-*.tar.gz") \
        || { echo "no pglock tarball for 15: the packaging part builds it" >&2; return 1; }
    # Files of an earlier pglock that the tarball would not overwrite.
    rm -f "$("$to" --sharedir)"/extension/pglock.control "$("$to" --sharedir)"/extension/pglock--*.sql
    work=$(mktemp -d)
    tar -xzf "$tarball" -C "$work"
    bash "$work/$(basename "$tarball" .tar.gz)/install.sh" "$to" >/dev/null
    rm -rf "$work"
    echo "$to"
}

# pg_upgrade from OLD to NEW (both with pglock installed by this run);
# exit 77 means PostgreSQL itself cannot upgrade between them (said why).
major_upgrade() {
    local old=$1 new=$2 status=0 from
    from=$(upgrade_source "$old")
    bash tests/major_upgrade/pg_upgrade.sh "$from" "$(pg_config_of "$new")" || status=$?
    if ((status == 77)); then
        echo "SKIPPED: pg_upgrade $old -> $new cannot run between these PostgreSQL releases (see above)"
        return 0
    fi
    return "$status"
}

# suite PROGRAM NAME: PostgreSQL's test driver PROGRAM runs tests/NAME's
# schedule on the test server, in a database of its own; the differences are
# shown when it fails.
suite() {
    local program=$1 name=$2
    local out=target/$name-pg$PG_MAJOR
    "$program" --bindir="$PG_BIN" \
        --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname="pglock_$name" \
        --load-extension=pglock --inputdir="tests/$name" --outputdir="$out" \
        --schedule="tests/$name/schedule" \
        || { cat "$out/regression.diffs"; return 1; }
}

isolation() { suite "$PG_PGXS/src/test/isolation/pg_isolation_regress" isolation; }

regress() { suite "$PG_PGXS/src/test/regress/pg_regress" regress; }

# The HA test from a copy of this checkout in a folder postgres cannot enter, as
# a clone in root's home (mode 700) is: each program it starts as postgres must
# start from elsewhere (scripts/as-postgres), or Patroni never bootstraps.  The
# copy has nothing built: the Rust client's holder is built here, and pglock is
# in 15's tree already (the pg15 parts installed it).
ha_from_unenterable_checkout() {
    use_postgres 15
    cargo build --quiet -p pglock-client --example ha_holder
    local copy
    copy=$(mktemp -d /tmp/pglock-unenterable.XXXXXX)
    # shellcheck disable=SC2064 # the copy's path is known now
    trap "rm -rf '$copy'" EXIT
    tar -C "$REPO" --exclude=./target --exclude=./.git -cf - . | tar -C "$copy" -xf -
    # After the copy: tar gives the folder the mode of the checkout's own.
    chmod 700 "$copy"
    if as_postgres test -x "$copy"; then
        echo "postgres can enter $copy: the check would prove nothing" >&2
        return 1
    fi
    echo "running tests/high_availability/patroni.sh from $copy (postgres cannot enter it)"
    PGLOCK_HA_HOLDER=${CARGO_TARGET_DIR:-$REPO/target}/debug/examples/ha_holder \
        bash "$copy/tests/high_availability/patroni.sh"
}

# Network partitions and bad links under Patroni (tests/partitions), on 15's
# tree; run.sh exits 77 where network namespaces cannot be made (it says why).
partitions() {
    local status=0
    bash tests/partitions/run.sh --pg-config "$(pg_config_of 15)" || status=$?
    if ((status == 77)); then
        echo "SKIPPED: network namespaces cannot be made here (see above)"
        return 0
    fi
    return "$status"
}

# `bash scripts/test.sh --part FUNCTION ARGS...` runs one part (used by `part`).
if [[ ${1:-} == --part ]]; then
    shift
    if [[ -n ${TEST_PG_MAJOR:-} ]]; then use_postgres "$TEST_PG_MAJOR"; fi
    "$@"
    exit
fi

# part NAME LIMIT FUNCTION ARGS...: runs one part under `timeout LIMIT` (e.g.
# 20m) in a process group of its own, so a part that hangs is stopped with
# everything it started; prints the part's time, or which part failed or hung.
PART_TIMES=()
PART_PID=
PART_NAME=
part() {
    local name=$1 limit=$2 status=0 start=$SECONDS
    shift 2
    say "$name"
    timeout --kill-after=30s "$limit" bash "$SELF" --part "$@" &
    PART_PID=$! PART_NAME=$name
    wait "$PART_PID" || status=$?
    PART_PID=
    local took
    took=$(duration $((SECONDS - start)))
    local disk
    disk=$(disk_use)
    PART_TIMES+=("$(printf '%-52s %8s   %s' "$name" "$took" "$disk")")
    case $status in
    0) printf '\033[1m-- %s: %s (%s)\033[0m\n' "$name" "$took" "$disk" ;;
    124 | 137)
        printf '\n\033[1;31mTIMEOUT: part "%s" was still running after %s (limit %s) and was stopped\033[0m\n' \
            "$name" "$took" "$limit" >&2
        exit 1
        ;;
    *)
        printf '\n\033[1;31mFAILED: part "%s" (exit status %s after %s)\033[0m\n' "$name" "$status" "$took" >&2
        exit "$status"
        ;;
    esac
}
duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
# What target/ holds and what the disk has left: a disk that fills up fails a
# build with "No space left on device", and the table then shows where.
disk_use() {
    local size
    size=$(du -sh target 2>/dev/null | cut -f1)
    printf 'target/ %s, %s free' "${size:-0}" "$(df -h --output=avail . | tail -1 | tr -d ' ')"
}
# Ctrl-C or a TERM stops the running part and everything it started.
interrupted() {
    if [[ -n $PART_PID ]]; then
        printf '\n\033[1;31mINTERRUPTED: stopping part "%s"\033[0m\n' "$PART_NAME" >&2
        kill -TERM "$PART_PID" 2>/dev/null || true
        wait "$PART_PID" || true
    fi
    exit 130
}
finish() {
    local status=$?
    private_server_stop test 2>/dev/null || true
    if ((${#PART_TIMES[@]})); then
        say "time of each part"
        printf '  %s\n' "${PART_TIMES[@]}"
        printf '  %-52s %8s   %s\n' total "$(duration "$SECONDS")" "$(disk_use)"
    fi
    exit "$status"
}
trap interrupted INT TERM
trap finish EXIT

majors=()
while (($#)); do
    if [[ $1 == --pg=* ]]; then
        majors+=("$(pg_option "$1")")
        shift
    else
        majors+=("$(pg_option "$1" "${2:-}")")
        shift $(($# < 2 ? 1 : 2))
    fi
done
((${#majors[@]})) || majors=("${PG_MAJORS[@]}")

# Every build of the run shares target/; a run from nothing fills it with a few
# GB (the table at the end shows how much after each part).
echo "disk before the run: $(disk_use)"
part "set-up (installs what is missing)" 40m setup
part "set-up of the other clients and the operations tests" 15m client_setup
part "cargo fmt --check, cargo clippy" 20m fmt_and_clippy
part "the lease protocol's own tests (pglock-protocol)" 10m protocol_tests
part "build the tests over connections and the client's" 20m build_outside_tests

export PGLOCK_TEST_DB=pglock_test PGHOST=/tmp/pglock-test/socket PGPORT=$TEST_PORT PGUSER=postgres
for major in "${majors[@]}"; do
    export TEST_PG_MAJOR=$major
    use_postgres "$major"
    mapfile -t tests < <(outside_tests_on "$major")

    part "pg$major: cargo pgrx test pg$major" 30m pgrx_test
    part "pg$major: release build, installed into its tree" 30m install_extension
    part "pg$major: private server with pglock preloaded" 5m test_server
    part "pg$major: tests over connections (${#tests[@]} files)" 20m outside_tests "${tests[@]}"
    if member "$major" "${FULL_MAJORS[@]}"; then
        part "pg$major: client library (pglock-client)" 10m client_tests
        part "pg$major: Go client (clients/go)" 10m bash clients/go/test.sh
        # The oldest psycopg the package declares, on one version only.
        oldest=$([[ $major == "${FULL_MAJORS[0]}" ]] && echo 1 || echo 0)
        part "pg$major: Python client (clients/python)" 15m \
            env PGLOCK_PYTHON_OLDEST="$oldest" bash clients/python/test.sh
        part "pg$major: Prometheus rules and postgres_exporter" 5m \
            bash packaging/prometheus/test.sh "$PG_CONFIG"
    fi
    part "pg$major: pg_isolation_regress" 10m isolation
    part "pg$major: pg_regress" 10m regress
    # Packaging and the benchmark start servers of their own; the benchmark
    # reinstalls pglock, which must not happen under a server that loaded it.
    private_server_stop test
    part "pg$major: packages installed and used on clean copies" 20m bash packaging/test.sh --pg "$major"
    if member "$major" "${FULL_MAJORS[@]}"; then
        part "pg$major: benchmark smoke run" 15m bash bench/run.sh --smoke --pg "$major"
    fi
done

for old in 14 15; do
    if member "$old" "${majors[@]}" && member 18 "${majors[@]}"; then
        part "pg_upgrade $old -> 18 with locks in use" 10m major_upgrade "$old" 18
    fi
done

if member 15 "${majors[@]}"; then
    part "high availability under Patroni, from a checkout postgres cannot enter" 15m \
        ha_from_unenterable_checkout
    part "network partitions and bad links under Patroni (tests/partitions)" 30m partitions
fi

say "all tests passed on PostgreSQL ${majors[*]}"

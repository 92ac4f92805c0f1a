#!/usr/bin/env bash
# pglock under network partitions and bad links, checked from recorded histories
# (issue 25): builds the workers (Rust, Go, Python, plain SQL), runs the history
# checker's unit tests, then the scenarios of harness.py in network namespaces of
# their own: etcd, three Patroni nodes, a fenced store and two client hosts, with
# a fault proxy in front of every client. See tests/partitions/README.md.
#
#   bash tests/partitions/run.sh [--pg-config PG_CONFIG] [--long] [--only NAME,...] [--keep DIR]
#   bash tests/partitions/run.sh --setup      install what is missing, fetch, build; run nothing
#   bash tests/partitions/run.sh --list       the scenarios
#
# PG_CONFIG (or $PGLOCK_PG_CONFIG; default Debian's 15) names the PostgreSQL tree
# the nodes and the store run, with pglock 0.4.0 installed in it. --long makes
# every fault four times as long (and repeats the short stalls). --keep copies the
# run's logs and histories to DIR before the clean-up. Run as root. Exits 0 when
# every check passed, 1 otherwise, 77 (skipped) where network namespaces cannot
# be made. Everything it starts or makes (namespaces plp-*, their processes, files
# under /tmp/pglock-partitions*) is removed at the end, also on failure or signal.
set -euo pipefail

# --- paths: everything this script depends on ---------------------------------
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$here                                          # the checkout: where scripts/as-postgres is
until [[ -e $repo/scripts/as-postgres || $repo == / ]]; do repo=$(dirname "$repo"); done
rust_client_package=pglock-client                  # the crate of clients/rust/examples/partition_worker.rs
rust_worker_example=partition_worker
go_module=$repo/clients/go                          # holds cmd/partition-worker
python_pins=$repo/clients/python/requirements-test.txt
target=${CARGO_TARGET_DIR:-$repo/target}
venv=$target/partitions-venv                        # python3 with psycopg 3, for two workers
go_worker=$target/partitions/partition-worker-go
packages=(patroni etcd-server curl iproute2)

pg_config=${PGLOCK_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
harness_args=()
setup_only=false
while (($#)); do
    case $1 in
        --pg-config) pg_config=$2; shift 2 ;;
        --setup) setup_only=true; shift ;;
        --long | --list) harness_args+=("$1"); shift ;;
        --only | --keep | --seed) harness_args+=("$1" "$2"); shift 2 ;;
        *) echo "usage: $0 [--pg-config PG_CONFIG] [--long] [--only NAME,...] [--keep DIR] [--seed N] | --setup | --list" >&2
           exit 2 ;;
    esac
done

say() { echo "== partitions: $*"; }
now() { date +%s; }

if [[ " ${harness_args[*]} " == *" --list "* ]]; then
    exec python3 "$here/harness.py" --list
fi
[[ $(id -u) == 0 ]] || { echo "run as root (network namespaces, and servers started as postgres)" >&2; exit 2; }

# --- set-up ---------------------------------------------------------------------
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
    if $setup_only; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing packages: ${missing[*]} (bash $0 --setup installs them)" >&2
        exit 2
    fi
fi

# The Python workers' psycopg, pinned as the Python client's tests pin it.
python_venv() {
    local want have
    want=$(grep -E '^(psycopg|psycopg-binary|typing_extensions)==' "$python_pins" | sort | tr '\n' ' ')
    have=$(cat "$venv/.pins" 2>/dev/null || true)
    if [[ -x $venv/bin/python && $have == "$want" ]]; then return 0; fi
    say "a virtual environment with ${want}in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # the pins, one word each
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps $want
    echo "$want" >"$venv/.pins"
}

build_workers() {
    local start
    start=$(now)
    (cd "$repo" && cargo build -q -p "$rust_client_package" --example "$rust_worker_example")
    mkdir -p "$(dirname "$go_worker")"
    (cd "$go_module" && go build -o "$go_worker" ./cmd/partition-worker)
    python_venv
    say "workers built ($(($(now) - start)) s)"
}

if $setup_only; then
    (cd "$go_module" && go mod download)
    build_workers
    exit 0
fi

# --- checks before anything runs ---------------------------------------------------
probe=plp-probe-$$
if ! ip netns add "$probe" 2>/dev/null; then
    echo "SKIP: network namespaces are not available here (ip netns add failed)"
    exit 77
fi
ip netns del "$probe"
[[ -x $pg_config ]] || { echo "no pg_config at $pg_config" >&2; exit 2; }
pkglibdir=$("$pg_config" --pkglibdir)
sharedir=$("$pg_config" --sharedir)
if [[ ! -f $pkglibdir/pglock.so || ! -f $sharedir/extension/pglock--0.4.0.sql ]]; then
    echo "pglock 0.4.0 is not installed in the tree of $pg_config (cargo pgrx install --release --pg-config $pg_config)" >&2
    exit 2
fi

say "the history checker's own tests"
python3 -m unittest -q "$here/test_checker.py" 2>&1 | tail -n 3

if [[ -z ${PGLOCK_PARTITIONS_RUST_WORKER:-} ]]; then
    build_workers
    export PGLOCK_PARTITIONS_RUST_WORKER=$target/debug/examples/$rust_worker_example
    export PGLOCK_PARTITIONS_GO_WORKER=$go_worker
    export PGLOCK_PARTITIONS_PYTHON=$venv/bin/python
fi
export PGLOCK_PARTITIONS_PG_BIN
PGLOCK_PARTITIONS_PG_BIN=$("$pg_config" --bindir)
exec python3 "$here/harness.py" "${harness_args[@]}"

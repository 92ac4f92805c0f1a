#!/usr/bin/env bash
# clients/go/test.sh: checks and tests the Go client (clients/go) against the
# server the environment names, as the project's test command sets it:
#   PGHOST (socket folder), PGPORT, PGUSER (a superuser), PGLOCK_TEST_DB (a
#   database with the extension), PGLOCK_PG_CONFIG (its pg_config: some tests
#   start servers of their own from its bindir, on ports 55521-55539).
# Steps: gofmt -l (must print nothing), go vet, staticcheck (pinned), and
# go test -race. Prints each step's time; exits non-zero on the first failure.
# Run it from anywhere: bash clients/go/test.sh (--setup: only fetch what it needs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

staticcheck=honnef.co/go/tools/cmd/staticcheck@v0.8.2

# --setup: fetch the modules and build staticcheck, and nothing else (the test
# command's set-up, so that the tests later need no network).
if [[ ${1:-} == --setup ]]; then
    go mod download
    go run "$staticcheck" -version
    exit
fi

missing=()
for v in PGHOST PGPORT PGUSER PGLOCK_TEST_DB PGLOCK_PG_CONFIG; do
    [[ -n ${!v:-} ]] || missing+=("$v")
done
if ((${#missing[@]})); then
    echo "clients/go/test.sh: set ${missing[*]} (the test server's environment)" >&2
    exit 2
fi

now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$((10#$t))"; }
since() { local us=$(($(now_us) - $1)); printf '%d.%d s' $((us / 1000000)) $((us % 1000000 / 100000)); }

step() {
    local name=$1 start status=0
    start=$(now_us)
    shift
    echo "== $name"
    "$@" || status=$?
    echo "== $name: $( ((status)) && echo FAILED || echo ok) ($(since "$start"))"
    return "$status"
}

gofmt_clean() {
    local out
    out=$(gofmt -l .)
    [[ -z $out ]] || { echo "not gofmt'ed:"; echo "$out"; return 1; }
}

# Servers the tests start of their own are stopped by the tests, also when a
# test fails; a test binary that dies (a timeout) cannot, so stop here what
# this run left behind (never another run's: those were there before).
repo=$(cd ../.. && pwd)
before=$(shopt -s nullglob; echo /tmp/pglock-go-test-*)
leftovers() {
    local d bindir
    bindir=$("$PGLOCK_PG_CONFIG" --bindir)
    for d in /tmp/pglock-go-test-*; do
        [[ -d $d && " $before " != *" $d "* ]] || continue
        if [[ -f $d/data/postmaster.pid ]]; then
            echo "stopping a server left in $d"
            if ((EUID == 0)); then
                "$repo/scripts/as-postgres" "$bindir/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null || true
            else
                "$bindir/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null || true
            fi
        fi
        rm -rf "$d"
    done
}
trap leftovers EXIT

total=$(now_us)
step "gofmt -l" gofmt_clean
step "go vet" go vet ./...
step "staticcheck" go run "$staticcheck" ./...
# Tests that sleep through leases run side by side (-parallel 8); the pools
# they open stay well under the server's max_connections (200).
step "go test -race" go test -race -count=1 -parallel 8 -timeout 4m ./...
echo "== clients/go: all steps passed ($(since "$total"))"

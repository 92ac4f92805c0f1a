#!/usr/bin/env bash
# clients/python/test.sh: lint, type-check, build and test the Python client.
#
# Needs the environment of the test servers: PGHOST, PGPORT, PGUSER,
# PGLOCK_TEST_DB (a database with pglock, pglock preloaded) and PGLOCK_PG_CONFIG
# (the pg_config of that server's version, whose initdb and pg_ctl the restart
# test uses). Runs as root, like the rest of the test command: test servers and
# PgBouncer run as postgres through scripts/as-postgres, on ports 55501-55519.
#
# Tools live in ${CARGO_TARGET_DIR:-<repo>/target}/python-venv (made once, pinned
# by requirements-dev.txt); the wheel is installed into a fresh virtual
# environment there, and pytest runs against it, not against the source tree.
# Extra arguments go to pytest (e.g. -k restart).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
tools=$target/python-venv
wheels=$target/python-wheels
dist=$target/python-dist
testenv=$target/python-test-venv
python=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

for name in PGHOST PGPORT PGUSER PGLOCK_TEST_DB PGLOCK_PG_CONFIG; do
    if [[ -z ${!name:-} ]]; then
        echo "clients/python/test.sh: $name is not set (the test servers' environment)" >&2
        exit 2
    fi
done

started=$SECONDS
step() { # step NAME COMMAND...: run it, print how long it took, stop on failure
    local name=$1 begin=$SECONDS
    shift
    echo "== python: $name"
    if ! "$@"; then
        echo "== python: $name FAILED after $((SECONDS - begin)) s" >&2
        exit 1
    fi
    echo "== python: $name: $((SECONDS - begin)) s"
}

tools_venv() {
    local stamp=$tools/.requirements
    local want
    want=$(cat "$here/requirements-dev.txt" "$here/requirements-test.txt" | sha256sum)
    if [[ -x $tools/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return 0
    fi
    rm -rf "$tools" "$wheels"
    "$python" -m venv "$tools"
    # The pinned wheels, kept for the fresh test environment of every run.
    "$tools/bin/pip" download -q --no-deps -d "$wheels" -r "$here/requirements-dev.txt"
    "$tools/bin/pip" install -q --no-deps --no-index --find-links "$wheels" \
        -r "$here/requirements-dev.txt"
    echo "$want" >"$stamp"
}

pgbouncer() {
    [[ -x /usr/sbin/pgbouncer ]] && return 0
    apt-get install -y -q pgbouncer >/dev/null
}

lint() {
    cd "$here"
    "$tools/bin/ruff" check --no-cache src tests bench.py
    "$tools/bin/ruff" format --no-cache --check src tests bench.py
}

types() {
    cd "$here"
    "$tools/bin/mypy" --strict --cache-dir "$target/python-mypy-cache" src tests bench.py
}

wheel() {
    rm -rf "$dist"
    # No isolation: the build backend is the pinned hatchling of the tools.
    "$tools/bin/python" -m build -q --wheel --no-isolation --outdir "$dist" "$here" >/dev/null
    ls "$dist"/pglock_client-*.whl >/dev/null
}

fresh_env() {
    rm -rf "$testenv"
    "$python" -m venv "$testenv"
    "$testenv/bin/pip" install -q --no-deps --no-index --find-links "$wheels" \
        -r "$here/requirements-test.txt" "$dist"/pglock_client-*.whl
    # The wheel declares its dependencies: check that they are met.
    "$testenv/bin/pip" check
}

tests() {
    # From a folder of its own, so that nothing but the installed wheel is importable.
    cd "$target"
    "$testenv/bin/python" -m pytest -p no:cacheprovider --rootdir "$here" -c "$here/pyproject.toml" \
        -q -ra --durations=10 "$here/tests" "$@"
}

step "tools (pinned, in $tools)" tools_venv
step "pgbouncer present" pgbouncer
step "ruff check, ruff format --check" lint
step "mypy --strict" types
step "wheel" wheel
step "wheel installed into a fresh venv" fresh_env
step "pytest against the installed wheel" tests "$@"
echo "== python: all steps passed in $((SECONDS - started)) s"

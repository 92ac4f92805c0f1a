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
# environment there, and pytest runs against it, not against the source tree:
# once with the pinned psycopg (requirements-test.txt), once with the oldest one
# the package declares (requirements-oldest.txt).
# Extra arguments go to pytest (e.g. -k restart).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
testenv=$target/python-test-venv
oldenv=$target/python-test-venv-oldest

for name in PGHOST PGPORT PGUSER PGLOCK_TEST_DB PGLOCK_PG_CONFIG; do
    if [[ -z ${!name:-} ]]; then
        echo "clients/python/test.sh: $name is not set (the test servers' environment)" >&2
        exit 2
    fi
done

started=$SECONDS

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

tests() { # tests VENV [PYTEST ARGS]
    local env=$1
    shift
    # From a folder of its own, so that nothing but the installed wheel is importable.
    cd "$target"
    "$env/bin/python" -m pytest -p no:cacheprovider --rootdir "$here" -c "$here/pyproject.toml" \
        -q -ra --durations=10 "$here/tests" "$@"
}

step "tools (pinned, in $tools)" tools_venv
step "pgbouncer present" pgbouncer
step "ruff check, ruff format --check" lint
step "mypy --strict" types
step "wheel" wheel
step "wheel installed into a fresh venv" fresh_env "$testenv"
step "pytest against the installed wheel" tests "$testenv" "$@"
# PGLOCK_PYTHON_OLDEST=0 skips this second pass (the test command runs it on
# one PostgreSQL version only).
if [[ ${PGLOCK_PYTHON_OLDEST:-1} != 0 ]]; then
    step "the wheel with the oldest psycopg it declares (3.1), in a fresh venv" \
        fresh_env "$oldenv" "$here/requirements-oldest.txt"
    step "pytest against it" tests "$oldenv" "$@"
fi
echo "== python: all steps passed in $((SECONDS - started)) s"

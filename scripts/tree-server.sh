# shellcheck shell=bash
# Private servers from any PostgreSQL tree, named by its pg_config, for the
# operations tests (packaging/prometheus/test.sh, tests/major_upgrade/pg_upgrade.sh):
# they take the trees to use as arguments, so the test command points them at
# the trees it installed pglock into and a developer at copies of them.
# Source it after scripts/lib.sh (for as_postgres and say).
#
# A server is scripts/private-server's: it runs as postgres from DIR/data,
# listens on its own port on a Unix socket in DIR/socket only, and its settings
# go into postgresql.conf, so that pg_upgrade starts it with them too.

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
ok() { echo "  ok  $*"; }
# expect WHAT ACTUAL EXPECTED
expect() {
    [[ $2 == "$3" ]] || fail "$1: got '$2', expected '$3'"
    ok "$1"
}

# tree_check PG_CONFIG: the tree has a server and pglock installed; prints the
# tree's pglock version (its control file's default_version).
tree_check() {
    local pg_config=$1 control
    [[ -x $pg_config ]] || fail "no pg_config at $pg_config"
    [[ -x $("$pg_config" --bindir)/postgres ]] || fail "no server next to $pg_config"
    [[ -f $("$pg_config" --pkglibdir)/pglock.so ]] || fail "pglock.so is not installed in $("$pg_config" --pkglibdir)"
    control=$("$pg_config" --sharedir)/extension/pglock.control
    [[ -f $control ]] || fail "pglock.control is not installed in $(dirname "$control")"
    sed -nE "s/^default_version = '([^']+)'$/\1/p" "$control"
}

# tree_major PG_CONFIG: the major version (14, 15, ...).
tree_major() {
    local version
    version=$("$1" --version)
    version=${version#PostgreSQL }
    echo "${version%%[.a-z]*}"
}

# tree_create PG_CONFIG DIR PORT [name=value...] [-- initdb options...]: a new
# cluster in DIR/data with those settings, UTF8 (pglock needs it) with the C
# locale (scripts/private-server).
tree_create() {
    local pg_config=$1 dir=$2 port=$3 lines=()
    shift 3
    while (($#)) && [[ $1 != -- ]]; do
        lines+=("$(conf_line "$1")")
        shift
    done
    (($#)) && shift
    "$REPO/scripts/private-server" create "$("$pg_config" --bindir)" "$dir" "$port" "${lines[@]}" \
        -- --encoding=UTF8 --locale=C "$@" || fail "a cluster in $dir/data"
}

# tree_start PG_CONFIG DIR / tree_stop PG_CONFIG DIR
tree_start() {
    "$REPO/scripts/private-server" start "$("$1" --bindir)" "$2" \
        || fail "starting the server in $2/data"
}
tree_stop() {
    "$REPO/scripts/private-server" stop "$("$1" --bindir)" "$2"
}
# tree_stop_now PG_CONFIG DIR: for clean-up on failure; never fails.
tree_stop_now() {
    "$REPO/scripts/private-server" stop "$("$1" --bindir)" "$2" immediate >/dev/null 2>&1 || true
}

# tree_sql PG_CONFIG DIR PORT DATABASE ROLE STATEMENT...: the statements in one
# session (UTC), tuples only, fields split by |, an error as its SQLSTATE.
tree_sql() {
    local pg_config=$1 dir=$2 port=$3 database=$4 role=$5 statement args=()
    shift 5
    for statement in "$@"; do args+=(-c "$statement"); done
    PGTZ=UTC "$("$pg_config" --bindir)/psql" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate \
        -h "$dir/socket" -p "$port" -U "$role" -d "$database" "${args[@]}"
}

# shellcheck shell=bash
# PostgreSQL versions and servers: which tree a version is, and the private
# servers the scripts start (scripts/private-server is the recipe).  Sourced by
# scripts/lib.sh.

# pg_config_of MAJOR: the pg_config of that version's server tree.
pg_config_of() {
    if [[ $1 == 15 ]]; then
        echo /usr/lib/postgresql/15/bin/pg_config
    elif [[ $1 =~ ^[0-9]+$ && -n ${PG_WHEEL_VERSION[$1]:-} ]]; then
        wheel_pg_config "${PG_WHEEL_VERSION[$1]}"
    else
        echo "PostgreSQL '$1' is not supported; choose one of ${PG_MAJORS[*]}" >&2
        return 1
    fi
}

# use_postgres MAJOR: point PG_CONFIG, PG_BIN, PG_PGXS and PATH at that
# version's tree; PGLOCK_PG_CONFIG tells the tests which server binaries to run.
use_postgres() {
    PG_MAJOR=$1
    PG_CONFIG=$(pg_config_of "$PG_MAJOR")
    PG_BIN=$("$PG_CONFIG" --bindir)
    PG_PGXS=$(dirname "$("$PG_CONFIG" --pgxs)")/../..
    PG_PGXS=$(cd "$PG_PGXS" && pwd)
    export PGLOCK_PG_CONFIG=$PG_CONFIG
    # psql, pgbench, ... of this version first on PATH, instead of an earlier one.
    [[ -n ${PG_BIN_ON_PATH:-} ]] && PATH=${PATH#"$PG_BIN_ON_PATH":}
    export PATH=$PG_BIN:$PATH PG_BIN_ON_PATH=$PG_BIN
}

# pg_option "$@": the version asked for with --pg N (or --pg=N), else the
# default; prints it, fails on an unsupported version or another argument.
pg_option() {
    local major=$PG_DEFAULT_MAJOR
    while (($#)); do
        case $1 in
        --pg) major=${2:-}; shift ;;
        --pg=*) major=${1#--pg=} ;;
        *) echo "unknown argument '$1' (expected --pg N, N one of ${PG_MAJORS[*]})" >&2; return 1 ;;
        esac
        shift
    done
    pg_config_of "$major" >/dev/null || return 1
    echo "$major"
}

# wheel_pg_config VERSION: the pg_config of that wheel's tree (install_wheel_tree).
wheel_pg_config() {
    echo "$PG_WHEEL_ROOT/$1/bin/pg_config"
}

# conf_line NAME=VALUE: that setting as a line of postgresql.conf, as
# scripts/private-server takes its settings.
conf_line() {
    printf "%s = '%s'" "${1%%=*}" "${1#*=}"
}

# private_server_start NAME PORT [name=value...]
# Creates and starts a server of the version use_postgres chose in
# /tmp/pglock-NAME, with those settings; sets PGHOST and PGPORT.
private_server_start() {
    local name=$1 port=$2 setting lines=()
    shift 2
    PRIVATE_DIR=/tmp/pglock-$name
    for setting in "$@"; do lines+=("$(conf_line "$setting")"); done
    "$REPO/scripts/private-server" create "$PG_BIN" "$PRIVATE_DIR" "$port" "${lines[@]}"
    "$REPO/scripts/private-server" start "$PG_BIN" "$PRIVATE_DIR"
    export PGHOST=$PRIVATE_DIR/socket PGPORT=$port PGUSER=postgres
}

# private_server_stop NAME: with the binaries of the server's own version (its
# PG_VERSION), if it runs.
private_server_stop() {
    local dir=/tmp/pglock-$1
    [[ -f $dir/data/postmaster.pid ]] || return 0
    "$REPO/scripts/private-server" stop \
        "$("$(pg_config_of "$(cat "$dir/data/PG_VERSION")")" --bindir)" "$dir"
}

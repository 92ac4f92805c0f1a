# Shared by the scripts: set-up steps and a private PostgreSQL.  Source it.
#
# A private server runs as `postgres` from a data folder under /tmp, listens on
# its own port and only on its own socket folder: it never touches the machine's
# default cluster on 5432.

PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
PG_PGXS=/usr/lib/postgresql/15/lib/pgxs
PGRX_VERSION=0.18.1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

as_postgres() { runuser -u postgres -- "$@"; }

# Idempotent: installs only what is missing, so a second run takes seconds.
setup() {
    # postgresql-15-cron: the scheduler of the leader-election test and example.
    # pgbouncer: the Rust client's tests behind a pooler start their own.
    local packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron pgbouncer sudo "$@")
    local missing=()
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        say "installing cargo-pgrx $PGRX_VERSION"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        say "cargo pgrx init"
        cargo pgrx init --pg15 "$PG_CONFIG"
    fi
}

# Build pglock optimized and install it into Debian's PostgreSQL 15.
install_extension() {
    say "building and installing pglock (release)"
    local log=$REPO/target/pglock-install.log
    mkdir -p "$REPO/target"
    (cd "$REPO" && cargo pgrx install --release --pg-config "$PG_CONFIG" >"$log" 2>&1) \
        || { cat "$log"; return 1; }
}

# private_server_start NAME PORT [postgres -c options...]
# Creates (once) and starts a server in /tmp/pglock-NAME; sets PGHOST and PGPORT.
private_server_start() {
    local name=$1 port=$2
    shift 2
    PRIVATE_DIR=/tmp/pglock-$name
    mkdir -p "$PRIVATE_DIR/socket"
    chown postgres: "$PRIVATE_DIR" "$PRIVATE_DIR/socket"
    private_server_stop "$name" 2>/dev/null || true
    rm -rf "$PRIVATE_DIR/data"
    as_postgres "$PG_BIN/initdb" -D "$PRIVATE_DIR/data" -U postgres --auth=trust \
        --no-sync >/dev/null
    local options=(-c "port=$port" -c "listen_addresses=" -c "unix_socket_directories=$PRIVATE_DIR/socket")
    for option in "$@"; do options+=(-c "$option"); done
    # A RUST_BACKTRACE inherited from a developer's shell would put Rust stack
    # traces into error details that users never see in production.
    as_postgres env -u RUST_BACKTRACE "$PG_BIN/pg_ctl" -D "$PRIVATE_DIR/data" -l "$PRIVATE_DIR/server.log" -w \
        -o "$(printf '%q ' "${options[@]}")" start >/dev/null
    export PGHOST=$PRIVATE_DIR/socket PGPORT=$port PGUSER=postgres
}

private_server_stop() {
    local dir=/tmp/pglock-$1
    [[ -f $dir/data/postmaster.pid ]] || return 0
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

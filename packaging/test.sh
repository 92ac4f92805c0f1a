#!/usr/bin/env bash
# Prove that pglock's artefacts (packaging/build.sh) for one PostgreSQL major
# version install and work without the source, on PostgreSQL installs that are
# not the machine's:
#
#   1. the tarball's file list, and on 15 the .deb's control fields and files;
#   2. clean copies of that version's server tree under /tmp (its binaries find
#      their lib and share folders relative to their own path), with any pglock
#      the machine has removed; the tarball's install.sh goes into one with
#      PG_CONFIG pointing at its pg_config, on 15 the .deb into another with
#      `dpkg-deb -x`;
#   3. in each, a server started from those binaries (as postgres, ports 54336
#      and 54337, the tarball's with pglock preloaded): CREATE EXTENSION, the
#      version, the library really loaded from the copy, an acquire / heartbeat /
#      release round trip as a pglock user, and the upgrade paths of the upgrade
#      scripts.
#
# usage: bash packaging/test.sh [--pg N]   N: 14 to 18, default 15
#
# Everything lives in /tmp/pglock-packaging and is removed on exit.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO"

major=$(pg_option "$@")
bash packaging/build.sh --pg "$major"
use_postgres "$major"

out=${CARGO_TARGET_DIR:-$REPO/target}/packages
work=/tmp/pglock-packaging
pg_major=$PG_MAJOR
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
extdir=$sharedir/extension
version=$(cargo pkgid -p pglock)
version=${version##*[#@]}
# The .deb exists for Debian's own server only (packaging/build.sh).
deb_too=false
[[ $PG_CONFIG == "/usr/lib/postgresql/$pg_major/bin/pg_config" ]] && deb_too=true

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
    local server
    for server in "$work"/*/server; do
        "$REPO/scripts/private-server" stop "$PG_BIN" "$server" immediate >/dev/null 2>&1 || true
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

if $deb_too; then
    say "the .deb: control fields and files"
    debs=("$out/postgresql-$pg_major-pglock"_*.deb)
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
fi

say "the tarball: files"
tarballs=("$out"/pglock-*-"pg$pg_major"-linux-*.tar.gz)
((${#tarballs[@]} == 1)) && [[ -f ${tarballs[0]} ]] || fail "expected one pg$pg_major tarball in $out"
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

# stage_root NAME: a clean copy of this version's server tree in
# $work/NAME/root (Debian's: its lib and share folders; a wheel's: its one
# folder), with whatever pglock the machine has installed taken out.
stage_root() {
    local root=$work/$1/root prefix dir
    prefix=$(dirname "$PG_BIN")
    for dir in "$prefix" "$sharedir"; do
        [[ $dir != "$prefix" && $dir == "$prefix"/* ]] && continue
        mkdir -p "$root$(dirname "$dir")"
        cp -a "$dir" "$root$(dirname "$dir")/"
    done
    rm -f "$root$pkglibdir"/pglock*.so "$root$extdir"/pglock.control "$root$extdir"/pglock--*.sql
    local pg_config=$root$PG_BIN/pg_config
    expect "$1: the copy's pg_config --pkglibdir" "$("$pg_config" --pkglibdir)" "$root$pkglibdir"
    expect "$1: the copy's pg_config --sharedir" "$("$pg_config" --sharedir)" "$root$sharedir"
    [[ -z $(find "$root" -name 'pglock*' ! -type d) ]] || fail "$1: pglock files left in the copy"
}

# check_installed NAME: the copy holds exactly the artefacts' files.
check_installed() {
    local root=$work/$1/root
    cmp -s "$root$pkglibdir/pglock.so" "$out/work-pg$pg_major/debian/postgresql-$pg_major-pglock$pkglibdir/pglock.so" \
        || fail "$1: pglock.so differs from the one built"
    expect "$1: extension files" "$(cd "$root$extdir" && ls pglock* | sort)" \
        "$(printf '%s\n' "${expected_ext[@]}")"
    expect "$1: control file's default_version" \
        "$(sed -nE "s/^default_version = '([^']+)'$/\1/p" "$root$extdir/pglock.control")" "$version"
}

if $deb_too; then
    say "installing the .deb into a copy of PostgreSQL $pg_major (dpkg-deb -x)"
    stage_root deb
    dpkg-deb -x "$deb" "$work/deb/root"
    dpkg-deb -e "$deb" "$work/deb/DEBIAN"
    (cd "$work/deb/root" && md5sum --check --quiet "$work/deb/DEBIAN/md5sums") || fail "md5sums"
    ok "md5sums match"
    check_installed deb
fi

say "installing the tarball into another copy (install.sh PG_CONFIG)"
stage_root tar
tar -xzf "$tarball" -C "$work/tar"
install_sh=$work/tar/$top/install.sh
if "$install_sh" /nonexistent/pg_config >/dev/null 2>&1; then fail "install.sh accepted a missing pg_config"; fi
other_major=$((pg_major == 16 ? 17 : 16))
printf '#!/bin/sh\necho "PostgreSQL %s.4"\n' "$other_major" >"$work/tar/pg_config_other" && chmod +x "$work/tar/pg_config_other"
if "$install_sh" "$work/tar/pg_config_other" >/dev/null 2>&1; then fail "install.sh accepted PostgreSQL $other_major"; fi
ok "install.sh refuses a missing pg_config and another major version"
"$install_sh" "$work/tar/root$PG_BIN/pg_config" | sed 's/^/  | /'
check_installed tar

# round_trip NAME PORT [SETTING...]: a server from the copy's binaries, started
# with SETTINGs (name=value), pglock created and used.
round_trip() {
    local name=$1 port=$2
    shift 2
    local root=$work/$name/root server=$work/$name/server setting lines=()
    local bin=$root$PG_BIN
    for setting in "$@"; do lines+=("$(conf_line "$setting")"); done
    say "$name: a server from $bin on port $port"
    "$REPO/scripts/private-server" create "$bin" "$server" "$port" "${lines[@]}"
    "$REPO/scripts/private-server" start "$bin" "$server"
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

    "$REPO/scripts/private-server" stop "$bin" "$server"
    ok "$name: server stopped"
}

if $deb_too; then round_trip deb 54336; fi
# Preloading (for pglock's counters) loads the library when the server starts.
round_trip tar 54337 shared_preload_libraries=pglock

passed=$(basename "$tarball")
if $deb_too; then passed+=", $(basename "$deb")"; fi
say "packaging test passed on $("$PG_CONFIG" --version): $passed"

#!/usr/bin/env bash
# Build pglock's installable artefacts for one PostgreSQL major version from the
# output of `cargo pgrx package`, into $CARGO_TARGET_DIR/packages (by default
# target/packages):
#
#   pglock-<version>-pgNN-linux-<arch>.tar.gz     any PostgreSQL NN with glibc:
#                                                 ./install.sh [PG_CONFIG]
#                                                 (from packaging/install.sh.in)
#   postgresql-15-pglock_<version>-1_<arch>.deb   for dpkg/apt on Debian 12 (for
#                                                 PostgreSQL 15, Debian's own)
#
# usage: bash packaging/build.sh [--pg N]   N: 14 to 18, default 15
#
# Idempotent: every run rebuilds that version's artefacts from scratch (old
# versions are removed), and a build that is already done takes seconds.
# Artefact timestamps come from SOURCE_DATE_EPOCH (default: the last commit), so
# the same build gives the same bytes.
#
# Environment: CARGO_TARGET_DIR, DEB_REVISION (default 1), DEB_MAINTAINER.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO"

major=$(pg_option "$@")
setup dpkg-dev
use_postgres "$major"

target_dir=${CARGO_TARGET_DIR:-$REPO/target}
out=$target_dir/packages
work=$out/work-pg$PG_MAJOR
pg_major=$PG_MAJOR
pkglibdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
# A .deb only for the server Debian packages itself.
deb_too=false
[[ $PG_CONFIG == "/usr/lib/postgresql/$pg_major/bin/pg_config" ]] && deb_too=true
arch=$(dpkg --print-architecture)
# Not exported: a SOURCE_DATE_EPOCH the build did not have would make cargo
# rebuild (the cc crate watches it), instead of reusing the test command's build.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || stat -c %Y Cargo.toml)}

rm -rf "$work" "$out/postgresql-$pg_major-pglock"_*.deb "$out"/pglock-*-"pg$pg_major"-linux-*.tar.gz
mkdir -p "$work"

say "cargo pgrx package (release, pg$pg_major)"
stage=$work/stage
log=$work/package.log
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$stage" >"$log" 2>&1 \
    || { cat "$log"; exit 1; }

# The version the build stamped into the control file is the version of every
# artefact; it comes from Cargo.toml.
version=$(sed -nE "s/^default_version = '([^']+)'$/\1/p" "$stage$extdir/pglock.control")
cargo_version=$(cargo pkgid -p pglock)
cargo_version=${cargo_version##*[#@]}
[[ $version == "$cargo_version" ]] \
    || { echo "control file says $version, Cargo.toml says $cargo_version" >&2; exit 1; }
[[ -f $stage$extdir/pglock--$version.sql ]] \
    || { echo "cargo pgrx package made no pglock--$version.sql" >&2; exit 1; }

# The staged extension files: the control file, the install script of this
# version, and every hand-written upgrade script sql/pglock--A--B.sql (pgrx
# copies those; copy any it missed).
for script in sql/pglock--*--*.sql; do
    [[ -e $script ]] || continue
    [[ -f $stage$extdir/${script#sql/} ]] || install -m 0644 "$script" "$stage$extdir/"
done
mapfile -t ext_files < <(cd "$stage$extdir" && ls pglock.control pglock--*.sql)
echo "pglock $version: pglock.so, ${ext_files[*]}"

# One tree with the installed layout, shared by the artefacts.  The library is
# stripped as dh_strip strips Debian's shared libraries.
deb_name=postgresql-$pg_major-pglock
root=$work/debian/$deb_name
install -d -m 0755 "$root/DEBIAN" "$root$pkglibdir" "$root$extdir" "$root/usr/share/doc/$deb_name"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    -o "$root$pkglibdir/pglock.so" "$stage$pkglibdir/pglock.so"
chmod 0644 "$root$pkglibdir/pglock.so"
for file in "${ext_files[@]}"; do
    install -m 0644 "$stage$extdir/$file" "$root$extdir/$file"
done
cat >"$root/usr/share/doc/$deb_name/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pglock
Source: pglock $version, built with cargo pgrx package

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$root/usr/share/doc/$deb_name/copyright"

artefacts=()
if $deb_too; then
    say "building the .deb"
    deb_version=${version//-/\~}-${DEB_REVISION:-1}
    # dpkg-shlibdeps reads debian/control and finds what the library links against.
    printf 'Source: pglock\n\nPackage: %s\nArchitecture: any\n' "$deb_name" >"$work/debian/control"
    shlib_depends=$(cd "$work" && dpkg-shlibdeps -O "${root#"$work"/}$pkglibdir/pglock.so")
    [[ $shlib_depends == shlibs:Depends=?* ]] \
        || { echo "dpkg-shlibdeps found no dependencies of pglock.so" >&2; exit 1; }
    shlib_depends=${shlib_depends#shlibs:Depends=}
    cat >"$root/DEBIAN/control" <<EOF
Package: $deb_name
Version: $deb_version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-pglock maintainers <pglock@invalid>}
Installed-Size: $(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
Depends: postgresql-$pg_major, $shlib_depends
Section: database
Priority: optional
Description: lease-based distributed locks for PostgreSQL $pg_major
 pglock keeps leases named by any string in a WAL-logged table and fences
 them with record version numbers (RVNs), never with clocks.  Any SQL client
 can acquire, heartbeat, take over and release a lock.
 .
 After installing, run CREATE EXTENSION pglock as a superuser.
EOF
    (cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
    chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
    deb=$out/${deb_name}_${deb_version}_$arch.deb
    SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    artefacts+=("$deb")
fi

say "building the tarball"
tar_name=pglock-$version-pg$pg_major-linux-$arch
tree=$work/$tar_name
install -d -m 0755 "$tree/lib" "$tree/extension"
install -m 0644 "$root$pkglibdir/pglock.so" "$tree/lib/"
for file in "${ext_files[@]}"; do install -m 0644 "$root$extdir/$file" "$tree/extension/"; done
sed -e "s/@VERSION@/$version/g" -e "s/@PG_MAJOR@/$pg_major/g" packaging/install.sh.in >"$tree/install.sh"
chmod 0755 "$tree/install.sh"
tarball=$out/$tar_name.tar.gz
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    -C "$work" -cf - "$tar_name" | gzip -9 -n >"$tarball"
artefacts+=("$tarball")

say "artefacts in ${out#"$REPO"/}"
ls -l "${artefacts[@]}"

#!/usr/bin/env bash
# A major-version upgrade with pg_upgrade while pglock's locks are in use.
#
# The old cluster (pglock preloaded) holds, in database app: locks held by two
# roles (one with binary data, one with 160 kB of data stored out of line, a
# hundred more), a lock released with its data kept, a holder that stopped
# heartbeating, and a holder that heartbeats right up to the shutdown; app2
# holds pglock with a secret of its own; legacy holds pglock at the previous
# release (its install script from tests/old_releases/), updated only after the
# upgrade.  Then, as an operator would:
#
#   1. stop the old server; initdb the new cluster with the old one's options;
#   2. `pg_upgrade --check` with a copy of the new tree that lacks pglock
#      fails, naming the missing library: pglock must be in the new tree first;
#   3. carry shared_preload_libraries = 'pglock' over; `pg_upgrade --check`,
#      then `pg_upgrade`, with the new tree;
#   4. start the new server: every database's locks (owner, RVN, lease, data,
#      state, holder role, time of last write), RVN sequence, name-lock
#      secret, row-level security, the extension's objects and their grants,
#      and the roles (with their OIDs, which the locks record) and memberships
#      are exactly as before;
#   5. `ALTER EXTENSION pglock UPDATE` in every database: each is at the new
#      tree's version, legacy's locks still as they were;
#   6. the holder heartbeats with the RVN it had before the upgrade, the others
#      release and take over with theirs (across roles too, by the server's
#      clock), every new RVN above every RVN issued before; the monitor, admin,
#      outsider and pg_read_all_data roles see what their grants allow and no
#      more; pglock_stats() counts on the new server.
#
# usage: bash tests/major_upgrade/pg_upgrade.sh OLD_PG_CONFIG NEW_PG_CONFIG
#   each the pg_config of a server tree with pglock installed; the new one of a
#   later major version.  Neither tree is changed: the old server runs from a
#   copy (which gets the previous release's install script), the missing-library
#   check from another.
# Exits 77, saying why, when PostgreSQL itself cannot pg_upgrade between the
# two trees (Debian's 15.20 to an 18 release before it: see pg_attver below).
# Ports 55545 (old) and 55546 (new), Unix sockets only; files in
# /tmp/pglock-ops-upgrade-OLD-NEW, stopped and removed at the end, also on
# failure.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
source "$REPO/scripts/tree-server.sh"
cd "$REPO"

(($# == 2)) || { echo "usage: $0 OLD_PG_CONFIG NEW_PG_CONFIG" >&2; exit 2; }
old_version=$(tree_check "$1")
new_version=$(tree_check "$2")
old_major=$(tree_major "$1")
new_major=$(tree_major "$2")
((new_major > old_major)) || fail "the new tree ($new_major) must be a later major version than the old ($old_major)"
old_port=55545
new_port=55546
work=/tmp/pglock-ops-upgrade-$old_major-$new_major
old=$work/old
new=$work/new
started=$SECONDS

# copy_tree PG_CONFIG ROOT: a copy of the tree under ROOT (its binaries find
# their lib and share folders relative to their own path); prints the copy's
# pg_config.
copy_tree() {
    local pg_config=$1 root=$2 prefix sharedir dir
    prefix=$(dirname "$("$pg_config" --bindir)")
    sharedir=$("$pg_config" --sharedir)
    for dir in "$prefix" "$sharedir"; do
        [[ $dir != "$prefix" && $dir == "$prefix"/* ]] && continue
        mkdir -p "$root$(dirname "$dir")"
        cp -a "$dir" "$root$(dirname "$dir")/"
    done
    echo "$root$("$pg_config" --bindir)/pg_config"
}

old_pg_config=
new_pg_config=$2
finish() {
    local status=$?
    if ((status != 0 && status != 77)); then
        for log in "$old/server.log" "$new/server.log" "$work/pg_upgrade.log"; do
            [[ -f $log ]] && { echo "--- $log"; tail -n 40 "$log"; }
        done
        find "$new/data/pg_upgrade_output.d" -name '*.log' -exec sh -c 'echo "--- $1"; tail -n 20 "$1"' _ {} \; 2>/dev/null || true
    fi
    [[ -n $old_pg_config ]] && tree_stop_now "$old_pg_config" "$old"
    tree_stop_now "$new_pg_config" "$new"
    rm -rf "$work"
    exit "$status"
}
if [[ -d $work ]]; then
    tree_stop_now "$new_pg_config" "$new"
    [[ -x $work/old-tree$("$1" --bindir)/pg_ctl ]] && tree_stop_now "$work/old-tree$("$1" --bindir)/pg_config" "$old"
    rm -rf "$work"
fi
mkdir -p "$work"
chown postgres: "$work"
trap finish EXIT

say "pg_upgrade from PostgreSQL $old_major (pglock $old_version) to $new_major (pglock $new_version)"
old_pg_config=$(copy_tree "$1" "$work/old-tree")
# The previous release before the old tree's: its install script, kept in
# tests/old_releases/, for a database that stays at it until after the upgrade.
legacy_version=
for script in tests/old_releases/pglock--*.sql; do
    [[ -e $script ]] || continue
    version=${script#tests/old_releases/pglock--} && version=${version%.sql}
    # only versions before the old tree's, the latest of them
    [[ $version != "$old_version" && $(printf '%s\n' "$version" "$old_version" | sort -V | head -1) == "$version" ]] \
        || continue
    if [[ -z $legacy_version || $(printf '%s\n' "$legacy_version" "$version" | sort -V | tail -1) == "$version" ]]; then
        legacy_version=$version
    fi
done
if [[ -n $legacy_version ]]; then
    cp "tests/old_releases/pglock--$legacy_version.sql" "$("$old_pg_config" --sharedir)/extension/"
fi

old_sql() { tree_sql "$old_pg_config" "$old" "$old_port" "$@"; }
new_sql() { tree_sql "$new_pg_config" "$new" "$new_port" "$@"; }
databases=(app app2)
[[ -n $legacy_version ]] && databases+=(legacy)

# Data checksums on both sides (PostgreSQL 18's initdb turns them on by
# default; pg_upgrade needs both clusters alike).
tree_create "$old_pg_config" "$old" "$old_port" shared_preload_libraries=pglock -- --data-checksums
tree_start "$old_pg_config" "$old"

say "the old cluster: roles, three databases, locks in use"
old_sql postgres postgres "CREATE DATABASE app" "CREATE DATABASE app2"
old_sql app postgres "CREATE EXTENSION pglock"
old_sql app2 postgres "CREATE EXTENSION pglock"
if [[ -n $legacy_version ]]; then
    old_sql postgres postgres "CREATE DATABASE legacy"
    old_sql legacy postgres "CREATE EXTENSION pglock VERSION '$legacy_version'"
fi
old_sql postgres postgres \
    "CREATE ROLE upg_app1 LOGIN" "CREATE ROLE upg_app2 LOGIN" "GRANT pglock_user TO upg_app1, upg_app2" \
    "CREATE ROLE upg_watch LOGIN IN ROLE pglock_monitor" "CREATE ROLE upg_oncall LOGIN IN ROLE pglock_admin" \
    "CREATE ROLE upg_reader LOGIN IN ROLE pg_read_all_data" "CREATE ROLE upg_outsider LOGIN"

# acquire SQL DATABASE ROLE NAME OWNER LEASE [DATA-EXPRESSION]: the new RVN.
acquire() {
    local row
    row=$("$1" "$2" "$3" "SELECT acquired, rvn FROM pglock_acquire('$4', '$5', '$6', data => ${7:-NULL})")
    [[ $row == t\|* ]] || fail "acquire $4 in $2: $row"
    echo "${row#t|}"
}
held=$(acquire old_sql app upg_app1 held w1 '1 hour' "convert_to('one', 'UTF8')")
kept=$(acquire old_sql app upg_app1 kept w1 '1 hour')
expect "kept: released with its data" "$(old_sql app upg_app1 \
    "SELECT pglock_release('kept', 'w1', $kept, keep => true, data => convert_to('checkpoint', 'UTF8'))")" t
other=$(acquire old_sql app upg_app2 other w2 '1 hour' "decode('00ff10', 'hex')")
silent=$(acquire old_sql app upg_app1 silent w3 '1 second')
acquire old_sql app upg_app1 big w1 '1 hour' \
    "(SELECT decode(string_agg(md5(i::text), ''), 'hex') FROM generate_series(1, 10000) i)" >/dev/null
expect "a hundred more locks" "$(old_sql app upg_app2 \
    "SELECT count(*) FROM generate_series(1, 100) i, pglock_acquire('many-' || i, 'w5', '1 hour') a
      WHERE a.acquired")" 100
elsewhere=$(acquire old_sql app2 upg_app1 elsewhere w1 '1 hour' "convert_to('two', 'UTF8')")
if [[ -n $legacy_version ]]; then
    # The current library refuses to run an older version's functions until
    # the update (tests/over_connections/tests/upgrade.rs), so these are written as that version did.
    legacy_held=$(old_sql legacy postgres \
        "INSERT INTO pglock.locks (name, owner, rvn, lease, data, released, holder_role)
         VALUES ('held', 'w1', nextval('pglock.rvn_seq'), '1 hour', convert_to('legacy', 'UTF8'), false,
                 'upg_app1'::regrole),
                ('kept', 'w1', nextval('pglock.rvn_seq'), '1 hour', convert_to('done', 'UTF8'), true,
                 'upg_app2'::regrole)
         RETURNING rvn" | head -1)
fi
# The holder of "held" heartbeats up to the end; "silent"'s holder has stopped.
for _ in 1 2 3; do held=$(old_sql app upg_app1 "SELECT pglock_heartbeat('held', 'w1', $held)"); done
ok "held: heartbeating, RVN $held"
sleep 1.1

# grants ACL OWNER KIND: SQL for what an object's ACL grants to roles other
# than its owner ("role:PRIVILEGE,..."; KIND as for acldefault).  The owner's
# own entry is left out: PostgreSQL 17 gave owners MAINTAIN, and pg_upgrade
# writes an ACL equal to the owner's default as none at all.
grants() {
    echo "(SELECT coalesce(string_agg(g, ',' ORDER BY g), '')
             FROM (SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
                          || ':' || a.privilege_type || CASE WHEN a.is_grantable THEN '+grant' ELSE '' END AS g
                     FROM pg_catalog.aclexplode(coalesce($1, pg_catalog.acldefault('$3', $2))) a
                    WHERE a.grantee <> $2) AS grants)"
}
# snapshot SQL DATABASE: everything of pglock in the database that the upgrade
# must keep, as text.  The extension's members leave out the row types of its
# tables and views and the array types of its types: PostgreSQL 17 and later
# record those as members too (a fresh install there lists them), older
# versions do not, and they come with their table or type.
snapshot() {
    "$1" "$2" postgres "SELECT 'extension ' || extversion || ' in ' || extnamespace::regnamespace
                               || ' config ' || extconfig::regclass[]::text
                          FROM pg_extension WHERE extname = 'pglock'" \
        "SELECT format('lock %s|%s|%s|%s|%s|%s|%s|%s|%s|%s', name, owner, rvn, lease, md5(data),
                       octet_length(data), released, holder_role::text, holder_role::oid, updated_at)
           FROM pglock.locks ORDER BY name" \
        "SELECT 'sequence ' || last_value || ' ' || is_called FROM pglock.rvn_seq" \
        "SELECT format('table %s rls=%s forced=%s options=%s grants=%s', oid::regclass, relrowsecurity,
                       relforcerowsecurity, reloptions, $(grants relacl relowner r))
           FROM pg_class WHERE relnamespace = 'pglock'::regnamespace AND relkind = 'r' ORDER BY 1" \
        "SELECT 'member ' || pg_describe_object(d.classid, d.objid, 0) || ' ' || coalesce(
             CASE d.classid
             WHEN 'pg_proc'::regclass THEN
                 (SELECT format('definer=%s volatile=%s config=%s grants=%s', prosecdef, provolatile,
                                proconfig, $(grants proacl proowner f))
                    FROM pg_proc WHERE oid = d.objid)
             WHEN 'pg_class'::regclass THEN
                 (SELECT format('kind=%s grants=%s', relkind,
                                CASE relkind WHEN 'S' THEN $(grants relacl relowner s)
                                             ELSE $(grants relacl relowner r) END)
                    FROM pg_class WHERE oid = d.objid)
             WHEN 'pg_namespace'::regclass THEN
                 (SELECT format('grants=%s', $(grants nspacl nspowner n)) FROM pg_namespace WHERE oid = d.objid)
             WHEN 'pg_type'::regclass THEN
                 (SELECT format('grants=%s', $(grants typacl typowner T)) FROM pg_type WHERE oid = d.objid)
             END, '')
           FROM pg_depend d
          WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
            AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pglock')
            AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid
                             WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                               AND (t.typcategory = 'A' OR c.relkind IN ('r', 'v')))
          ORDER BY 1"
    if [[ $("$1" "$2" postgres "SELECT to_regclass('pglock.name_lock_secret') IS NOT NULL") == t ]]; then
        "$1" "$2" postgres "SELECT 'secret ' || encode(secret, 'hex') FROM pglock.name_lock_secret"
    fi
}
roles() {
    "$1" postgres postgres \
        "SELECT format('role %s oid=%s super=%s login=%s inherit=%s', rolname, oid, rolsuper, rolcanlogin, rolinherit)
           FROM pg_roles WHERE rolname ~ '^(pglock|upg)_' ORDER BY 1" \
        "SELECT format('membership %s in %s admin=%s', member::regrole, roleid::regrole, admin_option)
           FROM pg_auth_members WHERE member::regrole::text ~ '^(pglock|upg)_' ORDER BY 1"
}
# The largest RVN a database issued: its sequence's last value (every stored
# RVN is at or below it).
issued() {
    "$1" "$2" postgres "SELECT greatest((SELECT last_value FROM pglock.rvn_seq),
                                        (SELECT max(rvn) FROM pglock.locks))"
}
declare -A max_rvn
for database in "${databases[@]}"; do
    snapshot old_sql "$database" >"$work/before-$database"
    max_rvn[$database]=$(issued old_sql "$database")
done
roles old_sql >"$work/roles-before"
expect "app: 105 locks, 104 held" "$(old_sql app postgres \
    "SELECT count(*) || ' ' || count(*) FILTER (WHERE NOT released) FROM pglock.locks")" "105 104"
[[ $(grep '^secret ' "$work/before-app") != "$(grep '^secret ' "$work/before-app2")" ]] \
    || fail "app and app2 have the same name-lock secret"
ok "app and app2 each have a name-lock secret of their own"

say "the operator's steps: stop, initdb, settings, pg_upgrade --check, pg_upgrade"
tree_stop "$old_pg_config" "$old"
tree_create "$new_pg_config" "$new" "$new_port" -- --data-checksums
# upgrade [PG_UPGRADE_OPTIONS...]: pg_upgrade of the new tree, from a folder
# postgres may write to (its logs and scripts go there).
upgrade() {
    local pg_config=$new_pg_config
    if [[ ${1:-} == --new-tree ]]; then pg_config=$2 && shift 2; fi
    as_postgres env -C "$work" "$("$pg_config" --bindir)/pg_upgrade" \
        --old-bindir="$("$old_pg_config" --bindir)" --new-bindir="$("$pg_config" --bindir)" \
        --old-datadir="$old/data" --new-datadir="$new/data" \
        --old-port="$old_port" --new-port="$new_port" --socketdir="$work" --username=postgres "$@"
}
bare_pg_config=$(copy_tree "$new_pg_config" "$work/bare-tree")
rm -f "$("$bare_pg_config" --pkglibdir)"/pglock*.so "$("$bare_pg_config" --sharedir)"/extension/pglock*
if upgrade --new-tree "$bare_pg_config" --check >"$work/check-bare.log" 2>&1; then
    fail "pg_upgrade --check passed with a new tree without pglock"
fi
grep -q 'loadable libraries' "$work/check-bare.log" || { cat "$work/check-bare.log"; fail "pg_upgrade --check failed for another reason"; }
grep -rqs 'pglock' "$work/loadable_libraries.txt" "$new/data/pg_upgrade_output.d" \
    || { cat "$work/check-bare.log"; fail "pg_upgrade --check did not name pglock"; }
ok "pg_upgrade --check without pglock in the new tree: refused, naming \$libdir/pglock"
rm -rf "$work/bare-tree" "$work/loadable_libraries.txt" "$new/data/pg_upgrade_output.d"

# The old cluster's settings carried over (with the bare tree, the new server
# would not even start with them).
echo "shared_preload_libraries = 'pglock'" >>"$new/data/postgresql.conf"
upgrade --check >"$work/check.log" 2>&1 || { cat "$work/check.log"; fail "pg_upgrade --check"; }
ok "pg_upgrade --check: $(grep -o '\*Clusters are compatible\*' "$work/check.log" || echo compatible)"
upgrade_start=$SECONDS
if ! upgrade >"$work/pg_upgrade.log" 2>&1; then
    if grep -rqs 'unrecognized parameter "pg_attver"' "$new/data/pg_upgrade_output.d"; then
        cat >&2 <<EOF

NOT RUN (PostgreSQL, not pglock): $("$old_pg_config" --version) stamps every column
with the option pg_attver, which $("$new_pg_config" --version)'s pg_dump copies and
its server refuses ('unrecognized parameter "pg_attver"'), so pg_upgrade
cannot carry any table at all, with or without pglock.  Upgrade to a new
tree from the same PostgreSQL security release as the old one or later.
EOF
        exit 77
    fi
    fail "pg_upgrade"
fi
ok "pg_upgrade: $((SECONDS - upgrade_start)) s"

say "the new cluster: everything as it was"
tree_start "$new_pg_config" "$new"
for database in "${databases[@]}"; do
    snapshot new_sql "$database" >"$work/after-$database"
    diff -u "$work/before-$database" "$work/after-$database" || fail "$database changed in the upgrade"
    ok "$database: its locks ($(grep -c '^lock ' "$work/after-$database")), RVN sequence, $(grep -q '^secret ' "$work/after-$database" && echo 'name-lock secret, ')tables' row-level security and options, $(grep -c '^member ' "$work/after-$database") objects and their grants kept"
done
roles new_sql >"$work/roles-after"
diff -u "$work/roles-before" "$work/roles-after" || fail "roles changed in the upgrade"
ok "$(grep -c '^role ' "$work/roles-after") roles with their OIDs and attributes, $(grep -c '^membership ' "$work/roles-after") memberships kept"
expect "row-level security on pglock.locks and pglock.name_lock_secret" "$(new_sql app postgres \
    "SELECT string_agg(relname || '=' || relrowsecurity, ' ' ORDER BY relname) FROM pg_class
      WHERE relnamespace = 'pglock'::regnamespace AND relkind = 'r'")" "locks=true name_lock_secret=true"

for database in "${databases[@]}"; do
    output=$(new_sql "$database" postgres "ALTER EXTENSION pglock UPDATE" 2>&1) \
        || fail "$database: ALTER EXTENSION pglock UPDATE: $output"
    expect "$database: ALTER EXTENSION pglock UPDATE: at $new_version" \
        "$(new_sql "$database" postgres "SELECT extversion FROM pg_extension WHERE extname = 'pglock'")" "$new_version"
done
if [[ -n $legacy_version ]]; then
    expect "legacy: its locks as they were after the update from $legacy_version" \
        "$(new_sql legacy postgres "SELECT format('lock %s|%s|%s|%s|%s|%s|%s|%s|%s|%s', name, owner, rvn, lease,
                md5(data), octet_length(data), released, holder_role::text, holder_role::oid, updated_at)
             FROM pglock.locks ORDER BY name")" "$(grep '^lock ' "$work/before-legacy")"
fi

say "holders go on with the RVNs they had"
# above DATABASE RVN WHAT: RVN is above every RVN the database issued before.
above() {
    ((${2:-0} > ${max_rvn[$1]})) || fail "$3: RVN $2 is not above ${max_rvn[$1]}, issued before the upgrade"
    ok "$3: RVN $2 > ${max_rvn[$1]}"
}
rvn=$(new_sql app upg_app1 "SELECT pglock_heartbeat('held', 'w1', $held)")
above app "$rvn" "app: the holder's heartbeat with its RVN from before ($held)"
expect "app: then its release" "$(new_sql app upg_app1 "SELECT pglock_release('held', 'w1', $rvn)")" t
expect "app: another role's holder releases with its old RVN" \
    "$(new_sql app upg_app2 "SELECT pglock_release('other', 'w2', $other)")" t
row=$(new_sql app upg_app1 "SELECT acquired, rvn, convert_from(data, 'UTF8') FROM pglock_acquire('kept', 'w4')")
[[ $row =~ ^t\|([0-9]+)\|checkpoint$ ]] || fail "app: acquiring the kept lock: $row"
above app "${BASH_REMATCH[1]}" "app: the kept lock taken with its data 'checkpoint'"
# Across roles, a takeover needs the server's own observation that the RVN
# stood still for the holder's lease (1 second), on its monotonic clock: the new
# server counts from its first pglock call (the heartbeat above), never from
# before the upgrade, so it may take a second more.
for _ in $(seq 40); do
    row=$(new_sql app upg_app2 "SELECT acquired, rvn FROM pglock_acquire('silent', 'w6', observed_rvn => $silent)")
    [[ $row =~ ^t\| ]] && break
    sleep 0.25
done
[[ $row =~ ^t\|([0-9]+)$ ]] || fail "app: taking over the silent holder across roles: $row"
above app "${BASH_REMATCH[1]}" "app: the silent holder's lock taken over by another role once the new server saw it stand still for its lease"
expect "app: the holder reads its 160 kB of data" \
    "$(new_sql app upg_app1 "SELECT octet_length(data) || ' ' || md5(data) FROM pglock_get('big')")" \
    "$(awk -F'|' '$1 == "lock big" { print $6, $5 }' "$work/before-app")"
rvn=$(new_sql app2 upg_app1 "SELECT pglock_heartbeat('elsewhere', 'w1', $elsewhere)")
above app2 "$rvn" "app2: its holder's heartbeat"
if [[ -n $legacy_version ]]; then
    rvn=$(new_sql legacy upg_app1 "SELECT pglock_heartbeat('held', 'w1', $legacy_held)")
    above legacy "$rvn" "legacy: the holder's heartbeat after the update"
fi

say "roles, grants and row-level security at work"
expect "upg_watch (pglock_monitor) reads the view" \
    "$(new_sql app upg_watch "SELECT count(*) FROM pglock_locks")" 103
expect "upg_oncall (pglock_admin) forces a release" \
    "$(new_sql app upg_oncall "SELECT pglock_force_release('many-1')")" t
expect "upg_outsider may not acquire" \
    "$(new_sql app upg_outsider "SELECT * FROM pglock_acquire('x', 'y')" 2>&1 || true)" "ERROR:  42501"
expect "upg_outsider may not read the view" \
    "$(new_sql app upg_outsider "SELECT count(*) FROM pglock_locks" 2>&1 || true)" "ERROR:  42501"
expect "upg_reader (pg_read_all_data) sees no row of pglock's tables" \
    "$(new_sql app upg_reader "SELECT (SELECT count(*) FROM pglock.locks) + (SELECT count(*) FROM pglock.name_lock_secret)")" 0
expect "pglock_stats() on the new server (preloaded)" \
    "$(new_sql app upg_watch "SELECT acquired, taken_over, heartbeats, released, force_released FROM pglock_stats()")" \
    "1|1|$((${#legacy_version} ? 3 : 2))|2|1"

tree_stop "$new_pg_config" "$new"
say "pg_upgrade $old_major -> $new_major with pglock passed in $((SECONDS - started)) s"

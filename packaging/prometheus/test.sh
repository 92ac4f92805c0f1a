#!/usr/bin/env bash
# pglock's Prometheus files, tested for real:
#
#   1. `promtool check rules` and `promtool test rules` on alerts.yaml;
#   2. a private server of the tree PG_CONFIG names, pglock preloaded, with
#      pglock in two databases and in a known state: locks held by two roles,
#      released with data, released and gone, a holder that stopped
#      heartbeating, a takeover, a refusal, a heartbeat, a failed heartbeat, a
#      forced release;
#   3. Debian's postgres_exporter with queries.yaml against it, as a role that
#      is no superuser and has only pglock_monitor, discovering the second
#      database (--auto-discover-databases --include-databases) and not a
#      third one without pglock; /metrics scraped over 127.0.0.1;
#   4. every pglock metric checked for its exact value (the time-based ones
#      between what the server says just before and just after the scrape),
#      its type and labels (no lock names anywhere), `promtool check metrics`
#      on them, a second scrape after more calls, and every metric the alerts
#      use exported.
#
# usage: bash packaging/prometheus/test.sh [PG_CONFIG]
#   PG_CONFIG: pg_config of a server tree with pglock installed (default
#   $PGLOCK_PG_CONFIG, else Debian's PostgreSQL 15).
# Needs prometheus-postgres-exporter and promtool (packaging/prometheus/setup.sh
# installs them).  The server listens on port 55541 on a Unix socket only, the
# exporter on 127.0.0.1:55542; everything lives in /tmp/pglock-ops-exporter and
# is stopped and removed at the end, also on failure.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
source "$REPO/scripts/tree-server.sh"
cd "$REPO"

here=$REPO/packaging/prometheus
pg_config=${1:-${PGLOCK_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}}
port=55541
web=127.0.0.1:55542
work=/tmp/pglock-ops-exporter
exporter_bin=$(command -v prometheus-postgres-exporter) \
    || fail "no prometheus-postgres-exporter: run packaging/prometheus/setup.sh"
command -v promtool >/dev/null || fail "no promtool: run packaging/prometheus/setup.sh"

say "promtool: alerting rules"
promtool check rules "$here/alerts.yaml"
promtool test rules "$here/alerts.test.yaml"

version=$(tree_check "$pg_config")
exporter_pid=
finish() {
    local status=$?
    if [[ -n $exporter_pid ]]; then
        kill "$exporter_pid" 2>/dev/null || true
        wait "$exporter_pid" 2>/dev/null || true
    fi
    if ((status != 0)); then
        for log in "$work/server.log" "$work/exporter.log"; do
            [[ -f $log ]] && { echo "--- $log"; tail -n 30 "$log"; }
        done
    fi
    tree_stop_now "$pg_config" "$work"
    rm -rf "$work"
    exit "$status"
}
tree_stop_now "$pg_config" "$work"
rm -rf "$work"
trap finish EXIT

say "a server of $("$pg_config" --version), pglock $version preloaded, on port $port"
tree_create "$pg_config" "$work" "$port" shared_preload_libraries=pglock
tree_start "$pg_config" "$work"
sql() { tree_sql "$pg_config" "$work" "$port" "$@"; }

# Roles: two applications, an operator who may force releases, the exporter.
sql postgres postgres \
    "CREATE DATABASE app" "CREATE DATABASE app2" "CREATE DATABASE plain" \
    "CREATE ROLE ops_app1 LOGIN" "CREATE ROLE ops_app2 LOGIN" "CREATE ROLE ops_admin LOGIN" \
    "CREATE ROLE pglock_exporter LOGIN NOSUPERUSER"
sql app postgres "CREATE EXTENSION pglock"
sql app2 postgres "CREATE EXTENSION pglock"
sql postgres postgres "GRANT pglock_user TO ops_app1, ops_app2" "GRANT pglock_admin TO ops_admin" \
    "GRANT pglock_monitor TO pglock_exporter"
expect "the exporter's role is no superuser and only in pglock_monitor" "$(sql postgres postgres \
    "SELECT r.rolsuper, string_agg(m.roleid::regrole::text, ',')
       FROM pg_roles r LEFT JOIN pg_auth_members m ON m.member = r.oid
      WHERE r.rolname = 'pglock_exporter' GROUP BY r.rolsuper")" "f|pglock_monitor"

say "pglock in a known state"
# acquire DATABASE ROLE NAME OWNER LEASE [DATA]: the new RVN (the lock must be free).
acquire() {
    local row data=${6:+"convert_to('$6', 'UTF8')"}
    row=$(sql "$1" "$2" "SELECT acquired, rvn FROM pglock_acquire('$3', '$4', '$5', data => ${data:-NULL})")
    [[ $row == t\|* ]] || fail "acquire $3: $row"
    echo "${row#t|}"
}
held_a=$(acquire app ops_app1 held-a w1 '1 hour' abc)          # 3 bytes of data
acquire app ops_app1 held-b w1 '1 hour' >/dev/null
expect "a refusal" "$(sql app ops_app1 "SELECT acquired FROM pglock_acquire('held-a', 'w2')")" f
held_a=$(sql app ops_app1 "SELECT pglock_heartbeat('held-a', 'w1', $held_a)")
ok "a heartbeat"
kept=$(acquire app ops_app1 kept w1 '1 hour')
expect "released, keeping 10 bytes of data" \
    "$(sql app ops_app1 "SELECT pglock_release('kept', 'w1', $kept, keep => true,
                                                  data => convert_to('checkpoint', 'UTF8'))")" t
gone=$(acquire app ops_app1 gone w1 '1 hour')
expect "released" "$(sql app ops_app1 "SELECT pglock_release('gone', 'w1', $gone)")" t
taken=$(acquire app ops_app1 taken w1 '1 hour')
expect "a takeover" \
    "$(sql app ops_app1 "SELECT acquired FROM pglock_acquire('taken', 'w2', '1 hour', observed_rvn => $taken)")" t
expect "the old holder's heartbeat fails" \
    "$(sql app ops_app1 "SELECT pglock_heartbeat('taken', 'w1', $taken)" 2>&1 || true)" "ERROR:  55000"
acquire app ops_app1 doomed w1 '1 hour' >/dev/null
expect "a forced release" "$(sql app ops_admin "SELECT pglock_force_release('doomed')")" t
acquire app ops_app1 silent w3 '1 second' >/dev/null
acquire app ops_app2 other-role w9 '1 hour' >/dev/null
acquire app2 ops_app1 elsewhere w1 '1 hour' xy >/dev/null   # 2 bytes, in the other database
# asleep_in_wait DATABASE: until one session of it sleeps in a pglock wait.
asleep_in_wait() {
    for _ in $(seq 300); do
        [[ $(sql "$1" postgres "SELECT count(*) FROM pg_stat_activity
                                 WHERE datname = '$1' AND wait_event_type = 'Extension'") == 1 ]] && return 0
        sleep 0.05
    done
    fail "no session of $1 asleep in a pglock wait"
}
# A hand-off: a waiter asleep, the holder's release hands it the lock.
handed=$(acquire app ops_app1 handed w1 '1 hour')
tree_sql "$pg_config" "$work" "$port" app ops_app1 \
    "SELECT acquired FROM pglock_acquire_wait('handed', 'w5', '1 hour', wait_timeout => '30 s')" \
    >"$work/handed.out" 2>&1 &
handed_pid=$!
asleep_in_wait app
sleep 0.3
expect "a release hands the lock to its waiter" \
    "$(sql app ops_app1 "SELECT pglock_release('handed', 'w1', $handed)")" t
wait "$handed_pid" || fail "the waiter: $(cat "$work/handed.out")"
expect "the waiter got it" "$(cat "$work/handed.out")" t
# A waiter still waiting when the exporter scrapes (cancelled at the end).
tree_sql "$pg_config" "$work" "$port" app ops_app1 \
    "SELECT acquired FROM pglock_acquire_wait('held-b', 'w6', '1 hour', wait_timeout => '5 min')" \
    >/dev/null 2>&1 &
waiting_pid=$!
asleep_in_wait app
# The holder of "silent" stops: wait until it is 2 leases silent.
sleep 2.2

# What the exporter must show (held: held-a, held-b, taken, silent, other-role,
# handed; the waiter's acquire counts as an acquisition).
declare -A want=(
    [pglock_acquisitions_total]=11 [pglock_takeovers_total]=1 [pglock_refusals_total]=1
    [pglock_heartbeats_total]=1 [pglock_heartbeat_failures_total]=1
    [pglock_releases_total]=3 [pglock_forced_releases_total]=1
    [pglock_waits_total]=1 [pglock_handoffs_total]=1 [pglock_waiting]=1
    [pglock_observations_forgotten_total]=0
    ['pglock_locks_held{datname="app"}']=6 ['pglock_locks_released{datname="app"}']=1
    ['pglock_locks_expired{datname="app"}']=1 ['pglock_locks_data_bytes{datname="app"}']=13
    ['pglock_locks_waiters{datname="app"}']=1
    ['pglock_locks_held{datname="app2"}']=1 ['pglock_locks_released{datname="app2"}']=0
    ['pglock_locks_expired{datname="app2"}']=0 ['pglock_locks_data_bytes{datname="app2"}']=2
    ['pglock_locks_waiters{datname="app2"}']=0
)
expect "pglock_stats() as the exporter reads it" "$(sql app pglock_exporter \
    "SELECT acquired, taken_over, refused, heartbeats, failed_heartbeats, released, force_released,
            waits, handoffs, waiting, observations_forgotten FROM pglock_stats()")" \
    "11|1|1|1|1|3|1|1|1|1|0"

say "postgres_exporter $("$exporter_bin" --version 2>&1 | sed -n '1s/.*version \([^ ]*\).*/\1/p') on $web"
# The exporter runs as postgres, which may not be able to enter this checkout.
cp "$here/queries.yaml" "$work/queries.yaml"
chmod 0644 "$work/queries.yaml"
socket=$work/socket
dsn="host=$socket port=$port user=pglock_exporter dbname=app sslmode=disable"
# Only pglock's queries: the exporter's own (default, settings, collectors)
# would make its error gauge speak of more than this file.
"$AS_POSTGRES" env DATA_SOURCE_NAME="$dsn" "$exporter_bin" \
    --web.listen-address="$web" --extend.query-path="$work/queries.yaml" \
    --auto-discover-databases --include-databases=app2 \
    --disable-default-metrics --disable-settings-metrics \
    --no-collector.database --no-collector.bgwriter >"$work/exporter.log" 2>&1 &
exporter_pid=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://$web/" 2>/dev/null && break
    kill -0 "$exporter_pid" 2>/dev/null || fail "the exporter exited"
    sleep 0.1
done

# scrape FILE: /metrics into FILE, bracketed by what the server says of the
# time-based values; sets age_min/age_max and silence_min/silence_max.  By
# construction "held-b" (acquired first, never written again) is the
# longest-silent held lock, and "silent" (1 s lease, the others 1 hour) the
# one silent for the most leases.
bracket() {
    sql app postgres "SELECT extract(epoch FROM now() - updated_at) FROM pglock.locks WHERE name = '$1'"
}
scrape() {
    age_min=$(bracket held-b) silence_min=$(bracket silent)
    curl -fsS "http://$web/metrics" >"$1" || fail "scraping http://$web/metrics"
    age_max=$(bracket held-b) silence_max=$(bracket silent)
}
# value SERIES FILE: the value of SERIES (NAME or NAME{label="..."}), whatever
# other labels it has; fails unless exactly one line matches.
value() {
    local name=${1%%\{*} labels='' lines
    [[ $1 == *\{* ]] && labels=${1#*\{} && labels=${labels%\}}
    lines=$(awk -v name="$name" -v labels="$labels" '
        $1 == name || index($1, name "{") == 1 {
            if (labels == "" || index($1, labels) > 0) print $2
        }' "$2")
    [[ -n $lines && $lines != *$'\n'* ]] || fail "$1: expected one series in the scrape, found: ${lines:-none}"
    echo "$lines"
}
between() { # between WHAT VALUE MIN MAX
    awk -v v="$2" -v lo="$3" -v hi="$4" 'BEGIN { exit !(v + 0 >= lo - 0.000001 && v + 0 <= hi + 0.000001) }' \
        || fail "$1: $2 is not between $3 and $4"
    ok "$1 = $2 (between $3 and $4)"
}

scrape "$work/metrics"
expect "the exporter reached the server (pg_up)" "$(value pg_up "$work/metrics")" 1
expect "no query of queries.yaml failed (pg_exporter_last_scrape_error)" \
    "$(value pg_exporter_last_scrape_error "$work/metrics")" 0
for series in $(printf '%s\n' "${!want[@]}" | sort); do
    expect "$series" "$(value "$series" "$work/metrics")" "${want[$series]}"
done
between 'pglock_locks_oldest_heartbeat_age_seconds{datname="app"}' \
    "$(value 'pglock_locks_oldest_heartbeat_age_seconds{datname="app"}' "$work/metrics")" "$age_min" "$age_max"
between 'pglock_locks_max_silence_leases{datname="app"}' \
    "$(value 'pglock_locks_max_silence_leases{datname="app"}' "$work/metrics")" "$silence_min" "$silence_max"
awk -v v="$(value 'pglock_locks_oldest_heartbeat_age_seconds{datname="app2"}' "$work/metrics")" \
    'BEGIN { exit !(v > 0 && v < 600) }' || fail "app2's oldest heartbeat age"
awk -v v="$(value pglock_wait_seconds_total "$work/metrics")" 'BEGIN { exit !(v >= 0.3 && v < 60) }' \
    || fail "pglock_wait_seconds_total: the waiter slept at least 0.3 s"
ok "pglock_wait_seconds_total is the hand-off's wait"
ok "pglock_locks_oldest_heartbeat_age_seconds{datname=\"app2\"} is its one lock's age"

# Every pglock series: one of the metrics above, with exactly the labels it
# should have, and no lock name or owner anywhere in the output.
counters=(acquisitions takeovers refusals heartbeats heartbeat_failures releases forced_releases
    waits handoffs wait_seconds observations_forgotten)
gauges=(held released expired oldest_heartbeat_age_seconds max_silence_leases data_bytes waiters)
expected_series=$(
    for counter in "${counters[@]}"; do echo "pglock_${counter}_total{server=\"$socket:$port\"}"; done
    echo "pglock_waiting{server=\"$socket:$port\"}"
    for gauge in "${gauges[@]}"; do
        for database in app app2; do echo "pglock_locks_$gauge{datname=\"$database\",server=\"$socket:$port\"}"; done
    done | sort
)
expect "every pglock series and its labels" "$(awk '/^pglock_/ { print $1 }' "$work/metrics" | sort)" \
    "$(sort <<<"$expected_series")"
expected_types=$(
    for counter in "${counters[@]}"; do echo "pglock_${counter}_total counter"; done
    echo "pglock_waiting gauge"
    for gauge in "${gauges[@]}"; do echo "pglock_locks_$gauge gauge"; done
)
expect "every metric's type" "$(awk '$1 == "#" && $2 == "TYPE" && $3 ~ /^pglock_/ { print $3, $4 }' "$work/metrics" | sort)" \
    "$(sort <<<"$expected_types")"
samples=$(grep -v '^#' "$work/metrics")
for word in held-a held-b kept gone taken doomed silent other-role elsewhere w1 w2 w3 w9 ops_app1 ops_app2 ops_admin; do
    ! grep -q -- "$word" <<<"$samples" || fail "the scrape names '$word': $(grep -- "$word" <<<"$samples" | head -3)"
done
ok "no lock, owner or role name in any series"
# promtool's lint: naming conventions (counters end in _total, units), HELP.
lint=$(awk '/^(# (HELP|TYPE) )?pglock_/ || $3 ~ /^pglock_/' "$work/metrics" | promtool check metrics 2>&1) \
    || fail "promtool check metrics: $lint"
[[ -z $lint ]] || fail "promtool check metrics: $lint"
ok "promtool check metrics: no complaint"

# Every pglock metric an alert uses is exported.
used=$(grep -o 'pglock_[a-z_]*' "$here/alerts.yaml" | sort -u)
for metric in $used; do
    grep -q "^${metric}[{ ]" "$work/metrics" || fail "$metric is used by alerts.yaml but not exported"
    ok "$metric (used by the alerts) is exported"
done

say "a second scrape sees new calls"
row=$(sql app ops_app1 "SELECT rvn FROM pglock_get('held-a')")
sql app ops_app1 "SELECT pglock_heartbeat('held-a', 'w1', $row)" >/dev/null
expect "took over the silent holder's lock" "$(sql app ops_app1 \
    "SELECT acquired FROM pglock_acquire('silent', 'w4', '1 hour',
                                         observed_rvn => (SELECT rvn FROM pglock_get('silent')))")" t
scrape "$work/metrics2"
expect "pglock_heartbeats_total" "$(value pglock_heartbeats_total "$work/metrics2")" 2
expect "pglock_takeovers_total" "$(value pglock_takeovers_total "$work/metrics2")" 2
expect 'pglock_locks_expired{datname="app"}' "$(value 'pglock_locks_expired{datname="app"}' "$work/metrics2")" 0
between 'pglock_locks_max_silence_leases{datname="app"} (all leases 1 hour now)' \
    "$(value 'pglock_locks_max_silence_leases{datname="app"}' "$work/metrics2")" \
    "$(awk -v a="$age_min" 'BEGIN { print a / 3600 }')" "$(awk -v a="$age_max" 'BEGIN { print a / 3600 }')"

sql app postgres "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                   WHERE datname = 'app' AND wait_event_type = 'Extension'" >/dev/null
wait "$waiting_pid" 2>/dev/null || true
kill "$exporter_pid"
wait "$exporter_pid" 2>/dev/null || true
exporter_pid=
tree_stop "$pg_config" "$work"
say "Prometheus test passed: $(grep -c '^pglock_' "$work/metrics") pglock series from postgres_exporter, alerts tested"

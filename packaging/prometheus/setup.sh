#!/usr/bin/env bash
# Install what packaging/prometheus/test.sh needs, unless it is there: Debian's
# prometheus-postgres-exporter (0.11) and prometheus (2.42, for promtool),
# without their recommendations (prometheus-node-exporter) and without letting
# their services run: the exporter's default configuration would connect to the
# machine's cluster on 5432, and Prometheus would listen on :9090.  The test
# starts its own exporter on 127.0.0.1.
#
# Debian's maintainer scripts start services through invoke-rc.d or
# deb-systemd-invoke, which both ask /usr/sbin/policy-rc.d first: without one,
# a temporary one that refuses (exit 101) is in place during the install.  A
# service that was started anyway (a policy-rc.d that allows it) is stopped
# and disabled.  Packages that were installed before are left as they are.
#
# usage: bash packaging/prometheus/setup.sh   (as root; seconds when installed)
set -euo pipefail

packages=(prometheus-postgres-exporter prometheus)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$package")
done
((${#missing[@]})) || exit 0

policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# pglock packaging/prometheus/setup.sh: no service starts during its install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
echo "installing ${missing[*]} (their services kept stopped)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The services of what was just installed: stopped if running, not started at boot.
declare -A service_of=([prometheus-postgres-exporter]=prometheus-postgres-exporter [prometheus]=prometheus)
for package in "${missing[@]}"; do
    service=${service_of[$package]}
    if [[ -d /run/systemd/system ]]; then
        systemctl stop "$service" 2>/dev/null || true
        systemctl disable --quiet "$service" 2>/dev/null || true
    elif [[ -x /etc/init.d/$service ]]; then
        "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
done
for program in /usr/bin/prometheus-postgres-exporter /usr/bin/prometheus; do
    if pids=$(pidof "$program"); then
        echo "warning: $program is running (pid $pids) although its service was stopped" >&2
    fi
done
exit 0

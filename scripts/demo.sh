#!/usr/bin/env bash
# Set up everything on a fresh machine, build and install pglock, start a private
# PostgreSQL and run a short demo of two workers sharing a lock.
#
# usage: bash scripts/demo.sh [--pg N]   N: the PostgreSQL major version, 14 to 18
#                                        (default 15, Debian 12's)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

case ${1:-} in
-h | --help)
    sed -n '2,6s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
esac
major=$(pg_option "$@")

setup
use_postgres "$major"
install_extension
trap 'private_server_stop demo' EXIT
private_server_start demo 54330
say "pglock demo on $(psql -X -At -d postgres -c 'SELECT version()' | cut -d' ' -f1,2) (private server on port $PGPORT, socket folder $PGHOST)"
psql -X -d postgres -f scripts/demo.sql

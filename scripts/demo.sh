#!/usr/bin/env bash
# Set up everything on a fresh machine, build and install pglock, start a private
# PostgreSQL and run a short demo of two workers sharing a lock.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

setup
install_extension
trap 'private_server_stop demo' EXIT
private_server_start demo 54330
say "pglock demo (private server on port $PGPORT, socket folder $PGHOST)"
psql -X -d postgres -f scripts/demo.sql

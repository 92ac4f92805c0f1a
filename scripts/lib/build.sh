# shellcheck shell=bash
# Building pglock.  Sourced by scripts/lib.sh.

# Build pglock optimized for the version use_postgres chose and install it into
# that version's tree.
install_extension() {
    say "building and installing pglock (release, PostgreSQL $PG_MAJOR)"
    local log=$REPO/target/pglock-install-pg$PG_MAJOR.log
    mkdir -p "$REPO/target"
    (cd "$REPO" && cargo pgrx install --release --pg-config "$PG_CONFIG" >"$log" 2>&1) \
        || { cat "$log"; return 1; }
}

# shellcheck shell=bash
# The Rust toolchain's part: cargo-pgrx at the pinned version, initialised with
# every supported PostgreSQL.  Sourced by scripts/lib.sh.

PGRX_VERSION=0.18.1

# toolchain_setup: cargo-pgrx, and `cargo pgrx init` when its configuration
# does not name every version's pg_config.
toolchain_setup() {
    local major
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        say "installing cargo-pgrx $PGRX_VERSION"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    # `cargo pgrx init` rewrites its whole configuration: give it every version.
    local config=${PGRX_HOME:-$HOME/.pgrx}/config.toml init=() stale=false
    for major in "${PG_MAJORS[@]}"; do
        init+=("--pg$major" "$(pg_config_of "$major")")
        grep -qs "^pg$major = \"$(pg_config_of "$major")\"" "$config" || stale=true
    done
    if $stale; then
        say "cargo pgrx init (PostgreSQL ${PG_MAJORS[*]})"
        cargo pgrx init "${init[@]}"
    fi
}


# shellcheck shell=bash
# Shared by the scripts: source it.  What it holds, one file each:
#
#   lib/machine.sh    Debian's packages and the pinned wheels' servers
#   lib/toolchain.sh  cargo-pgrx, initialised with every version
#   lib/build.sh      building pglock into a version's tree
#   lib/servers.sh    which tree a version is; private servers
#
# A private server runs as `postgres` from a data folder under /tmp, listens on
# its own port and only on its own socket folder: it never touches the machine's
# default cluster on 5432 (scripts/private-server).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# as_postgres COMMAND...: COMMAND as postgres, from a folder it can read
# (scripts/as-postgres, the one way every script and test does it).  To start one
# in the background and keep its pid, run "$AS_POSTGRES" COMMAND... & instead.
AS_POSTGRES=$REPO/scripts/as-postgres
as_postgres() { "$AS_POSTGRES" "$@"; }

for part in machine toolchain build servers; do
    # shellcheck source=/dev/null
    source "$REPO/scripts/lib/$part.sh"
done
unset part

# setup [PACKAGE]...: everything the scripts need that is missing.
setup() {
    machine_setup "$@" && toolchain_setup
}

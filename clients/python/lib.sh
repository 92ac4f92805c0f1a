# lib.sh: what test.sh and bench.sh share (sourced): the paths, the pinned tools
# and wheels, building the wheel, and a fresh virtual environment with it.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
tools=$target/python-venv
wheels=$target/python-wheels
dist=$target/python-dist
python=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

step() { # step NAME COMMAND...: run it, print how long it took, stop on failure
    local name=$1 begin=$SECONDS status
    shift
    echo "== python: $name"
    # In a subshell of its own with errexit, outside any `if`: bash ignores
    # errexit in a condition, which would let a step fail half-way unnoticed.
    set +e
    (set -e; "$@")
    status=$?
    set -e
    if ((status != 0)); then
        echo "== python: $name FAILED ($status) after $((SECONDS - begin)) s" >&2
        exit 1
    fi
    echo "== python: $name: $((SECONDS - begin)) s"
}

# The tools' virtual environment, made again only when the pins change, and the
# pinned wheels kept beside it for every run's fresh test environment.
# Debian's own python3 makes virtual environments only with python3-venv.
venv_support() {
    "$python" -c 'import ensurepip' 2>/dev/null && return 0
    apt-get install -y -q python3-venv >/dev/null
}

tools_venv() {
    venv_support
    local stamp=$tools/.requirements
    local want
    want=$(cat "$here"/requirements-*.txt | sha256sum)
    if [[ -x $tools/bin/ruff && -x $tools/bin/mypy && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return 0
    fi
    rm -rf "$tools" "$wheels"
    "$python" -m venv "$tools"
    "$tools/bin/pip" download -q --no-deps -d "$wheels" -r "$here/requirements-dev.txt"
    "$tools/bin/pip" download -q --no-deps -d "$wheels" -r "$here/requirements-oldest.txt"
    "$tools/bin/pip" install -q --no-deps --no-index --find-links "$wheels" \
        -r "$here/requirements-dev.txt"
    echo "$want" >"$stamp"
}

wheel() {
    rm -rf "$dist"
    # No isolation: the build backend is the pinned hatchling of the tools.
    "$tools/bin/python" -m build -q --wheel --no-isolation --outdir "$dist" "$here" >/dev/null 2>&1 ||
        "$tools/bin/python" -m build --wheel --no-isolation --outdir "$dist" "$here"
    ls "$dist"/pglock_client-*.whl >/dev/null
}

# fresh_env DIR [REQUIREMENTS]: a new virtual environment with the wheel and the
# test pins (requirements-test.txt unless another file is given).
fresh_env() {
    local env=$1 pins=${2:-$here/requirements-test.txt}
    rm -rf "$env"
    "$python" -m venv "$env"
    "$env/bin/pip" install -q --no-deps --no-index --find-links "$wheels" \
        -r "$pins" "$dist"/pglock_client-*.whl
    # The wheel declares its dependencies: check that they are met.
    "$env/bin/pip" check >/dev/null
}

# Shared by scripts/run, scripts/test and scripts/bench*: make the virtualenv $1 from the lock file
# requirements/$2.txt (main or dev), every package pinned with its hash (installed by uv, itself pinned in
# requirements/tools.txt), then the project itself in
# editable mode (so code changes need no reinstall). A stamp in the virtualenv remembers which lock it
# was built from: when the lock (or pyproject.toml) changes, the virtualenv is made anew, so nothing
# left over from an older lock stays installed. A start with an unchanged lock needs no network.

PYTHON="${PYTHON:-python3}"

ensure_venv() {
    venv="$1"
    lock="requirements/$2.txt"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
        echo "Kartka needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1)); set PYTHON=python3.x" >&2
        exit 1
    }
    stamp="$venv/.kartka-installed"
    want="$(cat "$lock" requirements/tools.txt pyproject.toml)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
        return 0
    fi
    [ -d "$venv" ] && echo "$lock changed since $venv was made: making it anew" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    # uv installs the lock (pip would take several times as long: it downloads and unpacks one wheel at a
    # time); uv itself comes from requirements/tools.txt, pinned with hashes like everything else.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --only-binary :all: \
        -r requirements/tools.txt
    uv="$venv/bin/uv pip install --quiet --python $venv/bin/python"
    # Compiled here once (--compile-bytecode): with PYTHONDONTWRITEBYTECODE set, as on CI, every process
    # the tests start would compile what it imports again.
    $uv --require-hashes --only-binary :all: --compile-bytecode -r "$lock"
    $uv --no-deps --no-build-isolation -e .
    printf '%s' "$want" > "$stamp"
}

# Shared by scripts/run, scripts/test and scripts/bench*: make the virtualenv $1 from the lock file
# requirements/$2.txt (main or dev), every package pinned with its hash (installed by uv, itself pinned in
# requirements/tools.txt), then the project itself in
# editable mode (so code changes need no reinstall). A stamp in the virtualenv remembers which lock it
# was built from: when the lock (or requirements/tools.txt, or pyproject.toml) changes, the virtualenv is
# made anew, so nothing left over from an older lock stays installed. A start with an unchanged lock needs
# no network. tests/test_packaging.py runs venv_current and ensure_venv on a virtualenv of its own.

PYTHON="${PYTHON:-python3}"
# Bytecode is written, whatever the environment says (CI sets PYTHONDONTWRITEBYTECODE): into our own
# virtualenvs and the checkout's git-ignored __pycache__ folders. Otherwise every process the tests start
# (each pytest worker, kartka serve, its worker, the CLI) would compile again all it imports, and
# compiling everything ahead instead costs ~18 s of CPU for the many modules nothing imports.
unset PYTHONDONTWRITEBYTECODE

# What a virtualenv of lock $1 is made from: requirements/$1.txt, the installer's lock and pyproject.toml.
venv_inputs() {
    cat "requirements/$1.txt" requirements/tools.txt pyproject.toml
}

# Record that the virtualenv $1 was made, whole, from the inputs of lock $2 as they are now.
venv_stamp() {
    venv_inputs "$2" > "$1/.kartka-installed"
}

# Whether the virtualenv $1 can be used as it is: made whole from lock $2's inputs as they are now, and
# its Python still there. Anything else (a changed lock, an install cut short) makes it anew.
venv_current() {
    [ -f "$1/.kartka-installed" ] && [ -x "$1/bin/python" ] \
        && [ "$(cat "$1/.kartka-installed")" = "$(venv_inputs "$2")" ]
}

ensure_venv() {
    venv="$1"
    lock="requirements/$2.txt"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
        echo "Kartka needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1)); set PYTHON=python3.x" >&2
        exit 1
    }
    if venv_current "$venv" "$2"; then
        return 0
    fi
    [ -d "$venv" ] && echo "$venv was not made whole from $lock as it is now: making it anew" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    # uv installs the lock (pip would take several times as long: it downloads and unpacks one wheel at a
    # time); uv itself comes from requirements/tools.txt, pinned with hashes like everything else.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --only-binary :all: \
        -r requirements/tools.txt
    uv="$venv/bin/uv pip install --quiet --python $venv/bin/python"
    $uv --require-hashes --only-binary :all: -r "$lock"
    $uv --no-deps --no-build-isolation -e .
    venv_stamp "$venv" "$2"
}

# Compile the pricing core into engine/promotions/_native with mypyc (python -m engine.build_native) with
# the virtualenv $1's Python, unless the build there is that of engine/promotions/evaluate.py and what it
# imports as they are now (about 20 s when it is not). The plain module runs where it cannot be built (no
# C compiler): the script says so and goes on, except on CI, where the tests must price carts as the
# image does. `build_native_args` is what to pass it.
build_native_args() {
    if [ -n "${CI:-}" ]; then echo "--required"; fi
}
build_native() {
    "$1/bin/python" -m engine.build_native $(build_native_args)
}

# Shared by scripts/run, scripts/test and scripts/bench: make the virtualenv $1 with the extras $2.
# The project is installed in editable mode, so code changes need no reinstall; pip runs again only
# when pyproject.toml changes (a stamp in the virtualenv remembers it), and a start needs no network.

PYTHON="${PYTHON:-python3}"

ensure_venv() {
    venv="$1"
    extras="$2"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
        echo "Kartka needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1)); set PYTHON=python3.x" >&2
        exit 1
    }
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    stamp="$venv/.kartka-installed"
    want="$(cat pyproject.toml) extras=$extras"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".$extras"
        printf '%s' "$want" > "$stamp"
    fi
}

# shellcheck shell=bash
# Sourced by serve.sh and test.sh: a project virtualenv in .venv, so the commands also work
# where the system Python refuses pip installs (PEP 668).
VENV="${TACORE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
fi
PY="$VENV/bin/python"

# install_project SPEC: pip install -e SPEC (".", ".[dev]") unless this virtualenv already has
# it for this pyproject.toml, so a warm start prints nothing. pip's own output (setuptools'
# warnings) goes to $VENV/pip-install.log and is shown only when the install fails.
install_project() {
    local spec="$1" digest stamp
    digest="$(cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -d' ' -f1)"
    stamp="$VENV/.installed-$(printf '%s' "$spec" | tr -c 'A-Za-z0-9' '_')"
    local have
    for have in "$stamp" "$VENV/.installed-__dev_"; do  # ".[dev]" includes "."
        if [ -f "$have" ] && [ "$(cat "$have")" = "$digest" ] \
            && "$PY" -c "import tacoreservice" >/dev/null 2>&1; then
            return 0
        fi
        [ "$spec" = "." ] || break
    done
    echo "installing tacoreservice$([ "$spec" = "." ] || printf ' %s' "$spec") into $VENV (log: $VENV/pip-install.log)" >&2
    if ! "$PY" -m pip install -q --disable-pip-version-check -e "$spec" >"$VENV/pip-install.log" 2>&1; then
        cat "$VENV/pip-install.log" >&2
        return 1
    fi
    printf '%s\n' "$digest" >"$stamp"
}

# Sourced by serve.sh and test.sh: a project virtualenv in .venv, so the commands also work
# where the system Python refuses pip installs (PEP 668).
VENV="${TACORE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true

#!/usr/bin/env bash
# Set up and run the whole test suite (the README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is missing: sudo apt-get install redis-server (Redis tests will skip)" >&2
    fi
fi
source scripts/_venv.sh
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
exec "$PY" -m pytest -q "$@"

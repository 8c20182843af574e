#!/usr/bin/env bash
# Set up and run TACoreService on its embedded default (the README's first command):
# broker on :5555/:5560, WORKER_COUNT local workers, SQLite in data/, bundled market data,
# Redis when REDIS_URL is set. Arguments go to `tacore serve` (e.g. --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
install_project .
exec "$PY" -m tacoreservice.cli serve "$@"

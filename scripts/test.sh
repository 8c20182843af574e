#!/usr/bin/env bash
# Set up and run the whole test suite (the README's second command).
# As root it installs what the tests drive from Debian: redis-server (a real Redis per session),
# chromium (the dashboard's browser test) and prometheus (promtool, and a real scrape of
# /metrics). Without them those tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)          # network namespaces (remote workers)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)  # deploy.sh
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing: ${missing[*]} (sudo apt-get install ${missing[*]}); their tests will skip" >&2
    fi
fi
source scripts/_venv.sh
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
# The llm engine's tests run against a real local model: llama-cpp-python, built portable once
# and then reused from a wheelhouse (minutes the first time, seconds after), and SmolLM2-135M.
# TACORE_SKIP_LLM_LOCAL=1 leaves them out: those tests then skip and say why; otherwise a
# missing model fails them (TACORE_REQUIRE_LLM_LOCAL), so CI can never pass by skipping.
if [ "${TACORE_SKIP_LLM_LOCAL:-0}" != "1" ]; then
    PY="$PY" scripts/install_llm_local.sh
    export TACORE_REQUIRE_LLM_LOCAL=1
fi
exec "$PY" -m pytest -q "$@"

#!/usr/bin/env bash
# Deploy TACoreService with Docker Compose (docker-compose.yml beside this file): the broker
# with the monitoring API, 4 workers, Redis and the ScanPulse demo, CURVE on. deploy.bat does
# the same on Windows. See docs/deployment.md.
#
#   ./deploy.sh [up]      prepare, build, start, wait until healthy, print the addresses
#   ./deploy.sh prepare   only write what compose needs: keys/ (CURVE) and .env (secrets);
#                         no Docker needed when a local Python can import tacoreservice
#   ./deploy.sh scale N   run N workers
#   ./deploy.sh status    the containers and the service's own health
#   ./deploy.sh down      stop and remove the containers (the data, logs and Redis volumes stay)
#
# Environment: TACORE_PYTHON (a Python that can import tacoreservice, for the keys),
# TACORE_WAIT_TIMEOUT (seconds `up` waits for health, default 300).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

readonly KEYS_DIR=keys
readonly ENV_FILE=.env
# Client keys written to keys/: must match the keygen service in docker-compose.yml and
# deploy.bat. healthcheck is the key the container health check uses, api the key the
# monitoring API's POST /analyze sends through the broker with.
readonly CLIENTS=(scanner trader risk_guard optimizer console healthcheck api)
# The image's user when deploying as root (the service itself never runs as root).
readonly DEFAULT_ID=10001

die() {
    echo "deploy.sh: $*" >&2
    exit 1
}

usage() {
    cat <<'USAGE'
usage: ./deploy.sh [up | prepare | scale N | status | down]
  up         prepare, build, start, wait until healthy, print the addresses (default)
  prepare    only write keys/ (CURVE) and .env (secrets)
  scale N    run N workers
  status     the containers and the service's own health
  down       stop and remove the containers (volumes stay)
USAGE
}

COMPOSE=()
require_compose() {
    [ ${#COMPOSE[@]} -gt 0 ] && return 0
    command -v docker >/dev/null 2>&1 ||
        die "docker not found: install Docker Engine (Linux) or Docker Desktop, then run again"
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1 &&
        docker-compose version 2>/dev/null | grep -q 'v2\.'; then
        COMPOSE=(docker-compose)
    else
        die "Docker Compose v2 not found: install the compose plugin (package docker-compose-plugin, or Docker Desktop)"
    fi
}

compose() {
    require_compose
    "${COMPOSE[@]}" "$@"
}

# A Python that can import tacoreservice (TACORE_PYTHON, this checkout's .venv, python3).
local_python() {
    local candidate
    for candidate in "${TACORE_PYTHON:-}" .venv/bin/python python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import tacoreservice.security.keys' >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

random_hex() {
    if command -v openssl >/dev/null 2>&1; then
        openssl rand -hex 32
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c 'import secrets; print(secrets.token_hex(32))'
    else
        od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
        echo
    fi
}

container_ids() {
    if [ "$(id -u)" = 0 ]; then
        echo "$DEFAULT_ID $DEFAULT_ID"
    else
        echo "$(id -u) $(id -g)"
    fi
}

# Append NAME=VALUE to .env unless NAME is there already: values the operator set win.
env_default() {
    grep -q "^$1=" "$ENV_FILE" || printf '%s=%s\n' "$1" "$2" >>"$ENV_FILE"
}

write_env() {
    local uid gid
    read -r uid gid < <(container_ids)
    [ -f "$ENV_FILE" ] || (umask 077 && : >"$ENV_FILE")
    chmod 600 "$ENV_FILE"
    # The image's user gets the deploying user's ids, so it can read the 0600 key files.
    env_default TACORE_UID "$uid"
    env_default TACORE_GID "$gid"
    env_default TACORE_API_TOKEN "$(random_hex)"
    env_default REDIS_PASSWORD "$(random_hex)"
}

write_keys() {
    local py uid gid args=()
    local client
    for client in "${CLIENTS[@]}"; do
        args+=(--client "$client")
    done
    read -r uid gid < <(container_ids)
    # Existing pairs are kept: running this again never locks a module out.
    if py=$(local_python); then
        "$py" -m tacoreservice keys generate --dir "$KEYS_DIR" "${args[@]}"
    else
        echo "no local Python with tacoreservice: generating the keys inside the image"
        mkdir -p "$KEYS_DIR"
        if [ "$(id -u)" = 0 ]; then
            chown "$uid:$gid" "$KEYS_DIR"
        fi
        compose run --rm keygen
    fi
    # As root the keys belong to root; the container user must be able to read its own.
    if [ "$(id -u)" = 0 ]; then
        chown -R "$uid:$gid" "$KEYS_DIR"
    fi
}

cmd_prepare() {
    write_env
    write_keys
    echo "wrote $ENV_FILE (mode 600) and $KEYS_DIR/: keep both out of version control"
}

cmd_up() {
    require_compose
    cmd_prepare
    local timeout="${TACORE_WAIT_TIMEOUT:-300}"
    if ! compose up -d --build --wait --wait-timeout "$timeout"; then
        compose ps
        compose logs --tail 40 tacoreservice
        die "the services were not healthy within ${timeout}s (logs above; ./deploy.sh status)"
    fi
    compose exec -T tacoreservice tacore health || true
    cat <<EOF

TACoreService is up.
  Dashboard and API  http://localhost:8080/   (bearer token: TACORE_API_TOKEN in $ENV_FILE;
                     the page asks for it, or open http://localhost:8080/?token=...)
  Clients (ZeroMQ)   tcp://localhost:5555     CURVE: the broker's key is $KEYS_DIR/server.key,
                     each module's secret key is $KEYS_DIR/private/NAME.key_secret
  Health             ./deploy.sh status
  Workers            ./deploy.sh scale N
  ScanPulse demo     docker compose logs -f scanpulse
  Stop               ./deploy.sh down
EOF
}

cmd_scale() {
    local n="${1:-}"
    [[ "$n" =~ ^[0-9]+$ ]] || die "scale needs a number of workers, e.g. ./deploy.sh scale 8"
    compose up -d --no-recreate --scale "tacore_worker=$n" tacore_worker
    compose ps tacore_worker
}

cmd_status() {
    compose ps
    compose exec -T tacoreservice tacore health --detailed
}

main() {
    local command="${1:-up}"
    case "$command" in
    up) cmd_up ;;
    prepare) cmd_prepare ;;
    scale) cmd_scale "${2:-}" ;;
    status) cmd_status ;;
    down) compose down ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        die "unknown command '$command'"
        ;;
    esac
}

main "$@"

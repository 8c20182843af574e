# syntax=docker/dockerfile:1
# TACoreService image: the broker + monitoring API, a worker, `tacore`, and the ScanPulse demo.
# docker-compose.yml picks the role with `command:`; see docs/deployment.md.
#
# Two stages: the build stage installs the package and its dependencies into a virtualenv; the
# runtime stage gets only that virtualenv, so pip's caches and build tools stay out of the image.
# No compiler is needed on linux/amd64 or linux/arm64: TA-Lib's wheel (ta-lib >= 0.6) bundles its
# C library, and the one source-only dependency (peewee < 3.17.4, pinned by empyrical-reloaded)
# builds as pure Python without one.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# README.md: pyproject.toml names it as the package's long description. constraints.txt pins
# every runtime dependency (scripts/lock.sh writes it), so two builds install the same versions.
COPY pyproject.toml README.md constraints.txt ./
COPY tacoreservice ./tacoreservice
# Not editable: the runtime stage has no /src. The bundled market data and the dashboard's
# static files are package data, so they travel inside the virtualenv.
RUN pip install --prefer-binary -c constraints.txt . \
    && python -c "import talib, zmq, tacoreservice.cli; assert zmq.has('curve'), 'libzmq without CURVE'"

FROM ${PYTHON_IMAGE} AS runtime
# The container user's ids. deploy.sh sets them to the deploying user's, so the CURVE secret
# keys (mode 0600 on the host) are readable through the read-only bind mounts.
ARG TACORE_UID=10001
ARG TACORE_GID=10001
# TACORE_FRONTEND_HOST: a container's published port (`docker run -p 5555:5555`) reaches its
# eth0, never its loopback, so the image listens on every interface. The broker then refuses to
# start without CURVE and says what to set (TACORE_SECURITY=curve with keys, or
# TACORE_ALLOW_INSECURE_REMOTE=1 on a trusted network) instead of serving nothing.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TACORE_FRONTEND_HOST=0.0.0.0
RUN if [ "$TACORE_UID" = "0" ] || [ "$TACORE_GID" = "0" ]; then \
        echo "TACORE_UID/TACORE_GID must not be 0: the service runs as a non-root user" >&2; \
        exit 1; \
    fi \
    && groupadd --non-unique --gid "$TACORE_GID" tacore \
    && useradd --non-unique --uid "$TACORE_UID" --gid "$TACORE_GID" --home-dir /app \
        --no-create-home --shell /usr/sbin/nologin tacore
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# config/config.yaml and trading_config.yaml are read from the working directory; examples/
# holds the ScanPulse demo (`python -m examples.scanpulse run`), which is not in the package.
COPY config ./config
COPY examples ./examples
RUN mkdir -p data logs && chown tacore:tacore data logs
USER tacore
VOLUME ["/app/data", "/app/logs"]
# 5555: clients (ZeroMQ frontend). 8080: monitoring API and dashboard. The workers' port 5560
# stays on the compose network.
EXPOSE 5555 8080
# Exit 0 only when the broker answers and at least one worker is alive. Two attempts of 2 s fit
# in the timeout. With CURVE on, TACORE_CURVE_SERVER_KEY / TACORE_CURVE_CLIENT_KEY name the keys.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["tacore", "health", "--timeout-ms", "2000"]
# Everything in one container (broker, API, WORKER_COUNT workers, all on 127.0.0.1); the
# compose file runs the broker and the workers as separate services instead.
CMD ["python", "-m", "tacoreservice.main"]

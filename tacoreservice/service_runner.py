"""Process wiring shared by the entry points: broker (+ supervised workers) and lone workers."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from tacoreservice.config import ConfigError, Settings, load_settings

__all__ = ["settings_for_process", "run_service", "run_worker", "service_entry_point"]

log = logging.getLogger("tacoreservice")


def settings_for_process(
    overrides: dict[str, Any] | None = None, config_path: str | None = None
) -> Settings:
    """Settings for this process; a supervised worker inherits its parent's exact settings."""
    inherited = os.environ.get("TACORE_SETTINGS_JSON")
    if inherited:
        return Settings.model_validate_json(inherited)
    return load_settings(config_path, overrides=overrides)


def _local_connect_endpoint(settings: Settings) -> str:
    host = settings.broker.backend_host
    if host in ("0.0.0.0", "*", ""):
        host = "127.0.0.1"
    return f"tcp://{host}:{settings.broker.backend_port}"


def run_service(settings: Settings, with_workers: bool = True) -> int:
    """Run the broker, and with ``with_workers`` the supervised local workers, until signalled."""
    from tacoreservice.broker.broker import CONTROL_ENDPOINT, Broker
    from tacoreservice.logging_setup import setup_logging
    from tacoreservice.worker_runtime.supervisor import Supervisor

    try:
        setup_logging(settings, "service")
        broker = Broker(settings)
    except ConfigError as exc:
        log.error("%s", exc)
        print(f"tacoreservice: {exc}", file=sys.stderr)
        return 2
    monitor = None
    if settings.api.enabled:
        from tacoreservice.monitoring import MonitorServer

        try:
            monitor = MonitorServer(settings, broker.ctx, broker.metrics)
            monitor.bind()
        except ConfigError as exc:
            log.error("%s", exc)
            return 2
        except OSError as exc:
            log.error(
                "cannot serve the monitoring API on %s:%d: %s (set API_PORT, or "
                "TACORE_API_ENABLED=0 to run without it)",
                settings.api.host,
                settings.api.port,
                exc,
            )
            return 2
    try:
        broker.bind()
    except Exception as exc:  # zmq.ZMQError: address in use, bad endpoint
        log.error("cannot bind the broker: %s", exc)
        if monitor is not None:
            monitor.stop()
        return 2
    # A configured local model is served once, here, for every local worker (see
    # analysis/engines/llm_server.py); it stops after the workers.
    llm_server = None
    if with_workers and settings.llm.local_model and not settings.llm.local_server_url:
        try:
            settings, llm_server = _start_local_model(settings)
        except Exception as exc:  # ServiceError: not installed, no such model, crashed
            log.error("cannot start the local model server: %s", exc)
            print(f"tacoreservice: cannot start the local model server: {exc}", file=sys.stderr)
            if monitor is not None:
                monitor.stop()
            return 2
    supervisor = None
    if with_workers and settings.worker.count > 0:
        supervisor = Supervisor(
            settings,
            settings.worker.count,
            _local_connect_endpoint(settings),
            broker.ctx,
            CONTROL_ENDPOINT,
        )

    signals_seen = 0

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("second signal: stopping now")
            if supervisor is not None:
                supervisor.kill_all()
            os._exit(130)
        log.info("signal %d: draining, then stopping", signum)
        if supervisor is not None:
            supervisor.stop_respawning()
        broker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if supervisor is not None:
        supervisor.start()
    if monitor is not None:
        monitor.start()
    try:
        broker.run()
    finally:
        if monitor is not None:
            monitor.stop()
        if supervisor is not None:
            supervisor.stop(timeout=settings.broker.drain_timeout_s)
        if llm_server is not None:
            llm_server.stop()
    return 0


def _start_local_model(settings: Settings) -> tuple[Settings, Any]:
    from tacoreservice.analysis.engines.llm_server import server_for

    llm = settings.llm
    server = server_for(llm, settings.logging.dir).start(llm.local_start_timeout_s)
    log.info("local model %s served at %s for the workers", server.alias, server.base_url)
    llm = llm.model_copy(update={"local_server_url": server.base_url})
    return settings.model_copy(update={"llm": llm}), server


def run_worker(
    settings: Settings, worker_id: str | None = None, endpoint: str | None = None
) -> int:
    from tacoreservice.logging_setup import setup_logging
    from tacoreservice.worker_runtime.worker import Worker

    try:
        setup_logging(settings, os.environ.get("TACORE_LOG_ROLE", "worker"))
        worker = Worker(settings, worker_id=worker_id, endpoint=endpoint)
    except ConfigError as exc:
        log.error("%s", exc)
        print(f"tacoreservice: {exc}", file=sys.stderr)
        return 2
    worker.install_signal_handlers()
    return worker.run()


def service_entry_point(with_workers: bool) -> int:
    """``python -m tacoreservice.main`` / ``.load_balancer``: settings from file and env."""
    try:
        settings = settings_for_process()
    except ConfigError as exc:
        print(f"tacoreservice: {exc}", file=sys.stderr)
        return 2
    return run_service(settings, with_workers=with_workers)

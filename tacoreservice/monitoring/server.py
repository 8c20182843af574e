"""Runs the monitoring API on a thread of the broker process.

The listening socket is bound before anything else starts, so a busy API_PORT stops the service
at once with a clear message instead of leaving a broker without its monitor.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading

import uvicorn
import zmq

from tacoreservice.config import ConfigError, Settings
from tacoreservice.monitoring.bridge import BrokerLink
from tacoreservice.monitoring.metrics import BrokerMetrics

__all__ = ["MonitorServer", "check_api_exposure"]

log = logging.getLogger("tacoreservice.monitoring")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_exposure(settings: Settings) -> None:
    """Refuse to serve the API beyond this host without a token."""
    host = settings.api.host
    if not _is_loopback(host) and not settings.api.token:
        raise ConfigError(
            f"the monitoring API is set to listen on {host}:{settings.api.port}, beyond this "
            "host, and TACORE_API_TOKEN is not set: set a token (clients then send "
            "'Authorization: Bearer <token>'), or keep api.host / TACORE_API_HOST at 127.0.0.1"
        )


class MonitorServer:
    def __init__(self, settings: Settings, context: zmq.Context, metrics: BrokerMetrics):
        check_api_exposure(settings)
        self.settings = settings
        self.link = BrokerLink(context)
        self.metrics = metrics
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def bind(self) -> None:
        """Bind API_PORT now; raises OSError (address in use, no such address)."""
        host, port = self.settings.api.host, self.settings.api.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(False)
        self._sock = sock

    def start(self) -> None:
        from tacoreservice.monitoring.app import create_app

        assert self._sock is not None, "bind() first"
        app = create_app(
            self.settings,
            self.link,
            self.metrics,
            token=self.settings.api.token,
            stopping=self._stopping.is_set,
        )
        config = uvicorn.Config(
            app,
            log_config=None,  # keep the service's logging setup
            # Off, and it must stay off: an access line holds the full path, and the dashboard's
            # EventSource sends the API token as ?token= (it cannot send headers). The secret
            # masking filter would mask the token's value too; this keeps it out in the first
            # place, along with one log line per poll of the dashboard.
            access_log=False,
            timeout_graceful_shutdown=2,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        sock = self._sock
        server = self._server
        # uvicorn installs no signal handlers off the main thread: the service's own handlers
        # stay in charge of SIGTERM / SIGINT.
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="monitor-api", daemon=True
        )
        self._thread.start()
        log.info(
            "dashboard: http://%s:%d/ (monitoring API, token %s)",
            self.settings.api.host,
            self.settings.api.port,
            "required" if self.settings.api.token else "not required",
        )

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.link.close()
        if self._sock is not None:
            self._sock.close()

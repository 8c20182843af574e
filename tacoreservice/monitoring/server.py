"""Runs the monitoring API in a process of its own, next to the broker.

Why a process: HTTP clients are the one kind of peer the broker cannot bound by its own rules.
About a thousand half-open connections once used up the broker process's file descriptors and
every ZeroMQ client went unanswered until they closed. Now the API holds its connections in its
own process, with a cap on them and a deadline for a request's headers (a connection that sends
nothing is closed), and the broker raises its own file limit at start (see :func:`raise_file_limit`).

The listening socket is bound by the broker process before anything else starts, so a busy
API_PORT stops the service at once with a clear message, and handed to the API process, which
is restarted if it dies (:mod:`tacoreservice.monitoring.api_process` is that process). The API
reads the broker's state over a private IPC socket
(:mod:`tacoreservice.monitoring.bridge`) and the SQLite file directly.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tacoreservice.child_process import die_with_parent
from tacoreservice.config import ConfigError, Settings

__all__ = ["MonitorServer", "check_api_exposure", "raise_file_limit"]

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


def raise_file_limit() -> tuple[int, int]:
    """Raise this process's open-file limit to its hard limit (a broker holds a descriptor
    per client and worker connection); returns (soft, hard) as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft, hard


class MonitorServer:
    """The broker process's side: binds API_PORT, runs and restarts the API process."""

    def __init__(self, settings: Settings):
        check_api_exposure(settings)
        self.settings = settings
        # The broker answers the API's queries here: a socket file in a folder only this user
        # may enter, so no other local user can read the broker's state through it.
        self._dir = tempfile.mkdtemp(prefix="tacore-monitor-")
        self.monitor_endpoint = f"ipc://{self._dir}/broker.sock"
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.restarts = 0

    def bind(self) -> None:
        """Bind API_PORT now; raises OSError (address in use, no such address)."""
        host, port = self.settings.api.host, self.settings.api.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(self.settings.api.backlog)
        except OSError:
            sock.close()
            raise
        self._sock = sock

    def start(self) -> None:
        assert self._sock is not None, "bind() first"
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="monitor-api", daemon=True)
        self._thread.start()
        log.info(
            "dashboard: http://%s:%d/ (monitoring API, token %s)",
            self.settings.api.host,
            self.settings.api.port,
            "required" if self.settings.api.token else "not required",
        )

    def _spawn(self) -> None:
        assert self._sock is not None
        fd = self._sock.fileno()
        env = dict(os.environ)
        env["TACORE_SETTINGS_JSON"] = self.settings.model_dump_json()
        with self._lock:
            if self._stopping.is_set():
                return
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tacoreservice.monitoring.api_process",
                    "--fd",
                    str(fd),
                    "--monitor",
                    self.monitor_endpoint,
                ],
                env=env,
                pass_fds=(fd,),
                preexec_fn=die_with_parent,
                process_group=0,  # a terminal's Ctrl+C reaches the service, which stops it
            )

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            proc = self._proc
            if proc is None or proc.poll() is None:
                continue
            log.warning("the monitoring API process exited with %s; restarting", proc.returncode)
            self.restarts += 1
            time.sleep(min(5.0, 0.5 * self.restarts))
            self._spawn()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

"""Refuse to put the order-executing ZeroMQ ports on a network without CURVE.

On loopback only processes of this host can connect, and the embedded default needs no keys.
Beyond it, anyone who reaches the port could place orders, so the broker will not start
unless CURVE is on or an operator has said in so many words that the network is trusted.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

from tacoreservice.config import ConfigError, Settings

__all__ = ["check_broker_exposure", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _exposed(endpoint: str) -> str | None:
    parsed = urlparse(endpoint)
    if parsed.scheme != "tcp":
        return None  # ipc:// and inproc:// never leave the host
    host = parsed.netloc.rsplit(":", 1)[0]
    return None if is_loopback(host) else host


def check_broker_exposure(settings: Settings) -> None:
    sec = settings.security
    if sec.mode == "curve" or sec.allow_insecure_remote:
        return
    broker = settings.broker
    for what, endpoint in (
        ("frontend (clients)", broker.frontend_endpoint),
        ("backend (workers)", broker.backend_endpoint),
    ):
        host = _exposed(endpoint)
        if host is not None:
            raise ConfigError(
                f"the broker's {what} would listen on {endpoint}, beyond this host, without "
                "CURVE: anyone reaching that port could call every method, execute.order "
                "included. Turn CURVE on (`tacore keys generate`, then TACORE_SECURITY=curve; "
                "see SECURITY.md), keep it on 127.0.0.1 (TACORE_FRONTEND_HOST / "
                "TACORE_BACKEND_HOST), or, on a network you trust, set "
                "TACORE_ALLOW_INSECURE_REMOTE=1 (with Docker: docker run -e "
                "TACORE_ALLOW_INSECURE_REMOTE=1 -p 5555:5555 ..., or the compose files)"
            )

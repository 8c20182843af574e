"""Where a client connects when its code does not say: the environment, then loopback.

Precedence: ``TACORE_ENDPOINT`` (ours) beats ``TACORE_SERVICE_URL`` (the name the design
documents and every module's compose entry use), which beats ``tcp://127.0.0.1:PORT`` with PORT
from ``ZMQ_FRONTEND_PORT`` (5555). Either variable may list several endpoints, comma-separated,
for fail-over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["ENDPOINT_VARS", "default_endpoints", "endpoints_from_env"]

ENDPOINT_VARS = ("TACORE_ENDPOINT", "TACORE_SERVICE_URL")


def endpoints_from_env(env: Mapping[str, str] | None = None) -> list[str]:
    """The endpoints the first set variable of :data:`ENDPOINT_VARS` names (empty if none)."""
    environ = os.environ if env is None else env
    for name in ENDPOINT_VARS:
        items = [x.strip() for x in environ.get(name, "").split(",") if x.strip()]
        if items:
            return items
    return []


def default_endpoints(env: Mapping[str, str] | None = None) -> list[str]:
    environ = os.environ if env is None else env
    port = environ.get("ZMQ_FRONTEND_PORT", "").strip() or "5555"
    return endpoints_from_env(environ) or [f"tcp://127.0.0.1:{port}"]

"""The monitoring API's own process: ``python -m tacoreservice.monitoring.api_process``.

Started by :class:`~tacoreservice.monitoring.server.MonitorServer` with the listening socket
already bound (``--fd``) and the broker's private query endpoint (``--monitor``). uvicorn serves
the app with :class:`_GuardedH11Protocol`, which caps the open connections and closes those that
do not send a request's headers in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["main"]


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a cap on open connections and a deadline for each
    request's headers: a client that opens connections and sends nothing (or a byte a minute)
    gets them closed instead of holding them, and the ones over the cap are closed at once."""

    max_connections = 256
    header_timeout_s = 10.0
    open_connections = 0  # the event loop's thread only
    refused = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cls = type(self)
        if cls.open_connections >= cls.max_connections:
            cls.refused += 1
            self._counted = False
            transport.abort()
            return
        cls.open_connections += 1
        self._counted = True
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if not getattr(self, "_counted", False):
            return
        type(self).open_connections -= 1
        self._counted = False
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request's headers get the same deadline

    def _arm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._request_at_arm = self.cycle
        self._header_timer = self.loop.call_later(
            type(self).header_timeout_s, self._header_deadline
        )

    def _header_deadline(self) -> None:
        cycle = self.cycle
        started_since = cycle is not None and cycle is not self._request_at_arm
        if started_since or self.transport.is_closing():
            return  # a request came in (it may stream for long: not our business)
        self.transport.close()


def _serve(fd: int, monitor_endpoint: str) -> int:
    import uvicorn
    import zmq

    from tacoreservice.config import Settings
    from tacoreservice.logging_setup import setup_logging
    from tacoreservice.monitoring.app import create_app
    from tacoreservice.monitoring.bridge import BrokerLink

    # The service's exact settings, as its workers get them (MonitorServer passes them).
    settings = Settings.model_validate_json(os.environ["TACORE_SETTINGS_JSON"])
    setup_logging(settings, "service")
    api = settings.api
    _GuardedH11Protocol.max_connections = api.max_connections
    _GuardedH11Protocol.header_timeout_s = api.header_timeout_s
    sock = socket.socket(fileno=fd)
    link = BrokerLink(zmq.Context(), monitor_endpoint)
    server: uvicorn.Server | None = None

    def stopping() -> bool:
        return server is not None and server.should_exit

    app = create_app(settings, link, token=api.token, stopping=stopping)
    config = uvicorn.Config(
        app,
        log_config=None,  # keep the service's logging setup
        # Off, and it must stay off: an access line holds the full path, and the dashboard's
        # EventSource sends the API token as ?token= (it cannot send headers). The secret
        # masking filter would mask the token's value too; this keeps it out in the first
        # place, along with one log line per poll of the dashboard.
        access_log=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=int(api.keep_alive_s),
        lifespan="off",
        http=_GuardedH11Protocol,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    link.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tacoreservice.monitoring.server")
    parser.add_argument("--fd", type=int, required=True, help="the bound, listening socket")
    parser.add_argument("--monitor", required=True, help="the broker's monitor endpoint")
    args: Any = parser.parse_args(argv)
    return _serve(args.fd, args.monitor)


if __name__ == "__main__":
    sys.exit(main())

"""How the monitoring API (its own process) asks the broker (its loop) for its state.

The broker owns its state without locks, so the API never reads it directly: it sends a query
over a private IPC socket (``ipc://`` in a folder only this user can enter) and the broker
answers from its loop with a JSON snapshot, or its Prometheus metrics. A broker that
does not answer within ``timeout_s`` is reported as not responding (``/health`` answers 503),
which is exactly what an operator needs to know about a stuck loop.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import orjson
import zmq

__all__ = ["MONITOR_ENDPOINT", "BrokerLink", "BrokerNotResponding", "QUERIES"]

MONITOR_ENDPOINT = "inproc://tacore-broker-monitor"
QUERIES = frozenset({b"snapshot", b"timeseries", b"metrics"})


class BrokerNotResponding(RuntimeError):
    pass


class BrokerLink:
    """The API side: one DEALER, serialised by a lock (zmq sockets are not thread-safe)."""

    def __init__(
        self, context: zmq.Context, endpoint: str = MONITOR_ENDPOINT, timeout_s: float = 2.0
    ):
        self.ctx = context
        self.endpoint = endpoint
        self.timeout_ms = int(timeout_s * 1000)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._sock: zmq.Socket | None = None

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            self._sock = sock
        return self._sock

    def query(self, kind: str) -> dict[str, Any]:
        with self._lock:
            sock = self._socket()
            seq = str(next(self._seq)).encode()
            sock.send_multipart([b"", seq, kind.encode()])
            while True:
                if not sock.poll(self.timeout_ms, zmq.POLLIN):
                    raise BrokerNotResponding(
                        f"the broker loop did not answer within {self.timeout_ms} ms"
                    )
                frames = sock.recv_multipart()
                # A late answer to a query that already timed out: skip it.
                if len(frames) == 3 and frames[1] == seq:
                    return dict(orjson.loads(frames[2]))

    def metrics(self) -> dict[str, Any]:
        """The broker's Prometheus figures: ``{"text": exposition format, "json": ...}``."""
        return self.query("metrics")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close(linger=0)
                self._sock = None

"""Blocking client with the Lazy Pirate pattern (ZeroMQ guide, chapter 4).

A REQ socket cannot recover from a lost reply, so after a timeout the socket is closed and
rebuilt and the request is sent again with the same request_id; the broker joins or answers
such retries without running the request twice. With several endpoints the client fails over
to the next one on each retry.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import orjson
import zmq
from typing_extensions import Unpack

from tacoreservice.client.base import ClientBase, ClientOptions
from tacoreservice.client.errors import TACoreTimeout
from tacoreservice.client.helpers import data_or_raise
from tacoreservice.security.keys import apply_curve

__all__ = ["TACoreClient", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class TACoreClient(ClientBase):
    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        context: zmq.Context | None = None,
        **options: Unpack[ClientOptions],
    ):
        """``options``: see :class:`~tacoreservice.client.base.ClientBase`; ``context``: the
        ZeroMQ context to use (default: the process's shared one)."""
        super().__init__(endpoints, **options)
        self._ctx = context or zmq.Context.instance()
        self._index = 0
        self._sock: zmq.Socket | None = None
        self._lock = threading.Lock()

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            sock = self._ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            apply_curve(sock, self.curve_keys)
            sock.connect(self.endpoints[self._index % len(self.endpoints)])
            self._sock = sock
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._index += 1

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close(linger=0)
                self._sock = None

    def __enter__(self) -> TACoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, body: bytes, timeout_ms: int | None = None) -> dict[str, Any]:
        """Send pre-built bytes once (no retry); for tests and tools."""
        with self._lock:
            sock = self._socket()
            sock.send(body)
            if not sock.poll(timeout_ms or self.timeout_ms):
                self._reset()
                raise TACoreTimeout(f"no reply within {timeout_ms or self.timeout_ms} ms")
            reply: dict[str, Any] = orjson.loads(sock.recv())
            return reply

    def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        timeout_ms: int | None = None,
        retries: int | None = None,
        deadline_ms: int | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the whole reply (success or error)."""
        rid, body = self._encode(method, params, request_id, deadline_ms)
        timeout = timeout_ms or self.timeout_ms
        attempts = 1 + (self.retries if retries is None else retries)
        with self._lock:
            for _ in range(attempts):
                sock = self._socket()
                sock.send(body)
                if sock.poll(timeout):
                    reply: dict[str, Any] = orjson.loads(sock.recv())
                    return reply
                self._reset()  # Lazy Pirate: a REQ socket that lost its reply is unusable
        raise TACoreTimeout(
            f"no reply to {method} (request_id {rid}) after {attempts} "
            f"attempts of {timeout} ms each; endpoints: {', '.join(self.endpoints)}"
        )

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send one request and return its ``data``; an error reply raises TACoreError."""
        return data_or_raise(self.request(method, params, **kwargs))

"""Blocking client with the Lazy Pirate pattern (ZeroMQ guide, chapter 4).

A REQ socket cannot recover from a lost reply, so after a timeout the socket is closed and
rebuilt and the request is sent again with the same request_id; the broker joins or answers
such retries without running the request twice. With several endpoints the client fails over
to the next one on each retry.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import orjson
import zmq

from tacoreservice.client.endpoint import default_endpoints
from tacoreservice.client.errors import TACoreTimeout
from tacoreservice.client.helpers import MethodHelpers, data_or_raise, encode_request
from tacoreservice.security.keys import apply_curve, load_curve_keys

__all__ = ["TACoreClient", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class TACoreClient(MethodHelpers):
    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout_ms: int = 5000,
        retries: int = 3,
        context: zmq.Context | None = None,
        server_key: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        client_name: str | None = None,
    ):
        """``server_key`` / ``client_key``: paths of the broker's ``server.key`` and this
        module's ``NAME.key_secret``, for a broker with CURVE on (both or neither).
        ``client_name``: the name sent with each request when security is off (with CURVE the
        key's name counts), for permissions, rate limits and the request log.
        ``endpoints`` omitted: TACORE_ENDPOINT, else TACORE_SERVICE_URL, else
        ``DEFAULT_ENDPOINT`` (see :mod:`tacoreservice.client.endpoint`)."""
        if endpoints is None:
            endpoints = default_endpoints()
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.curve_keys = load_curve_keys(server_key, client_key)
        self.client_name = client_name
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed, e.g. tcp://127.0.0.1:5555")
        self.timeout_ms = timeout_ms
        self.retries = retries
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
        rid, body = encode_request(method, params, request_id, deadline_ms, self.client_name)
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

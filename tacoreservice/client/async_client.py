"""Asyncio client: one DEALER socket, many requests in flight, replies matched by request_id."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import orjson
import zmq
import zmq.asyncio
from typing_extensions import Unpack

from tacoreservice.client.base import ClientBase, ClientOptions
from tacoreservice.client.errors import TACoreError, TACoreTimeout
from tacoreservice.client.helpers import data_or_raise
from tacoreservice.security.keys import apply_curve

__all__ = ["AsyncTACoreClient"]


class AsyncTACoreClient(ClientBase):
    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        context: zmq.asyncio.Context | None = None,
        **options: Unpack[ClientOptions],
    ):
        """``options``: see :class:`~tacoreservice.client.base.ClientBase`; ``context``: the
        ZeroMQ context to use (default: the process's shared one)."""
        super().__init__(endpoints, **options)
        self._ctx = context or zmq.asyncio.Context.instance()
        self._sock: zmq.asyncio.Socket | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> AsyncTACoreClient:
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 100_000)
            sock.setsockopt(zmq.RCVHWM, 100_000)
            apply_curve(sock, self.curve_keys)
            # Several endpoints: DEALER spreads requests over them and skips dead ones.
            for endpoint in self.endpoints:
                sock.connect(endpoint)
            self._sock = sock
            self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(TACoreError("CLOSED", "client closed"))
        self._pending.clear()

    async def __aenter__(self) -> AsyncTACoreClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        assert self._sock is not None
        while True:
            frames = await self._sock.recv_multipart()
            try:
                reply = orjson.loads(frames[-1])
            except orjson.JSONDecodeError:
                continue
            fut = self._pending.pop(str(reply.get("request_id")), None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        timeout_ms: int | None = None,
        retries: int | None = None,
        deadline_ms: int | None = None,
    ) -> dict[str, Any]:
        await self.connect()
        assert self._sock is not None
        rid, body = self._encode(method, params, request_id, deadline_ms)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        timeout = (timeout_ms or self.timeout_ms) / 1000.0
        attempts = 1 + (self.retries if retries is None else retries)
        try:
            for _ in range(attempts):
                await self._sock.send_multipart([b"", body])
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
                except TimeoutError:
                    continue  # resend with the same request_id; the broker dedups it
        finally:
            self._pending.pop(rid, None)
        raise TACoreTimeout(
            f"no reply to {method} (request_id {rid}) after {attempts} attempts of "
            f"{timeout * 1000:.0f} ms each"
        )

    async def call(self, method: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return data_or_raise(await self.request(method, params, **kwargs))

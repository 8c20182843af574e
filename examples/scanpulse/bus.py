"""The fast path between ScanPulse components: ZeroMQ PUB/SUB with a topic and a JSON body.

PUB/SUB drops what a subscriber is not connected for (the "slow joiner") and what overflows
its queue, so it is never the record: Redis is (see :mod:`.store`). The publisher is an XPUB
socket, which sends like PUB but also hears subscriptions, so a component started together
with its subscribers can wait until they are listening instead of publishing into the void.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import zmq

__all__ = ["OPPORTUNITY", "FILL", "Publisher", "Subscriber"]

OPPORTUNITY = b"opportunity"
FILL = b"fill"


class Publisher:
    def __init__(self, ctx: zmq.Context, bind: str):
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # count every subscriber, not every topic
        self.sock.bind(bind)
        self.subscriptions = 0

    def _drain_subscriptions(self, timeout_ms: int) -> None:
        while self.sock.poll(timeout_ms):
            frame = self.sock.recv()
            # First byte 1 = subscribe, 0 = unsubscribe (ZMQ XPUB protocol).
            self.subscriptions += 1 if frame[:1] == b"\x01" else -1
            timeout_ms = 0

    def wait_subscribers(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` subscriptions arrived (or the timeout); True if they did."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._drain_subscriptions(0)
            left_ms = int((deadline - time.monotonic()) * 1000)
            if self.subscriptions >= count or left_ms <= 0:
                return self.subscriptions >= count
            self._drain_subscriptions(min(left_ms, 50))

    def publish(self, topic: bytes, body: dict[str, Any]) -> None:
        self._drain_subscriptions(0)
        self.sock.send_multipart([topic, orjson.dumps(body)])

    def close(self) -> None:
        self.sock.close(linger=0)


class Subscriber:
    def __init__(self, ctx: zmq.Context, connect: str, topic: bytes):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        # Started before its publisher binds, a SUB retries the connection every
        # RECONNECT_IVL (100 ms by default): the whole of a fresh chain's first scan.
        self.sock.setsockopt(zmq.RECONNECT_IVL, 10)
        self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(connect)

    def receive(self, timeout_ms: int) -> dict[str, Any] | None:
        """The next message's body, or None when nothing came within ``timeout_ms``."""
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart()
        try:
            message = orjson.loads(frames[-1])
        except orjson.JSONDecodeError:
            return None  # not ours; the Redis stream still has every real message
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        self.sock.close(linger=0)

"""The notifier: records each fill once (Redis list ``P:notifications`` and a line on stdout).

Fills come from the trader's PUB and, for any the PUB dropped (the notifier was down or not
yet connected), from the ``P:fills`` stream through the consumer group ``notifiers``. A fill
is recorded only if its order id was never recorded before, checked and appended in one Lua
script, so a re-published or re-delivered fill is not notified twice.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

import redis
import zmq

from examples.scanpulse.bus import FILL, Subscriber
from examples.scanpulse.config import ScanPulseConfig
from examples.scanpulse.store import NOTIFIERS_GROUP, Store, now_iso

__all__ = ["Notifier", "notification_line"]

Emit = Callable[[dict[str, Any]], None]


def notification_line(n: dict[str, Any]) -> str:
    return (
        f"[scanpulse] FILLED {n['action']} {n['quantity']:g} {n['symbol']} @ {n['price']} "
        f"(commission {n['commission']}, as of {n['as_of']}) order {n['order_id']} "
        f"for opportunity {n['opportunity_id']}"
    )


class Notifier:
    def __init__(
        self,
        config: ScanPulseConfig,
        *,
        emit: Emit | None = None,
        out: TextIO | None = sys.stdout,
        context: zmq.Context | None = None,
    ):
        """``out``: where each new notification's line goes (None: nowhere, e.g. when a
        caller renders the ``notified`` events itself)."""
        self.config = config
        self.emit = emit or (lambda event: None)
        self.out = out
        self.ctx = context or zmq.Context.instance()
        self.store = Store(config)
        self.consumer = "notifier"
        self.subscriber: Subscriber | None = None
        self.stats: Counter[str] = Counter()

    def __enter__(self) -> Notifier:
        self.store.ensure_group(self.store.k_fills, NOTIFIERS_GROUP)
        self.subscriber = Subscriber(self.ctx, self.config.fills_pub, FILL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.subscriber is not None:
            self.subscriber.close()
        self.store.close()

    def run(self, stop: threading.Event) -> None:
        with self:
            assert self.subscriber is not None
            self.reconcile()
            last = time.monotonic()
            while not stop.is_set():
                fill = self.subscriber.receive(100)
                if fill is not None and isinstance(fill.get("order_id"), str):
                    self.stats["received_pub"] += 1
                    self.on_fill(fill, via="pub")
                if time.monotonic() - last >= self.config.reconcile_interval_s:
                    self.reconcile()
                    last = time.monotonic()

    def reconcile(self) -> None:
        try:
            for pending in (True, False):
                for stream_id, fill in self.store.read_group(
                    self.store.k_fills, NOTIFIERS_GROUP, self.consumer, pending=pending
                ):
                    self.stats["received_stream"] += 1
                    self.on_fill(fill, via="stream", stream_id=stream_id)
        except redis.RedisError as exc:
            self.emit({"hop": "error", "where": "notifier", "error": f"redis: {exc}"})

    def on_fill(self, fill: dict[str, Any], via: str, stream_id: str | None = None) -> bool:
        """Record the fill unless its order was notified already; True if recorded now."""
        notification = fill | {"notified_at": now_iso(), "via": via}
        try:
            added = self.store.record_notification(notification)
            if stream_id is not None:
                self.store.ack(self.store.k_fills, NOTIFIERS_GROUP, stream_id)
        except redis.RedisError as exc:
            self.emit({"hop": "error", "where": "notifier", "error": f"redis: {exc}"})
            return False
        if not added:
            self.stats["duplicates"] += 1
            return False
        self.stats["notified"] += 1
        if self.out is not None:
            print(notification_line(notification), file=self.out, flush=True)
        self.emit({"hop": "notified", **notification})
        return True

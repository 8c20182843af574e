"""The whole chain in one process: notifier, trader and scanner, one thread each.

Each thread makes its own sockets (ZeroMQ sockets are not thread-safe) and its own clients;
they share only the ZeroMQ context and the Redis server. Started subscribers first: the
trader waits (briefly) for the notifier's subscription and the scanner for the trader's, so
a fresh chain does not lose its first messages to PUB/SUB's slow-joiner window. With
``cycles`` the pipeline stops once the scanner ran them and Redis shows nothing pending
(every opportunity final, every fill notified).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from examples.scanpulse.config import ScanPulseConfig
from examples.scanpulse.notifier import Notifier
from examples.scanpulse.scanner import Scanner
from examples.scanpulse.store import Store
from examples.scanpulse.trader import Hook, Trader

__all__ = ["Pipeline", "start_thread"]

Emit = Callable[[dict[str, Any]], None]

# The parts started together here will subscribe: the publishers wait for that (the wait ends
# as soon as the subscription arrives), bounded only so that a broken part cannot hang the
# start. A loaded machine can take seconds to get a thread's SUB connected, and a message
# published before that is lost to the fast path (the stream still brings it).
SUBSCRIBER_WAIT_S = 30.0


def start_thread(
    name: str, target: Callable[..., Any], errors: list[tuple[str, BaseException]], *args: Any
) -> threading.Thread:
    """A daemon thread whose exception is kept in ``errors`` instead of being lost."""

    def body() -> None:
        try:
            target(*args)
        except BaseException as exc:  # reported to the caller, who decides
            errors.append((name, exc))

    thread = threading.Thread(target=body, name=f"scanpulse-{name}", daemon=True)
    thread.start()
    return thread


class Pipeline:
    def __init__(
        self,
        config: ScanPulseConfig,
        *,
        emit: Emit | None = None,
        hook: Hook | None = None,
        notifier_out: TextIO | None = sys.stdout,
        stop: threading.Event | None = None,
    ):
        self.config = config
        self.stop = stop or threading.Event()
        self.errors: list[tuple[str, BaseException]] = []
        self.notifier = Notifier(config, emit=emit, out=notifier_out)
        self.trader = Trader(config, emit=emit, hook=hook)
        self.scanner = Scanner(config, emit=emit)
        self.threads: dict[str, threading.Thread] = {}

    def start(self, cycles: int | None = None) -> None:
        errors = self.errors
        self.threads["notifier"] = start_thread("notifier", self.notifier.run, errors, self.stop)
        self.threads["trader"] = start_thread(
            "trader", self.trader.run, errors, self.stop, 1, SUBSCRIBER_WAIT_S
        )
        self.threads["scanner"] = start_thread(
            "scanner", self.scanner.run, errors, self.stop, cycles, 1, SUBSCRIBER_WAIT_S
        )

    def wait_drained(self, timeout_s: float) -> bool:
        """After the scanner's cycles: wait until Redis shows nothing pending; True if so."""
        deadline = time.monotonic() + timeout_s
        self.threads["scanner"].join(max(0.0, deadline - time.monotonic()))
        store = Store(self.config)
        try:
            while time.monotonic() < deadline and not self.stop.is_set():
                if self.errors:
                    return False
                if not self.threads["scanner"].is_alive() and store.backlog() == {
                    "opportunities": 0,
                    "fills": 0,
                }:
                    return True
                time.sleep(0.05)
            return False
        finally:
            store.close()

    def close(self, timeout_s: float = 10.0) -> None:
        self.stop.set()
        for thread in self.threads.values():
            thread.join(timeout_s)

    def run(self, cycles: int | None = None, drain_timeout_s: float = 120.0) -> bool:
        """Run until stopped, or for ``cycles`` and until drained; True if all finished."""
        self.start(cycles)
        try:
            if cycles is None:
                while not self.stop.wait(0.5):
                    if self.errors:
                        return False
                return True
            return self.wait_drained(drain_timeout_s)
        finally:
            self.close()

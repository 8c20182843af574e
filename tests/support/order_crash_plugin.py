"""Fault injection for the kill -9 order tests, loaded into workers with TACORE_PLUGINS.

``TACORE_TEST_ORDER_CRASH`` picks the moment an order placement kills its worker:
``before_commit`` (the transaction holds the order and its fill but has not committed) or
``after_commit`` (committed, reply not sent yet). The first worker to get there creates the
file ``TACORE_TEST_ORDER_CRASH_MARKER`` (O_EXCL, so exactly one wins across processes) and
SIGKILLs itself; every later placement runs normally. Production code is untouched: the
plugin wraps ``PaperBroker.place_order`` and ``Ledger._commit`` in the worker process only.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from tacoreservice.trading.ledger import Ledger
from tacoreservice.trading.paper_broker import PaperBroker

MODE = os.environ.get("TACORE_TEST_ORDER_CRASH", "")
MARKER = os.environ.get("TACORE_TEST_ORDER_CRASH_MARKER", "")

_placing = threading.local()


def _claim_the_crash() -> bool:
    try:
        fd = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()} {MODE}\n".encode())
    os.close(fd)
    return True


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


_original_place = PaperBroker.place_order
_original_commit = Ledger._commit


def _place_order(self: PaperBroker, req: Any, request_id: str | None) -> dict[str, Any]:
    _placing.active = True
    try:
        return _original_place(self, req, request_id)
    finally:
        _placing.active = False


def _commit(self: Ledger) -> None:
    if not getattr(_placing, "active", False):
        _original_commit(self)
        return
    if MODE == "before_commit" and _claim_the_crash():
        _die()
    _original_commit(self)
    if MODE == "after_commit" and _claim_the_crash():
        _die()


if MODE in ("before_commit", "after_commit") and MARKER:
    PaperBroker.place_order = _place_order  # type: ignore[method-assign]
    Ledger._commit = _commit  # type: ignore[method-assign]

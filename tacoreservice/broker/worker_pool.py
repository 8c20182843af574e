"""The broker's view of its workers: who is alive, who is idle, least recently used first."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WorkerRecord", "WorkerPool"]


@dataclass(eq=False)
class WorkerRecord:
    identity: bytes
    worker_id: str
    pid: int | None = None
    host: str = ""
    methods: frozenset[str] = frozenset()
    version: str = ""
    started_at: str = ""
    registered_at: float = field(default_factory=time.time)
    expiry: float = 0.0
    last_heartbeat: float = field(default_factory=time.time)
    state: str = "idle"  # idle | busy | draining
    current_key: bytes | None = None
    current_method: str | None = None
    current_since: float | None = None
    served: int = 0
    failed: int = 0  # the worker's own failures (INTERNAL, ...)
    client_errors: int = 0  # replies to a client's mistake (INVALID_PARAMS, ...)
    stats: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # its CURVE public key (Z85) when security is on

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "pid": self.pid,
            "host": self.host,
            "state": self.state,
            "heartbeat_age_s": round(max(0.0, now - self.last_heartbeat), 3),
            "served": self.served,
            "failed": self.failed,
            "client_errors": self.client_errors,
            "current_method": self.current_method,
            "current_age_s": (
                round(now - self.current_since, 3) if self.current_since is not None else None
            ),
            "started_at": self.started_at,
            "cache": self.stats.get("cache"),
            # CPU and memory the worker measured of itself (monitoring/process_stats.py).
            "process": self.stats.get("process"),
        }


class WorkerPool:
    """Workers by identity, with an LRU queue of the idle ones.

    ``idle`` is insertion-ordered: a worker goes to the back when it becomes idle, and
    dispatch takes from the front, so the worker that has waited longest gets the next
    request (spreads load and keeps every worker's caches warm).
    """

    def __init__(self, expiry_s: float):
        self.expiry_s = expiry_s
        self.workers: dict[bytes, WorkerRecord] = {}
        self.idle: OrderedDict[bytes, WorkerRecord] = OrderedDict()
        self._methods: frozenset[str] | None = frozenset()

    def __len__(self) -> int:
        return len(self.workers)

    @property
    def busy_count(self) -> int:
        return sum(1 for w in self.workers.values() if w.state == "busy")

    def known_methods(self) -> frozenset[str]:
        if self._methods is None:
            names: set[str] = set()
            for w in self.workers.values():
                names |= w.methods
            self._methods = frozenset(names)
        return self._methods

    def add(self, record: WorkerRecord, now: float) -> None:
        record.expiry = now + self.expiry_s
        record.last_heartbeat = now
        self.workers[record.identity] = record
        self.idle[record.identity] = record
        record.state = "idle"
        self._methods = None

    def remove(self, identity: bytes) -> WorkerRecord | None:
        record = self.workers.pop(identity, None)
        self.idle.pop(identity, None)
        if record is not None:
            self._methods = None
        return record

    def touch(self, record: WorkerRecord, now: float) -> None:
        record.expiry = now + self.expiry_s
        record.last_heartbeat = now

    def take_idle(self) -> WorkerRecord | None:
        if not self.idle:
            return None
        _, record = self.idle.popitem(last=False)
        return record

    def mark_idle(self, record: WorkerRecord) -> None:
        record.state = "idle"
        record.current_key = None
        record.current_method = None
        record.current_since = None
        self.idle[record.identity] = record

    def mark_draining(self, record: WorkerRecord) -> None:
        record.state = "draining"
        self.idle.pop(record.identity, None)

    def postpone_expiry(self, seconds: float) -> None:
        """Give every worker ``seconds`` more: the broker was not listening for that long."""
        for record in self.workers.values():
            record.expiry += seconds

    def expired(self, now: float) -> list[WorkerRecord]:
        return [w for w in self.workers.values() if w.expiry < now]

    def find(self, worker_id: str) -> WorkerRecord | None:
        for record in self.workers.values():
            if record.worker_id == worker_id:
                return record
        return None

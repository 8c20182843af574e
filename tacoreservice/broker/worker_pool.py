"""The broker's view of its workers: who is alive, what each holds, who is next.

A worker holds the dispatch keys of the requests the broker gave it, oldest first: the first
is running, any after it wait in the worker's socket (the credit, see
:mod:`tacoreservice.protocol.worker_protocol`). Dispatch prefers an idle worker, least
recently used first (spreads load and keeps every worker's caches warm); only when none is
idle may a worker that holds fewer than ``credit`` requests take one more, and then only when
what it holds is known to take little time in all (the broker decides: see broker.py).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

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
    # Dispatch keys held, oldest (running) first, and the method of each.
    assigned: list[bytes] = field(default_factory=list)
    assigned_methods: list[str] = field(default_factory=list)
    current_since: float | None = None  # when the running request started (broker's view)
    served: int = 0
    failed: int = 0  # the worker's own failures (INTERNAL, ...)
    client_errors: int = 0  # replies to a client's mistake (INVALID_PARAMS, ...)
    stats: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # its CURVE public key (Z85) when security is on

    @classmethod
    def from_ready(cls, identity: bytes, info_frame: bytes) -> WorkerRecord:
        """The record of a worker from its READY's info; ValueError when unreadable."""
        try:
            info = orjson.loads(info_frame)
        except orjson.JSONDecodeError:
            raise ValueError("READY info is not JSON") from None
        if not isinstance(info, dict):
            raise ValueError("READY info is not an object")
        return cls(
            identity=identity,
            worker_id=str(info.get("worker_id") or identity.decode(errors="replace")),
            pid=info.get("pid"),
            host=str(info.get("host") or ""),
            methods=frozenset(m for m in info.get("methods", []) if isinstance(m, str)),
            version=str(info.get("version") or ""),
            started_at=str(info.get("started_at") or ""),
        )

    def take_stats(self, frame: bytes) -> None:
        """The figures a HEARTBEAT carries (cache, CPU, memory); an unreadable frame is
        ignored and the last figures kept."""
        try:
            stats = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return
        if isinstance(stats, dict):
            self.stats = stats

    def carry_counters(self, previous: WorkerRecord) -> None:
        """The same worker process registering again (same id and pid) keeps its counts."""
        if (previous.worker_id, previous.pid) == (self.worker_id, self.pid):
            self.served, self.failed = previous.served, previous.failed
            self.client_errors = previous.client_errors

    @property
    def current_key(self) -> bytes | None:
        return self.assigned[0] if self.assigned else None

    @property
    def current_method(self) -> str | None:
        return self.assigned_methods[0] if self.assigned_methods else None

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
            "prefetched": max(0, len(self.assigned) - 1),
            "started_at": self.started_at,
            "cache": self.stats.get("cache"),
            # CPU and memory the worker measured of itself (monitoring/process_stats.py).
            "process": self.stats.get("process"),
        }


class WorkerPool:
    """Workers by identity; the idle ones in LRU order, and those holding fewer requests than
    the credit (candidates for one more) in the order they got their last.

    ``credit`` is how many requests a worker may hold at once (1: only idle workers get work).
    """

    def __init__(self, expiry_s: float, credit: int = 1):
        self.expiry_s = expiry_s
        self.credit = max(1, credit)
        self.workers: dict[bytes, WorkerRecord] = {}
        self.idle: OrderedDict[bytes, WorkerRecord] = OrderedDict()
        self.with_room: OrderedDict[bytes, WorkerRecord] = OrderedDict()
        self.resting: set[bytes] = set()  # idle, but given nothing until they next heartbeat
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
        self.with_room.pop(identity, None)
        self.resting.discard(identity)
        if record is not None:
            self._methods = None
        return record

    def touch(self, record: WorkerRecord, now: float) -> None:
        record.expiry = now + self.expiry_s
        record.last_heartbeat = now

    # ------------------------------------------------------------------ dispatch

    def take_idle(self) -> WorkerRecord | None:
        """The idle worker that has waited longest."""
        if not self.idle:
            return None
        return self.idle.popitem(last=False)[1]

    def take_with_room(self, may_queue_behind: Callable[[list[str]], bool]) -> WorkerRecord | None:
        """A worker with room for one more request whose held requests (their methods, oldest
        first) ``may_queue_behind`` accepts: a new request would wait behind all of them. The
        one that got its last request longest ago first; None when there is none."""
        if self.credit < 2:
            return None
        for identity, record in self.with_room.items():
            if may_queue_behind(record.assigned_methods):
                del self.with_room[identity]
                return record
        return None

    def assign(self, record: WorkerRecord, key: bytes, method: str, now: float) -> None:
        """``record`` (taken with take_idle or take_with_room) now holds ``key``."""
        if not record.assigned:
            record.current_since = now
        record.assigned.append(key)
        record.assigned_methods.append(method)
        record.state = "busy"
        if len(record.assigned) < self.credit:
            self.with_room[record.identity] = record

    def release(self, record: WorkerRecord, key: bytes, now: float) -> bool:
        """``record`` no longer holds ``key`` (answered or declined); False if it did not."""
        try:
            i = record.assigned.index(key)
        except ValueError:
            return False
        del record.assigned[i]
        del record.assigned_methods[i]
        if i == 0:
            record.current_since = now if record.assigned else None
        if (
            record.identity not in self.workers
            or record.identity in self.resting
            or record.state == "draining"
        ):
            if not record.assigned:
                record.state = "idle"
            return True
        if not record.assigned:
            record.state = "idle"
            self.with_room.pop(record.identity, None)
            self.idle[record.identity] = record
        elif len(record.assigned) < self.credit and record.identity not in self.with_room:
            self.with_room[record.identity] = record
        return True

    def rest(self, record: WorkerRecord) -> None:
        """Give ``record`` nothing new until :meth:`wake` (it declined a request: it doubts
        its session, and would decline the next one too)."""
        self.idle.pop(record.identity, None)
        self.with_room.pop(record.identity, None)
        self.resting.add(record.identity)

    def wake(self, record: WorkerRecord) -> None:
        """``record`` heartbeated: a resting worker takes requests again."""
        if record.identity in self.resting:
            self.resting.discard(record.identity)
            if not record.assigned and record.identity in self.workers:
                self.idle[record.identity] = record

    # ------------------------------------------------------------------ liveness

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

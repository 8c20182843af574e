"""The requests the broker has accepted and not answered, and the replies it gave recently.

Contract (what makes "a retry never runs a request twice" true):

- A request with a client-chosen ``request_id`` is in :attr:`PendingTable.inflight` from the
  moment it is accepted until it is answered. A retry with the same id and content *joins* it
  (its envelope is added; one run answers every copy); the same id with other content is a
  conflict.
- Once answered, the reply stays in :class:`ReplyCache` for ``reply_cache_ttl_s`` (within
  ``reply_cache_max_bytes``): a late retry with the same content (compared by a digest of
  method and params) is answered from there, byte for byte, and not run again.
- A request handed to a worker is in :attr:`PendingTable.dispatched` under its dispatch key
  until the worker's REPLY (or the worker's loss) takes it out. A key names one dispatch
  only; a reply with an unknown key is stale and dropped.

:class:`WaitQueue` holds what waits for a worker, oldest first, and knows whether any of it
has a deadline, so the broker's loop sweeps for expired requests only when one could be.

Nothing here sends: the routing core (broker.py) asks and acts on the answer.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from tacoreservice.broker.worker_pool import WorkerRecord
from tacoreservice.protocol.messages import ClientRequest

__all__ = ["CONFLICT", "JOINED", "Pending", "PendingTable", "ReplyCache", "WaitQueue"]


class Pending:
    """A request the broker has accepted and not yet answered."""

    __slots__ = (
        "key",
        "req",
        "envelopes",
        "raw",
        "received",
        "deadline",
        "attempts",
        "worker",
        "dispatched_at",
        "payload",
        "job_id",
    )

    def __init__(
        self,
        key: bytes,
        req: ClientRequest,
        envelope: list[bytes] | None,
        raw: bytes,
        now: float,
        payload: bytes,
        job_id: str | None = None,
    ):
        self.key = key
        self.req = req
        self.payload = payload  # the worker's REQUEST frame (protocol.worker_protocol)
        self.job_id = job_id
        self.envelopes = [envelope] if envelope else []
        self.raw = raw
        self.received = now
        self.deadline = now + req.timeout_ms / 1000.0 if req.timeout_ms else None
        self.attempts = 0
        self.worker: WorkerRecord | None = None
        self.dispatched_at = 0.0


def _same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # Params nest up to the parser's 1,024 levels, deeper than Python's comparison recursion
    # goes: such a pair counts as different rather than raising in the broker's loop.
    try:
        return a == b
    except RecursionError:
        return False


def request_digest(method: str, params: dict[str, Any]) -> bytes:
    """What identifies a request's content for a retry: method and params, key order aside.
    The reply cache keeps this (16 bytes) instead of the params, which may be large."""
    try:
        canonical = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, RecursionError):
        # Deeper than the encoder goes (the parser allows 1,024 levels): such content is
        # never taken for the same as anything, so a retry of it is refused, not mistaken.
        canonical = os.urandom(16)
    return hashlib.blake2b(canonical, digest_size=16, key=method.encode()[:64]).digest()


# Bytes an entry costs besides its reply (the tuple, the digest, the key's string, the dict's
# slot): an estimate, so that a flood of tiny replies is bounded too.
_ENTRY_OVERHEAD = 200


class ReplyCache:
    """Replies by request_id for ``ttl_s`` seconds, so late retries are answered, not re-run.

    Bounded by count and by bytes (the oldest go first); each entry keeps the reply and a
    digest of the request, never the request's params."""

    def __init__(self, ttl_s: float, max_entries: int, max_bytes: int = 64 * 1024 * 1024):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evicted = 0  # entries dropped for room before their TTL
        self._entries: OrderedDict[str, tuple[float, bytes, bytes]] = OrderedDict()

    def get(self, request_id: str, now: float) -> tuple[bytes, bytes] | None:
        """(reply, request digest) of a live entry."""
        entry = self._entries.get(request_id)
        if entry is None:
            return None
        if entry[0] < now:
            self._drop(request_id)
            return None
        return entry[1], entry[2]

    def put(self, request_id: str, body: bytes, digest: bytes, now: float) -> None:
        if self.ttl_s <= 0 or self.max_entries <= 0:
            return
        size = len(body) + len(request_id) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return  # larger than the whole cache: a retry of it runs again or joins
        entries = self._entries
        if request_id in entries:
            self._drop(request_id)
        entries[request_id] = (now + self.ttl_s, body, digest)
        self.bytes += size
        while len(entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(entries)))
            self.evicted += 1

    def purge(self, now: float) -> None:
        # Insertion order is expiry order (one TTL), so expired entries are at the front.
        entries = self._entries
        while entries:
            request_id, first = next(iter(entries.items()))
            if first[0] >= now:
                break
            self._drop(request_id)

    def _drop(self, request_id: str) -> None:
        _, body, _ = self._entries.pop(request_id)
        self.bytes -= len(body) + len(request_id) + _ENTRY_OVERHEAD

    def __len__(self) -> int:
        return len(self._entries)


# What PendingTable.retry answers besides "new" (None) and a cached reply (bytes).
JOINED = "joined"
CONFLICT = "conflict"


class PendingTable:
    """Accepted requests by client request_id and by dispatch key, plus the reply cache."""

    def __init__(
        self,
        reply_cache_ttl_s: float,
        reply_cache_max_entries: int,
        reply_cache_max_bytes: int = 64 * 1024 * 1024,
    ):
        self.inflight: dict[str, Pending] = {}  # client request_id -> pending (queued or running)
        self.dispatched: dict[bytes, Pending] = {}  # dispatch key -> pending on a worker
        self.replies = ReplyCache(reply_cache_ttl_s, reply_cache_max_entries, reply_cache_max_bytes)
        self._seq = 0

    def new(
        self,
        req: ClientRequest,
        envelope: list[bytes] | None,
        raw: bytes,
        now: float,
        payload: bytes,
        job_id: str | None = None,
    ) -> Pending:
        """A pending request with a fresh dispatch key (not yet accepted: see accept)."""
        self._seq += 1
        return Pending(self._seq.to_bytes(8, "big"), req, envelope, raw, now, payload, job_id)

    def retry(self, req: ClientRequest, envelope: list[bytes], now: float) -> str | bytes | None:
        """For a request with a client-chosen id: JOINED (its envelope now waits on the run in
        flight), the cached reply (bytes), CONFLICT (the id belongs to other content), or None
        (not seen: a new request)."""
        pending = self.inflight.get(req.request_id)
        if pending is not None:
            if pending.req.method != req.method or not _same_params(pending.req.params, req.params):
                return CONFLICT
            pending.envelopes.append(envelope)
            return JOINED
        cached = self.replies.get(req.request_id, now)
        if cached is None:
            return None
        reply, digest = cached
        if digest != request_digest(req.method, req.params):
            return CONFLICT
        return reply

    def accept(self, pending: Pending) -> None:
        if pending.req.client_request_id:
            self.inflight[pending.req.request_id] = pending

    def remember(self, req: ClientRequest, reply: bytes, now: float) -> None:
        """Keep ``reply`` for retries of ``req`` (a request answered without a Pending)."""
        self.replies.put(req.request_id, reply, request_digest(req.method, req.params), now)

    def settle(self, pending: Pending, reply: bytes, now: float) -> None:
        """``pending`` is answered with ``reply``: retries from now on get the cached reply."""
        req = pending.req
        if req.client_request_id:
            self.inflight.pop(req.request_id, None)
            self.replies.put(req.request_id, reply, request_digest(req.method, req.params), now)

    def dispatch(self, pending: Pending, worker: WorkerRecord, now: float) -> None:
        pending.attempts += 1
        pending.worker = worker
        pending.dispatched_at = now
        self.dispatched[pending.key] = pending

    def past_hard_limit(
        self, hard: Callable[[str, bool], float], now: float
    ) -> list[tuple[WorkerRecord, Pending, float, float]]:
        """``(worker, pending, seconds run, limit)`` of each running request (the first its
        worker holds) that has run ``hard(method, is_job)`` seconds or more."""
        out = []
        for pending in self.dispatched.values():
            record = pending.worker
            if record is None or record.current_since is None or record.current_key != pending.key:
                continue
            limit = hard(pending.req.method, pending.job_id is not None)
            ran = now - record.current_since
            if ran >= limit:
                out.append((record, pending, ran, limit))
        return out

    def undispatch(self, pending: Pending) -> None:
        """Back to waiting (its worker was lost or declined it)."""
        self.dispatched.pop(pending.key, None)
        pending.worker = None
        pending.dispatched_at = 0.0


class WaitQueue:
    """Requests waiting for a worker, oldest first."""

    def __init__(self) -> None:
        self._items: deque[Pending] = deque()
        self.with_deadline = 0  # queued requests that have a timeout_ms

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[Pending]:
        return iter(self._items)

    def push(self, pending: Pending, front: bool = False) -> None:
        if front:
            self._items.appendleft(pending)
        else:
            self._items.append(pending)
        if pending.deadline is not None:
            self.with_deadline += 1

    def pop(self) -> Pending:
        pending = self._items.popleft()
        if pending.deadline is not None:
            self.with_deadline -= 1
        return pending

    def expired(self, now: float) -> list[Pending]:
        """Take out and return the requests whose deadline has passed."""
        if not any(p.deadline is not None and p.deadline <= now for p in self._items):
            return []
        keep: deque[Pending] = deque()
        gone = []
        for pending in self._items:
            if pending.deadline is not None and pending.deadline <= now:
                gone.append(pending)
            else:
                keep.append(pending)
        self._items = keep
        self.with_deadline = sum(1 for p in keep if p.deadline is not None)
        return gone

    def remove(self, keep_if: Any) -> None:
        """Drop the requests for which ``keep_if(pending)`` is false."""
        self._items = deque(p for p in self._items if keep_if(p))
        self.with_deadline = sum(1 for p in self._items if p.deadline is not None)

    def clear(self) -> list[Pending]:
        items = list(self._items)
        self._items.clear()
        self.with_deadline = 0
        return items

"""What the broker counts and keeps about the requests it answers and the workers it loses.

:meth:`Telemetry.finished` is the one hook for a finished request, in the manner of a dramatiq
middleware's ``after_process_message``: the routing core calls it exactly once per reply it
sends (a worker's answer, or one the broker made itself), *before* the reply leaves, and it
feeds everything that watches requests:

- the request counters (:class:`~tacoreservice.broker.counters.RequestCounters`, which add
  up), the other counters (``stats``) and the per-method totals (:class:`MethodStats`) of health.check;
- the sliding window of the dashboard (:class:`~tacoreservice.monitoring.window.RequestWindow`);
- the Prometheus totals (:class:`~tacoreservice.monitoring.metrics.BrokerMetrics`);
- the request log: one record per request packed for the spool of the request-log process
  (:mod:`tacoreservice.storage.request_log_process`); :meth:`Telemetry.hand_off` appends the
  records held with one ``write(2)``, and the routing core calls it before the replies leave.
  Decoding, redaction, truncation and SQLite happen in that process, off this thread's GIL.

It also keeps the workers that left (for the dashboard, and so cache totals never go
backwards). Everything here runs on the broker thread and costs a few dictionary operations
per request; nothing here sends or blocks.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tacoreservice.broker.counters import RequestCounters
from tacoreservice.broker.pending import Pending
from tacoreservice.broker.worker_pool import WorkerRecord
from tacoreservice.monitoring.metrics import BrokerMetrics
from tacoreservice.monitoring.window import RequestWindow
from tacoreservice.protocol.messages import utc_timestamp
from tacoreservice.storage.request_log_process import RequestLogProcess
from tacoreservice.storage.request_spool import encode_record

__all__ = ["MethodStats", "Telemetry"]

# Unknown method names must not grow the per-method table forever.
_MAX_METHODS = 512


@dataclass(slots=True)
class MethodStats:
    """Totals of one method since the broker started."""

    count: int = 0
    errors: int = 0
    total_ms: float = 0.0  # processing time, as the workers measured it

    def row(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "avg_ms": round(self.total_ms / self.count, 3) if self.count else None,
        }


class Telemetry:
    def __init__(self, window_s: float, request_log: RequestLogProcess | None):
        self.counters = RequestCounters()  # client requests, kept so that they add up
        self.stats: dict[str, Any] = {
            "redispatched": 0,
            "declined": 0,
            "workers_registered": 0,
            "workers_evicted": 0,
            "worker_restarts": 0,
            "replies_dropped": 0,
            "stale_replies": 0,
            "stalls": 0,
            "time_limits_hit": 0,
        }
        self.methods: dict[str, MethodStats] = {}
        self.window = RequestWindow(window_s)
        self.metrics = BrokerMetrics()
        self.request_log = request_log
        # Workers that left stay listed for a while, so an operator sees what died and when.
        self.departed: deque[dict[str, Any]] = deque(maxlen=64)
        self.departed_cache = [0, 0]  # hits, misses reported by workers that are gone

    # ------------------------------------------------------------------ per request

    def arrived(self) -> None:
        self.counters.arrived()

    def retried(self, method: str, joined: bool) -> None:
        """A retry answered without a run: joined to the run in flight, or from the cache."""
        if joined:
            self.counters.retries_joined += 1
        else:
            self.counters.retries_from_cache += 1
        self.metrics.retry(method)

    def finished(
        self,
        request_id: str | None,
        method: str | None,
        worker_id: str,
        raw: bytes,
        reply: bytes,
        ok: bool,
        error_code: str | None,
        processing_ms: float,
        latency_ms: float,
        wait_ms: float = 0.0,
        client: str | None = None,
        job: bool = False,
    ) -> None:
        """The hook: one finished request (see the module docstring)."""
        name = method or ""
        # Bounded labels: a name nobody serves, or no name at all, is not a new series.
        if error_code == "METHOD_NOT_FOUND":
            name = "<unknown>"
        elif not name:
            name = "<invalid>"
        self.metrics.observe(name, ok, latency_ms / 1000.0, error_code, job)
        if not job:
            # A job's minutes are its own figures (tacore_job_duration_seconds, /api/jobs),
            # not the interactive latency an operator watches.
            self.window.record(time.time(), name, latency_ms, ok)
        self.counters.answered(ok, error_code, job)
        entry = self.methods.get(name)
        if entry is None:
            if len(self.methods) >= _MAX_METHODS:
                name = "<other>"
            entry = self.methods.get(name)
            if entry is None:
                entry = self.methods[name] = MethodStats()
        entry.count += 1
        if not ok:
            entry.errors += 1
        entry.total_ms += processing_ms
        if self.request_log is not None:
            self.request_log.append(
                encode_record(
                    time.time(),
                    request_id,
                    method,
                    worker_id,
                    raw,
                    reply,
                    ok,
                    error_code,
                    processing_ms,
                    wait_ms,
                    client,
                )
            )

    def finished_pending(
        self,
        pending: Pending,
        reply: bytes,
        ok: bool,
        error_code: str | None,
        worker_id: str,
        processing_ms: float,
    ) -> None:
        """The hook for an accepted request (its latency and queue wait from its times)."""
        req = pending.req
        received = pending.received
        self.finished(
            req.request_id,
            req.method,
            worker_id,
            pending.raw,
            reply,
            ok,
            error_code,
            processing_ms,
            (time.monotonic() - received) * 1000.0,
            (pending.dispatched_at - received) * 1000.0 if pending.dispatched_at else 0.0,
            req.client,
            pending.job_id is not None,
        )

    def hand_off(self) -> None:
        """Write the request-log records of the requests finished since the last call to the
        spool (one ``write(2)``); called before their replies are sent."""
        if self.request_log is not None:
            self.request_log.flush()

    def method_table(self) -> dict[str, dict[str, Any]]:
        return {name: s.row() for name, s in sorted(self.methods.items())}

    # ------------------------------------------------------------------ workers that left

    def departed_worker(self, row: dict[str, Any], record: WorkerRecord, reason: str) -> None:
        """``record`` left for ``reason``; ``row``: the worker as the dashboard last showed it."""
        cache = record.stats.get("cache") or {}
        # Its cache counters leave with it; keep them so the totals never go backwards.
        self.departed_cache[0] += int(cache.get("hits") or 0)
        self.departed_cache[1] += int(cache.get("misses") or 0)
        row.update(
            state="dead",
            current_request_id=None,
            current_method=None,
            current_age_s=None,
            ended_at=utc_timestamp(),
            end_reason=reason,
            _ended=time.time(),
        )
        self.departed.append(row)

    def returned_worker(self, record: WorkerRecord) -> None:
        """A worker given up for dead (missed heartbeats) came back: it is not dead, its
        cache counters, still counting in the same process, must not be counted twice, and
        its served and failed counts carry on from where they were."""
        back = [
            row
            for row in self.departed
            if row["worker_id"] == record.worker_id and row["pid"] == record.pid
        ]
        for row in back:
            self.departed.remove(row)
            record.served += int(row.get("served") or 0)
            record.failed += int(row.get("failed") or 0)
            record.client_errors += int(row.get("client_errors") or 0)
            cache = row.get("cache") or {}
            self.departed_cache[0] -= int(cache.get("hits") or 0)
            self.departed_cache[1] -= int(cache.get("misses") or 0)

    def recent_departed(self, horizon_s: float = 600.0) -> list[dict[str, Any]]:
        """Workers that left within ``horizon_s`` seconds, as the dashboard lists them."""
        since = time.time() - horizon_s
        return [
            {k: v for k, v in row.items() if k != "_ended"}
            for row in self.departed
            if row["_ended"] >= since
        ]

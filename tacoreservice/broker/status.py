"""Read-only views of a running broker: the ``health.check`` answer and the monitoring API's
snapshot and time series.

Each view is a function of a :class:`BrokerView` (the parts a broker is made of, read and
never changed), so the same figures can be built wherever those parts are: today on the
broker thread, answering health.check and the monitoring API's inproc queries.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Protocol

import orjson

from tacoreservice import __version__
from tacoreservice.broker.job_lane import JobLane
from tacoreservice.broker.pending import PendingTable, WaitQueue
from tacoreservice.broker.telemetry import Telemetry
from tacoreservice.broker.worker_pool import WorkerPool, WorkerRecord
from tacoreservice.config import BrokerSettings
from tacoreservice.monitoring.bridge import QUERIES
from tacoreservice.monitoring.process_stats import ProcessSampler
from tacoreservice.protocol.messages import utc_timestamp
from tacoreservice.security.curve import RefusalLog
from tacoreservice.security.guard import RequestGuard
from tacoreservice.service.time_limits import TimeLimits
from tacoreservice.storage.disk_reserve import DiskReserve
from tacoreservice.storage.file_watch import DatabaseWatch

log = logging.getLogger("tacoreservice.broker")

__all__ = ["BrokerView", "describe_worker", "health", "monitor_answer", "snapshot", "timeseries"]


class BrokerView(Protocol):
    cfg: BrokerSettings
    pool: WorkerPool
    table: PendingTable
    queue: WaitQueue
    jobs: JobLane
    telemetry: Telemetry
    guard: RequestGuard
    refusals: RefusalLog
    process_sampler: ProcessSampler
    hostname: str
    started_mono: float
    started_text: str
    draining: bool
    time_limits: TimeLimits
    storage: DatabaseWatch | None
    reserve: DiskReserve | None


def health(b: BrokerView, detailed: bool = False, answering: bool = False) -> dict[str, Any]:
    """The ``health.check`` answer (before the compat fields); ``answering``: for a
    health.check request, which is itself in progress while it is answered."""
    now = time.monotonic()
    alive = len(b.pool)
    stuck = sum(1 for w in b.pool.workers.values() if is_stuck(b, w, now))
    storage_problem = b.storage.problem() if b.storage is not None else None
    stats = b.telemetry.stats
    cache_hits, cache_misses = b.telemetry.departed_cache
    for record in b.pool.workers.values():
        cache = record.stats.get("cache") or {}
        cache_hits += int(cache.get("hits") or 0)
        cache_misses += int(cache.get("misses") or 0)
    data: dict[str, Any] = {
        # Degraded when no worker could take a request soon (none alive, or every one stuck
        # in a request past its soft time limit), or the database cannot keep what it is told.
        "status": "healthy" if alive - stuck >= 1 and storage_problem is None else "degraded",
        "service": "tacoreservice",
        "version": __version__,
        "host": b.hostname,
        "uptime_s": round(now - b.started_mono, 3),
        "started_at": b.started_text,
        "draining": b.draining,
        "workers": {
            "alive": alive,
            "busy": b.pool.busy_count,
            "idle": len(b.pool.idle),
            "stuck": stuck,
        },
        "queue_depth": len(b.queue),
        "in_flight": len(b.table.dispatched),
        "max_queue_size": b.cfg.max_queue_size,
        # total = success + error + retries + in_progress (broker/counters.py)
        "requests": b.telemetry.counters.snapshot(_requests_in_progress(b) + int(answering))
        | {"redispatched": stats["redispatched"]},
        "cache": {
            "hits": cache_hits,
            "misses": cache_misses,
            "hit_rate": round(cache_hits / (cache_hits + cache_misses), 4)
            if cache_hits + cache_misses
            else None,
        },
        "worker_events": {
            "registered": stats["workers_registered"],
            "evicted": stats["workers_evicted"],
            "restarts": stats["worker_restarts"],
            "broker_stalls": stats["stalls"],
            "time_limits_hit": stats["time_limits_hit"],
        },
        "storage": {
            "ok": storage_problem is None,
            "problem": storage_problem,
            # kept False while enabled: the disk filled up and orders live on the reserve
            "reserve": b.reserve.state() if b.reserve is not None else None,
        },
        # The broker process's own CPU and memory; each worker's are in worker_list.
        "process": b.process_sampler.sample(),
    }
    if detailed:
        data["worker_list"] = [
            w.describe(now) | {"stuck": is_stuck(b, w, now)} for w in b.pool.workers.values()
        ]
        data["methods"] = b.telemetry.method_table()
        log = b.telemetry.request_log
        data["request_log"] = log.stats() if log is not None else None
        data["security"] = b.guard.stats()
        data["reply_cache_entries"] = len(b.table.replies)
        data["reply_cache_bytes"] = b.table.replies.bytes
    return data


def _requests_in_progress(b: BrokerView) -> int:
    """Client requests queued or running (a job's run is not one)."""
    running = sum(1 for p in b.table.dispatched.values() if p.job_id is None)
    return len(b.queue) + running


def is_stuck(b: BrokerView, record: WorkerRecord, now: float) -> bool:
    """Whether ``record`` runs a request past that method's soft time limit."""
    if not record.assigned or record.current_since is None:
        return False
    pending = b.table.dispatched.get(record.assigned[0])
    if pending is None:
        return False
    soft = b.time_limits.soft(pending.req.method, pending.job_id is not None)
    return now - record.current_since >= soft


def describe_worker(b: BrokerView, record: WorkerRecord, now: float) -> dict[str, Any]:
    """A worker as the dashboard lists it."""
    row = record.describe(now)
    key = record.current_key
    pending = b.table.dispatched.get(key) if key is not None else None
    row["current_request_id"] = pending.req.request_id if pending is not None else None
    row["stuck"] = is_stuck(b, record, now)
    row["job_id"] = pending.job_id if pending is not None else None
    row["registered_at"] = utc_timestamp(record.registered_at)
    row["last_heartbeat_unix"] = round(time.time() - (now - record.last_heartbeat), 3)
    return row


def snapshot(b: BrokerView) -> dict[str, Any]:
    """Everything the monitoring API shows, as of now."""
    now = time.monotonic()
    wall = time.time()
    status = health(b, False)
    dead = b.telemetry.recent_departed()
    live = [describe_worker(b, w, now) for w in b.pool.workers.values()]
    states = Counter(w["state"] for w in live)
    status["workers"] = {
        "alive": len(live),
        "busy": states.get("busy", 0),
        "idle": states.get("idle", 0),
        "draining": states.get("draining", 0),
        "dead": len(dead),
        "stuck": sum(1 for w in live if w.get("stuck")),
    }
    status["jobs"] = {"queued": len(b.jobs.queue), "running": b.jobs.running}
    window = b.telemetry.window
    status["rates"] = window.rates(wall, 60.0, now - b.started_mono)
    # Running now: each worker's first request (one waiting behind it has not started).
    in_progress = Counter(w.current_method for w in b.pool.workers.values() if w.current_method)
    return {
        "status": status,
        "workers": {"alive": len(live), "workers": live + dead},
        "methods": {"window_s": window.window_s, "methods": window.method_table(wall)},
        "point": window.latest_point(wall),
        "in_progress": dict(in_progress),
        "worker_restarts": b.telemetry.stats["worker_restarts"],
        "security_refusals": b.refusals.totals(),
    }


def timeseries(b: BrokerView) -> dict[str, Any]:
    window = b.telemetry.window
    return {"interval_s": 1, "window_s": window.window_s, "points": window.timeseries(time.time())}


def monitor_answer(b: BrokerView, query: bytes) -> bytes | None:
    """The monitoring API's answer to ``query`` (monitoring/bridge.py), as JSON; None for a
    query it does not ask. A bug here answers an error instead of taking the broker down."""
    if query not in QUERIES:
        return None
    try:
        if query == b"timeseries":
            data = timeseries(b)
        elif query == b"metrics":
            metrics = b.telemetry.metrics
            data = {"text": metrics.render().decode(), "json": metrics.as_json()}
        else:
            data = snapshot(b)
        return orjson.dumps(data)
    except Exception:  # noqa: BLE001
        log.exception("monitor query %r failed", query)
        return orjson.dumps({"error": "snapshot failed; see the broker log"})

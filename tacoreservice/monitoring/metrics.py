"""Prometheus metrics of the broker (``/metrics``), in base units with ``_total`` counters.

Two sources, chosen by cost:

- per-request figures (``tacore_requests_total``, ``tacore_request_duration_seconds``) are
  totals the broker thread bumps as each request is answered, exported by a collector at
  scrape time; retries (rare) are a prometheus-client Counter;
- state (workers, queue, in-progress requests, cache, restarts, jobs) is read at scrape time
  from a broker snapshot (see :mod:`tacoreservice.monitoring.bridge`), so the broker loop pays
  nothing for it between scrapes.

Method labels are bounded: a name no worker serves (METHOD_NOT_FOUND) is counted under
``<unknown>`` and a request that never parsed under ``<invalid>``, so a client sending random
method names cannot grow the label set.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tacoreservice import __version__

__all__ = ["BrokerMetrics", "CONTENT_TYPE", "SnapshotCollector"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From a cached health answer (~0.1 ms) to a multi-minute LLM analysis.
_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
_MAX_METHOD_LABELS = 256
WORKER_STATES = ("idle", "busy", "draining", "dead")


class SnapshotCollector(Collector):
    """State metrics computed from a fresh broker snapshot at each scrape."""

    def __init__(self, snapshot: Callable[[], dict[str, Any] | None]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        up = GaugeMetricFamily(
            "tacore_up", "1 while the broker loop answers the monitoring API, else 0"
        )
        up.add_metric([], 1.0 if snap is not None else 0.0)
        yield up
        info = GaugeMetricFamily(
            "tacore_build_info", "Version of the running TACoreService", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info
        if snap is None:
            return
        status = snap["status"]
        workers = GaugeMetricFamily("tacore_workers", "Workers by state", labels=["state"])
        for state in WORKER_STATES:
            workers.add_metric([state], float(status["workers"].get(state, 0)))
        yield workers
        heartbeat = GaugeMetricFamily(
            "tacore_worker_last_heartbeat_timestamp_seconds",
            "Unix time of each live worker's last heartbeat",
            labels=["worker"],
        )
        for w in snap["workers"]["workers"]:
            if w["state"] != "dead" and w.get("last_heartbeat_unix") is not None:
                heartbeat.add_metric([w["worker_id"]], float(w["last_heartbeat_unix"]))
        yield heartbeat
        queue = GaugeMetricFamily("tacore_queue_depth", "Requests waiting for a worker")
        queue.add_metric([], float(status["queue_depth"]))
        yield queue
        capacity = GaugeMetricFamily(
            "tacore_queue_capacity", "max_queue_size: beyond it requests get OVERLOADED"
        )
        capacity.add_metric([], float(status["max_queue_size"]))
        yield capacity
        in_progress = GaugeMetricFamily(
            "tacore_requests_in_progress",
            "Requests running on a worker now",
            labels=["method"],
        )
        for method, n in sorted(snap["in_progress"].items()):
            in_progress.add_metric([method], float(n))
        yield in_progress
        cache = CounterMetricFamily(
            "tacore_cache_requests",
            "Cache lookups by the workers (live and departed)",
            labels=["result"],
        )
        cache.add_metric(["hit"], float(status["cache"]["hits"]))
        cache.add_metric(["miss"], float(status["cache"]["misses"]))
        yield cache
        restarts = CounterMetricFamily(
            "tacore_worker_restarts", "Local worker processes respawned by the supervisor"
        )
        restarts.add_metric([], float(snap["worker_restarts"]))
        yield restarts
        jobs = GaugeMetricFamily("tacore_jobs", "Jobs in the broker by state", labels=["state"])
        jobs.add_metric(["queued"], float(status["jobs"]["queued"]))
        jobs.add_metric(["running"], float(status["jobs"]["running"]))
        yield jobs
        yield from _process_metrics(status.get("process"), snap["workers"]["workers"])
        refused = CounterMetricFamily(
            "tacore_security_refusals",
            "Connections and requests the security layer turned away, by socket and reason "
            "(unknown_key, handshake, revoked_key, denied)",
            labels=["socket", "reason"],
        )
        for key, count in snap.get("security_refusals", {}).items():
            socket_name, _, reason = key.partition(":")
            refused.add_metric([socket_name, reason], float(count))
        yield refused


def _process_metrics(
    broker: dict[str, Any] | None, workers: list[dict[str, Any]]
) -> Iterator[Metric]:
    """CPU and memory of the broker and each live worker, as each measured itself."""
    families = {
        "cpu_percent": GaugeMetricFamily(
            "tacore_process_cpu_percent",
            "CPU used since the previous sample, percent of one core (alert above 80)",
            labels=["role", "process"],
        ),
        "memory_percent": GaugeMetricFamily(
            "tacore_process_memory_percent",
            "Resident memory, percent of the cgroup limit or physical memory (alert above 85)",
            labels=["role", "process"],
        ),
        "rss_bytes": GaugeMetricFamily(
            "tacore_process_resident_memory_bytes",
            "Resident memory of the process",
            labels=["role", "process"],
        ),
    }
    rows = [("broker", "broker", broker)] + [
        ("worker", str(w["worker_id"]), w.get("process"))
        for w in workers
        if w.get("state") != "dead"
    ]
    for role, name, proc in rows:
        if not isinstance(proc, dict):
            continue
        for key, family in families.items():
            value = proc.get(key)
            if isinstance(value, int | float):
                family.add_metric([role, name], float(value))
    yield from families.values()


class _MethodTotals:
    __slots__ = ("ok", "errors", "buckets", "sum", "codes")

    def __init__(self, n_buckets: int):
        self.ok = 0
        self.errors = 0
        self.buckets = [0] * (n_buckets + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.codes: dict[str, int] = {}  # error code -> count (the ErrorCode set: bounded)

    def add(self, ok: bool, seconds: float, code: str | None) -> None:
        if ok:
            self.ok += 1
        else:
            self.errors += 1
            key = code or "UNKNOWN"
            self.codes[key] = self.codes.get(key, 0) + 1
        self.buckets[bisect_left(_BUCKETS, seconds)] += 1
        self.sum += seconds


def _histogram(
    name: str, doc: str, totals: list[tuple[str, _MethodTotals]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["method"])
    for method, t in totals:
        # Cumulative buckets from a copy, so _count always equals the +Inf bucket even if the
        # broker thread records a request during the scrape.
        counts = list(t.buckets)
        running = 0
        cumulative = []
        for bound, n in zip((*_BUCKETS, math.inf), counts, strict=True):
            running += n
            cumulative.append((floatToGoString(bound), float(running)))
        family.add_metric([method], cumulative, t.sum)
    return family


class _RequestCollector(Collector):
    """Exports the broker's per-request totals as prometheus-client metric families."""

    def __init__(self, metrics: BrokerMetrics):
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        totals = list(self._metrics.totals.items())
        requests = CounterMetricFamily(
            "tacore_requests",
            "Requests answered, by method and status",
            labels=["method", "status"],
        )
        errors = CounterMetricFamily(
            "tacore_request_errors",
            "Error replies by method and error code (INVALID_PARAMS is the caller's mistake, "
            "INTERNAL or WORKER_LOST the service's)",
            labels=["method", "code"],
        )
        for method, t in totals:
            requests.add_metric([method, "success"], float(t.ok))
            requests.add_metric([method, "error"], float(t.errors))
            for code, n in list(t.codes.items()):
                errors.add_metric([method, code], float(n))
        yield requests
        yield errors
        yield _histogram(
            "tacore_request_duration_seconds",
            "Time from a request's arrival at the broker to its reply, queue wait included "
            "(jobs are in tacore_job_duration_seconds)",
            totals,
        )
        jobs = list(self._metrics.job_totals.items())
        finished = CounterMetricFamily(
            "tacore_jobs_finished",
            "Jobs that ended, by method and status",
            labels=["method", "status"],
        )
        for method, t in jobs:
            finished.add_metric([method, "success"], float(t.ok))
            finished.add_metric([method, "error"], float(t.errors))
        yield finished
        yield _histogram(
            "tacore_job_duration_seconds",
            "Time from a job's submission to its end, waiting included",
            jobs,
        )


class BrokerMetrics:
    """The broker's metric registry; ``observe`` and ``retry`` run on the broker thread.

    Per-request totals are plain counters bumped by the broker thread (well under a
    microsecond, against about 5 us for a prometheus-client Counter plus Histogram, which take
    a lock each) and exported through a collector at scrape time.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.totals: dict[str, _MethodTotals] = {}
        # Jobs apart: a minutes-long analysis must not move the interactive latency figures.
        self.job_totals: dict[str, _MethodTotals] = {}
        self.registry.register(_RequestCollector(self))
        self.retries = Counter(
            "tacore_request_retries",
            "Client retries (same request_id) joined to a request in flight or answered "
            "from the reply cache",
            ["method"],
            registry=self.registry,
        )
        self._snapshot_collector: SnapshotCollector | None = None

    def attach_snapshot(self, snapshot: Callable[[], dict[str, Any] | None]) -> None:
        if self._snapshot_collector is None:
            self._snapshot_collector = SnapshotCollector(snapshot)
            self.registry.register(self._snapshot_collector)

    def _label(self, method: str) -> str:
        return "<other>" if len(self.totals) >= _MAX_METHOD_LABELS else method

    def observe(
        self, method: str, ok: bool, seconds: float, code: str | None = None, job: bool = False
    ) -> None:
        table = self.job_totals if job else self.totals
        totals = table.get(method)
        if totals is None:
            if len(table) >= _MAX_METHOD_LABELS:
                method = "<other>"
            totals = table.get(method)
            if totals is None:
                totals = table[method] = _MethodTotals(len(_BUCKETS))
        totals.add(ok, seconds, code)

    def retry(self, method: str) -> None:
        self.retries.labels(self._label(method)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def as_json(self) -> dict[str, Any]:
        """The same figures as ``/metrics``, as JSON for ``/api/metrics``."""
        out: dict[str, Any] = {
            "requests_total": [],
            "request_errors_total": [],
            "jobs_finished_total": [],
            "request_duration_seconds": [],
            "request_retries_total": [],
            "requests_in_progress": [],
            "workers": {},
            "worker_last_heartbeat_timestamp_seconds": {},
            "queue_depth": None,
            "queue_capacity": None,
            "cache_requests_total": {},
            "worker_restarts_total": None,
            "jobs": {},
            "up": 0,
        }
        durations: dict[str, dict[str, Any]] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                if name == "tacore_requests_total":
                    out["requests_total"].append({**labels, "value": value})
                elif name == "tacore_request_errors_total":
                    out["request_errors_total"].append({**labels, "value": value})
                elif name == "tacore_jobs_finished_total":
                    out["jobs_finished_total"].append({**labels, "value": value})
                elif name in (
                    "tacore_request_duration_seconds_count",
                    "tacore_request_duration_seconds_sum",
                ):
                    row = durations.setdefault(labels["method"], {"method": labels["method"]})
                    row[name.rsplit("_", 1)[1]] = value
                elif name == "tacore_request_retries_total":
                    out["request_retries_total"].append({**labels, "value": value})
                elif name == "tacore_requests_in_progress":
                    out["requests_in_progress"].append({**labels, "value": value})
                elif name == "tacore_workers":
                    out["workers"][labels["state"]] = value
                elif name == "tacore_worker_last_heartbeat_timestamp_seconds":
                    out["worker_last_heartbeat_timestamp_seconds"][labels["worker"]] = value
                elif name == "tacore_queue_depth":
                    out["queue_depth"] = value
                elif name == "tacore_queue_capacity":
                    out["queue_capacity"] = value
                elif name == "tacore_cache_requests_total":
                    out["cache_requests_total"][labels["result"]] = value
                elif name == "tacore_worker_restarts_total":
                    out["worker_restarts_total"] = value
                elif name == "tacore_jobs":
                    out["jobs"][labels["state"]] = value
                elif name == "tacore_up":
                    out["up"] = value
        out["request_duration_seconds"] = list(durations.values())
        return out

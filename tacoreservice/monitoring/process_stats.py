"""CPU and memory of this process, for /metrics, the dashboard and ``health.check``.

Each process samples itself (the broker in its health answer, each worker in its heartbeat
stats), so a worker on another host reports its own figures and the broker needs no access to
that host's /proc. psutil is not a dependency: on Linux /proc/self/statm and ``os.times()`` give
the same numbers; elsewhere ``rss_bytes`` and ``memory_percent`` are None.

* ``cpu_percent``: CPU time used (user + system, all threads) per wall second since the
  previous sample, in percent of one core (so a process busy on two cores shows 200), as
  ``top`` and psutil count it. The first sample of a process is its average since start.
* ``memory_percent``: resident memory over the memory this process may use: the cgroup v2
  limit (``memory.max``) when one is set, as inside a container with a memory limit,
  otherwise the machine's physical memory.

The documented alert thresholds (CPU above 80 %, memory above 85 %) are alert rules in
deploy/prometheus/alerts.yml on ``tacore_process_cpu_percent`` and
``tacore_process_memory_percent``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ProcessSampler", "memory_limit_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CGROUP_MAX = Path("/sys/fs/cgroup/memory.max")


def memory_limit_bytes() -> int | None:
    """The memory this process may use: a cgroup v2 limit, else physical memory."""
    physical: int | None = None
    try:
        physical = int(os.sysconf("SC_PHYS_PAGES")) * int(_PAGE)
    except (AttributeError, ValueError, OSError):
        physical = None
    try:
        raw = _CGROUP_MAX.read_text().strip()
    except OSError:
        raw = "max"
    if raw.isdigit():
        limit = int(raw)
        return min(limit, physical) if physical else limit
    return physical


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * int(_PAGE)
    except (OSError, IndexError, ValueError):
        return None


def _cpu_seconds() -> float:
    t = os.times()
    return float(t.user + t.system)


class ProcessSampler:
    """Samples this process; a sample younger than ``min_interval_s`` is reused, so callers
    (heartbeats every 250 ms, a health probe per second) never make CPU figures of tiny,
    noisy intervals."""

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self.min_interval_s = min_interval_s
        self._limit = memory_limit_bytes()
        self._lock = threading.Lock()
        self._last_wall = time.monotonic()
        self._last_cpu = _cpu_seconds()
        self._last: dict[str, Any] | None = None

    def sample(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last_wall < self.min_interval_s:
                return self._last
            cpu = _cpu_seconds()
            if self._last is None:
                # First sample: the average since the process started (os.times() counts
                # from there too).
                wall = max(time.time() - _process_start_unix(), 1e-3)
                used = cpu
            else:
                wall = max(now - self._last_wall, 1e-6)
                used = cpu - self._last_cpu
            rss = _rss_bytes()
            self._last_wall, self._last_cpu = now, cpu
            self._last = {
                "pid": os.getpid(),
                "cpu_percent": round(max(used, 0.0) / wall * 100.0, 2),
                "cpu_seconds_total": round(cpu, 3),
                "rss_bytes": rss,
                "memory_limit_bytes": self._limit,
                "memory_percent": (
                    round(rss / self._limit * 100.0, 3) if rss is not None and self._limit else None
                ),
            }
            return self._last


def _process_start_unix() -> float:
    """When this process started (Unix time), from /proc; now when unknown."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()

"""Sliding-window request statistics for the dashboard and ``/methods``.

The broker records every answered request here, on its own thread, so ``record`` must cost
next to nothing and memory must stay bounded at any request rate:

- one point per second (requests, errors, p50, p95) for the charts, closed when the second ends
  and kept for ``window_s`` seconds;
- per method, per-second counts (exact counts and error rates over the window) and the latest
  ``samples_per_method`` latencies (percentiles over the window, or over the newest samples when
  a method is busier than that: at 2,000 req/s the percentiles of one method cover its last
  couple of seconds, which is what an operator wants to see anyway).

Latency here is what the caller sees at the broker: from the request's arrival to its reply,
queue wait included.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

__all__ = ["RequestWindow"]


def _percentiles(values: list[float] | np.ndarray, qs: tuple[float, ...]) -> list[float | None]:
    if len(values) == 0:
        return [None for _ in qs]
    # "inverted_cdf": a latency that was actually observed, not an interpolation between two.
    got = np.percentile(np.asarray(values, dtype=np.float64), qs, method="inverted_cdf")
    return [round(float(v), 3) for v in got]


class _MethodWindow:
    __slots__ = ("seconds", "samples")

    def __init__(self, samples: int):
        self.seconds: deque[list[int]] = deque()  # [second, count, errors]
        self.samples: deque[tuple[int, float]] = deque(maxlen=samples)  # (second, ms)


class RequestWindow:
    def __init__(self, window_s: float = 900.0, samples_per_method: int = 4096):
        self.window_s = int(window_s)
        self.samples_per_method = samples_per_method
        self.points: deque[dict[str, Any]] = deque(maxlen=self.window_s)
        self._methods: dict[str, _MethodWindow] = {}
        self._sec = 0
        self._count = 0
        self._errors = 0
        self._latencies: list[float] = []

    # ------------------------------------------------------------------ hot path

    def record(self, now: float, method: str, latency_ms: float, ok: bool) -> None:
        sec = int(now)
        if sec != self._sec:
            self._roll(sec)
        self._count += 1
        if not ok:
            self._errors += 1
        self._latencies.append(latency_ms)
        mw = self._methods.get(method)
        if mw is None:
            if len(self._methods) >= 512:  # unknown names must not grow this forever
                method = "<other>"
                mw = self._methods.get(method)
            if mw is None:
                mw = self._methods[method] = _MethodWindow(self.samples_per_method)
        seconds = mw.seconds
        if seconds and seconds[-1][0] == sec:
            entry = seconds[-1]
            entry[1] += 1
            if not ok:
                entry[2] += 1
        else:
            seconds.append([sec, 1, 0 if ok else 1])
        mw.samples.append((sec, latency_ms))

    # ------------------------------------------------------------------ seconds

    def _close_current(self) -> None:
        if self._sec == 0:
            return
        p50, p95 = _percentiles(self._latencies, (50, 95))
        self.points.append(
            {
                "t": self._sec,
                "requests": self._count,
                "errors": self._errors,
                "p50_ms": p50,
                "p95_ms": p95,
            }
        )

    def _roll(self, sec: int) -> None:
        self._close_current()
        if self._sec:
            # Quiet seconds are points too: a chart must show the gap, not join across it.
            gap_from = max(self._sec + 1, sec - self.window_s)
            for quiet in range(gap_from, sec):
                self.points.append(
                    {"t": quiet, "requests": 0, "errors": 0, "p50_ms": None, "p95_ms": None}
                )
        self._sec = sec
        self._count = 0
        self._errors = 0
        self._latencies = []

    def advance(self, now: float) -> None:
        """Close finished seconds even when no request arrives (called from the broker loop)."""
        sec = int(now)
        if sec != self._sec:
            self._roll(sec)

    # ------------------------------------------------------------------ reads

    def timeseries(self, now: float) -> list[dict[str, Any]]:
        """Closed seconds of the window, oldest first (the current second is still open)."""
        self.advance(now)
        horizon = int(now) - self.window_s
        return [p for p in self.points if p["t"] >= horizon]

    def latest_point(self, now: float) -> dict[str, Any] | None:
        self.advance(now)
        return dict(self.points[-1]) if self.points else None

    def method_table(self, now: float, window_s: float | None = None) -> list[dict[str, Any]]:
        horizon = int(now) - int(window_s or self.window_s)
        rows: list[dict[str, Any]] = []
        for name, mw in list(self._methods.items()):
            while mw.seconds and mw.seconds[0][0] < horizon:
                mw.seconds.popleft()
            count = sum(e[1] for e in mw.seconds)
            if not count:
                if not mw.samples or mw.samples[-1][0] < horizon:
                    del self._methods[name]  # idle for a whole window: forget it
                continue
            errors = sum(e[2] for e in mw.seconds)
            recent = [ms for s, ms in mw.samples if s >= horizon]
            p50, p95, p99 = _percentiles(recent, (50, 95, 99))
            rows.append(
                {
                    "method": name,
                    "count": count,
                    "errors": errors,
                    "error_rate": round(errors / count, 4),
                    "p50_ms": p50,
                    "p95_ms": p95,
                    "p99_ms": p99,
                }
            )
        rows.sort(key=lambda r: (-r["count"], r["method"]))
        return rows

    def rates(
        self, now: float, window_s: float = 60.0, uptime_s: float | None = None
    ) -> dict[str, Any]:
        """Requests/s, error rate and latency percentiles over the last ``window_s`` seconds."""
        horizon = int(now) - int(window_s)
        count = errors = 0
        latencies: list[float] = []
        for mw in self._methods.values():
            for sec, n, err in mw.seconds:
                if sec >= horizon:
                    count += n
                    errors += err
            latencies.extend(ms for s, ms in mw.samples if s >= horizon)
        span = min(window_s, uptime_s) if uptime_s else window_s
        p50, p95, p99 = _percentiles(latencies, (50, 95, 99))
        return {
            "window_s": window_s,
            "requests_per_s": round(count / span, 3) if span > 0 else None,
            "error_rate": round(errors / count, 4) if count else None,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
        }

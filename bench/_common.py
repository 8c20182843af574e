"""Pieces every benchmark script shares: percentiles, the results table, an uncached context."""

from __future__ import annotations

import time
from typing import Any

Row = dict[str, Any]


def percentile(values: list[float], q: float) -> float:
    """The observed value at rank q% (nearest rank): a latency that happened, not a blend."""
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def print_table(rows: list[Row]) -> None:
    print("| benchmark | case | runs | p50 ms | p95/max ms | note |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['benchmark']} | {r['case']} | {r['runs']} | {r['p50_ms']:.2f} | "
            f"{r['p95_ms']:.2f} | {r['note']} |"
        )


def round_trips(sock: Any, body: bytes, n: int) -> list[float]:
    """``n`` sequential send/receive round trips on a REQ socket, each in microseconds."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        sock.send(body)
        sock.recv()
        samples.append((time.perf_counter() - t0) * 1e6)
    return samples


class NullCache:
    """A cache that never hits, so every call does the whole computation."""

    def __init__(self) -> None:
        self.misses = self.sets = 0

    def get(self, key: str) -> bytes | None:
        self.misses += 1
        return None

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.sets += 1  # offered, never kept

    def delete(self, key: str) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "backend": "none",
            "hits": 0,
            "misses": self.misses,
            "sets": self.sets,
            "errors": 0,
            "size": 0,
        }

    def close(self) -> None:
        return None


def uncached_context() -> Any:
    """A method context with the default settings, the methods loaded and no cache."""
    from tacoreservice.config import Settings
    from tacoreservice.service.registry import MethodContext, load_plugins

    load_plugins()
    return MethodContext(settings=Settings(), cache=NullCache())

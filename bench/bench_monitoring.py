"""What monitoring costs the broker, measured side by side in one run.

    python bench/bench_monitoring.py [--runs 2000]

1. Per-request bookkeeping on the broker thread (sliding window + metric totals), in µs,
   against an empty call, in-process.
2. A running service with 4 workers: p50 round trip of a cached ``get.market_data`` with nobody
   watching, then with a dashboard's event stream open and Prometheus scraping ``/metrics``
   every 100 ms (150x its usual 15 s); the two blocks alternate so drift hits both.
3. Latency of the monitoring routes themselves (``/metrics``, ``/api/status``, a snapshot).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tacoreservice.monitoring.metrics import BrokerMetrics  # noqa: E402
from tacoreservice.monitoring.window import RequestWindow  # noqa: E402
from tests.support.service import ServiceProcesses  # noqa: E402


def per_request_cost(n: int = 200_000) -> dict[str, float]:
    window, metrics = RequestWindow(), BrokerMetrics()
    now = time.time

    def bookkeeping() -> None:
        window.record(now(), "get.market_data", 0.5, True)
        metrics.observe("get.market_data", True, 0.0005)

    def empty() -> None:
        return None

    out: dict[str, list[float]] = {"bookkeeping": [], "empty call": []}
    for _ in range(5):
        for name, fn in (("bookkeeping", bookkeeping), ("empty call", empty)):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            out[name].append((time.perf_counter() - t) / n * 1e6)
    return {k: statistics.median(v) for k, v in out.items()}


def round_trips(svc: ServiceProcesses, runs: int) -> list[float]:
    times = []
    with svc.client() as c:
        for _ in range(runs):
            t = time.perf_counter()
            c.request("get.market_data", {"symbol": "AAPL"})
            times.append((time.perf_counter() - t) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()

    cost = per_request_cost()
    print(
        f"per-request bookkeeping: {cost['bookkeeping']:.2f} µs "
        f"(empty call {cost['empty call']:.2f} µs)"
    )

    svc = ServiceProcesses(Path(tempfile.mkdtemp(prefix="tacore-monbench-")), workers=4)
    svc.start_main()
    try:
        round_trips(svc, 200)  # warm the caches
        quiet: list[float] = []
        watched: list[float] = []
        for _ in range(4):
            quiet += round_trips(svc, args.runs // 4)
            stop = threading.Event()

            def scrape(stop: threading.Event = stop) -> None:
                with httpx.Client(base_url=svc.api_url, timeout=10) as http:
                    while not stop.is_set():
                        http.get("/metrics")
                        stop.wait(0.1)

            def stream(stop: threading.Event = stop) -> None:
                with (
                    httpx.Client(base_url=svc.api_url, timeout=None) as http,
                    http.stream("GET", "/api/events") as r,
                ):
                    for _ in r.iter_lines():
                        if stop.is_set():
                            return

            threads = [threading.Thread(target=scrape), threading.Thread(target=stream)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            watched += round_trips(svc, args.runs // 4)
            stop.set()
            for t in threads:
                t.join(5)
        q, w = statistics.median(quiet), statistics.median(watched)
        print(
            f"get.market_data round trip p50: {q:.3f} ms unwatched, {w:.3f} ms with the "
            f"event stream open and /metrics scraped every 100 ms ({w / q:.2f}x), "
            f"{len(quiet)} + {len(watched)} requests"
        )
        with httpx.Client(base_url=svc.api_url, timeout=10) as http:
            for path in ("/metrics", "/api/status", "/api/workers", "/api/logs?limit=50"):
                times = []
                for _ in range(100):
                    sent = time.perf_counter()
                    http.get(path).raise_for_status()
                    times.append((time.perf_counter() - sent) * 1e3)
                print(f"GET {path}: p50 {statistics.median(times):.2f} ms")
    finally:
        svc.stop()


if __name__ == "__main__":
    main()

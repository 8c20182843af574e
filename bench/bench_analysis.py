"""Analysis benchmarks: one function per benchmark, all run by ``main()``; Markdown output.

    python bench/bench_analysis.py              # every benchmark, 50 warm runs each
    python bench/bench_analysis.py --runs 200   # more warm runs

``bench_scan_market``: ``scan.market`` over the whole bundled universe (market ``all``: every
stock and crypto pair, 59 symbols), called in-process through ``call_method`` (no broker), for
each scan type:

- cold process: a fresh interpreter (subprocess) makes the first call, so the time includes
  reading the CSV files, the indicators and the fundamentals tables (median of 3 processes;
  the import time is reported separately);
- cold caches: in this process, the files already parsed but every evidence/feature cache
  cleared, i.e. the indicator computation alone;
- warm: p50 and p95 of ``--runs`` repeated calls (the target is <= 50 ms).

``bench_analyze_stock``: ``analyze.stock`` with the quant engine (comprehensive, default
research depth) for 10 US symbols, through ``call_method`` with the result cache off, in a
warm process (files parsed): p50/p95 over all calls, per symbol, with the evidence cache warm
and with it cleared before each call (indicators recomputed). Target: p50 <= 50 ms a symbol.

Each benchmark function takes the parsed arguments and returns rows
``{"benchmark", "case", "runs", "p50_ms", "p95_ms", "note"}``; add a function to
``BENCHMARKS`` to add a benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import Row, percentile, print_table, uncached_context  # noqa: E402

_COLD_SCAN = r"""
import json, sys, time
t0 = time.perf_counter()
from tacoreservice.config import Settings
from tacoreservice.service.registry import MethodContext, call_method, load_plugins
load_plugins()
class Cache:
    def get(self, key): return None
    def set(self, key, value, ttl_s): pass
ctx = MethodContext(settings=Settings(), cache=Cache())
t1 = time.perf_counter()
out = call_method("scan.market", {"market": "all", "scan_type": sys.argv[1]}, ctx)
t2 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "call_ms": (t2 - t1) * 1e3,
                  "scanned": out["total_scanned"]}))
"""


def _cold_process(scan_type: str) -> tuple[float, float, int]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", _COLD_SCAN, scan_type],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return float(data["call_ms"]), float(data["import_ms"]), int(data["scanned"])


def bench_scan_market(args: argparse.Namespace) -> list[Row]:
    from tacoreservice.analysis.universe import clear_caches
    from tacoreservice.service.registry import call_method

    ctx = uncached_context()
    rows: list[Row] = []
    for scan_type in ("basic", "technical", "comprehensive"):
        params = {"market": "all", "scan_type": scan_type}
        cold = [_cold_process(scan_type) for _ in range(3)]
        calls = [c[0] for c in cold]
        rows.append(
            {
                "benchmark": "scan.market all",
                "case": f"{scan_type}, cold process",
                "runs": len(cold),
                "p50_ms": statistics.median(calls),
                "p95_ms": max(calls),
                "note": f"{cold[0][2]} symbols; import {statistics.median(c[1] for c in cold):.0f} ms "
                "not included",
            }
        )
        call_method("scan.market", params, ctx)  # files parsed in this process
        recompute = []
        for _ in range(5):
            clear_caches()
            t0 = time.perf_counter()
            call_method("scan.market", params, ctx)
            recompute.append((time.perf_counter() - t0) * 1e3)
        rows.append(
            {
                "benchmark": "scan.market all",
                "case": f"{scan_type}, cold caches",
                "runs": len(recompute),
                "p50_ms": statistics.median(recompute),
                "p95_ms": max(recompute),
                "note": "files parsed, indicators recomputed",
            }
        )
        warm = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            call_method("scan.market", params, ctx)
            warm.append((time.perf_counter() - t0) * 1e3)
        rows.append(
            {
                "benchmark": "scan.market all",
                "case": f"{scan_type}, warm",
                "runs": args.runs,
                "p50_ms": statistics.median(warm),
                "p95_ms": percentile(warm, 95),
                "note": "target p50 <= 50 ms",
            }
        )
    return rows


ANALYSIS_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "KO", "XOM")


def bench_analyze_stock(args: argparse.Namespace) -> list[Row]:
    from tacoreservice.analysis.universe import clear_caches
    from tacoreservice.service.registry import call_method

    ctx = uncached_context()  # its cache never hits: every call runs the whole graph
    for sym in ANALYSIS_SYMBOLS:
        call_method("analyze.stock", {"symbol": sym}, ctx)  # parse files, warm imports
    rows: list[Row] = []
    for case, clear in (("warm", False), ("evidence recomputed", True)):
        times: list[float] = []
        runs = max(1, args.runs // len(ANALYSIS_SYMBOLS)) if clear else args.runs
        for _ in range(runs):
            for sym in ANALYSIS_SYMBOLS:
                if clear:
                    clear_caches()
                t0 = time.perf_counter()
                call_method("analyze.stock", {"symbol": sym}, ctx)
                times.append((time.perf_counter() - t0) * 1e3)
        rows.append(
            {
                "benchmark": "analyze.stock quant",
                "case": f"10 US symbols, {case}",
                "runs": len(times),
                "p50_ms": statistics.median(times),
                "p95_ms": percentile(times, 95),
                "note": "per symbol, result cache off; target p50 <= 50 ms",
            }
        )
    return rows


def bench_job_batch(args: argparse.Namespace) -> list[Row]:
    """50 analyze.stock jobs through the embedded service with 4 workers: wall time.

    Jobs run on at most workers - 1 = 3 workers at once (one stays free for interactive
    calls), so the same 50 analyses sent as plain concurrent requests are measured too.
    """
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tacoreservice.config import MarketDataSettings
    from tacoreservice.market_data import load_provider
    from tests.support.service import ServiceProcesses

    provider = load_provider(MarketDataSettings())
    symbols = [s.symbol for s in provider.symbols() if s.kind in ("stock", "crypto")][:50]
    svc = ServiceProcesses(Path(tempfile.mkdtemp(prefix="tacore-jobs-")), workers=4)
    svc.env["TACORESERVICE_LOG_LEVEL"] = "WARNING"
    svc.env["TACORE_MAX_QUEUE_SIZE"] = "1000"
    svc.start_main()
    rows: list[Row] = []
    try:
        with svc.client(timeout_ms=60_000) as client:
            t0 = time.perf_counter()
            jobs = [
                client.call("job.submit", {"method": "analyze.stock", "params": {"symbol": s}})
                for s in symbols
            ]
            pending = {j["job_id"] for j in jobs}
            failed = 0
            while pending:
                for job_id in list(pending):
                    state = client.call("job.status", {"job_id": job_id})["state"]
                    if state in ("succeeded", "failed", "cancelled"):
                        pending.discard(job_id)
                        failed += state != "succeeded"
                time.sleep(0.02)
            jobs_s = time.perf_counter() - t0
        rows.append(
            {
                "benchmark": "analyze.stock as jobs",
                "case": f"{len(symbols)} symbols, 4 workers",
                "runs": len(symbols),
                "p50_ms": jobs_s * 1e3,
                "p95_ms": jobs_s * 1e3,
                "note": f"wall time for the batch (ms); {failed} failed",
            }
        )
        # Same analyses as concurrent plain requests (second time round: result cache off
        # would need a restart, so as_of makes them distinct from the jobs' answers).
        import asyncio

        from tacoreservice.client import AsyncTACoreClient

        async def direct() -> float:
            async with AsyncTACoreClient(svc.endpoint, timeout_ms=60_000) as c:
                t = time.perf_counter()
                await asyncio.gather(
                    *(
                        c.call("analyze.stock", {"symbol": s, "as_of": "2025-06-30"})
                        for s in symbols
                    )
                )
                return time.perf_counter() - t

        direct_s = asyncio.run(direct())
        rows.append(
            {
                "benchmark": "analyze.stock direct",
                "case": f"{len(symbols)} symbols, 4 workers, concurrent",
                "runs": len(symbols),
                "p50_ms": direct_s * 1e3,
                "p95_ms": direct_s * 1e3,
                "note": "wall time for the batch (ms)",
            }
        )
    finally:
        svc.stop()
    return rows


BENCHMARKS: list[Callable[[argparse.Namespace], list[Row]]] = [
    bench_scan_market,
    bench_analyze_stock,
    bench_job_batch,
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=50, help="warm runs per case (default 50)")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for bench in BENCHMARKS:
        rows.extend(bench(args))
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        "times in milliseconds (cold-process rows: 3 processes, p95 column is the max)\n"
    )
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

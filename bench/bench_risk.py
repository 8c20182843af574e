"""evaluate.risk benchmark: a 20-symbol US portfolio with a proposed trade; Markdown output.

    python bench/bench_risk.py              # 3 cold samples per case, 100 warm runs
    python bench/bench_risk.py --runs 300   # more warm runs

Cases (every call carries cash and a proposed_trade, so the nine pre-trade checks run too):

- in-process, cold process: a fresh interpreter (subprocess) makes the first ``call_method``,
  so the time includes reading 22 CSV files (20 symbols, SPY, the traded ORCL); import time
  reported apart;
- in-process, warm: p50/p95 of ``--runs`` calls in one process (files parsed);
- service, cold worker: the first request to a freshly started embedded service with one
  worker (the worker parses the files), client round trip over loopback ZeroMQ;
- service, warm: p50/p95 of ``--runs`` round trips to that service afterwards.

Nothing portfolio-specific is cached by evaluate.risk, so "warm" only means the bars are in
memory: each warm call recomputes every statistic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import Row, percentile, print_table, uncached_context  # noqa: E402

PORTFOLIO = {
    sym: qty
    for sym, qty in zip(
        ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "KO", "XOM",
         "JNJ", "PG", "WMT", "HD", "UNH", "LLY", "COST", "CVX", "BAC", "DIS"),
        (50, 30, 60, 40, 35, 15, 20, 45, 120, 80, 55, 60, 90, 25, 20, 10, 10, 70, 200, 80),
        strict=True,
    )
}  # fmt: skip
PARAMS: dict[str, Any] = {
    "portfolio": PORTFOLIO,
    "cash": 100_000,
    "proposed_trade": {"symbol": "ORCL", "action": "buy", "quantity": 20},
}

_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from tacoreservice.config import Settings
from tacoreservice.service.registry import MethodContext, call_method, load_plugins
load_plugins()
class Cache:
    def get(self, key): return None
    def set(self, key, value, ttl_s): pass
ctx = MethodContext(settings=Settings(), cache=Cache())
params = json.loads(sys.argv[1])
t1 = time.perf_counter()
out = call_method("evaluate.risk", params, ctx)
t2 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "call_ms": (t2 - t1) * 1e3,
                  "positions": len(out["positions"])}))
"""


def _row(case: str, times: list[float], note: str, p95: bool = True) -> Row:
    return {
        "benchmark": "evaluate.risk 20 US symbols",
        "case": case,
        "runs": len(times),
        "p50_ms": statistics.median(times),
        "p95_ms": percentile(times, 95) if p95 else max(times),
        "note": note,
    }


def bench_in_process(args: argparse.Namespace) -> list[Row]:
    from tacoreservice.service.registry import call_method

    env = dict(os.environ, PYTHONPATH=str(REPO))
    cold = []
    for _ in range(args.cold):
        done = subprocess.run(
            [sys.executable, "-c", _COLD, json.dumps(PARAMS)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=REPO,
        )
        cold.append(json.loads(done.stdout.strip().splitlines()[-1]))

    ctx = uncached_context()
    call_method("evaluate.risk", PARAMS, ctx)  # parse the files
    warm = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        call_method("evaluate.risk", PARAMS, ctx)
        warm.append((time.perf_counter() - t0) * 1e3)
    import_ms = statistics.median(c["import_ms"] for c in cold)
    return [
        _row(
            "in-process, cold process",
            [c["call_ms"] for c in cold],
            f"first call parses the CSV files; import {import_ms:.0f} ms not included",
            p95=False,
        ),
        _row("in-process, warm", warm, "call_method, bars in memory"),
    ]


def bench_service(args: argparse.Namespace) -> list[Row]:
    from tests.support.service import ServiceProcesses

    cold: list[float] = []
    warm: list[float] = []
    for sample in range(args.cold):
        svc = ServiceProcesses(Path(tempfile.mkdtemp(prefix="tacore-risk-")), workers=1)
        svc.env["TACORESERVICE_LOG_LEVEL"] = "WARNING"
        svc.start_main()
        try:
            with svc.client(timeout_ms=60_000) as client:
                t0 = time.perf_counter()
                client.call("evaluate.risk", PARAMS)
                cold.append((time.perf_counter() - t0) * 1e3)
                if sample == 0:
                    for _ in range(args.runs):
                        t0 = time.perf_counter()
                        client.call("evaluate.risk", PARAMS)
                        warm.append((time.perf_counter() - t0) * 1e3)
        finally:
            svc.stop()
    return [
        _row(
            "service, cold worker",
            cold,
            "first request after start (1 worker parses the files), client round trip",
            p95=False,
        ),
        _row("service, warm", warm, "client round trip over loopback ZeroMQ, 1 worker"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=100, help="warm runs per case (default 100)")
    parser.add_argument("--cold", type=int, default=3, help="cold samples per case (default 3)")
    args = parser.parse_args(argv)
    rows = bench_in_process(args) + bench_service(args)
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"times in milliseconds (cold rows: {args.cold} samples, p95 column is the max)\n"
    )
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

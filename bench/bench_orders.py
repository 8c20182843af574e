"""Order benchmarks: ``execute.order`` round trips, in-process and through the service.

    python bench/bench_orders.py              # 300 orders per case
    python bench/bench_orders.py --runs 1000

Every case places market orders for 1 AAPL share, buy and sell alternating (so the risk
limits never refuse one and every order fills: one SQLite write transaction with the order,
the fill, cash and the position). Cases:

- in-process: ``call_method`` against a SQLite file, no broker: the cost of the paper broker
  and the ledger alone. Also a retry of an already placed request_id (the duplicate path, a
  read inside the write transaction) and a resting limit order (no fill).
- service, 1 client: a REQ client -> broker -> one of 4 workers -> SQLite -> back, one order
  at a time; ``get.market_data`` through the same service is the floor (a worker round trip
  without a write).
- service, 8 clients: 8 threads, each with its own client, ordering at once: the workers
  queue on SQLite's single write lock (p50 latency and orders per second overall).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import Row, percentile  # noqa: E402
from tests.support.service import ServiceProcesses  # noqa: E402

START = "2025-06-02"


def row(case: str, times_ms: list[float], note: str = "") -> Row:
    return {
        "case": case,
        "runs": len(times_ms),
        "p50_ms": statistics.median(times_ms),
        "p95_ms": percentile(times_ms, 95),
        "note": note,
    }


def _order(i: int) -> dict[str, Any]:
    action = "buy" if i % 2 == 0 else "sell"
    return {"symbol": "AAPL", "action": action, "quantity": 1, "order_type": "market"}


def bench_in_process(runs: int) -> list[Row]:
    from tacoreservice.config import load_settings
    from tacoreservice.service.registry import MethodContext, call_method, load_plugins
    from tests.support.memory_cache import DictCache

    load_plugins()
    db = Path(tempfile.mkdtemp(prefix="tacore-orders-")) / "orders.db"
    settings = load_settings(
        config_path=REPO / "config" / "config.yaml",
        env={},
        overrides={"database.path": str(db), "trading.paper.allow_reset": True},
    )
    ctx = MethodContext(settings=settings, cache=DictCache())
    call_method("portfolio.reset", {"as_of": START}, ctx)

    def timed(params: dict[str, Any], rid: str) -> tuple[float, dict[str, Any]]:
        ctx.request_id = rid
        t0 = time.perf_counter()
        out = call_method("execute.order", params, ctx)
        return (time.perf_counter() - t0) * 1e3, out

    timed(_order(0), "warm-0")  # parse the AAPL file, open the connection
    timed(_order(1), "warm-1")
    fills, retries, resting = [], [], []
    for i in range(runs):
        ms, out = timed(_order(i), f"fill-{i}")
        assert out["status"] == "filled", out["reasons"]
        fills.append(ms)
        ms, out = timed(_order(i), f"fill-{i}")
        assert out["duplicate"] is True
        retries.append(ms)
        limit = {"symbol": "AAPL", "action": "buy", "quantity": 1, "price": 100.0}
        ms, out = timed(limit, f"rest-{i}")
        assert out["status"] == "open"
        resting.append(ms)
    return [
        row("in-process, market order (fills)", fills, "order + fill + cash + position"),
        row("in-process, retry of a placed request_id", retries, "duplicate: the stored order"),
        row("in-process, limit order (rests)", resting, "order only"),
    ]


def bench_service(runs: int, clients: int) -> list[Row]:
    svc = ServiceProcesses(
        Path(tempfile.mkdtemp(prefix="tacore-orders-svc-")),
        workers=4,
        TACORE_ALLOW_PORTFOLIO_RESET=1,
        TACORESERVICE_LOG_LEVEL="WARNING",
    )
    svc.start_main(wait=False)
    rows: list[Row] = []
    try:
        svc.wait_workers(4, timeout=120)
        with svc.client(timeout_ms=30_000) as c:
            c.call("portfolio.reset", {"as_of": START})
            for i in range(8):  # every worker parses AAPL and opens its connection
                c.call("execute.order", _order(i))
            floor, single = [], []
            for i in range(runs):
                t0 = time.perf_counter()
                c.call("get.market_data", {"symbol": "AAPL"})
                floor.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                out = c.call("execute.order", _order(i), request_id=uuid.uuid4().hex)
                single.append((time.perf_counter() - t0) * 1e3)
                assert out["status"] == "filled", out["reasons"]
        rows.append(row("service, 1 client, market order", single, "4 workers, REQ client"))
        rows.append(row("service, 1 client, get.market_data", floor, "floor: no write"))

        per_client = max(1, runs // clients)
        latencies: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(clients + 1)

        def client_loop(k: int) -> None:
            mine = []
            with svc.client(timeout_ms=30_000) as cc:
                barrier.wait()
                for i in range(per_client):
                    t0 = time.perf_counter()
                    # Each client buys then sells its own share, so holdings never go short.
                    out = cc.call("execute.order", _order(i), request_id=f"c{k}-{i}")
                    mine.append((time.perf_counter() - t0) * 1e3)
                    assert out["status"] == "filled", out["reasons"]
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rate = len(latencies) / wall
        rows.append(
            row(
                f"service, {clients} clients at once, market order",
                latencies,
                f"{rate:.0f} orders/s overall",
            )
        )
    finally:
        svc.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=300, help="orders per case (default 300)")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    rows = bench_in_process(args.runs) + bench_service(args.runs, args.clients)
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        "times in milliseconds\n"
    )
    print("| case | runs | p50 ms | p95 ms | note |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['runs']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['note']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

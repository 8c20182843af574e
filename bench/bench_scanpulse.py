"""ScanPulse chain latency: scan -> Redis -> PUB -> trader -> analyse -> risk -> order -> notify.

    python bench/bench_scanpulse.py              # 20 runs
    python bench/bench_scanpulse.py --runs 50

Starts the embedded service (``python -m tacoreservice.main``, 2 workers, fresh database)
and a redis-server (or uses ``REDIS_URL``), as ``tacore demo pipeline`` does, then runs the
chain ``--runs`` times: each run resets the paper account to 2025-09-02 and runs one scan
of XOM, KO, AAPL, JPM, GE, NVDA (min score 0.3: 5 opportunities, 3 of them bought) under a
fresh Redis key prefix. The clock of each row starts at the scanner's ``scan`` event (the
scan answered and stored) and the times are taken in the process from each component's
events, so they include Redis writes, PUB/SUB and every service round trip:

- per opportunity: published -> received by the trader (queueing behind the ones before it
  included), received -> analysed (``analyze.stock``), analysed -> risk decided
  (``portfolio.get`` + ``evaluate.risk``), risk -> order filled (``execute.order``), filled
  -> notification recorded;
- end to end: scan stored -> last notification of the run.

Medians and p95 over all runs (the nearest-rank values, so each is a latency that happened).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import Row, percentile, print_table  # noqa: E402

AS_OF = "2025-09-02"
SYMBOLS = ("XOM", "KO", "AAPL", "JPM", "GE", "NVDA")


def _row(case: str, values_s: list[float], note: str) -> Row:
    ms = [v * 1000 for v in values_s]
    return {
        "benchmark": "scanpulse chain",
        "case": case,
        "runs": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "note": note,
    }


class EventTimes:
    """When each (hop, symbol) event was emitted, by any of the chain's threads."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> None:
        now = time.perf_counter()
        with self.lock:
            self.seen[(event["hop"], event.get("symbol", ""))] = now


def bench_chain(args: argparse.Namespace) -> list[Row]:
    from examples.scanpulse import Pipeline, ScanPulseConfig
    from tacoreservice import TACoreClient
    from tacoreservice.cli.demo_pipeline import DemoOptions, start_redis, start_service

    samples: dict[str, list[float]] = defaultdict(list)
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="bench-scanpulse-"))
        stack.callback(shutil.rmtree, workdir, True)
        redis_url, _ = start_redis(stack, workdir)
        endpoint, _ = start_service(stack, workdir, DemoOptions(workers=args.workers))
        console = stack.enter_context(TACoreClient(endpoint, timeout_ms=10_000))
        for run in range(args.runs):
            console.call("portfolio.reset", {"as_of": AS_OF})
            config = ScanPulseConfig(
                endpoints=(endpoint,),
                redis_url=redis_url,
                key_prefix=f"bench-{uuid.uuid4().hex[:8]}",
                symbols=SYMBOLS,
                as_of=AS_OF,
                min_score=0.3,
                quantity=10,
                order_prefix=f"b{run}",  # a new order each run, not the first run's again
            ).on_free_loopback_ports()
            recorder = EventTimes()
            assert Pipeline(config, emit=recorder.emit, notifier_out=None).run(1, 60)
            seen = recorder.seen
            t_scan = seen[("scan", "")]
            notified = [t for (hop, _), t in seen.items() if hop == "notified"]
            samples["end to end: scan stored -> last notification"].append(max(notified) - t_scan)
            for (hop, sym), t in seen.items():
                if hop == "received":
                    samples["published -> received by trader"].append(t - t_scan)
                    samples["received -> analysed"].append(seen[("analysed", sym)] - t)
                if hop == "risk":
                    samples["analysed -> risk decided"].append(t - seen[("analysed", sym)])
                if hop == "order":
                    samples["risk approved -> order filled"].append(t - seen[("risk", sym)])
                if hop == "notified":
                    samples["order filled -> notified"].append(t - seen[("order", sym)])
    notes = {
        "published -> received by trader": "includes waiting behind earlier opportunities",
        "received -> analysed": "analyze.stock, quant; repeats come from its result cache",
        "analysed -> risk decided": "portfolio.get + evaluate.risk",
        "risk approved -> order filled": "execute.order, paper broker",
        "order filled -> notified": "Redis transaction, PUB, notifier's Lua script",
        "end to end: scan stored -> last notification": "5 opportunities, 3 orders a run",
    }
    return [_row(case, values, notes[case]) for case, values in samples.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20, help="chain runs (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="service workers (default 2)")
    args = parser.parse_args(argv)
    rows = bench_chain(args)
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.workers} workers; times in milliseconds\n"
    )
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

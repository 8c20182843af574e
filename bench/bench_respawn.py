"""How long the embedded service takes to replace a worker killed with SIGKILL.

    python bench/bench_respawn.py [--trials 10]

Time from kill -9 until health.check shows WORKER_COUNT workers again, none of them the
victim (the issue's target: 2 s; the design's seed target: 30 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.service import ServiceProcesses  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    svc = ServiceProcesses(Path(tempfile.mkdtemp(prefix="tacore-respawn-")), workers=args.workers)
    svc.start_main()
    times = []
    try:
        for _ in range(args.trials):
            victim = sorted(svc.worker_pids())[0]
            os.kill(victim, signal.SIGKILL)
            t0 = time.monotonic()
            svc.wait_workers(args.workers, timeout=30, exclude_pid=victim)  # polls every 20 ms
            times.append(time.monotonic() - t0)
            time.sleep(0.5)
    finally:
        svc.stop()
    print(
        f"respawn after kill -9 ({args.trials} trials, {args.workers} workers): "
        f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()

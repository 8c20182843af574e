"""Workers on another "host": how fast a pulled cable evicts them and a restored one brings
them back (needs root and iproute2: the broker and two workers run in two network namespaces
joined by a veth pair, with CURVE, as in tests/test_netns.py).

    python bench/bench_netns.py [--cycles 5] [--down 1.0] [--up 3.0]

Each cycle: take the worker end of the veth down, time until health.check shows no worker
(eviction; the heartbeat window is 200 ms x 3), keep the link down ``--down`` more seconds,
bring it up, time until both worker processes are registered again (return), then leave the
link up ``--up`` seconds. Medians over the cycles; each cycle is listed too, because the
return time depends on where the worker's reconnect back-off stands.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.netns import RemoteWorkerService, VethLink  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--down", type=float, default=1.0, help="seconds down after eviction")
    parser.add_argument("--up", type=float, default=3.0, help="seconds up between cycles")
    args = parser.parse_args()
    tag = os.getpid()
    link = VethLink.create(str(tag), f"10.231.{1 + tag % 253}")
    service = RemoteWorkerService(link, Path(tempfile.mkdtemp(prefix="tacore-netns-")))
    evictions: list[float] = []
    returns: list[float] = []
    try:
        service.start()
        pids = service.worker_pids()
        for cycle in range(args.cycles):
            cut_at = time.monotonic()
            link.set_worker_side(up=False)
            service.wait_workers(set(), timeout=30)
            evictions.append(time.monotonic() - cut_at)
            time.sleep(args.down)
            restored_at = time.monotonic()
            link.set_worker_side(up=True)
            link.ensure_worker_address()
            service.wait_workers(pids, timeout=60)  # polls every 20 ms
            returns.append(time.monotonic() - restored_at)
            print(
                f"cycle {cycle + 1}: evicted {evictions[-1] * 1000:.0f} ms, "
                f"back {returns[-1] * 1000:.0f} ms",
                flush=True,
            )
            time.sleep(args.up)
    finally:
        service.stop()
        link.remove()
    print(
        f"{args.cycles} cycles, heartbeat window {service.heartbeat_window_s * 1000:.0f} ms, "
        f"down {args.down:.1f} s after eviction: eviction median "
        f"{statistics.median(evictions) * 1000:.0f} ms (max {max(evictions) * 1000:.0f}), "
        f"return median {statistics.median(returns) * 1000:.0f} ms "
        f"(max {max(returns) * 1000:.0f})"
    )


if __name__ == "__main__":
    main()

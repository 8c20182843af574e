"""Chaos soak: mixed load for minutes while workers, the broker, Redis and the disk fail.

    python bench/bench_chaos.py                    # 10 minutes, 6 clients, 3 workers
    python bench/bench_chaos.py --duration 120     # a shorter run
    python bench/bench_chaos.py --json chaos.json

The service (``python -m tacoreservice.main``, Redis cache, request log on) keeps its database
on a tmpfs of its own (``--disk-mb``, root needed to mount it; without root the run says so and
skips the disk fault), so "the disk is full" is real and harms nothing else. Clients, each with
its own Lazy Pirate client and a deadline per request: ``scan.market``, ``analyze.stock``
(quant), ``get.market_data``, and ``execute.order`` with a ``client_order_id`` per order, sent
again (same id) until the service answers it, as a trading module would. Meanwhile a chaos
thread runs, one fault every ``--period`` seconds in turn:

- kill -9 a worker (the supervisor replaces it);
- freeze Redis for 5 s (SIGSTOP, then SIGCONT);
- fill the disk until ENOSPC, hold it 10 s, free it;
- kill -9 the broker and start it again 2 s later (first half of the run only, so the broker's
  memory can be compared from the middle of the run to its end).

Reported: availability (the share of requests answered within their deadline, any answer; and
the share answered with success), p50/p99 latency of the answered ones, the error codes, and
the orders: acknowledged (a reply with an order id), in the ledger, lost (acknowledged but not
in the ledger), duplicated (one ``client_order_id`` with more than one order or fill), plus the
broker's and workers' resident memory at the middle and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import percentile  # noqa: E402
from tacoreservice.client import TACoreClient, TACoreError, TACoreTimeout  # noqa: E402
from tests.support.redis_process import redis_process  # noqa: E402
from tests.support.service import ServiceProcesses, child_pids, cmdline  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "JPM", "600519.SH", "BTCUSDT"]
# (method, share of the load, deadline in ms)
MIX = [
    ("get.market_data", 0.35, 5_000),
    ("scan.market", 0.15, 20_000),
    ("analyze.stock", 0.2, 30_000),
    ("execute.order", 0.3, 10_000),
]


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Soak:
    def __init__(self, args: argparse.Namespace, root: Path, disk: Path, redis_url: str):
        self.args = args
        self.disk = disk
        self.svc = ServiceProcesses(
            root,
            workers=args.workers,
            REDIS_URL=redis_url,
            DATABASE_PATH=str(disk / "tacore.db"),
            TACORE_DATABASE_RESERVE_BYTES=str(32 << 20),  # the default (the harness uses 1 MiB)
            TACORE_HEARTBEAT_INTERVAL_MS="500",
            TACORE_PLUGINS="",
        )
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: list[
            tuple[str, bool, bool, float, str]
        ] = []  # method, answered, ok, ms, code
        self.orders: dict[str, str | None] = {}  # client_order_id -> order_id once acknowledged
        self.events: list[tuple[float, str]] = []
        self.started = 0.0
        self.memory: dict[str, Any] = {}
        self.messages: dict[str, str] = {}  # the first message of each error code
        self.failures_by_10s: dict[int, int] = {}  # failed requests, by 10 s of the run

    # ------------------------------------------------------------------ load

    def _call(
        self, client: TACoreClient, method: str, params: dict[str, Any], deadline_ms: int
    ) -> Any:
        t0 = time.perf_counter()
        try:
            data = client.call(method, params)
            ok, answered, code = True, True, ""
        except TACoreTimeout:
            data, ok, answered, code = None, False, False, "TIMEOUT"
        except TACoreError as exc:
            data, ok, answered, code = None, False, True, str(exc.code)
            with self.lock:
                self.messages.setdefault(code, str(exc)[:300])
        ms = (time.perf_counter() - t0) * 1000.0
        answered = answered and ms <= deadline_ms
        with self.lock:
            self.results.append((method, answered, ok, ms, code))
            if not ok:
                second = int(time.monotonic() - self.started) // 10 * 10
                self.failures_by_10s[second] = self.failures_by_10s.get(second, 0) + 1
        return data if ok else None

    def _params(self, method: str, rng: random.Random) -> dict[str, Any]:
        symbol = rng.choice(SYMBOLS)
        if method == "get.market_data":
            return {"symbol": symbol}
        if method == "scan.market":
            return {"market": rng.choice(["US", "CN", "crypto"]), "limit": 5}
        if method == "analyze.stock":
            return {"symbol": symbol, "as_of": f"2024-{rng.randint(1, 12):02d}-15"}
        raise AssertionError(method)

    def _order(self, client: TACoreClient, rng: random.Random, n: int) -> None:
        coid = f"chaos-{uuid.uuid4().hex[:16]}"
        params = {
            "symbol": "AAPL",
            "action": "buy" if n % 2 == 0 else "sell",
            "quantity": 1,
            "order_type": "market",
            "client_order_id": coid,
        }
        with self.lock:
            self.orders[coid] = None
        # Sent again with the same client_order_id until the service answers it: what a
        # trading module does when a request times out or is refused as retryable.
        give_up = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < give_up:
            data = self._call(client, "execute.order", params, 10_000)
            if data is not None:
                with self.lock:
                    self.orders[coid] = data["order_id"]
                return
            time.sleep(0.5)

    def client_loop(self, seed: int) -> None:
        rng = random.Random(seed)
        methods = [m for m, _, _ in MIX]
        weights = [w for _, w, _ in MIX]
        deadlines = {m: d for m, _, d in MIX}
        n = 0
        while not self.stop.is_set():
            method = rng.choices(methods, weights)[0]
            client = TACoreClient(
                self.svc.endpoint, timeout_ms=max(1000, deadlines[method] // 3), retries=2
            )
            try:
                if method == "execute.order":
                    self._order(client, rng, n)
                else:
                    self._call(client, method, self._params(method, rng), deadlines[method])
            finally:
                client.close()
            n += 1

    # ------------------------------------------------------------------ chaos

    def _note(self, what: str) -> None:
        with self.lock:
            self.events.append((round(time.monotonic() - self.started, 1), what))
        print(f"[{time.monotonic() - self.started:6.1f} s] {what}", flush=True)

    def _worker_pids(self) -> list[int]:
        main = self.svc.main
        if main is None:
            return []
        return [p for p in child_pids(main.pid) if "-m tacoreservice.worker" in cmdline(p)]

    def kill_worker(self) -> None:
        pids = self._worker_pids()
        if pids:
            pid = random.choice(pids)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._note(f"kill -9 worker {pid}")

    def freeze_redis(self, redis_pid: int) -> None:
        os.kill(redis_pid, signal.SIGSTOP)
        self._note("Redis frozen")
        self.stop.wait(5)
        os.kill(redis_pid, signal.SIGCONT)
        self._note("Redis thawed")

    def fill_disk(self) -> None:
        filler = self.disk / "filler"
        try:
            with open(filler, "wb") as f:
                chunk = b"\0" * (1 << 20)
                while True:
                    f.write(chunk)
                    f.flush()
        except OSError:
            pass
        self._note("disk full")
        self.stop.wait(10)
        filler.unlink(missing_ok=True)
        self._note("disk freed")

    def kill_broker(self) -> None:
        main = self.svc.main
        if main is None:
            return
        main.send_signal(signal.SIGKILL)
        main.wait()
        self._note(f"kill -9 broker {main.pid}")
        self.stop.wait(2)
        self.svc.start_main(wait=False)
        self._note(f"broker started again ({self.svc.main.pid if self.svc.main else '?'})")

    def chaos_loop(self, redis_pid: int, disk_fault: bool) -> None:
        faults = ["kill_worker", "freeze_redis", "kill_worker", "fill_disk", "kill_broker"]
        i = 0
        half = self.args.duration / 2
        while not self.stop.wait(self.args.period):
            fault = faults[i % len(faults)]
            i += 1
            elapsed = time.monotonic() - self.started
            if fault == "kill_broker" and elapsed > half - 30:
                fault = "kill_worker"
            if fault == "fill_disk" and not disk_fault:
                fault = "kill_worker"
            if fault == "kill_worker":
                self.kill_worker()
            elif fault == "freeze_redis":
                self.freeze_redis(redis_pid)
            elif fault == "fill_disk":
                self.fill_disk()
            else:
                self.kill_broker()

    def sample_memory(self, label: str) -> None:
        main = self.svc.main
        if main is None:
            return
        workers = {pid: _rss_kib(pid) for pid in self._worker_pids()}
        self.memory[label] = {
            "broker_pid": main.pid,
            "broker_rss_mib": round((_rss_kib(main.pid) or 0) / 1024, 1),
            "workers_rss_mib": {str(p): round((r or 0) / 1024, 1) for p, r in workers.items()},
        }

    # ------------------------------------------------------------------ the ledger

    def audit(self) -> dict[str, Any]:
        conn = sqlite3.connect(self.disk / "tacore.db")
        try:
            rows = conn.execute(
                "SELECT client_order_id, order_id FROM orders WHERE client_order_id LIKE 'chaos-%'"
            ).fetchall()
            fills = dict(
                conn.execute(
                    "SELECT order_id, COUNT(*) FROM fills GROUP BY order_id HAVING COUNT(*) > 1"
                ).fetchall()
            )
        finally:
            conn.close()
        in_ledger: dict[str, list[str]] = {}
        for coid, order_id in rows:
            in_ledger.setdefault(coid, []).append(order_id)
        acknowledged = {c: o for c, o in self.orders.items() if o is not None}
        lost = [c for c, o in acknowledged.items() if o not in in_ledger.get(c, [])]
        duplicated = [c for c, ids in in_ledger.items() if len(ids) > 1]
        return {
            "orders_sent": len(self.orders),
            "acknowledged": len(acknowledged),
            "in_ledger": len(in_ledger),
            "lost": len(lost),
            "duplicated_orders": len(duplicated),
            "orders_filled_twice": len(fills),
            "never_acknowledged_but_in_ledger": len(
                [c for c in in_ledger if self.orders.get(c) is None]
            ),
        }

    # ------------------------------------------------------------------ run

    def run(self, redis_pid: int, disk_fault: bool) -> dict[str, Any]:
        self.svc.start_main()
        self.started = time.monotonic()
        clients = [
            threading.Thread(target=self.client_loop, args=(seed,), daemon=True)
            for seed in range(self.args.clients)
        ]
        for t in clients:
            t.start()
        chaos = threading.Thread(target=self.chaos_loop, args=(redis_pid, disk_fault), daemon=True)
        chaos.start()
        half = self.args.duration / 2
        self.stop.wait(half + 10)  # the broker's last restart is before half - 30
        self.sample_memory("middle")
        self.stop.wait(max(0.0, self.args.duration - (time.monotonic() - self.started)))
        self.sample_memory("end")
        self.stop.set()
        for t in clients:
            t.join(timeout=150)
        chaos.join(timeout=30)
        self.svc.stop()
        return self.report()

    def report(self) -> dict[str, Any]:
        by_method: dict[str, Any] = {}
        for method, _, _ in MIX:
            rows = [r for r in self.results if r[0] == method]
            answered = [r for r in rows if r[1]]
            by_method[method] = {
                "requests": len(rows),
                "answered_in_deadline": round(len(answered) / len(rows), 4) if rows else None,
                "success": round(sum(1 for r in rows if r[2]) / len(rows), 4) if rows else None,
                "p50_ms": round(statistics.median([r[3] for r in answered]), 1)
                if answered
                else None,
                "p99_ms": round(percentile([r[3] for r in answered], 99), 1) if answered else None,
            }
        everything = self.results
        answered = [r for r in everything if r[1]]
        return {
            "duration_s": self.args.duration,
            "clients": self.args.clients,
            "workers": self.args.workers,
            "requests": len(everything),
            "availability": round(len(answered) / len(everything), 4) if everything else None,
            "success": round(sum(1 for r in everything if r[2]) / len(everything), 4)
            if everything
            else None,
            "p99_ms": round(percentile([r[3] for r in answered], 99), 1) if answered else None,
            "codes": dict(Counter(r[4] for r in everything if not r[2])),
            "first_messages": self.messages,
            "failures_by_10s": dict(sorted(self.failures_by_10s.items())),
            "by_method": by_method,
            "orders": self.audit(),
            "memory": self.memory,
            "events": self.events,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--period", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--disk-mb", type=int, default=1024)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tacore-chaos-"))
    disk = root / "disk"
    disk.mkdir()
    mounted = False
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={args.disk_mb}m", "tmpfs", str(disk)],
            capture_output=True,
            text=True,
        )
        mounted = done.returncode == 0
        if not mounted:
            print(f"could not mount a tmpfs ({done.stderr.strip()}): no disk fault", flush=True)
    else:
        print("not root: no tmpfs of its own, so no disk fault", flush=True)
    try:
        with redis_process(root) as redis_url:
            redis_pid = int(
                subprocess.run(
                    ["pgrep", "-f", f"redis-server.*{redis_url.rsplit(':', 1)[1].split('/')[0]}"],
                    capture_output=True,
                    text=True,
                ).stdout.split()[0]
            )
            soak = Soak(args, root, disk, redis_url)
            report = soak.run(redis_pid, disk_fault=mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    report["machine"] = f"{platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

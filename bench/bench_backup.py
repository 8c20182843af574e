"""Backup and restore benchmarks (``tacoreservice.storage.backup``), in-process; Markdown output.

    python bench/bench_backup.py                    # 100k job rows, 5 runs
    python bench/bench_backup.py --rows 500000 --redis-keys 20000

A ledger filled like a busy service's (``--rows`` job rows with JSON params and results of
about 0.5 kB) is backed up and restored ``--runs`` times:

- ``create_backup``: online backup API copy, integrity_check of the copy, row counts, sha256;
- ``create_backup`` under write load: the same while a second thread commits a request-log
  job row every millisecond, as a busy job lane does (the single-step copy holds one read
  snapshot, so the writer is not blocked and the copy does not restart);
- ``restore_backup``: manifest and sha256 checks, copy, integrity_check, atomic rename;
- with ``--redis-keys`` > 0 and redis-server installed, a private redis-server holds that many
  ``tacore:`` keys of 2 kB: the Redis part of backup (SCAN + DUMP/PTTL) and restore
  (RESTORE ... REPLACE) is measured as the difference from the database-only figures.

Rows ``{"benchmark", "case", "runs", "p50_ms", "p95_ms", "note"}``; the p95 column is the max.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import Row, print_table  # noqa: E402


def _fill(db: Path, rows: int) -> None:
    from tacoreservice.storage.database import open_database

    conn = open_database(db)
    body = '{"method": "analyze.stock", "params": {"symbol": "AAPL"}, "pad": "' + "x" * 400 + '"}'
    with conn:
        conn.executemany(
            "INSERT INTO jobs (job_id, method, params, state, result, created_at, updated_at) "
            "VALUES (?, 'analyze.stock', ?, 'succeeded', ?, '2026-01-08T00:00:00Z', "
            "'2026-01-08T00:00:00Z')",
            ((f"job-{i}", body, body) for i in range(rows)),
        )
    conn.close()


def _timed(runs: int, fn: Callable[[int], object]) -> list[float]:
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _row(case: str, times: list[float], note: str) -> Row:
    return {
        "benchmark": "backup",
        "case": case,
        "runs": len(times),
        "p50_ms": statistics.median(times),
        "p95_ms": max(times),
        "note": note,
    }


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if not binary:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    return None


def bench_backup(args: argparse.Namespace) -> list[Row]:
    from tacoreservice.config import Settings
    from tacoreservice.storage.backup import create_backup, restore_backup

    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="bench_backup_"))
    try:
        db = work / "tacore.db"
        _fill(db, args.rows)
        size_mb = db.stat().st_size / 1e6
        settings = Settings.model_validate({"database": {"path": str(db)}})
        # A free port: nothing answers there, so restore's service probe is the real one.
        settings.broker.frontend_port = 1

        times = _timed(args.runs, lambda i: create_backup(settings, work / f"b{i}"))
        rows.append(_row("create_backup", times, f"{args.rows:,} job rows, {size_mb:.0f} MB"))

        stop = threading.Event()
        commits = [0]
        longest_gap = [0.0]  # the writer's longest wait between commits: blocking shows here

        def writer() -> None:
            conn = sqlite3.connect(db, timeout=5)
            last = time.perf_counter()
            while not stop.is_set():
                with conn:
                    conn.execute(
                        "INSERT INTO jobs (job_id, method, params, state, created_at, "
                        "updated_at) VALUES (?, 'health.check', '{}', 'queued', "
                        "'2026-01-08T00:00:00Z', '2026-01-08T00:00:00Z')",
                        (f"load-{commits[0]}",),
                    )
                commits[0] += 1
                now = time.perf_counter()
                longest_gap[0] = max(longest_gap[0], now - last)
                last = now
                time.sleep(0.001)
            conn.close()

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        t0 = time.perf_counter()
        times = _timed(args.runs, lambda i: create_backup(settings, work / f"w{i}"))
        elapsed = time.perf_counter() - t0
        stop.set()
        thread.join()
        rows.append(
            _row(
                "create_backup, writer committing",
                times,
                f"a writer committed {commits[0] / elapsed:.0f}/s meanwhile, longest gap "
                f"{longest_gap[0] * 1e3:.0f} ms",
            )
        )

        target = work / "restored" / "tacore.db"
        settings_r = settings.model_copy(deep=True)
        settings_r.database.path = str(target)
        times = _timed(args.runs, lambda i: restore_backup(settings_r, work / "b0"))
        rows.append(_row("restore_backup", times, "over the previous restore (moved aside)"))

        started = _start_redis(work) if args.redis_keys else None
        if started:
            proc, url = started
            try:
                import redis

                client = redis.Redis.from_url(url)
                pipe = client.pipeline(transaction=False)
                for i in range(args.redis_keys):
                    pipe.set(f"tacore:bench:{i}", os.urandom(1024).hex(), ex=3600)
                pipe.execute()
                with_redis = settings.model_copy(deep=True)
                with_redis.cache.redis_url = url
                times = _timed(args.runs, lambda i: create_backup(with_redis, work / f"r{i}"))
                rows.append(
                    _row("create_backup + redis", times, f"{args.redis_keys:,} keys of 2 kB")
                )
                restore_r = settings_r.model_copy(deep=True)
                restore_r.cache.redis_url = url
                times = _timed(args.runs, lambda i: restore_backup(restore_r, work / "r0"))
                rows.append(
                    _row("restore_backup + redis", times, f"{args.redis_keys:,} keys of 2 kB")
                )
            finally:
                proc.terminate()
                proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


BENCHMARKS = [bench_backup]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--rows", type=int, default=100_000, help="job rows")
    parser.add_argument("--redis-keys", type=int, default=10_000, help="0: no Redis part")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for bench in BENCHMARKS:
        rows.extend(bench(args))
    print(
        f"Python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; milliseconds, p95 column is the max\n"
    )
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

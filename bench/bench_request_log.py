"""The request-log writer before and after the documented ``request_logs`` DDL, side by side.

    python bench/bench_request_log.py              # 5 rounds of 20,000 rows per case
    python bench/bench_request_log.py --rounds 9 --rows 50000

Each case is a real :class:`RequestLogWriter` on a SQLite file of its own (WAL, synchronous
NORMAL, as the service opens it), fed 20,000 entries with the bodies the broker hands over
(bytes), timed from the first ``record()`` to ``flush()`` returning:

- ``before``: schema version 3 (``id INTEGER PRIMARY KEY``, a non-unique index on
  ``request_id``) and a plain ``INSERT``, which is what the writer did before schema 4;
- ``after``: the documented table (``request_id VARCHAR(100) PRIMARY KEY``) and the writer's
  ``INSERT ... ON CONFLICT (request_id) DO UPDATE`` (one row per request id);
- ``after, 10 % retries``: the same, with every tenth entry a second attempt of an earlier
  request id, which updates that row (``attempts`` 2) instead of adding one.

The cases run interleaved, round after round, so a neighbour's load on the shared cores hits
them alike; the table gives the median rows/s over the rounds and its ratio to ``before``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tacoreservice.config import Settings  # noqa: E402
from tacoreservice.storage import request_log  # noqa: E402
from tacoreservice.storage.database import MIGRATIONS, open_database  # noqa: E402
from tacoreservice.storage.request_log import RequestLogEntry, RequestLogWriter  # noqa: E402

_LEGACY_INSERT = (
    f"INSERT INTO request_logs ({', '.join(request_log._COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(request_log._COLUMNS))})"
)


class LegacyWriter(RequestLogWriter):
    """The writer as it was on schema 3: same thread, batching and row coercion."""

    def _ensure_conn(self) -> sqlite3.Connection | None:
        if self._conn is None:
            self._conn = open_database(self.db_path, migrations=MIGRATIONS[:3])
        return self._conn

    def _write(self, entries: list[RequestLogEntry]) -> bool:
        conn = self._ensure_conn()
        assert conn is not None
        rows = [request_log._entry_row(e, self.settings.max_body_bytes) for e in entries]
        with conn:
            conn.executemany(_LEGACY_INSERT, rows)
        return True


def _entries(n: int, retries: bool) -> list[RequestLogEntry]:
    request = json.dumps(
        {"request_id": "r", "method": "get.market_data", "params": {"symbol": "AAPL"}}
    ).encode()
    response = json.dumps({"status": "success", "data": {"symbol": "AAPL", "close": 1.0}}).encode()
    out = []
    for i in range(n):
        rid = f"r{i - 5}" if retries and i % 10 == 9 else f"r{i}"
        out.append(RequestLogEntry(rid, "get.market_data", "w", request, response, 1.0, "success"))
    return out


def _run(cls: type[RequestLogWriter], entries: list[RequestLogEntry]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        writer = cls(db, Settings().request_log)
        with writer:
            t0 = time.perf_counter()
            for e in entries:
                writer.record(e)
            assert writer.flush(timeout=300)
            elapsed = time.perf_counter() - t0
            assert writer.stats()["failed"] == 0
        conn = sqlite3.connect(db)
        rows = int(conn.execute("SELECT COUNT(*) FROM request_logs").fetchone()[0])
        conn.close()
    return len(entries) / elapsed, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()

    cases = [
        ("before: schema 3, plain INSERT", LegacyWriter, _entries(args.rows, False)),
        ("after: documented DDL, upsert", RequestLogWriter, _entries(args.rows, False)),
        ("after: documented DDL, 10 % retries", RequestLogWriter, _entries(args.rows, True)),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    stored: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, cls, entries in cases:
            rate, rows = _run(cls, entries)
            rates[name].append(rate)
            stored[name] = rows

    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; {args.rounds} rounds of {args.rows:,} entries"
    )
    print("| case | median rows/s | min–max rows/s | vs before | rows stored |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(rates[cases[0][0]])
    for name, _, _ in cases:
        med = statistics.median(rates[name])
        print(
            f"| {name} | {med:,.0f} | {min(rates[name]):,.0f}–{max(rates[name]):,.0f} | "
            f"{med / base:.1%} | {stored[name]:,} |"
        )


if __name__ == "__main__":
    main()

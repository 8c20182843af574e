"""SQLite storage: schema migrations, the batched request-log writer and its queries."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tacoreservice.config import RequestLogSettings
from tacoreservice.storage import (
    MIGRATIONS,
    REQUEST_LOG_MIGRATIONS,
    REQUEST_LOG_SCHEMA_VERSION,
    SCHEMA_VERSION,
    MigrationError,
    RequestLogEntry,
    RequestLogWriter,
    SchemaVersionError,
    count_request_logs,
    open_database,
    open_request_log_database,
    query_request_logs,
    schema_version,
)
from tacoreservice.storage.request_log import TRUNCATION_MARKER, to_iso_utc

ROOT = Path(__file__).resolve().parents[1]

# The design documents' DDL, type for type.
SPEC_COLUMNS = {
    "request_id": "VARCHAR(100)",
    "method": "VARCHAR(50)",
    "worker_id": "VARCHAR(50)",
    "request_data": "TEXT",
    "response_data": "TEXT",
    "processing_time_ms": "INTEGER",
    "status": "VARCHAR(20)",
    "created_at": "TIMESTAMP",
}
EXTRA_COLUMNS = {
    "error_code": "TEXT",
    "client_id": "TEXT",
    "queue_wait_ms": "REAL",
    "attempts": "INTEGER",
    "updated_at": "TEXT",
}

NEXT = SCHEMA_VERSION + 1  # the version a newly appended migration would take


def settings(**kw: object) -> RequestLogSettings:
    base: dict[str, object] = {"batch_size": 500, "flush_interval_ms": 20, "retention_days": 0}
    base.update(kw)
    return RequestLogSettings.model_validate(base)


def entry(i: int, **kw: object) -> RequestLogEntry:
    fields: dict[str, object] = {
        "request_id": f"req-{i}",
        "method": "health.check",
        "worker_id": "w1",
        "request_data": '{"method":"health.check","params":{}}',
        "response_data": '{"status":"success","data":{"ok":true}}',
        "processing_time_ms": 1.5,
        "status": "success",
    }
    fields.update(kw)
    return RequestLogEntry(**fields)  # type: ignore[arg-type]


def rows(db: Path, sql: str = "SELECT COUNT(*) FROM request_logs") -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def count(db: Path) -> int:
    return int(rows(db)[0][0])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tacore.db"


# -- database and migrations ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["ledger", "request log"])
def test_fresh_file_gets_schema_and_pragmas(tmp_path: Path, which: str) -> None:
    path = tmp_path / "a" / "b" / "tacore.db"
    ledger = which == "ledger"
    conn = open_database(path) if ledger else open_request_log_database(path)
    try:
        assert path.exists()
        if ledger:
            assert schema_version(conn) == SCHEMA_VERSION == len(MIGRATIONS)
        else:
            assert schema_version(conn) == REQUEST_LOG_SCHEMA_VERSION == len(REQUEST_LOG_MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        # Only the log's file gives pages back to the disk (incremental auto-vacuum).
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == (0 if ledger else 2)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if ledger:
            assert {"orders", "fills", "positions", "paper_account", "jobs"} <= tables
            # Migration 5 moved the log's table aside; the log's writer empties and drops it.
            assert {t for t in tables if "request_logs" in t} == {"legacy_request_logs"}
            assert conn.execute("SELECT COUNT(*) FROM legacy_request_logs").fetchone() == (0,)
            return
        assert tables == {"request_logs"}
        cols = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(request_logs)")}
        assert cols == {**SPEC_COLUMNS, **EXTRA_COLUMNS}
        indexed = {
            conn.execute(f"PRAGMA index_info({name!r})").fetchone()[2]
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='request_logs'"
            )
        }
        assert {"created_at", "request_id", "method", "status"} <= indexed
    finally:
        conn.close()


def test_reopen_is_idempotent_and_keeps_rows(db: Path) -> None:
    conn = open_database(db)
    with conn:
        conn.execute(
            "INSERT INTO positions (symbol, quantity, avg_cost, updated_at) "
            "VALUES ('KEEP', 1, 1, '')"
        )
    conn.close()
    for _ in range(3):
        conn = open_database(db)
        assert schema_version(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT symbol FROM positions").fetchall() == [("KEEP",)]
        conn.close()


def test_in_memory_database() -> None:
    conn = open_database(":memory:")
    assert schema_version(conn) == SCHEMA_VERSION
    conn.close()


def test_newer_file_is_refused_with_upgrade_hint(db: Path) -> None:
    open_database(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(SchemaVersionError) as err:
        open_database(db)
    message = str(err.value)
    assert "Upgrade TACoreService" in message
    assert str(SCHEMA_VERSION + 1) in message and str(db) in message
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    raw.close()


def test_appended_migration_applies_once(db: Path) -> None:
    open_database(db).close()
    step = (NEXT, "CREATE TABLE extra (x INTEGER); CREATE INDEX idx_extra_x ON extra(x);")
    later = [*MIGRATIONS, step]
    for _ in range(2):  # the second open must not re-run the step (it would fail: no IF NOT EXISTS)
        conn = open_database(db, migrations=later)
        assert schema_version(conn) == NEXT
        conn.close()
    # The older code then refuses the file.
    with pytest.raises(SchemaVersionError):
        open_database(db)


def test_migration_statements_split_like_sqlite(db: Path) -> None:
    tricky = (
        NEXT,
        """
        CREATE TABLE notes (body TEXT);
        INSERT INTO notes VALUES ('semi;colon; inside');
        CREATE TRIGGER notes_upper AFTER INSERT ON notes BEGIN
            UPDATE notes SET body = upper(body) WHERE rowid = new.rowid;
        END;
        INSERT INTO notes VALUES ('x;y')
        """,
    )
    conn = open_database(db, migrations=[*MIGRATIONS, tricky])
    bodies = sorted(r[0] for r in conn.execute("SELECT body FROM notes"))
    assert bodies == ["X;Y", "semi;colon; inside"]
    conn.close()


def test_failed_migration_rolls_back(db: Path) -> None:
    open_database(db).close()
    broken = (NEXT, "CREATE TABLE half_done (x); CREATE TABLE orders (x);")
    with pytest.raises(MigrationError, match=f"migration {NEXT}"):
        open_database(db, migrations=[*MIGRATIONS, broken])
    conn = open_database(db)
    assert schema_version(conn) == SCHEMA_VERSION
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names
    conn.close()


def test_migration_list_must_be_contiguous(db: Path) -> None:
    with pytest.raises(ValueError, match="must be 1, 2, 3"):
        open_database(db, migrations=[*MIGRATIONS, (NEXT + 1, "SELECT 1")])


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from tacoreservice.storage import open_database, open_request_log_database, schema_version
    path, go = sys.argv[1], sys.argv[2]
    open(f"{go}.{os.getpid()}.ready", "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    conn = open_database(path)
    with conn:
        conn.execute(
            "INSERT INTO positions (symbol, quantity, avg_cost, updated_at) VALUES (?, 0, 0, '')",
            (str(os.getpid()),),
        )
    log = open_request_log_database(path + "-requests")
    with log:
        log.execute(
            "INSERT INTO request_logs (request_id, method) VALUES (?, 'x')", (str(os.getpid()),)
        )
    print(schema_version(conn), conn.execute("PRAGMA journal_mode").fetchone()[0])
    print(schema_version(log), log.execute("PRAGMA journal_mode").fetchone()[0])
    """
)


def test_concurrent_first_open_from_processes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    n = 4
    for round_ in range(2):
        path = tmp_path / f"round{round_}" / "new.db"
        go = tmp_path / f"go{round_}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(path), str(go)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        # Release them together, once every interpreter has imported and waits.
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob(f"go{round_}.*.ready"))) < n:
            assert time.monotonic() < deadline, "child processes did not start"
            dead = [p for p in procs if p.poll() is not None]
            assert not dead, dead[0].communicate()
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
        for p, (out, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, err
            assert out.split() == [
                str(SCHEMA_VERSION),
                "wal",
                str(REQUEST_LOG_SCHEMA_VERSION),
                "wal",
            ]
        assert rows(path, "SELECT COUNT(*) FROM positions") == [(n,)]
        assert count(Path(f"{path}-requests")) == n


# -- request log writer ---------------------------------------------------------------------


def test_burst_of_10000_lands_as_10000_rows(db: Path) -> None:
    writer = RequestLogWriter(db, settings())
    writer.start()
    try:
        t0 = time.perf_counter()
        for i in range(10_000):
            writer.record(entry(i))
        t_recorded = time.perf_counter()
        assert writer.flush(timeout=30)
        t_done = time.perf_counter()
    finally:
        writer.close()
    assert count(db) == 10_000
    stats = writer.stats()
    assert stats["recorded"] == stats["written"] == 10_000
    assert stats["dropped"] == stats["failed"] == stats["errors"] == 0
    assert stats["batches"] >= 10_000 // 500
    per_record_us = (t_recorded - t0) / 10_000 * 1e6
    rate = 10_000 / (t_done - t0)
    print(f"\nrequest log: record() {per_record_us:.2f} us/entry, burst {rate:,.0f} rows/s")
    assert per_record_us < 200  # the hot path only appends to memory
    assert rate > 2_000


def test_records_from_many_threads(db: Path) -> None:
    writer = RequestLogWriter(db, settings(batch_size=250))
    writer.start()
    n_threads, per_thread = 8, 1_500

    def produce(t: int) -> None:
        for i in range(per_thread):
            writer.record(entry(t * per_thread + i, worker_id=f"w{t}"))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.flush(timeout=30)
    writer.close()
    assert rows(db, "SELECT COUNT(DISTINCT request_id), COUNT(*) FROM request_logs") == [
        (n_threads * per_thread, n_threads * per_thread)
    ]
    assert rows(db, "SELECT COUNT(*) FROM request_logs WHERE worker_id = 'w7'") == [(per_thread,)]


def test_interval_flush_without_flush_call(db: Path) -> None:
    writer = RequestLogWriter(db, settings(batch_size=1000, flush_interval_ms=50))
    writer.start()
    try:
        for i in range(3):
            writer.record(entry(i))
        deadline = time.monotonic() + 5
        while count(db) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count(db) == 3
    finally:
        writer.close()


def test_full_batch_is_written_before_the_interval(db: Path) -> None:
    writer = RequestLogWriter(db, settings(batch_size=100, flush_interval_ms=60_000))
    writer.start()
    try:
        for i in range(100):
            writer.record(entry(i))
        deadline = time.monotonic() + 5
        while count(db) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count(db) == 100
    finally:
        writer.close()


def test_close_writes_what_is_waiting(db: Path) -> None:
    writer = RequestLogWriter(db, settings(flush_interval_ms=60_000, batch_size=10_000))
    writer.start()
    for i in range(42):
        writer.record(entry(i))
    writer.close()
    assert count(db) == 42
    writer.record(entry(99))  # after close: counted as dropped, not raised
    assert writer.stats()["dropped"] == 1
    writer.close()  # idempotent


def test_backlog_is_bounded_and_drops_oldest(db: Path) -> None:
    writer = RequestLogWriter(db, settings(), max_backlog=100)
    for i in range(150):  # not started yet: nothing drains the backlog
        writer.record(entry(i))
    stats = writer.stats()
    assert (stats["recorded"], stats["pending"], stats["dropped"]) == (150, 100, 50)
    assert writer.flush(timeout=0.1) is False
    writer.start()
    assert writer.flush(timeout=10)
    writer.close()
    ids = {r[0] for r in rows(db, "SELECT request_id FROM request_logs")}
    assert ids == {f"req-{i}" for i in range(50, 150)}


def test_disabled_writer_is_a_no_op(db: Path) -> None:
    writer = RequestLogWriter(db, settings(enabled=False))
    writer.start()
    writer.record(entry(1))
    assert writer.flush(timeout=1)
    writer.close()
    assert not db.exists()
    assert writer.stats()["recorded"] == 0


def test_long_bodies_are_truncated_with_marker(db: Path) -> None:
    writer = RequestLogWriter(db, settings(max_body_bytes=100))
    writer.start()
    writer.record(entry(1, request_data="a" * 1000, response_data=b'{"ok": true}'))
    writer.record(entry(2, request_data="é" * 100, response_data={"data": [1, 2, 3]}))
    writer.record(entry(3, request_data="b" * 100, response_data=None))
    assert writer.flush(timeout=10)
    writer.close()
    got = dict(
        (r[0], (r[1], r[2]))
        for r in rows(db, "SELECT request_id, request_data, response_data FROM request_logs")
    )
    assert got["req-1"] == (
        "a" * 100 + TRUNCATION_MARKER.format(kept=100, total=1000),
        '{"ok": true}',
    )
    # A two-byte character is not cut in half at the limit.
    assert got["req-2"] == (
        "é" * 50 + TRUNCATION_MARKER.format(kept=100, total=200),
        '{"data":[1,2,3]}',
    )
    assert got["req-3"] == ("b" * 100, None)


def test_zero_body_limit_keeps_only_the_marker(db: Path) -> None:
    writer = RequestLogWriter(db, settings(max_body_bytes=0))
    writer.start()
    writer.record(entry(1, request_data="secret", response_data=""))
    writer.close()
    assert rows(db, "SELECT request_data, response_data FROM request_logs") == [
        (TRUNCATION_MARKER.format(kept=0, total=6), "")
    ]


def _insert_aged(db: Path, days_old: float, n: int, tag: str) -> None:
    conn = open_request_log_database(db)
    stamp = to_iso_utc(datetime.now(UTC) - timedelta(days=days_old))
    with conn:
        conn.executemany(
            "INSERT INTO request_logs (request_id, method, created_at) VALUES (?, 'x', ?)",
            [(f"{tag}-{i}", stamp) for i in range(n)],
        )
    conn.close()


def test_retention_purges_old_rows_at_start(db: Path) -> None:
    _insert_aged(db, 45, 30, "old")
    _insert_aged(db, 29, 20, "recent")
    writer = RequestLogWriter(db, settings(retention_days=30))
    writer.start()
    deadline = time.monotonic() + 5
    while writer.stats()["purged"] < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.stats()["purged"] == 30
    assert count(db) == 20
    # At most hourly: an old row arriving now survives until the next purge.
    _insert_aged(db, 45, 1, "late")
    writer.record(entry(1))
    assert writer.flush(timeout=5)
    time.sleep(0.1)
    writer.close()
    assert count(db) == 22


def test_retention_repeats_after_the_interval(db: Path) -> None:
    writer = RequestLogWriter(db, settings(retention_days=1), purge_interval_s=0.1)
    writer.start()
    try:
        _insert_aged(db, 2, 5, "old")
        deadline = time.monotonic() + 5
        while count(db) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count(db) == 0
        assert writer.stats()["purged"] == 5
    finally:
        writer.close()


def test_retention_zero_keeps_everything(db: Path) -> None:
    _insert_aged(db, 3650, 5, "ancient")
    writer = RequestLogWriter(db, settings(retention_days=0))
    writer.start()
    writer.close()
    assert count(db) == 5


def test_dropped_table_is_counted_not_raised_and_writer_recovers(db: Path) -> None:
    writer = RequestLogWriter(db, settings(flush_interval_ms=10))
    writer.start()
    try:
        for i in range(10):
            writer.record(entry(i))
        assert writer.flush(timeout=10)
        other = sqlite3.connect(db)
        other.execute("DROP TABLE request_logs")
        other.commit()

        for i in range(10, 15):
            writer.record(entry(i))
        assert writer.flush(timeout=10)  # settled: given up after retries, no exception
        stats = writer.stats()
        assert stats["written"] == 10 and stats["failed"] == 5
        assert stats["errors"] >= 3
        assert "no such table" in stats["last_error"]
        assert stats["running"]

        # The table as a fresh file has it: the documented DDL.
        other.executescript(REQUEST_LOG_MIGRATIONS[0][1])
        other.close()
        for i in range(15, 18):
            writer.record(entry(i))
        assert writer.flush(timeout=10)
        assert writer.stats()["written"] == 13
        assert count(db) == 3
    finally:
        writer.close()


def test_unwritable_path_is_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    writer = RequestLogWriter(blocker / "tacore.db", settings(flush_interval_ms=10))
    writer.start()  # must not raise
    try:
        for i in range(5):
            writer.record(entry(i))
        assert writer.flush(timeout=10)
        stats = writer.stats()
        assert stats["failed"] == 5 and stats["written"] == 0
        assert stats["errors"] >= 1
        assert "cannot open database" in stats["last_error"]
        assert stats["running"]
    finally:
        writer.close()


def test_performance_lines_once_per_request_even_when_writes_retry(tmp_path: Path) -> None:
    import logging

    from tacoreservice.storage.request_log import performance_log

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.extend(record.getMessage().splitlines())

    handler = Collect()
    level = performance_log.level
    performance_log.addHandler(handler)
    performance_log.setLevel(logging.INFO)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    writer = RequestLogWriter(blocker / "tacore.db", settings(flush_interval_ms=10))
    writer.start()
    try:
        for i in range(5):
            writer.record(entry(i))
        assert writer.flush(timeout=10)
        assert writer.stats()["errors"] >= writer.max_attempts  # the batch was retried
    finally:
        writer.close()
        performance_log.removeHandler(handler)
        performance_log.setLevel(level)
    assert len(lines) == 5
    assert all("method=" in ln and "queue_wait_ms=" in ln for ln in lines)


def test_lock_held_by_another_process_only_delays(db: Path) -> None:
    writer = RequestLogWriter(db, settings(flush_interval_ms=10))
    writer.start()
    try:
        blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        for i in range(20):
            writer.record(entry(i))
        threading.Timer(0.5, lambda: blocker.execute("COMMIT")).start()
        assert writer.flush(timeout=20)
        assert writer.stats()["written"] == 20
    finally:
        writer.close()
    blocker.close()


def test_writer_refuses_newer_file(db: Path) -> None:
    open_database(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    raw.close()
    writer = RequestLogWriter(db, settings())
    with pytest.raises(SchemaVersionError):
        writer.start()
    assert not writer.stats()["running"]


# -- queries ----------------------------------------------------------------------------------

BASE = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
METHODS = ["health.check", "get.market_data", "scan.market"]


@pytest.fixture
def filled(db: Path) -> Iterator[sqlite3.Connection]:
    writer = RequestLogWriter(db, settings())
    writer.start()
    for i in range(60):
        writer.record(
            entry(
                i,
                method=METHODS[i % 3],
                status="error" if i % 5 == 0 else "success",
                worker_id=f"w{i % 2}",
                created_at=to_iso_utc(BASE + timedelta(seconds=i)),
                error_code="INVALID_PARAMS" if i % 5 == 0 else None,
                client_id="scanner",
                queue_wait_ms=0.25,
            )
        )
    writer.close()
    conn = open_request_log_database(db)
    yield conn
    conn.close()


def test_query_without_filters_newest_first(filled: sqlite3.Connection) -> None:
    assert count_request_logs(filled) == 60
    got = query_request_logs(filled, limit=1000)
    assert [r["request_id"] for r in got] == [f"req-{i}" for i in range(59, -1, -1)]
    first = got[0]
    assert set(first) == set(SPEC_COLUMNS) | set(EXTRA_COLUMNS) | {"id"}  # id: the rowid
    assert first["created_at"] == "2026-11-21T10:00:59.000000Z"
    assert first["processing_time_ms"] == 1.5 and first["queue_wait_ms"] == 0.25
    assert first["client_id"] == "scanner"
    assert len(query_request_logs(filled)) == 60  # default limit 100


def test_query_filters(filled: sqlite3.Connection) -> None:
    assert count_request_logs(filled, method="scan.market") == 20
    assert {r["method"] for r in query_request_logs(filled, method="scan.market")} == {
        "scan.market"
    }
    errors = query_request_logs(filled, status="error")
    assert len(errors) == count_request_logs(filled, status="error") == 12
    assert {r["error_code"] for r in errors} == {"INVALID_PARAMS"}
    both = query_request_logs(filled, method="health.check", worker_id="w0")
    assert {int(r["request_id"][4:]) for r in both} == {i for i in range(60) if i % 6 == 0}
    assert [r["request_id"] for r in query_request_logs(filled, request_id="req-7")] == ["req-7"]
    assert query_request_logs(filled, method="nope") == []


def test_query_time_window(filled: sqlite3.Connection) -> None:
    since, until = BASE + timedelta(seconds=10), BASE + timedelta(seconds=20)
    got = query_request_logs(filled, since=since, until=until)
    assert [r["request_id"] for r in got] == [f"req-{i}" for i in range(19, 9, -1)]
    # ISO text with an offset, naive text (UTC) and "Z" all mean the same instant.
    assert (
        count_request_logs(filled, since="2026-11-21T11:00:10+01:00", until="2026-11-21T10:00:20")
        == 10
    )
    assert count_request_logs(filled, since="2026-11-21T10:00:50Z") == 10
    with pytest.raises(ValueError, match="ISO-8601"):
        query_request_logs(filled, since="yesterday")


def test_query_pagination(filled: sqlite3.Connection) -> None:
    seen: list[str] = []
    offset = 0
    while page := query_request_logs(filled, status="success", limit=7, offset=offset):
        assert len(page) <= 7
        seen += [r["request_id"] for r in page]
        offset += 7
    assert len(seen) == len(set(seen)) == count_request_logs(filled, status="success") == 48
    with pytest.raises(ValueError):
        query_request_logs(filled, limit=-1)


def test_query_parameters_are_not_sql(filled: sqlite3.Connection) -> None:
    assert query_request_logs(filled, method="x' OR '1'='1") == []
    assert count_request_logs(filled, worker_id="w0'; DROP TABLE request_logs; --") == 0
    assert count_request_logs(filled) == 60

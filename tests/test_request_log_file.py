"""The request log in a file of its own, apart from the ledger: where it is, and how the rows a
release before the split kept in the ledger move over (once, whatever crashes or runs at once).
Real SQLite files; the request-log process's ``run`` in this process."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from tacoreservice.config import ConfigError, Settings, load_settings
from tacoreservice.protocol.messages import utc_timestamp
from tacoreservice.storage.database import (
    MIGRATIONS,
    open_database,
    open_request_log_database,
)
from tacoreservice.storage.request_log import adopt_legacy_rows, to_iso_utc
from tacoreservice.storage.request_log_process import run
from tacoreservice.storage.request_spool import (
    SpoolWriter,
    encode_record,
    read_progress,
    segment_path,
    spool_root,
    write_progress,
)


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def _log_rows(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT request_id, attempts FROM request_logs").fetchall())
    finally:
        conn.close()


def _old_ledger(path: Path, rows: list[tuple[str, str]]) -> None:
    """A ledger as release 4 left it: request_logs rows (request_id, created_at) inside."""
    conn = open_database(path, migrations=MIGRATIONS[:4])
    with conn:
        conn.executemany(
            "INSERT INTO request_logs (request_id, method, status, created_at) "
            "VALUES (?, 'test.echo', 'success', ?)",
            rows,
        )
    conn.close()


# -- where the file is ------------------------------------------------------------------------


def test_the_log_sits_beside_the_ledger_unless_told_otherwise(tmp_path: Path) -> None:
    assert Settings().request_log_path == str(Path("data/tacoreservice-requests.db"))
    ledger = tmp_path / "state" / "ledger.sqlite"
    settings = load_settings(env={"DATABASE_PATH": str(ledger)})
    assert settings.request_log_path == str(tmp_path / "state" / "ledger-requests.sqlite")
    elsewhere = tmp_path / "other-disk" / "log.db"
    settings = load_settings(
        env={"DATABASE_PATH": str(ledger), "TACORE_REQUEST_LOG_PATH": str(elsewhere)}
    )
    assert settings.request_log_path == str(elsewhere)
    assert Settings(database={"path": ":memory:"}).request_log_path == ":memory:"


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_a_new_log_file_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    # 16 KiB pages: rows of a KiB or two each write less per row (BENCHMARKS.md). A file made
    # by an earlier release stays as it is (a page size changes only with a VACUUM).
    new = tmp_path / "new-requests.db"
    open_request_log_database(new).close()
    assert _page_size(new) == 16 * 1024
    old = tmp_path / "old-requests.db"
    conn = sqlite3.connect(old)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE t (x)")  # made: its page size is fixed now
    conn.close()
    open_request_log_database(old).close()
    assert _page_size(old) == 4096
    # The ledger keeps SQLite's default.
    ledger = tmp_path / "ledger.db"
    open_database(ledger).close()
    assert _page_size(ledger) == 4096


@pytest.mark.parametrize("spelling", ["{d}/x.db", "{d}/../{n}/x.db", "{d}/./x.db", "link/x.db"])
def test_the_log_may_not_be_the_ledger_under_any_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    same = spelling.format(d=folder, n=folder.name)
    with pytest.raises(ConfigError, match="request_log.path must name another file"):
        load_settings(env={"DATABASE_PATH": str(folder / "x.db"), "TACORE_REQUEST_LOG_PATH": same})


# -- the rows from before the split -----------------------------------------------------------


def test_old_rows_move_once_within_retention_and_the_ledger_table_goes(tmp_path: Path) -> None:
    ledger, log = tmp_path / "tacore.db", tmp_path / "tacore-requests.db"
    recent = to_iso_utc("2026-12-01T00:00:00")
    _old_ledger(ledger, [("old", "2020-01-01T00:00:00.000000Z"), ("new", recent)])
    conn = open_request_log_database(log)
    assert adopt_legacy_rows(conn, ledger, since="2026-01-01T00:00:00.000000Z") == 1
    assert _log_rows(log) == {"new": 1}
    assert "legacy_request_logs" not in _tables(ledger) and "request_logs" not in _tables(ledger)
    assert adopt_legacy_rows(conn, ledger) == 0  # nothing left to move
    conn.close()


def test_a_crash_between_the_copy_and_the_drop_copies_nothing_twice(tmp_path: Path) -> None:
    ledger, log = tmp_path / "tacore.db", tmp_path / "tacore-requests.db"
    _old_ledger(ledger, [(f"r-{i}", f"2026-12-01T00:00:{i:02d}.000000Z") for i in range(10)])
    open_database(ledger).close()  # version 5: the table set aside
    conn = open_request_log_database(log)
    # The copy committed, then the writer died before it dropped the ledger's table ...
    conn.execute("ATTACH DATABASE ? AS ledger", (str(ledger),))
    with conn:
        conn.execute(
            "INSERT INTO request_logs (request_id, method, created_at) "
            "SELECT request_id, method, created_at FROM ledger.legacy_request_logs"
        )
        conn.execute("UPDATE request_logs SET attempts = 3 WHERE request_id = 'r-0'")
    conn.execute("DETACH DATABASE ledger")
    # ... and the next start copies again: every row is there once, as it was.
    assert adopt_legacy_rows(conn, ledger) == 0
    rows = _log_rows(log)
    assert len(rows) == 10 and rows["r-0"] == 3 and set(rows.values()) == {1, 3}
    assert "legacy_request_logs" not in _tables(ledger)
    conn.close()


def test_two_writers_moving_the_rows_at_once_copy_each_once(tmp_path: Path) -> None:
    ledger, log = tmp_path / "tacore.db", tmp_path / "tacore-requests.db"
    _old_ledger(
        ledger, [(f"r-{i}", f"2026-12-01T00:{i // 60:02d}:{i % 60:02d}Z") for i in range(500)]
    )
    open_request_log_database(log).close()
    start = threading.Barrier(2)
    moved: list[int] = []
    errors: list[BaseException] = []

    def adopt() -> None:
        conn = open_request_log_database(log)
        try:
            start.wait()
            moved.append(adopt_legacy_rows(conn, ledger))
        except BaseException as exc:  # reported below, with the other thread's outcome
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=adopt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(moved)[-1] == 500 and sum(moved) == 500, moved
    assert len(_log_rows(log)) == 500 and set(_log_rows(log).values()) == {1}
    assert "legacy_request_logs" not in _tables(ledger)


def _record(i: int) -> bytes:
    return encode_record(
        created=1_796_000_000.0 + i,
        request_id=f"r-{i}",
        method="test.echo",
        worker_id="w-1",
        raw=orjson.dumps({"method": "test.echo", "params": {"payload": i}}),
        reply=orjson.dumps({"status": "success", "data": {"payload": i}}),
        ok=True,
        error_code=None,
        processing_ms=0.5,
        wait_ms=0.25,
        client=None,
    )


def test_a_spool_left_before_the_split_is_written_once_after_the_upgrade(tmp_path: Path) -> None:
    ledger = tmp_path / "tacore.db"
    settings = Settings.model_validate(
        {"database": {"path": str(ledger)}, "request_log": {"retention_days": 0}}
    )
    log = Path(settings.request_log_path)
    # The old release's broker spooled 20 records beside the ledger; its writer committed the
    # first 10 into the ledger's request_logs and died before it noted them.
    old = SpoolWriter(spool_root(ledger))
    for i in range(20):
        old.append(_record(i))
    old.close()
    progress: dict[str, Any] = read_progress(old.folder)
    progress["writing"] = segment_path(old.folder, 1).stat().st_size
    write_progress(old.folder, progress)
    _old_ledger(ledger, [(f"r-{i}", utc_timestamp(1_796_000_000.0 + i)) for i in range(10)])

    # The new release starts: its own spool is beside the log's file, already finished.
    new = SpoolWriter(spool_root(log))
    new.append(_record(20))
    new.close()
    assert run(new.folder, settings) == 0

    rows = _log_rows(log)
    assert rows == {f"r-{i}": 1 for i in range(21)}  # every record once, none twice
    assert not spool_root(ledger).exists()  # the old spool drained and removed
    assert "legacy_request_logs" not in _tables(ledger)

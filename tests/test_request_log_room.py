"""The request log never takes the room an order needs: a cap on its size, and shedding when
the disk runs low. Real SQLite files; the full disk is a real tmpfs (root only)."""

from __future__ import annotations

import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from tacoreservice.client import TACoreClient
from tacoreservice.config import RequestLogSettings
from tacoreservice.storage.database import open_request_log_database
from tacoreservice.storage.log_room import request_log_bytes
from tacoreservice.storage.request_log import RequestLogEntry, RequestLogWriter, utc_now_iso
from tests.support.disk import fill_disk, small_disk
from tests.support.service import ServiceProcesses


def _entries(n: int, body_bytes: int, tag: str) -> list[RequestLogEntry]:
    return [
        RequestLogEntry(
            request_id=f"{tag}-{i}-{uuid.uuid4().hex[:6]}",
            method="get.market_data",
            worker_id="w",
            request_data=b'{"method": "get.market_data", "pad": "' + b"x" * body_bytes + b'"}',
            response_data=b'{"status": "success", "data": "' + b"y" * body_bytes + b'"}',
            processing_time_ms=1.0,
            status="success",
            created_at=utc_now_iso(),
        )
        for i in range(n)
    ]


def _buy_one(c: TACoreClient) -> dict[str, Any]:
    return c.call(
        "execute.order", {"symbol": "AAPL", "action": "buy", "quantity": 1, "order_type": "market"}
    )


def _ids(db: Path) -> list[str]:
    conn = open_request_log_database(db)
    try:
        return [r[0] for r in conn.execute("SELECT request_id FROM request_logs ORDER BY rowid")]
    finally:
        conn.close()


def test_the_rows_stay_within_their_cap_and_the_oldest_go(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    cap = 400_000
    writer = RequestLogWriter(db, RequestLogSettings(max_bytes=cap, min_free_bytes=0))
    writer.room.next_check = 0.0  # look after every batch, not every 10 s
    for batch in range(40):
        assert writer.write_batch(_entries(10, 4_000, f"b{batch}"))
        writer.room.next_check = 0.0
    stats = writer.stats()
    conn = open_request_log_database(db)
    try:
        size = request_log_bytes(conn)
    finally:
        conn.close()
    writer.close()
    assert size <= cap + 10 * 9_000  # at most one batch over, until the next check
    assert stats["trimmed"] > 0 and stats["written"] == 400
    ids = _ids(db)
    assert ids[-1].startswith("b39-") and not any(i.startswith("b0-") for i in ids)


def test_a_low_disk_sheds_new_rows_and_frees_old_ones(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    roomy = RequestLogWriter(db, RequestLogSettings(min_free_bytes=0))
    assert roomy.write_batch(_entries(100, 2_000, "old"))
    roomy.close()
    size_before = db.stat().st_size
    # A floor above any disk's free space: the disk is "low" from the first look.
    low = RequestLogWriter(db, RequestLogSettings(min_free_bytes=1 << 62))
    assert low.write_batch(_entries(50, 2_000, "new"))
    stats = low.stats()
    # With the writer's connection still open (closing the last one checkpoints anyway): the
    # deleted rows' pages went back to the disk, where the ledger's file can use them.
    wal = Path(f"{db}-wal")
    assert db.stat().st_size < 0.7 * size_before, (db.stat().st_size, size_before)
    assert not wal.exists() or wal.stat().st_size == 0, wal.stat().st_size
    low.close()
    assert stats["shed"] == 50 and stats["written"] == 0 and stats["failed"] == 0
    ids = _ids(db)
    assert not any(i.startswith("new-") for i in ids)
    assert len(ids) <= 50 and stats["trimmed"] >= 50  # halved, to give the ledger room


def test_a_nearly_full_disk_gets_the_log_pages_back_a_step_at_a_time(tmp_path: Path) -> None:
    # 40 MB of rows, then the disk filled to its last 2 MiB: half the rows go, and their pages
    # reach the file system through a WAL that never needs more than a step's room.
    with small_disk(tmp_path / "disk", 64) as disk:
        db = disk / "log.db"
        roomy = RequestLogWriter(db, RequestLogSettings(min_free_bytes=0, max_bytes=0))
        for batch in range(10):
            assert roomy.write_batch(_entries(250, 8_000, f"b{batch}"))
        roomy.close()
        size_before = db.stat().st_size
        assert size_before > 35_000_000
        filler = fill_disk(disk, leave_bytes=2 << 20)
        free_before = shutil.disk_usage(disk).free
        low = RequestLogWriter(db, RequestLogSettings(min_free_bytes=16 << 20))
        assert low.write_batch(_entries(10, 8_000, "new"))
        stats = low.stats()
        assert stats["shed"] == 10 and stats["trimmed"] >= 1_000, repr(stats)
        assert stats["errors"] == 0, stats["last_error"]
        assert db.stat().st_size < 0.7 * size_before
        assert shutil.disk_usage(disk).free > free_before + 10_000_000
        low.close()
        filler.unlink()


def test_on_a_nearly_full_disk_the_log_gives_way_and_orders_fill(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 64) as disk:
        svc = ServiceProcesses(
            tmp_path,
            workers=1,
            DATABASE_PATH=str(disk / "tacore.db"),
            TACORE_REQUEST_LOG_MIN_FREE_BYTES=str(24 << 20),
        )
        svc.start_main()
        try:
            with svc.client(timeout_ms=20_000) as c:
                c.call("get.market_data", {"symbol": "AAPL"})
                filler = fill_disk(disk, leave_bytes=12 << 20)  # below the 24 MiB floor
                time.sleep(1.5)  # the writer looks at the disk once a second
                for _ in range(100):
                    c.call("get.market_data", {"symbol": "AAPL", "history": 50})
                order = _buy_one(c)
                assert order["status"] == "filled"
                deadline = time.monotonic() + 30
                log: dict = {}
                while time.monotonic() < deadline:
                    log = c.health(detailed=True)["request_log"]
                    if log["shed"] >= 100 and not log["pending"]:
                        break
                    time.sleep(0.2)
                assert log["shed"] >= 100, log
                # Room again: rows are written again.
                filler.unlink()
                time.sleep(1.5)
                written = log["written"]
                c.call("get.market_data", {"symbol": "MSFT"})
                while time.monotonic() < deadline + 30:
                    log = c.health(detailed=True)["request_log"]
                    if log["written"] > written:
                        break
                    time.sleep(0.2)
                assert log["written"] > written, log
        finally:
            svc.stop()


def test_the_log_in_a_file_of_its_own_on_a_full_disk_never_stops_an_order(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "logdisk", 16) as disk:
        log_path = disk / "requests.db"
        svc = ServiceProcesses(
            tmp_path,
            workers=1,
            TACORE_REQUEST_LOG_PATH=str(log_path),
            TACORE_REQUEST_LOG_MIN_FREE_BYTES="0",  # no shedding: the log fails, loudly
        )
        svc.start_main()
        try:
            with svc.client(timeout_ms=20_000) as c:
                c.call("get.market_data", {"symbol": "AAPL"})
                deadline = time.monotonic() + 15
                while c.health(detailed=True)["request_log"]["written"] < 1:
                    assert time.monotonic() < deadline, "the log never wrote its first row"
                    time.sleep(0.1)
                fill_disk(disk, leave_bytes=0)
                orders = [_buy_one(c) for _ in range(20)]
                assert all(o["status"] == "filled" for o in orders), orders
                assert len(c.call("order.list", {})["orders"]) == 20
                for _ in range(50):
                    c.call("get.market_data", {"symbol": "AAPL", "history": 50})
                # The log's spool and file are on the full disk: what could not be kept is
                # counted (appends the spool refused, batches SQLite refused), never silent.
                while True:
                    log = c.health(detailed=True)["request_log"]
                    if log["dropped"] + log["errors"] + log["failed"] >= 1:
                        break
                    assert time.monotonic() < deadline + 30, f"a full disk went unnoticed: {log}"
                    time.sleep(0.2)
        finally:
            svc.stop()
        # The log's rows are in its file, none in the ledger's.
        assert _ids(log_path)
        ledger = sqlite3.connect(svc.db_path)
        try:
            names = {r[0] for r in ledger.execute("SELECT name FROM sqlite_master")}
        finally:
            ledger.close()
        assert "orders" in names and not {n for n in names if "request_logs" in n}, names


def test_a_disk_filled_by_something_else_leaves_room_for_orders(tmp_path: Path) -> None:
    # Not the log this time: another program takes every free byte at once. The ledger's
    # reserve file is given up before the next order's transaction, and made again later.
    with small_disk(tmp_path / "disk", 128) as disk:
        svc = ServiceProcesses(
            tmp_path,
            workers=1,
            DATABASE_PATH=str(disk / "tacore.db"),
            TACORE_DATABASE_RESERVE_BYTES=str(16 << 20),
            TACORE_REQUEST_LOG_MIN_FREE_BYTES=str(16 << 20),
        )
        reserve = disk / "tacore.db-reserve"
        svc.start_main()
        try:
            with svc.client(timeout_ms=20_000) as c:
                assert reserve.stat().st_size == 16 << 20  # made when the broker started
                assert c.health()["storage"]["reserve"] == {
                    "bytes": 16 << 20,
                    "kept": True,
                    "enabled": True,
                }
                filler = fill_disk(disk, leave_bytes=0)
                orders = [_buy_one(c) for _ in range(30)]
                assert all(o["status"] == "filled" for o in orders), orders
                assert not reserve.exists()
                health = c.health()
                assert health["storage"]["reserve"]["kept"] is False
                assert health["storage"]["ok"] is True  # orders are still written
                filler.unlink()
                deadline = time.monotonic() + 30
                while not reserve.exists():  # made again by a later order, at most every 10 s
                    assert time.monotonic() < deadline, "the reserve was not made again"
                    _buy_one(c)
                    time.sleep(0.5)
                assert c.health()["storage"]["reserve"]["kept"] is True
        finally:
            svc.stop()

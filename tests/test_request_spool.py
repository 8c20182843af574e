"""The request log off the broker's thread: the spool hand-off and the process that writes it.

The guarantee (storage/request_spool.py): every reply the broker sends has its row, whichever
process is killed with SIGKILL in the middle of a burst; a batch replayed after a crash is not
counted twice. Real processes, real sockets, real SQLite.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

from tacoreservice.config import RequestLogSettings, Settings
from tacoreservice.storage.request_log import RequestLogWriter
from tacoreservice.storage.request_log_process import _Drain
from tacoreservice.storage.request_spool import (
    END_OF_SPOOL,
    SpoolWriter,
    decode_records,
    encode_record,
    read_progress,
)
from tests.support.disk import fill_disk, small_disk
from tests.support.service import ServiceProcesses, pid_alive

# ---------------------------------------------------------------- the record format


def _record(i: int, **kw: Any) -> bytes:
    fields: dict[str, Any] = {
        "created": 1_800_000_000.0 + i,
        "request_id": f"r-{i}",
        "method": "test.echo",
        "worker_id": "w-1",
        "raw": orjson.dumps({"method": "test.echo", "params": {"payload": i}}),
        "reply": orjson.dumps({"status": "success", "data": {"payload": i}}),
        "ok": True,
        "error_code": None,
        "processing_ms": 0.5,
        "wait_ms": 0.25,
        "client": None,
    }
    fields.update(kw)
    return encode_record(**fields)


def test_records_round_trip_and_a_torn_tail_waits() -> None:
    odd = _record(2, request_id=None, method="ÿ\ud800", error_code="INVALID", client="scanner")
    data = _record(1) + odd
    records, used, marker = decode_records(data + _record(3)[:-5])
    assert (used, marker) == (len(data), 0)
    assert [r.request_id for r in records] == ["r-1", None]
    assert records[1].method == "ÿ\ud800" and records[1].client == "scanner"
    assert records[1].error_code == "INVALID" and records[0].error_code is None
    assert records[0].raw == orjson.dumps({"method": "test.echo", "params": {"payload": 1}})
    assert records[1].position == len(_record(1))


def test_markers_end_a_read_and_damage_is_refused(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path)
    spool.append(_record(1))
    spool.close()
    data = (spool.folder / "seg-000001").read_bytes()
    records, used, marker = decode_records(data)
    assert len(records) == 1 and marker == END_OF_SPOOL and used == len(data)
    with pytest.raises(ValueError, match="damaged"):
        decode_records(b"\x00" * 64)


class _Killed(Exception):
    """Stands for a SIGKILL of the writer: nothing after the point it is raised runs."""


def test_a_batch_replayed_after_a_writer_crash_is_not_counted_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer dies after committing a batch and before noting it: the next writer reads
    # the same records again and must recognise them in the table.
    db = tmp_path / "t.db"
    spool = SpoolWriter(tmp_path / "spool")
    for i in range(40):
        spool.append(_record(i))
    writer = RequestLogWriter(db, Settings().request_log)
    commit = writer.write_batch

    def commit_then_die(entries: list[Any], **kw: Any) -> bool:
        commit(entries, **kw)
        raise _Killed

    monkeypatch.setattr(writer, "write_batch", commit_then_die)
    with pytest.raises(_Killed):
        _Drain(spool.folder, writer, db).drain()
    monkeypatch.undo()
    progress = read_progress(spool.folder)
    assert progress["offset"] == 0 and progress["writing"] > 0  # committed, not noted
    for i in range(40, 50):
        spool.append(_record(i))
    second = _Drain(spool.folder, writer, db)
    assert second.replay_to == progress["writing"]
    second.drain()
    writer.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT COUNT(*), MAX(attempts) FROM request_logs").fetchone()
    assert rows == (50, 1)
    assert read_progress(spool.folder)["written"] == 50


def test_only_the_batch_being_written_is_looked_up_again(tmp_path: Path) -> None:
    # A writer that stopped cleanly between batches left nothing half done: the next one
    # looks nothing up, and a record with the id of an older row is written as a retry.
    db = tmp_path / "t.db"
    spool = SpoolWriter(tmp_path / "spool")
    spool.append(_record(1))
    writer = RequestLogWriter(db, Settings().request_log)
    _Drain(spool.folder, writer, db).drain()
    spool.append(_record(1, created=1_900_000_000.0))
    second = _Drain(spool.folder, writer, db)
    assert second.replay_to == 0
    second.drain()
    writer.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT COUNT(*), MAX(attempts) FROM request_logs").fetchone()
    assert rows == (1, 2)


# ---------------------------------------------------------------- kill -9 during a burst


class Burst:
    """A pipelined DEALER client: keeps ``depth`` requests in flight with its own ids and
    records which of them got a reply."""

    def __init__(self, endpoint: str, prefix: str, depth: int = 32):
        self.endpoint = endpoint
        self.prefix = prefix
        self.depth = depth
        self.sent: list[str] = []
        self.answered: set[str] = set()
        self.errors: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        in_flight = 0
        try:
            while not self.stop.is_set():
                while in_flight < self.depth:
                    rid = f"{self.prefix}-{len(self.sent)}"
                    body = {"request_id": rid, "method": "test.echo", "params": {"payload": 1}}
                    sock.send_multipart([b"", orjson.dumps(body)])
                    self.sent.append(rid)
                    in_flight += 1
                if sock.poll(100):
                    reply = orjson.loads(sock.recv_multipart()[-1])
                    in_flight -= 1
                    self._count(reply)
            # Collect what is still on its way (the broker is alive in some tests).
            while in_flight and sock.poll(2000):
                reply = orjson.loads(sock.recv_multipart()[-1])
                in_flight -= 1
                self._count(reply)
        finally:
            sock.close(linger=0)

    def _count(self, reply: dict[str, Any]) -> None:
        if reply["status"] == "success":
            self.answered.add(reply["request_id"])
        else:
            self.errors.append(reply)

    def run_until(self, answered: int, timeout: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while len(self.answered) < answered and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.answered) >= answered, "the burst did not get going"

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)


def _rows(db: Path, prefix: str) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(
            conn.execute(
                "SELECT request_id, attempts FROM request_logs WHERE request_id LIKE ?",
                (f"{prefix}-%",),
            ).fetchall()
        )


def _wait_gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), f"process {pid} still alive"


def test_kill9_of_the_broker_mid_burst_loses_no_row_of_a_reply_sent(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=2, TACORE_RATE_LIMIT_ENABLED=0)
    try:
        main = svc.start_main()
        writer = svc.health()["request_log"]["writer_pid"]
        burst = Burst(svc.endpoint, "b9")
        burst.run_until(400)
        os.kill(main.pid, signal.SIGKILL)
        main.wait()
        burst.finish()
        # The writer outlives the broker: it writes what the broker handed off, then leaves.
        _wait_gone(writer)
        rows = _rows(svc.log_path, "b9")
        assert burst.answered <= rows.keys()  # every reply a client got has its row
        assert rows.keys() <= set(burst.sent)  # and no row was made up
        assert set(rows.values()) == {1}  # none twice
        assert not list((tmp_path / "tacore-requests.db-spool").glob("*"))  # drained and removed
    finally:
        svc.stop()


def test_kill9_of_the_writer_mid_burst_loses_no_row(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=2, TACORE_RATE_LIMIT_ENABLED=0)
    try:
        svc.start_main()
        writer = svc.health()["request_log"]["writer_pid"]
        burst = Burst(svc.endpoint, "w9")
        burst.run_until(300)
        os.kill(writer, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(burst.answered) < 1500 and time.monotonic() < deadline:
            time.sleep(0.01)
        burst.finish()
        assert not burst.errors, burst.errors[:3]
        assert len(burst.answered) == len(burst.sent)  # the broker answered every request
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log = svc.health()["request_log"]
            if log["running"] and not log["pending"]:
                break
            time.sleep(0.1)
        assert log["writer_restarts"] >= 1 and log["writer_pid"] != writer, log
        assert log["running"] and not log["pending"] and not log["failed"], log
        rows = _rows(svc.log_path, "w9")
        assert rows.keys() == burst.answered
        assert set(rows.values()) == {1}
    finally:
        svc.stop()


def test_a_spool_left_by_a_dead_broker_and_writer_is_written_by_the_next(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=1, TACORE_RATE_LIMIT_ENABLED=0)
    try:
        main = svc.start_main()
        writer = svc.health()["request_log"]["writer_pid"]
        os.kill(writer, signal.SIGSTOP)  # a writer that cannot keep up, then dies with it
        burst = Burst(svc.endpoint, "both")
        burst.run_until(200)
        os.kill(main.pid, signal.SIGKILL)
        os.kill(writer, signal.SIGKILL)
        main.wait()
        burst.finish()
        _wait_gone(writer)
        assert not _rows(svc.log_path, "both")  # nothing written yet: all in the spool
        svc.procs.clear()
        svc.start_main()  # the same database: its writer finds the abandoned spool
        deadline = time.monotonic() + 60
        while not burst.answered <= _rows(svc.log_path, "both").keys():
            assert time.monotonic() < deadline, "the abandoned spool was not written"
            time.sleep(0.1)
        rows = _rows(svc.log_path, "both")
        assert rows.keys() <= set(burst.sent) and set(rows.values()) == {1}
    finally:
        svc.stop()


def test_a_full_disk_holds_the_writer_back_and_loses_nothing(tmp_path: Path) -> None:
    # The note before a batch cannot be written: the batch goes back to the spool (no row
    # written without its note, so a crash then could not write one twice) and the process
    # lives on; once the disk has room, every record is written once.
    with small_disk(tmp_path / "disk", 8) as disk:
        db = disk / "log.db"
        spool = SpoolWriter(disk / "spool")
        for i in range(30):
            spool.append(_record(i))
        writer = RequestLogWriter(db, RequestLogSettings(min_free_bytes=0))  # no shedding
        assert writer.open()
        drain = _Drain(spool.folder, writer, db)
        filler = fill_disk(disk, leave_bytes=0)
        assert drain.drain() is False
        assert drain.offset == 0 and not drain.batch
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM request_logs").fetchone() == (0,)
        filler.unlink()
        for i in range(30, 40):
            spool.append(_record(i))
        assert drain.drain() is True
        writer.close()
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT COUNT(*), MAX(attempts) FROM request_logs").fetchone()
        assert rows == (40, 1)
        assert read_progress(spool.folder)["written"] == 40
        spool.close()

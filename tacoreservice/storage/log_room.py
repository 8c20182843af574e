"""What keeps the request log out of the way of what matters more: the size of its file, and
the disk's last free bytes.

The log once shared the ledger's file. Unbounded, it grew to 1.29 GB in 37 s of requests and,
on a full disk, every order failed, the freed space refilled by the log's backlog within a
second. Now it has a file of its own (``request_log.path``), and:

- its rows may take ``request_log.max_bytes``; past that the oldest are deleted (their pages
  are reused by later rows, so the file stops growing);
- below ``request_log.min_free_bytes`` of free disk, new rows are shed (the writer counts them)
  and half the old ones deleted, their pages given back to the disk (the file is made with
  incremental auto-vacuum), where the ledger can use them. That is done in small steps, each
  through a WAL emptied before the next, because a nearly full disk has no room for more.
"""

from __future__ import annotations

import logging
import math
import shutil
import sqlite3
import time
from pathlib import Path

from tacoreservice.config import RequestLogSettings, is_in_memory

__all__ = ["LogRoom", "request_log_bytes"]

log = logging.getLogger("tacoreservice.request_log")

_STEP_BYTES = 1024 * 1024  # handed back to the disk per step
_STEP_ROWS = 1000  # rows deleted per transaction on a low disk
_GIVE_BACK_BUDGET_S = 1.0  # of one trim; the rest waits for the next (2 s later)


def request_log_bytes(conn: sqlite3.Connection) -> int:
    """The bytes the ``request_logs`` rows and their indexes take in the file."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'request_logs'"
        ).fetchall()
    ]
    try:
        marks = ",".join("?" * len(names))
        row = conn.execute(
            f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ({marks})", names
        ).fetchone()
        return int(row[0])
    except sqlite3.OperationalError:  # a SQLite built without the dbstat table: estimate
        row = conn.execute(
            "SELECT COALESCE(SUM(LENGTH(request_data) + LENGTH(response_data) + 200), 0) "
            "FROM request_logs"
        ).fetchone()
        return int(row[0])


class LogRoom:
    """The writer's view of the room it may take (one per writer, on its thread)."""

    def __init__(self, db_path: str | Path, settings: RequestLogSettings):
        self.db_path = db_path
        self.settings = settings
        self.next_check = 0.0  # when the rows' size is looked at next (time.monotonic())
        self._disk_checked_at = -1.0
        self._disk_was_low = False

    def disk_low(self) -> bool:
        """Whether the disk holding the database has less than ``min_free_bytes`` free
        (looked at most once a second)."""
        floor = self.settings.min_free_bytes
        if floor <= 0 or is_in_memory(self.db_path):
            return False
        now = time.monotonic()
        if now - self._disk_checked_at >= 1.0:
            self._disk_checked_at = now
            folder = Path(self.db_path).expanduser().absolute().parent
            try:
                self._disk_was_low = shutil.disk_usage(folder).free < floor
            except OSError:
                self._disk_was_low = False
        return self._disk_was_low

    def trim(self, conn: sqlite3.Connection, disk_low: bool = False) -> int:
        """Delete the oldest rows beyond ``max_bytes`` (looked at every 10 s), or, with
        ``disk_low``, half of them (at most every 2 s), giving their pages back to the disk;
        returns how many were deleted."""
        now = time.monotonic()
        if now < self.next_check:
            return 0
        self.next_check = now + (2.0 if disk_low else 10.0)
        deadline = now + _GIVE_BACK_BUDGET_S
        if disk_low:
            self._give_back(conn, deadline)  # pages an earlier trim freed, first
        cap = self.settings.max_bytes
        if not disk_low and cap <= 0:
            return 0
        size = request_log_bytes(conn)
        target = size // 2 if disk_low else cap
        if size <= target or size == 0:
            return 0
        rows = int(conn.execute("SELECT COUNT(*) FROM request_logs").fetchone()[0])
        excess = max(1, math.ceil(rows * (size - target) / size))
        # On a low disk in small transactions, each followed by a give-back: the WAL then
        # never needs much more than one step's room, which a nearly full disk still has.
        step = _STEP_ROWS if disk_low else excess
        removed = 0
        while removed < excess:
            with conn:
                deleted = int(
                    conn.execute(
                        "DELETE FROM request_logs WHERE rowid IN (SELECT rowid FROM "
                        "request_logs ORDER BY created_at LIMIT ?)",
                        (min(step, excess - removed),),
                    ).rowcount
                )
            removed += deleted
            if deleted == 0:
                break
            if disk_low:
                self._give_back(conn, deadline)
        log.info(
            "request log: deleted the %d oldest rows (%s; %d bytes of rows, target %d)",
            removed,
            "the disk is low" if disk_low else "over request_log.max_bytes",
            size,
            target,
        )
        return removed

    def _give_back(self, conn: sqlite3.Connection, deadline: float) -> None:
        """Hand the file's free pages back to the file system, a step of ``_STEP_BYTES`` at a
        time, until ``deadline``.

        Each step's moved pages pass through the WAL, which a TRUNCATE checkpoint empties
        before the next step: so this needs about one step of free disk (1 MiB), where a
        single ``incremental_vacuum`` of a large file would need room for all the pages it
        moves, and fail for want of it on exactly the disk it is meant to relieve.
        """
        step = max(1, _STEP_BYTES // int(conn.execute("PRAGMA page_size").fetchone()[0]))
        while time.monotonic() < deadline:
            free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if free_pages == 0:
                break
            pages = min(free_pages, step)
            # execute() would step the vacuum once (one page); executescript runs it through.
            conn.executescript(f"PRAGMA incremental_vacuum({pages});")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:  # a reader still uses the WAL: go on at the next trim
                break

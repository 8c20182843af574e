"""What keeps the request log out of the way of what matters more: the size of its file, and
the disk's last free bytes.

The log once shared the ledger's file. Unbounded, it grew to 1.29 GB in 37 s of requests and,
on a full disk, every order failed, the freed space refilled by the log's backlog within a
second. Now it has a file of its own (``request_log.path``), and:

- its rows may take ``request_log.max_bytes``; past that the oldest are deleted (their pages
  are reused by later rows, so the file stops growing);
- below ``request_log.min_free_bytes`` of free disk, new rows are shed (the writer counts them)
  and half the old ones deleted, their pages given back to the disk (the file is made with
  incremental auto-vacuum, and its WAL truncated), where the ledger can use them.
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
        ``disk_low``, half of them (at most every 2 s); returns how many were deleted."""
        now = time.monotonic()
        if now < self.next_check:
            return 0
        self.next_check = now + (2.0 if disk_low else 10.0)
        cap = self.settings.max_bytes
        if not disk_low and cap <= 0:
            return 0
        size = request_log_bytes(conn)
        target = size // 2 if disk_low else cap
        if size <= target or size == 0:
            return 0
        rows = int(conn.execute("SELECT COUNT(*) FROM request_logs").fetchone()[0])
        excess = max(1, math.ceil(rows * (size - target) / size))
        with conn:
            removed = int(
                conn.execute(
                    "DELETE FROM request_logs WHERE rowid IN (SELECT rowid FROM request_logs "
                    "ORDER BY created_at LIMIT ?)",
                    (excess,),
                ).rowcount
            )
        if disk_low:
            # Free pages back to the file system: the vacuum shrinks the file at the
            # checkpoint, and TRUNCATE leaves no WAL behind. (execute() would step the
            # vacuum once, freeing one page; executescript runs it to the end.)
            conn.executescript("PRAGMA incremental_vacuum;")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        log.info(
            "request log: deleted the %d oldest rows (%s; %d bytes of rows, target %d)",
            removed,
            "the disk is low" if disk_low else "over request_log.max_bytes",
            size,
            target,
        )
        return removed

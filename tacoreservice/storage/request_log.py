"""The request log: every request the broker answers, written to ``request_logs`` off the hot path.

The broker's loop must never wait for the disk, so :meth:`RequestLogWriter.record` only appends
to an in-memory deque; a background thread owns the SQLite connection and writes batches with
one ``executemany`` per transaction. When the disk cannot keep up (or is broken) the backlog is
bounded: the oldest entries are dropped and counted, so memory stays flat and the loss is
visible in :meth:`RequestLogWriter.stats` instead of as an out-of-memory crash.

Credentials are taken out on the writer thread too: the value of any key named in
``redact_fields`` (``security.redact_fields``: api_key, password, token, ...) becomes
``"[REDACTED]"`` at any depth of the request and reply bodies, and the known secret values
(``mask_values``, from :func:`tacoreservice.security.secrets.secret_values`) become ``***``
in every body, JSON or not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tacoreservice.config import RequestLogSettings, is_in_memory
from tacoreservice.security.redaction import BodyRedactor
from tacoreservice.storage.database import (
    SchemaVersionError,
    open_database,
    open_request_log_database,
)
from tacoreservice.storage.log_room import LogRoom

# logs/performance.log (config/logging.yaml): one line per request, written by the writer
# thread one batch per record, so the broker's loop never formats or writes them.
performance_log = logging.getLogger("tacoreservice.performance")

__all__ = [
    "RequestLogEntry",
    "RequestLogWriter",
    "purge_request_logs",
    "adopt_legacy_rows",
    "utc_now_iso",
    "to_iso_utc",
    "TRUNCATION_MARKER",
]

log = logging.getLogger(__name__)

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Appended to a cut body; the numbers let an operator see how much was lost.
TRUNCATION_MARKER = "...[truncated: {kept} of {total} bytes kept]"

_COLUMNS = (
    "request_id",
    "method",
    "worker_id",
    "request_data",
    "response_data",
    "processing_time_ms",
    "status",
    "created_at",
    "error_code",
    "client_id",
    "queue_wait_ms",
)
# One row per request_id (the documented PRIMARY KEY): a request that ran again under the same
# id (a client retry after its cached reply expired, or a reused id the broker refused) keeps
# its first arrival (created_at, request_data, client) and shows the latest attempt's outcome,
# with the count in `attempts`.
_INSERT_SQL = (
    f"INSERT INTO request_logs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (request_id) DO UPDATE SET attempts = request_logs.attempts + 1, "
    "updated_at = excluded.created_at, worker_id = excluded.worker_id, "
    "response_data = excluded.response_data, processing_time_ms = excluded.processing_time_ms, "
    "status = excluded.status, error_code = excluded.error_code, "
    "queue_wait_ms = excluded.queue_wait_ms"
)
_SELECT_COLUMNS = "rowid AS id, " + ", ".join(_COLUMNS) + ", attempts, updated_at"


def utc_now_iso() -> str:
    """Now as ISO-8601 UTC text with microseconds, e.g. ``2026-11-21T10:00:00.123456Z``.

    The fixed width makes text order equal time order, which retention and the ``since`` /
    ``until`` filters rely on.
    """
    return datetime.now(UTC).strftime(ISO_FORMAT)


def to_iso_utc(value: str | datetime) -> str:
    """Normalise a datetime or ISO-8601 text to the stored form (naive values are UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"expected an ISO-8601 date/time, got {value!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(ISO_FORMAT)


Body = str | bytes | dict[str, Any] | list[Any] | None


@dataclass(slots=True)
class RequestLogEntry:
    """One row of ``request_logs``.

    Bodies may be given as received (``bytes`` frames, or parsed JSON): decoding, encoding and
    truncation happen on the writer thread, not on the broker's hot path.
    """

    request_id: str | None
    method: str | None
    worker_id: str | None
    request_data: Body
    response_data: Body
    processing_time_ms: float | None
    status: str | None
    created_at: str = field(default_factory=utc_now_iso)
    error_code: str | None = None
    client_id: str | None = None
    queue_wait_ms: float | None = None


def _body_text(body: Body, max_bytes: int, redactor: BodyRedactor | None = None) -> str | None:
    if body is None:
        return None
    if redactor:
        # Redact the whole body before cutting it: a cut body is no longer JSON, and a secret
        # cut in half would no longer match.
        if isinstance(body, bytes | bytearray | memoryview):
            body = bytes(body).decode("utf-8", errors="replace")
        elif not isinstance(body, str):
            body = json.dumps(
                redactor.value(body), ensure_ascii=False, separators=(",", ":"), default=str
            )
        body = redactor.text(body)
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
    else:
        text = (
            body
            if isinstance(body, str)
            else json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
        )
        # Cheap exit for the common case: a short text cannot exceed the limit.
        if len(text) * 4 <= max_bytes:
            return text
        raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return raw.decode("utf-8", errors="replace")
    # errors="ignore" drops a multi-byte character cut in half at the boundary.
    kept = raw[:max_bytes].decode("utf-8", errors="ignore")
    return kept + TRUNCATION_MARKER.format(kept=len(kept.encode("utf-8")), total=len(raw))


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _entry_row(
    entry: RequestLogEntry, max_bytes: int, redactor: BodyRedactor | None = None
) -> tuple[Any, ...]:
    # Coerce every field to a type SQLite takes, so one odd entry cannot fail a whole batch.
    return (
        # The primary key: a request refused before its id could be read gets one of its own.
        _text(entry.request_id) or f"unidentified-{uuid.uuid4().hex}",
        _text(entry.method) or "",
        _text(entry.worker_id),
        _body_text(entry.request_data, max_bytes, redactor),
        _body_text(entry.response_data, max_bytes, redactor),
        _number(entry.processing_time_ms),
        _text(entry.status),
        _text(entry.created_at),
        _text(entry.error_code),
        _text(entry.client_id),
        _number(entry.queue_wait_ms),
    )


def _cutoff(retention_days: float) -> str:
    """The stored time before which a row is past ``retention_days``."""
    return (datetime.now(UTC) - timedelta(days=retention_days)).strftime(ISO_FORMAT)


def adopt_legacy_rows(
    conn: sqlite3.Connection, ledger_path: str | Path, since: str | None = None
) -> int:
    """Move the ``request_logs`` rows a release before the split kept in the ledger file
    into the log's file ``conn`` (only those created at or after ``since``: older ones are
    past retention); returns how many rows were new here.

    The copy commits before the ledger's table is dropped, and a row already here is kept, so
    a crash between the two steps only means the copy runs again at the next start, and two
    writers doing it at once copy each row once. The ledger keeps the dropped table's pages
    for its own later rows (``VACUUM`` it with the service stopped to give them back).
    """
    if is_in_memory(ledger_path) or not Path(ledger_path).expanduser().is_file():
        return 0
    open_database(ledger_path).close()  # a file still at version 4 renames its table now
    columns = ", ".join((*_COLUMNS, "attempts", "updated_at"))
    recent = "" if since is None else " WHERE created_at >= ?"
    saved_isolation = conn.isolation_level
    conn.isolation_level = None  # explicit transactions below
    conn.execute("ATTACH DATABASE ? AS ledger", (str(Path(ledger_path).expanduser()),))
    moved = 0
    try:
        # IMMEDIATE takes the write lock of both files before the table is looked for, so a
        # second writer waits and then finds it gone (or copies nothing new).
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute(
                "SELECT 1 FROM ledger.sqlite_master WHERE type = 'table' "
                "AND name = 'legacy_request_logs'"
            ).fetchone()
            if found:
                moved = conn.execute(
                    f"INSERT OR IGNORE INTO main.request_logs ({columns}) "
                    f"SELECT {columns} FROM ledger.legacy_request_logs{recent} ORDER BY rowid",
                    () if since is None else (since,),
                ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if found:  # only once the copy is durable
            conn.execute("DROP TABLE IF EXISTS ledger.legacy_request_logs")
    finally:
        conn.execute("DETACH DATABASE ledger")
        conn.isolation_level = saved_isolation
    if moved:
        log.info("request log: moved %d rows out of the ledger file %s", moved, ledger_path)
    return int(moved)


def purge_request_logs(conn: sqlite3.Connection, retention_days: float, chunk: int = 5000) -> int:
    """Delete rows older than ``retention_days`` (0 keeps everything); return how many.

    Deletes in chunks, each its own transaction, so other processes are not locked out of the
    file for the whole purge of a large backlog.
    """
    if retention_days <= 0:
        return 0
    cutoff = _cutoff(retention_days)
    total = 0
    while True:
        with conn:
            cur = conn.execute(
                "DELETE FROM request_logs WHERE rowid IN "
                "(SELECT rowid FROM request_logs WHERE created_at < ? LIMIT ?)",
                (cutoff, chunk),
            )
        total += max(cur.rowcount, 0)
        if cur.rowcount < chunk:
            return total


class RequestLogWriter:
    """Batching writer of ``request_logs`` rows on its own thread.

    ``record()`` is non-blocking, thread-safe and O(1). The thread writes a batch when
    ``batch_size`` rows are waiting or ``flush_interval_ms`` has passed, and deletes rows older
    than ``retention_days`` at start and then at most every ``purge_interval_s``. SQLite or file
    errors are logged and counted in :meth:`stats`; a failed batch is retried
    ``max_attempts`` times and then given up (counted in ``failed``), and the writer goes on.

    ``redact_fields`` and ``mask_values`` take credentials out of the bodies (see the module
    docstring); both are applied on the writer thread, never in ``record()``.
    """

    def __init__(
        self,
        db_path: str | Path,
        settings: RequestLogSettings,
        *,
        max_backlog: int = 100_000,
        max_attempts: int = 3,
        purge_interval_s: float = 3600.0,
        redact_fields: Sequence[str] = (),
        mask_values: Sequence[str] = (),
        ledger_path: str | Path | None = None,
    ) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        self.db_path = db_path
        # Rows an older release kept in the ledger file move here on the first open.
        self.ledger_path = ledger_path
        self.settings = settings
        self.max_backlog = max_backlog
        self.max_attempts = max(1, max_attempts)
        self.purge_interval_s = purge_interval_s
        self._batch_size = settings.batch_size
        self._interval_s = settings.flush_interval_ms / 1000.0
        redactor = BodyRedactor(redact_fields, mask_values)
        self._redactor = redactor if redactor else None

        self._cond = threading.Condition(threading.Lock())
        self._backlog: deque[RequestLogEntry] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._flush_wanted = 0  # highest `recorded` count some flush() is waiting for

        # Counters; recorded == written + dropped + failed + shed + pending + in flight.
        self._recorded = 0
        self._shed = 0  # not written: the disk was low (settings.min_free_bytes)
        self._trimmed = 0  # deleted early: over settings.max_bytes, or the disk was low
        self._written = 0
        self._dropped = 0
        self._failed = 0
        self._batches = 0
        self._errors = 0
        self._purged = 0
        self._last_error: str | None = None
        self._last_error_at: str | None = None

        # Owned by the writer thread.
        self._conn: sqlite3.Connection | None = None
        self._next_purge = 0.0
        self.room = LogRoom(db_path, settings)
        self._shed_logged_at = -60.0
        self._open_error: BaseException | None = None
        self._startup_error: BaseException | None = None
        self._started = threading.Event()
        self._last_logged: str | None = None
        self._last_logged_at = 0.0

    # -- public API ------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the writer thread and open the database; retention runs right after.

        Raises :class:`SchemaVersionError` (the file belongs to a newer release: a deployment
        mistake that should stop the service). Other database problems do not raise; they
        show up in :meth:`stats` and the writer keeps retrying.
        """
        if not self.settings.enabled or self._thread is not None:
            return
        if self._closed:
            raise RuntimeError("RequestLogWriter was closed; create a new one")
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()
        self._started.wait(timeout)
        if isinstance(self._startup_error, SchemaVersionError):
            self.close()
            raise self._startup_error

    def record(self, entry: RequestLogEntry) -> None:
        """Queue one entry. Never blocks on I/O and never raises for storage problems."""
        if not self.settings.enabled:
            return
        with self._cond:
            self._recorded += 1
            if self._closed:
                self._dropped += 1
                return
            if len(self._backlog) >= self.max_backlog:
                self._backlog.popleft()
                self._dropped += 1
            self._backlog.append(entry)
            if len(self._backlog) == self._batch_size:
                self._cond.notify_all()

    def write_batch(self, entries: list[RequestLogEntry], disk_low: bool | None = None) -> bool:
        """Write ``entries`` on the calling thread, for a caller that is the writer itself
        (the request-log process, which has no broker loop to keep free): the same performance
        lines, retries, counters and retention as the thread, without the thread. True when
        written (or shed), False when given up after ``max_attempts`` (counted in ``failed``).

        ``disk_low``: the caller already looked at the disk (and acted on what it saw), so the
        rows are shed or written as it says; None looks now.

        Raises :class:`SchemaVersionError` when the file belongs to a newer release. Not for a
        writer whose thread was started.
        """
        if self._thread is not None:
            raise RuntimeError("write_batch() is for a writer without its thread")
        if self._conn is None and not self._batches:
            self._ensure_conn()
            if isinstance(self._open_error, SchemaVersionError):
                raise self._open_error
        with self._cond:
            self._recorded += len(entries)
        self._write_performance(entries)
        if self.room.disk_low() if disk_low is None else disk_low:
            self._shed_rows(entries)
            return True
        for attempt in range(1, self.max_attempts + 1):
            if self._write(entries):
                with self._cond:
                    self._written += len(entries)
                    self._batches += 1
                self._maybe_purge()
                self._maybe_trim()
                return True
            if attempt < self.max_attempts:
                time.sleep(min(self._interval_s, 1.0))
        self._give_up(entries, self.max_attempts, rest=False)
        return False

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until every entry recorded before this call is written or given up.

        Returns False on timeout, or when the writer is not running and entries are waiting.
        Whether rows were given up after errors is in :meth:`stats` (``failed``).
        """
        with self._cond:
            target = self._recorded
            if self._settled() >= target:
                return True
            if not self._running():
                return False
            self._flush_wanted = max(self._flush_wanted, target)
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._settled() >= target or not self._running(), timeout
            ) and (self._settled() >= target)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is waiting, stop the thread and close the connection. Idempotent."""
        with self._cond:
            self._closed = True
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("request log writer did not stop within %.1fs", timeout)
        elif thread is None:
            self._reset_conn()  # used through write_batch, on this thread

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "enabled": self.settings.enabled,
                "running": self._running(),
                "recorded": self._recorded,
                "written": self._written,
                "dropped": self._dropped,
                "failed": self._failed,
                "pending": len(self._backlog),
                "batches": self._batches,
                "errors": self._errors,
                "purged": self._purged,
                "shed": self._shed,
                "trimmed": self._trimmed,
                "last_error": self._last_error,
                "last_error_at": self._last_error_at,
            }

    def __enter__(self) -> RequestLogWriter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _settled(self) -> int:
        return self._written + self._dropped + self._failed + self._shed

    def open(self) -> bool:
        """Open the file now (its schema, and the ledger's rows from before the split moved
        in) instead of at the first batch; a failure is counted as a batch's would be."""
        return self._ensure_conn() is not None

    # -- room on the disk ------------------------------------------------------------------

    def _shed_rows(self, entries: list[RequestLogEntry]) -> None:
        """The disk is low: these rows are not written, and the oldest rows give their pages
        back to the disk, for the ledger."""
        with self._cond:
            self._shed += len(entries)
            self._cond.notify_all()
        now = time.monotonic()
        if now - self._shed_logged_at >= 60.0:
            self._shed_logged_at = now
            log.warning(
                "request log: the disk under %s has less than %d bytes free; %d rows shed so far",
                self.db_path,
                self.settings.min_free_bytes,
                self._shed,
            )
        self._maybe_trim(disk_low=True)

    def _maybe_trim(self, disk_low: bool = False) -> None:
        conn = self._ensure_conn()
        if conn is None:
            return
        try:
            removed = self.room.trim(conn, disk_low)
        except sqlite3.Error as exc:
            self._note_error("trimming the request log failed", exc)
            return
        if removed:
            with self._cond:
                self._trimmed += removed

    def _note_error(self, what: str, exc: BaseException) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        now = time.monotonic()
        with self._cond:
            self._errors += 1
            self._last_error = message
            self._last_error_at = utc_now_iso()
            # A broken disk fails every batch; one log line a minute says as much.
            quiet = message == self._last_logged and now - self._last_logged_at < 60.0
            if not quiet:
                self._last_logged, self._last_logged_at = message, now
        if not quiet:
            log.error("request log %s (database %s)", message, self.db_path)

    def _ensure_conn(self) -> sqlite3.Connection | None:
        if self._conn is None:
            try:
                self._conn = open_request_log_database(self.db_path)
            except (sqlite3.Error, OSError, RuntimeError) as exc:
                self._open_error = exc
                self._note_error("cannot open database", exc)
                return None
            if self.ledger_path is not None and not self.room.disk_low():
                since = None
                if self.settings.retention_days > 0:
                    since = _cutoff(self.settings.retention_days)
                try:
                    adopt_legacy_rows(self._conn, self.ledger_path, since)
                except (sqlite3.Error, OSError, RuntimeError) as exc:
                    # Tried again at the next start; the rows stay in the ledger meanwhile.
                    self._note_error("moving the ledger's old request_logs rows failed", exc)
        return self._conn

    def _reset_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _maybe_purge(self) -> None:
        # No connection means the disk is already failing; the next batch retries the open.
        conn = self._conn
        if conn is None or self.settings.retention_days <= 0:
            return
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self.purge_interval_s
        try:
            removed = purge_request_logs(conn, self.settings.retention_days)
        except sqlite3.Error as exc:
            self._note_error("retention purge failed", exc)
            return
        if removed:
            with self._cond:
                self._purged += removed
            log.info(
                "request log: deleted %d rows older than %s days",
                removed,
                self.settings.retention_days,
            )

    def _write_performance(self, entries: list[RequestLogEntry]) -> None:
        if not performance_log.isEnabledFor(logging.INFO):
            return
        # The processing time is the last field, alone, so the ops guide's
        # grep "processing_time" logs/performance.log | awk '{print $NF}' | sort -n
        # prints the times.
        lines = [
            f"{e.created_at} method={e.method or '-'} worker={e.worker_id or '-'} "
            f"status={e.status} queue_wait_ms={e.queue_wait_ms or 0.0:.3f} "
            f"request_id={e.request_id or '-'} processing_time_ms: {e.processing_time_ms:.3f}"
            for e in entries
        ]
        performance_log.info("\n".join(lines))

    def _write(self, entries: list[RequestLogEntry]) -> bool:
        conn = self._ensure_conn()
        if conn is None:
            return False
        max_bytes = self.settings.max_body_bytes
        try:
            rows = [_entry_row(e, max_bytes, self._redactor) for e in entries]
            with conn:  # one transaction per batch
                conn.executemany(_INSERT_SQL, rows)
        except sqlite3.Error as exc:
            self._note_error(f"writing {len(entries)} rows failed", exc)
            if not isinstance(exc, sqlite3.OperationalError):
                # A corrupt or replaced file: reopen it next time rather than reuse the handle.
                self._reset_conn()
            return False
        return True

    def _take_batch(self) -> list[RequestLogEntry]:
        # Called with the lock held.
        n = min(self._batch_size, len(self._backlog))
        popleft = self._backlog.popleft
        return [popleft() for _ in range(n)]

    def _give_up(self, batch: list[RequestLogEntry], attempts: int, rest: bool) -> None:
        with self._cond:
            lost = len(batch)
            if rest:
                # Closing on a broken disk: do not spend max_attempts on every batch left.
                lost += len(self._backlog)
                self._backlog.clear()
            self._failed += lost
            self._cond.notify_all()
        log.error("request log: gave up %d rows after %d failed attempts", lost, attempts)

    def _run(self) -> None:
        try:
            self._ensure_conn()
        finally:
            if isinstance(self._open_error, SchemaVersionError):
                self._startup_error = self._open_error
            self._started.set()
        if self._startup_error is not None:
            return
        # After start() has returned: a first purge after long downtime can take seconds.
        self._maybe_purge()

        retry: list[RequestLogEntry] = []
        attempts = 0
        deadline = time.monotonic() + self._interval_s
        try:
            while True:
                with self._cond:
                    while not (
                        retry
                        or self._stopping
                        or len(self._backlog) >= self._batch_size
                        or self._flush_wanted > self._settled()
                        or time.monotonic() >= deadline
                    ):
                        self._cond.wait(max(0.0, deadline - time.monotonic()))
                    stopping = self._stopping
                    fresh = not retry
                    batch = retry or self._take_batch()

                if batch and fresh:
                    # Once per request, not once per attempt at writing its row.
                    self._write_performance(batch)
                    if self.room.disk_low():
                        self._shed_rows(batch)
                        batch = []
                if batch:
                    if self._write(batch):
                        with self._cond:
                            self._written += len(batch)
                            self._batches += 1
                            self._cond.notify_all()
                        retry, attempts = [], 0
                    else:
                        attempts += 1
                        if attempts >= self.max_attempts:
                            self._give_up(batch, attempts, rest=stopping)
                            retry, attempts = [], 0
                        else:
                            retry = batch
                            time.sleep(min(self._interval_s, 1.0))
                        continue

                with self._cond:
                    more = len(self._backlog) >= self._batch_size or (
                        bool(self._backlog) and (stopping or self._flush_wanted > self._settled())
                    )
                if more:
                    continue
                if stopping:
                    break
                deadline = time.monotonic() + self._interval_s
                self._maybe_purge()
                self._maybe_trim()
        except BaseException as exc:  # a bug here must not stop logging silently
            self._note_error("writer thread crashed", exc)
            raise
        finally:
            self._reset_conn()
            with self._cond:
                self._cond.notify_all()

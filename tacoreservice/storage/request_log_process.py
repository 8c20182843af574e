"""The request-log process: turns the broker's spool into ``request_logs`` rows.

``python -m tacoreservice.storage.request_log_process SPOOL_FOLDER`` is started by the
broker (:class:`RequestLogProcess`) with the broker's exact settings, in its own process
group, and is restarted by it if it dies. It does everything the request log costs, apart
from packing a record per request and one ``write(2)`` per loop turn on the broker's side (see
:mod:`tacoreservice.storage.request_spool` for the guarantee):

1. read the records appended since the last batch;
2. write them in batches through
   :meth:`~tacoreservice.storage.request_log.RequestLogWriter.write_batch` on this process's
   own thread (decoding, redaction of credentials, truncation, one transaction per batch,
   the performance log, retention);
3. note in ``progress.json`` how far it got, and its totals, which the broker reads for
   health.check.

Before each batch's transaction the process notes where the batch ends; after a restart the
records up to that point are checked against the table first: rows a previous writer
committed before it could note them are recognised (same request_id and time) and skipped.
The process ends when the broker closes the spool, or once the broker has died (its lock is
free) and everything it appended is written; it then removes the spool. Spools left by a
broker and a writer that both died are drained by the next writer that starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tacoreservice.config import Settings
from tacoreservice.protocol.messages import utc_timestamp
from tacoreservice.storage.request_log import RequestLogEntry, RequestLogWriter
from tacoreservice.storage.request_spool import (
    END_OF_SEGMENT,
    SpoolRecord,
    SpoolWriter,
    decode_records,
    read_progress,
    segment_path,
    spool_root,
    spools,
    try_lock,
    write_progress,
)

__all__ = ["RequestLogProcess", "main"]

log = logging.getLogger("tacoreservice.request_log")

_CHUNK_BYTES = 4 * 1024 * 1024  # read at most this much of a segment at a time
_TOTALS = ("written", "failed", "batches", "errors", "purged", "shed", "trimmed")


def _unidentified(folder: Path, segment: int, position: int) -> str:
    place = f"{folder.name}/{segment}/{position}".encode()
    return "unidentified-" + hashlib.blake2b(place, digest_size=16).hexdigest()


def _entry(record: SpoolRecord, folder: Path, segment: int) -> RequestLogEntry:
    return RequestLogEntry(
        # A request refused before its id could be read gets one made from its place in the
        # spool, so a replayed record is recognised like any other.
        request_id=record.request_id or _unidentified(folder, segment, record.position),
        method=record.method or "",
        worker_id=record.worker_id,
        request_data=record.raw,
        response_data=record.reply,
        processing_time_ms=record.processing_ms,
        status="success" if record.ok else "error",
        created_at=utc_timestamp(record.created),
        error_code=record.error_code,
        client_id=record.client,
        queue_wait_ms=record.wait_ms,
    )


def _already_written(db_path: Any, entries: list[RequestLogEntry]) -> set[tuple[str, str]]:
    """(request_id, created_at) of the entries whose row shows them already (the first batch
    after a restart may have been committed by the writer that died)."""
    ids = list({str(e.request_id) for e in entries})
    found: set[tuple[str, str]] = set()
    with contextlib.closing(sqlite3.connect(str(db_path), timeout=30)) as conn:
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            try:
                rows = conn.execute(
                    "SELECT request_id, created_at, updated_at FROM request_logs "
                    f"WHERE request_id IN ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                return found  # no table, no row written
            for rid, created, updated in rows:
                found.add((rid, created))
                if updated:
                    found.add((rid, updated))
    return found


class _Drain:
    """Reads one spool, writes its records through ``writer`` in batches, notes the progress.

    A batch is written when ``batch_size`` records wait, when the first of them has waited
    ``interval_s``, or at the end of a segment or of the spool; only then is the position
    after it noted, so a crash loses no record. The end of the batch being written is noted
    before its transaction, so a crash between the commit and the note makes the next writer
    look up exactly those records, and none is counted twice.
    """

    def __init__(
        self,
        folder: Path,
        writer: RequestLogWriter,
        db_path: Any,
        batch_size: int = 500,
        interval_s: float = 0.2,
    ):
        self.folder = folder
        self.writer = writer
        self.db_path = db_path
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.progress = read_progress(folder)
        self.segment = int(self.progress["segment"])
        self.offset = int(self.progress["offset"])
        # A writer before this one died while writing the batch from the noted position up to
        # ``writing``: its transaction may have committed, so the records before that offset
        # are looked up in the table before they are written.
        self.replay_to = int(self.progress.pop("writing", 0))
        self.batch: list[RequestLogEntry] = []
        self.batch_start = self.offset  # offset of the batch's first record in the segment
        self.first_at = 0.0
        self.closed = False
        self.stalled = False  # the last write could not be noted: the batch went back
        self._save_failed_at = -60.0

    def read(self) -> int:
        """Take in what was appended since the last read: the number of records (a marker
        counts as one), writing the batch whenever it is due."""
        path = segment_path(self.folder, self.segment)
        try:
            with open(path, "rb") as f:
                f.seek(self.offset)
                data = f.read(_CHUNK_BYTES)
        except FileNotFoundError:
            return 0
        records, used, marker = decode_records(data, self.offset)
        if records and not self.batch:
            self.first_at = time.monotonic()
            self.batch_start = records[0].position
        self.batch.extend(_entry(r, self.folder, self.segment) for r in records)
        self.offset += used
        if marker:
            if not self.write():  # everything before the marker, then act on it
                return 0
            if marker == END_OF_SEGMENT:
                self.segment, self.offset, self.replay_to = self.segment + 1, 0, 0
                if self._note():  # else the next writer may still need the segment
                    with contextlib.suppress(OSError):
                        path.unlink()
            else:
                self.closed = True
            return len(records) + 1
        due = self.batch and (
            len(self.batch) >= self.batch_size
            or time.monotonic() - self.first_at >= self.interval_s
        )
        if due and not self.write():
            return 0
        return len(records)

    def write(self) -> bool:
        """Write the batch (its records up to ``offset``), then note ``offset`` as done.

        False when the disk cannot take the note that must come before the rows (a full disk):
        the batch is then given back to the spool, to be read again, and nothing is written.
        """
        entries, self.batch = self.batch, []
        if entries:
            # Rows shed on a low disk are not written, so they need no note before.
            disk_low = self.writer.room.disk_low()
            if not disk_low:
                # Noted before the transaction: if this process dies between the commit and
                # the note below, the next writer knows which records to look up.
                self.progress["writing"] = self.offset
                if not self._save():
                    self.progress.pop("writing", None)
                    self.offset = self.batch_start
                    self.stalled = True
                    return False
            skipped = 0
            if self.batch_start < self.replay_to:
                done = _already_written(self.db_path, entries)
                fresh = [e for e in entries if (e.request_id, e.created_at) not in done]
                skipped, entries = len(entries) - len(fresh), fresh
            before = self.writer.stats()
            if entries:
                self.writer.write_batch(entries, disk_low=disk_low)
            after = self.writer.stats()
            for key in _TOTALS:
                self.progress[key] = self.progress.get(key, 0) + after[key] - before[key]
            self.progress["written"] += skipped  # rows the writer before this one wrote
            self.progress["last_error"] = after["last_error"]
            self.progress["last_error_at"] = after["last_error_at"]
        self.stalled = False
        self._note()
        return True

    def _note(self) -> bool:
        self.progress.pop("writing", None)
        self.progress.update(segment=self.segment, offset=self.offset)
        # A note that fails leaves the last one in place, which is safe: it is older, and
        # names the batch it was written for if that batch was not noted as done.
        return self._save()

    def _save(self) -> bool:
        try:
            write_progress(self.folder, self.progress)
        except OSError as exc:
            now = time.monotonic()
            if now - self._save_failed_at >= 60.0:
                self._save_failed_at = now
                log.warning("request log: cannot note progress in %s: %s", self.folder, exc)
            return False
        return True

    def drain(self) -> bool:
        """Everything there is, now; False when the disk stopped it (the rest stays)."""
        while self.read():
            pass
        return self.write() and not self.stalled


def _broker_gone(folder: Path) -> bool:
    lock = try_lock(folder / "broker.lock")
    if lock is None:
        return False
    lock.close()
    return True


def run(folder: Path, settings: Settings) -> int:
    from tacoreservice.security.secrets import secret_values

    writer = RequestLogWriter(
        settings.request_log_path,
        settings.request_log,
        redact_fields=settings.security.redact_fields,
        mask_values=secret_values(settings),
        ledger_path=settings.database.path,
    )
    own_lock = try_lock(folder / "writer.lock")
    if own_lock is None:
        log.error("another writer already drains %s", folder)
        return 1
    # The file, its schema and the rows a release before the split kept in the ledger, before
    # any replayed batch is looked up in it.
    writer.open()
    cfg = settings.request_log
    interval = cfg.flush_interval_ms / 1000.0
    # Spools whose broker and writer both died: drain them first, they are the oldest rows.
    # Before the request log had a file of its own, spools lived beside the ledger.
    before_split = spool_root(settings.database.path)
    others = list(spools(folder.parent))
    if before_split != folder.parent:
        others += spools(before_split)
    for other in others:
        if other == folder:
            continue
        locks = [try_lock(other / "writer.lock"), try_lock(other / "broker.lock")]
        if all(lock is not None for lock in locks):
            log.warning("request log: writing the rows of an abandoned spool (%s)", other.name)
            if _Drain(other, writer, settings.request_log_path, cfg.batch_size, interval).drain():
                shutil.rmtree(other, ignore_errors=True)
        for lock in locks:
            if lock is not None:
                lock.close()
    if before_split != folder.parent:
        with contextlib.suppress(OSError):
            before_split.rmdir()  # only once no spool is left there
    drain = _Drain(folder, writer, settings.request_log_path, cfg.batch_size, interval)
    drained = True
    try:
        while not drain.closed:
            if drain.read():
                if len(drain.batch) < cfg.batch_size:
                    time.sleep(min(0.02, interval))  # let a batch gather
                continue
            if drain.batch:
                time.sleep(max(0.0, min(interval, drain.first_at + interval - time.monotonic())))
                continue
            if _broker_gone(folder):
                drained = drain.drain()  # whatever it appended before it died
                break
            time.sleep(interval)
    finally:
        writer.close()
    if not drained:  # a full disk: the next writer finds it as an abandoned spool
        log.warning("request log: %s is left for the next writer (the disk is full)", folder)
        return 0
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # the last spool of this database: leave no empty folder
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    settings = Settings.model_validate_json(os.environ["TACORE_SETTINGS_JSON"])
    from tacoreservice.logging_setup import setup_logging

    setup_logging(settings, "service")
    # The broker stops it by closing the spool; a signal to the group must not cut a batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return run(Path(args[0]), settings)


class RequestLogProcess:
    """The broker's side: the spool it appends to and the process that writes it out.

    ``append`` is the hand-off (a record kept in memory) and ``flush`` writes what was
    appended to the spool with one ``write(2)``: the broker flushes before it sends the
    replies of those records. ``poll`` (from the broker's heartbeat tick) restarts a writer
    that died; ``stats`` reads the writer's totals; ``close`` ends the spool and waits for the
    writer to finish it.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.spool: SpoolWriter | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._next_start = 0.0
        self._backoff = 0.5
        self._held: list[bytes] = []

    def start(self) -> None:
        self.spool = SpoolWriter(spool_root(self.settings.request_log_path))
        self._spawn()

    def _spawn(self) -> None:
        assert self.spool is not None
        env = dict(os.environ)
        env["TACORE_SETTINGS_JSON"] = self.settings.model_dump_json()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.spool.folder)],
            env=env,
            process_group=0,  # Ctrl+C at a terminal reaches the broker, which closes in order
        )

    def append(self, record: bytes) -> None:
        self._held.append(record)

    def flush(self) -> None:
        if not self._held:
            return
        held, self._held = self._held, []
        if self.spool is not None:
            self.spool.append_many(held)

    def poll(self) -> None:
        """Restart the writer if it died (with a growing pause if it keeps dying)."""
        proc = self.proc
        if proc is None or proc.poll() is None or self.spool is None or self.spool.closed:
            return
        now = time.monotonic()
        if now < self._next_start:
            return
        log.warning("request log writer exited with %s; starting another", proc.returncode)
        self.restarts += 1
        self._next_start = now + self._backoff
        self._backoff = min(self._backoff * 2, 30.0)
        self._spawn()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, Any]:
        spool = self.spool
        progress = read_progress(spool.folder) if spool is not None else {}
        appended = (spool.appended if spool is not None else 0) + len(self._held)
        dropped = spool.dropped if spool is not None else 0
        totals = {key: int(progress.get(key, 0)) for key in _TOTALS}
        return {
            "enabled": True,
            "running": self.running(),
            "recorded": appended + dropped,
            **totals,
            "dropped": dropped,
            "pending": max(0, appended - totals["written"] - totals["failed"] - totals["shed"]),
            "last_error": progress.get("last_error"),
            "last_error_at": progress.get("last_error_at"),
            "writer_restarts": self.restarts,
            "writer_pid": self.proc.pid if self.proc is not None else None,
        }

    def close(self, timeout: float = 30.0) -> None:
        """End the spool and wait for the writer to write it out (it then removes it)."""
        if self.spool is None:
            return
        self.flush()
        self.spool.close()
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is not None:
            self._spawn()  # someone must drain what is there
            proc = self.proc
            assert proc is not None
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "request log writer still busy after %.0f s; it finishes on its own", timeout
            )


if __name__ == "__main__":
    sys.exit(main())

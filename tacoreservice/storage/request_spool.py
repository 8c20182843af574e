"""The request log's hand-off: an append-only spool between the broker and the process that
writes ``request_logs``.

The broker's loop packs one record per finished request from bytes it already has (the
request and reply frames, a few numbers) and appends the records of a loop turn with a single
``write(2)``, *before* any of their replies leaves. It
never parses, redacts, formats or touches SQLite for the log: that is the request-log
process's work (:mod:`tacoreservice.storage.request_log_process`), which reads the spool,
turns records into rows and writes them in batches, and notes after each batch how far it
got (``progress.json``).

What this guarantees, and the crash tests in ``tests/test_request_spool.py`` check:

- every reply the broker sent has its record in the spool before it left;
- the spool is a file, not memory of either process: a ``kill -9`` of the broker loses none of
  it (its writer drains what is there, then exits; one left without a writer is drained by
  the next broker's writer), and a ``kill -9`` of the writer loses none of it (the broker
  starts another, which resumes after the last batch noted as done; a batch written but not
  yet noted is recognised row by row and not counted twice);
- so every reply sent becomes its row, except when the machine itself goes down before the
  kernel wrote the file out (no fsync per request: the same bargain as SQLite's
  ``synchronous=NORMAL``), when the disk refuses the append (counted as ``dropped``), or when
  the database keeps refusing a batch (given up after a few attempts, counted as ``failed``).

Layout: ``<request log's file>-spool/<broker pid>-<start ms>/`` holds ``broker.lock`` (held by the
broker while it runs), ``writer.lock`` (held by its writer), segments ``seg-000001`` ... of at
most :data:`SEGMENT_BYTES` each (the broker ends one with a marker and starts the next; the
writer deletes a segment it has finished), ``progress.json`` (the writer's position and
totals) and, once the broker closes the spool, a final marker. A record is
``magic | length | header | strings``; see :func:`encode_record`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SEGMENT_BYTES",
    "SpoolRecord",
    "SpoolWriter",
    "decode_records",
    "encode_record",
    "read_progress",
    "spool_root",
    "try_lock",
    "write_progress",
]

SEGMENT_BYTES = 64 * 1024 * 1024
_MAGIC = 0x54474F4C  # "LOGT"
# magic, length of what follows, created (unix s), processing ms, queue wait ms, ok,
# lengths of request_id, method, worker_id, error_code, client (0xFFFF: None), raw, reply
_HEAD = struct.Struct("<IIdddBHHHHHII")
_FRAME = struct.Struct("<II")
_NONE = 0xFFFF
# Markers are records with no body: the segment ends here / the spool is closed.
END_OF_SEGMENT = 1
END_OF_SPOOL = 2


def spool_root(db_path: str | Path) -> Path:
    """Where the spools of the brokers writing the request log ``db_path`` live."""
    return Path(f"{Path(db_path).expanduser()}-spool")


def segment_path(folder: Path, number: int) -> Path:
    return folder / f"seg-{number:06d}"


def _utf8(value: str | None) -> bytes:
    # surrogatepass: a lone surrogate in a name must not make the broker's append raise.
    return b"" if value is None else value.encode("utf-8", "surrogatepass")


def _text_at(data: bytes, pos: int, n: int) -> tuple[str | None, int]:
    if n == _NONE:
        return None, pos
    end = pos + n
    return data[pos:end].decode("utf-8", "surrogatepass"), end


def _size(value: str | None, encoded: bytes) -> int:
    return _NONE if value is None else len(encoded)


def encode_record(
    created: float,
    request_id: str | None,
    method: str | None,
    worker_id: str | None,
    raw: bytes,
    reply: bytes,
    ok: bool,
    error_code: str | None,
    processing_ms: float,
    wait_ms: float,
    client: str | None,
) -> bytes:
    """One finished request as spool bytes; runs on the broker thread, so it only packs."""
    rid, name, wid, code, who = (
        _utf8(request_id), _utf8(method), _utf8(worker_id), _utf8(error_code), _utf8(client)
    )  # fmt: skip
    length = (
        _HEAD.size - _FRAME.size
        + len(rid) + len(name) + len(wid) + len(code) + len(who) + len(raw) + len(reply)
    )  # fmt: skip
    head = _HEAD.pack(
        _MAGIC, length, created, processing_ms, wait_ms, ok,
        _size(request_id, rid), _size(method, name), _size(worker_id, wid),
        _size(error_code, code), _size(client, who), len(raw), len(reply),
    )  # fmt: skip
    return b"".join((head, rid, name, wid, code, who, raw, reply))


def _marker(kind: int) -> bytes:
    return _FRAME.pack(_MAGIC, 0) + bytes([kind]) + b"\x00" * 7


@dataclass(slots=True)
class SpoolRecord:
    """A finished request as the broker handed it off."""

    created: float
    request_id: str | None
    method: str | None
    worker_id: str | None
    raw: bytes
    reply: bytes
    ok: bool
    error_code: str | None
    processing_ms: float
    wait_ms: float
    client: str | None
    position: int  # offset of the record in its segment: names it for replays


def decode_records(data: bytes, base: int = 0) -> tuple[list[SpoolRecord], int, int]:
    """The complete records at the start of ``data`` (read from offset ``base`` of a segment),
    how many bytes they take, and the marker that ended them (0: none, the data ran out).

    A record cut short (still being written, or the broker died in the middle of its write)
    is left for the next read. Bytes that are not a record raise ValueError.
    """
    records: list[SpoolRecord] = []
    at = 0
    size = len(data)
    frame_size, head_size, unpack_frame, unpack_head = (
        _FRAME.size, _HEAD.size, _FRAME.unpack_from, _HEAD.unpack_from
    )  # fmt: skip
    while at + frame_size <= size:
        magic, length = unpack_frame(data, at)
        if magic != _MAGIC:
            raise ValueError(f"spool damaged at offset {base + at}")
        if length == 0:
            if at + frame_size + 8 > size:
                break
            return records, at + frame_size + 8, data[at + frame_size]
        end = at + frame_size + length
        if end > size:
            break
        (_, _, created, processing_ms, wait_ms, ok,
         n_rid, n_method, n_worker, n_code, n_client, raw_len, reply_len) = unpack_head(data, at)  # fmt: skip
        pos = at + head_size
        rid, pos = _text_at(data, pos, n_rid)
        method, pos = _text_at(data, pos, n_method)
        worker_id, pos = _text_at(data, pos, n_worker)
        code, pos = _text_at(data, pos, n_code)
        client, pos = _text_at(data, pos, n_client)
        raw_end = pos + raw_len
        records.append(
            SpoolRecord(
                created,
                rid,
                method,
                worker_id,
                data[pos:raw_end],
                data[raw_end : raw_end + reply_len],
                bool(ok),
                code,
                processing_ms,
                wait_ms,
                client,
                base + at,
            )  # fmt: skip
        )
        at = end
    return records, at, 0


def try_lock(path: Path) -> Any:
    """An open file holding an exclusive flock on ``path`` (kept while the object lives), or
    None when another process holds it. The kernel drops the lock when its holder dies."""
    handle = open(path, "a+")  # noqa: SIM115 - returned to the caller, who keeps it open
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def read_progress(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "progress.json").read_text())
    except (OSError, ValueError):
        return {"segment": 1, "offset": 0}
    return data if isinstance(data, dict) else {"segment": 1, "offset": 0}


def write_progress(folder: Path, progress: dict[str, Any]) -> None:
    """Atomically: a reader sees the old file or the new one, never half of it."""
    tmp = folder / "progress.json.tmp"
    tmp.write_text(json.dumps(progress))
    os.replace(tmp, folder / "progress.json")


def spools(root: Path) -> Iterator[Path]:
    if root.is_dir():
        yield from sorted(p for p in root.iterdir() if p.is_dir())


class SpoolWriter:
    """The broker's end: append records, start new segments, close with a final marker.

    ``append`` and ``append_many`` are one ``write(2)`` each; a write that fails or comes up
    short (a full disk) is undone and counted in ``dropped``, so the file always ends on a
    whole record.
    """

    def __init__(self, root: Path):
        self.folder = root / f"{os.getpid()}-{int(time.time() * 1000)}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = try_lock(self.folder / "broker.lock")
        self.segment = 0
        self._fd = -1
        self._size = 0
        self.appended = 0
        self.dropped = 0
        self.closed = False
        self._next_segment()

    def _next_segment(self) -> None:
        if self._fd >= 0:
            os.write(self._fd, _marker(END_OF_SEGMENT))
            os.close(self._fd)
        self.segment += 1
        path = segment_path(self.folder, self.segment)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0

    def append(self, record: bytes) -> bool:
        return self.append_many([record])

    def append_many(self, records: list[bytes]) -> bool:
        """Append ``records`` with one ``write(2)``: all of them, or (a full disk) none."""
        if not records:
            return True
        if self.closed:
            self.dropped += len(records)
            return False
        data = records[0] if len(records) == 1 else b"".join(records)
        try:
            written = os.write(self._fd, data)
        except OSError:
            written = -1
        if written != len(data):
            self.dropped += len(records)
            if written > 0:  # take the torn piece back out
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
            return False
        self.appended += len(records)
        self._size += written
        if self._size >= SEGMENT_BYTES:
            try:
                self._next_segment()
            except OSError:
                pass  # the next append fails and is counted
        return True

    def close(self) -> None:
        """No more records: the writer drains what is there and removes the spool."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            os.write(self._fd, _marker(END_OF_SPOOL))
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if self._lock is not None:
            self._lock.close()

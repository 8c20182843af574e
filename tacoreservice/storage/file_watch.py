"""Whether the database file a process opened is still the one at its path, and what a SQLite
failure means to a caller.

SQLite keeps writing through an open file descriptor: a database deleted or replaced under a
running service (a mistaken ``rm``, a restore copied over it, a volume remounted) takes every
later commit with it and nothing complains, so orders would be acknowledged into a file nobody
will read again. Each holder of the ledger remembers the file's identity (device and inode) when
it opens it and checks it before it writes; the broker checks it for ``health.check``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.storage.database import is_in_memory

__all__ = ["DatabaseWatch", "FileIdentity", "identity_of", "storage_error"]


@dataclass(frozen=True, slots=True)
class FileIdentity:
    device: int
    inode: int


def identity_of(path: str | Path) -> FileIdentity | None:
    """The file's identity, or None when nothing is at ``path``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return FileIdentity(st.st_dev, st.st_ino)


class DatabaseWatch:
    """Remembers the identity of the database file at ``path`` as it is now (just opened)."""

    def __init__(self, path: str | Path):
        self.path = str(path) if is_in_memory(path) else str(Path(path).expanduser())
        self.opened = None if is_in_memory(path) else identity_of(self.path)

    def problem(self) -> str | None:
        """Why writing to this file would be lost, or None while it is the one at its path."""
        if self.opened is None:
            return None
        now = identity_of(self.path)
        if now is None:
            return f"the database file {self.path} was deleted while the service was running"
        if now != self.opened:
            return f"the database file {self.path} was replaced while the service was running"
        return None

    def check(self, what: str) -> None:
        """Raise STORAGE_UNAVAILABLE before ``what`` writes into a file nobody will read."""
        problem = self.problem()
        if problem is not None:
            raise ServiceError(
                ErrorCode.STORAGE_UNAVAILABLE,
                f"{problem}; {what} refuses to write so that nothing is acknowledged and then "
                "lost. Restart the service to open the file now at that path (or restore a "
                "backup there: tacore restore); nothing was written, retry with the same "
                "request_id afterwards",
            )


# Fragments of SQLite's messages for a file or disk that cannot take the write (as opposed to
# a lock held by another writer, which is OVERLOADED, or a bug, which is INTERNAL).
_STORAGE_FAILURES = (
    "disk is full",
    "disk i/o error",
    "unable to open",
    "readonly database",
    "file is not a database",
    "database disk image is malformed",
    "attempt to write a readonly",
)


def storage_error(exc: sqlite3.Error, what: str) -> ServiceError:
    """``exc`` from SQLite as the error a client can act on: STORAGE_UNAVAILABLE (retryable:
    the transaction was rolled back) for a file or disk that failed, INTERNAL otherwise."""
    text = str(exc)
    if any(fragment in text.lower() for fragment in _STORAGE_FAILURES):
        return ServiceError(
            ErrorCode.STORAGE_UNAVAILABLE,
            f"{what} could not be written ({text}); nothing was recorded, retry with the same "
            "request_id once the disk or file is fixed",
        )
    return ServiceError(ErrorCode.INTERNAL, f"{what} failed: {text}")

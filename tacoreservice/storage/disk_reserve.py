"""Room kept on the ledger's disk for orders: a reserve file, given up when the disk fills.

The request log gives way on a low disk (:mod:`~tacoreservice.storage.log_room`), but the disk
can also fill in one go, by something else (another program, a runaway file): the ledger, in
a file of its own, then has no free page for the next order, and every order would be refused
until someone made room. So the ledger's writers keep ``database.reserve_bytes`` (32 MiB) in a
file beside it, ``NAME-reserve``. Before each write transaction they look at the disk (one
``statvfs``, about a microsecond): under :data:`RELEASE_BELOW` free, the file is deleted and
its room is the ledger's; once the disk has room for the reserve and the request log's floor
(``request_log.min_free_bytes``) again, it is made again (at most every 10 s).

A reserve that is gone is visible (``health.check``'s ``storage.reserve``): the disk filled
up, and orders are living on the reserve until someone makes room.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from pathlib import Path

from tacoreservice.config import Settings, is_in_memory

__all__ = ["RELEASE_BELOW", "DiskReserve", "reserve_path"]

log = logging.getLogger(__name__)

RELEASE_BELOW = 8 * 1024 * 1024  # free bytes under which the reserve is given up
_REMAKE_EVERY_S = 10.0


def reserve_path(ledger_path: str | Path) -> Path:
    return Path(f"{Path(ledger_path).expanduser()}-reserve")


class DiskReserve:
    """One writer's view of the reserve beside ``ledger_path`` (several may share the file)."""

    def __init__(self, ledger_path: str | Path, size: int, keep_free: int = 0):
        self.size = size
        self.keep_free = keep_free
        # None: no reserve (size 0, or a database in memory).
        enabled = size > 0 and not is_in_memory(ledger_path)
        self.path = reserve_path(ledger_path) if enabled else None
        self._next_make = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DiskReserve:
        """The reserve the settings ask for, made again only above the request log's floor."""
        db = settings.database
        return cls(db.path, db.reserve_bytes, settings.request_log.min_free_bytes)

    def _free(self) -> int | None:
        assert self.path is not None
        try:
            return shutil.disk_usage(self.path.parent).free
        except OSError:
            return None

    def before_write(self) -> None:
        """Give the reserve up if the disk is nearly full; make it if there is room again."""
        if self.path is None:
            return
        free = self._free()
        if free is None:
            return
        if free < RELEASE_BELOW:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
                log.warning(
                    "the disk under %s had %d bytes free: its %d-byte reserve is given up so "
                    "that orders can be written; make room on that disk",
                    self.path.parent,
                    free,
                    self.size,
                )
            return
        now = time.monotonic()
        if now < self._next_make or free < self.size + self.keep_free + RELEASE_BELOW:
            return
        self._next_make = now + _REMAKE_EVERY_S
        if not self.path.exists():
            self.make()

    def make(self) -> bool:
        """Write the reserve (beside, then renamed in: it is whole or not there)."""
        assert self.path is not None
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _allocate(fd, self.size)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            log.info("could not make the disk reserve %s: %s", self.path, exc)
            return False
        return True

    def state(self) -> dict[str, object]:
        """For health: the reserve's size, and whether it is there now."""
        if self.path is None:
            return {"bytes": 0, "kept": False, "enabled": False}
        return {"bytes": self.size, "kept": self.path.exists(), "enabled": True}


def _allocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without it
            raise
        chunk = b"\0" * (1 << 20)
        left = size
        while left > 0:
            left -= os.write(fd, chunk[: min(left, len(chunk))])

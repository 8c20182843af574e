"""A small real disk (a tmpfs of its own, root only) and a filler, for the full-disk tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill_disk", "small_disk"]


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(disk: Path, leave_bytes: int) -> Path:
    """Take every free byte of ``disk`` but the last ``leave_bytes``; returns the filler file.

    Unbuffered: a buffered file keeps the tail of a chunk that did not fit (when the disk
    fills within a buffer's length of a chunk's end), and every later flush, truncate
    included, fails on it with ENOSPC.
    """
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while f.write(chunk):
                pass
        f.truncate(max(0, f.tell() - leave_bytes))
    return filler

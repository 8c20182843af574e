"""The test harness itself: the ports it hands out, how it reports a service that died, and
the disk filler of the full-disk tests."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.support.disk import fill_disk, small_disk
from tests.support.service import ServiceProcesses, free_port


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    # 1,000 random picks from 12,768 ports would repeat about 40 of them; a service whose
    # frontend and backend (or API) port are one cannot start.
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)


def test_waiting_for_workers_stops_at_once_when_the_service_exits(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=1)
    svc.env["ZMQ_BACKEND_PORT"] = str(svc.frontend_port)  # the broker cannot bind the second
    started = time.monotonic()
    try:
        with pytest.raises(AssertionError, match="(?s)the service exited.*cannot bind"):
            svc.start_main()
    finally:
        svc.stop()
    assert time.monotonic() - started < 30  # not the 60 s deadline


def test_fill_disk_fills_a_disk_whose_space_ends_just_short_of_a_chunk(tmp_path: Path) -> None:
    # The filler writes 1 MiB at a time. Here the free space ends one page short of a MiB, the
    # case where a buffered filler failed with ENOSPC on its own truncate.
    with small_disk(tmp_path / "disk", 8) as disk:
        (disk / "other").write_bytes(b"x" * 4096)
        assert shutil.disk_usage(disk).free % (1 << 20) == (1 << 20) - 4096
        filler = fill_disk(disk, leave_bytes=0)
        assert shutil.disk_usage(disk).free == 0
        filler.unlink()
        fill_disk(disk, leave_bytes=1 << 20)
        assert shutil.disk_usage(disk).free == 1 << 20

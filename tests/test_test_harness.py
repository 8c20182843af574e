"""The test harness itself: the ports it hands out and how it reports a service that died."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.service import ServiceProcesses, free_port


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    # 3,000 random picks from 12,768 ports would repeat one a few hundred times over; a service
    # whose frontend and backend (or API) port are one cannot start.
    ports = [free_port() for _ in range(3000)]
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

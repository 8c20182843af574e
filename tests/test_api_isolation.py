"""The monitoring API in a process of its own: HTTP clients cannot starve the broker.

Real processes and real sockets: the embedded service, a flood of idle TCP connections to the
API port, ZeroMQ clients asking the broker meanwhile.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.service import ServiceProcesses, child_pids, cmdline, pid_alive


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProcesses]:
    service = ServiceProcesses(
        tmp_path,
        workers=1,
        TACORE_API_MAX_CONNECTIONS=100,
        TACORE_API_HEADER_TIMEOUT_S=2,
    )
    service.start_main()
    yield service
    service.stop()


def _api_pid(svc: ServiceProcesses) -> int:
    assert svc.main is not None
    [pid] = [
        p
        for p in child_pids(svc.main.pid)
        if "-m tacoreservice.monitoring.api_process" in cmdline(p)
    ]
    return pid


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _api_health(svc: ServiceProcesses, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"{svc.api_url}/health", timeout=2.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_idle_http_connections_cannot_starve_the_broker(svc: ServiceProcesses) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    assert svc.main is not None
    broker_pid = svc.main.pid
    assert _api_health(svc).status_code == 200
    broker_fds_before = _open_fds(broker_pid)
    held: list[socket.socket] = []
    try:
        for _ in range(1100):  # beyond a default 1,024 descriptors
            s = socket.create_connection(("127.0.0.1", svc.api_port), timeout=5)
            held.append(s)  # connected, and never a byte sent
        # The broker answers ZeroMQ clients at once, and its descriptors did not move.
        for _ in range(5):
            started = time.monotonic()
            assert svc.health(timeout_ms=2000)["status"] == "healthy"
            assert time.monotonic() - started < 2.0
        assert _open_fds(broker_pid) < broker_fds_before + 20
        # The API closed what it would not serve: beyond the cap at once, the rest when their
        # headers did not come within 2 s. It serves again while they are still held open.
        api_pid = _api_pid(svc)
        deadline = time.monotonic() + 30
        while _open_fds(api_pid) > 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _open_fds(api_pid) <= 200
        assert _api_health(svc).status_code == 200
    finally:
        for s in held:
            s.close()
    # The broker may open as many descriptors as its hard limit allows.
    limits = Path(f"/proc/{broker_pid}/limits").read_text()
    [row] = [line for line in limits.splitlines() if line.startswith("Max open files")]
    soft_limit, hard_limit = row.split()[3:5]
    assert soft_limit == hard_limit


def test_a_killed_api_process_is_replaced(svc: ServiceProcesses) -> None:
    first = _api_pid(svc)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid_alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _api_health(svc).status_code == 200
    second = _api_pid(svc)
    assert second != first
    # The broker never noticed: it served ZeroMQ clients throughout.
    assert svc.health()["status"] == "healthy"

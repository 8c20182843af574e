"""A worker's credit of two: the request waiting in a worker behind the running one.

It is the broker's as much as the running one: when the worker dies it is re-dispatched
exactly like it, and it never runs twice, even when the worker was only frozen and comes back
(it declines what it may no longer start). Real broker, real worker processes, SIGKILL and
SIGSTOP; each run leaves a line in a marker file.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tacoreservice.client import TACoreClient
from tests.support.service import ServiceProcesses

pytestmark = pytest.mark.timeout(120)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _until(check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"{what} not reached within {timeout} s")


def _call(svc: ServiceProcesses, out: dict[str, Any], name: str, **params: Any) -> threading.Thread:
    def run() -> None:
        with TACoreClient(svc.endpoint, timeout_ms=60_000, retries=0) as c:
            out[name] = c.request("test.sleep", params, request_id=f"{name}-{os.getpid()}")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _holding(svc: ServiceProcesses) -> dict[str, Any]:
    """The worker that holds a request waiting behind its running one."""
    return next((w for w in svc.health()["worker_list"] if w["prefetched"]), {})


def test_a_waiting_request_of_a_killed_worker_is_re_dispatched_and_runs_once(
    tmp_path: Path,
) -> None:
    # One worker; test.sleep counts as quick for this broker, so a second call waits in the
    # worker behind the first instead of in the broker's queue.
    svc = ServiceProcesses(tmp_path, workers=1, TACORE_PREFETCH_BELOW_MS=60_000)
    try:
        svc.start_main()
        with svc.client() as c:
            c.call("test.sleep", {"seconds": 0.01})  # the broker learns the method's cost
        runs_a, runs_b = tmp_path / "a.txt", tmp_path / "b.txt"
        out: dict[str, Any] = {}
        first = _call(svc, out, "a", seconds=2.0, marker=str(runs_a))
        _until(lambda: _lines(runs_a), what="a running")
        second = _call(svc, out, "b", seconds=0.01, marker=str(runs_b))
        victim = _until(lambda: _holding(svc), what="b waiting in the worker")["pid"]
        assert not _lines(runs_b)  # held, not started
        os.kill(victim, signal.SIGKILL)
        first.join(60)
        second.join(60)
        assert out["a"]["status"] == "success" and out["b"]["status"] == "success"
        assert out["a"]["data"]["pid"] != victim and out["b"]["data"]["pid"] != victim
        assert len(_lines(runs_a)) == 2  # the running one ran again, as before
        assert [line.split()[1] for line in _lines(runs_b)] == [out["b"]["request_id"]]
        health = svc.health()
        assert health["requests"]["redispatched"] >= 2
    finally:
        svc.stop()


def test_a_frozen_worker_declines_what_was_given_to_another_meanwhile(tmp_path: Path) -> None:
    # A lone broker and workers started by hand (no supervisor): the frozen worker is only
    # evicted for missing its heartbeats, and comes back when thawed.
    svc = ServiceProcesses(tmp_path, workers=1, TACORE_PREFETCH_BELOW_MS=60_000)
    try:
        svc.start_broker()
        frozen = svc.start_worker("frozen")
        svc.wait_workers(1)
        with svc.client() as c:
            c.call("test.sleep", {"seconds": 0.01})
        runs_a, runs_b = tmp_path / "a.txt", tmp_path / "b.txt"
        out: dict[str, Any] = {}
        first = _call(svc, out, "a", seconds=1.0, marker=str(runs_a))
        _until(lambda: _lines(runs_a), what="a running")
        second = _call(svc, out, "b", seconds=0.01, marker=str(runs_b))
        _until(lambda: _holding(svc), what="b waiting in the worker")
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            # Evicted after the heartbeat window; a new worker takes over both requests.
            _until(lambda: svc.health()["workers"]["alive"] == 0, what="eviction")
            svc.start_worker("other")
            first.join(30)
            second.join(30)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        assert out["a"]["data"]["pid"] != frozen.pid and out["b"]["data"]["pid"] != frozen.pid
        # Thawed, the frozen worker finishes what it was running (a stale reply, dropped) but
        # must not start the request it held: that one ran on the other worker already.
        svc.wait_workers(2, timeout=20)
        time.sleep(0.5)
        assert [line.split()[1] for line in _lines(runs_b)] == [out["b"]["request_id"]]
        assert len(_lines(runs_a)) == 2
    finally:
        svc.stop()


def test_nothing_waits_behind_a_slow_method(tmp_path: Path) -> None:
    # The default: a request waits in a worker only behind one known to take under 20 ms, so a
    # quick call is not stuck behind a long analysis while another worker frees up.
    svc = ServiceProcesses(tmp_path, workers=2)
    try:
        svc.start_main()
        with svc.client() as c:
            c.call("test.sleep", {"seconds": 0.3})  # known to be slow from now on
        out: dict[str, Any] = {}
        slow = [_call(svc, out, f"slow{i}", seconds=1.5) for i in range(2)]
        _until(lambda: svc.health()["workers"]["busy"] == 2, what="both workers busy")
        quick = _call(svc, out, "quick", seconds=0.0)
        time.sleep(0.3)
        assert not _holding(svc)  # it waits in the broker's queue, free to go to either
        assert svc.health()["queue_depth"] == 1
        for thread in [*slow, quick]:
            thread.join(30)
        assert out["quick"]["status"] == "success"
    finally:
        svc.stop()

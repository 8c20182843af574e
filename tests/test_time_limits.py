"""Per-method time limits: a handler that never returns no longer takes its worker out for good.

Real processes: the embedded service (broker, supervisor, workers) or a lone broker with a lone
worker, the test-only methods of tests/support/test_methods.py (``test.sleep`` blocks without
looking at cancellation, ``test.steps`` checks it between steps).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tacoreservice.client import TACoreError
from tacoreservice.config import load_settings
from tacoreservice.service.time_limits import DEFAULT_TIME_LIMITS_S, TimeLimits
from tests.support.service import ServiceProcesses, pid_alive, wait_job

# test.sleep: hard limit 3 s (soft 2.4 s); test.steps: hard 2.5 s (soft 2 s).
LIMITS = "test.sleep=3,test.steps=2.5"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProcesses]:
    service = ServiceProcesses(tmp_path, workers=1, TACORE_TIME_LIMITS=LIMITS)
    service.start_main()
    yield service
    service.stop()


def _runs(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


def test_defaults_fit_each_method_and_settings_override_them() -> None:
    limits = TimeLimits()
    assert limits.hard("get.market_data") < limits.hard("analyze.stock")
    assert limits.hard("analyze.stock", job=True) >= 3600  # jobs are for long work
    assert limits.hard("no.such.method") == 120.0
    assert limits.soft("get.market_data") == pytest.approx(0.8 * limits.hard("get.market_data"))
    settings = load_settings(
        None, env={"TACORE_TIME_LIMITS": "get.market_data=5, analyze.stock=60"}
    )
    custom = TimeLimits.from_settings(settings.worker)
    assert custom.hard("get.market_data") == 5 and custom.hard("analyze.stock") == 60
    assert custom.hard("scan.market") == DEFAULT_TIME_LIMITS_S["scan.market"]
    with pytest.raises(Exception, match="method=seconds"):
        load_settings(None, env={"TACORE_TIME_LIMITS": "get.market_data"})
    with pytest.raises(Exception, match="at most a week"):
        load_settings(None, env={"TACORE_TIME_LIMITS": "get.market_data=-1"})


def test_a_handler_that_never_returns_is_answered_and_its_worker_replaced(
    svc: ServiceProcesses, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    [stuck_pid] = svc.worker_pids()
    with svc.client(timeout_ms=30_000, retries=0) as c:
        started = time.monotonic()
        with pytest.raises(TACoreError) as info:
            c.call("test.sleep", {"seconds": 3600, "marker": str(marker)})
        waited = time.monotonic() - started
    assert info.value.code == "TIME_LIMIT_EXCEEDED"
    assert "time limit of 3 s" in str(info.value) and "TACORE_TIME_LIMITS" in str(info.value)
    assert 2.5 < waited < 15
    # The supervisor killed the stuck process and started another, which serves.
    svc.wait_workers(1, timeout=30, exclude_pid=stuck_pid)
    deadline = time.monotonic() + 10
    while pid_alive(stuck_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(stuck_pid)
    with svc.client(timeout_ms=10_000) as c:
        assert c.call("test.echo", {"payload": 1})["payload"] == 1
    # Answered once and never run again on the new worker.
    assert len(_runs(marker)) == 1
    health = svc.health()
    assert health["worker_events"]["time_limits_hit"] == 1
    assert health["requests"]["errors_by_code"]["TIME_LIMIT_EXCEEDED"] == 1


def test_health_says_degraded_while_every_worker_is_stuck(svc: ServiceProcesses) -> None:
    outcome: dict[str, Any] = {}

    def call() -> None:
        with svc.client(timeout_ms=30_000, retries=0) as c:
            try:
                c.call("test.sleep", {"seconds": 3600})
            except TACoreError as exc:
                outcome["code"] = exc.code

    caller = threading.Thread(target=call)
    caller.start()
    try:
        # Past the soft limit (2.4 s), before the hard one (3 s) ends it.
        deadline = time.monotonic() + 10
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = svc.health()
            if health["workers"]["stuck"]:
                break
            time.sleep(0.05)
        assert health["workers"] == {"alive": 1, "busy": 1, "idle": 0, "stuck": 1}
        assert health["status"] == "degraded"
        assert [w["stuck"] for w in health["worker_list"]] == [True]
        try:
            urllib.request.urlopen(f"{svc.api_url}/health", timeout=5)
            http_status = 200
        except urllib.error.HTTPError as exc:
            http_status = exc.code
            body = orjson.loads(exc.read())
        assert http_status == 503
        assert body["workers_stuck"] == 1 and "stuck" in body["reason"]
    finally:
        caller.join(timeout=30)
    assert outcome == {"code": "TIME_LIMIT_EXCEEDED"}
    svc.wait_workers(1, timeout=30)
    assert svc.health()["status"] == "healthy"


def test_the_soft_limit_stops_a_handler_that_checks_and_keeps_its_worker(
    svc: ServiceProcesses, tmp_path: Path
) -> None:
    marker = tmp_path / "steps.txt"
    [pid] = svc.worker_pids()
    with svc.client(timeout_ms=30_000, retries=0) as c:
        started = time.monotonic()
        with pytest.raises(TACoreError) as info:
            c.call("test.steps", {"steps": 200, "delay": 0.05, "marker": str(marker)})
        waited = time.monotonic() - started
        assert info.value.code == "TIME_LIMIT_EXCEEDED"
        assert 1.9 < waited < 2.5  # at the soft limit (2 s), not the hard one (2.5 s)
        # It stopped part way, and the same process serves the next request.
        done = [line for line in _runs(marker) if line.startswith("done")]
        assert 0 < len(done) < 200
        assert c.call("test.echo", {"payload": 2})["pid"] == pid
    assert svc.health()["worker_events"]["time_limits_hit"] == 0


def test_a_job_past_its_limit_fails_with_the_code(tmp_path: Path) -> None:
    svc = ServiceProcesses(
        tmp_path, workers=2, TACORE_TIME_LIMITS=LIMITS, TACORE_JOB_TIME_LIMIT_S="2"
    )
    svc.start_main()
    try:
        with svc.client(timeout_ms=10_000) as c:
            # test.steps checks between steps: stopped at its soft limit, the worker kept.
            soft = c.call("job.submit", {"method": "test.steps", "params": {"steps": 400}})
            job = wait_job(c, soft["job_id"], {"failed", "cancelled", "succeeded"}, timeout=30)
            assert job["state"] == "failed"
            assert job["error"]["code"] == "TIME_LIMIT_EXCEEDED"
            # test.sleep never checks: the broker fails it at the hard limit (3 s: the
            # method's, longer than the jobs' 2 s) and its worker is replaced.
            hard = c.call("job.submit", {"method": "test.sleep", "params": {"seconds": 3600}})
            job = wait_job(c, hard["job_id"], {"failed", "cancelled", "succeeded"}, timeout=30)
            assert job["state"] == "failed" and job["attempts"] == 1
            assert job["error"]["code"] == "TIME_LIMIT_EXCEEDED"
            assert "3 s" in job["error"]["message"]
        svc.wait_workers(2, timeout=30)
    finally:
        svc.stop()


def test_a_worker_nobody_supervises_ends_itself(tmp_path: Path) -> None:
    """A worker on another host has no supervisor of ours: past the hard limit and a grace it
    exits on its own (status 75), so the broker's answer is never contradicted by a late run."""
    svc = ServiceProcesses(tmp_path, workers=0, TACORE_TIME_LIMITS=LIMITS)
    svc.start_broker()
    worker = svc.start_worker("remote-1")
    try:
        svc.wait_workers(1, timeout=30)
        with svc.client(timeout_ms=30_000, retries=0) as c, pytest.raises(TACoreError) as info:
            c.call("test.sleep", {"seconds": 3600})
        assert info.value.code == "TIME_LIMIT_EXCEEDED"
        assert worker.wait(timeout=30) == 75
        assert svc.health()["workers"]["alive"] == 0
    finally:
        svc.stop()

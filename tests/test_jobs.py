"""Jobs end to end: submit, progress, result, cancel, broker restart, lost workers."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tacoreservice.client import TACoreError
from tests.support.service import ServiceProcesses, wait_job


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProcesses]:
    service = ServiceProcesses(tmp_path, workers=2)
    service.start_main()
    yield service
    service.stop()


def test_submit_progress_result_and_list(svc: ServiceProcesses) -> None:
    with svc.client() as c:
        t0 = time.monotonic()
        sub = c.call("job.submit", {"method": "test.steps", "params": {"steps": 6, "delay": 0.15}})
        assert time.monotonic() - t0 < 1.0  # answered at once, not after the run
        assert sub["state"] == "queued" and sub["job_id"].startswith("job-")
        running = wait_job(c, sub["job_id"], {"running"})
        seen_partial = None
        while True:
            job = c.call("job.status", {"job_id": sub["job_id"]})
            if job["state"] == "running" and 0 < job["percent"] < 100 and job["progress"]:
                seen_partial = job
            if job["state"] == "succeeded":
                break
            time.sleep(0.05)
        assert running["worker_id"].startswith("local-")
        assert seen_partial is not None and seen_partial["stage"].startswith("step")
        assert "done" in seen_partial["progress"]["roles"].values()  # per-role progress
        result = c.call("job.result", {"job_id": sub["job_id"]})
        assert result["state"] == "succeeded" and result["percent"] == 100
        assert result["result"]["steps"] == 6 and result["attempts"] == 1
        assert result["started_at"] <= result["finished_at"]
        listed = c.call("job.list", {"state": "succeeded"})
        assert sub["job_id"] in [j["job_id"] for j in listed["jobs"]]
        assert "result" not in listed["jobs"][0]


def test_async_flag_on_any_method(svc: ServiceProcesses) -> None:
    with svc.client() as c:
        sub = c.call("get.market_data", {"symbol": "AAPL", "async": True})
        job = wait_job(c, sub["job_id"], {"succeeded", "failed"})
        assert job["state"] == "succeeded" and job["method"] == "get.market_data"
        assert c.call("job.result", {"job_id": sub["job_id"]})["result"]["symbol"] == "AAPL"


def test_failed_job_records_the_error(svc: ServiceProcesses) -> None:
    with svc.client() as c:
        bad = c.call("job.submit", {"method": "get.market_data", "params": {"symbol": "APPL"}})
        job = wait_job(c, bad["job_id"], {"failed"})
        assert job["error"]["code"] == "INVALID_PARAMS" and "AAPL" in job["error"]["message"]


def test_cancel_running_and_queued_jobs(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=1)  # one job runs at a time
    svc.start_main()
    marker = tmp_path / "steps.txt"
    queued_marker = tmp_path / "queued.txt"
    try:
        with svc.client() as c:
            long = c.call(
                "job.submit",
                {
                    "method": "test.steps",
                    "params": {"steps": 50, "delay": 0.1, "marker": str(marker)},
                },
            )
            waiting = c.call(
                "job.submit",
                {"method": "test.steps", "params": {"steps": 2, "marker": str(queued_marker)}},
            )
            wait_job(c, long["job_id"], {"running"})
            assert c.call("job.status", {"job_id": waiting["job_id"]})["state"] == "queued"
            cancelled = c.call("job.cancel", {"job_id": waiting["job_id"]})
            assert cancelled["state"] == "cancelled"
            time.sleep(0.3)
            c.call("job.cancel", {"job_id": long["job_id"]})
            job = wait_job(c, long["job_id"], {"cancelled"}, timeout=10)
            assert job["error"]["code"] == "CANCELLED"
            steps_done = sum(
                1 for line in marker.read_text().splitlines() if line.startswith("done")
            )
            assert 0 < steps_done < 50  # stopped between steps, well before the end
            assert c.call("job.result", {"job_id": long["job_id"]})["result"] is None
            time.sleep(0.5)
            assert not queued_marker.exists()  # the cancelled queued job never started
            with pytest.raises(TACoreError) as err:
                c.call("job.cancel", {"job_id": "job-unknown"})
            assert err.value.code == "NOT_FOUND"
    finally:
        svc.stop()


def test_bad_submissions(svc: ServiceProcesses) -> None:
    with svc.client() as c:
        for params, code in [
            ({"method": "no.such", "params": {}}, "METHOD_NOT_FOUND"),
            ({"method": "job.list"}, "METHOD_NOT_FOUND"),
            ({"params": {}}, "INVALID_PARAMS"),
            ({"method": "test.steps", "params": [1]}, "INVALID_PARAMS"),
        ]:
            with pytest.raises(TACoreError) as err:
                c.call("job.submit", params)
            assert err.value.code == code, params
        with pytest.raises(TACoreError) as err:
            c.call("job.status", {"job_id": "job-nope"})
        assert err.value.code == "NOT_FOUND"


def test_retried_submit_creates_one_job(svc: ServiceProcesses) -> None:
    rid = "submit-" + uuid.uuid4().hex
    with svc.client() as c:
        first = c.request(
            "job.submit", {"method": "test.steps", "params": {"steps": 1}}, request_id=rid
        )
        again = c.request(
            "job.submit", {"method": "test.steps", "params": {"steps": 1}}, request_id=rid
        )
        assert first["data"]["job_id"] == again["data"]["job_id"]
        jobs = c.call("job.list", {"method": "test.steps"})["jobs"]
        assert [j["job_id"] for j in jobs].count(first["data"]["job_id"]) == 1 and len(jobs) == 1


def test_interactive_requests_are_served_while_jobs_run(svc: ServiceProcesses) -> None:
    with svc.client() as c:
        for _ in range(4):
            c.call("job.submit", {"method": "test.steps", "params": {"steps": 10, "delay": 0.1}})
        time.sleep(0.3)
        t0 = time.monotonic()
        assert c.call("test.echo", {"payload": 1})["payload"] == 1
        assert time.monotonic() - t0 < 0.5  # a worker is kept free of jobs
        running = c.call("job.list", {"state": "running"})["jobs"]
        assert len(running) == 1  # 2 workers: at most one runs jobs


def test_job_survives_broker_restart(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=2)
    marker = tmp_path / "runs.txt"
    try:
        main = svc.start_main()
        with svc.client() as c:
            sub = c.call(
                "job.submit",
                {
                    "method": "test.steps",
                    "params": {"steps": 8, "delay": 0.1, "marker": str(marker)},
                },
            )
            wait_job(c, sub["job_id"], {"running"})
        os.kill(main.pid, signal.SIGKILL)  # broker and (by PDEATHSIG) its workers die
        main.wait()
        time.sleep(0.3)
        svc.start_main()
        with svc.client() as c:
            job = wait_job(c, sub["job_id"], {"succeeded", "failed"}, timeout=30)
        assert job["state"] == "succeeded" and job["attempts"] == 2
        starts = [line for line in marker.read_text().splitlines() if line.startswith("start")]
        assert len(starts) == 2
    finally:
        svc.stop()


def test_job_whose_worker_keeps_dying_fails_with_reason(svc: ServiceProcesses) -> None:
    with svc.client() as c:
        sub = c.call("job.submit", {"method": "test.crash", "params": {}})
        job = wait_job(c, sub["job_id"], {"failed"}, timeout=30)
    assert job["error"]["code"] == "WORKER_LOST" and job["attempts"] == 2
    assert "not run again" in job["error"]["message"]
    svc.wait_workers(2)


def test_cli_analyze_through_a_job_and_locally(svc: ServiceProcesses, tmp_path: Path) -> None:
    report = tmp_path / "aapl.md"
    run = svc.cli("analyze", "AAPL", "--json", "--report", str(report))
    assert run.returncode == 0, run.stderr
    decision = orjson.loads(run.stdout)
    assert decision["symbol"] == "AAPL"
    assert decision["rating"] in {"BUY", "OVERWEIGHT", "HOLD", "UNDERWEIGHT", "SELL"}
    text = report.read_text()
    # The summary block first, then one heading per role (the role's own), in the team's order.
    assert text.startswith("# AAPL (Apple Inc.): ") and text.index("| Rating |") < 200
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Reasoning" and headings[1] == "## Price"
    assert headings[2].startswith("## Market analyst") and headings[-1].startswith(
        "## Portfolio manager"
    )
    assert len(headings) == len(set(headings))  # no heading twice
    assert (tmp_path / "aapl.png").stat().st_size > 10_000  # the chart beside the Markdown
    with svc.client() as c:  # it ran as a job
        jobs = c.call("job.list", {"method": "analyze.stock"})["jobs"]
    assert jobs and jobs[0]["state"] == "succeeded"
    local = svc.cli("analyze", "AAPL", "--local", "--json")
    assert local.returncode == 0, local.stderr
    same = orjson.loads(local.stdout)
    assert {k: same[k] for k in ("rating", "target_price", "confidence")} == {
        k: decision[k] for k in ("rating", "target_price", "confidence")
    }  # the same engine in-process and in a worker: the same answer
    bad = svc.cli("analyze", "NOPE1")
    assert bad.returncode == 1 and "INVALID_PARAMS" in bad.stderr


def test_cli_scan(svc: ServiceProcesses) -> None:
    run = svc.cli("scan", "--market", "US", "--min-volume", "1000000", "--json")
    assert run.returncode == 0, run.stderr
    data = orjson.loads(run.stdout)
    assert data["scan_results"] and all(r["volume"] >= 1_000_000 for r in data["scan_results"])
    scores = [r["score"] for r in data["scan_results"]]
    assert scores == sorted(scores, reverse=True)
    bad = svc.cli("scan", "--price-range", "10")
    assert bad.returncode == 2


def test_job_params_are_shown_redacted(tmp_path: Path) -> None:
    # The job keeps its params as sent (a resumed job needs them); job.status and job.list
    # show them like the request log does: credential-named fields and known secrets hidden.
    planted = "planted-llm-key-9f3a7c"
    svc = ServiceProcesses(tmp_path, workers=1, TACORE_LLM_API_KEY=planted)
    svc.start_main()
    try:
        with svc.client() as c:
            params = {"steps": 1, "api_key": "caller-key-1", "note": f"uses {planted}"}
            sub = c.call("job.submit", {"method": "test.steps", "params": params})
            job = wait_job(c, sub["job_id"], {"succeeded", "failed"})
            assert job["state"] == "succeeded"
            listed = c.call("job.list", {})["jobs"]
            result = c.call("job.result", {"job_id": sub["job_id"]})
        for shown in (job, result, *[j for j in listed if j["job_id"] == sub["job_id"]]):
            assert shown["params"] == {"steps": 1, "api_key": "[REDACTED]", "note": "uses ***"}
    finally:
        svc.stop()

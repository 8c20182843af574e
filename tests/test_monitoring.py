"""The monitoring API served by the broker process: every endpoint against a running service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tacoreservice.monitoring.window import RequestWindow
from tests.support.service import REPO, ServiceProcesses, raw_request

TOKEN = "s3cret-token-for-tests"


def _get(svc: ServiceProcesses, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(svc.api_url + path, timeout=10.0, **kwargs)


def _poll(fn: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call ``fn`` until it returns a truthy value; the request log is written in batches."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


def _metrics(svc: ServiceProcesses, **kwargs: Any) -> dict[tuple[str, tuple], float]:
    text = _get(svc, "/metrics", **kwargs).text
    out: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    svc = ServiceProcesses(tmp_path_factory.mktemp("monitor"), workers=2)
    svc.start_main()
    _poll(lambda: _get(svc, "/health").status_code == 200)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def traffic(service: ServiceProcesses) -> dict[str, Any]:
    """A known mix: 5 successes, 2 invalid params, 1 unknown method, 1 retry."""
    sent: dict[str, Any] = {"ok_ids": [], "bad_ids": []}
    with service.client() as c:
        for _ in range(5):
            reply = c.request("get.market_data", {"symbol": "AAPL"})
            sent["ok_ids"].append(reply["request_id"])
        for symbol in ("NOPE1", "NOPE2"):
            reply = c.request("get.market_data", {"symbol": symbol})
            sent["bad_ids"].append(reply["request_id"])
        reply = c.request("no.such.method", {})
        sent["unknown_id"] = reply["request_id"]
    # A client retry: the same request_id twice is answered from the reply cache.
    body = orjson.dumps(
        {"request_id": "retry-me-1", "method": "get.market_data", "params": {"symbol": "MSFT"}}
    )
    raw_request(service.endpoint, body)
    raw_request(service.endpoint, body)
    sent["retry_id"] = "retry-me-1"
    # Every row written before the tests read the log, and the workers' cache counters (sent
    # with their heartbeats) arrived.
    _poll(lambda: _get(service, "/api/logs?limit=1").json()["total"] >= 10)
    _poll(lambda: sum(_get(service, "/api/status").json()["cache"][k] for k in ("hits", "misses")))
    return sent


# ---------------------------------------------------------------------- health and status


def test_health_is_200_with_workers(service: ServiceProcesses) -> None:
    service.wait_workers(2)
    r = _get(service, "/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["broker"] == "running"
    assert body["workers_alive"] == 2


def test_status_has_counters_rates_and_no_secrets(
    service: ServiceProcesses, traffic: dict[str, Any]
) -> None:
    service.wait_workers(2)
    body = _get(service, "/api/status").json()
    assert body["version"] and body["uptime_s"] > 0
    assert body["workers"]["alive"] == 2
    # 5 ok + 2 invalid + 1 unknown + retry (run once, answered twice: counted once as a request
    # answered and once as a retry), plus any health probes of the harness.
    assert body["requests"]["errors_by_code"]["INVALID_PARAMS"] == 2
    assert body["requests"]["errors_by_code"]["METHOD_NOT_FOUND"] == 1
    assert body["requests"]["retries_from_cache"] == 1
    assert body["queue_depth"] == 0 and body["max_queue_size"] == 100
    assert body["rates"]["requests_per_s"] > 0
    assert 0 < body["rates"]["error_rate"] < 1
    assert body["rates"]["p95_ms"] >= body["rates"]["p50_ms"] > 0
    assert body["cache"]["hits"] + body["cache"]["misses"] > 0
    assert body["config"]["broker"]["frontend_port"] == service.frontend_port
    # Settings appear without credentials (tests/test_secrets.py plants real ones everywhere).
    assert body["config"]["llm"].get("api_key") is None and "token" not in body["config"]["api"]


def test_totals_add_up_and_client_errors_are_not_worker_failures(
    service: ServiceProcesses, traffic: dict[str, Any]
) -> None:
    """ "1,002 total, 793 ok, 223 errors" must not happen: every request is in one bucket, and a
    worker that answers a client's INVALID_PARAMS has not failed."""
    with service.client() as c:
        fail = c.request("test.fail", {})  # the worker's own failure (INTERNAL)
        assert fail["error"]["code"] == "INTERNAL"
        job_id = c.call("job.submit", {"method": "test.echo", "params": {"x": 1}})["job_id"]
    _poll(lambda: _get(service, f"/api/jobs/{job_id}").json()["state"] == "succeeded")

    def check(req: dict[str, Any]) -> None:
        assert req["total"] == (
            req["success"] + req["error"] + req["retries"] + req["in_progress"]
        ), req
        assert req["error"] == req["client_errors"] + req["service_errors"], req
        assert sum(req["errors_by_code"].values()) == req["error"], req
        assert req["client_errors"] >= 3  # 2 INVALID_PARAMS + 1 METHOD_NOT_FOUND
        assert req["service_errors"] >= 1  # test.fail
        assert req["job_runs"]["succeeded"] >= 1  # the run is not a second client request

    check(_get(service, "/api/status").json()["requests"])
    health = service.health(detailed=True)
    check(health["requests"])
    workers = health["worker_list"]
    assert sum(w["client_errors"] for w in workers) == 2  # the two NOPE symbols
    assert sum(w["failed"] for w in workers) == 1  # test.fail only


def test_docs_and_openapi(service: ServiceProcesses) -> None:
    assert _get(service, "/docs").status_code == 200
    spec = _get(service, "/openapi.json").json()
    for path in ("/health", "/api/status", "/workers", "/api/logs", "/methods", "/metrics"):
        assert path in spec["paths"]


# ---------------------------------------------------------------------- workers


def test_workers_endpoints(service: ServiceProcesses, traffic: dict[str, Any]) -> None:
    for path in ("/workers", "/api/workers"):
        # A loaded machine may delay a heartbeat past expiry for a moment: wait for the pool.
        body = _poll(lambda p=path: (b := _get(service, p).json())["alive"] == 2 and b)
        live = [w for w in body["workers"] if w["state"] != "dead"]
        assert body["alive"] == len(live) == 2
        for w in live:
            assert w["state"] in ("idle", "busy")
            assert w["pid"] and w["host"] and w["started_at"] and w["registered_at"]
            assert 0 <= w["heartbeat_age_s"] < 5
        assert sum(w["served"] for w in live) >= 7
        # The two unknown symbols are the clients' mistakes, not the workers' failures.
        assert sum(w["client_errors"] for w in live) >= 2


def test_busy_worker_shows_its_current_request(service: ServiceProcesses) -> None:
    import threading

    def slow() -> None:
        with service.client(timeout_ms=10_000) as c:
            c.request("test.sleep", {"seconds": 1.5}, request_id="slow-one")

    t = threading.Thread(target=slow)
    t.start()
    try:
        busy = _poll(
            lambda: [
                w for w in _get(service, "/api/workers").json()["workers"] if w["state"] == "busy"
            ]
        )
        assert busy[0]["current_method"] == "test.sleep"
        assert busy[0]["current_request_id"] == "slow-one"
        assert busy[0]["current_age_s"] >= 0
        metrics = _metrics(service)
        assert metrics[("tacore_requests_in_progress", (("method", "test.sleep"),))] == 1
        assert metrics[("tacore_workers", (("state", "busy"),))] == 1
    finally:
        t.join()


# ---------------------------------------------------------------------- logs


def test_logs_filters_and_pagination(service: ServiceProcesses, traffic: dict[str, Any]) -> None:
    for prefix in ("/logs", "/api/logs"):
        page1 = _get(service, f"{prefix}?method=get.market_data&limit=3").json()
        page2 = _get(service, f"{prefix}?method=get.market_data&limit=3&offset=3").json()
        assert page1["total"] == page2["total"] >= 8
        assert len(page1["items"]) == 3 and page1["limit"] == 3 and page2["offset"] == 3
        ids1 = {i["request_id"] for i in page1["items"]}
        ids2 = {i["request_id"] for i in page2["items"]}
        assert not ids1 & ids2  # pages do not overlap
        newest_first = [i["created_at"] for i in page1["items"] + page2["items"]]
        assert newest_first == sorted(newest_first, reverse=True)

    errors = _get(service, "/api/logs?status=error&method=get.market_data").json()
    assert {i["request_id"] for i in errors["items"]} == set(traffic["bad_ids"])
    assert all(i["error_code"] == "INVALID_PARAMS" for i in errors["items"])
    assert all("NOPE" in i["error_message"] for i in errors["items"])

    one = _get(service, f"/api/logs?request_id={traffic['ok_ids'][0]}").json()
    assert one["total"] == 1 and one["items"][0]["status"] == "success"

    worker = one["items"][0]["worker_id"]
    by_worker = _get(service, f"/api/logs?worker={worker}&limit=500").json()
    assert by_worker["total"] >= 1
    assert all(i["worker_id"] == worker for i in by_worker["items"])

    created = one["items"][0]["created_at"]
    since = _get(service, f"/api/logs?since={created}&until=2999-01-01T00:00:00Z").json()
    assert traffic["ok_ids"][0] in {i["request_id"] for i in since["items"]}
    until = _get(service, f"/api/logs?until={created}&limit=500").json()
    assert traffic["ok_ids"][0] not in {i["request_id"] for i in until["items"]}


def test_logs_bad_filters_are_400_or_422(service: ServiceProcesses) -> None:
    r = _get(service, "/api/logs?since=yesterday-ish")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_PARAMS"
    assert _get(service, "/api/logs?limit=0").status_code == 422
    assert _get(service, "/api/logs?status=maybe").status_code == 422


def test_one_log_entry_with_request_and_response(
    service: ServiceProcesses, traffic: dict[str, Any]
) -> None:
    rid = traffic["bad_ids"][0]
    item = _get(service, f"/api/logs/{rid}").json()
    assert item["request_data"]["params"] == {"symbol": "NOPE1"}
    assert item["response_data"]["error"]["code"] == "INVALID_PARAMS"
    assert item["error_code"] == "INVALID_PARAMS"
    missing = _get(service, "/api/logs/not-a-request")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


# ---------------------------------------------------------------------- methods and metrics


def test_methods_table(service: ServiceProcesses, traffic: dict[str, Any]) -> None:
    for path in ("/methods", "/api/methods"):
        body = _get(service, path).json()
        assert body["window_s"] == 900
        rows = {r["method"]: r for r in body["methods"]}
        md = rows["get.market_data"]
        assert md["count"] >= 8 and md["errors"] == 2
        assert md["error_rate"] == pytest.approx(md["errors"] / md["count"], abs=1e-4)
        assert md["p99_ms"] >= md["p95_ms"] >= md["p50_ms"] > 0
        # A method nobody serves is counted, but under one bounded label.
        assert rows["<unknown>"]["errors"] >= 1
        assert "no.such.method" not in rows


def test_prometheus_metrics_match_the_traffic(
    service: ServiceProcesses, traffic: dict[str, Any]
) -> None:
    m = _metrics(service)
    ok = m[("tacore_requests_total", (("method", "get.market_data"), ("status", "success")))]
    err = m[("tacore_requests_total", (("method", "get.market_data"), ("status", "error")))]
    # 5 AAPL + 1 MSFT (its retry is a retry, not a second request) succeeded; 2 failed.
    assert (ok, err) == (6, 2)
    count = m[("tacore_request_duration_seconds_count", (("method", "get.market_data"),))]
    assert count == ok + err
    assert m[("tacore_request_duration_seconds_sum", (("method", "get.market_data"),))] > 0
    inf_bucket = m[
        ("tacore_request_duration_seconds_bucket", (("le", "+Inf"), ("method", "get.market_data")))
    ]
    assert inf_bucket == count
    assert m[("tacore_requests_total", (("method", "<unknown>"), ("status", "error")))] == 1
    code = m[
        ("tacore_request_errors_total", (("code", "INVALID_PARAMS"), ("method", "get.market_data")))
    ]
    assert code == 2
    assert m[("tacore_request_retries_total", (("method", "get.market_data"),))] == 1
    assert (
        m[("tacore_workers", (("state", "idle"),))] + m[("tacore_workers", (("state", "busy"),))]
        == 2
    )
    assert m[("tacore_queue_depth", ())] == 0
    assert m[("tacore_queue_capacity", ())] == 100
    hits = m[("tacore_cache_requests_total", (("result", "hit"),))]
    misses = m[("tacore_cache_requests_total", (("result", "miss"),))]
    assert hits + misses > 0
    assert m[("tacore_up", ())] == 1
    beats = [
        v for (name, _), v in m.items() if name == "tacore_worker_last_heartbeat_timestamp_seconds"
    ]
    assert len(beats) == 2 and all(abs(time.time() - b) < 5 for b in beats)
    assert ("tacore_worker_restarts_total", ()) in m

    as_json = _get(service, "/api/metrics").json()
    rows = {(r["method"], r["status"]): r["value"] for r in as_json["requests_total"]}
    assert rows[("get.market_data", "success")] == ok
    assert as_json["queue_capacity"] == 100 and as_json["up"] == 1


def test_timeseries_and_events(service: ServiceProcesses, traffic: dict[str, Any]) -> None:
    time.sleep(1.1)  # the traffic's seconds are closed
    body = _get(service, "/api/timeseries").json()
    assert body["interval_s"] == 1 and body["window_s"] == 900
    points = body["points"]
    ts = [p["t"] for p in points]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert all(b - a == 1 for a, b in zip(ts, ts[1:], strict=False))  # quiet seconds included
    assert sum(p["requests"] for p in points) >= 9
    assert sum(p["errors"] for p in points) >= 3

    service.wait_workers(2)
    with httpx.stream("GET", service.api_url + "/api/events", timeout=10.0) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event, data = None, None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "snapshot":
                data = orjson.loads(line[6:])
                break
    assert data is not None
    assert data["status"]["workers"]["alive"] == 2
    assert {"workers", "methods", "point", "recent_requests", "failure_groups", "jobs"} <= set(data)
    invalid = next(g for g in data["failure_groups"] if g["error_code"] == "INVALID_PARAMS")
    assert invalid["kind"] == "client" and invalid["count"] >= 2
    assert invalid["latest"]["request_id"] in traffic["bad_ids"]


def test_jobs_endpoints(service: ServiceProcesses) -> None:
    with service.client() as c:
        job = c.request("job.submit", {"method": "test.steps", "params": {"steps": 2}})["data"]
    job_id = job["job_id"]
    done = _poll(
        lambda: (j := _get(service, f"/api/jobs/{job_id}").json()).get("state") == "succeeded" and j
    )
    assert done["method"] == "test.steps" and done["progress"] == 100
    # A job's run time is its own metric, not interactive request latency.
    m = _poll(
        lambda: (
            (m := _metrics(service)).get(
                ("tacore_jobs_finished_total", (("method", "test.steps"), ("status", "success")))
            )
            and m
        )
    )
    assert m[("tacore_job_duration_seconds_count", (("method", "test.steps"),))] >= 1
    assert ("tacore_request_duration_seconds_count", (("method", "test.steps"),)) not in m
    assert "test.steps" not in {r["method"] for r in _get(service, "/methods").json()["methods"]}
    listed = _get(service, "/api/jobs?state=succeeded").json()["jobs"]
    assert job_id in {j["job_id"] for j in listed}
    assert _get(service, "/api/jobs/job-nope").status_code == 404


def test_model_endpoint_lists_the_stored_calibrations(service: ServiceProcesses) -> None:
    data = _get(service, "/api/model").json()
    cals = {c["market"]: c for c in data["calibrations"]}
    assert set(cals) == {"us", "cn", "crypto"}  # the package's own, one per market
    for cal in cals.values():
        assert cal["status"] == "fitted" and cal["window"][1] < cal["fit_day"]
        assert cal["weights"] and set(cal["weights"]) <= set(cal["ic"])
        assert cal["source"].endswith(".json")
    assert "walk-forward" in data["note"]


def test_performance_log_has_one_line_per_request(
    service: ServiceProcesses, traffic: dict[str, Any]
) -> None:
    path = service.tmp / "logs" / "performance.log"
    text = _poll(
        lambda: path.is_file() and traffic["ok_ids"][-1] in path.read_text() and path.read_text()
    )
    line = next(ln for ln in text.splitlines() if traffic["ok_ids"][-1] in ln)
    assert "method=get.market_data" in line and "worker=local-" in line
    assert "queue_wait_ms=" in line and "processing_time_ms: " in line
    # Only the broker writes it: the worker log stays free of these lines.
    assert "queue_wait_ms=" not in (service.tmp / "logs" / "worker.log").read_text()


# ---------------------------------------------------------------------- workers dying


def test_killed_worker_shows_dead_then_replaced(service: ServiceProcesses) -> None:
    before = _metrics(service)[("tacore_worker_restarts_total", ())]
    victim = sorted(service.worker_pids())[0]
    os.kill(victim, signal.SIGKILL)
    dead = _poll(
        lambda: [
            w
            for w in _get(service, "/api/workers").json()["workers"]
            if w["state"] == "dead" and w["pid"] == victim
        ]
    )
    assert dead[0]["end_reason"] and dead[0]["ended_at"]
    service.wait_workers(2, exclude_pid=victim)
    live = [w for w in _get(service, "/api/workers").json()["workers"] if w["state"] != "dead"]
    assert len(live) == 2 and victim not in {w["pid"] for w in live}
    assert _metrics(service)[("tacore_worker_restarts_total", ())] == before + 1
    assert _get(service, "/api/status").json()["workers"]["dead"] >= 1


def test_worker_that_comes_back_is_not_listed_dead(service: ServiceProcesses) -> None:
    # Frozen past the heartbeat expiry, a worker is given up for dead; thawed, it registers
    # again (same pid) and must not stay listed as dead next to its live self, nor start its
    # served and failed counts from zero (it is the same process).
    service.wait_workers(2)
    with service.client() as c:
        for _ in range(4):  # both workers serve some (least recently used first)
            c.request("get.market_data", {"symbol": "AAPL"})
        c.request("get.market_data", {"symbol": "NOPE1"})
    counts = {
        w["pid"]: (w["served"], w["failed"])
        for w in _get(service, "/api/workers").json()["workers"]
        if w["state"] != "dead"
    }
    frozen = max(counts, key=lambda pid: counts[pid])
    assert counts[frozen][0] >= 2
    os.kill(frozen, signal.SIGSTOP)
    try:
        _poll(
            lambda: any(
                w["pid"] == frozen and w["state"] == "dead"
                for w in _get(service, "/api/workers").json()["workers"]
            )
        )
    finally:
        os.kill(frozen, signal.SIGCONT)
    back = _poll(
        lambda: [
            w
            for w in _get(service, "/api/workers").json()["workers"]
            if w["pid"] == frozen and w["state"] != "dead"
        ]
    )
    rows = [w for w in _get(service, "/api/workers").json()["workers"] if w["pid"] == frozen]
    assert rows == [r for r in rows if r["state"] != "dead"] and len(back) == 1
    assert back[0]["served"] >= counts[frozen][0] and back[0]["failed"] >= counts[frozen][1]


# ---------------------------------------------------------------------- security and startup


def test_token_is_enforced(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=1, TACORE_API_TOKEN=TOKEN)
    svc.start_main()
    try:
        _poll(lambda: _get(svc, "/health").status_code == 200)
        for path in ("/api/status", "/workers", "/api/logs", "/methods", "/metrics", "/api/jobs"):
            missing = _get(svc, path)
            assert missing.status_code == 401, path
            assert missing.json()["error"]["code"] == "UNAUTHORIZED"
            wrong = _get(svc, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
            right = _get(svc, path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 200, path
        # EventSource cannot send headers: the stream takes ?token=
        assert _get(svc, "/api/status?token=nope").status_code == 401
        assert _get(svc, f"/api/status?token={TOKEN}").status_code == 200
        # The page shell holds no data and must load to ask for the token.
        assert _get(svc, "/health").status_code == 200
    finally:
        svc.stop()


def test_the_api_description_needs_the_token_too(tmp_path: Path) -> None:
    """With a token (needed to listen beyond loopback) the schema and its pages are not public:
    they list every route an attacker could try. The dashboard's page stays public: it holds
    no data and must load to ask for the token."""
    svc = ServiceProcesses(tmp_path, workers=0, TACORE_API_TOKEN=TOKEN)
    svc.start_main(wait=False)
    try:
        _poll(lambda: _poll_status(svc) is not None, timeout=60)
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert _get(svc, path).status_code == 401, path
            assert _get(svc, path, headers={"Authorization": "Bearer nope"}).status_code == 401
        schema = _get(svc, "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert schema.status_code == 200 and "/api/status" in schema.json()["paths"]
        page = _get(svc, f"/docs?token={TOKEN}")
        assert page.status_code == 200 and f"/openapi.json?token={TOKEN}" in page.text
        assert _get(svc, f"/openapi.json?token={TOKEN}").status_code == 200
        assert _get(svc, "/").status_code == 200
    finally:
        svc.stop()


def test_without_a_token_the_description_is_served_on_loopback(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=0)
    svc.env.pop("TACORE_API_TOKEN", None)
    svc.start_main(wait=False)
    try:
        _poll(lambda: _poll_status(svc) is not None, timeout=60)
        assert "/api/status" in _get(svc, "/openapi.json").json()["paths"]
        assert _get(svc, "/docs").status_code == 200
    finally:
        svc.stop()


def _run_until_exit(svc: ServiceProcesses, timeout: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tacoreservice.main"],
        env=svc.env,
        cwd=svc.tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_refuses_to_listen_beyond_loopback_without_token(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=0, TACORE_API_HOST="0.0.0.0")
    svc.env.pop("TACORE_API_TOKEN", None)
    done = _run_until_exit(svc)
    assert done.returncode == 2
    assert "TACORE_API_TOKEN" in done.stderr and "0.0.0.0" in done.stderr


def test_busy_api_port_stops_the_service_with_a_message(tmp_path: Path) -> None:
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        svc = ServiceProcesses(tmp_path, workers=0)
        svc.env["API_PORT"] = str(holder.getsockname()[1])
        done = _run_until_exit(svc)
        assert done.returncode == 2
        assert "cannot serve the monitoring API" in done.stderr
    finally:
        holder.close()


def test_health_503_without_workers_then_200(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=0)
    svc.start_broker()
    try:
        r = _poll(lambda: _poll_status(svc))
        assert r.status_code == 503
        assert r.json()["status"] == "unhealthy" and r.json()["workers_alive"] == 0
        svc.start_worker("remote-1")
        ok = _poll(lambda: (r := _get(svc, "/health")).status_code == 200 and r)
        assert ok.json()["workers_alive"] == 1
    finally:
        svc.stop()


def _poll_status(svc: ServiceProcesses) -> httpx.Response | None:
    try:
        return _get(svc, "/health")
    except httpx.TransportError:
        return None


def test_api_can_be_turned_off(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=1, TACORE_API_ENABLED="0")
    svc.start_main()
    try:
        assert svc.health()["workers"]["alive"] == 1
        with pytest.raises(httpx.TransportError):
            _get(svc, "/health")
    finally:
        svc.stop()


# ---------------------------------------------------------------------- the window itself


def test_window_percentiles_gaps_and_bounds() -> None:
    w = RequestWindow(window_s=60, samples_per_method=100)
    t0 = 1_000_000.0
    for i in range(1, 101):  # 100 requests in one second: 1..100 ms, every 10th fails
        w.record(t0 + 0.001 * i, "m", float(i), ok=i % 10 != 0)
    w.record(t0 + 3.5, "m", 7.0, ok=True)  # two quiet seconds in between
    points = w.timeseries(t0 + 4.0)
    assert [p["t"] for p in points] == [1_000_000, 1_000_001, 1_000_002, 1_000_003]
    first = points[0]
    assert (first["requests"], first["errors"]) == (100, 10)
    assert (first["p50_ms"], first["p95_ms"]) == (50.0, 95.0)
    assert points[1]["requests"] == 0 and points[1]["p50_ms"] is None
    row = w.method_table(t0 + 4.0)[0]
    assert (row["count"], row["errors"]) == (101, 10)
    assert row["p50_ms"] == 50.0 and row["p99_ms"] == 99.0
    assert len(w._methods["m"].samples) == 100  # bounded, whatever the rate
    rates = w.rates(t0 + 4.0, window_s=60.0, uptime_s=10.0)
    assert rates["requests_per_s"] == pytest.approx(10.1)
    assert rates["error_rate"] == pytest.approx(10 / 101, abs=1e-4)
    # A whole window later everything has aged out.
    assert w.method_table(t0 + 200.0) == []
    assert all(p["requests"] == 0 for p in w.timeseries(t0 + 200.0))


def test_window_method_names_are_bounded() -> None:
    w = RequestWindow(window_s=60)
    for i in range(600):
        w.record(1_000_000.0, f"m{i}", 1.0, ok=True)
    names = {r["method"] for r in w.method_table(1_000_000.5)}
    assert len(names) <= 513 and "<other>" in names


def test_dashboard_files_are_packaged() -> None:
    static = REPO / "tacoreservice" / "monitoring" / "static"
    assert (static / "index.html").is_file()

"""The monitoring API's routes behind the dashboard's pages, against a running service: request
search, failures grouped by code, the job history with its one write (cancel, behind the
token), the paper portfolio with its equity curve, orders, decisions and one symbol's analysis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.service import ServiceProcesses, wait_job

TOKEN = "pages-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _get(svc: ServiceProcesses, path: str) -> httpx.Response:
    return httpx.get(svc.api_url + path, headers=AUTH, timeout=30.0)


def _poll(fn: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    service = ServiceProcesses(
        tmp_path_factory.mktemp("pages"),
        workers=2,
        TACORE_API_TOKEN=TOKEN,
        TACORE_ALLOW_PORTFOLIO_RESET="1",
    )
    service.start_main()
    with service.client(client_name="desk") as c:
        c.call("portfolio.reset", {"as_of": "2025-09-02"})
        for symbol in ("AAPL", "KO"):
            c.call("execute.order", {"symbol": symbol, "action": "buy", "quantity": 10})
        c.call("clock.advance", {"bars": 15})
        c.call("execute.order", {"symbol": "KO", "action": "sell", "quantity": 4})
        c.call("clock.advance", {"bars": 5})
        c.call("analyze.stock", {"symbol": "MSFT"})
        # A decision kept in the ledger (a job's result), not in the request log.
        job = c.call("job.submit", {"method": "analyze.stock", "params": {"symbol": "NVDA"}})
        wait_job(c, job["job_id"], {"succeeded"})
        for _ in range(3):
            c.request("get.market_data", {"symbol": "NOPE1"})
        c.request("test.fail", {})
    yield service
    service.stop()


def test_requests_search_by_method_status_code_client_and_symbol(svc: ServiceProcesses) -> None:
    rows = _poll(lambda: _get(svc, "/api/logs?symbol=NOPE1").json()["items"])
    assert len(rows) == 3 and {r["error_code"] for r in rows} == {"INVALID_PARAMS"}
    assert all(r["client_id"] == "desk" for r in rows)
    by_code = _get(svc, "/api/logs?code=INTERNAL").json()
    assert by_code["total"] == 1 and by_code["items"][0]["method"] == "test.fail"
    by_client = _get(svc, "/api/logs?client=desk&method=execute.order").json()
    assert by_client["total"] == 3
    client_errors = _get(svc, "/api/logs?kind=client").json()
    assert {r["error_code"] for r in client_errors["items"]} == {"INVALID_PARAMS"}
    service_errors = _get(svc, "/api/logs?kind=service").json()
    assert {r["error_code"] for r in service_errors["items"]} == {"INTERNAL"}
    assert _get(svc, "/api/logs?symbol=AAPL&status=success").json()["total"] >= 1
    # A symbol is matched as a whole string, with LIKE's wildcards taken literally.
    assert _get(svc, "/api/logs?symbol=%25").json()["total"] == 0
    assert _get(svc, "/api/logs?kind=nonsense").status_code == 422


def test_failures_grouped_by_code_with_the_latest_example(svc: ServiceProcesses) -> None:
    body = _poll(lambda: (b := _get(svc, "/api/failures").json())["groups"] and b)
    groups = {g["error_code"]: g for g in body["groups"]}
    assert groups["INVALID_PARAMS"]["count"] == 3 and groups["INVALID_PARAMS"]["kind"] == "client"
    assert groups["INTERNAL"]["count"] == 1 and groups["INTERNAL"]["kind"] == "service"
    assert "NOPE1" in groups["INVALID_PARAMS"]["latest"]["error_message"]
    assert body["client_errors"] == 3 and body["service_errors"] == 1
    assert [g["count"] for g in body["groups"]] == sorted(
        (g["count"] for g in body["groups"]), reverse=True
    )


def test_job_history_detail_and_cancel_needs_the_token(svc: ServiceProcesses) -> None:
    with svc.client() as c:
        done = c.call("job.submit", {"method": "test.steps", "params": {"steps": 2}})
        wait_job(c, done["job_id"], {"succeeded"})
        slow = c.call(
            "job.submit", {"method": "test.steps", "params": {"steps": 300, "delay": 0.1}}
        )
        wait_job(c, slow["job_id"], {"running"})
    page = _get(svc, "/api/jobs?limit=1&offset=0").json()
    assert page["total"] >= 2 and len(page["jobs"]) == 1
    running = _poll(lambda: (j := _get(svc, f"/api/jobs/{slow['job_id']}").json())["eta_s"] and j)
    assert running["elapsed_s"] > 0 and running["state"] == "running"
    one = _get(svc, f"/api/jobs/{done['job_id']}?result=true").json()
    assert one["result"]["steps"] == 2 and one["params"] == {"steps": 2}
    succeeded = _get(svc, "/api/jobs?state=succeeded&method=test.steps").json()
    assert done["job_id"] in {j["job_id"] for j in succeeded["jobs"]}

    url = f"{svc.api_url}/api/jobs/{slow['job_id']}/cancel"
    assert httpx.post(url, timeout=10).status_code == 401  # a write needs the token
    assert httpx.post(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    cancelled = httpx.post(url, headers=AUTH, timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    final = _poll(lambda: (j := _get(svc, f"/api/jobs/{slow['job_id']}").json())["state"]
                  == "cancelled" and j)  # fmt: skip
    assert final["eta_s"] is None
    missing = httpx.post(f"{svc.api_url}/api/jobs/job-nope/cancel", headers=AUTH, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_portfolio_with_equity_curve_and_orders(svc: ServiceProcesses) -> None:
    body = _get(svc, "/api/portfolio").json()
    portfolio, history = body["portfolio"], body["history"]
    assert set(portfolio["positions"]) == {"AAPL", "KO"}
    points = history["points"]
    assert history["fills"] == 3 and len(points) >= 15
    assert points[0]["equity"] == pytest.approx(portfolio["initial_cash"])
    # The replayed curve ends where the ledger's own valuation is.
    assert points[-1]["equity"] == pytest.approx(portfolio["equity"], abs=0.02)
    assert points[-1]["date"] == portfolio["clock"]
    assert all(0 <= p["drawdown"] < 1 for p in points)
    orders = _get(svc, "/api/orders?limit=10").json()
    assert orders["total"] == 3
    sell = next(o for o in orders["orders"] if o["action"] == "sell")
    assert sell["fills"][0]["realised_pnl"] is not None
    assert {r["name"] for r in sell["risk"]["checks"]} >= {"sufficient_holdings", "max_drawdown"}
    assert _get(svc, "/api/orders?status=filled&symbol=KO").json()["total"] == 2
    assert _get(svc, "/api/orders?status=bogus").status_code == 422


def test_decisions_and_the_analysis_page(svc: ServiceProcesses) -> None:
    decisions = _poll(lambda: _get(svc, "/api/decisions").json()["decisions"])
    msft = next(d for d in decisions if d["symbol"] == "MSFT")
    assert msft["rating"] in {"BUY", "OVERWEIGHT", "HOLD", "UNDERWEIGHT", "SELL"}
    assert 0 <= msft["risk_score"] <= 100 and msft["source"].startswith("request ")
    # The two files read together: the job's decision comes from the ledger.
    nvda = next(d for d in decisions if d["symbol"] == "NVDA")
    assert nvda["source"].startswith("job ") and nvda["rating"], nvda
    assert _get(svc, "/api/analysis/NVDA").json()["decision"]["source"].startswith("job ")
    view = _get(svc, "/api/analysis/MSFT").json()
    labels = [row["label"] for row in view["summary"]]
    assert labels[:3] == ["Rating", "Action", "Confidence"] and "Data" in labels
    assert view["decision"]["reports"]["portfolio_manager"] and view["decision"]["debate"]
    assert len(view["history"]) == 180 and view["history"][-1]["time"] == view["decision"]["as_of"]
    assert "Stale data" in (view["stale_warning"] or "")
    missing = _get(svc, "/api/analysis/KO")
    assert missing.status_code == 404 and "tacore analyze KO" in missing.json()["error"]["message"]
    # The page's Analyse button: analyze.stock through the broker, then the same view.
    ran = httpx.post(f"{svc.api_url}/api/analysis/KO", headers=AUTH, timeout=120).json()
    assert ran["decision"]["symbol"] == "KO" and ran["history"]
    assert _poll(lambda: _get(svc, "/api/analysis/KO").status_code == 200)
    assert _get(svc, "/api/analysis/<script>").status_code == 422


def test_pages_need_the_token(svc: ServiceProcesses, tmp_path: Path) -> None:
    for path in ("/api/portfolio", "/api/orders", "/api/decisions", "/api/failures", "/api/jobs"):
        assert httpx.get(svc.api_url + path, timeout=10).status_code == 401, path

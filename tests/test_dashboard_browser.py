"""The live dashboard in a real browser: Debian's chromium, driven by Playwright, against a real
service (broker, monitoring API and worker processes on loopback).

Screenshots land in tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import (
    CHROMIUM,
    WAIT_MS,
    needs_chromium,
    open_dashboard,
    save_screenshot,
    wait_live,
)
from tests.support.service import ServiceProcesses

pytestmark = needs_chromium

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProcesses]:
    service = ServiceProcesses(tmp_path, workers=2)
    service.start_main()
    yield service
    service.stop()


def worker_rows(page: Page) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="worker-row"]')].map((tr) => ({
            state: tr.dataset.state, pid: Number(tr.dataset.pid), worker: tr.dataset.workerId,
            text: tr.innerText }))"""
    )
    return rows


def wait_rows(page: Page, predicate_js: str, arg: Any = None) -> list[dict[str, Any]]:
    """Wait until ``predicate_js(rows, arg)`` holds for the workers table, then return the rows."""
    page.wait_for_function(
        f"""([arg]) => {{
            const rows = [...document.querySelectorAll('[data-testid="worker-row"]')].map(
                (tr) => ({{ state: tr.dataset.state, pid: Number(tr.dataset.pid) }}));
            return ({predicate_js})(rows, arg);
        }}""",
        arg=[arg],
        timeout=WAIT_MS,
    )
    return worker_rows(page)


def card_value(page: Page, name: str) -> str:
    return page.get_attribute(f'[data-testid="card-{name}"]', "data-value") or ""


def chart_data(page: Page, name: str) -> dict[str, str]:
    data: dict[str, str] = page.evaluate(
        '(name) => ({...document.querySelector(`[data-testid="chart-${name}"]`).dataset})', name
    )
    return data


def canvas_pixels(page: Page, name: str) -> str:
    pixels: str = page.evaluate(
        '(name) => document.querySelector(`[data-testid="chart-${name}"] canvas`).toDataURL()',
        name,
    )
    return pixels


ALIVE_2 = "(rows) => rows.filter((r) => r.state !== 'dead').length === 2"


def test_live_dashboard_follows_traffic_failures_and_a_killed_worker(
    svc: ServiceProcesses, browser: Browser
) -> None:
    page, errors = open_dashboard(browser, svc.api_url + "/")
    wait_live(page)
    rows = wait_rows(page, ALIVE_2)
    alive = [r for r in rows if r["state"] != "dead"]
    assert {r["pid"] for r in alive} == svc.worker_pids()
    assert all(r["state"] in {"idle", "busy"} for r in alive)
    assert page.get_attribute('[data-testid="card-workers"]', "data-value") == "2"
    page.evaluate("window.__loadedOnce = true")  # gone if the page ever reloads itself

    total_before = int(card_value(page, "requests-total"))
    chart_before = chart_data(page, "throughput")
    throughput_pixels_before = canvas_pixels(page, "throughput")

    good, bad = 40, 5
    with svc.client() as c:
        for i in range(good):
            reply = c.request("get.market_data", {"symbol": ["AAPL", "MSFT", "BTCUSDT"][i % 3]})
            assert reply["status"] == "success"
        bad_ids = []
        for _ in range(bad):
            reply = c.request("get.market_data", {"symbol": "NOSUCHTICKER"})
            assert reply["error"]["code"] == "INVALID_PARAMS"
            bad_ids.append(reply["request_id"])
        # A method name is client text that the page shows in three places: it must stay text.
        hostile = c.request("<img src=x onerror=window.__xss=1>", {})
        assert hostile["status"] == "error"

    sent = good + bad + 1
    page.wait_for_function(
        "(n) => Number(document.querySelector('[data-testid=\"card-requests-total\"]')"
        ".dataset.value) >= n",
        arg=total_before + sent,
        timeout=WAIT_MS,
    )
    shown_total = page.inner_text('[data-testid="card-requests-total"] .value')
    assert int(shown_total.replace(",", "")) >= total_before + sent

    # The throughput chart's series holds the new seconds (its sum counts every request).
    page.wait_for_function(
        "(n) => Number(document.querySelector('[data-testid=\"chart-throughput\"]')"
        ".dataset.sum) >= n",
        arg=float(chart_before.get("sum") or 0) + sent,
        timeout=WAIT_MS,
    )
    assert canvas_pixels(page, "throughput") != throughput_pixels_before
    latency = chart_data(page, "latency")
    assert int(latency["points"]) >= 1 and float(latency["max"]) > 0

    # The model's stored calibrations, one row per market with its weights.
    page.wait_for_selector('[data-testid="model-table"] tr[data-market="us"]', timeout=WAIT_MS)
    model_row = page.inner_text('[data-testid="model-table"] tr[data-market="us"]')
    assert "US" in model_row and ".json" in model_row

    # Per-method table and the recent lists.
    page.wait_for_selector(
        '[data-testid="methods-table"] tr[data-method="get.market_data"]', timeout=WAIT_MS
    )
    method_row = page.inner_text('[data-testid="methods-table"] tr[data-method="get.market_data"]')
    assert str(good + bad) in method_row.split()
    failure = page.wait_for_selector(
        f'[data-testid="failure-row"][data-request-id="{bad_ids[-1]}"]', timeout=WAIT_MS
    )
    assert failure is not None
    failure_text = failure.inner_text()
    assert "INVALID_PARAMS" in failure_text and "NOSUCHTICKER" in failure_text
    page.wait_for_selector('[data-testid="recent-requests"] [data-status="success"]')

    hostile_row = page.wait_for_selector(
        f'[data-testid="failure-row"][data-request-id="{hostile["request_id"]}"]',
        timeout=WAIT_MS,
    )
    assert hostile_row is not None and "<img src=x" in hostile_row.inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img").count() == 0

    # The failure links to its full record; the page shows it in a panel.
    failure.query_selector("a.req-link").click()  # type: ignore[union-attr]
    page.wait_for_selector(f'[data-testid="request-detail"][data-loaded="{bad_ids[-1]}"]')
    detail = json.loads(page.inner_text('[data-testid="detail-body"]'))
    assert detail["request_id"] == bad_ids[-1]
    assert detail["request_data"]["params"]["symbol"] == "NOSUCHTICKER"
    assert detail["response_data"]["error"]["code"] == "INVALID_PARAMS"
    with page.context.expect_page() as raw_tab:
        page.click("#detail-raw")
    raw_text = raw_tab.value.inner_text("body")
    assert json.loads(raw_text)["request_id"] == bad_ids[-1]
    raw_tab.value.close()

    # kill -9 a worker: a dead row for that pid, then two alive workers again, one of them new.
    victim = alive[0]["pid"]
    dead_before = sum(1 for r in rows if r["state"] == "dead" and r["pid"] == victim)
    os.kill(victim, signal.SIGKILL)
    wait_rows(
        page,
        "(rows, [pid, n]) => rows.filter((r) => r.state === 'dead' && r.pid === pid).length > n",
        [victim, dead_before],
    )
    dead_row = page.locator(f'[data-testid="worker-row"][data-state="dead"][data-pid="{victim}"]')
    assert "dead" in dead_row.first.inner_text()
    after = wait_rows(
        page,
        "(rows, pid) => { const a = rows.filter((r) => r.state !== 'dead');"
        " return a.length === 2 && !a.some((r) => r.pid === pid); }",
        victim,
    )
    new_pids = {r["pid"] for r in after if r["state"] != "dead"}
    assert victim not in new_pids and new_pids == svc.worker_pids()
    page.wait_for_selector('[data-testid="card-workers"][data-value="2"]', timeout=WAIT_MS)

    assert page.evaluate("window.__loadedOnce") is True  # live updates, never a reload
    wait_live(page)
    assert errors == []
    save_screenshot(page, "dashboard-desktop.png")
    page.context.close()


def test_phone_layout_with_a_running_job(svc: ServiceProcesses, browser: Browser) -> None:
    with svc.client() as c:
        for _ in range(10):
            c.request("get.market_data", {"symbol": "NOSUCHTICKER"})
            c.request("get.market_data", {"symbol": "AAPL"})
        job_id = c.call(
            "job.submit", {"method": "test.steps", "params": {"steps": 20, "delay": 0.4}}
        )["job_id"]
    page, errors = open_dashboard(browser, svc.api_url + "/", width=390, height=844, dark=True)
    wait_live(page)
    wait_rows(page, ALIVE_2)
    page.wait_for_selector('[data-testid="failure-row"]', timeout=WAIT_MS)

    # The running job has a progress bar that moves with the job's own progress reports.
    job = f'[data-testid="job"][data-job-id="{job_id}"][data-state="running"]'
    page.wait_for_selector(job, timeout=WAIT_MS)
    bar = f'{job} [role="progressbar"]'
    first = int(page.get_attribute(bar, "aria-valuenow") or 0)
    page.wait_for_function(
        "([sel, v]) => Number(document.querySelector(sel)?.getAttribute('aria-valuenow')) > v",
        arg=[bar, max(first, 0)],
        timeout=WAIT_MS,
    )
    assert "step" in page.inner_text(job)  # the stage the job reported
    widths = page.evaluate(
        """() => ({ scroll: document.documentElement.scrollWidth,
                    client: document.documentElement.clientWidth,
                    widest: Math.max(...[...document.querySelectorAll('main > *, header, footer')]
                        .map((e) => e.getBoundingClientRect().right)) })"""
    )
    assert widths["scroll"] <= widths["client"] == 390, widths
    assert widths["widest"] <= 390, widths
    # Wide tables scroll inside their own box instead.
    inner = page.evaluate(
        """() => [...document.querySelectorAll('.table-wrap')].map(
               (w) => w.getBoundingClientRect().width <= 390)"""
    )
    assert inner and all(inner)
    chart_width = page.evaluate(
        "() => document.querySelector('[data-testid=\"chart-throughput\"] canvas')"
        ".getBoundingClientRect().width"
    )
    assert 200 < chart_width <= 390
    assert errors == []
    save_screenshot(page, "dashboard-phone.png")
    # Finished jobs leave the list.
    page.wait_for_selector(
        f'[data-testid="job"][data-job-id="{job_id}"]', state="detached", timeout=WAIT_MS
    )
    page.context.close()


def test_token_is_asked_once_then_sent(tmp_path: Path, browser: Browser) -> None:
    token = "s3cret-token-for-the-browser-test"
    service = ServiceProcesses(tmp_path, workers=2, TACORE_API_TOKEN=token)
    service.start_main()
    try:
        # What the page relies on: data routes refuse without the token, accept it as Bearer.
        assert httpx.get(service.api_url + "/api/status").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(service.api_url + "/api/status", headers=auth).status_code == 200

        page, errors = open_dashboard(browser, service.api_url + "/")
        page.wait_for_selector('[data-testid="token-form"]', state="visible", timeout=WAIT_MS)
        assert page.get_attribute('[data-testid="live-indicator"]', "data-state") == (
            "unauthorized"
        )
        assert worker_rows(page) == []

        page.fill('[data-testid="token-input"]', "wrong-token")
        page.click('[data-testid="token-submit"]')
        page.wait_for_selector('[data-testid="token-error"]', state="visible", timeout=WAIT_MS)
        assert "refused" in page.inner_text('[data-testid="token-error"]')
        assert worker_rows(page) == []

        page.fill('[data-testid="token-input"]', token)
        page.click('[data-testid="token-submit"]')
        wait_live(page)  # the EventSource got in with ?token=
        page.wait_for_selector('[data-testid="token-panel"]', state="hidden")
        wait_rows(page, ALIVE_2)
        # The page and the broker agree on who is alive (polled: under load a worker may miss
        # the tests' 750 ms heartbeat window and register again in between).
        deadline = time.monotonic() + 15
        while True:
            shown = {r["pid"] for r in worker_rows(page) if r["state"] != "dead"}
            if shown == service.worker_pids() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert shown == service.worker_pids()

        # Asked once: a reload in the same tab finds the token in sessionStorage.
        assert page.evaluate("sessionStorage.getItem('tacore.apiToken')") == token
        page.reload()
        wait_live(page)
        wait_rows(page, ALIVE_2)
        assert page.is_hidden('[data-testid="token-panel"]')
        # The request panel fetches with the header too.
        link = page.wait_for_selector('[data-testid="request-row"] a.req-link', timeout=WAIT_MS)
        request_id = link.get_attribute("data-request-id")  # type: ignore[union-attr]
        link.click()  # type: ignore[union-attr]
        page.wait_for_selector(f'[data-testid="request-detail"][data-loaded="{request_id}"]')
        assert json.loads(page.inner_text('[data-testid="detail-body"]'))["request_data"]
        page.context.close()

        # ?token= in the address works too and is taken out of the address bar.
        page, errors = open_dashboard(browser, f"{service.api_url}/?token={token}")
        wait_live(page)
        wait_rows(page, ALIVE_2)
        assert "token" not in page.url
        page.context.close()
    finally:
        service.stop()


def test_reconnects_after_broker_restart_without_reload(
    svc: ServiceProcesses, browser: Browser
) -> None:
    page, errors = open_dashboard(browser, svc.api_url + "/")
    wait_live(page)
    old_pids = {r["pid"] for r in wait_rows(page, ALIVE_2) if r["state"] != "dead"}
    page.evaluate("window.__loadedOnce = true")

    svc.stop()
    page.wait_for_selector(
        '[data-testid="live-indicator"][data-state="reconnecting"]', timeout=WAIT_MS
    )
    svc.start_main()  # same ports, same database
    wait_live(page)
    rows = wait_rows(
        page,
        "(rows, old) => { const a = rows.filter((r) => r.state !== 'dead');"
        " return a.length === 2 && a.every((r) => !old.includes(r.pid)); }",
        sorted(old_pids),
    )
    assert {r["pid"] for r in rows if r["state"] != "dead"} == svc.worker_pids()
    assert page.evaluate("window.__loadedOnce") is True
    page.context.close()

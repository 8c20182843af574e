"""The dashboard's pages in a real browser (Debian's chromium through Playwright) against a real
service: the disconnected state after the service is killed, the job history with a cancel, the
portfolio after a few orders, the decisions and one symbol's analysis. Each page is
photographed at 1440x900 and 390x844 (tests/artifacts/) and checked for anything running off
the screen sideways.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    WAIT_MS,
    assert_fits_horizontally,
    needs_chromium,
    next_frames,
    open_dashboard,
    save_screenshot,
    wait_live,
)
from tests.support.service import ServiceProcesses, wait_job

pytestmark = needs_chromium

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page

TOKEN = "token-of-the-pages-test"


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    """A service with a token, a few orders on the paper account and one analysis."""
    svc = ServiceProcesses(
        tmp_path_factory.mktemp("desk"),
        workers=2,
        TACORE_API_TOKEN=TOKEN,
        TACORE_ALLOW_PORTFOLIO_RESET="1",
    )
    svc.start_main()
    with svc.client(client_name="desk") as c:
        c.call("portfolio.reset", {"as_of": "2025-08-01"})
        for symbol, qty in (("AAPL", 100), ("KO", 300), ("XOM", 150)):
            c.call("execute.order", {"symbol": symbol, "action": "buy", "quantity": qty})
        c.call("clock.advance", {"bars": 20})
        c.call("execute.order", {"symbol": "KO", "action": "sell", "quantity": 100})
        c.call("execute.order", {"symbol": "AAPL", "action": "buy", "quantity": 10, "price": 150})
        refused = c.call("execute.order", {"symbol": "XOM", "action": "sell", "quantity": 10**6})
        assert refused["status"] == "rejected"
        c.call("clock.advance", {"bars": 20})
        c.call("analyze.stock", {"symbol": "AAPL"})
        c.request("get.market_data", {"symbol": "NOSUCH"})
    yield svc
    svc.stop()


def page_at(
    browser: Browser, svc: ServiceProcesses, route: str, size: tuple[int, int]
) -> tuple[Page, list[str]]:
    page, errors = open_dashboard(
        browser, f"{svc.api_url}/?token={TOKEN}#/{route}", width=size[0], height=size[1]
    )
    wait_live(page)
    return page, errors


def shoot_both(browser: Browser, svc: ServiceProcesses, route: str, name: str, ready: str) -> None:
    """Screenshots at 1440x900 and 390x844, each checked for horizontal overflow."""
    for size in (DESKTOP, PHONE):
        page, errors = page_at(browser, svc, route, size)
        page.wait_for_selector(ready, timeout=WAIT_MS)
        next_frames(page)  # the charts draw on the next animation frame
        assert_fits_horizontally(page)
        save_screenshot(page, f"{name}-{size[0]}x{size[1]}.png")
        assert errors == []
        page.context.close()


def test_disconnected_state_after_the_service_is_killed(tmp_path: Path, browser: Browser) -> None:
    svc = ServiceProcesses(tmp_path, workers=2)
    svc.start_main()
    try:
        page, _errors = open_dashboard(browser, svc.api_url + "/", *DESKTOP)
        wait_live(page)
        page.wait_for_selector('[data-testid="service-status"][data-state="healthy"]')
        assert page.is_hidden('[data-testid="disconnected-banner"]')
        assert page.evaluate("getComputedStyle(document.querySelector('.cards')).opacity") == "1"

        assert svc.main is not None
        os.kill(svc.main.pid, signal.SIGKILL)  # broker, API and (with it) the workers
        svc.main.wait(10)
        page.wait_for_selector(
            '[data-testid="service-status"][data-state="disconnected"]', timeout=WAIT_MS
        )
        assert page.inner_text('[data-testid="service-status"]') == "disconnected"
        banner = page.wait_for_selector('[data-testid="disconnected-banner"]', state="visible")
        assert banner is not None and "Disconnected from the service" in banner.inner_text()
        assert page.get_attribute("body", "data-connection") == "lost"
        # The time since the last update keeps counting while nothing arrives.
        page.wait_for_function(
            "() => Number(document.querySelector('[data-testid=\"disconnected-banner\"]')"
            ".dataset.secondsAgo) >= 3",
            timeout=WAIT_MS,
        )
        assert "ago" in banner.inner_text() and "ago" in page.inner_text(
            '[data-testid="last-update"]'
        )
        # The figures stay, greyed out; the badge is red.
        style = page.evaluate(
            """() => { const s = getComputedStyle(document.querySelector('.cards'));
                       const b = getComputedStyle(document.querySelector('#service-status'));
                       return {opacity: Number(s.opacity), filter: s.filter, bg: b.backgroundColor}; }"""
        )
        assert style["opacity"] < 1 and "grayscale" in style["filter"], style
        assert style["bg"] not in ("rgba(0, 0, 0, 0)", "transparent"), style
        # The hint (how to start the service) is as readable as the banner: white on red.
        colors = page.evaluate(
            """() => { const b = document.querySelector('[data-testid="disconnected-banner"]');
                       return [getComputedStyle(b).color,
                               getComputedStyle(b.querySelector('.hint')).color]; }"""
        )
        assert colors == ["rgb(255, 255, 255)"] * 2, colors
        assert "./scripts/serve.sh" in banner.inner_text()
        assert page.get_attribute('[data-testid="card-workers"]', "data-value") == "2"
        assert_fits_horizontally(page)
        save_screenshot(page, "dashboard-disconnected-1440x900.png")
        # On a phone the banner wraps and still nothing runs off the screen.
        page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
        next_frames(page)
        box = banner.bounding_box()
        assert banner.is_visible() and box is not None and box["width"] <= PHONE[0], box
        assert_fits_horizontally(page)
        save_screenshot(page, "dashboard-disconnected-390x844.png")
        page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})

        svc.start_main()  # same ports, same database: the page comes back by itself
        page.wait_for_selector(
            '[data-testid="service-status"][data-state="healthy"]', timeout=WAIT_MS
        )
        page.wait_for_selector('[data-testid="disconnected-banner"]', state="hidden")
        assert page.get_attribute("body", "data-connection") == "live"
        page.context.close()
    finally:
        svc.stop()


def _job_row(page: Page, job_id: str) -> str:
    return f'[data-testid="history-job"][data-job-id="{job_id}"]'


def test_job_history_with_a_cancel(desk: ServiceProcesses, browser: Browser) -> None:
    with desk.client() as c:
        done = c.call("job.submit", {"method": "test.steps", "params": {"steps": 3}})
        failed = c.call("job.submit", {"method": "test.fail", "params": {}})
        wait_job(c, done["job_id"], {"succeeded"}, timeout=60)
        wait_job(c, failed["job_id"], {"failed"}, timeout=60)
        slow = c.call(
            "job.submit", {"method": "test.steps", "params": {"steps": 400, "delay": 0.1}}
        )
        wait_job(c, slow["job_id"], {"running"}, timeout=60)

    page, errors = page_at(browser, desk, "jobs", DESKTOP)
    for job_id, state in ((done["job_id"], "succeeded"), (failed["job_id"], "failed")):
        page.wait_for_selector(f'{_job_row(page, job_id)}[data-state="{state}"]', timeout=WAIT_MS)
    running = page.wait_for_selector(f'{_job_row(page, slow["job_id"])}[data-state="running"]')
    assert running is not None
    # The state filter.
    page.select_option('[data-testid="jobs-state"]', "failed")
    page.wait_for_selector(_job_row(page, slow["job_id"]), state="detached", timeout=WAIT_MS)
    rows = page.locator('[data-testid="history-job"]')
    assert rows.count() >= 1 and all(
        rows.nth(i).get_attribute("data-state") == "failed" for i in range(rows.count())
    )
    page.select_option('[data-testid="jobs-state"]', "")

    # The running job's detail: per-role progress, elapsed time and an ETA; then cancel it.
    page.click(f"{_job_row(page, slow['job_id'])} a")
    detail = '[data-testid="job-detail"]'
    page.wait_for_selector(f'{detail}[data-job-id="{slow["job_id"]}"][data-state="running"]')
    page.wait_for_function(
        "(sel) => /ETA\\s*\\d/.test(document.querySelector(sel).innerText)",
        arg=detail,
        timeout=WAIT_MS,
    )
    assert page.locator(f'{detail} [data-testid="job-roles"] li[data-state="done"]').count() >= 1
    save_screenshot(page, "jobs-running-1440x900.png")
    page.click(f'{detail} [data-testid="job-cancel"]')
    page.wait_for_selector(f'{detail}[data-state="cancelled"]', timeout=WAIT_MS)
    page.wait_for_selector(
        f'{_job_row(page, slow["job_id"])}[data-state="cancelled"]', timeout=WAIT_MS
    )
    with desk.client() as c:
        assert c.call("job.status", {"job_id": slow["job_id"]})["state"] == "cancelled"

    # A finished job shows its result.
    page.goto(f"{desk.api_url}/#/jobs/{done['job_id']}")
    page.wait_for_selector(f'{detail}[data-job-id="{done["job_id"]}"] [data-testid="job-result"]')
    assert '"steps": 3' in page.inner_text('[data-testid="job-result"]')
    assert errors == []
    page.context.close()
    shoot_both(browser, desk, "jobs", "jobs", '[data-testid="history-job"][data-state="cancelled"]')


def test_portfolio_page_after_a_few_orders(desk: ServiceProcesses, browser: Browser) -> None:
    with desk.client() as c:
        portfolio = c.call("portfolio.get")
        orders = c.call("order.list", {"limit": 50})["orders"]
    page, errors = page_at(browser, desk, "portfolio", DESKTOP)
    page.wait_for_selector('[data-testid="position-row"][data-symbol="XOM"]', timeout=WAIT_MS)
    assert float(
        page.get_attribute('[data-testid="card-equity"]', "data-value") or 0
    ) == pytest.approx(portfolio["equity"])
    assert float(
        page.get_attribute('[data-testid="card-cash"]', "data-value") or 0
    ) == pytest.approx(portfolio["cash"])
    realised = float(page.get_attribute('[data-testid="card-realised"]', "data-value") or "nan")
    assert realised == pytest.approx(portfolio["realised_pnl"]) and realised != 0
    symbols = {
        page.get_attribute(f'[data-testid="position-row"]:nth-child({i + 1})', "data-symbol")
        for i in range(page.locator('[data-testid="position-row"]').count())
    }
    assert symbols == set(portfolio["positions"])
    # The equity curve: from the day before the first fill to the clock, ending at the equity.
    chart: dict[str, Any] = page.evaluate(
        "() => ({...document.querySelector('[data-testid=\"chart-equity\"]').dataset})"
    )
    assert int(chart["points"]) >= 40 and chart["last"] == portfolio["clock"]
    assert float(chart["lastValue"]) == pytest.approx(portfolio["equity"], abs=0.02)
    assert int(page.get_attribute('[data-testid="chart-drawdown"]', "data-points") or 0) >= 40

    # Orders with their fills and pre-trade rows; the refused one says which check failed.
    page.wait_for_selector('[data-testid="order-row"]')
    assert page.locator('[data-testid="order-row"]').count() == len(orders)
    rejected = next(o for o in orders if o["status"] == "rejected")
    page.click(f'[data-testid="order-row"][data-order-id="{rejected["order_id"]}"] a.order-link')
    page.wait_for_selector(f'[data-testid="order-detail"][data-order-id="{rejected["order_id"]}"]')
    failed_checks = page.locator('[data-testid="check-row"][data-passed="false"]')
    assert failed_checks.count() >= 1 and "sufficient_holdings" in failed_checks.first.inner_text()
    filled = next(o for o in orders if o["status"] == "filled" and o["action"] == "sell")
    page.click(f'[data-testid="order-row"][data-order-id="{filled["order_id"]}"] a.order-link')
    page.wait_for_selector(f'[data-testid="order-detail"][data-order-id="{filled["order_id"]}"]')
    assert page.locator('[data-testid="fills-table"] tbody tr').count() == 1
    page.select_option('[data-testid="orders-status"]', "open")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"order-row\"]')]"
        ".every((r) => r.dataset.status === 'open')",
        timeout=WAIT_MS,
    )
    assert errors == []
    page.context.close()
    shoot_both(browser, desk, "portfolio", "portfolio", '[data-testid="position-row"]')


def test_decisions_and_the_analysis_page(desk: ServiceProcesses, browser: Browser) -> None:
    page, errors = page_at(browser, desk, "decisions", DESKTOP)
    row = page.wait_for_selector(
        '[data-testid="decision-row"][data-symbol="AAPL"]', timeout=WAIT_MS
    )
    assert row is not None and "/100" in row.inner_text()
    row.query_selector("a").click()  # type: ignore[union-attr]
    page.wait_for_selector('[data-testid="page-analysis"][data-symbol="AAPL"]', timeout=WAIT_MS)
    summary = page.inner_text('[data-testid="analysis-summary"]')
    for label in ("Rating", "Action", "Confidence", "Entry", "Stop", "Target", "Position size",
                  "Risk score", "Engine and model", "Data"):  # fmt: skip
        assert label in summary
    assert "Stale data" in page.inner_text('[data-testid="stale-warning"]')
    # The price chart carries the decision's levels.
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=\"chart-price\"]').dataset.points) > 100"
    )
    levels = page.get_attribute('[data-testid="chart-price"]', "data-levels") or ""
    assert {"entry", "stop", "target"} <= set(levels.split(","))
    roles = page.eval_on_selector_all(
        '[data-testid="role-report"]', "els => els.map(e => e.dataset.role)"
    )
    assert roles[0] == "market_analyst" and roles[-1] == "portfolio_manager"
    assert page.locator('[data-testid="debate-turn"]').count() >= 2
    assert page.locator("#analysis-reports table").count() >= 1  # the reports' tables render
    assert (
        page.evaluate(
            "document.querySelectorAll('#analysis-reports script, #analysis-reports img').length"
        )
        == 0
    )

    # A symbol with no analysis yet: the page says so, and "Analyse now" runs one.
    page.goto(f"{desk.api_url}/#/analysis/MSFT")
    page.wait_for_selector('[data-testid="analysis-empty"]', timeout=WAIT_MS)
    page.click('[data-testid="analysis-run"]')
    page.wait_for_selector('[data-testid="page-analysis"][data-symbol="MSFT"]', timeout=120_000)
    # The browser logs the one 404 (no MSFT analysis yet) the page answered with its message.
    assert [e for e in errors if "404 (Not Found)" not in e] == [] and len(errors) <= 1
    page.context.close()
    shoot_both(browser, desk, "decisions", "decisions", '[data-testid="decision-row"]')
    shoot_both(browser, desk, "analysis/AAPL", "analysis", '[data-testid="role-report"]')


def test_operations_and_requests_pages_fit_both_screens(
    desk: ServiceProcesses, browser: Browser
) -> None:
    page, errors = page_at(browser, desk, "requests", DESKTOP)
    page.fill('[data-testid="request-search"] input[name="symbol"]', "NOSUCH")
    page.click('[data-testid="request-search-submit"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"requests-status\"]').dataset.total === '1'",
        timeout=WAIT_MS,
    )
    rows = page.locator('[data-testid="search-row"]')
    assert rows.count() == 1 and rows.first.get_attribute("data-code") == "INVALID_PARAMS"
    page.fill('[data-testid="request-search"] input[name="symbol"]', "")
    page.fill('[data-testid="request-search"] input[name="client"]', "desk")
    page.fill('[data-testid="request-search"] input[name="method"]', "execute.order")
    page.click('[data-testid="request-search-submit"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"requests-status\"]').dataset.total === '6'",
        timeout=WAIT_MS,
    )
    # The requests card adds up: total = ok + client errors + service errors + retries + in
    # progress (one snapshot sets them all), and a client's INVALID_PARAMS is not a failure.
    page.goto(f"{desk.api_url}/#/")
    page.wait_for_selector('[data-testid="failure-row"][data-error-code="INVALID_PARAMS"]')
    card: dict[str, str] = page.evaluate(
        "() => ({...document.querySelector('[data-testid=\"card-requests-total\"]').dataset})"
    )
    parts = ("success", "clientErrors", "serviceErrors", "retries", "inProgress")
    assert int(card["value"]) == sum(int(card[k] or 0) for k in parts), card
    assert int(card["clientErrors"]) >= 1 and int(card["serviceErrors"]) == 0, card
    assert (
        page.get_attribute(
            '[data-testid="failure-row"][data-error-code="INVALID_PARAMS"]', "data-kind"
        )
        == "client"
    )
    assert errors == []
    page.context.close()
    shoot_both(browser, desk, "", "operations", '[data-testid="failure-row"]')
    shoot_both(browser, desk, "requests", "requests", '[data-testid="search-row"]')

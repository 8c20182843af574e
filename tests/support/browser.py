"""Real Chromium for the dashboard's tests: Debian's /usr/bin/chromium driven by Playwright
(playwright-core; no browser download), a fresh context per page, screenshots for a person to
look at in tests/artifacts/ (git-ignored), and the check that nothing runs off the screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Two cores shared with other test runs: waits are generous, they end as soon as the page agrees.
WAIT_MS = 30_000
DESKTOP = (1440, 900)
PHONE = (390, 844)

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser test needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page


def launch(pw: Any) -> Browser:
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def open_dashboard(
    browser: Browser, url: str, width: int = 1366, height: int = 900, dark: bool = False
) -> tuple[Page, list[str]]:
    """A fresh browser context (own sessionStorage) on ``url``; also the page's script errors."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme="dark" if dark else "light",
        is_mobile=width < 600,
        has_touch=width < 600,
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    return page, errors


def wait_live(page: Page) -> None:
    page.wait_for_selector('[data-testid="live-indicator"][data-state="live"]', timeout=WAIT_MS)


def next_frames(page: Page) -> None:
    """Return once the page has drawn two more animation frames: whatever it queued for the
    next frame (the charts' drawing) is on the screen."""
    page.evaluate(
        "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    )


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky header lands mid-page
    page.screenshot(path=str(path), full_page=True)
    return path


# Every visible element's box against the viewport. An element inside a box that scrolls or
# clips horizontally (a wide table in its .table-wrap) counts only through that box.
_OVERFLOW_JS = """() => {
  const W = document.documentElement.clientWidth;
  const bad = [];
  for (const e of document.querySelectorAll('body *')) {
    if (e.closest('[hidden]')) continue;
    const r = e.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    let p = e.parentElement, clipped = false;
    while (p && p !== document.body) {
      if (getComputedStyle(p).overflowX !== 'visible') { clipped = true; break; }
      p = p.parentElement;
    }
    if (clipped) continue;
    if (r.right > W + 0.5 || r.left < -0.5) {
      bad.push(`${e.tagName.toLowerCase()}.${e.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
    }
  }
  return {W, scroll: document.documentElement.scrollWidth, bad: bad.slice(0, 12)};
}"""


def assert_fits_horizontally(page: Page) -> None:
    """No element runs past the viewport's edges, and the page never scrolls sideways."""
    found: dict[str, Any] = page.evaluate(_OVERFLOW_JS)
    assert found["scroll"] <= found["W"], found
    assert found["bad"] == [], found

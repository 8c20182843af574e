"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.redis_process import redis_process


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, without persistence; yields its URL."""
    with redis_process(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium through Playwright, one per test module (tests/support/browser.py)."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import launch

    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()

"""The reply cache is bounded in bytes and keeps a digest of each request, not its params."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tacoreservice.broker.pending import ReplyCache, request_digest
from tests.support.service import ServiceProcesses


def test_digest_ignores_key_order_and_tells_content_and_method_apart() -> None:
    a = request_digest("get.market_data", {"symbol": "AAPL", "history": 5})
    assert a == request_digest("get.market_data", {"history": 5, "symbol": "AAPL"})
    assert a != request_digest("get.market_data", {"symbol": "AAPL", "history": 6})
    assert a != request_digest("scan.market", {"symbol": "AAPL", "history": 5})
    assert len(a) == 16
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(600):  # deeper than the encoder goes: never equal to anything
        node["a"] = {}
        node = node["a"]
    assert request_digest("m", deep) != request_digest("m", deep)


def test_the_oldest_replies_go_when_the_bytes_run_out() -> None:
    cache = ReplyCache(ttl_s=60, max_entries=1000, max_bytes=10_000)
    for i in range(20):
        cache.put(f"r{i}", b"x" * 1000, b"d" * 16, now=0)
    assert cache.bytes <= 10_000
    assert cache.get("r0", 1) is None  # gone for room
    assert cache.get("r19", 1) == (b"x" * 1000, b"d" * 16)
    assert cache.evicted == 20 - len(cache)
    cache.put("huge", b"x" * 20_000, b"d" * 16, now=0)  # larger than the cache: not kept
    assert cache.get("huge", 1) is None
    cache.purge(now=61)  # past the TTL: everything goes, and the byte count with it
    assert len(cache) == 0 and cache.bytes == 0


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProcesses]:
    service = ServiceProcesses(tmp_path, workers=1, TACORE_REPLY_CACHE_MAX_BYTES=1_000_000)
    service.start_main()
    yield service
    service.stop()


def test_big_requests_stay_within_the_cache_bytes_and_retries_still_compare(
    svc: ServiceProcesses,
) -> None:
    payload = "p" * 100_000
    with svc.client(timeout_ms=10_000) as c:
        for i in range(30):
            c.call("test.echo", {"payload": payload}, request_id=f"big-{i}")
        health = svc.health()
        assert health["reply_cache_bytes"] <= 1_000_000
        # Each reply carries the payload twice (data and its compat copy, result): ~200 KB.
        assert 3 <= health["reply_cache_entries"] <= 5
        # A retry of a reply still kept is answered from the cache: the same bytes, not run.
        again = c.request("test.echo", {"payload": payload}, request_id="big-29")
        assert again["data"]["payload"] == payload
        served = svc.health()["worker_list"][0]["served"]
        assert served == 30
        assert svc.health()["requests"]["retries_from_cache"] == 1
        # Other content under the same id is refused: the digest tells them apart.
        reused = c.request("test.echo", {"payload": payload + "!"}, request_id="big-29")
        assert reused["status"] == "error" and reused["error"]["code"] == "INVALID_REQUEST"
        assert "already used by a different request" in reused["error"]["message"]

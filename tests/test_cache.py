"""Caches: the in-process LRU and Redis (against a real redis-server)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tacoreservice.cache import Cache, LRUCache, RedisCache, make_cache, redacted_url
from tacoreservice.config import CacheSettings
from tests.support.service import free_port

ROOT = Path(__file__).resolve().parents[1]


def cache_settings(**kw: object) -> CacheSettings:
    return CacheSettings.model_validate(kw)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- LRU ----------------------------------------------------------------------------------------


def test_make_cache_defaults_to_lru() -> None:
    cache = make_cache(cache_settings(lru_max_entries=3))
    assert isinstance(cache, LRUCache) and isinstance(cache, Cache)
    assert cache.stats()["backend"] == "lru"


def test_lru_get_set_delete_and_counters() -> None:
    cache = LRUCache(10)
    assert cache.get("a") is None
    cache.set("a", b"1", 60)
    assert cache.get("a") == b"1"
    assert cache.get("a") == b"1"
    cache.delete("a")
    cache.delete("never-there")
    assert cache.get("a") is None
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["sets"], stats["errors"], stats["size"]) == (
        2,
        2,
        1,
        0,
        0,
    )


def test_lru_evicts_least_recently_used() -> None:
    cache = LRUCache(3)
    for key in "abc":
        cache.set(key, key.encode(), 60)
    assert cache.get("a") == b"a"  # now b is the least recently used
    cache.set("d", b"d", 60)
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [b"a", b"c", b"d"]
    cache.set("c", b"c2", 60)  # overwriting refreshes, does not grow
    cache.set("e", b"e", 60)
    assert cache.get("a") is None and cache.get("c") == b"c2"
    stats = cache.stats()
    assert stats["size"] == 3 and stats["evictions"] == 2


def test_lru_ttl_expiry() -> None:
    clock = FakeClock()
    cache = LRUCache(10, clock=clock)
    cache.set("short", b"s", 5)
    cache.set("long", b"l", 50)
    cache.set("forever", b"f", math.inf)
    clock.now += 4.999
    assert cache.get("short") == b"s"
    clock.now += 0.001
    assert cache.get("short") is None
    assert cache.get("long") == b"l"
    clock.now += 1e9
    assert cache.get("long") is None and cache.get("forever") == b"f"
    assert cache.stats()["expired"] == 2


def test_lru_non_positive_ttl_stores_nothing() -> None:
    cache = LRUCache(10)
    cache.set("k", b"old", 60)
    cache.set("k", b"new", 0)
    assert cache.get("k") is None
    cache.set("k", b"new", float("nan"))
    assert cache.get("k") is None


def test_lru_is_thread_safe() -> None:
    cache = LRUCache(100)
    errors: list[BaseException] = []

    def hammer(t: int) -> None:
        try:
            for i in range(5000):
                key = f"k{(t * 7 + i) % 300}"
                if cache.get(key) is None:
                    cache.set(key, key.encode(), 60)
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats["size"] <= 100
    assert stats["hits"] + stats["misses"] == 8 * 5000


# -- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def rcache(redis_server: str, prefix: str) -> Iterator[RedisCache]:
    cache = make_cache(cache_settings(redis_url=redis_server, key_prefix=prefix))
    assert isinstance(cache, RedisCache)
    yield cache
    cache.close()


def test_redis_set_get_delete_with_prefix(
    rcache: RedisCache, redis_server: str, prefix: str
) -> None:
    assert rcache.get("AAPL:1d") is None
    rcache.set("AAPL:1d", b"\x00\xffbars", 30)
    assert rcache.get("AAPL:1d") == b"\x00\xffbars"
    raw = redis.Redis.from_url(redis_server)
    assert raw.get(f"{prefix}AAPL:1d") == b"\x00\xffbars"
    assert 0 < raw.pttl(f"{prefix}AAPL:1d") <= 30_000
    rcache.delete("AAPL:1d")
    assert rcache.get("AAPL:1d") is None and raw.exists(f"{prefix}AAPL:1d") == 0
    rcache.set("forever", b"x", math.inf)
    assert raw.pttl(f"{prefix}forever") == -1
    raw.close()
    stats = rcache.stats()
    assert stats["backend"] == "redis"
    assert (stats["hits"], stats["misses"], stats["sets"], stats["errors"]) == (1, 2, 2, 0)
    assert stats["available"] is True and stats["size"] is None
    assert rcache.ping()


def test_redis_ttl_expiry(rcache: RedisCache) -> None:
    rcache.set("k", b"v", 0.15)
    assert rcache.get("k") == b"v"
    time.sleep(0.3)
    assert rcache.get("k") is None
    rcache.set("k", b"v", 60)
    rcache.set("k", b"v2", 0)  # non-positive TTL forgets the key
    assert rcache.get("k") is None


def test_redis_shared_between_instances(redis_server: str, prefix: str) -> None:
    settings = cache_settings(redis_url=redis_server, key_prefix=prefix)
    a, b = make_cache(settings), make_cache(settings)
    a.set("shared", b"from-a", 30)
    assert b.get("shared") == b"from-a"
    b.delete("shared")
    assert a.get("shared") is None
    assert (a.stats()["misses"], b.stats()["hits"]) == (1, 1)
    a.close()
    b.close()


def test_redis_shared_with_another_process(
    rcache: RedisCache, redis_server: str, prefix: str
) -> None:
    # A second worker process writes; this one reads.
    code = textwrap.dedent(
        f"""
        from tacoreservice.cache import make_cache
        from tacoreservice.config import CacheSettings
        c = make_cache(CacheSettings(redis_url={redis_server!r}, key_prefix={prefix!r}))
        c.set("quote:AAPL", b"189.5", 30)
        assert c.stats()["errors"] == 0
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert rcache.get("quote:AAPL") == b"189.5"


def test_redis_down_behaves_as_miss(prefix: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cache = make_cache(cache_settings(redis_url=url, key_prefix=prefix))
    t0 = time.perf_counter()
    assert cache.get("k") is None
    cache.set("k", b"v", 10)
    cache.delete("k")
    assert cache.get("k") is None
    elapsed = time.perf_counter() - t0
    stats = cache.stats()
    assert stats["errors"] == 1  # then backing off: the other calls were not even sent
    assert stats["misses"] == 2 and stats["hits"] == 0
    assert stats["skipped"] == 3
    assert stats["available"] is False and "ConnectionError" in stats["last_error"]
    assert elapsed < 2.0
    cache.close()


def test_redis_backoff_then_recovery(tmp_path: Path, prefix: str) -> None:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.skip("redis-server not found; install it with `apt-get install redis-server`")
    port = free_port()
    clock = FakeClock()
    cache = RedisCache(
        f"redis://127.0.0.1:{port}/0",
        key_prefix=prefix,
        backoff_initial_s=1.0,
        backoff_max_s=4.0,
        clock=clock,
    )
    assert cache.get("k") is None
    assert cache.stats()["errors"] == 1
    clock.now += 1.0  # back-off over: tries again, fails, waits twice as long
    assert cache.get("k") is None
    assert cache.stats()["errors"] == 2
    clock.now += 1.5
    assert cache.get("k") is None
    assert cache.stats()["errors"] == 2  # still within the 2 s back-off

    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1"]
        + ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        probe.close()
        clock.now += 0.5
        cache.set("k", b"back", 10)
        assert cache.get("k") == b"back"
        stats = cache.stats()
        assert stats["available"] is True and stats["errors"] == 2 and stats["hits"] == 1
    finally:
        cache.close()
        server.terminate()
        server.wait(timeout=10)


def test_redis_server_restart_costs_at_most_one_miss(redis_server: str, prefix: str) -> None:
    # Pooled connections go stale when the server drops them; the one immediate retry on a
    # fresh connection hides that from callers.
    cache = make_cache(cache_settings(redis_url=redis_server, key_prefix=prefix))
    cache.set("k", b"v", 30)
    admin = redis.Redis.from_url(redis_server)
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    admin.close()
    assert cache.get("k") == b"v"
    assert cache.stats()["errors"] == 0
    cache.close()


def test_redacted_url_hides_password() -> None:
    assert (
        redacted_url("redis://user:s3cret@cache.internal:6380/2") == "redis://cache.internal:6380/2"
    )
    assert "s3cret" not in RedisCache("redis://:s3cret@127.0.0.1:1/0").stats()["url"]

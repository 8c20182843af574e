"""Redis-backed cache shared by every worker process (and host) that points at the same server.

Redis is an optimisation here, never a dependency: when it is down each call counts an error
and answers like a miss, and after a failure the cache stops trying for a short, growing
back-off so a dead server costs one failed connect per back-off period instead of one per
request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RedisCache", "redacted_url"]

log = logging.getLogger(__name__)

# Errors that mean "cannot talk to the server" (as opposed to a command the server refused).
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


def redacted_url(url: str) -> str:
    """The URL without credentials, for logs and health output."""
    u = urlparse(url)
    if u.scheme == "unix":
        return f"unix://{u.path}"
    db = u.path.lstrip("/") or "0"
    return f"{u.scheme}://{u.hostname or ''}:{u.port or 6379}/{db}"


class RedisCache:
    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "tacore:",
        connect_timeout_s: float = 0.25,
        socket_timeout_s: float = 0.5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = redacted_url(url)
        self.key_prefix = key_prefix
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._clock = clock
        # One immediate retry on a fresh connection covers a pooled connection that went stale
        # when Redis restarted; redis-py's default (3 retries with back-off) would make every
        # call against a dead server slow.
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            decode_responses=False,
        )
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._sets = 0
        self._deletes = 0
        self._errors = 0
        self._skipped = 0
        self._down_until = 0.0
        self._backoff = 0.0
        self._last_error: str | None = None

    def _k(self, key: str) -> str:
        return self.key_prefix + key

    def _skip(self) -> bool:
        """True while backing off after a failure (the call is not sent)."""
        if self._backoff == 0.0:
            return False
        with self._lock:
            if self._backoff and self._clock() < self._down_until:
                self._skipped += 1
                return True
            return False

    def _ok(self) -> None:
        if self._backoff == 0.0:
            return
        with self._lock:
            if self._backoff:
                self._backoff = 0.0
                self._down_until = 0.0
                log.info("redis cache at %s reachable again", self.url)

    def _failed(self, op: str, exc: Exception) -> None:
        unreachable = isinstance(exc, _UNREACHABLE)
        with self._lock:
            self._errors += 1
            self._last_error = f"{op}: {type(exc).__name__}: {exc}"
            if not unreachable:
                first = False
            else:
                first = self._backoff == 0.0
                self._backoff = (
                    self.backoff_initial_s if first else min(self._backoff * 2, self.backoff_max_s)
                )
                self._down_until = self._clock() + self._backoff
        if not unreachable:
            log.warning("redis cache %s failed: %s", op, exc)
        elif first:
            log.warning(
                "redis cache at %s unreachable (%s); answering as misses and retrying with "
                "back-off",
                self.url,
                exc,
            )

    def get(self, key: str) -> bytes | None:
        value: bytes | None = None
        if not self._skip():
            try:
                # decode_responses=False: the server's bytes come back untouched.
                value = cast(bytes | None, self._client.get(self._k(key)))
            except Exception as exc:
                self._failed("get", exc)
            else:
                self._ok()
        with self._lock:
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
        return value

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        with self._lock:
            self._sets += 1
        if self._skip():
            return
        try:
            if not ttl_s > 0:  # also catches NaN
                self._client.delete(self._k(key))
            elif math.isinf(ttl_s):
                self._client.set(self._k(key), value)
            else:
                self._client.set(self._k(key), value, px=max(1, math.ceil(ttl_s * 1000)))
        except Exception as exc:
            self._failed("set", exc)
        else:
            self._ok()

    def delete(self, key: str) -> None:
        with self._lock:
            self._deletes += 1
        if self._skip():
            return
        try:
            self._client.delete(self._k(key))
        except Exception as exc:
            self._failed("delete", exc)
        else:
            self._ok()

    def ping(self) -> bool:
        """Ask the server now, ignoring the back-off (for health checks)."""
        try:
            ok = bool(self._client.ping())
        except Exception as exc:
            self._failed("ping", exc)
            return False
        self._ok()
        return ok

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backend": self.backend,
                "url": self.url,
                "key_prefix": self.key_prefix,
                "hits": self._hits,
                "misses": self._misses,
                "sets": self._sets,
                "deletes": self._deletes,
                "errors": self._errors,
                "skipped": self._skipped,
                # Counting the keys under our prefix would need a SCAN: not cheap.
                "size": None,
                "available": self._backoff == 0.0,
                "last_error": self._last_error,
            }

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:  # closing must not fail a shutdown
            log.debug("closing redis client: %s", exc)

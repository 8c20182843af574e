"""In-process LRU cache with per-entry TTL: the default when no Redis is configured."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["LRUCache"]


class LRUCache:
    """Thread-safe LRU of at most ``max_entries`` values, each with its own expiry.

    An expired entry is removed when it is read; one that is never read again ages out through
    LRU eviction, so expiry needs no sweeper thread.
    """

    backend = "lru"

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._sets = 0
        self._deletes = 0
        self._evictions = 0
        self._expired = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self._misses += 1
                return None
            expires_at, value = item
            if expires_at <= self._clock():
                del self._data[key]
                self._expired += 1
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return value

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        with self._lock:
            self._sets += 1
            if not ttl_s > 0:  # also catches NaN
                self._data.pop(key, None)
                return
            expires_at = math.inf if math.isinf(ttl_s) else self._clock() + ttl_s
            self._data[key] = (expires_at, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
                self._evictions += 1

    def delete(self, key: str) -> None:
        with self._lock:
            self._deletes += 1
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backend": self.backend,
                "hits": self._hits,
                "misses": self._misses,
                "sets": self._sets,
                "deletes": self._deletes,
                "errors": 0,
                "size": len(self._data),
                "max_entries": self.max_entries,
                "evictions": self._evictions,
                "expired": self._expired,
            }

    def close(self) -> None:
        self.clear()

"""Caches for market data and other recomputable results.

:func:`make_cache` picks the backend from :class:`CacheSettings`: an in-process LRU when no
``redis_url`` is set (each worker process has its own), else Redis shared by all workers.
"""

from __future__ import annotations

from tacoreservice.cache.base import Cache
from tacoreservice.cache.lru import LRUCache
from tacoreservice.cache.redis_cache import RedisCache, redacted_url
from tacoreservice.config import CacheSettings

__all__ = ["Cache", "LRUCache", "RedisCache", "make_cache", "redacted_url"]


def make_cache(settings: CacheSettings) -> Cache:
    if settings.redis_url:
        return RedisCache(settings.redis_url, key_prefix=settings.key_prefix)
    return LRUCache(settings.lru_max_entries)

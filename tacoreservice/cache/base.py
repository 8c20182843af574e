"""The interface every cache backend implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Cache"]


@runtime_checkable
class Cache(Protocol):
    """A byte-value cache with per-entry TTL.

    Implementations never raise for backend trouble: an unreachable backend is a miss, so a
    cache can only make a request faster, never fail it. ``ttl_s <= 0`` stores nothing (and
    forgets any older value for the key); ``ttl_s = math.inf`` never expires.
    """

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    def delete(self, key: str) -> None: ...

    def stats(self) -> dict[str, Any]:
        """``backend``, ``hits``, ``misses``, ``sets``, ``errors`` and ``size`` (None when
        counting would be expensive), plus backend-specific fields."""
        ...

    def close(self) -> None: ...

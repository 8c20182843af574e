"""An in-memory stand-in for the Cache protocol that records what the code under test stored."""

from __future__ import annotations

from typing import Any


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.ttls: dict[str, float] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        value = self.data.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def set(self, key: str, value: bytes, ttl_s: float) -> None:
        assert isinstance(value, bytes), "the cache stores bytes"
        self.data[key] = value
        self.ttls[key] = ttl_s

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def stats(self) -> dict[str, Any]:
        return {"backend": "dict", "hits": self.hits, "misses": self.misses, "size": len(self.data)}

    def close(self) -> None:
        pass

"""Token buckets per client, so one runaway module cannot starve the others.

Each client gets ``burst`` tokens that refill at ``rate_per_s``; a request takes one, and a
request that finds the bucket empty is answered RATE_LIMITED at once, with how long to wait.
The broker calls :meth:`RateLimiter.take` on its own thread, so there is no lock.
"""

from __future__ import annotations

from collections import OrderedDict

from tacoreservice.config import RateLimitSettings

__all__ = ["RateLimiter"]


class _Bucket:
    __slots__ = ("tokens", "updated", "rate", "burst")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now


class RateLimiter:
    def __init__(self, cfg: RateLimitSettings):
        self.cfg = cfg
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def rule_for(self, client: str | None) -> tuple[float, int]:
        rule = self.cfg.clients.get(client) if client else None
        if rule is not None:
            return rule.rate_per_s, rule.burst
        return self.cfg.rate_per_s, self.cfg.burst

    def take(self, key: str, client: str | None, now: float) -> float:
        """Take a token for ``key``; 0.0 when granted, else seconds until one is available."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            rate, burst = self.rule_for(client)
            bucket = buckets[key] = _Bucket(rate, burst, now)
            if len(buckets) > self.cfg.max_tracked:
                # The least recently used bucket goes; had it stayed it would be full by now
                # in all but pathological cases, so forgetting it grants nothing extra.
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            elapsed = now - bucket.updated
            if elapsed > 0:
                bucket.tokens = min(bucket.burst, bucket.tokens + elapsed * bucket.rate)
                bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / bucket.rate

    def __len__(self) -> int:
        return len(self._buckets)

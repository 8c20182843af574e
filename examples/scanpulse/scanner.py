"""The scanner: ``scan.market`` every interval, the scan into Redis, opportunities onto PUB.

Order of a cycle: (1) the scan through the Lazy Pirate client, its request_id the scan id, so
a retry is answered from the first run; (2) one Redis transaction stores the scan with every
result and appends each opportunity (score >= ``min_score``) to the stream; (3) only then
each opportunity is published. A scanner killed after (2) lost nothing: the trader reads the
stream. An opportunity is a symbol's setup on one bar, ``opportunity_id = SYMBOL:BAR_DATE``,
so scanning unchanged data again sights the same opportunity, which the trader handles once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
import zmq

from examples.scanpulse.bus import OPPORTUNITY, Publisher
from examples.scanpulse.config import ScanPulseConfig, tacore_client
from examples.scanpulse.store import Store, now_iso
from tacoreservice import TACoreClient, TACoreError

__all__ = ["Scanner", "opportunities_from_scan"]

Emit = Callable[[dict[str, Any]], None]


def _ignore(event: dict[str, Any]) -> None:
    return None


def opportunities_from_scan(
    scan_id: str, data: dict[str, Any], min_score: float
) -> list[dict[str, Any]]:
    """The rows of a ``scan.market`` reply worth a trader's look, as opportunity messages."""
    out = []
    for row in data.get("scan_results") or []:
        score = row.get("score")
        if score is None or score < min_score:
            continue
        out.append(
            {
                "opportunity_id": f"{row['symbol']}:{row['as_of']}",
                "scan_id": scan_id,
                "symbol": row["symbol"],
                "score": score,
                "price": row.get("price"),
                "as_of": row["as_of"],
                "market": row.get("market"),
                "rank": row.get("rank"),
                "signals": row.get("signals") or [],
                "reason": row.get("reason"),
            }
        )
    return out


class Scanner:
    def __init__(
        self,
        config: ScanPulseConfig,
        *,
        emit: Emit | None = None,
        context: zmq.Context | None = None,
    ):
        self.config = config
        self.emit = emit or _ignore
        self.ctx = context or zmq.Context.instance()
        self.store = Store(config)
        self.client: TACoreClient | None = None
        self.publisher: Publisher | None = None

    def __enter__(self) -> Scanner:
        self.client = tacore_client(self.config, "scanner")
        self.publisher = Publisher(self.ctx, self.config.pub_bind)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.publisher is not None:
            self.publisher.close()
        self.store.close()

    def scan_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "market": self.config.market,
            "scan_type": self.config.scan_type,
            "limit": 500,  # every row: the scan record keeps them all, not just the top
        }
        if self.config.symbols:
            params["symbols"] = list(self.config.symbols)
        if self.config.as_of:
            params["as_of"] = self.config.as_of
        return params

    def scan_once(self) -> list[dict[str, Any]]:
        """One cycle; the opportunities published (empty when the scan or Redis failed)."""
        assert self.client is not None and self.publisher is not None, "use `with Scanner(...)`"
        stamp = datetime.now(UTC)
        scan_id = f"scan-{stamp:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
        try:
            data = self.client.call("scan.market", self.scan_params(), request_id=scan_id)
        except TACoreError as exc:  # TACoreTimeout included: retries were spent
            self.emit({"hop": "scan_failed", "scan_id": scan_id, "error": str(exc)})
            return []
        opportunities = opportunities_from_scan(scan_id, data, self.config.min_score)
        scan = {"scan_id": scan_id, "created_at": now_iso(), **data}
        try:
            stored = self.store.record_scan(scan, opportunities)
        except redis.RedisError as exc:
            # Nothing is published that Redis does not hold: the next cycle scans again.
            self.emit({"hop": "scan_failed", "scan_id": scan_id, "error": f"redis: {exc}"})
            return []
        self.emit(
            {
                "hop": "scan",
                "scan_id": scan_id,
                "as_of": data.get("as_of"),
                "results": len(data.get("scan_results") or []),
                "min_score": self.config.min_score,
                "opportunities": [
                    {"symbol": o["symbol"], "score": o["score"], "price": o["price"]}
                    for o in stored
                ],
            }
        )
        for opp in stored:
            self.publisher.publish(OPPORTUNITY, opp)
        return stored

    def run(
        self,
        stop: threading.Event,
        cycles: int | None = None,
        wait_subscribers: int = 0,
        wait_s: float = 3.0,
    ) -> int:
        """Scan every ``interval_s`` until ``stop`` is set or ``cycles`` ran; the cycle count.

        ``wait_subscribers``: before the first scan, wait up to ``wait_s`` for that many
        subscribers, so a chain started together does not lose the first scan to the fast path.
        """
        done = 0
        with self:
            assert self.publisher is not None
            if wait_subscribers:
                self.publisher.wait_subscribers(wait_subscribers, wait_s)
            while not stop.is_set() and (cycles is None or done < cycles):
                self.scan_once()
                done += 1
                if cycles is not None and done >= cycles:
                    break
                stop.wait(self.config.interval_s)
        return done

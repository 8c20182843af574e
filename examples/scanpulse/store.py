"""ScanPulse's durable record in Redis: scans, opportunities, each hop, fills, notifications.

Keys (``P`` = ``config.key_prefix``, ``scanpulse`` by default):

=============================  ======  ==================================================
key                            type    what
=============================  ======  ==================================================
``P:scans``                    zset    scan ids by time
``P:scan:<scan_id>``           hash    scan_id, as_of, market, counts, ``results`` (JSON,
                                       every row the service returned), ``opportunities``
``P:opportunities``            stream  one entry per opportunity sighting (score >=
                                       min_score); consumer group ``traders``
``P:opportunity_ids``          set     every opportunity id seen
``P:opp:<opportunity_id>``     hash    the opportunity and its state: scanned, analysed,
                                       risk_checked, ordering, then a final state (filled,
                                       ordered, skipped, rejected, failed) and ``reason``
``P:hops:<opportunity_id>``    list    each state it went through, in order
``P:processed``                set     opportunities in a final state
``P:fills``                    stream  one entry per fill; consumer group ``notifiers``
``P:notified``                 set     order ids already notified
``P:notifications``            list    the notifications (JSON), one per fill
=============================  ======  ==================================================

Writes that belong together are one MULTI/EXEC transaction (or one Lua script), so a
component killed between two Redis calls leaves either the old state or the new one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from examples.scanpulse.config import ScanPulseConfig

__all__ = ["FINAL_STATES", "Store"]

FINAL_STATES = frozenset({"filled", "ordered", "skipped", "rejected", "failed"})
TRADERS_GROUP = "traders"
NOTIFIERS_GROUP = "notifiers"
_STREAM_MAXLEN = 100_000

# Record a fill once per order id: the check and the append must be one step, or a notifier
# killed between them would either lose the notification or repeat it.
_NOTIFY_ONCE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Store:
    def __init__(self, config: ScanPulseConfig, client: redis.Redis | None = None):
        self.config = config
        # Any: redis-py types every reply as a union of bytes, str and awaitables; with
        # decode_responses these are plain str, lists and dicts.
        self.r: Any = client or redis.Redis.from_url(config.redis_url, decode_responses=True)
        self._notify_once = self.r.register_script(_NOTIFY_ONCE)
        self.k_scans = config.key("scans")
        self.k_opportunities = config.key("opportunities")
        self.k_opportunity_ids = config.key("opportunity_ids")
        self.k_processed = config.key("processed")
        self.k_fills = config.key("fills")
        self.k_notified = config.key("notified")
        self.k_notifications = config.key("notifications")

    def k_scan(self, scan_id: str) -> str:
        return self.config.key("scan", scan_id)

    def k_opp(self, opportunity_id: str) -> str:
        return self.config.key("opp", opportunity_id)

    def k_hops(self, opportunity_id: str) -> str:
        return self.config.key("hops", opportunity_id)

    def close(self) -> None:
        self.r.close()

    # ------------------------------------------------------------------ scanner

    def record_scan(
        self, scan: dict[str, Any], opportunities: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Store the scan and append its opportunities to the stream, in one transaction.

        Returns the opportunities with the ``stream_id`` each got. A repeat sighting (same
        opportunity id in a later scan) is appended again but keeps its first hash fields and
        its state, so a scan repeated on unchanged data never re-opens a finished one.
        """
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.k_scan(scan["scan_id"]),
            mapping={
                "scan_id": scan["scan_id"],
                "as_of": _dumps(scan.get("as_of")),
                "market": str(scan.get("market")),
                "scan_type": str(scan.get("scan_type")),
                "created_at": scan["created_at"],
                "total_scanned": int(scan.get("total_scanned") or 0),
                "matched": int(scan.get("matched") or 0),
                "min_score": self.config.min_score,
                "results": _dumps(scan.get("scan_results") or []),
                "opportunities": _dumps([o["opportunity_id"] for o in opportunities]),
            },
        )
        pipe.zadd(self.k_scans, {scan["scan_id"]: time.time()})
        xadd_at: list[int] = []
        for opp in opportunities:
            oid = opp["opportunity_id"]
            pipe.sadd(self.k_opportunity_ids, oid)
            for field, value in (
                ("opportunity_id", oid),
                ("symbol", opp["symbol"]),
                ("score", opp["score"]),
                ("price", opp["price"]),
                ("as_of", opp["as_of"]),
                ("scan_id", opp["scan_id"]),
                ("first_seen", scan["created_at"]),
                ("state", "scanned"),
            ):
                pipe.hsetnx(self.k_opp(oid), field, value)
            pipe.hincrby(self.k_opp(oid), "sightings", 1)
            xadd_at.append(len(pipe))
            pipe.xadd(
                self.k_opportunities,
                {"opportunity": _dumps(opp)},
                maxlen=_STREAM_MAXLEN,
                approximate=True,
            )
        results = pipe.execute()
        return [
            opp | {"stream_id": str(results[i])}
            for opp, i in zip(opportunities, xadd_at, strict=True)
        ]

    # ------------------------------------------------------------------ trader

    def ensure_group(self, stream: str, group: str) -> None:
        try:
            self.r.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: fine
                raise

    def read_group(
        self, stream: str, group: str, consumer: str, *, pending: bool, count: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Entries of ``stream`` for ``consumer``: its unacknowledged ones (``pending``: what it
        was handed before a crash) or new ones; (stream_id, decoded body) each."""
        reply = self.r.xreadgroup(group, consumer, {stream: "0" if pending else ">"}, count=count)
        out: list[tuple[str, dict[str, Any]]] = []
        for _name, entries in reply or []:
            for sid, fields in entries:
                if not fields:  # trimmed from the stream while pending
                    self.r.xack(stream, group, sid)
                    continue
                body = orjson.loads(next(iter(fields.values())))
                out.append((sid, body))
        return out

    def ack(self, stream: str, group: str, stream_id: str) -> None:
        self.r.xack(stream, group, stream_id)

    def is_processed(self, opportunity_id: str) -> bool:
        return bool(self.r.sismember(self.k_processed, opportunity_id))

    def opportunity(self, opportunity_id: str) -> dict[str, str]:
        row: dict[str, str] = self.r.hgetall(self.k_opp(opportunity_id))
        return row

    def note_pub_received(self, opportunity_id: str) -> None:
        self.r.hset(self.k_opp(opportunity_id), "pub_received", 1)

    def advance(self, opportunity_id: str, state: str, **fields: Any) -> None:
        """Record a hop: the new state, what it learned, and the hop in the history list."""
        stamp = now_iso()
        mapping = {k: _field(v) for k, v in fields.items()} | {"state": state, "updated_at": stamp}
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k_opp(opportunity_id), mapping=mapping)
        pipe.rpush(self.k_hops(opportunity_id), f"{state}@{stamp}")
        pipe.execute()

    def finish(
        self,
        opportunity_id: str,
        state: str,
        *,
        fill: dict[str, Any] | None = None,
        stream_id: str | None = None,
        **fields: Any,
    ) -> str | None:
        """Enter a final state; with a fill, append it to the fills stream in the same step.

        Returns the fill's stream id. One transaction: a trader killed here either redoes the
        opportunity (and finds its order by client_order_id) or finds it processed.
        """
        assert state in FINAL_STATES, state
        stamp = now_iso()
        mapping = {k: _field(v) for k, v in fields.items()} | {"state": state, "updated_at": stamp}
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k_opp(opportunity_id), mapping=mapping)
        pipe.rpush(self.k_hops(opportunity_id), f"{state}@{stamp}")
        pipe.sadd(self.k_processed, opportunity_id)
        if fill is not None:
            pipe.xadd(self.k_fills, {"fill": _dumps(fill)}, maxlen=_STREAM_MAXLEN, approximate=True)
        if stream_id is not None:
            pipe.xack(self.k_opportunities, TRADERS_GROUP, stream_id)
        results = pipe.execute()
        return str(results[3]) if fill is not None else None

    def note_attempt(self, opportunity_id: str, error: str) -> int:
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(self.k_opp(opportunity_id), "attempts", 1)
        pipe.hset(self.k_opp(opportunity_id), "last_error", error[:500])
        attempts, _ = pipe.execute()
        return int(attempts)

    # ------------------------------------------------------------------ notifier

    def record_notification(self, notification: dict[str, Any]) -> bool:
        """Append the notification unless its order was notified before; True if appended."""
        added = self._notify_once(
            keys=[self.k_notified, self.k_notifications],
            args=[notification["order_id"], _dumps(notification)],
        )
        return bool(added)

    # ------------------------------------------------------------------ reading back

    def scans(self) -> list[dict[str, Any]]:
        out = []
        for scan_id in self.r.zrange(self.k_scans, 0, -1):
            raw = self.r.hgetall(self.k_scan(scan_id))
            out.append(
                raw
                | {
                    "as_of": orjson.loads(raw["as_of"]),
                    "results": orjson.loads(raw["results"]),
                    "opportunities": orjson.loads(raw["opportunities"]),
                }
            )
        return out

    def opportunities(self) -> list[dict[str, Any]]:
        """Every opportunity's hash plus its ``hops`` (state names in order), by first sighting."""
        ids = sorted(self.r.smembers(self.k_opportunity_ids))
        rows = []
        for oid in ids:
            row: dict[str, Any] = dict(self.opportunity(oid))
            row["hops"] = [h.split("@", 1)[0] for h in self.r.lrange(self.k_hops(oid), 0, -1)]
            rows.append(row)
        return sorted(rows, key=lambda r: (r.get("first_seen", ""), -float(r.get("score", 0))))

    def stream_entries(self, stream: str) -> list[dict[str, Any]]:
        return [orjson.loads(next(iter(f.values()))) for _sid, f in self.r.xrange(stream)]

    def notifications(self) -> list[dict[str, Any]]:
        return [orjson.loads(x) for x in self.r.lrange(self.k_notifications, 0, -1)]

    def backlog(self) -> dict[str, int]:
        """What is not finished yet: opportunities not in a final state, fills not notified."""
        ids = self.r.smembers(self.k_opportunity_ids)
        processed = self.r.smembers(self.k_processed)
        fills = {f["order_id"] for f in self.stream_entries(self.k_fills)}
        notified = self.r.smembers(self.k_notified)
        return {
            "opportunities": len(set(ids) - set(processed)),
            "fills": len(fills - set(notified)),
        }


def _field(value: Any) -> str | int | float:
    """A hash field value: numbers and strings as they are, anything else as JSON."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str | int | float):
        return value
    return _dumps(value)

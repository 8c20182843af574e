"""The trader: opportunity -> ``analyze.stock`` -> ``evaluate.risk`` -> ``execute.order`` -> fill.

Opportunities arrive two ways: the scanner's PUB (fast) and the Redis stream (the record),
read through the consumer group ``traders``. Whatever arrives, an opportunity already in a
final state is skipped, so the two paths, a restarted trader and a re-delivered message all
end in one outcome. Each hop is written to the opportunity's Redis hash before the next one
starts; ``ordering`` is written *before* ``execute.order`` is sent, so a trader that dies
with an order in flight looks the order up by its client_order_id when it resumes, rather
than trusting its own memory.

No order is filled twice, at three levels: the Lazy Pirate client resends with the same
request_id (the broker joins or answers the retry), the order's ``client_order_id`` is
``sp-<opportunity_id>`` (the paper broker returns the existing order for a known one, with
``duplicate: true``), and the resume path above.

Errors: a service error that retrying cannot fix (INVALID_PARAMS, DATA_UNAVAILABLE,
UNAUTHORIZED, ...) ends the opportunity ``skipped`` with the error as its reason; anything
else (timeouts after every retry, WORKER_LOST, OVERLOADED, INTERNAL, Redis down) leaves it
pending, to be retried from the stream, until ``max_attempts``, then ``failed``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
import zmq

from examples.scanpulse.bus import FILL, OPPORTUNITY, Publisher, Subscriber
from examples.scanpulse.config import ScanPulseConfig, tacore_client
from examples.scanpulse.store import TRADERS_GROUP, Store
from tacoreservice import TACoreClient, TACoreError

__all__ = ["PERMANENT_ERRORS", "Trader"]

Emit = Callable[[dict[str, Any]], None]
# hook(hop, opportunity, detail): called after each hop, in the trader's thread; for tests
# that inject a fault at a precise point of the chain.
Hook = Callable[[str, dict[str, Any], dict[str, Any]], None]

# Error codes that the same request will always get again.
PERMANENT_ERRORS = frozenset(
    {
        "INVALID_PARAMS",
        "INVALID_REQUEST",
        "DATA_UNAVAILABLE",
        "NOT_FOUND",
        "UNAUTHORIZED",
        "METHOD_NOT_FOUND",
        "PAYLOAD_TOO_LARGE",
        "ENGINE_UNAVAILABLE",
    }
)
BUY_ACTIONS = frozenset({"BUY"})


def _ignore(*args: Any) -> None:
    return None


def _fill_message(opp: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
    fills = order.get("fills") or []
    qty = sum(f["quantity"] for f in fills)
    notional = sum(f["quantity"] * f["price"] for f in fills)
    return {
        "opportunity_id": opp["opportunity_id"],
        "order_id": order["order_id"],
        "client_order_id": order.get("client_order_id"),
        "symbol": order["symbol"],
        "action": order["action"],
        "quantity": qty,
        "price": round(notional / qty, 6) if qty else None,
        "commission": round(sum(f["commission"] for f in fills), 2),
        "fills": len(fills),
        "as_of": fills[-1]["as_of"] if fills else None,
        "filled_at": order.get("updated_at"),
    }


class Trader:
    def __init__(
        self,
        config: ScanPulseConfig,
        *,
        emit: Emit | None = None,
        hook: Hook | None = None,
        context: zmq.Context | None = None,
    ):
        self.config = config
        self.emit = emit or _ignore
        self.hook = hook or _ignore
        self.ctx = context or zmq.Context.instance()
        self.store = Store(config)
        self.consumer = config.trader_name
        self.client: TACoreClient | None = None
        self.subscriber: Subscriber | None = None
        self.publisher: Publisher | None = None
        self.stats: Counter[str] = Counter()

    def __enter__(self) -> Trader:
        self.store.ensure_group(self.store.k_opportunities, TRADERS_GROUP)
        self.client = tacore_client(self.config, "trader")
        self.subscriber = Subscriber(self.ctx, self.config.pub, OPPORTUNITY)
        self.publisher = Publisher(self.ctx, self.config.fills_pub_bind)
        return self

    def __exit__(self, *exc: object) -> None:
        for part in (self.client, self.subscriber, self.publisher):
            if part is not None:
                part.close()
        self.store.close()

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event, wait_subscribers: int = 0, wait_s: float = 3.0) -> None:
        """Handle opportunities until ``stop`` is set: PUB as they come, the stream on start
        and every ``reconcile_interval_s``."""
        with self:
            assert self.subscriber is not None and self.publisher is not None
            if wait_subscribers:
                self.publisher.wait_subscribers(wait_subscribers, wait_s)
            self.reconcile()
            last = time.monotonic()
            while not stop.is_set():
                message = self.subscriber.receive(100)
                if message is not None:
                    self.on_published(message)
                if time.monotonic() - last >= self.config.reconcile_interval_s:
                    self.reconcile()
                    last = time.monotonic()
            self._note_delivered()

    def _note_delivered(self) -> None:
        """On stop: what PUB delivered but the loop did not read is noted as received, not
        handled (the stream still holds whatever is not done, for the next start). A stop
        often comes right after a reconcile finished the opportunities whose PUB messages
        still wait here; unread, they would look as if the fast path had lost them."""
        assert self.subscriber is not None
        while (message := self.subscriber.receive(0)) is not None:
            try:
                self._note_received(message)
            except redis.RedisError:
                return

    def on_published(self, opp: dict[str, Any]) -> None:
        try:
            if not self._note_received(opp):
                return  # not an opportunity message
        except redis.RedisError:
            return  # the stream will bring it once Redis is back
        self.handle(opp, via="pub")

    def _note_received(self, message: dict[str, Any]) -> bool:
        """Count a PUB message and note its opportunity as received over PUB; False when it
        is not an opportunity. Raises redis.RedisError."""
        oid = message.get("opportunity_id")
        if not isinstance(oid, str):
            return False
        self.stats["received_pub"] += 1
        self.store.note_pub_received(oid)
        return True

    def reconcile(self) -> int:
        """Handle what the stream holds that is not done: first the entries this consumer was
        handed before (a crash or a transient failure left them unacknowledged), then new
        ones. Returns how many entries were looked at."""
        seen = 0
        try:
            for pending in (True, False):
                entries = self.store.read_group(
                    self.store.k_opportunities, TRADERS_GROUP, self.consumer, pending=pending
                )
                for stream_id, opp in entries:
                    seen += 1
                    self.stats["received_stream"] += 1
                    self.handle(opp, via="stream", stream_id=stream_id)
        except redis.RedisError as exc:
            self.emit({"hop": "error", "where": "reconcile", "error": f"redis: {exc}"})
        return seen

    # ------------------------------------------------------------------ one opportunity

    def handle(self, opp: dict[str, Any], via: str, stream_id: str | None = None) -> str | None:
        """Take one opportunity as far as it goes; its final state, or None if pending."""
        oid = opp["opportunity_id"]
        try:
            if self.store.is_processed(oid):
                self.stats["already_done"] += 1
                if stream_id is not None:
                    self.store.ack(self.store.k_opportunities, TRADERS_GROUP, stream_id)
                return self.store.opportunity(oid).get("state")
            self.emit(
                {
                    "hop": "received",
                    "via": via,
                    "opportunity_id": oid,
                    "symbol": opp["symbol"],
                    "score": opp.get("score"),
                }
            )
            return self._advance(opp, via, stream_id)
        except TACoreError as exc:
            if exc.code in PERMANENT_ERRORS:
                reason = f"{exc.code}: {exc.message}"
                self._finish(opp, "skipped", stream_id, reason=reason)
                return "skipped"
            return self._retry_later(opp, stream_id, str(exc))
        except redis.RedisError as exc:
            self.emit({"hop": "error", "opportunity_id": oid, "error": f"redis: {exc}"})
            return None

    def _retry_later(self, opp: dict[str, Any], stream_id: str | None, error: str) -> str | None:
        attempts = self.store.note_attempt(opp["opportunity_id"], error)
        if attempts >= self.config.max_attempts:
            reason = f"gave up after {attempts} attempts; last error: {error}"
            self._finish(opp, "failed", stream_id, reason=reason)
            return "failed"
        self.emit(
            {
                "hop": "retry",
                "opportunity_id": opp["opportunity_id"],
                "symbol": opp["symbol"],
                "attempts": attempts,
                "error": error,
            }
        )
        return None

    def _finish(
        self,
        opp: dict[str, Any],
        state: str,
        stream_id: str | None,
        *,
        fill: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        self.store.finish(opp["opportunity_id"], state, fill=fill, stream_id=stream_id, **fields)
        self.stats[state] += 1
        self.emit(
            {
                "hop": "final",
                "state": state,
                "opportunity_id": opp["opportunity_id"],
                "symbol": opp["symbol"],
                "reason": fields.get("reason"),
            }
        )
        self.hook("final", opp, {"state": state, **fields})

    def _call(self, method: str, params: dict[str, Any], **kwargs: Any) -> Any:
        assert self.client is not None, "use `with Trader(...)`"
        return self.client.call(method, params, **kwargs)

    def _advance(self, opp: dict[str, Any], via: str, stream_id: str | None) -> str:
        oid, symbol = opp["opportunity_id"], opp["symbol"]
        client_order_id = f"{self.config.order_prefix}-{oid}"
        if self.store.opportunity(oid).get("state") == "ordering":
            # We died with this order possibly sent: the service's ledger knows, we don't.
            order = self._find_order(client_order_id)
            if order is not None:
                self.emit({"hop": "resumed", "opportunity_id": oid, "symbol": symbol})
                return self._after_order(opp, order, stream_id, resumed=True)

        analysis = self._call("analyze.stock", {"symbol": symbol, "as_of": opp["as_of"]})
        decision = str(analysis.get("action", "")).upper()
        self.store.advance(
            oid,
            "analysed",
            via=via,
            decision=decision,
            rating=analysis.get("rating"),
            confidence=analysis.get("confidence"),
            analysed_as_of=analysis.get("as_of"),
        )
        self.emit(
            {
                "hop": "analysed",
                "opportunity_id": oid,
                "symbol": symbol,
                "decision": decision,
                "rating": analysis.get("rating"),
                "confidence": analysis.get("confidence"),
            }
        )
        self.hook("analysed", opp, {"analysis": analysis})
        if decision not in BUY_ACTIONS:
            reason = (
                f"analysis: {analysis.get('rating')} (action {decision}, confidence "
                f"{analysis.get('confidence')})"
            )
            self._finish(opp, "skipped", stream_id, reason=reason)
            return "skipped"

        portfolio = self._call("portfolio.get", self._as_of({}))
        quantity = self._quantity(opp, analysis, portfolio)
        if quantity <= 0:
            pct = self.config.position_pct or analysis.get("position_size_pct")
            reason = f"a position of {pct}% of equity buys no whole unit"
            self._finish(opp, "skipped", stream_id, reason=reason)
            return "skipped"
        proposed = {"symbol": symbol, "action": "buy", "quantity": quantity}
        holdings = {
            sym: {"quantity": p["quantity"], "cost_basis": p["avg_cost"]}
            for sym, p in (portfolio.get("positions") or {}).items()
        }
        request = {"portfolio": holdings, "cash": portfolio["cash"], "proposed_trade": proposed}
        if portfolio.get("peak_equity"):
            # The account's real peak, not one estimated from today's holdings.
            request["peak_equity"] = portfolio["peak_equity"]
        risk = self._call("evaluate.risk", self._as_of(request))
        checks = (risk.get("pre_trade") or {}).get("checks") or []
        failed = [f"{c['name']}: {c['reason']}" for c in checks if not c.get("passed")]
        approved = bool(risk.get("approved"))
        self.store.advance(
            oid,
            "risk_checked",
            proposed_trade=proposed,
            risk_approved=approved,
            risk_reasons=failed,
            risk_score=risk.get("risk_score"),
            checks=[c["name"] for c in checks],
        )
        self.emit(
            {
                "hop": "risk",
                "opportunity_id": oid,
                "symbol": symbol,
                "approved": approved,
                "quantity": quantity,
                "reasons": failed,
            }
        )
        self.hook("risk_checked", opp, {"risk": risk, "proposed_trade": proposed})
        if not approved:
            self._finish(opp, "skipped", stream_id, reason="risk: " + "; ".join(failed))
            return "skipped"

        self.store.advance(oid, "ordering", client_order_id=client_order_id)
        self.hook("ordering", opp, {"client_order_id": client_order_id})
        params = self._as_of(
            {
                "symbol": symbol,
                "action": "buy",
                "quantity": quantity,
                "order_type": "market",
                "client_order_id": client_order_id,
            }
        )
        # The request_id is derived too: a resend after a restart is the same request.
        order = self._call("execute.order", params, request_id=client_order_id)
        self.hook("ordered", opp, {"order": order})
        return self._after_order(opp, order, stream_id)

    def _after_order(
        self,
        opp: dict[str, Any],
        order: dict[str, Any],
        stream_id: str | None,
        resumed: bool = False,
    ) -> str:
        status = order.get("status")
        first_fill = (order.get("fills") or [{}])[0]
        fields: dict[str, Any] = {
            "order_id": order["order_id"],
            "client_order_id": order.get("client_order_id"),
            "order_status": status,
            "duplicate": bool(order.get("duplicate")) or resumed,
        }
        self.emit(
            {
                "hop": "order",
                "opportunity_id": opp["opportunity_id"],
                "symbol": opp["symbol"],
                "status": status,
                "order_id": order["order_id"],
                "quantity": order.get("filled_quantity"),
                "price": first_fill.get("price"),
                "duplicate": fields["duplicate"],
                "reasons": order.get("reasons"),
            }
        )
        if status == "filled":
            fill = _fill_message(opp, order)
            fields |= {"fill_price": fill["price"], "filled_quantity": fill["quantity"]}
            self._finish(opp, "filled", stream_id, fill=fill, **fields)
            assert self.publisher is not None
            self.publisher.publish(FILL, fill)
            return "filled"
        if status == "open":
            self._finish(opp, "ordered", stream_id, reason="order resting (open)", **fields)
            return "ordered"
        reason = f"order {status}: " + "; ".join(order.get("reasons") or [])
        self._finish(opp, "rejected", stream_id, reason=reason, **fields)
        return "rejected"

    def _find_order(self, client_order_id: str) -> dict[str, Any] | None:
        try:
            order: dict[str, Any] = self._call("order.status", {"client_order_id": client_order_id})
        except TACoreError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise
        return order

    def _as_of(self, params: dict[str, Any]) -> dict[str, Any]:
        """Pinned to config.as_of when set; else the service's latest bar / paper clock."""
        return params | {"as_of": self.config.as_of} if self.config.as_of else params

    def _quantity(
        self, opp: dict[str, Any], analysis: dict[str, Any], portfolio: dict[str, Any]
    ) -> float:
        if self.config.position_pct is None and self.config.quantity is not None:
            return self.config.quantity
        # A fixed share of equity, or the analysis' own size for this name.
        pct = self.config.position_pct or analysis.get("position_size_pct") or 0.0
        price = analysis.get("price") or opp.get("price")
        if not price or pct <= 0:
            return 0.0
        units = portfolio["equity"] * float(pct) / 100.0 / float(price)
        if opp.get("market") == "crypto":
            return math.floor(units * 1e6) / 1e6  # exchanges trade fractions of a coin
        return float(math.floor(units))

"""The paper broker: orders filled against the bundled (or configured) market data.

The account has a market clock, a date: the paper market's "today". It starts at the last
daily bar of the market data (the latest of SPY, CSI300 and BTCUSDT) and only moves forward,
either by ``clock.advance`` or by an order whose ``as_of`` is later than the clock. An order
``as_of`` before the clock is refused: the ledger cannot trade in its own past.

- Market orders fill at once at the close of the last bar at or before the clock, moved
  ``slippage_bps`` against the taker (see :mod:`tacoreservice.trading.fills`). A symbol whose
  last bar is more than ``MAX_STALE_DAYS`` older than the clock (its data ends, or the market
  is closed for longer than any holiday) is refused with DATA_UNAVAILABLE rather than filled
  at a stale price.
- Limit, stop and stop_limit orders rest as ``open`` and are matched against each later daily
  bar when the clock advances. ``gtc`` orders rest until filled or cancelled; ``day`` orders
  see only the first bar after they were placed (the next session) and expire if that bar
  does not fill them.
- Every order passes the shared pre-trade check (``tacoreservice.risk.pretrade``) first; a
  failed check stores the order as ``rejected`` with the reasons. Resting orders are checked
  again when a bar fills them, at the fill price, because cash and holdings may have changed
  since they were placed (two resting sells of the same shares must not both fill); failing
  then also ends them ``rejected``. Commission is folded into a buy's checked price, so
  ``min_cash`` accounts for it.
- Idempotency: the placement transaction first looks the order up by ``request_id`` and by
  ``client_order_id``; a hit is returned unchanged with ``duplicate: true``. The same
  ``client_order_id`` with different params is refused with INVALID_PARAMS, and the same
  ``request_id`` with different params with INVALID_REQUEST (as the broker does for a reused
  id), both naming the original order, because silently answering a different order than the
  one asked for is how money goes missing.

Marks: positions are valued at the close on or before the clock. Risk checks of a fill inside
a bar mark the other positions at the previous close (the bar's own close is not known yet).
Start-of-day equity is today's cash plus the positions at the previous bar's close; the equity
peak is sampled at the close of every bar the clock passes while an order is open or a position
held, and after each fill. One cash balance, no currency conversion: a CNY or USDT price is
booked as the same number of cash units as a USD price.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from tacoreservice.config import TradingSettings
from tacoreservice.market_data.provider import Bars, MarketDataProvider, parse_as_of
from tacoreservice.protocol.errors import (
    DataUnavailable,
    ErrorCode,
    InvalidParams,
    ServiceError,
)
from tacoreservice.protocol.messages import utc_timestamp
from tacoreservice.risk.pretrade import PortfolioState, PreTradeResult, ProposedTrade, check_trade
from tacoreservice.trading.fills import commission_for, market_fill_price, match_bar
from tacoreservice.trading.ledger import Account, Ledger, OrderRecord
from tacoreservice.trading.orders import OrderRequest

__all__ = ["MAX_STALE_DAYS", "PaperBroker"]

MAX_STALE_DAYS = 14  # longer than any exchange holiday in the data (Golden Week: 9 days)
_DAY = np.timedelta64(1, "D")
_CLOCK_MARKETS = ("us", "cn", "crypto")


def _money(x: float) -> float:
    return round(float(x), 2)


def _qty(x: float) -> float:
    return round(float(x), 8)


def _px(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def parse_day(value: str, field: str) -> str:
    """A request's date as YYYY-MM-DD (a datetime counts as its calendar day)."""
    try:
        parsed = parse_as_of(value)
    except InvalidParams as exc:
        raise InvalidParams(f"{field}: {exc.message}", {"field": field}) from None
    if parsed is None:
        raise InvalidParams(f"{field} is empty; give a date such as 2025-06-02", {"field": field})
    return str(parsed.day)


class PriceBook:
    """Daily bars of the symbols one call touches, loaded once and searched by date."""

    def __init__(self, market_data: MarketDataProvider):
        self.md = market_data
        self._bars: dict[str, Bars] = {}

    def bars(self, symbol: str) -> Bars:
        bars = self._bars.get(symbol)
        if bars is None:
            bars = self._bars[symbol] = self.md.bars(symbol, "1d")
        return bars

    def _index_on_or_before(self, symbol: str, day: str) -> int:
        bars = self.bars(symbol)
        end = (np.datetime64(day, "D") + _DAY).astype("datetime64[s]")
        return int(np.searchsorted(bars.time, end, side="left")) - 1

    def close(self, symbol: str, day: str) -> tuple[float, str]:
        """The close of the last bar on or before ``day`` and that bar's date."""
        i = self._index_on_or_before(symbol, day)
        if i < 0:
            first = str(self.bars(symbol).time[0].astype("datetime64[D]"))
            raise DataUnavailable(
                f"no daily bar for {symbol} on or before {day}; its data starts {first}",
                {"symbol": symbol, "day": day, "first_available": first},
            )
        bars = self.bars(symbol)
        return float(bars.close[i]), str(bars.time[i].astype("datetime64[D]"))

    def close_before(self, symbol: str, day: str) -> float | None:
        """The close of the last bar strictly before ``day`` (None when there is none)."""
        prev = str(np.datetime64(day, "D") - _DAY)
        i = self._index_on_or_before(symbol, prev)
        return float(self.bars(symbol).close[i]) if i >= 0 else None

    def bars_between(
        self, symbol: str, after: str, upto: str
    ) -> list[tuple[str, float, float, float]]:
        """(day, open, high, low) of the bars dated after ``after`` up to ``upto``."""
        bars = self.bars(symbol)
        lo = self._index_on_or_before(symbol, after) + 1
        hi = self._index_on_or_before(symbol, upto) + 1
        days = bars.time[lo:hi].astype("datetime64[D]").astype(str)
        return [
            (str(d), float(o), float(h), float(low))
            for d, o, h, low in zip(
                days, bars.open[lo:hi], bars.high[lo:hi], bars.low[lo:hi], strict=True
            )
        ]

    def last_day(self, symbol: str) -> str:
        return str(self.bars(symbol).time[-1].astype("datetime64[D]"))


@dataclass
class WalkResult:
    filled: list[str]
    rejected: list[str]
    expired: list[str]
    triggered: list[str]
    bars: int


class PaperBroker:
    """The default broker adapter. One instance per call; the state lives in the ledger."""

    name = "paper"

    def __init__(self, ledger: Ledger, market_data: MarketDataProvider, trading: TradingSettings):
        self.ledger = ledger
        self.md = market_data
        self.trading = trading

    # ------------------------------------------------------------------ clock

    def data_end(self) -> str:
        """The last daily bar of the market data: the latest of the markets' benchmarks."""
        days = []
        for market in _CLOCK_MARKETS:
            try:
                days.append(PriceBook(self.md).last_day(self.md.benchmark_for(market)))
            except ServiceError:
                continue  # a live provider that serves one market only
        if not days:
            raise DataUnavailable("the market data has no benchmark series to set the clock by")
        return max(days)

    def _open_account(self, data_end: str) -> Account:
        return self.ledger.open_account(self.trading.paper.initial_cash, data_end)

    def clock(self) -> dict[str, Any]:
        data_end = self.data_end()
        with self.ledger.snapshot():
            account = self.ledger.account()
            open_orders = self.ledger.count_orders("open")
        return {
            "clock": account.clock if account else data_end,
            "data_end": data_end,
            "open_orders": open_orders,
            "account_created": account is not None,
        }

    def advance_clock(
        self, to: str | None = None, bars: int | None = None, calendar: str = "SPY"
    ) -> dict[str, Any]:
        data_end = self.data_end()
        book = PriceBook(self.md)
        calendar_symbol = self.md.resolve(calendar).symbol if bars is not None else None
        with self.ledger.transaction():
            account = self._open_account(data_end)
            before = account.clock
            if to is not None:
                target = parse_day(to, "to")
            else:
                assert bars is not None and calendar_symbol is not None
                ahead = book.bars_between(calendar_symbol, before, data_end)
                if len(ahead) < bars:
                    raise InvalidParams(
                        f"bars: {calendar_symbol} has only {len(ahead)} daily bars after the "
                        f"clock {before} (the data ends {data_end}); ask for at most {len(ahead)}",
                        {"field": "bars", "available": len(ahead)},
                    )
                target = ahead[bars - 1][0]
            self._check_target(target, before, data_end, "to")
            walk = self._walk(book, before, target)
            orders = self._present_many(walk.filled + walk.rejected + walk.expired)
        by_id = {o["order_id"]: o for o in orders}
        return {
            "clock_before": before,
            "clock": target,
            "data_end": data_end,
            "bars_walked": walk.bars,
            "filled": [by_id[i] for i in walk.filled],
            "rejected": [by_id[i] for i in walk.rejected],
            "expired": [by_id[i] for i in walk.expired],
            "triggered": walk.triggered,
        }

    @staticmethod
    def _check_target(target: str, clock: str, data_end: str, field: str) -> None:
        if target < clock:
            raise InvalidParams(
                f"{field} {target} is before the paper clock {clock}; the clock only moves "
                "forward (portfolio.reset with as_of starts the account at an earlier date)",
                {"field": field, "clock": clock},
            )
        if target > data_end:
            raise InvalidParams(
                f"{field} {target} is after the last bar of the market data ({data_end}); "
                "the paper clock cannot run past the data",
                {"field": field, "data_end": data_end},
            )

    def _walk(self, book: PriceBook, old: str, new: str) -> WalkResult:
        """Move the clock from ``old`` to ``new``, matching open orders bar by bar."""
        result = WalkResult([], [], [], [], 0)
        if new <= old:
            return result
        orders = self.ledger.open_orders()
        timeline: dict[str, list[tuple[int, OrderRecord, tuple[float, float, float]]]] = {}
        for order in orders:
            for day, o, h, low in book.bars_between(order.symbol, old, new):
                timeline.setdefault(day, []).append((order.seq, order, (o, h, low)))
        # Days on which only held positions trade still move the equity peak.
        for symbol in self.ledger.positions():
            for day, *_ in book.bars_between(symbol, old, new):
                timeline.setdefault(day, [])
        costs = self.trading.costs
        for day in sorted(timeline):
            for _seq, order, (o, h, low) in sorted(timeline[day], key=lambda e: e[0]):
                if order.status != "open":
                    continue
                match = match_bar(
                    order_type=order.order_type,
                    action=order.action,
                    limit=order.price,
                    stop=order.stop_price,
                    stop_triggered=order.stop_triggered,
                    open_=o,
                    high=h,
                    low=low,
                    costs=costs,
                )
                if match.outcome == "fill":
                    filled = self._fill_resting(book, order, match.price, match.reference, day)
                    (result.filled if filled else result.rejected).append(order.order_id)
                elif match.outcome == "triggered":
                    self.ledger.update_order(order.order_id, stop_triggered=True)
                    order.stop_triggered = True
                    result.triggered.append(order.order_id)
                if order.status == "open" and order.time_in_force == "day":
                    reason = f"day order not filled by its session's bar on {day}"
                    self.ledger.update_order(order.order_id, status="expired", reasons=[reason])
                    order.status = "expired"
                    result.expired.append(order.order_id)
            self.ledger.note_equity(self._equity(book, day))
        result.bars = len(timeline)
        self.ledger.set_clock(new)
        self.ledger.note_equity(self._equity(book, new))
        return result

    def _fill_resting(
        self, book: PriceBook, order: OrderRecord, price: float, reference: float, day: str
    ) -> bool:
        commission = commission_for(order.quantity, price, self.trading.costs)
        mark_day = str(np.datetime64(day, "D") - _DAY)
        check = self._pre_trade(book, order, price, commission, mark_day, day)
        risk = {"pre_trade": (order.risk or {}).get("pre_trade"), "at_fill": check.as_dict()}
        if not check.approved:
            reasons = [f"at the fill on {day}: {c.name}: {c.reason}" for c in check.failed]
            self.ledger.update_order(order.order_id, status="rejected", reasons=reasons, risk=risk)
            order.status = "rejected"
            return False
        self.ledger.update_order(order.order_id, risk=risk)
        self.ledger.record_fill(
            order,
            price=price,
            reference_price=reference,
            commission=commission,
            as_of=day,
            price_bar=day,
        )
        return True

    # ------------------------------------------------------------------ valuation and risk

    def _equity(self, book: PriceBook, day: str) -> float:
        account = self.ledger.account()
        assert account is not None
        return account.cash + sum(
            p.quantity * book.close(sym, day)[0] for sym, p in self.ledger.positions().items()
        )

    def _pre_trade(
        self,
        book: PriceBook,
        order: OrderRecord,
        price: float,
        commission: float,
        mark_day: str,
        trade_day: str,
    ) -> PreTradeResult:
        account = self.ledger.account()
        assert account is not None
        held = {s: p.quantity for s, p in self.ledger.positions().items()}
        prices: dict[str, float] = {}
        start_of_day = account.cash
        for sym in held:
            if sym != order.symbol:
                prices[sym] = book.close(sym, mark_day)[0]
        for sym, qty in held.items():
            prev = book.close_before(sym, trade_day)
            start_of_day += qty * (prev if prev is not None else prices.get(sym, price))
        prices[order.symbol] = price
        # A buy's commission leaves cash too: folded into the price, min_cash accounts for it.
        checked_price = price + commission / order.quantity if order.action == "buy" else price
        state = PortfolioState(
            positions=held,
            prices=prices,
            cash=account.cash,
            start_of_day_equity=start_of_day,
            peak_equity=account.peak_equity,
        )
        trade = ProposedTrade(order.symbol, order.action, order.quantity, checked_price)  # type: ignore[arg-type]
        return check_trade(state, trade, self.trading.limits)

    # ------------------------------------------------------------------ orders

    def _resolve(self, symbol: str) -> str:
        info = self.md.resolve(symbol)
        if info.kind == "index":
            raise InvalidParams(
                f"symbol {info.symbol} is an index, which cannot be traded; trade an ETF that "
                "tracks it or its constituents",
                {"field": "symbol", "symbol": info.symbol},
            )
        return info.symbol

    def _duplicate(
        self, request_id: str | None, req: OrderRequest, fingerprint: str
    ) -> OrderRecord | None:
        found = self.ledger.find_order(request_id=request_id)
        if found is not None and found.fingerprint != fingerprint:
            raise ServiceError(
                ErrorCode.INVALID_REQUEST,
                f"request_id {request_id!r} already placed order {found.order_id} with different "
                "params; use a fresh request_id per order (retries reuse it with the same params)",
                {"order_id": found.order_id, "request_id": request_id},
            )
        if found is None and req.client_order_id is not None:
            found = self.ledger.find_order(client_order_id=req.client_order_id)
            if found is not None and found.fingerprint != fingerprint:
                raise InvalidParams(
                    f"client_order_id {req.client_order_id!r} already names order "
                    f"{found.order_id} ({found.action} {_qty(found.quantity)} {found.symbol} "
                    f"{found.order_type}) with different params; use a new client_order_id for "
                    "a new order",
                    {"field": "client_order_id", "order_id": found.order_id},
                )
        return found

    def place_order(self, req: OrderRequest, request_id: str | None) -> dict[str, Any]:
        symbol = self._resolve(req.symbol)
        fingerprint = req.fingerprint(symbol)
        as_of = parse_day(req.as_of, "as_of") if req.as_of else None
        book = PriceBook(self.md)
        book.bars(symbol)  # the first read parses the file: do it before taking the lock
        data_end = self.data_end()
        with self.ledger.transaction():
            account = self._open_account(data_end)
            existing = self._duplicate(request_id or None, req, fingerprint)
            if existing is not None:
                return {**self._present(existing), "duplicate": True}
            clock = account.clock
            if as_of is not None:
                self._check_target(as_of, clock, data_end, "as_of")
                self._walk(book, clock, as_of)
                clock = as_of
            order = self._new_order(req, request_id or None, symbol, fingerprint, clock)
            if req.kind == "market":
                self._place_market(book, order, clock)
            else:
                self._place_resting(book, order, clock)
            reply = self._present(order)
        return {**reply, "duplicate": False}

    @staticmethod
    def _new_order(
        req: OrderRequest, request_id: str | None, symbol: str, fingerprint: str, clock: str
    ) -> OrderRecord:
        now = utc_timestamp()
        return OrderRecord(
            order_id="ord-" + uuid.uuid4().hex,
            request_id=request_id,
            client_order_id=req.client_order_id,
            fingerprint=fingerprint,
            symbol=symbol,
            action=req.action,
            order_type=req.kind,
            quantity=req.quantity,
            filled_quantity=0.0,
            price=req.price,
            stop_price=req.stop_price,
            time_in_force=req.time_in_force,
            status="open",
            stop_triggered=False,
            risk=None,
            reasons=[],
            as_of=clock,
            created_at=now,
            updated_at=now,
        )

    def _reject(self, order: OrderRecord, check: PreTradeResult) -> None:
        order.status = "rejected"
        order.reasons = [f"{c.name}: {c.reason}" for c in check.failed]
        self.ledger.insert_order(order)

    def _place_market(self, book: PriceBook, order: OrderRecord, clock: str) -> None:
        reference, bar_day = book.close(order.symbol, clock)
        stale = int((np.datetime64(clock, "D") - np.datetime64(bar_day, "D")) / _DAY)
        if stale > MAX_STALE_DAYS:
            raise DataUnavailable(
                f"no price for {order.symbol} near the paper clock {clock}: its last bar is "
                f"{bar_day}, {stale} days earlier (the data ends there or the market is closed); "
                f"a market order is not filled at a stale price. Use portfolio.reset with an "
                f"earlier as_of to trade it",
                {"symbol": order.symbol, "clock": clock, "last_bar": bar_day},
            )
        price = market_fill_price(reference, order.action, self.trading.costs)
        commission = self._admit(book, order, price, clock)
        if commission is None:
            return
        self.ledger.record_fill(
            order,
            price=price,
            reference_price=reference,
            commission=commission,
            as_of=clock,
            price_bar=bar_day,
        )
        self.ledger.note_equity(self._equity(book, clock))

    def _place_resting(self, book: PriceBook, order: OrderRecord, clock: str) -> None:
        if order.order_type == "stop":
            assert order.stop_price is not None
            # The worst fill a stop expects is its stop price with slippage.
            price = market_fill_price(order.stop_price, order.action, self.trading.costs)
        else:
            assert order.price is not None
            price = order.price
        book.close(order.symbol, clock)  # the symbol must have data by now
        self._admit(book, order, price, clock)

    def _admit(self, book: PriceBook, order: OrderRecord, price: float, clock: str) -> float | None:
        """Pre-trade check at ``price``, then store the order: as placed (answering its
        commission at that price) or as rejected with the reasons (answering None)."""
        commission = commission_for(order.quantity, price, self.trading.costs)
        check = self._pre_trade(book, order, price, commission, clock, clock)
        order.risk = {"pre_trade": check.as_dict(), "at_fill": None}
        if not check.approved:
            self._reject(order, check)
            return None
        self.ledger.insert_order(order)
        return commission

    def _find(self, order_id: str | None, client_order_id: str | None) -> OrderRecord:
        order = self.ledger.find_order(order_id=order_id, client_order_id=client_order_id)
        if order is None:
            key = f"order_id {order_id!r}" if order_id else f"client_order_id {client_order_id!r}"
            raise ServiceError(
                ErrorCode.NOT_FOUND,
                f"no order with {key}; order.list shows the known orders",
                {"order_id": order_id, "client_order_id": client_order_id},
            )
        return order

    def order_status(self, order_id: str | None, client_order_id: str | None) -> dict[str, Any]:
        with self.ledger.snapshot():
            return self._present(self._find(order_id, client_order_id))

    def cancel_order(self, order_id: str | None, client_order_id: str | None) -> dict[str, Any]:
        with self.ledger.transaction():
            order = self._find(order_id, client_order_id)
            if order.status == "cancelled":
                # A retried cancel finds its own work done: that is success, not an error.
                return {**self._present(order), "already_cancelled": True}
            if order.status != "open":
                raise InvalidParams(
                    f"order {order.order_id} is {order.status}; only open orders can be cancelled",
                    {"order_id": order.order_id, "status": order.status},
                )
            self.ledger.update_order(
                order.order_id,
                status="cancelled",
                reasons=[*order.reasons, "cancelled by order.cancel"],
            )
            order = self._find(order.order_id, None)
            return {**self._present(order), "already_cancelled": False}

    def list_orders(
        self, status: str | None, symbol: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        canonical = self.md.resolve(symbol).symbol if symbol else None
        with self.ledger.snapshot():
            records, total = self.ledger.list_orders(status, canonical, limit, offset)
            orders = self._present_records(records)
        return {
            "orders": orders,
            "count": len(orders),
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    # ------------------------------------------------------------------ portfolio

    def portfolio(self, as_of: str | None = None) -> dict[str, Any]:
        data_end = self.data_end()
        with self.ledger.snapshot():
            account = self.ledger.account()
            positions = self.ledger.positions()
            open_orders = self.ledger.count_orders("open")
        initial = account.initial_cash if account else self.trading.paper.initial_cash
        cash = account.cash if account else initial
        clock = account.clock if account else data_end
        day = clock
        if as_of is not None:
            day = parse_day(as_of, "as_of")
            if day < clock:
                raise InvalidParams(
                    f"as_of {day} is before the paper clock {clock}; the ledger keeps the "
                    "current positions only, so it values them at the clock or later",
                    {"field": "as_of", "clock": clock},
                )
            if day > data_end:
                raise InvalidParams(
                    f"as_of {day} is after the last bar of the market data ({data_end})",
                    {"field": "as_of", "data_end": data_end},
                )
        book = PriceBook(self.md)
        rows: dict[str, dict[str, Any]] = {}
        positions_value = cost_total = unrealised = 0.0
        for sym, pos in positions.items():
            price, bar_day = book.close(sym, day)
            value = pos.quantity * price
            cost = pos.quantity * pos.avg_cost
            positions_value += value
            cost_total += cost
            unrealised += value - cost
            rows[sym] = {
                "quantity": _qty(pos.quantity),
                "avg_cost": _px(pos.avg_cost),
                "price": _px(price),
                "price_bar": bar_day,
                "market_value": _money(value),
                "cost_basis": _money(cost),
                "unrealised_pnl": _money(value - cost),
                "realised_pnl": _money(pos.realised_pnl),
            }
        equity = cash + positions_value
        for row in rows.values():
            row["weight"] = round(row["market_value"] / equity, 6) if equity > 0 else None
        realised = account.realised_pnl if account else 0.0
        commissions = account.commissions if account else 0.0
        peak = max(account.peak_equity, equity) if account else equity
        return {
            "cash": _money(cash),
            "positions": rows,
            "positions_value": _money(positions_value),
            "equity": _money(equity),
            "initial_cash": _money(initial),
            "realised_pnl": _money(realised),
            "unrealised_pnl": _money(unrealised),
            "commissions": _money(commissions),
            "total_pnl": _money(equity - initial),
            "peak_equity": _money(peak),
            "drawdown": round(max(0.0, (peak - equity) / peak), 6) if peak > 0 else None,
            "cost_basis": _money(cost_total),
            "open_orders": open_orders,
            "clock": clock,
            "valued_at": day,
            "data_end": data_end,
        }

    def reset(self, initial_cash: float | None, as_of: str | None) -> dict[str, Any]:
        data_end = self.data_end()
        clock = parse_day(as_of, "as_of") if as_of else data_end
        if clock > data_end:
            raise InvalidParams(
                f"as_of {clock} is after the last bar of the market data ({data_end})",
                {"field": "as_of", "data_end": data_end},
            )
        cash = self.trading.paper.initial_cash if initial_cash is None else initial_cash
        with self.ledger.transaction():
            self.ledger.reset(cash, clock)
        return self.portfolio()

    # ------------------------------------------------------------------ replies

    def _present(self, order: OrderRecord) -> dict[str, Any]:
        return self._present_records([order])[0]

    def _present_many(self, order_ids: list[str]) -> list[dict[str, Any]]:
        records = [self.ledger.find_order(order_id=oid) for oid in order_ids]
        return self._present_records([r for r in records if r is not None])

    def _present_records(self, records: list[OrderRecord]) -> list[dict[str, Any]]:
        fills = self.ledger.fills_for([r.order_id for r in records])
        return [_order_reply(r, fills[r.order_id]) for r in records]


def _order_reply(order: OrderRecord, fills: list[dict[str, Any]]) -> dict[str, Any]:
    risk = order.risk or {}
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "request_id": order.request_id,
        "symbol": order.symbol,
        "action": order.action,
        "order_type": order.order_type,
        "quantity": _qty(order.quantity),
        "filled_quantity": _qty(order.filled_quantity),
        "price": _px(order.price),
        "stop_price": _px(order.stop_price),
        "time_in_force": order.time_in_force,
        "status": order.status,
        "stop_triggered": order.stop_triggered,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "as_of": order.as_of,
        "fills": [
            {
                "fill_id": f["fill_id"],
                "quantity": _qty(f["quantity"]),
                "price": _px(f["price"]),
                "reference_price": _px(f["reference_price"]),
                "commission": _money(f["commission"]),
                "slippage": _money(f["slippage"]),
                "realised_pnl": _money(f["realised_pnl"]),
                "as_of": f["as_of"],
                "price_bar": f["price_bar"],
            }
            for f in fills
        ],
        "risk": risk.get("pre_trade"),
        "risk_at_fill": risk.get("at_fill"),
        "reasons": order.reasons,
    }

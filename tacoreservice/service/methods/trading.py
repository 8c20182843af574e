"""Order and account methods: ``execute.order``, ``order.*``, ``portfolio.*``, ``clock.*``.

Each call goes to the broker adapter named by ``trading.broker_adapter`` (``paper`` by
default; see :mod:`tacoreservice.trading`). Answers that are business outcomes are successes:
an order the pre-trade check refuses comes back with ``status: "rejected"`` and its
``reasons`` (it is stored like any order, so a retry returns the same rejection). Protocol
errors are for requests that cannot become an order at all: INVALID_PARAMS (bad fields, an
unknown symbol, an ``as_of`` before the clock, a client_order_id reused for another order,
cancelling an order that is no longer open), NOT_FOUND (no such order), DATA_UNAVAILABLE (no
recent price for a market order), UNAUTHORIZED (``portfolio.reset`` while it is switched off).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.params import (
    ClientOrderId,
    DateText,
    Identifier,
    InitialCash,
    Offset,
    ParamsModel,
    Symbol,
)
from tacoreservice.service.registry import MethodContext, method
from tacoreservice.trading.adapters import BrokerAdapter, SimulatedBroker, load_broker_adapter
from tacoreservice.trading.orders import OrderRequest

__all__ = [
    "ClockAdvanceParams",
    "OrderListParams",
    "OrderRef",
    "PortfolioParams",
    "ResetParams",
]


class OrderRef(ParamsModel):
    order_id: Identifier | None = None
    client_order_id: ClientOrderId | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> OrderRef:
        if (self.order_id is None) == (self.client_order_id is None):
            got = "both" if self.order_id is not None else "neither"
            raise ValueError(f"give exactly one of 'order_id' or 'client_order_id'; got {got}")
        return self


class OrderListParams(ParamsModel):
    status: Literal["open", "filled", "cancelled", "rejected", "expired"] | None = None
    symbol: Symbol | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: Offset = 0


class PortfolioParams(ParamsModel):
    as_of: DateText | None = None


class ResetParams(ParamsModel):
    initial_cash: InitialCash | None = None
    as_of: DateText | None = None


class ClockParams(ParamsModel):
    pass


class ClockAdvanceParams(ParamsModel):
    to: DateText | None = None
    bars: int | None = Field(None, ge=1, le=10_000)
    # Whose trading days `bars` counts: SPY (US), CSI300 (CN) or BTCUSDT (every day).
    calendar: Symbol = "SPY"

    @model_validator(mode="after")
    def _exactly_one(self) -> ClockAdvanceParams:
        if (self.to is None) == (self.bars is None):
            got = "both" if self.to is not None else "neither"
            raise ValueError(
                f"give exactly one of 'to' (a date such as 2025-06-02) or 'bars' (a number of "
                f"daily bars); got {got}"
            )
        return self


def _adapter(ctx: MethodContext) -> BrokerAdapter:
    return load_broker_adapter(ctx.settings.trading.broker_adapter, ctx.settings, ctx.market_data)


def _simulated(ctx: MethodContext, what: str) -> SimulatedBroker:
    adapter = _adapter(ctx)
    if not isinstance(adapter, SimulatedBroker):
        raise ServiceError(
            ErrorCode.INVALID_REQUEST,
            f"{what} needs the paper broker; trading.broker_adapter is {adapter.name!r}",
        )
    return adapter


@method("execute.order", OrderRequest)
def execute_order(params: OrderRequest, ctx: MethodContext) -> dict[str, Any]:
    """Place an order; idempotent by request_id and client_order_id."""
    return _adapter(ctx).place_order(params, ctx.request_id or None)


@method("order.status", OrderRef)
def order_status(params: OrderRef, ctx: MethodContext) -> dict[str, Any]:
    """One order with its fills, by order_id or client_order_id."""
    return _adapter(ctx).order_status(params.order_id, params.client_order_id)


@method("order.cancel", OrderRef)
def order_cancel(params: OrderRef, ctx: MethodContext) -> dict[str, Any]:
    """Cancel an open order (cancelling a cancelled one again is a success)."""
    return _adapter(ctx).cancel_order(params.order_id, params.client_order_id)


@method("order.list", OrderListParams)
def order_list(params: OrderListParams, ctx: MethodContext) -> dict[str, Any]:
    """Orders, newest first, filtered by status and symbol."""
    return _adapter(ctx).list_orders(params.status, params.symbol, params.limit, params.offset)


@method("portfolio.get", PortfolioParams)
def portfolio_get(params: PortfolioParams, ctx: MethodContext) -> dict[str, Any]:
    """Cash, positions marked at the clock's close, equity and P&L."""
    return _adapter(ctx).portfolio(params.as_of)


@method("portfolio.history", ClockParams)
def portfolio_history(params: ClockParams, ctx: MethodContext) -> dict[str, Any]:
    """The paper account's equity curve from its first fill to the clock, replayed from the
    ledger and valued at each day's closes, with the drawdown from the running peak."""
    from tacoreservice.trading.equity_curve import equity_history
    from tacoreservice.trading.paper_broker import PaperBroker, PriceBook

    broker = _simulated(ctx, "portfolio.history")
    assert isinstance(broker, PaperBroker)
    clock = broker.clock()
    with broker.ledger.snapshot():
        account = broker.ledger.account()
    initial = account.initial_cash if account else ctx.settings.trading.paper.initial_cash
    return equity_history(broker.ledger, PriceBook(broker.md), initial, clock["clock"])


@method("portfolio.reset", ResetParams)
def portfolio_reset(params: ResetParams, ctx: MethodContext) -> dict[str, Any]:
    """Wipe the paper account (only when trading.paper.allow_reset is on)."""
    if not ctx.settings.trading.paper.allow_reset:
        raise ServiceError(
            ErrorCode.UNAUTHORIZED,
            "portfolio.reset is switched off: it wipes every order, fill and position of the "
            "paper account. Turn on trading.paper.allow_reset (config/trading_config.yaml) or "
            "set TACORE_ALLOW_PORTFOLIO_RESET=1 for the service",
        )
    return _simulated(ctx, "portfolio.reset").reset(params.initial_cash, params.as_of)


@method("clock.get", ClockParams)
def clock_get(params: ClockParams, ctx: MethodContext) -> dict[str, Any]:
    """The paper market's date and the last date of the market data."""
    return _simulated(ctx, "clock.get").clock()


@method("clock.advance", ClockAdvanceParams)
def clock_advance(params: ClockAdvanceParams, ctx: MethodContext) -> dict[str, Any]:
    """Move the paper clock forward, filling or expiring resting orders bar by bar."""
    return _simulated(ctx, "clock.advance").advance_clock(params.to, params.bars, params.calendar)

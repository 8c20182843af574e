"""Pre-trade checks: may this trade go ahead under the limits of trading_config.yaml?

Shared by ``evaluate.risk`` (a caller's portfolio) and ``execute.order`` (the paper ledger): both
build a :class:`PortfolioState`, call :func:`check_trade`, and answer with one row per check.
The check names are part of the API and never change.

Valuation after the trade: holdings are marked at ``state.prices``; the traded symbol is marked
at the trade's expected fill price (the freshest price the caller has for it), and cash moves by
``quantity * price``. Costs (commission, slippage) are the caller's business: fold them into
``price`` when ``min_cash`` must account for them.

A sell that only reduces a long position reduces risk, so the position, weight, leverage,
daily-loss and drawdown checks pass for it ("reduces exposure"): a risk limit must never stop
someone from getting out. For the same reason a blocked (or no longer allowed) symbol can still
be sold out of: ``symbol_allowed`` stops new exposure only. ``sufficient_holdings`` applies to
every sell.

Nothing is made up: a figure the state cannot give (cash unknown, no start-of-day equity, no
peak) leaves ``value_after`` as ``None`` and the row passes with a reason that says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from tacoreservice.config import RiskLimits
from tacoreservice.market_data.symbols import normalize_symbol
from tacoreservice.protocol.errors import InvalidParams

__all__ = [
    "CHECK_NAMES",
    "CheckResult",
    "PortfolioState",
    "PreTradeResult",
    "ProposedTrade",
    "check_trade",
]

CHECK_NAMES: tuple[str, ...] = (
    "symbol_allowed",
    "sufficient_holdings",
    "max_position_quantity",
    "max_position_value",
    "max_weight_per_symbol",
    "max_leverage",
    "min_cash",
    "max_daily_loss",
    "max_drawdown",
)

LIMIT_OFF = "limit off"
REDUCES_EXPOSURE = "reduces exposure"
CASH_NOT_GIVEN = "cash not given: cannot be evaluated"
# Float dust from fills (0.1 + 0.2) must not fail a sell of "everything held".
_QTY_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ProposedTrade:
    symbol: str  # normalised symbol (tacoreservice.market_data.symbols.normalize_symbol)
    action: Literal["buy", "sell"]
    quantity: float  # > 0
    price: float  # expected fill price per unit (> 0)

    def __post_init__(self) -> None:
        if self.action not in ("buy", "sell"):
            raise ValueError(f"action must be 'buy' or 'sell', got {self.action!r}")
        if not (math.isfinite(self.quantity) and self.quantity > 0):
            raise ValueError(f"quantity must be a finite number > 0, got {self.quantity!r}")
        if not (math.isfinite(self.price) and self.price > 0):
            raise ValueError(f"price must be a finite number > 0, got {self.price!r}")


@dataclass
class PortfolioState:
    positions: dict[str, float]  # symbol -> quantity held (>0 long); normalised symbols
    prices: dict[str, float]  # mark price per symbol at as_of; must include the trade's
    cash: float | None = None  # None = unknown (a caller's portfolio without cash)
    start_of_day_equity: float | None = None  # for max_daily_loss; None = check not evaluable
    peak_equity: float | None = None  # for max_drawdown; None = check not evaluable


@dataclass(frozen=True)
class CheckResult:
    name: str
    limit: Any
    value_after: Any
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": self.limit,
            "value_after": self.value_after,
            "passed": self.passed,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PreTradeResult:
    approved: bool
    checks: list[CheckResult]

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"approved": self.approved, "checks": [c.as_dict() for c in self.checks]}


def _money(x: float) -> float:
    return round(x, 2)


def _ratio(x: float) -> float:
    return round(x, 6)


def _qty(x: float) -> float:
    return round(x, 8)


def _canonical(symbols: list[str]) -> set[str]:
    # Settings loaded from config are normalised already (RiskLimits checks them at start);
    # limits built in code without validation (model_copy) are normalised here, and an entry
    # that is no symbol at all still matches itself rather than crash trading.
    out = set()
    for raw in symbols:
        try:
            out.add(normalize_symbol(raw))
        except InvalidParams:
            out.add(str(raw).strip().upper())
    return out


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


@dataclass(frozen=True)
class _After:
    """The portfolio before and after the trade, as the checks need it."""

    qty_before: float
    qty_after: float
    position_value: float  # |qty_after| * trade price
    positions_value: float  # net market value of all positions after the trade
    gross_exposure: float  # sum of |qty * mark| after the trade
    cash_after: float | None
    equity_after: float
    # Equity to compare with start-of-day and peak equity. Without cash, a buy would look like
    # new equity (nothing pays for it), so the unfunded purchase is taken out again.
    equity_for_loss: float
    reduces_exposure: bool


def _after(state: PortfolioState, trade: ProposedTrade) -> _After:
    marks: dict[str, float] = {}
    for sym, qty in state.positions.items():
        _finite(f"quantity of {sym}", qty)
        if sym == trade.symbol:
            continue
        if qty == 0 and sym not in state.prices:
            marks[sym] = 0.0  # a closed position needs no price
            continue
        if sym not in state.prices:
            raise ValueError(f"no mark price for held symbol {sym}")
        marks[sym] = _finite(f"price of {sym}", state.prices[sym])
    marks[trade.symbol] = trade.price

    qty_before = float(state.positions.get(trade.symbol, 0.0))
    signed = trade.quantity if trade.action == "buy" else -trade.quantity
    qty_after = qty_before + signed
    if abs(qty_after) < _QTY_TOLERANCE:
        qty_after = 0.0
    holdings = {sym: float(q) for sym, q in state.positions.items()}
    holdings[trade.symbol] = qty_after

    positions_value = sum(q * marks[s] for s, q in holdings.items())
    gross = sum(abs(q * marks[s]) for s, q in holdings.items())
    cash_after = None
    if state.cash is not None:
        cash_after = _finite("cash", state.cash) - signed * trade.price
    # Cash unknown: equity is the market value of the positions (the trade is assumed funded
    # from outside), so weights stay meaningful while leverage and min_cash are not evaluable.
    equity_after = positions_value + (cash_after if cash_after is not None else 0.0)
    equity_for_loss = (
        equity_after if cash_after is not None else equity_after - signed * trade.price
    )
    reduces = (
        qty_before != 0.0
        and abs(qty_after) <= abs(qty_before)
        and (qty_after == 0.0 or (qty_after > 0) == (qty_before > 0))
    )
    return _After(
        qty_before=qty_before,
        qty_after=qty_after,
        position_value=abs(qty_after) * trade.price,
        positions_value=positions_value,
        gross_exposure=gross,
        cash_after=cash_after,
        equity_after=equity_after,
        equity_for_loss=equity_for_loss,
        reduces_exposure=reduces,
    )


def _symbol_allowed(trade: ProposedTrade, limits: RiskLimits, a: _After) -> CheckResult:
    allowed = _canonical(limits.allowed_symbols)
    blocked = _canonical(limits.blocked_symbols)
    limit = {"allowed_symbols": sorted(allowed), "blocked_symbols": sorted(blocked)}
    listed = trade.symbol in blocked or (allowed and trade.symbol not in allowed)
    if listed and a.reduces_exposure:
        return CheckResult("symbol_allowed", limit, True, True, REDUCES_EXPOSURE)
    if trade.symbol in blocked:
        return CheckResult(
            "symbol_allowed", limit, False, False, f"{trade.symbol} is in blocked_symbols"
        )
    if allowed and trade.symbol not in allowed:
        return CheckResult(
            "symbol_allowed", limit, False, False, f"{trade.symbol} is not in allowed_symbols"
        )
    if not allowed and not blocked:
        return CheckResult("symbol_allowed", limit, True, True, LIMIT_OFF)
    return CheckResult("symbol_allowed", limit, True, True, f"{trade.symbol} is allowed")


def _sufficient_holdings(trade: ProposedTrade, a: _After) -> CheckResult:
    held = _qty(a.qty_before)
    if trade.action == "buy":
        return CheckResult("sufficient_holdings", held, True, True, "a buy needs no holdings")
    ok = trade.quantity <= a.qty_before + _QTY_TOLERANCE
    reason = (
        f"sells {_qty(trade.quantity)} of {held} held"
        if ok
        else f"sells {_qty(trade.quantity)} but only {held} held; shorting is not supported"
    )
    return CheckResult("sufficient_holdings", held, ok, ok, reason)


def _upper_limit(
    name: str, limit: float | None, value: float | None, a: _After, what: str
) -> CheckResult:
    """A figure that must not exceed ``limit`` after the trade."""
    if limit is None:
        return CheckResult(name, None, value, True, LIMIT_OFF)
    if a.reduces_exposure:
        return CheckResult(name, limit, value, True, REDUCES_EXPOSURE)
    if value is None:
        return CheckResult(name, limit, None, False, f"{what} cannot be computed")
    ok = value <= limit
    verb = "within" if ok else "exceeds"
    return CheckResult(name, limit, value, ok, f"{what} {value} {verb} the limit {limit}")


def _max_weight(limits: RiskLimits, a: _After) -> CheckResult:
    weight = _ratio(a.position_value / a.equity_after) if a.equity_after > 0 else None
    result = _upper_limit(
        "max_weight_per_symbol", limits.max_weight_per_symbol, weight, a, "weight after the trade"
    )
    if weight is None and not result.passed:
        return CheckResult(
            result.name, result.limit, None, False, "equity after the trade is not positive"
        )
    return result


def _max_leverage(limits: RiskLimits, a: _After) -> CheckResult:
    limit = limits.max_leverage
    if a.cash_after is None:
        return CheckResult("max_leverage", limit, None, True, CASH_NOT_GIVEN)
    leverage = _ratio(a.gross_exposure / a.equity_after) if a.equity_after > 0 else None
    result = _upper_limit("max_leverage", limit, leverage, a, "gross exposure / equity")
    if leverage is None and not result.passed:
        return CheckResult(
            "max_leverage", limit, None, False, "equity after the trade is not positive"
        )
    return result


def _min_cash(trade: ProposedTrade, limits: RiskLimits, a: _After) -> CheckResult:
    limit = limits.min_cash
    if a.cash_after is None:
        return CheckResult("min_cash", limit, None, True, CASH_NOT_GIVEN)
    cash_after = _money(a.cash_after)
    if limit is None:
        return CheckResult("min_cash", None, cash_after, True, LIMIT_OFF)
    if trade.action == "sell":
        return CheckResult("min_cash", limit, cash_after, True, "a sell adds cash")
    ok = a.cash_after >= limit - 1e-9
    verb = "at least" if ok else "below"
    return CheckResult("min_cash", limit, cash_after, ok, f"cash after {cash_after} {verb} {limit}")


def _loss_from(
    name: str,
    limit: float | None,
    reference: float | None,
    reference_name: str,
    a: _After,
    what: str,
) -> CheckResult:
    """Equity below a reference (start of day, peak) by more than ``limit``: no new buys."""
    if reference is None or not math.isfinite(reference) or reference <= 0:
        value = None
        why = f"{reference_name} not given: cannot be evaluated"
    else:
        value = _ratio(max(0.0, (reference - a.equity_for_loss) / reference))
        why = ""
    if limit is None:
        return CheckResult(name, None, value, True, LIMIT_OFF)
    if a.reduces_exposure:
        return CheckResult(name, limit, value, True, REDUCES_EXPOSURE)
    if value is None:
        return CheckResult(name, limit, None, True, why)
    ok = value <= limit
    verb = "within" if ok else "beyond"
    reason = f"{what} {value} {verb} the limit {limit}" + ("" if ok else ": no new buys")
    return CheckResult(name, limit, value, ok, reason)


def check_trade(state: PortfolioState, trade: ProposedTrade, limits: RiskLimits) -> PreTradeResult:
    """Run the nine checks of :data:`CHECK_NAMES` (in that order); approved when all pass.

    Raises ``ValueError`` when the state is unusable (a held symbol without a mark price, a
    NaN quantity): that is a caller's bug, not a rejected trade.
    """
    a = _after(state, trade)
    checks = [
        _symbol_allowed(trade, limits, a),
        _sufficient_holdings(trade, a),
        _upper_limit(
            "max_position_quantity",
            limits.max_position_quantity,
            _qty(abs(a.qty_after)),
            a,
            "quantity after the trade",
        ),
        _upper_limit(
            "max_position_value",
            limits.max_position_value,
            _money(a.position_value),
            a,
            "position value after the trade",
        ),
        _max_weight(limits, a),
        _max_leverage(limits, a),
        _min_cash(trade, limits, a),
        _loss_from(
            "max_daily_loss",
            limits.max_daily_loss,
            state.start_of_day_equity,
            "start_of_day_equity",
            a,
            "loss since the start of the day",
        ),
        _loss_from(
            "max_drawdown",
            limits.max_drawdown,
            state.peak_equity,
            "peak_equity",
            a,
            "drawdown from the equity peak",
        ),
    ]
    return PreTradeResult(approved=all(c.passed for c in checks), checks=checks)

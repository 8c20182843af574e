"""``evaluate.risk``: a caller's portfolio measured on the bundled history, plus pre-trade checks.

The portfolio comes as ``{SYMBOL: qty}``, ``{SYMBOL: {quantity, cost_basis}}`` or a list of
``{symbol, quantity, cost_basis?}`` (``positions``/``holdings`` for ``portfolio``;
``qty``/``shares`` for ``quantity``; ``avg_cost`` for ``cost_basis``, a cost *per unit*).
Prices are each symbol's last daily close at ``as_of``; the statistics (VaR/CVaR, volatility,
drawdown, beta, correlation, risk score) are those of :mod:`tacoreservice.risk.statistics`,
whose docstring states every convention. With ``proposed_trade`` the nine checks of
:mod:`tacoreservice.risk.pretrade` run against ``trading.limits``.

Nothing that depends on the caller's portfolio is cached; the bars are (by the provider).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, ValidationInfo, field_validator

from tacoreservice.market_data.symbols import SymbolInfo
from tacoreservice.protocol.errors import InvalidParams
from tacoreservice.risk.pretrade import PortfolioState, ProposedTrade, check_trade
from tacoreservice.risk.statistics import (
    RISK_SCORE_FORMULA,
    DailyCloses,
    concentration,
    portfolio_statistics,
)
from tacoreservice.service.params import (
    MAX_CASH,
    MAX_PRICE,
    MAX_QUANTITY,
    MIN_PRICE,
    MIN_QUANTITY,
    DateText,
    ParamsModel,
    Symbol,
)
from tacoreservice.service.registry import MethodContext, method

__all__ = ["EvaluateRiskParams", "MAX_SYMBOLS", "evaluate_risk"]

MAX_SYMBOLS = 200
_MARKET_ORDER = ("us", "cn", "crypto")


def _finite_at_least(
    value: Any,
    floor: float,
    what: str,
    why: str = "",
    ceiling: float = MAX_QUANTITY,
    zero_ok: bool = False,
) -> float:
    """``value`` as a float in [floor, ceiling] (or 0 when ``zero_ok``); ValueError naming it."""
    number = float(value)
    if number == 0.0 and zero_ok:
        return 0.0  # also turns -0.0 into 0.0, which replies would otherwise echo
    if not math.isfinite(number) or not floor <= number <= ceiling:
        allowed = f"0 or from {floor:g} to {ceiling:g}" if zero_ok else f"{floor:g} to {ceiling:g}"
        raise ValueError(f"{what} must be a finite number {allowed}{why}, got {value!r}")
    return number


def _no_bool(v: Any) -> Any:
    # JSON true would otherwise count as a quantity of 1.
    if isinstance(v, bool):
        raise ValueError(f"must be a number, got {str(v).lower()}")
    return v


class PositionIn(ParamsModel):
    # Its validators check finiteness themselves, so the message can name the symbol (the
    # {SYMBOL: qty} form has no other name for the position than its index).
    model_config = ConfigDict(allow_inf_nan=True)

    symbol: Symbol = Field(..., validation_alias=AliasChoices("symbol", "ticker"))
    quantity: float = Field(..., validation_alias=AliasChoices("quantity", "qty", "shares"))
    cost_basis: float | None = Field(
        None, validation_alias=AliasChoices("cost_basis", "avg_cost", "average_cost")
    )

    @field_validator("quantity", "cost_basis", mode="before")
    @classmethod
    def _numbers(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, bool):
            sym = info.data.get("symbol", "?")
            raise ValueError(f"{info.field_name} of {sym} must be a number, got {str(v).lower()}")
        return v

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, v: float, info: ValidationInfo) -> float:
        sym = info.data.get("symbol", "?")
        return _finite_at_least(
            v, MIN_QUANTITY, f"quantity of {sym}", " (long positions only)", zero_ok=True
        )

    @field_validator("cost_basis")
    @classmethod
    def _cost(cls, v: float | None, info: ValidationInfo) -> float | None:
        sym = info.data.get("symbol", "?")
        if v is None:
            return None
        return _finite_at_least(
            v, MIN_PRICE, f"cost_basis of {sym} per unit", ceiling=MAX_PRICE, zero_ok=True
        )


class TradeIn(ParamsModel):
    symbol: Symbol = Field(..., validation_alias=AliasChoices("symbol", "ticker"))
    action: Literal["buy", "sell"] = Field(..., validation_alias=AliasChoices("action", "side"))
    quantity: float = Field(..., validation_alias=AliasChoices("quantity", "qty", "shares"))
    price: float | None = None

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    _numbers = field_validator("quantity", "price", mode="before")(_no_bool)

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, v: float) -> float:
        return _finite_at_least(v, MIN_QUANTITY, "proposed_trade.quantity")

    @field_validator("price")
    @classmethod
    def _price(cls, v: float | None) -> float | None:
        if v is None:
            return None
        return _finite_at_least(v, MIN_PRICE, "proposed_trade.price", ceiling=MAX_PRICE)


class EvaluateRiskParams(ParamsModel):
    portfolio: list[PositionIn] = Field(
        default_factory=list,
        validation_alias=AliasChoices("portfolio", "positions", "holdings"),
    )
    cash: float | None = None
    proposed_trade: TradeIn | None = Field(
        None, validation_alias=AliasChoices("proposed_trade", "trade", "order")
    )
    as_of: DateText | None = Field(None, validation_alias=AliasChoices("as_of", "date"))
    confidence: list[float] | None = Field(
        None, validation_alias=AliasChoices("confidence", "confidence_levels")
    )
    horizon_days: int = Field(
        1, ge=1, le=252, validation_alias=AliasChoices("horizon_days", "horizon")
    )
    lookback_days: int | None = Field(None, ge=20, le=10_000)
    # The caller's own account figures for the daily-loss and drawdown checks; without them
    # both are estimated from the holdings' history (see _pre_trade).
    start_of_day_equity: float | None = None
    peak_equity: float | None = None

    _account_numbers = field_validator("start_of_day_equity", "peak_equity", mode="before")(
        _no_bool
    )

    @field_validator("start_of_day_equity", "peak_equity")
    @classmethod
    def _account_figure(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is None:
            return None
        return _finite_at_least(v, MIN_PRICE, str(info.field_name), ceiling=MAX_CASH)

    @field_validator("portfolio", mode="before")
    @classmethod
    def _portfolio(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, dict):
            # {SYMBOL: qty} or the richer {SYMBOL: {quantity, cost_basis}}
            v = [
                {**row, "symbol": sym}
                if isinstance(row, dict)
                else {"symbol": sym, "quantity": row}
                for sym, row in v.items()
            ]
        if not isinstance(v, list):
            raise ValueError(
                "must be {SYMBOL: quantity} or a list of {symbol, quantity, cost_basis?}"
            )
        if len(v) > MAX_SYMBOLS:
            raise ValueError(f"at most {MAX_SYMBOLS} symbols, got {len(v)}")
        return v

    @field_validator("cash")
    @classmethod
    def _cash(cls, v: float | None) -> float | None:
        if v is None:
            return None
        return _finite_at_least(v, MIN_PRICE, "cash", ceiling=MAX_CASH, zero_ok=True)

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, v: Any) -> Any:
        if v is None:
            return None
        levels = v if isinstance(v, list) else [v]
        if not levels or len(levels) > 5:
            raise ValueError("give 1 to 5 confidence levels, e.g. 0.95 or [0.95, 0.99]")
        out = []
        for level in levels:
            try:
                x = float(_no_bool(level))
            except (TypeError, ValueError):
                raise ValueError(
                    f"each confidence must be a number in (0.5, 1), got {level!r}"
                ) from None
            if not (0.5 < x < 1.0):
                hint = f" (write {x / 100:g} for {x:g} %)" if 50 < x < 100 else ""
                raise ValueError(f"each confidence must be in (0.5, 1), got {level!r}{hint}")
            out.append(x)
        return sorted(set(out))


def _daily(ctx: MethodContext, info: SymbolInfo, as_of: str | None) -> DailyCloses:
    bars = ctx.market_data.bars(info.symbol, "1d", as_of)
    return DailyCloses(info.symbol, bars.time.astype("datetime64[D]"), bars.close)


def _resolve_positions(
    ctx: MethodContext, rows: list[PositionIn]
) -> dict[str, tuple[SymbolInfo, PositionIn]]:
    out: dict[str, tuple[SymbolInfo, PositionIn]] = {}
    for row in rows:
        info = ctx.market_data.resolve(row.symbol)  # unknown: INVALID_PARAMS naming it
        if info.symbol in out:
            raise InvalidParams(
                f"portfolio lists {info.symbol} twice ({out[info.symbol][1].symbol!r} and "
                f"{row.symbol!r}); give each symbol once with its total quantity",
                {"symbol": info.symbol},
            )
        out[info.symbol] = (info, row)
    return out


def _dominant_market(values: dict[str, float], infos: dict[str, SymbolInfo]) -> str:
    by_market = {m: 0.0 for m in _MARKET_ORDER}
    for sym, value in values.items():
        by_market[infos[sym].market] += abs(value)
    return max(_MARKET_ORDER, key=lambda m: by_market[m])


def _position_rows(
    resolved: dict[str, tuple[SymbolInfo, PositionIn]],
    histories: dict[str, DailyCloses],
    equity: float,
) -> dict[str, dict[str, Any]]:
    rows = {}
    for sym, (info, pos) in resolved.items():
        h = histories[sym]
        price = float(h.close[-1])
        value = pos.quantity * price
        row: dict[str, Any] = {
            "quantity": pos.quantity,
            "price": round(price, 6),
            "price_date": str(h.dates[-1]),
            "market": info.market,
            "currency": info.currency,
            "market_value": round(value, 2),
            "weight": round(value / equity, 6) if equity > 0 else None,
        }
        if pos.cost_basis is not None:
            row["cost_basis"] = pos.cost_basis
            row["unrealised_pnl"] = round((price - pos.cost_basis) * pos.quantity, 2)
        rows[sym] = row
    return rows


def _pre_trade(
    ctx: MethodContext,
    params: EvaluateRiskParams,
    trade_in: TradeIn,
    quantities: dict[str, float],
    histories: dict[str, DailyCloses],
    peak_equity: float | None,
) -> dict[str, Any]:
    info = ctx.market_data.resolve(trade_in.symbol)
    trade_hist = histories.get(info.symbol) or _daily(ctx, info, params.as_of)
    last_close = float(trade_hist.close[-1])
    trade = ProposedTrade(
        info.symbol, trade_in.action, trade_in.quantity, trade_in.price or last_close
    )
    prices = {s: float(h.close[-1]) for s, h in histories.items()}
    prices.setdefault(info.symbol, last_close)
    start_of_day = params.start_of_day_equity
    start_source = "given"
    if start_of_day is None and all(histories[s].close.shape[0] >= 2 for s in quantities):
        # Today's holdings at the previous close: the caller's trades today are unknown.
        start_of_day = sum(q * float(histories[s].close[-2]) for s, q in quantities.items())
        start_of_day += params.cash or 0.0
        start_source = "estimated: current holdings at the previous close, plus cash"
    peak_source = "given"
    if params.peak_equity is not None:
        peak_equity = params.peak_equity
    elif peak_equity is not None:
        peak_source = "estimated: the current holdings' highest value over the history"
    state = PortfolioState(
        positions=dict(quantities),
        prices=prices,
        cash=params.cash,
        start_of_day_equity=start_of_day,
        peak_equity=peak_equity,
    )
    result = check_trade(state, trade, ctx.settings.trading.limits)
    trade_row = {
        "symbol": trade.symbol,
        "action": trade.action,
        "quantity": trade.quantity,
        "price": round(trade.price, 6),
        "price_source": "given" if trade_in.price else f"last close {trade_hist.dates[-1]}",
        "notional": round(trade.quantity * trade.price, 2),
    }
    inputs = {
        "start_of_day_equity": None if start_of_day is None else round(start_of_day, 2),
        "start_of_day_equity_source": None if start_of_day is None else start_source,
        "peak_equity": peak_equity,
        "peak_equity_source": None if peak_equity is None else peak_source,
    }
    return {**result.as_dict(), "trade": trade_row, "inputs": inputs}


@method("evaluate.risk", EvaluateRiskParams)
def evaluate_risk(params: EvaluateRiskParams, ctx: MethodContext) -> dict[str, Any]:
    """Portfolio VaR/CVaR, volatility, drawdown, beta, correlation, risk score; pre-trade checks."""
    if not params.portfolio and not (params.cash is not None and params.proposed_trade):
        raise InvalidParams(
            'portfolio is empty: give at least one position, e.g. {"AAPL": 100}, '
            "or cash and a proposed_trade to check a first purchase",
            {"field": "portfolio"},
        )
    risk_settings = ctx.settings.trading.risk
    levels = params.confidence or sorted(set(risk_settings.confidence_levels))
    lookback = params.lookback_days or risk_settings.lookback_days

    resolved = _resolve_positions(ctx, params.portfolio)
    infos = {s: info for s, (info, _) in resolved.items()}
    histories: dict[str, DailyCloses] = {}
    for sym, (info, _) in resolved.items():
        ctx.check_cancelled()
        histories[sym] = _daily(ctx, info, params.as_of)
    quantities = {s: pos.quantity for s, (_, pos) in resolved.items()}
    values = {s: q * float(histories[s].close[-1]) for s, q in quantities.items()}
    market_value = float(sum(values.values()))
    equity = market_value + (params.cash or 0.0)

    notes: list[str] = []
    markets = sorted({infos[s].market for s in resolved}, key=_MARKET_ORDER.index)
    dominant = _dominant_market(values, infos) if resolved else "us"
    benchmarks = {
        m: ctx.market_data.resolve(ctx.market_data.benchmark_for(m)) for m in _MARKET_ORDER
    }
    bench_hist = {m: _daily(ctx, benchmarks[m], params.as_of) for m in {*markets, dominant}}
    if len(markets) > 1:
        currencies = sorted({infos[s].currency for s in resolved})
        notes.append(
            f"the portfolio mixes markets ({', '.join(markets)}) and currencies "
            f"({', '.join(currencies)}); values are added without conversion. The portfolio "
            f"beta is against {benchmarks[dominant].symbol}, the index of the largest market "
            f"by value ({dominant}); symbol_betas name each symbol's own benchmark. The history "
            "keeps only the dates every market traded, so one return may span several calendar "
            "days; volatility is annualised with 252 periods"
        )
    price_dates = {str(h.dates[-1]) for h in histories.values()}
    if len(price_dates) > 1:
        notes.append(
            "prices are each symbol's last close at or before as_of, and those dates differ: "
            + ", ".join(f"{s} {h.dates[-1]}" for s, h in histories.items())
        )

    measured = portfolio_statistics(
        histories,
        quantities,
        params.cash,
        bench_hist[dominant],
        {s: bench_hist[infos[s].market] for s in resolved},
        levels,
        params.horizon_days,
        lookback,
        crypto_only=bool(markets) and markets == ["crypto"],
    )
    stats = measured.get("statistics") or {}
    if measured.get("note"):
        notes.append(measured["note"])
    history = measured.get("history")
    hhi, effective = concentration(list(values.values()))

    result: dict[str, Any] = {
        "as_of": max(price_dates) if price_dates else None,
        "market_value": round(market_value, 2),
        "cash": params.cash,
        "equity": round(equity, 2),
        "positions": _position_rows(resolved, histories, equity),
        "confidence_levels": levels,
        "horizon_days": params.horizon_days,
        "lookback_days": lookback,
        "var": stats.get("var"),
        "cvar": stats.get("cvar"),
        "annual_volatility": stats.get("annual_volatility"),
        "annualization_periods": stats.get("annualization_periods"),
        "max_drawdown": stats.get("max_drawdown"),
        "beta": stats.get("beta"),
        "benchmark": benchmarks[dominant].symbol if resolved else None,
        "symbol_betas": stats.get("symbol_betas"),
        "correlation": stats.get("correlation"),
        "concentration": {
            "hhi": None if hhi is None else round(hhi, 6),
            "effective_positions": None if effective is None else round(effective, 4),
        },
        "risk_score": stats.get("risk_score"),
        "risk_score_components": stats.get("risk_score_components"),
        "risk_score_formula": RISK_SCORE_FORMULA,
        "history": history,
        "notes": notes,
    }
    if params.cash is not None and equity > 0:
        result["cash_weight"] = round(params.cash / equity, 6)
    if params.proposed_trade is not None:
        peak = history.get("peak_equity") if history else None
        if not resolved:
            peak = params.cash  # only cash: equity never moved
        pre_trade = _pre_trade(ctx, params, params.proposed_trade, quantities, histories, peak)
        result["pre_trade"] = pre_trade
        result["approved"] = pre_trade["approved"]
    return result

"""``strategy.signals``: the blueprint's StrategyRequest, served over ZeroMQ and ``POST /analyze``.

The blueprint's HTTP contract is ``StrategyRequest {strategy_id, parameters, market_data?}`` ->
``{signals, confidence, timestamp}``. ``strategy_id`` is one of the rule strategies of
:mod:`tacoreservice.backtest.strategies` (trend, mean_reversion, momentum, breakout);
``parameters`` holds ``symbol`` (or ``symbols``), ``timeframe``, ``as_of`` and the strategy's
own parameters (its ``parameters`` block: ``fast``, ``slow``, ``window``, ...). The answer has
one signal per symbol, each with its confidence, readings and backtest; the top-level
``confidence`` is their mean.

``market_data`` (optional) replaces the bundled history with the caller's own bars: a list of
``{time|timestamp|date, open, high, low, close, volume}`` for the one symbol, or a mapping
``{SYMBOL: [bars]}``. Bars are checked before anything runs, and a bad one is INVALID_PARAMS
naming its index and field: times must parse and strictly increase, prices must be finite and
positive with ``low <= open, close <= high``, volume finite and not negative, between
:data:`MIN_BARS` and :data:`MAX_BARS` bars per symbol (the strategies need their look-back).
Caller bars are never cached and never touch the bundled data.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from tacoreservice.backtest.engine import cost_per_side
from tacoreservice.backtest.strategies import STRATEGY_TYPES, evaluate_strategy
from tacoreservice.market_data.provider import Bars
from tacoreservice.market_data.symbols import normalize_market, normalize_timeframe
from tacoreservice.protocol.errors import InvalidParams
from tacoreservice.service.methods.analysis import _strategy_result
from tacoreservice.service.params import ParamsModel
from tacoreservice.service.registry import MethodContext, method

__all__ = ["MAX_BARS", "MIN_BARS", "StrategyRequestParams", "parse_bars", "strategy_signals"]

MIN_BARS = 30
MAX_BARS = 20_000
_MAX_SYMBOLS = 20
_TIME_KEYS = ("time", "timestamp", "date", "datetime")
_FIELDS = ("open", "high", "low", "close", "volume")


class StrategyRequestParams(ParamsModel):
    strategy_id: str = Field(..., max_length=32)
    parameters: dict[str, Any] = Field(default_factory=dict)
    market_data: list[Any] | dict[str, Any] | None = None

    @field_validator("strategy_id", mode="before")
    @classmethod
    def _strategy(cls, v: Any) -> Any:
        key = str(v).strip().lower().replace("-", "_").replace(" ", "_")
        if key not in STRATEGY_TYPES:
            raise ValueError(f"must be one of {', '.join(STRATEGY_TYPES)}")
        return key


def _bad(where: str, message: str) -> InvalidParams:
    return InvalidParams(f"market_data{where}: {message}", {"field": f"market_data{where}"})


def _time_of(bar: dict[str, Any], where: str) -> np.datetime64:
    raw = next((bar[k] for k in _TIME_KEYS if k in bar), None)
    if raw is None:
        raise _bad(where, f"no time; give one of {', '.join(_TIME_KEYS)}")
    try:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            # Epoch seconds, or milliseconds as exchanges send them.
            seconds = raw / 1000.0 if raw > 1e11 else float(raw)
            when = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        else:
            text = str(raw).strip().replace("Z", "+00:00")
            parsed = datetime.fromisoformat(text)
            when = parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
        if not 1900 <= when.year <= 2100:
            raise ValueError("outside the years 1900 to 2100")
    except (ValueError, OverflowError, OSError) as exc:
        raise _bad(f"{where}.time", f"{str(raw)[:40]!r} is not a time ({exc})") from None
    return np.datetime64(when.replace(microsecond=0).isoformat(), "s")


def parse_bars(raw: Any, symbol: str, market: str, timeframe: str, where: str = "") -> Bars:
    """Validated :class:`Bars` from a caller's list of bar objects."""
    if not isinstance(raw, list):
        raise _bad(where, "must be a list of bars ({time, open, high, low, close, volume})")
    if not MIN_BARS <= len(raw) <= MAX_BARS:
        raise _bad(where, f"{len(raw)} bars; give {MIN_BARS} to {MAX_BARS}")
    times = np.empty(len(raw), dtype="datetime64[s]")
    cols = np.empty((len(raw), len(_FIELDS)), dtype=np.float64)
    for i, bar in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(bar, dict):
            raise _bad(at, "must be an object {time, open, high, low, close, volume}")
        times[i] = _time_of(bar, at)
        for j, name in enumerate(_FIELDS):
            value = bar.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad(f"{at}.{name}", "must be a number")
            if not math.isfinite(value) or (value <= 0 if name != "volume" else value < 0):
                raise _bad(f"{at}.{name}", f"{value!r} is out of range")
            cols[i, j] = float(value)
        o, h, lo, c, _ = cols[i]
        if not (lo <= min(o, c) and max(o, c) <= h):
            raise _bad(at, f"needs low <= open, close <= high (o={o}, h={h}, l={lo}, c={c})")
        if i and times[i] <= times[i - 1]:
            raise _bad(f"{at}.time", "times must strictly increase (oldest bar first)")
    return Bars(
        time=times,
        open=cols[:, 0],
        high=cols[:, 1],
        low=cols[:, 2],
        close=cols[:, 3],
        volume=cols[:, 4],
        symbol=symbol,
        market=market,
        timeframe=timeframe,
    )


def _caller_series(params: StrategyRequestParams, symbols: list[str]) -> dict[str, Any]:
    data = params.market_data
    if isinstance(data, dict):
        if not data or len(data) > _MAX_SYMBOLS:
            raise _bad("", f"give bars for 1 to {_MAX_SYMBOLS} symbols")
        return {str(k).upper(): v for k, v in data.items()}
    return {(symbols[0] if symbols else "CUSTOM"): data}


def _symbols(parameters: dict[str, Any]) -> list[str]:
    raw = parameters.get("symbols", parameters.get("symbol"))
    items = [raw] if isinstance(raw, str) else list(raw or [])
    if not all(isinstance(s, str) and s.strip() for s in items) or len(items) > _MAX_SYMBOLS:
        raise InvalidParams(
            f"parameters.symbol(s) must be 1 to {_MAX_SYMBOLS} ticker strings",
            {"field": "parameters.symbols"},
        )
    return [s.strip() for s in items]


def _signal(symbol: str, header: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "signal": ev["signal"],
        "action": ev["signal"],
        "confidence": ev["confidence"],
        "position": ev["position"],
        "as_of": header.get("as_of"),
        "price": header.get("price"),
        "readings": ev["readings"],
        "backtest": ev.get("backtest"),
        "parameters": ev["parameters"],
    }


@method("strategy.signals", StrategyRequestParams)
def strategy_signals(params: StrategyRequestParams, ctx: MethodContext) -> dict[str, Any]:
    """A rule strategy's signals on the bundled history or on the caller's own bars."""
    parameters = dict(params.parameters)
    symbols = _symbols(parameters)
    timeframe = normalize_timeframe(str(parameters.get("timeframe") or "1d"))
    strategy_params = {
        k: v
        for k, v in parameters.items()
        if k not in ("symbol", "symbols", "timeframe", "as_of", "market")
    }
    signals: list[dict[str, Any]] = []
    if params.market_data is not None:
        market = normalize_market(str(parameters.get("market") or "us"))
        cost = cost_per_side(ctx.settings.trading.costs)
        for symbol, raw in _caller_series(params, symbols).items():
            where = f".{symbol}" if isinstance(params.market_data, dict) else ""
            bars = parse_bars(raw, symbol, market, timeframe, where)
            try:
                ev = evaluate_strategy(
                    bars, params.strategy_id, market, strategy_params, cost_per_side=cost
                )
            except (ValueError, KeyError) as exc:
                raise InvalidParams(f"parameters: {exc}", {"field": "parameters"}) from None
            last = bars.time[-1]
            header = {"as_of": str(last), "price": float(bars.close[-1])}
            signals.append({**_signal(symbol, header, ev), "data_source": "caller"})
    else:
        if not symbols:
            raise InvalidParams(
                "parameters.symbol is required without market_data (or send market_data)",
                {"field": "parameters.symbol"},
            )
        if strategy_params:
            raise InvalidParams(
                "strategy parameters need market_data; the bundled history is evaluated "
                f"with the strategy's defaults (got {', '.join(sorted(strategy_params))})",
                {"field": "parameters"},
            )
        for symbol in symbols:
            header, ev = _strategy_result(
                ctx, symbol, timeframe, params.strategy_id, parameters.get("as_of")
            )
            signals.append({**_signal(str(header["symbol"]), header, ev), "data_source": "bundled"})
    confidence = sum(s["confidence"] for s in signals) / len(signals)
    return {
        "strategy_id": params.strategy_id,
        "signals": signals,
        "confidence": round(confidence, 4),
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }

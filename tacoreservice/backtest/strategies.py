"""Rule-based strategies and a vectorised backtest for ``analyze.strategy`` / ``generate.signal``.

Every strategy is long/flat (no shorting: the bundled instruments are mostly cash equities and
the legacy clients act on BUY/SELL/HOLD). Periods are in bars of the requested timeframe, so
the same rules run on daily stocks and hourly crypto.

=================  ===============================================================================
strategy_type      rule (signals computed at a bar's close from that bar and earlier ones only)
=================  ===============================================================================
trend              long while SMA(50) > SMA(200) (the classic golden-cross regime), flat otherwise
mean_reversion     enter when close < lower Bollinger band (20, 2 sd) and RSI(14) < 30; exit when
                   close >= the middle band (SMA 20), where the reversion is complete
momentum           long while the 63-bar return (about 3 months of trading days) is positive and
                   the MACD(12, 26, 9) line is above its signal line; flat otherwise
breakout           20-bar Donchian breakout: enter when close > the highest high of the previous
                   20 bars, exit when close < the lowest low of the previous 10 bars (Turtle rules)
=================  ===============================================================================

The periods above are the defaults; every strategy also takes its parameters
(``strategy_positions(..., params={"fast_sma": 20})``) within the bounds of its
:class:`StrategySpec`, which also holds the documented default grid that
``optimize.parameters`` searches (parameters left out of a grid stay at their default):

=================  ===============================================================================
trend              fast_sma 20, 50, 100 x slow_sma 100, 150, 200 (fast below slow): 8 sets
mean_reversion     bb_period 10, 20, 30 x bb_std 1.5, 2, 2.5 x rsi_entry 25, 30, 35: 27 sets
momentum           lookback 21, 63, 126 x macd_fast 8, 12 x macd_slow 21, 26: 12 sets
breakout           entry_channel 10, 20, 55 x exit_channel 5, 10, 20: 9 sets
=================  ===============================================================================

The backtest is :mod:`tacoreservice.backtest.engine`: a signal from bar t's close is filled at
bar t+1's open, a position earns open-to-open returns (the last bar is marked to its close),
and each change of position pays :data:`COST_PER_SIDE`, the default ``trading.costs`` schedule
(commission plus slippage, per side). Because indicators are causal (TA-Lib looks only
backwards) and fills happen a bar later, no statistic uses information from after the bar it
is attributed to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import talib

from tacoreservice.backtest.engine import (
    DEFAULT_COST_PER_SIDE,
    entry_exit_positions,
    simulate,
    statistics,
    trade_summary,
)
from tacoreservice.backtest.params import Param, RuleSpec, faster_than
from tacoreservice.market_data.provider import Bars
from tacoreservice.market_data.symbols import periods_per_year

__all__ = [
    "COST_PER_SIDE",
    "STRATEGIES",
    "STRATEGY_TYPES",
    "StrategySpec",
    "backtest",
    "evaluate_strategy",
    "periods_per_year",
    "strategy_positions",
]

# The default trading.costs schedule (commission + slippage, 10 bp a side with the shipped
# config/trading_config.yaml); callers with settings pass cost_per_side(settings.trading.costs).
COST_PER_SIDE = DEFAULT_COST_PER_SIDE

StrategySpec = RuleSpec

STRATEGIES: dict[str, StrategySpec] = {
    "trend": StrategySpec(
        "trend",
        "SMA 50/200 regime: long while the 50-bar average is above the 200-bar average",
        {"fast_sma": 50, "slow_sma": 200},
        bounds={"fast_sma": Param(int, 2, 400), "slow_sma": Param(int, 3, 500)},
        grid={"fast_sma": (20, 50, 100), "slow_sma": (100, 150, 200)},
        constraint=faster_than("fast_sma", "slow_sma"),
        label="Trend SMA",
    ),
    "mean_reversion": StrategySpec(
        "mean_reversion",
        "Bollinger/RSI: buy a close below the lower band with RSI < 30, sell at the middle band",
        {
            "bb_period": 20,
            "bb_std": 2.0,
            "rsi_period": 14,
            "rsi_entry": 30.0,
            "rsi_overbought": 70.0,
        },
        bounds={
            "bb_period": Param(int, 5, 200),
            "bb_std": Param(float, 0.5, 4.0),
            "rsi_period": Param(int, 2, 100),
            "rsi_entry": Param(float, 5.0, 60.0),
        },
        grid={
            "bb_period": (10, 20, 30),
            "bb_std": (1.5, 2.0, 2.5),
            "rsi_entry": (25.0, 30.0, 35.0),
        },
        label="Mean reversion",
    ),
    "momentum": StrategySpec(
        "momentum",
        "3-month return and MACD: long while the 63-bar return > 0 and MACD > its signal line",
        {"lookback": 63, "macd_fast": 12, "macd_slow": 26, "macd_signal": 9},
        bounds={
            "lookback": Param(int, 1, 504),
            "macd_fast": Param(int, 2, 100),
            "macd_slow": Param(int, 3, 200),
            "macd_signal": Param(int, 2, 100),
        },
        grid={"lookback": (21, 63, 126), "macd_fast": (8, 12), "macd_slow": (21, 26)},
        constraint=faster_than("macd_fast", "macd_slow"),
        label="Momentum",
    ),
    "breakout": StrategySpec(
        "breakout",
        "Donchian channel: buy a close above the prior 20-bar high, sell below the prior 10-bar low",
        {"entry_channel": 20, "exit_channel": 10},
        bounds={"entry_channel": Param(int, 2, 500), "exit_channel": Param(int, 2, 500)},
        grid={"entry_channel": (10, 20, 55), "exit_channel": (5, 10, 20)},
        label="Breakout",
    ),
}
STRATEGY_TYPES: tuple[str, ...] = tuple(STRATEGIES)


def _shift(a: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full_like(a, np.nan)
    if k < a.shape[0]:
        out[k:] = a[:-k]
    return out


def _last(a: np.ndarray) -> float | None:
    x = float(a[-1]) if a.shape[0] else math.nan
    return x if math.isfinite(x) else None


def strategy_positions(
    strategy_type: str, bars: Bars, params: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The desired position (1 long, 0 flat) at each bar's close, and the last bar's readings.

    ``params`` overrides the strategy's defaults (checked against its bounds; ``ValueError``
    when out of bounds). The readings carry ``exit_condition``: whether the rule's bearish
    condition holds on the last bar, which turns a flat state into SELL rather than HOLD.
    """
    spec = STRATEGIES.get(strategy_type)
    if spec is None:  # guarded by the params models; kept for direct callers
        raise ValueError(f"unknown strategy_type {strategy_type!r}")
    p = spec.resolve(params)
    close = np.ascontiguousarray(bars.close, dtype=np.float64)
    high = np.ascontiguousarray(bars.high, dtype=np.float64)
    low = np.ascontiguousarray(bars.low, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if strategy_type == "trend":
            fast = talib.SMA(close, p["fast_sma"])
            slow = talib.SMA(close, p["slow_sma"])
            pos = (fast > slow).astype(np.float64)
            readings = {
                f"sma_{p['fast_sma']}": _last(fast),
                f"sma_{p['slow_sma']}": _last(slow),
                "close": _last(close),
                "exit_condition": bool(fast[-1] < slow[-1]),
            }
        elif strategy_type == "mean_reversion":
            upper, middle, lower = talib.BBANDS(close, p["bb_period"], p["bb_std"], p["bb_std"])
            rsi = talib.RSI(close, p["rsi_period"])
            entry = (close < lower) & (rsi < p["rsi_entry"])
            exit_ = close >= middle
            pos = entry_exit_positions(entry, exit_)
            readings = {
                "close": _last(close),
                "bb_upper": _last(upper),
                "bb_middle": _last(middle),
                "bb_lower": _last(lower),
                f"rsi_{p['rsi_period']}": _last(rsi),
                "exit_condition": bool(close[-1] > upper[-1] and rsi[-1] > p["rsi_overbought"]),
            }
        elif strategy_type == "momentum":
            k = p["lookback"]
            ret = close / _shift(close, k) - 1.0
            macd, signal, _hist = talib.MACD(
                close, p["macd_fast"], p["macd_slow"], p["macd_signal"]
            )
            pos = ((ret > 0) & (macd > signal)).astype(np.float64)
            readings = {
                "close": _last(close),
                f"return_{k}": _last(ret),
                "macd": _last(macd),
                "macd_signal": _last(signal),
                "exit_condition": bool(ret[-1] < 0 and macd[-1] < signal[-1]),
            }
        else:  # breakout
            hi = _shift(talib.MAX(high, p["entry_channel"]))
            lo = _shift(talib.MIN(low, p["exit_channel"]))
            entry = close > hi
            exit_ = close < lo
            pos = entry_exit_positions(entry, exit_)
            readings = {
                "close": _last(close),
                f"channel_high_{p['entry_channel']}": _last(hi),
                f"channel_low_{p['exit_channel']}": _last(lo),
                "exit_condition": bool(close[-1] < lo[-1]),
            }
    return pos, readings


def _rounded(x: float | None, digits: int) -> float | None:
    return round(x, digits) if x is not None else None


def backtest(
    bars: Bars, position: np.ndarray, ppy: float, cost_per_side: float = COST_PER_SIDE
) -> dict[str, Any]:
    """Statistics of holding ``position[t]`` (decided at bar t's close) from bar t+1's open,
    over all of ``bars`` (the first bar only makes the first decision)."""
    n = len(bars)
    if n < 3:
        return {"bars": n, "note": "fewer than 3 bars: nothing to backtest"}
    sim = simulate(bars, position, ppy=ppy, cost=cost_per_side, first=1)
    stats = statistics(sim.returns, ppy)
    opens = np.asarray(bars.open, dtype=np.float64)
    close = np.asarray(bars.close, dtype=np.float64)
    return {
        "bars": n,
        "start": str(np.datetime_as_string(bars.time[0], unit="s")),
        "end": str(np.datetime_as_string(bars.time[-1], unit="s")),
        "total_return": _rounded(stats["total_return"], 6),
        "annualized_return": _rounded(stats["annualized_return"], 6),
        "sharpe": _rounded(stats["sharpe_ratio"], 4),
        "max_drawdown": _rounded(stats["max_drawdown"], 6),
        "calmar": _rounded(stats["calmar_ratio"], 4),
        **trade_summary(sim),
        "buy_and_hold_return": round(float(close[-1] / opens[1] - 1.0), 6),
        "cost_per_side": cost_per_side,
        "execution": "next bar open",
    }


def _state_hit_rate(bars: Bars, position: np.ndarray, state: float) -> tuple[int, int]:
    """(right, total) over completed runs of ``state``: long runs are right when the price
    rose over the run, flat runs when it fell. The run still open at the last bar is left out
    because its outcome is not known yet."""
    close = np.asarray(bars.close, dtype=np.float64)
    change = np.flatnonzero(np.diff(position) != 0) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, position.shape[0]]  # exclusive
    right = total = 0
    for s, e in zip(starts[:-1], ends[:-1], strict=True):
        if position[s] != state or e >= close.shape[0]:
            continue
        move = close[e] / close[s] - 1.0
        if not math.isfinite(move):
            continue
        total += 1
        if (move > 0) if state == 1 else (move < 0):
            right += 1
    return right, total


def evaluate_strategy(
    bars: Bars,
    strategy_type: str,
    market: str,
    params: Mapping[str, Any] | None = None,
    cost_per_side: float = COST_PER_SIDE,
) -> dict[str, Any]:
    """The strategy's signal on the last bar, its readings and its backtest on ``bars``."""
    spec = STRATEGIES[strategy_type]
    parameters = spec.resolve(params)
    pos, readings = strategy_positions(strategy_type, bars, params)
    exit_condition = bool(readings.pop("exit_condition"))
    long_now = bool(pos[-1] == 1)
    if long_now:
        signal = "BUY"
    elif exit_condition:
        signal = "SELL"
    else:
        signal = "HOLD"
    stats = backtest(bars, pos, periods_per_year(market, bars.timeframe), cost_per_side)
    # Confidence is the strategy's own track record for the state it is in now, smoothed by
    # Laplace's rule of succession ((right + 1) / (n + 2)) so that a handful of runs cannot
    # claim certainty and no history at all gives an honest 0.5.
    right, total = _state_hit_rate(bars, pos, 1.0 if long_now else 0.0)
    confidence = (right + 1) / (total + 2)
    return {
        "strategy_type": strategy_type,
        "description": spec.description,
        "parameters": parameters,
        "signal": signal,
        "position": "long" if long_now else "flat",
        "exit_condition": exit_condition,
        "readings": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in readings.items()},
        "confidence": round(confidence, 4),
        "confidence_basis": {
            "state": "long" if long_now else "flat",
            "completed_runs": total,
            "runs_right": right,
            "rule": "(right + 1) / (runs + 2); a long run is right if the price rose over it, "
            "a flat run if it fell",
        },
        "backtest": stats,
    }

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

Execution is next-bar: a signal from bar t's close is filled at bar t+1's open, and a position
earns open-to-open returns (the last bar is marked to its close). Each change of position pays
:data:`COST_PER_SIDE`. Because indicators are causal (TA-Lib looks only backwards) and fills
happen a bar later, no statistic uses information from after the bar it is attributed to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import talib

from tacoreservice.market_data.provider import Bars

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

# 5 bp per side: a liquid large cap or a top crypto pair on a retail taker schedule is
# 1-10 bp; the figure keeps turnover-heavy rules (hourly mean reversion) honest without
# pretending to know the caller's broker.
COST_PER_SIDE = 0.0005


@dataclass(frozen=True)
class StrategySpec:
    name: str
    description: str
    parameters: dict[str, Any]


STRATEGIES: dict[str, StrategySpec] = {
    "trend": StrategySpec(
        "trend",
        "SMA 50/200 regime: long while the 50-bar average is above the 200-bar average",
        {"fast_sma": 50, "slow_sma": 200},
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
    ),
    "momentum": StrategySpec(
        "momentum",
        "3-month return and MACD: long while the 63-bar return > 0 and MACD > its signal line",
        {"lookback": 63, "macd_fast": 12, "macd_slow": 26, "macd_signal": 9},
    ),
    "breakout": StrategySpec(
        "breakout",
        "Donchian channel: buy a close above the prior 20-bar high, sell below the prior 10-bar low",
        {"entry_channel": 20, "exit_channel": 10},
    ),
}
STRATEGY_TYPES: tuple[str, ...] = tuple(STRATEGIES)

# Bars per year. Crypto trades around the clock; exchanges trade about 252 days a year.
_PPY_EXCHANGE = {"1d": 252.0, "1w": 52.0, "1h": 252.0 * 6.5, "4h": 252.0 * 6.5 / 4}
_PPY_CRYPTO = {"1d": 365.0, "1w": 52.0, "1h": 365.0 * 24, "4h": 365.0 * 6}


def periods_per_year(market: str, timeframe: str) -> float:
    table = _PPY_CRYPTO if market == "crypto" else _PPY_EXCHANGE
    return table[timeframe]


def _ffill_state(entry: np.ndarray, exit_: np.ndarray) -> np.ndarray:
    """Long from an entry bar until the next exit bar (inclusive of entry, exclusive of exit)."""
    n = entry.shape[0]
    events = np.full(n, np.nan)
    events[exit_] = 0.0
    events[entry] = 1.0  # an entry and an exit on the same bar: the entry is the newer news
    idx = np.where(np.isfinite(events), np.arange(n), -1)
    idx = np.maximum.accumulate(idx)
    state = np.where(idx >= 0, events[np.maximum(idx, 0)], 0.0)
    return state


def _shift(a: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full_like(a, np.nan)
    if k < a.shape[0]:
        out[k:] = a[:-k]
    return out


def _last(a: np.ndarray) -> float | None:
    x = float(a[-1]) if a.shape[0] else math.nan
    return x if math.isfinite(x) else None


def strategy_positions(strategy_type: str, bars: Bars) -> tuple[np.ndarray, dict[str, Any]]:
    """The desired position (1 long, 0 flat) at each bar's close, and the last bar's readings.

    The readings carry ``exit_condition``: whether the rule's bearish condition holds on the
    last bar, which turns a flat state into SELL rather than HOLD.
    """
    close = np.ascontiguousarray(bars.close, dtype=np.float64)
    high = np.ascontiguousarray(bars.high, dtype=np.float64)
    low = np.ascontiguousarray(bars.low, dtype=np.float64)
    p = STRATEGIES[strategy_type].parameters
    with np.errstate(invalid="ignore"):
        if strategy_type == "trend":
            fast = talib.SMA(close, p["fast_sma"])
            slow = talib.SMA(close, p["slow_sma"])
            pos = (fast > slow).astype(np.float64)
            readings = {
                "sma_50": _last(fast),
                "sma_200": _last(slow),
                "close": _last(close),
                "exit_condition": bool(fast[-1] < slow[-1]),
            }
        elif strategy_type == "mean_reversion":
            upper, middle, lower = talib.BBANDS(close, p["bb_period"], p["bb_std"], p["bb_std"])
            rsi = talib.RSI(close, p["rsi_period"])
            entry = (close < lower) & (rsi < p["rsi_entry"])
            exit_ = close >= middle
            pos = _ffill_state(entry, exit_)
            readings = {
                "close": _last(close),
                "bb_upper": _last(upper),
                "bb_middle": _last(middle),
                "bb_lower": _last(lower),
                "rsi_14": _last(rsi),
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
        elif strategy_type == "breakout":
            hi = _shift(talib.MAX(high, p["entry_channel"]))
            lo = _shift(talib.MIN(low, p["exit_channel"]))
            entry = close > hi
            exit_ = close < lo
            pos = _ffill_state(entry, exit_)
            readings = {
                "close": _last(close),
                "channel_high_20": _last(hi),
                "channel_low_10": _last(lo),
                "exit_condition": bool(close[-1] < lo[-1]),
            }
        else:  # guarded by the params model; kept for direct callers
            raise ValueError(f"unknown strategy_type {strategy_type!r}")
    return pos, readings


def backtest(bars: Bars, position: np.ndarray, ppy: float) -> dict[str, Any]:
    """Statistics of holding ``position[t]`` (decided at bar t's close) from bar t+1's open."""
    n = len(bars)
    if n < 3:
        return {"bars": n, "note": "fewer than 3 bars: nothing to backtest"}
    opens = np.asarray(bars.open, dtype=np.float64)
    close = np.asarray(bars.close, dtype=np.float64)
    # Period k runs from open[k] to open[k+1]; the last one is marked to the last close.
    nxt = np.r_[opens[1:], close[-1]]
    period_ret = nxt / opens - 1.0
    held = np.r_[0.0, position[:-1]]  # filled at the next open
    turnover = np.abs(np.diff(np.r_[0.0, held]))
    strat = held[1:] * period_ret[1:] - COST_PER_SIDE * turnover[1:]
    strat = np.where(np.isfinite(strat), strat, 0.0)
    equity = np.cumprod(1.0 + strat)
    peak = np.maximum.accumulate(np.r_[1.0, equity])[1:]
    drawdown = equity / peak - 1.0
    periods = strat.shape[0]
    total = float(equity[-1] - 1.0)
    years = periods / ppy
    annual = float(equity[-1] ** (1.0 / years) - 1.0) if years > 0 and equity[-1] > 0 else None
    sd = float(np.std(strat, ddof=1)) if periods > 1 else 0.0
    sharpe = float(np.mean(strat) / sd * math.sqrt(ppy)) if sd > 0 else None

    h = held[1:]
    entries = np.flatnonzero((h == 1) & (np.r_[0.0, h[:-1]] == 0))
    exits = np.flatnonzero((h == 0) & (np.r_[0.0, h[:-1]] == 1))
    trade_returns = []
    log_eq = np.log1p(strat)
    csum = np.r_[0.0, np.cumsum(log_eq)]
    for i, start in enumerate(entries):
        if i < exits.shape[0] and exits[i] > start:
            end = exits[i]  # the exit period pays the selling cost
            trade_returns.append(math.expm1(csum[end + 1] - csum[start]))
    wins = sum(1 for r in trade_returns if r > 0)
    open_trade = bool(h[-1] == 1)
    return {
        "bars": n,
        "start": str(np.datetime_as_string(bars.time[0], unit="s")),
        "end": str(np.datetime_as_string(bars.time[-1], unit="s")),
        "total_return": round(total, 6),
        "annualized_return": round(annual, 6) if annual is not None else None,
        "sharpe": round(sharpe, 4) if sharpe is not None else None,
        "max_drawdown": round(float(drawdown.min()), 6),
        "trades": int(entries.shape[0]),
        "closed_trades": len(trade_returns),
        "win_rate": round(wins / len(trade_returns), 4) if trade_returns else None,
        "exposure": round(float(h.mean()), 4),
        "open_trade": open_trade,
        "buy_and_hold_return": round(float(close[-1] / opens[1] - 1.0), 6),
        "cost_per_side": COST_PER_SIDE,
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


def evaluate_strategy(bars: Bars, strategy_type: str, market: str) -> dict[str, Any]:
    """The strategy's signal on the last bar, its readings and its backtest on ``bars``."""
    spec = STRATEGIES[strategy_type]
    pos, readings = strategy_positions(strategy_type, bars)
    exit_condition = bool(readings.pop("exit_condition"))
    long_now = bool(pos[-1] == 1)
    if long_now:
        signal = "BUY"
    elif exit_condition:
        signal = "SELL"
    else:
        signal = "HOLD"
    stats = backtest(bars, pos, periods_per_year(market, bars.timeframe))
    # Confidence is the strategy's own track record for the state it is in now, smoothed by
    # Laplace's rule of succession ((right + 1) / (n + 2)) so that a handful of runs cannot
    # claim certainty and no history at all gives an honest 0.5.
    right, total = _state_hit_rate(bars, pos, 1.0 if long_now else 0.0)
    confidence = (right + 1) / (total + 2)
    return {
        "strategy_type": strategy_type,
        "description": spec.description,
        "parameters": dict(spec.parameters),
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

"""The five rule baselines the TradingAgents paper (Xiao et al., arXiv 2412.20138, Table 1)
compares its agents with, long/flat like every rule here, with documented parameters.

===============  ============================================================================
baseline         rule (position decided at bar t's close from bars up to t; TA-Lib indicators)
===============  ============================================================================
buy_and_hold     always long: bought at the first open of the run, held to the end
macd             MACD crossover: long while the MACD line (EMA 12 - EMA 26 of the close) is
                 above its signal line (EMA 9 of the MACD line), flat while it is below
kdj_rsi          KDJ & RSI, an oversold/overbought swing rule: the KDJ is the slow stochastic
                 9, 3, 3 (K = SMA 3 of the 9-bar %K, D = SMA 3 of K) with J = 3K - 2D. Enter
                 when J < 0 (oversold) and RSI(14) < 40 confirms the weakness; exit when
                 J > 100 (overbought) and RSI(14) > 60. Stay in the last state otherwise.
zmr              zero mean reversion: z = (close - SMA 20) / standard deviation 20 (population,
                 as TA-Lib's STDDEV), an oscillator with zero mean. Enter when z < -1 (the
                 close is one deviation below its mean); exit when z returns to the zero line
                 (z >= 0). Stay in the last state otherwise.
sma_cross        SMA crossover: long while SMA 5 is above SMA 20, flat otherwise
===============  ============================================================================

The paper describes these baselines by name only; the periods above are the textbook ones
(MACD 12/26/9, stochastic 9/3/3, RSI 14) and ours where no textbook value exists (the KDJ/RSI
thresholds, ZMR's 20 bars and one deviation, SMA 5/20). The KDJ uses the slow stochastic's
simple moving averages, not the recursive 1/3 smoothing of the Chinese charting packages, so
its J differs slightly from theirs. Every threshold is a parameter the optimiser can search.

An indicator still warming up (too few bars) compares as false, so a rule is flat until it
has what it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import talib

from tacoreservice.backtest.engine import entry_exit_positions
from tacoreservice.backtest.params import Param, RuleSpec, faster_than
from tacoreservice.market_data.provider import Bars

__all__ = ["BASELINES", "BASELINE_NAMES", "baseline_positions"]


def _kdj_rsi_thresholds(p: Mapping[str, Any]) -> str | None:
    if p["j_oversold"] >= p["j_overbought"]:
        return (
            f"j_oversold ({p['j_oversold']:g}) must be below j_overbought ({p['j_overbought']:g})"
        )
    if p["rsi_oversold"] >= p["rsi_overbought"]:
        return (
            f"rsi_oversold ({p['rsi_oversold']:g}) must be below rsi_overbought "
            f"({p['rsi_overbought']:g})"
        )
    return None


def _zmr_thresholds(p: Mapping[str, Any]) -> str | None:
    if -p["entry_z"] >= p["exit_z"]:
        return f"the entry (z < -{p['entry_z']:g}) must lie below the exit (z >= {p['exit_z']:g})"
    return None


BASELINES: dict[str, RuleSpec] = {
    "buy_and_hold": RuleSpec(
        "buy_and_hold",
        "Buy & Hold: long from the first open of the run to its end",
        {},
        label="Buy&Hold",
    ),
    "macd": RuleSpec(
        "macd",
        "MACD crossover: long while MACD(12, 26) is above its 9-bar signal line",
        {"fast": 12, "slow": 26, "signal": 9},
        bounds={
            "fast": Param(int, 2, 100),
            "slow": Param(int, 3, 200),
            "signal": Param(int, 2, 100),
        },
        grid={"fast": (8, 12, 16), "slow": (21, 26, 34), "signal": (5, 9, 13)},
        constraint=faster_than("fast", "slow"),
        label="MACD",
    ),
    "kdj_rsi": RuleSpec(
        "kdj_rsi",
        "KDJ & RSI: buy when J < 0 and RSI(14) < 40, sell when J > 100 and RSI(14) > 60 "
        "(KDJ = slow stochastic 9, 3, 3)",
        {
            "kdj_period": 9,
            "kdj_smooth": 3,
            "rsi_period": 14,
            "j_oversold": 0.0,
            "j_overbought": 100.0,
            "rsi_oversold": 40.0,
            "rsi_overbought": 60.0,
        },
        bounds={
            "kdj_period": Param(int, 2, 100),
            "kdj_smooth": Param(int, 1, 20),
            "rsi_period": Param(int, 2, 100),
            "j_oversold": Param(float, -50.0, 50.0),
            "j_overbought": Param(float, 50.0, 150.0),
            "rsi_oversold": Param(float, 5.0, 50.0),
            "rsi_overbought": Param(float, 50.0, 95.0),
        },
        grid={
            "kdj_period": (9, 14),
            "j_oversold": (-10.0, 0.0, 10.0),
            "rsi_oversold": (30.0, 40.0, 50.0),
            "rsi_overbought": (50.0, 60.0, 70.0),
        },
        constraint=_kdj_rsi_thresholds,
        label="KDJ&RSI",
    ),
    "zmr": RuleSpec(
        "zmr",
        "Zero mean reversion: buy when the 20-bar z-score of the close falls below -1, "
        "sell when it returns to zero",
        {"window": 20, "entry_z": 1.0, "exit_z": 0.0},
        bounds={
            "window": Param(int, 3, 250),
            "entry_z": Param(float, 0.1, 4.0),
            "exit_z": Param(float, -2.0, 2.0),
        },
        grid={"window": (10, 20, 50), "entry_z": (0.5, 1.0, 1.5, 2.0), "exit_z": (0.0, 0.5)},
        constraint=_zmr_thresholds,
        label="ZMR",
    ),
    "sma_cross": RuleSpec(
        "sma_cross",
        "SMA crossover: long while SMA(5) is above SMA(20)",
        {"fast": 5, "slow": 20},
        bounds={"fast": Param(int, 2, 200), "slow": Param(int, 3, 400)},
        grid={"fast": (5, 10, 20), "slow": (20, 50, 100)},
        constraint=faster_than("fast", "slow"),
        label="SMA",
    ),
}
BASELINE_NAMES: tuple[str, ...] = tuple(BASELINES)


def _buy_and_hold(bars: Bars, p: Mapping[str, Any]) -> np.ndarray:
    return np.ones(len(bars), dtype=np.float64)


def _macd(bars: Bars, p: Mapping[str, Any]) -> np.ndarray:
    close = np.ascontiguousarray(bars.close, dtype=np.float64)
    macd, signal, _hist = talib.MACD(close, p["fast"], p["slow"], p["signal"])
    return (macd > signal).astype(np.float64)


def _kdj_rsi(bars: Bars, p: Mapping[str, Any]) -> np.ndarray:
    close = np.ascontiguousarray(bars.close, dtype=np.float64)
    high = np.ascontiguousarray(bars.high, dtype=np.float64)
    low = np.ascontiguousarray(bars.low, dtype=np.float64)
    smooth = p["kdj_smooth"]
    sma = talib.MA_Type.SMA
    k, d = talib.STOCH(high, low, close, p["kdj_period"], smooth, sma, smooth, sma)
    j = 3.0 * k - 2.0 * d
    rsi = talib.RSI(close, p["rsi_period"])
    entry = (j < p["j_oversold"]) & (rsi < p["rsi_oversold"])
    exit_ = (j > p["j_overbought"]) & (rsi > p["rsi_overbought"])
    return entry_exit_positions(entry, exit_)


def _zmr(bars: Bars, p: Mapping[str, Any]) -> np.ndarray:
    close = np.ascontiguousarray(bars.close, dtype=np.float64)
    mean = talib.SMA(close, p["window"])
    sd = talib.STDDEV(close, p["window"], 1.0)
    # A flat stretch has no deviation and no z-score: neither an entry nor an exit.
    z = np.divide(close - mean, sd, out=np.full_like(close, np.nan), where=sd > 0)
    entry = z < -p["entry_z"]
    exit_ = z >= p["exit_z"]
    return entry_exit_positions(entry, exit_)


def _sma_cross(bars: Bars, p: Mapping[str, Any]) -> np.ndarray:
    close = np.ascontiguousarray(bars.close, dtype=np.float64)
    return (talib.SMA(close, p["fast"]) > talib.SMA(close, p["slow"])).astype(np.float64)


_RULES: dict[str, Callable[[Bars, Mapping[str, Any]], np.ndarray]] = {
    "buy_and_hold": _buy_and_hold,
    "macd": _macd,
    "kdj_rsi": _kdj_rsi,
    "zmr": _zmr,
    "sma_cross": _sma_cross,
}


def baseline_positions(
    name: str, bars: Bars, params: Mapping[str, Any] | None = None
) -> np.ndarray:
    """The baseline's desired position (1 long, 0 flat) at each bar's close.

    ``params`` overrides the documented defaults (``ValueError`` when out of bounds).
    """
    spec = BASELINES.get(name)
    if spec is None:
        raise ValueError(f"unknown baseline {name!r}; use one of {', '.join(BASELINES)}")
    with np.errstate(invalid="ignore"):
        return _RULES[name](bars, spec.resolve(params))

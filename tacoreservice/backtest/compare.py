"""Side by side on one window: the analysis engine's daily decisions against the baselines.

For each symbol, the window is the trading days from ``start`` to ``end``. Every strategy
holds, on trading day D, the position it decided at the previous trading day's close, bought
or sold at D's open, and the run is marked to ``end``'s close. So the engine makes one
decision per trading day of the window (the first on the day before ``start``), each with
``as_of`` = its day, and the baselines compute their indicators on the bars up to ``end``
only, warmed up on the history before ``start``. Everyone starts in cash and pays the same
costs (:mod:`tacoreservice.backtest.engine`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from tacoreservice.analysis.engines import load_engine
from tacoreservice.backtest.baselines import BASELINE_NAMES, BASELINES, baseline_positions
from tacoreservice.backtest.decisions import Decision, daily_decisions, positions_from_decisions
from tacoreservice.backtest.engine import cost_per_side, simulate, statistics, trade_summary
from tacoreservice.market_data.provider import Bars
from tacoreservice.market_data.symbols import periods_per_year
from tacoreservice.protocol.errors import DataUnavailable, InvalidParams

__all__ = [
    "ENGINE_KEY",
    "Comparison",
    "StrategyRun",
    "compare",
    "day_text",
    "parse_day",
    "window_bounds",
]

ENGINE_KEY = "engine"


@dataclass
class StrategyRun:
    symbol: str
    strategy: str  # ENGINE_KEY or a baseline name
    label: str
    stats: dict[str, float | None]
    trades: dict[str, Any]
    times: np.ndarray  # open time of each period
    equity: np.ndarray  # equity after each period, from 1.0

    def row(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategy": self.strategy,
            "label": self.label,
            **self.stats,
            **self.trades,
        }


@dataclass
class Comparison:
    symbols: list[str]
    start: str
    end: str
    engine: str
    research_depth: int
    cost_per_side: float
    runs: list[StrategyRun] = field(default_factory=list)
    decisions: dict[str, list[Decision]] = field(default_factory=dict)
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def rows(self) -> list[dict[str, Any]]:
        return [run.row() for run in self.runs]

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "symbols": self.symbols,
            "engine": self.engine,
            "research_depth": self.research_depth,
            "cost_per_side": self.cost_per_side,
            "execution": "decision at a day's close, filled at the next day's open",
            "strategies": strategy_descriptions(self.engine),
            "windows": self.windows,
            "results": self.rows(),
            "equity": {
                f"{run.symbol}/{run.strategy}": {
                    "dates": [day_text(t) for t in run.times],
                    "equity": [round(float(x), 6) for x in run.equity],
                }
                for run in self.runs
            },
            "decisions": {
                sym: [
                    {
                        "day": d.day,
                        "as_of": d.as_of,
                        "rating": d.rating,
                        "confidence": d.confidence,
                        "exposure": d.exposure,
                    }
                    for d in ds
                ]
                for sym, ds in self.decisions.items()
            },
            "elapsed_s": round(self.elapsed_s, 3),
        }


def strategy_descriptions(engine: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        ENGINE_KEY: {
            "label": engine_label(engine),
            "description": f"the {engine} analysis engine, one decision a day with as_of = that "
            "day, holding its target exposure (moved when it changes by 10 points or more); "
            "an engine without one: BUY/OVERWEIGHT -> long, SELL/UNDERWEIGHT -> flat, HOLD -> "
            "keep",
        }
    }
    for name in BASELINE_NAMES:
        spec = BASELINES[name]
        out[name] = {
            "label": spec.title,
            "description": spec.description,
            "parameters": dict(spec.parameters),
        }
    return out


def engine_label(engine: str) -> str:
    return f"TACore {engine}"


def parse_day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise InvalidParams(
            f"{what} {str(text)[:40]!r} is not a date; use YYYY-MM-DD, e.g. 2024-01-02",
            {what: str(text)[:40]},
        ) from None


def day_text(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="D"))


def window_bounds(bars: Bars, start: date, end: date) -> tuple[int, int]:
    """Indices of the first and last bar dated within [start, end]."""
    days = bars.time.astype("datetime64[D]")
    first = int(np.searchsorted(days, np.datetime64(start.isoformat(), "D"), side="left"))
    last = int(np.searchsorted(days, np.datetime64(end.isoformat(), "D"), side="right")) - 1
    if first > last or first >= len(bars):
        raise DataUnavailable(
            f"{bars.symbol} has no daily bars from {start} to {end}; its data runs from "
            f"{day_text(bars.time[0])} to {day_text(bars.time[-1])}",
            {"symbol": bars.symbol, "start": str(start), "end": str(end)},
        )
    if first == 0:
        raise DataUnavailable(
            f"{bars.symbol}: the window starts at the first bar ({day_text(bars.time[0])}); the "
            "first position is decided at the previous day's close, so start later than that",
            {"symbol": bars.symbol, "first_bar": day_text(bars.time[0])},
        )
    return first, last


def run_rule(
    bars: Bars, symbol: str, key: str, label: str, position: np.ndarray, first: int, last: int,
    ppy: float, cost: float,
) -> StrategyRun:  # fmt: skip
    sim = simulate(bars, position, ppy=ppy, cost=cost, first=first, last=last)
    return StrategyRun(
        symbol=symbol,
        strategy=key,
        label=label,
        stats=statistics(sim.returns, ppy),
        trades=trade_summary(sim),
        times=sim.times,
        equity=sim.equity,
    )


def compare(
    symbols: Sequence[str],
    start: str,
    end: str,
    settings: Any,
    *,
    engine_name: str | None = None,
    research_depth: int | None = None,
    provider: Any = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Comparison:
    """The engine and every baseline on ``symbols`` over [start, end] (see the module doc)."""
    from tacoreservice.market_data.provider import load_provider

    started = time.perf_counter()
    start_day, end_day = parse_day(start, "start"), parse_day(end, "end")
    if start_day > end_day:
        raise InvalidParams(f"start {start_day} is after end {end_day}")
    if not symbols:
        raise InvalidParams("give at least one symbol, e.g. AAPL,GOOGL,AMZN")
    provider = provider if provider is not None else load_provider(settings.market_data)
    engine = load_engine(engine_name or settings.analysis.default_engine, settings)
    depth = research_depth or settings.analysis.default_research_depth
    cost = cost_per_side(settings.trading.costs)
    result = Comparison(
        symbols=[],
        start=str(start_day),
        end=str(end_day),
        engine=engine.name,
        research_depth=depth,
        cost_per_side=cost,
    )
    for raw in symbols:
        info = provider.resolve(raw)
        bars = provider.bars(info.symbol, "1d", end_day.isoformat())
        first, last = window_bounds(bars, start_day, end_day)
        ppy = periods_per_year(info.market, "1d")
        days = [day_text(t) for t in bars.time[first - 1 : last]]
        total = len(days)

        def progress(i: int, _d: Decision, sym: str = info.symbol, n: int = total) -> None:
            if on_progress is not None:
                on_progress(sym, i + 1, n)

        decisions = daily_decisions(
            engine, provider, info.symbol, days, research_depth=depth, on_decision=progress
        )
        engine_pos = np.zeros(len(bars))
        engine_pos[first - 1 : last] = positions_from_decisions(decisions)
        result.symbols.append(info.symbol)
        result.decisions[info.symbol] = decisions
        result.windows[info.symbol] = {
            "first_day": day_text(bars.time[first]),
            "last_day": day_text(bars.time[last]),
            "trading_days": last - first + 1,
            "market": info.market,
        }
        result.runs.append(
            run_rule(
                bars,
                info.symbol,
                ENGINE_KEY,
                engine_label(engine.name),
                engine_pos,
                first,
                last,
                ppy,
                cost,
            )  # fmt: skip
        )
        for name in BASELINE_NAMES:
            result.runs.append(
                run_rule(
                    bars,
                    info.symbol,
                    name,
                    BASELINES[name].title,
                    baseline_positions(name, bars),
                    first,
                    last,
                    ppy,
                    cost,
                )  # fmt: skip
            )
    result.elapsed_s = time.perf_counter() - started
    return result

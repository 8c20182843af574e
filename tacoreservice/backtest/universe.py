"""The universe run: every bundled daily symbol over rolling windows, medians per strategy.

One quarter on three stocks can flatter any strategy. This run takes every daily symbol the
provider has (US stocks and ETFs, A-shares and the CSI 300, crypto), cuts its history into
windows of ``window_months`` calendar months starting on the first of every
``step_months``-th month, and backtests the engine and the baselines on each window exactly as
:mod:`tacoreservice.backtest.compare` does on one. A window is used when it is complete (the
data goes on past its end) and at least ``warmup_bars`` bars precede it, so every indicator
and the engine's one-year statistics have their history. The summary gives, per strategy, the
number of runs and the median of each statistic across all (symbol, window) runs, the median
return over Buy & Hold in the same run, and the share of runs that beat Buy & Hold.

The engine's decision for a day does not depend on the window (it is made with ``as_of`` =
that day), so each symbol's days are analysed once and shared by the overlapping windows;
each window's positions still start flat on its first day. Symbols are spread over a process
pool sized to the CPU cores.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from tacoreservice.backtest.baselines import BASELINE_NAMES, BASELINES, baseline_positions
from tacoreservice.backtest.compare import ENGINE_KEY, day_text, engine_label, run_rule
from tacoreservice.backtest.decisions import (
    Decision,
    daily_decisions,
    positions_from_decisions,
)
from tacoreservice.backtest.engine import cost_per_side
from tacoreservice.market_data.symbols import periods_per_year

__all__ = ["UniverseResult", "cpu_count", "run_universe", "summarise", "symbol_windows"]

STAT_KEYS = ("total_return", "annualized_return", "sharpe_ratio", "max_drawdown")


@dataclass
class UniverseResult:
    engine: str
    window_months: int
    step_months: int
    warmup_bars: int
    workers: int
    cost_per_side: float
    symbols: int = 0
    windows: int = 0
    elapsed_s: float = 0.0
    runs: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    by_market: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "window_months": self.window_months,
            "step_months": self.step_months,
            "warmup_bars": self.warmup_bars,
            "cost_per_side": self.cost_per_side,
            "symbols": self.symbols,
            "windows": self.windows,
            "workers": self.workers,
            "elapsed_s": round(self.elapsed_s, 2),
            "summary": self.summary,
            "by_market": self.by_market,
            "skipped": self.skipped,
            "runs": self.runs,
        }


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _add_months(d: date, k: int) -> date:
    m = d.month - 1 + k
    return date(d.year + m // 12, m % 12 + 1, 1)


def symbol_windows(
    times: np.ndarray, window_months: int, step_months: int, warmup_bars: int
) -> list[tuple[str, int, int]]:
    """(calendar start, first bar, last bar) of each complete window with ``warmup_bars``
    bars before it."""
    days = times.astype("datetime64[D]")
    n = days.shape[0]
    if n <= warmup_bars:
        return []
    first_day = date.fromisoformat(str(days[warmup_bars]))
    month = date(first_day.year, first_day.month, 1)
    if month < first_day:
        month = _add_months(month, 1)
    out = []
    while True:
        end = _add_months(month, window_months)
        first = int(np.searchsorted(days, np.datetime64(month.isoformat(), "D")))
        stop = int(np.searchsorted(days, np.datetime64(end.isoformat(), "D")))
        if stop >= n:  # the data must go on past the window for it to be complete
            break
        if stop - first >= 2 and first >= warmup_bars:
            out.append((month.isoformat(), first, stop - 1))
        month = _add_months(month, step_months)
    return out


_providers: dict[tuple[str, ...], Any] = {}


def _task_provider(settings: Any, universe: Sequence[str] | None) -> Any:
    """The process's provider for a task: the settings' data, restricted to ``universe``."""
    from tacoreservice.market_data.provider import load_provider
    from tacoreservice.market_data.universe import SubsetProvider

    key = tuple(universe or ())
    found = _providers.get(key)
    if found is None:
        from tacoreservice.analysis.forecast import set_calibration_dir

        set_calibration_dir(settings.analysis.calibration_dir)
        found = load_provider(settings.market_data)
        if universe:
            found = SubsetProvider(found, universe)
        _providers[key] = found
    return found


def _remote_decisions(task: dict[str, Any], symbol: str, days: list[str]) -> list[Decision]:
    from tacoreservice.client import TACoreClient
    from tacoreservice.client.jobs import wait_job

    with TACoreClient(task["service"], timeout_ms=30_000, retries=3) as client:
        job = client.call(
            "job.submit",
            {
                "method": "backtest.decisions",
                "params": {
                    "symbol": symbol,
                    "start": days[0],
                    "end": days[-1],
                    "engine": task["engine"],
                    "research_depth": task["research_depth"],
                },
            },
        )
        data = wait_job(client, job["job_id"], f"decisions of {symbol}")
    return [Decision(**d) for d in data["decisions"]]


def _symbol_runs(task: dict[str, Any]) -> dict[str, Any]:
    """Everything for one symbol; runs in a pool process (or a thread, with a service)."""
    from tacoreservice.analysis.engines import load_engine
    from tacoreservice.config import Settings

    settings = Settings.model_validate_json(task["settings"])
    provider = _task_provider(settings, task.get("universe"))
    symbol = task["symbol"]
    info = provider.resolve(symbol)
    bars = provider.bars(info.symbol, "1d")
    windows = symbol_windows(
        bars.time, task["window_months"], task["step_months"], task["warmup_bars"]
    )
    if not windows:
        return {
            "symbol": info.symbol,
            "runs": [],
            "skipped": f"{len(bars)} daily bars: no complete window after "
            f"{task['warmup_bars']} bars of warm-up",
        }
    cost = cost_per_side(settings.trading.costs)
    ppy = periods_per_year(info.market, "1d")
    base = windows[0][1] - 1
    days = [day_text(t) for t in bars.time[base : windows[-1][2]]]
    if task.get("service"):
        decisions = _remote_decisions(task, info.symbol, days)
    else:
        engine = load_engine(task["engine"], settings)
        decisions = daily_decisions(
            engine, provider, info.symbol, days, research_depth=task["research_depth"]
        )
    engine_name = task["engine"]
    rule_pos = {name: baseline_positions(name, bars) for name in BASELINE_NAMES}
    labels = {ENGINE_KEY: engine_label(engine_name)} | {
        n: BASELINES[n].title for n in BASELINE_NAMES
    }
    runs = []
    for month, first, last in windows:
        engine_pos = np.zeros(len(bars))
        engine_pos[first - 1 : last] = positions_from_decisions(
            decisions[first - 1 - base : last - base]
        )
        for key, pos in ((ENGINE_KEY, engine_pos), *rule_pos.items()):
            run = run_rule(bars, info.symbol, key, labels[key], pos, first, last, ppy, cost)
            runs.append(
                {
                    "symbol": info.symbol,
                    "market": info.market,
                    "window": month,
                    "first_day": day_text(bars.time[first]),
                    "last_day": day_text(bars.time[last]),
                    "strategy": key,
                    "label": run.label,
                    **run.stats,
                    "trades": run.trades["trades"],
                    "exposure": run.trades["exposure"],
                }
            )
    return {"symbol": info.symbol, "runs": runs, "skipped": None}


def _median(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return round(float(np.median(finite)), 6) if finite else None


def _sharpe(run: dict[str, Any]) -> float:
    """A run's Sharpe ratio, 0 for a run that never invested (it earned the risk-free rate,
    which the ratio is measured against): dropping such runs would judge a strategy only on
    the windows it chose to play."""
    value = run.get("sharpe_ratio")
    return float(value) if value is not None and np.isfinite(value) else 0.0


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy: runs, medians (Sharpe of a never-invested run counted as 0), median
    excess return over Buy & Hold, the share of runs whose return beats Buy & Hold's, and the
    share whose Sharpe beats each other strategy's in the same (symbol, window)."""
    by_key: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for r in runs:
        by_key.setdefault(r["strategy"], {})[(r["symbol"], r["window"])] = r
    bh = by_key.get("buy_and_hold", {})
    out = []
    for key in (ENGINE_KEY, *BASELINE_NAMES):
        mine = [r for r in runs if r["strategy"] == key]
        if not mine:
            continue
        row: dict[str, Any] = {"strategy": key, "label": mine[0]["label"], "runs": len(mine)}
        for stat in STAT_KEYS:
            if stat == "sharpe_ratio":
                row["median_sharpe_ratio"] = _median([_sharpe(r) for r in mine])
            else:
                row[f"median_{stat}"] = _median([r[stat] for r in mine])
        row["median_exposure"] = _median([r["exposure"] for r in mine])
        row["never_invested"] = round(sum(1 for r in mine if not r["exposure"]) / len(mine), 4)
        if key == "buy_and_hold":
            row["median_excess_return"] = None
            row["beats_buy_and_hold"] = None
        else:
            pairs = [(r["total_return"], bh[k]["total_return"]) for k, r in _keyed(mine) if k in bh]
            row["median_excess_return"] = _median([a - b for a, b in pairs])
            row["beats_buy_and_hold"] = (
                round(sum(1 for a, b in pairs if a > b) / len(pairs), 4) if pairs else None
            )
        row["sharpe_beats"] = {}
        for other, theirs in by_key.items():
            if other == key:
                continue
            both = [(_sharpe(r), _sharpe(theirs[k])) for k, r in _keyed(mine) if k in theirs]
            if both:
                row["sharpe_beats"][other] = round(sum(1 for a, b in both if a > b) / len(both), 4)
        out.append(row)
    return out


def _keyed(runs: Sequence[dict[str, Any]]) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    return [((r["symbol"], r["window"]), r) for r in runs]


def run_universe(
    settings: Any,
    *,
    engine_name: str | None = None,
    research_depth: int | None = None,
    symbols: Sequence[str] | None = None,
    window_months: int = 3,
    step_months: int = 1,
    warmup_bars: int = 252,
    workers: int | None = None,
    universe: Sequence[str] | None = None,
    service: str | Sequence[str] | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> UniverseResult:
    """Backtest every bundled daily symbol (or ``symbols``) over rolling windows.

    ``universe``: the symbols the engine's calibration and cross-section are made of (all of
    the provider's by default). ``service``: endpoint(s) of a running service to send each
    symbol's daily decisions to as a ``backtest.decisions`` job (its own data, which must be
    this data); the windows are then scored here.
    """
    from tacoreservice.analysis.engines import load_engine

    started = time.perf_counter()
    provider = _task_provider(settings, universe)
    engine_name = engine_name or settings.analysis.default_engine
    if service is None:
        engine_name = load_engine(engine_name, settings).name  # fails early when unusable
    if symbols:
        names = [provider.resolve(s).symbol for s in symbols]
    else:
        names = [i.symbol for i in provider.symbols() if "1d" in i.timeframes]
    procs = max(1, min(workers or cpu_count(), len(names)))
    result = UniverseResult(
        engine=engine_name,
        window_months=window_months,
        step_months=step_months,
        warmup_bars=warmup_bars,
        workers=procs,
        cost_per_side=cost_per_side(settings.trading.costs),
    )
    tasks = [
        {
            "symbol": name,
            "settings": settings.model_dump_json(),
            "engine": engine_name,
            "research_depth": research_depth or settings.analysis.default_research_depth,
            "universe": list(universe) if universe else None,
            "service": service,
            "window_months": window_months,
            "step_months": step_months,
            "warmup_bars": warmup_bars,
        }
        for name in names
    ]
    outputs: list[dict[str, Any]] = []
    if service is not None:
        # The work is the service's: threads only wait for its jobs.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(4, procs)) as threads:
            for i, out in enumerate(threads.map(_symbol_runs, tasks), 1):
                outputs.append(out)
                if on_progress is not None:
                    on_progress(i, len(tasks), out["symbol"])
    elif procs == 1:
        for i, task in enumerate(tasks, 1):
            outputs.append(_symbol_runs(task))
            if on_progress is not None:
                on_progress(i, len(tasks), task["symbol"])
    else:
        # spawn, not fork: the caller may hold threads (the analysis graph uses a pool).
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            for i, out in enumerate(pool.imap_unordered(_symbol_runs, tasks), 1):
                outputs.append(out)
                if on_progress is not None:
                    on_progress(i, len(tasks), out["symbol"])
    outputs.sort(key=lambda o: o["symbol"])
    for out in outputs:
        if out["skipped"]:
            result.skipped.append({"symbol": out["symbol"], "why": out["skipped"]})
        result.runs.extend(out["runs"])
    result.symbols = sum(1 for o in outputs if o["runs"])
    result.windows = len({r["window"] for r in result.runs})
    result.summary = summarise(result.runs)
    for market in sorted({r["market"] for r in result.runs}):
        result.by_market[market] = summarise([r for r in result.runs if r["market"] == market])
    result.elapsed_s = time.perf_counter() - started
    return result

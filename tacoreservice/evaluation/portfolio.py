"""Portfolio mode: the scanner and the analysts run a desk's monthly book, walk-forward.

At each month-end D of the range, for one market:

* **TACore portfolio**: the universe symbols with a bar on D are ranked by the scan's score
  (the calibrated chance of a positive month), the top ``top_n`` are taken, and each gets
  ``exposure / top_n`` of the capital, ``exposure`` being the analysis' own size for it
  (half Kelly on its forecast, 0..1); what is not allotted stays in cash.
* **Equal weight**: every universe symbol with a bar on D, ``1 / n`` each, fully invested.
* **Benchmark**: the market's benchmark (SPY, CSI300, BTCUSDT), fully invested.

All three decide at D's close and trade at the next bar's open, hold their shares until the
next rebalance (weights drift with prices) and pay ``cost_per_side`` on every unit of value
traded. The book is marked at each close on the market's calendar; a symbol with no bar that
day (a suspension) keeps its last close. Statistics are empyrical's on the daily returns, as
the backtest's are, plus turnover (value traded over the average value, a year) and the
costs paid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tacoreservice.analysis.factors import market_panel
from tacoreservice.backtest.engine import statistics
from tacoreservice.evaluation.snapshots import Snapshot

__all__ = ["PortfolioRun", "default_top_n", "run_portfolios"]


@dataclass
class PortfolioRun:
    market: str
    name: str  # "tacore" | "equal_weight" | "benchmark"
    label: str
    days: list[str] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    rebalances: int = 0
    mean_invested: float = 0.0

    def row(self) -> dict[str, Any]:
        return {
            "market": self.market,
            "portfolio": self.name,
            "label": self.label,
            "rebalances": self.rebalances,
            "mean_invested": round(self.mean_invested, 4),
            **self.stats,
        }


def default_top_n(universe: int) -> int:
    """A third of the universe, at least 2: concentrated enough to differ from equal weight,
    broad enough that one name does not decide the month."""
    return max(2, round(universe / 3))


def _simulate(
    opens: np.ndarray,
    closes: np.ndarray,
    targets: dict[int, np.ndarray],
    first: int,
    last: int,
    cost: float,
) -> tuple[np.ndarray, float, float, list[float]]:
    """Equity at each close from ``first`` to ``last`` and the value traded and costs paid.

    ``targets[k]``: weights decided at day k's close, traded at day k+1's open.
    """
    n_sym = opens.shape[1]
    shares = np.zeros(n_sym)
    cash = 1.0
    equity = []
    traded = 0.0
    costs = 0.0
    invested = []
    pending: np.ndarray | None = targets.get(first - 1)
    for t in range(first, last + 1):
        if pending is not None:
            px = np.where(np.isfinite(opens[t]), opens[t], closes[t - 1])
            value = cash + float(np.nansum(shares * px))
            want = value * pending
            have = shares * px
            delta = np.abs(np.where(np.isfinite(px), want - have, 0.0))
            fee = cost * float(delta.sum())
            traded += float(delta.sum())
            costs += fee
            value -= fee
            shares = np.where(np.isfinite(px) & (px > 0), value * pending / px, 0.0)
            cash = value - float(np.sum(shares * np.where(np.isfinite(px), px, 0.0)))
            pending = None
        mark = cash + float(np.nansum(shares * closes[t]))
        equity.append(mark)
        invested.append(0.0 if mark <= 0 else 1.0 - cash / mark)
        if t in targets:
            pending = targets[t]
    return np.asarray(equity), traded, costs, invested


def _filled(values: np.ndarray) -> np.ndarray:
    """Carry each column's last finite value forward (a day without a bar)."""
    out = values.copy()
    for j in range(out.shape[1]):
        col = out[:, j]
        idx = np.where(np.isfinite(col), np.arange(col.shape[0]), -1)
        idx = np.maximum.accumulate(idx)
        out[:, j] = np.where(idx >= 0, col[np.maximum(idx, 0)], np.nan)
    return out


def run_portfolios(
    provider: Any,
    market: str,
    snapshots: Sequence[Snapshot],
    start: str,
    end: str,
    cost: float,
    top_n: int | None = None,
) -> list[PortfolioRun]:
    """The three books over ``start`` .. ``end`` from the month-end ``snapshots`` of
    ``market`` (see :func:`~tacoreservice.evaluation.snapshots.month_end_snapshots`)."""
    panel = market_panel(provider, market)
    days = panel.days
    mine = [s for s in snapshots if s.market == market and start <= s.day <= end]
    if not mine:
        return []
    sym_index = {sym: j for j, sym in enumerate(panel.symbols)}
    bench = panel.benchmark
    names = list(panel.symbols) + ([bench] if bench and bench not in sym_index else [])
    opens = np.full((days.shape[0], len(names)), np.nan)
    closes = np.full_like(opens, np.nan)
    for j, sym in enumerate(names):
        bars = provider.bars(sym, "1d")
        own = bars.time.astype("datetime64[D]")
        pos = np.searchsorted(days, own)
        ok = (pos < days.shape[0]) & (days[np.minimum(pos, days.shape[0] - 1)] == own)
        opens[pos[ok], j] = np.asarray(bars.open)[ok]
        closes[pos[ok], j] = np.asarray(bars.close)[ok]
    closes = _filled(closes)
    bench_j = names.index(bench) if bench else None

    by_day: dict[str, list[Snapshot]] = {}
    for s in mine:
        by_day.setdefault(s.day, []).append(s)
    universe = max(len(v) for v in by_day.values())
    n_top = top_n or default_top_n(universe)
    targets: dict[str, dict[int, np.ndarray]] = {"tacore": {}, "equal_weight": {}, "benchmark": {}}
    for day, items in by_day.items():
        k = int(np.searchsorted(days, np.datetime64(day, "D")))
        ranked = sorted(items, key=lambda s: (-(s.scan_score or 0.0), s.symbol))[:n_top]
        w = np.zeros(len(names))
        for s in ranked:
            w[sym_index[s.symbol]] = float(s.exposure or 0.0) / n_top
        targets["tacore"][k] = w
        ew = np.zeros(len(names))
        for s in items:
            ew[sym_index[s.symbol]] = 1.0 / len(items)
        targets["equal_weight"][k] = ew
        if bench_j is not None:
            bw = np.zeros(len(names))
            bw[bench_j] = 1.0
            targets["benchmark"][k] = bw
    first_k = min(targets["tacore"]) + 1
    end_k = int(np.searchsorted(days, np.datetime64(end, "D"), side="right")) - 1
    last_k = min(end_k, days.shape[0] - 1)
    labels = {
        "tacore": f"TACore top {n_top}",
        "equal_weight": "Equal weight",
        "benchmark": bench or "Benchmark",
    }
    runs: list[PortfolioRun] = []
    for name, tg in targets.items():
        if not tg or first_k > last_k:
            continue
        equity, traded, costs, invested = _simulate(opens, closes, tg, first_k, last_k, cost)
        returns = np.diff(np.concatenate([[1.0], equity])) / np.concatenate([[1.0], equity[:-1]])
        stats = statistics(returns, panel.ppy)
        years = len(returns) / panel.ppy
        mean_value = float(np.mean(equity)) if equity.shape[0] else 1.0
        stats |= {
            "turnover_per_year": round(traded / mean_value / years, 3) if years > 0 else None,
            "costs_paid": round(costs, 5),
            "top_n": n_top if name == "tacore" else None,
        }
        runs.append(
            PortfolioRun(
                market=market,
                name=name,
                label=labels[name],
                days=[str(d) for d in days[first_k : last_k + 1]],
                equity=[round(float(x), 6) for x in equity],
                stats=stats,
                rebalances=len(tg),
                mean_invested=float(np.mean(invested)) if invested else 0.0,
            )
        )
    return runs

"""Rank information coefficients: does a score order next month's returns?

For a score (the scan's, or the decision's expected return, or its rating x confidence) and a
horizon, the IC of a month-end is the Spearman correlation, across the market's symbols that
day, between the score and the forward return. Its mean over the months, the t-statistic of
that mean (mean / sd x sqrt(months), months being independent draws of the cross-section) and
the share of positive months say whether the ranking carries information. A month needs
``MIN_SYMBOLS`` symbols with both values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from tacoreservice.evaluation.snapshots import HORIZONS, Snapshot

__all__ = ["MIN_SYMBOLS", "SCORES", "ic_summary", "monthly_ic"]

MIN_SYMBOLS = 5

SCORES: dict[str, Callable[[Snapshot], float | None]] = {
    "scan_score": lambda s: s.scan_score,
    "decision_expected_return": lambda s: s.expected_return,
    "decision_rating_x_confidence": lambda s: s.rating_x_confidence,
}


def monthly_ic(
    snapshots: Sequence[Snapshot], score: Callable[[Snapshot], float | None], horizon: int
) -> list[tuple[str, float]]:
    """``(day, IC)`` of every month-end with enough symbols, in date order."""
    by_day: dict[str, list[Snapshot]] = {}
    for s in snapshots:
        by_day.setdefault(s.day, []).append(s)
    out: list[tuple[str, float]] = []
    for day in sorted(by_day):
        pairs = [
            (score(s), s.forward.get(horizon))
            for s in by_day[day]
            if score(s) is not None and s.forward.get(horizon) is not None
        ]
        if len(pairs) < MIN_SYMBOLS:
            continue
        x = np.array([p[0] for p in pairs], dtype=np.float64)
        y = np.array([p[1] for p in pairs], dtype=np.float64)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append((day, 0.0))  # a score that does not rank carries no information
            continue
        value = float(spearmanr(x, y).statistic)
        if math.isfinite(value):
            out.append((day, value))
    return out


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    if n == 0:
        return {"months": 0, "mean": None, "t": None, "positive": None}
    arr = np.asarray(values)
    sd = float(arr.std(ddof=1)) if n > 1 else 0.0
    return {
        "months": n,
        "mean": round(float(arr.mean()), 4),
        "t": round(float(arr.mean()) / sd * math.sqrt(n), 2) if sd > 0 else None,
        "positive": round(float((arr > 0).mean()), 3),
    }


def ic_summary(snapshots: Sequence[Snapshot]) -> list[dict[str, Any]]:
    """One row per market, score and horizon: months, mean IC, t, share of positive months."""
    rows: list[dict[str, Any]] = []
    for market in sorted({s.market for s in snapshots}):
        mine = [s for s in snapshots if s.market == market]
        for name, fn in SCORES.items():
            for h in HORIZONS:
                rows.append(
                    {"market": market, "score": name, "horizon": h}
                    | _stats([v for _d, v in monthly_ic(mine, fn, h)])
                )
    return rows

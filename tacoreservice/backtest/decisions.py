"""The analysis engine as a trading rule: one decision per trading day, point in time.

For each trading day D the engine runs exactly as ``analyze.stock`` runs it
(:func:`tacoreservice.analysis.graph.run_analysis` with the comprehensive team and
``as_of = D``), so it sees the bars up to D's close and nothing later. The decision is
filled at the next bar's open by the backtest engine.

The engine's position is its own size: ``target_exposure``, the fraction of the capital given
to the name that the decision holds (0 flat .. 1 fully in; the quant engine sizes it by half
Kelly on its calibrated forecast, so it targets volatility too). A decision only moves the
position when the new target differs from the one held by at least ``REBALANCE_BAND`` (or
goes to flat), since trading every small daily change would pay costs on noise.

An engine that gives no exposure (the TradingAgents adapter) is read as a long/flat trader
reads ratings:

==========================  ==========================================================
BUY, OVERWEIGHT             long (the team wants exposure)
SELL, UNDERWEIGHT           flat (long/flat cannot go below zero; underweight -> out)
HOLD                        keep the previous position (flat before the first decision)
==========================  ==========================================================

A run starts flat, so a HOLD on its first day stays out of the market: the engine has not
asked to be in yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tacoreservice.analysis.graph import ANALYSIS_TYPES, AnalysisRequest, Hooks, run_analysis

__all__ = [
    "REBALANCE_BAND",
    "RATING_POSITION",
    "Decision",
    "daily_decisions",
    "positions_from_decisions",
    "positions_from_ratings",
]

# Ten points of exposure: below that, a change of target is left alone.
REBALANCE_BAND = 0.10

RATING_POSITION: dict[str, float | None] = {
    "BUY": 1.0,
    "OVERWEIGHT": 1.0,
    "HOLD": None,
    "UNDERWEIGHT": 0.0,
    "SELL": 0.0,
}


@dataclass(frozen=True)
class Decision:
    day: str  # the as_of the engine was given (a trading day, YYYY-MM-DD)
    as_of: str  # the last bar the engine saw, as its decision reports it
    rating: str
    confidence: float | None
    exposure: float | None = None  # target_exposure, when the engine sizes
    expected_return: float | None = None
    probability_up: float | None = None


def daily_decisions(
    engine: Any,
    provider: Any,
    symbol: str,
    days: Sequence[str],
    *,
    research_depth: int = 3,
    timeframe: str = "1d",
    on_decision: Callable[[int, Decision], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> list[Decision]:
    """The engine's decision for each of ``days``, each computed with ``as_of`` = that day."""
    hooks = Hooks(check_cancelled=check_cancelled) if check_cancelled else Hooks()
    out: list[Decision] = []
    for i, day in enumerate(days):
        request = AnalysisRequest(
            symbol=symbol,
            analysts=ANALYSIS_TYPES["comprehensive"],
            research_depth=research_depth,
            as_of=day,
            timeframe=timeframe,
        )
        decision = run_analysis(engine, provider, request, hooks)
        rating = str(decision["rating"]).upper()
        if rating not in RATING_POSITION:
            raise ValueError(f"engine {engine.name!r} answered an unknown rating {rating!r}")
        item = Decision(
            day=day,
            as_of=str(decision.get("as_of") or day)[:10],
            rating=rating,
            confidence=decision.get("confidence"),
            exposure=decision.get("target_exposure"),
            expected_return=decision.get("expected_return"),
            probability_up=decision.get("probability_up"),
        )
        out.append(item)
        if on_decision is not None:
            on_decision(i, item)
    return out


def positions_from_ratings(ratings: Sequence[str], start: float = 0.0) -> np.ndarray:
    """Positions after each rating (see the module table); HOLD carries the last one on."""
    pos = np.empty(len(ratings), dtype=np.float64)
    current = start
    for i, rating in enumerate(ratings):
        target = RATING_POSITION[rating]
        if target is not None:
            current = target
        pos[i] = current
    return pos


def positions_from_decisions(
    decisions: Sequence[Decision], start: float = 0.0, band: float = REBALANCE_BAND
) -> np.ndarray:
    """Positions after each decision: its exposure, moved to only when it differs from the
    position held by ``band`` or more or is flat; ratings (see the table) where a decision has
    no exposure."""
    pos = np.empty(len(decisions), dtype=np.float64)
    current = start
    for i, d in enumerate(decisions):
        if d.exposure is None:
            target = RATING_POSITION[d.rating]
            if target is not None:
                current = target
        else:
            target = float(d.exposure)
            if abs(target - current) >= band or (target == 0.0 and current != 0.0):
                current = target
        pos[i] = current
    return pos

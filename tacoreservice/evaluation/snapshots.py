"""Month-end snapshots: what the scan and the analysis said on a day, and what followed.

For each market and each month-end D in the range (the last trading day of the month in the
market's calendar), every symbol of the market's universe with a bar on D is scanned
(``scan.market`` as a client calls it, ``as_of = D``) and analysed (the engine with ``as_of =
D``), so each answer sees nothing after D. Its forward returns over 5, 21 and 63 bars are then
read from the bars after D: they are the yardstick, never an input.

The analyses can run in this process or as jobs on a running service (``service``): a list of
endpoints gets every month's decisions submitted at once and collected as they finish, so
workers on other hosts share the load.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tacoreservice.analysis.factors import market_panel
from tacoreservice.analysis.graph import ANALYSIS_TYPES, AnalysisRequest, run_analysis
from tacoreservice.market_data.universe import universe_infos

__all__ = ["HORIZONS", "RATING_SCORE", "Snapshot", "month_end_snapshots"]

HORIZONS: tuple[int, ...] = (5, 21, 63)
RATING_SCORE: dict[str, float] = {
    "BUY": 2.0,
    "OVERWEIGHT": 1.0,
    "HOLD": 0.0,
    "UNDERWEIGHT": -1.0,
    "SELL": -2.0,
}


@dataclass
class Snapshot:
    market: str
    day: str
    symbol: str
    scan_score: float | None
    rating: str
    confidence: float | None
    expected_return: float | None
    probability_up: float | None
    exposure: float | None
    forward: dict[int, float | None] = field(default_factory=dict)

    @property
    def rating_x_confidence(self) -> float | None:
        if self.confidence is None:
            return None
        return RATING_SCORE.get(self.rating, 0.0) * float(self.confidence)

    @property
    def direction(self) -> float:
        """The sign the decision bets on: its action's, or its forecast's for a HOLD."""
        score = RATING_SCORE.get(self.rating, 0.0)
        if score:
            return math.copysign(1.0, score)
        er = self.expected_return
        return 0.0 if er is None or er == 0 else math.copysign(1.0, er)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["forward"] = {str(k): v for k, v in self.forward.items()}
        return out


def _forward(close: np.ndarray, i: int, h: int) -> float | None:
    if i + h >= close.shape[0] or close[i] <= 0:
        return None
    value = float(close[i + h] / close[i] - 1.0)
    return value if math.isfinite(value) else None


def _month_end_days(provider: Any, market: str, start: str, end: str) -> list[str]:
    panel = market_panel(provider, market)
    days = [str(panel.days[k]) for k in panel.month_ends()]
    return [d for d in days if start <= d <= end]


def _scan_scores(provider: Any, settings: Any, market: str, day: str, symbols: list[str]) -> dict:
    from tacoreservice.cache.lru import LRUCache
    from tacoreservice.service.registry import MethodContext, call_method, load_plugins

    load_plugins()
    ctx = MethodContext(settings=settings, cache=LRUCache(16), worker_id="evaluate")
    ctx._provider = provider
    data = call_method(
        "scan.market",
        {"market": market, "symbols": symbols, "as_of": day, "limit": len(symbols)},
        ctx,
    )
    return {r["symbol"]: r["score"] for r in data["scan_results"]}


def _decision_fields(decision: dict[str, Any]) -> dict[str, Any]:
    return {
        "rating": str(decision.get("rating", "HOLD")).upper(),
        "confidence": decision.get("confidence"),
        "expected_return": decision.get("expected_return"),
        "probability_up": decision.get("probability_up"),
        "exposure": decision.get("target_exposure"),
    }


def month_end_snapshots(
    provider: Any,
    engine: Any,
    settings: Any,
    markets: Sequence[str],
    start: str,
    end: str,
    *,
    service: Any = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[Snapshot]:
    """Scan scores, decisions and forward returns of every universe symbol at every month-end.

    ``service``: a connected client (:class:`~tacoreservice.client.TACoreClient`) to send the
    analyses to as jobs; None analyses in this process.
    """
    out: list[Snapshot] = []
    for market in markets:
        infos = universe_infos(provider, market)
        if not infos:
            continue
        series = {i.symbol: provider.bars(i.symbol, "1d") for i in infos}
        days = _month_end_days(provider, market, start, end)
        for n, day in enumerate(days, 1):
            day64 = np.datetime64(day, "D")
            present: dict[str, int] = {}
            for sym, bars in series.items():
                k = int(np.searchsorted(bars.time.astype("datetime64[D]"), day64, side="right"))
                if k and bars.time[k - 1].astype("datetime64[D]") == day64:
                    present[sym] = k - 1
            if len(present) < 2:
                continue
            names = sorted(present)
            scores = _scan_scores(provider, settings, market, day, names)
            decisions = _decide(provider, engine, names, day, service)
            for sym in names:
                close = np.asarray(series[sym].close)
                out.append(
                    Snapshot(
                        market=market,
                        day=day,
                        symbol=sym,
                        scan_score=scores.get(sym),
                        **_decision_fields(decisions[sym]),
                        forward={h: _forward(close, present[sym], h) for h in HORIZONS},
                    )
                )
            if on_progress is not None:
                on_progress(market, n, len(days))
    return out


def _decide(
    provider: Any, engine: Any, names: list[str], day: str, service: Any
) -> dict[str, dict[str, Any]]:
    if service is not None:
        from tacoreservice.evaluation.remote import analyse_remotely

        return analyse_remotely(service, names, day, engine.name)
    out = {}
    for sym in names:
        request = AnalysisRequest(symbol=sym, analysts=ANALYSIS_TYPES["comprehensive"], as_of=day)
        out[sym] = run_analysis(engine, provider, request)
    return out

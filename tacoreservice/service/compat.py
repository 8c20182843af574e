"""Reply fields the design documents' skeletons show, added beside the service's own.

Module authors copy the documents' reply skeletons, so with ``broker.compat`` on (the default)
an answer also carries the fields those skeletons read, derived from the real answer:

``analyze.stock`` / ``analyze.symbol``
    ``analysis: {trend, strength, support_levels, resistance_levels, recommendation}``, taken
    from the decision's public fields only (rating, action, confidence, target and stop, the
    market analyst's evidence), never recomputed, so it can never disagree with the decision:

    * ``trend``: ``bullish`` / ``bearish`` / ``neutral`` from the market analyst's trend
      reading (up / down / sideways or unknown);
    * ``strength``: the decision's ``confidence`` (0..1);
    * ``support_levels`` / ``resistance_levels``: the technical levels of the evidence (SMA50,
      SMA200, Bollinger bands) and the decision's stop loss / target / take profit, split at
      the price, nearest first;
    * ``recommendation``: the decision's ``action`` (BUY, SELL or HOLD).

``health.check``
    ``uptime_seconds``, ``worker_count`` (alive workers) and ``stats`` (the request counters).
    The broker answers health.check itself, so it calls :func:`health_fields` directly.

``get.market_data``'s ``change_24h`` / ``high_24h`` / ``low_24h`` are not here: they need the
bars, so :mod:`tacoreservice.service.methods.market_data` computes them with the summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["add_compat_fields", "analysis_block", "health_fields"]

_TREND_WORDS = {"up": "bullish", "down": "bearish", "sideways": "neutral"}


def _level(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def analysis_block(decision: dict[str, Any]) -> dict[str, Any]:
    """The documents' ``analysis`` object for one analyze.stock decision."""
    market = (decision.get("evidence") or {}).get("market_analyst") or {}
    trend_ev = market.get("trend") or {}
    bands = market.get("bollinger") or {}
    price = _level(decision.get("price")) or _level(trend_ev.get("price"))
    candidates = {
        _level(v)
        for v in (
            trend_ev.get("sma_50"),
            trend_ev.get("sma_200"),
            bands.get("bb_upper"),
            bands.get("bb_lower"),
            decision.get("stop_loss"),
            decision.get("target_price"),
            decision.get("take_profit"),
        )
    }
    levels = sorted(x for x in candidates if x is not None)
    support = sorted((x for x in levels if price is not None and x < price), reverse=True)
    resistance = [x for x in levels if price is not None and x > price]
    confidence = decision.get("confidence")
    return {
        "trend": _TREND_WORDS.get(str(trend_ev.get("trend")), "neutral"),
        "strength": float(confidence) if isinstance(confidence, int | float) else None,
        "support_levels": [round(x, 6) for x in support],
        "resistance_levels": [round(x, 6) for x in resistance],
        "recommendation": decision.get("action") or decision.get("rating"),
    }


def _analysis(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "analysis": analysis_block(data)}


def health_fields(health: dict[str, Any]) -> dict[str, Any]:
    """``health`` with the documents' ``uptime_seconds``, ``worker_count`` and ``stats``."""
    requests = health.get("requests") or {}
    return {
        **health,
        "uptime_seconds": health.get("uptime_s"),
        "worker_count": (health.get("workers") or {}).get("alive", 0),
        "stats": {
            "total_requests": requests.get("total", 0),
            "successful_requests": requests.get("success", 0),
            "failed_requests": requests.get("error", 0),
            "queue_depth": health.get("queue_depth", 0),
            "in_flight": health.get("in_flight", 0),
        },
    }


_BY_METHOD: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "analyze.stock": _analysis,
    "analyze.symbol": _analysis,
    "health.check": health_fields,
}


def add_compat_fields(method: str, data: Any) -> Any:
    """``data`` with the documents' fields for ``method`` added (a new dict; cached answers
    stay as they were), or ``data`` itself when the method has none or failed to shape."""
    extend = _BY_METHOD.get(method)
    if extend is None or not isinstance(data, dict) or "analysis" in data:
        return data
    return extend(data)

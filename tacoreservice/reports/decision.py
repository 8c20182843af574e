"""What a person reads first about a decision: the summary block, the data's age, and the
levels checked against the action.

Shared by the analysis report (Markdown, HTML, PDF), ``tacore analyze`` and the dashboard's
analysis page (through the API), so all three say the same thing the same way.

Sizes: ``position_size_pct`` is the share of a portfolio's equity, ``target_exposure`` the
share of the capital given to one name (the single-name cap, 20 %). The rating is the tier
nearest to the exposure (BUY 100 %, OVERWEIGHT 75 %, HOLD 50 %, UNDERWEIGHT 25 %, SELL 0 %),
so a HOLD keeps about half a position by design, and has no take-profit.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

__all__ = [
    "DAILY_STALE_DAYS",
    "data_age_days",
    "fmt_price",
    "level_notes",
    "role_title",
    "stale_warning",
    "summary_rows",
]

# A daily bar older than this (a long weekend plus a holiday) means the data is not current.
DAILY_STALE_DAYS = 5
ROLE_ORDER = (
    "market_analyst",
    "fundamentals_analyst",
    "news_analyst",
    "sentiment_analyst",
    "bull_researcher",
    "bear_researcher",
    "research_manager",
    "trader",
    "aggressive_risk_analyst",
    "neutral_risk_analyst",
    "conservative_risk_analyst",
    "portfolio_manager",
)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def fmt_price(value: Any, missing: str = "none") -> str:
    """A price rounded as a quote board shows it: 2 decimals, 4 below 1, 6 below 0.01."""
    x = _num(value)
    if x is None:
        return missing
    digits = 2 if abs(x) >= 1 else 4 if abs(x) >= 0.01 else 6
    return f"{x:,.{digits}f}"


def _distance(level: Any, entry: Any) -> str:
    x, e = _num(level), _num(entry)
    if x is None or e is None or e == 0:
        return ""
    return f" ({(x / e - 1) * 100:+.1f} %)"


def role_title(role: str) -> str:
    return role.replace("_", " ").capitalize()


def data_age_days(decision: dict[str, Any], today: date | None = None) -> int | None:
    as_of = str(decision.get("as_of") or "")[:10]
    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        return None
    return ((today or date.today()) - day).days


def stale_warning(decision: dict[str, Any], today: date | None = None) -> str | None:
    """A warning when the decision's data ends well before today, else None."""
    age = data_age_days(decision, today)
    if age is None or age <= DAILY_STALE_DAYS:
        return None
    return (
        f"Stale data: the last bar is {str(decision.get('as_of'))[:10]}, {age:,} days before "
        f"today. This is the decision for that day, not for today; use a live data provider "
        f"(market_data.provider) for a current one."
    )


def level_notes(decision: dict[str, Any]) -> list[str]:
    """What the levels and the size mean for this action, and anything inconsistent."""
    action = str(decision.get("action") or "").upper()
    rating = str(decision.get("rating") or "").upper()
    entry = _num(decision.get("price"))
    stop, target = _num(decision.get("stop_loss")), _num(decision.get("target_price"))
    take = _num(decision.get("take_profit"))
    notes: list[str] = []
    if rating == "HOLD":
        notes.append(
            "HOLD keeps about half a position (the tier nearest to the sized exposure); it sets "
            "no take-profit."
        )
    if target is None and decision.get("expected_return") == 0:
        notes.append("No target: the forecast is exactly flat.")
    if entry is not None:
        if action == "BUY":
            if stop is not None and stop >= entry:
                notes.append(f"Inconsistent: the stop {fmt_price(stop)} is not below the entry.")
            if take is not None and take <= entry:
                notes.append(
                    f"Inconsistent: the take-profit {fmt_price(take)} is not above the entry."
                )
        elif action == "SELL":
            if stop is not None and stop <= entry:
                notes.append(f"Inconsistent: the stop {fmt_price(stop)} is not above the entry.")
            if take is not None and take >= entry:
                notes.append(
                    f"Inconsistent: the take-profit {fmt_price(take)} is not below the entry."
                )
    size = _num(decision.get("position_size_pct"))
    if action == "SELL" and size:
        notes.append(f"A SELL holding {size:.1f} % of equity: the size is what stays held.")
    return notes


def _model(decision: dict[str, Any]) -> str:
    raw = decision.get("model")
    model: dict[str, Any] = raw if isinstance(raw, dict) else {}
    engine = str(decision.get("engine") or model.get("engine") or "?")
    parts = [engine + (f" v{model['version']}" if model.get("version") else "")]
    for key in ("quick_model", "deep_model", "name"):
        if model.get(key):
            parts.append(str(model[key]))
    cal: dict[str, Any] | None = (
        model["calibration"] if isinstance(model.get("calibration"), dict) else None
    )
    if cal:
        window = cal.get("window") or []
        span = f", window {window[0]} .. {window[-1]}" if len(window) == 2 else ""
        parts.append(
            f"{str(cal.get('market', '')).upper()} calibration fitted {cal.get('fit_day')}"
            f" ({cal.get('source', cal.get('status', ''))}{span})"
        )
    return "; ".join(parts)


def summary_rows(decision: dict[str, Any], today: date | None = None) -> list[tuple[str, str]]:
    """The summary block: (label, value) pairs, in the order a trader reads them."""
    entry = decision.get("price")
    conf = _num(decision.get("confidence"))
    horizon = decision.get("horizon_bars")
    confidence = "none" if conf is None else f"{conf * 100:.0f} %"
    if conf is not None and horizon:
        confidence += f" (calibrated chance the next {horizon} bars go its way)"
    take = decision.get("take_profit")
    if take is None and str(decision.get("rating")).upper() == "HOLD":
        take_text = "none (HOLD)"
    else:
        take_text = fmt_price(take) + _distance(take, entry)
    size = _num(decision.get("position_size_pct"))
    exposure = _num(decision.get("target_exposure"))
    size_text = "none" if size is None else f"{size:.1f} % of equity"
    if exposure is not None:
        size_text += f" ({exposure * 100:.0f} % of the single-name cap)"
    risk = _num(decision.get("risk_score"))
    age = data_age_days(decision, today)
    as_of = str(decision.get("as_of") or "?")[:10]
    data_text = as_of if age is None else f"{as_of} ({age:,} days old)"
    return [
        ("Rating", str(decision.get("rating") or "?")),
        ("Action", str(decision.get("action") or "?")),
        ("Confidence", confidence),
        ("Entry", fmt_price(entry) + f" (close of {as_of})"),
        (
            "Stop",
            fmt_price(decision.get("stop_loss")) + _distance(decision.get("stop_loss"), entry),
        ),
        (
            "Target",
            fmt_price(decision.get("target_price"))
            + _distance(decision.get("target_price"), entry),
        ),
        ("Take profit", take_text),
        ("Position size", size_text),
        ("Risk score", "none" if risk is None else f"{risk:.0f} / 100"),
        ("Engine and model", _model(decision)),
        ("Data", data_text),
    ]

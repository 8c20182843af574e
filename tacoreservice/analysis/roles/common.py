"""What every role shares: names, units, the rating scale and number formatting.

Units: the forecast's ``s`` (and every analyst ``score``) is an expected return over the
model's horizon in units of the symbol's volatility over that horizon (an expected Sharpe for
the month); exposures are fractions of the capital given to the instrument (0 flat, 1 fully
invested); ``position_size_pct`` is a share of a whole portfolio's equity.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "ANALYSTS",
    "ANALYST_ROLE",
    "HOLD_NO_TAKE_PROFIT",
    "MAX_POSITION_PCT",
    "RATINGS",
    "RATING_EXPOSURE",
    "RoleOutput",
    "STANCE_THRESHOLD",
    "action_for_rating",
    "rating_for_exposure",
    "stance_for_score",
]

RoleOutput = dict[str, Any]

ANALYSTS: tuple[str, ...] = ("market", "fundamentals", "news", "sentiment")
ANALYST_ROLE: dict[str, str] = {a: f"{a}_analyst" for a in ANALYSTS}
RATINGS: tuple[str, ...] = ("BUY", "OVERWEIGHT", "HOLD", "UNDERWEIGHT", "SELL")

# The five tiers are holdings relative to a neutral half: BUY means fully invested, HOLD half,
# SELL out. The portfolio manager names the tier nearest to the exposure it sizes, so a rating
# and its size never disagree.
RATING_EXPOSURE: dict[str, float] = {
    "BUY": 1.0,
    "OVERWEIGHT": 0.75,
    "HOLD": 0.5,
    "UNDERWEIGHT": 0.25,
    "SELL": 0.0,
}
# A fully invested single name is at most this share of a portfolio (diversification cap):
# ``position_size_pct = exposure x MAX_POSITION_PCT``.
MAX_POSITION_PCT = 20.0
# An analyst whose evidence moves the forecast by less than a hundredth of a monthly sigma has
# no stance worth the name.
STANCE_THRESHOLD = 0.01
HOLD_NO_TAKE_PROFIT = (
    "HOLD enters no new trade, so there is no take-profit; the stop protects the position held"
)


def stance_for_score(score: float) -> str:
    if score >= STANCE_THRESHOLD:
        return "bullish"
    if score <= -STANCE_THRESHOLD:
        return "bearish"
    return "neutral"


def rating_for_exposure(exposure: float) -> str:
    """The tier whose exposure is nearest (ties go to the smaller holding)."""
    best = "SELL"
    for rating in ("SELL", "UNDERWEIGHT", "HOLD", "OVERWEIGHT", "BUY"):
        if abs(RATING_EXPOSURE[rating] - exposure) < abs(RATING_EXPOSURE[best] - exposure):
            best = rating
    return best


def action_for_rating(rating: str) -> str:
    return {"BUY": "BUY", "OVERWEIGHT": "BUY", "HOLD": "HOLD"}.get(rating, "SELL")


# --- formatting -----------------------------------------------------------------------------


def clip(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


def num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def rnd(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd) + 0.0  # no "-0.0" in replies


def price_round(x: float | None) -> float | None:
    if x is None:
        return None
    # Enough significant digits for a penny stock and for BTC alike.
    nd = 2 if abs(x) >= 1000 else 4 if abs(x) >= 1 else 6
    return round(float(x), nd)


def pct(x: float | None, nd: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:+.{nd}f}%"


def level(x: float | None) -> str:
    """An unsigned fraction as a percentage (volatility, not a return)."""
    return "n/a" if x is None else f"{x * 100:.0f}%"


def fmt(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"


def section(ev: dict[str, Any], key: str) -> dict[str, Any]:
    value = ev.get(key)
    return value if isinstance(value, dict) else {}


def reasons_for(ev: dict[str, Any], what: str) -> list[str]:
    return [str(m.get("why")) for m in ev.get("missing") or [] if m.get("what") == what]


def ic_text(ic: dict[str, Any] | None) -> str:
    """A signal's measured record, as the reports quote it."""
    if not ic or ic.get("mean") is None:
        months = (ic or {}).get("months") or 0
        return f"no IC record yet ({months} month{'s' if months != 1 else ''})"
    if ic.get("kind") == "timing":
        return f"timing IC {ic['mean']:+.3f} over {ic['months']} months (with the market's return)"
    t = ic.get("t")
    return (
        f"IC {ic['mean']:+.3f} over {ic['months']} months"
        + (f" (t {t:+.1f}" if t is not None else " (t n/a")
        + f", positive in {ic['positive']:.0%})"
    )

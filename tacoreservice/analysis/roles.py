"""The quant roles of the TradingAgents graph: pure functions of the evidence and earlier roles.

Each role returns a plain dict (a *role output*) with its structured figures, a markdown
``report`` and an ``evidence`` dict of exactly the numbers it used (an analyst whose figures
exist but may not be used, such as fundamentals from after as_of, lists them there under
``figures_not_used`` with ``used: false`` and the reason). Nothing here reads data:
every figure is derived from :func:`tacoreservice.analysis.evidence.compute_evidence`'s answer,
and where that answer has ``None`` (too little history, no fundamentals, no news feed) the
role says so and that piece carries no weight. The weights and thresholds below are the whole
model; each says why it has its value.

Flow (graph.py drives it): analysts -> bull/bear turns for N rounds -> research manager ->
trader -> aggressive/neutral/conservative turns for M rounds -> portfolio manager.

Units: returns, volatilities and drawdowns in the evidence are fractions (0.12 = 12 %);
``atr_pct`` is a percentage of price, as in the evidence.
"""

from __future__ import annotations

import math
from typing import Any

from tacoreservice.analysis.evidence import fundamentals_usable

__all__ = [
    "ANALYSTS",
    "ANALYST_ROLE",
    "ANALYST_WEIGHTS",
    "HOLD_NO_TAKE_PROFIT",
    "RATINGS",
    "RoleOutput",
    "action_for_rating",
    "aggressive_turn",
    "analyst",
    "bear_turn",
    "bull_turn",
    "conservative_turn",
    "fundamentals_analyst",
    "market_analyst",
    "neutral_turn",
    "news_analyst",
    "portfolio_manager",
    "rating_for_score",
    "research_manager",
    "sentiment_analyst",
    "stance_for_score",
    "trade_levels",
    "trader",
]

RoleOutput = dict[str, Any]

ANALYSTS: tuple[str, ...] = ("market", "fundamentals", "news", "sentiment")
ANALYST_ROLE: dict[str, str] = {a: f"{a}_analyst" for a in ANALYSTS}
RATINGS: tuple[str, ...] = ("BUY", "OVERWEIGHT", "HOLD", "UNDERWEIGHT", "SELL")

# --- analyst weights ----------------------------------------------------------------------
# The share of the investment view each analyst may carry when it has data. Price/volume is
# the only point-in-time evidence in the offline data, so the technical analyst leads;
# fundamentals come next; news and sentiment get a smaller voice because, when a feed exists,
# they are noisy and short-lived. An analyst without data carries zero weight (the others
# are not scaled up: the missing share lowers confidence instead, see `coverage`).
# Fundamentals count only when they were known at as_of (point-in-time, or a snapshot dated
# on or before the last bar, see `evidence.fundamentals_usable`); the bundled ones are one
# snapshot taken after the price files end, so they carry no weight at any bundled as_of.
ANALYST_WEIGHTS: dict[str, float] = {
    "market": 0.40,
    "fundamentals": 0.30,
    "news": 0.15,
    "sentiment": 0.15,
}

# --- technical signals (weights sum to 1 within the analyst) -------------------------------
# Trend carries most: regime (price vs long averages) is the most persistent price signal.
W_TREND = 0.30
W_MACD = 0.15
W_RSI = 0.15
W_BOLLINGER = 0.05  # overlaps RSI as a stretch measure, so it only tips the balance
W_DMI = 0.10
W_VOLUME = 0.10
W_RELATIVE = 0.15
# A MACD histogram of a quarter ATR is a decisive reading; scaling by ATR makes the signal
# comparable across a $10 stock and BTC.
MACD_HIST_ATR_SCALE = 0.25
# Wilder's levels: above 70 overbought (bearish), below 30 oversold (bullish), reaching full
# strength 20 points beyond (90 / 10). Between 30 and 70 RSI is read as momentum: a small
# tent peaking at +/-0.2 at 60 / 40 and zero at 50 and at the levels, so the score is
# continuous and changes sign exactly where the reading's meaning does.
RSI_OVERBOUGHT = 70.0
RSI_OVERSOLD = 30.0
RSI_EXTREME_SPAN = 20.0
RSI_MOMENTUM_MAX = 0.2
# Wilder: ADX above 25 marks a trending market; directional signals are scaled up to it.
ADX_TRENDING = 25.0
# Above-average volume (1.5x the 20-bar mean) confirms the OBV direction fully.
VOLUME_CONFIRM_RATIO = 1.5
# A 20 % 3-month return, or 10 % ahead of the benchmark, is a full-strength reading.
RETURN_3M_FULL = 0.20
EXCESS_3M_FULL = 0.10

# --- fundamental signals (weights sum to 1 within the analyst) -----------------------------
W_PE = 0.35
W_PS = 0.20
W_PB = 0.15
W_EPS = 0.20
W_DIVIDEND = 0.10
# S&P 500 trailing P/E has mostly ranged 15-30 over recent decades (median ~ 20-22): 22 reads
# as fair, 7 as a full-strength cheap reading and 37 as a full-strength expensive one.
PE_FAIR, PE_SPAN = 22.0, 15.0
# Index price/sales has ranged ~1.5-3; price/book ~2.5-4.5 (wider: asset-light firms).
PS_FAIR, PS_SPAN = 3.0, 3.0
PB_FAIR, PB_SPAN = 3.0, 5.0
# A positive EPS is the baseline of a going concern (+0.5); a loss is a full negative.
EPS_PROFIT_SCORE, EPS_LOSS_SCORE = 0.5, -1.0
# A 4 % yield is a full-strength income signal; no dividend is neutral (growth companies).
DIVIDEND_FULL = 0.04

# --- stance / debate / research manager ---------------------------------------------------
STANCE_THRESHOLD = 0.10  # |score| below this reads as neutral
POINTS_PER_TURN = 2  # each researcher brings its next two strongest points per round
# The research manager's 3-way call uses the same line as the OVERWEIGHT/UNDERWEIGHT tier so
# that the trader and the portfolio manager never disagree on direction for no reason.
RM_BUY_THRESHOLD = 0.10
RM_SELL_THRESHOLD = -0.10

# --- trader ---------------------------------------------------------------------------------
# Stops at 2 ATR sit outside ordinary bar-to-bar noise (Turtle/Chandelier stops use 2-3 ATR).
STOP_ATR_MULTIPLE = 2.0
# Take profit at twice the risk: a 2:1 reward/risk needs only a 34 % hit rate to break even.
REWARD_TO_RISK = 2.0
# Target = price x (1 + score x one-sigma move over a month of trading, 21 of 252 days).
TARGET_HORIZON_YEARS = 21.0 / 252.0
# HOLD enters no new trade: it keeps (half) the position held, protected by the long stop, and
# has no take-profit, since there is no trade direction to take a profit in.
HOLD_NO_TAKE_PROFIT = (
    "HOLD enters no new trade, so there is no take-profit; the stop protects the position held"
)
# Lose at most 1 % of equity if the stop is hit (the common retail risk budget) and never put
# more than 20 % of equity in one name.
RISK_PER_TRADE_PCT = 1.0
MAX_POSITION_PCT = 20.0
# Exposure by rating as a share of the risk-budget size: the five tiers are portfolio weights
# relative to a neutral (HOLD) weight of one half.
TIER_EXPOSURE: dict[str, float] = {
    "BUY": 1.0,
    "OVERWEIGHT": 0.75,
    "HOLD": 0.5,
    "UNDERWEIGHT": 0.25,
    "SELL": 0.0,
}
ACTION_EXPOSURE: dict[str, float] = {"BUY": 1.0, "HOLD": 0.5, "SELL": 0.0}

# --- risk debate ----------------------------------------------------------------------------
# 25 % annualised volatility is a typical large-cap stock's; above it the neutral debater
# scales exposure down (volatility targeting), below it up.
VOL_TARGET = 0.25
NEUTRAL_MIN, NEUTRAL_MAX = 0.5, 1.5
# The aggressive debater may at most add half again to the size.
AGGRESSIVE_MAX_BOOST = 0.5
# The conservative debater tolerates a 20 % one-year drawdown (a normal equity year); each
# haircut is capped at one half and the product floored at a quarter of the size.
DRAWDOWN_TOLERANCE = 0.20
HAIRCUT_CAP = 0.5
CONSERVATIVE_FLOOR = 0.25
# Final multiplier: the neutral (volatility-targeting) view anchors; the conservative view
# outweighs the aggressive one because losses compound asymmetrically (-50 % needs +100 %).
RISK_DEBATE_WEIGHTS: dict[str, float] = {"aggressive": 0.25, "neutral": 0.40, "conservative": 0.35}
# Risk score components are scaled to [0, 1] by these ceilings: 80 % volatility (a crypto
# year), a 50 % drawdown, beta 2 and a 5 % average daily range all read as maximal risk.
RISK_CEILINGS: dict[str, float] = {
    "volatility": 0.80,
    "drawdown": 0.50,
    "beta": 2.0,
    "atr_pct": 5.0,
}

# --- portfolio manager ----------------------------------------------------------------------
# A bullish view is worth less when the ride is rough: at risk score 1 it is halved. A
# bearish view is not softened by risk (risk argues for less exposure, not more).
RISK_PENALTY = 0.5
# Rating tiers on the risk-adjusted score (bounded by [-1, 1]; composite scores of real
# symbols mostly fall within +/-0.6).
RATING_THRESHOLDS: tuple[tuple[float, str], ...] = (
    (0.35, "BUY"),
    (0.10, "OVERWEIGHT"),
    (-0.10, "HOLD"),
    (-0.35, "UNDERWEIGHT"),
)


# --- helpers --------------------------------------------------------------------------------


def _clip(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def _price(x: float | None) -> float | None:
    if x is None:
        return None
    # Enough significant digits for a penny stock and for BTC alike.
    nd = 2 if abs(x) >= 1000 else 4 if abs(x) >= 1 else 6
    return round(float(x), nd)


def _pct(x: float | None, nd: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:+.{nd}f}%"


def _level(x: float | None) -> str:
    """An unsigned fraction as a percentage (volatility, not a return)."""
    return "n/a" if x is None else f"{x * 100:.0f}%"


def _f(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"


def _sign(x: float) -> float:
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


def stance_for_score(score: float) -> str:
    if score >= STANCE_THRESHOLD:
        return "bullish"
    if score <= -STANCE_THRESHOLD:
        return "bearish"
    return "neutral"


def _signal(
    name: str, weight: float, score: float, text: str, values: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "weight": weight,
        "score": round(_clip(score), 4) + 0.0,  # no "-0.0" in reports
        "text": text,
        "values": values,
    }


def _section(ev: dict[str, Any], key: str) -> dict[str, Any]:
    value = ev.get(key)
    return value if isinstance(value, dict) else {}


def _missing_reasons(ev: dict[str, Any], *words: str) -> list[str]:
    out = []
    for item in ev.get("missing") or []:
        what = str(item.get("what", ""))
        if any(w in what.lower() for w in words):
            out.append(f"{what}: {item.get('why', '')}".strip(": "))
    return out


def _combine(signals: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Weighted score, agreement and signal coverage of an analyst's signals."""
    total_w = sum(s["weight"] for s in signals)
    if total_w <= 0:
        return 0.0, 0.0, 0.0
    score = sum(s["weight"] * s["score"] for s in signals) / total_w
    abs_sum = sum(s["weight"] * abs(s["score"]) for s in signals)
    agreement = abs(sum(s["weight"] * s["score"] for s in signals)) / abs_sum if abs_sum else 0.0
    return score, agreement, total_w


def _analyst_output(
    analyst_name: str,
    ev: dict[str, Any],
    weight: float,
    signals: list[dict[str, Any]],
    all_weight: float,
    notes: list[str],
    extra_evidence: dict[str, Any] | None = None,
) -> RoleOutput:
    role = ANALYST_ROLE[analyst_name]
    score, agreement, used_w = _combine(signals)
    # Confidence: how much of the analyst's planned evidence was there, times how much of it
    # pointed the same way.
    confidence = (used_w / all_weight) * agreement if all_weight else 0.0
    stance = stance_for_score(score)
    used = {s["name"]: s["values"] for s in signals}
    if extra_evidence:
        used.update(extra_evidence)
    title = analyst_name.capitalize()
    lines = [
        f"## {title} analyst: {stance} ({score:+.2f})",
        "",
        f"{ev.get('name') or ev.get('symbol')} ({ev.get('symbol')}), as of {ev.get('as_of')}, "
        f"price {_f(_num(ev.get('price')))} {ev.get('currency') or ''}".rstrip(),
        "",
        "| signal | reading | score | weight |",
        "| --- | --- | ---: | ---: |",
    ]
    for s in signals:
        lines.append(f"| {s['name']} | {s['text']} | {s['score']:+.2f} | {s['weight']:.2f} |")
    lines += [
        "",
        f"Weighted score {score:+.2f}; signals agree {agreement:.0%}; "
        f"{used_w / all_weight:.0%} of this analyst's signal weight had data; "
        f"confidence {confidence:.2f}; weight in the view {weight:.2f}.",
    ]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return {
        "role": role,
        "analyst": analyst_name,
        "available": True,
        "weight": round(weight, 4),
        "score": round(score, 4),
        "confidence": round(confidence, 4),
        "stance": stance,
        "signals": signals,
        "notes": notes,
        "report": "\n".join(lines),
        "evidence": used,
    }


def _no_data(
    analyst_name: str,
    ev: dict[str, Any],
    why: str,
    not_used: dict[str, Any] | None = None,
) -> RoleOutput:
    """The output of an analyst without usable data: no view, no weight, no figures.

    ``not_used`` holds figures that exist but may not be used (e.g. a fundamentals snapshot
    from after as_of); they are kept in ``evidence`` next to ``used: false`` and
    ``why_not_used``, and never reach a score, a signal or the report.
    """
    role = ANALYST_ROLE[analyst_name]
    report = (
        f"## {analyst_name.capitalize()} analyst: no data\n\n"
        f"No {analyst_name} data for {ev.get('symbol')} as of {ev.get('as_of')}: {why}\n\n"
        "This analyst forms no view and carries no weight in the decision; no figures were "
        "substituted."
    )
    return {
        "role": role,
        "analyst": analyst_name,
        "available": False,
        "why_unavailable": why,
        "weight": 0.0,
        "score": 0.0,
        "confidence": 0.0,
        "stance": "no_data",
        "signals": [],
        "notes": [why],
        "report": report,
        "evidence": {} if not not_used else {"used": False, "why_not_used": why, **not_used},
    }


# --- analysts -------------------------------------------------------------------------------


def market_analyst(ev: dict[str, Any]) -> RoleOutput:
    """Technical view: trend, momentum, stretch, direction, volume and relative performance."""
    t = _section(ev, "technical")
    ret = _section(ev, "returns")
    rs = _section(ev, "relative_strength")
    price = _num(ev.get("price"))
    if price is None or not t:
        return _no_data("market", ev, "no price bars at or before as_of")
    signals: list[dict[str, Any]] = []
    notes: list[str] = []

    sma50, sma200 = _num(t.get("sma_50")), _num(t.get("sma_200"))
    comps, parts = [], []
    if sma50 is not None:
        comps.append(_sign(price - sma50))
        parts.append(f"price {'above' if price > sma50 else 'below'} SMA50 {_f(sma50)}")
    if sma200 is not None:
        comps.append(_sign(price - sma200))
        parts.append(f"{'above' if price > sma200 else 'below'} SMA200 {_f(sma200)}")
    if sma50 is not None and sma200 is not None:
        comps.append(_sign(sma50 - sma200))
        parts.append("SMA50 > SMA200" if sma50 > sma200 else "SMA50 < SMA200")
    if comps:
        signals.append(
            _signal(
                "trend",
                W_TREND,
                sum(comps) / len(comps),
                "; ".join(parts),
                {"price": price, "sma_50": sma50, "sma_200": sma200, "trend": t.get("trend")},
            )
        )
    else:
        notes.append("trend: fewer than 50 bars, no moving averages")

    hist, atr = _num(t.get("macd_hist")), _num(t.get("atr_14"))
    if hist is not None and atr:
        signals.append(
            _signal(
                "macd",
                W_MACD,
                hist / (MACD_HIST_ATR_SCALE * atr),
                f"histogram {hist:+.3f} ({hist / atr:+.2f} ATR)",
                {
                    "macd": _num(t.get("macd")),
                    "macd_signal": _num(t.get("macd_signal")),
                    "macd_hist": hist,
                    "atr_14": atr,
                },
            )
        )
    else:
        notes.append("macd: not enough bars for MACD/ATR")

    rsi = _num(t.get("rsi_14"))
    if rsi is not None:
        if rsi > RSI_OVERBOUGHT:
            s = -(rsi - RSI_OVERBOUGHT) / RSI_EXTREME_SPAN
            text = f"RSI {rsi:.1f} overbought"
        elif rsi < RSI_OVERSOLD:
            s = (RSI_OVERSOLD - rsi) / RSI_EXTREME_SPAN
            text = f"RSI {rsi:.1f} oversold"
        else:
            half = (RSI_OVERBOUGHT - RSI_OVERSOLD) / 4.0  # 10 points: 50 -> 60 -> 70
            peak = 50.0 + half if rsi >= 50 else 50.0 - half
            s = math.copysign(RSI_MOMENTUM_MAX * (1 - abs(rsi - peak) / half), rsi - 50.0)
            text = f"RSI {rsi:.1f} ({'positive' if rsi >= 50 else 'negative'} momentum)"
        signals.append(_signal("rsi", W_RSI, s, text, {"rsi_14": rsi}))
    else:
        notes.append("rsi: not enough bars")

    pct_b = _num(t.get("bb_pct_b"))
    if pct_b is not None:
        if pct_b > 1:
            s, text = -(pct_b - 1), f"%B {pct_b:.2f}: above the upper band (stretched)"
        elif pct_b < 0:
            s, text = -pct_b, f"%B {pct_b:.2f}: below the lower band (stretched)"
        else:
            s, text = 0.0, f"%B {pct_b:.2f}: inside the bands"
        signals.append(
            _signal(
                "bollinger",
                W_BOLLINGER,
                s,
                text,
                {
                    "bb_pct_b": pct_b,
                    "bb_upper": _num(t.get("bb_upper")),
                    "bb_lower": _num(t.get("bb_lower")),
                },
            )
        )

    pdi, mdi, adx = _num(t.get("plus_di")), _num(t.get("minus_di")), _num(t.get("adx_14"))
    if pdi is not None and mdi is not None and adx is not None and (pdi + mdi) > 0:
        s = (pdi - mdi) / (pdi + mdi) * min(1.0, adx / ADX_TRENDING)
        signals.append(
            _signal(
                "dmi",
                W_DMI,
                s,
                f"+DI {pdi:.1f} vs -DI {mdi:.1f}, ADX {adx:.1f}"
                + (" (trending)" if adx >= ADX_TRENDING else " (weak trend)"),
                {"plus_di": pdi, "minus_di": mdi, "adx_14": adx},
            )
        )

    obv_slope, vol_ratio = _num(t.get("obv_slope_20")), _num(t.get("volume_ratio"))
    if obv_slope is not None:
        confirm = min(1.0, (vol_ratio or 0.0) / VOLUME_CONFIRM_RATIO)
        s = _sign(obv_slope) * (0.5 + 0.5 * confirm)
        signals.append(
            _signal(
                "volume",
                W_VOLUME,
                s,
                f"OBV {'rising' if obv_slope > 0 else 'falling' if obv_slope < 0 else 'flat'}"
                f" over 20 bars, volume {_f(vol_ratio)}x its 20-bar mean",
                {"obv_slope_20": obv_slope, "volume_ratio": vol_ratio},
            )
        )
    else:
        notes.append("volume: no OBV slope (volume data missing or too short)")

    r3m, ex3m = _num(ret.get("3m")), _num(rs.get("excess_return_3m"))
    rel_parts, rel_scores = [], []
    if r3m is not None:
        rel_scores.append(_clip(r3m / RETURN_3M_FULL))
        rel_parts.append(f"3-month return {_pct(r3m)}")
    if ex3m is not None:
        rel_scores.append(_clip(ex3m / EXCESS_3M_FULL))
        rel_parts.append(f"{_pct(ex3m)} vs {rs.get('benchmark')}")
    if rel_scores:
        signals.append(
            _signal(
                "relative_performance",
                W_RELATIVE,
                sum(rel_scores) / len(rel_scores),
                ", ".join(rel_parts),
                {"return_3m": r3m, "excess_return_3m": ex3m, "benchmark": rs.get("benchmark")},
            )
        )
    else:
        notes.append("relative performance: under 3 months of history")

    notes += _missing_reasons(ev, "technical", "sma", "rsi", "macd", "volume", "return")
    context = {
        "pct_from_52w_high": _num(t.get("pct_from_52w_high")),
        "atr_pct": _num(t.get("atr_pct")),
        "return_1m": _num(ret.get("1m")),
        "return_1y": _num(ret.get("1y")),
    }
    if not signals:
        # Nothing to score: an analyst with no signal has no view, and must not lend its
        # weight to the coverage (and so to the confidence) of the decision.
        n = ev.get("bars")
        return _no_data(
            "market",
            ev,
            f"{n} {ev.get('timeframe')} bar{'' if n == 1 else 's'} up to {ev.get('as_of')}: "
            "too short for any indicator",
        )
    all_w = W_TREND + W_MACD + W_RSI + W_BOLLINGER + W_DMI + W_VOLUME + W_RELATIVE
    return _analyst_output(
        "market", ev, ANALYST_WEIGHTS["market"], signals, all_w, notes, {"context": context}
    )


def fundamentals_analyst(ev: dict[str, Any]) -> RoleOutput:
    """Valuation and profitability from the fundamentals, when the data has them and they
    were known at as_of (``evidence.fundamentals_usable``); otherwise no data, no weight."""
    f = ev.get("fundamentals")
    if not isinstance(f, dict):
        reasons = _reasons_for(ev, "fundamentals")
        kind = ev.get("kind")
        if reasons:
            why = "; ".join(reasons)
        elif kind == "crypto":
            why = "a crypto asset has no company fundamentals (no earnings, book or sales)"
        elif kind in ("etf", "index"):
            why = f"an {kind} has no company fundamentals in the data"
        else:
            why = "the data source has no fundamentals for this symbol"
        return _no_data("fundamentals", ev, why)

    pe, eps = _num(f.get("pe_ratio")), _num(f.get("eps"))
    ps, pb, dy = (
        _num(f.get("price_to_sales")),
        _num(f.get("price_to_book")),
        _num(f.get("dividend_yield")),
    )
    if all(v is None for v in (pe, eps, ps, pb, dy)):
        industry = f.get("industry") or f.get("sector") or f.get("sub_industry")
        what = f"classification only (industry: {industry})" if industry else "no figures"
        why = f"{what}; no valuation or earnings figures in the data" + (
            f" ({f['note']})" if f.get("note") else ""
        )
        return _no_data("fundamentals", ev, why)

    # No look-ahead: figures not yet known at as_of are not scored at all (not discounted).
    usable, why_not = fundamentals_usable(f, ev.get("as_of"))
    if not usable:
        return _no_data(
            "fundamentals",
            ev,
            str(why_not),
            {
                "snapshot_date": f.get("snapshot_date"),
                "point_in_time": f.get("point_in_time"),
                "figures_not_used": {
                    "pe_ratio": pe,
                    "eps": eps,
                    "price_to_sales": ps,
                    "price_to_book": pb,
                    "dividend_yield": dy,
                    "market_cap": _num(f.get("market_cap")),
                    "snapshot_price": _num(f.get("price")),
                },
            },
        )

    signals: list[dict[str, Any]] = []
    if eps is not None:
        s = EPS_PROFIT_SCORE if eps > 0 else EPS_LOSS_SCORE
        signals.append(
            _signal(
                "earnings",
                W_EPS,
                s,
                f"EPS {eps:.2f} ({'profitable' if eps > 0 else 'loss'})",
                {"eps": eps},
            )
        )
    # Valuation multiples: cheaper than fair scores positive, one span away is full strength.
    valuations = (
        ("pe", W_PE, PE_FAIR, PE_SPAN, pe, "pe_ratio", "P/E {:.1f} vs fair " + f"{PE_FAIR:.0f}"),
        ("price_to_sales", W_PS, PS_FAIR, PS_SPAN, ps, "price_to_sales", "P/S {:.2f}"),
        ("price_to_book", W_PB, PB_FAIR, PB_SPAN, pb, "price_to_book", "P/B {:.2f}"),
    )
    for name, weight, fair, span, value, key, text in valuations:
        if value is not None and value > 0:
            signals.append(
                _signal(name, weight, (fair - value) / span, text.format(value), {key: value})
            )
    if dy is not None:
        signals.append(
            _signal(
                "dividend_yield",
                W_DIVIDEND,
                _clip(dy / DIVIDEND_FULL, 0.0, 1.0),
                f"dividend yield {dy * 100:.2f}%",
                {"dividend_yield": dy},
            )
        )

    weight = ANALYST_WEIGHTS["fundamentals"]
    notes: list[str] = []
    snapshot = f.get("snapshot_date")
    if f.get("point_in_time") is not True:
        notes.append(
            f"figures are a snapshot dated {snapshot}, on or before as_of {ev.get('as_of')}: "
            "known at as_of, though possibly stale"
        )
    snap_price = _num(f.get("price"))
    if snap_price is not None:
        notes.append(
            f"ratios are at the snapshot price {_f(snap_price)}; the price at as_of is "
            f"{_f(_num(ev.get('price')))}"
        )
    extra = {
        "snapshot_date": snapshot,
        "point_in_time": f.get("point_in_time"),
        "sector": f.get("sector") or f.get("industry"),
        "market_cap": _num(f.get("market_cap")),
        "snapshot_price": snap_price,
    }
    all_w = W_PE + W_PS + W_PB + W_EPS + W_DIVIDEND
    return _analyst_output("fundamentals", ev, weight, signals, all_w, notes, extra)


def _reasons_for(ev: dict[str, Any], what: str) -> list[str]:
    return [str(m.get("why")) for m in ev.get("missing") or [] if m.get("what") == what]


def news_analyst(ev: dict[str, Any]) -> RoleOutput:
    why = "; ".join(_reasons_for(ev, "news")) or (
        "no news source is configured: the market data provider supplies prices and "
        "fundamentals only (offline), so there are no headlines to read"
    )
    return _no_data("news", ev, why)


def sentiment_analyst(ev: dict[str, Any]) -> RoleOutput:
    why = "; ".join(_reasons_for(ev, "sentiment")) or (
        "no social-media or sentiment feed is configured (offline); sentiment is not "
        "inferred from prices, which the market analyst already covers"
    )
    return _no_data("sentiment", ev, why)


_ANALYST_FNS = {
    "market": market_analyst,
    "fundamentals": fundamentals_analyst,
    "news": news_analyst,
    "sentiment": sentiment_analyst,
}


def analyst(name: str, ev: dict[str, Any]) -> RoleOutput:
    return _ANALYST_FNS[name](ev)


# --- investment debate ----------------------------------------------------------------------


def debate_points(
    analysts: dict[str, RoleOutput],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Every analyst signal as a bull or bear point, strongest first, and the normaliser.

    A point's strength is analyst weight x signal weight x |score| over the total weight of
    the signals that had data, so all bull strengths minus all bear strengths is exactly the
    weighted composite score of the analysts.
    """
    norm = sum(
        out["weight"] * s["weight"]
        for out in analysts.values()
        if out.get("available")
        for s in out.get("signals", [])
    )
    bull: list[dict[str, Any]] = []
    bear: list[dict[str, Any]] = []
    if norm <= 0:
        return bull, bear, 0.0
    for name in ANALYSTS:  # fixed order keeps ties deterministic
        out = analysts.get(name)
        if not out or not out.get("available"):
            continue
        for s in out.get("signals", []):
            if s["score"] == 0:
                continue
            point = {
                "analyst": name,
                "signal": s["name"],
                "text": s["text"],
                "score": s["score"],
                "strength": round(out["weight"] * s["weight"] * abs(s["score"]) / norm, 6),
            }
            (bull if s["score"] > 0 else bear).append(point)
    bull.sort(key=lambda p: -p["strength"])
    bear.sort(key=lambda p: -p["strength"])
    return bull, bear, norm


def _turn(
    side: str,
    analysts: dict[str, RoleOutput],
    transcript: list[RoleOutput],
    round_no: int,
) -> RoleOutput:
    bull, bear, _ = debate_points(analysts)
    own, other = (bull, bear) if side == "bull" else (bear, bull)
    start = (round_no - 1) * POINTS_PER_TURN
    points = own[start : start + POINTS_PER_TURN]
    role = f"{side}_researcher"
    opp_side = "bear" if side == "bull" else "bull"
    said_by_opp = [p for t in transcript if t.get("side") == opp_side for p in t.get("points", [])]
    own_so_far = sum(
        p["strength"] for t in transcript if t.get("side") == side for p in t.get("points", [])
    )
    own_so_far += sum(p["strength"] for p in points)
    opp_so_far = sum(p["strength"] for p in said_by_opp)
    lines = [f"### {side.capitalize()} researcher, round {round_no}", ""]
    if points:
        for p in points:
            lines.append(
                f"- {p['text']} ({p['analyst']} {p['signal']}, weight {p['strength']:.3f})"
            )
    elif not own:
        lines.append(f"- No {side}ish evidence in the analysts' reports; nothing to argue.")
    else:
        lines.append("- No further evidence; rests on the points already made.")
    rebuttal = None
    if said_by_opp:
        target = max(said_by_opp, key=lambda p: p["strength"])
        rebuttal = {"signal": target["signal"], "strength": target["strength"]}
        lines.append(
            f"- Rebuttal: the {opp_side}s' strongest point ({target['text']}) weighs "
            f"{target['strength']:.3f}; the {side} case so far weighs {own_so_far:.3f} "
            f"against their {opp_so_far:.3f}."
        )
    strength = sum(p["strength"] for p in points)
    return {
        "role": role,
        "side": side,
        "round": round_no,
        "points": points,
        "rebuttal": rebuttal,
        "strength": round(strength, 6),
        "report": "\n".join(lines),
        "evidence": {p["signal"]: p["strength"] for p in points},
    }


def bull_turn(
    ev: dict[str, Any], analysts: dict[str, RoleOutput], transcript: list[RoleOutput], round_no: int
) -> RoleOutput:
    return _turn("bull", analysts, transcript, round_no)


def bear_turn(
    ev: dict[str, Any], analysts: dict[str, RoleOutput], transcript: list[RoleOutput], round_no: int
) -> RoleOutput:
    return _turn("bear", analysts, transcript, round_no)


def coverage(analysts: dict[str, RoleOutput]) -> float:
    """Share of the selected analysts' weight that had usable data."""
    planned = sum(ANALYST_WEIGHTS[a] for a in analysts)
    had = sum(out["weight"] for out in analysts.values() if out.get("available"))
    return had / planned if planned else 0.0


def research_manager(
    ev: dict[str, Any], analysts: dict[str, RoleOutput], transcript: list[RoleOutput]
) -> RoleOutput:
    """Weighs the points the debate actually raised; the balance is the investment score."""
    bull_total = sum(t["strength"] for t in transcript if t.get("side") == "bull")
    bear_total = sum(t["strength"] for t in transcript if t.get("side") == "bear")
    score = _clip(bull_total - bear_total)
    cov = coverage(analysts)
    raised = bull_total + bear_total
    if score >= RM_BUY_THRESHOLD:
        rec = "BUY"
        support = bull_total / raised if raised else 0.0
    elif score <= RM_SELL_THRESHOLD:
        rec = "SELL"
        support = bear_total / raised if raised else 0.0
    else:
        rec = "HOLD"
        support = 1.0 - abs(bull_total - bear_total) / raised if raised else 0.0
    # Confidence: the share of the weight raised in the debate that supports the call, times
    # the share of the planned analyst weight that had data at all.
    confidence = support * cov
    rounds = max((t.get("round", 0) for t in transcript), default=0)
    lines = [
        f"## Research manager: {rec} (score {score:+.2f})",
        "",
        f"After {rounds} round(s) the bull case weighs {bull_total:.3f} and the bear case "
        f"{bear_total:.3f} (weights are shares of all analyst evidence).",
    ]
    best_bull = [p for t in transcript if t.get("side") == "bull" for p in t["points"]][:1]
    best_bear = [p for t in transcript if t.get("side") == "bear" for p in t["points"]][:1]
    if best_bull:
        lines.append(
            f"Strongest bull point: {best_bull[0]['text']} ({best_bull[0]['strength']:.3f})."
        )
    if best_bear:
        lines.append(
            f"Strongest bear point: {best_bear[0]['text']} ({best_bear[0]['strength']:.3f})."
        )
    if not raised:
        lines.append("No analyst produced evidence, so there is no view: HOLD with no confidence.")
    lines.append(
        f"Data coverage {cov:.0%} of the planned analyst weight; confidence {confidence:.2f}."
    )
    return {
        "role": "research_manager",
        "recommendation": rec,
        "score": round(score, 4),
        "confidence": round(confidence, 4),
        "bull_total": round(bull_total, 6),
        "bear_total": round(bear_total, 6),
        "coverage": round(cov, 4),
        "report": "\n".join(lines),
        "evidence": {
            "bull_total": round(bull_total, 6),
            "bear_total": round(bear_total, 6),
            "coverage": round(cov, 4),
            "rounds": rounds,
        },
    }


# --- trader ---------------------------------------------------------------------------------


def trade_levels(ev: dict[str, Any], direction: str, score: float) -> dict[str, float | None]:
    """Target, stop and take-profit for a direction from price, ATR and volatility.

    Every level agrees with the direction:

    * BUY: stop < price < take-profit, target above the price;
    * SELL (an exit or short): take-profit < price < stop, target below the price;
    * HOLD: keeps the position held, so the stop is a long's (below the price) and there is
      no take-profit (``None``, see ``HOLD_NO_TAKE_PROFIT``); the target is the one-month
      expectation ``price x (1 + score x sigma)``, on whichever side the (small) score puts it.

    The target moves by ``|score|`` one-month sigmas in the direction's sense, so a caller
    passing a score of the other sign (an LLM's action with the quant score) still gets a
    target on the right side. A level that would not be a positive price is ``None``.
    """
    price = _num(ev.get("price"))
    atr = _num(_section(ev, "technical").get("atr_14"))
    vol = _num(_section(ev, "risk").get("volatility_20d_ann"))
    out: dict[str, float | None] = {
        "target_price": None,
        "stop_loss": None,
        "take_profit": None,
        "stop_distance_pct": None,
    }
    if price is None or price <= 0:
        return out
    sign = -1.0 if direction == "SELL" else 1.0
    if vol is not None:
        move = vol * math.sqrt(TARGET_HORIZON_YEARS)
        shift = score * move if direction == "HOLD" else sign * abs(score) * move
        target = price * (1.0 + shift)
        out["target_price"] = _price(target) if target > 0 else None
    if atr:
        risk = STOP_ATR_MULTIPLE * atr
        stop = price - sign * risk
        out["stop_loss"] = _price(stop) if stop > 0 else None
        if direction != "HOLD":
            take = price + sign * REWARD_TO_RISK * risk
            out["take_profit"] = _price(take) if take > 0 else None
        out["stop_distance_pct"] = _r(risk / price * 100.0)
    return out


def risk_budget_size(stop_distance_pct: float | None) -> float | None:
    """Position (% of equity) that loses RISK_PER_TRADE_PCT at the stop, capped."""
    if not stop_distance_pct:
        return None
    return min(MAX_POSITION_PCT, RISK_PER_TRADE_PCT / stop_distance_pct * 100.0)


def trader(ev: dict[str, Any], rm: RoleOutput) -> RoleOutput:
    action = rm["recommendation"]
    score = float(rm["score"])
    levels = trade_levels(ev, action, score)
    base = risk_budget_size(levels["stop_distance_pct"])
    size = None if base is None else base * ACTION_EXPOSURE[action]
    price = _num(ev.get("price"))
    lines = [f"## Trader: {action}", ""]
    lines.append(
        f"Entry reference {_f(price)}; target {_f(levels['target_price'])} "
        f"(score {score:+.2f} x one-month one-sigma move); stop {_f(levels['stop_loss'])} "
        f"({STOP_ATR_MULTIPLE:g} ATR); "
        + (
            f"no take profit ({HOLD_NO_TAKE_PROFIT})."
            if action == "HOLD"
            else f"take profit {_f(levels['take_profit'])} ({REWARD_TO_RISK:g}:1 reward/risk)."
        )
    )
    if base is None:
        lines.append("No ATR (too few bars): no stop, and so no risk-based position size.")
    else:
        lines.append(
            f"Risk budget {RISK_PER_TRADE_PCT:g}% of equity at a {levels['stop_distance_pct']:.2f}% "
            f"stop gives {base:.1f}% of equity (cap {MAX_POSITION_PCT:g}%); exposure for "
            f"{action}: {size:.1f}%."
        )
    return {
        "role": "trader",
        "action": action,
        "score": round(score, 4),
        "target_price": levels["target_price"],
        "stop_loss": levels["stop_loss"],
        "take_profit": levels["take_profit"],
        "position_size_pct": _r(size, 2),
        "base_size_pct": _r(base, 2),
        "report": "\n".join(lines),
        "evidence": {
            "price": price,
            "atr_14": _num(_section(ev, "technical").get("atr_14")),
            "volatility_20d_ann": _num(_section(ev, "risk").get("volatility_20d_ann")),
            "stop_distance_pct": levels["stop_distance_pct"],
            "research_score": score,
        },
    }


# --- risk debate ----------------------------------------------------------------------------


def _risk_inputs(ev: dict[str, Any]) -> dict[str, float | None]:
    t, risk, rs = _section(ev, "technical"), _section(ev, "risk"), _section(ev, "relative_strength")
    return {
        "volatility": _num(risk.get("volatility_20d_ann")),
        "max_drawdown_1y": _num(risk.get("max_drawdown_1y")),
        "beta": _num(rs.get("beta_1y")),
        "atr_pct": _num(t.get("atr_pct")),
        "adx": _num(t.get("adx_14")),
        "rsi": _num(t.get("rsi_14")),
        "excess_return_3m": _num(rs.get("excess_return_3m")),
    }


def risk_score(ev: dict[str, Any]) -> tuple[float | None, dict[str, float]]:
    """Mean of the available risk components, each scaled to [0, 1] by its ceiling."""
    x = _risk_inputs(ev)
    comps: dict[str, float] = {}
    if x["volatility"] is not None:
        comps["volatility"] = _clip(x["volatility"] / RISK_CEILINGS["volatility"], 0, 1)
    if x["max_drawdown_1y"] is not None:
        comps["drawdown"] = _clip(abs(x["max_drawdown_1y"]) / RISK_CEILINGS["drawdown"], 0, 1)
    if x["beta"] is not None:
        comps["beta"] = _clip(x["beta"] / RISK_CEILINGS["beta"], 0, 1)
    if x["atr_pct"] is not None:
        comps["atr_pct"] = _clip(x["atr_pct"] / RISK_CEILINGS["atr_pct"], 0, 1)
    if not comps:
        return None, comps
    return sum(comps.values()) / len(comps), {k: round(v, 4) for k, v in comps.items()}


def _aggressive_args(ev: dict[str, Any], rm: RoleOutput) -> list[tuple[float, str, str]]:
    x = _risk_inputs(ev)
    args: list[tuple[float, str, str]] = []
    if x["adx"] is not None:
        args.append(
            (_clip((x["adx"] - 20.0) / 20.0, 0, 1), "adx", f"ADX {x['adx']:.1f}: trend strength")
        )
    args.append(
        (
            _clip(float(rm["confidence"]), 0, 1),
            "confidence",
            f"research confidence {rm['confidence']:.2f}",
        )
    )
    if x["excess_return_3m"] is not None:
        args.append(
            (
                _clip(x["excess_return_3m"] / EXCESS_3M_FULL, 0, 1),
                "excess_return_3m",
                f"3-month excess return {_pct(x['excess_return_3m'])}",
            )
        )
    args.sort(key=lambda a: -a[0])
    return args


def _conservative_args(ev: dict[str, Any]) -> list[tuple[float, str, str]]:
    x = _risk_inputs(ev)
    args: list[tuple[float, str, str]] = []
    if x["volatility"] is not None and x["volatility"] > 0:
        h = _clip((x["volatility"] - VOL_TARGET) / x["volatility"], 0, HAIRCUT_CAP)
        args.append(
            (h, "volatility", f"volatility {_level(x['volatility'])} vs {VOL_TARGET:.0%} target")
        )
    if x["max_drawdown_1y"] is not None:
        h = _clip(abs(x["max_drawdown_1y"]) - DRAWDOWN_TOLERANCE, 0, HAIRCUT_CAP)
        args.append((h, "drawdown", f"1-year max drawdown {_pct(x['max_drawdown_1y'], 0)}"))
    if x["beta"] is not None:
        h = _clip((x["beta"] - 1.0) / 2.0, 0, HAIRCUT_CAP)
        args.append((h, "beta", f"beta {x['beta']:.2f}"))
    if x["rsi"] is not None:
        h = _clip((x["rsi"] - RSI_OVERBOUGHT) / (100 - RSI_OVERBOUGHT), 0, HAIRCUT_CAP)
        args.append((h, "rsi", f"RSI {x['rsi']:.1f}"))
    args.sort(key=lambda a: -a[0])
    return args


def _risk_turn_output(
    stance: str, round_no: int, multiplier: float, used: list[tuple[float, str, str]], text: str
) -> RoleOutput:
    role = f"{stance}_risk_analyst"
    lines = [
        f"### {stance.capitalize()} risk analyst, round {round_no}: size x{multiplier:.2f}",
        "",
    ]
    lines += [f"- {label} ({value:.2f})" for value, _k, label in used]
    if text:
        lines.append(f"- {text}")
    return {
        "role": role,
        "stance": stance,
        "round": round_no,
        "size_multiplier": round(multiplier, 4),
        "report": "\n".join(lines),
        "evidence": {k: round(v, 4) for v, k, _l in used},
    }


def aggressive_turn(
    ev: dict[str, Any],
    trade: RoleOutput,
    rm: RoleOutput,
    transcript: list[RoleOutput],
    round_no: int,
) -> RoleOutput:
    """Argues for more size from trend strength, conviction and outperformance; one more
    argument each round, strongest first."""
    used = [a for a in _aggressive_args(ev, rm) if a[0] > 0][:round_no]
    # Arguments combine like independent supports, 1 - prod(1 - s): each one adds, none can
    # push past the cap, and the order they are heard in does not matter.
    doubt = 1.0
    for s, _k, _l in used:
        doubt *= 1.0 - s
    m = 1.0 + AGGRESSIVE_MAX_BOOST * (1.0 - doubt)
    text = "" if used else "nothing in the data argues for more size; keeps the trader's size"
    return _risk_turn_output("aggressive", round_no, m, used, text)


def conservative_turn(
    ev: dict[str, Any],
    trade: RoleOutput,
    rm: RoleOutput,
    transcript: list[RoleOutput],
    round_no: int,
) -> RoleOutput:
    """Cuts size for volatility, drawdown, beta and overbought RSI; one more haircut a round."""
    used = [a for a in _conservative_args(ev) if a[0] > 0][:round_no]
    m = 1.0
    for h, _k, _l in used:
        m *= 1.0 - h
    m = max(CONSERVATIVE_FLOOR, m)
    text = "" if used else "no risk measure is above its tolerance; keeps the trader's size"
    return _risk_turn_output("conservative", round_no, m, used, text)


def neutral_turn(
    ev: dict[str, Any],
    trade: RoleOutput,
    rm: RoleOutput,
    transcript: list[RoleOutput],
    round_no: int,
) -> RoleOutput:
    """Volatility targeting in round 1; later rounds move to the middle of the last proposals."""
    vol = _risk_inputs(ev)["volatility"]
    used: list[tuple[float, str, str]] = []
    if vol:
        vt = _clip(VOL_TARGET / vol, NEUTRAL_MIN, NEUTRAL_MAX)
        used.append(
            (
                vt,
                "vol_target",
                f"volatility targeting: {VOL_TARGET:.0%} target / {_level(vol)} realised",
            )
        )
    else:
        vt = 1.0
    prev = [
        t for t in transcript if t.get("round") == round_no - 1 and t.get("stance") != "neutral"
    ]
    text = ""
    if round_no > 1 and prev:
        m = (vt + sum(t["size_multiplier"] for t in prev)) / (1 + len(prev))
        text = "meets the other two halfway: " + ", ".join(
            f"{t['stance']} x{t['size_multiplier']:.2f}" for t in prev
        )
    else:
        m = vt
    return _risk_turn_output("neutral", round_no, m, used, text)


RISK_TURNS = {
    "aggressive": aggressive_turn,
    "neutral": neutral_turn,
    "conservative": conservative_turn,
}


# --- portfolio manager ----------------------------------------------------------------------


def rating_for_score(score: float) -> str:
    for threshold, rating in RATING_THRESHOLDS:
        if score >= threshold if rating in ("BUY", "OVERWEIGHT") else score > threshold:
            return rating
    return "SELL"


def action_for_rating(rating: str) -> str:
    return {"BUY": "BUY", "OVERWEIGHT": "BUY", "HOLD": "HOLD"}.get(rating, "SELL")


def portfolio_manager(
    ev: dict[str, Any],
    analysts: dict[str, RoleOutput],
    rm: RoleOutput,
    trade: RoleOutput,
    risk_transcript: list[RoleOutput],
) -> RoleOutput:
    rscore, comps = risk_score(ev)
    last_round = max((t["round"] for t in risk_transcript), default=0)
    final = {t["stance"]: t for t in risk_transcript if t["round"] == last_round}
    wsum = sum(RISK_DEBATE_WEIGHTS[s] for s in final)
    multiplier = (
        sum(RISK_DEBATE_WEIGHTS[s] * float(t["size_multiplier"]) for s, t in final.items()) / wsum
        if wsum
        else 1.0
    )
    score = float(rm["score"])
    adjusted = score * (1.0 - RISK_PENALTY * rscore) if score > 0 and rscore is not None else score
    rating = rating_for_score(adjusted)
    action = action_for_rating(rating)
    levels = trade_levels(ev, action, adjusted)
    base = risk_budget_size(levels["stop_distance_pct"])
    size = (
        None if base is None else min(MAX_POSITION_PCT, base * TIER_EXPOSURE[rating] * multiplier)
    )
    confidence = float(rm["confidence"])

    used_analysts = [a for a, o in analysts.items() if o.get("available")]
    without = [a for a, o in analysts.items() if not o.get("available")]
    reasons = [
        f"Research score {score:+.2f} ({rm['recommendation']}, confidence {confidence:.2f})"
        + (
            f", risk-adjusted to {adjusted:+.2f} at risk score {rscore:.2f}"
            if rscore is not None and adjusted != score
            else ""
        )
        + f" -> {rating}.",
    ]
    available = [a for a in analysts.values() if a.get("available")]
    # The same strength the debate uses: analyst weight x signal weight x |score|.
    signals = sorted(
        (
            s | {"analyst": a["analyst"], "strength": a["weight"] * s["weight"] * abs(s["score"])}
            for a in available
            for s in a.get("signals", [])
        ),
        key=lambda s: -s["strength"],
    )[:3]
    if signals:
        reasons.append(
            "Main evidence: " + "; ".join(f"{s['text']} ({s['analyst']})" for s in signals) + "."
        )
    if not used_analysts:
        reasons.append(
            "No usable evidence: no analyst had data to score, so there is no view "
            "(HOLD with no confidence)."
        )
    if without:
        reasons.append("No data, no weight: " + ", ".join(without) + ".")
    reasons.append(
        f"Risk debate size multiplier x{multiplier:.2f} "
        + "("
        + ", ".join(f"{s} x{t['size_multiplier']:.2f}" for s, t in final.items())
        + ")."
    )
    reasoning = " ".join(reasons)
    lines = [
        f"## Portfolio manager: {rating} ({action})",
        "",
        reasoning,
        "",
        f"Target {_f(levels['target_price'])}, stop {_f(levels['stop_loss'])}, take profit "
        f"{_f(levels['take_profit'])}, position {_f(size)}% of equity, risk score "
        f"{_f(rscore)}.",
    ]
    if action == "HOLD":
        lines.append(f"No take profit: {HOLD_NO_TAKE_PROFIT}.")
    return {
        "role": "portfolio_manager",
        "rating": rating,
        "action": action,
        "score": round(adjusted, 4),
        "confidence": round(confidence, 4),
        "target_price": levels["target_price"],
        "stop_loss": levels["stop_loss"],
        "take_profit": levels["take_profit"],
        "position_size_pct": _r(size, 2),
        "risk_score": _r(rscore),
        "size_multiplier": round(multiplier, 4),
        "reasoning": reasoning,
        "analysts_used": used_analysts,
        "report": "\n".join(lines),
        "evidence": {
            "research_score": score,
            "risk_adjusted_score": round(adjusted, 4),
            "risk_components": comps,
            "size_multiplier": round(multiplier, 4),
            "base_size_pct": _r(base, 2),
            "tier_exposure": TIER_EXPOSURE[rating],
        },
    }

"""The analysts: what the evidence says, each figure with what it has been worth.

The market analyst reads the calibrated forecast (:mod:`tacoreservice.analysis.forecast`):
every signal with its reading, its measured rank IC over the calibration's months, the weight
the calibration gave it and its contribution to the forecast. Nothing here is weighed by
hand: a signal's voice is its fitted weight, measured on the market's history before the
decision date. An analyst whose data is missing says so and carries nothing.

Fundamentals are shown when they were known at as_of but carry no weight: there is no
point-in-time history of them to measure their worth on, and an unmeasured weight would be
a guess. News and sentiment have no source offline.
"""

from __future__ import annotations

import math
from typing import Any

from tacoreservice.analysis.evidence import fundamentals_usable
from tacoreservice.analysis.roles.common import (
    ANALYST_ROLE,
    RoleOutput,
    fmt,
    ic_text,
    level,
    num,
    pct,
    reasons_for,
    rnd,
    section,
    stance_for_score,
)

__all__ = [
    "analyst",
    "fundamentals_analyst",
    "market_analyst",
    "news_analyst",
    "sentiment_analyst",
    "signal_reading",
]


def _no_data(
    analyst_name: str, ev: dict[str, Any], why: str, not_used: dict[str, Any] | None = None
) -> RoleOutput:
    """An analyst without usable data: no view, no weight, no figures.

    ``not_used`` holds figures that exist but may not be used (e.g. a fundamentals snapshot
    from after as_of); they stay in ``evidence`` beside ``used: false`` and never reach a
    score or the report.
    """
    report = (
        f"## {analyst_name.capitalize()} analyst: no data\n\n"
        f"No {analyst_name} data for {ev.get('symbol')} as of {ev.get('as_of')}: {why}\n\n"
        "This analyst forms no view and carries no weight in the decision; no figures were "
        "substituted."
    )
    return {
        "role": ANALYST_ROLE[analyst_name],
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


def _rank_text(x: Any) -> str:
    x = num(x)
    return "" if x is None else f", rank {x:+.2f}"


def _magnitude(x: float) -> str:
    for div, unit in (
        (1e12, " trillion"),
        (1e9, " billion"),
        (1e6, " million"),
        (1e3, " thousand"),
    ):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


def signal_reading(sig: dict[str, Any], ev: dict[str, Any]) -> str:
    """A signal's value in words (the rank is among the market's symbols, -1 to +1)."""
    name, v, rank = sig["name"], num(sig.get("value")), _rank_text(sig.get("input"))
    bench = section(ev, "relative_strength").get("benchmark") or "the benchmark"
    if v is None:
        return "n/a"
    texts = {
        "mom_12_1": lambda: f"12-1 month return {pct(v)}{rank}",
        "tsmom": lambda: f"12-month return {v:+.2f} volatilities",
        "high_52w": lambda: f"{pct(v)} from the 52-week high{rank}",
        "rev_1m": lambda: f"1-month return {pct(-v)}{rank}",
        "trend": lambda: f"price {v:+.2f} volatilities from its SMA200",
        "ma_cross": lambda: f"SMA50 {v:+.2f} volatilities from SMA200",
        "low_vol": lambda: f"60-day volatility {level(-v)}{rank}",
        "vol_regime": lambda: f"20-day volatility {1.0 - v:.2f}x the 1-year",
        "rs_bench": lambda: f"3-month return {pct(v)} vs {bench}{rank}",
        "rs_sector": lambda: f"3-month return {pct(v)} vs its sector peers{rank}",
        "market": lambda: f"{bench} {v:+.2f} volatilities from its SMA200",
        "vol_trend": lambda: f"volume {math.exp(v):.2f}x its 120-bar mean{rank}",
        "liquidity": lambda: f"traded value {_magnitude(math.exp(v))} a day{rank}",
        "rsi": lambda: f"RSI14 {50.0 + 50.0 * v:.1f}",
        "macd": lambda: f"MACD histogram {v:+.2f} ATR",
    }
    fn = texts.get(name)
    return fn() if fn else f"{v:+.4f}"


def market_analyst(ev: dict[str, Any]) -> RoleOutput:
    """The calibrated view: every signal with its measured record, weight and contribution."""
    f = section(ev, "forecast")
    price = num(ev.get("price"))
    if price is None:
        return _no_data("market", ev, "no price bars at or before as_of")
    if not f.get("available"):
        return _no_data("market", ev, str(f.get("why") or "no forecast"))
    market = str(f.get("market", "")).upper()
    signals: list[dict[str, Any]] = []
    notes: list[str] = []
    model_weight = 0.0
    had_weight = 0.0
    for sig in f.get("signals") or []:
        weight = num(sig.get("weight"))
        if weight is None:
            continue  # not in this month's model (too little coverage in its window)
        model_weight += abs(weight)
        if not sig.get("available") or num(sig.get("contribution")) is None:
            notes.append(f"{sig['label']}: not computable for this symbol on {f.get('day')}")
            continue
        had_weight += abs(weight)
        signals.append(
            {
                "name": sig["name"],
                "family": sig["family"],
                "label": sig["label"],
                "weight": weight,
                "score": rnd(float(sig["contribution"]), 5),
                "z": sig.get("z"),
                "ic": sig.get("ic"),
                "text": signal_reading(sig, ev),
                "values": {"value": sig.get("value"), "input": sig.get("input")},
            }
        )
    score = sum(float(s["score"]) for s in signals)
    coverage = had_weight / model_weight if model_weight else 0.0
    cal = section(f, "calibration")
    stance = stance_for_score(score)
    lines = [
        f"## Market analyst: {stance} ({score:+.3f})",
        "",
        f"{ev.get('name') or ev.get('symbol')} ({ev.get('symbol')}), as of {ev.get('as_of')}, "
        f"price {fmt(price)} {ev.get('currency') or ''}".rstrip(),
        "",
        f"Signals as the {market} model weighs them: fitted at {cal.get('fit_day')} on "
        f"{cal.get('months')} month-ends of {cal.get('symbols')} symbols "
        f"({(cal.get('window') or ['?'])[0]} .. {(cal.get('window') or ['?', '?'])[-1]}), "
        "each weight measured before this date. Contributions are in monthly volatilities.",
        "",
        "| signal | reading | measured record | weight | contribution |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for s in sorted(signals, key=lambda s: -abs(float(s["score"]))):
        lines.append(
            f"| {s['label']} | {s['text']} | {ic_text(s['ic'])} | {s['weight']:+.3f} | "
            f"{float(s['score']):+.4f} |"
        )
    lines += [
        "",
        f"Signals add up to {score:+.4f}; {coverage:.0%} of the model's weight had data.",
    ]
    context = _technical_context(ev)
    if context:
        lines += ["", f"Context (described, not weighed): {context}."]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return {
        "role": ANALYST_ROLE["market"],
        "analyst": "market",
        "available": True,
        "weight": 1.0,
        "score": round(score, 5),
        "confidence": round(coverage, 4),
        "coverage": round(coverage, 4),
        "stance": stance,
        "signals": signals,
        "notes": notes,
        "report": "\n".join(lines),
        "evidence": {
            "signals": {s["name"]: s["values"] | {"contribution": s["score"]} for s in signals},
            "calibration_fit_day": cal.get("fit_day"),
        },
    }


def _technical_context(ev: dict[str, Any]) -> str:
    t = section(ev, "technical")
    parts = []
    if num(t.get("rsi_14")) is not None:
        parts.append(f"RSI14 {t['rsi_14']:.1f}")
    if num(t.get("adx_14")) is not None:
        parts.append(f"ADX {t['adx_14']:.1f}")
    if t.get("trend"):
        parts.append(f"trend {t['trend']}")
    if t.get("ma_cross"):
        parts.append(f"recent {t['ma_cross'].replace('_', ' ')}")
    if num(t.get("pct_from_52w_high")) is not None:
        parts.append(f"{t['pct_from_52w_high']:+.1f}% from the 52-week high")
    return ", ".join(parts)


def fundamentals_analyst(ev: dict[str, Any]) -> RoleOutput:
    """Valuation figures known at as_of, described but not weighed (see the module doc)."""
    f = ev.get("fundamentals")
    if not isinstance(f, dict):
        reasons = reasons_for(ev, "fundamentals")
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
    figures = {
        "pe_ratio": num(f.get("pe_ratio")),
        "eps": num(f.get("eps")),
        "price_to_sales": num(f.get("price_to_sales")),
        "price_to_book": num(f.get("price_to_book")),
        "dividend_yield": num(f.get("dividend_yield")),
    }
    if all(v is None for v in figures.values()):
        industry = f.get("industry") or f.get("sector") or f.get("sub_industry")
        what = f"classification only (industry: {industry})" if industry else "no figures"
        why = f"{what}; no valuation or earnings figures in the data" + (
            f" ({f['note']})" if f.get("note") else ""
        )
        return _no_data("fundamentals", ev, why)
    usable, why_not = fundamentals_usable(f, ev.get("as_of"))
    if not usable:
        return _no_data(
            "fundamentals",
            ev,
            str(why_not),
            {
                "snapshot_date": f.get("snapshot_date"),
                "point_in_time": f.get("point_in_time"),
                "figures_not_used": figures
                | {"market_cap": num(f.get("market_cap")), "snapshot_price": num(f.get("price"))},
            },
        )
    names = {
        "pe_ratio": "P/E",
        "eps": "EPS",
        "price_to_sales": "P/S",
        "price_to_book": "P/B",
        "dividend_yield": "dividend yield",
    }
    shown = [
        f"{names[k]} {v * 100:.2f}%" if k == "dividend_yield" else f"{names[k]} {v:.2f}"
        for k, v in figures.items()
        if v is not None
    ]
    why_unweighted = (
        "no point-in-time history of fundamentals exists in the data to measure what they "
        "have been worth, so they are shown, not weighed"
    )
    notes = [why_unweighted]
    if f.get("point_in_time") is not True:
        notes.append(
            f"figures are a snapshot dated {f.get('snapshot_date')}, on or before as_of "
            f"{ev.get('as_of')}: known at as_of, though possibly stale"
        )
    report = "\n".join(
        [
            "## Fundamentals analyst: described, not weighed",
            "",
            f"{ev.get('symbol')} as of {ev.get('as_of')}: " + ", ".join(shown) + ".",
            "",
            *[f"- {n}" for n in notes],
        ]
    )
    return {
        "role": ANALYST_ROLE["fundamentals"],
        "analyst": "fundamentals",
        "available": True,
        "weight": 0.0,
        "score": 0.0,
        "confidence": 0.0,
        "stance": "neutral",
        "signals": [],
        "notes": notes,
        "report": report,
        "evidence": figures
        | {
            "snapshot_date": f.get("snapshot_date"),
            "point_in_time": f.get("point_in_time"),
            "sector": f.get("sector") or f.get("industry"),
            "weighed": False,
        },
    }


def news_analyst(ev: dict[str, Any]) -> RoleOutput:
    why = "; ".join(reasons_for(ev, "news")) or (
        "no news source is configured: the market data provider supplies prices and "
        "fundamentals only (offline), so there are no headlines to read"
    )
    return _no_data("news", ev, why)


def sentiment_analyst(ev: dict[str, Any]) -> RoleOutput:
    why = "; ".join(reasons_for(ev, "sentiment")) or (
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

"""The investment debate and its judge.

The bull and the bear argue from the analysts' signals: every signal that pushed the forecast
up is a bull point, every one that pushed it down a bear point, strongest first, each quoted
with its measured record ("12-1 month momentum has had IC +0.047 over 24 months on US stocks,
weight +0.032"). The market's own base rate (the calibration's drift) is a point too. Each
round a researcher brings its next ``POINTS_PER_TURN`` points and answers the other side's
strongest one.

The research manager weighs all of the evidence, not only what the rounds got to: the
forecast is the sum of every contribution and the drift, so a shallower debate shortens the
transcript, never the judgement. Its call is the one the half-Kelly size of that forecast
implies (see :mod:`tacoreservice.analysis.roles.trading`), so the research view, the trader
and the portfolio manager cannot disagree on direction for no reason.
"""

from __future__ import annotations

import math
from typing import Any

from tacoreservice.analysis.roles.common import (
    ANALYSTS,
    RoleOutput,
    action_for_rating,
    clip,
    ic_text,
    num,
    rating_for_exposure,
    section,
)

__all__ = [
    "POINTS_PER_TURN",
    "bear_turn",
    "bull_turn",
    "call_confidence",
    "debate_points",
    "half_kelly",
    "p_up",
    "research_manager",
    "research_score",
]

POINTS_PER_TURN = 2
# How the researchers name a market's universe when they quote a signal's record.
UNIVERSE_NAMES: dict[str, str] = {"us": "US stocks", "cn": "A-shares", "crypto": "crypto pairs"}


def debate_points(
    analysts: dict[str, RoleOutput], ev: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Bull and bear points, strongest first, and their total strength.

    A point's strength is the absolute contribution of its signal to the forecast (in monthly
    volatilities); the drift of the market, when the forecast has one, is a point of its own.
    Bull strengths minus bear strengths is the forecast.
    """
    bull: list[dict[str, Any]] = []
    bear: list[dict[str, Any]] = []
    universe = UNIVERSE_NAMES.get(str(section(ev or {}, "forecast").get("market")), "its market")
    for name in ANALYSTS:  # fixed order keeps ties deterministic
        out = analysts.get(name)
        if not out or not out.get("available"):
            continue
        for s in out.get("signals", []):
            score = float(s["score"])
            if score == 0:
                continue
            point = {
                "analyst": name,
                "signal": s["name"],
                "text": f"{s['label']}: {s['text']}; on {universe} it has had "
                f"{ic_text(s.get('ic'))}, weight {float(s['weight']):+.3f}",
                "score": score,
                "strength": round(abs(score), 6),
            }
            (bull if score > 0 else bear).append(point)
    drift = _drift(ev)
    if drift:
        f = section(ev or {}, "forecast")
        cal = section(f, "calibration")
        point = {
            "analyst": "market",
            "signal": "drift",
            "text": f"base rate: the {str(f.get('market', '')).upper()} market's average month "
            f"over {cal.get('months')} months was {drift:+.3f} volatilities after shrinkage",
            "score": drift,
            "strength": round(abs(drift), 6),
        }
        (bull if drift > 0 else bear).append(point)
    bull.sort(key=lambda p: -p["strength"])
    bear.sort(key=lambda p: -p["strength"])
    total = sum(p["strength"] for p in bull) + sum(p["strength"] for p in bear)
    return bull, bear, total


def _drift(ev: dict[str, Any] | None) -> float:
    f = section(ev or {}, "forecast")
    return float(f["drift"]) if f.get("available") and num(f.get("drift")) is not None else 0.0


def _turn(
    side: str,
    ev: dict[str, Any],
    analysts: dict[str, RoleOutput],
    transcript: list[RoleOutput],
    round_no: int,
) -> RoleOutput:
    bull, bear, _ = debate_points(analysts, ev)
    own = bull if side == "bull" else bear
    start = (round_no - 1) * POINTS_PER_TURN
    points = own[start : start + POINTS_PER_TURN]
    opp_side = "bear" if side == "bull" else "bull"
    said_by_opp = [p for t in transcript if t.get("side") == opp_side for p in t.get("points", [])]
    own_so_far = sum(
        p["strength"] for t in transcript if t.get("side") == side for p in t.get("points", [])
    ) + sum(p["strength"] for p in points)
    opp_so_far = sum(p["strength"] for p in said_by_opp)
    lines = [f"### {side.capitalize()} researcher, round {round_no}", ""]
    if points:
        for p in points:
            lines.append(f"- {p['text']} (contribution {p['score']:+.4f})")
    elif not own:
        lines.append(f"- No {side}ish evidence in the analysts' reports; nothing to argue.")
    else:
        lines.append("- No further evidence; rests on the points already made.")
    rebuttal = None
    if said_by_opp:
        target = max(said_by_opp, key=lambda p: p["strength"])
        rebuttal = {"signal": target["signal"], "strength": target["strength"]}
        lines.append(
            f"- Rebuttal: the {opp_side}s' strongest point ({target['text']}) is worth "
            f"{target['strength']:.4f}; the {side} case so far is worth {own_so_far:.4f} "
            f"against their {opp_so_far:.4f}."
        )
    return {
        "role": f"{side}_researcher",
        "side": side,
        "round": round_no,
        "points": points,
        "rebuttal": rebuttal,
        "strength": round(sum(p["strength"] for p in points), 6),
        "report": "\n".join(lines),
        "evidence": {p["signal"]: p["strength"] for p in points},
    }


def bull_turn(
    ev: dict[str, Any], analysts: dict[str, RoleOutput], transcript: list[RoleOutput], round_no: int
) -> RoleOutput:
    return _turn("bull", ev, analysts, transcript, round_no)


def bear_turn(
    ev: dict[str, Any], analysts: dict[str, RoleOutput], transcript: list[RoleOutput], round_no: int
) -> RoleOutput:
    return _turn("bear", ev, analysts, transcript, round_no)


def research_score(ev: dict[str, Any], analysts: dict[str, RoleOutput]) -> float:
    """The forecast from the analysts' evidence: the drift plus every signal's contribution.

    Read from the signals, not from the analysts' own scores, so that an analyst whose view
    an LLM rewrote still brings the measured figures (the debate's points) and nothing else.
    """
    return _drift(ev) + sum(
        float(sig["score"])
        for out in analysts.values()
        if out.get("available")
        for sig in out.get("signals") or []
    )


def p_up(ev: dict[str, Any], s: float) -> float:
    """P(return over the horizon > 0) for a forecast ``s``: Phi(s / residual sd)."""
    f = section(ev, "forecast")
    sd = num(section(f, "calibration").get("residual_sd")) or 1.0
    return 0.5 * (1.0 + math.erf(s / sd / math.sqrt(2.0)))


def call_confidence(action: str, prob_up: float) -> float:
    """The calibrated chance that the return's sign agrees with ``action``: up for BUY, down
    for SELL, and for HOLD whichever side the forecast leans to."""
    if action == "BUY":
        return prob_up
    if action == "SELL":
        return 1.0 - prob_up
    return max(prob_up, 1.0 - prob_up)


def half_kelly(ev: dict[str, Any], s: float, fraction: float = 0.5) -> float | None:
    """``fraction`` of the Kelly exposure for a forecast ``s``, in [0, 1] (long only).

    Kelly for a normal return is mu / sigma^2 (annualised); with ``s`` in horizon
    volatilities that is ``s x sqrt(bars_per_year / horizon) / vol_ann``. None without a
    volatility.
    """
    f = section(ev, "forecast")
    vol = num(f.get("volatility_ann"))
    horizon = num(f.get("horizon_bars"))
    ppy = num(f.get("bars_per_year"))
    if not vol or not horizon or not ppy:
        return None
    kelly = s * math.sqrt(ppy / horizon) / vol
    return clip(fraction * kelly, 0.0, 1.0)


def research_manager(
    ev: dict[str, Any], analysts: dict[str, RoleOutput], transcript: list[RoleOutput]
) -> RoleOutput:
    """Weighs all the evidence into the forecast, and calls BUY, HOLD or SELL from it."""
    f = section(ev, "forecast")
    have = any(out.get("available") and out.get("weight") for out in analysts.values())
    # Without an analyst whose evidence is weighed there is no view, not even the base rate.
    s = research_score(ev, analysts) if f.get("available") and have else 0.0
    prob = p_up(ev, s) if f.get("available") and have else 0.5
    size = half_kelly(ev, s) if f.get("available") and have else None
    rec = action_for_rating(rating_for_exposure(size)) if size is not None else "HOLD"
    confidence = 0.0 if size is None else call_confidence(rec, prob)
    bull_total = sum(t["strength"] for t in transcript if t.get("side") == "bull")
    bear_total = sum(t["strength"] for t in transcript if t.get("side") == "bear")
    rounds = max((t.get("round", 0) for t in transcript), default=0)
    lines = [f"## Research manager: {rec} (forecast {s:+.3f} monthly volatilities)", ""]
    if size is None:
        why = f.get("why") or "no analyst had weighed evidence"
        lines.append(f"No calibrated evidence ({why}): no view, HOLD with no confidence.")
    else:
        lines += [
            f"After {rounds} round(s) the points raised weigh {bull_total:.4f} for the bulls "
            f"and {bear_total:.4f} for the bears; with everything the analysts found, the "
            f"forecast is {s:+.3f}: a {prob:.0%} chance of a positive month "
            f"(expected return {num(f.get('expected_return')) or 0.0:+.2%} at the model's "
            f"figures).",
            f"Half-Kelly exposure {size:.0%} of the capital for this name -> {rec}; "
            f"confidence {confidence:.2f} (the calibrated chance that the call's direction "
            "is right).",
        ]
    return {
        "role": "research_manager",
        "recommendation": rec,
        "score": round(clip(s), 4),
        "forecast": round(s, 5),
        "p_up": round(prob, 4),
        "confidence": round(confidence, 4),
        "bull_total": round(bull_total, 6),
        "bear_total": round(bear_total, 6),
        "report": "\n".join(lines),
        "evidence": {
            "forecast": round(s, 5),
            "p_up": round(prob, 4),
            "half_kelly": None if size is None else round(size, 4),
            "bull_total": round(bull_total, 6),
            "bear_total": round(bear_total, 6),
            "rounds": rounds,
        },
    }

"""The trader, the risk debate and the portfolio manager: from a forecast to a sized decision.

Size comes from the forecast, not from a table of tiers: the Kelly fraction of a normal
return with the forecast's mean and the symbol's volatility, ``mu / sigma^2``, is the growth-
optimal share of capital if the forecast is right. It is not known to be right, so:

* the aggressive analyst argues for full Kelly (the estimate taken at face value);
* the neutral analyst for half Kelly (about three quarters of full Kelly's growth at half its
  volatility, the usual practice when the edge is estimated);
* the conservative analyst for half Kelly of the forecast one standard error lower (the
  model's own uncertainty about it, from the calibration's posterior).

The portfolio manager sizes at the trader's half Kelly times the mean of the last round's
multipliers (equal voices: none of the three is favoured by hand), capped at fully invested
and floored at flat (long only). The rating is the tier nearest to that exposure
(BUY 1, OVERWEIGHT 0.75, HOLD 0.5, UNDERWEIGHT 0.25, SELL 0), so a rating and its size always
agree; confidence is the calibrated chance that the return's sign agrees with the action.
Because sizing scales with ``1 / volatility``, it is volatility targeting as well.

Levels: the target is ``price x (1 + expected return)`` over the horizon; the stop sits
``STOP_ATR_MULTIPLE`` ATRs away; the take-profit at ``REWARD_TO_RISK`` times that distance.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from tacoreservice.analysis.roles.common import (
    HOLD_NO_TAKE_PROFIT,
    MAX_POSITION_PCT,
    RATING_EXPOSURE,
    RoleOutput,
    action_for_rating,
    clip,
    fmt,
    level,
    num,
    pct,
    price_round,
    rating_for_exposure,
    rnd,
    section,
)
from tacoreservice.analysis.roles.debate import call_confidence, half_kelly, p_up

__all__ = [
    "REWARD_TO_RISK",
    "RISK_TURNS",
    "STOP_ATR_MULTIPLE",
    "portfolio_manager",
    "risk_score",
    "risk_turn",
    "trade_levels",
    "trader",
]

# Stops at 2 ATR sit outside ordinary bar-to-bar noise (Turtle/Chandelier stops use 2-3 ATR).
STOP_ATR_MULTIPLE = 2.0
# Take profit at twice the risk: a 2:1 reward/risk needs only a 34 % hit rate to break even.
REWARD_TO_RISK = 2.0
# Risk score components are scaled to [0, 1] by these ceilings: 80 % volatility (a crypto
# year), a 50 % drawdown, beta 2 and a 5 % average daily range all read as maximal risk. The
# score describes the ride; the size already accounts for volatility.
RISK_CEILINGS: dict[str, float] = {
    "volatility": 0.80,
    "drawdown": 0.50,
    "beta": 2.0,
    "atr_pct": 5.0,
}


def _move(ev: dict[str, Any]) -> float | None:
    """One volatility over the forecast's horizon, as a fraction of the price."""
    f = section(ev, "forecast")
    vol = num(f.get("volatility_ann")) or num(section(ev, "risk").get("volatility_20d_ann"))
    horizon = num(f.get("horizon_bars")) or 21.0
    ppy = num(f.get("bars_per_year")) or (365.0 if ev.get("market") == "crypto" else 252.0)
    return None if vol is None else vol * math.sqrt(horizon / ppy)


def trade_levels(ev: dict[str, Any], direction: str, score: float) -> dict[str, float | None]:
    """Target, stop and take-profit for a direction from price, ATR and the forecast.

    Every level agrees with the direction:

    * BUY: stop < price < take-profit, target above the price;
    * SELL (an exit or short): take-profit < price < stop, target below the price;
    * HOLD: keeps the position held, so the stop is a long's (below the price) and there is
      no take-profit (``None``, see ``HOLD_NO_TAKE_PROFIT``); the target is the expectation
      ``price x (1 + score x one horizon volatility)``, on whichever side the score puts it.

    The target moves by ``|score|`` horizon volatilities in the direction's sense, so a caller
    passing a score of the other sign (an LLM's action with the quant score) still gets a
    target on the right side. A level that would not be a positive price is ``None``, and so
    is the target of a forecast of exactly nothing.
    """
    price = num(ev.get("price"))
    atr = num(section(ev, "technical").get("atr_14"))
    move = _move(ev)
    out: dict[str, float | None] = {
        "target_price": None,
        "stop_loss": None,
        "take_profit": None,
        "stop_distance_pct": None,
    }
    if price is None or price <= 0:
        return out
    sign = -1.0 if direction == "SELL" else 1.0
    if move is not None and score != 0:  # no expected move, no target
        shift = score * move if direction == "HOLD" else sign * abs(score) * move
        target = price * (1.0 + shift)
        out["target_price"] = price_round(target) if target > 0 else None
    if atr:
        risk = STOP_ATR_MULTIPLE * atr
        stop = price - sign * risk
        out["stop_loss"] = price_round(stop) if stop > 0 else None
        if direction != "HOLD":
            take = price + sign * REWARD_TO_RISK * risk
            out["take_profit"] = price_round(take) if take > 0 else None
        out["stop_distance_pct"] = rnd(risk / price * 100.0)
    return out


def trader(ev: dict[str, Any], rm: RoleOutput) -> RoleOutput:
    action = rm["recommendation"]
    score = float(rm["score"])
    levels = trade_levels(ev, action, score)
    # No forecast, or a research manager without a view (no weighed evidence): no size.
    has_view = section(rm, "evidence").get("half_kelly") is not None
    exposure = half_kelly(ev, score) if has_view else None
    price = num(ev.get("price"))
    lines = [f"## Trader: {action}", ""]
    lines.append(
        f"Entry reference {fmt(price)}; target {fmt(levels['target_price'])} "
        f"(forecast {score:+.3f} x one-month volatility); stop {fmt(levels['stop_loss'])} "
        f"({STOP_ATR_MULTIPLE:g} ATR); "
        + (
            f"no take profit ({HOLD_NO_TAKE_PROFIT})."
            if action == "HOLD"
            else f"take profit {fmt(levels['take_profit'])} ({REWARD_TO_RISK:g}:1 reward/risk)."
        )
    )
    if exposure is None:
        lines.append("No forecast to size from: no position proposed.")
    else:
        lines.append(
            f"Half Kelly for this forecast and volatility: {exposure:.0%} of the capital for "
            f"this name ({exposure * MAX_POSITION_PCT:.1f}% of a portfolio's equity at the "
            f"{MAX_POSITION_PCT:g}% single-name cap)."
        )
    return {
        "role": "trader",
        "action": action,
        "score": round(score, 4),
        "target_price": levels["target_price"],
        "stop_loss": levels["stop_loss"],
        "take_profit": levels["take_profit"],
        "exposure": rnd(exposure),
        "position_size_pct": None if exposure is None else rnd(exposure * MAX_POSITION_PCT, 2),
        "base_size_pct": None if exposure is None else rnd(exposure * MAX_POSITION_PCT, 2),
        "report": "\n".join(lines),
        "evidence": {
            "price": price,
            "atr_14": num(section(ev, "technical").get("atr_14")),
            "volatility_ann": num(section(ev, "forecast").get("volatility_ann")),
            "stop_distance_pct": levels["stop_distance_pct"],
            "research_score": score,
            "half_kelly": rnd(exposure),
        },
    }


# --- risk debate ----------------------------------------------------------------------------


def risk_score(ev: dict[str, Any]) -> tuple[float | None, dict[str, float]]:
    """Mean of the available risk components, each scaled to [0, 1] by its ceiling."""
    t, risk, rs = section(ev, "technical"), section(ev, "risk"), section(ev, "relative_strength")
    values = {
        "volatility": num(risk.get("volatility_20d_ann")),
        "drawdown": None
        if num(risk.get("max_drawdown_1y")) is None
        else abs(float(risk["max_drawdown_1y"])),
        "beta": num(rs.get("beta_1y")),
        "atr_pct": num(t.get("atr_pct")),
    }
    comps = {
        k: round(clip(v / RISK_CEILINGS[k], 0.0, 1.0), 4)
        for k, v in values.items()
        if v is not None
    }
    if not comps:
        return None, comps
    return sum(comps.values()) / len(comps), comps


def _stance_view(ev: dict[str, Any], trade: RoleOutput, stance: str) -> tuple[float, str]:
    """(size multiplier of the trader's half Kelly, the argument) for one stance."""
    f = section(ev, "forecast")
    base = num(trade.get("exposure"))
    s = float(trade.get("score") or 0.0)
    if not f.get("available") or base is None:
        return 1.0, "no forecast to size from; keeps the trader's (empty) size"
    vol = num(f.get("volatility_ann"))
    if stance == "aggressive":
        full = half_kelly(ev, s, fraction=1.0) or 0.0
        text = (
            f"full Kelly {full:.0%}: the forecast {s:+.3f} at {level(vol)} volatility, taken at "
            "face value"
        )
        return (full / base if base > 0 else 1.0), text
    if stance == "neutral":
        return 1.0, (
            f"half Kelly {base:.0%}: about three quarters of full Kelly's growth at half its "
            "volatility, since the edge is estimated"
        )
    se = num(f.get("se")) or 0.0
    low = s - se
    cautious = half_kelly(ev, low) or 0.0
    text = (
        f"one standard error down the forecast is {low:+.3f}, worth {cautious:.0%} at half "
        "Kelly" + (": the model cannot tell this edge from nothing" if low <= 0 else "")
    )
    return (cautious / base if base > 0 else 1.0), text


def risk_turn(
    stance: str,
    ev: dict[str, Any],
    trade: RoleOutput,
    rm: RoleOutput,
    transcript: list[RoleOutput],
    round_no: int,
) -> RoleOutput:
    """One risk analyst's turn: aggressive (full Kelly, the forecast at face value), neutral
    (half Kelly, the trader's size) or conservative (half Kelly of the forecast one standard
    error lower); from round 2 on it answers the others' last proposals."""
    multiplier, argument = _stance_view(ev, trade, stance)
    lines = [
        f"### {stance.capitalize()} risk analyst, round {round_no}: size x{multiplier:.2f}",
        "",
        f"- {argument}",
    ]
    if round_no > 1:
        others = [
            t for t in transcript if t.get("round") == round_no - 1 and t.get("stance") != stance
        ]
        if others:
            lines.append(
                "- Answering "
                + ", ".join(f"the {t['stance']} x{t['size_multiplier']:.2f}" for t in others)
                + ": no new evidence since, so the view stands."
            )
    return {
        "role": f"{stance}_risk_analyst",
        "stance": stance,
        "round": round_no,
        "size_multiplier": round(multiplier, 4),
        "report": "\n".join(lines),
        "evidence": {"size_multiplier": round(multiplier, 4)},
    }


RISK_TURNS = {
    stance: partial(risk_turn, stance) for stance in ("aggressive", "neutral", "conservative")
}


# --- portfolio manager ----------------------------------------------------------------------


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
    multiplier = (
        sum(float(t["size_multiplier"]) for t in final.values()) / len(final) if final else 1.0
    )
    s = float(rm["score"])
    base = num(trade.get("exposure"))
    exposure = None if base is None else clip(base * multiplier, 0.0, 1.0)
    rating = "HOLD" if exposure is None else rating_for_exposure(exposure)
    action = action_for_rating(rating)
    levels = trade_levels(ev, action, s)
    prob = p_up(ev, s)
    confidence = 0.0 if exposure is None else call_confidence(action, prob)
    f = section(ev, "forecast")
    mu = num(f.get("expected_return"))
    reasons = []
    if exposure is None:
        why = f.get("why") or "no analyst had weighed evidence"
        reasons.append(f"No calibrated forecast ({why}): no view, HOLD with no position.")
    else:
        reasons.append(
            f"Forecast {s:+.3f} monthly volatilities ({rm['recommendation']} from the research "
            f"manager): P(up over {f.get('horizon_bars')} bars) {prob:.0%}, expected return "
            f"{pct(mu, 2)}."
        )
        strongest = sorted(
            (
                sig | {"analyst": a["analyst"]}
                for a in analysts.values()
                for sig in a.get("signals", [])
            ),
            key=lambda sig: -abs(float(sig["score"])),
        )[:3]
        if strongest:
            reasons.append(
                "Main evidence: "
                + "; ".join(f"{sig['label']} {float(sig['score']):+.4f}" for sig in strongest)
                + "."
            )
        reasons.append(
            f"Half Kelly {base:.0%} x risk debate {multiplier:.2f} ("
            + ", ".join(f"{st} x{t['size_multiplier']:.2f}" for st, t in final.items())
            + f") = exposure {exposure:.0%} -> {rating} (nearest tier "
            f"{RATING_EXPOSURE[rating]:.0%})."
        )
    without = [a for a, o in analysts.items() if not o.get("available")]
    if without:
        reasons.append("No data, no weight: " + ", ".join(without) + ".")
    reasoning = " ".join(reasons)
    size = None if exposure is None else exposure * MAX_POSITION_PCT
    lines = [
        f"## Portfolio manager: {rating} ({action})",
        "",
        reasoning,
        "",
        f"Target {fmt(levels['target_price'])}, stop {fmt(levels['stop_loss'])}, take profit "
        f"{fmt(levels['take_profit'])}, position {fmt(size)}% of equity, risk score "
        f"{fmt(None if rscore is None else rscore * 100, 0)}/100.",
    ]
    if action == "HOLD":
        lines.append(f"No take profit: {HOLD_NO_TAKE_PROFIT}.")
    return {
        "role": "portfolio_manager",
        "rating": rating,
        "action": action,
        "score": round(s, 4),
        "confidence": round(confidence, 4),
        "probability_up": round(prob, 4),
        "target_price": levels["target_price"],
        "stop_loss": levels["stop_loss"],
        "take_profit": levels["take_profit"],
        "exposure": rnd(exposure),
        "position_size_pct": rnd(size, 2),
        "risk_score": rnd(rscore),
        "size_multiplier": round(multiplier, 4),
        "reasoning": reasoning,
        "analysts_used": [a for a, o in analysts.items() if o.get("available")],
        "report": "\n".join(lines),
        "evidence": {
            "forecast": round(s, 5),
            "probability_up": round(prob, 4),
            "expected_return": mu,
            "half_kelly": rnd(base),
            "size_multiplier": round(multiplier, 4),
            "exposure": rnd(exposure),
            "risk_components": comps,
        },
    }

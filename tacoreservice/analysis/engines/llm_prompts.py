"""What the ``llm`` engine shows the model for each role: the role's evidence, the quant
figures computed from it, and the earlier roles' outputs it builds on.

The debates are real turns: each debater sees the whole debate so far (compacted) and, in
full, the previous turn, which its task tells it to answer; so a bear's argument quotes the
model's bull argument of that round, not the quant one.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tacoreservice.analysis.engines.llm_spec import RoleSpec
from tacoreservice.analysis.evidence import fundamentals_usable
from tacoreservice.analysis.roles import RoleOutput

__all__ = ["QUOTE_CHARS", "messages_for"]

# How much of an earlier role's report is quoted to later roles: enough for the argument,
# bounded so a deep debate does not grow prompts quadratically.
QUOTE_CHARS = 1500


def _compact(out: RoleOutput) -> dict[str, Any]:
    """An earlier role's output as later prompts quote it."""
    keep = (
        "role",
        "round",
        "stance",
        "side",
        "score",
        "confidence",
        "recommendation",
        "action",
        "rating",
        "target_price",
        "stop_loss",
        "take_profit",
        "position_size_pct",
        "size_multiplier",
        "strength",
        "available",
        "why_unavailable",
    )
    c = {k: out[k] for k in keep if k in out and out[k] is not None}
    c["report"] = str(out.get("report", ""))[:QUOTE_CHARS]
    return c


def _quant_view(out: RoleOutput) -> dict[str, Any]:
    """The quant role's figures as the prompt shows them (no report: the model writes it).
    A signal's ``values`` repeat figures its ``text`` quotes and the evidence holds."""
    skip = {"report", "evidence", "role", "notes"}
    view = {k: v for k, v in out.items() if k not in skip}
    if isinstance(view.get("signals"), list):
        view["signals"] = [
            {k: v for k, v in sig.items() if k != "values"} if isinstance(sig, dict) else sig
            for sig in view["signals"]
        ]
    return view


# Figures go to the model with this many significant digits: more only costs tokens (a digit
# is often a token of its own: prompt evaluation is most of a small local model's time) and
# no argument turns on the sixth digit of an RSI.
SIGNIFICANT_DIGITS = 4


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v) for v in obj]
    return obj


def _previous_turn(transcript: list[RoleOutput]) -> dict[str, Any] | None:
    """The turn a debater answers: the last one, whoever spoke it (None opens the debate)."""
    if not transcript:
        return None
    last = transcript[-1]
    return {
        "role": last["role"],
        "round": last.get("round"),
        "text": str(last.get("report", ""))[:QUOTE_CHARS],
    }


def _header(ev: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ev.get(k)
        for k in ("symbol", "name", "market", "kind", "currency", "timeframe", "as_of", "price")
    }


def _role_data(role: str, quant: RoleOutput, ctx: dict[str, Any]) -> dict[str, Any]:
    ev = ctx["evidence"]
    data: dict[str, Any] = {"instrument": _header(ev)}
    if role == "market_analyst":
        for k in ("change_pct", "technical", "returns", "risk", "relative_strength"):
            data[k] = ev.get(k)
    elif role == "fundamentals_analyst":
        # The model sees only what the quant analyst may use: figures not yet known at as_of
        # are not sent at all (the runner does not even call for an analyst without data).
        usable, why_not = fundamentals_usable(ev.get("fundamentals"), ev.get("as_of"))
        if usable and quant.get("available"):
            f = dict(ev.get("fundamentals") or {})
            f.pop("source", None)
            data["fundamentals"] = f
        else:
            data["fundamentals"] = {
                "usable": False,
                "why": why_not or quant.get("why_unavailable") or "no fundamentals",
            }
    elif role in ("bull_researcher", "bear_researcher"):
        data["analyst_reports"] = [_compact(o) for o in ctx["analysts"].values()]
        data["debate_so_far"] = [_compact(t) for t in ctx["transcript"]]
        data["round"] = ctx["round"]
        data["previous_turn"] = _previous_turn(ctx["transcript"])
    elif role == "research_manager":
        data["analyst_reports"] = [_compact(o) for o in ctx["analysts"].values()]
        data["debate"] = [_compact(t) for t in ctx["transcript"]]
    elif role == "trader":
        data["research_manager"] = _compact(ctx["research_manager"])
        data["technical"] = {
            k: ev.get("technical", {}).get(k) for k in ("atr_14", "atr_pct", "bb_upper", "bb_lower")
        }
        data["risk"] = ev.get("risk")
    elif role.endswith("_risk_analyst"):
        data["research_manager"] = _compact(ctx["research_manager"])
        data["trade_plan"] = _compact(ctx["trader"])
        data["risk"] = ev.get("risk")
        data["relative_strength"] = ev.get("relative_strength")
        data["debate_so_far"] = [_compact(t) for t in ctx["transcript"]]
        data["round"] = ctx["round"]
        data["previous_turn"] = _previous_turn(ctx["transcript"])
    elif role == "portfolio_manager":
        data["analysts"] = [
            {k: v for k, v in _compact(o).items() if k != "report"}
            for o in ctx["analysts"].values()
        ]
        data["research_manager"] = _compact(ctx["research_manager"])
        data["trade_plan"] = _compact(ctx["trader"])
        data["risk_debate"] = [_compact(t) for t in ctx["transcript"]]
    data["quant_figures"] = _quant_view(quant)
    return data


def messages_for(
    role: str, spec: RoleSpec, quant: RoleOutput, ctx: dict[str, Any]
) -> list[dict[str, str]]:
    keys = "\n".join(f'- "{k}": {desc}' for k, (_kind, desc) in spec.fields.items())
    system = (
        f"role: {role}\n"
        f"You are the {spec.title} of a trading research team organised as in TradingAgents. "
        f"{spec.task}\n"
        "Ground every statement in the data given. Do not invent figures, news or events that "
        "are not in it; where something is missing, say so. `quant_figures` are what a "
        "rule-based model computed from the same data: use them as a reference, and depart "
        "from them only for reasons the data shows.\n"
        "Answer with only one JSON object, no text around it, with exactly these keys:\n"
        f"{keys}"
    )
    user = "Data (JSON):\n" + json.dumps(
        _rounded(_role_data(role, quant, ctx)),
        ensure_ascii=False,
        default=str,
        separators=(",", ":"),
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]

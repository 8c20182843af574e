"""The analysis pipeline: the TradingAgents graph as a fixed sequence of roles.

    analysts (in parallel) -> bull/bear debate (N rounds) -> research manager -> trader
      -> aggressive/neutral/conservative risk debate (M rounds) -> portfolio manager

Every role is first computed by its quant function (:mod:`tacoreservice.analysis.roles`) and
then handed to a :class:`RoleRunner`, which may refine it: the quant runner returns it as is,
the LLM runner asks a model to argue the role from the same evidence and figures. Later roles
read the refined outputs, so the graph is the same whichever runner drives it.

Between roles the pipeline reports progress (``{"roles": {role: state}}``) and checks for
cancellation, because a long (LLM) analysis runs as a job with live progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tacoreservice.analysis import roles
from tacoreservice.analysis.roles import ANALYST_ROLE, ANALYSTS, RoleOutput
from tacoreservice.protocol.errors import InvalidParams

__all__ = [
    "ANALYSIS_TYPES",
    "AnalysisEngine",
    "DEPTH_ROUNDS",
    "RISK_STANCES",
    "ROLE_NAMES",
    "AnalysisRequest",
    "Hooks",
    "QuantRunner",
    "RoleRunner",
    "normalize_analysts",
    "rounds_for_depth",
    "run_analysis",
    "run_pipeline",
]

# research_depth -> (investment debate rounds, risk debate rounds), as TradingAgents-CN maps
# its five depth levels (快速 / 基础 / 标准 / 深度 / 全面).
DEPTH_ROUNDS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (1, 1), 3: (1, 2), 4: (2, 2), 5: (3, 3)}

ANALYSIS_TYPES: dict[str, tuple[str, ...]] = {
    "technical": ("market",),
    "fundamental": ("fundamentals",),
    "comprehensive": ANALYSTS,
}
# Names each client generation uses for the analysts (TradingAgents calls sentiment "social").
_ANALYST_ALIASES: dict[str, str] = {
    "market": "market",
    "technical": "market",
    "fundamentals": "fundamentals",
    "fundamental": "fundamentals",
    "news": "news",
    "sentiment": "sentiment",
    "social": "sentiment",
    "social_media": "sentiment",
}
RISK_STANCES: tuple[str, ...] = ("aggressive", "neutral", "conservative")
ROLE_NAMES: tuple[str, ...] = (
    *(ANALYST_ROLE[a] for a in ANALYSTS),
    "bull_researcher",
    "bear_researcher",
    "research_manager",
    "trader",
    *(f"{s}_risk_analyst" for s in RISK_STANCES),
    "portfolio_manager",
)


def rounds_for_depth(depth: int) -> tuple[int, int]:
    if depth not in DEPTH_ROUNDS:
        raise InvalidParams(f"research_depth must be 1-5, got {depth!r}")
    return DEPTH_ROUNDS[depth]


def normalize_analysts(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Canonical analyst names in graph order, without duplicates; rejects unknown names."""
    wanted = set()
    for raw in names:
        key = str(raw).strip().lower()
        if key not in _ANALYST_ALIASES:
            raise InvalidParams(
                f"unknown analyst {raw!r}; use any of {', '.join(ANALYSTS)}",
                {"analyst": raw, "valid": list(ANALYSTS)},
            )
        wanted.add(_ANALYST_ALIASES[key])
    if not wanted:
        raise InvalidParams(f"analysts must name at least one of {', '.join(ANALYSTS)}")
    return tuple(a for a in ANALYSTS if a in wanted)


@dataclass(frozen=True)
class AnalysisRequest:
    symbol: str
    analysts: tuple[str, ...] = ANALYSTS
    research_depth: int = 3
    as_of: str | None = None
    timeframe: str = "1d"

    @property
    def rounds(self) -> tuple[int, int]:
        return rounds_for_depth(self.research_depth)


def _no_progress(stage: str, percent: float, detail: dict[str, Any] | None = None) -> None:
    return None


def _not_cancelled() -> None:
    return None


@dataclass
class Hooks:
    """What the caller lets a long analysis do: report progress, and stop when cancelled."""

    progress: Callable[[str, float, dict[str, Any] | None], None] = field(default=_no_progress)
    # Raises (``Cancelled``) when the job was cancelled; called between roles.
    check_cancelled: Callable[[], None] = field(default=_not_cancelled)


class RoleRunner(Protocol):
    """Turns a role's quant output into the role's final output.

    ``context`` holds what the role saw: ``evidence`` plus the role's inputs (earlier outputs,
    the debate so far, the round number).
    """

    def refine(self, role: str, quant: RoleOutput, context: dict[str, Any]) -> RoleOutput: ...

    def stop(self) -> None:
        """The analysis failed or was cancelled: start no further work (e.g. no more LLM
        calls from analyst threads still running); work already in flight may finish."""
        ...


class QuantRunner:
    """The quant engine's runner: the computed role output is the answer."""

    def refine(self, role: str, quant: RoleOutput, context: dict[str, Any]) -> RoleOutput:
        return quant

    def stop(self) -> None:
        return None


class _Tracker:
    def __init__(self, request: AnalysisRequest, hooks: Hooks) -> None:
        d, r = request.rounds
        self.hooks = hooks
        self.total = len(request.analysts) + 2 * d + 2 + 3 * r + 1
        self.done = 0
        self.roles: dict[str, str] = {}
        for a in ANALYSTS:
            self.roles[ANALYST_ROLE[a]] = "pending" if a in request.analysts else "skipped"
        for name in ROLE_NAMES[len(ANALYSTS) :]:
            self.roles[name] = "pending"

    def set(self, stage: str, states: dict[str, str], steps_done: int = 0) -> None:
        self.roles.update(states)
        self.done += steps_done
        percent = round(100.0 * self.done / self.total, 1)
        self.hooks.progress(stage, percent, {"roles": dict(self.roles)})

    def step(self, stage: str, states: dict[str, str]) -> None:
        self.set(stage, states, 1)
        self.hooks.check_cancelled()


# While analysts run, cancellation is checked this often (seconds), so that a job cancelled
# during slow LLM calls stops without waiting for them.
CANCEL_POLL_S = 0.1


def _run_analysts(
    ev: dict[str, Any], request: AnalysisRequest, runner: RoleRunner, track: _Tracker
) -> dict[str, RoleOutput]:
    # Independent analysts run in parallel; for the quant runner this costs a few hundred
    # microseconds, for the LLM runner it is the difference between one slow call and four.
    names = request.analysts
    track.set("analysts", {ANALYST_ROLE[a]: "running" for a in names})
    outputs: dict[str, RoleOutput] = {}

    def one(a: str) -> RoleOutput:
        return runner.refine(ANALYST_ROLE[a], roles.analyst(a, ev), {"evidence": ev})

    pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="analyst")
    try:
        futures: dict[Future[RoleOutput], str] = {pool.submit(one, a): a for a in names}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=CANCEL_POLL_S, return_when=FIRST_COMPLETED)
            if not finished:
                track.hooks.check_cancelled()
                continue
            for fut in sorted(finished, key=lambda f: names.index(futures[f])):
                a = futures[fut]
                outputs[a] = fut.result()  # re-raises an analyst's failure here
                track.step(f"{a} analyst done", {ANALYST_ROLE[a]: "done"})
    finally:
        # On failure or cancellation the remaining analysts are abandoned, not awaited; the
        # runner is told first, so that they start no further (LLM) calls.
        if len(outputs) < len(names):
            runner.stop()
        pool.shutdown(wait=False, cancel_futures=True)
    return {a: outputs[a] for a in names}  # graph order, whatever order they finished in


_HEADER_FIELDS = ("name", "market", "kind", "currency", "timeframe", "as_of", "price")


def decision_header(ev: dict[str, Any]) -> dict[str, Any]:
    """What every engine's decision says about the instrument and the data it saw."""
    return {"symbol": ev["symbol"], **{k: ev.get(k) for k in _HEADER_FIELDS}}


def run_pipeline(
    ev: dict[str, Any],
    request: AnalysisRequest,
    runner: RoleRunner,
    hooks: Hooks | None = None,
) -> dict[str, Any]:
    """Run every role on ``ev`` and assemble the decision (without engine/model/timing)."""
    hooks = hooks or Hooks()
    try:
        return _pipeline(ev, request, runner, hooks)
    except BaseException:
        runner.stop()  # nothing started after a failure or a cancellation may go on
        raise


def _pipeline(
    ev: dict[str, Any], request: AnalysisRequest, runner: RoleRunner, hooks: Hooks
) -> dict[str, Any]:
    track = _Tracker(request, hooks)
    debate_rounds, risk_rounds = request.rounds
    hooks.check_cancelled()

    analysts = _run_analysts(ev, request, runner, track)

    transcript: list[RoleOutput] = []
    for r in range(1, debate_rounds + 1):
        for side, fn in (("bull", roles.bull_turn), ("bear", roles.bear_turn)):
            role = f"{side}_researcher"
            track.set(f"investment debate round {r}/{debate_rounds}", {role: "running"})
            quant = fn(ev, analysts, transcript, r)
            ctx = {"evidence": ev, "analysts": analysts, "transcript": transcript, "round": r}
            transcript.append(runner.refine(role, quant, ctx))
            last = r == debate_rounds
            track.step(
                f"investment debate round {r}/{debate_rounds}",
                {role: "done" if last else "pending"},
            )

    track.set("research manager", {"research_manager": "running"})
    rm = runner.refine(
        "research_manager",
        roles.research_manager(ev, analysts, transcript),
        {"evidence": ev, "analysts": analysts, "transcript": transcript},
    )
    track.step("research manager", {"research_manager": "done"})

    track.set("trader", {"trader": "running"})
    trade = runner.refine("trader", roles.trader(ev, rm), {"evidence": ev, "research_manager": rm})
    track.step("trader", {"trader": "done"})

    risk: list[RoleOutput] = []
    for r in range(1, risk_rounds + 1):
        for stance in RISK_STANCES:
            role = f"{stance}_risk_analyst"
            track.set(f"risk debate round {r}/{risk_rounds}", {role: "running"})
            quant = roles.RISK_TURNS[stance](ev, trade, rm, risk, r)
            ctx = {
                "evidence": ev,
                "research_manager": rm,
                "trader": trade,
                "transcript": risk,
                "round": r,
            }
            risk.append(runner.refine(role, quant, ctx))
            last = r == risk_rounds
            track.step(
                f"risk debate round {r}/{risk_rounds}", {role: "done" if last else "pending"}
            )

    track.set("portfolio manager", {"portfolio_manager": "running"})
    pm = runner.refine(
        "portfolio_manager",
        roles.portfolio_manager(ev, analysts, rm, trade, risk),
        {
            "evidence": ev,
            "analysts": analysts,
            "research_manager": rm,
            "trader": trade,
            "transcript": risk,
        },
    )
    track.step("portfolio manager", {"portfolio_manager": "done"})
    return assemble_decision(ev, request, analysts, transcript, rm, trade, risk, pm)


def _joined(turns: list[RoleOutput], role: str) -> str:
    return "\n\n".join(t["report"] for t in turns if t["role"] == role)


def assemble_decision(
    ev: dict[str, Any],
    request: AnalysisRequest,
    analysts: dict[str, RoleOutput],
    transcript: list[RoleOutput],
    rm: RoleOutput,
    trade: RoleOutput,
    risk: list[RoleOutput],
    pm: RoleOutput,
) -> dict[str, Any]:
    debate_rounds, risk_rounds = request.rounds
    reports: dict[str, str] = {}
    evidence: dict[str, Any] = {}
    for out in analysts.values():
        reports[out["role"]] = out["report"]
        evidence[out["role"]] = out["evidence"]
    for side in ("bull", "bear"):
        role = f"{side}_researcher"
        reports[role] = _joined(transcript, role)
        evidence[role] = {
            "points": [p for t in transcript if t["role"] == role for p in t.get("points", [])]
        }
    for out in (rm, trade):
        reports[out["role"]] = out["report"]
        evidence[out["role"]] = out["evidence"]
    for stance in RISK_STANCES:
        role = f"{stance}_risk_analyst"
        turns = [t for t in risk if t["role"] == role]
        reports[role] = _joined(risk, role)
        evidence[role] = {
            "rounds": [
                {"round": t["round"], "size_multiplier": t["size_multiplier"], **t["evidence"]}
                for t in turns
            ]
        }
    reports["portfolio_manager"] = pm["report"]
    evidence["portfolio_manager"] = pm["evidence"]

    rating = pm["rating"]
    forecast: dict[str, Any] = ev["forecast"] if isinstance(ev.get("forecast"), dict) else {}
    size = pm.get("position_size_pct")
    return {
        **decision_header(ev),
        "rating": rating,
        "action": roles.action_for_rating(rating),
        "confidence": pm["confidence"],
        # The share of the capital given to this name that the decision holds (0 flat .. 1
        # fully in): what a single-name backtest or trader follows; position_size_pct is the
        # same holding as a share of a whole portfolio's equity.
        "target_exposure": None
        if size is None
        else round(min(1.0, max(0.0, float(size) / roles.MAX_POSITION_PCT)), 4),
        "expected_return": forecast.get("expected_return") if forecast.get("available") else None,
        "probability_up": pm.get("probability_up"),
        "horizon_bars": forecast.get("horizon_bars"),
        "target_price": pm["target_price"],
        "stop_loss": pm["stop_loss"],
        "take_profit": pm["take_profit"],
        "position_size_pct": pm["position_size_pct"],
        "risk_score": pm["risk_score"],
        "reasoning": pm["reasoning"],
        "reports": reports,
        "evidence": evidence,
        "debate": {
            "investment": [_turn_summary(t) for t in transcript],
            "risk": [_turn_summary(t) for t in risk],
            "research_manager": {
                "recommendation": rm["recommendation"],
                "score": rm["score"],
                "confidence": rm["confidence"],
            },
        },
        "analysts": {
            "selected": list(request.analysts),
            "with_data": [a for a, o in analysts.items() if o.get("available")],
            "without_data": {
                a: o.get("why_unavailable") for a, o in analysts.items() if not o.get("available")
            },
            "scores": {a: o["score"] for a, o in analysts.items()},
            "weights": {a: o["weight"] for a, o in analysts.items()},
        },
        "research_depth": request.research_depth,
        "rounds": {"investment_debate": debate_rounds, "risk_debate": risk_rounds},
        "data": {
            "bars": ev.get("bars"),
            "missing": ev.get("missing", []),
        },
    }


def _turn_summary(t: RoleOutput) -> dict[str, Any]:
    out = {"role": t["role"], "round": t["round"], "report": t["report"]}
    for key in ("side", "stance", "points", "strength", "size_multiplier", "source"):
        if key in t:
            out[key] = t[key]
    return out


@runtime_checkable
class AnalysisEngine(Protocol):
    name: str

    def identity(self) -> dict[str, Any]:
        """What makes this engine's answers differ (models, endpoint, version): part of the
        result cache key and of the decision's ``model`` field. Never holds secrets."""
        ...

    def analyze(self, provider: Any, request: AnalysisRequest, hooks: Hooks) -> dict[str, Any]:
        """The decision for ``request`` (engine name and timing are stamped by the caller)."""
        ...


def run_analysis(
    engine: AnalysisEngine, provider: Any, request: AnalysisRequest, hooks: Hooks | None = None
) -> dict[str, Any]:
    """Run ``engine`` and stamp the answer with the engine name and the elapsed time.

    Engines score risk from 0 to 1; the decision says it from 0 to 100, the scale of
    ``evaluate.risk``'s ``risk_score``, so a client reads one scale everywhere."""
    started = time.perf_counter()
    decision = engine.analyze(provider, request, hooks or Hooks())
    unit = decision.get("risk_score")
    if isinstance(unit, int | float) and not isinstance(unit, bool):
        decision["risk_score"] = round(float(unit) * 100.0, 1)
    decision["engine"] = engine.name
    decision["elapsed_ms"] = round((time.perf_counter() - started) * 1000.0, 2)
    return decision

"""The ``tradingagents`` engine: runs TradingAgents or TradingAgents-CN when installed.

Both projects expose ``tradingagents.graph.trading_graph.TradingAgentsGraph(selected_analysts,
config=...)`` whose ``propagate(symbol, trade_date)`` returns ``(final_state, decision)``. The
decision comes in one of two dialects, both normalised here into the service's shape:

- TradingAgents: a rating string, the 5-tier ``BUY / OVERWEIGHT / HOLD / UNDERWEIGHT / SELL``
  (older releases: BUY / HOLD / SELL), possibly wrapped in prose;
- TradingAgents-CN: a dict ``{"action": "买入" | "持有" | "卖出", "target_price",
  "confidence", "risk_score", "reasoning"}``.

Fields the dialect does not carry stay ``None`` (the English dialect has no confidence or
target): the adapter does not fill them with made-up numbers. ``evidence`` still holds the
service's own quant evidence for the symbol and date, so callers see what the data said.

Building a graph loads LLM clients and tool kits, so there is one graph per worker process per
(analysts, config), reused by later requests; a lock serialises ``propagate`` on a graph
because the graph keeps per-run state on itself.
"""

from __future__ import annotations

import importlib
import math
import re
import threading
from typing import Any

import orjson

from tacoreservice.analysis.engines.llm import public_url, redact
from tacoreservice.analysis.evidence import compute_evidence
from tacoreservice.analysis.graph import ROLE_NAMES, AnalysisRequest, Hooks, decision_header
from tacoreservice.analysis.roles import ANALYST_ROLE, action_for_rating
from tacoreservice.protocol.errors import ErrorCode, ServiceError

__all__ = [
    "INSTALL_HINT",
    "TradingAgentsEngine",
    "build_config",
    "clear_graphs",
    "get_graph",
    "normalize_decision",
    "parse_rating",
]

INSTALL_HINT = "pip install tradingagents (or TradingAgents-CN)"
GRAPH_MODULE = "tradingagents.graph.trading_graph"
# The service's analyst names -> TradingAgents' (sentiment is its "social" analyst).
ANALYST_NAMES = {
    "market": "market",
    "fundamentals": "fundamentals",
    "news": "news",
    "sentiment": "social",
}

# Words each dialect uses for the rating, longest first so OVERWEIGHT is not read as a
# substring match of anything shorter.
_RATING_WORDS: dict[str, str] = {
    "UNDERWEIGHT": "UNDERWEIGHT",
    "OVERWEIGHT": "OVERWEIGHT",
    "STRONG BUY": "BUY",
    "STRONG SELL": "SELL",
    "BUY": "BUY",
    "SELL": "SELL",
    "HOLD": "HOLD",
    "强烈买入": "BUY",
    "强烈卖出": "SELL",
    "买入": "BUY",
    "增持": "OVERWEIGHT",
    "持有": "HOLD",
    "观望": "HOLD",
    "减持": "UNDERWEIGHT",
    "卖出": "SELL",
}
# A negated rating word ("不建议买入", "do not buy") says what not to do, not what to do:
# - not buying / not adding / not selling / not reducing -> HOLD (keep what is held);
# - not holding ("不建议持有", "don't hold") -> SELL (get out);
# - not waiting ("不建议观望") names no direction, so that word gives no rating.
_NEGATED: dict[str, str | None] = {
    "BUY": "HOLD",
    "OVERWEIGHT": "HOLD",
    "HOLD": "SELL",
    "UNDERWEIGHT": "HOLD",
    "SELL": "HOLD",
}
_NEGATED_WORDS: dict[str, str | None] = {"观望": None}
# Chinese negations may be followed by a few adverbs before the verb ("不建议继续持有",
# "不宜追高买入"); a bare 不 only directly before it ("不买入"), so that "不过建议买入"
# ("however, buy") is not read as a negation.
_CN_NEGATORS = (
    "不建议",
    "不推荐",
    "不应该",
    "不应",
    "不宜",
    "不要",
    "不可",
    "不必",
    "暂不",
    "切勿",
    "避免",
    "无需",
    "别",
    "勿",
)
_CN_ADVERBS = (
    "继续",
    "立即",
    "马上",
    "立刻",
    "现在",
    "目前",
    "短期",
    "盲目",
    "追高",
    "贸然",
    "急于",
    "过早",
    "大举",
)
_CN_NEG = (
    "(?:"
    + "|".join(map(re.escape, _CN_NEGATORS))
    + ")(?:"
    + "|".join(map(re.escape, _CN_ADVERBS))
    + "){0,2}|不"
)
_EN_NEG = (
    r"\b(?:do\s+not|does\s+not|don't|don’t|dont|would\s+not|should\s+not|not|never|avoid|no)"
    r"(?:\s+(?:a|an|to|be|recommended|recommend|advised|advisable|rated|yet|currently))*\s+"
)
_WORD_RE = re.compile(
    rf"(?P<neg>{_CN_NEG}|{_EN_NEG})?(?P<word>"
    + "|".join(
        rf"\b{re.escape(w)}\b" if w.isascii() else re.escape(w)
        for w in sorted(_RATING_WORDS, key=len, reverse=True)
    )
    + ")",
    re.I,
)

_graphs: dict[tuple[Any, ...], tuple[Any, threading.Lock]] = {}
_graphs_lock = threading.Lock()


def clear_graphs() -> None:
    with _graphs_lock:
        _graphs.clear()


def _graph_class() -> Any:
    try:
        module = importlib.import_module(GRAPH_MODULE)
    except ImportError as exc:
        raise ServiceError(
            ErrorCode.ENGINE_UNAVAILABLE,
            f"the tradingagents analysis engine needs TradingAgents, which is not importable "
            f"({exc}); install it with: {INSTALL_HINT}",
            {"engine": "tradingagents", "install": INSTALL_HINT},
        ) from None
    cls = getattr(module, "TradingAgentsGraph", None)
    if cls is None:
        raise ServiceError(
            ErrorCode.ENGINE_UNAVAILABLE,
            f"{GRAPH_MODULE} has no TradingAgentsGraph; install a release that has it: "
            f"{INSTALL_HINT}",
            {"engine": "tradingagents", "install": INSTALL_HINT},
        )
    return cls


def build_config(settings: Any, request: AnalysisRequest) -> dict[str, Any]:
    """TradingAgents' DEFAULT_CONFIG with the service's LLM endpoint, models and rounds."""
    base: dict[str, Any] = {}
    try:
        defaults = importlib.import_module("tradingagents.default_config")
        base = dict(getattr(defaults, "DEFAULT_CONFIG", {}) or {})
    except ImportError:
        pass
    debate, risk = request.rounds
    llm = settings.llm
    base.update(
        {
            "backend_url": llm.base_url,
            "deep_think_llm": llm.deep_model,
            "quick_think_llm": llm.quick_model,
            "max_debate_rounds": debate,
            "max_risk_discuss_rounds": risk,
            "research_depth": request.research_depth,
        }
    )
    return base


def _package_version() -> str | None:
    """TradingAgents' ``__version__`` when it is importable and has one."""
    try:
        module = importlib.import_module("tradingagents")
    except ImportError:
        return None
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None


def _config_key(config: dict[str, Any]) -> bytes:
    return orjson.dumps(config, option=orjson.OPT_SORT_KEYS, default=str)


def get_graph(analysts: tuple[str, ...], config: dict[str, Any]) -> tuple[Any, threading.Lock]:
    """The process's graph for (analysts, config), built on first use."""
    selected = [ANALYST_NAMES[a] for a in analysts]
    key = (tuple(selected), _config_key(config))
    with _graphs_lock:
        found = _graphs.get(key)
        if found is None:
            cls = _graph_class()
            found = (cls(selected_analysts=selected, config=dict(config)), threading.Lock())
            _graphs[key] = found
        return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        x = float(value)
    else:
        m = re.search(r"-?\d+(?:\.\d+)?", str(value).replace(",", ""))
        if m is None:
            return None
        x = float(m.group(0))
    return x if math.isfinite(x) else None


def _unit(value: Any) -> float | None:
    """A 0-1 figure; TradingAgents-CN sometimes writes percentages (75 or "75%").

    A string with a percent sign is always a percentage ("1%" is 0.01); a bare number above
    1 (up to 100) is read as one too (75 -> 0.75); anything else outside 0-1 is dropped."""
    x = _number(value)
    if x is None:
        return None
    if (isinstance(value, str) and "%" in value) or 1.0 < x <= 100.0:
        x /= 100.0
    return x if 0.0 <= x <= 1.0 else None


def parse_rating(text: Any) -> str | None:
    """The rating named in a decision text; with several, the last one (the conclusion).

    A negated rating counts as what it means (see ``_NEGATED``): "不建议买入" / "do not buy"
    is HOLD, "不建议持有" / "don't hold" is SELL; a negation naming no direction
    ("不建议观望") is skipped and the rating before it counts.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    for m in reversed(list(_WORD_RE.finditer(text))):
        word = m.group("word")
        rating = _RATING_WORDS.get(word.upper(), _RATING_WORDS.get(word))
        if rating is None:
            continue
        if m.group("neg"):
            negated = _NEGATED_WORDS[word] if word in _NEGATED_WORDS else _NEGATED.get(rating)
            if negated is None:
                continue
            return negated
        return rating
    return None


def normalize_decision(decision: Any) -> dict[str, Any]:
    """Either dialect -> rating, action, confidence, target_price, risk_score, reasoning."""
    out: dict[str, Any] = {
        "rating": None,
        "confidence": None,
        "target_price": None,
        "risk_score": None,
        "reasoning": None,
        "dialect": None,
    }
    if isinstance(decision, dict):
        out["dialect"] = "tradingagents-cn"
        raw = decision.get("action") or decision.get("rating") or decision.get("decision")
        out["rating"] = parse_rating(str(raw)) if raw is not None else None
        out["confidence"] = _unit(decision.get("confidence"))
        target = _number(decision.get("target_price"))
        out["target_price"] = target if target is not None and target > 0 else None
        out["risk_score"] = _unit(decision.get("risk_score"))
        reasoning = decision.get("reasoning")
        out["reasoning"] = str(reasoning) if reasoning else None
    elif isinstance(decision, str):
        out["dialect"] = "tradingagents"
        out["rating"] = parse_rating(decision)
        out["reasoning"] = decision.strip() or None
    if out["rating"] is None:
        raise ServiceError(
            ErrorCode.UPSTREAM_ERROR,
            f"TradingAgents returned a decision without a recognisable rating: "
            f"{str(decision)[:200]!r}",
            {"engine": "tradingagents"},
        )
    out["action"] = action_for_rating(out["rating"])
    return out


def _state_reports(state: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """Role reports and debate histories from TradingAgents' final state (either fork)."""
    if not isinstance(state, dict):
        return {}, {}
    reports: dict[str, str] = {}
    for key, role in (
        ("market_report", ANALYST_ROLE["market"]),
        ("fundamentals_report", ANALYST_ROLE["fundamentals"]),
        ("news_report", ANALYST_ROLE["news"]),
        ("sentiment_report", ANALYST_ROLE["sentiment"]),
        ("trader_investment_plan", "trader"),
        ("final_trade_decision", "portfolio_manager"),
    ):
        if state.get(key):
            reports[role] = str(state[key])
    debate: dict[str, Any] = {}
    inv = state.get("investment_debate_state")
    if isinstance(inv, dict):
        for key, role in (("bull_history", "bull_researcher"), ("bear_history", "bear_researcher")):
            if inv.get(key):
                reports[role] = str(inv[key])
        if inv.get("judge_decision"):
            reports["research_manager"] = str(inv["judge_decision"])
        debate["investment"] = str(inv.get("history") or "")
    risk = state.get("risk_debate_state")
    if isinstance(risk, dict):
        for key, role in (
            ("risky_history", "aggressive_risk_analyst"),
            ("aggressive_history", "aggressive_risk_analyst"),
            ("neutral_history", "neutral_risk_analyst"),
            ("safe_history", "conservative_risk_analyst"),
            ("conservative_history", "conservative_risk_analyst"),
        ):
            if risk.get(key):
                reports[role] = str(risk[key])
        debate["risk"] = str(risk.get("history") or "")
    return reports, debate


class TradingAgentsEngine:
    name = "tradingagents"

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def identity(self) -> dict[str, Any]:
        """Endpoint (without credentials), models and the TradingAgents package's version, so
        an upgrade of the package is a new cache key."""
        llm = self.settings.llm
        return {
            "engine": "tradingagents",
            "backend_url": public_url(llm.base_url),
            "quick_model": llm.quick_model,
            "deep_model": llm.deep_model,
            "version": _package_version(),
        }

    def _propagate(self, graph: Any, symbol: str, trade_date: str) -> Any:
        """``graph.propagate``; any failure inside the third-party graph becomes
        UPSTREAM_ERROR naming the exception type, with credentials masked."""
        try:
            return graph.propagate(symbol, trade_date)
        except ServiceError:
            raise
        except Exception as exc:
            llm = self.settings.llm
            detail = redact(str(exc), llm.base_url, llm.api_key)[:200]
            raise ServiceError(
                ErrorCode.UPSTREAM_ERROR,
                f"TradingAgents graph failed ({type(exc).__name__})"
                + (f": {detail}" if detail else ""),
                {"engine": "tradingagents", "exception": type(exc).__name__},
            ) from None

    def analyze(self, provider: Any, request: AnalysisRequest, hooks: Hooks) -> dict[str, Any]:
        _graph_class()  # fail with the install hint before any work
        ev = compute_evidence(provider, request.symbol, request.as_of, request.timeframe)
        trade_date = str(ev["as_of"])[:10]
        config = build_config(self.settings, request)
        # TradingAgents runs its whole graph in one call: every selected role is "running"
        # until it returns.
        unselected = {ANALYST_ROLE[a] for a in ANALYST_NAMES if a not in request.analysts}
        states = {n: "skipped" if n in unselected else "running" for n in ROLE_NAMES}
        hooks.progress("tradingagents graph", 0.0, {"roles": dict(states)})
        hooks.check_cancelled()
        graph, lock = get_graph(request.analysts, config)
        with lock:
            result = self._propagate(graph, ev["symbol"], trade_date)
        hooks.check_cancelled()
        if not isinstance(result, tuple) or len(result) != 2:
            raise ServiceError(
                ErrorCode.UPSTREAM_ERROR,
                "TradingAgentsGraph.propagate returned something other than (state, decision)",
                {"engine": "tradingagents"},
            )
        state, raw_decision = result
        norm = normalize_decision(raw_decision)
        reports, debate = _state_reports(state)
        hooks.progress(
            "tradingagents graph",
            100.0,
            {"roles": {k: ("done" if v == "running" else v) for k, v in states.items()}},
        )
        module = importlib.import_module("tradingagents")
        debate_rounds, risk_rounds = request.rounds
        return {
            **decision_header(ev),
            "rating": norm["rating"],
            "action": norm["action"],
            "confidence": norm["confidence"],
            "target_price": norm["target_price"],
            "stop_loss": None,
            "take_profit": None,
            "position_size_pct": None,
            "risk_score": norm["risk_score"],
            "reasoning": norm["reasoning"] or reports.get("portfolio_manager"),
            "reports": reports,
            "evidence": {"service_evidence": ev},
            "debate": debate,
            "analysts": {"selected": list(request.analysts)},
            "research_depth": request.research_depth,
            "rounds": {"investment_debate": debate_rounds, "risk_debate": risk_rounds},
            "data": {"bars": ev.get("bars"), "missing": ev.get("missing", [])},
            "model": {
                **self.identity(),
                "package": getattr(module, "__name__", "tradingagents"),
                "dialect": norm["dialect"],
                "selected_analysts": [ANALYST_NAMES[a] for a in request.analysts],
                "trade_date": trade_date,
                "not_provided": [
                    k for k in ("confidence", "target_price", "risk_score") if norm[k] is None
                ]
                + ["stop_loss", "take_profit", "position_size_pct"],
            },
        }

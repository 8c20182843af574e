"""The ``llm`` engine: each role is one chat call to an OpenAI-compatible endpoint.

Works with anything that speaks ``POST {base_url}/chat/completions``: OpenAI, DeepSeek,
Qwen (DashScope compatible mode), Ollama and vLLM. As in TradingAgents, analysts, researchers,
the trader and the risk debaters use the quick model; the research manager and the portfolio
manager, which weigh everything, use the deep model.

Grounding: the same graph runs as for the quant engine, and every role first computes its
quant output. The prompt carries the role's evidence and that quant output; the model argues
the role and returns a JSON object with fixed keys, which replaces the quant role's figures
(checked: ranges, and stops/targets on the right side of the price); later roles read the
model's figures, so an LLM research manager's score drives the trader's levels. The debate's
points and their weights stay the quant ones: the model argues them, it cannot invent new
ones. Analysts without data (news and sentiment offline, fundamentals of crypto, and
fundamentals not yet known at as_of, see ``evidence.fundamentals_usable``) are not asked at
all: there is nothing to ground an answer on, and the model never sees figures the quant
analyst may not use.

Failure handling:
- transport (timeout, connection, 429/5xx): the ``openai`` client retries ``max_retries``
  times with backoff, each attempt limited to ``timeout_s``; then the analysis stops with
  UPSTREAM_ERROR. Answering with quant figures under an "llm" label would hide an outage.
- an answer that is not the JSON asked for: asked once more, then the role falls back to its
  quant figures and its report says "LLM output unusable; quant figures used".
- tokens are counted from each response's ``usage`` (estimated at 4 characters a token when
  a server omits it); once the analysis has used more than ``token_budget`` it stops with
  UPSTREAM_ERROR and nothing is cached.
- no API key: ENGINE_UNAVAILABLE naming TACORE_LLM_API_KEY, unless ``base_url`` is local (a
  loopback or private address: Ollama and vLLM run without keys).
- a failure, an exceeded budget or a cancellation stops the runner: analyst threads still
  running make no further call (one already in flight is not interrupted).
- credentials never leave the process: replies, cache keys and error messages carry
  :func:`public_url` (no user info, no query string) and :func:`redact`-ed client errors.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from tacoreservice.analysis import roles
from tacoreservice.analysis.engines import quant as quant_engine
from tacoreservice.analysis.evidence import compute_evidence, fundamentals_usable
from tacoreservice.analysis.graph import AnalysisRequest, Hooks, run_pipeline
from tacoreservice.analysis.roles import RoleOutput
from tacoreservice.config import ConfigError
from tacoreservice.protocol.errors import ErrorCode, ServiceError

# Moved to security/ (the settings summary and the ccxt adapter use them too); still exported
# here for the engines and callers that import them from this module.
from tacoreservice.security.redaction import public_url, redact

__all__ = [
    "DEEP_ROLES",
    "LLMEngine",
    "LLMRunner",
    "ROLE_SPECS",
    "extract_json",
    "is_local_url",
    "public_url",
    "redact",
]

DEEP_ROLES = frozenset({"research_manager", "portfolio_manager"})
# Upper bound of one answer; a role's JSON with a few paragraphs fits well inside.
MAX_ANSWER_TOKENS = 1200
# How much of an earlier role's report is quoted to later roles: enough for the argument,
# bounded so a deep debate does not grow prompts quadratically.
QUOTE_CHARS = 1500
UNUSABLE = "LLM output unusable; quant figures used"
_CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text, used only without `usage`


@dataclass(frozen=True)
class RoleSpec:
    title: str
    task: str
    fields: dict[str, tuple[str, str]]  # key -> (kind, description)


_SCORE = ("score", "number from -1 (strongly bearish) to 1 (strongly bullish)")
_CONF = ("unit", "number from 0 to 1: how well the data supports your view")
_REPORT = ("text", "markdown report citing the figures you used")
_PRICE = "price"

ROLE_SPECS: dict[str, RoleSpec] = {
    "market_analyst": RoleSpec(
        "market (technical) analyst",
        "Assess trend, momentum, overbought/oversold state, volatility, volume and relative "
        "performance from the indicators.",
        {"score": _SCORE, "confidence": _CONF, "report": _REPORT},
    ),
    "fundamentals_analyst": RoleSpec(
        "fundamentals analyst",
        "Assess valuation and profitability from the fundamentals. Say when they are a "
        "snapshot that was not known at the analysis date.",
        {"score": _SCORE, "confidence": _CONF, "report": _REPORT},
    ),
    "news_analyst": RoleSpec(
        "news analyst",
        "Assess the news items provided.",
        {"score": _SCORE, "confidence": _CONF, "report": _REPORT},
    ),
    "sentiment_analyst": RoleSpec(
        "sentiment analyst",
        "Assess the sentiment data provided.",
        {"score": _SCORE, "confidence": _CONF, "report": _REPORT},
    ),
    "bull_researcher": RoleSpec(
        "bull researcher",
        "Argue the case for buying in this debate round: build on your points (given, with "
        "their weights) and answer the bear's latest argument.",
        {"argument": ("text", "your argument for this round, in markdown")},
    ),
    "bear_researcher": RoleSpec(
        "bear researcher",
        "Argue the case against buying in this debate round: build on your points (given, "
        "with their weights) and answer the bull's latest argument.",
        {"argument": ("text", "your argument for this round, in markdown")},
    ),
    "research_manager": RoleSpec(
        "research manager",
        "Judge the bull/bear debate and the analyst reports, and decide the investment view.",
        {
            "recommendation": ("enum:BUY,HOLD,SELL", "BUY, HOLD or SELL"),
            "score": _SCORE,
            "confidence": _CONF,
            "report": ("text", "markdown summary of the debate and your decision"),
        },
    ),
    "trader": RoleSpec(
        "trader",
        "Turn the research manager's view into a trade plan with levels from price and ATR.",
        {
            "action": ("enum:BUY,HOLD,SELL", "BUY, HOLD or SELL"),
            "target_price": (_PRICE, "price target, or null"),
            "stop_loss": (_PRICE, "stop-loss price, or null"),
            "take_profit": (_PRICE, "take-profit price, or null (always null for HOLD)"),
            "position_size_pct": ("pct", "position size in percent of equity, 0-100"),
            "report": ("text", "markdown trade plan"),
        },
    ),
    **{
        f"{stance}_risk_analyst": RoleSpec(
            f"{stance} risk analyst",
            {
                "aggressive": "Argue for taking more risk where the data supports it.",
                "neutral": "Argue for a balanced position size between the other two views.",
                "conservative": "Argue for protecting capital against the risks in the data.",
            }[stance]
            + " Propose a multiplier for the trader's position size.",
            {
                "size_multiplier": ("mult", "multiplier for the position size, 0 to 2"),
                "argument": ("text", "your argument for this round, in markdown"),
            },
        )
        for stance in ("aggressive", "neutral", "conservative")
    },
    "portfolio_manager": RoleSpec(
        "portfolio manager",
        "Make the final decision from the research view, the trade plan and the risk debate.",
        {
            "rating": (
                "enum:BUY,OVERWEIGHT,HOLD,UNDERWEIGHT,SELL",
                "BUY, OVERWEIGHT, HOLD, UNDERWEIGHT or SELL",
            ),
            "confidence": _CONF,
            "target_price": (_PRICE, "price target, or null"),
            "stop_loss": (_PRICE, "stop-loss price, or null"),
            "take_profit": (_PRICE, "take-profit price, or null (always null for HOLD)"),
            "position_size_pct": ("pct", "position size in percent of equity, 0-100"),
            "risk_score": ("unit", "number from 0 (low risk) to 1 (high risk)"),
            "reasoning": ("text", "the reasons for the decision, citing figures"),
        },
    ),
}


# --- helpers ------------------------------------------------------------------------------


def is_local_url(base_url: str) -> bool:
    """True for loopback and private-network hosts (a local Ollama or vLLM server)."""
    host = (urlparse(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_MAX_SCAN = 40  # opening braces tried per candidate text


def extract_json(text: str | None) -> dict[str, Any] | None:
    """The first JSON object in a model's answer: code fences, reasoning blocks
    (``<think>``) and prose around it are tolerated."""
    if not text:
        return None
    text = _THINK.sub("", text[:100_000])
    decoder = json.JSONDecoder()
    for candidate in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        start, tries = candidate.find("{"), 0
        while start != -1 and tries < _MAX_SCAN:
            tries += 1
            try:
                obj, _end = decoder.raw_decode(candidate, start)
            except ValueError:
                start = candidate.find("{", start + 1)
                continue
            if isinstance(obj, dict):
                return obj
            start = candidate.find("{", start + 1)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        m = re.search(r"-?\d+(?:\.\d+)?", value.replace(",", ""))
        if m is None:
            return None
        x = float(m.group(0))
    else:
        return None
    return x if math.isfinite(x) else None


_RANGES = {"score": (-1.0, 1.0), "unit": (0.0, 1.0), "pct": (0.0, 100.0), "mult": (0.0, 2.0)}


def validate(
    spec: RoleSpec, obj: dict[str, Any] | None
) -> tuple[dict[str, Any], list[str], str | None]:
    """(values, notes, problem): a problem makes the whole answer unusable; notes record
    values that were clamped or dropped (the quant figure is kept for a dropped one)."""
    if obj is None:
        return {}, [], "the answer holds no JSON object"
    values: dict[str, Any] = {}
    notes: list[str] = []
    for key, (kind, _desc) in spec.fields.items():
        if key not in obj:
            return {}, [], f"key {key!r} is missing"
        raw = obj[key]
        if kind == "text":
            if not isinstance(raw, str) or not raw.strip():
                return {}, [], f"{key!r} must be a non-empty string"
            values[key] = raw.strip()
        elif kind.startswith("enum:"):
            allowed = kind[5:].split(",")
            word = str(raw).strip().upper() if isinstance(raw, str) else ""
            if word not in allowed:
                return {}, [], f"{key!r} must be one of {', '.join(allowed)}, got {raw!r}"
            values[key] = word
        elif kind == _PRICE:
            if raw is None:
                continue  # no opinion: the quant figure stays
            x = _number(raw)
            if x is None:
                return {}, [], f"{key!r} must be a number or null, got {raw!r}"
            if x <= 0:
                notes.append(f"{key} {x:g} is not a price; quant figure kept")
                continue
            values[key] = x
        else:
            x = _number(raw)
            if x is None:
                return {}, [], f"{key!r} must be a number, got {raw!r}"
            lo, hi = _RANGES[kind]
            if not lo <= x <= hi:
                notes.append(f"{key} {x:g} outside [{lo:g}, {hi:g}]; clamped")
                x = min(hi, max(lo, x))
            values[key] = x
    return values, notes, None


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
    """The quant role's figures as the prompt shows them (no report: the model writes it)."""
    skip = {"report", "evidence", "role", "notes"}
    return {k: v for k, v in out.items() if k not in skip}


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


def _messages(
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
        _role_data(role, quant, ctx), ensure_ascii=False, default=str, separators=(",", ":")
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# --- the runner -----------------------------------------------------------------------------


class LLMRunner:
    """Refines each role with one chat call (plus one retry for an unusable answer).

    One runner serves one analysis: it carries the token count against the budget.
    """

    def __init__(self, client: Any, settings: Any, errors: Any) -> None:
        self.client = client
        self.s = settings
        self.errors = errors  # the openai module, for its exception classes
        self.used_tokens = 0
        self.calls = 0
        self.models: dict[str, str] = {}
        self.fallbacks: list[str] = []
        self._lock = threading.Lock()
        # Set when the analysis fails or is cancelled: analyst threads still running make no
        # further call (one already in flight is not interrupted). The first failure is kept
        # so that a stopped role reports the cause, not just "stopped".
        self._stopped = threading.Event()
        self._cause: ServiceError | None = None

    def stop(self, cause: ServiceError | None = None) -> None:
        with self._lock:
            if self._cause is None and cause is not None:
                self._cause = cause
        self._stopped.set()

    # one HTTP call ------------------------------------------------------------------------

    def _call(self, role: str, model: str, messages: list[dict[str, str]]) -> str | None:
        if self._stopped.is_set():
            raise self._stopped_error(role)
        try:
            return self._request(role, model, messages)
        except ServiceError as exc:
            self.stop(exc)
            raise

    def _stopped_error(self, role: str) -> ServiceError:
        cause = self._cause
        if cause is not None:
            return ServiceError(cause.code, cause.message, cause.details)
        return ServiceError(
            ErrorCode.CANCELLED,
            f"the analysis was stopped before role {role} (cancelled or failed elsewhere)",
            {"role": role},
        )

    def _request(self, role: str, model: str, messages: list[dict[str, str]]) -> str | None:
        with self._lock:
            if self.used_tokens >= self.s.token_budget:
                raise self._over_budget(role)
        e = self.errors
        where = f"LLM endpoint {public_url(self.s.base_url)} (model {model!r}, role {role})"
        try:
            resp = self.client.chat.completions.create(
                model=model,
                messages=messages,
                temperature=self.s.temperature,
                max_tokens=MAX_ANSWER_TOKENS,
            )
        except e.APITimeoutError:
            raise ServiceError(
                ErrorCode.UPSTREAM_ERROR,
                f"{where} did not answer within {self.s.timeout_s:g} s "
                f"({self.s.max_retries + 1} attempts)",
                {"role": role, "model": model, "reason": "timeout"},
            ) from None
        except e.APIConnectionError as exc:
            raise ServiceError(
                ErrorCode.UPSTREAM_ERROR,
                f"{where} is unreachable after {self.s.max_retries + 1} attempts: "
                f"{self._redact(str(exc))[:300]}",
                {"role": role, "model": model, "reason": "connection"},
            ) from None
        except (e.AuthenticationError, e.PermissionDeniedError) as exc:
            raise ServiceError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"{where} rejected the API key (HTTP {exc.status_code}); set a valid key in "
                "TACORE_LLM_API_KEY",
                {"role": role, "model": model, "reason": "auth"},
            ) from None
        except e.APIStatusError as exc:
            raise ServiceError(
                ErrorCode.UPSTREAM_ERROR,
                f"{where} answered HTTP {exc.status_code}: {self._redact(str(exc))[:300]}",
                {"role": role, "model": model, "status": exc.status_code},
            ) from None
        except e.APIError as exc:  # e.g. a body that is not a chat completion at all
            raise ServiceError(
                ErrorCode.UPSTREAM_ERROR,
                f"{where} failed: {self._redact(str(exc))[:300]}",
                {"role": role, "model": model},
            ) from None
        content = None
        choices = getattr(resp, "choices", None) or []
        if choices and getattr(choices[0], "message", None) is not None:
            content = choices[0].message.content
        usage = getattr(resp, "usage", None)
        tokens = getattr(usage, "total_tokens", None) if usage is not None else None
        if not isinstance(tokens, int):
            chars = sum(len(m["content"]) for m in messages) + len(content or "")
            tokens = chars // _CHARS_PER_TOKEN
        with self._lock:
            self.used_tokens += tokens
            self.calls += 1
            over = self.used_tokens > self.s.token_budget
        if over:
            raise self._over_budget(role)
        return content

    def _redact(self, text: str) -> str:
        return redact(text, self.s.base_url, self.s.api_key)

    def _over_budget(self, role: str) -> ServiceError:
        return ServiceError(
            ErrorCode.UPSTREAM_ERROR,
            f"LLM token budget exceeded: {self.used_tokens:,} tokens used of "
            f"{self.s.token_budget:,} after {self.calls} calls (at role {role}); the analysis "
            "was stopped. Raise llm.token_budget (TACORE_LLM_TOKEN_BUDGET) or lower "
            "research_depth",
            {"tokens_used": self.used_tokens, "token_budget": self.s.token_budget, "role": role},
        )

    # one role -----------------------------------------------------------------------------

    def refine(self, role: str, quant: RoleOutput, context: dict[str, Any]) -> RoleOutput:
        is_analyst = role.endswith("_analyst") and role.split("_")[0] in roles.ANALYSTS
        if is_analyst and not quant.get("available"):
            out = dict(quant)
            out["source"] = "quant: no data, so no LLM call"
            return out
        spec = ROLE_SPECS[role]
        model = self.s.deep_model if role in DEEP_ROLES else self.s.quick_model
        with self._lock:
            self.models[role] = model
        messages = _messages(role, spec, quant, context)
        content = self._call(role, model, messages)
        values, notes, problem = validate(spec, extract_json(content))
        attempts = 1
        if problem is not None:
            attempts = 2
            retry = messages + [
                {"role": "assistant", "content": (content or "")[:2000]},
                {
                    "role": "user",
                    "content": f"That answer is not usable: {problem}. Reply with only the "
                    f"JSON object with the keys {', '.join(spec.fields)}.",
                },
            ]
            content = self._call(role, model, retry)
            values, notes, problem = validate(spec, extract_json(content))
        if problem is not None:
            with self._lock:
                self.fallbacks.append(role)
            out = dict(quant)
            out["report"] = f"**{UNUSABLE}** ({problem}).\n\n{quant['report']}"
            out["source"] = f"quant: {UNUSABLE}"
            out["llm"] = {"model": model, "attempts": attempts, "problem": problem}
            return out
        out = _merge(role, quant, values, notes, context)
        out["source"] = "llm"
        out["llm"] = {"model": model, "attempts": attempts, "notes": notes}
        return out


def _levels_check(
    ev: dict[str, Any], action: str, values: dict[str, Any], quant: RoleOutput, notes: list[str]
) -> dict[str, Any]:
    """Levels that agree with ``action``, as :func:`roles.trade_levels` defines them: for BUY
    stop < price < take-profit and target above the price, for SELL the reverse; HOLD keeps a
    long's stop and has no take-profit. A level on the wrong side is replaced by the quant
    level for that direction."""
    price = ev.get("price")
    ref = roles.trade_levels(ev, action, float(quant.get("score") or 0.0))
    long = action != "SELL"
    out: dict[str, Any] = {}
    for key in ("target_price", "stop_loss", "take_profit"):
        x = values.get(key, quant.get(key))
        if key == "take_profit" and action == "HOLD":
            if key in values and x is not None:
                notes.append(f"take_profit {x:g} dropped: {roles.HOLD_NO_TAKE_PROFIT}")
            out[key] = None
            continue
        if x is not None and price:
            wrong = (
                (key == "stop_loss" and (x >= price if long else x <= price))
                or (key == "take_profit" and (x <= price if long else x >= price))
                or (
                    key == "target_price"
                    and action != "HOLD"
                    and (x < price if action == "BUY" else x > price)
                )
            )
            if wrong:
                notes.append(f"{key} {x:g} is on the wrong side of the price for {action}")
                x = ref[key]
        out[key] = x
    return out


def _merge(
    role: str, quant: RoleOutput, v: dict[str, Any], notes: list[str], ctx: dict[str, Any]
) -> RoleOutput:
    out = dict(quant)
    ev = ctx["evidence"]
    # The quant figures the model was shown, so a reader sees where it departed from them.
    ref = [
        f"{k} {quant[k]}"
        for k in v
        if k in quant and isinstance(quant[k], int | float) and not isinstance(quant[k], bool)
    ]
    model_note = f"\n\n_Quant reference: {', '.join(ref)}_" if ref else ""
    if role.endswith("_analyst") and not role.endswith("_risk_analyst"):
        out["score"] = round(v["score"], 4)
        out["confidence"] = round(v["confidence"], 4)
        out["stance"] = roles.stance_for_score(v["score"])
        out["report"] = v["report"] + model_note
    elif role in ("bull_researcher", "bear_researcher"):
        side = role.split("_")[0].capitalize()
        out["report"] = f"### {side} researcher, round {quant['round']}\n\n{v['argument']}"
    elif role == "research_manager":
        out["recommendation"] = v["recommendation"]
        out["score"] = round(v["score"], 4)
        out["confidence"] = round(v["confidence"], 4)
        out["report"] = v["report"] + model_note
    elif role == "trader":
        out["action"] = v["action"]
        out.update(_levels_check(ev, v["action"], v, quant, notes))
        out["position_size_pct"] = round(min(v["position_size_pct"], roles.MAX_POSITION_PCT), 2)
        out["report"] = v["report"] + model_note
    elif role.endswith("_risk_analyst"):
        out["size_multiplier"] = round(v["size_multiplier"], 4)
        out["report"] = (
            f"### {quant['stance'].capitalize()} risk analyst, round {quant['round']}: "
            f"size x{v['size_multiplier']:.2f}\n\n{v['argument']}"
        )
    elif role == "portfolio_manager":
        rating = v["rating"]
        action = roles.action_for_rating(rating)
        out["rating"] = rating
        out["action"] = action
        out["confidence"] = round(v["confidence"], 4)
        out["risk_score"] = round(v["risk_score"], 4)
        out.update(_levels_check(ev, action, v, quant, notes))
        if v["position_size_pct"] > roles.MAX_POSITION_PCT:
            notes.append(
                f"position_size_pct {v['position_size_pct']:g} above the "
                f"{roles.MAX_POSITION_PCT:g}% cap; capped"
            )
        out["position_size_pct"] = round(min(v["position_size_pct"], roles.MAX_POSITION_PCT), 2)
        out["reasoning"] = v["reasoning"]
        out["report"] = (
            f"## Portfolio manager: {rating} ({action})\n\n{v['reasoning']}" + model_note
        )
    if notes:
        out["report"] += "\n\n" + "\n".join(f"- Note: {n}" for n in notes)
    return out


# --- the engine -----------------------------------------------------------------------------


class LLMEngine:
    name = "llm"

    def __init__(self, settings: Any) -> None:
        try:
            import openai
        except ImportError:
            raise ServiceError(
                ErrorCode.ENGINE_UNAVAILABLE,
                "the llm analysis engine needs the 'openai' package, which is not installed; "
                "install it with: pip install 'tacoreservice[llm]'",
                {"engine": "llm", "missing_package": "openai", "install": "tacoreservice[llm]"},
            ) from None
        self._openai = openai
        self.s = settings.llm
        self._client: Any = None
        self._client_key: str | None = None
        self._lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        return {
            "engine": "llm",
            "base_url": public_url(self.s.base_url),
            "quick_model": self.s.quick_model,
            "deep_model": self.s.deep_model,
            "temperature": self.s.temperature,
            # Every prompt embeds the quant roles' figures, so a new quant model is a new
            # answer: part of the result cache key.
            "quant_model_version": quant_engine.QUANT_MODEL_VERSION,
        }

    def _get_client(self) -> Any:
        try:
            key = self.s.api_key  # read from the environment (or *_FILE) on every analysis
        except ConfigError as exc:  # a refused or unreadable TACORE_LLM_API_KEY_FILE
            raise ServiceError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"the llm engine cannot read its API key: {exc}",
                {"engine": "llm", "reason": "api key file"},
            ) from None
        if not key and not is_local_url(self.s.base_url):
            raise ServiceError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"the llm engine has no API key for {public_url(self.s.base_url)}: set "
                "TACORE_LLM_API_KEY (or OPENAI_API_KEY) in the environment, or point "
                "llm.base_url (TACORE_LLM_BASE_URL) at a local server such as Ollama",
                {"engine": "llm", "missing": "TACORE_LLM_API_KEY"},
            )
        with self._lock:
            if self._client is None or key != self._client_key:
                self._client = self._openai.OpenAI(
                    # Local servers ignore the key, but the client insists on having one.
                    api_key=key or "no-key-needed-for-local-server",
                    base_url=self.s.base_url,
                    timeout=self.s.timeout_s,
                    max_retries=self.s.max_retries,
                )
                self._client_key = key
            return self._client

    def analyze(self, provider: Any, request: AnalysisRequest, hooks: Hooks) -> dict[str, Any]:
        client = self._get_client()
        ev = compute_evidence(provider, request.symbol, request.as_of, request.timeframe)
        runner = LLMRunner(client, self.s, self._openai)
        decision = run_pipeline(ev, request, runner, hooks)
        decision["model"] = {
            **self.identity(),
            "calls": runner.calls,
            "tokens_used": runner.used_tokens,
            "token_budget": self.s.token_budget,
            "models_by_role": dict(sorted(runner.models.items())),
            "fallback_roles": sorted(runner.fallbacks),
            "grounding": "quant evidence and quant role figures in every prompt",
        }
        return decision

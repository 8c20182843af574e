"""What each role of the ``llm`` engine must answer: the keys, their JSON schema, and the
checks an answer passes before it replaces the quant role's figures.

One :class:`RoleSpec` per role drives three things that must agree: the prompt's list of keys
(:mod:`.llm_prompts`), the JSON schema sent as ``response_format`` where the endpoint
supports schema-constrained output (:func:`role_schema`; llama.cpp compiles it to a grammar,
so even a 135M model returns JSON that parses), and :func:`validate`, which still checks every
answer: a schema bounds the shape, not the sense (a score of 7, a stop above the price).
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEEP_ROLES",
    "DIALECTS",
    "OutputFormat",
    "ROLE_SPECS",
    "RoleSpec",
    "extract_json",
    "is_plain_json",
    "refuses_format",
    "response_format",
    "role_schema",
    "validate",
]

DEEP_ROLES = frozenset({"research_manager", "portfolio_manager"})


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
        "their weights) and answer the bear's latest argument (`previous_turn`), quoting it.",
        {"argument": ("text", "your argument for this round, in markdown")},
    ),
    "bear_researcher": RoleSpec(
        "bear researcher",
        "Argue the case against buying in this debate round: build on your points (given, "
        "with their weights) and answer the bull's latest argument (`previous_turn`), "
        "quoting it.",
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
            + " Answer the previous speaker (`previous_turn`, when there is one), quoting "
            "it, and propose a multiplier for the trader's position size.",
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


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_MAX_SCAN = 40  # opening braces tried per candidate text


def extract_json(text: str | None) -> dict[str, Any] | None:
    """The first JSON object in a model's answer: code fences, reasoning blocks
    (``<think>``) and prose around it are tolerated."""
    if not text:
        return None
    if is_plain_json(text):
        # The whole answer is the object (always so under a schema): a code fence or a brace
        # quoted inside one of its strings must not be taken for the answer.
        return dict(json.loads(text))
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


def is_plain_json(text: str | None) -> bool:
    """True when the whole answer is one JSON object: it was usable as given, with no prose,
    code fence or reasoning block to cut away."""
    if not text:
        return False
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


# The text fields share the answer's token budget at this many characters a token: bounded
# strings keep a small model that rambles from running into max_tokens mid-string, which would
# cut the JSON short. English runs near 4 characters a token, but a 135M model's hashtags and
# digits run near 1.5 (a PM answer was seen cut at 384 tokens with 2.5): one character a token
# is the bound that cannot overflow. Only llama.cpp's dialect carries it (see response_format).
_TEXT_SHARE_CHARS_PER_TOKEN = 1.0
_MIN_TEXT_CHARS = 80
# llama.cpp's grammar turns a string bounded to N characters into N nested optional rules,
# walked recursively: at N = 1120 its server died with SIGSEGV on the first request (1000 did
# not, on llama-cpp-python 0.3.36). Well below that, whatever max_answer_tokens says.
MAX_TEXT_CHARS = 800
_JSON_OVERHEAD_TOKENS = 80  # keys, numbers and punctuation around the text


def role_schema(spec: RoleSpec, max_answer_tokens: int) -> dict[str, Any]:
    """The JSON schema of ``spec``'s answer, in the strict subset both OpenAI's structured
    outputs and llama.cpp's grammar converter accept: every key required, no other keys,
    nullable prices as a type list. Numeric ranges are not in it (llama.cpp's converter
    ignores minimum/maximum for numbers); :func:`validate` clamps them."""
    texts = sum(1 for kind, _ in spec.fields.values() if kind == "text") or 1
    share = (max_answer_tokens - _JSON_OVERHEAD_TOKENS) * _TEXT_SHARE_CHARS_PER_TOKEN / texts
    text_chars = min(MAX_TEXT_CHARS, max(_MIN_TEXT_CHARS, int(share)))
    props: dict[str, Any] = {}
    for key, (kind, desc) in spec.fields.items():
        if kind == "text":
            prop: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": text_chars}
        elif kind.startswith("enum:"):
            prop = {"type": "string", "enum": kind[5:].split(",")}
        elif kind == _PRICE:
            prop = {"type": ["number", "null"]}
        else:
            prop = {"type": "number"}
        props[key] = {**prop, "description": desc}
    return {
        "type": "object",
        "properties": props,
        "required": list(spec.fields),
        "additionalProperties": False,
    }


# --- asking for the schema -------------------------------------------------------------------

# The dialects of ``response_format`` tried in "auto" mode, in order: OpenAI's (also vLLM,
# Ollama, llama.cpp's own llama-server), then llama-cpp-python's server, which takes only
# ``json_object`` with a ``schema`` beside it.
DIALECTS = ("json_schema", "json_object")


def response_format(dialect: str, role: str, schema: dict[str, Any]) -> dict[str, Any]:
    if dialect == "json_schema":
        # OpenAI's strict mode refuses string length bounds; the other fields still bind.
        props = {
            k: {kk: vv for kk, vv in v.items() if kk not in ("minLength", "maxLength")}
            for k, v in schema["properties"].items()
        }
        return {
            "type": "json_schema",
            "json_schema": {
                "name": f"{role}_answer",
                "strict": True,
                "schema": {**schema, "properties": props},
            },
        }
    return {"type": "json_object", "schema": schema}


def refuses_format(status: int | None, message: str) -> bool:
    """An error that says the endpoint does not take this ``response_format`` (llama-cpp-python
    answers 500 with a validation error naming it; OpenAI and vLLM 400; FastAPI apps 422)."""
    text = message.lower()
    return status in (400, 422, 500) and "response_format" in text


class OutputFormat:
    """Which ``response_format`` dialect the endpoint takes, learnt once per engine (process).

    ``auto`` walks :data:`DIALECTS` and then plain prompting, dropping a dialect the endpoint
    refuses; an explicit dialect is never dropped (a refusal is then an error that says so);
    ``off`` sends none.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        if mode == "auto":
            self._options = list(DIALECTS)
        else:
            self._options = [] if mode == "off" else [mode]
        self._confirmed: set[str] = set()
        self._lock = threading.Lock()

    def dialect(self) -> str | None:
        with self._lock:
            return self._options[0] if self._options else None

    def confirmed(self, dialect: str) -> bool:
        with self._lock:
            return dialect in self._confirmed

    def accepted(self, dialect: str) -> None:
        with self._lock:
            self._confirmed.add(dialect)

    def refused(self, dialect: str) -> bool:
        """The endpoint refused ``dialect``: True when another choice remains to try."""
        if self.mode != "auto":
            return False
        with self._lock:
            if dialect in self._options:
                self._options.remove(dialect)
        return True

    def describe(self) -> str:
        """What the analyses ask for now: a dialect, or ``prompt`` (parse the text)."""
        return self.dialect() or "prompt"

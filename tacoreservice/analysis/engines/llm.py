"""The ``llm`` engine: each role is one chat call to an OpenAI-compatible endpoint.

Works with anything that speaks ``POST {base_url}/chat/completions``: OpenAI, DeepSeek,
Qwen (DashScope compatible mode), Ollama, vLLM, and a local GGUF model served by
llama-cpp-python (``llm.local_model``, see :mod:`.llm_server`). As in TradingAgents, analysts,
researchers, the trader and the risk debaters use the quick model; the research manager and
the portfolio manager, which weigh everything, use the deep model (a local model is both).

Grounding: the same graph runs as for the quant engine, and every role first computes its
quant output. The prompt (:mod:`.llm_prompts`) carries the role's evidence and that quant
output; the model argues the role and returns a JSON object with fixed keys
(:mod:`.llm_spec`), which replaces the quant role's figures (checked: ranges, and
stops/targets on the right side of the price); later roles read the model's figures, so an
LLM research manager's score drives the trader's levels. The debate's points and their
weights stay the quant ones: the model argues them, it cannot invent new ones. Analysts
without data (news and sentiment offline, fundamentals of crypto, and fundamentals not yet
known at as_of, see ``evidence.fundamentals_usable``) are not asked at all.

Output that parses: where the endpoint takes it, the answer's JSON schema goes as
``response_format`` (``llm.structured_output``; llama.cpp compiles it into a grammar), and
the prompt asks for the same keys either way. Each role's answer ends as one of:
- ``used``: the whole answer was the JSON object and every value passed as given;
- ``repaired``: usable after repair: the JSON cut out of prose or a code fence, a value
  clamped or dropped, a level on the wrong side replaced, or a second request;
- ``fell_back``: still unusable after the second request; the quant figures stand.
The counts per role are in the reply (``model.outputs``) and each role's report says which.

Failure handling:
- transport (timeout, connection, 429/5xx): the ``openai`` client retries ``max_retries``
  times with backoff, each attempt limited to ``timeout_s``; then the analysis stops with
  UPSTREAM_ERROR. Answering with quant figures under an "llm" label would hide an outage.
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
import logging
import threading
import time
from typing import Any
from urllib.parse import urlparse

from tacoreservice.analysis import roles
from tacoreservice.analysis.engines import quant as quant_engine
from tacoreservice.analysis.engines.llm_prompts import messages_for
from tacoreservice.analysis.engines.llm_spec import (
    DEEP_ROLES,
    ROLE_SPECS,
    OutputFormat,
    extract_json,
    is_plain_json,
    refuses_format,
    response_format,
    role_schema,
    validate,
)
from tacoreservice.analysis.evidence import compute_evidence
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
    "OUTCOMES",
    "ROLE_SPECS",
    "extract_json",
    "is_local_url",
    "public_url",
    "redact",
]

log = logging.getLogger("tacoreservice.llm")

UNUSABLE = "LLM output unusable; quant figures used"
OUTCOMES = ("used", "repaired", "fell_back")
_CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text, used only without `usage`


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


class _Usage:
    """Calls, tokens, time and outcomes, per role and in total (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.tokens = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.estimated_calls = 0  # answers without `usage`, counted at 4 characters a token
        self.seconds = 0.0
        self.roles: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, dict[str, int]] = {}

    def call(self, role: str, seconds: float, prompt: int, completion: int, total: int) -> None:
        with self.lock:
            self.calls += 1
            self.tokens += total
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.seconds += seconds
            r = self.roles.setdefault(
                role, {"calls": 0, "seconds": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
            )
            r["calls"] += 1
            r["seconds"] += seconds
            r["prompt_tokens"] += prompt
            r["completion_tokens"] += completion

    def outcome(self, role: str, outcome: str) -> None:
        with self.lock:
            counts = self.outcomes.setdefault(role, dict.fromkeys(OUTCOMES, 0))
            counts[outcome] += 1

    def add(self, other: _Usage) -> None:
        with self.lock, other.lock:
            self.calls += other.calls
            self.tokens += other.tokens
            self.prompt_tokens += other.prompt_tokens
            self.completion_tokens += other.completion_tokens
            self.estimated_calls += other.estimated_calls
            self.seconds += other.seconds
            for role, r in other.roles.items():
                mine = self.roles.setdefault(role, dict.fromkeys(r, 0))
                for k, v in r.items():
                    mine[k] += v
            for role, counts in other.outcomes.items():
                mine_o = self.outcomes.setdefault(role, dict.fromkeys(OUTCOMES, 0))
                for k, n in counts.items():
                    mine_o[k] += n

    def outputs(self) -> dict[str, Any]:
        with self.lock:
            totals = {k: sum(c[k] for c in self.outcomes.values()) for k in OUTCOMES}
            return {**totals, "by_role": {r: dict(c) for r, c in sorted(self.outcomes.items())}}

    def per_role(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            out = {}
            for role, r in sorted(self.roles.items()):
                secs = r["seconds"]
                out[role] = {
                    "calls": r["calls"],
                    "seconds": round(secs, 3),
                    "prompt_tokens": r["prompt_tokens"],
                    "completion_tokens": r["completion_tokens"],
                    "completion_tokens_per_s": round(r["completion_tokens"] / secs, 1)
                    if secs > 0
                    else None,
                }
            return out

    def summary(self) -> dict[str, Any]:
        with self.lock:
            head = {
                "calls": self.calls,
                "tokens_used": self.tokens,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "calls_without_usage": self.estimated_calls,
                "llm_seconds": round(self.seconds, 3),
            }
        return {**head, "outputs": self.outputs(), "roles": self.per_role()}


def _retryable(exc: Exception, e: Any) -> bool:
    """What the ``openai`` client itself retries: no answer, or 408/409/429/5xx."""
    if isinstance(exc, e.APIConnectionError):  # timeouts included
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 409, 429) or status >= 500)


# --- the runner -----------------------------------------------------------------------------


class LLMRunner:
    """Refines each role with one chat call (plus one retry for an unusable answer).

    One runner serves one analysis: it carries the token count against the budget.
    """

    def __init__(
        self,
        client: Any,
        settings: Any,
        errors: Any,
        output_format: OutputFormat | None = None,
        models: tuple[str, str] | None = None,
    ) -> None:
        self.client = client
        self.s = settings
        self.errors = errors  # the openai module, for its exception classes
        self.format = output_format or OutputFormat(settings.structured_output)
        quick, deep = models or (settings.quick_model, settings.deep_model)
        self.quick_model: str = quick
        self.deep_model: str = deep
        self.usage = _Usage()
        self.models: dict[str, str] = {}
        self.fallbacks: list[str] = []
        self.formats_used: set[str] = set()
        self._lock = threading.Lock()
        # Set when the analysis fails or is cancelled: analyst threads still running make no
        # further call (one already in flight is not interrupted). The first failure is kept
        # so that a stopped role reports the cause, not just "stopped".
        self._stopped = threading.Event()
        self._cause: ServiceError | None = None

    # Kept as attributes for callers that read them (the decision's model section).
    @property
    def used_tokens(self) -> int:
        return self.usage.tokens

    @property
    def calls(self) -> int:
        return self.usage.calls

    def stop(self, cause: ServiceError | None = None) -> None:
        with self._lock:
            if self._cause is None and cause is not None:
                self._cause = cause
        self._stopped.set()

    # one HTTP call ------------------------------------------------------------------------

    def _call(
        self,
        role: str,
        model: str,
        messages: list[dict[str, str]],
        schema: dict[str, Any] | None = None,
    ) -> str | None:
        if self._stopped.is_set():
            raise self._stopped_error(role)
        try:
            return self._request(role, model, messages, schema)
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

    def _create(
        self, role: str, model: str, messages: list[dict[str, str]], schema: dict[str, Any] | None
    ) -> Any:
        """The completion, in the first ``response_format`` dialect the endpoint takes.

        The first request in a dialect not yet accepted is a probe sent without the client's
        retries: a refusal is not worth their back-off. Any other retryable failure of a probe
        is followed by the retries it skipped, so the attempts add up to ``max_retries + 1``.
        """
        e = self.errors
        retries_left: int | None = None  # set after a probe failed for another reason
        while True:
            dialect = self.format.dialect() if schema is not None else None
            kwargs: dict[str, Any] = {}
            client = self.client
            probe = False
            if retries_left is not None:
                client = self.client.with_options(max_retries=retries_left)
            elif dialect is not None and not self.format.confirmed(dialect):
                client, probe = self.client.with_options(max_retries=0), True
            if dialect is not None:
                kwargs["response_format"] = response_format(dialect, role, schema or {})
            try:
                resp = client.chat.completions.create(
                    model=model,
                    messages=messages,
                    temperature=self.s.temperature,
                    max_tokens=self.s.max_answer_tokens,
                    **kwargs,
                )
            except e.APIError as exc:
                status = getattr(exc, "status_code", None)
                said = f"{exc} {getattr(exc, 'body', '')}"
                if dialect is not None and refuses_format(status, said):
                    self._refused(dialect, status, role, model)
                    continue
                if probe and self.s.max_retries > 0 and _retryable(exc, e):
                    retries_left = self.s.max_retries - 1
                    continue
                raise
            if dialect is not None:
                self.format.accepted(dialect)
            with self._lock:
                self.formats_used.add(dialect or "prompt")
            return resp

    def _refused(self, dialect: str, status: int | None, role: str, model: str) -> None:
        if not self.format.refused(dialect):
            raise ServiceError(
                ErrorCode.UPSTREAM_ERROR,
                f"LLM endpoint {public_url(self.s.base_url)} refused response_format "
                f"{dialect!r} (HTTP {status}); set llm.structured_output "
                "(TACORE_LLM_STRUCTURED_OUTPUT) to auto or off",
                {"role": role, "model": model, "structured_output": dialect},
            )
        log.info(
            "LLM endpoint %s refused response_format %r; now %s",
            public_url(self.s.base_url),
            dialect,
            self.format.describe(),
        )

    def _request(
        self,
        role: str,
        model: str,
        messages: list[dict[str, str]],
        schema: dict[str, Any] | None = None,
    ) -> str | None:
        with self.usage.lock:
            if self.usage.tokens >= self.s.token_budget:
                raise self._over_budget(role)
        e = self.errors
        where = f"LLM endpoint {public_url(self.s.base_url)} (model {model!r}, role {role})"
        started = time.perf_counter()
        try:
            resp = self._create(role, model, messages, schema)
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
        seconds = time.perf_counter() - started
        content = None
        choices = getattr(resp, "choices", None) or []
        if choices and getattr(choices[0], "message", None) is not None:
            content = choices[0].message.content
        usage = getattr(resp, "usage", None)
        total = getattr(usage, "total_tokens", None) if usage is not None else None
        prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
        completion = getattr(usage, "completion_tokens", None) if usage is not None else None
        if not isinstance(total, int):
            prompt = sum(len(m["content"]) for m in messages) // _CHARS_PER_TOKEN
            completion = len(content or "") // _CHARS_PER_TOKEN
            total = prompt + completion
            with self.usage.lock:
                self.usage.estimated_calls += 1
        prompt = prompt if isinstance(prompt, int) else 0
        completion = completion if isinstance(completion, int) else 0
        self.usage.call(role, seconds, prompt, completion, total)
        if self.usage.tokens > self.s.token_budget:
            raise self._over_budget(role)
        return content

    def _redact(self, text: str) -> str:
        return redact(text, self.s.base_url, self.s.api_key)

    def _over_budget(self, role: str) -> ServiceError:
        return ServiceError(
            ErrorCode.UPSTREAM_ERROR,
            f"LLM token budget exceeded: {self.usage.tokens:,} tokens used of "
            f"{self.s.token_budget:,} after {self.usage.calls} calls (at role {role}); the "
            "analysis was stopped. Raise llm.token_budget (TACORE_LLM_TOKEN_BUDGET) or lower "
            "research_depth",
            {
                "tokens_used": self.usage.tokens,
                "token_budget": self.s.token_budget,
                "role": role,
            },
        )

    # one role -----------------------------------------------------------------------------

    def refine(self, role: str, quant: RoleOutput, context: dict[str, Any]) -> RoleOutput:
        is_analyst = role.endswith("_analyst") and role.split("_")[0] in roles.ANALYSTS
        if is_analyst and not quant.get("available"):
            out = dict(quant)
            out["source"] = "quant: no data, so no LLM call"
            return out
        spec = ROLE_SPECS[role]
        model = self.deep_model if role in DEEP_ROLES else self.quick_model
        with self._lock:
            self.models[role] = model
        schema = role_schema(spec, self.s.max_answer_tokens)
        messages = messages_for(role, spec, quant, context)
        content = self._call(role, model, messages, schema)
        values, notes, problem = validate(spec, extract_json(content))
        repairs: list[str] = []
        attempts = 1
        if problem is not None:
            attempts = 2
            repairs.append(f"asked again: the first answer was unusable ({problem})")
            retry = messages + [
                {"role": "assistant", "content": (content or "")[:2000]},
                {
                    "role": "user",
                    "content": f"That answer is not usable: {problem}. Reply with only the "
                    f"JSON object with the keys {', '.join(spec.fields)}.",
                },
            ]
            content = self._call(role, model, retry, schema)
            values, notes, problem = validate(spec, extract_json(content))
        if problem is not None:
            with self._lock:
                self.fallbacks.append(role)
            self.usage.outcome(role, "fell_back")
            out = dict(quant)
            out["report"] = f"**{UNUSABLE}** ({problem}).\n\n{quant['report']}"
            out["source"] = f"quant: {UNUSABLE}"
            out["llm"] = {
                "model": model,
                "attempts": attempts,
                "problem": problem,
                "outcome": "fell_back",
            }
            return out
        if not is_plain_json(content):
            repairs.append("the JSON was cut out of the text around it")
        out = _merge(role, quant, values, notes, context)
        repairs.extend(notes)
        outcome = "repaired" if repairs else "used"
        self.usage.outcome(role, outcome)
        said = f"repaired: {'; '.join(repairs)}" if repairs else "used as given"
        out["report"] += f"\n\n_LLM answer ({model}): {said}._"
        out["source"] = "llm"
        out["llm"] = {
            "model": model,
            "attempts": attempts,
            "notes": notes,
            "outcome": outcome,
            "repairs": repairs,
        }
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
        self._log_dir = settings.logging.dir
        self._client: Any = None
        self._client_key: tuple[str | None, str] | None = None
        self._lock = threading.Lock()
        self.format = OutputFormat(self.s.structured_output)
        # Every analysis of this engine (process), for callers that run many: the backtest.
        self.totals = _Usage()
        self.analyses = 0
        self._local: dict[str, Any] | None = None
        if self.s.local_model:
            from tacoreservice.analysis.engines.llm_server import find_model, model_identity

            path = find_model(self.s.local_model)
            self._local = {"path": path, **model_identity(path)}

    # where the model is ---------------------------------------------------------------------

    def _endpoint(self) -> tuple[str, tuple[str, str]]:
        """(base_url, (quick, deep) model names) for the next analysis."""
        if self._local is None:
            return self.s.base_url, (self.s.quick_model, self.s.deep_model)
        alias = self._local["path"].stem  # llama-cpp-python serves one model under its alias
        url = self.s.local_server_url
        if not url:
            from tacoreservice.analysis.engines.llm_server import shared_server

            url = shared_server(self.s, self._log_dir).base_url
        return url, (alias, alias)

    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {"engine": "llm"}
        if self._local is not None:
            # The model file, not the server's URL: its port changes with every start.
            ident["local_model"] = {k: v for k, v in self._local.items() if k != "path"}
        else:
            ident.update(
                base_url=public_url(self.s.base_url),
                quick_model=self.s.quick_model,
                deep_model=self.s.deep_model,
            )
        ident.update(
            temperature=self.s.temperature,
            max_answer_tokens=self.s.max_answer_tokens,
            structured_output=self.s.structured_output,
            # Every prompt embeds the quant roles' figures, so a new quant model is a new
            # answer: part of the result cache key.
            quant_model_version=quant_engine.QUANT_MODEL_VERSION,
        )
        return ident

    def _get_client(self, base_url: str | None = None) -> Any:
        base_url = base_url or self.s.base_url
        try:
            key = self.s.api_key  # read from the environment (or *_FILE) on every analysis
        except ConfigError as exc:  # a refused or unreadable TACORE_LLM_API_KEY_FILE
            raise ServiceError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"the llm engine cannot read its API key: {exc}",
                {"engine": "llm", "reason": "api key file"},
            ) from None
        if not key and not is_local_url(base_url):
            raise ServiceError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"the llm engine has no API key for {public_url(base_url)}: set "
                "TACORE_LLM_API_KEY (or OPENAI_API_KEY) in the environment, or point "
                "llm.base_url (TACORE_LLM_BASE_URL) at a local server such as Ollama, or set "
                "llm.local_model (TACORE_LLM_LOCAL_MODEL)",
                {"engine": "llm", "missing": "TACORE_LLM_API_KEY"},
            )
        with self._lock:
            if self._client is None or (key, base_url) != self._client_key:
                self._client = self._openai.OpenAI(
                    # Local servers ignore the key, but the client insists on having one.
                    api_key=key or "no-key-needed-for-local-server",
                    base_url=base_url,
                    timeout=self.s.timeout_s,
                    max_retries=self.s.max_retries,
                )
                self._client_key = (key, base_url)
            return self._client

    def analyze(self, provider: Any, request: AnalysisRequest, hooks: Hooks) -> dict[str, Any]:
        base_url, models = self._endpoint()
        client = self._get_client(base_url)
        ev = compute_evidence(provider, request.symbol, request.as_of, request.timeframe)
        settings = self.s.model_copy(update={"base_url": base_url}) if self._local else self.s
        runner = LLMRunner(client, settings, self._openai, self.format, models)
        try:
            decision = run_pipeline(ev, request, runner, hooks)
        finally:
            self.totals.add(runner.usage)
            with self._lock:
                self.analyses += 1
        usage = runner.usage.summary()
        decision["model"] = {
            **self.identity(),
            **usage,
            "token_budget": self.s.token_budget,
            "structured_output_used": sorted(runner.formats_used),
            "models_by_role": dict(sorted(runner.models.items())),
            "fallback_roles": sorted(runner.fallbacks),
            "grounding": "quant evidence and quant role figures in every prompt",
        }
        return decision

    def usage_totals(self) -> dict[str, Any]:
        """Calls, tokens, time and outcomes over every analysis this engine ran."""
        with self._lock:
            analyses = self.analyses
        return {"analyses": analyses, **self.totals.summary()}

"""The llm engine against a local OpenAI-compatible server started by this module (no network).

The fake server answers ``POST /v1/chat/completions`` with a role-appropriate JSON object (it
reads the ``role:`` line the engine puts in the system prompt), reports ``usage``, and records
every request (role, model, messages). Per-role behaviours make it slow, return garbage, or
report huge token counts.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import orjson
import pytest

import tacoreservice.service.methods.analysis  # noqa: F401  (registers the methods)
from tacoreservice.analysis import roles
from tacoreservice.analysis.engines import clear_engines, llm, llm_prompts, load_engine
from tacoreservice.analysis.engines import quant as quant_engine
from tacoreservice.analysis.engines.llm import ROLE_SPECS, UNUSABLE, extract_json, is_local_url
from tacoreservice.analysis.evidence import compute_evidence
from tacoreservice.analysis.graph import AnalysisRequest, Hooks, run_analysis
from tacoreservice.config import LLMSettings, Settings
from tacoreservice.market_data.bundled_provider import BundledProvider
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.registry import Cancelled, MethodContext, call_method
from tests.support.http_server import serve_http
from tests.support.memory_cache import DictCache


class FakeOpenAI:
    """State shared with the handler: recorded requests and per-role behaviours."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.slow: dict[str, float] = {}  # role -> seconds to sleep before answering
        self.garbage: dict[str, int] = {}  # role -> how many answers are garbage (-1: all)
        self.usage_tokens: int | None = None  # override total_tokens
        self.overrides: dict[str, dict[str, Any]] = {}  # role -> fields merged into answer
        self.fail: dict[str, int] = {}  # role -> HTTP status answered instead
        # response_format types answered as llama-cpp-python answers a type it lacks
        self.refuse_formats: set[str] = set()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
        self.slow.clear()
        self.garbage.clear()
        self.usage_tokens = None
        self.overrides.clear()
        self.fail.clear()
        self.refuse_formats.clear()

    def roles_called(self) -> list[str]:
        return [r["role"] for r in self.requests]

    def answer(self, role: str, data: dict[str, Any]) -> str:
        price = float(data["instrument"]["price"])
        if role.endswith("_risk_analyst"):
            body: dict[str, Any] = {"size_multiplier": 0.9, "argument": f"{role} says 0.9"}
        elif role.endswith("_analyst"):
            body = {"score": 0.3, "confidence": 0.6, "report": f"## {role}\nLLM view."}
        elif role.endswith("_researcher"):
            body = {"argument": f"{role} round {data['round']}: LLM argument."}
        elif role == "research_manager":
            body = {"recommendation": "BUY", "score": 0.4, "confidence": 0.7, "report": "RM."}
        elif role == "trader":
            body = {
                "action": "BUY",
                "target_price": round(price * 1.05, 2),
                "stop_loss": round(price * 0.95, 2),
                "take_profit": round(price * 1.10, 2),
                "position_size_pct": 10,
                "report": "Trader plan.",
            }
        else:  # portfolio_manager: wrapped in prose and a code fence, as chat models do
            body = {
                "rating": "OVERWEIGHT",
                "confidence": 0.66,
                "target_price": round(price * 1.04, 2),
                "stop_loss": round(price * 0.94, 2),
                "take_profit": round(price * 1.12, 2),
                "position_size_pct": 8,
                "risk_score": 0.4,
                "reasoning": "Trend and debate favour a modest long.",
            }
            body.update(self.overrides.get(role, {}))
            return "Here is my decision:\n```json\n" + json.dumps(body) + "\n```\nThanks."
        body.update(self.overrides.get(role, {}))
        return json.dumps(body)


def _make_handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            return None

        def do_POST(self) -> None:
            # The openai client appends the route after a query in base_url ("/v1/?q=1chat/
            # completions"), so match the route's end, not the whole path.
            if not self.path.rstrip("/").endswith("chat/completions"):
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            req = json.loads(self.rfile.read(length))
            system = req["messages"][0]["content"]
            role = system.split("\n", 1)[0].removeprefix("role:").strip()
            user = req["messages"][1]["content"]
            data = json.loads(user.split("\n", 1)[1])
            fmt = req.get("response_format")
            with state.lock:
                state.requests.append(
                    {
                        "role": role,
                        "model": req["model"],
                        "messages": req["messages"],
                        "response_format": fmt,
                    }
                )
                garbage_left = state.garbage.get(role, 0)
                if garbage_left > 0:
                    state.garbage[role] = garbage_left - 1
            if fmt is not None and fmt.get("type") in state.refuse_formats:
                err = json.dumps(  # llama-cpp-python's answer, validation error and all
                    {
                        "error": {
                            "message": "1 validation error: {'type': 'literal_error', 'loc': "
                            "('body', 'response_format', 'type'), 'msg': \"Input should be "
                            "'text' or 'json_object'\"}",
                            "type": "internal_server_error",
                        }
                    }
                )
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(err)))
                self.end_headers()
                self.wfile.write(err.encode())
                return
                garbage_left = state.garbage.get(role, 0)
                if garbage_left > 0:
                    state.garbage[role] = garbage_left - 1
            delay = state.slow.get(role)
            if delay:
                time.sleep(delay)
            status = state.fail.get(role)
            if status:
                err = json.dumps({"error": {"message": f"{role} failed", "type": "server"}})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(err)))
                self.end_headers()
                self.wfile.write(err.encode())
                return
            if garbage_left != 0:
                content = "I think the stock is fine, really. {not json at all"
            else:
                content = state.answer(role, data)
            prompt_tokens = sum(len(m["content"]) for m in req["messages"]) // 4
            completion_tokens = len(content) // 4
            total = state.usage_tokens or prompt_tokens + completion_tokens
            payload = {
                "id": f"chatcmpl-{len(state.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": req["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": total,
                },
            }
            raw = json.dumps(payload).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except OSError:  # the client gave up (timeout test)
                pass

    return Handler


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[str, FakeOpenAI]]:
    state = FakeOpenAI()
    with serve_http(_make_handler(state), "fake-openai") as base:
        yield f"{base}/v1", state


@pytest.fixture
def fake(
    fake_server: tuple[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, FakeOpenAI]]:
    # A local server needs no key; make sure none leaks in from the environment.
    monkeypatch.delenv("TACORE_LLM_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake_server[1].reset()
    clear_engines()
    yield fake_server
    fake_server[1].reset()


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


def settings_for(url: str, **llm: Any) -> Settings:
    base: dict[str, Any] = {
        "base_url": url,
        "quick_model": "fake-quick",
        "deep_model": "fake-deep",
        "timeout_s": 10.0,
        "max_retries": 0,
    }
    base.update(llm)
    return Settings(llm=LLMSettings(**base))


def run(provider: BundledProvider, settings: Settings, **kw: Any) -> dict[str, Any]:
    engine = load_engine("llm", settings)
    kw.setdefault("symbol", "AAPL")
    return run_analysis(engine, provider, AnalysisRequest(**kw), Hooks())


def test_normal_run_uses_llm_answers(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    d = run(provider, settings_for(url), research_depth=3)
    assert d["engine"] == "llm"
    assert d["rating"] == "OVERWEIGHT" and d["action"] == "BUY"  # the PM's (fenced) answer
    assert d["confidence"] == pytest.approx(0.66)
    assert d["position_size_pct"] == pytest.approx(8)
    assert d["reasoning"] == "Trend and debate favour a modest long."
    assert d["debate"]["research_manager"]["recommendation"] == "BUY"
    assert "LLM view." in d["reports"]["market_analyst"]
    assert "bull_researcher round 1: LLM argument." in d["reports"]["bull_researcher"]
    # depth 3: 1 analyst with data + 1x(bull, bear) + RM + trader + 2x3 risk + PM = 12 calls
    # (the bundled fundamentals are a snapshot from after as_of: no data, no call)
    assert d["model"]["calls"] == 12 == len(server.requests)
    assert d["model"]["fallback_roles"] == []
    assert 0 < d["model"]["tokens_used"] <= d["model"]["token_budget"]
    # Analysts without data are not asked: nothing to ground an answer on.
    called = server.roles_called()
    assert "news_analyst" not in called and "sentiment_analyst" not in called
    assert "no news source" in d["reports"]["news_analyst"]


def test_quick_and_deep_models_per_role(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    d = run(provider, settings_for(url), research_depth=1)
    by_role: dict[str, set[str]] = {}
    for r in server.requests:
        by_role.setdefault(r["role"], set()).add(r["model"])
    assert by_role.pop("research_manager") == {"fake-deep"}
    assert by_role.pop("portfolio_manager") == {"fake-deep"}
    assert set(by_role) == {
        "market_analyst",
        "bull_researcher",
        "bear_researcher",
        "trader",
        "aggressive_risk_analyst",
        "neutral_risk_analyst",
        "conservative_risk_analyst",
    }
    assert all(models == {"fake-quick"} for models in by_role.values())
    assert d["model"]["models_by_role"]["portfolio_manager"] == "fake-deep"


def test_prompts_are_grounded_on_quant_evidence(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    run(provider, settings_for(url), research_depth=1, analysts=("market",))
    market = next(r for r in server.requests if r["role"] == "market_analyst")
    data = json.loads(market["messages"][1]["content"].split("\n", 1)[1])
    assert data["instrument"]["symbol"] == "AAPL"
    assert data["technical"]["rsi_14"] is not None
    assert {s["name"] for s in data["quant_figures"]["signals"]} >= {"trend", "rsi", "macd"}
    assert "Do not invent" in market["messages"][0]["content"]
    trader = next(r for r in server.requests if r["role"] == "trader")
    tdata = json.loads(trader["messages"][1]["content"].split("\n", 1)[1])
    # Later roles see the earlier roles' (LLM) outputs.
    assert tdata["research_manager"]["recommendation"] == "BUY"
    assert tdata["quant_figures"]["stop_loss"] is not None


def test_slow_answer_retries_then_upstream_error(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    server.slow["trader"] = 3.0
    settings = settings_for(url, timeout_s=0.3, max_retries=1)
    started = time.monotonic()
    with pytest.raises(ServiceError) as info:
        run(provider, settings, research_depth=1, analysts=("market",))
    assert info.value.code is ErrorCode.UPSTREAM_ERROR
    assert "did not answer within 0.3 s (2 attempts)" in info.value.message
    assert server.roles_called().count("trader") == 2  # the first attempt and one retry
    assert "portfolio_manager" not in server.roles_called()  # the analysis stopped there
    assert time.monotonic() - started < 2.9  # did not wait for the slow answers


def test_garbage_answer_falls_back_to_quant_and_says_so(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    server.garbage["research_manager"] = -1  # every answer
    d = run(provider, settings_for(url), research_depth=1)
    assert server.roles_called().count("research_manager") == 2  # asked once more, then gave up
    report = d["reports"]["research_manager"]
    assert report.startswith(f"**{UNUSABLE}**")
    assert d["model"]["fallback_roles"] == ["research_manager"]
    # The fallback is the quant research manager, so its figures are the quant ones.
    quant = run_analysis(
        load_engine("quant", Settings()), provider, AnalysisRequest("AAPL", research_depth=1)
    )
    assert d["debate"]["research_manager"]["score"] == quant["debate"]["research_manager"]["score"]
    # The rest of the graph still used the LLM.
    assert d["rating"] == "OVERWEIGHT"


def test_one_garbage_answer_is_retried(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    server.garbage["trader"] = 1
    d = run(provider, settings_for(url), research_depth=1, analysts=("market",))
    assert server.roles_called().count("trader") == 2
    assert d["model"]["fallback_roles"] == []
    assert "Trader plan." in d["reports"]["trader"]
    retry = [r for r in server.requests if r["role"] == "trader"][1]
    assert "not usable" in retry["messages"][-1]["content"]


def test_levels_on_the_wrong_side_are_replaced(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    server.overrides["portfolio_manager"] = {"stop_loss": 10_000.0, "position_size_pct": 95}
    d = run(provider, settings_for(url), research_depth=1, analysts=("market",))
    assert d["action"] == "BUY"
    assert d["stop_loss"] < d["price"]  # the quant stop for a long, not the model's
    assert d["position_size_pct"] == 20.0  # capped at the risk rule's maximum
    assert "wrong side" in d["reports"]["portfolio_manager"]


def test_token_budget_exceeded_aborts(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    server.usage_tokens = 40_000
    with pytest.raises(ServiceError) as info:
        run(provider, settings_for(url, token_budget=100_000), research_depth=1)
    assert info.value.code is ErrorCode.UPSTREAM_ERROR
    assert "token budget exceeded" in info.value.message
    assert info.value.details and info.value.details["tokens_used"] == 120_000
    assert len(server.requests) == 3  # stopped at the call that went over


def test_no_key_for_a_remote_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TACORE_LLM_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    clear_engines()
    ctx = MethodContext(settings=Settings(), cache=DictCache())
    with pytest.raises(ServiceError) as info:
        call_method("analyze.stock", {"symbol": "AAPL", "engine": "llm"}, ctx)
    assert info.value.code is ErrorCode.ENGINE_UNAVAILABLE
    assert "TACORE_LLM_API_KEY" in info.value.message


def test_llm_answers_are_cached(fake: tuple[str, FakeOpenAI]) -> None:
    url, server = fake
    ctx = MethodContext(settings=settings_for(url), cache=DictCache())
    params = {"symbol": "MSFT", "engine": "llm", "research_depth": 1, "analysis_type": "technical"}
    first = call_method("analyze.stock", params, ctx)
    calls = len(server.requests)
    second = call_method("analyze.stock", params, ctx)
    assert (first["cached"], second["cached"]) == (False, True)
    assert len(server.requests) == calls
    assert second["rating"] == first["rating"]
    # Another model is another answer, not the cached one.
    ctx2 = MethodContext(
        settings=settings_for(url, deep_model="fake-deep-2"),
        cache=ctx.cache,
    )
    third = call_method("analyze.stock", params, ctx2)
    assert third["cached"] is False and len(server.requests) > calls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure! Here it is:\n```json\n{"a": {"b": "}"}}\n```', {"a": {"b": "}"}}),
        ('<think>maybe {"a": 0}?</think>\n{"a": 2}', {"a": 2}),
        ('prose {broken json} then {"a": 3} done', {"a": 3}),
        ("[1, 2, 3]", None),
        ("no json", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_json(text: str | None, expected: dict[str, Any] | None) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:11434/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://192.168.1.20:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://api.deepseek.com", False),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1", False),
    ],
)
def test_is_local_url(url: str, local: bool) -> None:
    assert is_local_url(url) is local


# --- no look-ahead through the prompts ------------------------------------------------------


class PointInTimeFundamentals(BundledProvider):
    """The bundled data, with the fundamentals declared point-in-time (usable at any as_of)."""

    name = "bundled-point-in-time"

    def fundamentals(self, symbol: str) -> dict[str, Any] | None:
        found = super().fundamentals(symbol)
        return None if found is None else {**found, "point_in_time": True}


@pytest.fixture(scope="module")
def pit_provider() -> PointInTimeFundamentals:
    return PointInTimeFundamentals()


def test_later_fundamentals_are_not_shown_to_the_model(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider, pit_provider: BundledProvider
) -> None:
    url, server = fake
    day = "2024-06-14"
    d = run(provider, settings_for(url), research_depth=1, as_of=day)
    assert "fundamentals_analyst" not in server.roles_called()
    assert d["analysts"]["weights"]["fundamentals"] == 0.0
    assert "leak the future" in d["reports"]["fundamentals_analyst"]
    for r in server.requests:
        text = json.dumps(r["messages"], ensure_ascii=False)
        assert "pe_ratio" not in text and "figures_not_used" not in text, r["role"]
    # Even if the role were asked, its data would carry no figures, only why.
    ev = compute_evidence(provider, "AAPL", day)
    as_if = {**roles.fundamentals_analyst(ev), "available": True}
    data = llm_prompts._role_data("fundamentals_analyst", as_if, {"evidence": ev})
    assert data["fundamentals"] == {
        "usable": False,
        "why": f"fundamentals snapshot dated {ev['fundamentals']['snapshot_date']} is after "
        f"as_of {day}; using it would leak the future",
    }
    assert "pe_ratio" not in json.dumps(data, ensure_ascii=False)
    # Point-in-time fundamentals are used, and the model sees them.
    server.reset()
    run(pit_provider, settings_for(url), research_depth=1, as_of=day)
    asked = [r for r in server.requests if r["role"] == "fundamentals_analyst"]
    assert len(asked) == 1 and "pe_ratio" in asked[0]["messages"][1]["content"]


# --- credentials ----------------------------------------------------------------------------

SECRET_PASSWORD = "s3cr3t-pw"
SECRET_QUERY = "SECRET-query-key"
SECRET_API_KEY = "sk-SECRET-api-key-123"


def with_credentials(url: str) -> str:
    """``url`` with user info and an api-key query parameter, as some proxies want it."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://user:{SECRET_PASSWORD}@{rest}?api-key={SECRET_QUERY}"


def assert_no_secret(text: str) -> None:
    for secret in (SECRET_PASSWORD, SECRET_QUERY, SECRET_API_KEY):
        assert secret not in text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_credentials_never_leak(
    fake: tuple[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = fake
    monkeypatch.setenv("TACORE_LLM_API_KEY", SECRET_API_KEY)
    settings = settings_for(with_credentials(url))
    identity = load_engine("llm", settings).identity()
    assert identity["base_url"] == url
    ctx = MethodContext(settings=settings, cache=DictCache())
    params = {"symbol": "AAPL", "engine": "llm", "research_depth": 1, "analysis_type": "technical"}
    d = call_method("analyze.stock", params, ctx)
    assert server.requests and d["model"]["calls"] > 0  # it really ran against the server
    assert d["model"]["base_url"] == url
    assert_no_secret(orjson.dumps(d).decode())
    assert isinstance(ctx.cache, DictCache)
    assert ctx.cache.data and all(isinstance(k, str) for k in ctx.cache.data)
    assert_no_secret(repr(ctx.cache.data))  # keys and values

    # Error messages: an HTTP error, an unreachable endpoint and a missing key.
    server.fail["market_analyst"] = 500
    with pytest.raises(ServiceError) as info:
        run(BundledProvider(), settings, research_depth=1, analysts=("market",))
    assert "HTTP 500" in info.value.message
    assert_no_secret(info.value.message + repr(info.value.details))
    dead = settings_for(with_credentials(f"http://127.0.0.1:{_closed_port()}/v1"))
    with pytest.raises(ServiceError) as info:
        run(BundledProvider(), dead, research_depth=1, analysts=("market",))
    assert info.value.code is ErrorCode.UPSTREAM_ERROR and "unreachable" in info.value.message
    assert_no_secret(info.value.message + repr(info.value.details))
    monkeypatch.delenv("TACORE_LLM_API_KEY")
    remote = settings_for(with_credentials("https://proxy.example/v1"))
    with pytest.raises(ServiceError) as info:
        run(BundledProvider(), remote)
    assert info.value.code is ErrorCode.ENGINE_UNAVAILABLE
    assert "https://proxy.example/v1" in info.value.message
    assert_no_secret(info.value.message)


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://user:pw@proxy.example/v1?api-key=K&x=1#f", "https://proxy.example/v1"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1"),
        ("https://api.example.com/v1?token=T", "https://api.example.com/v1"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
    ],
)
def test_public_url(url: str, public: str) -> None:
    assert llm.public_url(url) == public


def test_redact_masks_credentials() -> None:
    url = with_credentials("https://proxy.example/v1")
    text = f"POST {url}chat/completions failed; Authorization: Bearer {SECRET_API_KEY}"
    masked = llm.redact(text, url, SECRET_API_KEY)
    assert_no_secret(masked)
    assert "proxy.example/v1" in masked and "user:" not in masked


# --- the quant model is part of the LLM engine's identity --------------------------------------


def test_quant_model_version_is_part_of_the_cache_key(
    fake: tuple[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = fake
    settings = settings_for(url)
    version = quant_engine.QUANT_MODEL_VERSION
    assert load_engine("llm", settings).identity()["quant_model_version"] == version
    ctx = MethodContext(settings=settings, cache=DictCache())
    params = {"symbol": "MSFT", "engine": "llm", "research_depth": 1, "analysis_type": "technical"}
    assert call_method("analyze.stock", params, ctx)["cached"] is False
    assert call_method("analyze.stock", params, ctx)["cached"] is True
    calls = len(server.requests)
    # A new quant model changes every prompt: the old LLM answer must not be served.
    monkeypatch.setattr(quant_engine, "QUANT_MODEL_VERSION", f"{version}-next")
    again = call_method("analyze.stock", params, ctx)
    assert again["cached"] is False and len(server.requests) > calls
    assert again["model"]["quant_model_version"] == f"{version}-next"


# --- a failure stops the other analysts' calls ----------------------------------------------


def test_failing_analyst_stops_the_other_analysts(
    fake: tuple[str, FakeOpenAI], pit_provider: BundledProvider
) -> None:
    url, server = fake
    server.fail["market_analyst"] = 500
    # In flight when the market analyst fails; its garbage answer would be asked again.
    server.slow["fundamentals_analyst"] = 0.6
    server.garbage["fundamentals_analyst"] = -1
    with pytest.raises(ServiceError) as info:
        run(pit_provider, settings_for(url), research_depth=1)
    assert info.value.code is ErrorCode.UPSTREAM_ERROR and "HTTP 500" in info.value.message
    time.sleep(1.0)  # the abandoned call answers meanwhile; no retry may follow it
    called = server.roles_called()
    assert called.count("market_analyst") == 1
    assert called.count("fundamentals_analyst") <= 1
    assert set(called) <= {"market_analyst", "fundamentals_analyst"}


def test_over_budget_analyst_stops_the_other_analysts(
    fake: tuple[str, FakeOpenAI], pit_provider: BundledProvider
) -> None:
    url, server = fake
    server.usage_tokens = 50_000
    server.slow["fundamentals_analyst"] = 0.6
    server.garbage["fundamentals_analyst"] = -1
    with pytest.raises(ServiceError) as info:
        run(pit_provider, settings_for(url, token_budget=40_000), research_depth=1)
    assert "token budget exceeded" in info.value.message
    time.sleep(1.0)
    called = server.roles_called()
    assert called.count("fundamentals_analyst") <= 1
    assert set(called) <= {"market_analyst", "fundamentals_analyst"}


def test_cancellation_stops_the_analysts_in_flight(
    fake: tuple[str, FakeOpenAI], pit_provider: BundledProvider
) -> None:
    url, server = fake
    for role in ("market_analyst", "fundamentals_analyst"):
        server.slow[role] = 0.8
        server.garbage[role] = -1  # each would be asked again after its slow answer
    seen: dict[str, float] = {}

    def check_cancelled() -> None:
        # Cancelled once both analyst calls are in flight.
        if len(server.requests) >= 2:
            seen.setdefault("at", time.monotonic())
            raise Cancelled()

    engine = load_engine("llm", settings_for(url))
    request = AnalysisRequest("AAPL", research_depth=1)
    compute_evidence(pit_provider, "AAPL")  # warm, so the calls start right away
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_analysis(engine, pit_provider, request, Hooks(check_cancelled=check_cancelled))
    # Noticed while the calls were still in flight (0.8 s each), not after they answered.
    assert "at" in seen and time.monotonic() - started < 0.75
    time.sleep(1.2)  # the abandoned calls answer meanwhile; no retry may follow them
    assert sorted(server.roles_called()) == ["fundamentals_analyst", "market_analyst"]


def test_model_levels_follow_the_direction(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    price = float(compute_evidence(provider, "AAPL")["price"])
    # A BUY whose target is below the price: replaced by the quant target for a BUY.
    server.overrides["portfolio_manager"] = {"rating": "BUY", "target_price": price * 0.9}
    d = run(provider, settings_for(url), research_depth=1, analysts=("market",))
    assert d["rating"] == "BUY" and d["target_price"] > d["price"]
    assert "target_price" in d["reports"]["portfolio_manager"]
    assert "wrong side" in d["reports"]["portfolio_manager"]
    # A HOLD has no take-profit, whatever the model proposes.
    server.reset()
    server.overrides["portfolio_manager"] = {"rating": "HOLD", "take_profit": price * 1.2}
    d = run(provider, settings_for(url), research_depth=1, analysts=("market",))
    assert d["rating"] == "HOLD" and d["take_profit"] is None
    assert d["stop_loss"] < d["price"]
    assert roles.HOLD_NO_TAKE_PROFIT in d["reports"]["portfolio_manager"]


# --- schema-constrained output and the outcome counts ----------------------------------------


def test_response_format_negotiated_once_per_engine(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    """An endpoint that refuses OpenAI's json_schema (as llama-cpp-python does) is asked in
    llama.cpp's json_object + schema dialect from then on; the refusal costs one request."""
    url, server = fake
    server.refuse_formats.add("json_schema")
    d = run(provider, settings_for(url, max_retries=2), research_depth=1, analysts=("market",))
    formats = [r["response_format"] for r in server.requests]
    assert formats[0]["type"] == "json_schema"
    assert [f["type"] for f in formats[1:]] == ["json_object"] * (len(formats) - 1)
    assert d["model"]["calls"] == len(formats) - 1  # the refusal is no answer
    assert d["model"]["structured_output_used"] == ["json_object"]
    # The schema is the role's: its keys, all required, nothing else.
    market = next(f for r, f in zip(server.requests, formats, strict=True) if f["type"] ==
                  "json_object" and r["role"] == "market_analyst")  # fmt: skip
    schema = market["schema"]
    assert schema["required"] == ["score", "confidence", "report"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["report"]["maxLength"] > 0
    # Learnt for the engine: the next analysis asks in json_object at once.
    server.reset()
    server.refuse_formats.add("json_schema")
    run(provider, settings_for(url, max_retries=2), research_depth=1, analysts=("market",))
    assert {r["response_format"]["type"] for r in server.requests} == {"json_object"}


def test_endpoint_without_structured_output_is_prompted(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    server.refuse_formats.update({"json_schema", "json_object"})
    d = run(provider, settings_for(url), research_depth=1, analysts=("market",))
    assert d["model"]["structured_output_used"] == ["prompt"]
    assert server.requests[2]["response_format"] is None
    assert d["model"]["fallback_roles"] == []


def test_structured_output_off_and_explicit(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    run(provider, settings_for(url, structured_output="off"), analysts=("market",))
    assert all(r["response_format"] is None for r in server.requests)
    # An explicit dialect the endpoint refuses is an error that says what to set.
    server.reset()
    clear_engines()
    server.refuse_formats.add("json_schema")
    with pytest.raises(ServiceError) as info:
        run(provider, settings_for(url, structured_output="json_schema"), analysts=("market",))
    assert info.value.code is ErrorCode.UPSTREAM_ERROR
    assert "TACORE_LLM_STRUCTURED_OUTPUT" in info.value.message


def test_outcomes_used_repaired_fell_back(
    fake: tuple[str, FakeOpenAI], provider: BundledProvider
) -> None:
    url, server = fake
    server.garbage["trader"] = 1  # usable when asked again: repaired
    server.garbage["research_manager"] = -1  # never usable: fell back
    server.overrides["market_analyst"] = {"confidence": 3.0}  # clamped: repaired
    d = run(provider, settings_for(url), research_depth=1, analysts=("market",))
    by_role = d["model"]["outputs"]["by_role"]
    assert by_role["trader"] == {"used": 0, "repaired": 1, "fell_back": 0}
    assert by_role["research_manager"] == {"used": 0, "repaired": 0, "fell_back": 1}
    assert by_role["market_analyst"] == {"used": 0, "repaired": 1, "fell_back": 0}
    # The PM's answer came in a code fence: cut out, so repaired.
    assert by_role["portfolio_manager"] == {"used": 0, "repaired": 1, "fell_back": 0}
    assert by_role["bull_researcher"] == {"used": 1, "repaired": 0, "fell_back": 0}
    outputs = d["model"]["outputs"]
    assert (outputs["used"], outputs["repaired"], outputs["fell_back"]) == (5, 3, 1)
    # Each report says what became of the model's answer.
    assert "repaired: asked again" in d["reports"]["trader"]
    assert "confidence 3 outside [0, 1]; clamped" in d["reports"]["market_analyst"]
    assert "cut out of the text" in d["reports"]["portfolio_manager"]
    assert "used as given" in d["reports"]["bull_researcher"]
    assert d["reports"]["research_manager"].startswith(f"**{UNUSABLE}**")
    # Per-role latency and tokens, from the answers' usage.
    roles_seen = d["model"]["roles"]
    assert roles_seen["trader"]["calls"] == 2 and roles_seen["trader"]["completion_tokens"] > 0


def test_fence_inside_an_answer_string_is_not_the_answer() -> None:
    inner = json.dumps({"score": 1})
    text = json.dumps({"argument": f"as quoted: ```json\n{inner}\n```", "x": 1})
    assert extract_json(text) == json.loads(text)


def test_backtest_with_the_llm_engine_reports_wall_time_and_tokens(
    fake: tuple[str, FakeOpenAI], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tacore backtest --engine llm` over two weeks of one symbol: one analysis a day, and
    the run's token use beside its wall time (the stand-in keeps it fast; BENCHMARKS.md has
    the real model's figures)."""
    from typer.testing import CliRunner

    from tacoreservice.cli import app

    url, server = fake
    (tmp_path / "config.yaml").write_text("llm: {max_retries: 0}\n")  # no repo config
    monkeypatch.setenv("TACORE_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("TACORE_LLM_BASE_URL", url)
    monkeypatch.setenv("TACORE_LLM_QUICK_MODEL", "fake-quick")
    monkeypatch.setenv("TACORE_LLM_DEEP_MODEL", "fake-deep")
    out = tmp_path / "bt.json"
    result = CliRunner().invoke(
        app,
        ["backtest", "--engine", "llm", "--depth", "1", "--symbols", "AAPL"]
        + ["--start", "2024-03-01", "--end", "2024-03-14", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    usage = payload["llm_usage"]
    decisions = payload["decisions"]["AAPL"]
    assert usage["analyses"] == len(decisions) >= 10  # ten trading days (and the eve)
    assert usage["calls"] == len(server.requests) > 0
    assert usage["tokens_used"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert "wall time:" in result.output
    assert f"LLM: {usage['analyses']} analyses, {usage['calls']} calls" in result.output


# --- llm.local_model: bad input ---------------------------------------------------------------


def test_local_model_that_is_not_there_is_engine_unavailable(tmp_path: Path) -> None:
    from tacoreservice.analysis.engines.llm_server import find_model

    with pytest.raises(ServiceError) as info:
        find_model(str(tmp_path / "missing.gguf"))
    assert info.value.code is ErrorCode.ENGINE_UNAVAILABLE
    assert "neither a GGUF file nor a packaged model (smollm2)" in info.value.message
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ServiceError) as info:
        find_model(str(not_gguf))
    assert "is not a GGUF file" in info.value.message
    with pytest.raises(ServiceError) as info:
        load_engine("llm", Settings(llm=LLMSettings(local_model=str(not_gguf))))
    assert info.value.code is ErrorCode.ENGINE_UNAVAILABLE


def test_service_with_a_missing_local_model_stops_at_start_and_says_why(tmp_path: Path) -> None:
    from tests.support.service import ServiceProcesses

    svc = ServiceProcesses(tmp_path, TACORE_LLM_LOCAL_MODEL=tmp_path / "nope.gguf")
    proc = svc.start_main(wait=False)
    assert proc.wait(timeout=60) == 2
    out = (tmp_path / "main-0.out").read_text()
    assert "cannot start the local model server" in out and "nope.gguf" in out


def test_local_model_identity_is_the_file_not_the_port(tmp_path: Path) -> None:
    """Results are cached by evidence and model: a local model's identity (part of the cache
    key) is its file, whatever port its server got; another file is another key."""
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    b.write_bytes(b"GGUF" + bytes(reversed(range(256))) * 64)

    def identity(path: Path, url: str) -> dict[str, Any]:
        clear_engines()
        llm_settings = LLMSettings(local_model=str(path), local_server_url=url)
        return load_engine("llm", Settings(llm=llm_settings)).identity()

    first = identity(a, "http://127.0.0.1:40001/v1")
    assert first == identity(a, "http://127.0.0.1:40002/v1")
    assert first["local_model"]["file"] == "a.gguf" and "base_url" not in first
    assert first != identity(b, "http://127.0.0.1:40001/v1")
    clear_engines()


def test_schema_string_bounds_stay_within_what_llama_cpp_survives() -> None:
    from tacoreservice.analysis.engines.llm_spec import MAX_TEXT_CHARS, role_schema

    for tokens in (64, 384, 1200, 32_768):
        for role, spec in ROLE_SPECS.items():
            schema = role_schema(spec, tokens)
            bounds = [p["maxLength"] for p in schema["properties"].values() if "maxLength" in p]
            assert bounds and all(80 <= b <= MAX_TEXT_CHARS for b in bounds), (role, tokens)
            assert schema["required"] == list(spec.fields)

"""The tradingagents engine: adapter over a stand-in package, both decision dialects."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import tacoreservice.service.methods.analysis  # noqa: F401  (registers the methods)
from tacoreservice.analysis.engines import clear_engines, load_engine
from tacoreservice.analysis.engines.tradingagents_adapter import (
    _unit,
    clear_graphs,
    normalize_decision,
    parse_rating,
)
from tacoreservice.analysis.graph import AnalysisRequest, Hooks, run_analysis
from tacoreservice.config import LLMSettings, Settings
from tacoreservice.market_data.bundled_provider import BundledProvider
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.registry import MethodContext, call_method
from tests.support.memory_cache import DictCache

STUBS = Path(__file__).resolve().parent / "stubs"


def _forget_tradingagents() -> None:
    for name in [m for m in sys.modules if m == "tradingagents" or m.startswith("tradingagents.")]:
        del sys.modules[name]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stand-in package on sys.path; yields its TradingAgentsGraph class."""
    _forget_tradingagents()
    monkeypatch.syspath_prepend(str(STUBS))
    clear_graphs()
    clear_engines()
    from tradingagents.default_config import DEFAULT_CONFIG
    from tradingagents.graph.trading_graph import TradingAgentsGraph

    TradingAgentsGraph.instances.clear()
    TradingAgentsGraph.calls.clear()
    saved = dict(DEFAULT_CONFIG)
    try:
        yield TradingAgentsGraph
    finally:
        DEFAULT_CONFIG.clear()
        DEFAULT_CONFIG.update(saved)
        clear_graphs()
        clear_engines()
        _forget_tradingagents()


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


def analyze(provider: BundledProvider, **kw: Any) -> dict[str, Any]:
    engine = load_engine("tradingagents", Settings())
    return run_analysis(engine, provider, AnalysisRequest(**kw), Hooks())


def test_english_dialect_is_normalised(stub: Any, provider: BundledProvider) -> None:
    d = analyze(provider, symbol="AAPL", as_of="2025-06-02", research_depth=4)
    assert d["engine"] == "tradingagents"
    assert d["rating"] == "OVERWEIGHT" and d["action"] == "BUY"
    # The English dialect carries no confidence or target: nothing is made up for them.
    assert d["confidence"] is None and d["target_price"] is None and d["risk_score"] is None
    assert {"confidence", "target_price", "stop_loss"} <= set(d["model"]["not_provided"])
    assert d["model"]["dialect"] == "tradingagents"
    call = stub.calls[-1]
    assert call["symbol"] == "AAPL" and call["date"] == "2025-06-02"
    assert call["analysts"] == ["market", "fundamentals", "news", "social"]
    # research_depth 4 -> 2 debate rounds and 2 risk rounds, passed through the config.
    assert call["config"]["max_debate_rounds"] == 2
    assert call["config"]["max_risk_discuss_rounds"] == 2
    assert call["config"]["online_tools"] is True  # the package's own defaults are kept
    assert d["reports"]["bull_researcher"].startswith("Bull Analyst")
    assert d["reports"]["conservative_risk_analyst"].startswith("Safe Analyst")
    assert d["reports"]["market_analyst"].startswith("market report")
    assert d["evidence"]["service_evidence"]["as_of"] == "2025-06-02"


def test_cn_dialect_is_normalised(stub: Any, provider: BundledProvider) -> None:
    from tradingagents.default_config import DEFAULT_CONFIG

    DEFAULT_CONFIG["stub_dialect"] = "cn"
    d = analyze(provider, symbol="600519", analysts=("market", "fundamentals"))
    assert d["rating"] == "BUY" and d["action"] == "BUY"
    assert d["confidence"] == pytest.approx(0.72)
    assert d["target_price"] == pytest.approx(123.45)
    assert d["risk_score"] == pytest.approx(35.0)  # the decision says risk on 0-100
    assert d["reasoning"] == "技术面向好，基本面稳健。"
    assert d["model"]["dialect"] == "tradingagents-cn"
    assert stub.calls[-1]["analysts"] == ["market", "fundamentals"]


@pytest.mark.parametrize(
    ("action", "rating", "expected_action"),
    [("卖出", "SELL", "SELL"), ("持有", "HOLD", "HOLD"), ("减持", "UNDERWEIGHT", "SELL")],
)
def test_cn_actions(
    stub: Any, provider: BundledProvider, action: str, rating: str, expected_action: str
) -> None:
    from tradingagents.default_config import DEFAULT_CONFIG

    DEFAULT_CONFIG.update({"stub_dialect": "cn", "stub_action": action})
    d = analyze(provider, symbol="600519")
    assert (d["rating"], d["action"]) == (rating, expected_action)


def test_one_graph_per_process_per_analysts_and_config(
    stub: Any, provider: BundledProvider
) -> None:
    analyze(provider, symbol="AAPL")
    analyze(provider, symbol="MSFT")
    assert len(stub.instances) == 1
    assert stub.calls[0]["graph"] == stub.calls[1]["graph"]
    analyze(provider, symbol="AAPL", analysts=("market",))
    analyze(provider, symbol="AAPL", research_depth=5)  # different rounds: different config
    assert len(stub.instances) == 3


def test_through_the_method_with_progress(stub: Any) -> None:
    seen: list[dict[str, Any]] = []
    ctx = MethodContext(
        settings=Settings(),
        cache=DictCache(),  # type: ignore[arg-type]
        progress=lambda stage, pct, detail: seen.append({"pct": pct, **(detail or {})}),
    )
    params = {"symbol": "AAPL", "engine": "tradingagents", "analysis_type": "technical"}
    d = call_method("analyze.stock", params, ctx)
    assert d["rating"] == "OVERWEIGHT" and d["cached"] is False
    assert seen[0]["roles"]["fundamentals_analyst"] == "skipped"
    assert seen[-1]["pct"] == 100.0 and seen[-1]["roles"]["portfolio_manager"] == "done"
    again = call_method("analyze.stock", params, ctx)
    assert again["cached"] is True and len(stub.calls) == 1


def test_not_installed_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _forget_tradingagents()
    clear_engines()
    clear_graphs()
    # None in sys.modules makes any import of the package fail, installed or not.
    monkeypatch.setitem(sys.modules, "tradingagents", None)
    ctx = MethodContext(settings=Settings(), cache=DictCache())  # type: ignore[arg-type]
    with pytest.raises(ServiceError) as info:
        call_method("analyze.stock", {"symbol": "AAPL", "engine": "tradingagents"}, ctx)
    assert info.value.code is ErrorCode.ENGINE_UNAVAILABLE
    assert "pip install tradingagents (or TradingAgents-CN)" in info.value.message


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("BUY", "BUY"),
        ("Overweight", "OVERWEIGHT"),
        ("underweight", "UNDERWEIGHT"),
        ("FINAL TRANSACTION PROPOSAL: **SELL**", "SELL"),
        ("We considered a BUY but conclude: HOLD.", "HOLD"),
        ("建议：卖出", "SELL"),
        ("增持", "OVERWEIGHT"),
        ("no rating here", None),
        ("", None),
        # Negations mean what they say: not buying/selling keeps the position (HOLD), not
        # holding is getting out (SELL).
        ("不建议买入", "HOLD"),
        ("综合来看，不建议买入，建议观望", "HOLD"),
        ("不推荐追高买入", "HOLD"),
        ("暂不买入", "HOLD"),
        ("不建议卖出", "HOLD"),
        ("不建议继续持有", "SELL"),
        ("不建议增持", "HOLD"),
        ("不建议卖出，建议买入", "BUY"),  # the conclusion is the last one
        ("不过建议买入", "BUY"),  # "however, buy": 不过 is no negation
        ("买入。不建议观望", "BUY"),  # "don't wait" names no direction
        ("We do not recommend a BUY.", "HOLD"),
        ("Not recommended to buy", "HOLD"),
        ("Don't sell.", "HOLD"),
        ("do not hold", "SELL"),
        ("Do not buy; SELL.", "SELL"),
    ],
)
def test_parse_rating(text: str, rating: str | None) -> None:
    assert parse_rating(text) == rating


@pytest.mark.parametrize(
    ("raw", "unit"),
    [("1%", 0.01), ("0.5%", 0.005), ("75%", 0.75), (75, 0.75), (0.3, 0.3), (1, 1.0),
     ("100%", 1.0), ("150%", None), (-0.2, None), ("n/a", None)],
)  # fmt: skip
def test_unit(raw: Any, unit: float | None) -> None:
    got = _unit(raw)
    assert got == (None if unit is None else pytest.approx(unit))


def test_identity_has_the_package_version(stub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import tradingagents

    engine = load_engine("tradingagents", Settings())
    assert engine.identity()["version"] == tradingagents.__version__ == "0.0.0-stub"
    ctx = MethodContext(settings=Settings(), cache=DictCache())
    params = {"symbol": "AAPL", "engine": "tradingagents", "analysis_type": "technical"}
    first = call_method("analyze.stock", params, ctx)
    assert first["model"]["version"] == "0.0.0-stub"
    assert call_method("analyze.stock", params, ctx)["cached"] is True
    # An upgraded package is a new answer, not the cached one.
    monkeypatch.setattr(tradingagents, "__version__", "0.0.1-stub")
    assert call_method("analyze.stock", params, ctx)["cached"] is False


def test_identity_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    _forget_tradingagents()
    clear_engines()
    monkeypatch.setitem(sys.modules, "tradingagents", None)
    assert load_engine("tradingagents", Settings()).identity()["version"] is None


SECRET_PASSWORD = "s3cr3t-pw"
SECRET_QUERY = "SECRET-query-key"
SECRET_API_KEY = "sk-SECRET-api-key-123"
SECRET_URL = f"https://user:{SECRET_PASSWORD}@proxy.example/v1?api-key={SECRET_QUERY}"


def assert_no_secret(text: str) -> None:
    for secret in (SECRET_PASSWORD, SECRET_QUERY, SECRET_API_KEY):
        assert secret not in text


def test_credentials_never_leak(stub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TACORE_LLM_API_KEY", SECRET_API_KEY)
    settings = Settings(llm=LLMSettings(base_url=SECRET_URL))
    engine = load_engine("tradingagents", settings)
    assert engine.identity()["backend_url"] == "https://proxy.example/v1"
    cache = DictCache()
    ctx = MethodContext(settings=settings, cache=cache)
    d = call_method("analyze.stock", {"symbol": "AAPL", "engine": "tradingagents"}, ctx)
    assert d["model"]["backend_url"] == "https://proxy.example/v1"
    assert_no_secret(orjson.dumps(d).decode())
    assert cache.data
    assert_no_secret(repr(cache.data))  # keys and values
    # The package itself gets the real endpoint: it has to call it.
    assert stub.calls[-1]["config"]["backend_url"] == SECRET_URL


def test_graph_failure_is_an_upstream_error_without_secrets(
    stub: Any, provider: BundledProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradingagents.default_config import DEFAULT_CONFIG

    monkeypatch.setenv("TACORE_LLM_API_KEY", SECRET_API_KEY)
    DEFAULT_CONFIG["stub_error"] = f"connection refused (key {SECRET_API_KEY})"
    engine = load_engine("tradingagents", Settings(llm=LLMSettings(base_url=SECRET_URL)))
    with pytest.raises(ServiceError) as info:
        run_analysis(engine, provider, AnalysisRequest("AAPL"), Hooks())
    err = info.value
    assert err.code is ErrorCode.UPSTREAM_ERROR
    assert "TradingAgents graph failed (RuntimeError)" in err.message
    assert "connection refused" in err.message and "proxy.example" in err.message
    assert_no_secret(err.message + repr(err.details))
    assert err.details == {"engine": "tradingagents", "exception": "RuntimeError"}


def test_cn_dict_with_percent_and_currency_strings() -> None:
    norm = normalize_decision(
        {"action": "持有", "target_price": "¥1,850.50", "confidence": "75%", "risk_score": 40}
    )
    assert norm["rating"] == "HOLD" and norm["action"] == "HOLD"
    assert norm["target_price"] == pytest.approx(1850.5)
    assert norm["confidence"] == pytest.approx(0.75)
    assert norm["risk_score"] == pytest.approx(0.40)


def test_decision_without_rating_is_an_upstream_error() -> None:
    with pytest.raises(ServiceError) as info:
        normalize_decision({"action": "???"})
    assert info.value.code is ErrorCode.UPSTREAM_ERROR

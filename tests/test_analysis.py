"""The analysis graph (quant engine), the analysis methods and the strategy backtests."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import tacoreservice.service.methods.analysis  # noqa: F401  (registers the methods)
from tacoreservice.analysis import roles
from tacoreservice.analysis.engines import load_engine
from tacoreservice.analysis.evidence import clear_caches
from tacoreservice.analysis.graph import (
    DEPTH_ROUNDS,
    ROLE_NAMES,
    AnalysisRequest,
    Hooks,
    run_analysis,
)
from tacoreservice.analysis.strategies import (
    COST_PER_SIDE,
    STRATEGY_TYPES,
    backtest,
    strategy_positions,
)
from tacoreservice.config import AnalysisSettings, Settings
from tacoreservice.market_data.bundled_provider import BUNDLED_DIR, BundledProvider
from tacoreservice.market_data.provider import Bars
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.protocol.messages import LEGACY, build_reply, parse_request
from tacoreservice.service.registry import Cancelled, MethodContext, call_method
from tests.support.memory_cache import DictCache

DECISION_KEYS = {
    "symbol",
    "name",
    "market",
    "as_of",
    "price",
    "rating",
    "action",
    "confidence",
    "target_price",
    "stop_loss",
    "take_profit",
    "position_size_pct",
    "risk_score",
    "reasoning",
    "reports",
    "evidence",
    "debate",
    "analysts",
    "research_depth",
    "rounds",
    "engine",
    "model",
    "elapsed_ms",
}
VOLATILE = ("elapsed_ms", "cached")


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


def make_ctx(provider: BundledProvider | None = None, **kw: Any) -> MethodContext:
    ctx = MethodContext(settings=Settings(), cache=DictCache(), **kw)
    if provider is not None:
        ctx._provider = provider
    return ctx


def quant(provider: BundledProvider, hooks: Hooks | None = None, **kw: Any) -> dict[str, Any]:
    return run_analysis(load_engine("quant", Settings()), provider, AnalysisRequest(**kw), hooks)


def stable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in VOLATILE}


# --- the decision ---------------------------------------------------------------------------


def test_decision_shape_is_complete(provider: BundledProvider) -> None:
    d = quant(provider, symbol="AAPL")
    assert set(d) >= DECISION_KEYS
    assert d["engine"] == "quant" and d["model"]["deterministic"] is True
    assert d["rating"] in roles.RATINGS
    assert d["action"] == roles.action_for_rating(d["rating"])
    assert 0.0 <= d["confidence"] <= 1.0 and 0.0 <= d["risk_score"] <= 1.0
    assert 0.0 <= d["position_size_pct"] <= roles.MAX_POSITION_PCT
    assert set(d["reports"]) == set(ROLE_NAMES)
    assert set(d["evidence"]) == set(ROLE_NAMES)
    assert all(isinstance(r, str) and r for r in d["reports"].values())
    price = d["price"]
    if d["action"] == "SELL":
        assert d["take_profit"] < price < d["stop_loss"]
    else:
        assert d["stop_loss"] < price < d["take_profit"]
    # The numbers each role used are in its evidence, and they are the data's.
    assert d["evidence"]["market_analyst"]["rsi"]["rsi_14"] is not None
    assert d["evidence"]["trader"]["price"] == price
    orjson.dumps(d)  # JSON-ready: no numpy types, no NaN


def test_same_request_same_answer(provider: BundledProvider) -> None:
    first = quant(provider, symbol="NVDA", research_depth=4)
    clear_caches()  # recompute the evidence too, not just reuse it
    second = quant(provider, symbol="NVDA", research_depth=4)
    assert stable(first) == stable(second)
    ctx1, ctx2 = make_ctx(provider), make_ctx(provider)
    a = call_method("analyze.stock", {"symbol": "NVDA"}, ctx1)
    b = call_method("analyze.stock", {"symbol": "NVDA"}, ctx2)
    assert (a["cached"], b["cached"]) == (False, False)
    assert stable(a) == stable(b)


def _write_truncated(src: Path, dst: Path, last_day: str) -> None:
    """Copy an OHLCV csv.gz keeping only the rows dated on or before ``last_day``."""
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln[:10] <= last_day]
    assert len(kept) < len(lines)  # there really were later bars to remove
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(gzip.compress(("\n".join(kept) + "\n").encode()))


@pytest.fixture(scope="module")
def truncated(tmp_path_factory: pytest.TempPathFactory) -> tuple[BundledProvider, str]:
    """A provider whose AAPL and SPY files end at D (fundamentals copied as they are)."""
    day = "2024-06-14"
    root = tmp_path_factory.mktemp("truncated")
    for rel in ("us/AAPL.csv.gz", "us/SPY.csv.gz"):
        _write_truncated(BUNDLED_DIR / rel, root / rel, day)
    shutil.copytree(BUNDLED_DIR / "fundamentals", root / "fundamentals")
    return BundledProvider(data_dir=root), day


def test_no_look_ahead_in_the_analysis(
    provider: BundledProvider, truncated: tuple[BundledProvider, str]
) -> None:
    short, day = truncated
    full = quant(provider, symbol="AAPL", as_of=day, research_depth=5)
    cut = quant(short, symbol="AAPL", as_of=day, research_depth=5)
    assert full["as_of"] == cut["as_of"] == day
    assert stable(full) == stable(cut)
    # And the as_of really matters: the latest analysis is a different one.
    latest = quant(provider, symbol="AAPL", research_depth=5)
    assert latest["as_of"] > day and latest["price"] != full["price"]


def test_no_look_ahead_through_the_methods(
    provider: BundledProvider, truncated: tuple[BundledProvider, str]
) -> None:
    short, day = truncated
    for method_name, params in (
        ("analyze.stock", {"symbol": "AAPL", "as_of": day}),
        ("analyze.strategy", {"symbol": "AAPL", "strategy_type": "breakout", "as_of": day}),
        ("generate.signal", {"symbol": "AAPL", "strategy": "trend", "as_of": day}),
    ):
        a = call_method(method_name, params, make_ctx(provider))
        b = call_method(method_name, params, make_ctx(short))
        assert stable(a) == stable(b), method_name


@pytest.mark.parametrize("strategy_type", STRATEGY_TYPES)
def test_strategy_positions_are_causal(provider: BundledProvider, strategy_type: str) -> None:
    """Positions up to bar k do not change when the bars after k are removed or altered."""
    full = provider.bars("BTCUSDT", "1h")
    k = len(full) - 500
    pos_full, _ = strategy_positions(strategy_type, full)
    pos_cut, _ = strategy_positions(strategy_type, full.tail(len(full)).__class__(
        time=full.time[:k], open=full.open[:k], high=full.high[:k], low=full.low[:k],
        close=full.close[:k], volume=full.volume[:k], symbol=full.symbol,
        market=full.market, timeframe=full.timeframe,
    ))  # fmt: skip
    np.testing.assert_array_equal(pos_full[:k], pos_cut)
    # Poison the future: wild prices after k must not move any earlier position.
    wild = full.close.copy()
    wild[k:] *= 3.0
    poisoned = Bars(
        time=full.time, open=full.open, high=np.maximum(full.high, wild), low=full.low,
        close=wild, volume=full.volume, symbol=full.symbol, market=full.market,
        timeframe=full.timeframe,
    )  # fmt: skip
    pos_poisoned, _ = strategy_positions(strategy_type, poisoned)
    np.testing.assert_array_equal(pos_full[:k], pos_poisoned[:k])


def test_backtest_executes_on_the_next_bar() -> None:
    n = 6
    opens = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])
    bars = Bars(
        time=np.arange(n).astype("datetime64[D]").astype("datetime64[s]"),
        open=opens, high=opens + 1, low=opens - 1, close=opens + 0.5,
        volume=np.ones(n), symbol="T", market="us", timeframe="1d",
    )  # fmt: skip
    # Signal at bar 1's close -> long from bar 2's open; exit signal at bar 3 -> out at bar 4.
    pos = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    stats = backtest(bars, pos, 252.0)
    # Costs are charged in the period of the change: entry in 12->13, exit in 14->15.
    expected = (13.0 / 12.0 - COST_PER_SIDE) * (14.0 / 13.0) * (1 - COST_PER_SIDE) - 1
    assert stats["total_return"] == pytest.approx(expected, abs=1e-6)
    assert stats["trades"] == 1 and stats["closed_trades"] == 1 and stats["win_rate"] == 1.0
    assert stats["exposure"] == pytest.approx(2 / 5)
    assert stats["max_drawdown"] <= 0.0


# --- analysts and the debate ----------------------------------------------------------------


def test_analysts_subset(provider: BundledProvider) -> None:
    seen: list[dict[str, str]] = []
    hooks = Hooks(progress=lambda stage, pct, detail: seen.append(dict(detail["roles"])))
    d = quant(provider, hooks, symbol="MSFT", analysts=("market",))
    assert d["analysts"]["selected"] == ["market"]
    assert "fundamentals_analyst" not in d["reports"] and "news_analyst" not in d["reports"]
    assert all(p["analyst"] == "market" for t in d["debate"]["investment"] for p in t["points"])
    assert seen[0]["fundamentals_analyst"] == "skipped"
    assert seen[-1] == {
        **{r: "done" for r in ROLE_NAMES},
        "fundamentals_analyst": "skipped",
        "news_analyst": "skipped",
        "sentiment_analyst": "skipped",
    }
    ctx = make_ctx(provider)
    d2 = call_method("analyze.stock", {"symbol": "MSFT", "analysts": ["technical"]}, ctx)
    assert d2["analysts"]["selected"] == ["market"] and d2["analysis_type"] == "custom"
    d3 = call_method("analyze.stock", {"symbol": "MSFT", "analysis_type": "fundamental"}, ctx)
    assert d3["analysts"]["selected"] == ["fundamentals"]


@pytest.mark.parametrize("depth", sorted(DEPTH_ROUNDS))
def test_research_depth_sets_the_rounds(provider: BundledProvider, depth: int) -> None:
    debate, risk = DEPTH_ROUNDS[depth]
    d = quant(provider, symbol="JPM", research_depth=depth)
    assert d["rounds"] == {"investment_debate": debate, "risk_debate": risk}
    inv = d["debate"]["investment"]
    assert [(t["round"], t["side"]) for t in inv] == [
        (r, s) for r in range(1, debate + 1) for s in ("bull", "bear")
    ]
    assert [(t["round"], t["stance"]) for t in d["debate"]["risk"]] == [
        (r, s) for r in range(1, risk + 1) for s in ("aggressive", "neutral", "conservative")
    ]
    assert f"round {debate}" in d["reports"]["bull_researcher"]
    assert f"round {debate + 1}" not in d["reports"]["bull_researcher"]


def test_depth_mapping_is_tradingagents_cn() -> None:
    assert DEPTH_ROUNDS == {1: (1, 1), 2: (1, 1), 3: (1, 2), 4: (2, 2), 5: (3, 3)}


def test_debate_weighs_the_strongest_points_first(provider: BundledProvider) -> None:
    d = quant(provider, symbol="AAPL", research_depth=5)
    inv = d["debate"]["investment"]
    for side in ("bull", "bear"):
        strengths = [p["strength"] for t in inv if t["side"] == side for p in t["points"]]
        assert strengths == sorted(strengths, reverse=True)
        assert all(len(t["points"]) <= roles.POINTS_PER_TURN for t in inv if t["side"] == side)
    bull = sum(t["strength"] for t in inv if t["side"] == "bull")
    bear = sum(t["strength"] for t in inv if t["side"] == "bear")
    assert d["debate"]["research_manager"]["score"] == pytest.approx(bull - bear, abs=1e-3)
    # A deeper debate hears weaker points too, so it weighs at least as much evidence.
    shallow = quant(provider, symbol="AAPL", research_depth=1)["debate"]["investment"]
    assert sum(t["strength"] for t in shallow) <= sum(t["strength"] for t in inv)


def test_crypto_fundamentals_analyst_has_no_data_and_no_weight(provider: BundledProvider) -> None:
    d = quant(provider, symbol="BTCUSDT")
    rep = d["reports"]["fundamentals_analyst"]
    assert "no data" in rep.lower() and "crypto" in rep
    assert d["analysts"]["weights"]["fundamentals"] == 0.0
    assert "fundamentals" in d["analysts"]["without_data"]
    assert d["evidence"]["fundamentals_analyst"] == {}
    assert all(
        p["analyst"] != "fundamentals" for t in d["debate"]["investment"] for p in t["points"]
    )
    # Only a fundamentals analysis of a crypto asset: no evidence, so no view at all.
    only = quant(provider, symbol="BTCUSDT", analysts=("fundamentals",))
    assert only["rating"] == "HOLD" and only["confidence"] == 0.0
    assert only["debate"]["research_manager"]["score"] == 0.0


def test_news_and_sentiment_say_they_are_unavailable_offline(provider: BundledProvider) -> None:
    d = quant(provider, symbol="AAPL")
    for analyst in ("news", "sentiment"):
        report = d["reports"][f"{analyst}_analyst"]
        assert "no data" in report.lower() and "offline" in report
        assert "carries no weight" in report
        assert d["analysts"]["weights"][analyst] == 0.0
    assert set(d["analysts"]["with_data"]) == {"market", "fundamentals"}


def test_snapshot_fundamentals_are_discounted_and_flagged(provider: BundledProvider) -> None:
    d = quant(provider, symbol="AAPL")
    assert d["analysts"]["weights"]["fundamentals"] == pytest.approx(
        roles.ANALYST_WEIGHTS["fundamentals"] * roles.FUNDAMENTALS_SNAPSHOT_DISCOUNT
    )
    assert "not point-in-time" in d["reports"]["fundamentals_analyst"]
    cn = quant(provider, symbol="600519")
    assert "classification only" in cn["reports"]["fundamentals_analyst"]
    assert cn["analysts"]["weights"]["fundamentals"] == 0.0


def test_thin_history_says_what_is_missing(provider: BundledProvider) -> None:
    first = str(np.datetime_as_string(provider.bars("AAPL").time[30], unit="D"))
    d = quant(provider, symbol="AAPL", as_of=first, analysts=("market",))
    assert d["rating"] in roles.RATINGS
    rep = d["reports"]["market_analyst"]
    assert "fewer than 50 bars" in rep
    assert "sma_200" in rep  # the evidence's own reason, quoted


# --- methods --------------------------------------------------------------------------------


def test_analyze_stock_technical_request(provider: BundledProvider) -> None:
    ctx = make_ctx(provider)
    d = call_method("analyze.stock", {"symbol": "AAPL", "analysis_type": "technical"}, ctx)
    assert d["symbol"] == "AAPL" and d["analysis_type"] == "technical"
    assert d["analysts"]["selected"] == ["market"]
    alias = call_method("analyze.symbol", {"symbol": "aapl", "analysis_type": "technical"}, ctx)
    assert alias["cached"] is True and stable(alias) == stable(d)


def test_repeat_is_a_cache_hit(provider: BundledProvider) -> None:
    ctx = make_ctx(provider)
    cache = ctx.cache
    assert isinstance(cache, DictCache)
    params = {"symbol": "KO", "research_depth": 2}
    first = call_method("analyze.stock", params, ctx)
    assert first["cached"] is False and len(cache.data) == 1
    assert list(cache.ttls.values()) == [Settings().analysis.result_cache_ttl_s]
    second = call_method("analyze.stock", params, ctx)
    assert second["cached"] is True and cache.hits == 1
    assert stable(first) == stable(second)
    # Different as_of, depth or engine options are different entries.
    call_method("analyze.stock", {**params, "as_of": "2025-01-10"}, ctx)
    call_method("analyze.stock", {**params, "research_depth": 3}, ctx)
    assert len(cache.data) == 3


def test_cache_ttl_zero_stores_nothing(provider: BundledProvider) -> None:
    ctx = MethodContext(
        settings=Settings(analysis=AnalysisSettings(result_cache_ttl_s=0)),
        cache=DictCache(),
    )
    ctx._provider = provider
    call_method("analyze.stock", {"symbol": "KO"}, ctx)
    assert ctx.cache.data == {}  # type: ignore[attr-defined]


def test_cancellation_between_roles(provider: BundledProvider) -> None:
    calls = {"n": 0}

    def progress(stage: str, pct: float, detail: dict[str, Any] | None) -> None:
        calls["n"] += 1

    ctx = make_ctx(provider, progress=progress, cancelled=lambda: calls["n"] >= 8)
    with pytest.raises(Cancelled) as info:
        call_method("analyze.stock", {"symbol": "PG", "research_depth": 5}, ctx)
    assert info.value.code is ErrorCode.CANCELLED
    assert 8 <= calls["n"] < 20  # stopped soon after, long before the ~40 steps of depth 5
    assert ctx.cache.data == {}  # type: ignore[attr-defined]  # a cancelled run is not cached


def test_progress_reports_every_role(provider: BundledProvider) -> None:
    seen: list[tuple[str, float, dict[str, Any]]] = []
    ctx = make_ctx(provider, progress=lambda s, p, d: seen.append((s, p, d or {})))
    call_method("analyze.stock", {"symbol": "PG", "research_depth": 3}, ctx)
    states = {"pending", "running", "done", "skipped"}
    assert all(set(d["roles"]) == set(ROLE_NAMES) for _s, _p, d in seen)
    assert all(set(d["roles"].values()) <= states for _s, _p, d in seen)
    pcts = [p for _s, p, _d in seen]
    assert pcts == sorted(pcts) and pcts[-1] == 100.0
    assert all(v == "done" for v in seen[-1][2]["roles"].values())


@pytest.mark.parametrize("strategy_type", STRATEGY_TYPES)
def test_analyze_strategy(provider: BundledProvider, strategy_type: str) -> None:
    ctx = make_ctx(provider)
    params = {"symbol": "BTCUSDT", "timeframe": "1h", "strategy_type": strategy_type}
    d = call_method("analyze.strategy", params, ctx)
    assert d["symbol"] == "BTCUSDT" and d["timeframe"] == "1h"
    assert d["recommendation"] in ("BUY", "SELL", "HOLD")
    assert 0.0 < d["confidence"] < 1.0
    stats = d["analysis"]["backtest"]
    for key in (
        "total_return",
        "annualized_return",
        "sharpe",
        "max_drawdown",
        "trades",
        "win_rate",
        "exposure",
    ):
        assert key in stats
    assert stats["trades"] > 0 and -1.0 <= stats["max_drawdown"] <= 0.0
    assert 0.0 <= stats["exposure"] <= 1.0
    assert d["analysis"]["parameters"] and d["analysis"]["summary"].startswith(strategy_type)


def test_legacy_analyze_strategy_request_and_reply(provider: BundledProvider) -> None:
    raw = (
        b'{"action": "analyze_strategy", "request_id": "test_001", "params": {"symbol": '
        b'"BTCUSDT", "timeframe": "1h", "strategy_type": "mean_reversion"}}'
    )
    req = parse_request(raw)
    assert req.method == "analyze.strategy" and req.dialect == LEGACY
    data = call_method(req.method, req.params, make_ctx(provider))
    reply = orjson.loads(build_reply(req.request_id, req.dialect, True, data))
    assert reply["success"] is True and reply["request_id"] == "test_001"
    assert reply["data"]["recommendation"] in ("BUY", "SELL", "HOLD")
    assert {"symbol", "analysis", "confidence", "recommendation"} <= set(reply["data"])


def test_generate_signal(provider: BundledProvider) -> None:
    ctx = make_ctx(provider)
    ai = call_method("generate.signal", {"symbol": "AAPL"}, ctx)
    assert ai["signal"] in ("BUY", "SELL", "HOLD") and ai["strategy"] == "ai"
    full = call_method("analyze.stock", {"symbol": "AAPL"}, ctx)
    assert full["cached"] is True  # generate.signal ran the same comprehensive analysis
    assert ai["signal"] == full["action"] and ai["rating"] == full["rating"]
    strat = call_method("generate.signal", {"symbol": "ETHUSDT", "strategy": "momentum"}, ctx)
    assert strat["strategy"] == "momentum" and strat["signal"] in ("BUY", "SELL", "HOLD")
    assert "total_return" in strat["backtest"]


@pytest.mark.parametrize(
    ("method_name", "params", "field"),
    [
        ("analyze.stock", {"symbol": "AAPL", "analysis_type": "astrology"}, "analysis_type"),
        ("analyze.stock", {"symbol": "AAPL", "research_depth": 6}, "research_depth"),
        ("analyze.stock", {"symbol": "AAPL", "engine": "magic"}, "engine"),
        ("analyze.stock", {}, "symbol"),
        ("analyze.strategy", {"symbol": "AAPL", "strategy_type": "martingale"}, "strategy_type"),
        ("generate.signal", {"symbol": "AAPL", "strategy": "martingale"}, "strategy"),
    ],
)
def test_invalid_params(
    provider: BundledProvider, method_name: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ServiceError) as info:
        call_method(method_name, params, make_ctx(provider))
    assert info.value.code is ErrorCode.INVALID_PARAMS
    assert field in info.value.message


def test_unknown_analyst_and_symbol_are_invalid(provider: BundledProvider) -> None:
    ctx = make_ctx(provider)
    with pytest.raises(ServiceError) as info:
        call_method("analyze.stock", {"symbol": "AAPL", "analysts": ["tarot"]}, ctx)
    assert info.value.code is ErrorCode.INVALID_PARAMS and "tarot" in info.value.message
    with pytest.raises(ServiceError) as info:
        call_method("analyze.stock", {"symbol": "NOPE"}, ctx)
    assert info.value.code is ErrorCode.INVALID_PARAMS

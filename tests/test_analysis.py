"""The analysis graph (quant engine), the analysis methods and the strategy backtests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import tacoreservice.service.methods.analysis as analysis_methods  # registers the methods
from tacoreservice.analysis import roles
from tacoreservice.analysis.engines import load_engine
from tacoreservice.analysis.evidence import compute_evidence
from tacoreservice.analysis.graph import (
    DEPTH_ROUNDS,
    ROLE_NAMES,
    AnalysisRequest,
    Hooks,
    run_analysis,
)
from tacoreservice.analysis.universe import clear_caches
from tacoreservice.backtest.strategies import (
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
from tests.support.market_data import daily_files, truncated_provider
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
    "target_exposure",
    "expected_return",
    "probability_up",
    "horizon_bars",
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


def assert_levels_agree(d: dict[str, Any]) -> None:
    """Stop, take-profit and target on the sides of the price that the rating implies.

    BUY/OVERWEIGHT: stop < price < take-profit, target above; SELL/UNDERWEIGHT: take-profit <
    price < stop, target below; HOLD: a long's stop below the price and no take-profit
    (``roles.HOLD_NO_TAKE_PROFIT``), the target on either side.
    """
    price, rating = d["price"], d["rating"]
    stop, take, target = d["stop_loss"], d["take_profit"], d["target_price"]
    where = f"{d.get('symbol')} {d.get('as_of')} {rating}: {stop=} {price=} {take=} {target=}"
    if rating in ("BUY", "OVERWEIGHT"):
        assert stop < price < take, where
        assert target is None or target > price, where  # None: a forecast of exactly 0
    elif rating in ("SELL", "UNDERWEIGHT"):
        assert take < price < stop, where
        assert target is None or target < price, where
    else:
        assert rating == "HOLD", where
        assert take is None and stop < price, where


# --- the decision ---------------------------------------------------------------------------


def test_decision_shape_is_complete(provider: BundledProvider) -> None:
    d = quant(provider, symbol="AAPL")
    assert set(d) >= DECISION_KEYS
    assert d["engine"] == "quant" and d["model"]["deterministic"] is True
    assert d["rating"] in roles.RATINGS
    assert d["action"] == roles.action_for_rating(d["rating"])
    assert 0.0 <= d["confidence"] <= 1.0 and 0.0 <= d["risk_score"] <= 100.0
    assert 0.0 <= d["position_size_pct"] <= roles.MAX_POSITION_PCT
    assert set(d["reports"]) == set(ROLE_NAMES)
    assert set(d["evidence"]) == set(ROLE_NAMES)
    assert all(isinstance(r, str) and r for r in d["reports"].values())
    assert_levels_agree(d)
    # The numbers each role used are in its evidence, and they are the data's.
    signals = d["evidence"]["market_analyst"]["signals"]
    assert signals and all("contribution" in v for v in signals.values())
    assert d["evidence"]["trader"]["price"] == d["price"]
    # The size is the decision's own: one holding read two ways, consistent with the rating.
    assert d["position_size_pct"] == pytest.approx(
        d["target_exposure"] * roles.MAX_POSITION_PCT, abs=0.01
    )
    assert d["rating"] == roles.rating_for_exposure(d["target_exposure"])
    assert 0.0 < d["probability_up"] < 1.0 and d["horizon_bars"] == 21
    # The model section says which calibration decided, fitted before the as_of.
    cal = d["model"]["calibration"]
    assert cal["market"] == "us" and cal["fit_day"] < d["as_of"] and cal["weights"]
    orjson.dumps(d)  # JSON-ready: no numpy types, no NaN


LEVEL_SYMBOLS = ("AAPL", "NVDA", "XOM", "600519", "BTCUSDT", "ETHUSDT")


@pytest.mark.parametrize("symbol", LEVEL_SYMBOLS)
def test_levels_agree_with_every_rating(provider: BundledProvider, symbol: str) -> None:
    """All five ratings, each from the forecast whose half-Kelly size is its tier's, priced by
    the portfolio manager on the symbol's real evidence; a HOLD with a negative forecast too."""
    ev = compute_evidence(provider, symbol, "2025-06-30")
    f = ev["forecast"]
    per_exposure = 0.5 * np.sqrt(f["bars_per_year"] / f["horizon_bars"]) / f["volatility_ann"]
    seen = set()
    for exposure in (1.0, 0.75, 0.5, 0.25, 0.0):
        score = exposure / per_exposure if exposure else -0.2
        rating = roles.rating_for_exposure(exposure)
        rec = roles.action_for_rating(rating)
        rm = {"score": score, "recommendation": rec, "evidence": {"half_kelly": exposure}}
        trade = roles.trader(ev, rm)
        pm = roles.portfolio_manager(ev, {}, rm, trade, [])
        assert pm["rating"] == rating and pm["exposure"] == pytest.approx(exposure, abs=1e-3)
        assert_levels_agree({**pm, "price": ev["price"], "symbol": symbol, "as_of": ev["as_of"]})
        seen.add(pm["rating"])
        assert trade["take_profit"] is None if rec == "HOLD" else trade["take_profit"] is not None
        if rec == "HOLD":
            assert roles.HOLD_NO_TAKE_PROFIT in trade["report"]
    assert seen == set(roles.RATINGS)
    hold_down = roles.trade_levels(ev, "HOLD", -0.3)
    assert hold_down["target_price"] < ev["price"] and hold_down["take_profit"] is None


def test_levels_agree_in_real_decisions(provider: BundledProvider) -> None:
    for symbol in LEVEL_SYMBOLS:
        for as_of in ("2023-03-15", "2024-06-14", "2025-06-30"):
            assert_levels_agree(quant(provider, symbol=symbol, as_of=as_of))


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


@pytest.fixture(scope="module")
def truncated(tmp_path_factory: pytest.TempPathFactory) -> tuple[BundledProvider, str]:
    """A provider whose AAPL and SPY files end at D (fundamentals copied as they are)."""
    day = "2024-06-14"
    return truncated_provider(tmp_path_factory.mktemp("truncated"), day), day


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
    # Every point quotes its signal's measured record and weight.
    points = [p for t in inv for p in t["points"] if p["signal"] != "drift"]
    assert points and all("IC" in p["text"] and "weight" in p["text"] for p in points)
    # The research manager weighs all the evidence (drift and every signal), not only what
    # the rounds got to: the forecast is the same at depth 1 and 5, and so is the decision.
    ev = compute_evidence(provider, "AAPL")
    bull, bear, _ = roles.debate_points({"market": roles.market_analyst(ev)}, ev)
    total = sum(p["score"] for p in bull) + sum(p["score"] for p in bear)
    assert d["evidence"]["research_manager"]["forecast"] == pytest.approx(total, abs=1e-4)
    assert total == pytest.approx(ev["forecast"]["s"], abs=1e-3)
    shallow = quant(provider, symbol="AAPL", research_depth=1)
    assert {k: shallow[k] for k in ("rating", "confidence", "target_exposure")} == {
        k: d[k] for k in ("rating", "confidence", "target_exposure")
    }


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
    # The bundled fundamentals are a snapshot from after the last bar: not usable either.
    assert d["analysts"]["with_data"] == ["market"]


def test_snapshot_fundamentals_after_as_of_are_not_used(provider: BundledProvider) -> None:
    d = quant(provider, symbol="AAPL")
    snapshot = provider.fundamentals("AAPL")["snapshot_date"]  # type: ignore[index]
    assert d["as_of"] < snapshot
    assert d["analysts"]["weights"]["fundamentals"] == 0.0
    why = d["analysts"]["without_data"]["fundamentals"]
    assert why == (
        f"fundamentals snapshot dated {snapshot} is after as_of {d['as_of']}; using it would "
        "leak the future"
    )
    report = d["reports"]["fundamentals_analyst"]
    assert why in report and "carries no weight" in report
    # The figures are shown, labelled as not used, and never reach a signal or the debate.
    ev = d["evidence"]["fundamentals_analyst"]
    assert ev["used"] is False and ev["why_not_used"] == why
    assert ev["figures_not_used"]["pe_ratio"] is not None
    assert all(
        p["analyst"] != "fundamentals" for t in d["debate"]["investment"] for p in t["points"]
    )
    assert "P/E" not in report
    cn = quant(provider, symbol="600519")
    assert "classification only" in cn["reports"]["fundamentals_analyst"]
    assert cn["analysts"]["weights"]["fundamentals"] == 0.0


class ShiftedFundamentals(BundledProvider):
    """The bundled data with the fundamentals' time flags replaced (``fields``).

    All instances share one evidence-cache identity, so a test using one calls
    ``clear_caches()`` first."""

    name = "bundled-shifted-fundamentals"

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        self.fields = fields

    def fundamentals(self, symbol: str) -> dict[str, Any] | None:
        found = super().fundamentals(symbol)
        if found is None:
            return None
        out = {**found, **self.fields}
        return {k: v for k, v in out.items() if v is not None}


@pytest.mark.parametrize(
    ("fields", "usable"),
    [
        ({"point_in_time": True}, True),
        ({"snapshot_date": "2024-06-14"}, True),  # dated on the as_of itself: known then
        ({"snapshot_date": "2024-06-17"}, False),
        ({"snapshot_date": None}, False),  # undated: cannot be placed before as_of
        ({"snapshot_date": "mid-2024"}, False),
    ],
)
def test_fundamentals_are_used_only_when_known_at_as_of(
    fields: dict[str, Any], usable: bool
) -> None:
    clear_caches()
    d = quant(ShiftedFundamentals(**fields), symbol="AAPL", as_of="2024-06-14")
    assert d["as_of"] == "2024-06-14"
    weight = d["analysts"]["weights"]["fundamentals"]
    report = d["reports"]["fundamentals_analyst"]
    if usable:
        # Known at as_of: shown, but not weighed (nothing measures what they are worth).
        assert weight == 0.0 and "fundamentals" in d["analysts"]["with_data"]
        assert "P/E" in report and "not weighed" in report
    else:
        assert weight == 0.0 and "leak the future" in report
        assert "fundamentals" in d["analysts"]["without_data"]


DECISION_FIELDS = (
    "rating",
    "action",
    "confidence",
    "target_price",
    "stop_loss",
    "take_profit",
    "position_size_pct",
    "risk_score",
    "reasoning",
    "debate",
)


def test_later_fundamentals_cannot_change_an_earlier_decision(
    provider: BundledProvider, tmp_path: Path
) -> None:
    """AAPL at 2024-06-14 decides the same with and without the (later) fundamentals file."""
    for rel in daily_files():  # the whole universe: the calibration is made of it
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BUNDLED_DIR / rel, tmp_path / rel)
    without = BundledProvider(data_dir=tmp_path)  # no fundamentals folder at all
    day = "2024-06-14"
    full = quant(provider, symbol="AAPL", as_of=day, research_depth=5)
    bare = quant(without, symbol="AAPL", as_of=day, research_depth=5)
    assert full["as_of"] == bare["as_of"] == day
    assert {k: full[k] for k in DECISION_FIELDS} == {k: bare[k] for k in DECISION_FIELDS}
    for key in ("with_data", "weights", "scores"):
        assert full["analysts"][key] == bare["analysts"][key]
    assert full["analysts"]["weights"]["fundamentals"] == 0.0
    assert "leak the future" in full["analysts"]["without_data"]["fundamentals"]
    assert "is missing" in bare["analysts"]["without_data"]["fundamentals"]
    assert "carries no weight" in full["reports"]["fundamentals_analyst"]
    # Same through the method, whose cache key is the same for both (same bars, same data).
    a = call_method("analyze.stock", {"symbol": "AAPL", "as_of": day}, make_ctx(provider))
    b = call_method("analyze.stock", {"symbol": "AAPL", "as_of": day}, make_ctx(without))
    assert {k: a[k] for k in DECISION_FIELDS} == {k: b[k] for k in DECISION_FIELDS}


class FailingFundamentals(BundledProvider):
    """Fundamentals raise a third-party exception (not a ServiceError)."""

    name = "bundled-failing-fundamentals"

    def fundamentals(self, symbol: str) -> dict[str, Any] | None:
        raise RuntimeError("upstream exploded")


def test_fundamentals_provider_crash_is_reported_missing() -> None:
    d = quant(FailingFundamentals(), symbol="AAPL", as_of="2025-06-30")
    assert d["rating"] in roles.RATINGS
    why = d["analysts"]["without_data"]["fundamentals"]
    assert "RuntimeError" in why and "upstream exploded" not in why
    assert any(
        m["what"] == "fundamentals" and "RuntimeError" in m["why"] for m in d["data"]["missing"]
    )
    assert d["analysts"]["weights"]["fundamentals"] == 0.0


def test_first_bar_has_no_usable_evidence(provider: BundledProvider) -> None:
    """On AAPL's first bar there is no history to calibrate on: no view, no weight."""
    first = str(np.datetime_as_string(provider.bars("AAPL").time[0], unit="D"))
    assert first == "2021-01-11"
    d = quant(provider, symbol="AAPL", as_of=first)
    assert d["rating"] == "HOLD" and d["action"] == "HOLD" and d["confidence"] == 0.0
    assert d["analysts"]["with_data"] == []
    assert d["analysts"]["weights"]["market"] == 0.0
    assert d["analysts"]["without_data"]["market"] == (
        "no us history before 2021-01-11's month to calibrate on"
    )
    assert "No calibrated forecast" in d["reasoning"]
    assert d["stop_loss"] is None and d["take_profit"] is None and d["target_price"] is None
    assert d["position_size_pct"] is None and d["target_exposure"] is None


def test_fundamentals_alone_give_no_view() -> None:
    """Usable fundamentals on the first bar are shown, but weigh nothing: no view."""
    clear_caches()
    d = quant(ShiftedFundamentals(point_in_time=True), symbol="AAPL", as_of="2021-01-11")
    assert d["analysts"]["with_data"] == ["fundamentals"]
    assert d["analysts"]["weights"]["fundamentals"] == 0.0
    assert d["rating"] == "HOLD" and d["confidence"] == 0.0 and d["target_exposure"] is None


def test_thin_history_says_what_is_missing(provider: BundledProvider) -> None:
    first = str(np.datetime_as_string(provider.bars("AAPL").time[30], unit="D"))
    d = quant(provider, symbol="AAPL", as_of=first, analysts=("market",))
    assert d["rating"] == "HOLD" and d["target_exposure"] is None
    rep = d["reports"]["market_analyst"]
    assert "fewer than 61 daily bars" in rep and "no volatility" in rep
    assert any(m["what"] == "forecast" for m in d["data"]["missing"])


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


def test_strategy_summary_without_backtest_invents_no_figures(provider: BundledProvider) -> None:
    ctx = make_ctx(provider)
    params = {"symbol": "AAPL", "strategy_type": "trend", "as_of": "2021-01-12"}
    d = call_method("analyze.strategy", params, ctx)
    note = d["analysis"]["backtest"]["note"]
    summary = d["analysis"]["summary"]
    assert "fewer than 3 bars" in note and summary.endswith(f"No backtest: {note}.")
    for invented in ("total return", "0.0%", "0 trades", "Sharpe", "drawdown"):
        assert invented not in summary
    sig = call_method("generate.signal", {**params, "strategy": "trend"}, ctx)
    assert sig["reasoning"] == summary
    # Figures a backtest did not produce are "n/a", never 0.
    header = {"symbol": "AAPL", "timeframe": "1d"}
    partial = {
        "strategy_type": "trend",
        "signal": "HOLD",
        "position": "flat",
        "backtest": {"start": "2021-01-11T00:00:00", "end": "2021-02-11T00:00:00"},
    }
    text = analysis_methods._summary(header, partial)
    assert "total return n/a" in text and "n/a trades" in text and "0" not in text.split(":", 2)[2]


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

"""evaluate.risk and the pre-trade checks: hand-checked VaR/CVaR, each check's pass and fail,
the method in-process on the bundled history, and through a running service."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tacoreservice.client import TACoreError
from tacoreservice.config import RiskLimits, Settings
from tacoreservice.market_data import load_provider
from tacoreservice.protocol.errors import ServiceError
from tacoreservice.risk.pretrade import (
    CHECK_NAMES,
    PortfolioState,
    ProposedTrade,
    check_trade,
)
from tacoreservice.risk.statistics import var_cvar
from tacoreservice.service.registry import MethodContext, call_method, load_plugins
from tests.support.memory_cache import DictCache
from tests.support.service import ServiceProcesses, raw_request

load_plugins()

# --- VaR and CVaR against a hand-checked series ----------------------------------------------

# 20 daily returns, deliberately unsorted. Sorted: -0.05, -0.03, -0.02, -0.02, -0.01, -0.01,
# 0, 0, 0, 0.01 x4, 0.015 x2, 0.02 x5.
SERIES = [
    0.01, -0.02, 0.02, 0.0, -0.05, 0.015, 0.02, -0.01, 0.01, 0.0,
    0.02, -0.03, 0.01, 0.015, -0.02, 0.02, 0.0, 0.01, -0.01, 0.02,
]  # fmt: skip
# Hand computation:
#   sum = -0.14 + 0.04 + 0.03 + 0.10 = 0.03, so mu = 0.03 / 20 = 0.0015
#   sum of squares = 0.0044 (negatives) + 0.00285 (positives) = 0.00725
#   sum of squared deviations = 0.00725 - 20 * 0.0015**2 = 0.007205
#   sigma (ddof 1) = sqrt(0.007205 / 19) = 0.0194733...
MU = 0.0015
SIGMA = math.sqrt(0.007205 / 19)
Z95 = -1.6448536269514722  # norm.ppf(0.05)
Z99 = -2.3263478740408408  # norm.ppf(0.01)
PDF_Z95 = 0.10313564037537128  # norm.pdf(Z95)
PDF_Z99 = 0.02665214220345806  # norm.pdf(Z99)


def test_historical_var_cvar_follow_empyricals_order_statistics() -> None:
    # empyrical: VaR = numpy's interpolated percentile at 1 - c; position (n - 1) * (1 - c).
    # 95 %: position 19 * 0.05 = 0.95, between s0 = -0.05 and s1 = -0.03:
    #   -0.05 + 0.95 * 0.02 = -0.031 -> a loss of 0.031.
    # CVaR: mean of the worst int(19 * 0.05) + 1 = 1 returns = -0.05 -> 0.05.
    f95 = var_cvar(np.array(SERIES), 0.95)
    assert f95["historical_var"] == pytest.approx(0.031, abs=1e-12)
    assert f95["historical_cvar"] == pytest.approx(0.05, abs=1e-12)
    # 90 %: position 1.9, between s1 = -0.03 and s2 = -0.02: -0.03 + 0.9 * 0.01 = -0.021.
    # CVaR: worst int(1.9) + 1 = 2 returns: (-0.05 - 0.03) / 2 = -0.04.
    f90 = var_cvar(np.array(SERIES), 0.90)
    assert f90["historical_var"] == pytest.approx(0.021, abs=1e-12)
    assert f90["historical_cvar"] == pytest.approx(0.04, abs=1e-12)
    # 99 %: position 0.19: -0.05 + 0.19 * 0.02 = -0.0462.
    f99 = var_cvar(np.array(SERIES), 0.99)
    assert f99["historical_var"] == pytest.approx(0.0462, abs=1e-12)
    assert f99["historical_cvar"] == pytest.approx(0.05, abs=1e-12)


def test_parametric_var_cvar_are_the_normal_formulas() -> None:
    f95 = var_cvar(np.array(SERIES), 0.95)
    assert f95["parametric_var"] == pytest.approx(-(MU + Z95 * SIGMA), rel=1e-9)
    assert f95["parametric_var"] == pytest.approx(0.030531, abs=1e-6)
    assert f95["parametric_cvar"] == pytest.approx(-(MU - SIGMA * PDF_Z95 / 0.05), rel=1e-9)
    f99 = var_cvar(np.array(SERIES), 0.99)
    assert f99["parametric_var"] == pytest.approx(-(MU + Z99 * SIGMA), rel=1e-9)
    assert f99["parametric_cvar"] == pytest.approx(-(MU - SIGMA * PDF_Z99 / 0.01), rel=1e-9)


def test_horizon_scaling() -> None:
    one = var_cvar(np.array(SERIES), 0.95, 1)
    four = var_cvar(np.array(SERIES), 0.95, 4)
    # Historical: square-root of time. Parametric: mean * h, sigma * sqrt(h).
    assert four["historical_var"] == pytest.approx(2 * one["historical_var"])
    assert four["historical_cvar"] == pytest.approx(2 * one["historical_cvar"])
    assert four["parametric_var"] == pytest.approx(-(4 * MU + Z95 * SIGMA * 2), rel=1e-9)


# --- pre-trade checks ------------------------------------------------------------------------

OFF = RiskLimits(
    max_position_quantity=None,
    max_position_value=None,
    max_weight_per_symbol=None,
    allowed_symbols=[],
    blocked_symbols=[],
    max_daily_loss=None,
    max_leverage=None,
    max_drawdown=None,
    min_cash=None,
)


def state(**over: Any) -> PortfolioState:
    # AAPL 100 @ 100 + MSFT 50 @ 200 + cash 80,000 = equity 100,000
    base: dict[str, Any] = {
        "positions": {"AAPL": 100.0, "MSFT": 50.0},
        "prices": {"AAPL": 100.0, "MSFT": 200.0},
        "cash": 80_000.0,
        "start_of_day_equity": 100_000.0,
        "peak_equity": 100_000.0,
    }
    base.update(over)
    return PortfolioState(**base)


def buy(qty: float, symbol: str = "AAPL", price: float = 100.0) -> ProposedTrade:
    return ProposedTrade(symbol, "buy", qty, price)


def sell(qty: float, symbol: str = "AAPL", price: float = 100.0) -> ProposedTrade:
    return ProposedTrade(symbol, "sell", qty, price)


# (check, limits, state overrides, trade, expected passed, expected value_after)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], ProposedTrade, bool, Any]] = [
    ("symbol_allowed", {"blocked_symbols": ["msft"]}, {}, buy(1), True, True),
    ("symbol_allowed", {"blocked_symbols": ["aapl.us"]}, {}, buy(1), False, False),
    ("symbol_allowed", {"allowed_symbols": ["AAPL"]}, {}, buy(1), True, True),
    ("symbol_allowed", {"allowed_symbols": ["MSFT"]}, {}, buy(1), False, False),
    # Getting out of a symbol that was blocked after it was bought is always allowed.
    ("symbol_allowed", {"blocked_symbols": ["AAPL"]}, {}, sell(100), True, True),
    ("symbol_allowed", {"allowed_symbols": ["MSFT"]}, {}, sell(10), True, True),
    ("sufficient_holdings", {}, {}, sell(100), True, True),
    ("sufficient_holdings", {}, {}, sell(101), False, False),
    ("max_position_quantity", {"max_position_quantity": 150}, {}, buy(50), True, 150.0),
    ("max_position_quantity", {"max_position_quantity": 150}, {}, buy(51), False, 151.0),
    ("max_position_value", {"max_position_value": 20_000}, {}, buy(100), True, 20_000.0),
    ("max_position_value", {"max_position_value": 20_000}, {}, buy(101), False, 20_100.0),
    # weight = 25,000 / 100,000 (a buy at the mark leaves equity unchanged)
    ("max_weight_per_symbol", {"max_weight_per_symbol": 0.25}, {}, buy(150), True, 0.25),
    ("max_weight_per_symbol", {"max_weight_per_symbol": 0.25}, {}, buy(151), False, 0.251),
    # gross (40,000 + 10,000) / 100,000
    ("max_leverage", {"max_leverage": 0.5}, {}, buy(300), True, 0.5),
    ("max_leverage", {"max_leverage": 0.5}, {}, buy(301), False, 0.501),
    ("min_cash", {"min_cash": 50_000}, {}, buy(300), True, 50_000.0),
    ("min_cash", {"min_cash": 50_000}, {}, buy(301), False, 49_900.0),
    # (103,000 - 100,000) / 103,000 = 0.029126; (104,000 - 100,000) / 104,000 = 0.038462
    ("max_daily_loss", {"max_daily_loss": 0.03}, {"start_of_day_equity": 103_000}, buy(1), True,
     0.029126),
    ("max_daily_loss", {"max_daily_loss": 0.03}, {"start_of_day_equity": 104_000}, buy(1), False,
     0.038462),
    ("max_drawdown", {"max_drawdown": 0.2}, {"peak_equity": 125_000}, buy(1), True, 0.2),
    ("max_drawdown", {"max_drawdown": 0.2}, {"peak_equity": 126_000}, buy(1), False, 0.206349),
]  # fmt: skip


def test_every_check_has_a_pass_and_a_fail_case() -> None:
    covered = {(name, passed) for name, _, _, _, passed, _ in CASES}
    assert covered == {(n, p) for n in CHECK_NAMES for p in (True, False)}


@pytest.mark.parametrize(
    ("name", "limits", "over", "trade", "passed", "value"),
    CASES,
    ids=[f"{c[0]}-{'pass' if c[4] else 'fail'}" for c in CASES],
)
def test_check_pass_and_fail(
    name: str,
    limits: dict[str, Any],
    over: dict[str, Any],
    trade: ProposedTrade,
    passed: bool,
    value: Any,
) -> None:
    result = check_trade(state(**over), trade, OFF.model_copy(update=limits))
    assert [c.name for c in result.checks] == list(CHECK_NAMES)
    row = {c.name: c for c in result.checks}[name]
    assert row.passed is passed, row
    if isinstance(value, bool):
        assert row.value_after is value
    else:
        assert row.value_after == pytest.approx(value, abs=1e-6)
    assert result.approved is passed  # every other check is off or passes
    assert [c.name for c in result.failed] == ([] if passed else [name])
    if not passed:
        assert row.reason and row.reason != "limit off"
    as_dict = result.as_dict()
    assert as_dict["approved"] is passed
    assert set(as_dict["checks"][0]) == {"name", "limit", "value_after", "passed", "reason"}


def test_limits_off_still_report_every_row() -> None:
    result = check_trade(state(), buy(10_000), OFF)
    assert result.approved
    reasons = {c.name: c.reason for c in result.checks}
    assert reasons.pop("sufficient_holdings") == "a buy needs no holdings"
    assert set(reasons.values()) == {"limit off"}
    values = {c.name: c.value_after for c in result.checks}
    assert values["max_position_quantity"] == 10_100.0  # the figure is still reported
    assert values["min_cash"] == 80_000.0 - 1_000_000.0


TIGHT = RiskLimits(
    max_position_quantity=1,
    max_position_value=1,
    max_weight_per_symbol=0.01,
    max_daily_loss=0.01,
    max_leverage=0.01,
    max_drawdown=0.01,
    min_cash=1e9,
)
EXPOSURE_CHECKS = {
    "max_position_quantity",
    "max_position_value",
    "max_weight_per_symbol",
    "max_leverage",
    "max_daily_loss",
    "max_drawdown",
}


def test_a_sell_that_reduces_a_long_position_passes_the_exposure_checks() -> None:
    losing = state(start_of_day_equity=200_000, peak_equity=300_000)
    result = check_trade(losing, sell(40), TIGHT)
    rows = {c.name: c for c in result.checks}
    for name in EXPOSURE_CHECKS:
        assert rows[name].passed and rows[name].reason == "reduces exposure", rows[name]
    assert rows["min_cash"].passed and rows["min_cash"].reason == "a sell adds cash"
    assert rows["max_position_quantity"].value_after == 60.0
    assert result.approved

    bought = check_trade(losing, buy(1), TIGHT)
    assert {c.name for c in bought.failed} == EXPOSURE_CHECKS | {"min_cash"}
    # Selling more than held is not "reducing": it is refused and measured as a new position.
    oversold = check_trade(losing, sell(150), TIGHT)
    failed = {c.name for c in oversold.failed}
    assert "sufficient_holdings" in failed and "max_position_value" in failed


def test_cash_unknown_is_said_not_invented() -> None:
    limits = RiskLimits(min_cash=0, max_leverage=1.0, max_weight_per_symbol=0.5)
    result = check_trade(state(cash=None), buy(100, "MSFT", 200.0), limits)
    rows = {c.name: c for c in result.checks}
    for name in ("min_cash", "max_leverage"):
        assert rows[name].passed and rows[name].value_after is None
        assert "cash not given" in rows[name].reason
    # Without cash, equity = positions: MSFT 150 * 200 = 30,000 of 40,000.
    assert rows["max_weight_per_symbol"].value_after == pytest.approx(0.75)
    assert not rows["max_weight_per_symbol"].passed
    # The unfunded purchase is not counted as new equity: equity stays 20,000 vs 100,000.
    assert rows["max_daily_loss"].value_after == pytest.approx(0.8)


def test_missing_reference_equity_is_not_evaluable() -> None:
    result = check_trade(state(start_of_day_equity=None, peak_equity=None), buy(1), RiskLimits())
    rows = {c.name: c for c in result.checks}
    assert rows["max_daily_loss"].passed and rows["max_daily_loss"].value_after is None
    assert "start_of_day_equity not given" in rows["max_daily_loss"].reason
    assert rows["max_drawdown"].passed and "peak_equity not given" in rows["max_drawdown"].reason


def test_bad_trades_and_states_are_caller_errors() -> None:
    with pytest.raises(ValueError, match="quantity"):
        ProposedTrade("AAPL", "buy", 0, 100.0)
    with pytest.raises(ValueError, match="price"):
        ProposedTrade("AAPL", "buy", 1, math.nan)
    with pytest.raises(ValueError, match="action"):
        ProposedTrade("AAPL", "short", 1, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MSFT"):
        check_trade(state(prices={"AAPL": 100.0}), buy(1), RiskLimits())
    closed = state(
        positions={"AAPL": 100.0, "MSFT": 0.0},
        prices={"AAPL": 100.0},
        start_of_day_equity=90_000,
        peak_equity=90_000,
    )
    assert check_trade(closed, buy(1), RiskLimits()).approved  # a closed position needs no price


# --- evaluate.risk in-process ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx() -> MethodContext:
    return MethodContext(settings=Settings(), cache=DictCache())


@pytest.fixture(scope="module")
def provider() -> Any:
    return load_provider(Settings().market_data)


def risk(ctx: MethodContext, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = call_method("evaluate.risk", params, ctx)
    return result


def risk_error(ctx: MethodContext, **params: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        risk(ctx, **params)
    return info.value


def test_spy_alone_beta_one_hhi_one_and_figures_from_its_closes(
    ctx: MethodContext, provider: Any
) -> None:
    out = risk(ctx, portfolio={"SPY": 10})
    assert out["benchmark"] == "SPY" and out["beta"] == pytest.approx(1.0, abs=1e-9)
    assert out["concentration"] == {"hhi": 1.0, "effective_positions": 1.0}
    assert out["positions"]["SPY"]["weight"] == 1.0
    close = np.asarray(provider.bars("SPY").close)[-253:]
    returns = close[1:] / close[:-1] - 1
    assert out["history"]["observations"] == 252
    assert out["annual_volatility"] == pytest.approx(returns.std(ddof=1) * math.sqrt(252), 1e-5)
    drawdown = 1 - np.min(close / np.maximum.accumulate(close))
    assert out["max_drawdown"] == pytest.approx(drawdown, abs=1e-6)
    assert out["var"]["0.95"]["historical"] == pytest.approx(-np.percentile(returns, 5), abs=1e-6)
    equity = 10 * close[-1]
    assert out["equity"] == pytest.approx(equity, abs=0.01)
    v95, c95, v99 = out["var"]["0.95"], out["cvar"]["0.95"], out["var"]["0.99"]
    assert v95["historical_amount"] == pytest.approx(v95["historical"] * equity, abs=0.02)
    assert 0 < v95["historical"] < c95["historical"] and v95["historical"] < v99["historical"]
    assert 0 <= out["risk_score"] <= 100 and set(out["risk_score_components"]) == {
        "volatility",
        "tail_loss",
        "drawdown",
        "beta",
        "concentration",
    }
    assert "risk_score" in out["risk_score_formula"] and out["notes"] == []
    assert ctx.cache.data == {}  # type: ignore[attr-defined]  # nothing portfolio-specific cached


def test_weights_sum_to_one_without_cash_and_with_cash(ctx: MethodContext) -> None:
    held = {"AAPL": 100, "MSFT": 30, "XOM": 200, "JPM": 40}
    out = risk(ctx, portfolio=held)
    assert sum(p["weight"] for p in out["positions"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out["correlation"]["symbols"] == list(held)
    matrix = np.array(out["correlation"]["matrix"])
    assert matrix.shape == (4, 4) and np.allclose(np.diag(matrix), 1.0)
    assert np.allclose(matrix, matrix.T)
    with_cash = risk(ctx, portfolio=held, cash=50_000)
    total = sum(p["weight"] for p in with_cash["positions"].values()) + with_cash["cash_weight"]
    assert total == pytest.approx(1.0, abs=1e-5)
    assert with_cash["equity"] == pytest.approx(out["market_value"] + 50_000, abs=0.01)
    # Cash damps the equity's swings; concentration ignores it.
    assert with_cash["annual_volatility"] < out["annual_volatility"]
    assert with_cash["concentration"] == out["concentration"]


def test_confidence_horizon_and_lookback(ctx: MethodContext) -> None:
    base = risk(ctx, portfolio={"AAPL": 10}, confidence=0.975)
    assert list(base["var"]) == ["0.975"] and base["confidence_levels"] == [0.975]
    h4 = risk(ctx, portfolio={"AAPL": 10}, confidence=[0.975], horizon_days=4)
    assert h4["var"]["0.975"]["historical"] == pytest.approx(
        2 * base["var"]["0.975"]["historical"], abs=2e-6
    )
    short = risk(ctx, portfolio={"AAPL": 10}, lookback_days=60)
    assert short["history"]["observations"] == 60 and short["lookback_days"] == 60


def test_too_little_history_gives_null_statistics_and_says_why(ctx: MethodContext) -> None:
    out = risk(ctx, portfolio={"BTCUSDT": 1}, as_of="2022-01-20")
    assert out["var"] is None and out["annual_volatility"] is None and out["risk_score"] is None
    assert out["history"]["observations"] == 19
    assert any("only 19 aligned daily returns" in n for n in out["notes"])
    assert out["market_value"] > 0  # the valuation itself is still answered


def test_mixed_markets_name_their_benchmarks(ctx: MethodContext) -> None:
    out = risk(ctx, portfolio={"600519.SH": 100, "BTC/USDT": 0.5, "SPY": 10})
    assert set(out["positions"]) == {"600519", "BTCUSDT", "SPY"}
    assert out["benchmark"] == "CSI300"  # CN holds the most value
    bench = {s: b["benchmark"] for s, b in out["symbol_betas"].items()}
    assert bench == {"600519": "CSI300", "BTCUSDT": "BTCUSDT", "SPY": "SPY"}
    assert out["symbol_betas"]["SPY"]["beta"] == pytest.approx(1.0)
    assert any("without conversion" in n and "CSI300" in n for n in out["notes"])
    crypto = risk(ctx, portfolio={"BTCUSDT": 1, "ETHUSDT": 10})
    assert crypto["annualization_periods"] == 365 and crypto["benchmark"] == "BTCUSDT"


def test_history_is_aligned_on_the_common_dates(ctx: MethodContext, provider: Any) -> None:
    # Crypto trades every day, SPY on exchange days; BTCUSDT's data ends 2025-12-01.
    out = risk(ctx, portfolio={"SPY": 1, "BTCUSDT": 1})
    spy = {str(t)[:10] for t in provider.bars("SPY").time}
    btc = {str(t)[:10] for t in provider.bars("BTCUSDT").time}
    common = sorted(spy & btc)[-253:]
    assert out["benchmark"] == "BTCUSDT"  # crypto holds the most value
    assert (out["history"]["start"], out["history"]["end"]) == (common[0], common[-1])
    assert out["history"]["observations"] == out["correlation"]["observations"] == 252
    assert (
        out["as_of"] == "2026-01-08" and out["positions"]["BTCUSDT"]["price_date"] == "2025-12-01"
    )
    assert any("dates differ" in n for n in out["notes"])


def test_pre_trade_inputs_come_from_the_history(ctx: MethodContext, provider: Any) -> None:
    out = risk(
        ctx,
        portfolio={"AAPL": 100},
        cash=10_000,
        proposed_trade={"symbol": "msft", "action": "buy", "quantity": 5},
    )
    aapl = np.asarray(provider.bars("AAPL").close)
    msft = float(provider.bars("MSFT").close[-1])
    inputs = out["pre_trade"]["inputs"]
    assert inputs["start_of_day_equity"] == pytest.approx(100 * aapl[-2] + 10_000, abs=0.01)
    assert inputs["peak_equity"] == pytest.approx(
        100 * float(np.max(aapl[-253:])) + 10_000, abs=0.01
    )
    assert out["pre_trade"]["trade"]["price"] == pytest.approx(msft, abs=1e-5)
    assert out["approved"] is out["pre_trade"]["approved"] is True
    cash_row = {c["name"]: c for c in out["pre_trade"]["checks"]}["min_cash"]
    assert cash_row["value_after"] == pytest.approx(10_000 - 5 * msft, abs=0.01)
    assert inputs["start_of_day_equity_source"].startswith("estimated")
    assert inputs["peak_equity_source"].startswith("estimated")


def test_pre_trade_uses_the_callers_account_figures(ctx: MethodContext, provider: Any) -> None:
    # A risk guard that keeps its own account gives its start-of-day equity and peak: the
    # daily-loss and drawdown rows are measured against those, not the estimates.
    equity = 100 * float(provider.bars("AAPL").close[-1]) + 10_000
    trade = {"symbol": "MSFT", "action": "buy", "quantity": 1}
    out = risk(
        ctx,
        portfolio={"AAPL": 100},
        cash=10_000,
        proposed_trade=trade,
        start_of_day_equity=equity / 0.95,  # down 5 % today: beyond the 3 % limit
        peak_equity=equity / 0.9,  # 10 % below the peak: within the 20 % limit
    )
    rows = {c["name"]: c for c in out["pre_trade"]["checks"]}
    assert rows["max_daily_loss"]["value_after"] == pytest.approx(0.05, abs=1e-4)
    assert rows["max_daily_loss"]["passed"] is False and out["approved"] is False
    assert rows["max_drawdown"]["value_after"] == pytest.approx(0.10, abs=1e-4)
    assert rows["max_drawdown"]["passed"] is True
    inputs = out["pre_trade"]["inputs"]
    assert inputs["start_of_day_equity_source"] == inputs["peak_equity_source"] == "given"
    assert inputs["start_of_day_equity"] == pytest.approx(equity / 0.95, abs=0.01)


def test_cash_and_a_first_purchase_without_positions(ctx: MethodContext) -> None:
    out = risk(ctx, cash=100_000, proposed_trade={"symbol": "AAPL", "side": "buy", "qty": 50})
    assert out["positions"] == {} and out["var"] is None and out["equity"] == 100_000
    assert out["approved"] is True
    too_big = risk(ctx, cash=100_000, proposed_trade={"symbol": "AAPL", "side": "buy", "qty": 500})
    failed = {c["name"] for c in too_big["pre_trade"]["checks"] if not c["passed"]}
    assert too_big["approved"] is False
    assert {"max_weight_per_symbol", "max_leverage", "min_cash"} <= failed


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"portfolio": {"AAPX": 1}}, "AAPX"),
        ({"portfolio": {"AAPL": "NaN"}}, "quantity of AAPL"),
        ({"portfolio": {"AAPL": "inf"}}, "quantity of AAPL"),
        ({"portfolio": {"AAPL": 1e308}}, "quantity of AAPL"),
        ({"portfolio": {"AAPL": True}}, "quantity of AAPL must be a number"),
        ({"portfolio": {"AAPL": 1}, "confidence": [None]}, "confidence"),
        ({"portfolio": [{"symbol": "AAPL", "quantity": -5}]}, "quantity of AAPL"),
        ({"portfolio": {}}, "portfolio is empty"),
        ({"portfolio": {"AAPL": 1}, "cash": -1}, "cash"),
        ({"portfolio": {"AAPL": 1}, "confidence": 95}, "0.95"),
        ({"portfolio": {"AAPL": 1}, "horizon_days": 0}, "horizon_days"),
        ({"portfolio": {"AAPL": 1}, "start_of_day_equity": "NaN"}, "start_of_day_equity"),
        ({"portfolio": {"AAPL": 1}, "peak_equity": -5}, "peak_equity"),
        ({"portfolio": {"AAPL": 1}, "peak_equity": True}, "must be a number"),
        ({"portfolio": {"AAPL": 1, "aapl": 2}}, "AAPL twice"),
        ({"portfolio": {f"S{i}": 1 for i in range(201)}}, "at most 200"),
        ({"portfolio": {"AAPL": 1}, "proposed_trade": {"symbol": "AAPL", "action": "hold",
                                                       "quantity": 1}}, "action"),
        ({"portfolio": {"AAPL": 1}, "proposed_trade": {"symbol": "AAPL", "action": "buy",
                                                       "quantity": 0}}, "quantity"),
        ({"portfolio": {"AAPL": 1}, "proposed_trade": {"symbol": "NOPE1", "action": "buy",
                                                       "quantity": 1}}, "NOPE1"),
    ],
)  # fmt: skip
def test_bad_input_is_invalid_params_naming_the_field(
    ctx: MethodContext, params: dict[str, Any], field: str
) -> None:
    err = risk_error(ctx, **params)
    assert err.code.value == "INVALID_PARAMS" and field in err.message, err.message


def test_as_of_before_the_data_is_data_unavailable(ctx: MethodContext) -> None:
    err = risk_error(ctx, portfolio={"AAPL": 1}, as_of="2019-01-01")
    assert err.code.value == "DATA_UNAVAILABLE" and "2021-01-11" in err.message


# --- through a running service ---------------------------------------------------------------


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    tmp = tmp_path_factory.mktemp("risk")
    trading = tmp / "trading_config.yaml"
    # The service reads its limits from the trading config: block one symbol, spelt loosely.
    trading.write_text("limits:\n  blocked_symbols: [tsla.us]\n", encoding="utf-8")
    service = ServiceProcesses(tmp, workers=1, TACORE_TRADING_CONFIG=str(trading))
    service.start_main()
    yield service
    service.stop()


def test_service_both_portfolio_shapes(svc: ServiceProcesses) -> None:
    with svc.client(timeout_ms=20_000) as c:
        by_dict = c.call("evaluate.risk", {"portfolio": {"AAPL": 100, "GOOGL": 50}})
        by_list = c.call(
            "evaluate.risk",
            {
                "positions": [
                    {"symbol": "aapl", "qty": 100, "cost_basis": 150.0},
                    {"symbol": "GOOGL", "shares": 50},
                ]
            },
        )
    assert by_dict["var"] == by_list["var"] and by_dict["beta"] == by_list["beta"]
    assert set(by_dict["var"]) == {"0.95", "0.99"}
    assert "pre_trade" not in by_dict and "approved" not in by_dict
    aapl = by_list["positions"]["AAPL"]
    assert aapl["unrealised_pnl"] == pytest.approx((aapl["price"] - 150.0) * 100, abs=0.01)
    assert "cost_basis" not in by_list["positions"]["GOOGL"]


def test_service_proposed_trade_approved_and_rejected(svc: ServiceProcesses) -> None:
    held = {"portfolio": {"AAPL": 100, "MSFT": 50}, "cash": 100_000}
    with svc.client(timeout_ms=20_000) as c:
        ok = c.call(
            "evaluate.risk", {**held, "proposed_trade": {"symbol": "XOM", "side": "BUY", "qty": 10}}
        )
        blocked = c.call(
            "evaluate.risk",
            {**held, "proposed_trade": {"symbol": "TSLA", "action": "buy", "quantity": 1}},
        )
        sell_out = c.call(
            "evaluate.risk",
            {**held, "proposed_trade": {"symbol": "AAPL", "action": "sell", "quantity": 100}},
        )
    assert ok["approved"] is True
    assert [r["name"] for r in ok["pre_trade"]["checks"]] == list(CHECK_NAMES)
    assert blocked["approved"] is False
    failed = [r for r in blocked["pre_trade"]["checks"] if not r["passed"]]
    assert [r["name"] for r in failed] == ["symbol_allowed"]
    assert "blocked_symbols" in failed[0]["reason"]
    assert failed[0]["limit"]["blocked_symbols"] == ["TSLA"]
    assert sell_out["approved"] is True
    rows = {r["name"]: r for r in sell_out["pre_trade"]["checks"]}
    assert rows["max_position_value"]["reason"] == "reduces exposure"
    assert rows["max_position_quantity"]["value_after"] == 0.0


def test_service_errors_keep_the_worker_alive(svc: ServiceProcesses) -> None:
    pids = svc.worker_pids()
    with svc.client(timeout_ms=20_000, retries=0) as c:
        for params, needle in (
            ({"portfolio": {"AAPX": 1}}, "AAPX"),
            ({"portfolio": {"AAPL": "NaN"}}, "AAPL"),
            ({"portfolio": {"AAPL": -3}}, "AAPL"),
        ):
            with pytest.raises(TACoreError) as info:
                c.call("evaluate.risk", params)
            assert info.value.code == "INVALID_PARAMS" and needle in info.value.message
    # A bare NaN token is not JSON at all: the broker rejects the frame before any worker.
    body = b'{"method": "evaluate.risk", "params": {"portfolio": {"AAPL": NaN}}}'
    reply = raw_request(svc.endpoint, body)
    assert reply["status"] == "error" and reply["error"]["code"] == "PARSE_ERROR"
    assert svc.worker_pids() == pids
    with svc.client(timeout_ms=20_000) as c:
        assert c.call("evaluate.risk", {"portfolio": {"SPY": 1}})["beta"] == pytest.approx(1.0)

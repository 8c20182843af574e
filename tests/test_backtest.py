"""The backtest engine, the baselines, the engine's daily decisions, `tacore backtest` and the
universe run: hand computations, empyrical, no look-ahead, real files and processes."""

from __future__ import annotations

import csv
import json
import struct
from datetime import date
from pathlib import Path
from typing import Any

import empyrical
import numpy as np
import pytest

from tacoreservice.analysis.engines import load_engine
from tacoreservice.backtest.baselines import BASELINE_NAMES, BASELINES, baseline_positions
from tacoreservice.backtest.compare import compare, window_bounds
from tacoreservice.backtest.decisions import (
    Decision,
    daily_decisions,
    positions_from_decisions,
    positions_from_ratings,
)
from tacoreservice.backtest.engine import (
    cost_per_side,
    simulate,
    statistics,
    trade_summary,
)
from tacoreservice.backtest.strategies import STRATEGY_TYPES, strategy_positions
from tacoreservice.backtest.universe import run_universe, summarise, symbol_windows
from tacoreservice.config import Settings, TradingCosts, load_settings
from tacoreservice.market_data.bundled_provider import BundledProvider
from tacoreservice.market_data.provider import Bars
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tests.support.market_data import truncated_provider
from tests.support.service import REPO, ServiceProcesses

C = 0.001  # cost per side used in the hand computations


def make_bars(close: list[float], opens: list[float] | None = None) -> Bars:
    n = len(close)
    c = np.asarray(close, dtype=np.float64)
    o = np.asarray(opens if opens is not None else close, dtype=np.float64)
    return Bars(
        time=(np.datetime64("2024-01-01") + np.arange(n)).astype("datetime64[s]"),
        open=o, high=c + 1.0, low=c - 1.0, close=c, volume=np.full(n, 1e6),
        symbol="TEST", market="us", timeframe="1d",
    )  # fmt: skip


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


# --- the engine -----------------------------------------------------------------------------


def test_costs_come_from_the_trading_settings() -> None:
    assert cost_per_side(TradingCosts(commission_rate=0.001, slippage_bps=10)) == 0.002
    # The shipped config/trading_config.yaml: 5 bp commission + 5 bp slippage.
    shipped = load_settings(REPO / "config" / "config.yaml", env={})
    assert cost_per_side(shipped.trading.costs) == pytest.approx(0.001)


def test_statistics_are_empyricals_on_a_known_series() -> None:
    opens = [100.0, 102.0, 101.0, 103.0, 99.0, 104.0]
    bars = make_bars([101.0, 101.5, 102.0, 100.0, 103.0, 105.0], opens)
    sim = simulate(bars, np.ones(6), ppy=252.0, cost=0.0, first=1)
    # Held from bar 1's open; open to open, the last period to bar 5's close.
    expected = [101 / 102 - 1, 103 / 101 - 1, 99 / 103 - 1, 104 / 99 - 1, 105 / 104 - 1]
    np.testing.assert_allclose(sim.returns, expected)
    stats = statistics(sim.returns, 252.0)
    r = np.array(expected)
    assert stats["total_return"] == pytest.approx(105 / 102 - 1)
    assert stats["total_return"] == pytest.approx(empyrical.cum_returns_final(r))
    assert stats["annualized_return"] == pytest.approx(
        empyrical.annual_return(r, annualization=252)
    )
    assert stats["sharpe_ratio"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=252))
    assert stats["sharpe_ratio"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252))
    # Peak 103/102 after period 2, trough 99/102 after period 3.
    assert stats["max_drawdown"] == pytest.approx(99 / 103 - 1)
    assert stats["calmar_ratio"] == pytest.approx(empyrical.calmar_ratio(r, annualization=252))


def test_undefined_figures_are_none_not_zero() -> None:
    flat = statistics(np.zeros(30), 252.0)
    assert flat["sharpe_ratio"] is None and flat["calmar_ratio"] is None
    assert flat["total_return"] == 0.0 and flat["max_drawdown"] == 0.0
    assert set(statistics(np.array([]), 252.0).values()) == {None}


def test_costs_are_charged_per_position_change() -> None:
    opens = [10.0, 10.0, 11.0, 12.0, 13.0, 12.0, 11.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    bars = make_bars([10, 11, 12, 13, 12, 11, 10, 11, 12, 13, 14, 13], opens)
    position = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0], dtype=float)
    sim = simulate(bars, position, ppy=252.0, cost=C, first=1)
    held = [0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0]  # position[k - 1] for periods 1..11
    np.testing.assert_array_equal(sim.held, held)
    np.testing.assert_array_equal(sim.turnover, [0, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1])
    gross = [12 / 11 - 1, 13 / 12 - 1, 10 / 11 - 1, 12 / 11 - 1, 13 / 12 - 1, 14 / 13 - 1]
    expected = np.zeros(11)
    expected[[1, 2, 5, 7, 8, 9]] = gross
    expected -= C * np.array([0, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1])
    np.testing.assert_allclose(sim.returns, expected)
    # Six changes of position, six costs: the total is the gross result less six fills.
    no_cost = simulate(bars, position, ppy=252.0, cost=0.0, first=1)
    assert (no_cost.returns - sim.returns).sum() == pytest.approx(6 * C)
    trades = trade_summary(sim)
    assert trades["trades"] == 3 and trades["closed_trades"] == 3 and not trades["open_trade"]
    assert trades["exposure"] == round(6 / 11, 4)


def test_a_window_reads_nothing_after_its_last_bar() -> None:
    opens = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    bars = make_bars([10.5, 11.5, 12.5, 13.5, 14.5, 15.5], opens)
    poisoned = make_bars([10.5, 11.5, 12.5, 13.5, 1e9, 1e9], [10.0, 11.0, 12.0, 13.0, 1e9, 1e9])
    pos = np.ones(6)
    a = simulate(bars, pos, ppy=252.0, cost=C, first=2, last=3)
    b = simulate(poisoned, pos, ppy=252.0, cost=C, first=2, last=3)
    np.testing.assert_array_equal(a.returns, b.returns)
    # Entry at bar 2's open (cost), marked to bar 3's close, no exit assumed.
    assert a.equity[-1] == pytest.approx((13 / 12 - C) * (13.5 / 13))
    # With no earlier bar there is no decision: the first period is flat.
    assert simulate(bars, pos, ppy=252.0, cost=C, first=0).held[0] == 0.0


# --- the baselines, by hand ---------------------------------------------------------------

CLOSES_12 = [10.0, 11, 12, 13, 12, 11, 10, 11, 12, 13, 14, 13]


def test_sma_crossover_by_hand() -> None:
    # SMA2 from bar 1: 10.5 11.5 12.5 12.5 11.5 10.5 10.5 11.5 12.5 13.5 13.5
    # SMA4 from bar 3: 11.5 12 12 11.5 11 11 11.5 12.5 13
    # SMA2 > SMA4 at bars 3, 4 and 8..11.
    bars = make_bars(CLOSES_12, [10.0, *CLOSES_12[:-1]])
    pos = baseline_positions("sma_cross", bars, {"fast": 2, "slow": 4})
    np.testing.assert_array_equal(pos, [0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1])
    # Long over periods 4-5 (bought at 13, out at 11 after 12) and 9-11 (bought at 12,
    # marked to the last close 13): opens are the previous closes here.
    sim = simulate(bars, pos, ppy=252.0, cost=C, first=1)
    expected = (12 / 13 - C) * (11 / 12) * (1 - C) * (13 / 12 - C) * (14 / 13) * (13 / 14) - 1
    assert statistics(sim.returns, 252.0)["total_return"] == pytest.approx(expected)


def test_buy_and_hold_by_hand() -> None:
    opens = [10.0, 10, 11, 12, 13, 12, 11, 10, 11, 12, 13, 14]
    bars = make_bars(CLOSES_12, opens)
    pos = baseline_positions("buy_and_hold", bars)
    np.testing.assert_array_equal(pos, np.ones(12))
    sim = simulate(bars, pos, ppy=252.0, cost=C, first=3, last=9)
    # Bought at bar 3's open (12) paying the cost in the first period (12 -> 13), then
    # 13 -> 12 -> 11 -> 10 -> 11 -> 12 -> 13 (bar 9's close): (13/12 - C) * 13/13.
    assert sim.equity[-1] == pytest.approx(13 / 12 - C)
    assert trade_summary(sim)["open_trade"] and trade_summary(sim)["trades"] == 1


def test_macd_crossover_by_hand() -> None:
    # Flat at 10 for four bars, so every EMA seed is 10 and the recursion is exact:
    # EMA2 (a = 2/3): 10 10 10 10.667 11.556 12.519 13.506 14.502 14.167 12.723 10.907
    #                 9.636 9.212 9.737 11.246
    # EMA3 (a = 1/2): 10 10 10.5 11.25 12.125 13.063 14.031 14.016 13.008 11.504 10.252
    #                 9.626 9.813 10.907  (from bar 2)
    # MACD = EMA2 - EMA3:   0 .1667 .3056 .3935 .4437 .4708 .1517 -.2854 -.5964 -.6161
    #                       -.4140 -.0757 .3393  (bars 3..15)
    # signal = EMA2 of MACD: 0 .1111 .2407 .3426 .4100 .4505 .2513 -.1065 -.4331 -.5551
    #                       -.4611 -.2041 .1581
    close = [10.0, 10, 10, 10, 11, 12, 13, 14, 15, 14, 12, 10, 9, 9, 10, 12]
    pos = baseline_positions("macd", make_bars(close), {"fast": 2, "slow": 3, "signal": 2})
    np.testing.assert_array_equal(pos, [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1])


CLOSES_V = [20.0, 19, 18, 17, 16, 17, 18, 19, 20, 21, 20, 19]  # high/low = close -/+ 1


def test_kdj_rsi_by_hand() -> None:
    # %K(3) = 100 (C - LL3) / (HH3 - LL3): 25 25 25 66.67 75 75 75 75 33.33 25 (bars 2..11)
    # K = SMA2(%K): 25 25 45.83 70.83 75 75 75 54.17 29.17 (bars 3..11)
    # D = SMA2(K):  25 35.42 58.33 72.92 75 75 64.58 41.67 (bars 4..11)
    # J = 3K - 2D:  25 66.67 95.83 79.17 75 75 33.33 4.17  (bars 4..11)
    # RSI(2), Wilder: 0 0 0 50 75 87.5 93.75 96.88 48.44 24.22 (bars 2..11)
    # Entry J < 30 and RSI < 40: bars 4 and 11. Exit J > 90 and RSI > 60: bar 6.
    params = {
        "kdj_period": 3, "kdj_smooth": 2, "rsi_period": 2, "j_oversold": 30.0,
        "j_overbought": 90.0, "rsi_oversold": 40.0, "rsi_overbought": 60.0,
    }  # fmt: skip
    pos = baseline_positions("kdj_rsi", make_bars(CLOSES_V), params)
    np.testing.assert_array_equal(pos, [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1])


def test_zero_mean_reversion_by_hand() -> None:
    # z = (C - SMA3) / population sd 3: -1.225 -1.225 -1.225 0.707 1.225 1.225 1.225 1.225
    # -0.707 -1.225 (bars 2..11). Enter below -1 (bars 2-4, 11), exit at z >= 0 (bar 5).
    pos = baseline_positions("zmr", make_bars(CLOSES_V), {"window": 3, "entry_z": 1.0})
    np.testing.assert_array_equal(pos, [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1])


def test_baseline_parameters_are_checked() -> None:
    bars = make_bars(CLOSES_12)
    with pytest.raises(ValueError, match="fast .* must be below slow"):
        baseline_positions("sma_cross", bars, {"fast": 20, "slow": 5})
    with pytest.raises(ValueError, match="window must be an integer from 3 to 250"):
        baseline_positions("zmr", bars, {"window": 2.5})
    with pytest.raises(ValueError, match="'period' is not a parameter of macd"):
        baseline_positions("macd", bars, {"period": 3})
    for name in BASELINE_NAMES:  # the documented defaults are valid and searchable
        spec = BASELINES[name]
        assert spec.resolve() == spec.parameters
        assert set(spec.grid) <= set(spec.bounds)


# --- no look-ahead ----------------------------------------------------------------------------


def _cut(bars: Bars, k: int) -> Bars:
    return Bars(
        time=bars.time[:k], open=bars.open[:k], high=bars.high[:k], low=bars.low[:k],
        close=bars.close[:k], volume=bars.volume[:k], symbol=bars.symbol,
        market=bars.market, timeframe=bars.timeframe,
    )  # fmt: skip


@pytest.mark.parametrize("name", BASELINE_NAMES + STRATEGY_TYPES)
def test_rules_do_not_look_ahead(provider: BundledProvider, name: str) -> None:
    """Positions up to day t are the same with or without the bars after t."""
    full = provider.bars("MSFT")
    for k in (300, 700, len(full) - 40):
        if name in BASELINES:
            a, b = baseline_positions(name, full), baseline_positions(name, _cut(full, k))
        else:
            a, b = strategy_positions(name, full)[0], strategy_positions(name, _cut(full, k))[0]
        np.testing.assert_array_equal(a[:k], b)


@pytest.fixture(scope="module")
def truncated(tmp_path_factory: pytest.TempPathFactory) -> tuple[BundledProvider, str]:
    """A provider whose AAPL and SPY (its benchmark) files end on day T."""
    day = "2024-03-15"
    return truncated_provider(tmp_path_factory.mktemp("truncated"), day), day


def test_engine_decisions_do_not_look_ahead(
    provider: BundledProvider, truncated: tuple[BundledProvider, str]
) -> None:
    short, day = truncated
    engine = load_engine("quant", Settings())
    days = [str(t)[:10] for t in provider.bars("AAPL", "1d", day).time[-12:]]
    assert days[-1] == day
    full = daily_decisions(engine, provider, "AAPL", days)
    cut = daily_decisions(engine, short, "AAPL", days)
    assert [d.rating for d in full] == [d.rating for d in cut]
    assert [d.confidence for d in full] == [d.confidence for d in cut]
    assert [d.as_of for d in full] == days  # each decision saw exactly its own day
    # The whole comparison ending on T is the same with the future in the files or not.
    a = compare(["AAPL"], "2024-03-01", day, Settings(), provider=provider)
    b = compare(["AAPL"], "2024-03-01", day, Settings(), provider=short)
    assert a.rows() == b.rows()
    assert [d.rating for d in a.decisions["AAPL"]] == [d.rating for d in b.decisions["AAPL"]]


def test_exposures_are_held_with_a_rebalancing_band() -> None:
    def d(exposure: float | None, rating: str = "HOLD") -> Decision:
        return Decision("2024-01-02", "2024-01-02", rating, 0.5, exposure)

    got = positions_from_decisions(
        [d(0.55), d(0.6), d(0.7), d(0.0), d(0.05), d(None, "BUY"), d(0.95), d(None, "HOLD")]
    )
    # 0.6 is within 10 points of 0.55: kept; 0.7 is not; flat is always taken; a decision
    # without an exposure is read by its rating (BUY long, HOLD keeps).
    np.testing.assert_allclose(got, [0.55, 0.55, 0.7, 0.0, 0.0, 1.0, 1.0, 1.0])


def test_ratings_map_to_long_flat_positions() -> None:
    ratings = ["HOLD", "BUY", "HOLD", "UNDERWEIGHT", "HOLD", "OVERWEIGHT", "SELL", "HOLD"]
    np.testing.assert_array_equal(positions_from_ratings(ratings), [0, 1, 1, 0, 0, 1, 0, 0])
    assert positions_from_ratings(["HOLD", "HOLD"], start=1.0).tolist() == [1.0, 1.0]


# --- one window, side by side -----------------------------------------------------------------


def test_compare_runs_engine_and_baselines_on_the_same_days(provider: BundledProvider) -> None:
    result = compare(["AAPL", "BTC/USDT"], "2024-01-02", "2024-03-28", Settings())
    assert result.symbols == ["AAPL", "BTCUSDT"]
    assert [r.strategy for r in result.runs[:6]] == ["engine", *BASELINE_NAMES]
    for sym in result.symbols:
        bars = provider.bars(sym, "1d", "2024-03-28")
        first, last = window_bounds(bars, date(2024, 1, 2), date(2024, 3, 28))
        decisions = result.decisions[sym]
        # One decision per trading day, the first at the close before the window.
        assert [d.day for d in decisions] == [str(t)[:10] for t in bars.time[first - 1 : last]]
        runs = [r for r in result.runs if r.symbol == sym]
        for run in runs:
            assert len(run.equity) == last - first + 1
            assert str(run.times[0])[:10] == str(bars.time[first])[:10]
        # The engine row is exactly the backtest of its decisions' positions.
        pos = np.zeros(len(bars))
        pos[first - 1 : last] = positions_from_decisions(decisions)
        ppy = 365.0 if sym == "BTCUSDT" else 252.0
        sim = simulate(bars, pos, ppy=ppy, cost=0.001, first=first, last=last)
        assert runs[0].stats == statistics(sim.returns, ppy)
        bh = next(r for r in runs if r.strategy == "buy_and_hold")
        assert bh.stats["total_return"] == pytest.approx(
            (1 - 0.001 / (bars.open[first + 1] / bars.open[first]))
            * bars.close[last] / bars.open[first] - 1
        )  # fmt: skip


def test_compare_refuses_what_it_cannot_backtest() -> None:
    with pytest.raises(ServiceError) as err:
        compare(["AAPL"], "2019-01-01", "2019-03-01", Settings())
    assert err.value.code == ErrorCode.DATA_UNAVAILABLE and "2021-01-11" in err.value.message
    with pytest.raises(ServiceError) as err:
        compare(["AAPL"], "2021-01-11", "2021-03-01", Settings())
    assert "previous day's close" in err.value.message
    with pytest.raises(ServiceError) as err:
        compare(["AAPL"], "2024-13-01", "2024-03-01", Settings())
    assert err.value.code == ErrorCode.INVALID_PARAMS and "YYYY-MM-DD" in err.value.message
    with pytest.raises(ServiceError) as err:
        compare(["APPL"], "2024-01-02", "2024-03-01", Settings())
    assert err.value.code == ErrorCode.INVALID_PARAMS and "AAPL" in err.value.message


# --- tacore backtest --------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_cli_backtest_table_csv_json_png(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path)  # ports and environment only: nothing is started
    out_csv = tmp_path / "out" / "result.csv"
    args = ["--symbols", "AAPL,MSFT", "--start", "2024-02-01", "--end", "2024-03-28"]
    run = svc.cli("backtest", *args, "--out", str(out_csv))
    assert run.returncode == 0, run.stderr
    for label in ("TACore quant", "Buy&Hold", "MACD", "KDJ&RSI", "ZMR", "SMA"):
        assert label in run.stdout
    assert "2024-02-01 .. 2024-03-28" in run.stdout
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["symbol"], r["strategy"]) for r in rows] == [
        (s, k) for s in ("AAPL", "MSFT") for k in ("engine", *BASELINE_NAMES)
    ]
    width, height = _png_size(out_csv.with_suffix(".png"))
    assert width > 600 and height > 300

    out_json = tmp_path / "result.json"
    chart = tmp_path / "curves.png"
    run = svc.cli("backtest", *args, "--out", str(out_json), "--chart", str(chart))
    assert run.returncode == 0, run.stderr
    data = json.loads(out_json.read_text())
    assert data["start"] == "2024-02-01" and data["engine"] == "quant"
    assert data["cost_per_side"] == pytest.approx(0.001)
    by_key = {(r["symbol"], r["strategy"]): r for r in data["results"]}
    for row in rows:  # the same figures as the CSV run: deterministic
        got = by_key[(row["symbol"], row["strategy"])]["total_return"]
        assert got == pytest.approx(float(row["total_return"]))
    aapl = data["equity"]["AAPL/engine"]
    # The JSON's equity is rounded to 6 decimals.
    assert aapl["equity"][-1] - 1 == pytest.approx(
        by_key[("AAPL", "engine")]["total_return"], abs=1e-6
    )
    assert len(data["decisions"]["AAPL"]) == len(aapl["dates"])
    assert _png_size(chart)[0] > 600


def test_cli_backtest_help_and_errors(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path)
    run = svc.cli("backtest", "--help")
    assert run.returncode == 0 and "no running service" in run.stdout.replace("\n", " ")
    run = svc.cli("backtest", "--symbols", "APPL", "--chart", str(tmp_path / "x.png"))
    assert run.returncode == 1
    assert "INVALID_PARAMS" in run.stderr and "AAPL" in run.stderr
    assert "Traceback" not in run.stderr
    run = svc.cli("backtest", "--universe", "--start", "2024-01-02")
    assert run.returncode == 2 and "--start/--end do not apply" in run.stderr


def test_cli_universe(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path)
    out = tmp_path / "universe.json"
    run = svc.cli(
        "backtest", "--universe", "--symbols", "AAPL,ETHUSDT", "--warmup-bars", "1100",
        "--step-months", "2", "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Universe" in run.stdout and "wall time" in run.stdout
    data = json.loads(out.read_text())
    assert data["symbols"] == 2 and data["workers"] == 2
    assert [r["strategy"] for r in data["summary"]] == ["engine", *BASELINE_NAMES]
    assert set(data["by_market"]) == {"us", "crypto"}


# --- the universe run -------------------------------------------------------------------------


def test_symbol_windows_are_complete_calendar_windows(provider: BundledProvider) -> None:
    bars = provider.bars("AAPL")
    windows = symbol_windows(bars.time, 3, 1, 252)
    assert windows[0][0] == "2022-02-01"  # bar 252 is 2022-01-11; the next month start
    for month, first, last in windows:
        assert first >= 252 and str(bars.time[first])[:7] == month[:7]
        assert last + 1 < len(bars)  # the data goes on past every window
        nxt = np.datetime64(month[:7], "M") + 3
        assert str(bars.time[last])[:7] < str(nxt) <= str(bars.time[last + 1])[:7]
    assert [w[0] for w in windows[:3]] == ["2022-02-01", "2022-03-01", "2022-04-01"]


def _within(value: float | None) -> Any:
    return pytest.approx(value, abs=1e-5) if value is not None else None


def test_universe_runs_match_single_window_backtests(provider: BundledProvider) -> None:
    result = run_universe(
        Settings(), symbols=["AAPL", "600519"], warmup_bars=1150, step_months=1, workers=2
    )
    assert result.workers == 2 and result.symbols == 2 and not result.skipped
    assert {r["market"] for r in result.runs} == {"us", "cn"}
    # Every universe run is the single-window comparison over the same days.
    for symbol in ("AAPL", "600519"):
        mine = [r for r in result.runs if r["symbol"] == symbol]
        row = mine[len(mine) // 2]
        single = compare([symbol], row["first_day"], row["last_day"], Settings())
        got = {r["strategy"]: r for r in mine if r["window"] == row["window"]}
        for run in single.runs:
            for stat in ("total_return", "sharpe_ratio", "max_drawdown"):
                assert got[run.strategy][stat] == _within(run.stats[stat]), (symbol, run.strategy)
    # The summary is the median over the runs, and B&H comparisons pair the same windows.
    engine_runs = [r for r in result.runs if r["strategy"] == "engine"]
    top = result.summary[0]
    assert top["strategy"] == "engine" and top["runs"] == len(engine_runs)
    assert top["median_total_return"] == pytest.approx(
        float(np.median([r["total_return"] for r in engine_runs])), abs=1e-6
    )
    assert summarise(result.runs) == result.summary

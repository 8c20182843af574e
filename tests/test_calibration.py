"""The calibrated model: walk-forward fits, stored calibrations, a user's own data folder."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tacoreservice.analysis.calibration import (
    CALIBRATION_VERSION,
    DRIFT_PRIOR,
    MIN_MONTHS,
    SHIPPED_DIR,
    CalibrationStore,
    clear_calibrations,
    fit_calibration,
    fit_month_index,
)
from tacoreservice.analysis.engines import load_engine
from tacoreservice.analysis.evidence import compute_evidence
from tacoreservice.analysis.factors import HORIZON, clear_panels, market_panel
from tacoreservice.analysis.forecast import set_calibration_dir
from tacoreservice.analysis.graph import AnalysisRequest, run_analysis
from tacoreservice.analysis.universe import clear_caches
from tacoreservice.backtest.universe import summarise
from tacoreservice.config import Settings
from tacoreservice.market_data.bundled_provider import BundledProvider
from tests.support.market_data import truncated_provider
from tests.support.service import REPO

VOLATILE = ("elapsed_ms", "cached")


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


def quant(provider: Any, symbol: str, as_of: str | None = None) -> dict[str, Any]:
    engine = load_engine("quant", Settings())
    out = run_analysis(engine, provider, AnalysisRequest(symbol=symbol, as_of=as_of))
    return {k: v for k, v in out.items() if k not in VOLATILE}


# --- walk-forward ------------------------------------------------------------------------------


def test_a_decision_at_d_is_the_same_without_the_data_after_d(
    provider: BundledProvider, tmp_path: Path
) -> None:
    """Every daily file cut at D: the decisions, their forecasts and the calibrations behind
    them (fitted on the whole universe's history) are the same as with the future present."""
    day = "2024-03-15"
    short = truncated_provider(tmp_path, day)
    for symbol in ("AAPL", "XOM", "600519", "BTCUSDT", "SPY"):
        full, cut = quant(provider, symbol, day), quant(short, symbol, day)
        assert full == cut, symbol
        cal = full["model"]["calibration"]
        assert cal["fit_day"] < "2024-03-01" and cal["window"][1] < cal["fit_day"], symbol
    # The later data is really there, and really changes the answer when it may be used.
    later = quant(provider, "AAPL", "2024-04-15")
    assert later["model"]["calibration"]["fit_day"] > full["model"]["calibration"]["fit_day"]


def test_a_fit_reads_no_outcome_after_its_day(provider: BundledProvider) -> None:
    panel = market_panel(provider, "us")
    k = fit_month_index(panel, np.datetime64("2024-03-15"))
    cal = fit_calibration(panel, k)
    ends = panel.month_ends()
    used = [int(e) for e in ends if str(panel.days[e]) >= cal.window[0]]
    used = [e for e in used if str(panel.days[e]) <= cal.window[1]]
    assert used and all(e + HORIZON <= k for e in used)  # every outcome known by the fit day
    # Replace everything after the fit day with noise: the fit does not move.
    rng = np.random.default_rng(7)
    noisy_close = panel.close.copy()
    noisy_close[k + 1 :] *= rng.uniform(0.5, 1.5, noisy_close[k + 1 :].shape)
    noisy_inputs = {}
    for name, values in panel.inputs.items():
        v = values.copy()
        v[k + 1 :] = rng.normal(size=v[k + 1 :].shape)
        noisy_inputs[name] = v
    noisy = dataclasses.replace(panel, close=noisy_close, inputs=noisy_inputs)
    again = fit_calibration(noisy, k)
    assert again.weights == cal.weights and again.drift == cal.drift
    assert again.ic == cal.ic


def test_before_the_minimum_history_the_model_is_its_prior(provider: BundledProvider) -> None:
    for market in ("us", "crypto"):
        panel = market_panel(provider, market)
        k = fit_month_index(panel, panel.days[0] + np.timedelta64(200, "D"))
        cal = fit_calibration(panel, k)
        assert cal.status == "prior" and cal.months < MIN_MONTHS
        assert cal.weights == {} and cal.drift == DRIFT_PRIOR[market]
    # Crypto's prior is no drift: no edge, no position (and the report says it is the prior).
    ev = compute_evidence(provider, "ADAUSDT", "2019-01-15")
    assert ev["forecast"]["available"] and ev["forecast"]["s"] == 0.0
    assert "prior drift alone" in ev["forecast"]["note"]
    d = quant(provider, "ADAUSDT", "2019-01-15")
    assert d["target_exposure"] == 0.0 and d["rating"] == "SELL"


def test_weights_are_measured_and_the_reports_quote_them(provider: BundledProvider) -> None:
    d = quant(provider, "NVDA", "2025-06-30")
    cal = d["model"]["calibration"]
    assert cal["status"] == "fitted" and cal["months"] == 36 and len(cal["weights"]) >= 10
    report = d["reports"]["market_analyst"]
    assert "IC " in report and "weight" in report and cal["fit_day"] in report
    bull = d["reports"]["bull_researcher"] + d["reports"]["bear_researcher"]
    assert "over 24 months" in bull  # the researchers argue from the measured records


# --- stored calibrations -----------------------------------------------------------------------


def test_shipped_calibrations_cover_every_market() -> None:
    store = CalibrationStore([SHIPPED_DIR])
    cals = {c.market: c for c in store.items()}
    assert set(cals) == {"us", "cn", "crypto"}
    for cal in cals.values():
        assert cal.version == CALIBRATION_VERSION and cal.status == "fitted"
        assert cal.window[1] < cal.fit_day and cal.weights


def test_a_stored_calibration_is_used_only_after_its_fit_window(
    provider: BundledProvider, tmp_path: Path
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tacoreservice", "calibrate", "--markets", "us",
         "--as-of", "2024-07-01", "--out-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    written = json.loads(out.stdout)
    assert [c["fit_day"] for c in written] == ["2024-06-28"]
    name = Path(written[0]["path"]).name
    try:
        set_calibration_dir(tmp_path)
        clear_caches()
        after = quant(provider, "AAPL", "2024-07-10")
        before = quant(provider, "AAPL", "2024-06-14")
        assert after["model"]["calibration"]["source"] == name
        assert before["model"]["calibration"]["source"] == "walk-forward"
        # The stored fit is the walk-forward fit of that month: the same decision either way.
        set_calibration_dir(None)
        clear_caches()
        assert quant(provider, "AAPL", "2024-07-10") == after | {
            "model": after["model"]
            | {"calibration": after["model"]["calibration"] | {"source": "walk-forward"}}
        }
    finally:
        set_calibration_dir(None)
        clear_caches()


class LiveLike(BundledProvider):
    """The bundled bars behind a provider that is not static (as yfinance is): no panel, so
    the model can only come from a stored calibration."""

    name = "live-like"
    static = False


def test_a_live_provider_uses_the_newest_stored_calibration_before_its_day(
    tmp_path: Path,
) -> None:
    store_dir = tmp_path / "cal"
    full = BundledProvider()
    panel = market_panel(full, "us")
    k = fit_month_index(panel, np.datetime64("2024-07-10"))
    CalibrationStore.write(store_dir, fit_calibration(panel, k))
    live = LiveLike()
    try:
        set_calibration_dir(store_dir)
        clear_caches()
        ev = compute_evidence(live, "AAPL", "2024-08-15")
        f = ev["forecast"]
        assert f["available"] and f["calibration"]["fit_day"] == "2024-06-28"
        assert f["calibration"]["source"].startswith("us-2024-06-28")
        # Cross-sectional signals need the universe, which a live provider does not give.
        ranks = {s["name"]: s for s in f["signals"] if s["kind"] == "xs"}
        assert all(s["contribution"] is None for s in ranks.values())
        early = compute_evidence(live, "AAPL", "2024-06-20")["forecast"]
        assert not early["available"] and "to calibrate on" in early["why"]
    finally:
        set_calibration_dir(None)
        clear_caches()


# --- a user's own folder ------------------------------------------------------------------------


def _random_walk(rng: np.random.Generator, n: int, drift: float, vol: float) -> np.ndarray:
    return 50.0 * np.exp(np.cumsum(rng.normal(drift, vol, n)))


def write_user_folder(root: Path, symbols: int = 7, days: int = 700) -> list[str]:
    """Daily OHLCV CSVs of made-up tickers and a benchmark SPY: no manifest, no names."""
    rng = np.random.default_rng(11)
    dates = np.arange(np.datetime64("2021-01-04"), np.datetime64("2021-01-04") + days * 2)
    dates = dates[np.is_busday(dates)][:days]
    names = [f"ZZ{i}" for i in range(symbols)] + ["SPY"]
    (root / "us").mkdir(parents=True)
    for i, name in enumerate(names):
        close = _random_walk(rng, days, 0.0003 * (i % 3), 0.015 + 0.003 * i)
        lines = ["Date,Open,High,Low,Close,Volume"]
        for d, c in zip(dates, close, strict=True):
            lines.append(f"{d},{c * 0.995:.4f},{c * 1.01:.4f},{c * 0.99:.4f},{c:.4f},{1e6 + i}")
        (root / "us" / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return names


def test_a_folder_without_a_manifest_is_read_from_its_files(tmp_path: Path) -> None:
    names = write_user_folder(tmp_path)
    user = BundledProvider(tmp_path)
    assert sorted(i.symbol for i in user.symbols("us")) == sorted(names)
    info = user.resolve("ZZ3")
    assert info.name == "ZZ3" and info.market == "us" and info.kind == "stock"
    assert user.resolve("SPY").kind == "etf"  # a name the package knows keeps its kind
    d = quant(user, "ZZ3")
    assert d["name"] == "ZZ3" and d["model"]["calibration"]["symbols"] == len(names) - 1
    clear_panels()
    clear_calibrations()


def test_evaluate_runs_on_a_users_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_user_folder(data)
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tacoreservice", "evaluate", "--data-dir", str(data),
         "--start", "2022-01-01", "--workers", "1", "--png", str(tmp_path / "rel.png"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    for title in ("Rank IC", "By rating", "By confidence", "Portfolio mode", "Universe"):
        assert title in text, title
    result = json.loads(out.read_text())
    assert result["markets"] == ["us"] and len(result["symbols"]) == 7
    ic21 = [r for r in result["ic"] if r["horizon"] == 21]
    assert {r["score"] for r in ic21} == {
        "scan_score",
        "decision_expected_return",
        "decision_rating_x_confidence",
    }
    assert all(r["months"] > 10 for r in ic21)
    names = {r["portfolio"] for r in result["portfolios"]}
    assert names == {"tacore", "equal_weight", "benchmark"}
    engine = result["rolling_windows"]["summary"][0]
    assert engine["strategy"] == "engine" and "buy_and_hold" in engine["sharpe_beats"]
    assert (tmp_path / "rel.png").stat().st_size > 10_000
    days = {s["day"] for s in result["snapshots"]}
    assert len(result["snapshots"]) == 7 * len(days) and min(days) >= "2022-01-01"


# --- the rolling-window summary -------------------------------------------------------------


def test_a_run_that_never_invested_counts_as_sharpe_zero() -> None:
    def run(strategy: str, window: str, sharpe: float | None, exposure: float) -> dict:
        return {
            "symbol": "X", "window": window, "strategy": strategy, "label": strategy,
            "total_return": 0.0 if sharpe is None else 0.01, "annualized_return": 0.0,
            "sharpe_ratio": sharpe, "max_drawdown": 0.0, "exposure": exposure,
        }  # fmt: skip

    runs = [
        run("engine", "w1", None, 0.0),
        run("engine", "w2", None, 0.0),
        run("engine", "w3", 1.5, 0.5),
        run("buy_and_hold", "w1", -0.5, 1.0),
        run("buy_and_hold", "w2", 0.8, 1.0),
        run("buy_and_hold", "w3", 1.0, 1.0),
    ]
    rows = {r["strategy"]: r for r in summarise(runs)}
    # Dropping the two idle windows would give a median of 1.5; counted as 0 it is 0.
    assert rows["engine"]["median_sharpe_ratio"] == 0.0
    assert rows["engine"]["never_invested"] == pytest.approx(2 / 3, abs=1e-4)
    # Sharpe 0 beats -0.5 (w1), loses to 0.8 (w2); 1.5 beats 1.0 (w3).
    assert rows["engine"]["sharpe_beats"]["buy_and_hold"] == pytest.approx(2 / 3, abs=1e-4)
    assert rows["buy_and_hold"]["sharpe_beats"]["engine"] == pytest.approx(1 / 3, abs=1e-4)

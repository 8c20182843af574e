"""The evaluation harness's parts: portfolio mode, sizing in backtests, analyses on a service."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tacoreservice.analysis.engines import load_engine
from tacoreservice.backtest.compare import compare
from tacoreservice.backtest.engine import cost_per_side
from tacoreservice.backtest.universe import run_universe
from tacoreservice.client import TACoreClient
from tacoreservice.config import Settings, load_settings
from tacoreservice.evaluation.portfolio import run_portfolios
from tacoreservice.evaluation.snapshots import month_end_snapshots
from tacoreservice.market_data.bundled_provider import BundledProvider
from tests.support.service import REPO, ServiceProcesses


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(REPO / "config" / "config.yaml", env={})


def test_the_engine_trades_its_own_size_and_the_baselines_stay_long_flat(
    settings: Settings,
) -> None:
    result = compare(["AAPL", "BTCUSDT"], "2024-01-02", "2024-06-28", settings)
    for symbol in ("AAPL", "BTCUSDT"):
        exposures = [d.exposure for d in result.decisions[symbol]]
        assert all(e is not None and 0.0 <= e <= 1.0 for e in exposures)
        # A fractional book: sizes in between flat and fully in.
        assert any(0.05 < e < 0.95 for e in exposures if e is not None), symbol
    data = result.to_json()
    assert {d["exposure"] for d in data["decisions"]["AAPL"]} == {
        d.exposure for d in result.decisions["AAPL"]
    }


def test_portfolio_mode_books(provider: BundledProvider, settings: Settings) -> None:
    engine = load_engine("quant", settings)
    start, end = "2024-01-01", "2024-12-31"
    snaps = month_end_snapshots(provider, engine, settings, ["us"], start, end)
    assert {s.day[:7] for s in snaps} == {f"2024-{m:02d}" for m in range(1, 13)}
    cost = cost_per_side(settings.trading.costs)
    runs = {r.name: r for r in run_portfolios(provider, "us", snaps, start, end, cost, top_n=5)}
    assert set(runs) == {"tacore", "equal_weight", "benchmark"}
    for run in runs.values():
        assert run.days[0] > "2024-01-31" and run.days[-1] == "2024-12-31"
        assert len(run.equity) == len(run.days) and run.rebalances == 12
        assert run.stats["sharpe_ratio"] is not None and run.stats["costs_paid"] > 0
    # The benchmark book: bought at the open after the first month-end, held, marked at the
    # last close, one fee on the way in.
    spy = provider.bars("SPY", "1d")
    days = spy.time.astype("datetime64[D]")
    first = int(np.searchsorted(days, np.datetime64(runs["benchmark"].days[0])))
    last = int(np.searchsorted(days, np.datetime64("2024-12-31")))
    expected = (1 - cost) * spy.close[last] / spy.open[first] - 1
    assert runs["benchmark"].stats["total_return"] == pytest.approx(expected, abs=1e-9)
    # Equal weight is always fully invested; TACore holds what its analyses size, in cash
    # otherwise, never more than the whole book.
    assert runs["equal_weight"].mean_invested == pytest.approx(1.0, abs=0.01)
    assert 0.0 < runs["tacore"].mean_invested < 1.0
    assert runs["tacore"].row()["top_n"] == 5


def test_cli_backtest_portfolio(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path)
    out = tmp_path / "book.json"
    run = svc.cli(
        "backtest", "--portfolio", "--markets", "cn", "--start", "2024-01-01",
        "--end", "2024-06-30", "--top-n", "4", "--out", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Portfolio mode" in run.stdout and "CSI300" in run.stdout
    rows = json.loads(out.read_text())["portfolios"]
    assert [r["portfolio"] for r in rows] == ["tacore", "equal_weight", "benchmark"]
    assert rows[0]["label"] == "TACore top 4"


def test_analyses_run_on_a_service_give_the_same_results(
    tmp_path: Path, provider: BundledProvider, settings: Settings
) -> None:
    """--service: the month-end analyses and each symbol's daily decisions are jobs on a
    running service (its workers share them); the figures are the in-process ones."""
    svc = ServiceProcesses(tmp_path, workers=2)
    svc.start_main()
    try:
        engine = load_engine("quant", settings)
        span = ("2025-05-01", "2025-07-31")
        local = month_end_snapshots(provider, engine, settings, ["cn"], *span)
        with TACoreClient(svc.endpoint, timeout_ms=30_000, retries=2) as client:
            remote = month_end_snapshots(provider, engine, settings, ["cn"], *span, service=client)
        assert [s.to_json() for s in remote] == [s.to_json() for s in local]
        kwargs = {"symbols": ["AAPL"], "warmup_bars": 1100, "step_months": 2, "workers": 1}
        here = run_universe(settings, **kwargs)
        there = run_universe(settings, service=svc.endpoint, **kwargs)
        assert there.runs == here.runs and there.summary == here.summary
        with svc.client() as c:
            jobs = c.call("job.list", {"method": "backtest.decisions"})["jobs"]
            assert [j["state"] for j in jobs] == ["succeeded"]
            assert len(
                c.call("job.list", {"method": "analyze.stock", "limit": 500})["jobs"]
            ) == len(local)
    finally:
        svc.stop()

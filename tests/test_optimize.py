"""optimize.parameters: the search checked against direct backtests, validation, warnings,
bad spaces, progress and cancellation, and the method through a running service (as a call,
a legacy action and a job)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from itertools import product
from typing import Any

import numpy as np
import orjson
import pytest

from tacoreservice.backtest.engine import simulate, statistics, trade_summary
from tacoreservice.backtest.rules import RULES, rule_positions
from tacoreservice.backtest.strategies import STRATEGIES
from tacoreservice.client import TACoreError
from tacoreservice.config import Settings
from tacoreservice.market_data.bundled_provider import BundledProvider
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.registry import MethodContext, call_method, load_plugins
from tests.support.memory_cache import DictCache
from tests.support.service import ServiceProcesses, raw_request, wait_job

COST = 0.001  # the shipped trading.costs: 5 bp commission + 5 bp slippage a side
STATS = ("total_return", "annualized_return", "sharpe_ratio", "max_drawdown")


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    load_plugins()
    return BundledProvider()


def make_ctx(provider: BundledProvider, **kw: Any) -> MethodContext:
    ctx = MethodContext(settings=Settings(), cache=DictCache(), **kw)
    ctx._provider = provider
    return ctx


def optimize(provider: BundledProvider, **params: Any) -> dict[str, Any]:
    return call_method("optimize.parameters", params, make_ctx(provider))  # type: ignore[no-any-return]


def _index(bars: Any, day: str) -> int:
    return int(np.searchsorted(bars.time.astype("datetime64[D]"), np.datetime64(day, "D")))


def direct(
    provider: BundledProvider, rule: str, params: dict[str, Any], span: dict[str, Any]
) -> dict[str, Any]:
    """The mean over symbols of a plain engine backtest of ``params`` over ``span``'s days."""
    per = []
    for sym, seg in span.items():
        bars = provider.bars(sym)
        first, last = _index(bars, seg["start"]), _index(bars, seg["end"])
        assert last - first + 1 == seg["bars"]
        sim = simulate(bars, rule_positions(rule, bars, params), ppy=252.0, cost=COST,
                       first=first, last=last)  # fmt: skip
        per.append({**statistics(sim.returns, 252.0), **trade_summary(sim)})
    out: dict[str, Any] = {}
    for k in (*STATS, "calmar_ratio", "exposure"):
        vals = [p[k] for p in per if p[k] is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def score(stats: dict[str, Any], objective: str) -> float:
    if not stats["exposure"]:
        return -math.inf
    value = stats[objective]
    return value if value is not None else -math.inf


# --- the search, checked against direct backtests ---------------------------------------------


@pytest.mark.parametrize("objective", ["sharpe_ratio", "total_return", "max_drawdown", "calmar"])
def test_grid_search_picks_the_best_set(provider: BundledProvider, objective: str) -> None:
    d = optimize(provider, symbols=["AAPL", "MSFT"], strategy_type="trend", objective=objective)
    key = "calmar_ratio" if objective == "calmar" else objective
    assert d["objective"] == key and d["method"] == "grid"
    spec = STRATEGIES["trend"]
    # The documented grid: 3 x 3 sets, one forbidden (fast 100 is not below slow 100).
    assert d["searched"] == {k: list(v) for k, v in spec.grid.items()}
    assert d["space_size"] == 9 and d["evaluations"] == 8 and d["skipped_invalid"] == 1
    is_span = d["validation"]["in_sample"]
    oos_span = d["validation"]["out_of_sample"]
    for sym in ("AAPL", "MSFT"):  # 70/30 split of each symbol's bars, no overlap
        assert is_span[sym]["end"] < oos_span[sym]["start"]
        total = is_span[sym]["bars"] + oos_span[sym]["bars"]
        assert is_span[sym]["bars"] == math.floor(total * 0.7)
    scores = {}
    for fast, slow in product(*spec.grid.values()):
        if fast < slow:
            params = {"fast_sma": fast, "slow_sma": slow}
            scores[(fast, slow)] = score(direct(provider, "trend", params, is_span), key)
    best = max(scores.values())
    assert (d["best_params"]["fast_sma"], d["best_params"]["slow_sma"]) in [
        k for k, v in scores.items() if v == pytest.approx(best)
    ]
    assert d["top"][0]["params"] == d["best_params"]
    assert [t["objective"] for t in d["top"]] == sorted(
        (t["objective"] for t in d["top"]), key=lambda v: -v if v is not None else math.inf
    )
    # In- and out-of-sample figures are plain backtests of the winner on each part.
    for part, span in (("in_sample", is_span), ("out_of_sample", oos_span)):
        want = direct(provider, "trend", d["best_params"], span)
        for stat in STATS:
            assert d[part][stat] == pytest.approx(want[stat], abs=1e-4), (part, stat)
    defaults = direct(provider, "trend", spec.parameters, oos_span)
    assert d["defaults"]["out_of_sample"]["sharpe_ratio"] == pytest.approx(
        defaults["sharpe_ratio"], abs=1e-4
    )


def test_param_space_lists_and_ranges(provider: BundledProvider) -> None:
    d = optimize(
        provider,
        symbol="NVDA",
        strategy_type="zmr",
        param_space={"window": {"min": 10, "max": 30, "step": 10}, "entry_z": [1.5, 0.5, 1.0]},
        objective="sharpe",
        top_n=3,
    )
    assert d["searched"] == {"window": [10, 20, 30], "entry_z": [0.5, 1.0, 1.5]}
    assert d["evaluations"] == 9 and len(d["top"]) == 3
    assert d["best_params"]["exit_z"] == 0.0  # not searched: stays at the default
    assert set(d["best_params"]) == set(RULES["zmr"].parameters)


def test_walk_forward(provider: BundledProvider) -> None:
    d = optimize(provider, symbol="AAPL", strategy_type="sma_cross", walk_forward={"folds": 3})
    assert d["validation"]["mode"] == "walk_forward" and len(d["folds"]) == 3
    assert d["best_params"] == d["folds"][-1]["best_params"]
    bars = provider.bars("AAPL")
    periods = len(bars) - 1
    block = periods // 4
    growth = 1.0
    for i, fold in enumerate(d["folds"], 1):
        ins, oos = fold["in_sample"]["span"]["AAPL"], fold["out_of_sample"]["span"]["AAPL"]
        assert ins["bars"] == i * block  # anchored: every earlier block
        assert oos["bars"] == (block if i < 3 else periods - 3 * block)
        assert ins["end"] < oos["start"]
        want = direct(provider, "sma_cross", fold["best_params"], {"AAPL": oos})
        assert fold["out_of_sample"]["total_return"] == pytest.approx(
            want["total_return"], abs=1e-5
        )
        growth *= 1 + want["total_return"]
    # The out-of-sample figure is the three test blocks traded one after another.
    assert d["out_of_sample"]["total_return"] == pytest.approx(growth - 1, abs=1e-5)
    assert d["validation"]["out_of_sample"]["AAPL"]["bars"] == periods - block


def test_scipy_search(provider: BundledProvider) -> None:
    params = {
        "symbol": "MSFT",
        "strategy_type": "macd",
        "method": "scipy",
        "max_evaluations": 120,
        "param_space": {"fast": {"min": 4, "max": 20}, "slow": {"min": 21, "max": 60}},
    }
    d = optimize(provider, **params)
    assert d["method"] == "scipy" and 10 <= d["evaluations"] <= 120
    assert d["searched"] == {"fast": [4, 20], "slow": [21, 60]}
    best = d["best_params"]
    assert isinstance(best["fast"], int) and 4 <= best["fast"] <= 20 and 21 <= best["slow"] <= 60
    assert best["signal"] == 9
    # The reported winner really is the best set it evaluated, and the search is seeded.
    assert d["top"][0]["params"] == {"fast": best["fast"], "slow": best["slow"]}
    span = d["validation"]["in_sample"]
    assert d["in_sample"]["sharpe_ratio"] == pytest.approx(
        direct(provider, "macd", best, span)["sharpe_ratio"], abs=1e-4
    )
    again = optimize(provider, **params)
    assert again["best_params"] == best and again["evaluations"] == d["evaluations"]


def test_warning_when_out_of_sample_falls_far_below(provider: BundledProvider) -> None:
    seen = set()
    for sym, rule in (("AAPL", "trend"), ("MSFT", "macd"), ("NVDA", "sma_cross"),
                      ("BTCUSDT", "zmr"), ("600519", "breakout"), ("XOM", "kdj_rsi")):  # fmt: skip
        d = optimize(provider, symbol=sym, strategy_type=rule)
        ins, oos = d["in_sample"]["sharpe_ratio"], d["out_of_sample"]["sharpe_ratio"]
        far = [w for w in d["warnings"] if w.startswith("out-of-sample Sharpe")]
        rule_holds = ins is not None and oos is not None and ins > 0 and (oos < 0 or oos < ins / 2)
        assert bool(far) == rule_holds, (sym, rule, ins, oos, d["warnings"])
        if far:
            assert far[0].startswith(
                f"out-of-sample Sharpe {oos:.2f} is far below in-sample {ins:.2f}"
            )
        seen.add(rule_holds)
    assert seen == {True, False}  # both outcomes occur on real data
    assert "50%" in d["warning_rule"]


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"param_space": {"fast_sma": {"min": 2, "max": 400}, "slow_sma": {"min": 3, "max": 500}}},
         "param_space has 198,702 parameter sets, more than max_evaluations 500; narrow the "
         "space or raise max_evaluations (at most 20,000)"),
        ({"param_space": {"speed": [1, 2]}}, "param_space.speed is not a parameter of trend; its "
         "parameters: fast_sma, slow_sma"),
        ({"param_space": {"fast_sma": [1, 5]}}, "param_space.fast_sma must be an integer from 2 "
         "to 400, got 1"),
        ({"param_space": {"fast_sma": []}}, "param_space.fast_sma is an empty list"),
        ({"param_space": {"fast_sma": "20"}}, "param_space.fast_sma"),
        ({"strategy_type": "zmr", "param_space": {"entry_z": {"min": 0.5, "max": 2}}},
         "param_space.entry_z.step must be a positive number"),
        ({"param_space": {"fast_sma": [100], "slow_sma": [50]}}, "every parameter set in "
         "param_space is invalid for trend (fast_sma (100) must be below slow_sma (50))"),
        ({"strategy_type": "buy_and_hold"}, "buy_and_hold has no parameters to optimise"),
        ({"strategy_type": "martingale"}, "params.strategy_type: Value error, must be one of"),
        ({"objective": "profit"}, "params.objective"),
        ({"symbol": None}, "give symbol (e.g. AAPL) or symbols"),
        ({"train_ratio": 0.6, "walk_forward": 3}, "give train_ratio or walk_forward, not both"),
        ({"method": "scipy", "max_evaluations": 5}, "method scipy needs max_evaluations of at "
         "least 20"),
        ({"max_evaluations": 50_000}, "params.max_evaluations"),
    ],
)  # fmt: skip
def test_invalid_params(provider: BundledProvider, params: dict[str, Any], needle: str) -> None:
    body = {"symbol": "AAPL", "strategy_type": "trend", **params}
    with pytest.raises(ServiceError) as err:
        call_method("optimize.parameters", body, make_ctx(provider))
    assert err.value.code == ErrorCode.INVALID_PARAMS
    assert needle in err.value.message, err.value.message


def test_too_little_data(provider: BundledProvider) -> None:
    with pytest.raises(ServiceError) as err:
        optimize(provider, symbol="AAPL", start="2026-01-02", end="2026-01-08")
    assert err.value.code == ErrorCode.DATA_UNAVAILABLE and "at least 10" in err.value.message
    with pytest.raises(ServiceError) as err:
        optimize(provider, symbol="AAPL", start="2025-11-20", walk_forward={"folds": 6})
    assert err.value.code == ErrorCode.DATA_UNAVAILABLE and "fewer folds" in err.value.message


def test_as_of_and_range_limit_the_data(provider: BundledProvider) -> None:
    d = optimize(provider, symbol="AAPL", strategy_type="sma_cross", start="2022-01-03",
                 as_of="2024-06-28")  # fmt: skip
    assert d["as_of"].startswith("2024-06-28")
    assert d["validation"]["in_sample"]["AAPL"]["start"] == "2022-01-03"
    assert d["validation"]["out_of_sample"]["AAPL"]["end"] == "2024-06-28"


# --- progress and cancellation ----------------------------------------------------------------


def test_progress_and_cancellation_in_process(provider: BundledProvider) -> None:
    seen: list[tuple[str, float, dict[str, Any] | None]] = []
    ctx = make_ctx(provider)
    ctx.progress = lambda stage, pct, detail=None: seen.append((stage, pct, detail))
    call_method("optimize.parameters", {"symbol": "AAPL", "strategy_type": "kdj_rsi"}, ctx)
    percents = [p for _s, p, _d in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0 and len(seen) > 40
    assert seen[0][0] == "grid search" and seen[-1][0] == "done"
    assert seen[-1][2] == {"evaluations": 48, "budget": 54}

    calls = 0

    def cancelled() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    ctx = make_ctx(provider, cancelled=cancelled)
    done: list[float] = []
    ctx.progress = lambda stage, pct, detail=None: done.append(pct)
    with pytest.raises(ServiceError) as err:
        call_method("optimize.parameters", {"symbol": "AAPL", "strategy_type": "kdj_rsi"}, ctx)
    assert err.value.code == ErrorCode.CANCELLED
    assert 0 < len(done) < 48  # stopped between evaluations, well before the end


# --- through a running service ----------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    svc = ServiceProcesses(tmp_path_factory.mktemp("optimize"), workers=2)
    svc.start_main()
    yield svc
    svc.stop()


def test_through_the_service(service: ServiceProcesses, provider: BundledProvider) -> None:
    params = {"symbol": "AAPL", "strategy_type": "momentum", "objective": "calmar"}
    local = optimize(provider, **params)
    with service.client(timeout_ms=30_000) as c:
        remote = c.call("optimize.parameters", params)
        assert remote["best_params"] == local["best_params"]
        assert remote["out_of_sample"] == local["out_of_sample"]
        pids = service.worker_pids()
        with pytest.raises(TACoreError) as err:
            c.call("optimize.parameters", {"symbol": "AAPL", "param_space": {"speed": [1]}})
        assert err.value.code == "INVALID_PARAMS" and "param_space.speed" in err.value.message
        assert service.worker_pids() == pids  # bad input never kills a worker


def test_legacy_action(service: ServiceProcesses, provider: BundledProvider) -> None:
    body = {
        "action": "optimize_parameters",
        "request_id": "opt_001",
        "params": {"symbol": "BTCUSDT", "timeframe": "1h", "strategy_type": "mean_reversion"},
    }
    reply = raw_request(service.endpoint, orjson.dumps(body), timeout_ms=60_000)
    assert reply["success"] is True and reply["request_id"] == "opt_001"
    data = reply["data"]
    assert data["timeframe"] == "1h" and data["symbols"] == ["BTCUSDT"]
    assert data["searched"] == {k: list(v) for k, v in STRATEGIES["mean_reversion"].grid.items()}
    assert set(data["best_params"]) == set(STRATEGIES["mean_reversion"].parameters)
    for part in ("in_sample", "out_of_sample"):
        assert set(STATS) <= set(data[part])
    local = optimize(provider, **body["params"])  # type: ignore[arg-type]
    assert data["best_params"] == local["best_params"]


def test_as_a_job_with_progress(service: ServiceProcesses, provider: BundledProvider) -> None:
    params = {
        "symbols": ["AAPL", "MSFT", "NVDA"],
        "strategy_type": "sma_cross",
        "param_space": {"fast": {"min": 2, "max": 21}, "slow": {"min": 30, "max": 69}},
        "walk_forward": {"folds": 2},
        "max_evaluations": 1000,
    }
    with service.client(timeout_ms=10_000) as c:
        sub = c.call("job.submit", {"method": "optimize.parameters", "params": params})
        job = wait_job(c, sub["job_id"], {"running"}, timeout=60)
        partial = []
        while job["state"] == "running":
            if 0 < job["percent"] < 100:
                partial.append(job)
            time.sleep(0.1)
            job = c.call("job.status", {"job_id": sub["job_id"]})
        assert job["state"] == "succeeded", job
        assert partial and partial[0]["stage"] == "grid search"
        assert partial[-1]["progress"]["budget"] == 800
        result = c.call("job.result", {"job_id": sub["job_id"]})["result"]
        assert result["evaluations"] == 800 and result["validation"]["mode"] == "walk_forward"
        assert result["best_params"] == optimize(provider, **params)["best_params"]

        flagged = c.call("optimize.parameters", {"symbol": "XOM", "async": True})
        done = wait_job(c, flagged["job_id"], {"succeeded", "failed"}, timeout=60)
        assert done["state"] == "succeeded" and done["method"] == "optimize.parameters"


def test_cancel_a_running_job(service: ServiceProcesses) -> None:
    params = {
        "symbols": ["AAPL", "MSFT", "NVDA", "AMZN"],
        "strategy_type": "sma_cross",
        "param_space": {"fast": {"min": 2, "max": 41}, "slow": {"min": 50, "max": 149}},
        "max_evaluations": 5000,
    }
    with service.client(timeout_ms=10_000) as c:
        sub = c.call("job.submit", {"method": "optimize.parameters", "params": params})
        job = wait_job(c, sub["job_id"], {"running"}, timeout=60)
        while job["state"] == "running" and job["percent"] == 0:
            time.sleep(0.05)
            job = c.call("job.status", {"job_id": sub["job_id"]})
        c.call("job.cancel", {"job_id": sub["job_id"]})
        job = wait_job(c, sub["job_id"], {"cancelled", "succeeded", "failed"}, timeout=20)
        assert job["state"] == "cancelled" and job["error"]["code"] == "CANCELLED"
        assert job["percent"] < 100
        # The worker is free again: a quick call is answered.
        assert c.call("optimize.parameters", {"symbol": "AAPL"})["evaluations"] == 8


def test_unknown_symbols_name_the_fix(service: ServiceProcesses) -> None:
    with service.client() as c, pytest.raises(TACoreError) as err:
        c.call("optimize.parameters", {"symbols": ["AAPL", "APPL"]})
    assert err.value.code == "INVALID_PARAMS" and "AAPL" in err.value.message


def test_job_store_sees_the_failure(service: ServiceProcesses) -> None:
    with service.client() as c:
        sub = c.call("job.submit", {"method": "optimize.parameters",
                                    "params": {"symbol": "AAPL", "walk_forward": {"folds": 40}}})  # fmt: skip
        job = wait_job(c, sub["job_id"], {"failed", "succeeded"}, timeout=60)
    assert job["state"] == "failed" and job["error"]["code"] == "INVALID_PARAMS"
    assert "walk_forward.folds" in job["error"]["message"]

"""Backtest benchmarks: the paper window table, the universe medians, optimiser timings.

    python bench/bench_backtest.py                  # everything (the universe takes minutes)
    python bench/bench_backtest.py --skip-universe  # the window table and the optimiser only
    python bench/bench_backtest.py --json out.json  # also keep every figure as JSON

``bench_window``: ``tacore backtest``'s comparison, in-process: AAPL, GOOGL and AMZN from
2024-01-02 to 2024-03-28 (the TradingAgents paper's Table 1 window), the quant engine (one
decision per trading day, default research depth) against Buy&Hold, MACD, KDJ&RSI, ZMR and
SMA, costs from config/trading_config.yaml. Prints the results table and the wall time of
``--runs`` repetitions with the evidence caches cleared (median and max; the first run also
parses the files and is reported on its own).

``bench_universe``: ``tacore backtest --universe``: every bundled daily symbol over rolling
3-month windows starting every month after a year of warm-up; the medians per strategy and the
wall time, on a process pool sized to the cores (one run: it takes minutes).

``bench_optimize``: ``optimize.parameters`` in-process: the default grid (trend, 8 sets, AAPL),
walk-forward with 3 folds (sma_cross, AAPL), scipy differential evolution (macd, 200
evaluations, AAPL) and a 2,000-set grid on three symbols; median and max over ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import uncached_context  # noqa: E402

WINDOW = (["AAPL", "GOOGL", "AMZN"], "2024-01-02", "2024-03-28")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{round(x * 100, 2) + 0.0:+.2f}"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{round(x, 2) + 0.0:.2f}"


def bench_window(args: argparse.Namespace) -> dict[str, Any]:
    from tacoreservice.analysis.universe import clear_caches
    from tacoreservice.backtest.compare import compare
    from tacoreservice.config import load_settings

    settings = load_settings(REPO / "config" / "config.yaml", env={})
    symbols, start, end = WINDOW
    t0 = time.perf_counter()
    first = compare(symbols, start, end, settings)
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(args.runs):
        clear_caches()  # every analysis computed again, not read from the evidence cache
        t0 = time.perf_counter()
        again = compare(symbols, start, end, settings)
        times.append(time.perf_counter() - t0)
        assert again.rows() == first.rows()  # deterministic
    print(f"### Window {start} .. {end}: quant engine vs baselines\n")
    print(
        f"{len(first.decisions[symbols[0]])} decisions per symbol; costs "
        f"{first.cost_per_side * 1e4:.0f} bp a side; fills at the next open.\n"
    )
    print("| symbol | strategy | CR % | ARR % | SR | MDD % | trades | exposure |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in first.rows():
        print(
            f"| {r['symbol']} | {r['label']} | {_pct(r['total_return'])} | "
            f"{_pct(r['annualized_return'])} | {_num(r['sharpe_ratio'])} | "
            f"{_pct(r['max_drawdown'])} | {r['trades']} | {r['exposure']:.0%} |"
        )
    print(
        f"\nWall time: first run {first_s:.2f} s (files parsed); then, evidence caches "
        f"cleared, median {statistics.median(times):.2f} s, max {max(times):.2f} s over "
        f"{len(times)} runs "
        f"({3 * len(first.decisions[symbols[0]])} analyses and 15 baseline backtests a run).\n"
    )
    return {
        "results": first.rows(),
        "first_run_s": first_s,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "runs": len(times),
    }


def bench_universe(args: argparse.Namespace) -> dict[str, Any]:
    from tacoreservice.backtest.universe import run_universe
    from tacoreservice.config import load_settings

    settings = load_settings(REPO / "config" / "config.yaml", env={})
    done = []

    def progress(i: int, total: int, symbol: str) -> None:
        done.append(symbol)
        print(f"  {i}/{total} {symbol}", file=sys.stderr, flush=True)

    result = run_universe(
        settings,
        window_months=3,
        step_months=args.step_months,
        workers=args.workers,
        on_progress=progress,
    )
    print(
        f"### Universe: {result.symbols} symbols, rolling 3-month windows every "
        f"{result.step_months} month(s), {result.windows} window starts\n"
    )
    print(
        "| strategy | runs | median CR % | median ARR % | median SR | median MDD % | "
        "median vs B&H % | beats B&H | median exposure | never in |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in result.summary:
        beats = row["beats_buy_and_hold"]
        print(
            f"| {row['label']} | {row['runs']} | {_pct(row['median_total_return'])} | "
            f"{_pct(row['median_annualized_return'])} | {_num(row['median_sharpe_ratio'])} | "
            f"{_pct(row['median_max_drawdown'])} | {_pct(row['median_excess_return'])} | "
            f"{'n/a' if beats is None else f'{beats:.0%}'} | "
            f"{row['median_exposure']:.0%} | {row['never_invested']:.0%} |"
        )
    for market, summary in result.by_market.items():
        engine = summary[0]
        bh = next(r for r in summary if r["strategy"] == "buy_and_hold")
        print(
            f"\n- {market}: engine median CR {_pct(engine['median_total_return'])} % over "
            f"{engine['runs']} runs vs Buy&Hold {_pct(bh['median_total_return'])} %, engine "
            f"median SR {_num(engine['median_sharpe_ratio'])} vs "
            f"{_num(bh['median_sharpe_ratio'])}"
        )
    analyses = len({(r["symbol"], r["window"]) for r in result.runs})
    print(
        f"\nWall time: {result.elapsed_s:.0f} s on {result.workers} processes "
        f"({analyses} symbol-windows; skipped: {len(result.skipped)}).\n"
    )
    return {
        "summary": result.summary,
        "by_market": result.by_market,
        "elapsed_s": result.elapsed_s,
        "workers": result.workers,
        "symbols": result.symbols,
        "windows": result.windows,
    }


OPTIMIZE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("default grid, trend, AAPL", {"symbol": "AAPL", "strategy_type": "trend"}),
    (
        "walk-forward 3 folds, sma_cross, AAPL",
        {"symbol": "AAPL", "strategy_type": "sma_cross", "walk_forward": {"folds": 3}},
    ),
    (
        "scipy DE, 200 evaluations, macd, AAPL",
        {"symbol": "AAPL", "strategy_type": "macd", "method": "scipy", "max_evaluations": 200},
    ),
    (
        "grid of 2,000 sets, sma_cross, AAPL+MSFT+NVDA",
        {
            "symbols": ["AAPL", "MSFT", "NVDA"],
            "strategy_type": "sma_cross",
            "param_space": {
                "fast": {"min": 2, "max": 21, "step": 1},
                "slow": {"min": 30, "max": 129, "step": 1},
            },
            "max_evaluations": 2000,
        },
    ),
]


def bench_optimize(args: argparse.Namespace) -> dict[str, Any]:
    from tacoreservice.service.registry import call_method

    ctx = uncached_context()
    call_method("optimize.parameters", OPTIMIZE_CASES[0][1], ctx)  # parse files, imports
    print("### optimize.parameters (in-process)\n")
    print("| case | evaluations | runs | median s | max s | best params | IS SR | OOS SR |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    out = []
    runs = max(1, min(args.runs, 5))
    for case, params in OPTIMIZE_CASES:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            d = call_method("optimize.parameters", params, ctx)
            times.append(time.perf_counter() - t0)
        searched = {k: d["best_params"][k] for k in d["searched"]}
        print(
            f"| {case} | {d['evaluations']} | {runs} | {statistics.median(times):.2f} | "
            f"{max(times):.2f} | {searched} | {_num(d['in_sample']['sharpe_ratio'])} | "
            f"{_num(d['out_of_sample']['sharpe_ratio'])} |"
        )
        out.append(
            {"case": case, "evaluations": d["evaluations"], "median_s": statistics.median(times)}
        )
    print()
    return {"cases": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--skip-universe", action="store_true", help="leave the universe out")
    parser.add_argument("--step-months", type=int, default=1, help="universe window step")
    parser.add_argument("--workers", type=int, default=None, help="universe processes")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}\n"
    )
    figures: dict[str, Any] = {"window": bench_window(args), "optimize": bench_optimize(args)}
    if not args.skip_universe:
        figures["universe"] = bench_universe(args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

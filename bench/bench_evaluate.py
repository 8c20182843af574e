"""Decision quality, walk-forward: the harness of ``tacore evaluate`` on each half and on all.

    python bench/bench_evaluate.py                 # dev, holdout and all (about 10 minutes)
    python bench/bench_evaluate.py --splits all    # one split
    python bench/bench_evaluate.py --json out.json # also keep every figure as JSON

For each split (``dev``: every other symbol of each market, the half the model was designed
looking at; ``holdout``: the other half, judged only once the design was frozen; ``all``)
it runs :func:`tacoreservice.evaluation.harness.run_evaluation` on the bundled history from
2022-06 (month-ends) and prints, as Markdown for BENCHMARKS.md: the rank IC table at 21
bars (and 5 and 63), the reliability rows, the portfolio mode rows and the rolling-window
medians against the acceptance targets, with the wall time of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPLITS = ("dev", "holdout", "all")


def _f(x: Any, fmt: str = "{:+.3f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _pct(x: Any, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:+.{digits}f}"


def ic_rows(result: dict[str, Any]) -> list[str]:
    out = []
    for r in result["ic"]:
        if r["market"] == "crypto" and not r["months"]:
            continue
        out.append(
            f"| {result['split']} | {r['market'].upper()} | {r['score']} | {r['horizon']} | "
            f"{r['months']} | {_f(r['mean'])} | {_f(r['t'], '{:.2f}')} | "
            f"{_f(r['positive'], '{:.0%}')} |"
        )
    return out


def portfolio_rows(result: dict[str, Any]) -> list[str]:
    return [
        f"| {result['split']} | {r['market'].upper()} | {r['label']} | {_pct(r['total_return'])} "
        f"| {_f(r['sharpe_ratio'], '{:.2f}')} | {_pct(r['max_drawdown'])} | "
        f"{_f(r['turnover_per_year'], '{:.1f}')} | {r['mean_invested']:.0%} |"
        for r in result["portfolios"]
    ]


def rolling_rows(result: dict[str, Any]) -> list[str]:
    rolling = result["rolling_windows"] or {}
    rows = rolling.get("summary") or []
    engine: dict[str, Any] = next((r for r in rows if r["strategy"] == "engine"), {})
    beats = engine.get("sharpe_beats") or {}
    return [
        f"| {result['split']} | {r['label']} | {r['runs']} | {_f(r['median_sharpe_ratio'], '{:.2f}')}"
        f" | {_pct(r['median_max_drawdown'])} | "
        f"{_f((r.get('sharpe_beats') or {}).get('buy_and_hold'), '{:.0%}')} | "
        f"{_f(beats.get(r['strategy']), '{:.0%}')} | {_f(r['never_invested'], '{:.0%}')} |"
        for r in rows
    ]


def reliability_rows(result: dict[str, Any]) -> list[str]:
    out = [
        f"| {result['split']} | rating {r['rating']} | {r['count']} | "
        f"{_pct(r['mean_forward_return'], 2)} | {_f(r['hit_rate'], '{:.1%}')} | "
        f"{_f(r['mean_confidence'], '{:.2f}')} |"
        for r in result["calibration"]["by_rating"]
        if r["count"]
    ]
    out += [
        f"| {result['split']} | confidence {r['bucket']} | {r['count']} | "
        f"{_pct(r['mean_forward_return'], 2)} | {_f(r['hit_rate'], '{:.1%}')} | "
        f"{_f(r['mean_confidence'], '{:.2f}')} |"
        for r in result["calibration"]["by_confidence"]
        if r["count"]
    ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--start", default="2022-06-01")
    parser.add_argument("--png-dir", default=None, help="write each split's reliability PNG")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from tacoreservice.config import load_settings
    from tacoreservice.evaluation.harness import run_evaluation

    settings = load_settings(REPO / "config" / "config.yaml", env={})
    results: list[dict[str, Any]] = []
    for split in args.splits.split(","):
        t0 = time.perf_counter()
        png = Path(args.png_dir) / f"reliability_{split}.png" if args.png_dir else None
        result = run_evaluation(settings, split=split, start=args.start, png=png).to_json()
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        results.append(result)
        print(f"{split}: {result['wall_s']} s", file=sys.stderr)
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; month-ends from {args.start}\n"
    )
    print("| split | market | score | bars | months | mean IC | t | positive |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for result in results:
        print("\n".join(ic_rows(result)))
    print("\n| split | bucket | n | mean fwd % | hit | mean conf |")
    print("|---|---|---:|---:|---:|---:|")
    for result in results:
        print("\n".join(reliability_rows(result)))
    print("\n| split | market | portfolio | CR % | SR | MDD % | turnover/yr | invested |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for result in results:
        print("\n".join(portfolio_rows(result)))
    print(
        "\n| split | strategy | runs | median SR | median MDD % | SR > B&H | engine SR > | never in |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print("\n".join(rolling_rows(result)))
    print("\n" + ", ".join(f"{r['split']}: {r['wall_s']} s" for r in results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

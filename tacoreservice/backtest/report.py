"""Backtest output: rich tables for the terminal, CSV/JSON files and the equity-curve PNG.

The PNG is drawn with matplotlib's Agg canvas directly (no pyplot), so it needs no display
and leaves no global figure state behind in a long-lived process.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from tacoreservice.backtest.compare import Comparison
    from tacoreservice.backtest.universe import UniverseResult

__all__ = [
    "RESULT_COLUMNS",
    "comparison_table",
    "equity_png",
    "universe_table",
    "write_csv",
    "write_json",
]

RESULT_COLUMNS: tuple[str, ...] = (
    "symbol",
    "strategy",
    "label",
    "total_return",
    "annualized_return",
    "sharpe_ratio",
    "max_drawdown",
    "calmar_ratio",
    "trades",
    "closed_trades",
    "win_rate",
    "exposure",
)


def pct(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage; "n/a" when the figure does not exist (never 0)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "n/a"
    return f"{round(value * 100, digits) + 0.0:+.{digits}f}%"  # + 0.0: no "-0.00"


def num(value: Any, digits: int = 2) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "n/a"
    return f"{round(value, digits) + 0.0:.{digits}f}"


def comparison_table(comparison: Comparison) -> Table:
    table = Table(
        title=f"Backtest {comparison.start} .. {comparison.end}: {comparison.engine} engine vs "
        f"baselines (next-open fills, {comparison.cost_per_side * 1e4:.0f} bp a side)",
    )
    # The paper's column names: cumulative return, annualised return, Sharpe, max drawdown.
    table.add_column("symbol", no_wrap=True)
    table.add_column("strategy", no_wrap=True)
    for col in ("CR %", "ARR %", "SR", "MDD %", "trades", "exposure"):
        table.add_column(col, justify="right", no_wrap=True)
    previous = None
    for run in comparison.runs:
        if previous is not None and run.symbol != previous:
            table.add_section()
        previous = run.symbol
        s = run.stats
        table.add_row(
            run.symbol,
            f"[bold]{run.label}[/]" if run.strategy == "engine" else run.label,
            pct(s["total_return"]),
            pct(s["annualized_return"]),
            num(s["sharpe_ratio"]),
            pct(s["max_drawdown"]),
            str(run.trades["trades"]),
            pct(run.trades["exposure"], 0).lstrip("+"),
        )
    return table


def universe_table(result: UniverseResult) -> Table:
    engine = next((r for r in result.summary if r["strategy"] == "engine"), None)
    beats = (engine or {}).get("sharpe_beats") or {}
    table = Table(
        title=f"Universe: {result.symbols} symbols, rolling {result.window_months}-month windows "
        f"every {result.step_months} month(s), {result.windows} windows: medians over runs",
        caption="SR: a run that never invested counts as 0. vs B&H: median return over "
        "Buy&Hold in the same run. SR>B&H: share of runs whose Sharpe beats Buy&Hold's. "
        "eng SR>: share of runs in which the engine's Sharpe beats this strategy's.",
    )
    table.add_column("strategy", no_wrap=True)
    for col in ("runs", "CR %", "SR", "MDD %", "vs B&H", "SR>B&H", "eng SR>", "expo"):
        table.add_column(col, justify="right", no_wrap=True)
    for row in result.summary:
        table.add_row(
            f"[bold]{row['label']}[/]" if row["strategy"] == "engine" else row["label"],
            str(row["runs"]),
            pct(row["median_total_return"]),
            num(row["median_sharpe_ratio"]),
            pct(row["median_max_drawdown"], 1),
            pct(row["median_excess_return"]),
            pct((row.get("sharpe_beats") or {}).get("buy_and_hold"), 0).lstrip("+"),
            pct(beats.get(row["strategy"]), 0).lstrip("+"),
            pct(row["median_exposure"], 0).lstrip("+"),
        )
    return table


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = (
        list(RESULT_COLUMNS) if rows and "symbol" in rows[0] else list(rows[0] if rows else [])
    )
    extra = [k for r in rows for k in r if k not in columns]
    columns += list(dict.fromkeys(extra))
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return out


def write_json(payload: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    return out


def equity_png(comparison: Comparison, path: str | Path) -> Path:
    """One panel per symbol, one equity curve per strategy (the engine drawn heavier)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    symbols = comparison.symbols
    cols = min(3, len(symbols)) or 1
    rows = math.ceil(len(symbols) / cols) or 1
    fig = Figure(figsize=(5.2 * cols, 3.8 * rows), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, symbol in enumerate(symbols):
        ax = axes[i // cols][i % cols]
        for run in (r for r in comparison.runs if r.symbol == symbol):
            engine = run.strategy == "engine"
            dates = run.times.astype("datetime64[D]").astype(object)
            ax.plot(
                dates,
                (run.equity - 1.0) * 100.0,
                label=run.label,
                linewidth=2.4 if engine else 1.2,
                color="black" if engine else None,
                zorder=3 if engine else 2,
            )
        ax.axhline(0.0, color="grey", linewidth=0.6)
        ax.set_title(symbol)
        ax.set_ylabel("cumulative return %")
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    for j in range(len(symbols), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(
        f"{comparison.start} .. {comparison.end}: {comparison.engine} engine vs baselines "
        f"(next-open fills, {comparison.cost_per_side * 1e4:.0f} bp a side)"
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out

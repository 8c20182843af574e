"""The harness's tables for a terminal (80 columns or more)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from tacoreservice.backtest.report import num, pct

__all__ = ["calibration_tables", "ic_table", "portfolio_table"]

_SCORE_LABEL = {
    "scan_score": "scan score",
    "decision_expected_return": "decision E(r)",
    "decision_rating_x_confidence": "rating x conf",
}


def ic_table(rows: Sequence[dict[str, Any]], title: str = "") -> Table:
    table = Table(
        title=title or "Rank IC with forward returns, per month-end",
        caption="mean: average monthly Spearman IC; t: mean / sd x sqrt(months); "
        "pos: share of positive months",
    )
    table.add_column("market", no_wrap=True)
    table.add_column("score", no_wrap=True)
    for col in ("bars", "months", "mean", "t", "pos"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["market"]).upper(),
            _SCORE_LABEL.get(r["score"], r["score"]),
            str(r["horizon"]),
            str(r["months"]),
            "n/a" if r["mean"] is None else f"{r['mean']:+.3f}",
            num(r["t"]),
            pct(r["positive"], 0).lstrip("+"),
        )
    return table


def calibration_tables(
    by_rating: Sequence[dict[str, Any]], by_confidence: Sequence[dict[str, Any]], horizon: int = 21
) -> tuple[Table, Table]:
    ratings = Table(
        title=f"By rating: {horizon}-bar forward return and hit rate",
        caption="hit: the return had the sign the decision bet on",
    )
    ratings.add_column("rating", no_wrap=True)
    for col in ("n", "mean fwd %", "hit", "mean conf"):
        ratings.add_column(col, justify="right", no_wrap=True)
    for r in by_rating:
        ratings.add_row(
            r["rating"],
            str(r["count"]),
            pct(r["mean_forward_return"]),
            pct(r["hit_rate"], 1).lstrip("+"),
            num(r["mean_confidence"]),
        )
    conf = Table(
        title="By confidence: does 0.6 come true 60 % of the time?",
        caption="a calibrated engine has hit close to mean conf in every row",
    )
    conf.add_column("confidence", no_wrap=True)
    for col in ("n", "mean conf", "hit", "mean fwd %"):
        conf.add_column(col, justify="right", no_wrap=True)
    for r in by_confidence:
        if not r["count"]:
            continue
        conf.add_row(
            r["bucket"],
            str(r["count"]),
            num(r["mean_confidence"]),
            pct(r["hit_rate"], 1).lstrip("+"),
            pct(r["mean_forward_return"]),
        )
    return ratings, conf


def portfolio_table(rows: Sequence[dict[str, Any]], title: str = "") -> Table:
    table = Table(
        title=title or "Portfolio mode: monthly rebalanced, next-open fills, costs paid",
        caption="inv: mean share of the book in positions; turn: value traded a year over "
        "the book's mean value",
    )
    table.add_column("mkt", no_wrap=True)
    table.add_column("portfolio", no_wrap=True)
    for col in ("CR %", "ARR %", "SR", "MDD %", "turn", "inv"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["market"]).upper(),
            f"[bold]{r['label']}[/]" if r["portfolio"] == "tacore" else r["label"],
            pct(r["total_return"], 0),
            pct(r["annualized_return"], 1),
            num(r["sharpe_ratio"]),
            pct(r["max_drawdown"], 0),
            num(r["turnover_per_year"], 1),
            pct(r["mean_invested"], 0).lstrip("+"),
        )
    return table

"""Tables that fit the terminal without cutting a word, and numbers as people read them.

Rich shrinks a table that is too wide by folding or cutting its cells, so a symbol or a word can
end up split over two lines. :func:`fit` prevents that: a column that may wrap gets its longest
word as its minimum width, a column that may not keeps its whole text, and while the table is
still wider than the terminal, columns are dropped, the least needed first (the command names
them; otherwise the rightmost, never the first). The caption says which were left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from tacoreservice.reports.decision import fmt_price

__all__ = ["fit", "money", "new_table", "number", "pct", "price", "show"]


def new_table(title: str | None = None, **kwargs: Any) -> Table:
    """The CLI's table style: rounded box, headers in bold."""
    kwargs.setdefault("box", box.ROUNDED)
    kwargs.setdefault("title_justify", "left")
    return Table(title=title, **kwargs)


def _plain(cell: Any) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def _min_width(column: Column) -> int:
    texts = [_plain(column.header), *(_plain(c) for c in column._cells)]
    if column.no_wrap:
        need = max((cell_len(line) for t in texts for line in t.splitlines() or [""]), default=0)
    else:
        need = max((cell_len(word) for t in texts for word in t.split()), default=0)
    return max(need, column.min_width or 0)


def _needed(table: Table, widths: Sequence[int]) -> int:
    left, right = table.padding[3], table.padding[1]
    return sum(widths) + len(widths) * (left + right) + table._extra_width


def fit(table: Table, width: int, drop: Sequence[str] = ()) -> list[str]:
    """Fit ``table`` into ``width`` cells in place; returns the headers of dropped columns."""
    dropped: list[str] = []
    order = [name for name in drop if any(_plain(c.header) == name for c in table.columns)]
    while True:
        widths = [_min_width(c) for c in table.columns]
        if _needed(table, widths) <= width or len(table.columns) <= 1:
            break
        name = order.pop(0) if order else _plain(table.columns[-1].header)
        for column in table.columns:
            if _plain(column.header) == name:
                table.columns.remove(column)
                dropped.append(name)
                break
    for column, need in zip(table.columns, widths, strict=True):
        if not column.no_wrap:
            column.min_width = need
    return dropped


def show(table: Table, console: Console, drop: Sequence[str] = ()) -> None:
    """Print ``table`` fitted to the console's width, naming any column left out."""
    dropped = fit(table, console.width, drop)
    console.print(table)
    if dropped:
        console.print(
            f"[dim]left out to fit {console.width} columns: {', '.join(dropped)} "
            "(a wider terminal or --json shows them)[/]",
            soft_wrap=False,
        )


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def price(value: Any) -> str:
    """A price rounded as a quote board shows it: 2 decimals, 4 below 1, 6 below 0.01."""
    return fmt_price(value, missing="-")


def money(value: Any) -> str:
    x = _finite(value)
    return "-" if x is None else f"{x:,.2f}"


def number(value: Any, digits: int = 2) -> str:
    x = _finite(value)
    return "-" if x is None else f"{x:,.{digits}f}"


def pct(value: Any, digits: int = 1, ratio: bool = True) -> str:
    """A percentage: ``ratio`` values (0.12) are scaled by 100, others (12.0) are not."""
    x = _finite(value)
    if x is None:
        return "-"
    return f"{x * 100 if ratio else x:.{digits}f}%"

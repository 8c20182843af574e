"""The paper account's equity curve, replayed from the ledger's fills.

The ledger keeps the current cash and positions and every fill (day, quantity, price,
commission). Replaying the fills in market-day order gives the cash and the holdings at the
close of each day, and each day's closes value them: equity = cash + sum(quantity x close).
The days are the trading days of the symbols the account held (their bars), from the day before
the first fill to the paper clock; a symbol with no bar that day keeps its previous close. The
replayed end point equals ``portfolio.get``'s equity at the clock (a test holds them equal).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tacoreservice.trading.ledger import Ledger

__all__ = ["equity_history"]

_MAX_POINTS = 2000  # a long history is thinned to this many days (the last one always kept)


def _day(text: Any) -> str:
    return str(text)[:10]


def equity_history(ledger: Ledger, book: Any, initial_cash: float, clock: str) -> dict[str, Any]:
    """``{points: [{date, equity, cash, positions_value, drawdown}], max_drawdown, ...}``;
    ``book`` is a :class:`~tacoreservice.trading.paper_broker.PriceBook`."""
    with ledger.snapshot():
        fills = ledger.all_fills()
    if not fills:
        point = {
            "date": clock,
            "equity": round(initial_cash, 2),
            "cash": round(initial_cash, 2),
            "positions_value": 0.0,
            "drawdown": 0.0,
        }
        return {
            "points": [point],
            "initial_cash": round(initial_cash, 2),
            "start": clock,
            "end": clock,
            "max_drawdown": 0.0,
            "fills": 0,
        }
    symbols = sorted({f["symbol"] for f in fills})
    first = _day(fills[0]["as_of"])
    start = str(np.datetime64(first, "D") - np.timedelta64(1, "D"))
    end = max(clock, _day(fills[-1]["as_of"]))
    days: set[str] = {start, end}
    closes: dict[str, dict[str, float]] = {}
    for sym in symbols:
        bars = book.bars(sym)
        when = bars.time.astype("datetime64[D]").astype(str)
        keep = (when >= start) & (when <= end)
        closes[sym] = dict(zip(when[keep].tolist(), bars.close[keep].tolist(), strict=True))
        days.update(closes[sym])
        # The close before the window, so a symbol is valued from the first day on.
        before = book.close_before(sym, start)
        if before is not None:
            closes[sym].setdefault("", before)
    ordered = sorted(days)
    cash = float(initial_cash)
    held: dict[str, float] = {}
    last_close: dict[str, float] = {s: closes[s].get("", np.nan) for s in symbols}
    points: list[dict[str, Any]] = []
    i = 0
    peak = -np.inf
    max_dd = 0.0
    for day in ordered:
        while i < len(fills) and _day(fills[i]["as_of"]) <= day:
            f = fills[i]
            qty, px, fee = float(f["quantity"]), float(f["price"]), float(f["commission"] or 0)
            sign = 1.0 if f["action"] == "buy" else -1.0
            held[f["symbol"]] = held.get(f["symbol"], 0.0) + sign * qty
            cash -= sign * qty * px + fee
            last_close.setdefault(f["symbol"], px)
            if not np.isfinite(last_close[f["symbol"]]):
                last_close[f["symbol"]] = px
            i += 1
        for sym in symbols:
            if day in closes[sym]:
                last_close[sym] = closes[sym][day]
        value = sum(q * last_close[s] for s, q in held.items() if abs(q) > 1e-9)
        equity = cash + value
        peak = max(peak, equity)
        dd = (peak - equity) / peak if peak > 0 else 0.0
        max_dd = max(max_dd, dd)
        points.append(
            {
                "date": day,
                "equity": round(equity, 2),
                "cash": round(cash, 2),
                "positions_value": round(value, 2),
                "drawdown": round(dd, 6),
            }
        )
    if len(points) > _MAX_POINTS:
        step = int(np.ceil(len(points) / _MAX_POINTS))
        points = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
    return {
        "points": points,
        "initial_cash": round(initial_cash, 2),
        "start": start,
        "end": end,
        "max_drawdown": round(max_dd, 6),
        "fills": len(fills),
    }

"""The vectorised long/flat backtest: positions in; net returns, equity and statistics out.

One set of conventions for ``analyze.strategy``, ``tacore backtest`` and
``optimize.parameters``:

* ``position[t]`` (0 flat .. 1 long) is decided at bar t's close from bars up to t only.
* It is filled at bar t+1's open: period k runs from ``open[k]`` to ``open[k+1]`` and holds
  ``position[k-1]``. The last period of a run is marked to that bar's close, so a run never
  reads the open after its last bar.
* The account starts in cash before the first period; each change of position pays
  ``cost_per_side`` times the size of the change, in the period where it happens. A position
  still open at the end is marked to market, not sold (no exit cost is assumed).

Costs have one source, the ``trading.costs`` settings (config/trading_config.yaml), the same
schedule the paper broker charges: per side, ``commission_rate + slippage_bps / 10 000``
(10 bp with the shipped file: 5 bp commission, 5 bp slippage against the taker, because a
next-open fill is a market order). ``commission_min`` and ``commission_per_share`` need an
account size and share counts, which a fractional backtest does not have; at 100 000 of
notional the 1.00 minimum would add 0.1 bp, so leaving them out changes no figure that
matters.

Statistics are empyrical's (``cum_returns_final``, ``annual_return`` (CAGR),
``sharpe_ratio`` (risk-free 0), ``max_drawdown`` (negative fraction, from the starting
equity), ``calmar_ratio``), annualised with the bars per year of the market and timeframe. A
figure that is not defined (Sharpe of a run that never moved, Calmar without a drawdown) is
``None``, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tacoreservice.config import TradingCosts
from tacoreservice.market_data.provider import Bars

__all__ = [
    "DEFAULT_COST_PER_SIDE",
    "STATISTICS",
    "Simulation",
    "cost_per_side",
    "entry_exit_positions",
    "simulate",
    "statistics",
    "trade_summary",
]

STATISTICS: tuple[str, ...] = (
    "total_return",
    "annualized_return",
    "sharpe_ratio",
    "max_drawdown",
    "calmar_ratio",
)


def cost_per_side(costs: TradingCosts | None = None) -> float:
    """The fraction of notional one fill costs: commission rate plus slippage."""
    c = costs if costs is not None else TradingCosts()
    return float(c.commission_rate) + float(c.slippage_bps) / 10_000.0


DEFAULT_COST_PER_SIDE = cost_per_side()


def entry_exit_positions(entry: np.ndarray, exit_: np.ndarray) -> np.ndarray:
    """Long from an entry bar until the next exit bar (inclusive of entry, exclusive of exit),
    flat before the first entry. An entry and an exit on the same bar: the entry wins, being
    the newer news."""
    n = entry.shape[0]
    events = np.full(n, np.nan)
    events[exit_] = 0.0
    events[entry] = 1.0
    idx = np.where(np.isfinite(events), np.arange(n), -1)
    idx = np.maximum.accumulate(idx)
    return np.where(idx >= 0, events[np.maximum(idx, 0)], 0.0)


@dataclass(frozen=True)
class Simulation:
    """One backtest run: per-period net returns and what was held in each period."""

    returns: np.ndarray  # net return of each period, after costs
    held: np.ndarray  # the position held in each period
    turnover: np.ndarray  # |change of position| at the start of each period
    times: np.ndarray  # datetime64[s], the open time of each period's bar
    ppy: float  # periods per year, for annualising
    cost_per_side: float

    @property
    def equity(self) -> np.ndarray:
        """Equity after each period, starting from 1.0."""
        return np.cumprod(1.0 + self.returns)

    def __len__(self) -> int:
        return int(self.returns.shape[0])


def simulate(
    bars: Bars,
    position: np.ndarray,
    *,
    ppy: float,
    cost: float = DEFAULT_COST_PER_SIDE,
    first: int = 1,
    last: int | None = None,
) -> Simulation:
    """Hold ``position[k-1]`` over period k for k = ``first`` .. ``last`` (bar indices).

    ``position`` has one entry per bar. With ``first == 0`` there is no earlier decision, so
    the first period is flat.
    """
    n = len(bars)
    pos = np.asarray(position, dtype=np.float64)
    if pos.shape != (n,):
        raise ValueError(f"position has shape {pos.shape}, expected ({n},): one per bar")
    last = n - 1 if last is None else int(last)
    if not 0 <= first <= last < n:
        raise ValueError(f"need 0 <= first <= last < {n}, got first={first}, last={last}")
    opens = np.asarray(bars.open[first : last + 1], dtype=np.float64)
    exit_prices = np.r_[
        np.asarray(bars.open[first + 1 : last + 1], dtype=np.float64), bars.close[last]
    ]
    period_ret = exit_prices / opens - 1.0
    decided = pos[max(first - 1, 0) : last]
    held = np.r_[0.0, decided] if first == 0 else decided
    held = np.where(np.isfinite(held), np.clip(held, 0.0, 1.0), 0.0)
    turnover = np.abs(np.diff(np.r_[0.0, held]))
    net = held * period_ret - cost * turnover
    # A missing price (NaN) earns nothing rather than poisoning the whole equity curve.
    net = np.where(np.isfinite(net), net, 0.0)
    return Simulation(
        returns=net,
        held=held,
        turnover=turnover,
        times=np.asarray(bars.time[first : last + 1]),
        ppy=float(ppy),
        cost_per_side=float(cost),
    )


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def statistics(returns: np.ndarray, ppy: float) -> dict[str, float | None]:
    """The five headline figures of a run of per-period returns (see the module docstring)."""
    # Imported here: empyrical pulls in pandas and scipy.stats (about a second), which a
    # worker that never backtests should not pay at start.
    import empyrical

    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] == 0:
        return dict.fromkeys(STATISTICS)
    with np.errstate(all="ignore"):
        mdd = _finite(empyrical.max_drawdown(r))
        return {
            "total_return": _finite(empyrical.cum_returns_final(r)),
            "annualized_return": _finite(empyrical.annual_return(r, annualization=ppy)),
            "sharpe_ratio": _finite(empyrical.sharpe_ratio(r, annualization=ppy)),
            "max_drawdown": mdd,
            "calmar_ratio": _finite(empyrical.calmar_ratio(r, annualization=ppy))
            if mdd is not None and mdd < 0
            else None,
        }


def trade_summary(sim: Simulation) -> dict[str, Any]:
    """Round trips of a long/flat run: entries, closed trades, win rate, exposure."""
    h = sim.held > 0
    before = np.r_[False, h[:-1]]
    entries = np.flatnonzero(h & ~before)
    exits = np.flatnonzero(~h & before)
    csum = np.r_[0.0, np.cumsum(np.log1p(np.maximum(sim.returns, -0.999999)))]
    closed: list[float] = []
    for i, start in enumerate(entries):
        if i < exits.shape[0] and exits[i] > start:
            end = exits[i]  # the exit period pays the selling cost
            closed.append(math.expm1(csum[end + 1] - csum[start]))
    wins = sum(1 for r in closed if r > 0)
    n = len(sim)
    return {
        "trades": int(entries.shape[0]),
        "closed_trades": len(closed),
        "win_rate": round(wins / len(closed), 4) if closed else None,
        "exposure": round(float(sim.held.mean()), 4) if n else None,
        "open_trade": bool(n and h[-1]),
    }

"""Portfolio risk statistics from daily closes: VaR/CVaR, volatility, drawdown, beta, correlation.

Pure functions over numpy arrays (no market data provider), so they can be checked by hand.
Conventions, all in one place:

* Returns are simple daily returns of the portfolio's *equity*: the current quantities held
  constant over the lookback, valued at each day's close, plus the cash (constant). Cash thus
  damps the figures as it damps the account's real swings.
* History is aligned on the intersection of the dates of every position (and of the benchmark
  used for the portfolio beta); the last ``lookback_days + 1`` common dates give
  ``lookback_days`` returns. Fewer than :data:`MIN_OBSERVATIONS` returns: no statistics.
* VaR and CVaR are positive loss fractions (0.02 = a 2 % loss), also given as currency amounts
  of the current equity.
  - historical: empyrical's ``value_at_risk`` (numpy's linearly interpolated percentile at
    ``1 - confidence``) and ``conditional_value_at_risk`` (mean of the worst
    ``int((n - 1) * (1 - confidence)) + 1`` returns), sign flipped. For a horizon of h days the
    1-day figures are scaled by sqrt(h): overlapping h-day windows would leave too few
    independent observations in a one-year lookback.
  - parametric (normal): mean ``mu`` and sample standard deviation ``sigma`` (ddof 1) of the
    daily returns, ``z = norm.ppf(1 - confidence)``; over h days
    ``VaR = -(mu*h + z*sigma*sqrt(h))`` and
    ``CVaR = -(mu*h - sigma*sqrt(h)*norm.pdf(z)/(1 - confidence))``.
* Annualised volatility: empyrical ``annual_volatility`` (sample std * sqrt(periods)), 252
  periods a year, or 365 when every position is crypto (it trades every day).
* Max drawdown: empyrical ``max_drawdown`` of the equity returns, as a positive fraction.
* Beta: empyrical ``beta`` (cov/var) of the portfolio's returns against the benchmark's on the
  same dates; per symbol against its own market's benchmark on the pair's common dates.
* Concentration: HHI = sum of squared weights of gross exposure (cash left out, so one position
  is 1 with or without cash), and the effective number of positions 1/HHI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import empyrical
import numpy as np
from scipy.stats import norm

__all__ = [
    "MIN_OBSERVATIONS",
    "RISK_SCORE_FORMULA",
    "DailyCloses",
    "concentration",
    "portfolio_statistics",
    "risk_score",
    "var_cvar",
]

MIN_OBSERVATIONS = 30
TRADING_DAYS = 252
CRYPTO_DAYS = 365

# Ceilings at which a component reaches its maximum; volatility, drawdown and beta use the
# same ceilings as the analysis graph's risk manager so the two scores read alike.
_SCORE_CEILINGS = {"volatility": 0.80, "tail_loss": 0.10, "drawdown": 0.50, "beta": 2.0}
_SCORE_WEIGHTS = {
    "volatility": 0.30,
    "tail_loss": 0.20,
    "drawdown": 0.20,
    "beta": 0.15,
    "concentration": 0.15,
}
RISK_SCORE_FORMULA = (
    "risk_score = 100 * sum(w_i * c_i) / sum(w_i) over the components that can be computed, "
    "where c_volatility = min(annual_volatility / 0.80, 1) (w 0.30), "
    "c_tail_loss = min(max(1-day historical CVaR 95% / 0.10, 0), 1) (w 0.20), "
    "c_drawdown = min(max_drawdown / 0.50, 1) (w 0.20), "
    "c_beta = min(max(beta / 2.0, 0), 1) (w 0.15), "
    "c_concentration = HHI of the position weights (w 0.15); "
    "0 = no measurable risk, 100 = every component at its ceiling"
)


@dataclass(frozen=True)
class DailyCloses:
    """Daily closes of one symbol up to as_of, oldest first (dates as datetime64[D])."""

    symbol: str
    dates: np.ndarray
    close: np.ndarray


def _num(x: Any, digits: int = 6) -> float | None:
    """A finite float rounded for the reply, or None (never NaN on the wire)."""
    if x is None:
        return None
    value = float(x)
    return round(value, digits) if math.isfinite(value) else None


def _label(confidence: float) -> str:
    return f"{confidence:g}"


def var_cvar(
    returns: np.ndarray, confidence: float, horizon_days: int = 1
) -> dict[str, float | None]:
    """Historical and parametric VaR and CVaR of daily ``returns`` as positive loss fractions.

    See the module docstring for the conventions.
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return {
            "historical_var": None,
            "historical_cvar": None,
            "parametric_var": None,
            "parametric_cvar": None,
        }
    cutoff = 1.0 - confidence
    scale = math.sqrt(horizon_days)
    mu = float(np.mean(r))
    sigma = float(np.std(r, ddof=1))
    z = float(norm.ppf(cutoff))
    return {
        "historical_var": -float(empyrical.value_at_risk(r, cutoff=cutoff)) * scale,
        "historical_cvar": -float(empyrical.conditional_value_at_risk(r, cutoff=cutoff)) * scale,
        "parametric_var": -(mu * horizon_days + z * sigma * scale),
        "parametric_cvar": -(mu * horizon_days - sigma * scale * float(norm.pdf(z)) / cutoff),
    }


def concentration(values: Sequence[float] | np.ndarray) -> tuple[float | None, float | None]:
    """(HHI, effective number of positions) of gross exposure ``values``."""
    gross = np.abs(np.asarray(values, dtype=np.float64))
    total = float(gross.sum())
    if total <= 0:
        return None, None
    hhi = float(np.sum((gross / total) ** 2))
    return hhi, 1.0 / hhi


def risk_score(
    annual_volatility: float | None,
    tail_loss: float | None,
    max_drawdown: float | None,
    beta: float | None,
    hhi: float | None,
) -> tuple[float | None, dict[str, float]]:
    """The 0-100 score of :data:`RISK_SCORE_FORMULA` and its components (each 0..1).

    None without volatility: a score from concentration alone would look like a low risk
    when it is an unknown one.
    """
    if annual_volatility is None:
        return None, {}
    raw = {
        "volatility": annual_volatility / _SCORE_CEILINGS["volatility"],
        "tail_loss": None if tail_loss is None else tail_loss / _SCORE_CEILINGS["tail_loss"],
        "drawdown": None if max_drawdown is None else max_drawdown / _SCORE_CEILINGS["drawdown"],
        "beta": None if beta is None else beta / _SCORE_CEILINGS["beta"],
        "concentration": hhi,
    }
    comps = {k: min(max(float(v), 0.0), 1.0) for k, v in raw.items() if v is not None}
    weight = sum(_SCORE_WEIGHTS[k] for k in comps)
    score = 100.0 * sum(_SCORE_WEIGHTS[k] * v for k, v in comps.items()) / weight
    return round(score, 2), {k: round(v, 4) for k, v in comps.items()}


def _intersect_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Common values of two sorted arrays without duplicates (bar dates are both).

    np.intersect1d re-sorts (or hashes) its inputs: most of this module's time with 20
    symbols; a binary search of one in the other is a fraction of it.
    """
    if a.size == 0 or b.size == 0:
        return a[:0]
    idx = np.minimum(np.searchsorted(b, a), b.size - 1)
    return a[b[idx] == a]


def _common_dates(series: Sequence[DailyCloses]) -> np.ndarray:
    return reduce(_intersect_sorted, (s.dates for s in series))


def _closes_on(s: DailyCloses, dates: np.ndarray) -> np.ndarray:
    # dates is a subset of s.dates (an intersection), both sorted: searchsorted finds them.
    return s.close[np.searchsorted(s.dates, dates)]


def _simple_returns(closes: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return closes[1:] / closes[:-1] - 1.0


def _pair_beta(asset: DailyCloses, bench: DailyCloses, lookback_days: int) -> tuple[Any, int]:
    dates = _intersect_sorted(asset.dates, bench.dates)[-(lookback_days + 1) :]
    n = max(len(dates) - 1, 0)
    if n < MIN_OBSERVATIONS:
        return None, n
    ra = _simple_returns(_closes_on(asset, dates))
    rb = _simple_returns(_closes_on(bench, dates))
    return _num(empyrical.beta(ra, rb), 4), n


def portfolio_statistics(
    histories: dict[str, DailyCloses],
    quantities: dict[str, float],
    cash: float | None,
    benchmark: DailyCloses,
    symbol_benchmarks: dict[str, DailyCloses],
    confidence_levels: Sequence[float],
    horizon_days: int,
    lookback_days: int,
    crypto_only: bool,
) -> dict[str, Any]:
    """Statistics of the constant-quantity portfolio over the last ``lookback_days`` returns.

    ``histories`` holds the positions' closes, ``benchmark`` the index for the portfolio beta,
    ``symbol_benchmarks`` each symbol's own market index. Answers ``{"statistics": None,
    "note": ...}`` when the history is too short, never made-up figures.
    """
    symbols = [s for s in histories if quantities.get(s, 0.0) != 0.0]
    if not symbols:
        return {"statistics": None, "note": "no positions with a quantity: nothing to measure"}
    series = [histories[s] for s in symbols]
    dates = _common_dates([*series, benchmark])[-(lookback_days + 1) :]
    observations = max(len(dates) - 1, 0)
    qty = np.asarray([quantities[s] for s in symbols], dtype=np.float64)
    closes = np.column_stack([_closes_on(s, dates) for s in series]) if len(dates) else None
    equity = closes @ qty + (cash or 0.0) if closes is not None else np.empty(0)
    # Today's values use each symbol's own last close, which may be newer than the last common
    # date (a crypto weekend, a market closed for a holiday).
    values_now = np.asarray([histories[s].close[-1] for s in symbols]) * qty
    equity_now = float(values_now.sum()) + (cash or 0.0)
    history = {
        "start": str(dates[0]) if len(dates) else None,
        "end": str(dates[-1]) if len(dates) else None,
        "observations": observations,
        "peak_equity": _num(max(float(equity.max()), equity_now), 2) if equity.size else None,
        "aligned_on": "intersection of the dates of every position and of "
        f"{benchmark.symbol} (the portfolio beta's benchmark)",
    }
    if observations < MIN_OBSERVATIONS or closes is None:
        return {
            "statistics": None,
            "history": history,
            "note": f"only {observations} aligned daily returns (need {MIN_OBSERVATIONS}) "
            "between the positions' histories: statistics are not computed",
        }

    returns = _simple_returns(equity)
    periods = CRYPTO_DAYS if crypto_only else TRADING_DAYS
    var: dict[str, Any] = {}
    cvar: dict[str, Any] = {}
    for c in confidence_levels:
        f = var_cvar(returns, c, horizon_days)
        for out, kind in ((var, "var"), (cvar, "cvar")):
            hist, par = f[f"historical_{kind}"], f[f"parametric_{kind}"]
            out[_label(c)] = {
                "historical": _num(hist),
                "historical_amount": _num(None if hist is None else hist * equity_now, 2),
                "parametric": _num(par),
                "parametric_amount": _num(None if par is None else par * equity_now, 2),
            }
    bench_returns = _simple_returns(_closes_on(benchmark, dates))
    asset_returns = _simple_returns(closes)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.atleast_2d(np.corrcoef(asset_returns, rowvar=False))
    annual_vol = _num(empyrical.annual_volatility(returns, annualization=periods))
    max_dd = _num(-empyrical.max_drawdown(returns))
    beta = _num(empyrical.beta(returns, bench_returns), 4)
    tail = var_cvar(returns, 0.95, 1)["historical_cvar"]
    hhi, _ = concentration(values_now)
    score, components = risk_score(annual_vol, tail, max_dd, beta, hhi)

    per_symbol_beta = {}
    for sym in symbols:
        b = symbol_benchmarks[sym]
        value, n = _pair_beta(histories[sym], b, lookback_days)
        per_symbol_beta[sym] = {"benchmark": b.symbol, "beta": value, "observations": n}
    return {
        "statistics": {
            "var": var,
            "cvar": cvar,
            "annual_volatility": annual_vol,
            "annualization_periods": periods,
            "max_drawdown": max_dd,
            "beta": beta,
            "benchmark": benchmark.symbol,
            "symbol_betas": per_symbol_beta,
            "correlation": {
                "symbols": symbols,
                "matrix": [[_num(x, 4) for x in row] for row in corr.tolist()],
                "observations": observations,
            },
            "risk_score": score,
            "risk_score_components": components,
        },
        "history": history,
    }

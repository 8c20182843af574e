"""The model's calibration: what each signal has been worth in a market, measured before D.

A calibration is fitted for one market at one month-end M, from that market's panel
(:mod:`tacoreservice.analysis.factors`) and nothing after M:

* **Observations**: every symbol at every month-end of the last ``LOOKBACK_MONTHS`` whose
  forward window of ``HORIZON`` bars ended on or before M (so each target was known at M).
  The target is the forward return in units of the symbol's volatility over the horizon,
  ``r / (vol_ann x sqrt(HORIZON / bars_per_year))``, clipped to +/-``Y_CLIP``: a forecast
  in these units is an expected Sharpe for the month, comparable across a utility and BTC.
* **Minimum history**: ``MIN_MONTHS`` month-ends with targets. Before that the calibration
  is the prior alone: no signal weight, and the drift at its prior mean.
* **Signal weights**: a ridge regression of the target on the standardised signals. The
  penalty is the Bayesian one for a prior that true effects are small: weights ~ N(0,
  ``TAU_TOTAL``^2 / K) for K signals, so that the whole forecast's spread is a priori about
  ``TAU_TOTAL`` of a volatility: monthly return forecasts rarely explain even 1 % of the
  variance (an IC of 0.1), and one with an IC above 0.05 is already good. Returns of one
  month move together (the market), so a
  time-series signal's observations are worth fewer independent ones: its penalty is scaled
  by the design effect ``1 + (n - 1) x ICC`` of the months (Kish). Cross-sectional ranks sum
  to zero within a month, so the common move cancels out of them and their penalty is not.
* **Drift**: the mean target over the window's months, shrunk by the same Bayesian rule
  toward the prior (N(``DRIFT_PRIOR[market]``, ``TAU_DRIFT``^2), the standard error from the
  spread of the monthly means): the market's own recent base rate, counted at what it is
  worth. The prior mean is the equity premium for stocks: about a quarter of a volatility a
  year for a single stock over the long run (Dimson, Marsh and Staunton's century of
  returns: 4-5 % a year over bills at 20-30 % volatility), 0.07 a month in these units;
  crypto has no such record, so its prior mean is 0.
* **ICs**: each signal's monthly rank IC (Spearman, across the market's symbols) over the last
  ``IC_MONTHS`` months, its mean, t-statistic and share of positive months, for the reports.

A forecast is ``s = drift + sum(weight x z)``, with ``z`` the signal standardised as in the
fit (an unavailable signal counts as its mean, so it moves nothing). ``P(up) = Phi(s / residual
sd)``. The posterior covariance of the weights gives the forecast's standard error, which the
conservative risk analyst uses.

Calibrations are data: :class:`Calibration` is JSON with its fit window, and
:class:`CalibrationStore` keeps versioned files (``tacore calibrate`` writes them; the package
ships one per market fitted on the bundled history). :func:`calibration_for` picks, for a
decision on day D, the walk-forward fit at the last month-end before D's month, or a stored
one fitted no later than that month-end; never one whose window reaches D.
"""

from __future__ import annotations

import hashlib
import math
import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tacoreservice.analysis.calibration_store import (
    CALIBRATION_VERSION,
    SHIPPED_DIR,
    Calibration,
    CalibrationStore,
    drift_shrink,
)
from tacoreservice.analysis.factors import HORIZON, SIGNALS, MarketPanel, market_panel
from tacoreservice.market_data.provider import is_static, provider_key

__all__ = [
    "CALIBRATION_VERSION",
    "DRIFT_PRIOR",
    "IC_MONTHS",
    "LOOKBACK_MONTHS",
    "MIN_MONTHS",
    "SHIPPED_DIR",
    "Calibration",
    "CalibrationStore",
    "calibration_for",
    "clear_calibrations",
    "fit_calibration",
    "fit_month_index",
    "panel_identity",
]

# The fit's constants (see the module docstring); changing one means bumping
# calibration_store.CALIBRATION_VERSION, so that stored fits of the old model go unused.
LOOKBACK_MONTHS = 36
MIN_MONTHS = 12
IC_MONTHS = 24
TAU_TOTAL = 0.05
DRIFT_PRIOR: dict[str, float] = {"us": 0.07, "cn": 0.07, "crypto": 0.0}
Y_CLIP = 5.0
# A signal must have a value in this share of the window's observations to be fitted at all.
MIN_COVERAGE = 0.3
# The IC of a month needs this many symbols with both the signal and the forward return; a
# timing record (a signal the same for every symbol) needs this many months.
MIN_IC_SYMBOLS = 5
MIN_TIMING_MONTHS = 6


def panel_identity(panel: MarketPanel, upto: int) -> dict[str, Any]:
    """Which data a fit at panel day ``upto`` saw: the universe and a digest of its closes."""
    block = panel.close[: upto + 1]
    digest = hashlib.sha256(np.nan_to_num(block, nan=-1.0).round(6).tobytes()).hexdigest()[:16]
    return {"symbols": list(panel.symbols), "closes_sha256": digest}


def fit_month_index(panel: MarketPanel, day: np.datetime64) -> int:
    """The panel index of the month-end a decision on ``day`` uses: the last panel day of the
    months before ``day``'s own (-1 when there is none). Never ``day``'s own month, whose end
    a truncated history could place on ``day`` itself."""
    month_start = day.astype("datetime64[M]").astype("datetime64[D]")
    return int(np.searchsorted(panel.days, month_start, side="left")) - 1


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = np.argsort(np.argsort(x, kind="mergesort"), kind="mergesort").astype(np.float64)
    ry = np.argsort(np.argsort(y, kind="mergesort"), kind="mergesort").astype(np.float64)
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / den if den > 0 else math.nan


def _ic_table(panel: MarketPanel, months: list[int]) -> dict[str, dict[str, Any]]:
    """Each signal's monthly cross-sectional rank IC over ``months``. A signal that is the
    same for every symbol on a day (the market's trend) cannot rank them: its record is the
    rank correlation, across the months, of its value with the universe's mean forward
    return (``kind: timing``), and has no t-statistic of monthly draws."""
    out: dict[str, dict[str, Any]] = {}
    for spec in SIGNALS:
        raw = panel.raw[spec.name]
        ics: list[float] = []
        timing: list[tuple[float, float]] = []
        for k in months:
            y = panel.forward_return(k)
            x = raw[k]
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() < MIN_IC_SYMBOLS:
                continue
            if np.ptp(x[ok]) == 0:
                timing.append((float(x[ok][0]), float(y[ok].mean())))
                continue
            ic = _spearman(x[ok], y[ok])
            if math.isfinite(ic):
                ics.append(ic)
        if len(timing) > len(ics):
            record = _record("timing", len(timing))
            if len(timing) >= MIN_TIMING_MONTHS:
                tx = np.array([t[0] for t in timing])
                ty = np.array([t[1] for t in timing])
                rho = _spearman(tx, ty) if np.ptp(tx) > 0 and np.ptp(ty) > 0 else math.nan
                record["mean"] = round(rho, 4) if math.isfinite(rho) else None
            out[spec.name] = record
            continue
        if len(ics) < 3:
            out[spec.name] = _record("rank", len(ics))
            continue
        arr = np.asarray(ics)
        sd = float(arr.std(ddof=1))
        out[spec.name] = {
            "kind": "rank",
            "months": len(ics),
            "mean": round(float(arr.mean()), 4),
            "t": round(float(arr.mean()) / sd * math.sqrt(len(ics)), 2) if sd > 0 else None,
            "positive": round(float((arr > 0).mean()), 3),
        }
    return out


def _record(kind: str, months: int) -> dict[str, Any]:
    return {"kind": kind, "months": months, "mean": None, "t": None, "positive": None}


def _icc(y: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Intra-month correlation of the targets (one-way ANOVA estimator) and the mean group
    size."""
    labels, inverse = np.unique(groups, return_inverse=True)
    g = labels.shape[0]
    n = y.shape[0]
    if g < 2 or n <= g:
        return 0.0, float(n) / max(g, 1)
    counts = np.bincount(inverse).astype(np.float64)
    means = np.bincount(inverse, weights=y) / counts
    grand = y.mean()
    msb = float((counts * (means - grand) ** 2).sum()) / (g - 1)
    msw = float(((y - means[inverse]) ** 2).sum()) / (n - g)
    n0 = (n - float((counts**2).sum()) / n) / (g - 1)
    den = msb + (n0 - 1.0) * msw
    icc = (msb - msw) / den if den > 0 else 0.0
    return max(0.0, min(1.0, icc)), float(counts.mean())


def fit_calibration(panel: MarketPanel, k_fit: int) -> Calibration:
    """Fit the market's model at panel day ``k_fit`` from month-ends whose targets were known
    by then (see the module docstring)."""
    day = str(panel.days[k_fit]) if k_fit >= 0 else ""
    ends = panel.month_ends()
    usable = [int(k) for k in ends if k + HORIZON <= k_fit]
    usable = usable[-LOOKBACK_MONTHS:]
    horizon_scale = math.sqrt(HORIZON / panel.ppy)
    rows_x: list[np.ndarray] = []
    rows_y: list[np.ndarray] = []
    rows_g: list[np.ndarray] = []
    months_used: list[int] = []
    names = [s.name for s in SIGNALS]
    for k in usable:
        fwd = panel.forward_return(k)
        vol = panel.vol_ann[k]
        with np.errstate(divide="ignore", invalid="ignore"):
            y = fwd / (vol * horizon_scale)
        ok = np.isfinite(y)
        if not ok.any():
            continue
        x = np.stack([panel.inputs[n][k] for n in names], axis=1)[ok]
        rows_x.append(x)
        rows_y.append(np.clip(y[ok], -Y_CLIP, Y_CLIP))
        rows_g.append(np.full(int(ok.sum()), k))
        months_used.append(k)
    ic = _ic_table(panel, months_used[-IC_MONTHS:])
    base: dict[str, Any] = {
        "market": panel.market,
        "fit_day": day,
        "symbols": list(panel.symbols),
        "ic": ic,
        "data": panel_identity(panel, max(k_fit, 0)),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if len(months_used) < MIN_MONTHS:
        return Calibration(
            status="prior",
            window=[str(panel.days[months_used[0]]), str(panel.days[months_used[-1]])]
            if months_used
            else [],
            months=len(months_used),
            observations=int(sum(r.shape[0] for r in rows_y)),
            signals=[],
            mean={},
            sd={},
            weights={},
            covariance=[],
            drift=DRIFT_PRIOR.get(panel.market, 0.0),
            drift_raw=0.0,
            drift_se=0.0,
            residual_sd=1.0,
            icc=0.0,
            design_effect=1.0,
            **base,
        )
    X = np.concatenate(rows_x)
    y = np.concatenate(rows_y)
    groups = np.concatenate(rows_g)
    keep = [i for i in range(len(names)) if np.isfinite(X[:, i]).mean() >= MIN_COVERAGE]
    keep = [i for i in keep if np.nanstd(X[:, i]) > 0]
    used = [names[i] for i in keep]
    X = X[:, keep]
    mean = np.nanmean(X, axis=0)
    sd = np.nanstd(X, axis=0)
    Z = np.where(np.isfinite(X), (X - mean) / sd, 0.0)

    # Drift: the months' mean target, shrunk by its own standard error.
    month_means = np.array([y[groups == k].mean() for k in months_used])
    drift_raw = float(month_means.mean())
    drift_se = float(month_means.std(ddof=1) / math.sqrt(len(month_means)))
    prior = DRIFT_PRIOR.get(panel.market, 0.0)
    drift = prior + (drift_raw - prior) * drift_shrink(drift_se)

    icc, n_bar = _icc(y, groups)
    deff = 1.0 + (n_bar - 1.0) * icc
    # Residual spreads the penalties are measured against: the within-month spread for the
    # cross-sectional signals, the total spread for the others.
    centre = np.zeros_like(y)
    for k in months_used:
        sel = groups == k
        centre[sel] = y[sel].mean()
    within = y - centre
    var_total = float(y.var())
    var_within = float(within.var())
    kinds = {s.name: s.kind for s in SIGNALS}
    penalty = np.array(
        [
            (var_within if kinds[n] == "xs" else var_total * deff) * len(used) / TAU_TOTAL**2
            for n in used
        ]
    )
    yc = y - y.mean()
    A = Z.T @ Z + np.diag(penalty)
    w = np.linalg.solve(A, Z.T @ yc)
    resid = yc - Z @ w
    resid_var = float(resid.var())
    cov = (
        np.linalg.inv(A)
        * resid_var
        * np.where(np.array([kinds[n] == "xs" for n in used]), 1.0, deff)
    )
    return Calibration(
        status="fitted",
        window=[str(panel.days[months_used[0]]), str(panel.days[months_used[-1]])],
        months=len(months_used),
        observations=int(y.shape[0]),
        signals=used,
        mean={n: float(m) for n, m in zip(used, mean, strict=True)},
        sd={n: float(v) for n, v in zip(used, sd, strict=True)},
        weights={n: float(v) for n, v in zip(used, w, strict=True)},
        covariance=[[float(v) for v in row] for row in cov],
        drift=drift,
        drift_raw=drift_raw,
        drift_se=drift_se,
        residual_sd=math.sqrt(resid_var) if resid_var > 0 else 1.0,
        icc=icc,
        design_effect=deff,
        **base,
    )


_fits: dict[tuple[str, str, int], Calibration] = {}
_fit_lock = threading.Lock()


def clear_calibrations() -> None:
    with _fit_lock:
        _fits.clear()


def walk_forward(provider: Any, panel: MarketPanel, k_fit: int) -> Calibration:
    key = (provider_key(provider), panel.market, k_fit)
    with _fit_lock:
        hit = _fits.get(key)
    if hit is not None:
        return hit
    cal = fit_calibration(panel, k_fit)
    with _fit_lock:
        _fits[key] = cal
    return cal


def calibration_for(
    provider: Any, market: str, day: np.datetime64, store: CalibrationStore | None = None
) -> tuple[Calibration | None, MarketPanel | None]:
    """The calibration a decision on ``day`` in ``market`` uses, and the market's panel.

    With a static provider (its whole history at hand) the fit is the walk-forward one at the
    last month-end before ``day``'s month; a stored calibration of the same data fitted at that
    month-end is the same fit, and is used as is. A live provider has no panel: the newest
    stored calibration fitted before ``day``'s month stands in (its cross-sectional signals
    cannot be ranked without the universe, so only the others count). None when there is
    neither.
    """
    month_start = str(day.astype("datetime64[M]").astype("datetime64[D]"))
    if not is_static(provider):
        found = store.latest(market, _day_before(month_start), None) if store else None
        return found, None
    panel = market_panel(provider, market)
    k_fit = fit_month_index(panel, day)
    if k_fit < 0:
        return None, panel
    if store is not None:
        identity = panel_identity(panel, k_fit)
        stored = store.latest(market, str(panel.days[k_fit]), identity)
        if (
            stored is not None
            and stored.fit_day == str(panel.days[k_fit])
            and stored.data.get("closes_sha256") == identity["closes_sha256"]
        ):
            return stored, panel
    return walk_forward(provider, panel, k_fit), panel


def _day_before(iso_day: str) -> str:
    return str(np.datetime64(iso_day, "D") - np.timedelta64(1, "D"))

"""One symbol's calibrated forecast at a day: the evidence section every role stands on.

:func:`forecast` reads the symbol's signals at its last daily bar on or before the as_of
day, standardises them as the market's calibration did (:mod:`tacoreservice.analysis.
calibration`) and answers, for the next ``HORIZON`` bars:

* ``s``: the expected return in units of the symbol's volatility over the horizon (an
  expected Sharpe for the month), with its standard error ``se``;
* ``p_up``: the calibrated probability that the return is positive, ``Phi(s / residual sd)``;
* ``expected_return``: ``s x vol_ann x sqrt(HORIZON / bars_per_year)``, a fraction;
* ``kelly``: the growth-optimal fraction of equity for that expectation and volatility,
  ``mu_ann / vol_ann^2`` (the risk team sizes from it);
* ``signals``: each signal's reading, its standardised value, its weight and contribution,
  and its measured IC over the calibration's months.

The forecast always works on daily bars (the model's horizon is a month), whatever timeframe
the analysis was asked on. Where there is no calibration yet (too little history before the
day) or no volatility to scale by, the answer says so (``available: false`` and why) instead
of a number.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from tacoreservice.analysis.calibration import (
    MIN_MONTHS,
    SHIPPED_DIR,
    CalibrationStore,
    calibration_for,
)
from tacoreservice.analysis.factors import (
    HORIZON,
    SIGNALS,
    MarketPanel,
    own_signals,
    rank_against,
    symbol_signals,
)
from tacoreservice.market_data.provider import Bars, is_static
from tacoreservice.market_data.symbols import SymbolInfo, periods_per_year

__all__ = ["calibration_store", "forecast", "set_calibration_dir"]

_store: CalibrationStore | None = None
_store_lock = threading.Lock()
_user_dir: Path | None = None


def set_calibration_dir(folder: str | Path | None) -> None:
    """Where `tacore calibrate` writes and workers read the user's calibrations (besides the
    package's own); called with the settings at start."""
    global _store, _user_dir
    with _store_lock:
        _user_dir = Path(folder).expanduser() if folder else None
        _store = None


def calibration_store() -> CalibrationStore:
    global _store
    with _store_lock:
        if _store is None:
            _store = CalibrationStore([SHIPPED_DIR, *([_user_dir] if _user_dir else [])])
        return _store


def _own_values(
    provider: Any, info: SymbolInfo, day: np.datetime64
) -> tuple[dict[str, float], float]:
    """The symbol's own-series signal values at ``day`` and its annualised volatility."""
    if is_static(provider):
        days, sig = own_signals(provider, info)
    else:
        bars: Bars = provider.bars(info.symbol, "1d", str(day))
        days = bars.time.astype("datetime64[D]")
        sig = symbol_signals(bars, periods_per_year(info.market, "1d"))
    i = int(np.searchsorted(days, day, side="right")) - 1
    if i < 0:
        return {}, math.nan
    values = {name: float(arr[i]) for name, arr in sig.items()}
    return values, values["vol_ann"]


def _inputs(
    panel: MarketPanel | None, info: SymbolInfo, own: dict[str, float], day: np.datetime64
) -> tuple[dict[str, float], dict[str, float]]:
    """(model inputs, raw readings) of the symbol's signals at ``day``."""
    raw: dict[str, float] = {}
    inputs: dict[str, float] = {}
    k = panel.day_index(day) if panel is not None else -1
    member = panel is not None and info.symbol in panel.symbols and k >= 0
    j = panel.symbols.index(info.symbol) if member and panel is not None else -1
    for spec in SIGNALS:
        if member and panel is not None:
            raw[spec.name] = float(panel.raw[spec.name][k, j])
            inputs[spec.name] = float(panel.inputs[spec.name][k, j])
            continue
        if spec.name == "rs_bench":
            bench = float(panel.bench_ret63[k]) if panel is not None and k >= 0 else math.nan
            value = own.get("ret_63", math.nan) - bench
        elif spec.name == "rs_sector":
            value = _sector_excess(panel, info, own.get("ret_63", math.nan), k)
        elif spec.name == "market":
            value = float(panel.bench_trend[k]) if panel is not None and k >= 0 else math.nan
        else:
            value = own.get(spec.name, math.nan)
        raw[spec.name] = value
        if spec.kind == "xs":
            inputs[spec.name] = (
                rank_against(panel.raw[spec.name][k], value)
                if panel is not None and k >= 0
                else math.nan
            )
        else:
            inputs[spec.name] = value
    return inputs, raw


def _sector_excess(panel: MarketPanel | None, info: SymbolInfo, ret63: float, k: int) -> float:
    """A non-member's 63-bar return minus the mean of its sector's members (two or more)."""
    if panel is None or k < 0 or not info.sector or not math.isfinite(ret63):
        return math.nan
    peers = [j for j, s in enumerate(panel.sectors) if s == info.sector]
    values = panel.ret63[k, peers] if peers else np.array([])
    values = values[np.isfinite(values)]
    return ret63 - float(values.mean()) if values.shape[0] >= 2 else math.nan


def forecast(
    provider: Any, info: SymbolInfo, day: np.datetime64, store: CalibrationStore | None = None
) -> dict[str, Any]:
    """The forecast section of ``info``'s evidence at its last daily bar ``day``."""
    store = store if store is not None else calibration_store()
    market = info.market
    cal, panel = calibration_for(provider, market, day, store)
    head: dict[str, Any] = {"market": market, "day": str(day), "horizon_bars": HORIZON}
    if cal is None:
        return head | {
            "available": False,
            "why": f"no {market} history before {day}'s month to calibrate on",
            "calibration": None,
        }
    own, vol = _own_values(provider, info, day)
    if not math.isfinite(vol) or vol <= 0:
        return head | {
            "available": False,
            "why": f"{info.symbol} has fewer than 61 daily bars up to {day}: no volatility "
            "to scale a forecast by",
            "calibration": cal.summary(),
        }
    inputs, raw = _inputs(panel, info, own, day)
    pred = cal.predict(inputs)
    ppy = periods_per_year(market, "1d")
    scale = math.sqrt(HORIZON / ppy)
    s = float(pred["s"])
    mu = s * vol * scale
    mu_ann = mu * ppy / HORIZON
    signals = []
    for spec in SIGNALS:
        value = raw.get(spec.name, math.nan)
        used = spec.name in cal.weights
        signals.append(
            {
                "name": spec.name,
                "family": spec.family,
                "kind": spec.kind,
                "label": spec.label,
                "value": _r(value),
                "input": _r(inputs.get(spec.name, math.nan)),
                "z": _r(pred["z"].get(spec.name)) if used else None,
                "weight": _r(cal.weights.get(spec.name)) if used else None,
                "contribution": _r(pred["contributions"].get(spec.name)),
                "ic": cal.ic.get(spec.name),
                "available": math.isfinite(value),
            }
        )
    return head | {
        "available": True,
        "s": round(s, 4),
        "se": round(float(pred["se"]), 4),
        "p_up": round(float(pred["p_up"]), 4),
        "expected_return": round(mu, 5),
        "volatility_ann": round(vol, 4),
        "bars_per_year": ppy,
        "kelly": round(mu_ann / (vol * vol), 4),
        "drift": round(cal.drift, 4),
        "signals": signals,
        "calibration": cal.summary() | {"ic_months": _ic_months(cal.ic)},
        "note": None
        if cal.status == "fitted"
        else f"the {market} model has {cal.months} of the {MIN_MONTHS} month-ends it needs to "
        "weigh signals: the forecast is its prior drift alone",
    }


def _ic_months(ic: dict[str, dict[str, Any]]) -> int:
    return max((int(v.get("months") or 0) for v in ic.values()), default=0)


def _r(x: Any, nd: int = 4) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None

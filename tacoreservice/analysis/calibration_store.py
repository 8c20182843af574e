"""Calibrations as data: the fitted model of one market, and the folders that keep them.

A :class:`Calibration` is plain JSON: the signals' standardisation, weights and posterior
covariance, the drift, the residual spread, each signal's measured IC and the window of
month-ends it was fitted on (see :mod:`tacoreservice.analysis.calibration` for the fit).
:class:`CalibrationStore` reads versioned files from folders: the ones the package ships
(``calibrations/`` beside this module, fitted on the bundled history) and the user's
(``analysis.calibration_dir``, where ``tacore calibrate`` writes). This module holds no fitting
code, so anything that only shows calibrations (the monitoring API) can read them cheaply.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CALIBRATION_VERSION",
    "SHIPPED_DIR",
    "TAU_DRIFT",
    "Calibration",
    "CalibrationStore",
    "drift_shrink",
]

# Bumped when the fit's formula or its constants change: a stored calibration of another
# version is not used.
CALIBRATION_VERSION = "1"
# The prior spread of a market's drift (see calibration.py): its shrinkage and the forecast's
# uncertainty both use it.
TAU_DRIFT = 0.10
SHIPPED_DIR = Path(__file__).resolve().parent / "calibrations"


def drift_shrink(se: float) -> float:
    """The weight the data's drift gets against the prior, for a standard error ``se``."""
    return TAU_DRIFT**2 / (TAU_DRIFT**2 + se**2)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass
class Calibration:
    market: str
    fit_day: str  # the month-end M (last panel day of its month) the fit is made at
    status: str  # "fitted" | "prior" (too little history)
    window: list[str]  # first and last observation day (each target known by fit_day)
    months: int
    observations: int
    symbols: list[str]
    signals: list[str]
    mean: dict[str, float]
    sd: dict[str, float]
    weights: dict[str, float]
    covariance: list[list[float]]  # posterior covariance of the weights (signal order)
    drift: float
    drift_raw: float
    drift_se: float
    residual_sd: float
    icc: float
    design_effect: float
    ic: dict[str, dict[str, Any]]
    data: dict[str, Any] = field(default_factory=dict)  # identity of the data fitted on
    version: str = CALIBRATION_VERSION
    horizon: int = 21  # bars: factors.HORIZON, which fit_calibration always passes
    created_at: str = ""
    source: str = "walk-forward"  # or the stored file's name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        return cls(**data)

    def summary(self) -> dict[str, Any]:
        """What a decision's ``model`` section shows of it."""
        return {
            "market": self.market,
            "version": self.version,
            "status": self.status,
            "fit_day": self.fit_day,
            "window": self.window,
            "months": self.months,
            "observations": self.observations,
            "symbols": len(self.symbols),
            "horizon_bars": self.horizon,
            "drift": round(self.drift, 4),
            "residual_sd": round(self.residual_sd, 4),
            "weights": {k: round(v, 4) for k, v in self.weights.items()},
            "source": self.source,
        }

    def predict(self, values: dict[str, float]) -> dict[str, Any]:
        """Forecast from a symbol's signal inputs (ranks or own-scale values; NaN = none)."""
        z = np.zeros(len(self.signals))
        contributions: dict[str, float] = {}
        for i, name in enumerate(self.signals):
            x = values.get(name, math.nan)
            if x is None or not math.isfinite(x):
                continue
            z[i] = (x - self.mean[name]) / self.sd[name]
            contributions[name] = self.weights[name] * z[i]
        s = self.drift + sum(contributions.values())
        var = float(z @ np.asarray(self.covariance) @ z) if self.signals else 0.0
        drift_var = (
            self.drift_se**2 * drift_shrink(self.drift_se) if self.drift_se else TAU_DRIFT**2
        )
        se = math.sqrt(max(var, 0.0) + drift_var)
        p_up = _phi(s / self.residual_sd) if self.residual_sd > 0 else 0.5
        return {
            "s": s,
            "se": se,
            "p_up": p_up,
            "z": {name: float(z[i]) for i, name in enumerate(self.signals)},
            "contributions": contributions,
        }


class CalibrationStore:
    """Versioned calibration files in folders (the package's shipped ones, then the user's).

    A file is ``<market>-<fit_day>-<data digest>-v<version>.json``: the name says when and on
    what it was fitted, so a refit on other data never replaces another fit's file.
    """

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self._items: list[Calibration] | None = None
        self._lock = threading.Lock()

    def items(self) -> list[Calibration]:
        with self._lock:
            if self._items is None:
                found: list[Calibration] = []
                for folder in self.folders:
                    if not folder.is_dir():
                        continue
                    for path in sorted(folder.glob("*.json")):
                        try:
                            cal = Calibration.from_json(json.loads(path.read_text("utf-8")))
                        except (OSError, ValueError, TypeError):
                            continue  # not ours, or damaged: the walk-forward fit stands in
                        if cal.version == CALIBRATION_VERSION:
                            cal.source = str(path.name)
                            found.append(cal)
                self._items = found
            return list(self._items)

    def latest(
        self, market: str, not_after: str, data: dict[str, Any] | None
    ) -> Calibration | None:
        """The newest stored calibration of ``market`` fitted on or before ``not_after`` (and
        on the same data, when ``data`` is given)."""
        best: Calibration | None = None
        for cal in self.items():
            if cal.market != market or cal.status != "fitted" or cal.fit_day > not_after:
                continue
            if data is not None and cal.data.get("symbols") != data.get("symbols"):
                continue
            if best is None or cal.fit_day > best.fit_day:
                best = cal
        return best

    @staticmethod
    def write(folder: Path, cal: Calibration) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        digest = cal.data.get("closes_sha256", "")[:8]
        path = folder / f"{cal.market}-{cal.fit_day}-{digest}-v{cal.version}.json"
        path.write_text(json.dumps(cal.to_json(), indent=1, sort_keys=True), "utf-8")
        return path

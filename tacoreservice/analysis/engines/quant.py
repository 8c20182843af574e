"""The ``quant`` engine: every role computed from the evidence, offline and deterministic."""

from __future__ import annotations

from typing import Any

from tacoreservice.analysis.evidence import compute_evidence
from tacoreservice.analysis.graph import AnalysisRequest, Hooks, QuantRunner, run_pipeline

__all__ = ["QUANT_MODEL_VERSION", "QuantEngine"]

# Bumped whenever a weight, threshold or formula in roles.py changes, so cached answers of the
# old model are not served as the new one's.
# 2: fundamentals only when known at as_of (no snapshot discount); a market analyst without
# any signal has no data; HOLD has no take-profit and targets follow the direction.
# 3: the calibrated model: signal weights measured per market before the decision date,
# Kelly sizing, ratings from the size.
QUANT_MODEL_VERSION = "3"


class QuantEngine:
    name = "quant"

    def __init__(self, settings: Any = None) -> None:
        self._runner = QuantRunner()

    def identity(self) -> dict[str, Any]:
        return {"engine": "quant", "version": QUANT_MODEL_VERSION}

    def analyze(self, provider: Any, request: AnalysisRequest, hooks: Hooks) -> dict[str, Any]:
        ev = compute_evidence(provider, request.symbol, request.as_of, request.timeframe)
        decision = run_pipeline(ev, request, self._runner, hooks)
        forecast = ev.get("forecast") or {}
        decision["model"] = {
            "engine": "quant",
            "version": QUANT_MODEL_VERSION,
            "description": "signals weighed by a per-market calibration fitted on the history "
            "before the decision date (tacoreservice/analysis/calibration.py); sizes from "
            "the Kelly rule on the forecast, ratings from the size",
            "deterministic": True,
            "calibration": forecast.get("calibration"),
        }
        return decision

"""Every rule a backtest or the optimiser can run by name: the four analysis strategies of
``analyze.strategy`` and the five baselines, each a :class:`RuleSpec` and a positions function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tacoreservice.backtest.baselines import BASELINES, baseline_positions
from tacoreservice.backtest.params import RuleSpec
from tacoreservice.backtest.strategies import STRATEGIES, strategy_positions
from tacoreservice.market_data.provider import Bars

__all__ = ["RULES", "RULE_NAMES", "rule_positions"]

RULES: dict[str, RuleSpec] = {**STRATEGIES, **BASELINES}
RULE_NAMES: tuple[str, ...] = tuple(RULES)


def rule_positions(name: str, bars: Bars, params: Mapping[str, Any] | None = None) -> np.ndarray:
    """The rule's desired position at each bar's close (``ValueError`` for a bad name/params)."""
    if name in STRATEGIES:
        return strategy_positions(name, bars, params)[0]
    if name in BASELINES:
        return baseline_positions(name, bars, params)
    raise ValueError(f"unknown rule {name!r}; use one of {', '.join(RULE_NAMES)}")

"""``optimize.parameters``: search a strategy's parameters on the bundled history.

Params: ``strategy_type`` (the analysis strategies trend, mean_reversion, momentum, breakout,
or the baselines macd, kdj_rsi, zmr, sma_cross), ``symbol`` or ``symbols``, ``timeframe``,
``param_space`` (``{name: [values]}`` or ``{name: {min, max, step}}``; default: the rule's
documented grid), ``objective`` (sharpe_ratio, total_return, max_drawdown, calmar),
``train_ratio`` (0.7) or ``walk_forward: {folds}``, ``start`` / ``end`` (or ``as_of``),
``method`` (grid, scipy), ``max_evaluations`` (500) and ``top_n`` (10). The search, its
validation and its warnings are described in :mod:`tacoreservice.backtest.optimizer`.

A long search runs as a job (``job.submit`` or ``"async": true``): it reports progress per
evaluation and stops at the next evaluation when cancelled. Legacy strategy clients send
``{"action": "optimize_parameters", "params": {symbol, timeframe, strategy_type}}``, which is
this method with every default.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

from tacoreservice.backtest.engine import cost_per_side
from tacoreservice.backtest.optimizer import (
    MAX_EVALUATIONS_LIMIT,
    MAX_VALUES_PER_PARAM,
    MIN_SEGMENT_BARS,
    Series,
    optimize,
)
from tacoreservice.backtest.rules import RULE_NAMES
from tacoreservice.market_data.provider import parse_as_of
from tacoreservice.market_data.symbols import normalize_timeframe, periods_per_year
from tacoreservice.protocol.errors import DataUnavailable, InvalidParams
from tacoreservice.service.params import DateText, ParamsModel, Symbol
from tacoreservice.service.registry import MethodContext, method

__all__ = ["OptimizeParams", "optimize_parameters"]

_RULE_ALIASES = {
    "sma": "sma_cross",
    "sma_crossover": "sma_cross",
    "macd_crossover": "macd",
    "kdj": "kdj_rsi",
    "kdj&rsi": "kdj_rsi",
    "kdj_and_rsi": "kdj_rsi",
    "zero_mean_reversion": "zmr",
    "trend_following": "trend",
}
_OBJECTIVE_ALIASES = {
    "sharpe": "sharpe_ratio",
    "sharpe_ratio": "sharpe_ratio",
    "total_return": "total_return",
    "return": "total_return",
    "cumulative_return": "total_return",
    "max_drawdown": "max_drawdown",
    "drawdown": "max_drawdown",
    "mdd": "max_drawdown",
    "calmar": "calmar_ratio",
    "calmar_ratio": "calmar_ratio",
}
_OPTIMISABLE = tuple(n for n in RULE_NAMES if n != "buy_and_hold")
_MAX_SPACE_PARAMS = 16  # more than any rule has


class WalkForward(ParamsModel):
    model_config = ConfigDict(extra="forbid")

    folds: int = Field(3, ge=2, le=12)


class OptimizeParams(ParamsModel):
    # Legacy clients add keys of their own (timestamp, client names, ...).
    strategy_type: str = Field(
        "trend", max_length=40, validation_alias=AliasChoices("strategy_type", "strategy")
    )
    symbol: Symbol | None = Field(None, validation_alias=AliasChoices("symbol", "ticker"))
    symbols: list[Symbol] | None = Field(None, min_length=1, max_length=20)
    timeframe: str = Field(
        "1d", max_length=16, validation_alias=AliasChoices("timeframe", "interval")
    )
    param_space: dict[str, list[Any] | dict[str, Any]] | None = Field(
        None, validation_alias=AliasChoices("param_space", "parameter_space", "space")
    )
    objective: str = Field("sharpe_ratio", max_length=40)
    train_ratio: float | None = Field(None, ge=0.2, le=0.95)
    walk_forward: WalkForward | None = None
    start: DateText | None = None
    end: DateText | None = None
    as_of: DateText | None = Field(
        None, validation_alias=AliasChoices("as_of", "analysis_date", "date")
    )
    method: Literal["grid", "scipy"] = "grid"
    max_evaluations: int = Field(500, ge=1, le=MAX_EVALUATIONS_LIMIT)
    top_n: int = Field(10, ge=1, le=50)

    @field_validator("strategy_type", mode="before")
    @classmethod
    def _strategy_type(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        key = v.strip().lower().replace("-", "_").replace(" ", "_")
        key = _RULE_ALIASES.get(key, key)
        if key == "buy_and_hold":
            raise ValueError("buy_and_hold has no parameters to optimise")
        if key not in _OPTIMISABLE:
            raise ValueError(f"must be one of {', '.join(_OPTIMISABLE)}, got {v[:40]!r}")
        return key

    @field_validator("param_space", mode="before")
    @classmethod
    def _space_size(cls, v: Any) -> Any:
        # Names, values and bounds are the rule's to check (backtest.params); here the sizes.
        if isinstance(v, dict):
            if len(v) > _MAX_SPACE_PARAMS:
                raise ValueError(f"at most {_MAX_SPACE_PARAMS} parameters, got {len(v)}")
            for name, entry in v.items():
                if isinstance(entry, list) and len(entry) > MAX_VALUES_PER_PARAM:
                    raise ValueError(
                        f"{str(name)[:40]} lists {len(entry):,} values; at most "
                        f"{MAX_VALUES_PER_PARAM:,} per parameter"
                    )
        return v

    @field_validator("objective", mode="before")
    @classmethod
    def _objective(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        key = v.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in _OBJECTIVE_ALIASES:
            raise ValueError(
                "must be sharpe_ratio, total_return, max_drawdown (minimises its size) or calmar"
            )
        return _OBJECTIVE_ALIASES[key]

    @field_validator("walk_forward", mode="before")
    @classmethod
    def _walk_forward(cls, v: Any) -> Any:
        return {"folds": v} if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _choices(self) -> OptimizeParams:
        if not self.symbol and not self.symbols:
            raise ValueError("give symbol (e.g. AAPL) or symbols (e.g. [AAPL, MSFT])")
        if self.walk_forward is not None and self.train_ratio is not None:
            raise ValueError("give train_ratio or walk_forward, not both")
        return self


def _series(params: OptimizeParams, ctx: MethodContext) -> tuple[list[Series], str]:
    provider = ctx.market_data
    tf = normalize_timeframe(params.timeframe)
    start = parse_as_of(params.start)
    end = parse_as_of(params.end)
    as_of = parse_as_of(params.as_of)
    cut = end or as_of
    if end is not None and as_of is not None and end.instant > as_of.instant:
        cut = as_of  # the data stops at as_of whatever the range asks for
    names = list(
        dict.fromkeys([*(params.symbols or []), *([params.symbol] if params.symbol else [])])
    )
    series = []
    last_bar = ""
    for raw in names:
        info = provider.resolve(raw)
        bars = provider.bars(info.symbol, tf, cut)
        first = 1
        if start is not None:
            first = max(1, int(np.searchsorted(bars.time, start.day.astype("datetime64[s]"))))
        last = len(bars) - 1
        if last - first + 1 < 2 * MIN_SEGMENT_BARS:
            raise DataUnavailable(
                f"{info.symbol} has {max(last - first + 1, 0)} {tf} bars between "
                f"{params.start or 'the first bar'} and {params.end or params.as_of or 'the last'}; "
                f"an optimisation needs at least {2 * MIN_SEGMENT_BARS}",
                {"symbol": info.symbol, "timeframe": tf},
            )
        series.append(
            Series(
                symbol=info.symbol,
                bars=bars,
                ppy=periods_per_year(info.market, tf),
                first=first,
                last=last,
            )
        )
        last_bar = max(last_bar, str(np.datetime_as_string(bars.time[-1], unit="s")))
    return series, last_bar


@method("optimize.parameters", OptimizeParams)
def optimize_parameters(params: OptimizeParams, ctx: MethodContext) -> dict[str, Any]:
    """Search a strategy's parameters; best set, in- and out-of-sample figures, warnings."""
    series, last_bar = _series(params, ctx)
    try:
        result = optimize(
            params.strategy_type,
            series,
            objective=params.objective,
            param_space=params.param_space,
            method=params.method,
            train_ratio=params.train_ratio if params.train_ratio is not None else 0.7,
            walk_forward_folds=params.walk_forward.folds if params.walk_forward else None,
            max_evaluations=params.max_evaluations,
            top_n=params.top_n,
            cost=cost_per_side(ctx.settings.trading.costs),
            progress=ctx.progress,
            check_cancelled=ctx.check_cancelled,
        )
    except ValueError as exc:  # a rule refusing its parameters
        raise InvalidParams(str(exc)) from None
    return {
        "symbols": [s.symbol for s in series],
        "timeframe": normalize_timeframe(params.timeframe),
        "as_of": last_bar,
        **result,
    }

"""``backtest.decisions``: the engine's decision for every trading day of a span, as a job.

The rolling-window and portfolio runs of ``tacore backtest`` / ``tacore evaluate`` need
thousands of point-in-time decisions. With ``--service`` they send one such job per symbol to
a running service, so its workers (local or on other hosts) share the load; each decision is
made exactly as :func:`tacoreservice.backtest.decisions.daily_decisions` makes it in process
(``as_of`` = the day). Params: ``symbol``, ``start``, ``end`` (trading days, inclusive),
``engine`` and ``research_depth`` (the service's defaults otherwise). Progress is reported per
decision, and a cancelled job stops at the next one.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import numpy as np
from pydantic import Field

from tacoreservice.analysis.engines import load_engine
from tacoreservice.backtest.decisions import daily_decisions
from tacoreservice.protocol.errors import InvalidParams
from tacoreservice.service.params import DateText, ParamsModel, Symbol
from tacoreservice.service.registry import MethodContext, method

__all__ = ["DecisionsParams", "backtest_decisions"]

# A year of daily decisions of the quant engine takes about two seconds: five years is a
# long job, more is a mistake.
MAX_DAYS = 2000


class DecisionsParams(ParamsModel):
    symbol: Symbol
    start: DateText
    end: DateText
    engine: Literal["quant", "llm", "tradingagents"] | None = None
    research_depth: int | None = Field(None, ge=1, le=5)


@method("backtest.decisions", DecisionsParams)
def backtest_decisions(params: DecisionsParams, ctx: MethodContext) -> dict[str, Any]:
    """The engine's decision for each trading day from start to end (as_of = that day)."""
    if params.end < params.start:
        raise InvalidParams(f"end {params.end} is before start {params.start}", {"field": "end"})
    provider = ctx.market_data
    info = provider.resolve(params.symbol)
    bars = provider.bars(info.symbol, "1d", params.end)
    days_all = bars.time.astype("datetime64[D]")
    keep = days_all >= np.datetime64(params.start, "D")
    days = [str(d) for d in days_all[keep]]
    if not days:
        raise InvalidParams(
            f"no trading day of {info.symbol} between {params.start} and {params.end}",
            {"field": "start"},
        )
    if len(days) > MAX_DAYS:
        raise InvalidParams(
            f"{len(days)} trading days asked for; at most {MAX_DAYS} per job (split the span)",
            {"field": "end", "days": len(days), "max": MAX_DAYS},
        )
    engine = load_engine(params.engine or ctx.settings.analysis.default_engine, ctx.settings)
    depth = params.research_depth or ctx.settings.analysis.default_research_depth

    def progress(i: int, _d: Any) -> None:
        ctx.progress("decisions", round(100.0 * (i + 1) / len(days), 1), None)

    decisions = daily_decisions(
        engine,
        provider,
        info.symbol,
        days,
        research_depth=depth,
        on_decision=progress,
        check_cancelled=ctx.check_cancelled,
    )
    return {
        "symbol": info.symbol,
        "engine": engine.name,
        "decisions": [asdict(d) for d in decisions],
    }

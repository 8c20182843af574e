"""Analysis methods: ``analyze.stock`` (= ``analyze.symbol``), ``generate.signal`` and
``analyze.strategy``.

``analyze.stock`` runs the TradingAgents-style graph with the chosen engine (``quant`` by
default; ``llm``; ``tradingagents``). ``analyze.strategy`` and ``generate.signal`` with a
``strategy`` evaluate one rule-based strategy with its backtest on the bundled history.

Completed answers are cached through ``ctx.cache`` for ``analysis.result_cache_ttl_s`` under a
key made of the method, the canonical params, the as_of the data resolved to (the last visible
bar, so a live provider's new bar is a new key) and the engine's identity (for ``llm`` its
endpoint without credentials, its models and the quant model version its prompts embed; for
``tradingagents`` also the package version), so a different model is never answered from
another's cache. LLM answers are cached too: they are the expensive ones. A failed, cancelled
or over-budget analysis is not cached.

A strategy summary quotes only the figures its backtest produced: with too few bars it says
so (the backtest's ``note``), and a missing figure is "n/a", never 0.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import AliasChoices, Field, field_validator

from tacoreservice.analysis.engines import load_engine
from tacoreservice.analysis.evidence import provider_key
from tacoreservice.analysis.graph import (
    ANALYSIS_TYPES,
    AnalysisRequest,
    Hooks,
    normalize_analysts,
    run_analysis,
)
from tacoreservice.backtest.engine import cost_per_side
from tacoreservice.backtest.strategies import STRATEGY_TYPES, evaluate_strategy
from tacoreservice.market_data.provider import Bars
from tacoreservice.market_data.symbols import normalize_timeframe
from tacoreservice.service.params import DateText, ParamsModel, Symbol
from tacoreservice.service.registry import MethodContext, method

__all__ = [
    "AnalyzeStockParams",
    "AnalyzeStrategyParams",
    "GenerateSignalParams",
    "analyze_stock",
    "analyze_strategy",
    "generate_signal",
]

log = logging.getLogger(__name__)

_ANALYSIS_TYPE_ALIASES = {
    "technical": "technical",
    "technicals": "technical",
    "fundamental": "fundamental",
    "fundamentals": "fundamental",
    "comprehensive": "comprehensive",
    "full": "comprehensive",
    "all": "comprehensive",
}
_AI_STRATEGIES = ("ai", "analysis", "multi_agent", "comprehensive")


def _symbol_field() -> Any:
    return Field(
        ..., validation_alias=AliasChoices("symbol", "ticker", "stock_code", "stock_symbol")
    )


def _as_of_field() -> Any:
    # TradingAgents-CN clients call it analysis_date; TradingAgents itself trade_date.
    return Field(
        None, validation_alias=AliasChoices("as_of", "analysis_date", "trade_date", "date")
    )


class AnalyzeStockParams(ParamsModel):
    # Each client generation adds keys of its own (market_type, stock_name, ...).
    symbol: Symbol = _symbol_field()
    analysis_type: str = Field("comprehensive", max_length=32)
    analysts: list[Annotated[str, Field(max_length=32)]] | None = Field(
        None, min_length=1, max_length=8
    )
    research_depth: int | None = Field(
        None, ge=1, le=5, validation_alias=AliasChoices("research_depth", "depth")
    )
    engine: Literal["quant", "llm", "tradingagents"] | None = None
    as_of: DateText | None = _as_of_field()
    timeframe: str = Field(
        "1d", max_length=16, validation_alias=AliasChoices("timeframe", "interval")
    )

    @field_validator("analysis_type", mode="before")
    @classmethod
    def _analysis_type(cls, v: Any) -> Any:
        if v is None:
            return "comprehensive"
        key = str(v).strip().lower()
        if key not in _ANALYSIS_TYPE_ALIASES:
            raise ValueError("must be technical, fundamental or comprehensive")
        return _ANALYSIS_TYPE_ALIASES[key]

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class GenerateSignalParams(ParamsModel):
    symbol: Symbol = _symbol_field()
    # A strategy_type gives that strategy's signal; none (or "ai") the analysis graph's action.
    strategy: str | None = Field(
        None, max_length=32, validation_alias=AliasChoices("strategy", "strategy_type")
    )
    timeframe: str = Field(
        "1d", max_length=16, validation_alias=AliasChoices("timeframe", "interval")
    )
    research_depth: int | None = Field(None, ge=1, le=5)
    engine: Literal["quant", "llm", "tradingagents"] | None = None
    as_of: DateText | None = _as_of_field()

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, v: Any) -> Any:
        if v is None:
            return None
        key = str(v).strip().lower().replace("-", "_").replace(" ", "_")
        if key not in STRATEGY_TYPES and key not in _AI_STRATEGIES:
            raise ValueError(f"must be one of {', '.join(STRATEGY_TYPES)} (or 'ai')")
        return key


class AnalyzeStrategyParams(ParamsModel):
    symbol: Symbol = _symbol_field()
    timeframe: str = Field(
        "1d", max_length=16, validation_alias=AliasChoices("timeframe", "interval")
    )
    strategy_type: Literal["trend", "mean_reversion", "momentum", "breakout"] = Field(
        "trend", validation_alias=AliasChoices("strategy_type", "strategy")
    )
    as_of: DateText | None = _as_of_field()

    @field_validator("strategy_type", mode="before")
    @classmethod
    def _strategy_type(cls, v: Any) -> Any:
        return v.strip().lower().replace("-", "_").replace(" ", "_") if isinstance(v, str) else v


# --- caching --------------------------------------------------------------------------------


def _last_bar_text(bars: Bars) -> str:
    t = bars.time[-1]
    if bars.timeframe in ("1h", "4h"):
        return f"{np.datetime_as_string(t, unit='s')}Z"
    return str(np.datetime_as_string(t, unit="D"))


def _cache_key(method_name: str, parts: dict[str, Any]) -> str:
    blob = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS, default=str)
    return f"analysis:{method_name}:{hashlib.sha256(blob).hexdigest()[:40]}"


def _cache_get(ctx: MethodContext, key: str) -> dict[str, Any] | None:
    try:
        raw = ctx.cache.get(key)
    except Exception:  # a cache outage costs a recomputation, never the request
        log.warning("analysis cache read failed for %s", key, exc_info=True)
        return None
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _cache_set(ctx: MethodContext, key: str, value: dict[str, Any]) -> None:
    ttl = float(ctx.settings.analysis.result_cache_ttl_s)
    if ttl <= 0:
        return
    try:
        ctx.cache.set(key, orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), ttl)
    except Exception:
        log.warning("analysis cache write failed for %s", key, exc_info=True)


# --- analyze.stock --------------------------------------------------------------------------


def _run_graph(
    ctx: MethodContext,
    method_name: str,
    symbol: str,
    analysts: tuple[str, ...],
    depth: int | None,
    engine_name: str | None,
    as_of: str | None,
    timeframe: str,
    extra_key: dict[str, Any],
) -> tuple[dict[str, Any], bool]:
    provider = ctx.market_data
    info = provider.resolve(symbol)
    tf = normalize_timeframe(timeframe)
    request = AnalysisRequest(
        symbol=info.symbol,
        analysts=analysts,
        research_depth=depth or ctx.settings.analysis.default_research_depth,
        as_of=as_of,
        timeframe=tf,
    )
    engine = load_engine(engine_name or ctx.settings.analysis.default_engine, ctx.settings)
    resolved = _last_bar_text(provider.bars(info.symbol, tf, as_of))
    key = _cache_key(
        method_name,
        {
            "symbol": info.symbol,
            "analysts": list(analysts),
            "research_depth": request.research_depth,
            "timeframe": tf,
            "as_of": resolved,
            "engine": engine.identity(),
            "provider": provider_key(provider),
            "risk_scale": 100,  # decisions before risk_score moved to 0-100 are not reused
            **extra_key,
        },
    )
    cached = _cache_get(ctx, key)
    if cached is not None:
        return cached, True
    hooks = Hooks(progress=ctx.progress, check_cancelled=ctx.check_cancelled)
    decision = run_analysis(engine, provider, request, hooks)
    _cache_set(ctx, key, decision)
    return decision, False


@method("analyze.stock", AnalyzeStockParams, aliases=("analyze.symbol",))
def analyze_stock(params: AnalyzeStockParams, ctx: MethodContext) -> dict[str, Any]:
    """Multi-agent analysis of one symbol (TradingAgents roles) with the chosen engine."""
    if params.analysts is not None:
        analysts = normalize_analysts(params.analysts)
        analysis_type = "custom"
    else:
        analysts = ANALYSIS_TYPES[params.analysis_type]
        analysis_type = params.analysis_type
    decision, cached = _run_graph(
        ctx,
        "analyze.stock",
        params.symbol,
        analysts,
        params.research_depth,
        params.engine,
        params.as_of,
        params.timeframe,
        {},
    )
    decision["analysis_type"] = analysis_type
    decision["cached"] = cached
    return decision


# --- strategies -----------------------------------------------------------------------------


def _strategy_result(
    ctx: MethodContext, symbol: str, timeframe: str, strategy_type: str, as_of: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, evaluation) of one strategy on the bars visible at as_of, cached."""
    provider = ctx.market_data
    info = provider.resolve(symbol)
    tf = normalize_timeframe(timeframe)
    bars = provider.bars(info.symbol, tf, as_of)
    # The costs of config/trading_config.yaml, as every backtest of the service charges them.
    cost = cost_per_side(ctx.settings.trading.costs)
    key = _cache_key(
        "strategy",
        {
            "symbol": info.symbol,
            "timeframe": tf,
            "strategy_type": strategy_type,
            "cost_per_side": cost,
            "as_of": _last_bar_text(bars),
            "bars": len(bars),
            "provider": provider_key(provider),
        },
    )
    cached = _cache_get(ctx, key)
    if cached is not None:
        return cached["header"], cached["evaluation"]
    evaluation = evaluate_strategy(bars, strategy_type, info.market, cost_per_side=cost)
    price = float(bars.close[-1])
    header = {
        "symbol": info.symbol,
        "name": info.name,
        "market": info.market,
        "timeframe": tf,
        "as_of": _last_bar_text(bars),
        "price": price if math.isfinite(price) else None,
    }
    _cache_set(ctx, key, {"header": header, "evaluation": evaluation})
    return header, evaluation


def _fmt(value: Any, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    """A backtest figure for the summary; "n/a" when the backtest has none (never 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    x = float(value) * scale
    return f"{x:{spec}}{suffix}" if math.isfinite(x) else "n/a"


def _summary(header: dict[str, Any], ev: dict[str, Any]) -> str:
    head = (
        f"{ev['strategy_type']} on {header['symbol']} {header['timeframe']}: {ev['signal']} "
        f"(position {ev['position']})."
    )
    bt = ev.get("backtest") or {}
    if bt.get("note"):  # no backtest ran (too few bars): say so, quote no figures
        return f"{head} No backtest: {bt['note']}."
    trades = bt.get("trades")
    return (
        f"{head} Backtest {str(bt.get('start') or 'n/a')[:10]} to "
        f"{str(bt.get('end') or 'n/a')[:10]}: total return "
        f"{_fmt(bt.get('total_return'), '+.1f', 100, '%')} vs buy-and-hold "
        f"{_fmt(bt.get('buy_and_hold_return'), '+.1f', 100, '%')}, Sharpe "
        f"{_fmt(bt.get('sharpe'), '.2f')}, max drawdown "
        f"{_fmt(bt.get('max_drawdown'), '.1f', 100, '%')}, "
        f"{'n/a' if trades is None else trades} trades, win rate "
        f"{_fmt(bt.get('win_rate'), '.0f', 100, '%')}."
    )


@method("analyze.strategy", AnalyzeStrategyParams)
def analyze_strategy(params: AnalyzeStrategyParams, ctx: MethodContext) -> dict[str, Any]:
    """A rule-based strategy's current signal and its backtest on the bundled history."""
    header, ev = _strategy_result(
        ctx, params.symbol, params.timeframe, params.strategy_type, params.as_of
    )
    analysis = {**ev, "summary": _summary(header, ev)}
    return {
        **header,
        "strategy_type": params.strategy_type,
        # Legacy strategy clients read `recommendation`; `signal` is the same word.
        "recommendation": ev["signal"],
        "signal": ev["signal"],
        "confidence": ev["confidence"],
        "analysis": analysis,
    }


@method("generate.signal", GenerateSignalParams)
def generate_signal(params: GenerateSignalParams, ctx: MethodContext) -> dict[str, Any]:
    """BUY / SELL / HOLD for a symbol: a strategy's signal, or the analysis graph's action."""
    if params.strategy in STRATEGY_TYPES:
        header, ev = _strategy_result(
            ctx, params.symbol, params.timeframe, params.strategy, params.as_of
        )
        return {
            **header,
            "strategy": params.strategy,
            "signal": ev["signal"],
            "action": ev["signal"],
            "recommendation": ev["signal"],
            "confidence": ev["confidence"],
            "readings": ev["readings"],
            "backtest": ev["backtest"],
            "reasoning": _summary(header, ev),
        }
    decision, cached = _run_graph(
        ctx,
        "analyze.stock",  # the same analysis as analyze.stock comprehensive: share its cache
        params.symbol,
        ANALYSIS_TYPES["comprehensive"],
        params.research_depth,
        params.engine,
        params.as_of,
        params.timeframe,
        {},
    )
    return {
        "symbol": decision["symbol"],
        "name": decision.get("name"),
        "market": decision.get("market"),
        "timeframe": decision.get("timeframe"),
        "as_of": decision.get("as_of"),
        "price": decision.get("price"),
        "strategy": "ai",
        "signal": decision["action"],
        "action": decision["action"],
        "recommendation": decision["action"],
        "rating": decision["rating"],
        "confidence": decision["confidence"],
        "target_price": decision["target_price"],
        "stop_loss": decision["stop_loss"],
        "take_profit": decision["take_profit"],
        "position_size_pct": decision["position_size_pct"],
        "risk_score": decision["risk_score"],
        "reasoning": decision["reasoning"],
        "engine": decision.get("engine"),
        "cached": cached,
    }

"""``get.market_data``: a quote-style summary (and optional history) of one or many symbols.

"Now" is the last bar in the data unless ``as_of`` is given, so the same request always gives
the same answer; that is also what makes the answer safe to cache for
``cache.market_data_ttl_s`` under a key built from the canonical params.

Timeframe fallback: the V3.5 scanner module calls ``get_market_data(symbol, timeframe="1h")``
for every symbol, but stocks only have daily bars. An intraday timeframe asked of a symbol that
has none is answered from its daily bars, and the answer says so: ``timeframe`` is what was
served, ``timeframe_requested`` what was asked, ``timeframe_note`` why. A caller that would
rather fail sends ``strict_timeframe: true`` and gets DATA_UNAVAILABLE naming the timeframes
the symbol has.

``change_24h`` (percent), ``high_24h`` and ``low_24h`` are the documents' ticker fields: over
the last 24 hours of bars for hourly and 4-hour data (close against the close 24 hours
earlier), and the last bar itself for daily and weekly data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import AliasChoices, ConfigDict, Field, model_validator

from tacoreservice.market_data.provider import Bars, parse_as_of
from tacoreservice.market_data.symbols import SymbolInfo, normalize_symbol, normalize_timeframe
from tacoreservice.protocol.errors import DataUnavailable, InvalidParams, ServiceError
from tacoreservice.service.params import DateText, ParamsModel, Symbol, SymbolText
from tacoreservice.service.registry import MethodContext, method

__all__ = ["MarketDataParams", "get_market_data", "summarize"]

log = logging.getLogger(__name__)

_PRICE_DECIMALS = 6
_PCT_DECIMALS = 4
_INTRADAY = ("1h", "4h")
_YEAR = np.timedelta64(365, "D")
_DAY24 = np.timedelta64(24 * 3600, "s")


class MarketDataParams(ParamsModel):
    # Client generations add their own keys (market, scan_type, ...); ParamsModel ignores them.
    # Frozen, and its checks read the params alone: a quote polled again reuses its
    # validated params (registry.reuse_params).
    model_config = ConfigDict(frozen=True)

    symbol: Symbol | None = None
    symbols: list[SymbolText] | None = Field(None, min_length=1, max_length=200)
    timeframe: str = Field(
        "1d", max_length=16, validation_alias=AliasChoices("timeframe", "interval")
    )
    as_of: DateText | None = None
    history: int = Field(0, ge=0, le=5000)
    strict_timeframe: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> MarketDataParams:
        if (self.symbol is None) == (self.symbols is None):
            got = "both" if self.symbol is not None else "neither"
            raise ValueError(
                f"give exactly one of 'symbol' (a ticker) or 'symbols' (a list of 1..200 "
                f"tickers); got {got}"
            )
        return self


def _f(x: float, decimals: int = _PRICE_DECIMALS) -> float | None:
    x = float(x)
    return round(x, decimals) if math.isfinite(x) else None


def _times(t: np.ndarray, timeframe: str) -> list[str]:
    if timeframe in _INTRADAY:
        return [f"{s}Z" for s in np.datetime_as_string(t, unit="s")]
    return [str(s) for s in np.datetime_as_string(t, unit="D")]


def _column(a: np.ndarray) -> list[float | None]:
    values: list[float | None] = np.round(a, _PRICE_DECIMALS).tolist()
    if not np.isfinite(a).all():
        values = [v if v is not None and math.isfinite(v) else None for v in values]
    return values


def _last_24h(bars: Bars) -> tuple[float, float, float]:
    """(change %, high, low) over the last 24 hours of intraday bars, or of the last bar."""
    last = len(bars) - 1
    if bars.timeframe not in _INTRADAY:
        prev = float(bars.close[last - 1]) if last > 0 else math.nan
        change = (float(bars.close[last]) / prev - 1.0) * 100.0 if prev else math.nan
        return change, float(bars.high[last]), float(bars.low[last])
    # Bar-open times: the window holds the bars that opened within 24 h of the last bar's
    # close, and the reference is the close of the bar just before it.
    step = bars.time[last] - bars.time[last - 1] if last > 0 else np.timedelta64(3600, "s")
    start = int(np.searchsorted(bars.time, bars.time[last] + step - _DAY24, side="left"))
    ref = float(bars.close[start - 1]) if start > 0 else float(bars.open[start])
    change = (float(bars.close[last]) / ref - 1.0) * 100.0 if ref else math.nan
    return change, float(np.max(bars.high[start:])), float(np.min(bars.low[start:]))


def summarize(info: SymbolInfo, bars: Bars, history: int, source: str) -> dict[str, Any]:
    """The answer for one symbol from its point-in-time bars."""
    n = len(bars)
    last = n - 1
    close = float(bars.close[last])
    prev = float(bars.close[last - 1]) if n > 1 else math.nan
    change = close - prev
    change_pct = change / prev * 100.0 if prev else math.nan
    t_last = bars.time[last]
    start = int(np.searchsorted(bars.time, t_last - _YEAR, side="right"))
    recent_vol = bars.volume[max(n - 20, 0) :]
    finite_vol = recent_vol[np.isfinite(recent_vol)]
    change_24h, high_24h, low_24h = _last_24h(bars)
    out: dict[str, Any] = {
        "symbol": info.symbol,
        "market": info.market,
        "kind": info.kind,
        "name": info.name,
        "exchange": info.exchange,
        "currency": info.currency,
        "timeframe": bars.timeframe,
        "as_of": _times(bars.time[last:], bars.timeframe)[0],
        "price": _f(close),
        "open": _f(bars.open[last]),
        "high": _f(bars.high[last]),
        "low": _f(bars.low[last]),
        "close": _f(close),
        "volume": _f(bars.volume[last]),
        "change": _f(change),
        "change_pct": _f(change_pct, _PCT_DECIMALS),
        "high_52w": _f(np.max(bars.high[start:])),
        "low_52w": _f(np.min(bars.low[start:])),
        "avg_volume_20": _f(finite_vol.mean(), 2) if finite_vol.size else None,
        "change_24h": _f(change_24h, _PCT_DECIMALS),
        "high_24h": _f(high_24h),
        "low_24h": _f(low_24h),
        "bars_available": n,
        "partial_bar_dropped": bool(bars.partial_bar_dropped),
        "source": source,
        "adjustment": info.adjustment,
        "volume_unit": info.volume_unit,
    }
    if history > 0:
        h = bars.tail(history)
        out["history"] = [
            {"time": t, "open": o, "high": hi, "low": lo, "close": c, "volume": v}
            for t, o, hi, lo, c, v in zip(
                _times(h.time, h.timeframe),
                _column(h.open),
                _column(h.high),
                _column(h.low),
                _column(h.close),
                _column(h.volume),
                strict=True,
            )
        ]
    return out


@dataclass(slots=True)
class _CacheKey:
    """The cache key of one params instance, and the last cached bytes known to decode."""

    # Kept so that its id is not taken by another object while this entry lives.
    params: MarketDataParams
    provider: str
    key: str
    valid: bytes | None = None


# Cache keys by id of the params instance, for the params the registry hands out again for the
# same request (reuse_params): a polled quote derives its key once, not on every request.
_KEYS: dict[int, _CacheKey] = {}
_MAX_KEYS = 1024


def _known_key(params: MarketDataParams, ctx: MethodContext) -> _CacheKey | None:
    known = _KEYS.get(id(params))
    if (
        known is None
        or known.params is not params
        or known.provider != ctx.settings.market_data.provider
    ):
        return None
    return known


def _remember_key(params: MarketDataParams, ctx: MethodContext, key: str) -> _CacheKey:
    if len(_KEYS) >= _MAX_KEYS:
        _KEYS.clear()
    known = _KEYS[id(params)] = _CacheKey(params, ctx.settings.market_data.provider, key)
    return known


def _cache_get(ctx: MethodContext, known: _CacheKey) -> Any | None:
    """The cached answer, or None. For a caller that encodes with orjson
    (``ctx.encoded_results``) the cached bytes themselves, as a Fragment: they are decoded
    once, to check them (a foreign or damaged entry is not answered with), and the same bytes
    again are not decoded at all."""
    try:
        raw = ctx.cache.get(known.key)
    except Exception:  # a cache outage must not fail a request the data can answer
        log.warning("market data cache read failed for %s", known.key, exc_info=True)
        return None
    if raw is None:
        return None
    if raw is known.valid or raw == known.valid:
        return orjson.Fragment(raw) if ctx.encoded_results else orjson.loads(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    known.valid = raw
    return orjson.Fragment(raw) if ctx.encoded_results else value


def _cache_set(ctx: MethodContext, key: str, value: Any, ttl_s: float) -> None:
    try:
        ctx.cache.set(key, orjson.dumps(value), ttl_s)
    except Exception:
        log.warning("market data cache write failed for %s", key, exc_info=True)


def _canonical_symbols(raw: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Canonical symbols in request order without duplicates, and the unparseable ones."""
    out: list[str] = []
    bad: list[dict[str, Any]] = []
    for item in raw:
        try:
            canonical = normalize_symbol(item)
        except InvalidParams as exc:
            bad.append({"symbol": item, "error": exc.message, "suggestions": []})
            continue
        if canonical not in out:
            out.append(canonical)
    return out, bad


def _resolve_all(
    ctx: MethodContext, symbols: list[str], bad: list[dict[str, Any]]
) -> list[SymbolInfo]:
    """Resolve every symbol, or fail once naming all bad ones (a client fixes them together)."""
    infos: list[SymbolInfo] = []
    bad = list(bad)
    for sym in symbols:
        try:
            infos.append(ctx.market_data.resolve(sym))
        except InvalidParams as exc:
            suggestions = list((exc.details or {}).get("suggestions", []))
            bad.append({"symbol": sym, "error": exc.message, "suggestions": suggestions})
    if bad:
        parts = [
            f"{b['symbol']!r} (did you mean {' or '.join(b['suggestions'])}?)"
            if b["suggestions"]
            else f"{b['symbol']!r} ({b['error']})"
            for b in bad
        ]
        raise InvalidParams(
            f"unknown or invalid symbols: {', '.join(parts)}",
            {"symbols": bad, "bad_symbols": [b["symbol"] for b in bad]},
        )
    return infos


def _served_timeframe(info: SymbolInfo, timeframe: str, strict: bool) -> str:
    """The timeframe to answer ``timeframe`` with: itself, or daily for a daily-only symbol."""
    if timeframe in info.timeframes or not info.timeframes:
        return timeframe
    if strict or timeframe not in _INTRADAY or "1d" not in info.timeframes:
        raise DataUnavailable(
            f"{info.symbol} has no {timeframe} bars; its timeframes are "
            f"{', '.join(info.timeframes)} (without strict_timeframe an intraday request is "
            "answered from daily bars)",
            {"symbol": info.symbol, "timeframe": timeframe, "available": list(info.timeframes)},
        )
    return "1d"


@method("get.market_data", MarketDataParams, reuse_params=True)
def get_market_data(params: MarketDataParams, ctx: MethodContext) -> Any:
    """Latest bar, change, 52-week range and optional history of one or many symbols (a
    dict; cached JSON as an ``orjson.Fragment`` when ``ctx.encoded_results``)."""
    ttl = float(ctx.settings.cache.market_data_ttl_s)
    known = _known_key(params, ctx) if ttl > 0 else None
    if known is not None:
        cached = _cache_get(ctx, known)
        if cached is not None:
            return cached
    single = params.symbol is not None
    timeframe = normalize_timeframe(params.timeframe)
    as_of = parse_as_of(params.as_of)
    bad: list[dict[str, Any]] = []
    if single:
        symbols = [normalize_symbol(params.symbol or "")]
    else:
        symbols, bad = _canonical_symbols(params.symbols or [])

    key_params: dict[str, Any] = {
        "strict": params.strict_timeframe,
        "provider": ctx.settings.market_data.provider,
        "symbol" if single else "symbols": symbols[0] if single else symbols,
        "timeframe": timeframe,
        "as_of": as_of.text if as_of is not None else None,
        "history": params.history,
    }
    key = "md:" + orjson.dumps(key_params, option=orjson.OPT_SORT_KEYS).decode()
    if ttl > 0 and not bad:
        # Only a single symbol's params are reused (a list of symbols is never kept).
        known = _remember_key(params, ctx, key) if single else _CacheKey(params, "", key)
        cached = _cache_get(ctx, known)
        if cached is not None:
            return cached

    provider = ctx.market_data
    # A single symbol's own resolve error already carries the suggestions.
    infos = [provider.resolve(symbols[0])] if single else _resolve_all(ctx, symbols, bad)

    results: dict[str, dict[str, Any]] = {}
    unavailable: list[ServiceError] = []
    for info in infos:
        served = _served_timeframe(info, timeframe, params.strict_timeframe)
        try:
            bars = provider.bars(info.symbol, served, as_of)
        except DataUnavailable as exc:
            if single:
                raise
            unavailable.append(exc)
            continue
        except InvalidParams:
            if single:
                raise
            bad_tf = [i for i in infos if timeframe not in i.timeframes]
            listed = ", ".join(f"{i.symbol} (available: {', '.join(i.timeframes)})" for i in bad_tf)
            raise InvalidParams(
                f"timeframe {timeframe} is not available for {listed}",
                {"timeframe": timeframe, "symbols": [i.symbol for i in bad_tf]},
            ) from None
        results[info.symbol] = summarize(info, bars, params.history, provider.name)
        if served != timeframe:
            results[info.symbol].update(
                timeframe_requested=timeframe,
                timeframe_note=f"{info.symbol} has no {timeframe} bars (available: "
                f"{', '.join(info.timeframes)}); served {served} bars",
            )
    if unavailable:
        raise DataUnavailable(
            "; ".join(e.message for e in unavailable),
            {"symbols": [(e.details or {}).get("symbol") for e in unavailable]},
        )

    answer = results[infos[0].symbol] if single else {"market_data": results, "count": len(results)}
    if ttl > 0:
        _cache_set(ctx, key, answer, ttl)
    return answer

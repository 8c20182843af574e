"""``scan.market``: rank a market's symbols by signals and a documented, deterministic score.

Universe
    ``market`` / ``market_type`` (either spelling, case-insensitive): ``US``, ``CN``, ``crypto``
    or ``all``; ``stock``/``equity`` means US and CN stocks. Without ``symbols`` the universe
    is every stock and crypto pair of the selected markets. Indices and ETFs (SPY, QQQ, XL*,
    CSI300) are benchmarks, not picks: they are scanned only when named in ``symbols``. Named
    symbols must belong to an explicitly requested market; named symbols the data lacks are
    listed in ``unknown_symbols`` with close matches while the others are scanned (only a list
    with none known is INVALID_PARAMS). Each symbol is scanned on daily bars
    at its own last bar at or before ``as_of`` (markets end on different dates: the reply's
    ``as_of`` gives the latest bar per market and every result carries its own).

Scan types
    ``basic``: price, volume and change only (no indicator library). ``technical`` (default):
    adds TA-Lib indicators (RSI, MACD, ADX, moving averages). ``comprehensive``: adds relative
    strength against the market benchmark and a fundamentals summary per result.
    Fundamentals are reported, never scored: the bundled ones are a snapshot taken after the
    price data ends, and scoring with them would leak the future into a past as_of.

Signals (thresholds in :mod:`tacoreservice.analysis.evidence`)
    ``volume_spike`` volume >= 2x the mean of the prior 20 bars; ``momentum`` 1-month return
    >= 5% (from ``technical`` on also a positive MACD histogram); ``breakout`` / ``breakdown``
    close above the prior 20-bar high / below the prior 20-bar low; ``ma_cross`` /
    ``death_cross`` SMA50 crossed above / below SMA200 within 10 bars; ``rsi_oversold`` RSI14
    < 30, ``rsi_overbought`` > 70; ``trend_up`` / ``trend_down`` (close, SMA50, SMA200 in order
    and ADX14 >= 20); comprehensive only: ``outperforming`` / ``underperforming`` 3-month
    return at least 5 points above / below the benchmark's.

Score (0..1): the calibrated chance that the symbol's return over the next 21 bars is
    positive, ``probability_up`` of the analysis engine's forecast
    (:mod:`tacoreservice.analysis.forecast`): the market's signals weighed by what they were
    worth on its history before as_of. It is the same for every scan type (they differ in the
    fields and signals they report). A symbol whose market has no calibration yet at as_of
    (too little history) scores 0.5, no view, and its ``reason`` says so. Ties are broken by
    symbol, so the ranking is deterministic. The signals below describe a setup; they are not
    weighed into the score.

Criteria (``criteria`` or ``filters``; both may be given, a key must not conflict)
    ``min_volume``, ``max_volume`` (last bar, in the data's unit: shares for US, lots of 100
    shares for CN, base units for crypto; each result gives ``volume_unit``), ``price_range``
    [lo, hi] or ``min_price`` / ``max_price``, ``min_change_pct`` / ``max_change_pct`` (last
    bar vs previous close, percent), ``rsi_range`` [lo, hi] or ``rsi_min`` / ``rsi_max``
    (computed even for a basic scan), ``min_volume_ratio``, ``signals`` (keep symbols with any
    of them), ``sectors`` (case-insensitive substring of the catalogue's or the fundamentals'
    sector, sub-industry or industry; classification is static, so the snapshot is safe to
    use). An unknown key or a malformed value is INVALID_PARAMS naming the field.

Reply
    ``scan_results``: up to ``limit`` rows ranked by score (desc, then symbol), each with
    ``rank``, ``symbol``, ``name``, ``market``, ``kind``, ``score``, ``signals``, ``price``,
    ``volume``, ``volume_unit``, ``change_pct``, ``volume_ratio``, ``return_1m``, ``reason``,
    ``as_of`` (+ ``rsi_14``, ``macd_hist``, ``adx_14``, ``trend``, ``ma_cross`` from technical
    on; + ``relative_strength`` and ``fundamentals`` for comprehensive); ``total_scanned``,
    ``matched`` (before ``limit``), ``scan_type``, ``market``, ``as_of`` (latest bar per market,
    a plain date when one market), ``criteria`` (normalised), ``skipped`` (symbols with no
    bar at or before ``as_of``) and ``unknown_symbols`` (``{symbol, suggestions, message}``).

Speed: features are computed once per symbol and as_of and cached for the process
(:func:`tacoreservice.analysis.universe.universe_features`); a repeated scan only runs the
vectorised signals, score and filters on those columns (see bench/bench_analysis.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from tacoreservice.analysis.evidence import RSI_OVERBOUGHT, RSI_OVERSOLD
from tacoreservice.analysis.universe import (
    SIGNALS,
    SIGNALS_BY_SCAN_TYPE,
    FeatureTable,
    scan_signals,
    symbol_sectors,
    universe_features,
)
from tacoreservice.market_data.provider import parse_as_of
from tacoreservice.market_data.symbols import MARKETS, SymbolInfo, normalize_market
from tacoreservice.protocol.errors import InvalidParams
from tacoreservice.service.params import MAX_PRICE, DateText, ParamsModel, SymbolText
from tacoreservice.service.registry import MethodContext, method

__all__ = [
    "CRITERIA_KEYS",
    "SCAN_TYPES",
    "ScanParams",
    "normalise_criteria",
    "scan_market",
    "score_table",
]

SCAN_TYPES: tuple[str, ...] = ("basic", "technical", "comprehensive")

CRITERIA_KEYS: tuple[str, ...] = (
    "min_volume",
    "max_volume",
    "price_range",
    "min_price",
    "max_price",
    "min_change_pct",
    "max_change_pct",
    "rsi_range",
    "rsi_min",
    "rsi_max",
    "min_volume_ratio",
    "signals",
    "sectors",
)

_SCANNED_KINDS = frozenset({"stock", "crypto"})
_ALL_WORDS = frozenset({"all", "any", "*", "global"})
_STOCK_WORDS = frozenset({"stock", "stocks", "equity", "equities", "share", "shares"})
_SCORE_DECIMALS = 4
# Bounds of the criteria numbers: beyond them a filter is a unit mistake, not a wish. A price
# cannot fall more than 100 % in a bar; +10,000 % and a 1,000,000x volume ratio never happen.
_MAX_VOLUME = 1e15
_CHANGE_PCT_RANGE = (-100.0, 10_000.0)
_MAX_VOLUME_RATIO = 1e6
_MAX_NAMES = 50
_MAX_NAME_LENGTH = 64


class ScanParams(ParamsModel):
    # Client generations add their own top-level keys (timestamp, client ids, ...); ignoring
    # them keeps those clients working. Criteria keys, by contrast, are checked strictly.
    market: str | None = Field(None, max_length=32)
    market_type: str | None = Field(None, max_length=32)
    symbols: list[SymbolText] | None = Field(None, min_length=1, max_length=500)
    criteria: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    scan_type: str | None = Field(None, max_length=32)
    as_of: DateText | None = None
    limit: int = Field(50, ge=1, le=500)
    min_score: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        # "AAPL,GOOGL" from command lines and query strings.
        if isinstance(value, str):
            return [s for s in (p.strip() for p in value.split(",")) if s]
        return value


# --- criteria ------------------------------------------------------------------------------


def _bad(field: str, message: str, **details: Any) -> InvalidParams:
    return InvalidParams(f"scan.market: invalid {field}: {message}", {"field": field, **details})


def _number(
    field: str,
    value: Any,
    *,
    non_negative: bool = False,
    lowest: float = -math.inf,
    highest: float = math.inf,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, f"expected a number, got {value!r}"[:120])
    f = float(value)
    if not math.isfinite(f):
        raise _bad(field, f"expected a finite number, got {value!r}")
    if non_negative and f < 0:
        raise _bad(field, f"must not be negative, got {value!r}")
    if not lowest <= f <= highest:
        low = 0.0 if non_negative else lowest
        raise _bad(field, f"must lie within {low:g}..{highest:g}, got {value!r}")
    return f


def _pair(field: str, value: Any, upper: float) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _bad(field, f"expected [low, high] (two numbers), got {value!r}"[:160])
    lo = _number(field, value[0], non_negative=True, highest=upper)
    hi = _number(field, value[1], non_negative=True, highest=upper)
    if lo > hi:
        raise _bad(field, f"low {value[0]!r} is above high {value[1]!r}")
    return [lo, hi]


def _names(field: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise _bad(field, f"expected a non-empty list of names, got {value!r}"[:120])
    if len(items) > _MAX_NAMES:
        raise _bad(field, f"at most {_MAX_NAMES} names, got {len(items)}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise _bad(field, f"expected names (non-empty strings), got {item!r}"[:120])
        if len(item) > _MAX_NAME_LENGTH:
            raise _bad(field, f"a name is at most {_MAX_NAME_LENGTH} characters, got {len(item)}")
        name = item.strip()
        if name not in out:
            out.append(name)
    return out


def normalise_criteria(
    criteria: Mapping[str, Any] | None, filters: Mapping[str, Any] | None, scan_type: str
) -> dict[str, Any]:
    """Validate ``criteria`` and ``filters`` (merged) into one canonical dict.

    Ranges are normalised to ``[low, high]`` (``None`` = open), the alternative spellings
    (``min_price``, ``rsi_min``, ...) to their range; names are stripped and deduplicated.
    """
    merged: dict[str, Any] = {}
    where: dict[str, str] = {}
    for source, given in (("criteria", criteria), ("filters", filters)):
        for key, value in (given or {}).items():
            if key not in CRITERIA_KEYS:
                raise InvalidParams(
                    f"scan.market: unknown {source} key {key!r}; valid keys: "
                    f"{', '.join(CRITERIA_KEYS)}",
                    {"field": f"{source}.{key}", "valid": list(CRITERIA_KEYS)},
                )
            if key in merged and merged[key] != value:
                raise _bad(
                    f"{source}.{key}",
                    f"conflicts with {where[key]}.{key} ({merged[key]!r} vs {value!r})"[:160],
                )
            merged[key] = value
            where[key] = source

    def f(key: str) -> str:
        return f"{where[key]}.{key}"

    out: dict[str, Any] = {}
    for key in ("min_volume", "max_volume"):
        if key in merged:
            out[key] = _number(f(key), merged[key], non_negative=True, highest=_MAX_VOLUME)
    if out.get("min_volume", -math.inf) > out.get("max_volume", math.inf):
        raise _bad(f("min_volume"), "is above max_volume")

    if "price_range" in merged:
        if "min_price" in merged or "max_price" in merged:
            raise _bad(f("price_range"), "give price_range or min_price/max_price, not both")
        out["price_range"] = _pair(f("price_range"), merged["price_range"], MAX_PRICE)
    elif "min_price" in merged or "max_price" in merged:
        lo = (
            _number(f("min_price"), merged["min_price"], non_negative=True, highest=MAX_PRICE)
            if "min_price" in merged
            else 0.0
        )
        hi = (
            _number(f("max_price"), merged["max_price"], non_negative=True, highest=MAX_PRICE)
            if "max_price" in merged
            else None
        )
        if hi is not None and lo > hi:
            raise _bad(f("min_price"), "is above max_price")
        out["price_range"] = [lo, hi]

    lowest, highest = _CHANGE_PCT_RANGE
    for key in ("min_change_pct", "max_change_pct"):
        if key in merged:
            out[key] = _number(f(key), merged[key], lowest=lowest, highest=highest)
    if out.get("min_change_pct", -math.inf) > out.get("max_change_pct", math.inf):
        raise _bad(f("min_change_pct"), "is above max_change_pct")

    if "rsi_range" in merged:
        if "rsi_min" in merged or "rsi_max" in merged:
            raise _bad(f("rsi_range"), "give rsi_range or rsi_min/rsi_max, not both")
        out["rsi_range"] = _pair(f("rsi_range"), merged["rsi_range"], upper=100.0)
    elif "rsi_min" in merged or "rsi_max" in merged:
        lo = (
            _number(f("rsi_min"), merged["rsi_min"], non_negative=True)
            if "rsi_min" in merged
            else 0.0
        )
        hi = (
            _number(f("rsi_max"), merged["rsi_max"], non_negative=True)
            if "rsi_max" in merged
            else 100.0
        )
        field = f("rsi_min") if "rsi_min" in merged else f("rsi_max")
        out["rsi_range"] = _pair(field, [lo, hi], upper=100.0)

    if "min_volume_ratio" in merged:
        out["min_volume_ratio"] = _number(
            f("min_volume_ratio"),
            merged["min_volume_ratio"],
            non_negative=True,
            highest=_MAX_VOLUME_RATIO,
        )

    if "signals" in merged:
        wanted = [s.lower() for s in _names(f("signals"), merged["signals"])]
        available = SIGNALS_BY_SCAN_TYPE[scan_type]
        for name in wanted:
            if name not in SIGNALS:
                raise _bad(
                    f("signals"),
                    f"unknown signal {name!r}; valid signals: {', '.join(SIGNALS)}",
                    valid=list(SIGNALS),
                )
            if name not in available:
                needs = next(t for t in SCAN_TYPES if name in SIGNALS_BY_SCAN_TYPE[t])
                raise _bad(
                    f("signals"),
                    f"signal {name!r} is not computed by a {scan_type} scan; use scan_type "
                    f"{needs!r} or above",
                )
        out["signals"] = wanted
    if "sectors" in merged:
        out["sectors"] = _names(f("sectors"), merged["sectors"])
    return out


# --- universe ------------------------------------------------------------------------------


def _selection(value: str, field: str) -> tuple[frozenset[str], frozenset[str] | None, str]:
    """(markets, kinds or None for any, label) selected by a market/market_type value."""
    word = value.strip().lower()
    if word in _ALL_WORDS:
        return frozenset(MARKETS), None, "all"
    if word in _STOCK_WORDS:
        return frozenset({"us", "cn"}), frozenset({"stock"}), "stock"
    try:
        market = normalize_market(word)
    except InvalidParams:
        raise InvalidParams(
            f"scan.market: unknown {field} {value!r}; use US, CN, crypto or all "
            "(or stock for US and CN stocks)",
            {"field": field, "valid": ["US", "CN", "crypto", "all", "stock"]},
        ) from None
    return frozenset({market}), None, market


def _universe(
    provider: Any, params: ScanParams
) -> tuple[str, list[SymbolInfo], list[dict[str, Any]]]:
    markets: frozenset[str] = frozenset(MARKETS)
    kinds: frozenset[str] | None = None
    labels: list[str] = []
    for field in ("market", "market_type"):
        value = getattr(params, field)
        if value is None or not value.strip():
            continue
        m, k, lab = _selection(value, field)
        markets &= m
        if k is not None:
            kinds = k if kinds is None else kinds & k
        labels.append(lab)
        if not markets or (kinds is not None and not kinds):
            raise InvalidParams(
                f"scan.market: market {params.market!r} and market_type "
                f"{params.market_type!r} select nothing together",
                {"field": "market_type"},
            )

    explicit = bool(labels)
    # The narrower word names the selection: market US + market_type stock is "us".
    narrow = {"all": 0, "stock": 1}
    label = max(labels, key=lambda lab: narrow.get(lab, 2)) if labels else None
    if params.symbols:
        infos, unknown = _resolve_symbols(provider, params.symbols)
        if explicit:
            outside = [i for i in infos if i.market not in markets]
            if outside:
                names = ", ".join(f"{i.symbol} ({i.market})" for i in outside)
                raise InvalidParams(
                    f"scan.market: symbols outside the requested market ({label}): {names}; "
                    "drop them or the market selection",
                    {"field": "symbols", "bad_symbols": [i.symbol for i in outside]},
                )
        if label is None:
            found = {i.market for i in infos}
            label = next(iter(found)) if len(found) == 1 else "all"
        return label, infos, unknown

    allowed = _SCANNED_KINDS if kinds is None else _SCANNED_KINDS & kinds
    infos = [
        i
        for m in sorted(markets)
        for i in provider.symbols(m)
        if i.kind in allowed and i.market in markets
    ]
    infos.sort(key=lambda i: (i.market, i.symbol))
    return label or "all", infos, []


def _resolve_symbols(
    provider: Any, raw: Sequence[str]
) -> tuple[list[SymbolInfo], list[dict[str, Any]]]:
    """The known symbols (in request order, once each) and the unknown ones with close matches.

    A scanner names the symbols it watches; one it cannot have (a pair not bundled) must not
    cost it the answer for the others, so only a list with nothing known fails.
    """
    infos: list[SymbolInfo] = []
    unknown: list[dict[str, Any]] = []
    for item in raw:
        try:
            info = provider.resolve(item)
        except InvalidParams as exc:
            suggestions = list((exc.details or {}).get("suggestions", []))
            unknown.append({"symbol": item, "suggestions": suggestions, "message": exc.message})
            continue
        if all(i.symbol != info.symbol for i in infos):
            infos.append(info)
    if unknown and not infos:
        parts = [
            f"{b['symbol']!r} (did you mean {' or '.join(b['suggestions'])}?)"
            if b["suggestions"]
            else f"{b['symbol']!r} ({b['message']})"
            for b in unknown
        ]
        raise InvalidParams(
            f"scan.market: no known symbol in symbols: {', '.join(parts)}",
            {
                "field": "symbols",
                "symbols": unknown,
                "bad_symbols": [b["symbol"] for b in unknown],
            },
        )
    return infos, unknown


# --- scoring -------------------------------------------------------------------------------


def score_table(table: FeatureTable, scan_type: str) -> np.ndarray:
    """Scores in 0..1 (the forecast's probability of a positive month; 0.5 without one),
    rounded to 4 decimals (the ranking uses the rounded value)."""
    p = table.columns["p_up"]
    return np.round(np.where(np.isfinite(p), p, 0.5), _SCORE_DECIMALS)


# --- filters -------------------------------------------------------------------------------


def _filter_mask(
    provider: Any,
    table: FeatureTable,
    crit: Mapping[str, Any],
    signals: Mapping[str, np.ndarray],
) -> np.ndarray:
    col = table.columns
    mask = np.ones(len(table), dtype=bool)
    # NaN compares False, so a symbol whose value is unknown never passes a filter on it.
    if "min_volume" in crit:
        mask &= col["volume"] >= crit["min_volume"]
    if "max_volume" in crit:
        mask &= col["volume"] <= crit["max_volume"]
    if "price_range" in crit:
        lo, hi = crit["price_range"]
        mask &= col["price"] >= lo
        if hi is not None:
            mask &= col["price"] <= hi
    if "min_change_pct" in crit:
        mask &= col["change_pct"] >= crit["min_change_pct"]
    if "max_change_pct" in crit:
        mask &= col["change_pct"] <= crit["max_change_pct"]
    if "rsi_range" in crit:
        lo, hi = crit["rsi_range"]
        mask &= (col["rsi_14"] >= lo) & (col["rsi_14"] <= hi)
    if "min_volume_ratio" in crit:
        mask &= col["volume_ratio"] >= crit["min_volume_ratio"]
    if "signals" in crit:
        anyof = np.zeros(len(table), dtype=bool)
        for name in crit["signals"]:
            anyof |= signals[name]
        mask &= anyof
    if "sectors" in crit:
        wanted = [s.lower() for s in crit["sectors"]]
        mask &= np.array(
            [
                any(w in name for w in wanted for name in symbol_sectors(provider, info))
                for info in table.infos
            ],
            dtype=bool,
        )
    return mask


# --- reply ---------------------------------------------------------------------------------


def _f(x: float, decimals: int = 6) -> float | None:
    return round(float(x), decimals) if math.isfinite(x) else None


def _reason(table: FeatureTable, i: int, active: list[str], scan_type: str) -> str:
    col = table.columns

    def v(name: str) -> float:
        return float(col[name][i])

    symbol = table.infos[i].symbol
    parts: list[str] = []
    for name in active:
        if name == "volume_spike":
            parts.append(f"volume {v('volume_ratio'):.1f}x its prior 20-day average")
        elif name == "momentum":
            confirm = " with a positive MACD histogram" if scan_type != "basic" else ""
            parts.append(f"1-month return {v('return_1m'):+.1%}{confirm}")
        elif name == "breakout":
            parts.append(
                f"closed at {v('price'):.2f} above the prior 20-day high {v('high_20_prior'):.2f}"
            )
        elif name == "breakdown":
            parts.append(
                f"closed at {v('price'):.2f} below the prior 20-day low {v('low_20_prior'):.2f}"
            )
        elif name == "ma_cross":
            parts.append("SMA50 crossed above SMA200 (golden cross) in the last 10 bars")
        elif name == "death_cross":
            parts.append("SMA50 crossed below SMA200 (death cross) in the last 10 bars")
        elif name == "rsi_oversold":
            parts.append(f"RSI {v('rsi_14'):.1f} oversold (below {RSI_OVERSOLD:g})")
        elif name == "rsi_overbought":
            parts.append(f"RSI {v('rsi_14'):.1f} overbought (above {RSI_OVERBOUGHT:g})")
        elif name == "trend_up":
            parts.append(f"uptrend (close > SMA50 > SMA200, ADX {v('adx_14'):.0f})")
        elif name == "trend_down":
            parts.append(f"downtrend (close < SMA50 < SMA200, ADX {v('adx_14'):.0f})")
        elif name in ("outperforming", "underperforming"):
            bench = table.details[i]["relative_strength"]["benchmark"]
            parts.append(f"3-month return {v('excess_return_3m'):+.1%} vs {bench}")
    why = table.details[i].get("forecast_why")
    outlook = (
        f" No calibrated forecast ({why}): score 0.5, no view."
        if why
        else f" Chance of a positive month {v('p_up'):.0%} (calibrated forecast)."
    )
    if parts:
        return f"{symbol}: " + "; ".join(parts) + "." + outlook
    facts: list[str] = []
    if math.isfinite(v("change_pct")):
        facts.append(f"day change {v('change_pct'):+.2f}%")
    if math.isfinite(v("return_1m")):
        facts.append(f"1-month return {v('return_1m'):+.1%}")
    if math.isfinite(v("volume_ratio")):
        facts.append(f"volume {v('volume_ratio'):.1f}x average")
    if scan_type != "basic" and math.isfinite(v("rsi_14")):
        facts.append(f"RSI {v('rsi_14'):.1f}")
    if not facts:
        return (
            f"{symbol}: no signal; the history up to {table.as_of[i]} is too short to judge."
            + outlook
        )
    return f"{symbol}: no signal; " + ", ".join(facts) + "." + outlook


def _result(
    table: FeatureTable,
    i: int,
    rank: int,
    score: float,
    signals: Mapping[str, np.ndarray],
    scan_type: str,
) -> dict[str, Any]:
    col = table.columns
    info = table.infos[i]
    active = [name for name, mask in signals.items() if mask[i]]
    out: dict[str, Any] = {
        "rank": rank,
        "symbol": info.symbol,
        "name": info.name,
        "market": info.market,
        "kind": info.kind,
        "score": float(score),
        "signals": active,
        "price": _f(col["price"][i]),
        "volume": _f(col["volume"][i], 2),
        "volume_unit": info.volume_unit,
        "change_pct": _f(col["change_pct"][i], 4),
        "volume_ratio": _f(col["volume_ratio"][i], 4),
        "return_1m": _f(col["return_1m"][i]),
        "probability_up": _f(col["p_up"][i], 4),
        "expected_return": _f(col["expected_return"][i]),
        "reason": _reason(table, i, active, scan_type),
        "as_of": table.as_of[i],
    }
    if scan_type != "basic":
        detail = table.details[i]
        out["rsi_14"] = _f(col["rsi_14"][i], 4)
        out["macd_hist"] = _f(col["macd_hist"][i])
        out["adx_14"] = _f(col["adx_14"][i], 4)
        out["trend"] = detail["trend"]
        out["ma_cross"] = detail["ma_cross"]
    if scan_type == "comprehensive":
        detail = table.details[i]
        out["relative_strength"] = dict(detail["relative_strength"])
        fund = detail["fundamentals"]
        out["fundamentals"] = dict(fund) if fund is not None else None
    return out


def _scan_type(value: str | None) -> str:
    word = (value or "technical").strip().lower() or "technical"
    if word not in SCAN_TYPES:
        raise InvalidParams(
            f"scan.market: unknown scan_type {value!r}; use basic, technical or comprehensive",
            {"field": "scan_type", "valid": list(SCAN_TYPES)},
        )
    return word


@method("scan.market", ScanParams)
def scan_market(params: ScanParams, ctx: MethodContext) -> dict[str, Any]:
    """Rank a market's symbols by signals and a weighted score, with optional filters."""
    scan_type = _scan_type(params.scan_type)
    crit = normalise_criteria(params.criteria, params.filters, scan_type)
    as_of = parse_as_of(params.as_of)
    provider = ctx.market_data
    label, infos, unknown = _universe(provider, params)
    # RSI filtering needs the indicator rows even when a basic scan scores without them.
    kind = "basic" if scan_type == "basic" and "rsi_range" not in crit else "full"
    table = universe_features(provider, [i.symbol for i in infos], as_of, kind)
    signals = scan_signals(table, scan_type)
    scores = score_table(table, scan_type)
    mask = _filter_mask(provider, table, crit, signals)
    if params.min_score is not None:
        mask &= scores >= params.min_score
    symbols = table.symbols
    matched = sorted(np.flatnonzero(mask).tolist(), key=lambda i: (-scores[i], symbols[i]))
    results = [
        _result(table, i, rank, scores[i], signals, scan_type)
        for rank, i in enumerate(matched[: params.limit], start=1)
    ]
    latest: dict[str, str] = {}
    for info, when in zip(table.infos, table.as_of, strict=True):
        if when > latest.get(info.market, ""):
            latest[info.market] = when
    as_of_out: str | dict[str, str] = (
        next(iter(latest.values())) if len(latest) == 1 else dict(sorted(latest.items()))
    )
    return {
        "scan_results": results,
        "total_scanned": len(table),
        "matched": len(matched),
        "scan_type": scan_type,
        "market": label,
        "as_of": as_of_out,
        "criteria": crit,
        "skipped": [dict(s) for s in table.skipped],
        "unknown_symbols": unknown,
    }

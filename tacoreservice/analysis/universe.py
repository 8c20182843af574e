"""The universe scan's features: one row of numbers per symbol, stacked into columns.

:func:`universe_features` computes each symbol's row once per (provider, symbol, as_of,
kind) from its point-in-time daily bars (:mod:`tacoreservice.analysis.evidence` for the full
kind) and caches it, and the stacked table once per symbol list, so a repeated scan only runs
the vectorised filters; :func:`scan_signals` computes every signal on those columns in one
pass. The scanner (service/methods/scan.py) ranks and explains from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tacoreservice.analysis import evidence
from tacoreservice.analysis.evidence import (
    LRU,
    MA_CROSS_LOOKBACK,
    MOMENTUM_RETURN_1M,
    RELATIVE_STRENGTH_EDGE,
    RSI_OVERBOUGHT,
    RSI_OVERSOLD,
    VOLUME_SPIKE_RATIO,
    compute_evidence,
    iso_date,
    price_volume_features,
)
from tacoreservice.analysis.forecast import forecast
from tacoreservice.market_data.provider import (
    AsOf,
    AsOfLike,
    Bars,
    is_static,
    parse_as_of,
    provider_key,
)
from tacoreservice.market_data.symbols import SymbolInfo, periods_per_year
from tacoreservice.protocol.errors import DataUnavailable

__all__ = [
    "BASIC_COLUMNS",
    "FULL_COLUMNS",
    "SIGNALS",
    "SIGNALS_BY_SCAN_TYPE",
    "FeatureTable",
    "clear_caches",
    "scan_signals",
    "symbol_sectors",
    "universe_features",
]

_row_cache = LRU(8192)
_table_cache = LRU(128)
_sector_cache = LRU(4096)


def clear_caches() -> None:
    """Forget every cached feature row, table and sector list, and the evidence (tests,
    benchmarks)."""
    for cache in (_row_cache, _table_cache, _sector_cache):
        cache.clear()
    evidence.clear_caches()


BASIC_COLUMNS: tuple[str, ...] = (
    "price",
    "change_pct",
    "volume",
    "avg_volume_20",
    "volume_ratio",
    "high_20_prior",
    "low_20_prior",
    "return_1w",
    "return_1m",
    "return_3m",
    "return_1y",
    "p_up",  # the calibrated forecast's chance of a positive month (NaN: no calibration yet)
    "expected_return",
)
FULL_COLUMNS: tuple[str, ...] = BASIC_COLUMNS + (
    "rsi_14",
    "macd_hist",
    "adx_14",
    "sma_50",
    "sma_200",
    "trend",  # +1 up, 0 sideways, -1 down, NaN unknown
    "ma_cross",  # +1 golden, -1 death, 0 none, NaN unknown
    "excess_return_3m",
    "excess_return_1y",
)

_TREND_CODE = {"up": 1.0, "sideways": 0.0, "down": -1.0}
_CROSS_CODE = {"golden": 1.0, "death": -1.0}

SIGNALS: tuple[str, ...] = (
    "volume_spike",
    "momentum",
    "breakout",
    "breakdown",
    "ma_cross",
    "death_cross",
    "rsi_oversold",
    "rsi_overbought",
    "trend_up",
    "trend_down",
    "outperforming",
    "underperforming",
)
SIGNALS_BY_SCAN_TYPE: dict[str, tuple[str, ...]] = {
    "basic": SIGNALS[:4],
    "technical": SIGNALS[:10],
    "comprehensive": SIGNALS,
}


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """One row per scanned symbol; ``columns`` are read-only float64 arrays (NaN = unknown).

    ``kind`` is ``basic`` (price/volume only, no TA-Lib) or ``full`` (indicators, relative
    strength and a fundamentals summary from :func:`compute_evidence`). ``details`` holds the
    per-row values that are not numbers (trend word, benchmark, fundamentals summary).
    """

    kind: str
    infos: tuple[SymbolInfo, ...]
    as_of: tuple[str, ...]
    columns: Mapping[str, np.ndarray]
    details: tuple[Mapping[str, Any], ...]
    skipped: tuple[Mapping[str, str], ...]

    @property
    def symbols(self) -> list[str]:
        return [i.symbol for i in self.infos]

    def __len__(self) -> int:
        return len(self.infos)


def _feature_row(
    provider: Any, info: SymbolInfo, as_of: AsOf | None, kind: str
) -> tuple[str, dict[str, float], dict[str, Any]]:
    bars: Bars = provider.bars(info.symbol, "1d", as_of)
    row = price_volume_features(bars, periods_per_year(info.market, "1d"))
    outlook = forecast(provider, info, bars.time[-1].astype("datetime64[D]"))
    row["p_up"] = float(outlook["p_up"]) if outlook.get("available") else math.nan
    row["expected_return"] = (
        float(outlook["expected_return"]) if outlook.get("available") else math.nan
    )
    detail: dict[str, Any] = {"forecast_why": None if outlook.get("available") else outlook["why"]}
    if kind == "full":
        ev = compute_evidence(provider, info.symbol, as_of, "1d")
        t, rs = ev["technical"], ev["relative_strength"]
        for name in ("rsi_14", "macd_hist", "adx_14", "sma_50", "sma_200"):
            row[name] = math.nan if t[name] is None else float(t[name])
        row["trend"] = _TREND_CODE.get(t["trend"], math.nan)
        # No crossing is a known 0 only when the window could have shown one.
        enough = ev["bars"] >= 200 + MA_CROSS_LOOKBACK
        row["ma_cross"] = _CROSS_CODE.get(t["ma_cross"], 0.0 if enough else math.nan)
        for name in ("excess_return_3m", "excess_return_1y"):
            row[name] = math.nan if rs[name] is None else float(rs[name])
        fund = ev["fundamentals"]
        detail |= {
            "trend": t["trend"],
            "ma_cross": t["ma_cross"],
            "relative_strength": {
                k: rs[k] for k in ("benchmark", "excess_return_3m", "excess_return_1y")
            }
            | ({"note": rs["note"]} if "note" in rs else {}),
            "fundamentals": None
            if fund is None
            else {
                k: fund.get(k)
                for k in (
                    "sector",
                    "sub_industry",
                    "industry",
                    "pe_ratio",
                    "eps",
                    "market_cap",
                    "snapshot_date",
                    "point_in_time",
                )
            },
        }
    return iso_date(bars.time[-1], "1d"), row, detail


def universe_features(
    provider: Any, symbols: Sequence[str], as_of: AsOfLike = None, kind: str = "full"
) -> FeatureTable:
    """Daily-bar features of ``symbols`` at ``as_of`` stacked into columns.

    Each symbol's row is computed once per (provider, symbol, as_of, kind) and the stacked
    table once per symbol list, both cached for the process, so a repeated scan only runs the
    vectorised filters and scoring. Symbols without a bar at or before ``as_of`` are listed in
    ``skipped`` instead of failing the whole table.
    """
    if kind not in ("basic", "full"):
        raise ValueError(f"kind must be 'basic' or 'full', not {kind!r}")
    cut = parse_as_of(as_of)
    text = cut.text if cut is not None else None
    pkey = provider_key(provider)
    cacheable = is_static(provider) or cut is not None
    table_key = (pkey, tuple(symbols), text, kind)
    if cacheable:
        hit = _table_cache.get(table_key)
        if hit is not None:
            return hit

    infos: list[SymbolInfo] = []
    dates: list[str] = []
    rows: list[dict[str, float]] = []
    details: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for sym in symbols:
        info: SymbolInfo = provider.resolve(sym)
        row_key = (pkey, info.symbol, text, kind)
        found = _row_cache.get(row_key) if cacheable else None
        if found is None:
            try:
                found = _feature_row(provider, info, cut, kind)
            except DataUnavailable as exc:
                found = ("", {}, {"skipped": exc.message})
            if cacheable:
                _row_cache.put(row_key, found)
        when, row, detail = found
        if not when:
            skipped.append({"symbol": info.symbol, "reason": detail["skipped"]})
            continue
        infos.append(info)
        dates.append(when)
        rows.append(row)
        details.append(detail)

    names = FULL_COLUMNS if kind == "full" else BASIC_COLUMNS
    columns: dict[str, np.ndarray] = {}
    for name in names:
        col = np.array([r[name] for r in rows], dtype=np.float64)
        col.setflags(write=False)
        columns[name] = col
    table = FeatureTable(
        kind=kind,
        infos=tuple(infos),
        as_of=tuple(dates),
        columns=columns,
        details=tuple(details),
        skipped=tuple(skipped),
    )
    if cacheable:
        _table_cache.put(table_key, table)
    return table


def scan_signals(table: FeatureTable, scan_type: str) -> dict[str, np.ndarray]:
    """Boolean masks of every signal ``scan_type`` computes, one entry per table row.

    ``basic`` momentum is the 1-month return alone (no MACD without indicators); from
    ``technical`` on it also needs a positive MACD histogram. Unknown values (NaN) never
    raise a signal.
    """
    col = table.columns
    technical = scan_type in ("technical", "comprehensive")
    if technical and table.kind != "full":
        raise ValueError(f"scan_type {scan_type!r} needs a 'full' feature table")
    sig: dict[str, np.ndarray] = {}
    sig["volume_spike"] = col["volume_ratio"] >= VOLUME_SPIKE_RATIO
    momentum = col["return_1m"] >= MOMENTUM_RETURN_1M
    if technical:
        momentum &= col["macd_hist"] > 0
    sig["momentum"] = momentum
    sig["breakout"] = col["price"] > col["high_20_prior"]
    sig["breakdown"] = col["price"] < col["low_20_prior"]
    if technical:
        sig["ma_cross"] = col["ma_cross"] == 1.0
        sig["death_cross"] = col["ma_cross"] == -1.0
        sig["rsi_oversold"] = col["rsi_14"] < RSI_OVERSOLD
        sig["rsi_overbought"] = col["rsi_14"] > RSI_OVERBOUGHT
        sig["trend_up"] = col["trend"] == 1.0
        sig["trend_down"] = col["trend"] == -1.0
    if scan_type == "comprehensive":
        sig["outperforming"] = col["excess_return_3m"] >= RELATIVE_STRENGTH_EDGE
        sig["underperforming"] = col["excess_return_3m"] <= -RELATIVE_STRENGTH_EDGE
    return sig


def symbol_sectors(provider: Any, info: SymbolInfo) -> tuple[str, ...]:
    """Lower-cased sector/industry names of a symbol: the catalogue's, plus the fundamentals'.

    The classification is static (it does not move with as_of), so the later fundamentals
    snapshot is safe to use for it.
    """
    key = (provider_key(provider), info.symbol)
    hit = _sector_cache.get(key)
    if hit is not None:
        return hit
    names = [info.sector, info.industry]
    try:
        fund = provider.fundamentals(info.symbol) or {}
    except Exception:  # optional: a failing provider leaves the catalogue's names
        fund = {}
    names += [fund.get("sector"), fund.get("sub_industry"), fund.get("industry")]
    out = tuple(dict.fromkeys(str(n).strip().lower() for n in names if n))
    _sector_cache.put(key, out)
    return out

"""Evidence a quant would expect, as point-in-time series, and a market's panel of them.

Every signal is a function of one symbol's daily bars up to bar t (and, for the relative
ones, of the other symbols' bars up to the same day), so its value at t is the same whether
or not bars after t exist: rolling windows look back only, and TA-Lib's recursive indicators
are seeded at the first stored bar (see :mod:`tacoreservice.analysis.evidence`). The whole
stored history is therefore computed once per symbol and read at any as_of.

Signals, by family (``xs``: compared across the market's symbols on the same day, as a rank
in [-1, 1]; ``ts``: read on the symbol's own scale, in units of its volatility where it is a
price distance):

==================  ==========  ====  =========================================================
family              signal      kind  value at bar t
==================  ==========  ====  =========================================================
momentum            mom_12_1    xs    return from t-252 to t-21 (12-1 month momentum)
momentum            tsmom       ts    12-month return / annualised volatility
momentum            high_52w    xs    close / highest high of the last 252 bars - 1
reversal            rev_1m      xs    minus the last 21 bars' return (short-term reversal)
trend               trend       ts    (close / SMA200 - 1) / annualised volatility
trend               ma_cross    ts    (SMA50 / SMA200 - 1) / annualised volatility
volatility          low_vol     xs    minus 60-bar annualised volatility
volatility          vol_regime  ts    minus (20-bar / 252-bar volatility - 1)
relative strength   rs_bench    xs    63-bar return minus the market benchmark's
relative strength   rs_sector   xs    63-bar return minus the mean of its sector peers'
regime              market      ts    the benchmark's (close / SMA200 - 1) / its volatility
volume              vol_trend   xs    log(20-bar / 120-bar mean volume)
volume              liquidity   xs    log of the 60-bar mean traded value (close x volume)
technical           rsi         ts    (RSI14 - 50) / 50
technical           macd        ts    MACD histogram / ATR14
==================  ==========  ====  =========================================================

Which of these matter, and with which sign, is not decided here: the calibration
(:mod:`tacoreservice.analysis.calibration`) measures it on each market's history before the
decision date. A signal that cannot be computed (too little history, no sector peers, no
benchmark) is NaN and carries no weight for that symbol and day.

The market panel aligns the universe's symbols on the union of their trading days. A symbol
with no bar on a day (a suspension) keeps its last values; before its first bar and after
its last one it has none, so a series that ends early never looks like a flat price.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import talib
from scipy.stats import rankdata

from tacoreservice.market_data.provider import Bars, provider_key
from tacoreservice.market_data.symbols import SymbolInfo, periods_per_year
from tacoreservice.market_data.universe import universe_infos
from tacoreservice.protocol.errors import DataUnavailable

__all__ = [
    "FAMILIES",
    "HORIZON",
    "SIGNALS",
    "MarketPanel",
    "SignalSpec",
    "clear_panels",
    "market_panel",
    "own_signals",
    "rank_against",
    "symbol_signals",
]

# Forward horizon of every forecast, in bars: a month of trading days (21 for stocks; for
# crypto, which trades every day, 21 days as well, so the two markets' figures compare).
HORIZON = 21
YEAR = 252
_TINY = 1e-12


@dataclass(frozen=True)
class SignalSpec:
    name: str
    family: str
    kind: str  # "xs" (cross-sectional rank) or "ts" (own scale)
    label: str  # how a report names it
    min_bars: int  # bars of history the value needs


SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("mom_12_1", "momentum", "xs", "12-1 month momentum", YEAR + 1),
    SignalSpec("tsmom", "momentum", "ts", "12-month time-series momentum", YEAR + 1),
    SignalSpec("high_52w", "momentum", "xs", "distance to the 52-week high", YEAR),
    SignalSpec("rev_1m", "reversal", "xs", "1-month reversal", 22),
    SignalSpec("trend", "trend", "ts", "price vs SMA200", 200),
    SignalSpec("ma_cross", "trend", "ts", "SMA50 vs SMA200", 200),
    SignalSpec("low_vol", "volatility", "xs", "low volatility", 61),
    SignalSpec("vol_regime", "volatility", "ts", "volatility regime (20 vs 252 bars)", YEAR + 1),
    SignalSpec("rs_bench", "relative_strength", "xs", "3-month return vs the benchmark", 64),
    SignalSpec("rs_sector", "relative_strength", "xs", "3-month return vs sector peers", 64),
    SignalSpec("market", "regime", "ts", "market trend (benchmark vs its SMA200)", 200),
    SignalSpec("vol_trend", "volume", "xs", "volume trend (20 vs 120 bars)", 120),
    SignalSpec("liquidity", "volume", "xs", "traded value (liquidity)", 60),
    SignalSpec("rsi", "technical", "ts", "RSI14 around 50", 15),
    SignalSpec("macd", "technical", "ts", "MACD histogram in ATRs", 35),
)
SIGNAL_BY_NAME: dict[str, SignalSpec] = {s.name: s for s in SIGNALS}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(s.family for s in SIGNALS))


# --- rolling helpers (trailing windows; NaN until the window is full) ----------------------


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(a, np.nan)
    if k < a.shape[0]:
        out[k:] = a[: a.shape[0] - k]
    return out


def _rolling_mean(a: np.ndarray, w: int) -> np.ndarray:
    out = np.full_like(a, np.nan)
    if a.shape[0] < w:
        return out
    c = np.cumsum(np.concatenate([[0.0], a]))
    out[w - 1 :] = (c[w:] - c[:-w]) / w
    return out


def _rolling_std(a: np.ndarray, w: int) -> np.ndarray:
    """Sample standard deviation over the trailing ``w`` values (NaN-free input)."""
    out = np.full_like(a, np.nan)
    if a.shape[0] < w:
        return out
    win = np.lib.stride_tricks.sliding_window_view(a, w)
    out[w - 1 :] = win.std(axis=1, ddof=1)
    return out


def _rolling_max(a: np.ndarray, w: int) -> np.ndarray:
    out = np.full_like(a, np.nan)
    if a.shape[0] < w:
        return out
    out[w - 1 :] = np.lib.stride_tricks.sliding_window_view(a, w).max(axis=1)
    return out


def _returns(close: np.ndarray) -> np.ndarray:
    r = np.zeros_like(close)
    r[1:] = close[1:] / close[:-1] - 1.0
    return r


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[~np.isfinite(out)] = np.nan
    return out


# --- one symbol ---------------------------------------------------------------------------


def symbol_signals(bars: Bars, ppy: float) -> dict[str, np.ndarray]:
    """The own-series signals of one symbol at every bar, plus what the panel needs.

    Returns arrays aligned with ``bars``: every ``ts`` signal, the raw values that the panel
    ranks (``xs``), and ``ret_63`` (63-bar return, for the relative-strength signals),
    ``vol_ann`` (60-bar annualised volatility, the forecast's unit) and ``close``.
    """
    close = np.array(bars.close, dtype=np.float64)  # a copy: the result may be edited
    high = np.asarray(bars.high, dtype=np.float64)
    low = np.asarray(bars.low, dtype=np.float64)
    volume = np.asarray(bars.volume, dtype=np.float64)
    r = _returns(close)
    ann = math.sqrt(ppy)
    vol60 = _rolling_std(r, 60) * ann
    vol20 = _rolling_std(r, 20) * ann
    vol252 = _rolling_std(r, YEAR) * ann
    sma50 = _rolling_mean(close, 50)
    sma200 = _rolling_mean(close, 200)
    ret_252 = _ratio(close, _shift(close, YEAR)) - 1.0
    out: dict[str, np.ndarray] = {
        "close": close,
        "vol_ann": vol60,
        "ret_63": _ratio(close, _shift(close, 63)) - 1.0,
        "mom_12_1": _ratio(_shift(close, HORIZON), _shift(close, YEAR)) - 1.0,
        "tsmom": _ratio(ret_252, vol252),
        "high_52w": _ratio(close, _rolling_max(high, YEAR)) - 1.0,
        "rev_1m": -(_ratio(close, _shift(close, HORIZON)) - 1.0),
        "trend": np.clip(_ratio(_ratio(close, sma200) - 1.0, vol60), -4.0, 4.0),
        "ma_cross": np.clip(_ratio(_ratio(sma50, sma200) - 1.0, vol60), -4.0, 4.0),
        "low_vol": -vol60,
        "vol_regime": -np.clip(_ratio(vol20, vol252) - 1.0, -1.0, 3.0),
        "vol_trend": np.log(_ratio(_rolling_mean(volume, 20), _rolling_mean(volume, 120))),
        "liquidity": np.log(_rolling_mean(close * volume, 60)),
    }
    if close.shape[0] >= 15:
        rsi = talib.RSI(close, timeperiod=14)
        out["rsi"] = (rsi - 50.0) / 50.0
    else:
        out["rsi"] = np.full_like(close, np.nan)
    if close.shape[0] >= 35:
        _m, _s, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
        atr = talib.ATR(high, low, close, timeperiod=14)
        out["macd"] = np.clip(_ratio(hist, atr), -3.0, 3.0)
    else:
        out["macd"] = np.full_like(close, np.nan)
    for key, value in out.items():
        value[~np.isfinite(value)] = np.nan
        out[key] = value
    return out


def _market_signal(bars: Bars, ppy: float) -> np.ndarray:
    close = np.asarray(bars.close, dtype=np.float64)
    vol = _rolling_std(_returns(close), 60) * math.sqrt(ppy)
    value = np.clip(_ratio(_ratio(close, _rolling_mean(close, 200)) - 1.0, vol), -4.0, 4.0)
    value[~np.isfinite(value)] = np.nan
    return value


# --- the market panel -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MarketPanel:
    """A market's universe on one calendar: signal inputs (``days`` x ``symbols``) per name.

    ``inputs[name]`` holds what the model reads: ranks in [-1, 1] for ``xs`` signals, own-scale
    values for ``ts`` ones (NaN = not available). ``raw`` holds the unranked values (reports
    quote them). ``close`` is NaN outside each symbol's own first..last bar.
    """

    market: str
    benchmark: str | None
    days: np.ndarray  # datetime64[D], ascending
    symbols: tuple[str, ...]
    sectors: tuple[str | None, ...]
    close: np.ndarray
    vol_ann: np.ndarray
    inputs: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    ppy: float
    ret63: np.ndarray  # each symbol's 63-bar return (the relative-strength signals' base)
    bench_ret63: np.ndarray  # the benchmark's 63-bar return per day (NaN without one)
    bench_trend: np.ndarray  # the ``market`` signal per day

    def day_index(self, day: np.datetime64) -> int:
        """Index of the last panel day at or before ``day`` (-1 when none)."""
        return int(np.searchsorted(self.days, day, side="right")) - 1

    def month_ends(self) -> np.ndarray:
        """Indices of the last panel day of each calendar month."""
        months = self.days.astype("datetime64[M]")
        last = np.flatnonzero(months[1:] != months[:-1])
        return np.append(last, self.days.shape[0] - 1) if self.days.shape[0] else last

    def forward_return(self, k: int, horizon: int = HORIZON) -> np.ndarray:
        """Each symbol's return from day ``k`` to day ``k + horizon`` (NaN past the data)."""
        if k + horizon >= self.days.shape[0]:
            return np.full(len(self.symbols), np.nan)
        return _ratio(self.close[k + horizon], self.close[k]) - 1.0


def _align(days: np.ndarray, own_days: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (on ``own_days``) on the panel calendar: last value carried over the
    symbol's own missing days, NaN before its first bar and after its last."""
    pos = np.searchsorted(own_days, days, side="right") - 1
    out = np.where(pos >= 0, values[np.maximum(pos, 0)], np.nan)
    out[days > own_days[-1]] = np.nan
    return out


def _xs_rank(values: np.ndarray) -> np.ndarray:
    """Per row, the rank of each finite value scaled to [-1, 1] (ties share the mean rank);
    a row with fewer than two values has no ranks."""
    ranks = rankdata(values, axis=1, nan_policy="omit")  # 1..n among the finite, NaN elsewhere
    n = np.isfinite(values).sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (ranks - 1.0) / (n - 1.0) * 2.0 - 1.0
    out[np.broadcast_to(n < 2, out.shape)] = np.nan
    return out


def rank_against(values: np.ndarray, value: float) -> float:
    """Where ``value`` falls among ``values`` (finite ones), on the same [-1, 1] scale as
    the panel's ranks, for a symbol that is not itself in the cross-section."""
    vals = values[np.isfinite(values)]
    if vals.shape[0] < 2 or not math.isfinite(value):
        return math.nan
    below = float(np.sum(vals < value)) + 0.5 * float(np.sum(vals == value))
    return below / vals.shape[0] * 2.0 - 1.0


_panels: dict[tuple[str, str], MarketPanel] = {}
_signal_cache: dict[tuple[str, str], tuple[np.ndarray, dict[str, np.ndarray]]] = {}
_lock = threading.Lock()


def clear_panels() -> None:
    with _lock:
        _panels.clear()
        _signal_cache.clear()


def own_signals(provider: Any, info: SymbolInfo) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(days, signals) of one symbol over its whole stored daily history, cached."""
    key = (provider_key(provider), info.symbol)
    with _lock:
        hit = _signal_cache.get(key)
    if hit is not None:
        return hit
    bars = provider.bars(info.symbol, "1d")
    days = bars.time.astype("datetime64[D]")
    found = (days, symbol_signals(bars, periods_per_year(info.market, "1d")))
    with _lock:
        _signal_cache[key] = found
    return found


def _sector_strength(ret63: np.ndarray, sectors: Sequence[str | None]) -> np.ndarray:
    """Each symbol's 63-bar return minus its sector peers' mean (needs two or more peers)."""
    out = np.full_like(ret63, np.nan)
    groups: dict[str, list[int]] = {}
    for j, sector in enumerate(sectors):
        if sector:
            groups.setdefault(sector, []).append(j)
    for members in groups.values():
        if len(members) < 3:
            continue
        block = ret63[:, members]
        ok = np.isfinite(block)
        total = np.where(ok, block, 0.0).sum(axis=1, keepdims=True)
        count = ok.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            peers = (total - np.where(ok, block, 0.0)) / (count - ok)
        peers[(count - ok) < 2] = np.nan
        out[:, members] = np.where(ok, block - peers, np.nan)
    return out


def market_panel(provider: Any, market: str) -> MarketPanel:
    """The panel of ``market``'s universe over the provider's whole stored history, cached.

    Raises DataUnavailable when the market has no symbol with daily bars.
    """
    key = (provider_key(provider), market)
    with _lock:
        hit = _panels.get(key)
    if hit is not None:
        return hit
    infos = universe_infos(provider, market)
    series: list[tuple[SymbolInfo, np.ndarray, dict[str, np.ndarray]]] = []
    for info in infos:
        try:
            days, sig = own_signals(provider, info)
        except DataUnavailable:
            continue
        if days.shape[0]:
            series.append((info, days, sig))
    if not series:
        raise DataUnavailable(f"no {market} symbols with daily bars to calibrate on")
    calendar = np.unique(np.concatenate([d for _, d, _ in series]))
    ppy = periods_per_year(market, "1d")

    def stack(name: str) -> np.ndarray:
        return np.stack([_align(calendar, d, s[name]) for _, d, s in series], axis=1)

    raw: dict[str, np.ndarray] = {}
    for spec in SIGNALS:
        if spec.name in ("rs_bench", "rs_sector", "market"):
            continue
        raw[spec.name] = stack(spec.name)
    ret63 = stack("ret_63")
    benchmark = _benchmark(provider, market)
    bench_ret63 = np.full(calendar.shape[0], np.nan)
    bench_trend = np.full(calendar.shape[0], np.nan)
    if benchmark is not None:
        bdays, bsig = own_signals(provider, provider.resolve(benchmark))
        bench_ret63 = _align(calendar, bdays, bsig["ret_63"])
        bbars = provider.bars(benchmark, "1d")
        bench_trend = _align(calendar, bdays, _market_signal(bbars, ppy))
    raw["rs_bench"] = ret63 - bench_ret63[:, None]
    sectors = tuple(info.sector for info, _, _ in series)
    raw["rs_sector"] = _sector_strength(ret63, sectors)
    present = np.isfinite(stack("close"))
    raw["market"] = np.where(present, bench_trend[:, None], np.nan)
    inputs = {
        spec.name: _xs_rank(raw[spec.name]) if spec.kind == "xs" else raw[spec.name]
        for spec in SIGNALS
    }
    panel = MarketPanel(
        market=market,
        benchmark=benchmark,
        days=calendar,
        symbols=tuple(info.symbol for info, _, _ in series),
        sectors=sectors,
        close=stack("close"),
        vol_ann=stack("vol_ann"),
        inputs=inputs,
        raw=raw,
        ppy=ppy,
        ret63=ret63,
        bench_ret63=bench_ret63,
        bench_trend=bench_trend,
    )
    with _lock:
        _panels[key] = panel
    return panel


def _benchmark(provider: Any, market: str) -> str | None:
    try:
        name = provider.benchmark_for(market)
        info = provider.resolve(name)
    except Exception:  # a user's folder may have no benchmark: the relative signals go
        return None
    return info.symbol if "1d" in info.timeframes else None

"""Evidence: the numbers every analysis role and the scanner stand on, from point-in-time bars.

:func:`compute_evidence` turns one symbol's bars (as seen at ``as_of``) into a JSON-ready dict:
TA-Lib indicators, returns, risk, relative strength against the market's benchmark (SPY,
CSI300, BTCUSDT) and the provider's fundamentals. Every number comes from the data; a value
that cannot be computed is ``None`` and is listed under ``missing`` with the reason, so an
analyst can say "no data" instead of guessing. News and sentiment are never available offline
and are always listed there.

Point-in-time: the bars come from ``provider.bars(symbol, timeframe, as_of)``, which never
returns a bar after ``as_of``, and every indicator is read at the last visible bar. The only
input that may not be point-in-time is ``fundamentals``: the bundled ones are a single later
snapshot, kept with their ``snapshot_date`` / ``point_in_time: false`` flags. Whether they may
be used at an as_of is decided by :func:`fundamentals_usable` (point-in-time, or a snapshot
dated on or before the last bar); when not, ``missing`` says so, and the analysts must not
score them (they stay in the evidence only so that a reader sees what was left out).

Conventions:

* Fractions for returns, volatility, drawdown and excess return (0.05 = 5%); ``*_pct`` fields
  (``change_pct``, ``atr_pct``, ``pct_from_52w_high``) are percent, as ``get.market_data``'s.
* Periods per year: 252 for stock daily bars (trading days) and 365 for crypto, which trades
  every day; 52 for weekly bars. Return horizons are calendar spans (7, 30, 91, 365 days)
  converted to bars with those rates, which gives the usual 5/21/63/252 bars for stocks and
  7/30/91/365 for crypto, so "1m" means one month in both markets. ``volatility_20d_ann``
  uses the last 20 bars of the requested timeframe (20 days on daily bars).
* Recursive indicators (EMA, MACD, RSI, ATR, ADX, KDJ) are seeded at the first stored bar, as
  TA-Lib does. Truncating the history at its end (what ``as_of`` does) cannot change them.
* KDJ is the A-share convention (RSV over 9 bars, K and D smoothed with weight 1/3, J = 3K-2D).
  TA-Lib's EMA with period 5 has exactly that weight; it is seeded with an SMA rather than
  K = 50, a difference that shrinks by 2/3 per bar and is invisible after a few dozen bars.

The second half of the module holds the universe-scan helpers used by ``scan.market``: one
row of features per symbol (computed once per symbol and as_of, then cached for the process)
stacked into numpy columns, and the signal masks computed on those columns in one pass.
"""

from __future__ import annotations

import datetime
import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import orjson
import talib

from tacoreservice.analysis.forecast import forecast
from tacoreservice.market_data.provider import (
    AsOf,
    AsOfLike,
    Bars,
    parse_as_of,
    provider_key,
)
from tacoreservice.market_data.symbols import SymbolInfo, normalize_timeframe, periods_per_year
from tacoreservice.protocol.errors import DataUnavailable, ServiceError

__all__ = [
    "HORIZON_DAYS",
    "LRU",
    "clear_caches",
    "compute_evidence",
    "fundamentals_usable",
    "horizon_bars",
    "iso_date",
    "periods_per_year",
    "price_volume_features",
    "provider_key",
]

HORIZON_DAYS: dict[str, int] = {"1w": 7, "1m": 30, "3m": 91, "1y": 365}

_INTRADAY = ("1h", "4h")

MA_CROSS_LOOKBACK = 10  # bars in which an SMA50/SMA200 crossing counts as recent
TREND_MIN_ADX = 20.0  # below this ADX the market is treated as trendless
_DECIMALS = 6

# Signal thresholds (shared by the scanner and anyone reading evidence).
VOLUME_SPIKE_RATIO = 2.0
MOMENTUM_RETURN_1M = 0.05
RSI_OVERSOLD = 30.0
RSI_OVERBOUGHT = 70.0
RELATIVE_STRENGTH_EDGE = 0.05


def horizon_bars(ppy: float, days: int) -> int:
    """Bars spanning ``days`` calendar days at ``ppy`` bars per year (at least one)."""
    return max(1, round(days * ppy / 365.0))


# --- small helpers -------------------------------------------------------------------------


class LRU:
    """A thread-safe bounded mapping; evicts the least recently used entry."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_evidence_cache = LRU(1024)


def clear_caches() -> None:
    """Forget every cached evidence dict (tests, benchmarks; the universe scan's rows and
    tables: :func:`tacoreservice.analysis.universe.clear_caches`)."""
    _evidence_cache.clear()


def _num(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return round(f, _DECIMALS) if math.isfinite(f) else None


def _last(a: np.ndarray) -> float:
    return float(a[-1]) if a.shape[0] else math.nan


def iso_date(t: np.datetime64, timeframe: str) -> str:
    if timeframe in _INTRADAY:
        return f"{np.datetime_as_string(t, unit='s')}Z"
    return str(np.datetime_as_string(t, unit="D"))


def _ret(close: np.ndarray, h: int) -> float:
    if close.shape[0] <= h:
        return math.nan
    base = float(close[-1 - h])
    return float(close[-1]) / base - 1.0 if base > 0 else math.nan


def _max_drawdown(close: np.ndarray) -> float:
    if close.shape[0] < 2:
        return math.nan
    peak = np.maximum.accumulate(close)
    return float(np.min(close / peak - 1.0))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    return str(value)


# --- price and volume features (numpy only) ------------------------------------------------


def price_volume_features(bars: Bars, ppy: float) -> dict[str, float]:
    """Features needing no indicator library; NaN where the history is too short.

    ``avg_volume_20`` is the mean of the 20 bars *before* the last one, so a volume spike is
    measured against a baseline it does not inflate; ``high_20_prior``/``low_20_prior`` are the
    range of those same 20 bars (a breakout is a close above the prior range).
    """
    c, v = bars.close, bars.volume
    n = c.shape[0]
    prev = float(c[-2]) if n >= 2 else math.nan
    last = float(c[-1])
    out = {
        "price": last,
        "change_pct": (last / prev - 1.0) * 100.0 if prev > 0 else math.nan,
        "volume": float(v[-1]),
        "avg_volume_20": math.nan,
        "volume_ratio": math.nan,
        "high_20_prior": math.nan,
        "low_20_prior": math.nan,
    }
    if n >= 21:
        avg = float(np.mean(v[-21:-1]))
        out["avg_volume_20"] = avg
        out["volume_ratio"] = float(v[-1]) / avg if avg > 0 else math.nan
        out["high_20_prior"] = float(np.max(bars.high[-21:-1]))
        out["low_20_prior"] = float(np.min(bars.low[-21:-1]))
    for name, days in HORIZON_DAYS.items():
        out[f"return_{name}"] = _ret(c, horizon_bars(ppy, days))
    return out


# --- evidence ------------------------------------------------------------------------------


def compute_evidence(
    provider: Any, symbol: str, as_of: AsOfLike = None, timeframe: str = "1d"
) -> dict[str, Any]:
    """The evidence dict of ``symbol`` at ``as_of`` (see the module docstring for units).

    Raises what the provider raises: ``InvalidParams`` for an unknown symbol or timeframe,
    ``DataUnavailable`` when there is no bar at or before ``as_of``.

    Results are cached in-process by the bars they come from (provider, symbol, timeframe and
    the last bar's time, count, close and volume), so repeated calls for the same as_of cost a
    lookup and a fresh copy, and a live provider's new bar is never answered from the cache.
    """
    info: SymbolInfo = provider.resolve(symbol)
    tf = normalize_timeframe(timeframe)
    cut = parse_as_of(as_of)
    bars: Bars = provider.bars(info.symbol, tf, cut)
    key = (
        provider_key(provider),
        info.symbol,
        bars.timeframe,
        int(bars.time[-1].astype(np.int64)),
        len(bars),
        bars.close[-1:].tobytes() + bars.volume[-1:].tobytes(),
    )
    raw = _evidence_cache.get(key)
    if raw is None:
        raw = orjson.dumps(_json_safe(_build_evidence(provider, info, bars, cut)))
        _evidence_cache.put(key, raw)
    result: dict[str, Any] = orjson.loads(raw)
    return result


def _build_evidence(
    provider: Any, info: SymbolInfo, bars: Bars, as_of: AsOf | None
) -> dict[str, Any]:
    tf = bars.timeframe
    n = len(bars)
    ppy = periods_per_year(info.market, tf)
    h = {name: horizon_bars(ppy, days) for name, days in HORIZON_DAYS.items()}
    when = iso_date(bars.time[-1], tf)
    missing: list[dict[str, str]] = []

    def too_short(what: str, need: int) -> None:
        missing.append(
            {"what": what, "why": f"needs at least {need} {tf} bars; {n} available up to {when}"}
        )

    pv = price_volume_features(bars, ppy)
    technical, needs = _technical(bars, pv, h["1y"])
    for name, value in technical.items():
        need = needs.get(name)
        if value is None and need is not None:
            if n < need:
                too_short(f"technical.{name}", need)
            elif name != "ma_cross":  # no crossing is a valid answer, not a gap
                missing.append(
                    {
                        "what": f"technical.{name}",
                        "why": "not computable from the data at this bar (zero range or "
                        "missing values)",
                    }
                )

    returns: dict[str, float | None] = {}
    for name, bars_back in h.items():
        returns[name] = _num(pv[f"return_{name}"])
        if returns[name] is None and n <= bars_back:
            too_short(f"returns.{name}", bars_back + 1)

    risk = _risk(bars.close, ppy, h["1y"])
    for name, need in (
        ("volatility_20d_ann", 21),
        ("volatility_1y_ann", h["1y"] + 1),
        ("max_drawdown_1y", h["1y"] + 1),
        ("max_drawdown_all", 2),
    ):
        if risk[name] is None and n < need:
            too_short(f"risk.{name}", need)

    relative = _relative_strength(provider, info, bars, as_of, h, missing)
    fundamentals = _fundamentals(provider, info, when, missing)
    outlook = _forecast(provider, info, bars, as_of, missing)

    missing.append(
        {"what": "news", "why": "no news source is available offline; nothing is assumed"}
    )
    missing.append(
        {"what": "sentiment", "why": "no sentiment source is available offline; nothing is assumed"}
    )
    return {
        "symbol": info.symbol,
        "market": info.market,
        "kind": info.kind,
        "name": info.name,
        "currency": info.currency,
        "timeframe": tf,
        "as_of": when,
        "bars": n,
        "price": _num(pv["price"]),
        "change_pct": _num(pv["change_pct"]),
        "technical": technical,
        "returns": returns,
        "risk": risk,
        "relative_strength": relative,
        "fundamentals": fundamentals,
        "forecast": outlook,
        "missing": missing,
    }


def _forecast(
    provider: Any, info: SymbolInfo, bars: Bars, as_of: AsOf | None, missing: list[dict[str, str]]
) -> dict[str, Any]:
    """The calibrated one-month forecast at the last daily bar visible at as_of."""
    if bars.timeframe == "1d":
        day = bars.time[-1].astype("datetime64[D]")
    else:
        # Intraday: the daily bar of as_of's own day has not closed yet, so the forecast
        # stands on the day before.
        cut = None if as_of is None else str(as_of.day - np.timedelta64(1, "D"))
        try:
            day = provider.bars(info.symbol, "1d", cut).time[-1].astype("datetime64[D]")
        except ServiceError as exc:
            why = f"the forecast works on daily bars: {exc.message}"
            missing.append({"what": "forecast", "why": why})
            return {"available": False, "why": why}
    try:
        out = forecast(provider, info, day)
    except DataUnavailable as exc:
        out = {"available": False, "why": exc.message}
    if not out.get("available"):
        missing.append({"what": "forecast", "why": str(out.get("why"))})
    return out


def _technical(
    bars: Bars, pv: Mapping[str, float], h1y: int
) -> tuple[dict[str, Any], dict[str, int]]:
    """Indicators at the last bar, and the bars each one needs (TA-Lib lookback + 1)."""
    hi, lo, c, v = bars.high, bars.low, bars.close, bars.volume
    n = c.shape[0]
    out: dict[str, Any] = {}
    need: dict[str, int] = {}

    def put(name: str, value: float, bars_needed: int) -> None:
        out[name] = _num(value)
        need[name] = bars_needed

    sma = {p: talib.SMA(c, timeperiod=p) for p in (20, 50, 200)}
    for p in (20, 50, 200):
        put(f"sma_{p}", _last(sma[p]), p)
    for p in (20, 50, 200):
        put(f"ema_{p}", _last(talib.EMA(c, timeperiod=p)), p)
    macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    put("macd", _last(macd), 34)
    put("macd_signal", _last(signal), 34)
    put("macd_hist", _last(hist), 34)
    put("rsi_14", _last(talib.RSI(c, timeperiod=14)), 15)

    upper, middle, lower = talib.BBANDS(
        c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=talib.MA_Type.SMA
    )
    bu, bm, bl, last = _last(upper), _last(middle), _last(lower), float(c[-1])
    put("bb_upper", bu, 20)
    put("bb_middle", bm, 20)
    put("bb_lower", bl, 20)
    put("bb_pct_b", (last - bl) / (bu - bl) if bu > bl else math.nan, 20)
    put("bb_width", (bu - bl) / bm if bm > 0 else math.nan, 20)

    atr = _last(talib.ATR(hi, lo, c, timeperiod=14))
    put("atr_14", atr, 15)
    put("atr_pct", atr / last * 100.0 if last > 0 else math.nan, 15)
    adx = _last(talib.ADX(hi, lo, c, timeperiod=14))
    put("adx_14", adx, 28)
    put("plus_di", _last(talib.PLUS_DI(hi, lo, c, timeperiod=14)), 15)
    put("minus_di", _last(talib.MINUS_DI(hi, lo, c, timeperiod=14)), 15)

    obv = talib.OBV(c, v)
    put("obv", _last(obv), 1)
    put("obv_slope_20", _last(talib.LINEARREG_SLOPE(obv, timeperiod=20)), 20)

    k, d = talib.STOCH(
        hi,
        lo,
        c,
        fastk_period=9,
        slowk_period=5,
        slowk_matype=talib.MA_Type.EMA,
        slowd_period=5,
        slowd_matype=talib.MA_Type.EMA,
    )
    kl, dl = _last(k), _last(d)
    put("stoch_k", kl, 17)
    put("stoch_d", dl, 17)
    put("kdj_j", 3.0 * kl - 2.0 * dl, 17)

    put("volume", pv["volume"], 1)
    put("avg_volume_20", pv["avg_volume_20"], 21)
    put("volume_ratio", pv["volume_ratio"], 21)

    if n >= h1y:
        high52, low52 = float(np.max(hi[-h1y:])), float(np.min(lo[-h1y:]))
    else:
        high52 = low52 = math.nan
    put("high_52w", high52, h1y)
    put("low_52w", low52, h1y)
    put("pct_from_52w_high", (last / high52 - 1.0) * 100.0 if high52 > 0 else math.nan, h1y)

    out["ma_cross"] = _ma_cross(sma[50], sma[200])
    need["ma_cross"] = 200 + MA_CROSS_LOOKBACK

    # Trend rule: "up" when close > SMA50 > SMA200 and ADX14 >= 20 (ordered averages and a
    # measurable trend strength), "down" for the mirror image, otherwise "sideways" (mixed
    # ordering, or ADX below 20 meaning no trend worth the name). None without SMA200/ADX.
    s50, s200 = out["sma_50"], out["sma_200"]
    adx_v = out["adx_14"]
    if s50 is None or s200 is None or adx_v is None:
        trend = None
    elif adx_v >= TREND_MIN_ADX and last > s50 > s200:
        trend = "up"
    elif adx_v >= TREND_MIN_ADX and last < s50 < s200:
        trend = "down"
    else:
        trend = "sideways"
    out["trend"] = trend
    need["trend"] = 200
    return out, need


def _ma_cross(sma50: np.ndarray, sma200: np.ndarray) -> str | None:
    """'golden'/'death' when SMA50 crossed SMA200 within the last 10 bars (latest crossing)."""
    window = MA_CROSS_LOOKBACK + 1
    if sma200.shape[0] < window:
        return None
    diff = sma50[-window:] - sma200[-window:]
    if not np.isfinite(diff).all():
        return None
    above = diff > 0
    changes = np.flatnonzero(above[1:] != above[:-1])
    if changes.size == 0:
        return None
    return "golden" if above[changes[-1] + 1] else "death"


def _risk(close: np.ndarray, ppy: float, h1y: int) -> dict[str, float | None]:
    # Log returns, sample standard deviation, annualised with sqrt(periods per year).
    n = close.shape[0]
    logret = np.diff(np.log(close)) if n >= 2 else np.empty(0)
    vol20 = float(np.std(logret[-20:], ddof=1)) * math.sqrt(ppy) if n >= 21 else math.nan
    vol1y = float(np.std(logret[-h1y:], ddof=1)) * math.sqrt(ppy) if n >= h1y + 1 else math.nan
    # Close-to-close drawdowns: the daily lows would overstate what a holder could realise.
    dd1y = _max_drawdown(close[-(h1y + 1) :]) if n >= h1y + 1 else math.nan
    return {
        "volatility_20d_ann": _num(vol20),
        "volatility_1y_ann": _num(vol1y),
        "max_drawdown_1y": _num(dd1y),
        "max_drawdown_all": _num(_max_drawdown(close)),
    }


def _relative_strength(
    provider: Any,
    info: SymbolInfo,
    bars: Bars,
    as_of: AsOf | None,
    h: Mapping[str, int],
    missing: list[dict[str, str]],
) -> dict[str, Any]:
    benchmark = provider.benchmark_for(info.market)
    out: dict[str, Any] = {
        "benchmark": benchmark,
        "excess_return_3m": None,
        "excess_return_1y": None,
        "beta_1y": None,
        "correlation_1y": None,
    }
    if info.symbol == benchmark:
        out["note"] = (
            f"{benchmark} is the {info.market} benchmark itself; relative strength against "
            "itself is not meaningful"
        )
        return out
    try:
        bench = provider.bars(benchmark, bars.timeframe, as_of)
    except ServiceError as exc:
        out["note"] = f"benchmark {benchmark} unavailable: {exc.message}"
        missing.append({"what": "relative_strength", "why": out["note"]})
        return out
    # Align on the dates both have, so a holiday in one calendar never pairs unrelated days.
    common, ia, ib = np.intersect1d(bars.time, bench.time, assume_unique=True, return_indices=True)
    cs, cb = bars.close[ia], bench.close[ib]
    m = common.shape[0]
    if m and common[-1] != bars.time[-1]:
        out["note"] = (
            f"measured on common dates up to {iso_date(common[-1], bars.timeframe)}: {benchmark} "
            f"has no bars after it (the symbol's last bar is {iso_date(bars.time[-1], bars.timeframe)})"
        )
    for name, key in (("3m", "excess_return_3m"), ("1y", "excess_return_1y")):
        hb = h[name]
        if m > hb:
            out[key] = _num(_ret(cs, hb) - _ret(cb, hb))
        else:
            missing.append(
                {
                    "what": f"relative_strength.{key}",
                    "why": f"needs {hb + 1} bars in common with {benchmark}; {m} available",
                }
            )
    h1y = h["1y"]
    if m > h1y:
        rs = cs[-(h1y + 1) :]
        rb = cb[-(h1y + 1) :]
        xs, xb = rs[1:] / rs[:-1] - 1.0, rb[1:] / rb[:-1] - 1.0
        var_b = float(np.var(xb, ddof=1))
        sd_s = float(np.std(xs, ddof=1))
        if var_b > 0 and sd_s > 0:
            cov = float(np.cov(xs, xb, ddof=1)[0, 1])
            out["beta_1y"] = _num(cov / var_b)
            out["correlation_1y"] = _num(cov / (math.sqrt(var_b) * sd_s))
    else:
        for key in ("beta_1y", "correlation_1y"):
            missing.append(
                {
                    "what": f"relative_strength.{key}",
                    "why": f"needs {h1y + 1} bars in common with {benchmark}; {m} available",
                }
            )
    return out


_NO_FUNDAMENTALS = {
    "crypto": "crypto assets have no company fundamentals",
    "etf": "ETFs have no company fundamentals in the data",
    "index": "indices have no company fundamentals in the data",
}


def fundamentals_usable(fund: Mapping[str, Any] | None, as_of: Any) -> tuple[bool, str | None]:
    """Whether ``fund`` may be scored at ``as_of`` (the date of the last bar used), and why not.

    Point-in-time figures (``point_in_time: true``) may always be used. Otherwise the figures
    are a snapshot, and a snapshot may be used only at or after its ``snapshot_date``: before
    that date its figures were not yet known, so using them would leak the future. A snapshot
    without a (readable) date cannot be placed in time and is not used.
    """
    if not isinstance(fund, Mapping):
        return False, "no fundamentals"
    if fund.get("point_in_time") is True:
        return True, None
    when = _date_of(as_of)
    snapshot = fund.get("snapshot_date")
    if not snapshot:
        return False, (
            f"the fundamentals are not point-in-time and carry no snapshot date, so they cannot "
            f"be placed before as_of {when or as_of}; using them could leak the future"
        )
    snap = _date_of(snapshot)
    if snap is None or when is None:
        return False, (
            f"the fundamentals snapshot date {snapshot!r} cannot be compared with as_of "
            f"{as_of!r}; using the snapshot could leak the future"
        )
    if snap > when:
        return False, (
            f"fundamentals snapshot dated {snapshot} is after as_of {when}; using it would leak "
            "the future"
        )
    return True, None


def _date_of(value: Any) -> str | None:
    """The ISO date (YYYY-MM-DD) at the start of ``value``, or None when it has none."""
    text = str(value or "")[:10]
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        return None


def _fundamentals(
    provider: Any, info: SymbolInfo, when: str, missing: list[dict[str, str]]
) -> dict[str, Any] | None:
    try:
        found = provider.fundamentals(info.symbol)
    except ServiceError as exc:
        missing.append({"what": "fundamentals", "why": exc.message})
        return None
    except Exception as exc:  # fundamentals are optional: a provider bug must not fail it all
        missing.append(
            {
                "what": "fundamentals",
                "why": f"the provider failed to return fundamentals ({type(exc).__name__})",
            }
        )
        return None
    if not found:
        why = _NO_FUNDAMENTALS.get(info.kind, "the provider has no fundamentals for this symbol")
        missing.append({"what": "fundamentals", "why": why})
        return None
    fund = dict(found)
    # A-share classification lives in "industry", US GICS in "sector".
    label = "industry" if info.market == "cn" else "sector"
    wanted = ("pe_ratio", "eps", "market_cap", label)
    for field in wanted:
        if fund.get(field) is None:
            why = (
                "no A-share valuation data is bundled (classification only)"
                if info.market == "cn" and field != "industry"
                else "not in the provider's fundamentals snapshot"
            )
            missing.append({"what": f"fundamentals.{field}", "why": why})
    usable, why_not = fundamentals_usable(fund, when)
    if not usable:
        missing.append({"what": "point-in-time fundamentals", "why": str(why_not)})
    return fund

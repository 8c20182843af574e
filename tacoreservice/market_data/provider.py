"""The market data interface, the bar container and the provider families.

Providers follow the dramatiq broker pattern: one base class per backend family, chosen by
name from the settings (``market_data.provider``). ``bundled`` (real history shipped in the
package, offline) is the default and the reference implementation; ``yfinance``, ``akshare`` and
``ccxt`` are optional extras whose libraries are imported only when that provider is chosen.

Time semantics shared by every provider:

* Bar times are bar-open times: a trading date for daily bars (exchange-local), a UTC instant
  for intraday bars. Weekly bars are labelled with the Monday of their week, 4h bars with the
  start of their UTC 4-hour block (00, 04, ... as Binance does).
* ``as_of`` makes an answer point-in-time. For daily and weekly bars every bar dated on or
  before the as_of day is visible. For intraday bars a bar is visible once it has *closed*
  (open time + duration <= as_of), so an as_of of 10:30 never sees the 10:00-11:00 bar; a bare
  date means the end of that day. Weekly and 4h bars are aggregated from the visible native
  bars only, so the last one may be a period still in progress at as_of (week-to-date), as on
  a live chart, but never contains data from after as_of.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from tacoreservice.market_data.symbols import (
    SymbolInfo,
    benchmark_for,
    normalize_timeframe,
)
from tacoreservice.protocol.errors import (
    DataUnavailable,
    InvalidParams,
)

__all__ = [
    "AsOf",
    "AsOfLike",
    "Bars",
    "BaseProvider",
    "MarketDataProvider",
    "PROVIDERS",
    "aggregate",
    "check_as_of_text",
    "is_static",
    "load_provider",
    "parse_as_of",
    "point_in_time",
    "provider_key",
]

# Which stored series a requested timeframe is computed from.
NATIVE_FOR: dict[str, str] = {"1h": "1h", "4h": "1h", "1d": "1d", "1w": "1d"}
_INTRADAY_SECONDS: dict[str, int] = {"1h": 3600, "4h": 4 * 3600}
_DAY = np.timedelta64(1, "D")


@dataclass(frozen=True, eq=False)
class Bars:
    """OHLCV bars of one symbol, oldest first. Arrays are read-only views of shared data."""

    time: np.ndarray  # datetime64[s]
    open: np.ndarray  # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    symbol: str
    market: str
    timeframe: str
    # True when the source's last bar was incomplete (intraday/partial) and was removed from
    # this answer, which would otherwise have included it.
    partial_bar_dropped: bool = False

    def __post_init__(self) -> None:
        n = self.time.shape[0]
        for name in ("open", "high", "low", "close", "volume"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"Bars.{name} has a different length than Bars.time")

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def tail(self, n: int) -> Bars:
        """The last ``n`` bars (all of them when there are fewer)."""
        start = max(len(self) - max(int(n), 0), 0)
        return replace(
            self,
            time=self.time[start:],
            open=self.open[start:],
            high=self.high[start:],
            low=self.low[start:],
            close=self.close[start:],
            volume=self.volume[start:],
        )


@dataclass(frozen=True)
class AsOf:
    """A parsed as_of: the calendar day (daily cut-off) and the UTC instant (intraday cut-off)."""

    day: np.datetime64  # datetime64[D]
    instant: np.datetime64  # datetime64[s], naive UTC
    text: str  # canonical spelling, used in cache keys and messages


AsOfLike = date | datetime | str | AsOf | None


# Dates outside these years are typing mistakes (0001-01-01, 9999-12-31), not requests: no
# provider has bars there, and shifting such a date by a day or a time zone overflows Python's
# datetime.
AS_OF_MIN_YEAR = 1900
AS_OF_MAX_YEAR = 2100
_AS_OF_HINT = "use e.g. 2024-01-31 or 2024-01-31T15:00:00Z"


def _parse_iso(text: str) -> date | datetime:
    """An ISO 8601 date or datetime within the allowed years; ValueError (field-neutral)."""
    try:
        if len(text) <= 10 and "T" not in text and ":" not in text:
            parsed: date | datetime = date.fromisoformat(text)
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not an ISO date or datetime; {_AS_OF_HINT}") from None
    _check_year(parsed)
    return parsed


def _check_year(parsed: date) -> None:
    if not AS_OF_MIN_YEAR <= parsed.year <= AS_OF_MAX_YEAR:
        raise ValueError(
            f"{parsed.isoformat()} is outside the years {AS_OF_MIN_YEAR} to {AS_OF_MAX_YEAR}; "
            f"{_AS_OF_HINT}"
        )


def check_as_of_text(value: str) -> str:
    """``value`` unchanged if it is an ISO date/datetime in range; ValueError otherwise.

    For params models: the error names the field (as_of, start, end, to) through pydantic.
    """
    text = value.strip()
    if text:
        _parse_iso(text)
    return value


def parse_as_of(value: AsOfLike | AsOf) -> AsOf | None:
    """Parse an as_of given as a date, a datetime or an ISO 8601 string (``Z``/offsets allowed).

    A naive datetime is taken as UTC. The day of a datetime is its own calendar date, so
    ``2024-03-05T01:00+08:00`` cuts daily bars after 2024-03-05 and intraday bars at
    2024-03-04T17:00Z.
    """
    if value is None or isinstance(value, AsOf):
        return value
    parsed: date | datetime
    if isinstance(value, datetime | date):
        parsed = value
        try:
            _check_year(parsed)
        except ValueError as exc:
            raise InvalidParams(f"as_of {exc}", {"as_of": parsed.isoformat()}) from None
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            parsed = _parse_iso(text)
        except ValueError as exc:
            raise InvalidParams(f"as_of {exc}", {"as_of": value[:40]}) from None
    else:
        raise InvalidParams(
            f"as_of must be an ISO date string such as 2024-01-31, got {type(value).__name__}",
            {"as_of": repr(value)[:40]},
        )

    if isinstance(parsed, datetime):
        day = parsed.date()
        utc = parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
        text = parsed.isoformat()
    else:
        day = parsed
        utc = datetime(parsed.year, parsed.month, parsed.day) + timedelta(days=1)
        text = parsed.isoformat()
    return AsOf(
        day=np.datetime64(day.isoformat(), "D"),
        instant=np.datetime64(utc.replace(microsecond=0).isoformat(), "s"),
        text=text,
    )


def _visible_count(time: np.ndarray, native: str, as_of: AsOf | None) -> int:
    if as_of is None:
        return int(time.shape[0])
    if native in _INTRADAY_SECONDS:
        # Bars are stamped with their open time; one is known only after it closes.
        limit = as_of.instant - np.timedelta64(_INTRADAY_SECONDS[native], "s")
    else:
        limit = (as_of.day + _DAY).astype("datetime64[s]") - np.timedelta64(1, "s")
    return int(np.searchsorted(time, limit, side="right"))


def point_in_time(
    *,
    symbol: str,
    market: str,
    native: str,
    timeframe: str,
    time: np.ndarray,
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    as_of: AsOf | None,
    dropped_time: np.datetime64 | None = None,
) -> Bars:
    """Cut native bars at ``as_of`` and aggregate them to ``timeframe``.

    ``dropped_time`` is the open time of a partial last bar the loader removed; the answer
    reports it when that bar would have been visible at ``as_of``.
    """
    n = _visible_count(time, native, as_of)
    if n == 0:
        first = _fmt_time(time[0], native) if time.shape[0] else "none"
        when = f"at or before as_of {as_of.text}" if as_of is not None else "at all"
        raise DataUnavailable(
            f"no {timeframe} bars for {symbol} {when}; the first available bar is {first}",
            {"symbol": symbol, "timeframe": timeframe, "first_available": first},
        )
    dropped = False
    if dropped_time is not None:
        dropped = (
            _visible_count(np.asarray([dropped_time], dtype="datetime64[s]"), native, as_of) == 1
        )
    bars = Bars(
        time=time[:n],
        open=open[:n],
        high=high[:n],
        low=low[:n],
        close=close[:n],
        volume=volume[:n],
        symbol=symbol,
        market=market,
        timeframe=native,
        partial_bar_dropped=dropped,
    )
    return aggregate(bars, timeframe) if timeframe != native else bars


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def aggregate(bars: Bars, timeframe: str) -> Bars:
    """Aggregate daily bars to weekly (ISO weeks, Monday label) or hourly to 4h (UTC blocks)."""
    timeframe = normalize_timeframe(timeframe)
    if timeframe == bars.timeframe:
        return bars
    if len(bars) == 0:
        return replace(bars, timeframe=timeframe)
    if (bars.timeframe, timeframe) == ("1d", "1w"):
        days = bars.time.astype("datetime64[D]").astype(np.int64)
        # Day 0 (1970-01-01) was a Thursday, so day 4 is the first Monday.
        bucket = (days - 4) // 7
        label = (bucket * 7 + 4).astype("datetime64[D]").astype("datetime64[s]")
    elif (bars.timeframe, timeframe) == ("1h", "4h"):
        hours = bars.time.astype("datetime64[h]").astype(np.int64)
        bucket = hours // 4
        label = (bucket * 4).astype("datetime64[h]").astype("datetime64[s]")
    else:
        raise InvalidParams(f"cannot build {timeframe} bars from {bars.timeframe} bars")
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(bucket)] - 1
    return replace(
        bars,
        time=_readonly(label[starts]),
        open=_readonly(bars.open[starts]),
        high=_readonly(np.maximum.reduceat(bars.high, starts)),
        low=_readonly(np.minimum.reduceat(bars.low, starts)),
        close=_readonly(bars.close[ends]),
        volume=_readonly(np.add.reduceat(bars.volume, starts)),
        timeframe=timeframe,
    )


def _fmt_time(t: np.datetime64, timeframe: str) -> str:
    if timeframe in _INTRADAY_SECONDS:
        return f"{np.datetime_as_string(t, unit='s')}Z"
    return str(np.datetime_as_string(t, unit="D"))


@runtime_checkable
class MarketDataProvider(Protocol):
    """What method handlers use; every backend family implements it."""

    name: str

    def symbols(self, market: str | None = None) -> list[SymbolInfo]: ...

    def resolve(self, symbol: str) -> SymbolInfo: ...

    def bars(self, symbol: str, timeframe: str = "1d", as_of: AsOfLike = None) -> Bars: ...

    def fundamentals(self, symbol: str) -> dict[str, Any] | None: ...

    def benchmark_for(self, market: str) -> str: ...


class BaseProvider:
    """Shared behaviour of all provider families (timeframe checks, benchmark lookup)."""

    name: ClassVar[str] = "base"
    # Whether its data is fixed while the process runs (see is_static).
    static: ClassVar[bool] = False

    def symbols(self, market: str | None = None) -> list[SymbolInfo]:
        raise NotImplementedError

    def resolve(self, symbol: str) -> SymbolInfo:
        raise NotImplementedError

    def bars(self, symbol: str, timeframe: str = "1d", as_of: AsOfLike = None) -> Bars:
        raise NotImplementedError

    def fundamentals(self, symbol: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def benchmark_for(self, market: str) -> str:
        return benchmark_for(market)

    @staticmethod
    def check_timeframe(info: SymbolInfo, timeframe: str) -> str:
        tf = normalize_timeframe(timeframe)
        if tf not in info.timeframes:
            raise InvalidParams(
                f"timeframe {tf} is not available for {info.symbol}; "
                f"available: {', '.join(info.timeframes)}",
                {"symbol": info.symbol, "timeframe": tf, "available": list(info.timeframes)},
            )
        return tf


# --- provider identity and choice -------------------------------------------------------


def provider_key(provider: Any) -> str:
    """Identifies a provider's data source in cache keys (class, name and data folder)."""
    cls = type(provider)
    data_dir = getattr(provider, "data_dir", None)
    return f"{cls.__module__}.{cls.__qualname__}:{getattr(provider, 'name', '')}:{data_dir or ''}"


def is_static(provider: Any) -> bool:
    """True when the provider's files never change while a process runs (the bundled data or
    a folder of the same layout), so "now" (as_of=None) is a fixed point and anything computed
    from its whole history may be kept; a live provider's "now" moves."""
    return bool(getattr(provider, "static", False))


PROVIDERS: dict[str, str] = {
    "bundled": "tacoreservice.market_data.bundled_provider:BundledProvider",
    "yfinance": "tacoreservice.market_data.live_provider:YFinanceProvider",
    "akshare": "tacoreservice.market_data.live_provider:AkshareProvider",
    "ccxt": "tacoreservice.market_data.live_provider:CcxtProvider",
}


def load_provider(settings: Any) -> MarketDataProvider:
    """Build the provider named by ``settings.provider`` (a ``MarketDataSettings``).

    Unknown names raise ``ValueError`` (a configuration mistake); a live provider whose library
    is missing raises ``ServiceError`` (DATA_UNAVAILABLE) naming the extra to install.
    """
    name = str(getattr(settings, "provider", "bundled") or "bundled").strip().lower()
    target = PROVIDERS.get(name)
    if target is None:
        raise ValueError(
            f"unknown market data provider {name!r}; valid providers: {', '.join(PROVIDERS)}"
        )
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    provider: MarketDataProvider = cls(getattr(settings, "data_dir", None))
    return provider

"""The optional live provider families: ``yfinance``, ``akshare`` and ``ccxt``.

Each imports its library only when chosen (``market_data.provider``); a missing library is a
DATA_UNAVAILABLE error naming the extra to install. Symbol names and sectors come from the
bundled catalogue, so answers look the same whichever provider serves them. They live apart
from :mod:`~tacoreservice.market_data.provider` because they build on the bundled provider,
which itself builds on that module's interface.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import numpy as np

from tacoreservice.market_data.bundled_provider import BundledProvider
from tacoreservice.market_data.provider import (
    _INTRADAY_SECONDS,
    NATIVE_FOR,
    AsOfLike,
    Bars,
    BaseProvider,
    _readonly,
    parse_as_of,
    point_in_time,
)
from tacoreservice.market_data.symbols import SymbolInfo, normalize_symbol
from tacoreservice.protocol.errors import DataUnavailable, ErrorCode, InvalidParams, ServiceError

__all__ = ["AkshareProvider", "CcxtProvider", "LiveProvider", "YFinanceProvider"]


def _import_optional(package: str, provider: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ServiceError(
            ErrorCode.DATA_UNAVAILABLE,
            f"market data provider {provider!r} needs the optional package {package!r}, which is "
            f"not installed; install it with: pip install 'tacoreservice[{provider}]' "
            "(or set market_data.provider to 'bundled')",
            {
                "provider": provider,
                "missing_package": package,
                "install": f"tacoreservice[{provider}]",
            },
        ) from None


def _from_columns(times: Any, o: Any, h: Any, low: Any, c: Any, v: Any) -> dict[str, np.ndarray]:
    out = {
        "time": np.asarray(times, dtype="datetime64[s]"),
        "open": np.asarray(o, dtype=np.float64),
        "high": np.asarray(h, dtype=np.float64),
        "low": np.asarray(low, dtype=np.float64),
        "close": np.asarray(c, dtype=np.float64),
        "volume": np.asarray(v, dtype=np.float64),
    }
    order = np.argsort(out["time"], kind="stable")
    return {k: _readonly(np.ascontiguousarray(a[order])) for k, a in out.items()}


class LiveProvider(BaseProvider):
    """Base of the network-backed families. Not exercised offline beyond the import check.

    Symbol names and sectors come from the bundled catalogue when the symbol is bundled, so
    answers look the same whichever provider serves them.
    """

    package: ClassVar[str] = ""
    markets: ClassVar[tuple[str, ...]] = ()
    native: ClassVar[tuple[str, ...]] = ("1d",)

    def __init__(self, data_dir: str | None = None) -> None:
        self.lib = _import_optional(self.package, self.name)
        self._catalog = BundledProvider(data_dir)

    @property
    def timeframes(self) -> tuple[str, ...]:
        return tuple(tf for tf, nat in NATIVE_FOR.items() if nat in self.native)

    def symbols(self, market: str | None = None) -> list[SymbolInfo]:
        return [
            replace(i, timeframes=self.timeframes)
            for i in self._catalog.symbols(market)
            if i.market in self.markets
        ]

    def resolve(self, symbol: str) -> SymbolInfo:
        canonical = normalize_symbol(symbol)
        known = self._catalog.find(canonical)
        if known is not None and known.market in self.markets:
            return replace(known, timeframes=self.timeframes)
        return self._guess(canonical)

    def _guess(self, canonical: str) -> SymbolInfo:
        raise NotImplementedError

    def _fetch(self, info: SymbolInfo, native: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def bars(self, symbol: str, timeframe: str = "1d", as_of: AsOfLike = None) -> Bars:
        info = self.resolve(symbol)
        tf = self.check_timeframe(info, timeframe)
        native = NATIVE_FOR[tf]
        try:
            cols = self._fetch(info, native)
        except ServiceError:
            raise
        except Exception as exc:  # network, rate limit, vendor schema change
            raise DataUnavailable(
                f"{self.name} could not fetch {native} bars for {info.symbol}: {exc}",
                {"symbol": info.symbol, "provider": self.name},
            ) from exc
        dropped = None
        if native in _INTRADAY_SECONDS and cols["time"].shape[0]:
            # A live feed's last intraday bar is usually still forming.
            last = cols["time"][-1]
            now = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "s")
            if last + np.timedelta64(_INTRADAY_SECONDS[native], "s") > now:
                dropped = last
                cols = {k: a[:-1] for k, a in cols.items()}
        return point_in_time(
            symbol=info.symbol,
            market=info.market,
            native=native,
            timeframe=tf,
            as_of=parse_as_of(as_of),
            dropped_time=dropped,
            **cols,
        )

    def fundamentals(self, symbol: str) -> dict[str, Any] | None:
        # Static classification is the same whoever serves prices; unbundled symbols have none.
        if self._catalog.find(normalize_symbol(symbol)) is None:
            return None
        return self._catalog.fundamentals(symbol)


class YFinanceProvider(LiveProvider):
    name = "yfinance"
    package = "yfinance"
    markets = ("us",)
    native = ("1d", "1h")

    def _guess(self, canonical: str) -> SymbolInfo:
        return SymbolInfo(
            canonical, "us", "stock", canonical, "US", "USD", self.timeframes,
            adjustment="yfinance auto_adjust", volume_unit="shares",
        )  # fmt: skip

    def _fetch(self, info: SymbolInfo, native: str) -> dict[str, np.ndarray]:
        ticker = self.lib.Ticker(info.symbol.replace(".", "-"))
        # Yahoo keeps hourly bars for about two years only.
        period = "max" if native == "1d" else "729d"
        df = ticker.history(period=period, interval=native, auto_adjust=True)
        if df is None or len(df) == 0:
            raise DataUnavailable(f"yfinance returned no bars for {info.symbol}")
        idx = df.index
        if native == "1d":
            times = idx.tz_localize(None).normalize() if idx.tz is not None else idx.normalize()
        else:
            times = idx.tz_convert("UTC").tz_localize(None)
        return _from_columns(
            times.to_numpy(), df["Open"], df["High"], df["Low"], df["Close"], df["Volume"]
        )

    def fundamentals(self, symbol: str) -> dict[str, Any] | None:
        info = self.resolve(symbol)
        if info.kind != "stock":
            return None
        raw = self.lib.Ticker(info.symbol.replace(".", "-")).info or {}
        return {
            "symbol": info.symbol,
            "name": raw.get("longName") or info.name,
            "sector": raw.get("sector"),
            "industry": raw.get("industry"),
            "pe_ratio": raw.get("trailingPE"),
            "eps": raw.get("trailingEps"),
            "market_cap": raw.get("marketCap"),
            "dividend_yield": raw.get("dividendYield"),
            "high_52w": raw.get("fiftyTwoWeekHigh"),
            "low_52w": raw.get("fiftyTwoWeekLow"),
            "currency": raw.get("currency", "USD"),
            "snapshot_date": date.today().isoformat(),
            "point_in_time": False,
            "source": {"provider": "yfinance"},
        }


class AkshareProvider(LiveProvider):
    name = "akshare"
    package = "akshare"
    markets = ("cn",)
    native = ("1d",)

    def _guess(self, canonical: str) -> SymbolInfo:
        if not (canonical.isdigit() and len(canonical) == 6):
            raise InvalidParams(
                f"akshare serves A-shares (6-digit codes such as 600519), not {canonical!r}",
                {"symbol": canonical},
            )
        exchange = "SH" if canonical[0] in "569" else "BJ" if canonical[0] in "48" else "SZ"
        return SymbolInfo(
            canonical, "cn", "stock", canonical, exchange, "CNY", self.timeframes,
            adjustment="akshare qfq", volume_unit="lots of 100 shares",
        )  # fmt: skip

    def _fetch(self, info: SymbolInfo, native: str) -> dict[str, np.ndarray]:
        if info.kind == "index":
            df = self.lib.stock_zh_index_daily_em(symbol="sh000300")
            cols = ("date", "open", "high", "low", "close", "volume")
        else:
            df = self.lib.stock_zh_a_hist(symbol=info.symbol, period="daily", adjust="qfq")
            cols = ("日期", "开盘", "最高", "最低", "收盘", "成交量")
        times = np.asarray([str(t)[:10] for t in df[cols[0]]], dtype="datetime64[s]")
        return _from_columns(times, *(df[c].to_numpy() for c in cols[1:]))


class CcxtProvider(LiveProvider):
    name = "ccxt"
    package = "ccxt"
    markets = ("crypto",)
    native = ("1d", "1h")

    def _guess(self, canonical: str) -> SymbolInfo:
        for quote in ("USDT", "USDC", "BTC", "ETH"):
            if canonical.endswith(quote) and len(canonical) > len(quote):
                return SymbolInfo(
                    canonical, "crypto", "crypto", canonical, "BINANCE", quote, self.timeframes,
                    adjustment="raw", volume_unit="base asset units",
                )  # fmt: skip
        raise InvalidParams(
            f"ccxt serves crypto pairs such as BTCUSDT or BTC/USDT, not {canonical!r}",
            {"symbol": canonical},
        )

    def _fetch(self, info: SymbolInfo, native: str) -> dict[str, np.ndarray]:
        quote = info.currency
        pair = f"{info.symbol[: -len(quote)]}/{quote}"
        rows = self.lib.binance().fetch_ohlcv(pair, timeframe=native, limit=1000)
        if not rows:
            raise DataUnavailable(f"binance returned no bars for {pair}")
        arr = np.asarray(rows, dtype=np.float64)
        times = (arr[:, 0] // 1000).astype(np.int64).astype("datetime64[s]")
        return _from_columns(times, arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5])

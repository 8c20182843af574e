"""Market data: symbols, the bundled provider (real data) and the get.market_data method."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import subprocess
import sys
import threading
import types
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from tacoreservice.config import MarketDataSettings, Settings
from tacoreservice.market_data import (
    Bars,
    MarketDataProvider,
    benchmark_for,
    load_provider,
    normalize_symbol,
    normalize_timeframe,
)
from tacoreservice.market_data.bundled_provider import (
    BUNDLED_DIR,
    BundledProvider,
    clear_cache,
    load_series,
    parse_ohlcv,
)
from tacoreservice.market_data.provider import aggregate
from tacoreservice.protocol.errors import ErrorCode, InvalidParams, ServiceError
from tacoreservice.protocol.messages import LEGACY, STANDARD, build_reply
from tacoreservice.service.methods.market_data import summarize
from tacoreservice.service.registry import MethodContext, call_method, load_plugins
from tests.support.memory_cache import DictCache

load_plugins()


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


@pytest.fixture
def ctx() -> MethodContext:
    return MethodContext(settings=Settings(), cache=DictCache())


def call(ctx: MethodContext, **params: Any) -> Any:
    return call_method("get.market_data", params, ctx)


def error_of(fn: Any, *args: Any, **kwargs: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        fn(*args, **kwargs)
    return info.value


def t(s: str) -> np.datetime64:
    return np.datetime64(s, "s")


# --- symbols -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("AAPL", "AAPL"),
        ("aapl", "AAPL"),
        ("  aapl ", "AAPL"),
        ("AAPL.US", "AAPL"),
        ("600519", "600519"),
        ("600519.SH", "600519"),
        ("600519.SS", "600519"),
        ("600519.sh", "600519"),
        ("SH600519", "600519"),
        ("sh600519", "600519"),
        ("000001.SZ", "000001"),
        ("sz000001", "000001"),
        ("BTCUSDT", "BTCUSDT"),
        ("BTC/USDT", "BTCUSDT"),
        ("btc-usdt", "BTCUSDT"),
        ("BTC_USDT", "BTCUSDT"),
        ("eth/usdt", "ETHUSDT"),
        ("CSI300", "CSI300"),
        ("000300.SH", "CSI300"),
        ("sh000300", "CSI300"),
        ("399300.SZ", "CSI300"),
        ("BRK-B", "BRK.B"),
    ],
)
def test_normalize_symbol_forms(raw: str, canonical: str) -> None:
    assert normalize_symbol(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("A" * 40, "longer than"),
        ("AA$PL", "only letters, digits"),
        ("BTC USDT", "only letters, digits"),
        ("600519.XX", "unknown exchange suffix"),
        ("000001.SH", "Shanghai index code"),
        ("600519.SZ", "listed in Shanghai"),
        ("a.b.c.d", "not a recognised"),
        (123, "expected a string"),
    ],
)
def test_normalize_symbol_rejects_garbage_with_actionable_message(raw: Any, hint: str) -> None:
    err = error_of(normalize_symbol, raw)
    assert isinstance(err, InvalidParams)
    assert err.code is ErrorCode.INVALID_PARAMS
    assert hint in err.message
    assert "AAPL" in err.message  # tells the caller what a valid symbol looks like


@pytest.mark.parametrize(
    ("raw", "symbol", "market", "kind", "exchange", "currency"),
    [
        ("aapl", "AAPL", "us", "stock", "US", "USD"),
        ("spy", "SPY", "us", "etf", "US", "USD"),
        ("600519.SS", "600519", "cn", "stock", "SH", "CNY"),
        ("000001.SZ", "000001", "cn", "stock", "SZ", "CNY"),
        ("000300.SH", "CSI300", "cn", "index", "SH", "CNY"),
        ("btc/usdt", "BTCUSDT", "crypto", "crypto", "BINANCE", "USDT"),
    ],
)
def test_resolve_gives_symbol_info(
    provider: BundledProvider,
    raw: str,
    symbol: str,
    market: str,
    kind: str,
    exchange: str,
    currency: str,
) -> None:
    info = provider.resolve(raw)
    assert (info.symbol, info.market, info.kind, info.exchange, info.currency) == (
        symbol,
        market,
        kind,
        exchange,
        currency,
    )
    assert info.name


def test_symbol_info_details(provider: BundledProvider) -> None:
    aapl = provider.resolve("AAPL")
    assert aapl.name == "Apple Inc."
    assert aapl.sector == "Information Technology"
    assert aapl.industry == "Technology Hardware, Storage & Peripherals"
    assert aapl.timeframes == ("1d", "1w")
    assert (aapl.adjustment, aapl.volume_unit) == ("yfinance auto_adjust", "shares")
    moutai = provider.resolve("600519")
    assert (moutai.name, moutai.industry) == ("贵州茅台", "白酒")
    assert (moutai.adjustment, moutai.volume_unit) == ("tushare qfq", "lots of 100 shares")
    btc = provider.resolve("BTCUSDT")
    assert btc.timeframes == ("1h", "4h", "1d", "1w")
    assert (btc.adjustment, btc.volume_unit) == ("raw", "base asset units")


def test_symbols_listing(provider: BundledProvider) -> None:
    by_market = {m: provider.symbols(m) for m in ("us", "cn", "crypto")}
    assert len(by_market["us"]) == 38
    assert len(by_market["cn"]) == 27
    assert {i.symbol for i in by_market["crypto"]} == {"ADAUSDT", "BTCUSDT", "DOTUSDT", "ETHUSDT"}
    assert len(provider.symbols()) == 38 + 27 + 4
    assert {i.symbol for i in by_market["us"] if i.kind == "etf"} == {
        "SPY", "QQQ", "XLK", "XLF", "XLV", "XLE", "XLI",
    }  # fmt: skip
    assert isinstance(provider, MarketDataProvider)
    with pytest.raises(InvalidParams, match="unknown market"):
        provider.symbols("mars")


def test_benchmarks_exist_in_data(provider: BundledProvider) -> None:
    assert [benchmark_for(m) for m in ("us", "cn", "crypto")] == ["SPY", "CSI300", "BTCUSDT"]
    assert provider.benchmark_for("US") == "SPY"
    for market in ("us", "cn", "crypto"):
        bench = benchmark_for(market)
        assert provider.resolve(bench).market == market
        assert len(provider.bars(bench)) > 1000
    with pytest.raises(InvalidParams):
        benchmark_for("hk")


def test_unknown_symbol_suggests_close_matches(provider: BundledProvider) -> None:
    err = error_of(provider.resolve, "APPL")
    assert err.code is ErrorCode.INVALID_PARAMS
    assert err.message == "unknown symbol 'APPL'; did you mean AAPL?"
    assert err.details == {"symbol": "APPL", "suggestions": ["AAPL"]}
    assert "BTCUSDT" in error_of(provider.resolve, "BTC").details["suggestions"]  # type: ignore[index]
    assert "TSLA" in error_of(provider.resolve, "tesla").details["suggestions"]  # type: ignore[index]
    none = error_of(provider.resolve, "QQQQQQQQ")
    assert none.details["suggestions"] == []  # type: ignore[index]
    assert "AAPL, 600519, BTCUSDT" in none.message


# --- timeframes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "tf"),
    [
        ("1d", "1d"), ("1D", "1d"), ("day", "1d"), ("daily", "1d"), ("Daily", "1d"),
        ("1h", "1h"), ("1H", "1h"), ("60m", "1h"),
        ("1w", "1w"), ("1W", "1w"), ("week", "1w"), ("weekly", "1w"),
        ("4h", "4h"), ("4H", "4h"),
    ],
)  # fmt: skip
def test_timeframe_aliases(raw: str, tf: str) -> None:
    assert normalize_timeframe(raw) == tf


def test_timeframe_errors(provider: BundledProvider) -> None:
    err = error_of(normalize_timeframe, "5m")
    assert err.code is ErrorCode.INVALID_PARAMS
    assert "1h, 4h, 1d, 1w" in err.message
    err = error_of(provider.bars, "AAPL", "1h")
    assert err.code is ErrorCode.INVALID_PARAMS
    assert "not available for AAPL" in err.message and "1d, 1w" in err.message
    assert err.details["available"] == ["1d", "1w"]  # type: ignore[index]
    assert len(provider.bars("BTCUSDT", "60m")) > 30_000


# --- loading: header-driven columns, bundle integrity --------------------------------------


def _row(bars: Bars, day: str) -> tuple[float, ...]:
    i = int(np.flatnonzero(bars.time == t(day))[0])
    return (bars.open[i], bars.high[i], bars.low[i], bars.close[i], bars.volume[i])


def test_columns_are_mapped_by_header_name(provider: BundledProvider) -> None:
    # Raw rows, copied from the CSVs: US is Date,Close,High,Low,Open,Volume ...
    assert _row(provider.bars("AAPL"), "2021-01-11") == (
        125.76031685281629,
        126.71429603758807,
        125.08863232599059,
        125.5558853149414,
        100384500.0,
    )
    # ... CN is date,open,close,high,low,volume ...
    assert _row(provider.bars("600519"), "2020-01-02") == (
        994.03,
        1009.06,
        983.45,
        995.79,
        148099.16,
    )
    # ... crypto is timestamp,open,high,low,close,volume, and 000858 has a mostly empty amount.
    assert _row(provider.bars("BTCUSDT"), "2022-01-01") == (
        46216.93, 47954.63, 46208.37, 47722.65, 19604.46325,
    )  # fmt: skip
    b = provider.bars("000858")
    assert _row(b, "2022-01-04") == (197.45, 198.53, 193.39, 198.25, 201786.73)
    assert _row(b, "2025-09-03") == (129.0, 131.5, 126.39, 126.62, 302863.19)
    assert len(b) == 890
    assert np.isfinite(b.volume).all()


def test_parse_ohlcv_header_order_crlf_bom_and_empty_extra_columns() -> None:
    text = (
        "\ufeffVolume,amount,Low,Date,High,Close,Open\r\n"
        "100,,9.5,2024-01-03,11,10.5,10\r\n"
        "200,5.5,10,2024-01-02,12,11,10.5\r\n"  # out of order: sorted on load
        "\r\n"
        "300,,10.5,2024-01-04,13,12.5,11\r\n"
    )
    cols = parse_ohlcv(text, "synthetic.csv")
    assert cols["time"].tolist() == [
        datetime(2024, 1, 2), datetime(2024, 1, 3), datetime(2024, 1, 4),
    ]  # fmt: skip
    assert cols["open"].tolist() == [10.5, 10.0, 11.0]
    assert cols["high"].tolist() == [12.0, 11.0, 13.0]
    assert cols["low"].tolist() == [10.0, 9.5, 10.5]
    assert cols["close"].tolist() == [11.0, 10.5, 12.5]
    assert cols["volume"].tolist() == [200.0, 100.0, 300.0]
    # A missing price drops the row instead of inventing one; a missing volume stays NaN.
    cols = parse_ohlcv(
        "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,,9\n2024-01-03,1,2,0.5,1.5,\n", "x"
    )
    assert cols["time"].tolist() == [datetime(2024, 1, 3)]
    assert math.isnan(cols["volume"][0])
    with pytest.raises(ServiceError, match="lacks column"):
        parse_ohlcv("date,open,high,low,volume\n2024-01-02,1,2,0.5,9\n", "x")


def test_bundle_matches_manifest_and_sources() -> None:
    manifest = json.loads((BUNDLED_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert (BUNDLED_DIR / "SOURCES.md").is_file()
    files = manifest["files"]
    assert len(files) == 76
    for rel, meta in files.items():
        raw = gzip.decompress((BUNDLED_DIR / rel).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == meta["sha256"], rel
        assert raw.count(b"\n") == meta["rows"] + 1, rel
        assert meta["source"]["repo"] and len(meta["source"]["commit"]) == 40
    partial = sorted(rel for rel, meta in files.items() if meta.get("partial_last_bar"))
    assert partial == [
        "crypto/ADAUSDT_1d.csv.gz", "crypto/ADAUSDT_1h.csv.gz",
        "crypto/BTCUSDT_1d.csv.gz", "crypto/BTCUSDT_1h.csv.gz",
        "crypto/DOTUSDT_1d.csv.gz", "crypto/DOTUSDT_1h.csv.gz",
        "crypto/ETHUSDT_1d.csv.gz", "crypto/ETHUSDT_1h.csv.gz", "us/TSLA.csv.gz",
    ]  # fmt: skip
    assert files["cn/600519.csv.gz"]["volume_unit"] == "lots of 100 shares"
    assert files["cn/600519.csv.gz"]["adjustment"] == "tushare qfq"
    assert files["us/AAPL.csv.gz"]["header"] == ["Date", "Close", "High", "Low", "Open", "Volume"]
    assert files["crypto/ETHUSDT_1h.csv.gz"]["currency"] == "USDT"


def test_data_dir_with_uncompressed_files(tmp_path: Path, provider: BundledProvider) -> None:
    (tmp_path / "us").mkdir()
    raw = gzip.decompress((BUNDLED_DIR / "us/AAPL.csv.gz").read_bytes())
    (tmp_path / "us/AAPL.csv").write_bytes(raw)
    other = BundledProvider(tmp_path)
    a, b = other.bars("AAPL"), provider.bars("AAPL")
    assert np.array_equal(a.time, b.time) and np.array_equal(a.close, b.close)
    # Without a manifest, the folder's files are its symbols (named as the package names
    # them when it knows them); anything else is unknown there.
    assert [i.symbol for i in other.symbols()] == ["AAPL"]
    assert other.resolve("AAPL").name == provider.resolve("AAPL").name
    err = error_of(other.bars, "MSFT")
    assert err.code is ErrorCode.INVALID_PARAMS and str(tmp_path) in err.message
    with pytest.raises(ServiceError, match="not a directory"):
        BundledProvider(tmp_path / "nope")


def test_parsed_arrays_are_cached_shared_and_read_only(provider: BundledProvider) -> None:
    a, b = provider.bars("MSFT"), BundledProvider().bars("msft")
    assert a.close is not b.close and np.shares_memory(a.close, b.close)
    with pytest.raises(ValueError):
        a.close[0] = 0.0


def test_concurrent_first_load_parses_once() -> None:
    clear_cache()
    path = BUNDLED_DIR / "crypto/ETHUSDT_1h.csv.gz"
    seen: list[Any] = []
    threads = [
        threading.Thread(target=lambda: seen.append(load_series(path, True))) for _ in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(seen) == 8 and all(s is seen[0] for s in seen)


def test_largest_file_loads_whole() -> None:
    # How fast it loads is in bench/bench_analysis.py's cold cases, not a timed assertion.
    clear_cache()
    series = load_series(BUNDLED_DIR / "crypto/BTCUSDT_1h.csv.gz", True)
    assert series.time.shape[0] == 34349 - 1


def test_import_does_not_pull_pandas() -> None:
    code = (
        "import sys, tacoreservice.market_data, tacoreservice.service.methods.market_data;"
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- partial last bars ---------------------------------------------------------------------


def test_partial_last_bars_are_dropped_and_reported(provider: BundledProvider) -> None:
    tsla = provider.bars("TSLA")
    assert tsla.time[-1] == t("2026-03-25") and len(tsla) == 1312
    assert tsla.partial_bar_dropped
    assert tsla.close[-1] == 385.95001220703125

    aapl = provider.bars("AAPL")
    assert aapl.time[-1] == t("2026-01-08") and not aapl.partial_bar_dropped

    for sym in ("BTCUSDT", "ETHUSDT"):
        d, h = provider.bars(sym, "1d"), provider.bars(sym, "1h")
        assert d.time[-1] == t("2025-12-01") and d.partial_bar_dropped
        assert h.time[-1] == t("2025-12-02T04:00:00") and h.partial_bar_dropped
        assert len(h) == 34348
        assert provider.bars(sym, "4h").partial_bar_dropped
        assert provider.bars(sym, "1w").partial_bar_dropped

    # Earlier than the dropped bar nothing was removed from the answer.
    assert not provider.bars("TSLA", as_of="2025-01-10").partial_bar_dropped
    assert provider.bars("TSLA", as_of="2026-03-26").partial_bar_dropped


def test_method_reports_dropped_partial_bar(ctx: MethodContext) -> None:
    tsla = call(ctx, symbol="TSLA")
    assert tsla["partial_bar_dropped"] is True
    assert tsla["as_of"] == "2026-03-25" and tsla["close"] == pytest.approx(385.950012)
    btc = call(ctx, symbol="BTC/USDT", timeframe="1h")
    assert btc["partial_bar_dropped"] is True and btc["as_of"] == "2025-12-02T04:00:00Z"
    assert call(ctx, symbol="AAPL")["partial_bar_dropped"] is False


# --- as_of (point in time) -----------------------------------------------------------------


def test_as_of_daily_is_point_in_time(provider: BundledProvider) -> None:
    full = provider.bars("AAPL")
    for as_of in ("2024-06-15", date(2024, 6, 15), datetime(2024, 6, 15, 9, 30)):
        b = provider.bars("AAPL", as_of=as_of)
        assert b.time[-1] == t("2024-06-14")  # 06-15 was a Saturday
        assert (b.time <= t("2024-06-15T23:59:59")).all()
        assert len(b) == int((full.time <= t("2024-06-15")).sum())
    # The as_of day itself is visible for daily bars.
    assert provider.bars("AAPL", as_of="2024-06-14").time[-1] == t("2024-06-14")
    # CN data follows its own calendar.
    assert provider.bars("600519", as_of="2024-10-05").time[-1] == t("2024-09-30")


def test_as_of_intraday_only_sees_closed_bars(provider: BundledProvider) -> None:
    b = provider.bars("BTCUSDT", "1h", as_of="2024-01-01T10:00:00Z")
    assert b.time[-1] == t("2024-01-01T09:00:00")  # the 10:00 bar has not closed yet
    b = provider.bars("BTCUSDT", "1h", as_of="2024-01-01T10:30:00")
    assert b.time[-1] == t("2024-01-01T09:00:00")
    assert ((b.time + np.timedelta64(3600, "s")) <= t("2024-01-01T10:30:00")).all()
    # An offset is converted to UTC, the data's clock.
    b = provider.bars("BTCUSDT", "1h", as_of="2024-03-05T01:00:00+08:00")
    assert b.time[-1] == t("2024-03-04T16:00:00")
    # A bare date means the end of that day.
    assert provider.bars("BTCUSDT", "1h", as_of="2024-03-05").time[-1] == t("2024-03-05T23:00:00")
    # The halt of 2023-03-24: the 13:00 bar does not exist in the source.
    b = provider.bars("BTCUSDT", "1h", as_of="2023-03-24T15:00:00Z")
    assert b.time[-3:].tolist() == [
        datetime(2023, 3, 24, 11), datetime(2023, 3, 24, 12), datetime(2023, 3, 24, 14),
    ]  # fmt: skip


def test_as_of_weekly_uses_no_later_daily_bars(provider: BundledProvider) -> None:
    daily = provider.bars("AAPL", as_of="2024-06-12")  # a Wednesday
    week = provider.bars("AAPL", "1w", as_of="2024-06-12")
    assert week.time[-1] == t("2024-06-10")
    assert week.close[-1] == daily.close[-1]
    assert week.high[-1] == daily.high[-3:].max()
    assert week.volume[-1] == daily.volume[-3:].sum()


def test_as_of_before_data_is_data_unavailable(
    provider: BundledProvider, ctx: MethodContext
) -> None:
    err = error_of(provider.bars, "AAPL", as_of="2020-06-01")
    assert err.code is ErrorCode.DATA_UNAVAILABLE
    assert "2021-01-11" in err.message
    err = error_of(call, ctx, symbol="BTCUSDT", timeframe="1h", as_of="2021-12-31")
    assert err.code is ErrorCode.DATA_UNAVAILABLE and "2022-01-01T00:00:00Z" in err.message
    err = error_of(call, ctx, symbols=["AAPL", "000858"], as_of="2021-06-01")
    assert err.code is ErrorCode.DATA_UNAVAILABLE
    assert "000858" in err.message and "2022-01-04" in err.message
    err = error_of(call, ctx, symbol="AAPL", as_of="last tuesday")
    assert err.code is ErrorCode.INVALID_PARAMS and "ISO" in err.message


def test_method_as_of(ctx: MethodContext) -> None:
    out = call(ctx, symbol="AAPL", as_of="2024-06-15", history=3)
    assert out["as_of"] == "2024-06-14"
    assert [h["time"] for h in out["history"]] == ["2024-06-12", "2024-06-13", "2024-06-14"]


# --- aggregation ---------------------------------------------------------------------------


def test_weekly_aggregation_by_hand(provider: BundledProvider) -> None:
    d = provider.bars("AAPL")
    w = provider.bars("AAPL", "1w")
    # Week of Mon 2021-01-11: five sessions. Week of 2021-01-18: Monday was a holiday.
    for label, first, last in (("2021-01-11", 0, 5), ("2021-01-18", 5, 9)):
        i = int(np.flatnonzero(w.time == t(label))[0])
        assert w.open[i] == d.open[first]
        assert w.high[i] == max(d.high[first:last].tolist())
        assert w.low[i] == min(d.low[first:last].tolist())
        assert w.close[i] == d.close[last - 1]
        assert w.volume[i] == pytest.approx(sum(d.volume[first:last].tolist()))
    assert d.time[5] == t("2021-01-19") and d.time[9] == t("2021-01-25")
    assert w.time[0] == t("2021-01-11") and w.time[-1] == t("2026-01-05")
    assert w.volume.sum() == pytest.approx(d.volume.sum())
    weekday = (w.time.astype("datetime64[D]").astype(np.int64) + 3) % 7
    assert (weekday == 0).all()  # every label is a Monday


def test_4h_aggregation_by_hand(provider: BundledProvider) -> None:
    h = provider.bars("BTCUSDT", "1h")
    f = provider.bars("BTCUSDT", "4h")
    assert f.time[0] == t("2022-01-01T00:00:00")
    assert (f.open[0], f.close[0]) == (h.open[0], h.close[3])
    assert f.high[0] == max(h.high[:4].tolist()) and f.low[0] == min(h.low[:4].tolist())
    assert f.volume[0] == pytest.approx(sum(h.volume[:4].tolist()))
    # The block holding the missing 13:00 hour has three bars: 12:00, 14:00, 15:00.
    i = int(np.flatnonzero(f.time == t("2023-03-24T12:00:00"))[0])
    j = int(np.flatnonzero(h.time == t("2023-03-24T12:00:00"))[0])
    assert h.time[j + 1] == t("2023-03-24T14:00:00")
    assert (f.open[i], f.close[i]) == (h.open[j], h.close[j + 2])
    assert f.high[i] == max(h.high[j : j + 3].tolist())
    assert f.volume[i] == pytest.approx(sum(h.volume[j : j + 3].tolist()))
    assert ((f.time.astype(np.int64) % (4 * 3600)) == 0).all()


def test_aggregate_synthetic_bars() -> None:
    days = np.array(["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"], dtype="datetime64[s]")
    bars = Bars(
        time=days,
        open=np.array([1.0, 2.0, 3.0, 4.0]),
        high=np.array([5.0, 6.0, 7.0, 9.0]),
        low=np.array([0.5, 1.5, 2.5, 0.1]),
        close=np.array([1.5, 2.5, 3.5, 4.5]),
        volume=np.array([10.0, 20.0, 30.0, 40.0]),
        symbol="X",
        market="us",
        timeframe="1d",
    )
    w = aggregate(bars, "weekly")
    assert w.time.tolist() == [datetime(2024, 1, 1), datetime(2024, 1, 8)]
    assert w.open.tolist() == [1.0, 3.0] and w.close.tolist() == [2.5, 4.5]
    assert w.high.tolist() == [6.0, 9.0] and w.low.tolist() == [0.5, 0.1]
    assert w.volume.tolist() == [30.0, 70.0] and w.timeframe == "1w"


# --- get.market_data -----------------------------------------------------------------------


SUMMARY_KEYS = {
    "symbol", "market", "name", "exchange", "currency", "timeframe", "as_of", "price", "open",
    "high", "low", "close", "volume", "change", "change_pct", "high_52w", "low_52w",
    "avg_volume_20", "bars_available", "partial_bar_dropped", "source", "adjustment",
    "volume_unit",
}  # fmt: skip


def test_single_symbol_answer_is_computed_from_bars(
    ctx: MethodContext, provider: BundledProvider
) -> None:
    out = call(ctx, symbol="aapl")
    assert set(out) >= SUMMARY_KEYS and "history" not in out
    b = provider.bars("AAPL")
    assert out["symbol"] == "AAPL" and out["name"] == "Apple Inc." and out["market"] == "us"
    assert out["as_of"] == "2026-01-08" and out["timeframe"] == "1d"
    assert out["price"] == out["close"] == pytest.approx(259.0400085449219, abs=1e-6)
    assert out["change"] == pytest.approx(b.close[-1] - b.close[-2], abs=1e-6)
    assert out["change_pct"] == round((b.close[-1] / b.close[-2] - 1) * 100, 4)
    year = b.time > b.time[-1] - np.timedelta64(365, "D")
    assert out["high_52w"] == pytest.approx(b.high[year].max(), abs=1e-6)
    assert out["low_52w"] == pytest.approx(b.low[year].min(), abs=1e-6)
    assert out["avg_volume_20"] == pytest.approx(b.volume[-20:].mean(), abs=0.01)
    assert out["bars_available"] == 1255
    assert (out["source"], out["adjustment"], out["volume_unit"]) == (
        "bundled", "yfinance auto_adjust", "shares",
    )  # fmt: skip
    assert (out["currency"], out["exchange"]) == ("USD", "US")


def test_cn_and_crypto_answers(ctx: MethodContext) -> None:
    cn = call(ctx, symbol="SH600519")
    assert (cn["symbol"], cn["exchange"], cn["currency"]) == ("600519", "SH", "CNY")
    assert cn["as_of"] == "2025-09-30" and cn["close"] == 1443.99
    assert cn["change"] == pytest.approx(1443.99 - 1460.86, abs=1e-6)
    assert cn["volume_unit"] == "lots of 100 shares" and cn["adjustment"] == "tushare qfq"
    eth = call(ctx, symbol="eth_usdt", timeframe="4H")
    assert eth["timeframe"] == "4h" and eth["as_of"] == "2025-12-02T04:00:00Z"
    assert eth["currency"] == "USDT" and eth["exchange"] == "BINANCE"


def test_symbols_list(ctx: MethodContext) -> None:
    out = call(ctx, symbols=["AAPL", "googl", "600519.SS", "BTC/USDT", "aapl"])
    assert out["count"] == 4
    assert list(out["market_data"]) == ["AAPL", "GOOGL", "600519", "BTCUSDT"]
    for sym, item in out["market_data"].items():
        assert item["symbol"] == sym and set(item) >= SUMMARY_KEYS
    assert out["market_data"]["GOOGL"]["as_of"] == "2026-01-08"
    assert out["market_data"]["BTCUSDT"]["as_of"] == "2025-12-01"


def test_symbols_list_names_every_bad_symbol(ctx: MethodContext) -> None:
    err = error_of(call, ctx, symbols=["AAPL", "APPL", "GOGL", "A$B"])
    assert err.code is ErrorCode.INVALID_PARAMS
    assert "'APPL' (did you mean AAPL?)" in err.message
    assert "'GOGL' (did you mean GOOGL?)" in err.message
    assert "A$B" in err.message
    assert err.details["bad_symbols"] == ["A$B", "APPL", "GOGL"]  # type: ignore[index]
    # An hourly request of a daily-only stock is answered from daily bars, and says so.
    out = call(ctx, symbols=["AAPL", "BTCUSDT"], timeframe="1h")["market_data"]
    assert out["BTCUSDT"]["timeframe"] == "1h" and "timeframe_requested" not in out["BTCUSDT"]
    assert out["AAPL"]["timeframe"] == "1d" and out["AAPL"]["timeframe_requested"] == "1h"


def test_single_unknown_symbol_via_method(ctx: MethodContext) -> None:
    err = error_of(call, ctx, symbol="APPL")
    assert err.code is ErrorCode.INVALID_PARAMS
    assert err.message == "unknown symbol 'APPL'; did you mean AAPL?"
    err = error_of(call, ctx, symbol="AAPL", timeframe="1h", strict_timeframe=True)
    assert err.code is ErrorCode.DATA_UNAVAILABLE and "1d, 1w" in err.message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "exactly one of 'symbol' (a ticker) or 'symbols'"),
        ({"symbol": "AAPL", "symbols": ["MSFT"]}, "got both"),
        ({"symbols": []}, "params.symbols"),
        ({"symbols": ["AAPL"] * 201}, "params.symbols"),
        ({"symbol": "AAPL", "history": 5001}, "params.history"),
        ({"symbol": "AAPL", "history": -1}, "params.history"),
        ({"symbol": ""}, "empty"),
    ],
)
def test_invalid_params(ctx: MethodContext, params: dict[str, Any], expected: str) -> None:
    err = error_of(call_method, "get.market_data", params, ctx)
    assert err.code is ErrorCode.INVALID_PARAMS
    assert expected in err.message


def test_history(ctx: MethodContext, provider: BundledProvider) -> None:
    out = call(ctx, symbol="MSFT", history=5)
    hist = out["history"]
    assert len(hist) == 5
    assert [h["time"] for h in hist] == sorted(h["time"] for h in hist)
    assert hist[-1]["time"] == out["as_of"] and hist[-1]["close"] == out["close"]
    b = provider.bars("MSFT")
    assert hist[0]["open"] == pytest.approx(b.open[-5], abs=1e-6)
    assert set(hist[0]) == {"time", "open", "high", "low", "close", "volume"}
    everything = call(ctx, symbol="000858", history=5000)
    assert len(everything["history"]) == everything["bars_available"] == 890
    hourly = call(ctx, symbol="BTCUSDT", timeframe="1h", history=2)["history"]
    assert [h["time"] for h in hourly] == ["2025-12-02T03:00:00Z", "2025-12-02T04:00:00Z"]
    many = call(ctx, symbols=["AAPL", "SPY"], history=2)
    assert all(len(v["history"]) == 2 for v in many["market_data"].values())


def test_answer_is_cached_and_served_from_cache(ctx: MethodContext) -> None:
    cache: DictCache = ctx.cache  # type: ignore[assignment]
    provider = BundledProvider()
    calls: list[str] = []
    original = provider.bars

    def counting_bars(symbol: str, timeframe: str = "1d", as_of: Any = None) -> Bars:
        calls.append(symbol)
        return original(symbol, timeframe, as_of)

    provider.bars = counting_bars  # type: ignore[method-assign]
    ctx._provider = provider

    first = call(ctx, symbol="aapl", timeframe="daily", history=2)
    assert calls == ["AAPL"]
    (key,) = cache.data
    assert key.startswith("md:") and '"symbol":"AAPL"' in key and '"timeframe":"1d"' in key
    assert cache.ttls[key] == ctx.settings.cache.market_data_ttl_s
    assert orjson.loads(cache.data[key]) == first

    second = call(ctx, symbol="AAPL", timeframe="1D", history=2)  # same canonical params
    assert second == first and calls == ["AAPL"] and cache.hits == 1

    call(ctx, symbol="AAPL", history=3)  # different params: a miss
    assert calls == ["AAPL", "AAPL"] and len(cache.data) == 2

    call(ctx, symbols=["MSFT", "AAPL"])
    call(ctx, symbols=["msft", "AAPL"])
    assert calls == ["AAPL", "AAPL", "MSFT", "AAPL"]


def test_cached_answer_goes_into_the_reply_as_its_bytes_for_a_worker() -> None:
    # A worker encodes its results with orjson: a cached answer reaches it as the cached bytes,
    # written into the reply as they are instead of decoded and encoded again.
    cache = DictCache()
    worker_ctx = MethodContext(settings=Settings(), cache=cache, encoded_results=True)
    first = call(worker_ctx, symbol="AAPL", history=3)  # computed: a dict
    assert isinstance(first, dict)
    (key,) = cache.data
    second = call(worker_ctx, symbol="AAPL", history=3)
    assert isinstance(second, orjson.Fragment)
    assert orjson.dumps(second) == cache.data[key]
    assert orjson.loads(orjson.dumps(second)) == first
    for dialect in (STANDARD, LEGACY):
        from_bytes = orjson.loads(build_reply("r-1", dialect, True, second, None, 1.0, "w"))
        from_dict = orjson.loads(build_reply("r-1", dialect, True, first, None, 1.0, "w"))
        from_bytes.pop("timestamp"), from_dict.pop("timestamp")
        assert from_bytes == from_dict and from_bytes["data"] == first
    # Any other caller still gets a dict from the same cache entry.
    assert call(MethodContext(settings=Settings(), cache=cache), symbol="AAPL", history=3) == first


def test_damaged_cache_entry_is_never_answered_with() -> None:
    cache = DictCache()
    worker_ctx = MethodContext(settings=Settings(), cache=cache, encoded_results=True)
    first = call(worker_ctx, symbol="MSFT", history=2)
    (key,) = cache.data
    assert isinstance(call(worker_ctx, symbol="MSFT", history=2), orjson.Fragment)
    # Another writer (or a cut-off value) leaves bytes that do not decode: computed again.
    cache.data[key] = cache.data[key][:-20]
    again = call(worker_ctx, symbol="MSFT", history=2)
    assert isinstance(again, dict) and again == first
    assert orjson.loads(cache.data[key]) == first  # and written back whole
    # Different bytes that do decode (another release wrote them) are checked, then served.
    cache.data[key] = orjson.dumps({**first, "note": "written elsewhere"})
    served = call(worker_ctx, symbol="MSFT", history=2)
    assert orjson.loads(orjson.dumps(served))["note"] == "written elsewhere"


def test_polled_quote_derives_its_cache_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from tacoreservice.service.methods import market_data as md

    derived: list[str] = []
    original = md.normalize_timeframe

    def counting(timeframe: str) -> str:
        derived.append(timeframe)
        return original(timeframe)

    monkeypatch.setattr(md, "normalize_timeframe", counting)
    ctx = MethodContext(settings=Settings(), cache=DictCache())
    params = {"symbol": "NVDA", "history": 7, "timeframe": "daily"}
    first = call(ctx, **params)
    assert call(ctx, **params) == call(ctx, **params) == first
    assert derived == ["daily"]  # the registry hands out the same params: the key is known
    # Another provider's answers live under another key.
    other = Settings()
    other.market_data.provider = "yfinance"
    other_ctx = MethodContext(settings=other, cache=DictCache())
    other_ctx._provider = BundledProvider()
    assert call(other_ctx, **params) == first
    assert derived == ["daily", "daily"]
    assert len(other_ctx.cache.data) == 1  # type: ignore[attr-defined]
    assert next(iter(other_ctx.cache.data)) != next(iter(ctx.cache.data))  # type: ignore[attr-defined]
    # Lists of symbols are validated afresh every time: their keys are not kept.
    kept = len(md._KEYS)
    call(ctx, symbols=["NVDA", "AAPL"])
    call(ctx, symbols=["NVDA", "AAPL"])
    assert len(md._KEYS) == kept


def test_cache_disabled_with_zero_ttl() -> None:
    settings = Settings()
    settings.cache.market_data_ttl_s = 0
    ctx = MethodContext(settings=settings, cache=DictCache())
    call(ctx, symbol="AAPL")
    assert ctx.cache.data == {}  # type: ignore[attr-defined]


def test_output_never_has_nan() -> None:
    nan = float("nan")
    bars = Bars(
        time=np.array(["2024-01-02", "2024-01-03"], dtype="datetime64[s]"),
        open=np.array([1.0, 2.0]),
        high=np.array([1.5, 2.5]),
        low=np.array([0.5, 1.5]),
        close=np.array([1.2, 2.2]),
        volume=np.array([nan, 100.0]),
        symbol="AAPL",
        market="us",
        timeframe="1d",
    )
    info = BundledProvider().resolve("AAPL")
    out = summarize(info, bars, 2, "bundled")
    assert out["history"][0]["volume"] is None
    assert out["avg_volume_20"] == 100.0
    single = summarize(info, bars.tail(1), 0, "bundled")
    assert single["change"] is None and single["change_pct"] is None
    assert b"NaN" not in orjson.dumps(out) and b"NaN" not in orjson.dumps(single)


# --- fundamentals --------------------------------------------------------------------------


def test_fundamentals_us_stock(provider: BundledProvider) -> None:
    f = provider.fundamentals("aapl")
    assert f is not None
    assert f["name"] == "Apple Inc."
    assert f["sector"] == "Information Technology"
    assert f["sub_industry"] == "Technology Hardware, Storage & Peripherals"
    assert f["pe_ratio"] == 35.475918 and f["eps"] == 8.72
    assert f["market_cap"] == 4514709504000 and f["dividend_yield"] == 0.0035
    assert (f["low_52w"], f["high_52w"]) == (224.69, 344.57)
    assert f["snapshot_date"] == "2026-08-22" and f["point_in_time"] is False
    tsla = provider.fundamentals("TSLA")
    assert tsla is not None and tsla["dividend_yield"] is None  # empty in the snapshot


def test_fundamentals_cn_stock(provider: BundledProvider) -> None:
    f = provider.fundamentals("600519.SH")
    assert f is not None
    assert (f["name"], f["industry"], f["area"], f["ts_code"]) == (
        "贵州茅台",
        "白酒",
        "贵州",
        "600519.SH",
    )
    assert f["point_in_time"] is False
    assert provider.fundamentals("300750")["industry"] == "电气设备"  # type: ignore[index]


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETH/USDT", "SPY", "XLK", "CSI300"])
def test_no_fundamentals_for_crypto_etf_index(provider: BundledProvider, symbol: str) -> None:
    assert provider.fundamentals(symbol) is None


# --- provider selection --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["yfinance", "akshare", "ccxt"])
def test_missing_optional_provider_package(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # makes ``import name`` fail even if installed
    err = error_of(load_provider, MarketDataSettings(provider=name))
    assert err.code is ErrorCode.DATA_UNAVAILABLE
    assert f"pip install 'tacoreservice[{name}]'" in err.message
    assert err.details["missing_package"] == name  # type: ignore[index]
    # The same error reaches a client through the method.
    settings = Settings()
    settings.market_data.provider = name
    err = error_of(call, MethodContext(settings=settings, cache=DictCache()), symbol="AAPL")
    assert err.code is ErrorCode.DATA_UNAVAILABLE and f"tacoreservice[{name}]" in err.message


def test_live_adapter_with_a_stand_in_library(monkeypatch: pytest.MonkeyPatch) -> None:
    # No network here: a stand-in ccxt module checks the adapter's plumbing (pair spelling,
    # epoch-ms times, point-in-time cut and 4h aggregation), not Binance itself.
    start_ms = 1_704_067_200_000  # 2024-01-01T00:00:00Z
    rows = [[start_ms + i * 3_600_000, 100 + i, 101 + i, 99 + i, 100.5 + i, 10.0] for i in range(8)]
    asked: list[tuple[str, str]] = []

    class Exchange:
        def fetch_ohlcv(self, pair: str, timeframe: str, limit: int) -> list[list[float]]:
            asked.append((pair, timeframe))
            return rows

    fake = types.ModuleType("ccxt")
    fake.binance = Exchange  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ccxt", fake)
    live = load_provider(MarketDataSettings(provider="ccxt"))
    assert live.name == "ccxt" and live.resolve("btc/usdt").name.startswith("Bitcoin")
    four = live.bars("BTC-USDT", "4h", as_of="2024-01-01T06:00:00Z")
    assert asked == [("BTC/USDT", "1h")]
    assert four.time.tolist() == [datetime(2024, 1, 1, 0), datetime(2024, 1, 1, 4)]
    assert four.close.tolist() == [103.5, 105.5]  # the 06:00 bar had not closed at 06:00
    assert four.volume.tolist() == [40.0, 20.0]
    assert live.fundamentals("BTCUSDT") is None
    with pytest.raises(InvalidParams, match="crypto pairs"):
        live.resolve("AAPL")


def test_provider_selection() -> None:
    assert load_provider(MarketDataSettings()).name == "bundled"
    assert isinstance(load_provider(MarketDataSettings(provider="bundled")), BundledProvider)
    with pytest.raises(ValueError, match="bundled, yfinance, akshare, ccxt"):
        load_provider(MarketDataSettings(provider="bloomberg"))

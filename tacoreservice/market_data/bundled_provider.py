"""The offline default provider: real history shipped in ``bundled/`` (see its SOURCES.md).

``bundled/manifest.json`` describes every file (market, symbol, timeframe, units, adjustment,
partial last bar, source repository and commit) and every symbol (name, exchange, sector).
Nothing is parsed at import or construction time beyond the small manifest: a CSV is read on
first use and its arrays are kept for the life of the process, shared by all provider
instances and threads, because workers answer many requests for the same few symbols.

Columns are located by header name, never by position: the sources order them differently
(US ``Date,Close,High,Low,Open,Volume``; CN ``date,open,close,high,low,volume``; crypto
``timestamp,open,high,low,close,volume``) and some carry extra columns (``amount``, mostly
empty in two CN files) that are ignored.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tacoreservice.market_data.provider import (
    NATIVE_FOR,
    AsOfLike,
    Bars,
    BaseProvider,
    parse_as_of,
    point_in_time,
)
from tacoreservice.market_data.symbols import (
    SymbolInfo,
    normalize_market,
    normalize_symbol,
    suggest_symbols,
)
from tacoreservice.protocol.errors import DataUnavailable, ErrorCode, InvalidParams, ServiceError

__all__ = [
    "BUNDLED_DIR",
    "BundledProvider",
    "clear_cache",
    "discover_manifest",
    "load_series",
]

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"

_TIME_NAMES = ("date", "timestamp", "datetime", "time", "trade_date")
_FIELDS = ("open", "high", "low", "close", "volume")
_FIELD_ALIASES = {"vol": "volume"}


@dataclass(frozen=True, eq=False)
class Series:
    """One parsed file. ``dropped_time`` is the open time of a partial last bar removed on load."""

    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    dropped_time: np.datetime64 | None


_series: dict[str, Series] = {}
_tables: dict[str, list[dict[str, str]]] = {}
_manifests: dict[str, dict[str, Any]] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    # One lock per file so two threads never parse the same file twice, while different files
    # still load in parallel.
    with _guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.Lock()
        return lock


def clear_cache() -> None:
    """Forget every parsed file (tests; a changed data_dir in a long-lived process)."""
    with _guard:
        _series.clear()
        _tables.clear()
        _manifests.clear()


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    # utf-8-sig drops a byte-order mark that would otherwise glue itself to the first header.
    return data.decode("utf-8-sig")


def _to_float(values: list[str] | tuple[str, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = float(v) if v.strip() else np.nan
        except ValueError:
            out[i] = np.nan
    return out


def _to_time(values: list[str], where: str) -> np.ndarray:
    sample = values[0].strip() if values else ""
    try:
        if sample.isdigit() and len(sample) == 8:  # Tushare trade_date 20200102
            return np.asarray([f"{v[:4]}-{v[4:6]}-{v[6:8]}" for v in values], dtype="datetime64[s]")
        if sample.isdigit() and len(sample) >= 12:  # epoch milliseconds (raw ccxt)
            return (np.asarray(values, dtype=np.int64) // 1000).astype("datetime64[s]")
        return np.asarray([v.strip() for v in values], dtype="datetime64[s]")
    except ValueError as exc:
        raise DataUnavailable(f"{where}: unreadable time value ({exc})") from None


def parse_ohlcv(text: str, where: str) -> dict[str, np.ndarray]:
    """Parse an OHLCV CSV into arrays, mapping columns by header name.

    Rows with a missing or non-numeric price are dropped; rows are sorted by time and a
    duplicated time keeps its last row.
    """
    # splitlines() also ends CRLF lines cleanly; a BOM would glue itself to the first name.
    lines = [ln for ln in text.lstrip("\ufeff").splitlines() if ln.strip()]
    if len(lines) < 2:
        raise DataUnavailable(f"{where} holds no bars")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    header = [_FIELD_ALIASES.get(h, h) for h in header]
    t_idx = next((header.index(n) for n in _TIME_NAMES if n in header), None)
    missing = [f for f in _FIELDS if f not in header]
    if t_idx is None or missing:
        need = ["date/timestamp"] if t_idx is None else []
        raise DataUnavailable(
            f"{where} lacks column(s) {', '.join(need + missing)} (header: {lines[0].strip()})"
        )
    idx = [header.index(f) for f in _FIELDS]
    body = lines[1:]

    num: np.ndarray | None = None
    times: list[str]
    if '"' not in text:
        try:
            # numpy's C reader is ~5x faster than csv + float(); it parses only these columns,
            # so empty values in ignored columns (``amount``) do not matter.
            num = np.loadtxt(body, delimiter=",", usecols=idx, dtype=np.float64, ndmin=2)
        except ValueError:
            num = None  # an empty or odd value in a used column: take the careful path below
        times = [ln.split(",", t_idx + 1)[t_idx] for ln in body]
    if num is None:
        rows = [r for r in csv.reader(body) if r]
        width = max(idx + [t_idx]) + 1
        rows = [r + [""] * (width - len(r)) for r in rows]
        times = [r[t_idx] for r in rows]
        num = np.column_stack([_to_float([r[i] for r in rows]) for i in idx])

    time = _to_time(times, where)
    ok = np.isfinite(num[:, :4]).all(axis=1)
    if not ok.all():
        time, num = time[ok], num[ok]
    if time.shape[0] > 1 and not (time[1:] > time[:-1]).all():
        order = np.argsort(time, kind="stable")
        time, num = time[order], num[order]
        keep = np.r_[time[1:] != time[:-1], True]
        time, num = time[keep], num[keep]
    out = {"time": time}
    for j, f in enumerate(_FIELDS):
        out[f] = np.ascontiguousarray(num[:, j])
    return out


def load_series(path: Path, partial_last_bar: bool) -> Series:
    """Parse ``path`` once per process; later calls return the same read-only arrays."""
    key = str(path)
    found = _series.get(key)
    if found is not None:
        return found
    with _lock_for(key):
        found = _series.get(key)
        if found is not None:
            return found
        cols = parse_ohlcv(_read_text(path), path.name)
        dropped = None
        if partial_last_bar and cols["time"].shape[0] > 1:
            dropped = cols["time"][-1]
            cols = {k: a[:-1] for k, a in cols.items()}
        for a in cols.values():
            a.setflags(write=False)
        found = Series(dropped_time=dropped, **cols)
        _series[key] = found
        return found


def _load_table(path: Path) -> list[dict[str, str]]:
    key = str(path)
    found = _tables.get(key)
    if found is not None:
        return found
    with _lock_for(key):
        found = _tables.get(key)
        if found is None:
            reader = csv.DictReader(_read_text(path).splitlines())
            found = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
            _tables[key] = found
        return found


def _load_manifest(data_dir: Path) -> dict[str, Any]:
    key = str(data_dir)
    found = _manifests.get(key)
    if found is not None:
        return found
    path = data_dir / "manifest.json"
    if not path.is_file() and data_dir != BUNDLED_DIR:
        # A data_dir without its own manifest (a user's CSVs, or the uncompressed source
        # folder): its symbols are whatever files it holds.
        found = discover_manifest(data_dir)
        _manifests[key] = found
        return found
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServiceError(
            ErrorCode.INTERNAL, f"market data manifest {path} is unreadable: {exc}"
        ) from None
    _manifests[key] = found
    return found


_MARKET_DEFAULTS: dict[str, dict[str, Any]] = {
    "us": {"kind": "stock", "exchange": "US", "currency": "USD"},
    "cn": {"kind": "stock", "exchange": "SZ", "currency": "CNY"},
    "crypto": {"kind": "crypto", "exchange": "BINANCE", "currency": ""},
}


def _sha256_of(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return hashlib.sha256(data).hexdigest()


def discover_manifest(data_dir: Path) -> dict[str, Any]:
    """A manifest for a folder of the bundled layout that has none.

    ``us/SYMBOL.csv``, ``cn/CODE.csv`` and ``crypto/PAIR_1d.csv`` / ``PAIR_1h.csv`` (each
    optionally ``.gz``) become symbols named by their files; columns are found by header, as
    for the bundled files. A symbol the package knows (same market and name) takes its name,
    sector and kind from the package's manifest; a file identical to a packaged source (the
    uncompressed source folder) also takes its notes, such as a partial last bar. Anything
    else gets the market's defaults and no name beyond its symbol: names and sectors are
    optional. Files whose name is not a symbol are skipped.
    """
    package = _load_manifest(BUNDLED_DIR)
    files: dict[str, dict[str, Any]] = {}
    symbols: dict[str, dict[str, Any]] = {}
    for market, defaults in _MARKET_DEFAULTS.items():
        folder = data_dir / market
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            name = path.name
            stem = name[:-7] if name.endswith(".csv.gz") else name[:-4]
            if not (name.endswith(".csv.gz") or name.endswith(".csv")):
                continue
            timeframe = "1d"
            if market == "crypto":
                base, _, suffix = stem.rpartition("_")
                if suffix.lower() in ("1d", "1h"):
                    stem, timeframe = base, suffix.lower()
            try:
                symbol = normalize_symbol(stem)
            except InvalidParams:
                continue
            rel = f"{market}/{name}"
            known = package["files"].get(rel) or package["files"].get(rel + ".gz")
            same = known is not None and known.get("sha256") == _sha256_of(path)
            entry: dict[str, Any] = {"kind": "bars", "market": market, "symbol": symbol}
            entry["timeframe"] = timeframe
            if same and known is not None:
                entry |= {k: known[k] for k in ("volume_unit", "adjustment", "notes") if k in known}
                entry["partial_last_bar"] = bool(known.get("partial_last_bar"))
            else:
                entry["partial_last_bar"] = False
            files[rel] = entry
            meta = package["symbols"].get(symbol)
            if meta is not None and meta.get("market") == market:
                info = {k: v for k, v in meta.items() if k != "series"}
            else:
                info = {"market": market, "name": symbol, "sector": None, "industry": None}
                info |= defaults
                if market == "cn":
                    info["exchange"] = "SH" if symbol.startswith(("6", "9")) else "SZ"
                if market == "crypto":
                    info["currency"] = next(
                        (q for q in ("USDT", "USDC", "BUSD", "USD", "BTC") if symbol.endswith(q)),
                        "",
                    )
            symbols.setdefault(symbol, info | {"series": {}})["series"][timeframe] = rel
    return {
        "format": package.get("format"),
        "description": f"discovered from the files in {data_dir}",
        "discovered": True,
        "benchmarks": package.get("benchmarks"),
        "files": files,
        "symbols": symbols,
    }


def _num(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if np.isfinite(x) else None


class BundledProvider(BaseProvider):
    """Serves the bundled files (or a folder with the same layout given as ``data_dir``)."""

    name = "bundled"
    static = True

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser() if data_dir else BUNDLED_DIR
        if not self.data_dir.is_dir():
            raise ServiceError(
                ErrorCode.INTERNAL,
                f"market_data.data_dir {str(self.data_dir)!r} is not a directory; "
                "unset it to use the bundled data",
            )
        self.manifest = _load_manifest(self.data_dir)
        self._files: dict[str, dict[str, Any]] = self.manifest["files"]
        self._infos: dict[str, SymbolInfo] = {}
        for sym, meta in self.manifest["symbols"].items():
            native = set(meta["series"])
            timeframes = tuple(tf for tf, nat in NATIVE_FOR.items() if nat in native)
            daily = self._files[meta["series"].get("1d") or next(iter(meta["series"].values()))]
            self._infos[sym] = SymbolInfo(
                symbol=sym,
                market=meta["market"],
                kind=meta["kind"],
                name=meta["name"],
                exchange=meta["exchange"],
                currency=meta["currency"],
                timeframes=timeframes,
                sector=meta.get("sector"),
                industry=meta.get("industry"),
                adjustment=daily.get("adjustment"),
                volume_unit=daily.get("volume_unit"),
                extra={"series": meta["series"]},
            )
        self._names = {s: i.name for s, i in self._infos.items()}

    # --- catalogue ---------------------------------------------------------------------------

    def symbols(self, market: str | None = None) -> list[SymbolInfo]:
        wanted = normalize_market(market) if market is not None else None
        return [i for i in self._infos.values() if wanted is None or i.market == wanted]

    def find(self, canonical: str) -> SymbolInfo | None:
        return self._infos.get(canonical)

    def resolve(self, symbol: str) -> SymbolInfo:
        canonical = normalize_symbol(symbol)
        info = self._infos.get(canonical)
        if info is not None:
            return info
        suggestions = suggest_symbols(canonical, self._names)
        if suggestions:
            hint = f"did you mean {' or '.join(suggestions)}?"
        else:
            counts = {
                m: sum(1 for i in self._infos.values() if i.market == m)
                for m in ("us", "cn", "crypto")
            }
            if self.data_dir == BUNDLED_DIR:
                where, examples = "the bundled data", "AAPL, 600519, BTCUSDT"
            else:  # a user's folder: one of its own symbols per market
                firsts = {i.market: i.symbol for i in reversed(list(self._infos.values()))}
                where = str(self.data_dir)
                examples = ", ".join(firsts[m] for m in ("us", "cn", "crypto") if m in firsts)
            hint = (
                f"{where} has {counts['us']} US, {counts['cn']} CN and "
                f"{counts['crypto']} crypto symbols (e.g. {examples})"
            )
        raise InvalidParams(
            f"unknown symbol {symbol!r}; {hint}",
            {"symbol": symbol, "suggestions": suggestions},
        )

    # --- bars --------------------------------------------------------------------------------

    def _path(self, rel: str) -> Path:
        path = self.data_dir / rel
        if path.is_file():
            return path
        if rel.endswith(".gz") and (self.data_dir / rel[:-3]).is_file():
            return self.data_dir / rel[:-3]
        raise DataUnavailable(f"market data file {rel} is missing from {self.data_dir}")

    def series(self, symbol: str, native: str) -> Series:
        """The whole stored series of a native timeframe (partial last bar already removed)."""
        info = self.resolve(symbol)
        rel = info.extra["series"][native]
        return load_series(self._path(rel), bool(self._files[rel].get("partial_last_bar")))

    def bars(self, symbol: str, timeframe: str = "1d", as_of: AsOfLike = None) -> Bars:
        info = self.resolve(symbol)
        tf = self.check_timeframe(info, timeframe)
        native = NATIVE_FOR[tf]
        s = self.series(info.symbol, native)
        return point_in_time(
            symbol=info.symbol,
            market=info.market,
            native=native,
            timeframe=tf,
            time=s.time,
            open=s.open,
            high=s.high,
            low=s.low,
            close=s.close,
            volume=s.volume,
            as_of=parse_as_of(as_of),
            dropped_time=s.dropped_time,
        )

    def file_meta(self, symbol: str, timeframe: str = "1d") -> dict[str, Any]:
        """The manifest entry (units, adjustment, source) behind a symbol's timeframe."""
        info = self.resolve(symbol)
        tf = self.check_timeframe(info, timeframe)
        return dict(self._files[info.extra["series"][NATIVE_FOR[tf]]])

    # --- fundamentals ------------------------------------------------------------------------

    def _table(self, rel: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
        return _load_table(self._path(rel)), self._files[rel]

    def fundamentals(self, symbol: str) -> dict[str, Any] | None:
        """Static company facts; ``None`` for ETFs, indices and crypto.

        These are single snapshots (``point_in_time: false``), taken after the price files
        end, so they must not feed a backtest as if known at an earlier as_of.
        """
        info = self.resolve(symbol)
        if info.kind != "stock":
            return None
        if info.market == "us":
            return self._us_fundamentals(info)
        if info.market == "cn":
            return self._cn_fundamentals(info)
        return None

    def _us_fundamentals(self, info: SymbolInfo) -> dict[str, Any] | None:
        fin_rows, fin_meta = self._table("fundamentals/us_sp500_constituents_financials.csv.gz")
        con_rows, con_meta = self._table("fundamentals/us_sp500_constituents.csv.gz")
        fin = next((r for r in fin_rows if r.get("Symbol") == info.symbol), None)
        con = next((r for r in con_rows if r.get("Symbol") == info.symbol), None)
        if fin is None and con is None:
            return None
        fin, con = fin or {}, con or {}
        market_cap = _num(fin.get("Market Cap"))
        ebitda = _num(fin.get("EBITDA"))
        return {
            "symbol": info.symbol,
            "market": "us",
            "name": con.get("Security") or fin.get("Name") or info.name,
            "classification": "GICS",
            "sector": con.get("GICS Sector") or None,
            "sub_industry": con.get("GICS Sub-Industry") or fin.get("Sector") or None,
            "headquarters": con.get("Headquarters Location") or None,
            "sp500_date_added": con.get("Date added") or None,
            "founded": con.get("Founded") or None,
            "currency": "USD",
            "price": _num(fin.get("Price")),
            "pe_ratio": _num(fin.get("Price/Earnings")),
            "eps": _num(fin.get("Earnings/Share")),
            "market_cap": int(market_cap) if market_cap is not None else None,
            "ebitda": int(ebitda) if ebitda is not None else None,
            "dividend_yield": _num(fin.get("Dividend Yield")),  # a fraction: 0.0035 = 0.35%
            "price_to_sales": _num(fin.get("Price/Sales")),
            "price_to_book": _num(fin.get("Price/Book")),
            "low_52w": _num(fin.get("52 Week Low")),
            "high_52w": _num(fin.get("52 Week High")),
            "snapshot_date": fin_meta.get("snapshot_date"),
            "point_in_time": False,
            "note": (
                "single snapshot of about 2026-08-22, after the bundled prices end; "
                "not point-in-time, do not use it as if known at an earlier as_of"
            ),
            "source": {
                "financials": {k: fin_meta["source"][k] for k in ("repo", "commit", "license")},
                "classification": {k: con_meta["source"][k] for k in ("repo", "commit", "license")},
            },
        }

    def _cn_fundamentals(self, info: SymbolInfo) -> dict[str, Any] | None:
        rows, meta = self._table("fundamentals/cn_stocklist.csv.gz")
        row = next((r for r in rows if r.get("symbol") == info.symbol), None)
        if row is None:
            return None
        return {
            "symbol": info.symbol,
            "market": "cn",
            "name": row.get("name") or info.name,
            "ts_code": row.get("ts_code") or None,
            "classification": "Tushare stock_basic industry",
            "industry": row.get("industry") or None,
            "area": row.get("area") or None,
            "currency": "CNY",
            "snapshot_date": meta.get("snapshot_date"),
            "point_in_time": False,
            "note": "classification only: no A-share valuation (P/E, market cap) is bundled",
            "source": {k: meta["source"][k] for k in ("repo", "commit", "license")},
        }

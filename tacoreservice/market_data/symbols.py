"""Symbol and timeframe vocabulary shared by every market data provider.

Clients of several generations send the same instrument in different spellings (``600519.SS``
from Yahoo, ``sh600519`` from AkShare, ``BTC/USDT`` from ccxt). Everything is reduced to one
canonical form here, before any lookup, so caches, answers and suggestions agree.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tacoreservice.protocol.errors import InvalidParams

__all__ = [
    "MARKETS",
    "SYMBOL_MAX_LENGTH",
    "SYMBOL_PATTERN",
    "TIMEFRAMES",
    "SymbolInfo",
    "benchmark_for",
    "check_symbol_text",
    "normalize_market",
    "normalize_symbol",
    "normalize_timeframe",
    "suggest_symbols",
]

MARKETS: tuple[str, ...] = ("us", "cn", "crypto")

# Ordered from finest to coarsest; error messages list them in this order.
TIMEFRAMES: tuple[str, ...] = ("1h", "4h", "1d", "1w")

_TIMEFRAME_ALIASES: dict[str, str] = {
    "1h": "1h", "h": "1h", "60m": "1h", "60min": "1h", "1hour": "1h", "hour": "1h", "hourly": "1h",
    "4h": "4h", "240m": "4h", "240min": "4h", "4hour": "4h",
    "1d": "1d", "d": "1d", "day": "1d", "daily": "1d", "1day": "1d", "24h": "1d",
    "1w": "1w", "w": "1w", "1wk": "1w", "week": "1w", "weekly": "1w", "1week": "1w",
}  # fmt: skip

_BENCHMARKS: dict[str, str] = {"us": "SPY", "cn": "CSI300", "crypto": "BTCUSDT"}

_MARKET_ALIASES: dict[str, str] = {
    "us": "us", "usa": "us", "nasdaq": "us", "nyse": "us",
    "cn": "cn", "china": "cn", "a": "cn", "ashare": "cn", "a-share": "cn", "a_share": "cn",
    "crypto": "crypto", "cryptocurrency": "crypto", "binance": "crypto",
}  # fmt: skip

# The one shape every symbol must have wherever it enters (params models, lists, portfolio
# keys, the paper calendar), checked on the raw text before any case folding: str.upper()
# turns some non-ASCII letters into ASCII ones (the ligature "\ufb01" becomes "FI"), and a
# symbol must not become another one that way. ":", "^" and "=" are allowed for the spellings
# of live providers (^GSPC, EURUSD=X, BINANCE:BTCUSDT) even though no bundled form uses them.
SYMBOL_MAX_LENGTH = 32
SYMBOL_PATTERN = re.compile(r"\^?[A-Za-z0-9][A-Za-z0-9._/:=^\-]{0,31}")
_SYMBOL_CHARS = re.compile(r"[A-Za-z0-9._/:=^\-]+")
_SYMBOL_RULE = (
    f"1 to {SYMBOL_MAX_LENGTH} characters: ASCII letters, digits and . / - _ : ^ =, "
    "starting with a letter or digit (or ^)"
)
_CN_PREFIX = re.compile(r"(SH|SS|SZ|BJ)(\d{6})")
_CN_SUFFIX = re.compile(r"(\d{6})\.([A-Z]{1,4})")
_CN_BARE = re.compile(r"\d{6}")
_PAIR = re.compile(r"([A-Z0-9]{2,12})[/_\-]([A-Z0-9]{2,8})")
_SHARE_CLASS = re.compile(r"([A-Z]{1,5})[.\-/]([A-Z])")
_US_SUFFIX = re.compile(r"([A-Z][A-Z0-9]{0,5}(?:\.[A-Z])?)\.US")
_PLAIN = re.compile(r"[A-Z0-9]{1,20}")

# Quote currencies that mark "BASE<sep>QUOTE" as a crypto pair rather than a share class.
_CRYPTO_QUOTES = frozenset({"USDT", "USDC", "BUSD", "FDUSD", "TUSD", "USD", "BTC", "ETH", "BNB"})
_CN_SUFFIXES = {"SH": "SH", "SS": "SH", "SZ": "SZ", "BJ": "BJ"}
# Both exchange codes of the CSI 300 index (Shanghai 000300, Shenzhen 399300) and common names.
_CSI300_ALIASES = frozenset({"CSI300", "HS300", "SHSZ300", "CSI300.SH"})

_FORMS_HINT = "use a ticker such as AAPL, 600519 (or 600519.SH), BTCUSDT (or BTC/USDT), CSI300"


@dataclass(frozen=True)
class SymbolInfo:
    """What a provider knows about one instrument, independent of its bars."""

    symbol: str  # canonical, as returned by normalize_symbol
    market: str  # "us" | "cn" | "crypto"
    kind: str  # "stock" | "etf" | "index" | "crypto"
    name: str
    exchange: str  # "US", "SH", "SZ", "BJ", "BINANCE"
    currency: str  # "USD", "CNY", "USDT"
    timeframes: tuple[str, ...] = ("1d", "1w")
    sector: str | None = None
    industry: str | None = None
    adjustment: str | None = None  # "yfinance auto_adjust" | "tushare qfq" | "raw"
    volume_unit: str | None = None  # "shares" | "lots of 100 shares" | "base asset units"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["timeframes"] = list(self.timeframes)
        out.pop("extra")
        return out


def normalize_market(market: str) -> str:
    key = str(market).strip().lower()
    found = _MARKET_ALIASES.get(key)
    if found is None:
        raise InvalidParams(
            f"unknown market {market!r}; use one of {', '.join(MARKETS)}",
            {"market": market, "valid": list(MARKETS)},
        )
    return found


def benchmark_for(market: str) -> str:
    """The symbol used as the market's benchmark (it is in the bundled data for each market)."""
    return _BENCHMARKS[normalize_market(market)]


def normalize_timeframe(timeframe: str) -> str:
    """``1D``/``day``/``daily`` -> ``1d``, ``1H``/``60m`` -> ``1h``, ``1W``/``weekly`` -> ``1w``, ..."""
    key = str(timeframe).strip().lower() if timeframe is not None else ""
    found = _TIMEFRAME_ALIASES.get(key)
    if found is None:
        raise InvalidParams(
            f"unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)} "
            "(aliases such as 1D, daily, 60m, weekly are accepted)",
            {"timeframe": timeframe, "valid": list(TIMEFRAMES)},
        )
    return found


def _bad(raw: object, why: str) -> InvalidParams:
    return InvalidParams(f"invalid symbol {raw!r}: {why}; {_FORMS_HINT}", {"symbol": raw})


def check_symbol_text(raw: str) -> str:
    """``raw`` without surrounding whitespace if it has the shape of a symbol.

    Raises ``ValueError`` saying what is allowed (pydantic prefixes the field's name). This
    checks the characters and length only; :func:`normalize_symbol` then checks the spelling
    and the provider's ``resolve`` whether the symbol exists.
    """
    s = raw.strip()
    if not s:
        raise ValueError(f"a symbol must not be empty; {_FORMS_HINT}")
    if len(s) > SYMBOL_MAX_LENGTH:
        raise ValueError(
            f"a symbol is at most {SYMBOL_MAX_LENGTH} characters, got {len(s)} "
            f"({s[:20]!r}...); {_FORMS_HINT}"
        )
    if not SYMBOL_PATTERN.fullmatch(s):
        why = (
            "only letters, digits and . / - _ : ^ = are allowed"
            if not _SYMBOL_CHARS.fullmatch(s)
            else "it must start with a letter or digit"
        )
        raise ValueError(f"invalid symbol {s!r}: {why} ({_SYMBOL_RULE}); {_FORMS_HINT}")
    return s


def _cn_code(raw: str, code: str, exchange: str | None) -> str:
    if code == "000300" and exchange in (None, "SH"):
        return "CSI300"
    if code == "399300" and exchange in (None, "SZ"):
        return "CSI300"
    if exchange == "SH" and code.startswith("000"):
        # 000xxx.SH are Shanghai index codes (000001.SH is the SSE Composite), while 000xxx.SZ
        # are Shenzhen stocks (000001.SZ is Ping An Bank): silently dropping the suffix would
        # answer with the wrong instrument.
        raise _bad(
            raw,
            f"{code}.SH is a Shanghai index code, not the Shenzhen stock {code}.SZ; "
            "the only bundled index is CSI300",
        )
    if exchange == "SZ" and code[0] in "569":
        raise _bad(raw, f"{code} is listed in Shanghai; write {code}.SH or {code}")
    if exchange == "SH" and code[0] in "0123":
        raise _bad(raw, f"{code} is listed in Shenzhen; write {code}.SZ or {code}")
    return code


def normalize_symbol(raw: str) -> str:
    """Reduce any accepted spelling of a symbol to its canonical form.

    AAPL, aapl -> AAPL; 600519, 600519.SH, 600519.SS, SH600519 -> 600519; 000001.SZ -> 000001;
    BTCUSDT, BTC/USDT, btc-usdt, BTC_USDT -> BTCUSDT; CSI300, 000300.SH -> CSI300.
    This checks the spelling only; whether the symbol exists is the provider's ``resolve``.
    """
    if not isinstance(raw, str):
        raise _bad(raw, f"expected a string, got {type(raw).__name__}")
    return _normalize_text(raw)


@functools.lru_cache(maxsize=4096)
def _normalize_text(raw: str) -> str:
    # Cached: every market-data request normalises its symbol with up to nine regular
    # expressions, and a service sees the same few hundred symbols again and again. A
    # spelling that raises is not cached.
    s = raw.strip()
    if not s:
        raise _bad(raw, "it is empty")
    if len(s) > SYMBOL_MAX_LENGTH:
        raise _bad(raw[:40], f"longer than {SYMBOL_MAX_LENGTH} characters")
    if not _SYMBOL_CHARS.fullmatch(s):
        raise _bad(raw, "only letters, digits and . / - _ : ^ = are allowed")
    s = s.upper()
    if s in _CSI300_ALIASES:
        return "CSI300"

    if m := _CN_PREFIX.fullmatch(s):
        return _cn_code(raw, m.group(2), _CN_SUFFIXES[m.group(1)])
    if m := _CN_SUFFIX.fullmatch(s):
        exchange = _CN_SUFFIXES.get(m.group(2))
        if exchange is None:
            raise _bad(raw, f"unknown exchange suffix .{m.group(2)} (use .SH, .SS, .SZ or .BJ)")
        return _cn_code(raw, m.group(1), exchange)
    if _CN_BARE.fullmatch(s):
        return _cn_code(raw, s, None)

    if m := _US_SUFFIX.fullmatch(s):
        return m.group(1)
    if m := _PAIR.fullmatch(s):
        base, quote = m.groups()
        if quote in _CRYPTO_QUOTES and base != quote:
            return base + quote
    if m := _SHARE_CLASS.fullmatch(s):
        return f"{m.group(1)}.{m.group(2)}"
    if _PLAIN.fullmatch(s):
        return s
    raise _bad(raw, "not a recognised symbol form")


def suggest_symbols(query: str, known: Mapping[str, str], limit: int = 5) -> list[str]:
    """Close matches for an unknown symbol, by ticker spelling first, then by company name.

    ``known`` maps canonical symbol -> display name.
    """
    q = query.strip().upper()
    out: list[str] = []

    def add(items: Iterable[str]) -> None:
        for item in items:
            if item not in out:
                out.append(item)

    symbols = list(known)
    add(difflib.get_close_matches(q, symbols, n=limit, cutoff=0.6))
    if len(q) >= 2:
        # "BTC" -> BTCUSDT, "600" -> 600xxx: a prefix is a strong hint that difflib scores low.
        add(sorted(s for s in symbols if s.startswith(q))[:limit])
    if len(q) >= 3:
        lowered = {name.lower(): sym for sym, name in known.items() if name}
        ql = query.strip().lower()
        add(sym for name, sym in lowered.items() if name.startswith(ql) or f" {ql}" in name)
        words: dict[str, str] = {}
        for name, sym in lowered.items():
            words.setdefault(name.split(" ")[0].strip(",."), sym)
        add(words[w] for w in difflib.get_close_matches(ql, list(words), n=limit, cutoff=0.75))
    return out[:limit]


# Bars per year, to annualise and to size return horizons. Exchanges trade about 252 days a
# year, crypto every day. Intraday stock bars are counted as the providers label them: Yahoo
# gives 7 hourly bars per US session, which fall into 2 or 3 UTC 4-hour blocks depending on
# daylight saving time (3 is used). Only live providers serve stock bars intraday; the bundled
# intraday data is crypto only.
_STOCK_PPY = {"1d": 252.0, "1w": 52.0, "1h": 252.0 * 7, "4h": 252.0 * 3}
_CRYPTO_PPY = {"1d": 365.0, "1w": 52.0, "1h": 365.0 * 24, "4h": 365.0 * 6}


def periods_per_year(market: str, timeframe: str) -> float:
    """Bars per year of ``timeframe`` in ``market`` (one table for analysis and backtests)."""
    table = _CRYPTO_PPY if market == "crypto" else _STOCK_PPY
    return table[normalize_timeframe(timeframe)]

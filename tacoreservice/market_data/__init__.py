"""Market data: bars, symbols and fundamentals behind one provider interface.

The default provider serves real history bundled with the package (offline, reproducible);
see ``bundled/SOURCES.md`` for where each file came from.
"""

from tacoreservice.market_data.provider import (
    Bars,
    MarketDataProvider,
    load_provider,
    parse_as_of,
)
from tacoreservice.market_data.symbols import (
    SymbolInfo,
    benchmark_for,
    normalize_symbol,
    normalize_timeframe,
)

__all__ = [
    "Bars",
    "MarketDataProvider",
    "SymbolInfo",
    "benchmark_for",
    "load_provider",
    "normalize_symbol",
    "normalize_timeframe",
    "parse_as_of",
]

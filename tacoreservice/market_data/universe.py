"""A market's universe: the symbols its cross-section is made of, and subsets of it.

:func:`universe_infos` says which of a provider's symbols make up a market's cross-section.
:class:`SubsetProvider` is a provider that lists only some of another provider's symbols.

The calibrated model's universe is whatever ``provider.symbols()`` lists, so evaluating on a
held-out half of the symbols (or on any chosen set) means handing every part of the engine a
provider whose catalogue *is* that half: the calibration, the cross-sectional ranks and the
scan then never see the other half. Bars, fundamentals and benchmarks are the inner
provider's; a symbol outside the subset still resolves (a benchmark must), it is only not part
of any universe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from tacoreservice.market_data.symbols import SymbolInfo, normalize_market

__all__ = ["SubsetProvider", "split_symbols", "universe_infos"]


def universe_infos(provider: Any, market: str) -> list[SymbolInfo]:
    """The symbols a market's cross-section is made of: its stocks (or crypto pairs) with
    daily bars; benchmarks (indices, ETFs) are measured against it, not ranked in it."""
    return [
        i
        for i in provider.symbols(market)
        if i.kind in ("stock", "crypto") and "1d" in i.timeframes
    ]


class SubsetProvider:
    def __init__(self, inner: Any, symbols: Iterable[str]) -> None:
        self.inner = inner
        self.keep = frozenset(inner.resolve(s).symbol for s in symbols)
        self.name = getattr(inner, "name", "")
        digest = hashlib.sha256(",".join(sorted(self.keep)).encode()).hexdigest()[:12]
        # Part of every cache key (provider_key): a subset's panels and fits are its own.
        self.data_dir = f"{getattr(inner, 'data_dir', '')}#subset-{digest}"

    def symbols(self, market: str | None = None) -> list[SymbolInfo]:
        return [i for i in self.inner.symbols(market) if i.symbol in self.keep]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def split_symbols(provider: Any, part: str) -> list[str]:
    """``dev`` or ``holdout``: every other symbol of each market's universe (stocks and crypto,
    in symbol order), so both halves span every market and sector mix; ``all``: every one."""
    out: list[str] = []
    for market in ("us", "cn", "crypto"):
        names = sorted(i.symbol for i in universe_infos(provider, normalize_market(market)))
        if part == "dev":
            out += names[0::2]
        elif part == "holdout":
            out += names[1::2]
        elif part == "all":
            out += names
        else:
            raise ValueError(f"part must be dev, holdout or all, not {part!r}")
    return out

"""Bundled market data cut short, for no-look-ahead tests."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from tacoreservice.market_data.bundled_provider import BUNDLED_DIR, BundledProvider


def _write_truncated(src: Path, dst: Path, last_day: str) -> None:
    """Copy an OHLCV csv.gz keeping only the rows dated on or before ``last_day``."""
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln[:10] <= last_day]
    assert len(kept) < len(lines)  # there really were later bars to remove
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(gzip.compress(("\n".join(kept) + "\n").encode()))


def truncated_provider(
    root: Path, last_day: str, files: tuple[str, ...] = ("us/AAPL.csv.gz", "us/SPY.csv.gz")
) -> BundledProvider:
    """A provider over ``root`` whose ``files`` end on ``last_day`` (AAPL and its benchmark SPY
    by default); the fundamentals are copied as they are."""
    for rel in files:
        _write_truncated(BUNDLED_DIR / rel, root / rel, last_day)
    shutil.copytree(BUNDLED_DIR / "fundamentals", root / "fundamentals")
    return BundledProvider(data_dir=root)

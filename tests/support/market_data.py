"""Bundled market data cut short, for no-look-ahead tests."""

from __future__ import annotations

import gzip
import json
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


def daily_files() -> tuple[str, ...]:
    """Every daily file of the bundle: the whole universe, benchmarks included."""
    manifest = json.loads((BUNDLED_DIR / "manifest.json").read_text(encoding="utf-8"))
    return tuple(
        sorted(
            rel
            for meta in manifest["symbols"].values()
            for tf, rel in meta["series"].items()
            if tf == "1d"
        )
    )


def truncated_provider(
    root: Path, last_day: str, files: tuple[str, ...] | None = None
) -> BundledProvider:
    """A provider over ``root`` whose ``files`` end on ``last_day``: by default every daily
    file, so nothing after ``last_day`` exists for any symbol (the calibration's universe
    included); the fundamentals are copied as they are."""
    manifest = json.loads((BUNDLED_DIR / "manifest.json").read_text(encoding="utf-8"))
    for rel in files if files is not None else daily_files():
        _write_truncated(BUNDLED_DIR / rel, root / rel, last_day)
        # Its last bar is now a complete one: the source's partial bar was cut away.
        manifest["files"][rel]["partial_last_bar"] = False
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    shutil.copytree(BUNDLED_DIR / "fundamentals", root / "fundamentals")
    return BundledProvider(data_dir=root)

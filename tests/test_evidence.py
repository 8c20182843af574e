"""Evidence layer: shape, hand-checked indicator values, determinism and point-in-time."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from tacoreservice.analysis import compute_evidence
from tacoreservice.analysis.evidence import (
    clear_caches,
    fundamentals_usable,
    horizon_bars,
    periods_per_year,
)
from tacoreservice.analysis.universe import symbol_sectors, universe_features
from tacoreservice.market_data.bundled_provider import BUNDLED_DIR, BundledProvider
from tacoreservice.protocol.errors import DataUnavailable, InvalidParams

AS_OF = "2025-06-30"

TECHNICAL_KEYS = {
    "sma_20", "sma_50", "sma_200", "ema_20", "ema_50", "ema_200", "macd", "macd_signal",
    "macd_hist", "rsi_14", "bb_upper", "bb_middle", "bb_lower", "bb_pct_b", "bb_width",
    "atr_14", "atr_pct", "adx_14", "plus_di", "minus_di", "obv", "obv_slope_20", "stoch_k",
    "stoch_d", "kdj_j", "volume", "avg_volume_20", "volume_ratio", "high_52w", "low_52w",
    "pct_from_52w_high", "ma_cross", "trend",
}  # fmt: skip


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


def read_bundled(rel: str, until: str) -> dict[str, list[float]]:
    """Columns of a bundled CSV up to ``until`` (inclusive), parsed here, not by the provider."""
    with gzip.open(BUNDLED_DIR / rel, "rt", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["Date"] <= until]
    return {k: [float(r[k]) for r in rows] for k in ("Close", "High", "Low", "Volume")}


def truncated_data_dir(tmp: Path, market: str, until: str) -> Path:
    """A data_dir holding ``market``'s bar files cut after ``until`` and the fundamentals.

    Its manifest says that no file ends in a partial bar any more: the cut removed them."""
    manifest = json.loads((BUNDLED_DIR / "manifest.json").read_text(encoding="utf-8"))
    for meta in manifest["files"].values():
        meta["partial_last_bar"] = False
    (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for src in sorted((BUNDLED_DIR / market).glob("*.csv.gz")):
        lines = gzip.decompress(src.read_bytes()).decode("utf-8").splitlines()
        kept = [lines[0]] + [ln for ln in lines[1:] if ln.split(",", 1)[0][:10] <= until]
        dest = tmp / market / src.name[: -len(".gz")]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("\n".join(kept) + "\n", encoding="utf-8")
    (tmp / "fundamentals").mkdir()
    for src in (BUNDLED_DIR / "fundamentals").iterdir():
        (tmp / "fundamentals" / src.name).write_bytes(src.read_bytes())
    return tmp


def walk_numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in walk_numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in walk_numbers(v)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_shape_is_json_ready_and_complete(provider: BundledProvider) -> None:
    ev = compute_evidence(provider, "AAPL", AS_OF)
    assert set(ev) == {
        "symbol", "market", "kind", "name", "currency", "timeframe", "as_of", "bars", "price",
        "forecast",
        "change_pct", "technical", "returns", "risk", "relative_strength", "fundamentals",
        "missing",
    }  # fmt: skip
    assert set(ev["technical"]) == TECHNICAL_KEYS
    assert set(ev["returns"]) == {"1w", "1m", "3m", "1y"}
    assert set(ev["risk"]) == {
        "volatility_20d_ann", "volatility_1y_ann", "max_drawdown_1y", "max_drawdown_all",
    }  # fmt: skip
    assert {
        "benchmark",
        "excess_return_3m",
        "excess_return_1y",
        "beta_1y",
        "correlation_1y",
    } <= set(ev["relative_strength"])
    assert (ev["symbol"], ev["market"], ev["kind"], ev["currency"]) == (
        "AAPL",
        "us",
        "stock",
        "USD",
    )
    assert ev["as_of"] == "2025-06-30" and ev["timeframe"] == "1d"
    assert orjson.loads(orjson.dumps(ev)) == ev
    numbers = walk_numbers(
        {k: v for k, v in ev.items() if k not in ("fundamentals", "bars", "forecast")}
    )
    assert numbers and all(isinstance(x, float) and math.isfinite(x) for x in numbers)
    f = ev["forecast"]
    assert f["available"] and f["day"] == "2025-06-30" and f["horizon_bars"] == 21
    assert 0.0 < f["p_up"] < 1.0 and f["volatility_ann"] > 0
    assert f["calibration"]["fit_day"] < "2025-06-01" and f["calibration"]["status"] == "fitted"
    assert {s["name"] for s in f["signals"]} >= {"mom_12_1", "trend", "rev_1m", "rs_bench"}
    assert ev["technical"]["trend"] in ("up", "down", "sideways")
    assert ev["technical"]["ma_cross"] in ("golden", "death", None)
    assert ev["risk"]["max_drawdown_1y"] <= 0 and ev["risk"]["max_drawdown_all"] <= 0


def test_indicators_match_hand_computation(provider: BundledProvider) -> None:
    cols = read_bundled("us/AAPL.csv.gz", AS_OF)
    close, volume = cols["Close"], cols["Volume"]
    ev = compute_evidence(provider, "AAPL", AS_OF)
    assert ev["bars"] == len(close)
    assert ev["price"] == pytest.approx(close[-1], abs=1e-6)

    sma20 = math.fsum(close[-20:]) / 20
    assert ev["technical"]["sma_20"] == pytest.approx(sma20, abs=1e-6)

    # Wilder's RSI: seeded with the plain mean of the first 14 changes, then smoothed 13/14.
    deltas = [b - a for a, b in zip(close[:-1], close[1:], strict=True)]
    gain = math.fsum(max(d, 0.0) for d in deltas[:14]) / 14
    loss = math.fsum(max(-d, 0.0) for d in deltas[:14]) / 14
    for d in deltas[14:]:
        gain = (gain * 13 + max(d, 0.0)) / 14
        loss = (loss * 13 + max(-d, 0.0)) / 14
    rsi = 100.0 - 100.0 / (1.0 + gain / loss)
    assert ev["technical"]["rsi_14"] == pytest.approx(rsi, abs=1e-5)

    assert ev["returns"]["1m"] == pytest.approx(close[-1] / close[-22] - 1, abs=1e-6)
    assert ev["returns"]["1y"] == pytest.approx(close[-1] / close[-253] - 1, abs=1e-6)
    assert ev["change_pct"] == pytest.approx((close[-1] / close[-2] - 1) * 100, abs=1e-6)
    avg20 = math.fsum(volume[-21:-1]) / 20
    assert ev["technical"]["avg_volume_20"] == pytest.approx(avg20, abs=1e-3)
    assert ev["technical"]["volume_ratio"] == pytest.approx(volume[-1] / avg20, abs=1e-6)

    # Stock volatility is annualised with 252 periods.
    logret = [math.log(b / a) for a, b in zip(close[-21:-1], close[-20:], strict=True)]
    mean = math.fsum(logret) / 20
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in logret) / 19)
    assert ev["risk"]["volatility_20d_ann"] == pytest.approx(sd * math.sqrt(252), abs=1e-6)

    peak, worst = close[0], 0.0
    for c in close:
        peak = max(peak, c)
        worst = min(worst, c / peak - 1)
    assert ev["risk"]["max_drawdown_all"] == pytest.approx(worst, abs=1e-6)


def test_kdj_follows_the_a_share_convention(provider: BundledProvider) -> None:
    cols = read_bundled("us/AAPL.csv.gz", AS_OF)
    high, low, close = cols["High"], cols["Low"], cols["Close"]
    k = d = 50.0
    for i in range(8, len(close)):
        hh, ll = max(high[i - 8 : i + 1]), min(low[i - 8 : i + 1])
        rsv = (close[i] - ll) / (hh - ll) * 100 if hh > ll else 0.0
        k = (2 * k + rsv) / 3
        d = (2 * d + k) / 3
    tech = compute_evidence(provider, "AAPL", AS_OF)["technical"]
    assert tech["stoch_k"] == pytest.approx(k, abs=1e-4)
    assert tech["stoch_d"] == pytest.approx(d, abs=1e-4)
    assert tech["kdj_j"] == pytest.approx(3 * k - 2 * d, abs=1e-3)


def test_relative_strength_against_spy_by_hand(provider: BundledProvider) -> None:
    aapl = read_bundled("us/AAPL.csv.gz", AS_OF)["Close"]
    spy = read_bundled("us/SPY.csv.gz", AS_OF)["Close"]
    assert len(aapl) == len(spy)  # same trading calendar
    rs = compute_evidence(provider, "AAPL", AS_OF)["relative_strength"]
    assert rs["benchmark"] == "SPY"
    excess = (aapl[-1] / aapl[-64] - 1) - (spy[-1] / spy[-64] - 1)
    assert rs["excess_return_3m"] == pytest.approx(excess, abs=1e-6)
    xa = np.diff(aapl[-253:]) / np.asarray(aapl[-253:-1])
    xb = np.diff(spy[-253:]) / np.asarray(spy[-253:-1])
    beta = np.polyfit(xb, xa, 1)[0]
    assert rs["beta_1y"] == pytest.approx(beta, abs=1e-6)
    assert rs["correlation_1y"] == pytest.approx(np.corrcoef(xa, xb)[0, 1], abs=1e-6)


def test_benchmark_itself_gets_none_and_a_note(provider: BundledProvider) -> None:
    for symbol in ("SPY", "CSI300", "BTCUSDT"):
        rs = compute_evidence(provider, symbol)["relative_strength"]
        assert rs["benchmark"] == symbol
        assert rs["excess_return_3m"] is None and rs["beta_1y"] is None
        assert "benchmark itself" in rs["note"]
    eth = compute_evidence(provider, "ETHUSDT")["relative_strength"]
    assert eth["benchmark"] == "BTCUSDT" and eth["beta_1y"] is not None


def test_benchmark_ending_before_the_symbol_is_noted(provider: BundledProvider) -> None:
    # TSLA's bundled history runs past SPY's last bar.
    ev = compute_evidence(provider, "TSLA")
    assert ev["as_of"] > "2026-01-08"
    assert "up to 2026-01-08" in ev["relative_strength"]["note"]


def test_deterministic_and_cache_hands_out_copies(provider: BundledProvider) -> None:
    first = compute_evidence(provider, "600519", "2024-12-31")
    first["technical"]["rsi_14"] = -1.0
    first["missing"].clear()
    again = compute_evidence(provider, "600519", "2024-12-31")
    assert again["technical"]["rsi_14"] != -1.0 and again["missing"]
    clear_caches()
    fresh = compute_evidence(provider, "600519", "2024-12-31")
    assert fresh == again
    assert compute_evidence(BundledProvider(), "600519", "2024-12-31") == fresh


@pytest.mark.parametrize("cut", ["2023-03-15", AS_OF])
def test_no_look_ahead(tmp_path: Path, provider: BundledProvider, cut: str) -> None:
    """Evidence at as_of D from the full data equals evidence from data that ends at D."""
    short = BundledProvider(truncated_data_dir(tmp_path, "us", cut))
    for symbol in ("AAPL", "NVDA"):
        full_view = compute_evidence(provider, symbol, cut)
        truncated = compute_evidence(short, symbol)
        assert full_view == truncated
        assert full_view["as_of"] <= cut
    # The same as_of one day later sees a new bar, so the comparison has teeth.
    later = compute_evidence(provider, "AAPL", "2025-07-01")
    assert later["as_of"] == "2025-07-01" and later != compute_evidence(provider, "AAPL", AS_OF)


def test_universe_features_no_look_ahead(tmp_path: Path, provider: BundledProvider) -> None:
    cut = "2024-08-30"
    short = BundledProvider(truncated_data_dir(tmp_path, "us", cut))
    symbols = ["AAPL", "JPM", "XOM"]
    full = universe_features(provider, symbols, cut, "full")
    trunc = universe_features(short, symbols, None, "full")
    assert full.as_of == trunc.as_of == ("2024-08-30",) * 3
    for name, column in full.columns.items():
        np.testing.assert_array_equal(column, trunc.columns[name], err_msg=name)


def test_short_history_lists_what_is_missing(provider: BundledProvider) -> None:
    ev = compute_evidence(provider, "AAPL", "2021-02-12")
    assert ev["bars"] == 24
    tech = ev["technical"]
    assert tech["sma_20"] is not None and tech["rsi_14"] is not None
    assert tech["sma_200"] is None and tech["macd"] is None and tech["trend"] is None
    missing = {m["what"]: m["why"] for m in ev["missing"]}
    assert "needs at least 200 1d bars; 24 available" in missing["technical.sma_200"]
    assert "technical.sma_20" not in missing
    for what in ("returns.1y", "risk.volatility_1y_ann", "relative_strength.beta_1y"):
        assert what in missing
    assert ev["returns"]["1w"] is not None and ev["returns"]["1y"] is None


def test_crypto_has_no_fundamentals_and_uses_365_days(provider: BundledProvider) -> None:
    ev = compute_evidence(provider, "BTCUSDT")
    assert ev["fundamentals"] is None
    missing = {m["what"]: m["why"] for m in ev["missing"]}
    assert "crypto" in missing["fundamentals"]
    close = provider.bars("BTCUSDT").close
    logret = np.diff(np.log(close[-21:]))
    assert ev["risk"]["volatility_20d_ann"] == pytest.approx(
        float(np.std(logret, ddof=1)) * math.sqrt(365), abs=1e-6
    )
    # One calendar month of a market that trades every day is 30 bars.
    assert ev["returns"]["1m"] == pytest.approx(float(close[-1] / close[-31] - 1), abs=1e-6)
    assert periods_per_year("crypto", "1d") == 365 and periods_per_year("us", "1d") == 252
    assert [horizon_bars(252, d) for d in (7, 30, 91, 365)] == [5, 21, 63, 252]


def test_fundamentals_kept_with_their_flags(provider: BundledProvider) -> None:
    us = compute_evidence(provider, "AAPL", AS_OF)
    fund = us["fundamentals"]
    assert fund["sector"] == "Information Technology" and fund["pe_ratio"] is not None
    assert fund["point_in_time"] is False and fund["snapshot_date"]
    whats = [m["what"] for m in us["missing"]]
    assert "point-in-time fundamentals" in whats
    cn = compute_evidence(provider, "600519")
    assert cn["fundamentals"]["industry"] == "白酒"
    missing = {m["what"]: m["why"] for m in cn["missing"]}
    assert "A-share valuation" in missing["fundamentals.pe_ratio"]
    spy = {m["what"]: m["why"] for m in compute_evidence(provider, "SPY")["missing"]}
    assert "ETF" in spy["fundamentals"]


@pytest.mark.parametrize(
    ("fund", "as_of", "usable", "why"),
    [
        ({"point_in_time": True}, "2021-01-11", True, None),
        ({"point_in_time": False, "snapshot_date": "2025-10-09"}, "2025-10-09", True, None),
        ({"snapshot_date": "2025-10-09"}, "2025-10-10T04:00:00Z", True, None),
        (
            {"point_in_time": False, "snapshot_date": "2025-10-09"},
            "2025-09-30",
            False,
            "fundamentals snapshot dated 2025-10-09 is after as_of 2025-09-30; using it would "
            "leak the future",
        ),
        ({"point_in_time": False}, "2025-09-30", False, "no snapshot date"),
        ({}, "2025-09-30", False, "no snapshot date"),
        ({"snapshot_date": "soon"}, "2025-09-30", False, "cannot be compared"),
        (None, "2025-09-30", False, "no fundamentals"),
    ],
)  # fmt: skip
def test_fundamentals_usable_only_when_known_at_as_of(
    fund: dict[str, Any] | None, as_of: str, usable: bool, why: str | None
) -> None:
    ok, reason = fundamentals_usable(fund, as_of)
    assert ok is usable
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason


def test_bundled_snapshots_are_after_every_bundled_bar(provider: BundledProvider) -> None:
    for symbol in ("AAPL", "600519"):
        ev = compute_evidence(provider, symbol)  # the last bar
        usable, why = fundamentals_usable(ev["fundamentals"], ev["as_of"])
        assert not usable and why and "leak the future" in why
        missing = {m["what"]: m["why"] for m in ev["missing"]}
        assert missing["point-in-time fundamentals"] == why


class RaisingFundamentals(BundledProvider):
    """A provider whose fundamentals fail with a third-party exception."""

    name = "bundled-raising"

    def fundamentals(self, symbol: str) -> dict[str, Any] | None:
        raise RuntimeError("boom: https://user:pw@vendor.example/?token=abc")


def test_fundamentals_exception_is_recorded_missing() -> None:
    flaky = RaisingFundamentals()
    ev = compute_evidence(flaky, "AAPL", AS_OF)
    assert ev["fundamentals"] is None and ev["technical"]["rsi_14"] is not None
    missing = {m["what"]: m["why"] for m in ev["missing"]}
    assert missing["fundamentals"] == "the provider failed to return fundamentals (RuntimeError)"
    # The scanner's sector lookup falls back to the catalogue's names.
    info = flaky.resolve("AAPL")
    assert symbol_sectors(flaky, info) == tuple(
        dict.fromkeys(str(n).strip().lower() for n in (info.sector, info.industry) if n)
    )


def test_news_and_sentiment_are_always_missing(provider: BundledProvider) -> None:
    for symbol in ("AAPL", "600519", "ETHUSDT"):
        whats = {m["what"] for m in compute_evidence(provider, symbol)["missing"]}
        assert {"news", "sentiment"} <= whats


def test_other_timeframes(provider: BundledProvider) -> None:
    weekly = compute_evidence(provider, "AAPL", AS_OF, "weekly")
    assert weekly["timeframe"] == "1w" and weekly["as_of"] == "2025-06-30"
    assert weekly["bars"] == len(provider.bars("AAPL", "1w", AS_OF))
    hourly = compute_evidence(provider, "ETHUSDT", "2025-06-30T12:00:00Z", "1h")
    assert hourly["as_of"] == "2025-06-30T11:00:00Z"  # the 11:00 bar closes at 12:00
    assert hourly["relative_strength"]["beta_1y"] is not None


def test_errors_come_from_the_provider(provider: BundledProvider) -> None:
    with pytest.raises(InvalidParams, match="AAPL"):
        compute_evidence(provider, "APPL")
    with pytest.raises(DataUnavailable):
        compute_evidence(provider, "BTCUSDT", "2021-06-01")
    with pytest.raises(InvalidParams, match="timeframe"):
        compute_evidence(provider, "AAPL", None, "1h")

"""scan.market: every params variant, each filter, errors, ranking, scan types, speed."""

from __future__ import annotations

import gzip
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tacoreservice.analysis.universe import SIGNALS_BY_SCAN_TYPE, clear_caches
from tacoreservice.config import Settings
from tacoreservice.market_data.bundled_provider import BUNDLED_DIR, BundledProvider
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.methods.scan import CRITERIA_KEYS
from tacoreservice.service.registry import MethodContext, call_method, load_plugins
from tests.support.memory_cache import DictCache

load_plugins()


@pytest.fixture
def ctx() -> MethodContext:
    return MethodContext(settings=Settings(), cache=DictCache())


def scan(ctx: MethodContext, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = call_method("scan.market", params, ctx)
    return result


def scan_error(ctx: MethodContext, **params: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        scan(ctx, **params)
    return info.value


def bundled_universe(kinds: tuple[str, ...] = ("stock", "crypto")) -> list[str]:
    return sorted(i.symbol for i in BundledProvider().symbols() if i.kind in kinds)


# --- the request shapes of DESIGN.md ---------------------------------------------------------


def test_design_example_market_and_criteria(ctx: MethodContext) -> None:
    out = scan(ctx, market="US", criteria={"min_volume": 1000000, "price_range": [10, 500]})
    assert out["market"] == "us" and out["scan_type"] == "technical"
    assert out["criteria"] == {"min_volume": 1000000.0, "price_range": [10.0, 500.0]}
    assert out["total_scanned"] == 31  # US stocks; SPY, QQQ and the XL* ETFs are not picks
    assert 0 < out["matched"] == len(out["scan_results"]) < out["total_scanned"]
    for r in out["scan_results"]:
        assert r["market"] == "us" and r["kind"] == "stock"
        assert r["volume"] >= 1_000_000 and 10 <= r["price"] <= 500
    assert isinstance(out["as_of"], str)


def test_design_example_market_type_symbols_filters(ctx: MethodContext) -> None:
    out = scan(ctx, market_type="stock", symbols=["AAPL", "GOOGL"], filters={"min_volume": 1000000})
    assert out["total_scanned"] == 2
    assert sorted(r["symbol"] for r in out["scan_results"]) == ["AAPL", "GOOGL"]
    assert out["as_of"] == "2026-01-08"
    # V3.5 scanner clients read these two.
    assert all(isinstance(r["symbol"], str) and 0 <= r["score"] <= 1 for r in out["scan_results"])


def test_design_example_symbols_comprehensive(ctx: MethodContext) -> None:
    out = scan(ctx, symbols=["BTCUSDT", "ETHUSDT"], scan_type="comprehensive")
    assert out["market"] == "crypto" and out["scan_type"] == "comprehensive"
    assert out["as_of"] == "2025-12-01"
    rows = {r["symbol"]: r for r in out["scan_results"]}
    assert set(rows) == {"BTCUSDT", "ETHUSDT"}
    assert rows["ETHUSDT"]["relative_strength"]["benchmark"] == "BTCUSDT"
    assert rows["ETHUSDT"]["relative_strength"]["excess_return_3m"] is not None
    assert rows["BTCUSDT"]["relative_strength"]["excess_return_3m"] is None
    assert rows["BTCUSDT"]["fundamentals"] is None


def test_extra_top_level_keys_are_ignored(ctx: MethodContext) -> None:
    out = scan(ctx, symbols=["AAPL"], timestamp="2026-01-01T00:00:00Z", client="v3.5")
    assert out["scan_results"][0]["symbol"] == "AAPL"


# --- universe --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "markets", "count"),
    [
        ({"market": "US"}, {"us"}, 31),
        ({"market": "us"}, {"us"}, 31),
        ({"market": "CN"}, {"cn"}, 26),
        ({"market": "crypto"}, {"crypto"}, 4),
        ({"market": "Crypto"}, {"crypto"}, 4),
        ({"market": "all"}, {"us", "cn", "crypto"}, 61),
        ({"market": "ALL"}, {"us", "cn", "crypto"}, 61),
        ({}, {"us", "cn", "crypto"}, 61),
        ({"market_type": "stock"}, {"us", "cn"}, 57),
        ({"market_type": "equity"}, {"us", "cn"}, 57),
        ({"market_type": "crypto"}, {"crypto"}, 4),
        ({"market_type": "US"}, {"us"}, 31),
        ({"market": "US", "market_type": "stock"}, {"us"}, 31),
        ({"market": "china"}, {"cn"}, 26),
    ],
)
def test_market_selection(
    ctx: MethodContext, params: dict[str, Any], markets: set[str], count: int
) -> None:
    out = scan(ctx, limit=500, **params)
    assert out["total_scanned"] == count
    assert {r["market"] for r in out["scan_results"]} == markets
    assert all(r["kind"] in ("stock", "crypto") for r in out["scan_results"])
    if len(markets) > 1:
        assert set(out["as_of"]) == markets
    else:
        assert isinstance(out["as_of"], str)


def test_default_universe_is_every_stock_and_pair(ctx: MethodContext) -> None:
    out = scan(ctx, market="all", limit=500)
    assert sorted(r["symbol"] for r in out["scan_results"]) == bundled_universe()
    # ADAUSDT and DOTUSDT run to 2026-01-06 (partial, dropped); BTC and ETH end 2025-12-01.
    assert out["as_of"] == {"cn": "2025-09-30", "crypto": "2026-01-05", "us": "2026-03-25"}


def test_indices_and_etfs_only_when_named(ctx: MethodContext) -> None:
    out = scan(ctx, symbols=["SPY", "CSI300", "QQQ", "AAPL"], limit=500)
    assert sorted(r["symbol"] for r in out["scan_results"]) == ["AAPL", "CSI300", "QQQ", "SPY"]
    assert out["market"] == "all"
    assert set(out["as_of"]) == {"us", "cn"}
    # Named with market_type stock: naming wins over the stock kind, the market still applies.
    out = scan(ctx, market_type="stock", symbols=["SPY"])
    assert [r["symbol"] for r in out["scan_results"]] == ["SPY"]


def test_symbol_spellings_and_duplicates(ctx: MethodContext) -> None:
    out = scan(ctx, symbols=["btc/usdt", "BTCUSDT", "600519.SH"])
    assert sorted(r["symbol"] for r in out["scan_results"]) == ["600519", "BTCUSDT"]
    assert out["total_scanned"] == 2
    out = scan(ctx, symbols="AAPL, MSFT")
    assert out["total_scanned"] == 2


def test_as_of_is_point_in_time_and_reports_skips(ctx: MethodContext) -> None:
    out = scan(ctx, market="all", as_of="2021-06-01", limit=500)
    # BTC, ETH and two A-shares (000858, 300750) start in 2022; ADA (2018) and DOT (2020) don't.
    assert {s["symbol"] for s in out["skipped"]} == {"BTCUSDT", "ETHUSDT", "000858", "300750"}
    assert all("2021-06-01" in s["reason"] for s in out["skipped"])
    assert out["total_scanned"] == 57
    assert all(r["as_of"] <= "2021-06-01" for r in out["scan_results"])
    assert out["as_of"] == {"cn": "2021-06-01", "crypto": "2021-06-01", "us": "2021-06-01"}


# --- criteria --------------------------------------------------------------------------------


def numbers(out: dict[str, Any], key: str) -> list[float]:
    return [r[key] for r in out["scan_results"]]


def test_each_filter_filters(ctx: MethodContext) -> None:
    base = scan(ctx, market="all", limit=500)
    total = base["matched"]
    assert total == 61

    def check(criteria: dict[str, Any], ok: Any, scan_type: str = "technical") -> None:
        out = scan(ctx, market="all", limit=500, criteria=criteria, scan_type=scan_type)
        assert 0 < out["matched"] < total, criteria
        assert all(ok(r) for r in out["scan_results"]), criteria
        # Nothing that passes is left out.
        kept = {r["symbol"] for r in out["scan_results"]}
        every = scan(ctx, market="all", limit=500, scan_type=scan_type)["scan_results"]
        assert kept == {r["symbol"] for r in every if ok(r)}, criteria

    check({"min_volume": 5_000_000}, lambda r: r["volume"] >= 5_000_000)
    check({"max_volume": 1_000_000}, lambda r: r["volume"] <= 1_000_000)
    check({"price_range": [20, 200]}, lambda r: 20 <= r["price"] <= 200)
    check({"min_price": 300}, lambda r: r["price"] >= 300)
    check({"max_price": 15}, lambda r: r["price"] <= 15)
    check({"min_price": 50, "max_price": 100}, lambda r: 50 <= r["price"] <= 100)
    check({"min_change_pct": 1.0}, lambda r: r["change_pct"] >= 1.0)
    check({"max_change_pct": -1.0}, lambda r: r["change_pct"] <= -1.0)
    check({"rsi_range": [30, 50]}, lambda r: 30 <= r["rsi_14"] <= 50)
    check({"rsi_min": 60}, lambda r: r["rsi_14"] >= 60)
    check({"rsi_max": 35}, lambda r: r["rsi_14"] <= 35)
    check({"min_volume_ratio": 1.5}, lambda r: r["volume_ratio"] >= 1.5)
    check({"signals": ["trend_up"]}, lambda r: "trend_up" in r["signals"])
    check(
        {"signals": ["rsi_oversold", "breakout"]},
        lambda r: {"rsi_oversold", "breakout"} & set(r["signals"]),
    )
    check({"min_volume": 1_000_000}, lambda r: r["volume"] >= 1_000_000, scan_type="basic")


def test_rsi_filter_works_in_a_basic_scan(ctx: MethodContext) -> None:
    out = scan(ctx, market="US", scan_type="basic", criteria={"rsi_range": [0, 40]}, limit=500)
    technical = scan(ctx, market="US", limit=500)["scan_results"]
    expected = {r["symbol"] for r in technical if r["rsi_14"] <= 40}
    assert expected and {r["symbol"] for r in out["scan_results"]} == expected
    assert all("rsi_14" not in r for r in out["scan_results"])


def test_sector_filter(ctx: MethodContext, provider: BundledProvider) -> None:
    out = scan(ctx, market="all", criteria={"sectors": ["Information Technology"]}, limit=500)
    it = {i.symbol for i in provider.symbols("us") if i.sector == "Information Technology"}
    assert {r["symbol"] for r in out["scan_results"]} == it
    banks = scan(ctx, market="CN", filters={"sectors": "银行"}, limit=500)
    assert {r["symbol"] for r in banks["scan_results"]} == {
        i.symbol for i in provider.symbols("cn") if i.industry == "银行"
    }
    # A case-insensitive part of a GICS sub-industry from the fundamentals also matches.
    semis = scan(ctx, market="US", criteria={"sectors": ["semiconductors"]}, limit=500)
    assert "NVDA" in {r["symbol"] for r in semis["scan_results"]}
    assert all(r["market"] == "us" for r in semis["scan_results"])


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


def test_criteria_and_filters_merge(ctx: MethodContext) -> None:
    out = scan(
        ctx, market="US", criteria={"min_volume": 1_000_000}, filters={"price_range": [10, 500]}
    )
    assert out["criteria"] == {"min_volume": 1_000_000.0, "price_range": [10.0, 500.0]}
    same = scan(ctx, market="US", criteria={"min_volume": 1_000_000, "price_range": [10, 500]})
    assert out["scan_results"] == same["scan_results"]
    err = scan_error(ctx, criteria={"min_volume": 1}, filters={"min_volume": 2})
    assert err.code == ErrorCode.INVALID_PARAMS and "conflicts" in err.message


def test_min_score_and_limit(ctx: MethodContext) -> None:
    every = scan(ctx, market="all", limit=500)
    top = scan(ctx, market="all", limit=5)
    assert len(top["scan_results"]) == 5 and top["matched"] == every["matched"] == 61
    assert top["scan_results"] == every["scan_results"][:5]
    cut = float(statistics.median(r["score"] for r in every["scan_results"]))
    strong = scan(ctx, market="all", min_score=cut, limit=500)
    assert 0 < strong["matched"] < 61
    assert all(r["score"] >= cut for r in strong["scan_results"])
    assert strong["matched"] == sum(r["score"] >= cut for r in every["scan_results"])


# --- errors ----------------------------------------------------------------------------------


def test_unknown_criteria_key_names_it_and_lists_valid_keys(ctx: MethodContext) -> None:
    err = scan_error(ctx, market="US", criteria={"min_volume": 1, "pe_below": 20})
    assert err.code == ErrorCode.INVALID_PARAMS
    assert "'pe_below'" in err.message
    assert all(k in err.message for k in CRITERIA_KEYS)
    err = scan_error(ctx, filters={"volume_min": 1})
    assert "filters key 'volume_min'" in err.message


@pytest.mark.parametrize(
    ("criteria", "field"),
    [
        ({"price_range": [10]}, "criteria.price_range"),
        ({"price_range": [10, 20, 30]}, "criteria.price_range"),
        ({"price_range": "10-20"}, "criteria.price_range"),
        ({"price_range": [500, 10]}, "criteria.price_range"),
        ({"price_range": [-5, 10]}, "criteria.price_range"),
        ({"price_range": [1, "x"]}, "criteria.price_range"),
        ({"price_range": [1, None]}, "criteria.price_range"),
        ({"price_range": [True, 5]}, "criteria.price_range"),
        ({"rsi_range": [20, 150]}, "criteria.rsi_range"),
        ({"rsi_range": [70, 30]}, "criteria.rsi_range"),
        ({"rsi_min": 80, "rsi_max": 20}, "criteria.rsi_min"),
        ({"rsi_range": [0, 30], "rsi_max": 20}, "criteria.rsi_range"),
        ({"price_range": [1, 5], "min_price": 2}, "criteria.price_range"),
        ({"min_volume": -1}, "criteria.min_volume"),
        ({"min_volume": "lots"}, "criteria.min_volume"),
        ({"min_volume": 10, "max_volume": 5}, "criteria.min_volume"),
        ({"min_price": 10, "max_price": 5}, "criteria.min_price"),
        ({"min_change_pct": 5, "max_change_pct": -5}, "criteria.min_change_pct"),
        ({"min_change_pct": float("nan")}, "criteria.min_change_pct"),
        ({"min_volume_ratio": -2}, "criteria.min_volume_ratio"),
        ({"signals": ["moonshot"]}, "criteria.signals"),
        ({"signals": []}, "criteria.signals"),
        ({"sectors": [""]}, "criteria.sectors"),
    ],
)
def test_malformed_criteria(ctx: MethodContext, criteria: dict[str, Any], field: str) -> None:
    err = scan_error(ctx, market="US", criteria=criteria)
    assert err.code == ErrorCode.INVALID_PARAMS
    assert field in err.message, err.message
    assert (err.details or {}).get("field") == field


def test_negative_change_bounds_are_allowed(ctx: MethodContext) -> None:
    out = scan(ctx, market="US", criteria={"min_change_pct": -50, "max_change_pct": 50})
    assert out["matched"] == 31


def test_signal_not_computed_by_the_scan_type(ctx: MethodContext) -> None:
    err = scan_error(ctx, scan_type="basic", criteria={"signals": ["rsi_oversold"]})
    assert "technical" in err.message and "criteria.signals" in err.message
    err = scan_error(ctx, criteria={"signals": ["outperforming"]})
    assert "comprehensive" in err.message


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"market": "mars"}, "unknown market 'mars'"),
        ({"market_type": "bonds"}, "unknown market_type 'bonds'"),
        ({"scan_type": "deep"}, "unknown scan_type 'deep'"),
        ({"market": "crypto", "market_type": "stock"}, "select nothing"),
        ({"market": "US", "symbols": ["BTCUSDT"]}, "BTCUSDT (crypto)"),
        ({"limit": 501}, "limit"),
        ({"limit": 0}, "limit"),
        ({"min_score": 1.5}, "min_score"),
        ({"criteria": ["min_volume"]}, "criteria"),
        ({"as_of": "yesterday"}, "as_of"),
    ],
)
def test_bad_params(ctx: MethodContext, params: dict[str, Any], needle: str) -> None:
    err = scan_error(ctx, **params)
    assert err.code == ErrorCode.INVALID_PARAMS
    assert needle in err.message, err.message


def test_unknown_symbols_get_suggestions(ctx: MethodContext) -> None:
    # Some known: they are scanned, the rest listed with close matches.
    out = scan(ctx, symbols=["APPL", "MSFT", "BTCUSD"])
    assert [r["symbol"] for r in out["scan_results"]] == ["MSFT"]
    unknown = {u["symbol"]: u["suggestions"] for u in out["unknown_symbols"]}
    assert unknown == {"APPL": ["AAPL"], "BTCUSD": unknown["BTCUSD"]}
    assert "BTCUSDT" in unknown["BTCUSD"]
    # None known: the request itself is wrong.
    err = scan_error(ctx, symbols=["APPL", "BTCUSD"])
    assert err.code == ErrorCode.INVALID_PARAMS
    assert "did you mean AAPL" in err.message and "BTCUSDT" in err.message
    assert (err.details or {})["bad_symbols"] == ["APPL", "BTCUSD"]


# --- ranking, signals, scan types ------------------------------------------------------------


def test_ranking_order_and_score_bounds(ctx: MethodContext) -> None:
    for scan_type in ("basic", "technical", "comprehensive"):
        rows = scan(ctx, market="all", scan_type=scan_type, limit=500)["scan_results"]
        keys = [(-r["score"], r["symbol"]) for r in rows]
        assert keys == sorted(keys)
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(0.0 <= r["score"] <= 1.0 for r in rows)
        assert len({r["score"] for r in rows}) > len(rows) // 2  # the score discriminates
        for r in rows:
            assert r["reason"].startswith(f"{r['symbol']}: ") and r["reason"].endswith(".")
            assert set(r["signals"]) <= set(SIGNALS_BY_SCAN_TYPE[scan_type])


def test_signals_agree_with_the_numbers(ctx: MethodContext) -> None:
    rows = scan(ctx, market="all", scan_type="comprehensive", limit=500)["scan_results"]
    seen: set[str] = set()
    for r in rows:
        sig = set(r["signals"])
        seen |= sig
        assert ("volume_spike" in sig) == (r["volume_ratio"] is not None and r["volume_ratio"] >= 2)
        assert ("rsi_oversold" in sig) == (r["rsi_14"] is not None and r["rsi_14"] < 30)
        assert ("rsi_overbought" in sig) == (r["rsi_14"] is not None and r["rsi_14"] > 70)
        assert ("trend_up" in sig) == (r["trend"] == "up")
        assert ("trend_down" in sig) == (r["trend"] == "down")
        assert ("ma_cross" in sig) == (r["ma_cross"] == "golden")
        assert ("death_cross" in sig) == (r["ma_cross"] == "death")
        if "momentum" in sig:
            assert r["return_1m"] >= 0.05 and r["macd_hist"] > 0
        excess = r["relative_strength"]["excess_return_3m"]
        assert ("outperforming" in sig) == (excess is not None and excess >= 0.05)
        if "rsi_oversold" in sig:
            assert "oversold" in r["reason"]
    assert len(seen) >= 6  # the real data raises a fair spread of signals


def test_score_is_the_calibrated_chance_of_a_positive_month(
    ctx: MethodContext, provider: BundledProvider
) -> None:
    """Every scan type scores with the analysis engine's forecast: P(up over 21 bars)."""
    from tacoreservice.analysis.evidence import compute_evidence

    for scan_type in ("basic", "technical"):
        rows = scan(ctx, market="US", scan_type=scan_type, limit=500)["scan_results"]
        for r in rows[:: max(1, len(rows) // 6)]:
            f = compute_evidence(provider, r["symbol"])["forecast"]
            assert r["score"] == pytest.approx(f["p_up"], abs=1e-4), r["symbol"]
            assert r["probability_up"] == pytest.approx(f["p_up"], abs=1e-4)
            assert r["expected_return"] == pytest.approx(f["expected_return"], abs=1e-6)
            assert "Chance of a positive month" in r["reason"]
    # Where the market has no calibration yet, the score is no view (0.5) and says why.
    early = scan(ctx, market="US", as_of="2021-01-11", limit=500)["scan_results"]
    assert early and all(r["score"] == 0.5 for r in early)
    assert all("No calibrated forecast" in r["reason"] for r in early)


def test_scan_types_differ(ctx: MethodContext) -> None:
    params = {"market": "all", "limit": 500}
    basic = {r["symbol"]: r for r in scan(ctx, scan_type="basic", **params)["scan_results"]}
    tech = {r["symbol"]: r for r in scan(ctx, **params)["scan_results"]}
    comp = {r["symbol"]: r for r in scan(ctx, scan_type="comprehensive", **params)["scan_results"]}
    assert set(basic) == set(tech) == set(comp)
    assert all("rsi_14" not in r and "relative_strength" not in r for r in basic.values())
    assert all(
        "rsi_14" in r and "trend" in r and "relative_strength" not in r for r in tech.values()
    )
    assert all("relative_strength" in r and "fundamentals" in r for r in comp.values())
    assert comp["AAPL"]["fundamentals"]["sector"] == "Information Technology"
    assert comp["AAPL"]["fundamentals"]["point_in_time"] is False
    # Same prices, same engine: the scan types report more or less, and score alike.
    assert all(basic[s]["price"] == tech[s]["price"] == comp[s]["price"] for s in basic)
    assert all(basic[s]["score"] == tech[s]["score"] == comp[s]["score"] for s in basic)
    assert any(
        "outperforming" in r["signals"] or "underperforming" in r["signals"] for r in comp.values()
    )


def test_results_are_json_ready(ctx: MethodContext) -> None:
    import orjson

    out = scan(ctx, market="all", scan_type="comprehensive", limit=500)
    assert orjson.loads(orjson.dumps(out)) == out

    def finite(value: Any) -> bool:
        if isinstance(value, dict):
            return all(finite(v) for v in value.values())
        if isinstance(value, list):
            return all(finite(v) for v in value)
        return not isinstance(value, float) or math.isfinite(value)

    assert finite(out)


# --- determinism, point-in-time, speed -------------------------------------------------------


def test_deterministic(ctx: MethodContext) -> None:
    params = {"market": "all", "scan_type": "comprehensive", "limit": 500}
    first = scan(ctx, **params)
    assert scan(ctx, **params) == first
    clear_caches()
    other = MethodContext(settings=Settings(), cache=DictCache())
    assert scan(other, **params) == first


def test_scan_no_look_ahead(tmp_path: Path, ctx: MethodContext) -> None:
    cut = "2024-03-28"
    for src in sorted((BUNDLED_DIR / "cn").glob("*.csv.gz")):
        lines = gzip.decompress(src.read_bytes()).decode("utf-8").splitlines()
        kept = [lines[0]] + [ln for ln in lines[1:] if ln.split(",", 1)[0] <= cut]
        dest = tmp_path / "cn" / src.name[: -len(".gz")]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("\n".join(kept) + "\n", encoding="utf-8")
    (tmp_path / "fundamentals").mkdir()
    for src in (BUNDLED_DIR / "fundamentals").iterdir():
        (tmp_path / "fundamentals" / src.name).write_bytes(src.read_bytes())
    # The package's manifest (units, names), minus the partial last bars the cut removed.
    manifest = json.loads((BUNDLED_DIR / "manifest.json").read_text(encoding="utf-8"))
    for meta in manifest["files"].values():
        meta["partial_last_bar"] = False
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    short = MethodContext(
        settings=Settings(), cache=DictCache(), _provider=BundledProvider(tmp_path)
    )
    for scan_type in ("basic", "technical", "comprehensive"):
        seen_then = scan(ctx, market="CN", as_of=cut, scan_type=scan_type, limit=500)
        only_then = scan(short, market="CN", scan_type=scan_type, limit=500)
        assert seen_then["as_of"] == only_then["as_of"] == cut
        assert seen_then["scan_results"] == only_then["scan_results"]
    assert scan(ctx, market="CN", limit=500)["scan_results"] != only_then["scan_results"]


def test_warm_full_scan_is_fast(ctx: MethodContext) -> None:
    scan(ctx, market="all")  # warm the per-process feature cache
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        scan(ctx, market="all")
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.050

"""The analysis report's summary block, warnings and formats, on decisions made by the real
engine on the bundled data (and one HOLD and one inconsistent SELL written out)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tacoreservice.reports.analysis_report import render_markdown, write_report
from tacoreservice.reports.decision import level_notes, stale_warning, summary_rows

TODAY = date(2026, 1, 12)


def _decision(**over: Any) -> dict[str, Any]:
    base = {
        "symbol": "KO",
        "name": "Coca-Cola Company (The)",
        "as_of": "2026-01-08",
        "price": 69.37,
        "rating": "BUY",
        "action": "BUY",
        "confidence": 0.56,
        "horizon_bars": 21,
        "target_price": 69.94,
        "stop_loss": 67.6,
        "take_profit": 72.91,
        "position_size_pct": 19.07,
        "target_exposure": 0.9535,
        "risk_score": 17.0,
        "expected_return": 0.008,
        "engine": "quant",
        "model": {
            "engine": "quant",
            "version": "3",
            "calibration": {"market": "us", "fit_day": "2025-12-31", "source": "walk-forward"},
        },
        "reasoning": "Forecast +0.160 monthly volatilities.",
        "reports": {
            "market_analyst": "## Market analyst: bearish\n\nText.",
            "bull_researcher": "### Bull researcher, round 1\n\n- a point",
            "portfolio_manager": "## Portfolio manager: BUY (BUY)\n\nDone.",
        },
    }
    return base | over


def test_summary_block_reads_top_down() -> None:
    rows = dict(summary_rows(_decision(), TODAY))
    assert list(rows)[:4] == ["Rating", "Action", "Confidence", "Entry"]
    assert rows["Entry"] == "69.37 (close of 2026-01-08)"
    assert rows["Stop"] == "67.60 (-2.6 %)" and rows["Take profit"] == "72.91 (+5.1 %)"
    assert rows["Position size"] == "19.1 % of equity (95 % of the single-name cap)"
    assert rows["Risk score"] == "17 / 100"
    assert rows["Engine and model"].startswith("quant v3; US calibration fitted 2025-12-31")
    assert rows["Data"] == "2026-01-08 (4 days old)"
    assert stale_warning(_decision(), TODAY) is None  # a long weekend is not stale


def test_hold_has_no_take_profit_and_half_a_position_is_explained() -> None:
    hold = _decision(rating="HOLD", action="HOLD", take_profit=None, position_size_pct=10.0,
                     target_exposure=0.5)  # fmt: skip
    rows = dict(summary_rows(hold, TODAY))
    assert rows["Take profit"] == "none (HOLD)" and "None" not in str(rows)
    assert rows["Position size"] == "10.0 % of equity (50 % of the single-name cap)"
    assert any("half a position" in n for n in level_notes(hold))


def test_levels_inconsistent_with_the_action_are_flagged() -> None:
    sell = _decision(rating="SELL", action="SELL", stop_loss=60.0, take_profit=75.0)
    notes = level_notes(sell)
    assert any("stop 60.00 is not above" in n for n in notes)
    assert any("take-profit 75.00 is not below" in n for n in notes)
    assert level_notes(_decision()) == []  # a consistent BUY has nothing to say
    flat = _decision(target_price=None, expected_return=0)
    assert dict(summary_rows(flat, TODAY))["Target"] == "none"
    assert any("flat" in n for n in level_notes(flat))


def test_stale_data_warns_and_markdown_puts_the_summary_first() -> None:
    old = _decision(as_of="2025-06-30")
    warning = stale_warning(old, TODAY)
    assert warning is not None and "196 days before today" in warning
    text = render_markdown(old, "ko.png", TODAY)
    assert text.startswith("# KO (Coca-Cola Company (The)): BUY, as of 2025-06-30")
    assert text.index("| Rating | BUY |") < text.index("Stale data") < text.index("## Reasoning")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Reasoning",
        "## Price",
        "## Market analyst: bearish",
        "## Bull researcher",  # a role whose report has no heading of its own gets one
        "## Portfolio manager: BUY (BUY)",
    ]
    assert "![KO close with entry, stop and target](ko.png)" in text


@pytest.mark.parametrize("suffix", ["md", "html", "pdf"])
def test_formats(tmp_path: Path, suffix: str) -> None:
    history = [{"time": f"2026-01-0{d}", "close": 68 + d / 10} for d in range(1, 9)]
    written = write_report(_decision(name="贵州茅台"), tmp_path / f"r.{suffix}", history, TODAY)
    assert written[0] == tmp_path / f"r.{suffix}" and written[1] == tmp_path / "r.png"
    data = written[0].read_bytes()
    if suffix == "pdf":
        assert data.startswith(b"%PDF") and len(data) > 5000
    elif suffix == "html":
        text = data.decode()
        assert "data:image/png;base64," in text and "<table>" in text and "贵州茅台" in text
    else:
        assert "](r.png)" in data.decode()
    with pytest.raises(ValueError, match=r"\.md, \.html or \.pdf"):
        write_report(_decision(), tmp_path / "r.txt")

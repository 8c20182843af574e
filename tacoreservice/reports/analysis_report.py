"""The analysis report: the summary block first, the stale-data warning, the price chart with
the decision's levels, then one heading per role in the order the team worked (analysts, the
bull and bear debate, research manager, trader, the risk debate, portfolio manager).

Formats, by the file's suffix (:func:`write_report`):

- ``.md``: Markdown, the chart as ``NAME.png`` beside it;
- ``.html``: one self-contained page, the chart embedded (data URI);
- ``.pdf``: the same content, laid out by fpdf2 with the DejaVu font matplotlib ships.

The chart and the PDF need the ``report`` extra (matplotlib, markdown, fpdf2); without
matplotlib the report is written without a chart and says so.
"""

from __future__ import annotations

import base64
import html
import re
from datetime import date
from pathlib import Path
from typing import Any

from tacoreservice.reports.decision import (
    ROLE_ORDER,
    fmt_price,
    level_notes,
    role_title,
    stale_warning,
    summary_rows,
)

__all__ = ["FORMATS", "price_chart_png", "render_html", "render_markdown", "write_report"]

FORMATS = ("md", "html", "pdf")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _role_sections(decision: dict[str, Any]) -> list[str]:
    raw = decision.get("reports")
    reports: dict[str, Any] = raw if isinstance(raw, dict) else {}
    roles = [r for r in ROLE_ORDER if r in reports] + [r for r in reports if r not in ROLE_ORDER]
    out = []
    for role in roles:
        body = str(reports[role] or "").strip()
        if not body:
            continue
        # A role's report brings its own "## Role: view" heading; one heading per role.
        if not body.startswith("## "):
            body = f"## {role_title(role)}\n\n{body}"
        out.append(body)
    return out


def render_markdown(
    decision: dict[str, Any], chart: str | None = None, today: date | None = None
) -> str:
    """The report as Markdown; ``chart``: the PNG's path relative to the Markdown file."""
    symbol = decision.get("symbol", "?")
    name = decision.get("name")
    title = f"# {symbol}" + (f" ({name})" if name and name != symbol else "")
    title += f": {decision.get('rating', '?')}, as of {str(decision.get('as_of'))[:10]}"
    lines = [title, "", "| Summary | |", "|---|---|"]
    lines += [f"| {label} | {_md_cell(value)} |" for label, value in summary_rows(decision, today)]
    lines.append("")
    warning = stale_warning(decision, today)
    if warning:
        lines += [f"> **Warning.** {warning}", ""]
    for note in level_notes(decision):
        lines += [f"> {note}", ""]
    if decision.get("reasoning"):
        lines += ["## Reasoning", "", str(decision["reasoning"]).strip(), ""]
    if chart:
        lines += [
            "## Price",
            "",
            f"![{symbol} close with entry, stop and target]({chart})",
            "",
        ]
    lines += ["\n\n".join(_role_sections(decision)), ""]
    return "\n".join(lines)


def price_chart_png(decision: dict[str, Any], history: list[dict[str, Any]], path: Path) -> Path:
    """The close over ``history`` (oldest first) with the entry, stop, target and take-profit
    drawn as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    times = [np.datetime64(str(bar["time"])[:19]) for bar in history]
    closes = [bar["close"] for bar in history]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    try:
        ax.plot(times, closes, color="#2563eb", linewidth=1.4, label="close")
        levels = (
            ("entry", decision.get("price"), "#1b2430", "-"),
            ("stop", decision.get("stop_loss"), "#c62828", "--"),
            ("target", decision.get("target_price"), "#15803d", "--"),
            ("take profit", decision.get("take_profit"), "#0d9488", ":"),
        )
        for label, value, color, style in levels:
            if isinstance(value, int | float):
                ax.axhline(value, color=color, linestyle=style, linewidth=1.1)
                ax.annotate(
                    f"{label} {fmt_price(value)}",
                    xy=(1.0, value),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                    color=color,
                )
        ax.set_title(
            f"{decision.get('symbol')}: {decision.get('rating')} as of "
            f"{str(decision.get('as_of'))[:10]}",
            fontsize=10,
            loc="left",
        )
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        fig.autofmt_xdate()
        fig.subplots_adjust(right=0.8)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


_CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 860px; margin: 2em auto; padding: 0 1em;
       color: #1b2430; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #dde3ea; padding: 4px 10px; text-align: left; vertical-align: top; }
blockquote { border-left: 4px solid #b45309; margin: 1em 0; padding: 0.2em 1em;
             background: #fff7ed; }
img { max-width: 100%; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
"""


def render_html(markdown_text: str, chart_png: Path | None = None) -> str:
    """A self-contained HTML page of the Markdown report, the chart embedded."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    if chart_png is not None and chart_png.is_file():
        data = base64.b64encode(chart_png.read_bytes()).decode()
        body = re.sub(
            r'<img alt="([^"]*)" src="[^"]*"',
            lambda m: f'<img alt="{m.group(1)}" src="data:image/png;base64,{data}"',
            body,
        )
    title = html.escape(markdown_text.splitlines()[0].lstrip("# ").strip())
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def _pdf(markdown_text: str, chart_png: Path | None, out: Path) -> None:
    import markdown
    import matplotlib
    from fontTools.ttLib import TTFont
    from fpdf import FPDF

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    regular = fonts / "DejaVuSans.ttf"
    cmap = TTFont(str(regular)).getBestCmap()
    # The font has no CJK glyphs (a Chinese company name): such characters become "?".
    text = "".join(ch if ord(ch) in cmap or ch in "\n\r\t" else "?" for ch in markdown_text)
    body = markdown.markdown(text, extensions=["tables"])
    if chart_png is not None and chart_png.is_file():
        body = re.sub(
            r'<img alt="[^"]*" src="[^"]*" ?/?>', f'<img src="{chart_png}" width="560">', body
        )
    else:
        body = re.sub(r"<img[^>]*>", "", body)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.add_font("DejaVu", "I", str(fonts / "DejaVuSans-Oblique.ttf"))
    pdf.add_font("DejaVu", "BI", str(fonts / "DejaVuSans-BoldOblique.ttf"))
    pdf.set_font("DejaVu", size=10)
    pdf.add_page()
    pdf.write_html(body, font_family="DejaVu")
    pdf.output(str(out))


def write_report(
    decision: dict[str, Any],
    path: str | Path,
    history: list[dict[str, Any]] | None = None,
    today: date | None = None,
) -> list[Path]:
    """Write the report to ``path`` (.md, .html or .pdf); returns the files written (the
    report, and its chart PNG beside it when there is a history to draw)."""
    out = Path(path)
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(f"report {out}: the name must end .md, .html or .pdf")
    out.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    png: Path | None = None
    if history:
        try:
            png = price_chart_png(decision, history, out.with_suffix(".png"))
            written.append(png)
        except ImportError:
            png = None  # matplotlib is the `report` extra
    text = render_markdown(decision, png.name if png else None, today)
    if suffix == "md":
        out.write_text(text, encoding="utf-8")
    elif suffix == "html":
        out.write_text(render_html(text, png), encoding="utf-8")
    else:
        _pdf(text, png, out)
    written.insert(0, out)
    return written

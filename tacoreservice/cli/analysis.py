"""``tacore analyze`` and ``tacore scan``: the multi-agent analysis and the market scan."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tacoreservice.cli.calls import print_json
from tacoreservice.cli.common import (
    EndpointOpt,
    ExitCode,
    app,
    call_service,
    client_for,
    console,
    err_console,
    fail,
    fail_from,
)
from tacoreservice.cli.tables import new_table, number, pct, price, show

_ROLE_ICONS = {"pending": "·", "running": "…", "done": "✓", "skipped": "–"}
_HISTORY_BARS = 120  # of the report's price chart


def run_local(method: str, params: dict[str, Any], on_progress: Any) -> Any:
    """Run a method in this process (no service needed), reporting progress as a job would."""
    from tacoreservice.analysis.forecast import set_calibration_dir
    from tacoreservice.cache import make_cache
    from tacoreservice.config import load_settings
    from tacoreservice.security.log_masking import install_secret_masking
    from tacoreservice.security.secrets import secret_values
    from tacoreservice.service.registry import MethodContext, call_method, load_plugins

    settings = load_settings()
    # No service logging here, but a library may still log: credentials stay masked.
    install_secret_masking(secret_values(settings))
    load_plugins(settings.worker.plugins)
    set_calibration_dir(settings.analysis.calibration_dir)
    ctx = MethodContext(settings=settings, cache=make_cache(settings.cache), worker_id="cli")
    ctx.progress = on_progress
    return call_method(method, params, ctx)


def _progress_table(symbol: str, stage: str, percent: float, roles: dict[str, str]) -> Table:
    table = new_table(f"analysing {symbol}: {stage} ({percent:.0f}%)", show_header=False)
    table.add_column("role")
    table.add_column("state")
    for role, state in roles.items():
        table.add_row(role, f"{_ROLE_ICONS.get(state, state)} {state}")
    return table


def print_decision(data: dict[str, Any]) -> None:
    """The summary block, the warnings and the reasoning, fitted to the terminal."""
    from tacoreservice.reports.decision import level_notes, stale_warning, summary_rows

    table = new_table(
        f"{data.get('symbol')} ({data.get('name') or data.get('market')}): "
        f"{data.get('rating')}, as of {str(data.get('as_of'))[:10]}",
        show_header=False,
    )
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value")
    for label, value in summary_rows(data):
        table.add_row(label, escape(value))
    show(table, console)
    warning = stale_warning(data)
    if warning:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    for note in level_notes(data):
        console.print(f"[dim]note:[/] {escape(note)}")
    if data.get("reasoning"):
        console.print(escape(str(data["reasoning"])))


def _run_job(
    endpoint: str | None, symbol: str, params: dict[str, Any], timeout_s: float, quiet: bool
) -> dict[str, Any]:
    from rich.live import Live

    from tacoreservice.client import TACoreError

    with client_for(endpoint, timeout_ms=10_000, retries=2) as client:
        job = client.call("job.submit", {"method": "analyze.stock", "params": params})
        deadline = time.monotonic() + timeout_s
        with Live(console=err_console, transient=True, auto_refresh=False) as live:
            while True:
                status = client.call("job.status", {"job_id": job["job_id"]})
                roles = (status.get("progress") or {}).get("roles") or {}
                if not quiet:
                    stage = status.get("stage") or status["state"]
                    live.update(
                        _progress_table(symbol, stage, status["percent"], roles), refresh=True
                    )
                if status["state"] in ("succeeded", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    client.call("job.cancel", {"job_id": job["job_id"]})
                    raise TACoreError("TIMEOUT", f"analysis took longer than {timeout_s:.0f} s")
                time.sleep(0.2)
        result = client.call("job.result", {"job_id": job["job_id"]})
        if result["state"] != "succeeded":
            error = result.get("error") or {}
            raise TACoreError(str(error.get("code")), str(error.get("message")))
        data: dict[str, Any] = result["result"]
        return data


def _history(data: dict[str, Any], local: bool, endpoint: str | None) -> list[dict[str, Any]]:
    params = {"symbol": data["symbol"], "as_of": str(data["as_of"])[:10], "history": _HISTORY_BARS}
    try:
        if local:
            quote = run_local("get.market_data", params, lambda *a: None)
        else:
            quote = call_service(endpoint, "get.market_data", params)
    except Exception as exc:  # the report still has everything but the chart
        err_console.print(f"[yellow]no price chart:[/] {escape(str(exc))}")
        return []
    return list(quote.get("history") or [])


@app.command()
def analyze(
    symbol: Annotated[str, typer.Argument(help="AAPL, 600519.SH, BTC/USDT, ...")],
    engine: Annotated[str | None, typer.Option(help="quant, llm or tradingagents.")] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", min=1, max=5, help="Research depth 1-5.")
    ] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Analyse as of this date.")] = None,
    analysis_type: Annotated[
        str | None, typer.Option(help="technical, fundamental, comprehensive.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole decision as JSON.")
    ] = False,
    report: Annotated[
        str | None,
        typer.Option(
            help="Write the report: FILE.md (chart PNG beside it), FILE.html (chart embedded) "
            "or FILE.pdf."
        ),
    ] = None,
    local: Annotated[
        bool, typer.Option(help="Run in this process instead of calling the service.")
    ] = False,
    endpoint: EndpointOpt = None,
    timeout_s: Annotated[float, typer.Option(help="Give up after this long.")] = 900.0,
) -> None:
    """Run the multi-agent analysis of one symbol, with live progress per role."""
    from rich.live import Live

    from tacoreservice.reports.analysis_report import FORMATS, write_report

    if report and report.rsplit(".", 1)[-1].lower() not in FORMATS:
        fail(ExitCode.USAGE, f"--report {report}: the name must end .md, .html or .pdf")
    params: dict[str, Any] = {
        k: v
        for k, v in {
            "symbol": symbol,
            "engine": engine,
            "research_depth": depth,
            "as_of": as_of,
            "analysis_type": analysis_type,
        }.items()
        if v is not None
    }
    quiet = as_json or not sys.stderr.isatty()
    try:
        if local:
            with Live(console=err_console, transient=True, auto_refresh=False) as live:

                def progress(
                    stage: str, percent: float, detail: dict[str, Any] | None = None
                ) -> None:
                    roles = (detail or {}).get("roles") or {}
                    if not quiet:
                        live.update(_progress_table(symbol, stage, percent, roles), refresh=True)

                data = run_local("analyze.stock", params, progress)
        else:
            data = _run_job(endpoint, symbol, params, timeout_s, quiet)
    except typer.Exit:
        raise
    except Exception as exc:  # TACoreError from the service, ServiceError in-process
        fail_from(exc)
    written = []
    if report:
        written = write_report(data, report, _history(data, local, endpoint))
    if as_json:
        print_json(data)
    else:
        print_decision(data)
    for path in written:  # paths: never wrapped; with --json, stdout holds JSON only
        (sys.stderr if as_json else sys.stdout).write(f"written: {path}\n")


@app.command()
def scan(
    market: Annotated[str, typer.Option(help="US, CN, crypto or all.")] = "all",
    scan_type: Annotated[
        str, typer.Option(help="basic, technical or comprehensive.")
    ] = "technical",
    min_volume: Annotated[float | None, typer.Option(help="Minimum last-bar volume.")] = None,
    price_range: Annotated[str | None, typer.Option(help="lo,hi e.g. 10,500")] = None,
    min_change_pct: Annotated[
        float | None, typer.Option(help="Minimum change % of the last bar.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 20,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Scan as of this date.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    local: Annotated[
        bool, typer.Option(help="Run in this process instead of calling the service.")
    ] = False,
    endpoint: EndpointOpt = None,
) -> None:
    """Scan a market and print the ranked opportunities."""
    criteria: dict[str, Any] = {}
    if min_volume is not None:
        criteria["min_volume"] = min_volume
    if min_change_pct is not None:
        criteria["min_change_pct"] = min_change_pct
    if price_range:
        try:
            lo, hi = (float(x) for x in price_range.split(","))
        except ValueError:
            fail(ExitCode.USAGE, "--price-range takes two numbers: lo,hi")
        criteria["price_range"] = [lo, hi]
    params: dict[str, Any] = {
        "market": market,
        "scan_type": scan_type,
        "criteria": criteria,
        "limit": limit,
    }
    if as_of:
        params["as_of"] = as_of
    if local:
        try:
            data = run_local("scan.market", params, lambda *a: None)
        except Exception as exc:
            fail_from(exc)
    else:
        data = call_service(endpoint, "scan.market", params, timeout_ms=30_000)
    if as_json:
        print_json(data)
        return
    rows = data.get("scan_results", [])[:limit]
    matched, scanned = data.get("matched"), data.get("total_scanned")
    shown = (
        f"top {len(rows)} of {matched} matches" if matched != len(rows) else f"{matched} matches"
    )
    table = new_table(
        f"scan {data.get('market', market)} ({data.get('scan_type')}), as of "
        f"{data.get('as_of')}: {shown}, {scanned} scanned"
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("symbol", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("price", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    table.add_column("signals")
    table.add_column("reason")
    for i, row in enumerate(rows, 1):
        table.add_row(
            str(i),
            escape(str(row.get("symbol"))),
            number(row.get("score")),
            price(row.get("price")),
            pct(row.get("change_pct"), ratio=False),
            escape(", ".join(row.get("signals") or [])),
            escape(str(row.get("reason", ""))),
        )
    show(table, console, drop=("reason", "signals", "change"))
    if matched is not None and matched > len(rows):
        console.print(f"[dim]{matched - len(rows)} more: --limit {matched} shows them all[/]")

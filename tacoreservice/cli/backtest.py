"""``tacore backtest``: the engine against the baselines, in this process."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from tacoreservice.cli.common import (
    ConfigOpt,
    ExitCode,
    app,
    console,
    endpoints,
    fail,
    fail_from,
    load_settings_or_exit,
    progress_bar,
)
from tacoreservice.cli.tables import show

# Columns left out first when a table does not fit the terminal.
_DROP = ("exposure", "expo", "trades", "turn", "inv", "eng SR>", "ARR %", "runs")

_PAPER_SYMBOLS, _PAPER_START, _PAPER_END = "AAPL,GOOGL,AMZN", "2024-01-02", "2024-03-28"


@app.command()
def backtest(
    symbols: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated symbols (default {_PAPER_SYMBOLS}; with --universe: every "
            "bundled daily symbol)."
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help=f"First trading day of the window (default {_PAPER_START}).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help=f"Last trading day of the window (default {_PAPER_END}).")
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="Analysis engine making the daily decisions: quant, llm.")
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", min=1, max=5, help="Research depth 1-5.")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Also write the results to this .csv or .json file.")
    ] = None,
    chart: Annotated[
        str | None,
        typer.Option(
            help="Equity-curve PNG (default: --out with .png, else ./backtest_START_END.png)."
        ),
    ] = None,
    universe: Annotated[
        bool,
        typer.Option(
            "--universe", help="Every bundled daily symbol over rolling windows: medians."
        ),
    ] = False,
    window_months: Annotated[int, typer.Option(min=1, max=24, help="--universe window.")] = 3,
    step_months: Annotated[
        int, typer.Option(min=1, max=24, help="--universe: months between window starts.")
    ] = 1,
    workers: Annotated[
        int | None, typer.Option(min=1, help="--universe processes (default: CPU cores).")
    ] = None,
    warmup_bars: Annotated[
        int, typer.Option(min=1, help="--universe: bars of history before a first window.")
    ] = 252,
    portfolio: Annotated[
        bool,
        typer.Option(
            "--portfolio",
            help="The monthly top-N book per market vs equal weight and the benchmark "
            "(default 2022-01-01 .. the data's end).",
        ),
    ] = False,
    markets: Annotated[str, typer.Option(help="--portfolio markets.")] = "us,cn",
    top_n: Annotated[
        int | None, typer.Option("--top-n", min=1, help="--portfolio size (default: a third).")
    ] = None,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            help="--universe/--portfolio: send the analyses as jobs to this running service "
            "(tcp://host:5555), whose workers share the load; it must serve the same data.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Backtest the analysis engine against Buy&Hold, MACD, KDJ&RSI, ZMR and SMA.

    One engine decision per trading day (as_of = that day), filled at the
    next open with the trading.costs of the config, beside the baselines.
    Runs in this process on the bundled history: no running service needed.
    """
    from tacoreservice.backtest import report

    settings = load_settings_or_exit(config)
    names = [s.strip() for s in (symbols or "").split(",") if s.strip()]
    quiet = as_json or not sys.stderr.isatty()
    try:
        if portfolio:
            from tacoreservice.cli.evaluate import portfolio_backtest

            markets_list = [m.strip() for m in markets.split(",") if m.strip()]
            data = portfolio_backtest(
                settings, markets_list, start or "2022-01-01", end or "2100-01-01", engine,
                top_n, service, quiet,
            )  # fmt: skip
        elif universe:
            if start or end:
                fail(ExitCode.USAGE, "--start/--end do not apply to --universe (it uses "
                                     "every complete window of the history)")  # fmt: skip
            data = _backtest_universe(
                settings, names, engine, depth, (window_months, step_months, warmup_bars),
                workers, service, quiet,
            )  # fmt: skip
        else:
            data = _backtest_window(settings, names, start, end, engine, depth, out, chart, quiet)
    except typer.Exit:
        raise
    except Exception as exc:  # ServiceError (bad symbol, no data) and friends
        fail_from(exc)
    payload, rows, table, extra = data
    if out:
        suffix = out.rsplit(".", 1)[-1].lower() if "." in out else ""
        if suffix == "json":
            report.write_json(payload, out)
        else:
            report.write_csv(rows, out)
        extra.append(f"results: {out}")
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        show(table, console, drop=_DROP)
        for line in extra:  # paths: never wrapped
            sys.stdout.write(line + "\n")


def _backtest_window(
    settings: Any,
    names: list[str],
    start: str | None,
    end: str | None,
    engine: str | None,
    depth: int | None,
    out: str | None,
    chart: str | None,
    quiet: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]], Any, list[str]]:
    from pathlib import Path

    from tacoreservice.backtest import report
    from tacoreservice.backtest.compare import compare

    start, end = start or _PAPER_START, end or _PAPER_END
    with progress_bar(quiet) as bar:
        task = bar.add_task("decisions", total=None)

        def step(symbol: str, done: int, total: int) -> None:
            bar.update(task, description=f"{symbol} decisions", completed=done, total=total)

        result = compare(
            names or _PAPER_SYMBOLS.split(","),
            start,
            end,
            settings,
            engine_name=engine,
            research_depth=depth,
            on_progress=step,
        )
    if chart:
        png = Path(chart)
    elif out:
        png = Path(out).with_suffix(".png")
    else:
        png = Path(f"backtest_{result.start}_{result.end}.png")
    report.equity_png(result, png)
    from tacoreservice.cli.llm import llm_usage_lines

    usage, usage_lines = llm_usage_lines(engine, settings)
    payload = result.to_json() | {"chart": str(png)} | usage
    extra = [f"equity curves: {png}", f"wall time: {result.elapsed_s:.1f} s", *usage_lines]
    return payload, result.rows(), report.comparison_table(result), extra


def _backtest_universe(
    settings: Any,
    names: list[str],
    engine: str | None,
    depth: int | None,
    windows: tuple[int, int, int],
    workers: int | None,
    service: str | None,
    quiet: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]], Any, list[str]]:
    from tacoreservice.backtest import report
    from tacoreservice.backtest.universe import run_universe

    with progress_bar(quiet) as bar:
        task = bar.add_task("symbols", total=None)

        def step(done: int, total: int, symbol: str) -> None:
            bar.update(task, description=f"{symbol} done", completed=done, total=total)

        result = run_universe(
            settings,
            engine_name=engine,
            research_depth=depth,
            symbols=names or None,
            window_months=windows[0],
            step_months=windows[1],
            warmup_bars=windows[2],
            workers=workers,
            service=endpoints(service) if service else None,
            on_progress=step,
        )
    rows = [{"market": "all", **r} for r in result.summary] + [
        {"market": m, **r} for m, summary in result.by_market.items() for r in summary
    ]
    extra = [f"wall time: {result.elapsed_s:.1f} s on {result.workers} processes"]
    if result.skipped:
        extra.append("skipped: " + "; ".join(f"{s['symbol']} ({s['why']})" for s in result.skipped))
    return result.to_json(), rows, report.universe_table(result), extra

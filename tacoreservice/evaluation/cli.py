"""``tacore evaluate``, ``tacore calibrate`` and ``tacore backtest --portfolio``.

Registered on the main ``tacore`` app by :mod:`tacoreservice.cli`; the heavy imports happen
inside the commands, so ``tacore --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

__all__ = ["portfolio_backtest", "register"]

DataDirOpt = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        help="A folder of daily CSVs in the bundled layout (us/, cn/, crypto/SYMBOL_1d.csv); "
        "default: the configured market data.",
    ),
]
MarketsOpt = Annotated[str, typer.Option(help="Comma-separated markets: us, cn, crypto.")]
ServiceOpt = Annotated[
    str | None,
    typer.Option(
        "--service",
        help="Send the analyses as jobs to this running service (tcp://host:5555), whose "
        "workers share the load; it must serve the same data.",
    ),
]


def _base() -> Any:
    from tacoreservice import cli_common

    return cli_common


def _load(config: str | None, data_dir: str | None) -> Any:
    from tacoreservice.analysis.forecast import set_calibration_dir

    overrides = (
        {"market_data.provider": "bundled", "market_data.data_dir": data_dir} if data_dir else None
    )
    settings = _base()._settings(config, overrides)
    set_calibration_dir(settings.analysis.calibration_dir)
    return settings


def _markets(text: str) -> list[str]:
    from tacoreservice.market_data.symbols import normalize_market

    try:
        return [normalize_market(m) for m in text.split(",") if m.strip()]
    except Exception as exc:
        _base().err_console.print(f"[red]INVALID_PARAMS:[/] {exc}")
        raise typer.Exit(2) from None


def _fail(exc: Exception) -> typer.Exit:
    code = getattr(getattr(exc, "code", None), "value", None) or getattr(exc, "code", None)
    _base().err_console.print(f"[red]{code or type(exc).__name__}:[/] {exc}")
    return typer.Exit(1)


def evaluate(
    data_dir: DataDirOpt = None,
    split: Annotated[
        str,
        typer.Option(
            help="all, or dev / holdout: every other symbol of each market (universe "
            "included), to judge a design on symbols it was not made on."
        ),
    ] = "all",
    markets: MarketsOpt = "us,cn,crypto",
    start: Annotated[str, typer.Option(help="First month-end to evaluate.")] = "2022-06-01",
    end: Annotated[str, typer.Option(help="Last month-end to evaluate.")] = "2100-01-01",
    engine: Annotated[str | None, typer.Option(help="Analysis engine: quant, llm.")] = None,
    top_n: Annotated[
        int | None, typer.Option("--top-n", min=1, help="Portfolio size (default: a third).")
    ] = None,
    rolling: Annotated[
        bool, typer.Option("--rolling/--no-rolling", help="Rolling-window backtests.")
    ] = True,
    portfolio: Annotated[
        bool, typer.Option("--portfolio/--no-portfolio", help="Portfolio mode.")
    ] = True,
    png: Annotated[
        str | None, typer.Option(help="Reliability PNG (default evaluation_reliability.png).")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Also write everything to this JSON file.")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes (default: cores).")] = None,
    service: ServiceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Config file.")] = None,
) -> None:
    """Judge the engine walk-forward: rank IC, calibration, rolling windows, portfolio.

    Runs on the bundled history or any folder of the same layout (--data-dir);
    every decision sees only the data up to its own day.
    """
    from tacoreservice.evaluation.harness import run_evaluation
    from tacoreservice.evaluation.render import calibration_tables, ic_table, portfolio_table

    cli = _base()
    settings = _load(config, data_dir)
    if split not in ("all", "dev", "holdout"):
        cli.err_console.print(f"[red]INVALID_PARAMS:[/] --split {split!r}: use all, dev or holdout")
        raise typer.Exit(2)
    if service and split != "all":
        cli.err_console.print(
            "[red]INVALID_PARAMS:[/] --service analyses on the service's whole universe; "
            "a --split of it can only be evaluated in this process"
        )
        raise typer.Exit(2)
    quiet = as_json or not sys.stderr.isatty()
    client = cli._client(service, timeout_ms=30_000, retries=3) if service else None
    try:
        with cli._progress_bar(quiet) as bar:
            task = bar.add_task("month-ends", total=None)

            def step(what: str, done: int, total: int) -> None:
                bar.update(task, description=str(what), completed=done, total=total)

            result = run_evaluation(
                settings,
                split=split,
                markets=_markets(markets),
                start=start,
                end=end,
                engine_name=engine,
                top_n=top_n,
                rolling=rolling,
                portfolio=portfolio,
                workers=workers,
                service=client,
                png=png or "evaluation_reliability.png",
                on_progress=step,
            )
    except typer.Exit:
        raise
    except Exception as exc:
        raise _fail(exc) from None
    finally:
        if client is not None:
            client.close()
    payload = result.to_json()
    if out:
        from tacoreservice.backtest.report import write_json

        write_json(result.to_json(with_snapshots=True), out)
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    console = cli.console
    console.print(
        f"{result.engine} engine on {len(result.symbols)} symbols ({split}), month-ends "
        f"{result.start} .. {result.end}, data {result.data_dir or 'bundled'}"
    )
    console.print(ic_table([r for r in result.ic if r["horizon"] == 21]))
    console.print(ic_table([r for r in result.ic if r["horizon"] != 21], "Other horizons"))
    for table in calibration_tables(result.by_rating, result.by_confidence):
        console.print(table)
    if result.portfolios:
        console.print(portfolio_table(result.portfolios))
    if result.rolling is not None:
        _print_rolling(result.rolling)
    for line in (
        f"reliability chart: {result.reliability_png}" if result.reliability_png else "",
        f"results: {out}" if out else "",
        f"wall time: {result.elapsed_s:.1f} s",
    ):
        if line:
            sys.stdout.write(line + "\n")


def _print_rolling(data: dict[str, Any]) -> None:
    from tacoreservice.backtest.report import universe_table
    from tacoreservice.backtest.universe import UniverseResult

    fields = {k: v for k, v in data.items() if k in UniverseResult.__dataclass_fields__}
    _base().console.print(universe_table(UniverseResult(**fields)))


def calibrate(
    data_dir: DataDirOpt = None,
    markets: MarketsOpt = "us,cn,crypto",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Fit for decisions on this day: at the last month-end before its month "
            "(default: at the data's last day, for decisions after it).",
        ),
    ] = None,
    out_dir: Annotated[
        str | None,
        typer.Option(help="Where to write (default: analysis.calibration_dir)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the calibrations as JSON.")
    ] = False,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Config file.")] = None,
) -> None:
    """Refit the quant model's calibration per market and store it, versioned.

    A calibration holds the fitted signal weights, the drift and each signal's
    measured IC with the date range it was fitted on; workers load it, and use it
    only for decisions after that range.
    """
    from pathlib import Path

    import numpy as np
    from rich.table import Table

    from tacoreservice.analysis.calibration import (
        CalibrationStore,
        fit_calibration,
        fit_month_index,
    )
    from tacoreservice.analysis.factors import market_panel
    from tacoreservice.market_data.provider import load_provider

    cli = _base()
    settings = _load(config, data_dir)
    folder = Path(out_dir or settings.analysis.calibration_dir)
    written = []
    try:
        provider = load_provider(settings.market_data)
        for market in _markets(markets):
            if not provider.symbols(market):
                continue
            panel = market_panel(provider, market)
            if as_of:
                k = fit_month_index(panel, np.datetime64(as_of[:10], "D"))
            else:
                k = panel.days.shape[0] - 1
            if k < 0:
                cli.err_console.print(f"{market}: no data before {as_of}; nothing to fit")
                continue
            cal = fit_calibration(panel, k)
            written.append((cal, CalibrationStore.write(folder, cal)))
    except typer.Exit:
        raise
    except Exception as exc:
        raise _fail(exc) from None
    if as_json:
        sys.stdout.write(
            json.dumps([c.to_json() | {"path": str(p)} for c, p in written], indent=2) + "\n"
        )
        return
    table = Table(
        title=f"Calibrations written to {folder}",
        caption="months: month-ends with known outcomes in the fit window",
    )
    table.add_column("market", no_wrap=True)
    table.add_column("fit day", no_wrap=True)
    for col in ("months", "symbols", "drift"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("largest weights")
    for cal, _path in written:
        top = sorted(cal.weights.items(), key=lambda kv: -abs(kv[1]))[:3]
        table.add_row(
            cal.market.upper(),
            cal.fit_day,
            str(cal.months),
            str(len(cal.symbols)),
            f"{cal.drift:+.3f}",
            ", ".join(f"{k} {v:+.3f}" for k, v in top) or f"none ({cal.status})",
        )
    cli.console.print(table)
    for _cal, path in written:
        sys.stdout.write(f"{path}\n")


def portfolio_backtest(
    settings: Any,
    markets: list[str],
    start: str,
    end: str,
    engine: str | None,
    top_n: int | None,
    service: str | None,
    quiet: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]], Any, list[str]]:
    """``tacore backtest --portfolio``: the monthly book per market (payload, rows, table,
    extra lines), as the harness computes it."""
    from tacoreservice.analysis.engines import load_engine
    from tacoreservice.backtest.engine import cost_per_side
    from tacoreservice.evaluation.portfolio import run_portfolios
    from tacoreservice.evaluation.render import portfolio_table
    from tacoreservice.evaluation.snapshots import month_end_snapshots
    from tacoreservice.market_data.provider import load_provider

    cli = _base()
    provider = load_provider(settings.market_data)
    eng = load_engine(engine or settings.analysis.default_engine, settings)
    client = cli._client(service, timeout_ms=30_000, retries=3) if service else None
    try:
        with cli._progress_bar(quiet) as bar:
            task = bar.add_task("month-ends", total=None)

            def step(market: str, done: int, total: int) -> None:
                bar.update(task, description=f"{market} month-ends", completed=done, total=total)

            snaps = month_end_snapshots(
                provider, eng, settings, markets, start, end, service=client, on_progress=step
            )
    finally:
        if client is not None:
            client.close()
    rows = []
    for market in markets:
        for run in run_portfolios(
            provider, market, snaps, start, end, cost_per_side(settings.trading.costs), top_n
        ):
            rows.append(run.row())
    payload = {"start": start, "end": end, "engine": eng.name, "portfolios": rows}
    return payload, rows, portfolio_table(rows), []


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
    app.command()(calibrate)

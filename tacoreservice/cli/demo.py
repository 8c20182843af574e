"""``tacore demo pipeline``: ScanPulse's chain, hop by hop (a repository checkout)."""

from __future__ import annotations

from typing import Annotated

import typer

from tacoreservice.cli.common import ExitCode, app, console, fail, fail_from

demo_app = typer.Typer(help="Demonstrations on this machine (need a repository checkout).")
app.add_typer(demo_app, name="demo")


@demo_app.command("pipeline")
def demo_pipeline(
    cycles: Annotated[int, typer.Option(min=1, help="Scans to run.")] = 1,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", "-e", help="Use this running service instead of starting one."),
    ] = None,
    market: Annotated[str, typer.Option(help="US, CN, crypto or all.")] = "US",
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: the whole market).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Trade as of this day (default: latest bar).")
    ] = None,
    min_score: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Scan score an opportunity needs.")
    ] = 0.45,
    quantity: Annotated[float, typer.Option(min=1e-8, help="Units per order.")] = 10.0,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Workers of the service.")] = 2,
) -> None:
    """Run ScanPulse: scan -> Redis -> PUB -> trader -> analyse -> risk -> order -> notify.

    Starts the service and a redis-server unless --endpoint and REDIS_URL name running ones.

    Prints each hop and a summary table, then stops what it started.
    """
    from datetime import date

    from tacoreservice.cli.demo_pipeline import DemoError, DemoOptions, run_demo
    from tacoreservice.client import TACoreError

    if as_of is not None:
        try:
            as_of = date.fromisoformat(as_of).isoformat()
        except ValueError:
            fail(ExitCode.USAGE, f"--as-of {as_of!r} is not a date; use YYYY-MM-DD")
    names = tuple(s.strip() for s in (symbols or "").split(",") if s.strip())
    options = DemoOptions(cycles, endpoint, market, names, as_of, min_score, quantity, workers)
    try:
        code = run_demo(options, console)
    except DemoError as exc:
        fail(ExitCode.USAGE, f"demo: {exc}")
    except TACoreError as exc:
        if exc.code == "TIMEOUT":
            fail_from(exc)
        fail(ExitCode.FAILED, f"demo: the service answered {exc}")
    raise typer.Exit(code)

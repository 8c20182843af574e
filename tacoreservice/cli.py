"""The ``tacore`` command: run the service's processes and talk to a running service."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from tacoreservice.cli_common import (
    ConfigOpt,
    EndpointOpt,
    _client,
    _endpoint,
    _progress_bar,
    _settings,
    app,
    console,
    err_console,
)
from tacoreservice.evaluation import cli as evaluation_cli

keys_app = typer.Typer(help="CURVE keys for the broker, its clients and its workers.")
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def keys_generate(
    client: Annotated[
        list[str] | None,
        typer.Option("--client", help="A client name (repeat): scanner, trader, ..."),
    ] = None,
    worker: Annotated[
        list[str] | None, typer.Option("--worker", help="A worker key name (repeat).")
    ] = None,
    keys_dir: Annotated[
        str | None, typer.Option("--dir", help="Where to write (default TACORE_KEYS_DIR or keys).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace existing pairs (locks out their holders).")
    ] = False,
) -> None:
    """Write the broker's key pair and one pair per client and worker (secrets mode 0600).

    Existing pairs are kept, so running it again only adds the new names.
    """
    from tacoreservice.security.keys import generate_keys

    folder = keys_dir or os.environ.get("TACORE_KEYS_DIR") or "keys"
    clients = client or ["scanner", "trader", "risk_guard", "optimizer", "console"]
    try:
        out = generate_keys(folder, clients, worker or ["worker"], force=force)
    except (ValueError, RuntimeError) as exc:
        err_console.print(f"[red]cannot generate keys:[/] {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"CURVE keys in {out.keys_dir}")
    table.add_column("file")
    table.add_column("")
    for path in out.created:
        table.add_row(str(path), "written")
    for path in out.kept:
        table.add_row(str(path), "kept (exists; --force replaces)")
    console.print(table)
    console.print(
        "Broker: TACORE_SECURITY=curve with security.keys_dir pointing here. "
        "Each client gets server.key and its private/NAME.key_secret; each worker host gets "
        "server.key and private/worker.key_secret (see SECURITY.md)."
    )


@app.command()
def serve(
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="WORKER_COUNT.")] = None,
    frontend_port: Annotated[int | None, typer.Option(help="ZMQ_FRONTEND_PORT.")] = None,
    backend_port: Annotated[int | None, typer.Option(help="ZMQ_BACKEND_PORT.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ...")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run everything on this host: broker plus supervised local workers."""
    from tacoreservice.service_runner import run_service

    settings = _settings(
        config,
        {
            "worker.count": workers,
            "broker.frontend_port": frontend_port,
            "broker.backend_port": backend_port,
            "logging.level": log_level,
        },
    )
    raise typer.Exit(run_service(settings, with_workers=True))


@app.command()
def broker(
    frontend_port: Annotated[int | None, typer.Option(help="ZMQ_FRONTEND_PORT.")] = None,
    backend_port: Annotated[int | None, typer.Option(help="ZMQ_BACKEND_PORT.")] = None,
    backend_host: Annotated[
        str | None, typer.Option(help="Address the backend binds, 0.0.0.0 for remote workers.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the broker alone; workers connect to its backend from this or other hosts."""
    from tacoreservice.service_runner import run_service

    settings = _settings(
        config,
        {
            "broker.frontend_port": frontend_port,
            "broker.backend_port": backend_port,
            "broker.backend_host": backend_host,
        },
    )
    raise typer.Exit(run_service(settings, with_workers=False))


@app.command()
def worker(
    endpoint: Annotated[
        str | None, typer.Option(help="Broker backend, e.g. tcp://10.0.0.5:5560.")
    ] = None,
    worker_id: Annotated[str | None, typer.Option(help="Unique worker name.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run one worker that connects to a broker's backend."""
    from tacoreservice.service_runner import run_worker

    settings = _settings(config)
    raise typer.Exit(run_worker(settings, worker_id=worker_id, endpoint=endpoint))


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_params(pairs: list[str], json_text: str | None) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when they can be, dotted keys nest)."""
    params: dict[str, Any] = {}
    if json_text:
        loaded = json.loads(json_text)
        if not isinstance(loaded, dict):
            raise typer.BadParameter("--json must hold a JSON object")
        params.update(loaded)
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"expected key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        node = params
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_value(raw)
    return params


@app.command()
def call(
    method: Annotated[str, typer.Argument(help="Method name, e.g. get.market_data.")],
    params: Annotated[
        list[str] | None, typer.Argument(help="key=value pairs, e.g. symbol=AAPL history=5")
    ] = None,
    json_params: Annotated[
        str | None, typer.Option("--json", help="Params as a JSON object.")
    ] = None,
    endpoint: EndpointOpt = None,
    timeout_ms: Annotated[int, typer.Option(help="Per-attempt timeout.")] = 10_000,
    retries: Annotated[int, typer.Option(help="Retries after a timeout.")] = 2,
) -> None:
    """Call any method and print the whole reply as JSON."""
    from tacoreservice.client import TACoreTimeout

    try:
        body = parse_params(params or [], json_params)
    except (json.JSONDecodeError, typer.BadParameter) as exc:
        err_console.print(f"[red]bad params:[/] {exc}")
        raise typer.Exit(2) from None
    with _client(endpoint, timeout_ms=timeout_ms, retries=retries) as client:
        try:
            reply = client.request(method, body)
        except TACoreTimeout as exc:
            err_console.print(f"[red]{exc}[/]")
            raise typer.Exit(3) from None
    sys.stdout.write(json.dumps(reply, indent=2, ensure_ascii=False) + "\n")
    raise typer.Exit(0 if reply.get("status") == "success" else 1)


@app.command()
def health(
    endpoint: EndpointOpt = None,
    detailed: Annotated[bool, typer.Option("--detailed", "-d", help="Per-worker list.")] = False,
    timeout_ms: Annotated[int, typer.Option(help="Per-attempt timeout.")] = 3000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a running service; exit 0 when healthy (usable as a container HEALTHCHECK)."""
    from tacoreservice.client import TACoreError

    with _client(endpoint, timeout_ms=timeout_ms, retries=1) as client:
        try:
            data = client.health(detailed=detailed)
        except TACoreError as exc:
            err_console.print(f"[red]unhealthy:[/] {exc}")
            raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        table = Table(title=f"TACoreService {data.get('version')} on {data.get('host')}")
        table.add_column("field")
        table.add_column("value")
        table.add_row("status", str(data["status"]))
        table.add_row("uptime", f"{data['uptime_s']:.0f} s")
        workers = data["workers"]
        table.add_row("workers", f"{workers['alive']} alive, {workers['busy']} busy")
        table.add_row("queue", f"{data['queue_depth']} / {data['max_queue_size']}")
        req = data["requests"]
        table.add_row("requests", f"{req['total']} total, {req['error']} errors")
        console.print(table)
        if detailed:
            wt = Table(title="workers")
            for col in ("worker_id", "pid", "host", "state", "heartbeat_age_s", "served"):
                wt.add_column(col)
            for w in data.get("worker_list", []):
                wt.add_row(
                    *(
                        str(w.get(c))
                        for c in ("worker_id", "pid", "host", "state", "heartbeat_age_s", "served")
                    )
                )
            console.print(wt)
    raise typer.Exit(0 if data.get("status") == "healthy" else 1)


_ROLE_ICONS = {"pending": "·", "running": "…", "done": "✓", "skipped": "–"}


def _run_local(method: str, params: dict[str, Any], on_progress: Any) -> Any:
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
    table = Table(title=f"analysing {symbol}: {stage} ({percent:.0f}%)", show_header=False)
    table.add_column("role")
    table.add_column("state")
    for role, state in roles.items():
        table.add_row(role, f"{_ROLE_ICONS.get(state, state)} {state}")
    return table


def _decision_table(data: dict[str, Any]) -> Table:
    table = Table(
        title=f"{data.get('symbol')} decision ({data.get('engine')}, as of {data.get('as_of')})"
    )
    table.add_column("field")
    table.add_column("value")
    for key in (
        "rating",
        "action",
        "confidence",
        "target_price",
        "stop_loss",
        "take_profit",
        "position_size_pct",
        "risk_score",
    ):
        if key in data:
            table.add_row(key, str(data[key]))
    table.add_row("reasoning", str(data.get("reasoning", ""))[:600])
    return table


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
        str | None, typer.Option(help="Write every role's report to this Markdown file.")
    ] = None,
    local: Annotated[
        bool, typer.Option(help="Run in this process instead of calling the service.")
    ] = False,
    endpoint: EndpointOpt = None,
    timeout_s: Annotated[float, typer.Option(help="Give up after this long.")] = 900.0,
) -> None:
    """Run the multi-agent analysis of one symbol, with live progress per role."""
    import time

    from rich.live import Live

    from tacoreservice.client import TACoreError

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
    quiet = as_json or not sys.stdout.isatty()
    try:
        if local:
            with Live(console=err_console, transient=True, auto_refresh=False) as live:

                def show(stage: str, percent: float, detail: dict[str, Any] | None = None) -> None:
                    roles = (detail or {}).get("roles") or {}
                    if not quiet:
                        live.update(_progress_table(symbol, stage, percent, roles), refresh=True)

                data = _run_local("analyze.stock", params, show)
        else:
            with _client(endpoint, timeout_ms=10_000, retries=2) as client:
                job = client.call("job.submit", {"method": "analyze.stock", "params": params})
                deadline = time.monotonic() + timeout_s
                with Live(console=err_console, transient=True, auto_refresh=False) as live:
                    while True:
                        status = client.call("job.status", {"job_id": job["job_id"]})
                        roles = (status.get("progress") or {}).get("roles") or {}
                        if not quiet:
                            live.update(
                                _progress_table(
                                    symbol,
                                    status.get("stage") or status["state"],
                                    status["percent"],
                                    roles,
                                ),
                                refresh=True,
                            )
                        if status["state"] in ("succeeded", "failed", "cancelled"):
                            break
                        if time.monotonic() > deadline:
                            client.call("job.cancel", {"job_id": job["job_id"]})
                            raise TACoreError(
                                "TIMEOUT", f"analysis took longer than {timeout_s:.0f} s"
                            )
                        time.sleep(0.2)
                result = client.call("job.result", {"job_id": job["job_id"]})
                if result["state"] != "succeeded":
                    error = result.get("error") or {}
                    raise TACoreError(str(error.get("code")), str(error.get("message")))
                data = result["result"]
    except TACoreError as exc:
        err_console.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(1) from None
    except Exception as exc:  # in-process run: ServiceError and friends
        code = getattr(getattr(exc, "code", None), "value", type(exc).__name__)
        err_console.print(f"[red]{code}:[/] {exc}")
        raise typer.Exit(1) from None
    if report:
        reports = data.get("reports") or {}
        text = "\n\n".join(f"## {role}\n\n{body}" for role, body in reports.items())
        with open(report, "w", encoding="utf-8") as f:
            f.write(f"# {data.get('symbol')} analysis, as of {data.get('as_of')}\n\n{text}\n")
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        console.print(_decision_table(data))


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
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Scan as of this date.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    local: Annotated[
        bool, typer.Option(help="Run in this process instead of calling the service.")
    ] = False,
    endpoint: EndpointOpt = None,
) -> None:
    """Scan a market and print the ranked opportunities."""
    from tacoreservice.client import TACoreError

    criteria: dict[str, Any] = {}
    if min_volume is not None:
        criteria["min_volume"] = min_volume
    if min_change_pct is not None:
        criteria["min_change_pct"] = min_change_pct
    if price_range:
        try:
            lo, hi = (float(x) for x in price_range.split(","))
        except ValueError:
            err_console.print("[red]--price-range takes two numbers: lo,hi[/]")
            raise typer.Exit(2) from None
        criteria["price_range"] = [lo, hi]
    params: dict[str, Any] = {
        "market": market,
        "scan_type": scan_type,
        "criteria": criteria,
        "limit": limit,
    }
    if as_of:
        params["as_of"] = as_of
    try:
        if local:
            data = _run_local("scan.market", params, lambda *a: None)
        else:
            with _client(endpoint, timeout_ms=30_000, retries=1) as client:
                data = client.call("scan.market", params)
    except TACoreError as exc:
        err_console.print(f"[red]{exc.code}:[/] {exc.message}")
        raise typer.Exit(1) from None
    except Exception as exc:
        code = getattr(getattr(exc, "code", None), "value", type(exc).__name__)
        err_console.print(f"[red]{code}:[/] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    table = Table(
        title=f"scan {data.get('market', market)} ({data.get('scan_type')}): "
        f"{data.get('matched')} of {data.get('total_scanned')} matched, as of {data.get('as_of')}"
    )
    for col in ("#", "symbol", "score", "price", "change %", "signals", "reason"):
        table.add_column(col)
    for i, row in enumerate(data.get("scan_results", [])[:limit], 1):
        table.add_row(
            str(i),
            str(row.get("symbol")),
            f"{row.get('score', 0):.2f}",
            str(row.get("price")),
            str(row.get("change_pct")),
            ", ".join(row.get("signals") or []),
            str(row.get("reason", ""))[:80],
        )
    console.print(table)


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

    settings = _settings(config)
    names = [s.strip() for s in (symbols or "").split(",") if s.strip()]
    quiet = as_json or not sys.stderr.isatty()
    try:
        if portfolio:
            from tacoreservice.evaluation.cli import portfolio_backtest

            markets_list = [m.strip() for m in markets.split(",") if m.strip()]
            data = portfolio_backtest(
                settings, markets_list, start or "2022-01-01", end or "2100-01-01", engine,
                top_n, service, quiet,
            )  # fmt: skip
        elif universe:
            if start or end:
                err_console.print("[red]--start/--end do not apply to --universe[/] (it uses "
                                  "every complete window of the history)")  # fmt: skip
                raise typer.Exit(2)
            data = _backtest_universe(
                settings, names, engine, depth, (window_months, step_months, warmup_bars),
                workers, service, quiet,
            )  # fmt: skip
        else:
            data = _backtest_window(settings, names, start, end, engine, depth, out, chart, quiet)
    except typer.Exit:
        raise
    except Exception as exc:  # ServiceError (bad symbol, no data) and friends
        code = getattr(getattr(exc, "code", None), "value", type(exc).__name__)
        err_console.print(f"[red]{code}:[/] {exc}")
        raise typer.Exit(1) from None
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
        console.print(table)
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
    with _progress_bar(quiet) as bar:
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
    usage, usage_lines = _llm_usage_lines(engine, settings)
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

    with _progress_bar(quiet) as bar:
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
            service=_endpoint(service) if service else None,
            on_progress=step,
        )
    rows = [{"market": "all", **r} for r in result.summary] + [
        {"market": m, **r} for m, summary in result.by_market.items() for r in summary
    ]
    extra = [f"wall time: {result.elapsed_s:.1f} s on {result.workers} processes"]
    if result.skipped:
        extra.append("skipped: " + "; ".join(f"{s['symbol']} ({s['why']})" for s in result.skipped))
    return result.to_json(), rows, report.universe_table(result), extra


# --- tacore llm: the local model server ----------------------------------------------------

llm_app = typer.Typer(help="A local model for the llm engine (llama-cpp-python, loopback).")
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[
        str | None,
        typer.Option(help="smollm2 (the llm-local extra's model) or a GGUF file path."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: free).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: cores).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve a local GGUF model on loopback (OpenAI API) until Ctrl+C or SIGTERM.

    `tacore serve` starts one by itself when llm.local_model is set; this is for
    anything else (a lone worker, another tool): set TACORE_LLM_BASE_URL to the printed URL.
    """
    import signal
    import threading

    from tacoreservice.analysis.engines.llm_server import server_for

    settings = _settings(
        config,
        {
            "llm.local_model": model or "smollm2",
            "llm.local_port": port,
            "llm.local_threads": threads,
        },
    )
    llm = settings.llm
    try:
        server = server_for(llm, settings.logging.dir).start(llm.local_start_timeout_s)
    except Exception as exc:  # ServiceError: not installed, no such file, crashed at start
        code = getattr(getattr(exc, "code", None), "value", type(exc).__name__)
        err_console.print(f"[red]{code}:[/] {exc}")
        raise typer.Exit(1) from None
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    sys.stdout.write(
        f"serving {server.model} (pid {server.pid}); log: {server.log_path}\n"
        f"TACORE_LLM_BASE_URL={server.base_url}\n"
        f"TACORE_LLM_QUICK_MODEL={server.alias}\nTACORE_LLM_DEEP_MODEL={server.alias}\n"
    )
    sys.stdout.flush()
    try:
        done.wait()
    finally:
        server.stop()


def _llm_usage_lines(engine_name: str | None, settings: Any) -> tuple[dict[str, Any], list[str]]:
    """Token use of the llm engine over a backtest run (the engine is cached per process)."""
    from tacoreservice.analysis.engines import load_engine

    if (engine_name or settings.analysis.default_engine) != "llm":
        return {}, []
    totals = load_engine("llm", settings).usage_totals()  # type: ignore[attr-defined]
    o = totals["outputs"]
    return {"llm_usage": totals}, [
        f"LLM: {totals['analyses']} analyses, {totals['calls']} calls, "
        f"{totals['tokens_used']:,} tokens ({totals['prompt_tokens']:,} prompt, "
        f"{totals['completion_tokens']:,} completion) in {totals['llm_seconds']:.1f} s; "
        f"role outputs used {o['used']}, repaired {o['repaired']}, fell back {o['fell_back']}"
    ]


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

    from rich.markup import escape

    from tacoreservice.client import TACoreError
    from tacoreservice.demo_pipeline import DemoError, DemoOptions, run_demo

    if as_of is not None:
        try:
            as_of = date.fromisoformat(as_of).isoformat()
        except ValueError:
            err_console.print(f"[red]--as-of {escape(as_of)!r} is not a date; use YYYY-MM-DD[/]")
            raise typer.Exit(2) from None
    names = tuple(s.strip() for s in (symbols or "").split(",") if s.strip())
    options = DemoOptions(cycles, endpoint, market, names, as_of, min_score, quantity, workers)
    try:
        code = run_demo(options, console)
    except DemoError as exc:
        err_console.print(f"[red]demo:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except TACoreError as exc:
        err_console.print(f"[red]demo: the service answered {escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


evaluation_cli.register(app)
# backup, restore and watchdog: tacoreservice/cli_ops.py adds them to `app` on import.
import tacoreservice.cli_ops  # noqa: E402,F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()

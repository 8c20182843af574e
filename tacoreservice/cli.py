"""The ``tacore`` command: run the service's processes and talk to a running service."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tacoreservice.config import ConfigError

app = typer.Typer(
    name="tacore",
    help="TACoreService: run the broker and workers, and call the service.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        "-e",
        help="Broker frontend (default: TACORE_ENDPOINT or tcp://127.0.0.1:ZMQ_FRONTEND_PORT).",
    ),
]
ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="Config file.")]


def _settings(config: str | None, overrides: dict[str, Any] | None = None) -> Any:
    from tacoreservice.config import load_settings

    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        err_console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


def _endpoint(endpoint: str | None) -> str:
    if endpoint:
        return endpoint
    if os.environ.get("TACORE_ENDPOINT"):
        return os.environ["TACORE_ENDPOINT"]
    port = os.environ.get("ZMQ_FRONTEND_PORT", "5555")
    return f"tcp://127.0.0.1:{port}"


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
    from tacoreservice.client import TACoreClient, TACoreTimeout

    try:
        body = parse_params(params or [], json_params)
    except (json.JSONDecodeError, typer.BadParameter) as exc:
        err_console.print(f"[red]bad params:[/] {exc}")
        raise typer.Exit(2) from None
    with TACoreClient(_endpoint(endpoint), timeout_ms=timeout_ms, retries=retries) as client:
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
    from tacoreservice.client import TACoreClient, TACoreError

    with TACoreClient(_endpoint(endpoint), timeout_ms=timeout_ms, retries=1) as client:
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

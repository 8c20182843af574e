"""``tacore serve``, ``broker``, ``worker`` and ``keys generate``: run the service's processes."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tacoreservice.cli.common import (
    ConfigOpt,
    ExitCode,
    app,
    console,
    fail,
    load_settings_or_exit,
)
from tacoreservice.cli.tables import new_table, show

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
        fail(ExitCode.USAGE, f"cannot generate keys: {exc}")
    table = new_table(f"CURVE keys in {out.keys_dir}")
    table.add_column("file", no_wrap=True)
    table.add_column("")
    for path in out.created:
        table.add_row(str(path), "written")
    for path in out.kept:
        table.add_row(str(path), "kept (exists; --force replaces)")
    show(table, console)
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

    settings = load_settings_or_exit(
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

    settings = load_settings_or_exit(
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

    settings = load_settings_or_exit(config)
    raise typer.Exit(run_worker(settings, worker_id=worker_id, endpoint=endpoint))

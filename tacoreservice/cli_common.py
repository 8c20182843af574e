"""What every ``tacore`` verb shares: the Typer app, the consoles, the common options and the
helpers that turn them into settings and a client.

:mod:`tacoreservice.cli` defines the verbs on ``app`` and pulls in the modules that add more
(:mod:`tacoreservice.cli_ops`, :mod:`tacoreservice.evaluation.cli`); those import this module,
never :mod:`tacoreservice.cli`, so the command's parts do not import each other.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console

from tacoreservice.config import ConfigError

__all__ = [
    "ConfigOpt",
    "EndpointOpt",
    "_client",
    "_endpoint",
    "_progress_bar",
    "_settings",
    "app",
    "console",
    "err_console",
]

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
        help="Broker frontend (default: TACORE_ENDPOINT, TACORE_SERVICE_URL or "
        "tcp://127.0.0.1:ZMQ_FRONTEND_PORT).",
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


def _endpoint(endpoint: str | None) -> list[str]:
    from tacoreservice.client.endpoint import default_endpoints

    if endpoint:
        return [e.strip() for e in endpoint.split(",") if e.strip()]
    return default_endpoints()


def _client(endpoint: str | None, **kwargs: Any) -> Any:
    """A client for the CLI's verbs. With CURVE on, the keys come from the environment:
    TACORE_CURVE_SERVER_KEY (the broker's server.key) and TACORE_CURVE_CLIENT_KEY (this
    module's NAME.key_secret); TACORE_CLIENT_NAME names the caller when security is off."""
    from tacoreservice.client import TACoreClient

    try:
        return TACoreClient(
            _endpoint(endpoint),
            server_key=os.environ.get("TACORE_CURVE_SERVER_KEY") or None,
            client_key=os.environ.get("TACORE_CURVE_CLIENT_KEY") or None,
            client_name=os.environ.get("TACORE_CLIENT_NAME") or None,
            **kwargs,
        )
    except (ConfigError, ValueError) as exc:
        err_console.print(f"[red]client keys:[/] {exc}")
        raise typer.Exit(2) from None


def _progress_bar(quiet: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    )

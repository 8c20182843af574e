"""What every ``tacore`` verb shares: the app, the consoles, the options, one table of exit
codes, the client with its connection check, a spinner while waiting, and errors.

Exit codes (the same for every command):

====  ==========================================================================================
code  meaning
====  ==========================================================================================
0     done
1     the service (or the in-process run) answered with an error, or is unhealthy
2     bad usage or input: an unknown option, a bad value, a refused backup or restore
3     the service could not be reached: nothing listens at the endpoint, or no answer in time
130   interrupted (Ctrl+C)
====  ==========================================================================================
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from enum import IntEnum
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "ConfigOpt",
    "EndpointOpt",
    "ExitCode",
    "app",
    "call_service",
    "client_for",
    "console",
    "endpoints",
    "err_console",
    "fail",
    "fail_from",
    "load_settings_or_exit",
    "progress_bar",
    "waiting",
]


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    INTERRUPTED = 130


app = typer.Typer(
    name="tacore",
    help="TACoreService: run the broker and workers, and call the service.\n\n"
    "Exit codes: 0 done, 1 the service answered with an error (or is unhealthy), 2 bad usage "
    "or input, 3 the service could not be reached, 130 interrupted.",
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

START_HINT = (
    "Start it with ./scripts/serve.sh (or `tacore serve`), or point --endpoint / "
    "TACORE_ENDPOINT at a running service."
)


def fail(code: ExitCode, message: str, *, markup: bool = False) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    err_console.print(message if markup else escape(message), soft_wrap=True, highlight=False)
    raise typer.Exit(int(code))


def fail_from(exc: BaseException) -> NoReturn:
    """Exit for an error a call or an in-process run raised: its code and message, exit 1
    (3 for a timeout, with what to check)."""
    code = getattr(exc, "code", None)
    code = getattr(code, "value", code)  # ServiceError carries an ErrorCode
    message = getattr(exc, "message", None) or str(exc)
    if code == "TIMEOUT":
        fail(
            ExitCode.UNREACHABLE,
            f"TIMEOUT: {message}. The service may be overloaded or stopping: check it with "
            "`tacore health` or its dashboard.",
        )
    fail(ExitCode.FAILED, f"{code or type(exc).__name__}: {message}")


def load_settings_or_exit(config: str | None, overrides: dict[str, Any] | None = None) -> Any:
    from tacoreservice.config import ConfigError, load_settings

    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        fail(ExitCode.USAGE, f"configuration error: {exc}")


def endpoints(endpoint: str | None) -> list[str]:
    from tacoreservice.client.endpoint import default_endpoints

    if endpoint:
        return [e.strip() for e in endpoint.split(",") if e.strip()]
    return default_endpoints()


def _tcp_address(endpoint: str) -> tuple[str, int] | None:
    if not endpoint.startswith("tcp://"):
        return None
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        return None
    if port is None or not parts.hostname:
        return None
    host = parts.hostname
    if host in ("*", "0.0.0.0"):
        host = "127.0.0.1"
    return host, port


def listening(endpoint: str, timeout_s: float = 0.5) -> bool:
    """Whether something accepts a TCP connection at ``endpoint`` (non-TCP: assumed yes)."""
    address = _tcp_address(endpoint)
    if address is None:
        return True
    try:
        with socket.create_connection(address, timeout=timeout_s):
            return True
    except OSError:
        return False


def client_for(endpoint: str | None, *, check: bool = True, **kwargs: Any) -> Any:
    """A client for the CLI's verbs, after checking that something listens (nothing does:
    exit 3 at once, saying how to start the service). With CURVE on, the keys come from the
    environment: TACORE_CURVE_SERVER_KEY (the broker's server.key) and TACORE_CURVE_CLIENT_KEY
    (this module's NAME.key_secret); TACORE_CLIENT_NAME names the caller when security is
    off."""
    targets = endpoints(endpoint)
    if check and not any(listening(e) for e in targets):
        fail(ExitCode.UNREACHABLE, f"nothing is listening on {', '.join(targets)}. {START_HINT}")
    from tacoreservice.client import TACoreClient
    from tacoreservice.config import ConfigError

    try:
        return TACoreClient(
            targets,
            server_key=os.environ.get("TACORE_CURVE_SERVER_KEY") or None,
            client_key=os.environ.get("TACORE_CURVE_CLIENT_KEY") or None,
            client_name=os.environ.get("TACORE_CLIENT_NAME") or None,
            **kwargs,
        )
    except (ConfigError, ValueError) as exc:
        fail(ExitCode.USAGE, f"client keys: {exc}")


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """A spinner on stderr while waiting for the service (only on a terminal)."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(escape(what), spinner="dots"):
        yield


def call_service(
    endpoint: str | None,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    timeout_ms: int = 10_000,
    retries: int = 1,
) -> Any:
    """One call's ``data``, with a spinner; an error reply or no answer exits (1, 3)."""
    from tacoreservice.client import TACoreError

    with client_for(endpoint, timeout_ms=timeout_ms, retries=retries) as client:
        try:
            with waiting(f"{method} ..."):
                return client.call(method, params or {})
        except TACoreError as exc:
            fail_from(exc)


def progress_bar(quiet: bool) -> Any:
    """A progress bar on stderr (nothing with ``quiet``)."""
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

"""The ``tacore`` command: run the service's processes and talk to a running service.

One module per group of verbs, each registering on :data:`app` when imported: ``run``
(serve, broker, worker, keys), ``calls`` (call, health), ``analysis`` (analyze, scan),
``backtest``, ``trading`` (portfolio, orders), ``jobs``, ``llm`` (serve), ``demo``, ``ops``
(backup, restore, watchdog) and :mod:`tacoreservice.evaluation.cli` (evaluate, calibrate). What they
share, the exit codes among it, is in :mod:`tacoreservice.cli.common`.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from tacoreservice.cli import (  # noqa: F401  (each registers its verbs)
    analysis,
    backtest,
    calls,
    demo,
    jobs,
    llm,
    ops,
    run,
    trading,
)
from tacoreservice.cli.backtest import _progress_bar
from tacoreservice.cli.calls import parse_params
from tacoreservice.cli.common import (
    ConfigOpt,
    EndpointOpt,
    ExitCode,
    app,
    client_for,
    console,
    endpoints,
    err_console,
    load_settings_or_exit,
)
from tacoreservice.evaluation import cli as evaluation_cli

__all__ = [
    "ConfigOpt",
    "EndpointOpt",
    "ExitCode",
    "app",
    "console",
    "err_console",
    "main",
    "parse_params",
]

evaluation_cli.register(app)

# The names tacoreservice.evaluation.cli calls.
_settings = load_settings_or_exit
_client = client_for
_endpoint = endpoints
__all__ += ["_client", "_endpoint", "_progress_bar", "_settings"]


class Interrupted(BaseException):
    """Ctrl+C: raised past click (which would turn KeyboardInterrupt into exit 1)."""


def _interrupt(_signum: int, _frame: Any) -> None:
    raise Interrupted


def main() -> None:
    # Commands that handle SIGINT themselves (serve drains, watchdog stops) install their own.
    signal.signal(signal.SIGINT, _interrupt)
    try:
        app()
    except Interrupted:
        err_console.print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    main()

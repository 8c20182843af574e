"""The ``tacore`` command: run the service's processes and talk to a running service.

One module per group of verbs, each registering on :data:`app` when imported: ``run``
(serve, broker, worker, keys), ``calls`` (call, health), ``analysis`` (analyze, scan),
``backtest``, ``evaluate`` (evaluate, calibrate), ``trading`` (portfolio, orders), ``jobs``,
``llm`` (serve), ``demo`` and ``ops`` (backup, restore, watchdog). What they share, the exit
codes among it, is in :mod:`tacoreservice.cli.common`.
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
    evaluate,
    jobs,
    llm,
    ops,
    run,
    trading,
)
from tacoreservice.cli.calls import parse_params
from tacoreservice.cli.common import (
    ConfigOpt,
    EndpointOpt,
    ExitCode,
    app,
    console,
    err_console,
)

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

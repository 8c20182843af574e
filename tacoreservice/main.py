"""``python -m tacoreservice.main``: everything on one host (the embedded default).

Broker on ZMQ_FRONTEND_PORT / ZMQ_BACKEND_PORT plus WORKER_COUNT supervised local workers.
"""

from __future__ import annotations

import sys

from tacoreservice.config import ConfigError
from tacoreservice.service_runner import run_service, settings_for_process


def main() -> int:
    try:
        settings = settings_for_process()
    except ConfigError as exc:
        print(f"tacoreservice: {exc}", file=sys.stderr)
        return 2
    return run_service(settings, with_workers=True)


if __name__ == "__main__":
    sys.exit(main())

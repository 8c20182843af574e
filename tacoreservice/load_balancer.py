"""``python -m tacoreservice.load_balancer``: the broker alone; workers connect from elsewhere."""

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
    return run_service(settings, with_workers=False)


if __name__ == "__main__":
    sys.exit(main())

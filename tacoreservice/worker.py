"""``python -m tacoreservice.worker``: one worker connecting to a broker's backend.

Endpoint: ``--endpoint``, else TACORE_BROKER_ENDPOINT, else the local backend port.
"""

from __future__ import annotations

import argparse
import sys

from tacoreservice.config import ConfigError
from tacoreservice.service_runner import run_worker, settings_for_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tacoreservice.worker")
    parser.add_argument("--endpoint", help="broker backend, e.g. tcp://10.0.0.5:5560")
    parser.add_argument("--worker-id", help="unique worker name (default: host-pid-random)")
    parser.add_argument("--config", help="config file (default: config/config.yaml)")
    args = parser.parse_args(argv)
    try:
        settings = settings_for_process(config_path=args.config)
    except ConfigError as exc:
        print(f"tacoreservice: {exc}", file=sys.stderr)
        return 2
    return run_worker(settings, worker_id=args.worker_id, endpoint=args.endpoint)


if __name__ == "__main__":
    sys.exit(main())

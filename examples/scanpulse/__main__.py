"""``python -m examples.scanpulse run|scanner|trader|notifier|status`` (from the repo root).

Settings come from the environment (see :mod:`examples.scanpulse.config`); the options
below override the most used ones. SIGTERM and Ctrl+C stop cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from examples.scanpulse.config import ScanPulseConfig
from examples.scanpulse.events import describe
from examples.scanpulse.notifier import Notifier
from examples.scanpulse.pipeline import Pipeline
from examples.scanpulse.scanner import Scanner
from examples.scanpulse.store import Store
from examples.scanpulse.trader import Trader


def _print_event(event: dict[str, Any]) -> None:
    if event.get("hop") != "notified":  # the notifier prints its own line
        print(describe(event), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.scanpulse",
        description="ScanPulse: scanner -> trader -> notifier over TACoreService, Redis, ZMQ.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "all three components in one process"),
        ("scanner", "scan every interval; scans to Redis, opportunities to PUB"),
        ("trader", "analyse, risk-check and order each opportunity"),
        ("notifier", "record each fill once"),
        ("status", "print what Redis holds: each opportunity's state, the notifications"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        if name in ("run", "scanner"):
            p.add_argument("--cycles", type=int, default=None, help="scans to run, then stop")
            p.add_argument("--market", help="SCANPULSE_MARKET (US, CN, crypto, all)")
            p.add_argument("--symbols", help="SCANPULSE_SYMBOLS, comma-separated")
            p.add_argument("--min-score", type=float, help="SCANPULSE_MIN_SCORE, 0..1")
            p.add_argument("--interval", type=float, help="SCANPULSE_INTERVAL_S")
        if name in ("run", "scanner", "trader"):
            p.add_argument("--as-of", help="SCANPULSE_AS_OF, YYYY-MM-DD (default: latest)")
        if name in ("run", "trader"):
            p.add_argument("--quantity", type=float, help="SCANPULSE_QUANTITY per order")
    return parser


def _config(args: argparse.Namespace) -> ScanPulseConfig:
    config = ScanPulseConfig.from_env()
    changes: dict[str, Any] = {}
    if getattr(args, "market", None):
        changes["market"] = args.market
    if getattr(args, "symbols", None):
        changes["symbols"] = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    if getattr(args, "min_score", None) is not None:
        if not 0.0 <= args.min_score <= 1.0:
            raise ValueError(f"--min-score {args.min_score} is out of range; use 0 to 1")
        changes["min_score"] = args.min_score
    if getattr(args, "interval", None) is not None:
        changes["interval_s"] = args.interval
    if getattr(args, "as_of", None):
        changes["as_of"] = ScanPulseConfig.from_env({"SCANPULSE_AS_OF": args.as_of}).as_of
    if getattr(args, "quantity", None) is not None:
        if args.quantity <= 0:
            raise ValueError(f"--quantity {args.quantity} must be positive")
        changes["quantity"] = args.quantity
    return config.replace(**changes)


def _status(config: ScanPulseConfig) -> int:
    store = Store(config)
    try:
        for row in store.opportunities():
            print(
                f"{row.get('opportunity_id')}: {row.get('state')} "
                f"(hops {' > '.join(row['hops']) or '-'}) {row.get('reason', '')}".rstrip()
            )
        for n in store.notifications():
            print(f"notified: {n['order_id']} {n['action']} {n['quantity']:g} {n['symbol']}")
        print(f"pending: {store.backlog()}")
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"scanpulse: {exc}", file=sys.stderr)
        return 2
    if args.command == "status":
        return _status(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.command == "run":
        pipeline = Pipeline(config, emit=_print_event, stop=stop)
        ok = pipeline.run(args.cycles)
        for name, error in pipeline.errors:
            print(f"scanpulse {name} stopped: {error!r}", file=sys.stderr)
        return 0 if ok and not pipeline.errors else 1
    if args.command == "scanner":
        Scanner(config, emit=_print_event).run(stop, args.cycles)
    elif args.command == "trader":
        Trader(config, emit=_print_event).run(stop)
    else:
        Notifier(config, emit=_print_event).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``tacore demo pipeline``: run the ScanPulse chain locally and show what flows through it.

ScanPulse (``examples/scanpulse`` in the repository) is a client module, not part of the
installed package: it reaches the service only through the public client, as any trading
module would. So this command imports it from the checkout (the folder above this package,
or the current directory) and says how to get it when it is not there.

What it starts, and stops again on the way out (also on errors and Ctrl+C):
- the service: ``python -m tacoreservice.main`` on free ports with a fresh database in a
  temporary folder (its paper account can be reset to ``--as-of``), unless ``--endpoint``
  points at a running one;
- Redis: the server at ``REDIS_URL`` when set (under a fresh key prefix), else a
  ``redis-server`` on a free port without persistence.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tacoreservice.cli.tables import new_table, price
from tacoreservice.cli.tables import show as show_table
from tacoreservice.client import TACoreClient, TACoreError

__all__ = [
    "DemoError",
    "DemoOptions",
    "import_scanpulse",
    "run_demo",
    "start_redis",
    "start_service",
]


class DemoError(Exception):
    """The demo cannot run; the message says what to do."""


@dataclass(frozen=True)
class DemoOptions:
    cycles: int = 1
    endpoint: str | None = None
    market: str = "US"
    symbols: tuple[str, ...] = ()
    as_of: str | None = None
    min_score: float = 0.45
    quantity: float = 10.0
    workers: int = 2
    timeout_s: float = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def import_scanpulse() -> ModuleType:
    """``examples.scanpulse`` from the repository checkout this package runs from (or cwd)."""
    try:
        return importlib.import_module("examples.scanpulse")
    except ModuleNotFoundError as exc:
        if exc.name not in ("examples", "examples.scanpulse"):
            raise  # ScanPulse itself is missing a dependency: say that, not "not found"
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "examples" / "scanpulse" / "__init__.py").is_file():
            sys.path.insert(0, str(root))
            return importlib.import_module("examples.scanpulse")
    raise DemoError(
        "the ScanPulse example (examples/scanpulse) is not importable: `tacore demo` is a "
        "development command that needs a checkout of the TACoreService repository. Run it "
        "from the repository root (cd TACoreService && tacore demo pipeline), or put the "
        "checkout on PYTHONPATH."
    )


def _wait_redis(url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    import redis

    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:
                if proc is not None and proc.poll() is not None:
                    raise DemoError(f"redis-server exited with code {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise DemoError(f"Redis at {url} does not answer: {exc}") from None
            time.sleep(0.05)
    finally:
        client.close()


def start_redis(stack: contextlib.ExitStack, workdir: Path) -> tuple[str, str]:
    """(url, what was done) for the Redis the demo uses."""
    url = os.environ.get("REDIS_URL")
    if url:
        _wait_redis(url, None, 5.0)
        return url, f"Redis at {url} (REDIS_URL)"
    binary = shutil.which("redis-server")
    if binary is None:
        raise DemoError(
            "the demo needs Redis: install redis-server (Debian/Ubuntu: apt-get install "
            "redis-server; macOS: brew install redis) or set REDIS_URL=redis://HOST:6379/0"
        )
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(_stop_process, proc)
    url = f"redis://127.0.0.1:{port}/0"
    _wait_redis(url, proc, 10.0)
    return url, f"redis-server started on port {port} (pid {proc.pid})"


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_service(stack: contextlib.ExitStack, workdir: Path, opts: DemoOptions) -> tuple[str, str]:
    """(endpoint, what was done): the embedded service, ready with its workers."""
    frontend, backend = _free_port(), _free_port()
    env = dict(os.environ)
    env.pop("TACORE_SETTINGS_JSON", None)  # a supervised worker's settings are not ours
    env.update(
        {
            "ZMQ_FRONTEND_PORT": str(frontend),
            "ZMQ_BACKEND_PORT": str(backend),
            "TACORE_API_ENABLED": "false",
            "DATABASE_PATH": str(workdir / "tacoreservice.db"),
            "TACORE_LOG_DIR": str(workdir / "logs"),
            "WORKER_COUNT": str(opts.workers),
            # The demo's own throwaway account may start at --as-of.
            "TACORE_ALLOW_PORTFOLIO_RESET": "1",
        }
    )
    repo_config = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
    if "TACORE_CONFIG" not in env and repo_config.is_file():
        env["TACORE_CONFIG"] = str(repo_config)  # the permissions of scanner and trader
    log_path = workdir / "service.out"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tacoreservice.main"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack.callback(_stop_process, proc)
    endpoint = f"tcp://127.0.0.1:{frontend}"
    deadline = time.monotonic() + 60.0
    with TACoreClient(endpoint, timeout_ms=1000, retries=0) as client:
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise DemoError(f"the service exited with code {proc.returncode}:\n{tail}")
            try:
                if client.health()["workers"]["alive"] >= opts.workers:
                    break
            except TACoreError:
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"the service's workers did not start within 60 s; see {log_path}")
            time.sleep(0.1)
    return endpoint, f"service started on {endpoint} (pid {proc.pid}, {opts.workers} workers)"


_STYLE = {
    "scan": "bold cyan",
    "scan_failed": "bold red",
    "received": "",
    "analysed": "blue",
    "risk": "yellow",
    "order": "green",
    "resumed": "green",
    "retry": "red",
    "final": "dim",
    "notified": "magenta",
    "error": "bold red",
}


def _summary(scanpulse: ModuleType, config: Any) -> tuple[Table, list[str]]:
    """The table of every opportunity's hops (from Redis, the record) and the reasons."""
    store = scanpulse.Store(config)
    try:
        rows = store.opportunities()
        notified = {n["opportunity_id"] for n in store.notifications()}
    finally:
        store.close()
    table = new_table("ScanPulse: each opportunity's way through the chain")
    for col in ("symbol", "bar", "score", "decision", "risk", "order", "fill", "notified", "state"):
        table.add_column(col, no_wrap=col != "fill")
    reasons = []
    for r in rows:
        approved = r.get("risk_approved")
        fill = (
            f"{float(r['filled_quantity']):g} @ {price(float(r['fill_price']))}"
            if r.get("fill_price")
            else "-"
        )
        table.add_row(
            r.get("symbol", "?"),
            r.get("as_of", "?"),
            f"{float(r.get('score', 0)):.2f}",
            r.get("decision", "-"),
            "-" if approved is None else ("approved" if approved == "1" else "refused"),
            r.get("order_status", "-"),
            fill,
            "yes" if r.get("opportunity_id") in notified else "-",
            r.get("state", "?"),
        )
        if r.get("reason"):
            reasons.append(f"{r.get('symbol')}: {r['reason']}")
    return table, reasons


def run_demo(opts: DemoOptions, console: Console) -> int:
    """Run the chain for ``opts.cycles`` scans; 0 when every opportunity finished."""
    scanpulse = import_scanpulse()
    describe = importlib.import_module("examples.scanpulse.events").describe

    lock = threading.Lock()

    def show(event: dict[str, Any]) -> None:
        style = _STYLE.get(str(event.get("hop")), "")
        text = escape(describe(event))
        with lock:
            console.print(f"[{style}]{text}[/]" if style else text, highlight=False)

    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="tacore-demo-"))
        stack.callback(shutil.rmtree, workdir, True)
        redis_url, redis_note = start_redis(stack, workdir)
        console.print(f"[dim]{escape(redis_note)}[/]")
        if opts.endpoint:
            endpoint = opts.endpoint
            console.print(f"[dim]service at {escape(endpoint)} (--endpoint)[/]")
        else:
            endpoint, note = start_service(stack, workdir, opts)
            console.print(f"[dim]{escape(note)}[/]")
        # A shared Redis may hold an earlier run's keys: this run gets its own prefix.
        prefix = os.environ.get("SCANPULSE_KEY_PREFIX") or (
            f"scanpulse-demo-{uuid.uuid4().hex[:8]}" if os.environ.get("REDIS_URL") else "scanpulse"
        )
        config = (
            scanpulse.ScanPulseConfig.from_env()
            .on_free_loopback_ports()
            .replace(
                endpoints=(endpoint,),
                redis_url=redis_url,
                key_prefix=prefix,
                market=opts.market,
                symbols=opts.symbols,
                as_of=opts.as_of,
                min_score=opts.min_score,
                quantity=opts.quantity,
                interval_s=1.0,
                reconcile_interval_s=0.5,
            )
        )
        if opts.as_of and not opts.endpoint:
            with TACoreClient(endpoint, timeout_ms=10_000, retries=1) as client:
                client.call("portfolio.reset", {"as_of": opts.as_of})
            console.print(f"[dim]paper account reset: its clock starts at {opts.as_of}[/]")
        elif opts.as_of:
            console.print(
                f"[yellow]orders as of {opts.as_of} need the service's paper clock at or "
                "before that day (portfolio.reset as_of); later clocks refuse them[/]"
            )
        console.print(f"[dim]Redis keys under {config.key_prefix}:*[/]")
        pipeline = scanpulse.Pipeline(config, emit=show, notifier_out=None)
        drained = pipeline.run(opts.cycles, drain_timeout_s=opts.timeout_s)
        for name, exc in pipeline.errors:
            console.print(f"[bold red]{name} stopped: {escape(repr(exc))}[/]")
        table, reasons = _summary(scanpulse, config)
        show_table(table, console, drop=("notified", "bar", "order", "risk"))
        for line in reasons:
            console.print(f"[dim]{escape(line)}[/]")
        if not drained:
            console.print("[bold red]the chain did not finish every opportunity in time[/]")
        return 0 if drained and not pipeline.errors else 1

"""``tacore call`` and ``tacore health``: any method, and the service's health."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from tacoreservice.cli.common import (
    EndpointOpt,
    ExitCode,
    app,
    client_for,
    console,
    fail,
    fail_from,
    waiting,
)
from tacoreservice.cli.tables import new_table, pct, show


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_params(pairs: list[str], json_text: str | None) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when they can be, dotted keys nest)."""
    params: dict[str, Any] = {}
    if json_text:
        loaded = json.loads(json_text)
        if not isinstance(loaded, dict):
            raise typer.BadParameter("--json must hold a JSON object")
        params.update(loaded)
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"expected key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        node = params
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_value(raw)
    return params


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


@app.command()
def call(
    method: Annotated[str, typer.Argument(help="Method name, e.g. get.market_data.")],
    params: Annotated[
        list[str] | None, typer.Argument(help="key=value pairs, e.g. symbol=AAPL history=5")
    ] = None,
    json_params: Annotated[
        str | None, typer.Option("--json", help="Params as a JSON object.")
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the whole reply (status, error, timings, ...).")
    ] = False,
    endpoint: EndpointOpt = None,
    timeout_ms: Annotated[int, typer.Option(help="Per-attempt timeout.")] = 10_000,
    retries: Annotated[int, typer.Option(help="Retries after a timeout.")] = 2,
) -> None:
    """Call any method and print its data as JSON (--raw: the whole reply).

    An error reply prints its code and message on stderr (exit 1); a mistyped method name
    gets the closest names.
    """
    from tacoreservice.client import TACoreTimeout

    try:
        body = parse_params(params or [], json_params)
    except (json.JSONDecodeError, typer.BadParameter) as exc:
        fail(ExitCode.USAGE, f"bad params: {exc}")
    with client_for(endpoint, timeout_ms=timeout_ms, retries=retries) as client:
        try:
            with waiting(f"{method} ..."):
                reply = client.request(method, body)
        except TACoreTimeout as exc:
            fail_from(exc)
    ok = reply.get("status") == "success"
    if raw:
        print_json(reply)
        raise typer.Exit(ExitCode.OK if ok else ExitCode.FAILED)
    if not ok:
        error = reply.get("error") or {}
        fail(ExitCode.FAILED, f"{error.get('code', 'ERROR')}: {error.get('message', reply)}")
    print_json(reply.get("data"))


@app.command()
def health(
    endpoint: EndpointOpt = None,
    detailed: Annotated[bool, typer.Option("--detailed", "-d", help="Per-worker list.")] = False,
    timeout_ms: Annotated[int, typer.Option(help="Per-attempt timeout.")] = 3000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a running service; exit 0 when healthy (usable as a container HEALTHCHECK):
    1 unhealthy (no worker alive), 3 unreachable."""
    from tacoreservice.client import TACoreError

    with client_for(endpoint, timeout_ms=timeout_ms, retries=1) as client:
        try:
            with waiting("health.check ..."):
                data = client.health(detailed=detailed)
        except TACoreError as exc:
            fail_from(exc)
    if as_json:
        print_json(data)
    else:
        _print_health(data, detailed)
    if data.get("status") != "healthy":
        fail(ExitCode.FAILED, f"unhealthy: {data.get('status')}, no worker alive")


def requests_line(req: dict[str, Any]) -> str:
    """``total = ok + client errors + service errors + retries + in progress``, in words."""
    parts = [
        f"{req.get('success', 0):,} ok",
        f"{req.get('client_errors', 0):,} client errors",
        f"{req.get('service_errors', 0):,} service errors",
    ]
    if req.get("retries"):
        parts.append(f"{req['retries']:,} retries")
    if req.get("in_progress"):
        parts.append(f"{req['in_progress']:,} in progress")
    return f"{req.get('total', 0):,} total: " + ", ".join(parts)


def _print_health(data: dict[str, Any], detailed: bool) -> None:
    table = new_table(f"TACoreService {data.get('version')} on {data.get('host')}")
    table.add_column("field", no_wrap=True)
    table.add_column("value")
    table.add_row("status", str(data["status"]))
    table.add_row("uptime", f"{data['uptime_s']:.0f} s")
    workers = data["workers"]
    table.add_row("workers", f"{workers['alive']} alive, {workers['busy']} busy")
    table.add_row("queue", f"{data['queue_depth']} / {data['max_queue_size']}")
    table.add_row("requests", requests_line(data["requests"]))
    proc = data.get("process") or {}
    if proc.get("cpu_percent") is not None:
        table.add_row(
            "broker process",
            f"CPU {pct(proc.get('cpu_percent'), ratio=False)}, memory "
            f"{pct(proc.get('memory_percent'), ratio=False)}",
        )
    show(table, console)
    if not detailed:
        return
    wt = new_table("workers")
    for col in ("worker", "pid", "host", "state", "heartbeat", "served", "failed"):
        wt.add_column(col, no_wrap=True)
    wt.add_column("client errors", justify="right")
    wt.add_column("CPU", justify="right", no_wrap=True)
    wt.add_column("memory", justify="right", no_wrap=True)
    for w in data.get("worker_list", []):
        proc = w.get("process") or {}
        wt.add_row(
            str(w.get("worker_id")),
            str(w.get("pid")),
            str(w.get("host")),
            str(w.get("state")),
            f"{w.get('heartbeat_age_s', 0):.1f} s",
            str(w.get("served")),
            str(w.get("failed")),
            str(w.get("client_errors", 0)),
            pct(proc.get("cpu_percent"), ratio=False),
            pct(proc.get("memory_percent"), ratio=False),
        )
    show(wt, console, drop=("host", "memory", "client errors", "heartbeat", "CPU"))

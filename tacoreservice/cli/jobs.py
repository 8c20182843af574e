"""``tacore jobs``: list, show (progress per role, elapsed, ETA, result) and cancel jobs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from tacoreservice.cli.calls import print_json
from tacoreservice.cli.common import EndpointOpt, app, call_service, console
from tacoreservice.cli.tables import new_table, show
from tacoreservice.cli.trading import AsJsonOpt, _resolve, short_id

jobs_app = typer.Typer(
    help="Jobs (long analyses, searches), newest first: list, show, cancel.",
    invoke_without_command=True,
)
app.add_typer(jobs_app, name="jobs")


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _roles_done(job: dict[str, Any]) -> str:
    roles = ((job.get("progress") or {}) if isinstance(job.get("progress"), dict) else {}).get(
        "roles"
    ) or {}
    if not roles:
        return ""
    done = sum(1 for state in roles.values() if state == "done")
    return f"{done}/{len(roles)} roles"


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    method: Annotated[str | None, typer.Option(help="Only this method.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows to show.")] = 20,
    endpoint: EndpointOpt = None,
    as_json: AsJsonOpt = False,
) -> None:
    """List jobs with state, progress, elapsed time and ETA; `tacore jobs show ID`."""
    if ctx.invoked_subcommand is not None:
        return
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    if method:
        params["method"] = method
    data = call_service(endpoint, "job.list", params)
    if as_json:
        print_json(data)
        return
    items = data.get("jobs") or []
    table = new_table(f"jobs: {len(items)} newest" + (f" {state}" if state else ""))
    table.add_column("id", no_wrap=True)
    table.add_column("method", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("elapsed", justify="right")
    table.add_column("ETA", justify="right")
    table.add_column("stage")
    table.add_column("created", no_wrap=True)
    for j in items:
        stage = j.get("stage") or ""
        if j.get("error"):
            stage = f"{j['error'].get('code')}: {j['error'].get('message')}"
        table.add_row(
            short_id(j.get("job_id"), "job-"),
            escape(str(j.get("method"))),
            str(j.get("state")),
            f"{float(j.get('percent') or 0):.0f}%",
            duration(j.get("elapsed_s")),
            duration(j.get("eta_s")),
            escape(" ".join(filter(None, (str(stage), _roles_done(j))))),
            str(j.get("created_at") or "")[:19].replace("T", " "),
        )
    show(table, console, drop=("created", "stage", "ETA"))
    if not items:
        console.print("no jobs" + (" with these filters" if state or method else ""))


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job id, or its first characters.")],
    result: Annotated[bool, typer.Option("--result", help="Also print the result JSON.")] = False,
    endpoint: EndpointOpt = None,
    as_json: AsJsonOpt = False,
) -> None:
    """One job: state, stage, per-role progress, elapsed time, ETA, error or result."""
    full = _resolve(endpoint, job_id, "job.list", "jobs", "job-")
    job = call_service(
        endpoint, "job.result" if result or as_json else "job.status", {"job_id": full}
    )
    if as_json:
        print_json(job)
        return
    table = new_table(f"job {job.get('job_id')}", show_header=False)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value")
    rows = [
        ("method", job.get("method")),
        (
            "state",
            job.get("state") + (" (cancel requested)" if job.get("cancel_requested") else ""),
        ),
        ("progress", f"{float(job.get('percent') or 0):.0f}% {job.get('stage') or ''}".strip()),
        ("elapsed", duration(job.get("elapsed_s"))),
        ("ETA", duration(job.get("eta_s"))),
        ("worker", job.get("worker_id") or "-"),
        ("attempts", job.get("attempts")),
        ("created", job.get("created_at")),
        ("finished", job.get("finished_at") or "-"),
    ]
    if job.get("error"):
        rows.append(("error", f"{job['error'].get('code')}: {job['error'].get('message')}"))
    for label, value in rows:
        table.add_row(label, escape(str(value)))
    show(table, console)
    roles = (
        (job.get("progress") or {}).get("roles") if isinstance(job.get("progress"), dict) else None
    )
    if roles:
        rt = new_table("roles")
        rt.add_column("role", no_wrap=True)
        rt.add_column("state", no_wrap=True)
        for role, state in roles.items():
            rt.add_row(role, state)
        show(rt, console)
    if result and job.get("result") is not None:
        print_json(job["result"])


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The job id, or its first characters.")],
    endpoint: EndpointOpt = None,
) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    full = _resolve(endpoint, job_id, "job.list", "jobs", "job-")
    out = call_service(endpoint, "job.cancel", {"job_id": full})
    console.print(
        f"{out.get('job_id')}: {out.get('state')}"
        + (
            " (cancel requested; it stops at its next step)"
            if out.get("state") == "running"
            else ""
        )
    )

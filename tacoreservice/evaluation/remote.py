"""Analyses sent to a running service as jobs, so its workers (on any host) share the load.

Every analysis of a batch is submitted at once (``job.submit`` of ``analyze.stock``); the
broker schedules them over its workers (all but one, so interactive calls still get through)
and the results are collected as they finish. The service answers from its own market data:
point it at the same data the evaluation reads, or the two will disagree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tacoreservice.client import TACoreError

__all__ = ["POLL_S", "analyse_remotely", "wait_job"]

POLL_S = 0.05


def analyse_remotely(
    client: Any,
    symbols: Sequence[str],
    day: str,
    engine: str,
    research_depth: int | None = None,
    timeout_s: float = 600.0,
) -> dict[str, dict[str, Any]]:
    """``{symbol: decision}`` for each symbol analysed with ``as_of = day`` by the service."""
    jobs: dict[str, str] = {}
    for sym in symbols:
        params: dict[str, Any] = {"symbol": sym, "as_of": day, "engine": engine}
        if research_depth is not None:
            params["research_depth"] = research_depth
        job = client.call("job.submit", {"method": "analyze.stock", "params": params})
        jobs[sym] = job["job_id"]
    # All are queued before the first is awaited, so they run side by side on the workers.
    return {
        sym: wait_job(client, job_id, f"analysis of {sym} as of {day}", timeout_s)
        for sym, job_id in jobs.items()
    }


def wait_job(client: Any, job_id: str, what: str, timeout_s: float = 3600.0) -> Any:
    """The result of a job once it succeeded; TACoreError when it failed or took too long."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = client.call("job.result", {"job_id": job_id})
        state = result["state"]
        if state == "succeeded":
            return result["result"]
        if state in ("failed", "cancelled"):
            error = result.get("error") or {}
            raise TACoreError(
                str(error.get("code") or state.upper()),
                f"the service's job for the {what} {state}: {error.get('message') or state}",
            )
        if time.monotonic() > deadline:
            raise TACoreError("TIMEOUT", f"the {what} took longer than {timeout_s:.0f} s")
        time.sleep(POLL_S)

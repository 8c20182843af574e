"""Analyses sent to a running service as jobs, so its workers (on any host) share the load.

Every analysis of a batch is submitted at once (``job.submit`` of ``analyze.stock``); the
broker schedules them over its workers (all but one, so interactive calls still get through)
and the results are collected as they finish. The service answers from its own market data:
point it at the same data the evaluation reads, or the two will disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# wait_job is the client's (backtests wait for jobs too); re-exported for this module's users.
from tacoreservice.client.jobs import POLL_S, wait_job

__all__ = ["POLL_S", "analyse_remotely", "wait_job"]


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

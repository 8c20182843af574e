"""Operations routes beyond the live snapshot: the job history (filter, page, detail with the
result) and its one write, cancel; the failures grouped by error code.

Cancel goes to the broker as ``job.cancel`` through the gateway, as any client would (the broker
schedules jobs: a queued job leaves its queue at once, a running one stops at its next step).
Like every route but ``/health``, it needs the API token when one is set.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from fastapi import Path as PathParam

from tacoreservice.monitoring.gateway import BrokerGateway
from tacoreservice.monitoring.readers import (
    MAX_ID,
    MAX_METHOD,
    MAX_OFFSET,
    MAX_TIME,
    ApiError,
    Database,
)

__all__ = ["add_ops_routes"]

_STATES = "^(queued|running|succeeded|failed|cancelled)$"


def add_ops_routes(app: FastAPI, db: Database, gateway: BrokerGateway, guarded: list[Any]) -> None:
    @app.get("/api/jobs", dependencies=guarded, tags=["jobs"])
    def jobs(
        state: str | None = Query(None, pattern=_STATES),
        method: str | None = Query(None, max_length=MAX_METHOD),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        """Jobs, newest first, with progress, per-role detail, elapsed time and ETA; ``total``
        counts the filter's matches."""
        total, found = db.jobs(state, limit, method=method, offset=offset)
        return {"total": total, "limit": limit, "offset": offset, "jobs": found}

    @app.get("/api/jobs/{job_id}", dependencies=guarded, tags=["jobs"])
    def job(
        job_id: str = PathParam(max_length=MAX_ID),
        result: bool = Query(False, description="add the params and the result"),
    ) -> dict[str, Any]:
        _total, found = db.jobs(None, 1, job_id=job_id, with_result=result)
        if not found:
            raise ApiError(404, "NOT_FOUND", f"no job {job_id!r}")
        return found[0]

    @app.post("/api/jobs/{job_id}/cancel", dependencies=guarded, tags=["jobs"])
    def cancel_job(job_id: str = PathParam(max_length=MAX_ID)) -> dict[str, Any]:
        """Cancel a job (the API's one write besides ``POST /analyze``): a queued job at once,
        a running one at its next step. Needs the API token when one is set."""
        return gateway.call({"job_id": job_id}, method="job.cancel", timeout_ms=10_000)

    @app.get("/api/failures", dependencies=guarded, tags=["logs"])
    def failures(
        since: str | None = Query(None, max_length=MAX_TIME, description="ISO-8601 UTC, inclusive"),
    ) -> dict[str, Any]:
        """Errors in the request log grouped by code, most frequent first, each with its count,
        its first and last time and the latest example; ``kind`` says whether the client
        caused it (INVALID_PARAMS, UNAUTHORIZED, ...) or the service failed (INTERNAL,
        WORKER_LOST, ...)."""
        groups = db.failure_groups(since)
        return {
            "groups": groups,
            "client_errors": sum(g["count"] for g in groups if g["kind"] == "client"),
            "service_errors": sum(g["count"] for g in groups if g["kind"] == "service"),
        }

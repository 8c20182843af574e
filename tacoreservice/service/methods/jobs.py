"""Job reads: ``job.status``, ``job.result``, ``job.list``.

Answered by the broker from SQLite (see broker.py): a job may occupy the only worker for
minutes, and asking how it is going must not wait behind it. ``job.submit`` (or ``"async":
true`` on any method) and ``job.cancel`` are the broker's too, since it schedules jobs. These
functions take a :class:`JobStore`, so the HTTP API can serve the same reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.params import Identifier, MethodName, Offset, ParamsModel
from tacoreservice.service.registry import MethodSpec, validate_params
from tacoreservice.storage.job_store import JobStore

__all__ = ["JOB_READ_METHODS", "JobRef", "JobSubmitParams", "read_job"]


class JobRef(ParamsModel):
    job_id: Identifier


class JobSubmitParams(ParamsModel):
    """``job.submit`` params, for the broker to check before it stores a job."""

    method: MethodName
    params: dict[str, Any] = Field(default_factory=dict)


class JobListParams(ParamsModel):
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    method: MethodName | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: Offset = 0


def _get(store: JobStore, job_id: str, with_result: bool) -> dict[str, Any]:
    job = store.get(job_id, with_result=with_result)
    if job is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no job {job_id!r}; job.list shows the known ones")
    return job


def _status(params: Any, store: Any) -> dict[str, Any]:
    """State, stage, percent and per-role progress of a job."""
    return _get(store, params.job_id, with_result=False)


def _result(params: Any, store: Any) -> dict[str, Any]:
    """The job with its result (null until it succeeded) or error."""
    return _get(store, params.job_id, with_result=True)


def _list(params: Any, store: Any) -> dict[str, Any]:
    """Jobs, newest first, without their results."""
    jobs = store.list_jobs(params.state, params.method, params.limit, params.offset)
    return {"jobs": jobs, "count": len(jobs), "limit": params.limit, "offset": params.offset}


JOB_READ_METHODS: dict[str, MethodSpec] = {
    "job.status": MethodSpec("job.status", JobRef, _status),
    "job.result": MethodSpec("job.result", JobRef, _result),
    "job.list": MethodSpec("job.list", JobListParams, _list),
}


def read_job(store: JobStore, method: str, params: dict[str, Any]) -> dict[str, Any]:
    spec = JOB_READ_METHODS[method]
    # The spec's handler takes the store where a worker method takes a MethodContext.
    result: dict[str, Any] = spec.handler(validate_params(spec, params), store)  # type: ignore[arg-type]
    return result

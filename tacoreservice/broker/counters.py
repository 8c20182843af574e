"""The broker's request counters, kept so that they add up.

Every client message the broker receives ends in exactly one bucket, so at any moment

    total = success + client_errors + service_errors + retries + in_progress

where ``retries`` are retried requests joined to the run in flight or answered from the reply
cache (one run, one count), and ``in_progress`` are requests queued or running. Client errors
(a bad request, a denied one, ...: :data:`~tacoreservice.protocol.errors.CLIENT_ERROR_CODES`)
are counted apart from the service's own failures (INTERNAL, WORKER_LOST, OVERLOADED, ...).

A job's run is not a client message: the submit is answered at once and counted then; the run's
outcome is counted under ``job_runs``. ``errors_by_code`` adds up to ``error``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tacoreservice.protocol.errors import is_client_error

__all__ = ["RequestCounters"]


class RequestCounters:
    """Owned by the broker thread; no locks."""

    def __init__(self) -> None:
        self.received = 0
        self.success = 0
        self.client_errors = 0
        self.service_errors = 0
        self.retries_joined = 0
        self.retries_from_cache = 0
        self.errors_by_code: Counter[str] = Counter()
        self.job_runs: Counter[str] = Counter()

    def arrived(self) -> None:
        self.received += 1

    def answered(self, ok: bool, error_code: str | None, job: bool = False) -> None:
        """One reply to a client (or, with ``job``, the end of a job's run)."""
        if job:
            self.job_runs["succeeded" if ok else "failed"] += 1
            return
        if ok:
            self.success += 1
            return
        self.errors_by_code[error_code or "UNKNOWN"] += 1
        if is_client_error(error_code):
            self.client_errors += 1
        else:
            self.service_errors += 1

    def snapshot(self, in_progress: int) -> dict[str, Any]:
        errors = self.client_errors + self.service_errors
        return {
            "total": self.received,
            "success": self.success,
            "error": errors,
            "client_errors": self.client_errors,
            "service_errors": self.service_errors,
            "retries": self.retries_joined + self.retries_from_cache,
            "in_progress": in_progress,
            "errors_by_code": dict(self.errors_by_code),
            "retries_joined": self.retries_joined,
            "retries_from_cache": self.retries_from_cache,
            "job_runs": {
                "succeeded": self.job_runs["succeeded"],
                "failed": self.job_runs["failed"],
            },
        }

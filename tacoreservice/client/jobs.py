"""Waiting for a job's result: what every caller of ``job.submit`` does next.

A job is polled with ``job.result`` every :data:`POLL_S` seconds until it succeeded (its result
is returned), failed or was cancelled (:class:`TACoreError` with the job's error code), or took
longer than the caller allows.
"""

from __future__ import annotations

import time
from typing import Any

from tacoreservice.client.errors import TACoreError

__all__ = ["POLL_S", "wait_job"]

POLL_S = 0.05


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

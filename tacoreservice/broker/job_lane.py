"""The job lane: long requests submitted now and read later, scheduled beside quick ones.

Contract:

- :meth:`JobLane.answer` handles ``job.submit`` (or ``"async": true`` on any method),
  ``job.status``, ``job.result``, ``job.list`` and ``job.cancel`` from SQLite
  (:class:`~tacoreservice.storage.job_store.JobStore`) and returns the reply's data, or
  raises :class:`~tacoreservice.protocol.errors.ServiceError`. It never sends anything: the
  routing core answers the client.
- Jobs wait in :attr:`JobLane.queue`, apart from interactive requests. :meth:`JobLane.startable`
  says how many may start now: none while an interactive request waits, and never more than
  all-but-one of the workers at once, so a batch of long analyses never starves quick calls.
- A job whose worker is lost runs once more (:data:`MAX_ATTEMPTS` runs in all), then fails
  with the reason; a job the broker could not get run, or stopped (WORKER_LOST,
  DEADLINE_EXCEEDED, TIME_LIMIT_EXCEEDED), is failed in SQLite with the broker's error.
- :meth:`JobLane.open` schedules again the jobs a previous broker left queued or running.

A job's state lives in SQLite, so its outcome survives the broker; the worker that runs it
writes progress and the result there itself.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from tacoreservice.broker.pending import Pending
from tacoreservice.protocol.errors import ErrorCode, ServiceError, did_you_mean
from tacoreservice.protocol.messages import STANDARD, ClientRequest
from tacoreservice.security.redaction import BodyRedactor
from tacoreservice.service.methods.jobs import (
    JOB_READ_METHODS,
    JobRef,
    JobSubmitParams,
    read_job,
)
from tacoreservice.service.registry import MethodSpec, validate_params
from tacoreservice.storage.job_store import TERMINAL_STATES, JobStore

__all__ = ["JOB_METHODS", "MAX_ATTEMPTS", "JobLane"]

log = logging.getLogger("tacoreservice.broker")

JOB_METHODS = frozenset({"job.submit", "job.cancel", *JOB_READ_METHODS})
# A job whose worker dies is run once more, then failed with the reason (issue 3).
MAX_ATTEMPTS = 2
# Errors that mean "the broker could not get this job run", as opposed to the job's own error.
_BROKER_ERRORS = frozenset({"WORKER_LOST", "DEADLINE_EXCEEDED", "TIME_LIMIT_EXCEEDED"})
# The broker answers these itself, so it checks their params with the same models as workers.
_JOB_SUBMIT = MethodSpec("job.submit", JobSubmitParams, lambda p, c: None, (), "")
_JOB_CANCEL = MethodSpec("job.cancel", JobRef, lambda p, c: None, (), "")

# Builds the pending request of a job run: (request, raw body, now, job_id) -> Pending, or None
# when its params cannot be encoded for a worker.
PendingFactory = Callable[[ClientRequest, bytes, float, str], Pending | None]


class JobLane:
    def __init__(self, db_path: Any, make_pending: PendingFactory, redactor: BodyRedactor):
        self.db_path = db_path
        self.make_pending = make_pending
        # A job keeps its params as sent (a resumed job needs them); what job.status and
        # job.list show of them is redacted like the request log.
        self.redactor = redactor
        self.queue: deque[Pending] = deque()
        self.running = 0  # job runs on a worker now
        self.store: JobStore | None = None

    # ------------------------------------------------------------------ lifecycle

    def open(self, now: float) -> None:
        """Open the store (on the thread that runs the loop: a sqlite3 connection stays on
        one thread) and schedule again what a previous broker left unfinished."""
        self.store = JobStore(self.db_path)
        for job in self.store.unfinished():
            if job["state"] == "running" and job["attempts"] >= MAX_ATTEMPTS:
                self.store.fail(
                    job["job_id"],
                    {
                        "code": "WORKER_LOST",
                        "message": f"the job's worker was lost {job['attempts']} times; not run again",
                    },
                )
                continue
            self.store.requeue(job["job_id"])
            req = ClientRequest(
                job["job_id"], job["method"], job["params"] or {}, STANDARD, None, False
            )
            pending = self.make_pending(req, b"", now, job["job_id"])
            if pending is not None:
                self.queue.append(pending)
        if self.queue:
            log.info("recovered %d unfinished jobs", len(self.queue))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    # ------------------------------------------------------------------ client methods

    @staticmethod
    def handles(req: ClientRequest) -> bool:
        return req.method in JOB_METHODS or req.params.get("async") is True

    @staticmethod
    def remembers(req: ClientRequest) -> bool:
        """Whether a retry of ``req`` must get the same answer (a retried submit gets the same
        job, not a second one); reads are answered afresh."""
        return req.client_request_id and req.method not in JOB_READ_METHODS

    def answer(
        self, req: ClientRequest, body: bytes, now: float, known: frozenset[str], reserved: Any
    ) -> dict[str, Any]:
        """The data of the reply to a job method; raises ServiceError only (anything else
        that goes wrong is logged and raised as INTERNAL: nothing a request sends may stop the
        broker). ``known``: the methods the workers offer; ``reserved``: names that cannot run
        as a job (the broker's own)."""
        try:
            return self._answer(req, body, now, known, reserved)
        except ServiceError:
            raise
        except Exception as exc:
            log.exception("%s failed in the broker", req.method)
            raise ServiceError(
                ErrorCode.INTERNAL,
                f"{req.method} failed in the broker with {type(exc).__name__}; "
                "the broker logged the details",
            ) from exc

    def _answer(
        self, req: ClientRequest, body: bytes, now: float, known: frozenset[str], reserved: Any
    ) -> dict[str, Any]:
        assert self.store is not None, "open() first"
        if req.method == "job.cancel":
            return self._cancel(req.params)
        if req.method in JOB_READ_METHODS:
            data = read_job(self.store, req.method, req.params)
            for job in data.get("jobs") or [data]:
                if job.get("params") and self.redactor:
                    job["params"] = self.redactor.parsed(job["params"])
            return data
        return self._submit(req, body, now, known, reserved)

    def _submit(
        self, req: ClientRequest, body: bytes, now: float, known: frozenset[str], reserved: Any
    ) -> dict[str, Any]:
        assert self.store is not None
        if req.method == "job.submit":
            if not isinstance(req.params.get("method"), str):
                raise ServiceError(
                    ErrorCode.INVALID_PARAMS,
                    'job.submit needs params.method (and params.params), e.g. {"method": '
                    '"analyze.stock", "params": {"symbol": "AAPL"}}',
                )
            submitted = validate_params(_JOB_SUBMIT, req.params)
            assert isinstance(submitted, JobSubmitParams)
            method, params = submitted.method, submitted.params
        else:
            method = req.method
            params = {k: v for k, v in req.params.items() if k != "async"}
        if method.startswith("job.") or method in reserved or (known and method not in known):
            available = ", ".join(sorted(known)) or "(no worker registered yet)"
            raise ServiceError(
                ErrorCode.METHOD_NOT_FOUND,
                f"{method!r} cannot run as a job{did_you_mean(method, known)}; "
                f"methods that can: {available}",
            )
        job_id = self.store.create(method, params, req.request_id)
        job_req = ClientRequest(job_id, method, params, STANDARD, None, False, req.client)
        pending = self.make_pending(job_req, body, now, job_id)
        if pending is None:
            self.store.fail(
                job_id, {"code": "INVALID_REQUEST", "message": "params nested too deeply"}
            )
            raise ServiceError(ErrorCode.INVALID_REQUEST, "params are nested too deeply")
        self.queue.append(pending)
        return {
            "job_id": job_id,
            "state": "queued",
            "method": method,
            "queue_position": len(self.queue),
        }

    def _cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        assert self.store is not None
        ref = validate_params(_JOB_CANCEL, params)
        assert isinstance(ref, JobRef)
        job = self.store.request_cancel(ref.job_id)
        if job is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"no job {ref.job_id!r}")
        # Still waiting here: drop it now. Running: its worker sees the flag between steps.
        self.queue = deque(p for p in self.queue if p.job_id != ref.job_id)
        return {k: job[k] for k in ("job_id", "state", "cancel_requested", "stage", "percent")}

    # ------------------------------------------------------------------ scheduling

    def startable(self, interactive_waiting: bool, idle_workers: int, workers: int) -> int:
        """How many queued jobs may start now."""
        if not self.queue or interactive_waiting or not idle_workers:
            return 0
        return max(0, min(len(self.queue), idle_workers, max(1, workers - 1) - self.running))

    def take(self) -> Pending:
        """The next job to start; the caller dispatches it (see started)."""
        return self.queue.popleft()

    def started(self) -> None:
        self.running += 1

    def finished(self, pending: Pending, ok: bool, error_code: str | None, reply: bytes) -> None:
        """A job's run was answered (by its worker, or by the broker with an error)."""
        if pending.dispatched_at:
            self.running = max(0, self.running - 1)
        if ok or error_code not in _BROKER_ERRORS or self.store is None:
            return
        # The worker never got to record an outcome: the broker's error is the job's.
        assert pending.job_id is not None
        try:
            error = orjson.loads(reply).get("error")
        except orjson.JSONDecodeError:
            error = None
        self.store.fail(pending.job_id, error or {"code": error_code, "message": error_code})

    def worker_lost(self, pending: Pending, reason: str) -> bool:
        """The worker running a job is gone: True when the job goes back to the queue (the
        caller dispatches again), False when it is over (failed here, or already ended)."""
        assert self.store is not None and pending.job_id is not None
        self.running = max(0, self.running - 1)
        job = self.store.get(pending.job_id, with_result=False)
        attempts = job["attempts"] if job else pending.attempts
        if job is None or job["state"] in TERMINAL_STATES:
            return False
        if attempts >= MAX_ATTEMPTS:
            self.store.fail(
                pending.job_id,
                {
                    "code": "WORKER_LOST",
                    "message": f"the job's worker was lost ({reason}) on each of {attempts} "
                    "attempts; not run again",
                },
            )
            return False
        log.warning("job %s lost its worker (%s); running it once more", pending.job_id, reason)
        self.store.requeue(pending.job_id)
        self.queue.appendleft(pending)
        return True

    def requeue_declined(self, pending: Pending) -> None:
        """A worker gave the job back unstarted: it waits first in line again."""
        self.running = max(0, self.running - 1)
        self.queue.appendleft(pending)

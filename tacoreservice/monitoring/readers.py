"""What the monitoring API reads from the service's SQLite files (the ledger for jobs, the
request log for requests, both for decisions), with a short-lived read-only connection per
call (nothing here shares a handle with the broker thread), and the shapes the dashboard
reads: request-log items, jobs with their timing, failure groups, decisions.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tacoreservice.service.decisions import latest_decision, latest_decisions
from tacoreservice.storage.job_store import count_jobs, get_job, list_jobs
from tacoreservice.storage.request_log_queries import (
    count_request_logs,
    failure_groups,
    query_request_logs,
)

__all__ = ["ApiError", "Database", "log_item"]

# Filters are compared for equality with columns no longer than these (protocol limits), so a
# longer value can only miss; refusing it keeps megabyte query strings out of SQLite.
MAX_METHOD = 64
MAX_ID = 128
MAX_TIME = 40
MAX_SYMBOL = 32
MAX_OFFSET = 10_000_000  # SQLite binds at most 2**63 - 1; deeper pages are client bugs
_LIST_FIELDS = (
    "request_id",
    "method",
    "worker_id",
    "client_id",
    "status",
    "error_code",
    "processing_time_ms",
    "queue_wait_ms",
    "created_at",
)
_API_JOB_FIELDS = (
    "job_id",
    "method",
    "state",
    "stage",
    "error",
    "worker_id",
    "attempts",
    "cancel_requested",
    "created_at",
    "started_at",
    "finished_at",
    "elapsed_s",
    "eta_s",
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_or_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # truncated bodies are kept as text


def log_item(row: dict[str, Any], full: bool = False) -> dict[str, Any]:
    item = {k: row.get(k) for k in _LIST_FIELDS}
    if row.get("status") == "error":
        response = json_or_text(row.get("response_data"))
        error = response.get("error") if isinstance(response, dict) else None
        if isinstance(error, dict):
            item["error_message"] = error.get("message")
        elif isinstance(error, str):  # the legacy dialect's error is a string
            item["error_message"] = error
        elif isinstance(response, dict):
            item["error_message"] = response.get("message")
    if full:
        item["request_data"] = json_or_text(row.get("request_data"))
        item["response_data"] = json_or_text(row.get("response_data"))
    return item


def api_job(job: dict[str, Any], with_result: bool = False) -> dict[str, Any]:
    """A job as the dashboard reads it: ``progress`` is the percentage, ``detail`` the
    per-role progress the job store keeps under ``progress``."""
    out = {k: job.get(k) for k in _API_JOB_FIELDS}
    out["progress"] = job["percent"]
    out["detail"] = job["progress"]
    if with_result:
        out["params"] = job.get("params")
        out["result"] = job.get("result")
    return out


class Database:
    """Read-only access to the service's two SQLite files, a short-lived connection per call:
    ``ledger_path`` (jobs) and ``log_path`` (request_logs)."""

    def __init__(self, ledger_path: str, log_path: str):
        self.ledger_path = ledger_path
        self.log_path = log_path

    def connect(self, path: str) -> sqlite3.Connection:
        """A read-only connection to ``path`` (the ledger or the request log)."""
        if not Path(path).is_file():
            raise ApiError(503, "DATA_UNAVAILABLE", f"database {path} does not exist yet")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        conn.execute("PRAGMA query_only = 1")
        return conn

    def _connect_if_there(self, path: str) -> sqlite3.Connection | None:
        # The request log's file is made by its writer, which a service with the log off
        # never starts: no file there is no rows, not an outage.
        return self.connect(path) if Path(path).is_file() else None

    def logs(self, limit: int, offset: int = 0, **filters: Any) -> tuple[int, list[dict]]:
        conn = self._connect_if_there(self.log_path)
        if conn is None:
            return 0, []
        try:
            total = count_request_logs(conn, **filters)
            rows = query_request_logs(conn, limit=limit, offset=offset, **filters)
        except ValueError as exc:  # since / until that are not ISO-8601
            raise ApiError(400, "INVALID_PARAMS", str(exc)) from None
        finally:
            conn.close()
        return total, rows

    def failure_groups(self, since: str | None = None) -> list[dict[str, Any]]:
        conn = self._connect_if_there(self.log_path)
        if conn is None:
            return []
        try:
            groups = failure_groups(conn, since)
        except ValueError as exc:
            raise ApiError(400, "INVALID_PARAMS", str(exc)) from None
        finally:
            conn.close()
        for group in groups:
            if group["latest"] is not None:
                group["latest"] = log_item(group["latest"])
        return groups

    def jobs(
        self,
        state: str | None,
        limit: int,
        job_id: str | None = None,
        method: str | None = None,
        offset: int = 0,
        with_result: bool = False,
    ) -> tuple[int, list[dict]]:
        conn = self.connect(self.ledger_path)
        try:
            if job_id is not None:
                one = get_job(conn, job_id, with_result=with_result)
                found = [one] if one is not None else []
                total = len(found)
            else:
                found = list_jobs(conn, state, method, limit=limit, offset=offset)
                total = count_jobs(conn, state, method)
        except sqlite3.OperationalError:  # no jobs table before the broker migrated
            return 0, []
        finally:
            conn.close()
        return total, [api_job(job, with_result) for job in found]

    @contextlib.contextmanager
    def _both(self) -> Iterator[tuple[sqlite3.Connection | None, sqlite3.Connection | None]]:
        """The request log and the ledger, either None while its file does not exist."""
        with contextlib.ExitStack() as stack:
            conns = []
            for path in (self.log_path, self.ledger_path):
                conn = self._connect_if_there(path)
                if conn is not None:
                    stack.callback(conn.close)
                conns.append(conn)
            yield conns[0], conns[1]

    def decisions(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._both() as (log, ledger):
            return latest_decisions(log, ledger, limit)

    def decision(self, symbol: str) -> dict[str, Any] | None:
        with self._both() as (log, ledger):
            return latest_decision(log, ledger, symbol)

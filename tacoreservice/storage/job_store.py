"""Jobs in SQLite: long requests (an LLM analysis takes minutes) submitted now, read later.

The broker creates a job and schedules it; the worker that runs it records progress, the
result or the error here directly, so a job's outcome survives the broker restarting. All
writes guard on the current state, so the broker and a worker racing to finish the same job
cannot overwrite a terminal state.

States: queued -> running -> succeeded | failed | cancelled (queued -> cancelled too).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from tacoreservice.protocol.messages import json_dumps, utc_timestamp
from tacoreservice.storage.database import open_database

__all__ = ["JobStore", "TERMINAL_STATES", "JOB_STATES", "count_jobs", "get_job", "list_jobs"]

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
_TERMINAL_SQL = "('succeeded', 'failed', 'cancelled')"

_COLUMNS = (
    "job_id, method, params, state, stage, percent, progress, result, error, attempts, "
    "worker_id, request_id, cancel_requested, created_at, started_at, finished_at, updated_at"
)


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


class JobStore:
    """One connection, used from one thread (each process or thread opens its own store)."""

    def __init__(self, path: str | Path):
        self.conn: sqlite3.Connection = open_database(path)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ writes

    def create(self, method: str, params: dict[str, Any], request_id: str | None = None) -> str:
        job_id = "job-" + uuid.uuid4().hex
        now = utc_timestamp()
        with self.conn:
            self.conn.execute(
                "INSERT INTO jobs (job_id, method, params, state, percent, attempts, request_id,"
                " created_at, updated_at) VALUES (?, ?, ?, 'queued', 0, 0, ?, ?, ?)",
                (job_id, method, json_dumps(params).decode(), request_id, now, now),
            )
        return job_id

    def start(self, job_id: str, worker_id: str) -> bool:
        """A worker begins (or re-begins) the job; False when it ended meanwhile."""
        now = utc_timestamp()
        with self.conn:
            cur = self.conn.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker_id = ?,"
                " started_at = ?, updated_at = ?, stage = 'started', percent = 0"
                f" WHERE job_id = ? AND state NOT IN {_TERMINAL_SQL}",
                (worker_id, now, now, job_id),
            )
        return cur.rowcount == 1

    def progress(self, job_id: str, stage: str, percent: float, detail: Any = None) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET stage = ?, percent = ?, progress = ?, updated_at = ?"
                " WHERE job_id = ? AND state = 'running'",
                (
                    stage,
                    max(0.0, min(100.0, float(percent))),
                    None if detail is None else json_dumps(detail).decode(),
                    utc_timestamp(),
                    job_id,
                ),
            )

    def succeed(self, job_id: str, result: Any) -> bool:
        now = utc_timestamp()
        with self.conn:
            cur = self.conn.execute(
                "UPDATE jobs SET state = 'succeeded', result = ?, error = NULL, percent = 100,"
                " stage = 'done', finished_at = ?, updated_at = ?"
                f" WHERE job_id = ? AND state NOT IN {_TERMINAL_SQL}",
                (json_dumps(result).decode(), now, now, job_id),
            )
        return cur.rowcount == 1

    def fail(self, job_id: str, error: dict[str, Any], state: str = "failed") -> bool:
        now = utc_timestamp()
        with self.conn:
            cur = self.conn.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = ?, updated_at = ?"
                f" WHERE job_id = ? AND state NOT IN {_TERMINAL_SQL}",
                (state, json_dumps(error).decode(), now, now, job_id),
            )
        return cur.rowcount == 1

    def request_cancel(self, job_id: str) -> dict[str, Any] | None:
        """Flag the job; a queued job is cancelled at once, a running one by its worker."""
        now = utc_timestamp()
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE job_id = ?",
                (now, job_id),
            )
            self.conn.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?, error = ?"
                " WHERE job_id = ? AND state = 'queued'",
                (
                    now,
                    json_dumps(
                        {"code": "CANCELLED", "message": "cancelled before it started"}
                    ).decode(),
                    job_id,
                ),
            )
        return self.get(job_id)

    def requeue(self, job_id: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET state = 'queued', stage = 'requeued', updated_at = ?"
                f" WHERE job_id = ? AND state NOT IN {_TERMINAL_SQL}",
                (utc_timestamp(), job_id),
            )

    # ------------------------------------------------------------------ reads

    def cancel_requested(self, job_id: str) -> bool:
        row = self.conn.execute(
            "SELECT cancel_requested FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
        return bool(row and row[0])

    def get(self, job_id: str, with_result: bool = True) -> dict[str, Any] | None:
        return get_job(self.conn, job_id, with_result)

    def list_jobs(
        self, state: str | None = None, method: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        return list_jobs(self.conn, state, method, limit, offset)

    def unfinished(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at"
        ).fetchall()
        return [_row(r, with_result=False) for r in rows]


# Reads on any connection (the monitoring API reads with a read-only one of its own).


def get_job(
    conn: sqlite3.Connection, job_id: str, with_result: bool = True
) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else _row(row, with_result)


def _job_filters(state: str | None, method: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if state is not None:
        clauses.append("state = ?")
        args.append(state)
    if method is not None:
        clauses.append("method = ?")
        args.append(method)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


def list_jobs(
    conn: sqlite3.Connection,
    state: str | None = None,
    method: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Jobs newest first, without their results."""
    where, args = _job_filters(state, method)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY created_at DESC, job_id LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    return [_row(r, with_result=False) for r in rows]


def count_jobs(
    conn: sqlite3.Connection, state: str | None = None, method: str | None = None
) -> int:
    """How many jobs :func:`list_jobs` pages through with the same filters."""
    where, args = _job_filters(state, method)
    return int(conn.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0])


def _row(row: tuple[Any, ...], with_result: bool) -> dict[str, Any]:
    out = {
        "job_id": row[0],
        "method": row[1],
        "params": _loads(row[2]),
        "state": row[3],
        "stage": row[4],
        "percent": row[5],
        "progress": _loads(row[6]),
        "error": _loads(row[8]),
        "attempts": row[9],
        "worker_id": row[10],
        "request_id": row[11],
        "cancel_requested": bool(row[12]),
        "created_at": row[13],
        "started_at": row[14],
        "finished_at": row[15],
        "updated_at": row[16],
    }
    out.update(job_timing(out))
    if with_result:
        out["result"] = _loads(row[7])
    return out


def _epoch(text: Any) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def job_timing(job: dict[str, Any], now: float | None = None) -> dict[str, float | None]:
    """``elapsed_s`` since the job started (to its end once finished) and, while it runs,
    ``eta_s``: the time left if it keeps the pace its percent shows so far."""
    started = _epoch(job.get("started_at"))
    if started is None:
        return {"elapsed_s": None, "eta_s": None}
    end = _epoch(job.get("finished_at")) or (time.time() if now is None else now)
    elapsed = max(0.0, end - started)
    eta = None
    percent = job.get("percent") or 0
    if job.get("state") == "running" and 0 < percent < 100:
        eta = elapsed * (100.0 - percent) / percent
    return {
        "elapsed_s": round(elapsed, 3),
        "eta_s": None if eta is None else round(eta, 1),
    }

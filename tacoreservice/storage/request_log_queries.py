"""Reading the request log: the rows, their count and the failures by code, as the monitoring
API asks for them (monitoring/readers.py). Writing is :mod:`tacoreservice.storage.request_log`.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from tacoreservice.protocol.errors import CLIENT_ERROR_CODES, is_client_error
from tacoreservice.storage.request_log import _SELECT_COLUMNS, to_iso_utc

__all__ = ["count_request_logs", "failure_groups", "query_request_logs"]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters(
    method: str | None,
    status: str | None,
    worker_id: str | None,
    request_id: str | None,
    since: str | datetime | None,
    until: str | datetime | None,
    error_code: str | None = None,
    client_id: str | None = None,
    symbol: str | None = None,
    error_kind: str | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("method", method),
        ("status", status),
        ("worker_id", worker_id),
        ("request_id", request_id),
        ("error_code", error_code),
        ("client_id", client_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if symbol is not None:
        # The symbol as a JSON string anywhere in the request: "symbol": "AAPL" or a list of
        # symbols (request bodies are stored as sent, so no JSON function is relied on).
        clauses.append("request_data LIKE ? ESCAPE '\\'")
        params.append(f'%"{_like(symbol)}"%')
    if error_kind is not None:
        codes = sorted(CLIENT_ERROR_CODES)
        marks = ", ".join("?" for _ in codes)
        negate = "" if error_kind == "client" else "NOT "
        clauses.append(f"status = 'error' AND COALESCE(error_code, '') {negate}IN ({marks})")
        params.extend(str(c) for c in codes)
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(to_iso_utc(since))
    if until is not None:
        clauses.append("created_at < ?")
        params.append(to_iso_utc(until))
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return where, params


def query_request_logs(
    conn: sqlite3.Connection,
    *,
    method: str | None = None,
    status: str | None = None,
    worker_id: str | None = None,
    request_id: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    error_code: str | None = None,
    client_id: str | None = None,
    symbol: str | None = None,
    error_kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Rows matching every given filter, newest first. ``since`` is inclusive, ``until``
    exclusive; both take a datetime or ISO-8601 text (naive means UTC)."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    where, params = _filters(
        method,
        status,
        worker_id,
        request_id,
        since,
        until,
        error_code,
        client_id,
        symbol,
        error_kind,
    )
    return _newest(conn, where, params, limit, offset)


def _newest(
    conn: sqlite3.Connection, where: str, params: list[Any], limit: int, offset: int = 0
) -> list[dict[str, Any]]:
    cur = conn.execute(
        f"SELECT {_SELECT_COLUMNS} FROM request_logs{where} "
        "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
        [*params, int(limit), int(offset)],
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def count_request_logs(
    conn: sqlite3.Connection,
    *,
    method: str | None = None,
    status: str | None = None,
    worker_id: str | None = None,
    request_id: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    error_code: str | None = None,
    client_id: str | None = None,
    symbol: str | None = None,
    error_kind: str | None = None,
) -> int:
    """How many rows :func:`query_request_logs` would page through with the same filters."""
    where, params = _filters(
        method,
        status,
        worker_id,
        request_id,
        since,
        until,
        error_code,
        client_id,
        symbol,
        error_kind,
    )
    return int(conn.execute(f"SELECT COUNT(*) FROM request_logs{where}", params).fetchone()[0])


def failure_groups(
    conn: sqlite3.Connection, since: str | datetime | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Errors grouped by code, most frequent first: ``{error_code, kind (client|service),
    count, first_at, last_at, latest}`` where ``latest`` is the newest row of that code."""
    where, params = _filters(None, "error", None, None, since, None)
    groups = conn.execute(
        "SELECT COALESCE(error_code, 'UNKNOWN'), COUNT(*), MIN(created_at), MAX(created_at) "
        f"FROM request_logs{where} GROUP BY COALESCE(error_code, 'UNKNOWN') "
        "ORDER BY COUNT(*) DESC, MAX(created_at) DESC LIMIT ?",
        [*params, int(limit)],
    ).fetchall()
    out = []
    for code, count, first_at, last_at in groups:
        code_where = where + " AND COALESCE(error_code, 'UNKNOWN') = ?"
        latest = _newest(conn, code_where, [*params, code], 1)
        out.append(
            {
                "error_code": code,
                "kind": "client" if is_client_error(code) else "service",
                "count": int(count),
                "first_at": first_at,
                "last_at": last_at,
                "latest": latest[0] if latest else None,
            }
        )
    return out

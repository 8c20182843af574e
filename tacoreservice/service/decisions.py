"""The latest analysis decisions, per symbol, as the service recorded them.

Every ``analyze.stock`` answer is already on disk: a call's reply in the request log
(``request_logs.response_data``, bodies up to ``request_log.max_body_bytes``, 64 KiB, which
holds a quant decision of ~20 KB) and a job's result in ``jobs.result``. This module reads them
back; nothing extra is written on the analysis path. A reply cut by the body limit, or older
than ``request_log.retention_days``, is not found here.

Readers take SQLite connections, one to each file (the request log's and the ledger's, either
may be None when that file does not exist yet), so the monitoring API (read-only connections)
and any other caller share them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

__all__ = ["SUMMARY_FIELDS", "latest_decision", "latest_decisions"]

ANALYSIS_METHODS = ("analyze.stock", "analyze.symbol")
# Newest rows read per question: enough for a desk's universe, bounded for the API.
SCAN_ROWS = 400
SUMMARY_FIELDS = (
    "symbol",
    "name",
    "market",
    "as_of",
    "price",
    "rating",
    "action",
    "confidence",
    "target_price",
    "stop_loss",
    "take_profit",
    "position_size_pct",
    "target_exposure",
    "risk_score",
    "engine",
)


def _loads(text: Any) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None  # cut by the body limit


def _rows(conn: sqlite3.Connection | None, sql: str, params: list[Any]) -> list[Any]:
    if conn is None:
        return []
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        return []


def _candidates(
    log: sqlite3.Connection | None, ledger: sqlite3.Connection | None, symbol: str | None
) -> list[tuple[str, str, Any]]:
    """(decided_at, source, decision) newest first, from the request log and the jobs."""
    marks = ", ".join("?" for _ in ANALYSIS_METHODS)
    like = [] if symbol is None else [f'%"{symbol}"%']
    found: list[tuple[str, str, Any]] = []
    rows = _rows(
        log,
        f"SELECT created_at, request_id, response_data FROM request_logs WHERE method IN "
        f"({marks}) AND status = 'success'"
        + (" AND response_data LIKE ?" if symbol else "")
        + " ORDER BY created_at DESC LIMIT ?",
        [*ANALYSIS_METHODS, *like, SCAN_ROWS],
    )
    for created, request_id, body in rows:
        reply = _loads(body)
        data = reply.get("data") if isinstance(reply, dict) else None
        if isinstance(data, dict):
            found.append((str(created), f"request {request_id}", data))
    jobs = _rows(
        ledger,
        f"SELECT finished_at, job_id, result FROM jobs WHERE method IN ({marks}) AND "
        "state = 'succeeded'"
        + (" AND result LIKE ?" if symbol else "")
        + " ORDER BY finished_at DESC LIMIT ?",
        [*ANALYSIS_METHODS, *like, SCAN_ROWS],
    )
    for finished, job_id, result in jobs:
        data = _loads(result)
        if isinstance(data, dict):
            found.append((str(finished), f"job {job_id}", data))
    found.sort(key=lambda item: item[0], reverse=True)
    return found


def _summary(decided_at: str, source: str, data: dict[str, Any]) -> dict[str, Any]:
    out = {k: data.get(k) for k in SUMMARY_FIELDS}
    out["decided_at"] = decided_at
    out["source"] = source
    return out


def latest_decisions(
    log: sqlite3.Connection | None, ledger: sqlite3.Connection | None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest decision of each symbol (its summary fields), newest first."""
    seen: set[str] = set()
    out = []
    for decided_at, source, data in _candidates(log, ledger, None):
        symbol = str(data.get("symbol") or "")
        if not symbol or symbol in seen or "rating" not in data:
            continue
        seen.add(symbol)
        out.append(_summary(decided_at, source, data))
        if len(out) >= limit:
            break
    return out


def latest_decision(
    log: sqlite3.Connection | None, ledger: sqlite3.Connection | None, symbol: str
) -> dict[str, Any] | None:
    """The newest whole decision for ``symbol`` (as the decision names it: AAPL, 600519,
    BTCUSDT), with ``decided_at`` and ``source``; None when none is recorded."""
    wanted = symbol.strip().upper()
    for decided_at, source, data in _candidates(log, ledger, wanted):
        if str(data.get("symbol") or "").upper() == wanted and "rating" in data:
            return {**data, "decided_at": decided_at, "source": source}
    return None

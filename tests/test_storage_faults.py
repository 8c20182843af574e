"""Storage that fails under a running service: a deleted database, a broken file, a worker
that cannot open its database. Real processes and real SQLite files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tacoreservice.client import TACoreError
from tacoreservice.protocol.errors import ErrorCode
from tacoreservice.storage.file_watch import DatabaseWatch, storage_error
from tests.support.service import ServiceProcesses

ORDER = {"symbol": "AAPL", "action": "buy", "quantity": 1, "order_type": "market"}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ServiceProcesses]:
    service = ServiceProcesses(tmp_path, workers=1)
    service.start_main()
    yield service
    service.stop()


def test_sqlite_failures_become_codes_a_client_can_act_on(tmp_path: Path) -> None:
    full = storage_error(sqlite3.OperationalError("database or disk is full"), "the ledger")
    assert full.code == ErrorCode.STORAGE_UNAVAILABLE
    assert "retry with the same request_id" in full.message
    bug = storage_error(sqlite3.OperationalError("near 'SELEC': syntax error"), "the ledger")
    assert bug.code == ErrorCode.INTERNAL
    db = tmp_path / "a.db"
    db.write_bytes(b"")
    watch = DatabaseWatch(db)
    assert watch.problem() is None
    replacement = tmp_path / "b.db"
    replacement.write_bytes(b"")
    os.replace(replacement, db)
    assert "was replaced" in (watch.problem() or "")
    db.unlink()
    assert "was deleted" in (watch.problem() or "")
    assert DatabaseWatch(":memory:").problem() is None


def test_a_deleted_database_refuses_orders_and_health_says_why(svc: ServiceProcesses) -> None:
    with svc.client(timeout_ms=20_000) as c:
        first = c.call("execute.order", ORDER)
        assert first["status"] == "filled"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{svc.db_path}{suffix}").unlink(missing_ok=True)
        with pytest.raises(TACoreError) as info:
            c.call("execute.order", ORDER)
        assert info.value.code == "STORAGE_UNAVAILABLE"
        assert "was deleted" in str(info.value) and "Restart the service" in str(info.value)
        health = c.health(detailed=True)
    assert health["status"] == "degraded"
    assert health["storage"]["ok"] is False and "deleted" in health["storage"]["problem"]
    http = httpx.get(f"{svc.api_url}/health", timeout=10)
    assert http.status_code == 503 and "deleted" in http.json()["reason"]


@pytest.mark.parametrize("which", ["request log", "ledger"])
def test_a_broken_file_is_a_503_with_the_reason_not_a_bare_500(
    svc: ServiceProcesses, which: str
) -> None:
    # /api/logs reads the request log's file, /api/jobs the ledger's.
    path, endpoint = (svc.log_path, "logs") if which == "request log" else (svc.db_path, "jobs")
    if which == "request log":  # its writer makes the file with the first row
        with svc.client() as c:
            c.call("health.check", {})
        deadline = time.monotonic() + 15
        while not path.exists():
            assert time.monotonic() < deadline, f"{path} never appeared"
            time.sleep(0.1)
    path.with_name("garbage").write_bytes(b"this is not a database" * 100)
    os.replace(path.with_name("garbage"), path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    reply = httpx.get(f"{svc.api_url}/api/{endpoint}", timeout=10)
    assert reply.status_code == 503
    error = reply.json()["error"]
    assert error["code"] == "STORAGE_UNAVAILABLE" and "could not be read" in error["message"]


def test_a_worker_that_cannot_open_its_database_does_not_register(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=0)
    svc.start_broker()
    try:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the database's folder should be")
        env = {**svc.env, "DATABASE_PATH": str(blocker / "tacore.db")}
        done = subprocess.run(
            [sys.executable, "-m", "tacoreservice.worker", "--endpoint", svc.backend_endpoint],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 74
        log = (tmp_path / "logs" / "worker.log").read_text()
        assert "cannot open the database" in log and "not registering" in log
        health = svc.health()
        assert health["workers"]["alive"] == 0 and health["worker_events"]["registered"] == 0
    finally:
        svc.stop()

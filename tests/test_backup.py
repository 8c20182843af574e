"""`tacore backup` / `tacore restore`: a round trip through a running service, and refusals.

Everything is real: the service's processes, its SQLite file, a redis-server, and the CLI run
as a subprocess the way an operator runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tacoreservice.storage.database import MIGRATIONS, SCHEMA_VERSION, open_database
from tacoreservice.storage.job_store import JobStore
from tests.support.service import ServiceProcesses, free_port, wait_job

PREFIX = "tacore:"


def _text(done: Any) -> str:
    """stdout and stderr with rich's line wrapping undone."""
    return " ".join((done.stdout + done.stderr).split())


def _db_rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _our_keys(r: redis.Redis) -> set[bytes]:
    return set(r.scan_iter(match=PREFIX + "*"))


def _target_state(db: Path) -> tuple[str, list[str]]:
    """The target database's bytes and every file beside it that belongs to it."""
    digest = hashlib.sha256(db.read_bytes()).hexdigest() if db.exists() else ""
    return digest, sorted(n for n in os.listdir(db.parent) if db.name in n)


def _wait_logged(db: Path, request_ids: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        marks = ",".join("?" * len(request_ids))
        found = _db_rows(
            db, f"SELECT DISTINCT request_id FROM request_logs WHERE request_id IN ({marks})",
            *request_ids,
        )  # fmt: skip
        if len(found) == len(request_ids):
            return
        time.sleep(0.1)
    raise AssertionError(f"request log never held {request_ids}")


def test_round_trip_through_a_running_service(tmp_path: Path, redis_server: str) -> None:
    # A database number of its own, so the flush below touches no other test's keys.
    redis_url = redis_server.rsplit("/", 1)[0] + "/11"
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    svc = ServiceProcesses(tmp_path, workers=2, REDIS_URL=redis_url)
    backup_dir = tmp_path / "backups" / "b1"
    svc.start_main()
    try:
        with svc.client() as c:
            market = c.request(
                "execute.order",
                {"symbol": "AAPL", "action": "buy", "quantity": 10, "order_type": "market"},
            )
            resting = c.request(
                "execute.order",
                {"symbol": "MSFT", "action": "buy", "quantity": 5, "order_type": "limit",
                 "price": 1.0},
            )  # fmt: skip
            assert market["data"]["status"] == "filled", market
            assert resting["data"]["status"] == "open", resting
            job = c.call("job.submit", {"method": "test.steps", "params": {"steps": 2}})
            wait_job(c, job["job_id"], {"succeeded"})
            c.call("analyze.stock", {"symbol": "AAPL", "analysis_type": "technical"})
            c.call("get.market_data", {"symbol": "MSFT"})
            before = {
                "orders": c.call("order.list", {}),
                "portfolio": c.call("portfolio.get", {}),
                "job": c.call("job.result", {"job_id": job["job_id"]}),
            }
        r.set(PREFIX + "backup-test:forever", b"kept")
        r.set(PREFIX + "backup-test:hour", b"an hour", ex=3600)
        r.set("elsewhere:key", b"another application's")
        request_ids = [market["request_id"], resting["request_id"]]
        _wait_logged(svc.log_path, request_ids)
        keys_before = _our_keys(r)
        assert len(keys_before) >= 4  # analysis and market data cache entries, and ours

        done = svc.cli("backup", str(backup_dir))  # while the service runs
        assert done.returncode == 0, _text(done)
        assert "table orders" in done.stdout and "redis keys" in done.stdout
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        assert manifest["schema_version"] == SCHEMA_VERSION
        assert manifest["tables"]["orders"] == 2 and manifest["tables"]["positions"] == 1
        assert manifest["tables"]["jobs"] == 1 and manifest["tables"]["fills"] == 1
        # The ledger alone: the request log is an audit trail in a file of its own.
        assert not {"request_logs", "legacy_request_logs"} & set(manifest["tables"])
        assert manifest["redis"]["keys"] == len(keys_before) == len(_our_keys(r))
        dumped = (backup_dir / "redis.jsonl").read_text()
        assert len(dumped.splitlines()) == len(keys_before) and "ZWxzZXdoZXJl" not in dumped
        for name, meta in manifest["files"].items():
            assert hashlib.sha256((backup_dir / name).read_bytes()).hexdigest() == meta["sha256"]
        assert svc.health()["status"] == "healthy"

        # Restoring under the running service is refused; --force does not override the
        # database being open.
        state = _target_state(svc.db_path)
        refused = svc.cli("restore", str(backup_dir))
        assert refused.returncode == 2 and "answers on" in _text(refused), _text(refused)
        forced = svc.cli("restore", str(backup_dir), "--force")
        assert forced.returncode == 2, _text(forced)
        assert "open in another process" in _text(forced)
        assert _target_state(svc.db_path)[1] == state[1]  # nothing moved aside, no temp file
    finally:
        svc.stop()

    for suffix in ("", "-wal", "-shm"):
        Path(f"{svc.db_path}{suffix}").unlink(missing_ok=True)
    r.flushdb()

    done = svc.cli("restore", str(backup_dir))
    assert done.returncode == 0, _text(done)
    out = _text(done)
    counts = re.search(r"redis: (\d+) keys restored, (\d+) expired", out)
    assert counts, out
    restored, expired = int(counts[1]), int(counts[2])
    assert restored + expired == len(keys_before)
    assert "previous database kept" not in out  # there was none
    keys_after = _our_keys(r)
    assert len(keys_after) == restored and keys_after <= keys_before
    assert r.get(PREFIX + "backup-test:forever") == b"kept"
    assert r.pttl(PREFIX + "backup-test:forever") == -1
    assert 3000 < r.ttl(PREFIX + "backup-test:hour") <= 3600
    assert r.get("elsewhere:key") is None  # never ours, never backed up
    assert _db_rows(svc.db_path, "PRAGMA integrity_check") == [("ok",)]

    svc.start_main()
    try:
        with svc.client() as c:
            assert c.call("order.list", {}) == before["orders"]
            assert c.call("portfolio.get", {}) == before["portfolio"]
            assert c.call("job.result", {"job_id": job["job_id"]}) == before["job"]
            # The ledger came back with its request ids: a retry finds the restored order.
            again = c.request(
                "execute.order",
                {"symbol": "AAPL", "action": "buy", "quantity": 10, "order_type": "market"},
                request_id=market["request_id"],
            )
            assert again["data"]["order_id"] == market["data"]["order_id"]
            assert len(c.call("order.list", {})["orders"]) == 2
        logs = httpx.get(
            f"{svc.api_url}/api/logs", params={"request_id": resting["request_id"]}, timeout=10
        ).json()
        assert logs["total"] >= 1 and logs["items"][0]["method"] == "execute.order"
    finally:
        svc.stop()
    # The restore left the request log alone; the retry is its order's second attempt there.
    assert _db_rows(
        svc.log_path, "SELECT attempts FROM request_logs WHERE request_id = ?", market["request_id"]
    ) == [(2,)]


@pytest.fixture(scope="module")
def good_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup of a database holding one job (written once for the module's tests)."""
    svc = ServiceProcesses(tmp_path_factory.mktemp("source"), workers=0)
    svc.env.pop("REDIS_URL", None)
    store = JobStore(svc.db_path)
    store.create("test.steps", {"steps": 1})
    store.close()
    good = svc.tmp / "good"
    done = svc.cli("backup", str(good))
    assert done.returncode == 0, _text(done)
    return good


@pytest.fixture
def offline(tmp_path: Path, good_backup: Path) -> tuple[ServiceProcesses, Path]:
    """The CLI's environment with a target database of two jobs (no service running), and a
    copy of the good backup."""
    svc = ServiceProcesses(tmp_path, workers=0)
    svc.env.pop("REDIS_URL", None)
    store = JobStore(svc.db_path)
    store.create("test.steps", {"steps": 1})
    store.create("test.steps", {"steps": 2})
    store.close()
    good = tmp_path / "backups" / "good"
    shutil.copytree(good_backup, good)
    return svc, good


def _corrupt_byte(file: Path, offset: int) -> None:
    with file.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _rewrite_manifest(folder: Path, **changes: Any) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _rehash(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    db = (folder / "tacoreservice.db").read_bytes()
    manifest["files"]["tacoreservice.db"]["sha256"] = hashlib.sha256(db).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _break_jobs_page(folder: Path) -> None:
    """Damage the jobs table's b-tree page header, then fix the hash so the page is all that
    is wrong: only PRAGMA integrity_check can tell."""
    db = folder / "tacoreservice.db"
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
    conn.close()
    with db.open("r+b") as f:
        f.seek((root - 1) * page_size + 3)  # the page's cell count
        f.write(b"\x00\x07")
    _rehash(folder)


def _older_manifest(folder: Path) -> None:
    _rewrite_manifest(folder, schema_version=SCHEMA_VERSION - 1)


def _newer_manifest(folder: Path) -> None:
    _rewrite_manifest(folder, schema_version=SCHEMA_VERSION + 7)


def _row_counts(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    _rewrite_manifest(folder, tables={**manifest["tables"], "jobs": 5})


CASES = {
    "flipped byte": (
        lambda d: _corrupt_byte(d / "tacoreservice.db", 5000),
        ["is corrupt: tacoreservice.db sha256 mismatch (expected"],
    ),
    "truncated db": (
        lambda d: os.truncate(d / "tacoreservice.db", 4096),
        ["is corrupt: tacoreservice.db has 4096 bytes, the manifest says"],
    ),
    "damaged page, hash fixed": (
        _break_jobs_page,
        ["is corrupt: tacoreservice.db fails PRAGMA integrity_check: On tree page"],
    ),
    "newer schema": (
        _newer_manifest,
        [f"schema version {SCHEMA_VERSION + 7}", f"knows versions up to {SCHEMA_VERSION}"],
    ),
    "manifest schema is not the db's": (
        _older_manifest,
        [
            f"manifest.json says schema version {SCHEMA_VERSION - 1}, tacoreservice.db holds "
            f"schema version {SCHEMA_VERSION}"
        ],
    ),  # fmt: skip
    "row counts": (_row_counts, ["row counts differ (jobs: 5 in manifest.json, 1 in"]),
    "unknown format": (
        lambda d: _rewrite_manifest(d, format_version=2),
        ["has format_version 2; this TACoreService reads format_version 1 only"],
    ),
    "missing file": (
        lambda d: (d / "tacoreservice.db").unlink(),
        ["is incomplete: tacoreservice.db is missing"],
    ),
    "garbled manifest": (
        lambda d: (d / "manifest.json").write_text("{not json"),
        ["is corrupt: manifest.json is unreadable"],
    ),
    "not a backup": (
        lambda d: (d / "manifest.json").unlink(),
        ["is not a TACoreService backup: it has no manifest.json"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_restore_refuses_a_bad_backup(offline: tuple[ServiceProcesses, Path], case: str) -> None:
    svc, good = offline
    damage, messages = CASES[case]
    bad = good.with_name(case.replace(" ", "-").replace(",", "").replace("'", ""))
    shutil.copytree(good, bad)
    damage(bad)
    # The target holds something else than the backup, so a wrongful restore would show.
    state = _target_state(svc.db_path)
    done = svc.cli("restore", str(bad), "--force")
    assert done.returncode == 2, _text(done)
    text = _text(done)
    assert text.startswith("restore refused:") and str(bad) in text, text
    for message in messages:
        assert message in text, text
    assert _target_state(svc.db_path) == state


def test_restore_replaces_a_database_and_keeps_the_old_one(
    offline: tuple[ServiceProcesses, Path],
) -> None:
    svc, good = offline
    done = svc.cli("restore", str(good))
    assert done.returncode == 0, _text(done)
    assert re.search(r"table jobs\W+1 rows", done.stdout), done.stdout
    kept = Path(_text(done).split("previous database kept as ", 1)[1].split()[0])
    assert kept.parent == svc.db_path.parent and kept.name.startswith("tacore.db.pre-restore-")
    assert _db_rows(kept, "SELECT COUNT(*) FROM jobs") == [(2,)]  # the target's own jobs
    assert _db_rows(svc.db_path, "SELECT COUNT(*) FROM jobs") == [(1,)]
    assert not [n for n in os.listdir(svc.db_path.parent) if n.startswith(".tacore.db")]


def test_older_schema_is_migrated_on_restore(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=0)
    svc.env.pop("REDIS_URL", None)
    old = open_database(svc.db_path, migrations=MIGRATIONS[:2])  # as release 2 left it
    with old:
        old.execute(
            "INSERT INTO jobs (job_id, method, params, state, created_at, updated_at) "
            "VALUES ('job-old', 'analyze.stock', '{}', 'succeeded', '2025-01-02', '2025-01-02')"
        )
    old.close()
    done = svc.cli("backup", str(tmp_path / "v2"))
    assert done.returncode == 0, _text(done)
    assert json.loads((tmp_path / "v2" / "manifest.json").read_text())["schema_version"] == 2
    target = tmp_path / "restored" / "tacore.db"
    svc.env["DATABASE_PATH"] = str(target)
    done = svc.cli("restore", str(tmp_path / "v2"))
    assert done.returncode == 0, _text(done)
    assert "schema migrated from version 2" in done.stdout
    assert _db_rows(target, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _db_rows(target, "SELECT job_id FROM jobs") == [("job-old",)]
    assert _db_rows(target, "SELECT COUNT(*) FROM orders") == [(0,)]


def test_backup_refusals(offline: tuple[ServiceProcesses, Path], tmp_path: Path) -> None:
    svc, good = offline
    done = svc.cli("backup", str(good))
    assert done.returncode == 2 and "backups are never overwritten" in _text(done)

    svc.env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = svc.cli("backup", str(tmp_path / "no-redis"))
    assert done.returncode == 2 and "pass --skip-redis" in _text(done), _text(done)
    assert not (tmp_path / "no-redis").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".no-redis")]
    done = svc.cli("backup", str(tmp_path / "no-redis"), "--skip-redis")
    assert done.returncode == 0, _text(done)
    assert json.loads((tmp_path / "no-redis" / "manifest.json").read_text())["redis"] is None

    svc.env["DATABASE_PATH"] = str(tmp_path / "nowhere" / "tacore.db")
    done = svc.cli("backup", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "no database at" in _text(done)
    assert not (tmp_path / "nowhere").exists()  # the check created no empty database

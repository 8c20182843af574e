"""Backups of the service's state: the ledger database and, when Redis is used, our Redis keys.

The ledger (``database.path``: orders, fills, positions, the paper account, jobs) is the state
a restore must bring back. The request log (``request_log.path``) is an audit trail with its
own retention and is not part of a backup; a backup made before the two were split still holds
its rows, and after a restore they move to the log's file when the service starts.

A backup is a directory (not an archive, so an operator can inspect it and copy it with rsync):

    PATH/manifest.json      what is inside, with the sha256 and size of every other file
    PATH/tacoreservice.db   the database, one self-contained file (rollback journal, no -wal)
    PATH/redis.jsonl        only when Redis is used: one key a line, ``DUMP`` payload and TTL

The database is copied with SQLite's online backup API in a single step, which reads one
consistent snapshot while the service keeps writing (WAL mode: readers never block the writer),
so ``tacore backup`` needs no downtime. Redis is snapshotted key by key (``SCAN`` over
``cache.key_prefix``, then ``DUMP`` and ``PTTL``), never by copying ``dump.rdb``: the server
may be on another host, and it may hold other applications' keys. Redis only holds caches, so
the two parts need not be from the same instant.

Restore refuses, before touching anything, a backup that is not one (no manifest), is corrupt
(a sha256 or size mismatch, a missing file, a failed ``PRAGMA integrity_check``, row counts
other than the manifest's) or does not match this code (an unknown ``format_version``, a
schema newer than :data:`~tacoreservice.storage.database.SCHEMA_VERSION`, a manifest whose
schema version is not the database's). An older schema is accepted and migrated forward with
the same migrations the service applies at start, since those are written to upgrade existing
files. The database is copied to a temporary file next to the target and renamed over it
atomically; the database it replaces is kept beside it as ``NAME.pre-restore-STAMP``.

A running service is protected twice. When something answers on the configured broker
frontend, restore refuses unless ``force`` (which exists for another program on that port, or
a service that uses another database). When any process has the target database open, restore
refuses even with ``force``: renaming a file under open SQLite connections corrupts it
(https://www.sqlite.org/howtocorrupt.html), and the running service would keep writing to the
replaced file anyway.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from tacoreservice.config import Settings
from tacoreservice.storage.database import BUSY_TIMEOUT_MS, SCHEMA_VERSION, migrate

__all__ = [
    "FORMAT_VERSION",
    "BackupError",
    "BackupManifest",
    "RestoreOutcome",
    "create_backup",
    "read_manifest",
    "restore_backup",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DB_FILE = "tacoreservice.db"
REDIS_FILE = "redis.jsonl"
_REDIS_BATCH = 500
_PROBE_TIMEOUT_S = 0.5


class BackupError(Exception):
    """A backup cannot be written, or a restore is refused; the message says why and what to
    do, and nothing was changed."""


@dataclass
class RestoreOutcome:
    target: str
    previous_moved_to: str | None = None  # the replaced database, kept beside the target
    migrated_from: int | None = None  # schema version of an older backup, now upgraded
    redis_restored: int = 0
    redis_expired: int = 0  # keys whose TTL ran out between the backup and the restore
    notes: list[str] = field(default_factory=list)


@dataclass
class BackupManifest:
    format_version: int
    created_at: str
    tacore_version: str
    schema_version: int
    source_db: str
    files: dict[str, dict[str, Any]]  # name -> {"sha256", "bytes"}
    tables: dict[str, int]  # table -> rows
    redis: dict[str, Any] | None = None  # {"url", "key_prefix", "keys", "server_version", ...}
    path: str = ""  # where this manifest was read or written (not stored)
    restore: RestoreOutcome | None = None  # set by restore_backup (not stored)

    @property
    def redis_keys(self) -> int:
        return int(self.redis["keys"]) if self.redis else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        data.pop("restore")
        return data


# --------------------------------------------------------------------------- helpers


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _connect(path: Path, mode: str = "rw") -> Iterator[sqlite3.Connection]:
    # mode=rw never creates a missing file, unlike a plain connect.
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
    )
    try:
        yield conn
    finally:
        conn.close()


def _table_rows(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    counts = {}
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'  # a name from sqlite_master, as identifier
        counts[name] = int(conn.execute(f"SELECT COUNT(*) FROM {quoted}").fetchone()[0])
    return counts


def _integrity_problems(conn: sqlite3.Connection, shown: int = 5) -> list[str]:
    rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(100)")]
    if rows == ["ok"]:
        return []
    lines = [line for row in rows for line in row.splitlines() if not line.startswith("***")]
    more = [f"... {len(lines) - shown} more"] if len(lines) > shown else []
    return lines[:shown] + more


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=10.0)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _redacted(url: str) -> str:
    from tacoreservice.cache.redis_cache import redacted_url

    return redacted_url(url)


# --------------------------------------------------------------------------- backup


def _copy_database(source: Path, dest: Path) -> tuple[int, dict[str, int]]:
    """Online-backup ``source`` into ``dest``; return its schema version and row counts."""
    if not source.is_file():
        raise BackupError(
            f"no database at {source} (database.path / DATABASE_PATH): nothing to back up"
        )
    try:
        with _connect(source) as src, _connect(dest, "rwc") as dst:
            # pages=-1: one step, one read transaction, one consistent snapshot; a stepwise
            # copy would restart every time the running service commits.
            src.backup(dst)
            # A self-contained file: no -wal beside it to forget when copying the backup.
            dst.execute("PRAGMA journal_mode = DELETE")
            problems = _integrity_problems(dst)
            if problems:
                raise BackupError(
                    f"the database {source} fails PRAGMA integrity_check, so its backup would "
                    f"be too: {'; '.join(problems)}. Restore an older backup instead"
                )
            version = int(dst.execute("PRAGMA user_version").fetchone()[0])
            return version, _table_rows(dst)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"cannot back up the database {source}: {exc}") from exc


def _snapshot_redis(url: str, prefix: str, dest: Path) -> dict[str, Any]:
    import redis

    client = _redis_client(url)
    count = 0
    try:
        info = client.info("server")
        snapshot_ms = int(time.time() * 1000)
        with dest.open("w", encoding="utf-8") as out:
            batch: list[bytes] = []

            def flush() -> int:
                pipe = client.pipeline(transaction=False)
                for key in batch:
                    pipe.pttl(key)
                    pipe.dump(key)
                answers = pipe.execute()
                written = 0
                for key, pttl, payload in zip(batch, answers[::2], answers[1::2], strict=True):
                    if payload is None or pttl == -2:  # expired or deleted since SCAN
                        continue
                    line = {
                        "key": base64.b64encode(key).decode(),
                        "pttl_ms": int(pttl),  # -1: no expiry
                        "dump": base64.b64encode(payload).decode(),
                    }
                    out.write(json.dumps(line) + "\n")
                    written += 1
                batch.clear()
                return written

            for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
                batch.append(key)
                if len(batch) >= _REDIS_BATCH:
                    count += flush()
            count += flush()
    except redis.RedisError as exc:
        raise BackupError(
            f"cannot snapshot Redis at {_redacted(url)}: {exc}. Redis holds only caches: pass "
            f"--skip-redis to back up the database alone"
        ) from exc
    finally:
        client.close()
    return {
        "url": _redacted(url),
        "key_prefix": prefix,
        "keys": count,
        "server_version": str(info.get("redis_version", "")),
        "snapshot_at_ms": snapshot_ms,
    }


def create_backup(
    settings: Settings, path: str | Path, *, skip_redis: bool = False
) -> BackupManifest:
    """Write a backup of the database (and our Redis keys) into the new directory ``path``.

    Safe while the service runs. The backup is assembled in a hidden directory beside ``path``
    and renamed into place at the end, so ``path`` never holds half a backup.
    """
    from tacoreservice import __version__

    dest = Path(path).expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(
            f"{dest} already exists and is not an empty directory; backups are never "
            f"overwritten: give a new path"
        )
    work = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        source = Path(settings.database.path).expanduser().absolute()
        version, tables = _copy_database(source, work / DB_FILE)
        redis_info = None
        if settings.cache.redis_url and not skip_redis:
            redis_info = _snapshot_redis(
                settings.cache.redis_url, settings.cache.key_prefix, work / REDIS_FILE
            )
        files = {
            p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
            for p in sorted(work.iterdir())
        }
        manifest = BackupManifest(
            format_version=FORMAT_VERSION,
            created_at=_utc_now(),
            tacore_version=__version__,
            schema_version=version,
            source_db=str(source),
            files=files,
            tables=tables,
            redis=redis_info,
        )
        (work / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        for p in work.iterdir():
            with p.open("rb") as f:
                os.fsync(f.fileno())
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(work, dest)
        _fsync_dir(dest.parent)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise BackupError(f"cannot write the backup to {dest}: {exc}") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    manifest.path = str(dest)
    return manifest


# --------------------------------------------------------------------------- restore


def read_manifest(path: str | Path) -> BackupManifest:
    """Read and check ``path``'s manifest and every file it lists (sizes and sha256)."""
    folder = Path(path).expanduser().absolute()
    if not folder.is_dir():
        raise BackupError(f"no backup at {folder}: it is not a directory")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(
            f"{folder} is not a TACoreService backup: it has no {MANIFEST} (a backup written "
            f"by `tacore backup` holds {MANIFEST}, {DB_FILE} and, with Redis, {REDIS_FILE})"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        fmt = data["format_version"]
        if fmt != FORMAT_VERSION:
            raise BackupError(
                f"backup at {folder} has format_version {fmt!r}; this TACoreService reads "
                f"format_version {FORMAT_VERSION} only"
            )
        manifest = BackupManifest(
            format_version=int(fmt),
            created_at=str(data["created_at"]),
            tacore_version=str(data["tacore_version"]),
            schema_version=int(data["schema_version"]),
            source_db=str(data["source_db"]),
            files={str(k): dict(v) for k, v in data["files"].items()},
            tables={str(k): int(v) for k, v in data["tables"].items()},
            redis=data.get("redis"),
            path=str(folder),
        )
    except BackupError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(
            f"backup at {folder} is corrupt: {MANIFEST} is unreadable ({type(exc).__name__}: {exc})"
        ) from exc
    if DB_FILE not in manifest.files:
        raise BackupError(f"backup at {folder} is corrupt: {MANIFEST} does not list {DB_FILE}")
    if manifest.redis and REDIS_FILE not in manifest.files:
        raise BackupError(
            f"backup at {folder} is corrupt: {MANIFEST} counts Redis keys but does not list "
            f"{REDIS_FILE}"
        )
    for name, meta in manifest.files.items():
        file = folder / name
        if Path(name).name != name:
            raise BackupError(f"backup at {folder} is corrupt: {MANIFEST} lists {name!r}")
        if not file.is_file():
            raise BackupError(f"backup at {folder} is incomplete: {name} is missing")
        size = file.stat().st_size
        if size != meta.get("bytes"):
            raise BackupError(
                f"backup at {folder} is corrupt: {name} has {size} bytes, the manifest says "
                f"{meta.get('bytes')}"
            )
        digest = _sha256(file)
        if digest != meta.get("sha256"):
            raise BackupError(
                f"backup at {folder} is corrupt: {name} sha256 mismatch (expected "
                f"{meta.get('sha256')}, got {digest})"
            )
    if manifest.schema_version > SCHEMA_VERSION:
        raise BackupError(
            f"backup at {folder} has database schema version {manifest.schema_version}, but "
            f"this TACoreService ({_code_version()}) knows versions up to {SCHEMA_VERSION}: it "
            f"was written by a newer release ({manifest.tacore_version}). Upgrade TACoreService "
            f"before restoring it"
        )
    return manifest


def _code_version() -> str:
    from tacoreservice import __version__

    return __version__


def _prepare_database(manifest: BackupManifest, temp: Path, outcome: RestoreOutcome) -> None:
    """Copy the backup's database to ``temp`` and check it; migrate an older schema."""
    folder = Path(manifest.path)
    shutil.copyfile(folder / DB_FILE, temp)
    if _sha256(temp) != manifest.files[DB_FILE]["sha256"]:
        raise BackupError(f"copying {folder / DB_FILE} to {temp} changed it: is the disk full?")
    try:
        with _connect(temp) as conn:
            problems = _integrity_problems(conn)
            if problems:
                raise BackupError(
                    f"backup at {folder} is corrupt: {DB_FILE} fails PRAGMA integrity_check: "
                    f"{'; '.join(problems)}"
                )
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version != manifest.schema_version:
                raise BackupError(
                    f"backup at {folder} is mismatched: {MANIFEST} says schema version "
                    f"{manifest.schema_version}, {DB_FILE} holds schema version {version}"
                )
            rows = _table_rows(conn)
            if rows != manifest.tables:
                diff = sorted(
                    f"{t}: {manifest.tables.get(t)} in {MANIFEST}, {rows.get(t)} in {DB_FILE}"
                    for t in set(rows) | set(manifest.tables)
                    if rows.get(t) != manifest.tables.get(t)
                )
                raise BackupError(
                    f"backup at {folder} is mismatched: row counts differ ({'; '.join(diff)})"
                )
            if version < SCHEMA_VERSION:
                migrate(conn, where=str(temp))
                outcome.migrated_from = version
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"backup at {folder} is corrupt: {DB_FILE}: {exc}") from exc


def _frontend_listener(settings: Settings) -> str | None:
    """What answers on the configured broker frontend, or None when nothing does."""
    endpoint = settings.broker.frontend_endpoint
    parsed = urlparse(endpoint)
    try:
        if parsed.scheme == "tcp":
            host = parsed.hostname or "127.0.0.1"
            if host in ("0.0.0.0", "*", "::"):
                host = "127.0.0.1"
            with socket.create_connection((host, parsed.port or 5555), _PROBE_TIMEOUT_S):
                pass
        elif parsed.scheme == "ipc":
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(_PROBE_TIMEOUT_S)
                s.connect(endpoint[len("ipc://") :])
        else:
            return None
    except OSError:
        return None
    if settings.security.mode == "curve":
        # A health probe without client keys would only add a refusal to the broker's log.
        return f"something listens on {endpoint}, the configured (CURVE) broker frontend"
    try:
        from tacoreservice.client import TACoreClient

        with TACoreClient(endpoint, timeout_ms=int(_PROBE_TIMEOUT_S * 1000), retries=0) as c:
            health = c.health()
        workers = health.get("workers", {}).get("alive")
        return f"a TACoreService ({health.get('status')}, {workers} workers) answers on {endpoint}"
    except Exception:  # CURVE without our keys, or another program: it still listens
        return f"something listens on {endpoint}, the configured broker frontend"


def _check_not_in_use(target: Path) -> None:
    """Refuse when a process has ``target`` open; leave it a single file when none has."""
    if not target.exists():
        return
    try:
        with _connect(target) as conn:
            conn.execute("PRAGMA busy_timeout = 1000")
            # Leaving WAL mode needs every other connection closed: a reliable "is anyone
            # using this file" that also folds the -wal into the file before it is moved.
            mode = str(conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]).lower()
            if mode == "wal":
                raise sqlite3.OperationalError("database is locked")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise BackupError(f"cannot open the target database {target}: {exc}") from exc
        raise BackupError(
            f"the database {target} is open in another process (a running TACoreService, or "
            f"a tool such as sqlite3): stop it first. --force does not override this: "
            f"replacing a database file under open connections corrupts it"
        ) from exc
    except sqlite3.DatabaseError:
        pass  # not a database (say, a corrupt file): nothing can be using it as one


def _restore_redis(
    manifest: BackupManifest, url: str, outcome: RestoreOutcome, now_ms: int
) -> None:
    import redis

    snapshot_ms = int(manifest.redis["snapshot_at_ms"]) if manifest.redis else now_ms
    client = _redis_client(url)
    try:
        pipe = client.pipeline(transaction=False)
        pending = 0
        with (Path(manifest.path) / REDIS_FILE).open(encoding="utf-8") as lines:
            for number, raw in enumerate(lines, 1):
                try:
                    line = json.loads(raw)
                    key = base64.b64decode(line["key"])
                    payload = base64.b64decode(line["dump"])
                    pttl = int(line["pttl_ms"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise BackupError(
                        f"backup at {manifest.path} is corrupt: {REDIS_FILE} line {number}: {exc}"
                    ) from exc
                ttl = 0  # RESTORE's "no expiry"
                if pttl >= 0:
                    # The entry expires when it would have without the backup.
                    ttl = pttl - (now_ms - snapshot_ms)
                    if ttl <= 0:
                        outcome.redis_expired += 1
                        continue
                pipe.restore(key, ttl, payload, replace=True)
                pending += 1
                if pending >= _REDIS_BATCH:
                    pipe.execute()
                    outcome.redis_restored += pending
                    pending = 0
        pipe.execute()
        outcome.redis_restored += pending
    except redis.RedisError as exc:
        source = (manifest.redis or {}).get("server_version")
        raise BackupError(
            f"Redis at {_redacted(url)} refused the snapshot: {exc}. A DUMP payload restores "
            f"only on the same or a newer Redis (the backup came from Redis {source}); pass "
            f"--skip-redis to restore the database alone"
        ) from exc
    finally:
        client.close()


def _redis_plan(
    manifest: BackupManifest, settings: Settings, skip_redis: bool, outcome: RestoreOutcome
) -> str | None:
    """The Redis URL to restore into, or None (with the reason noted)."""
    if not manifest.redis or not manifest.redis_keys:
        return None
    url = settings.cache.redis_url
    if skip_redis:
        outcome.notes.append(f"{manifest.redis_keys} Redis keys not restored (--skip-redis)")
        return None
    if not url:
        outcome.notes.append(
            f"{manifest.redis_keys} Redis keys not restored: this configuration uses no Redis "
            f"(REDIS_URL); they are only caches"
        )
        return None
    if manifest.redis.get("key_prefix") != settings.cache.key_prefix:
        outcome.notes.append(
            f"{manifest.redis_keys} Redis keys not restored: they use key prefix "
            f"{manifest.redis.get('key_prefix')!r}, this configuration "
            f"{settings.cache.key_prefix!r}; they are only caches"
        )
        return None
    import redis

    client = _redis_client(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BackupError(
            f"Redis at {_redacted(url)} is unreachable ({exc}); start it, or pass --skip-redis "
            f"to restore the database alone (Redis holds only caches)"
        ) from exc
    finally:
        client.close()
    return url


def _move_aside(target: Path, stamp: str) -> str | None:
    moved = None
    for suffix in ("", "-wal", "-shm", "-journal"):
        current = target.with_name(target.name + suffix)
        if current.exists():
            aside = target.with_name(f"{target.name}.pre-restore-{stamp}{suffix}")
            os.replace(current, aside)
            if suffix == "":
                moved = str(aside)
    return moved


def restore_backup(
    settings: Settings, path: str | Path, force: bool = False, *, skip_redis: bool = False
) -> BackupManifest:
    """Put the backup at ``path`` in place of ``settings.database.path`` (and its Redis keys).

    Every check runs before anything changes; a refusal raises :class:`BackupError`. The
    returned manifest's ``restore`` says where the replaced database went and what else
    happened.
    """
    manifest = read_manifest(path)
    target = Path(settings.database.path).expanduser().absolute()
    outcome = RestoreOutcome(target=str(target))
    manifest.restore = outcome
    if not force:
        listener = _frontend_listener(settings)
        if listener:
            raise BackupError(
                f"{listener}: stop the service before restoring (restore replaces its "
                f"database), or pass --force if that is not the service using {target}"
            )
    redis_url = _redis_plan(manifest, settings, skip_redis, outcome)
    temp = target.with_name(f".{target.name}.restore-{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _prepare_database(manifest, temp, outcome)
        _check_not_in_use(target)
        if redis_url:
            _restore_redis(manifest, redis_url, outcome, int(time.time() * 1000))
        with temp.open("rb") as f:
            os.fsync(f.fileno())
        outcome.previous_moved_to = _move_aside(
            target, datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        )
        os.replace(temp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise BackupError(f"cannot restore to {target}: {exc}") from exc
    finally:
        temp.unlink(missing_ok=True)
    return manifest

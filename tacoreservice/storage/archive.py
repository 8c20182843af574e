"""One ``.tar.gz`` holding a whole backup, as the ops guide describes it: ``tacore backup
--archive FILE.tar.gz`` and ``tacore restore FILE.tar.gz``.

Inside::

    archive.json              what is inside: sha256 and size of every other member
    backup/                   the backup directory of backup.py (manifest, database, redis.jsonl)
    dump.rdb                  with Redis: our keys as a Redis RDB file (storage/rdb.py), which
                              a redis-server loads at start (copy it into its ``dir``)
    config/                   config.yaml, logging.yaml and trading_config.yaml as in use

The archive is built in a temporary folder and written beside its target under a hidden name,
then renamed, so the target never holds half an archive. Restore checks every member against
``archive.json`` and extracts with tarfile's ``data`` filter (no absolute paths, no ``..``, no
links out of the folder, no device files) before the directory restore of backup.py runs with
all of its own checks; the config files are copied back only when asked (``config_dir``), and
a file they replace is kept beside it as ``NAME.pre-restore-STAMP``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tacoreservice.config import Settings, default_config_path, default_trading_config_path
from tacoreservice.storage.backup import (
    REDIS_FILE,
    BackupError,
    BackupManifest,
    create_backup,
    restore_backup,
)
from tacoreservice.storage.rdb import write_rdb

__all__ = ["ArchiveResult", "config_files", "create_archive", "restore_archive"]

ARCHIVE_MANIFEST = "archive.json"
ARCHIVE_FORMAT = 1
BACKUP_DIR = "backup"
RDB_FILE = "dump.rdb"
CONFIG_DIR = "config"


@dataclass
class ArchiveResult:
    path: str
    backup: BackupManifest
    members: dict[str, dict[str, Any]]
    rdb_keys: int | None = None
    config_restored: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_files(settings: Settings) -> dict[str, Path]:
    """The configuration files the service reads, by name, those that exist."""
    main = default_config_path()
    found: dict[str, Path] = {}
    if main is not None and main.is_file():
        found["config.yaml"] = main
    trading = default_trading_config_path(main)
    if trading is not None and trading.is_file():
        found["trading_config.yaml"] = trading
    logging_file = settings.logging.config_file or "config/logging.yaml"
    if Path(logging_file).is_file():
        found["logging.yaml"] = Path(logging_file)
    return found


def _redis_db(url: str | None) -> int:
    path = urlparse(url or "").path.strip("/")
    return int(path) if path.isdigit() else 0


def _write_rdb(jsonl: Path, dest: Path, db: int) -> int:
    rows = []
    with jsonl.open(encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            rows.append(
                (
                    base64.b64decode(item["key"]),
                    base64.b64decode(item["dump"]),
                    int(item["pttl_ms"]),
                )
            )
    return write_rdb(dest, rows, int(time.time() * 1000), db)


def create_archive(
    settings: Settings, path: str | Path, *, skip_redis: bool = False
) -> ArchiveResult:
    """Back up the database, our Redis keys (also as dump.rdb) and the config into ``path``."""
    dest = Path(path).expanduser().absolute()
    if not dest.name.endswith((".tar.gz", ".tgz")):
        raise BackupError(f"{dest.name}: an archive's name ends with .tar.gz (or .tgz)")
    if dest.exists():
        raise BackupError(f"{dest} already exists; archives are never overwritten")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tacore-archive-", dir=dest.parent) as tmp:
        work = Path(tmp)
        backup = create_backup(settings, work / BACKUP_DIR, skip_redis=skip_redis)
        rdb_keys = None
        if backup.redis:
            rdb_keys = _write_rdb(
                work / BACKUP_DIR / REDIS_FILE, work / RDB_FILE, _redis_db(settings.cache.redis_url)
            )
        (work / CONFIG_DIR).mkdir()
        for name, source in config_files(settings).items():
            shutil.copyfile(source, work / CONFIG_DIR / name)
        members = {
            p.relative_to(work).as_posix(): {"sha256": _sha256(p), "bytes": p.stat().st_size}
            for p in sorted(work.rglob("*"))
            if p.is_file()
        }
        meta = {
            "format_version": ARCHIVE_FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rdb_keys": rdb_keys,
            "members": members,
        }
        (work / ARCHIVE_MANIFEST).write_text(json.dumps(meta, indent=2) + "\n")
        partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
        try:
            with tarfile.open(partial, "w:gz") as tar:
                tar.add(work / ARCHIVE_MANIFEST, ARCHIVE_MANIFEST)
                for name in members:
                    tar.add(work / name, name)
            os.replace(partial, dest)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise BackupError(f"cannot write the archive {dest}: {exc}") from exc
    backup.path = f"{dest}:{BACKUP_DIR}/"
    return ArchiveResult(str(dest), backup, members, rdb_keys)


def _extract(archive: Path, into: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{archive} is not a readable .tar.gz archive: {exc}") from exc
    meta_path = into / ARCHIVE_MANIFEST
    if not meta_path.is_file():
        raise BackupError(f"{archive} is not a TACoreService archive: no {ARCHIVE_MANIFEST}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        members = dict(meta["members"])
        fmt = meta["format_version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{archive}: {ARCHIVE_MANIFEST} is unreadable ({exc})") from exc
    if fmt != ARCHIVE_FORMAT:
        raise BackupError(f"{archive} has archive format {fmt!r}; this release reads 1 only")
    for name, info in members.items():
        file = into / name
        if not file.is_file() or _sha256(file) != info.get("sha256"):
            raise BackupError(f"{archive} is corrupt: {name} is missing or fails its sha256")
    return meta


def restore_archive(
    settings: Settings,
    path: str | Path,
    force: bool = False,
    *,
    skip_redis: bool = False,
    config_dir: str | Path | None = None,
) -> ArchiveResult:
    """Restore the database and Redis keys of an archive (and its config into ``config_dir``)."""
    archive = Path(path).expanduser().absolute()
    if not archive.is_file():
        raise BackupError(f"no archive at {archive}")
    with tempfile.TemporaryDirectory(prefix=".tacore-restore-") as tmp:
        work = Path(tmp)
        meta = _extract(archive, work)
        manifest = restore_backup(settings, work / BACKUP_DIR, force, skip_redis=skip_redis)
        restored: list[str] = []
        if config_dir is not None:
            target = Path(config_dir).expanduser()
            target.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            for source in sorted((work / CONFIG_DIR).glob("*")):
                dest = target / source.name
                if dest.exists():
                    os.replace(dest, dest.with_name(f"{dest.name}.pre-restore-{stamp}"))
                shutil.copyfile(source, dest)
                restored.append(str(dest))
    manifest.path = f"{archive}:{BACKUP_DIR}/"
    return ArchiveResult(str(archive), manifest, meta["members"], meta.get("rdb_keys"), restored)

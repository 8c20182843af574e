"""The operator's verbs of ``tacore``: backup, restore (directory or .tar.gz) and watchdog.

Imported by :mod:`tacoreservice.cli`; the commands register on import on the shared ``app``
(:mod:`tacoreservice.cli_common`).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tacoreservice.cli_common import (
    ConfigOpt,
    EndpointOpt,
    _endpoint,
    _settings,
    app,
    console,
    err_console,
)

SkipRedisOpt = Annotated[
    bool, typer.Option("--skip-redis", help="Leave Redis out (it holds only caches).")
]


def _is_archive(path: str) -> bool:
    return path.endswith((".tar.gz", ".tgz"))


def _backup_table(title: str, manifest: Any) -> Table:
    table = Table(title=title)
    table.add_column("part")
    table.add_column("content")
    for name, meta in manifest.files.items():
        table.add_row(name, f"{meta['bytes']:,} bytes, sha256 {meta['sha256'][:16]}...")
    table.add_row("schema version", str(manifest.schema_version))
    for name, rows in manifest.tables.items():
        table.add_row(f"table {name}", f"{rows:,} rows")
    if manifest.redis:
        table.add_row("redis keys", f"{manifest.redis_keys:,} ({manifest.redis['key_prefix']}*)")
    return table


@app.command()
def backup(
    path: Annotated[
        str,
        typer.Argument(
            help="New directory to write the backup into, or FILE.tar.gz for one archive "
            "that adds a Redis dump.rdb and the config files."
        ),
    ],
    skip_redis: SkipRedisOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Back up the database (online, the service may run) and our Redis keys; exit 2 if refused."""
    from tacoreservice.storage.archive import create_archive
    from tacoreservice.storage.backup import BackupError, create_backup

    settings = _settings(config)
    try:
        if _is_archive(path):
            result = create_archive(settings, path, skip_redis=skip_redis)
            manifest = result.backup
        else:
            manifest = create_backup(settings, path, skip_redis=skip_redis)
    except BackupError as exc:
        err_console.print(f"[red]backup refused:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(_backup_table(f"backup written to {manifest.path}", manifest))
    if _is_archive(path):
        extra = [m for m in result.members if not m.startswith("backup/")]
        console.print(f"also in the archive: {', '.join(extra) or 'nothing'}")
        if result.rdb_keys is not None:
            console.print(f"dump.rdb: {result.rdb_keys} keys, loadable by redis-server")


@app.command()
def restore(
    path: Annotated[
        str, typer.Argument(help="A directory or .tar.gz archive written by `tacore backup`.")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Restore although something answers on the endpoint.")
    ] = False,
    skip_redis: SkipRedisOpt = False,
    config_dir: Annotated[
        str | None,
        typer.Option(
            "--config-dir",
            help="Archive only: also put its config files here (replaced ones are kept).",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Restore a backup over the configured database (service stopped); exit 2 if refused."""
    from tacoreservice.storage.archive import restore_archive
    from tacoreservice.storage.backup import BackupError, restore_backup

    settings = _settings(config)
    restored_config: list[str] = []
    try:
        if _is_archive(path):
            result = restore_archive(
                settings, path, force, skip_redis=skip_redis, config_dir=config_dir
            )
            manifest, restored_config = result.backup, result.config_restored
        else:
            manifest = restore_backup(settings, path, force, skip_redis=skip_redis)
    except BackupError as exc:
        err_console.print(f"[red]restore refused:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    done = manifest.restore
    assert done is not None  # restore_backup always sets it
    console.print(_backup_table(f"restored {manifest.path} to {done.target}", manifest))
    if done.migrated_from is not None:
        console.print(f"schema migrated from version {done.migrated_from}")
    if manifest.redis:
        console.print(f"redis: {done.redis_restored} keys restored, {done.redis_expired} expired")
    for note in done.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    for file in restored_config:
        console.print(f"config restored: {escape(file)}")
    if done.previous_moved_to:
        sys.stdout.write(f"previous database kept as {done.previous_moved_to}\n")


@app.command()
def watchdog(
    restart_cmd: Annotated[
        str,
        typer.Option(
            "--restart-cmd",
            help="Command that restarts the service, e.g. 'docker compose restart tacoreservice'.",
        ),
    ],
    webhook: Annotated[
        str | None,
        typer.Option(
            help="POST a JSON event here on each restart (default TACORE_WATCHDOG_WEBHOOK)."
        ),
    ] = None,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between probes.")] = 15.0,
    failures: Annotated[
        int, typer.Option(min=1, help="Failed probes in a row before a restart.")
    ] = 3,
    grace: Annotated[
        float, typer.Option(min=0.0, help="Seconds a restart gets to come back.")
    ] = 60.0,
    probe_timeout_ms: Annotated[int, typer.Option(min=50)] = 2000,
    max_restarts: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many restarts (default: never).")
    ] = None,
    endpoint: EndpointOpt = None,
) -> None:
    """Restart an unhealthy service (health.check fails or no worker alive) and call a webhook."""
    import signal

    from tacoreservice.watchdog import Watchdog, WatchdogOptions

    hook = webhook or os.environ.get("TACORE_WATCHDOG_WEBHOOK") or None
    if hook and not hook.startswith(("http://", "https://")):
        err_console.print(f"[red]--webhook must be an http(s) URL, got {escape(hook)!r}[/]")
        raise typer.Exit(2)
    options = WatchdogOptions(
        endpoints=_endpoint(endpoint),
        restart_command=restart_cmd,
        webhook=hook,
        interval_s=interval,
        failures=failures,
        grace_s=grace,
        probe_timeout_ms=probe_timeout_ms,
        max_restarts=max_restarts,
    )
    keys = {
        "server_key": os.environ.get("TACORE_CURVE_SERVER_KEY") or None,
        "client_key": os.environ.get("TACORE_CURVE_CLIENT_KEY") or None,
    }
    dog = Watchdog(options, keys, say=lambda text: console.print(escape(text), soft_wrap=True))
    signal.signal(signal.SIGTERM, lambda *_: dog.stop())
    signal.signal(signal.SIGINT, lambda *_: dog.stop())
    console.print(f"watching {', '.join(options.endpoints)} every {interval:g} s")
    raise typer.Exit(dog.run())

"""The service's SQLite databases: connection settings and versioned schemas.

There are two files. The ledger (``database.path``) holds orders, fills, positions, the paper
account and jobs; the request log (``request_log.path``, by default beside the ledger as
``NAME-requests.db``) holds ``request_logs``. Apart, a flood of logged requests can only fill
its own file, and the log's writer can give pages back to the disk when it runs low.

Every part that stores something opens its own connection with :func:`open_database` or
:func:`open_request_log_database`; a connection is used by the thread that opened it, so no
``check_same_thread=False`` sharing. Several processes (broker, workers) use the same files,
which is why they run in WAL mode (readers never block the writer) with a busy timeout.

Each schema is a list of forward-only migrations, tracked in ``PRAGMA user_version``. To change
one, append a ``(next_version, SQL)`` line to :data:`MIGRATIONS` (the ledger) or
:data:`REQUEST_LOG_MIGRATIONS`; never edit a step that has shipped, because existing files
have already applied it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from tacoreservice.config import is_in_memory

__all__ = [
    "MIGRATIONS",
    "REQUEST_LOG_MIGRATIONS",
    "SCHEMA_VERSION",
    "REQUEST_LOG_SCHEMA_VERSION",
    "BUSY_TIMEOUT_MS",
    "SchemaVersionError",
    "MigrationError",
    "is_in_memory",
    "open_database",
    "open_request_log_database",
    "migrate",
    "schema_version",
]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes of WAL kept on disk after a checkpoint
REQUEST_LOG_PAGE_SIZE = 16 * 1024

_REQUEST_LOGS_V1 = """
CREATE TABLE IF NOT EXISTS request_logs (
    id                 INTEGER PRIMARY KEY,
    request_id         TEXT,
    method             TEXT,
    worker_id          TEXT,
    request_data       TEXT,
    response_data      TEXT,
    processing_time_ms REAL,
    status             TEXT,
    created_at         TEXT,
    error_code         TEXT,
    client_id          TEXT,
    queue_wait_ms      REAL
);
CREATE INDEX IF NOT EXISTS idx_request_logs_created_at ON request_logs(created_at);
CREATE INDEX IF NOT EXISTS idx_request_logs_request_id ON request_logs(request_id);
CREATE INDEX IF NOT EXISTS idx_request_logs_method ON request_logs(method);
CREATE INDEX IF NOT EXISTS idx_request_logs_status ON request_logs(status);
"""

# (version, SQL) steps, versions 1, 2, 3, ... in order. Append only.
_JOBS_V2 = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id            TEXT PRIMARY KEY,
    method            TEXT NOT NULL,
    params            TEXT NOT NULL,
    state             TEXT NOT NULL,
    stage             TEXT,
    percent           REAL NOT NULL DEFAULT 0,
    progress          TEXT,
    result            TEXT,
    error             TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    worker_id         TEXT,
    request_id        TEXT,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    updated_at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS idx_jobs_created_at ON jobs(created_at);
"""

# The paper broker's ledger (tacoreservice/trading/ledger.py). One account row; orders are
# unique by request_id and by client_order_id (both nullable), which is what makes a retried or
# re-dispatched execute.order find the order its first run committed.
_TRADING_V3 = """
CREATE TABLE IF NOT EXISTS paper_account (
    account_id    TEXT PRIMARY KEY,
    initial_cash  REAL NOT NULL,
    cash          REAL NOT NULL,
    clock         TEXT NOT NULL,
    peak_equity   REAL NOT NULL,
    realised_pnl  REAL NOT NULL DEFAULT 0,
    commissions   REAL NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id         TEXT NOT NULL UNIQUE,
    request_id       TEXT UNIQUE,
    client_order_id  TEXT UNIQUE,
    fingerprint      TEXT NOT NULL,
    symbol           TEXT NOT NULL,
    action           TEXT NOT NULL,
    order_type       TEXT NOT NULL,
    quantity         REAL NOT NULL,
    filled_quantity  REAL NOT NULL DEFAULT 0,
    price            REAL,
    stop_price       REAL,
    time_in_force    TEXT NOT NULL,
    status           TEXT NOT NULL,
    stop_triggered   INTEGER NOT NULL DEFAULT 0,
    risk             TEXT,
    reasons          TEXT,
    as_of            TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_orders_status ON orders(status);
CREATE INDEX IF NOT EXISTS idx_orders_symbol ON orders(symbol);
CREATE TABLE IF NOT EXISTS fills (
    fill_id          TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL REFERENCES orders(order_id),
    symbol           TEXT NOT NULL,
    action           TEXT NOT NULL,
    quantity         REAL NOT NULL,
    price            REAL NOT NULL,
    reference_price  REAL NOT NULL,
    commission       REAL NOT NULL,
    slippage         REAL NOT NULL,
    realised_pnl     REAL NOT NULL,
    as_of            TEXT NOT NULL,
    price_bar        TEXT NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_fills_order_id ON fills(order_id);
CREATE TABLE IF NOT EXISTS positions (
    symbol        TEXT PRIMARY KEY,
    quantity      REAL NOT NULL,
    avg_cost      REAL NOT NULL,
    realised_pnl  REAL NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL
);
"""

# request_logs as the design documents' DDL has it: request_id VARCHAR(100) PRIMARY KEY,
# method NOT NULL, processing_time_ms INTEGER, status DEFAULT 'pending', created_at TIMESTAMP
# DEFAULT CURRENT_TIMESTAMP, then our columns. A request_id is one row: a retry that ran again
# (its cached reply had expired) updates it and counts in `attempts` (see request_log.py).
# SQLite does not enforce VARCHAR lengths; the protocol allows request ids of 128 characters,
# and INTEGER affinity keeps a fractional processing time as REAL (sub-millisecond figures).
# Version-3 rows move over in id order: an empty or NULL request_id becomes 'legacy-<id>',
# and rows sharing a request_id merge into one with their count in `attempts`.
_REQUEST_LOGS_COLUMNS = """(
    request_id         VARCHAR(100) PRIMARY KEY,
    method             VARCHAR(50) NOT NULL,
    worker_id          VARCHAR(50),
    request_data       TEXT,
    response_data      TEXT,
    processing_time_ms INTEGER,
    status             VARCHAR(20) DEFAULT 'pending',
    created_at         TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    error_code         TEXT,
    client_id          TEXT,
    queue_wait_ms      REAL,
    attempts           INTEGER NOT NULL DEFAULT 1,
    updated_at         TEXT
)"""
_REQUEST_LOGS_INDEXES = """
CREATE INDEX IF NOT EXISTS idx_request_logs_created_at ON request_logs(created_at);
CREATE INDEX IF NOT EXISTS idx_request_logs_method ON request_logs(method);
CREATE INDEX IF NOT EXISTS idx_request_logs_status ON request_logs(status);
"""
_REQUEST_LOGS_DDL_V4 = f"""
CREATE TABLE request_logs_v4 {_REQUEST_LOGS_COLUMNS};
INSERT INTO request_logs_v4 (
    request_id, method, worker_id, request_data, response_data, processing_time_ms, status,
    created_at, error_code, client_id, queue_wait_ms, attempts, updated_at
)
SELECT
    CASE WHEN request_id IS NULL OR request_id = '' THEN 'legacy-' || id ELSE request_id END,
    COALESCE(method, ''), worker_id, request_data, response_data, processing_time_ms,
    COALESCE(status, 'pending'), COALESCE(created_at, CURRENT_TIMESTAMP), error_code,
    client_id, queue_wait_ms, 1, created_at
FROM request_logs WHERE true ORDER BY id
ON CONFLICT (request_id) DO UPDATE SET
    attempts = request_logs_v4.attempts + 1,
    updated_at = excluded.created_at,
    worker_id = excluded.worker_id,
    response_data = excluded.response_data,
    processing_time_ms = excluded.processing_time_ms,
    status = excluded.status,
    error_code = excluded.error_code,
    queue_wait_ms = excluded.queue_wait_ms;
DROP TABLE request_logs;
ALTER TABLE request_logs_v4 RENAME TO request_logs;
{_REQUEST_LOGS_INDEXES}
"""

# The request log moves to a file of its own (REQUEST_LOG_MIGRATIONS below), so that a flood
# of logged requests cannot fill the disk under an order. Its rows stay here, renamed, until
# the log's writer has copied them over and dropped the table (adopt_legacy_rows).
_LEDGER_ALONE_V5 = """
ALTER TABLE request_logs RENAME TO legacy_request_logs;
DROP INDEX IF EXISTS idx_request_logs_created_at;
DROP INDEX IF EXISTS idx_request_logs_method;
DROP INDEX IF EXISTS idx_request_logs_status;
"""

MIGRATIONS: list[tuple[int, str]] = [
    (1, _REQUEST_LOGS_V1),
    (2, _JOBS_V2),
    (3, _TRADING_V3),
    (4, _REQUEST_LOGS_DDL_V4),
    (5, _LEDGER_ALONE_V5),
]

# The request log's own file (request_log.path): its versions count from 1 apart from the
# ledger's. Version 1 is the table as ledger version 4 left it. Append only.
REQUEST_LOG_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        f"CREATE TABLE IF NOT EXISTS request_logs {_REQUEST_LOGS_COLUMNS};\n"
        f"{_REQUEST_LOGS_INDEXES}",
    ),
]


def _check_migrations(migrations: Sequence[tuple[int, str]]) -> int:
    for expected, (version, _sql) in enumerate(migrations, start=1):
        if version != expected:
            raise ValueError(
                f"migration versions must be 1, 2, 3, ... in order; found {version} at "
                f"position {expected}"
            )
    return len(migrations)


SCHEMA_VERSION = _check_migrations(MIGRATIONS)
REQUEST_LOG_SCHEMA_VERSION = _check_migrations(REQUEST_LOG_MIGRATIONS)


class SchemaVersionError(RuntimeError):
    """The database file was written by a newer TACoreService than this one."""


class MigrationError(RuntimeError):
    """A migration step failed; the file is left at the last version that fully applied."""


def _split_statements(sql: str) -> list[str]:
    # executescript() would commit our BEGIN IMMEDIATE transaction first (Python 3.11), so
    # statements run one by one. complete_statement() keeps semicolons inside string
    # literals and trigger bodies where they belong.
    statements: list[str] = []
    current = ""
    for piece in sql.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                statements.append(current.strip())
            current = ""
    if current.strip(" \t\r\n;"):
        statements.append(current.strip().rstrip(";"))
    return statements


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(version: int, known: int, where: str) -> None:
    if version > known:
        raise SchemaVersionError(
            f"database {where} has schema version {version}, but this TACoreService only knows "
            f"versions up to {known}: it was written by a newer release, or it is the other "
            f"of the service's two files (the ledger, DATABASE_PATH; the request log, "
            f"TACORE_REQUEST_LOG_PATH). Upgrade TACoreService (pip install -U tacoreservice) or "
            f"point that setting at another file."
        )


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[tuple[int, str]] = MIGRATIONS,
    *,
    where: str = "",
) -> int:
    """Apply the pending steps of ``migrations``; return the resulting schema version.

    Safe when several processes open a new file at once: ``BEGIN IMMEDIATE`` takes the write
    lock before the version is read, so exactly one process applies each step and the others
    see the new version once they get the lock.
    """
    known = _check_migrations(migrations)
    current = schema_version(conn)
    _refuse_newer(current, known, where)
    if current == known:
        return current

    saved_isolation = conn.isolation_level
    conn.isolation_level = None  # explicit transaction control below
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)
            _refuse_newer(current, known, where)
            for version, sql in migrations[current:]:
                try:
                    for statement in _split_statements(sql):
                        conn.execute(statement)
                except sqlite3.Error as exc:
                    raise MigrationError(
                        f"migration {version} of database {where} failed: {exc}"
                    ) from exc
                # PRAGMA cannot take a bound parameter; version is an int we control.
                conn.execute(f"PRAGMA user_version = {int(version)}")
                log.info("database %s migrated to schema version %d", where, version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.isolation_level = saved_isolation
    return schema_version(conn)


def _set_wal(conn: sqlite3.Connection, where: str) -> None:
    # Switching to WAL needs a moment of exclusive access; when another process is doing the
    # same on a new file SQLite may answer SQLITE_BUSY without calling the busy handler.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000.0
    delay = 0.005
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    if mode not in ("wal", "memory"):
        log.warning("database %s: could not switch to WAL journal mode (got %s)", where, mode)


def open_database(
    path: str | Path,
    *,
    migrations: Sequence[tuple[int, str]] = MIGRATIONS,
    reclaimable: bool = False,
    page_size: int | None = None,
) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` with the schema up to date.

    ``reclaimable``: a new file is made with incremental auto-vacuum, so that pages freed by
    deleted rows can be given back to the disk (``PRAGMA incremental_vacuum``).
    ``page_size``: the page size of a new file (an existing file keeps its own).

    Raises :class:`SchemaVersionError` when the file comes from a newer release, and
    :class:`MigrationError` when a step fails. The connection belongs to the calling thread.
    """
    where = str(path)
    if not is_in_memory(path):
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        where = str(Path(path).expanduser())
    conn = sqlite3.connect(where, timeout=BUSY_TIMEOUT_MS / 1000.0)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Refuse a newer file before touching it, not even its journal mode.
        _refuse_newer(schema_version(conn), _check_migrations(migrations), where)
        if schema_version(conn) == 0:
            # Both only take effect before the first table is made, so: on a new file.
            if page_size is not None:
                conn.execute(f"PRAGMA page_size = {int(page_size)}")
            if reclaimable:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _set_wal(conn, where)
        # NORMAL in WAL mode: a power cut may lose the last commits but never corrupts.
        conn.execute("PRAGMA synchronous = NORMAL")
        # The WAL is reused after each checkpoint but never shrinks by itself: one burst of
        # writes would keep its size on the disk for good.
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, migrations, where=where)
    except BaseException:
        conn.close()
        raise
    return conn


def open_request_log_database(path: str | Path) -> sqlite3.Connection:
    """Open the request log's own file (``Settings.request_log_path``), schema up to date.

    A new file gets 16 KiB pages: a row is about a request and its reply (a KiB or two), and
    with four times the rows per page a batch writes a third less per row to the WAL and the
    file (BENCHMARKS.md, "Routing core").
    """
    conn = open_database(
        path, migrations=REQUEST_LOG_MIGRATIONS, reclaimable=True, page_size=REQUEST_LOG_PAGE_SIZE
    )
    # Debian's SQLite zeroes every freed page by default (SECURE_DELETE), so deleting rows to
    # make room on a full disk would first need as much room again in the WAL. FAST zeroes
    # only what costs no extra write; the freed pages then leave the file (incremental_vacuum).
    conn.execute("PRAGMA secure_delete = FAST")
    return conn

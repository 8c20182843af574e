"""SQLite storage: the versioned database and the batched request log."""

from tacoreservice.storage.database import (
    MIGRATIONS,
    SCHEMA_VERSION,
    MigrationError,
    SchemaVersionError,
    migrate,
    open_database,
    schema_version,
)
from tacoreservice.storage.request_log import (
    RequestLogEntry,
    RequestLogWriter,
    count_request_logs,
    purge_request_logs,
    query_request_logs,
    utc_now_iso,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "MigrationError",
    "SchemaVersionError",
    "migrate",
    "open_database",
    "schema_version",
    "RequestLogEntry",
    "RequestLogWriter",
    "count_request_logs",
    "purge_request_logs",
    "query_request_logs",
    "utc_now_iso",
]

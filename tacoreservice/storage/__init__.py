"""SQLite storage: the versioned ledger database, and the batched request log in its own file."""

from tacoreservice.storage.database import (
    MIGRATIONS,
    REQUEST_LOG_MIGRATIONS,
    REQUEST_LOG_SCHEMA_VERSION,
    SCHEMA_VERSION,
    MigrationError,
    SchemaVersionError,
    migrate,
    open_database,
    open_request_log_database,
    schema_version,
)
from tacoreservice.storage.request_log import (
    RequestLogEntry,
    RequestLogWriter,
    purge_request_logs,
    utc_now_iso,
)
from tacoreservice.storage.request_log_queries import count_request_logs, query_request_logs

__all__ = [
    "MIGRATIONS",
    "REQUEST_LOG_MIGRATIONS",
    "REQUEST_LOG_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "MigrationError",
    "SchemaVersionError",
    "migrate",
    "open_database",
    "open_request_log_database",
    "schema_version",
    "RequestLogEntry",
    "RequestLogWriter",
    "count_request_logs",
    "purge_request_logs",
    "query_request_logs",
    "utc_now_iso",
]

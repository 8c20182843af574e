"""Stable error codes of the client protocol and the exception that carries them.

Codes are part of the wire contract (DESIGN.md): clients branch on them, so a code is never
renamed or reused for another meaning. Messages are for people and may improve over time.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    PARSE_ERROR = "PARSE_ERROR"
    INVALID_REQUEST = "INVALID_REQUEST"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
    INVALID_PARAMS = "INVALID_PARAMS"
    OVERLOADED = "OVERLOADED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    TIME_LIMIT_EXCEEDED = "TIME_LIMIT_EXCEEDED"
    WORKER_LOST = "WORKER_LOST"
    UNAUTHORIZED = "UNAUTHORIZED"
    RATE_LIMITED = "RATE_LIMITED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    DATA_UNAVAILABLE = "DATA_UNAVAILABLE"
    CANCELLED = "CANCELLED"
    NOT_FOUND = "NOT_FOUND"
    ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    INTERNAL = "INTERNAL"


# Codes that mean the caller's request was wrong, not allowed, or stopped by the caller: the
# service did its job. Monitoring counts them apart from the service's own failures, so a
# worker that answers INVALID_PARAMS to a bad request does not look sick.
CLIENT_ERROR_CODES = frozenset(
    {
        ErrorCode.PARSE_ERROR,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.METHOD_NOT_FOUND,
        ErrorCode.INVALID_PARAMS,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.DATA_UNAVAILABLE,
        ErrorCode.CANCELLED,
        ErrorCode.NOT_FOUND,
    }
)


def is_client_error(code: str | None) -> bool:
    """True for a code the caller caused (see :data:`CLIENT_ERROR_CODES`); an unknown or
    missing code counts as the service's failure."""
    return code in CLIENT_ERROR_CODES


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` naming the closest choices to a mistyped word, or ``""``."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


class ServiceError(Exception):
    """An error that becomes a protocol error reply: a stable code and an actionable message."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class InvalidParams(ServiceError):
    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(ErrorCode.INVALID_PARAMS, message, details)


class DataUnavailable(ServiceError):
    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(ErrorCode.DATA_UNAVAILABLE, message, details)

"""Stable error codes of the client protocol and the exception that carries them.

Codes are part of the wire contract (DESIGN.md): clients branch on them, so a code is never
renamed or reused for another meaning. Messages are for people and may improve over time.
"""

from __future__ import annotations

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
    WORKER_LOST = "WORKER_LOST"
    UNAUTHORIZED = "UNAUTHORIZED"
    RATE_LIMITED = "RATE_LIMITED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    DATA_UNAVAILABLE = "DATA_UNAVAILABLE"
    CANCELLED = "CANCELLED"
    NOT_FOUND = "NOT_FOUND"
    ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    INTERNAL = "INTERNAL"


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

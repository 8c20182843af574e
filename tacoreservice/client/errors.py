"""Exceptions raised by the Python clients."""

from __future__ import annotations

from typing import Any

__all__ = ["TACoreError", "TACoreTimeout"]


class TACoreError(Exception):
    """The service answered with an error; ``code`` is the protocol's stable error code."""

    def __init__(self, code: str, message: str, reply: dict[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = reply


class TACoreTimeout(TACoreError):
    """No reply after every retry (and every endpoint) was tried."""

    def __init__(self, message: str):
        super().__init__("TIMEOUT", message)

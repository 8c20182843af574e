"""A logging filter that masks known secret values in every record a handler writes.

It sits on the handlers, not the loggers: a logger's filter only sees records logged to that
very logger, while a handler's sees everything that reaches it, including the records of
third-party libraries (httpx, httpcore and openai log URLs and headers at DEBUG).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tacoreservice.security.redaction import mask_values

__all__ = ["SecretMaskingFilter", "install_secret_masking"]

_TRACEBACKS = logging.Formatter()  # formats exc_info the way every stock formatter does


class SecretMaskingFilter(logging.Filter):
    """Replaces each secret value in a record's final message, traceback and stack with ``***``.

    The record is changed in place (message rendered, ``args`` cleared), so every handler and
    formatter after this one sees the masked text; a record already masked with the same
    secrets is not scanned again by the next handler.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        if not secrets or getattr(record, "_masked_with", None) is secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: let the handler's formatter report it as usual
            return True
        masked = mask_values(message, secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatters cache the traceback text here, so masking it once covers them all.
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_values(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = mask_values(record.stack_info, secrets)
        setattr(record, "_masked_with", secrets)  # noqa: B010 - LogRecord has no such slot
        return True


def _all_handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    seen: dict[int, logging.Handler] = {}
    for lg in loggers:
        for handler in lg.handlers:
            seen.setdefault(id(handler), handler)
    if logging.lastResort is not None:  # used when nothing is configured (e.g. the CLI)
        seen.setdefault(id(logging.lastResort), logging.lastResort)
    return list(seen.values())


def install_secret_masking(secrets: Iterable[str]) -> SecretMaskingFilter:
    """Put one :class:`SecretMaskingFilter` with ``secrets`` on every handler configured now
    (root, every named logger, and logging's last-resort handler); a handler that already has
    one gets the new secrets. Call it after ``logging.config.dictConfig``."""
    masking = SecretMaskingFilter(secrets)
    for handler in _all_handlers():
        existing = [f for f in handler.filters if isinstance(f, SecretMaskingFilter)]
        for old in existing:
            handler.removeFilter(old)
        handler.addFilter(masking)
    return masking

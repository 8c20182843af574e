"""Logging: console plus rotated files under logs/ (tacoreservice.log, worker.log, and the
broker's performance.log with one line per request).

Every local worker writes the same worker.log, so rotation must be safe across processes:
:class:`SharedRotatingFileHandler` takes an flock around each write and reopens the file when
another process has rotated it underneath.

Every handler of every process (broker, workers, the CLI's serve/broker/worker) gets a
:class:`~tacoreservice.security.log_masking.SecretMaskingFilter`: the values of the configured
credentials never reach a log file or the console, whichever library tried to print them.
"""

from __future__ import annotations

import fcntl
import logging
import logging.config
import logging.handlers
import os
from pathlib import Path
from typing import Any

import yaml

from tacoreservice.config import Settings
from tacoreservice.security.log_masking import install_secret_masking
from tacoreservice.security.secrets import secret_values

__all__ = ["setup_logging", "SharedRotatingFileHandler"]

_ROLE_FILES = {"service": "tacoreservice.log", "worker": "worker.log"}


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    def __init__(self, filename: str, *args: Any, **kwargs: Any):
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = f"{filename}.lock"
        super().__init__(filename, *args, **kwargs)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with open(self._lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    # Another process may have rotated: write to the current file, not the old one.
                    stream = self.stream
                    if stream is not None:
                        try:
                            rotated = (
                                os.fstat(stream.fileno()).st_ino
                                != os.stat(self.baseFilename).st_ino
                            )
                        except FileNotFoundError:
                            rotated = True
                        if rotated:
                            stream.close()
                            self.stream = None
                    super().emit(record)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except Exception:
            self.handleError(record)


def _default_config(level: str, path: str, log_dir: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"},
            "bare": {"format": "%(message)s"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain"},
            "file": {
                "class": "tacoreservice.logging_setup.SharedRotatingFileHandler",
                "formatter": "plain",
                "filename": path,
                "maxBytes": 10 * 1024 * 1024,
                "backupCount": 5,
            },
            "performance": {
                "class": "logging.handlers.RotatingFileHandler",
                "formatter": "bare",
                "filename": str(log_dir / "performance.log"),
                "maxBytes": 10 * 1024 * 1024,
                "backupCount": 5,
                "delay": True,
            },
        },
        "loggers": {
            "tacoreservice.performance": {
                "level": "INFO",
                "handlers": ["performance"],
                "propagate": False,
            }
        },
        "root": {"level": level, "handlers": ["console", "file"]},
    }


def setup_logging(settings: Settings, role: str = "service") -> None:
    """Configure logging for this process; ``role`` picks the file (service or worker).

    Raises :class:`~tacoreservice.config.ConfigError` when a credential's ``*_FILE`` is refused
    (see :func:`~tacoreservice.security.secrets.read_secret`): better not to start than to run
    without knowing which values to mask.
    """
    # First, so a refused *_FILE stops the process before anything is logged.
    secrets = secret_values(settings)
    log_dir = Path(settings.logging.dir)
    path = str(log_dir / _ROLE_FILES.get(role, f"{role}.log"))
    level = settings.logging.level
    config_file = settings.logging.config_file or (
        "config/logging.yaml" if Path("config/logging.yaml").is_file() else None
    )
    if config_file:
        text = Path(config_file).read_text(encoding="utf-8")
        text = text.replace("{log_file}", path).replace("{log_dir}", str(log_dir))
        config = yaml.safe_load(text)
        config.setdefault("root", {})["level"] = level
    else:
        config = _default_config(level, path, log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.config.dictConfig(config)
    install_secret_masking(secrets)

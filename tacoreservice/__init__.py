"""TACoreService: the central AI engine of an AI-agent trading system.

The public surface is small: the clients, their exceptions, the error codes and the settings.
Everything else (broker, workers, stores) is reached through the entry points.

The names load on first use, so ``tacore`` can say "nothing is listening" before pyzmq and
pydantic are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "AsyncTACoreClient": "tacoreservice.client",
    "TACoreClient": "tacoreservice.client",
    "TACoreError": "tacoreservice.client",
    "TACoreTimeout": "tacoreservice.client",
    "ConfigError": "tacoreservice.config",
    "Settings": "tacoreservice.config",
    "load_settings": "tacoreservice.config",
    "ErrorCode": "tacoreservice.protocol.errors",
}

if TYPE_CHECKING:
    from tacoreservice.client import AsyncTACoreClient, TACoreClient, TACoreError, TACoreTimeout
    from tacoreservice.config import ConfigError, Settings, load_settings
    from tacoreservice.protocol.errors import ErrorCode

__all__ = [
    "AsyncTACoreClient",
    "ConfigError",
    "ErrorCode",
    "Settings",
    "TACoreClient",
    "TACoreError",
    "TACoreTimeout",
    "__version__",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tacoreservice' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

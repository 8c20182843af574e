"""TACoreService: the central AI engine of an AI-agent trading system.

The public surface is small: the clients, their exceptions, the error codes and the settings.
Everything else (broker, workers, stores) is reached through the entry points.
"""

__version__ = "0.1.0"

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

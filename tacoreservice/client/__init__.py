"""Python clients for TACoreService."""

from tacoreservice.client.async_client import AsyncTACoreClient
from tacoreservice.client.errors import TACoreError, TACoreTimeout
from tacoreservice.client.sync_client import DEFAULT_ENDPOINT, TACoreClient

__all__ = ["AsyncTACoreClient", "DEFAULT_ENDPOINT", "TACoreClient", "TACoreError", "TACoreTimeout"]

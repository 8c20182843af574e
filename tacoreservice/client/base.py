"""What the sync and async clients share: endpoints, CURVE keys, the caller's name and the
retry policy, checked once in one constructor.

An explicit empty endpoint list is refused by both (``ValueError``): a client with nowhere to
send would only ever time out. ``endpoints`` omitted means the environment's choice
(:func:`~tacoreservice.client.endpoint.default_endpoints`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypedDict

from tacoreservice.client.endpoint import default_endpoints
from tacoreservice.client.helpers import MethodHelpers, encode_request
from tacoreservice.security.keys import load_curve_keys

__all__ = ["ClientBase", "ClientOptions"]


class ClientOptions(TypedDict, total=False):
    """The keyword arguments every client takes (see :class:`ClientBase`)."""

    timeout_ms: int
    retries: int
    server_key: str | os.PathLike[str] | None
    client_key: str | os.PathLike[str] | None
    client_name: str | None


class ClientBase(MethodHelpers):
    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout_ms: int = 5000,
        retries: int = 3,
        server_key: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        client_name: str | None = None,
    ):
        """``server_key`` / ``client_key``: paths of the broker's ``server.key`` and this
        module's ``NAME.key_secret``, for a broker with CURVE on (both or neither).
        ``client_name``: the name sent with each request when security is off (with CURVE the
        key's name counts), for permissions, rate limits and the request log.
        ``endpoints`` omitted: TACORE_ENDPOINT, else TACORE_SERVICE_URL, else
        ``DEFAULT_ENDPOINT`` (see :mod:`tacoreservice.client.endpoint`)."""
        if endpoints is None:
            endpoints = default_endpoints()
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed, e.g. tcp://127.0.0.1:5555")
        self.curve_keys = load_curve_keys(server_key, client_key)
        self.client_name = client_name
        self.timeout_ms = timeout_ms
        self.retries = retries

    def _encode(
        self,
        method: str,
        params: dict[str, Any] | None,
        request_id: str | None,
        deadline_ms: int | None,
    ) -> tuple[str, bytes]:
        """The request id and frame; retries resend these very bytes."""
        return encode_request(method, params, request_id, deadline_ms, self.client_name)

"""The API's way to the service: ``POST /analyze`` (the blueprint's StrategyRequest), the
dashboard's trading pages (``portfolio.get``, ``portfolio.history``, ``order.list``,
``get.market_data``, ``analyze.stock``) and its one write, ``job.cancel``, sent through the broker
as a client.

No route computes anything in the API's process. It sends ``strategy.signals`` (see
:mod:`tacoreservice.service.methods.strategy_request`) to the broker's own frontend like any
ZeroMQ client, so the request is queued, load-balanced over the workers, rate-limited,
permission-checked, counted in the metrics and written to the request log like every other.

Access: the route sits behind the API token like every data route, and the API refuses to listen
beyond loopback without a token, so a caller from another host always needs it. The broker sees
the caller as client ``http-api`` (CURVE off); with CURVE on, the API connects with the client
key named by ``TACORE_API_CLIENT_KEY`` (a ``NAME.key_secret`` from ``tacore keys generate
--client api``), and without one the route answers 503 saying so.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from pydantic import BaseModel, Field

from tacoreservice.client import TACoreClient, TACoreError, TACoreTimeout
from tacoreservice.config import Settings

__all__ = ["GATEWAY_CLIENT_NAME", "BrokerGateway", "GatewayError", "StrategyRequest"]

GATEWAY_CLIENT_NAME = "http-api"
METHOD = "strategy.signals"

# Error code from the broker -> HTTP status.
_STATUS = {
    "INVALID_PARAMS": 422,
    "INVALID_REQUEST": 422,
    "NOT_FOUND": 404,
    "PAYLOAD_TOO_LARGE": 413,
    "DATA_UNAVAILABLE": 422,
    "UNAUTHORIZED": 403,
    "RATE_LIMITED": 429,
    "OVERLOADED": 503,
    "SHUTTING_DOWN": 503,
    "METHOD_NOT_FOUND": 503,
    "DEADLINE_EXCEEDED": 504,
    "TIME_LIMIT_EXCEEDED": 504,
    "STORAGE_UNAVAILABLE": 503,
    "TIMEOUT": 504,
    "WORKER_LOST": 502,
}


class StrategyRequest(BaseModel):
    """The blueprint's request body; the service checks it in full (``strategy.signals``)."""

    strategy_id: str = Field(..., examples=["trend"])
    parameters: dict[str, Any] = Field(default_factory=dict, examples=[{"symbol": "AAPL"}])
    market_data: list[Any] | dict[str, Any] | None = Field(
        None, description="your own bars, oldest first: [{time, open, high, low, close, volume}]"
    )


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _connectable(endpoint: str) -> str:
    # The broker may bind every interface; the API, in the same process, dials loopback.
    for wildcard in ("tcp://0.0.0.0:", "tcp://*:", "tcp://[::]:"):
        if endpoint.startswith(wildcard):
            return "tcp://127.0.0.1:" + endpoint[len(wildcard) :]
    return endpoint


class BrokerGateway:
    def __init__(self, settings: Settings, timeout_ms: int = 30_000) -> None:
        self.endpoint = _connectable(settings.broker.frontend_endpoint)
        self.timeout_ms = timeout_ms
        self.curve = settings.security.mode == "curve"
        self.server_key = str(settings.security.server_public_key_path)
        self.client_key = os.environ.get("TACORE_API_CLIENT_KEY") or None

    def call(
        self, params: dict[str, Any], method: str = METHOD, timeout_ms: int | None = None
    ) -> dict[str, Any]:
        if self.curve and not self.client_key:
            raise GatewayError(
                503,
                "UNAVAILABLE",
                "CURVE is on and the API has no client key: run `tacore keys generate --client "
                "api` and set TACORE_API_CLIENT_KEY to keys/private/api.key_secret",
            )
        keys: dict[str, Any] = (
            {"server_key": self.server_key, "client_key": self.client_key}
            if self.curve
            else {"client_name": GATEWAY_CLIENT_NAME}
        )
        # One REQ socket per call: FastAPI runs sync routes on a thread pool, and a REQ socket
        # belongs to one thread.
        wait = timeout_ms or self.timeout_ms
        try:
            with TACoreClient(self.endpoint, timeout_ms=wait, retries=0, **keys) as c:
                data = c.call(method, params, request_id=f"http-{uuid.uuid4().hex}")
        except TACoreTimeout:
            raise GatewayError(
                504, "TIMEOUT", f"the broker did not answer within {wait} ms"
            ) from None
        except TACoreError as exc:
            raise GatewayError(_STATUS.get(exc.code, 500), exc.code, exc.message) from None
        return data if isinstance(data, dict) else {"result": data}

"""Typed helpers per method, shared by the sync and async clients.

Each helper builds the params and returns ``self.call(...)``: a value for the sync client,
an awaitable for the async one, so the method list is written once.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from tacoreservice.client.errors import TACoreError

__all__ = ["MethodHelpers", "encode_request", "data_or_raise"]


def encode_request(
    method: str,
    params: dict[str, Any] | None,
    request_id: str | None,
    deadline_ms: int | None,
    client_name: str | None = None,
) -> tuple[str, bytes]:
    """The request frame; the id is kept so retries can resend the very same bytes."""
    rid = request_id or uuid.uuid4().hex
    message: dict[str, Any] = {"request_id": rid, "method": method, "params": params or {}}
    if deadline_ms is not None:
        message["timeout_ms"] = deadline_ms
    if client_name is not None:
        message["client"] = client_name
    return rid, orjson.dumps(message)


def data_or_raise(reply: dict[str, Any]) -> Any:
    if reply.get("status") != "success":
        error = reply.get("error") or {}
        raise TACoreError(
            str(error.get("code", "UNKNOWN")), str(error.get("message", reply)), reply
        )
    return reply.get("data")


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class MethodHelpers:
    def call(self, method: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def health(self, detailed: bool = False) -> Any:
        return self.call("health.check", {"detailed": detailed})

    def get_market_data(
        self,
        symbol: str | None = None,
        *,
        symbols: list[str] | None = None,
        timeframe: str | None = None,
        history: int | None = None,
        as_of: str | None = None,
    ) -> Any:
        return self.call(
            "get.market_data",
            _clean(
                {
                    "symbol": symbol,
                    "symbols": symbols,
                    "timeframe": timeframe,
                    "history": history,
                    "as_of": as_of,
                }
            ),
        )

    def scan_market(self, **params: Any) -> Any:
        return self.call("scan.market", _clean(params))

    def analyze_stock(self, symbol: str, **params: Any) -> Any:
        return self.call("analyze.stock", _clean({"symbol": symbol, **params}))

    def evaluate_risk(self, portfolio: dict[str, Any] | list[Any], **params: Any) -> Any:
        return self.call("evaluate.risk", _clean({"portfolio": portfolio, **params}))

    def execute_order(
        self,
        symbol: str,
        action: str,
        quantity: float,
        *,
        order_type: str | None = None,  # the service's rule: market, or limit when a price is given
        price: float | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> Any:
        body = _clean(
            {
                "symbol": symbol,
                "action": action,
                "quantity": quantity,
                "order_type": order_type,
                "price": price,
                **params,
            }
        )
        return self.call("execute.order", body, request_id=request_id)

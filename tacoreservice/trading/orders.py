"""What an order request may say, checked before any broker sees it.

``execute.order`` params are validated here (pydantic), so every adapter gets a complete,
consistent request: a known action and order type, positive finite numbers, the prices each
order type needs and no price it would silently ignore.

Order type when ``order_type`` is absent: ``price`` alone means a **limit** order at that price
(the DESIGN.md example ``{"symbol": "AAPL", "action": "buy", "quantity": 100, "price": 150}``),
``stop_price`` alone a stop order, both a stop_limit, neither a market order.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import AliasChoices, Field, field_validator, model_validator

from tacoreservice.fields import (
    ClientOrderId,
    DateText,
    ParamsModel,
    Price,
    Quantity,
    Symbol,
)

__all__ = ["ORDER_STATUSES", "ORDER_TYPES", "OrderRequest"]

ORDER_TYPES = ("market", "limit", "stop", "stop_limit")
ORDER_STATUSES = ("open", "filled", "cancelled", "rejected", "expired")


def _lower(value: Any) -> Any:
    return value.strip().lower().replace("-", "_") if isinstance(value, str) else value


class OrderRequest(ParamsModel):
    """``execute.order`` params."""

    # Client generations add keys of their own (timestamp, strategy, ...); they are ignored.
    symbol: Symbol = Field(..., validation_alias=AliasChoices("symbol", "ticker"))
    action: Literal["buy", "sell"] = Field(..., validation_alias=AliasChoices("action", "side"))
    quantity: Quantity = Field(..., validation_alias=AliasChoices("quantity", "qty"))
    order_type: Literal["market", "limit", "stop", "stop_limit"] | None = Field(
        None, validation_alias=AliasChoices("order_type", "type")
    )
    price: Price | None = Field(None, validation_alias=AliasChoices("price", "limit_price"))
    stop_price: Price | None = None
    time_in_force: Literal["day", "gtc"] = "gtc"
    client_order_id: ClientOrderId | None = None
    as_of: DateText | None = None

    @field_validator("action", "order_type", "time_in_force", mode="before")
    @classmethod
    def _case_insensitive(cls, v: Any) -> Any:
        return _lower(v)

    @field_validator("time_in_force", mode="before")
    @classmethod
    def _tif_default(cls, v: Any) -> Any:
        return "gtc" if v is None else v

    @model_validator(mode="after")
    def _prices_fit_the_type(self) -> OrderRequest:
        if self.order_type is None:
            if self.price is not None and self.stop_price is not None:
                self.order_type = "stop_limit"
            elif self.stop_price is not None:
                self.order_type = "stop"
            elif self.price is not None:
                self.order_type = "limit"
            else:
                self.order_type = "market"
        kind = self.order_type
        needs_price = kind in ("limit", "stop_limit")
        needs_stop = kind in ("stop", "stop_limit")
        if needs_price and self.price is None:
            raise ValueError(f"a {kind} order needs 'price' (the limit price)")
        if needs_stop and self.stop_price is None:
            raise ValueError(f"a {kind} order needs 'stop_price'")
        if not needs_price and self.price is not None:
            hint = (
                "a market order fills at the market price; drop 'price', or set order_type "
                "'limit' to trade at that price or better"
                if kind == "market"
                else "a stop order takes only 'stop_price'; with a limit 'price' too, use "
                "order_type 'stop_limit'"
            )
            raise ValueError(f"'price' is not used by a {kind} order: {hint}")
        if not needs_stop and self.stop_price is not None:
            raise ValueError(
                f"'stop_price' is not used by a {kind} order; use order_type 'stop' or 'stop_limit'"
            )
        return self

    @property
    def kind(self) -> str:
        """The order type (always set once validated)."""
        assert self.order_type is not None
        return self.order_type

    def fingerprint(self, symbol: str) -> str:
        """What makes two requests the same order (the canonical symbol, not its spelling)."""
        fields = {
            "symbol": symbol,
            "action": self.action,
            "quantity": self.quantity,
            "order_type": self.kind,
            "price": self.price,
            "stop_price": self.stop_price,
            "time_in_force": self.time_in_force,
            "as_of": self.as_of,
            "client_order_id": self.client_order_id,
        }
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()

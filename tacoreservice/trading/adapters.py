"""Broker adapters: where ``execute.order`` sends an order.

``trading.broker_adapter`` (TACORE_BROKER_ADAPTER) names one:

- ``paper`` (default): :class:`~tacoreservice.trading.paper_broker.PaperBroker`, a simulated
  account in the service's SQLite database, filled against the market data. It also has the
  market clock and ``portfolio.reset``.
- ``ccxt`` (optional extra, ``pip install 'tacoreservice[ccxt]'``): orders to a crypto exchange
  through ccxt. Exchange and keys come from the environment only (``TACORE_CCXT_EXCHANGE``,
  default binance; ``TACORE_CCXT_API_KEY``, ``TACORE_CCXT_SECRET``, ``TACORE_CCXT_PASSWORD``
  for exchanges that want a passphrase; each key also as a ``*_FILE``, see
  :mod:`tacoreservice.security.secrets`); ``TACORE_CCXT_SANDBOX=1`` uses the exchange's test
  network. Exchange errors are passed on with the keys masked. Idempotency is the exchange's:
  the client_order_id (or the request_id) is sent as ccxt's ``clientOrderId``, which exchanges
  refuse to reuse. Exchanges restrict its form (Binance: ``[.A-Z:/a-z0-9_-]{1,36}``), so an id
  outside that form is sent as a digest of itself, the same for every retry (see
  :func:`exchange_client_order_id`). The test-suite drives this adapter through a stand-in
  ccxt module, never against the network.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from typing import Any, Protocol, runtime_checkable

from tacoreservice.config import ConfigError, Settings
from tacoreservice.market_data.provider import MarketDataProvider
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.security.redaction import redact
from tacoreservice.security.secrets import read_secret
from tacoreservice.trading.orders import OrderRequest

__all__ = [
    "ADAPTERS",
    "BrokerAdapter",
    "SimulatedBroker",
    "exchange_client_order_id",
    "load_broker_adapter",
]

ADAPTERS = ("paper", "ccxt")

# The narrowest form the large exchanges accept for a client order id (Binance's; OKX and
# Bybit accept a subset of these characters too, but every id of this form fits them).
_EXCHANGE_ID = re.compile(r"[.A-Za-z0-9:/_-]{1,36}")


def exchange_client_order_id(raw: str) -> str:
    """``raw`` when an exchange accepts it as a client order id, else a stable digest of it.

    The digest is the same for every retry of one order, so the exchange still refuses the
    second copy; ``tc-`` marks it as derived.
    """
    if _EXCHANGE_ID.fullmatch(raw):
        return raw
    return "tc-" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


@runtime_checkable
class BrokerAdapter(Protocol):
    """What the order methods need from a broker."""

    name: str

    def place_order(self, req: OrderRequest, request_id: str | None) -> dict[str, Any]: ...

    def order_status(self, order_id: str | None, client_order_id: str | None) -> dict[str, Any]: ...

    def cancel_order(self, order_id: str | None, client_order_id: str | None) -> dict[str, Any]: ...

    def list_orders(
        self, status: str | None, symbol: str | None, limit: int, offset: int
    ) -> dict[str, Any]: ...

    def portfolio(self, as_of: str | None = None) -> dict[str, Any]: ...


@runtime_checkable
class SimulatedBroker(BrokerAdapter, Protocol):
    """A broker whose market time the service controls (paper): a clock and a reset."""

    def clock(self) -> dict[str, Any]: ...

    def advance_clock(
        self, to: str | None = None, bars: int | None = None, calendar: str = "SPY"
    ) -> dict[str, Any]: ...

    def reset(self, initial_cash: float | None, as_of: str | None) -> dict[str, Any]: ...


def load_broker_adapter(
    name: str, settings: Settings, market_data: MarketDataProvider | None = None
) -> BrokerAdapter:
    """The adapter called ``name``, built for this thread.

    A missing optional package raises ENGINE_UNAVAILABLE naming the extra to install.
    """
    key = (name or "paper").strip().lower()
    if market_data is None:
        from tacoreservice.market_data import load_provider

        market_data = load_provider(settings.market_data)
    if key == "paper":
        from tacoreservice.storage.disk_reserve import DiskReserve
        from tacoreservice.trading.ledger import ledger_for
        from tacoreservice.trading.paper_broker import PaperBroker

        ledger = ledger_for(settings.database.path, DiskReserve.from_settings(settings))
        return PaperBroker(ledger, market_data, settings.trading)
    if key == "ccxt":
        return CcxtBroker(market_data)
    raise ServiceError(
        ErrorCode.ENGINE_UNAVAILABLE,
        f"unknown broker adapter {name!r} (trading.broker_adapter / TACORE_BROKER_ADAPTER); "
        f"valid adapters: {', '.join(ADAPTERS)}",
        {"adapter": name, "valid": list(ADAPTERS)},
    )


class CcxtBroker:
    """Orders to a crypto exchange through ccxt (optional; see the module docstring)."""

    name = "ccxt"

    def __init__(self, market_data: MarketDataProvider):
        try:
            ccxt = importlib.import_module("ccxt")
        except ImportError:
            raise ServiceError(
                ErrorCode.ENGINE_UNAVAILABLE,
                "broker adapter 'ccxt' needs the optional package ccxt, which is not installed; "
                "install it with: pip install 'tacoreservice[ccxt]' (or set "
                "trading.broker_adapter / TACORE_BROKER_ADAPTER to 'paper')",
                {"adapter": "ccxt", "missing_package": "ccxt", "install": "tacoreservice[ccxt]"},
            ) from None
        exchange_id = os.environ.get("TACORE_CCXT_EXCHANGE", "binance")
        exchange_cls = getattr(ccxt, exchange_id, None)
        if exchange_cls is None:
            raise ServiceError(
                ErrorCode.ENGINE_UNAVAILABLE, f"ccxt has no exchange {exchange_id!r}"
            )
        try:
            keys = {
                option: read_secret(var)
                for option, var in (
                    ("apiKey", "TACORE_CCXT_API_KEY"),
                    ("secret", "TACORE_CCXT_SECRET"),
                    ("password", "TACORE_CCXT_PASSWORD"),
                )
            }
        except ConfigError as exc:
            raise ServiceError(ErrorCode.ENGINE_UNAVAILABLE, str(exc)) from None
        # Kept only to mask them in error messages (exchanges echo keys in some errors).
        self._secrets = tuple(v for v in keys.values() if v)
        self.exchange = exchange_cls(
            {
                **{option: value for option, value in keys.items() if value},
                "enableRateLimit": True,
            }
        )
        if os.environ.get("TACORE_CCXT_SANDBOX") == "1":
            self.exchange.set_sandbox_mode(True)
        self.md = market_data

    def _pair(self, symbol: str) -> str:
        info = self.md.resolve(symbol)
        if info.market != "crypto":
            raise ServiceError(
                ErrorCode.INVALID_PARAMS,
                f"the ccxt broker trades crypto pairs such as BTCUSDT, not {info.symbol}",
                {"field": "symbol"},
            )
        return f"{info.symbol[: -len(info.currency)]}/{info.currency}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # network, auth, exchange refusals
            detail = redact(str(exc), *self._secrets)
            raise ServiceError(
                ErrorCode.UPSTREAM_ERROR, f"ccxt {what} failed: {type(exc).__name__}: {detail}"
            ) from None

    def place_order(self, req: OrderRequest, request_id: str | None) -> dict[str, Any]:
        if req.kind not in ("market", "limit"):
            raise ServiceError(
                ErrorCode.INVALID_PARAMS,
                f"the ccxt broker places market and limit orders, not {req.kind}",
                {"field": "order_type"},
            )
        raw_id = req.client_order_id or request_id
        params = {"clientOrderId": exchange_client_order_id(raw_id)} if raw_id else {}
        return dict(
            self._call(
                "create_order",
                self.exchange.create_order,
                self._pair(req.symbol),
                req.kind,
                req.action,
                req.quantity,
                req.price,
                params,
            )
        )

    @staticmethod
    def _by_client_id(order_id: str | None, client_order_id: str | None) -> dict[str, Any]:
        if order_id or not client_order_id:
            return {}
        return {"clientOrderId": exchange_client_order_id(client_order_id)}

    def order_status(self, order_id: str | None, client_order_id: str | None) -> dict[str, Any]:
        params = self._by_client_id(order_id, client_order_id)
        return dict(self._call("fetch_order", self.exchange.fetch_order, order_id, None, params))

    def cancel_order(self, order_id: str | None, client_order_id: str | None) -> dict[str, Any]:
        params = self._by_client_id(order_id, client_order_id)
        return dict(self._call("cancel_order", self.exchange.cancel_order, order_id, None, params))

    def list_orders(
        self, status: str | None, symbol: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        pair = self._pair(symbol) if symbol else None
        fetch = self.exchange.fetch_open_orders if status == "open" else self.exchange.fetch_orders
        orders = list(self._call("fetch_orders", fetch, pair, None, limit + offset))
        page = orders[offset : offset + limit]
        return {"orders": page, "count": len(page), "limit": limit, "offset": offset}

    def portfolio(self, as_of: str | None = None) -> dict[str, Any]:
        if as_of is not None:
            raise ServiceError(
                ErrorCode.INVALID_PARAMS,
                "the ccxt broker reports the live balance only; drop as_of",
                {"field": "as_of"},
            )
        return dict(self._call("fetch_balance", self.exchange.fetch_balance))

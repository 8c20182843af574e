"""Orders and the paper account: broker adapters, the paper broker, its SQLite ledger."""

from tacoreservice.trading.adapters import BrokerAdapter, SimulatedBroker, load_broker_adapter
from tacoreservice.trading.ledger import Ledger, ledger_for
from tacoreservice.trading.orders import ORDER_STATUSES, ORDER_TYPES, OrderRequest
from tacoreservice.trading.paper_broker import PaperBroker

__all__ = [
    "BrokerAdapter",
    "Ledger",
    "ORDER_STATUSES",
    "ORDER_TYPES",
    "OrderRequest",
    "PaperBroker",
    "SimulatedBroker",
    "ledger_for",
    "load_broker_adapter",
]

"""ScanPulse: a market scanner, a trader and a notifier that reach TACoreService only through
its public client (``from tacoreservice import TACoreClient, ...``), plus Redis and ZeroMQ.

    scanner --scan.market--> Redis (scan, stream) --PUB "opportunity"--> trader
    trader --analyze.stock, portfolio.get, evaluate.risk, execute.order--> Redis (each hop)
    trader --PUB "fill"--> notifier --> Redis list of notifications + a line on stdout

Run from the repository root: ``python -m examples.scanpulse run --cycles 1`` against a
running service, or ``tacore demo pipeline`` to start everything and watch what flows.
"""

from examples.scanpulse.config import ScanPulseConfig
from examples.scanpulse.notifier import Notifier
from examples.scanpulse.pipeline import Pipeline
from examples.scanpulse.scanner import Scanner
from examples.scanpulse.store import Store
from examples.scanpulse.trader import Trader

__all__ = ["Notifier", "Pipeline", "ScanPulseConfig", "Scanner", "Store", "Trader"]

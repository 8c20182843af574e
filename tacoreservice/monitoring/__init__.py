"""Monitoring: the FastAPI app and dashboard served by the broker process, and its metrics."""

from tacoreservice.monitoring.metrics import BrokerMetrics
from tacoreservice.monitoring.server import MonitorServer, check_api_exposure
from tacoreservice.monitoring.window import RequestWindow

__all__ = ["BrokerMetrics", "MonitorServer", "RequestWindow", "check_api_exposure"]

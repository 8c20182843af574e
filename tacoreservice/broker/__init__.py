"""The load-balancing broker, by responsibility: routing (broker.py), the pending-request
table and reply cache (pending.py), the job lane (job_lane.py), telemetry (telemetry.py), the
health and monitoring views (status.py) and the worker pool (worker_pool.py)."""

from tacoreservice.broker.broker import CONTROL_ENDPOINT, Broker

__all__ = ["Broker", "CONTROL_ENDPOINT"]

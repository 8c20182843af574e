"""How long a request may run on a worker, per method.

Two limits per request, counted from the moment a worker starts it (time spent waiting in the
queue is ``timeout_ms``'s business, not this):

- **soft**: the handler is asked to stop. :attr:`MethodContext.cancelled` turns true, so a long
  handler (an analysis, a backtest, a parameter search) stops at its next step and the client
  gets ``TIME_LIMIT_EXCEEDED``;
- **hard**: the handler did not stop (a blocking call without a timeout, a runaway loop). The
  broker answers ``TIME_LIMIT_EXCEEDED`` itself, takes the worker out of its pool, and the local
  supervisor kills the process and starts a replacement; a worker on another host kills itself
  a little later (its heartbeat thread watches the same clock), and its own supervisor replaces
  it. The request is never dispatched again: one that outran its limit once would do it again,
  taking a worker down each time.

A job's limit is the longer of its method's and ``worker.job_time_limit_s``: jobs exist for
work that takes minutes.
"""

from __future__ import annotations

from collections.abc import Mapping

from tacoreservice.config import WorkerSettings

__all__ = ["DEFAULT_TIME_LIMITS_S", "TimeLimits"]

# Hard limits in seconds of running, by method. Market data and orders are quick or broken;
# an analysis with a language model at research depth 5 on a slow endpoint is not.
DEFAULT_TIME_LIMITS_S: dict[str, float] = {
    "get.market_data": 30.0,
    "scan.market": 120.0,
    "evaluate.risk": 60.0,
    "execute.order": 30.0,
    "order.status": 15.0,
    "order.cancel": 15.0,
    "order.list": 15.0,
    "portfolio.get": 30.0,
    "portfolio.history": 60.0,
    "portfolio.reset": 30.0,
    "clock.get": 15.0,
    "clock.advance": 120.0,
    "analyze.stock": 900.0,
    "analyze.symbol": 900.0,
    "generate.signal": 900.0,
    "analyze.strategy": 120.0,
    "strategy.signals": 120.0,
    "optimize.parameters": 900.0,
    "backtest.decisions": 3600.0,
}


class TimeLimits:
    """The soft and hard limits of each method, from ``worker.*`` settings."""

    def __init__(
        self,
        overrides: Mapping[str, float] | None = None,
        default_s: float = 120.0,
        job_s: float = 3600.0,
        soft_ratio: float = 0.8,
    ):
        self.limits = {**DEFAULT_TIME_LIMITS_S, **(overrides or {})}
        self.default_s = default_s
        self.job_s = job_s
        self.soft_ratio = soft_ratio

    @classmethod
    def from_settings(cls, worker: WorkerSettings) -> TimeLimits:
        return cls(
            worker.time_limits,
            worker.time_limit_default_s,
            worker.job_time_limit_s,
            worker.soft_time_limit_ratio,
        )

    def hard(self, method: str, job: bool = False) -> float:
        limit = self.limits.get(method, self.default_s)
        return max(limit, self.job_s) if job else limit

    def soft(self, method: str, job: bool = False) -> float:
        return self.hard(method, job) * self.soft_ratio

    @staticmethod
    def broker_message(method: str, ran: float, hard: float) -> str:
        """The TIME_LIMIT_EXCEEDED message of a request the broker stopped waiting for."""
        return (
            f"{method} ran {ran:.0f} s, past its time limit of {hard:.0f} s; its worker was "
            "replaced and the request was not run again. If it needs longer, raise "
            f"worker.time_limits for it (TACORE_TIME_LIMITS={method}=SECONDS)"
        )

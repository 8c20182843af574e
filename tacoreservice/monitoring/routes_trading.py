"""The trading pages' routes: the paper portfolio with its equity curve, orders with fills and
pre-trade rows, the latest decision per symbol, and one symbol's analysis with its prices.

The account, orders and prices come from the service through the gateway (``portfolio.get``,
``portfolio.history``, ``order.list``, ``get.market_data``), so the dashboard shows exactly what
``tacore portfolio`` and any client see; decisions are read from what the service recorded
(:mod:`tacoreservice.service.decisions`). ``POST /api/analysis/{symbol}`` runs ``analyze.stock``
through the broker like ``POST /analyze`` runs its method.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from fastapi import Path as PathParam

from tacoreservice.monitoring.gateway import BrokerGateway, GatewayError
from tacoreservice.monitoring.readers import MAX_OFFSET, MAX_SYMBOL, ApiError, Database
from tacoreservice.reports.decision import level_notes, stale_warning, summary_rows

__all__ = ["add_trading_routes"]

_READ_MS = 15_000
_ANALYSIS_MS = 120_000
PRICE_BARS = 180  # of the analysis page's chart
_SYMBOL = r"^[A-Za-z0-9./:_-]{1,32}$"


def _analysis_view(decision: dict[str, Any], gateway: BrokerGateway) -> dict[str, Any]:
    """A decision with what the page draws: the summary block, the warnings, the prices."""
    history: list[dict[str, Any]] = []
    history_error = None
    try:
        quote = gateway.call(
            {
                "symbol": decision["symbol"],
                "as_of": str(decision.get("as_of"))[:10],
                "history": PRICE_BARS,
            },
            method="get.market_data",
            timeout_ms=_READ_MS,
        )
        history = [
            {"time": str(b["time"])[:10], "close": b["close"]} for b in quote.get("history") or []
        ]
    except GatewayError as exc:  # the page still shows the decision
        history_error = f"{exc.code}: {exc.message}"
    return {
        "decision": decision,
        "summary": [{"label": k, "value": v} for k, v in summary_rows(decision)],
        "stale_warning": stale_warning(decision),
        "notes": level_notes(decision),
        "history": history,
        "history_error": history_error,
    }


def add_trading_routes(
    app: FastAPI, db: Database, gateway: BrokerGateway, guarded: list[Any]
) -> None:
    @app.get("/api/portfolio", dependencies=guarded, tags=["trading"])
    def portfolio() -> dict[str, Any]:
        """``portfolio.get`` (cash, positions, P&L, drawdown) and ``portfolio.history`` (the
        equity curve replayed from the ledger, with the drawdown)."""
        return {
            "portfolio": gateway.call({}, method="portfolio.get", timeout_ms=_READ_MS),
            "history": gateway.call({}, method="portfolio.history", timeout_ms=_READ_MS),
        }

    @app.get("/api/orders", dependencies=guarded, tags=["trading"])
    def orders(
        status: str | None = Query(None, pattern="^(open|filled|cancelled|rejected|expired)$"),
        symbol: str | None = Query(None, pattern=_SYMBOL),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        """``order.list``: orders newest first, each with its fills and pre-trade rows."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if symbol:
            params["symbol"] = symbol
        return gateway.call(params, method="order.list", timeout_ms=_READ_MS)

    @app.get("/api/decisions", dependencies=guarded, tags=["trading"])
    def decisions(limit: int = Query(100, ge=1, le=500)) -> dict[str, Any]:
        """The newest analysis decision of each symbol (rating, action, confidence, levels,
        size), newest first, from the request log and the jobs."""
        return {"decisions": db.decisions(limit)}

    @app.get("/api/analysis/{symbol}", dependencies=guarded, tags=["trading"])
    def analysis(symbol: str = PathParam(pattern=_SYMBOL, max_length=MAX_SYMBOL)) -> dict[str, Any]:
        """The newest recorded decision for ``symbol`` in full (summary block, each role's
        report, the debate) and the closes up to its day for the chart."""
        decision = db.decision(symbol)
        if decision is None:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"no analysis of {symbol!r} is recorded; run one (the page's Analyse button, "
                f"`tacore analyze {symbol}` or analyze.stock)",
            )
        return _analysis_view(decision, gateway)

    @app.post("/api/analysis/{symbol}", dependencies=guarded, tags=["trading"])
    def run_analysis(
        symbol: str = PathParam(pattern=_SYMBOL, max_length=MAX_SYMBOL),
    ) -> dict[str, Any]:
        """Run ``analyze.stock`` for ``symbol`` through the broker and answer as the GET."""
        decision = gateway.call({"symbol": symbol}, method="analyze.stock", timeout_ms=_ANALYSIS_MS)
        return _analysis_view(decision, gateway)

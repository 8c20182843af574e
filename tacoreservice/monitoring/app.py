"""The monitoring API and dashboard (FastAPI), served on API_PORT by a process of its own
(:mod:`tacoreservice.monitoring.server`), so that no HTTP client can take the broker's file
descriptors or its CPU.

Read-only, but for ``POST /analyze`` (the blueprint's StrategyRequest), which the API sends to
the broker as any client would (:mod:`tacoreservice.monitoring.gateway`). Live state and the
Prometheus metrics come from the broker loop through :class:`BrokerLink` (a query per call);
the request log and jobs are read from SQLite with a connection per call, so nothing here
shares a handle with the broker thread. Both route generations are served: ``/workers`` and
``/api/workers``, ``/logs`` and ``/api/logs``, ``/methods`` and ``/api/methods``.

With ``TACORE_API_TOKEN`` set (required to listen beyond loopback), every data route and the API
description (``/openapi.json``, ``/docs``, ``/redoc``) need ``Authorization: Bearer <token>``;
``?token=`` is accepted too because a browser's EventSource cannot send headers (and ``/docs``
opened as ``/docs?token=...`` passes it on to the schema it loads). Only ``/health`` and the
dashboard's page and scripts, which hold no data, are public.
"""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from tacoreservice import __version__
from tacoreservice.config import Settings
from tacoreservice.monitoring.bridge import BrokerLink, BrokerNotResponding
from tacoreservice.monitoring.gateway import BrokerGateway, GatewayError, StrategyRequest
from tacoreservice.monitoring.metrics import CONTENT_TYPE
from tacoreservice.monitoring.readers import (
    MAX_ID,
    MAX_METHOD,
    MAX_OFFSET,
    MAX_SYMBOL,
    MAX_TIME,
    ApiError,
    Database,
    log_item,
)
from tacoreservice.monitoring.routes_ops import add_ops_routes
from tacoreservice.monitoring.routes_trading import add_trading_routes

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).with_name("static")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(
    settings: Settings,
    link: BrokerLink,
    *,
    token: str | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> FastAPI:
    db = Database(settings.database.path, settings.request_log_path)
    expected = token.encode() if token else None
    public_docs = expected is None  # with a token, the description needs it too (below)
    app = FastAPI(
        title="TACoreService monitor",
        version=__version__,
        description="Read-only monitoring API of the TACoreService broker: health, workers, "
        "request log, per-method latency, Prometheus metrics, jobs and a live dashboard.",
        docs_url="/docs" if public_docs else None,
        redoc_url="/redoc" if public_docs else None,
        openapi_url="/openapi.json" if public_docs else None,
    )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The house error shape; FastAPI's own "detail" list stays for existing readers.
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}"
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse(
            {"error": {"code": "INVALID_PARAMS", "message": message}, "detail": details},
            status_code=422,
        )

    @app.exception_handler(GatewayError)
    async def _gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(sqlite3.Error)
    async def _storage(_request: Request, exc: sqlite3.Error) -> JSONResponse:
        # A database that vanished, is locked past the timeout or is not SQLite any more.
        return _error(
            503,
            "STORAGE_UNAVAILABLE",
            f"the databases (ledger {settings.database.path}, request log "
            f"{settings.request_log_path}) could not be read: {exc}",
        )

    @app.exception_handler(BrokerNotResponding)
    async def _not_responding(_request: Request, exc: BrokerNotResponding) -> JSONResponse:
        return _error(503, "UNAVAILABLE", str(exc))

    def authorize(request: Request, token: str | None = Query(None, include_in_schema=False)):
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else (token or "")
        if not given or not hmac.compare_digest(given.encode(), expected):
            raise ApiError(
                401,
                "UNAUTHORIZED",
                "missing or wrong token: send 'Authorization: Bearer <TACORE_API_TOKEN>'",
            )

    guarded = [Depends(authorize)]

    if not public_docs:
        title = "TACoreService monitor"

        def schema_url(request: Request) -> str:
            # The page's browser loads the schema itself and cannot add a header: it carries
            # the token it was opened with (already checked equal to the expected one).
            given = request.query_params.get("token")
            return f"/openapi.json?token={quote(given)}" if given else "/openapi.json"

        @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
        def openapi_schema() -> JSONResponse:
            return JSONResponse(app.openapi())

        @app.get("/docs", dependencies=guarded, include_in_schema=False)
        def swagger(request: Request) -> HTMLResponse:
            return get_swagger_ui_html(openapi_url=schema_url(request), title=title)

        @app.get("/redoc", dependencies=guarded, include_in_schema=False)
        def redoc(request: Request) -> HTMLResponse:
            return get_redoc_html(openapi_url=schema_url(request), title=title)

    def snapshot() -> dict[str, Any]:
        return link.query("snapshot")

    def status_of(snap: dict[str, Any]) -> dict[str, Any]:
        status = dict(snap["status"])
        status["config"] = settings.public_summary()
        return status

    # ------------------------------------------------------------------ routes

    @app.get("/health", tags=["health"])
    def health() -> JSONResponse:
        """200 while the broker loop answers, at least one worker is alive and not stuck past
        a time limit, and the database file is the one the service opened; else 503."""
        try:
            snap = snapshot()
        except BrokerNotResponding as exc:
            return JSONResponse(
                {
                    "status": "unhealthy",
                    "broker": "not responding",
                    "workers_alive": None,
                    "reason": str(exc),
                },
                status_code=503,
            )
        workers = snap["status"]["workers"]
        alive, stuck = workers["alive"], workers.get("stuck", 0)
        storage = snap["status"].get("storage") or {}
        reason = None
        if not alive:
            reason = "no worker is alive"
        elif alive - stuck < 1:
            reason = f"all {alive} workers are stuck in requests past their time limits"
        elif storage.get("problem"):
            reason = storage["problem"]
        body = {
            "status": "unhealthy" if reason else "healthy",
            "broker": "running",
            "workers_alive": alive,
            "workers_stuck": stuck,
            "storage_ok": storage.get("ok", True),
            "uptime_s": snap["status"]["uptime_s"],
        }
        if reason:
            body["reason"] = reason
        return JSONResponse(body, status_code=503 if reason else 200)

    @app.get("/api/status", dependencies=guarded, tags=["status"])
    def api_status() -> dict[str, Any]:
        """Uptime, version, counters, rates, queue, cache and the settings without secrets."""
        return status_of(snapshot())

    @app.get("/workers", dependencies=guarded, tags=["workers"])
    @app.get("/api/workers", dependencies=guarded, tags=["workers"])
    def workers() -> dict[str, Any]:
        """Live workers and those that left in the last 10 minutes (state ``dead``)."""
        return dict(snapshot()["workers"])

    @app.get("/methods", dependencies=guarded, tags=["methods"])
    @app.get("/api/methods", dependencies=guarded, tags=["methods"])
    def methods() -> dict[str, Any]:
        """Per method: count, errors, error rate, p50 / p95 / p99 latency over the window."""
        return dict(snapshot()["methods"])

    @app.get("/logs", dependencies=guarded, tags=["logs"])
    @app.get("/api/logs", dependencies=guarded, tags=["logs"])
    def logs(
        method: str | None = Query(None, max_length=MAX_METHOD),
        status: str | None = Query(None, pattern="^(success|error)$"),
        worker: str | None = Query(None, max_length=MAX_ID),
        request_id: str | None = Query(None, max_length=MAX_ID),
        code: str | None = Query(None, pattern="^[A-Z_]{1,40}$", description="error code"),
        client: str | None = Query(None, max_length=MAX_ID, description="client name"),
        symbol: str | None = Query(
            None, max_length=MAX_SYMBOL, description="a symbol named anywhere in the params"
        ),
        kind: str | None = Query(
            None,
            pattern="^(client|service)$",
            description="errors the client caused (INVALID_PARAMS, ...) or the service's own",
        ),
        since: str | None = Query(None, max_length=MAX_TIME, description="ISO-8601 UTC, inclusive"),
        until: str | None = Query(None, max_length=MAX_TIME, description="ISO-8601 UTC, exclusive"),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        """The request log, newest first, filtered and paginated."""
        total, rows = db.logs(
            limit,
            offset,
            method=method,
            status=status,
            worker_id=worker,
            request_id=request_id,
            error_code=code,
            client_id=client,
            symbol=symbol,
            error_kind=kind,
            since=since,
            until=until,
        )
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [log_item(r) for r in rows],
        }

    @app.get("/api/logs/{request_id}", dependencies=guarded, tags=["logs"])
    def log_entry(request_id: str = PathParam(max_length=MAX_ID)) -> dict[str, Any]:
        """One request with its request and response data (the newest, if logged twice)."""
        _total, rows = db.logs(1, request_id=request_id)
        if not rows:
            raise ApiError(404, "NOT_FOUND", f"no request {request_id!r} in the request log")
        return log_item(rows[0], full=True)

    @app.get("/metrics", dependencies=guarded, tags=["metrics"])
    def prometheus_metrics() -> Response:
        """Prometheus text format."""
        return Response(link.metrics()["text"].encode(), media_type=CONTENT_TYPE)

    @app.get("/api/metrics", dependencies=guarded, tags=["metrics"])
    def json_metrics() -> dict[str, Any]:
        """The figures of /metrics as JSON."""
        return dict(link.metrics()["json"])

    @app.get("/api/timeseries", dependencies=guarded, tags=["metrics"])
    def timeseries() -> dict[str, Any]:
        """Requests, errors, p50 and p95 per second over the window, for the charts."""
        return link.query("timeseries")

    @app.get("/api/model", dependencies=guarded, tags=["model"])
    def model() -> dict[str, Any]:
        """The quant model's stored calibrations (shipped and ``tacore calibrate``'s): per
        market, when and on what each was fitted, its drift, weights and measured ICs."""
        from tacoreservice.analysis.calibration_store import SHIPPED_DIR, CalibrationStore

        folders = [SHIPPED_DIR, Path(settings.analysis.calibration_dir)]
        items = sorted(
            CalibrationStore(folders).items(), key=lambda c: (c.market, c.fit_day), reverse=True
        )
        return {
            "calibrations": [
                c.summary() | {"ic": c.ic, "fitted_symbols": c.symbols} for c in items
            ],
            "note": "a decision uses the fit at the last month-end before its own month: "
            "the newest of these when it is that fit, else the same fit made walk-forward "
            "from the history (never one whose window reaches the decision's day)",
        }

    def live_view() -> dict[str, Any]:
        snap = snapshot()
        out: dict[str, Any] = {
            "status": status_of(snap),
            "workers": snap["workers"],
            "methods": snap["methods"],
            "point": snap["point"],
        }
        _t, recent = db.logs(20)  # empty while the request log has no file
        groups = db.failure_groups()
        try:
            _n, running = db.jobs("running", 20)
            _n, queued = db.jobs("queued", 20)
        except ApiError:  # no ledger yet
            running, queued = [], []
        out["recent_requests"] = [log_item(r) for r in recent]
        out["failure_groups"] = groups
        out["jobs"] = running + queued
        return out

    @app.get("/api/events", dependencies=guarded, tags=["live"])
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: a ``snapshot`` event every second (see the dashboard)."""

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            while not stopping():
                if await request.is_disconnected():
                    return
                try:
                    view = await asyncio.to_thread(live_view)
                    yield b"event: snapshot\ndata: " + orjson.dumps(view) + b"\n\n"
                except BrokerNotResponding as exc:
                    yield b"event: unavailable\ndata: " + orjson.dumps(str(exc)) + b"\n\n"
                await asyncio.sleep(1.0)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    gateway = BrokerGateway(settings)
    add_ops_routes(app, db, gateway, guarded)
    add_trading_routes(app, db, gateway, guarded)

    @app.post("/analyze", dependencies=guarded, tags=["analysis"])
    def analyze(body: StrategyRequest) -> dict[str, Any]:
        """The blueprint's StrategyRequest -> ``{signals, confidence, timestamp}``, run by a
        worker through the broker (method ``strategy.signals``). ``market_data``: your own
        bars, used instead of the bundled history after validation."""
        return gateway.call(body.model_dump(exclude_none=True))

    # The page and its scripts are public: they hold no data, and the page must load to ask
    # for the token that every data route needs.
    @app.get("/", include_in_schema=False)
    def dashboard() -> Response:
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            raise ApiError(404, "NOT_FOUND", "the dashboard files are not installed")
        return FileResponse(index, media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app

"""Input hardening against a running service (2 workers, real SQLite, real sockets).

(a) Absurd numbers, dates, symbols and identifiers get INVALID_PARAMS naming the field; the
    NaN / Infinity literals and numbers beyond a double are PARSE_ERROR (orjson refuses them).
(b) SQL injection strings go through every string field of every method (found from the params
    models' JSON schemas, so a new method is covered without editing this file), through the
    broker's job methods, the legacy dialect and the monitoring API's filters; afterwards every
    table exists, ``PRAGMA integrity_check`` is ok, no row was deleted, new rows are exactly those
    the successful requests created, and the same worker processes still serve.
(c) Request ids and client names with quotes, NUL bytes, newlines and non-ASCII text travel to
    the worker, into the request log and the orders table, and back, unchanged.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from pydantic import BaseModel

from tacoreservice.protocol.errors import ErrorCode
from tacoreservice.service.methods.jobs import JOB_READ_METHODS
from tacoreservice.service.params import ParamsModel
from tacoreservice.service.registry import MethodSpec, load_plugins, registry
from tests.support.service import ServiceProcesses, raw_request, wait_job

STABLE_CODES = {code.value for code in ErrorCode}
BROKER_JOB_METHODS = ("job.submit", "job.cancel")  # parsed in broker.py, not by a params model
TABLES = ("request_logs", "jobs", "paper_account", "orders", "fills", "positions")

INJECTIONS: tuple[str, ...] = (
    "'; DROP TABLE orders; --",
    "1 OR 1=1",
    '" OR ""="',
    "%' --",
    "AAPL'); DELETE FROM request_logs; --",
    "job-1' OR '1'='1",
    "x'); DROP TABLE jobs; --",
    "AAPL\x00; DROP TABLE positions",
    "\x00",
    "A" * 100_000,
)

# A valid request per method (list forms, so every nested string field has a place), and
# alternatives for methods whose fields exclude each other (symbol vs symbols, ...). A field
# is injected into the first variant that has it. Methods missing here get a request built
# from their schema's required fields.
BASE_PARAMS: dict[str, list[dict[str, Any]]] = {
    "get.market_data": [
        {"symbol": "AAPL", "timeframe": "1d", "as_of": "2025-06-02", "history": 2},
        {"symbols": ["AAPL", "MSFT"], "timeframe": "1d"},
    ],
    "analyze.stock": [
        {
            "symbol": "AAPL",
            "analysis_type": "technical",
            "analysts": ["market"],
            "research_depth": 1,
            "engine": "quant",
            "as_of": "2025-06-02",
            "timeframe": "1d",
        }
    ],
    "analyze.strategy": [
        {"symbol": "AAPL", "timeframe": "1d", "strategy_type": "trend", "as_of": "2025-06-02"}
    ],
    "generate.signal": [
        {
            "symbol": "AAPL",
            "strategy": "trend",
            "timeframe": "1d",
            "engine": "quant",
            "as_of": "2025-06-02",
        }
    ],
    "evaluate.risk": [
        {
            "portfolio": [{"symbol": "AAPL", "quantity": 10, "cost_basis": 150.0}],
            "cash": 10_000.0,
            "proposed_trade": {"symbol": "MSFT", "action": "buy", "quantity": 1},
            "as_of": "2025-06-02",
        }
    ],
    "execute.order": [
        {
            "symbol": "AAPL",
            "action": "buy",
            "quantity": 1,
            "order_type": "limit",
            "price": 1.0,
            "time_in_force": "gtc",
            "client_order_id": "seed-limit",
        }
    ],
    "order.status": [{"client_order_id": "seed-limit"}, {"order_id": "ord-" + "0" * 32}],
    "order.cancel": [{"client_order_id": "no-such-order"}, {"order_id": "ord-" + "0" * 32}],
    "order.list": [{"status": "open", "symbol": "AAPL", "limit": 5, "offset": 0}],
    "portfolio.get": [{}],
    "portfolio.reset": [{"initial_cash": 1000.0}],
    "clock.get": [{}],
    "clock.advance": [{"bars": 1, "calendar": "SPY"}, {"to": "2030-01-01"}],
    "scan.market": [
        {
            "market": "US",
            "symbols": ["AAPL", "MSFT"],
            "scan_type": "basic",
            "as_of": "2025-06-02",
            "limit": 5,
        },
        {"market_type": "stock", "scan_type": "basic", "limit": 5},
    ],
    "optimize.parameters": [
        {
            "symbol": "AAPL",
            "strategy_type": "sma_cross",
            "timeframe": "1d",
            "objective": "sharpe",
            "method": "grid",
            "param_space": {"fast": [5, 10], "slow": [50]},
            "max_evaluations": 4,
            "start": "2023-01-01",
            "end": "2025-06-02",
        },
        {
            "symbols": ["AAPL", "MSFT"],
            "strategy_type": "sma_cross",
            "param_space": {"fast": [5], "slow": [50]},
            "as_of": "2025-06-02",
        },
    ],
    "job.status": [{"job_id": "job-" + "0" * 32}],
    "job.result": [{"job_id": "job-" + "0" * 32}],
    "job.list": [{"state": "succeeded", "method": "get.market_data", "limit": 5, "offset": 0}],
}

# Strings in fields typed Any or dict (criteria, param_space, the {SYMBOL: qty} portfolio),
# which a JSON schema does not break down: placed by hand, INJECT marks the spot.
INJECT = object()
FREE_FORM_CASES: list[tuple[str, dict[str, Any]]] = [
    ("evaluate.risk", {"portfolio": {INJECT: 10}}),
    ("scan.market", {"market": "US", "scan_type": "basic", "criteria": {"sectors": [INJECT]}}),
    ("scan.market", {"market": "US", "scan_type": "basic", "filters": {"signals": [INJECT]}}),
    ("scan.market", {"market": "US", "criteria": {INJECT: 1}}),
    ("optimize.parameters", {"symbol": "AAPL", "strategy_type": "sma_cross", "param_space": {INJECT: [5]}}),
    ("job.submit", {"method": INJECT, "params": {}}),
    ("job.submit", {"method": "get.market_data", "params": {"symbol": INJECT}}),
    ("job.submit", {"method": "execute.order", "params": {"symbol": "AAPL", "action": "buy", "quantity": 1, "client_order_id": INJECT}}),
    ("job.cancel", {"job_id": INJECT}),
]  # fmt: skip


def _place(value: Any, inj: str) -> Any:
    if value is INJECT:
        return inj
    if isinstance(value, dict):
        return {(inj if k is INJECT else k): _place(v, inj) for k, v in value.items()}
    if isinstance(value, list):
        return [_place(v, inj) for v in value]
    return value


# --- the string fields of a params model, from its JSON schema ------------------------------


def string_paths(schema: dict[str, Any], node: dict[str, Any] | None = None) -> list[tuple]:
    """Paths (keys and list index 0) of every string-typed field, nested models included."""
    node = schema if node is None else node
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    out: list[tuple] = []
    for option in node.get("anyOf", []):
        out += string_paths(schema, option)
    kind = node.get("type")
    if kind == "string":
        out.append(())
    elif kind == "array" and "items" in node:
        out += [(0, *p) for p in string_paths(schema, node["items"])]
    elif kind == "object":
        for name, sub in node.get("properties", {}).items():
            out += [(name, *p) for p in string_paths(schema, sub)]
    return list(dict.fromkeys(out))


def _minimal_params(schema: dict[str, Any]) -> dict[str, Any]:
    """Required fields filled with plain values, for a method without a BASE_PARAMS entry."""
    samples = {"string": "AAPL", "integer": 1, "number": 1.0, "array": [], "object": {}}
    props = schema.get("properties", {})
    return {
        name: samples.get(props[name].get("type", "string"), "AAPL")
        for name in schema.get("required", [])
    }


def _with_value(params: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(params)
    node: Any = out
    for key, following in zip(path, path[1:], strict=False):
        blank: Any = [] if following == 0 else {}
        if isinstance(key, int):
            if not node:
                node.append(blank)
            node = node[key]
        else:
            if not isinstance(node.get(key), list | dict):
                node[key] = blank
            node = node[key]
    last = path[-1]
    if isinstance(last, int):
        if node:
            node[last] = value
        else:
            node.append(value)
    else:
        node[last] = value
    return out


def _specs() -> dict[str, MethodSpec]:
    load_plugins()  # the built-in methods; the test-only plugin methods are not inputs
    # Another test of the same session may have imported the test-only methods into this
    # process's registry: keep the package's own.
    specs = {
        n: s
        for n in registry.names()
        if (s := registry.get(n))
        and s.name == n
        and s.handler.__module__.startswith("tacoreservice.")
    }
    return {**specs, **JOB_READ_METHODS}


def injection_requests() -> list[tuple[str, dict[str, Any], str]]:
    """(method, params, field path) for every string field of every method and injection."""
    cases: list[tuple[str, dict[str, Any], str]] = []
    for name, spec in sorted(_specs().items()):
        schema = spec.params_model.model_json_schema()
        variants = BASE_PARAMS.get(name) or [_minimal_params(schema)]
        for path in string_paths(schema):
            base = next((v for v in variants if path[0] in v), variants[0])
            for inj in INJECTIONS:
                label = ".".join(str(p) for p in path)
                cases.append((name, _with_value(base, path, inj), label))
    for name, template in FREE_FORM_CASES:
        for inj in INJECTIONS:
            cases.append((name, _place(template, inj), "free-form"))
    return cases


# --- service, database, replies --------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    svc = ServiceProcesses(tmp_path_factory.mktemp("hardening"), workers=2)
    svc.start_main()
    yield svc
    svc.stop()


def _send(svc: ServiceProcesses, message: dict[str, Any], timeout_ms: int = 30_000) -> dict:
    # json, not orjson: only it writes integers beyond 64 bits (2**70), as some clients do.
    body = json.dumps(message, ensure_ascii=False).encode()
    return raw_request(svc.endpoint, body, timeout_ms)


def _call(svc: ServiceProcesses, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return _send(svc, {"method": method, "params": params})


def _check_reply(reply: dict[str, Any], context: Any, short: bool = True) -> None:
    """A well-formed reply; an error has a stable code, never INTERNAL, and a short message."""
    assert reply.get("status") in ("success", "error"), (context, reply)
    assert reply.get("request_id"), (context, reply)
    if reply["status"] == "error":
        error = reply["error"]
        assert error["code"] in STABLE_CODES and error["code"] != "INTERNAL", (context, error)
        assert isinstance(error["message"], str) and error["message"], (context, error)
        # An error names what was wrong; it does not echo a 100 kB value back.
        assert not short or len(orjson.dumps(reply)) < 20_000, (context, str(reply)[:300])
    else:
        assert reply["error"] is None and "data" in reply, (context, reply)


def _db(svc: ServiceProcesses) -> sqlite3.Connection:
    """The ledger, with the request log's file attached (unqualified names find both)."""
    conn = sqlite3.connect(f"file:{svc.db_path}?mode=ro", uri=True, timeout=10.0)
    conn.execute("ATTACH DATABASE ? AS log", (f"file:{svc.log_path}?mode=ro",))
    return conn


def _snapshot(svc: ServiceProcesses) -> dict[str, Any]:
    conn = _db(svc)
    try:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM main.sqlite_master WHERE type='table' UNION "
                "SELECT name FROM log.sqlite_master WHERE type='table'"
            )
        }
        return {
            "tables": tables,
            "integrity": conn.execute("PRAGMA integrity_check").fetchall(),
            "orders": {
                r[0]: r
                for r in conn.execute(
                    "SELECT order_id, symbol, action, quantity, price, client_order_id,"
                    " request_id FROM orders"
                )
            },
            "fills": dict(conn.execute("SELECT fill_id, order_id FROM fills").fetchall()),
            "positions": {r[0] for r in conn.execute("SELECT symbol FROM positions")},
            "jobs": {r[0] for r in conn.execute("SELECT job_id FROM jobs")},
            "log_ids": {r[0] for r in conn.execute("SELECT rowid FROM request_logs")},
        }
    finally:
        conn.close()


def _logged(svc: ServiceProcesses, request_id: str) -> list[tuple]:
    conn = _db(svc)
    try:
        return conn.execute(
            "SELECT request_id, method, status FROM request_logs WHERE request_id = ?",
            (request_id,),
        ).fetchall()
    finally:
        conn.close()


def _wait_logged(svc: ServiceProcesses, request_id: str, timeout: float = 15.0) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _logged(svc, request_id)
        if rows:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"request {request_id!r} never reached the request log")


def _assert_intact(
    before: dict[str, Any], after: dict[str, Any], new_orders: set[str], new_jobs: set[str]
) -> None:
    assert set(TABLES) <= before["tables"] <= after["tables"]
    assert after["integrity"] == [("ok",)]
    # Nothing deleted or rewritten ...
    for order_id, row in before["orders"].items():
        assert after["orders"].get(order_id) == row
    assert set(before["fills"]) <= set(after["fills"])
    assert before["positions"] <= after["positions"]
    assert before["jobs"] <= after["jobs"]
    assert before["log_ids"] and before["log_ids"] <= after["log_ids"]
    # ... and the new rows are exactly those the successful requests created.
    assert set(after["orders"]) - set(before["orders"]) == new_orders
    for fill_id in set(after["fills"]) - set(before["fills"]):
        assert after["fills"][fill_id] in new_orders
    new_symbols = {after["orders"][o][1] for o in new_orders}
    assert after["positions"] - before["positions"] <= new_symbols
    assert after["jobs"] - before["jobs"] == new_jobs


def _seed(svc: ServiceProcesses) -> None:
    """An order resting, one filled with a position, a finished job, logged requests."""
    limit = _call(svc, "execute.order", BASE_PARAMS["execute.order"][0])
    assert limit["status"] == "success" and limit["data"]["status"] == "open", limit
    market = _call(svc, "execute.order", {"symbol": "KO", "action": "buy", "quantity": 3})
    assert market["status"] == "success" and market["data"]["status"] == "filled", market
    job = _call(svc, "job.submit", {"method": "get.market_data", "params": {"symbol": "AAPL"}})
    with svc.client() as c:
        wait_job(c, job["data"]["job_id"], {"succeeded"})
    marker = _send(svc, {"request_id": "seed-marker", "method": "clock.get", "params": {}})
    assert marker["status"] == "success"
    _wait_logged(svc, "seed-marker")


# --- (a) absurd values ----------------------------------------------------------------------

MAX_U64 = 2**64 - 1
ORDER = {"symbol": "AAPL", "action": "buy", "quantity": 1}
RISK = {"portfolio": {"AAPL": 10}}

# (method, params, the field the message must name, a word of the allowed range or rule)
ABSURD: list[tuple[str, dict[str, Any], str, str]] = [
    ("get.market_data", {"symbol": "AAPL", "as_of": "9999-12-31"}, "as_of", "1900"),
    ("get.market_data", {"symbol": "AAPL", "as_of": "0001-01-01T00:00:00+05:00"}, "as_of", "2100"),
    ("get.market_data", {"symbol": "AAPL", "as_of": "2024-02-30"}, "as_of", "ISO"),
    ("get.market_data", {"symbol": "AAPL", "history": MAX_U64}, "history", "5000"),
    ("get.market_data", {"symbol": "A" * 1_000_000}, "symbol", "64"),
    ("get.market_data", {"symbol": "ＡＡＰＬ"}, "symbol", "letters, digits"),  # fullwidth
    ("get.market_data", {"symbol": "\ufb01"}, "symbol", "letters, digits"),  # upper() is "FI"
    ("get.market_data", {"symbol": "AAPL\u200b"}, "symbol", "letters, digits"),  # zero width
    ("get.market_data", {"symbol": "\u202eLPAA"}, "symbol", "letters, digits"),  # RTL override
    ("get.market_data", {"symbol": "AAPL\x00"}, "symbol", "letters, digits"),
    ("get.market_data", {"symbols": ["AAPL"] * 201}, "symbols", "200"),
    ("get.market_data", {"symbols": ["AAPL", "x" * 100]}, "symbols", "64"),
    ("evaluate.risk", {"portfolio": {"AAPL": 1e308}}, "quantity of AAPL", "1e+12"),
    ("evaluate.risk", {"portfolio": {"AAPL": -1e308}}, "quantity of AAPL", "1e+12"),
    ("evaluate.risk", {"portfolio": {"AAPL": 5e-324}}, "quantity of AAPL", "1e-08"),
    ("evaluate.risk", {"portfolio": {"AAPL": "NaN"}}, "quantity of AAPL", "finite"),
    ("evaluate.risk", {"portfolio": {"AAPL": 10, "'; DROP TABLE orders; --": 1}}, "portfolio", "letters, digits"),
    ("evaluate.risk", {"portfolio": {f"S{i}": 1 for i in range(201)}}, "portfolio", "200"),
    ("evaluate.risk", {**RISK, "cash": 1e308}, "cash", "1e+15"),
    ("evaluate.risk", {**RISK, "cash": "Infinity"}, "cash", "finite"),
    ("evaluate.risk", {**RISK, "confidence": [95]}, "confidence", "0.95"),
    ("evaluate.risk", {**RISK, "horizon_days": 10**6}, "horizon_days", "252"),
    ("evaluate.risk", {**RISK, "lookback_days": 2**70}, "lookback_days", ""),
    ("evaluate.risk", {**RISK, "as_of": "9999-12-31"}, "as_of", "2100"),
    ("evaluate.risk", {**RISK, "proposed_trade": {"symbol": "MSFT", "action": "buy", "quantity": -1e12}}, "proposed_trade.quantity", "1e-08"),
    ("evaluate.risk", {**RISK, "proposed_trade": {"symbol": "MSFT", "action": "buy", "quantity": 1, "price": 1e12}}, "proposed_trade.price", "1e+09"),
    ("execute.order", {**ORDER, "quantity": 1e308}, "quantity", "1000000000000"),
    ("execute.order", {**ORDER, "quantity": -5}, "quantity", "0.00000001"),
    ("execute.order", {**ORDER, "quantity": 5e-324}, "quantity", "0.00000001"),
    ("execute.order", {**ORDER, "quantity": 2**70}, "quantity", "1000000000000"),
    ("execute.order", {**ORDER, "quantity": True}, "quantity", "number"),
    ("execute.order", {**ORDER, "quantity": "NaN"}, "quantity", "finite"),
    ("execute.order", {**ORDER, "price": 1e10}, "price", "1000000000"),
    ("execute.order", {**ORDER, "order_type": "stop", "stop_price": -1}, "stop_price", "0.00000001"),
    ("execute.order", {**ORDER, "client_order_id": "a b"}, "client_order_id", "letters, digits"),
    ("execute.order", {**ORDER, "client_order_id": "x" * 129}, "client_order_id", "128"),
    ("execute.order", {**ORDER, "client_order_id": "c1'; DROP TABLE orders; --"}, "client_order_id", "letters, digits"),
    ("execute.order", {**ORDER, "as_of": "9999-12-31"}, "as_of", "2100"),
    ("order.status", {"order_id": "ord-1' OR '1'='1"}, "order_id", "letters, digits"),
    ("order.list", {"offset": 2**63}, "offset", "10000000"),
    ("order.list", {"limit": 10**9}, "limit", "500"),
    ("order.list", {"symbol": "AAPL%"}, "symbol", "letters, digits"),
    ("portfolio.reset", {"initial_cash": 5e-324}, "initial_cash", "1"),
    ("portfolio.reset", {"initial_cash": 1e308}, "initial_cash", "1000000000000000"),
    ("clock.advance", {"bars": MAX_U64}, "bars", "10000"),
    ("clock.advance", {"to": "9999-12-31"}, "to", "2100"),
    ("clock.advance", {"bars": 1, "calendar": "x" * 40}, "calendar", "32"),
    ("scan.market", {"market": "US", "limit": 10**9}, "limit", "500"),
    ("scan.market", {"market": "US", "min_score": 1e308}, "min_score", "1"),
    ("scan.market", {"market": "US", "criteria": {"min_volume": 1e308}}, "criteria.min_volume", "1e+15"),
    ("scan.market", {"market": "US", "criteria": {"price_range": [0, 1e308]}}, "criteria.price_range", "1e+09"),
    ("scan.market", {"market": "US", "criteria": {"min_change_pct": -1e308}}, "criteria.min_change_pct", "-100"),
    ("scan.market", {"market": "US", "criteria": {"sectors": ["Tech"] * 51}}, "criteria.sectors", "50"),
    ("scan.market", {"market": "US", "criteria": {"sectors": ["x" * 65]}}, "criteria.sectors", "64"),
    ("scan.market", {"symbols": ["AAPL"] * 501}, "symbols", "500"),
    ("scan.market", {"market": "US", "as_of": "0001-01-01"}, "as_of", "1900"),
    ("analyze.stock", {"symbol": "AAPL", "research_depth": 10**6}, "research_depth", "5"),
    ("analyze.stock", {"symbol": "AAPL", "as_of": "0001-01-01"}, "as_of", "1900"),
    ("analyze.stock", {"symbol": "AAPL", "analysts": ["x" * 1000]}, "analysts", "32"),
    ("analyze.strategy", {"symbol": "\x00"}, "symbol", "letters, digits"),
    ("generate.signal", {"symbol": "AAPL", "as_of": "9999-12-31"}, "as_of", "2100"),
    ("optimize.parameters", {"symbol": "AAPL", "max_evaluations": 10**12}, "max_evaluations", "20000"),
    ("optimize.parameters", {"symbol": "AAPL", "train_ratio": 1e308}, "train_ratio", "0.95"),
    ("optimize.parameters", {"symbol": "AAPL", "top_n": MAX_U64}, "top_n", "50"),
    ("optimize.parameters", {"symbol": "AAPL", "walk_forward": {"folds": 10**9}}, "walk_forward.folds", "12"),
    ("optimize.parameters", {"symbol": "AAPL", "start": "0001-01-01"}, "start", "1900"),
    ("optimize.parameters", {"symbol": "AAPL", "strategy_type": "mean_reversion", "param_space": {"bb_std": {"min": 1, "max": 2, "step": 5e-324}}}, "param_space.bb_std", "10,000"),
    ("optimize.parameters", {"symbol": "AAPL", "strategy_type": "mean_reversion", "param_space": {"bb_std": [2.0] * 10_001}}, "param_space", "10,000"),
    ("job.status", {"job_id": "x" * 129}, "job_id", "128"),
    ("job.result", {"job_id": "job-1' OR '1'='1"}, "job_id", "letters, digits"),
    ("job.list", {"offset": MAX_U64}, "offset", "10000000"),
    ("job.list", {"method": "'; DROP TABLE jobs; --"}, "method", "method name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "params", "field", "rule"),
    ABSURD,
    ids=[f"{m}-{f}-{i}" for i, (m, _p, f, _r) in enumerate(ABSURD)],
)
def test_absurd_values_are_invalid_params_naming_the_field(
    service: ServiceProcesses, method: str, params: dict[str, Any], field: str, rule: str
) -> None:
    reply = _call(service, method, params)
    _check_reply(reply, (method, field))
    assert reply["status"] == "error", (method, field, str(reply)[:300])
    assert reply["error"]["code"] == "INVALID_PARAMS", reply["error"]
    message = reply["error"]["message"]
    assert field in message, message
    assert rule in message, message


def test_nan_infinity_and_overflowing_literals_are_parse_errors(
    service: ServiceProcesses,
) -> None:
    head = b'{"method": "execute.order", "params": {"symbol": "AAPL", "action": "buy", "quantity": '
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1E309"):
        reply = raw_request(service.endpoint, head + literal + b"}}")
        assert reply["status"] == "error" and reply["error"]["code"] == "PARSE_ERROR", literal
    # Literals orjson does parse reach the model and fail there, naming the field.
    for literal in (b"1e308", b"-0.0", b"0.1e-400", b"18446744073709551616", b"-1e308"):
        reply = raw_request(service.endpoint, head + literal + b"}}")
        assert reply["error"]["code"] == "INVALID_PARAMS", (literal, reply["error"])
        assert "quantity" in reply["error"]["message"]
    history = b'{"method": "get.market_data", "params": {"symbol": "AAPL", "history": 1e400}}'
    assert raw_request(service.endpoint, history)["error"]["code"] == "PARSE_ERROR"


def test_every_built_in_params_model_shares_the_hardened_base() -> None:
    """A new method inherits the NaN / length rules by deriving from ParamsModel."""
    specs = _specs()
    assert {"execute.order", "evaluate.risk", "job.list", "scan.market"} <= set(specs)

    def models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
        yield model
        for field in model.model_fields.values():
            for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
                for inner in (arg, *getattr(arg, "__args__", ())):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        yield from models(inner)

    for name, spec in specs.items():
        for model in models(spec.params_model):
            assert issubclass(model, ParamsModel), (name, model.__name__)


# --- (b) SQL injection through every string field -------------------------------------------


def test_injection_strings_in_every_string_field_leave_the_database_intact(
    service: ServiceProcesses,
) -> None:
    pids_before = {w["pid"] for w in service.wait_workers(2)["worker_list"]}
    _seed(service)
    before = _snapshot(service)
    cases = injection_requests()
    fields = {(m, f) for m, _p, f in cases}
    # The schemas were walked into lists and nested models.
    assert {
        ("execute.order", "client_order_id"),
        ("evaluate.risk", "portfolio.0.symbol"),
        ("evaluate.risk", "proposed_trade.symbol"),
        ("scan.market", "symbols.0"),
        ("job.list", "method"),
        ("job.status", "job_id"),
    } <= fields
    assert len(fields) >= 40, sorted(fields)

    new_orders: set[str] = set()
    new_jobs: set[str] = set()
    outcomes: dict[str, int] = {}
    for method, params, field in cases:
        reply = _call(service, method, params)
        # The broker quotes these whole (see test_broker_job_methods_check_their_params).
        _check_reply(reply, (method, field), short=method not in BROKER_JOB_METHODS)
        code = reply["error"]["code"] if reply["status"] == "error" else "success"
        outcomes[code] = outcomes.get(code, 0) + 1
        if reply["status"] == "success" and method == "execute.order":
            new_orders.add(reply["data"]["order_id"])
        if reply["status"] == "success" and method == "job.submit":
            new_jobs.add(reply["data"]["job_id"])
    # The legacy dialect: the action names the method.
    for inj in INJECTIONS:
        for message in (
            {"action": inj, "params": {}},
            {"action": "analyze_strategy", "params": {"symbol": inj, "timeframe": "1h"}},
        ):
            reply = _send(service, message)
            assert reply["success"] is False and reply["error"], str(reply)[:300]
    # Most of them are refused by the models; none of them broke anything.
    assert outcomes.get("INVALID_PARAMS", 0) > len(cases) // 2, outcomes

    with service.client() as c:
        for job_id in new_jobs:  # the injected params reached a worker and failed there
            job = wait_job(c, job_id, {"succeeded", "failed"}, timeout=60)
            assert job["state"] == "failed" and job["error"]["code"] == "INVALID_PARAMS", job
    end = _send(service, {"request_id": "end-marker", "method": "clock.get", "params": {}})
    assert end["status"] == "success"
    _wait_logged(service, "end-marker")
    after = _snapshot(service)
    _assert_intact(before, after, new_orders, new_jobs)
    assert len(after["log_ids"]) >= len(before["log_ids"]) + len(cases)

    pids_after = {w["pid"] for w in service.wait_workers(2)["worker_list"]}
    assert pids_after == pids_before


def test_monitoring_api_filters_take_injection_strings_as_values(
    service: ServiceProcesses,
) -> None:
    marker = _send(service, {"request_id": "api-marker", "method": "clock.get"})
    assert marker["status"] == "success"
    _wait_logged(service, "api-marker")
    before = _snapshot(service)
    api = service.api_url
    values = [*INJECTIONS[:-1], "A" * 4096]
    with httpx.Client(timeout=10.0) as http:
        for value in values:
            for name, column in (
                ("method", "method"),
                ("worker", "worker_id"),
                ("request_id", "request_id"),
            ):
                r = http.get(f"{api}/api/logs", params={name: value})
                if len(value) > 128:
                    assert r.status_code == 422, (name, r.text[:200])
                    assert r.json()["error"]["code"] == "INVALID_PARAMS"
                    continue
                assert r.status_code == 200, (name, value, r.text[:200])
                body = r.json()
                # An equality filter: "1 OR 1=1" matches rows holding exactly that, not all.
                assert all(item[column] == value for item in body["items"]), (name, value)
            for name in ("since", "until", "status"):
                r = http.get(f"{api}/api/logs", params={name: value})
                assert r.status_code in (400, 422), (name, value, r.text[:200])
                assert r.json()["error"]["code"] == "INVALID_PARAMS"
            for route in ("/api/logs/", "/api/jobs/"):
                r = http.get(api + route + quote(value, safe=""))
                if r.status_code == 200:  # a request logged under that very id
                    assert r.json()["request_id"] == value
                    continue
                assert r.status_code in (404, 422), (route, value, r.text[:200])
                assert r.json()["error"]["code"] in ("NOT_FOUND", "INVALID_PARAMS")
        r = http.get(f"{api}/api/logs", params={"offset": 2**63})
        assert r.status_code == 422 and "offset" in r.json()["error"]["message"]
        r = http.get(f"{api}/api/logs", params={"request_id": "api-marker"})
        assert r.status_code == 200 and [i["request_id"] for i in r.json()["items"]] == [
            "api-marker"
        ]
    _assert_intact(before, _snapshot(service), set(), set())


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("job.submit", {"method": "A" * 100_000, "params": {}}),
        ("job.cancel", {"job_id": "A" * 100_000}),
        ("job.cancel", {"job_id": "job-1' OR '1'='1"}),
    ],
    ids=["submit-long-method", "cancel-long-id", "cancel-quote"],
)
def test_broker_job_methods_check_their_params(
    service: ServiceProcesses, method: str, params: dict[str, Any]
) -> None:
    reply = _call(service, method, params)
    assert reply["error"]["code"] == "INVALID_PARAMS"
    assert len(reply["error"]["message"]) < 1000


# --- (c) odd request ids and client names ---------------------------------------------------

ODD_IDS = (
    "req'; DROP TABLE request_logs; --",
    "1 OR 1=1",
    "日本語-✓-id",
    '"quoted" %_ \\',
    "x" * 128,
)
# Control and format characters could forge log lines or hide what an id says.
REFUSED_IDS = ("tab\there\nnewline", "nul\x00byte", "\u202eevil")


def test_odd_request_ids_travel_unchanged_and_odd_client_names_are_refused(
    service: ServiceProcesses,
) -> None:
    pids_before = service.worker_pids()
    for rid in ODD_IDS:
        reply = _send(
            service,
            {
                "request_id": rid,
                "method": "get.market_data",
                "params": {"symbol": "AAPL"},
                "client": "scanner",
            },
        )
        _check_reply(reply, rid)
        assert reply["status"] == "success" and reply["request_id"] == rid, reply["error"]
        assert reply["data"]["symbol"] == "AAPL"
    # A client name is a permissions and rate-limit key: odd text is refused, naming the rule.
    for i, name in enumerate(("client'; DROP TABLE jobs; --", "nul\x00", "日本語", "x" * 65)):
        rid = f"odd-client-{i}"
        reply = _send(service, {"request_id": rid, "method": "clock.get", "client": name})
        _check_reply(reply, name)
        assert reply["error"]["code"] == "INVALID_REQUEST" and reply["request_id"] == rid
        assert "client" in reply["error"]["message"]
    for rid in REFUSED_IDS:
        refused = _send(service, {"request_id": rid, "method": "clock.get"})
        assert refused["error"]["code"] == "INVALID_REQUEST", rid
        assert "printable" in refused["error"]["message"]
    too_long = _send(service, {"request_id": "x" * 129, "method": "clock.get"})
    assert too_long["error"]["code"] == "INVALID_REQUEST"
    assert "128" in too_long["error"]["message"]

    # The worker stores the request id with the order (idempotency key), as given.
    order_rid = "ord'; DROP TABLE orders; --"
    order = _send(
        service,
        {
            "request_id": order_rid,
            "method": "execute.order",
            "params": {"symbol": "MSFT", "action": "buy", "quantity": 1, "price": 1.0},
        },
    )
    assert order["status"] == "success" and order["request_id"] == order_rid
    conn = _db(service)
    try:
        stored = conn.execute(
            "SELECT request_id FROM orders WHERE order_id = ?", (order["data"]["order_id"],)
        ).fetchone()
    finally:
        conn.close()
    assert stored == (order_rid,)

    with httpx.Client(timeout=10.0) as http:
        for rid in ODD_IDS:
            assert _wait_logged(service, rid) == [(rid, "get.market_data", "success")]
            r = http.get(f"{service.api_url}/api/logs", params={"request_id": rid})
            assert r.status_code == 200 and [i["request_id"] for i in r.json()["items"]] == [rid]
            one = http.get(f"{service.api_url}/api/logs/{quote(rid, safe='')}")
            assert one.status_code == 200, (rid, one.text[:200])
            assert one.json()["request_id"] == rid
    assert _snapshot(service)["integrity"] == [("ok",)]
    assert service.worker_pids() == pids_before

"""The data chain end to end (regression checklist, section 1), with real parts only.

scan -> Redis -> PUB -> trader -> analyse -> risk -> execute -> portfolio -> notification,
through ScanPulse (examples/scanpulse), a real redis-server, a lone broker and separate
worker processes, so the broker can be SIGKILLed and restarted on the same ports while the
workers and the SQLite ledger survive. Run twice: clean, then with a worker killed -9
between analyse and execute, the trader killed right after its order was placed, and the
broker killed and restarted while the order is on its way. Afterwards every opportunity is
in a final state, every approved order was filled exactly once, and every fill was notified
exactly once.

The day and symbols are chosen so the quant engine says BUY for several symbols and HOLD
for others (2025-06-02: XOM, KO, JPM buy; AAPL, GE, NVDA hold), and the scan's score (the
chance of a positive month) leaves NVDA under the minimum score. The service's trading
config blocks JPM, so one buy is refused by the risk check. The test does not trust those facts:
it asks the service for each decision itself and checks that the chain did what each
answer implies, and that the data still gives at least two fills, a refusal and a HOLD.
"""

from __future__ import annotations

import ast
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
import zmq

from examples.scanpulse import Notifier, Pipeline, Scanner, ScanPulseConfig, Store, Trader
from examples.scanpulse.bus import OPPORTUNITY, Publisher
from examples.scanpulse.pipeline import start_thread
from tests.support.service import REPO, ServiceProcesses, pid_alive

AS_OF = "2025-06-02"
SYMBOLS = ("XOM", "KO", "AAPL", "JPM", "GE", "NVDA")
MIN_SCORE = 0.5459
QUANTITY = 100.0
BLOCKED = "JPM"
FINAL = {"filled", "skipped", "rejected", "failed", "ordered"}


class TraderKilled(BaseException):
    """Stands for kill -9 of the trader: nothing after it runs, no handler catches it."""


def _service(tmp: Path, workers: int) -> ServiceProcesses:
    """A lone broker plus ``workers`` worker processes; JPM blocked; the account at AS_OF."""
    trading = yaml.safe_load((REPO / "config" / "trading_config.yaml").read_text())
    trading["limits"]["blocked_symbols"] = [BLOCKED]
    trading_path = tmp / "trading_config.yaml"
    trading_path.write_text(yaml.safe_dump(trading))
    svc = ServiceProcesses(
        tmp,
        workers=workers,
        TACORE_TRADING_CONFIG=trading_path,
        TACORE_ALLOW_PORTFOLIO_RESET=1,
        TACORE_API_ENABLED="false",
    )
    svc.start_broker()
    for _ in range(workers):
        svc.start_worker()
    svc.wait_workers(workers)
    with svc.client() as console:  # an operator, not ScanPulse: the demo account's start
        console.call("portfolio.reset", {"as_of": AS_OF})
    return svc


def _config(svc: ServiceProcesses, redis_url: str, **changes: Any) -> ScanPulseConfig:
    return (
        ScanPulseConfig(
            endpoints=(svc.endpoint,),
            redis_url=redis_url,
            key_prefix=f"sp-test-{uuid.uuid4().hex[:8]}",
            market="US",
            symbols=SYMBOLS,
            as_of=AS_OF,
            min_score=MIN_SCORE,
            quantity=QUANTITY,
            timeout_ms=2000,
            retries=5,
            reconcile_interval_s=0.3,
            max_attempts=10,
        )
        .on_free_loopback_ports()
        .replace(**changes)
    )


@pytest.fixture
def service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServiceProcesses]:
    svc = _service(tmp_path, getattr(request, "param", 2))
    try:
        yield svc
    finally:
        svc.stop()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _read_only(db_path: Path, sql: str) -> list[sqlite3.Row]:
    """Rows straight from the service's SQLite file, opened read-only beside the service."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _ledger(db_path: Path) -> list[sqlite3.Row]:
    """Orders with their fill count, straight from the paper ledger's SQLite file."""
    return _read_only(
        db_path,
        "SELECT o.order_id, o.client_order_id, o.symbol, o.status, o.filled_quantity, "
        "COUNT(f.fill_id) AS fills, COALESCE(SUM(f.quantity), 0) AS fill_qty "
        "FROM orders o LEFT JOIN fills f ON f.order_id = o.order_id GROUP BY o.order_id",
    )


def assert_chain_complete(
    svc: ServiceProcesses, config: ScanPulseConfig, stdout_lines: list[str] | None = None
) -> dict[str, Any]:
    """Every hop, checked against Redis, the service's answers and the SQLite ledger."""
    store = Store(config)
    try:
        scans = store.scans()
        stream = store.stream_entries(store.k_opportunities)
        rows = {r["opportunity_id"]: r for r in store.opportunities()}
        notifications = store.notifications()
        fills_stream = store.stream_entries(store.k_fills)
        backlog = store.backlog()
    finally:
        store.close()

    # scan -> Redis: the scan with every result, and its opportunities on the stream.
    assert len(scans) == 1
    scan = scans[0]
    assert {r["symbol"] for r in scan["results"]} == set(SYMBOLS)
    expected_ids = [
        f"{r['symbol']}:{r['as_of']}" for r in scan["results"] if r["score"] >= MIN_SCORE
    ]
    assert scan["opportunities"] == expected_ids and 0 < len(expected_ids) < len(SYMBOLS)
    assert [e["opportunity_id"] for e in stream] == expected_ids
    assert all(e["scan_id"] == scan["scan_id"] for e in stream)
    assert set(rows) == set(expected_ids)
    assert backlog == {"opportunities": 0, "fills": 0}

    with svc.client() as console:
        decisions = {
            oid: console.call("analyze.stock", {"symbol": row["symbol"], "as_of": row["as_of"]})
            for oid, row in rows.items()
        }
        orders = console.call("order.list", {"limit": 500})["orders"]
        portfolio = console.call("portfolio.get", {"as_of": AS_OF})
        by_cid = {
            row["client_order_id"]: console.call(
                "order.status", {"client_order_id": row["client_order_id"]}
            )
            for row in rows.values()
            if row.get("client_order_id")
        }

    filled: dict[str, str] = {}  # opportunity id -> order id
    for oid, row in rows.items():
        symbol, action = row["symbol"], decisions[oid]["action"]
        assert row["state"] in FINAL, row
        # analysed: the trader's decision is the service's decision for that symbol and day.
        assert row["decision"] == action and row["hops"][0] == "analysed", row
        if action != "BUY":
            assert row["state"] == "skipped" and row["reason"].startswith("analysis: ")
            assert row["hops"] == ["analysed", "skipped"] and "order_id" not in row
            continue
        # risk: evaluated with the proposed trade; the blocked symbol refused.
        proposed = orjson.loads(row["proposed_trade"])
        assert proposed == {"symbol": symbol, "action": "buy", "quantity": QUANTITY}
        assert "symbol_allowed" in orjson.loads(row["checks"])
        if symbol == BLOCKED:
            assert row["risk_approved"] == "0" and row["state"] == "skipped"
            assert "symbol_allowed" in row["reason"] and "order_id" not in row
            assert row["hops"] == ["analysed", "risk_checked", "skipped"]
            continue
        assert row["risk_approved"] == "1" and row["state"] == "filled", row
        # A hop may repeat after a fault (analysed again after a restart), never go back
        # after the order: ordering is the last hop before filled.
        assert row["hops"][-2:] == ["ordering", "filled"] and "risk_checked" in row["hops"]
        assert row["client_order_id"] == f"sp-{oid}"
        order = by_cid[row["client_order_id"]]
        assert order["order_id"] == row["order_id"] and order["status"] == "filled"
        assert len(order["fills"]) == 1 and order["fills"][0]["quantity"] == QUANTITY
        assert float(row["fill_price"]) == pytest.approx(order["fills"][0]["price"])
        filled[oid] = order["order_id"]

    # The data still exercises every branch: orders, a risk refusal and a non-buy.
    actions = Counter(d["action"] for d in decisions.values())
    assert len(filled) >= 2 and actions["BUY"] > len(filled) and len(filled) < len(rows)

    # execute: exactly one order per approved opportunity, filled once (service and ledger).
    mine = [o for o in orders if (o.get("client_order_id") or "").startswith("sp-")]
    assert sorted(o["order_id"] for o in mine) == sorted(filled.values())
    assert all(o["status"] == "filled" and len(o["fills"]) == 1 for o in mine)
    ledger = _ledger(svc.db_path)
    per_cid = Counter(r["client_order_id"] for r in ledger)
    assert all(n == 1 for n in per_cid.values())
    assert {r["order_id"] for r in ledger if r["fills"]} == set(filled.values())
    assert all(r["fills"] == 1 and r["fill_qty"] == QUANTITY for r in ledger if r["fills"])

    # portfolio: positions are exactly the sum of those single fills.
    symbols_filled = Counter(rows[oid]["symbol"] for oid in filled)
    assert {s: p["quantity"] for s, p in portfolio["positions"].items()} == {
        s: n * QUANTITY for s, n in symbols_filled.items()
    }

    # notification: each fill once, on the list and (for the clean run) on stdout.
    assert sorted(n["order_id"] for n in notifications) == sorted(filled.values())
    assert sorted(f["order_id"] for f in fills_stream) == sorted(filled.values())
    for n in notifications:
        assert n["opportunity_id"] in filled and n["quantity"] == QUANTITY
    if stdout_lines is not None:
        assert len(stdout_lines) == len(filled)
        for order_id in filled.values():
            assert sum(order_id in line for line in stdout_lines) == 1
    return {"rows": rows, "filled": filled, "decisions": decisions}


def test_clean_chain_every_hop(service: ServiceProcesses, redis_server: str) -> None:
    config = _config(service, redis_server)
    events: list[dict[str, Any]] = []
    out = io.StringIO()
    pipeline = Pipeline(config, emit=events.append, notifier_out=out)
    assert pipeline.run(cycles=1, drain_timeout_s=60), pipeline.errors
    assert pipeline.errors == []

    result = assert_chain_complete(service, config, out.getvalue().splitlines())
    rows = result["rows"]
    # PUB: with the subscribers waited for, every opportunity also came over the fast path,
    # and the trader handled each once although the stream delivered it too.
    assert all(r.get("pub_received") == "1" for r in rows.values())
    assert pipeline.trader.stats["received_pub"] == len(rows)
    handled = [e["opportunity_id"] for e in events if e["hop"] == "received"]
    assert sorted(handled) == sorted(rows)
    assert pipeline.notifier.stats["notified"] == len(result["filled"])
    assert not [e for e in events if e["hop"] in ("retry", "error", "scan_failed")]

    # The service saw ScanPulse's calls under the names its permissions know.
    def logged() -> list[sqlite3.Row]:
        return _read_only(
            service.log_path,
            "SELECT method, client_id, request_data FROM request_logs "
            "WHERE method IN ('scan.market', 'evaluate.risk', 'execute.order')",
        )

    buys = [r for r in rows.values() if r["decision"] == "BUY"]
    _wait(lambda: len(logged()) >= 1 + len(buys) + len(result["filled"]), 5, "request log")
    log = logged()
    assert {(r["method"], r["client_id"]) for r in log} == {
        ("scan.market", "scanner"),
        ("evaluate.risk", "trader"),
        ("execute.order", "trader"),
    }
    risked = sorted(
        orjson.loads(r["request_data"])["params"]["proposed_trade"]["symbol"]
        for r in log
        if r["method"] == "evaluate.risk"
    )
    assert risked == sorted(r["symbol"] for r in buys)

    # Scanning the same day again sights the same opportunities: nothing is bought twice.
    again = Pipeline(config, emit=events.append, notifier_out=out)
    assert again.run(cycles=1, drain_timeout_s=30) and again.errors == []
    with Trader(config) as late:  # whatever the stream still holds of the second scan
        late.reconcile()
    assert again.trader.stats["filled"] + late.stats["filled"] == 0
    assert again.trader.stats["already_done"] + late.stats["already_done"] >= len(rows)
    store = Store(config)
    try:
        assert len(store.scans()) == 2
        assert {
            oid: r["sightings"]
            for oid, r in ((r["opportunity_id"], r) for r in store.opportunities())
        } == {oid: "2" for oid in rows}
        assert store.backlog() == {"opportunities": 0, "fills": 0}
    finally:
        store.close()
    with service.client() as console:
        assert console.call("order.list", {"limit": 500})["total"] == len(result["filled"])


@pytest.mark.parametrize("service", [1], indirect=True)  # one worker: the kill always bites
def test_chain_survives_worker_trader_and_broker_kills(
    service: ServiceProcesses, redis_server: str
) -> None:
    svc = service
    config = _config(svc, redis_server)
    events: list[dict[str, Any]] = []
    errors: list[tuple[str, BaseException]] = []
    faults: list[str] = []
    stop = threading.Event()
    restarted = threading.Event()
    crashed_ids: list[str] = []
    events_at_crash: list[int] = []
    killed_at: list[float] = []
    in_flight: list[str] = []
    killed_pid: list[int] = []

    def restart_broker_soon() -> None:
        time.sleep(0.5)
        svc.start_broker()  # the same ports; the workers re-register with it
        restarted.set()

    def first_trader_hook(hop: str, opp: dict[str, Any], detail: dict[str, Any]) -> None:
        if hop == "analysed" and detail["analysis"]["action"] == "BUY" and not faults:
            if opp["symbol"] == BLOCKED:
                return
            # kill -9 the only worker between analyse and execute; a replacement starts,
            # as a supervisor would, and the broker re-dispatches what the dead one had.
            (pid,) = svc.worker_pids()
            os.kill(pid, signal.SIGKILL)
            killed_pid.append(pid)
            faults.append(f"worker {pid} killed after analysing {opp['symbol']}")
            svc.start_worker()
        if hop == "ordered" and faults and not crashed_ids:
            crashed_ids.append(opp["opportunity_id"])
            events_at_crash.append(len(events))
            faults.append(f"trader killed with {opp['symbol']}'s order placed, not recorded")
            raise TraderKilled(opp["opportunity_id"])

    def second_trader_hook(hop: str, opp: dict[str, Any], detail: dict[str, Any]) -> None:
        if hop == "ordering" and not killed_at:
            # SIGKILL the broker as execute.order is about to go out: the order request
            # is in flight while there is no broker, then a new one on the same ports.
            assert svc.main is not None
            old = svc.main
            os.kill(old.pid, signal.SIGKILL)
            old.wait()
            killed_at.append(time.time())
            faults.append(f"broker {old.pid} killed with {opp['symbol']}'s order in flight")
            in_flight.append(opp["opportunity_id"])
            threading.Thread(target=restart_broker_soon, daemon=True).start()

    out = io.StringIO()
    notifier = Notifier(config, emit=events.append, out=out)
    trader1 = Trader(config, emit=events.append, hook=first_trader_hook)
    scanner = Scanner(config, emit=events.append)
    threads = [
        start_thread("notifier", notifier.run, errors, stop),
        start_thread("trader1", trader1.run, errors, stop, 1),
        start_thread("scanner", scanner.run, errors, stop, 1, 1),
    ]
    try:
        threads[1].join(60)
        assert not threads[1].is_alive(), "the first trader was never killed"
        assert [n for n, e in errors] == ["trader1"] and isinstance(errors[0][1], TraderKilled)
        errors.clear()
        crashed = crashed_ids[0]
        store = Store(config)
        try:
            # The order is in the ledger, but Redis still says "ordering": not processed.
            assert store.opportunity(crashed)["state"] == "ordering"
            assert not store.is_processed(crashed)
        finally:
            store.close()

        trader2 = Trader(config, emit=events.append, hook=second_trader_hook)
        threads.append(start_thread("trader2", trader2.run, errors, stop))
        store = Store(config)
        try:
            _wait(
                lambda: (
                    not errors
                    and restarted.is_set()
                    and store.backlog() == {"opportunities": 0, "fills": 0}
                ),
                60,
                "the chain to drain after the faults",
            )
        finally:
            store.close()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    assert len(faults) == 3, faults
    assert svc.main is not None and svc.main.poll() is None  # the restarted broker
    # The broker lost the killed worker mid-chain (found it unreachable when handing it the
    # next request, or missed its heartbeats and re-dispatched what it had) and went on.
    broker_log = (svc.tmp / "logs" / "tacoreservice.log").read_text()
    assert re.search(rf"worker \S+-{killed_pid[0]}-\S+ .*evicting", broker_log), broker_log

    result = assert_chain_complete(svc, config)
    rows, filled = result["rows"], result["filled"]
    # The crashed trader's order was found by its client_order_id, not placed again.
    assert any(e["hop"] == "resumed" and e["opportunity_id"] == crashed for e in events)
    assert rows[crashed]["duplicate"] == "1" and crashed in filled
    # What the dead trader had not finished (received over PUB, or handed to it from the
    # stream and left unacknowledged) was recovered from the Redis stream: the second trader
    # got every one of them from there, none over PUB. (How many the first one finished
    # depends on when its periodic reconcile ran, so the set is counted, not assumed.)
    before, after = events[: events_at_crash[0]], events[events_at_crash[0] :]
    finished_first = {e["opportunity_id"] for e in before if e["hop"] == "final"}
    recovered = {
        e["opportunity_id"] for e in after if e["hop"] == "received" and e["via"] == "stream"
    }
    unfinished = set(rows) - finished_first
    assert crashed in unfinished and unfinished <= recovered, (unfinished, recovered)
    assert trader2.stats["received_pub"] == 0
    assert trader2.stats["received_stream"] >= len(unfinished)
    # The order sent into the dead broker was executed after it, through the new one.
    flown = rows[in_flight[0]]
    assert flown["state"] == "filled" and in_flight[0] != crashed
    with svc.client() as console:
        order = console.call("order.status", {"order_id": flown["order_id"]})
    created = datetime.fromisoformat(order["created_at"]).timestamp()
    assert created > killed_at[0] + 0.4
    assert notifier.stats["notified"] == len(filled)
    assert len(out.getvalue().splitlines()) == len(filled)


def test_a_trader_stopped_notes_what_pub_delivered_that_it_had_not_read(
    redis_server: str,
) -> None:
    """The pipeline stops the trader as soon as Redis shows nothing pending, which is often
    right after a reconcile finished opportunities whose PUB messages still wait unread in
    the trader's SUB socket. Those were delivered: on stop they are noted as received over
    PUB (and not handled again, nor handled at all if not done: the stream keeps those)."""
    config = ScanPulseConfig(
        endpoints=("tcp://127.0.0.1:1",),  # never called: the opportunity is already done
        redis_url=redis_server,
        key_prefix=f"sp-test-{uuid.uuid4().hex[:8]}",
        symbols=("XOM",),
        as_of=AS_OF,
    ).on_free_loopback_ports()
    oid = f"XOM:{AS_OF}"
    store = Store(config)
    publisher = Publisher(zmq.Context.instance(), config.pub_bind)
    events: list[dict[str, Any]] = []
    stop = threading.Event()

    class StoppedAfterFirstReconcile(Trader):
        def reconcile(self) -> int:
            # Published and queued in the SUB socket, then the stop: the loop never reads it.
            assert publisher.wait_subscribers(1, 10.0)
            publisher.publish(OPPORTUNITY, {"opportunity_id": oid, "symbol": "XOM"})
            assert self.subscriber is not None and self.subscriber.sock.poll(10_000)
            stop.set()
            return super().reconcile()

    try:
        store.finish(oid, "skipped", reason="done before the test")
        trader = StoppedAfterFirstReconcile(config, emit=events.append)
        trader.run(stop)
        assert store.opportunity(oid)["pub_received"] == "1"
        assert trader.stats["received_pub"] == 1
        assert not [e for e in events if e["hop"] == "received"]  # noted, not handled
    finally:
        publisher.close()
        store.close()


def _import_violations(source: str, filename: str) -> list[str]:
    """Imports a ScanPulse module may not make: anything of tacoreservice but its client."""
    public = {"TACoreClient", "AsyncTACoreClient", "TACoreError", "TACoreTimeout"}
    allowed_roots = set(sys.stdlib_module_names) | {"zmq", "redis", "orjson", "examples"}
    bad = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in allowed_roots:
                    bad.append(f"{filename}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: inside examples.scanpulse
                continue
            if module == "tacoreservice":
                extra = {a.name for a in node.names} - public
                if extra:
                    bad.append(f"{filename}:{node.lineno} from tacoreservice import {extra}")
            else:
                root = module.split(".")[0]
                foreign_example = root == "examples" and not module.startswith("examples.scanpulse")
                if root not in allowed_roots or foreign_example:
                    bad.append(f"{filename}:{node.lineno} from {module} import ...")
    return bad


def test_scanpulse_imports_only_the_public_client() -> None:
    files = sorted((REPO / "examples" / "scanpulse").rglob("*.py"))
    assert len(files) >= 8
    violations = [v for f in files for v in _import_violations(f.read_text(), f.name)]
    assert violations == []
    sources = "\n".join(f.read_text() for f in files)
    assert "importlib" not in sources and "__import__" not in sources  # no way around it
    # The check itself catches what it is there for.
    assert _import_violations("from tacoreservice.config import Settings", "x.py")
    assert _import_violations("import tacoreservice.broker", "x.py")
    assert _import_violations("from tacoreservice import TACoreClient, Settings", "x.py")
    assert _import_violations("import numpy", "x.py")
    assert not _import_violations("from tacoreservice import TACoreClient, TACoreError", "x.py")


def test_config_from_env_names_the_bad_variable() -> None:
    config = ScanPulseConfig.from_env(
        {
            "TACORE_ENDPOINT": "tcp://a:5555, tcp://b:5555",
            "SCANPULSE_SYMBOLS": "AAPL, MSFT",
            "SCANPULSE_AS_OF": "2025-09-02",
            "SCANPULSE_PUB": "tcp://scanner:5570",
            "SCANPULSE_PUB_BIND": "tcp://*:5570",
        }
    )
    assert config.endpoints == ("tcp://a:5555", "tcp://b:5555")
    assert config.symbols == ("AAPL", "MSFT") and config.as_of == "2025-09-02"
    assert (config.pub, config.pub_bind) == ("tcp://scanner:5570", "tcp://*:5570")
    assert config.fills_pub_bind == config.fills_pub == "tcp://127.0.0.1:5571"
    for env, words in (
        ({"SCANPULSE_MIN_SCORE": "2"}, ["SCANPULSE_MIN_SCORE", "0 to 1"]),
        ({"SCANPULSE_AS_OF": "02/09/2025"}, ["SCANPULSE_AS_OF", "YYYY-MM-DD"]),
        ({"SCANPULSE_QUANTITY": "lots"}, ["SCANPULSE_QUANTITY", "not a number"]),
        ({"SCANPULSE_PUB": "localhost:5570"}, ["SCANPULSE_PUB", "tcp://"]),
    ):
        with pytest.raises(ValueError) as info:
            ScanPulseConfig.from_env(env)
        assert all(w in str(info.value) for w in words), info.value


def test_tacore_demo_pipeline(redis_server: str, tmp_path: Path) -> None:
    """`tacore demo pipeline` starts the service, runs the chain, prints each hop and a
    summary table that fits an 80-column terminal, and stops what it started; run from outside
    the checkout, as a user might."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCANPULSE_", "TACORE_"))}
    env |= {"REDIS_URL": redis_server.rsplit("/", 1)[0] + "/3", "COLUMNS": "80"}
    args = ["demo", "pipeline", "--as-of", AS_OF, "--symbols", ",".join(SYMBOLS)]
    args += ["--min-score", str(MIN_SCORE), "--quantity", "100"]
    proc = subprocess.run(
        [sys.executable, "-m", "tacoreservice", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = proc.stdout
    assert proc.returncode == 0, text + proc.stderr
    assert re.search(rf"scan scan-\S+ as of {AS_OF}: 6 results,\s+\d+\s+opportunities", text)
    fills = re.findall(r"(\w+): order (ord-\w+) filled 100 @ [\d.]+", text)
    notified = re.findall(r"(\w+): notification recorded for order (ord-\w+)", text)
    assert len(fills) >= 2 and sorted(fills) == sorted(notified)
    assert "analysed -> HOLD" in text and "analysed -> BUY" in text
    assert f"{BLOCKED}: risk for buy 100 -> approved" in text  # no block in the shipped config
    assert "ScanPulse: each opportunity's way through the chain" in text
    # The summary table at 80 columns: nothing wider, no cell cut short, and one line per
    # opportunity (a word wrapped inside a cell would add a continuation line).
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    rows = [line for line in text.splitlines() if line.startswith("│ ")]
    assert rows[0].split("│")[1].strip() == "symbol"
    assert sorted(r.split("│")[1].strip() for r in rows[1:]) == sorted(
        s for s in SYMBOLS if f"  {s}: opportunity " in text
    )
    started = re.search(r"service started on \S+ \(pid (\d+)", text)
    assert started is not None
    assert not pid_alive(int(started.group(1)))  # the demo stopped the service it started


def test_tacore_demo_pipeline_without_redis_says_how_to_get_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"PATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "tacoreservice", "demo", "pipeline"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "redis-server" in proc.stderr and "REDIS_URL" in proc.stderr

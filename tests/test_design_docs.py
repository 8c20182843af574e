"""Conformance with the design documents (issue 15): each sample, name and recipe as written.

One section per gap of the issue, each using the documents' own names and access patterns
(``response["result"][...]``, the env var names, the DDL, the ops one-liners) against a real
``python -m tacoreservice.main``, real sockets, a real SQLite file and a real redis-server. The
compose and image checks of gap 6 live in test_deploy_files.py beside the compose machinery
(test_private_override_serves_plain_req_samples_on_loopback_only,
test_image_run_alone_refuses_and_says_what_to_set, test_ops_guide_service_name_exists).
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from tacoreservice.client import TACoreClient
from tacoreservice.config import load_settings
from tacoreservice.market_data.bundled_provider import BundledProvider
from tacoreservice.storage.database import (
    MIGRATIONS,
    open_database,
    open_request_log_database,
    schema_version,
)
from tacoreservice.storage.request_log import RequestLogEntry, RequestLogWriter
from tests.support.http_server import serve_http
from tests.support.service import REPO, ServiceProcesses, free_port, raw_request

V35_SYMBOLS = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    svc = ServiceProcesses(tmp_path_factory.mktemp("docs"), workers=2)
    svc.start_main()
    yield svc
    svc.stop()


def send(svc: ServiceProcesses, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """As the documents' samples do: a REQ socket, one JSON frame with a request_id."""
    body = {
        "method": method,
        "params": params,
        "request_id": f"doc-{uuid.uuid4().hex[:12]}",
        "timestamp": "2026-01-06T00:00:00Z",
    }
    return raw_request(svc.endpoint, orjson.dumps(body), timeout_ms=60_000)


# --- gap 1: the V3.5 scanner module's own calls ---------------------------------------------


def test_v35_scanner_calls_end_to_end(service: ServiceProcesses) -> None:
    reply = send(service, "scan.market", {"symbols": V35_SYMBOLS, "scan_type": "comprehensive"})
    assert reply["status"] == "success", reply
    rows = reply["result"]["scan_results"]
    assert sorted(r["symbol"] for r in rows) == sorted(V35_SYMBOLS)
    assert reply["result"]["unknown_symbols"] == []

    # One symbol the data lacks costs nothing but its own row.
    reply = send(service, "scan.market", {"symbols": [*V35_SYMBOLS, "XRPUSDT", "ETHUSD"]})
    assert reply["status"] == "success", reply
    assert len(reply["result"]["scan_results"]) == 4
    unknown = {u["symbol"]: u["suggestions"] for u in reply["result"]["unknown_symbols"]}
    assert set(unknown) == {"XRPUSDT", "ETHUSD"} and "ETHUSDT" in unknown["ETHUSD"]
    # None known: an error the client can act on.
    reply = send(service, "scan.market", {"symbols": ["XRPUSDT"]})
    assert reply["status"] == "error" and reply["error"]["code"] == "INVALID_PARAMS"
    assert "XRPUSDT" in reply["message"]

    # get_market_data(symbol, timeframe="1h"): crypto hourly, stocks from daily bars.
    for symbol in ("ADAUSDT", "DOTUSDT"):
        reply = send(service, "get.market_data", {"symbol": symbol, "timeframe": "1h"})
        assert reply["status"] == "success" and reply["result"]["timeframe"] == "1h"
    for symbol in ("AAPL", "600519"):
        reply = send(service, "get.market_data", {"symbol": symbol, "timeframe": "1h"})
        assert reply["status"] == "success", reply
        data = reply["result"]
        assert data["timeframe"] == "1d" and data["timeframe_requested"] == "1h"
        assert "1d" in data["timeframe_note"]
    reply = send(
        service,
        "get.market_data",
        {"symbol": "AAPL", "timeframe": "1h", "strict_timeframe": True},
    )
    assert reply["error"]["code"] == "DATA_UNAVAILABLE" and "1d, 1w" in reply["message"]


def test_bundled_ada_dot_are_the_shared_files() -> None:
    """CRLF, the whole range, the partial last bar dropped, zero-volume hours kept."""
    provider = BundledProvider()
    for symbol, first_day, last_hour in (
        ("ADAUSDT", "2018-04-17", "2026-01-06T08:00"),
        ("DOTUSDT", "2020-08-18", "2026-01-06T11:00"),
    ):
        meta = provider.file_meta(symbol, "1h")
        assert meta["line_endings"] == "CRLF" and meta["partial_last_bar"] is True
        raw = gzip.decompress((provider.data_dir / f"crypto/{symbol}_1h.csv.gz").read_bytes())
        source = REPO.parent / "shared" / "data" / "market" / "crypto" / f"{symbol}_1h.csv"
        if source.is_file():
            assert raw == source.read_bytes()
        daily = provider.bars(symbol, "1d")
        assert str(daily.time[0])[:10] == first_day and str(daily.time[-1])[:10] == "2026-01-05"
        hourly = provider.bars(symbol, "1h")
        assert str(hourly.time[-1])[:16] == last_hour and hourly.partial_bar_dropped
        zero = hourly.time[hourly.volume == 0]
        assert "2023-03-24T12:00:00" in {str(t) for t in zero}


# --- gap 2: reply fields of the documents' skeletons ----------------------------------------


def test_documented_reply_fields(service: ServiceProcesses) -> None:
    for method in ("analyze.symbol", "analyze.stock"):
        response = send(service, method, {"symbol": "AAPL", "analysis_type": "technical"})
        analysis = response["result"]["analysis"]
        decision = response["result"]
        assert analysis["trend"] in ("bullish", "bearish", "neutral")
        assert analysis["strength"] == decision["confidence"]
        assert analysis["recommendation"] == decision["action"]
        price = decision["price"]
        assert analysis["support_levels"] and all(x < price for x in analysis["support_levels"])
        assert analysis["resistance_levels"]
        assert all(x > price for x in analysis["resistance_levels"])
        assert analysis["support_levels"] == sorted(analysis["support_levels"], reverse=True)

    response = send(service, "get.market_data", {"symbol": "BTCUSDT", "timeframe": "1h"})
    data = response["result"]
    bars = BundledProvider().bars("BTCUSDT", "1h")
    day = bars.tail(24)
    assert data["high_24h"] == pytest.approx(float(day.high.max()))
    assert data["low_24h"] == pytest.approx(float(day.low.min()))
    ref = float(bars.close[-25])
    assert data["change_24h"] == pytest.approx((float(bars.close[-1]) / ref - 1) * 100, abs=1e-3)
    daily = send(service, "get.market_data", {"symbol": "AAPL"})["result"]
    assert daily["change_24h"] == daily["change_pct"] and daily["high_24h"] == daily["high"]

    response = send(service, "health.check", {})
    health = response["result"]
    assert health["uptime_seconds"] > 0 and health["worker_count"] == 2
    assert health["stats"]["total_requests"] >= 1


# --- gap 3: environment names ---------------------------------------------------------------


def test_documented_env_names(service: ServiceProcesses, tmp_path: Path) -> None:
    settings = load_settings(env={"SERVICE_ENV": "staging", "LOG_LEVEL": "debug"})
    assert settings.env == "staging" and settings.logging.level == "DEBUG"
    # Ours win over the documents' aliases.
    both = {"SERVICE_ENV": "staging", "TACORESERVICE_ENV": "production", "LOG_LEVEL": "debug"}
    assert load_settings(env=both).env == "production"

    # TACORE_SERVICE_URL: the tacore CLI, the clients and the ScanPulse example.
    env = {k: v for k, v in service.env.items() if k != "TACORE_ENDPOINT"}
    env["TACORE_SERVICE_URL"] = service.endpoint
    env["ZMQ_FRONTEND_PORT"] = str(free_port())  # not where the service is
    done = subprocess.run(
        [sys.executable, "-m", "tacoreservice", "health", "--timeout-ms", "5000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    from examples.scanpulse.config import ScanPulseConfig

    cfg = ScanPulseConfig.from_env({"TACORE_SERVICE_URL": service.endpoint})
    assert cfg.endpoints == (service.endpoint,)
    saved = os.environ.get("TACORE_SERVICE_URL")
    os.environ["TACORE_SERVICE_URL"] = service.endpoint
    try:
        with TACoreClient(timeout_ms=5000) as client:
            assert client.endpoints == [service.endpoint]
            assert client.health()["workers"]["alive"] == 2
    finally:
        if saved is None:
            os.environ.pop("TACORE_SERVICE_URL")
        else:
            os.environ["TACORE_SERVICE_URL"] = saved


# --- gap 4: the request_logs DDL -------------------------------------------------------------


def test_request_logs_ddl_retries_and_migration(tmp_path: Path) -> None:
    db = tmp_path / "tacore.db"
    # A schema-3 file, as the previous release wrote it: a retried id twice, an empty id.
    old = open_database(db, migrations=MIGRATIONS[:3])
    rows = [
        ("r-1", "get.market_data", "w1", "success", "2026-01-01T00:00:00.000000Z", 1.5),
        ("r-1", "get.market_data", "w2", "error", "2026-01-01T00:01:00.000000Z", 2.5),
        ("", "", "broker", "error", "2026-01-01T00:02:00.000000Z", 0.0),
        ("r-2", "health.check", "broker", "success", "2026-01-01T00:03:00.000000Z", 0.1),
    ]
    with old:
        old.executemany(
            "INSERT INTO request_logs (request_id, method, worker_id, status, created_at, "
            "processing_time_ms) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    old.close()

    open_database(db).close()  # migrates in place; the log's rows wait for the log's file
    log_db = tmp_path / "tacore-requests.db"
    # Retention off: these rows are from January.
    settings = load_settings(env={}).request_log.model_copy(update={"retention_days": 0})
    with RequestLogWriter(log_db, settings, ledger_path=db) as writer:
        assert writer.flush()  # the first open moved the ledger's rows over
    conn = open_request_log_database(log_db)
    ledger = open_database(db)
    assert schema_version(ledger) == len(MIGRATIONS) >= 5
    ledger_tables = {r[0] for r in ledger.execute("SELECT name FROM sqlite_master")}
    assert not {t for t in ledger_tables if "request_logs" in t}, ledger_tables
    ledger.close()
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'request_logs'").fetchone()[0]
    for clause in (
        "request_id         VARCHAR(100) PRIMARY KEY",
        "method             VARCHAR(50) NOT NULL",
        "processing_time_ms INTEGER",
        "status             VARCHAR(20) DEFAULT 'pending'",
        "created_at         TIMESTAMP DEFAULT CURRENT_TIMESTAMP",
    ):
        assert clause in ddl
    got = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT request_id, attempts, status, worker_id, created_at FROM request_logs"
        )
    }
    assert got["r-1"] == (2, "error", "w2", "2026-01-01T00:00:00.000000Z")
    assert set(got) == {"r-1", "r-2", "legacy-3"}
    # The documented defaults apply to a bare insert.
    with conn:
        conn.execute("INSERT INTO request_logs (request_id, method) VALUES ('bare', 'x')")
    status, created = conn.execute(
        "SELECT status, created_at FROM request_logs WHERE request_id = 'bare'"
    ).fetchone()
    assert status == "pending" and created
    conn.close()

    # The writer: a retried request id is one row with its attempts; no row is lost.
    with RequestLogWriter(log_db, settings, ledger_path=db) as writer:
        for i in range(50):
            writer.record(RequestLogEntry(f"w-{i}", "m", "w", b"{}", b"{}", 1.0, "success"))
        writer.record(RequestLogEntry("w-7", "m", "w9", b"{}", b"{}", 3.0, "error", "x"))
        writer.record(RequestLogEntry(None, None, "broker", b"x", b"{}", 0.0, "error"))
        assert writer.flush()
    check = sqlite3.connect(log_db)
    assert (
        check.execute("SELECT COUNT(*) FROM request_logs WHERE request_id LIKE 'w-%'").fetchone()[0]
        == 50
    )
    assert check.execute(
        "SELECT attempts, status, worker_id FROM request_logs WHERE request_id = 'w-7'"
    ).fetchone() == (2, "error", "w9")
    assert check.execute(
        "SELECT COUNT(*) FROM request_logs WHERE request_id LIKE 'unidentified-%' AND method = ''"
    ).fetchone() == (1,)
    check.close()


# --- gap 5: the ops recipes ------------------------------------------------------------------


def test_ops_recipes(service: ServiceProcesses) -> None:
    ids = [send(service, "get.market_data", {"symbol": "MSFT"})["request_id"] for _ in range(3)]
    log = service.tmp / "logs" / "performance.log"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (log.is_file() and ids[-1] in log.read_text()):
        time.sleep(0.1)
    # The ops guide's one-liner, run by a shell in the service's folder.
    done = subprocess.run(
        [
            "bash",
            "-c",
            "grep \"processing_time\" logs/performance.log | awk '{print $NF}' | sort -n",
        ],
        cwd=service.tmp,
        capture_output=True,
        text=True,
        timeout=30,
    )
    times = [float(x) for x in done.stdout.split()]
    assert len(times) >= 3 and times == sorted(times) and all(t >= 0 for t in times)

    # A LICENSE matching pyproject's licence.
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License")

    # requirements.txt installs the runtime dependencies at the image's pins.
    lines = (REPO / "requirements.txt").read_text().splitlines()
    assert "-r constraints.txt" in lines
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "-r", "requirements.txt"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def test_bandit_runs_in_ci_and_finds_no_high_severity_issue() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "-m bandit -q -r tacoreservice --severity-level high" in ci
    assert "./scripts/test.sh --cov=tacoreservice" in ci  # and CI reports coverage
    pytest.importorskip("bandit", reason="bandit is a dev dependency: pip install -e .[dev]")
    done = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-r", "tacoreservice", "-lll", "-f", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    assert report["results"] == [], report["results"]


# --- gap 7: process CPU and memory -----------------------------------------------------------


def test_process_metrics(service: ServiceProcesses) -> None:
    health = send(service, "health.check", {"detailed": True})["result"]
    assert health["process"]["pid"] == service.main.pid  # type: ignore[union-attr]
    assert health["process"]["cpu_percent"] >= 0 and 0 < health["process"]["memory_percent"] < 100
    workers = health["worker_list"]
    assert len(workers) == 2
    assert {w["process"]["pid"] for w in workers} == {w["pid"] for w in workers}
    assert all(w["process"]["rss_bytes"] > 10_000_000 for w in workers)

    text = httpx.get(service.api_url + "/metrics", timeout=10).text
    cpu = [ln for ln in text.splitlines() if ln.startswith("tacore_process_cpu_percent{")]
    mem = [ln for ln in text.splitlines() if ln.startswith("tacore_process_memory_percent{")]
    assert any('role="broker"' in ln for ln in cpu) and len(cpu) == 3
    assert sum('role="worker"' in ln for ln in mem) == 2
    for w in workers:
        assert any(f'process="{w["worker_id"]}"' in ln for ln in cpu)


# --- gap 8: POST /analyze --------------------------------------------------------------------


def test_post_analyze_strategy_request(service: ServiceProcesses) -> None:
    api = service.api_url
    reply = httpx.post(
        f"{api}/analyze",
        json={"strategy_id": "trend", "parameters": {"symbol": "AAPL"}},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) >= {"signals", "confidence", "timestamp"}
    assert body["signals"][0]["symbol"] == "AAPL" and body["signals"][0]["data_source"] == "bundled"

    # The caller's own bars, used instead of the bundled ones.
    bars = BundledProvider().bars("MSFT").tail(260)
    market_data = [
        {"time": str(t)[:10], "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for t, o, h, lo, c, v in zip(
            bars.time, bars.open.tolist(), bars.high.tolist(), bars.low.tolist(),
            bars.close.tolist(), bars.volume.tolist(), strict=True,
        )
    ]  # fmt: skip
    market_data[-1]["close"] = market_data[-1]["high"] = 10_000.0  # not MSFT's history
    reply = httpx.post(
        f"{api}/analyze",
        json={
            "strategy_id": "breakout",
            "parameters": {"symbol": "MYSTOCK"},
            "market_data": market_data,
        },
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    signal = reply.json()["signals"][0]
    assert signal["data_source"] == "caller" and signal["price"] == 10_000.0
    assert signal["symbol"] == "MYSTOCK" and signal["signal"] == "BUY"

    # Validated: a bad bar is a 422 naming it, and nothing crashed.
    market_data[5]["low"] = market_data[5]["high"] + 1
    reply = httpx.post(
        f"{api}/analyze",
        json={"strategy_id": "trend", "parameters": {}, "market_data": market_data},
        timeout=60,
    )
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "INVALID_PARAMS"
    assert "market_data[5]" in reply.json()["error"]["message"]

    # Routed through the broker: in the request log under the API's client name.
    deadline = time.monotonic() + 10
    found: list[Any] = []
    while time.monotonic() < deadline and len(found) < 3:
        with sqlite3.connect(service.log_path) as conn:
            found = conn.execute(
                "SELECT status FROM request_logs WHERE method = 'strategy.signals' "
                "AND client_id = 'http-api'"
            ).fetchall()
        time.sleep(0.1)
    assert sorted(s for (s,) in found) == ["error", "success", "success"]


def test_post_analyze_needs_the_token_when_set(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=1, TACORE_API_TOKEN="t0ken-for-analyze")
    svc.start_main()
    try:
        request = {"strategy_id": "trend", "parameters": {"symbol": "AAPL"}}
        assert httpx.post(f"{svc.api_url}/analyze", json=request, timeout=30).status_code == 401
        ok = httpx.post(
            f"{svc.api_url}/analyze",
            json=request,
            headers={"Authorization": "Bearer t0ken-for-analyze"},
            timeout=60,
        )
        assert ok.status_code == 200 and ok.json()["signals"]
    finally:
        svc.stop()


# --- gap 9: watchdog and archive backups -----------------------------------------------------


def test_watchdog_restarts_an_unhealthy_service_and_calls_the_webhook(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    svc = ServiceProcesses(tmp_path, workers=1)
    svc.start_main()
    # The restart command the operator would give: start the service again, detached.
    restart = tmp_path / "restart.sh"
    restart.write_text(
        f"#!/bin/sh\ncd {tmp_path}\nnohup {sys.executable} -m tacoreservice.main "
        f"> {tmp_path}/restarted.out 2>&1 &\necho $! > {tmp_path}/restarted.pid\n"
    )
    restart.chmod(0o755)
    with serve_http(Hook, "webhook") as url:
        dog = subprocess.Popen(
            [
                sys.executable, "-m", "tacoreservice", "watchdog", "--restart-cmd", str(restart),
                "--webhook", url, "--interval", "0.2", "--failures", "2", "--grace", "60",
                "--probe-timeout-ms", "2000", "--max-restarts", "1",
                "--endpoint", svc.endpoint,
            ],
            env=svc.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        try:
            time.sleep(1.0)
            assert dog.poll() is None  # healthy: nothing to do
            assert events == []
            svc.stop()  # the service goes away
            out, _ = dog.communicate(timeout=120)
        finally:
            if dog.poll() is None:
                dog.kill()
            pid_file = tmp_path / "restarted.pid"
            restarted = int(pid_file.read_text()) if pid_file.is_file() else None
        try:
            assert dog.returncode == 0, out
            assert [e["event"] for e in events] == ["restart", "recovered"], out
            assert events[0]["exit_code"] == 0 and events[0]["restart_command"] == str(restart)
            assert svc.health()["workers"]["alive"] == 1  # the restarted service answers
        finally:
            if restarted is not None:
                os.kill(restarted, 15)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and Path(f"/proc/{restarted}").exists():
                    time.sleep(0.1)


def test_backup_archive_holds_db_rdb_and_config_and_restores(
    tmp_path: Path, redis_server: str
) -> None:
    db_index = 5
    url = f"{redis_server.rsplit('/', 1)[0]}/{db_index}"
    svc = ServiceProcesses(tmp_path / "svc", workers=1, REDIS_URL=url)
    (tmp_path / "svc").mkdir(exist_ok=True)
    svc.start_main()
    try:
        send(svc, "get.market_data", {"symbol": "AAPL"})  # a cache entry and a log row
        send(svc, "get.market_data", {"symbol": "NVDA"})
    finally:
        svc.stop()
    client = redis.Redis.from_url(url)
    client.set("tacore:no-expiry", b"value \x00\xff")
    client.set("tacore:expires", b"soon", px=600_000)
    keys = sorted(k for k in client.scan_iter("tacore:*"))
    env = {**svc.env, "REDIS_URL": url}
    archive = tmp_path / "backup.tar.gz"
    done = subprocess.run(
        [sys.executable, "-m", "tacoreservice", "backup", str(archive)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    import tarfile

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        tar.extract("dump.rdb", tmp_path / "x", filter="data")
    assert {"archive.json", "backup/manifest.json", "backup/tacoreservice.db", "dump.rdb"} <= names
    assert {"config/config.yaml", "config/logging.yaml", "config/trading_config.yaml"} <= names

    # dump.rdb loads into a real redis-server: every key, its value and its expiry.
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(tmp_path / "x"), "--dbfilename", "dump.rdb"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        loaded = redis.Redis(port=port, db=db_index)
        deadline = time.monotonic() + 20
        while True:
            try:
                if loaded.ping():
                    break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start on dump.rdb"
                time.sleep(0.05)
        assert sorted(loaded.scan_iter("tacore:*")) == keys
        assert loaded.get("tacore:no-expiry") == b"value \x00\xff"
        assert loaded.ttl("tacore:no-expiry") == -1 and 0 < loaded.ttl("tacore:expires") <= 600
        for key in keys:
            assert loaded.dump(key) == client.dump(key)
    finally:
        server.terminate()
        server.wait(timeout=10)

    # tacore restore reads the archive: database, Redis keys and, when asked, the config.
    client.flushdb()
    svc.db_path.unlink()
    config_out = tmp_path / "restored-config"
    done = subprocess.run(
        [sys.executable, "-m", "tacoreservice", "restore", str(archive),
         "--config-dir", str(config_out)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(client.scan_iter("tacore:*")) == keys
    with sqlite3.connect(svc.db_path) as conn:  # the ledger is back, at today's schema
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert schema_version(conn) == len(MIGRATIONS)
    assert (config_out / "config.yaml").read_bytes() == (REPO / "config/config.yaml").read_bytes()


def test_rdb_crc_matches_redis_itself(redis_server: str) -> None:
    from tacoreservice.storage.rdb import crc64

    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # redis/src/crc64.c's test vector
    client = redis.Redis.from_url(redis_server)
    client.set("tacore:crc-probe", b"x" * 1000)
    payload = client.dump("tacore:crc-probe")
    assert isinstance(payload, bytes)
    assert crc64(payload[:-8]) == int.from_bytes(payload[-8:], "little")

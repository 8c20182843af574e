"""Security against running services: CURVE with ZAP on both ports, per-client permissions,
rate limits, key reload and revocation, and the refusal to listen beyond loopback unprotected.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
import zmq
from prometheus_client.parser import text_string_to_metric_families

from tacoreservice.client import AsyncTACoreClient, TACoreClient, TACoreError, TACoreTimeout
from tacoreservice.config import PermissionSettings, RateLimitSettings
from tacoreservice.security.keys import KeyRing, apply_curve, generate_keys, load_curve_keys
from tacoreservice.security.permissions import Permissions
from tacoreservice.security.rate_limit import RateLimiter
from tests.support.service import REPO, ServiceProcesses, raw_request

CLIENTS = ["scanner", "console", "runaway"]


def _config(tmp: Path, **security: Any) -> Path:
    """The repo's config.yaml with the security section changed as given."""
    data = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    data["security"] = {**data.get("security", {}), **security}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _log_text(svc: ServiceProcesses) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (svc.tmp / "logs").glob("*.log"))


def _wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")


def _keys(svc: ServiceProcesses) -> Path:
    return svc.tmp / "keys"


def _curve_client(svc: ServiceProcesses, name: str, keys: Path | None = None, **kw: Any) -> Any:
    keys = keys or _keys(svc)
    kw.setdefault("timeout_ms", 5000)
    kw.setdefault("retries", 0)
    return TACoreClient(
        svc.endpoint,
        server_key=_keys(svc) / "server.key",
        client_key=keys / "private" / f"{name}.key_secret",
        **kw,
    )


@pytest.fixture(scope="module")
def curve_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    tmp = tmp_path_factory.mktemp("curve")
    generate_keys(tmp / "keys", CLIENTS)
    config = _config(tmp, mode="curve", keys_dir=str(tmp / "keys"), reload_interval_s=0.2)
    svc = ServiceProcesses(tmp, workers=2, TACORE_CONFIG=str(config))
    svc.client_kwargs = {
        "server_key": tmp / "keys" / "server.key",
        "client_key": tmp / "keys" / "private" / "console.key_secret",
    }
    svc.start_main()
    yield svc
    svc.stop()


# ------------------------------------------------------------------ CURVE


def test_allowed_key_works_and_unknown_or_missing_key_gets_nothing(
    curve_service: ServiceProcesses,
) -> None:
    svc = curve_service
    with _curve_client(svc, "console") as c:
        assert c.call("test.echo", {"payload": "through CURVE"})["payload"] == "through CURVE"

    stranger = svc.tmp / "stranger"
    generate_keys(stranger, ["console"])
    mine = _keys(svc)
    peers = [
        # No key at all: the handshake fails.
        ("no key", None, "handshake"),
        # A well-formed key the broker does not know: ZAP says no.
        (
            "unknown key",
            (mine / "server.key", stranger / "private/console.key_secret"),
            "unknown_key",
        ),
        # The right client key but another server's public key: no handshake either.
        (
            "wrong server key",
            (stranger / "server.key", mine / "private/console.key_secret"),
            "handshake",
        ),
    ]

    def refusals() -> dict[str, int]:
        with svc.client() as c:
            return c.health(detailed=True)["security"]["refusals"]  # type: ignore[no-any-return]

    for what, keys, reason in peers:
        before = refusals().get(f"frontend:{reason}", 0)
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        apply_curve(sock, load_curve_keys(*keys) if keys else None)
        sock.connect(svc.endpoint)
        try:
            sock.send(orjson.dumps({"method": "health.check"}))
            assert not sock.poll(800), f"{what}: a peer without an allowed key got an answer"
            # Counted while the peer is still connected (nothing racy about a closed socket).
            _wait_for(
                lambda r=reason, n=before: refusals().get(f"frontend:{r}", 0) > n,  # type: ignore[misc]
                what=f"{what} refused and counted",
            )
        finally:
            sock.close()

    # The broker logged the refusals.
    logs = _wait_for(
        lambda: (
            (t := _log_text(svc)) and "not among the client keys" in t and "handshake" in t and t
        ),
        what="both kinds of refusal in the log",
    )
    assert "refused on frontend: handshake failed" in logs
    refusals_now = refusals()
    assert refusals_now.get("frontend:unknown_key", 0) >= 1
    assert refusals_now.get("frontend:handshake", 0) >= 2
    metrics = httpx.get(f"{svc.api_url}/metrics", timeout=10).text
    samples = {
        (s.labels["socket"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "tacore_security_refusals"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert samples[("frontend", "unknown_key")] >= 1 and samples[("frontend", "handshake")] >= 1


def test_worker_without_a_valid_key_cannot_register(curve_service: ServiceProcesses) -> None:
    svc = curve_service
    before = {w["pid"] for w in svc.wait_workers(2)["worker_list"]}
    stranger = svc.tmp / "rogue-keys"
    generate_keys(stranger, [], ["worker"])
    env_unknown = {**svc.env, "TACORE_WORKER_KEY": str(stranger / "private" / "worker.key_secret")}
    env_client = {
        **svc.env,
        "TACORE_WORKER_KEY": str(_keys(svc) / "private" / "scanner.key_secret"),
    }
    env_plain = {**svc.env, "TACORE_SECURITY": "none"}
    procs = []
    for env, wid in (
        (env_unknown, "rogue-unknown-key"),
        (env_client, "rogue-client-key"),
        (env_plain, "rogue-no-curve"),
    ):
        env.pop("TACORE_SETTINGS_JSON", None)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tacoreservice.worker",
                    "--endpoint",
                    svc.backend_endpoint,
                    "--worker-id",
                    wid,
                ],
                env=env,
                cwd=svc.tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        # Each rogue tried: wait for the broker to have refused all three handshakes.
        def refused() -> bool:
            with svc.client() as c:
                r = c.health(detailed=True)["security"]["refusals"]
            return r.get("backend:unknown_key", 0) >= 2 and r.get("backend:handshake", 0) >= 1

        _wait_for(refused, timeout=30, what="three refused worker handshakes")
        assert all(p.poll() is None for p in procs)  # they are still trying, and still outside
        served_by = set()
        with svc.client() as c:
            for i in range(20):
                served_by.add(c.call("test.echo", {"payload": i})["pid"])
            workers = c.health(detailed=True)["worker_list"]
        assert {w["worker_id"] for w in workers}.isdisjoint(
            {"rogue-unknown-key", "rogue-client-key", "rogue-no-curve"}
        )
        assert served_by <= before
        assert {w["pid"] for w in workers} == before
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_key_added_and_revoked_without_restart(curve_service: ServiceProcesses) -> None:
    svc = curve_service
    newcomer = svc.tmp / "newcomer"
    generate_keys(newcomer, ["newcomer"])
    with (
        _curve_client(svc, "newcomer", keys=newcomer, timeout_ms=600) as c,
        pytest.raises(TACoreTimeout),
    ):
        c.health()
    shutil.copy(newcomer / "clients" / "newcomer.key", _keys(svc) / "clients" / "newcomer.key")

    def admitted() -> bool:
        try:
            with _curve_client(svc, "newcomer", keys=newcomer, timeout_ms=600) as c:
                return bool(c.call("test.echo", {"payload": "hi"})["payload"] == "hi")
        except TACoreTimeout:
            return False

    _wait_for(admitted, what="a new client key admitted without a restart")

    # Revoked: the connection stays up, but its next request is refused.
    with _curve_client(svc, "newcomer", keys=newcomer) as c:
        assert c.call("test.echo", {"payload": 1})["payload"] == 1
        (_keys(svc) / "clients" / "newcomer.key").unlink()

        def refused() -> TACoreError | None:
            try:
                c.call("test.echo", {"payload": 2})
            except TACoreError as exc:
                return exc
            return None

        err = _wait_for(refused, what="a revoked key refused")
        assert err.code == "UNAUTHORIZED" and "no longer allowed" in err.message


def test_cli_reaches_a_curve_broker_with_keys_from_the_environment(
    curve_service: ServiceProcesses,
) -> None:
    svc = curve_service
    env = {
        **svc.env,
        "TACORE_ENDPOINT": svc.endpoint,
        "TACORE_CURVE_SERVER_KEY": str(_keys(svc) / "server.key"),
        "TACORE_CURVE_CLIENT_KEY": str(_keys(svc) / "private" / "console.key_secret"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tacoreservice", "health", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["status"] == "healthy"
    env["TACORE_CURVE_CLIENT_KEY"] = str(_keys(svc) / "clients" / "console.key")  # public only
    done = subprocess.run(
        [sys.executable, "-m", "tacoreservice", "health"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "key_secret" in done.stderr


# ------------------------------------------------------------------ permissions


@pytest.fixture(scope="module")
def named_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    """Security off: clients name themselves; permissions and rate limits from the config."""
    tmp = tmp_path_factory.mktemp("named")
    config = _config(
        tmp,
        rate_limit={
            "enabled": True,
            "rate_per_s": 500,
            "burst": 1000,
            "clients": {"runaway": {"rate_per_s": 5, "burst": 10}},
        },
    )
    svc = ServiceProcesses(tmp, workers=2, TACORE_CONFIG=str(config))
    svc.start_main()
    yield svc
    svc.stop()


def test_permissions_allow_and_deny_by_client(named_service: ServiceProcesses) -> None:
    svc = named_service
    with svc.client(client_name="scanner") as c:
        scan = c.call("scan.market", {"market": "US", "symbols": ["AAPL", "MSFT"]})
        assert scan is not None
        assert c.call("get.market_data", {"symbol": "AAPL"})["symbol"] == "AAPL"
        assert c.health()["status"] == "healthy"  # always allowed
        with pytest.raises(TACoreError) as denied:
            c.call("execute.order", {"symbol": "AAPL", "action": "buy", "quantity": 1})
        assert denied.value.code == "UNAUTHORIZED"
        assert "'scanner' may not call 'execute.order'" in denied.value.message
        # A job is no way around it.
        with pytest.raises(TACoreError) as via_job:
            c.call(
                "job.submit",
                {"method": "execute.order", "params": {"symbol": "AAPL", "action": "buy"}},
            )
        assert via_job.value.code == "UNAUTHORIZED"
        denied_id = denied.value.reply["request_id"]
    with svc.client(client_name="trader") as c:
        order = c.call(
            "execute.order",
            {"symbol": "AAPL", "action": "buy", "quantity": 1, "client_order_id": "perm-1"},
        )
        assert order["status"] == "filled"
        with pytest.raises(TACoreError) as denied_trader:
            c.call("optimize.parameters", {"strategy_type": "sma", "symbol": "AAPL"})
        assert denied_trader.value.code == "UNAUTHORIZED"
    # Unnamed clients get the default (everything, in the shipped config).
    with svc.client() as c:
        assert c.call("test.echo", {"payload": 7})["payload"] == 7

    # The denial is in the request log, with who asked, and in the broker's log.
    def logged() -> Any:
        with sqlite3.connect(svc.log_path) as db:
            return db.execute(
                "SELECT client_id, method, error_code FROM request_logs WHERE request_id = ?",
                (denied_id,),
            ).fetchone()

    assert _wait_for(logged, what="denied call in request_logs") == (
        "scanner",
        "execute.order",
        "UNAUTHORIZED",
    )
    assert "'scanner' may not call 'execute.order'" in _log_text(svc)


def test_bad_client_name_is_an_invalid_request(named_service: ServiceProcesses) -> None:
    for bad in ('"a b"', '""', "5", '"' + "x" * 65 + '"', '"../../etc"'):
        body = b'{"method": "health.check", "client": ' + bad.encode() + b"}"
        reply = raw_request(named_service.endpoint, body)
        assert reply["error"]["code"] == "INVALID_REQUEST", bad
        assert "client" in reply["error"]["message"]


def test_rate_limit_stops_a_runaway_client_only(named_service: ServiceProcesses) -> None:
    svc = named_service

    async def burst(name: str, n: int) -> list[dict[str, Any]]:
        async with AsyncTACoreClient(
            svc.endpoint, client_name=name, timeout_ms=10_000, retries=0
        ) as c:
            return list(
                await asyncio.gather(*(c.request("test.echo", {"payload": i}) for i in range(n)))
            )

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        runaway, calm = await asyncio.gather(burst("runaway", 60), burst("console", 60))
        return runaway, calm

    runaway, calm = asyncio.run(both())
    limited = [r for r in runaway if r["status"] == "error"]
    served = [r for r in runaway if r["status"] == "success"]
    assert {r["error"]["code"] for r in limited} == {"RATE_LIMITED"}
    # Burst 10, refill 5/s: a burst of 60 sent at once gets about 10 through.
    assert 10 <= len(served) <= 20, len(served)
    assert "retry in" in limited[0]["error"]["message"]
    # The other client, in the same moment, is untouched.
    assert all(r["status"] == "success" for r in calm)
    assert sorted(r["data"]["payload"] for r in calm) == list(range(60))


def test_unnamed_clients_get_a_bucket_per_connection(tmp_path: Path) -> None:
    config = _config(tmp_path, rate_limit={"enabled": True, "rate_per_s": 1, "burst": 3})
    svc = ServiceProcesses(tmp_path, workers=1, TACORE_CONFIG=str(config))
    svc.start_main(wait=False)
    try:
        _wait_for(
            lambda: _health_or_none(svc.endpoint), timeout=60, what="the broker answering health"
        )
        ctx = zmq.Context.instance()
        socks = [ctx.socket(zmq.DEALER) for _ in range(2)]
        for s in socks:
            s.setsockopt(zmq.LINGER, 0)
            s.connect(svc.endpoint)
        codes: list[list[str]] = [[], []]
        for i, s in enumerate(socks):
            for n in range(5):
                s.send_multipart(
                    [b"", orjson.dumps({"method": "health.check", "request_id": f"c{i}-{n}"})]
                )
            for _ in range(5):
                assert s.poll(5000)
                reply = orjson.loads(s.recv_multipart()[-1])
                codes[i].append(reply["error"]["code"] if reply["error"] else "OK")
            s.close()
        # Each connection had its own bucket of 3 (one more may have refilled).
        for per_conn in codes:
            assert 3 <= per_conn.count("OK") <= 4, codes
            assert set(per_conn) <= {"OK", "RATE_LIMITED"}
    finally:
        svc.stop()


def _health_or_none(endpoint: str) -> dict[str, Any] | None:
    try:
        with TACoreClient(endpoint, timeout_ms=500, retries=0) as c:
            return c.health()  # type: ignore[no-any-return]
    except (TACoreTimeout, TACoreError):
        return None


# ------------------------------------------------------------------ exposure


def test_listening_beyond_loopback_without_curve_is_refused(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=0, TACORE_FRONTEND_HOST="0.0.0.0")
    main = svc.start_main(wait=False)
    assert main.wait(timeout=60) == 2
    out = (tmp_path / "main-0.out").read_text()
    assert "without CURVE" in out and "TACORE_ALLOW_INSECURE_REMOTE" in out
    # An operator who says the network is trusted gets a running broker.
    svc2 = ServiceProcesses(
        tmp_path / "ok",
        workers=0,
        TACORE_BACKEND_HOST="0.0.0.0",
        TACORE_ALLOW_INSECURE_REMOTE="1",
    )
    (tmp_path / "ok").mkdir()
    svc2.start_main(wait=False)
    try:
        assert _wait_for(lambda: _health_or_none(svc2.endpoint), timeout=60, what="health")
    finally:
        svc2.stop()


def test_curve_without_key_files_fails_at_start_naming_the_file(tmp_path: Path) -> None:
    svc = ServiceProcesses(tmp_path, workers=0, TACORE_SECURITY="curve", TACORE_KEYS_DIR="nokeys")
    main = svc.start_main(wait=False)
    assert main.wait(timeout=60) == 2
    out = (tmp_path / "main-0.out").read_text()
    assert "server.key_secret does not exist" in out and "tacore keys generate" in out


# ------------------------------------------------------------------ keys and units


def test_keys_generate_writes_private_files_0600_and_keeps_existing(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tacoreservice", "keys", "generate", "--dir", "k", *args],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = run("--client", "scanner", "--client", "trader")
    assert done.returncode == 0, done.stderr
    keys = tmp_path / "k"
    for secret in [keys / "server.key_secret", *(keys / "private").iterdir()]:
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert stat.S_IMODE((keys / "private").stat().st_mode) == 0o700
    assert sorted(p.name for p in (keys / "clients").iterdir()) == ["scanner.key", "trader.key"]
    assert [p.name for p in (keys / "workers").iterdir()] == ["worker.key"]
    server = (keys / "server.key").read_text()
    assert (
        "secret-key" not in server
        and "secret-key" not in (keys / "clients/scanner.key").read_text()
    )

    assert run("--client", "notifier").returncode == 0
    assert (keys / "server.key").read_text() == server  # kept: nobody is locked out
    assert (keys / "clients" / "notifier.key").exists()
    assert run("--client", "scanner", "--force").returncode == 0
    assert (keys / "server.key").read_text() != server

    bad = run("--client", "../evil")
    assert bad.returncode == 2 and "not allowed" in bad.stderr
    clash = run("--client", "worker")
    assert clash.returncode == 2 and "both as client and as worker" in clash.stderr


def test_key_ring_reload_sees_added_and_removed_files(tmp_path: Path) -> None:
    generate_keys(tmp_path / "k", ["a", "b"])
    ring = KeyRing(tmp_path / "k" / "clients", "client keys")
    assert sorted(ring.names.values()) == ["a", "b"]
    assert ring.reload_if_changed() is False
    (tmp_path / "k" / "clients" / "a.key").unlink()
    (tmp_path / "k" / "clients" / "junk.key").write_text("not a certificate")
    assert ring.reload_if_changed() is True
    assert sorted(ring.names.values()) == ["b"]


def test_permission_patterns() -> None:
    perms = Permissions(
        PermissionSettings(
            default=["health.check"],
            clients={"scanner": ["scan.*", "analyze.stock"], "console": ["*"]},
        )
    )
    assert not perms.unrestricted
    assert perms.allows("scanner", "scan.market") and perms.allows("scanner", "analyze.stock")
    assert not perms.allows("scanner", "analyze.strategy")
    assert not perms.allows("scanner", "execute.order")
    assert perms.allows("console", "execute.order")
    assert not perms.allows(None, "get.market_data") and perms.allows(None, "health.check")
    assert not perms.allows("SCANNER", "scan.market")  # names are case-sensitive
    assert Permissions(PermissionSettings()).unrestricted


def test_token_bucket_refills_at_its_rate() -> None:
    limiter = RateLimiter(RateLimitSettings(rate_per_s=2, burst=3, max_tracked=2))
    t = 100.0
    assert [limiter.take("a", "a", t) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a", "a", t)
    assert wait == pytest.approx(0.5)
    assert limiter.take("a", "a", t + 0.5) == 0.0  # one token back after 1/rate s
    assert limiter.take("a", "a", t + 0.5) > 0
    # Buckets are bounded: the least recently used one goes.
    limiter.take("b", "b", t)
    limiter.take("c", "c", t)
    assert len(limiter) == 2

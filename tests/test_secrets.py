"""Secrets never leak: credentials come from the environment or a ``*_FILE`` outside the
repository, and no log file, request-log row, API body, reply or error message carries them.

The end-to-end test plants a distinct value in every place a credential can come from (LLM key,
API token, exchange secret, the password of a real password-protected redis-server, an
``?api_key=`` in the LLM base URL, credential-named request params), drives the real service
(broker, worker, monitoring API) through the paths that print URLs, headers and request
bodies, then searches every byte the service wrote or answered for the planted values.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from tacoreservice.analysis.engines.llm import LLMEngine
from tacoreservice.config import ConfigError, LLMSettings, Settings, load_settings
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.security.log_masking import SecretMaskingFilter
from tacoreservice.security.redaction import REDACTED, BodyRedactor
from tacoreservice.security.secrets import read_secret, secret_values
from tacoreservice.storage.request_log import RequestLogEntry, RequestLogWriter
from tests.support.http_server import serve_http
from tests.support.redis_process import redis_process
from tests.support.service import REPO, ServiceProcesses, raw_request

# Distinct, greppable values, one per source (all longer than MIN_SECRET_LENGTH).
LLM_KEY = "sk-planted-llm-key-7f3a9c"
API_TOKEN = "planted-api-token-51be0d"
CCXT_SECRET = "planted-ccxt-secret-c0ffee"
REDIS_PASSWORD = "planted-redis-pw-9d2e71"
URL_KEY = "planted-url-query-key-44aa"
PARAM_KEY = "planted-param-api-key-e5e5"
PARAM_PASSWORD = "planted-param-password-0b0b"
PLANTED = (LLM_KEY, API_TOKEN, CCXT_SECRET, REDIS_PASSWORD, URL_KEY, PARAM_KEY, PARAM_PASSWORD)
CREDENTIAL_PARAMS = {"api_key": PARAM_KEY, "nested": {"password": PARAM_PASSWORD}}


def leaks(data: bytes | str) -> list[str]:
    """The planted values found in ``data``."""
    raw = data.encode() if isinstance(data, str) else data
    return [p for p in PLANTED if p.encode() in raw]


# --- a password-protected redis-server and an LLM endpoint that rejects the key -----------------


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server with ``--requirepass``; yields its URL with the password in it."""
    with redis_process(tmp_path_factory.mktemp("redis-auth"), REDIS_PASSWORD) as url:
        yield url


class RejectingLLM:
    """Answers every chat completion with HTTP 401 and echoes the Authorization header it got,
    in the body and in response headers (as some gateways do): the worst case for logs."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.paths: list[str] = []


def _rejecting_handler(state: RejectingLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            auth = self.headers.get("Authorization", "")
            state.authorizations.append(auth)
            state.paths.append(self.path)
            body = json.dumps(
                {"error": {"message": f"invalid key in header {auth!r}", "type": "auth"}}
            ).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Echo-Authorization", auth)
            self.send_header("x-request-id", auth)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="module")
def rejecting_llm() -> Iterator[tuple[str, RejectingLLM]]:
    state = RejectingLLM()
    with serve_http(_rejecting_handler(state), "rejecting-llm") as base:
        yield f"{base}/v1", state


# --- the whole service ------------------------------------------------------------------------


def _first_event(api_url: str, **request: Any) -> bytes:
    """The stream of /api/events up to and including its first ``snapshot`` event."""
    got = b""
    with httpx.stream("GET", api_url + "/api/events", timeout=20, **request) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            got += chunk
            if b"event: snapshot" in got and got.endswith(b"\n\n"):
                break
    return got


def test_planted_secrets_appear_in_no_output(
    tmp_path: Path,
    redis_with_password: str,
    rejecting_llm: tuple[str, RejectingLLM],
    request: pytest.FixtureRequest,
) -> None:
    llm_url, llm_server = rejecting_llm
    svc = ServiceProcesses(
        tmp_path,
        workers=1,
        TACORE_LLM_API_KEY=LLM_KEY,
        TACORE_API_TOKEN=API_TOKEN,
        TACORE_CCXT_SECRET=CCXT_SECRET,
        REDIS_URL=redis_with_password,
        TACORE_LLM_BASE_URL=f"{llm_url}?api_key={URL_KEY}",
        TACORESERVICE_LOG_LEVEL="DEBUG",
    )
    replies: list[tuple[str, bytes]] = []  # (what, body) of everything the service answered
    try:
        svc.start_main()
        with svc.client(timeout_ms=30_000, retries=0) as client:

            def send(method: str, params: dict[str, Any], request_id: str) -> dict[str, Any]:
                reply = client.request(method, params, request_id=request_id)
                replies.append((method, json.dumps(reply).encode()))
                return reply

            send("health.check", {"detailed": True}, "health")
            llm = {"symbol": "AAPL", "engine": "llm", "research_depth": 1, "analysts": ["market"]}
            failed = send("analyze.stock", llm, "llm-401")
            assert failed["error"]["code"] == "ENGINE_UNAVAILABLE", failed
            # Credential-named params: a method that does not read them refuses them, naming
            # the keys and never their values (every reply is searched below) ...
            data = send("get.market_data", {"symbol": "AAPL", **CREDENTIAL_PARAMS}, "md-creds")
            assert data["error"]["code"] == "INVALID_PARAMS", data
            # (a valid request fills the password-protected cache checked below)
            assert send("get.market_data", {"symbol": "AAPL"}, "md")["status"] == "success"
            # ... and one that echoes them back: the test's own data, not a leak, so its reply
            # is not searched; its request-log row is.
            echoed = client.request("test.echo", {"payload": CREDENTIAL_PARAMS}, request_id="echo")
            assert echoed["data"]["payload"] == CREDENTIAL_PARAMS
            # The worker really used the password-protected redis-server (heartbeat stats).
            deadline = time.monotonic() + 10
            while True:
                health = send("health.check", {"detailed": True}, f"health-{time.monotonic()}")
                cache = health["data"]["worker_list"][0]["cache"] or {}
                if cache.get("sets") or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert cache["backend"] == "redis" and cache["sets"] >= 1 and not cache["errors"]
        # The key went to the endpoint (so the paths that print headers really ran) ...
        assert f"Bearer {LLM_KEY}" in llm_server.authorizations
        assert any(URL_KEY in p for p in llm_server.paths)

        # A frame that is not JSON, carrying a credential the service knows.
        bad = raw_request(
            svc.endpoint, b'{"method": "health.check", "secret": "' + CCXT_SECRET.encode()
        )
        assert bad["error"]["code"] == "PARSE_ERROR"
        replies.append(("bad frame", json.dumps(bad).encode()))

        # Every API route, with the token in the header and in the query string.
        header = {"headers": {"Authorization": f"Bearer {API_TOKEN}"}}
        query = {"params": {"token": API_TOKEN}}
        api = httpx.Client(base_url=svc.api_url, timeout=20)
        request.addfinalizer(api.close)
        deadline = time.monotonic() + 10
        logs: dict[str, Any] = {}
        while time.monotonic() < deadline:  # the request log is written in batches
            logs = api.get("/api/logs", params={"limit": 500}, **header).json()
            ids = {item["request_id"] for item in logs["items"]}
            if {"llm-401", "md-creds", "echo"} <= ids and any(
                item["error_code"] == "PARSE_ERROR" for item in logs["items"]
            ):
                break
            time.sleep(0.1)
        for auth in (header, query):
            for path in (
                "/api/status",
                "/api/logs?limit=500",
                "/api/logs/llm-401",
                "/api/logs/md-creds",
                "/api/logs/echo",
                "/api/logs?status=error",
                "/metrics",
                "/api/workers",
                "/api/methods",
            ):
                resp = api.get(path, **auth)  # type: ignore[arg-type]
                assert resp.status_code == 200, (path, resp.text)
                replies.append((f"GET {path}", resp.content))
            replies.append(("GET /api/events", _first_event(svc.api_url, **auth)))
        status = api.get("/api/status", **header).json()
        assert status["config"]["llm"]["base_url"] == llm_url  # shown, without its key
        entry = api.get("/api/logs/echo", **header).json()
        assert entry["request_data"]["params"]["payload"] == {
            "api_key": REDACTED,
            "nested": {"password": REDACTED},
        }
    finally:
        svc.stop()

    for what, body in replies:
        assert not leaks(body), f"{what} answered a planted secret: {leaks(body)}"

    # Every file the service wrote: logs, performance.log, stdout/stderr captures, the database.
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    names = {p.name for p in written}
    assert {"tacoreservice.log", "worker.log", "performance.log", "tacore.db"} <= names
    for path in written:
        found = leaks(path.read_bytes())
        assert not found, f"{path.relative_to(tmp_path)} holds planted secrets {found}"
    # The masking was at work: the DEBUG lines that print the echoed header are there, masked.
    worker_log = (tmp_path / "logs" / "worker.log").read_text()
    assert "X-Echo-Authorization" in worker_log and "Bearer ***" in worker_log

    with sqlite3.connect(svc.log_path) as conn:
        rows = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT request_id, request_data, response_data FROM request_logs "
                "WHERE request_id != ''"
            )
        }
        # A frame that is not JSON has no request_id: the broker logs it under "".
        (stored_bad,) = conn.execute(
            "SELECT request_data FROM request_logs WHERE error_code = 'PARSE_ERROR'"
        ).fetchone()
        bodies = conn.execute("SELECT request_data, response_data FROM request_logs").fetchall()
    assert len(bodies) >= 5 and not any(
        leaks(f"{request}{response}") for request, response in bodies
    )
    request_data = json.loads(rows["md-creds"][0])
    assert request_data["params"]["api_key"] == REDACTED
    assert request_data["params"]["nested"] == {"password": REDACTED}
    assert json.loads(rows["echo"][1])["data"]["payload"]["nested"]["password"] == REDACTED
    assert stored_bad.startswith('{"method": "health.check", "secret": "') and "***" in stored_bad


# --- read_secret and secret_values -------------------------------------------------------------


def test_read_secret_from_env_then_file(tmp_path: Path) -> None:
    key_file = tmp_path / "llm_key"
    key_file.write_text(f"  {LLM_KEY}\n")
    key_file.chmod(0o444)  # Docker mounts secrets world-readable: accepted
    file_env = {"TACORE_LLM_API_KEY_FILE": str(key_file)}
    assert read_secret("TACORE_LLM_API_KEY", file_env) == LLM_KEY
    assert read_secret("TACORE_LLM_API_KEY", {**file_env, "TACORE_LLM_API_KEY": "from-env"}) == (
        "from-env"
    )
    assert read_secret("TACORE_LLM_API_KEY", {}) is None
    assert read_secret("TACORE_LLM_API_KEY", {"TACORE_LLM_API_KEY": ""}) is None

    for content, problem in (("\n", "is empty"), (None, "does not exist")):
        path = tmp_path / f"case-{problem.replace(' ', '-')}"
        if content is not None:
            path.write_text(content)
        with pytest.raises(ConfigError) as info:
            read_secret("TACORE_API_TOKEN", {"TACORE_API_TOKEN_FILE": str(path)})
        assert "TACORE_API_TOKEN_FILE" in str(info.value) and problem in str(info.value)


def test_read_secret_refuses_a_file_in_a_git_work_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "checkout"
    (repo / ".git").mkdir(parents=True)
    inside = repo / "config" / "secrets" / "token"
    inside.parent.mkdir(parents=True)
    inside.write_text(API_TOKEN)
    with pytest.raises(ConfigError) as info:
        read_secret("TACORE_API_TOKEN", {"TACORE_API_TOKEN_FILE": str(inside)})
    message = str(info.value)
    assert "TACORE_API_TOKEN_FILE" in message and "git work tree" in message
    assert str(repo) in message and API_TOKEN not in message
    # A symlink from outside into the work tree is the same file: refused too.
    link = tmp_path / "outside-link"
    link.symlink_to(inside)
    with pytest.raises(ConfigError):
        read_secret("TACORE_API_TOKEN", {"TACORE_API_TOKEN_FILE": str(link)})
    # The settings read through it: the API token and the LLM key.
    monkeypatch.delenv("TACORE_API_TOKEN", raising=False)
    monkeypatch.setenv("TACORE_API_TOKEN_FILE", str(inside))
    with pytest.raises(ConfigError):
        _ = Settings().api.token


def test_service_refuses_to_start_with_a_key_file_in_a_git_work_tree(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    (repo / ".git").mkdir(parents=True)
    (repo / "token").write_text(API_TOKEN)
    svc = ServiceProcesses(tmp_path, workers=0, TACORE_API_TOKEN_FILE=repo / "token")
    try:
        proc = svc.start_main(wait=False)
        assert proc.wait(timeout=60) != 0
    finally:
        svc.stop()
    output = (tmp_path / "main-0.out").read_text()
    assert "TACORE_API_TOKEN_FILE" in output and "git work tree" in output
    assert not leaks(output)


def test_llm_engine_reports_a_refused_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "key").write_text(LLM_KEY)
    monkeypatch.delenv("TACORE_LLM_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("TACORE_LLM_API_KEY_FILE", str(tmp_path / "key"))
    engine = LLMEngine(Settings(llm=LLMSettings(base_url="https://llm.example/v1")))
    with pytest.raises(ServiceError) as info:
        engine._get_client()
    assert info.value.code is ErrorCode.ENGINE_UNAVAILABLE
    assert "TACORE_LLM_API_KEY_FILE" in info.value.message and LLM_KEY not in info.value.message


def test_secret_values_collects_every_source(tmp_path: Path) -> None:
    ccxt_file = tmp_path / "ccxt"
    ccxt_file.write_text(CCXT_SECRET + "\n")
    env = {
        "TACORE_LLM_API_KEY": LLM_KEY,
        "TACORE_API_TOKEN": "short",  # below MIN_SECRET_LENGTH: would mask ordinary words
        "TACORE_CCXT_SECRET_FILE": str(ccxt_file),
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@cache:6379/0",
    }
    settings = load_settings(
        None,
        env=env,
        overrides={"llm.base_url": f"https://u:pw-in-url@llm.example/v1?key={URL_KEY}"},
    )
    values = secret_values(settings, env)
    assert {LLM_KEY, CCXT_SECRET, REDIS_PASSWORD, URL_KEY, "pw-in-url"} <= set(values)
    assert "short" not in values
    assert not any("cache:6379" in v for v in values)  # only the password of a URL, not its host
    assert values == sorted(values, key=len, reverse=True)  # longest first


def test_public_summary_drops_url_credentials() -> None:
    settings = Settings(
        llm=LLMSettings(base_url=f"https://user:{REDIS_PASSWORD}@llm.example/v1?api_key={URL_KEY}"),
    )
    settings.cache.redis_url = f"redis://:{REDIS_PASSWORD}@cache:6379/1"
    summary = json.dumps(settings.public_summary())
    assert not leaks(summary)
    assert "https://llm.example/v1" in summary and "cache" in summary


# --- request-log redaction ---------------------------------------------------------------------


def test_redaction_at_any_depth() -> None:
    redactor = BodyRedactor(["api_key", "Password", "token"], [LLM_KEY])
    body = {
        "method": "x",
        "params": {
            "API_KEY": PARAM_KEY,
            "list": [{"deep": [{"password": {"whole": "subtree"}}]}, "keep"],
            "tokens_used": 12,  # a field that only contains a name stays
            "note": f"the key is {LLM_KEY}",
        },
    }
    text = redactor.text(json.dumps(body))
    out = json.loads(text)
    assert out["params"]["API_KEY"] == REDACTED
    assert out["params"]["list"] == [{"deep": [{"password": REDACTED}]}, "keep"]
    assert out["params"]["tokens_used"] == 12
    assert out["params"]["note"] == "the key is ***"
    assert redactor.value(body)["params"]["list"][0]["deep"][0]["password"] == REDACTED
    assert body["params"]["API_KEY"] == PARAM_KEY  # the caller's object is not changed

    plain = '{"method":"health.check","params":{}}'
    assert redactor.text(plain) is plain  # no field name in it: not parsed, not rewritten
    broken = '{"api_key": "' + PARAM_KEY + '", "x": ' + LLM_KEY
    assert redactor.text(broken) == '{"api_key": "' + PARAM_KEY + '", "x": ***'  # as it is


def test_request_log_writer_redacts_bodies(tmp_path: Path) -> None:
    settings = Settings().request_log.model_copy(update={"max_body_bytes": 120})
    writer = RequestLogWriter(
        tmp_path / "log.db",
        settings,
        redact_fields=Settings().security.redact_fields,
        mask_values=[CCXT_SECRET],
    )
    long_tail = "x" * 500
    bodies: dict[str, tuple[Any, Any]] = {
        "bytes": (
            json.dumps({"method": "m", "params": {"nested": CREDENTIAL_PARAMS}}).encode(),
            {"status": "success", "data": {"Authorization": f"Bearer {LLM_KEY}"}},
        ),
        # Redacted before it is cut: the cut body is no longer JSON.
        "long": (json.dumps({"password": PARAM_PASSWORD, "tail": long_tail}), None),
        "not-json": (b'{"method": "m", "params": {"secret": "' + CCXT_SECRET.encode(), None),
    }
    with writer:
        for request_id, (request, response) in bodies.items():
            writer.record(RequestLogEntry(request_id, "m", "w", request, response, 1.0, "success"))
        assert writer.flush()
    with sqlite3.connect(tmp_path / "log.db") as conn:
        rows = dict(
            (r[0], (r[1], r[2]))
            for r in conn.execute(
                "SELECT request_id, request_data, response_data FROM request_logs"
            )
        )
    assert json.loads(rows["bytes"][0])["params"]["nested"] == {
        "api_key": REDACTED,
        "nested": {"password": REDACTED},
    }
    assert json.loads(rows["bytes"][1])["data"]["Authorization"] == REDACTED
    assert rows["long"][0].startswith('{"password":"[REDACTED]"') and "truncated" in rows["long"][0]
    assert rows["not-json"][0] == '{"method": "m", "params": {"secret": "***'
    assert not any(leaks(f"{a}{b}") for a, b in rows.values())


# --- log masking -------------------------------------------------------------------------------


def test_masking_filter_masks_message_args_and_traceback() -> None:
    from io import StringIO

    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(SecretMaskingFilter([LLM_KEY, API_TOKEN]))
    logger = logging.getLogger("tests.test_secrets.masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling with %s and token=%s", f"Bearer {LLM_KEY}", API_TOKEN)
        try:
            raise RuntimeError(f"upstream said {LLM_KEY}")
        except RuntimeError:
            logger.exception("failed")
        logger.info("stack", stack_info=True, extra={"unused": LLM_KEY})
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "Bearer *** and token=***" in out
    assert "RuntimeError: upstream said ***" in out
    assert not leaks(out)


_LOG_SCRIPT = """
import logging, sys
from tacoreservice.config import load_settings
from tacoreservice.logging_setup import setup_logging
settings = load_settings(None, overrides={"logging.dir": sys.argv[1],
                                          "logging.config_file": sys.argv[2] or None})
setup_logging(settings, "worker")
logging.getLogger("httpcore.http11").warning("headers %r", [(b"Authorization", sys.argv[3])])
try:
    raise ValueError("key " + sys.argv[3])
except ValueError:
    logging.getLogger("tacoreservice").exception("boom")
"""


@pytest.mark.parametrize("config_file", ["", str(REPO / "config" / "logging.yaml")])
def test_setup_logging_masks_every_handler(tmp_path: Path, config_file: str) -> None:
    """Both the built-in logging config and config/logging.yaml get the filter."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TACORE_LLM_API_KEY": LLM_KEY}
    env.pop("TACORE_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-c", _LOG_SCRIPT, str(tmp_path / "logs"), config_file, LLM_KEY],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    log_file = (tmp_path / "logs" / "worker.log").read_text()
    for out in (log_file, proc.stderr):  # the file and the console
        assert "Authorization" in out and "ValueError: key ***" in out
        assert not leaks(out)

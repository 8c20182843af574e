"""The ops files under deploy/: Prometheus config and alert rules, Grafana dashboard, provisioning.

They are checked against the real things where this machine has them: promtool (Debian package
``prometheus``) checks the config and runs the alert rules' unit tests; the ``/metrics`` of a
real running service must carry every metric the alerts and panels name; and a real Prometheus
scraping a real service (with an API token) runs every panel query and rule, and raises
TACoreServiceDown for a target that does not answer. Without promtool or prometheus those
tests skip and say why.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tacoreservice.client import TACoreError
from tests.support.service import REPO, ServiceProcesses, free_port

DEPLOY = REPO / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD_JSON = DEPLOY / "grafana" / "tacoreservice-dashboard.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"

# The metric names of the monitoring API contract; the dashboard shows every one.
CONTRACT_METRICS = {
    "tacore_requests_total",
    "tacore_request_duration_seconds",
    "tacore_requests_in_progress",
    "tacore_workers",
    "tacore_worker_last_heartbeat_timestamp_seconds",
    "tacore_queue_depth",
    "tacore_queue_capacity",
    "tacore_cache_requests_total",
    "tacore_request_retries_total",
    "tacore_worker_restarts_total",
    "tacore_jobs",
    "tacore_up",
    "tacore_build_info",
}
REQUIRED_ALERTS = {
    "TACoreServiceDown",
    "TACoreHighErrorRate",
    "TACoreHighLatencyP95",
    "TACoreNoAliveWorkers",
    "TACoreQueueNearFull",
    "TACoreProcessHighCPU",
    "TACoreProcessHighMemory",
    "TACoreWorkerRestarting",
}
_METRIC_NAME = re.compile(r"\btacore_[a-z_]+")
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def metric_names(expr: str) -> set[str]:
    """tacore_* metric names a PromQL expression reads, histogram series folded to their family."""
    return {_HISTOGRAM_SUFFIX.sub("", name) for name in _METRIC_NAME.findall(expr)}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS_YML.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_JSON.read_text())


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    out = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_panels()
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


# --------------------------------------------------------------------------- static checks


def test_every_ops_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yml"))
    assert {PROMETHEUS_YML, ALERTS_YML, ALERTS_TEST_YML} <= set(files)
    assert len(list(PROVISIONING.rglob("*.yml"))) == 2
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_every_alert_is_complete() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        name = rule["alert"]
        assert rule.get("expr", "").strip(), f"{name}: no expr"
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for`"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning"}, name
        assert rule.get("annotations", {}).get("summary", "").strip(), f"{name}: no summary"
        assert rule["annotations"].get("description", "").strip(), f"{name}: no description"
        assert metric_names(rule["expr"]) or "up{" in rule["expr"], f"{name} reads no metric"


def test_alert_thresholds_are_the_agreed_ones() -> None:
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alert_rules()}
    fors = {rule["alert"]: rule["for"] for rule in alert_rules()}
    assert 'up{job="tacoreservice"} == 0' in exprs["TACoreServiceDown"]
    assert "absent(" in exprs["TACoreServiceDown"] and fors["TACoreServiceDown"] == "1m"
    assert 'status="error"' in exprs["TACoreHighErrorRate"]
    assert exprs["TACoreHighErrorRate"].endswith("> 0.05")
    assert "histogram_quantile(0.95," in exprs["TACoreHighLatencyP95"]
    assert exprs["TACoreHighLatencyP95"].endswith("> 2")
    assert 'state=~"idle|busy"' in exprs["TACoreNoAliveWorkers"]
    assert fors["TACoreNoAliveWorkers"] == "30s"
    assert "tacore_queue_depth / tacore_queue_capacity > 0.8" in exprs["TACoreQueueNearFull"]
    assert fors["TACoreQueueNearFull"] == "1m"
    assert "increase(tacore_worker_restarts_total[10m]) > 3" in exprs["TACoreWorkerRestarting"]
    # The documented process thresholds (issue 15): CPU above 80 %, memory above 85 %.
    assert exprs["TACoreProcessHighCPU"].endswith("(tacore_process_cpu_percent) > 80")
    assert exprs["TACoreProcessHighMemory"].endswith("(tacore_process_memory_percent) > 85")


def test_prometheus_config_scrapes_the_service_and_loads_the_rules() -> None:
    text = PROMETHEUS_YML.read_text()
    config = yaml.safe_load(text)
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tacoreservice"]
    assert job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "15s"
    assert job["static_configs"][0]["targets"] == ["tacore_service:8080"]
    # The token block is there for TACORE_API_TOKEN, commented out by default.
    assert "authorization" not in job
    assert enable_token_block(text) != text


def enable_token_block(text: str) -> str:
    """prometheus.yml with its commented ``authorization:`` block switched on."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# authorization:")
    out = lines[:start]
    for line in lines[start:]:
        if not line.lstrip().startswith("#"):
            break
        out.append(line.replace("# ", "", 1))
    return "\n".join(out + lines[len(out) :]) + "\n"


def test_dashboard_model_is_well_formed() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36 and board["uid"] == "tacoreservice"
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    # Provisioning does not substitute __inputs; a datasource variable of the same name does.
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"

    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    titles = [p["title"] for p in panels if p["type"] != "row"]
    assert len(titles) == len(set(titles))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']} has a target without expr"
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert metric_names(target["expr"]), f"{panel['title']} reads no tacore_ metric"


def test_dashboard_shows_every_contract_metric() -> None:
    shown = set().union(*(metric_names(expr) for _, expr in panel_queries()))
    assert shown == CONTRACT_METRICS


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert sources["apiVersion"] == 1
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"].startswith("http://")
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "tacoreservice.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    # deploy/README.md mounts the dashboard JSON at that path.
    readme = (DEPLOY / "README.md").read_text()
    assert provider["options"]["path"] in readme
    assert "tacoreservice-dashboard.json" in readme


# --------------------------------------------------------------------------- promtool

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (apt-get install prometheus): config and rules unchecked",
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_checks_config_and_rules() -> None:
    config = promtool("check", "config", PROMETHEUS_YML.name, cwd=PROMETHEUS_YML.parent)
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout + config.stderr
    rules = promtool("check", "rules", ALERTS_YML.name, cwd=ALERTS_YML.parent)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"{len(alert_rules())} rules found" in rules.stdout + rules.stderr


@needs_promtool
def test_promtool_alert_unit_tests_pass() -> None:
    """Each alert fires on its failure, not before its `for`, and never on a healthy service."""
    run = promtool("test", "rules", ALERTS_TEST_YML.name, cwd=ALERTS_TEST_YML.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST_YML.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}


@needs_promtool
def test_promtool_alert_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a laxer error-rate threshold fails them."""
    shutil.copy(ALERTS_TEST_YML, tmp_path / ALERTS_TEST_YML.name)
    text = ALERTS_YML.read_text()
    assert "> 0.05" in text
    (tmp_path / ALERTS_YML.name).write_text(text.replace("> 0.05", "> 0.5"))
    run = promtool("test", "rules", ALERTS_TEST_YML.name, cwd=tmp_path)
    assert run.returncode != 0
    assert "TACoreHighErrorRate" in run.stdout + run.stderr


# --------------------------------------------------------------------------- real service


def send_traffic(svc: ServiceProcesses) -> threading.Thread:
    """Successes, errors, cache misses and hits, a client retry and a job; returns a thread
    whose request is still running on a worker (so in-progress gauges have a sample)."""
    with svc.client() as c:
        for i in range(5):
            c.call("test.echo", {"payload": i})
        for _ in range(4):  # the first call per worker misses the cache, the next hits
            c.call("get.market_data", {"symbol": "AAPL"})
        for _ in range(2):
            with pytest.raises(TACoreError):
                c.call("test.fail", {})
        c.call("job.submit", {"method": "test.steps", "params": {"steps": 2, "delay": 0.05}})
    # Times out once and resends the same request_id: the broker joins it to the run in flight.
    with svc.client(timeout_ms=300, retries=3) as impatient:
        impatient.call("test.sleep", {"seconds": 0.5})

    def hold_a_worker() -> None:
        with svc.client(timeout_ms=10000, retries=0) as c:
            c.call("test.sleep", {"seconds": 4.0})

    holder = threading.Thread(target=hold_a_worker, daemon=True)
    holder.start()
    return holder


def scrape(svc: ServiceProcesses, token: str | None = None) -> dict[str, list[Any]]:
    """Sample lists of the service's /metrics by family name (counters keep their _total)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = httpx.get(svc.api_url + "/metrics", headers=headers, timeout=5)
    assert reply.status_code == 200, reply.text
    families: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            name = _HISTOGRAM_SUFFIX.sub("", sample.name)
            if sample.name.endswith("_created"):
                continue
            families.setdefault(name, []).append(sample)
    return families


TOKEN = "ops-test-token"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    """A real service whose API needs a token, as when Prometheus runs on another host."""
    svc = ServiceProcesses(tmp_path_factory.mktemp("ops"), workers=2, TACORE_API_TOKEN=TOKEN)
    try:
        svc.start_main()
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def scraped(service: ServiceProcesses) -> dict[str, list[Any]]:
    """/metrics of the service after some traffic, once every series has appeared."""
    holder = send_traffic(service)
    deadline = time.monotonic() + 15
    while True:
        families = scrape(service, TOKEN)
        hits = [s for s in families.get("tacore_cache_requests_total", []) if s.value > 0]
        if (families.get("tacore_requests_in_progress") and len(hits) == 2) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.1)
    holder.join(timeout=10)
    return families


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_referenced_metric_is_served(scraped: dict[str, list[Any]], source: str) -> None:
    if source == "alerts":
        exprs = [rule["expr"] for rule in alert_rules()]
    else:
        exprs = [expr for _, expr in panel_queries()]
    referenced = set().union(*(metric_names(e) for e in exprs))
    assert len(referenced) >= 6
    missing = sorted(name for name in referenced if not scraped.get(name))
    assert not missing, f"named in {source} but without samples in /metrics: {missing}"


def test_scraped_series_carry_the_labels_the_queries_group_by(
    scraped: dict[str, list[Any]],
) -> None:
    def label_values(name: str, label: str) -> set[str]:
        return {s.labels[label] for s in scraped[name] if label in s.labels}

    assert label_values("tacore_requests_total", "status") == {"success", "error"}
    assert {"test.echo", "get.market_data", "test.fail"} <= label_values(
        "tacore_requests_total", "method"
    )
    assert "+Inf" in label_values("tacore_request_duration_seconds", "le")
    assert label_values("tacore_workers", "state") == {"idle", "busy", "draining", "dead"}
    assert label_values("tacore_cache_requests_total", "result") == {"hit", "miss"}
    assert label_values("tacore_jobs", "state") == {"queued", "running"}
    assert "test.sleep" in label_values("tacore_request_retries_total", "method")
    assert "test.sleep" in label_values("tacore_requests_in_progress", "method")
    assert len(label_values("tacore_worker_last_heartbeat_timestamp_seconds", "worker")) == 2


# --------------------------------------------------------------------------- real Prometheus

PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not installed (apt-get install prometheus): queries not run",
)
# What Grafana puts for the dashboard's variables with "All" selected.
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$job": ".*", "$instance": ".*", "$method": ".*"}


def as_grafana_sends(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


class PrometheusServer:
    """A real Prometheus with deploy/prometheus/prometheus.yml, pointed at a test service."""

    def __init__(self, tmp: Path, targets: list[str], token: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token_file = tmp / "tacore_api_token"
        token_file.write_text(token)
        config = yaml.safe_load(enable_token_block(PROMETHEUS_YML.read_text()))
        # Same file, test pace: scrape and evaluate every second, rules by absolute path.
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str(ALERTS_YML)]
        (job,) = config["scrape_configs"]
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["static_configs"][0]["targets"] = targets
        assert job["authorization"]["type"] == "Bearer"
        job["authorization"]["credentials_file"] = str(token_file)
        config_file = tmp / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        assert PROMETHEUS is not None
        self.log = open(tmp / "prometheus.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait(lambda: httpx.get(self.url + "/-/ready", timeout=1).status_code == 200, 30)

    def wait(self, ok: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited; see prometheus.out"
            try:
                if ok():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus: condition not met within {timeout}s")

    def api(self, path: str, **params: Any) -> Any:
        reply = httpx.get(self.url + "/api/v1/" + path, params=params, timeout=10).json()
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, expr: str) -> list[Any]:
        return self.api("query", query=expr)["result"]

    def query_range(self, expr: str, seconds: int) -> list[Any]:
        now = time.time()
        data = self.api("query_range", query=expr, start=now - seconds, end=now, step=1)
        return data["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@needs_prometheus
def test_real_prometheus_runs_every_panel_query_and_rule(
    service: ServiceProcesses, tmp_path: Path
) -> None:
    live = f"127.0.0.1:{service.api_port}"
    gone = f"127.0.0.1:{free_port()}"  # a second target where nothing listens
    prometheus = PrometheusServer(tmp_path, [live, gone], TOKEN)
    try:
        # The bearer token of the commented block gets through.
        prometheus.wait(lambda: prometheus.query(f'up{{instance="{live}"}} == 1'), 20)
        holder = send_traffic(service)
        prometheus.wait(lambda: prometheus.query("tacore_requests_in_progress > 0"), 15)
        prometheus.wait(lambda: prometheus.query("tacore_cache_requests_total > 0"), 15)
        holder.join(timeout=10)

        empty = []
        for title, expr in panel_queries():
            if not prometheus.query_range(as_grafana_sends(expr), seconds=60):
                empty.append(f"{title}: {expr}")
        assert not empty, "panel queries with no data from a live service:\n" + "\n".join(empty)

        groups = prometheus.api("rules")["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(rules) == {rule["alert"] for rule in alert_rules()}
        for name, rule in rules.items():
            assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"

        def alerts_for(instance: str) -> set[str]:
            return {
                a["labels"]["alertname"]
                for a in prometheus.api("alerts")["alerts"]
                if a["labels"].get("instance") == instance
            }

        # The dead target trips TACoreServiceDown (pending for its `for`); the live one trips
        # none of the outage alerts.
        prometheus.wait(lambda: "TACoreServiceDown" in alerts_for(gone), 20)
        outage = {"TACoreServiceDown", "TACoreNoAliveWorkers", "TACoreQueueNearFull"}
        assert not outage & alerts_for(live)
    finally:
        prometheus.stop()

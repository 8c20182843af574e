"""Run real TACoreService processes for tests: the embedded service, a lone broker, workers."""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import zmq

from tacoreservice.client import TACoreClient, TACoreError

REPO = Path(__file__).resolve().parents[2]


# Below Linux's ephemeral range (32768-60999): a port the kernel hands out for port 0 is also
# what it hands to outgoing connections, so between this check and the service's bind any
# client on the machine (another test run's) could take it. Here only another bind can.
_PORTS = (20_000, 32_767)
# Ports this test process handed out lately. A port is free when picked but bound only when the
# service starts, so the three picks of one ServiceProcesses (or two services of one test) could
# otherwise land on the same port: the broker then cannot bind, and the test waits out its
# deadline for a service that exited at once. A suite hands out well under this many.
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=4096)


def free_port() -> int:
    """A loopback TCP port nothing listens on or holds, outside the ephemeral range, and not
    one this process handed out among its last 4,096."""
    rng = random.SystemRandom()
    while True:
        port = rng.randint(*_PORTS)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or in TIME_WAIT): another
        _HANDED_OUT.append(port)
        return port


class ServiceProcesses:
    """Ports, environment and child processes of one service instance under test."""

    def __init__(self, tmp: Path, workers: int = 2, **env: Any):
        self.tmp = tmp
        self.frontend_port = free_port()
        self.backend_port = free_port()
        self.api_port = free_port()
        self.db_path = tmp / "tacore.db"  # the ledger
        self.log_path = tmp / "tacore-requests.db"  # the request log (default: beside it)
        self.workers = workers
        self.env = dict(os.environ)
        self.env.pop("TACORE_SETTINGS_JSON", None)
        self.env.update(
            {
                "PYTHONPATH": str(REPO),
                "ZMQ_FRONTEND_PORT": str(self.frontend_port),
                "ZMQ_BACKEND_PORT": str(self.backend_port),
                "API_PORT": str(self.api_port),
                "DATABASE_PATH": str(self.db_path),
                "WORKER_COUNT": str(workers),
                "TACORE_PLUGINS": "tests.support.test_methods",
                "TACORE_LOG_DIR": str(tmp / "logs"),
                "TACORE_HEARTBEAT_INTERVAL_MS": "250",
                "TACORE_CONFIG": str(REPO / "config" / "config.yaml"),
                # 1 MiB, not 32, beside each of the suite's hundreds of databases.
                "TACORE_DATABASE_RESERVE_BYTES": str(1 << 20),
            }
        )
        self.env.update({k: str(v) for k, v in env.items()})
        self.procs: list[subprocess.Popen[bytes]] = []
        self.main: subprocess.Popen[bytes] | None = None
        # Passed to every client this harness makes (CURVE keys, a client name).
        self.client_kwargs: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.frontend_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def backend_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.backend_port}"

    def _spawn(self, module: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(  # noqa: SIM115 - handed to the child process, closed with it
            self.tmp / f"{module.rsplit('.', 1)[-1]}-{len(self.procs)}.out", "ab"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=self.env,
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def start_main(self, wait: bool = True) -> subprocess.Popen[bytes]:
        self.main = self._spawn("tacoreservice.main")
        if wait:
            self.wait_workers(self.workers)
        return self.main

    def start_broker(self) -> subprocess.Popen[bytes]:
        self.main = self._spawn("tacoreservice.load_balancer")
        return self.main

    def start_worker(self, worker_id: str | None = None) -> subprocess.Popen[bytes]:
        args = ["--endpoint", self.backend_endpoint]
        if worker_id:
            args += ["--worker-id", worker_id]
        return self._spawn("tacoreservice.worker", *args)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``tacore ARGS`` against this service, as a user would from a shell."""
        return subprocess.run(
            [sys.executable, "-m", "tacoreservice", *args],
            env={**self.env, "TACORE_ENDPOINT": self.endpoint},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def client(self, **kwargs: Any) -> TACoreClient:
        kwargs = {**self.client_kwargs, **kwargs}
        kwargs.setdefault("timeout_ms", 5000)
        kwargs.setdefault("retries", 2)
        return TACoreClient(self.endpoint, **kwargs)

    def health(self, detailed: bool = True, timeout_ms: int = 1000) -> dict[str, Any]:
        with self.client(timeout_ms=timeout_ms, retries=0) as c:
            return c.health(detailed=detailed)

    def wait_workers(
        self, count: int, timeout: float = 60.0, exclude_pid: int | None = None
    ) -> dict[str, Any]:
        """Poll health until ``count`` workers are alive (none of them ``exclude_pid``).

        A single slow health probe is retried, not fatal: the caller's deadline is the test.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.main is not None and self.main.poll() is not None:
                raise AssertionError(
                    f"the service exited (code {self.main.returncode}) while waiting for "
                    f"{count} workers:\n{self.output_tail(self.main)}"
                )
            try:
                last = self.health()
                pids = {w["pid"] for w in last["worker_list"]}
                if last["workers"]["alive"] == count and exclude_pid not in pids:
                    return last
            except TACoreError as exc:
                last = exc
            time.sleep(0.02)
        raise AssertionError(f"expected {count} workers within {timeout}s; last: {last}")

    def output_tail(self, proc: subprocess.Popen[bytes], size: int = 2000) -> str:
        """The last ``size`` bytes ``proc`` (one this harness spawned) wrote."""
        index = self.procs.index(proc)
        for path in self.tmp.glob(f"*-{index}.out"):
            return path.read_bytes()[-size:].decode(errors="replace")
        return ""

    def worker_pids(self) -> set[int]:
        return {w["pid"] for w in self.health()["worker_list"]}

    def stop(self) -> None:
        terminate_all(list(reversed(self.procs)))  # the last started (workers) first


def terminate_all(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM each in the given order (workers say DISCONNECT, a broker drains), then wait for
    all; kill what is still there after ``timeout`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_job(
    client: TACoreClient, job_id: str, states: set[str], timeout: float = 20
) -> dict[str, Any]:
    """Poll ``job.status`` until the job is in one of ``states``."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.call("job.status", {"job_id": job_id})
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


def raw_request(endpoint: str, body: bytes, timeout_ms: int = 5000) -> dict[str, Any]:
    """One frame through a plain REQ socket, as the oldest clients do it."""
    ctx: zmq.Context = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(body)
        if not sock.poll(timeout_ms):
            raise AssertionError(f"no reply within {timeout_ms} ms to {body[:80]!r}")
        return orjson.loads(sock.recv())
    finally:
        sock.close(linger=0)


def child_pids(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (a thread that spawns one is its parent here)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    """The command line of ``pid``, or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False

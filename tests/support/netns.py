"""A broker and its workers on two "hosts": network namespaces joined by a veth pair.

    broker ns  tac-b-<pid>   10.231.X.1/24  tacb<pid>  ==veth==  tacw<pid>  10.231.X.2/24  tac-w-<pid>

The broker binds the broker ns address (not loopback, so CURVE is required), the workers
connect to it from the worker ns, and the only way between the two is the veth pair: taking
the worker end down is a cable pulled out. Needs root and iproute2; ``VethLink.create`` raises
``NetnsUnavailable`` with ip's own stderr when the kernel refuses, so a test can skip with it.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tacoreservice.security.keys import generate_keys
from tests.support.service import REPO, ServiceProcesses, terminate_all

__all__ = ["NetnsUnavailable", "VethLink", "Probe", "RemoteWorkerService"]

PROBE_SCRIPT = REPO / "tests" / "support" / "netns_probe.py"


class NetnsUnavailable(RuntimeError):
    """``ip`` is missing, or the kernel refused a namespace or a veth pair."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@dataclass
class VethLink:
    broker_ns: str
    worker_ns: str
    broker_if: str
    worker_if: str
    broker_addr: str
    worker_addr: str
    prefix: int = 24
    owns_broker_ns: bool = True

    @classmethod
    def create(cls, tag: str, subnet: str, broker_ns: str | None = None) -> VethLink:
        """Namespaces ``tac-b-TAG`` and ``tac-w-TAG`` joined by a veth pair on ``SUBNET.0/24``
        (the broker end .1, the worker end .2). With ``broker_ns``, a further worker "host"
        wired to that existing broker namespace instead."""
        if shutil.which("ip") is None:
            raise NetnsUnavailable(
                "the `ip` command is missing: install iproute2 (apt-get install iproute2)"
            )
        link = cls(
            broker_ns=broker_ns or f"tac-b-{tag}",
            worker_ns=f"tac-w-{tag}",
            broker_if=f"tacb{tag}",  # interface names: at most 15 characters
            worker_if=f"tacw{tag}",
            broker_addr=f"{subnet}.1",
            worker_addr=f"{subnet}.2",
            owns_broker_ns=broker_ns is None,
        )
        link.remove()  # leftovers of an earlier run that died with this pid
        for ns in (link.broker_ns, link.worker_ns) if link.owns_broker_ns else (link.worker_ns,):
            added = _ip("netns", "add", ns, check=False)
            if added.returncode != 0:
                link.remove()
                raise NetnsUnavailable(
                    added.stderr.strip() or f"ip netns add exit {added.returncode}"
                )
        try:
            veth = _ip(
                "link", "add", link.broker_if, "netns", link.broker_ns, "type", "veth",
                "peer", "name", link.worker_if, "netns", link.worker_ns,
                check=False,
            )  # fmt: skip
            if veth.returncode != 0:
                raise NetnsUnavailable(veth.stderr.strip() or f"ip link add exit {veth.returncode}")
            for ns, dev, addr in (
                (link.broker_ns, link.broker_if, link.broker_addr),
                (link.worker_ns, link.worker_if, link.worker_addr),
            ):
                _ip("-n", ns, "addr", "add", f"{addr}/{link.prefix}", "dev", dev)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", dev, "up")
            # Whatever address the broker listens on in its namespace is reachable this way.
            _ip("-n", link.worker_ns, "route", "add", "default", "via", link.broker_addr)
        except BaseException:
            link.remove()
            raise
        return link

    def remove(self) -> None:
        """Delete the namespaces this link made. The kernel frees a namespace (and the veth
        pair in it) once its last socket is gone: TCP sockets orphaned while the link was
        down keep it a while longer, invisibly, but the names are free at once."""
        _ip("-n", self.broker_ns, "link", "del", self.broker_if, check=False)
        _ip("netns", "del", self.worker_ns, check=False)
        if self.owns_broker_ns:
            _ip("netns", "del", self.broker_ns, check=False)

    def set_worker_side(self, up: bool) -> None:
        _ip("-n", self.worker_ns, "link", "set", self.worker_if, "up" if up else "down")

    def worker_addresses(self) -> str:
        return _ip("-n", self.worker_ns, "-4", "-o", "addr", "show", "dev", self.worker_if).stdout

    def ensure_worker_address(self) -> bool:
        """Put the worker address back if the kernel dropped it with the link; True if it did."""
        if f"{self.worker_addr}/{self.prefix}" in self.worker_addresses():
            return False
        _ip("-n", self.worker_ns, "addr", "add", f"{self.worker_addr}/{self.prefix}", "dev",
            self.worker_if)  # fmt: skip
        return True

    def spawn(
        self, ns: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path | None
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside ``ns``. ``ip netns exec`` execs in place, so the Popen pid is
        the pid of the program itself."""
        out: Any = open(log, "ab") if log is not None else subprocess.PIPE  # noqa: SIM115
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if log is None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log is not None else None,
        )


def net_namespace_of(pid: int) -> str:
    """The kernel's name for the network namespace of ``pid`` (``net:[4026532...]``)."""
    return os.readlink(f"/proc/{pid}/ns/net")


class Probe:
    """A client inside a namespace (tests/support/netns_probe.py), one JSON line per request.

    ``send`` does not wait, so a request can stay outstanding while the test goes on;
    ``receive`` collects its reply.
    """

    def __init__(self, proc: subprocess.Popen[bytes]):
        self.proc = proc
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._next(30.0)
        if ready.get("ready") is not True:
            raise AssertionError(f"probe did not start: {ready}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"probe gave no answer within {timeout} s") from None
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout_ms: int = 1000,
        deadline_ms: int | None = None,
    ) -> None:
        assert self.proc.stdin is not None
        order = {
            "method": method,
            "params": params or {},
            "timeout_ms": timeout_ms,
            "deadline_ms": deadline_ms,
        }
        self.proc.stdin.write(orjson.dumps(order) + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        return self._next(timeout)

    def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout_ms: int = 1000,
        deadline_ms: int | None = None,
    ) -> dict[str, Any]:
        self.send(method, params, timeout_ms, deadline_ms)
        return self.receive(timeout_ms / 1000.0 + 10.0)

    def health(self) -> dict[str, Any] | None:
        """Detailed health data, or None when the broker did not answer within 1 s."""
        reply = self.request("health.check", {"detailed": True}, timeout_ms=1000)
        data: dict[str, Any] | None = reply.get("data") if reply["status"] == "success" else None
        return data

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class RemoteWorkerService:
    """A broker in ``link.broker_ns`` with CURVE on, ``workers`` workers in
    ``link.worker_ns`` connecting over the veth pair, and probes in the broker ns."""

    link: VethLink
    tmp: Path
    workers: int = 2
    heartbeat_interval_ms: int = 200
    heartbeat_liveness: int = 3
    svc: ServiceProcesses = field(init=False)
    broker: subprocess.Popen[bytes] | None = None
    worker_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = self.tmp / "keys"
        generate_keys(self.keys, ["console"])
        # ServiceProcesses gives the ports (free in a fresh namespace too), database, logs.
        self.svc = ServiceProcesses(
            self.tmp,
            workers=0,
            TACORE_FRONTEND_HOST=self.link.broker_addr,
            TACORE_BACKEND_HOST=self.link.broker_addr,
            TACORE_SECURITY="curve",
            TACORE_KEYS_DIR=str(self.keys),
            TACORE_HEARTBEAT_INTERVAL_MS=self.heartbeat_interval_ms,
            TACORE_HEARTBEAT_LIVENESS=self.heartbeat_liveness,
            TACORE_API_ENABLED="0",
        )

    @property
    def frontend(self) -> str:
        return f"tcp://{self.link.broker_addr}:{self.svc.frontend_port}"

    @property
    def backend(self) -> str:
        return f"tcp://{self.link.broker_addr}:{self.svc.backend_port}"

    @property
    def heartbeat_window_s(self) -> float:
        return self.heartbeat_interval_ms * self.heartbeat_liveness / 1000.0

    def start(self, timeout: float = 60.0) -> None:
        self.broker = self.link.spawn(
            self.link.broker_ns,
            [sys.executable, "-m", "tacoreservice.load_balancer"],
            self.svc.env,
            self.tmp,
            self.tmp / "broker.out",
        )
        for i in range(self.workers):
            self.spawn_worker(self.link.worker_ns, f"remote-{i}")
        self.health_probe = self.probe()
        self.wait_workers(self.worker_pids(), timeout)

    def spawn_worker(self, ns: str, worker_id: str) -> subprocess.Popen[bytes]:
        """One more worker in namespace ``ns``, connecting to the broker's backend address."""
        env = {
            **self.svc.env,
            "TACORE_CURVE_SERVER_KEY": str(self.keys / "server.key"),
            "TACORE_WORKER_KEY": str(self.keys / "private" / "worker.key_secret"),
        }
        proc = self.link.spawn(
            ns,
            [sys.executable, "-m", "tacoreservice.worker", "--endpoint", self.backend,
             "--worker-id", worker_id],
            env,
            self.tmp,
            self.tmp / f"worker-{worker_id}-{len(self.worker_procs)}.out",
        )  # fmt: skip
        self.worker_procs.append(proc)
        return proc

    def probe(self, client_key: Path | None = None) -> Probe:
        """A client in the broker ns; by default with the console key the broker accepts."""
        client_key = client_key or self.keys / "private" / "console.key_secret"
        proc = self.link.spawn(
            self.link.broker_ns,
            [sys.executable, str(PROBE_SCRIPT), self.frontend, str(self.keys / "server.key"),
             str(client_key)],
            self.svc.env,
            self.tmp,
            None,
        )  # fmt: skip
        probe = Probe(proc)
        self.probes.append(probe)
        return probe

    def worker_pids(self) -> set[int]:
        """The worker processes still running."""
        return {p.pid for p in self.worker_procs if p.poll() is None}

    def wait_workers(self, pids: set[int], timeout: float) -> dict[str, Any]:
        """Poll health until exactly the workers ``pids`` are registered (empty: none)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.health_probe.health()
            if (
                last is not None
                and {w["pid"] for w in last["worker_list"]} == pids
                and last["workers"]["alive"] == len(pids)
            ):
                return last
            time.sleep(0.02)
        raise AssertionError(f"expected workers {sorted(pids)} within {timeout} s; last: {last}")

    def stop_workers(self) -> None:
        terminate_all(self.worker_procs)

    def stop(self) -> None:
        for probe in self.probes:
            probe.close()
        terminate_all([*self.worker_procs, *([self.broker] if self.broker else [])])

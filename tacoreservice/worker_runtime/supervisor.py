"""Keeps WORKER_COUNT local worker processes alive for ``python -m tacoreservice.main``.

Workers are separate interpreters started with ``python -m tacoreservice.worker`` (not
fork: forking a process that already holds ZeroMQ sockets and threads is unsafe). The
supervisor reaps a dead worker within ~50 ms, tells the broker at once over the inproc control
socket (so its in-flight request is re-dispatched without waiting out the heartbeat window) and
starts a replacement. The broker, in turn, asks it to kill a worker whose request outlived
its hard time limit (``kill WORKER_ID``), which is then replaced like any other. Workers run in their own process group, so a terminal's Ctrl+C reaches
only this process, which then shuts them down in order; and each asks the kernel for SIGKILL
should this process die without cleaning up, so nothing is orphaned.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import zmq

from tacoreservice.child_process import die_with_parent
from tacoreservice.config import Settings

__all__ = ["Supervisor"]

log = logging.getLogger("tacoreservice.supervisor")


@dataclass
class _Slot:
    index: int
    generation: int = 0
    proc: subprocess.Popen[bytes] | None = None
    worker_id: str = ""
    restarts: deque[float] = field(default_factory=deque)
    next_start: float = 0.0


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        count: int,
        endpoint: str,
        context: zmq.Context,
        control_endpoint: str,
    ):
        self.settings = settings
        self.count = count
        self.endpoint = endpoint
        self.ctx = context
        self.control_endpoint = control_endpoint
        self.slots = [_Slot(i) for i in range(count)]
        self.restarts_total = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tacore-supervisor", daemon=True)
        self._lock = threading.Lock()

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)
        self._thread.start()

    def _spawn(self, slot: _Slot) -> None:
        slot.generation += 1
        slot.worker_id = f"local-{os.getpid()}-{slot.index}-{slot.generation}"
        env = dict(os.environ)
        # Children run with exactly the parent's effective settings, CLI overrides included.
        env["TACORE_SETTINGS_JSON"] = self.settings.model_dump_json()
        env["TACORE_LOG_ROLE"] = "worker"
        slot.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tacoreservice.worker",
                "--worker-id",
                slot.worker_id,
                "--endpoint",
                self.endpoint,
            ],
            env=env,
            preexec_fn=die_with_parent,
            process_group=0,
        )
        log.info("started worker %s (pid %d)", slot.worker_id, slot.proc.pid)

    @staticmethod
    def _notify(control: zmq.Socket, command: bytes, worker_id: str) -> None:
        try:
            control.send_multipart([command, worker_id.encode()], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # broker gone or busy: heartbeats will catch up

    def _watch(self) -> None:
        control = self.ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.connect(self.control_endpoint)
        try:
            while not self._stopping.wait(0.05):
                self._kill_requested(control)
                now = time.monotonic()
                with self._lock:
                    for slot in self.slots:
                        proc = slot.proc
                        if proc is not None and proc.poll() is not None:
                            if self._stopping.is_set():
                                break
                            log.warning(
                                "worker %s (pid %d) exited with %s; restarting",
                                slot.worker_id,
                                proc.pid,
                                proc.returncode,
                            )
                            self._notify(control, b"lost", slot.worker_id)
                            slot.proc = None
                            # A worker that keeps crashing on start is restarted ever more
                            # slowly instead of spinning the CPU.
                            slot.restarts.append(now)
                            while slot.restarts and slot.restarts[0] < now - 30:
                                slot.restarts.popleft()
                            excess = len(slot.restarts) - 5
                            slot.next_start = now + (min(30.0, 2.0**excess) if excess > 0 else 0)
                        if slot.proc is None and now >= slot.next_start:
                            self._spawn(slot)
                            self.restarts_total += 1
                            self._notify(control, b"restarted", slot.worker_id)
        finally:
            control.close(linger=0)

    def _kill_requested(self, control: zmq.Socket) -> None:
        """Kill the workers the broker asked for (stuck past a hard time limit)."""
        while True:
            try:
                msg = control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(msg) < 2 or msg[0] != b"kill":
                continue
            worker_id = msg[1].decode(errors="replace")
            with self._lock:
                for slot in self.slots:
                    if slot.worker_id == worker_id and slot.proc is not None:
                        log.warning(
                            "killing worker %s (pid %d): past a hard time limit",
                            worker_id,
                            slot.proc.pid,
                        )
                        slot.proc.kill()

    def stop_respawning(self) -> None:
        """From a signal handler: no more restarts; running workers keep serving the drain."""
        self._stopping.set()

    def kill_all(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every worker (each finishes its request), then SIGKILL stragglers."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        with self._lock:
            procs = [s.proc for s in self.slots if s.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %.0f s; killing", proc.pid, timeout)
                proc.kill()
                proc.wait(timeout=5)

"""The broker's in-process side channels, beside its two routing sockets.

- control: a PAIR the local supervisor connects to (worker_runtime/supervisor.py). It tells
  the broker which worker process exited or was restarted, or to stop; the broker asks it to
  kill a worker that ran past its hard time limit.
- monitor: a ROUTER the monitoring API's bridge queries (monitoring/bridge.py); each query is
  answered from :mod:`tacoreservice.broker.status` on the broker thread, so the API never
  reads the broker's state from another thread.

Neither blocks: a message that cannot be sent now is dropped (the supervisor and the bridge
both cope with that).
"""

from __future__ import annotations

import zmq

from tacoreservice.broker import status
from tacoreservice.protocol.transport import NOBLOCK

__all__ = ["CONTROL_ENDPOINT", "SideChannels"]

CONTROL_ENDPOINT = "inproc://tacore-broker-control"
_MONITOR_BATCH = 64  # queries answered per loop turn


class SideChannels:
    """The control PAIR and the monitor ROUTER of one broker."""

    def __init__(self, ctx: zmq.Context, monitor_endpoint: str):
        self.control = ctx.socket(zmq.PAIR)
        self.monitor = ctx.socket(zmq.ROUTER)
        for sock in (self.control, self.monitor):
            sock.setsockopt(zmq.LINGER, 0)
        self.control.bind(CONTROL_ENDPOINT)
        self.monitor.bind(monitor_endpoint)

    @property
    def sockets(self) -> tuple[zmq.Socket, zmq.Socket]:
        return self.control, self.monitor

    def commands(self) -> list[list[bytes]]:
        """Every control message waiting: ``[b"lost", worker_id]``, ``[b"restarted"]``,
        ``[b"stop"]``."""
        out = []
        while True:
            try:
                out.append(self.control.recv_multipart(NOBLOCK))
            except zmq.Again:
                return out

    def kill_worker(self, worker_id: str) -> None:
        """Ask the supervisor to kill and replace ``worker_id`` (nothing happens when the
        worker is not one of its own: such a worker ends itself)."""
        try:
            self.control.send_multipart([b"kill", worker_id.encode()], NOBLOCK)
        except zmq.ZMQError:
            pass

    def answer_monitor(self, view: status.BrokerView) -> None:
        """Answer the monitoring queries waiting (``[identity, "", seq, kind]``)."""
        for _ in range(_MONITOR_BATCH):
            try:
                frames = self.monitor.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            body = status.monitor_answer(view, frames[3]) if len(frames) == 4 else None
            if body is None:
                continue
            try:
                self.monitor.send_multipart([frames[0], b"", frames[2], body], NOBLOCK)
            except zmq.ZMQError:
                pass

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)

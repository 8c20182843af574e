"""CURVE on the broker's sockets, with pyzmq's ZAP authenticator deciding who gets in.

Two ZAP domains keep the two kinds of peer apart: a client key lets a module send requests
on the frontend, a worker key lets a process register on the backend and receive them. A
client key cannot register as a worker, because a worker sees every request it is given.

The authenticator thread answers handshakes; the broker thread reloads the key rings. The
authenticator's ``User-Id`` for a connection is the client's public key (Z85), which the
broker reads off each request and maps to a name through the key ring at that moment: a key
removed from the folder stops working at the next request, even on a connection that was
authenticated before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import monitor as zmq_monitor

from tacoreservice.config import SecuritySettings
from tacoreservice.security.keys import KeyRing, load_key_pair

__all__ = [
    "BrokerCurve",
    "CLIENTS_DOMAIN",
    "WORKERS_DOMAIN",
    "CurveAuthenticator",
    "RefusalLog",
    "apply_server_curve",
    "handshake_failure",
    "make_rings",
    "recv_with_user_id",
]

log = logging.getLogger("tacoreservice.security")

CLIENTS_DOMAIN = "clients"
WORKERS_DOMAIN = "workers"

HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class RefusalLog:
    """Logs each kind of refusal at most once per ``every_s`` and counts all of them, so a
    peer hammering the port with bad handshakes cannot flood the log."""

    def __init__(self, every_s: float = 10.0):
        self.every_s = every_s
        self.counts: Counter[tuple[str, str]] = Counter()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        # Called from the ZAP thread and the broker thread; refusals are rare, a lock is cheap.
        self._lock = threading.Lock()

    def refused(self, socket_name: str, reason: str, detail: str, key: str = "") -> None:
        throttle_key = f"{socket_name}|{reason}|{key}"
        now = time.monotonic()
        with self._lock:
            self.counts[(socket_name, reason)] += 1
            if now - self._last.get(throttle_key, -1e9) < self.every_s:
                self._suppressed[throttle_key] += 1
                return
            suppressed = self._suppressed.pop(throttle_key, 0)
            self._last[throttle_key] = now
            if len(self._last) > 4096:  # bounded: forget the oldest throttles
                for k in list(self._last)[:2048]:
                    self._last.pop(k, None)
        more = f" ({suppressed} more like it since the last line)" if suppressed else ""
        log.warning("refused on %s: %s%s", socket_name, detail, more)

    def totals(self) -> dict[str, int]:
        with self._lock:
            return {f"{s}:{r}": n for (s, r), n in sorted(self.counts.items())}


class CurveAuthenticator(ThreadAuthenticator):
    """ZAP handler: a CURVE key is let in when its public key file is in the domain's folder."""

    def __init__(self, context: zmq.Context, rings: dict[str, KeyRing], refusals: RefusalLog):
        super().__init__(context=context, log=logging.getLogger("tacoreservice.security.zap"))
        self.rings = rings
        self.refusals = refusals
        self._address = ""

    def start(self) -> None:
        super().start()
        for domain in self.rings:
            self.configure_curve_callback(domain, credentials_provider=self)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # The credentials callback is not told the peer's address; the log line should be.
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        ring = self.rings.get(domain)
        if ring is not None and ring.name_for(key) is not None:
            return True
        socket_name = "backend" if domain == WORKERS_DOMAIN else "frontend"
        where = f"the {ring.what} in {ring.folder}" if ring is not None else f"domain {domain}"
        self.refusals.refused(
            socket_name,
            "unknown_key",
            f"CURVE key {key.decode('ascii', 'replace')[:12]}... from {self._address or '?'} is "
            f"not among {where}",
            key.decode("ascii", "replace"),
        )
        return False


def apply_server_curve(sock: zmq.Socket, secret_key_path: Path, domain: str) -> None:
    """Make a bound socket a CURVE server whose peers ZAP checks in ``domain``."""
    public, secret = load_key_pair(secret_key_path, "the broker's secret key")
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
    # Without a ZAP handler libzmq would accept any CURVE key; enforcing the domain makes a
    # missing handler a refusal instead of an open door.
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


_PROTOCOL_REASONS: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed (a peer without CURVE, or with "
    "another server key)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed: protocol error (a peer without "
    "CURVE, or with another server key)",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake failed: authentication refused",
}


def handshake_failure(monitor_socket: zmq.Socket) -> tuple[str, str] | None:
    """Read one socket-monitor event (zmq.Again when there is none); (reason, detail) for a
    failed handshake, else None."""
    event: dict[str, Any] = dict(zmq_monitor.recv_monitor_message(monitor_socket, zmq.NOBLOCK))
    kind = event.get("event")
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return None  # the ZAP callback already logged it, with the key and address
    reason = _PROTOCOL_REASONS.get(int(kind or 0))
    if reason is None:
        return None
    return (
        "handshake",
        f"{reason} on {event.get('endpoint', b'').decode('utf-8', 'replace')} "
        f"(zmq code {event.get('value')})",
    )


def make_rings(security: SecuritySettings) -> dict[str, KeyRing]:
    return {
        CLIENTS_DOMAIN: KeyRing(security.client_keys_path, "client keys"),
        WORKERS_DOMAIN: KeyRing(security.worker_keys_path, "worker keys"),
    }


def recv_with_user_id(sock: zmq.Socket, flags: int = 0) -> tuple[list[bytes], str | None]:
    """One message and the User-Id the ZAP handler gave its connection (the peer's CURVE
    public key): frames are read without copying so the property can be asked for.
    ``flags`` as for ``recv_multipart`` (NOBLOCK raises ``zmq.Again`` when none waits)."""
    parts = sock.recv_multipart(flags, copy=False)
    user_id = parts[-1].get("User-Id")
    return [p.bytes for p in parts], user_id if isinstance(user_id, str) else None


class BrokerCurve:
    """CURVE on a broker's frontend and backend: the ZAP handler, the two key rings and the
    handshake monitors whose failures are counted as refusals.

    The broker calls :meth:`secure` before binding, :meth:`read_handshake_events` when a
    monitor socket is readable, :meth:`reload` every ``reload_interval_s`` and
    :meth:`close` at exit; :meth:`worker_name` tells whether a worker's key is still allowed.
    """

    def __init__(self, security: SecuritySettings, refusals: RefusalLog):
        self.security = security
        self.refusals = refusals
        self.rings = make_rings(security)
        self.authenticator: CurveAuthenticator | None = None
        self.monitors: dict[zmq.Socket, str] = {}

    def secure(self, context: zmq.Context, frontend: zmq.Socket, backend: zmq.Socket) -> None:
        # The ZAP handler must be listening before the first peer can handshake.
        self.authenticator = CurveAuthenticator(context, self.rings, self.refusals)
        self.authenticator.start()
        secret = self.security.server_secret_key_path
        apply_server_curve(frontend, secret, CLIENTS_DOMAIN)
        apply_server_curve(backend, secret, WORKERS_DOMAIN)
        for sock, name in ((frontend, "frontend"), (backend, "backend")):
            self.monitors[sock.get_monitor_socket(HANDSHAKE_EVENTS)] = name

    def worker_name(self, user_id: str | None) -> str | None:
        """The name of the worker key ``user_id`` (Z85), None when it is not (or no longer)
        among the allowed worker keys."""
        ring = self.rings.get(WORKERS_DOMAIN)
        if ring is None or not user_id:
            return None
        return ring.name_for(user_id.encode())

    def reload(self) -> None:
        """Pick up added or removed public keys."""
        for ring in self.rings.values():
            ring.reload_if_changed()

    def read_handshake_events(self, readable: dict[Any, int], batch: int = 256) -> None:
        for monitor_socket, name in self.monitors.items():
            if monitor_socket in readable:
                for _ in range(batch):
                    try:
                        failure = handshake_failure(monitor_socket)
                    except zmq.Again:
                        break
                    if failure is not None:
                        self.refusals.refused(name, failure[0], failure[1])

    def close(self) -> None:
        for monitor_socket in self.monitors:
            monitor_socket.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()

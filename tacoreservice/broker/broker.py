"""The load-balancing broker: ROUTER frontend for clients, ROUTER backend for workers.

One thread, one poll loop, no locks. What it promises (DESIGN.md, "Reliability"):

- requests go only to idle workers, least recently used first;
- a worker that dies mid-request (supervisor notice, DISCONNECT or missed heartbeats) has
  its request re-dispatched, up to ``max_redispatch`` times, then the client gets WORKER_LOST
  (a request that kills every worker it touches must not loop forever);
- a retry (same ``request_id``) joins the request in flight or is answered from the reply
  cache, so a client retry never runs a request twice;
- at most ``max_queue_size`` requests wait; more get OVERLOADED at once;
- a request whose ``timeout_ms`` passes while queued gets DEADLINE_EXCEEDED and never starts;
- every request is logged through a batching writer thread, off this loop.

``health.check`` is answered here, not by a worker: the broker is the one that knows the
pool, the queue and the counters, and health must answer even when no worker is alive.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any

import orjson
import zmq

from tacoreservice import __version__
from tacoreservice.broker.counters import RequestCounters
from tacoreservice.broker.worker_pool import WorkerPool, WorkerRecord
from tacoreservice.config import Settings
from tacoreservice.monitoring.bridge import MONITOR_ENDPOINT, QUERIES
from tacoreservice.monitoring.metrics import BrokerMetrics
from tacoreservice.monitoring.process_stats import ProcessSampler
from tacoreservice.monitoring.window import RequestWindow
from tacoreservice.protocol import worker_protocol as wp
from tacoreservice.protocol.errors import (
    ErrorCode,
    ServiceError,
    did_you_mean,
    is_client_error,
)
from tacoreservice.protocol.messages import (
    STANDARD,
    ClientRequest,
    RequestRejected,
    build_error_reply,
    build_reply,
    parse_request,
    utc_timestamp,
)
from tacoreservice.security.curve import (
    CLIENTS_DOMAIN,
    HANDSHAKE_EVENTS,
    WORKERS_DOMAIN,
    CurveAuthenticator,
    RefusalLog,
    apply_server_curve,
    handshake_failure,
    make_rings,
)
from tacoreservice.security.exposure import check_broker_exposure
from tacoreservice.security.guard import RequestGuard
from tacoreservice.security.keys import KeyRing
from tacoreservice.security.redaction import BodyRedactor
from tacoreservice.security.secrets import secret_values
from tacoreservice.service.compat import health_fields
from tacoreservice.service.methods.jobs import (
    JOB_READ_METHODS,
    JobRef,
    JobSubmitParams,
    read_job,
)
from tacoreservice.service.registry import MethodSpec, validate_params
from tacoreservice.storage.job_store import TERMINAL_STATES, JobStore
from tacoreservice.storage.request_log import RequestLogEntry, RequestLogWriter

__all__ = ["Broker", "CONTROL_ENDPOINT"]

log = logging.getLogger("tacoreservice.broker")

CONTROL_ENDPOINT = "inproc://tacore-broker-control"
BROKER_ID = "broker"
_JOB_METHODS = frozenset({"job.submit", "job.cancel", *JOB_READ_METHODS})
_BROKER_METHODS = frozenset({"health.check", *_JOB_METHODS})
# The broker answers these itself, so it checks their params with the same models as workers.
_JOB_SUBMIT = MethodSpec("job.submit", JobSubmitParams, lambda p, c: None, (), "")
_JOB_CANCEL = MethodSpec("job.cancel", JobRef, lambda p, c: None, (), "")
# A job whose worker dies is run once more, then failed with the reason (issue 3).
_JOB_MAX_ATTEMPTS = 2
# Errors that mean "the broker could not get this job run", as opposed to the job's own error.
_JOB_BROKER_ERRORS = frozenset({"WORKER_LOST", "DEADLINE_EXCEEDED"})
_DRAIN_BATCH = 256  # messages read per socket per loop turn: amortises poll() cost
# Plain ints: pyzmq's enum wrappers cost more than the socket calls on the hot path.
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def _same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # Params nest up to the parser's 1,024 levels, deeper than Python's comparison recursion
    # goes: such a pair counts as different rather than raising in the broker's loop.
    try:
        return a == b
    except RecursionError:
        return False


def _same_request(a: ClientRequest, b: ClientRequest) -> bool:
    return a.method == b.method and _same_params(a.params, b.params)


def _recv_with_user_id(sock: zmq.Socket) -> tuple[list[bytes], str | None]:
    """One message and the User-Id the ZAP handler gave its connection (the peer's CURVE
    public key): frames are read without copying so the property can be asked for."""
    parts = sock.recv_multipart(copy=False)
    user_id = parts[-1].get("User-Id")
    return [p.bytes for p in parts], user_id if isinstance(user_id, str) else None


class _Pending:
    """A request the broker has accepted and not yet answered."""

    __slots__ = (
        "key",
        "req",
        "envelopes",
        "raw",
        "received",
        "deadline",
        "attempts",
        "worker",
        "dispatched_at",
        "payload",
        "job_id",
    )

    def __init__(
        self,
        key: bytes,
        req: ClientRequest,
        envelope: list[bytes],
        raw: bytes,
        now: float,
        payload: bytes,
    ):
        self.key = key
        self.req = req
        self.payload = payload
        self.job_id: str | None = None
        self.envelopes = [envelope] if envelope else []
        self.raw = raw
        self.received = now
        self.deadline = now + req.timeout_ms / 1000.0 if req.timeout_ms else None
        self.attempts = 0
        self.worker: WorkerRecord | None = None
        self.dispatched_at = 0.0


class _ReplyCache:
    """Replies by request_id for ``ttl`` seconds, so late retries are answered, not re-run."""

    def __init__(self, ttl_s: float, max_entries: int):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes, str, dict[str, Any]]] = OrderedDict()

    def get(self, request_id: str, now: float) -> tuple[float, bytes, str, dict[str, Any]] | None:
        entry = self._entries.get(request_id)
        if entry is None:
            return None
        if entry[0] < now:
            del self._entries[request_id]
            return None
        return entry

    def put(
        self, request_id: str, body: bytes, method: str, params: dict[str, Any], now: float
    ) -> None:
        if self.ttl_s <= 0 or self.max_entries <= 0:
            return
        entries = self._entries
        entries[request_id] = (now + self.ttl_s, body, method, params)
        entries.move_to_end(request_id)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def purge(self, now: float) -> None:
        # Insertion order is expiry order (one TTL), so expired entries are at the front.
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first[0] >= now:
                break
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Broker:
    """Owns the frontend, backend and control sockets and runs the poll loop."""

    def __init__(self, settings: Settings, context: zmq.Context | None = None):
        check_broker_exposure(settings)
        self.settings = settings
        self.cfg = settings.broker
        self.ctx = context or zmq.Context.instance()
        self.pool = WorkerPool(self.cfg.heartbeat_expiry_s)
        self.queue: deque[_Pending] = deque()
        self.inflight: dict[str, _Pending] = {}  # client request_id -> pending (queued or running)
        self.dispatched: dict[bytes, _Pending] = {}  # dispatch key -> pending
        # Jobs wait here, apart from interactive requests: they run only when no interactive
        # request is waiting, on at most all-but-one of the workers, so a batch of long
        # analyses never starves quick calls. Their state lives in SQLite (JobStore).
        self.job_queue: deque[_Pending] = deque()
        self.jobs: JobStore | None = None
        self.reply_cache = _ReplyCache(self.cfg.reply_cache_ttl_s, self.cfg.reply_cache_max_entries)
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.process_sampler = ProcessSampler()
        self._started_text = utc_timestamp(self.started_at)
        self.hostname = socket.gethostname()
        self._key_seq = 0
        self._queued_deadlines = 0  # queued requests with a timeout_ms: sweep only when > 0
        self._stop = threading.Event()
        self._draining = False
        self._bound = False
        self.counters = RequestCounters()  # requests, kept so that they add up
        self.stats: dict[str, Any] = {
            "redispatched": 0,
            "workers_registered": 0,
            "workers_evicted": 0,
            "worker_restarts": 0,
            "replies_dropped": 0,
            "stale_replies": 0,
            "stalls": 0,
        }
        self.method_stats: dict[str, list[float]] = {}  # method -> [count, errors, total_ms]
        # Monitoring: sliding-window figures and Prometheus metrics, fed by _account; workers
        # that left stay listed for a while so an operator sees what died and when.
        self.window = RequestWindow(settings.api.window_s)
        self.metrics = BrokerMetrics()
        self.departed: deque[dict[str, Any]] = deque(maxlen=64)
        self._departed_cache = [0, 0]  # hits, misses reported by workers that are gone
        # Security: CURVE with ZAP (mode "curve"), per-client permissions and rate limits.
        self.security = settings.security
        self._curve = self.security.mode == "curve"
        self.refusals = RefusalLog()
        self.rings: dict[str, KeyRing] = make_rings(self.security) if self._curve else {}
        self.authenticator: CurveAuthenticator | None = None
        self.guard = RequestGuard(self.security, self.rings.get(CLIENTS_DOMAIN), self.refusals)
        self._handshake_monitors: dict[zmq.Socket, str] = {}
        secrets = secret_values(settings)
        self.request_log: RequestLogWriter | None = None
        if settings.request_log.enabled:
            self.request_log = RequestLogWriter(
                settings.database.path,
                settings.request_log,
                redact_fields=settings.security.redact_fields,
                mask_values=secrets,
            )
        # A job keeps its params as sent (a resumed job needs them); what job.status and
        # job.list show of them is redacted like the request log.
        self._job_redactor = BodyRedactor(settings.security.redact_fields, secrets)

    # ------------------------------------------------------------------ sockets

    def bind(self) -> None:
        cfg = self.cfg
        self.frontend = self.ctx.socket(zmq.ROUTER)
        self.backend = self.ctx.socket(zmq.ROUTER)
        self.control = self.ctx.socket(zmq.PAIR)
        self.monitor = self.ctx.socket(zmq.ROUTER)
        for sock in (self.frontend, self.backend):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.SNDHWM, cfg.hwm)
            sock.setsockopt(zmq.RCVHWM, cfg.hwm)
        # The app-level limit (max_message_bytes) answers PAYLOAD_TOO_LARGE; the socket-level
        # limit, well above it, only stops a peer from making the broker buffer gigabytes
        # (libzmq drops that peer's connection).
        # A worker that comes back with the id of one whose connection is still half-open
        # (its host died behind a cut link) takes the identity over instead of being ignored.
        self.backend.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.frontend.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_bytes * 4)
        self.backend.setsockopt(zmq.MAXMSGSIZE, max(cfg.max_message_bytes * 16, 64 * 1024 * 1024))
        self.control.setsockopt(zmq.LINGER, 0)
        self.monitor.setsockopt(zmq.LINGER, 0)
        if self._curve:
            # The ZAP handler must be listening before the first peer can handshake.
            self.authenticator = CurveAuthenticator(self.ctx, self.rings, self.refusals)
            self.authenticator.start()
            secret = self.security.server_secret_key_path
            apply_server_curve(self.frontend, secret, CLIENTS_DOMAIN)
            apply_server_curve(self.backend, secret, WORKERS_DOMAIN)
            for sock, name in ((self.frontend, "frontend"), (self.backend, "backend")):
                self._handshake_monitors[sock.get_monitor_socket(HANDSHAKE_EVENTS)] = name
        self.frontend.bind(cfg.frontend_endpoint)
        self.backend.bind(cfg.backend_endpoint)
        self.control.bind(CONTROL_ENDPOINT)
        self.monitor.bind(MONITOR_ENDPOINT)
        self._bound = True
        log.info(
            "broker listening: frontend %s, backend %s (security: %s)",
            cfg.frontend_endpoint,
            cfg.backend_endpoint,
            self.security.mode,
        )

    def close(self) -> None:
        for monitor_socket in self._handshake_monitors:
            monitor_socket.close(linger=0)
        for sock in (self.frontend, self.backend, self.control, self.monitor):
            sock.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
        if self.jobs is not None:
            self.jobs.close()
        if self.request_log is not None:
            self.request_log.close()

    # ------------------------------------------------------------------ public control

    def request_stop(self) -> None:
        """Stop accepting work, answer what was accepted, then leave ``run`` (thread-safe)."""
        self._stop.set()

    def run(self) -> None:
        if not self._bound:
            self.bind()
        if self.request_log is not None:
            self.request_log.start()
        # Opened on the thread that runs the loop: sqlite3 connections stay on one thread.
        self.jobs = JobStore(self.settings.database.path)
        self._recover_jobs()
        poller = zmq.Poller()
        poller.register(self.backend, zmq.POLLIN)
        poller.register(self.frontend, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        for monitor_socket in self._handshake_monitors:
            poller.register(monitor_socket, zmq.POLLIN)
        interval = self.cfg.heartbeat_interval_ms / 1000.0
        next_heartbeat = time.monotonic() + interval
        next_key_reload = time.monotonic() + self.security.reload_interval_s
        drain_until = 0.0
        turn_ended = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if self._stop.is_set() and not self._draining:
                    self._draining = True
                    drain_until = now + self.cfg.drain_timeout_s
                    log.info(
                        "draining: %d queued, %d running", len(self.queue), len(self.dispatched)
                    )
                if self._draining and (
                    (not self.queue and not any(p.job_id is None for p in self.dispatched.values()))
                    or now >= drain_until
                ):
                    break
                timeout = max(0.0, min(next_heartbeat - now, 0.25))
                if self._queued_deadlines:
                    timeout = min(timeout, 0.02)
                events = dict(poller.poll(int(timeout * 1000.0)))
                if self.backend in events:
                    self._drain_backend()
                if self.frontend in events:
                    self._drain_frontend()
                if self.control in events:
                    self._handle_control()
                if self.monitor in events:
                    self._handle_monitor()
                if self._handshake_monitors and len(events) > 0:
                    self._handle_handshake_events(events)
                now = time.monotonic()
                # Measured from the end of the last turn, so a pause anywhere in the loop counts.
                stalled = now - turn_ended - timeout
                turn_ended = now
                if stalled > interval:
                    # This process did not run (descheduled, swapped out, a long pause): the
                    # heartbeats sent meanwhile are still on their way in, so the gap must not
                    # count against the workers.
                    self.pool.postpone_expiry(stalled)
                    self.stats["stalls"] += 1
                    log.warning(
                        "the broker did not run for %.2f s; worker expiry postponed", stalled
                    )
                if now >= next_heartbeat:
                    self._heartbeat(now)
                    next_heartbeat = now + interval
                if self._curve and now >= next_key_reload:
                    self._reload_keys()
                    next_key_reload = now + self.security.reload_interval_s
                if self._queued_deadlines:
                    self._expire_deadlines(now)
        finally:
            self._abandon_remaining()
            self._disconnect_workers()
            self.close()
            log.info("broker stopped")

    # ------------------------------------------------------------------ frontend

    def _drain(
        self, sock: zmq.Socket, on_message: Callable[[list[bytes], str | None], None], what: str
    ) -> bool:
        """Hand up to a batch of waiting messages to ``on_message``, with their User-Id;
        True when nothing more was waiting."""
        curve = self._curve
        for _ in range(_DRAIN_BATCH):
            # Checking EVENTS is cheaper than letting a NOBLOCK recv raise zmq.Again.
            if not int(sock.getsockopt(_EVENTS)) & _POLLIN:
                return True
            try:
                if curve:
                    on_message(*_recv_with_user_id(sock))
                else:
                    on_message(sock.recv_multipart(), None)
            except Exception:  # noqa: BLE001 - a bug on one message must not stop the broker
                log.exception("a %s message could not be handled; the broker goes on", what)
        return False

    def _drain_frontend(self) -> None:
        self._drain(self.frontend, self._on_client_message, "client")

    def _on_client_message(self, frames: list[bytes], user_id: str | None = None) -> None:
        # REQ and DEALER clients send [identity, "", body]; a DEALER that skips the
        # delimiter sends [identity, body]. The reply mirrors the envelope it came with.
        try:
            split = frames.index(b"", 1) + 1
        except ValueError:
            split = 1
        envelope = frames[:split]
        content = frames[split:]
        now = time.monotonic()
        self.counters.arrived()
        if len(content) != 1:
            self._reject(
                envelope,
                RequestRejected(
                    ErrorCode.INVALID_REQUEST,
                    f"expected exactly one frame holding a JSON object, got {len(content)} frames",
                ),
                b"".join(content)[:1024],
                now,
            )
            return
        body = content[0]
        if len(body) > self.cfg.max_message_bytes:
            self._reject(
                envelope,
                RequestRejected(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"request is {len(body)} bytes; the limit is {self.cfg.max_message_bytes} "
                    "(broker.max_message_bytes / TACORE_MAX_MESSAGE_BYTES)",
                ),
                body[:1024],
                now,
            )
            return
        try:
            req = parse_request(body)
        except RequestRejected as exc:
            self._reject(envelope, exc, body, now)
            return

        if self._draining:
            self._refuse(
                envelope,
                req,
                body,
                now,
                ErrorCode.SHUTTING_DOWN,
                "the broker is shutting down; retry on another broker or in a moment",
            )
            return

        if self.guard.active:
            refusal = self.guard.admit(req, user_id, envelope[0], now)
            if refusal is not None:
                self._refuse(envelope, req, body, now, *refusal)
                return

        if req.method == "health.check":
            self._answer_locally(envelope, req, body, now)
            return

        if req.client_request_id:
            pending = self.inflight.get(req.request_id)
            if pending is not None:
                if not _same_request(pending.req, req):
                    self._reject_reused_id(envelope, req, body, now)
                    return
                pending.envelopes.append(envelope)
                self.counters.retries_joined += 1
                self.metrics.retry(req.method)
                return
            cached = self.reply_cache.get(req.request_id, now)
            if cached is not None:
                _, reply, method, params = cached
                if method != req.method or not _same_params(params, req.params):
                    self._reject_reused_id(envelope, req, body, now)
                    return
                self.counters.retries_from_cache += 1
                self.metrics.retry(req.method)
                self._send_client(envelope, reply)
                return

        if req.method in _JOB_METHODS or req.params.get("async") is True:
            self._job_request(envelope, req, body, now)
            return

        known = self.pool.known_methods()
        if known and req.method not in known:
            available = ", ".join(sorted(known | _BROKER_METHODS))
            hint = did_you_mean(req.method, known | _BROKER_METHODS)
            self._refuse(
                envelope,
                req,
                body,
                now,
                ErrorCode.METHOD_NOT_FOUND,
                f"unknown method {req.method!r}{hint}; available: {available}",
            )
            return

        if len(self.queue) >= self.cfg.max_queue_size:
            self._refuse(
                envelope,
                req,
                body,
                now,
                ErrorCode.OVERLOADED,
                f"{len(self.queue)} requests are already waiting (max_queue_size "
                f"{self.cfg.max_queue_size}); back off and retry",
            )
            return

        pending = self._new_pending(req, envelope, body, now)
        if pending is None:
            self._refuse(
                envelope,
                req,
                body,
                now,
                ErrorCode.INVALID_REQUEST,
                "params are nested too deeply (more than 255 levels)",
            )
            return
        if req.client_request_id:
            self.inflight[req.request_id] = pending
        self._enqueue(pending)
        self._dispatch()

    def _new_pending(
        self,
        req: ClientRequest,
        envelope: list[bytes] | None,
        body: bytes,
        now: float,
        job_id: str | None = None,
    ) -> _Pending | None:
        """The pending request with its worker payload; None when params cannot be encoded."""
        try:
            payload = orjson.dumps(
                {
                    "request_id": req.request_id,
                    "method": req.method,
                    "params": req.params,
                    "dialect": req.dialect,
                    "compat": self.cfg.compat,
                    # Wall clock: the worker may be another process or host.
                    "deadline": time.time() + req.timeout_ms / 1000.0 if req.timeout_ms else None,
                    "job_id": job_id,
                }
            )
        except TypeError:  # orjson.JSONEncodeError: nesting beyond its 255-level limit
            return None
        self._key_seq += 1
        pending = _Pending(
            self._key_seq.to_bytes(8, "big"), req, envelope or [], body, now, payload
        )
        pending.job_id = job_id
        return pending

    # ------------------------------------------------------------------ jobs

    def _job_request(
        self, envelope: list[bytes], req: ClientRequest, body: bytes, now: float
    ) -> None:
        assert self.jobs is not None
        started = time.perf_counter()
        try:
            if req.method == "job.cancel":
                data = self._cancel_job(req.params)
            elif req.method in JOB_READ_METHODS:
                data = read_job(self.jobs, req.method, req.params)
                for job in data.get("jobs") or [data]:
                    if job.get("params") and self._job_redactor:
                        job["params"] = self._job_redactor.parsed(job["params"])
            else:
                data = self._submit_job(req, body, now)
        except Exception as exc:  # noqa: BLE001 - nothing a request sends may stop the broker
            if not isinstance(exc, ServiceError):
                log.exception("%s failed in the broker", req.method)
                exc = ServiceError(
                    ErrorCode.INTERNAL,
                    f"{req.method} failed in the broker with {type(exc).__name__}; "
                    "the broker logged the details",
                )
            reply = build_error_reply(exc, req.request_id, req.dialect, self.cfg.compat, BROKER_ID)
            self._answer_from_broker(
                envelope, req.request_id, req.method, req.client, body, reply, 0.0, exc.code.value
            )
            return
        elapsed = (time.perf_counter() - started) * 1000.0
        reply = build_reply(
            req.request_id, req.dialect, self.cfg.compat, data, None, elapsed, BROKER_ID
        )
        if req.client_request_id and req.method not in JOB_READ_METHODS:
            # A retried submit gets the same job, not a second one.
            self.reply_cache.put(req.request_id, reply, req.method, req.params, now)
        self._answer_from_broker(
            envelope, req.request_id, req.method, req.client, body, reply, elapsed
        )
        self._dispatch()

    def _submit_job(self, req: ClientRequest, body: bytes, now: float) -> dict[str, Any]:
        assert self.jobs is not None
        if req.method == "job.submit":
            if not isinstance(req.params.get("method"), str):
                raise ServiceError(
                    ErrorCode.INVALID_PARAMS,
                    'job.submit needs params.method (and params.params), e.g. {"method": '
                    '"analyze.stock", "params": {"symbol": "AAPL"}}',
                )
            submitted = validate_params(_JOB_SUBMIT, req.params)
            assert isinstance(submitted, JobSubmitParams)
            method, params = submitted.method, submitted.params
        else:
            method = req.method
            params = {k: v for k, v in req.params.items() if k != "async"}
        known = self.pool.known_methods()
        if (
            method.startswith("job.")
            or method in _BROKER_METHODS
            or (known and method not in known)
        ):
            available = ", ".join(sorted(known)) or "(no worker registered yet)"
            raise ServiceError(
                ErrorCode.METHOD_NOT_FOUND,
                f"{method!r} cannot run as a job{did_you_mean(method, known)}; "
                f"methods that can: {available}",
            )
        job_req = ClientRequest("", method, params, STANDARD, None, False, req.client)
        job_id = self.jobs.create(method, params, req.request_id)
        job_req.request_id = job_id
        pending = self._new_pending(job_req, None, body, now, job_id)
        if pending is None:
            self.jobs.fail(
                job_id, {"code": "INVALID_REQUEST", "message": "params nested too deeply"}
            )
            raise ServiceError(ErrorCode.INVALID_REQUEST, "params are nested too deeply")
        self.job_queue.append(pending)
        return {
            "job_id": job_id,
            "state": "queued",
            "method": method,
            "queue_position": len(self.job_queue),
        }

    def _cancel_job(self, params: dict[str, Any]) -> dict[str, Any]:
        assert self.jobs is not None
        ref = validate_params(_JOB_CANCEL, params)
        assert isinstance(ref, JobRef)
        job_id = ref.job_id
        job = self.jobs.request_cancel(job_id)
        if job is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"no job {job_id!r}")
        # Still waiting here: drop it now. Running: its worker sees the flag between steps.
        self.job_queue = deque(p for p in self.job_queue if p.job_id != job_id)
        return {k: job[k] for k in ("job_id", "state", "cancel_requested", "stage", "percent")}

    def _recover_jobs(self) -> None:
        """At start: jobs left queued or running by a previous broker are scheduled again."""
        assert self.jobs is not None
        now = time.monotonic()
        for job in self.jobs.unfinished():
            if job["state"] == "running" and job["attempts"] >= _JOB_MAX_ATTEMPTS:
                self.jobs.fail(
                    job["job_id"],
                    {
                        "code": "WORKER_LOST",
                        "message": f"the job's worker was lost {job['attempts']} times; not run again",
                    },
                )
                continue
            self.jobs.requeue(job["job_id"])
            req = ClientRequest(
                job["job_id"], job["method"], job["params"] or {}, STANDARD, None, False
            )
            pending = self._new_pending(req, None, b"", now, job["job_id"])
            if pending is not None:
                self.job_queue.append(pending)
        if self.job_queue:
            log.info("recovered %d unfinished jobs", len(self.job_queue))

    def _dispatch_jobs(self) -> None:
        pool = self.pool
        if not self.job_queue or self.queue or not pool.idle:
            return
        running = sum(1 for p in self.dispatched.values() if p.job_id)
        while self.job_queue and pool.idle and running < max(1, len(pool) - 1):
            worker = pool.take_idle()
            if worker is None:  # pragma: no cover - guarded by the loop condition
                return
            self._send_to_worker(worker, self.job_queue.popleft())
            running += 1

    def _reject_reused_id(
        self, envelope: list[bytes], req: ClientRequest, body: bytes, now: float
    ) -> None:
        self._refuse(
            envelope,
            req,
            body,
            now,
            ErrorCode.INVALID_REQUEST,
            f"request_id {req.request_id!r} is already used by a different request; "
            "use a fresh request_id per request (retries reuse it with the same content)",
        )

    def _refuse(
        self,
        envelope: list[bytes],
        req: ClientRequest,
        body: bytes,
        now: float,
        code: ErrorCode,
        message: str,
    ) -> None:
        """Answer a parsed request with an error in its dialect, without running it."""
        rejection = RequestRejected(code, message, req.request_id, req.dialect)
        self._reject(envelope, rejection, body, now, req.method, req.client)

    def _reject(
        self,
        envelope: list[bytes],
        exc: RequestRejected,
        raw: bytes,
        now: float,
        method: str | None = None,
        client: str | None = None,
    ) -> None:
        reply = build_error_reply(exc, exc.request_id, exc.dialect, self.cfg.compat, BROKER_ID)
        self._answer_from_broker(
            envelope,
            exc.request_id,
            method,
            client,
            raw,
            reply,
            0.0,
            exc.code.value,
            latency_ms=(time.monotonic() - now) * 1000.0,
        )

    def _answer_from_broker(
        self,
        envelope: list[bytes],
        request_id: str | None,
        method: str | None,
        client: str | None,
        raw: bytes,
        reply: bytes,
        elapsed_ms: float,
        error_code: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        """Send a reply the broker made itself; count and log it as a worker's reply is."""
        self._send_client(envelope, reply)
        ok = error_code is None
        self._account(method or "", ok, error_code, elapsed_ms, latency_ms)
        status = "success" if ok else "error"
        self._log(
            request_id, method, BROKER_ID, raw, reply, elapsed_ms, status, error_code, 0.0, client
        )

    def _send_client(self, envelope: list[bytes], reply: bytes) -> None:
        try:
            self.frontend.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            # EHOSTUNREACH: the client went away; EAGAIN: it stopped reading (HWM).
            # Either way its reply has nowhere to go; the broker must not block for it.
            self.stats["replies_dropped"] += 1
            log.debug("reply dropped: %s", exc)

    # ------------------------------------------------------------------ dispatch

    def _enqueue(self, pending: _Pending, front: bool = False) -> None:
        if front:
            self.queue.appendleft(pending)
        else:
            self.queue.append(pending)
        if pending.deadline is not None:
            self._queued_deadlines += 1

    def _dispatch(self) -> None:
        queue = self.queue
        pool = self.pool
        while queue and pool.idle:
            pending = queue.popleft()
            if pending.deadline is not None:
                self._queued_deadlines -= 1
                if pending.deadline <= time.monotonic():
                    self._deadline_exceeded(pending)
                    continue
            worker = pool.take_idle()
            if worker is None:  # pragma: no cover - guarded by the loop condition
                self._enqueue(pending, front=True)
                return
            self._send_to_worker(worker, pending)
        self._dispatch_jobs()

    def _send_to_worker(self, worker: WorkerRecord, pending: _Pending) -> None:
        req = pending.req
        try:
            self.backend.send_multipart(
                [worker.identity, b"", wp.PROTOCOL, wp.REQUEST, pending.key, pending.payload],
                zmq.NOBLOCK,
            )
        except zmq.ZMQError as exc:
            # The worker's connection is gone; evict it and try the request elsewhere.
            log.warning("worker %s unreachable (%s); evicting", worker.worker_id, exc)
            self.pool.remove(worker.identity)
            self.stats["workers_evicted"] += 1
            self._remember_departed(worker, f"unreachable ({exc})")
            self._enqueue(pending, front=True)
            return
        now = time.monotonic()
        pending.attempts += 1
        pending.worker = worker
        pending.dispatched_at = now
        worker.state = "busy"
        worker.current_key = pending.key
        worker.current_method = req.method
        worker.current_since = now
        self.dispatched[pending.key] = pending

    def _deadline_exceeded(self, pending: _Pending) -> None:
        waited = (time.monotonic() - pending.received) * 1000.0
        exc = ServiceError(
            ErrorCode.DEADLINE_EXCEEDED,
            f"request waited {waited:.0f} ms in the queue, past its timeout_ms "
            f"{pending.req.timeout_ms}; it was not started",
        )
        reply = build_error_reply(
            exc, pending.req.request_id, pending.req.dialect, self.cfg.compat, BROKER_ID
        )
        self._finish(pending, reply, False, exc.code.value, BROKER_ID, 0.0)

    def _expire_deadlines(self, now: float) -> None:
        if not any(p.deadline is not None and p.deadline <= now for p in self.queue):
            return
        keep: deque[_Pending] = deque()
        expired = []
        for pending in self.queue:
            if pending.deadline is not None and pending.deadline <= now:
                expired.append(pending)
            else:
                keep.append(pending)
        self.queue = keep
        self._queued_deadlines = sum(1 for p in keep if p.deadline is not None)
        for pending in expired:
            self._deadline_exceeded(pending)

    def _finish(
        self,
        pending: _Pending,
        reply: bytes,
        ok: bool,
        error_code: str | None,
        worker_id: str,
        processing_ms: float,
    ) -> None:
        req = pending.req
        for envelope in pending.envelopes:
            self._send_client(envelope, reply)
        if req.client_request_id:
            self.inflight.pop(req.request_id, None)
            self.reply_cache.put(req.request_id, reply, req.method, req.params, time.monotonic())
        wait_ms = (
            (pending.dispatched_at - pending.received) * 1000.0 if pending.dispatched_at else 0.0
        )
        if pending.job_id is not None and not ok and error_code in _JOB_BROKER_ERRORS:
            assert self.jobs is not None
            try:
                error = orjson.loads(reply).get("error")
            except orjson.JSONDecodeError:
                error = None
            self.jobs.fail(pending.job_id, error or {"code": error_code, "message": error_code})
        self._account(
            req.method,
            ok,
            error_code,
            processing_ms,
            (time.monotonic() - pending.received) * 1000.0,
            job=pending.job_id is not None,
        )
        self._log(
            req.request_id,
            req.method,
            worker_id,
            pending.raw,
            reply,
            processing_ms,
            "success" if ok else "error",
            error_code,
            wait_ms,
            req.client,
        )

    # ------------------------------------------------------------------ backend

    def _drain_backend(self) -> bool:
        emptied = self._drain(self.backend, self._on_worker_message, "worker")
        if self.queue or self.job_queue:
            self._dispatch()
        return emptied

    def _on_worker_message(self, frames: list[bytes], user_id: str | None = None) -> None:
        if len(frames) < 4 or frames[1] != b"" or frames[2] != wp.PROTOCOL:
            log.warning("malformed backend message (%d frames) ignored", len(frames))
            return
        identity, command = frames[0], frames[3]
        now = time.monotonic()
        if command != wp.REPLY and wp.is_handed_over(identity):
            # A message still queued on a connection that a reconnect with the same identity
            # took over (ROUTER_HANDOVER renames the old pipe). The live connection speaks
            # for the worker; a READY from the old one would register a ghost that never
            # heartbeats and is later listed dead beside its live self. A REPLY is still
            # taken: the answer it carries is real.
            log.debug("%s from a replaced connection ignored", wp.COMMAND_NAMES.get(command))
            return
        if command == wp.REPLY:
            self._on_reply(identity, frames, now)
        elif command == wp.HEARTBEAT:
            self._on_heartbeat(identity, frames, now)
        elif command == wp.READY:
            self._on_ready(identity, frames, now, user_id)
        elif command == wp.DISCONNECT:
            record = self.pool.workers.get(identity)
            if record is not None:
                log.info("worker %s disconnected", record.worker_id)
                self._evict(record, "disconnected")
        else:
            log.warning("unknown worker command %r ignored", command)

    def _on_ready(
        self, identity: bytes, frames: list[bytes], now: float, user_id: str | None = None
    ) -> None:
        if self._curve and self._worker_key_name(user_id) is None:
            # Its key was let in at the handshake but has been removed since.
            self.refusals.refused(
                "backend", "revoked_key", "READY from a worker whose key is no longer allowed"
            )
            self._send_worker_command(identity, wp.DISCONNECT)
            return
        try:
            info = orjson.loads(frames[4]) if len(frames) > 4 else {}
            if not isinstance(info, dict):
                raise ValueError("info is not an object")
        except (orjson.JSONDecodeError, ValueError):
            log.warning("READY with unreadable info ignored")
            return
        previous = self.pool.workers.get(identity)
        if previous is not None:
            # Same identity registering again: it lost us and reconnected. Anything it was
            # running is gone with its old session.
            self._evict(previous, "re-registered", departed=False)
        record = WorkerRecord(
            identity=identity,
            worker_id=str(info.get("worker_id") or identity.decode(errors="replace")),
            pid=info.get("pid"),
            host=str(info.get("host") or ""),
            methods=frozenset(m for m in info.get("methods", []) if isinstance(m, str)),
            version=str(info.get("version") or ""),
            started_at=str(info.get("started_at") or ""),
            key=user_id,
        )
        if previous is not None and (previous.worker_id, previous.pid) == (
            record.worker_id,
            record.pid,
        ):
            record.served, record.failed = previous.served, previous.failed
        self.pool.add(record, now)
        self._forget_departed(record)
        self.stats["workers_registered"] += 1
        log.info("worker %s ready (pid %s, host %s)", record.worker_id, record.pid, record.host)
        self._dispatch()

    def _on_reply(self, identity: bytes, frames: list[bytes], now: float) -> None:
        if len(frames) < 7:
            log.warning("malformed REPLY ignored")
            return
        key, meta_raw, reply = frames[4], frames[5], frames[6]
        worker = self.pool.workers.get(identity)
        pending = self.dispatched.pop(key, None)
        if worker is not None:
            self.pool.touch(worker, now)
            if worker.current_key == key:
                if worker.state == "busy":
                    self.pool.mark_idle(worker)
                else:
                    worker.current_key = None
                    worker.current_method = None
                    worker.current_since = None
        else:
            # A reply from a worker we had given up on: use the answer if it is still wanted,
            # and tell the worker to register again.
            self._send_worker_command(identity, wp.DISCONNECT)
        if pending is None:
            self.stats["stale_replies"] += 1
            return
        try:
            meta = orjson.loads(meta_raw)
        except orjson.JSONDecodeError:
            meta = {}
        ok = meta.get("status") == "success"
        if worker is not None:
            worker.served += 1
            if not ok:
                # A client's own mistake (INVALID_PARAMS, ...) is not the worker failing.
                if is_client_error(meta.get("error_code")):
                    worker.client_errors += 1
                else:
                    worker.failed += 1
        worker_id = worker.worker_id if worker is not None else identity.decode(errors="replace")
        self._finish(
            pending,
            reply,
            ok,
            meta.get("error_code"),
            worker_id,
            float(meta.get("processing_time_ms") or 0.0),
        )

    def _on_heartbeat(self, identity: bytes, frames: list[bytes], now: float) -> None:
        if not identity.startswith(wp.HEARTBEAT_IDENTITY_PREFIX):
            return  # heartbeats travel on the dedicated socket only
        work_identity = identity[len(wp.HEARTBEAT_IDENTITY_PREFIX) :]
        record = self.pool.workers.get(work_identity)
        if record is None:
            # Unknown worker (we restarted, or evicted it): ask it to register again.
            self._send_worker_command(work_identity, wp.DISCONNECT)
            return
        self.pool.touch(record, now)
        if len(frames) > 4 and frames[4]:
            try:
                stats = orjson.loads(frames[4])
                if isinstance(stats, dict):
                    record.stats = stats
            except orjson.JSONDecodeError:
                pass

    def _worker_key_name(self, user_id: str | None) -> str | None:
        ring = self.rings.get(WORKERS_DOMAIN)
        if ring is None or not user_id:
            return None
        return ring.name_for(user_id.encode())

    def _reload_keys(self) -> None:
        """Pick up added or removed public keys; workers whose key went are let go."""
        for ring in self.rings.values():
            ring.reload_if_changed()
        for record in list(self.pool.workers.values()):
            if record.key is not None and self._worker_key_name(record.key) is None:
                log.warning("worker %s: its key was removed; disconnecting it", record.worker_id)
                self._send_worker_command(record.identity, wp.DISCONNECT)
                self._evict(record, "key revoked")

    def _handle_handshake_events(self, events: dict[Any, int]) -> None:
        for monitor_socket, name in self._handshake_monitors.items():
            if monitor_socket in events:
                for _ in range(_DRAIN_BATCH):
                    try:
                        failure = handshake_failure(monitor_socket)
                    except zmq.Again:
                        break
                    if failure is not None:
                        self.refusals.refused(name, failure[0], failure[1])

    def _send_worker_command(self, identity: bytes, command: bytes) -> None:
        try:
            self.backend.send_multipart([identity, b"", wp.PROTOCOL, command], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _heartbeat(self, now: float) -> None:
        # Read the heartbeats that have already arrived before judging anyone late.
        for _ in range(8):
            if self._drain_backend():
                break
        for record in self.pool.expired(now):
            log.warning(
                "worker %s missed %d heartbeats; evicting",
                record.worker_id,
                self.cfg.heartbeat_liveness,
            )
            self._evict(record, "heartbeat expired")
        for identity in list(self.pool.workers):
            self._send_worker_command(wp.heartbeat_identity(identity), wp.HEARTBEAT)
        self.reply_cache.purge(now)

    def _evict(self, record: WorkerRecord, reason: str, departed: bool = True) -> None:
        self.pool.remove(record.identity)
        self.stats["workers_evicted"] += 1
        if departed:
            self._remember_departed(record, reason)
        key = record.current_key
        if key is None:
            return
        pending = self.dispatched.pop(key, None)
        if pending is None:
            return
        if pending.job_id is not None:
            self._job_worker_lost(pending, reason)
            return
        if pending.attempts > self.cfg.max_redispatch:
            exc = ServiceError(
                ErrorCode.WORKER_LOST,
                f"the worker running this request was lost ({reason}) {pending.attempts} times; "
                "the request was not retried again",
            )
            reply = build_error_reply(
                exc, pending.req.request_id, pending.req.dialect, self.cfg.compat, BROKER_ID
            )
            self._finish(pending, reply, False, exc.code.value, record.worker_id, 0.0)
            return
        log.warning(
            "re-dispatching %s (%s) after losing worker %s (%s)",
            pending.req.request_id,
            pending.req.method,
            record.worker_id,
            reason,
        )
        self.stats["redispatched"] += 1
        pending.worker = None
        pending.dispatched_at = 0.0
        self._enqueue(pending, front=True)  # it has waited longest; it goes first
        self._dispatch()

    def _job_worker_lost(self, pending: _Pending, reason: str) -> None:
        assert self.jobs is not None and pending.job_id is not None
        job = self.jobs.get(pending.job_id, with_result=False)
        attempts = job["attempts"] if job else pending.attempts
        if job is None or job["state"] in TERMINAL_STATES:
            return
        if attempts >= _JOB_MAX_ATTEMPTS:
            self.jobs.fail(
                pending.job_id,
                {
                    "code": "WORKER_LOST",
                    "message": f"the job's worker was lost ({reason}) on each of {attempts} "
                    "attempts; not run again",
                },
            )
            return
        log.warning("job %s lost its worker (%s); running it once more", pending.job_id, reason)
        self.stats["redispatched"] += 1
        self.jobs.requeue(pending.job_id)
        pending.worker = None
        pending.dispatched_at = 0.0
        self.job_queue.appendleft(pending)
        self._dispatch()

    # ------------------------------------------------------------------ control

    def _handle_control(self) -> None:
        while True:
            try:
                msg = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            command = msg[0]
            if command == b"lost" and len(msg) > 1:
                # The supervisor reaped a local worker process: no need to wait for heartbeats.
                worker_id = msg[1].decode()
                record = self.pool.find(worker_id)
                if record is not None:
                    self._evict(record, "process exited")
            elif command == b"restarted":
                self.stats["worker_restarts"] += 1
            elif command == b"stop":
                self._stop.set()

    # ------------------------------------------------------------------ local methods

    def _answer_locally(
        self, envelope: list[bytes], req: ClientRequest, raw: bytes, now: float
    ) -> None:
        started = time.perf_counter()
        detailed = bool(req.params.get("detailed")) if isinstance(req.params, dict) else False
        data = self.health(detailed, answering=True)
        if self.cfg.compat:
            data = health_fields(data)
        elapsed = (time.perf_counter() - started) * 1000.0
        reply = build_reply(
            req.request_id, req.dialect, self.cfg.compat, data, None, elapsed, BROKER_ID
        )
        self._answer_from_broker(
            envelope, req.request_id, req.method, req.client, raw, reply, elapsed
        )

    def health(self, detailed: bool = False, answering: bool = False) -> dict[str, Any]:
        """The health.check answer; ``answering``: for a health.check request, which is itself
        in progress while it is answered."""
        now = time.monotonic()
        alive = len(self.pool)
        busy = self.pool.busy_count
        stats = self.stats
        cache_hits, cache_misses = self._departed_cache
        for record in self.pool.workers.values():
            cache = record.stats.get("cache") or {}
            cache_hits += int(cache.get("hits") or 0)
            cache_misses += int(cache.get("misses") or 0)
        data: dict[str, Any] = {
            "status": "healthy" if alive else "degraded",
            "service": "tacoreservice",
            "version": __version__,
            "host": self.hostname,
            "uptime_s": round(now - self.started_mono, 3),
            "started_at": self._started_text,
            "draining": self._draining,
            "workers": {"alive": alive, "busy": busy, "idle": len(self.pool.idle)},
            "queue_depth": len(self.queue),
            "in_flight": len(self.dispatched),
            "max_queue_size": self.cfg.max_queue_size,
            # total = success + error + retries + in_progress (broker/counters.py)
            "requests": self.counters.snapshot(self._requests_in_progress() + int(answering))
            | {"redispatched": stats["redispatched"]},
            "cache": {
                "hits": cache_hits,
                "misses": cache_misses,
                "hit_rate": round(cache_hits / (cache_hits + cache_misses), 4)
                if cache_hits + cache_misses
                else None,
            },
            "worker_events": {
                "registered": stats["workers_registered"],
                "evicted": stats["workers_evicted"],
                "restarts": stats["worker_restarts"],
                "broker_stalls": stats["stalls"],
            },
            # The broker process's own CPU and memory; each worker's are in worker_list.
            "process": self.process_sampler.sample(),
        }
        if detailed:
            data["worker_list"] = [w.describe(now) for w in self.pool.workers.values()]
            data["methods"] = {
                name: {
                    "count": int(v[0]),
                    "errors": int(v[1]),
                    "avg_ms": round(v[2] / v[0], 3) if v[0] else None,
                }
                for name, v in sorted(self.method_stats.items())
            }
            data["request_log"] = self.request_log.stats() if self.request_log else None
            data["security"] = self.guard.stats()
            data["reply_cache_entries"] = len(self.reply_cache)
        return data

    def _requests_in_progress(self) -> int:
        """Client requests queued or running (a job's run is not one)."""
        running = sum(1 for p in self.dispatched.values() if p.job_id is None)
        return len(self.queue) + running

    # ------------------------------------------------------------------ monitoring

    def _remember_departed(self, record: WorkerRecord, reason: str) -> None:
        cache = record.stats.get("cache") or {}
        # Its cache counters leave with it; keep them so the totals never go backwards.
        self._departed_cache[0] += int(cache.get("hits") or 0)
        self._departed_cache[1] += int(cache.get("misses") or 0)
        row = self._describe_worker(record, time.monotonic())
        row.update(
            state="dead",
            current_request_id=None,
            current_method=None,
            current_age_s=None,
            ended_at=utc_timestamp(),
            end_reason=reason,
            _ended=time.time(),
        )
        self.departed.append(row)

    def _forget_departed(self, record: WorkerRecord) -> None:
        """A worker given up for dead (missed heartbeats) came back: it is not dead, its
        cache counters, still counting in the same process, must not be counted twice, and
        its served and failed counts carry on from where they were."""
        back = [
            row
            for row in self.departed
            if row["worker_id"] == record.worker_id and row["pid"] == record.pid
        ]
        for row in back:
            self.departed.remove(row)
            # The same process: what it served before the gap still counts.
            record.served += int(row.get("served") or 0)
            record.failed += int(row.get("failed") or 0)
            record.client_errors += int(row.get("client_errors") or 0)
            cache = row.get("cache") or {}
            self._departed_cache[0] -= int(cache.get("hits") or 0)
            self._departed_cache[1] -= int(cache.get("misses") or 0)

    def _describe_worker(self, record: WorkerRecord, now: float) -> dict[str, Any]:
        row = record.describe(now)
        pending = self.dispatched.get(record.current_key) if record.current_key else None
        row["current_request_id"] = pending.req.request_id if pending is not None else None
        row["job_id"] = pending.job_id if pending is not None else None
        row["registered_at"] = utc_timestamp(record.registered_at)
        row["last_heartbeat_unix"] = round(time.time() - (now - record.last_heartbeat), 3)
        return row

    def _handle_monitor(self) -> None:
        for _ in range(64):
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # [identity, "", seq, kind] from a DEALER (see monitoring/bridge.py)
            if len(frames) != 4 or frames[3] not in QUERIES:
                continue
            try:
                if frames[3] == b"timeseries":
                    data: dict[str, Any] = self.monitor_timeseries()
                else:
                    data = self.monitor_snapshot()
                body = orjson.dumps(data)
            except Exception:  # a bug here must not take the broker down
                log.exception("monitor query %r failed", frames[3])
                body = orjson.dumps({"error": "snapshot failed; see the broker log"})
            try:
                self.monitor.send_multipart([frames[0], b"", frames[2], body], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    def monitor_snapshot(self) -> dict[str, Any]:
        """Everything the monitoring API shows, as of now (runs on the broker thread)."""
        now = time.monotonic()
        wall = time.time()
        status = self.health(False)
        horizon = wall - 600.0  # departed workers stay listed for 10 minutes
        dead = [
            {k: v for k, v in row.items() if k != "_ended"}
            for row in self.departed
            if row["_ended"] >= horizon
        ]
        live = [self._describe_worker(w, now) for w in self.pool.workers.values()]
        states = Counter(w["state"] for w in live)
        status["workers"] = {
            "alive": len(live),
            "busy": states.get("busy", 0),
            "idle": states.get("idle", 0),
            "draining": states.get("draining", 0),
            "dead": len(dead),
        }
        jobs_running = sum(1 for p in self.dispatched.values() if p.job_id)
        status["jobs"] = {"queued": len(self.job_queue), "running": jobs_running}
        status["rates"] = self.window.rates(wall, 60.0, now - self.started_mono)
        in_progress = Counter(p.req.method for p in self.dispatched.values())
        return {
            "status": status,
            "workers": {"alive": len(live), "workers": live + dead},
            "methods": {
                "window_s": self.window.window_s,
                "methods": self.window.method_table(wall),
            },
            "point": self.window.latest_point(wall),
            "in_progress": dict(in_progress),
            "worker_restarts": self.stats["worker_restarts"],
            "security_refusals": self.refusals.totals(),
        }

    def monitor_timeseries(self) -> dict[str, Any]:
        return {
            "interval_s": 1,
            "window_s": self.window.window_s,
            "points": self.window.timeseries(time.time()),
        }

    # ------------------------------------------------------------------ bookkeeping

    def _account(
        self,
        method: str,
        ok: bool,
        error_code: str | None,
        processing_ms: float,
        latency_ms: float | None = None,
        job: bool = False,
    ) -> None:
        latency = processing_ms if latency_ms is None else latency_ms
        # Bounded labels: a name nobody serves, or no name at all, is not a new series.
        if error_code == "METHOD_NOT_FOUND":
            method = "<unknown>"
        elif not method:
            method = "<invalid>"
        self.metrics.observe(method, ok, latency / 1000.0, error_code, job)
        if not job:
            # A job's minutes are its own figures (tacore_job_duration_seconds, /api/jobs),
            # not the interactive latency an operator watches.
            self.window.record(time.time(), method, latency, ok)
        self.counters.answered(ok, error_code, job)
        if method:
            entry = self.method_stats.get(method)
            if entry is None:
                if len(self.method_stats) >= 512:  # unknown names must not grow this forever
                    method = "<other>"
                    entry = self.method_stats.setdefault(method, [0, 0, 0.0])
                else:
                    entry = self.method_stats[method] = [0, 0, 0.0]
            entry[0] += 1
            if not ok:
                entry[1] += 1
            entry[2] += processing_ms

    def _log(
        self,
        request_id: str | None,
        method: str | None,
        worker_id: str,
        raw: bytes,
        reply: bytes,
        processing_ms: float,
        status: str,
        error_code: str | None,
        wait_ms: float,
        client: str | None = None,
    ) -> None:
        if self.request_log is None:
            return
        self.request_log.record(
            RequestLogEntry(
                request_id=request_id or "",
                method=method or "",
                worker_id=worker_id,
                request_data=raw,  # decoded and truncated on the writer thread
                response_data=reply,
                processing_time_ms=processing_ms,
                status=status,
                created_at=utc_timestamp(),
                error_code=error_code,
                client_id=client,
                queue_wait_ms=wait_ms,
            )
        )

    def _abandon_remaining(self) -> None:
        """At exit, answer whatever is still waiting so no accepted request goes silent."""
        # Jobs are not answered here: they stay queued/running in SQLite and the next broker
        # picks them up (see _recover_jobs).
        leftovers = list(self.queue) + [p for p in self.dispatched.values() if p.job_id is None]
        self.queue.clear()
        self._queued_deadlines = 0
        self.dispatched.clear()
        for pending in leftovers:
            exc = ServiceError(
                ErrorCode.SHUTTING_DOWN,
                "the broker stopped before this request finished; retry",
            )
            reply = build_error_reply(
                exc, pending.req.request_id, pending.req.dialect, self.cfg.compat, BROKER_ID
            )
            self._finish(pending, reply, False, exc.code.value, BROKER_ID, 0.0)

    def _disconnect_workers(self) -> None:
        for identity in list(self.pool.workers):
            self._send_worker_command(identity, wp.DISCONNECT)

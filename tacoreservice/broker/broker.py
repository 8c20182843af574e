"""The routing core: ROUTER frontend for clients, ROUTER backend for workers, one poll loop.

This is the only code that touches the broker's two sockets. One thread, no locks. What it
promises (DESIGN.md, "Reliability"):

- admission: a request is parsed, checked (security guard, known method, bounded queue:
  past ``max_queue_size`` waiting requests OVERLOADED at once) and queued, or refused at once;
- dispatch: idle workers first, least recently used first; when none is idle, a worker holding
  fewer than ``broker.credit`` requests that usually take under ``prefetch_below_ms`` in all
  may take one more, so it starts that one without waiting a broker round trip and reads
  several in one wake-up (see worker_pool.py);
- a worker that dies or is evicted (supervisor notice, DISCONNECT, missed heartbeats) has
  every request it held re-dispatched, running or waiting alike, up to ``max_redispatch``
  times, then the client gets WORKER_LOST (a request that kills every worker it touches must
  not loop forever);
- a retry (same ``request_id``) joins the request in flight or is answered from the reply
  cache (pending.py), so a client retry never runs a request twice;
- a request whose ``timeout_ms`` passes while queued gets DEADLINE_EXCEEDED and never starts.

What is not routing lives beside it, each part with its own contract: the pending-request
table and reply cache (pending.py), the job lane (job_lane.py), telemetry and the request-log
hand-off (telemetry.py), and the health and monitoring views (status.py). Every reply the
broker sends goes through :meth:`Broker._finish` or :meth:`Broker._answer`, which call the
telemetry hook once, before the reply leaves; every failure of an accepted request goes
through :meth:`Broker._fail`.

``health.check`` is answered here, not by a worker: the broker is the one that knows the
pool, the queue and the counters, and health must answer even when no worker is alive.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from tacoreservice.broker import admission, status
from tacoreservice.broker.admission import BROKER_ID, BROKER_METHODS
from tacoreservice.broker.job_lane import JobLane
from tacoreservice.broker.pending import CONFLICT, JOINED, Pending, PendingTable, WaitQueue
from tacoreservice.broker.side_channels import CONTROL_ENDPOINT, SideChannels
from tacoreservice.broker.telemetry import Telemetry
from tacoreservice.broker.worker_pool import WorkerPool, WorkerRecord
from tacoreservice.config import Settings
from tacoreservice.monitoring.bridge import MONITOR_ENDPOINT
from tacoreservice.monitoring.process_stats import ProcessSampler
from tacoreservice.protocol import worker_protocol as wp
from tacoreservice.protocol.errors import (
    ErrorCode,
    ServiceError,
    is_client_error,
)
from tacoreservice.protocol.messages import (
    ClientRequest,
    RequestRejected,
    build_error_reply,
    build_reply,
    parse_request,
    utc_timestamp,
)
from tacoreservice.protocol.transport import EVENTS, NOBLOCK, POLLIN, recv_frames, send_frames
from tacoreservice.security.curve import (
    CLIENTS_DOMAIN,
    BrokerCurve,
    RefusalLog,
    recv_with_user_id,
)
from tacoreservice.security.exposure import check_broker_exposure
from tacoreservice.security.guard import RequestGuard
from tacoreservice.security.redaction import BodyRedactor
from tacoreservice.security.secrets import secret_values
from tacoreservice.service.compat import health_fields
from tacoreservice.service.time_limits import TimeLimits
from tacoreservice.storage.disk_reserve import DiskReserve
from tacoreservice.storage.file_watch import DatabaseWatch
from tacoreservice.storage.request_log_process import RequestLogProcess

__all__ = ["Broker", "CONTROL_ENDPOINT"]

log = logging.getLogger("tacoreservice.broker")

_DRAIN_BATCH = 256  # messages read per socket per loop turn: amortises poll() cost
# How fast a method's typical processing time follows new replies (exponential average).
_COST_WEIGHT = 0.2


class Broker:
    """Owns the frontend, backend, control and monitor sockets and runs the poll loop."""

    def __init__(self, settings: Settings, context: zmq.Context | None = None):
        check_broker_exposure(settings)
        self.settings = settings
        self.cfg = cfg = settings.broker
        self.ctx = context or zmq.Context.instance()
        self.pool = WorkerPool(cfg.heartbeat_expiry_s, cfg.credit)
        self.time_limits = TimeLimits.from_settings(settings.worker)
        self.storage: DatabaseWatch | None = None  # the database file as bound (health)
        self.reserve: DiskReserve | None = None  # room kept for orders on the ledger's disk
        # Where the monitoring API's queries come in (service_runner gives it a private IPC
        # path when the API runs in its own process).
        self.monitor_endpoint = MONITOR_ENDPOINT
        self.table = PendingTable(
            cfg.reply_cache_ttl_s, cfg.reply_cache_max_entries, cfg.reply_cache_max_bytes
        )
        self.queue = WaitQueue()
        redactor = BodyRedactor(settings.security.redact_fields, secret_values(settings))
        self.jobs = JobLane(settings.database.path, self._job_pending, redactor)
        request_log = RequestLogProcess(settings) if settings.request_log.enabled else None
        self.telemetry = Telemetry(settings.api.window_s, request_log)
        self.metrics = self.telemetry.metrics  # the monitoring API exports these
        self.started_mono = time.monotonic()
        self.started_text = utc_timestamp()
        self.process_sampler = ProcessSampler()
        self.hostname = socket.gethostname()
        self.draining = False
        self._stop = threading.Event()
        self._bound = False
        # Client replies of this loop turn: sent together by _deliver, after their records.
        self._outbox: list[list[bytes]] = []
        # True while the broker handles the message poll woke it for: its reply is sent as
        # soon as it is made, before the bookkeeping and before more messages are looked at.
        # Work before a send lengthens the round trip; work after it mostly overlaps the
        # next hop (BENCHMARKS.md, "Before the send or after it").
        self._reply_at_once = False
        # Typical processing time of each method (ms), from the workers' replies: a request
        # may wait in a worker behind another only when that one is known to be quick.
        self._cost: dict[str, float] = {}
        # Security: CURVE with ZAP (mode "curve"), per-client permissions and rate limits.
        self.security = settings.security
        self.refusals = RefusalLog()
        self.curve = (
            BrokerCurve(self.security, self.refusals) if self.security.mode == "curve" else None
        )
        client_ring = self.curve.rings[CLIENTS_DOMAIN] if self.curve is not None else None
        self.guard = RequestGuard(self.security, client_ring, self.refusals)

    @property
    def stats(self) -> dict[str, Any]:
        return self.telemetry.stats

    # ------------------------------------------------------------------ sockets

    def bind(self) -> None:
        cfg = self.cfg
        self.frontend = self.ctx.socket(zmq.ROUTER)
        self.backend = self.ctx.socket(zmq.ROUTER)
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
        if self.curve is not None:
            self.curve.secure(self.ctx, self.frontend, self.backend)
        self.frontend.bind(cfg.frontend_endpoint)
        self.backend.bind(cfg.backend_endpoint)
        self.side = SideChannels(self.ctx, self.monitor_endpoint)
        self._bound = True
        log.info(
            "broker listening: frontend %s, backend %s (security: %s)",
            cfg.frontend_endpoint,
            cfg.backend_endpoint,
            self.security.mode,
        )

    def close(self) -> None:
        for sock in (self.frontend, self.backend):
            sock.close(linger=0)
        self.side.close()
        if self.curve is not None:
            self.curve.close()
        self.jobs.close()
        if self.telemetry.request_log is not None:
            self.telemetry.request_log.close()

    # ------------------------------------------------------------------ public control

    def request_stop(self) -> None:
        """Stop accepting work, answer what was accepted, then leave ``run`` (thread-safe)."""
        self._stop.set()

    def run(self) -> None:
        if not self._bound:
            self.bind()
        if self.telemetry.request_log is not None:
            self.telemetry.request_log.start()
        self.jobs.open(time.monotonic())
        # The file just opened (created if new): the one the ledger and the jobs live in.
        self.storage = DatabaseWatch(self.settings.database.path)
        self.reserve = DiskReserve.from_settings(self.settings)
        self.reserve.before_write()  # made now when there is room, not at the first order
        # Prometheus state metrics come from a snapshot taken on the loop, at scrape time.
        self.telemetry.metrics.attach_snapshot(lambda: status.snapshot(self))
        poller = zmq.Poller()
        control, monitor = self.side.sockets
        for sock in (self.backend, self.frontend, control, monitor):
            poller.register(sock, zmq.POLLIN)
        curve = self.curve
        for monitor_socket in curve.monitors if curve is not None else ():
            poller.register(monitor_socket, zmq.POLLIN)
        interval = self.cfg.heartbeat_interval_ms / 1000.0
        next_heartbeat = time.monotonic() + interval
        next_key_reload = time.monotonic() + self.security.reload_interval_s
        drain_until = 0.0
        turn_ended = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if self._stop.is_set() and not self.draining:
                    self.draining = True
                    drain_until = now + self.cfg.drain_timeout_s
                    log.info(
                        "draining: %d queued, %d running",
                        len(self.queue),
                        len(self.table.dispatched),
                    )
                if self.draining and (not self._client_work_left() or now >= drain_until):
                    break
                timeout = max(0.0, min(next_heartbeat - now, 0.25))
                if self.queue.with_deadline:
                    timeout = min(timeout, 0.02)
                events = dict(poller.poll(int(timeout * 1000.0)))
                if self.backend in events:
                    self._drain_backend(ready=True)
                    self._deliver()
                if self.frontend in events:
                    self._drain(self.frontend, self._on_client_message, "client", ready=True)
                    self._deliver()
                if control in events:
                    self._handle_control()
                if monitor in events:
                    self.side.answer_monitor(self)
                if curve is not None and events:
                    curve.read_handshake_events(events)
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
                if curve is not None and now >= next_key_reload:
                    self._reload_keys()
                    next_key_reload = now + self.security.reload_interval_s
                if self.queue.with_deadline:
                    for pending in self.queue.expired(now):
                        self._deadline_exceeded(pending)
                self._deliver()
        finally:
            self._abandon_remaining()
            self._deliver()
            self._disconnect_workers()
            self.close()
            log.info("broker stopped")

    def _client_work_left(self) -> bool:
        # Jobs are not waited for: they stay queued/running in SQLite for the next broker.
        return bool(self.queue) or any(p.job_id is None for p in self.table.dispatched.values())

    def _drain(
        self,
        sock: zmq.Socket,
        on_message: Callable[[list[bytes], str | None], None],
        what: str,
        ready: bool = False,
    ) -> bool:
        """Hand up to a batch of waiting messages to ``on_message``, with their User-Id;
        True when nothing more was waiting.

        ``ready``: poll has just reported ``sock`` readable. The first message is then read
        without asking EVENTS, and its reply is sent as soon as it is made (see
        ``_reply_at_once``); the rest of the batch is sent together by the caller, with one
        ``write(2)`` of their log records.
        """
        curve = self.curve is not None
        self._reply_at_once = ready
        try:
            for _ in range(_DRAIN_BATCH):
                # Checking EVENTS is cheaper than letting a NOBLOCK recv raise zmq.Again.
                if not self._reply_at_once and not int(sock.getsockopt(EVENTS)) & POLLIN:
                    return True
                try:
                    frames, user_id = (
                        recv_with_user_id(sock, NOBLOCK)
                        if curve
                        else (recv_frames(sock, NOBLOCK), None)
                    )
                except zmq.Again:
                    return True
                except Exception:  # noqa: BLE001 - as below: the broker goes on
                    log.exception("a %s message could not be read; the broker goes on", what)
                    continue
                try:
                    on_message(frames, user_id)
                except Exception:  # noqa: BLE001 - a bug on one message must not stop the broker
                    log.exception("a %s message could not be handled; the broker goes on", what)
                if self._reply_at_once:
                    self._reply_at_once = False
                    self._deliver()
            return False
        finally:
            self._reply_at_once = False

    # ------------------------------------------------------------------ admission

    def _on_client_message(self, frames: list[bytes], user_id: str | None = None) -> None:
        envelope, content = admission.split_envelope(frames)
        now = time.monotonic()
        self.telemetry.arrived()
        rejected = admission.unframed(content, self.cfg.max_message_bytes)
        if rejected is not None:
            # Logged in part: its first KiB is enough to see what was sent.
            self._reject(envelope, rejected, now, b"".join(content)[:1024])
            return
        body = content[0]
        try:
            req = parse_request(body)
        except RequestRejected as exc:
            self._reject(envelope, exc, now, body)
            return
        refusal: admission.Refusal | None = None
        if self.draining:
            refusal = (ErrorCode.SHUTTING_DOWN, admission.SHUTTING_DOWN)
        elif self.guard.active:
            refusal = self.guard.admit(req, user_id, envelope[0], now)
        if refusal is not None:
            self._refuse(envelope, req, body, now, *refusal)
            return
        if req.method == "health.check":
            self._answer_health(envelope, req, body)
            return
        if req.client_request_id:
            seen = self.table.retry(req, envelope, now)
            if seen == JOINED:
                self.telemetry.retried(req.method, joined=True)
                return
            if seen == CONFLICT:
                self._refuse(envelope, req, body, now, *admission.reused(req))
                return
            if isinstance(seen, bytes):
                self.telemetry.retried(req.method, joined=False)
                self._send_client(envelope, seen)
                return
        if JobLane.handles(req):
            self._job_request(envelope, req, body, now)
            return
        refusal = admission.routing_refusal(
            req.method, self.pool.known_methods(), len(self.queue), self.cfg.max_queue_size
        )
        payload = (
            refusal if refusal is not None else admission.work_payload(req, self.cfg.compat, None)
        )
        if not isinstance(payload, bytes):
            self._refuse(envelope, req, body, now, *payload)
            return
        pending = self.table.new(req, envelope, body, now, payload, None)
        self.table.accept(pending)
        self.queue.push(pending)
        self._dispatch()

    def _job_pending(
        self, req: ClientRequest, body: bytes, now: float, job_id: str
    ) -> Pending | None:
        """A job's pending request (no client waits on it); None when params cannot be
        encoded."""
        payload = admission.work_payload(req, self.cfg.compat, job_id)
        return (
            self.table.new(req, None, body, now, payload, job_id)
            if isinstance(payload, bytes)
            else None
        )

    def _job_request(
        self, envelope: list[bytes], req: ClientRequest, body: bytes, now: float
    ) -> None:
        started = time.perf_counter()
        try:
            data = self.jobs.answer(req, body, now, self.pool.known_methods(), BROKER_METHODS)
        except ServiceError as exc:
            reply = self._error_reply(exc, req.request_id, req.dialect)
            self._answer(envelope, req, body, reply, 0.0, exc.code.value)
            return
        elapsed = (time.perf_counter() - started) * 1000.0
        reply = self._own_reply(req, data, elapsed)
        if JobLane.remembers(req):
            self.table.remember(req, reply, now)
        self._answer(envelope, req, body, reply, elapsed)
        self._dispatch()

    def _answer_health(self, envelope: list[bytes], req: ClientRequest, raw: bytes) -> None:
        started = time.perf_counter()
        detailed = bool(req.params.get("detailed")) if isinstance(req.params, dict) else False
        data = status.health(self, detailed, answering=True)
        if self.cfg.compat:
            data = health_fields(data)
        elapsed = (time.perf_counter() - started) * 1000.0
        self._answer(envelope, req, raw, self._own_reply(req, data, elapsed), elapsed)

    # ------------------------------------------------------------------ answers

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
        self._reject(
            envelope, RequestRejected(code, message, req.request_id, req.dialect), now, body, req
        )

    def _reject(
        self,
        envelope: list[bytes],
        exc: RequestRejected,
        now: float,
        raw: bytes,
        req: ClientRequest | None = None,
    ) -> None:
        reply = self._error_reply(exc, exc.request_id, exc.dialect)
        latency = (time.monotonic() - now) * 1000.0
        self._answer(envelope, req, raw, reply, 0.0, exc.code.value, latency, exc.request_id)

    def _answer(
        self,
        envelope: list[bytes],
        req: ClientRequest | None,
        raw: bytes,
        reply: bytes,
        elapsed_ms: float,
        error_code: str | None = None,
        latency_ms: float | None = None,
        request_id: str | None = None,
    ) -> None:
        """Send a reply the broker made itself; counted and logged as a worker's reply is."""
        self.telemetry.finished(
            req.request_id if req is not None else request_id,
            req.method if req is not None else None,
            BROKER_ID,
            raw,
            reply,
            error_code is None,
            error_code,
            elapsed_ms,
            elapsed_ms if latency_ms is None else latency_ms,
            client=req.client if req is not None else None,
        )
        self._send_client(envelope, reply)

    def _finish(
        self,
        pending: Pending,
        reply: bytes,
        ok: bool,
        error_code: str | None,
        worker_id: str,
        processing_ms: float,
    ) -> None:
        """Answer an accepted request: every copy of it (retries joined) gets ``reply``."""
        now = time.monotonic()
        if pending.job_id is not None:
            self.jobs.finished(pending, ok, error_code, reply)
        self.telemetry.finished_pending(pending, reply, ok, error_code, worker_id, processing_ms)
        self.table.settle(pending, reply, now)
        for envelope in pending.envelopes:
            self._send_client(envelope, reply)

    def _fail(self, pending: Pending, code: ErrorCode, message: str) -> None:
        """The one way an accepted request ends in an error the broker decided."""
        req = pending.req
        reply = self._error_reply(ServiceError(code, message), req.request_id, req.dialect)
        self._finish(pending, reply, False, code.value, BROKER_ID, 0.0)

    def _own_reply(self, req: ClientRequest, data: Any, elapsed_ms: float) -> bytes:
        return build_reply(
            req.request_id, req.dialect, self.cfg.compat, data, None, elapsed_ms, BROKER_ID
        )

    def _error_reply(self, exc: ServiceError, request_id: str | None, dialect: int) -> bytes:
        return build_error_reply(exc, request_id, dialect, self.cfg.compat, BROKER_ID)

    def _send_client(self, envelope: list[bytes], reply: bytes) -> None:
        """Queue a client reply; :meth:`_deliver` sends it at the end of this handling step."""
        self._outbox.append([*envelope, reply])

    def _deliver(self) -> None:
        """Send the queued client replies, after one write of their request-log records: no
        reply leaves before its record, and a burst of replies costs one ``write(2)``."""
        # Always: a job's record has no reply to go with it, and must not wait for one.
        self.telemetry.hand_off()
        if not self._outbox:
            return
        out, self._outbox = self._outbox, []
        frontend = self.frontend
        for frames in out:
            try:
                send_frames(frontend, frames, NOBLOCK)
            except zmq.ZMQError as exc:
                # EHOSTUNREACH: the client went away; EAGAIN: it stopped reading (HWM).
                # Either way its reply has nowhere to go; the broker must not block for it.
                self.stats["replies_dropped"] += 1
                log.debug("reply dropped: %s", exc)

    # ------------------------------------------------------------------ dispatch

    def _may_wait_behind(self, methods: list[str]) -> bool:
        """Whether a request may wait in a worker behind ``methods``: each has a known typical
        time, and together they usually take under ``prefetch_below_ms``, so the wait it adds
        is bounded whatever the credit."""
        total = 0.0
        for method in methods:
            cost = self._cost.get(method)
            if cost is None:
                return False
            total += cost
        return total < self.cfg.prefetch_below_ms

    def _dispatch(self) -> None:
        queue = self.queue
        pool = self.pool
        while queue and (pool.idle or pool.with_room):
            pending = queue.pop()
            if pending.deadline is not None and pending.deadline <= time.monotonic():
                self._deadline_exceeded(pending)
                continue
            worker = pool.take_idle() or pool.take_with_room(self._may_wait_behind)
            if worker is None:
                queue.push(pending, front=True)
                break
            self._send_to_worker(worker, pending)
        jobs = self.jobs
        for _ in range(jobs.startable(bool(queue), len(pool.idle), len(pool))):
            worker = pool.take_idle()
            if worker is None:  # pragma: no cover - guarded by startable
                break
            self._send_to_worker(worker, jobs.take())

    def _send_to_worker(self, worker: WorkerRecord, pending: Pending) -> None:
        try:
            send_frames(
                self.backend,
                (worker.identity, wp.request_head(pending.key), pending.payload),
                NOBLOCK,
            )
        except zmq.ZMQError as exc:
            # The worker's connection is gone: evict it and try the request elsewhere.
            log.warning("worker %s unreachable (%s); evicting", worker.worker_id, exc)
            self._requeue(pending)
            self._evict(worker, f"unreachable ({exc})")
            return
        now = time.monotonic()
        self.table.dispatch(pending, worker, now)
        self.pool.assign(worker, pending.key, pending.req.method, now)
        if pending.job_id is not None:
            self.jobs.started()

    def _requeue(self, pending: Pending) -> None:
        """Back to the front of its queue: it has waited longest."""
        if pending.job_id is not None:
            self.jobs.queue.appendleft(pending)
        else:
            self.queue.push(pending, front=True)

    def _deadline_exceeded(self, pending: Pending) -> None:
        waited = (time.monotonic() - pending.received) * 1000.0
        self._fail(
            pending,
            ErrorCode.DEADLINE_EXCEEDED,
            f"request waited {waited:.0f} ms in the queue, past its timeout_ms "
            f"{pending.req.timeout_ms}; it was not started",
        )

    # ------------------------------------------------------------------ backend

    def _drain_backend(self, ready: bool = False) -> bool:
        emptied = self._drain(self.backend, self._on_worker_message, "worker", ready)
        if self.queue or self.jobs.queue:
            self._dispatch()
        return emptied

    def _on_worker_message(self, frames: list[bytes], user_id: str | None = None) -> None:
        now = time.monotonic()
        if len(frames) == 3 and wp.is_reply(frames[1]):  # the hot path: [identity, head, body]
            self._on_reply(frames[0], frames[1], frames[2], now)
            return
        if len(frames) < 4 or frames[1] != b"" or frames[2] != wp.PROTOCOL:
            log.warning("malformed backend message (%d frames) ignored", len(frames))
            return
        identity, command = frames[0], frames[3]
        if wp.is_handed_over(identity):
            # A message still queued on a connection that a reconnect with the same identity
            # took over (ROUTER_HANDOVER renames the old pipe). The live connection speaks
            # for the worker; a READY from the old one would register a ghost that never
            # heartbeats and is later listed dead beside its live self. (A REPLY is still
            # taken: the answer it carries is real.)
            log.debug("%s from a replaced connection ignored", wp.COMMAND_NAMES.get(command))
            return
        if command == wp.HEARTBEAT:
            self._on_heartbeat(identity, frames, now)
        elif command == wp.READY:
            self._on_ready(identity, frames, now, user_id)
        elif command == wp.DECLINE and len(frames) > 4:
            self._on_decline(identity, frames[4], now)
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
        if self.curve is not None and self.curve.worker_name(user_id) is None:
            # Its key was let in at the handshake but has been removed since.
            self.refusals.refused(
                "backend", "revoked_key", "READY from a worker whose key is no longer allowed"
            )
            self._send_worker_command(identity, wp.DISCONNECT)
            return
        try:
            record = WorkerRecord.from_ready(identity, frames[4] if len(frames) > 4 else b"{}")
        except ValueError:
            log.warning("READY with unreadable info ignored")
            return
        record.key = user_id
        previous = self.pool.workers.get(identity)
        if previous is not None:
            # Same identity registering again: it lost us and reconnected. Anything it held
            # is gone with its old session.
            self._evict(previous, "re-registered", departed=False)
            record.carry_counters(previous)
        self.pool.add(record, now)
        self.telemetry.returned_worker(record)
        self.stats["workers_registered"] += 1
        log.info("worker %s ready (pid %s, host %s)", record.worker_id, record.pid, record.host)
        self._dispatch()

    def _on_reply(self, identity: bytes, head: bytes, body: bytes, now: float) -> None:
        key, ok, processing_ms, error_code = wp.decode_reply(head)
        worker = self.pool.workers.get(identity)
        pending = self.table.dispatched.pop(key, None)
        if pending is not None:
            worker_id = (
                worker.worker_id if worker is not None else identity.decode(errors="replace")
            )
            self._finish(pending, body, ok, error_code, worker_id, processing_ms)
            if self._reply_at_once:
                self._deliver()
        # The books are kept after the answer: nothing below changes what the client gets.
        if worker is not None:
            self.pool.touch(worker, now)
            self.pool.release(worker, key, now)
        else:
            # A reply from a worker we had given up on: its answer was used if still wanted;
            # tell the worker to register again.
            self._send_worker_command(identity, wp.DISCONNECT)
        if pending is None:
            self.stats["stale_replies"] += 1
            return
        method = pending.req.method
        if pending.job_id is None:
            cost = self._cost.get(method)
            self._cost[method] = (
                processing_ms if cost is None else cost + (processing_ms - cost) * _COST_WEIGHT
            )
        if worker is not None:
            worker.served += 1
            if not ok:
                # A client's own mistake (INVALID_PARAMS, ...) is not the worker failing.
                if is_client_error(error_code):
                    worker.client_errors += 1
                else:
                    worker.failed += 1

    def _on_decline(self, identity: bytes, key: bytes, now: float) -> None:
        """The worker gave a request back unstarted (its session was not fresh, or it is
        stopping): it waits first in line again, and the worker rests until it next
        heartbeats, so it is not handed the same request straight back."""
        worker = self.pool.workers.get(identity)
        pending = self.table.dispatched.get(key)
        if worker is None or pending is None or pending.worker is not worker:
            return  # already re-dispatched (the worker was evicted meanwhile)
        self.table.undispatch(pending)
        self.pool.release(worker, key, now)
        self.pool.rest(worker)
        pending.attempts -= 1  # it never started: not a try
        self.stats["declined"] += 1
        if pending.job_id is not None:
            self.jobs.requeue_declined(pending)
        else:
            self.queue.push(pending, front=True)
        log.info("worker %s declined %s", worker.worker_id, pending.req.request_id)
        self._dispatch()

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
        self.pool.wake(record)
        if len(frames) > 4 and frames[4]:
            record.take_stats(frames[4])

    def _reload_keys(self) -> None:
        """Pick up added or removed public keys; workers whose key went are let go."""
        assert self.curve is not None
        self.curve.reload()
        for record in list(self.pool.workers.values()):
            if record.key is not None and self.curve.worker_name(record.key) is None:
                log.warning("worker %s: its key was removed; disconnecting it", record.worker_id)
                self._send_worker_command(record.identity, wp.DISCONNECT)
                self._evict(record, "key revoked")

    def _send_worker_command(self, identity: bytes, command: bytes) -> None:
        try:
            send_frames(self.backend, [identity, *wp.command(command)], NOBLOCK)
        except zmq.ZMQError:
            pass

    def _heartbeat(self, now: float) -> None:
        # Read the heartbeats that have already arrived before judging anyone late.
        for _ in range(8):
            if self._drain_backend():
                break
        self._enforce_time_limits(now)
        for record in self.pool.expired(now):
            log.warning(
                "worker %s missed %d heartbeats; evicting",
                record.worker_id,
                self.cfg.heartbeat_liveness,
            )
            # If it is only frozen, it must not run what it holds when it thaws.
            self._send_worker_command(record.identity, wp.DISCONNECT)
            self._evict(record, "heartbeat expired")
        for identity in list(self.pool.workers):
            self._send_worker_command(wp.heartbeat_identity(identity), wp.HEARTBEAT)
        self.table.replies.purge(now)
        if self.telemetry.request_log is not None:
            self.telemetry.request_log.poll()

    def _enforce_time_limits(self, now: float) -> None:
        """Answer each request running past its hard time limit with TIME_LIMIT_EXCEEDED
        (never dispatched again), and have its worker killed and replaced: a handler that
        ignored its soft limit will not return (service/time_limits.py)."""
        for record, pending, ran, hard in self.table.past_hard_limit(self.time_limits.hard, now):
            method = pending.req.method
            log.error(
                "%s (%s) ran %.0f s on worker %s, past its hard limit of %.0f s; "
                "answering TIME_LIMIT_EXCEEDED and replacing the worker",
                pending.req.request_id or pending.job_id,
                method,
                ran,
                record.worker_id,
                hard,
            )
            self.telemetry.stats["time_limits_hit"] += 1
            message = self.time_limits.broker_message(method, ran, hard)
            self._fail(pending, ErrorCode.TIME_LIMIT_EXCEEDED, message)
            self.table.undispatch(pending)
            self.pool.release(record, pending.key, now)
            # The handler still runs: the worker must not take anything else, and the local
            # supervisor (if the worker is one of its own) kills and replaces it.
            self._send_worker_command(record.identity, wp.DISCONNECT)
            self.side.kill_worker(record.worker_id)
            self._evict(record, f"time limit: {method} ran past {hard:.0f} s")

    def _evict(self, record: WorkerRecord, reason: str, departed: bool = True) -> None:
        """Forget ``record``; every request it held goes back to the queue (or fails)."""
        self.pool.remove(record.identity)
        self.stats["workers_evicted"] += 1
        if departed:
            row = status.describe_worker(self, record, time.monotonic())
            self.telemetry.departed_worker(row, record, reason)
        held = [self.table.dispatched.pop(key, None) for key in record.assigned]
        record.assigned.clear()
        record.assigned_methods.clear()
        # Oldest last, so it ends up first in line.
        for pending in reversed(held):
            if pending is not None:
                self._lost(pending, record, reason)
        self._dispatch()

    def _lost(self, pending: Pending, record: WorkerRecord, reason: str) -> None:
        """``pending``'s worker is gone (running it, or holding it next)."""
        self.table.undispatch(pending)
        if pending.job_id is not None:
            if self.jobs.worker_lost(pending, reason):
                self.stats["redispatched"] += 1
            return
        if pending.attempts > self.cfg.max_redispatch:
            self._fail(
                pending,
                ErrorCode.WORKER_LOST,
                f"the worker running this request was lost ({reason}) {pending.attempts} "
                "times; the request was not retried again",
            )
            return
        log.warning(
            "re-dispatching %s (%s) after losing worker %s (%s)",
            pending.req.request_id,
            pending.req.method,
            record.worker_id,
            reason,
        )
        self.stats["redispatched"] += 1
        self.queue.push(pending, front=True)

    # ------------------------------------------------------------------ control and monitor

    def _handle_control(self) -> None:
        for msg in self.side.commands():
            command = msg[0]
            if command == b"lost" and len(msg) > 1:
                # The supervisor reaped a local worker process: no need to wait for heartbeats.
                record = self.pool.find(msg[1].decode())
                if record is not None:
                    self._evict(record, "process exited")
            elif command == b"restarted":
                self.stats["worker_restarts"] += 1
            elif command == b"stop":
                self._stop.set()

    def monitor_snapshot(self) -> dict[str, Any]:
        """Everything the monitoring API shows, as of now (runs on the broker thread)."""
        return status.snapshot(self)

    def health(self, detailed: bool = False, answering: bool = False) -> dict[str, Any]:
        return status.health(self, detailed, answering)

    # ------------------------------------------------------------------ shutdown

    def _abandon_remaining(self) -> None:
        """At exit, answer whatever is still waiting so no accepted request goes silent."""
        # Jobs are not answered here: they stay queued/running in SQLite and the next broker
        # picks them up (see JobLane.open).
        leftovers = self.queue.clear() + [
            p for p in self.table.dispatched.values() if p.job_id is None
        ]
        self.table.dispatched.clear()
        for pending in leftovers:
            self._fail(
                pending,
                ErrorCode.SHUTTING_DOWN,
                "the broker stopped before this request finished; retry",
            )

    def _disconnect_workers(self) -> None:
        for identity in list(self.pool.workers):
            self._send_worker_command(identity, wp.DISCONNECT)

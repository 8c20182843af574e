"""One worker process: registers with a broker, runs requests, heartbeats, reconnects.

See :mod:`tacoreservice.protocol.worker_protocol` for the frames. Handlers run inline on the
main thread; a background thread owns the heartbeat socket (why: see that module).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections import deque
from typing import Any

import zmq

from tacoreservice import __version__
from tacoreservice.config import Settings
from tacoreservice.monitoring.process_stats import ProcessSampler
from tacoreservice.protocol import worker_protocol as wp
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.protocol.messages import (
    build_error_reply,
    build_reply,
    utc_timestamp,
)
from tacoreservice.protocol.transport import EVENTS, NOBLOCK, POLLIN, recv_frames, send_frames
from tacoreservice.security.keys import CurveKeys, apply_curve, load_curve_keys
from tacoreservice.security.redaction import mask_values
from tacoreservice.security.secrets import secret_values
from tacoreservice.service.compat import add_compat_fields
from tacoreservice.service.registry import (
    Cancelled,
    MethodContext,
    _never_cancelled,
    _no_progress,
    call_method,
    load_plugins,
    registry,
)
from tacoreservice.service.time_limits import TimeLimits
from tacoreservice.storage.database import open_database
from tacoreservice.storage.job_store import JobStore

__all__ = ["Worker", "default_worker_id"]

log = logging.getLogger("tacoreservice.worker")

# The exit status of a worker that killed itself past a request's hard time limit, and of one
# that could not open the database.
EXIT_TIME_LIMIT = 75
EXIT_NO_DATABASE = 74


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


def _depth_exceeds(value: Any, limit: int) -> bool:
    # Iterative, so a hostile 100k-deep document cannot overflow the interpreter's stack.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


class _Heartbeater(threading.Thread):
    """Sends HEARTBEATs on its own socket and notices when the broker falls silent."""

    def __init__(self, worker: Worker):
        super().__init__(name="tacore-heartbeat", daemon=True)
        self.worker = worker
        self.broker_lost = threading.Event()
        self._generation = 0
        self._halt = threading.Event()  # not _stop: Thread uses that name
        self.last_seen = time.monotonic()
        # For fresh(): when this thread last sent a heartbeat and last heard the broker's,
        # as they happened (never shifted for stalls, unlike last_seen). A session starts
        # with READY, which starts the broker's clock for this worker as a heartbeat does.
        self.beat_at = self.heard_at = time.monotonic()
        cfg = worker.settings.broker
        interval = cfg.heartbeat_interval_ms / 1000.0
        # The broker evicts a worker silent for `expiry`; a request is started only well
        # within that, whatever the liveness (with a margin for the beats' own cadence).
        self.fresh_for = max(cfg.heartbeat_expiry_s - interval, 1.5 * interval)
        # Past a request's hard limit the broker answers it and a local supervisor kills this
        # process; a worker nobody kills (another host, no supervisor) ends itself this much
        # later, so it never holds on to a slot the broker has already given up.
        self.kill_grace = cfg.heartbeat_expiry_s + 2 * interval

    def reconnect(self) -> None:
        """Called by the main thread after it reconnected: start a fresh session."""
        self.last_seen = self.beat_at = self.heard_at = time.monotonic()
        self.broker_lost.clear()
        self._generation += 1

    def fresh(self) -> bool:
        """Whether the broker surely still counts this worker as its own: a heartbeat went out
        and one came in within ``fresh_for``. Past that the broker may have evicted it (it was
        frozen, or cut off) and handed what it holds to another worker; a request received
        before then must not be started (see worker_protocol.py, "Credit")."""
        now = time.monotonic()
        return (
            not self.broker_lost.is_set()
            and now - self.beat_at < self.fresh_for
            and now - self.heard_at < self.fresh_for
        )

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        w = self.worker
        interval = w.settings.broker.heartbeat_interval_ms / 1000.0
        expiry = w.settings.broker.heartbeat_expiry_s
        sock: zmq.Socket | None = None
        generation = -1
        next_beat = 0.0
        wait_s = min(interval, 0.1)
        turn_ended = time.monotonic()
        try:
            while not self._halt.is_set():
                if generation != self._generation:
                    if sock is not None:
                        sock.close(linger=0)
                    sock = w.ctx.socket(zmq.DEALER)
                    sock.setsockopt(zmq.LINGER, 0)
                    sock.setsockopt(zmq.IDENTITY, wp.heartbeat_identity(w.identity))
                    w.secure(sock)
                    sock.connect(w.endpoint)
                    generation = self._generation
                    next_beat = 0.0
                assert sock is not None
                now = time.monotonic()
                if now >= next_beat:
                    try:
                        sock.send_multipart(wp.heartbeat(w.heartbeat_stats()), zmq.NOBLOCK)
                        self.beat_at = now
                    except zmq.ZMQError:
                        pass
                    next_beat = now + interval
                ready = sock.poll(int(wait_s * 1000))
                # Measured from the end of the last turn, so a pause anywhere in the loop counts.
                stalled = time.monotonic() - turn_ended - wait_s
                turn_ended = time.monotonic()
                if stalled > interval:
                    # This process did not run (descheduled, swapped out): the broker's
                    # messages sent meanwhile are still on their way in, so the gap is not
                    # the broker's silence.
                    self.last_seen += stalled
                if ready:
                    while True:
                        try:
                            sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.last_seen = self.heard_at = time.monotonic()
                if time.monotonic() - self.last_seen > expiry and not self.broker_lost.is_set():
                    self.broker_lost.set()
                hard_at = w.hard_at
                if hard_at is not None and time.monotonic() > hard_at + self.kill_grace:
                    w.exit_past_hard_limit()
        finally:
            if sock is not None:
                sock.close(linger=0)


class Worker:
    def __init__(
        self,
        settings: Settings,
        worker_id: str | None = None,
        endpoint: str | None = None,
        context: zmq.Context | None = None,
    ):
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        if not self.worker_id.isprintable() or len(self.worker_id.encode()) > 200:
            # The id is the socket identity: printable, and so never one the broker takes
            # for an id libzmq made up (worker_protocol.is_handed_over).
            raise ValueError(f"worker id must be printable and at most 200 bytes: {worker_id!r}")
        self.identity = self.worker_id.encode()
        self.endpoint = (
            endpoint or settings.worker.broker_endpoint or settings.broker.backend_endpoint
        )
        self.ctx = context or zmq.Context()
        self.started_at = utc_timestamp()
        self.served = 0
        self.failed = 0
        self.process_sampler = ProcessSampler()
        self.current_method: str | None = None
        self.time_limits = TimeLimits.from_settings(settings.worker)
        # The running request's soft and hard limits (time.monotonic()); None when idle.
        self.soft_at: float | None = None
        self.hard_at: float | None = None
        self._stopping = False
        self._sock: zmq.Socket | None = None
        self.method_ctx: MethodContext | None = None
        self._jobs: JobStore | None = None
        # CURVE keys are read once, at start: a missing or unreadable key file is a
        # ConfigError now, not a worker that silently never registers.
        self._secrets = secret_values(settings)
        sec = settings.security
        self._curve: CurveKeys | None = (
            load_curve_keys(sec.server_public_key_path, sec.worker_secret_key_path, "the worker")
            if sec.mode == "curve"
            else None
        )

    def past_soft_limit(self) -> bool:
        """Whether the running request is past its soft time limit: a handler checking
        :meth:`MethodContext.check_cancelled` stops there."""
        soft_at = self.soft_at
        return soft_at is not None and time.monotonic() >= soft_at

    def _time_limit_error(self, method: str, job: bool) -> ServiceError:
        soft = self.time_limits.soft(method, job)
        hard = self.time_limits.hard(method, job)
        return ServiceError(
            ErrorCode.TIME_LIMIT_EXCEEDED,
            f"{method} ran past its time limit ({soft:.0f} s; killed at {hard:.0f} s) and was "
            f"stopped; if it needs longer, raise worker.time_limits for it "
            f"(TACORE_TIME_LIMITS={method}=SECONDS)",
        )

    def exit_past_hard_limit(self) -> None:
        """Called by the heartbeat thread: the handler ignored its soft limit and outlived the
        hard one by the grace; nothing but ending the process frees it."""
        log.error(
            "worker %s: %s outlived its hard time limit; exiting so it can be replaced",
            self.worker_id,
            self.current_method,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_TIME_LIMIT)

    def secure(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client of the broker when security is on (before connect)."""
        apply_curve(sock, self._curve)

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self, *_: Any) -> None:
        """SIGTERM: finish the current request, say DISCONNECT, exit."""
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def heartbeat_stats(self) -> dict[str, Any]:
        cache = self.method_ctx.cache.stats() if self.method_ctx is not None else None
        return {
            "served": self.served,
            "failed": self.failed,
            "busy": self.current_method is not None,
            "current_method": self.current_method,
            "cache": cache,
            "process": self.process_sampler.sample(),
        }

    def _connect(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.setsockopt(zmq.SNDHWM, self.settings.broker.hwm)
        sock.setsockopt(zmq.RCVHWM, self.settings.broker.hwm)
        self.secure(sock)
        sock.connect(self.endpoint)
        info = {
            "worker_id": self.worker_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "methods": registry.names(),
            "version": __version__,
            "started_at": self.started_at,
        }
        sock.send_multipart(wp.ready(info))
        return sock

    def run(self) -> int:
        from tacoreservice.analysis.forecast import set_calibration_dir
        from tacoreservice.cache import make_cache

        load_plugins(self.settings.worker.plugins)
        if not self._database_opens():
            return EXIT_NO_DATABASE
        set_calibration_dir(self.settings.analysis.calibration_dir)
        self.method_ctx = MethodContext(
            settings=self.settings,
            cache=make_cache(self.settings.cache),
            worker_id=self.worker_id,
            encoded_results=True,  # results go into replies (and job rows) through orjson
        )
        heart = _Heartbeater(self)
        initial_backoff = self.settings.worker.reconnect_initial_ms / 1000.0
        backoff = initial_backoff
        max_backoff = self.settings.worker.reconnect_max_ms / 1000.0
        log.info("worker %s connecting to %s", self.worker_id, self.endpoint)
        sock = self._connect()
        heart.start()
        try:
            while not self._stopping:
                session_started = time.monotonic()
                outcome = self._serve(sock, heart)
                sock.close(linger=0)
                if outcome == "stop":
                    break
                if outcome == "lost":
                    if heart.last_seen > session_started:
                        # This session reached the broker: a new outage starts the back-off
                        # afresh instead of where the last one left it.
                        backoff = initial_backoff
                    log.warning(
                        "broker silent for %.1f s; reconnecting in %.2f s",
                        self.settings.broker.heartbeat_expiry_s,
                        backoff,
                    )
                    self._sleep(backoff)
                    backoff = min(backoff * 2, max_backoff)
                else:  # told to re-register: the broker is there, no need to back off
                    backoff = initial_backoff
                if self._stopping:
                    break
                sock = self._connect()
                heart.reconnect()
        finally:
            heart.stop()
            heart.join(timeout=2)
        log.info("worker %s stopped (served %d)", self.worker_id, self.served)
        return 0

    def _database_opens(self) -> bool:
        """A worker that cannot open the database would fail every order and job it took:
        it does not register at all, and says why."""
        path = self.settings.database.path
        try:
            open_database(path).close()
        except Exception as exc:
            log.error(
                "worker %s cannot open the database %s (%s: %s); not registering",
                self.worker_id,
                path,
                type(exc).__name__,
                exc,
            )
            return False
        return True

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(0.05, left))

    def _serve(self, sock: zmq.Socket, heart: _Heartbeater) -> str:
        """Serve one broker session; returns 'stop', 'lost' or 'reregister'.

        Messages are read into ``inbox`` as they arrive. Before a request is started, every
        message that arrived meanwhile is read too, so a DISCONNECT queued behind requests
        this worker holds (the broker gave them to others) is seen before any of them runs.
        """
        poller = zmq.Poller()  # Socket.poll would build a new Poller on every call
        poller.register(sock, zmq.POLLIN)
        inbox: deque[list[bytes]] = deque()
        while True:
            if self._stopping:
                self._decline_all(sock, inbox)
                try:
                    sock.send_multipart(wp.command(wp.DISCONNECT), zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
                # Give the DISCONNECT a moment to leave before the socket closes (linger 0).
                time.sleep(0.05)
                return "stop"
            if heart.broker_lost.is_set():
                return "lost"
            woken = not inbox
            if woken and not poller.poll(100):
                continue
            if self._read_waiting(sock, inbox, heart, woken):
                # The broker gave up this session; what this worker held went to others.
                log.info("broker asked %s to register again", self.worker_id)
                self._decline_all(sock, inbox)
                return "reregister"
            frames = inbox.popleft()
            if wp.is_request(frames):
                self._run_request(sock, frames, heart)
            elif not _is_control(frames):
                log.warning("malformed message from broker ignored")

    def _read_waiting(
        self,
        sock: zmq.Socket,
        inbox: deque[list[bytes]],
        heart: _Heartbeater,
        woken: bool = False,
    ) -> bool:
        """Read every message waiting into ``inbox``; True when a DISCONNECT is among those
        not yet handled. ``woken``: poll has just reported a message, so the first is read
        without asking EVENTS (one call less before the request starts)."""
        if woken:
            try:
                inbox.append(recv_frames(sock, NOBLOCK))
                heart.last_seen = time.monotonic()
            except zmq.Again:
                pass
        while int(sock.getsockopt(EVENTS)) & POLLIN:
            inbox.append(recv_frames(sock))
            heart.last_seen = time.monotonic()
        return any(map(_is_disconnect, inbox))

    def _run_request(self, sock: zmq.Socket, frames: list[bytes], heart: _Heartbeater) -> None:
        try:
            key, req = wp.decode_request(frames[0], frames[1])
        except ValueError as exc:
            log.warning("unreadable REQUEST ignored: %s", exc)
            return
        if not heart.fresh():
            # The broker may have given this worker up and the request to another.
            log.warning("declining %s: no heartbeat exchange lately", req.request_id)
            self._send(sock, wp.command(wp.DECLINE, key))
            return
        ok, code, elapsed, body = self.handle(req)
        self._send(sock, wp.encode_reply(key, ok, elapsed, code, body))

    def _decline_all(self, sock: zmq.Socket, inbox: deque[list[bytes]]) -> None:
        """Give back every request read but not started (stopping, or told to re-register)."""
        for frames in inbox:
            if wp.is_request(frames):
                self._send(sock, wp.command(wp.DECLINE, wp.key_of(frames[0])))
        inbox.clear()

    @staticmethod
    def _send(sock: zmq.Socket, frames: list[bytes]) -> None:
        try:
            send_frames(sock, frames)
        except zmq.ZMQError as exc:
            log.error("could not send to the broker: %s", exc)

    # ------------------------------------------------------------------ jobs

    def _job_store(self) -> JobStore:
        if self._jobs is None:
            self._jobs = JobStore(self.settings.database.path)
        return self._jobs

    def _run_job(self, job_id: str, method: str, params: dict[str, Any], ctx: MethodContext) -> Any:
        """Run a job: progress and outcome go to SQLite, where job.status reads them."""
        store = self._job_store()
        if not store.start(job_id, self.worker_id):
            raise Cancelled("the job was cancelled before it started")
        written_at, written_stage, written_running = 0.0, "", ()
        checked_at, cancel_seen = 0.0, False

        def progress(stage: str, percent: float, detail: dict[str, Any] | None = None) -> None:
            # Throttled: a role finishing every few ms must not turn into a write storm. A role
            # that starts running is always written, though: it may then run for minutes (an
            # LLM call), and job.status must not show it pending all that time.
            nonlocal written_at, written_stage, written_running
            now = time.monotonic()
            states = (detail or {}).get("roles") or {}
            running = tuple(sorted(r for r, s in states.items() if s == "running"))
            if (
                stage != written_stage
                or (running != written_running and running)
                or now - written_at >= 0.2
                or percent >= 100
            ):
                store.progress(job_id, stage, percent, detail)
                written_at, written_stage, written_running = now, stage, running

        def cancelled() -> bool:
            nonlocal checked_at, cancel_seen
            if self.past_soft_limit():
                return True
            now = time.monotonic()
            if not cancel_seen and now - checked_at >= 0.2:
                checked_at, cancel_seen = now, store.cancel_requested(job_id)
            return cancel_seen

        ctx.progress, ctx.cancelled = progress, cancelled
        try:
            data = call_method(method, params, ctx)
        except ServiceError as exc:
            if exc.code == ErrorCode.CANCELLED and not cancel_seen and self.past_soft_limit():
                limit_error = self._time_limit_error(method, job=True)
                store.fail(job_id, limit_error.to_dict())
                raise limit_error from None
            state = "cancelled" if exc.code == ErrorCode.CANCELLED else "failed"
            store.fail(job_id, exc.to_dict(), state=state)
            raise
        except Exception as exc:
            store.fail(
                job_id,
                {
                    "code": "INTERNAL",
                    "message": f"{type(exc).__name__}: "
                    f"{mask_values(str(exc), self._secrets)[:300]}",
                },
            )
            raise
        finally:
            ctx.progress, ctx.cancelled = _no_progress, _never_cancelled
        store.succeed(job_id, data)
        return {"job_id": job_id, "state": "succeeded"}

    # ------------------------------------------------------------------ one request

    def handle(self, req: wp.WorkRequest) -> tuple[bool, str | None, float, bytes]:
        """Run one request; returns (ok, error code, processing ms, client reply). Never
        raises."""
        started = time.perf_counter()
        request_id = req.request_id
        dialect, compat, method = req.dialect, req.compat, req.method
        try:
            deadline = req.deadline
            if deadline is not None and time.time() > deadline:
                raise ServiceError(
                    ErrorCode.DEADLINE_EXCEEDED,
                    "the request's timeout_ms passed before a worker could start it",
                )
            limit = self.settings.worker.max_params_depth
            # Each level of nesting opens a bracket: a payload with no more brackets than the
            # limit cannot go deeper (counting bytes is far cheaper than walking the params).
            bound = req.nesting_bound
            if (bound is None or bound > limit) and _depth_exceeds(req.params, limit):
                raise ServiceError(
                    ErrorCode.INVALID_REQUEST,
                    f"params are nested deeper than {limit} levels",
                )
            ctx = self.method_ctx
            assert ctx is not None
            ctx.request_id = request_id or ""
            ctx.deadline = deadline
            self.current_method = method
            job_id = req.job_id
            begun = time.monotonic()
            self.soft_at = begun + self.time_limits.soft(method, bool(job_id))
            self.hard_at = begun + self.time_limits.hard(method, bool(job_id))
            if not job_id:
                ctx.cancelled = self.past_soft_limit
            data = (
                self._run_job(job_id, method, req.params, ctx)
                if job_id
                else call_method(method, req.params, ctx)
            )
            if compat and not job_id:
                data = add_compat_fields(method, data)
            elapsed = (time.perf_counter() - started) * 1000.0
            body = build_reply(request_id, dialect, compat, data, None, elapsed, self.worker_id)
            self.served += 1
            return True, None, elapsed, body
        except Exception as exc:
            if isinstance(exc, Cancelled) and not req.job_id and self.past_soft_limit():
                err = self._time_limit_error(method, job=False)
            elif isinstance(exc, ServiceError):
                err = exc
            else:  # a bug in a handler must not take the worker down
                log.error("method %s failed:\n%s", method, traceback.format_exc())
                # An exception's text can carry a credential (a URL with a key, a header).
                detail = mask_values(str(exc), self._secrets)[:300]
                err = ServiceError(
                    ErrorCode.INTERNAL, f"{method} failed with {type(exc).__name__}: {detail}"
                )
            body = build_error_reply(err, request_id, dialect, compat, self.worker_id, started)
            self.served += 1
            self.failed += 1
            return False, err.code.value, (time.perf_counter() - started) * 1000.0, body
        finally:
            self.current_method = None
            self.soft_at = self.hard_at = None
            if self.method_ctx is not None and not req.job_id:
                self.method_ctx.cancelled = _never_cancelled


def _is_control(frames: list[bytes]) -> bool:
    return len(frames) >= 3 and frames[0] == b"" and frames[1] == wp.PROTOCOL


def _is_disconnect(frames: list[bytes]) -> bool:
    return _is_control(frames) and frames[2] == wp.DISCONNECT

"""Send fuzz cases to a running service and check every reply against the documented protocol.

The oracle (:func:`expected_for`) is the README's protocol written out as a model: where the
documented rules fix the answer (too large, not JSON, not an object, a field of the wrong type,
an unknown method, test.echo with a fresh request_id) it says exactly which code or payload
comes back; everywhere else it still demands a well-formed reply with a stable code, and never
``INTERNAL`` (a handler that raised on bad input: a bug) or ``WORKER_LOST`` (nothing here may
kill a worker).
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
import uuid
from collections import Counter, deque
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zmq

from tacoreservice.protocol.errors import ErrorCode
from tests.support.fuzz_strategies import BROKER_METHODS, FuzzCase, Probe, echo_body
from tests.support.service import ServiceProcesses

__all__ = ["FuzzService", "FuzzTarget", "Expected", "expected_for", "check_reply"]

STABLE_CODES = frozenset(c.value for c in ErrorCode)
SUCCESS = "SUCCESS"
ANY_ID = object()  # the reply may carry any request_id
MADE_ID = object()  # the service made one: a non-empty string
_LEGACY_ACTIONS = {
    "analyze_strategy": "analyze.strategy",
    "generate_signal": "generate.signal",
    "optimize_parameters": "optimize.parameters",
}
_MAX_ID_LEN = 128
_MAX_METHOD_LEN = 64
_MAX_TIMEOUT_MS = 86_400_000
_WORKER_DEPTH = 32  # worker.max_params_depth as shipped
_FORWARD_DEPTH = 250  # comfortably below what the broker can re-encode for a worker (~253)
_NO_ECHO = object()
_STANDARD_KEYS = {
    "status",
    "request_id",
    "data",
    "error",
    "processing_time_ms",
    "timestamp",
    "worker_id",
}
_LEGACY_KEYS = {"success", "data", "error", "timestamp", "request_id"}
_BROKER_LOCAL = frozenset({"health.check", "job.submit", "job.status", "job.result", "job.list"})


class FuzzFailure(AssertionError):
    pass


@dataclass
class Expected:
    """What the reply to one message must be."""

    reply: bool = True  # False: the frame is over the socket cap; libzmq drops the connection
    codes: frozenset[str] | None = None  # allowed outcomes (SUCCESS or codes); None: any stable
    request_id: Any = ANY_ID
    shape: str | None = None  # "standard" | "legacy" | None (either)
    echo: Any = _NO_ECHO  # data.payload of a successful test.echo
    queued_job: bool = False  # a successful reply is a queued job
    # An error with code mentions[0] must name mentions[1] (the field, the limit, ...).
    mentions: tuple[str, str] | None = None
    method: str | None = None
    body: bytes = b""
    client_id: str | None = None  # a request_id the client chose (retries reuse it)
    free: frozenset[str] = frozenset()  # outcomes accepted whatever the body (back-pressure)

    def widen(self, *codes: str) -> None:
        if self.codes is not None:
            self.codes = self.codes | set(codes)


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return deepest


_CLIENT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _valid_client_name(value: Any) -> bool:
    return value is None or (isinstance(value, str) and _CLIENT_NAME.fullmatch(value) is not None)


def expected_for(
    frames: list[bytes],
    max_bytes: int,
    known_methods: frozenset[str],
    seen: dict[str, set[int]],
    rate_limited: bool = False,
) -> Expected:
    """The documented answer to one client message, given its content frames."""
    if any(len(f) > 4 * max_bytes for f in frames):
        return Expected(reply=False)
    exp = _expected_for_frames(frames, max_bytes, known_methods, seen)
    if rate_limited:
        # A burst may be refused whatever it holds: only the reply's form is checked then.
        exp.free = frozenset({ErrorCode.RATE_LIMITED.value, ErrorCode.OVERLOADED.value})
    return exp


def _expected_for_frames(
    frames: list[bytes],
    max_bytes: int,
    known_methods: frozenset[str],
    seen: dict[str, set[int]],
) -> Expected:
    def error(code: ErrorCode, mentions: str | None, rid: Any = None, shape: Any = "standard"):
        return Expected(
            codes=frozenset({code.value}),
            request_id=rid,
            shape=shape,
            mentions=(code.value, mentions) if mentions else None,
        )

    if len(frames) != 1:
        return error(ErrorCode.INVALID_REQUEST, "frame")
    body = frames[0]
    if len(body) > max_bytes:
        return error(ErrorCode.PAYLOAD_TOO_LARGE, str(max_bytes))
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error(ErrorCode.PARSE_ERROR, "JSON")
    if not isinstance(obj, dict):
        return error(ErrorCode.INVALID_REQUEST, "object")

    raw_id = obj.get("request_id")
    rid: Any = MADE_ID
    if raw_id is not None:
        if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        if (
            not isinstance(raw_id, str)
            or not raw_id
            or len(raw_id) > _MAX_ID_LEN
            or not raw_id.isprintable()  # no newline or NUL to forge log lines with
        ):
            return error(ErrorCode.INVALID_REQUEST, "request_id", None, None)
        rid = raw_id

    # Refused while parsing: the reply carries the client's id, or none (none is made yet).
    given = rid if isinstance(rid, str) else None
    method = obj.get("method")
    shape = "standard"
    if method is None and "action" in obj:
        shape = "legacy"
        action = obj["action"]
        if not isinstance(action, str) or not action or len(action) > _MAX_METHOD_LEN:
            return error(ErrorCode.INVALID_REQUEST, "action", given, shape)
        method = _LEGACY_ACTIONS.get(action) or action.replace("_", ".", 1)
    elif not isinstance(method, str) or not method or len(method) > _MAX_METHOD_LEN:
        return error(ErrorCode.INVALID_REQUEST, "method", given)

    params = obj.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        return error(ErrorCode.INVALID_REQUEST, "params", given, shape)

    timeout = obj.get("timeout_ms")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= _MAX_TIMEOUT_MS
    ):
        return error(ErrorCode.INVALID_REQUEST, "timeout_ms", given, shape)
    if not _valid_client_name(obj.get("client")):
        return error(ErrorCode.INVALID_REQUEST, "client", given, shape)

    exp = Expected(request_id=rid, shape=shape, method=method, body=body)
    if isinstance(rid, str):
        exp.client_id = rid
    is_async = params.get("async") is True
    if method == "health.check":
        exp.codes = frozenset({SUCCESS})
    elif isinstance(rid, str) and seen.get(rid, {hash(body)}) != {hash(body)}:
        # The id was used before by another request: answered from that one (a retry) or
        # refused as reused; either way its code is not this body's to decide.
        exp.shape = None
        exp.codes = None
    elif method not in known_methods:
        exp.codes = frozenset({ErrorCode.METHOD_NOT_FOUND.value})
        # The message lists the methods that exist.
        exp.mentions = (ErrorCode.METHOD_NOT_FOUND.value, "test.echo")
    elif method == "test.echo" and is_async:
        depth = _depth({k: v for k, v in params.items() if k != "async"})
        if depth <= _FORWARD_DEPTH:
            exp.codes = frozenset({SUCCESS})
            exp.queued_job = True
        elif depth > 256:
            exp.codes = frozenset({ErrorCode.INVALID_REQUEST.value})
            exp.mentions = (ErrorCode.INVALID_REQUEST.value, "nested")
    elif method in ("test.echo", "test.fail") and not is_async:
        depth = _depth(params)
        if depth > _WORKER_DEPTH:
            exp.codes = frozenset({ErrorCode.INVALID_REQUEST.value})
            exp.mentions = (ErrorCode.INVALID_REQUEST.value, "nested")
        elif method == "test.fail":
            exp.codes = frozenset({ErrorCode.INTERNAL.value})
        else:
            exp.codes = frozenset({SUCCESS})
            exp.echo = params.get("payload")
    if timeout is not None:
        exp.widen(ErrorCode.DEADLINE_EXCEEDED.value)
    if obj.get("client") is not None:
        # A named client may be held to a list of methods (security.permissions).
        exp.widen(ErrorCode.UNAUTHORIZED.value)
    return exp


def check_reply(raw: bytes) -> tuple[str, str, dict[str, Any]]:
    """Parse a reply and check its shape; returns (shape, SUCCESS or code, reply)."""
    try:
        reply = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FuzzFailure(f"reply is not JSON ({exc}): {raw[:200]!r}") from None
    if not isinstance(reply, dict):
        raise FuzzFailure(f"reply is not an object: {raw[:200]!r}")
    if "status" in reply:
        missing = _STANDARD_KEYS - set(reply)
        if missing:
            raise FuzzFailure(f"standard reply lacks {sorted(missing)}: {raw[:300]!r}")
        if not isinstance(reply["timestamp"], str) or not reply["timestamp"].endswith("Z"):
            raise FuzzFailure(f"bad timestamp: {raw[:300]!r}")
        ms = reply["processing_time_ms"]
        if not isinstance(ms, int | float) or ms < 0:
            raise FuzzFailure(f"bad processing_time_ms: {raw[:300]!r}")
        if reply["status"] == "success":
            if reply["error"] is not None:
                raise FuzzFailure(f"success with an error: {raw[:300]!r}")
            if "result" in reply and reply["result"] != reply["data"]:
                raise FuzzFailure("compat `result` differs from `data`")
            return "standard", SUCCESS, reply
        if reply["status"] != "error":
            raise FuzzFailure(f"status is neither success nor error: {raw[:300]!r}")
        err = reply["error"]
        if not isinstance(err, dict) or err.get("code") not in STABLE_CODES:
            raise FuzzFailure(f"error without a stable code: {raw[:300]!r}")
        if not isinstance(err.get("message"), str) or not err["message"]:
            raise FuzzFailure(f"error without a message: {raw[:300]!r}")
        if reply["data"] is not None:
            raise FuzzFailure(f"error reply with data: {raw[:300]!r}")
        if "message" in reply and reply["message"] != err["message"]:
            raise FuzzFailure("compat `message` differs from error.message")
        return "standard", err["code"], reply
    if "success" in reply:
        missing = _LEGACY_KEYS - set(reply)
        if missing:
            raise FuzzFailure(f"legacy reply lacks {sorted(missing)}: {raw[:300]!r}")
        if reply["success"] is True:
            if reply["error"] is not None:
                raise FuzzFailure(f"legacy success with an error: {raw[:300]!r}")
            return "legacy", SUCCESS, reply
        if reply["success"] is not False:
            raise FuzzFailure(f"legacy success is not a bool: {raw[:300]!r}")
        if reply.get("error_code") not in STABLE_CODES:
            raise FuzzFailure(f"legacy error without a stable code: {raw[:300]!r}")
        if not isinstance(reply["error"], str) or not reply["error"]:
            raise FuzzFailure(f"legacy error without a message: {raw[:300]!r}")
        return "legacy", reply["error_code"], reply
    raise FuzzFailure(f"reply has neither status nor success: {raw[:300]!r}")


def _mismatch(exp: Expected, raw: bytes) -> str | None:
    """Why ``raw`` is not the reply ``exp`` describes; None when it is."""
    try:
        shape, outcome, reply = check_reply(raw)
    except FuzzFailure as exc:
        return str(exc)
    if outcome in exp.free:
        return None
    if exp.codes is not None and outcome not in exp.codes:
        about = f" (about {exp.mentions[1]!r})" if exp.mentions else ""
        return f"outcome {outcome}, expected one of {sorted(exp.codes)}{about}: {raw[:400]!r}"
    if outcome == ErrorCode.WORKER_LOST.value:
        return "WORKER_LOST: a request lost its worker"
    if outcome == ErrorCode.INTERNAL.value and exp.method != "test.fail":
        return f"INTERNAL (a handler raised on this input): {raw[:400]!r}"
    if exp.shape is not None and shape != exp.shape:
        return f"{shape} reply where a {exp.shape} one was due: {raw[:300]!r}"
    rid = reply["request_id"]
    if exp.request_id is MADE_ID:
        if not isinstance(rid, str) or not rid:
            return f"no request_id made for an anonymous request: {raw[:300]!r}"
    elif exp.request_id is not ANY_ID and rid != exp.request_id:
        return f"request_id {rid!r}, expected {exp.request_id!r}"
    if exp.mentions is not None and outcome == exp.mentions[0]:
        message = reply["error"]["message"] if shape == "standard" else reply["error"]
        if exp.mentions[1] not in message:
            return f"error message does not mention {exp.mentions[1]!r}: {message!r}"
    if outcome == SUCCESS and exp.echo is not _NO_ECHO:
        data = reply["data"]
        if not isinstance(data, dict) or data.get("payload") != exp.echo:
            return f"echo differs: sent {exp.echo!r:.200}, got {str(data)[:200]}"
    if outcome == SUCCESS and exp.queued_job:
        data = reply["data"]
        if not isinstance(data, dict) or not data.get("job_id"):
            return f"async request did not answer a job: {raw[:300]!r}"
    return None


def _envelope_split(frames: list[bytes]) -> int:
    """Frames up to the first empty one are the envelope (``identity`` counted as frame 0)."""
    for i, frame in enumerate(frames, start=1):
        if frame == b"":
            return i
    return 0


@dataclass
class _Sent:
    expected: Expected
    envelope: list[bytes]  # the frames the reply must come back behind (DEALER)
    label: str


@dataclass
class FuzzTarget:
    """A running service under fuzz, with what it started as and what it answered."""

    svc: ServiceProcesses
    max_bytes: int
    rate_limited: bool = False
    reply_timeout_s: float = 10.0
    known_methods: frozenset[str] = frozenset()
    stats: Counter[str] = field(default_factory=Counter)
    seen: dict[str, set[int]] = field(default_factory=dict)  # request_id -> hashes of bodies
    expected_aapl_price: float = 0.0
    initial_pids: set[int] = field(default_factory=set)
    # The last cases sent, for the failure report: the case that kills a broker is not always
    # the one whose reply goes missing.
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=5))

    def __post_init__(self) -> None:
        from tacoreservice.config import Settings
        from tacoreservice.market_data import load_provider
        from tacoreservice.service.registry import load_plugins, registry

        load_plugins(["tests.support.test_methods"])
        self.known_methods = frozenset(registry.names()) | set(BROKER_METHODS)
        bars = load_provider(Settings().market_data).bars("AAPL")
        self.expected_aapl_price = float(bars.close[-1])
        self.ctx = zmq.Context()
        self.probe_sock = self._socket(zmq.DEALER)
        health = self.svc.wait_workers(self.svc.workers)
        self.initial_pids = {w["pid"] for w in health["worker_list"]}

    def close(self) -> None:
        self.probe_sock.close(linger=0)
        self.ctx.term()

    def _socket(self, kind: int, linger: int = 0) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, linger)
        sock.connect(self.svc.endpoint)
        return sock

    # ------------------------------------------------------------------ one case

    def run_case(self, case: FuzzCase) -> None:
        self.stats["cases"] += 1
        self.recent.append(repr(case))
        kind = zmq.REQ if case.socket == "req" else zmq.DEALER
        if case.mode == "disconnect":
            self._run_disconnect(case, kind)
        elif case.mode == "pirate":
            self._run_pirate(case, kind)
        else:
            self._run_wait(case, kind)
        self._alive()

    def _plan(self, case: FuzzCase, frames: tuple[bytes, ...]) -> tuple[list[bytes], _Sent]:
        """The frames to send on the socket and what must come back."""
        if case.socket == "req":
            wire = list(frames) or [b""]
            envelope: list[bytes] = []
            content = list(frames) if frames else [b""]
        elif case.socket == "dealer" or not frames:
            wire = [b"", *frames]
            envelope = [b""]
            content = list(frames)
        else:
            wire = list(frames)
            split = _envelope_split(wire)
            envelope = wire[:split]
            content = wire[split:]
        exp = expected_for(
            content, self.max_bytes, self.known_methods, self.seen, self.rate_limited
        )
        return wire, _Sent(exp, envelope, f"{[f[:40] for f in frames]}")

    def _remember(self, sent: _Sent) -> None:
        if sent.expected.client_id is not None:
            self.seen.setdefault(sent.expected.client_id, set()).add(hash(sent.expected.body))

    def _valid(self, kind: int) -> tuple[list[bytes], _Sent]:
        rid = f"valid-{uuid.uuid4().hex}"
        payload = {"n": self.stats["cases"], "rid": rid}
        exp = Expected(codes=frozenset({SUCCESS}), request_id=rid, shape="standard", echo=payload)
        if kind == zmq.REQ:  # REQ adds the delimiter itself and strips it from the reply
            return [echo_body(payload, rid)], _Sent(exp, [], "valid test.echo")
        return [b"", echo_body(payload, rid)], _Sent(exp, [b""], "valid test.echo")

    def _run_wait(self, case: FuzzCase, kind: int) -> None:
        sock = self._socket(kind)
        try:
            planned = []
            for m in case.messages:  # in sending order: a later message sees earlier ids
                planned.append(self._plan(case, m))
                self._remember(planned[-1][1])
            if case.then_valid:
                planned.append(self._valid(kind))
            if kind == zmq.REQ:
                for wire, sent in planned:
                    sock.send_multipart(wire)
                    if not sent.expected.reply:
                        self._expect_silence(sock)
                        return
                    self._match(case, [sent], [self._recv(sock, sent.label)])
                return
            for wire, _ in planned:
                sock.send_multipart(wire)
            expected = [s for _, s in planned if s.expected.reply]
            if len(expected) < len(planned):
                # A frame over the socket cap drops the connection: what was queued behind
                # it on that connection is gone too, so only silence can be checked.
                assert len(planned) == 1, "an over-cap frame is sent alone"
                self._expect_silence(sock)
                return
            replies = [self._recv(sock, s.label) for s in expected]
            if sock.poll(0):
                raise FuzzFailure(f"more replies than requests: {sock.recv_multipart()!r:.300}")
            self._match(case, expected, replies)
        finally:
            sock.close(linger=0)

    def _run_disconnect(self, case: FuzzCase, kind: int) -> None:
        # Linger so the request leaves; the reply then has nowhere to go.
        sock = self._socket(kind, linger=200)
        messages = case.messages[:1] if kind == zmq.REQ else case.messages
        for m in messages:
            wire, sent = self._plan(case, m)
            sock.send_multipart(wire)
            self._remember(sent)
            self.stats["sent_then_gone"] += 1
        sock.close()

    def _run_pirate(self, case: FuzzCase, kind: int) -> None:
        last = len(case.messages) - 1
        for i, m in enumerate(case.messages):
            wire, sent = self._plan(case, m)
            sock = self._socket(kind, linger=200 if i < last else 0)
            sock.send_multipart(wire)
            self._remember(sent)
            if i < last:
                sock.close()  # gave up waiting: retry on a fresh socket
                continue
            try:
                if not sent.expected.reply:
                    self._expect_silence(sock)
                else:
                    self._match(case, [sent], [self._recv(sock, sent.label)])
            finally:
                sock.close(linger=0)

    def _recv(self, sock: zmq.Socket, label: str) -> list[bytes]:
        deadline = time.monotonic() + self.reply_timeout_s
        while not sock.poll(250):
            self._alive()
            if time.monotonic() > deadline:
                raise FuzzFailure(f"no reply within {self.reply_timeout_s} s to {label}")
        return sock.recv_multipart()

    def _expect_silence(self, sock: zmq.Socket) -> None:
        self.stats["dropped_by_socket_cap"] += 1
        if sock.poll(300):
            raise FuzzFailure(f"a reply to an over-cap frame: {sock.recv_multipart()!r:.300}")

    def _match(self, case: FuzzCase, sent: list[_Sent], replies: list[list[bytes]]) -> None:
        """Pair replies with requests (a DEALER's replies may arrive in any order)."""
        n = len(sent)
        if n > 1 and all(item == sent[0] for item in sent):
            # Copies of one message (a burst): any reply may answer any copy.
            for frames in replies:
                why = (
                    f"envelope {frames[:-1]!r:.120}"
                    if frames[:-1] != sent[0].envelope
                    else _mismatch(sent[0].expected, frames[-1])
                )
                if why is not None:
                    raise FuzzFailure(f"a reply fits no copy of {case!r}: {why}")
            for frames in replies:
                self.stats[check_reply(frames[-1])[1]] += 1
            self._check_retries_identical(sent, dict(enumerate(range(len(replies)))), replies)
            return
        reasons: dict[tuple[int, int], str | None] = {}
        for r, frames in enumerate(replies):
            for s, item in enumerate(sent):
                if frames[:-1] != item.envelope:
                    reasons[r, s] = f"envelope {frames[:-1]!r:.120} != {item.envelope!r:.120}"
                else:
                    reasons[r, s] = _mismatch(item.expected, frames[-1])
        owner: dict[int, int] = {}  # request -> reply (Kuhn's augmenting paths)

        def assign(r: int, visited: set[int]) -> bool:
            for s in range(n):
                if reasons[r, s] is None and s not in visited:
                    visited.add(s)
                    if s not in owner or assign(owner[s], visited):
                        owner[s] = r
                        return True
            return False

        for r in range(len(replies)):
            if not assign(r, set()):
                why = "; ".join(f"[{s}] {reasons[r, s]}" for s in range(n))
                raise FuzzFailure(f"reply {r} fits no request of {case!r}: {why}")
        for frames in replies:
            self.stats[check_reply(frames[-1])[1]] += 1
        self._check_retries_identical(sent, owner, replies)

    def _check_retries_identical(
        self, sent: list[_Sent], owner: dict[int, int], replies: list[list[bytes]]
    ) -> None:
        """A retry is answered with the very reply of the first run, never a second run."""
        by_body: dict[tuple[bytes, str], list[bytes]] = {}
        for s, r in owner.items():
            exp = sent[s].expected
            if exp.client_id and exp.method not in _BROKER_LOCAL and exp.shape == "standard":
                by_body.setdefault((exp.body, exp.client_id), []).append(replies[r][-1])
        for group in by_body.values():
            worker_replies = [
                raw for raw in group if orjson.loads(raw).get("worker_id") not in (None, "broker")
            ]
            if len(set(worker_replies)) > 1:
                raise FuzzFailure(f"one request_id, two different runs: {worker_replies!r:.600}")

    # ------------------------------------------------------------------ probe and health

    def probe(self, probe: Probe) -> None:
        """A well-formed request on a separate socket gets exactly its correct answer."""
        if probe.kind == "market":
            body = orjson.dumps(
                {
                    "method": "get.market_data",
                    "params": {"symbol": "AAPL"},
                    "request_id": probe.request_id,
                }
            )
        else:
            body = echo_body(probe.payload, probe.request_id)
        self.probe_sock.send_multipart([b"", body])
        frames = self._recv(self.probe_sock, f"probe {probe.request_id}")
        if len(frames) != 2 or frames[0] != b"":
            raise FuzzFailure(f"probe reply envelope: {frames!r:.300}")
        reply = orjson.loads(frames[1])
        ok = reply.get("status") == "success" and reply.get("request_id") == probe.request_id
        if ok and probe.kind == "market":
            data = reply["data"]
            # The last close of the bundled history (the reply may round it to 6 decimals).
            ok = data.get("symbol") == "AAPL" and math.isclose(
                data.get("price") or 0.0, self.expected_aapl_price, rel_tol=1e-8
            )
        elif ok:
            ok = reply["data"].get("payload") == probe.payload
            ok = ok and reply["data"].get("pid") in self.initial_pids
        if not ok:
            raise FuzzFailure(f"probe {probe!r:.300} got {frames[1]!r:.600}")
        self.stats["probes_ok"] += 1

    def _alive(self) -> None:
        main = self.svc.main
        if main is None or main.poll() is not None:
            code = None if main is None else main.returncode
            recent = "\n  ".join(self.recent)
            raise FuzzFailure(f"the broker process exited (code {code}); last cases:\n  {recent}")

    def job_crashes(self) -> list[dict[str, Any]]:
        """Jobs whose handler raised (INTERNAL) or lost its worker: the fuzz cases' jobs run
        after their reply, so their failures are read from the job table."""
        uri = f"file:{self.svc.db_path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            rows = db.execute(
                "SELECT job_id, method, params, error FROM jobs WHERE state = 'failed'"
            ).fetchall()
        crashes = []
        for job_id, method, params, error in rows:
            code = (orjson.loads(error) or {}).get("code") if error else None
            if code == "WORKER_LOST" or (code == "INTERNAL" and method != "test.fail"):
                crashes.append(
                    {"job_id": job_id, "method": method, "params": params[:300], "error": error}
                )
        return crashes

    def status(self) -> dict[str, Any]:
        """Broker, workers and request log after a run: what an operator would check."""
        self._alive()
        health = self.svc.wait_workers(self.svc.workers)
        pids = {w["pid"] for w in health["worker_list"]}
        return {
            "broker_alive": True,
            "health": health["status"],
            "workers_alive": health["workers"]["alive"],
            "same_worker_pids": pids == self.initial_pids,
            "worker_pids": sorted(pids),
            "initial_pids": sorted(self.initial_pids),
            "requests_total": health["requests"]["total"],
            "errors_by_code": health["requests"]["errors_by_code"],
            "worker_events": health["worker_events"],
            "request_log": health["request_log"],
            "job_crashes": self.job_crashes(),
        }

    def assert_intact(self, settle_s: float = 10.0) -> dict[str, Any]:
        """Broker alive, the same worker processes serving, health ok, request log healthy."""
        status = self.status()
        assert status["health"] == "healthy", status
        assert status["same_worker_pids"], status
        assert not status["job_crashes"], status["job_crashes"]
        log = status["request_log"]
        deadline = time.monotonic() + settle_s
        while log["pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
            log = self.status()["request_log"]
        assert log["running"] and not log["errors"] and not log["failed"], log
        assert not log["dropped"], log
        return status


class FuzzService:
    """A service under fuzz, replaced when its broker dies: one bug must not hide the next."""

    def __init__(
        self, root: Path, workers: int, max_bytes: int, rate_limited: bool, **env: Any
    ) -> None:
        self.root = root
        self.workers = workers
        self.max_bytes = max_bytes
        self.rate_limited = rate_limited
        self.env = env
        self.replaced = 0
        self.totals: Counter[str] = Counter()  # outcomes of the services replaced so far
        self._svc: ServiceProcesses | None = None
        self._target: FuzzTarget | None = None

    def current(self) -> FuzzTarget:
        """The running service's target; a fresh service when there is none or it died."""
        if self._target is not None and self.alive():
            return self._target
        if self._target is not None:
            self.replaced += 1
            self.stop()
        tmp = self.root / f"service-{self.replaced}"
        tmp.mkdir(parents=True, exist_ok=True)
        self._svc = ServiceProcesses(
            tmp, workers=self.workers, TACORE_MAX_MESSAGE_BYTES=self.max_bytes, **self.env
        )
        self._svc.start_main()
        self._target = FuzzTarget(self._svc, self.max_bytes, rate_limited=self.rate_limited)
        return self._target

    def alive(self) -> bool:
        main = self._svc.main if self._svc is not None else None
        return main is not None and main.poll() is None

    def stop(self) -> None:
        if self._target is not None:
            self.totals += self._target.stats
            self._target.close()
            self._target = None
        if self._svc is not None:
            self._svc.stop()
            self._svc = None

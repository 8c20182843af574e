"""Client side of the wire protocol: parsing requests and building replies.

One request is one ZeroMQ frame holding a UTF-8 JSON object. Two dialects are accepted:

- standard: ``{"request_id"?, "method", "params"?, "timeout_ms"?, "client"?, ...}``. Extra
  top-level keys (``timestamp`` from V3.5 clients, ...) are ignored.
- legacy strategy clients: ``{"action", "params"?, "request_id"?}``; the action is mapped to a
  method (``analyze_strategy`` -> ``analyze.strategy``) and the reply keeps their shape
  ``{"success", "data", "error": str, "timestamp", "request_id"}``.

Standard replies are ``{"status", "request_id", "data", "error", "processing_time_ms",
"timestamp", "worker_id"}``; with ``compat`` on they also carry ``result`` (= data) and, on
error, a top-level ``message`` for V3.5 scanner clients.

The broker parses every request once (it needs the id, method and deadline for dedup,
back-pressure and logging); workers get a normalised copy, so this module is on the hot path
and avoids pydantic on purpose.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from tacoreservice.protocol.errors import ErrorCode, ServiceError

__all__ = [
    "CLIENT_NAME_PATTERN",
    "ClientRequest",
    "RequestRejected",
    "STANDARD",
    "LEGACY",
    "LEGACY_ACTIONS",
    "parse_request",
    "build_reply",
    "build_error_reply",
    "utc_timestamp",
    "json_dumps",
]

STANDARD = 0
LEGACY = 1

# Actions of the legacy strategy clients; any other action maps by its first underscore
# (``get_market_data`` -> ``get.market_data``) so older clients can reach every method.
LEGACY_ACTIONS: dict[str, str] = {
    "analyze_strategy": "analyze.strategy",
    "generate_signal": "generate.signal",
    "optimize_parameters": "optimize.parameters",
}

_MAX_ID_LEN = 128
# Client names key permissions, rate limits and log rows; CURVE key files are named the same
# way. Use with fullmatch: a "$" anchor would let a final newline through.
CLIENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_METHOD_LEN = 64
# A request may wait at most a day; larger values are a client bug, not a wish.
_MAX_TIMEOUT_MS = 86_400_000


_second_text: tuple[int, str] = (-1, "")


def utc_timestamp(now: float | None = None) -> str:
    """ISO-8601 UTC with microseconds, e.g. ``2026-11-21T10:00:00.123456Z``.

    Every reply and log row carries one, and datetime.isoformat costs ~5 us on this class of
    machine, so the seconds part is formatted once per second and reused (a single tuple
    assignment keeps it consistent across threads).
    """
    global _second_text
    t = time.time() if now is None else now
    sec = int(t)
    cached = _second_text
    if cached[0] != sec:
        cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
        _second_text = cached
    return f"{cached[1]}.{int((t - sec) * 1_000_000):06d}Z"


def _default(obj: Any) -> Any:
    # Handlers may return pydantic models, dataclasses' dicts, numpy scalars, dates.
    model_dump = getattr(obj, "model_dump", None)
    if model_dump is not None:
        return model_dump(mode="json")
    item = getattr(obj, "item", None)
    if item is not None:
        return item()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


_DUMPS_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=_DUMPS_OPTS)


@dataclass(slots=True)
class ClientRequest:
    request_id: str
    method: str
    params: dict[str, Any]
    dialect: int
    timeout_ms: int | None
    client_request_id: bool  # False when the service made the id (no retry can reuse it)
    # Who sent it: the name the client gives (``client``), replaced by its CURVE key's name
    # when security is on. None for an unnamed client.
    client: str | None = None


class RequestRejected(ServiceError):
    """A request that cannot be dispatched; carries what is known for the error reply."""

    def __init__(
        self, code: ErrorCode, message: str, request_id: str | None = None, dialect: int = STANDARD
    ):
        super().__init__(code, message)
        self.request_id = request_id
        self.dialect = dialect


# Ids the service makes for requests that came without one: unique per process start and
# cheap (uuid4 reads the OS entropy pool on every call).
_ID_PREFIX = f"tac-{os.urandom(4).hex()}-"
_id_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter)}"


def parse_request(body: bytes) -> ClientRequest:
    """Parse and validate one client frame; raises :class:`RequestRejected`."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestRejected(
            ErrorCode.PARSE_ERROR,
            f"request is not valid UTF-8 JSON: {exc}. Send one frame holding a JSON object "
            'like {"method": "health.check", "params": {}}',
        ) from None
    if not isinstance(obj, dict):
        raise RequestRejected(
            ErrorCode.INVALID_REQUEST,
            f"request must be a JSON object, got {type(obj).__name__}: "
            'send {"method": ..., "params": {...}}',
        )

    # Known before anything is checked, so every error answers in the caller's dialect.
    dialect = LEGACY if obj.get("method") is None and "action" in obj else STANDARD
    raw_id = obj.get("request_id")
    request_id: str | None = None
    if raw_id is not None:
        if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        # Control and format characters (newline, NUL, bidi overrides) would let an id forge
        # lines in the text logs or hide what it says; printable Unicode is fine.
        if (
            not isinstance(raw_id, str)
            or not raw_id
            or len(raw_id) > _MAX_ID_LEN
            or not raw_id.isprintable()
        ):
            raise RequestRejected(
                ErrorCode.INVALID_REQUEST,
                f"request_id must be a non-empty string of at most {_MAX_ID_LEN} printable "
                "characters (no control characters such as newline or NUL)",
                None,
                dialect,
            )
        request_id = raw_id

    method = obj.get("method")
    if dialect == LEGACY:
        action = obj["action"]
        if not isinstance(action, str) or not action or len(action) > _MAX_METHOD_LEN:
            raise RequestRejected(
                ErrorCode.INVALID_REQUEST,
                "action must be a non-empty string such as 'analyze_strategy'",
                request_id,
                dialect,
            )
        method = LEGACY_ACTIONS.get(action) or action.replace("_", ".", 1)
    elif method is None:
        raise RequestRejected(
            ErrorCode.INVALID_REQUEST,
            "request has no 'method' (or legacy 'action'); "
            'send {"method": "health.check", "params": {}}',
            request_id,
        )
    elif not isinstance(method, str) or not method or len(method) > _MAX_METHOD_LEN:
        raise RequestRejected(
            ErrorCode.INVALID_REQUEST,
            f"method must be a non-empty string of at most {_MAX_METHOD_LEN} characters, "
            f"got {type(method).__name__}",
            request_id,
        )

    params = obj.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise RequestRejected(
            ErrorCode.INVALID_REQUEST,
            f"params must be a JSON object, got {type(params).__name__}",
            request_id,
            dialect,
        )

    timeout_ms = obj.get("timeout_ms")
    if timeout_ms is not None:
        if (
            isinstance(timeout_ms, bool)
            or not isinstance(timeout_ms, int | float)
            or timeout_ms != timeout_ms  # NaN
            or not 0 < timeout_ms <= _MAX_TIMEOUT_MS
        ):
            raise RequestRejected(
                ErrorCode.INVALID_REQUEST,
                f"timeout_ms must be a positive number of milliseconds up to {_MAX_TIMEOUT_MS}",
                request_id,
                dialect,
            )
        timeout_ms = math.ceil(timeout_ms)  # 0.5 ms is a deadline too, not "none"

    client = obj.get("client")
    if client is not None and (
        not isinstance(client, str) or not CLIENT_NAME_PATTERN.fullmatch(client)
    ):
        raise RequestRejected(
            ErrorCode.INVALID_REQUEST,
            "client must be a name of 1-64 letters, digits, '_', '.' or '-' (e.g. 'scanner')",
            request_id,
            dialect,
        )

    return ClientRequest(
        request_id if request_id is not None else new_request_id(),
        method,
        params,
        dialect,
        timeout_ms,
        request_id is not None,
        client,
    )


def build_reply(
    request_id: str | None,
    dialect: int,
    compat: bool,
    data: Any = None,
    error: dict[str, Any] | None = None,
    processing_time_ms: float = 0.0,
    worker_id: str | None = None,
) -> bytes:
    """Serialise one reply in the caller's dialect."""
    ts = utc_timestamp()
    if dialect == LEGACY:
        legacy: dict[str, Any] = {
            "success": error is None,
            "data": data,
            "error": None if error is None else error["message"],
            "timestamp": ts,
            "request_id": request_id,
        }
        if error is not None:
            legacy["error_code"] = error["code"]
        return json_dumps(legacy)
    if compat and data is not None and not isinstance(data, orjson.Fragment):
        # "result" repeats "data" for older clients: encoded once, written twice.
        data = orjson.Fragment(json_dumps(data))
    reply: dict[str, Any] = {
        "status": "success" if error is None else "error",
        "request_id": request_id,
        "data": data,
        "error": error,
        "processing_time_ms": round(processing_time_ms, 3),
        "timestamp": ts,
        "worker_id": worker_id,
    }
    if compat:
        reply["result"] = data
        if error is not None:
            reply["message"] = error["message"]
    return json_dumps(reply)


def build_error_reply(
    exc: ServiceError,
    request_id: str | None,
    dialect: int,
    compat: bool,
    worker_id: str | None = None,
    started: float | None = None,
) -> bytes:
    elapsed = (time.perf_counter() - started) * 1000.0 if started is not None else 0.0
    return build_reply(request_id, dialect, compat, None, exc.to_dict(), elapsed, worker_id)

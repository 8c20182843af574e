"""Broker <-> worker protocol (TAC/2), modelled on Paranoid Pirate and Majordomo (MDP/0.2),
and its one codec: the broker and the workers encode and decode every frame with the
functions below, so neither side knows the byte layout on its own.

The broker's backend is a ROUTER; every worker process connects two DEALER sockets to it:

- the *work* socket, identity ``<worker_id>``, carries READY, REQUEST, REPLY, DECLINE and
  DISCONNECT;
- the *heartbeat* socket, identity ``hb:<worker_id>``, owned by a background thread, carries
  HEARTBEAT both ways.

Why two sockets: a handler runs inline on the worker's main thread (no thread hand-off on
the hot path), so a minutes-long analysis would starve heartbeats sent from that thread and
the broker would declare a healthy worker dead. A ZeroMQ socket must stay on one thread, so
the heartbeat thread owns its own socket. A worker killed with SIGKILL loses both; a worker
whose main thread is stuck but process alive keeps heartbeating, as it should: it is busy,
not dead.

Frames as the worker sends them (the ROUTER prepends the identity frame on receipt; the
broker prepends it on send). Control messages have the MDP shape; the two messages every
request costs (REQUEST, REPLY) pack protocol, command, dispatch key and metadata into one
head frame, so a request crosses the backend in as few frames as a bare LRU chain uses:

    READY       ["", "TAC02", 0x01, info]       info: JSON {worker_id, pid, host, methods,
                                                  version, started_at}
    REQUEST     [head, request]                  broker -> worker. head: "TAC02" 0x02 key;
                                                  key: 8 opaque bytes naming this dispatch;
                                                  request: JSON [request_id, method, params,
                                                  dialect, compat, deadline, job_id]
    REPLY       [head, body]                     worker -> broker. head: "TAC02" 0x03 key,
                                                  then status (1 byte: 0 success, 1 error),
                                                  processing time in ms (float64 LE) and the
                                                  error code (ASCII, empty on success);
                                                  body: the client reply, forwarded untouched
    HEARTBEAT   ["", "TAC02", 0x04, stats]      worker -> broker on the heartbeat socket;
                                                  stats: JSON counters (may be empty)
    HEARTBEAT   ["", "TAC02", 0x04]             broker -> worker heartbeat socket
    DISCONNECT  ["", "TAC02", 0x05]             either way: worker leaving (SIGTERM), or
                                                  broker telling a worker it does not know
                                                  (any more) to re-register
    DECLINE     ["", "TAC02", 0x06, key]        worker -> broker: a request it received but
                                                  will not start (see below); the broker puts
                                                  it back in its queue if it still holds it
                                                  for this worker, and ignores it otherwise

Credit: the broker may hand a worker its next request while the current one is still
running (a credit of two: one running, one waiting in the worker's socket), so the worker
starts it without waiting a broker round trip. A request waiting in a worker is the broker's
as much as a running one: if the worker dies or is evicted, both are re-dispatched. A worker
starts a request only while its session is fresh (its heartbeat thread both sent a heartbeat
and heard the broker within ``expiry - interval``): past that, the broker may already have
given it up and re-dispatched what it holds, so the worker DECLINEs instead, and a request is
never run by two workers because one of them waited in a socket.

Liveness: each side expects traffic from the other at least every ``interval``; after
``liveness`` intervals of silence the broker evicts the worker (re-dispatching its requests)
and the worker reconnects with exponential back-off. A local supervisor also tells the broker
at once when it reaps a dead worker process, so local crashes are handled within milliseconds
rather than the heartbeat window.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "COMMAND_NAMES",
    "DECLINE",
    "DISCONNECT",
    "HEARTBEAT",
    "HEARTBEAT_IDENTITY_PREFIX",
    "KEY_SIZE",
    "PROTOCOL",
    "READY",
    "REPLY",
    "REQUEST",
    "WorkRequest",
    "command",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "heartbeat",
    "heartbeat_identity",
    "is_handed_over",
    "is_reply",
    "is_request",
    "key_of",
    "ready",
    "request_head",
]

PROTOCOL = b"TAC02"
READY = b"\x01"
REQUEST = b"\x02"
REPLY = b"\x03"
HEARTBEAT = b"\x04"
DISCONNECT = b"\x05"
DECLINE = b"\x06"

COMMAND_NAMES = {
    READY: "READY",
    REQUEST: "REQUEST",
    REPLY: "REPLY",
    HEARTBEAT: "HEARTBEAT",
    DISCONNECT: "DISCONNECT",
    DECLINE: "DECLINE",
}

HEARTBEAT_IDENTITY_PREFIX = b"hb:"
KEY_SIZE = 8

REQUEST_PREFIX = PROTOCOL + REQUEST
REPLY_PREFIX = PROTOCOL + REPLY
_PREFIX = len(PROTOCOL) + 1
_KEY_END = _PREFIX + KEY_SIZE
_META = struct.Struct("<Bd")  # status, processing time (ms)
_CODE_AT = _KEY_END + _META.size


def heartbeat_identity(worker_identity: bytes) -> bytes:
    return HEARTBEAT_IDENTITY_PREFIX + worker_identity


def is_handed_over(identity: bytes) -> bool:
    """True for a routing id libzmq made up itself (a zero byte and four more).

    Workers always set their identity (printable, never starting with a zero byte), so a
    made-up id on the backend means a connection whose identity a newer connection took over
    (``ROUTER_HANDOVER``): messages still queued on the old one arrive under such an id.
    """
    return len(identity) == 5 and identity[:1] == b"\x00"


# ---------------------------------------------------------------- control messages


def command(name: bytes, *args: bytes) -> list[bytes]:
    """A control message (HEARTBEAT, DISCONNECT, DECLINE) as the sender's frames."""
    return [b"", PROTOCOL, name, *args]


def ready(info: dict[str, Any]) -> list[bytes]:
    return [b"", PROTOCOL, READY, orjson.dumps(info)]


def heartbeat(stats: dict[str, Any] | None = None) -> list[bytes]:
    return [b"", PROTOCOL, HEARTBEAT] if stats is None else command(HEARTBEAT, orjson.dumps(stats))


# ---------------------------------------------------------------- REQUEST


@dataclass(slots=True)
class WorkRequest:
    """What a worker needs to run one request."""

    request_id: str
    method: str
    params: dict[str, Any]
    dialect: int = 0
    compat: bool = True
    deadline: float | None = None  # wall clock (time.time()): the worker may be another host
    job_id: str | None = None
    # An upper bound on how deep params nest: the brackets that open in the payload it came
    # in, less its own list (None: not from the wire, unknown).
    nesting_bound: int | None = None


def encode_request(
    request_id: str,
    method: str,
    params: dict[str, Any],
    dialect: int,
    compat: bool,
    deadline: float | None,
    job_id: str | None,
) -> bytes:
    """The request frame of a REQUEST (the fields of :class:`WorkRequest`). Raises TypeError
    when params cannot be encoded (nested deeper than orjson's 255 levels)."""
    return orjson.dumps([request_id, method, params, dialect, compat, deadline, job_id])


def request_head(key: bytes) -> bytes:
    return REQUEST_PREFIX + key


def is_request(frames: list[bytes]) -> bool:
    """Whether ``frames`` (as a worker receives them) are a REQUEST."""
    return len(frames) == 2 and frames[0][:_PREFIX] == REQUEST_PREFIX


def decode_request(head: bytes, payload: bytes) -> tuple[bytes, WorkRequest]:
    """The dispatch key and the request; ValueError when the frames are not a REQUEST."""
    if head[:_PREFIX] != REQUEST_PREFIX or len(head) != _KEY_END:
        raise ValueError("not a REQUEST head")
    try:
        rid, method, params, dialect, compat, deadline, job_id = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise ValueError("unreadable REQUEST payload") from None
    if not isinstance(method, str) or not isinstance(params, dict):
        raise ValueError("REQUEST payload without a method and params")
    return head[_PREFIX:], WorkRequest(
        rid,
        method,
        params,
        int(dialect or 0),
        bool(compat),
        deadline,
        job_id,
        payload.count(b"{") + payload.count(b"[") - 1,
    )


# ---------------------------------------------------------------- REPLY


def encode_reply(
    key: bytes, ok: bool, processing_ms: float, error_code: str | None, body: bytes
) -> list[bytes]:
    """A REPLY as the worker sends it."""
    head = REPLY_PREFIX + key + _META.pack(0 if ok else 1, processing_ms)
    if error_code:
        head += error_code.encode("ascii", "replace")
    return [head, body]


def is_reply(head: bytes) -> bool:
    return head[:_PREFIX] == REPLY_PREFIX and len(head) >= _CODE_AT


def decode_reply(head: bytes) -> tuple[bytes, bool, float, str | None]:
    """``(key, ok, processing_ms, error_code)`` of a REPLY head (check :func:`is_reply` first).
    A plain tuple: the broker decodes one per request."""
    status, ms = _META.unpack_from(head, _KEY_END)
    code = head[_CODE_AT:]
    return head[_PREFIX:_KEY_END], status == 0, ms, code.decode() if code else None


def key_of(head: bytes) -> bytes:
    """The dispatch key of a REQUEST or REPLY head."""
    return head[_PREFIX:_KEY_END]

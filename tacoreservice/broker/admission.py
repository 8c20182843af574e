"""Admission: what a client's message becomes, a request to queue or a refusal.

Pure functions over the frames and the broker's state as plain values: nothing here sends,
reads a socket or keeps state, so the routing core (broker.py) stays the only code that
touches the broker's sockets. A refusal is a stable :class:`ErrorCode` and a message a person
can act on (DESIGN.md, "Errors").
"""

from __future__ import annotations

import time

from tacoreservice.broker.job_lane import JOB_METHODS
from tacoreservice.protocol import worker_protocol as wp
from tacoreservice.protocol.errors import ErrorCode, did_you_mean
from tacoreservice.protocol.messages import ClientRequest, RequestRejected

__all__ = [
    "BROKER_ID",
    "BROKER_METHODS",
    "SHUTTING_DOWN",
    "Refusal",
    "reused",
    "routing_refusal",
    "split_envelope",
    "unframed",
    "work_payload",
]

BROKER_ID = "broker"  # the worker_id of the replies the broker makes itself
BROKER_METHODS = frozenset({"health.check", *JOB_METHODS})  # answered without a worker

SHUTTING_DOWN = "the broker is shutting down; retry on another broker or in a moment"
TOO_DEEP = "params are nested too deeply (more than 255 levels)"

Refusal = tuple[ErrorCode, str]


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """``(envelope, content)`` of a frontend message. REQ and DEALER clients send
    ``[identity, "", body]``; a DEALER that skips the delimiter sends ``[identity, body]``.
    The reply mirrors the envelope it came with."""
    if len(frames) == 3 and not frames[1]:
        return frames[:2], frames[2:]
    try:
        split = frames.index(b"", 1) + 1
    except ValueError:
        split = 1
    return frames[:split], frames[split:]


def unframed(content: list[bytes], limit: int) -> RequestRejected | None:
    """The refusal of a message that is not one frame of at most ``limit`` bytes; None for
    one that is."""
    if len(content) != 1:
        return RequestRejected(
            ErrorCode.INVALID_REQUEST,
            f"expected exactly one frame holding a JSON object, got {len(content)} frames",
        )
    if len(content[0]) > limit:
        return RequestRejected(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"request is {len(content[0])} bytes; the limit is {limit} "
            "(broker.max_message_bytes / TACORE_MAX_MESSAGE_BYTES)",
        )
    return None


def reused(req: ClientRequest) -> Refusal:
    """A retry's request_id that names a different request."""
    return (
        ErrorCode.INVALID_REQUEST,
        f"request_id {req.request_id!r} is already used by a different request; use a fresh "
        "request_id per request (retries reuse it with the same content)",
    )


def routing_refusal(
    method: str, known: frozenset[str], waiting: int, max_queue_size: int
) -> Refusal | None:
    """Why a request for a worker cannot be queued: a method no worker serves (with the
    closest names), or a full queue; None when it can."""
    if known and method not in known:
        names = known | BROKER_METHODS
        return (
            ErrorCode.METHOD_NOT_FOUND,
            f"unknown method {method!r}{did_you_mean(method, names)}; "
            f"available: {', '.join(sorted(names))}",
        )
    if waiting >= max_queue_size:
        return (
            ErrorCode.OVERLOADED,
            f"{waiting} requests are already waiting (max_queue_size {max_queue_size}); "
            "back off and retry",
        )
    return None


def work_payload(req: ClientRequest, compat: bool, job_id: str | None) -> bytes | Refusal:
    """The REQUEST payload a worker gets for ``req``, or the refusal of params too deep to
    encode."""
    try:
        return wp.encode_request(
            req.request_id,
            req.method,
            req.params,
            req.dialect,
            compat,
            # Wall clock: the worker may be another process or host.
            time.time() + req.timeout_ms / 1000.0 if req.timeout_ms else None,
            job_id,
        )
    except TypeError:  # orjson.JSONEncodeError: nesting beyond its 255-level limit
        return (ErrorCode.INVALID_REQUEST, TOO_DEEP)

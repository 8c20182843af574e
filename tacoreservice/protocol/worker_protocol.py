"""Broker <-> worker protocol (TAC/1), modelled on Paranoid Pirate and Majordomo (MDP/0.2).

The broker's backend is a ROUTER; every worker process connects two DEALER sockets to it:

- the *work* socket, identity ``<worker_id>``, carries READY, REQUEST, REPLY and DISCONNECT;
- the *heartbeat* socket, identity ``hb:<worker_id>``, owned by a background thread, carries
  HEARTBEAT both ways.

Why two sockets: a handler runs inline on the worker's main thread (no thread hand-off on
the hot path), so a minutes-long analysis would starve heartbeats sent from that thread and
the broker would declare a healthy worker dead. A ZeroMQ socket must stay on one thread, so
the heartbeat thread owns its own socket. A worker killed with SIGKILL loses both; a worker
whose main thread is stuck but process alive keeps heartbeating, as it should: it is busy,
not dead.

Frames as the worker sends them (the ROUTER prepends the identity frame on receipt; the
broker prepends it on send):

    READY       ["", "TAC01", 0x01, info]           info: JSON {worker_id, pid, host,
                                                      methods: [...], version, started_at}
    REQUEST     ["", "TAC01", 0x02, key, request]   broker -> worker; key: opaque dispatch id
                                                      request: JSON {request_id, method, params,
                                                      dialect, compat, deadline}
    REPLY       ["", "TAC01", 0x03, key, meta, body] meta: JSON {status, error_code,
                                                      processing_time_ms}; body: the client
                                                      reply bytes, forwarded untouched
    HEARTBEAT   ["", "TAC01", 0x04, stats]           worker -> broker on the heartbeat socket;
                                                      stats: JSON counters (may be empty)
    HEARTBEAT   ["", "TAC01", 0x04]                  broker -> worker heartbeat socket
    DISCONNECT  ["", "TAC01", 0x05]                  either way: worker leaving (SIGTERM), or
                                                      broker telling an unknown worker to
                                                      re-register

Liveness: each side expects traffic from the other at least every ``interval``; after
``liveness`` intervals of silence the broker evicts the worker (re-dispatching its in-flight
request) and the worker reconnects with exponential back-off. A local supervisor also tells
the broker at once when it reaps a dead worker process, so local crashes are handled within
milliseconds rather than the heartbeat window.
"""

from __future__ import annotations

PROTOCOL = b"TAC01"
READY = b"\x01"
REQUEST = b"\x02"
REPLY = b"\x03"
HEARTBEAT = b"\x04"
DISCONNECT = b"\x05"

COMMAND_NAMES = {
    READY: "READY",
    REQUEST: "REQUEST",
    REPLY: "REPLY",
    HEARTBEAT: "HEARTBEAT",
    DISCONNECT: "DISCONNECT",
}

HEARTBEAT_IDENTITY_PREFIX = b"hb:"


def heartbeat_identity(worker_identity: bytes) -> bytes:
    return HEARTBEAT_IDENTITY_PREFIX + worker_identity


def is_handed_over(identity: bytes) -> bool:
    """True for a routing id libzmq made up itself (a zero byte and four more).

    Workers always set their identity (printable, never starting with a zero byte), so a
    made-up id on the backend means a connection whose identity a newer connection took over
    (``ROUTER_HANDOVER``): messages still queued on the old one arrive under such an id.
    """
    return len(identity) == 5 and identity[:1] == b"\x00"

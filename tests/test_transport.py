"""send_frames / recv_frames: the hot path's multipart send and receive, on real sockets over
loopback TCP, against what pyzmq's send_multipart / recv_multipart do."""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest
import zmq

from tacoreservice.protocol.transport import NOBLOCK, recv_frames, send_frames


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def _pair(ctx: zmq.Context) -> tuple[Any, Any]:
    a, b = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for sock in (a, b):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)  # a lost frame fails the test, never hangs it
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    return a, b


def _connected(a: zmq.Socket, b: zmq.Socket) -> None:
    """Wait until messages from ``a`` reach ``b``."""
    a.send(b"hello")
    assert b.recv() == b"hello"


@pytest.mark.parametrize(
    "frames",
    [
        [b"one"],
        [b"", b"head", b"x" * 70_000],
        [b"a", b"", b"", b"b" * 300],
    ],
)
def test_send_frames_and_recv_frames_carry_a_message_as_the_pyzmq_calls_do(
    ctx: zmq.Context, frames: list[bytes]
) -> None:
    a, b = _pair(ctx)
    _connected(a, b)
    send_frames(a, frames)
    a.send_multipart(frames)
    # Both arrive whole, frame for frame, whichever call sent or reads them.
    assert recv_frames(b) == frames
    assert b.recv_multipart() == frames
    b.send_multipart(frames)
    send_frames(b, frames)
    assert recv_frames(a) == frames
    assert recv_frames(a) == frames


def test_recv_frames_reads_one_message_and_leaves_the_next(ctx: zmq.Context) -> None:
    a, b = _pair(ctx)
    _connected(a, b)
    send_frames(a, [b"first", b"1"])
    send_frames(a, [b"second", b"2", b"two"])
    assert recv_frames(b) == [b"first", b"1"]
    assert b.recv_multipart() == [b"second", b"2", b"two"]


def test_recv_frames_without_blocking_reads_what_poll_reported_and_raises_again_on_nothing(
    ctx: zmq.Context,
) -> None:
    # The broker and the worker read the message poll woke them for this way, without
    # asking EVENTS first: it must come whole, and an empty socket must not block them.
    a, b = _pair(ctx)
    _connected(a, b)
    with pytest.raises(zmq.Again):
        recv_frames(b, NOBLOCK)
    send_frames(a, [b"", b"head", b"x" * 70_000])
    assert b.poll(5000) == zmq.POLLIN
    assert recv_frames(b, NOBLOCK) == [b"", b"head", b"x" * 70_000]
    with pytest.raises(zmq.Again):
        recv_frames(b, NOBLOCK)


def test_an_unroutable_send_fails_on_its_first_frame_and_leaves_nothing_behind(
    ctx: zmq.Context,
) -> None:
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.RCVTIMEO, 5000)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, 5000)
    dealer.setsockopt(zmq.IDENTITY, b"w1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send(b"ready")
    assert router.recv_multipart()[-1] == b"ready"
    with pytest.raises(zmq.ZMQError) as err:
        send_frames(router, [b"nobody", b"head", b"body"], NOBLOCK)
    assert err.value.errno == zmq.EHOSTUNREACH
    # The failed message left no frame queued: the next one reaches its worker intact.
    send_frames(router, [b"w1", b"head", b"body"], NOBLOCK)
    assert recv_frames(dealer) == [b"head", b"body"]


def test_a_socket_with_no_room_refuses_the_whole_message_at_its_first_frame(
    ctx: zmq.Context,
) -> None:
    a = ctx.socket(zmq.DEALER)  # no peer yet: a DEALER has nowhere to queue a message
    a.setsockopt(zmq.LINGER, 0)
    with pytest.raises(zmq.Again):
        send_frames(a, [b"head", b"body"], NOBLOCK)
    # Nothing of the refused message is left to go out ahead of the next one.
    b = ctx.socket(zmq.DEALER)
    b.setsockopt(zmq.LINGER, 0)
    b.setsockopt(zmq.RCVTIMEO, 5000)
    port = b.bind_to_random_port("tcp://127.0.0.1")
    a.connect(f"tcp://127.0.0.1:{port}")
    send_frames(a, [b"next", b"one"])
    assert recv_frames(b) == [b"next", b"one"]
    assert b.poll(100) == 0


def test_neither_runs_enum_code(ctx: zmq.Context) -> None:
    """Why the helpers exist: pyzmq's multipart calls run enum code (Flag.__or__ on every
    frame sent, an option lookup after every frame read) that costs more than the socket
    call. A revert to send_multipart / recv_multipart fails here."""
    a, b = _pair(ctx)
    _connected(a, b)
    frames = [b"", b"head", b"body"]

    def enum_calls(action: Callable[[], object]) -> list[str]:
        seen: list[str] = []

        def profile(frame: FrameType, event: str, arg: object) -> None:
            if event == "call" and frame.f_code.co_filename == enum.__file__:
                seen.append(frame.f_code.co_name)

        sys.setprofile(profile)
        try:
            action()
        finally:
            sys.setprofile(None)
        return seen

    # The probe sees enum code where pyzmq's own calls run it ...
    assert enum_calls(lambda: a.send_multipart(frames))
    assert enum_calls(b.recv_multipart)
    # ... and none in the helpers.
    assert enum_calls(lambda: send_frames(a, frames)) == []
    assert enum_calls(lambda: recv_frames(b)) == []

"""Hypothesis strategies for fuzzing the client protocol: frames, bodies, envelopes, sockets.

The test module (tests/test_fuzz.py) and the long run (bench/fuzz_protocol.py) share them, so
both explore the same space; only the number of examples differs.

Bodies are built as Python values and encoded by :func:`encode`, which also writes what a
JSON library will not: duplicated keys (:class:`Pairs`) and literal tokens (:class:`Raw`) such
as ``-0``, ``1e400``, ``18446744073709551616``, lone surrogates or broken syntax.

Methods that legitimately sleep, run in steps or kill their worker on purpose (``test.sleep``,
``test.steps``, ``test.crash``) are never generated: a case must not be a legitimate slow or
lethal request, or "no worker is lost" would test the test.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import strategies as st
from pydantic import TypeAdapter

from tacoreservice.service.registry import load_plugins, registry

__all__ = [
    "BROKER_METHODS",
    "LETHAL_METHODS",
    "FuzzCase",
    "Pairs",
    "Probe",
    "Raw",
    "deep_cases",
    "encode",
    "frame_cases",
    "rate_limit_cases",
    "request_cases",
    "sized_cases",
    "socket_cases",
    "probes",
]

LETHAL_METHODS = frozenset({"test.sleep", "test.steps", "test.crash"})
# Answered by the broker itself, not by a worker's registry.
BROKER_METHODS = (
    "health.check",
    "job.submit",
    "job.status",
    "job.result",
    "job.list",
    "job.cancel",
)
_LEGACY_ACTIONS = ("analyze_strategy", "generate_signal", "optimize_parameters")

load_plugins(["tests.support.test_methods"])
# Every method and params field the service registers, so random requests look like real
# ones often enough to get past the first check and into the handlers.
_METHODS = tuple(n for n in registry.names() if n not in LETHAL_METHODS) + BROKER_METHODS
_FIELDS = tuple(
    sorted(
        {
            name
            for n in _METHODS
            if (spec := registry.get(n))
            for name in spec.params_model.model_fields
        }
        | {"payload", "async", "detailed", "job_id", "method", "params", "state", "limit"}
    )
)


# ---------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Raw:
    """Bytes written verbatim where a JSON value goes."""

    token: bytes


@dataclass(frozen=True)
class Pairs:
    """A JSON object written from key/value pairs in order; keys may repeat."""

    items: tuple[tuple[str, Any], ...]


def encode(value: Any) -> bytes:
    """JSON text of ``value``; :class:`Raw` and :class:`Pairs` allow what JSON libraries refuse."""
    out: list[bytes] = []
    # Iterative: deep values are what we test, and must not stop the fuzzer itself.
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, Raw):
            out.append(item.token)
        elif isinstance(item, Pairs | dict):
            pairs = item.items if isinstance(item, Pairs) else tuple(item.items())
            parts: list[Any] = [b"{"]
            for i, (k, v) in enumerate(pairs):
                parts += [b"," if i else b"", orjson.dumps(k), b":", v]
            parts.append(b"}")
            stack.extend(reversed(parts))
        elif isinstance(item, list | tuple):
            parts = [b"["]
            for i, v in enumerate(item):
                parts += [b"," if i else b"", v]
            parts.append(b"]")
            stack.extend(reversed(parts))
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item).encode())  # any size: 2**64 and beyond
        else:
            out.append(orjson.dumps(item))
    return b"".join(out)


# ---------------------------------------------------------------------- values

ODD_NUMBERS = (
    b"-0",
    b"-0.0",
    b"0e0",
    b"1e308",
    b"-1e308",
    b"1e309",
    b"1E400",
    b"1e-400",
    b"5e-324",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1" * 400,
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"0x10",
)
ODD_STRINGS = (
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\\u0000"',
    b'"\xff\xfe"',
    b'"\xc3"',
    b'"\xed\xa0\x80"',
    b'"tab\there"',
    b'"\\x41"',
    b'"unterminated',
)
SYMBOLS = ("AAPL", "SPY", "BTCUSDT", "BTC/USDT", "btc-usdt", "600519", "600519.SH", "APPL", "", " ")

odd_numbers = st.sampled_from(ODD_NUMBERS).map(Raw)
odd_tokens = st.sampled_from(ODD_NUMBERS + ODD_STRINGS).map(Raw)
big_ints = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -(10**30)])
texts = st.text(max_size=24) | st.sampled_from(SYMBOLS + ("2024-03-28", "1900-01-01", "9999-12-31"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | big_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
# Values the service round-trips exactly (what a probe may echo): no token a parser may
# reinterpret.
echo_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(_FIELDS) | st.text(max_size=8)
    return (
        st.lists(inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4)
        | st.lists(st.tuples(keys, inner), max_size=4).map(lambda kv: Pairs(tuple(kv)))
    )


json_values = st.recursive(scalars | odd_numbers, _containers, max_leaves=12)
hostile_values = st.recursive(scalars | odd_tokens, _containers, max_leaves=12)


# ---------------------------------------------------------------------- request fields


def _near_misses(name: str) -> list[str]:
    return [name.upper(), f" {name}", f"{name} ", name.replace(".", "_"), f"{name}\x00", f"{name}."]


# Ids from the OS, not from hypothesis (whose uuids repeat across examples): a fresh id is one
# the oracle can hold to an exact answer.
fresh_ids = st.builds(lambda: str(uuid.uuid4()))


def _weighted(*branches: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """one_of with weights (hypothesis' one_of splits evenly between its branches)."""
    pool = [strategy for weight, strategy in branches for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


method_names = _weighted(
    (5, st.sampled_from(_METHODS)),
    (2, st.sampled_from(_METHODS).flatmap(lambda n: st.sampled_from(_near_misses(n)))),
    (2, st.text(max_size=20)),
    (1, st.sampled_from(["", "a" * 64, "a" * 65, "x.y", "..", "health", "job.", "测试.方法"])),
)
request_ids = _weighted(
    (6, fresh_ids),  # the reply can be checked exactly
    (1, st.builds(lambda t, u: f"{t}-{u}", st.text(max_size=40), fresh_ids)),
    (1, st.uuids().map(str)),  # hypothesis repeats these: ids reused by other requests
    (1, st.sampled_from(["", "a" * 128, "a" * 129, "r" * 1000, " ", "\x00", "请求-1"])),
    (
        2,
        st.integers()
        | st.floats(allow_nan=False)
        | st.booleans()
        | st.lists(st.integers(), max_size=2)
        | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
        | odd_numbers,
    ),
)
timeouts: st.SearchStrategy[Any] = st.sampled_from(
    [0, -1, 0.5, 1, 30_000, 86_400_000, 86_400_001, 2**63, 2**64]
) | st.sampled_from([Raw(b"1e308"), Raw(b"-0"), Raw(b"NaN"), "100", True, None, [], {}])
clients: st.SearchStrategy[Any] = st.sampled_from(
    [
        "scanner",
        "a" * 64,
        "a" * 65,
        "",
        "bad name",
        "ok-name_1.x",
        "scanner\n",
        "\nscanner",
        "scanner\r",
        "客户",
        "x/y",
        "\x00",
        5,
        None,
        [],
        {},
    ]
)


@st.composite
def params_objects(draw: st.DrawFn, values: st.SearchStrategy[Any] = json_values) -> Any:
    """A params value: mostly an object with the service's field names, sometimes not one."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)  # a list, a number, a string, null...
    keys = st.sampled_from(_FIELDS) | st.text(max_size=10)
    items = draw(st.lists(st.tuples(keys, values | st.sampled_from(SYMBOLS)), max_size=5))
    if draw(st.booleans()):
        items.append(("method", draw(st.sampled_from(_METHODS))))
    if draw(st.integers(0, 4)) == 0:
        items.append(("async", draw(st.sampled_from([True, False, 1, "true", None]))))
    return Pairs(tuple(items)) if draw(st.booleans()) else dict(items)


def _chance(draw: st.DrawFn, percent: int) -> bool:
    # Hypothesis leans towards the ends of a range, both of them: comparing against 1..100
    # keeps that lean from turning a rare choice into a common one.
    return draw(st.integers(1, 100)) <= percent


@st.composite
def request_objects(draw: st.DrawFn, values: st.SearchStrategy[Any] = json_values) -> Pairs:
    """A top-level request object: some fields right, some wrong, some missing, some twice."""
    items: list[tuple[str, Any]] = []
    if _chance(draw, 15):
        action: Any = draw(
            st.sampled_from(_LEGACY_ACTIONS)
            | st.sampled_from(_METHODS).map(lambda n: n.replace(".", "_", 1))
            | st.text(max_size=12)
            | st.sampled_from([5, None, "", [], "a" * 65])
        )
        items.append(("action", action))
    if _chance(draw, 85):
        items.append(("method", draw(_weighted((4, method_names), (1, values)))))
    if _chance(draw, 85):
        items.append(("request_id", draw(request_ids)))
    if _chance(draw, 80):
        items.append(("params", draw(params_objects(values))))
    if _chance(draw, 15):
        items.append(("timeout_ms", draw(timeouts)))
    if _chance(draw, 15):
        items.append(("client", draw(clients)))
    if _chance(draw, 20):
        items.append(("timestamp", "2025-01-01T00:00:00"))
    if _chance(draw, 20):
        items += draw(st.lists(st.tuples(st.text(max_size=8), values), min_size=1, max_size=2))
    items = draw(st.permutations(items))
    if items and _chance(draw, 15):  # a key twice: which one wins is the parser's
        key = draw(st.sampled_from([k for k, _ in items]))
        items.append((key, draw(method_names | request_ids | values)))
    return Pairs(tuple(items))


def _typed(annotation: Any) -> st.SearchStrategy[Any] | None:
    """Values of a params field's own type, as JSON would carry them; None when the type is
    not one hypothesis can build on its own (models with validators, Any)."""
    text = str(annotation)
    if "tacoreservice" in text or "Any" in text:
        return None
    adapter = TypeAdapter(annotation)
    return st.from_type(annotation).map(lambda v: adapter.dump_python(v, mode="json"))


def _field_values(name: str, annotation: Any) -> st.SearchStrategy[Any]:
    typed = _typed(annotation)
    branches: list[tuple[int, st.SearchStrategy[Any]]] = [(1, json_values)]
    if typed is not None:
        branches.append((3, typed))
    if "symbol" in name:
        branches.append((3, st.sampled_from(SYMBOLS) | st.lists(st.sampled_from(SYMBOLS))))
    return _weighted(*branches)


_FIELD_VALUES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    n: {f: _field_values(f, info.annotation) for f, info in spec.params_model.model_fields.items()}
    for n in _METHODS
    if (spec := registry.get(n)) is not None
}


@st.composite
def typed_params(draw: st.DrawFn, method: str) -> dict[str, Any]:
    fields = _FIELD_VALUES.get(method, {})
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True)) if fields else []
    return {f: draw(fields[f]) for f in chosen}


@st.composite
def plausible_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request a real client might send: a real method, its own field names with values of
    roughly the right types, a fresh id. These get past the broker into the handlers."""
    method = draw(st.sampled_from(sorted(_FIELD_VALUES)))
    params = draw(typed_params(method))
    kind = draw(st.integers(1, 10))
    if kind == 4:
        params["async"] = True
    obj: dict[str, Any] = {"request_id": draw(fresh_ids), "params": params}
    if _chance(draw, 15):
        obj["client"] = draw(clients)
    if kind == 5:
        obj["action"] = method.replace(".", "_", 1)
    elif kind == 6:
        obj["method"] = "job.submit"
        obj["params"] = {"method": method, "params": params}
    else:
        obj["method"] = method
    return obj


def _mutate(body: bytes, how: str, at: int, byte: int) -> bytes:
    if not body:
        return body
    i = at % len(body)
    if how == "truncate":
        return body[:i]
    if how == "flip":
        return body[:i] + bytes([byte]) + body[i + 1 :]
    if how == "insert":
        return body[:i] + bytes([byte]) + body[i:]
    if how == "bom":
        return b"\xef\xbb\xbf" + body
    if how == "trailing":
        return body + b" garbage"
    if how == "nul":
        return body + b"\x00"
    if how == "spaces":
        return b" \n\t" + body + b"\r\n "
    return body


@st.composite
def _mutated_bodies(draw: st.DrawFn) -> bytes:
    body = encode(draw(request_objects()))
    how = draw(st.sampled_from(["truncate", "flip", "insert", "bom", "trailing", "nul", "spaces"]))
    return _mutate(body, how, draw(st.integers(0, 10_000)), draw(st.integers(0, 255)))


# One frame: a plausible request, a request-like object, hostile JSON, or any of them damaged.
request_bodies = _weighted(
    (4, plausible_requests().map(encode)),
    (5, request_objects().map(encode)),
    (1, request_objects(hostile_values).map(encode)),
    (1, hostile_values.map(encode)),  # valid JSON of the wrong shape, or not JSON
    (2, _mutated_bodies()),
)


def echo_body(payload: Any, request_id: str | None = None) -> bytes:
    obj: dict[str, Any] = {"method": "test.echo", "params": {"payload": payload}}
    if request_id is not None:
        obj["request_id"] = request_id
    return orjson.dumps(obj)


# ---------------------------------------------------------------------- cases


@dataclass(frozen=True)
class FuzzCase:
    """What one example sends, and how.

    socket: ``req`` (REQ), ``dealer`` (DEALER, empty delimiter first) or ``bare`` (DEALER, no
    delimiter: the frames go as they are). mode: ``wait`` (read every reply), ``disconnect``
    (close before any reply comes), ``pirate`` (each message on a fresh socket, the earlier
    ones closed unread, as a Lazy Pirate client retries). ``then_valid``: after the fuzz
    messages, a well-formed test.echo on the same socket.
    """

    messages: tuple[tuple[bytes, ...], ...]
    socket: str = "dealer"
    mode: str = "wait"
    then_valid: bool = False
    note: str = field(default="", compare=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' report uses it
        printer.text(repr(self))

    def __repr__(self) -> str:  # falsifying examples stay readable with 64 KiB bodies
        def short(frame: bytes) -> str:
            return repr(frame) if len(frame) <= 200 else f"<{len(frame)} bytes {frame[:60]!r}...>"

        msgs = ", ".join("[" + ", ".join(short(f) for f in m) + "]" for m in self.messages)
        return (
            f"FuzzCase(socket={self.socket!r}, mode={self.mode!r}, then_valid={self.then_valid},"
            f" note={self.note!r}, messages=[{msgs}])"
        )


@dataclass(frozen=True)
class Probe:
    """The well-formed request sent after each case on a separate socket."""

    kind: str  # "echo" | "market"
    request_id: str
    payload: Any = None


# What str.isprintable() accepts: no control, format or separator characters but the space.
printable = st.characters(exclude_categories=("C", "Z")) | st.just(" ")


@st.composite
def probes(draw: st.DrawFn) -> Probe:
    # The uuid comes from the OS, not hypothesis: a probe's id must never repeat, even when
    # hypothesis replays an example.
    prefix = draw(st.text(printable, max_size=40))
    request_id = f"probe-{prefix}-{uuid.uuid4().hex}"
    if draw(st.integers(0, 4)) == 0:
        return Probe("market", request_id)
    return Probe("echo", request_id, draw(echo_values))


sockets = st.sampled_from(["req", "dealer", "bare"])


@st.composite
def frame_cases(draw: st.DrawFn) -> FuzzCase:
    """Multipart messages of 0-5 frames: random bytes, empty frames, bodies, in any envelope."""
    frame = (
        st.binary(max_size=64)
        | st.just(b"")
        | request_bodies
        | st.builds(echo_body, echo_values, fresh_ids)
    )
    messages = draw(st.lists(st.lists(frame, max_size=5).map(tuple), min_size=1, max_size=3))
    return FuzzCase(
        tuple(messages),
        socket=draw(sockets),
        mode=draw(st.sampled_from(["wait", "wait", "disconnect", "pirate"])),
        then_valid=draw(st.booleans()),
    )


@st.composite
def request_cases(draw: st.DrawFn) -> FuzzCase:
    """One JSON-ish body in one frame: wrong shapes, random methods and params, odd fields."""
    body = draw(request_bodies)
    return FuzzCase(((body,),), socket=draw(sockets), then_valid=draw(st.integers(0, 4)) == 0)


# The limits a deep document meets: the worker's max_params_depth (32), what orjson can
# encode for the worker (~254), Python's recursion limit (1000: any recursive walk in broker
# or worker code) and orjson's parser (1024).
_DEPTH_LIMITS = (32, 254, 1000, 1024)


@st.composite
def deep_values(draw: st.DrawFn) -> Raw:
    if draw(st.integers(0, 4)):
        depth = draw(st.sampled_from(_DEPTH_LIMITS)) + draw(st.integers(-12, 4))
    else:
        depth = draw(st.integers(1, 30_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"k":', b"}"), (b'[{"k":', b"}]")]))
    if opener == b'[{"k":':
        depth = max(1, depth // 2)
    leaf = draw(st.sampled_from([b"1", b'""', b"[]", b"{}", b"null"]))
    if opener == b'{"k":' and leaf in (b"[]", b"{}"):
        leaf = b"0"
    return Raw(opener * depth + leaf + closer * depth)


@st.composite
def deep_cases(draw: st.DrawFn) -> FuzzCase:
    """Nesting near and beyond each limit, in every place a value goes; often sent twice."""
    deep = draw(deep_values())
    rid = draw(fresh_ids | request_ids)
    # Broker-local methods weigh more: their params are handled in the broker process, whose
    # failure takes every client down, not in a worker.
    method = draw(
        st.sampled_from(
            ["job.submit", "job.submit", "job.status", "job.cancel", "health.check"]
            + ["test.echo", "get.market_data"]
        )
    )
    where = draw(
        st.sampled_from(
            ["payload", "extra_param", "extra_param", "top", "request_id", "body", "legacy"]
        )
    )
    inner: tuple[tuple[str, Any], ...] = (
        (("method", "test.echo"),) if method == "job.submit" else ()
    )
    if where == "payload":
        obj: Any = Pairs(
            (("method", method), ("request_id", rid), ("params", Pairs((("payload", deep),))))
        )
    elif where == "extra_param":
        params = Pairs((*inner, ("junk", deep)))
        obj = Pairs((("method", method), ("request_id", rid), ("params", params)))
    elif where == "top":
        obj = Pairs(
            (("method", method), ("request_id", rid), ("params", Pairs(inner)), ("x", deep))
        )
    elif where == "request_id":
        obj = Pairs((("method", method), ("request_id", deep)))
    elif where == "legacy":
        obj = Pairs(
            (("action", "test_echo"), ("request_id", rid), ("params", Pairs((("x", deep),))))
        )
    else:
        obj = deep
    body = encode(obj)
    copies = draw(st.sampled_from([1, 2, 2, 3]))  # mostly retried, as Lazy Pirate clients do
    mode = draw(st.sampled_from(["wait", "pirate"])) if copies > 1 else "wait"
    return FuzzCase(((body,),) * copies, socket=draw(sockets), mode=mode, note=f"deep {where}")


@st.composite
def sized_cases(draw: st.DrawFn, max_bytes: int) -> FuzzCase:
    """Bodies a few bytes either side of max_message_bytes and of the socket cap (4x)."""
    limit = draw(st.sampled_from([max_bytes, max_bytes, 4 * max_bytes]))
    target = limit + draw(st.integers(-64, 64))
    kind = draw(st.sampled_from(["echo", "echo", "garbage", "health_extra", "legacy"]))
    char = draw(st.sampled_from(["x", "é", "€", "𝄞", "\x00", '"']))
    rid = draw(fresh_ids)
    if kind == "garbage":
        filler = draw(st.sampled_from([b"x", b"{", b"\xff"]))
        body = filler * target
    else:
        if kind == "echo":
            shell = {"method": "test.echo", "request_id": rid, "params": {"payload": ""}}
        elif kind == "health_extra":
            shell = {"method": "health.check", "request_id": rid, "params": {}, "pad": ""}
        else:
            shell = {"action": "test_echo", "request_id": rid, "params": {"payload": ""}}
        overhead = len(orjson.dumps(shell))
        unit = len(orjson.dumps(char)) - 2
        text = char * max(0, (target - overhead) // unit)
        if kind == "health_extra":
            shell["pad"] = text
        else:
            shell["params"] = {"payload": text}
        body = orjson.dumps(shell)
    messages: tuple[tuple[bytes, ...], ...] = ((body,),)
    if draw(st.integers(0, 4)) == 0:
        messages = ((body, b"{}"),)  # the big frame plus one more
    return FuzzCase(messages, socket=draw(sockets), note=f"{kind} {len(body)} bytes")


@st.composite
def socket_cases(draw: st.DrawFn) -> FuzzCase:
    """Socket behaviour: send and vanish, retry on fresh sockets, garbage then a valid call."""
    mode = draw(st.sampled_from(["disconnect", "pirate", "wait"]))
    body = draw(request_bodies | st.builds(echo_body, echo_values, fresh_ids))
    if mode == "pirate":
        messages: tuple[tuple[bytes, ...], ...] = ((body,),) * draw(st.integers(2, 3))
    else:
        garbage = st.lists(st.binary(max_size=32) | request_bodies, min_size=1, max_size=3)
        messages = tuple((f,) for f in [*draw(garbage), body])
    return FuzzCase(messages, socket=draw(sockets), mode=mode, then_valid=mode == "wait")


@st.composite
def rate_limit_cases(draw: st.DrawFn) -> FuzzCase:
    """A burst from one connection: past the bucket of the test's service (100) often."""
    body = draw(request_bodies | st.builds(echo_body, echo_values, fresh_ids))
    count = draw(st.sampled_from([1, 10, 150, 450]) | st.integers(1, 500))
    return FuzzCase(((body,),) * count, socket="dealer", note=f"burst of {count}")

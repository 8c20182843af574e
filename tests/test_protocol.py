"""Request parsing and reply shapes of both client dialects."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.protocol.messages import (
    LEGACY,
    STANDARD,
    RequestRejected,
    build_error_reply,
    build_reply,
    json_dumps,
    parse_request,
)
from tacoreservice.security.keys import generate_keys


def test_standard_request_keeps_id_and_ignores_extra_keys() -> None:
    req = parse_request(
        b'{"method": "scan.market", "params": {"market": "US"}, "request_id": "r1",'
        b' "timestamp": "2025-01-01", "anything": 1}'
    )
    assert (req.request_id, req.method, req.params, req.dialect) == (
        "r1",
        "scan.market",
        {"market": "US"},
        STANDARD,
    )
    assert req.client_request_id and req.timeout_ms is None


def test_missing_id_and_params_get_defaults() -> None:
    req = parse_request(b'{"method": "health.check"}')
    assert req.request_id.startswith("tac-") and not req.client_request_id
    assert req.params == {}


def test_numeric_request_id_is_accepted_as_text() -> None:
    assert parse_request(b'{"method": "health.check", "request_id": 17}').request_id == "17"


@pytest.mark.parametrize(
    ("action", "method"),
    [
        ("analyze_strategy", "analyze.strategy"),
        ("generate_signal", "generate.signal"),
        ("optimize_parameters", "optimize.parameters"),
        ("get_market_data", "get.market_data"),
    ],
)
def test_legacy_actions_map_to_methods(action: str, method: str) -> None:
    req = parse_request(orjson.dumps({"action": action, "params": {}, "request_id": "t1"}))
    assert req.method == method and req.dialect == LEGACY


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", ErrorCode.PARSE_ERROR),
        (b"nan", ErrorCode.PARSE_ERROR),
        (b"[]", ErrorCode.INVALID_REQUEST),
        (b"{}", ErrorCode.INVALID_REQUEST),
        (b'{"method": ""}', ErrorCode.INVALID_REQUEST),
        (b'{"method": ["a"]}', ErrorCode.INVALID_REQUEST),
        (b'{"action": 3}', ErrorCode.INVALID_REQUEST),
        (b'{"method": "x", "params": "a"}', ErrorCode.INVALID_REQUEST),
        (b'{"method": "x", "timeout_ms": "soon"}', ErrorCode.INVALID_REQUEST),
        (b'{"method": "x", "timeout_ms": true}', ErrorCode.INVALID_REQUEST),
        (b'{"method": "x", "timeout_ms": 0}', ErrorCode.INVALID_REQUEST),
        (b'{"method": "x", "request_id": ""}', ErrorCode.INVALID_REQUEST),
        (b'{"method": "x", "request_id": "' + b"a" * 200 + b'"}', ErrorCode.INVALID_REQUEST),
    ],
)
def test_malformed_requests_are_rejected_with_stable_codes(body: bytes, code: ErrorCode) -> None:
    with pytest.raises(RequestRejected) as err:
        parse_request(body)
    assert err.value.code == code
    assert err.value.message


def test_rejection_keeps_known_request_id_and_dialect() -> None:
    with pytest.raises(RequestRejected) as err:
        parse_request(b'{"action": "analyze_strategy", "request_id": "L1", "params": 5}')
    assert err.value.request_id == "L1" and err.value.dialect == LEGACY


def test_standard_reply_with_compat() -> None:
    reply = orjson.loads(build_reply("r1", STANDARD, True, {"x": 1}, None, 1.23456, "w1"))
    assert reply["status"] == "success" and reply["data"] == reply["result"] == {"x": 1}
    assert reply["error"] is None and reply["worker_id"] == "w1"
    assert reply["processing_time_ms"] == 1.235 and "message" not in reply
    err = ServiceError(ErrorCode.INVALID_PARAMS, "bad symbol")
    reply = orjson.loads(build_error_reply(err, "r2", STANDARD, True, "w1"))
    assert reply["status"] == "error"
    assert reply["error"] == {"code": "INVALID_PARAMS", "message": "bad symbol"}
    assert reply["message"] == "bad symbol" and reply["result"] is None


def test_a_compat_reply_is_the_bytes_of_the_whole_reply_encoded_at_once() -> None:
    # "data" is encoded once and written twice: the bytes must be what encoding everything
    # (numpy scalars, sets, non-string keys, nesting) in one go gives.
    data = {"n": np.float64(1.5), "i": np.int64(3), "s": {3, 1}, 7: [{"x": None}], "t": "é"}
    raw = build_reply("r1", STANDARD, True, data, None, 2.5, "w1")
    reply = orjson.loads(raw)
    whole = {
        "status": "success",
        "request_id": "r1",
        "data": data,
        "error": None,
        "processing_time_ms": 2.5,
        "timestamp": reply["timestamp"],
        "worker_id": "w1",
        "result": data,
    }
    assert raw == json_dumps(whole)
    assert (
        reply["data"]
        == reply["result"]
        == {"n": 1.5, "i": 3, "s": [1, 3], "7": [{"x": None}], "t": "é"}
    )


def test_standard_reply_without_compat_has_only_spec_fields() -> None:
    reply = orjson.loads(build_reply("r1", STANDARD, False, 5, None, 0.0, "w"))
    assert set(reply) == {
        "status",
        "request_id",
        "data",
        "error",
        "processing_time_ms",
        "timestamp",
        "worker_id",
    }


def test_legacy_reply_shape() -> None:
    ok = orjson.loads(build_reply("t1", LEGACY, True, {"recommendation": "BUY"}))
    assert ok == {
        "success": True,
        "data": {"recommendation": "BUY"},
        "error": None,
        "timestamp": ok["timestamp"],
        "request_id": "t1",
    }
    err = ServiceError(ErrorCode.METHOD_NOT_FOUND, "no such method")
    bad = orjson.loads(build_error_reply(err, "t2", LEGACY, True))
    assert bad["success"] is False and bad["error"] == "no such method"
    assert bad["error_code"] == "METHOD_NOT_FOUND"


def test_sub_millisecond_timeout_is_still_a_deadline() -> None:
    assert parse_request(b'{"method": "health.check", "timeout_ms": 0.5}').timeout_ms == 1


def test_legacy_client_with_a_bad_request_id_gets_its_own_dialect() -> None:
    with pytest.raises(RequestRejected) as err:
        parse_request(b'{"action": "analyze_strategy", "request_id": "a\\nb"}')
    assert err.value.dialect == LEGACY and err.value.code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("name", ["scanner\n", "scan ner", "", "x" * 65, "../up"])
def test_client_names_match_the_whole_pattern(name: str) -> None:
    body = orjson.dumps({"method": "health.check", "client": name})
    with pytest.raises(RequestRejected) as err:
        parse_request(body)
    assert "client" in err.value.message
    with pytest.raises(ValueError):
        generate_keys("/nonexistent-never-written", [name])


# -- the worker's nesting limit, as a REQUEST from the wire reaches it ------------------------


def _nested(depth: int, text: str = "") -> dict[str, Any]:
    value: Any = text
    for _ in range(depth - 1):
        value = {"k": value}
    return {"payload": value}


@pytest.mark.parametrize(
    ("depth", "text", "refused"),
    [
        (32, "", False),  # at the limit: fewer brackets than the limit, no walk needed
        (33, "", True),  # one level past it
        (33, "{[{[" * 50, True),  # brackets inside strings only raise the bound
        (20, "{[{[" * 50, False),  # ... and then the walk says it is within the limit
    ],
)
def test_the_worker_refuses_params_nested_past_its_limit(
    depth: int, text: str, refused: bool
) -> None:
    import tests.support.test_methods  # noqa: F401 - registers test.echo
    from tacoreservice.cache import make_cache
    from tacoreservice.config import Settings
    from tacoreservice.protocol import worker_protocol as wp
    from tacoreservice.service.registry import MethodContext
    from tacoreservice.worker_runtime.worker import Worker

    settings = Settings()
    assert settings.worker.max_params_depth == 32
    worker = Worker(settings, worker_id="nesting-test")
    worker.method_ctx = MethodContext(
        settings=settings, cache=make_cache(settings.cache), worker_id="nesting-test"
    )
    params = _nested(depth, text)
    payload = wp.encode_request("rid-1", "test.echo", params, 0, True, None, None)
    _key, req = wp.decode_request(wp.request_head(b"12345678"), payload)
    assert req.nesting_bound is not None and req.nesting_bound >= depth
    ok, code, _ms, body = worker.handle(req)
    reply = orjson.loads(body)
    if refused:
        assert (ok, code) == (False, "INVALID_REQUEST")
        assert "nested deeper than 32 levels" in reply["error"]["message"]
    else:
        assert ok, reply
        assert reply["data"]["payload"] == params["payload"]

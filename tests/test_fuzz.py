"""Protocol fuzzing against a running broker: real processes, real sockets on loopback.

Each example sends fuzz messages (random frames, malformed and hostile JSON, wrong envelopes,
deep nesting, bodies at the size limits, sockets that vanish or retry), checks every reply
against the documented protocol (tests/support/fuzz_harness.py), then sends a well-formed
request on a separate socket and checks its answer exactly. After each property: the broker
is alive, the same worker processes serve, health is ok and the request log kept up.

The default run is short and reproducible (derandomized). Scale it with
``TACORE_FUZZ_EXAMPLES=N`` (examples per property) and ``TACORE_FUZZ_RANDOM=1`` (a fresh seed
each run); the long run is ``bench/fuzz_protocol.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.fuzz_harness import FuzzService, FuzzTarget, check_reply
from tests.support.fuzz_strategies import (
    FuzzCase,
    Probe,
    deep_cases,
    frame_cases,
    probes,
    rate_limit_cases,
    request_cases,
    sized_cases,
    socket_cases,
)
from tests.support.service import ServiceProcesses, raw_request

# Small, so that "huge" is cheap: bodies at 4x this are what libzmq itself refuses.
MAX_MESSAGE_BYTES = 65536
EXAMPLES = int(os.environ.get("TACORE_FUZZ_EXAMPLES", "0"))
# A small bucket, so that bursts of a few hundred requests run into it.
RATE_LIMIT_ENV = {
    "TACORE_RATE_LIMIT_ENABLED": "true",
    "TACORE_RATE_LIMIT_PER_S": "50",
    "TACORE_RATE_LIMIT_BURST": "100",
}
RANDOM = os.environ.get("TACORE_FUZZ_RANDOM", "") not in ("", "0")


def fuzz_settings(default_examples: int) -> settings:
    return settings(
        max_examples=EXAMPLES or default_examples,
        deadline=None,  # a real service on a shared 2-core machine
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=list(HealthCheck),
        # No shrinking: against a live service a "smaller" example can fail for another
        # reason (a dead broker fails everything); the harness reports the real cases.
        phases=[Phase.explicit, Phase.generate],
    )


@pytest.fixture(scope="module")
def main_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzService]:
    service = FuzzService(
        tmp_path_factory.mktemp("fuzz"),
        workers=2,
        max_bytes=MAX_MESSAGE_BYTES,
        rate_limited=False,
        TACORE_RATE_LIMIT_ENABLED="false",
    )
    yield service
    service.stop()


@pytest.fixture
def target(main_service: FuzzService) -> FuzzTarget:
    # A property that killed the broker fails; the next one gets a fresh service.
    return main_service.current()


@pytest.fixture(scope="module")
def rate_limited_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    service = FuzzService(
        tmp_path_factory.mktemp("fuzz-rl"),
        workers=1,
        max_bytes=MAX_MESSAGE_BYTES,
        rate_limited=True,
        **RATE_LIMIT_ENV,
    )
    yield service.current()
    service.stop()


def _fuzz(
    target: FuzzTarget,
    cases: st.SearchStrategy[FuzzCase],
    default_examples: int,
    must_see: tuple[str, ...],
) -> None:
    """Run one property, then check the service is intact and the cases reached ``must_see``
    (outcomes and events): a fuzzer stuck at the parser would pass without testing much."""
    before = target.stats.copy()

    @fuzz_settings(default_examples)
    @given(case=cases, probe=probes())
    def one_example(case: FuzzCase, probe: Probe) -> None:
        target.run_case(case)
        target.probe(probe)

    one_example()
    target.assert_intact()
    seen = target.stats - before
    assert seen["probes_ok"] == seen["cases"] > 0
    missing = [name for name in must_see if not seen[name]]
    assert not missing, (missing, dict(seen))


def test_random_frames_multipart_and_envelopes(target: FuzzTarget) -> None:
    _fuzz(
        target,
        frame_cases(),
        150,
        ("SUCCESS", "PARSE_ERROR", "INVALID_REQUEST", "sent_then_gone"),
    )


def test_json_bodies_wrong_shapes_odd_fields(target: FuzzTarget) -> None:
    _fuzz(
        target,
        request_cases(),
        300,
        ("SUCCESS", "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS"),
    )


def test_deep_nesting_near_and_beyond_limits(target: FuzzTarget) -> None:
    _fuzz(target, deep_cases(), 150, ("SUCCESS", "PARSE_ERROR", "INVALID_REQUEST"))


def test_sizes_around_message_and_socket_limits(target: FuzzTarget) -> None:
    _fuzz(
        target,
        sized_cases(MAX_MESSAGE_BYTES),
        80,
        ("SUCCESS", "PAYLOAD_TOO_LARGE", "dropped_by_socket_cap"),
    )


def test_vanishing_retrying_and_recovering_sockets(target: FuzzTarget) -> None:
    _fuzz(target, socket_cases(), 150, ("SUCCESS", "sent_then_gone"))


def test_bursts_with_rate_limiting_on(rate_limited_target: FuzzTarget) -> None:
    _fuzz(rate_limited_target, rate_limit_cases(), 25, ("SUCCESS", "RATE_LIMITED"))


def test_retried_job_submit_with_deeply_nested_extra_params_keeps_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Found by the fuzzer: the broker compared a retry's params with the cached ones
    recursively, and 1000 levels of nesting raised RecursionError in its loop: the broker
    process exited. Refusing such params, or answering the retry from the cache, are both
    fine; dying is not."""
    svc = ServiceProcesses(
        tmp_path_factory.mktemp("fuzz-deep-retry"), workers=1, TACORE_RATE_LIMIT_ENABLED="0"
    )
    svc.start_main()
    try:
        body = (
            b'{"method":"job.submit","request_id":"deep-retry","params":{"method":"test.echo",'
            b'"junk":' + b"[" * 1000 + b"]" * 1000 + b"}}"
        )
        first = raw_request(svc.endpoint, body)
        retry = raw_request(svc.endpoint, body)  # a Lazy Pirate retry: same id, same content
        for reply in (first, retry):
            _, outcome, _ = check_reply(orjson.dumps(reply))
            # job.submit does not read "junk": refused as an unknown param (issue 16).
            assert outcome in ("SUCCESS", "INVALID_REQUEST", "INVALID_PARAMS"), reply
            assert reply["request_id"] == "deep-retry"
        if first["status"] == retry["status"] == "success":
            assert retry["data"] == first["data"]  # the same job, not a second one
        assert retry["error"] == first["error"]  # a refusal is refused the same way again
        assert svc.main is not None and svc.main.poll() is None
        echo = raw_request(svc.endpoint, orjson.dumps({"method": "test.echo", "params": {}}))
        assert echo["status"] == "success"
    finally:
        svc.stop()


def test_client_name_with_a_trailing_newline_is_refused(target: FuzzTarget) -> None:
    """Found by the fuzzer: ``^...$`` with re.match lets "scanner\\n" through as a client name
    (``$`` also matches before a final newline), a name the rules say is invalid."""
    body = orjson.dumps({"method": "test.echo", "params": {}, "client": "scanner\n"})
    reply = raw_request(target.svc.endpoint, body)
    assert reply["status"] == "error", reply
    assert reply["error"]["code"] == "INVALID_REQUEST" and "client" in reply["error"]["message"]

"""A key a method does not read is refused, with the closest one named; the keys every client
generation adds are not."""

from __future__ import annotations

import pytest

from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.registry import (
    TOLERATED_KEYS,
    accepted_keys,
    load_plugins,
    registry,
    validate_params,
)

load_plugins()


def _spec(name: str):  # type: ignore[no-untyped-def]
    spec = registry.get(name)
    assert spec is not None
    return spec


def test_a_mistyped_key_is_refused_with_the_closest_one() -> None:
    with pytest.raises(ServiceError) as info:
        validate_params(_spec("get.market_data"), {"sybmol": "AAPL"})
    assert info.value.code == ErrorCode.INVALID_PARAMS
    message = info.value.message
    assert "unknown params.sybmol" in message and "did you mean symbol" in message
    assert "accepted:" in message and "history" in message
    assert info.value.details == {
        "errors": [{"field": "sybmol", "message": "unknown parameter", "type": "extra_forbidden"}]
    }


def test_megabytes_of_nothing_are_refused() -> None:
    with pytest.raises(ServiceError) as info:
        validate_params(_spec("get.market_data"), {"symbol": "AAPL", "pad": "x" * 1_000_000})
    assert info.value.code == ErrorCode.INVALID_PARAMS
    assert len(info.value.message) < 2_000  # names the key, never echoes its value


def test_what_every_client_generation_sends_is_accepted() -> None:
    extras = {key: "x" for key in TOLERATED_KEYS if key != "async"}
    model = validate_params(_spec("get.market_data"), {"symbol": "AAPL", **extras})
    assert model.symbol == "AAPL"  # type: ignore[attr-defined]
    # Documented aliases are keys the method reads.
    assert {"market", "market_type", "criteria", "filters"} <= accepted_keys(
        _spec("scan.market").params_model
    )
    validate_params(_spec("scan.market"), {"market_type": "stock", "filters": {"min_volume": 1}})

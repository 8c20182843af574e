"""Validated params reused for the same params (``reuse_params``): the same answer as a fresh
validation, never for a request that should be refused, never a model a handler could change,
and bounded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from tacoreservice.cache import make_cache
from tacoreservice.config import load_settings
from tacoreservice.protocol.errors import ErrorCode, ServiceError
from tacoreservice.service.registry import (
    MethodContext,
    MethodSpec,
    call_method,
    load_plugins,
    registry,
    reused_params,
    validate_params,
)

load_plugins()


def _spec(name: str) -> MethodSpec:
    spec = registry.get(name)
    assert spec is not None
    return spec


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    reused_params.clear()
    yield
    reused_params.clear()


def test_the_same_params_get_the_same_validated_model_and_the_same_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "t.db"))
    settings = load_settings()
    ctx = MethodContext(settings=settings, cache=make_cache(settings.cache))
    spec = _spec("get.market_data")
    first = validate_params(spec, {"symbol": "AAPL", "history": 2})
    again = validate_params(spec, {"symbol": "AAPL", "history": 2})
    assert again is first
    # Other params (another order of the same keys counts as other) are validated anew.
    other = validate_params(spec, {"history": 2, "symbol": "AAPL"})
    assert other is not first and other == first
    assert validate_params(spec, {"symbol": "MSFT"}).symbol == "MSFT"
    # The answer through the reused model is the answer through a fresh one.
    reused = call_method("get.market_data", {"symbol": "AAPL", "history": 2}, ctx)
    reused_params.clear()
    ctx.cache = make_cache(settings.cache)  # not answered from the first call's cache
    fresh = call_method("get.market_data", {"symbol": "AAPL", "history": 2}, ctx)
    assert reused == fresh and reused["symbol"] == "AAPL" and len(reused["history"]) == 2


def test_what_clients_add_to_every_request_does_not_split_the_key() -> None:
    spec = _spec("get.market_data")
    first = validate_params(spec, {"symbol": "AAPL", "timestamp": "2026-12-06T10:00:00.1Z"})
    again = validate_params(
        spec, {"symbol": "AAPL", "timestamp": "2026-12-06T10:00:01.2Z", "request_id": "r-9"}
    )
    assert again is first
    assert validate_params(spec, {"symbol": "MSFT", "timestamp": "x"}) is not first


def test_a_tolerated_key_the_model_reads_stays_in_the_key() -> None:
    class Sourced(BaseModel):
        model_config = ConfigDict(frozen=True)
        source: str = "any"

    spec = MethodSpec("t.sourced", Sourced, lambda p, c: None, reuse_params=True)
    a = validate_params(spec, {"source": "scanner"})
    b = validate_params(spec, {"source": "trader"})
    assert (a.source, b.source) == ("scanner", "trader")  # type: ignore[attr-defined]
    assert validate_params(spec, {"source": "scanner"}) is a


def test_a_model_refusing_extra_keys_refuses_a_tolerated_one_every_time() -> None:
    class Strict(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        x: int = 0

    spec = MethodSpec("t.strict", Strict, lambda p, c: None, reuse_params=True)
    kept = validate_params(spec, {"x": 1})
    assert validate_params(spec, {"x": 1}) is kept
    with pytest.raises(ServiceError) as info:
        validate_params(spec, {"x": 1, "timestamp": 5})
    assert info.value.code == ErrorCode.INVALID_PARAMS


def test_values_json_would_blur_are_never_keyed() -> None:
    # orjson writes NaN as null and a date as its ISO string: as keys they would match params
    # that validate differently (None and "2024-01-02" are valid as_of values; these are not).
    spec = _spec("get.market_data")
    validate_params(spec, {"symbol": "AAPL", "as_of": None})
    validate_params(spec, {"symbol": "AAPL", "as_of": "2024-01-02"})
    for odd in (float("nan"), float("inf"), date(2024, 1, 2)):
        assert reused_params.key(spec, {"symbol": "AAPL", "as_of": odd}) is None
        with pytest.raises(ServiceError) as info:
            validate_params(spec, {"symbol": "AAPL", "as_of": odd})
        assert info.value.code == ErrorCode.INVALID_PARAMS


def test_a_refused_request_is_refused_every_time() -> None:
    spec = _spec("get.market_data")
    for params in ({"symbol": ""}, {"sybmol": "AAPL"}, {"symbol": "AAPL", "symbols": ["X"]}):
        for _ in range(2):
            with pytest.raises(ServiceError) as info:
                validate_params(spec, params)
            assert info.value.code == ErrorCode.INVALID_PARAMS


def test_a_model_holding_a_list_is_validated_every_time() -> None:
    # Frozen or not, a list inside a shared model could be changed by one request's handler.
    spec = _spec("get.market_data")
    first = validate_params(spec, {"symbols": ["AAPL", "MSFT"]})
    assert validate_params(spec, {"symbols": ["AAPL", "MSFT"]}) is not first


def test_a_reused_model_cannot_be_changed() -> None:
    model = validate_params(_spec("get.market_data"), {"symbol": "AAPL"})
    with pytest.raises(ValueError, match="frozen"):
        model.symbol = "MSFT"  # type: ignore[misc]
    assert validate_params(_spec("get.market_data"), {"symbol": "AAPL"}).symbol == "AAPL"


def test_only_a_frozen_model_may_be_reused() -> None:
    class Loose(BaseModel):
        x: int = 0

    class Frozen(BaseModel):
        model_config = ConfigDict(frozen=True)
        x: int = 0

    with pytest.raises(ValueError, match="frozen params model"):
        MethodSpec("t.loose", Loose, lambda p, c: None, reuse_params=True)
    MethodSpec("t.frozen", Frozen, lambda p, c: None, reuse_params=True)
    MethodSpec("t.loose", Loose, lambda p, c: None)  # without reuse, any model


def test_params_that_cannot_be_keyed_are_validated_without_keeping() -> None:
    class Noted(BaseModel):
        model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
        note: object = None

    spec = MethodSpec("t.noted", Noted, lambda p, c: None, reuse_params=True)
    # Past the key size: not worth keeping.
    long = {"note": "n" * 600}
    assert validate_params(spec, long) is not validate_params(spec, long)
    # A value JSON cannot hold, as a caller in Python might pass.
    odd = {"note": object()}
    assert reused_params.key(spec, odd) is None
    assert validate_params(spec, odd).note is odd["note"]  # type: ignore[attr-defined]
    assert len(reused_params) == 0


def test_the_kept_models_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(reused_params), "MAX_ENTRIES", 3)
    spec = _spec("get.market_data")
    models = [validate_params(spec, {"symbol": s}) for s in ("AAPL", "MSFT", "NVDA", "TSLA")]
    assert len(reused_params) == 3
    # The first kept is the first dropped; the newest are still there.
    assert validate_params(spec, {"symbol": "AAPL"}) is not models[0]
    assert validate_params(spec, {"symbol": "TSLA"}) is models[3]


def test_a_method_without_reuse_validates_every_time() -> None:
    spec = _spec("analyze.stock")
    assert not spec.reuse_params
    first = validate_params(spec, {"symbol": "AAPL"})
    assert validate_params(spec, {"symbol": "AAPL"}) is not first
    assert len(reused_params) == 0

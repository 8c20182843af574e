"""CLI parameter parsing (the process-level CLI tests are in test_service.py)."""

from __future__ import annotations

import pytest
import typer

from tacoreservice.cli import parse_params


def test_key_value_pairs_parse_json_values_and_nest() -> None:
    params = parse_params(
        [
            "symbol=AAPL",
            "history=5",
            "criteria.min_volume=1000000",
            "criteria.price_range=[10,500]",
            "flag=true",
        ],
        None,
    )
    assert params == {
        "symbol": "AAPL",
        "history": 5,
        "criteria": {"min_volume": 1000000, "price_range": [10, 500]},
        "flag": True,
    }


def test_json_option_then_pairs_override() -> None:
    assert parse_params(["b=2"], '{"a": 1, "b": 1}') == {"a": 1, "b": 2}


def test_bad_pairs_are_refused() -> None:
    with pytest.raises(typer.BadParameter):
        parse_params(["no-equals-sign"], None)
    with pytest.raises(typer.BadParameter):
        parse_params([], "[1, 2]")

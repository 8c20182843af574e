"""The checked field types and the base model of everything that validates input: every
method's params (``service/``) and the domain's own requests (``trading/orders.py``).

It sits below both, importing only market data rules, so a domain model never leans on the
service layer; :mod:`tacoreservice.service.params` re-exports it for the method modules.

JSON carries more than a handler can take. orjson refuses the NaN / Infinity literals and
numbers beyond a double (``1e400``), but ``"NaN"`` as a string, ``1e308``, ``5e-324``,
``2**64 - 1``, a megabyte of text as a symbol or a date in the year 9999 all parse, and each
used to reach some handler (an overflow in a date shift, an integer SQLite cannot bind, a
division by a denormal). The models stop them instead, so the answer is INVALID_PARAMS naming
the field and the allowed range:

- :class:`ParamsModel` refuses non-finite floats and strings over 1,024 characters in every
  field of every model derived from it (all built-in methods).
- The types below bound each kind of number and give each kind of name a pattern and a
  maximum length. Symbols get their pattern from :mod:`tacoreservice.market_data.symbols`,
  dates their range from :mod:`tacoreservice.market_data.provider`: one rule each, wherever
  the value enters.
- Closed vocabularies (actions, order types, strategy names, markets, timeframes, engines)
  are checked by membership where they are parsed, which is stricter than any pattern.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from tacoreservice.market_data.provider import check_as_of_text
from tacoreservice.market_data.symbols import check_symbol_text

__all__ = [
    "MAX_CASH",
    "MAX_OFFSET",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "MIN_PRICE",
    "MIN_QUANTITY",
    "ClientOrderId",
    "DateText",
    "Identifier",
    "InitialCash",
    "MethodName",
    "Offset",
    "ParamsModel",
    "Price",
    "Quantity",
    "Symbol",
    "SymbolText",
]

# Bounds of the numbers a client may send. Above them a value is a unit or typing mistake
# (cents for dollars, a timestamp for a quantity); below MIN_* a positive number is a denormal
# that turns notionals and fees into 0 or infinity.
MAX_QUANTITY = 1e12
MIN_QUANTITY = 1e-8  # one satoshi: the smallest step any supported market trades
MAX_PRICE = 1e9
MIN_PRICE = 1e-8
MAX_CASH = 1e15
# SQLite binds integers up to 2**63 - 1; a page this far down is a bug on the client's side.
MAX_OFFSET = 10_000_000
MAX_STRING_LENGTH = 1024


class ParamsModel(BaseModel):
    """Base of every built-in params model: no NaN or infinity, no string over 1 KiB.

    Keys a model does not read are refused before it validates (service/registry.py:
    ``TOLERATED_KEYS`` lists the few every client generation adds, which are ignored).
    Subclasses may override any of these settings.
    """

    model_config = ConfigDict(
        allow_inf_nan=False,
        str_max_length=MAX_STRING_LENGTH,
        extra="ignore",
        populate_by_name=True,
    )


def _no_bool(value: Any) -> Any:
    # JSON true would otherwise count as 1 (a quantity of one share, a price of one dollar).
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {str(value).lower()}")
    return value


def _matching(pattern: str, rule: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise ValueError(f"{shown!r} is not allowed: use {rule}")
        return value

    return AfterValidator(check)


Symbol = Annotated[
    str,
    # Room for surrounding whitespace; check_symbol_text strips it and allows 32 characters.
    Field(max_length=64),
    AfterValidator(check_symbol_text),
]

# An item of a symbol list whose handler checks every item itself (normalize_symbol, the same
# rule) and names all bad ones in one error, with suggestions: only the size is bounded here.
SymbolText = Annotated[str, Field(min_length=1, max_length=64)]


_ID_RULE = "1 to 128 characters: ASCII letters, digits and . _ : -, starting with a letter or digit"
_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}"

# Ids the service hands out (ord-<hex>, job-<hex>) and exchanges' numeric order ids fit it;
# quotes, spaces, control characters and non-ASCII look-alikes do not.
Identifier = Annotated[str, Field(min_length=1, max_length=128), _matching(_ID_PATTERN, _ID_RULE)]
ClientOrderId = Identifier

MethodName = Annotated[
    str,
    Field(min_length=1, max_length=64),
    _matching(
        r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+",
        "a method name such as analyze.stock (lower-case words joined by dots, at most 64)",
    ),
]

DateText = Annotated[str, Field(max_length=40), AfterValidator(check_as_of_text)]

Quantity = Annotated[float, BeforeValidator(_no_bool), Field(ge=MIN_QUANTITY, le=MAX_QUANTITY)]
Price = Annotated[float, BeforeValidator(_no_bool), Field(ge=MIN_PRICE, le=MAX_PRICE)]
# An account's starting cash: below one currency unit it cannot buy anything.
InitialCash = Annotated[float, BeforeValidator(_no_bool), Field(ge=1.0, le=MAX_CASH)]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]

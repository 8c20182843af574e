"""The params building blocks of the method modules: the checked field types and the base
model, defined in :mod:`tacoreservice.fields` (the domain models use them too)."""

from tacoreservice.fields import (
    MAX_CASH,
    MAX_OFFSET,
    MAX_PRICE,
    MAX_QUANTITY,
    MIN_PRICE,
    MIN_QUANTITY,
    ClientOrderId,
    DateText,
    Identifier,
    InitialCash,
    MethodName,
    Offset,
    ParamsModel,
    Price,
    Quantity,
    Symbol,
    SymbolText,
)

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

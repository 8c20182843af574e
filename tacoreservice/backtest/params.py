"""Rule specifications: a rule's default parameters, which of them may be searched, within
which bounds, and the documented default search grid.

A :class:`RuleSpec` describes both the analysis strategies (``backtest.strategies``) and the
baselines (``backtest.baselines``), so the optimiser and the backtest treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Param", "RuleSpec", "faster_than"]


@dataclass(frozen=True)
class Param:
    """A searchable parameter: integer or float, with inclusive bounds."""

    kind: type[int] | type[float]
    lo: float
    hi: float

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        return f"{what} from {_num(self.lo)} to {_num(self.hi)}"

    def check(self, name: str, value: Any) -> int | float:
        """The value as this parameter's type; ``ValueError`` naming the rule when it is not."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")
        if self.kind is int:
            if float(value) != int(value):
                raise ValueError(f"{name} must be {self.describe()}, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if not self.lo <= value <= self.hi:
            raise ValueError(f"{name} must be {self.describe()}, got {_num(value)}")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class RuleSpec:
    """A rule: its defaults, its searchable parameters and its default grid."""

    name: str
    description: str
    parameters: dict[str, Any]
    bounds: dict[str, Param] = field(default_factory=dict)
    grid: dict[str, tuple[int | float, ...]] = field(default_factory=dict)
    # Returns why a combination is invalid (e.g. a fast average not faster than the slow one).
    constraint: Callable[[Mapping[str, Any]], str | None] | None = None
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults with ``overrides`` applied, checked; ``ValueError`` says what is wrong."""
        params = dict(self.parameters)
        for name, value in (overrides or {}).items():
            bound = self.bounds.get(name)
            if bound is None:
                if name in self.parameters and value == self.parameters[name]:
                    continue  # a fixed setting passed back as it is (a resolved set)
                searchable = ", ".join(self.bounds) or "none"
                raise ValueError(
                    f"{name!r} is not a parameter of {self.name}; its parameters: {searchable}"
                )
            params[name] = bound.check(name, value)
        why = self.constraint(params) if self.constraint is not None else None
        if why:
            raise ValueError(f"{self.name}: {why}")
        return params

    def invalid(self, params: Mapping[str, Any]) -> str | None:
        """Why ``params`` (already typed) is not a valid combination, or None."""
        return self.constraint(params) if self.constraint is not None else None


def faster_than(fast: str, slow: str) -> Callable[[Mapping[str, Any]], str | None]:
    """A constraint: parameter ``fast`` must be below parameter ``slow``."""

    def check(p: Mapping[str, Any]) -> str | None:
        if p[fast] >= p[slow]:
            return f"{fast} ({_num(p[fast])}) must be below {slow} ({_num(p[slow])})"
        return None

    return check

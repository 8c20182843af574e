"""The method registry: one function per method, each with a pydantic params model.

This is the transport-agnostic business layer. ZeroMQ workers, the CLI and (later) the HTTP
API all call :func:`call_method`; none of them knows how a method is computed.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import AliasChoices, BaseModel, ValidationError

from tacoreservice.protocol.errors import ErrorCode, ServiceError, did_you_mean

if TYPE_CHECKING:
    from tacoreservice.cache import Cache
    from tacoreservice.config import Settings
    from tacoreservice.market_data import MarketDataProvider

__all__ = [
    "Cancelled",
    "MethodContext",
    "MethodSpec",
    "method",
    "registry",
    "call_method",
    "load_plugins",
]

P = TypeVar("P", bound=BaseModel)
Handler = Callable[[Any, "MethodContext"], Any]


class Cancelled(ServiceError):
    """Raised inside a handler when its job was cancelled; the job ends as 'cancelled'."""

    def __init__(self, message: str = "the job was cancelled"):
        super().__init__(ErrorCode.CANCELLED, message)


def _no_progress(stage: str, percent: float, detail: dict[str, Any] | None = None) -> None:
    return None


def _never_cancelled() -> bool:
    return False


@dataclass
class MethodContext:
    """What a handler may use besides its params. Built once per worker process."""

    settings: Settings
    cache: Cache
    worker_id: str = "local"
    request_id: str = ""
    deadline: float | None = None  # time.time() by which the caller stops waiting
    # Long handlers report progress (stage name, 0-100, optional detail such as per-role
    # state) and check for cancellation between steps. Outside a job both are no-ops.
    progress: Callable[[str, float, dict[str, Any] | None], None] = field(
        default=_no_progress, repr=False
    )
    cancelled: Callable[[], bool] = field(default=_never_cancelled, repr=False)
    # The caller encodes results with orjson (a worker writing its reply): a handler may then
    # return JSON it already holds as bytes (a cached answer) as an ``orjson.Fragment``,
    # which is written as it is, instead of decoding it only to have it encoded again.
    encoded_results: bool = False
    _provider: MarketDataProvider | None = field(default=None, repr=False)

    def check_cancelled(self) -> None:
        """Call between steps of a long computation; raises :class:`Cancelled`."""
        if self.cancelled():
            raise Cancelled()

    @property
    def market_data(self) -> MarketDataProvider:
        if self._provider is None:
            from tacoreservice.market_data import load_provider

            self._provider = load_provider(self.settings.market_data)
        return self._provider


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params_model: type[BaseModel]
    handler: Handler
    aliases: tuple[str, ...] = ()
    description: str = ""
    # Validated params may be handed to the handler again for the same params: see
    # _ReusedParams. Only for a frozen model whose validation reads nothing but the params.
    reuse_params: bool = False

    def __post_init__(self) -> None:
        if self.reuse_params and not self.params_model.model_config.get("frozen"):
            raise ValueError(
                f"method {self.name!r}: reuse_params needs a frozen params model, since "
                "every request with the same params gets the same instance"
            )


class MethodRegistry:
    def __init__(self) -> None:
        self._methods: dict[str, MethodSpec] = {}

    def register(self, spec: MethodSpec) -> None:
        for name in (spec.name, *spec.aliases):
            existing = self._methods.get(name)
            if existing is not None and existing.handler is not spec.handler:
                raise ValueError(f"method {name!r} is registered twice")
            self._methods[name] = spec

    def get(self, name: str) -> MethodSpec | None:
        return self._methods.get(name)

    def names(self) -> list[str]:
        return sorted(self._methods)


registry = MethodRegistry()


def method(
    name: str,
    params_model: type[P],
    *,
    aliases: tuple[str, ...] = (),
    description: str = "",
    reuse_params: bool = False,
) -> Callable[[Callable[[P, MethodContext], Any]], Callable[[P, MethodContext], Any]]:
    """Register ``fn(params, ctx) -> data`` as the handler of ``name``.

    ``reuse_params``: the params model is frozen and its validation depends on the params
    alone (no clock, no settings), so a request with the same params may skip it.
    """

    def decorate(fn: Callable[[P, MethodContext], Any]) -> Callable[[P, MethodContext], Any]:
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        registry.register(MethodSpec(name, params_model, fn, aliases, doc, reuse_params))
        return fn

    return decorate


# A field path holds the client's own dict keys: a megabyte key must not make a megabyte reply.
_MAX_PATH_PART = 40
# One wrong field in each of 500 list items is one mistake, not 500 details worth sending back.
_MAX_ERROR_DETAILS = 20
# A validator that quotes the bad value must not send a 100 kB value back either.
_MAX_MESSAGE = 500


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = (str(p) for p in loc)
    return (
        ".".join(p if len(p) <= _MAX_PATH_PART else p[:_MAX_PATH_PART] + "..." for p in parts)
        or "params"
    )


# Keys the system's client generations put into params beside a method's own (a send time, the
# caller's name, its request id again; "async" asks for a job): accepted by every method and
# ignored. Any other key a method does not know is refused, so a typo is not silently dropped
# and no request carries megabytes of nothing.
TOLERATED_KEYS = frozenset(
    {"timestamp", "client", "client_id", "request_id", "source", "version", "async"}
)

_ACCEPTED: dict[type[BaseModel], frozenset[str]] = {}


def accepted_keys(model: type[BaseModel]) -> frozenset[str]:
    """The params keys ``model`` reads: its fields' names and every alias."""
    keys = _ACCEPTED.get(model)
    if keys is None:
        names: set[str] = set()
        for name, info in model.model_fields.items():
            names.add(name)
            if info.alias:
                names.add(info.alias)
            alias = info.validation_alias
            if isinstance(alias, str):
                names.add(alias)
            elif isinstance(alias, AliasChoices):
                names.update(c for c in alias.choices if isinstance(c, str))
        keys = _ACCEPTED[model] = frozenset(names)
    return keys


def _refuse_unknown_keys(spec: MethodSpec, params: dict[str, Any]) -> None:
    model = spec.params_model
    if model.model_config.get("extra") == "allow":
        return
    known = accepted_keys(model)
    unknown = [k for k in params if k not in known and k not in TOLERATED_KEYS]
    if not unknown:
        return
    first = unknown[0]
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    shown = first if len(first) <= 40 else first[:40] + "..."
    raise ServiceError(
        ErrorCode.INVALID_PARAMS,
        f"{spec.name}: unknown params.{shown}{did_you_mean(first, known)}{more}; "
        f"accepted: {', '.join(sorted(known)) or '(none)'}",
        {
            "errors": [
                {"field": k[:64], "message": "unknown parameter", "type": "extra_forbidden"}
                for k in unknown[:_MAX_ERROR_DETAILS]
            ]
        },
    )


class _ReusedParams:
    """Params models already validated, by params model and params bytes, for the methods
    registered with ``reuse_params``.

    Why: a client polling a quote sends the same params again and again, and pydantic's
    validation is the largest step of such a request in a worker (about 9 us warm, 30 us
    when the worker has been idle and its caches are cold). Only a valid model whose field
    values are all immutable is kept (a frozen model with a list inside could still be
    changed by its handler); an invalid request is validated, and refused, every time.
    Bounded: the first kept is the first dropped.
    """

    MAX_ENTRIES = 1024
    MAX_KEY_BYTES = 512  # a long symbol list is not worth keeping

    def __init__(self) -> None:
        self._models: dict[tuple[type, bytes], BaseModel] = {}
        self._lock = threading.Lock()  # an application embedding the service may call on threads

    @classmethod
    def key(cls, spec: MethodSpec, params: dict[str, Any]) -> tuple[type, bytes] | None:
        """The params' key, or None when they are not kept: a value other than a string, a
        whole number, a finite float, a bool or null (orjson would write a NaN as null and a
        date as a string, so two params that validate differently could share bytes), or too
        long."""
        for value in params.values():
            kind = type(value)
            if kind not in _KEYABLE or (kind is float and not math.isfinite(value)):
                return None
        model = spec.params_model
        if not TOLERATED_KEYS.isdisjoint(params) and model.model_config.get("extra") in (
            None,
            "ignore",
        ):
            # What some client generations add to every request (a timestamp, a request id)
            # changes each time and is ignored unless the model reads it: not part of the key.
            read = accepted_keys(model)
            params = {k: v for k, v in params.items() if k not in TOLERATED_KEYS or k in read}
        raw = orjson.dumps(params)
        return (model, raw) if len(raw) <= cls.MAX_KEY_BYTES else None

    def get(self, key: tuple[type, bytes]) -> BaseModel | None:
        return self._models.get(key)

    def keep(self, key: tuple[type, bytes], model: BaseModel) -> None:
        if not all(isinstance(v, _IMMUTABLE) for v in model.__dict__.values()):
            return
        with self._lock:
            if len(self._models) >= self.MAX_ENTRIES:
                del self._models[next(iter(self._models))]
            self._models[key] = model

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


_IMMUTABLE = (str, int, float, bool, bytes, type(None))
_KEYABLE = frozenset({str, int, float, bool, type(None)})
reused_params = _ReusedParams()


def validate_params(spec: MethodSpec, params: dict[str, Any]) -> BaseModel:
    key = reused_params.key(spec, params) if spec.reuse_params else None
    if key is not None:
        model = reused_params.get(key)
        if model is not None:
            return model
    model = _validate(spec, params)
    if key is not None:
        reused_params.keep(key, model)
    return model


def _validate(spec: MethodSpec, params: dict[str, Any]) -> BaseModel:
    _refuse_unknown_keys(spec, params)
    try:
        return spec.params_model.model_validate(params)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        fields = [
            {"field": _field_path(e["loc"]), "message": _short(e["msg"]), "type": e["type"]}
            for e in errors[:_MAX_ERROR_DETAILS]
        ]
        first = fields[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ServiceError(
            ErrorCode.INVALID_PARAMS,
            f"{spec.name}: invalid params.{first['field']}: {first['message']}{more}",
            {"errors": fields},
        ) from None


def call_method(name: str, params: dict[str, Any], ctx: MethodContext) -> Any:
    """Validate ``params`` and run the method; raises :class:`ServiceError` on bad input."""
    spec = registry.get(name)
    if spec is None:
        raise ServiceError(
            ErrorCode.METHOD_NOT_FOUND,
            f"unknown method {name!r}; available: {', '.join(registry.names())}",
        )
    model = validate_params(spec, params)
    return spec.handler(model, ctx)


_BUILTIN_METHOD_MODULES = (
    "tacoreservice.service.methods.market_data",
    "tacoreservice.service.methods.scan",
    "tacoreservice.service.methods.analysis",
    "tacoreservice.service.methods.risk",
    "tacoreservice.service.methods.trading",
    "tacoreservice.service.methods.optimize",
    "tacoreservice.service.methods.backtest",
    "tacoreservice.service.methods.strategy_request",
)


def load_plugins(extra: list[str] | tuple[str, ...] = ()) -> None:
    """Import the built-in method modules and any plugin modules (which register on import)."""
    for module in (*_BUILTIN_METHOD_MODULES, *extra):
        importlib.import_module(module)

"""Transport-agnostic business layer: the method registry and the method modules."""

from tacoreservice.service.registry import (
    MethodContext,
    call_method,
    load_plugins,
    method,
    registry,
)

__all__ = ["MethodContext", "call_method", "load_plugins", "method", "registry"]

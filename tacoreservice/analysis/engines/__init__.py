"""Analysis engines, chosen by name: ``quant`` (default), ``llm`` and ``tradingagents``.

Each engine turns an :class:`~tacoreservice.analysis.graph.AnalysisRequest` into the decision
shape. ``quant`` needs nothing beyond the package; ``llm`` needs the ``openai`` package (extra
``tacoreservice[llm]``) and an endpoint; ``tradingagents`` needs TradingAgents or
TradingAgents-CN. Optional engines are imported only when chosen, and a missing dependency is
an ``ENGINE_UNAVAILABLE`` error that says what to install.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

import orjson

# The engine interface is defined beside the pipeline that drives it (graph.py imports nothing
# of this package); it is re-exported here, where engines are chosen.
from tacoreservice.analysis.graph import AnalysisEngine
from tacoreservice.protocol.errors import ErrorCode, InvalidParams, ServiceError

if TYPE_CHECKING:
    from tacoreservice.config import Settings

__all__ = ["ENGINES", "AnalysisEngine", "clear_engines", "load_engine"]

# name -> (module, class, extra that provides its dependencies)
ENGINES: dict[str, tuple[str, str, str | None]] = {
    "quant": ("tacoreservice.analysis.engines.quant", "QuantEngine", None),
    "llm": ("tacoreservice.analysis.engines.llm", "LLMEngine", "llm"),
    "tradingagents": (
        "tacoreservice.analysis.engines.tradingagents_adapter",
        "TradingAgentsEngine",
        None,
    ),
}


_engines: dict[tuple[str, bytes], AnalysisEngine] = {}
_lock = threading.Lock()


def clear_engines() -> None:
    with _lock:
        _engines.clear()


def load_engine(name: str, settings: Settings) -> AnalysisEngine:
    """The engine called ``name`` for these settings, built once per process.

    Engines hold per-process state worth keeping (the LLM engine's HTTP client, the
    TradingAgents graphs), so they are cached by name and the settings they read.
    """
    key_name = str(name).strip().lower()
    spec = ENGINES.get(key_name)
    if spec is None:
        raise InvalidParams(
            f"unknown engine {name!r}; use one of {', '.join(ENGINES)}",
            {"engine": name, "valid": list(ENGINES)},
        )
    relevant = {"analysis": settings.analysis.model_dump(), "llm": settings.llm.model_dump()}
    key = (key_name, orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS))
    with _lock:
        found = _engines.get(key)
    if found is not None:
        return found
    module_name, class_name, _extra = spec
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # an engine module whose own import needs an extra
        raise ServiceError(
            ErrorCode.ENGINE_UNAVAILABLE,
            f"analysis engine {key_name!r} cannot be loaded: {exc}",
            {"engine": key_name},
        ) from None
    engine: AnalysisEngine = getattr(module, class_name)(settings)
    with _lock:
        # Another thread may have built one meanwhile; keep the first so state is shared.
        return _engines.setdefault(key, engine)

"""Analysis: evidence computed from real, point-in-time market data (and the roles built on it)."""

from tacoreservice.analysis.evidence import compute_evidence
from tacoreservice.analysis.universe import universe_features

__all__ = ["compute_evidence", "universe_features"]

# The multi-agent analysis (roles, graph, engines).
from tacoreservice.analysis.engines import AnalysisEngine, load_engine  # noqa: E402
from tacoreservice.analysis.graph import AnalysisRequest, Hooks, run_analysis  # noqa: E402

__all__ += ["AnalysisEngine", "AnalysisRequest", "Hooks", "load_engine", "run_analysis"]

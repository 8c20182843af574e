"""Backtests: the vectorised long/flat engine, the rule baselines, the analysis engine's daily
decisions, side-by-side comparisons, the universe run and the parameter optimiser.

Modules are imported where they are used (``from tacoreservice.backtest.engine import ...``):
this package imports nothing on its own, because ``analysis.strategies`` builds on the engine
and the catalogue of rules builds on ``analysis.strategies``.
"""

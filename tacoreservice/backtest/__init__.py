"""Backtests: the vectorised long/flat engine, the rule strategies of ``analyze.strategy``
and the baselines, the analysis engine's daily decisions, side-by-side comparisons, the
universe run and the parameter optimiser.

Modules are imported where they are used (``from tacoreservice.backtest.engine import ...``):
this package imports nothing on its own. The rule strategies live here, beside the engine they
run on, so ``analysis`` never imports ``backtest`` (``backtest`` runs the analysis engine).
"""

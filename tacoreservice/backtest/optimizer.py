"""Parameter search over the vectorised backtest, with out-of-sample validation.

``optimize`` searches one rule's parameters (:data:`tacoreservice.backtest.rules.RULES`) on
one or more symbols and reports the best set with its in-sample and out-of-sample figures.

* Space: ``{name: [values]}`` or ``{name: {min, max, step}}``; parameters left out stay at
  their default. Without a space, the rule's documented default grid. Combinations the rule
  forbids (a fast average not faster than the slow one) are skipped, not evaluated.
* An evaluation is one parameter set backtested on every symbol (and every fold). The grid
  is refused, before anything runs, when it holds more sets than ``max_evaluations``.
* Methods: ``grid`` tries every set; ``scipy`` runs ``scipy.optimize.differential_evolution``
  over the box spanned by the space (integer parameters stay integers through
  ``integrality``), seeded for reproducibility, within the same evaluation budget.
* Objectives, all maximised: ``sharpe_ratio``, ``total_return``, ``calmar_ratio``, and
  ``max_drawdown`` (a negative fraction, so maximising it minimises the drawdown's
  magnitude). With several symbols the objective is the mean of the per-symbol figures. A set
  that never holds a position in the training data ranks last whatever the objective: it
  has no drawdown and tells nothing.
* Validation: ``train_ratio`` splits each symbol's bars in the range into an in-sample head
  and an out-of-sample tail; the search sees only the head. Walk-forward with ``folds = k``
  cuts the range into k + 1 equal blocks and, for fold i, searches on blocks 0..i-1
  (anchored) and tests on block i; the out-of-sample figures are those of the stitched test
  blocks, each traded with its own fold's winner, and ``best_params`` are the last fold's.
  Every segment is traded as its own account, starting in cash.
* Warnings: ``out-of-sample Sharpe X is far below in-sample Y`` when the out-of-sample Sharpe
  is below half the in-sample one, or negative while the in-sample one is positive (the
  usual sign that the search fitted noise); also when the winner sits on the edge of the
  searched values, never traded out of sample, or the out-of-sample part is short.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from tacoreservice.backtest.engine import STATISTICS, simulate, statistics, trade_summary
from tacoreservice.backtest.params import RuleSpec
from tacoreservice.backtest.rules import RULES, rule_positions
from tacoreservice.market_data.provider import Bars
from tacoreservice.protocol.errors import DataUnavailable, InvalidParams

__all__ = [
    "MAX_EVALUATIONS_LIMIT",
    "OBJECTIVES",
    "OOS_SHARPE_WARNING_RATIO",
    "Series",
    "build_space",
    "optimize",
]

OBJECTIVES: tuple[str, ...] = ("sharpe_ratio", "total_return", "max_drawdown", "calmar_ratio")
# Out-of-sample Sharpe below this fraction of the in-sample Sharpe draws a warning.
OOS_SHARPE_WARNING_RATIO = 0.5
# Fewer out-of-sample bars than this per symbol makes its figures noise; say so.
SHORT_OOS_BARS = 20
MIN_SEGMENT_BARS = 5
# The most evaluations one request may ask for (about a minute of grid on three symbols).
MAX_EVALUATIONS_LIMIT = 20_000
# Parameter sets a grid may list per parameter, whatever the cap (a typo like step 1e-9).
MAX_VALUES_PER_PARAM = 10_000
WARNING_RULE = (
    "a warning when the out-of-sample Sharpe is below "
    f"{OOS_SHARPE_WARNING_RATIO:.0%} of the in-sample Sharpe, or negative while it is positive"
)

Segment = tuple[int, int]  # first and last bar index of the periods traded


@dataclass(frozen=True)
class Series:
    """One symbol's bars and the range [first, last] the search may use."""

    symbol: str
    bars: Bars
    ppy: float
    first: int
    last: int

    @property
    def periods(self) -> int:
        return self.last - self.first + 1


# --- the search space ---------------------------------------------------------------------


def _range_values(
    spec: RuleSpec, name: str, entry: Mapping[str, Any], grid: bool
) -> list[int | float]:
    bound = spec.bounds[name]
    unknown = set(entry) - {"min", "max", "step"}
    if unknown or "min" not in entry or "max" not in entry:
        raise InvalidParams(
            f"param_space.{name} must be a list of values or {{min, max, step}}, "
            f"got keys {sorted(entry)}"
        )
    lo = bound.check(f"param_space.{name}.min", entry["min"])
    hi = bound.check(f"param_space.{name}.max", entry["max"])
    if lo > hi:
        raise InvalidParams(f"param_space.{name}: min {lo} is above max {hi}")
    if not grid and "step" not in entry:
        return [lo, hi]  # scipy searches the box; it needs no step
    step = entry.get("step", 1 if bound.kind is int else None)
    if step is None or isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
        raise InvalidParams(
            f"param_space.{name}.step must be a positive number (a grid needs it for a "
            f"float parameter), got {step!r}"
        )
    if bound.kind is int and float(step) != int(step):
        raise InvalidParams(f"param_space.{name}.step must be an integer, got {step!r}")
    span = (hi - lo) / step  # infinite for a denormal step, and floor(inf) raises
    count = math.floor(span + 1e-9) + 1 if math.isfinite(span) else None
    if count is None or count > MAX_VALUES_PER_PARAM:
        raise InvalidParams(
            f"param_space.{name} spans {'too many' if count is None else f'{count:,}'} values; "
            f"at most {MAX_VALUES_PER_PARAM:,} per parameter (use a larger step)",
            {"param": name, "values": count},
        )
    if bound.kind is int:
        return list(range(int(lo), int(hi) + 1, int(step)))
    return [round(lo + i * step, 10) for i in range(count)]


def build_space(
    spec: RuleSpec, param_space: Mapping[str, Any] | None, grid: bool = True
) -> dict[str, list[int | float]]:
    """The values to search per parameter, checked against the rule's bounds. For a scipy
    search (``grid=False``) a range needs no step: only its ends matter."""
    if not spec.bounds:
        raise InvalidParams(
            f"{spec.name} has no parameters to optimise; choose another strategy_type"
        )
    raw = param_space if param_space else spec.grid
    space: dict[str, list[int | float]] = {}
    for name, entry in raw.items():
        if name not in spec.bounds:
            raise InvalidParams(
                f"param_space.{name} is not a parameter of {spec.name}; its parameters: "
                f"{', '.join(spec.bounds)}",
                {"param": name, "valid": list(spec.bounds)},
            )
        if isinstance(entry, Mapping):
            values = _range_values(spec, name, entry, grid)
        elif isinstance(entry, list | tuple):
            if not entry:
                raise InvalidParams(f"param_space.{name} is an empty list; give at least one value")
            try:
                values = [spec.bounds[name].check(f"param_space.{name}", v) for v in entry]
            except ValueError as exc:
                raise InvalidParams(str(exc)) from None
        else:
            raise InvalidParams(
                f"param_space.{name} must be a list of values or {{min, max, step}}, "
                f"got {type(entry).__name__}"
            )
        space[name] = sorted(set(values))
    return space


def _space_size(space: Mapping[str, list[Any]]) -> int:
    return math.prod(len(v) for v in space.values())


# --- evaluation ------------------------------------------------------------------------------


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _rounded(stats: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in stats.items():
        if isinstance(v, float):
            out[k] = round(v, 4 if k in ("sharpe_ratio", "calmar_ratio") else 6)
        else:
            out[k] = v
    return out


def _segment_stats(series: Series, position: np.ndarray, seg: Segment, cost: float) -> dict:
    sim = simulate(series.bars, position, ppy=series.ppy, cost=cost, first=seg[0], last=seg[1])
    stats: dict[str, Any] = dict(statistics(sim.returns, series.ppy))
    stats.update(trade_summary(sim))
    stats["bars"] = len(sim)
    stats["start"] = str(np.datetime_as_string(sim.times[0], unit="D"))
    stats["end"] = str(np.datetime_as_string(sim.times[-1], unit="D"))
    stats["_returns"] = sim.returns
    return stats


def _aggregate(per_symbol: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    rows = list(per_symbol.values())
    out: dict[str, Any] = {k: _mean([r[k] for r in rows]) for k in STATISTICS}
    out["trades"] = int(sum(r["trades"] for r in rows))
    out["exposure"] = _mean([r["exposure"] for r in rows])
    return out


def _score(agg: Mapping[str, Any], objective: str) -> float:
    if not agg.get("exposure"):
        return -math.inf  # never in the market: ranks last
    value = agg.get(objective)
    return float(value) if value is not None else -math.inf


def _public(stats: Mapping[str, Any]) -> dict[str, Any]:
    return _rounded({k: v for k, v in stats.items() if not k.startswith("_")})


class _Evaluator:
    """Backtests parameter sets on every series over given segments, counting and caching."""

    def __init__(
        self,
        spec: RuleSpec,
        series: Sequence[Series],
        cost: float,
        tick: Callable[[], None],
    ) -> None:
        self.spec = spec
        self.series = series
        self.cost = cost
        self.tick = tick
        self.evaluations = 0
        self.invalid: set[tuple[Any, ...]] = set()
        self.cache: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = {}

    def positions(self, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {s.symbol: rule_positions(self.spec.name, s.bars, params) for s in self.series}

    def run(
        self,
        params: dict[str, Any],
        segments: Sequence[Mapping[str, Segment]],
        positions: Mapping[str, np.ndarray] | None = None,
    ) -> list[dict[str, Any]]:
        """Per segment set: {"per_symbol": {...}, "aggregate": {...}}."""
        pos = positions if positions is not None else self.positions(params)
        out = []
        for segs in segments:
            per = {
                s.symbol: _segment_stats(s, pos[s.symbol], segs[s.symbol], self.cost)
                for s in self.series
            }
            out.append({"per_symbol": per, "aggregate": _aggregate(per)})
        return out

    def score_all(
        self, params: dict[str, Any], train: Sequence[Mapping[str, Segment]], objective: str
    ) -> list[float] | None:
        """Objective per training segment set; None when the combination is invalid."""
        key = tuple(sorted(params.items()))
        if key in self.cache:
            return [r["score"] for r in self.cache[key].values()]
        if key in self.invalid or self.spec.invalid(params):
            self.invalid.add(key)
            return None
        self.tick()
        results = self.run(params, train)
        self.evaluations += 1
        self.cache[key] = {
            i: {"score": _score(r["aggregate"], objective), "aggregate": r["aggregate"]}
            for i, r in enumerate(results)
        }
        return [r["score"] for r in self.cache[key].values()]


# --- segments ---------------------------------------------------------------------------------


def _split(series: Sequence[Series], train_ratio: float) -> tuple[dict, dict]:
    train, test = {}, {}
    for s in series:
        n_is = int(math.floor(s.periods * train_ratio))
        n_oos = s.periods - n_is
        if n_is < MIN_SEGMENT_BARS or n_oos < MIN_SEGMENT_BARS:
            raise DataUnavailable(
                f"{s.symbol}: {s.periods} bars in the range split {train_ratio:g} gives "
                f"{n_is} in-sample and {n_oos} out-of-sample bars; each needs at least "
                f"{MIN_SEGMENT_BARS} (widen start/end or change train_ratio)",
                {"symbol": s.symbol, "bars": s.periods},
            )
        train[s.symbol] = (s.first, s.first + n_is - 1)
        test[s.symbol] = (s.first + n_is, s.last)
    return train, test


def _folds(series: Sequence[Series], folds: int) -> list[tuple[dict, dict]]:
    out: list[tuple[dict, dict]] = [({}, {}) for _ in range(folds)]
    for s in series:
        block = s.periods // (folds + 1)
        if block < MIN_SEGMENT_BARS:
            raise DataUnavailable(
                f"{s.symbol}: {s.periods} bars in the range make {folds + 1} blocks of {block} "
                f"bars for {folds} walk-forward folds; each needs at least {MIN_SEGMENT_BARS} "
                "(fewer folds or a wider range)",
                {"symbol": s.symbol, "bars": s.periods},
            )
        for i in range(1, folds + 1):
            test_first = s.first + i * block
            test_last = s.last if i == folds else test_first + block - 1
            out[i - 1][0][s.symbol] = (s.first, test_first - 1)
            out[i - 1][1][s.symbol] = (test_first, test_last)
    return out


# --- search methods ---------------------------------------------------------------------------


def _grid_sets(spec: RuleSpec, space: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(space)
    base = dict(spec.parameters)
    return [{**base, **dict(zip(names, combo, strict=True))} for combo in product(*space.values())]


def _scipy_search(
    spec: RuleSpec,
    space: Mapping[str, list[Any]],
    budget: int,
    score: Callable[[dict[str, Any]], float | None],
) -> None:
    """Differential evolution over the box of ``space``; results land in the evaluator."""
    from scipy.optimize import differential_evolution

    names = [n for n, v in space.items() if len(v) > 1]
    fixed = {n: v[0] for n, v in space.items() if len(v) == 1}
    if not names:
        score({**spec.parameters, **fixed})
        return
    dim = len(names)
    popsize = 10
    if budget < 2 * 5 * dim:
        raise InvalidParams(
            f"method scipy needs max_evaluations of at least {10 * dim} for {dim} searched "
            f"parameter(s), got {budget}; raise it or use method grid"
        )
    while popsize > 5 and popsize * dim * 2 > budget:
        popsize -= 1
    maxiter = max(1, budget // (popsize * dim) - 1)
    bounds = [(float(min(space[n])), float(max(space[n]))) for n in names]
    integral = np.array([spec.bounds[n].kind is int for n in names])

    def params_of(x: np.ndarray) -> dict[str, Any]:
        p = dict(spec.parameters) | fixed
        for n, v, is_int in zip(names, x, integral, strict=True):
            p[n] = int(round(float(v))) if is_int else round(float(v), 6)
        return p

    def loss(x: np.ndarray) -> float:
        value = score(params_of(x))
        if value is None or not math.isfinite(value):
            return 1e9  # invalid or never invested: worst
        return -value

    differential_evolution(
        loss,
        bounds,
        maxiter=maxiter,
        popsize=popsize,
        integrality=integral,
        polish=False,
        rng=np.random.default_rng(0),
        init="latinhypercube",
    )


# --- the search -------------------------------------------------------------------------------


def _best(evaluator: _Evaluator, index: int) -> list[tuple[float, dict[str, Any]]]:
    order = list(evaluator.spec.parameters)
    ranked = []
    for key, entry in evaluator.cache.items():
        if index in entry:
            params = dict(key)
            ranked.append((entry[index]["score"], {k: params[k] for k in order}))
    # Ties (several sets that trade identically) go to the earliest-listed values.
    ranked.sort(key=lambda item: -item[0] if math.isfinite(item[0]) else math.inf)
    return ranked


def _stitched(results: Sequence[Mapping[str, Any]], series: Sequence[Series]) -> dict:
    """Statistics of the test blocks traded one after another, per symbol then averaged."""
    per: dict[str, dict[str, Any]] = {}
    for s in series:
        rets = np.concatenate([r["per_symbol"][s.symbol]["_returns"] for r in results])
        stats: dict[str, Any] = dict(statistics(rets, s.ppy))
        stats["trades"] = sum(r["per_symbol"][s.symbol]["trades"] for r in results)
        stats["exposure"] = _mean([r["per_symbol"][s.symbol]["exposure"] for r in results])
        stats["bars"] = int(rets.shape[0])
        stats["start"] = results[0]["per_symbol"][s.symbol]["start"]
        stats["end"] = results[-1]["per_symbol"][s.symbol]["end"]
        per[s.symbol] = stats
    return {"per_symbol": per, "aggregate": _aggregate(per)}


def _edge_warnings(space: Mapping[str, list[Any]], best: Mapping[str, Any]) -> list[str]:
    out = []
    for name, values in space.items():
        if len(values) >= 3 and best[name] in (values[0], values[-1]):
            out.append(
                f"best {name} = {best[name]:g} is at the edge of the searched values "
                f"({values[0]:g} .. {values[-1]:g}); the optimum may lie outside them"
            )
    return out


def _sharpe_warnings(ins: Mapping[str, Any], oos: Mapping[str, Any]) -> list[str]:
    is_sr, oos_sr = ins.get("sharpe_ratio"), oos.get("sharpe_ratio")
    if not oos.get("exposure"):
        return ["the best parameters never held a position out of sample: no out-of-sample "
                "figures to judge them by"]  # fmt: skip
    if is_sr is None or oos_sr is None:
        return []
    if is_sr > 0 and (oos_sr < 0 or oos_sr < OOS_SHARPE_WARNING_RATIO * is_sr):
        return [
            f"out-of-sample Sharpe {oos_sr:.2f} is far below in-sample {is_sr:.2f}: the "
            "parameters probably fit noise in the training data"
        ]
    if is_sr <= 0:
        return [f"in-sample Sharpe {is_sr:.2f} is not positive: no set in this space made "
                "money on the training data"]  # fmt: skip
    return []


def optimize(
    rule: str,
    series: Sequence[Series],
    *,
    objective: str = "sharpe_ratio",
    param_space: Mapping[str, Any] | None = None,
    method: str = "grid",
    train_ratio: float = 0.7,
    walk_forward_folds: int | None = None,
    max_evaluations: int = 500,
    top_n: int = 10,
    cost: float,
    progress: Callable[[str, float, dict[str, Any] | None], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Search ``rule``'s parameters on ``series``; the answer of ``optimize.parameters``."""
    started = time.perf_counter()
    spec = RULES.get(rule)
    if spec is None:
        raise InvalidParams(f"unknown strategy_type {rule!r}; use one of {', '.join(RULES)}")
    if objective not in OBJECTIVES:
        raise InvalidParams(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if method not in ("grid", "scipy"):
        raise InvalidParams(f"method must be grid or scipy, got {method!r}")
    space = build_space(spec, param_space, grid=method == "grid")
    size = _space_size(space)
    if method == "grid" and size > max_evaluations:
        raise InvalidParams(
            f"param_space has {size:,} parameter sets, more than max_evaluations "
            f"{max_evaluations:,}; narrow the space or raise max_evaluations (at most "
            f"{MAX_EVALUATIONS_LIMIT:,})",
            {"space_size": size, "max_evaluations": max_evaluations},
        )
    if walk_forward_folds:
        plan = _folds(series, walk_forward_folds)
        validation: dict[str, Any] = {"mode": "walk_forward", "folds": walk_forward_folds}
    else:
        plan = [_split(series, train_ratio)]
        validation = {"mode": "train_test", "train_ratio": train_ratio}
    train_sets = [train for train, _test in plan]

    budget = size if method == "grid" else max_evaluations
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if check_cancelled is not None and done % 5 == 1:
            check_cancelled()
        if progress is not None:
            progress(
                f"{method} search",
                round(min(99.0, 100.0 * done / max(budget, 1)), 1),
                {"evaluations": done, "budget": budget},
            )

    evaluator = _Evaluator(spec, series, cost, tick)
    if method == "grid":
        for params in _grid_sets(spec, space):
            evaluator.score_all(params, train_sets, objective)
    else:
        for i in range(len(plan)):
            # Each fold gets its share of the budget; scores for other folds come free.
            def score_fold(p: dict[str, Any], i: int = i) -> float | None:
                scores = evaluator.score_all(p, train_sets, objective)
                return None if scores is None else scores[i]

            _scipy_search(spec, space, max(1, max_evaluations // len(plan)), score_fold)
    if check_cancelled is not None:
        check_cancelled()
    if evaluator.evaluations == 0:
        raise InvalidParams(
            f"every parameter set in param_space is invalid for {spec.name} "
            f"({spec.invalid(_grid_sets(spec, space)[0])}); nothing was evaluated"
        )

    # The winner of each fold, traded on that fold's test block.
    fold_rows, test_results, winners = [], [], []
    for i, (train, test) in enumerate(plan):
        score, params = _best(evaluator, i)[0]
        ins, oos = evaluator.run(params, [train, test])
        winners.append(params)
        test_results.append(oos)
        fold_rows.append(
            {
                "fold": i + 1,
                "best_params": params,
                "objective": _finite_round(score),
                "in_sample": _public(ins["aggregate"]) | _span(ins),
                "out_of_sample": _public(oos["aggregate"]) | _span(oos),
            }
        )
    best = winners[-1]
    last_train, last_test = plan[-1]
    in_sample = evaluator.run(best, [last_train])[0]
    out_of_sample = test_results[0] if len(plan) == 1 else _stitched(test_results, series)

    defaults = dict(spec.parameters)
    default_pos = evaluator.positions(defaults)
    default_tests = [evaluator.run(defaults, [test], default_pos)[0] for _t, test in plan]
    default_oos = default_tests[0] if len(plan) == 1 else _stitched(default_tests, series)
    default_is = evaluator.run(defaults, [last_train], default_pos)[0]

    top = []
    for rank, (score, params) in enumerate(_best(evaluator, len(plan) - 1)[:top_n], 1):
        ins, oos = evaluator.run(params, [last_train, last_test])
        top.append(
            {
                "rank": rank,
                "params": {k: params[k] for k in space},
                "objective": _finite_round(score),
                "in_sample": _public(ins["aggregate"]),
                "out_of_sample": _public(oos["aggregate"]),
            }
        )

    agg_is, agg_oos = _public(in_sample["aggregate"]), _public(out_of_sample["aggregate"])
    warnings = _sharpe_warnings(agg_is, agg_oos)
    if method == "grid":
        warnings += _edge_warnings(space, best)
    short = [
        s.symbol for s in series if out_of_sample["per_symbol"][s.symbol]["bars"] < SHORT_OOS_BARS
    ]
    if short:
        warnings.append(
            f"out of sample has fewer than {SHORT_OOS_BARS} bars for {', '.join(short)}: its "
            "figures are noisy"
        )
    if progress is not None:
        progress("done", 100.0, {"evaluations": evaluator.evaluations, "budget": budget})
    answer: dict[str, Any] = {
        "strategy_type": spec.name,
        "description": spec.description,
        "objective": objective,
        "method": method,
        "validation": validation
        | _span(in_sample, "in_sample")
        | _span(out_of_sample, "out_of_sample"),
        "searched": {
            k: list(v) if method == "grid" else [min(v), max(v)] for k, v in space.items()
        },
        "space_size": size,
        "evaluations": evaluator.evaluations,
        "skipped_invalid": len(evaluator.invalid),
        "best_params": best,
        "in_sample": agg_is,
        "out_of_sample": agg_oos,
        "per_symbol": {
            s.symbol: {
                "in_sample": _public(in_sample["per_symbol"][s.symbol]),
                "out_of_sample": _public(out_of_sample["per_symbol"][s.symbol]),
            }
            for s in series
        },
        "defaults": {
            "params": defaults,
            "in_sample": _public(default_is["aggregate"]),
            "out_of_sample": _public(default_oos["aggregate"]),
        },
        "top": top,
        "warnings": warnings,
        "warning_rule": WARNING_RULE,
        "cost_per_side": cost,
        "execution": "decision at a bar's close, filled at the next bar's open",
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }
    if walk_forward_folds:
        answer["folds"] = fold_rows
    return answer


def _finite_round(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _span(result: Mapping[str, Any], prefix: str | None = None) -> dict[str, Any]:
    """Where a segment ran: first and last day and bars of each symbol."""
    per = result["per_symbol"]
    span = {
        sym: {"start": r["start"], "end": r["end"], "bars": r["bars"]} for sym, r in per.items()
    }
    return {prefix: span} if prefix else {"span": span}

"""The metric experiment: each method on each seed of the non-differentiable metric
problem (:func:`fedzoo_attack.metric.metric_problem`), in process.

F(x_r) = 1 - metric is evaluated by the simulator for reporting (:func:`reporting_value`):
not a query, never counted and never seen by an algorithm. Every query the methods make
is counted by the engine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError
from fedzoo.objectives.base import as_points
from fedzoo.objectives.problems import FederatedProblem
from fedzoo.results import write_csv, write_summary
from fedzoo_attack.report import (
    METRIC_COLUMNS,
    METRIC_HISTORY_COLUMNS,
    maybe_plot,
    package_versions,
    plot_metric,
    write_method_tables,
)
from fedzoo_attack.stats import check_budget


@dataclass
class MetricOutcome:
    """One method on one seed of the metric problem.

    Attributes:
        seed: problem and run seed.
        final_value: F = 1 - metric at the last global point (simulator-evaluated).
        final_queries: queries spent.
        value_at_budget: F at the last round with at most ``budget`` queries (the final
            value without a budget).
        queries_at_budget: the queries of that round.
        best_value: the lowest F over the rounds (reporting only: a deployment would
            not know which round it was).
        rounds, median_round_s, wall_s: rounds run, seconds per round, seconds in all.
        history: one row per round, keys :data:`~fedzoo_attack.report.METRIC_HISTORY_COLUMNS` minus ``seed``.
    """

    seed: int
    final_value: float
    final_queries: int
    value_at_budget: float
    queries_at_budget: int
    best_value: float
    rounds: int
    median_round_s: float
    wall_s: float
    history: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in METRIC_COLUMNS}


def reporting_value(problem: FederatedProblem, x: np.ndarray) -> float:
    """F(x) = sum_i w_i f_i(x) evaluated by the simulator: not a query, never counted.

    For simulated problems whose client objectives we own (the metric problem): it calls
    each objective's evaluation directly, bypassing the query counter and any budget, as
    :meth:`FederatedProblem.global_value` does for synthetic problems.
    """
    X = as_points(x, problem.dim)
    values = [float(np.asarray(obj._evaluate(X), np.float64)[0]) for obj in problem.objectives]
    return float(np.dot(problem.weights, values))


def metric_run(
    problem: FederatedProblem,
    config: RunConfig,
    *,
    seed: int,
    budget: int | None = None,
    workers: int | None = None,
) -> MetricOutcome:
    """One run on the metric problem, stopped once the queries reach ``budget``.

    Query cost: what the method spends (the reported F(x_r) values are not queries).
    """
    from fedzoo.engine import run_federation

    budget = check_budget(budget)
    history = [
        {
            "round": 0,
            "queries": 0,
            "value": reporting_value(problem, problem.x0),
            "reported_value": math.nan,
            "wall_s": 0.0,
            "bytes_up": 0,
            "bytes_down": 0,
        }
    ]

    def on_round(r: int, x: np.ndarray, row: dict[str, Any]) -> bool:
        history.append(
            {
                "round": r,
                "queries": int(row["queries"]),
                "value": reporting_value(problem, x),
                "reported_value": float(row["reported_value"]),
                "wall_s": float(row["wall_s"]),
                "bytes_up": int(row["bytes_up"]),
                "bytes_down": int(row["bytes_down"]),
            }
        )
        return budget is not None and int(row["queries"]) >= budget

    t0 = time.perf_counter()
    result = run_federation(
        problem, config, workers=workers, final_evaluation=False, round_callback=on_round,
        query_budget=budget,
    )
    wall = time.perf_counter() - t0
    for h, row in zip(history, result.history, strict=False):  # values reported a round late
        h["reported_value"] = float(row["reported_value"])
    within = [h for h in history if budget is None or h["queries"] <= budget]
    at_budget = within[-1]
    round_s = [h["wall_s"] for h in history[1:]]
    return MetricOutcome(
        seed=int(seed),
        final_value=float(history[-1]["value"]),
        final_queries=int(history[-1]["queries"]),
        value_at_budget=float(at_budget["value"]),
        queries_at_budget=int(at_budget["queries"]),
        best_value=float(min(h["value"] for h in within)),
        rounds=int(history[-1]["round"]),
        median_round_s=float(np.median(round_s)) if round_s else 0.0,
        wall_s=wall,
        history=history,
    )


MetricProgress = Callable[[str, int, MetricOutcome], None]


def run_metric_experiment(
    methods: Sequence[str],
    seeds: Sequence[int],
    base_config: RunConfig,
    out_dir: str | Path,
    *,
    num_clients: int = 10,
    portion: float = 0.5,
    metric: str = "f1",
    budget: int | None = None,
    workers: int | None = None,
    problem_options: Mapping[str, Any] | None = None,
    progress: MetricProgress | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Every method on every seed of the metric problem; write files; return the summary.

    Seed s fixes the problem (MLP initialisation, client split) and the run seed, so all
    methods of one seed optimise the same problem. Files: ``<out>/metric.csv`` (one row
    per method and seed: ``method`` + :data:`~fedzoo_attack.report.METRIC_COLUMNS`), ``<out>/history.csv`` (per
    method, seed and round: ``method`` + :data:`~fedzoo_attack.report.METRIC_HISTORY_COLUMNS`), the same per
    method without the ``method`` column in ``<out>/<method>/metric.csv`` and
    ``<out>/<method>/history.csv``, ``<out>/summary.json`` and ``<out>/metric.png``
    (F = 1 - metric against cumulative queries, mean over seeds).
    """
    from fedzoo_attack.metric import metric_problem

    budget = check_budget(budget)
    if not seeds:
        raise ConfigError("Give at least one seed.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opts = dict(problem_options or {})
    configs = {m: base_config.replace(method=m) for m in methods}
    problems = {s: metric_problem(num_clients, portion, metric, int(s), **opts) for s in seeds}
    t0 = time.perf_counter()
    results: dict[str, list[MetricOutcome]] = {}
    per_method: dict[str, Any] = {}
    for method, config in configs.items():
        outcomes = []
        for s in seeds:
            outcome = metric_run(
                problems[s],
                config.replace(seed=int(s)),
                seed=int(s),
                budget=budget,
                workers=workers,
            )
            outcomes.append(outcome)
            if progress is not None:
                progress(method, int(s), outcome)
        results[method] = outcomes
        d = out / method
        d.mkdir(parents=True, exist_ok=True)
        write_csv(d / "metric.csv", METRIC_COLUMNS, [o.row() for o in outcomes])
        write_csv(
            d / "history.csv",
            METRIC_HISTORY_COLUMNS,
            [{"seed": o.seed, **h} for o in outcomes for h in o.history],
        )
        # rewritten after each method, so an interrupted run leaves its partial results
        write_method_tables(results, out, "metric", METRIC_COLUMNS, METRIC_HISTORY_COLUMNS, "seed")
        vals = [o.value_at_budget for o in outcomes]
        per_method[method] = {
            "seeds": [int(s) for s in seeds],
            "value_at_budget": vals,
            "mean_value_at_budget": float(np.mean(vals)),
            "std_value_at_budget": float(np.std(vals)),
            "queries_at_budget": [o.queries_at_budget for o in outcomes],
            "final_value": [o.final_value for o in outcomes],
            "final_queries": [o.final_queries for o in outcomes],
            "median_round_s": float(np.median([o.median_round_s for o in outcomes])),
            "wall_s": float(sum(o.wall_s for o in outcomes)),
            "config": config.to_dict(),
        }
    summary = {
        "command": "metric",
        "metric": metric,
        "num_clients": int(num_clients),
        "portion": float(portion),
        "budget": budget,
        "problem": {str(s): p.info for s, p in problems.items()},
        "start_value": {str(s): reporting_value(p, p.x0) for s, p in problems.items()},
        "methods": list(methods),
        "results": per_method,
        "wall_s": time.perf_counter() - t0,
        "versions": package_versions(),
    }
    write_summary(summary, out / "summary.json")
    if plot:
        maybe_plot(
            plot_metric,
            results,
            out / "metric.png",
            budget=budget,
            title=f"1 - {metric}, N={num_clients}, P={portion:g}",
        )
    return summary


"""Attack and metric experiments: several methods over many images (or seeds), in process.

This module drives :func:`fedzoo.engine.run_federation` on the problems of
:mod:`fedzoo.attack.objectives` and :mod:`fedzoo.attack.metric`, records per-round
reporting values and writes the result files of ``fedzoo attack`` / ``fedzoo metric``.

Honesty (DESIGN §4, §7):

- Every query the methods make is counted by the engine (``row["queries"]``: cumulative
  over all clients, exploration, sync exchanges and initial designs included).
- The per-round checks are *reporting only*: the attack's success (averaged logits,
  :func:`~fedzoo.attack.objectives.attack_success`) and F(x_r) of the metric problem are
  evaluated by the simulator, are not queries and never reach an algorithm.
- An attack's ``queries_to_success`` is ``row["queries"]`` of the first round after which
  the averaged logits misclassify (or predict the target). With a budget Q an image counts
  as a success only if that happens with at most Q queries. The perturbation's norms, the
  share of client models fooled and the averaged logits' prediction are recorded at that
  same point (the one counted), not at a later one (``--continue-after-success``, or the
  round that crosses the budget); the final point's values are kept as ``final_*``.

Nothing here prints; progress goes through callbacks and :mod:`logging`.
"""

from __future__ import annotations

import csv
import json
import logging
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

logger = logging.getLogger(__name__)

ATTACK_COLUMNS = (
    "image",
    "label",
    "target",
    "success",
    "queries_to_success",
    "rounds_to_success",
    "predicted",
    "linf",
    "l2",
    "fooled_fraction",
    "final_queries",
    "rounds",
    "final_predicted",
    "final_linf",
    "final_l2",
    "final_fooled_fraction",
    "median_round_s",
    "wall_s",
)
ATTACK_HISTORY_COLUMNS = (
    "image",
    "round",
    "queries",
    "value",
    "success",
    "ensemble_margin",
    "fooled_fraction",
    "wall_s",
    "bytes_up",
    "bytes_down",
)
METRIC_COLUMNS = (
    "seed",
    "final_value",
    "final_queries",
    "value_at_budget",
    "queries_at_budget",
    "best_value",
    "rounds",
    "median_round_s",
    "wall_s",
)
METRIC_HISTORY_COLUMNS = (
    "seed",
    "round",
    "queries",
    "value",
    "reported_value",
    "wall_s",
    "bytes_up",
    "bytes_down",
)
DEFAULT_BUDGETS = (5000, 10000, 20000)


def _check_budget(budget: int | None) -> int | None:
    if budget is None:
        return None
    if int(budget) != budget or budget < 1:
        raise ConfigError(f"budget must be a positive integer (total queries), got {budget!r}.")
    return int(budget)


# --------------------------------------------------------------------------------------
# One attacked image
# --------------------------------------------------------------------------------------
@dataclass
class ImageOutcome:
    """One method's attack on one image.

    Attributes:
        image: index of the image in the test split.
        label: its true class.
        success: the averaged logits were fooled within the budget.
        queries_to_success: cumulative queries (all clients) at the first successful
            round, or None.
        rounds_to_success: that round, or None.
        linf, l2: norms of the applied perturbation at the *recorded point*: the first
            success within the budget (the point counted by ``queries_to_success``), or
            the final point when there is none.
        fooled_fraction: share of client models fooled at the recorded point.
        final_queries: queries spent when the run stopped.
        rounds: rounds run.
        median_round_s: median seconds per round (engine time, without the checks).
        wall_s: seconds for the whole image, checks included.
        target: the target class (label + 1) mod C of a targeted attack, else None.
        predicted: argmax of the clients' averaged logits at the recorded point.
        final_predicted, final_linf, final_l2, final_fooled_fraction: the same at the
            final point (they differ after ``stop_at_success=False`` or a success in the
            round that crossed the budget).
        history: one row per round (row 0 = the clean image), keys
            :data:`ATTACK_HISTORY_COLUMNS` minus ``image``.
        point: the recorded point x in [0, 1]^d (None when not kept).
        final_point: the final point (None when not kept).
    """

    image: int
    label: int
    success: bool
    queries_to_success: int | None
    rounds_to_success: int | None
    linf: float
    l2: float
    fooled_fraction: float
    final_queries: int
    rounds: int
    median_round_s: float
    wall_s: float
    target: int | None = None
    predicted: int | None = None
    final_predicted: int | None = None
    final_linf: float = math.nan
    final_l2: float = math.nan
    final_fooled_fraction: float = math.nan
    history: list[dict[str, Any]] = field(default_factory=list)
    point: np.ndarray | None = field(default=None, repr=False)
    final_point: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        """The attack.csv row."""
        return {k: getattr(self, k) for k in ATTACK_COLUMNS}


#: Runs one method on one image elsewhere (e.g. through the Flower app) and returns the
#: history rows (round 0 first) and the global point after every round (rows x d):
#: ``remote(config, image_id, budget) -> (rows, points)``.
RemoteRun = Callable[[RunConfig, int, "int | None"], "tuple[list[dict[str, Any]], np.ndarray]"]


class _SuccessTracker:
    """Follows an attack round by round: success checks (reporting only), history rows,
    the first success within the budget (and the point where it happened), and when to
    stop."""

    def __init__(self, models, image, label, epsilon, targeted, num_classes, budget,
                 stop_at_success, x0) -> None:
        from fedzoo.attack.objectives import attack_success

        self.check = lambda x: attack_success(models, image, label, x, epsilon, targeted,
                                              num_classes=num_classes)
        self.budget, self.stop_at_success = budget, stop_at_success
        start = self.check(x0)
        x0 = np.array(x0, dtype=np.float64).ravel()
        self.history: list[dict[str, Any]] = [_history_row({"round": 0, "queries": 0}, start)]
        self.hit: dict[str, Any] = (
            {"queries": 0, "round": 0, "res": start, "x": x0} if start["success"] else {}
        )
        self.last, self.last_x = start, x0

    @property
    def done_before_start(self) -> bool:
        return bool(self.hit)

    def on_round(self, r: int, x: np.ndarray, row: dict[str, Any]) -> bool:
        """Record round r (global point x, engine row); True: the run should stop."""
        res = self.check(x)
        queries = int(row["queries"])
        self.history.append(_history_row(row, res))
        self.last, self.last_x = res, np.array(x, dtype=np.float64).ravel()
        within = self.budget is None or queries <= self.budget
        if res["success"] and within and not self.hit:
            self.hit.update(queries=queries, round=r, res=res, x=self.last_x)
        return bool((self.hit and self.stop_at_success)
                    or (self.budget is not None and queries >= self.budget))

    def outcome(self, image_id: int, label: int, wall: float) -> ImageOutcome:
        final = self.last
        at = self.hit.get("res", final)  # the counted success, else the final point
        round_s = [h["wall_s"] for h in self.history[1:]]
        return ImageOutcome(
            image=int(image_id),
            label=int(label),
            success=bool(self.hit),
            queries_to_success=self.hit.get("queries"),
            rounds_to_success=self.hit.get("round"),
            linf=float(at["linf"]),
            l2=float(at["l2"]),
            fooled_fraction=float(at["fooled_fraction"]),
            final_queries=int(self.history[-1]["queries"]),
            rounds=int(self.history[-1]["round"]),
            median_round_s=float(np.median(round_s)) if round_s else 0.0,
            wall_s=wall,
            target=None if final["target"] is None else int(final["target"]),
            predicted=int(at["predicted"]),
            final_predicted=int(final["predicted"]),
            final_linf=float(final["linf"]),
            final_l2=float(final["l2"]),
            final_fooled_fraction=float(final["fooled_fraction"]),
            history=self.history,
            point=self.hit.get("x", self.last_x),
            final_point=self.last_x,
        )


def attack_image(
    models: Any,
    image: np.ndarray,
    label: int,
    config: RunConfig,
    epsilon: float,
    *,
    targeted: bool = False,
    budget: int | None = None,
    stop_at_success: bool = True,
    image_id: int = -1,
    workers: int | None = None,
    num_classes: int | None = None,
    remote: RemoteRun | None = None,
) -> ImageOutcome:
    """Attack one image with one method and report success round by round.

    The run stops after the first successful round (``stop_at_success``), once the
    cumulative queries reach ``budget``, or after ``config.rounds`` rounds. A success
    found in a round that pushed the queries past the budget does not count.

    Args:
        models: the client classifiers (a ``ClientModels`` or a sequence).
        image: the clean image (``H x W`` or ``H x W x C`` in [0, 1]).
        label: its true class.
        config: the run configuration (method, rounds, ...).
        epsilon: L-infinity radius of the perturbation.
        targeted: targeted attack to (label + 1) mod C.
        budget: total queries over all clients, or None.
        stop_at_success: end the run at the first success.
        image_id: the image's index, for records.
        workers: client threads of the engine.
        num_classes: C (default: from the models' metadata, else 10).
        remote: run the federation elsewhere (:data:`RemoteRun`, e.g. the Flower app)
            instead of in this process. It cannot stop at the first success (success is
            judged here, on the global points it returns), so it runs to the budget or
            the round cap; the rounds after the one where this process would have stopped
            are ignored, so the outcome is the in-process one.

    Query cost: what the method spends (counted by the engine); the success checks are
    direct classifier evaluations, not queries.
    """
    from fedzoo.attack.objectives import attack_problem
    from fedzoo.engine import run_federation

    if config.method == "fo":
        raise ConfigError("Method 'fo' needs exact gradients; the attack is a black box.")
    budget = _check_budget(budget)
    if num_classes is None:
        num_classes = int(getattr(models, "meta", {}).get("num_classes", 10))
    problem = attack_problem(models, image, label, epsilon, targeted, num_classes=num_classes)
    tracker = _SuccessTracker(models, image, label, epsilon, targeted, num_classes, budget,
                              stop_at_success, problem.x0)
    t0 = time.perf_counter()
    if tracker.done_before_start:
        logger.warning("Image %d is already misclassified before the attack.", image_id)
    elif remote is not None:
        rows, points = remote(config, int(image_id), budget)
        if len(points) != len(rows):
            raise ConfigError(f"The remote run returned {len(rows)} rows but {len(points)} points.")
        for row, x in zip(rows[1:], points[1:]):
            if tracker.on_round(int(row["round"]), np.asarray(x), row):
                break
    else:
        run_federation(problem, config, workers=workers, final_evaluation=False,
                       round_callback=tracker.on_round)
    return tracker.outcome(image_id, label, time.perf_counter() - t0)


def _history_row(row: Mapping[str, Any], res: Mapping[str, Any]) -> dict[str, Any]:
    """A history row from the engine's row (counts, bytes, time) and the success check."""
    return {
        "round": int(row["round"]),
        "queries": int(row["queries"]),
        "value": float(res["margin"]),  # F(x_r), simulator-evaluated (not a query)
        "success": bool(res["success"]),
        "ensemble_margin": float(res["ensemble_margin"]),
        "fooled_fraction": float(res["fooled_fraction"]),
        "wall_s": float(row.get("wall_s", 0.0)),
        "bytes_up": int(row.get("bytes_up", 0)),
        "bytes_down": int(row.get("bytes_down", 0)),
    }


# --------------------------------------------------------------------------------------
# Success statistics
# --------------------------------------------------------------------------------------
def success_rate_at(outcomes: Sequence[ImageOutcome], queries: float) -> float:
    """Share of images fooled with at most ``queries`` total queries."""
    if not outcomes:
        return math.nan
    hits = [o for o in outcomes if o.success and o.queries_to_success is not None]
    return sum(o.queries_to_success <= queries for o in hits) / len(outcomes)  # type: ignore[operator]


def queries_to_rate(outcomes: Sequence[ImageOutcome], rate: float) -> int | None:
    """Fewest total queries q with success_rate_at(q) >= rate, or None if never reached.

    With K images this is the ceil(rate K)-th smallest queries-to-success.
    """
    if not 0 < rate <= 1:
        raise ConfigError(f"rate must lie in (0, 1], got {rate!r}.")
    need = math.ceil(rate * len(outcomes) - 1e-9)
    qs = sorted(o.queries_to_success for o in outcomes if o.queries_to_success is not None)
    return int(qs[need - 1]) if 0 < need <= len(qs) else None


def attack_method_summary(
    outcomes: Sequence[ImageOutcome], budgets: Sequence[int] = DEFAULT_BUDGETS
) -> dict[str, Any]:
    """Success rate, queries to success (mean / median over fooled images), rates at budgets."""
    qs = [o.queries_to_success for o in outcomes if o.queries_to_success is not None]
    round_s = [o.median_round_s for o in outcomes if o.rounds > 0]
    return {
        "images": len(outcomes),
        "successes": len(qs),
        "success_rate": len(qs) / len(outcomes) if outcomes else math.nan,
        "mean_queries_to_success": float(np.mean(qs)) if qs else None,
        "median_queries_to_success": float(np.median(qs)) if qs else None,
        "success_rate_at": {str(int(b)): success_rate_at(outcomes, b) for b in budgets},
        "queries_to_50pct": queries_to_rate(outcomes, 0.5) if outcomes else None,
        "queries_to_90pct": queries_to_rate(outcomes, 0.9) if outcomes else None,
        "median_round_s": float(np.median(round_s)) if round_s else None,
        "mean_linf": float(np.mean([o.linf for o in outcomes])) if outcomes else None,
        "wall_s": float(sum(o.wall_s for o in outcomes)),
    }


# --------------------------------------------------------------------------------------
# Many images x several methods
# --------------------------------------------------------------------------------------
AttackProgress = Callable[[str, int, int, ImageOutcome], None]


def run_attack_experiment(
    models: Any,
    images: np.ndarray,
    labels: Sequence[int],
    image_ids: Sequence[int],
    methods: Sequence[str],
    base_config: RunConfig,
    epsilon: float,
    out_dir: str | Path,
    *,
    targeted: bool = False,
    budget: int | None = None,
    budgets: Sequence[int] | None = None,
    stop_at_success: bool = True,
    workers: int | None = None,
    num_classes: int | None = None,
    info: Mapping[str, Any] | None = None,
    progress: AttackProgress | None = None,
    plot: bool = True,
    remote: RemoteRun | None = None,
) -> dict[str, Any]:
    """Attack every image with every method; write the result files; return the summary.

    Files: ``<out>/attack.csv`` (one row per method and image: ``method`` +
    :data:`ATTACK_COLUMNS`), ``<out>/history.csv`` (per method, image and round:
    ``method`` + :data:`ATTACK_HISTORY_COLUMNS`), the same per method without the
    ``method`` column in ``<out>/<method>/attack.csv`` and ``<out>/<method>/history.csv``,
    ``<out>/<method>/points.npz`` (:func:`write_attack_files`), ``<out>/summary.json`` and,
    when matplotlib is installed, ``<out>/attack.png`` (success rate against cumulative
    queries).

    Args:
        models: the client classifiers.
        images: the K images to attack (``K x H x W [x C]``).
        labels: their true classes.
        image_ids: their indices in the test split (for records).
        methods: method names (each replaces ``base_config.method``).
        base_config: every other option.
        epsilon, targeted, budget, stop_at_success, workers, num_classes, remote: as in
            :func:`attack_image`.
        budgets: query budgets at which success rates are reported (default 5k, 10k,
            20k, and ``budget`` if given).
        info: extra problem description stored in summary.json (data set, N, P, ...).
        progress: called with (method, image number, K, outcome) after each image.
        plot: write attack.png.

    Returns:
        The content of summary.json.
    """
    if len(images) != len(labels) or len(images) != len(image_ids):
        raise ConfigError(
            f"Got {len(images)} images, {len(labels)} labels and {len(image_ids)} ids."
        )
    budget = _check_budget(budget)
    if budgets is None:
        budgets = sorted({*DEFAULT_BUDGETS, *([budget] if budget else [])})
        if budget is not None:
            budgets = [b for b in budgets if b <= budget]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = {m: base_config.replace(method=m) for m in methods}  # validates every name first
    t0 = time.perf_counter()
    results: dict[str, list[ImageOutcome]] = {}
    per_method: dict[str, Any] = {}
    for method, config in configs.items():
        outcomes: list[ImageOutcome] = []
        for k, (img, lab, iid) in enumerate(zip(images, labels, image_ids, strict=True)):
            outcome = attack_image(
                models,
                img,
                int(lab),
                config,
                epsilon,
                targeted=targeted,
                budget=budget,
                stop_at_success=stop_at_success,
                image_id=int(iid),
                workers=workers,
                num_classes=num_classes,
                remote=remote,
            )
            outcomes.append(outcome)
            if progress is not None:
                progress(method, k + 1, len(images), outcome)
        results[method] = outcomes
        write_attack_files(outcomes, out / method)
        # rewritten after each method, so an interrupted run leaves its partial results
        write_method_tables(results, out, "attack", ATTACK_COLUMNS, ATTACK_HISTORY_COLUMNS, "image")
        per_method[method] = {
            **attack_method_summary(outcomes, budgets),
            "config": config.to_dict(),
        }
    summary = {
        "command": "attack",
        "engine": "inprocess" if remote is None else getattr(remote, "engine", "remote"),
        "methods": list(methods),
        "epsilon": float(epsilon),
        "targeted": bool(targeted),
        "budget": budget,
        "budgets": [int(b) for b in budgets],
        "stop_at_success": bool(stop_at_success),
        "images": [int(i) for i in image_ids],
        "labels": [int(v) for v in labels],
        "problem": dict(info or {}),
        "results": per_method,
        "wall_s": time.perf_counter() - t0,
        "versions": _versions(),
    }
    write_json(summary, out / "summary.json")
    if plot:
        _maybe_plot(
            plot_attack_success,
            results,
            out / "attack.png",
            budget=budget,
            title=_attack_title(info, epsilon, targeted),
        )
    return summary


def _attack_title(info: Mapping[str, Any] | None, epsilon: float, targeted: bool) -> str:
    i = dict(info or {})
    parts = [
        str(i.get("dataset", "")),
        f"N={i['num_clients']}" if "num_clients" in i else "",
        f"P={i['portion']:g}" if "portion" in i else "",
        f"eps={epsilon:g}",
        "targeted" if targeted else "untargeted",
    ]
    return ", ".join(p for p in parts if p)


def write_attack_files(outcomes: Sequence[ImageOutcome], out_dir: str | Path) -> None:
    """``attack.csv``, ``history.csv`` and ``points.npz`` of one method.

    ``points.npz`` holds ``image`` (K ids), ``x`` (K x d: the recorded point of each image,
    where ``success``, ``predicted``, ``linf``, ... of attack.csv were measured) and
    ``x_final`` (K x d: the final points); it is written when every outcome kept them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "attack.csv", ATTACK_COLUMNS, [o.row() for o in outcomes])
    rows = [{"image": o.image, **h} for o in outcomes for h in o.history]
    write_csv(out / "history.csv", ATTACK_HISTORY_COLUMNS, rows)
    if outcomes and all(o.point is not None and o.final_point is not None for o in outcomes):
        np.savez(
            out / "points.npz",
            image=np.array([o.image for o in outcomes], dtype=np.int64),
            x=np.stack([np.asarray(o.point, np.float64) for o in outcomes]),
            x_final=np.stack([np.asarray(o.final_point, np.float64) for o in outcomes]),
        )


def write_method_tables(
    results: Mapping[str, Sequence[Any]],
    out_dir: str | Path,
    name: str,
    columns: Sequence[str],
    history_columns: Sequence[str],
    run_key: str,
) -> None:
    """The top-level ``<name>.csv`` (``method`` + ``columns``: one row per method and
    image / seed) and ``history.csv`` (``method`` + ``history_columns``) of every method;
    ``run_key`` (``image`` or ``seed``) names each outcome's run in the history rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        out / f"{name}.csv",
        ("method", *columns),
        [{"method": m, **o.row()} for m, outs in results.items() for o in outs],
    )
    write_csv(
        out / "history.csv",
        ("method", *history_columns),
        [{"method": m, run_key: getattr(o, run_key), **h} for m, outs in results.items()
         for o in outs for h in o.history],
    )


# --------------------------------------------------------------------------------------
# Metric optimisation over seeds
# --------------------------------------------------------------------------------------
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
        history: one row per round, keys :data:`METRIC_HISTORY_COLUMNS` minus ``seed``.
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

    budget = _check_budget(budget)
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
        problem, config, workers=workers, final_evaluation=False, round_callback=on_round
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
    per method and seed: ``method`` + :data:`METRIC_COLUMNS`), ``<out>/history.csv`` (per
    method, seed and round: ``method`` + :data:`METRIC_HISTORY_COLUMNS`), the same per
    method without the ``method`` column in ``<out>/<method>/metric.csv`` and
    ``<out>/<method>/history.csv``, ``<out>/summary.json`` and ``<out>/metric.png``
    (F = 1 - metric against cumulative queries, mean over seeds).
    """
    from fedzoo.attack.metric import metric_problem

    budget = _check_budget(budget)
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
        "versions": _versions(),
    }
    write_json(summary, out / "summary.json")
    if plot:
        _maybe_plot(
            plot_metric,
            results,
            out / "metric.png",
            budget=budget,
            title=f"1 - {metric}, N={num_clients}, P={portion:g}",
        )
    return summary


# --------------------------------------------------------------------------------------
# Files and plots
# --------------------------------------------------------------------------------------
def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return v


def write_csv(path: str | Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """A CSV with the given columns; None is written empty, booleans as 0/1."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})


def write_json(data: Mapping[str, Any], path: str | Path) -> None:
    """JSON with NaN/inf written as null and numpy scalars as Python numbers."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.generic):
            return clean(v.item())
        return v

    Path(path).write_text(json.dumps(clean(data), indent=2, sort_keys=True) + "\n")


def _versions() -> dict[str, str]:
    """Package versions for summary.json; torch's is read from its installed metadata,
    so recording it never imports torch (the metric problem runs without it)."""
    from importlib.metadata import PackageNotFoundError, version

    from fedzoo.results import versions

    out = versions()
    for package in ("torch", "scikit-learn", "mlxtend"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:  # not installed: nothing to record
            pass
    return out


def _maybe_plot(fn: Callable[..., Path], *args: Any, **kwargs: Any) -> Path | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("matplotlib is not installed; no plot written (pip install fedzoo[plot]).")
        return None
    return fn(*args, **kwargs)


def success_curve(
    outcomes: Sequence[ImageOutcome], max_queries: float
) -> tuple[list[float], list[float]]:
    """Step curve (queries, success rate) from 0 to ``max_queries``."""
    qs = sorted(o.queries_to_success for o in outcomes if o.queries_to_success is not None)
    xs, ys = [0.0], [0.0]
    for j, q in enumerate(qs):
        if q > max_queries:
            break
        xs += [float(q), float(q)]
        ys += [ys[-1], (j + 1) / len(outcomes)]
    xs.append(float(max_queries))
    ys.append(ys[-1])
    return xs, ys


def plot_attack_success(
    results: Mapping[str, Sequence[ImageOutcome]],
    path: str | Path,
    *,
    budget: int | None = None,
    title: str = "",
) -> Path:
    """Success rate against cumulative queries (all clients), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = budget or max((o.final_queries for outs in results.values() for o in outs), default=1)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, outcomes in results.items():
        xs, ys = success_curve(outcomes, top)
        ax.plot(xs, ys, label=method, lw=1.8)
    ax.set_xlabel("cumulative queries per image (all clients)")
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_metric(
    results: Mapping[str, Sequence[MetricOutcome]],
    path: str | Path,
    *,
    budget: int | None = None,
    title: str = "",
) -> Path:
    """F = 1 - metric against cumulative queries: mean over seeds, band = min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, outcomes in results.items():
        top = max(o.final_queries for o in outcomes)
        grid = np.linspace(0, budget or top, 200)
        curves = np.stack([_step_interp(o.history, grid) for o in outcomes])
        (line,) = ax.plot(grid, np.nanmean(curves, axis=0), label=method, lw=1.8)
        if len(outcomes) > 1:
            ax.fill_between(
                grid,
                np.nanmin(curves, axis=0),
                np.nanmax(curves, axis=0),
                color=line.get_color(),
                alpha=0.15,
                lw=0,
            )
    ax.set_xlabel("cumulative queries (all clients)")
    ax.set_ylabel("F = 1 - metric")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _step_interp(history: Sequence[Mapping[str, Any]], grid: np.ndarray) -> np.ndarray:
    """Value of the last round with queries <= q, for each q of grid (NaN after the end)."""
    q = np.array([h["queries"] for h in history], dtype=np.float64)
    v = np.array([h["value"] for h in history], dtype=np.float64)
    idx = np.searchsorted(q, grid, side="right") - 1
    out = v[np.clip(idx, 0, None)]
    out[grid > q[-1]] = np.nan
    return out

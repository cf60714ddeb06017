"""The attack loop: one method on one image (:func:`attack_image`), round by round, and
several methods over many images (:func:`run_attack_experiment`), in process or through
a :data:`RemoteRun` (e.g. the Flower app).

This module drives :func:`fedzoo.engine.run_federation` on the problems of
:mod:`fedzoo_attack.objectives` and records per-round reporting values; the statistics
are :mod:`fedzoo_attack.stats`, the files and plots :mod:`fedzoo_attack.report`, the
metric experiment :mod:`fedzoo_attack.metric_run`.

Honesty (docs/design.md §4, §7):

- Every query the methods make is counted by the engine (``row["queries"]``: cumulative
  over all clients, exploration, sync exchanges and initial designs included).
- The per-round checks are *reporting only*: the attack's success (averaged logits,
  :func:`~fedzoo_attack.objectives.attack_success`) is evaluated by the simulator, is not
  a query and never reaches an algorithm.
- An attack's ``queries_to_success`` is ``row["queries"]`` of the first round after which
  the averaged logits misclassify (or predict the target). With a budget Q an image counts
  as a success only if that happens with at most Q queries. The perturbation's norms, the
  share of client models fooled and the averaged logits' prediction are recorded at that
  same point (the one counted), not at a later one (``--continue-after-success``, or the
  round that crosses the budget); the final point's values are kept as ``final_*``.

Nothing here prints; progress goes through callbacks and :mod:`logging`.
"""

from __future__ import annotations

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
from fedzoo.results import write_summary
from fedzoo_attack.report import (
    ATTACK_COLUMNS,
    ATTACK_HISTORY_COLUMNS,
    attack_title,
    maybe_plot,
    package_versions,
    plot_attack_grid,
    plot_attack_success,
    write_attack_files,
    write_method_tables,
)
from fedzoo_attack.stats import DEFAULT_BUDGETS, attack_method_summary, check_budget

logger = logging.getLogger(__name__)


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
            :data:`~fedzoo_attack.report.ATTACK_HISTORY_COLUMNS` minus ``image``.
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
        from fedzoo_attack.objectives import attack_success

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

    The run stops after the first successful round (``stop_at_success``), before a
    round that could take the cumulative queries past ``budget`` (a hard limit, in
    process and remote: :mod:`fedzoo.budget`), or after ``config.rounds`` rounds.

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
    from fedzoo.engine import run_federation
    from fedzoo.methods import get_method
    from fedzoo_attack.objectives import attack_problem

    if get_method(config.method).exact_gradients:
        raise ConfigError(f"Method {config.method!r} needs exact gradients; the attack is a black box.")
    budget = check_budget(budget)
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
                       round_callback=tracker.on_round, query_budget=budget)
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
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Attack every image with every method; write the result files; return the summary.

    Files: ``<out>/attack.csv`` (one row per method and image: ``method`` +
    :data:`~fedzoo_attack.report.ATTACK_COLUMNS`), ``<out>/history.csv`` (per method, image and round:
    ``method`` + :data:`~fedzoo_attack.report.ATTACK_HISTORY_COLUMNS`), the same per method without the
    ``method`` column in ``<out>/<method>/attack.csv`` and ``<out>/<method>/history.csv``,
    ``<out>/<method>/points.npz`` (:func:`~fedzoo_attack.report.write_attack_files`), ``<out>/summary.json`` and,
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
        method_options: per method, options that replace ``base_config``'s for that
            method only (names as in the run configuration, e.g. ``local-steps``: an
            attack's own defaults for one method), recorded in summary.json
            (``method_options``).
        aliases: the names a user asked for that ran as another method (e.g. ``fzoos``
            -> ``fzoos-vertex``), recorded in summary.json (``aliases``).

    Returns:
        The content of summary.json.
    """
    if len(images) != len(labels) or len(images) != len(image_ids):
        raise ConfigError(
            f"Got {len(images)} images, {len(labels)} labels and {len(image_ids)} ids."
        )
    budget = check_budget(budget)
    if budgets is None:
        budgets = sorted({*DEFAULT_BUDGETS, *([budget] if budget else [])})
        if budget is not None:
            budgets = [b for b in budgets if b <= budget]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = {m: dict(v) for m, v in (method_options or {}).items()}
    # validates every name (and every per-method option) first
    configs = {m: base_config.replace(method=m, **extra.get(m, {})) for m in methods}
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
        "method_options": extra,
        "aliases": dict(aliases or {}),
        "results": per_method,
        "wall_s": time.perf_counter() - t0,
        "versions": package_versions(),
    }
    write_summary(summary, out / "summary.json")
    if plot:
        maybe_plot(
            plot_attack_success,
            results,
            out / "attack.png",
            budget=budget,
            title=attack_title(info, epsilon, targeted),
        )
        maybe_plot(
            plot_attack_grid,
            results,
            _client_predictions(models),
            list(images),
            epsilon,
            out / "attack-grid.png",
            title=attack_title(info, epsilon, targeted),
        )
    return summary


def _client_predictions(models: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``batch -> clients x batch`` predicted classes of every client model (not queries)."""
    from fedzoo_attack.objectives import _unpack_models, as_classifier

    seq, _ = _unpack_models(models)
    classifiers = [as_classifier(m) for m in seq]

    def classify(batch: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(c(batch)).argmax(axis=1) for c in classifiers])

    return classify


"""``fedzoo.minimize``: federated zeroth-order optimisation of your own black boxes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.config import RunConfig
from fedzoo.engine import RunResult, run_federation
from fedzoo.objectives.base import Objective
from fedzoo.objectives.problems import problem_from_callables


def minimize(
    objectives: Sequence[Callable[[np.ndarray], Any] | Objective],
    x0: Any,
    *,
    weights: Sequence[float] | None = None,
    method: str = "fzoos",
    rounds: int = 50,
    local_steps: int = 10,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    tensorboard_dir: str | Path | None = None,
    **options: Any,
) -> RunResult:
    """Minimise F(x) = sum_i w_i f_i(x) over the unit box with client black boxes.

    Args:
        objectives: one callable per client, ``f_i(X) -> y`` with X an n x d array in
            [0, 1]^d and y n values (or :class:`~fedzoo.objectives.Objective` objects).
        x0: start point: a finite 1-d array of length d in the unit box (d is its
            length; a 2-d array is refused, not flattened).
        weights: client weights (default uniform); renormalised to sum 1.
        method: a registered method (:func:`fedzoo.methods.method_names`; the list
            below). Methods marked "exact gradients" need synthetic problems.
        rounds, local_steps, seed: R, T and the run seed.
        out_dir: optional directory for history.csv and summary.json. Checked before
            any query: it must be a directory that can be written and, unless
            ``overwrite``, empty (an earlier run's results are never replaced by
            accident). If an objective fails, the rows of the rounds completed and a
            summary with ``status = "failed"`` are written before the error propagates.
        overwrite: accept a non-empty ``out_dir`` (its results files are replaced).
        tensorboard_dir: optional TensorBoard log directory: scalars per round (the
            ``tensorboard`` extra, :mod:`fedzoo.tensorboard_log`).
        **options: any other :class:`~fedzoo.config.RunConfig` option, snake_case
            (e.g. ``rff_features=2000``, ``lr=0.05``).

    Returns:
        A :class:`~fedzoo.engine.RunResult` with ``.x``, ``.history`` (the rows of
        history.csv, values from the f_i(x_r) queries the method makes anyway) and
        ``.num_queries`` (exactly the number of points the callables were given).

    Query cost: what the method needs, plus N queries at x_R at the end for methods
    without a sync exchange (so the final value is known); all counted.
    """
    from fedzoo.outdir import prepare_out_dir
    from fedzoo.provenance import invocation, jsonable

    config = RunConfig.from_mapping(
        {"method": method, "rounds": rounds, "local_steps": local_steps, "seed": seed, **options}
    )
    problem = problem_from_callables(objectives, x0, weights=weights)
    if out_dir is not None:
        prepare_out_dir(out_dir, overwrite=overwrite)
    call = {"api": "fedzoo.minimize", "arguments": jsonable({
        "objectives": list(objectives), "x0": x0, "weights": weights, "method": method,
        "rounds": rounds, "local_steps": local_steps, "seed": seed,
        "out_dir": None if out_dir is None else str(out_dir), "overwrite": overwrite,
        "tensorboard_dir": None if tensorboard_dir is None else str(tensorboard_dir), **options})}
    reporter = None
    if tensorboard_dir is not None:
        from fedzoo.tensorboard_log import TensorBoardReporter

        reporter = TensorBoardReporter(tensorboard_dir)
    try:
        with invocation(call):
            result = run_federation(problem, config, out_dir=out_dir,
                                    progress=None if reporter is None else reporter.progress)
        if reporter is not None:
            reporter.finish(result.history)
    finally:
        if reporter is not None:
            reporter.close()
    return result


def _method_table() -> str:
    """The registered methods, one line each (appended to :func:`minimize`'s docs)."""
    from fedzoo.methods import methods

    lines = ["", "    Registered methods (``method=``):", ""]
    for m in methods():
        lines.append(f"    * ``{m.name}``: {m.summary}")
    return "\n".join(lines) + "\n"


minimize.__doc__ = (minimize.__doc__ or "") + _method_table()

"""``fedzoo.minimize``: federated zeroth-order optimisation of your own black boxes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.config import RunConfig
from fedzoo.engine import RunResult, run_federation
from fedzoo.objectives.base import Objective
from fedzoo.objectives.problems import problem_from_callables

#: Names users reach for that mean ``budget`` (other libraries' spellings).
BUDGET_ALIASES = ("query_budget", "max_queries", "maxfevals", "max_evals", "maxfev", "max_fevals")


def minimize(
    objectives: Sequence[Callable[[np.ndarray], Any] | Objective],
    x0: Any,
    *,
    budget: int | None = None,
    max_exchanges: int | None = None,
    weights: Sequence[float] | None = None,
    method: str = "fzoos",
    rounds: int | None = None,
    local_steps: int = 10,
    seed: int = 0,
    on_client_error: str = "skip",
    progress: bool | Callable[[dict[str, Any]], Any] = False,
    callback: Callable[[int, np.ndarray, dict[str, Any]], Any] | None = None,
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
        budget: a hard limit on the client queries of the run (all clients together,
            every exploration and final evaluation included): no method spends past it,
            whatever its per-round cost, and ``num_queries`` says exactly what was spent
            (:mod:`fedzoo.budget`). Without ``rounds``, the run is set up for the rounds
            the budget pays for (:func:`fedzoo.budget.rounds_for_budget`). None: no
            budget, ``rounds`` rounds (default 50).
        max_exchanges: at most this many exchanges (server-client message rounds: one
            per round, two for methods with a sync exchange, one for a final evaluation),
            for deployments where messages are the cost; caps ``rounds``.
        weights: client weights (default uniform); renormalised to sum 1.
        method: a registered method (:func:`fedzoo.methods.method_names`; the list
            below). Methods marked "exact gradients" need synthetic problems.
        rounds, local_steps, seed: R (at most, with a budget), T and the run seed.
        on_client_error: ``"skip"`` (default) leaves a client whose objective raises (or
            returns NaN, or runs out of its own budget) out of that exchange, as the
            Flower engine does: its queries are counted, the history's notes and
            ``summary["client_failures"]`` name it, and the round needs ``min_replies``
            clients; if every client asked fails, the run ends with the error.
            ``"fail"``: the first failure ends the run. Either way an error that ends
            the run carries the rounds completed as ``err.partial`` (a RunResult).
        progress: True for a progress bar on stderr (tqdm when installed, else a line
            per round), or a function called with every history row.
        callback: called after every round with ``(round, x_r, row)``; returning True
            stops the run there (reporting only: it must not query the objectives).
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
        history.csv, values from the f_i(x_r) queries the method makes anyway),
        ``.num_queries`` (exactly the number of points the callables were given,
        including those behind replies the server refused) and ``.best_x`` /
        ``.best_value`` (the point with the lowest reported F).

    Query cost: what the method needs, plus N queries at x_R at the end for methods
    without a sync exchange (so the final value is known); all counted.
    """
    from fedzoo.budget import rounds_for_budget
    from fedzoo.errors import ConfigError
    from fedzoo.outdir import prepare_out_dir
    from fedzoo.provenance import invocation, jsonable

    for alias in BUDGET_ALIASES:
        if alias in options:
            raise ConfigError(f"Unknown argument {alias!r}; the query budget of fedzoo.minimize is "
                              f"budget= (e.g. budget={options[alias]!r}).")
    budget = _check_budget(budget)
    config = _config({"method": method, "rounds": 50 if rounds is None else rounds,
                      "local_steps": local_steps, "seed": seed, **options})
    problem = problem_from_callables(objectives, x0, weights=weights)
    if budget and rounds is None:
        config = config.replace(rounds=rounds_for_budget(config, problem.dim, problem.num_clients, budget))
    if max_exchanges is not None:
        from fedzoo.budget import rounds_for_exchanges

        config = config.replace(rounds=min(config.rounds, rounds_for_exchanges(config, max_exchanges)))
    if out_dir is not None:
        prepare_out_dir(out_dir, overwrite=overwrite)
    call = {"api": "fedzoo.minimize", "arguments": jsonable({
        "objectives": list(objectives), "x0": x0, "budget": budget,
        "max_exchanges": max_exchanges, "weights": weights,
        "method": method, "rounds": rounds, "local_steps": local_steps, "seed": seed,
        "on_client_error": on_client_error,
        "out_dir": None if out_dir is None else str(out_dir), "overwrite": overwrite,
        "tensorboard_dir": None if tensorboard_dir is None else str(tensorboard_dir), **options})}
    reporter = None
    if tensorboard_dir is not None:
        from fedzoo.tensorboard_log import TensorBoardReporter

        reporter = TensorBoardReporter(tensorboard_dir)
    bar = _progress(progress, config, budget)
    hooks = [h for h in (None if reporter is None else reporter.progress, bar) if h is not None]

    def on_progress(row: dict[str, Any], total: int) -> None:
        for hook in hooks:
            hook(row, total)

    if reporter is not None:
        on_progress.start = reporter.start  # type: ignore[attr-defined]

    try:
        with invocation(call):
            result = run_federation(problem, config, out_dir=out_dir,
                                    progress=on_progress if hooks else None,
                                    round_callback=callback, query_budget=budget,
                                    on_client_error=on_client_error)
        if reporter is not None:
            reporter.finish(result.history)
    finally:
        if reporter is not None:
            reporter.close()
        if bar is not None:
            bar.close()
    return result


def _check_budget(budget: Any) -> int:
    """``budget`` as an int (0: none), or a ConfigError saying what is expected."""
    from fedzoo.errors import ConfigError

    if budget is None:
        return 0
    if isinstance(budget, float) and budget.is_integer():
        budget = int(budget)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"budget = {budget!r} is not allowed; expected a whole number of client "
                          "queries >= 1, or None for no budget.")
    return int(budget)


def _config(values: dict[str, Any]) -> RunConfig:
    """RunConfig.from_mapping with errors that name the options as this function takes
    them (snake_case), not as the CLI and config files do (kebab-case)."""
    from fedzoo.errors import ConfigError

    try:
        return RunConfig.from_mapping(values)
    except ConfigError as err:
        text = str(err)
        for key in sorted(RunConfig.keys(), key=len, reverse=True):
            if "-" in key:
                text = text.replace(f"'{key}'", f"'{key.replace('-', '_')}'").replace(
                    f" {key},", f" {key.replace('-', '_')},").replace(f" {key}.", f" {key.replace('-', '_')}.")
        raise ConfigError(text) from None


class _Progress:
    """``progress=``: a tqdm bar over queries (with a budget) or rounds, a plain line per
    round without tqdm, or the user's function called with every row."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any] | None, total: int, unit: str) -> None:
        self.fn, self.unit, self.bar = fn, unit, None
        if fn is None:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, unit=unit, desc="fedzoo", leave=True)
            except ImportError:
                self.bar = None
        self.total, self.done = total, 0

    def __call__(self, row: dict[str, Any], total_rounds: int) -> None:
        if self.fn is not None:
            self.fn(dict(row))
            return
        now = int(row["queries"]) if self.unit == "queries" else int(row["round"])
        value = float(row["reported_value"])
        text = f"{value:.6g}" if math.isfinite(value) else "not yet reported"
        if self.bar is not None:
            self.bar.update(max(0, now - self.done))
            self.bar.set_postfix_str(f"round {row['round']}, F {text}", refresh=False)
        else:
            import sys

            print(f"fedzoo: round {row['round']}: {row['queries']} queries, reported F {text}",
                  file=sys.stderr, flush=True)
        self.done = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(progress: Any, config: RunConfig, budget: int) -> _Progress | None:
    if progress is False or progress is None:
        return None
    if budget:
        total, unit = budget, "queries"
    else:
        total, unit = config.rounds, "rounds"
    return _Progress(progress if callable(progress) else None, total, unit)


def _method_table() -> str:
    """The registered methods, one line each (appended to :func:`minimize`'s docs)."""
    from fedzoo.methods import methods

    lines = ["", "    Registered methods (``method=``):", ""]
    for m in methods():
        lines.append(f"    * ``{m.name}``: {m.summary}")
    return "\n".join(lines) + "\n"


minimize.__doc__ = (minimize.__doc__ or "") + _method_table()

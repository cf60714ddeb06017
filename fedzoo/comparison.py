"""Comparing methods fairly: the comparison table and ``fedzoo.compare``.

A comparison gives every method the same **client-query budget** (or, without one, the
same rounds, which is not fair when methods spend differently per round: the table says
which axis was equalised). The table reports per method

* ``final_value``, ``best_value`` and ``total_queries`` / ``exchanges`` spent;
* ``best_at_<p>%``: the best value F reached within p % of the budget (p = 10, 25, 50,
  100), the anytime view: which method is best at a small budget and which at a large
  one;
* ``queries_to_<target>`` and ``exchanges_to_<target>``: the client queries and the
  exchanges (message rounds between server and clients) until the value *first* reached
  the target (None: never). Targets come from **all** methods run: ``q=0.5``, ``q=0.9``
  and ``q=0.99`` of the way from F(x0) to F_L, the lowest final value of any method
  (Moré and Wild's relative targets: F* need not be known), and ``runner-up``, the
  lowest final value among the methods that did not reach F_L (how early the winner got
  where the next best method ended).

Importing this module loads no numpy (the CLI imports it before it sets up BLAS).
The values are ``history.csv``'s ``value`` column: F at the global point (simulator-
evaluated on the synthetic problems, otherwise what the clients reported).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: Targets at these fractions q of the way from F(x0) to the best final value of any method.
TARGET_LEVELS = (0.5, 0.9, 0.99)
#: The anytime columns: best value within these fractions of the budget.
BUDGET_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def _has_sync(method: str) -> bool:
    from fedzoo.methods import get_method

    return bool(get_method(method).has_sync)


def _exact(method: str) -> bool:
    from fedzoo.methods import get_method

    return bool(get_method(method).exact_gradients)


def exchanges_per_row(rows: Sequence[Mapping[str, Any]], method: str) -> list[int]:
    """Cumulative exchanges (server -> clients -> server message rounds) at each row:
    one per round, two for methods with a sync exchange, and one more in the last row
    when a single-exchange method's final evaluation reported F(x_R)."""
    per_round = 2 if _has_sync(method) else 1
    out = [int(r["round"]) * per_round for r in rows]
    if len(rows) > 1 and per_round == 1 and math.isfinite(float(rows[-1].get("reported_value", math.nan))):
        out[-1] += 1
    return out


def first_reach(rows: Sequence[Mapping[str, Any]], target: float, axis: Sequence[int]) -> int | None:
    """``axis`` (queries or exchanges) at the first row whose value <= target."""
    for row, x in zip(rows, axis):
        v = float(row["value"])
        if math.isfinite(v) and v <= target:
            return int(x)
    return None


def best_within(rows: Sequence[Mapping[str, Any]], queries: float) -> float | None:
    """The lowest value over the rows whose cumulative queries are <= ``queries``."""
    vals = [float(r["value"]) for r in rows if r["queries"] <= queries and math.isfinite(float(r["value"]))]
    return min(vals) if vals else None


def targets_of(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """The targets of one comparison (see the module doc), from all methods run."""
    finals = {m: float(rows[-1]["value"]) for m, rows in histories.items()}
    good = {m: v for m, v in finals.items() if math.isfinite(v)}
    targets: dict[str, float] = {}
    if not good:
        return targets
    best = min(good.values())
    start = float(next(iter(histories.values()))[0]["value"])
    if math.isfinite(start) and best < start:
        for q in TARGET_LEVELS:
            targets[f"q={q:g}"] = start - q * (start - best)
    others = [v for v in good.values() if v > best]
    if others:
        targets["runner-up"] = min(others)
    return targets


def comparison_table(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], budget: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The comparison table's rows (one per method) and its targets.

    ``budget``: the client-query budget every method was given; the ``best_at_<p>%``
    columns are fractions of it (without a budget, of the largest spend of any method).
    """
    targets = targets_of(histories)
    ref = budget or max((int(rows[-1]["queries"]) for rows in histories.values()), default=0)
    table = []
    for method, rows in histories.items():
        exchanges = exchanges_per_row(rows, method)
        finite = [float(r["value"]) for r in rows if math.isfinite(float(r["value"]))]
        row: dict[str, Any] = {
            "method": method,
            "final_value": float(rows[-1]["value"]),
            "best_value": min(finite) if finite else math.nan,
            "total_queries": int(rows[-1]["queries"]),
            "exchanges": exchanges[-1],
        }
        for p in BUDGET_FRACTIONS:
            row[f"best_at_{p * 100:g}%"] = best_within(rows, p * ref) if ref else None
        queries = [int(r["queries"]) for r in rows]
        for name, value in targets.items():
            row[f"queries_to_{name}"] = first_reach(rows, value, queries)
            row[f"exchanges_to_{name}"] = first_reach(rows, value, exchanges)
        row["seconds_per_round"] = float(statistics.median([r["wall_s"] for r in rows[1:]])) if len(rows) > 1 else 0.0
        row["gradients"] = "exact (reference)" if _exact(method) else "zeroth-order"
        table.append(row)
    return table, targets


def winners(table: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """The methods with the lowest ``key`` (ties kept; rows without a value left out)."""
    vals = [(r[key], r["method"]) for r in table if r.get(key) is not None and math.isfinite(r[key])]
    if not vals:
        return []
    low = min(v for v, _ in vals)
    return [m for v, m in vals if v == low]


def budget_lines(table: Sequence[Mapping[str, Any]], budget: int | None) -> list[str]:
    """'Best at each budget' sentences from the table's anytime columns."""
    ref = budget or max((r["total_queries"] for r in table), default=0)
    lines = []
    for p in BUDGET_FRACTIONS:
        key = f"best_at_{p * 100:g}%"
        win = winners(table, key)
        if win:
            value = next(r[key] for r in table if r["method"] == win[0])
            lines.append(f"best within {p * 100:g}% of the budget ({int(p * ref)} queries): "
                         f"{' = '.join(win)} ({value:.6g})")
    return lines


def spread(values: Sequence[float | int | None]) -> tuple[Any, Any, Any, int]:
    """(median, min, max, how many are not None) of per-seed values; None = never.

    The median counts a None as +infinity (so it is None when most seeds never got
    there); min is over the seeds that got there, max is None when one did not.
    """
    got = [v for v in values if v is not None]
    if not got:
        return None, None, None, 0
    ranked = sorted(got) + [math.inf] * (len(values) - len(got))
    med = float(statistics.median(ranked))
    as_int = all(isinstance(v, int) or type(v).__name__.startswith(("int", "uint")) for v in got)
    median = None if not math.isfinite(med) else (round(med) if as_int and med.is_integer() else med)
    return median, min(got), max(got) if len(got) == len(values) else None, len(got)


def comparison_table_seeds(
    histories: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], seeds: Sequence[int],
    budget: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """:func:`comparison_table` over several seeds: per method the median, min and max of
    every numeric column (targets are set per seed, from that seed's runs; ``reached``:
    seeds that got there), median s/round. Returns the rows and the targets (name -> one
    value per seed)."""
    per_seed = [comparison_table({m: runs[i] for m, runs in histories.items()}, budget)
                for i in range(len(seeds))]
    names: list[str] = []
    for _, targets in per_seed:
        names += [k for k in targets if k not in names]
    table = []
    for j, method in enumerate(histories):
        rows = [tab[j] for tab, _ in per_seed]
        med, lo, hi, _ = spread([r["final_value"] for r in rows])
        row: dict[str, Any] = {"method": method, "seeds": ";".join(map(str, seeds)),
                               "final_value_median": med, "final_value_min": lo,
                               "final_value_max": hi,
                               "total_queries_median": spread([r["total_queries"] for r in rows])[0],
                               "exchanges_median": spread([r["exchanges"] for r in rows])[0]}
        for p in BUDGET_FRACTIONS:
            key = f"best_at_{p * 100:g}%"
            row[f"{key}_median"] = spread([r[key] for r in rows])[0]
        for name in names:
            for axis in ("queries", "exchanges"):
                qs = [r.get(f"{axis}_to_{name}") for r in rows]
                qmed, qlo, qhi, got = spread(qs)
                row[f"{axis}_to_{name}_median"] = qmed
                row[f"{axis}_to_{name}_min"] = qlo
                row[f"{axis}_to_{name}_max"] = qhi
                if axis == "queries":
                    row[f"queries_to_{name}_reached"] = f"{got}/{len(rows)}"
        row["seconds_per_round"] = float(statistics.median([r["seconds_per_round"] for r in rows]))
        row["gradients"] = rows[0]["gradients"]
        table.append(row)
    targets = {name: [t.get(name, math.nan) for _, t in per_seed] for name in names}
    return table, targets


@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes:
        table: one row per method (:func:`comparison_table`, or over several seeds
            :func:`comparison_table_seeds`: medians with min and max).
        targets: the targets (name -> value, or one value per seed).
        histories: method -> the history rows of each seed's run.
        results: method -> each seed's :class:`~fedzoo.engine.RunResult`.
        budget: the client-query budget every method was given (None: equal rounds).
        seeds: the run seeds.
    """

    table: list[dict[str, Any]]
    targets: dict[str, Any]
    histories: dict[str, list[list[dict[str, Any]]]]
    results: dict[str, list[Any]] = field(repr=False)
    budget: int | None
    seeds: list[int]

    def best_at(self) -> dict[str, list[str]]:
        """Budget fraction (``"10%"`` ...) -> the method(s) with the lowest value within it."""
        suffix = "_median" if len(self.seeds) > 1 else ""
        return {f"{p * 100:g}%": winners(self.table, f"best_at_{p * 100:g}%{suffix}")
                for p in BUDGET_FRACTIONS}

    def __str__(self) -> str:
        suffix = "_median" if len(self.seeds) > 1 else ""
        axis = (f"every method had the same budget of {self.budget} client queries" if self.budget
                else "every method ran the same rounds (not the same queries)")
        cols = ["final_value", "total_queries", "exchanges",
                *(f"best_at_{p * 100:g}%" for p in BUDGET_FRACTIONS),
                *(f"queries_to_{t}" for t in self.targets)]
        lines = [f"{axis}; seeds {','.join(map(str, self.seeds))}"
                 + (" (medians)" if suffix else ""), "method  " + "  ".join(cols)]
        for row in self.table:
            cells = []
            for c in cols:
                key = c + suffix if c + suffix in row else c
                v = row.get(key)
                cells.append("-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v))
            lines.append(f"{row['method']}  " + "  ".join(cells))
        return "\n".join(lines)


def compare(
    objectives: Sequence[Callable[[np.ndarray], Any]],
    x0: Any,
    *,
    methods: Sequence[str] = ("fzoos", "fedzo", "fedprox", "scaffold1", "scaffold2"),
    budget: int | None = None,
    seeds: Sequence[int] = (0,),
    rounds: int | None = None,
    weights: Sequence[float] | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **options: Any,
) -> Comparison:
    """Run several methods on your own black boxes at equal budgets and compare them.

    Args:
        objectives, x0, weights: as :func:`fedzoo.minimize` (one callable per client).
        methods: registered methods to run (each at its defaults unless ``options``
            say otherwise; an option a method does not read is ignored by it).
        budget: the client-query budget of every method (the fair default); None runs
            every method for ``rounds`` rounds (default 50) instead.
        seeds: run seeds; with several, the table holds medians and min-max.
        out_dir: if given, each run's history.csv / summary.json go to
            ``out_dir/<method>/seed<k>`` and the table to ``out_dir/comparison.csv``
            (the CLI's layout).
        progress: a progress bar per run (as ``minimize(progress=True)``).
        **options: any other option of :func:`fedzoo.minimize`.

    Returns:
        A :class:`Comparison` (``str()`` prints the table; ``.best_at()`` says which
        method is best at which fraction of the budget).
    """
    from fedzoo.api import minimize
    from fedzoo.errors import ConfigError
    from fedzoo.methods import method_names
    from fedzoo.outdir import prepare_out_dir
    from fedzoo.results import write_csv

    methods = list(methods)
    unknown = [m for m in methods if m not in method_names()]
    if unknown or not methods:
        raise ConfigError(f"Unknown method(s) {unknown or methods!r}; expected a list of registered "
                          f"methods: {list(method_names())}.")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds = {seeds!r} is not allowed; expected distinct integers.")
    if out_dir is not None:
        prepare_out_dir(out_dir, overwrite=overwrite)
    histories: dict[str, list[list[dict[str, Any]]]] = {m: [] for m in methods}
    results: dict[str, list[Any]] = {m: [] for m in methods}
    for method in methods:
        for seed in seeds:
            sub = None if out_dir is None else Path(out_dir) / method / f"seed{seed}"
            if sub is not None:
                sub.mkdir(parents=True, exist_ok=True)
            res = minimize(objectives, x0, weights=weights, method=method, budget=budget,
                           rounds=rounds, seed=seed, out_dir=sub, overwrite=True,
                           progress=progress, **options)
            histories[method].append(res.history)
            results[method].append(res)
    if len(seeds) == 1:
        table, targets = comparison_table({m: h[0] for m, h in histories.items()}, budget)
    else:
        table, targets = comparison_table_seeds(histories, seeds, budget)
    if out_dir is not None:
        write_csv(Path(out_dir) / "comparison.csv", list(table[0]), table)
    return Comparison(table, targets, histories, results, budget, seeds)

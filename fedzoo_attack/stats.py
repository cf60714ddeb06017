"""Success statistics of attack outcomes and the query budgets they are read at.

Everything here works on outcomes that already exist (:class:`~fedzoo_attack.attack_run.ImageOutcome`
or anything with ``success`` and ``queries_to_success``); nothing runs a federation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedzoo.errors import ConfigError

DEFAULT_BUDGETS = (5000, 10000, 20000)


def check_budget(budget: int | None) -> int | None:
    if budget is None:
        return None
    if int(budget) != budget or budget < 1:
        raise ConfigError(f"budget must be a positive integer (total queries), got {budget!r}.")
    return int(budget)


def success_rate_at(outcomes: Sequence[Any], queries: float) -> float:
    """Share of images fooled with at most ``queries`` total queries."""
    if not outcomes:
        return math.nan
    hits = [o for o in outcomes if o.success and o.queries_to_success is not None]
    return sum(o.queries_to_success <= queries for o in hits) / len(outcomes)  # type: ignore[operator]


def queries_to_rate(outcomes: Sequence[Any], rate: float) -> int | None:
    """Fewest total queries q with success_rate_at(q) >= rate, or None if never reached.

    With K images this is the ceil(rate K)-th smallest queries-to-success.
    """
    if not 0 < rate <= 1:
        raise ConfigError(f"rate must lie in (0, 1], got {rate!r}.")
    need = math.ceil(rate * len(outcomes) - 1e-9)
    qs = sorted(o.queries_to_success for o in outcomes if o.queries_to_success is not None)
    return int(qs[need - 1]) if 0 < need <= len(qs) else None


def attack_method_summary(
    outcomes: Sequence[Any], budgets: Sequence[int] = DEFAULT_BUDGETS
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


def success_curve(
    outcomes: Sequence[Any], max_queries: float
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

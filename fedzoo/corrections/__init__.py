r"""Local-update corrections, as pure functions of the local iterate.

Each returns the term added to the local gradient estimate at local step t:

* none (``fedzo``, ``zord``, ``fo``): 0.
* ``fedprox``: :math:`\mu_{prox} (x - x_{r-1})`.
* ``scaffold1`` / ``scaffold2``: :math:`c - c_i` (server control variate minus the
  client's own, both from the previous round).
* ``fzoos``: :math:`\gamma_t (\nabla\hat\mu_{global}(x) - \nabla\hat\mu_i(x))` with
  :math:`\gamma_t = \gamma / t` (the paper's schedule; ``gamma-schedule`` also offers
  :math:`\gamma/\sqrt t` and a constant :math:`\gamma`, see BENCHMARKS.md) and both RFF
  surrogates from the previous round's weights,
  evaluated at the *current* local iterate.
"""

from __future__ import annotations

import numpy as np

from fedzoo.surrogates.rff import RandomFourierFeatures


def fedprox_term(x: np.ndarray, x_global: np.ndarray, mu: float) -> np.ndarray:
    return mu * (x - x_global)


def scaffold_term(c_global: np.ndarray | None, c_own: np.ndarray | None) -> np.ndarray | float:
    if c_global is None or c_own is None:
        return 0.0
    return c_global - c_own


#: gamma_t of local step t = 1, 2, ... for each ``gamma-schedule``.
GAMMA_SCHEDULES = {
    "inverse": lambda gamma, t: gamma / t,  # the paper's (docs/design.md §2)
    "inverse-sqrt": lambda gamma, t: gamma / float(np.sqrt(t)),
    "constant": lambda gamma, t: gamma,
}


def gamma_at(gamma: float, t: int, schedule: str = "inverse") -> float:
    """The correction weight gamma_t of local step t = 1, 2, ...

    ``inverse``: gamma / t (docs/design.md §2, the paper); ``inverse-sqrt``:
    gamma / sqrt(t); ``constant``: gamma.
    """
    try:
        rule = GAMMA_SCHEDULES[schedule]
    except KeyError:
        raise ValueError(
            f"Unknown gamma schedule {schedule!r}; expected one of {list(GAMMA_SCHEDULES)}."
        ) from None
    return rule(gamma, t)


def fzoos_term(
    x: np.ndarray,
    t: int,
    gamma: float,
    rff: RandomFourierFeatures | None,
    w_global: np.ndarray | None,
    w_own: np.ndarray | None,
    schedule: str = "inverse",
) -> np.ndarray | float:
    """gamma_t * (grad of phi.w_global - grad of phi.w_own) at x; one O(M d) pass."""
    if rff is None or w_global is None or w_own is None or gamma == 0.0:
        return 0.0
    return gamma_at(gamma, t, schedule) * rff.gradient(x, w_global - w_own, single=True)

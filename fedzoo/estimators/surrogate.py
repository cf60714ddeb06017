r"""The trajectory-informed surrogate gradient (FZooS / ZORD local estimator).

At a point x the client conditions an exact GP on the ``gp_history`` history points
nearest to x and returns the analytic gradient of the posterior mean (never finite
differences). Hyper-parameters are fitted by maximum marginal likelihood once per round
(:meth:`TrajectorySurrogate.refit`) and reused within the round.

Active queries rank uniform candidates in a box around x by the trace of the GP's
posterior gradient covariance and keep the most uncertain.

Query cost: none here; the caller queries the points this module selects.
"""

from __future__ import annotations

import numpy as np

from fedzoo.history import QueryHistory
from fedzoo.surrogates.gp import GaussianProcess, GPHyper, fit_hyperparameters, nearest_indices


class TrajectorySurrogate:
    """GP surrogate over a client's query history.

    Args:
        history: the client's points and values.
        gp_history: number of nearest points the GP conditions on.
        kernel: "se" or "matern52".
        hyper: current hyper-parameters (None until the first :meth:`refit`).
    """

    def __init__(
        self, history: QueryHistory, gp_history: int, kernel: str, hyper: GPHyper | None
    ) -> None:
        self.history, self.gp_history, self.kernel, self.hyper = history, gp_history, kernel, hyper

    def refit(
        self, x: np.ndarray, rng: np.random.Generator, restarts: int, num_points: int
    ) -> GPHyper:
        """Fit hyper-parameters on the ``num_points`` points nearest to x (warm-started
        from the current ones). Once per round: O(num_points^3) per likelihood call."""
        idx = nearest_indices(self.history.X, x, min(num_points, self.gp_history))
        self.hyper = fit_hyperparameters(
            self.history.X[idx], self.history.y[idx], kernel=self.kernel, init=self.hyper,
            restarts=restarts, rng=rng,
        )
        return self.hyper

    def gp_at(self, x: np.ndarray) -> GaussianProcess:
        """The GP conditioned on the history points nearest to x, centred at x."""
        if self.hyper is None:
            raise RuntimeError("TrajectorySurrogate.refit must run before the GP is used.")
        idx = nearest_indices(self.history.X, x, self.gp_history)
        return GaussianProcess(
            self.history.X[idx], self.history.y[idx], self.hyper, kernel=self.kernel, center=x
        )

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """Posterior-mean gradient at x (length d, units of f)."""
        return self.gp_at(x).mean_gradient(x)[0]

    def most_uncertain(
        self,
        x: np.ndarray,
        rng: np.random.Generator,
        num_candidates: int,
        num_points: int,
        radius: float,
    ) -> np.ndarray:
        """The ``num_points`` of ``num_candidates`` uniform candidates in x +- radius
        (clipped to the box) with the largest gradient-uncertainty trace: k x d."""
        if num_points <= 0:
            return np.empty((0, x.size))
        C = np.clip(x + rng.uniform(-radius, radius, size=(num_candidates, x.size)), 0.0, 1.0)
        if num_points >= num_candidates:
            return C
        trace = self.gp_at(x).gradient_uncertainty_trace(C)
        return C[np.argpartition(-trace, num_points - 1)[:num_points]]


def box_points(
    x: np.ndarray, rng: np.random.Generator, num: int, radius: float
) -> np.ndarray:
    """``num`` uniform points in x +- radius clipped to the unit box (initial design)."""
    return np.clip(x + rng.uniform(-radius, radius, size=(num, x.size)), 0.0, 1.0)

r"""``fedzo-gauss``: FedZO with the Gaussian-smoothing estimator (the example of docs/development.md).

The whole method in one module, to show what adding a method takes (docs/development.md, "How to add
a method"). It is FedZO (:class:`~fedzoo.methods.finite_difference.FedZO`: no
correction, one exchange, f_i queried at each new iterate) with another local gradient
estimate, the two-point Gaussian-smoothing estimator of Nesterov and Spokoiny (2017):

    ĝ = (1/Q) Σ_q (f(x + μ u_q) − f(x)) / μ · u_q,   u_q ~ N(0, I_d),

an unbiased estimate of the gradient of the smoothed f_μ(x) = E f(x + μu). Unlike RGF,
the directions are neither orthonormal nor rescaled by d/Q. A point x + μu_q outside the
unit box is mirrored (x − μu_q, with the sign of its difference flipped) so that every
query stays in the box. Query cost per local step: Q = ``rgf-directions`` points, plus
the new iterate as in FedZO.
"""

from __future__ import annotations

import numpy as np

from fedzoo.methods import register
from fedzoo.methods.base import TrainContext
from fedzoo.methods.finite_difference import FedZO


def gaussian_smoothing_gradient(f, x: np.ndarray, fx: float, rng: np.random.Generator,
                                num_directions: int, mu: float) -> np.ndarray:
    """(1/Q) Σ_q (f(x + μu_q) − f(x))/μ u_q with Gaussian u_q, points kept in the box."""
    U = rng.standard_normal((num_directions, x.size))
    forward = x + mu * U
    inside = np.all((forward >= 0.0) & (forward <= 1.0), axis=1)
    sign = np.where(inside, 1.0, -1.0)  # outside: query x - mu u, the difference flips
    points = np.clip(x + sign[:, None] * mu * U, 0.0, 1.0)
    diffs = sign * (np.asarray(f(points), dtype=np.float64) - fx) / mu
    return diffs @ U / num_directions


@register
class FedZOGauss(FedZO):
    """FedZO whose local steps follow Gaussian-smoothing estimates."""

    name = "fedzo-gauss"
    summary = "fedzo with Gaussian-smoothing estimates (the example method of docs/development.md); 1 exchange"
    rank = 35
    options = ("rgf-directions", "fd-step")

    def gradient(self, ctx: TrainContext, x: np.ndarray, fx: float) -> np.ndarray:
        c = ctx.config
        return gaussian_smoothing_gradient(ctx.session.query, x, fx, ctx.rng, c.rgf_directions, c.fd_step)

    def estimate_queries(self, config, dim: int) -> int:
        return config.rgf_directions

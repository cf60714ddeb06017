r"""Finite-difference gradient estimators (RGF and coordinate-wise).

RGF (random gradient-free) with Q orthonormal directions u_1..u_Q (Gaussian, then QR):

.. math:: \hat g = \frac{d}{Q} \sum_{j=1}^{Q} \frac{f(x + \mu u_j) - f(x)}{\mu} u_j .

With orthonormal unit directions ``E[(d/Q) \sum u_j u_j^T] = I``, so ``\hat g`` is an
unbiased estimate of the gradient of a linear function (the ``d/Q`` scaling). A direction
whose forward point leaves the unit box is used backwards: ``(f(x) - f(x - \mu u))/\mu``.

Coordinate-wise: the same with the d unit vectors and scaling 1.

Query cost: Q (or d) points per estimate; the base value f(x) is passed in by the caller
(reused from the query that produced it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def orthonormal_directions(rng: np.random.Generator, dim: int, num: int) -> np.ndarray:
    """``num`` orthonormal directions (rows, num x dim) from Gaussian draws; num <= dim."""
    num = min(num, dim)
    G = rng.standard_normal((dim, num))
    Q, R = np.linalg.qr(G)
    return (Q * np.sign(np.diag(R))).T


def directional_points(x: np.ndarray, U: np.ndarray, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """Points x + s_j mu u_j inside the box with signs s_j = +1 (forward) or -1 (backward)."""
    P = x + mu * U
    outside = np.any((P < 0.0) | (P > 1.0), axis=1)
    signs = np.where(outside, -1.0, 1.0)
    P = np.clip(x + (signs * mu)[:, None] * U, 0.0, 1.0)
    return P, signs


def difference_gradient(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    fx: float,
    U: np.ndarray,
    mu: float,
    scale: float,
) -> np.ndarray:
    """``scale * sum_j s_j (f(x + s_j mu u_j) - f(x)) / mu * u_j``. Query cost: len(U)."""
    P, signs = directional_points(x, U, mu)
    y = f(P)
    return scale * ((signs * (y - fx) / mu) @ U)


def rgf_gradient(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    fx: float,
    rng: np.random.Generator,
    num_directions: int,
    mu: float,
) -> np.ndarray:
    """RGF estimate with Q = num_directions orthonormal Gaussian directions.

    Query cost: Q.
    """
    U = orthonormal_directions(rng, x.size, num_directions)
    return difference_gradient(f, x, fx, U, mu, x.size / U.shape[0])


def coordinate_gradient(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, fx: float, mu: float
) -> np.ndarray:
    """Coordinate-wise forward (backward at the upper face) differences. Query cost: d."""
    return difference_gradient(f, x, fx, np.eye(x.size), mu, 1.0)


def _coordinate(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, fx: float,
                rng: np.random.Generator, num_directions: int, mu: float) -> np.ndarray:
    return coordinate_gradient(f, x, fx, mu)


#: The estimators the ``fd-estimator`` option names, with one signature:
#: ``(f, x, f(x), rng, rgf-directions, fd-step) -> gradient estimate``.
FD_ESTIMATORS: dict[str, Callable[..., np.ndarray]] = {"rgf": rgf_gradient, "coordinate": _coordinate}

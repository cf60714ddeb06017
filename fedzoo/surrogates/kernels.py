r"""Stationary isotropic kernels written through the squared distance.

Each kernel is ``k(x, x') = s^2 \kappa(r^2 / l^2)`` with ``r = |x - x'|``. What the GP
needs, vectorised over all pairs at once:

* ``value(R2, l)``: the unit-variance kernel matrix for squared distances ``R2``;
* ``grad_factor(R2, l)``: ``h`` with :math:`\partial k(x, x')/\partial x = -s^2 h (x - x')`;
* ``dlog_l(R2, l)``: :math:`\partial k / \partial \log l` (unit variance), for the
  marginal-likelihood gradient (``value_and_dlog_l`` gives both with one exponential);
* ``derivative_variance(l)``: :math:`h(0)`, the prior variance of each partial
  derivative (per unit ``s^2``): ``1/l^2`` for SE, ``5/(3 l^2)`` for Matérn-5/2.
"""

from __future__ import annotations

import numpy as np

from fedzoo.errors import UnknownNameError


class SquaredExponential:
    r"""k = exp(-r^2 / (2 l^2)); \partial k/\partial x = -k (x - x') / l^2."""

    name = "se"

    @staticmethod
    def value(R2: np.ndarray, lengthscale: float) -> np.ndarray:
        return np.exp(-0.5 * R2 / lengthscale**2)

    @staticmethod
    def grad_factor(R2: np.ndarray, lengthscale: float) -> np.ndarray:
        return np.exp(-0.5 * R2 / lengthscale**2) / lengthscale**2

    @staticmethod
    def dlog_l(R2: np.ndarray, lengthscale: float) -> np.ndarray:
        return np.exp(-0.5 * R2 / lengthscale**2) * R2 / lengthscale**2

    @staticmethod
    def value_and_dlog_l(R2: np.ndarray, lengthscale: float) -> tuple[np.ndarray, np.ndarray]:
        """``value`` and ``dlog_l`` together, sharing one exponential."""
        s = R2 * (1.0 / lengthscale**2)
        k = np.exp(-0.5 * s)
        s *= k
        return k, s

    @staticmethod
    def derivative_variance(lengthscale: float) -> float:
        return 1.0 / lengthscale**2


class Matern52:
    r"""k = (1 + \sqrt5 r/l + 5 r^2/(3 l^2)) exp(-\sqrt5 r / l).

    \partial k/\partial x = -(5/(3 l^2)) (1 + \sqrt5 r/l) exp(-\sqrt5 r/l) (x - x').
    """

    name = "matern52"

    @staticmethod
    def value(R2: np.ndarray, lengthscale: float) -> np.ndarray:
        s = np.sqrt(5.0 * np.maximum(R2, 0.0)) / lengthscale
        return (1.0 + s + s * s / 3.0) * np.exp(-s)

    @staticmethod
    def grad_factor(R2: np.ndarray, lengthscale: float) -> np.ndarray:
        s = np.sqrt(5.0 * np.maximum(R2, 0.0)) / lengthscale
        return 5.0 / (3.0 * lengthscale**2) * (1.0 + s) * np.exp(-s)

    @staticmethod
    def dlog_l(R2: np.ndarray, lengthscale: float) -> np.ndarray:
        s = np.sqrt(5.0 * np.maximum(R2, 0.0)) / lengthscale
        # d/dlog l of (1 + s + s^2/3) e^{-s} with ds/dlog l = -s:  s^2 (1 + s) e^{-s} / 3
        return s * s * (1.0 + s) * np.exp(-s) / 3.0

    @staticmethod
    def value_and_dlog_l(R2: np.ndarray, lengthscale: float) -> tuple[np.ndarray, np.ndarray]:
        """``value`` and ``dlog_l`` together, sharing one exponential."""
        s = np.sqrt(5.0 * np.maximum(R2, 0.0)) / lengthscale
        e = np.exp(-s)
        return (1.0 + s + s * s / 3.0) * e, s * s * (1.0 + s) * e / 3.0

    @staticmethod
    def derivative_variance(lengthscale: float) -> float:
        return 5.0 / (3.0 * lengthscale**2)


KERNELS = {"se": SquaredExponential, "matern52": Matern52}


def get_kernel(name: str) -> type[SquaredExponential] | type[Matern52]:
    """The kernel class registered under ``name`` ("se" or "matern52")."""
    try:
        return KERNELS[name]
    except KeyError:
        raise UnknownNameError(f"Unknown kernel {name!r}; expected one of {sorted(KERNELS)}.") from None


def squared_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pairwise squared distances between the rows of A (n x d) and B (m x d): n x m."""
    a2 = np.einsum("ij,ij->i", A, A)
    b2 = np.einsum("ij,ij->i", B, B)
    return np.maximum(a2[:, None] + b2[None, :] - 2.0 * (A @ B.T), 0.0)

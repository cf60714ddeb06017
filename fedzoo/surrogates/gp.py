r"""Exact Gaussian-process surrogate with an analytic posterior-mean gradient.

Given observations ``(x_tau, y_tau)``, ``tau = 1..n``, standardised to
``\tilde y = (y - m)/s_y``, and a stationary kernel ``k = s^2 \kappa``,

.. math::

    \mu(x) = m + s_y k(x, X)^T \alpha, \quad \alpha = (K + \sigma^2 I)^{-1} \tilde y,

    \nabla\mu(x) = s_y J(x)^T \alpha, \quad
    J(x)_\tau = \partial k(x, x_\tau)/\partial x = -s^2 h_\tau (x - x_\tau).

The posterior covariance of the gradient is
``\kappa I - J^T (K + \sigma^2 I)^{-1} J`` with ``\kappa = s^2 h(0)``. Its trace,
``d \kappa - tr(A J J^T)`` with ``A = (K + \sigma^2 I)^{-1}``, ranks candidate points for
active queries (the spectral norm is useless when n < d). Expanding
``(c - x_\tau)\cdot(c - x_{\tau'})`` through Gram matrices gives the trace for m candidates
in O(m n^2 + m n d) without forming any d x d or n x d Jacobian per candidate.

Coordinates are centred at a reference point before any inner product so the Gram
expansion does not lose digits far from the origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from fedzoo.errors import ShapeError
from fedzoo.surrogates._lapack import cho_solve_lower, potri_lower
from fedzoo.surrogates.kernels import get_kernel, squared_distances


@dataclass(frozen=True)
class GPHyper:
    """GP hyper-parameters in standardised-y units.

    Attributes:
        lengthscale: l > 0, in unit-box coordinates.
        signal_var: s^2 > 0.
        noise_var: sigma^2 > 0.
    """

    lengthscale: float
    signal_var: float = 1.0
    noise_var: float = 1e-4

    def as_log(self) -> np.ndarray:
        return np.log([self.lengthscale, self.signal_var, self.noise_var])

    @classmethod
    def from_log(cls, theta: np.ndarray) -> GPHyper:
        ls, s2, n2 = np.exp(theta)
        return cls(float(ls), float(s2), float(n2))


def _standardise(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean = float(np.mean(y))
    std = float(np.std(y))
    if not np.isfinite(std) or std < 1e-12 * max(1.0, abs(mean)):
        std = 1.0
    return (y - mean) / std, mean, std


def _cho_factor(K: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor, for ``potrs`` / ``potri`` (:mod:`fedzoo.surrogates._lapack`).

    numpy's ``cholesky`` releases the GIL (scipy's LAPACK wrappers do not; the solves and
    inverses go through :mod:`fedzoo.surrogates._lapack`, which releases it too), so client
    threads factorise in parallel.
    """
    return np.linalg.cholesky(K)


def _cholesky(K: np.ndarray) -> tuple[np.ndarray, bool]:
    """Lower Cholesky factor of K, adding growing jitter if K is numerically singular."""
    jitter = 0.0
    scale = float(np.mean(np.diag(K)))
    for _ in range(6):
        try:
            return _cho_factor(K + jitter * np.eye(K.shape[0]) if jitter else K), True
        except linalg.LinAlgError:
            jitter = scale * 1e-10 if jitter == 0.0 else jitter * 100.0
    raise linalg.LinAlgError("GP kernel matrix is not positive definite even with jitter.")


def _chol_inverse(c: np.ndarray) -> np.ndarray:
    """(L L^T)^{-1} from a lower Cholesky factor L (LAPACK potri, symmetrised)."""
    inv = potri_lower(c)
    # potri fills the lower triangle only; mirror it (two dense passes, no index arrays)
    lower = np.tril(inv, -1)
    diag = np.diag(inv).copy()
    np.add(lower, lower.T, out=inv)
    inv[np.diag_indices_from(inv)] = diag
    return inv


class GaussianProcess:
    """A GP conditioned on n points (n x d array X, n values y).

    Args:
        X: n x d observed points.
        y: n observed values.
        hyper: hyper-parameters (standardised-y units).
        kernel: "se" (default) or "matern52".
        center: reference point for centring coordinates (default: the mean of X).
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        hyper: GPHyper,
        kernel: str = "se",
        center: np.ndarray | None = None,
    ) -> None:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or y.shape != (X.shape[0],) or X.shape[0] == 0:
            raise ShapeError(f"Expected X n x d and y of length n, got {X.shape=} and {y.shape=}.")
        self.kernel = get_kernel(kernel)
        self.hyper = hyper
        self.dim = X.shape[1]
        self.center = X.mean(axis=0) if center is None else np.asarray(center, dtype=np.float64)
        self.Xc = X - self.center
        self.y_std, self.y_mean, self.y_scale = _standardise(y)
        self._gram = np.dot(self.Xc, self.Xc.T)
        self._sq = np.diag(self._gram).copy()
        R2 = np.maximum(self._sq[:, None] + self._sq[None, :] - 2.0 * self._gram, 0.0)
        K = hyper.signal_var * self.kernel.value(R2, hyper.lengthscale)
        K[np.diag_indices_from(K)] += hyper.noise_var
        self._chol = _cholesky(K)
        self.alpha = cho_solve_lower(self._chol[0], self.y_std)
        self._inverse: np.ndarray | None = None

    @property
    def num_points(self) -> int:
        return self.Xc.shape[0]

    def _cross(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centred queries (m x d), their inner products with the data and squared
        distances to it (both m x n)."""
        Qc = np.atleast_2d(np.asarray(Q, dtype=np.float64)) - self.center
        P = np.dot(Qc, self.Xc.T)  # np.dot releases the GIL (matmul may not)
        q2 = np.einsum("ij,ij->i", Qc, Qc)
        return Qc, P, np.maximum(q2[:, None] + self._sq[None, :] - 2.0 * P, 0.0)

    def predict_mean(self, Q: np.ndarray) -> np.ndarray:
        """Posterior mean at the m x d points Q, in y units (m values)."""
        _, _, R2 = self._cross(Q)
        k = self.hyper.signal_var * self.kernel.value(R2, self.hyper.lengthscale)
        return self.y_mean + self.y_scale * (k @ self.alpha)

    def mean_gradient(self, Q: np.ndarray) -> np.ndarray:
        """Gradient of the posterior mean at the m x d points Q (m x d, y units).

        ``grad mu(q) = -s_y s^2 sum_tau h_tau alpha_tau (q - x_tau)``, fully vectorised.
        """
        Qc, _, R2 = self._cross(Q)
        Hw = self.kernel.grad_factor(R2, self.hyper.lengthscale) * self.alpha  # m x n
        g = -(Qc * Hw.sum(axis=1, keepdims=True) - np.dot(Hw, self.Xc))
        return self.y_scale * self.hyper.signal_var * g

    def gradient_uncertainty_trace(self, Q: np.ndarray) -> np.ndarray:
        """Trace of the posterior covariance of the gradient at each of the m points Q.

        ``tr = d s^2 h(0) - tr(A J J^T)`` in standardised-y units (for ranking).
        Cost: O(m n^2 + m n d) after an O(n^3 + n^2 d) precomputation shared by calls.
        """
        if self._inverse is None:
            self._inverse = _chol_inverse(self._chol[0])
        A, G = self._inverse, self._gram
        Qc, P, R2 = self._cross(Q)
        H = self.kernel.grad_factor(R2, self.hyper.lengthscale)  # m x n
        q2 = np.einsum("ij,ij->i", Qc, Qc)
        HA = np.dot(H, A)
        t1 = q2 * np.einsum("ij,ij->i", HA, H)
        t2 = 2.0 * np.einsum("ij,ij->i", HA, H * P)
        t3 = np.einsum("ij,ij->i", np.dot(H, A * G), H)
        s2 = self.hyper.signal_var
        prior = self.dim * s2 * self.kernel.derivative_variance(self.hyper.lengthscale)
        return prior - s2 * s2 * (t1 - t2 + t3)

    def gradient_covariance(self, q: np.ndarray) -> np.ndarray:
        """Full d x d posterior covariance of the gradient at one point (tests only)."""
        qc, _, R2 = self._cross(q)
        h = self.kernel.grad_factor(R2, self.hyper.lengthscale)[0]
        s2 = self.hyper.signal_var
        J = -s2 * h[:, None] * (qc - self.Xc)  # n x d
        V = cho_solve_lower(self._chol[0], J)
        kappa = s2 * self.kernel.derivative_variance(self.hyper.lengthscale)
        return kappa * np.eye(self.dim) - J.T @ V


# --------------------------------------------------------------------------------------
# Hyper-parameter fitting by maximum marginal likelihood
# --------------------------------------------------------------------------------------
def lengthscale_bounds(X: np.ndarray) -> tuple[float, float]:
    """Data-adaptive bounds for l: [0.5 * median nearest-neighbour distance, 20 * diameter].

    The lower bound stops l from collapsing to 0 (where the mean gradient vanishes
    between points); the upper bound stops a drift to infinity on nearly linear data.
    """
    R2 = squared_distances(X, X)
    np.fill_diagonal(R2, np.inf)
    nn = np.sqrt(np.min(R2, axis=1))
    nn = nn[np.isfinite(nn) & (nn > 0)]
    lo = 0.5 * float(np.median(nn)) if nn.size else 1e-3
    R2[~np.isfinite(R2)] = 0.0
    hi = 20.0 * float(np.sqrt(R2.max())) if R2.size else 1.0
    lo = max(lo, 1e-6)
    return lo, max(hi, 10.0 * lo)


SIGNAL_BOUNDS = (1e-3, 1e4)
NOISE_BOUNDS = (1e-6, 1.0)


def negative_log_marginal_likelihood(
    theta: np.ndarray, R2: np.ndarray, y: np.ndarray, kernel: str = "se"
) -> tuple[float, np.ndarray]:
    """NLL and its gradient in theta = (log l, log s^2, log sigma^2).

    ``NLL = 1/2 y^T K^-1 y + 1/2 log|K| + n/2 log 2 pi`` and
    ``dNLL/dtheta_j = 1/2 tr((K^-1 - alpha alpha^T) dK/dtheta_j)``.
    """
    kern = get_kernel(kernel)
    ls, s2, n2 = np.exp(theta)
    Ku, dl = kern.value_and_dlog_l(R2, ls)
    K = s2 * Ku
    K[np.diag_indices_from(K)] += n2
    try:
        c = _cho_factor(K)
    except linalg.LinAlgError:
        return 1e25, np.zeros(3)
    alpha = cho_solve_lower(c, y)
    n = y.size
    nll = 0.5 * y @ alpha + np.sum(np.log(np.diag(c))) + 0.5 * n * np.log(2 * np.pi)
    Kinv = _chol_inverse(c)
    # W = K^-1 - alpha alpha^T; tr(W K) = n - y.alpha; tr(W) = tr(K^-1) - |alpha|^2
    tr_w = np.trace(Kinv) - alpha @ alpha
    dl *= s2
    grad = 0.5 * np.array(
        [
            np.vdot(Kinv, dl) - alpha @ (dl @ alpha),
            (n - y @ alpha) - n2 * tr_w,  # dK/dlog s^2 = s^2 Ku = K - n2 I
            n2 * tr_w,
        ]
    )
    return float(nll), grad


def fit_hyperparameters(
    X: np.ndarray,
    y: np.ndarray,
    *,
    kernel: str = "se",
    init: GPHyper | None = None,
    restarts: int = 3,
    rng: np.random.Generator | None = None,
    maxiter: int = 40,
) -> GPHyper:
    """Maximise the marginal likelihood over (log l, log s^2, log sigma^2) with L-BFGS-B.

    Without ``init`` (a client's first fit): a data-based default start plus
    ``restarts - 1`` log-uniform random starts inside the bounds; the best wins. With
    ``init`` (last round's optimum): one warm-started run, since the hyper-parameters
    move little between rounds (the fit then costs one L-BFGS run).
    """
    from scipy import optimize  # lazy: keeps the client start-up light

    X = np.asarray(X, dtype=np.float64)
    y_std, _, _ = _standardise(np.asarray(y, dtype=np.float64))
    Xc = X - X.mean(axis=0)
    R2 = squared_distances(Xc, Xc)
    l_lo, l_hi = lengthscale_bounds(Xc)
    bounds = np.log([(l_lo, l_hi), SIGNAL_BOUNDS, NOISE_BOUNDS])
    rng = rng if rng is not None else np.random.default_rng(0)
    if init is not None:  # warm start: hyper-parameters move slowly between rounds
        starts = [np.clip(init.as_log(), bounds[:, 0], bounds[:, 1])]
    else:
        median = float(np.sqrt(np.median(R2[R2 > 0]))) if np.any(R2 > 0) else 1.0
        starts = [np.clip(np.log([median, 1.0, 1e-3]), bounds[:, 0], bounds[:, 1])]
        while len(starts) < max(restarts, 1):
            starts.append(rng.uniform(bounds[:, 0], bounds[:, 1]))
    best_theta, best_val = starts[0], np.inf
    for theta0 in starts:
        res = optimize.minimize(
            negative_log_marginal_likelihood,
            theta0,
            args=(R2, y_std, kernel),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter},
        )
        if np.isfinite(res.fun) and res.fun < best_val:
            best_val, best_theta = float(res.fun), res.x
    return GPHyper.from_log(best_theta)


def nearest_indices(X: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Indices of the (at most) n rows of X nearest to the point x (unordered)."""
    if X.shape[0] <= n:
        return np.arange(X.shape[0])
    diff = X - x
    r2 = np.einsum("ij,ij->i", diff, diff)
    return np.argpartition(r2, n - 1)[:n]

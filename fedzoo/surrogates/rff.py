r"""Random Fourier features: a seeded, shared finite-dimensional surrogate.

By Bochner's theorem the squared-exponential kernel with lengthscale l is
``k(x, x') = E_{v ~ N(0, I/l^2), b ~ U[0, 2 pi]} [2 cos(v.x + b) cos(v.x' + b)]``, so with M
draws ``phi(x) = sqrt(2/M) cos(V x + b)`` satisfies ``phi(x).phi(x') -> k(x, x')`` with error
O(M^{-1/2}). A surrogate ``mu(x) = phi(x).w`` has the analytic gradient

.. math:: \nabla\mu(x) = -\sqrt{2/M}\, V^T (\sin(Vx + b) \odot w).

Every party that knows ``(dim, num_features, lengthscale, seed)`` builds the same V, b,
so only the M weights travel.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from fedzoo.errors import ConfigError, ShapeError


class RandomFourierFeatures:
    """The feature map phi: R^d -> R^M of the SE kernel with lengthscale l.

    Args:
        dim: d.
        num_features: M.
        lengthscale: l > 0.
        seed: integer seed shared by server and clients.
    """

    def __init__(self, dim: int, num_features: int, lengthscale: float, seed: int) -> None:
        if num_features < 1 or dim < 1:
            raise ConfigError(f"RFF needs dim >= 1 and num_features >= 1, got {dim=}, {num_features=}.")
        if not np.isfinite(lengthscale) or lengthscale <= 0:
            raise ConfigError(f"RFF lengthscale must be a positive number, got {lengthscale!r}.")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 303]))
        self.dim, self.num_features = int(dim), int(num_features)
        self.lengthscale, self.seed = float(lengthscale), int(seed)
        self.V = rng.standard_normal((self.num_features, self.dim)) / self.lengthscale
        self.b = rng.uniform(0.0, 2.0 * np.pi, size=self.num_features)
        self.scale = np.sqrt(2.0 / self.num_features)
        self._V32: np.ndarray | None = None
        self._b32: np.ndarray | None = None

    def features(self, X: np.ndarray) -> np.ndarray:
        """phi at the n x d points X: an n x M array."""
        X = np.atleast_2d(X)
        return self.scale * np.cos(X @ self.V.T + self.b)

    def _single(self) -> tuple[np.ndarray, np.ndarray]:
        if self._V32 is None or self._b32 is None:
            self._V32 = self.V.astype(np.float32)
            self._b32 = self.b.astype(np.float32)
        return self._V32, self._b32

    def features32(self, X: np.ndarray) -> np.ndarray:
        """phi at X computed in float32 (n x M): the fast path of the ridge fit."""
        V32, b32 = self._single()
        Z = np.atleast_2d(X).astype(np.float32) @ V32.T
        Z += b32
        np.cos(Z, out=Z)
        Z *= np.float32(self.scale)
        return Z

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """d phi / d x at one point: an M x d array (tests and diagnostics)."""
        return -self.scale * np.sin(self.V @ x + self.b)[:, None] * self.V

    def gradient(self, x: np.ndarray, weights: np.ndarray, *, single: bool = False) -> np.ndarray:
        """Gradient of phi(x).w at one point x (length d). Cost O(M d).

        ``single=True`` runs the two matrix-vector products in float32 (half the memory
        traffic; ~1e-7 relative error), used for the per-step correction.
        """
        if weights.shape != (self.num_features,):
            raise ShapeError(f"Expected {self.num_features} RFF weights, got shape {weights.shape}.")
        if single:
            V32, b32 = self._single()
            s = np.sin(V32 @ x.astype(np.float32) + b32) * weights.astype(np.float32)
            return -self.scale * (s @ V32).astype(np.float64)
        return -self.scale * (self.V.T @ (np.sin(self.V @ x + self.b) * weights))

    def predict(self, X: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return self.features(X) @ weights


def fit_rff_weights(
    rff: RandomFourierFeatures, X: np.ndarray, y: np.ndarray, ridge: float = 1e-3
) -> np.ndarray:
    """Ridge weights w (length M) so that phi(x).w fits y, returned in y units.

    y is standardised (zero mean, unit variance) for the fit; the mean drops out of every
    gradient. Solved in the dual n x n form ``w = Phi^T (Phi Phi^T + lam I)^{-1} y`` when
    n < M, in the primal ``(Phi^T Phi + lam I)^{-1} Phi^T y`` otherwise.
    """
    if ridge <= 0:
        raise ConfigError(f"The RFF ridge must be > 0, got {ridge!r}.")
    y = np.asarray(y, dtype=np.float64)
    mean, std = float(np.mean(y)), float(np.std(y))
    std = std if std > 1e-12 * max(1.0, abs(mean)) else 1.0
    ys = (y - mean) / std
    # Features and their Gram in float32 (the O(n M d) and O(n^2 M) products dominate
    # the round) when the ridge dwarfs float32 rounding (~1e-7 relative); the n x n
    # solve always in float64.
    single = ridge >= 1e-4
    Phi = rff.features32(X) if single else rff.features(X)
    n, M = Phi.shape
    if n < M:
        G = (Phi @ Phi.T).astype(np.float64)
        G[np.diag_indices_from(G)] += ridge
        alpha = linalg.solve(G, ys, assume_a="pos", check_finite=False)
        w = (alpha.astype(Phi.dtype) @ Phi).astype(np.float64)
    else:
        G = (Phi.T @ Phi).astype(np.float64)
        G[np.diag_indices_from(G)] += ridge
        w = linalg.solve(G, (ys.astype(Phi.dtype) @ Phi).astype(np.float64), assume_a="pos", check_finite=False)
    return std * w

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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from fedzoo.errors import ConfigError, ShapeError
from fedzoo.limits import FLOAT32_SAFE, MAX_ABS_ARRAY, MAX_ABS_VALUE


def fits_float32(a: np.ndarray) -> bool:
    """Whether a float32 fast path may take ``a``: every |entry| <= FLOAT32_SAFE (1e30),
    leaving room below float32's 3.4e38 for the sums of products it feeds."""
    return a.size == 0 or float(np.max(np.abs(a))) <= FLOAT32_SAFE


def weight_bound(num_points: int, ridge: float, max_abs_value: float = MAX_ABS_VALUE) -> float:
    r"""The largest |entry| of RFF weights an honest client can send (a reply's bound).

    The fit is ``w = s_y Phi^T (Phi Phi^T + lam I)^{-1} y~`` with standardised values y~
    (``||y~||^2 = n``); every singular value of ``Phi^T (Phi Phi^T + lam I)^{-1}`` is
    ``s / (s^2 + lam) <= 1 / (2 sqrt(lam))`` (the primal form has the same ones), so
    ``|w_j| <= ||w||_2 <= s_y sqrt(n) / (2 sqrt(lam))`` with ``s_y <= max |y| <=``
    ``max_abs_value`` (:data:`fedzoo.limits.MAX_ABS_VALUE`, what a reply may report) and
    n at most ``num_points`` (``rff-history``). Twice that, for rounding (measured: the
    ratio stays below 1 in float32 and float64 fits), capped at
    :data:`fedzoo.limits.MAX_ABS_ARRAY`.
    """
    bound = 2.0 * max_abs_value * np.sqrt(max(int(num_points), 1)) / (2.0 * np.sqrt(ridge))
    return float(min(bound, MAX_ABS_ARRAY))


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
        #: V fits the float32 fast paths (:func:`fits_float32`; a lengthscale above ~1e-29)
        self.single_ok = fits_float32(self.V)
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
        Z = np.dot(np.atleast_2d(X).astype(np.float32), V32.T)
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
        traffic; ~1e-7 relative error), used for the per-step correction, unless the
        weights or V exceed float32's safe range (:func:`fits_float32`) or the float32
        result is not finite: then in float64. ``np.dot``, not ``@``: numpy's matmul
        holds the GIL for vector-matrix products (measured: two threads ran 0.94x as
        fast as one), ``np.dot`` releases it (same BLAS call, same result bit for bit).
        """
        if weights.shape != (self.num_features,):
            raise ShapeError(f"Expected {self.num_features} RFF weights, got shape {weights.shape}.")
        if single and fits_float32(weights) and self.single_ok:
            V32, b32 = self._single()
            s = np.sin(np.dot(V32, x.astype(np.float32)) + b32) * weights.astype(np.float32)
            g = -self.scale * np.dot(s, V32).astype(np.float64)
            if np.all(np.isfinite(g)):
                return g
        return -self.scale * np.dot(self.V.T, np.sin(np.dot(self.V, x) + self.b) * weights)

    def predict(self, X: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return self.features(X) @ weights


SINGLE_PRECISION_RIDGE = 1e-4  # float32 features when the ridge dwarfs their rounding


@dataclass(frozen=True)
class RFFFitCache:
    """The Gram of the points of the last ridge fit, keyed by history ids.

    Between rounds most of a client's ``rff-history`` nearest points stay the same, so
    the Gram entries among them need not be recomputed: the next fit computes only the
    rows of the points it has not seen against all (at the benchmark size about a fifth
    of the n^2 M products). The features themselves are recomputed (keeping them would
    cost n x M floats per client: 20 MB at the defaults, in every checkpoint and client
    snapshot). The cache is part of the client state and travels with it (checkpoints,
    Flower ``context.state``, snapshots), so every engine computes the same numbers from
    the same state.

    Attributes:
        ids: history serial ids of the cached points (n).
        gram: their features' Gram as computed then, float32 (n x n).
        key: (dim, M, lengthscale, seed) of the feature map the cache belongs to.
    """

    ids: np.ndarray
    gram: np.ndarray
    key: tuple[int, int, float, int]

    def to_arrays(self, prefix: str = "rff-cache") -> dict[str, np.ndarray]:
        dim, m, ls, seed = self.key
        return {
            f"{prefix}-ids": self.ids.astype(np.int64),
            f"{prefix}-gram": self.gram,
            f"{prefix}-key": np.array([dim, m, ls, seed], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "rff-cache") -> RFFFitCache | None:
        if f"{prefix}-ids" not in arrays or f"{prefix}-gram" not in arrays:
            return None
        dim, m, ls, seed = (float(v) for v in np.asarray(arrays[f"{prefix}-key"]))
        ids = np.asarray(arrays[f"{prefix}-ids"]).astype(np.int64)
        gram = np.asarray(arrays[f"{prefix}-gram"], dtype=np.float32)
        if gram.shape != (ids.shape[0], ids.shape[0]):
            return None  # inconsistent: treat as absent (it is only a cache)
        return cls(ids, gram, (int(dim), int(m), ls, int(seed)))


def _cache_key(rff: RandomFourierFeatures) -> tuple[int, int, float, int]:
    return (rff.dim, rff.num_features, rff.lengthscale, rff.seed)


def _features_and_gram(
    rff: RandomFourierFeatures, X: np.ndarray, ids: np.ndarray | None, cache: RFFFitCache | None
) -> tuple[np.ndarray, np.ndarray]:
    """float32 features of X and their Gram, reusing the Gram entries of ``cache`` by id."""
    Phi = rff.features32(X)
    if ids is None or cache is None or cache.key != _cache_key(rff) or cache.ids.size == 0:
        return Phi, Phi @ Phi.T
    order = np.argsort(cache.ids, kind="stable")
    sorted_ids = cache.ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
    hit = sorted_ids[pos] == ids
    src = order[pos[hit]]  # rows of the cached Gram
    new = np.flatnonzero(~hit)
    if new.size == ids.size:
        return Phi, Phi @ Phi.T
    n = ids.size
    G = np.empty((n, n), dtype=np.float32)
    G[np.ix_(hit, hit)] = cache.gram[np.ix_(src, src)]
    if new.size:
        cross = np.dot(Phi[new], Phi.T)  # rows of the new points against all
        G[new, :] = cross
        G[:, new] = cross.T
    return Phi, G


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
    single = ridge >= SINGLE_PRECISION_RIDGE and rff.single_ok
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


def fit_rff_weights_cached(
    rff: RandomFourierFeatures,
    X: np.ndarray,
    y: np.ndarray,
    ids: np.ndarray,
    cache: RFFFitCache | None,
    ridge: float = 1e-3,
) -> tuple[np.ndarray, RFFFitCache | None]:
    """:func:`fit_rff_weights` reusing the Gram entries of a previous fit.

    Args:
        ids: history serial ids of the rows of X (same length).
        cache: the cache returned by the previous call (or None).

    Returns:
        The weights (length M, y units) and the cache for the next call (None when the
        fit is not the float32 dual one, which is never cached). With an empty or foreign
        cache the weights equal :func:`fit_rff_weights`'s exactly.
    """
    X = np.atleast_2d(X)
    if ridge < SINGLE_PRECISION_RIDGE or X.shape[0] >= rff.num_features or not rff.single_ok:
        return fit_rff_weights(rff, X, y, ridge), None
    if ridge <= 0:
        raise ConfigError(f"The RFF ridge must be > 0, got {ridge!r}.")
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != (X.shape[0],):
        raise ShapeError(f"Expected {X.shape[0]} history ids, got shape {ids.shape}.")
    y = np.asarray(y, dtype=np.float64)
    mean, std = float(np.mean(y)), float(np.std(y))
    std = std if std > 1e-12 * max(1.0, abs(mean)) else 1.0
    Phi, G32 = _features_and_gram(rff, X, ids, cache)
    G = G32.astype(np.float64)
    G[np.diag_indices_from(G)] += ridge
    alpha = linalg.solve(G, (y - mean) / std, assume_a="pos", check_finite=False)
    w = np.dot(alpha.astype(np.float32), Phi).astype(np.float64)
    return std * w, RFFFitCache(ids.copy(), G32, _cache_key(rff))

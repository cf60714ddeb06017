"""A client's query history D_i: every point it queried and the value it got.

A bounded FIFO buffer over preallocated arrays (amortised O(d) per point, no Python loop
over points); when full, the oldest points are dropped. Every point keeps a serial id
(0 for the first point ever added, counting on across drops), so a cache keyed by ids
(:class:`fedzoo.surrogates.rff.RFFFitCache`) stays valid while rows shift.
"""

from __future__ import annotations

import numpy as np

from fedzoo.errors import ShapeError


class QueryHistory:
    """Points (n x d) and values (n) a client has queried, capped at ``capacity``."""

    def __init__(self, dim: int, capacity: int) -> None:
        self.dim, self.capacity = int(dim), int(capacity)
        self._X = np.empty((min(self.capacity, 256), self.dim))
        self._y = np.empty(self._X.shape[0])
        self._n = 0
        self.first_id = 0  # serial id of row 0

    def __len__(self) -> int:
        return self._n

    @property
    def X(self) -> np.ndarray:
        return self._X[: self._n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self._n]

    @property
    def ids(self) -> np.ndarray:
        """Serial ids of the rows (int64, increasing)."""
        return np.arange(self.first_id, self.first_id + self._n, dtype=np.int64)

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        """Append the n x d points X with values y, dropping the oldest beyond capacity."""
        X = np.atleast_2d(X)
        y = np.atleast_1d(y)
        if X.shape[1] != self.dim or y.shape != (X.shape[0],):
            raise ShapeError(f"Expected n x {self.dim} points and n values, got {X.shape} and {y.shape}.")
        if X.shape[0] >= self.capacity:
            skipped = X.shape[0] - self.capacity  # never stored, but they took ids
            self.first_id += self._n + skipped
            self._n = 0
            X, y = X[-self.capacity :], y[-self.capacity :]
        need = self._n + X.shape[0]
        if need > self.capacity:
            drop = need - self.capacity
            self._X[: self._n - drop] = self._X[drop : self._n]
            self._y[: self._n - drop] = self._y[drop : self._n]
            self._n -= drop
            self.first_id += drop
            need = self.capacity
        if need > self._X.shape[0]:
            size = min(self.capacity, max(need, 2 * self._X.shape[0]))
            X_new, y_new = np.empty((size, self.dim)), np.empty(size)
            X_new[: self._n], y_new[: self._n] = self.X, self.y
            self._X, self._y = X_new, y_new
        self._X[self._n : need] = X
        self._y[self._n : need] = y
        self._n = need

    @classmethod
    def from_arrays(
        cls, X: np.ndarray, y: np.ndarray, capacity: int, first_id: int = 0
    ) -> QueryHistory:
        h = cls(X.shape[1], capacity)
        if X.shape[0]:
            h.add(X, y)
        h.first_id = int(first_id) + max(X.shape[0] - h.capacity, 0)
        return h

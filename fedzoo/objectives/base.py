"""The black-box interface: batches in, values out, every evaluation counted.

An :class:`Objective` maps an ``n x d`` array of points in the unit box ``[0, 1]^d`` to
``n`` values. The public :meth:`Objective.__call__` validates the input (shape, finiteness,
box), charges the optional query budget *before* evaluating (all-or-nothing), evaluates
through :meth:`Objective._evaluate` (the only method subclasses implement) and validates the
output. Every point handed to ``_evaluate`` is one query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fedzoo.errors import (
    BudgetExceededError,
    DomainError,
    NonFiniteError,
    ObjectiveError,
    ShapeError,
    UncountedAccessError,
)

# Points may sit a rounding error outside the box after arithmetic; they are clipped.
BOX_TOLERANCE = 1e-9


def as_points(X: Any, dim: int) -> np.ndarray:
    """Validate and return ``X`` as a float64 ``n x dim`` array inside the unit box.

    A 1-d array of length ``dim`` is taken as a single point. Raises ShapeError,
    NonFiniteError or DomainError with the offending values.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != dim:
        raise ShapeError(
            f"Expected points as an n x d array with d={dim}, got shape {X.shape}."
        )
    if X.shape[0] == 0:
        raise ShapeError("Expected at least one point (n >= 1), got an empty batch.")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise NonFiniteError(
            f"Points must be finite; X[{bad[0]}, {bad[1]}] = {X[bad[0], bad[1]]}."
        )
    lo, hi = X.min(), X.max()
    if lo < -BOX_TOLERANCE or hi > 1.0 + BOX_TOLERANCE:
        raise DomainError(
            f"Points must lie in the unit box [0, 1]^{dim}; got values in "
            f"[{lo:.6g}, {hi:.6g}]."
        )
    return np.ascontiguousarray(np.clip(X, 0.0, 1.0))  # C order: values must not depend on layout


class Objective:
    """A client's black box ``f: [0, 1]^d -> R``, queried in batches.

    Args:
        dim: dimension ``d`` of the unit box.
        budget: optional maximum number of queries (points evaluated); ``None`` for none.
        name: a label for logs and errors.

    Attributes:
        num_queries: points evaluated so far (every point given to ``_evaluate``).
    """

    def __init__(self, dim: int, *, budget: int | None = None, name: str = "") -> None:
        if int(dim) != dim or dim < 1:
            raise ShapeError(f"dim must be a positive integer, got {dim!r}.")
        if budget is not None and (int(budget) != budget or budget < 0):
            raise ValueError(f"budget must be a non-negative integer or None, got {budget!r}.")
        self.dim = int(dim)
        self.budget = None if budget is None else int(budget)
        self.name = name or type(self).__name__
        self.num_queries = 0

    # -- subclasses implement -------------------------------------------------------
    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        """Values at the rows of ``X`` (a validated n x d array in the box)."""
        raise NotImplementedError

    # -- public ------------------------------------------------------------------------
    @property
    def remaining(self) -> int | None:
        """Queries left in the budget, or None without a budget."""
        return None if self.budget is None else self.budget - self.num_queries

    def __call__(self, X: Any) -> np.ndarray:
        """Evaluate a batch: ``X`` is an n x d array in the unit box; returns n values.

        Query cost: n (charged before evaluating; nothing is evaluated if n exceeds the
        remaining budget).
        """
        X = as_points(X, self.dim)
        n = X.shape[0]
        if self.budget is not None and self.num_queries + n > self.budget:
            raise BudgetExceededError(
                f"{self.name}: a batch of {n} points exceeds the query budget "
                f"({self.num_queries} of {self.budget} used, {self.remaining} left)."
            )
        self.num_queries += n
        try:
            y = self._evaluate(X)
        except Exception as err:  # a user's black box may raise anything
            if isinstance(err, (ObjectiveError, BudgetExceededError)):
                raise
            raise ObjectiveError(f"{self.name} failed on a batch of {n} points: {err!r}") from err
        return check_values(y, n, self.name)


def check_values(y: Any, n: int, name: str = "objective") -> np.ndarray:
    """Validate an objective's output: exactly n finite real numbers (shape ``(n,)``).

    Refused, with a message saying what was returned and what is expected: another
    shape (an ``(n, 1)`` column too: it is ambiguous with n points of one feature),
    complex values, booleans, strings and other objects that are not real numbers,
    NaN and infinities.
    """
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as err:  # e.g. ragged nested sequences
        raise ObjectiveError(f"{name} returned values that are not an array of numbers: {err}") from err
    kind = arr.dtype.kind
    if kind == "O" and arr.size:  # Python objects: each must be a real number
        kinds = {np.asarray(v).dtype.kind for v in arr.ravel()}
        kind = "c" if "c" in kinds else "b" if "b" in kinds else "f" if kinds <= set("iuf") else "O"
    elif isinstance(y, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in y):
        kind = "b"  # [True, 1.0]: numpy made it float
    if kind == "c":
        raise ObjectiveError(f"{name} returned complex values; objectives must return real "
                             "numbers (take the real part or the modulus yourself).")
    if kind == "b":
        raise ObjectiveError(f"{name} returned booleans; objectives must return real numbers "
                             "(convert them, e.g. y.astype(float), if 0/1 is meant).")
    if kind not in "iuf":
        raise ObjectiveError(f"{name} returned values that are not numbers (dtype "
                             f"{arr.dtype}); objectives must return real numbers.")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != (n,):
        hint = (" (an n x 1 column: return y[:, 0] or y.ravel())" if arr.shape == (n, 1) else "")
        raise ObjectiveError(
            f"{name} must return {n} values (shape ({n},)) for {n} points, got shape {arr.shape}{hint}."
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise NonFiniteError(
            f"{name} returned a non-finite value y[{bad}] = {arr[bad]}; objectives must "
            "return finite numbers."
        )
    return arr


class CallableObjective(Objective):
    """Adapter for any Python callable ``f(X) -> y`` (X: n x d in the unit box, y: n)."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        dim: int,
        *,
        budget: int | None = None,
        name: str = "",
    ) -> None:
        if not callable(fn):
            raise TypeError(f"Expected a callable f(X) -> y, got {type(fn).__name__}.")
        super().__init__(dim, budget=budget, name=name or getattr(fn, "__name__", "callable"))
        self.fn = fn

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        return self.fn(X.copy())


class CountingObjective(Objective):
    """Wraps another objective and counts what reaches it (for tests and audits).

    ``points_seen`` is the total number of points the wrapped objective received, through
    every evaluation path: ``__call__``, the closed form ``value`` of a synthetic objective
    and exact ``gradient`` (method ``fo``), each counted per point. Other attributes of the
    wrapped objective pass through only if they are data (``dim``, coefficients, ...): a
    callable one (``fn``, ``_evaluate``, a base function) could evaluate the black box
    uncounted, so asking for it raises :class:`~fedzoo.errors.UncountedAccessError`.

    Reporting is not an evaluation path of the algorithm: the simulator reaches the
    closed form behind the wrapper through
    :func:`fedzoo.objectives.problems.closed_form` (uncounted, as docs/design.md §4 allows for
    synthetic problems), never through this wrapper.
    """

    #: Evaluation paths of the wrapped objective that pass through, counted per point.
    COUNTED = ("value", "gradient")

    def __init__(self, inner: Objective) -> None:
        super().__init__(inner.dim, name=f"counting({inner.name})")
        self.inner = inner
        self.points_seen = 0

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        self.points_seen += X.shape[0]
        return self.inner(X)

    def __getattr__(self, item: str) -> Any:
        # only called for attributes the wrapper itself lacks
        if item == "inner" or item.startswith("__"):
            raise AttributeError(item)
        attr = getattr(self.inner, item)
        if item in self.COUNTED:  # value (closed form) and exact gradients, per point
            def counted(X: Any) -> Any:
                self.points_seen += np.atleast_2d(np.asarray(X)).shape[0]
                return attr(X)

            return counted
        if callable(attr):
            raise UncountedAccessError(
                f"{self.name}: attribute {item!r} of the wrapped objective is callable and could "
                f"evaluate it uncounted; expected an evaluation through the wrapper itself "
                f"(__call__) or one of the counted paths {list(self.COUNTED)}."
            )
        return attr

"""Federated problems: client objectives, weights and a start point.

Synthetic problems (docs/design.md §7) know their global objective ``F`` exactly, its gradient and
its optimum. The simulator may evaluate ``F`` for *reporting* through
:meth:`FederatedProblem.global_value`; that evaluation is not a query and never reaches an
algorithm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedzoo.errors import ConfigError, DomainError, NonFiniteError, ShapeError, UnknownNameError
from fedzoo.objectives.base import (
    BOX_TOLERANCE,
    CallableObjective,
    CountingObjective,
    Objective,
    as_points,
)


class SyntheticObjective(Objective):
    """A client objective with a known closed form (value and x-space gradient)."""

    def value(self, X: np.ndarray) -> np.ndarray:
        """Values at the n x d points X without counting (simulator use only)."""
        raise NotImplementedError

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """Exact gradients (n x d) with respect to x at the n x d points X."""
        raise NotImplementedError

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        return self.value(X)


def closed_form(objective: Objective) -> SyntheticObjective | None:
    """The closed-form objective behind ``objective`` (through counting wrappers), or None.

    For the simulator's reporting only (:meth:`FederatedProblem.global_value`): it reaches
    the closed form without counting, so it must never be handed to an algorithm.
    """
    while isinstance(objective, CountingObjective):
        objective = objective.inner
    return objective if isinstance(objective, SyntheticObjective) else None


def check_start_point(x0: Any, dim: int | None = None) -> np.ndarray:
    """Validate a start point: a finite 1-d array (of length ``dim`` if given) in the unit box.

    Returns it as float64 (clipped by at most a rounding error into the box). Raises
    ShapeError, NonFiniteError or DomainError naming the bad value.
    """
    try:
        x = np.asarray(x0, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ShapeError(f"x0 must be a 1-d array of numbers (one start point), got {x0!r}: {err}") from err
    if x.ndim != 1 or x.size == 0:
        raise ShapeError(
            f"x0 must be a 1-d array with one entry per coordinate (length d >= 1), got shape "
            f"{x.shape}; pass one start point, not a batch or a matrix (it is never flattened)."
        )
    if dim is not None and x.size != dim:
        raise ShapeError(f"x0 must have length d={dim} (the objectives' dimension), got length {x.size}.")
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise NonFiniteError(f"x0 must be finite; x0[{bad}] = {x[bad]}.")
    if x.min() < -BOX_TOLERANCE or x.max() > 1.0 + BOX_TOLERANCE:
        bad = int(np.flatnonzero((x < -BOX_TOLERANCE) | (x > 1.0 + BOX_TOLERANCE))[0])
        raise DomainError(f"x0 must lie in the unit box [0, 1]^{x.size}; x0[{bad}] = {x[bad]:.6g}.")
    return np.clip(x, 0.0, 1.0)


@dataclass
class FederatedProblem:
    """A federation: client objectives f_i, weights w_i (sum 1) and the start point x0.

    Attributes:
        objectives: one black box per client, all of the same dimension.
        weights: w_i >= 0 summing to 1 (length N).
        x0: start point in the unit box (length d).
        name: label used in results.
        optimum_value: F* when known, else None.
        optimum_x: a minimiser of F when known, else None.
    """

    objectives: list[Objective]
    weights: np.ndarray
    x0: np.ndarray
    name: str = "custom"
    optimum_value: float | None = None
    optimum_x: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ConfigError("A federated problem needs at least one client objective.")
        dims = {obj.dim for obj in self.objectives}
        if len(dims) != 1:
            raise ShapeError(f"All client objectives must share one dimension, got {sorted(dims)}.")
        self.x0 = check_start_point(self.x0, self.dim)
        n = len(self.objectives)
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ConfigError(
                f"weights must be {n} finite non-negative numbers with a positive sum, got {w!r}."
            )
        self.weights = w / w.sum()

    @property
    def dim(self) -> int:
        return self.objectives[0].dim

    @property
    def num_clients(self) -> int:
        return len(self.objectives)

    @property
    def is_synthetic(self) -> bool:
        """True when every client objective has a closed form (F can be simulated), also
        behind counting wrappers (:func:`closed_form`)."""
        return all(closed_form(obj) is not None for obj in self.objectives)

    def _closed_forms(self) -> list[SyntheticObjective]:
        forms = [closed_form(obj) for obj in self.objectives]
        if any(f is None for f in forms):
            raise TypeError("global_value needs a synthetic problem (closed-form objectives).")
        return forms  # type: ignore[return-value]

    def global_value(self, x: np.ndarray) -> float:
        """F(x) = sum_i w_i f_i(x) for reporting; synthetic problems only, not a query
        (the closed forms are reached past any counting wrapper, uncounted)."""
        forms = self._closed_forms()
        X = as_points(x, self.dim)
        return float(sum(w * f.value(X)[0] for w, f in zip(self.weights, forms)))

    def global_gradient(self, x: np.ndarray) -> np.ndarray:
        """Exact gradient of F at x (synthetic problems only; for diagnostics, uncounted)."""
        forms = self._closed_forms()
        X = as_points(x, self.dim)
        return sum(w * f.gradient(X)[0] for w, f in zip(self.weights, forms))


def problem_from_callables(
    functions: Sequence[Callable[[np.ndarray], Any] | Objective],
    x0: Any,
    *,
    weights: Sequence[float] | None = None,
    name: str = "custom",
) -> FederatedProblem:
    """Build a problem from fedzoo_client callables ``f(X) -> y`` (X: n x d in the unit box).

    ``x0`` must be one start point: a finite 1-d array of length d in the unit box (a
    matrix is refused, never flattened); d is its length.
    """
    x0 = check_start_point(x0)
    objectives = [
        fn if isinstance(fn, Objective) else CallableObjective(fn, x0.size, name=f"client{i}")
        for i, fn in enumerate(functions)
    ]
    w = np.full(len(objectives), 1.0 / max(len(objectives), 1)) if weights is None else weights
    return FederatedProblem(objectives, np.asarray(w, dtype=np.float64), x0, name=name)


# --------------------------------------------------------------------------------------
# Heterogeneity shared by the synthetic problems
# --------------------------------------------------------------------------------------
def dirichlet_coefficients(
    rng: np.random.Generator, num_clients: int, dim: int, heterogeneity: float
) -> np.ndarray:
    """Per-client, per-coordinate coefficients a_ij = 1 + C (p_ij - 1/N).

    For each coordinate j, (p_1j, ..., p_Nj) ~ Dirichlet(1/N * 1), so the client average
    of a_ij is exactly 1 for every j. Returns an N x d array.
    """
    p = rng.dirichlet(np.full(num_clients, 1.0 / num_clients), size=dim).T  # N x d
    return 1.0 + heterogeneity * (p - 1.0 / num_clients)


def check_problem_args(num_clients: int, dim: int, heterogeneity: float, seed: int = 0) -> None:
    """Refuse synthetic-problem arguments no run could use, before anything is allocated:
    ``clients`` in [1, MAX_CLIENTS], ``dim`` >= 1 and ``clients x dim`` at most
    MAX_ARRAY_ELEMENTS (the N x d coefficients), ``heterogeneity`` in [0, MAX_HETEROGENEITY],
    ``seed`` an integer in [0, MAX_INT] (:mod:`fedzoo.limits`)."""
    from fedzoo.limits import MAX_ARRAY_ELEMENTS, MAX_CLIENTS, MAX_HETEROGENEITY, MAX_INT

    def whole(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not whole(num_clients) or not 1 <= num_clients <= MAX_CLIENTS:
        raise ConfigError(f"clients must be an integer in [1, {MAX_CLIENTS}], got {num_clients!r}.")
    if not whole(dim) or dim < 1:
        raise ConfigError(f"dim must be a positive integer, got {dim!r}.")
    if num_clients * dim > MAX_ARRAY_ELEMENTS:
        raise ConfigError(f"dim = {dim} is too large with {num_clients} clients; expected clients x "
                          f"dim <= {MAX_ARRAY_ELEMENTS} (the problem's coefficients).")
    if not isinstance(heterogeneity, (int, float, np.number)) or isinstance(heterogeneity, bool) \
            or not np.isfinite(heterogeneity) or not 0 <= heterogeneity <= MAX_HETEROGENEITY:
        raise ConfigError(f"heterogeneity must be a finite number in [0, {MAX_HETEROGENEITY:g}], "
                          f"got {heterogeneity!r}.")
    if not whole(seed) or not 0 <= seed <= MAX_INT:
        raise ConfigError(f"the problem seed must be an integer in [0, {MAX_INT}], got {seed!r}.")


def _check_common(num_clients: int, dim: int, heterogeneity: float, seed: int = 0) -> None:
    check_problem_args(num_clients, dim, heterogeneity, seed)


# --------------------------------------------------------------------------------------
# Quadratic
# --------------------------------------------------------------------------------------
class QuadraticClient(SyntheticObjective):
    r"""f_i(x) = (1/(10 d)) (\sum_j a_ij z_j^2 + b_ij z_j + 1), z = 20 x - 10.

    Domain: x in [0, 1]^d (z in [-10, 10]^d).
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, name: str = "") -> None:
        super().__init__(a.size, name=name)
        self.a, self.b = a, b

    def value(self, X: np.ndarray) -> np.ndarray:
        Z = 20.0 * np.asarray(X) - 10.0
        return ((Z * Z) @ self.a + Z @ self.b + 1.0) / (10.0 * self.dim)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        Z = 20.0 * np.asarray(X) - 10.0
        return 20.0 * (2.0 * self.a * Z + self.b) / (10.0 * self.dim)


def quadratic_problem(
    dim: int = 300, clients: int = 5, heterogeneity: float = 0.5, seed: int = 0
) -> FederatedProblem:
    """The paper's heterogeneous quadratic (docs/design.md §7).

    a_ij, b_ij = 1 + C (Dirichlet(1/N) - 1/N) per coordinate, so F (uniform weights) is
    the C-free quadratic (1/(10d)) (sum_j z_j^2 + z_j + 1) with minimum
    F* = -0.025 + 1/(10 d) at z = -0.5 (x = 0.475). x0 ~ U[0, 1]^d from the seed.
    """
    _check_common(clients, dim, heterogeneity, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 101]))
    a = dirichlet_coefficients(rng, clients, dim, heterogeneity)
    b = dirichlet_coefficients(rng, clients, dim, heterogeneity)
    x0 = rng.uniform(0.0, 1.0, size=dim)
    objs: list[Objective] = [
        QuadraticClient(a[i], b[i], name=f"quadratic-client{i}") for i in range(clients)
    ]
    return FederatedProblem(
        objs,
        np.full(clients, 1.0 / clients),
        x0,
        name="quadratic",
        optimum_value=-0.025 + 1.0 / (10.0 * dim),
        optimum_x=np.full(dim, 0.475),
        info={"dim": dim, "clients": clients, "heterogeneity": heterogeneity, "seed": seed},
    )


# --------------------------------------------------------------------------------------
# Ackley and Levy: F = g exactly; clients get a scale a_i and a linear tilt
# --------------------------------------------------------------------------------------
class TiltedClient(SyntheticObjective):
    r"""f_i(x) = s_i g(z) + (1/d) \sum_j t_ij z_j with z = lo + (hi - lo) x.

    ``g`` is a base function with its gradient in z. With uniform weights the client
    averages of s_i and t_ij are 1 and 0, so F = g exactly and g's optimum is F's.
    """

    def __init__(
        self,
        base: Callable[[np.ndarray], np.ndarray],
        base_grad: Callable[[np.ndarray], np.ndarray],
        lo: float,
        hi: float,
        scale: float,
        tilt: np.ndarray,
        name: str = "",
    ) -> None:
        super().__init__(tilt.size, name=name)
        self.base, self.base_grad = base, base_grad
        self.lo, self.hi, self.scale, self.tilt = lo, hi, scale, tilt

    def _z(self, X: np.ndarray) -> np.ndarray:
        return self.lo + (self.hi - self.lo) * np.asarray(X)

    def value(self, X: np.ndarray) -> np.ndarray:
        Z = self._z(X)
        return self.scale * self.base(Z) + Z @ self.tilt / self.dim

    def gradient(self, X: np.ndarray) -> np.ndarray:
        Z = self._z(X)
        return (self.hi - self.lo) * (self.scale * self.base_grad(Z) + self.tilt / self.dim)


def ackley(Z: np.ndarray) -> np.ndarray:
    """Ackley: -20 exp(-0.2 sqrt(mean z^2)) - exp(mean cos 2 pi z) + 20 + e; min 0 at 0."""
    r = np.sqrt(np.mean(Z * Z, axis=1))
    c = np.mean(np.cos(2 * np.pi * Z), axis=1)
    return -20.0 * np.exp(-0.2 * r) - np.exp(c) + 20.0 + np.e


def ackley_grad(Z: np.ndarray) -> np.ndarray:
    d = Z.shape[1]
    r = np.sqrt(np.mean(Z * Z, axis=1, keepdims=True))
    c = np.mean(np.cos(2 * np.pi * Z), axis=1, keepdims=True)
    safe_r = np.where(r > 0, r, 1.0)
    g1 = np.where(r > 0, 4.0 * np.exp(-0.2 * r) * Z / (d * safe_r), 0.0)
    g2 = np.exp(c) * 2 * np.pi * np.sin(2 * np.pi * Z) / d
    return g1 + g2


def levy(Z: np.ndarray) -> np.ndarray:
    """Levy, averaged over coordinates (so values do not grow with d); min 0 at z = 1."""
    W = 1.0 + (Z - 1.0) / 4.0
    d = Z.shape[1]
    head = np.sin(np.pi * W[:, 0]) ** 2
    mid = np.sum((W[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * W[:, :-1] + 1) ** 2), axis=1)
    tail = (W[:, -1] - 1) ** 2 * (1 + np.sin(2 * np.pi * W[:, -1]) ** 2)
    return (head + mid + tail) / d


def levy_grad(Z: np.ndarray) -> np.ndarray:
    W = 1.0 + (Z - 1.0) / 4.0
    d = Z.shape[1]
    G = np.zeros_like(W)
    G[:, 0] += 2 * np.pi * np.sin(np.pi * W[:, 0]) * np.cos(np.pi * W[:, 0])
    Wm = W[:, :-1]
    s = np.sin(np.pi * Wm + 1)
    G[:, :-1] += 2 * (Wm - 1) * (1 + 10 * s**2) + (Wm - 1) ** 2 * 20 * s * np.cos(
        np.pi * Wm + 1
    ) * np.pi
    wl = W[:, -1]
    sl = np.sin(2 * np.pi * wl)
    G[:, -1] += 2 * (wl - 1) * (1 + sl**2) + (wl - 1) ** 2 * 2 * sl * np.cos(2 * np.pi * wl) * 2 * np.pi
    return G / 4.0 / d


def _tilted_problem(
    name: str,
    base: Callable[[np.ndarray], np.ndarray],
    base_grad: Callable[[np.ndarray], np.ndarray],
    lo: float,
    hi: float,
    z_opt: float,
    dim: int,
    clients: int,
    heterogeneity: float,
    seed: int,
) -> FederatedProblem:
    _check_common(clients, dim, heterogeneity, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 202]))
    scales = dirichlet_coefficients(rng, clients, 1, heterogeneity)[:, 0]
    tilts = dirichlet_coefficients(rng, clients, dim, heterogeneity) - 1.0
    x0 = rng.uniform(0.0, 1.0, size=dim)
    objs: list[Objective] = [
        TiltedClient(base, base_grad, lo, hi, scales[i], tilts[i], name=f"{name}-client{i}")
        for i in range(clients)
    ]
    x_opt = np.full(dim, (z_opt - lo) / (hi - lo))
    return FederatedProblem(
        objs,
        np.full(clients, 1.0 / clients),
        x0,
        name=name,
        optimum_value=0.0,
        optimum_x=x_opt,
        info={"dim": dim, "clients": clients, "heterogeneity": heterogeneity, "seed": seed},
    )


def ackley_problem(
    dim: int = 300, clients: int = 5, heterogeneity: float = 0.5, seed: int = 0
) -> FederatedProblem:
    """Federated Ackley on z in [-2, 2]^d: F = Ackley (min 0 at z = 0); clients scaled/tilted."""
    return _tilted_problem(
        "ackley", ackley, ackley_grad, -2.0, 2.0, 0.0, dim, clients, heterogeneity, seed
    )


def levy_problem(
    dim: int = 300, clients: int = 5, heterogeneity: float = 0.5, seed: int = 0
) -> FederatedProblem:
    """Federated Levy on z in [-10, 10]^d (coordinate-averaged): F = Levy, min 0 at z = 1."""
    return _tilted_problem(
        "levy", levy, levy_grad, -10.0, 10.0, 1.0, dim, clients, heterogeneity, seed
    )


# --------------------------------------------------------------------------------------
# The FZooS paper's Ackley and Levy: clients scale and shift the argument
# --------------------------------------------------------------------------------------
def paper_ackley(U: np.ndarray) -> np.ndarray:
    """The paper code's Ackley: -20 exp(-0.2 |u|/sqrt(d)) - exp(mean cos(pi u)) + 20 + e."""
    r = np.sqrt(np.mean(U * U, axis=1))
    c = np.mean(np.cos(np.pi * U), axis=1)
    return -20.0 * np.exp(-0.2 * r) - np.exp(c) + 20.0 + np.e


def paper_ackley_grad(U: np.ndarray) -> np.ndarray:
    d = U.shape[1]
    r = np.sqrt(np.mean(U * U, axis=1, keepdims=True))
    c = np.mean(np.cos(np.pi * U), axis=1, keepdims=True)
    safe_r = np.where(r > 0, r, 1.0)
    g1 = np.where(r > 0, 4.0 * np.exp(-0.2 * r) * U / (d * safe_r), 0.0)
    g2 = np.exp(c) * np.pi * np.sin(np.pi * U) / d
    return g1 + g2


def paper_levy(U: np.ndarray) -> np.ndarray:
    """The paper code's Levy (a sum, not averaged), w = 1 + (u - 1)/4:
    sin^2(pi w_1) + sum_{j=2}^{d-1} (w_j - 1)^2 (1 + 10 sin^2(pi w_j + 1))
    + (w_d - 1)^2 (1 + sin^2(2 pi w_d)); the middle sum starts at the second coordinate."""
    W = 1.0 + (U - 1.0) / 4.0
    head = np.sin(np.pi * W[:, 0]) ** 2
    Wm = W[:, 1:-1]
    mid = np.sum((Wm - 1) ** 2 * (1 + 10 * np.sin(np.pi * Wm + 1) ** 2), axis=1)
    wl = W[:, -1]
    tail = (wl - 1) ** 2 * (1 + np.sin(2 * np.pi * wl) ** 2)
    return head + mid + tail


def paper_levy_grad(U: np.ndarray) -> np.ndarray:
    W = 1.0 + (U - 1.0) / 4.0
    G = np.zeros_like(W)
    G[:, 0] += np.pi * np.sin(2 * np.pi * W[:, 0])
    Wm = W[:, 1:-1]
    s = np.sin(np.pi * Wm + 1)
    G[:, 1:-1] += 2 * (Wm - 1) * (1 + 10 * s**2) + (Wm - 1) ** 2 * 20 * np.pi * s * np.cos(np.pi * Wm + 1)
    wl = W[:, -1]
    sl = np.sin(2 * np.pi * wl)
    G[:, -1] += 2 * (wl - 1) * (1 + sl**2) + (wl - 1) ** 2 * 4 * np.pi * sl * np.cos(2 * np.pi * wl)
    return G / 4.0


class ShiftedClient(SyntheticObjective):
    r"""f_i(x) = g(c1_i ⊙ (z - c2_i)) with z = 20 x - 10 (the FZooS paper's clients).

    ``g`` is a base function of u with its gradient in u; the x-gradient is
    20 c1_i ⊙ ∇g(u).
    """

    def __init__(
        self,
        base: Callable[[np.ndarray], np.ndarray],
        base_grad: Callable[[np.ndarray], np.ndarray],
        scale: np.ndarray,
        shift: np.ndarray,
        name: str = "",
    ) -> None:
        super().__init__(scale.size, name=name)
        self.base, self.base_grad, self.scale, self.shift = base, base_grad, scale, shift

    def _u(self, X: np.ndarray) -> np.ndarray:
        return self.scale * (20.0 * np.asarray(X) - 10.0 - self.shift)

    def value(self, X: np.ndarray) -> np.ndarray:
        return self.base(self._u(X))

    def gradient(self, X: np.ndarray) -> np.ndarray:
        return 20.0 * self.scale * self.base_grad(self._u(X))


def _paper_problem(
    name: str,
    base: Callable[[np.ndarray], np.ndarray],
    base_grad: Callable[[np.ndarray], np.ndarray],
    dim: int,
    clients: int,
    heterogeneity: float,
    seed: int,
) -> FederatedProblem:
    _check_common(clients, dim, heterogeneity, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 404]))
    # per coordinate one Dirichlet(1/N) vector over the clients for each of c1 and c2
    alpha = np.full(clients, 1.0 / clients)
    p = rng.dirichlet(alpha, size=dim).T  # N x d
    q = rng.dirichlet(alpha, size=dim).T
    c1 = 0.1 + heterogeneity * (p - 1.0 / clients)
    c2 = heterogeneity * (q - 1.0 / clients)
    x0 = rng.uniform(0.0, 1.0, size=dim)
    objs: list[Objective] = [
        ShiftedClient(base, base_grad, c1[i], c2[i], name=f"{name}-client{i}") for i in range(clients)
    ]
    return FederatedProblem(
        objs,
        np.full(clients, 1.0 / clients),
        x0,
        name=name,
        info={"dim": dim, "clients": clients, "heterogeneity": heterogeneity, "seed": seed},
    )


def paper_ackley_problem(
    dim: int = 300, clients: int = 5, heterogeneity: float = 0.5, seed: int = 0
) -> FederatedProblem:
    """The FZooS paper's federated Ackley (docs/design.md §7): f_i(x) = g(c1_i ⊙ (z - c2_i)),
    z = 20 x - 10, g(u) = -20 exp(-0.2 |u|/sqrt(d)) - exp(mean_j cos(pi u_j)) + 20 + e.

    Per coordinate, c1_ij = 0.1 + C (p_ij - 1/N) and c2_ij = C (q_ij - 1/N) with
    (p_1j..p_Nj), (q_1j..q_Nj) ~ Dirichlet(1/N). F* is unknown (``optimum_value`` None);
    x0 ~ U[0, 1]^d from the seed.
    """
    return _paper_problem("paper-ackley", paper_ackley, paper_ackley_grad, dim, clients, heterogeneity, seed)


def paper_levy_problem(
    dim: int = 300, clients: int = 5, heterogeneity: float = 0.5, seed: int = 0
) -> FederatedProblem:
    """The FZooS paper's federated Levy (docs/design.md §7): f_i(x) = g(c1_i ⊙ (z - c2_i)) with
    the coefficients of :func:`paper_ackley_problem` and g the summed Levy function of
    w = 1 + (u - 1)/4 whose middle sum starts at the second coordinate
    (:func:`paper_levy`). F* is unknown (``optimum_value`` None)."""
    return _paper_problem("paper-levy", paper_levy, paper_levy_grad, dim, clients, heterogeneity, seed)


class ProblemRegistry(dict):
    """The problem factories by name, plus the ``bbob:<function>`` family.

    Iterating lists the fixed names; ``name in PROBLEMS`` and ``PROBLEMS[name]`` also take
    every valid family name (``bbob:f7``, ``bbob:7``: :mod:`fedzoo.objectives.bbob`, built
    with the optional ``coco-experiment`` package, imported only when such a problem is
    built), so every caller that checks a name against the registry accepts them.
    """

    FAMILIES = ("bbob:f<1..24>",)

    def __contains__(self, name: object) -> bool:
        if dict.__contains__(self, name):
            return True
        from fedzoo.objectives.bbob import is_bbob_name

        return is_bbob_name(name)

    def __getitem__(self, name: str) -> Callable[..., FederatedProblem]:
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        from fedzoo.objectives.bbob import bbob_problem, is_bbob_name, parse_function

        if is_bbob_name(name):
            function = parse_function(name)
            return lambda **kwargs: bbob_problem(function, **kwargs)
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def names(self) -> list[str]:
        """The fixed names and the families, for messages."""
        return [*sorted(self), *self.FAMILIES]


PROBLEMS: ProblemRegistry = ProblemRegistry({
    "quadratic": quadratic_problem,
    "ackley": ackley_problem,
    "levy": levy_problem,
    "paper-ackley": paper_ackley_problem,
    "paper-levy": paper_levy_problem,
})


def make_problem(name: str, **kwargs: Any) -> FederatedProblem:
    """Build a registered problem by name (quadratic, ackley, levy, paper-ackley,
    paper-levy, or a BBOB function ``bbob:f1`` .. ``bbob:f24``, :mod:`fedzoo.objectives.bbob`)."""
    if isinstance(name, str) and name.lower().startswith("bbob:") and name not in PROBLEMS:
        from fedzoo.objectives.bbob import parse_function

        parse_function(name)  # raises the precise error
    try:
        factory = PROBLEMS[name]
    except KeyError:
        raise UnknownNameError(
            f"Unknown problem {name!r}; expected one of {PROBLEMS.names()}."
        ) from None
    return factory(**kwargs)

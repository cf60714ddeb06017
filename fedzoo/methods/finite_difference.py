r"""Finite-difference baselines (FedZO, FedProx, SCAFFOLD) and the exact-gradient reference.

Every local step estimates ∇f_i(x) from queries (``fd-estimator``): ``rgf``, the
randomised gradient-free estimator over Q = ``rgf-directions`` orthonormal directions,
(d/Q) Σ_q (f(x + μu_q) − f(x)) / μ · u_q, or ``coordinate``, forward differences along
every coordinate (d queries); then queries f_i at the new iterate for the next step's
base value (docs/design.md §3).

* ``fedzo`` (:class:`FedZO`): no correction.
* ``fedprox`` (:class:`FedProx`): adds μ_prox (x − x_{r-1}).
* ``scaffold2`` (:class:`Scaffold2`): adds c − c_i; c_i is the mean of the client's
  local gradient estimates of its last round (sent with the train reply), c the
  combination of the c_i.
* ``scaffold1`` (:class:`Scaffold1`): adds c − c_i; c_i is an RGF estimate at the new
  global point x_r, made in a sync exchange.
* ``fo`` (:class:`FirstOrder`): exact gradients (synthetic problems only), each counted
  as one query: a reference, not a zeroth-order method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedzoo.corrections import fedprox_term, scaffold_term
from fedzoo.errors import ConfigError, ObjectiveError
from fedzoo.estimators.finite_difference import FD_ESTIMATORS, rgf_gradient
from fedzoo.methods import register
from fedzoo.methods.base import Method, Spec, TrainContext
from fedzoo.payload import ArraySpec, Payload
from fedzoo.state import ClientState, ServerState, Session

if TYPE_CHECKING:
    from fedzoo.config import RunConfig
    from fedzoo.protocol import Aggregate

FD_OPTIONS = ("fd-estimator", "rgf-directions", "fd-step")


@register
class FedZO(Method):
    """FedZO: local steps on finite-difference estimates, no correction."""

    name = "fedzo"
    summary = "finite-difference (RGF) local steps, no correction; 1 exchange"
    rank = 30
    options = FD_OPTIONS

    def gradient(self, ctx: TrainContext, x: np.ndarray, fx: float) -> np.ndarray:
        c = ctx.config
        return FD_ESTIMATORS[c.fd_estimator](ctx.session.query, x, fx, ctx.rng, c.rgf_directions, c.fd_step)

    def estimate_queries(self, config: RunConfig, dim: int) -> int:
        """Queries of one gradient estimate: Q (rgf; at most d orthonormal directions) or d
        (coordinate)."""
        return dim if config.fd_estimator == "coordinate" else min(config.rgf_directions, dim)

    def query_bound(self, config: RunConfig, dim: int, kind: str, first: bool) -> int | None:
        """train: f_i(x_{r-1}), T estimates and the T - 1 new iterates; sync: f_i(x_r)
        and one RGF estimate (SCAFFOLD-1)."""
        if kind == "sync":
            return 1 + min(config.rgf_directions, dim)
        T = config.local_steps
        return 1 + T * self.estimate_queries(config, dim) + (T - 1)

    def after_step(self, ctx: TrainContext, x: np.ndarray, fx: float, last: bool) -> float:
        if last:
            return fx
        return float(ctx.session.query(x[None, :])[0])


@register
class FedProx(FedZO):
    """FedProx over FedZO's estimates: the proximal term pulls towards x_{r-1}."""

    name = "fedprox"
    summary = "fedzo + proximal term prox-mu (x - x_{r-1}); 1 exchange"
    rank = 40
    options = (*FD_OPTIONS, "prox-mu")

    def correct(self, ctx: TrainContext, x: np.ndarray, t: int, g: np.ndarray) -> np.ndarray:
        return g + fedprox_term(x, ctx.x_global, ctx.config.prox_mu)


@dataclass
class ScaffoldClientState(ClientState):
    """Adds the client's control variate c_i."""

    scaffold_own: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = super().to_arrays()
        if self.scaffold_own is not None:
            out["scaffold-own"] = np.asarray(self.scaffold_own, dtype=np.float64)
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray], config: RunConfig) -> None:
        super().load_arrays(arrays, config)
        self.scaffold_own = arrays.get("scaffold-own")


@dataclass
class ScaffoldServerState(ServerState):
    """Adds the server's control variate c."""

    scaffold_c: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = super().to_arrays()
        if self.scaffold_c is not None:
            out["scaffold-c"] = self.scaffold_c.copy()
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.scaffold_c = arrays.get("scaffold-c")


class _Scaffold(FedZO):
    """SCAFFOLD's correction c − c_i (both from the previous round); c travels with train."""

    client_state = ScaffoldClientState
    server_state = ScaffoldServerState

    def train_message_spec(self, config: RunConfig, dim: int) -> Spec:
        return {"scaffold-c": ArraySpec(dim, optional=True)}

    def train_message(self, config: RunConfig, state: ServerState) -> Payload:
        assert isinstance(state, ScaffoldServerState)
        return {} if state.scaffold_c is None else {"scaffold-c": state.scaffold_c.copy()}

    def correct(self, ctx: TrainContext, x: np.ndarray, t: int, g: np.ndarray) -> np.ndarray:
        assert isinstance(ctx.state, ScaffoldClientState)
        return g + scaffold_term(ctx.message.get("scaffold-c"), ctx.state.scaffold_own)


@register
class Scaffold1(_Scaffold):
    """SCAFFOLD, option I: c_i is an RGF estimate at x_r, made in a sync exchange."""

    name = "scaffold1"
    summary = "fedzo + control variates c - c_i, c_i from an RGF estimate at x_r; train + sync"
    rank = 50
    has_sync = True

    def sync_reply_spec(self, config: RunConfig, dim: int) -> Spec:
        return {"scaffold-ci": ArraySpec(dim)}

    def client_sync(self, config: RunConfig, session: Session, state: Any, message: Payload,
                    rng: np.random.Generator) -> Payload:
        """f_i(x_r) and an RGF estimate there (1 + Q queries)."""
        x = message["x"]
        fx = session.value_at(x)
        state.scaffold_own = rgf_gradient(session.query, x, fx, rng, config.rgf_directions, config.fd_step)
        return {"scaffold-ci": state.scaffold_own.copy()}

    def aggregate_sync(self, config: RunConfig, new: ServerState, agg: Aggregate) -> None:
        assert isinstance(new, ScaffoldServerState)
        new.scaffold_c = agg.robust("scaffold-ci", config)


@register
class Scaffold2(_Scaffold):
    """SCAFFOLD, option II: c_i is the mean of the last round's local estimates."""

    name = "scaffold2"
    summary = "fedzo + control variates c - c_i, c_i = mean of last round's estimates; 1 exchange"
    rank = 60

    def begin_train(self, ctx: TrainContext) -> None:
        ctx.scratch["grad-sum"] = np.zeros(ctx.state.dim)

    def correct(self, ctx: TrainContext, x: np.ndarray, t: int, g: np.ndarray) -> np.ndarray:
        ctx.scratch["grad-sum"] += g
        return super().correct(ctx, x, t, g)

    def train_reply_spec(self, config: RunConfig, dim: int) -> Spec:
        return {"scaffold-ci": ArraySpec(dim)}

    def end_train(self, ctx: TrainContext, reply: Payload) -> None:
        assert isinstance(ctx.state, ScaffoldClientState)
        ctx.state.scaffold_own = ctx.scratch["grad-sum"] / ctx.config.local_steps
        reply["scaffold-ci"] = ctx.state.scaffold_own.copy()

    def aggregate_train(self, config: RunConfig, new: ServerState, agg: Aggregate) -> None:
        assert isinstance(new, ScaffoldServerState)
        new.scaffold_c = agg.robust("scaffold-ci", config)


@register
class FirstOrder(Method):
    """Exact local gradients (synthetic problems): the first-order reference."""

    name = "fo"
    summary = "exact gradients (synthetic problems only), each counted as a query: a reference"
    rank = 90
    exact_gradients = True

    def gradient(self, ctx: TrainContext, x: np.ndarray, fx: float) -> np.ndarray:
        grad = getattr(ctx.session.objective, "gradient", None)
        if grad is None:
            raise ConfigError(
                "Method 'fo' needs objectives with an exact gradient (synthetic problems); "
                f"{ctx.session.objective.name} has none."
            )
        ctx.session.charge(1)
        return np.asarray(grad(x[None, :]), dtype=np.float64)[0]

    def query_bound(self, config: RunConfig, dim: int, kind: str, first: bool) -> int | None:
        """f_i(x_{r-1}) and T exact gradients, one query each."""
        return 1 + config.local_steps

    def check_objectives(self, objectives: Any) -> None:
        if not all(hasattr(o, "gradient") for o in objectives):
            raise ObjectiveError("Method 'fo' needs exact gradients: use a synthetic problem.")

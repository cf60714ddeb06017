r"""Surrogate methods: a GP on the client's own query history, its posterior-mean gradient.

Every client keeps every point it queried with its value (``history``, capped at
``history-max``). At the start of a train exchange it fits the hyper-parameters of a
GP on the ``gp-fit-points`` points nearest to x_{r-1}; each local step follows the
gradient of the posterior mean of a GP conditioned on the ``gp-history`` points nearest
to the iterate (the *trajectory-informed* surrogate gradient, docs/design.md §2), then
queries the new iterate and the ``explore-points`` candidates of highest posterior
variance among ``explore-candidates`` drawn in a box of half-width ``explore-radius``.

* ``zord`` (:class:`ZORD`): no correction, a single exchange; before its local steps
  it queries x_{r-1} and the most uncertain points around it (the exploration FZooS
  does in its sync exchange).

:class:`SurrogateMethod` and :class:`SurrogateClientState` are the parts FZooS builds on
(:mod:`fedzoo.methods.fzoos`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from fedzoo.estimators.surrogate import TrajectorySurrogate, box_points
from fedzoo.history import QueryHistory
from fedzoo.methods import register
from fedzoo.methods.base import Method, TrainContext
from fedzoo.state import ClientState, Session
from fedzoo.surrogates.gp import GPHyper

if TYPE_CHECKING:
    from fedzoo.config import RunConfig

SURROGATE_OPTIONS = (
    "gp-history", "gp-fit-points", "gp-kernel", "gp-restarts", "history-max", "init-points",
    "init-radius", "explore-candidates", "explore-points", "explore-radius",
)


@dataclass
class SurrogateClientState(ClientState):
    """Adds the query history and the GP hyper-parameters fitted this round."""

    history: QueryHistory | None = None
    gp_hyper: GPHyper | None = None

    @classmethod
    def new(cls, config: RunConfig, dim: int) -> SurrogateClientState:
        return cls(dim, history=QueryHistory(dim, config.history_max))

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = super().to_arrays()
        if self.history is not None:
            out["history-x"] = self.history.X.copy()
            out["history-y"] = self.history.y.copy()
            out["history-first-id"] = np.array([self.history.first_id], dtype=np.int64)
        if self.gp_hyper is not None:  # raw values: a log round trip is not exact
            h = self.gp_hyper
            out["gp-hyper"] = np.array([h.lengthscale, h.signal_var, h.noise_var])
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray], config: RunConfig) -> None:
        super().load_arrays(arrays, config)
        if "history-x" in arrays:
            first = int(arrays["history-first-id"][0]) if "history-first-id" in arrays else 0
            self.history = QueryHistory.from_arrays(
                np.asarray(arrays["history-x"]).reshape(-1, self.dim),
                np.asarray(arrays["history-y"]), config.history_max, first,
            )
        if "gp-hyper" in arrays:
            ls, s2, n2 = (float(v) for v in np.asarray(arrays["gp-hyper"]))
            self.gp_hyper = GPHyper(ls, s2, n2)


def trajectory_surrogate(config: RunConfig, state: SurrogateClientState) -> TrajectorySurrogate:
    """The client's GP surrogate over its history, with this round's hyper-parameters."""
    assert state.history is not None
    return TrajectorySurrogate(state.history, config.gp_history, config.gp_kernel, state.gp_hyper)


def explore_around(config: RunConfig, session: Session, state: SurrogateClientState, x: np.ndarray,
                   rng: np.random.Generator) -> None:
    """Query x, then the ``sync-points`` most uncertain of ``sync-candidates`` points
    within rho_i = max(mean|x - x_i| / 2, explore-radius) of x (x_i: the client's last
    local end point); uniform points in that box before the first GP fit."""
    session.value_at(x)
    radius = config.explore_radius
    if state.local_x is not None:
        radius = max(float(np.mean(np.abs(x - state.local_x))) / 2.0, radius)
    if state.gp_hyper is None:  # nothing fitted yet: uniform points
        session.query(box_points(x, rng, config.sync_points, radius))
        return
    C = trajectory_surrogate(config, state).most_uncertain(
        x, rng, config.sync_candidates, config.sync_points, radius
    )
    session.query(C)


class SurrogateMethod(Method):
    """Local steps along the GP surrogate's gradient, with active exploration.

    ``explores_at_start``: query x_{r-1} and the most uncertain points around it before
    the local steps (single-exchange methods; FZooS does this in its sync exchange).
    """

    explores_at_start: ClassVar[bool] = True
    client_state = SurrogateClientState
    options = (*SURROGATE_OPTIONS, "sync-candidates", "sync-points")

    def begin_train(self, ctx: TrainContext) -> None:
        config, state, session = ctx.config, ctx.state, ctx.session
        assert isinstance(state, SurrogateClientState) and state.history is not None
        if ctx.round == 1 or len(state.history) < 2:
            session.query(box_points(ctx.x_global, ctx.rng, config.init_points, config.init_radius))
        elif self.explores_at_start:
            explore_around(config, session, state, ctx.x_global, ctx.rng)
        surrogate = trajectory_surrogate(config, state)
        state.gp_hyper = surrogate.refit(ctx.x_global, ctx.rng, config.gp_restarts, config.gp_fit_points)
        ctx.scratch["surrogate"] = surrogate

    def gradient(self, ctx: TrainContext, x: np.ndarray, fx: float) -> np.ndarray:
        return ctx.scratch["surrogate"].gradient(x)

    def query_bound(self, config: RunConfig, dim: int, kind: str, first: bool) -> int | None:
        """train: f_i(x_{r-1}), the initial design (a client's first exchange) or the
        exploration at x_{r-1} (``explores_at_start``), T iterates and (T - 1) x
        explore-points; sync: f_i(x_r) and sync-points."""
        explore = 1 + config.sync_points
        if kind == "sync":
            return explore
        start = max(config.init_points, explore if self.explores_at_start else 0) if first else (
            explore if self.explores_at_start else 0)
        T = config.local_steps
        return 1 + start + T + (T - 1) * config.explore_points

    def after_step(self, ctx: TrainContext, x: np.ndarray, fx: float, last: bool) -> float:
        ctx.session.query(x[None, :])
        if not last:
            config = ctx.config
            ctx.session.query(ctx.scratch["surrogate"].most_uncertain(
                x, ctx.rng, config.explore_candidates, config.explore_points, config.explore_radius
            ))
        return fx


@register
class ZORD(SurrogateMethod):
    """ZORD: trajectory-informed surrogate gradients, no correction, one exchange."""

    name = "zord"
    summary = "surrogate (GP) gradients without correction; explores at x_{r-1}; 1 exchange"
    rank = 20

r"""``fzoos-square``: FZooS's idea on the Square Attack's search space (L∞ attacks).

FZooS (:mod:`fedzoo.methods.fzoos`) lets every client fit a surrogate of its own
objective on its query history and combines the clients' surrogate weights into a
global surrogate of F = Σ_i p_i f_i that corrects each client's direction. Against an
L∞ ball the Square Attack (:mod:`fedzoo.methods.square`) is far better than gradient
steps from the ball's centre: its iterates stay on the vertices and each update flips a
square. This method keeps the square search and uses FZooS's two surrogates to choose
*which* squares the clients evaluate:

* **Client surrogate**: a linear model of f_i on block features φ(x): the means of x over
  a G × G grid of blocks of the image per channel (G = 7: 49 features on MNIST; a 1 × d
  image gets min(49, d) blocks of its row), ridge-fitted (centred features, ridge
  ``RIDGE`` on standardised values, weights rescaled to the values' units) on the
  client's last ``HISTORY`` evaluated points. The client replies its weights w_i
  (G·G·C floats) with its values; no extra query.
* **Global surrogate**: w = Σ_i p_i w_i over the valid replies (or the robust
  ``aggregation``), the server's model of F.
* **Candidates**: each round the server draws ``square-proposals`` × λ square updates of
  the incumbent (fedsquare's draws, same schedule of the square size) and sends the λ
  whose predicted F̂(c) = φ(c)·w is least (before the first weights: the first λ,
  which is fedsquare's random choice). The clients evaluate them (λ counted queries)
  and the server keeps the best by the weighted reported values if better than x_{r-1}
  (greedy, as fedsquare); round 1 starts at the stripes.

Everything else (options ``square-*``, stripes, acceptance, accounting, the kept
candidate values that make value-start free) is :class:`~fedzoo.methods.square.FedSquare`'s.

Measured (BENCHMARKS.md §6): on MNIST-5k (N = 10, P = 0.7, ε = 0.3, 8 images) it needs
about twice fedsquare's median queries; it is kept for the record, not as a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedzoo.methods import register
from fedzoo.methods.base import Spec, TrainContext
from fedzoo.methods.square import (
    FedSquare,
    SquareClientState,
    SquareServerState,
    candidates,
    image_shape,
    stripes,
)
from fedzoo.payload import ArraySpec, Payload
from fedzoo.state import ServerState

if TYPE_CHECKING:
    from fedzoo.config import RunConfig
    from fedzoo.protocol import Aggregate

GRID = 7
HISTORY = 400
RIDGE = 1.0


def block_matrix(config: RunConfig, dim: int) -> np.ndarray:
    """d × F: x @ B = the block means φ(x) (G × G blocks per channel)."""
    h, w, c = image_shape(config, dim)
    gh, gw = (1, min(GRID * GRID, w)) if h == 1 else (min(GRID, h), min(GRID, w))
    rows = np.minimum(np.arange(h) * gh // h, gh - 1)
    cols = np.minimum(np.arange(w) * gw // w, gw - 1)
    block = (rows[:, None, None] * gw + cols[None, :, None]) * c + np.arange(c)[None, None, :]
    block = block.reshape(-1)
    B = np.zeros((dim, gh * gw * c))
    B[np.arange(dim), block] = 1.0
    return B / B.sum(axis=0, keepdims=True)


def num_features(config: RunConfig, dim: int) -> int:
    h, w, c = image_shape(config, dim)
    return (min(GRID * GRID, w) if h == 1 else min(GRID, h) * min(GRID, w)) * c


def fit_weights(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ridge weights of y on the centred features, in y's units (zeros without spread)."""
    if len(y) < 2 or np.std(y) == 0:
        return np.zeros(F.shape[1])
    Fc, sd = F - F.mean(axis=0), float(np.std(y))
    yc = (y - y.mean()) / sd
    w = np.linalg.solve(Fc.T @ Fc + RIDGE * np.eye(F.shape[1]), Fc.T @ yc)
    return w * sd


@dataclass
class SurrogateSquareServerState(SquareServerState):
    """Adds the global surrogate weights (None before the first replies)."""

    square_weights: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = super().to_arrays()
        if self.square_weights is not None:
            out["square-weights"] = self.square_weights.copy()
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        super().load_arrays(arrays)
        self.square_weights = arrays.get("square-weights")


@dataclass
class SurrogateSquareClientState(SquareClientState):
    """Adds the client's recent features and values (its surrogate's data)."""

    sg_features: np.ndarray | None = None
    sg_values: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**super().to_arrays(), **surrogate_arrays(self)}

    def load_arrays(self, arrays: Mapping[str, np.ndarray], config: RunConfig) -> None:
        super().load_arrays(arrays, config)
        load_surrogate(self, arrays)


def surrogate_arrays(state: Any) -> dict[str, np.ndarray]:
    """A client state's surrogate data (``sg_features``, ``sg_values``) as arrays."""
    if state.sg_features is None or state.sg_values is None:
        return {}
    return {"sg-features": state.sg_features.copy(), "sg-values": state.sg_values.copy()}


def load_surrogate(state: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Fill ``sg_features`` / ``sg_values`` from :func:`surrogate_arrays`' output."""
    if "sg-features" in arrays:
        state.sg_values = np.asarray(arrays["sg-values"], dtype=np.float64)
        state.sg_features = np.asarray(arrays["sg-features"], dtype=np.float64).reshape(len(state.sg_values), -1)


def update_surrogate(state: Any, F: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Append features ``F`` and ``values`` to the state's surrogate data, keep the last
    ``HISTORY`` and return the refitted ridge weights."""
    if state.sg_features is not None and state.sg_values is not None:
        F, values = np.vstack([state.sg_features, F]), np.concatenate([state.sg_values, values])
    state.sg_features, state.sg_values = F[-HISTORY:], values[-HISTORY:]
    return fit_weights(state.sg_features, state.sg_values)


def ranked_candidates(config: RunConfig, state: ServerState) -> np.ndarray:
    """The λ proposals of least predicted F (the first λ without global weights)."""
    assert isinstance(state, SurrogateSquareServerState)
    lam, m = config.square_candidates, config.square_proposals
    if not state.square_started or state.square_weights is None or m == 1:  # as fedsquare
        return candidates(config, state.x, state.round + 1, state.square_started, state.square_center)
    # the square-size schedule counts the candidates sent, not the proposals
    props = np.vstack([_proposals(config, state, j, m) for j in range(lam)])
    scores = props @ block_matrix(config, state.x.size) @ state.square_weights
    order = np.argsort(scores, kind="stable")
    return props[order[:lam]]


def _proposals(config: RunConfig, state: ServerState, j: int, m: int) -> np.ndarray:
    """m proposals at the schedule position of candidate j of this round."""
    sub = config.replace(square_candidates=m, square_iterations=_iterations(config) * m)
    # candidate j of round r sits at iteration (r - 1) λ + j; with m per slot the wide
    # draw of this sub-config at "round" (r - 1) λ + j + 1 has that same schedule position
    slot = state.round * config.square_candidates + j + 1
    assert isinstance(state, SquareServerState)
    return candidates(sub, state.x, slot, True, state.square_center)


def _iterations(config: RunConfig) -> int:
    return config.square_iterations or config.rounds * config.square_candidates


@register
class FZooSSquare(FedSquare):
    """Square search whose squares are ranked by the clients' combined surrogates."""

    name = "fzoos-square"
    summary = ("FZooS's client + global surrogates choosing which squares the clients evaluate "
               "(a surrogate-guided Square Attack for L-inf attacks); 1 exchange")
    rank = 14
    options = (*FedSquare.options, "square-proposals")
    client_state = SurrogateSquareClientState
    server_state = SurrogateSquareServerState

    def candidate_points(self, config: RunConfig, state: ServerState) -> np.ndarray:
        return ranked_candidates(config, state)

    def train_reply_spec(self, config: RunConfig, dim: int) -> Spec:
        return {**super().train_reply_spec(config, dim), "square-weights": ArraySpec(num_features(config, dim))}

    def local_train(self, ctx: TrainContext, value_start: float) -> np.ndarray:
        x = super().local_train(ctx, value_start)
        state = ctx.state
        assert isinstance(state, SurrogateSquareClientState)
        B = block_matrix(ctx.config, state.dim)
        pts = np.vstack([ctx.x_global[None, :], state.square_points])
        vals = np.concatenate([[value_start], state.square_values])
        floor = ctx.config.floor_value()
        if floor is not None:  # the surrogate models what the server compares
            vals = np.maximum(vals, floor)
        ctx.scratch["square-weights"] = update_surrogate(state, pts @ B, vals)
        return x

    def end_train(self, ctx: TrainContext, reply: Payload) -> None:
        super().end_train(ctx, reply)
        reply["square-weights"] = ctx.scratch["square-weights"]

    def aggregate_train(self, config: RunConfig, new: ServerState, agg: Aggregate) -> None:
        super().aggregate_train(config, new, agg)
        assert isinstance(new, SurrogateSquareServerState)
        new.square_weights = np.asarray(agg.robust("square-weights", config), dtype=np.float64)


__all__ = ["FZooSSquare", "block_matrix", "fit_weights", "load_surrogate", "stripes", "surrogate_arrays",
           "update_surrogate"]

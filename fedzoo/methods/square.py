r"""``fedsquare``: the Square Attack run by the server on F = Σ_i p_i f_i.

The Square Attack (Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV 2020; reference
implementation github.com/max-andr/square-attack) is a random search over the vertices
of the L∞ ball: start from vertical stripes of ±ε, then repeatedly set one random
square window of side s to a random ±ε per channel and keep it if the loss dropped.

**The ball.** The search runs over the vertices of the L∞ ball of radius r =
``square-radius`` around the start point x0, in the problem's coordinates: every
coordinate j is clip(x0_j − r, 0, 1) or clip(x0_j + r, 0, 1). fedzoo's image attacks
(:mod:`fedzoo_attack.objectives`) map x in [0, 1]^d to the perturbation δ = ε (2x − 1),
so x0 = 0.5 is the clean image and the default r = 0.5 makes the vertices x ∈ {0, 1}^d,
exactly the perturbations ±ε of the Square Attack (the clipping to the pixel range is
the objective's): the method needs no ε. On other problems r sets the step (the ball
around x0 whose vertices are searched). It needs the image's shape to draw squares:
``square-shape`` = "HxW" or "HxWxC" (x is the row-major, channels-last image, as
:func:`~fedzoo_attack.objectives.perturbed_images` reshapes it; ``fedzoo attack``
sets it from the data set); "" (the default) treats x as a 1 × d image, whose "squares"
are runs of max(1, round(p d)) coordinates.

* **Server state**: the incumbent x (the global point), x0 before round 1 (the start
  row reports F there, as for every method), and whether the search has started. Round
  1's candidates are the stripe initialisation (one random value in {0, 1} per column
  and channel, constant down each column) and λ − 1 square updates of it; the best of
  them becomes the incumbent if better than x0, like every later candidate. (The Square
  Attack starts from the stripes unconditionally; greedy acceptance from round 1 keeps
  F(x_r) ≤ F(x0) on any problem; on an attack the stripes are taken whenever they
  lower the weighted margin.)
* **Server → clients** (train message): ``x`` = the incumbent and ``square-points``: λ =
  ``square-candidates`` square updates of it (λ·d values in {0, 1}), drawn from
  ``SeedSequence([seed, 606, round])`` (a pure function of the state: the engine and
  the Flower app send the same points). A square of side s = max(1, round(√(p·H·W)))
  (capped at min(H, W)) at a uniform position gets one random value per channel,
  redrawn while it would leave the incumbent unchanged (as the reference does).
* **Client**: f_i(x_{r-1}) as every method (``value-start``), then one batch of λ
  counted queries at the candidates. It keeps the candidates' values, so when one of
  them becomes the next global point its value-start costs nothing. Reply:
  ``square-values`` (λ) and ``x`` = x_{r-1}.
* **Server step** (greedy, only if better): the candidate with the least weighted
  reported value F̂(c) = Σ_i p_i f_i(c) (weights renormalised over the valid replies)
  replaces the incumbent if F̂(c) < F̂(x_{r-1}), the weighted ``value-start`` of the same
  clients (fair under partial participation). Too few replies: the incumbent stays and
  the next round draws new squares.

**Schedule of p** (the share of the pixels in a square): the paper's piecewise-constant
schedule, rescaled to the run's length as the reference implementation does
(``p_selection``: the iteration i of n is mapped to ⌊10 000 i / n⌋ and p = p_init / 2^k on
the intervals (10, 50], (50, 200], (200, 500], (500, 1000], (1000, 2000], (2000, 4000],
(4000, 6000], (6000, 8000], (8000, 10 000] for k = 1..9). Here an iteration is a
candidate: candidate j of round r is iteration (r − 1)λ + j of n = ``square-iterations``
(0: ``rounds`` × λ; ``fedzoo attack`` with ``--budget`` B and N clients sets it to B/N,
the candidates the budget pays for). ``square-p-init``: p_init (0.05, the reference's
default for L∞).

**Cost.** Per client and round: λ queries, plus f_i(x0) in round 1 (and f_i at
x_{r-1} for a client that missed the round where it was chosen). One exchange per round;
λ = 1 is the Square Attack itself (one candidate per exchange), larger λ trades queries
for exchanges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedzoo.errors import ConfigError
from fedzoo.methods import register
from fedzoo.methods.base import Method, Spec, TrainContext
from fedzoo.payload import ArraySpec, Payload
from fedzoo.state import ClientState, ServerState

if TYPE_CHECKING:
    from fedzoo.config import RunConfig
    from fedzoo.protocol import Aggregate

#: SeedSequence key of the server's draws: SeedSequence([seed, RNG_KEY, round]).
RNG_KEY = 606

#: (upper end of the interval of ⌊10 000 i / n⌋, divisor of p_init): the reference's p_selection.
SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
            (8000, 256), (10000, 512))


def image_shape(config: RunConfig, dim: int) -> tuple[int, int, int]:
    """(H, W, C) from ``square-shape`` ("" = 1 × d × 1).

    Raises:
        ConfigError: the shape does not hold d values.
    """
    if not config.square_shape:
        return 1, dim, 1
    sizes = [int(v) for v in config.square_shape.split("x")]
    if len(sizes) == 1:
        sizes = [1, sizes[0]]
    h, w, c = (*sizes, 1)[:3]
    if h * w * c != dim:
        raise ConfigError(
            f"Option 'square-shape' = {config.square_shape!r} holds {h * w * c} values; "
            f"expected the dimension d = {dim} (H x W x C)."
        )
    return h, w, c


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """The share of pixels in a square at iteration ``it`` of ``n_iters`` (the reference's
    piecewise-constant schedule, rescaled to n_iters)."""
    k = int(it / max(n_iters, 1) * 10000)
    for end, div in SCHEDULE:
        if k <= end:
            return p_init / div
    return p_init  # past the schedule's end, as the reference does


def num_iterations(config: RunConfig) -> int:
    return config.square_iterations or config.rounds * config.square_candidates


def vertices(config: RunConfig, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The low and high vertex value of every coordinate: clip(x0 ∓ r, 0, 1)."""
    r = config.square_radius
    return np.clip(center - r, 0.0, 1.0), np.clip(center + r, 0.0, 1.0)


def stripes(config: RunConfig, dim: int, center: np.ndarray | None = None) -> np.ndarray:
    """The vertical-stripe start: one side (low or high vertex) per column and channel."""
    h, w, c = image_shape(config, dim)
    lo, hi = vertices(config, np.full(dim, 0.5) if center is None else center)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, RNG_KEY, 0]))
    cols = rng.integers(0, 2, size=(1, w, c)).astype(bool)
    side = np.broadcast_to(cols, (h, w, c)).reshape(-1)
    return np.where(side, hi, lo)


def square_size(config: RunConfig, dim: int, it: int, n_iters: int | None = None) -> tuple[int, int]:
    """(rows, columns) of the square at iteration ``it`` of ``n_iters`` (default
    :func:`num_iterations`): side max(1, round(√(p H W))) capped at min(H, W); for a
    1 × W image a run of max(1, round(p W)) columns."""
    h, w, c = image_shape(config, dim)
    p = p_selection(config.square_p_init, it, n_iters or num_iterations(config))
    if h == 1:
        return 1, min(max(int(round(p * w)), 1), w)
    s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
    return s, s


def candidates(config: RunConfig, x: np.ndarray, round_: int, started: bool = True,
               center: np.ndarray | None = None) -> np.ndarray:
    """The λ square updates of the incumbent x sent in round ``round_`` (λ × d); before
    the search has started (``started`` False) the stripes and λ − 1 updates of them."""
    dim = x.size
    h, w, c = image_shape(config, dim)
    lam = config.square_candidates
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, RNG_KEY, round_]))
    center = np.full(dim, 0.5) if center is None else center
    lo, hi = (v.reshape(h, w, c) for v in vertices(config, center))
    out = np.empty((lam, dim))
    first = 0
    if not started:
        x = out[0] = stripes(config, dim, center)
        first = 1
    base = x.reshape(h, w, c)
    for j in range(first, lam):
        out[j] = square_update(base, square_size(config, dim, (round_ - 1) * lam + j), rng, lo, hi)
    return out


def square_update(base: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                  lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``base`` (H × W × C) with one square of ``size`` at a uniform position set to one
    random vertex side per channel (redrawn while it would change nothing); flat."""
    h, w, c = base.shape
    sh, sw = size
    r0, c0 = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    sq = (slice(r0, r0 + sh), slice(c0, c0 + sw), slice(None))
    for _ in range(100):  # redraw while the square would change nothing
        side = rng.integers(0, 2, size=c).astype(bool)
        values = np.where(side, hi[sq], lo[sq])
        if not np.array_equal(base[sq], values):
            break
    new = base.copy()
    new[sq] = values
    return new.reshape(-1)


@dataclass
class SquareServerState(ServerState):
    """Adds whether the search has started from the stripes (round 1 aggregated)."""

    square_started: bool = False
    square_center: np.ndarray | None = None

    @classmethod
    def new(cls, config: RunConfig, x0: np.ndarray) -> SquareServerState:
        x0 = np.asarray(x0, dtype=np.float64).copy()
        return cls(x=x0, square_center=x0.copy())

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = super().to_arrays()
        out["square-started"] = np.array([float(self.square_started)])
        assert self.square_center is not None
        out["square-center"] = self.square_center.copy()
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.square_started = bool(arrays["square-started"][0]) if "square-started" in arrays else False
        self.square_center = np.asarray(arrays["square-center"], dtype=np.float64)


def _candidates(config: RunConfig, state: ServerState) -> np.ndarray:
    assert isinstance(state, SquareServerState)
    return candidates(config, state.x, state.round + 1, state.square_started, state.square_center)


@dataclass
class SquareClientState(ClientState):
    """Adds the candidates of the client's last exchange and its values there."""

    square_points: np.ndarray | None = None
    square_values: np.ndarray | None = None

    def known_value(self, x: np.ndarray) -> float | None:
        known = super().known_value(x)
        if known is None and self.square_points is not None and self.square_values is not None:
            hit = np.flatnonzero(np.all(self.square_points == x[None, :], axis=1))
            if hit.size:
                return float(self.square_values[hit[0]])
        return known

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = super().to_arrays()
        if self.square_points is not None and self.square_values is not None:
            out["square-points"] = self.square_points.copy()
            out["square-values"] = self.square_values.copy()
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray], config: RunConfig) -> None:
        super().load_arrays(arrays, config)
        if "square-points" in arrays:
            self.square_points = np.asarray(arrays["square-points"], dtype=np.float64).reshape(-1, self.dim)
            self.square_values = np.asarray(arrays["square-values"], dtype=np.float64)


@register
class FedSquare(Method):
    """The Square Attack's random search on the server; clients evaluate its squares."""

    name = "fedsquare"
    summary = ("Square Attack (random search over square updates on the box's vertices) on the server: "
               "clients evaluate square-candidates squares, the server keeps the best if better; 1 exchange")
    rank = 85
    options = ("square-candidates", "square-shape", "square-p-init", "square-iterations", "square-radius",
               "value-floor")
    client_state = SquareClientState
    server_state = SquareServerState

    def train_message_spec(self, config: RunConfig, dim: int) -> Spec:
        image_shape(config, dim)  # a wrong shape is refused before anything is sent
        return {"square-points": ArraySpec(config.square_candidates * dim, unit_box=True)}

    def candidate_points(self, config: RunConfig, state: ServerState) -> np.ndarray:
        """The λ candidates of this round (λ, d): what the clients evaluate and the server
        picks from. A subclass that chooses them otherwise overrides only this."""
        return _candidates(config, state)

    def train_message(self, config: RunConfig, state: ServerState) -> Payload:
        return {"square-points": self.candidate_points(config, state).ravel()}

    def train_reply_spec(self, config: RunConfig, dim: int) -> Spec:
        return {"square-values": ArraySpec(config.square_candidates)}

    def query_bound(self, config: RunConfig, dim: int, kind: str, first: bool) -> int | None:
        """f_i(x_{r-1}) and the λ candidates."""
        return config.square_candidates + 1

    def local_train(self, ctx: TrainContext, value_start: float) -> np.ndarray:
        """One batch of λ counted queries at the candidates (kept for the next round)."""
        points = ctx.message["square-points"].reshape(-1, ctx.state.dim)
        values = np.asarray(ctx.session.query(points), dtype=np.float64)
        assert isinstance(ctx.state, SquareClientState)
        ctx.state.square_points, ctx.state.square_values = points.copy(), values.copy()
        ctx.scratch["square-values"] = values
        return ctx.x_global.copy()

    def end_train(self, ctx: TrainContext, reply: Payload) -> None:
        reply["square-values"] = ctx.scratch["square-values"]

    def server_step(self, config: RunConfig, state: ServerState, agg: Aggregate) -> np.ndarray:
        """The best candidate by the weighted reported values, if better than x_{r-1}."""
        assert isinstance(state, SquareServerState)
        floor = config.floor_value()
        values = np.asarray(agg.weighted("square-values", floor), dtype=np.float64)
        best = int(np.argmin(values))
        if values[best] < float(agg.weighted("value-start", floor)):
            return self.candidate_points(config, state)[best]
        return state.x.copy()

    def aggregate_train(self, config: RunConfig, new: ServerState, agg: Aggregate) -> None:
        assert isinstance(new, SquareServerState)
        new.square_started = True

r"""One federated round as pure functions over flat payloads.

A round r (DESIGN §2):

1. **train** — server → clients ``{x: x_{r-1}, round: r, [rff-weights: w̄_{r-1}],
   [rff-seed, rff-lengthscale], [scaffold-c: c]}``; each client runs T local steps and
   replies ``{x: x_i, num-queries, value-start: f_i(x_{r-1}), [scaffold-ci]}``. The server
   step is ``x_r = x_{r-1} - eta sum_i p_i (x_{r-1} - x_i)`` (p: weights renormalised over
   valid replies).
2. **sync** (``fzoos``, ``scaffold1``) — server → clients ``{x: x_r, round: r, ...}``;
   clients query x_r (and, for FZooS, the most uncertain points around it), then reply
   ``{value: f_i(x_r), num-queries, rff-weights: w_i}`` (FZooS) or
   ``{value, num-queries, scaffold-ci: RGF(x_r)}`` (SCAFFOLD-1). The server averages.
   ``fzoos-lagged`` (single exchange): no sync; each client explores at x_{r-1} at
   the start of train, fits its RFF weights there and sends them with the train reply;
   the correction in round r uses the weights fitted at x_{r-2} (one round older).
3. **evaluate** (optional, once at the end) — ``{x}`` → ``{value, num-queries}``; single-
   exchange methods use it to report f_i(x_R). It costs N counted queries.

Every reply also carries ``total-queries``, the client's running total; the server
charges each exchange the difference to the client's last accepted total
(:func:`account_queries`), so queries behind a lost or rejected reply are never dropped.

Client functions take ``(config, objective, state, message, client_id)`` and return
``(state, reply)``; server functions take ``(config, state, replies, weights)`` and return
the new state. No function reads F: the server knows only what clients send. Every
randomness comes from ``SeedSequence([seed, round, client_id, phase])``, so any transport
that carries the payloads unchanged reproduces the in-process history exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedzoo.config import RunConfig
from fedzoo.corrections import fedprox_term, fzoos_term, scaffold_term
from fedzoo.errors import ConfigError, PayloadError
from fedzoo.estimators.finite_difference import coordinate_gradient, rgf_gradient
from fedzoo.estimators.surrogate import TrajectorySurrogate, box_points
from fedzoo.history import QueryHistory
from fedzoo.objectives.base import Objective
from fedzoo.optim import make_optimizer
from fedzoo.payload import ArraySpec, Payload, ScalarSpec, validate
from fedzoo.surrogates.gp import GPHyper, nearest_indices
from fedzoo.surrogates.rff import RandomFourierFeatures, RFFFitCache, fit_rff_weights_cached

log = logging.getLogger(__name__)

PHASE_TRAIN, PHASE_SYNC, PHASE_EVALUATE = 0, 1, 2


def round_rng(seed: int, round_: int, client_id: int, phase: int) -> np.random.Generator:
    """The generator of one client in one phase of one round (no global RNG)."""
    return np.random.default_rng(np.random.SeedSequence([seed, round_, client_id, phase]))


@functools.lru_cache(maxsize=4)
def shared_features(dim: int, num_features: int, lengthscale: float, seed: int) -> RandomFourierFeatures:
    """The RFF map every party builds from the broadcast (dim, M, l, seed); cached."""
    return RandomFourierFeatures(dim, num_features, lengthscale, seed)


# --------------------------------------------------------------------------------------
# Client state
# --------------------------------------------------------------------------------------
@dataclass
class ClientState:
    """What a client keeps between exchanges (serialisable with :meth:`to_arrays`).

    Attributes:
        history: every point queried with its value (surrogate methods only).
        gp_hyper: the GP hyper-parameters fitted this round.
        rff_own: this client's RFF weights from its last sync.
        scaffold_own: this client's control variate c_i.
        cached_x / cached_value: the last global point evaluated and f_i there.
        local_x: the end point of the last local training.
        rff_cache: Gram of the last RFF fit's points (reused by the next).
        total_queries: every query this client has made in the run (sent with each reply,
            so queries behind a reply that was lost are counted with the next one).
    """

    dim: int
    history: QueryHistory | None = None
    gp_hyper: GPHyper | None = None
    rff_own: np.ndarray | None = None
    scaffold_own: np.ndarray | None = None
    cached_x: np.ndarray | None = None
    cached_value: float | None = None
    local_x: np.ndarray | None = None
    rff_cache: RFFFitCache | None = None
    total_queries: int = 0

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (absent parts omitted), for Flower state or disk."""
        out: dict[str, np.ndarray] = {
            "dim": np.array([self.dim], dtype=np.float64),
            "total-queries": np.array([self.total_queries], dtype=np.int64),
        }
        if self.history is not None:
            out["history-x"] = self.history.X.copy()
            out["history-y"] = self.history.y.copy()
            out["history-first-id"] = np.array([self.history.first_id], dtype=np.int64)
        if self.gp_hyper is not None:  # raw values: a log round trip is not exact
            h = self.gp_hyper
            out["gp-hyper"] = np.array([h.lengthscale, h.signal_var, h.noise_var])
        for key, value in (("rff-own", self.rff_own), ("scaffold-own", self.scaffold_own),
                           ("cached-x", self.cached_x), ("local-x", self.local_x)):
            if value is not None:
                out[key] = np.asarray(value, dtype=np.float64)
        if self.cached_value is not None:
            out["cached-value"] = np.array([self.cached_value])
        if self.rff_cache is not None:
            out.update(self.rff_cache.to_arrays())
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: RunConfig) -> ClientState:
        dim = int(arrays["dim"][0])
        state = cls(dim)
        if "history-x" in arrays:
            state.history = QueryHistory.from_arrays(
                np.asarray(arrays["history-x"]).reshape(-1, dim), np.asarray(arrays["history-y"]),
                config.history_max, int(arrays["history-first-id"][0]) if "history-first-id" in arrays else 0,
            )
        if "gp-hyper" in arrays:
            ls, s2, n2 = (float(v) for v in np.asarray(arrays["gp-hyper"]))
            state.gp_hyper = GPHyper(ls, s2, n2)
        state.rff_own = arrays.get("rff-own")
        state.scaffold_own = arrays.get("scaffold-own")
        state.cached_x = arrays.get("cached-x")
        state.local_x = arrays.get("local-x")
        if "cached-value" in arrays:
            state.cached_value = float(arrays["cached-value"][0])
        state.rff_cache = RFFFitCache.from_arrays(arrays)
        if "total-queries" in arrays:
            state.total_queries = int(arrays["total-queries"][0])
        return state


def new_client_state(config: RunConfig, dim: int) -> ClientState:
    history = QueryHistory(dim, config.history_max) if config.uses_surrogate else None
    return ClientState(dim, history=history)


class _Session:
    """Queries one client's objective for one exchange: counts and records them."""

    def __init__(self, objective: Objective, state: ClientState) -> None:
        self.objective, self.state, self.num_queries = objective, state, 0

    def query(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(X)
        if X.shape[0] == 0:
            return np.empty(0)
        y = self.objective(X)
        self.num_queries += X.shape[0]
        self.state.total_queries += X.shape[0]
        if self.state.history is not None:
            self.state.history.add(X, y)
        return y

    def value_at(self, x: np.ndarray) -> float:
        """f_i(x), reusing the cached value when x is the last global point evaluated."""
        s = self.state
        if s.cached_x is not None and s.cached_value is not None and np.array_equal(s.cached_x, x):
            return s.cached_value
        value = float(self.query(x[None, :])[0])
        s.cached_x, s.cached_value = x.copy(), value
        return value

    def exact_gradient(self, x: np.ndarray) -> np.ndarray:
        grad = getattr(self.objective, "gradient", None)
        if grad is None:
            raise ConfigError(
                "Method 'fo' needs objectives with an exact gradient (synthetic problems); "
                f"{self.objective.name} has none."
            )
        self.num_queries += 1
        self.state.total_queries += 1
        return np.asarray(grad(x[None, :]), dtype=np.float64)[0]

    def counts(self) -> Payload:
        """This exchange's queries and the client's running total (reply keys)."""
        return {"num-queries": self.num_queries, "total-queries": self.state.total_queries}


def _surrogate(config: RunConfig, state: ClientState) -> TrajectorySurrogate:
    assert state.history is not None
    return TrajectorySurrogate(state.history, config.gp_history, config.gp_kernel, state.gp_hyper)


def _explore_around(
    config: RunConfig, session: _Session, state: ClientState, x: np.ndarray, rng: np.random.Generator
) -> None:
    """Query x, then the most uncertain points within rho_i = max(mean|x - x_i|/2, r0)."""
    session.value_at(x)
    radius = config.explore_radius
    if state.local_x is not None:
        radius = max(float(np.mean(np.abs(x - state.local_x))) / 2.0, radius)
    if state.gp_hyper is None:  # nothing fitted yet: uniform points
        session.query(box_points(x, rng, config.sync_points, radius))
        return
    C = _surrogate(config, state).most_uncertain(
        x, rng, config.sync_candidates, config.sync_points, radius
    )
    session.query(C)


# --------------------------------------------------------------------------------------
# Client functions
# --------------------------------------------------------------------------------------
def _rff_spec(config: RunConfig, dim: int) -> dict[str, ArraySpec | ScalarSpec]:
    spec: dict[str, ArraySpec | ScalarSpec] = {
        "x": ArraySpec(dim, unit_box=True), "round": ScalarSpec("int", 1),
    }
    if config.uses_rff:
        spec["rff-seed"] = ScalarSpec("int", 0)
        spec["rff-lengthscale"] = ScalarSpec("float", 0.0)
    return spec


def train_message_spec(config: RunConfig, dim: int) -> dict[str, ArraySpec | ScalarSpec]:
    """{x, round}, the shared RFF map's seed and lengthscale, and the previous round's
    global corrections (RFF weights or the SCAFFOLD control variate) once they exist."""
    spec = _rff_spec(config, dim)
    if config.uses_rff:
        spec["rff-weights"] = ArraySpec(config.rff_features, optional=True)
    if config.method in ("scaffold1", "scaffold2"):
        spec["scaffold-c"] = ArraySpec(dim, optional=True)
    return spec


StepObserver = Callable[[int, int, np.ndarray, np.ndarray, np.ndarray], None]


def client_train(
    config: RunConfig,
    objective: Objective,
    state: ClientState,
    message: Payload,
    client_id: int,
    observer: StepObserver | None = None,
) -> tuple[ClientState, Payload]:
    """T local steps from the broadcast point; returns the new state and the reply.

    The state is updated in place and returned (the same object): its history, GP
    hyper-parameters, cached value, running query total, own corrections and local end
    point change. The caller must pass a state it owns (not one shared with another
    client or exchange) and, to retry a failed or lost exchange, reload the state from
    its last saved copy (:meth:`ClientState.from_arrays`) rather than reuse the object
    the failed call was given: that one may hold a partial round.

    ``observer(client_id, t, x, local_gradient, corrected_gradient)``, if given, sees
    every local step before it is taken (diagnostics such as the paper's Fig. 5).

    Query cost per round: FZooS/ZORD T iterates + (T-1) x explore-points (+ the initial
    design in round 1, + ZORD's exploration at x_{r-1}); finite differences
    1 + T Q + (T - 1); fo 1 + T exact gradients (counted as queries).
    """
    dim = state.dim
    msg = validate(message, train_message_spec(config, dim), source="train message")
    x_global, round_ = msg["x"], msg["round"]
    rng = round_rng(config.seed, round_, client_id, PHASE_TRAIN)
    session = _Session(objective, state)
    value_start = session.value_at(x_global)

    surrogate = rff = None
    if config.uses_surrogate:
        assert state.history is not None
        if round_ == 1 or len(state.history) < 2:
            session.query(box_points(x_global, rng, config.init_points, config.init_radius))
        elif config.method in ("zord", "fzoos-lagged"):  # explore at x_{r-1} here, not in a sync
            _explore_around(config, session, state, x_global, rng)
        surrogate = _surrogate(config, state)
        state.gp_hyper = surrogate.refit(x_global, rng, config.gp_restarts, config.gp_fit_points)
        if config.uses_rff and "rff-weights" in msg and state.rff_own is not None:
            rff = shared_features(dim, config.rff_features, msg["rff-lengthscale"], msg["rff-seed"])
    w_fresh = None
    if config.method == "fzoos-lagged":  # this round's surrogate at x_{r-1}, sent with the reply
        w_fresh = _fit_own_rff(config, state, x_global, msg)

    opt = make_optimizer(config.optimizer, config.lr)
    opt_state = opt.init(x_global)
    x, fx = x_global.copy(), value_start
    grad_sum = np.zeros(dim)
    c_global = msg.get("scaffold-c")
    for t in range(1, config.local_steps + 1):
        if surrogate is not None:
            g = surrogate.gradient(x)
        elif config.method == "fo":
            g = session.exact_gradient(x)
        elif config.fd_estimator == "coordinate":
            g = coordinate_gradient(session.query, x, fx, config.fd_step)
        else:
            g = rgf_gradient(session.query, x, fx, rng, config.rgf_directions, config.fd_step)
        grad_sum += g
        g_hat = g
        if config.method == "fedprox":
            g_hat = g + fedprox_term(x, x_global, config.prox_mu)
        elif config.method in ("scaffold1", "scaffold2"):
            g_hat = g + scaffold_term(c_global, state.scaffold_own)
        elif config.uses_rff:
            g_hat = g + fzoos_term(
                x, t, config.gamma, rff, msg.get("rff-weights"), state.rff_own, config.gamma_schedule
            )
        if observer is not None:
            observer(client_id, t, x, g, g_hat)
        step, opt_state = opt.update(g_hat, opt_state)
        x = np.clip(x - step, 0.0, 1.0)
        last = t == config.local_steps
        if surrogate is not None:
            session.query(x[None, :])
            if not last:
                session.query(surrogate.most_uncertain(
                    x, rng, config.explore_candidates, config.explore_points, config.explore_radius
                ))
        elif config.method != "fo" and not last:
            fx = float(session.query(x[None, :])[0])

    state.local_x = x.copy()
    reply: Payload = {"x": x, **session.counts(), "value-start": value_start}
    if config.method == "scaffold2":
        state.scaffold_own = grad_sum / config.local_steps
        reply["scaffold-ci"] = state.scaffold_own.copy()
    if w_fresh is not None:
        state.rff_own = w_fresh
        reply["rff-weights"] = w_fresh.copy()
    return state, reply


def _fit_own_rff(config: RunConfig, state: ClientState, x: np.ndarray, msg: Payload) -> np.ndarray:
    """Ridge-fit this client's RFF weights on its ``rff-history`` points nearest to x."""
    assert state.history is not None
    rff = shared_features(state.dim, config.rff_features, msg["rff-lengthscale"], msg["rff-seed"])
    hist = state.history
    idx = nearest_indices(hist.X, x, config.rff_history)
    w, state.rff_cache = fit_rff_weights_cached(
        rff, hist.X[idx], hist.y[idx], hist.first_id + idx, state.rff_cache, config.rff_ridge
    )
    return w


def sync_message_spec(config: RunConfig, dim: int) -> dict[str, ArraySpec | ScalarSpec]:
    """{x, round} plus, for FZooS, the shared RFF map's seed and lengthscale."""
    return _rff_spec(config, dim)


def client_sync(
    config: RunConfig, objective: Objective, state: ClientState, message: Payload, client_id: int
) -> tuple[ClientState, Payload]:
    """The exchange at the new global point x_r (FZooS and SCAFFOLD-1 only).

    Like :func:`client_train`, it updates the state passed in, in place, and returns that
    same object (history, cached value, running query total, RFF weights or control
    variate): pass a state the caller owns, and reload it from its saved copy to retry.

    Query cost: FZooS 1 + sync-points; SCAFFOLD-1 1 + Q.
    """
    msg = validate(message, sync_message_spec(config, state.dim), source="sync message")
    x, round_ = msg["x"], msg["round"]
    rng = round_rng(config.seed, round_, client_id, PHASE_SYNC)
    session = _Session(objective, state)
    if config.method == "fzoos":
        _explore_around(config, session, state, x, rng)
        state.rff_own = _fit_own_rff(config, state, x, msg)
        extra = {"rff-weights": state.rff_own.copy()}
    elif config.method == "scaffold1":
        fx = session.value_at(x)
        state.scaffold_own = rgf_gradient(session.query, x, fx, rng, config.rgf_directions, config.fd_step)
        extra = {"scaffold-ci": state.scaffold_own.copy()}
    else:
        raise ConfigError(f"Method {config.method!r} has no sync exchange.")
    value = session.value_at(x)
    return state, {"value": value, **session.counts(), **extra}


def client_evaluate(
    config: RunConfig, objective: Objective, state: ClientState, message: Payload, client_id: int
) -> tuple[ClientState, Payload]:
    """f_i at the broadcast point (cached if already known). Query cost: 0 or 1."""
    msg = validate(message, {"x": ArraySpec(state.dim, unit_box=True)}, source="evaluate message")
    session = _Session(objective, state)
    value = session.value_at(msg["x"])
    return state, {"value": value, **session.counts()}


# --------------------------------------------------------------------------------------
# Server state and functions
# --------------------------------------------------------------------------------------
@dataclass
class ServerState:
    """The global state: x after ``round`` completed rounds and the correction state.

    ``query_totals`` holds each client's latest reported running total of queries, from
    which every exchange's query count is taken (:func:`account_queries`).
    """

    x: np.ndarray
    round: int = 0
    rff_global: np.ndarray | None = None
    scaffold_c: np.ndarray | None = None
    rff_lengthscale: float = 1.0
    query_totals: dict[int, int] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"x": self.x.copy(), "round": np.array([self.round], dtype=np.float64),
               "rff-lengthscale": np.array([self.rff_lengthscale])}
        if self.rff_global is not None:
            out["rff-global"] = self.rff_global.copy()
        if self.scaffold_c is not None:
            out["scaffold-c"] = self.scaffold_c.copy()
        if self.query_totals:
            ids = sorted(self.query_totals)
            out["query-total-ids"] = np.array(ids, dtype=np.int64)
            out["query-totals"] = np.array([self.query_totals[c] for c in ids], dtype=np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ServerState:
        totals = {}
        if "query-total-ids" in arrays:
            totals = {int(c): int(t) for c, t in zip(arrays["query-total-ids"], arrays["query-totals"])}
        return cls(
            x=np.asarray(arrays["x"], dtype=np.float64), round=int(arrays["round"][0]),
            rff_global=arrays.get("rff-global"), scaffold_c=arrays.get("scaffold-c"),
            rff_lengthscale=float(arrays["rff-lengthscale"][0]), query_totals=totals,
        )

    def next(self, round_: int | None = None) -> ServerState:
        """A copy to update (arrays shared: updates replace them, never write in place)."""
        return dataclasses.replace(self, x=self.x.copy(), round=self.round if round_ is None else round_,
                                   query_totals=dict(self.query_totals))


def sample_clients(config: RunConfig, round_: int, client_ids: list[int]) -> list[int]:
    """The clients asked to take part in round ``round_`` (reproducible from the seed).

    ``ceil(fraction * N)`` of the given ids (at least one), drawn without replacement
    from ``SeedSequence([seed, round, 99])``; all of them when ``fraction == 1``.
    """
    ids = sorted(client_ids)
    if config.fraction >= 1.0:
        return ids
    k = max(1, int(np.ceil(config.fraction * len(ids))))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, round_, 99]))
    return sorted(int(c) for c in rng.choice(ids, size=k, replace=False))


def server_init(config: RunConfig, x0: np.ndarray) -> ServerState:
    return ServerState(x=np.asarray(x0, dtype=np.float64).copy(), rff_lengthscale=config.rff_lengthscale)


def rff_seed(config: RunConfig) -> int:
    """The seed of the shared RFF map, derived from the run seed."""
    return int(np.random.SeedSequence([config.seed, 7]).generate_state(1)[0])


def train_message(config: RunConfig, state: ServerState) -> Payload:
    msg: Payload = {"x": state.x.copy(), "round": state.round + 1}
    if config.uses_rff:
        msg["rff-seed"] = rff_seed(config)
        msg["rff-lengthscale"] = state.rff_lengthscale
        if state.rff_global is not None:
            msg["rff-weights"] = state.rff_global.copy()
    if config.method in ("scaffold1", "scaffold2") and state.scaffold_c is not None:
        msg["scaffold-c"] = state.scaffold_c.copy()
    return msg


def sync_message(config: RunConfig, state: ServerState) -> Payload:
    msg: Payload = {"x": state.x.copy(), "round": state.round}
    if config.method == "fzoos":
        msg["rff-seed"] = rff_seed(config)
        msg["rff-lengthscale"] = state.rff_lengthscale
    return msg


def evaluate_message(state: ServerState) -> Payload:
    return {"x": state.x.copy()}


#: Every reply: the queries of this exchange and the client's running total.
COUNT_SPEC: dict[str, ArraySpec | ScalarSpec] = {
    "num-queries": ScalarSpec("int", 0), "total-queries": ScalarSpec("int", 0),
}


def train_reply_spec(config: RunConfig, dim: int) -> dict[str, ArraySpec | ScalarSpec]:
    spec: dict[str, ArraySpec | ScalarSpec] = {
        "x": ArraySpec(dim, unit_box=True), **COUNT_SPEC,
        "value-start": ScalarSpec("float"),
    }
    if config.method == "scaffold2":
        spec["scaffold-ci"] = ArraySpec(dim)
    if config.method == "fzoos-lagged":
        spec["rff-weights"] = ArraySpec(config.rff_features)
    return spec


def sync_reply_spec(config: RunConfig, dim: int) -> dict[str, ArraySpec | ScalarSpec]:
    spec: dict[str, ArraySpec | ScalarSpec] = {
        "value": ScalarSpec("float"), **COUNT_SPEC,
    }
    if config.method == "fzoos":
        spec["rff-weights"] = ArraySpec(config.rff_features)
    elif config.method == "scaffold1":
        spec["scaffold-ci"] = ArraySpec(dim)
    return spec


EVALUATE_REPLY_SPEC = {"value": ScalarSpec("float"), **COUNT_SPEC}


def max_reply_elements(config: RunConfig, dim: int) -> int:
    """The longest array any reply of this run may carry (a decoding limit for transports)."""
    specs = [*train_reply_spec(config, dim).values(), *sync_reply_spec(config, dim).values()]
    return max([dim, *(s.length for s in specs if isinstance(s, ArraySpec))])


@dataclass
class Aggregate:
    """Valid replies of one exchange and their renormalised weights.

    ``num_queries``: the queries of this exchange, as :func:`account_queries` counts them
    from the clients' running totals (set by the aggregate functions);
    ``queries_by_client``: the same count per client (client id -> queries charged, one
    entry per accepted reply), summing to ``num_queries``.
    """

    replies: dict[int, Payload]
    weights: dict[int, float]
    rejected: dict[int, str]
    num_queries: int = 0
    queries_by_client: dict[int, int] = field(default_factory=dict)

    def weighted(self, key: str) -> Any:
        return sum(self.weights[c] * self.replies[c][key] for c in self.replies)

    def robust(self, key: str, config: RunConfig) -> np.ndarray:
        """Combine the vectors under ``key`` by ``config.aggregation``.

        ``mean``: sum_i p_i v_i. ``median``: the coordinate-wise median (unweighted).
        ``clip``: each v_i scaled down to at most ``clip-factor`` x the median norm of
        the replies, then the weighted mean — one hostile client moves the result by at
        most p_i x clip-factor x median norm.
        """
        if config.aggregation == "median":
            return np.median(np.stack([self.replies[c][key] for c in self.replies]), axis=0)
        if config.aggregation == "clip":
            norms = {c: float(np.linalg.norm(self.replies[c][key])) for c in self.replies}
            cap = config.clip_factor * float(np.median(list(norms.values())))
            return sum(
                self.weights[c] * self.replies[c][key] * (min(1.0, cap / norms[c]) if norms[c] > 0 else 1.0)
                for c in self.replies
            )
        return self.weighted(key)


def collect(
    replies: Mapping[int, Any], weights: Mapping[int, float], spec: Mapping[str, ArraySpec | ScalarSpec], what: str
) -> Aggregate:
    """Validate every reply; drop invalid ones (logged) and renormalise the weights."""
    valid: dict[int, Payload] = {}
    rejected: dict[int, str] = {}
    for cid, reply in replies.items():
        try:
            valid[cid] = validate(reply, spec, source=f"{what} reply of client {cid}")
        except PayloadError as err:
            rejected[cid] = str(err)
            log.warning("rejected %s", err)
    total = sum(weights[c] for c in valid)
    norm = {c: weights[c] / total for c in valid} if total > 0 else {}
    return Aggregate(valid, norm, rejected)


def aggregate_train(
    config: RunConfig, state: ServerState, replies: Mapping[int, Any], weights: Mapping[int, float]
) -> tuple[ServerState, Aggregate]:
    """Server step x_r = x_{r-1} - eta sum_i p_i (x_{r-1} - x_i) over valid replies.

    With fewer than ``min-replies`` valid replies the global point is unchanged (the
    round still counts). Partial participation rule: the global corrections average the
    clients that replied this round (weights renormalised); a client that missed rounds
    keeps its own control variate / RFF weights from the last round it took part in and
    corrects with the fresh global ones when it is back.
    """
    agg = collect(replies, weights, train_reply_spec(config, state.x.size), "train")
    new = state.next(state.round + 1)
    agg.num_queries = account_queries(new.query_totals, agg)
    if len(agg.replies) >= config.min_replies:
        x_avg = agg.weighted("x")
        new.x = np.clip(state.x - config.server_lr * (state.x - x_avg), 0.0, 1.0)
        if config.method == "scaffold2":
            new.scaffold_c = agg.robust("scaffold-ci", config)
        if config.method == "fzoos-lagged":
            new.rff_global = agg.robust("rff-weights", config)
    return new, agg


def aggregate_sync(
    config: RunConfig, state: ServerState, replies: Mapping[int, Any], weights: Mapping[int, float]
) -> tuple[ServerState, Aggregate]:
    """Average the clients' RFF weights (FZooS) or control variates (SCAFFOLD-1)."""
    agg = collect(replies, weights, sync_reply_spec(config, state.x.size), "sync")
    new = state.next()
    agg.num_queries = account_queries(new.query_totals, agg)
    if len(agg.replies) >= config.min_replies:
        if config.method == "fzoos":
            new.rff_global = agg.robust("rff-weights", config)
        elif config.method == "scaffold1":
            new.scaffold_c = agg.robust("scaffold-ci", config)
    return new, agg


def aggregate_evaluate(
    config: RunConfig, state: ServerState, replies: Mapping[int, Any], weights: Mapping[int, float]
) -> tuple[ServerState, Aggregate]:
    """Collect the final evaluation (values at x_R) and count its queries."""
    agg = collect(replies, weights, EVALUATE_REPLY_SPEC, "evaluate")
    new = state.next()
    agg.num_queries = account_queries(new.query_totals, agg)
    return new, agg


def account_queries(totals: dict[int, int], agg: Aggregate) -> int:
    """Queries to charge for an exchange, from the clients' running totals (updated).

    A client's charge is its total now minus its total at its last accepted reply, so
    queries behind a reply that was lost or rejected are counted with the client's next
    accepted reply; in a run where every reply arrives this equals the sum of the
    replies' ``num-queries``. It is never less than the reply's own ``num-queries``. A
    total below the last one means the client restarted without its saved state: its
    queries since its last accepted reply cannot be known (logged), the reply's total is
    charged.
    """
    charged = 0
    agg.queries_by_client = {}
    for cid, reply in agg.replies.items():
        total, own = int(reply["total-queries"]), int(reply["num-queries"])
        before = totals.get(cid, 0)
        if total < before:
            log.warning(
                "client %d reports %d queries in all, fewer than the %d it reported before: it "
                "restarted without its saved state; queries since its last reply are unknown",
                cid, total, before,
            )
            before = 0
        agg.queries_by_client[cid] = max(total - before, own)
        charged += agg.queries_by_client[cid]
        totals[cid] = total
    return charged


def client_query_counts(*aggregates: Aggregate | None) -> dict[int, int]:
    """Queries charged per client over several exchanges (e.g. a round's train and sync)."""
    out: dict[int, int] = {}
    for agg in aggregates:
        if agg is not None:
            for cid, n in agg.queries_by_client.items():
                out[cid] = out.get(cid, 0) + n
    return out

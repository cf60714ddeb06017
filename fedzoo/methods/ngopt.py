r"""``fedngopt``: nevergrad's recommended optimiser NGOpt run by the server on F = Σ_i p_i f_i.

The second central peer beside ``fedcma`` (same shape, same honesty rules): no local
steps and no gradient; every round is one **train** exchange in which the clients
evaluate one batch of NGOpt's candidates (batched ask/tell).

* **Server → clients** (train message): ``x`` = x_{r-1}, ``round``, ``ng-candidates``
  (the B points of B ``ask()`` calls, row after row: B·d floats) and ``ng-recommendation``
  (NGOpt's ``provide_recommendation()`` after the last tell, d floats, in the unit box).
* **Client**: f_i(x_{r-1}) as every method (``value-start``; free when x_{r-1} is still the
  last global point it evaluated), then one batch of B + 1 counted queries through the
  query session: the candidates and the recommendation. Reply: ``ng-values`` (B),
  ``ng-recommendation-value`` and ``x`` = x_{r-1}.
* **Server**: over the valid replies, with the weights renormalised over them, forms the
  reported values F̂(c) = Σ_i p_i f_i(c) of the candidates and ``tell()``\ s them to NGOpt;
  the new global point x_r is the best of x_{r-1}, the recommendation and the B candidates
  by these reported values (ties keep x_{r-1}). The server never reads F.
* **Too few replies** (fewer than ``min-replies``): NGOpt is not told, x_r = x_{r-1}, and
  the next round sends the same candidates again (their queries are charged).

**Cost.** Per client and round: B + 1 queries plus 1 for f_i(x_{r-1}) when the global point
moved, so :meth:`FedNGOpt.query_bound` is B + 2 (a query budget stops the run before a round
that could pass it, as for every method); then f_i(x_R) in the final evaluation.

**Batch** (``ng-batch``, 0 = default): B = fedcma's λ default max(51, 4 + ⌊3 ln d⌋), so a
``fedngopt`` round costs what a ``fedcma`` round and one FZooS exchange do (53 queries per
client, docs/design.md §2.9) and the three are compared at equal exchanges and queries.
B is NGOpt's ``num_workers`` (it picks its algorithm knowing B candidates are evaluated
in parallel). NGOpt's ``budget`` is rounds × B, the evaluations the run can tell: with a
query budget that ends the run earlier, lower ``rounds`` to what fits (NGOpt otherwise
picks for a longer run; simulations/benchmarks/bbob.py does).

**Parametrization**: ``ng.p.Array(init=x0).set_bounds(0, 1)`` (nevergrad's default bouncing
keeps every candidate in the box; a rounding error is clipped).

**State and randomness.** As fedcma's: the server state keeps plain arrays, the start point
and every round's told values (G × B); NGOpt is deterministic given them, its randomness
being the parametrization's ``random_state``, a :class:`numpy.random.RandomState` seeded
from ``SeedSequence([seed, 606])``; every call into nevergrad runs with numpy's global
generator seeded from (seed, generation) and restored afterwards, and with one BLAS
thread. Loading a state rebuilds the optimiser by replaying its asks, tells and
recommendations in the same order. One caveat: NGOpt's MetaModel (chosen for small d
and large B) stops its surrogate search after 20 s of wall time; a search that long
(not seen here: a whole d = 10, B = 51 round took about 2 s on a loaded 2-core box)
would make a replay differ, which is logged (the recommendation
after the last tell is kept to check it).

**Compatibility.** nevergrad 1.0.12's MetaModel calls ``float()`` on a one-element array,
which numpy ≥ 2.4 refuses (``TypeError``: the run would stop, and a helper thread of
nevergrad would block the process' exit). Where numpy refuses it, the module's ``float``
is replaced by one that accepts a one-element array (numpy's former behaviour), only in
``nevergrad.optimization.metamodel``.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fedzoo._threads import blas_threads
from fedzoo.errors import MissingDependencyError
from fedzoo.methods import register
from fedzoo.methods.base import Method, Spec, TrainContext
from fedzoo.methods.cma import DEFAULT_POPSIZE
from fedzoo.payload import ArraySpec, Payload, ScalarSpec
from fedzoo.state import ServerState

if TYPE_CHECKING:
    from fedzoo.config import RunConfig
    from fedzoo.protocol import Aggregate

log = logging.getLogger(__name__)

#: SeedSequence key of the parametrization's random state.
RNG_KEY = 606
NEVERGRAD_PIN = "nevergrad==1.0.12"


def batch_size(config: RunConfig, dim: int) -> int:
    """B for this run: ``ng-batch``, or max(51, 4 + ⌊3 ln d⌋) when it is 0."""
    if config.ng_batch:
        return int(config.ng_batch)
    return max(DEFAULT_POPSIZE, 4 + int(3 * np.log(dim)))


def _float_of_one(value: Any) -> float:
    a = np.asarray(value)
    return builtins.float(a.reshape(-1)[0]) if a.size == 1 else builtins.float(value)


def _import_nevergrad() -> Any:
    try:
        import nevergrad as ng
        import nevergrad.optimization.metamodel as metamodel
    except ImportError as err:
        raise MissingDependencyError(
            "Method 'fedngopt' needs the optional package nevergrad, which is not installed; "
            f"install the 'nevergrad' extra (pip install -e '.[nevergrad]', or pip install "
            f"'{NEVERGRAD_PIN}')."
        ) from err
    try:
        float(np.ones(1))
    except TypeError:  # numpy >= 2.4: see the module doc
        metamodel.float = _float_of_one  # type: ignore[attr-defined]
    return ng


@contextlib.contextmanager
def _quiet_pinned(seed: int, generation: int) -> Iterator[None]:
    """numpy's global generator seeded from (seed, generation), one BLAS thread, and
    nevergrad's advice warnings silenced (they would repeat every round)."""
    saved = np.random.get_state()
    np.random.seed(int(np.random.SeedSequence([seed, RNG_KEY, generation]).generate_state(1)[0]))
    try:
        with blas_threads(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        np.random.set_state(saved)


@dataclass
class _Optimizer:
    """A live NGOpt after ``told`` (G × B), its pending asks and recommendation."""

    opt: Any
    told: np.ndarray
    asked: list[Any]
    candidates: np.ndarray  # B × d, in the box
    recommendation: np.ndarray  # d, in the box

    def pending(self, batch: int) -> None:
        self.asked = [self.opt.ask() for _ in range(batch)]
        self.candidates = np.clip(np.array([c.value for c in self.asked], dtype=np.float64), 0.0, 1.0)
        rec = self.opt.provide_recommendation()
        self.recommendation = np.clip(np.asarray(rec.value, dtype=np.float64), 0.0, 1.0)


def _build(config: RunConfig, x0: np.ndarray, told: np.ndarray) -> _Optimizer:
    """NGOpt from its start, replaying every told round (deterministic)."""
    ng = _import_nevergrad()
    batch = told.shape[1]
    seed = int(np.random.SeedSequence([config.seed, RNG_KEY]).generate_state(1)[0])
    with _quiet_pinned(config.seed, 0):
        param = ng.p.Array(init=np.asarray(x0, dtype=np.float64).copy()).set_bounds(0.0, 1.0)
        param.random_state = np.random.RandomState(seed)
        opt = ng.optimizers.NGOpt(parametrization=param, budget=max(config.rounds, 1) * batch,
                                  num_workers=batch)
        live = _Optimizer(opt, told[:0], [], np.empty((0, x0.size)), np.empty(0))
        live.pending(batch)
    for row in told:
        _tell(config, live, row)
    return live


def _tell(config: RunConfig, live: _Optimizer, values: np.ndarray) -> None:
    """Tell the pending batch its reported values and ask for the next."""
    with _quiet_pinned(config.seed, len(live.told) + 1):
        for cand, v in zip(live.asked, values):
            live.opt.tell(cand, float(v))
        live.told = np.vstack([live.told, np.asarray(values, dtype=np.float64)[None, :]])
        live.pending(live.told.shape[1])


@dataclass
class NGOptServerState(ServerState):
    """Adds NGOpt as plain arrays: the start point and the told values.

    ``ng_recommendation``: the recommendation after the last tell, kept to check a replay.
    ``cache`` (never serialised) holds the live optimiser, used only while its told values
    equal this state's.
    """

    ng_x0: np.ndarray | None = None
    ng_told: np.ndarray | None = None
    ng_recommendation: np.ndarray | None = None
    cache: dict[str, _Optimizer] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def new(cls, config: RunConfig, x0: np.ndarray) -> NGOptServerState:
        _import_nevergrad()  # a missing package is refused before round 1
        x0 = np.asarray(x0, dtype=np.float64).copy()
        return cls(x=x0, ng_x0=x0.copy(), ng_told=np.empty((0, batch_size(config, x0.size))))

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = super().to_arrays()
        assert self.ng_x0 is not None and self.ng_told is not None
        out["ng-x0"] = self.ng_x0.copy()
        out["ng-told"] = self.ng_told.copy()
        if self.ng_recommendation is not None:
            out["ng-recommendation"] = self.ng_recommendation.copy()
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.ng_x0 = np.asarray(arrays["ng-x0"], dtype=np.float64)
        self.ng_told = np.asarray(arrays["ng-told"], dtype=np.float64)
        if "ng-recommendation" in arrays:
            self.ng_recommendation = np.asarray(arrays["ng-recommendation"], dtype=np.float64)
        self.cache = {}

    def optimizer(self, config: RunConfig) -> _Optimizer:
        """The live optimiser for this state's told values (rebuilt by replay if needed)."""
        assert self.ng_x0 is not None and self.ng_told is not None
        live = self.cache.get("live")
        if live is not None and np.array_equal(live.told, self.ng_told):
            return live
        live = _build(config, self.ng_x0, self.ng_told)
        if self.ng_recommendation is not None and not np.array_equal(live.recommendation, self.ng_recommendation):
            log.warning(
                "fedngopt: replaying %d NGOpt rounds did not reproduce the saved recommendation "
                "(another nevergrad version than the run's, or a time-limited MetaModel search?); "
                "the run continues from the replay", len(self.ng_told),
            )
        self.cache["live"] = live
        return live


@register
class FedNGOpt(Method):
    """nevergrad's NGOpt on the server; the clients evaluate each batch of candidates."""

    name = "fedngopt"
    summary = ("nevergrad's NGOpt on the server: clients evaluate the batch of candidates and the "
               "recommendation, the server tells the weighted values; 1 exchange")
    rank = 82
    options = ("ng-batch",)
    server_state = NGOptServerState

    # ---- messages ----------------------------------------------------------------------
    def train_message_spec(self, config: RunConfig, dim: int) -> Spec:
        b = batch_size(config, dim)
        return {"ng-candidates": ArraySpec(b * dim, unit_box=True),
                "ng-recommendation": ArraySpec(dim, unit_box=True)}

    def train_message(self, config: RunConfig, state: ServerState) -> Payload:
        assert isinstance(state, NGOptServerState)
        live = state.optimizer(config)
        return {"ng-candidates": live.candidates.ravel().copy(), "ng-recommendation": live.recommendation.copy()}

    def train_reply_spec(self, config: RunConfig, dim: int) -> Spec:
        return {"ng-values": ArraySpec(batch_size(config, dim)), "ng-recommendation-value": ScalarSpec("float")}

    def query_bound(self, config: RunConfig, dim: int, kind: str, first: bool) -> int | None:
        """f_i(x_{r-1}), the B candidates and the recommendation."""
        return batch_size(config, dim) + 2

    # ---- client ------------------------------------------------------------------------
    def local_train(self, ctx: TrainContext, value_start: float) -> np.ndarray:
        """One batch of B + 1 counted queries: the candidates, then the recommendation."""
        d = ctx.state.dim
        points = np.vstack([ctx.message["ng-candidates"].reshape(-1, d), ctx.message["ng-recommendation"][None, :]])
        values = np.asarray(ctx.session.query(points), dtype=np.float64)
        ctx.scratch["ng-values"] = values[:-1].copy()
        ctx.scratch["ng-recommendation-value"] = float(values[-1])
        return ctx.x_global.copy()

    def end_train(self, ctx: TrainContext, reply: Payload) -> None:
        reply["ng-values"] = ctx.scratch["ng-values"]
        reply["ng-recommendation-value"] = ctx.scratch["ng-recommendation-value"]

    # ---- server ------------------------------------------------------------------------
    def server_step(self, config: RunConfig, state: ServerState, agg: Aggregate) -> np.ndarray:
        """The best of x_{r-1}, the recommendation and the candidates by the reported values."""
        assert isinstance(state, NGOptServerState)
        live = state.optimizer(config)
        values = np.asarray(agg.weighted("ng-values"), dtype=np.float64)
        best = int(np.argmin(values))
        x, fx = state.x, float(agg.weighted("value-start"))
        rec_value = float(agg.weighted("ng-recommendation-value"))
        if rec_value < fx:
            x, fx = live.recommendation, rec_value
        if values[best] < fx:
            x = live.candidates[best]
        return x.copy()

    def aggregate_train(self, config: RunConfig, new: ServerState, agg: Aggregate) -> None:
        """Tell NGOpt the weighted values of its candidates (enough valid replies)."""
        assert isinstance(new, NGOptServerState)
        live = new.optimizer(config)
        _tell(config, live, np.asarray(agg.weighted("ng-values"), dtype=np.float64))
        new.ng_told = live.told
        new.ng_recommendation = live.recommendation.copy()

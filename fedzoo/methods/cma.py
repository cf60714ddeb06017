r"""``fedcma``: CMA-ES (the ``cma`` package, pycma) run by the server on F = Σ_i p_i f_i.

No local steps and no gradient: every round is one **train** exchange in which the
clients evaluate one CMA-ES generation.

* **Server → clients** (train message): ``x`` = x_{r-1}, ``round``, ``cma-candidates``
  (the λ points of the strategy's ``ask()``, row after row: λ·d floats) and
  ``cma-mean`` (the distribution mean m in the unit box, d floats).
* **Client**: f_i(x_{r-1}) as every method (``value-start``; free when x_{r-1} is still
  the last global point it evaluated), then one batch of λ + 1 counted queries
  through the query session: the candidates and the mean. Reply: ``cma-values`` (λ),
  ``cma-mean-value`` and, because every train reply has one, ``x`` = x_{r-1}.
* **Server**: over the valid replies, with the weights renormalised over them (as
  :meth:`~fedzoo.protocol.Aggregate.weighted`), forms the reported values
  F̂(c) = Σ_i p_i f_i(c) of the candidates and ``tell()``\ s them to CMA-ES; the new
  global point x_r is the best of x_{r-1}, m and the λ candidates by these reported
  values (``value-start`` gives F̂(x_{r-1}) over the same clients, so the comparison is
  fair under partial participation; ties keep x_{r-1}). The server never reads F.
  The mean is evaluated because in high dimension it is far better than any sample
  (d = 300 quadratic, λ = 51: F(m) ≈ 0.43 when the best of the 50th generation's
  samples is 0.75): without it the reported point would lag the strategy badly.
* **Too few replies** (fewer than ``min-replies`` valid ones): CMA-ES is not told,
  x_r = x_{r-1}, and the next round sends the same candidates again (their queries are
  charged; the strategy's random stream does not advance).

**Cost.** Per client and round: λ + 1 queries (candidates and mean) plus 1 for
f_i(x_{r-1}) whenever the global point moved (it was evaluated among the previous
round's points, but only the value at the last *global* point is cached, docs/design.md §4
rule 2); then f_i(x_R) in the final evaluation. One exchange per round; bytes
8(λ + 1)d + … down, 8λ + … up per client.

**Population** (``popsize``, 0 = default): λ = max(51, 4 + ⌊3 ln d⌋). 51 + the mean +
f_i(x_{r-1}) = 53 queries per client and round, what one FZooS exchange costs at its
defaults (106 per round over two exchanges, docs/design.md §2.9), so 2R ``fedcma`` rounds match
R ``fzoos`` rounds in exchanges *and* in queries. CMA-ES's own default 4 + 3 ln d
(21 at d = 300) gains more per query but needs 2.5 times as many exchanges for the
same queries, and exchanges are what a federation pays for; λ ≈ 104 (an FZooS round's
queries in one exchange) gains little per exchange over 51 (measured on the d = 300
quadratic: F(m) 0.35 against 0.43 after 50 generations) for twice the queries.

**Step size**: σ0 = ``cma-sigma`` (0.2, a fifth of the box's width; pycma suggests a
quarter to a fifth of the search range), x0 = the problem's start point, bounds the
unit box (pycma's ``bounds=[0, 1]``, its default smooth boundary transformation: every
candidate lies in the box).

**State and randomness.** The strategy's state is never pickled. The server state keeps
plain arrays: the start point and every generation's told values (G × λ). CMA-ES is
deterministic given them: its normal samples come from its ``randn`` option, a
:class:`numpy.random.Generator` seeded by ``SeedSequence([seed, 505])`` (not numpy's
global generator; pycma's ``seed`` option is then unused), so loading a state rebuilds
the strategy by replaying ``ask()``/``tell()`` (about 25 ms a generation at d = 300,
λ = 51). With the options used here pycma draws nothing from numpy's global generator
(checked: its state is unchanged over ask/tell, mirrored small populations included),
but some of its paths do (stochastic rounding of mirror counts, random restarts); as a
guard, every call into pycma runs with the global generator seeded from (seed,
generation) and restored afterwards, so the strategy cannot depend on it and other
users of it are not disturbed (the server step runs while no client does). pycma also
runs with one BLAS thread, so its linear algebra gives the same bits whatever the
process' BLAS setting (the engine and the Flower ServerApp agree). The live strategy is cached
beside the state (shared by the copies ``ServerState.next`` makes) and checked against
the told values before use. The state also keeps the mean and σ after the last tell;
a replay that does not reproduce them (another pycma version) is logged.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fedzoo._threads import blas_threads
from fedzoo.errors import ConfigError, MissingDependencyError
from fedzoo.methods import register
from fedzoo.methods.base import Method, Spec, TrainContext
from fedzoo.payload import ArraySpec, Payload, ScalarSpec
from fedzoo.state import ServerState

if TYPE_CHECKING:
    from fedzoo.config import RunConfig
    from fedzoo.protocol import Aggregate

log = logging.getLogger(__name__)

#: λ when ``popsize`` is 0 (at least CMA-ES's own default 4 + 3 ln d): see the module doc.
DEFAULT_POPSIZE = 51
#: SeedSequence key of the strategy's normal samples: SeedSequence([seed, RNG_KEY]).
RNG_KEY = 505
CMA_PIN = "cma==4.5.0"


def popsize(config: RunConfig, dim: int) -> int:
    """λ for this run: ``popsize``, or max(51, 4 + ⌊3 ln d⌋) when it is 0.

    Raises:
        ConfigError: for ``popsize`` = 1 (CMA-ES needs two candidates to rank).
    """
    if config.popsize == 1:
        raise ConfigError("Option 'popsize' = 1 is not allowed; expected 0 (the default) or an integer >= 2.")
    if config.popsize:
        return int(config.popsize)
    return max(DEFAULT_POPSIZE, 4 + int(3 * math.log(dim)))


def _import_cma() -> Any:
    try:
        import cma
    except ImportError as err:
        raise MissingDependencyError(
            "Method 'fedcma' needs the optional package cma (pycma), which is not installed; "
            f"install the 'cma' extra (pip install -e '.[cma]', or pip install '{CMA_PIN}')."
        ) from err
    return cma


@contextlib.contextmanager
def _pinned_global_rng(seed: int, generation: int) -> Iterator[None]:
    """numpy's global generator seeded from (seed, generation) inside, restored after."""
    saved = np.random.get_state()
    np.random.seed(int(np.random.SeedSequence([seed, RNG_KEY, generation]).generate_state(1)[0]))
    try:
        yield
    finally:
        np.random.set_state(saved)


@dataclass
class _Strategy:
    """A live pycma strategy after ``told`` (G × λ) and the pending ``ask()``."""

    es: Any
    told: np.ndarray
    asked: list[np.ndarray]
    candidates: np.ndarray  # λ × d, the asked points (in the box)
    mean: np.ndarray  # d, the distribution mean in the box

    def pending(self) -> None:
        """Ask for the next generation (under the pinned generator and one BLAS thread)."""
        self.asked = list(self.es.ask())
        self.candidates = np.clip(np.array(self.asked, dtype=np.float64), 0.0, 1.0)
        self.mean = np.clip(np.asarray(self.es.to_phenotype(self.es.mean), dtype=np.float64), 0.0, 1.0)


def _build(config: RunConfig, x0: np.ndarray, told: np.ndarray) -> _Strategy:
    """The strategy from its start, replaying every told generation (deterministic)."""
    cma = _import_cma()
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, RNG_KEY]))
    opts = {
        "popsize": told.shape[1],
        "bounds": [0.0, 1.0],
        "randn": lambda *shape: rng.standard_normal(shape),
        "seed": np.nan,  # randomness from ``randn`` only
        "verbose": -9,
        "verb_disp": 0,
        "verb_log": 0,
    }
    with blas_threads(1), _pinned_global_rng(config.seed, 0):
        es = cma.CMAEvolutionStrategy(np.asarray(x0, dtype=np.float64).copy(), config.cma_sigma, opts)
        strategy = _Strategy(es, told[:0], [], np.empty((0, x0.size)), np.empty(0))
        strategy.pending()
    for row in told:
        _tell(config, strategy, row)
    return strategy


def _tell(config: RunConfig, strategy: _Strategy, values: np.ndarray) -> None:
    """Tell the pending generation its reported values and ask for the next."""
    with blas_threads(1), _pinned_global_rng(config.seed, len(strategy.told) + 1):
        strategy.es.tell(strategy.asked, [float(v) for v in values])
        strategy.told = np.vstack([strategy.told, np.asarray(values, dtype=np.float64)[None, :]])
        strategy.pending()


@dataclass
class CMAServerState(ServerState):
    """Adds the strategy as plain arrays: the start point and the told values.

    ``cma_mean`` / ``cma_sigma``: the mean (genotype) and step size after the last tell,
    kept to check a replay. ``cache`` (never serialised) holds the live strategy; the
    copies :meth:`ServerState.next` makes share it, and it is used only while its told
    values equal this state's.
    """

    cma_x0: np.ndarray | None = None
    cma_told: np.ndarray | None = None
    cma_mean: np.ndarray | None = None
    cma_sigma: float | None = None
    cache: dict[str, _Strategy] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def new(cls, config: RunConfig, x0: np.ndarray) -> CMAServerState:
        _import_cma()  # a missing package is refused before round 1
        x0 = np.asarray(x0, dtype=np.float64).copy()
        return cls(x=x0, cma_x0=x0.copy(), cma_told=np.empty((0, popsize(config, x0.size))))

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = super().to_arrays()
        assert self.cma_x0 is not None and self.cma_told is not None
        out["cma-x0"] = self.cma_x0.copy()
        out["cma-told"] = self.cma_told.copy()
        if self.cma_mean is not None and self.cma_sigma is not None:
            out["cma-mean"] = self.cma_mean.copy()
            out["cma-sigma"] = np.array([self.cma_sigma])
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.cma_x0 = np.asarray(arrays["cma-x0"], dtype=np.float64)
        self.cma_told = np.asarray(arrays["cma-told"], dtype=np.float64)
        if "cma-mean" in arrays:
            self.cma_mean = np.asarray(arrays["cma-mean"], dtype=np.float64)
            self.cma_sigma = float(arrays["cma-sigma"][0])
        self.cache = {}

    def strategy(self, config: RunConfig) -> _Strategy:
        """The live strategy for this state's told values (rebuilt by replay if needed)."""
        assert self.cma_x0 is not None and self.cma_told is not None
        live = self.cache.get("live")
        if live is not None and np.array_equal(live.told, self.cma_told):
            return live
        live = _build(config, self.cma_x0, self.cma_told)
        if self.cma_mean is not None and not (
            np.array_equal(live.es.mean, self.cma_mean) and live.es.sigma == self.cma_sigma
        ):
            log.warning(
                "fedcma: replaying %d CMA-ES generations did not reproduce the saved mean and "
                "step size (another cma version than the run's?); the run continues from the replay",
                len(self.cma_told),
            )
        self.cache["live"] = live
        return live


@register
class FedCMA(Method):
    """CMA-ES on the server; the clients evaluate each generation's candidates."""

    name = "fedcma"
    summary = ("CMA-ES (pycma) on the server: clients evaluate the popsize candidates and the mean, "
               "the server tells the weighted values; 1 exchange")
    rank = 80
    options = ("popsize", "cma-sigma")
    server_state = CMAServerState

    # ---- messages ----------------------------------------------------------------------
    def train_message_spec(self, config: RunConfig, dim: int) -> Spec:
        lam = popsize(config, dim)
        return {"cma-candidates": ArraySpec(lam * dim, unit_box=True), "cma-mean": ArraySpec(dim, unit_box=True)}

    def train_message(self, config: RunConfig, state: ServerState) -> Payload:
        assert isinstance(state, CMAServerState)
        live = state.strategy(config)
        return {"cma-candidates": live.candidates.ravel().copy(), "cma-mean": live.mean.copy()}

    def train_reply_spec(self, config: RunConfig, dim: int) -> Spec:
        return {"cma-values": ArraySpec(popsize(config, dim)), "cma-mean-value": ScalarSpec("float")}

    def query_bound(self, config: RunConfig, dim: int, kind: str, first: bool) -> int | None:
        """f_i(x_{r-1}), the λ candidates and the mean."""
        return popsize(config, dim) + 2

    # ---- client ------------------------------------------------------------------------
    def local_train(self, ctx: TrainContext, value_start: float) -> np.ndarray:
        """One batch of λ + 1 counted queries: the candidates, then the mean."""
        d = ctx.state.dim
        points = np.vstack([ctx.message["cma-candidates"].reshape(-1, d), ctx.message["cma-mean"][None, :]])
        values = np.asarray(ctx.session.query(points), dtype=np.float64)
        ctx.scratch["cma-values"] = values[:-1].copy()
        ctx.scratch["cma-mean-value"] = float(values[-1])
        return ctx.x_global.copy()

    def end_train(self, ctx: TrainContext, reply: Payload) -> None:
        reply["cma-values"] = ctx.scratch["cma-values"]
        reply["cma-mean-value"] = ctx.scratch["cma-mean-value"]

    # ---- server ------------------------------------------------------------------------
    def server_step(self, config: RunConfig, state: ServerState, agg: Aggregate) -> np.ndarray:
        """The best of x_{r-1}, the mean and the candidates by the reported values."""
        assert isinstance(state, CMAServerState)
        live = state.strategy(config)
        values = np.asarray(agg.weighted("cma-values"), dtype=np.float64)
        best = int(np.argmin(values))
        x, fx = state.x, float(agg.weighted("value-start"))
        mean_value = float(agg.weighted("cma-mean-value"))
        if mean_value < fx:
            x, fx = live.mean, mean_value
        if values[best] < fx:
            x = live.candidates[best]
        return x.copy()

    def aggregate_train(self, config: RunConfig, new: ServerState, agg: Aggregate) -> None:
        """Tell CMA-ES the weighted values of its candidates (enough valid replies)."""
        assert isinstance(new, CMAServerState)
        live = new.strategy(config)
        _tell(config, live, np.asarray(agg.weighted("cma-values"), dtype=np.float64))
        new.cma_told = live.told
        new.cma_mean = np.asarray(live.es.mean, dtype=np.float64).copy()
        new.cma_sigma = float(live.es.sigma)

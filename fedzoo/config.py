"""Run configuration: every option with its default, its allowed range and its doc.

Keys are kebab-case everywhere outside Python (CLI flags, Flower run-config, payloads,
summary.json); fields are the snake_case twins. :func:`RunConfig.from_mapping` validates
every key before round 1 and names the key, the value and what is allowed;
:meth:`RunConfig.check_limits` then checks the options against the federation (its
dimension and clients): sizes and combinations with which a run could not work
(:mod:`fedzoo.limits`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedzoo import aggregation, corrections, optim, step_control
from fedzoo.errors import ConfigError
from fedzoo.estimators import finite_difference
from fedzoo.limits import (
    MAX_ARRAY_ELEMENTS,
    MAX_CLIENTS,
    MAX_FLOAT_OPTION,
    MAX_GP_RESTARTS,
    MAX_INT,
    MAX_LOCAL_STEPS,
    MAX_ROUNDS,
    MAX_WORK_ELEMENTS,
)
from fedzoo.surrogates import kernels

# The names each choice option allows, from the modules that implement them.
OPTIMIZERS = tuple(optim.OPTIMIZERS)
KERNEL_NAMES = tuple(kernels.KERNELS)
FD_ESTIMATORS = tuple(finite_difference.FD_ESTIMATORS)
AGGREGATIONS = tuple(aggregation.AGGREGATORS)
GAMMA_SCHEDULES = ("auto", *corrections.GAMMA_SCHEDULES)
STEP_CONTROLS = step_control.STEP_CONTROLS
STEP_START = step_control.STEP_START


def method_names() -> tuple[str, ...]:
    """The registered methods (:mod:`fedzoo.methods`; imported when first asked)."""
    from fedzoo.methods import method_names as registered

    return registered()


class _RegisteredMethods(Sequence):
    """The registry's names as a sequence read when used (argparse ``choices``, checks)."""

    def __getitem__(self, i: Any) -> Any:
        return method_names()[i]

    def __len__(self) -> int:
        return len(method_names())

    def __repr__(self) -> str:
        return repr(list(method_names()))


def __getattr__(name: str) -> Any:
    if name == "METHODS":  # the registry, read when asked (it imports the method modules)
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and v < float("inf")


def _nonneg(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf")


def _floor(v: Any) -> str | None:
    """A value-floor option in canonical form ("" or a finite number as text), else None."""
    if isinstance(v, str):
        if v.strip() == "":
            return ""
        try:
            v = float(v)
        except ValueError:
            return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    if not math.isfinite(v) or abs(v) > MAX_FLOAT_OPTION:
        return None
    return repr(v)


_RULES = {
    "positive-int": (_positive_int, "an integer >= 1"),
    "nonneg-int": (_nonneg_int, "an integer >= 0"),
    "positive": (_positive, "a finite number > 0"),
    "nonneg": (_nonneg, "a finite number >= 0"),
    "unit": (lambda v: _positive(v) and v <= 1, "a number in (0, 1]"),
    "any-int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "shape": (lambda v: isinstance(v, str) and re.fullmatch(r"(\d+(x\d+){0,2})?", v) is not None
              and "x0" not in "x" + v, '"" or positive sizes joined by x, e.g. "28x28x1"'),
}


@dataclass(frozen=True)
class RunConfig:
    """Every option of a federated run (algorithm side; the problem is separate)."""

    method: str = field(default="fzoos", metadata={"kind": "choice", "choices": _RegisteredMethods(), "doc": "federated method (fedzoo.methods registry; `fedzoo methods` lists them)"})
    rounds: int = field(default=50, metadata={"kind": "positive-int", "doc": "communication rounds R"})
    local_steps: int = field(default=10, metadata={"kind": "positive-int", "doc": "local steps T per round"})
    seed: int = field(default=0, metadata={"kind": "nonneg-int", "doc": "run seed (all randomness derives from it)"})
    optimizer: str = field(default="adam", metadata={"kind": "choice", "choices": OPTIMIZERS, "doc": "local optimiser"})
    lr: float = field(default=0.01, metadata={"kind": "positive", "doc": "local learning rate"})
    fraction: float = field(default=1.0, metadata={"kind": "unit", "doc": "fraction of clients sampled per round"})
    min_replies: int = field(default=1, metadata={"kind": "positive-int", "doc": "valid replies needed to update the global state"})
    aggregation: str = field(default="mean", metadata={"kind": "choice", "choices": AGGREGATIONS, "doc": "how corrections (RFF weights, control variates) are combined"})
    clip_factor: float = field(default=2.0, metadata={"kind": "positive", "doc": "clip: norms capped at this multiple of the median norm"})
    step_control: str = field(default="auto", metadata={"kind": "choice", "choices": STEP_CONTROLS, "doc": "server-side step control from reported values: incumbent (keep the best reported point, shrink the local lr on a rejected step), none, or auto (the method's choice)"})
    step_shrink: float = field(default=0.5, metadata={"kind": "unit", "doc": "incumbent step control: lr scale factor after a rejected step"})
    step_grow: float = field(default=1.0, metadata={"kind": "positive", "doc": "incumbent step control: lr scale factor after an accepted step (capped at the start scale)"})
    step_start: float = field(default=STEP_START, metadata={"kind": "positive", "doc": "incumbent step control: the lr scale of the first round (clients step with lr x step-start, shrunk by step-shrink on every rejected step; 1 = the plain lr)"})
    server_lr: float = field(default=1.0, metadata={"kind": "positive", "doc": "server step eta (1 = weighted average)"})
    # finite differences (fedzo, fedprox, scaffold1/2)
    fd_estimator: str = field(default="rgf", metadata={"kind": "choice", "choices": FD_ESTIMATORS, "doc": "finite-difference estimator"})
    rgf_directions: int = field(default=20, metadata={"kind": "positive-int", "doc": "RGF directions Q"})
    fd_step: float = field(default=0.01, metadata={"kind": "positive", "doc": "finite-difference step mu"})
    prox_mu: float = field(default=1.0, metadata={"kind": "nonneg", "doc": "FedProx proximal weight"})
    # FZooS / ZORD local surrogate
    gp_history: int = field(default=300, metadata={"kind": "positive-int", "doc": "GP conditions on this many nearest points"})
    gp_fit_points: int = field(default=300, metadata={"kind": "positive-int", "doc": "nearest points for the once-per-round hyper-parameter fit"})
    gp_kernel: str = field(default="se", metadata={"kind": "choice", "choices": KERNEL_NAMES, "doc": "GP kernel"})
    gp_restarts: int = field(default=3, metadata={"kind": "positive-int", "doc": "L-BFGS-B starts of a client's first marginal-likelihood fit (a data-based start plus random ones, best kept); every later round's fit is a single run warm-started from the previous optimum"})
    history_max: int = field(default=5000, metadata={"kind": "positive-int", "doc": "client history cap (oldest dropped)"})
    init_points: int = field(default=10, metadata={"kind": "nonneg-int", "doc": "points around x0 before round 1"})
    init_radius: float = field(default=0.01, metadata={"kind": "positive", "doc": "radius of the initial design"})
    explore_candidates: int = field(default=100, metadata={"kind": "positive-int", "doc": "candidates after each local step"})
    explore_points: int = field(default=5, metadata={"kind": "nonneg-int", "doc": "active queries after each local step"})
    explore_radius: float = field(default=0.01, metadata={"kind": "positive", "doc": "candidate box half-width"})
    sync_candidates: int = field(default=200, metadata={"kind": "positive-int", "doc": "candidates at the new global point"})
    sync_points: int = field(default=50, metadata={"kind": "nonneg-int", "doc": "active queries at the new global point"})
    # FZooS global surrogate and correction
    rff_features: int = field(default=10000, metadata={"kind": "positive-int", "doc": "random Fourier features M"})
    rff_lengthscale: float = field(default=1.0, metadata={"kind": "positive", "doc": "RFF kernel lengthscale"})
    rff_history: int = field(default=500, metadata={"kind": "positive-int", "doc": "points per client for the RFF fit"})
    rff_ridge: float = field(default=1e-3, metadata={"kind": "positive", "doc": "ridge of the RFF fit (standardised y)"})
    gamma: float = field(default=1.0, metadata={"kind": "nonneg", "doc": "correction weight gamma"})
    gamma_schedule: str = field(default="auto", metadata={"kind": "choice", "choices": GAMMA_SCHEDULES, "doc": "gamma_t at local step t: gamma/t (inverse, the paper's), gamma/sqrt(t), gamma (constant), or auto (the method's choice: constant for fzoos, inverse for fzoos-paper and fzoos-lagged)"})
    # CMA-ES on the server (fedcma)
    popsize: int = field(default=0, metadata={"kind": "nonneg-int", "doc": "fedcma: CMA-ES population (candidates per round) lambda; 0 = the default, max(51, 4 + floor(3 ln d)), so that a round costs about what one FZooS exchange does (53 queries per client); 1 is refused"})
    cma_sigma: float = field(default=0.2, metadata={"kind": "positive", "doc": "fedcma: initial CMA-ES step size sigma0 in the unit box"})
    # nevergrad's NGOpt on the server (fedngopt)
    ng_batch: int = field(default=0, metadata={"kind": "nonneg-int", "doc": "fedngopt: candidates NGOpt asks per round (its num_workers); 0 = the default, fedcma's max(51, 4 + floor(3 ln d)); 1 is allowed (sequential NGOpt)"})
    # Square Attack on the server (fedsquare)
    square_candidates: int = field(default=1, metadata={"kind": "positive-int", "doc": "fedsquare: square updates of the incumbent evaluated per round (lambda)"})
    square_shape: str = field(default="", metadata={"kind": "shape", "doc": "fedsquare: the point's image shape HxW or HxWxC (row-major, channels last); \"\" = a 1 x d image"})
    square_p_init: float = field(default=0.05, metadata={"kind": "unit", "doc": "fedsquare: initial share p of the pixels in a square (the schedule halves it, Square Attack)"})
    square_iterations: int = field(default=0, metadata={"kind": "nonneg-int", "doc": "fedsquare: candidates the square-size schedule spans; 0 = rounds x square-candidates"})
    square_radius: float = field(default=0.5, metadata={"kind": "unit", "doc": "fedsquare: radius r of the L-inf ball around x0 whose vertices clip(x0 -+ r, 0, 1) are searched (0.5 with an attack's x0 = 0.5: the vertices +-eps)"})
    square_proposals: int = field(default=10, metadata={"kind": "positive-int", "doc": "fzoos-square: random squares the global surrogate ranks per candidate sent (1 = no ranking: fedsquare's random choice)"})
    value_floor: str = field(default="", metadata={"kind": "floor", "doc": "fedsquare, fzoos-square, fzoos-vertex: each client's value counts as max(f_i, floor) when the method compares points (and in fzoos-vertex's surrogates); \"\" = off. For an attack's margins, 0 is the Carlini-Wagner hinge: a client whose own model is already fooled stops steering the search. The reported F is never floored"})

    def floor_value(self) -> float | None:
        """``value-floor`` as a number, None when off."""
        return None if self.value_floor == "" else float(self.value_floor)

    @classmethod
    def keys(cls) -> list[str]:
        """All option names in kebab-case."""
        return [f.name.replace("_", "-") for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, ignore_unknown: bool = False) -> RunConfig:
        """Validate ``values`` (kebab- or snake-case keys) and build a config.

        Raises ConfigError naming the key, the value and what is allowed.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in fields:
                if ignore_unknown:
                    continue
                raise ConfigError(
                    f"Unknown option {key!r}; expected one of: {', '.join(cls.keys())}."
                )
            kwargs[name] = _check(fields[name], key, value)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_mapping({**self.to_dict(), **changes})

    def check_clients(self, num_clients: int) -> None:
        """Refuse a ``min-replies`` above the clients asked per round.

        ``ceil(fraction x num_clients)`` (at least 1) clients are asked each round; with
        ``min-replies`` above that the global state could never move.

        Raises:
            ConfigError: naming min-replies, fraction and the number of clients.
        """
        asked = max(1, math.ceil(self.fraction * num_clients))
        if self.min_replies > asked:
            raise ConfigError(
                f"'min-replies' = {self.min_replies} is not allowed; expected at most the "
                f"{asked} client(s) asked per round (ceil(fraction x num-clients) with "
                f"fraction = {self.fraction:g}, num-clients = {num_clients}): with fewer "
                "replies possible than required the global state would never move."
            )

    def check_limits(self, dim: int, num_clients: int) -> None:
        """Refuse a federation of ``dim`` and ``num_clients`` this configuration cannot run
        (the engine, the Flower run-config and the CLI call it before anything is built).

        * :meth:`check_clients`; ``dim`` >= 1 and ``num-clients`` in [1, MAX_CLIENTS];
        * sizes (:data:`fedzoo.limits.MAX_ARRAY_ELEMENTS` elements): ``dim`` (every reply
          carries x), ``rff-features`` (FZooS replies carry the weights), ``num-clients x
          dim`` (a problem's coefficients), each option of :data:`POINTS_OPTIONS` the
          method reads times ``dim`` (e.g. a history of ``history-max`` points); working
          matrices (:data:`fedzoo.limits.MAX_WORK_ELEMENTS`): ``rff-features x dim`` (the
          shared feature map), ``dim x dim`` for ``fd-estimator = coordinate``;
        * ``aggregation`` median / clip with fewer than 3 clients asked per round: with two
          replies neither can tell an outlier (the median is the mean; the clip cap,
          clip-factor x the median norm, is at least the larger norm), so a hostile client
          would move the result as far as with ``mean``.

        Raises:
            ConfigError: naming the option(s), the values and the limit.
        """
        from fedzoo.methods import get_method

        for key, value, low, high in (("dim", dim, 1, MAX_ARRAY_ELEMENTS),
                                      ("num-clients", num_clients, 1, MAX_CLIENTS)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{key!r} = {value!r} is not allowed; expected an integer in "
                                  f"[{low}, {high}].")
        self.check_clients(num_clients)
        if num_clients * dim > MAX_ARRAY_ELEMENTS:
            raise ConfigError(
                f"'num-clients' x 'dim' = {num_clients} x {dim} is not allowed; expected at most "
                f"{MAX_ARRAY_ELEMENTS} (a problem's coefficients are num-clients x dim numbers).")
        options = get_method(self.method).options
        if "rff-features" in options and self.rff_features > MAX_ARRAY_ELEMENTS:
            raise ConfigError(
                f"'rff-features' = {self.rff_features} is not allowed; expected at most "
                f"{MAX_ARRAY_ELEMENTS}, the longest array a reply may carry (FZooS replies carry "
                "the rff-features RFF weights).")
        sizes = [(k, getattr(self, k.replace("-", "_")), MAX_ARRAY_ELEMENTS,
                  "holds that many points of dimension d at once")
                 for k in POINTS_OPTIONS if k in options]
        if "rff-features" in options:
            sizes.append(("rff-features", self.rff_features, MAX_WORK_ELEMENTS,
                          "builds the rff-features x dim random-feature map"))
        if "fd-estimator" in options and self.fd_estimator == "coordinate":
            sizes.append(("fd-estimator = coordinate (dim directions)", dim, MAX_WORK_ELEMENTS,
                          "builds the dim x dim coordinate directions"))
        for key, count, limit, why in sizes:
            if count * dim > limit:
                raise ConfigError(
                    f"{key!r} = {count} is not allowed with dim = {dim}; expected {key} x dim <= "
                    f"{limit} (at most {limit // dim}): method {self.method!r} {why}.")
        need = ROBUST_AGGREGATIONS.get(self.aggregation, 0)
        asked = max(1, math.ceil(self.fraction * num_clients))
        if asked < need:
            raise ConfigError(
                f"'aggregation' = {self.aggregation!r} is not allowed with {asked} client(s) asked "
                f"per round (fraction = {self.fraction:g}, num-clients = {num_clients}); expected "
                f"at least {need}, or aggregation = 'mean': with two replies the median is their "
                "mean and the clip cap is at least the larger norm, so neither bounds a hostile "
                "client.")

    def to_dict(self) -> dict[str, Any]:
        """Options as a kebab-case dict (JSON-ready)."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...] | None:
        """The allowed values of a choice option (snake_case name), else None."""
        meta = cls.__dataclass_fields__[name].metadata
        if meta.get("kind") != "choice":
            return None
        return tuple(meta["choices"])


#: Ranges of options beyond their kind's rule: (lowest, highest, why). Every other integer
#: option is at most MAX_INT (an int64), every other float one at most MAX_FLOAT_OPTION.
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "rounds": (None, MAX_ROUNDS, "the history rows travel in every checkpoint"),
    "local_steps": (None, MAX_LOCAL_STEPS, "each step is at least one query"),
    "gp_restarts": (None, MAX_GP_RESTARTS, "each start is a likelihood optimisation"),
    "init_radius": (None, 1.0, "a half-width in the unit box"),
    "explore_radius": (None, 1.0, "a half-width in the unit box"),
    "fd_step": (1e-12, 1.0, "a step in the unit box, above float64's resolution of x"),
    "rff_lengthscale": (1e-6, 1e6, "a lengthscale in the unit box"),
    "cma_sigma": (1e-12, None, "a step size in the unit box"),
}

#: Options that count points of dimension d a client or message holds at once: each
#: times d is at most MAX_ARRAY_ELEMENTS (for methods that read the option).
POINTS_OPTIONS = ("init-points", "explore-candidates", "sync-candidates", "history-max",
                  "rgf-directions", "popsize", "ng-batch", "square-candidates")

#: Aggregations that need at least this many replies to tell an outlier (with two, the
#: median is the mean and the clip cap is at least the larger norm).
ROBUST_AGGREGATIONS = {"median": 3, "clip": 3}


def _check(f: dataclasses.Field, key: str, value: Any) -> Any:
    kind = f.metadata["kind"]
    if kind == "choice":
        choices = RunConfig.choices(f.name)
        if value not in choices:
            raise ConfigError(f"Option {key!r} = {value!r} is not allowed; expected one of {list(choices)}.")
        return value
    if kind == "floor":
        canonical = _floor(value)
        if canonical is None:
            raise ConfigError(f"Option {key!r} = {value!r} is not allowed; expected \"\" (off) or a "
                              f"finite number of at most {MAX_FLOAT_OPTION:g} in size, e.g. 0 or -5.")
        return canonical
    test, what = _RULES[kind]
    if isinstance(value, float) and kind.endswith("int") and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and kind in ("positive", "nonneg", "unit"):
        value = float(value)
    if not test(value):
        raise ConfigError(f"Option {key!r} = {value!r} is not allowed; expected {what}.")
    if kind in _RULES and kind != "shape":
        low, high, why = RANGES.get(f.name, (None, None, ""))
        if high is None:
            high = MAX_INT if isinstance(value, int) else MAX_FLOAT_OPTION
            why = why or ("an int64" if isinstance(value, int) else "nothing in the unit box needs more")
        if (low is not None and value < low) or value > high:
            show = str if isinstance(value, int) else (lambda v: f"{v:g}")
            span = f"at least {show(low)} and " if low is not None else ""
            raise ConfigError(f"Option {key!r} = {value!r} is not allowed; expected {what}, "
                              f"{span}at most {show(high)} ({why}).")
    return value
